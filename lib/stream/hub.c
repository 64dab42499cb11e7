/*
 * hub.c: SSE fan-out. See hub.h for the contract; here is how it holds.
 *
 * Live path. rd_hub_publish formats the frame once (once per audience for an event that
 * carries links) into one refcounted block, which the ring of recent frames keeps too.
 * Subscribers of the event's run are found through a map keyed by run id, global ones by walking
 * their (usually short) list with their filters. A frame of SHARE_MIN bytes or more is
 * referenced by every subscriber's buffer (evbuffer_add_reference), so 5,000 subscribers cost
 * 5,000 small chain headers, not 5,000 copies; a smaller frame is cheaper to copy into the
 * buffer's current chain than to reference with a new one. Frames are gathered in a
 * per-subscriber pending buffer and handed to the transport once per loop iteration (an
 * event made active at the first publish), so a burst of events becomes one write.
 *
 * Lag. A reader whose socket is full (its transport still holds bytes) keeps its next frames
 * here, packed, until the transport drains: handing each iteration's few small frames over
 * would leave a mostly empty chain per frame behind. Past LAG_AT gathered bytes it lags: it
 * gets no more copies, only a count of the bytes of the events it wants and was not given
 * (lag), and its cursor stays at the last event it was given. Every published event is
 * committed, so when its socket drains it catches up through replay, from its cursor, and
 * rejoins live there. So a reader that is behind costs the hub at most LAG_AT, whatever the
 * event rate, and the bytes it has not taken live once, in the store, for everybody; 2,000
 * readers that stop reading cost 2,000 x LAG_AT, not 2,000 copies of every small frame. Its
 * bounds judge unsent plus lag (rd_hub_behind), so it is cut when it would have been had it
 * been given every frame. While it catches up, replayed frames move bytes from lag to
 * unsent and new events add to lag: a reader slower than the producers is still cut.
 * Catch-up pages are small (CATCHUP_HIGH), and a live reader's burst within one iteration is
 * handed to its transport past the same size, so neither path gathers more per reader. A
 * lagging reader catches up from the ring of recent frames (hub_ring.c) when it reaches back
 * far enough: the frames live readers were given, by reference, so N readers catching up over
 * the same range cost N chain entries per event, not N renderings from N store reads; from the
 * store when it lagged further back.
 *
 * Replay. A resuming subscriber starts in REPLAY: pages of events with id > cursor are read
 * from the store, bounded above by the last published id (everything up to it is
 * committed; rows of the engine's open transaction lie above it). A page stops early when
 * the subscriber's unsent bytes reach half the bound, and the next page waits until they
 * drain below a quarter. Live events are not buffered for a replaying subscriber: they are
 * in the store and the next page reads them. Once a page finds nothing more up to the last
 * published id, the cursor jumps to that id and the subscriber is LIVE; every later event
 * has a larger id, so there is no gap and no duplicate.
 *
 * Closing. The hub never lets a subscriber go while it iterates: it marks it (doom) and
 * asks its sink to close from the flush callback, after the batch has been handed out.
 */
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "base/util.h"

#include "stream/hub_int.h"

static void hub_flush(rd_hub *hub);

/* --- frames ----------------------------------------------------------------------------- */

/* The frame aud gets: its own variant when the event has one, else the shared frame. */
static const char *frame_of(const rd_hub_event *ev, rd_audience aud, size_t *len)
{
    if (aud != RD_AUD_FULL && aud < RD_AUD__COUNT && ev->variant[aud]) {
        *len = ev->variant_len[aud];
        return ev->variant[aud];
    }
    *len = ev->frame_len;
    return ev->frame;
}

int rd_hub_format(struct evbuffer *buf, const rd_hub_event *ev, rd_audience aud)
{
    int rc;
    size_t flen;
    const char *frame = frame_of(ev, aud, &flen);
    if (frame) {
        rc = evbuffer_add_printf(buf, "id: %" PRId64 "\nevent: %s\ndata: ", ev->id, ev->type);
        if (rc >= 0)
            rc = evbuffer_add(buf, frame, flen);
    } else {
        /* The same bytes the engine builds for live events (engine.c queue_publish). */
        char ts[40];
        rd_rfc3339(ev->ts, ts, sizeof ts);
        rc = evbuffer_add_printf(buf,
                                 "id: %" PRId64 "\nevent: %s\ndata: {\"id\":%lld,\"type\":\"%s\","
                                 "\"run_id\":\"%s\",\"timestamp\":\"%s\",\"data\":%s}",
                                 ev->id, ev->type, (long long)ev->id, ev->type, ev->run_id, ts,
                                 ev->data);
    }
    if (rc >= 0)
        rc = evbuffer_add(buf, "\n\n", 2);
    return rc < 0 ? -1 : 0;
}

