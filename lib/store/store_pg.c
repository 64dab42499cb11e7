/*
 * store_pg.c: the PostgreSQL backend of store.h, with libpq. This file owns the connection,
 * the batch's transaction, the event id counter and reconnection; the operations live in
 * store_pg_runs.c, _events.c and _outbox.c, the schema in store_pg_schema.c.
 *
 * The connection stays in libpq's pipeline mode. The first write of a batch sends BEGIN;
 * writes whose result the caller does not need are queued without a round trip
 * (rd_pg_send); a call that needs an answer (rd_pg_call) reads the results of everything
 * queued before it, then its own. rd_store_commit() sends COMMIT and a Sync and reads the
 * lot: one round trip per batch for the bulk of the writes (events, run rows), which is
 * what group commit means here. A failed statement aborts the server's transaction, so the
 * batch is marked failed: every later write and the commit report RD_EIO, the journal
 * (store_journal.c) rolls back and writes the batch again.
 *
 * Event ids. The single row of runsd_event_seq holds the highest id ever committed. The first
 * event of a transaction takes the row's lock (SELECT ... FOR UPDATE) until that transaction
 * ends; ids are then handed out locally, and the commit writes the last one back in the same
 * transaction. The store knows the value it committed last (last_id), so the lock is queued
 * without waiting for its answer, with a check that fails the transaction if the row holds
 * anything else (another writer committed since); after any failed transaction the next one
 * reads the row under the lock instead, one round trip. A second writer's first event waits on the
 * lock until the first commits, so a transaction that holds ids never overlaps another that holds
 * ids: every id a reader can see committed is below every id still in flight, and ids appear in
 * commit order (docs/postgresql.md, "Event ids").
 *
 * Waiting. The commit of a burst does not wait for the server: pg_commit_start sends the id
 * counter's UPDATE, COMMIT and a Sync with the connection non-blocking and returns; the loop
 * watches the socket and pg_commit_poll reads the results as they arrive (run/runs_commit.c
 * publishes in the completion). One commit is in flight at a time; a call that needs the
 * connection meanwhile (a read, a synchronous commit) first waits for it and keeps its result
 * for the poll, telling the owner through the store's commit hook. The connection stays
 * non-blocking (flush_wait where a call must have sent everything); reads are still one
 * synchronous round trip each, and every wait ends by [store] timeout (store_pg_conn.c).
 *
 * A lost connection is noticed by the call that fails, or by the health probe an idle daemon
 * sends between transactions (pg_probe_send, whose answer the loop reads when the socket is
 * readable: run/runs_probe.c). Every wait ends by [store] timeout, and reconnecting never
 * waits (store_pg_conn.c, which also looks up a commit whose answer was lost). Until then
 * every call fails at once.
 *
 * A transaction's events are gathered (store_pg_batch.c) and sent as one multi-row INSERT
 * before the next other statement, before COMMIT, or when the batch is full.
 */
#include "store/store_pg_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* Results read after this many queued writes, so the server's answers never pile up. */
#define MAX_PENDING 2000

static rd_pg *P(rd_store *s)
{
    return (rd_pg *)s;
}

void pga_i64(pg_args *a, int64_t v)
{
    snprintf(a->buf[a->n], sizeof a->buf[a->n], "%" PRId64, v);
    a->v[a->n] = a->buf[a->n];
    a->n++;
}

int64_t rd_pg_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

