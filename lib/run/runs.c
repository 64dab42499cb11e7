/*
 * runs.c: the set of runs held in memory: adopting records, holding and releasing them,
 * per-run slots of upper layers, observers, and the cheap lookups the operations start from.
 * A record leaves memory only after a commit, so a watcher woken by it reads durable state.
 */
#include "run/run_int.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "webhook/outbox.h"

static void runs_on_commit(evutil_socket_t fd, short what, void *arg)
{
    rd_runs_commit_async(arg);
}

rd_runs *rd_runs_new(struct event_base *base, rd_store *store, const rd_config *cfg)
{
    rd_runs *rs = calloc(1, sizeof *rs);
    if (!rs)
        return NULL;
    rs->base = base;
    rs->store = store;
    rs->cfg = cfg;
    rs->store_ok = true;
    TAILQ_INIT(&rs->dirty);
    TAILQ_INIT(&rs->releasing);
    TAILQ_INIT(&rs->afters);
    STAILQ_INIT(&rs->pending);
    LIST_INIT(&rs->listeners);
    LIST_INIT(&rs->observers);
    rs->active = rd_map_new();
    rs->commit_ev = event_new(base, -1, 0, runs_on_commit, rs);
    if (!rs->active || !rs->commit_ev || rd_runs_load_keys(rs) != 0 ||
        rd_runs_probe_start(rs) != 0) {
        rd_runs_free(rs);
        return NULL;
    }
    return rs;
}

void rd_active_free(rd_active *act)
{
    rd_runs *rs = act->rs;
    rd_active_wake_watches(act);
    rd_observer *o, *next;
    for (o = LIST_FIRST(&rs->observers); o; o = next) {
        next = LIST_NEXT(o, link);
        if (o->o.on_free)
            o->o.on_free(o->o.arg, act);
    }
    if (act->run->status == RD_ST_QUEUED)
        rs->n_queued--;
    if (act->dirty)
        TAILQ_REMOVE(&rs->dirty, act, dlink);
    if (act->releasing)
        TAILQ_REMOVE(&rs->releasing, act, rlink);
    rd_map_del(rs->active, act->run->id);
    rd_run_free(act->run);
    free(act);
}

static void free_one(const char *key, void *value, void *arg)
{
    rd_active_free(value);
}

void rd_runs_free(rd_runs *rs)
{
    if (!rs)
        return;
    if (rs->active) {
        rd_runs_flush(rs);
        rd_runs_afters_drop(rs);
        /* rd_map_each may not see the map change under it: free from a snapshot of keys. */
        while (rd_map_count(rs->active) > 0)
            rd_map_each(rs->active, free_one, NULL);
        rd_map_free(rs->active);
    }
    rd_pending_pub *p;
    while ((p = STAILQ_FIRST(&rs->pending))) {
        STAILQ_REMOVE_HEAD(&rs->pending, link);
        rd_frames_dispose(&p->frames);
        free(p->buf);
        free(p);
    }
    rd_listener *l;
    while ((l = LIST_FIRST(&rs->listeners))) {
        LIST_REMOVE(l, link);
        free(l);
    }
    rd_observer *o;
    while ((o = LIST_FIRST(&rs->observers))) {
        LIST_REMOVE(o, link);
        free(o);
    }
    rd_runs_probe_stop(rs);
    rd_runs_commit_wait(rs); /* when rd_runs_new failed half-way, nothing is in flight */
    if (rs->store && rs->store->commit_done_arg == rs)
        rd_store_commit_hook(rs->store, NULL, NULL);
    if (rs->commit_io)
        event_free(rs->commit_io);
    if (rs->commit_ev)
        event_free(rs->commit_ev);
    if (rs->retry_ev)
        event_free(rs->retry_ev);
    free(rs->metrics);
    free(rs);
}

void rd_runs_set_config(rd_runs *rs, const rd_config *cfg)
{
    rs->cfg = cfg;
}

const rd_config *rd_runs_config(const rd_runs *rs)
{
    return rs->cfg;
}

struct event_base *rd_runs_base(const rd_runs *rs)
{
    return rs->base;
}

rd_store *rd_runs_store(const rd_runs *rs)
{
    return rs->store;
}

bool rd_runs_store_ok(const rd_runs *rs)
{
    return rs->store_ok && !rs->probe_down;
}

int rd_runs_n_queued(const rd_runs *rs)
{
    return rs->n_queued;
}

rd_active *rd_runs_get(rd_runs *rs, const char *id)
{
    return rd_map_get(rs->active, id);
}

rd_active *rd_runs_adopt(rd_runs *rs, rd_run *run)
{
    rd_active *act = calloc(1, sizeof *act);
    if (!act)
        return NULL;
    act->rs = rs;
    act->run = run;
    LIST_INIT(&act->watches);
    if (rd_map_set(rs->active, run->id, act) != 0) {
        free(act);
        return NULL;
    }
    if (run->status == RD_ST_QUEUED) {
        rs->n_queued++;
        act->queued_at = run->updated_at;
    }
    return act;
}

