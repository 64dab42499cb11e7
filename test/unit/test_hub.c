/*
 * test_hub.c: unit tests for lib/hub.c, the SSE fan-out core, on plain evbuffers: a fake
 * sink per subscriber (what the transport holds, what "reached the wire", how it was
 * closed) and a fake store (an array). Covered: routing by run and global filters, one
 * frame shared by reference among subscribers, a burst coalesced into one send, the unsent
 * bound (a stalled reader is cut off, the others go on), replay paged by draining, the
 * switch from replay to live with no gap and no duplicate while events keep arriving,
 * replay bounded by the last published id, run.end closing a run stream, close_all, and
 * readers whose sockets are full lagging (a bound each, whatever the event count) and catching
 * up from the store.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "stream/hub.h"
#include "stream/hub_int.h" /* RING_EVENTS */

/* --- fake store ------------------------------------------------------------------------- */

typedef struct fake_ev {
    int64_t id;
    char run_id[16];
    char flow[16];
    char type[24];
    char data[1200];
    char variant[1200]; /* what RD_AUD_READ sees instead, or "" */
} fake_ev;

typedef struct fake_store {
    fake_ev *ev;
    size_t n, cap;
    int scans;
    bool busy;     /* committing: a scan answers RD_EAGAIN */
    int busy_asks; /* scans answered so */
} fake_store;

static fake_ev *store_add(fake_store *s, const char *run, const char *flow, const char *type,
                          size_t pad)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->ev = realloc(s->ev, s->cap * sizeof *s->ev);
        assert_non_null(s->ev);
    }
    fake_ev *e = &s->ev[s->n];
    memset(e, 0, sizeof *e);
    e->id = (int64_t)s->n + 1;
    snprintf(e->run_id, sizeof e->run_id, "%s", run);
    snprintf(e->flow, sizeof e->flow, "%s", flow);
    snprintf(e->type, sizeof e->type, "%s", type);
    int n = snprintf(e->data, sizeof e->data, "{\"n\":%" PRId64 ",\"pad\":\"", e->id);
    for (size_t i = 0; i < pad && (size_t)n < sizeof e->data - 3; i++)
        e->data[n++] = 'x';
    snprintf(e->data + n, sizeof e->data - (size_t)n, "\"}");
    s->n++;
    return e;
}

static rd_hub_event to_hub(const fake_ev *e)
{
    rd_hub_event h = {.id = e->id,
                      .run_id = e->run_id,
                      .flow = e->flow,
                      .type = e->type,
                      .ts = 1700000000000 + e->id,
                      .data = e->data,
                      .terminal = strcmp(e->type, "run.end") == 0};
    if (e->variant[0]) {
        /* An event with links: the engine hands frames for each audience (here, the data
         * itself stands for the frame). */
        h.frame = e->data;
        h.frame_len = strlen(e->data);
        h.variant[RD_AUD_READ] = e->variant;
        h.variant_len[RD_AUD_READ] = strlen(e->variant);
    }
    return h;
}

static int fake_scan(void *arg, const char *run_id, int64_t after, int limit, rd_hub_event_fn fn,
                     void *cbarg)
{
    fake_store *s = arg;
    if (s->busy) {
        s->busy_asks++;
        return RD_EAGAIN;
    }
    s->scans++;
    int rows = 0;
    for (size_t i = 0; i < s->n && rows < limit; i++) {
        const fake_ev *e = &s->ev[i];
        if (e->id <= after || (run_id && strcmp(run_id, e->run_id) != 0))
            continue;
        rows++;
        rd_hub_event h = to_hub(e);
        if (fn(&h, cbarg) != 0)
            break;
    }
    return 0;
}

