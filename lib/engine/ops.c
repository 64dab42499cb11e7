/*
 * ops.c: the operations that change runs (create, start, cancel, extend, enrich). Each
 * checks the run's state, asks the run layer, the scheduler or the execution layer for the
 * change, commits (and publishes), and only then returns the wire form, so a reply never
 * acknowledges what the store could lose.
 */
#include "engine/engine_int.h"
#include "model/input_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A change that would start new work is refused while the store fails: answering 503 after
 * making it in memory would let it happen later (the journal stores it once the store works)
 * although the client was told it did not. The retry timer and the health probe tell a store
 * that works again (run/), without a request waiting for it. */
static int store_gate(rd_engine *eng, rd_apierr *e)
{
    if (!rd_runs_store_ok(eng->runs))
        return rd_fail_store(e);
    return 0;
}

static int create_replay(rd_engine *eng, const rd_create_req *req, const char *key_hash,
                         json_t **out, bool *replayed, rd_apierr *e)
{
    char run_id[RD_RUN_ID_MAX], body_hash[80];
    int rc =
        rd_store_idem_get(eng->store, key_hash, run_id, sizeof run_id, body_hash, sizeof body_hash);
    if (rc == RD_ENOTFOUND)
        return 1;
    if (rc != 0)
        return rd_fail_store(e);
    if (!req->body_hash || strcmp(body_hash, req->body_hash) != 0)
        return rd_fail(e, 422, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request body");
    *replayed = true;
    return rd_engine_get(eng, run_id, RD_AUD_FULL, out, e);
}

/* A run's input must fit its flow's input schema (config key input_schema), checked before
 * anything is stored: a misspelt key is refused with its name, not ignored by the worker. */
static int input_check(const rd_flow_config *flow, const json_t *input, rd_apierr *e)
{
    char why[sizeof e->message];

    if (flow->input_schema != NULL &&
        rd_input_schema_validate(flow->input_schema, input, why, sizeof why) != 0)
        return rd_fail(e, 422, "invalid_input", "%s", why);
    return 0;
}

static int create_check(rd_engine *eng, const rd_create_req *req, const rd_flow_config **flow,
                        int64_t *limit, rd_apierr *e)
{
    *flow = rd_config_flow(eng->cfg, req->flow);
    if (!*flow)
        return rd_fail(e, 422, "unknown_flow", "no flow named '%.64s' is configured", req->flow);
    if (input_check(*flow, req->input, e) != 0)
        return -1;
    *limit = req->limit > 0 ? req->limit : (*flow)->default_limit;
    if ((*flow)->max_limit > 0 && *limit > (*flow)->max_limit)
        return rd_fail(e, 422, "limit_too_large", "limit must be at most %lld for this flow",
                       (long long)(*flow)->max_limit);
    if (req->preview && (*limit == 0 || *limit > 10))
        *limit = 10; /* a preview looks at a handful of results (FindAll's preview) */
    if (eng->shutting_down)
        return rd_fail(e, 503, "shutting_down", "the daemon is shutting down");
    if (req->start)
        return rd_sched_check_room(eng, e);
    return 0;
}

/* The run's own webhook endpoint gets its own signing secret; when the client gave none, one
 * is generated and returned once, in the create reply only. New reference or NULL. */
static json_t *webhook_with_secret(json_t *webhook, char *secret, size_t len)
{
    if (!webhook)
        return NULL;
    json_t *w = json_deep_copy(webhook);
    if (w && !json_object_get(w, "secret")) {
        unsigned char raw[24];
        char b64[40];
        if (rd_random_bytes(raw, sizeof raw) == 0) {
            rd_b64_encode(raw, sizeof raw, b64);
            snprintf(secret, len, "whsec_%s", b64);
            json_object_set_new(w, "secret", json_string(secret));
        }
    }
    return w;
}

int rd_engine_create(rd_engine *eng, const rd_create_req *req, json_t **out, bool *replayed,
                     rd_apierr *e)
{
    const rd_flow_config *flow = NULL;
    int64_t limit = 0;
    char key_hash[65] = "", secret[80] = "";
    *replayed = false;
    if (req->idem_key) {
        rd_sha256_hex(req->idem_key, strlen(req->idem_key), key_hash);
        int rc = create_replay(eng, req, key_hash, out, replayed, e);
        if (rc <= 0)
            return rc;
    }
    if (store_gate(eng, e) != 0 || create_check(eng, req, &flow, &limit, e) != 0)
        return -1;
    json_t *webhook = webhook_with_secret(req->webhook, secret, sizeof secret);
    rd_run_init in = {.flow = flow,
                      .input = req->input,
                      .metadata = req->metadata,
                      .webhook = webhook,
                      .limit = limit,
                      .preview = req->preview,
                      .idem_key_hash = req->idem_key ? key_hash : NULL,
                      .body_hash = req->body_hash};
    rd_active *act = NULL;
    int rc = rd_runs_create(eng->runs, &in, &act, e);
    json_decref(webhook);
    if (rc != 0)
        return -1;
    if (req->start) {
        rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
        rd_sched_enqueue(eng, act);
        /* With a free slot the run starts in this same transaction: one commit instead of
         * two, and the reply already says running. */
        rd_sched_now(eng);
    } else {
        rd_active_release(act);
    }
    rc = rd_engine_reply(rd_active_json(act), out, e);
    if (rc == 0 && secret[0])
        json_object_set_new(json_object_get(*out, "webhook"), "secret", json_string(secret));
    return rc;
}

int rd_engine_cancel(rd_engine *eng, const char *id, json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (rd_runs_load(eng->runs, id, &act, e) != 0)
        return -1;
    const rd_run *r = rd_active_run(act);
    if (rd_status_terminal(r->status))
        return rd_fail(e, 409, "run_terminal", "the run is already %s", rd_status_name(r->status));
    switch (r->status) {
    case RD_ST_CREATED:
    case RD_ST_QUEUED:
        rd_run_transition(act, RD_ST_CANCELLED, RD_RS_USER_CANCELLED, NULL);
        rd_active_release(act);
        break;
    case RD_ST_CANCELLING:
        break; /* already on its way: cancelling twice is not an error */
    default:
        rd_exec_cancel(eng->exec, act, RD_RS_USER_CANCELLED);
        break;
    }
    return rd_engine_reply(rd_active_json(act), out, e);
}

int rd_engine_start(rd_engine *eng, const char *id, json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (store_gate(eng, e) != 0 || rd_runs_load(eng->runs, id, &act, e) != 0)
        return -1;
    rd_status s = rd_active_run(act)->status;
    if (s != RD_ST_CREATED)
        return rd_fail(e, 409, "invalid_transition", "only a created run can be started; it is %s",
                       rd_status_name(s));
    if (rd_sched_check_room(eng, e) != 0)
        return -1;
    rd_active_keep(act); /* it becomes active: no longer freed after the commit */
    rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
    rd_sched_enqueue(eng, act);
    return rd_engine_reply(rd_active_json(act), out, e);
}

static int not_extendable(const rd_run *r, rd_apierr *e)
{
    return rd_fail(e, 409, "not_extendable",
                   "only a non-preview run that succeeded with match_limit_met can be "
                   "extended; this one is %s%s%s%s",
                   rd_status_name(r->status), r->reason ? " (" : "",
                   r->reason ? rd_reason_name(r->reason) : "", r->reason ? ")" : "");
}

int rd_engine_extend(rd_engine *eng, const char *id, int64_t additional, json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (store_gate(eng, e) != 0 || rd_runs_load(eng->runs, id, &act, e) != 0)
        return -1;
    const rd_run *r = rd_active_run(act);
    if (!rd_fsm_can_extend(r->status, r->reason, r->preview))
        return not_extendable(r, e);
    const rd_flow_config *flow = rd_config_flow(eng->cfg, r->flow);
    if (!flow)
        return rd_fail(e, 409, "unknown_flow", "the run's flow is no longer configured");
    if (additional <= 0 || (flow->max_limit > 0 && r->limit + additional > flow->max_limit))
        return rd_fail(e, 422, "invalid_additional_limit",
                       "additional_limit must be a positive integer and the new limit at most %lld",
                       (long long)flow->max_limit);
    if (rd_sched_check_room(eng, e) != 0)
        return -1;
    rd_active_keep(act);
    rd_run_extend_limit(act, additional);
    /* Same run, same items and history: the worker resumes from the last checkpoint. */
    rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
    rd_sched_enqueue(eng, act);
    return rd_engine_reply(rd_active_json(act), out, e);
}

int rd_engine_enrich(rd_engine *eng, const char *id, const char *flow_name, json_t *input,
                     json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (store_gate(eng, e) != 0 || rd_runs_load(eng->runs, id, &act, e) != 0)
        return -1;
    rd_status s = rd_active_run(act)->status;
    if (!rd_fsm_can_enrich(s) || s == RD_ST_CANCELLING)
        return rd_fail(e, 409, "not_enrichable", "a %s run cannot be enriched", rd_status_name(s));
    const rd_flow_config *flow = rd_config_flow(eng->cfg, flow_name);
    if (!flow)
        return rd_fail(e, 422, "unknown_flow", "no flow named '%.64s' is configured", flow_name);
    if (flow->external)
        return rd_fail(e, 422, "invalid_enrichment_flow",
                       "an enrichment flow must run a local worker (not executor = external)");
    if (input_check(flow, input, e) != 0)
        return -1;
    if (eng->shutting_down)
        return rd_fail(e, 503, "shutting_down", "the daemon is shutting down");
    if (rd_exec_enrich(eng->exec, act, flow, input, e) != 0)
        return -1;
    rd_active_keep(act); /* a finished run stays in memory while it is enriched */
    return rd_engine_reply(rd_active_json(act), out, e);
}
