/*
 * http.c: the server side of the HTTP layer: listeners, the request head guard, request
 * limits, the route table and its dispatch, and the lifecycle hooks of the layers above.
 *
 * libevhtp resets the connection when a body exceeds its max size, so we never set that
 * limit: a per-connection on_read hook counts body bytes and discards them past max_body,
 * and the handler answers 413 with a JSON error. Paths are matched segment by segment by
 * router.c (evhtp matches prefixes); a handler runs only once its request is parsed and
 * its access checked.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "base/util.h"
#include "http/http_int.h"

/* A registered handler: the router's entries point at these. */
typedef struct route_rec {
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
};

/* Per-connection state for the body limit: evhtp handles one request at a time per
 * connection, so the counter is reset at each request's headers. */
typedef struct conn_state {
    rd_http *h;
    LIST_ENTRY(conn_state) link; /* in h->conns: freed with the server */
    evhtp_connection_t *conn;
    uint64_t body_bytes;
    bool too_big;
    /* The head guard: libevhtp 1.2.18 corrupts a request line that reaches its parser in two
     * pieces (upstream issue #131: one byte is duplicated), and resets, without any answer,
     * heads longer than its internal 8 KiB buffer. So evhtp's read callback is wrapped: while
     * a request head is arriving, bytes are held until the request line is complete, and an
     * over-long line or head is answered 414 / 431 here. */
    bool in_head;
    bufferevent_data_cb orig_read, orig_write; /* a bufferevent has one callback argument, */
    bufferevent_event_cb orig_event;           /* so all three are wrapped to keep evhtp's */
    void *orig_arg;
} conn_state;

/* The longest request line the guard lets through: evhtp's parser must hold it whole. */
#define HEAD_LINE_MAX 8000

static size_t line_limit(const conn_state *cs)
{
    size_t lim = (size_t)cs->h->cfg->max_uri_bytes + 64; /* method, version, spaces */
    return lim < HEAD_LINE_MAX ? lim : HEAD_LINE_MAX;
}

/* Answers and drops a connection whose head evhtp must not see. The answer is small and
 * written straight to the socket; the connection is freed right after. */
static void new_request_id(rd_http *h, char *out, size_t outlen)
{
    snprintf(out, outlen, "req_%llx%04llx", (unsigned long long)rd_now_ms(),
             (unsigned long long)(++h->req_counter & 0xffff));
}

static void http_refuse_head(conn_state *cs, int status, const char *code, const char *msg)
{
    char body[320], head[640], rid[24];
    new_request_id(cs->h, rid, sizeof rid);
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}}\n",
                      code, msg, rid);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "X-Request-Id: %s\r\nConnection: close\r\n\r\n%s",
                      status, status == 414 ? "URI Too Long" : "Request Header Fields Too Large",
                      bl, rid, body);
    evutil_socket_t fd = bufferevent_getfd(evhtp_connection_get_bev(cs->conn));
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        rd_log_debug("refusing a request head: %s", strerror(errno));
    evhtp_connection_free(cs->conn); /* runs the fini hook, which frees cs */
}

/* Checks a complete head (up to its blank line): the request line within the URI bound and
 * every header line within what evhtp's parser can hold. 0, 414 or 431. */
static int head_check(conn_state *cs, struct evbuffer *in, size_t head_len)
{
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)head_len);
    if (!p)
        return 431;
    const char *end = p + head_len, *nl;
    for (bool first = true; p < end; first = false, p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            nl = end;
        if ((size_t)(nl - p) > (first ? line_limit(cs) : HEAD_LINE_MAX))
            return first ? 414 : 431;
    }
    return 0;
}

