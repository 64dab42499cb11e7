/*
 * store_pg_int.h: private to the PostgreSQL backend's files. store_pg.c owns the connection
 * (libpq, always in pipeline mode), the transaction, the event id counter, reconnection and
 * the ops table; store_pg_schema.c the versioned migrations and the statement list;
 * store_pg_conn.c waiting with a deadline, reconnection and the commit marker that tells whether a
 * commit whose answer was lost was committed; store_pg_runs.c, store_pg_events.c (events, items,
 * enrichments, keys, kv, process groups) and store_pg_outbox.c the operations. Nothing outside
 * lib/store/store_pg*.c includes it.
 *
 * Writes whose answer the caller does not need (an event, a run's row, a delivery update) are
 * sent without waiting (rd_pg_send): the pipeline carries them to the server while the loop
 * goes on, and their results are read at the next call that needs an answer or at commit.
 * Operations that must answer (reads, conflicts, a lease) use rd_pg_call, one round trip
 * after the writes queued before it.
 */
#ifndef RUNSD_STORE_PG_INT_H
#define RUNSD_STORE_PG_INT_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "store/store.h"

/* X(name, sql): every statement, prepared by name at each (re)connection. Runs statements
 * are generated from store_cols.c (their sql is NULL here). */
#define EVP_SELECT "SELECT id, run_id, flow, type, ts, data, item_seq FROM events"
#define PGP_PRUNE_SELECT                                                                           \
    "SELECT e.id FROM events e WHERE e.ts < $1 AND e.item_seq IS NULL AND EXISTS (SELECT 1"        \
    " FROM runs r WHERE r.id = e.run_id AND r.finished_at > 0 AND r.finished_at < $1)"             \
    " ORDER BY e.id LIMIT $2"
#define PDLV_COLS                                                                                  \
    "seq, id, run_id, type, url, source, secret, body, state, attempts, manual, created_at,"       \
    " updated_at, next_at, last_code, last_error"
#define PDLV_DONE_BEFORE                                                                           \
    "SELECT id FROM deliveries WHERE state >= 2 AND updated_at < $1 ORDER BY seq LIMIT $2"

