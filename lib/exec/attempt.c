/*
 * attempt.c: the attempt object: one try at running a run, by a local worker process or an
 * external worker. It owns the worker, the flow timeout and the waiting deadline, what the
 * daemon has asked of the attempt (end_attempt, the one way to end one), the external
 * worker's control log and sinks, and the run's enrichment set. When the worker is gone (or
 * at once when there is none) conclude() applies the outcome table (outcome.c) through the
 * run's single transition function.
 */
#include "exec/exec_int.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "base/metrics.h"
#include "base/util.h"
#include "exec/cgroup.h"
#include "exec/enrich.h"
#include "exec/outcome.h"
#include "exec/pgroup.h"

typedef struct rd_ctl {
    LIST_ENTRY(rd_ctl) link;
    struct rd_attempt *att;
    rd_ctl_sink sink;
} rd_ctl;

typedef struct rd_attempt {
    rd_exec *x;
    rd_active *act;
    rd_worker *worker;
    struct event *timeout_ev; /* flow timeout of the current attempt */
    struct event *wait_ev;    /* approval/auth deadline, or the grace after done */
    bool external;
    /* What was asked of the attempt (precedence in outcome.h). */
    rd_end_kind end;
    rd_status end_status;
    rd_reason end_reason;
    rd_apply_state ap;
    int64_t timeout_left_ms; /* flow timeout left while a person is asked */
    int64_t stderr_lines;
    json_t *ctl_log; /* external runs: daemon -> worker messages so far */
    LIST_HEAD(, rd_ctl) ctls;
    rd_enrich_set *enrich;
    /* The worker finished while enrichments still work: the terminal transition waits for
     * the last of them. */
    bool deferred;
    rd_outcome def;
} rd_attempt;

struct rd_exec {
    rd_runs *rs;
    rd_reaper *reaper;
    rd_cgroups *cgroups; /* max_processes; detected once here, at start */
    rd_exec_hooks hooks;
    void *observer;
    bool shutting_down;
    bool throttled;              /* backpressure: workers' output is not read */
    rd_metric *m_spawn_failures; /* by flow; NULL without a registry */
};

/* How long the start waits for the killed leftovers of a crashed daemon to die. */
#define RD_LEFTOVER_WAIT_MS 3000

static void conclude(rd_attempt *a, const rd_worker_exit *ex);

static const rd_config *cfg_of(const rd_attempt *a)
{
    return rd_runs_config(a->x->rs);
}

static const rd_flow_config *flow_of(const rd_attempt *a)
{
    return rd_config_flow(cfg_of(a), rd_active_run(a->act)->flow);
}

static void clear_timer(struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
}

/* A timer for the attempt in ms (at once when ms <= 0); cb receives the attempt. */
static int arm(rd_attempt *a, struct event **slot, int64_t ms, event_callback_fn cb)
{
    clear_timer(slot);
    if (ms < 0)
        ms = 0;
    *slot = evtimer_new(rd_runs_base(a->x->rs), cb, a);
    if (!*slot)
        return RD_ERR;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return evtimer_add(*slot, &tv);
}

static void close_ctls(rd_attempt *a)
{
    rd_ctl *c;
    while ((c = LIST_FIRST(&a->ctls))) {
        LIST_REMOVE(c, link);
        c->sink.close(c->sink.arg);
        free(c);
    }
}

static void attempt_free(rd_attempt *a)
{
    rd_enrich_set_free(a->enrich);
    clear_timer(&a->timeout_ev);
    clear_timer(&a->wait_ev);
    close_ctls(a);
    json_decref(a->ctl_log);
    if (a->worker)
        rd_worker_free(a->worker);
    free(a);
}

/* The attempt of act, created on first use. */
static rd_attempt *att_of(rd_exec *x, rd_active *act)
{
    rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    if (a)
        return a;
    a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->x = x;
    a->act = act;
    LIST_INIT(&a->ctls);
    const rd_flow_config *flow = flow_of(a);
    a->external = flow && flow->external;
    rd_active_set_slot(act, RD_SLOT_EXEC, a);
    return a;
}

