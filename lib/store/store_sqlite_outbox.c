/*
 * store_sqlite_outbox.c: the webhook outbox tables of the SQLite store (store.h, "webhook
 * outbox"). Same rules as store_sqlite.c: statements prepared once, writes join the batch's
 * implicit transaction, strings handed to callbacks live until the next step.
 *
 * The due-queue is the partial index deliveries_due: it holds only pending rows, ordered by
 * next_at, so finding what to send now and when the next attempt is due are both index
 * seeks, however many delivered rows the table keeps. An attempt in flight is "sending" and
 * drops out of that index, which is how the outbox never picks the same delivery twice.
 * deliveries_endpoint answers "was this endpoint stopped for this run?" with one seek, which
 * matters because it is asked at every enqueue and a run may have a million item webhooks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_sqlite_int.h"
#include "base/util.h"

const char rd_sqlite_outbox_schema[] =
    "CREATE TABLE IF NOT EXISTS deliveries (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " run_id TEXT NOT NULL, type TEXT NOT NULL, url TEXT NOT NULL, source INTEGER NOT NULL,"
    " secret TEXT, body TEXT NOT NULL, state INTEGER NOT NULL, attempts INTEGER NOT NULL,"
    " manual INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL, next_at INTEGER NOT NULL, last_code INTEGER NOT NULL,"
    " last_error TEXT);"
    "CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at, seq) WHERE state = 0;"
    "CREATE INDEX IF NOT EXISTS deliveries_sending ON deliveries (seq) WHERE state = 1;"
    "CREATE INDEX IF NOT EXISTS deliveries_run_seq ON deliveries (run_id, seq);"
    "CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries (run_id, url, state);"
    "CREATE TABLE IF NOT EXISTS delivery_attempts (delivery_id TEXT NOT NULL, n INTEGER NOT NULL,"
    " manual INTEGER NOT NULL, at INTEGER NOT NULL, duration_ms INTEGER NOT NULL,"
    " status_code INTEGER NOT NULL, error TEXT, next_at INTEGER NOT NULL,"
    " PRIMARY KEY (delivery_id, n)) WITHOUT ROWID;";

#define DLV_COLS                                                                                   \
    "seq, id, run_id, type, url, source, secret, body, state, attempts, manual, created_at,"       \
    " updated_at, next_at, last_code, last_error"
#define DLV_SELECT "SELECT " DLV_COLS " FROM deliveries"

/* Retention's victims: finished deliveries (delivered, failed, stopped) last touched before
 * ?1, oldest first, at most ?2. */
#define DLV_DONE_BEFORE                                                                            \
    "SELECT id FROM deliveries WHERE state >= 2 AND updated_at < ?1 ORDER BY seq LIMIT ?2"

/* X(name, sql) */
#define OB_LIST(X)                                                                                 \
    X(INSERT, "INSERT INTO deliveries (" DLV_COLS ") VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6, ?7,"    \
              " ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)")                                            \
    X(UPDATE, "UPDATE deliveries SET state = ?2, attempts = ?3, manual = ?4, updated_at = ?5,"     \
              " next_at = ?6, last_code = ?7, last_error = ?8 WHERE id = ?1")                      \
    X(GET, DLV_SELECT " WHERE id = ?1")                                                            \
    X(DUE, DLV_SELECT " WHERE state = 0 AND next_at <= ?1 ORDER BY next_at, seq LIMIT ?2")         \
    X(NEXT_DUE, "SELECT COALESCE(MIN(next_at), 0) FROM deliveries WHERE state = 0")                \
    X(BACKLOG, "SELECT (SELECT COUNT(*) FROM deliveries INDEXED BY deliveries_due"                 \
               " WHERE state = 0) + (SELECT COUNT(*) FROM deliveries"                              \
               " INDEXED BY deliveries_sending WHERE state = 1)")                                  \
    X(RUN_SCAN, DLV_SELECT " WHERE run_id = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3")                   \
    X(RUN_COUNT, "SELECT COUNT(*) FROM deliveries WHERE run_id = ?1")                              \
    X(STOP, "UPDATE deliveries SET state = 4, next_at = 0, updated_at = ?3, last_error = ?4"       \
            " WHERE run_id = ?1 AND url = ?2 AND state = 0")                                       \
    X(STOPPED, "SELECT 1 FROM deliveries WHERE run_id = ?1 AND url = ?2 AND state = 4 LIMIT 1")    \
    X(LEASE, "UPDATE deliveries SET state = 1 WHERE id = ?1 AND state = 0")                        \
    X(UNLEASE, "UPDATE deliveries SET state = 0 WHERE state = 1")                                  \
    X(ATT_ADD, "INSERT INTO delivery_attempts (delivery_id, n, manual, at, duration_ms,"           \
               " status_code, error, next_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")            \
    X(ATT_SCAN, "SELECT delivery_id, n, manual, at, duration_ms, status_code, error, next_at"      \
                " FROM delivery_attempts WHERE delivery_id = ?1 ORDER BY n")                       \
    X(PRUNE_ATT, "DELETE FROM delivery_attempts WHERE delivery_id IN (" DLV_DONE_BEFORE ")")       \
    X(PRUNE, "DELETE FROM deliveries WHERE id IN (" DLV_DONE_BEFORE ")")

