/*
 * runs_probe.c: the store's health probe. A commit that fails marks the daemon not ready,
 * but an idle daemon commits nothing, so without a probe its /readyz would stay 200 while its
 * PostgreSQL server is gone. Every PROBE_MS, when the store has a probe (rd_store_probes),
 * the store sends a trivial query between transactions; its answer is read when the
 * connection's socket turns readable, so the loop never waits for it. No answer within
 * ANSWER_MS, a lost connection or a failed reconnection marks the store not ready
 * (rd_runs_store_ok); while it is, probes back off to PROBE_MAX_MS (each also tries to
 * reconnect). The first answer after that marks it ready again and commits what the journal
 * holds, so held events are published without waiting for the engine's retry timer.
 *
 * While the connection is lost, a probe is a reconnection: the store starts it without
 * waiting and the probe carries it on each time the socket is as the store asked (readable,
 * or writable while connecting), so a server that is slow to accept never holds the loop.
 */
#include "run/run_int.h"

#include <event2/event.h>

#define PROBE_MS 1000
#define PROBE_MAX_MS 4000
#define ANSWER_MS 2000

static void probe_arm(rd_runs *rs)
{
    struct timeval tv = {rs->probe_ms / 1000, (rs->probe_ms % 1000) * 1000};
    evtimer_add(rs->probe_timer, &tv);
}

/* The probe's verdict: the store is there or not; the next probe is scheduled. */
static void probe_done(rd_runs *rs, bool ok)
{
    if (ok && rs->probe_down) {
        rd_log_info("store: the database answers again");
        rs->probe_down = false;
        if (!rs->store_ok)
            rd_runs_commit_soon(rs); /* what the journal holds, off the loop */
    } else if (!ok && !rs->probe_down) {
        rd_log_err("store: the database does not answer; not ready until it does");
        rs->probe_down = true;
    }
    rs->probe_ms = ok                                ? PROBE_MS
                   : rs->probe_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS
                                                     : rs->probe_ms * 2;
    probe_arm(rs);
}

static void runs_on_probe_answer(evutil_socket_t fd, short what, void *arg);

/* Waits for the socket to be as w says, at most ANSWER_MS (the socket changes with each
 * reconnection, and what to wait for with each of its steps). */
static void probe_wait(rd_runs *rs, const rd_store_wait *w)
{
    struct timeval tv = {ANSWER_MS / 1000, (ANSWER_MS % 1000) * 1000};
    short ev = (short)((w->rd ? EV_READ : 0) | (w->wr ? EV_WRITE : 0));

    if (rs->probe_answer)
        event_free(rs->probe_answer);
    rs->probe_answer = event_new(rs->base, w->fd, ev, runs_on_probe_answer, rs);
    if (!rs->probe_answer || event_add(rs->probe_answer, &tv) != 0) {
        rd_log_err("store: cannot wait for a probe's answer");
        probe_arm(rs);
    }
}

static void runs_on_probe_answer(evutil_socket_t fd, short what, void *arg)
{
    rd_runs *rs = arg;
    rd_store_wait w = {0};
    /* Also on a timeout: a store call in between may have read the answer. */
    int rc = rd_store_probe_read(rs->store, &w);

    if (rc != 1 || w.fd < 0) {
        probe_done(rs, rc == 0);
        return;
    }
    if ((what & EV_TIMEOUT) && !rs->probe_down) {
        /* Still out: not ready meanwhile, and keep waiting (a late answer counts). */
        rd_log_err("store: the database has not answered a probe in %d ms", ANSWER_MS);
        rs->probe_down = true;
    }
    probe_wait(rs, &w);
}

static void runs_on_probe(evutil_socket_t unused, short what, void *arg)
{
    rd_runs *rs = arg;
    rd_store_wait w = {0};
    int rc = rd_store_probe_send(rs->store, &w);

    if (rc == 0 && w.fd < 0 && rs->commit_late) {
        probe_arm(rs); /* a late commit holds the connection; its completion reports */
        return;
    }
    if (rc != 0 || w.fd < 0) {
        /* Unreachable, or busy in a transaction (whose commit reports on the store). */
        probe_done(rs, rc == 0);
        return;
    }
    probe_wait(rs, &w);
}

int rd_runs_probe_start(rd_runs *rs)
{
    if (!rd_store_probes(rs->store))
        return 0;
    rs->probe_ms = PROBE_MS;
    rs->probe_timer = evtimer_new(rs->base, runs_on_probe, rs);
    if (!rs->probe_timer)
        return RD_ERR;
    probe_arm(rs);
    return 0;
}

void rd_runs_probe_stop(rd_runs *rs)
{
    if (rs->probe_timer)
        event_free(rs->probe_timer);
    if (rs->probe_answer)
        event_free(rs->probe_answer);
    rs->probe_timer = rs->probe_answer = NULL;
}