static void hub_on_frame_unref(const void *data, size_t len, void *arg)
{
    rd_frame_unref(arg);
}

/* Queues a built frame: by reference from SHARE_MIN bytes on, else copied. 0 or -1. */
static int queue_frame(rd_hub_sub *sub, shared_frame *f)
{
    if (f->len < SHARE_MIN)
        return evbuffer_add(sub->pending, f->data, f->len);
    f->refs++;
    if (evbuffer_add_reference(sub->pending, f->data, f->len, hub_on_frame_unref, f) != 0) {
        f->refs--;
        return -1;
    }
    sub->hub->st.shared_frames++;
    return 0;
}

/* --- filters ---------------------------------------------------------------------------- */

static bool in_list(char *const *list, int n, const char *s)
{
    if (n == 0)
        return true;
    for (int i = 0; i < n; i++)
        if (s && strcmp(list[i], s) == 0)
            return true;
    return false;
}

static bool wants(const rd_hub_sub *sub, const rd_hub_event *ev)
{
    if (sub->run_id)
        return strcmp(sub->run_id, ev->run_id) == 0;
    const hub_filter *f = sub->filter;
    return !f ||
           (in_list(f->runs, f->n_runs, ev->run_id) && in_list(f->flows, f->n_flows, ev->flow) &&
            in_list(f->types, f->n_types, ev->type));
}

static void filter_free(hub_filter *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_runs; i++)
        free(f->runs[i]);
    for (int i = 0; i < f->n_flows; i++)
        free(f->flows[i]);
    for (int i = 0; i < f->n_types; i++)
        free(f->types[i]);
    free(f->runs);
    free(f->flows);
    free(f->types);
    free(f);
}

static int copy_list(char ***out, int *n_out, const char *const *in, int n)
{
    *n_out = 0;
    if (n <= 0)
        return 0;
    *out = calloc((size_t)n, sizeof **out);
    if (!*out)
        return -1;
    for (int i = 0; i < n; i++) {
        if (!((*out)[i] = strdup(in[i])))
            return -1;
        (*n_out)++;
    }
    return 0;
}

static hub_filter *filter_copy(const rd_hub_filter *f)
{
    if (f->n_runs == 0 && f->n_flows == 0 && f->n_types == 0)
        return NULL;
    hub_filter *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (copy_list(&c->runs, &c->n_runs, f->runs, f->n_runs) != 0 ||
        copy_list(&c->flows, &c->n_flows, f->flows, f->n_flows) != 0 ||
        copy_list(&c->types, &c->n_types, f->types, f->n_types) != 0) {
        filter_free(c);
        return NULL;
    }
    return c;
}

/* --- scheduling ------------------------------------------------------------------------- */

static void schedule_flush(rd_hub *hub)
{
    if (!hub->flush_scheduled) {
        hub->flush_scheduled = true;
        event_active(hub->flush_ev, EV_TIMEOUT, 1);
    }
}

static void mark_dirty(rd_hub_sub *sub)
{
    if (!sub->dirty && evbuffer_get_length(sub->pending) > 0) {
        sub->dirty = true;
        TAILQ_INSERT_TAIL(&sub->hub->dirty, sub, dlink);
        schedule_flush(sub->hub);
    }
}

static void queue_replay(rd_hub_sub *sub)
{
    if (sub->queued || sub->state != SUB_REPLAY)
        return;
    sub->queued = true;
    TAILQ_INSERT_TAIL(&sub->hub->replay, sub, rlink);
    static const struct timeval now = {0, 0};
    evtimer_add(sub->hub->replay_ev, &now);
}

