/*
 * store_journal.c: the store decorator of store_journal.h. Every write goes to the backend's
 * open transaction and is also recorded here, until a commit succeeds. After a failed write
 * or commit the transaction is rolled back and the journal kept ("pending"); the next access
 * writes it again, in order and with the same event ids, before anything new. While a write
 * has failed in the current transaction ("doomed"), later writes are only recorded and the
 * commit fails, so the batch is retried whole.
 *
 * A commit may be in flight (rd_store_commit_start, for a backend that commits without
 * waiting): the writes made meanwhile are only recorded ("held", with the event ids that
 * follow the last one given) and written to the backend's next transaction when it has
 * completed, so the backend holds one transaction at a time. When it completes, the records it
 * carried are dropped; when it fails, the whole log is written again, as after any failed
 * commit. A read, a prune or a synchronous commit waits for the commit in flight first.
 *
 * A failed commit may have been committed after all: the backend lost its answer with the
 * connection (rd_store_commit_landed). Until the backend has found out, nothing is written again;
 * if it was committed, the records it carried (the log up to cut) are dropped as committed, and
 * the rest is written again; the owner publishes what the failed commit carried with the next
 * commit that succeeds, as after any failure.
 *
 * Reads pass through, and while the journal waits for the store they see what is committed.
 * Retention prunes are not recorded: a lost prune is redone by the next round. A delivery
 * lease is a conditional write: it is refused while the transaction is doomed, so no webhook
 * is sent whose lease is not stored.
 */
#include "store/store_journal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "base/metrics.h"
#include "base/util.h"

typedef enum {
    J_RUN_INSERT,
    J_RUN_UPDATE,
    J_EVENT,
    J_IDEM_PUT,
    J_KV_PUT,
    J_ENRICH,
    J_DLV_INSERT,
    J_DLV_UPDATE,
    J_DLV_STOP,
    J_DLV_LEASE,
    J_DLV_UNLEASE,
    J_DLV_ATTEMPT,
    J_PGROUP_PUT,
    J_PGROUP_DEL,
} jop;

/* One recorded write. The strings live in the same allocation, after the struct. */
typedef struct jrec {
    STAILQ_ENTRY(jrec) link;
    jop op;
    rd_run *run;           /* J_RUN_*: a copy of the record */
    int64_t id, ts, n;     /* event id, timestamps, item seq / attempt n */
    const char *s[7];      /* the op's strings, in argument order */
    rd_delivery d;         /* J_DLV_INSERT/UPDATE (strings point into s[]) */
    rd_delivery_attempt a; /* J_DLV_ATTEMPT */
    rd_pgroup g;           /* J_PGROUP_PUT */
    size_t size;
} jrec;

typedef struct jstore {
    rd_store base;
    rd_store *inner;
    STAILQ_HEAD(, jrec) log;
    rd_map *updates; /* run id -> its J_RUN_UPDATE in the log (only the latest is kept) */
    size_t bytes, writes;
    bool pending;    /* the log is not in the backend's open transaction */
    bool held;       /* records after cut are not in the backend: written at catch-up */
    bool inflight;   /* the backend's commit of the records up to cut is in flight */
    bool doubt;      /* the commit of the records up to cut failed: it may have committed */
    jrec *cut;       /* the last record the commit in flight (or in doubt) carries (NULL: none) */
    jrec *tail;      /* the log's last record (glibc's queue.h has no STAILQ_LAST) */
    bool has_result; /* the in-flight commit completed in another call: its result */
    int result;
    double t_start;        /* when the commit in flight started (rd_metrics_clock) */
    size_t held_bytes;     /* recorded since the commit in flight started */
    bool held_over;        /* held_bytes went past HOLD_MAX: producers paused until it completes */
    bool told;             /* what on_over was last told */
    bool doomed;           /* a write failed in this transaction: its commit must fail */
    int64_t last_event_id; /* the id of the last event appended or recorded */
    uint64_t m_failed, m_replays, m_over;
    size_t max; /* the bound (0: none) */
    bool over;  /* bytes went past max; until the log is emptied */
    void (*on_over)(void *arg, bool over);
    void *over_arg;
    rd_metric *m_commit_seconds; /* NULL without a registry */
    rd_metric *m_bytes, *m_replays_total, *m_writes, *m_max, *m_over_now, *m_over_total;
} jstore;