/* Publishes an event the way the engine does: with its frame built beforehand. */
static void publish(rd_hub *hub, const fake_ev *e)
{
    rd_hub_event h = to_hub(e);
    if (h.frame) {
        rd_hub_publish(hub, &h);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    rd_hub_format(b, &h, RD_AUD_FULL); /* "id..\nevent..\ndata: <frame>\n\n": keep only <frame> */
    size_t len = evbuffer_get_length(b);
    char *all = malloc(len + 1);
    evbuffer_remove(b, all, len);
    all[len] = 0;
    char *frame = strstr(all, "data: ") + 6;
    h.frame = frame;
    h.frame_len = strlen(frame) - 2;
    rd_hub_publish(hub, &h);
    free(all);
    evbuffer_free(b);
}

/* --- fake sink -------------------------------------------------------------------------- */

typedef struct fake_sink {
    rd_hub_sub *sub;
    struct evbuffer *unsent; /* the transport's queue */
    struct evbuffer *wire;   /* what the peer has read */
    int sends;
    int closed;   /* 0, or why + 1 */
    bool stalled; /* never drains */
} fake_sink;

static size_t sink_unsent(void *arg)
{
    return evbuffer_get_length(((fake_sink *)arg)->unsent);
}

static void sink_send(void *arg, struct evbuffer *buf)
{
    fake_sink *k = arg;
    k->sends++;
    evbuffer_add_buffer(k->unsent, buf);
}

static void sink_close(void *arg, rd_hub_why why)
{
    fake_sink *k = arg;
    k->closed = (int)why + 1;
    if (why == RD_HUB_END || why == RD_HUB_SHUTDOWN)
        evbuffer_add_buffer(k->wire, k->unsent); /* flushed, then closed */
    rd_hub_unsubscribe(k->sub);
    k->sub = NULL;
}

static const rd_hub_sink_ops fake_ops = {sink_unsent, sink_send, sink_close, NULL};

typedef struct fx {
    struct event_base *base;
    fake_store store;
    rd_hub *hub;
    fake_sink sinks[8];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    for (int i = 0; i < 8; i++) {
        f->sinks[i].unsent = evbuffer_new();
        f->sinks[i].wire = evbuffer_new();
    }
    rd_hub_opts o = {.max_buffer = 64 * 1024, .page = 50, .scan = fake_scan, .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 0);
    assert_non_null(f->hub);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 8; i++)
        if (f->sinks[i].sub)
            rd_hub_unsubscribe(f->sinks[i].sub);
    rd_hub_free(f->hub);
    for (int i = 0; i < 8; i++) {
        evbuffer_free(f->sinks[i].unsent);
        evbuffer_free(f->sinks[i].wire);
    }
    event_base_free(f->base);
    free(f->store.ev);
    free(f);
    return 0;
}

static void sub(fx *f, int i, const rd_hub_filter *flt, int64_t resume, bool finished)
{
    f->sinks[i].sub = rd_hub_subscribe(f->hub, flt, resume, finished, &fake_ops, &f->sinks[i]);
    assert_non_null(f->sinks[i].sub);
}

/* The peer reads everything queued; the hub hears of the drain. */
static void drain(fx *f)
{
    for (int i = 0; i < 8; i++) {
        fake_sink *k = &f->sinks[i];
        if (k->stalled || evbuffer_get_length(k->unsent) == 0)
            continue;
        evbuffer_add_buffer(k->wire, k->unsent);
        if (k->sub)
            rd_hub_sub_drained(k->sub);
    }
}

/* Runs the loop until nothing is left to do, draining readers between iterations. */
static void settle(fx *f)
{
    for (int i = 0; i < 400; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        drain(f);
    }
}

/* The ids of the frames in a sink's wire bytes, in order; n ids written to out. */
static size_t wire_ids(fake_sink *k, int64_t *out, size_t cap)
{
    size_t len = evbuffer_get_length(k->wire), n = 0;
    char *text = malloc(len + 1);
    evbuffer_copyout(k->wire, text, len);
    text[len] = 0;
    for (char *p = text; (p = strstr(p, "id: ")) && n < cap; p += 4)
        if (p == text || p[-1] == '\n')
            out[n++] = strtoll(p + 4, NULL, 10);
    free(text);
    return n;
}

/* --- tests ------------------------------------------------------------------------------ */

static void test_routing_and_filters(void **state)
{
    fx *f = *state;
    const char *types[] = {"run.item"}, *flows[] = {"beta"}, *runs[] = {"r2"};
    sub(f, 0, &(rd_hub_filter){.run_id = "r1"}, -1, false);
    sub(f, 1, &(rd_hub_filter){.run_id = "r2"}, -1, false);
    sub(f, 2, &(rd_hub_filter){0}, -1, false);
    sub(f, 3, &(rd_hub_filter){.types = types, .n_types = 1}, -1, false);
    sub(f, 4, &(rd_hub_filter){.flows = flows, .n_flows = 1}, -1, false);
    sub(f, 5, &(rd_hub_filter){.runs = runs, .n_runs = 1, .types = types, .n_types = 1}, -1, false);
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.status", 0)); /* 1 */
    publish(f->hub, store_add(&f->store, "r2", "beta", "run.item", 0));    /* 2 */
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 0));   /* 3 */
    publish(f->hub, store_add(&f->store, "r2", "beta", "run.log", 0));     /* 4 */
    settle(f);
    static const int64_t want[6][4] = {{1, 3}, {2, 4}, {1, 2, 3, 4}, {2, 3}, {2, 4}, {2}};
    static const size_t nwant[6] = {2, 2, 4, 2, 2, 1};
    for (int i = 0; i < 6; i++) {
        int64_t ids[8];
        size_t n = wire_ids(&f->sinks[i], ids, 8);
        assert_int_equal(n, nwant[i]);
        for (size_t j = 0; j < n; j++)
            assert_int_equal(ids[j], want[i][j]);
    }
    assert_int_equal(rd_hub_count(f->hub), 6);
}

