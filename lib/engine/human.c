/*
 * human.c: answers from people (SPEC sections 1-3, the ToolRegistry half of the seeds).
 *
 * approval_required puts a run in `paused` with approve/deny links; auth_required puts it in
 * `auth_required` with the provider's URL whose {state} is a one-time state token. Links carry
 * HMAC-derived tokens (token.h): the store keeps only the request's nonce, and renders links
 * from placeholders ("rdlink:<kind>:<nonce>") when a run or event is shown. Answering clears
 * the pending action, which spends both approval tokens at once.
 *
 * A waiting run of a resumable flow survives a restart without a worker; when answered it is
 * re-queued, and the answer is kept in the run record so the prompt the restarted worker
 * repeats is answered at once (workers need no resume code).
 */
#include "engine/engine_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/token.h"
#include "base/util.h"

static const rd_flow_config *flow_of(rd_active *act)
{
    return rd_config_flow(act->eng->cfg, act->run->flow);
}

static void human_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    rd_active *act = arg;
    rd_run *r = act->run;
    if (r->status != RD_ST_PAUSED && r->status != RD_ST_AUTH_REQUIRED)
        return;
    rd_reason rs = r->status == RD_ST_PAUSED ? RD_RS_APPROVAL_TIMEOUT : RD_RS_AUTH_TIMEOUT;
    act->finishing = true;
    act->fin_status = RD_ST_FAILED;
    act->fin_reason = rs;
    if (act->worker) {
        rd_worker_stop(act->worker, act->eng->cfg->kill_grace_ms);
    } else {
        rd_exec_finish_now(act);
    }
    rd_commit_soon(act->eng);
}

static void arm_deadline(rd_active *act, int64_t expires_at)
{
    if (act->wait_ev)
        event_free(act->wait_ev);
    act->wait_ev = evtimer_new(act->eng->base, human_on_deadline, act);
    int64_t ms = expires_at - rd_now_ms();
    if (ms < 0)
        ms = 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (act->wait_ev)
        evtimer_add(act->wait_ev, &tv);
}

/* The flow timeout counts working time only: it stops while a person is asked. */
static void pause_flow_timeout(rd_active *act)
{
    if (!act->timeout_ev)
        return;
    struct timeval tv;
    if (event_pending(act->timeout_ev, EV_TIMEOUT, &tv)) {
        struct timeval now;
        event_base_gettimeofday_cached(act->eng->base, &now);
        int64_t left =
            ((int64_t)tv.tv_sec - now.tv_sec) * 1000 + ((int64_t)tv.tv_usec - now.tv_usec) / 1000;
        act->timeout_left_ms = left > 0 ? left : 1;
    }
    event_del(act->timeout_ev);
}

static void resume_flow_timeout(rd_active *act)
{
    if (act->timeout_ev && act->timeout_left_ms > 0) {
        struct timeval tv = {(time_t)(act->timeout_left_ms / 1000),
                             (suseconds_t)((act->timeout_left_ms % 1000) * 1000)};
        evtimer_add(act->timeout_ev, &tv);
    }
    act->timeout_left_ms = 0;
}

/* Stored answers (run->extra.answers) replay a decision to a worker restarted after it. */
static json_t *take_stored_answer(rd_run *r, const char *kind)
{
    json_t *answers = r->extra ? json_object_get(r->extra, "answers") : NULL;
    size_t i;
    json_t *a;
    json_array_foreach(answers, i, a)
    {
        if (strcmp(json_string_value(json_object_get(a, "kind")), kind) == 0) {
            json_t *msg = json_incref(json_object_get(a, "message"));
            json_array_remove(answers, i);
            return msg;
        }
    }
    return NULL;
}

static void store_answer(rd_run *r, const char *kind, json_t *msg)
{
    if (!r->extra)
        r->extra = json_object();
    json_t *answers = json_object_get(r->extra, "answers");
    if (!answers) {
        answers = json_array();
        json_object_set_new(r->extra, "answers", answers);
    }
    json_array_append_new(answers, json_pack("{s:s, s:O}", "kind", kind, "message", msg));
}