/* Writes held behind a commit in flight are written to the backend in one go when it completes,
 * on the loop, and its events are published in one burst when the next completes: past this
 * many bytes (about 2,000 items) the producers are paused until it completes. A server slower
 * than the loop thus sets the pace without the held batch growing without bound (60,000
 * records took 130 ms to write again), and a burst stays small enough for an SSE reader that
 * keeps up to take it without counting as slow. */
#define HOLD_MAX (512u << 10)

static jstore *J(rd_store *s)
{
    return (jstore *)s;
}

/* A record with room for n strings (NULLs allowed), copied in. */
static jrec *rec_new(jop op, int n, const char *const *strs)
{
    size_t len[7] = {0}, total = sizeof(jrec);
    for (int i = 0; i < n; i++)
        total += strs[i] ? (len[i] = strlen(strs[i]) + 1) : 0;
    jrec *r = calloc(1, total);
    if (!r)
        return NULL;
    r->op = op;
    r->size = total;
    char *p = (char *)(r + 1);
    for (int i = 0; i < n; i++) {
        if (!strs[i])
            continue;
        r->s[i] = memcpy(p, strs[i], len[i]);
        p += len[i];
    }
    return r;
}

static void rec_free(jrec *r)
{
    rd_run_free(r->run);
    free(r);
}

static void log_clear(jstore *j)
{
    jrec *r;
    while ((r = STAILQ_FIRST(&j->log))) {
        STAILQ_REMOVE_HEAD(&j->log, link);
        rec_free(r);
    }
    rd_map_free(j->updates);
    j->updates = rd_map_new();
    j->bytes = j->writes = 0;
    j->cut = j->tail = NULL;
    j->held = false;
}

/* Tells the owner when the producers should stop or may go on: past the bound (a store that
 * fails), or holding HOLD_MAX behind a commit in flight. */
static void pressure_tell(jstore *j)
{
    bool now = j->over || j->held_over;
    if (now == j->told)
        return;
    j->told = now;
    if (j->on_over)
        j->on_over(j->over_arg, now);
}

static void log_add(jstore *j, jrec *r)
{
    STAILQ_INSERT_TAIL(&j->log, r, link);
    j->tail = r;
    j->bytes += r->size;
    j->writes++;
    if (j->inflight && !j->held_over && (j->held_bytes += r->size) > HOLD_MAX) {
        j->held_over = true;
        pressure_tell(j);
    }
    if (j->max && !j->over && j->bytes > j->max) {
        j->over = true;
        j->m_over++;
        rd_log_warn("store journal holds %zu bytes (max_journal %zu): runs are paused until the "
                    "store takes them",
                    j->bytes, j->max);
        pressure_tell(j);
    }
}

/* The log was emptied (a commit succeeded) or the bound changed. */
static void check_under(jstore *j)
{
    if (!j->over || (j->max && j->bytes > j->max))
        return;
    j->over = false;
    rd_log_info("store journal down to %zu bytes: runs resume", j->bytes);
    pressure_tell(j);
}

/* Writes one record to the backend. */
static int apply(jstore *j, jrec *r)
{
    rd_store *in = j->inner;
    switch (r->op) {
    case J_RUN_INSERT:
        return in->ops->run_insert(in, r->run);
    case J_RUN_UPDATE:
        return in->ops->run_update(in, r->run);
    case J_EVENT: {
        int64_t id = r->id;
        return in->ops->event_append(in, r->s[0], r->s[1], r->s[2], r->ts, r->s[3], r->n, &id);
    }
    case J_IDEM_PUT:
        return in->ops->idem_put(in, r->s[0], r->s[1], r->s[2], r->ts);
    case J_KV_PUT:
        return in->ops->kv_put(in, r->s[0], r->s[1]);
    case J_ENRICH:
        return in->ops->enrichment_put(in, r->s[0], r->n, r->s[1], r->s[2], r->ts);
    case J_DLV_INSERT:
        return in->ops->dlv_insert(in, &r->d);
    case J_DLV_UPDATE:
        return in->ops->dlv_update(in, &r->d);
    case J_DLV_STOP:
        return in->ops->dlv_stop(in, r->s[0], r->s[1], r->ts, r->s[2]);
    case J_DLV_LEASE:
        return in->ops->dlv_lease(in, r->s[0]);
    case J_DLV_UNLEASE:
        return in->ops->dlv_unlease(in);
    case J_DLV_ATTEMPT:
        return in->ops->dlv_attempt_add(in, &r->a);
    case J_PGROUP_PUT:
        return in->ops->pgroup_put(in, &r->g);
    case J_PGROUP_DEL:
        return in->ops->pgroup_del(in, r->id);
    }
    return RD_ERR;
}

