/*
 * http_guard.c: each connection's request framing, in front of libevhtp 1.2.18's parser.
 *
 * evhtp's read callback is wrapped, and evhtp is handed exactly one request at a time:
 * - the head is held until its blank line and checked whole by head.c (evhtp corrupts a
 *   request line that reaches it in two pieces, upstream #131, resets heads over its 8 KiB
 *   buffer, and closes without an answer on much that RFC 9112 says to answer); a refused
 *   head is answered here, with the JSON error body, and the connection closed;
 * - a Content-Length body is passed through as it comes; a chunked body is decoded here
 *   (evhtp closes on chunk extensions) and handed over as a Content-Length body;
 * - bytes after the request (pipelining) wait in a stash until evhtp has answered it and
 *   reset, then the next head is taken from there: evhtp itself answers a second request in
 *   the same read one request late;
 * - the head and the body each have a deadline ([server] head_timeout, body_timeout): the
 *   socket's read timeout restarts at every byte, so a client trickling bytes kept a
 *   connection forever;
 * - the number of connections is bounded by [server] max_connections: at the bound the
 *   listeners stop accepting (new connections wait in the kernel's backlog) until one ends.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/util.h"
#include "http/head.h"
#include "http/http_int.h"

/* The most pipelined bytes held while a request is served; a client sending more before
 * reading its answers is dropped. */
#define STASH_MAX (1u << 20)

/* Where a chunked body's decoder is. */
enum { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

void rd_http_request_id(rd_http *h, char *out, size_t outlen)
{
    snprintf(out, outlen, "req_%llx%04llx", (unsigned long long)rd_now_ms(),
             (unsigned long long)(++h->req_counter & 0xffff));
}

void rd_http_pick_request_id(rd_http *h, const char *in, char *out)
{
    size_t n = in ? strnlen(in, RD_REQUEST_ID_MAX) : 0;
    bool ok = n > 0 && n < RD_REQUEST_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = in[i] > 0x20 && in[i] < 0x7f;
    if (ok)
        memcpy(out, in, n + 1);
    else
        rd_http_request_id(h, out, RD_REQUEST_ID_MAX);
}

/* The longest request line the guard lets through: evhtp's parser must hold it whole. */
static size_t line_limit(const conn_state *cs)
{
    size_t lim = (size_t)cs->h->cfg->max_uri_bytes + 64; /* method, version, spaces */
    return lim < RD_HEAD_LINE_MAX ? lim : RD_HEAD_LINE_MAX;
}

static void cs_free(conn_state *cs)
{
    if (cs->deadline)
        event_free(cs->deadline);
    if (cs->stash)
        evbuffer_free(cs->stash);
    if (cs->chead)
        evbuffer_free(cs->chead);
    if (cs->cbody)
        evbuffer_free(cs->cbody);
    free(cs);
}

/* Answers and drops a connection whose request evhtp must not see. The answer is small and
 * written straight to the socket (nothing else is pending on it: a refusal happens only
 * before evhtp has answered the request); the connection is freed right after. */
static void guard_refuse(conn_state *cs, int status, const char *code, const char *msg)
{
    char body[320], head[720], rid[24];
    rd_http_request_id(cs->h, rid, sizeof rid);
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}}\n",
                      code, msg, rid);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      "X-Request-Id: %s\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s",
                      status, rd_head_reason(status), bl, rid, body);
    evutil_socket_t fd = bufferevent_getfd(evhtp_connection_get_bev(cs->conn));
    rd_req req = {.method = htp_method_UNKNOWN,
                  .start_ms = cs->phase == RD_CONN_HEAD ? 0 : cs->req_start};
    memcpy(req.request_id, rid, sizeof rid);
    rd_req_log(&req, status, (size_t)bl);
    rd_http_count(cs->h, NULL, htp_method_UNKNOWN, status, 0);
    if (send(fd, head, (size_t)hl, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
        rd_log_debug("refusing a request: %s", strerror(errno));
    evhtp_connection_free(cs->conn); /* runs the fini hook */
}

static void guard_arm(conn_state *cs, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(cs->deadline, &tv);
}

static void guard_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    conn_state *cs = arg;
    rd_log_debug("http: a request %s did not arrive in time; closing",
                 cs->phase == RD_CONN_HEAD ? "head" : "body");
    guard_refuse(cs, 408, "request_timeout", "the request did not arrive in time");
}

