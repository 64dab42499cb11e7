/*
 * store.h: the one storage interface of runsd. The engine talks only to these functions; the
 * embedded SQLite backend (store_sqlite*.c) implements them, and a clustered backend will
 * implement the same operations table.
 *
 * Transactions are implicit and batched (group commit): the first write after a commit opens
 * a transaction; rd_store_commit() ends it. The engine commits at the end of each burst of
 * work (one read from a worker, one API request), and publishes events, replies to clients and
 * fires notifications only after that commit returned 0. Reads see the open transaction's
 * writes.
 *
 * Events have a global, strictly increasing integer id assigned at append. Items are stored
 * as events of type run.item / run.item_error that carry an item sequence number, so one row
 * is written per item; the results API reads them through the (run_id, item_seq) index.
 */
#ifndef RUNSD_STORE_H
#define RUNSD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "model/run.h"

typedef struct rd_store rd_store;

/** One stored event. Strings are borrowed for the duration of the callback. */
typedef struct rd_event {
    int64_t id;
    const char *run_id;
    const char *flow;
    const char *type;        /* "run.status", ... */
    int64_t ts;              /* ms since epoch */
    const char *data;        /* the event's data object, JSON text */
    int64_t item_seq;        /* > 0 for run.item / run.item_error, else 0 */
    const char *enrichments; /* items_scan only: {"flow": data, ...} JSON text, or NULL */
} rd_event;
/** Return 0 to continue, non-zero to stop the iteration early. */
typedef int (*rd_event_cb)(const rd_event *ev, void *arg);

typedef struct rd_run_filter {
    unsigned status_mask; /* bit (1u << rd_status); 0 = any */
    const char *flow;     /* NULL = any */
} rd_run_filter;

typedef struct rd_item_query {
    const char *run_id;
    int status;        /* 0 any, 1 ok only (run.item), 2 errors only (run.item_error) */
    int64_t after_seq; /* > 0: items with seq > after_seq (cursor mode, offset ignored) */
    int64_t offset;    /* page mode: rows to skip */
    int limit;
} rd_item_query;

/* ---- webhook outbox (SPEC section 5) ----------------------------------------------------
 * One delivery is one message (the webhook-id) to one endpoint. The outbox inserts deliveries
 * in the transaction of the event that causes them, and records every attempt. */
typedef enum {
    RD_DLV_PENDING = 0,   /* waiting for next_at */
    RD_DLV_SENDING = 1,   /* an attempt is in flight (back to pending after a restart) */
    RD_DLV_DELIVERED = 2, /* a 2xx answer */
    RD_DLV_FAILED = 3,    /* the retry schedule is spent, or the URL was refused (SSRF) */
    RD_DLV_STOPPED = 4,   /* the endpoint answered 410 Gone for this run */
} rd_dlv_state;

enum { RD_DLV_SRC_RUN = 0, RD_DLV_SRC_CONFIG = 1 };

/** A delivery row. Strings are borrowed: from the caller at insert/update, from the store
 * for the duration of a callback. */
typedef struct rd_delivery {
    int64_t seq;    /* assigned at insert (ignored there): creation order */
    const char *id; /* the webhook-id, "msg_" + 22 URL-safe characters */
    const char *run_id;
    const char *type; /* "run.succeeded", ... */
    const char *url;
    int source;         /* RD_DLV_SRC_* */
    const char *secret; /* RD_DLV_SRC_RUN: the run's signing secret; else NULL */
    const char *body;   /* the exact bytes sent and signed */
    int state;          /* rd_dlv_state */
    int attempts;       /* attempts made so far */
    bool manual;        /* the next attempt was asked for by a redeliver */
    int64_t created_at, updated_at, next_at; /* ms since epoch; next_at 0 = none */
    int last_code;                           /* HTTP status of the last attempt, 0 = none */
    const char *last_error;                  /* NULL = none */
} rd_delivery;

/** One attempt of a delivery. Strings borrowed as for rd_delivery. */
typedef struct rd_delivery_attempt {
    const char *delivery_id;
    int n;       /* 1 for the first attempt */
    bool manual; /* asked for by a redeliver */
    int64_t at;  /* ms since epoch, when it started */
    int64_t duration_ms;
    int status_code;   /* 0 = no HTTP answer */
    const char *error; /* NULL when delivered */
    int64_t next_at;   /* the attempt after it is due then; 0 = none */
} rd_delivery_attempt;

