/*
 * engine_api.c: the operations the HTTP layer calls. Each validates against the run's state,
 * changes it through the engine's single writer, flushes (commit, then publish) and only
 * then returns the wire form, so a reply never acknowledges what the store could lose.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n < 5 || n >= RD_RUN_ID_MAX || strncmp(id, "run_", 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

static int store_error(rd_apierr *e)
{
    e->retry_after = 1;
    return rd_fail(e, 503, "store_unavailable", "the store could not commit; try again");
}

/* Finds a run in memory or loads it (then adopts it so it can be changed). */
static int load(rd_engine *eng, const char *id, rd_active **out, rd_apierr *e)
{
    if (!valid_id(id))
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    rd_active *act = rd_active_get(eng, id);
    if (!act) {
        rd_run *r = NULL;
        int rc = rd_store_run_get(eng->store, id, &r);
        if (rc == RD_ENOTFOUND)
            return rd_fail(e, 404, "run_not_found", "no run with that id");
        if (rc != 0)
            return store_error(e);
        act = rd_active_adopt(eng, r);
        if (!act) {
            rd_run_free(r);
            return rd_fail(e, 500, "internal", "out of memory");
        }
        /* Not an active run: it goes away again after the next commit. */
        if (!rd_status_active(r->status))
            rd_active_release(act);
    }
    *out = act;
    return 0;
}

static int finish(rd_engine *eng, rd_active *act, json_t **out, rd_apierr *e)
{
    json_t *j = rd_active_json(act);
    if (rd_engine_flush(eng) != 0) {
        json_decref(j);
        return store_error(e);
    }
    *out = j;
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
        return store_error(e);
    if (!req->body_hash || strcmp(body_hash, req->body_hash) != 0)
        return rd_fail(e, 422, "idempotency_key_reused",
                       "this Idempotency-Key was used with a different request body");
    *replayed = true;
    return rd_engine_get(eng, run_id, out, e);
}

static int create_check(rd_engine *eng, const rd_create_req *req, const rd_flow_config **flow,
                        int64_t *limit, rd_apierr *e)
{
    *flow = rd_config_flow(eng->cfg, req->flow);
    if (!*flow)
        return rd_fail(e, 422, "unknown_flow", "no flow named '%.64s' is configured", req->flow);
    *limit = req->limit > 0 ? req->limit : (*flow)->default_limit;
    if ((*flow)->max_limit > 0 && *limit > (*flow)->max_limit)
        return rd_fail(e, 422, "limit_too_large", "limit must be at most %lld for this flow",
                       (long long)(*flow)->max_limit);
    if (req->preview && (*limit == 0 || *limit > 10))
        *limit = 10; /* a preview looks at a handful of results (FindAll's preview) */
    if (eng->shutting_down)
        return rd_fail(e, 503, "shutting_down", "the daemon is shutting down");
    if (req->start && eng->n_queued >= eng->cfg->max_queued) {
        rd_fail(e, 429, "queue_full", "%d runs are already queued; retry later", eng->n_queued);
        e->retry_after = 5;
        return -1;
    }
    return 0;
}

