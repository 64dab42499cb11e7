/*
 * store_sqlite.c: the embedded SQLite backend of store.h. One connection, used from one
 * thread, in WAL mode: readers never wait for the writer and a commit costs one append to the
 * WAL (plus an fsync only with synchronous=FULL). Every statement is prepared once at open and
 * reset after each use, because event_append runs once per item and re-parsing SQL would cost
 * more than the insert itself.
 *
 * Transactions are implicit: the first write opens one with BEGIN IMMEDIATE (so the write lock
 * is taken up front and a busy file fails at BEGIN, not half way through a burst), and
 * rd_store_commit() ends it. SQLite rolls a transaction back on its own after some errors
 * (disk full, I/O error); tx_open remembers that we had one, so commit reports the loss
 * instead of pretending the burst was saved.
 *
 * The tables live in files of their own (store_sqlite_runs.c, _events.c, _kv.c, _outbox.c);
 * this file owns the connection, the schema and its migration, the statement table, the
 * transaction and the ops table that ties them together.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_sqlite_int.h"
#include "base/util.h"

/* Bump when the schema changes and add a step to migrate(); user_version holds it. */
/* 2: the webhook outbox tables (store_sqlite_outbox.c); 3: pgroups */
#define SCHEMA_VERSION 3

/* Everything but the runs table. AUTOINCREMENT keeps event ids from being reused after the
 * newest rows are deleted, which SSE resumption (Last-Event-ID) relies on. Items are events
 * with an item_seq; the partial unique index both serves the results API and refuses a
 * second item with the same seq. */
static const char schema_sql[] =
    /* Ties on created_at (milliseconds) are broken by rowid, the insertion order, which every
     * index carries implicitly: so FIFO order survives a restart. */
    "CREATE INDEX IF NOT EXISTS runs_status2 ON runs (status, created_at);"
    "CREATE INDEX IF NOT EXISTS runs_flow_created2 ON runs (flow, created_at);"
    "CREATE INDEX IF NOT EXISTS runs_created2 ON runs (created_at);"
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " run_id TEXT NOT NULL, flow TEXT, type TEXT NOT NULL, ts INTEGER NOT NULL,"
    " data TEXT NOT NULL, item_seq INTEGER);"
    "CREATE INDEX IF NOT EXISTS events_run ON events (run_id, id);"
    "CREATE UNIQUE INDEX IF NOT EXISTS events_item ON events (run_id, item_seq)"
    " WHERE item_seq IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS idempotency (key_hash TEXT PRIMARY KEY, run_id TEXT,"
    " body_hash TEXT, created_at INTEGER);"
    "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT);"
    /* The process groups of running workers (store_sqlite_kv.c). */
    "CREATE TABLE IF NOT EXISTS pgroups (pgid INTEGER PRIMARY KEY, start_ticks INTEGER NOT NULL,"
    " boot_id TEXT NOT NULL, run_id TEXT);"
    "CREATE TABLE IF NOT EXISTS enrichments (run_id TEXT NOT NULL, item_seq INTEGER NOT NULL,"
    " flow TEXT NOT NULL, data TEXT NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY (run_id, item_seq, flow)) WITHOUT ROWID;";

/* The SQL and the name of each statement of ST_LIST (store_sqlite_int.h). */
static const char *const st_sql[] = {
#define X_SQL(name, sql) sql,
    ST_LIST(X_SQL)
#undef X_SQL
};

static const char *const st_name[] = {
#define X_NAME(name, sql) #name,
    ST_LIST(X_NAME)
#undef X_NAME
};

/* ---- helpers ---------------------------------------------------------------------------- */

int rd_sqlite_fail(rd_sqlite *s, const char *what)
{
    rd_log_err("store: %s: %s", what, sqlite3_errmsg(s->db));
    return RD_EIO;
}

/* Maps a failed step: a unique or primary key violation is the caller's duplicate
 * (RD_ECONFLICT); anything else is logged as a storage error. */
