/*
 * store_sqlite_kv.c: the small tables of the SQLite store: idempotency keys (a key's hash,
 * the run it created and the request body's hash, pruned after idempotency_ttl) and kv, the
 * store's own settings such as the retention watermark.
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