static void drop_committed(jstore *j);

/* A failed commit carried the log up to cut: asks the backend whether it committed after all.
 * 0 known (what it committed is dropped), RD_EIO not known yet. */
static int resolve(jstore *j)
{
    int rc = rd_store_commit_landed(j->inner);
    if (rc < 0)
        return RD_EIO;
    j->doubt = false;
    if (rc == 1) {
        rd_log_info("store journal: the commit whose answer was lost is stored; only what was "
                    "held after it is written again");
        /* The map may point at records about to be freed: in-place updates restart. */
        rd_map_free(j->updates);
        j->updates = rd_map_new();
        drop_committed(j);
        j->pending = STAILQ_FIRST(&j->log) != NULL;
    }
    j->cut = NULL;
    return 0;
}

/* A commit of the backend failed (rc != 0) carrying the log up to last: it may be in doubt. */
static void note_failed(jstore *j, jrec *last)
{
    j->cut = last;
    j->doubt = last != NULL;
}

/* After a rollback, or a commit that completed while writes were held: the journal goes into
 * the new transaction first. */
static void catch_up(jstore *j)
{
    if (j->inflight || (!j->pending && !j->held))
        return;
    if (j->doubt && resolve(j) != 0) {
        j->doomed = true; /* not written again before the backend knows */
        return;
    }
    if (!j->pending && !j->held)
        return;
    j->m_replays += j->pending;
    j->pending = j->held = false;
    jrec *r;
    STAILQ_FOREACH(r, &j->log, link)
    {
        int rc = apply(j, r);
        if (rc != 0 && !(r->op == J_DLV_LEASE && rc == RD_ENOTFOUND)) {
            j->doomed = true;
            return;
        }
    }
}

/* A failure of the backend (not an answer such as "not found" or "duplicate"). */
static bool is_failure(int rc)
{
    return rc != 0 && rc != RD_ENOTFOUND && rc != RD_ECONFLICT && rc != RD_EINVAL;
}

/* The common path of a recorded write: catch up, write unless doomed, record. A write that
 * fails dooms the transaction but is kept: the caller sees success, as the daemon's memory
 * already holds it, and the store gets it when it works again. */
static int jwrite(jstore *j, jrec *r)
{
    if (!r)
        return RD_ERR;
    if (j->inflight) { /* held until the commit in flight has completed */
        log_add(j, r);
        return 0;
    }
    catch_up(j);
    int rc = j->doomed ? RD_EIO : apply(j, r);
    if (rc != 0 && !is_failure(rc)) {
        rec_free(r);
        return rc;
    }
    if (rc != 0) {
        if (!j->doomed)
            rd_log_err("store write failed; kept in memory until the store works again");
        j->doomed = true;
    }
    log_add(j, r);
    return 0;
}

static void j_finish(jstore *j);

static int j_commit(rd_store *s)
{
    jstore *j = J(s);
    j_finish(j);
    catch_up(j);
    bool tried = !j->doomed;
    int rc = j->doomed ? RD_EIO : j->inner->ops->commit(j->inner);
    if (rc == 0) {
        log_clear(j);
        check_under(j);
        j->result = 0; /* a commit reported failed is stored now too */
        return 0;
    }
    if (tried) /* the backend's transaction held the whole log */
        note_failed(j, j->tail);
    j->inner->ops->rollback(j->inner);
    j->doomed = false;
    j->pending = STAILQ_FIRST(&j->log) != NULL;
    j->m_failed++;
    return RD_EIO;
}