/** A worker's process group as recorded at spawn (see rd_store_pgroup_put). Strings are
 * borrowed for the duration of the callback. */
typedef struct rd_pgroup {
    int64_t pgid;        /* the worker's pid, which is also its process group id */
    int64_t start_ticks; /* its start time: field 22 of /proc/<pid>/stat */
    const char *boot_id; /* /proc/sys/kernel/random/boot_id when it was spawned */
    const char *run_id;  /* the run it worked for (diagnostics) */
} rd_pgroup;
/** Return 0 to continue, non-zero to stop early. */
typedef int (*rd_pgroup_cb)(const rd_pgroup *g, void *arg);

/** What an asynchronous store call waits for: its socket readable (rd) and/or writable (wr). */
typedef struct rd_store_wait {
    int fd;
    bool rd, wr;
    int timeout_ms; /* poll again within this even if the socket stays quiet (a deadline of
                       the store's, [store] timeout); 0: no deadline */
} rd_store_wait;

/** Return 0 to continue, non-zero to stop early. */
typedef int (*rd_delivery_cb)(const rd_delivery *d, void *arg);
typedef int (*rd_attempt_cb)(const rd_delivery_attempt *a, void *arg);

typedef struct rd_store_ops {
    void (*close)(rd_store *s);
    int (*commit)(rd_store *s);
    int (*rollback)(rd_store *s);
    int (*run_insert)(rd_store *s, const rd_run *r);
    int (*run_update)(rd_store *s, const rd_run *r);
    int (*run_get)(rd_store *s, const char *id, rd_run **out);
    int (*run_list)(rd_store *s, const rd_run_filter *f, int64_t offset, int limit, rd_run ***out,
                    size_t *n, int64_t *total);
    int (*runs_active)(rd_store *s, rd_run ***out, size_t *n);
    int (*event_append)(rd_store *s, const char *run_id, const char *flow, const char *type,
                        int64_t ts, const char *data, int64_t item_seq, int64_t *out_id);
    int (*events_scan)(rd_store *s, const char *run_id, int64_t after_id, int limit, rd_event_cb cb,
                       void *arg);
    int (*items_scan)(rd_store *s, const rd_item_query *q, rd_event_cb cb, void *arg,
                      int64_t *total);
    int (*idem_get)(rd_store *s, const char *key_hash, char *run_id, size_t run_id_len,
                    char *body_hash, size_t body_hash_len);
    int (*idem_put)(rd_store *s, const char *key_hash, const char *run_id, const char *body_hash,
                    int64_t ts);
    int (*max_event_id)(rd_store *s, int64_t *out);
    int (*min_event_id)(rd_store *s, int64_t *out);
    int (*kv_get)(rd_store *s, const char *key, char **out_value);
    int (*kv_put)(rd_store *s, const char *key, const char *value);
    int (*pgroup_put)(rd_store *s, const rd_pgroup *g);
    int (*pgroup_del)(rd_store *s, int64_t pgid);
    int (*pgroups_scan)(rd_store *s, rd_pgroup_cb cb, void *arg);
    int (*enrichment_put)(rd_store *s, const char *run_id, int64_t item_seq, const char *flow,
                          const char *data, int64_t ts);
    int (*events_prune)(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted);
    int (*idem_prune)(rd_store *s, int64_t before_ms, int64_t *n_deleted);
    int (*dlv_prune)(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted);
    int (*dlv_insert)(rd_store *s, const rd_delivery *d);
    int (*dlv_update)(rd_store *s, const rd_delivery *d);
    int (*dlv_get)(rd_store *s, const char *id, rd_delivery_cb cb, void *arg);
    int (*dlv_due)(rd_store *s, int64_t now, int limit, rd_delivery_cb cb, void *arg);
    int (*dlv_next_due)(rd_store *s, int64_t *out);
    int (*dlv_run_scan)(rd_store *s, const char *run_id, int64_t offset, int limit,
                        rd_delivery_cb cb, void *arg, int64_t *total);
    int (*dlv_stop)(rd_store *s, const char *run_id, const char *url, int64_t now, const char *why);
    int (*dlv_stopped)(rd_store *s, const char *run_id, const char *url, bool *out);
    int (*dlv_lease)(rd_store *s, const char *id);
    int (*dlv_unlease)(rd_store *s);
    int (*dlv_attempt_add)(rd_store *s, const rd_delivery_attempt *a);
    int (*dlv_attempts_scan)(rd_store *s, const char *delivery_id, rd_attempt_cb cb, void *arg);
    /* The health probe of a backend whose database can go away while the daemon is idle
     * (PostgreSQL); NULL in one that needs none (SQLite). See rd_store_probe_send. */
    int (*probe_send)(rd_store *s, rd_store_wait *w);
    int (*probe_read)(rd_store *s, rd_store_wait *w);
    /* Deliveries still to be made: pending (due or waiting for a retry) and sending. NULL in
     * a backend that cannot count them; see rd_store_dlv_backlog. */
    int (*dlv_backlog)(rd_store *s, int64_t *out);
    /* Commits off the caller's thread of control (PostgreSQL: libpq's non-blocking API); NULL
     * in a backend whose commit returns at once (SQLite). See rd_store_commit_start. */
    int (*commit_start)(rd_store *s, rd_store_wait *w);
    int (*commit_poll)(rd_store *s, rd_store_wait *w, bool wait);
    /* After a failed commit, whether it was committed after all (a backend that can lose a
     * commit's answer: PostgreSQL); NULL in one whose failed commit is always rolled back. See
     * rd_store_commit_landed. */
    int (*commit_landed)(rd_store *s);
} rd_store_ops;

