/*
 * sched.c: the scheduler. Queued runs wait in FIFO order for an executor slot (max_running,
 * and each flow's concurrency); a run holds its slot from its worker's spawn to its reaping.
 * Also shutdown, which ends when the last worker has been reaped (told by the execution
 * layer's worker_gone hook, not found by polling).
 */
#include "engine/engine_int.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

static rd_sched_entry *entry_of(rd_active *act)
{
    rd_sched_entry *se = rd_active_slot(act, RD_SLOT_SCHED);
    if (!se && (se = calloc(1, sizeof *se))) {
        se->act = act;
        rd_active_set_slot(act, RD_SLOT_SCHED, se);
    }
    return se;
}

static rd_flow_stat *flow_stat(rd_engine *eng, const char *flow)
{
    rd_flow_stat *st = rd_map_get(eng->flow_stats, flow);
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st || rd_map_set(eng->flow_stats, flow, st) != 0) {
            free(st);
            return NULL;
        }
    }
    return st;
}

int rd_sched_flow_running(rd_engine *eng, const char *flow)
{
    rd_flow_stat *st = rd_map_get(eng->flow_stats, flow);
    return st ? st->running : 0;
}

static void dequeue(rd_engine *eng, rd_sched_entry *se)
{
    if (se && se->in_queue) {
        TAILQ_REMOVE(&eng->queue, se, qlink);
        se->in_queue = false;
    }
}

static void slot_release(rd_engine *eng, rd_sched_entry *se)
{
    if (!se || !se->counted)
        return;
    se->counted = false;
    eng->running--;
    rd_flow_stat *st = flow_stat(eng, rd_active_run(se->act)->flow);
    if (st)
        st->running--;
    rd_sched_soon(eng);
}

void rd_sched_enqueue(rd_engine *eng, rd_active *act)
{
    const rd_flow_config *flow = rd_config_flow(eng->cfg, rd_active_run(act)->flow);
    rd_sched_entry *se = entry_of(act);
    if (se && !se->in_queue && !(flow && flow->external)) {
        TAILQ_INSERT_TAIL(&eng->queue, se, qlink);
        se->in_queue = true;
    }
    rd_sched_soon(eng);
}

int rd_sched_start(rd_engine *eng, rd_active *act)
{
    int rc = rd_exec_start(eng->exec, act);
    rd_sched_entry *se = entry_of(act);
    if (rc == 0 && se && rd_exec_has_worker(act) && !se->counted) {
        se->counted = true;
        eng->running++;
        rd_flow_stat *st = flow_stat(eng, rd_active_run(act)->flow);
        if (st)
            st->running++;
    }
    return rc;
}

void rd_sched_now(rd_engine *eng)
{
    if (eng->shutting_down)
        return;
    rd_sched_entry *se, *next;
    for (se = TAILQ_FIRST(&eng->queue); se && eng->running < eng->cfg->max_running; se = next) {
        next = TAILQ_NEXT(se, qlink);
        const char *name = rd_active_run(se->act)->flow;
        const rd_flow_config *flow = rd_config_flow(eng->cfg, name);
        rd_flow_stat *st = flow_stat(eng, name);
        if (flow && st && st->running >= flow->concurrency)
            continue;
        dequeue(eng, se);
        rd_sched_start(eng, se->act); /* takes the slot, or ends the run spawn_failed */
    }
    rd_runs_commit_soon(eng->runs);
}

static void sched_on_schedule(evutil_socket_t fd, short what, void *arg)
{
    rd_sched_now(arg);
}

void rd_sched_soon(rd_engine *eng)
{
    if (!event_pending(eng->sched_ev, EV_TIMEOUT, NULL))
        event_active(eng->sched_ev, EV_TIMEOUT, 0);
}

int rd_sched_check_room(rd_engine *eng, rd_apierr *e)
{
    int n = rd_runs_n_queued(eng->runs);
    if (n < eng->cfg->max_queued)
        return 0;
    rd_fail(e, 429, "queue_full", "%d runs are already queued; retry later", n);
    e->retry_after = 5;
    return -1;
}

/* A run that leaves queued (cancelled, started elsewhere) leaves the queue. */
static void sched_on_status(void *arg, rd_active *act, rd_status from, rd_status to)
{
    if (from == RD_ST_QUEUED && to != RD_ST_QUEUED)
        dequeue(arg, rd_active_slot(act, RD_SLOT_SCHED));
}

static void sched_on_free(void *arg, rd_active *act)
{
    rd_sched_entry *se = rd_active_slot(act, RD_SLOT_SCHED);
    if (!se)
        return;
    dequeue(arg, se);
    slot_release(arg, se);
    rd_active_set_slot(act, RD_SLOT_SCHED, NULL);
    free(se);
}

static void shutdown_check(rd_engine *eng);

static void sched_on_worker_gone(void *arg, rd_active *act)
{
    rd_engine *eng = arg;
    slot_release(eng, rd_active_slot(act, RD_SLOT_SCHED));
    if (eng->shutting_down)
        shutdown_check(eng);
}

static void free_stat(const char *key, void *value, void *arg)
{
    free(value);
}

int rd_sched_init(rd_engine *eng)
{
    TAILQ_INIT(&eng->queue);
    eng->flow_stats = rd_map_new();
    eng->sched_ev = event_new(eng->base, -1, 0, sched_on_schedule, eng);
    rd_exec_hooks hooks = {.worker_gone = sched_on_worker_gone, .arg = eng};
    eng->exec = rd_exec_new(eng->runs, &hooks);
    rd_runs_observer o = {.on_status = sched_on_status, .on_free = sched_on_free, .arg = eng};
    eng->observer = eng->exec ? rd_runs_observe(eng->runs, &o) : NULL;
    return eng->flow_stats && eng->sched_ev && eng->observer ? 0 : RD_ERR;
}

/* After rd_runs_free: no record is left to observe. */
void rd_sched_dispose(rd_engine *eng)
{
    rd_exec_free(eng->exec);
    if (eng->flow_stats) {
        rd_map_each(eng->flow_stats, free_stat, NULL);
        rd_map_free(eng->flow_stats);
    }
    if (eng->sched_ev)
        event_free(eng->sched_ev);
}

static void shutdown_check(rd_engine *eng)
{
    if (eng->running > 0 || !eng->shutdown_done)
        return;
    rd_runs_flush(eng->runs);
    void (*done)(void *) = eng->shutdown_done;
    eng->shutdown_done = NULL;
    done(eng->shutdown_arg);
}

void rd_engine_shutdown(rd_engine *eng, void (*done)(void *arg), void *arg)
{
    bool again = eng->shutting_down;
    eng->shutting_down = true;
    eng->shutdown_done = done;
    eng->shutdown_arg = arg;
    rd_exec_shutdown(eng->exec, again);
    shutdown_check(eng);
}