static int step_fail(rd_sqlite *s, const char *what)
{
    int ext = sqlite3_extended_errcode(s->db);

    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return RD_ECONFLICT;
    return rd_sqlite_fail(s, what);
}

/* Steps a statement that returns no row, then releases it. */
int rd_sqlite_step_done(rd_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int ret = sqlite3_step(st) == SQLITE_DONE ? 0 : step_fail(s, what);

    rd_sqlite_done(st);
    return ret;
}

/* Steps a statement that returns one integer (COUNT, MAX...), then releases it. */
int rd_sqlite_step_i64(rd_sqlite *s, sqlite3_stmt *st, int64_t *out, const char *what)
{
    int ret = 0;

    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        ret = rd_sqlite_fail(s, what);
    rd_sqlite_done(st);
    return ret;
}

int rd_sqlite_bind_fail(rd_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int ret = rd_sqlite_fail(s, what);

    rd_sqlite_done(st);
    return ret;
}

/* A statement still stepping means an rd_event_cb called back into the same scan; rebinding
 * it would restart the outer iteration, so refuse. */
int rd_sqlite_check_idle(sqlite3_stmt *st, const char *what)
{
    if (!sqlite3_stmt_busy(st))
        return 0;
    rd_log_err("store: %s: called from its own callback", what);
    return RD_EINVAL;
}

/* Copies result column col into buf (NULL: the caller does not want it). -1 if it is cut. */
int rd_sqlite_copy_out(sqlite3_stmt *st, int col, char *buf, size_t len)
{
    const char *v = (const char *)sqlite3_column_text(st, col);

    if (!buf)
        return 0;
    return (size_t)snprintf(buf, len, "%s", v ? v : "") < len ? 0 : -1;
}

/* Steps a statement expected to return at most one row: SQLITE_ROW (the row is current),
 * RD_ENOTFOUND, or RD_EIO. The caller releases it. */
int rd_sqlite_step_row(rd_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return rc;
    return rc == SQLITE_DONE ? RD_ENOTFOUND : rd_sqlite_fail(s, what);
}

/* ---- transactions ----------------------------------------------------------------------- */

/* Called before every write. Opens the batch's transaction if none is open. */
int rd_sqlite_tx_begin(rd_sqlite *s)
{
    if (s->tx_open) {
        if (!sqlite3_get_autocommit(s->db))
            return 0;
        /* SQLite rolled our transaction back after an error. Writing now would autocommit a
         * fragment of the burst; refuse until the caller ends the burst. */
        rd_log_err("store: write refused: the open transaction was rolled back by an error");
        return RD_EIO;
    }
    if (rd_sqlite_step_done(s, s->st[ST_BEGIN], "begin") != 0)
        return RD_EIO;
    s->tx_open = true;
    return 0;
}

static int sqlite_commit(rd_store *base)
{
    rd_sqlite *s = (rd_sqlite *)base;

    if (!s->tx_open)
        return 0;
    s->tx_open = false;
    if (sqlite3_get_autocommit(s->db)) {
        rd_log_err("store: commit: the transaction was rolled back by an earlier error");
        return RD_EIO;
    }
    if (rd_sqlite_step_done(s, s->st[ST_COMMIT], "commit") == 0)
        return 0;
    /* A failed COMMIT can leave the transaction open. Roll it back, so that what the caller
     * was told (nothing of this burst is stored) stays true after a later commit. */
    if (!sqlite3_get_autocommit(s->db))
        rd_sqlite_step_done(s, s->st[ST_ROLLBACK], "rollback after failed commit");
    return RD_EIO;
}

static int sqlite_rollback(rd_store *base)
{
    rd_sqlite *s = (rd_sqlite *)base;

    if (!s->tx_open)
        return 0;
    s->tx_open = false;
    if (sqlite3_get_autocommit(s->db))
        return 0; /* SQLite already rolled it back */
    return rd_sqlite_step_done(s, s->st[ST_ROLLBACK], "rollback") == 0 ? 0 : RD_EIO;
}

