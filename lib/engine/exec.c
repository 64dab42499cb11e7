/*
 * exec.c: one attempt of a run: spawning its worker (or handing it to an external one),
 * applying each protocol message to the run, and mapping the worker's end to a status and
 * termination reason. It changes run state only through rd_transition and rd_emit.
 */
#include "engine/engine_int.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook/outbox.h"
#include "base/util.h"

#define MAX_LOGGED_PROTO_ERRORS 100

static const rd_flow_config *act_flow(rd_active *act)
{
    return rd_config_flow(act->eng->cfg, act->run->flow);
}

static void log_event(rd_active *act, const char *level, const char *source, const char *msg)
{
    json_t *d = json_pack("{s:s, s:s, s:s}", "level", level, "message", msg, "source", source);
    if (d) {
        rd_emit(act, "run.log", d, 0);
        json_decref(d);
    }
}

static void proto_error(rd_active *act, const char *why)
{
    act->run->n_proto_errors++;
    act->eng->m_proto_errors++;
    rd_mark_dirty(act);
    if (act->run->n_proto_errors <= MAX_LOGGED_PROTO_ERRORS) {
        char buf[300];
        snprintf(buf, sizeof buf, "protocol error: %s", why);
        log_event(act, "warn", "protocol", buf);
        if (act->run->n_proto_errors == MAX_LOGGED_PROTO_ERRORS)
            log_event(act, "warn", "protocol",
                      "further protocol errors are counted in metrics.protocol_errors only");
    }
}

static void clear_timer(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

void rd_exec_send(rd_active *act, json_t *msg)
{
    char *line = json_dumps(msg, JSON_COMPACT);
    if (!line)
        return;
    if (act->worker) {
        rd_worker_send_line(act->worker, line, strlen(line));
    } else if (act->external) {
        if (!act->ctl_log)
            act->ctl_log = json_array();
        json_array_append(act->ctl_log, msg);
        rd_ctl *c, *next;
        for (c = LIST_FIRST(&act->ctls); c; c = next) {
            next = LIST_NEXT(c, link);
            c->sink.send(c->sink.arg, line, strlen(line));
        }
    }
    free(line);
}

static json_t *start_message(rd_active *act)
{
    rd_run *r = act->run;
    return json_pack("{s:s, s:{s:s, s:s, s:O, s:o, s:b, s:O, s:i, s:O}}", "type", "start", "run",
                     "id", r->id, "flow", r->flow, "input", r->input ? r->input : json_null(),
                     "limit", r->limit > 0 ? json_integer(r->limit) : json_null(), "preview",
                     r->preview, "cursor", r->cursor ? r->cursor : json_null(), "attempt",
                     r->attempt, "metadata", r->metadata ? r->metadata : json_null());
}

/* A timer for act; cb receives act. */
static int arm(rd_active *act, struct event **slot, int64_t ms, event_callback_fn cb)
{
    clear_timer(slot);
    if (ms <= 0)
        return 0;
    *slot = evtimer_new(act->eng->base, cb, act);
    if (!*slot)
        return RD_ERR;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return evtimer_add(*slot, &tv);
}

static void exec_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    rd_active *act = arg;
    act->timed_out = true;
    if (act->worker) {
        rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
    } else {
        /* External worker or a waiting run without a worker: end it now. */
        rd_exec_finish_now(act);
    }
    rd_commit_soon(act->eng);
}

/* After `done` or `error` the worker should exit by itself; if it lingers, stop it. */
static void exec_on_done_grace(evutil_socket_t fd, short what, void *arg)
{
    rd_active *act = arg;
    if (act->worker)
        rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
}

static void finish_with(rd_active *act, rd_status st, rd_reason rs)
{
    if (act->finishing)
        return;
    act->finishing = true;
    act->fin_status = st;
    act->fin_reason = rs;
    if (act->worker) {
        rd_worker_close_stdin(act->worker);
        arm(act, &act->wait_ev, act->eng->cfg->kill_grace_ms, exec_on_done_grace);
    } else if (act->external) {
        rd_exec_finish_now(act);
    }
}

