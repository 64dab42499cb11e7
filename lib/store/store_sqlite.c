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
 * The runs table is described once, by run_cols[]: its CREATE TABLE, INSERT, UPDATE and
 * SELECT statements and the code that binds and reads a record are all generated from it.
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "store/store_sqlite_int.h"
#include "base/util.h"

/* Bump when the schema changes and add a step to migrate(); user_version holds it. */
#define SCHEMA_VERSION 2 /* 2: the webhook outbox tables (store_sqlite_outbox.c) */

typedef enum { COL_STR, COL_I64, COL_INT, COL_BOOL, COL_STATUS, COL_REASON, COL_JSON } col_kind;

typedef struct run_col {
    const char *name;
    col_kind kind;
    size_t off;
    size_t size;
} run_col;

/* clang-format off */
#define RCOL(name, kind, field) {name, kind, offsetof(rd_run, field), sizeof(((rd_run *)0)->field)}
#define C_STR(f) RCOL(#f, COL_STR, f)
#define C_I64(f) RCOL(#f, COL_I64, f)
#define C_JSON(f) RCOL(#f, COL_JSON, f)

/* Column i is bound as parameter ?(i+1) and read as result column i, in rd_run's order. id
 * must stay first: UPDATE binds it as ?1 in its WHERE clause. "limit" is an SQL keyword. */