static void http_on_raw_read(struct bufferevent *bev, void *arg)
{
    conn_state *cs = arg;
    if (cs->in_head) {
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t len = evbuffer_get_length(in);
        size_t head_max = line_limit(cs) + (size_t)cs->h->cfg->max_header_bytes;
        struct evbuffer_ptr blank = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        int refuse = 0;
        if (blank.pos < 0) {
            if (len <= head_max)
                return; /* hold the bytes until the head is whole */
            refuse = evbuffer_search(in, "\r\n", 2, NULL).pos < 0 ? 414 : 431;
        } else {
            refuse =
                (size_t)blank.pos + 4 > head_max ? 431 : head_check(cs, in, (size_t)blank.pos + 2);
        }
        if (refuse == 414) {
            http_refuse_head(cs, 414, "uri_too_long", "the request line is too long");
            return;
        }
        if (refuse) {
            http_refuse_head(cs, 431, "headers_too_large", "the request headers are too large");
            return;
        }
        cs->in_head = false; /* handed over whole; evhtp parses it in one go */
    }
    cs->orig_read(bev, cs->orig_arg); /* may free the connection and cs */
}

static void http_on_raw_write(struct bufferevent *bev, void *arg)
{
    conn_state *cs = arg;
    if (cs->orig_write)
        cs->orig_write(bev, cs->orig_arg);
}

static void http_on_raw_event(struct bufferevent *bev, short what, void *arg)
{
    conn_state *cs = arg;
    if (cs->orig_event)
        cs->orig_event(bev, what, cs->orig_arg);
}

static evhtp_res http_on_read(evhtp_request_t *r, struct evbuffer *buf, void *arg)
{
    conn_state *cs = arg;
    size_t n = evbuffer_get_length(buf);
    cs->body_bytes += n;
    if (cs->too_big || cs->body_bytes > (uint64_t)cs->h->cfg->max_body_bytes) {
        cs->too_big = true;
        evbuffer_drain(buf, n); /* counted and dropped: memory stays bounded */
    }
    return EVHTP_RES_OK;
}

static evhtp_res http_on_headers(evhtp_request_t *r, evhtp_headers_t *hdrs, void *arg)
{
    conn_state *cs = arg;
    cs->body_bytes = 0;
    cs->too_big = false;
    evhtp_request_set_hook(r, evhtp_hook_on_read, (evhtp_hook)http_on_read, cs);
    /* Header bytes: refuse absurd header sets before they reach a handler. */
    size_t total = 0;
    evhtp_header_t *hd;
    TAILQ_FOREACH(hd, hdrs, next)
    {
        total += hd->klen + hd->vlen + 4;
    }
    if (total > (size_t)cs->h->cfg->max_header_bytes)
        return EVHTP_RES_FATAL; /* evhtp resets the connection; nothing was processed */
    return EVHTP_RES_OK;
}

static evhtp_res http_on_conn_fini(evhtp_connection_t *c, void *arg)
{
    conn_state *cs = arg;
    LIST_REMOVE(cs, link);
    free(cs);
    return EVHTP_RES_OK;
}

static evhtp_res http_on_accept(evhtp_connection_t *c, void *arg)
{
    conn_state *cs = calloc(1, sizeof *cs);
    if (!cs)
        return EVHTP_RES_FATAL;
    cs->h = arg;
    cs->conn = c;
    LIST_INSERT_HEAD(&cs->h->conns, cs, link);
    cs->in_head = true;
    struct bufferevent *bev = evhtp_connection_get_bev(c);
    if (bev) {
        bufferevent_getcb(bev, &cs->orig_read, &cs->orig_write, &cs->orig_event, &cs->orig_arg);
        if (cs->orig_read)
            bufferevent_setcb(bev, http_on_raw_read, http_on_raw_write, http_on_raw_event, cs);
    }
    evhtp_connection_set_hook(c, evhtp_hook_on_headers, (evhtp_hook)http_on_headers, cs);
    evhtp_connection_set_hook(c, evhtp_hook_on_connection_fini, (evhtp_hook)http_on_conn_fini, cs);
    return EVHTP_RES_OK;
}

/* --- dispatch ----------------------------------------------------------------------------- */

