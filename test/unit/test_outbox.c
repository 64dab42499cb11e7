/*
 * test_outbox.c: the webhook outbox. First its pure decisions (event types, what an answer
 * means, retry schedule and jitter, SSRF address classes), then the outbox itself on a real
 * store and a real event_base, delivering over loopback to an evhttp receiver that runs on
 * the same loop. No test sleeps: each dispatches the loop until its condition holds, under a
 * deadline that fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "webhook/outbox.h"
#include "webhook/outbox_policy.h"
#include "store/store.h"
#include "base/util.h"
#include "webhook/webhook_sign.h"
#include "base/metrics.h"

#define SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

/* ---- pure decisions --------------------------------------------------------------------- */

static void test_types(void **state)
{
    const char *defaults[] = {"run.succeeded", "run.incomplete", "run.failed", "run.crashed",
                              "run.cancelled"};
    const char *opt_in[] = {"run.paused", "run.auth_required", "run.item"};

    for (size_t i = 0; i < 5; i++)
        assert_true(rd_outbox_policy_type_known(defaults[i]) &&
                    rd_outbox_policy_type_default(defaults[i]));
    for (size_t i = 0; i < 3; i++)
        assert_true(rd_outbox_policy_type_known(opt_in[i]) &&
                    !rd_outbox_policy_type_default(opt_in[i]));
    assert_false(rd_outbox_policy_type_known("run.status"));
    assert_false(rd_outbox_policy_type_known("run.succeeded "));
    assert_false(rd_outbox_policy_type_known(NULL));
}

static void test_classify(void **state)
{
    long delivered[] = {200, 201, 202, 204, 299};
    long retry[] = {0, 100, 300, 301, 302, 400, 401, 404, 409, 429, 500, 502, 503, 599};

    for (size_t i = 0; i < sizeof delivered / sizeof *delivered; i++)
        assert_int_equal(rd_outbox_policy_classify(delivered[i]), RD_HOOK_DELIVERED);
    for (size_t i = 0; i < sizeof retry / sizeof *retry; i++)
        assert_int_equal(rd_outbox_policy_classify(retry[i]), RD_HOOK_RETRY);
    assert_int_equal(rd_outbox_policy_classify(410), RD_HOOK_STOP);
    assert_true(rd_outbox_policy_honours_retry_after(429));
    assert_true(rd_outbox_policy_honours_retry_after(500));
    assert_true(rd_outbox_policy_honours_retry_after(503));
    assert_false(rd_outbox_policy_honours_retry_after(404));
    assert_false(rd_outbox_policy_honours_retry_after(410));
    assert_false(rd_outbox_policy_honours_retry_after(0));
}

static void test_retry_schedule(void **state)
{
    const int64_t s[] = {5000, 300000, 1800000};
    const int64_t day = 24LL * 3600 * 1000;

    /* rnd spans the jitter: 0 -> -20%, 2^31 -> exact, 2^32-1 -> just under +20%. */
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 1, 0, 0), 4000);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 1, 0, 0x80000000u), 5000);
    assert_in_range(rd_outbox_policy_retry_delay(s, 3, 1, 0, 0xffffffffu), 5999, 6000);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 2, 0, 0x80000000u), 300000);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 3, 0, 0), 1440000);
    /* The schedule is spent after n retries: give up. */
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 4, 0, 0), -1);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 0, 0, 0), -1);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 0, 1, 0, 0), -1);
    /* Retry-After is a floor, not a replacement, and is capped. */
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 1, 60000, 0), 60000);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 1, 1000, 0x80000000u), 5000);
    assert_int_equal(rd_outbox_policy_retry_delay(s, 3, 1, 10 * day, 0), day);
}

