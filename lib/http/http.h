/*
 * http.h: the HTTP protocol layer of the daemon on libevhtp: listeners, the request head
 * guard and limits, access control (API keys and scopes), CORS, request parsing, JSON
 * replies and errors, and a route table. It names no endpoint: the layers above register
 * handlers for path patterns (rd_http_route) and lifecycle hooks (rd_http_on_close,
 * rd_http_on_free), the way h2o's handlers are registered on a host. Its job is that every
 * request gets a well-formed answer and nothing a client sends can hurt the loop.
 */
#ifndef RUNSD_HTTP_H
#define RUNSD_HTTP_H

#include <evhtp/evhtp.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/apierr.h"
#include "config/config.h"
#include "http/router.h"

typedef struct rd_http rd_http;

/* A request id: an incoming X-Request-Id of 1..128 printable ASCII characters (no blank), or
 * one made here ("req_..."); echoed as X-Request-Id and logged with the request. */
#define RD_REQUEST_ID_MAX 129

/** One request being handled. Borrowed by handlers for the duration of the call. */
typedef struct rd_req {
    evhtp_request_t *r;
    const rd_config *cfg; /* the server's current config */
    htp_method method;
    char *path;                        /* decoded path, owned */
    char *pcopy;                       /* storage of segs, owned */
    char *segs[RD_ROUTE_MAX_SEGS + 1]; /* path segments (into pcopy), NULL-terminated */
    int nseg;
    rd_route_hit route; /* the matched route: its {name} captures point into segs */
    char *qbuf;         /* decoded query storage, owned */
    const char *qk[32], *qv[32];
    int nq;
    int scope; /* granted scope (RD_SCOPE_*), or RD_SCOPE_ADMIN when no keys exist */
    bool body_too_big;
    char request_id[RD_REQUEST_ID_MAX];
    const char *route_pattern; /* the matched route's pattern ("/v1/runs/{id}"), NULL when none */
    int64_t start_ms;          /* monotonic: when its head had arrived */
    bool parked;               /* rd_req_park made this one */
} rd_req;

/** A handler: answers req exactly once (now, or later after evhtp_request_pause).
 * arg is what was given to rd_http_route. */
typedef void (*rd_http_handler_fn)(rd_req *req, void *arg);
/** A lifecycle hook (see rd_http_on_close, rd_http_on_free). */
typedef void (*rd_http_hook_fn)(void *arg);

/** The scope of a route whose handler checks access itself (or that is public). */
#define RD_HTTP_PUBLIC 0

/** A server on base with no listener and no route yet. cfg is borrowed (see
 * rd_http_set_config). NULL with err on failure. Free with rd_http_free. */
rd_http *rd_http_new(struct event_base *base, const rd_config *cfg, char *err, size_t errlen);

/** Routes `methods` (RD_METHOD_* bits; HEAD is not implied by GET) on `pattern`, a path
 * of literal segments and {name} captures such as "/v1/runs/{id}/cancel", to fn(req, arg).
 * Before fn runs, the request's path and query are parsed and checked, and its granted
 * scope must be at least `scope` (RD_SCOPE_*; RD_HTTP_PUBLIC checks nothing), else 401 or
 * 403 is answered. A path no pattern matches is answered 404; a matched path without the
 * method 405 with Allow; OPTIONS is the CORS preflight on every path. A literal segment
 * wins over a capture (see router.h). arg is borrowed. 0, or RD_ERR on a malformed or
 * conflicting pattern or out of memory. */
int rd_http_route(rd_http *h, unsigned methods, const char *pattern, int scope,
                  rd_http_handler_fn fn, void *arg);

/** One entry of a route list (see rd_http_route_all). */
typedef struct rd_http_route_def {
    unsigned methods;
    const char *pattern;
    int scope;
    rd_http_handler_fn fn;
} rd_http_route_def;

/** rd_http_route for each of the n entries of defs, all with arg. 0, or RD_ERR at the
 * first that fails (the entries before it stay routed). */
int rd_http_route_all(rd_http *h, const rd_http_route_def *defs, size_t n, void *arg);

/** Called for each route of the table (rd_http_each_route): its RD_METHOD_* bits, pattern
 * (borrowed from h) and scope. */
typedef void (*rd_http_route_fn)(void *arg, unsigned methods, const char *pattern, int scope);
/** Walks every route registered on h, newest first: what the table answers, for a test that
 * compares it with the API's description (docs/openapi.yaml). */
void rd_http_each_route(const rd_http *h, rd_http_route_fn fn, void *arg);

/** Adds a hook run by rd_http_close and again at the start of rd_http_free (to close
 * streams the handlers took over), in registration order. arg is borrowed. 0 or RD_ERR. */