static void stop_for_policy(rd_active *act, rd_reason rs)
{
    if (act->finishing)
        return;
    act->finishing = true;
    act->fin_status = RD_ST_SUCCEEDED;
    act->fin_reason = rs;
    if (act->worker)
        rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
    else if (act->external)
        rd_exec_finish_now(act);
}

static void on_step(rd_active *act, const rd_msg *m)
{
    rd_run *r = act->run;
    if (!r->steps)
        r->steps = json_array();
    json_t *step = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(r->steps, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), m->name) == 0)
            step = s;
    }
    char now[40];
    rd_rfc3339(rd_now_ms(), now, sizeof now);
    if (!step) {
        step = json_pack("{s:s, s:s, s:n, s:n}", "name", m->name, "state", m->state, "started_at",
                         "finished_at");
        json_array_append_new(r->steps, step);
    }
    bool finished = strcmp(m->state, "finished") == 0;
    bool was_finished = strcmp(json_string_value(json_object_get(step, "state")), "finished") == 0;
    json_object_set_new(step, "state", json_string(m->state));
    json_object_set_new(step, finished ? "finished_at" : "started_at", json_string(now));
    if (m->has_total)
        json_object_set_new(step, "total", json_integer(m->total));
    if (finished && !was_finished)
        r->n_steps_finished++;
    json_t *d = json_pack("{s:s, s:s}", "name", m->name, "state", m->state);
    if (m->has_total)
        json_object_set_new(d, "total", json_integer(m->total));
    rd_emit(act, "run.step", d, 0);
    json_decref(d);
}

static void emit_progress(rd_active *act)
{
    rd_run *r = act->run;
    json_t *d = r->progress ? json_deep_copy(r->progress) : json_object();
    json_object_set_new(d, "evaluated", json_integer(r->n_evaluated));
    json_object_set_new(d, "matched", json_integer(r->n_matched));
    json_object_set_new(d, "items", json_integer(r->n_items));
    rd_emit(act, "run.progress", d, 0);
    json_decref(d);
}

static void on_progress(rd_active *act, const rd_msg *m)
{
    json_t *p = json_pack("{s:I}", "done", (json_int_t)m->done);
    if (m->has_total)
        json_object_set_new(p, "total", json_integer(m->total));
    if (m->message)
        json_object_set_new(p, "message", json_string(m->message));
    json_decref(act->run->progress);
    act->run->progress = p;
    emit_progress(act);
}

static void on_item(rd_active *act, const rd_msg *m, bool ok)
{
    rd_run *r = act->run;
    if (act->finishing || rd_status_terminal(r->status)) {
        r->n_dropped++;
        act->dropped_items = true;
        rd_mark_dirty(act);
        /* At the limit the worker got the chance to checkpoint and exit; one more item says
         * it will not stop by itself. */
        if (act->limit_hit && act->worker)
            rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
        return;
    }
    if (r->n_items + r->n_item_errors >= act->eng->cfg->max_items_per_run) {
        r->n_dropped++;
        proto_error(act, "max_items reached; item dropped");
        return;
    }
    int64_t seq = r->next_item_seq++;
    json_t *d = json_pack("{s:I}", "seq", (json_int_t)seq);
    if (m->data)
        json_object_set(d, "data", m->data);
    if (!ok)
        json_object_set_new(d, "error", json_string(m->message));
    rd_emit(act, ok ? "run.item" : "run.item_error", d, seq);
    json_decref(d);
    if (ok && act->eng->outbox && !r->preview && rd_outbox_wants(act->eng->outbox, r, "run.item")) {
        json_t *wire = rd_active_json(act);
        json_object_set_new(wire, "item",
                            json_pack("{s:I, s:O}", "seq", (json_int_t)seq, "data", m->data));
        rd_notify_webhook(act, "run.item", wire);
        json_decref(wire);
    }
    if (act->n_enrichers > 0)
        rd_enrich_kick(act);
    if (ok) {
        r->n_items++;
        act->eng->m_items++;
        if (r->limit > 0 && r->n_items >= r->limit) {
            /* Close stdin and give the worker its grace to write the checkpoint that follows
             * this item and exit; an extend resumes from that checkpoint. */
            act->limit_hit = true;
            finish_with(act, RD_ST_SUCCEEDED, RD_RS_MATCH_LIMIT_MET);
        }
    } else {
        r->n_item_errors++;
    }
}

