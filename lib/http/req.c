/*
 * req.c: one request as handlers see it: the decoded path, query and body, the access
 * check, CORS, and the replies. Query values and path segments are URL-decoded here
 * (evhtp does not); %00 is refused everywhere, so no handler meets a truncated string.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/metrics.h"
#include "base/util.h"
#include "http/head.h"
#include "http/http_int.h"

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

int rd_req_parse_query(rd_req *req, const char *raw)
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

int rd_req_parse_path(rd_req *req, const char *full)
{
    /* Split first, then decode each segment: an encoded '/' (%2F) is part of a segment, and
     * no route or id holds one, so it is refused rather than taken for a separator. */
    req->path = strdup(full);
    req->pcopy = strdup(full);
    if (!req->path || !req->pcopy || pct_decode(req->path, false) != 0)
        return -1;
    req->nseg = rd_router_split(req->pcopy, req->segs);
    for (int i = 0; i < req->nseg; i++) {
        char *s = req->segs[i];
        if (pct_decode(s, false) != 0 || strchr(s, '/') || strcmp(s, ".") == 0 ||
            strcmp(s, "..") == 0)
            return -1;
    }
    return req->nseg < 0 ? -1 : 0;
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

int rd_req_query_int(rd_req *req, const char *key, int64_t def, int64_t lo, int64_t hi,
                     int64_t *out)
{
    const char *v = rd_req_query(req, key);
    if (!v) {
        *out = def;
        return 0;
    }
    int64_t n;
    if (rd_parse_i64(v, &n) != 0 || n < lo || n > hi)
        return rd_reply_error(req, 400, "invalid_parameter",
                              "'%s' must be an integer between %lld and %lld", key, (long long)lo,
                              (long long)hi);
    *out = n;
    return 0;
}

const char *rd_req_header(const rd_req *req, const char *key)
{
    return evhtp_header_find(req->r->headers_in, key);
}

/* --- metrics ------------------------------------------------------------------------------ */

/* Labels from fixed sets only: route patterns of the table, methods, and status codes the
 * daemon sends; a client's path never becomes a label. */
static const char *method_name(htp_method m)
{
    switch (m) {
    case htp_method_GET:
        return "GET";
    case htp_method_HEAD:
        return "HEAD";
    case htp_method_POST:
        return "POST";
    case htp_method_PUT:
        return "PUT";
    case htp_method_PATCH:
        return "PATCH";
    case htp_method_DELETE:
        return "DELETE";
    case htp_method_OPTIONS:
        return "OPTIONS";
    default:
        return "other";
    }
}

void rd_http_count(rd_http *h, const char *route, htp_method method, int status, double t0)
{
    char code[8];
    snprintf(code, sizeof code, "%d", status >= 100 && status <= 599 ? status : 0);
    route = route ? route : "unmatched";
    rd_metric_inc(h->m_requests, RD_LV(route, method_name(method), code));
    if (t0 > 0)
        rd_metric_observe(h->m_seconds, RD_LV(route), rd_metrics_clock() - t0);
}

conn_state *rd_http_conn_state(evhtp_connection_t *c)
{
    evhtp_hooks_t *hooks = c ? evhtp_connection_get_hooks(c) : NULL;
    return hooks ? hooks->on_headers_arg : NULL;
}

void rd_req_count(rd_req *req, int status)
{
    conn_state *cs = rd_http_conn_state(evhtp_request_get_connection(req->r));
    if (!cs || !cs->req_open)
        return;
    cs->req_open = false;
    rd_http_count(cs->h, cs->req_route, cs->req_method, status, cs->req_t0);
}

/* --- replies ------------------------------------------------------------------------------ */

/* libevhtp writes the status line with its own reason table, which has no 422 or 429 ("HTTP/1.1
 * 422 UNKNOWN") and some names RFC 9110 changed ("Not Allowed", "Entity Too Large"). The
 * reply it just appended to the connection's output, at offset at, gets ours instead. Nothing
 * of it has been written yet: the socket is written from the loop, after this callback. */