int rd_engine_create(rd_engine *eng, const rd_create_req *req, json_t **out, bool *replayed,
                     rd_apierr *e)
{
    const rd_flow_config *flow = NULL;
    int64_t limit = 0;
    char key_hash[65] = "";
    *replayed = false;
    if (req->idem_key) {
        rd_sha256_hex(req->idem_key, strlen(req->idem_key), key_hash);
        int rc = create_replay(eng, req, key_hash, out, replayed, e);
        if (rc <= 0)
            return rc;
    }
    if (create_check(eng, req, &flow, &limit, e) != 0)
        return -1;
    rd_run *r = rd_run_new();
    if (!r || rd_random_id("run_", r->id, sizeof r->id) != 0) {
        rd_run_free(r);
        return rd_fail(e, 500, "internal", "could not create a run id");
    }
    snprintf(r->flow, sizeof r->flow, "%s", flow->name);
    memcpy(r->flow_version, flow->version, sizeof r->flow_version);
    r->input = req->input ? json_incref(req->input) : NULL;
    r->metadata = req->metadata ? json_incref(req->metadata) : NULL;
    char secret[80] = "";
    if (req->webhook) {
        /* The run's own endpoint gets its own signing secret; when the client gave none, one
         * is generated and returned once, in this reply only. */
        r->webhook = json_deep_copy(req->webhook);
        if (!json_object_get(r->webhook, "secret")) {
            unsigned char raw[24];
            char b64[40];
            if (rd_random_bytes(raw, sizeof raw) == 0) {
                rd_b64_encode(raw, sizeof raw, b64);
                snprintf(secret, sizeof secret, "whsec_%s", b64);
                json_object_set_new(r->webhook, "secret", json_string(secret));
            }
        }
    }
    r->limit = limit;
    r->preview = req->preview;
    r->created_at = r->updated_at = rd_now_ms();
    memcpy(r->idem_key_hash, key_hash, sizeof r->idem_key_hash);
    if (rd_store_run_insert(eng->store, r) != 0 ||
        (req->idem_key &&
         rd_store_idem_put(eng->store, key_hash, r->id, req->body_hash, r->created_at) != 0)) {
        rd_run_free(r);
        rd_store_rollback(eng->store);
        return store_error(e);
    }
    rd_active *act = rd_active_adopt(eng, r);
    if (!act) {
        rd_run_free(r);
        return rd_fail(e, 500, "internal", "out of memory");
    }
    json_t *wire = rd_active_json(act);
    json_t *d = json_pack("{s:o}", "run", wire);
    rd_emit(act, "run.created", d, 0);
    json_decref(d);
    eng->m_runs_created++;
    if (req->start) {
        rd_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
        rd_enqueue(act);
        /* With a free slot the run starts in this same transaction: one commit instead of
         * two, and the reply already says running. */
        rd_schedule_now(eng);
    } else {
        rd_active_release(act);
    }
    int rc = finish(eng, act, out, e);
    if (rc == 0 && secret[0])
        json_object_set_new(json_object_get(*out, "webhook"), "secret", json_string(secret));
    return rc;
}

int rd_engine_get(rd_engine *eng, const char *id, json_t **out, rd_apierr *e)
{
    if (!valid_id(id))
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    rd_active *act = rd_active_get(eng, id);
    if (act) {
        *out = rd_active_json(act);
        return 0;
    }
    rd_run *r = NULL;
    int rc = rd_store_run_get(eng->store, id, &r);
    if (rc == RD_ENOTFOUND)
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    if (rc != 0)
        return store_error(e);
    *out = rd_engine_run_json(eng, r);
    rd_run_free(r);
    return 0;
}

bool rd_engine_settled(rd_engine *eng, const char *id)
{
    rd_active *act = rd_active_get(eng, id);
    if (!act)
        return true; /* not active: terminal, created or unknown */
    rd_status s = act->run->status;
    return rd_status_terminal(s) || s == RD_ST_PAUSED || s == RD_ST_AUTH_REQUIRED ||
           s == RD_ST_CREATED;
}

int rd_engine_list(rd_engine *eng, const rd_run_filter *f, int page, int page_size, json_t **out,
                   rd_apierr *e)
{
    rd_run **runs = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (rd_engine_flush(eng) != 0)
        return store_error(e);
    if (rd_store_run_list(eng->store, f, (int64_t)(page - 1) * page_size, page_size, &runs, &n,
                          &total) != 0)
        return store_error(e);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        rd_active *act = rd_active_get(eng, runs[i]->id);
        json_array_append_new(items, act ? rd_active_json(act) : rd_engine_run_json(eng, runs[i]));
    }
    rd_run_array_free(runs, n);
    *out =
        json_pack("{s:o, s:i, s:i, s:I, s:b}", "items", items, "page", page, "page_size", page_size,
                  "total", (json_int_t)total, "has_more", (int64_t)page * page_size < total);
    return 0;
}