static const run_col run_cols[] = {
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
#define N_RUN_COLS (sizeof(run_cols) / sizeof(run_cols[0]))

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
    "CREATE TABLE IF NOT EXISTS enrichments (run_id TEXT NOT NULL, item_seq INTEGER NOT NULL,"
    " flow TEXT NOT NULL, data TEXT NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY (run_id, item_seq, flow)) WITHOUT ROWID;";

#define EV_SELECT "SELECT id, run_id, flow, type, ts, data, item_seq FROM events"
/* Retention's victims: non-item events older than ?1 of runs that finished before ?1. */
#define PRUNE_SELECT                                                                               \
    "SELECT e.id FROM events e WHERE e.ts < ?1 AND e.item_seq IS NULL AND EXISTS (SELECT 1"        \
    " FROM runs r WHERE r.id = e.run_id AND r.finished_at > 0 AND r.finished_at < ?1)"             \
    " ORDER BY e.id LIMIT ?2"
/* ?1..?11 of the run list statements: one per status, bound to the status or to NULL. */
#define STATUS_IN "status IN (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"

/* X(name, sql); a NULL sql is generated from run_cols by run_sql(). */
#define ST_LIST(X)                                                                                 \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                    \
    X(COMMIT, "COMMIT")                                                                            \
    X(ROLLBACK, "ROLLBACK")                                                                        \
    X(EV_APPEND, "INSERT INTO events (run_id, flow, type, ts, data, item_seq)"                     \
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                               \
    X(EV_SCAN_RUN, EV_SELECT " WHERE run_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3")                \
    X(EV_SCAN_ALL, EV_SELECT " WHERE id > ?1 ORDER BY id LIMIT ?2")                                \
    X(ITEMS_SCAN, "SELECT id, run_id, flow, type, ts, data, item_seq, (SELECT"                     \
                  " json_group_object(e.flow, json(e.data)) FROM enrichments e WHERE"              \
                  " e.run_id = events.run_id AND e.item_seq = events.item_seq) FROM events"        \
                  " WHERE run_id = ?1 AND item_seq IS NOT NULL AND item_seq > ?2"                  \
                  " AND type IN (?3, ?4) ORDER BY item_seq LIMIT ?5 OFFSET ?6")                    \
    X(ENRICH_PUT, "INSERT INTO enrichments (run_id, item_seq, flow, data, ts)"                     \
                  " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (run_id, item_seq, flow)"              \
                  " DO UPDATE SET data = excluded.data, ts = excluded.ts")                         \
    X(ITEMS_COUNT, "SELECT COUNT(*) FROM events WHERE run_id = ?1 AND item_seq IS NOT NULL")       \
    X(ITEMS_COUNT_TYPE, "SELECT COUNT(*) FROM events"                                              \
                        " WHERE run_id = ?1 AND item_seq IS NOT NULL AND type = ?2")               \
    X(EV_MAX, "SELECT COALESCE(MAX(id), 0) FROM events")                                           \
    X(EV_MIN, "SELECT MAX(COALESCE((SELECT MIN(id) FROM events), 0),"                              \
              " COALESCE((SELECT CAST(value AS INTEGER) + 1 FROM kv"                               \
              " WHERE key = 'pruned_through'), 0))")                                               \
    X(EV_PRUNE_MAX, "SELECT COALESCE(MAX(id), 0), COUNT(*) FROM (" PRUNE_SELECT ")")               \
    X(EV_PRUNE, "DELETE FROM events WHERE id IN (" PRUNE_SELECT ")")                               \
    X(IDEM_GET, "SELECT run_id, body_hash FROM idempotency WHERE key_hash = ?1")                   \
    X(IDEM_PUT, "INSERT INTO idempotency (key_hash, run_id, body_hash, created_at)"                \
                " VALUES (?1, ?2, ?3, ?4)")                                                        \
    X(IDEM_PRUNE, "DELETE FROM idempotency WHERE created_at < ?1")                                 \
    X(KV_GET, "SELECT value FROM kv WHERE key = ?1")                                               \
    X(KV_PUT, "INSERT INTO kv (key, value) VALUES (?1, ?2)"                                        \
              " ON CONFLICT (key) DO UPDATE SET value = excluded.value")                           \
    X(RUN_INSERT, NULL)                                                                            \
    X(RUN_UPDATE, NULL)                                                                            \
    X(RUN_GET, NULL)                                                                               \
    X(RUNS_ACTIVE, NULL)                                                                           \
    X(RUN_LIST, NULL) /* + 1: with a status filter, + 2: with a flow filter */                     \
    X(RUN_LIST_S, NULL)                                                                            \
    X(RUN_LIST_F, NULL)                                                                            \
    X(RUN_LIST_SF, NULL)                                                                           \
    X(RUN_COUNT, NULL) /* the same variants */                                                     \
    X(RUN_COUNT_S, NULL)                                                                           \
    X(RUN_COUNT_F, NULL)                                                                           \
    X(RUN_COUNT_SF, NULL)

typedef enum {
#define X_ENUM(name, sql) ST_##name,
    ST_LIST(X_ENUM)
#undef X_ENUM
        ST__COUNT
} st_id;

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

typedef struct rd_sqlite {
    rd_store base; /* first, so the ops recover the store from the rd_store pointer */
    sqlite3 *db;
    bool tx_open; /* we executed BEGIN and have not ended the transaction since */
    sqlite3_stmt *st[ST__COUNT];
    rd_sqlite_outbox *ob; /* the outbox statements (store_sqlite_outbox.c) */
    rd_sqlite_ckpt *ckpt; /* the checkpointer thread (store_sqlite_ckpt.c), or NULL */
} rd_sqlite;

/* Bitmask of the active statuses, built from the status table so it cannot drift. */
#define X_ACTIVE(e, n, t, a) | ((a) ? 1u << RD_ST_##e : 0u)
static const unsigned active_mask = 0u RD_STATUS_LIST(X_ACTIVE);
#undef X_ACTIVE

/* ---- helpers ---------------------------------------------------------------------------- */

static int fail(rd_sqlite *s, const char *what)
{
    rd_log_err("store: %s: %s", what, sqlite3_errmsg(s->db));
    return RD_EIO;
}

/* Releases a statement for the next use. clear_bindings drops the borrowed (SQLITE_STATIC)
 * strings of the caller, so no stale pointer outlives the call that bound it. */
static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Maps a failed step: a unique or primary key violation is the caller's duplicate
 * (RD_ECONFLICT); anything else is logged as a storage error. */
static int step_fail(rd_sqlite *s, const char *what)
{
    int ext = sqlite3_extended_errcode(s->db);

    if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        return RD_ECONFLICT;
    return fail(s, what);
}

/* Steps a statement that returns no row, then releases it. */
static int step_done(rd_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int ret = sqlite3_step(st) == SQLITE_DONE ? 0 : step_fail(s, what);

    done(st);
    return ret;
}

/* Steps a statement that returns one integer (COUNT, MAX...), then releases it. */
static int step_i64(rd_sqlite *s, sqlite3_stmt *st, int64_t *out, const char *what)
{
    int ret = 0;

    if (sqlite3_step(st) == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else
        ret = fail(s, what);
    done(st);
    return ret;
}

/* Bind helpers carry the first failure in *rc so a sequence of binds is checked once. */
static void bind_text(sqlite3_stmt *st, int i, const char *v, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static void bind_i64(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = sqlite3_bind_int64(st, i, v);
}

static int bind_fail(rd_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int ret = fail(s, what);

    done(st);
    return ret;
}

/* A statement still stepping means an rd_event_cb called back into the same scan; rebinding
 * it would restart the outer iteration, so refuse. */
static int check_idle(sqlite3_stmt *st, const char *what)
{
    if (!sqlite3_stmt_busy(st))
        return 0;
    rd_log_err("store: %s: called from its own callback", what);
    return RD_EINVAL;
}

/* Copies result column col into buf (NULL: the caller does not want it). -1 if it is cut. */
static int copy_out(sqlite3_stmt *st, int col, char *buf, size_t len)
{
    const char *v = (const char *)sqlite3_column_text(st, col);

    if (!buf)
        return 0;
    return (size_t)snprintf(buf, len, "%s", v ? v : "") < len ? 0 : -1;
}

/* Steps a statement expected to return at most one row: SQLITE_ROW (the row is current),
 * RD_ENOTFOUND, or RD_EIO. The caller releases it. */
static int step_row(rd_sqlite *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return rc;
    return rc == SQLITE_DONE ? RD_ENOTFOUND : fail(s, what);
}

/* ---- transactions ----------------------------------------------------------------------- */

/* Called before every write. Opens the batch's transaction if none is open. */
static int tx_begin(rd_sqlite *s)
{
    if (s->tx_open) {
        if (!sqlite3_get_autocommit(s->db))
            return 0;
        /* SQLite rolled our transaction back after an error. Writing now would autocommit a
         * fragment of the burst; refuse until the caller ends the burst. */
        rd_log_err("store: write refused: the open transaction was rolled back by an error");
        return RD_EIO;
    }
    if (step_done(s, s->st[ST_BEGIN], "begin") != 0)
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
    if (step_done(s, s->st[ST_COMMIT], "commit") == 0)
        return 0;
    /* A failed COMMIT can leave the transaction open. Roll it back, so that what the caller
     * was told (nothing of this burst is stored) stays true after a later commit. */
    if (!sqlite3_get_autocommit(s->db))
        step_done(s, s->st[ST_ROLLBACK], "rollback after failed commit");
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
    return step_done(s, s->st[ST_ROLLBACK], "rollback") == 0 ? 0 : RD_EIO;
}

/* For the satellite files (store_sqlite_int.h). */
sqlite3 *rd_sqlite_db(rd_store *base)
{
    return ((rd_sqlite *)base)->db;
}

int rd_sqlite_write_begin(rd_store *base)
{
    return tx_begin((rd_sqlite *)base);
}

rd_sqlite_outbox *rd_sqlite_outbox_of(rd_store *base)
{
    return ((rd_sqlite *)base)->ob;
}

/* ---- runs ------------------------------------------------------------------------------- */

static int bind_json(sqlite3_stmt *st, int i, const json_t *j)
{
    char *txt;

    if (!j)
        return sqlite3_bind_null(st, i);
    /* ENCODE_ANY: input and result may be bare scalars, not only objects or arrays. */
    txt = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt)
        return SQLITE_NOMEM;
    return sqlite3_bind_text(st, i, txt, -1, free); /* SQLite frees txt, even on failure */
}

static int bind_col(sqlite3_stmt *st, int i, const run_col *c, const rd_run *r)
{
    const char *p = (const char *)r + c->off;

    switch (c->kind) {
    case COL_STR:
        return sqlite3_bind_text(st, i, p, (int)strnlen(p, c->size), SQLITE_STATIC);
    case COL_I64:
        return sqlite3_bind_int64(st, i, *(const int64_t *)p);
    case COL_INT:
        return sqlite3_bind_int(st, i, *(const int *)p);
    case COL_BOOL:
        return sqlite3_bind_int(st, i, *(const bool *)p ? 1 : 0);
    case COL_STATUS:
        return sqlite3_bind_int(st, i, (int)*(const rd_status *)p);
    case COL_REASON:
        return sqlite3_bind_int(st, i, (int)*(const rd_reason *)p);
    case COL_JSON:
        return bind_json(st, i, *(json_t *const *)p);
    }
    return SQLITE_MISUSE;
}

static int bind_run(rd_sqlite *s, sqlite3_stmt *st, const rd_run *r, const char *what)
{
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        if (bind_col(st, (int)i + 1, &run_cols[i], r) != SQLITE_OK) {
            rd_log_err("store: %s: cannot bind %s: %s", what, run_cols[i].name,
                       sqlite3_errmsg(s->db));
            done(st);
            return RD_EIO;
        }
    }
    return 0;
}

static int read_json(sqlite3_stmt *st, int i, json_t **out)
{
    json_error_t jerr;

    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    /* ALLOW_NUL: json_dumps wrote "\u0000" escapes for strings holding NUL bytes. */
    *out = json_loadb((const char *)sqlite3_column_text(st, i), (size_t)sqlite3_column_bytes(st, i),
                      JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    return *out ? 0 : -1;
}

/* Reads result column i into the record. -1 when the stored value is not a valid one. */
static int read_col(sqlite3_stmt *st, int i, const run_col *c, rd_run *r)
{
    char *p = (char *)r + c->off;
    int64_t v;

    if (c->kind == COL_STR)
        return copy_out(st, i, p, c->size);
    if (c->kind == COL_JSON)
        return read_json(st, i, (json_t **)p);
    v = sqlite3_column_int64(st, i);
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

static int row_to_run(sqlite3_stmt *st, rd_run **out)
{
    rd_run *r = rd_run_new();

    if (!r) {
        rd_log_err("store: out of memory reading a run");
        return RD_EIO;
    }
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        if (read_col(st, (int)i, &run_cols[i], r) != 0) {
            rd_log_err("store: run %s: invalid stored %s", sqlite3_column_text(st, 0),
                       run_cols[i].name);
            rd_run_free(r);
            return RD_EIO;
        }
    }
    *out = r;
    return 0;
}

/* Steps st to the end, collecting every row as a record; releases st. */
static int collect_runs(rd_sqlite *s, sqlite3_stmt *st, rd_run ***out, size_t *n)
{
    rd_run **v = NULL;
    size_t len = 0, cap = 0;
    int rc, ret = 0;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            rd_run **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));
            if (!nv) {
                ret = RD_EIO;
                rd_log_err("store: out of memory listing runs");
                break;
            }
            v = nv;
        }
        if ((ret = row_to_run(st, &v[len])) != 0)
            break;
        len++;
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = fail(s, "run list");
    done(st);
    if (ret != 0) {
        rd_run_array_free(v, len);
        return ret;
    }
    *out = v;
    *n = len;
    return 0;
}