static void exec_on_status(void *arg, rd_active *act, rd_status from, rd_status to)
{
    rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    if (!a || !rd_status_terminal(to))
        return;
    close_ctls(a); /* the control stream of a finished run ends */
    if (a->enrich)
        rd_enrich_source_closed(a->enrich);
}

static void exec_on_free(void *arg, rd_active *act)
{
    rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    if (!a)
        return;
    rd_active_set_slot(act, RD_SLOT_EXEC, NULL);
    attempt_free(a);
}

rd_exec *rd_exec_new(rd_runs *rs, const rd_exec_hooks *hooks)
{
    rd_exec *x = calloc(1, sizeof *x);
    if (!x)
        return NULL;
    x->rs = rs;
    x->hooks = *hooks;
    x->reaper = rd_reaper_new(rd_runs_base(rs));
    x->cgroups = rd_cgroups_new(rd_runs_base(rs), "");
    if (x->reaper && x->cgroups)
        rd_reaper_set_cgroups(x->reaper, x->cgroups);
    rd_runs_observer o = {.on_status = exec_on_status, .on_free = exec_on_free, .arg = x};
    x->observer = x->reaper && x->cgroups ? rd_runs_observe(rs, &o) : NULL;
    if (!x->observer) {
        rd_exec_free(x);
        return NULL;
    }
    return x;
}

void rd_exec_free(rd_exec *x)
{
    if (!x)
        return;
    rd_reaper_free(x->reaper);
    rd_cgroups_free(x->cgroups);
    free(x);
}

/* Before recovery resumes a run, nothing its previous attempt started may still run: the
 * process groups a crashed daemon left behind are killed, and waited for (bounded: this runs
 * once, before the loop). */
int rd_exec_reap_leftovers(rd_exec *x)
{
    return rd_pgroup_kill_leftovers(rd_runs_store(x->rs), RD_LEFTOVER_WAIT_MS);
}

void rd_exec_set_metrics(rd_exec *x, rd_metrics *reg)
{
    x->m_spawn_failures = rd_metrics_counter(
        reg, "runsd_spawn_failures_total",
        "Worker commands that could not be started (the run ends crashed/spawn_failed), by flow.",
        RD_LV("flow"));
}

/* Sends a daemon -> worker message: the worker's stdin, or an external run's control log. */
static void send_msg(rd_attempt *a, json_t *msg)
{
    char *line = json_dumps(msg, JSON_COMPACT);
    if (!line)
        return;
    if (a->worker) {
        rd_worker_send_line(a->worker, line, strlen(line));
    } else if (a->external) {
        if (!a->ctl_log)
            a->ctl_log = json_array();
        json_array_append(a->ctl_log, msg);
        rd_ctl *c, *next;
        for (c = LIST_FIRST(&a->ctls); c; c = next) {
            next = LIST_NEXT(c, link);
            c->sink.send(c->sink.arg, line, strlen(line));
        }
    }
    free(line);
}

static void exec_on_done_grace(evutil_socket_t fd, short what, void *arg)
{
    rd_attempt *a = arg;
    if (a->worker)
        rd_worker_stop(a->worker, cfg_of(a)->kill_grace_ms);
}

/* The one way to end an attempt. kind, status and reason say what was asked (a later, weaker
 * request does not replace a stronger one; override lets a deadline or a refusal replace an
 * earlier finish). graceful: close the worker's stdin and let it exit within the grace;
 * otherwise stop it. With no worker the attempt concludes at once. */
static void end_attempt(rd_attempt *a, rd_end_kind kind, rd_status st, rd_reason rs, bool override,
                        bool graceful)
{
    if (kind < a->end || (kind == a->end && kind == RD_END_FINISH && !override))
        return;
    a->end = kind;
    a->end_status = st;
    a->end_reason = rs;
    a->ap.ending = true;
    if (a->worker && graceful) {
        rd_worker_close_stdin(a->worker);
        if (cfg_of(a)->kill_grace_ms > 0)
            arm(a, &a->wait_ev, cfg_of(a)->kill_grace_ms, exec_on_done_grace);
    } else if (a->worker) {
        rd_worker_stop(a->worker, cfg_of(a)->kill_grace_ms);
    } else if (!rd_status_terminal(rd_active_run(a->act)->status)) {
        conclude(a, NULL);
    }
    rd_runs_commit_soon(a->x->rs);
}