static void on_candidate(rd_active *act, const rd_msg *m)
{
    rd_run *r = act->run;
    if (act->finishing || rd_status_terminal(r->status))
        return; /* the decision is made: later evaluations do not count */
    r->n_evaluated++;
    if (m->matched)
        r->n_matched++;
    rd_mark_dirty(act);
    if (r->n_evaluated % 100 == 0)
        emit_progress(act);
    const rd_flow_config *flow = act_flow(act);
    if (flow && flow->min_match_rate > 0 && r->n_evaluated >= flow->min_evaluated &&
        (double)r->n_matched / (double)r->n_evaluated < flow->min_match_rate) {
        emit_progress(act);
        stop_for_policy(act, RD_RS_LOW_MATCH_RATE);
    }
}

static void on_done(rd_active *act, const rd_msg *m)
{
    rd_reason rs = RD_RS_COMPLETED;
    if (m->reason)
        rd_reason_parse(m->reason, &rs); /* proto.c validated the value */
    finish_with(act, RD_ST_SUCCEEDED, rs);
}

static void on_error(rd_active *act, const rd_msg *m)
{
    json_decref(act->run->error);
    act->run->error = json_pack("{s:s}", "message", m->message);
    rd_mark_dirty(act);
    finish_with(act, RD_ST_FAILED, RD_RS_ERROR_OCCURRED);
}

static void apply(rd_active *act, const rd_msg *m)
{
    switch (m->type) {
    case RD_MSG_STEP:
        on_step(act, m);
        break;
    case RD_MSG_PROGRESS:
        on_progress(act, m);
        break;
    case RD_MSG_LOG:
        log_event(act, m->level, "worker", m->message);
        break;
    case RD_MSG_ITEM:
        on_item(act, m, true);
        break;
    case RD_MSG_ITEM_ERROR:
        on_item(act, m, false);
        break;
    case RD_MSG_CANDIDATE:
        on_candidate(act, m);
        break;
    case RD_MSG_CHECKPOINT:
        /* After the limit (or done) the worker's further progress is not kept, so a cursor
         * past the last kept item would make a resume skip items. */
        if (act->dropped_items)
            break;
        json_decref(act->run->cursor);
        act->run->cursor = json_incref(m->cursor);
        rd_mark_dirty(act);
        break;
    case RD_MSG_AUTH_REQUIRED:
    case RD_MSG_APPROVAL_REQUIRED:
        rd_human_request(act, m);
        break;
    case RD_MSG_ENRICHMENT:
        proto_error(act, "enrichment is only accepted from an enrichment worker");
        break;
    case RD_MSG_RESULT: {
        json_decref(act->run->result);
        act->run->result = json_incref(m->data);
        json_t *d = json_pack("{s:O}", "data", m->data);
        rd_emit(act, "run.result", d, 0);
        json_decref(d);
        break;
    }
    case RD_MSG_DONE:
        on_done(act, m);
        break;
    case RD_MSG_ERROR:
        on_error(act, m);
        break;
    default:
        proto_error(act, "unhandled message type");
    }
}