const char *rd_pg_str(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* ---- the connection --------------------------------------------------------------------- */

/* The connection is gone or unusable: forget the transaction (the server rolls it back) and
 * let the next call reconnect. The open batch, if any, fails; the journal keeps it. */
void rd_pg_down(rd_pg *s, const char *what)
{
    if (s->up)
        rd_log_err("store: postgresql: %s: %s", what, PQerrorMessage(s->conn));
    s->up = false;
    /* COMMIT was out and its answer is lost: the server may have committed. */
    s->doubt = s->doubt || s->commit_sent;
    if (s->commit_sent) {
        s->doubt_mark = s->tx_mark;
        s->doubt_prev = s->mark;
        s->commit_sent = false;
    }
    s->resync = true; /* another writer may have committed meanwhile */
    s->failed = s->failed || s->tx_open;
    s->pending = 0;
    s->have_ids = false;
    s->probing = false;
    s->committing = s->commit_bad = false;
    s->connecting = s->preparing = s->resolving = false;
    rd_pg_batch_reset(&s->events);
}

/* Prepares every statement, then enters pipeline mode. */
static int pg_setup(PGconn *conn, char *err, size_t errlen)
{
    char sql[8192];

    for (int i = 0; i < PS__COUNT; i++) {
        if (!rd_pg_sql((pg_st)i, sql, sizeof sql)) {
            snprintf(err, errlen, "statement %s is too long", rd_pg_st_name((pg_st)i));
            return RD_EIO;
        }
        PGresult *r = PQprepare(conn, rd_pg_st_name((pg_st)i), sql, 0, NULL);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            snprintf(err, errlen, "prepare %s: %s", rd_pg_st_name((pg_st)i),
                     PQresultErrorMessage(r));
        PQclear(r);
        if (!ok)
            return RD_EIO;
    }
    if (PQenterPipelineMode(conn) != 1 || PQsetnonblocking(conn, 1) != 0) {
        snprintf(err, errlen, "cannot enter pipeline mode: %s", PQerrorMessage(conn));
        return RD_EIO;
    }
    return 0;
}

/* A kept value: the first column of the first row of the last result that has rows. */
static void keep_val(const PGresult *r, int64_t *val)
{
    if (val && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        *val = rd_pg_i64(r, 0, 0);
}

int rd_pg_read_to_sync(rd_pg *s, bool wait, bool *bad, int64_t *val, const char *what)
{
    int nulls = 0;
    /* A wait for the commit in flight ends when its answer is due; any other after timeout. */
    int64_t until = s->committing ? s->commit_until : rd_pg_until(s);

    for (;;) {
        if (wait && rd_pg_wait(s, true, until, what) != 0)
            return RD_EIO;
        if (!wait && PQconsumeInput(s->conn) != 1)
            break;
        if (!wait && PQisBusy(s->conn))
            return 1;
        PGresult *r = PQgetResult(s->conn);
        if (!r) {
            /* One NULL ends a statement's results; more in a row mean the Sync is not coming. */
            if (PQstatus(s->conn) != CONNECTION_OK || ++nulls > 2)
                break;
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            return 0;
        }
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            if (st != PGRES_PIPELINE_ABORTED && !*bad)
                rd_log_err("store: postgresql: %s: %s", what, PQresultErrorMessage(r));
            *bad = true;
        }
        keep_val(r, val);
        PQclear(r);
    }
    rd_pg_down(s, what);
    return RD_EIO;
}

/* Reads the results of a probe (pg_probe_send, below): its SELECT, then the Sync. wait:
 * blocks until they are in (a store call needs the connection); else returns 1 as soon as
 * reading would block. 0 when the server answered, RD_EIO when the connection is gone. */
static int probe_take(rd_pg *s, bool wait)
{
    bool bad = false;
    int rc = rd_pg_read_to_sync(s, wait, &bad, NULL, "probe");

    if (rc == 1 && rd_mono_ms() <= s->probe_until)
        return 1;
    if (rc == 1) {
        rd_pg_drop(s, "probe");
        rc = RD_EIO;
    }
    s->probing = false;
    return rc == 0 && !bad ? 0 : RD_EIO;
}

/* What the socket must be for the wait to end: readable, and writable while libpq holds
 * output the socket did not take (flushed < 0: nothing to send). */
void rd_pg_want_io(rd_pg *s, rd_store_wait *w, bool rd, bool wr)
{
    w->fd = PQsocket(s->conn);
    w->rd = rd;
    w->wr = wr;
    w->timeout_ms = 0;
}

/* The connection is non-blocking (a batch of events sent mid-transaction never waits for the
 * socket); a call that must have sent everything waits here, reading what arrives meanwhile
 * so the server never blocks on us. */
static int flush_wait(rd_pg *s)
{
    return rd_pg_wait(s, false, rd_pg_until(s), "send");
}

/* After an error the server still holds the aborted transaction: end it (one round trip, on
 * a server that has just answered). */
static void end_aborted(rd_pg *s)
{
    if (!s->up || PQtransactionStatus(s->conn) == PQTRANS_IDLE)
        return;
    bool bad = false;
    if (PQsendQueryParams(s->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQpipelineSync(s->conn) != 1 || flush_wait(s) != 0) {
        rd_pg_down(s, "rollback");
        return;
    }
    rd_pg_read_to_sync(s, true, &bad, NULL, "rollback");
}

/* Reads what arrived of the commit in flight: 1 not complete (wait as *w says), 0 committed,
 * RD_EIO failed. wait: blocks until it is complete. */
static int commit_read(rd_pg *s, rd_store_wait *w, bool wait)
{
    int fl = wait ? 0 : PQflush(s->conn);
    int rc = fl < 0 ? RD_EIO : rd_pg_read_to_sync(s, wait, &s->commit_bad, NULL, "commit");

    if (fl < 0)
        rd_pg_down(s, "send");
    if (rc == 1 && rd_mono_ms() > s->commit_until) {
        rd_pg_drop(s, "commit"); /* in doubt: looked up on the next connection */
        rc = RD_EIO;
    }
    if (rc == 1) {
        rd_pg_want_io(s, w, true, fl == 1);
        int64_t left = s->commit_until - rd_mono_ms();
        w->timeout_ms = left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
        return 1;
    }
    s->committing = false;
    s->commit_sent = false; /* answered (or the doubt was noted when the connection went) */
    if (rc == 0 && (s->commit_bad || !s->up)) {
        end_aborted(s);
        rc = RD_EIO;
    }
    if (rc == 0 && s->commit_top > 0)
        s->last_id = s->commit_top;
    if (rc == 0)
        s->mark = s->tx_mark;
    s->resync = s->resync || rc != 0;
    s->commit_bad = false;
    return rc;
}

/* A call needs the connection while a commit is in flight: wait for it, keep its result for
 * pg_commit_poll and tell the store's owner. */
static void commit_finish(rd_pg *s)
{
    rd_store_wait w;
    if (!s->committing)
        return;
    s->commit_rc = commit_read(s, &w, true);
    s->commit_done = true;
    if (s->base.commit_done)
        s->base.commit_done(s->base.commit_done_arg);
}

/* Called by every operation: waits for what is out on the connection (a commit, a probe),
 * and carries a reconnection on, without waiting, when the connection was lost. */
static int pg_ready(rd_pg *s)
{
    rd_store_wait w;

    commit_finish(s);
    if (s->probing) /* a store call needs the connection: the probe's answer first */
        probe_take(s, true);
    if (s->up)
        return 0;
    if (s->tx_open) /* the batch that was open when the link broke must end first */
        return RD_EIO;
    return rd_pg_reconnect(s, &w) == 0 ? 0 : RD_EIO;
}

/* ---- results ---------------------------------------------------------------------------- */

/* Reads the results of one statement. The first good one goes to *keep (when wanted). Each
 * result is waited for at most [store] timeout. */
static int take(rd_pg *s, PGresult **keep, const char *what)
{
    PGresult *r;
    int rc = 0;
    int64_t until = rd_pg_until(s);

    for (;;) {
        if (rd_pg_wait(s, true, until, what) != 0)
            return RD_EIO;
        if (!(r = PQgetResult(s->conn)))
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
            if (keep && !*keep) {
                *keep = r;
                continue;
            }
        } else if (st == PGRES_PIPELINE_ABORTED) {
            rc = RD_EIO;
        } else {
            if (!s->failed)
                rd_log_err("store: postgresql: %s: %s", what, PQresultErrorMessage(r));
            rc = RD_EIO;
        }
        PQclear(r);
    }
    if (PQstatus(s->conn) != CONNECTION_OK) {
        rd_pg_down(s, what);
        rc = RD_EIO;
    }
    return rc;
}

/* Reads the results of the statements queued earlier. A failure fails the transaction. */
static int drain(rd_pg *s)
{
    int rc = 0;
    while (s->pending > 0 && s->up) {
        s->pending--;
        if (take(s, NULL, "queued write") != 0)
            rc = RD_EIO;
    }
    if (rc != 0)
        s->failed = true;
    return s->up ? rc : RD_EIO;
}

/* Reads up to and including the pipeline's Sync. */
static int take_sync(rd_pg *s)
{
    int64_t until = rd_pg_until(s);

    for (int nulls = 0; s->up && nulls < 4;) {
        if (rd_pg_wait(s, true, until, "sync") != 0)
            return RD_EIO;
        PGresult *r = PQgetResult(s->conn);
        if (!r) {
            if (PQstatus(s->conn) != CONNECTION_OK)
                rd_pg_down(s, "sync");
            nulls++;
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        PQclear(r);
        if (st == PGRES_PIPELINE_SYNC)
            return 0;
    }
    if (s->up)
        rd_pg_down(s, "sync never came");
    return RD_EIO;
}

static int flush(rd_pg *s, bool sync)
{
    if ((sync ? PQpipelineSync(s->conn) : PQsendFlushRequest(s->conn)) != 1 || flush_wait(s) != 0) {
        rd_pg_down(s, "send");
        return RD_EIO;
    }
    return 0;
}

/* ---- sending ---------------------------------------------------------------------------- */

static int send_one(rd_pg *s, pg_st st, const pg_args *a)
{
    static const pg_args none = {0};
    a = a ? a : &none;
    if (PQsendQueryPrepared(s->conn, rd_pg_st_name(st), a->n, a->v, NULL, NULL, 0) != 1) {
        rd_pg_down(s, rd_pg_st_name(st));
        return RD_EIO;
    }
    return 0;
}

/* Sends the transaction's gathered events as one statement, queued like any write. */
static int send_events(rd_pg *s)
{
    pg_args a;
    int rc;

    if (s->events.rows == 0)
        return 0;
    rd_pg_batch_args(&s->events, &a);
    rc = send_one(s, PS_EV_APPEND_MANY, &a);
    rd_pg_batch_reset(&s->events);
    s->pending += rc == 0;
    if (rc != 0)
        s->failed = true;
    return rc;
}

/* Every statement goes out after the events gathered before it, so the server sees them in
 * the order they were made (a read in the transaction sees the events written before it). */
static int send_st(rd_pg *s, pg_st st, const pg_args *a)
{
    return send_events(s) != 0 ? RD_EIO : send_one(s, st, a);
}

/* Opens the batch's transaction if none is open. */
static int tx_begin(rd_pg *s)
{
    if (s->tx_open)
        return s->failed || !s->up ? RD_EIO : 0;
    if (pg_ready(s) != 0)
        return RD_EIO;
    /* The commit marker first: its row lock tells a lookup after a lost answer when this
     * transaction has ended (store_pg_conn.c). */
    if (PQsendQueryParams(s->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        rd_pg_mark_send(s) != 0) {
        rd_pg_down(s, "begin");
        return RD_EIO;
    }
    s->pending += 2;
    s->tx_open = true;
    s->failed = false;
    return 0;
}

int rd_pg_send(rd_store *base, pg_st st, const pg_args *a)
{
    rd_pg *s = P(base);
    if (tx_begin(s) != 0 || send_st(s, st, a) != 0)
        return RD_EIO;
    if (++s->pending >= MAX_PENDING && (flush(s, false) != 0 || drain(s) != 0))
        return RD_EIO;
    return 0;
}

int rd_pg_call(rd_store *base, pg_st st, const pg_args *a, bool write, PGresult **out)
{
    rd_pg *s = P(base);
    int rc = write ? tx_begin(s) : s->tx_open ? (s->failed || !s->up ? RD_EIO : 0) : pg_ready(s);

    *out = NULL;
    if (rc != 0 || send_st(s, st, a) != 0 || flush(s, !s->tx_open) != 0 || drain(s) != 0)
        return RD_EIO;
    rc = take(s, out, rd_pg_st_name(st));
    if (!s->tx_open && s->up && take_sync(s) != 0)
        rc = RD_EIO;
    if (rc != 0 && s->tx_open)
        s->failed = true;
    if (rc != 0 || !*out) {
        PQclear(*out);
        *out = NULL;
        return RD_EIO;
    }
    return 0;
}

int rd_pg_call_i64(rd_store *s, pg_st st, const pg_args *a, int64_t *out)
{
    PGresult *r;
    if (rd_pg_call(s, st, a, false, &r) != 0)
        return RD_EIO;
    *out = PQntuples(r) > 0 ? rd_pg_i64(r, 0, 0) : 0;
    PQclear(r);
    return 0;
}

int rd_pg_call_n(rd_store *s, pg_st st, const pg_args *a, int64_t *n)
{
    PGresult *r;
    if (rd_pg_call(s, st, a, true, &r) != 0)
        return RD_EIO;
    *n = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return 0;
}

/* ---- event ids -------------------------------------------------------------------------- */

/* The counter's lock for a transaction's first event: queued with the check (no waiting), or
 * after a failure read under the lock. 0 and *last, or RD_EIO. */
static int seq_lock(rd_pg *s, int64_t *last)
{
    if (!s->resync) {
        pg_args a = {0};
        pga_i64(&a, s->last_id);
        *last = s->last_id;
        return rd_pg_send(&s->base, PS_SEQ_CHECK, &a);
    }
    PGresult *r;
    if (rd_pg_call(&s->base, PS_SEQ_LOCK, NULL, true, &r) != 0)
        return RD_EIO;
    *last = PQntuples(r) == 1 ? rd_pg_i64(r, 0, 0) : -1;
    PQclear(r);
    if (*last < 0) {
        rd_log_err("store: postgresql: the event id counter row is missing");
        s->failed = true;
        return RD_EIO;
    }
    s->last_id = *last;
    s->resync = false;
    return 0;
}

int rd_pg_event_id(rd_store *base, int64_t want, int64_t *out)
{
    rd_pg *s = P(base);
    if (tx_begin(s) != 0)
        return RD_EIO;
    if (!s->have_ids) {
        int64_t last;
        if (seq_lock(s, &last) != 0)
            return RD_EIO;
        if (want > 0 && want <= last) {
            /* Ids handed out while a commit was in flight follow that commit's; another
             * writer has committed these since, so they would not be in commit order. */
            rd_log_err("store: postgresql: event id %" PRId64 " was taken by another writer", want);
            s->failed = true;
            return RD_EIO;
        }
        s->have_ids = true;
        s->next_id = last + 1;
        s->top_id = last;
    }
    /* A journal writing a lost batch again passes the ids that batch had. */
    *out = want > 0 ? want : s->next_id;
    if (*out >= s->next_id)
        s->next_id = *out + 1;
    if (*out > s->top_id)
        s->top_id = *out;
    return 0;
}

int rd_pg_event_queue(rd_store *base, int64_t id, const char *run_id, const char *flow,
                      const char *type, int64_t ts, const char *data, int64_t item_seq)
{
    rd_pg *s = P(base);
    if (tx_begin(s) != 0)
        return RD_EIO;
    if (rd_pg_batch_add(&s->events, id, run_id, flow, type, ts, data, item_seq) != 0) {
        rd_log_err("store: postgresql: out of memory gathering events");
        rd_pg_batch_reset(&s->events);
        s->failed = true;
        return RD_EIO;
    }
    if (!rd_pg_batch_full(&s->events))
        return 0;
    /* Out now, so the server inserts these rows while the loop reads the next ones. */
    if (send_events(s) != 0 || PQflush(s->conn) < 0) {
        rd_pg_down(s, "send");
        return RD_EIO;
    }
    if (s->pending >= MAX_PENDING && (flush(s, false) != 0 || drain(s) != 0))
        return RD_EIO;
    return 0;
}

/* ---- transactions ----------------------------------------------------------------------- */

/* Ends the transaction: COMMIT (commit) or ROLLBACK, a Sync, and every result read. */
static int tx_end(rd_pg *s, bool commit)
{
    int rc = 0;
    bool ids = s->have_ids;
    if (!s->tx_open)
        return 0;
    if (!commit)
        rd_pg_batch_reset(&s->events); /* never sent: nothing to undo */
    if (s->up && commit && s->have_ids) {
        pg_args a = {0};
        pga_i64(&a, s->top_id);
        rc = send_st(s, PS_SEQ_SET, &a);
        s->pending += rc == 0;
    }
    if (s->up && rc == 0 &&
        PQsendQueryParams(s->conn, commit ? "COMMIT" : "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ==
            1) {
        s->pending++;
        s->commit_sent = commit;
        if (flush(s, true) == 0 && drain(s) == 0)
            rc = take_sync(s);
        else
            rc = RD_EIO;
        s->commit_sent = false; /* answered, or the doubt was noted when the link went */
    } else {
        rc = RD_EIO;
    }
    /* After an error the server still holds the aborted transaction: end it. */
    if (s->up && PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PQsendQueryParams(s->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0);
        s->pending = 1;
        if (flush(s, true) == 0) {
            drain(s);
            take_sync(s);
        }
    }
    rc = rc == 0 && !s->failed ? 0 : RD_EIO;
    if (rc == 0 && commit && ids)
        s->last_id = s->top_id;
    if (rc == 0 && commit)
        s->mark = s->tx_mark;
    s->resync = s->resync || rc != 0;
    rd_pg_batch_reset(&s->events);
    s->tx_open = s->failed = s->have_ids = false;
    s->pending = 0;
    return rc;
}

static int pg_commit(rd_store *base)
{
    rd_pg *s = P(base);
    commit_finish(s); /* its result stays for pg_commit_poll */
    return tx_end(s, true);
}

/* Sends the end of the transaction (the counter, COMMIT, a Sync) with the connection
 * non-blocking and returns; pg_commit_poll reads the results. */
static int pg_commit_start(rd_store *base, rd_store_wait *w)
{
    rd_pg *s = P(base);
    int rc = 0;

    commit_finish(s);
    if (!s->tx_open)
        return 0;
    if (s->failed || !s->up)
        return tx_end(s, true); /* fails, and ends what the server holds */
    s->commit_top = s->have_ids ? s->top_id : 0;
    if (s->have_ids) {
        pg_args a = {0};
        pga_i64(&a, s->top_id);
        rc = send_st(s, PS_SEQ_SET, &a);
    }
    s->tx_open = s->have_ids = false;
    s->pending = 0;
    rd_pg_batch_reset(&s->events);
    if (rc != 0 || PQsendQueryParams(s->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQpipelineSync(s->conn) != 1) {
        rd_pg_down(s, "commit");
        s->failed = false;
        return RD_EIO;
    }
    s->committing = s->commit_sent = true;
    s->commit_until = rd_pg_until(s);
    s->commit_bad = s->failed = false;
    return commit_read(s, w, false);
}

static int pg_commit_poll(rd_store *base, rd_store_wait *w, bool wait)
{
    rd_pg *s = P(base);
    if (s->committing)
        return commit_read(s, w, wait);
    if (!s->commit_done)
        return 0;
    s->commit_done = false;
    return s->commit_rc;
}

static int pg_rollback(rd_store *base)
{
    tx_end(P(base), false);
    return 0;
}

/* ---- the health probe ------------------------------------------------------------------ */

/* A probe is sent only between transactions: its Sync must not end one. While the connection
 * is lost, the probe is the reconnection. */
static int pg_probe_send(rd_store *base, rd_store_wait *w)
{
    rd_pg *s = P(base);

    if (!w)
        return 0;
    if (s->probing && rd_mono_ms() > s->probe_until)
        probe_take(s, false); /* unanswered past the timeout: dropped, reconnected below */
    if (s->tx_open || s->probing || s->committing)
        return 0;
    if (!s->up) {
        int rc = rd_pg_reconnect(s, w);
        if (rc != 0)
            return rc == 1 ? 0 : RD_EIO;
        *w = (rd_store_wait){.fd = -1};
    }
    if (PQsendQueryParams(s->conn, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0) != 1 ||
        PQpipelineSync(s->conn) != 1 || flush_wait(s) != 0) {
        rd_pg_down(s, "probe");
        return RD_EIO;
    }
    s->probing = true;
    s->probe_until = rd_pg_until(s);
    rd_pg_want_io(s, w, true, false);
    return 0;
}

static int pg_probe_read(rd_store *base, rd_store_wait *w)
{
    rd_pg *s = P(base);
    int rc;

    if (s->probing) {
        if ((rc = probe_take(s, false)) == 1)
            rd_pg_want_io(s, w, true, false);
        return rc;
    }
    if (s->connecting)
        return rd_pg_reconnect(s, w);
    return s->up ? 0 : RD_EIO;
}

/* After a failed commit: whether it was committed after all (its answer was lost and the lookup
 * on the new connection found its marker). Carries the reconnection on without waiting while
 * that is not known. */
static int pg_commit_landed(rd_store *base)
{
    rd_pg *s = P(base);
    rd_store_wait w;

    if (s->doubt && !s->up && !s->tx_open)
        rd_pg_reconnect(s, &w);
    if (s->doubt)
        return RD_EIO;
    int rc = s->outcome;
    s->outcome = 0;
    return rc;
}

/* ---- open and close --------------------------------------------------------------------- */

/* The one teardown, safe on a half-built store. */
static void pg_close(rd_store *base)
{
    rd_pg *s = P(base);
    if (!s)
        return;
    if (s->committing && (commit_finish(s), s->commit_rc != 0))
        rd_log_err("store: close: the commit in flight failed");
    if (s->tx_open && tx_end(s, true) != 0)
        rd_log_err("store: close: the last transaction was not committed");
    PQfinish(s->conn); /* NULL is a no-op */
    rd_pg_dns_free(s->dns);
    free(s->dsn);
    free(s->password_file);
    rd_pg_batch_dispose(&s->events);
    free(s);
}

static const rd_store_ops pg_ops = {
    .close = pg_close,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .run_insert = rd_pg_run_insert,
    .run_update = rd_pg_run_update,
    .run_get = rd_pg_run_get,
    .run_list = rd_pg_run_list,
    .runs_active = rd_pg_runs_active,
    .event_append = rd_pg_event_append,
    .events_scan = rd_pg_events_scan,
    .items_scan = rd_pg_items_scan,
    .idem_get = rd_pg_idem_get,
    .idem_put = rd_pg_idem_put,
    .max_event_id = rd_pg_max_event_id,
    .min_event_id = rd_pg_min_event_id,
    .kv_get = rd_pg_kv_get,
    .kv_put = rd_pg_kv_put,
    .pgroup_put = rd_pg_pgroup_put,
    .pgroup_del = rd_pg_pgroup_del,
    .pgroups_scan = rd_pg_pgroups_scan,
    .enrichment_put = rd_pg_enrichment_put,
    .events_prune = rd_pg_events_prune,
    .idem_prune = rd_pg_idem_prune,
    .dlv_prune = rd_pg_dlv_prune,
    .dlv_insert = rd_pg_dlv_insert,
    .dlv_update = rd_pg_dlv_update,
    .dlv_get = rd_pg_dlv_get,
    .dlv_due = rd_pg_dlv_due,
    .dlv_next_due = rd_pg_dlv_next_due,
    .dlv_run_scan = rd_pg_dlv_run_scan,
    .dlv_stop = rd_pg_dlv_stop,
    .dlv_stopped = rd_pg_dlv_stopped,
    .dlv_lease = rd_pg_dlv_lease,
    .dlv_unlease = rd_pg_dlv_unlease,
    .dlv_attempt_add = rd_pg_dlv_attempt_add,
    .dlv_attempts_scan = rd_pg_dlv_attempts_scan,
    .probe_send = pg_probe_send,
    .probe_read = pg_probe_read,
    .dlv_backlog = rd_pg_dlv_backlog,
    .commit_start = pg_commit_start,
    .commit_poll = pg_commit_poll,
    .commit_landed = pg_commit_landed,
};

/* Connects at start, waiting (the daemon is not serving yet): libpq resolves the host. */
static PGconn *pg_connect(const rd_pg *s)
{
    const char *keys[8], *vals[8];
    rd_pg_params(s, NULL, keys, vals);
    return PQconnectdbParams(keys, vals, 1);
}

int rd_store_open_pg(const rd_store_pg_opts *o, rd_store **out, char *err, size_t errlen)
{
    rd_pg *s = calloc(1, sizeof *s);
    int rc;

    if (!s) {
        snprintf(err, errlen, "out of memory");
        return RD_EIO;
    }
    s->base.ops = &pg_ops;
    s->resync = true; /* the first transaction reads the counter */
    s->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    s->dsn = strdup(o->dsn ? o->dsn : "");
    s->password_file = o->password_file && *o->password_file ? strdup(o->password_file) : NULL;
    s->conn = s->dsn ? pg_connect(s) : NULL;
    if (!s->conn || PQstatus(s->conn) != CONNECTION_OK) {
        /* libpq's message names the host or socket and the reason, never the password. */
        snprintf(err, errlen, "cannot connect to postgresql: %s",
                 s->conn ? PQerrorMessage(s->conn) : "out of memory");
        pg_close(&s->base);
        return RD_EIO;
    }
    if ((rc = rd_pg_migrate(s->conn, err, errlen)) != 0 ||
        (rc = rd_pg_mark_open(s, err, errlen)) != 0 || (rc = pg_setup(s->conn, err, errlen)) != 0) {
        pg_close(&s->base);
        return rc;
    }
    s->up = true;
    s->dns = rd_pg_dns_new(o->base, s->dsn);
    rd_log_info("store: postgresql database %s on %s, schema version %d", PQdb(s->conn),
                PQhost(s->conn), rd_pg_schema_version());
    *out = &s->base;
    return 0;
}
