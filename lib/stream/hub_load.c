/*
 * hub_load.c: what all subscribers hold together.
 *
 * Both judge what a subscriber is behind by (rd_hub_behind): its unsent bytes plus, while it
 * lags, the bytes it was not given (hub.c). So they act as if every reader were given every
 * frame, while a lagging reader holds at most LAG_AT in memory: the budget bounds memory more
 * tightly than it must, and a reader that keeps up but does not read holds producers back
 * however its bytes are kept.
 *
 * The budget: what every subscriber is behind by, together, is bounded (max_total); past it
 * the subscribers furthest behind are cut first. It is checked when an upper bound of the
 * total (the exact total at the last check plus everything queued or counted since) passes
 * max_total.
 *
 * Backpressure: the backlog is the unsent bytes of the subscribers that keep up (those under
 * half their own bound; a slower one is on its way to being cut and never slows a run). Past
 * `backpressure` bytes (at least half a subscriber's bound, so no subscriber alone can reach
 * it) the owner is told to slow its producers (it stops reading workers'
 * output and holds external workers' posts); the backlog is then recomputed exactly every
 * 20 ms, and the owner is released once it falls to half the bound.
 *
 * Readers that stop reading must not hold producers forever: two thousand stalled streams
 * each under half its bound would otherwise pause every run for good, and nothing would ever
 * cut them (they grow only while producers run). So while producers are paused, a reader whose
 * unsent bytes have not gone down for `stall_ms` ([server] sse_stall, 5 s) is stalled: it no
 * longer counts as keeping up. Producers then go on, and it falls behind to its own bound (or
 * the budget) and is cut like any slow reader; taking bytes again makes it count again.
 */
#include "stream/hub_int.h"

#include <stdlib.h>

#define PRESSURE_RECHECK_MS 20

void rd_hub_account(rd_hub *hub, size_t bytes)
{
    hub->since_check += bytes;
    if (hub->max_total && hub->total_at_check + hub->since_check > hub->max_total &&
        !event_pending(hub->budget_ev, EV_TIMEOUT, NULL))
        event_active(hub->budget_ev, EV_TIMEOUT, 0);
}

typedef struct sub_load {
    rd_hub_sub *sub;
    size_t unsent;
} sub_load;

static int by_load_desc(const void *a, const void *b)
{
    const sub_load *x = a, *y = b;
    if (x->unsent != y->unsent)
        return x->unsent < y->unsent ? 1 : -1;
    return x->sub->cursor < y->sub->cursor ? -1 : x->sub->cursor > y->sub->cursor;
}

/* Over the budget: the subscribers furthest behind (most bytes unsent) are cut first, until
 * the rest fit in nine tenths of it. They resume from the store with Last-Event-ID. */
void rd_hub_on_budget(evutil_socket_t fd, short what, void *arg)
{
    rd_hub *hub = arg;
    size_t n = hub->n_subs, total = 0;
    rd_hub_sub **all = n ? calloc(n, sizeof *all) : NULL;
    sub_load *load = n ? calloc(n, sizeof *load) : NULL;
    if (n && (!all || !load)) {
        free(all);
        free(load);
        return;
    }
    n = rd_hub_collect(hub, all);
    for (size_t i = 0; i < n; i++) {
        load[i].sub = all[i];
        load[i].unsent = all[i]->state == SUB_CLOSING ? 0 : rd_hub_behind(all[i]);
        total += load[i].unsent;
    }
    if (total > hub->max_total) {
        qsort(load, n, sizeof *load, by_load_desc);
        for (size_t i = 0; i < n && total > hub->max_total / 10 * 9 && load[i].unsent; i++) {
            total -= load[i].unsent;
            rd_hub_doom(load[i].sub, RD_HUB_SLOW);
            hub->st.budget_cuts++;
        }
    }
    hub->total_at_check = total;
    hub->since_check = 0;
    free(all);
    free(load);
}

static size_t keeping_up(const rd_hub_sub *sub, size_t unsent)
{
    if (sub->state == SUB_CLOSING || sub->stalled)
        return 0;
    return unsent <= sub->hub->max_buffer / 2 ? unsent : 0;
}

/* Taking bytes (fewer unsent than last seen) is progress and undoes a stall. */
static void note_progress(rd_hub_sub *sub, size_t behind)
{
    if (behind < sub->last_behind || behind == 0) {
        sub->stalled = false;
        sub->stuck_since_ms = 0;
    }
    sub->last_behind = behind;
}

/* Under pressure: a reader that took nothing for stall_ms is stalled. */
static void judge_stall(rd_hub_sub *sub, size_t behind, int64_t now)
{
    bool progress = behind == 0 || behind < sub->last_behind;
    if (!progress && sub->ops->taken) {
        /* The socket's buffers can hold seconds of a paced reader's bytes: ask the kernel. */
        uint64_t t = sub->ops->taken(sub->arg);
        progress = t > sub->last_taken;
        sub->last_taken = t;
    }
    note_progress(sub, behind);
    if (progress || sub->stalled)
        return;
    if (!sub->stuck_since_ms) {
        sub->stuck_since_ms = now;
    } else if (now - sub->stuck_since_ms >= sub->hub->stall_ms) {
        sub->stalled = true;
        sub->hub->st.stalls++;
    }
}

static void pressure_set(rd_hub *hub, bool on)
{
    if (hub->pressure == on)
        return;
    hub->pressure = on;
    if (on) {
        hub->st.pressure_events++;
        struct timeval tv = {0, PRESSURE_RECHECK_MS * 1000};
        evtimer_add(hub->pressure_ev, &tv);
    }
    if (hub->on_pressure)
        hub->on_pressure(hub->pressure_arg, on);
}

/* The bound is at least half a subscriber's own bound: one subscriber alone never reaches it. */
static size_t bound(const rd_hub *hub)
{
    return hub->backpressure > hub->max_buffer / 2 ? hub->backpressure : hub->max_buffer / 2 + 1;
}

void rd_hub_note_load(rd_hub_sub *sub, size_t behind)
{
    rd_hub *hub = sub->hub;
    note_progress(sub, behind);
    size_t load = keeping_up(sub, behind);
    hub->backlog = hub->backlog - sub->load + load;
    sub->load = load;
    if (hub->backpressure && !hub->pressure && hub->backlog > bound(hub))
        pressure_set(hub, true);
}

void rd_hub_on_pressure(evutil_socket_t fd, short what, void *arg)
{
    rd_hub *hub = arg;
    size_t n = hub->n_subs, total = 0;
    rd_hub_sub **all = n ? calloc(n, sizeof *all) : NULL;
    if (n && !all)
        return;
    n = rd_hub_collect(hub, all);
    int64_t now = rd_mono_ms();
    for (size_t i = 0; i < n; i++) {
        size_t behind = rd_hub_behind(all[i]);
        if (hub->pressure)
            judge_stall(all[i], behind, now);
        all[i]->load = keeping_up(all[i], behind);
        total += all[i]->load;
    }
    free(all);
    hub->backlog = total;
    if (!hub->pressure)
        return;
    if (total <= bound(hub) / 2) {
        pressure_set(hub, false);
        return;
    }
    struct timeval tv = {0, PRESSURE_RECHECK_MS * 1000};
    evtimer_add(hub->pressure_ev, &tv);
}

bool rd_hub_pressure(const rd_hub *hub)
{
    return hub->pressure;
}

void rd_hub_set_backpressure(rd_hub *hub, size_t bytes)
{
    hub->backpressure = bytes;
}

void rd_hub_set_stall(rd_hub *hub, int64_t ms)
{
    hub->stall_ms = ms > 0 ? ms : 5000;
}
