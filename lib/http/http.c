/*
 * http.c: listeners, request limits, access control, routing by exact path, and replies.
 *
 * libevhtp resets the connection when a body exceeds its max size, so we never set that
 * limit: a per-connection on_read hook counts body bytes and discards them past max_body,
 * and the handler answers 413 with a JSON error. Paths are matched segment by segment here
 * (evhtp matches prefixes), query values are URL-decoded here (evhtp does not).
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "api/api.h"
#include "api/stream.h"
#include "base/util.h"

struct rd_http {
    struct event_base *base;
    rd_engine *eng;
    const rd_config *cfg;
    evhtp_t *htp[RD_MAX_LISTEN]; /* one evhtp per listener: evhtp binds one socket each */
    int n_htp;
    int port;
    uint64_t req_counter;
    struct event *accept_retry;
    rd_api_state *api_state;
    void *stream_state;
    struct rd_outbox *outbox;      /* borrowed, for the deliveries endpoints */
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

/* --- query and path decoding ------------------------------------------------------------ */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* In-place percent-decoding; '+' is a space in query strings only. Refuses %00. */
static int pct_decode(char *s, bool plus)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%') {
            int a = p[1] ? hexval(p[1]) : -1, b = a >= 0 && p[2] ? hexval(p[2]) : -1;
            if (a < 0 || b < 0 || (a == 0 && b == 0))
                return -1;
            *o++ = (char)(a * 16 + b);
            p += 2;
        } else if (plus && *p == '+') {
            *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return 0;
}

static int parse_query(rd_req *req, const char *raw)
{
    if (!raw || !*raw)
        return 0;
    req->qbuf = strdup(raw);
    if (!req->qbuf)
        return -1;
    char *save = NULL;
    for (char *tok = strtok_r(req->qbuf, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        if (req->nq >= 32)
            return -1;
        char *eq = strchr(tok, '=');
        if (eq)
            *eq++ = 0;
        if (pct_decode(tok, true) != 0 || (eq && pct_decode(eq, true) != 0))
            return -1;
        req->qk[req->nq] = tok;
        req->qv[req->nq] = eq ? eq : "";
        req->nq++;
    }
    return 0;
}

static int parse_path(rd_req *req, const char *full)
{
    req->path = strdup(full);
    if (!req->path || pct_decode(req->path, false) != 0)
        return -1;
    char *copy = req->pcopy = strdup(req->path);
    if (!copy)
        return -1;
    req->nseg = 0;
    char *p = copy;
    if (*p != '/')
        return -1;
    while (*p == '/' && req->nseg < 8) {
        *p++ = 0;
        char *start = p;
        while (*p && *p != '/')
            p++;
        if (start == p && *p == 0)
            break; /* one trailing slash is tolerated */
        if (start == p || strcmp(start, ".") == 0 || strcmp(start, "..") == 0)
            return -1;
        req->segs[req->nseg++] = start;
    }
    if (*p)
        return -1; /* more than 8 segments: no route is that deep */
    req->segs[req->nseg] = NULL;
    return 0;
}

int rd_form_parse(char *body, const char **keys, const char **vals, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(body, "&", &save); tok; tok = strtok_r(NULL, "&", &save)) {
        if (n >= max)
            return -1;
        char *eq = strchr(tok, '=');
        if (eq)
            *eq++ = 0;
        if (pct_decode(tok, true) != 0 || (eq && pct_decode(eq, true) != 0))
            return -1;
        keys[n] = tok;
        vals[n] = eq ? eq : "";
        n++;
    }
    return n;
}

const char *rd_req_query(const rd_req *req, const char *key)
{
    for (int i = 0; i < req->nq; i++)
        if (strcmp(req->qk[i], key) == 0)
            return req->qv[i];
    return NULL;
}

const char *rd_req_header(const rd_req *req, const char *key)
{
    return evhtp_header_find(req->r->headers_in, key);
}

/* --- replies ------------------------------------------------------------------------------ */

void rd_req_cors(rd_req *req, evhtp_headers_t *out)
{
    const char *origin = rd_req_header(req, "Origin");
    if (!origin || req->cfg->n_cors == 0)
        return;
    for (int i = 0; i < req->cfg->n_cors; i++) {
        if (strcmp(req->cfg->cors_origins[i], "*") == 0 ||
            strcmp(req->cfg->cors_origins[i], origin) == 0) {
            evhtp_headers_add_header(out,
                                     evhtp_header_new("Access-Control-Allow-Origin", origin, 0, 1));
            evhtp_headers_add_header(out, evhtp_header_new("Vary", "Origin", 0, 0));
            evhtp_headers_add_header(out, evhtp_header_new("Access-Control-Expose-Headers",
                                                           "X-Request-Id, Retry-After", 0, 0));
            return;
        }
    }
}

void rd_reply_raw(rd_req *req, int status, const char *ctype, const char *body, size_t len)
{
    evhtp_request_t *r = req->r;
    evhtp_headers_add_header(r->headers_out, evhtp_header_new("Content-Type", ctype, 0, 0));
    evhtp_headers_add_header(r->headers_out,
                             evhtp_header_new("X-Request-Id", req->request_id, 0, 1));
    evhtp_headers_add_header(r->headers_out, evhtp_header_new("Cache-Control", "no-store", 0, 0));
    rd_req_cors(req, r->headers_out);
    if (req->body_too_big)
        evhtp_headers_add_header(r->headers_out, evhtp_header_new("Connection", "close", 0, 0));
    if (body && len && req->method != htp_method_HEAD)
        evbuffer_add(r->buffer_out, body, len);
    evhtp_send_reply(r, (evhtp_res)status);
}

