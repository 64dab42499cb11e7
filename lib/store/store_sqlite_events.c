/*
 * store_sqlite_events.c: events, items and enrichments in the SQLite store. Items are events
 * with an item_seq; scans hand each row to a callback with strings that live until the next
 * step, so a million-item scan never copies a row. Retention deletes old non-item events of
 * finished runs and keeps a "pruned_through" watermark in kv, so SSE resumption can tell a
 * pruned Last-Event-ID from one that never existed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_sqlite_int.h"
#include "base/util.h"

int rd_sqlite_event_append(rd_store *base, const char *run_id, const char *flow, const char *type,
                           int64_t ts, const char *data, int64_t item_seq, int64_t *out_id)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_EV_APPEND];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, run_id, &rc);
    rd_sqlite_bind_text(st, 2, flow, &rc);
    rd_sqlite_bind_text(st, 3, type, &rc);
    rd_sqlite_bind_i64(st, 4, ts, &rc);
    rd_sqlite_bind_text(st, 5, data, &rc);
    if (item_seq > 0)
        rd_sqlite_bind_i64(st, 6, item_seq, &rc);
    if (out_id && *out_id > 0) /* replay of a journal: the id it had */
        rd_sqlite_bind_i64(st, 7, *out_id, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "event append");
    if ((rc = rd_sqlite_step_done(s, st, "event append")) != 0)
        return rc;
    if (out_id)
        *out_id = sqlite3_last_insert_rowid(s->db);
    return 0;
}

/* Steps an EV_SELECT statement, handing each row to cb until it asks to stop; releases st.
 * The strings are SQLite's and valid only until the next step, as rd_event promises. */
static int scan_events(rd_sqlite *s, sqlite3_stmt *st, rd_event_cb cb, void *arg, const char *what)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *flow = (const char *)sqlite3_column_text(st, 2);
        rd_event ev = {
            .id = sqlite3_column_int64(st, 0),
            .run_id = (const char *)sqlite3_column_text(st, 1),
            .flow = flow ? flow : "",
            .type = (const char *)sqlite3_column_text(st, 3),
            .ts = sqlite3_column_int64(st, 4),
            .data = (const char *)sqlite3_column_text(st, 5),
            .item_seq = sqlite3_column_int64(st, 6), /* NULL reads as 0 */
        };
        /* Only the items scan has an 8th column: the item's enrichments by flow. */
        if (sqlite3_column_count(st) > 7)
            ev.enrichments = (const char *)sqlite3_column_text(st, 7);
        if (cb(&ev, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    rc = rc == SQLITE_DONE ? 0 : rd_sqlite_fail(s, what);
    rd_sqlite_done(st);
    return rc;
}

int rd_sqlite_events_scan(rd_store *base, const char *run_id, int64_t after_id, int limit,
                          rd_event_cb cb, void *arg)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[run_id ? ST_EV_SCAN_RUN : ST_EV_SCAN_ALL];
    int i = 1, rc = rd_sqlite_check_idle(st, "events scan");

    if (rc != 0)
        return rc;
    if (run_id)
        rd_sqlite_bind_text(st, i++, run_id, &rc);
    rd_sqlite_bind_i64(st, i++, after_id, &rc);
    rd_sqlite_bind_i64(st, i, limit > 0 ? limit : -1, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "events scan");
    return scan_events(s, st, cb, arg, "events scan");
}

static int items_count(rd_sqlite *s, const rd_item_query *q, const char *type, int64_t *total)
{
    /* Without a status filter the count is answered from the (run_id, item_seq) index alone;
     * with one, each row's type must be read. */
    sqlite3_stmt *st = s->st[type ? ST_ITEMS_COUNT_TYPE : ST_ITEMS_COUNT];
    int rc = SQLITE_OK;

    rd_sqlite_bind_text(st, 1, q->run_id, &rc);
    if (type)
        rd_sqlite_bind_text(st, 2, type, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "items count");
    return rd_sqlite_step_i64(s, st, total, "items count");
}

