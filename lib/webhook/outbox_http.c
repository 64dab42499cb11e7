/*
 * outbox_http.c: webhook transfers with libcurl's multi-socket API on the daemon's libevent
 * loop (curl's multi-event.c pattern). curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to wake it (CURLMOPT_TIMERFUNCTION); each socket event
 * or timer expiry is handed back with curl_multi_socket_action, and finished transfers are
 * drained with curl_multi_info_read after every action. Nothing here blocks: names are
 * resolved by curl's threaded resolver, and connects are non-blocking.
 *
 * SSRF: the guard runs in CURLOPT_OPENSOCKETFUNCTION, on the very address curl is about to
 * connect to, after DNS resolution: checking the name earlier would leave a window where DNS
 * answers differently the second time. Proxies from the environment are disabled, because
 * with one the guard would check the proxy, not the endpoint.
 */
#include "webhook/outbox_int.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "webhook/outbox_policy.h"
#include "base/util.h"

/* A socket curl asked us to watch. Listed so that rd_outbox_http_free releases the ones curl does
 * not report removed while it closes its connection cache. */
typedef struct http_sock {
    struct event *ev;
    LIST_ENTRY(http_sock) link;
} http_sock;

struct rd_outbox_http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer; /* curl's single timeout */
    LIST_HEAD(, http_sock) socks;
    rd_outbox_done_fn done;
    void *done_arg;
};

/* ---- the loop side ------------------------------------------------------------------------ */

/* Hands every finished transfer to the outbox. Called after each curl_multi_socket_action,
 * outside curl, so the outbox may remove and free the transfer. */
static void http_drain(rd_outbox_http *h)
{
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(h->multi, &left))) {
        CURL *easy = m->easy_handle;
        rd_outbox_result res = {.code = m->data.result};
        rd_outbox_delivery *d = NULL;
        curl_off_t retry_after = 0;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&d);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res.http_status);
        if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
            retry_after > 0)
            res.retry_after_ms = (int64_t)retry_after * 1000;
        res.duration_ms = rd_mono_ms() - d->started_mono;
        if (res.code != CURLE_OK)
            res.error = d->errbuf[0] ? d->errbuf : curl_easy_strerror(res.code);
        h->done(d, &res, h->done_arg); /* m is invalid from here on: it may free easy */
    }
}

static void http_on_event(evutil_socket_t fd, short what, void *arg)
{
    rd_outbox_http *h = arg;
    int running = 0;
    int flags =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);

    curl_multi_socket_action(h->multi, fd, flags, &running);
    http_drain(h);
}

static void http_on_timer(evutil_socket_t fd, short what, void *arg)
{
    rd_outbox_http *h = arg;
    int running = 0;

    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    http_drain(h);
}

/* CURLMOPT_TIMERFUNCTION: one timer for the whole multi handle. A 0 timeout still goes
 * through the loop: curl must not be re-entered from its own callback. */
static int http_on_timer_set(CURLM *multi, long timeout_ms, void *arg)
{
    rd_outbox_http *h = arg;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    if (timeout_ms < 0)
        evtimer_del(h->timer);
    else
        evtimer_add(h->timer, &tv);
    return 0;
}

static void sock_free(http_sock *hs)
{
    LIST_REMOVE(hs, link);
    event_free(hs->ev);
    free(hs);
}

/* CURLMOPT_SOCKETFUNCTION: one persistent libevent event per socket curl uses, kept as the
 * socket's curl_multi_assign pointer. It may be freed from inside its own callback (curl
 * drops a socket during socket_action); libevent allows that for a single-threaded base. */
static int http_on_socket(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    rd_outbox_http *h = arg;
    http_sock *hs = sockp;
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);

    if (what == CURL_POLL_REMOVE) {
        if (hs)
            sock_free(hs);
        return 0;
    }
    if (hs) {
        event_del(hs->ev);
        event_assign(hs->ev, h->base, s, kind, http_on_event, h);
    } else {
        hs = calloc(1, sizeof *hs);
        if (!hs || !(hs->ev = event_new(h->base, s, kind, http_on_event, h))) {
            free(hs);
            return -1; /* curl fails the transfer */
        }
        LIST_INSERT_HEAD(&h->socks, hs, link);
        curl_multi_assign(h->multi, s, hs);
    }
    return event_add(hs->ev, NULL) == 0 ? 0 : -1;
}

/* ---- the transfer side -------------------------------------------------------------------- */