static void test_jitter_spread(void **state)
{
    const int64_t s[] = {10000};
    int64_t lo = INT64_MAX, hi = 0;

    for (int i = 0; i < 2000; i++) {
        uint32_t rnd;
        assert_int_equal(rd_random_bytes(&rnd, sizeof rnd), 0);
        int64_t d = rd_outbox_policy_retry_delay(s, 1, 1, 0, rnd);
        assert_in_range(d, 8000, 12000);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    /* Random draws cover most of the +-20% band (not one fixed value). */
    assert_true(lo < 8400 && hi > 11600);
}

static void test_default_schedule(void **state)
{
    rd_config *cfg = NULL;
    char err[256];
    const int64_t want[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};

    assert_int_equal(
        rd_config_parse_string("[flow.a]\ncommand = /bin/true\n", "t.ini", &cfg, err, sizeof err),
        0);
    assert_int_equal(cfg->n_retry, 7);
    for (int i = 0; i < 7; i++)
        assert_int_equal(cfg->retry_schedule_ms[i], want[i]);
    assert_false(cfg->hook_allow_private);
    rd_config_free(cfg);
}

static const char *classify(const char *addr)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};

    if (inet_pton(AF_INET, addr, &in.sin_addr) == 1)
        return rd_outbox_policy_addr_blocked((struct sockaddr *)&in);
    if (inet_pton(AF_INET6, addr, &in6.sin6_addr) == 1)
        return rd_outbox_policy_addr_blocked((struct sockaddr *)&in6);
    fail_msg("bad test address %s", addr);
    return NULL;
}

static void test_ssrf_classes(void **state)
{
    static const struct {
        const char *addr, *why; /* why NULL: allowed */
    } cases[] = {
        {"127.0.0.1", "loopback"},
        {"127.255.255.254", "loopback"},
        {"10.1.2.3", "private"},
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "shared (CGNAT)"},
        {"100.127.255.255", "shared (CGNAT)"},
        {"169.254.169.254", "link-local"},
        {"0.0.0.0", "this-network"},
        {"0.1.2.3", "this-network"},
        {"224.0.0.1", "multicast"},
        {"255.255.255.255", "reserved"},
        {"192.0.0.8", "reserved"},
        {"8.8.8.8", NULL},
        {"1.1.1.1", NULL},
        {"172.15.255.255", NULL},
        {"172.32.0.1", NULL},
        {"100.63.255.255", NULL},
        {"100.128.0.1", NULL},
        {"192.169.0.1", NULL},
        {"169.253.0.1", NULL},
        {"11.0.0.1", NULL},
        {"93.184.216.34", NULL},
        {"::1", "loopback"},
        {"::", "unspecified"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.0.0.1", "private"},
        {"::ffff:169.254.169.254", "link-local"},
        {"::127.0.0.1", "loopback"},
        {"64:ff9b::7f00:1", "loopback"},
        {"2002:7f00:1::1", "loopback"},
        {"2002:c0a8:101::1", "private"},
        {"fc00::1", "private"},
        {"fdff:ffff::1", "private"},
        {"fe80::1", "link-local"},
        {"febf::1", "link-local"},
        {"fec0::1", "site-local"},
        {"ff02::1", "multicast"},
        {"::ffff:8.8.8.8", NULL},
        {"2001:4860:4860::8888", NULL},
        {"2002:808:808::1", NULL},
        {"2606:4700::1111", NULL},
        {"fbff::1", NULL},
    };

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *got = classify(cases[i].addr);
        if (cases[i].why == NULL && got != NULL)
            fail_msg("%s: refused as %s, should be allowed", cases[i].addr, got);
        if (cases[i].why != NULL && (got == NULL || strcmp(got, cases[i].why) != 0))
            fail_msg("%s: %s, expected %s", cases[i].addr, got ? got : "allowed", cases[i].why);
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_non_null(rd_outbox_policy_addr_blocked(&un));
}

/* ---- the outbox on a loop --------------------------------------------------------------- */

#define MAX_REQ 16

/* An evhttp receiver on the test's own loop, answering from a script. */
typedef struct rx {
    struct evhttp *http;
    int port;
    int script[8], n_script; /* statuses in order, the last repeats; 0 = never answer */
    int n;
    char id[MAX_REQ][40], ts[MAX_REQ][24], sig[MAX_REQ][200];
    char *body[MAX_REQ];
} rx;