#define PG_LIST(X)                                                                                 \
    X(MARK, "INSERT INTO runsd_writers (writer, commit_seq, updated_at)"                           \
            " VALUES ($1, $3::bigint, $4) ON CONFLICT (writer) DO UPDATE SET updated_at = $4,"     \
            " commit_seq = (CASE WHEN runsd_writers.commit_seq = $2 THEN $3::bigint::text"         \
            " ELSE 'the commit marker of this daemon moved to ' || runsd_writers.commit_seq"       \
            " || ': another writer' END)::bigint")                                                 \
    X(MARK_RESOLVE, "INSERT INTO runsd_writers (writer, commit_seq, updated_at)"                   \
                    " VALUES ($1, -$3::bigint, $4) ON CONFLICT (writer) DO UPDATE SET"             \
                    " updated_at = $4, commit_seq = CASE WHEN runsd_writers.commit_seq = $2"       \
                    " THEN -$3::bigint ELSE runsd_writers.commit_seq END RETURNING commit_seq")    \
    X(SEQ_LOCK, "SELECT last_id FROM runsd_event_seq FOR UPDATE")                                  \
    X(SEQ_CHECK, "SELECT (CASE WHEN last_id = $1 THEN '1' ELSE 'the event id counter moved to '"   \
                 " || last_id || ': another writer' END)::int FROM runsd_event_seq FOR UPDATE")    \
    X(SEQ_SET, "UPDATE runsd_event_seq SET last_id = $1 WHERE last_id < $1")                       \
    X(EV_APPEND_MANY, "INSERT INTO events (id, run_id, flow, type, ts, data, item_seq)"            \
                      " SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],"    \
                      " $5::bigint[], $6::text[], $7::bigint[])")                                  \
    X(EV_SCAN_RUN, EVP_SELECT " WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3")               \
    X(EV_SCAN_ALL, EVP_SELECT " WHERE id > $1 ORDER BY id LIMIT $2")                               \
    X(ITEMS_SCAN, "SELECT id, run_id, flow, type, ts, data, item_seq, (SELECT"                     \
                  " json_object_agg(e.flow, e.data::json) FROM enrichments e WHERE"                \
                  " e.run_id = ev.run_id AND e.item_seq = ev.item_seq)::text FROM events ev"       \
                  " WHERE run_id = $1 AND item_seq IS NOT NULL AND item_seq > $2"                  \
                  " AND type IN ($3::text, $4::text) ORDER BY item_seq LIMIT $5 OFFSET $6")        \
    X(ITEMS_COUNT, "SELECT COUNT(*) FROM events WHERE run_id = $1 AND item_seq IS NOT NULL")       \
    X(ITEMS_COUNT_TYPE, "SELECT COUNT(*) FROM events"                                              \
                        " WHERE run_id = $1 AND item_seq IS NOT NULL AND type = $2")               \
    X(ENRICH_PUT, "INSERT INTO enrichments (run_id, item_seq, flow, data, ts)"                     \
                  " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (run_id, item_seq, flow)"              \
                  " DO UPDATE SET data = excluded.data, ts = excluded.ts")                         \
    X(EV_MAX, "SELECT GREATEST((SELECT last_id FROM runsd_event_seq),"                             \
              " (SELECT COALESCE(MAX(id), 0) FROM events))")                                       \
    X(EV_MIN, "SELECT GREATEST(COALESCE((SELECT MIN(id) FROM events), 0),"                         \
              " COALESCE((SELECT value::bigint + 1 FROM kv WHERE key = 'pruned_through'), 0))")    \
    X(EV_PRUNE_MAX, "SELECT COALESCE(MAX(id), 0), COUNT(*) FROM (" PGP_PRUNE_SELECT ") v")         \
    X(EV_PRUNE, "DELETE FROM events WHERE id IN (" PGP_PRUNE_SELECT ")")                           \
    X(IDEM_GET, "SELECT run_id, body_hash FROM idempotency WHERE key_hash = $1")                   \
    X(IDEM_PUT, "INSERT INTO idempotency (key_hash, run_id, body_hash, created_at)"                \
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")                                 \
    X(IDEM_PRUNE, "DELETE FROM idempotency WHERE created_at < $1")                                 \
    X(KV_GET, "SELECT value FROM kv WHERE key = $1")                                               \
    X(KV_PUT, "INSERT INTO kv (key, value) VALUES ($1, $2)"                                        \
              " ON CONFLICT (key) DO UPDATE SET value = excluded.value")                           \
    X(PG_PUT, "INSERT INTO pgroups (pgid, start_ticks, boot_id, run_id) VALUES ($1, $2, $3, $4)"   \
              " ON CONFLICT (pgid) DO UPDATE SET start_ticks = excluded.start_ticks,"              \
              " boot_id = excluded.boot_id, run_id = excluded.run_id")                             \
    X(PG_DEL, "DELETE FROM pgroups WHERE pgid = $1")                                               \
    X(PG_SCAN, "SELECT pgid, start_ticks, boot_id, run_id FROM pgroups ORDER BY pgid")             \
    X(DLV_INSERT, "INSERT INTO deliveries (id, run_id, type, url, source, secret, body, state,"    \
                  " attempts, manual, created_at, updated_at, next_at, last_code, last_error)"     \
                  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"     \
                  " ON CONFLICT DO NOTHING")                                                       \
    X(DLV_UPDATE, "UPDATE deliveries SET state = $2, attempts = $3, manual = $4,"                  \
                  " updated_at = $5, next_at = $6, last_code = $7, last_error = $8 WHERE id = $1") \
    X(DLV_GET, "SELECT " PDLV_COLS " FROM deliveries WHERE id = $1")                               \
    X(DLV_DUE, "SELECT " PDLV_COLS " FROM deliveries WHERE state = 0 AND next_at <= $1"            \
               " ORDER BY next_at, seq LIMIT $2")                                                  \
    X(DLV_NEXT_DUE, "SELECT COALESCE(MIN(next_at), 0) FROM deliveries WHERE state = 0")            \
    X(DLV_BACKLOG, "SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 0)"                      \
                   " + (SELECT COUNT(*) FROM deliveries WHERE state = 1)")                         \
    X(DLV_RUN_SCAN, "SELECT " PDLV_COLS " FROM deliveries WHERE run_id = $1 ORDER BY seq"          \
                    " LIMIT $2 OFFSET $3")                                                         \
    X(DLV_RUN_COUNT, "SELECT COUNT(*) FROM deliveries WHERE run_id = $1")                          \
    X(DLV_STOP, "UPDATE deliveries SET state = 4, next_at = 0, updated_at = $3, last_error = $4"   \
                " WHERE run_id = $1 AND url = $2 AND state = 0")                                   \
    X(DLV_STOPPED, "SELECT 1 FROM deliveries WHERE run_id = $1 AND url = $2 AND state = 4"         \
                   " LIMIT 1")                                                                     \
    X(DLV_LEASE, "UPDATE deliveries SET state = 1 WHERE id = $1 AND state = 0")                    \
    X(DLV_UNLEASE, "UPDATE deliveries SET state = 0 WHERE state = 1")                              \
    X(ATT_ADD, "INSERT INTO delivery_attempts (delivery_id, n, manual, at, duration_ms,"           \
               " status_code, error, next_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"             \
               " ON CONFLICT DO NOTHING")                                                          \
    X(ATT_SCAN, "SELECT delivery_id, n, manual, at, duration_ms, status_code, error, next_at"      \
                " FROM delivery_attempts WHERE delivery_id = $1 ORDER BY n")                       \
    X(DLV_PRUNE_ATT, "DELETE FROM delivery_attempts WHERE delivery_id IN (" PDLV_DONE_BEFORE ")")  \
    X(DLV_PRUNE, "DELETE FROM deliveries WHERE id IN (" PDLV_DONE_BEFORE ")")                      \
    X(RUN_INSERT, NULL)                                                                            \
    X(RUN_UPDATE, NULL)                                                                            \
    X(RUN_GET, NULL)                                                                               \
    X(RUNS_ACTIVE, NULL)                                                                           \
    X(RUN_LIST, NULL)                                                                              \
    X(RUN_COUNT, NULL)