static void unqueue(rd_hub_sub *sub)
{
    rd_hub *hub = sub->hub;
    if (sub->dirty) {
        TAILQ_REMOVE(&hub->dirty, sub, dlink);
        sub->dirty = false;
    }
    if (sub->queued) {
        TAILQ_REMOVE(&hub->replay, sub, rlink);
        sub->queued = false;
    }
    if (sub->dooming) {
        TAILQ_REMOVE(&hub->doomed, sub, xlink);
        sub->dooming = false;
    }
}

/* Marks sub to be let go from the flush callback. END keeps its queued bytes (flushed
 * first); the others drop them. */
void rd_hub_doom(rd_hub_sub *sub, rd_hub_why why)
{
    if (sub->state == SUB_CLOSING)
        return;
    sub->state = SUB_CLOSING;
    sub->why = (uint8_t)why;
    sub->lagging = false;
    sub->lag = 0;
    sub->hub->backlog -= sub->load; /* a subscriber let go no longer holds producers back */
    sub->load = 0;
    unqueue(sub);
    if (why == RD_HUB_END || why == RD_HUB_SHUTDOWN)
        mark_dirty(sub);
    else
        evbuffer_drain(sub->pending, evbuffer_get_length(sub->pending));
    if (why == RD_HUB_SLOW)
        sub->hub->st.slow_disconnects++;
    sub->dooming = true;
    TAILQ_INSERT_TAIL(&sub->hub->doomed, sub, xlink);
    schedule_flush(sub->hub);
}

size_t rd_hub_unsent(const rd_hub_sub *sub)
{
    return sub->ops->unsent(sub->arg) + evbuffer_get_length(sub->pending);
}

size_t rd_hub_behind(const rd_hub_sub *sub)
{
    return rd_hub_unsent(sub) + sub->lag;
}

/* --- live ------------------------------------------------------------------------------- */

/* Builds the frame once, in a block shared by reference (the ring keeps it too). Returns the
 * block, one reference held by the caller, or NULL. */
static shared_frame *frame_build(const rd_hub_event *ev, const char *frame, size_t frame_len)
{
    char head[160];
    int hl =
        snprintf(head, sizeof head, "id: %" PRId64 "\nevent: %.100s\ndata: ", ev->id, ev->type);
    if (hl < 0 || (size_t)hl >= sizeof head)
        return NULL;
    size_t len = (size_t)hl + frame_len + 2;
    shared_frame *f = malloc(sizeof *f + len);
    if (!f)
        return NULL;
    f->refs = 1;
    f->len = len;
    memcpy(f->data, head, (size_t)hl);
    memcpy(f->data + hl, frame, frame_len);
    memcpy(f->data + hl + frame_len, "\n\n", 2);
    return f;
}

/* One published event's frames, built on first use: one per audience that has a variant,
 * and the shared one for everybody else. */
typedef struct pub_frames {
    const rd_hub_event *ev;
    shared_frame *f[RD_AUD__COUNT];
    bool failed[RD_AUD__COUNT];
} pub_frames;

static shared_frame *pub_frame(pub_frames *p, rd_audience aud)
{
    const rd_hub_event *ev = p->ev;
    if (aud >= RD_AUD__COUNT || !ev->variant[aud])
        aud = RD_AUD_FULL;
    if (!p->f[aud] && !p->failed[aud]) {
        size_t len;
        const char *frame = frame_of(ev, aud, &len);
        if (!(p->f[aud] = frame_build(ev, frame, len))) {
            rd_log_err("hub: out of memory formatting event %" PRId64, ev->id);
            p->failed[aud] = true;
        }
    }
    return p->f[aud];
}

/* A lagging reader is not given the frame, only told how far behind it is now, and cut once
 * that passes its bound (unless the frame alone does: an idle reader gets any frame). */
static void lag_count(rd_hub *hub, rd_hub_sub *sub, size_t len)
{
    size_t b = rd_hub_behind(sub);
    if (b > 0 && b + len > hub->max_buffer) {
        rd_hub_doom(sub, RD_HUB_SLOW);
        return;
    }
    sub->lag += len;
    rd_hub_account(hub, len);
    rd_hub_note_load(sub, b + len);
}

/* Live events a subscriber hears of: given (LIVE) or counted (lagging). */
static bool hears_live(const rd_hub_sub *sub)
{
    return sub->state == SUB_LIVE || sub->state == SUB_LAG ||
           (sub->state == SUB_REPLAY && sub->lagging);
}