static void test_frame_shared_and_coalesced(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 3; i++)
        sub(f, i, &(rd_hub_filter){0}, -1, false);
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 2000)); /* shared */
    for (int i = 0; i < 9; i++)
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 10)); /* copied */
    /* Nothing is handed to a sink before the loop runs: a burst is gathered... */
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->sinks[i].sends, 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    /* ...and sent once per subscriber, with the big frame's bytes shared, not copied. */
    struct evbuffer_iovec v[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->sinks[i].sends, 1);
        assert_true(evbuffer_peek(f->sinks[i].unsent, 1, NULL, &v[i], 1) >= 1);
    }
    assert_ptr_equal(v[0].iov_base, v[1].iov_base);
    assert_ptr_equal(v[1].iov_base, v[2].iov_base);
    rd_hub_stats s;
    rd_hub_get_stats(f->hub, &s);
    assert_int_equal(s.shared_frames, 3);
    assert_int_equal(s.frames, 30);
    settle(f);
    int64_t ids[16];
    assert_int_equal(wire_ids(&f->sinks[2], ids, 16), 10);
}

static void test_stalled_reader_cut_off(void **state)
{
    fx *f = *state;
    rd_hub_set_max_buffer(f->hub, 16 * 1024);
    sub(f, 0, &(rd_hub_filter){0}, -1, false);
    sub(f, 1, &(rd_hub_filter){.run_id = "r1"}, -1, false);
    f->sinks[0].stalled = true;
    for (int i = 0; i < 200; i++) {
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 900));
        settle(f);
        /* The stalled reader never holds more than the bound plus one frame. */
        assert_true(evbuffer_get_length(f->sinks[0].unsent) <= 16 * 1024 + 1200);
    }
    assert_int_equal(f->sinks[0].closed, RD_HUB_SLOW + 1);
    assert_null(f->sinks[0].sub);
    int64_t ids[256];
    assert_int_equal(wire_ids(&f->sinks[1], ids, 256), 200);
    rd_hub_stats s;
    rd_hub_get_stats(f->hub, &s);
    assert_int_equal(s.slow_disconnects, 1);
    assert_int_equal(s.subscribers, 1);
}

static void test_big_frame_reaches_idle_subscriber(void **state)
{
    fx *f = *state;
    rd_hub_set_max_buffer(f->hub, 1024);
    sub(f, 0, &(rd_hub_filter){0}, -1, false);
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 1100));
    settle(f);
    int64_t ids[2];
    assert_int_equal(wire_ids(&f->sinks[0], ids, 2), 1);
    assert_int_equal(f->sinks[0].closed, 0);
}

/* Replays 1,000 stored events while 300 more arrive between pages: every id once, in
 * order. */
static void test_replay_then_live_no_gap(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 1000; i++)
        store_add(&f->store, i % 3 ? "r1" : "r2", "alpha", "run.item", 20);
    rd_hub_free(f->hub);
    rd_hub_opts o = {.max_buffer = 8 * 1024, .page = 50, .scan = fake_scan, .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 1000);
    sub(f, 0, &(rd_hub_filter){.run_id = "r1"}, 0, false);
    sub(f, 1, &(rd_hub_filter){0}, 500, false);
    for (int round = 0; round < 300; round++) {
        publish(f->hub, store_add(&f->store, round % 2 ? "r1" : "r2", "alpha", "run.item", 20));
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        if (round % 3 == 0)
            drain(f);
    }
    settle(f);
    static int64_t ids[2000];
    size_t n = wire_ids(&f->sinks[0], ids, 2000), expect = 0;
    for (size_t i = 0; i < f->store.n; i++)
        if (strcmp(f->store.ev[i].run_id, "r1") == 0)
            assert_int_equal(ids[expect++], f->store.ev[i].id);
    assert_int_equal(n, expect);
    n = wire_ids(&f->sinks[1], ids, 2000);
    assert_int_equal(n, 800);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ids[i], 501 + (int64_t)i);
    /* Paged: many scans, none reading more than the page. */
    assert_true(f->store.scans > 20);
}

/* A reader that does not drain gets about half the bound of replay, no more. */
static void test_replay_paged_by_drain(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 500; i++)
        store_add(&f->store, "r1", "alpha", "run.item", 200);
    rd_hub_free(f->hub);
    rd_hub_opts o = {
        .max_buffer = 16 * 1024, .page = 100, .scan = fake_scan, .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 500);
    f->sinks[0].stalled = true;
    sub(f, 0, &(rd_hub_filter){.run_id = "r1"}, 0, false);
    settle(f);
    size_t held = evbuffer_get_length(f->sinks[0].unsent);
    assert_true(held >= 8 * 1024 && held < 8 * 1024 + 600);
    assert_int_equal(f->sinks[0].closed, 0); /* replay waits; it is never "slow" */
    f->sinks[0].stalled = false;
    settle(f);
    int64_t ids[600];
    assert_int_equal(wire_ids(&f->sinks[0], ids, 600), 500);
}

