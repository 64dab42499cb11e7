/*
 * apply.c: what each worker message means for the run (SPEC section 2). It changes the run
 * record only through the writers of run/runs.h and returns a decision for the attempt to act
 * on (finish, stop, ask a person), so the protocol's meaning is in one place and the process
 * handling in another.
 */
#include "exec/exec_int.h"

#include <stdio.h>
#include <string.h>

static void finish(rd_apply_result *res, rd_status st, rd_reason rs)
{
    res->action = RD_APPLY_FINISH;
    res->status = st;
    res->reason = rs;
}

static void on_item(rd_active *act, rd_apply_state *st, const rd_msg *m, bool ok,
                    rd_apply_result *res)
{
    const rd_run *r = rd_active_run(act);
    if (st->replay_skip > 0) {
        /* Stored by an earlier attempt after the checkpoint this one resumed from. */
        st->replay_skip--;
        return;
    }
    if (st->ending || rd_status_terminal(r->status)) {
        rd_run_item_dropped(act);
        st->dropped_items = true;
        /* At the limit the worker got the chance to checkpoint and exit; one more item says
         * it will not stop by itself. */
        if (st->limit_hit && st->has_worker)
            res->action = RD_APPLY_STOP_WORKER;
        return;
    }
    if (r->n_items + r->n_item_errors >= rd_runs_config(rd_active_runs(act))->max_items_per_run) {
        rd_run_item_dropped(act);
        rd_run_protocol_error(act, "max_items reached; item dropped");
        return;
    }
    rd_run_item(act, ok, m->data, ok ? NULL : m->message);
    res->action = RD_APPLY_NEW_ITEM;
    if (ok && r->limit > 0 && r->n_items >= r->limit) {
        /* Close stdin and give the worker its grace to write the checkpoint that follows this
         * item and exit; an extend resumes from that checkpoint. */
        st->limit_hit = true;
        finish(res, RD_ST_SUCCEEDED, RD_RS_MATCH_LIMIT_MET);
    }
}

static void on_candidate(rd_active *act, rd_apply_state *st, const rd_msg *m, rd_apply_result *res)
{
    const rd_run *r = rd_active_run(act);
    if (st->ending || rd_status_terminal(r->status))
        return; /* the decision is made: later evaluations do not count */
    rd_run_candidate(act, m->matched);
    const rd_flow_config *flow = rd_config_flow(rd_runs_config(rd_active_runs(act)), r->flow);
    if (flow && flow->min_match_rate > 0 && r->n_evaluated >= flow->min_evaluated &&
        (double)r->n_matched / (double)r->n_evaluated < flow->min_match_rate) {
        rd_run_progress_now(act);
        res->action = RD_APPLY_POLICY_STOP;
        res->status = RD_ST_SUCCEEDED;
        res->reason = RD_RS_LOW_MATCH_RATE;
    }
}

static void on_done(const rd_msg *m, rd_apply_result *res)
{
    rd_reason rs = RD_RS_COMPLETED;
    if (m->reason)
        rd_reason_parse(m->reason, &rs); /* proto.c validated the value */
    finish(res, RD_ST_SUCCEEDED, rs);
}

void rd_apply_msg(rd_active *act, rd_apply_state *st, const rd_msg *m, rd_apply_result *res)
{
    res->action = RD_APPLY_NONE;
    switch (m->type) {
    case RD_MSG_STEP:
        rd_run_step(act, m->name, m->state, m->has_total, m->total);
        break;
    case RD_MSG_PROGRESS:
        rd_run_progress(act, m->done, m->has_total, m->total, m->message);
        break;
    case RD_MSG_LOG:
        rd_run_log(act, m->level, "worker", m->message);
        break;
    case RD_MSG_ITEM:
    case RD_MSG_ITEM_ERROR:
        on_item(act, st, m, m->type == RD_MSG_ITEM, res);
        break;
    case RD_MSG_CANDIDATE:
        on_candidate(act, st, m, res);
        break;
    case RD_MSG_CHECKPOINT:
        /* After the limit (or done) the worker's further progress is not kept, so a cursor
         * past the last kept item would make a resume skip items. */
        if (!st->dropped_items)
            rd_run_checkpoint(act, m->cursor);
        break;
    case RD_MSG_AUTH_REQUIRED:
    case RD_MSG_APPROVAL_REQUIRED:
        res->action = RD_APPLY_ASK;
        break;
    case RD_MSG_ENRICHMENT:
        rd_run_protocol_error(act, "enrichment is only accepted from an enrichment worker");
        break;
    case RD_MSG_RESULT:
        rd_run_result(act, m->data);
        break;
    case RD_MSG_DONE:
        on_done(m, res);
        break;
    case RD_MSG_ERROR:
        rd_run_error(act, m->message, NULL);
        finish(res, RD_ST_FAILED, RD_RS_ERROR_OCCURRED);
        break;
    default:
        rd_run_protocol_error(act, "unhandled message type");
    }
}
