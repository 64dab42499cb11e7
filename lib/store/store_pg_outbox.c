/*
 * store_pg_outbox.c: the webhook outbox tables in the PostgreSQL store (store.h, "webhook
 * outbox"), with the same partial indexes as the SQLite backend (store_pg_schema.c). Inserts
 * and attempts answer a duplicate (ON CONFLICT DO NOTHING, so a duplicate does not abort the
 * batch's transaction); a lease answers whether it took the row; updates and stops are queued.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_pg_int.h"
#include "base/util.h"

static int scan_deliveries(PGresult *r, rd_delivery_cb cb, void *arg, bool *seen)
{
    for (int i = 0; i < PQntuples(r); i++) {
        rd_delivery d = {
            .seq = rd_pg_i64(r, i, 0),
            .id = rd_pg_str(r, i, 1),
            .run_id = rd_pg_str(r, i, 2),
            .type = rd_pg_str(r, i, 3),
            .url = rd_pg_str(r, i, 4),
            .source = (int)rd_pg_i64(r, i, 5),
            .secret = rd_pg_str(r, i, 6),
            .body = rd_pg_str(r, i, 7),
            .state = (int)rd_pg_i64(r, i, 8),
            .attempts = (int)rd_pg_i64(r, i, 9),
            .manual = rd_pg_i64(r, i, 10) != 0,
            .created_at = rd_pg_i64(r, i, 11),
            .updated_at = rd_pg_i64(r, i, 12),
            .next_at = rd_pg_i64(r, i, 13),
            .last_code = (int)rd_pg_i64(r, i, 14),
            .last_error = rd_pg_str(r, i, 15),
        };
        if (seen)
            *seen = true;
        if (cb(&d, arg) != 0)
            break;
    }
    PQclear(r);
    return 0;
}

int rd_pg_dlv_insert(rd_store *s, const rd_delivery *d)
{
    pg_args a = {0};
    int64_t n = 0;

    pga_str(&a, d->id);
    pga_str(&a, d->run_id);
    pga_str(&a, d->type);
    pga_str(&a, d->url);
    pga_i64(&a, d->source);
    pga_str(&a, d->secret);
    pga_str(&a, d->body);
    pga_i64(&a, d->state);
    pga_i64(&a, d->attempts);
    pga_i64(&a, d->manual);
    pga_i64(&a, d->created_at);
    pga_i64(&a, d->updated_at);
    pga_i64(&a, d->next_at);
    pga_i64(&a, d->last_code);
    pga_str(&a, d->last_error);
    if (rd_pg_call_n(s, PS_DLV_INSERT, &a, &n) != 0)
        return RD_EIO;
    return n > 0 ? 0 : RD_ECONFLICT;
}

/* Queued: the outbox updates only deliveries it read or inserted. */
int rd_pg_dlv_update(rd_store *s, const rd_delivery *d)
{
    pg_args a = {0};

    pga_str(&a, d->id);
    pga_i64(&a, d->state);
    pga_i64(&a, d->attempts);
    pga_i64(&a, d->manual);
    pga_i64(&a, d->updated_at);
    pga_i64(&a, d->next_at);
    pga_i64(&a, d->last_code);
    pga_str(&a, d->last_error);
    return rd_pg_send(s, PS_DLV_UPDATE, &a);
}

int rd_pg_dlv_get(rd_store *s, const char *id, rd_delivery_cb cb, void *arg)
{
    pg_args a = {0};
    PGresult *r;
    bool seen = false;

    pga_str(&a, id);
    if (rd_pg_call(s, PS_DLV_GET, &a, false, &r) != 0)
        return RD_EIO;
    scan_deliveries(r, cb, arg, &seen);
    return seen ? 0 : RD_ENOTFOUND;
}

int rd_pg_dlv_due(rd_store *s, int64_t now, int limit, rd_delivery_cb cb, void *arg)
{
    pg_args a = {0};
    PGresult *r;

    pga_i64(&a, now);
    if (limit > 0)
        pga_i64(&a, limit);
    else
        pga_str(&a, NULL);
    if (rd_pg_call(s, PS_DLV_DUE, &a, false, &r) != 0)
        return RD_EIO;
    return scan_deliveries(r, cb, arg, NULL);
}

int rd_pg_dlv_next_due(rd_store *s, int64_t *out)
{
    return rd_pg_call_i64(s, PS_DLV_NEXT_DUE, NULL, out);
}

