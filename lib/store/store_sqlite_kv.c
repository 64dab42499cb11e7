/*
 * store_sqlite_kv.c: the small tables of the SQLite store: idempotency keys (a key's hash,
 * the run it created and the request body's hash, pruned after idempotency_ttl) and kv, the
 * store's own settings such as the retention watermark, and pgroups, the process groups of
 * running workers (recorded at spawn, forgotten at the reap, killed at the next start if a
 * crash left them behind).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_sqlite_int.h"
#include "base/util.h"

int rd_sqlite_idem_get(rd_store *base, const char *key_hash, char *run_id, size_t run_id_len,
                       char *body_hash, size_t body_hash_len)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_IDEM_GET];
    int rc = SQLITE_OK, ret;

    rd_sqlite_bind_text(st, 1, key_hash, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "idempotency get");
    if ((ret = rd_sqlite_step_row(s, st, "idempotency get")) == SQLITE_ROW) {
        ret = 0;
        if (rd_sqlite_copy_out(st, 0, run_id, run_id_len) ||
            rd_sqlite_copy_out(st, 1, body_hash, body_hash_len)) {
            rd_log_err("store: idempotency get: buffer too small");
            ret = RD_EINVAL;
        }
    }
    rd_sqlite_done(st);
    return ret;
}

int rd_sqlite_idem_put(rd_store *base, const char *key_hash, const char *run_id,
                       const char *body_hash, int64_t ts)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_IDEM_PUT];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, key_hash, &rc);
    rd_sqlite_bind_text(st, 2, run_id, &rc);
    rd_sqlite_bind_text(st, 3, body_hash, &rc);
    rd_sqlite_bind_i64(st, 4, ts, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "idempotency put");
    return rd_sqlite_step_done(s, st, "idempotency put");
}

int rd_sqlite_kv_get(rd_store *base, const char *key, char **out_value)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_KV_GET];
    int rc = SQLITE_OK, ret;

    rd_sqlite_bind_text(st, 1, key, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "kv get");
    if ((ret = rd_sqlite_step_row(s, st, "kv get")) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        ret = (*out_value = strdup(v ? v : "")) ? 0 : RD_EIO;
    }
    rd_sqlite_done(st);
    return ret;
}

int rd_sqlite_kv_put(rd_store *base, const char *key, const char *value)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_KV_PUT];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, key, &rc);
    rd_sqlite_bind_text(st, 2, value, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "kv put");
    return rd_sqlite_step_done(s, st, "kv put");
}

int rd_sqlite_pgroup_put(rd_store *base, const rd_pgroup *g)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_PG_PUT];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_i64(st, 1, g->pgid, &rc);
    rd_sqlite_bind_i64(st, 2, g->start_ticks, &rc);
    rd_sqlite_bind_text(st, 3, g->boot_id, &rc);
    rd_sqlite_bind_text(st, 4, g->run_id, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "pgroup put");
    return rd_sqlite_step_done(s, st, "pgroup put");
}

int rd_sqlite_pgroup_del(rd_store *base, int64_t pgid)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_PG_DEL];
    int rc = rd_sqlite_tx_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_i64(st, 1, pgid, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "pgroup del");
    return rd_sqlite_step_done(s, st, "pgroup del");
}

int rd_sqlite_pgroups_scan(rd_store *base, rd_pgroup_cb cb, void *arg)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_PG_SCAN];
    int rc, ret = 0;

    if ((ret = rd_sqlite_check_idle(st, "pgroups scan")) != 0)
        return ret;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *boot = (const char *)sqlite3_column_text(st, 2);
        rd_pgroup g = {.pgid = sqlite3_column_int64(st, 0),
                       .start_ticks = sqlite3_column_int64(st, 1),
                       .boot_id = boot ? boot : "",
                       .run_id = (const char *)sqlite3_column_text(st, 3)};
        if (cb(&g, arg) != 0)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        ret = rd_sqlite_fail(s, "pgroups scan");
    rd_sqlite_done(st);
    return ret;
}

int rd_sqlite_idem_prune(rd_store *base, int64_t before_ms, int64_t *n_deleted)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_IDEM_PRUNE];
    int rc = rd_sqlite_tx_begin(s);

    *n_deleted = 0;
    if (rc != 0)
        return rc;
    rd_sqlite_bind_i64(st, 1, before_ms, &rc);
    if (rc != SQLITE_OK)
        return rd_sqlite_bind_fail(s, st, "idempotency prune");
    if ((rc = rd_sqlite_step_done(s, st, "idempotency prune")) == 0)
        *n_deleted = sqlite3_changes(s->db);
    return rc;
}