void rd_exec_line(rd_active *act, const char *line, size_t len)
{
    rd_msg m;
    char err[200];
    if (rd_status_terminal(act->run->status))
        return; /* a lingering worker after the end: its output no longer counts */
    if (len == 0 || (len == 1 && line[0] == '\r'))
        return; /* blank lines are tolerated between messages */
    if (rd_proto_parse(line, len, &m, err, sizeof err) != 0) {
        proto_error(act, err);
        return;
    }
    apply(act, &m);
    rd_msg_clear(&m);
}

static void exec_on_line(void *arg, const char *line, size_t len)
{
    rd_active *act = arg;
    rd_exec_line(act, line, len);
    rd_commit_soon(act->eng);
}

static void exec_on_overlong(void *arg)
{
    rd_active *act = arg;
    char buf[120];
    snprintf(buf, sizeof buf, "line longer than max_line (%lld bytes) dropped",
             (long long)act->eng->cfg->max_line_bytes);
    proto_error(act, buf);
}

static void exec_on_stderr(void *arg, const char *line, size_t len)
{
    rd_active *act = arg;
    int64_t max = act->eng->cfg->max_stderr_lines;
    act->stderr_lines++;
    if (act->stderr_lines <= max) {
        log_event(act, "info", "stderr", line);
    } else if (act->stderr_lines == max + 1) {
        log_event(act, "warn", "stderr", "stderr limit reached; further lines are not kept");
    }
}

/* How the attempt ends, from what the daemon asked for and how the process ended. */
static void outcome(rd_active *act, const rd_worker_exit *ex, rd_status *st, rd_reason *rs,
                    char *msg, size_t msglen)
{
    const rd_flow_config *flow = act_flow(act);
    msg[0] = 0;
    if (act->cancel_requested) {
        *st = RD_ST_CANCELLED;
        *rs = act->cancel_reason;
    } else if (act->timed_out) {
        *st = RD_ST_FAILED;
        *rs = RD_RS_TIMEOUT;
        snprintf(msg, msglen, "the run exceeded its flow's timeout");
    } else if (act->finishing) {
        *st = act->fin_status;
        *rs = act->fin_reason;
        /* A worker the daemon stopped (limit, policy, done grace) exits how SIGTERM makes it. */
        if (*st == RD_ST_SUCCEEDED && ex && ex->exited && ex->code != 0 && !ex->we_signalled) {
            *st = RD_ST_FAILED;
            *rs = RD_RS_ERROR_OCCURRED;
            snprintf(msg, msglen, "worker exited with status %d after done", ex->code);
        }
    } else if (act->eng->shutting_down) {
        bool resumable = flow && flow->resumable;
        *st = resumable ? RD_ST_QUEUED : RD_ST_CRASHED;
        *rs = resumable ? RD_RS_NONE : RD_RS_INTERRUPTED;
        if (!resumable)
            snprintf(msg, msglen, "the daemon shut down while the run was active");
    } else if (ex && ex->signaled) {
        *st = RD_ST_CRASHED;
        *rs = RD_RS_WORKER_CRASHED;
        snprintf(msg, msglen, "worker killed by signal %d (%s)", ex->sig, strsignal(ex->sig));
    } else if (ex && ex->exited && ex->code == 0) {
        *st = RD_ST_SUCCEEDED;
        *rs = RD_RS_COMPLETED;
    } else {
        *st = RD_ST_FAILED;
        *rs = RD_RS_ERROR_OCCURRED;
        snprintf(msg, msglen, "worker exited with status %d", ex ? ex->code : -1);
    }
    rd_status now = act->run->status;
    if ((now == RD_ST_PAUSED || now == RD_ST_AUTH_REQUIRED) &&
        (*st == RD_ST_SUCCEEDED || *st == RD_ST_INCOMPLETE)) {
        /* Finishing while a person is asked is not a success: the question is unanswered. */
        *st = RD_ST_FAILED;
        *rs = RD_RS_ERROR_OCCURRED;
        snprintf(msg, msglen, "worker exited while waiting for %s",
                 now == RD_ST_PAUSED ? "an approval" : "an authorization");
    }
    if (*st == RD_ST_SUCCEEDED && act->run->n_item_errors > 0) {
        *st = RD_ST_INCOMPLETE;
        *rs = RD_RS_ITEMS_FAILED;
    }
}