struct rd_store {
    const rd_store_ops *ops;
    /* Told when a commit started with rd_store_commit_start completed inside another call of
     * the store (one that needed the connection), so its owner polls it (see
     * rd_store_commit_hook). NULL: nobody to tell. */
    void (*commit_done)(void *arg);
    void *commit_done_arg;
};

typedef struct rd_store_opts {
    bool allow_memory;     /* accept ":memory:" (tests) */
    bool synchronous_full; /* PRAGMA synchronous=FULL instead of NORMAL */
} rd_store_opts;

/** Opens (creating if needed) the SQLite store at path: WAL mode, schema migrated, prepared
 * statements ready. 0 and *out (the caller's: close it with rd_store_close), or
 * RD_EIO/RD_EINVAL with a reason in err. */
int rd_store_open_sqlite(const char *path, const rd_store_opts *opts, rd_store **out, char *err,
                         size_t errlen);

struct event_base;
typedef struct rd_store_pg_opts {
    const char *dsn;           /* a libpq connection string; may be empty: libpq's defaults */
    const char *password_file; /* NULL or "": PGPASSFILE / ~/.pgpass */
    int64_t timeout_ms;        /* [store] timeout: no answer this long drops the connection */
    struct event_base *base;   /* the loop host names are resolved on when reconnecting; NULL:
                                  libpq resolves them (synchronously) */
} rd_store_pg_opts;

/** Connects to PostgreSQL as o says, creates or migrates the schema (store_pg_schema.c), and
 * prepares the statements. 0 and *out (the caller's), RD_EINVAL (the schema is newer than this
 * binary) or RD_EIO, with a reason in err that never holds the password. */
int rd_store_open_pg(const rd_store_pg_opts *o, rd_store **out, char *err, size_t errlen);

/* Thin wrappers so callers read naturally. All return 0, RD_ENOTFOUND, RD_ECONFLICT
 * (duplicate key) or RD_EIO. Returned rd_run records are owned by the caller (rd_run_free);
 * arrays returned by run_list/runs_active are malloc'd arrays of owned records. */
/** Commits what is still open, then frees the store and everything it holds. NULL is a no-op. */
static inline void rd_store_close(rd_store *s)
{
    if (s)
        s->ops->close(s);
}
/** Starts a health probe: a trivial query whose answer arrives on w->fd, without waiting for
 * it (read it with rd_store_probe_read when the socket is as *w says). While the connection is
 * lost the probe is a reconnection instead, started without waiting and carried on by
 * rd_store_probe_read the same way (at most one every 250 ms). 0 with w->fd >= 0: sent, or a
 * reconnection under way; 0 with w->fd < 0: nothing to ask now (a transaction is open or
 * committing, or a probe is already out); RD_EIO: the database is unreachable; RD_ENOTFOUND:
 * this store needs no probe (SQLite: its file does not go away while the daemon is idle).
 * w NULL only asks whether the store has a probe (0 or RD_ENOTFOUND). */
