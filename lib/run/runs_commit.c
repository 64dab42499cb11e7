/*
 * runs_commit.c: the commit pipeline. Events are appended to the store's open transaction as they
 * happen (record.c); at the end of the loop iteration, or when an operation must answer only
 * once durable (rd_runs_flush), the dirty records are written and the transaction commits.
 * Only then are the batch's events handed to listeners (the SSE hub), the webhook outbox
 * kicked and watchers woken. A failed commit rolls back and publishes nothing.
 *
 * The end of a loop iteration does not wait for the commit (rd_runs_commit_async): the store
 * starts it and the loop watches the store's socket (a backend without asynchronous commits,
 * SQLite, completes at once through the same path). Each commit is a ticket: what it carries
 * (the publications queued and the rows written when it started) is acted on when it
 * completes, in ticket order, one commit in flight at a time; what the loop does meanwhile
 * goes into the next. A watcher is woken by the completion of the commit that carried its
 * run's settled row, a record is freed after the commit that followed its release.
 * rd_runs_flush waits for the commit in flight, then commits synchronously.
 *
 * An event's SSE payload is formatted once, when it is appended, and only for runs some
 * listener wants, so a million unwatched items cost no formatting. The few events that carry
 * capability links are formatted once more for each audience that sees them differently
 * (rd_runs_frames); listeners share those bytes too.
 */
#include "run/run_int.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhook/outbox.h"

void *rd_runs_listen(rd_runs *rs, rd_event_listener fn, bool (*wants)(void *arg, const char *id),
                     void *arg)
{
    rd_listener *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->fn = fn;
    l->wants = wants;
    l->arg = arg;
    rd_listener *last = LIST_FIRST(&rs->listeners);
    while (last && LIST_NEXT(last, link))
        last = LIST_NEXT(last, link);
    if (last)
        LIST_INSERT_AFTER(last, l, link);
    else
        LIST_INSERT_HEAD(&rs->listeners, l, link);
    return l;
}

void rd_runs_unlisten(rd_runs *rs, void *handle)
{
    rd_listener *l = handle;
    if (!l)
        return;
    LIST_REMOVE(l, link);
    free(l);
}

static bool listeners_want(rd_runs *rs, const char *run_id)
{
    rd_listener *l;
    LIST_FOREACH(l, &rs->listeners, link)
    if (!l->wants || l->wants(l->arg, run_id))
        return true;
    return false;
}

void rd_runs_queue_publish(rd_runs *rs, const rd_run *r, int64_t id, const char *type, int64_t ts,
                           const char *data, bool terminal)
{
    if (LIST_EMPTY(&rs->listeners))
        return;
    if (!listeners_want(rs, r->id)) {
        /* Nobody watches this run: the id alone goes out after the commit. */
        if (id > rs->pub_watermark)
            rs->pub_watermark = id;
        return;
    }
    rd_frame_src src = {
        .id = id, .type = type, .run_id = r->id, .flow = r->flow, .ts = ts, .data = data};
    rd_pending_pub *p = calloc(1, sizeof *p);
    if (!p || rd_runs_frames(rs, &src, &p->frames) != 0) {
        free(p);
        return;
    }
    /* One buffer: run_id \0 flow \0 type \0 data \0, freed with the entry. */
    size_t il = strlen(r->id) + 1, fl = strlen(r->flow) + 1, tl = strlen(type) + 1,
           dl = strlen(data) + 1;
    char *o = p->buf = malloc(il + fl + tl + dl);
    if (!o) {
        rd_frames_dispose(&p->frames);
        free(p);
        return;
    }
    p->ev.run_id = memcpy(o, r->id, il);
    p->ev.flow = memcpy(o += il, r->flow, fl);
    p->ev.type = memcpy(o += fl, type, tl);
    p->ev.data = memcpy(o += tl, data, dl);
    p->ev.frame = p->frames.text[RD_AUD_FULL];
    p->ev.frame_len = p->frames.len[RD_AUD_FULL];
    for (int a = 0; a < RD_AUD__COUNT; a++) {
        if (a == RD_AUD_FULL)
            continue;
        p->ev.variant[a] = p->frames.text[a];
        p->ev.variant_len[a] = p->frames.len[a];
    }
    p->ev.id = id;
    p->ev.ts = ts;
    p->ev.run_terminal = terminal;
    STAILQ_INSERT_TAIL(&rs->pending, p, link);
    rs->n_pending++;
}