static void describe_addr(const struct sockaddr *sa, char *out, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof host);
    snprintf(out, len, "%s", host);
}

/* CURLOPT_OPENSOCKETFUNCTION: the SSRF guard. Refusing one address lets curl try the next
 * one the name resolved to; the first refusal is kept to explain the failure. */
static curl_socket_t http_on_opensocket(void *arg, curlsocktype purpose, struct curl_sockaddr *a)
{
    rd_outbox_delivery *d = arg;
    const char *why = d->guard ? rd_outbox_policy_addr_blocked(&a->addr) : NULL;

    if (why) {
        if (!d->refused[0]) {
            char host[INET6_ADDRSTRLEN];
            describe_addr(&a->addr, host, sizeof host);
            snprintf(d->refused, sizeof d->refused, "%s is a %s address", host, why);
        }
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* The answer's body is not needed; reading it keeps the connection reusable. */
static size_t http_on_body(char *p, size_t size, size_t n, void *arg)
{
    return size * n;
}

static int setup_easy(rd_outbox_delivery *d, int64_t timeout_ms)
{
    CURL *e = d->easy;
    int64_t connect_ms = timeout_ms < 5000 ? timeout_ms : 5000;
    CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                              \
    if (rc == CURLE_OK)                                                                            \
    rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, d->url);
    SET(CURLOPT_PRIVATE, d);
    SET(CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: we own no signals in lib/ */
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* a redirect is a failed attempt, never followed */
    SET(CURLOPT_PROXY, "");          /* ignore http_proxy & co: see the SSRF note above */
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, d->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->body_len);
    SET(CURLOPT_HTTPHEADER, d->hdrs);
    SET(CURLOPT_USERAGENT, "runsd-webhooks/1");
    SET(CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    SET(CURLOPT_WRITEFUNCTION, http_on_body);
    SET(CURLOPT_ERRORBUFFER, d->errbuf);
    SET(CURLOPT_OPENSOCKETFUNCTION, http_on_opensocket);
    SET(CURLOPT_OPENSOCKETDATA, d);
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

int rd_outbox_http_start(rd_outbox_http *h, rd_outbox_delivery *d, const char *const *headers,
                         int n, int64_t timeout_ms)
{
    d->easy = curl_easy_init();
    if (!d->easy)
        return -1;
    for (int i = 0; i < n; i++) {
        struct curl_slist *l = curl_slist_append(d->hdrs, headers[i]);
        if (!l)
            return -1;
        d->hdrs = l;
    }
    if (setup_easy(d, timeout_ms) != 0)
        return -1;
    d->started_at = rd_now_ms();
    d->started_mono = rd_mono_ms();
    if (curl_multi_add_handle(h->multi, d->easy) != CURLM_OK)
        return -1;
    d->http = h;
    return 0;
}

void rd_outbox_delivery_close(rd_outbox_delivery *d)
{
    if (!d)
        return;
    if (d->http)
        curl_multi_remove_handle(d->http->multi, d->easy);
    if (d->easy)
        curl_easy_cleanup(d->easy);
    curl_slist_free_all(d->hdrs);
    free(d->url);
    free(d->body);
    free(d);
}

/* ---- the multi handle ------------------------------------------------------------------- */

void rd_outbox_http_set_max_conns(rd_outbox_http *h, int max_conns)
{
    /* A cap on sockets in total (curl queues transfers beyond it), and a cache as large, so a
     * busy endpoint keeps its connections instead of reconnecting for every delivery. */
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)max_conns);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, (long)max_conns);
}

rd_outbox_http *rd_outbox_http_new(struct event_base *base, int max_conns, rd_outbox_done_fn done,
                                   void *arg)
{
    rd_outbox_http *h = calloc(1, sizeof *h);

    if (!h)
        return NULL;
    h->base = base;
    h->done = done;
    h->done_arg = arg;
    LIST_INIT(&h->socks);
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, http_on_timer, h);
    if (!h->multi || !h->timer) {
        rd_outbox_http_free(h);
        return NULL;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_on_socket);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_on_timer_set);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    rd_outbox_http_set_max_conns(h, max_conns);
    return h;
}

void rd_outbox_http_free(rd_outbox_http *h)
{
    if (!h)
        return;
    if (h->multi)
        curl_multi_cleanup(h->multi);
    while (!LIST_EMPTY(&h->socks))
        sock_free(LIST_FIRST(&h->socks));
    if (h->timer)
        event_free(h->timer);
    free(h);
}