static int sqlite_run_insert(rd_store *base, const rd_run *r)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUN_INSERT];
    int rc = tx_begin(s);

    if (rc != 0 || (rc = bind_run(s, st, r, "run insert")) != 0)
        return rc;
    return step_done(s, st, "run insert");
}

static int sqlite_run_update(rd_store *base, const rd_run *r)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUN_UPDATE];
    int rc = tx_begin(s);

    if (rc != 0 || (rc = bind_run(s, st, r, "run update")) != 0)
        return rc;
    if ((rc = step_done(s, st, "run update")) != 0)
        return rc;
    return sqlite3_changes(s->db) > 0 ? 0 : RD_ENOTFOUND;
}

static int sqlite_run_get(rd_store *base, const char *id, rd_run **out)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUN_GET];
    int rc = SQLITE_OK, ret;

    bind_text(st, 1, id, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "run get");
    if ((ret = step_row(s, st, "run get")) == SQLITE_ROW)
        ret = row_to_run(st, out);
    done(st);
    return ret;
}

/* Binds ?1..?11 of STATUS_IN: the status itself when its bit is set, else NULL, which never
 * matches. A mask naming no valid status therefore matches nothing. */
static void bind_status_mask(sqlite3_stmt *st, unsigned mask, int *rc)
{
    for (int i = 0; i < RD_ST__COUNT && *rc == SQLITE_OK; i++)
        *rc = mask & (1u << i) ? sqlite3_bind_int(st, i + 1, i) : sqlite3_bind_null(st, i + 1);
}