/* Whether a live reader that is to get len more bytes has fallen behind: its socket is full
 * and LAG_AT is gathered already. A burst within one iteration (a worker's batch of lines) is
 * gathered up to CATCHUP_HIGH and then handed to the transport at once, which writes what the
 * socket takes: 2,000 readers times a 512-line batch would otherwise be held all together until
 * the flush. */
static bool falls_behind(rd_hub_sub *sub, size_t len)
{
    size_t gathered = evbuffer_get_length(sub->pending);
    if (gathered + len <= LAG_AT)
        return false;
    if (sub->ops->unsent(sub->arg) == 0) {
        if (gathered + len <= CATCHUP_HIGH)
            return false;
        sub->ops->send(sub->arg, sub->pending);
        return sub->ops->unsent(sub->arg) > 0;
    }
    return true;
}

static void deliver(rd_hub *hub, rd_hub_sub *sub, const rd_hub_event *ev, pub_frames *p)
{
    if (!hears_live(sub) || ev->id <= sub->cursor || !wants(sub, ev))
        return;
    shared_frame *f = pub_frame(p, sub->audience);
    if (!f)
        return; /* out of memory: as before, the event is not offered */
    if (sub->state == SUB_LIVE && falls_behind(sub, f->len)) {
        sub->state = SUB_LAG; /* its socket is full: it catches up from the store */
        sub->lagging = true;
        sub->held = false;
        hub->st.lags++;
    }
    if (sub->lagging) {
        lag_count(hub, sub, f->len);
        return;
    }
    /* The bound is on backlog: a frame larger than the bound still goes to an idle
     * subscriber, or it could never receive that event. Before judging, a big burst is
     * handed to the transport early, which writes what the socket takes: only bytes the
     * reader has not taken count against it. */
    size_t u = rd_hub_unsent(sub);
    if (u > 0 && u + f->len > hub->max_buffer && evbuffer_get_length(sub->pending) > 0) {
        sub->ops->send(sub->arg, sub->pending);
        u = rd_hub_unsent(sub);
    }
    if (u > 0 && u + f->len > hub->max_buffer) {
        rd_hub_doom(sub, RD_HUB_SLOW);
        return;
    }
    if (queue_frame(sub, f) != 0) {
        rd_hub_doom(sub, RD_HUB_ERROR);
        return;
    }
    sub->cursor = ev->id;
    hub->st.frames++;
    hub->st.bytes += f->len;
    rd_hub_account(hub, f->len);
    /* At once, not at the flush: a burst of lines read in one go must be able to pause its
     * worker between two lines. */
    rd_hub_note_load(sub, u + f->len);
    mark_dirty(sub);
    if (ev->terminal && sub->run_id)
        rd_hub_doom(sub, RD_HUB_END);
}

void rd_hub_publish(rd_hub *hub, const rd_hub_event *ev)
{
    if (hub->replay_waits) {
        /* A commit just completed and the next has not started: the store reads now. */
        hub->replay_waits = false;
        event_active(hub->replay_ev, EV_TIMEOUT, 0);
    }
    if (ev->id <= hub->last_id)
        return; /* ids only grow; an old one was already offered */
    hub->last_id = ev->id;
    run_subs *rs = rd_map_get(hub->by_run, ev->run_id);
    if (!rs && TAILQ_EMPTY(&hub->global))
        return;
    if (!ev->frame) {
        rd_hub_ring_reset(hub, ev->id); /* live events always carry the engine's frame */
        return;
    }
    pub_frames p = {.ev = ev};
    rd_hub_sub *sub;
    if (rs) {
        TAILQ_FOREACH(sub, &rs->subs, link)
        {
            deliver(hub, sub, ev, &p);
        }
    }
    TAILQ_FOREACH(sub, &hub->global, link)
    {
        deliver(hub, sub, ev, &p);
    }
    /* The ring keeps every audience's frame, for readers that lag behind this event. */
    pub_frame(&p, RD_AUD_FULL);
    for (int a = 0; a < RD_AUD__COUNT; a++)
        if (ev->variant[a])
            pub_frame(&p, (rd_audience)a);
    rd_hub_ring_add(hub, ev, p.f);
    for (int a = 0; a < RD_AUD__COUNT; a++)
        rd_frame_unref(p.f[a]);
}

