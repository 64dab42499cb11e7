/*
 * store_pg_events.c: events, items, enrichments, idempotency keys, kv and process groups in
 * the PostgreSQL store. Appends are gathered into one multi-row INSERT per transaction
 * (store_pg_batch.c; their ids come from the transaction's counter, store_pg.c), so a burst
 * of a thousand items costs one statement and no round trip until the commit. Scans read a
 * whole result (limit bounds it) and hand each row to the callback; the strings live until
 * the callback returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_pg_int.h"
#include "base/util.h"

int rd_pg_event_append(rd_store *s, const char *run_id, const char *flow, const char *type,
                       int64_t ts, const char *data, int64_t item_seq, int64_t *out_id)
{
    int64_t id;

    if (rd_pg_event_id(s, out_id ? *out_id : 0, &id) != 0 ||
        rd_pg_event_queue(s, id, run_id, flow, type, ts, data, item_seq) != 0)
        return RD_EIO;
    if (out_id)
        *out_id = id;
    return 0;
}

/* Hands each row of an EVP_SELECT (or the items scan, with its 8th column) to cb. */
static int scan_events(PGresult *r, rd_event_cb cb, void *arg)
{
    int rows = PQntuples(r), cols = PQnfields(r);

    for (int i = 0; i < rows; i++) {
        const char *flow = rd_pg_str(r, i, 2);
        rd_event ev = {
            .id = rd_pg_i64(r, i, 0),
            .run_id = PQgetvalue(r, i, 1),
            .flow = flow ? flow : "",
            .type = PQgetvalue(r, i, 3),
            .ts = rd_pg_i64(r, i, 4),
            .data = PQgetvalue(r, i, 5),
            .item_seq = rd_pg_i64(r, i, 6),
            .enrichments = cols > 7 ? rd_pg_str(r, i, 7) : NULL,
        };
        if (cb(&ev, arg) != 0)
            break;
    }
    PQclear(r);
    return 0;
}

static void arg_limit(pg_args *a, int limit)
{
    if (limit > 0)
        pga_i64(a, limit);
    else
        pga_str(a, NULL); /* LIMIT NULL: no limit */
}

int rd_pg_events_scan(rd_store *s, const char *run_id, int64_t after_id, int limit, rd_event_cb cb,
                      void *arg)
{
    pg_args a = {0};
    PGresult *r;

    if (run_id)
        pga_str(&a, run_id);
    pga_i64(&a, after_id);
    arg_limit(&a, limit);
    if (rd_pg_call(s, run_id ? PS_EV_SCAN_RUN : PS_EV_SCAN_ALL, &a, false, &r) != 0)
        return RD_EIO;
    return scan_events(r, cb, arg);
}

int rd_pg_items_scan(rd_store *s, const rd_item_query *q, rd_event_cb cb, void *arg, int64_t *total)
{
    /* status 1 keeps run.item rows, 2 run.item_error rows; anything else keeps both. */
    const char *ok = q->status == 2 ? NULL : "run.item";
    const char *err = q->status == 1 ? NULL : "run.item_error";
    const char *only = !ok ? err : !err ? ok : NULL;
    bool cursor = q->after_seq > 0;
    pg_args a = {0};
    PGresult *r;

    pga_str(&a, q->run_id);
    if (only)
        pga_str(&a, only);
    if (total && rd_pg_call_i64(s, only ? PS_ITEMS_COUNT_TYPE : PS_ITEMS_COUNT, &a, total) != 0)
        return RD_EIO;
    a.n = 1;
    pga_i64(&a, cursor ? q->after_seq : 0);
    pga_str(&a, ok);
    pga_str(&a, err);
    arg_limit(&a, q->limit);
    pga_i64(&a, !cursor && q->offset > 0 ? q->offset : 0);
    if (rd_pg_call(s, PS_ITEMS_SCAN, &a, false, &r) != 0)
        return RD_EIO;
    return scan_events(r, cb, arg);
}

int rd_pg_max_event_id(rd_store *s, int64_t *out)
{
    return rd_pg_call_i64(s, PS_EV_MAX, NULL, out);
}

int rd_pg_min_event_id(rd_store *s, int64_t *out)
{
    return rd_pg_call_i64(s, PS_EV_MIN, NULL, out);
}

int rd_pg_events_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted)
{
    pg_args a = {0};
    PGresult *r;
    int64_t max_id, n, deleted;

    *n_deleted = 0;
    pga_i64(&a, before_ms);
    pga_i64(&a, limit);
    if (rd_pg_call(s, PS_EV_PRUNE_MAX, &a, true, &r) != 0)
        return RD_EIO;
    max_id = rd_pg_i64(r, 0, 0);
    n = rd_pg_i64(r, 0, 1);
    PQclear(r);
    if (n == 0)
        return 0;
    if (rd_pg_call_n(s, PS_EV_PRUNE, &a, &deleted) != 0)
        return RD_EIO;
    /* The watermark only grows: victims are taken in id order, oldest first. */
    char val[32], *old = NULL;
    int64_t prev = 0;
    if (rd_pg_kv_get(s, "pruned_through", &old) == 0 && old)
        prev = atoll(old);
    free(old);
    snprintf(val, sizeof val, "%lld", (long long)(max_id > prev ? max_id : prev));
    *n_deleted = deleted;
    return rd_pg_kv_put(s, "pruned_through", val);
}

