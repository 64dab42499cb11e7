/*
 * api.c: the API as a whole: its per-server state, the registration of every endpoint into
 * the HTTP layer's route table, the shutdown and free hooks, and the operational endpoints
 * (health, readiness, metrics, the flow list). The endpoints themselves live by concern in
 * runs.c, control.c, streams.c, approvals.c and deliveries.c; the documents served about the
 * API in docs.c, and the HTML pages' helpers in pages.c.
 */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "base/metrics.h"
#include "base/util.h"

/* --- operational endpoints ---------------------------------------------------------------- */

static void h_flows(rd_req *req, void *arg)
{
    rd_api *a = arg;
    rd_reply_json(req, 200, rd_engine_flows(a->eng));
}

static void h_health(rd_req *req, void *arg)
{
    rd_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_ready(rd_req *req, void *arg)
{
    rd_api *a = arg;
    bool ok = rd_engine_ready(a->eng);
    rd_reply_json(req, ok ? 200 : 503, json_pack("{s:s}", "status", ok ? "ready" : "not_ready"));
}

static void h_metrics(rd_req *req, void *arg)
{
    rd_api *a = arg;
    size_t len = 0;
    char *text = a->metrics ? rd_metrics_expose(a->metrics, &len) : strdup("");
    if (text)
        rd_reply_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    else
        rd_reply_error(req, 500, "internal", "out of memory");
    free(text);
}

#define GET_HEAD (RD_METHOD_GET | RD_METHOD_HEAD)

static const rd_http_route_def ops_routes[] = {
    {GET_HEAD, "/healthz", RD_HTTP_PUBLIC, h_health},
    {GET_HEAD, "/readyz", RD_HTTP_PUBLIC, h_ready},
    {GET_HEAD, "/metrics", RD_SCOPE_READ, h_metrics},
    {GET_HEAD, "/v1/flows", RD_SCOPE_READ, h_flows},
};

/* --- lifecycle ---------------------------------------------------------------------------- */

/* Shutdown begins (and again when the server is freed): no stream outlives the server. */
static void api_on_close(void *arg)
{
    rd_api *a = arg;
    rd_control_close_all(a);
    rd_streams_close_all(a->streams);
}

/* The server is gone, with every connection: nothing can reach a handler any more. */
static void api_on_free(void *arg)
{
    rd_api *a = arg;
    rd_streams_free(a->streams);
    free(a);
}

size_t rd_api_subscribers(const rd_api *a)
{
    return a && a->streams ? rd_streams_count(a->streams) : 0;
}

int rd_api_register(rd_http *h, const rd_api_opts *o, rd_api **out, char *err, size_t errlen)
{
    rd_api *a = calloc(1, sizeof *a);
    if (!a || rd_http_on_free(h, api_on_free, a) != 0) {
        free(a);
        return snprintf(err, errlen, "out of memory"), RD_ERR;
    }
    /* From here on h owns a: failures just return. */
    if (out)
        *out = a;
    a->base = o->base;
    a->eng = o->eng;
    a->outbox = o->outbox;
    a->metrics = o->metrics;
    LIST_INIT(&a->ctls);
    TAILQ_INIT(&a->held_posts);
    if (rd_http_on_close(h, api_on_close, a) != 0)
        return snprintf(err, errlen, "out of memory"), RD_ERR;
    a->streams = rd_streams_new(o->base, o->eng, o->cfg, err, errlen);
    if (!a->streams)
        return RD_ERR;
    if (o->metrics && rd_streams_set_metrics(a->streams, o->metrics) != 0)
        return snprintf(err, errlen, "out of memory"), RD_ERR;
    if (o->metrics) {
        a->m_waiting = rd_metrics_gauge(
            o->metrics, "runsd_http_requests_waiting",
            "HTTP requests parked until a commit completes: a handler waiting for the commit in "
            "flight, or the reply to a change waiting for the commit that carries it.",
            NULL);
        if (!a->m_waiting)
            return snprintf(err, errlen, "out of memory"), RD_ERR;
        rd_metric_set(a->m_waiting, NULL, 0);
    }
    if (rd_http_route_all(h, ops_routes, sizeof ops_routes / sizeof ops_routes[0], a) != 0 ||
        rd_runs_register(h, a) != 0 || rd_control_register(h, a) != 0 ||
        rd_streams_register(a->streams, h) != 0 || rd_approvals_register(h, a) != 0 ||
        rd_deliveries_register(h, a) != 0 || rd_docs_register(h) != 0 || rd_web_register(h) != 0)
        return snprintf(err, errlen, "cannot build the route table"), RD_ERR;
    return 0;
}