/* Rows above the last published id (an open transaction) are not replayed until published. */
static void test_replay_bounded_by_published(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 10; i++)
        store_add(&f->store, "r1", "alpha", "run.item", 0);
    rd_hub_free(f->hub);
    rd_hub_opts o = {.max_buffer = 64 * 1024, .page = 4, .scan = fake_scan, .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 7); /* 8..10 are not committed yet */
    sub(f, 0, &(rd_hub_filter){.run_id = "r1"}, 0, false);
    settle(f);
    int64_t ids[16];
    assert_int_equal(wire_ids(&f->sinks[0], ids, 16), 7);
    for (int i = 7; i < 10; i++)
        publish(f->hub, &f->store.ev[i]);
    settle(f);
    assert_int_equal(wire_ids(&f->sinks[0], ids, 16), 10);
    assert_int_equal(ids[9], 10);
}

/* A replay that finds the store committing (RD_EAGAIN) is not a failure: the stream stays,
 * and the replay is made after the commit (the next publication), in full and in order. */
static void test_replay_waits_for_a_commit(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 10; i++)
        store_add(&f->store, "r1", "alpha", "run.item", 0);
    rd_hub_free(f->hub);
    rd_hub_opts o = {.max_buffer = 64 * 1024, .page = 4, .scan = fake_scan, .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 10);
    f->store.busy = true;
    sub(f, 0, &(rd_hub_filter){.run_id = "r1"}, 0, false);
    for (int i = 0; i < 5; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    drain(f);
    int64_t ids[16];
    assert_true(f->store.busy_asks >= 1);
    assert_int_equal(f->store.scans, 0);
    assert_int_equal(wire_ids(&f->sinks[0], ids, 16), 0);
    assert_int_equal(f->sinks[0].closed, 0); /* still open */
    f->store.busy = false;                   /* the commit completes and publishes */
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 0));
    settle(f);
    assert_int_equal(wire_ids(&f->sinks[0], ids, 16), 11);
    for (int i = 0; i < 11; i++)
        assert_int_equal(ids[i], i + 1);
    assert_int_equal(f->sinks[0].closed, 0);
}

static void test_run_end_closes(void **state)
{
    fx *f = *state;
    store_add(&f->store, "r1", "alpha", "run.status", 0);
    store_add(&f->store, "r1", "alpha", "run.end", 0);
    rd_hub_free(f->hub);
    rd_hub_opts o = {.max_buffer = 64 * 1024, .page = 50, .scan = fake_scan, .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 2);
    sub(f, 0, &(rd_hub_filter){.run_id = "r1"}, 0, true);  /* replays through run.end */
    sub(f, 1, &(rd_hub_filter){.run_id = "r2"}, 0, false); /* live, then run.end */
    sub(f, 2, &(rd_hub_filter){0}, -1, false);             /* the global stream goes on */
    settle(f);
    assert_int_equal(f->sinks[0].closed, RD_HUB_END + 1);
    int64_t ids[8];
    assert_int_equal(wire_ids(&f->sinks[0], ids, 8), 2);
    publish(f->hub, store_add(&f->store, "r2", "alpha", "run.status", 0));
    publish(f->hub, store_add(&f->store, "r2", "alpha", "run.end", 0));
    publish(f->hub, store_add(&f->store, "r3", "alpha", "run.status", 0));
    settle(f);
    assert_int_equal(f->sinks[1].closed, RD_HUB_END + 1);
    assert_int_equal(wire_ids(&f->sinks[1], ids, 8), 2);
    assert_int_equal(f->sinks[2].closed, 0);
    assert_int_equal(wire_ids(&f->sinks[2], ids, 8), 3);
}

static void test_close_all(void **state)
{
    fx *f = *state;
    sub(f, 0, &(rd_hub_filter){0}, -1, false);
    sub(f, 1, &(rd_hub_filter){.run_id = "r1"}, -1, false);
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.status", 0));
    rd_hub_close_all(f->hub, false);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(f->sinks[i].closed, RD_HUB_SHUTDOWN + 1);
        int64_t ids[2];
        assert_int_equal(wire_ids(&f->sinks[i], ids, 2), 1); /* flushed before closing */
    }
    assert_int_equal(rd_hub_count(f->hub), 0);
}