void rd_runs_commit_soon(rd_runs *rs)
{
    if (!event_pending(rs->commit_ev, EV_TIMEOUT, NULL))
        event_active(rs->commit_ev, EV_TIMEOUT, 0);
}

/* Hands the publications a completed commit carried to the listeners, in id order. */
static void publish(rd_runs *rs)
{
    rd_pending_pub *p;
    rd_listener *l, *next;
    while (rs->cut_n > 0 && (p = STAILQ_FIRST(&rs->pending))) {
        STAILQ_REMOVE_HEAD(&rs->pending, link);
        rs->cut_n--;
        rs->n_pending--;
        for (l = LIST_FIRST(&rs->listeners); l; l = next) {
            next = LIST_NEXT(l, link);
            l->fn(&p->ev, l->arg);
        }
        rd_frames_dispose(&p->frames);
        free(p->buf);
        free(p);
    }
    rs->cut_n = 0;
    if (rs->cut_watermark > 0) {
        /* After the formatted ones: listeners ignore ids at or below what they have seen. */
        rd_pub_event w = {
            .id = rs->cut_watermark, .run_id = "", .flow = "", .type = "", .data = ""};
        rs->cut_watermark = 0;
        for (l = LIST_FIRST(&rs->listeners); l; l = next) {
            next = LIST_NEXT(l, link);
            l->fn(&w, l->arg);
        }
    }
}

/* After a failed commit the journal (store/store_journal.c) holds the batch; retry until the
 * store takes it, so a daemon with nothing else to do still catches up. */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

static void runs_on_retry(evutil_socket_t fd, short what, void *arg)
{
    rd_runs_commit_soon(arg); /* off the loop, as any commit: a store that hangs holds nothing */
}

static void arm_retry(rd_runs *rs)
{
    rs->retry_ms = rs->retry_ms ? rs->retry_ms * 2 : RETRY_MIN_MS;
    if (rs->retry_ms > RETRY_MAX_MS)
        rs->retry_ms = RETRY_MAX_MS;
    struct timeval tv = {rs->retry_ms / 1000, (rs->retry_ms % 1000) * 1000};
    if (!rs->retry_ev)
        rs->retry_ev = evtimer_new(rs->base, runs_on_retry, rs);
    if (rs->retry_ev)
        evtimer_add(rs->retry_ev, &tv);
}

/* Starts a ticket: the dirty rows go into its transaction, and it carries the publications
 * queued so far (with those of an earlier failed commit, still queued before them). */
static uint64_t commit_cut(rd_runs *rs)
{
    uint64_t t = ++rs->tickets;
    rd_active *act;
    while ((act = TAILQ_FIRST(&rs->dirty))) {
        TAILQ_REMOVE(&rs->dirty, act, dlink);
        act->dirty = false;
        act->written_in = t;
        rd_store_run_update(rs->store, act->run);
    }
    rs->cut_n = rs->n_pending;
    if (rs->pub_watermark > rs->cut_watermark)
        rs->cut_watermark = rs->pub_watermark;
    rs->pub_watermark = 0;
    return t;
}

static bool settled(rd_status s)
{
    return rd_status_terminal(s) || s == RD_ST_PAUSED || s == RD_ST_AUTH_REQUIRED;
}

void rd_active_wake_watches(rd_active *act)
{
    rd_watch *w;
    while ((w = LIST_FIRST(&act->watches))) {
        LIST_REMOVE(w, link);
        act->rs->n_watches--;
        w->fn(w->arg);
        free(w);
    }
}

/* Watchers are woken after the commit that carried their run's settled row. */
static void wake_settled(const char *key, void *value, void *arg)
{
    rd_active *act = value;
    uint64_t done = *(const uint64_t *)arg;
    if (settled(act->run->status) && !act->dirty && act->written_in <= done)
        rd_active_wake_watches(act);
}