static inline int rd_store_probe_send(rd_store *s, rd_store_wait *w)
{
    if (w)
        *w = (rd_store_wait){.fd = -1};
    return s->ops->probe_send ? s->ops->probe_send(s, w) : RD_ENOTFOUND;
}
/** Whether the store has a health probe (nothing is sent). */
static inline bool rd_store_probes(rd_store *s)
{
    return rd_store_probe_send(s, NULL) != RD_ENOTFOUND;
}
/** Reads what arrived of the probe's answer (or carries the reconnection on) without
 * blocking: 0 answered (the database is there), 1 not complete yet (wait as *w says; the
 * socket may have changed), RD_EIO the connection is gone or could not be made. */
static inline int rd_store_probe_read(rd_store *s, rd_store_wait *w)
{
    *w = (rd_store_wait){.fd = -1};
    return s->ops->probe_read ? s->ops->probe_read(s, w) : 0;
}
/** Commits the open transaction, if any, and returns when it is committed (a commit started
 * with rd_store_commit_start is waited for first). */
static inline int rd_store_commit(rd_store *s)
{
    return s->ops->commit(s);
}
/** Starts committing the open transaction without waiting for the database: 0 committed (or
 * nothing to commit), RD_EIO failed (rolled back; the caller rolls back as after
 * rd_store_commit), 1 in flight: call rd_store_commit_poll when the socket is as *w says. One
 * commit is in flight at a time; writes made meanwhile go into the next transaction, reads
 * and rd_store_commit wait for it. A backend without asynchronous commits commits here. */
static inline int rd_store_commit_start(rd_store *s, rd_store_wait *w)
{
    *w = (rd_store_wait){.fd = -1};
    return s->ops->commit_start ? s->ops->commit_start(s, w) : s->ops->commit(s);
}
/** The commit in flight: 1 not complete yet (wait as *w says), else its result as for
 * rd_store_commit_start, reported once. wait: block until it is complete (never returns 1).
 * 0 when no commit was started. */
static inline int rd_store_commit_poll(rd_store *s, rd_store_wait *w, bool wait)
{
    *w = (rd_store_wait){.fd = -1};
    return s->ops->commit_poll ? s->ops->commit_poll(s, w, wait) : 0;
}
/** After a commit failed (rd_store_commit, or a commit started with rd_store_commit_start):
 * whether the database committed it after all, which a backend can find out once it is
 * reachable again when the commit's answer was lost with the connection. 1 committed (what it
 * carried must not be written again), 0 not committed (or nothing was in doubt: write it
 * again), RD_EIO not known yet (ask again later; a reconnection is carried on meanwhile,
 * without waiting). Reported once per failure. */
static inline int rd_store_commit_landed(rd_store *s)
{
    return s->ops->commit_landed ? s->ops->commit_landed(s) : 0;
}
/** fn(arg) is called when a commit in flight completed inside another call of the store (a
 * read, rd_store_commit): the owner should poll it soon (not from fn: the store is busy). */
static inline void rd_store_commit_hook(rd_store *s, void (*fn)(void *arg), void *arg)
{
    s->commit_done = fn;
    s->commit_done_arg = arg;
}
/** Rolls back the open transaction, if any. */
static inline int rd_store_rollback(rd_store *s)
{
    return s->ops->rollback(s);
}
/** Stores a new run; r stays the caller's. RD_ECONFLICT when r->id exists. */
static inline int rd_store_run_insert(rd_store *s, const rd_run *r)
{
    return s->ops->run_insert(s, r);
}
/** Rewrites every mutable column of run r->id; r stays the caller's. RD_ENOTFOUND if absent. */
static inline int rd_store_run_update(rd_store *s, const rd_run *r)
{
    return s->ops->run_update(s, r);
}
/** *out is a new record owned by the caller (rd_run_free). RD_ENOTFOUND if absent. */
static inline int rd_store_run_get(rd_store *s, const char *id, rd_run **out)
{
    return s->ops->run_get(s, id, out);
}
/** Newest first (created_at DESC, id DESC). *out is a malloc'd array of *n owned records
 * (free with rd_run_array_free). *total (may be NULL) is the count matching the filter. */
static inline int rd_store_run_list(rd_store *s, const rd_run_filter *f, int64_t offset, int limit,
                                    rd_run ***out, size_t *n, int64_t *total)
{
    return s->ops->run_list(s, f, offset, limit, out, n, total);
}
/** Every run whose status is active (queued..cancelling), oldest first (created_at, id).
 * *out is a malloc'd array of *n owned records (free with rd_run_array_free). */
