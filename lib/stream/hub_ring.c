/*
 * hub_ring.c: the recent frames every subscriber can catch up from without the store.
 *
 * A reader that lags (its socket was full; hub.c) was live until then, so every event it wants
 * after its cursor was published while it was subscribed, with its frames. The ring keeps the
 * frames of the latest published events (those some subscriber could want: an event with no
 * subscriber for its run and no global one is not kept), by reference: the same refcounted
 * blocks live readers were given, so keeping them costs no copy. A lagging reader whose cursor
 * is at or after the ring's floor (the newest event ever dropped from it) finds every event it
 * wants in the ring, in order, and is caught up from memory: one format per event for
 * everybody, where the store path renders each event again for each reader. Older cursors, and
 * readers that resume with Last-Event-ID (they want events from before they subscribed), read
 * the store as before.
 *
 * The ring is bounded by bytes (RING_BYTES) and by events (RING_EVENTS); the oldest go first and
 * move the floor. Anything that could leave a hole (a frame that could not be kept, an event
 * published without its frame) drops everything kept and moves the floor past it.
 */
#include <stdlib.h>
#include <string.h>

#include "stream/hub_int.h"

typedef struct ring_ev {
    int64_t id;
    const char *run_id, *flow, *type; /* in meta */
    bool terminal;
    shared_frame *frame[RD_AUD__COUNT]; /* [RD_AUD_FULL], and an audience's own, or NULL */
    size_t bytes;
    char *meta;
} ring_ev;

struct hub_ring {
    ring_ev *ev; /* circular: n entries from head */
    size_t cap, head, n, bytes, max_bytes;
    int64_t floor;
};

void rd_frame_unref(shared_frame *f)
{
    if (f && --f->refs == 0)
        free(f);
}

int rd_hub_ring_new(rd_hub *hub, int64_t floor)
{
    hub->ring = calloc(1, sizeof *hub->ring);
    if (!hub->ring)
        return -1;
    hub->ring->cap = RING_EVENTS;
    hub->ring->max_bytes = RING_BYTES;
    hub->ring->floor = floor;
    hub->ring->ev = calloc(RING_EVENTS, sizeof *hub->ring->ev);
    return hub->ring->ev ? 0 : -1;
}

static void drop_oldest(hub_ring *r)
{
    ring_ev *e = &r->ev[r->head];
    r->floor = e->id;
    for (int a = 0; a < RD_AUD__COUNT; a++)
        rd_frame_unref(e->frame[a]);
    free(e->meta);
    r->bytes -= e->bytes;
    memset(e, 0, sizeof *e);
    r->head = (r->head + 1) % r->cap;
    r->n--;
}

void rd_hub_ring_free(rd_hub *hub)
{
    hub_ring *r = hub->ring;
    if (!r)
        return;
    while (r->n)
        drop_oldest(r);
    free(r->ev);
    free(r);
    hub->ring = NULL;
}

void rd_hub_ring_reset(rd_hub *hub, int64_t id)
{
    hub_ring *r = hub->ring;
    if (!r)
        return;
    while (r->n)
        drop_oldest(r);
    if (id > r->floor)
        r->floor = id;
}

static char *meta_dup(const rd_hub_event *ev, ring_ev *e)
{
    size_t lr = strlen(ev->run_id) + 1, lf = ev->flow ? strlen(ev->flow) + 1 : 0,
           lt = strlen(ev->type) + 1;
    char *m = malloc(lr + lf + lt);
    if (!m)
        return NULL;
    memcpy(m, ev->run_id, lr);
    memcpy(m + lr, ev->type, lt);
    e->run_id = m;
    e->type = m + lr;
    e->flow = NULL;
    if (ev->flow) {
        memcpy(m + lr + lt, ev->flow, lf);
        e->flow = m + lr + lt;
    }
    e->bytes = lr + lf + lt + sizeof *e;
    return m;
}

void rd_hub_ring_add(rd_hub *hub, const rd_hub_event *ev, shared_frame *const frames[])
{
    hub_ring *r = hub->ring;
    if (!r)
        return;
    if (!frames[RD_AUD_FULL]) {
        rd_hub_ring_reset(hub, ev->id); /* a hole: nobody catches up across it from here */
        return;
    }
    if (r->n == r->cap)
        drop_oldest(r);
    ring_ev *e = &r->ev[(r->head + r->n) % r->cap];
    if (!(e->meta = meta_dup(ev, e))) {
        rd_hub_ring_reset(hub, ev->id);
        return;
    }
    e->id = ev->id;
    e->terminal = ev->terminal;
    for (int a = 0; a < RD_AUD__COUNT; a++) {
        if (frames[a] && (a == RD_AUD_FULL || frames[a] != frames[RD_AUD_FULL])) {
            e->frame[a] = frames[a];
            frames[a]->refs++;
            e->bytes += frames[a]->len;
        }
    }
    r->n++;
    r->bytes += e->bytes;
    while (r->n > 1 && r->bytes > r->max_bytes)
        drop_oldest(r);
}

bool rd_hub_ring_covers(const rd_hub *hub, int64_t cursor)
{
    return hub->ring && cursor >= hub->ring->floor;
}

size_t rd_hub_ring_bytes(const rd_hub *hub)
{
    return hub->ring ? hub->ring->bytes : 0;
}

/* The first entry with id > after: ids grow along the ring, so a binary search. */
static size_t first_after(const hub_ring *r, int64_t after)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->ev[(r->head + mid) % r->cap].id <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int rd_hub_ring_scan(const rd_hub *hub, int64_t after, rd_audience aud, size_t max_rows,
                     rd_ring_row_fn fn, void *arg)
{
    const hub_ring *r = hub->ring;
    size_t i = first_after(r, after), rows = 0;
    for (; i < r->n; i++) {
        if (rows++ == max_rows)
            return 2;
        const ring_ev *e = &r->ev[(r->head + i) % r->cap];
        rd_hub_event ev = {.id = e->id,
                           .run_id = e->run_id,
                           .flow = e->flow,
                           .type = e->type,
                           .terminal = e->terminal};
        shared_frame *f =
            aud < RD_AUD__COUNT && e->frame[aud] ? e->frame[aud] : e->frame[RD_AUD_FULL];
        if (fn(&ev, f, arg) != 0)
            return 1;
    }
    return 0;
}