static unsigned method_bit(htp_method m)
{
    switch (m) {
    case htp_method_GET:
        return RD_METHOD_GET;
    case htp_method_HEAD:
        return RD_METHOD_HEAD;
    case htp_method_POST:
        return RD_METHOD_POST;
    case htp_method_PUT:
        return RD_METHOD_PUT;
    case htp_method_PATCH:
        return RD_METHOD_PATCH;
    case htp_method_DELETE:
        return RD_METHOD_DELETE;
    case htp_method_OPTIONS:
        return RD_METHOD_OPTIONS;
    default:
        return RD_METHOD_OTHER;
    }
}

/* A parsed request to its handler, or the protocol's own answer: the CORS preflight,
 * 404, 405 with Allow, 401/403. */
static void http_dispatch(rd_http *h, rd_req *req)
{
    if (req->method == htp_method_OPTIONS) {
        rd_req_preflight(req);
        return;
    }
    int rc = rd_router_match(h->router, method_bit(req->method), req->segs, req->nseg, &req->route);
    if (rc == RD_ROUTE_NOT_FOUND) {
        rd_reply_error(req, 404, "not_found", "no such endpoint");
        return;
    }
    if (rc == RD_ROUTE_NO_METHOD) {
        char allow[64];
        rd_router_allow(req->route.allow, allow, sizeof allow);
        evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Allow", allow, 0, 1));
        rd_reply_error(req, 405, "method_not_allowed", "use %s on this path", allow);
        return;
    }
    const route_rec *rr = req->route.data;
    if (rr->scope != RD_HTTP_PUBLIC && !rd_req_allowed(req, rr->scope))
        return;
    rr->fn(req, rr->arg);
}

static void http_on_request(evhtp_request_t *r, void *arg)
{
    rd_http *h = arg;
    rd_req req;
    memset(&req, 0, sizeof req);
    req.r = r;
    req.cfg = h->cfg;
    req.method = evhtp_request_get_method(r);
    new_request_id(h, req.request_id, sizeof req.request_id);
    conn_state *cs = NULL;
    evhtp_hooks_t *hooks = evhtp_connection_get_hooks(r->conn);
    if (hooks)
        cs = hooks->on_headers_arg;
    req.body_too_big = cs && cs->too_big;
    if (cs)
        cs->in_head = true; /* whatever arrives next starts the next request's head */
    const char *full = r->uri && r->uri->path ? r->uri->path->full : "/";
    const char *qraw = r->uri ? (const char *)r->uri->query_raw : NULL;
    size_t ulen = strlen(full) + (qraw ? strlen(qraw) + 1 : 0);
    if (ulen > (size_t)h->cfg->max_uri_bytes) {
        rd_reply_error(&req, 414, "uri_too_long", "the request URI exceeds %lld bytes",
                       (long long)h->cfg->max_uri_bytes);
    } else if (rd_req_parse_path(&req, full) != 0) {
        rd_reply_error(&req, 400, "invalid_path", "the request path is malformed");
    } else if (rd_req_parse_query(&req, qraw) != 0) {
        rd_reply_error(&req, 400, "invalid_query", "the query string is malformed");
    } else {
        req.scope = rd_req_grant_scope(&req);
        http_dispatch(h, &req);
    }
    rd_req_dispose(&req);
}

int rd_http_route(rd_http *h, unsigned methods, const char *pattern, int scope,
                  rd_http_handler_fn fn, void *arg)
{
    route_rec *rr = calloc(1, sizeof *rr);
    if (!rr || !fn)
        return free(rr), RD_ERR;
    rr->fn = fn;
    rr->arg = arg;
    rr->scope = scope;
    if (rd_router_add(h->router, methods, pattern, rr) != 0) {
        rd_log_err("http: cannot route '%s' (malformed, taken or out of memory)", pattern);
        free(rr);
        return RD_ERR;
    }
    SLIST_INSERT_HEAD(&h->routes, rr, link);
    return 0;
}

int rd_http_route_all(rd_http *h, const rd_http_route_def *defs, size_t n, void *arg)
{
    for (size_t i = 0; i < n; i++)
        if (rd_http_route(h, defs[i].methods, defs[i].pattern, defs[i].scope, defs[i].fn, arg) != 0)
            return RD_ERR;
    return 0;
}