static inline int rd_store_runs_active(rd_store *s, rd_run ***out, size_t *n)
{
    return s->ops->runs_active(s, out, n);
}
/** Appends an event; *out_id receives its id (strictly greater than every earlier one, never
 * reused even after deletion). *out_id must be 0 on entry, except when a journal writes again
 * an event that a failed transaction lost: then it is the id that event had. item_seq 0 = not
 * an item. */
static inline int rd_store_event_append(rd_store *s, const char *run_id, const char *flow,
                                        const char *type, int64_t ts, const char *data,
                                        int64_t item_seq, int64_t *out_id)
{
    return s->ops->event_append(s, run_id, flow, type, ts, data, item_seq, out_id);
}
/** Events with id > after_id in id order, of one run (run_id) or of all runs (NULL), at most
 * limit (<= 0: no limit). */
static inline int rd_store_events_scan(rd_store *s, const char *run_id, int64_t after_id, int limit,
                                       rd_event_cb cb, void *arg)
{
    return s->ops->events_scan(s, run_id, after_id, limit, cb, arg);
}
/** Items of a run in seq order per the query; *total (may be NULL) gets the count matching
 * run_id and status regardless of offset/after/limit. */
static inline int rd_store_items_scan(rd_store *s, const rd_item_query *q, rd_event_cb cb,
                                      void *arg, int64_t *total)
{
    return s->ops->items_scan(s, q, cb, arg, total);
}
/** Idempotency keys: key_hash -> (run_id, hash of the request body), copied into the
 * caller's buffers (either may be NULL). RD_ENOTFOUND if absent, RD_EINVAL if a buffer is too
 * small. */
static inline int rd_store_idem_get(rd_store *s, const char *key_hash, char *run_id,
                                    size_t run_id_len, char *body_hash, size_t body_hash_len)
{
    return s->ops->idem_get(s, key_hash, run_id, run_id_len, body_hash, body_hash_len);
}
/** Records key_hash; the strings stay the caller's. RD_ECONFLICT when it is already known. */
static inline int rd_store_idem_put(rd_store *s, const char *key_hash, const char *run_id,
                                    const char *body_hash, int64_t ts)
{
    return s->ops->idem_put(s, key_hash, run_id, body_hash, ts);
}
/** Highest event id stored (0 when none) / the id from which history is complete: the lowest
 * id stored, or one past the highest id retention deleted (0 when none). */
static inline int rd_store_max_event_id(rd_store *s, int64_t *out)
{
    return s->ops->max_event_id(s, out);
}
/** See rd_store_max_event_id. */
static inline int rd_store_min_event_id(rd_store *s, int64_t *out)
{
    return s->ops->min_event_id(s, out);
}
/** A small key/value table for daemon state (e.g. secrets generated at first start).
 * kv_get: *out_value malloc'd, caller frees; RD_ENOTFOUND if absent. */
static inline int rd_store_kv_get(rd_store *s, const char *key, char **out_value)
{
    return s->ops->kv_get(s, key, out_value);
}
/** Sets key to value, replacing any earlier value; the strings stay the caller's. */
static inline int rd_store_kv_put(rd_store *s, const char *key, const char *value)
{
    return s->ops->kv_put(s, key, value);
}

/* Process groups of running workers, so a daemon that restarts after a crash can kill what its
 * predecessor left running before it resumes any run. Writes join the open transaction. */
/** Records (or replaces) the group g->pgid; g stays the caller's. */
static inline int rd_store_pgroup_put(rd_store *s, const rd_pgroup *g)
{
    return s->ops->pgroup_put(s, g);
}
/** Forgets the group pgid (0 also when it was not recorded). */
static inline int rd_store_pgroup_del(rd_store *s, int64_t pgid)
{
    return s->ops->pgroup_del(s, pgid);
}
/** Every recorded group, in pgid order. cb must not write to the store. */
static inline int rd_store_pgroups_scan(rd_store *s, rd_pgroup_cb cb, void *arg)
{
    return s->ops->pgroups_scan(s, cb, arg);
}

/** Attaches (or replaces) flow's enrichment data to item item_seq of a run. */
static inline int rd_store_enrichment_put(rd_store *s, const char *run_id, int64_t item_seq,
                                          const char *flow, const char *data, int64_t ts)
{
    return s->ops->enrichment_put(s, run_id, item_seq, flow, data, ts);
}