/* Binds the filter part shared by a RUN_LIST* statement and its RUN_COUNT* twin. */
static void bind_run_filter(sqlite3_stmt *st, const rd_run_filter *f, int *rc)
{
    if (f->status_mask)
        bind_status_mask(st, f->status_mask, rc);
    if (f->flow)
        bind_text(st, sqlite3_bind_parameter_index(st, ":flow"), f->flow, rc);
}

static int sqlite_run_list(rd_store *base, const rd_run_filter *f, int64_t offset, int limit,
                           rd_run ***out, size_t *n, int64_t *total)
{
    rd_sqlite *s = (rd_sqlite *)base;
    static const rd_run_filter any = {0, NULL};
    int variant, rc = SQLITE_OK;
    sqlite3_stmt *st;

    f = f ? f : &any;
    variant = (f->status_mask ? 1 : 0) + (f->flow ? 2 : 0);
    if (total) {
        st = s->st[ST_RUN_COUNT + variant];
        bind_run_filter(st, f, &rc);
        if (rc != SQLITE_OK)
            return bind_fail(s, st, "run count");
        if ((rc = step_i64(s, st, total, "run count")) != 0)
            return rc;
    }
    st = s->st[ST_RUN_LIST + variant];
    bind_run_filter(st, f, &rc);
    bind_i64(st, sqlite3_bind_parameter_index(st, ":limit"), limit > 0 ? limit : -1, &rc);
    bind_i64(st, sqlite3_bind_parameter_index(st, ":offset"), offset > 0 ? offset : 0, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "run list");
    return collect_runs(s, st, out, n);
}

