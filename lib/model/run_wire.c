/*
 * run_wire.c: the wire form of a run (SPEC section 3). The record is the engine's; this file only
 * reads it. Secrets (webhook secret, token hashes) never leave here.
 */
#include "model/run.h"

#include <stdio.h>
#include <string.h>

#include "base/util.h"

static json_t *time_or_null(int64_t ms)
{
    char buf[40];
    if (ms <= 0)
        return json_null();
    rd_rfc3339(ms, buf, sizeof buf);
    return json_string(buf);
}

static json_t *ref_or_null(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

/* The stored pending action keeps token hashes; the wire form carries links. The raw tokens
 * live in the action's "links" member, which only the engine fills and which the store keeps
 * so the links stay valid across restarts (they are bearer secrets for this one run, like
 * the stream token). */
static json_t *pending_to_json(const rd_run *r)
{
    if (!r->pending_action || !json_is_object(r->pending_action))
        return json_null();
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(r->pending_action, k, v)
    {
        if (k[0] == '_')
            continue; /* private members: hashes, raw state */
        json_object_set(out, k, v);
    }
    return out;
}

static json_t *metrics_to_json(const rd_run *r)
{
    int64_t duration = 0;
    if (r->started_at > 0)
        duration = (r->finished_at > 0 ? r->finished_at : rd_now_ms()) - r->started_at;
    if (duration < 0)
        duration = 0;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "duration_ms", (json_int_t)duration,
                     "worker_ms", (json_int_t)r->run_ms, "cpu_user_ms", (json_int_t)r->cpu_user_ms,
                     "cpu_sys_ms", (json_int_t)r->cpu_sys_ms, "peak_rss_kb",
                     (json_int_t)r->peak_rss_kb, "protocol_errors", (json_int_t)r->n_proto_errors,
                     "dropped_items", (json_int_t)r->n_dropped);
}

static json_t *webhook_to_json(const rd_run *r)
{
    if (!r->webhook)
        return json_null();
    json_t *out = json_object();
    json_object_set(out, "url", json_object_get(r->webhook, "url"));
    json_t *ev = json_object_get(r->webhook, "events");
    if (ev)
        json_object_set(out, "events", ev);
    return out;
}

json_t *rd_run_to_json(const rd_run *r, const char *public_url, const char *stream_token)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "object", json_string("run"));
    json_object_set_new(o, "flow", json_string(r->flow));
    json_object_set_new(o, "flow_version", json_string(r->flow_version));
    json_object_set_new(o, "status", json_string(rd_status_name(r->status)));
    json_object_set_new(o, "termination_reason",
                        r->reason == RD_RS_NONE ? json_null()
                                                : json_string(rd_reason_name(r->reason)));
    /* FindAll: a run is active while enrichments still work on it, even once finished. */
    bool enriching = false;
    json_t *ens = r->extra ? json_object_get(r->extra, "enrichments") : NULL;
    size_t ei;
    json_t *ev;
    json_array_foreach(ens, ei, ev)
    {
        const char *st = json_string_value(json_object_get(ev, "status"));
        enriching |= st && strcmp(st, "running") == 0;
    }
    json_object_set_new(o, "is_active", json_boolean(rd_status_active(r->status) || enriching));
    json_object_set_new(o, "input", ref_or_null(r->input));
    json_object_set_new(o, "metadata", r->metadata ? json_incref(r->metadata) : json_object());
    json_object_set_new(o, "limit", r->limit > 0 ? json_integer(r->limit) : json_null());
    json_object_set_new(o, "preview", json_boolean(r->preview));
    json_object_set_new(o, "attempt", json_integer(r->attempt));
    json_object_set_new(o, "steps", r->steps ? json_incref(r->steps) : json_array());
    json_object_set_new(o, "steps_finished", json_integer(r->n_steps_finished));
    json_object_set_new(o, "progress", ref_or_null(r->progress));
    json_object_set_new(o, "counts",
                        json_pack("{s:I, s:I, s:I, s:I}", "items", (json_int_t)r->n_items,
                                  "item_errors", (json_int_t)r->n_item_errors, "evaluated",
                                  (json_int_t)r->n_evaluated, "matched", (json_int_t)r->n_matched));
    json_object_set_new(o, "result", ref_or_null(r->result));
    json_object_set_new(o, "error", ref_or_null(r->error));
    json_object_set_new(o, "pending_action", pending_to_json(r));
    json_object_set_new(o, "webhook", webhook_to_json(r));
    json_t *enr = r->extra ? json_object_get(r->extra, "enrichments") : NULL;
    json_object_set_new(o, "enrichments", enr ? json_incref(enr) : json_array());
    json_object_set_new(o, "created_at", time_or_null(r->created_at));
    json_object_set_new(o, "started_at", time_or_null(r->started_at));
    json_object_set_new(o, "finished_at", time_or_null(r->finished_at));
    json_object_set_new(o, "updated_at", time_or_null(r->updated_at));
    json_object_set_new(o, "metrics", metrics_to_json(r));
    json_object_set_new(o, "last_event_id", json_integer(r->last_event_id));
    if (public_url && stream_token) {
        char url[1024];
        snprintf(url, sizeof url, "%s/v1/runs/%s/events?token=%s", public_url, r->id, stream_token);
        json_object_set_new(o, "stream_url", json_string(url));
    } else {
        json_object_set_new(o, "stream_url", json_null());
    }
    return o;
}

/* ---- Who sees capability links ------------------------------------------------------------ */

bool rd_pending_redact(json_t *pa, rd_audience aud, bool stream_approvals)
{
    static const char *const fields[] = {"approve_url", "deny_url", "auth_url"};
    if (aud == RD_AUD_FULL || !json_is_object(pa))
        return false;
    bool hid = false;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v = json_object_get(pa, fields[i]);
        if (!v || json_is_null(v))
            continue;
        bool is_auth = i == 2;
        if (aud == RD_AUD_STREAM && (is_auth || stream_approvals))
            continue; /* the person watching the stream is the person who answers */
        json_object_set_new(pa, fields[i], json_null());
        hid = true;
    }
    return hid;
}

bool rd_event_may_link(const char *type)
{
    static const char *const types[] = {"run.status", "run.approval_required", "run.auth_required",
                                        "run.created", "run.end"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(type, types[i]) == 0)
            return true;
    return false;
}

json_t *rd_event_pending(const char *type, json_t *data)
{
    if (strcmp(type, "run.status") == 0)
        return json_object_get(data, "pending_action");
    if (strcmp(type, "run.approval_required") == 0 || strcmp(type, "run.auth_required") == 0)
        return data;
    if (strcmp(type, "run.created") == 0 || strcmp(type, "run.end") == 0)
        return json_object_get(json_object_get(data, "run"), "pending_action");
    return NULL;
}
