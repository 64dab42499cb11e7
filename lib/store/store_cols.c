/*
 * store_cols.c: the column table of store_cols.h.
 */
#include "store/store_cols.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "model/run.h"

/* clang-format off */
#define RCOL(name, kind, field) {name, kind, offsetof(rd_run, field), sizeof(((rd_run *)0)->field)}
#define C_STR(f) RCOL(#f, COL_STR, f)
#define C_I64(f) RCOL(#f, COL_I64, f)
#define C_JSON(f) RCOL(#f, COL_JSON, f)

/* "limit" is an SQL keyword, hence run_limit. */
const run_col rd_run_cols[] = {
    C_STR(id), C_STR(flow), C_STR(flow_version),
    RCOL("status", COL_STATUS, status), RCOL("reason", COL_REASON, reason),
    C_JSON(input), C_JSON(metadata), C_JSON(result), C_JSON(error), C_JSON(cursor),
    C_JSON(steps), C_JSON(progress), C_JSON(pending_action), C_JSON(webhook), C_JSON(extra),
    RCOL("run_limit", COL_I64, limit), RCOL("preview", COL_BOOL, preview),
    RCOL("attempt", COL_INT, attempt),
    C_I64(n_items), C_I64(n_item_errors), C_I64(n_evaluated), C_I64(n_matched),
    C_I64(n_dropped), C_I64(n_proto_errors), C_I64(n_steps_finished),
    C_I64(created_at), C_I64(started_at), C_I64(finished_at), C_I64(updated_at),
    C_I64(cpu_user_ms), C_I64(cpu_sys_ms), C_I64(peak_rss_kb), C_I64(run_ms),
    C_I64(last_event_id), C_I64(next_item_seq),
    C_STR(stream_token_hash), C_I64(stream_token_exp), C_STR(idem_key_hash),
};
/* clang-format on */
const size_t rd_n_run_cols = sizeof(rd_run_cols) / sizeof(rd_run_cols[0]);

/* Built from the status table so it cannot drift. */
#define X_ACTIVE(e, n, t, a) | ((a) ? 1u << RD_ST_##e : 0u)
const unsigned rd_run_active_mask = 0u RD_STATUS_LIST(X_ACTIVE);
#undef X_ACTIVE

bool rd_run_col_immutable(const char *name)
{
    return strcmp(name, "id") == 0 || strcmp(name, "flow") == 0 || strcmp(name, "created_at") == 0;
}

void rd_sqlbuf_add(rd_sqlbuf *b, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (b->n >= b->cap)
        return;
    va_start(ap, fmt);
    k = vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n = k < 0 ? b->cap : b->n + (size_t)k;
}

int rd_run_col_set_int(const run_col *c, rd_run *r, int64_t v)
{
    char *p = (char *)r + c->off;
    switch (c->kind) {
    case COL_I64:
        *(int64_t *)p = v;
        return 0;
    case COL_INT:
        *(int *)p = (int)v;
        return 0;
    case COL_BOOL:
        *(bool *)p = v != 0;
        return 0;
    case COL_STATUS:
        *(rd_status *)p = (rd_status)v;
        return v >= 0 && v < RD_ST__COUNT ? 0 : -1;
    case COL_REASON:
        *(rd_reason *)p = (rd_reason)v;
        return v >= 0 && v < RD_RS__COUNT ? 0 : -1;
    default:
        return -1;
    }
}
