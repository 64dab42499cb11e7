/*
 * run_record.c: the lifetime of an rd_run record (new, free, deep copy) and of the arrays of
 * records the store returns. The record owns one reference to each of its JSON members, so
 * freeing and copying walk the same list of members; a member added to rd_run must be added
 * to RD_RUN_JSON_MEMBERS below or it leaks (free) and is shared between copies (dup).
 * Rendering the record to its wire form is run_wire.c's business, not this file's.
 */
#include <stdlib.h>
#include <string.h>

#include "model/run.h"

#define RD_RUN_JSON_MEMBERS(X)                                                                     \
    X(input)                                                                                       \
    X(metadata)                                                                                    \
    X(result)                                                                                      \
    X(error)                                                                                       \
    X(cursor)                                                                                      \
    X(steps)                                                                                       \
    X(progress)                                                                                    \
    X(pending_action)                                                                              \
    X(webhook)                                                                                     \
    X(extra)

rd_run *rd_run_new(void)
{
    rd_run *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->status = RD_ST_CREATED;
    r->reason = RD_RS_NONE;
    r->attempt = 0;
    r->next_item_seq = 1;
    return r;
}

void rd_run_free(rd_run *r)
{
    if (!r)
        return;
#define RD_X_DECREF(m) json_decref(r->m);
    RD_RUN_JSON_MEMBERS(RD_X_DECREF)
#undef RD_X_DECREF
    free(r);
}

rd_run *rd_run_dup(const rd_run *r)
{
    rd_run *c;

    if (!r)
        return NULL;
    c = malloc(sizeof(*c));
    if (!c)
        return NULL;
    memcpy(c, r, sizeof(*c));
    /* The byte copy shares the source's references; clear them first so that a failed deep
     * copy part way through can free the new record without touching the source's values. */
#define RD_X_CLEAR(m) c->m = NULL;
    RD_RUN_JSON_MEMBERS(RD_X_CLEAR)
#undef RD_X_CLEAR
#define RD_X_COPY(m)                                                                               \
    if (r->m && !(c->m = json_deep_copy(r->m))) {                                                  \
        rd_run_free(c);                                                                            \
        return NULL;                                                                               \
    }
    RD_RUN_JSON_MEMBERS(RD_X_COPY)
#undef RD_X_COPY
    return c;
}

void rd_run_array_free(rd_run **runs, size_t n)
{
    if (!runs)
        return;
    for (size_t i = 0; i < n; i++)
        rd_run_free(runs[i]);
    free(runs);
}