typedef enum {
#define X_ENUM(name, sql) OB_##name,
    OB_LIST(X_ENUM)
#undef X_ENUM
        OB__COUNT
} ob_st;

static const char *const ob_sql[] = {
#define X_SQL(name, sql) sql,
    OB_LIST(X_SQL)
#undef X_SQL
};

struct rd_sqlite_outbox {
    sqlite3_stmt *st[OB__COUNT];
};

/* ---- helpers: the same discipline as store_sqlite.c ------------------------------------- */

/* rd_sqlite_done, rd_sqlite_bind_text, rd_sqlite_bind_i64 and rd_sqlite_check_idle are the
 * core's (store_sqlite_int.h); these differ in taking the rd_store the outbox is given. */

static sqlite3_stmt *stmt(rd_store *s, ob_st id)
{
    return rd_sqlite_outbox_of(s)->st[id];
}

static int fail(rd_store *s, sqlite3_stmt *st, const char *what)
{
    rd_log_err("store: %s: %s", what, sqlite3_errmsg(rd_sqlite_db(s)));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return RD_EIO;
}

/* Steps a statement that returns no row. A unique violation is the caller's duplicate. */
static int step_done(rd_store *s, sqlite3_stmt *st, const char *what)
{
    int ext;

    if (sqlite3_step(st) == SQLITE_DONE) {
        rd_sqlite_done(st);
        return 0;
    }
    ext = sqlite3_extended_errcode(rd_sqlite_db(s));
    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
        rd_sqlite_done(st);
        return RD_ECONFLICT;
    }
    return fail(s, st, what);
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Steps a SELECT of DLV_COLS and hands each row to cb. */
static int scan_deliveries(rd_store *s, sqlite3_stmt *st, rd_delivery_cb cb, void *arg,
                           const char *what)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rd_delivery d = {
            .seq = sqlite3_column_int64(st, 0),
            .id = col_text(st, 1),
            .run_id = col_text(st, 2),
            .type = col_text(st, 3),
            .url = col_text(st, 4),
            .source = sqlite3_column_int(st, 5),
            .secret = col_text(st, 6),
            .body = col_text(st, 7),
            .state = sqlite3_column_int(st, 8),
            .attempts = sqlite3_column_int(st, 9),
            .manual = sqlite3_column_int(st, 10) != 0,
            .created_at = sqlite3_column_int64(st, 11),
            .updated_at = sqlite3_column_int64(st, 12),
            .next_at = sqlite3_column_int64(st, 13),
            .last_code = sqlite3_column_int(st, 14),
            .last_error = col_text(st, 15),
        };
        if (cb(&d, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return fail(s, st, what);
    rd_sqlite_done(st);
    return 0;
}

/* ---- operations ------------------------------------------------------------------------- */

int rd_sqlite_dlv_insert(rd_store *s, const rd_delivery *d)
{
    sqlite3_stmt *st = stmt(s, OB_INSERT);
    int rc = rd_sqlite_write_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, d->id, &rc);
    rd_sqlite_bind_text(st, 2, d->run_id, &rc);
    rd_sqlite_bind_text(st, 3, d->type, &rc);
    rd_sqlite_bind_text(st, 4, d->url, &rc);
    rd_sqlite_bind_i64(st, 5, d->source, &rc);
    rd_sqlite_bind_text(st, 6, d->secret, &rc);
    rd_sqlite_bind_text(st, 7, d->body, &rc);
    rd_sqlite_bind_i64(st, 8, d->state, &rc);
    rd_sqlite_bind_i64(st, 9, d->attempts, &rc);
    rd_sqlite_bind_i64(st, 10, d->manual, &rc);
    rd_sqlite_bind_i64(st, 11, d->created_at, &rc);
    rd_sqlite_bind_i64(st, 12, d->updated_at, &rc);
    rd_sqlite_bind_i64(st, 13, d->next_at, &rc);
    rd_sqlite_bind_i64(st, 14, d->last_code, &rc);
    rd_sqlite_bind_text(st, 15, d->last_error, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "delivery insert");
    return step_done(s, st, "delivery insert");
}

