/*
 * runs.c: the run endpoints of SPEC section 3: create, list, get (held with ?wait=), the
 * actions (cancel, start, extend, enrich), results and the event log, whose GET becomes a
 * live stream (streams.c) when the client asks for text/event-stream. Validation is strict
 * and every refusal is a JSON error with a stable code; the engine does the work.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "base/util.h"
#include "webhook/outbox.h"

/* --- small validators --------------------------------------------------------------------- */

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

static void create_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
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
    int rc = rd_engine_create(a->eng, &c, &out, &replayed, &e);
    json_decref(body);
    if (rc == 0 && replayed)
        evhtp_headers_add_header(req->r->headers_out,
                                 evhtp_header_new("Idempotent-Replayed", "true", 0, 0));
    if (rc == 0) {
        char loc[200];
        snprintf(loc, sizeof loc, "/v1/runs/%s", json_string_value(json_object_get(out, "id")));
        evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Location", loc, 0, 1));
    }
    rd_api_reply_durable(a, req, rc, 201, out, &e);
}

static void list_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    int64_t page = 1, size = 10;
    if (rd_req_query_int(req, "page", 1, 1, 1000000, &page) != 0 ||
        rd_req_query_int(req, "page_size", 10, 1, 100, &size) != 0)
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
    int rc = rd_engine_list(a->eng, &f, (int)page, (int)size, rd_api_audience(req), &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

static void h_list(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, list_now);
}

/* The run's wire form (from rd_api_run_idle: a run no longer in memory is read from
 * the store). */
static void get_reply(rd_req *req, void *arg)
{
    rd_api *a = arg;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_get(a->eng, rd_req_param(req, "id"), rd_api_audience(req), &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

/* ?wait=N: the reply is held until the run settles or N seconds pass. */
typedef struct waiter {
    rd_api *a;
    rd_req *req; /* parked */
    void *watch;
    struct event *timer;
} waiter;

static void waiter_free(waiter *w)
{
    if (w->watch)
        rd_engine_unwatch(w->a->eng, w->watch);
    if (w->timer)
        event_free(w->timer);
    free(w);
}

static void waiter_answer(waiter *w)
{
    rd_api *a = w->a;
    rd_req *req = w->req;
    waiter_free(w);
    rd_api_run_idle(a, req, get_reply); /* hands req on */
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

static void waiter_gone(void *arg)
{
    waiter_free(arg);
}

/* Parks req until the run settles or wait seconds pass. False when it could not (answer now). */
static bool wait_settled(rd_api *a, rd_req *req, const char *id, int64_t wait)
{
    waiter *w = calloc(1, sizeof *w);
    if (!w)
        return false;
    w->a = a;
    w->watch = rd_engine_watch(a->eng, id, waiter_on_watch, w);
    w->timer = evtimer_new(a->base, waiter_on_timer, w);
    struct timeval tv = {(time_t)wait, 0};
    if (!w->watch || !w->timer || evtimer_add(w->timer, &tv) != 0 ||
        !(w->req = rd_req_park(req, waiter_gone, w))) {
        waiter_free(w);
        return false;
    }
    return true;
}

static void h_get(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    int64_t wait = 0;
    if (rd_req_query_int(req, "wait", 0, 0, req->cfg->max_wait_ms / 1000, &wait) != 0)
        return;
    if (wait > 0 && !rd_engine_settled(a->eng, id) && wait_settled(a, req, id, wait))
        return;
    rd_api_run_idle(a, req, get_reply);
}

static void cancel_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_cancel(a->eng, id, &out, &e);
    rd_api_reply_durable(a, req, rc, 202, out, &e);
}

static void start_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_start(a->eng, id, &out, &e);
    rd_api_reply_durable(a, req, rc, 202, out, &e);
}

static void extend_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
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
    int rc = rd_engine_extend(a->eng, id, json_integer_value(n), &out, &e);
    json_decref(body);
    rd_api_reply_durable(a, req, rc, 202, out, &e);
}

static void enrich_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
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
    int rc = rd_engine_enrich(a->eng, id, json_string_value(flow), json_object_get(body, "input"),
                              &out, &e);
    json_decref(body);
    rd_api_reply_durable(a, req, rc, 202, out, &e);
}

static void results_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    rd_results_req q = {0};
    int64_t page = 1, size = 50, after = 0;
    if (rd_req_query_int(req, "page", 1, 1, 100000000, &page) != 0 ||
        rd_req_query_int(req, "page_size", 50, 1, 100, &size) != 0 ||
        rd_req_query_int(req, "after", 0, 0, INT64_MAX / 2, &after) != 0)
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
    int rc = rd_engine_results(a->eng, id, &q, &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

static void h_results(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, results_now);
}

static bool wants_sse(rd_req *req)
{
    const char *acc = rd_req_header(req, "Accept");
    return acc && strstr(acc, "text/event-stream") != NULL;
}

/* The JSON event log, from rd_api_run_idle (access was checked before; checking it
 * again only computes the audience). */
