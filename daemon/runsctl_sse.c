/*
 * runsctl_sse.c: Server-Sent Events for runsctl. The parser takes bytes as libcurl's write
 * callback hands them over (lines may end in CRLF, LF or CR and be split anywhere; fields id,
 * event, data, retry; comments) and dispatches an event on each blank line. The follower runs
 * one stream on a libcurl multi handle, so the same poll also watches the caller's fds (keys,
 * a signal pipe) and ticks for redraws; it reconnects with Last-Event-ID after a disconnect,
 * waiting the server's retry: interval, doubled on each failed attempt up to 30 s.
 */
#include <curl/curl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runsctl.h"

#define SSE_MAX_LINE (64u << 20) /* a run.end with a big result is one line */
#define BACKOFF_MAX_MS 30000L
#define RC_IDLE_MS 60000L

static bool grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    char *q = realloc(*p, c);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static void sse_dispatch(rc_sse_parser *p)
{
    /* The id becomes the resume point only now, with its event whole (a connection cut in
     * the middle of an event resumes before it). */
    memcpy(p->last_id, p->id_buf, sizeof p->last_id);
    if (p->dlen == 0) { /* no data: nothing is dispatched, the type is forgotten */
        p->event[0] = 0;
        return;
    }
    p->data[--p->dlen] = 0; /* the last data line's '\n' */
    if (!p->stopped)
        p->stopped = p->on_event(p->arg, p->last_id, p->event[0] ? p->event : "message", p->data);
    p->dlen = 0;
    p->event[0] = 0;
}

static void sse_field(rc_sse_parser *p, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    size_t fn = colon ? (size_t)(colon - line) : n;
    const char *v = colon ? colon + 1 : line + n;
    size_t vn = (size_t)(line + n - v);
    if (vn && *v == ' ') {
        v++;
        vn--;
    }
    if (fn == 4 && memcmp(line, "data", 4) == 0) {
        if (!grow(&p->data, &p->dcap, p->dlen + vn + 2)) {
            p->stopped = RC_STOP(RC_ERR);
            return;
        }
        memcpy(p->data + p->dlen, v, vn);
        p->dlen += vn;
        p->data[p->dlen++] = '\n';
        p->data[p->dlen] = 0;
    } else if (fn == 5 && memcmp(line, "event", 5) == 0) {
        snprintf(p->event, sizeof p->event, "%.*s", (int)vn, v);
    } else if (fn == 2 && memcmp(line, "id", 2) == 0) {
        if (!memchr(v, 0, vn) && vn < sizeof p->id_buf)
            snprintf(p->id_buf, sizeof p->id_buf, "%.*s", (int)vn, v);
    } else if (fn == 5 && memcmp(line, "retry", 5) == 0) {
        long ms = 0;
        size_t i;
        for (i = 0; i < vn && v[i] >= '0' && v[i] <= '9' && ms < 100000000; i++)
            ms = ms * 10 + (v[i] - '0');
        if (vn && i == vn)
            p->retry_ms = ms;
    } /* unknown fields are ignored, as EventSource does */
}

static void sse_line(rc_sse_parser *p)
{
    char *l = p->line;
    size_t n = p->len;
    if (!p->started) { /* a UTF-8 BOM may open the stream */
        p->started = true;
        if (n >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0) {
            l += 3;
            n -= 3;
        }
    }
    if (n == 0)
        sse_dispatch(p);
    else if (l[0] != ':') /* ':' starts a comment (the heartbeat) */
        sse_field(p, l, n);
    p->len = 0;
}

void rc_sse_feed(rc_sse_parser *p, const char *buf, size_t n)
{
    for (size_t i = 0; i < n && !p->stopped; i++) {
        char c = buf[i];
        if (c == '\n' && p->seen_cr) { /* the LF of a CRLF split after its CR */
            p->seen_cr = false;
            continue;
        }
        p->seen_cr = c == '\r';
        if (c == '\r' || c == '\n') {
            if (p->line)
                p->line[p->len] = 0;
            sse_line(p);
            continue;
        }
        if (p->len + 2 > SSE_MAX_LINE || !grow(&p->line, &p->cap, p->len + 2)) {
            fprintf(stderr, "runsctl: an event stream line is too long\n");
            p->stopped = RC_STOP(RC_ERR);
            return;
        }
        p->line[p->len++] = c;
    }
}

void rc_sse_reset(rc_sse_parser *p)
{
    memcpy(p->id_buf, p->last_id, sizeof p->id_buf);
    p->len = p->dlen = 0;
    p->event[0] = 0;
    p->seen_cr = p->started = false;
}

