/*
 * api_int.h: what the files of the API share: the state every handler gets as its
 * argument, and the registration function of each file, which api.c calls (and nothing
 * else calls back into api.c).
 */
#ifndef RUNSD_API_INT_H
#define RUNSD_API_INT_H

#include <sys/queue.h>

#include "api/api.h"
#include "api/streams.h"

struct ctl_stream;

/* The per-server state of the API, the argument of every handler. Owned by the server's
 * free hook (api.c). */
typedef struct rd_api {
    struct event_base *base;
    rd_engine *eng;
    struct rd_outbox *outbox;           /* borrowed; may be NULL */
    rd_streams *streams;                /* the event streams, owned */
    struct rd_metrics *metrics;         /* borrowed; may be NULL */
    LIST_HEAD(, ctl_stream) ctls;       /* open worker control streams (control.c) */
    TAILQ_HEAD(, held_post) held_posts; /* external workers' posts held by backpressure */
} rd_api;

/** Who a JSON reply is for (SPEC section 3, "Who sees capability links"): a write or admin
 * scope (or no keys configured: everyone is admin on loopback) sees every link, anyone else
 * (a read key) none. Streams decide theirs with rd_streams_access (stream tokens). */
static inline rd_audience rd_api_audience(const rd_req *req)
{
    return req->scope >= RD_SCOPE_WRITE ? RD_AUD_FULL : RD_AUD_READ;
}

/** The run endpoints: create, list, get (with ?wait), cancel, start, extend, enrich,
 * results and the JSON event log (runs.c). */
int rd_runs_register(rd_http *h, rd_api *a);
/** GET /v1/runs/{id}/control: the external worker control stream (control.c). */
int rd_control_register(rd_http *h, rd_api *a);
/** Closes every open control stream (shutdown). */
void rd_control_close_all(rd_api *a);
/** Approval links, the OAuth callback, approve/deny/auth by id and the demo provider page
 * (approvals.c). */
int rd_approvals_register(rd_http *h, rd_api *a);
/** The webhook deliveries endpoints (deliveries.c). */
int rd_deliveries_register(rd_http *h, rd_api *a);
/** GET /v1/openapi.yaml, /v1/openapi.json and /v1/client.js: the compiled-in documents
 * (docs.c). */
int rd_docs_register(rd_http *h);
/** Whether an If-None-Match value names etag (or is "*"). */
bool rd_etag_matches(const char *inm, const char *etag);
/** Whether an Accept-Encoding value accepts gzip (docs.c). */
bool rd_accepts_gzip(const char *ae);
/** Routes the dashboard: GET / and GET /ui/{file} (web.c). 0 or RD_ERR. */
int rd_web_register(rd_http *h);

/** True when the client asked for HTML (a browser tab or a form): Accept names text/html
 * (pages.c). */
bool rd_api_wants_html(const rd_req *req);
/** s HTML-escaped (& < > " '), malloc'd (the caller frees), or NULL when out of memory. */
char *rd_html_escape(const char *s);
/** Replies with a small HTML page: title (escaped here) and body_html (already HTML, its
 * text escaped by the caller), no script (a Content-Security-Policy forbids it), not to be
 * framed. */
void rd_api_page(rd_req *req, int status, const char *title, const char *body_html);

#endif