static int add_hook(rd_http *h, rd_http_hook_fn fn, void *arg, bool on_free)
{
    http_hook *v = realloc(h->hooks, (size_t)(h->n_hooks + 1) * sizeof *v);
    if (!v)
        return RD_ERR;
    h->hooks = v;
    h->hooks[h->n_hooks++] = (http_hook){fn, arg, on_free};
    return 0;
}

int rd_http_on_close(rd_http *h, rd_http_hook_fn fn, void *arg)
{
    return add_hook(h, fn, arg, false);
}

int rd_http_on_free(rd_http *h, rd_http_hook_fn fn, void *arg)
{
    return add_hook(h, fn, arg, true);
}

static void run_close_hooks(rd_http *h)
{
    for (int i = 0; i < h->n_hooks; i++)
        if (!h->hooks[i].on_free)
            h->hooks[i].fn(h->hooks[i].arg);
}

/* --- listeners ---------------------------------------------------------------------------- */

/* With no free descriptors evhtp's accept loop would spin: pause accepting for a moment. */
static void http_on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    rd_http *h = arg;
    for (int i = 0; i < h->n_htp; i++)
        if (h->htp[i]->server)
            evconnlistener_enable(h->htp[i]->server);
}

static void http_on_accept_error(struct evconnlistener *l, void *arg)
{
    /* The listener's argument is evhtp's own (the evhtp_t); ours is its arg. */
    evhtp_t *htp = arg;
    rd_http *h = htp->arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        rd_log_warn("accept: %s; pausing accepts for 100 ms", strerror(err));
        for (int i = 0; i < h->n_htp; i++)
            if (h->htp[i]->server)
                evconnlistener_disable(h->htp[i]->server);
        struct timeval tv = {0, 100000};
        evtimer_add(h->accept_retry, &tv);
    }
}

static evhtp_t *new_htp(rd_http *h)
{
    evhtp_t *htp = evhtp_new(h->base, h);
    if (!htp)
        return NULL;
    evhtp_set_gencb(htp, http_on_request, h);
    evhtp_set_post_accept_cb(htp, http_on_accept, h);
    htp->flags &= (uint16_t)~EVHTP_FLAG_ENABLE_100_CONT;
    /* Replies are written whole: without NODELAY the tail of a reply over one segment waits
     * for the client's delayed ACK (~40 ms on keep-alive connections). */
    htp->flags |= EVHTP_FLAG_ENABLE_NODELAY;
    /* Idle keep-alive connections and slow clients are timed out; SSE streams take their
     * connection over and clear these. */
    struct timeval rt = {60, 0}, wt = {60, 0};
    evhtp_set_timeouts(htp, &rt, &wt);
    evhtp_set_max_keepalive_requests(htp, 10000);
    return htp;
}

static bool is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

/* Splits "host:port" / "[v6]:port" into evhtp's "ipv4:..."/"ipv6:..." form. */
static int split_listen(const char *spec, char *host, size_t hostlen, int *port)
{
    const char *colon;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':')
            return -1;
        snprintf(host, hostlen, "ipv6:%.*s", (int)(close - spec - 1), spec + 1);
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon)
            return -1;
        snprintf(host, hostlen, "ipv4:%.*s", (int)(colon - spec), spec);
    }
    *port = atoi(colon + 1);
    return 0;
}