typedef enum {
#define X_ENUM(name, sql) PS_##name,
    PG_LIST(X_ENUM)
#undef X_ENUM
        PS__COUNT
} pg_st;

/* Up to 40 text parameters of one statement; integers are formatted into buf. */
#define PG_MAX_ARGS 40
typedef struct pg_args {
    int n;
    const char *v[PG_MAX_ARGS];
    char buf[PG_MAX_ARGS][24];
} pg_args;

static inline void pga_str(pg_args *a, const char *s)
{
    a->v[a->n++] = s;
}

void pga_i64(pg_args *a, int64_t v);

/* A transaction's events, gathered into one multi-row INSERT (store_pg_batch.c): each
 * column the text of an array literal. Sent when full, before any other statement of the
 * transaction, and before COMMIT. */
#define PG_BATCH_COLS 7
#define PG_BATCH_ROWS 2000
#define PG_BATCH_BYTES (1 << 20)
typedef struct pg_batch {
    char *col[PG_BATCH_COLS];
    size_t len[PG_BATCH_COLS], cap[PG_BATCH_COLS];
    int rows;
} pg_batch;

/** Adds an event (item_seq <= 0: NULL). RD_EIO when out of memory (the batch is then
 * unusable until reset: the caller fails the transaction). */
int rd_pg_batch_add(pg_batch *b, int64_t id, const char *run_id, const char *flow, const char *type,
                    int64_t ts, const char *data, int64_t item_seq);
/** Whether the batch should be sent now. */
bool rd_pg_batch_full(const pg_batch *b);
/** Closes the array literals and points a's 7 parameters at them (valid until the next
 * reset). */