/* For the satellite files (store_sqlite_int.h). */
sqlite3 *rd_sqlite_db(rd_store *base)
{
    return ((rd_sqlite *)base)->db;
}

int rd_sqlite_write_begin(rd_store *base)
{
    return rd_sqlite_tx_begin((rd_sqlite *)base);
}

rd_sqlite_outbox *rd_sqlite_outbox_of(rd_store *base)
{
    return ((rd_sqlite *)base)->ob;
}

/* ---- open and close --------------------------------------------------------------------- */

/* The one teardown, safe on a half-built store: open's error paths call it too. */
static void sqlite_close(rd_store *base)
{
    rd_sqlite *s = (rd_sqlite *)base;

    if (!s)
        return;
    if (s->db && s->st[ST_COMMIT] && s->st[ST_ROLLBACK] && sqlite_commit(base) != 0)
        rd_log_err("store: close: the last transaction was not committed");
    rd_sqlite_ckpt_stop(s->ckpt, s->db);
    rd_sqlite_outbox_close(s->ob);
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]); /* NULL is a no-op */
    if (s->db && sqlite3_close(s->db) != SQLITE_OK)
        rd_log_err("store: close: %s", sqlite3_errmsg(s->db));
    free(s);
}

static const rd_store_ops sqlite_ops = {
    .close = sqlite_close,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .run_insert = rd_sqlite_run_insert,
    .run_update = rd_sqlite_run_update,
    .run_get = rd_sqlite_run_get,
    .run_list = rd_sqlite_run_list,
    .runs_active = rd_sqlite_runs_active,
    .event_append = rd_sqlite_event_append,
    .events_scan = rd_sqlite_events_scan,
    .items_scan = rd_sqlite_items_scan,
    .idem_get = rd_sqlite_idem_get,
    .idem_put = rd_sqlite_idem_put,
    .max_event_id = rd_sqlite_max_event_id,
    .min_event_id = rd_sqlite_min_event_id,
    .kv_get = rd_sqlite_kv_get,
    .kv_put = rd_sqlite_kv_put,
    .pgroup_put = rd_sqlite_pgroup_put,
    .pgroup_del = rd_sqlite_pgroup_del,
    .pgroups_scan = rd_sqlite_pgroups_scan,
    RD_SQLITE_OUTBOX_OPS,
    .enrichment_put = rd_sqlite_enrichment_put,
    .events_prune = rd_sqlite_events_prune,
    .idem_prune = rd_sqlite_idem_prune,
};

static int prepare_all(rd_sqlite *s, char *err, size_t errlen)
{
    for (int i = 0; i < ST__COUNT; i++) {
        char gen[4096];
        const char *sql = st_sql[i];
        if (!sql) {
            if (!rd_sqlite_runs_sql((st_id)i, gen, sizeof gen)) {
                snprintf(err, errlen, "generated SQL for %s is too long", st_name[i]);
                return RD_EIO;
            }
            sql = gen;
        }
        /* PERSISTENT: these statements live as long as the connection. */
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "prepare %s: %s", st_name[i], sqlite3_errmsg(s->db));
            return RD_EIO;
        }
    }
    return 0;
}

static int exec(rd_sqlite *s, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
    return RD_EIO;
}

static int apply_pragmas(rd_sqlite *s, const rd_store_opts *opts, char *err, size_t errlen)
{
    char sql[512];

    /* NORMAL in WAL mode survives a crash of the process (kill -9): only a power loss can
     * drop the last commits. FULL also syncs the WAL on every commit. The journal size limit
     * keeps the WAL file from staying huge after a burst. */
    snprintf(sql, sizeof(sql),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA foreign_keys = OFF;"
             " PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536;"
             " PRAGMA journal_size_limit = 67108864;",
             opts->synchronous_full ? "FULL" : "NORMAL");
    sqlite3_busy_timeout(s->db, 5000);
    return exec(s, sql, err, errlen);
}

