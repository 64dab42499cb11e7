/*
 * prune.c: retention and idempotency-key expiry. A round every PRUNE_PERIOD_S deletes in
 * small batches, each its own short transaction: idempotency keys past idempotency_ttl, then
 * events of finished runs past event_retention, then webhook deliveries past it. Each batch
 * runs from rd_runs_after_commit, so it never waits for a commit in flight and its own commit
 * never holds the loop; pruning a large backlog takes a few batches a minute.
 */
#include "engine/engine_int.h"

#include <event2/event.h>
#include <stdlib.h>

#define PRUNE_BATCH 2000
#define PRUNE_BATCHES 5
#define PRUNE_PERIOD_S 60

enum { PR_IDLE, PR_KEYS, PR_EVENTS, PR_DELIVERIES };

static void prune_step(void *arg, int rc);

/* The batch just queued commits, then the next one runs. */
static void prune_next(rd_engine *eng)
{
    eng->prune_wait = rd_runs_after_commit(eng->runs, prune_step, eng);
    if (!eng->prune_wait)
        eng->prune_stage = PR_IDLE;
}

/* After a batch of n (the stage's limit reached or not), the stage goes on or the next. */
static void prune_advance(rd_engine *eng, int64_t n)
{
    if (n >= PRUNE_BATCH && ++eng->prune_batches < PRUNE_BATCHES)
        return;
    eng->prune_batches = 0;
    eng->prune_stage = eng->prune_stage == PR_DELIVERIES ? PR_IDLE : eng->prune_stage + 1;
}

static void prune_step(void *arg, int rc)
{
    rd_engine *eng = arg;
    int64_t n = 0, keep = eng->cfg->event_retention_ms;
    eng->prune_wait = NULL;
    if (rc != 0 || eng->shutting_down) {
        eng->prune_stage = PR_IDLE; /* the next period tries again */
        return;
    }
    switch (eng->prune_stage) {
    case PR_KEYS:
        rc = rd_store_idem_prune(eng->store, rd_now_ms() - eng->cfg->idempotency_ttl_ms, &n);
        eng->prune_stage = keep > 0 ? PR_EVENTS : PR_IDLE;
        break;
    case PR_EVENTS:
        rc = rd_store_events_prune(eng->store, rd_now_ms() - keep, PRUNE_BATCH, &n);
        eng->m_pruned += (uint64_t)n;
        if (n > 0) /* streams learn the new oldest id without a read of their own */
            eng->oldest_known = rd_store_min_event_id(eng->store, &eng->oldest_id) == 0 && rc == 0;
        if (n > 0)
            rd_log_debug("retention: %lld event(s) of finished runs deleted", (long long)n);
        prune_advance(eng, n);
        break;
    case PR_DELIVERIES:
        rc = rd_store_dlv_prune(eng->store, rd_now_ms() - keep, PRUNE_BATCH, &n);
        prune_advance(eng, n);
        break;
    default:
        return;
    }
    if (rc != 0)
        eng->prune_stage = PR_IDLE;
    prune_next(eng); /* commits this batch; a finished round stops there */
}

static void engine_on_prune(evutil_socket_t fd, short what, void *arg)
{
    rd_engine *eng = arg;
    if (eng->shutting_down || eng->prune_stage != PR_IDLE)
        return; /* a round still going (a slow store) is not doubled */
    eng->prune_stage = PR_KEYS;
    eng->prune_batches = 0;
    prune_next(eng);
}

int rd_prune_init(rd_engine *eng)
{
    eng->prune_ev = event_new(eng->base, -1, EV_PERSIST, engine_on_prune, eng);
    return eng->prune_ev ? 0 : RD_ERR;
}

void rd_prune_dispose(rd_engine *eng)
{
    if (eng->prune_wait)
        rd_runs_after_commit_cancel(eng->runs, eng->prune_wait);
    eng->prune_wait = NULL;
    if (eng->prune_ev)
        event_free(eng->prune_ev);
    eng->prune_ev = NULL;
}

void rd_engine_start_pruning(rd_engine *eng)
{
    struct timeval tv = {PRUNE_PERIOD_S, 0};
    event_add(eng->prune_ev, &tv);
    engine_on_prune(-1, 0, eng); /* a backlog from a long stop goes at once */
}