static void exec_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    rd_attempt *a = arg;
    end_attempt(a, RD_END_TIMEOUT, RD_ST_FAILED, RD_RS_TIMEOUT, true, false);
}

/* The flow timeout counts working time only: it stops while a person is asked. */
static void pause_flow_timeout(rd_attempt *a)
{
    if (!a->timeout_ev)
        return;
    struct timeval tv;
    if (event_pending(a->timeout_ev, EV_TIMEOUT, &tv)) {
        struct timeval now;
        event_base_gettimeofday_cached(rd_runs_base(a->x->rs), &now);
        int64_t left =
            ((int64_t)tv.tv_sec - now.tv_sec) * 1000 + ((int64_t)tv.tv_usec - now.tv_usec) / 1000;
        a->timeout_left_ms = left > 0 ? left : 1;
    }
    event_del(a->timeout_ev);
}

static void resume_flow_timeout(rd_attempt *a)
{
    if (a->timeout_ev && a->timeout_left_ms > 0) {
        struct timeval tv = {(time_t)(a->timeout_left_ms / 1000),
                             (suseconds_t)((a->timeout_left_ms % 1000) * 1000)};
        evtimer_add(a->timeout_ev, &tv);
    }
    a->timeout_left_ms = 0;
}

static void exec_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    rd_attempt *a = arg;
    rd_status s = rd_active_run(a->act)->status;
    if (s != RD_ST_PAUSED && s != RD_ST_AUTH_REQUIRED)
        return;
    end_attempt(a, RD_END_FINISH, RD_ST_FAILED,
                s == RD_ST_PAUSED ? RD_RS_APPROVAL_TIMEOUT : RD_RS_AUTH_TIMEOUT, true, false);
}

static void arm_deadline(rd_attempt *a, int64_t expires_at)
{
    arm(a, &a->wait_ev, expires_at - rd_now_ms(), exec_on_deadline);
}

/* approval_required / auth_required from the worker: a person is asked, unless the question
 * was answered while a previous worker of this run was gone (then the answer is replayed). */
static void ask(rd_attempt *a, const rd_msg *m)
{
    rd_active *act = a->act;
    bool approval = m->type == RD_MSG_APPROVAL_REQUIRED;
    if (rd_active_run(act)->status != RD_ST_RUNNING || a->end != RD_END_NONE)
        return; /* cancelling or finishing: nobody will be asked */
    json_t *stored = rd_run_take_answer(act, approval ? "approval" : "auth");
    if (stored) {
        send_msg(a, stored);
        json_decref(stored);
        return;
    }
    int64_t exp = rd_now_ms() + rd_prompt_ttl(flow_of(a), approval);
    json_t *pa = rd_prompt_action(m, exp);
    if (!pa)
        return;
    pause_flow_timeout(a);
    arm_deadline(a, exp);
    rd_run_ask(act, pa, approval ? RD_ST_PAUSED : RD_ST_AUTH_REQUIRED);
}

static void act_on(rd_attempt *a, const rd_msg *m, const rd_apply_result *res)
{
    switch (res->action) {
    case RD_APPLY_FINISH:
        end_attempt(a, RD_END_FINISH, res->status, res->reason, false, true);
        break;
    case RD_APPLY_POLICY_STOP:
        end_attempt(a, RD_END_FINISH, res->status, res->reason, false, false);
        break;
    case RD_APPLY_STOP_WORKER:
        if (a->worker)
            rd_worker_stop(a->worker, cfg_of(a)->kill_grace_ms);
        break;
    case RD_APPLY_ASK:
        ask(a, m);
        break;
    case RD_APPLY_NEW_ITEM:
    case RD_APPLY_NONE:
        break;
    }
}

