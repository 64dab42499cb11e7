/*
 * api.c: request validation and the handlers of SPEC section 3. Validation is strict and
 * every refusal is a JSON error with a stable code; the engine does the work.
 */
#include "api/api.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_hooks.h"
#include "webhook/outbox.h"
#include "stream/sse.h"
#include "api/stream.h"
#include "base/util.h"

/* --- small validators --------------------------------------------------------------------- */

/* Parses an optional integer query parameter within [lo, hi]. 0 ok (def when absent), -1
 * after replying 400. */
static int query_int(rd_req *req, const char *key, int64_t def, int64_t lo, int64_t hi,
                     int64_t *out)
{
    const char *v = rd_req_query(req, key);
    if (!v) {
        *out = def;
        return 0;
    }
    int64_t n;
    if (rd_parse_i64(v, &n) != 0 || n < lo || n > hi)
        return rd_reply_error(req, 400, "invalid_parameter",
                              "'%s' must be an integer between %lld and %lld", key, (long long)lo,
                              (long long)hi);
    *out = n;
    return 0;
}

static bool valid_flow_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static void reply_engine(rd_req *req, int rc, int status, json_t *out, const rd_apierr *e)
{
    if (rc == 0)
        rd_reply_json(req, status, out);
    else
        rd_reply_apierr(req, e);
}

/* --- webhook field (stored now, delivered by the webhook outbox) ------------------------- */

static int check_webhook(rd_req *req, json_t *wh)
{
    if (!wh || json_is_null(wh))
        return 0;
    if (!json_is_object(wh))
        return rd_reply_error(req, 422, "invalid_webhook", "'webhook' must be an object");
    const char *url = json_string_value(json_object_get(wh, "url"));
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        strlen(url) > 2048)
        return rd_reply_error(req, 422, "invalid_webhook",
                              "'webhook.url' must be an http(s) URL of at most 2048 bytes");
    json_t *ev = json_object_get(wh, "events");
    if (ev && !json_is_array(ev))
        return rd_reply_error(req, 422, "invalid_webhook",
                              "'webhook.events' must be an array of event types");
    json_t *sec = json_object_get(wh, "secret");
    if (sec && (!json_is_string(sec) || strncmp(json_string_value(sec), "whsec_", 6) != 0))
        return rd_reply_error(req, 422, "invalid_webhook",
                              "'webhook.secret' must be a string starting with whsec_");
    char why[320];
    if (rd_outbox_check_webhook(wh, why, sizeof why) != 0)
        return rd_reply_error(req, 422, "invalid_webhook", "%s", why);
    return 0;
}

/* --- handlers ----------------------------------------------------------------------------- */

static int parse_create(rd_req *req, json_t *body, rd_create_req *c)
{
    static const char *known[] = {"flow",    "input", "metadata", "limit",
                                  "preview", "start", "webhook",  NULL};
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        bool ok = false;
        for (int i = 0; known[i]; i++)
            ok |= strcmp(known[i], k) == 0;
        if (!ok)
            return rd_reply_error(req, 422, "unknown_field", "unknown field '%.64s'", k);
    }
    json_t *flow = json_object_get(body, "flow");
    if (!json_is_string(flow))
        return rd_reply_error(req, 422, "invalid_flow", "'flow' is required and must be a string");
    c->flow = json_string_value(flow);
    if (!valid_flow_name(c->flow))
        return rd_reply_error(req, 422, "unknown_flow", "no flow named '%.64s' is configured",
                              c->flow);
    c->input = json_object_get(body, "input");
    json_t *md = json_object_get(body, "metadata");
    if (md && !json_is_null(md) && !json_is_object(md))
        return rd_reply_error(req, 422, "invalid_metadata", "'metadata' must be an object");
    c->metadata = json_is_object(md) ? md : NULL;
    json_t *lim = json_object_get(body, "limit");
    if (lim && !json_is_null(lim)) {
        if (!json_is_integer(lim) || json_integer_value(lim) <= 0)
            return rd_reply_error(req, 422, "invalid_limit", "'limit' must be a positive integer");
        c->limit = json_integer_value(lim);
    }
    json_t *pv = json_object_get(body, "preview"), *st = json_object_get(body, "start");
    if ((pv && !json_is_boolean(pv)) || (st && !json_is_boolean(st)))
        return rd_reply_error(req, 422, "invalid_field", "'preview' and 'start' must be booleans");
    c->preview = pv && json_is_true(pv);
    c->start = !st || json_is_true(st);
    json_t *wh = json_object_get(body, "webhook");
    if (check_webhook(req, wh) != 0)
        return -1;
    c->webhook = json_is_object(wh) ? wh : NULL;
    return 0;
}

