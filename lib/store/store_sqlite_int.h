/*
 * store_sqlite_int.h: private to the SQLite backend's files. store_sqlite.c owns the
 * connection, its transaction, the schema and the prepared statements of the core tables;
 * store_sqlite_runs.c the runs table, store_sqlite_events.c events, items and enrichments,
 * store_sqlite_kv.c idempotency keys, the kv table and the workers' process groups. Those four
 * share the rd_sqlite struct, its statement list and the step/bind helpers below.
 * store_sqlite_outbox.c (the webhook outbox tables, with statements of its own) and
 * store_sqlite_ckpt.c (WAL checkpoints) see the store only through the accessors at the end; the
 * outbox also uses the bind helpers. Nothing else includes this header.
 */
#ifndef RUNSD_STORE_SQLITE_INT_H
#define RUNSD_STORE_SQLITE_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

typedef struct rd_sqlite_outbox rd_sqlite_outbox;
typedef struct rd_sqlite_ckpt rd_sqlite_ckpt;

/* ---- the core tables' statements -------------------------------------------------------- */

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
    X(EV_APPEND, "INSERT INTO events (run_id, flow, type, ts, data, item_seq, id)"                 \
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")                                           \
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
    X(PG_PUT, "INSERT OR REPLACE INTO pgroups (pgid, start_ticks, boot_id, run_id)"                \
              " VALUES (?1, ?2, ?3, ?4)")                                                          \
    X(PG_DEL, "DELETE FROM pgroups WHERE pgid = ?1")                                               \
    X(PG_SCAN, "SELECT pgid, start_ticks, boot_id, run_id FROM pgroups ORDER BY pgid")             \
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

typedef struct rd_sqlite {
    rd_store base; /* first, so the ops recover the store from the rd_store pointer */
    sqlite3 *db;
    bool tx_open; /* we executed BEGIN and have not ended the transaction since */
    sqlite3_stmt *st[ST__COUNT];
    rd_sqlite_outbox *ob; /* the outbox statements (store_sqlite_outbox.c) */
    rd_sqlite_ckpt *ckpt; /* the checkpointer thread (store_sqlite_ckpt.c), or NULL */
} rd_sqlite;

/* ---- helpers shared by the core files (store_sqlite.c) ---------------------------------- */

/** Logs what failed with SQLite's message. Returns RD_EIO. */
int rd_sqlite_fail(rd_sqlite *s, const char *what);
/** Steps a statement that returns no row, then releases it. 0, RD_ECONFLICT on a unique or
 * primary key violation, else RD_EIO. */
int rd_sqlite_step_done(rd_sqlite *s, sqlite3_stmt *st, const char *what);
/** Steps a statement that returns one integer (COUNT, MAX...) into *out, then releases it. */
int rd_sqlite_step_i64(rd_sqlite *s, sqlite3_stmt *st, int64_t *out, const char *what);
/** Steps a statement expected to return at most one row: SQLITE_ROW (the row is current),
 * RD_ENOTFOUND, or RD_EIO. The caller releases it. */
int rd_sqlite_step_row(rd_sqlite *s, sqlite3_stmt *st, const char *what);
/** A failed bind: logs, releases st, returns RD_EIO. */
int rd_sqlite_bind_fail(rd_sqlite *s, sqlite3_stmt *st, const char *what);
/** RD_EINVAL when st is still stepping (a scan's callback called back into the same scan). */
int rd_sqlite_check_idle(sqlite3_stmt *st, const char *what);
/** Copies result column col into buf (NULL: the caller does not want it). -1 if it is cut. */
int rd_sqlite_copy_out(sqlite3_stmt *st, int col, char *buf, size_t len);
/** Called before every write: opens the batch's transaction if none is open. 0 or RD_EIO. */
int rd_sqlite_tx_begin(rd_sqlite *s);

/* Releases a statement for the next use. clear_bindings drops the borrowed (SQLITE_STATIC)
 * strings of the caller, so no stale pointer outlives the call that bound it. Inline, like
 * the binds: they run several times for every event appended. */
static inline void rd_sqlite_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Bind helpers carry the first failure in *rc so a sequence of binds is checked once. */
static inline void rd_sqlite_bind_text(sqlite3_stmt *st, int i, const char *v, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static inline void rd_sqlite_bind_i64(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
    if (*rc == SQLITE_OK)
        *rc = sqlite3_bind_int64(st, i, v);
}

/* ---- the core files' members of the rd_store_ops table ---------------------------------- */

/* store_sqlite_runs.c */
/** The CREATE TABLE of runs, generated from its column list, into buf. false if too long. */
bool rd_sqlite_runs_schema(char *buf, size_t len);
/** The SQL of a runs statement (one with a NULL entry in ST_LIST) into buf. false if too long. */
bool rd_sqlite_runs_sql(st_id id, char *buf, size_t len);
int rd_sqlite_run_insert(rd_store *base, const rd_run *r);
int rd_sqlite_run_update(rd_store *base, const rd_run *r);
int rd_sqlite_run_get(rd_store *base, const char *id, rd_run **out);
int rd_sqlite_run_list(rd_store *base, const rd_run_filter *f, int64_t offset, int limit,
                       rd_run ***out, size_t *n, int64_t *total);
int rd_sqlite_runs_active(rd_store *base, rd_run ***out, size_t *n);

/* store_sqlite_events.c */
int rd_sqlite_event_append(rd_store *base, const char *run_id, const char *flow, const char *type,
                           int64_t ts, const char *data, int64_t item_seq, int64_t *out_id);
int rd_sqlite_events_scan(rd_store *base, const char *run_id, int64_t after_id, int limit,
                          rd_event_cb cb, void *arg);
int rd_sqlite_items_scan(rd_store *base, const rd_item_query *q, rd_event_cb cb, void *arg,
                         int64_t *total);
int rd_sqlite_max_event_id(rd_store *base, int64_t *out);
int rd_sqlite_min_event_id(rd_store *base, int64_t *out);
int rd_sqlite_events_prune(rd_store *base, int64_t before_ms, int limit, int64_t *n_deleted);
int rd_sqlite_enrichment_put(rd_store *base, const char *run_id, int64_t item_seq, const char *flow,
                             const char *data, int64_t ts);

/* store_sqlite_kv.c */
int rd_sqlite_idem_get(rd_store *base, const char *key_hash, char *run_id, size_t run_id_len,
                       char *body_hash, size_t body_hash_len);
int rd_sqlite_idem_put(rd_store *base, const char *key_hash, const char *run_id,
                       const char *body_hash, int64_t ts);
int rd_sqlite_idem_prune(rd_store *base, int64_t before_ms, int64_t *n_deleted);
int rd_sqlite_kv_get(rd_store *base, const char *key, char **out_value);
int rd_sqlite_kv_put(rd_store *base, const char *key, const char *value);
int rd_sqlite_pgroup_put(rd_store *base, const rd_pgroup *g);
int rd_sqlite_pgroup_del(rd_store *base, int64_t pgid);
int rd_sqlite_pgroups_scan(rd_store *base, rd_pgroup_cb cb, void *arg);

/* ---- for the satellites: the outbox and the checkpointer -------------------------------- */

/* store_sqlite.c */
/** The connection of a SQLite store. */
sqlite3 *rd_sqlite_db(rd_store *s);
/** Called before every write: opens the batch's transaction if none is open. 0 or RD_EIO. */
int rd_sqlite_write_begin(rd_store *s);
/** The outbox statements of a store (NULL before they are prepared). */
rd_sqlite_outbox *rd_sqlite_outbox_of(rd_store *s);

/* store_sqlite_ckpt.c: WAL checkpoints on a thread of their own */
/** Starts the checkpointer for the file at path and turns the writer's automatic checkpoints
 * off. 0 (with *out NULL when it could not start: the writer then keeps checkpointing). */
int rd_sqlite_ckpt_start(const char *path, sqlite3 *writer, rd_sqlite_ckpt **out);
/** Stops the thread and checkpoints the WAL fully on the writer. NULL is a no-op. */
void rd_sqlite_ckpt_stop(rd_sqlite_ckpt *c, sqlite3 *writer);

/* store_sqlite_outbox.c */
/** CREATE ... IF NOT EXISTS of the outbox tables; run by migrate() in its transaction. */
extern const char rd_sqlite_outbox_schema[];
/** Prepares the outbox statements on db. 0, or RD_EIO with a reason in err. */
int rd_sqlite_outbox_open(sqlite3 *db, rd_sqlite_outbox **out, char *err, size_t errlen);
/** Finalizes the statements; NULL is a no-op. Call before sqlite3_close. */
void rd_sqlite_outbox_close(rd_sqlite_outbox *ob);

int rd_sqlite_dlv_insert(rd_store *s, const rd_delivery *d);
int rd_sqlite_dlv_update(rd_store *s, const rd_delivery *d);
int rd_sqlite_dlv_get(rd_store *s, const char *id, rd_delivery_cb cb, void *arg);
int rd_sqlite_dlv_due(rd_store *s, int64_t now, int limit, rd_delivery_cb cb, void *arg);
int rd_sqlite_dlv_next_due(rd_store *s, int64_t *out);
int rd_sqlite_dlv_backlog(rd_store *s, int64_t *out);
int rd_sqlite_dlv_run_scan(rd_store *s, const char *run_id, int64_t offset, int limit,
                           rd_delivery_cb cb, void *arg, int64_t *total);
int rd_sqlite_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now,
                       const char *why);
int rd_sqlite_dlv_stopped(rd_store *s, const char *run_id, const char *url, bool *out);
int rd_sqlite_dlv_lease(rd_store *s, const char *id);
int rd_sqlite_dlv_unlease(rd_store *s);
int rd_sqlite_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *a);
int rd_sqlite_dlv_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted);
int rd_sqlite_dlv_attempts_scan(rd_store *s, const char *delivery_id, rd_attempt_cb cb, void *arg);

/* The outbox members of store_sqlite.c's rd_store_ops table. */
#define RD_SQLITE_OUTBOX_OPS                                                                       \
    .dlv_insert = rd_sqlite_dlv_insert, .dlv_update = rd_sqlite_dlv_update,                        \
    .dlv_get = rd_sqlite_dlv_get, .dlv_due = rd_sqlite_dlv_due,                                    \
    .dlv_next_due = rd_sqlite_dlv_next_due, .dlv_run_scan = rd_sqlite_dlv_run_scan,                \
    .dlv_stop = rd_sqlite_dlv_stop, .dlv_stopped = rd_sqlite_dlv_stopped,                          \
    .dlv_lease = rd_sqlite_dlv_lease, .dlv_unlease = rd_sqlite_dlv_unlease,                        \
    .dlv_attempt_add = rd_sqlite_dlv_attempt_add,                                                  \
    .dlv_attempts_scan = rd_sqlite_dlv_attempts_scan, .dlv_prune = rd_sqlite_dlv_prune,            \
    .dlv_backlog = rd_sqlite_dlv_backlog

#endif