void rd_pg_batch_args(pg_batch *b, pg_args *a);
/** Empties the batch, keeping its memory. */
void rd_pg_batch_reset(pg_batch *b);
/** Frees the batch's memory. */
void rd_pg_batch_dispose(pg_batch *b);

/* The dsn's host names, resolved on the loop (store_pg_dns.c). */
typedef struct pg_dns pg_dns;

/* The backend's state. */
typedef struct rd_pg {
    rd_store base; /* first: the ops recover the store from the rd_store pointer */
    PGconn *conn;
    bool up;       /* connected, statements prepared, in pipeline mode */
    bool tx_open;  /* BEGIN was sent and the transaction has not ended */
    bool failed;   /* a statement of the open transaction failed: its commit must fail */
    int pending;   /* queued statements whose results are not read yet */
    bool have_ids; /* this transaction holds the lock of the id counter */
    int64_t next_id, top_id;
    int64_t last_id;      /* the counter as this store last committed it (valid unless resync) */
    bool resync;          /* a transaction failed: read the counter under its lock, not last_id */
    int64_t commit_top;   /* the counter the commit in flight writes (0: it holds no ids) */
    int64_t last_try;     /* monotonic ms of the last connection attempt */
    int64_t conn_until;   /* monotonic ms: a reconnection not done by then is given up */
    pg_batch events;      /* the transaction's events not sent yet (store_pg_batch.c) */
    bool probing;         /* a probe's SELECT 1 and Sync are out, their results not read */
    int64_t probe_until;  /* monotonic ms: the probe's answer is due */
    bool committing;      /* a transaction's COMMIT and Sync are out, their results not all read */
    int64_t commit_until; /* monotonic ms: the commit in flight's answer is due */
    bool commit_bad;      /* a result of the commit in flight failed */
    bool commit_done;     /* the commit in flight completed inside another call: commit_rc */
    int commit_rc;
    bool connecting;                   /* a connection was started; PQconnectPoll carries it on */
    bool preparing;                    /* connected again; the prepares and their Sync are out */
    bool resolving;                    /* the commit in doubt is being looked up (MARK_RESOLVE) */
    bool prep_bad;                     /* one of them failed */
    PostgresPollingStatusType conn_st; /* what PQconnectPoll last asked to wait for */
    int64_t timeout_ms;                /* [store] timeout */
    char *dsn, *password_file;         /* kept for each new connection */
    pg_dns *dns;                       /* NULL: the dsn names no host to resolve */
    /* The commit marker (docs/postgresql.md, "When the database fails"): every transaction
     * first sets this daemon's row of runsd_writers from mark to tx_mark, so a commit whose
     * answer was lost can be looked up on the next connection. */
    char writer[40];    /* this daemon's row: random, for the process's lifetime */
    int64_t mark;       /* the row's value as last committed (negative: a commit fenced off) */
    int64_t mark_seq;   /* the last value a transaction was given */
    int64_t tx_mark;    /* the value the open (or committing) transaction writes */
    bool commit_sent;   /* COMMIT is out and its answer not read: losing it leaves a doubt */
    bool doubt;         /* a commit's answer was lost: look it up before anything else */
    int64_t doubt_mark; /* the value that commit wrote, and the one before it */
    int64_t doubt_prev;
    int outcome; /* the lookup's answer for the journal: 1 committed, 0 not (or none) */
} rd_pg;

/* ---- store_pg_conn.c -------------------------------------------------------------------- */

/** Waits until a result can be read without blocking (result) or until libpq has sent all it
 * holds (!result), reading what arrives meanwhile, at most until the monotonic ms until. 0, or
 * RD_EIO: the connection is lost or the deadline passed, and then dropped (rd_pg_drop). */
