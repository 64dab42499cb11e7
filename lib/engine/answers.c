/*
 * answers.c: answers from people (SPEC sections 1-3). An approve/deny link, an OAuth
 * callback's state, or a client's answer by run id names a waiting run; this file checks that
 * the run still waits for that very request, hands the answer to the execution layer, and
 * commits before replying. Links carry HMAC-derived tokens whose nonce must match the run's
 * pending request, so answering (which clears the request) spends both approval links.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <string.h>

static bool is_timeout(rd_reason rs)
{
    return rs == RD_RS_APPROVAL_TIMEOUT || rs == RD_RS_AUTH_TIMEOUT;
}

/* Why a token or id does not name a run waiting for its request: fills e, returns -1.
 * timed_out: the request ended by its deadline. */
static int not_waiting(const char *status, bool timed_out, const char *pn, const char *nonce,
                       rd_status want, rd_apierr *e)
{
    if (nonce && timed_out && (!pn || strcmp(pn, nonce) == 0))
        return rd_fail(e, 410, "token_expired", "the request has expired");
    if (nonce)
        return rd_fail(e, 410, "token_spent",
                       "this link was already used, or its request is no longer pending");
    return rd_fail(e, 409, want == RD_ST_PAUSED ? "run_not_paused" : "run_not_waiting_auth",
                   "the run is %s, not waiting for %s", status,
                   want == RD_ST_PAUSED ? "an approval" : "an authorization");
}

/* Finds the waiting run a token or id names, checking its pending request. */
static int find_waiting(rd_engine *eng, const char *id, const char *nonce, rd_status want,
                        rd_active **out, rd_apierr *e)
{
    rd_status st;
    rd_reason reason, ending;
    if (rd_runs_lookup(eng->runs, id, &st, &reason, e) != 0)
        return -1;
    rd_active *act = rd_runs_get(eng->runs, id);
    if (!act)
        return not_waiting("not active", is_timeout(reason), NULL, nonce, want, e);
    const rd_run *r = rd_active_run(act);
    json_t *pa = r->pending_action;
    const char *pn = pa ? json_string_value(json_object_get(pa, "_nonce")) : NULL;
    bool is_ending = rd_exec_ending(act, &ending);
    if (r->status != want || !pn || (nonce && strcmp(pn, nonce) != 0) || is_ending)
        return not_waiting(rd_status_name(r->status),
                           is_ending ? is_timeout(ending) : is_timeout(r->reason), pn, nonce, want,
                           e);
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
    return rd_engine_reply(json_pack("{s:s, s:o}", key, value, "run", run), out, e);
}

static int answer_approval(rd_engine *eng, rd_active *act, bool approve, const char *comment,
                           json_t **out, rd_apierr *e)
{
    const rd_run *r = rd_active_run(act);
    rd_logk(RD_LOG_INFO, "approval answered", RD_LS("run", r->id), RD_LS("flow", r->flow),
            RD_LS("decision", approve ? "approved" : "denied"));
    json_t *msg = json_pack("{s:s, s:s, s:o}", "type", "approval", "decision",
                            approve ? "approved" : "denied", "comment",
                            comment ? json_string(comment) : json_null());
    if (!approve)
        rd_exec_deny_approval(eng->exec, act, msg);
    else if (rd_exec_answer(eng->exec, act, "approval", msg))
        rd_sched_enqueue(eng, act);
    json_decref(msg);
    return answered(eng, act, "decision", approve ? "approved" : "denied", out, e);
}

/* Verifies an approve/deny link and finds the paused run it answers; *kind is 'a' or 'd'. */
static int find_by_approval_token(rd_engine *eng, const char *token, rd_active **act, char *kind,
                                  rd_apierr *e)
{
    char id[RD_RUN_ID_MAX], nonce[32];
    if (rd_runs_link_parse(eng->runs, token, id, sizeof id, kind, nonce, sizeof nonce) != 0 ||
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

int rd_engine_approval_peek(rd_engine *eng, const char *token, json_t **out, rd_apierr *e)
{
    char kind;
    rd_active *act = NULL;
    if (find_by_approval_token(eng, token, &act, &kind, e) != 0)
        return -1;
    const rd_run *r = rd_active_run(act);
    json_t *pa = r->pending_action;
    *out = json_pack("{s:s, s:s, s:s, s:O, s:O}", "run_id", r->id, "decision",
                     kind == 'a' ? "approve" : "deny", "flow", r->flow, "prompt",
                     json_object_get(pa, "prompt"), "details", json_object_get(pa, "details"));
    return 0;
}

static int answer_auth(rd_engine *eng, rd_active *act, const char *state, const char *code,
                       const char *error, json_t **out, rd_apierr *e)
{
    /* Neither the code nor the state (a link token) is logged; the provider's error is. */
    const rd_run *r = rd_active_run(act);
    rd_logk(RD_LOG_INFO, "auth answered", RD_LS("run", r->id), RD_LS("flow", r->flow),
            RD_LS("status", code ? "authorized" : "denied"), RD_LS("error", code ? NULL : error));
    if (code) {
        /* The code goes to the worker (and, if it must wait for a restart, into the run
         * record for it), never into an event or a log line. */
        json_t *msg = json_pack("{s:s, s:s, s:s, s:o}", "type", "auth", "status", "success", "code",
                                code, "state", state ? json_string(state) : json_null());
        if (rd_exec_answer(eng->exec, act, "auth", msg))
            rd_sched_enqueue(eng, act);
        json_decref(msg);
    } else {
        json_t *msg =
            json_pack("{s:s, s:s, s:s}", "type", "auth", "status", "denied", "error", error);
        rd_exec_deny_auth(eng->exec, act, msg, error);
        json_decref(msg);
    }
    return answered(eng, act, "status", code ? "authorized" : "denied", out, e);
}

int rd_engine_auth_by_state(rd_engine *eng, const char *state, const char *code, const char *error,
                            json_t **out, rd_apierr *e)
{
    char id[RD_RUN_ID_MAX], nonce[32], kind;
    if (rd_runs_link_parse(eng->runs, state, id, sizeof id, &kind, nonce, sizeof nonce) != 0 ||
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