int rd_sqlite_dlv_update(rd_store *s, const rd_delivery *d)
{
    sqlite3_stmt *st = stmt(s, OB_UPDATE);
    int rc = rd_sqlite_write_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, d->id, &rc);
    rd_sqlite_bind_i64(st, 2, d->state, &rc);
    rd_sqlite_bind_i64(st, 3, d->attempts, &rc);
    rd_sqlite_bind_i64(st, 4, d->manual, &rc);
    rd_sqlite_bind_i64(st, 5, d->updated_at, &rc);
    rd_sqlite_bind_i64(st, 6, d->next_at, &rc);
    rd_sqlite_bind_i64(st, 7, d->last_code, &rc);
    rd_sqlite_bind_text(st, 8, d->last_error, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "delivery update");
    if ((rc = step_done(s, st, "delivery update")) != 0)
        return rc;
    return sqlite3_changes(rd_sqlite_db(s)) > 0 ? 0 : RD_ENOTFOUND;
}

typedef struct get_ctx {
    rd_delivery_cb cb;
    void *arg;
    bool seen;
} get_ctx;

static int get_on_row(const rd_delivery *d, void *arg)
{
    get_ctx *g = arg;

    g->seen = true;
    return g->cb(d, g->arg);
}

int rd_sqlite_dlv_get(rd_store *s, const char *id, rd_delivery_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt(s, OB_GET);
    get_ctx g = {cb, arg, false};
    int rc = rd_sqlite_check_idle(st, "delivery get");

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, id, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "delivery get");
    if ((rc = scan_deliveries(s, st, get_on_row, &g, "delivery get")) != 0)
        return rc;
    return g.seen ? 0 : RD_ENOTFOUND;
}

int rd_sqlite_dlv_due(rd_store *s, int64_t now, int limit, rd_delivery_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt(s, OB_DUE);
    int rc = rd_sqlite_check_idle(st, "deliveries due");

    if (rc != 0)
        return rc;
    rd_sqlite_bind_i64(st, 1, now, &rc);
    rd_sqlite_bind_i64(st, 2, limit > 0 ? limit : -1, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "deliveries due");
    return scan_deliveries(s, st, cb, arg, "deliveries due");
}

static int step_i64(rd_store *s, sqlite3_stmt *st, int64_t *out, const char *what)
{
    if (sqlite3_step(st) != SQLITE_ROW)
        return fail(s, st, what);
    *out = sqlite3_column_int64(st, 0);
    rd_sqlite_done(st);
    return 0;
}

int rd_sqlite_dlv_next_due(rd_store *s, int64_t *out)
{
    return step_i64(s, stmt(s, OB_NEXT_DUE), out, "deliveries next due");
}

/* Two counts, each over its partial index (deliveries_due, deliveries_sending): a scan of
 * the rows still to deliver, never of the delivered ones the table keeps. INDEXED BY because
 * the planner otherwise prefers the covering deliveries_endpoint, which holds every row (60
 * ms instead of under 1 ms with 300,000 delivered rows and 1,000 pending). */
int rd_sqlite_dlv_backlog(rd_store *s, int64_t *out)
{
    return step_i64(s, stmt(s, OB_BACKLOG), out, "deliveries backlog");
}

int rd_sqlite_dlv_run_scan(rd_store *s, const char *run_id, int64_t offset, int limit,
                           rd_delivery_cb cb, void *arg, int64_t *total)
{
    sqlite3_stmt *st = stmt(s, OB_RUN_SCAN), *cnt = stmt(s, OB_RUN_COUNT);
    int rc = rd_sqlite_check_idle(st, "run deliveries");

    if (rc != 0)
        return rc;
    if (total) {
        rd_sqlite_bind_text(cnt, 1, run_id, &rc);
        if (rc != SQLITE_OK)
            return fail(s, cnt, "run deliveries count");
        if ((rc = step_i64(s, cnt, total, "run deliveries count")) != 0)
            return rc;
    }
    rd_sqlite_bind_text(st, 1, run_id, &rc);
    rd_sqlite_bind_i64(st, 2, limit > 0 ? limit : -1, &rc);
    rd_sqlite_bind_i64(st, 3, offset > 0 ? offset : 0, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "run deliveries");
    return scan_deliveries(s, st, cb, arg, "run deliveries");
}

int rd_sqlite_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now,
                       const char *why)
{
    sqlite3_stmt *st = stmt(s, OB_STOP);
    int rc = rd_sqlite_write_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, run_id, &rc);
    rd_sqlite_bind_text(st, 2, url, &rc);
    rd_sqlite_bind_i64(st, 3, now, &rc);
    rd_sqlite_bind_text(st, 4, why, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "deliveries stop");
    return step_done(s, st, "deliveries stop");
}