bool rd_hub_wants(const rd_hub *hub, const char *run_id)
{
    return !TAILQ_EMPTY(&hub->global) || rd_map_get(hub->by_run, run_id) != NULL;
}

int64_t rd_hub_last_id(const rd_hub *hub)
{
    return hub->last_id;
}

/* --- replay ----------------------------------------------------------------------------- */

typedef struct page_ctx {
    rd_hub_sub *sub;
    int64_t upper;         /* the last published id when the page began */
    size_t high;           /* stop the page when unsent bytes reach this */
    shared_frame *ring_fr; /* the row's frame, when it comes from the ring */
    int rows;
    bool at_upper, full, ended, failed, more;
} page_ctx;

static int hub_on_page_row(const rd_hub_event *ev, void *arg)
{
    page_ctx *c = arg;
    rd_hub_sub *sub = c->sub;
    if (ev->id > c->upper) {
        c->at_upper = true; /* not published yet, maybe not even committed: live's job */
        return 1;
    }
    c->rows++;
    sub->cursor = ev->id;
    if (wants(sub, ev)) {
        size_t before = evbuffer_get_length(sub->pending);
        int rc = c->ring_fr ? queue_frame(sub, c->ring_fr)
                            : rd_hub_format(sub->pending, ev, sub->audience);
        if (rc != 0) {
            c->failed = true;
            return 1;
        }
        /* Catching up: the same bytes it was counted for live, now queued. */
        size_t n = evbuffer_get_length(sub->pending) - before;
        sub->lag -= n < sub->lag ? n : sub->lag;
        sub->hub->st.frames++;
        if (c->ring_fr)
            sub->hub->st.ring_frames++;
        else
            sub->hub->st.replay_frames++;
        if (ev->terminal && sub->run_id) {
            c->ended = true;
            return 1;
        }
    }
    if (rd_hub_unsent(sub) >= c->high) {
        c->full = true;
        return 1;
    }
    return 0;
}

static int hub_on_ring_row(const rd_hub_event *ev, shared_frame *f, void *arg)
{
    page_ctx *c = arg;
    c->ring_fr = f;
    return hub_on_page_row(ev, c);
}

static const char *scan_run(const rd_hub_sub *sub)
{
    if (sub->run_id)
        return sub->run_id;
    /* A global stream of exactly one run reads that run's index, not every event. */
    return sub->filter && sub->filter->n_runs == 1 ? sub->filter->runs[0] : NULL;
}

/* A resume fills the transport to half the bound a page at a time, the next page once below a
 * quarter. A lagging reader catching up is one that fell behind live, thousands of them at
 * once maybe: it gets small pages (CATCHUP_HIGH), the next once below LAG_AT, so it holds no
 * more than when it lagged; its socket's own buffer keeps the reader busy between pages. */
static size_t page_high(const rd_hub_sub *sub)
{
    return sub->lagging ? CATCHUP_HIGH : sub->hub->max_buffer / 2;
}

static bool page_due(const rd_hub_sub *sub)
{
    return rd_hub_unsent(sub) < (sub->lagging ? LAG_AT : rd_hub_low_watermark(sub->hub));
}