/* Hands evhtp the first n bytes of the input and puts the rest in front of the stash. The
 * end of a bufferevent's input is frozen outside its reads, so bytes are only taken from
 * and put back at its start. */
static void hand_over(conn_state *cs, struct bufferevent *bev, size_t n)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) > n) {
        struct evbuffer *rest = evbuffer_new(), *head = evbuffer_new();
        if (!rest || !head || evbuffer_add_buffer(rest, in) != 0 ||
            evbuffer_remove_buffer(rest, head, n) != (int)n ||
            evbuffer_prepend_buffer(cs->stash, rest) != 0 ||
            evbuffer_prepend_buffer(in, head) != 0) {
            if (rest)
                evbuffer_free(rest);
            if (head)
                evbuffer_free(head);
            evhtp_connection_free(cs->conn);
            return;
        }
        evbuffer_free(rest);
        evbuffer_free(head);
    }
    if (n > 0)
        cs->orig_read(bev, cs->orig_arg); /* may free the connection: cs->dead */
}

/* Finds and checks the head at the start of in. 0 with *n (its length) once it is accepted,
 * 1 while it is incomplete, -1 after refusing it. */
static int guard_head(conn_state *cs, struct evbuffer *in, size_t *n)
{
    char c;
    while (evbuffer_copyout(in, &c, 1) == 1 && (c == '\r' || c == '\n'))
        evbuffer_drain(in, 1); /* RFC 9112 2.2: empty lines before a request are ignored */
    size_t len = evbuffer_get_length(in), line = line_limit(cs);
    size_t head_max = line + (size_t)cs->h->cfg->max_header_bytes + 4;
    if (len == 0)
        return 1;
    if (!evtimer_pending(cs->deadline, NULL))
        guard_arm(cs, cs->h->cfg->head_timeout_ms);
    struct evbuffer_ptr eol = evbuffer_search(in, "\r\n", 2, NULL);
    if ((eol.pos < 0 && len > line) || (eol.pos >= 0 && (size_t)eol.pos > line)) {
        guard_refuse(cs, 414, "uri_too_long", "the request line is too long");
        return -1;
    }
    struct evbuffer_ptr blank = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (blank.pos < 0 ? len > head_max : (size_t)blank.pos + 4 > head_max) {
        guard_refuse(cs, 431, "headers_too_large", "the request headers are too large");
        return -1;
    }
    if (blank.pos < 0)
        return 1; /* hold the bytes until the head is whole */
    *n = (size_t)blank.pos + 4;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)*n);
    rd_head h;
    if (!p || rd_head_parse(p, *n, line, (size_t)cs->h->cfg->max_header_bytes, &h) != 0) {
        guard_refuse(cs, p ? h.status : 500, p ? h.code : "internal",
                     p ? h.message : "out of memory");
        return -1;
    }
    if (h.chunked) {
        /* The head goes to chead without its Transfer-Encoding line and blank line; the
         * decoded body is handed over with a Content-Length (see chunked_done). */
        if ((!cs->chead && !(cs->chead = evbuffer_new())) ||
            (!cs->cbody && !(cs->cbody = evbuffer_new()))) {
            guard_refuse(cs, 500, "internal", "out of memory");
            return -1;
        }
        evbuffer_remove_buffer(in, cs->chead, h.te_off);
        evbuffer_drain(in, h.te_len);
        evbuffer_remove_buffer(in, cs->chead, *n - h.te_off - h.te_len - 2);
        evbuffer_drain(in, 2);
        *n = 0;
        cs->phase = RD_CONN_CHUNKED;
        cs->cstate = CH_SIZE;
        cs->ctrailer = 0;
    } else {
        cs->body_left = h.content_length > 0 ? (uint64_t)h.content_length : 0;
        cs->phase = cs->body_left ? RD_CONN_BODY : RD_CONN_DONE;
    }
    if (cs->phase != RD_CONN_DONE)
        guard_arm(cs, cs->h->cfg->body_timeout_ms);
    return 0;
}

/* One line of the chunked framing (a chunk size or a trailer field). 0, 1 (incomplete) or
 * -1 after refusing. */