/* Drops the records the completed commit carried (the log's head, up to the cut). */
static void drop_committed(jstore *j)
{
    jrec *r;
    while (j->cut && (r = STAILQ_FIRST(&j->log))) {
        STAILQ_REMOVE_HEAD(&j->log, link);
        j->bytes -= r->size;
        j->writes--;
        if (r == j->cut)
            j->cut = NULL;
        rec_free(r);
    }
    j->cut = NULL;
    if (!STAILQ_FIRST(&j->log)) {
        j->held = false;
        j->tail = NULL;
    }
    check_under(j);
}

/* The commit in flight completed with rc. */
static int j_completed(jstore *j, int rc)
{
    j->inflight = false;
    j->held_bytes = 0;
    if (j->held_over) {
        j->held_over = false;
        pressure_tell(j);
    }
    rd_metric_observe(j->m_commit_seconds, NULL, rd_metrics_clock() - j->t_start);
    if (rc == 0) {
        drop_committed(j);
        return 0;
    }
    /* The backend rolled it back, or lost its answer: everything since the last good commit
     * goes again, after the backend has said whether the records up to cut were committed. */
    j->inner->ops->rollback(j->inner);
    note_failed(j, j->cut);
    j->held = false;
    j->doomed = false;
    j->pending = STAILQ_FIRST(&j->log) != NULL;
    j->m_failed++;
    return RD_EIO;
}

/* A call needs the backend while a commit is in flight: waits for it, keeps its result for
 * j_commit_poll, and tells the owner. */
static void j_finish(jstore *j)
{
    rd_store_wait w;
    if (!j->inflight)
        return;
    j->result = j_completed(j, j->inner->ops->commit_poll(j->inner, &w, true));
    j->has_result = true;
    if (j->base.commit_done)
        j->base.commit_done(j->base.commit_done_arg);
}

static void j_on_inner_done(void *arg)
{
    jstore *j = arg;
    if (j->base.commit_done)
        j->base.commit_done(j->base.commit_done_arg);
}

static int j_commit_start(rd_store *s, rd_store_wait *w)
{
    jstore *j = J(s);
    j_finish(j);
    catch_up(j);
    if (j->doomed || !j->inner->ops->commit_start) {
        double t0 = rd_metrics_clock();
        int rc = j_commit(s);
        rd_metric_observe(j->m_commit_seconds, NULL, rd_metrics_clock() - t0);
        return rc;
    }
    j->t_start = rd_metrics_clock();
    j->inner->commit_done = j_on_inner_done;
    j->inner->commit_done_arg = j;
    /* The commit carries the log up to here; a run's later update is a record of its own
     * (never an in-place change of one the commit carries, which its completion frees). */
    j->cut = j->tail;
    j->inflight = true;
    rd_map_free(j->updates);
    j->updates = rd_map_new();
    int rc = j->inner->ops->commit_start(j->inner, w);
    if (rc != 1)
        return j_completed(j, rc);
    j->held = true; /* later writes are held until it completes */
    return 1;
}

static int j_commit_poll(rd_store *s, rd_store_wait *w, bool wait)
{
    jstore *j = J(s);
    if (!j->inflight) {
        int rc = j->has_result ? j->result : 0;
        j->has_result = false;
        return rc;
    }
    int rc = j->inner->ops->commit_poll(j->inner, w, wait);
    return rc == 1 ? 1 : j_completed(j, rc);
}

/* Every commit of the daemon (runs, outbox, keys) passes here: the one place to time them. */
static int j_commit_timed(rd_store *s)
{
    double t0 = rd_metrics_clock();
    int rc = j_commit(s);
    rd_metric_observe(J(s)->m_commit_seconds, NULL, rd_metrics_clock() - t0);
    return rc;
}

static int j_rollback(rd_store *s)
{
    jstore *j = J(s);
    if (j->inflight) { /* what was written since is only held: nothing to undo yet */
        j->doomed = false;
        return 0;
    }
    j->inner->ops->rollback(j->inner);
    j->doomed = false;
    j->pending = STAILQ_FIRST(&j->log) != NULL;
    return 0;
}