static void apply_line(rd_attempt *a, const char *line, size_t len)
{
    rd_msg m;
    char err[200];
    const rd_run *r = rd_active_run(a->act);
    if (rd_status_terminal(r->status))
        return; /* a lingering worker after the end: its output no longer counts */
    if (len == 0 || (len == 1 && line[0] == '\r'))
        return; /* blank lines are tolerated between messages */
    if (rd_proto_parse(line, len, &m, err, sizeof err) != 0) {
        rd_run_protocol_error(a->act, err);
        return;
    }
    int64_t seq_before = r->next_item_seq;
    rd_apply_result res;
    a->ap.has_worker = a->worker != NULL;
    rd_apply_msg(a->act, &a->ap, &m, &res);
    if (r->next_item_seq != seq_before && a->enrich)
        rd_enrich_kick(a->enrich);
    act_on(a, &m, &res);
    rd_msg_clear(&m);
}

void rd_exec_line(rd_exec *x, rd_active *act, const char *line, size_t len)
{
    rd_attempt *a = att_of(x, act);
    if (a)
        apply_line(a, line, len);
}

static void exec_on_line(void *arg, const char *line, size_t len)
{
    rd_attempt *a = arg;
    apply_line(a, line, len);
    rd_runs_commit_soon(a->x->rs);
}

static void exec_on_overlong(void *arg)
{
    rd_attempt *a = arg;
    char buf[120];
    snprintf(buf, sizeof buf, "line longer than max_line (%lld bytes) dropped",
             (long long)cfg_of(a)->max_line_bytes);
    rd_run_protocol_error(a->act, buf);
}

static void exec_on_stderr(void *arg, const char *line, size_t len)
{
    rd_attempt *a = arg;
    int64_t max = cfg_of(a)->max_stderr_lines;
    a->stderr_lines++;
    if (a->stderr_lines <= max)
        rd_run_log(a->act, "info", "stderr", line);
    else if (a->stderr_lines == max + 1)
        rd_run_log(a->act, "warn", "stderr", "stderr limit reached; further lines are not kept");
}

static void reset_end(rd_attempt *a)
{
    a->end = RD_END_NONE;
    a->ap.ending = a->ap.limit_hit = false;
}

/* Enrichments still work on the run's items: the terminal transition waits for the last. */
static bool defer_for_enrichments(rd_attempt *a, const rd_outcome *o)
{
    const rd_run *r = rd_active_run(a->act);
    if (rd_enrich_count(a->enrich) == 0)
        return false;
    if ((o->status == RD_ST_SUCCEEDED || o->status == RD_ST_INCOMPLETE) &&
        r->status == RD_ST_RUNNING) {
        a->deferred = true;
        a->def = *o;
        reset_end(a);
        rd_enrich_source_closed(a->enrich);
        return true;
    }
    rd_enrich_stop(a->enrich, false);
    return false;
}

/* Applies the end of an attempt: from running (or a waiting state) to where it belongs. */
static void conclude(rd_attempt *a, const rd_worker_exit *ex)
{
    rd_active *act = a->act;
    const rd_run *r = rd_active_run(act);
    const rd_flow_config *flow = flow_of(a);
    bool resumable = flow && flow->resumable;
    clear_timer(&a->timeout_ev);
    if (a->x->shutting_down && a->end == RD_END_NONE && resumable &&
        (r->status == RD_ST_PAUSED || r->status == RD_ST_AUTH_REQUIRED))
        return; /* stays waiting across the restart, with its links valid and no worker */
    clear_timer(&a->wait_ev);
    rd_outcome o;
    rd_outcome_in in = {.end = a->end,
                        .end_status = a->end_status,
                        .end_reason = a->end_reason,
                        .shutdown = a->x->shutting_down,
                        .resumable = resumable,
                        .ex = ex,
                        .now = r->status,
                        .item_errors = r->n_item_errors > 0};
    rd_outcome_decide(&in, &o);
    if (defer_for_enrichments(a, &o))
        return;
    a->deferred = false;
    if (o.status == RD_ST_CANCELLED && r->status != RD_ST_CANCELLING)
        rd_run_transition(act, RD_ST_CANCELLING, RD_RS_NONE, NULL);
    rd_run_transition(act, o.status, o.reason, o.message[0] && !r->error ? o.message : NULL);
    reset_end(a);
    if (rd_status_terminal(r->status))
        rd_active_release(act);
}