static int chunked_line(conn_state *cs, struct evbuffer *in)
{
    size_t eol_len = 0, len = evbuffer_get_length(in);
    struct evbuffer_ptr e = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
    if (e.pos < 0 && len <= RD_HEAD_LINE_MAX)
        return 1;
    if (e.pos < 0 || (size_t)e.pos > RD_HEAD_LINE_MAX) {
        guard_refuse(cs, 400, "invalid_chunked_body", "a chunk-size or trailer line is too long");
        return -1;
    }
    size_t ll = (size_t)e.pos;
    const char *line = (const char *)evbuffer_pullup(in, (ev_ssize_t)(ll + 2));
    uint64_t size = 0;
    if (cs->cstate == CH_TRAILER) {
        cs->ctrailer += ll + 2;
        if (cs->ctrailer > (uint64_t)cs->h->cfg->max_header_bytes) {
            guard_refuse(cs, 431, "headers_too_large", "the request trailers are too large");
            return -1;
        }
        evbuffer_drain(in, ll + 2);
        if (ll == 0)
            cs->phase = RD_CONN_DONE;
        return 0;
    }
    if (!line || rd_head_chunk_size(line, ll, &size) != 0) {
        guard_refuse(cs, 400, "invalid_chunked_body", "a chunk-size line is malformed");
        return -1;
    }
    evbuffer_drain(in, ll + 2);
    if (evbuffer_get_length(cs->cbody) + size > (uint64_t)cs->h->cfg->max_body_bytes) {
        guard_refuse(cs, 413, "payload_too_large", "the request body is too large");
        return -1;
    }
    cs->cleft = size;
    cs->cstate = size ? CH_DATA : CH_TRAILER;
    return 0;
}

/* Decodes the chunked body arriving in in. 0 with *n once it is whole (the request, now
 * with a Content-Length, is at the start of in and *n long), 1 while it is incomplete, -1
 * after refusing. */
static int guard_chunked(conn_state *cs, struct evbuffer *in, size_t *n)
{
    while (cs->phase == RD_CONN_CHUNKED) {
        size_t len = evbuffer_get_length(in);
        int rc = 0;
        if (cs->cstate == CH_DATA) {
            size_t take = len < cs->cleft ? len : (size_t)cs->cleft;
            if (take == 0)
                return 1;
            evbuffer_remove_buffer(in, cs->cbody, take);
            cs->cleft -= take;
            cs->cstate = cs->cleft ? CH_DATA : CH_DATA_END;
        } else if (cs->cstate == CH_DATA_END) {
            char crlf[2];
            if (len < 2)
                return 1;
            evbuffer_remove(in, crlf, 2);
            if (memcmp(crlf, "\r\n", 2) != 0) {
                guard_refuse(cs, 400, "invalid_chunked_body", "a chunk does not end in CRLF");
                return -1;
            }
            cs->cstate = CH_SIZE;
        } else if ((rc = chunked_line(cs, in)) != 0) {
            return rc;
        }
    }
    evbuffer_add_printf(cs->chead, "Content-Length: %zu\r\n\r\n", evbuffer_get_length(cs->cbody));
    evbuffer_add_buffer(cs->chead, cs->cbody);
    *n = evbuffer_get_length(cs->chead);
    evbuffer_prepend_buffer(in, cs->chead);
    return 0;
}

/* Takes what arrived: the current request's bytes go to evhtp, later ones to the stash. */
static void guard_read(conn_state *cs, struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = 0;
    if (cs->phase == RD_CONN_DONE) {
        evbuffer_add_buffer(cs->stash, in);
        if (evbuffer_get_length(cs->stash) > STASH_MAX)
            evhtp_connection_free(cs->conn);
        return;
    }
    if (cs->phase == RD_CONN_HEAD && guard_head(cs, in, &n) != 0)
        return;
    if (cs->phase == RD_CONN_CHUNKED && guard_chunked(cs, in, &n) != 0)
        return;
    if (cs->phase == RD_CONN_BODY) {
        size_t avail = evbuffer_get_length(in) - n;
        size_t take = avail < cs->body_left ? avail : (size_t)cs->body_left;
        cs->body_left -= take;
        n += take;
        if (cs->body_left == 0)
            cs->phase = RD_CONN_DONE;
    }
    if (cs->phase == RD_CONN_DONE)
        evtimer_del(cs->deadline);
    hand_over(cs, bev, n);
}

static void cs_release(conn_state *cs)
{
    if (--cs->busy == 0 && cs->dead)
        cs_free(cs);
}

static void http_on_raw_read(struct bufferevent *bev, void *arg)
{
    conn_state *cs = arg;
    cs->busy++;
    guard_read(cs, bev);
    cs_release(cs);
}

/* evhtp resets the connection for its next request in its write callback, once the answer
 * is flushed: then the stashed bytes are the next request. */
