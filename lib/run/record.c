/*
 * record.c: the writers of a run record. Every change to an active run's record is made by a
 * function of this file: it updates the record, appends the matching event to the store's
 * open transaction (queued for publication after the commit) and marks the record dirty.
 * The status changes only in rd_run_transition, which checks the lifecycle table first.
 * Other layers decide (the worker protocol, the scheduler, answers from people) and call
 * these; none of them assigns a field of rd_run.
 */
#include "run/run_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook/outbox.h"

#define MAX_LOGGED_PROTO_ERRORS 100

static int64_t emit_text(rd_active *act, const char *type, const char *data, int64_t item_seq,
                         bool terminal)
{
    rd_runs *rs = act->rs;
    int64_t ts = rd_now_ms(), id = 0;
    if (rd_store_event_append(rs->store, act->run->id, act->run->flow, type, ts, data, item_seq,
                              &id) != 0)
        return 0;
    act->run->last_event_id = id;
    rs->m_events++;
    rd_runs_queue_publish(rs, act->run, id, type, ts, data, terminal);
    rd_active_mark_dirty(act);
    return id;
}

/* Appends an event whose data is a JSON value (borrowed). Returns its id or 0. */
static int64_t emit(rd_active *act, const char *type, json_t *data, int64_t item_seq)
{
    char *text = data ? json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (!text)
        return 0;
    int64_t id = emit_text(act, type, text, item_seq, false);
    free(text);
    return id;
}

/* Appends an event and drops the reference to its data. */
static int64_t emit_new(rd_active *act, const char *type, json_t *data, int64_t item_seq)
{
    int64_t id = emit(act, type, data, item_seq);
    json_decref(data);
    return id;
}

int rd_runs_create(rd_runs *rs, const rd_run_init *in, rd_active **out, rd_apierr *e)
{
    rd_run *r = rd_run_new();
    if (!r || rd_random_id("run_", r->id, sizeof r->id) != 0) {
        rd_run_free(r);
        return rd_fail(e, 500, "internal", "could not create a run id");
    }
    snprintf(r->flow, sizeof r->flow, "%s", in->flow->name);
    memcpy(r->flow_version, in->flow->version, sizeof r->flow_version);
    r->input = in->input ? json_incref(in->input) : NULL;
    r->metadata = in->metadata ? json_incref(in->metadata) : NULL;
    r->webhook = in->webhook ? json_incref(in->webhook) : NULL;
    r->limit = in->limit;
    r->preview = in->preview;
    r->created_at = r->updated_at = rd_now_ms();
    if (in->idem_key_hash)
        snprintf(r->idem_key_hash, sizeof r->idem_key_hash, "%s", in->idem_key_hash);
    if (rd_store_run_insert(rs->store, r) != 0 ||
        (in->idem_key_hash && rd_store_idem_put(rs->store, in->idem_key_hash, r->id, in->body_hash,
                                                r->created_at) != 0)) {
        rd_run_free(r);
        rd_store_rollback(rs->store);
        return rd_fail_store(e);
    }
    rd_active *act = rd_runs_adopt(rs, r);
    if (!act) {
        rd_run_free(r);
        return rd_fail(e, 500, "internal", "out of memory");
    }
    emit_new(act, "run.created", json_pack("{s:o}", "run", rd_active_json(act)), 0);
    rs->m_runs_created++;
    *out = act;
    return 0;
}

/* The status fields that follow from entering `to`. */
static void enter_status(rd_active *act, rd_status from, rd_status to, rd_reason reason,
                         const char *error_message)
{
    rd_run *r = act->run;
    int64_t now = rd_now_ms();
    r->status = to;
    r->updated_at = now;
    if (from == RD_ST_QUEUED)
        act->rs->n_queued--;
    if (to == RD_ST_QUEUED) {
        act->rs->n_queued++;
        r->reason = RD_RS_NONE;
        r->finished_at = 0;
    }
    if (to == RD_ST_RUNNING && r->started_at == 0)
        r->started_at = now;
    if (to == RD_ST_CANCELLING && reason != RD_RS_NONE) {
        /* Kept so a restart in between still ends the run for the reason asked. */
        if (!r->extra)
            r->extra = json_object();
        json_object_set_new(r->extra, "cancel_reason", json_string(rd_reason_name(reason)));
    }
    if (to == RD_ST_RUNNING || rd_status_terminal(to)) {
        json_decref(r->pending_action);
        r->pending_action = NULL;
    }
    if (rd_status_terminal(to)) {
        /* Answers (an authorization code among them) are kept only while they can be replayed. */
        if (r->extra)
            json_object_del(r->extra, "answers");
        r->reason = rd_reason_status(reason) == to ? reason : RD_RS_NONE;
        r->finished_at = now;
        if (error_message) {
            json_decref(r->error);
            r->error = json_pack("{s:s}", "message", error_message);
        }
    }
}

