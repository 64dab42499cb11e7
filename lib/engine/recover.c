/*
 * recover.c: recovery at start (SPEC section 6). Every run the store holds as active is
 * adopted again: queued runs are queued, running runs of resumable flows go back to queued
 * (their worker resumes from the last checkpoint), waiting runs of resumable flows keep
 * waiting with their links, and everything else ends crashed/interrupted. Before any of it,
 * the workers a crashed daemon left running are killed (rd_exec_reap_leftovers).
 */
#include "engine/engine_int.h"

/* Recovery of one stored active run (SPEC section 6). */
static void recover_one(rd_engine *eng, rd_run *run)
{
    rd_active *act = rd_runs_adopt(eng->runs, run);
    if (!act) {
        rd_run_free(run);
        return;
    }
    const rd_flow_config *flow = rd_config_flow(eng->cfg, run->flow);
    bool resumable = flow && flow->resumable;
    switch (run->status) {
    case RD_ST_QUEUED:
        if (!flow)
            rd_run_transition(act, RD_ST_CRASHED, RD_RS_INTERRUPTED,
                              "flow is no longer configured");
        else
            rd_sched_enqueue(eng, act);
        break;
    case RD_ST_RUNNING:
    case RD_ST_PAUSED:
    case RD_ST_AUTH_REQUIRED:
        if (resumable && run->status == RD_ST_RUNNING) {
            rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
            rd_sched_enqueue(eng, act);
        } else if (resumable) {
            rd_exec_resume_waiting(eng->exec, act);
        } else {
            rd_run_transition(act, RD_ST_CRASHED, RD_RS_INTERRUPTED,
                              "the daemon stopped while the run was active");
        }
        break;
    case RD_ST_CANCELLING:
        rd_run_transition(act, RD_ST_CANCELLED, rd_run_cancel_reason(run), NULL);
        break;
    default:
        break;
    }
    if (!rd_status_active(run->status))
        rd_active_release(act);
}

int rd_engine_recover(rd_engine *eng)
{
    rd_run **runs = NULL;
    size_t n = 0;
    /* First: a resumed attempt must never overlap what is left of the previous one. */
    rd_exec_reap_leftovers(eng->exec);
    if (rd_store_runs_active(eng->store, &runs, &n) != 0)
        return RD_EIO;
    for (size_t i = 0; i < n; i++) {
        recover_one(eng, runs[i]);
        runs[i] = NULL;
    }
    rd_run_array_free(runs, n);
    if (n)
        rd_log_info("recovered %zu active run(s)", n);
    int rc = rd_runs_flush(eng->runs);
    rd_sched_soon(eng);
    rd_engine_start_pruning(eng);
    return rc;
}