static void j_close(rd_store *s)
{
    jstore *j = J(s);
    j->on_over = NULL; /* nobody to tell any more */
    j->base.commit_done = NULL;
    j_finish(j);
    if (j->writes)
        rd_log_err("store closed with %zu write(s) that could not be stored", j->writes);
    log_clear(j);
    rd_map_free(j->updates);
    rd_store_close(j->inner);
    free(j);
}

static int j_run_write(rd_store *s, const rd_run *run, jop op)
{
    jstore *j = J(s);
    jrec *r = rec_new(op, 0, NULL);
    if (r && !(r->run = rd_run_dup(run))) {
        free(r);
        r = NULL;
    }
    if (!r)
        return RD_ERR;
    jrec *old = op == J_RUN_UPDATE ? rd_map_get(j->updates, run->id) : NULL;
    if (old && !j->pending) {
        /* Only the latest row matters: replace the older copy in place (keeping its place
         * after the run's insert). A held copy is written at catch-up. */
        catch_up(j);
        int rc = j->inflight ? 0 : j->doomed ? RD_EIO : apply(j, r);
        if (is_failure(rc))
            j->doomed = true;
        rd_run_free(old->run);
        old->run = r->run;
        r->run = NULL;
        free(r);
        return 0;
    }
    int rc = jwrite(j, r);
    if (rc == 0 && op == J_RUN_UPDATE)
        rd_map_set(j->updates, run->id, r);
    return rc;
}

/* Writes whose caller needs the store's answer (a duplicate) are not held: they wait for a
 * commit in flight. They come from API calls that wait for a commit anyway. */
static int j_run_insert(rd_store *s, const rd_run *run)
{
    j_finish(J(s));
    return j_run_write(s, run, J_RUN_INSERT);
}

static int j_run_update(rd_store *s, const rd_run *run)
{
    return j_run_write(s, run, J_RUN_UPDATE);
}

static int j_event_append(rd_store *s, const char *run_id, const char *flow, const char *type,
                          int64_t ts, const char *data, int64_t item_seq, int64_t *out_id)
{
    jstore *j = J(s);
    const char *strs[] = {run_id, flow, type, data};
    jrec *r = rec_new(J_EVENT, 4, strs);
    if (!r)
        return RD_ERR;
    r->ts = ts;
    r->n = item_seq;
    catch_up(j);
    int64_t id = 0;
    int rc = j->inflight ? RD_EIO
             : j->doomed ? RD_EIO
                         : j->inner->ops->event_append(j->inner, run_id, flow, type, ts, data,
                                                       item_seq, &id);
    if (rc != 0 && !is_failure(rc)) {
        rec_free(r);
        return rc;
    }
    if (rc != 0) {
        /* Not written (held, or failed): it gets the id the backend would have given it, and
         * keeps it. */
        id = j->last_event_id + 1;
        j->doomed = j->doomed || !j->inflight;
    }
    r->id = id;
    j->last_event_id = id;
    log_add(j, r);
    if (out_id)
        *out_id = id;
    return 0;
}

static int j_idem_put(rd_store *s, const char *key_hash, const char *run_id, const char *body_hash,
                      int64_t ts)
{
    const char *strs[] = {key_hash, run_id, body_hash};
    jrec *r = rec_new(J_IDEM_PUT, 3, strs);
    if (r)
        r->ts = ts;
    j_finish(J(s));
    return jwrite(J(s), r);
}

static int j_kv_put(rd_store *s, const char *key, const char *value)
{
    const char *strs[] = {key, value};
    return jwrite(J(s), rec_new(J_KV_PUT, 2, strs));
}

static int j_enrichment_put(rd_store *s, const char *run_id, int64_t item_seq, const char *flow,
                            const char *data, int64_t ts)
{
    const char *strs[] = {run_id, flow, data};
    jrec *r = rec_new(J_ENRICH, 3, strs);
    if (r) {
        r->n = item_seq;
        r->ts = ts;
    }
    return jwrite(J(s), r);
}