int rd_engine_cancel(rd_engine *eng, const char *id, json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (load(eng, id, &act, e) != 0)
        return -1;
    rd_run *r = act->run;
    if (rd_status_terminal(r->status))
        return rd_fail(e, 409, "run_terminal", "the run is already %s", rd_status_name(r->status));
    switch (r->status) {
    case RD_ST_CREATED:
    case RD_ST_QUEUED:
        rd_dequeue(act);
        rd_transition(act, RD_ST_CANCELLED, RD_RS_USER_CANCELLED, NULL);
        rd_active_release(act);
        break;
    case RD_ST_CANCELLING:
        break; /* already on its way: cancelling twice is not an error */
    default:
        rd_exec_cancel(act, RD_RS_USER_CANCELLED);
        break;
    }
    return finish(eng, act, out, e);
}

int rd_engine_start(rd_engine *eng, const char *id, json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (load(eng, id, &act, e) != 0)
        return -1;
    if (act->run->status != RD_ST_CREATED)
        return rd_fail(e, 409, "invalid_transition", "only a created run can be started; it is %s",
                       rd_status_name(act->run->status));
    if (eng->n_queued >= eng->cfg->max_queued) {
        rd_fail(e, 429, "queue_full", "%d runs are already queued; retry later", eng->n_queued);
        e->retry_after = 5;
        return -1;
    }
    rd_active_keep(act); /* it becomes active: no longer freed after the commit */
    rd_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
    rd_enqueue(act);
    return finish(eng, act, out, e);
}

int rd_engine_extend(rd_engine *eng, const char *id, int64_t additional, json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (load(eng, id, &act, e) != 0)
        return -1;
    rd_run *r = act->run;
    if (!rd_fsm_can_extend(r->status, r->reason, r->preview))
        return rd_fail(e, 409, "not_extendable",
                       "only a non-preview run that succeeded with match_limit_met can be "
                       "extended; this one is %s%s%s%s",
                       rd_status_name(r->status), r->reason ? " (" : "",
                       r->reason ? rd_reason_name(r->reason) : "", r->reason ? ")" : "");
    const rd_flow_config *flow = rd_config_flow(eng->cfg, r->flow);
    if (!flow)
        return rd_fail(e, 409, "unknown_flow", "the run's flow is no longer configured");
    if (additional <= 0 || (flow->max_limit > 0 && r->limit + additional > flow->max_limit))
        return rd_fail(e, 422, "invalid_additional_limit",
                       "additional_limit must be a positive integer and the new limit at most %lld",
                       (long long)flow->max_limit);
    if (eng->n_queued >= eng->cfg->max_queued) {
        rd_fail(e, 429, "queue_full", "%d runs are already queued; retry later", eng->n_queued);
        e->retry_after = 5;
        return -1;
    }
    rd_active_keep(act);
    r->limit += additional;
    act->limit_hit = false;
    /* Same run, same items and history: the worker resumes from the last checkpoint. */
    rd_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
    rd_enqueue(act);
    return finish(eng, act, out, e);
}

int rd_engine_enrich(rd_engine *eng, const char *id, const char *flow_name, json_t *input,
                     json_t **out, rd_apierr *e)
{
    rd_active *act;
    if (load(eng, id, &act, e) != 0)
        return -1;
    rd_run *r = act->run;
    if (!rd_fsm_can_enrich(r->status) || r->status == RD_ST_CANCELLING)
        return rd_fail(e, 409, "not_enrichable", "a %s run cannot be enriched",
                       rd_status_name(r->status));
    const rd_flow_config *flow = rd_config_flow(eng->cfg, flow_name);
    if (!flow)
        return rd_fail(e, 422, "unknown_flow", "no flow named '%.64s' is configured", flow_name);
    if (flow->external)
        return rd_fail(e, 422, "invalid_enrichment_flow",
                       "an enrichment flow must run a local worker (not executor = external)");
    if (eng->shutting_down)
        return rd_fail(e, 503, "shutting_down", "the daemon is shutting down");
    if (rd_enrich_start(act, flow, input, e) != 0)
        return -1;
    rd_active_keep(act); /* a finished run stays in memory while it is enriched */
    return finish(eng, act, out, e);
}