typedef struct fx {
    struct event_base *base;
    struct event *tick;
    char dir[64];
    rd_store *store;
    rd_config *cfg;
    rd_outbox *ob;
    rx rx;
    rd_run *run;
} fx;

static void rx_on_request(struct evhttp_request *req, void *arg)
{
    rx *r = arg;
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    int i = r->n < MAX_REQ ? r->n : MAX_REQ - 1;
    int status = r->script[r->n < r->n_script ? r->n : r->n_script - 1];
    size_t len = evbuffer_get_length(in);
    const char *v;

    snprintf(r->id[i], sizeof r->id[i], "%s", (v = evhttp_find_header(h, "webhook-id")) ? v : "");
    snprintf(r->ts[i], sizeof r->ts[i], "%s",
             (v = evhttp_find_header(h, "webhook-timestamp")) ? v : "");
    snprintf(r->sig[i], sizeof r->sig[i], "%s",
             (v = evhttp_find_header(h, "webhook-signature")) ? v : "");
    free(r->body[i]);
    r->body[i] = calloc(1, len + 1);
    evbuffer_remove(in, r->body[i], len);
    r->n++;
    if (status != 0)
        evhttp_send_reply(req, status, "scripted", NULL);
}

static int rx_start(fx *f, const int *script, int n)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;

    memcpy(f->rx.script, script, sizeof *script * (size_t)n);
    f->rx.n_script = n;
    f->rx.http = evhttp_new(f->base);
    bs = evhttp_bind_socket_with_handle(f->rx.http, "127.0.0.1", 0);
    assert_non_null(bs);
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len);
    f->rx.port = ntohs(sin.sin_port);
    evhttp_set_gencb(f->rx.http, rx_on_request, &f->rx);
    return f->rx.port;
}

static void fx_on_tick(evutil_socket_t fd, short what, void *arg) {}