/* Frees the records whose release came before the commit that completed (ticket done). */
static void release_done(rd_runs *rs, uint64_t done)
{
    rd_active *act;
    while ((act = TAILQ_FIRST(&rs->releasing)) && act->release_after <= done) {
        TAILQ_REMOVE(&rs->releasing, act, rlink);
        act->releasing = false;
        if (act->holds > 0) {
            act->release_wanted = true; /* held again since: freed after the last hold */
            continue;
        }
        if (act->dirty) {
            /* Changed again by a watcher: its row goes into the next transaction. */
            TAILQ_REMOVE(&rs->dirty, act, dlink);
            act->dirty = false;
            rd_store_run_update(rs->store, act->run);
            rd_runs_commit_soon(rs);
        }
        rd_active_free(act);
    }
}

/* Tickets are handed out in order, so the list stays sorted by the ticket waited for. */
static rd_after *add_after(rd_runs *rs, uint64_t ticket, rd_commit_fn fn, void *arg)
{
    rd_after *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->ticket = ticket;
    a->fn = fn;
    a->arg = arg;
    TAILQ_INSERT_TAIL(&rs->afters, a, link);
    return a;
}

void *rd_runs_after_commit(rd_runs *rs, rd_commit_fn fn, void *arg)
{
    /* The writes made so far are in the open transaction, or held behind the commit in
     * flight: either way the next ticket carries them. */
    rd_after *a = add_after(rs, rs->tickets + 1, fn, arg);
    if (a)
        rd_runs_commit_soon(rs);
    return a;
}

void *rd_runs_after_inflight(rd_runs *rs, rd_commit_fn fn, void *arg)
{
    return rs->inflight ? add_after(rs, rs->inflight, fn, arg) : NULL;
}

bool rd_runs_committing(const rd_runs *rs)
{
    return rs->inflight != 0;
}

void rd_runs_after_commit_cancel(rd_runs *rs, void *handle)
{
    rd_after *a = handle;
    if (!a)
        return;
    TAILQ_REMOVE(&rs->afters, a, link);
    free(a);
}

/* Calls those waiting for a ticket up to `done`, in order, with rc. Each is taken off the
 * list first, so a call may add or cancel others. */
static void serve_afters(rd_runs *rs, uint64_t done, int rc)
{
    rd_after *a;
    while ((a = TAILQ_FIRST(&rs->afters)) && a->ticket <= done) {
        TAILQ_REMOVE(&rs->afters, a, link);
        a->fn(a->arg, rc);
        free(a);
    }
}

void rd_runs_afters_drop(rd_runs *rs)
{
    serve_afters(rs, UINT64_MAX, RD_ERR);
}

/* A ticket completed with rc: publishes only what committed. A failed batch stays queued for
 * publication: the store's journal writes it again, with the same ids, and the commit that
 * succeeds publishes it. */
static int commit_done(rd_runs *rs, uint64_t ticket, int rc)
{
    rs->m_commits++;
    if (rc != 0) {
        rd_store_rollback(rs->store);
        rs->m_commit_failures++;
        if (rs->store_ok)
            rd_log_err("store commit failed; its events are held until the store takes them");
        rs->store_ok = false;
        rs->cut_n = 0;
        arm_retry(rs);
        serve_afters(rs, ticket, RD_EIO);
        return RD_EIO;
    }
    if (!rs->store_ok)
        rd_log_info("store commits again; held events published");
    rs->store_ok = true;
    rs->retry_ms = 0;
    if (rs->outbox)
        rd_outbox_kick(rs->outbox);
    publish(rs);
    if (rs->n_watches > 0) /* most commits have no waiter to wake */
        rd_map_each(rs->active, wake_settled, &ticket);
    release_done(rs, ticket);
    serve_afters(rs, ticket, 0);
    return 0;
}

static void runs_on_commit_io(evutil_socket_t fd, short what, void *arg);

/* A commit in flight longer than this marks the daemon not ready (/readyz 503) until it
 * completes: the health probe is not sent meanwhile, so it cannot tell. */
#define COMMIT_LATE_MS 2000

