/*
 * http_int.h: what http.c (the server: listeners, dispatch), http_guard.c (each connection:
 * the request framing in front of libevhtp, deadlines, the connection bound) and req.c (one
 * request: parsing, access, replies) share inside the HTTP layer. Nothing above http/
 * includes it.
 */
#ifndef RUNSD_HTTP_INT_H
#define RUNSD_HTTP_INT_H

#include <event2/bufferevent.h>
#include <sys/queue.h>

#include "http/http.h"

/* A registered handler: the router's entries point at these. */
typedef struct route_rec {
    char *pattern; /* owned copy: the route of its requests in the log and in /metrics */
    unsigned methods;
    rd_http_handler_fn fn;
    void *arg;
    int scope;
    SLIST_ENTRY(route_rec) link;
} route_rec;

typedef struct http_hook {
    rd_http_hook_fn fn;
    void *arg;
    bool on_free; /* else on close */
} http_hook;

struct rd_http {
    struct event_base *base;
    const rd_config *cfg;
    evhtp_t *htp[RD_MAX_LISTEN]; /* one evhtp per listener: evhtp binds one socket each */
    int n_htp;
    int port;
    uint64_t req_counter;
    struct event *accept_retry;
    rd_router *router;
    SLIST_HEAD(, route_rec) routes; /* owned; the router borrows them */
    http_hook *hooks;               /* in registration order */
    int n_hooks;
    LIST_HEAD(, conn_state) conns; /* live evhtp connections (not taken-over streams) */
    int n_conns;                   /* their number, bounded by cfg->max_connections */
    bool at_bound;                 /* accepting is paused because n_conns reached the bound */
    bool closing;                  /* rd_http_close ran: accepting stays off */
    char activated_url[144];       /* "http://ADDR:PORT" of systemd's first TCP socket, or "" */
    bool activated_open;           /* a systemd socket is not on loopback: keys are required */
    struct rd_metric *m_requests;  /* by route, method and code; NULL without a registry */
    struct rd_metric *m_seconds;   /* request duration by route */
};

/* Where a connection is in its current request (see http_guard.c). */
enum { RD_CONN_HEAD, RD_CONN_BODY, RD_CONN_CHUNKED, RD_CONN_DONE };

/* Per-connection state: the framing of the current request in front of evhtp, its deadline
 * and the body limit. */
typedef struct conn_state {
    rd_http *h;
    LIST_ENTRY(conn_state) link; /* in h->conns: freed with the server */
    evhtp_connection_t *conn;
    uint64_t body_bytes;    /* body bytes evhtp has read of this request */
    int64_t req_start;      /* monotonic ms when the current request's head was complete */
    bool too_big;           /* over max_body: counted and dropped, the handler answers 413 */
    int phase;              /* RD_CONN_* */
    uint64_t body_left;     /* RD_CONN_BODY: body bytes evhtp has still to get */
    struct evbuffer *stash; /* bytes after the current request (pipelining), in order */
    struct evbuffer *chead; /* RD_CONN_CHUNKED: the head, without Transfer-Encoding */
    struct evbuffer *cbody; /* RD_CONN_CHUNKED: the body decoded so far */
    int cstate;             /* RD_CONN_CHUNKED: where in the chunked framing */
    uint64_t cleft;         /* bytes left of the current chunk */
    size_t ctrailer;        /* trailer bytes so far */
    struct event *deadline; /* head_timeout or body_timeout of the current request */
    int busy;               /* > 0 while our callback is on the stack */
    bool dead;              /* evhtp freed the connection meanwhile: free cs after */
    bool eof_pending;       /* the client half-closed while a request was being answered */
    bufferevent_data_cb orig_read, orig_write; /* a bufferevent has one callback argument, */
    bufferevent_event_cb orig_event;           /* so all three are wrapped to keep evhtp's */
    void *orig_arg;
    /* The request being served, for /metrics: counted once, when it is answered. */
    bool req_open;
    htp_method req_method;
    const char *req_route; /* its route pattern (a route_rec's), NULL before one matched */
    double req_t0;         /* rd_metrics_clock() when it was dispatched */
} conn_state;

/** Writes a new request id ("req_...") into out. */
void rd_http_request_id(rd_http *h, char *out, size_t outlen);
/** Writes the client's X-Request-Id into out (RD_REQUEST_ID_MAX bytes) when it is 1..128
 * printable ASCII characters without blanks, else a new id. */
void rd_http_pick_request_id(rd_http *h, const char *incoming, char *out);
/** evhtp's post-accept callback (arg: the rd_http): sets up a connection's guard. */
evhtp_res rd_http_guard_accept(evhtp_connection_t *c, void *arg);
/** Lets the listeners accept, unless the server is closing or at its connection bound. */
void rd_http_listeners_resume(rd_http *h);
/** Stops the listeners accepting. */
void rd_http_listeners_pause(rd_http *h);

/** The guard's state of connection c, or NULL (a connection taken over). */
conn_state *rd_http_conn_state(evhtp_connection_t *c);
/** Counts one answered request: route is a route pattern (NULL: none matched), t0 when it
 * was dispatched (rd_metrics_clock). */
void rd_http_count(rd_http *h, const char *route, htp_method method, int status, double t0);
/** Counts req's answer with status, once (the request's route and start are the connection's). */
void rd_req_count(rd_req *req, int status);

/** Decodes and splits the request path into req->path, req->pcopy and req->segs.
 * 0, or -1 when it is malformed (the caller answers 400). */
int rd_req_parse_path(rd_req *req, const char *full);
/** Decodes the raw query string into req's pairs. 0, or -1 when malformed. */
int rd_req_parse_query(rd_req *req, const char *raw);
/** The scope req's credentials grant (0 when none), per req->cfg's keys. */
int rd_req_grant_scope(const rd_req *req);
/** Answers an OPTIONS request: the CORS preflight. */
void rd_req_preflight(rd_req *req);
/** Frees what parsing req allocated (req itself lives on the stack). */
void rd_req_dispose(rd_req *req);

#endif