int rd_pg_wait(rd_pg *s, bool result, int64_t until, const char *what);
/** Monotonic ms by which a wait beginning now must end ([store] timeout). */
int64_t rd_pg_until(const rd_pg *s);
/** The server did not answer by the deadline: logs it once and drops the connection as lost. */
void rd_pg_drop(rd_pg *s, const char *what);
/** Carries a reconnection as far as it goes without waiting: 0 connected and ready, 1 under
 * way (wait as *w says), RD_EIO failed or too soon after the last attempt. A commit in doubt
 * is looked up on the new connection before it is ready. */
int rd_pg_reconnect(rd_pg *s, rd_store_wait *w);
/** Queues the marker of a transaction that is beginning (right after BEGIN). */
int rd_pg_mark_send(rd_pg *s);
/** The commit marker's row, at open: a new random writer, and rows older than 30 days gone. */
int rd_pg_mark_open(rd_pg *s, char *err, size_t errlen);

/** The keywords of a connection (NULL-terminated, at most 7): runsd's defaults, the dsn
 * (expanded: its keywords win over the defaults) and, when not NULL, hostaddr after it. */
void rd_pg_params(const rd_pg *s, const char *hostaddr, const char **keys, const char **vals);

/* ---- store_pg_dns.c --------------------------------------------------------------------- */

struct event_base;
/** A resolver for the dsn's host names on base's loop; NULL when there is nothing to resolve
 * (sockets, numeric addresses, a hostaddr given, no base) or no resolver could be made. */
pg_dns *rd_pg_dns_new(struct event_base *base, const char *dsn);
void rd_pg_dns_free(pg_dns *d);
/** Starts resolving every host unless it is under way; true when all are resolved (at once,
 * from the hosts file, or since an earlier call). */
bool rd_pg_dns_resolve(pg_dns *d);
/** The hostaddr list of the last resolution (valid until the next one, which the next
 * reconnection starts). */
const char *rd_pg_dns_take(pg_dns *d);

/* ---- store_pg.c ------------------------------------------------------------------------- */

/** The connection is gone or unusable: the open transaction fails, the next call reconnects. */
void rd_pg_down(rd_pg *s, const char *what);
/** Reads results up to the pipeline's next Sync; *bad is set when one of them failed, *val (when
 * not NULL) is the first column of the first row of the last statement that returned rows. wait:
 * blocks (until the deadline) until the Sync is in; else returns 1 as soon as reading would block.
 * 0 at the Sync, RD_EIO when the connection is gone. */
int rd_pg_read_to_sync(rd_pg *s, bool wait, bool *bad, int64_t *val, const char *what);
/** What the socket must be for the wait to end. */
void rd_pg_want_io(rd_pg *s, rd_store_wait *w, bool rd, bool wr);

/** Queues a write in the batch's transaction (opened if needed) without waiting for its
 * result. 0, or RD_EIO when the store is down or this transaction already failed. */
int rd_pg_send(rd_store *s, pg_st st, const pg_args *a);
/** Sends a statement and waits for its result (after those of the writes queued before it).
 * write: it belongs to the batch's transaction (opened if needed). *out is the result (the
 * caller PQclear()s it) on 0; RD_EIO otherwise (logged). */
int rd_pg_call(rd_store *s, pg_st st, const pg_args *a, bool write, PGresult **out);
/** rd_pg_call of a statement returning one integer. */
int rd_pg_call_i64(rd_store *s, pg_st st, const pg_args *a, int64_t *out);
/** rd_pg_call of a write; *n is its affected row count. */
int rd_pg_call_n(rd_store *s, pg_st st, const pg_args *a, int64_t *n);
/** Allocates the next event id under the transaction's lock of the id counter. */
int rd_pg_event_id(rd_store *s, int64_t want, int64_t *out);
/** Adds an event to the transaction's batch (its id from rd_pg_event_id); sends the batch
 * when full. */
int rd_pg_event_queue(rd_store *s, int64_t id, const char *run_id, const char *flow,
                      const char *type, int64_t ts, const char *data, int64_t item_seq);
/** The column as an integer (NULL reads as 0). */
int64_t rd_pg_i64(const PGresult *r, int row, int col);
/** The column as a string, NULL when it is NULL. */
const char *rd_pg_str(const PGresult *r, int row, int col);