static int bound_port(evhtp_t *htp)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (!htp->server ||
        getsockname(evconnlistener_get_fd(htp->server), (struct sockaddr *)&ss, &sl) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static int listen_one(rd_http *h, const char *spec, char *err, size_t errlen)
{
    evhtp_t *htp = new_htp(h);
    if (!htp)
        return snprintf(err, errlen, "out of memory"), RD_ERR;
    h->htp[h->n_htp++] = htp;
    char host[300];
    int port = 0;
    if (strncmp(spec, "unix:", 5) == 0) {
        snprintf(host, sizeof host, "%s", spec);
        unlink(spec + 5); /* a stale socket from a previous run */
    } else if (split_listen(spec, host, sizeof host, &port) != 0) {
        return snprintf(err, errlen, "listen '%s': expected host:port", spec), RD_ERR;
    }
    if (strncmp(spec, "unix:", 5) != 0 && h->cfg->n_keys == 0 && !is_loopback(host + 5)) {
        snprintf(err, errlen,
                 "listen '%s': no API key is configured, so only loopback addresses are "
                 "allowed (add [auth] key = ...)",
                 spec);
        return RD_ERR;
    }
    if (evhtp_bind_socket(htp, host, (uint16_t)port, 1024) != 0)
        return snprintf(err, errlen, "listen '%s': %s", spec, strerror(errno)), RD_ERR;
    evconnlistener_set_error_cb(htp->server, http_on_accept_error);
    if (strncmp(spec, "unix:", 5) == 0)
        chmod(spec + 5, 0660);
    if (!h->port)
        h->port = bound_port(htp);
    return 0;
}

rd_http *rd_http_new(struct event_base *base, const rd_config *cfg, char *err, size_t errlen)
{
    rd_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->base = base;
    h->cfg = cfg;
    LIST_INIT(&h->conns);
    SLIST_INIT(&h->routes);
    h->accept_retry = evtimer_new(base, http_on_accept_retry, h);
    h->router = rd_router_new();
    if (!h->accept_retry || !h->router) {
        snprintf(err, errlen, "out of memory");
        rd_http_free(h);
        return NULL;
    }
    return h;
}

int rd_http_listen(rd_http *h, char *err, size_t errlen)
{
    int n = sd_listen_fds(1);
    if (n > 0) {
        /* Socket activation: systemd owns the addresses; take every socket it passed. */
        for (int i = 0; i < n && h->n_htp < RD_MAX_LISTEN; i++) {
            int fd = SD_LISTEN_FDS_START + i;
            evutil_make_socket_nonblocking(fd);
            evhtp_t *htp = new_htp(h);
            if (!htp || evhtp_accept_socket(htp, fd, 1024) != 0) {
                snprintf(err, errlen, "cannot accept on systemd socket %d", fd);
                return RD_ERR;
            }
            h->htp[h->n_htp++] = htp;
            evconnlistener_set_error_cb(htp->server, http_on_accept_error);
            if (!h->port)
                h->port = bound_port(htp);
        }
        return 0;
    }
    for (int i = 0; i < h->cfg->n_listen; i++)
        if (listen_one(h, h->cfg->listen[i], err, errlen) != 0)
            return RD_ERR;
    return 0;
}

void rd_http_close(rd_http *h)
{
    for (int i = 0; i < h->n_htp; i++)
        if (h->htp[i]->server)
            evconnlistener_disable(h->htp[i]->server);
    run_close_hooks(h);
}

void rd_http_free(rd_http *h)
{
    if (!h)
        return;
    run_close_hooks(h);
    /* evhtp_free leaves live connections behind: free them first (their fini hook unlinks
     * them; a held ?wait request is released through its own fini hook). */
    conn_state *cs;
    while ((cs = LIST_FIRST(&h->conns)))
        evhtp_connection_free(cs->conn);
    for (int i = 0; i < h->n_htp; i++) {
        evhtp_unbind_socket(h->htp[i]);
        evhtp_free(h->htp[i]);
    }
    if (h->accept_retry)
        event_free(h->accept_retry);
    for (int i = h->n_hooks - 1; i >= 0; i--)
        if (h->hooks[i].on_free)
            h->hooks[i].fn(h->hooks[i].arg);
    free(h->hooks);
    route_rec *rr;
    while ((rr = SLIST_FIRST(&h->routes))) {
        SLIST_REMOVE_HEAD(&h->routes, link);
        free(rr);
    }
    rd_router_free(h->router);
    free(h);
}

int rd_http_port(const rd_http *h)
{
    return h->port;
}

void rd_http_set_config(rd_http *h, const rd_config *cfg)
{
    h->cfg = cfg;
}