static int j_dlv_write(rd_store *s, const rd_delivery *d, jop op)
{
    const char *strs[] = {d->id, d->run_id, d->type, d->url, d->secret, d->body, d->last_error};
    jrec *r = rec_new(op, 7, strs);
    if (!r)
        return RD_ERR;
    r->d = *d;
    r->d.id = r->s[0];
    r->d.run_id = r->s[1];
    r->d.type = r->s[2];
    r->d.url = r->s[3];
    r->d.secret = r->s[4];
    r->d.body = r->s[5];
    r->d.last_error = r->s[6];
    return jwrite(J(s), r);
}

static int j_dlv_insert(rd_store *s, const rd_delivery *d)
{
    return j_dlv_write(s, d, J_DLV_INSERT);
}

static int j_dlv_update(rd_store *s, const rd_delivery *d)
{
    return j_dlv_write(s, d, J_DLV_UPDATE);
}

static int j_dlv_stop(rd_store *s, const char *run_id, const char *url, int64_t now,
                      const char *why)
{
    const char *strs[] = {run_id, url, why};
    jrec *r = rec_new(J_DLV_STOP, 3, strs);
    if (r)
        r->ts = now;
    return jwrite(J(s), r);
}

/* Conditional: refused while the transaction is doomed (see the file's comment). */
static int j_dlv_lease(rd_store *s, const char *id)
{
    jstore *j = J(s);
    j_finish(j);
    catch_up(j);
    if (j->doomed)
        return RD_EIO;
    const char *strs[] = {id};
    return jwrite(j, rec_new(J_DLV_LEASE, 1, strs));
}

static int j_dlv_unlease(rd_store *s)
{
    return jwrite(J(s), rec_new(J_DLV_UNLEASE, 0, NULL));
}

static int j_dlv_attempt_add(rd_store *s, const rd_delivery_attempt *a)
{
    const char *strs[] = {a->delivery_id, a->error};
    jrec *r = rec_new(J_DLV_ATTEMPT, 2, strs);
    if (!r)
        return RD_ERR;
    r->a = *a;
    r->a.delivery_id = r->s[0];
    r->a.error = r->s[1];
    j_finish(J(s));
    return jwrite(J(s), r);
}

static int j_pgroup_put(rd_store *s, const rd_pgroup *g)
{
    const char *strs[] = {g->boot_id, g->run_id};
    jrec *r = rec_new(J_PGROUP_PUT, 2, strs);
    if (!r)
        return RD_ERR;
    r->g = *g;
    r->g.boot_id = r->s[0];
    r->g.run_id = r->s[1];
    return jwrite(J(s), r);
}

static int j_pgroup_del(rd_store *s, int64_t pgid)
{
    jrec *r = rec_new(J_PGROUP_DEL, 0, NULL);
    if (r)
        r->id = pgid;
    return jwrite(J(s), r);
}

/* Prunes pass through after the journal has caught up (they write, after what it holds). */
#define PASS(name, params, args)                                                                   \
    static int j_##name params                                                                     \
    {                                                                                              \
        j_finish(J(s));                                                                            \
        catch_up(J(s));                                                                            \
        return J(s)->inner->ops->name args;                                                        \
    }
/* Reads pass through as they are. While the journal waits for the store (pending) the
 * backend's transaction was rolled back, so a read sees what is committed: all of it
 * published, none of it losable. Writing the journal again first would show, when the store
 * still fails, a half-replayed transaction. When the journal is in the open transaction, a
 * read sees it, as any read of an open transaction does; so a read first waits for a commit
 * in flight and writes what was held meanwhile. */
#define READ(name, params, args)                                                                   \
    static int j_##name params                                                                     \
    {                                                                                              \
        j_finish(J(s));                                                                            \
        if (!J(s)->pending)                                                                        \
            catch_up(J(s));                                                                        \
        return J(s)->inner->ops->name args;                                                        \
    }

READ(run_get, (rd_store * s, const char *id, rd_run **out), (J(s)->inner, id, out))
READ(run_list,
     (rd_store * s, const rd_run_filter *f, int64_t offset, int limit, rd_run ***out, size_t *n,
      int64_t *total),
     (J(s)->inner, f, offset, limit, out, n, total))
READ(runs_active, (rd_store * s, rd_run ***out, size_t *n), (J(s)->inner, out, n))
READ(events_scan,
     (rd_store * s, const char *run_id, int64_t after_id, int limit, rd_event_cb cb, void *arg),
     (J(s)->inner, run_id, after_id, limit, cb, arg))