/* Applies the end of an attempt: from running (or a waiting state) to where it belongs. */
static void conclude(rd_active *act, const rd_worker_exit *ex)
{
    rd_status st;
    rd_reason rs;
    char msg[200];
    rd_run *r = act->run;
    const rd_flow_config *flow = act_flow(act);
    clear_timer(&act->timeout_ev);
    if (act->eng->shutting_down && !act->cancel_requested && !act->finishing && flow &&
        flow->resumable && (r->status == RD_ST_PAUSED || r->status == RD_ST_AUTH_REQUIRED)) {
        /* Stays waiting across the restart, with its links valid and no worker. */
        return;
    }
    clear_timer(&act->wait_ev);
    outcome(act, ex, &st, &rs, msg, sizeof msg);
    if (act->n_enrichers > 0) {
        if ((st == RD_ST_SUCCEEDED || st == RD_ST_INCOMPLETE) && r->status == RD_ST_RUNNING) {
            /* Not finished while an enrichment still works on its items. */
            act->deferred = true;
            act->def_status = st;
            act->def_reason = rs;
            snprintf(act->def_msg, sizeof act->def_msg, "%s", msg);
            act->finishing = act->timed_out = act->cancel_requested = act->limit_hit = false;
            rd_enrich_kick(act);
            return;
        }
        rd_enrich_stop(act, false);
    }
    act->deferred = false;
    if (st == RD_ST_CANCELLED && r->status != RD_ST_CANCELLING)
        rd_transition(act, RD_ST_CANCELLING, RD_RS_NONE, NULL);
    if (msg[0] && !r->error)
        rd_transition(act, st, rs, msg);
    else
        rd_transition(act, st, rs, NULL);
    act->finishing = act->timed_out = act->cancel_requested = act->limit_hit = false;
    if (rd_status_terminal(r->status))
        rd_active_release(act);
}

static void exec_on_exit(void *arg, const rd_worker_exit *ex)
{
    rd_active *act = arg;
    rd_run *r = act->run;
    r->cpu_user_ms += ex->cpu_user_ms;
    r->cpu_sys_ms += ex->cpu_sys_ms;
    if (ex->peak_rss_kb > r->peak_rss_kb)
        r->peak_rss_kb = ex->peak_rss_kb;
    r->run_ms += ex->wall_ms;
    rd_worker_free(act->worker);
    act->worker = NULL;
    rd_slot_release(act);
    if (!rd_status_terminal(r->status))
        conclude(act, ex);
    else
        rd_active_release(act);
    rd_mark_dirty(act);
    rd_engine_note_worker_gone(act->eng);
}

static const rd_worker_cbs worker_cbs = {
    .on_line = exec_on_line,
    .on_overlong = exec_on_overlong,
    .on_stderr = exec_on_stderr,
    .on_exit = exec_on_exit,
};

static int spawn(rd_active *act, const rd_flow_config *flow, char *err, size_t errlen)
{
    char env_id[128], env_flow[128], env_url[600];
    char *env[RD_MAX_ENV + 4];
    int n = 0;
    for (int i = 0; i < flow->n_env; i++)
        env[n++] = flow->env[i];
    snprintf(env_id, sizeof env_id, "RUNSD_RUN_ID=%s", act->run->id);
    snprintf(env_flow, sizeof env_flow, "RUNSD_FLOW=%s", act->run->flow);
    snprintf(env_url, sizeof env_url, "RUNSD_PUBLIC_URL=%s", act->eng->cfg->public_url);
    env[n++] = env_id;
    env[n++] = env_flow;
    env[n++] = env_url;
    env[n] = NULL;
    rd_worker_spec spec = {
        .argv = flow->argv,
        .env_extra = env,
        .cwd = flow->cwd,
        .max_line = (size_t)act->eng->cfg->max_line_bytes,
        .max_stderr_line = 4096,
    };
    return rd_worker_spawn(act->eng->base, act->eng->reaper, &spec, &worker_cbs, act, &act->worker,
                           err, errlen);
}

