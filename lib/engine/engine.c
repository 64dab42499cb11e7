/*
 * engine.c: the engine object: it owns the run set (run/) and the execution layer (exec/),
 * wires the scheduler to them, and does the housekeeping that belongs to no single run
 * (listeners, metrics). The operations live in ops.c, answers.c and query.c; the queue and
 * shutdown in sched.c; retention in prune.c.
 */
#include "engine/engine_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"
#include "store/store_journal.h"
#include "webhook/outbox.h"

static void throttle_apply(rd_engine *eng)
{
    rd_exec_throttle(eng->exec, eng->throttle_hub || eng->throttle_store);
}

static void engine_on_release(evutil_socket_t fd, short what, void *arg)
{
    rd_engine *eng = arg;
    if (!eng->throttle_store && eng->on_release)
        eng->on_release(eng->release_arg);
}

/* The store journal went past its bound (on: from inside the write that did, so the worker
 * whose line it was stops at once) or was emptied by a commit (off: from inside the commit,
 * so held posts, which write, go from the loop). */
static void engine_on_journal(void *arg, bool over)
{
    rd_engine *eng = arg;
    eng->throttle_store = over;
    throttle_apply(eng);
    if (!over && eng->release_ev)
        event_active(eng->release_ev, EV_TIMEOUT, 1);
}

rd_engine *rd_engine_new(struct event_base *base, rd_store *store, const rd_config *cfg)
{
    rd_engine *eng = calloc(1, sizeof *eng);
    if (!eng)
        return NULL;
    eng->base = base;
    eng->store = store;
    eng->cfg = cfg;
    eng->runs = rd_runs_new(base, store, cfg);
    eng->release_ev = event_new(base, -1, 0, engine_on_release, eng);
    if (!eng->runs || rd_prune_init(eng) != 0 || !eng->release_ev || rd_sched_init(eng) != 0) {
        rd_engine_free(eng);
        return NULL;
    }
    rd_store_journal_bound(store, (size_t)cfg->store_max_journal, engine_on_journal, eng);
    return eng;
}

void rd_engine_free(rd_engine *eng)
{
    if (!eng)
        return;
    /* The journal outlives the engine (the server closes it last): it must not call back. */
    if (eng->store)
        rd_store_journal_bound(eng->store, 0, NULL, NULL);
    rd_prune_dispose(eng); /* no batch from the last commits */
    /* Records first (their attempts free their workers), then the layers that observed them. */
    rd_runs_free(eng->runs);
    rd_sched_dispose(eng);
    if (eng->release_ev)
        event_free(eng->release_ev);
    free(eng);
}

void rd_engine_set_config(rd_engine *eng, const rd_config *cfg)
{
    eng->cfg = cfg;
    rd_runs_set_config(eng->runs, cfg);
    rd_store_journal_bound(eng->store, (size_t)cfg->store_max_journal, engine_on_journal, eng);
    rd_sched_soon(eng);
}

void rd_engine_set_outbox(rd_engine *eng, struct rd_outbox *ob)
{
    rd_runs_set_outbox(eng->runs, ob);
}

int rd_engine_add_listener_gated(rd_engine *eng, rd_event_listener fn,
                                 bool (*wants)(void *arg, const char *run_id), void *arg)
{
    return rd_runs_listen(eng->runs, fn, wants, arg) ? 0 : RD_ERR;
}

int rd_engine_add_listener(rd_engine *eng, rd_event_listener fn, void *arg)
{
    return rd_engine_add_listener_gated(eng, fn, NULL, arg);
}

int rd_engine_flush(rd_engine *eng)
{
    return rd_runs_flush(eng->runs);
}

void *rd_engine_after_commit(rd_engine *eng, void (*fn)(void *arg, int rc), void *arg)
{
    return rd_runs_after_commit(eng->runs, fn, arg);
}

void *rd_engine_after_inflight(rd_engine *eng, void (*fn)(void *arg, int rc), void *arg)
{
    return rd_runs_after_inflight(eng->runs, fn, arg);
}