static void h_create(rd_req *req)
{
    json_t *body;
    size_t len = 0;
    char *raw = rd_req_body(req, &len);
    if (!raw)
        return;
    char body_hash[65];
    rd_sha256_hex(raw, len, body_hash);
    free(raw);
    if (rd_req_json_body(req, &body) != 0)
        return;
    rd_create_req c = {0};
    if (parse_create(req, body, &c) != 0) {
        json_decref(body);
        return;
    }
    const char *idem = rd_req_header(req, "Idempotency-Key");
    char scoped[400];
    if (idem) {
        if (strlen(idem) == 0 || strlen(idem) > 255) {
            json_decref(body);
            rd_reply_error(req, 400, "invalid_idempotency_key",
                           "Idempotency-Key must be 1 to 255 characters");
            return;
        }
        /* Scope keys by caller so two API keys cannot collide. */
        const char *who = rd_req_header(req, "x-api-key");
        if (!who)
            who = rd_req_header(req, "Authorization");
        char who_hash[65];
        rd_sha256_hex(who ? who : "", who ? strlen(who) : 0, who_hash);
        snprintf(scoped, sizeof scoped, "%.16s:%s", who_hash, idem);
        c.idem_key = scoped;
        c.body_hash = body_hash;
    }
    json_t *out = NULL;
    bool replayed = false;
    rd_apierr e;
    int rc = rd_engine_create(req->eng, &c, &out, &replayed, &e);
    json_decref(body);
    if (rc == 0 && replayed)
        evhtp_headers_add_header(req->r->headers_out,
                                 evhtp_header_new("Idempotent-Replayed", "true", 0, 0));
    if (rc == 0) {
        char loc[200];
        snprintf(loc, sizeof loc, "/v1/runs/%s", json_string_value(json_object_get(out, "id")));
        evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Location", loc, 0, 1));
    }
    reply_engine(req, rc, 201, out, &e);
}