static void http_on_raw_write(struct bufferevent *bev, void *arg)
{
    conn_state *cs = arg;
    cs->busy++;
    if (cs->orig_write)
        cs->orig_write(bev, cs->orig_arg);
    if (!cs->dead && cs->phase == RD_CONN_DONE && !cs->conn->request) {
        cs->phase = RD_CONN_HEAD;
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_prepend_buffer(in, cs->stash);
        if (evbuffer_get_length(in))
            guard_read(cs, bev);
    }
    if (!cs->dead && cs->eof_pending && cs->phase != RD_CONN_DONE) {
        /* Every complete request the client sent before closing its side is answered. */
        cs->eof_pending = false;
        if (cs->orig_event)
            cs->orig_event(bev, BEV_EVENT_EOF | BEV_EVENT_READING, cs->orig_arg);
    }
    cs_release(cs);
}

static void http_on_raw_event(struct bufferevent *bev, short what, void *arg)
{
    conn_state *cs = arg;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && cs->phase == RD_CONN_DONE) {
        /* A half-close (shutdown(SHUT_WR), `nc -N`) after pipelined requests: evhtp would free
         * the connection with the answers still to come. It hears of the EOF once the
         * requests before it are answered (http_on_raw_write). */
        cs->eof_pending = true;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    cs->busy++;
    if (cs->orig_event)
        cs->orig_event(bev, what, cs->orig_arg);
    cs_release(cs);
}

/* --- evhtp's hooks ------------------------------------------------------------------------ */

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
    cs->req_start = rd_mono_ms();
    evhtp_request_set_hook(r, evhtp_hook_on_read, (evhtp_hook)http_on_read, cs);
    /* evhtp parses a form-encoded body as the query when the target has none: give it an
     * empty query, so the query comes only from the request target. */
    if (r->uri && !r->uri->query && !(r->uri->query = evhtp_query_new()))
        return EVHTP_RES_FATAL;
    return EVHTP_RES_OK;
}

static evhtp_res http_on_conn_fini(evhtp_connection_t *c, void *arg)
{
    conn_state *cs = arg;
    rd_http *h = cs->h;
    LIST_REMOVE(cs, link);
    h->n_conns--;
    evtimer_del(cs->deadline);
    if (h->at_bound && h->n_conns < h->cfg->max_connections) {
        h->at_bound = false;
        rd_http_listeners_resume(h);
    }
    if (cs->busy)
        cs->dead = true; /* freed when our callback returns */
    else
        cs_free(cs);
    return EVHTP_RES_OK;
}

evhtp_res rd_http_guard_accept(evhtp_connection_t *c, void *arg)
{
    rd_http *h = arg;
    conn_state *cs = calloc(1, sizeof *cs);
    struct bufferevent *bev = evhtp_connection_get_bev(c);
    if (cs) {
        cs->stash = evbuffer_new();
        cs->deadline = evtimer_new(h->base, guard_on_deadline, cs);
    }
    if (!cs || !cs->stash || !cs->deadline || !bev) {
        if (cs)
            cs_free(cs);
        return EVHTP_RES_FATAL;
    }
    cs->h = h;
    cs->conn = c;
    cs->phase = RD_CONN_HEAD;
    LIST_INSERT_HEAD(&h->conns, cs, link);
    if (++h->n_conns >= h->cfg->max_connections) {
        h->at_bound = true;
        rd_http_listeners_pause(h);
    }
    bufferevent_getcb(bev, &cs->orig_read, &cs->orig_write, &cs->orig_event, &cs->orig_arg);
    bufferevent_setcb(bev, http_on_raw_read, http_on_raw_write, http_on_raw_event, cs);
    evhtp_connection_set_hook(c, evhtp_hook_on_headers, (evhtp_hook)http_on_headers, cs);
    evhtp_connection_set_hook(c, evhtp_hook_on_connection_fini, (evhtp_hook)http_on_conn_fini, cs);
    return EVHTP_RES_OK;
}

void rd_http_listeners_pause(rd_http *h)
{
    for (int i = 0; i < h->n_htp; i++)
        if (h->htp[i]->server)
            evconnlistener_disable(h->htp[i]->server);
}

void rd_http_listeners_resume(rd_http *h)
{
    if (h->closing || h->n_conns >= h->cfg->max_connections)
        return;
    for (int i = 0; i < h->n_htp; i++)
        if (h->htp[i]->server)
            evconnlistener_enable(h->htp[i]->server);
}