static void finish_step(rd_active *act, json_t *step)
{
    json_t *total = json_object_get(step, "total");
    rd_run_step(act, json_string_value(json_object_get(step, "name")), "finished",
                json_is_integer(total), json_integer_value(total));
}

/* A run succeeds when its work is done, also when a limit stopped the worker in the middle of
 * a step: the steps still open are finished then (with their run.step events), so a
 * succeeded run never shows a step as started. Other endings leave them as they were. */
static void finish_open_steps(rd_active *act)
{
    size_t i;
    json_t *s;
    json_array_foreach(act->run->steps, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "state")), "finished") != 0)
            finish_step(act, s);
    }
}

/* One line per status change; at a terminal status, the run's time since it was created. */
static void log_transition(const rd_run *r, rd_status from)
{
    bool terminal = rd_status_terminal(r->status);
    rd_logk(RD_LOG_INFO, "run transition", RD_LS("run", r->id), RD_LS("flow", r->flow),
            RD_LS("from", rd_status_name(from)), RD_LS("to", rd_status_name(r->status)),
            RD_LS("reason", r->reason ? rd_reason_name(r->reason) : NULL),
            RD_LI("attempt", r->attempt),
            terminal ? RD_LI("duration_ms", r->finished_at - r->created_at) : RD_LNONE);
}

int rd_run_transition(rd_active *act, rd_status to, rd_reason reason, const char *error_message)
{
    rd_run *r = act->run;
    rd_status from = r->status;
    if (!rd_fsm_allowed(from, to)) {
        rd_log_warn("run %s: refused transition %s -> %s", r->id, rd_status_name(from),
                    rd_status_name(to));
        return RD_ECONFLICT;
    }
    if (to == RD_ST_SUCCEEDED)
        finish_open_steps(act);
    enter_status(act, from, to, reason, error_message);
    log_transition(r, from);
    rd_runs_count_transition(act, from, to);
    bool terminal = rd_status_terminal(to);
    /* The wire form hides the pending action's private members; it is needed only in waiting
     * states (webhook) and for run.end, so it is built only then. */
    json_t *wire = (r->pending_action || terminal) ? rd_active_json(act) : NULL;
    /* The stored event keeps link placeholders; they are rendered when it is shown. */
    emit_new(act, "run.status",
             json_pack("{s:s, s:s, s:o, s:o}", "status", rd_status_name(to), "previous",
                       rd_status_name(from), "termination_reason",
                       r->reason ? json_string(rd_reason_name(r->reason)) : json_null(),
                       "pending_action", rd_run_public_pending(r)),
             0);
    if (terminal || to == RD_ST_PAUSED || to == RD_ST_AUTH_REQUIRED) {
        char type[40];
        snprintf(type, sizeof type, "run.%s", rd_status_name(to));
        rd_runs_notify_webhook(act, type, wire);
    }
    if (terminal && wire) {
        /* last_event_id in run.end is the id of the terminal run.status just appended. */
        json_object_set_new(wire, "last_event_id", json_integer(r->last_event_id));
        json_t *end = json_pack("{s:O}", "run", wire);
        char *text = end ? json_dumps(end, JSON_COMPACT) : NULL;
        if (text)
            emit_text(act, "run.end", text, 0, true);
        free(text);
        json_decref(end);
    }
    json_decref(wire);
    rd_active_mark_dirty(act);
    rd_runs_tell_status(act, from, to);
    return 0;
}

void rd_run_log(rd_active *act, const char *level, const char *source, const char *message)
{
    emit_new(act, "run.log",
             json_pack("{s:s, s:s, s:s}", "level", level, "message", message, "source", source), 0);
}

void rd_run_protocol_error(rd_active *act, const char *why)
{
    rd_run *r = act->run;
    r->n_proto_errors++;
    act->rs->m_proto_errors++;
    rd_active_mark_dirty(act);
    if (!why || r->n_proto_errors > MAX_LOGGED_PROTO_ERRORS)
        return;
    char buf[300];
    snprintf(buf, sizeof buf, "protocol error: %s", why);
    rd_run_log(act, "warn", "protocol", buf);
    if (r->n_proto_errors == MAX_LOGGED_PROTO_ERRORS)
        rd_run_log(act, "warn", "protocol",
                   "further protocol errors are counted in metrics.protocol_errors only");
}

static json_t *find_step(json_t *steps, const char *name)
{
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        if (strcmp(json_string_value(json_object_get(s, "name")), name) == 0)
            return s;
    }
    return NULL;
}