static rd_config *config(const char *webhooks)
{
    char text[1024], err[256];
    rd_config *cfg = NULL;

    snprintf(text, sizeof text, "[webhooks]\n%s\n[flow.a]\ncommand = /bin/true\n", webhooks);
    if (rd_config_parse_string(text, "t.ini", &cfg, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    return cfg;
}

/* A fixture with a store, an outbox configured by webhooks (lines of [webhooks]), a
 * receiver answering script, and a run whose webhook points at it. */
static fx *fx_new(const char *webhooks, const int *script, int n, const char *events)
{
    fx *f = calloc(1, sizeof *f);
    char path[128], err[256], url[128];
    struct timeval tv = {0, 10000};

    f->base = event_base_new();
    f->tick = event_new(f->base, -1, EV_PERSIST, fx_on_tick, NULL);
    event_add(f->tick, &tv); /* the loop wakes up to check deadlines */
    snprintf(f->dir, sizeof f->dir, "/tmp/test_outbox.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(path, sizeof path, "%s/runsd.db", f->dir);
    assert_int_equal(rd_store_open_sqlite(path, NULL, &f->store, err, sizeof err), 0);
    f->cfg = config(webhooks);
    f->ob = rd_outbox_new(f->base, f->store, f->cfg);
    assert_non_null(f->ob);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", rx_start(f, script, n));
    f->run = rd_run_new();
    snprintf(f->run->id, sizeof f->run->id, "run_outboxtest000000000001");
    f->run->webhook = json_pack("{s:s, s:s}", "url", url, "secret", SECRET);
    if (events)
        json_object_set_new(f->run->webhook, "events", json_loads(events, 0, NULL));
    return f;
}

static void fx_free(fx *f)
{
    rd_outbox_free(f->ob);
    rd_store_close(f->store);
    evhttp_free(f->rx.http);
    for (int i = 0; i < MAX_REQ; i++)
        free(f->rx.body[i]);
    rd_run_free(f->run);
    rd_config_free(f->cfg);
    event_free(f->tick);
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

/* What the engine does: record inside a transaction, commit, then kick. */
static void fx_event(fx *f, const char *type)
{
    json_t *wire = json_pack("{s:s, s:s}", "id", f->run->id, "status", "succeeded");

    assert_int_equal(rd_outbox_enqueue(f->ob, f->run, type, wire), 0);
    json_decref(wire);
    assert_int_equal(rd_store_commit(f->store), 0);
    rd_outbox_kick(f->ob);
}

typedef struct rows {
    int n;
    char id[8][RD_DLV_ID_MAX];
    int state[8], attempts[8], code[8];
} rows;

static int rows_on_row(const rd_delivery *d, void *arg)
{
    rows *r = arg;

    if (r->n < 8) {
        snprintf(r->id[r->n], sizeof r->id[0], "%s", d->id);
        r->state[r->n] = d->state;
        r->attempts[r->n] = d->attempts;
        r->code[r->n++] = d->last_code;
    }
    return 0;
}

static rows fx_rows(fx *f)
{
    rows r = {0};

    assert_int_equal(rd_store_dlv_run_scan(f->store, f->run->id, 0, 8, rows_on_row, &r, NULL), 0);
    return r;
}

/* Dispatches the loop until row i of the run is in state st with attempts attempts. */
static void until_row(fx *f, int i, int st, int attempts)
{
    int64_t end = rd_mono_ms() + 15000;
    rows r;

    while (r = fx_rows(f), !(r.n > i && r.state[i] == st && r.attempts[i] == attempts)) {
        if (rd_mono_ms() > end)
            fail_msg("row %d: state %d attempts %d, waited for %d/%d", i, r.n > i ? r.state[i] : -1,
                     r.n > i ? r.attempts[i] : -1, st, attempts);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void until_requests(fx *f, int n)
{
    int64_t end = rd_mono_ms() + 15000;

    while (f->rx.n < n) {
        if (rd_mono_ms() > end)
            fail_msg("%d requests, waited for %d", f->rx.n, n);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void assert_signed(fx *f, int i)
{
    assert_true(rd_whsig_verify(SECRET, f->rx.sig[i], f->rx.id[i], atoll(f->rx.ts[i]),
                                f->rx.body[i], strlen(f->rx.body[i])));
}

static void test_delivers_signed(void **state)
{
    const int script[] = {200};
    fx *f = fx_new("allow_private = yes", script, 1, NULL);

    assert_true(rd_outbox_wants(f->ob, f->run, "run.succeeded"));
    assert_false(rd_outbox_wants(f->ob, f->run, "run.item"));
    fx_event(f, "run.succeeded");
    fx_event(f, "run.item"); /* not subscribed: nothing recorded */
    until_row(f, 0, RD_DLV_DELIVERED, 1);
    assert_int_equal(fx_rows(f).n, 1);
    assert_int_equal(f->rx.n, 1);
    assert_string_equal(f->rx.id[0], fx_rows(f).id[0]);
    assert_signed(f, 0);
    assert_non_null(strstr(f->rx.body[0], "\"type\":\"run.succeeded\""));
    assert_non_null(strstr(f->rx.body[0], "\"data\":{\"id\":\"run_outboxtest"));
    fx_free(f);
}

static void test_retries_same_id_then_delivers(void **state)
{
    const int script[] = {500, 503, 200};
    fx *f = fx_new("allow_private = yes\nretry_schedule = 20ms 20ms 20ms", script, 3, NULL);

    fx_event(f, "run.failed");
    until_row(f, 0, RD_DLV_DELIVERED, 3);
    assert_int_equal(f->rx.n, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(f->rx.id[i], f->rx.id[0]);
        assert_string_equal(f->rx.body[i], f->rx.body[0]);
        assert_signed(f, i);
    }
    fx_free(f);
}

static void test_gives_up(void **state)
{
    const int script[] = {500};
    fx *f = fx_new("allow_private = yes\nretry_schedule = 10ms 10ms", script, 1, NULL);

    fx_event(f, "run.crashed");
    until_row(f, 0, RD_DLV_FAILED, 3);
    assert_int_equal(fx_rows(f).code[0], 500);
    fx_free(f);
}

static void test_410_stops_the_endpoint(void **state)
{
    const int script[] = {410, 200};
    /* One connection: the deliveries go one after the other. */
    fx *f = fx_new("allow_private = yes\nmax_connections = 1", script, 2,
                   "[\"run.item\", \"run.succeeded\"]");

    fx_event(f, "run.item");
    fx_event(f, "run.item");
    until_row(f, 0, RD_DLV_STOPPED, 1);
    until_row(f, 1, RD_DLV_STOPPED, 0);
    fx_event(f, "run.succeeded"); /* later events to the same endpoint: recorded, not sent */
    until_row(f, 2, RD_DLV_STOPPED, 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(f->rx.n, 1);
    fx_free(f);
}

static void test_ssrf_refused(void **state)
{
    const int script[] = {200};
    fx *f = fx_new("allow_private = no", script, 1, NULL);

    fx_event(f, "run.succeeded");
    until_row(f, 0, RD_DLV_FAILED, 1);
    assert_int_equal(f->rx.n, 0);
    fx_free(f);
}

static void test_recover_and_redeliver(void **state)
{
    const int script[] = {200};
    fx *f = fx_new("allow_private = yes", script, 1, NULL);
    rows r;

    /* A delivery leased by a daemon that then died: sending in the store, nothing in flight. */
    json_t *wire = json_pack("{s:s}", "id", f->run->id);
    assert_int_equal(rd_outbox_enqueue(f->ob, f->run, "run.succeeded", wire), 0);
    json_decref(wire);
    r = fx_rows(f);
    assert_int_equal(rd_store_dlv_lease(f->store, r.id[0]), 0);
    assert_int_equal(rd_store_commit(f->store), 0);
    assert_int_equal(fx_rows(f).state[0], RD_DLV_SENDING);
    assert_int_equal(rd_outbox_recover(f->ob), 0);
    until_row(f, 0, RD_DLV_DELIVERED, 1);
    assert_int_equal(rd_outbox_redeliver(f->ob, r.id[0]), 0);
    assert_int_equal(rd_outbox_redeliver(f->ob, "msg_none"), RD_ENOTFOUND);
    until_row(f, 0, RD_DLV_DELIVERED, 2);
    assert_int_equal(f->rx.n, 2);
    assert_string_equal(f->rx.id[1], r.id[0]);
    assert_signed(f, 1);
    fx_free(f);
}

static void test_free_in_flight_returns_to_pending(void **state)
{
    const int script[] = {0}; /* never answers */
    fx *f = fx_new("allow_private = yes\ntimeout = 1m", script, 1, NULL);

    fx_event(f, "run.succeeded");
    until_requests(f, 1);
    assert_int_equal(fx_rows(f).state[0], RD_DLV_SENDING);
    assert_true(rd_outbox_in_flight(f->ob, fx_rows(f).id[0]));
    assert_int_equal(rd_outbox_redeliver(f->ob, fx_rows(f).id[0]), RD_ECONFLICT);
    rd_outbox_free(f->ob);
    f->ob = NULL;
    assert_int_equal(fx_rows(f).state[0], RD_DLV_PENDING);
    fx_free(f);
}

/* runsd_webhook_backlog as a scrape shows it (-1 when absent). */
static double backlog(rd_metrics *m)
{
    size_t len;
    char *text = rd_metrics_expose(m, &len);
    const char *name = "\nrunsd_webhook_backlog ", *p;
    double v = -1;

    assert_non_null(text);
    if ((p = strstr(text, name)))
        v = atof(p + strlen(name));
    free(text);
    return v;
}

/* The backlog gauge counts pending and sending deliveries (refused ones waiting for their
 * retry included), not delivered ones; it counts again only after a change, and then not
 * sooner than a second after its last count. */
static void test_backlog_gauge(void **state)
{
    const int script[] = {500};
    fx *f = fx_new("allow_private = yes\nretry_schedule = 1m", script, 1, NULL);
    rd_metrics *m = rd_metrics_new();
    int64_t counted, end;
    rows r;

    assert_int_equal(rd_outbox_set_metrics(f->ob, m), 0);
    counted = rd_mono_ms();
    assert_true(backlog(m) == 0);
    fx_event(f, "run.succeeded");
    fx_event(f, "run.failed");
    if (rd_mono_ms() - counted < 900)
        assert_true(backlog(m) == 0); /* changed, but counted less than a second ago */
    until_row(f, 1, RD_DLV_PENDING, 1);
    until_row(f, 0, RD_DLV_PENDING, 1); /* both refused once; the next try is a minute away */
    end = rd_mono_ms() + 5000;
    while (backlog(m) != 2) {
        if (rd_mono_ms() > end)
            fail_msg("backlog %g, waited for 2", backlog(m));
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    assert_true(rd_mono_ms() - counted >= 1000);
    f->rx.script[0] = 200; /* the receiver accepts from now on */
    r = fx_rows(f);
    for (int i = 0; i < 2; i++)
        assert_int_equal(rd_outbox_redeliver(f->ob, r.id[i]), 0);
    until_row(f, 0, RD_DLV_DELIVERED, 2);
    until_row(f, 1, RD_DLV_DELIVERED, 2);
    end = rd_mono_ms() + 5000;
    while (backlog(m) != 0) {
        if (rd_mono_ms() > end)
            fail_msg("backlog %g, waited for 0", backlog(m));
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    fx_free(f);
    rd_metrics_free(m);
}

static void test_check_webhook(void **state)
{
    char err[320];
    json_t *ok = json_pack("{s:s, s:[s,s], s:s}", "url", "https://hooks.example.com/x?y=1",
                           "events", "run.item", "run.paused", "secret", SECRET);
    json_t *bad_ev = json_pack("{s:s, s:[s]}", "url", "http://a.example/", "events", "run.status");
    json_t *bad_sec = json_pack("{s:s, s:s}", "url", "http://a.example/", "secret", "whsec_!!");
    json_t *bad_url = json_pack("{s:s}", "url", "http://exa mple/");

    assert_int_equal(rd_outbox_check_webhook(ok, err, sizeof err), 0);
    assert_int_equal(rd_outbox_check_webhook(bad_ev, err, sizeof err), RD_EINVAL);
    assert_non_null(strstr(err, "events[0]"));
    assert_int_equal(rd_outbox_check_webhook(bad_sec, err, sizeof err), RD_EINVAL);
    assert_non_null(strstr(err, "secret"));
    assert_int_equal(rd_outbox_check_webhook(bad_url, err, sizeof err), RD_EINVAL);
    assert_non_null(strstr(err, "url"));
    json_decref(ok);
    json_decref(bad_ev);
    json_decref(bad_sec);
    json_decref(bad_url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_retry_schedule),
        cmocka_unit_test(test_jitter_spread),
        cmocka_unit_test(test_default_schedule),
        cmocka_unit_test(test_ssrf_classes),
        cmocka_unit_test(test_check_webhook),
        cmocka_unit_test(test_delivers_signed),
        cmocka_unit_test(test_retries_same_id_then_delivers),
        cmocka_unit_test(test_gives_up),
        cmocka_unit_test(test_410_stops_the_endpoint),
        cmocka_unit_test(test_ssrf_refused),
        cmocka_unit_test(test_recover_and_redeliver),
        cmocka_unit_test(test_free_in_flight_returns_to_pending),
        cmocka_unit_test(test_backlog_gauge),
    };

    rd_log_set_level(RD_LOG_ERR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