static void h_list(rd_req *req)
{
    int64_t page = 1, size = 10;
    if (query_int(req, "page", 1, 1, 1000000, &page) != 0 ||
        query_int(req, "page_size", 10, 1, 100, &size) != 0)
        return;
    rd_run_filter f = {0};
    const char *st = rd_req_query(req, "status");
    if (st && *st) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", st);
        char *save = NULL;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            rd_status s;
            if (rd_status_parse(t, &s) != 0) {
                rd_reply_error(req, 400, "invalid_parameter", "unknown status '%.32s'", t);
                return;
            }
            f.status_mask |= 1u << s;
        }
    }
    f.flow = rd_req_query(req, "flow");
    if (f.flow && !*f.flow)
        f.flow = NULL;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_list(req->eng, &f, (int)page, (int)size, &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

/* ?wait=N: the reply is held until the run settles or N seconds pass. */
typedef struct waiter {
    evhtp_request_t *r;
    rd_http *h;
    rd_engine *eng;
    const rd_config *cfg;
    char id[RD_RUN_ID_MAX];
    char request_id[24];
    void *watch;
    struct event *timer;
    bool done;
} waiter;

static void waiter_answer(waiter *w)
{
    if (w->done)
        return;
    w->done = true;
    if (w->watch)
        rd_engine_unwatch(w->eng, w->watch);
    w->watch = NULL;
    if (w->timer)
        event_del(w->timer);
    if (!w->r)
        return;
    rd_req req = {.r = w->r, .h = w->h, .eng = w->eng, .cfg = w->cfg, .method = htp_method_GET};
    memcpy(req.request_id, w->request_id, sizeof req.request_id);
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_get(w->eng, w->id, &out, &e);
    reply_engine(&req, rc, 200, out, &e);
    evhtp_request_resume(w->r);
}

static void waiter_on_watch(void *arg)
{
    waiter *w = arg;
    w->watch = NULL; /* the engine freed the watch before calling */
    waiter_answer(w);
}

static void waiter_on_timer(evutil_socket_t fd, short what, void *arg)
{
    waiter_answer(arg);
}

static evhtp_res waiter_on_fini(evhtp_request_t *r, void *arg)
{
    waiter *w = arg;
    if (w->watch)
        rd_engine_unwatch(w->eng, w->watch);
    if (w->timer)
        event_free(w->timer);
    free(w);
    return EVHTP_RES_OK;
}

static void h_get(rd_req *req, const char *id)
{
    int64_t wait = 0;
    if (query_int(req, "wait", 0, 0, req->cfg->max_wait_ms / 1000, &wait) != 0)
        return;
    if (wait > 0 && !rd_engine_settled(req->eng, id)) {
        waiter *w = calloc(1, sizeof *w);
        if (w) {
            w->r = req->r;
            w->h = req->h;
            w->eng = req->eng;
            w->cfg = req->cfg;
            snprintf(w->id, sizeof w->id, "%s", id);
            memcpy(w->request_id, req->request_id, sizeof w->request_id);
            w->watch = rd_engine_watch(req->eng, id, waiter_on_watch, w);
            w->timer = evtimer_new(rd_http_base(req->h), waiter_on_timer, w);
            struct timeval tv = {(time_t)wait, 0};
            if (w->watch && w->timer && evtimer_add(w->timer, &tv) == 0) {
                evhtp_request_set_hook(req->r, evhtp_hook_on_request_fini,
                                       (evhtp_hook)waiter_on_fini, w);
                evhtp_request_pause(req->r);
                return;
            }
            if (w->watch)
                rd_engine_unwatch(req->eng, w->watch);
            if (w->timer)
                event_free(w->timer);
            free(w);
        }
    }
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_get(req->eng, id, &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

static void h_cancel(rd_req *req, const char *id)
{
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_cancel(req->eng, id, &out, &e);
    reply_engine(req, rc, 202, out, &e);
}

static void h_start(rd_req *req, const char *id)
{
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_start(req->eng, id, &out, &e);
    reply_engine(req, rc, 202, out, &e);
}

static void h_extend(rd_req *req, const char *id)
{
    json_t *body;
    if (rd_req_json_body(req, &body) != 0)
        return;
    json_t *n = json_object_get(body, "additional_limit");
    if (!json_is_integer(n) || json_integer_value(n) <= 0) {
        json_decref(body);
        rd_reply_error(req, 422, "invalid_additional_limit",
                       "'additional_limit' must be a positive integer");
        return;
    }
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_extend(req->eng, id, json_integer_value(n), &out, &e);
    json_decref(body);
    reply_engine(req, rc, 202, out, &e);
}

static void h_enrich(rd_req *req, const char *id)
{
    json_t *body;
    if (rd_req_json_body(req, &body) != 0)
        return;
    json_t *flow = json_object_get(body, "flow");
    if (!json_is_string(flow) || !valid_flow_name(json_string_value(flow))) {
        json_decref(body);
        rd_reply_error(req, 422, "unknown_flow", "'flow' must name a configured flow");
        return;
    }
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_enrich(req->eng, id, json_string_value(flow), json_object_get(body, "input"),
                              &out, &e);
    json_decref(body);
    reply_engine(req, rc, 202, out, &e);
}

static void h_results(rd_req *req, const char *id)
{
    rd_results_req q = {0};
    int64_t page = 1, size = 50, after = 0;
    if (query_int(req, "page", 1, 1, 100000000, &page) != 0 ||
        query_int(req, "page_size", 50, 1, 100, &size) != 0 ||
        query_int(req, "after", 0, 0, INT64_MAX / 2, &after) != 0)
        return;
    const char *st = rd_req_query(req, "status");
    if (st && strcmp(st, "ok") == 0)
        q.status = 1;
    else if (st && strcmp(st, "error") == 0)
        q.status = 2;
    else if (st && *st) {
        rd_reply_error(req, 400, "invalid_parameter", "'status' must be ok or error");
        return;
    }
    if (rd_req_query(req, "after") && rd_req_query(req, "page")) {
        rd_reply_error(req, 400, "invalid_parameter", "use either 'page' or 'after', not both");
        return;
    }
    q.has_after = rd_req_query(req, "after") != NULL;
    q.after = after;
    q.page = (int)page;
    q.page_size = (int)size;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_results(req->eng, id, &q, &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

static bool wants_sse(rd_req *req)
{
    const char *acc = rd_req_header(req, "Accept");
    return acc && strstr(acc, "text/event-stream") != NULL;
}

static void h_events_get(rd_req *req, const char *id)
{
    if (wants_sse(req)) {
        rd_stream_run(req, id);
        return;
    }
    int64_t after = 0, limit = 100;
    if (query_int(req, "after", 0, 0, INT64_MAX / 2, &after) != 0 ||
        query_int(req, "limit", 100, 1, 1000, &limit) != 0)
        return;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_events(req->eng, id, after, (int)limit, &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

static void h_events_post(rd_req *req, const char *id)
{
    size_t len = 0;
    char *body = rd_req_body(req, &len);
    if (!body)
        return;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_ext_post(req->eng, id, body, len, &out, &e);
    free(body);
    reply_engine(req, rc, 200, out, &e);
}

/* --- external worker control stream ------------------------------------------------------ */

typedef struct ctl_stream {
    rd_sse *sse;
    rd_engine *eng;
    void *handle;
    LIST_ENTRY(ctl_stream) link;
} ctl_stream;

LIST_HEAD(ctl_head, ctl_stream);
static struct ctl_head *ctl_list(rd_http *h);

static int ctl_send(void *arg, const char *line, size_t len)
{
    ctl_stream *cs = arg;
    if (!cs->sse)
        return -1;
    /* the type of the message doubles as the SSE event name */
    json_t *j = json_loadb(line, len, 0, NULL);
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
    int rc = rd_sse_frame(cs->sse, 0, type ? type : "message", line, len);
    json_decref(j);
    return rc;
}

static void ctl_close(void *arg)
{
    ctl_stream *cs = arg;
    cs->handle = NULL; /* the engine dropped the sink */
    if (cs->sse)
        rd_sse_close(cs->sse);
}

static void ctl_on_close(rd_sse *s, rd_sse_why why, void *arg)
{
    ctl_stream *cs = arg;
    cs->sse = NULL;
    if (cs->handle)
        rd_engine_ctl_detach(cs->eng, cs->handle);
    LIST_REMOVE(cs, link);
    free(cs);
}

static void h_control(rd_req *req, const char *id)
{
    ctl_stream *cs = calloc(1, sizeof *cs);
    if (!cs) {
        rd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    cs->eng = req->eng;
    /* Validate before taking the connection over, so errors are ordinary JSON replies. */
    json_t *run = NULL;
    rd_apierr e;
    if (rd_engine_get(req->eng, id, &run, &e) != 0) {
        free(cs);
        rd_reply_apierr(req, &e);
        return;
    }
    json_decref(run);
    rd_sse_opts o = {.max_buffer = (size_t)req->cfg->sse_max_buffer,
                     .heartbeat_ms = req->cfg->heartbeat_ms,
                     .retry_ms = 1000};
    rd_ctl_sink sink = {.send = ctl_send, .close = ctl_close, .arg = cs};
    /* Attach first so a refusal (not external, not active) is still a JSON reply. */
    if (rd_engine_ctl_attach(req->eng, id, &sink, &cs->handle, &e) != 0) {
        free(cs);
        rd_reply_apierr(req, &e);
        return;
    }
    LIST_INSERT_HEAD(ctl_list(req->h), cs, link);
    /* The replayed messages were sent before the stream existed: attach buffered nothing,
     * so re-attach now that the transport is up. */
    rd_engine_ctl_detach(req->eng, cs->handle);
    cs->handle = NULL;
    cs->sse = rd_sse_open(req->r, &o, ctl_on_close, cs);
    if (!cs->sse) {
        LIST_REMOVE(cs, link);
        free(cs);
        rd_reply_error(req, 500, "internal", "could not open the stream");
        return;
    }
    if (rd_engine_ctl_attach(req->eng, id, &sink, &cs->handle, &e) != 0)
        rd_sse_close(cs->sse);
}

/* --- routing ------------------------------------------------------------------------------ */

static void h_flows(rd_req *req)
{
    rd_reply_json(req, 200, rd_engine_flows(req->eng));
}

static void h_health(rd_req *req)
{
    rd_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(rd_req *req)
{
    bool ok = rd_engine_ready(req->eng);
    rd_reply_json(req, ok ? 200 : 503, json_pack("{s:s}", "status", ok ? "ready" : "not_ready"));
}

static void h_metrics(rd_req *req)
{
    char *parts[3] = {rd_engine_metrics_text(req->eng), rd_stream_metrics(req->h),
                      rd_outbox_metrics_text(rd_http_outbox(req->h))};
    char *all = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&all, &len);
    for (int i = 0; i < 3; i++) {
        if (f && parts[i])
            fputs(parts[i], f);
        free(parts[i]);
    }
    if (f && fclose(f) == 0 && all)
        rd_reply_raw(req, 200, "text/plain; version=0.0.4", all, len);
    else
        rd_reply_error(req, 500, "internal", "out of memory");
    free(all);
}

static void method_not_allowed(rd_req *req, const char *allow)
{
    evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Allow", allow, 0, 1));
    rd_reply_error(req, 405, "method_not_allowed", "use %s on this path", allow);
}

static void preflight(rd_req *req)
{
    evhtp_headers_t *out = req->r->headers_out;
    rd_req_cors(req, out);
    evhtp_headers_add_header(
        out, evhtp_header_new("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Access-Control-Allow-Headers",
                                                   "Authorization, Content-Type, x-api-key, "
                                                   "Idempotency-Key, Last-Event-ID",
                                                   0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Access-Control-Max-Age", "600", 0, 0));
    evhtp_send_reply(req->r, 204);
}

#define IS(m) (req->method == htp_method_##m)
#define SEG(i, s) (req->nseg > (i) && strcmp(req->segs[i], s) == 0)

/* /v1/runs/{id}[/sub] */
static void route_run(rd_req *req)
{
    const char *id = req->segs[2];
    const char *sub = req->nseg == 4 ? req->segs[3] : NULL;
    if (!sub) {
        if (IS(GET) || IS(HEAD)) {
            if (rd_req_allowed(req, RD_SCOPE_READ))
                h_get(req, id);
        } else if (IS(DELETE)) {
            if (rd_req_allowed(req, RD_SCOPE_WRITE))
                h_cancel(req, id);
        } else {
            method_not_allowed(req, "GET, DELETE");
        }
        return;
    }
    if (strcmp(sub, "cancel") == 0 || strcmp(sub, "start") == 0) {
        if (!IS(POST))
            return method_not_allowed(req, "POST");
        if (rd_req_allowed(req, RD_SCOPE_WRITE))
            (sub[0] == 'c' ? h_cancel : h_start)(req, id);
    } else if (strcmp(sub, "extend") == 0 || strcmp(sub, "enrich") == 0) {
        if (!IS(POST))
            return method_not_allowed(req, "POST");
        if (rd_req_allowed(req, RD_SCOPE_WRITE))
            (sub[1] == 'x' ? h_extend : h_enrich)(req, id);
    } else if (strcmp(sub, "results") == 0) {
        if (!(IS(GET) || IS(HEAD)))
            return method_not_allowed(req, "GET");
        if (rd_req_allowed(req, RD_SCOPE_READ))
            h_results(req, id);
    } else if (strcmp(sub, "events") == 0 || strcmp(sub, "sse") == 0) {
        if (IS(GET) || IS(HEAD)) {
            if (rd_stream_token_ok(req, id) || rd_req_allowed(req, RD_SCOPE_READ))
                h_events_get(req, id);
        } else if (IS(POST) && sub[0] == 'e') {
            if (rd_req_allowed(req, RD_SCOPE_WRITE))
                h_events_post(req, id);
        } else {
            method_not_allowed(req, sub[0] == 'e' ? "GET, POST" : "GET");
        }
    } else if (strcmp(sub, "control") == 0) {
        if (!IS(GET))
            return method_not_allowed(req, "GET");
        if (rd_req_allowed(req, RD_SCOPE_WRITE))
            h_control(req, id);
    } else if (strcmp(sub, "deliveries") == 0) {
        if (!(IS(GET) || IS(HEAD)))
            return method_not_allowed(req, "GET");
        if (rd_req_allowed(req, RD_SCOPE_READ))
            rd_api_deliveries(req, id);
    } else {
        rd_reply_error(req, 404, "not_found", "no such endpoint");
    }
}

/* /v1/runs/{id}/deliveries/{did}/redeliver */
static void route_redeliver(rd_req *req)
{
    if (!IS(POST))
        return method_not_allowed(req, "POST");
    if (rd_req_allowed(req, RD_SCOPE_WRITE))
        rd_api_redeliver(req, req->segs[2], req->segs[4]);
}

void rd_api_dispatch(rd_req *req)
{
    if (IS(OPTIONS))
        return preflight(req);
    if (req->nseg == 1 && SEG(0, "healthz"))
        return (IS(GET) || IS(HEAD)) ? h_health(req) : method_not_allowed(req, "GET");
    if (req->nseg == 1 && SEG(0, "readyz"))
        return (IS(GET) || IS(HEAD)) ? h_ready(req) : method_not_allowed(req, "GET");
    if (req->nseg == 1 && SEG(0, "metrics")) {
        if (!(IS(GET) || IS(HEAD)))
            return method_not_allowed(req, "GET");
        if (rd_req_allowed(req, RD_SCOPE_READ))
            h_metrics(req);
        return;
    }
    if (!SEG(0, "v1"))
        return (void)rd_reply_error(req, 404, "not_found", "no such endpoint");
    if (rd_api_human_route(req))
        return;
    if (req->nseg == 2 && SEG(1, "flows")) {
        if (!(IS(GET) || IS(HEAD)))
            return method_not_allowed(req, "GET");
        if (rd_req_allowed(req, RD_SCOPE_READ))
            h_flows(req);
        return;
    }
    if (req->nseg == 2 && SEG(1, "events")) {
        if (!(IS(GET) || IS(HEAD)))
            return method_not_allowed(req, "GET");
        if (rd_req_allowed(req, RD_SCOPE_READ))
            rd_stream_all(req);
        return;
    }
    if (req->nseg == 2 && SEG(1, "runs")) {
        if (IS(POST)) {
            if (rd_req_allowed(req, RD_SCOPE_WRITE))
                h_create(req);
        } else if (IS(GET) || IS(HEAD)) {
            if (rd_req_allowed(req, RD_SCOPE_READ))
                h_list(req);
        } else {
            method_not_allowed(req, "GET, POST");
        }
        return;
    }
    if ((req->nseg == 3 || req->nseg == 4) && SEG(1, "runs"))
        return route_run(req);
    if (req->nseg == 6 && SEG(1, "runs") && SEG(3, "deliveries") && SEG(5, "redeliver"))
        return route_redeliver(req);
    rd_reply_error(req, 404, "not_found", "no such endpoint");
}

/* --- per-server stream registry ----------------------------------------------------------- */

struct rd_api_state {
    struct ctl_head ctls;
};

static struct ctl_head *ctl_list(rd_http *h)
{
    rd_api_state **slot = rd_http_api_state(h);
    if (!*slot) {
        *slot = calloc(1, sizeof **slot);
        if (!*slot)
            abort(); /* a few bytes at the first control stream; nothing sane to do */
        LIST_INIT(&(*slot)->ctls);
    }
    return &(*slot)->ctls;
}

void rd_api_close_streams(rd_http *h)
{
    ctl_stream *cs;
    while ((cs = LIST_FIRST(ctl_list(h)))) {
        if (cs->sse)
            rd_sse_abort(cs->sse); /* ctl_on_close unlinks and frees */
        else {
            LIST_REMOVE(cs, link);
            free(cs);
        }
    }
    rd_stream_close_all(h);
}

void rd_api_free_state(rd_http *h)
{
    rd_api_state **slot = rd_http_api_state(h);
    free(*slot);
    *slot = NULL;
}