void rd_engine_after_commit_cancel(rd_engine *eng, void *handle)
{
    rd_runs_after_commit_cancel(eng->runs, handle);
}

int rd_engine_reply(json_t *json, json_t **out, rd_apierr *e)
{
    if (!json)
        return rd_fail(e, 500, "internal", "out of memory");
    *out = json;
    return 0;
}

rd_store *rd_engine_store(rd_engine *eng)
{
    return eng->store;
}

void rd_engine_throttle(rd_engine *eng, bool on)
{
    eng->throttle_hub = on;
    throttle_apply(eng);
}

bool rd_engine_store_pressure(const rd_engine *eng)
{
    return eng->throttle_store;
}

void rd_engine_on_release(rd_engine *eng, void (*fn)(void *arg), void *arg)
{
    eng->on_release = fn;
    eng->release_arg = arg;
}

int rd_engine_oldest_event_id(rd_engine *eng, int64_t *out)
{
    if (!eng->oldest_known) {
        if (rd_store_min_event_id(eng->store, &eng->oldest_id) != 0)
            return RD_EIO;
        eng->oldest_known = true;
    }
    *out = eng->oldest_id;
    return 0;
}

bool rd_engine_committing(const rd_engine *eng)
{
    return rd_runs_committing(eng->runs);
}

bool rd_engine_store_ok(const rd_engine *eng)
{
    return rd_runs_store_ok(eng->runs);
}

bool rd_engine_ready(const rd_engine *eng)
{
    return rd_runs_store_ok(eng->runs) && !eng->shutting_down;
}

typedef struct engine_metrics {
    rd_engine *eng;
    rd_metric *running, *queued, *pruned;
} engine_metrics;

static void engine_on_collect(void *arg)
{
    engine_metrics *m = arg;
    rd_metric_set(m->running, NULL, m->eng->running);
    rd_metric_set(m->queued, NULL, rd_runs_n_queued(m->eng->runs));
    rd_metric_set(m->pruned, NULL, (double)m->eng->m_pruned);
}

int rd_engine_set_metrics(rd_engine *eng, rd_metrics *reg)
{
    engine_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return RD_ERR;
    m->eng = eng;
    m->running = rd_metrics_gauge(reg, "runsd_runs_running",
                                  "Local workers running (executor slots taken).", NULL);
    m->queued = rd_metrics_gauge(reg, "runsd_runs_queued", "Runs in status queued.", NULL);
    m->pruned =
        rd_metrics_counter(reg, "runsd_events_pruned_total", "Events deleted by retention.", NULL);
    if (rd_metrics_collector(reg, engine_on_collect, m, free) != 0) {
        free(m);
        return RD_ERR;
    }
    rd_exec_set_metrics(eng->exec, reg);
    return rd_runs_set_metrics(eng->runs, reg);
}

static void engine_count_waiting(rd_active *act, void *arg)
{
    rd_status s = rd_active_run(act)->status;
    if (s == RD_ST_PAUSED || s == RD_ST_AUTH_REQUIRED)
        ++*(int *)arg;
}

void rd_engine_counts(rd_engine *eng, int *running, int *queued, int *waiting)
{
    *running = eng->running;
    *queued = rd_runs_n_queued(eng->runs);
    *waiting = 0;
    rd_runs_each(eng->runs, engine_count_waiting, waiting);
}

int rd_engine_event_frames(rd_engine *eng, const rd_event *ev, rd_frames *out)
{
    rd_frame_src src = {.id = ev->id,
                        .type = ev->type,
                        .run_id = ev->run_id,
                        .flow = ev->flow,
                        .ts = ev->ts,
                        .data = ev->data};
    return rd_runs_frames(eng->runs, &src, out);
}

json_t *rd_engine_run_json(rd_engine *eng, const rd_run *r)
{
    return rd_runs_run_json(eng->runs, r);
}

bool rd_engine_stream_token_ok(rd_engine *eng, const char *id, const char *token)
{
    return rd_runs_stream_token_ok(eng->runs, id, token);
}