static void replay_page(rd_hub *hub, rd_hub_sub *sub)
{
    if (!page_due(sub))
        return; /* a drain of its transport queues it again */
    page_ctx c = {.sub = sub, .upper = hub->last_id, .high = page_high(sub)};
    size_t before = evbuffer_get_length(sub->pending);
    bool lagging = sub->lagging;
    int rc = 0;
    if (sub->cursor >= c.upper) {
        /* nothing published after it */
    } else if (lagging && rd_hub_ring_covers(hub, sub->cursor)) {
        /* It was live until it lagged: every event it wants since is in the ring. */
        int end =
            rd_hub_ring_scan(hub, sub->cursor, sub->audience, RING_PAGE_ROWS, hub_on_ring_row, &c);
        c.more = end == 2;
        c.at_upper = end == 0;
    } else {
        rc = hub->scan(hub->scan_arg, scan_run(sub), sub->cursor, hub->page, hub_on_page_row, &c);
        c.more = c.rows == hub->page;
    }
    if (rc == RD_EAGAIN) { /* the store is busy: first in line again, after its commit */
        TAILQ_INSERT_HEAD(&hub->replay, sub, rlink);
        sub->queued = true;
        hub->replay_waits = true;
        return;
    }
    hub->st.bytes += evbuffer_get_length(sub->pending) - before;
    if (!lagging) /* a lagging reader's bytes were accounted when it was counted */
        rd_hub_account(hub, evbuffer_get_length(sub->pending) - before);
    if (rc != 0 || c.failed) {
        rd_log_warn("hub: replay after %" PRId64 " failed; closing the stream", sub->cursor);
        rd_hub_doom(sub, RD_HUB_ERROR);
        return;
    }
    mark_dirty(sub);
    if (c.ended) {
        rd_hub_doom(sub, RD_HUB_END);
        return;
    }
    if (c.full)
        return; /* hub_flush or the sink's drain queues the next page below the low mark */
    if (c.more && !c.at_upper) {
        /* More to read. A page that queued nothing (filtered out) is not dirty, so it is
         * queued here rather than after a send. */
        if (!sub->dirty && page_due(sub))
            queue_replay(sub);
        return;
    }
    /* Nothing more up to the last published id: from here on, live events continue it. */
    if (sub->cursor < c.upper)
        sub->cursor = c.upper;
    sub->lagging = false;
    sub->lag = 0;
    if (sub->run_id && sub->run_finished)
        rd_hub_doom(sub, RD_HUB_END); /* its run.end was pruned: nothing will ever follow */
    else
        sub->state = SUB_LIVE;
}

static void hub_on_replay(evutil_socket_t fd, short what, void *arg)
{
    rd_hub *hub = arg;
    rd_hub_sub *sub;
    hub->replay_waits = false;
    for (int n = 0; n < REPLAY_BUDGET && !hub->replay_waits && (sub = TAILQ_FIRST(&hub->replay));
         n++) {
        TAILQ_REMOVE(&hub->replay, sub, rlink);
        sub->queued = false;
        replay_page(hub, sub);
    }
    hub_flush(hub);
    if (!TAILQ_EMPTY(&hub->replay)) {
        static const struct timeval now = {0, 0}, later = {0, REPLAY_RETRY_MS * 1000};
        evtimer_add(hub->replay_ev, hub->replay_waits ? &later : &now);
    }
}

/* --- flush: hand gathered frames to sinks, then let doomed subscribers go --------------- */

static void hub_flush(rd_hub *hub)
{
    hub->flush_scheduled = false;
    rd_hub_sub *sub;
    while ((sub = TAILQ_FIRST(&hub->dirty))) {
        TAILQ_REMOVE(&hub->dirty, sub, dlink);
        sub->dirty = false;
        /* A reader that is behind (its transport still holds bytes: the socket is full)
         * keeps its frames here, packed into full chains, until the transport drains:
         * moving each iteration's few small frames would leave a mostly empty chain per
         * frame behind, several times the frames' own size. */
        bool full = sub->ops->unsent(sub->arg) > 0;
        if (sub->state == SUB_LIVE && full) {
            sub->held = true;
            rd_hub_note_load(sub, rd_hub_behind(sub));
            continue;
        }
        if (sub->state == SUB_LAG) {
            if (full)
                continue;            /* its drain starts the catch-up */
            sub->state = SUB_REPLAY; /* drained before we heard: catch up now */
        }
        sub->held = false;
        sub->ops->send(sub->arg, sub->pending);
        rd_hub_note_load(sub, rd_hub_behind(sub));
        if (sub->state == SUB_REPLAY && page_due(sub))
            queue_replay(sub);
    }
    while ((sub = TAILQ_FIRST(&hub->doomed))) {
        TAILQ_REMOVE(&hub->doomed, sub, xlink);
        sub->dooming = false;
        sub->ops->close(sub->arg, (rd_hub_why)sub->why); /* may unsubscribe (free) sub */
    }
}

static void hub_on_flush(evutil_socket_t fd, short what, void *arg)
{
    hub_flush(arg);
}

/* --- subscribers ------------------------------------------------------------------------ */