/* A worker killed by a signal the daemon did not send crashed: a warning, with the signal.
 * Other exits are debug lines (the run's transition says how the run went). */
static void log_exit(const rd_attempt *a, const rd_worker_exit *ex)
{
    const rd_run *r = rd_active_run(a->act);
    bool crash = ex->signaled && !ex->we_signalled;
    rd_logk(crash ? RD_LOG_WARN : RD_LOG_DEBUG, crash ? "worker crashed" : "worker exited",
            RD_LS("run", r->id), RD_LS("flow", r->flow), RD_LI("pid", rd_worker_pid(a->worker)),
            ex->signaled ? RD_LI("signal", ex->sig) : RD_LI("exit_code", ex->code),
            ex->signaled ? RD_LS("signal_name", sigabbrev_np(ex->sig)) : RD_LNONE,
            RD_LI("duration_ms", ex->wall_ms));
}

static void exec_on_exit(void *arg, const rd_worker_exit *ex)
{
    rd_attempt *a = arg;
    rd_active *act = a->act;
    log_exit(a, ex);
    rd_run_usage(act, ex->cpu_user_ms, ex->cpu_sys_ms, ex->peak_rss_kb, ex->wall_ms);
    rd_pgroup_forget(rd_runs_store(a->x->rs), rd_worker_pid(a->worker));
    rd_worker_free(a->worker);
    a->worker = NULL;
    if (!rd_status_terminal(rd_active_run(act)->status))
        conclude(a, ex);
    else
        rd_active_release(act);
    if (a->x->hooks.worker_gone)
        a->x->hooks.worker_gone(a->x->hooks.arg, act);
    rd_active_unhold(act);
}

static const rd_worker_cbs worker_cbs = {
    .on_line = exec_on_line,
    .on_overlong = exec_on_overlong,
    .on_stderr = exec_on_stderr,
    .on_exit = exec_on_exit,
};

static int spawn(rd_attempt *a, const rd_flow_config *flow, char *err, size_t errlen)
{
    const rd_run *r = rd_active_run(a->act);
    char env_id[128], env_flow[128], env_url[600];
    char *env[RD_MAX_ENV + 4];
    int n = 0;
    for (int i = 0; i < flow->n_env; i++)
        env[n++] = flow->env[i];
    snprintf(env_id, sizeof env_id, "RUNSD_RUN_ID=%s", r->id);
    snprintf(env_flow, sizeof env_flow, "RUNSD_FLOW=%s", r->flow);
    snprintf(env_url, sizeof env_url, "RUNSD_PUBLIC_URL=%s", cfg_of(a)->public_url);
    env[n++] = env_id;
    env[n++] = env_flow;
    env[n++] = env_url;
    env[n] = NULL;
    rd_worker_spec spec = {
        .argv = flow->argv,
        .env_extra = env,
        .cwd = flow->cwd,
        .max_line = (size_t)cfg_of(a)->max_line_bytes,
        .max_stderr_line = 4096,
        .max_processes = flow->max_processes,
    };
    if (rd_worker_spawn(rd_runs_base(a->x->rs), a->x->reaper, &spec, &worker_cbs, a, &a->worker,
                        err, errlen) != 0)
        return RD_ERR;
    /* In the open transaction, committed with the run's move to running. */
    rd_pgroup_record(rd_runs_store(a->x->rs), rd_worker_pid(a->worker), r->id);
    rd_active_hold(a->act); /* until the worker is reaped */
    if (a->x->throttled)
        rd_worker_pause_output(a->worker, true);
    return 0;
}