READ(items_scan, (rd_store * s, const rd_item_query *q, rd_event_cb cb, void *arg, int64_t *total),
     (J(s)->inner, q, cb, arg, total))
READ(idem_get,
     (rd_store * s, const char *key_hash, char *run_id, size_t run_id_len, char *body_hash,
      size_t body_hash_len),
     (J(s)->inner, key_hash, run_id, run_id_len, body_hash, body_hash_len))
READ(max_event_id, (rd_store * s, int64_t *out), (J(s)->inner, out))
READ(min_event_id, (rd_store * s, int64_t *out), (J(s)->inner, out))
READ(kv_get, (rd_store * s, const char *key, char **out_value), (J(s)->inner, key, out_value))
PASS(events_prune, (rd_store * s, int64_t before_ms, int limit, int64_t *n_deleted),
     (J(s)->inner, before_ms, limit, n_deleted))
PASS(idem_prune, (rd_store * s, int64_t before_ms, int64_t *n_deleted),
     (J(s)->inner, before_ms, n_deleted))
PASS(dlv_prune, (rd_store * s, int64_t before_ms, int limit, int64_t *n_deleted),
     (J(s)->inner, before_ms, limit, n_deleted))
READ(dlv_get, (rd_store * s, const char *id, rd_delivery_cb cb, void *arg),
     (J(s)->inner, id, cb, arg))
READ(dlv_due, (rd_store * s, int64_t now, int limit, rd_delivery_cb cb, void *arg),
     (J(s)->inner, now, limit, cb, arg))
READ(dlv_next_due, (rd_store * s, int64_t *out), (J(s)->inner, out))
/* A backend without the count (a test's) leaves the journal without it too. */
static int j_dlv_backlog(rd_store *s, int64_t *out)
{
    return rd_store_dlv_backlog(J(s)->inner, out);
}
READ(dlv_run_scan,
     (rd_store * s, const char *run_id, int64_t offset, int limit, rd_delivery_cb cb, void *arg,
      int64_t *total),
     (J(s)->inner, run_id, offset, limit, cb, arg, total))
READ(dlv_stopped, (rd_store * s, const char *run_id, const char *url, bool *out),
     (J(s)->inner, run_id, url, out))
READ(pgroups_scan, (rd_store * s, rd_pgroup_cb cb, void *arg), (J(s)->inner, cb, arg))
READ(dlv_attempts_scan, (rd_store * s, const char *delivery_id, rd_attempt_cb cb, void *arg),
     (J(s)->inner, delivery_id, cb, arg))

/* The probe passes through: it writes nothing, and says whether the store is there. Not
 * while a commit is in flight, which reports on the store itself. */
static int j_probe_send(rd_store *s, rd_store_wait *w)
{
    if (w && J(s)->inflight)
        return 0;
    return rd_store_probe_send(J(s)->inner, w);
}

static int j_probe_read(rd_store *s, rd_store_wait *w)
{
    return rd_store_probe_read(J(s)->inner, w);
}

static const rd_store_ops journal_ops = {
    .close = j_close,
    .commit = j_commit_timed,
    .rollback = j_rollback,
    .run_insert = j_run_insert,
    .run_update = j_run_update,
    .run_get = j_run_get,
    .run_list = j_run_list,
    .runs_active = j_runs_active,
    .event_append = j_event_append,
    .events_scan = j_events_scan,
    .items_scan = j_items_scan,
    .idem_get = j_idem_get,
    .idem_put = j_idem_put,
    .max_event_id = j_max_event_id,
    .min_event_id = j_min_event_id,
    .kv_get = j_kv_get,
    .kv_put = j_kv_put,
    .enrichment_put = j_enrichment_put,
    .events_prune = j_events_prune,
    .idem_prune = j_idem_prune,
    .dlv_prune = j_dlv_prune,
    .dlv_insert = j_dlv_insert,
    .dlv_update = j_dlv_update,
    .dlv_get = j_dlv_get,
    .dlv_due = j_dlv_due,
    .dlv_next_due = j_dlv_next_due,
    .dlv_backlog = j_dlv_backlog,
    .dlv_run_scan = j_dlv_run_scan,
    .dlv_stop = j_dlv_stop,
    .dlv_stopped = j_dlv_stopped,
    .dlv_lease = j_dlv_lease,
    .dlv_unlease = j_dlv_unlease,
    .dlv_attempt_add = j_dlv_attempt_add,
    .dlv_attempts_scan = j_dlv_attempts_scan,
    .pgroup_put = j_pgroup_put,
    .pgroup_del = j_pgroup_del,
    .pgroups_scan = j_pgroups_scan,
    .probe_send = j_probe_send,
    .probe_read = j_probe_read,
    .commit_start = j_commit_start,
    .commit_poll = j_commit_poll,
};