/* An event with capability links carries a frame per audience: each subscriber gets its
 * audience's, live (a small copied frame and a big shared one) and replayed; an audience
 * without a variant gets the full frame; events without links stay one frame for all. */
static bool wire_has(fake_sink *k, const char *needle)
{
    size_t len = evbuffer_get_length(k->wire);
    char *text = malloc(len + 1);
    evbuffer_copyout(k->wire, text, len);
    text[len] = 0;
    bool found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

static void add_linked(fx *f, const char *full, const char *read, size_t pad)
{
    fake_ev *e = store_add(&f->store, "r1", "alpha", "run.approval_required", 0);
    snprintf(e->data, sizeof e->data, "{\"url\":\"%s\",\"pad\":\"%*s\"}", full, (int)pad, "");
    snprintf(e->variant, sizeof e->variant, "{\"url\":%s,\"pad\":\"%*s\"}", read, (int)pad, "");
}

static void test_audiences_get_their_frame(void **state)
{
    fx *f = *state;
    sub(f, 0, &(rd_hub_filter){.run_id = "r1", .audience = RD_AUD_FULL}, -1, false);
    sub(f, 1, &(rd_hub_filter){.run_id = "r1", .audience = RD_AUD_READ}, -1, false);
    sub(f, 2, &(rd_hub_filter){.run_id = "r1", .audience = RD_AUD_STREAM}, -1, false);
    sub(f, 3, &(rd_hub_filter){.audience = RD_AUD_READ}, -1, false);
    add_linked(f, "LIVE-SMALL", "null", 0);
    add_linked(f, "LIVE-BIG", "null", 900); /* over SHARE_MIN: shared by reference */
    publish(f->hub, &f->store.ev[0]);
    publish(f->hub, &f->store.ev[1]);
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 0));
    settle(f);
    for (int i = 0; i < 4; i++) {
        bool full = i == 0 || i == 2; /* no stream variant: the stream sees the full frame */
        assert_int_equal(wire_has(&f->sinks[i], "LIVE-SMALL"), full);
        assert_int_equal(wire_has(&f->sinks[i], "LIVE-BIG"), full);
        assert_int_equal(wire_has(&f->sinks[i], "\"url\":null"), !full);
        int64_t ids[8];
        assert_int_equal(wire_ids(&f->sinks[i], ids, 8), 3);
    }
    rd_hub_stats st;
    rd_hub_get_stats(f->hub, &st);
    assert_int_equal(st.shared_frames, 4); /* the big frame: two variants, two readers each */
    /* Replay: a read subscriber resuming from 0 gets the read variant of stored events. */
    sub(f, 4, &(rd_hub_filter){.run_id = "r1", .audience = RD_AUD_READ}, 0, false);
    sub(f, 5, &(rd_hub_filter){.run_id = "r1", .audience = RD_AUD_FULL}, 0, false);
    settle(f);
    assert_false(wire_has(&f->sinks[4], "LIVE-"));
    assert_true(wire_has(&f->sinks[4], "\"url\":null"));
    assert_true(wire_has(&f->sinks[5], "LIVE-SMALL"));
    assert_true(wire_has(&f->sinks[5], "LIVE-BIG"));
}

/* Past the budget over all subscribers, the ones furthest behind are cut first, the others
 * keep everything, and the total stays within the budget. */
static void test_total_budget_cuts_the_furthest_behind(void **state)
{
    fx *f = *state;
    rd_hub_set_max_buffer(f->hub, 64 * 1024);
    rd_hub_set_max_total(f->hub, 100 * 1024);
    for (int i = 0; i < 5; i++)
        sub(f, i, &(rd_hub_filter){0}, -1, false);
    f->sinks[0].stalled = true; /* stalls first: furthest behind */
    for (int n = 0; n < 300; n++) {
        if (n == 20)
            f->sinks[1].stalled = true;
        if (n == 40)
            f->sinks[2].stalled = true;
        if (n == 60)
            f->sinks[3].stalled = true;
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 900));
        settle(f);
        size_t total = 0;
        for (int i = 0; i < 5; i++)
            total += f->sinks[i].sub ? evbuffer_get_length(f->sinks[i].unsent) : 0;
        /* Checked after each burst: never more than the budget and one frame over it. */
        assert_true(total <= 100 * 1024 + 1200);
    }
    /* Cut in order of how far behind they were: 0 before 1 before 2. */
    assert_int_equal(f->sinks[0].closed, RD_HUB_SLOW + 1);
    assert_int_equal(f->sinks[1].closed, RD_HUB_SLOW + 1);
    assert_int_equal(f->sinks[4].closed, 0);
    int64_t ids[512];
    assert_int_equal(wire_ids(&f->sinks[4], ids, 512), 300);
    rd_hub_stats s;
    rd_hub_get_stats(f->hub, &s);
    assert_true(s.budget_cuts >= 2);
}