static json_t *start_message(const rd_run *r)
{
    return json_pack("{s:s, s:{s:s, s:s, s:O, s:o, s:b, s:O, s:i, s:O}}", "type", "start", "run",
                     "id", r->id, "flow", r->flow, "input", r->input ? r->input : json_null(),
                     "limit", r->limit > 0 ? json_integer(r->limit) : json_null(), "preview",
                     r->preview, "cursor", r->cursor ? r->cursor : json_null(), "attempt",
                     r->attempt, "metadata", r->metadata ? r->metadata : json_null());
}

static int start_failed(rd_attempt *a, const char *why)
{
    rd_run_transition(a->act, RD_ST_CRASHED, RD_RS_SPAWN_FAILED, why);
    rd_active_release(a->act);
    return RD_ERR;
}

int rd_exec_start(rd_exec *x, rd_active *act)
{
    rd_attempt *a = att_of(x, act);
    if (!a)
        return RD_ERR;
    const rd_flow_config *flow = flow_of(a);
    char err[256];
    reset_end(a);
    a->ap.dropped_items = false;
    /* A resumed worker sends again what it sent after its last checkpoint. */
    a->ap.replay_skip = rd_run_items_after_checkpoint(rd_active_run(act));
    a->stderr_lines = 0;
    if (!flow)
        return start_failed(a, "flow is no longer configured");
    a->external = flow->external;
    if (!flow->external && spawn(a, flow, err, sizeof err) != 0) {
        rd_metric_inc(x->m_spawn_failures, RD_LV(flow->name));
        rd_logk(RD_LOG_WARN, "worker spawn failed", RD_LS("run", rd_active_run(act)->id),
                RD_LS("flow", rd_active_run(act)->flow), RD_LS("error", err));
        return start_failed(a, err);
    }
    rd_run_attempt_begins(act);
    rd_run_transition(act, RD_ST_RUNNING, RD_RS_NONE, NULL);
    json_decref(a->ctl_log);
    a->ctl_log = NULL;
    json_t *start = start_message(rd_active_run(act));
    send_msg(a, start);
    json_decref(start);
    if (flow->timeout_ms > 0)
        arm(a, &a->timeout_ev, flow->timeout_ms, exec_on_timeout);
    return 0;
}

static void throttle_one(rd_active *act, void *arg)
{
    bool on = *(bool *)arg;
    rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    if (a && a->worker)
        rd_worker_pause_output(a->worker, on);
    if (a && a->enrich)
        rd_enrich_pause(a->enrich, on);
}

void rd_exec_throttle(rd_exec *x, bool on)
{
    if (x->throttled == on)
        return;
    x->throttled = on;
    rd_runs_each(x->rs, throttle_one, &on);
}

bool rd_exec_has_worker(const rd_active *act)
{
    const rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    return a && a->worker;
}

void rd_exec_cancel(rd_exec *x, rd_active *act, rd_reason reason)
{
    rd_attempt *a = att_of(x, act);
    if (!a)
        return;
    if (rd_active_run(act)->status != RD_ST_CANCELLING)
        rd_run_transition(act, RD_ST_CANCELLING, reason, NULL);
    end_attempt(a, RD_END_CANCEL, RD_ST_CANCELLED, reason, true, false);
}

bool rd_exec_ending(const rd_active *act, rd_reason *reason)
{
    const rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    if (!a || a->end == RD_END_NONE)
        return false;
    *reason = a->end_reason;
    return true;
}

static void shutdown_one(rd_active *act, void *arg)
{
    bool now = *(bool *)arg;
    rd_attempt *a = rd_active_slot(act, RD_SLOT_EXEC);
    if (!a)
        return;
    if (a->enrich && !now)
        rd_enrich_stop(a->enrich, false);
    if (a->worker)
        rd_worker_stop(a->worker, now ? 0 : cfg_of(a)->kill_grace_ms);
}

void rd_exec_shutdown(rd_exec *x, bool now)
{
    x->shutting_down = true;
    rd_runs_each(x->rs, shutdown_one, &now);
}