void rc_sse_dispose(rc_sse_parser *p)
{
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->cap = p->dcap = 0;
}

/* ---- the follower ---- */

typedef struct follower {
    rc_http *h;
    CURL *e;
    const rc_follow_cb *cb;
    rc_sse_parser p;
    long status;
    bool is_sse, opened, got_data;
    char body[4096]; /* an error answer's start */
    size_t blen;
    long last_rx_ms; /* when bytes last arrived (or the attempt started) */
    struct curl_waitfd wfd[4];
    int nfds;
} follower;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static size_t follow_on_write(char *d, size_t sz, size_t nm, void *arg)
{
    follower *f = arg;
    size_t n = sz * nm;
    f->last_rx_ms = now_ms();
    if (!f->status) { /* the first bytes of the body: the head is in */
        char *ct = NULL;
        curl_easy_getinfo(f->e, CURLINFO_RESPONSE_CODE, &f->status);
        curl_easy_getinfo(f->e, CURLINFO_CONTENT_TYPE, &ct);
        f->is_sse = f->status == 200 && ct && strstr(ct, "text/event-stream");
        if (f->is_sse && f->cb->on_conn)
            f->cb->on_conn(f->cb->arg, RC_CONN_OPEN, 0, NULL);
        f->opened |= f->is_sse;
    }
    if (f->is_sse) {
        f->got_data = true;
        rc_sse_feed(&f->p, d, n);
    } else {
        size_t k = n < sizeof f->body - 1 - f->blen ? n : sizeof f->body - 1 - f->blen;
        memcpy(f->body + f->blen, d, k);
        f->blen += k;
        f->body[f->blen] = 0;
    }
    return n;
}

/* The extra fds that poll readable: their callbacks; a stop code or 0. */
static int follow_fds(follower *f)
{
    for (int i = 0; i < f->nfds; i++) {
        if (!(f->wfd[i].revents & (CURL_WAIT_POLLIN | CURL_WAIT_POLLPRI)))
            continue;
        f->wfd[i].revents = 0;
        int r = f->cb->on_fd ? f->cb->on_fd(f->cb->arg, f->wfd[i].fd) : 0;
        if (r)
            return r;
    }
    return 0;
}

/* Waits ms while serving the fds and ticks; a stop code or 0. */
static int follow_idle(follower *f, long ms)
{
    long end = now_ms() + ms;
    for (long left; (left = end - now_ms()) > 0;) {
        struct pollfd pf[4];
        for (int i = 0; i < f->nfds; i++)
            pf[i] = (struct pollfd){.fd = f->wfd[i].fd, .events = POLLIN};
        int n = poll(pf, (nfds_t)f->nfds, left < 200 ? (int)left : 200);
        for (int i = 0; n > 0 && i < f->nfds; i++)
            f->wfd[i].revents = (pf[i].revents & (POLLIN | POLLHUP)) ? CURL_WAIT_POLLIN : 0;
        int r = n > 0 ? follow_fds(f) : 0;
        if (!r && f->cb->on_tick)
            r = f->cb->on_tick(f->cb->arg);
        if (r)
            return r;
    }
    return 0;
}

/* Options of one attempt on the easy handle e. */
static struct curl_slist *follow_setup(follower *f, CURL *e, const char *url)
{
    struct curl_slist *hd = curl_slist_append(NULL, "Accept: text/event-stream");
    char lei[128];
    if (f->h->auth)
        hd = curl_slist_append(hd, f->h->auth);
    if (f->p.last_id[0]) {
        snprintf(lei, sizeof lei, "Last-Event-ID: %s", f->p.last_id);
        hd = curl_slist_append(hd, lei);
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (f->h->unix_path)
        curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, f->h->unix_path);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "runsctl/" RUNSD_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, follow_on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    return hd;
}

/* One attempt: runs the transfer until it ends or a callback stops it. Returns a stop code,
 * or 0 with *cc the transfer's result. */
static int follow_transfer(follower *f, CURLM *m, CURLcode *cc)
{
    int running = 1, r = 0;
    *cc = CURLE_OK;
    while (!r) {
        curl_multi_perform(m, &running);
        r = f->p.stopped;
        int left;
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                *cc = msg->data.result;
                running = 0;
            }
        if (!r && f->cb->on_tick)
            r = f->cb->on_tick(f->cb->arg);
        if (r || !running)
            break;
        /* Heartbeats come every 15 s by default (libcurl's low-speed check cannot tell a
         * few bytes a quarter-minute from a dead peer): a minute of silence is a dead link. */
        if (now_ms() - f->last_rx_ms > RC_IDLE_MS) {
            *cc = CURLE_OPERATION_TIMEDOUT;
            break;
        }
        int n = 0;
        for (int i = 0; i < f->nfds; i++)
            f->wfd[i].revents = 0;
        curl_multi_wait(m, f->wfd, (unsigned)f->nfds, 200, &n);
        r = follow_fds(f);
    }
    return r;
}