/* A reader whose transport still holds bytes gets no more handed over until it drains: its
 * frames wait in the hub packed together (not one mostly empty chain each), then go in order. */
static void test_behind_reader_frames_are_held_until_drained(void **state)
{
    fx *f = *state;
    sub(f, 0, &(rd_hub_filter){0}, -1, false);
    f->sinks[0].stalled = true;
    publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 100));
    settle(f);
    int sends = f->sinks[0].sends;
    assert_true(evbuffer_get_length(f->sinks[0].unsent) > 0);
    for (int i = 0; i < 50; i++) {
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 100));
        settle(f);
    }
    assert_int_equal(f->sinks[0].sends, sends); /* held, not handed over per iteration */
    f->sinks[0].stalled = false;
    drain(f); /* the transport empties and tells the hub */
    settle(f);
    int64_t ids[64];
    assert_int_equal(wire_ids(&f->sinks[0], ids, 64), 51);
    for (int i = 0; i < 51; i++)
        assert_int_equal(ids[i], i + 1);
}

/* Many live readers whose sockets are full (their transports report unsent bytes) while N
 * small frames are published one per iteration: the hub holds a bound for each that does not
 * grow with N (no copy per reader per frame), and once the transports drain each reader gets
 * exactly its sequence from the store, in order, without gap or duplicate: the right
 * audience's frame, its filter, and a run stream that ends with run.end. */
#define LAG_SUBS 40
#define LAG_N 2000

static size_t held_bytes(rd_hub *hub)
{
    rd_hub_stats s;
    rd_hub_get_stats(hub, &s);
    return (size_t)s.held_bytes;
}

static void lag_check(fake_sink *k, const fake_store *st, const rd_hub_filter *flt)
{
    static int64_t ids[RING_EVENTS + 2048];
    size_t n = wire_ids(k, ids, RING_EVENTS + 2048), expect = 0;
    for (size_t i = 0; i < st->n; i++) {
        const fake_ev *e = &st->ev[i];
        if (flt->run_id ? strcmp(e->run_id, flt->run_id) != 0
                        : flt->n_types && strcmp(e->type, flt->types[0]) != 0)
            continue;
        assert_true(expect < n);
        assert_int_equal(ids[expect++], e->id);
    }
    assert_int_equal(n, expect);
}

static void test_behind_readers_hold_a_bound_and_catch_up(void **state)
{
    fx *f = *state;
    rd_hub_set_max_buffer(f->hub, 4 * 1024 * 1024); /* nobody is cut: only memory is measured */
    static fake_sink k[LAG_SUBS];
    const char *types[] = {"run.item"};
    rd_hub_filter flt[4] = {{0},
                            {.types = types, .n_types = 1},
                            {.run_id = "r1", .audience = RD_AUD_READ},
                            {.run_id = "r1"}};
    for (int i = 0; i < LAG_SUBS; i++) {
        k[i] = (fake_sink){.unsent = evbuffer_new(), .wire = evbuffer_new(), .stalled = true};
        evbuffer_add(k[i].unsent, ":\n\n", 3); /* the socket is full from the start */
        k[i].sub = rd_hub_subscribe(f->hub, &flt[i % 4], -1, false, &fake_ops, &k[i]);
        assert_non_null(k[i].sub);
    }
    size_t peak = 0;
    for (int i = 0; i < LAG_N; i++) {
        if (i == LAG_N / 2)
            add_linked(f, "FULL-URL", "null", 0); /* a frame per audience */
        else if (i == LAG_N - 1)
            store_add(&f->store, "r1", "alpha", "run.end", 0);
        else
            store_add(&f->store, i % 5 ? "r1" : "r2", "alpha", i % 7 ? "run.item" : "run.log", 60);
        publish(f->hub, &f->store.ev[f->store.n - 1]);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        size_t h = held_bytes(f->hub);
        peak = h > peak ? h : peak;
    }
    /* ~150 B a frame: 2,000 frames are ~300 KB a reader, 12 MB for 40; the hub held at most
     * about one chain each, however many frames went by. */
    assert_true(peak <= LAG_SUBS * 4096);
    for (int i = 0; i < LAG_SUBS; i++)
        assert_true(evbuffer_get_length(k[i].unsent) < 4096);
    rd_hub_stats s;
    rd_hub_get_stats(f->hub, &s);
    assert_int_equal(s.lags, LAG_SUBS);
    for (int round = 0; round < 2000; round++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        for (int i = 0; i < LAG_SUBS; i++) {
            if (evbuffer_get_length(k[i].unsent) == 0)
                continue;
            evbuffer_add_buffer(k[i].wire, k[i].unsent);
            if (k[i].sub)
                rd_hub_sub_drained(k[i].sub);
        }
    }
    for (int i = 0; i < LAG_SUBS; i++) {
        lag_check(&k[i], &f->store, &flt[i % 4]);
        assert_int_equal(k[i].closed, flt[i % 4].run_id ? RD_HUB_END + 1 : 0);
        bool full = flt[i % 4].n_types == 0 && flt[i % 4].audience != RD_AUD_READ;
        assert_int_equal(wire_has(&k[i], "FULL-URL"), full);
        assert_int_equal(wire_has(&k[i], "\"url\":null"), flt[i % 4].audience == RD_AUD_READ);
        if (k[i].sub)
            rd_hub_unsubscribe(k[i].sub);
        evbuffer_free(k[i].unsent);
        evbuffer_free(k[i].wire);
    }
    rd_hub_get_stats(f->hub, &s);
    assert_int_equal(s.slow_disconnects, 0);
}