static int sqlite_runs_active(rd_store *base, rd_run ***out, size_t *n)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_RUNS_ACTIVE];
    int rc = SQLITE_OK;

    bind_status_mask(st, active_mask, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "runs active");
    return collect_runs(s, st, out, n);
}

/* ---- events and items ------------------------------------------------------------------- */

static int sqlite_event_append(rd_store *base, const char *run_id, const char *flow,
                               const char *type, int64_t ts, const char *data, int64_t item_seq,
                               int64_t *out_id)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_EV_APPEND];
    int rc = tx_begin(s);

    if (rc != 0)
        return rc;
    bind_text(st, 1, run_id, &rc);
    bind_text(st, 2, flow, &rc);
    bind_text(st, 3, type, &rc);
    bind_i64(st, 4, ts, &rc);
    bind_text(st, 5, data, &rc);
    if (item_seq > 0)
        bind_i64(st, 6, item_seq, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "event append");
    if ((rc = step_done(s, st, "event append")) != 0)
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
    rc = rc == SQLITE_DONE ? 0 : fail(s, what);
    done(st);
    return rc;
}

static int sqlite_events_scan(rd_store *base, const char *run_id, int64_t after_id, int limit,
                              rd_event_cb cb, void *arg)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[run_id ? ST_EV_SCAN_RUN : ST_EV_SCAN_ALL];
    int i = 1, rc = check_idle(st, "events scan");

    if (rc != 0)
        return rc;
    if (run_id)
        bind_text(st, i++, run_id, &rc);
    bind_i64(st, i++, after_id, &rc);
    bind_i64(st, i, limit > 0 ? limit : -1, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "events scan");
    return scan_events(s, st, cb, arg, "events scan");
}

static int items_count(rd_sqlite *s, const rd_item_query *q, const char *type, int64_t *total)
{
    /* Without a status filter the count is answered from the (run_id, item_seq) index alone;
     * with one, each row's type must be read. */
    sqlite3_stmt *st = s->st[type ? ST_ITEMS_COUNT_TYPE : ST_ITEMS_COUNT];
    int rc = SQLITE_OK;

    bind_text(st, 1, q->run_id, &rc);
    if (type)
        bind_text(st, 2, type, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "items count");
    return step_i64(s, st, total, "items count");
}