/* What a finished attempt means: 0 to reconnect after *delay_ms, or RC_STOP(exit code). */
static int follow_outcome(follower *f, CURLcode cc, const char *url, long *delay_ms, char *why,
                          size_t wn)
{
    if (f->status == 204)
        return RC_STOP(f->cb->on_end ? f->cb->on_end(f->cb->arg, 204) : RC_OK);
    if (cc != CURLE_OK && !f->opened && !f->status) {
        fprintf(stderr, "runsctl: cannot reach %s: %s\n", f->h->url, curl_easy_strerror(cc));
        return RC_STOP(RC_CONNECT);
    }
    if (f->status && f->status != 200 && f->status != 429 && f->status < 500) {
        char what[300];
        snprintf(what, sizeof what, "GET %s", url + strlen(f->h->base));
        rc_print_http_error(what, f->status, f->body, f->blen);
        return RC_STOP(rc_exit_for_http(f->status));
    }
    if (f->status == 200 && !f->is_sse) {
        fprintf(stderr, "runsctl: %s did not answer with an event stream\n", url);
        return RC_STOP(RC_ERR);
    }
    curl_off_t ra = 0;
    curl_easy_getinfo(f->e, CURLINFO_RETRY_AFTER, &ra);
    if (ra > 0 && ra * 1000 > *delay_ms)
        *delay_ms = ra * 1000 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : (long)ra * 1000;
    if (f->status && f->status != 200)
        snprintf(why, wn, "HTTP %ld", f->status);
    else
        snprintf(why, wn, "%s",
                 cc == CURLE_OK ? "the server closed the stream" : curl_easy_strerror(cc));
    return 0;
}

int rc_follow(rc_http *h, const char *path, const char *last_id, const int *fds, int nfds,
              const rc_follow_cb *cb)
{
    follower f = {.h = h, .cb = cb, .nfds = nfds < 4 ? nfds : 4};
    f.p.on_event = cb->on_event;
    f.p.arg = cb->arg;
    if (last_id)
        snprintf(f.p.last_id, sizeof f.p.last_id, "%s", last_id);
    memcpy(f.p.id_buf, f.p.last_id, sizeof f.p.id_buf);
    for (int i = 0; i < f.nfds; i++)
        f.wfd[i] = (struct curl_waitfd){.fd = fds[i], .events = CURL_WAIT_POLLIN};
    char *url = NULL;
    CURLM *m = curl_multi_init();
    f.e = curl_easy_init();
    if (!m || !f.e || asprintf(&url, "%s%s", h->base, path) < 0) {
        fprintf(stderr, "runsctl: out of memory\n");
        return RC_ERR;
    }
    int rc = 0, failures = 0;
    while (!rc) {
        f.status = 0;
        f.is_sse = f.got_data = false;
        f.blen = 0;
        f.last_rx_ms = now_ms();
        rc_sse_reset(&f.p);
        curl_easy_reset(f.e);
        struct curl_slist *hd = follow_setup(&f, f.e, url);
        if (cb->on_conn)
            cb->on_conn(cb->arg, RC_CONN_CONNECTING, 0, NULL);
        curl_multi_add_handle(m, f.e);
        CURLcode cc;
        rc = follow_transfer(&f, m, &cc);
        curl_multi_remove_handle(m, f.e);
        curl_slist_free_all(hd);
        if (rc)
            break;
        /* A connection that delivered events starts the back-off over. */
        failures = f.got_data ? 0 : failures + 1;
        long base = f.p.retry_ms > 0 ? f.p.retry_ms : 1000;
        long delay = failures <= 1 ? base : base << (failures - 1 < 5 ? failures - 1 : 5);
        delay = delay > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay;
        char why[200];
        rc = follow_outcome(&f, cc, url, &delay, why, sizeof why);
        if (rc)
            break;
        if (cb->on_conn)
            cb->on_conn(cb->arg, RC_CONN_LOST, delay, why);
        rc = follow_idle(&f, delay);
    }
    curl_easy_cleanup(f.e);
    curl_multi_cleanup(m);
    rc_sse_dispose(&f.p);
    free(url);
    return rc >= 1000 ? rc - 1000 : rc;
}