static int version_cb(void *arg, int n, char **vals, char **names)
{
    *(int *)arg = n > 0 && vals[0] ? atoi(vals[0]) : 0;
    return 0;
}

/* Creates the schema or brings an older one up to SCHEMA_VERSION, in one transaction. */
static int migrate(rd_sqlite *s, char *err, size_t errlen)
{
    char runs[4096], version_sql[64];
    const char *steps[] = {runs, schema_sql, version_sql, rd_sqlite_outbox_schema};
    int version = 0, rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE", err, errlen)) != 0)
        return rc;
    if (sqlite3_exec(s->db, "PRAGMA user_version", version_cb, &version, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "read schema version: %s", sqlite3_errmsg(s->db));
        rc = RD_EIO;
        goto out;
    }
    if (version > SCHEMA_VERSION) {
        snprintf(err, errlen, "database schema version %d is newer than this runsd's (%d)", version,
                 SCHEMA_VERSION);
        rc = RD_EINVAL;
        goto out;
    }
    /* Version 0 is a new file. Later versions add their ALTER TABLE steps here, before the
     * CREATE ... IF NOT EXISTS below (which only builds what is missing). */
    if (!rd_sqlite_runs_schema(runs, sizeof runs)) {
        snprintf(err, errlen, "schema SQL is too long");
        rc = RD_EIO;
        goto out;
    }
    snprintf(version_sql, sizeof version_sql, "PRAGMA user_version = %d;", SCHEMA_VERSION);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0] && rc == 0; i++)
        rc = exec(s, steps[i], err, errlen);
out:
    if (rc == 0)
        return exec(s, "COMMIT", err, errlen);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* ":memory:" and URI forms of an in-memory database lose everything at exit. */
static bool is_memory_path(const char *path)
{
    return strcmp(path, ":memory:") == 0 ||
           (strncmp(path, "file:", 5) == 0 && strstr(path, "memory") != NULL);
}

/* SQLite counts every allocation under a global mutex for sqlite3_memory_used(), which we
 * never call: ~4% of the ingest path. Must precede SQLite's initialization; if something else
 * initialized it first the call is refused and the default stays. */
static void sqlite_tune_once(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int rd_store_open_sqlite(const char *path, const rd_store_opts *opts, rd_store **out, char *err,
                         size_t errlen)
{
    static pthread_once_t tune = PTHREAD_ONCE_INIT;
    pthread_once(&tune, sqlite_tune_once);
    static const rd_store_opts defaults = {false, false};
    rd_sqlite *s;
    int rc;

    opts = opts ? opts : &defaults;
    /* An empty path would open a temporary database, deleted at close. */
    if (!path || !*path) {
        snprintf(err, errlen, "store path is empty");
        return RD_EINVAL;
    }
    if (is_memory_path(path) && !opts->allow_memory) {
        snprintf(err, errlen, "store path %s: in memory, every run would be lost at exit", path);
        return RD_EINVAL;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        snprintf(err, errlen, "out of memory");
        return RD_EIO;
    }
    s->base.ops = &sqlite_ops;
    /* NOMUTEX: the connection is used by one thread at a time, so SQLite's own locking of
     * every call would be pure cost. */
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "no memory");
        rc = RD_EIO;
    } else if ((rc = apply_pragmas(s, opts, err, errlen)) == 0 &&
               (rc = migrate(s, err, errlen)) == 0) {
        rc = prepare_all(s, err, errlen);
        if (rc == 0)
            rc = rd_sqlite_outbox_open(s->db, &s->ob, err, errlen);
        if (rc == 0 && !is_memory_path(path))
            rc = rd_sqlite_ckpt_start(path, s->db, &s->ckpt);
    }
    if (rc != 0) {
        sqlite_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}