void rd_reply_json(rd_req *req, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        rd_reply_raw(req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* a trailing newline is friendlier to curl users; NUL no longer needed */
    rd_reply_raw(req, status, "application/json", text, n + 1);
    free(text);
}

int rd_reply_error(rd_req *req, int status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *body = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", code, "message", msg,
                             "request_id", req->request_id);
    rd_reply_json(req, status, body);
    return -1;
}

void rd_reply_apierr(rd_req *req, const rd_apierr *e)
{
    if (e->retry_after > 0) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", e->retry_after);
        evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Retry-After", buf, 0, 1));
    }
    rd_reply_error(req, e->http, e->code, "%s", e->message);
}

char *rd_req_body(rd_req *req, size_t *len)
{
    if (req->body_too_big) {
        rd_reply_error(req, 413, "payload_too_large", "the request body exceeds %lld bytes",
                       (long long)req->cfg->max_body_bytes);
        return NULL;
    }
    struct evbuffer *in = req->r->buffer_in;
    size_t n = evbuffer_get_length(in);
    char *buf = malloc(n + 1);
    if (!buf) {
        rd_reply_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    evbuffer_copyout(in, buf, n);
    buf[n] = 0;
    *len = n;
    return buf;
}

int rd_req_json_body(rd_req *req, json_t **out)
{
    size_t len = 0;
    char *body = rd_req_body(req, &len);
    if (!body)
        return -1;
    const char *ctype = rd_req_header(req, "Content-Type");
    /* curl -d sends form-urlencoded by default: the body decides, except for multipart. */
    if (ctype && strncasecmp(ctype, "multipart/", 10) == 0 && len > 0) {
        free(body);
        return rd_reply_error(req, 415, "unsupported_media_type",
                              "send the body as application/json");
    }
    json_error_t jerr;
    json_t *j = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : json_object();
    free(body);
    if (!j)
        return rd_reply_error(req, 400, "invalid_json", "invalid JSON at line %d column %d: %s",
                              jerr.line, jerr.column, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return rd_reply_error(req, 400, "invalid_json", "the body must be a JSON object");
    }
    *out = j;
    return 0;
}

/* --- access ------------------------------------------------------------------------------- */

static int grant_scope(rd_req *req)
{
    const rd_config *cfg = req->cfg;
    if (cfg->n_keys == 0)
        return RD_SCOPE_ADMIN; /* no keys: loopback-only and open (enforced at bind) */
    const char *key = rd_req_header(req, "x-api-key");
    const char *auth = rd_req_header(req, "Authorization");
    if (!key && auth && strncasecmp(auth, "Bearer ", 7) == 0)
        key = auth + 7;
    if (!key)
        return 0;
    int best = 0;
    /* Compare against every key so timing does not reveal which one matched. */
    for (int i = 0; i < cfg->n_keys; i++)
        if (rd_ct_streq(key, cfg->keys[i].key) && cfg->keys[i].scope > best)
            best = cfg->keys[i].scope;
    return best;
}

bool rd_req_allowed(rd_req *req, int need)
{
    if (req->scope >= need)
        return true;
    if (req->scope == 0) {
        evhtp_headers_add_header(req->r->headers_out,
                                 evhtp_header_new("WWW-Authenticate", "Bearer", 0, 0));
        rd_reply_error(req, 401, "unauthorized",
                       "an API key is required (Authorization: Bearer or x-api-key)");
    } else {
        rd_reply_error(req, 403, "forbidden", "this API key lacks the '%s' scope",
                       need == RD_SCOPE_ADMIN   ? "admin"
                       : need == RD_SCOPE_WRITE ? "write"
                                                : "read");
    }
    return false;
}

/* --- dispatch ----------------------------------------------------------------------------- */

static void req_dispose(rd_req *req)
{
    free(req->path);
    free(req->pcopy);
    free(req->qbuf);
}

static void http_on_request(evhtp_request_t *r, void *arg)
{
    rd_http *h = arg;
    rd_req req;
    memset(&req, 0, sizeof req);
    req.r = r;
    req.h = h;
    req.eng = h->eng;
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
    } else if (parse_path(&req, full) != 0) {
        rd_reply_error(&req, 400, "invalid_path", "the request path is malformed");
    } else if (parse_query(&req, qraw) != 0) {
        rd_reply_error(&req, 400, "invalid_query", "the query string is malformed");
    } else {
        req.scope = grant_scope(&req);
        rd_api_dispatch(&req);
    }
    req_dispose(&req);
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

rd_http *rd_http_new(struct event_base *base, rd_engine *eng, const rd_config *cfg, char *err,
                     size_t errlen)
{
    rd_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->base = base;
    h->eng = eng;
    h->cfg = cfg;
    LIST_INIT(&h->conns);
    h->accept_retry = evtimer_new(base, http_on_accept_retry, h);
    if (rd_stream_init(h, err, errlen) != 0) {
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
    rd_api_close_streams(h);
}

void rd_http_free(rd_http *h)
{
    if (!h)
        return;
    rd_api_close_streams(h);
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
    rd_api_free_state(h);
    rd_stream_free_state(h);
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

void rd_http_set_outbox(rd_http *h, struct rd_outbox *ob)
{
    h->outbox = ob;
}

struct rd_outbox *rd_http_outbox(rd_http *h)
{
    return h->outbox;
}

rd_api_state **rd_http_api_state(rd_http *h)
{
    return &h->api_state;
}

void **rd_http_stream_state(rd_http *h)
{
    return &h->stream_state;
}

rd_engine *rd_http_engine(rd_http *h)
{
    return h->eng;
}

const rd_config *rd_http_config(rd_http *h)
{
    return h->cfg;
}

struct event_base *rd_http_base(rd_http *h)
{
    return h->base;
}