/* ---- store_pg_schema.c ------------------------------------------------------------------ */

/** Creates or migrates the schema on conn (not in pipeline mode), in one transaction under an
 * advisory lock. 0, RD_EINVAL (the database is newer than this binary) or RD_EIO, with a
 * reason in err. */
int rd_pg_migrate(PGconn *conn, char *err, size_t errlen);
/** The SQL of statement st into buf. false if it does not fit. */
bool rd_pg_sql(pg_st st, char *buf, size_t len);
/** The statement's name ("PS_x"). */
const char *rd_pg_st_name(pg_st st);
/** The schema version this binary writes. */
int rd_pg_schema_version(void);

/* ---- the operations (store_pg_runs.c, _events.c, _outbox.c) ----------------------------- */

int rd_pg_run_insert(rd_store *s, const rd_run *r);
int rd_pg_run_update(rd_store *s, const rd_run *r);
int rd_pg_run_get(rd_store *s, const char *id, rd_run **out);
int rd_pg_run_list(rd_store *s, const rd_run_filter *f, int64_t offset, int limit, rd_run ***out,
                   size_t *n, int64_t *total);
int rd_pg_runs_active(rd_store *s, rd_run ***out, size_t *n);

int rd_pg_event_append(rd_store *s, const char *run_id, const char *flow, const char *type,
                       int64_t ts, const char *data, int64_t item_seq, int64_t *out_id);
int rd_pg_events_scan(rd_store *s, const char *run_id, int64_t after_id, int limit, rd_event_cb cb,
                      void *arg);
int rd_pg_items_scan(rd_store *s, const rd_item_query *q, rd_event_cb cb, void *arg,
                     int64_t *total);
int rd_pg_max_event_id(rd_store *s, int64_t *out);
int rd_pg_min_event_id(rd_store *s, int64_t *out);
int rd_pg_events_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted);
int rd_pg_enrichment_put(rd_store *s, const char *run_id, int64_t item_seq, const char *flow,
                         const char *data, int64_t ts);
int rd_pg_idem_get(rd_store *s, const char *key_hash, char *run_id, size_t run_id_len,
                   char *body_hash, size_t body_hash_len);
int rd_pg_idem_put(rd_store *s, const char *key_hash, const char *run_id, const char *body_hash,
                   int64_t ts);
int rd_pg_idem_prune(rd_store *s, int64_t before_ms, int64_t *n_deleted);
int rd_pg_kv_get(rd_store *s, const char *key, char **out_value);
int rd_pg_kv_put(rd_store *s, const char *key, const char *value);
int rd_pg_pgroup_put(rd_store *s, const rd_pgroup *g);
int rd_pg_pgroup_del(rd_store *s, int64_t pgid);
int rd_pg_pgroups_scan(rd_store *s, rd_pgroup_cb cb, void *arg);

int rd_pg_dlv_insert(rd_store *s, const rd_delivery *d);
int rd_pg_dlv_update(rd_store *s, const rd_delivery *d);
int rd_pg_dlv_get(rd_store *s, const char *id, rd_delivery_cb cb, void *arg);
int rd_pg_dlv_due(rd_store *s, int64_t now, int limit, rd_delivery_cb cb, void *arg);
int rd_pg_dlv_next_due(rd_store *s, int64_t *out);
int rd_pg_dlv_backlog(rd_store *s, int64_t *out);
int rd_pg_dlv_run_scan(rd_store *s, const char *run_id, int64_t offset, int limit,
                       rd_delivery_cb cb, void *arg, int64_t *total);
int rd_pg_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now, const char *why);
int rd_pg_dlv_stopped(rd_store *s, const char *run_id, const char *url, bool *out);
int rd_pg_dlv_lease(rd_store *s, const char *id);
int rd_pg_dlv_unlease(rd_store *s);
int rd_pg_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *a);
int rd_pg_dlv_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted);
int rd_pg_dlv_attempts_scan(rd_store *s, const char *delivery_id, rd_attempt_cb cb, void *arg);

#endif