static void fix_status_line(struct evbuffer *out, size_t at, int status)
{
    struct evbuffer_ptr p;
    size_t eol_len = 0;
    char line[80];
    if (evbuffer_ptr_set(out, &p, at, EVBUFFER_PTR_SET) != 0)
        return;
    struct evbuffer_ptr eol = evbuffer_search_eol(out, &p, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
    size_t n = eol.pos >= 0 ? (size_t)eol.pos - at : 0;
    /* "HTTP/1.x NNN " is 13 bytes; the reason follows. */
    if (n < 13 || n >= sizeof line)
        return;
    /* A bufferevent freezes the start of its output between writes (reads from the front,
     * copies included, fail): thaw it for the edit. */
    bool frozen = evbuffer_drain(out, 0) != 0;
    if (frozen)
        evbuffer_unfreeze(out, 1);
    const char *reason = rd_head_reason(status);
    struct evbuffer *before = NULL;
    if (evbuffer_copyout_from(out, &p, line, n) != (ev_ssize_t)n)
        goto done;
    line[n] = 0;
    if (strncmp(line, "HTTP/1.", 7) != 0 || strcmp(line + 13, reason) == 0)
        goto done;
    char fixed[96];
    int fl = snprintf(fixed, sizeof fixed, "%.13s%s", line, reason);
    before = evbuffer_new();
    if (!before || fl <= 0)
        goto done;
    if (evbuffer_remove_buffer(out, before, at) == (int)at && evbuffer_drain(out, n) == 0)
        evbuffer_prepend(out, fixed, (size_t)fl);
    evbuffer_prepend_buffer(out, before);
done:
    if (before)
        evbuffer_free(before);
    if (frozen)
        evbuffer_freeze(out, 1);
}

/* Every reply of a handler goes out here: evhtp builds it, the status line gets its reason, and
 * it is counted once. */
/* Every answer the request layer sends: its status line fixed, counted and logged once. */
static void send_reply(rd_req *req, int status, size_t bytes)
{
    struct bufferevent *bev = evhtp_connection_get_bev(evhtp_request_get_connection(req->r));
    struct evbuffer *out = bev ? bufferevent_get_output(bev) : NULL;
    size_t at = out ? evbuffer_get_length(out) : 0;
    evhtp_send_reply(req->r, (evhtp_res)status);
    if (out)
        fix_status_line(out, at, status);
    rd_req_count(req, status);
    rd_req_log(req, status, bytes);
}

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
    /* Every 429 and 503 says when to come back; a handler may have set a better value. */
    if ((status == 429 || status == 503) && !evhtp_header_find(r->headers_out, "Retry-After"))
        evhtp_headers_add_header(r->headers_out, evhtp_header_new("Retry-After", "1", 0, 0));
    evhtp_headers_add_header(r->headers_out, evhtp_header_new("Content-Type", ctype, 0, 0));
    evhtp_headers_add_header(r->headers_out,
                             evhtp_header_new("X-Request-Id", req->request_id, 0, 1));
    /* Replies are not cached unless their handler said otherwise (the served documents). */
    if (!evhtp_header_find(r->headers_out, "Cache-Control"))
        evhtp_headers_add_header(r->headers_out,
                                 evhtp_header_new("Cache-Control", "no-store", 0, 0));
    rd_req_cors(req, r->headers_out);
    if (req->body_too_big)
        evhtp_headers_add_header(r->headers_out, evhtp_header_new("Connection", "close", 0, 0));
    bool with_body = body && len && req->method != htp_method_HEAD;
    if (with_body)
        evbuffer_add(r->buffer_out, body, len);
    send_reply(req, status, with_body ? len : 0);
}

void rd_req_log(const rd_req *req, int status, size_t bytes)
{
    const char *method =
        req->method == htp_method_UNKNOWN ? "-" : htparser_get_methodstr_m(req->method);
    rd_logk(status >= 500 ? RD_LOG_WARN : RD_LOG_INFO, "http request", RD_LS("method", method),
            RD_LS("route", req->route_pattern ? req->route_pattern : "-"), RD_LI("status", status),
            RD_LI("bytes", bytes),
            RD_LI("duration_ms", req->start_ms ? rd_mono_ms() - req->start_ms : 0),
            RD_LS("request_id", req->request_id));
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

int rd_req_grant_scope(const rd_req *req)
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

/* --- lifecycle ---------------------------------------------------------------------------- */

const char *rd_req_param(const rd_req *req, const char *name)
{
    for (int i = 0; i < req->route.nparam; i++)
        if (strcmp(req->route.names[i], name) == 0)
            return req->route.values[i];
    return NULL;
}

void rd_req_preflight(rd_req *req)
{
    evhtp_headers_t *out = req->r->headers_out;
    rd_req_cors(req, out);
    evhtp_headers_add_header(
        out, evhtp_header_new("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Access-Control-Allow-Headers",
                                                   "Authorization, Content-Type, x-api-key, "
                                                   "Idempotency-Key, Last-Event-ID",
                                                   0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Access-Control-Max-Age", "600", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("X-Request-Id", req->request_id, 0, 1));
    send_reply(req, 204, 0);
}

void rd_req_dispose(rd_req *req)
{
    free(req->path);
    free(req->pcopy);
    free(req->qbuf);
}

/* --- parked requests ---------------------------------------------------------------------- */

typedef struct parked {
    rd_req req; /* first: the handle given out is &p->req */
    rd_http_hook_fn gone;
    void *arg;
} parked;

static evhtp_res parked_on_fini(evhtp_request_t *r, void *arg)
{
    parked *p = arg;
    p->gone(p->arg);
    rd_req_dispose(&p->req);
    free(p);
    return EVHTP_RES_OK;
}

rd_req *rd_req_park(rd_req *req, rd_http_hook_fn gone, void *arg)
{
    if (req->parked) {
        parked *p = (parked *)req;
        p->gone = gone;
        p->arg = arg;
        return req;
    }
    parked *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    /* The copy takes the buffers over; the segments, captures and query point into them. */
    p->req = *req;
    p->req.parked = true;
    req->path = req->pcopy = req->qbuf = NULL;
    p->gone = gone;
    p->arg = arg;
    evhtp_request_set_hook(req->r, evhtp_hook_on_request_fini, (evhtp_hook)parked_on_fini, p);
    evhtp_request_pause(req->r);
    return &p->req;
}

void *rd_req_parked_by(const rd_req *req)
{
    return req->parked ? ((const parked *)req)->arg : NULL;
}

void rd_req_unpark(rd_req *req)
{
    parked *p = (parked *)req;
    evhtp_request_t *r = req->r;
    evhtp_request_unset_hook(r, evhtp_hook_on_request_fini);
    rd_req_dispose(req);
    free(p);
    evhtp_request_resume(r);
}