int rd_sqlite_items_scan(rd_store *base, const rd_item_query *q, rd_event_cb cb, void *arg,
                         int64_t *total)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_ITEMS_SCAN];
    /* status 1 keeps run.item rows, 2 run.item_error rows; anything else keeps both. */
    const char *ok = q->status == 2 ? NULL : "run.item";
    const char *err = q->status == 1 ? NULL : "run.item_error";
    const char *only = !ok ? err : !err ? ok : NULL;
    bool cursor = q->after_seq > 0;
    int rc = rd_sqlite_check_idle(st, "items scan");

    if (rc != 0)
        return rc;
    if (total && (rc = items_count(s, q, only, total)) != 0)
        return rc;
    /* One statement serves both modes: cursor mode ranges over the index from after_seq with
     * no OFFSET; page mode starts at seq 0 and skips offset rows. */
    rd_sqlite_bind_text(st, 1, q->run_id, &rc);
    rd_sqlite_bind_i64(st, 2, cursor ? q->after_seq : 0, &rc);
    rd_sqlite_bind_text(st, 3, ok, &rc);
    rd_sqlite_bind_text(st, 4, err, &rc);
    rd_sqlite_bind_i64(st, 5, q->limit > 0 ? q->limit : -1, &rc);
    rd_sqlite_bind_i64(st, 6, !cursor && q->offset > 0 ? q->offset : 0, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "items scan");
    return scan_events(s, st, cb, arg, "items scan");
}

int rd_sqlite_max_event_id(rd_store *base, int64_t *out)
{
    return rd_sqlite_step_i64((rd_sqlite *)base, ((rd_sqlite *)base)->st[ST_EV_MAX], out,
                              "max event id");
}

int rd_sqlite_min_event_id(rd_store *base, int64_t *out)
{
    return rd_sqlite_step_i64((rd_sqlite *)base, ((rd_sqlite *)base)->st[ST_EV_MIN], out,
                              "min event id");
}

int rd_sqlite_events_prune(rd_store *base, int64_t before_ms, int limit, int64_t *n_deleted)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_EV_PRUNE_MAX];
    int rc = rd_sqlite_tx_begin(s);
    int64_t max_id = 0, n = 0;

    *n_deleted = 0;
    if (rc != 0)
        return rc;
    rd_sqlite_bind_i64(st, 1, before_ms, &rc);
    rd_sqlite_bind_i64(st, 2, limit, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "prune");
    if (sqlite3_step(st) != SQLITE_ROW) {
        rd_sqlite_done(st);
        return rd_sqlite_fail(s, "prune");
    }
    max_id = sqlite3_column_int64(st, 0);
    n = sqlite3_column_int64(st, 1);
    rd_sqlite_done(st);
    if (n == 0)
        return 0;
    st = s->st[ST_EV_PRUNE];
    rd_sqlite_bind_i64(st, 1, before_ms, &rc);
    rd_sqlite_bind_i64(st, 2, limit, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "prune");
    if ((rc = rd_sqlite_step_done(s, st, "prune")) != 0)
        return rc;
    /* The watermark only grows: victims are taken in id order, oldest first. */
    char val[32];
    int64_t prev = 0;
    char *old = NULL;
    if (rd_sqlite_kv_get(base, "pruned_through", &old) == 0 && old)
        prev = atoll(old);
    free(old);
    snprintf(val, sizeof val, "%lld", (long long)(max_id > prev ? max_id : prev));
    *n_deleted = n;
    return rd_sqlite_kv_put(base, "pruned_through", val);
}

int rd_sqlite_enrichment_put(rd_store *base, const char *run_id, int64_t item_seq, const char *flow,
                             const char *data, int64_t ts)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_ENRICH_PUT];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, run_id, &rc);
    rd_sqlite_bind_i64(st, 2, item_seq, &rc);
    rd_sqlite_bind_text(st, 3, flow, &rc);
    rd_sqlite_bind_text(st, 4, data, &rc);
    rd_sqlite_bind_i64(st, 5, ts, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "enrichment put");
    return rd_sqlite_step_done(s, st, "enrichment put");
}