/* Waits (on the loop) for the store's socket to be as w says. */
static int wait_io(rd_runs *rs, const rd_store_wait *w)
{
    short what = (short)((w->rd ? EV_READ : 0) | (w->wr ? EV_WRITE : 0));
    if (rs->commit_io &&
        (event_get_fd(rs->commit_io) != w->fd || event_get_events(rs->commit_io) != what)) {
        event_free(rs->commit_io);
        rs->commit_io = NULL;
    }
    if (!rs->commit_io && w->fd >= 0)
        rs->commit_io = event_new(rs->base, w->fd, what, runs_on_commit_io, rs);
    /* Polled again when it is late, or at the store's deadline if that comes first. */
    int ms = rs->commit_late ? 0 : COMMIT_LATE_MS - (int)(rd_mono_ms() - rs->commit_at);
    if (ms <= 0 || (w->timeout_ms > 0 && w->timeout_ms < ms))
        ms = w->timeout_ms > 0 ? w->timeout_ms : COMMIT_LATE_MS;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return rs->commit_io && event_add(rs->commit_io, &tv) == 0 ? 0 : RD_ERR;
}

/* The commit in flight has a result (rc != 1), or could not be waited for on the loop. */
static void inflight_end(rd_runs *rs, int rc)
{
    rd_store_wait w = {0};
    uint64_t t = rs->inflight;
    if (rc == 1) /* nothing to wait on: wait here (never expected) */
        rc = rd_store_commit_poll(rs->store, &w, true);
    if (rs->commit_io)
        event_del(rs->commit_io);
    rs->inflight = 0;
    if (rs->commit_late) {
        rs->commit_late = false;
        if (rc == 0) {
            rd_log_info("store: the database answers again");
            rs->probe_down = false;
        }
    }
    commit_done(rs, t, rc);
    if (rs->again) {
        rs->again = false;
        rd_runs_commit_soon(rs);
    }
}

static void runs_on_commit_io(evutil_socket_t fd, short what, void *arg)
{
    rd_runs *rs = arg;
    rd_store_wait w = {0};
    if (!rs->inflight)
        return;
    int rc = rd_store_commit_poll(rs->store, &w, false);
    if (rc == 1 && !rs->commit_late && rd_mono_ms() - rs->commit_at >= COMMIT_LATE_MS) {
        rd_log_err("store: the database has not answered a commit in %d ms; not ready until it "
                   "does",
                   COMMIT_LATE_MS);
        rs->commit_late = rs->probe_down = true;
    }
    if (rc != 1 || wait_io(rs, &w) != 0)
        inflight_end(rs, rc);
}

/* The store completed the commit in flight inside another call: act on it soon. */
static void runs_on_store_done(void *arg)
{
    rd_runs *rs = arg;
    if (rs->inflight && rs->commit_io)
        event_active(rs->commit_io, EV_READ, 0);
}

void rd_runs_commit_async(rd_runs *rs)
{
    rd_store_wait w = {0};
    if (rs->inflight) {
        rs->again = true; /* started when the one in flight completes */
        return;
    }
    rd_store_commit_hook(rs->store, runs_on_store_done, rs);
    uint64_t t = commit_cut(rs);
    int rc = rd_store_commit_start(rs->store, &w);
    if (rc == 1) {
        rs->inflight = t;
        rs->commit_at = rd_mono_ms();
        if (wait_io(rs, &w) != 0)
            inflight_end(rs, rc);
        return;
    }
    commit_done(rs, t, rc);
}

void rd_runs_commit_wait(rd_runs *rs)
{
    rd_store_wait w = {0};
    if (rs->inflight)
        inflight_end(rs, rd_store_commit_poll(rs->store, &w, true));
}

int rd_runs_flush(rd_runs *rs)
{
    rd_runs_commit_wait(rs);
    uint64_t t = commit_cut(rs);
    return commit_done(rs, t, rd_store_commit(rs->store));
}

void *rd_runs_watch(rd_runs *rs, const char *id, rd_watch_fn fn, void *arg)
{
    rd_active *act = rd_runs_get(rs, id);
    if (!act)
        return NULL;
    rd_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->act = act;
    w->fn = fn;
    w->arg = arg;
    LIST_INSERT_HEAD(&act->watches, w, link);
    rs->n_watches++;
    return w;
}

void rd_runs_unwatch(rd_runs *rs, void *handle)
{
    rd_watch *w = handle;
    if (!w)
        return;
    LIST_REMOVE(w, link);
    rs->n_watches--;
    free(w);
}
