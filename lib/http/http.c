/*
 * http.c: the server side of the HTTP layer: listeners, the route table and its dispatch,
 * and the lifecycle hooks of the layers above. Each connection's framing (the head guard,
 * pipelining, deadlines, the connection bound) is http_guard.c.
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

#include "base/metrics.h"
#include "base/util.h"
#include "http/http_int.h"

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

/* --- metrics ------------------------------------------------------------------------------ */

int rd_http_set_metrics(rd_http *h, rd_metrics *reg)
{
    h->m_requests = rd_metrics_counter(reg, "runsd_http_requests_total",
                                       "HTTP requests answered, by route pattern, method and "
                                       "status code (route \"unmatched\": no route matched).",
                                       RD_LV("route", "method", "code"));
    h->m_seconds = rd_metrics_histogram(
        reg, "runsd_http_request_duration_seconds",
        "Time from a request's dispatch (head and body read) to its answer, by route pattern.",
        RD_LV("route"), rd_metrics_latency_buckets, rd_metrics_latency_nbuckets);
    return h->m_requests && h->m_seconds ? 0 : RD_ERR;
}

/* --- dispatch (continued) ----------------------------------------------------------------- */

/* A handler that took the connection over (an event stream) answered 200 itself. */
static void count_takeover(rd_http *h, rd_req *req, const char *route, double t0)
{
    evhtp_connection_t *c = evhtp_request_get_connection(req->r);
    if (c && !(c->flags & EVHTP_CONN_FLAG_OWNER))
        rd_http_count(h, route, req->method, 200, t0);
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
    req->route_pattern = rr->pattern;
    conn_state *cs = rd_http_conn_state(evhtp_request_get_connection(req->r));
    if (cs)
        cs->req_route = rr->pattern;
    if (rr->scope != RD_HTTP_PUBLIC && !rd_req_allowed(req, rr->scope))
        return;
    double t0 = cs ? cs->req_t0 : 0;
    rr->fn(req, rr->arg);
    count_takeover(h, req, rr->pattern, t0);
}

static void http_on_request(evhtp_request_t *r, void *arg)
{
    rd_http *h = arg;
    rd_req req;
    memset(&req, 0, sizeof req);
    req.r = r;
    req.cfg = h->cfg;
    req.method = evhtp_request_get_method(r);
    rd_http_pick_request_id(h, evhtp_header_find(r->headers_in, "X-Request-Id"), req.request_id);
    conn_state *cs = rd_http_conn_state(r->conn);
    req.start_ms = cs && cs->req_start ? cs->req_start : rd_mono_ms();
    if (cs) {
        cs->req_open = true;
        cs->req_method = req.method;
        cs->req_route = NULL;
        cs->req_t0 = rd_metrics_clock();
    }
    req.body_too_big = cs && cs->too_big;
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
    rr->methods = methods & RD_METHOD_ANY;
    rr->pattern = strdup(pattern);
    if (!rr->pattern || rd_router_add(h->router, methods, pattern, rr) != 0) {
        rd_log_err("http: cannot route '%s' (malformed, taken or out of memory)", pattern);
        free(rr->pattern);
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

void rd_http_each_route(const rd_http *h, rd_http_route_fn fn, void *arg)
{
    const route_rec *rr;
    SLIST_FOREACH(rr, &h->routes, link)
    fn(arg, rr->methods, rr->pattern, rr->scope);
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
    rd_http_listeners_resume(arg);
}

static void http_on_accept_error(struct evconnlistener *l, void *arg)
{
    /* The listener's argument is evhtp's own (the evhtp_t); ours is its arg. */
    evhtp_t *htp = arg;
    rd_http *h = htp->arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        rd_log_warn("accept: %s; pausing accepts for 100 ms", strerror(err));
        rd_http_listeners_pause(h);
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
    evhtp_set_post_accept_cb(htp, rd_http_guard_accept, h);
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

/* An activated socket's address as "ADDR:PORT" ("[v6]:PORT") for messages and links, with a
 * wildcard address turned into loopback when for_link; whether it is loopback (or a unix
 * socket) in *local. 0, or -1 for a socket that is not a stream socket of a known family. */
static int activated_addr(int fd, bool for_link, char *out, size_t outlen, bool *local)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "";
    int type = 0, port;
    socklen_t tl = sizeof type;

    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM)
        return -1;
    if (ss.ss_family == AF_UNIX) {
        *local = true;
        snprintf(out, outlen, "unix:%.100s", ((struct sockaddr_un *)&ss)->sun_path);
        return 0;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        uint32_t a = ntohl(in->sin_addr.s_addr);
        *local = (a >> 24) == 127;
        if (for_link && a == INADDR_ANY)
            in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        snprintf(out, outlen, "%s:%d", host, port);
        return 0;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        const uint8_t *b = in6->sin6_addr.s6_addr;
        *local = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
                 (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127);
        if (for_link && IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr))
            in6->sin6_addr = in6addr_loopback;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        snprintf(out, outlen, "[%s]:%d", host, port);
        return 0;
    }
    return -1;
}

/* Socket activation keeps the rule of `listen`: without API keys the API is open, so only
 * loopback may reach it. The first TCP socket's address becomes the base of links unless
 * public_url is set. */
static int activated_check(rd_http *h, int fd, char *err, size_t errlen)
{
    char addr[128], link[128];
    bool local = false;

    if (activated_addr(fd, false, addr, sizeof addr, &local) != 0)
        return snprintf(err, errlen, "systemd socket %d: not a TCP or unix stream socket", fd),
               RD_ERR;
    if (!local)
        h->activated_open = true;
    if (!local && h->cfg->n_keys == 0) {
        snprintf(err, errlen,
                 "systemd socket %s: no API key is configured, so only loopback addresses are "
                 "allowed (add [auth] key = ...)",
                 addr);
        return RD_ERR;
    }
    if (h->activated_url[0] == '\0' && strncmp(addr, "unix:", 5) != 0 &&
        activated_addr(fd, true, link, sizeof link, &local) == 0)
        snprintf(h->activated_url, sizeof h->activated_url, "http://%s", link);
    return 0;
}

int rd_http_listen(rd_http *h, char *err, size_t errlen)
{
    int n = sd_listen_fds(1);
    if (n > 0) {
        /* Socket activation: systemd owns the addresses; take every socket it passed. */
        for (int i = 0; i < n && h->n_htp < RD_MAX_LISTEN; i++) {
            int fd = SD_LISTEN_FDS_START + i;
            if (activated_check(h, fd, err, errlen) != 0)
                return RD_ERR;
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
    h->closing = true;
    rd_http_listeners_pause(h);
    run_close_hooks(h);
}

void rd_http_free(rd_http *h)
{
    if (!h)
        return;
    h->closing = true;
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
        free(rr->pattern);
        free(rr);
    }
    rd_router_free(h->router);
    free(h);
}

int rd_http_port(const rd_http *h)
{
    return h->port;
}

const char *rd_http_activated_url(const rd_http *h)
{
    return h->activated_url[0] ? h->activated_url : NULL;
}

bool rd_http_activated_open(const rd_http *h)
{
    return h->activated_open;
}

void rd_http_set_config(rd_http *h, const rd_config *cfg)
{
    h->cfg = cfg;
}