/* Readers that lag catch up from the ring of recent frames: no store read at all, and the bytes
 * each gets are exactly those of a reader with the same filter that never lagged. Past the
 * ring's reach (more events than it keeps) they catch up from the store, with the same bytes. */
static void ring_case(fx *f, int n_events, bool expect_store)
{
    rd_hub_set_max_buffer(f->hub, 64 * 1024 * 1024); /* nobody is cut */
    const char *types[] = {"run.item"};
    rd_hub_filter flt[4] = {{0},
                            {.types = types, .n_types = 1},
                            {.run_id = "r1", .audience = RD_AUD_READ},
                            {.run_id = "r1"}};
    /* sinks 0-3 never lag (they drain every iteration); 4-7 have full sockets until the end */
    for (int i = 0; i < 8; i++) {
        sub(f, i, &flt[i % 4], -1, false);
        if (i >= 4) {
            f->sinks[i].stalled = true;
            evbuffer_add(f->sinks[i].unsent, ":\n\n", 3);
        }
    }
    for (int i = 0; i < n_events; i++) {
        if (i == n_events / 2)
            add_linked(f, "FULL-URL", "null", 0);
        else if (i == n_events - 1)
            store_add(&f->store, "r1", "alpha", "run.end", 0);
        else
            store_add(&f->store, i % 5 ? "r1" : "r2", "alpha", i % 7 ? "run.item" : "run.log", 40);
        publish(f->hub, &f->store.ev[f->store.n - 1]);
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        drain(f);
    }
    int scans = f->store.scans;
    for (int i = 4; i < 8; i++) {
        f->sinks[i].stalled = false;
        evbuffer_drain(f->sinks[i].unsent, 3);
        if (f->sinks[i].sub)
            rd_hub_sub_drained(f->sinks[i].sub);
    }
    settle(f);
    rd_hub_stats s;
    rd_hub_get_stats(f->hub, &s);
    assert_int_equal(s.lags, 4);
    if (expect_store) {
        assert_true(f->store.scans > scans);
    } else {
        assert_int_equal(f->store.scans, scans); /* not one read of the store */
        assert_true(s.ring_frames > 0);
        assert_int_equal(s.replay_frames, 0);
    }
    for (int i = 4; i < 8; i++) {
        lag_check(&f->sinks[i], &f->store, &flt[i % 4]);
        size_t a = evbuffer_get_length(f->sinks[i].wire),
               b = evbuffer_get_length(f->sinks[i - 4].wire);
        assert_int_equal(a, b);
        char *x = malloc(a + 1), *y = malloc(b + 1);
        evbuffer_copyout(f->sinks[i].wire, x, a);
        evbuffer_copyout(f->sinks[i - 4].wire, y, b);
        assert_memory_equal(x, y, a); /* byte for byte what the reader that kept up got */
        free(x);
        free(y);
    }
}

static void test_lagging_readers_catch_up_from_the_ring(void **state)
{
    ring_case(*state, 1500, false);
}

static void test_past_the_ring_readers_catch_up_from_the_store(void **state)
{
    ring_case(*state, RING_EVENTS + 1000, true);
}

/* An event published without its frame leaves a hole the ring cannot fill: it drops what it
 * kept, and a reader that lagged before it catches up from the store. */
static void test_a_hole_empties_the_ring(void **state)
{
    fx *f = *state;
    rd_hub_filter all = {0};
    sub(f, 0, &all, -1, false);
    for (int i = 0; i < 10; i++) {
        store_add(&f->store, "r1", "alpha", "run.item", 10);
        publish(f->hub, &f->store.ev[f->store.n - 1]);
    }
    rd_hub_stats s;
    rd_hub_get_stats(f->hub, &s);
    assert_true(s.ring_bytes > 0);
    fake_ev *e = store_add(&f->store, "r1", "alpha", "run.item", 10);
    rd_hub_event h = to_hub(e);
    h.frame = NULL;
    rd_hub_publish(f->hub, &h);
    rd_hub_get_stats(f->hub, &s);
    assert_int_equal(s.ring_bytes, 0);
}