static int sub_link(rd_hub *hub, rd_hub_sub *sub)
{
    if (!sub->run_id) {
        TAILQ_INSERT_TAIL(&hub->global, sub, link);
        return 0;
    }
    run_subs *rs = rd_map_get(hub->by_run, sub->run_id);
    if (!rs) {
        rs = calloc(1, sizeof *rs);
        if (!rs)
            return -1;
        TAILQ_INIT(&rs->subs);
        if (rd_map_set(hub->by_run, sub->run_id, rs) != 0) {
            free(rs);
            return -1;
        }
    }
    TAILQ_INSERT_TAIL(&rs->subs, sub, link);
    return 0;
}

static void sub_free(rd_hub_sub *sub)
{
    if (sub->pending)
        evbuffer_free(sub->pending);
    filter_free(sub->filter);
    free(sub->run_id);
    free(sub);
}

rd_hub_sub *rd_hub_subscribe(rd_hub *hub, const rd_hub_filter *f, int64_t resume, bool run_finished,
                             const rd_hub_sink_ops *ops, void *arg)
{
    rd_hub_sub *sub = calloc(1, sizeof *sub);
    if (!sub)
        return NULL;
    sub->hub = hub;
    sub->ops = ops;
    sub->arg = arg;
    sub->run_finished = run_finished;
    sub->audience = f->audience;
    sub->pending = evbuffer_new();
    bool ok = sub->pending != NULL;
    if (ok && f->run_id)
        ok = (sub->run_id = strdup(f->run_id)) != NULL;
    else if (ok)
        ok = (sub->filter = filter_copy(f)) != NULL ||
             (f->n_runs == 0 && f->n_flows == 0 && f->n_types == 0);
    if (!ok || sub_link(hub, sub) != 0) {
        sub_free(sub);
        return NULL;
    }
    hub->n_subs++;
    if (resume < 0) {
        sub->cursor = hub->last_id;
        sub->state = SUB_LIVE;
    } else {
        sub->cursor = resume;
        sub->state = SUB_REPLAY;
        hub->st.replays++;
        queue_replay(sub);
    }
    return sub;
}

void rd_hub_sub_write(rd_hub_sub *sub, const char *data, size_t len)
{
    if (sub->state == SUB_CLOSING)
        return;
    evbuffer_add(sub->pending, data, len);
    mark_dirty(sub);
}

void rd_hub_sub_drained(rd_hub_sub *sub)
{
    rd_hub_note_load(sub, rd_hub_behind(sub));
    if (sub->state == SUB_LAG) {
        /* Its socket takes bytes again: what it missed comes from the store, after the frames
         * it still has here (hub_flush sends those, then queues the first page). */
        sub->state = SUB_REPLAY;
        mark_dirty(sub);
    }
    if (sub->state == SUB_REPLAY && !sub->dirty)
        queue_replay(sub);
    else if (sub->held)
        mark_dirty(sub); /* its held frames go now */
}

void rd_hub_unsubscribe(rd_hub_sub *sub)
{
    if (!sub)
        return;
    rd_hub *hub = sub->hub;
    unqueue(sub);
    hub->backlog -= sub->load;
    sub->load = 0;
    if (sub->run_id) {
        run_subs *rs = rd_map_get(hub->by_run, sub->run_id);
        if (rs) {
            TAILQ_REMOVE(&rs->subs, sub, link);
            if (TAILQ_EMPTY(&rs->subs))
                free(rd_map_del(hub->by_run, sub->run_id));
        }
    } else {
        TAILQ_REMOVE(&hub->global, sub, link);
    }
    hub->n_subs--;
    sub_free(sub);
}

static void hub_on_collect(const char *key, void *value, void *arg)
{
    rd_hub_sub ***p = arg;
    rd_hub_sub *sub;
    TAILQ_FOREACH(sub, &((run_subs *)value)->subs, link)
    {
        *(*p)++ = sub;
    }
}

/* Every subscriber into all (room for n_subs); returns how many. */
size_t rd_hub_collect(rd_hub *hub, rd_hub_sub **all)
{
    rd_hub_sub **p = all, *sub;
    rd_map_each(hub->by_run, hub_on_collect, &p);
    TAILQ_FOREACH(sub, &hub->global, link)
    {
        *p++ = sub;
    }
    return (size_t)(p - all);
}