static int sqlite_items_scan(rd_store *base, const rd_item_query *q, rd_event_cb cb, void *arg,
                             int64_t *total)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_ITEMS_SCAN];
    /* status 1 keeps run.item rows, 2 run.item_error rows; anything else keeps both. */
    const char *ok = q->status == 2 ? NULL : "run.item";
    const char *err = q->status == 1 ? NULL : "run.item_error";
    const char *only = !ok ? err : !err ? ok : NULL;
    bool cursor = q->after_seq > 0;
    int rc = check_idle(st, "items scan");

    if (rc != 0)
        return rc;
    if (total && (rc = items_count(s, q, only, total)) != 0)
        return rc;
    /* One statement serves both modes: cursor mode ranges over the index from after_seq with
     * no OFFSET; page mode starts at seq 0 and skips offset rows. */
    bind_text(st, 1, q->run_id, &rc);
    bind_i64(st, 2, cursor ? q->after_seq : 0, &rc);
    bind_text(st, 3, ok, &rc);
    bind_text(st, 4, err, &rc);
    bind_i64(st, 5, q->limit > 0 ? q->limit : -1, &rc);
    bind_i64(st, 6, !cursor && q->offset > 0 ? q->offset : 0, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "items scan");
    return scan_events(s, st, cb, arg, "items scan");
}

static int sqlite_max_event_id(rd_store *base, int64_t *out)
{
    return step_i64((rd_sqlite *)base, ((rd_sqlite *)base)->st[ST_EV_MAX], out, "max event id");
}

static int sqlite_min_event_id(rd_store *base, int64_t *out)
{
    return step_i64((rd_sqlite *)base, ((rd_sqlite *)base)->st[ST_EV_MIN], out, "min event id");
}

static int sqlite_kv_get(rd_store *base, const char *key, char **out_value);
static int sqlite_kv_put(rd_store *base, const char *key, const char *value);

static int sqlite_events_prune(rd_store *base, int64_t before_ms, int limit, int64_t *n_deleted)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_EV_PRUNE_MAX];
    int rc = tx_begin(s);
    int64_t max_id = 0, n = 0;

    *n_deleted = 0;
    if (rc != 0)
        return rc;
    bind_i64(st, 1, before_ms, &rc);
    bind_i64(st, 2, limit, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "prune");
    if (sqlite3_step(st) != SQLITE_ROW) {
        done(st);
        return fail(s, "prune");
    }
    max_id = sqlite3_column_int64(st, 0);
    n = sqlite3_column_int64(st, 1);
    done(st);
    if (n == 0)
        return 0;
    st = s->st[ST_EV_PRUNE];
    bind_i64(st, 1, before_ms, &rc);
    bind_i64(st, 2, limit, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "prune");
    if ((rc = step_done(s, st, "prune")) != 0)
        return rc;
    /* The watermark only grows: victims are taken in id order, oldest first. */
    char val[32];
    int64_t prev = 0;
    char *old = NULL;
    if (sqlite_kv_get(base, "pruned_through", &old) == 0 && old)
        prev = atoll(old);
    free(old);
    snprintf(val, sizeof val, "%lld", (long long)(max_id > prev ? max_id : prev));
    *n_deleted = n;
    return sqlite_kv_put(base, "pruned_through", val);
}

static int sqlite_idem_prune(rd_store *base, int64_t before_ms, int64_t *n_deleted)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_IDEM_PRUNE];
    int rc = tx_begin(s);

    *n_deleted = 0;
    if (rc != 0)
        return rc;
    bind_i64(st, 1, before_ms, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "idempotency prune");
    if ((rc = step_done(s, st, "idempotency prune")) == 0)
        *n_deleted = sqlite3_changes(s->db);
    return rc;
}

