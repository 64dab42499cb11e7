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
    int n_waiting;                      /* requests parked until a commit (commit.c) */
    struct rd_metric *m_waiting;        /* their gauge; NULL without a registry */
} rd_api;

/** Who a JSON reply is for (SPEC section 3, "Who sees capability links"): a write or admin
 * scope (or no keys configured: everyone is admin on loopback) sees every link, anyone else
 * (a read key) none. Streams decide theirs with rd_streams_access (stream tokens). */
static inline rd_audience rd_api_audience(const rd_req *req)
{
    return req->scope >= RD_SCOPE_WRITE ? RD_AUD_FULL : RD_AUD_READ;
}

/** What runs once the commit carrying every change made so far has completed: rc 0 when it
 * succeeded, else the store failed (RD_EIO) or the engine is gone (RD_ERR). It answers req. */
typedef void (*rd_api_then_fn)(rd_req *req, void *arg, int rc);
/** Parks req and calls then(parked, arg, rc) after that commit (commit.c); the request is
 * unparked after. If the client leaves first, drop(arg) is called instead (drop may be
 * NULL). Out of memory: req is answered 500 now and arg dropped. True when req was parked
 * (it is no longer the caller's), false when it was answered now. A request parked already
 * is handed on. */
bool rd_api_after_commit(rd_api *a, rd_req *req, rd_api_then_fn then, void (*drop)(void *arg),
                         void *arg);
/** Runs handler(req, a) when no commit is in flight: now, or parked until the one in flight
 * completes (commit.c), so its store calls never wait for one: every handler that reads or
 * writes the store goes through here. It answers the request, or hands it on (a change's
 * reply, rd_api_reply_durable). */
void rd_api_run_idle(rd_api *a, rd_req *req, rd_http_handler_fn handler);
/** Answers an engine operation that changes state: an error (rc != 0: e) now; a success
 * (out, stolen) with status once its commit succeeded, or 503 store_unavailable if it failed
 * (the journal still holds the change and stores it later, as when a flush failed). True when
 * req was parked for that, false when it was answered now. */
bool rd_api_reply_durable(rd_api *a, rd_req *req, int rc, int status, json_t *out,
                          const rd_apierr *e);

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