static void log_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    rd_audience aud;
    int64_t after = 0, limit = 100;
    if (!rd_streams_access(a->streams, req, id, &aud) ||
        rd_req_query_int(req, "after", 0, 0, INT64_MAX / 2, &after) != 0 ||
        rd_req_query_int(req, "limit", 100, 1, 1000, &limit) != 0)
        return;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_events(a->eng, id, after, (int)limit, aud, &out, &e);
    reply_engine(req, rc, 200, out, &e);
}

/* Registered public: a stream token (?token=, for browsers' EventSource) opens the run's
 * live stream without an API key; everything else needs the read scope. */
static void h_events_get(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    rd_audience aud;
    if (!rd_streams_access(a->streams, req, id, &aud))
        return;
    if (wants_sse(req)) {
        rd_streams_run(a->streams, req, id, aud);
        return;
    }
    rd_api_run_idle(a, req, log_now);
}

/* An external worker's post waits while the event streams apply backpressure (subscribers that
 * keep up are behind) or the store's journal is past its bound (the store fails): its events
 * are applied, and the post answered, once that is over, so a worker posting one batch at a
 * time goes no faster than its readers and its store. */
struct held_post {
    TAILQ_ENTRY(held_post) link;
    rd_api *a;
    rd_req *req; /* parked; its body stays in the request */
};

/* Applies the post's lines (from rd_api_run_idle); its reply goes out once they are
 * committed. */
static void post_now(rd_req *req, void *arg)
{
    rd_api *a = arg;
    size_t len = 0;
    char *body = rd_req_body(req, &len);
    if (!body)
        return;
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_ext_post(a->eng, rd_req_param(req, "id"), body, len, &out, &e);
    free(body);
    rd_api_reply_durable(a, req, rc, 200, out, &e);
}

static void held_gone(void *arg)
{
    struct held_post *h = arg;
    TAILQ_REMOVE(&h->a->held_posts, h, link);
    free(h);
}

static bool pressure(rd_api *a)
{
    return rd_streams_pressure(a->streams) || rd_engine_store_pressure(a->eng);
}

/* The pressure is lifted: the held posts go, in order, until it comes back. */
static void runs_on_release(void *arg)
{
    rd_api *a = arg;
    struct held_post *h;
    while ((h = TAILQ_FIRST(&a->held_posts)) && !pressure(a)) {
        TAILQ_REMOVE(&a->held_posts, h, link);
        rd_req *req = h->req;
        free(h);
        rd_api_run_idle(a, req, post_now); /* hands req on */
    }
}

static bool hold_post(rd_api *a, rd_req *req)
{
    struct held_post *h = calloc(1, sizeof *h);
    if (!h)
        return false;
    h->a = a;
    h->req = rd_req_park(req, held_gone, h);
    if (!h->req) {
        free(h);
        return false;
    }
    TAILQ_INSERT_TAIL(&a->held_posts, h, link);
    return true;
}

static void h_events_post(rd_req *req, void *arg)
{
    rd_api *a = arg;
    if ((pressure(a) || !TAILQ_EMPTY(&a->held_posts)) && hold_post(a, req))
        return;
    rd_api_run_idle(a, req, post_now);
}

/* Every handler that uses the store runs once no commit is in flight (commit.c). */
static void h_create(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, create_now);
}

static void h_cancel(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, cancel_now);
}

static void h_start(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, start_now);
}

static void h_extend(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, extend_now);
}

static void h_enrich(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, enrich_now);
}

/* --- routes ------------------------------------------------------------------------------- */

#define GET_HEAD (RD_METHOD_GET | RD_METHOD_HEAD)

static const rd_http_route_def runs_routes[] = {
    {GET_HEAD, "/v1/runs", RD_SCOPE_READ, h_list},
    {RD_METHOD_POST, "/v1/runs", RD_SCOPE_WRITE, h_create},
    {GET_HEAD, "/v1/runs/{id}", RD_SCOPE_READ, h_get},
    {RD_METHOD_DELETE, "/v1/runs/{id}", RD_SCOPE_WRITE, h_cancel},
    {RD_METHOD_POST, "/v1/runs/{id}/cancel", RD_SCOPE_WRITE, h_cancel},
    {RD_METHOD_POST, "/v1/runs/{id}/start", RD_SCOPE_WRITE, h_start},
    {RD_METHOD_POST, "/v1/runs/{id}/extend", RD_SCOPE_WRITE, h_extend},
    {RD_METHOD_POST, "/v1/runs/{id}/enrich", RD_SCOPE_WRITE, h_enrich},
    {GET_HEAD, "/v1/runs/{id}/results", RD_SCOPE_READ, h_results},
    {GET_HEAD, "/v1/runs/{id}/events", RD_HTTP_PUBLIC, h_events_get},
    {RD_METHOD_POST, "/v1/runs/{id}/events", RD_SCOPE_WRITE, h_events_post},
    {GET_HEAD, "/v1/runs/{id}/sse", RD_HTTP_PUBLIC, h_events_get},
};

int rd_runs_register(rd_http *h, rd_api *a)
{
    rd_streams_on_release(a->streams, runs_on_release, a);
    rd_engine_on_release(a->eng, runs_on_release, a);
    return rd_http_route_all(h, runs_routes, sizeof runs_routes / sizeof runs_routes[0], a);
}