static int sqlite_enrichment_put(rd_store *base, const char *run_id, int64_t item_seq,
                                 const char *flow, const char *data, int64_t ts)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_ENRICH_PUT];
    int rc = tx_begin(s);

    if (rc != 0)
        return rc;
    bind_text(st, 1, run_id, &rc);
    bind_i64(st, 2, item_seq, &rc);
    bind_text(st, 3, flow, &rc);
    bind_text(st, 4, data, &rc);
    bind_i64(st, 5, ts, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "enrichment put");
    return step_done(s, st, "enrichment put");
}

/* ---- idempotency keys and kv ------------------------------------------------------------ */

static int sqlite_idem_get(rd_store *base, const char *key_hash, char *run_id, size_t run_id_len,
                           char *body_hash, size_t body_hash_len)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_IDEM_GET];
    int rc = SQLITE_OK, ret;

    bind_text(st, 1, key_hash, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "idempotency get");
    if ((ret = step_row(s, st, "idempotency get")) == SQLITE_ROW) {
        ret = 0;
        if (copy_out(st, 0, run_id, run_id_len) || copy_out(st, 1, body_hash, body_hash_len)) {
            rd_log_err("store: idempotency get: buffer too small");
            ret = RD_EINVAL;
        }
    }
    done(st);
    return ret;
}

static int sqlite_idem_put(rd_store *base, const char *key_hash, const char *run_id,
                           const char *body_hash, int64_t ts)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_IDEM_PUT];
    int rc = tx_begin(s);

    if (rc != 0)
        return rc;
    bind_text(st, 1, key_hash, &rc);
    bind_text(st, 2, run_id, &rc);
    bind_text(st, 3, body_hash, &rc);
    bind_i64(st, 4, ts, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "idempotency put");
    return step_done(s, st, "idempotency put");
}

static int sqlite_kv_get(rd_store *base, const char *key, char **out_value)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_KV_GET];
    int rc = SQLITE_OK, ret;

    bind_text(st, 1, key, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "kv get");
    if ((ret = step_row(s, st, "kv get")) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        ret = (*out_value = strdup(v ? v : "")) ? 0 : RD_EIO;
    }
    done(st);
    return ret;
}

static int sqlite_kv_put(rd_store *base, const char *key, const char *value)
{
    rd_sqlite *s = (rd_sqlite *)base;
    sqlite3_stmt *st = s->st[ST_KV_PUT];
    int rc = tx_begin(s);

    if (rc != 0)
        return rc;
    bind_text(st, 1, key, &rc);
    bind_text(st, 2, value, &rc);
    if (rc != SQLITE_OK)
        return bind_fail(s, st, "kv put");
    return step_done(s, st, "kv put");
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
    .run_insert = sqlite_run_insert,
    .run_update = sqlite_run_update,
    .run_get = sqlite_run_get,
    .run_list = sqlite_run_list,
    .runs_active = sqlite_runs_active,
    .event_append = sqlite_event_append,
    .events_scan = sqlite_events_scan,
    .items_scan = sqlite_items_scan,
    .idem_get = sqlite_idem_get,
    .idem_put = sqlite_idem_put,
    .max_event_id = sqlite_max_event_id,
    .min_event_id = sqlite_min_event_id,
    .kv_get = sqlite_kv_get,
    .kv_put = sqlite_kv_put,
    RD_SQLITE_OUTBOX_OPS,
    .enrichment_put = sqlite_enrichment_put,
    .events_prune = sqlite_events_prune,
    .idem_prune = sqlite_idem_prune,
};

/* A bounded string builder for the generated SQL; overflow is reported once at the end. */
typedef struct sqlbuf {
    char s[4096];
    size_t n;
} sqlbuf;

static __attribute__((format(printf, 2, 3))) void sb_add(sqlbuf *b, const char *fmt, ...)
{
    va_list ap;
    int k;

    if (b->n >= sizeof(b->s))
        return;
    va_start(ap, fmt);
    k = vsnprintf(b->s + b->n, sizeof(b->s) - b->n, fmt, ap);
    va_end(ap);
    b->n = k < 0 ? sizeof(b->s) : b->n + (size_t)k;
}

/* "id, flow, ..." or, with assign, "flow = ?2, ..." (id excluded: it is the key). */
/* Columns an UPDATE leaves alone: they never change after insert, and assigning an indexed
 * column makes SQLite rewrite its index entries (a page written to the WAL per index). */