static int new_nonce(char *out, size_t outlen)
{
    unsigned char raw[9];
    if (outlen < 13 || rd_random_bytes(raw, sizeof raw) != 0)
        return -1;
    rd_b64url_encode(raw, sizeof raw, out);
    return 0;
}

static json_t *approval_action(rd_active *act, const rd_msg *m, const char *nonce, int64_t exp)
{
    char a[64], d[64], when[40];
    snprintf(a, sizeof a, "rdlink:a:%s", nonce);
    snprintf(d, sizeof d, "rdlink:d:%s", nonce);
    rd_rfc3339(exp, when, sizeof when);
    return json_pack("{s:s, s:s, s:O, s:s, s:s, s:s, s:s, s:I}", "type", "approval", "prompt",
                     m->message, "details", m->details ? m->details : json_null(), "approve_url", a,
                     "deny_url", d, "expires_at", when, "_nonce", nonce, "_expires_ms",
                     (json_int_t)exp);
}

static json_t *auth_action(rd_active *act, const rd_msg *m, const char *nonce, int64_t exp)
{
    char ph[64], when[40];
    snprintf(ph, sizeof ph, "rdlink:s:%s", nonce);
    /* {state} in the provider URL becomes the one-time state token. */
    const char *u = m->url;
    size_t n_state = 0;
    for (const char *p = strstr(u, "{state}"); p; p = strstr(p + 7, "{state}"))
        n_state++;
    char *url = malloc(strlen(u) + n_state * strlen(ph) + 1);
    if (!url)
        return NULL;
    char *o = url;
    for (const char *p = u; *p;) {
        if (strncmp(p, "{state}", 7) == 0) {
            o = stpcpy(o, ph);
            p += 7;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    rd_rfc3339(exp, when, sizeof when);
    json_t *pa = json_pack("{s:s, s:o, s:s, s:s, s:s, s:I}", "type", "auth", "provider",
                           m->provider ? json_string(m->provider) : json_null(), "auth_url", url,
                           "expires_at", when, "_nonce", nonce, "_expires_ms", (json_int_t)exp);
    free(url);
    return pa;
}

void rd_human_request(rd_active *act, const rd_msg *m)
{
    rd_run *r = act->run;
    bool approval = m->type == RD_MSG_APPROVAL_REQUIRED;
    if (r->status != RD_ST_RUNNING || act->finishing)
        return; /* cancelling or finishing: nobody will be asked */
    json_t *stored = take_stored_answer(r, approval ? "approval" : "auth");
    if (stored) {
        /* A restarted worker repeats a question that was answered while it was gone. */
        rd_exec_send(act, stored);
        json_decref(stored);
        rd_mark_dirty(act);
        return;
    }
    const rd_flow_config *flow = flow_of(act);
    int64_t ttl = approval ? (flow ? flow->approval_timeout_ms : 86400000)
                           : (flow ? flow->auth_timeout_ms : 3600000);
    int64_t exp = rd_now_ms() + ttl;
    char nonce[16];
    if (new_nonce(nonce, sizeof nonce) != 0)
        return;
    json_t *pa = approval ? approval_action(act, m, nonce, exp) : auth_action(act, m, nonce, exp);
    if (!pa)
        return;
    json_decref(r->pending_action);
    r->pending_action = pa;
    pause_flow_timeout(act);
    arm_deadline(act, exp);
    rd_transition(act, approval ? RD_ST_PAUSED : RD_ST_AUTH_REQUIRED, RD_RS_NONE, NULL);
    /* The event keeps the link placeholders; links are rendered when it is shown. */
    json_t *pub = rd_public_pending(r);
    rd_emit(act, approval ? "run.approval_required" : "run.auth_required", pub, 0);
    json_decref(pub);
}

void rd_exec_resume_waiting(rd_active *act)
{
    json_t *pa = act->run->pending_action;
    int64_t exp = pa ? json_integer_value(json_object_get(pa, "_expires_ms")) : 0;
    arm_deadline(act, exp > 0 ? exp : rd_now_ms());
}

/* Delivers an answer: to the live worker, or kept for the worker a re-queue will start. */
static void deliver(rd_active *act, const char *kind, json_t *msg)
{
    rd_run *r = act->run;
    if (act->wait_ev) {
        event_free(act->wait_ev);
        act->wait_ev = NULL;
    }
    /* An external run whose control log was lost in a restart is re-queued like a local
     * one: its worker gets a fresh start message and the stored answer. */
    if (act->worker || (act->external && act->ctl_log)) {
        rd_exec_send(act, msg);
        rd_transition(act, RD_ST_RUNNING, RD_RS_NONE, NULL);
        resume_flow_timeout(act);
    } else {
        store_answer(r, kind, msg);
        rd_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
        rd_enqueue(act);
    }
}

/* Finds the waiting run a token or id names, checking its pending request. */
static int find_waiting(rd_engine *eng, const char *id, const char *nonce, rd_status want,
                        rd_active **out, rd_apierr *e)
{
    json_t *j = NULL;
    if (rd_engine_get(eng, id, &j, e) != 0)
        return -1;
    const char *reason = json_string_value(json_object_get(j, "termination_reason"));
    bool timed_out =
        reason && (strcmp(reason, "approval_timeout") == 0 || strcmp(reason, "auth_timeout") == 0);
    json_decref(j);
    rd_active *act = rd_active_get(eng, id);
    json_t *pa = act ? act->run->pending_action : NULL;
    const char *pn = pa ? json_string_value(json_object_get(pa, "_nonce")) : NULL;
    if (!act || act->run->status != want || !pn || (nonce && strcmp(pn, nonce) != 0) ||
        act->finishing || act->cancel_requested) {
        if (act && act->finishing)
            timed_out =
                act->fin_reason == RD_RS_APPROVAL_TIMEOUT || act->fin_reason == RD_RS_AUTH_TIMEOUT;
        if (nonce && timed_out && (!pn || strcmp(pn, nonce) == 0))
            return rd_fail(e, 410, "token_expired", "the request has expired");
        if (nonce)
            return rd_fail(e, 410, "token_spent",
                           "this link was already used, or its request is no longer pending");
        return rd_fail(e, 409, want == RD_ST_PAUSED ? "run_not_paused" : "run_not_waiting_auth",
                       "the run is %s, not waiting for %s",
                       act ? rd_status_name(act->run->status) : "not active",
                       want == RD_ST_PAUSED ? "an approval" : "an authorization");
    }
    int64_t exp = json_integer_value(json_object_get(pa, "_expires_ms"));
    if (exp > 0 && exp < rd_now_ms())
        return rd_fail(e, 410, "token_expired", "the request has expired");
    *out = act;
    return 0;
}

/* Commits an answer, then replies {key: value, run}: the reply never precedes durability. */
static int answered(rd_engine *eng, rd_active *act, const char *key, const char *value,
                    json_t **out, rd_apierr *e)
{
    json_t *run = rd_active_json(act);
    if (rd_engine_flush(eng) != 0) {
        json_decref(run);
        e->retry_after = 1;
        return rd_fail(e, 503, "store_unavailable", "the store could not commit; try again");
    }
    *out = json_pack("{s:s, s:o}", key, value, "run", run);
    return 0;
}

static int answer_approval(rd_engine *eng, rd_active *act, bool approve, const char *comment,
                           json_t **out, rd_apierr *e)
{
    json_t *msg = json_pack("{s:s, s:s, s:o}", "type", "approval", "decision",
                            approve ? "approved" : "denied", "comment",
                            comment ? json_string(comment) : json_null());
    if (approve) {
        deliver(act, "approval", msg);
    } else {
        if (act->worker)
            rd_exec_send(act, msg); /* it may log or clean up before it is stopped */
        if (act->wait_ev) {
            event_free(act->wait_ev);
            act->wait_ev = NULL;
        }
        rd_exec_cancel(act, RD_RS_APPROVAL_DENIED);
    }
    json_decref(msg);
    return answered(eng, act, "decision", approve ? "approved" : "denied", out, e);
}

/* Verifies an approve/deny link and finds the paused run it answers; *kind is 'a' or 'd'. */
static int find_by_approval_token(rd_engine *eng, const char *token, rd_active **act, char *kind,
                                  rd_apierr *e)
{
    char id[RD_RUN_ID_MAX], nonce[32];
    if (rd_link_token_parse(eng->link_key, token, id, sizeof id, kind, nonce, sizeof nonce) != 0 ||
        *kind == 's')
        return rd_fail(e, 404, "token_invalid", "this approval link is not valid");
    return find_waiting(eng, id, nonce, RD_ST_PAUSED, act, e);
}

int rd_engine_approval_by_token(rd_engine *eng, const char *token, const char *comment,
                                json_t **out, rd_apierr *e)
{
    char kind;
    rd_active *act = NULL;
    if (find_by_approval_token(eng, token, &act, &kind, e) != 0)
        return -1;
    return answer_approval(eng, act, kind == 'a', comment, out, e);
}

int rd_engine_approval_by_id(rd_engine *eng, const char *id, bool approve, const char *comment,
                             json_t **out, rd_apierr *e)
{
    rd_active *act = NULL;
    if (find_waiting(eng, id, NULL, RD_ST_PAUSED, &act, e) != 0)
        return -1;
    return answer_approval(eng, act, approve, comment, out, e);
}

/* Describes what a token would do, for the confirmation page (nothing changes). */
int rd_engine_approval_peek(rd_engine *eng, const char *token, json_t **out, rd_apierr *e)
{
    char kind;
    rd_active *act = NULL;
    if (find_by_approval_token(eng, token, &act, &kind, e) != 0)
        return -1;
    json_t *pa = act->run->pending_action;
    *out = json_pack("{s:s, s:s, s:s, s:O, s:O}", "run_id", act->run->id, "decision",
                     kind == 'a' ? "approve" : "deny", "flow", act->run->flow, "prompt",
                     json_object_get(pa, "prompt"), "details", json_object_get(pa, "details"));
    return 0;
}

static int answer_auth(rd_engine *eng, rd_active *act, const char *state, const char *code,
                       const char *error, json_t **out, rd_apierr *e)
{
    if (code) {
        /* The code goes to the worker (and, if it must wait for a restart, into the run
         * record for it), never into an event or a log line. */
        json_t *msg = json_pack("{s:s, s:s, s:s, s:o}", "type", "auth", "status", "success", "code",
                                code, "state", state ? json_string(state) : json_null());
        deliver(act, "auth", msg);
        json_decref(msg);
    } else {
        json_t *msg =
            json_pack("{s:s, s:s, s:s}", "type", "auth", "status", "denied", "error", error);
        if (act->worker)
            rd_exec_send(act, msg);
        json_decref(msg);
        if (act->wait_ev) {
            event_free(act->wait_ev);
            act->wait_ev = NULL;
        }
        act->finishing = true;
        act->fin_status = RD_ST_FAILED;
        act->fin_reason = RD_RS_AUTH_DENIED;
        /* The state is spent now, not when the worker has gone. */
        json_object_del(act->run->pending_action, "_nonce");
        rd_mark_dirty(act);
        json_decref(act->run->error);
        act->run->error = json_pack("{s:s, s:s}", "message", "the user did not authorize",
                                    "provider_error", error);
        if (act->worker)
            rd_worker_stop(act->worker, eng->cfg->kill_grace_ms);
        else
            rd_exec_finish_now(act);
    }
    return answered(eng, act, "status", code ? "authorized" : "denied", out, e);
}

int rd_engine_auth_by_state(rd_engine *eng, const char *state, const char *code, const char *error,
                            json_t **out, rd_apierr *e)
{
    char id[RD_RUN_ID_MAX], nonce[32], kind;
    if (rd_link_token_parse(eng->link_key, state, id, sizeof id, &kind, nonce, sizeof nonce) != 0 ||
        kind != 's')
        return rd_fail(e, 404, "state_invalid", "this authorization state is not valid");
    rd_active *act = NULL;
    if (find_waiting(eng, id, nonce, RD_ST_AUTH_REQUIRED, &act, e) != 0)
        return -1;
    return answer_auth(eng, act, state, code, error, out, e);
}

int rd_engine_auth_by_id(rd_engine *eng, const char *id, const char *code, const char *error,
                         json_t **out, rd_apierr *e)
{
    rd_active *act = NULL;
    if (find_waiting(eng, id, NULL, RD_ST_AUTH_REQUIRED, &act, e) != 0)
        return -1;
    return answer_auth(eng, act, NULL, code, error, out, e);
}