int rd_http_on_close(rd_http *h, rd_http_hook_fn fn, void *arg);
/** Adds a hook run at the end of rd_http_free, after every connection is gone, in reverse
 * registration order: where the handlers' owner frees what it registered. 0 or RD_ERR. */
int rd_http_on_free(rd_http *h, rd_http_hook_fn fn, void *arg);

/** Binds the configured listeners (or takes systemd's sockets). 0 or RD_ERR with err. */
int rd_http_listen(rd_http *h, char *err, size_t errlen);
/** Stops accepting and runs the close hooks. */
void rd_http_close(rd_http *h);
/** Runs the close hooks, drops every connection and listener, then runs the free hooks.
 * Safe on NULL and on a half-built server. */
void rd_http_free(rd_http *h);
int rd_http_port(const rd_http *h);
/** Under socket activation, "http://ADDR:PORT" of systemd's first TCP socket (a wildcard
 * address as loopback), the base of links when no public_url is configured; else NULL.
 * Borrowed from h. */
const char *rd_http_activated_url(const rd_http *h);
/** Whether a socket systemd passed is reachable beyond loopback, so a config without API
 * keys must be refused (also on reload). */
bool rd_http_activated_open(const rd_http *h);
struct rd_metrics;
/** Registers the HTTP families in reg (borrowed; it must outlive h): requests answered by
 * route pattern, method and code, and their duration by route. 0 or RD_ERR. */
int rd_http_set_metrics(rd_http *h, struct rd_metrics *reg);
/** The config later requests see (borrowed; the caller keeps it alive). */
void rd_http_set_config(rd_http *h, const rd_config *cfg);

/* For handlers. */
/** The value of the route's {name} capture, or NULL. Borrowed from req. */
const char *rd_req_param(const rd_req *req, const char *name);
/** Decoded query value or NULL. Borrowed from req. */
const char *rd_req_query(const rd_req *req, const char *key);
/** An optional integer query parameter within [lo, hi]: 0 with *out (def when absent),
 * or -1 after replying 400 invalid_parameter. */
int rd_req_query_int(rd_req *req, const char *key, int64_t def, int64_t lo, int64_t hi,
                     int64_t *out);
/** Parses an application/x-www-form-urlencoded body in place. Returns the number of pairs or
 * -1 (malformed, %00, more than max). */
int rd_form_parse(char *body, const char **keys, const char **vals, int max);
/** A request header or NULL. */
const char *rd_req_header(const rd_req *req, const char *key);
/** True when req's scope is at least need; otherwise replies 401/403 and returns false. */
bool rd_req_allowed(rd_req *req, int need);
/** Parses the body as one JSON object. 0, or -1 after replying 400/413/415. *out owned. */
int rd_req_json_body(rd_req *req, json_t **out);
/** The raw body (NUL-terminated copy, caller frees) or NULL after replying 413. */
char *rd_req_body(rd_req *req, size_t *len);
/** Replies with a JSON body (steals the reference). */
void rd_reply_json(rd_req *req, int status, json_t *body);
/** Replies {"error":{code,message,request_id}}. Returns -1. */
int rd_reply_error(rd_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rd_reply_apierr(rd_req *req, const rd_apierr *e);
/** Replies with a raw body and content type; Cache-Control: no-store unless the handler
 * added a Cache-Control header before. */
void rd_reply_raw(rd_req *req, int status, const char *ctype, const char *body, size_t len);
/** Writes the request's log line (method, route pattern, status, body bytes, duration,
 * request id; never the path or the query, which may hold tokens). Every reply of this
 * layer writes it; a handler that answers otherwise (an event stream taking the connection
 * over) calls it once, with what it sent. Uses only req's own fields. */
void rd_req_log(const rd_req *req, int status, size_t bytes);
/** Adds CORS headers for an allowed Origin to a response. */
void rd_req_cors(rd_req *req, evhtp_headers_t *out);

/** Parks req, for an answer that comes later from another event: libevhtp stops reading the
 * connection, and req moves (with its path, query and captures) into the request returned,
 * which stays valid until rd_req_unpark. If the client goes away first, gone(arg) is called
 * once and the parked request is freed: its owner must forget it. NULL when out of memory
 * (req is untouched: answer it now). A request parked already is handed on: it is returned,
 * and gone(arg) replaces its owner's hook. */
rd_req *rd_req_park(rd_req *req, rd_http_hook_fn gone, void *arg);
/** Ends a parked request once a reply was sent: libevhtp carries on with the connection and
 * the parked request is freed. */
void rd_req_unpark(rd_req *req);
/** The arg given to the last rd_req_park of a parked request: who owns it now. */
void *rd_req_parked_by(const rd_req *req);

#endif