void rd_hub_close_all(rd_hub *hub, bool force)
{
    hub_flush(hub); /* what was gathered goes out first */
    if (hub->n_subs == 0)
        return;
    /* A snapshot: each close may free its own subscriber, never another. */
    rd_hub_sub **all = calloc(hub->n_subs, sizeof *all), *sub;
    if (!all)
        return;
    rd_hub_sub **p = all + rd_hub_collect(hub, all);
    for (rd_hub_sub **q = all; q < p; q++) {
        sub = *q;
        if (sub->state == SUB_CLOSING && !force)
            continue; /* already asked; its flush is under way */
        unqueue(sub);
        sub->state = SUB_CLOSING;
        sub->ops->close(sub->arg, force ? RD_HUB_ABORT : RD_HUB_SHUTDOWN);
    }
    free(all);
}

/* --- the hub ---------------------------------------------------------------------------- */

rd_hub *rd_hub_new(struct event_base *base, const rd_hub_opts *o, int64_t last_id)
{
    rd_hub *hub = calloc(1, sizeof *hub);
    if (!hub)
        return NULL;
    hub->base = base;
    hub->scan = o->scan;
    hub->scan_arg = o->scan_arg;
    hub->max_buffer = o->max_buffer;
    hub->max_total = o->max_total;
    hub->backpressure = o->backpressure;
    hub->stall_ms = o->stall_ms > 0 ? o->stall_ms : 5000;
    hub->on_pressure = o->on_pressure;
    hub->pressure_arg = o->pressure_arg;
    hub->page = o->page > 0 ? o->page : 500;
    hub->last_id = last_id;
    if (rd_hub_ring_new(hub, last_id) != 0)
        rd_hub_ring_free(hub); /* no ring: lagging readers catch up from the store */
    TAILQ_INIT(&hub->global);
    TAILQ_INIT(&hub->dirty);
    TAILQ_INIT(&hub->replay);
    TAILQ_INIT(&hub->doomed);
    hub->by_run = rd_map_new();
    hub->flush_ev = event_new(base, -1, 0, hub_on_flush, hub);
    hub->replay_ev = evtimer_new(base, hub_on_replay, hub);
    hub->budget_ev = event_new(base, -1, 0, rd_hub_on_budget, hub);
    hub->pressure_ev = evtimer_new(base, rd_hub_on_pressure, hub);
    if (!hub->by_run || !hub->flush_ev || !hub->replay_ev || !hub->budget_ev || !hub->pressure_ev) {
        rd_hub_free(hub);
        return NULL;
    }
    return hub;
}

void rd_hub_free(rd_hub *hub)
{
    if (!hub)
        return;
    if (hub->n_subs)
        rd_log_err("hub: freed with %zu subscriber(s) left", hub->n_subs);
    if (hub->flush_ev)
        event_free(hub->flush_ev);
    if (hub->replay_ev)
        event_free(hub->replay_ev);
    if (hub->budget_ev)
        event_free(hub->budget_ev);
    if (hub->pressure_ev)
        event_free(hub->pressure_ev);
    rd_map_free(hub->by_run);
    rd_hub_ring_free(hub);
    free(hub);
}

void rd_hub_set_max_buffer(rd_hub *hub, size_t max_buffer)
{
    hub->max_buffer = max_buffer;
}

void rd_hub_set_max_total(rd_hub *hub, size_t max_total)
{
    hub->max_total = max_total;
}

size_t rd_hub_low_watermark(const rd_hub *hub)
{
    return hub->max_buffer / 4;
}

size_t rd_hub_count(const rd_hub *hub)
{
    return hub->n_subs;
}

void rd_hub_note_reset(rd_hub *hub)
{
    hub->st.resets++;
}

static void hub_on_held(const char *key, void *value, void *arg)
{
    uint64_t *held = arg;
    rd_hub_sub *sub;
    TAILQ_FOREACH(sub, &((run_subs *)value)->subs, link)
    {
        *held += evbuffer_get_length(sub->pending);
    }
}

void rd_hub_get_stats(const rd_hub *hub, rd_hub_stats *out)
{
    *out = hub->st;
    out->subscribers = hub->n_subs;
    out->ring_bytes = rd_hub_ring_bytes(hub);
    out->held_bytes = 0;
    rd_map_each(hub->by_run, hub_on_held, &out->held_bytes);
    const rd_hub_sub *sub;
    TAILQ_FOREACH(sub, &hub->global, link)
    {
        out->held_bytes += evbuffer_get_length(sub->pending);
    }
}