static bool immutable_col(const char *name)
{
    return strcmp(name, "id") == 0 || strcmp(name, "flow") == 0 || strcmp(name, "created_at") == 0;
}

static void sb_cols(sqlbuf *b, bool assign)
{
    bool first = true;
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        if (assign && immutable_col(run_cols[i].name))
            continue;
        const char *sep = first ? "" : ", ";
        first = false;
        if (assign)
            sb_add(b, "%s%s = ?%zu", sep, run_cols[i].name, i + 1);
        else
            sb_add(b, "%s%s", sep, run_cols[i].name);
    }
}

static void sb_create_runs(sqlbuf *b)
{
    sb_add(b, "CREATE TABLE IF NOT EXISTS runs (");
    for (size_t i = 0; i < N_RUN_COLS; i++) {
        col_kind k = run_cols[i].kind;
        const char *type = k == COL_STR || k == COL_JSON ? "TEXT" : "INTEGER";
        sb_add(b, "%s%s %s%s", i ? ", " : "", run_cols[i].name, type,
               i == 0         ? " PRIMARY KEY"
               : k == COL_STR ? " NOT NULL DEFAULT ''"
                              : "");
    }
    sb_add(b, ")");
}

/* The WHERE clause of a RUN_LIST / RUN_COUNT variant: + 1 status filter, + 2 flow filter. */
static void sb_run_filter(sqlbuf *b, int v)
{
    if (v & 1)
        sb_add(b, " WHERE " STATUS_IN);
    if (v & 2)
        sb_add(b, "%s flow = :flow", v & 1 ? " AND" : " WHERE");
}

/* Generates the SQL of the runs statements (those with a NULL entry in ST_LIST). */
static void run_sql(st_id id, sqlbuf *b)
{
    if (id == ST_RUN_INSERT) {
        sb_add(b, "INSERT INTO runs (");
        sb_cols(b, false);
        sb_add(b, ") VALUES (");
        for (size_t i = 0; i < N_RUN_COLS; i++)
            sb_add(b, "%s?%zu", i ? ", " : "", i + 1);
        sb_add(b, ")");
    } else if (id == ST_RUN_UPDATE) {
        sb_add(b, "UPDATE runs SET ");
        sb_cols(b, true);
        sb_add(b, " WHERE id = ?1");
    } else if (id >= ST_RUN_COUNT) {
        sb_add(b, "SELECT COUNT(*) FROM runs");
        sb_run_filter(b, (int)id - ST_RUN_COUNT);
    } else {
        sb_add(b, "SELECT ");
        sb_cols(b, false);
        sb_add(b, " FROM runs");
        if (id == ST_RUN_GET) {
            sb_add(b, " WHERE id = ?1");
        } else if (id == ST_RUNS_ACTIVE) {
            sb_add(b, " WHERE " STATUS_IN " ORDER BY created_at, rowid");
        } else {
            sb_run_filter(b, (int)id - ST_RUN_LIST);
            sb_add(b, " ORDER BY created_at DESC, rowid DESC LIMIT :limit OFFSET :offset");
        }
    }
}

static int prepare_all(rd_sqlite *s, char *err, size_t errlen)
{
    for (int i = 0; i < ST__COUNT; i++) {
        sqlbuf b = {.n = 0};
        const char *sql = st_sql[i];
        if (!sql) {
            run_sql((st_id)i, &b);
            if (b.n >= sizeof(b.s)) {
                snprintf(err, errlen, "generated SQL for %s is too long", st_name[i]);
                return RD_EIO;
            }
            sql = b.s;
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
    sqlbuf b = {.n = 0};
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
    sb_create_runs(&b);
    sb_add(&b, "; %s PRAGMA user_version = %d;", schema_sql, SCHEMA_VERSION);
    if (b.n >= sizeof(b.s)) {
        snprintf(err, errlen, "schema SQL is too long");
        rc = RD_EIO;
        goto out;
    }
    rc = exec(s, b.s, err, errlen);
    if (rc == 0)
        rc = exec(s, rd_sqlite_outbox_schema, err, errlen);
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