int rd_exec_start(rd_active *act)
{
    rd_engine *eng = act->eng;
    const rd_flow_config *flow = act_flow(act);
    char err[256];
    act->finishing = act->timed_out = act->cancel_requested = act->limit_hit = false;
    act->dropped_items = false;
    act->stderr_lines = 0;
    if (!flow) {
        rd_transition(act, RD_ST_CRASHED, RD_RS_SPAWN_FAILED, "flow is no longer configured");
        rd_active_release(act);
        return RD_ERR;
    }
    act->external = flow->external;
    if (!flow->external && spawn(act, flow, err, sizeof err) != 0) {
        eng->m_spawn_failures++;
        rd_log_warn("run %s: %s", act->run->id, err);
        rd_transition(act, RD_ST_CRASHED, RD_RS_SPAWN_FAILED, err);
        rd_active_release(act);
        return RD_ERR;
    }
    if (!flow->external) {
        act->counted = true;
        eng->running++;
        rd_flow_stat *st = rd_map_get(eng->flow_stats, flow->name);
        if (st)
            st->running++;
    }
    act->run->attempt++;
    rd_transition(act, RD_ST_RUNNING, RD_RS_NONE, NULL);
    json_decref(act->ctl_log);
    act->ctl_log = NULL;
    json_t *start = start_message(act);
    rd_exec_send(act, start);
    json_decref(start);
    arm(act, &act->timeout_ev, flow->timeout_ms, exec_on_timeout);
    return 0;
}

void rd_exec_enrichers_done(rd_active *act)
{
    rd_run *r = act->run;
    if (act->deferred && r->status == RD_ST_RUNNING) {
        act->deferred = false;
        rd_transition(act, act->def_status, act->def_reason,
                      act->def_msg[0] && !r->error ? act->def_msg : NULL);
    }
    if (rd_status_terminal(r->status) && !act->worker)
        rd_active_release(act);
    else if (!rd_status_active(r->status) && !act->worker)
        rd_active_release(act);
}

void rd_exec_finish_now(rd_active *act)
{
    if (rd_status_terminal(act->run->status))
        return;
    conclude(act, NULL);
}

void rd_exec_cancel(rd_active *act, rd_reason reason)
{
    act->cancel_requested = true;
    act->cancel_reason = reason;
    rd_run *r = act->run;
    if (r->status != RD_ST_CANCELLING)
        rd_transition(act, RD_ST_CANCELLING, RD_RS_NONE, NULL);
    if (act->worker) {
        rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
    } else {
        conclude(act, NULL);
    }
}

void rd_exec_shutdown(rd_active *act)
{
    rd_enrich_stop(act, false);
    if (act->worker)
        rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
}

void rd_exec_kill_cb(const char *key, void *value, void *arg)
{
    rd_active *act = value;
    if (act->worker)
        rd_worker_stop(act->worker, 0);
}

void rd_exec_close_ctls(rd_active *act)
{
    rd_ctl *c;
    while ((c = LIST_FIRST(&act->ctls))) {
        LIST_REMOVE(c, link);
        c->sink.close(c->sink.arg);
        free(c);
    }
}

void rd_exec_dispose(rd_active *act)
{
    rd_enrich_dispose(act);
    clear_timer(&act->timeout_ev);
    clear_timer(&act->wait_ev);
    rd_exec_close_ctls(act);
    json_decref(act->ctl_log);
    act->ctl_log = NULL;
}
