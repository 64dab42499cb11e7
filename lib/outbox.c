/*
 * outbox.c: placeholder while the webhook outbox (issue 5) is being written: no outbox is
 * created by the server yet, so none of these is reached.
 */
#include "outbox.h"

#include <stddef.h>

rd_outbox *rd_outbox_new(struct event_base *base, rd_store *store, const rd_config *cfg)
{
    return NULL;
}

void rd_outbox_free(rd_outbox *ob)
{
}

void rd_outbox_set_config(rd_outbox *ob, const rd_config *cfg)
{
}

int rd_outbox_recover(rd_outbox *ob)
{
    return 0;
}

int rd_outbox_enqueue(rd_outbox *ob, const rd_run *run, const char *type, json_t *run_wire)
{
    return 0;
}

void rd_outbox_kick(rd_outbox *ob)
{
}

bool rd_outbox_wants(rd_outbox *ob, const rd_run *run, const char *type)
{
    return false;
}