int rd_sqlite_dlv_stopped(rd_store *s, const char *run_id, const char *url, bool *out)
{
    sqlite3_stmt *st = stmt(s, OB_STOPPED);
    int rc = SQLITE_OK;

    rd_sqlite_bind_text(st, 1, run_id, &rc);
    rd_sqlite_bind_text(st, 2, url, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "deliveries stopped");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail(s, st, "deliveries stopped");
    *out = rc == SQLITE_ROW;
    rd_sqlite_done(st);
    return 0;
}

int rd_sqlite_dlv_lease(rd_store *s, const char *id)
{
    sqlite3_stmt *st = stmt(s, OB_LEASE);
    int rc = rd_sqlite_write_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, id, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "delivery lease");
    if ((rc = step_done(s, st, "delivery lease")) != 0)
        return rc;
    return sqlite3_changes(rd_sqlite_db(s)) > 0 ? 0 : RD_ENOTFOUND;
}

int rd_sqlite_dlv_unlease(rd_store *s)
{
    int rc = rd_sqlite_write_begin(s);

    return rc != 0 ? rc : step_done(s, stmt(s, OB_UNLEASE), "deliveries unlease");
}

int rd_sqlite_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *a)
{
    sqlite3_stmt *st = stmt(s, OB_ATT_ADD);
    int rc = rd_sqlite_write_begin(s);

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, a->delivery_id, &rc);
    rd_sqlite_bind_i64(st, 2, a->n, &rc);
    rd_sqlite_bind_i64(st, 3, a->manual, &rc);
    rd_sqlite_bind_i64(st, 4, a->at, &rc);
    rd_sqlite_bind_i64(st, 5, a->duration_ms, &rc);
    rd_sqlite_bind_i64(st, 6, a->status_code, &rc);
    rd_sqlite_bind_text(st, 7, a->error, &rc);
    rd_sqlite_bind_i64(st, 8, a->next_at, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "delivery attempt add");
    return step_done(s, st, "delivery attempt add");
}

int rd_sqlite_dlv_attempts_scan(rd_store *s, const char *delivery_id, rd_attempt_cb cb, void *arg)
{
    sqlite3_stmt *st = stmt(s, OB_ATT_SCAN);
    int rc = rd_sqlite_check_idle(st, "delivery attempts");

    if (rc != 0)
        return rc;
    rd_sqlite_bind_text(st, 1, delivery_id, &rc);
    if (rc != SQLITE_OK)
        return fail(s, st, "delivery attempts");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rd_delivery_attempt a = {
            .delivery_id = col_text(st, 0),
            .n = sqlite3_column_int(st, 1),
            .manual = sqlite3_column_int(st, 2) != 0,
            .at = sqlite3_column_int64(st, 3),
            .duration_ms = sqlite3_column_int64(st, 4),
            .status_code = sqlite3_column_int(st, 5),
            .error = col_text(st, 6),
            .next_at = sqlite3_column_int64(st, 7),
        };
        if (cb(&a, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        return fail(s, st, "delivery attempts");
    rd_sqlite_done(st);
    return 0;
}

/* ---- open and close --------------------------------------------------------------------- */

void rd_sqlite_outbox_close(rd_sqlite_outbox *ob)
{
    if (!ob)
        return;
    for (int i = 0; i < OB__COUNT; i++)
        sqlite3_finalize(ob->st[i]); /* NULL is a no-op */
    free(ob);
}

int rd_sqlite_outbox_open(sqlite3 *db, rd_sqlite_outbox **out, char *err, size_t errlen)
{
    rd_sqlite_outbox *ob = calloc(1, sizeof *ob);

    if (!ob) {
        snprintf(err, errlen, "out of memory");
        return RD_EIO;
    }
    for (int i = 0; i < OB__COUNT; i++) {
        if (sqlite3_prepare_v3(db, ob_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &ob->st[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "prepare outbox statement %d: %s", i, sqlite3_errmsg(db));
            rd_sqlite_outbox_close(ob);
            return RD_EIO;
        }
    }
    *out = ob;
    return 0;
}

int rd_sqlite_dlv_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted)
{
    int rc = rd_sqlite_write_begin(s);

    *n_deleted = 0;
    if (rc != 0)
        return rc;
    /* Attempts first: the same victims are still selectable while their rows exist. */
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st = stmt(s, i == 0 ? OB_PRUNE_ATT : OB_PRUNE);
        rd_sqlite_bind_i64(st, 1, before_ms, &rc);
        rd_sqlite_bind_i64(st, 2, limit, &rc);
        if (rc != SQLITE_OK)
            return fail(s, st, "deliveries prune");
        if ((rc = step_done(s, st, "deliveries prune")) != 0)
            return rc;
    }
    *n_deleted = sqlite3_changes(rd_sqlite_db(s));
    return 0;
}