/* Webhook outbox. Writes join the open transaction like every other write. */
/** Inserts a delivery (all members but seq). RD_ECONFLICT when the id exists. */
static inline int rd_store_dlv_insert(rd_store *s, const rd_delivery *d)
{
    return s->ops->dlv_insert(s, d);
}
/** Writes state, attempts, manual, updated_at, next_at, last_code and last_error of d->id. */
static inline int rd_store_dlv_update(rd_store *s, const rd_delivery *d)
{
    return s->ops->dlv_update(s, d);
}
/** Calls cb once with delivery id. RD_ENOTFOUND if absent. */
static inline int rd_store_dlv_get(rd_store *s, const char *id, rd_delivery_cb cb, void *arg)
{
    return s->ops->dlv_get(s, id, cb, arg);
}
/** Pending deliveries with next_at <= now, earliest first, at most limit. */
static inline int rd_store_dlv_due(rd_store *s, int64_t now, int limit, rd_delivery_cb cb,
                                   void *arg)
{
    return s->ops->dlv_due(s, now, limit, cb, arg);
}
/** The earliest next_at of the pending deliveries (0 when none). */
static inline int rd_store_dlv_next_due(rd_store *s, int64_t *out)
{
    return s->ops->dlv_next_due(s, out);
}
/** *out = the deliveries not yet delivered and not given up: pending (due now or waiting for
 * a retry) and sending (an attempt in flight); failed, stopped and delivered ones are not
 * counted. One count over the partial indexes of those two states, so its cost grows with
 * the backlog, not with the deliveries kept: callers that ask often should cache it (the
 * outbox does). RD_ENOTFOUND when the backend cannot count them. */
static inline int rd_store_dlv_backlog(rd_store *s, int64_t *out)
{
    *out = 0;
    return s->ops->dlv_backlog ? s->ops->dlv_backlog(s, out) : RD_ENOTFOUND;
}
/** A run's deliveries in creation order, page by offset/limit; *total (may be NULL) counts all. */
static inline int rd_store_dlv_run_scan(rd_store *s, const char *run_id, int64_t offset, int limit,
                                        rd_delivery_cb cb, void *arg, int64_t *total)
{
    return s->ops->dlv_run_scan(s, run_id, offset, limit, cb, arg, total);
}
/** Marks the run's pending deliveries to url stopped, with why as their last error. */
static inline int rd_store_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now,
                                    const char *why)
{
    return s->ops->dlv_stop(s, run_id, url, now, why);
}
/** *out = some delivery of the run to url is stopped. */
static inline int rd_store_dlv_stopped(rd_store *s, const char *run_id, const char *url, bool *out)
{
    return s->ops->dlv_stopped(s, run_id, url, out);
}
/** A pending delivery becomes sending (an attempt is in flight). RD_ENOTFOUND when it is not
 * pending. */
static inline int rd_store_dlv_lease(rd_store *s, const char *id)
{
    return s->ops->dlv_lease(s, id);
}
/** Every sending delivery becomes pending again (after a restart, or at shutdown). */
static inline int rd_store_dlv_unlease(rd_store *s)
{
    return s->ops->dlv_unlease(s);
}
/** Records attempt a->n of a delivery; a stays the caller's. RD_ECONFLICT if it exists. */
static inline int rd_store_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *a)
{
    return s->ops->dlv_attempt_add(s, a);
}
/** The attempts of a delivery, in order. */
static inline int rd_store_dlv_attempts_scan(rd_store *s, const char *delivery_id, rd_attempt_cb cb,
                                             void *arg)
{
    return s->ops->dlv_attempts_scan(s, delivery_id, cb, arg);
}

/** Retention: deletes up to limit events older than before_ms of runs that finished before
 * before_ms, except items (run.item / run.item_error: they are the results). Records the
 * highest id deleted, so min_event_id reports where complete history starts. */
static inline int rd_store_events_prune(rd_store *s, int64_t before_ms, int limit,
                                        int64_t *n_deleted)
{
    return s->ops->events_prune(s, before_ms, limit, n_deleted);
}

/** Retention: deletes up to limit finished webhook deliveries (delivered, failed, stopped)
 * last changed before before_ms, with their attempts. */
static inline int rd_store_dlv_prune(rd_store *s, int64_t before_ms, int limit, int64_t *n_deleted)
{
    return s->ops->dlv_prune(s, before_ms, limit, n_deleted);
}
/** Forgets Idempotency-Keys recorded before before_ms. */
static inline int rd_store_idem_prune(rd_store *s, int64_t before_ms, int64_t *n_deleted)
{
    return s->ops->idem_prune(s, before_ms, n_deleted);
}

#endif