void rd_run_step(rd_active *act, const char *name, const char *state, bool has_total, int64_t total)
{
    rd_run *r = act->run;
    if (!r->steps)
        r->steps = json_array();
    json_t *step = find_step(r->steps, name);
    char now[40];
    rd_rfc3339(rd_now_ms(), now, sizeof now);
    if (!step) {
        step = json_pack("{s:s, s:s, s:n, s:n}", "name", name, "state", state, "started_at",
                         "finished_at");
        json_array_append_new(r->steps, step);
    }
    bool finished = strcmp(state, "finished") == 0;
    bool was_finished = strcmp(json_string_value(json_object_get(step, "state")), "finished") == 0;
    json_object_set_new(step, "state", json_string(state));
    json_object_set_new(step, finished ? "finished_at" : "started_at", json_string(now));
    if (has_total)
        json_object_set_new(step, "total", json_integer(total));
    /* Counted from the list, not per message: a later attempt repeats steps that an earlier
     * one finished, and `steps` keeps one entry per name, so the count must be of those. */
    if (finished != was_finished)
        r->n_steps_finished += finished ? 1 : -1;
    json_t *d = json_pack("{s:s, s:s}", "name", name, "state", state);
    if (has_total)
        json_object_set_new(d, "total", json_integer(total));
    emit_new(act, "run.step", d, 0);
}

void rd_run_progress_now(rd_active *act)
{
    rd_run *r = act->run;
    json_t *d = r->progress ? json_deep_copy(r->progress) : json_object();
    json_object_set_new(d, "evaluated", json_integer(r->n_evaluated));
    json_object_set_new(d, "matched", json_integer(r->n_matched));
    json_object_set_new(d, "items", json_integer(r->n_items));
    emit_new(act, "run.progress", d, 0);
}

void rd_run_progress(rd_active *act, int64_t done, bool has_total, int64_t total,
                     const char *message)
{
    json_t *p = json_pack("{s:I}", "done", (json_int_t)done);
    if (has_total)
        json_object_set_new(p, "total", json_integer(total));
    if (message)
        json_object_set_new(p, "message", json_string(message));
    json_decref(act->run->progress);
    act->run->progress = p;
    rd_run_progress_now(act);
}

int64_t rd_run_item(rd_active *act, bool ok, json_t *data, const char *error)
{
    rd_run *r = act->run;
    rd_runs *rs = act->rs;
    int64_t seq = r->next_item_seq++;
    json_t *d = json_pack("{s:I}", "seq", (json_int_t)seq);
    if (data)
        json_object_set(d, "data", data);
    if (!ok)
        json_object_set_new(d, "error", json_string(error ? error : ""));
    emit_new(act, ok ? "run.item" : "run.item_error", d, seq);
    if (ok && rs->outbox && !r->preview && rd_outbox_wants(rs->outbox, r, "run.item")) {
        json_t *wire = rd_active_json(act);
        json_object_set_new(wire, "item",
                            json_pack("{s:I, s:O}", "seq", (json_int_t)seq, "data", data));
        rd_runs_notify_webhook(act, "run.item", wire);
        json_decref(wire);
    }
    if (ok) {
        r->n_items++;
        rs->m_items++;
    } else {
        r->n_item_errors++;
    }
    return seq;
}

void rd_run_item_dropped(rd_active *act)
{
    act->run->n_dropped++;
    rd_active_mark_dirty(act);
}

void rd_run_candidate(rd_active *act, bool matched)
{
    rd_run *r = act->run;
    r->n_evaluated++;
    if (matched)
        r->n_matched++;
    rd_active_mark_dirty(act);
    if (r->n_evaluated % 100 == 0)
        rd_run_progress_now(act);
}

void rd_run_checkpoint(rd_active *act, json_t *cursor)
{
    rd_run *r = act->run;
    json_decref(r->cursor);
    r->cursor = json_incref(cursor);
    /* The items a worker resuming from this cursor will not send again. */
    if (!r->extra)
        r->extra = json_object();
    json_object_set_new(r->extra, "cursor_seq", json_integer(r->next_item_seq - 1));
    rd_active_mark_dirty(act);
}

int64_t rd_run_items_after_checkpoint(const rd_run *r)
{
    json_t *cs = r->extra ? json_object_get(r->extra, "cursor_seq") : NULL;
    int64_t covered = cs ? json_integer_value(cs) : 0;
    int64_t n = r->next_item_seq - 1 - covered;
    return n > 0 ? n : 0;
}

rd_reason rd_run_cancel_reason(const rd_run *r)
{
    rd_reason rs = RD_RS_USER_CANCELLED;
    json_t *v = r->extra ? json_object_get(r->extra, "cancel_reason") : NULL;
    if (json_is_string(v))
        rd_reason_parse(json_string_value(v), &rs);
    return rs;
}

void rd_run_result(rd_active *act, json_t *data)
{
    json_decref(act->run->result);
    act->run->result = json_incref(data);
    emit_new(act, "run.result", json_pack("{s:O}", "data", data), 0);
}