void rd_exec_resume_waiting(rd_exec *x, rd_active *act)
{
    rd_attempt *a = att_of(x, act);
    if (!a)
        return;
    json_t *pa = rd_active_run(act)->pending_action;
    int64_t exp = pa ? json_integer_value(json_object_get(pa, "_expires_ms")) : 0;
    arm_deadline(a, exp > 0 ? exp : rd_now_ms());
}

bool rd_exec_answer(rd_exec *x, rd_active *act, const char *kind, json_t *msg)
{
    rd_attempt *a = att_of(x, act);
    if (!a)
        return false;
    clear_timer(&a->wait_ev);
    /* An external run whose control log was lost in a restart is re-queued like a local one:
     * its worker gets a fresh start message and the stored answer. */
    /* Kept either way: a worker restarted after a crash repeats the question. */
    rd_run_keep_answer(act, kind, msg);
    if (a->worker || (a->external && a->ctl_log)) {
        send_msg(a, msg);
        rd_run_transition(act, RD_ST_RUNNING, RD_RS_NONE, NULL);
        resume_flow_timeout(a);
        return false;
    }
    rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
    return true;
}

void rd_exec_deny_approval(rd_exec *x, rd_active *act, json_t *msg)
{
    rd_attempt *a = att_of(x, act);
    if (!a)
        return;
    if (a->worker)
        send_msg(a, msg); /* it may log or clean up before it is stopped */
    clear_timer(&a->wait_ev);
    rd_exec_cancel(x, act, RD_RS_APPROVAL_DENIED);
}

void rd_exec_deny_auth(rd_exec *x, rd_active *act, json_t *msg, const char *provider_error)
{
    rd_attempt *a = att_of(x, act);
    if (!a)
        return;
    if (a->worker)
        send_msg(a, msg);
    clear_timer(&a->wait_ev);
    /* The state is spent now, not when the worker has gone. */
    rd_run_spend_request(act);
    rd_run_error(act, "the user did not authorize", provider_error);
    end_attempt(a, RD_END_FINISH, RD_ST_FAILED, RD_RS_AUTH_DENIED, true, false);
}

/* The last enrichment worker exited: a run that waited for it ends now. */
static void exec_on_enrichers_done(void *arg)
{
    rd_attempt *a = arg;
    const rd_run *r = rd_active_run(a->act);
    if (a->deferred && r->status == RD_ST_RUNNING) {
        a->deferred = false;
        rd_run_transition(a->act, a->def.status, a->def.reason,
                          a->def.message[0] && !r->error ? a->def.message : NULL);
    }
    if (!rd_status_active(r->status))
        rd_active_release(a->act);
}

int rd_exec_enrich(rd_exec *x, rd_active *act, const rd_flow_config *flow, json_t *input,
                   rd_apierr *e)
{
    rd_attempt *a = att_of(x, act);
    if (a && !a->enrich)
        a->enrich = rd_enrich_set_new(x->reaper, act, exec_on_enrichers_done, a);
    if (!a || !a->enrich)
        return rd_fail(e, 500, "internal", "out of memory");
    return rd_enrich_start(a->enrich, flow, input, e);
}

void *rd_exec_ctl_attach(rd_exec *x, rd_active *act, const rd_ctl_sink *sink)
{
    rd_attempt *a = att_of(x, act);
    rd_ctl *c = a ? calloc(1, sizeof *c) : NULL;
    if (!c)
        return NULL;
    c->att = a;
    c->sink = *sink;
    size_t i;
    json_t *msg;
    json_array_foreach(a->ctl_log, i, msg)
    {
        char *line = json_dumps(msg, JSON_COMPACT);
        if (line)
            sink->send(sink->arg, line, strlen(line));
        free(line);
    }
    LIST_INSERT_HEAD(&a->ctls, c, link);
    return c;
}

void rd_exec_ctl_detach(rd_exec *x, void *handle)
{
    rd_ctl *c = handle;
    if (!c)
        return;
    LIST_REMOVE(c, link);
    free(c);
}