/* Two counts over the partial indexes of pending and sending rows (store_pg_schema.c). */
int rd_pg_dlv_backlog(rd_store *s, int64_t *out)
{
    return rd_pg_call_i64(s, PS_DLV_BACKLOG, NULL, out);
}

int rd_pg_dlv_run_scan(rd_store *s, const char *run_id, int64_t offset, int limit,
                       rd_delivery_cb cb, void *arg, int64_t *total)
{
    pg_args a = {0};
    PGresult *r;

    pga_str(&a, run_id);
    if (total && rd_pg_call_i64(s, PS_DLV_RUN_COUNT, &a, total) != 0)
        return RD_EIO;
    if (limit > 0)
        pga_i64(&a, limit);
    else
        pga_str(&a, NULL);
    pga_i64(&a, offset > 0 ? offset : 0);
    if (rd_pg_call(s, PS_DLV_RUN_SCAN, &a, false, &r) != 0)
        return RD_EIO;
    return scan_deliveries(r, cb, arg, NULL);
}

int rd_pg_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now, const char *why)
{
    pg_args a = {0};

    pga_str(&a, run_id);
    pga_str(&a, url);
    pga_i64(&a, now);
    pga_str(&a, why);
    return rd_pg_send(s, PS_DLV_STOP, &a);
}

int rd_pg_dlv_stopped(rd_store *s, const char *run_id, const char *url, bool *out)
{
    pg_args a = {0};
    PGresult *r;

    pga_str(&a, run_id);
    pga_str(&a, url);
    if (rd_pg_call(s, PS_DLV_STOPPED, &a, false, &r) != 0)
        return RD_EIO;
    *out = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

int rd_pg_dlv_lease(rd_store *s, const char *id)
{
    pg_args a = {0};
    int64_t n = 0;

    pga_str(&a, id);
    if (rd_pg_call_n(s, PS_DLV_LEASE, &a, &n) != 0)
        return RD_EIO;
    return n > 0 ? 0 : RD_ENOTFOUND;
}

int rd_pg_dlv_unlease(rd_store *s)
{
    return rd_pg_send(s, PS_DLV_UNLEASE, NULL);
}

int rd_pg_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *at)
{
    pg_args a = {0};
    int64_t n = 0;

    pga_str(&a, at->delivery_id);
    pga_i64(&a, at->n);
    pga_i64(&a, at->manual);
    pga_i64(&a, at->at);
    pga_i64(&a, at->duration_ms);
    pga_i64(&a, at->status_code);
    pga_str(&a, at->error);
    pga_i64(&a, at->next_at);
    if (rd_pg_call_n(s, PS_ATT_ADD, &a, &n) != 0)
        return RD_EIO;
    return n > 0 ? 0 : RD_ECONFLICT;
}

int rd_pg_dlv_attempts_scan(rd_store *s, const char *delivery_id, rd_attempt_cb cb, void *arg)
{
    pg_args a = {0};
    PGresult *r;

    pga_str(&a, delivery_id);
    if (rd_pg_call(s, PS_ATT_SCAN, &a, false, &r) != 0)
        return RD_EIO;
    for (int i = 0; i < PQntuples(r); i++) {
        rd_delivery_attempt at = {
            .delivery_id = rd_pg_str(r, i, 0),
            .n = (int)rd_pg_i64(r, i, 1),
            .manual = rd_pg_i64(r, i, 2) != 0,
            .at = rd_pg_i64(r, i, 3),
            .duration_ms = rd_pg_i64(r, i, 4),
            .status_code = (int)rd_pg_i64(r, i, 5),
            .error = rd_pg_str(r, i, 6),
            .next_at = rd_pg_i64(r, i, 7),
        };
        if (cb(&at, arg) != 0)
            break;
    }
    PQclear(r);
    return 0;
}

int rd_pg_dlv_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted)
{
    pg_args a = {0};
    int64_t n = 0;

    *n_deleted = 0;
    pga_i64(&a, before_ms);
    pga_i64(&a, limit);
    /* Attempts first: the same victims are still selectable while their rows exist. */
    if (rd_pg_call_n(s, PS_DLV_PRUNE_ATT, &a, &n) != 0 ||
        rd_pg_call_n(s, PS_DLV_PRUNE, &a, n_deleted) != 0)
        return RD_EIO;
    return 0;
}