static int pressure_on, pressure_changes;
static void on_pressure(void *arg, bool on)
{
    pressure_on = on;
    pressure_changes++;
}

/* Backpressure: subscribers that keep up but are behind together past the bound ask the
 * producers to slow down, until they are down to half; one slow subscriber alone never does
 * (it is over half its own bound: on its way to being cut). */
static void test_backpressure_on_and_off(void **state)
{
    fx *f = *state;
    rd_hub_free(f->hub);
    rd_hub_opts o = {.max_buffer = 64 * 1024,
                     .backpressure = 40 * 1024,
                     .on_pressure = on_pressure,
                     .page = 50,
                     .scan = fake_scan,
                     .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 0);
    pressure_on = pressure_changes = 0;
    /* One slow reader far behind: no pressure. */
    sub(f, 0, &(rd_hub_filter){0}, -1, false);
    f->sinks[0].stalled = true;
    for (int i = 0; i < 50; i++) {
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 900));
        settle(f);
    }
    /* ~48 KB behind (in its transport and held in the hub), still under its 64 KB bound. */
    assert_int_equal(f->sinks[0].closed, 0);
    assert_int_equal(pressure_changes, 0);
    /* Three readers ~20 KB behind each (under half their bound), over 40 KB together. */
    for (int i = 1; i <= 3; i++) {
        sub(f, i, &(rd_hub_filter){0}, -1, false);
        f->sinks[i].stalled = true;
    }
    for (int i = 0; i < 21; i++) {
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 900));
        settle(f);
    }
    assert_int_equal(pressure_on, 1);
    assert_true(rd_hub_pressure(f->hub));
    /* They catch up: released after the recheck. */
    for (int i = 1; i <= 3; i++)
        f->sinks[i].stalled = false;
    drain(f);
    for (int i = 0; i < 100 && pressure_on; i++) {
        struct timeval tv = {0, 30000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
        drain(f);
    }
    assert_int_equal(pressure_on, 0);
    assert_int_equal(pressure_changes, 2);
}

/* Readers that never read cannot pause producers for good: under pressure, one that takes
 * nothing for a second stops counting as keeping up, the producers are released, and it is
 * then cut at its own bound like any slow reader. Before, three such readers held the
 * pressure on forever (the soak's 2,000 idle streams paused every run). */
static void test_stalled_readers_release_pressure(void **state)
{
    fx *f = *state;
    rd_hub_free(f->hub);
    rd_hub_opts o = {.max_buffer = 64 * 1024,
                     .backpressure = 40 * 1024,
                     .stall_ms = 1000,
                     .on_pressure = on_pressure,
                     .page = 50,
                     .scan = fake_scan,
                     .scan_arg = &f->store};
    f->hub = rd_hub_new(f->base, &o, 0);
    pressure_on = pressure_changes = 0;
    for (int i = 0; i < 3; i++) {
        sub(f, i, &(rd_hub_filter){0}, -1, false);
        f->sinks[i].stalled = true;
    }
    for (int i = 0; i < 21 && !pressure_on; i++) {
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 900));
        settle(f);
    }
    assert_int_equal(pressure_on, 1);
    int64_t t0 = rd_mono_ms();
    while (pressure_on && rd_mono_ms() - t0 < 3000) {
        struct timeval tv = {0, 30000};
        event_base_loopexit(f->base, &tv);
        event_base_dispatch(f->base);
    }
    int64_t held = rd_mono_ms() - t0;
    assert_int_equal(pressure_on, 0);
    assert_true(held >= 900 && held < 2500);
    rd_hub_stats st;
    rd_hub_get_stats(f->hub, &st);
    assert_int_equal(st.stalls, 3);
    /* Producers go on: the stalled readers reach their own bound and are cut. */
    for (int i = 0; i < 200 && f->sinks[0].closed == 0; i++) {
        publish(f->hub, store_add(&f->store, "r1", "alpha", "run.item", 900));
        settle(f);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->sinks[i].closed, RD_HUB_SLOW + 1);
    assert_int_equal(pressure_on, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routing_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_waits_for_a_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_shared_and_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_reader_cut_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_budget_cuts_the_furthest_behind, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_behind_reader_frames_are_held_until_drained, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_on_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_readers_release_pressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_behind_readers_hold_a_bound_and_catch_up, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_big_frame_reaches_idle_subscriber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lagging_readers_catch_up_from_the_ring, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_past_the_ring_readers_catch_up_from_the_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_hole_empties_the_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_then_live_no_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_paged_by_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_bounded_by_published, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_end_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audiences_get_their_frame, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