bool rd_run_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 5 || n >= RD_RUN_ID_MAX || strncmp(id, "run_", 4) != 0)
        return false;
    for (size_t i = 4; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

int rd_runs_find(rd_runs *rs, const char *id, const rd_run **r, rd_run **owned, rd_apierr *e)
{
    *owned = NULL;
    if (!rd_run_id_valid(id))
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    rd_active *act = rd_runs_get(rs, id);
    if (act) {
        *r = act->run;
        return 0;
    }
    int rc = rd_store_run_get(rs->store, id, owned);
    if (rc == RD_ENOTFOUND)
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    if (rc != 0)
        return rd_fail_store(e);
    *r = *owned;
    return 0;
}

int rd_runs_load(rd_runs *rs, const char *id, rd_active **out, rd_apierr *e)
{
    const rd_run *r;
    rd_run *stored;
    if (rd_runs_find(rs, id, &r, &stored, e) != 0)
        return -1;
    rd_active *act = stored ? rd_runs_adopt(rs, stored) : rd_runs_get(rs, id);
    if (!act) {
        rd_run_free(stored);
        return rd_fail(e, 500, "internal", "out of memory");
    }
    /* A run loaded from the store that is not active goes away again after the next commit. */
    if (stored && !rd_status_active(stored->status))
        rd_active_release(act);
    *out = act;
    return 0;
}

int rd_runs_lookup(rd_runs *rs, const char *id, rd_status *status, rd_reason *reason, rd_apierr *e)
{
    const rd_run *r = NULL;
    rd_run *stored = NULL;
    if (rd_runs_find(rs, id, &r, &stored, e) != 0)
        return -1;
    *status = r->status;
    *reason = r->reason;
    rd_run_free(stored);
    return 0;
}

typedef struct each_ctx {
    void (*fn)(rd_active *act, void *arg);
    void *arg;
} each_ctx;

static void each_one(const char *key, void *value, void *arg)
{
    each_ctx *c = arg;
    c->fn(value, c->arg);
}

void rd_runs_each(rd_runs *rs, void (*fn)(rd_active *act, void *arg), void *arg)
{
    each_ctx c = {fn, arg};
    rd_map_each(rs->active, each_one, &c);
}

const rd_run *rd_active_run(const rd_active *act)
{
    return act->run;
}

rd_runs *rd_active_runs(const rd_active *act)
{
    return act->rs;
}

void rd_active_mark_dirty(rd_active *act)
{
    if (!act->dirty) {
        act->dirty = true;
        TAILQ_INSERT_TAIL(&act->rs->dirty, act, dlink);
    }
    rd_runs_commit_soon(act->rs);
}

void rd_active_release(rd_active *act)
{
    if (act->releasing)
        return;
    if (act->holds > 0) {
        act->release_wanted = true; /* done when the last hold goes */
        return;
    }
    act->release_wanted = false;
    act->releasing = true;
    act->release_after = act->rs->tickets + 1; /* the next commit carries its last changes */
    TAILQ_INSERT_TAIL(&act->rs->releasing, act, rlink);
    rd_runs_commit_soon(act->rs);
}

void rd_active_keep(rd_active *act)
{
    act->release_wanted = false;
    if (act->releasing) {
        TAILQ_REMOVE(&act->rs->releasing, act, rlink);
        act->releasing = false;
    }
}

void rd_active_hold(rd_active *act)
{
    act->holds++;
}

void rd_active_unhold(rd_active *act)
{
    if (act->holds > 0 && --act->holds == 0 && act->release_wanted)
        rd_active_release(act);
}

void *rd_active_slot(const rd_active *act, int slot)
{
    return act->slots[slot];
}

void rd_active_set_slot(rd_active *act, int slot, void *value)
{
    act->slots[slot] = value;
}

void *rd_runs_observe(rd_runs *rs, const rd_runs_observer *o)
{
    rd_observer *ob = calloc(1, sizeof *ob);
    if (!ob)
        return NULL;
    ob->o = *o;
    /* In registration order: lower layers (registered first) hear first. */
    rd_observer *last = LIST_FIRST(&rs->observers);
    while (last && LIST_NEXT(last, link))
        last = LIST_NEXT(last, link);
    if (last)
        LIST_INSERT_AFTER(last, ob, link);
    else
        LIST_INSERT_HEAD(&rs->observers, ob, link);
    return ob;
}

void rd_runs_unobserve(rd_runs *rs, void *handle)
{
    rd_observer *ob = handle;
    if (!ob)
        return;
    LIST_REMOVE(ob, link);
    free(ob);
}

void rd_runs_tell_status(rd_active *act, rd_status from, rd_status to)
{
    rd_observer *o, *next;
    for (o = LIST_FIRST(&act->rs->observers); o; o = next) {
        next = LIST_NEXT(o, link);
        if (o->o.on_status)
            o->o.on_status(o->o.arg, act, from, to);
    }
}