int rd_pg_enrichment_put(rd_store *s, const char *run_id, int64_t item_seq, const char *flow,
                         const char *data, int64_t ts)
{
    pg_args a = {0};

    pga_str(&a, run_id);
    pga_i64(&a, item_seq);
    pga_str(&a, flow);
    pga_str(&a, data);
    pga_i64(&a, ts);
    return rd_pg_send(s, PS_ENRICH_PUT, &a);
}

/* ---- idempotency keys, kv, process groups ----------------------------------------------- */

static int copy_out(const char *v, char *buf, size_t len)
{
    if (!buf)
        return 0;
    return (size_t)snprintf(buf, len, "%s", v ? v : "") < len ? 0 : -1;
}

int rd_pg_idem_get(rd_store *s, const char *key_hash, char *run_id, size_t run_id_len,
                   char *body_hash, size_t body_hash_len)
{
    pg_args a = {0};
    PGresult *r;
    int rc = 0;

    pga_str(&a, key_hash);
    if (rd_pg_call(s, PS_IDEM_GET, &a, false, &r) != 0)
        return RD_EIO;
    if (PQntuples(r) == 0)
        rc = RD_ENOTFOUND;
    else if (copy_out(rd_pg_str(r, 0, 0), run_id, run_id_len) ||
             copy_out(rd_pg_str(r, 0, 1), body_hash, body_hash_len))
        rc = RD_EINVAL;
    PQclear(r);
    return rc;
}

int rd_pg_idem_put(rd_store *s, const char *key_hash, const char *run_id, const char *body_hash,
                   int64_t ts)
{
    pg_args a = {0};
    int64_t n = 0;

    pga_str(&a, key_hash);
    pga_str(&a, run_id);
    pga_str(&a, body_hash);
    pga_i64(&a, ts);
    if (rd_pg_call_n(s, PS_IDEM_PUT, &a, &n) != 0)
        return RD_EIO;
    return n > 0 ? 0 : RD_ECONFLICT;
}

int rd_pg_idem_prune(rd_store *s, int64_t before_ms, int64_t *n_deleted)
{
    pg_args a = {0};

    *n_deleted = 0;
    pga_i64(&a, before_ms);
    return rd_pg_call_n(s, PS_IDEM_PRUNE, &a, n_deleted);
}

int rd_pg_kv_get(rd_store *s, const char *key, char **out_value)
{
    pg_args a = {0};
    PGresult *r;
    int rc = 0;

    pga_str(&a, key);
    if (rd_pg_call(s, PS_KV_GET, &a, false, &r) != 0)
        return RD_EIO;
    if (PQntuples(r) == 0)
        rc = RD_ENOTFOUND;
    else if (!(*out_value = strdup(PQgetvalue(r, 0, 0))))
        rc = RD_EIO;
    PQclear(r);
    return rc;
}

int rd_pg_kv_put(rd_store *s, const char *key, const char *value)
{
    pg_args a = {0};

    pga_str(&a, key);
    pga_str(&a, value);
    return rd_pg_send(s, PS_KV_PUT, &a);
}

int rd_pg_pgroup_put(rd_store *s, const rd_pgroup *g)
{
    pg_args a = {0};

    pga_i64(&a, g->pgid);
    pga_i64(&a, g->start_ticks);
    pga_str(&a, g->boot_id);
    pga_str(&a, g->run_id);
    return rd_pg_send(s, PS_PG_PUT, &a);
}

int rd_pg_pgroup_del(rd_store *s, int64_t pgid)
{
    pg_args a = {0};

    pga_i64(&a, pgid);
    return rd_pg_send(s, PS_PG_DEL, &a);
}

int rd_pg_pgroups_scan(rd_store *s, rd_pgroup_cb cb, void *arg)
{
    PGresult *r;

    if (rd_pg_call(s, PS_PG_SCAN, NULL, false, &r) != 0)
        return RD_EIO;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *boot = rd_pg_str(r, i, 2);
        rd_pgroup g = {.pgid = rd_pg_i64(r, i, 0),
                       .start_ticks = rd_pg_i64(r, i, 1),
                       .boot_id = boot ? boot : "",
                       .run_id = rd_pg_str(r, i, 3)};
        if (cb(&g, arg) != 0)
            break;
    }
    PQclear(r);
    return 0;
}