void rd_run_error(rd_active *act, const char *message, const char *provider_error)
{
    json_decref(act->run->error);
    act->run->error = json_pack("{s:s}", "message", message);
    if (provider_error)
        json_object_set_new(act->run->error, "provider_error", json_string(provider_error));
    rd_active_mark_dirty(act);
}

void rd_run_usage(rd_active *act, int64_t cpu_user_ms, int64_t cpu_sys_ms, int64_t peak_rss_kb,
                  int64_t wall_ms)
{
    rd_run *r = act->run;
    r->cpu_user_ms += cpu_user_ms;
    r->cpu_sys_ms += cpu_sys_ms;
    if (peak_rss_kb > r->peak_rss_kb)
        r->peak_rss_kb = peak_rss_kb;
    r->run_ms += wall_ms;
    rd_active_mark_dirty(act);
}

void rd_run_attempt_begins(rd_active *act)
{
    act->run->attempt++;
    rd_active_mark_dirty(act);
}

void rd_run_extend_limit(rd_active *act, int64_t additional)
{
    act->run->limit += additional;
    rd_active_mark_dirty(act);
}

void rd_run_ask(rd_active *act, json_t *pa, rd_status to)
{
    json_decref(act->run->pending_action);
    act->run->pending_action = pa;
    rd_run_transition(act, to, RD_RS_NONE, NULL);
    /* The event keeps the link placeholders; links are rendered when it is shown. */
    emit_new(act, to == RD_ST_PAUSED ? "run.approval_required" : "run.auth_required",
             rd_run_public_pending(act->run), 0);
}

void rd_run_spend_request(rd_active *act)
{
    json_object_del(act->run->pending_action, "_nonce");
    rd_active_mark_dirty(act);
}

/* run->extra is a free-form object; its arrays are created on first use. */
static json_t *extra_array(rd_run *r, const char *key)
{
    if (!r->extra)
        r->extra = json_object();
    json_t *arr = json_object_get(r->extra, key);
    if (!arr) {
        arr = json_array();
        json_object_set_new(r->extra, key, arr);
    }
    return arr;
}

void rd_run_keep_answer(rd_active *act, const char *kind, json_t *msg)
{
    json_array_append_new(extra_array(act->run, "answers"),
                          json_pack("{s:s, s:O, s:i, s:i}", "kind", kind, "message", msg, "attempt",
                                    act->run->attempt, "used", act->run->attempt));
    rd_active_mark_dirty(act);
}

/* Answers given in earlier attempts are replayed, in order and each once per attempt, to the
 * questions a resumed worker repeats; an answer given in this attempt was delivered live. */
json_t *rd_run_take_answer(rd_active *act, const char *kind)
{
    rd_run *r = act->run;
    json_t *answers = r->extra ? json_object_get(r->extra, "answers") : NULL;
    size_t i;
    json_t *a;
    json_array_foreach(answers, i, a)
    {
        json_t *given = json_object_get(a, "attempt");
        if (strcmp(json_string_value(json_object_get(a, "kind")), kind) != 0 ||
            (given && json_integer_value(given) >= r->attempt) ||
            json_integer_value(json_object_get(a, "used")) == r->attempt)
            continue;
        json_object_set_new(a, "used", json_integer(r->attempt));
        rd_active_mark_dirty(act);
        return json_incref(json_object_get(a, "message"));
    }
    return NULL;
}

int rd_run_enrichment_begin(rd_active *act, const char *flow, json_t *input)
{
    json_t *arr = extra_array(act->run, "enrichments");
    char when[40];
    rd_rfc3339(rd_now_ms(), when, sizeof when);
    int index = (int)json_array_size(arr);
    json_array_append_new(arr, json_pack("{s:s, s:O, s:s, s:s, s:i}", "flow", flow, "input",
                                         input ? input : json_null(), "status", "running",
                                         "started_at", when, "enriched", 0));
    rd_active_mark_dirty(act);
    return index;
}

void rd_run_enrichment_set(rd_active *act, int index, const char *key, json_t *value)
{
    json_t *arr = act->run->extra ? json_object_get(act->run->extra, "enrichments") : NULL;
    json_t *info = json_array_get(arr, (size_t)index);
    if (info)
        json_object_set_new(info, key, value);
    else
        json_decref(value);
    rd_active_mark_dirty(act);
}

int rd_run_enrich_item(rd_active *act, int64_t seq, const char *flow, json_t *data)
{
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    int rc =
        text ? rd_store_enrichment_put(act->rs->store, act->run->id, seq, flow, text, rd_now_ms())
             : RD_EIO;
    free(text);
    if (rc != 0)
        return RD_EIO;
    emit_new(act, "run.item_enriched",
             json_pack("{s:I, s:s, s:O}", "seq", (json_int_t)seq, "flow", flow, "data", data), 0);
    return 0;
}