/* s as a journal, or NULL when it is another store (a test's plain backend). */
static const jstore *as_journal(const rd_store *s)
{
    return s && s->ops == &journal_ops ? (const jstore *)s : NULL;
}

rd_store *rd_store_journal_wrap(rd_store *inner)
{
    jstore *j = calloc(1, sizeof *j);
    if (!j || !(j->updates = rd_map_new())) {
        free(j);
        rd_store_close(inner);
        return NULL;
    }
    j->base.ops = &journal_ops;
    j->inner = inner;
    STAILQ_INIT(&j->log);
    /* Ids continue from the highest stored one (an event that fails to be written before any
     * has been appended gets the next). */
    inner->ops->max_event_id(inner, &j->last_event_id);
    return &j->base;
}

size_t rd_store_journal_bytes(const rd_store *s)
{
    const jstore *j = as_journal(s);
    return j ? j->bytes : 0;
}

size_t rd_store_journal_writes(const rd_store *s)
{
    const jstore *j = as_journal(s);
    return j ? j->writes : 0;
}

bool rd_store_journal_over(const rd_store *s)
{
    const jstore *j = as_journal(s);
    return j && j->over;
}

void rd_store_journal_bound(rd_store *s, size_t max, void (*fn)(void *arg, bool over), void *arg)
{
    if (!as_journal(s))
        return;
    jstore *j = J(s);
    j->max = max;
    j->on_over = fn;
    j->over_arg = arg;
    check_under(j);
}

static void journal_on_collect(void *arg)
{
    jstore *j = arg;
    rd_metric_set(j->m_bytes, NULL, (double)j->bytes);
    rd_metric_set(j->m_replays_total, NULL, (double)j->m_replays);
    rd_metric_set(j->m_writes, NULL, (double)j->writes);
    rd_metric_set(j->m_max, NULL, (double)j->max);
    rd_metric_set(j->m_over_now, NULL, j->over ? 1 : 0);
    rd_metric_set(j->m_over_total, NULL, (double)j->m_over);
}

int rd_store_journal_set_metrics(rd_store *s, rd_metrics *reg)
{
    if (!as_journal(s))
        return 0;
    jstore *j = J(s);
    j->m_commit_seconds = rd_metrics_histogram(
        reg, "runsd_store_commit_duration_seconds",
        "Time a store commit took (the journal's catch-up after a failure included).", NULL,
        rd_metrics_latency_buckets, rd_metrics_latency_nbuckets);
    j->m_bytes = rd_metrics_gauge(reg, "runsd_store_journal_bytes",
                                  "Bytes of writes held in memory until a commit succeeds.", NULL);
    j->m_replays_total = rd_metrics_counter(
        reg, "runsd_store_journal_replays_total",
        "Transactions that began by writing again what a failed one lost.", NULL);
    j->m_writes = rd_metrics_gauge(reg, "runsd_store_journal_writes",
                                   "Writes held in memory until a commit succeeds.", NULL);
    j->m_max = rd_metrics_gauge(reg, "runsd_store_journal_max_bytes",
                                "The bound ([store] max_journal; 0: none).", NULL);
    j->m_over_now =
        rd_metrics_gauge(reg, "runsd_store_journal_over",
                         "1 while the journal is past its bound and runs are paused.", NULL);
    j->m_over_total = rd_metrics_counter(reg, "runsd_store_journal_over_total",
                                         "Times the journal went past its bound.", NULL);
    return rd_metrics_collector(reg, journal_on_collect, j, NULL) == 0 ? 0 : RD_ERR;
}
