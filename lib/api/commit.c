/*
 * commit.c: answering after the commit. A reply that acknowledges a change goes out only
 * once the commit carrying the change has succeeded, and a handler that uses the store runs
 * only when no commit is in flight (at once, or when the one in flight completes: a store
 * call then never waits for one, since the database connection carries one transaction at a
 * time; no commit is asked for, so reads do not make commits smaller). Neither waits on the loop:
 * the request is parked (rd_req_park) and carried on from the engine's rd_engine_after_commit, so a
 * slow or frozen database delays those requests and nothing else.
 */
#include <stdlib.h>

#include "api/api_int.h"
#include "base/metrics.h"

typedef struct after {
    rd_api *a;
    rd_req *req;                /* parked */
    void *wait;                 /* the engine's handle, NULL once called */
    rd_api_then_fn then;        /* then(req, arg, rc), or */
    rd_http_handler_fn handler; /* a read: handler(req, a) */
    void (*drop)(void *arg);    /* frees arg when the client left first (may be NULL) */
    void *arg;
} after;

/* The gauge of parked requests follows n_waiting. */
static void waiting(rd_api *a, int delta)
{
    a->n_waiting += delta;
    if (a->m_waiting)
        rd_metric_set(a->m_waiting, NULL, a->n_waiting);
}

/* Runs what w waits to run on its parked request, and ends the request unless that handed it
 * on (a handler whose change's reply waits for its own commit). Frees w. */
static void after_run(after *w, int rc)
{
    rd_req *req = w->req;
    if (w->then)
        w->then(req, w->arg, rc);
    else
        w->handler(req, w->a);
    bool answered = rd_req_parked_by(req) == w;
    free(w);
    if (answered)
        rd_req_unpark(req);
}

static void after_on_commit(void *p, int rc)
{
    after *w = p;
    w->wait = NULL;
    waiting(w->a, -1);
    after_run(w, rc);
}

static void after_on_gone(void *p)
{
    after *w = p;
    if (w->wait) {
        rd_engine_after_commit_cancel(w->a->eng, w->wait);
        waiting(w->a, -1);
    }
    if (w->drop)
        w->drop(w->arg);
    free(w);
}

/* Parks req for w (a request parked already is handed to w), then runs w: now when `now`,
 * else after the commit in flight (inflight) or the next one. False when out of memory before
 * req was parked: w is freed and req untouched. (Out of memory after, req is answered 500.) */
static bool start(after *w, rd_req *req, bool now, bool inflight)
{
    w->req = rd_req_park(req, after_on_gone, w);
    if (!w->req) {
        free(w);
        return false;
    }
    if (now) {
        after_run(w, 0);
        return true;
    }
    w->wait = inflight ? rd_engine_after_inflight(w->a->eng, after_on_commit, w)
                       : rd_engine_after_commit(w->a->eng, after_on_commit, w);
    if (w->wait) {
        waiting(w->a, 1);
    } else {
        rd_req *parked = w->req;
        rd_reply_error(parked, 500, "internal", "out of memory");
        evhtp_request_unset_hook(parked->r, evhtp_hook_on_request_fini);
        after_on_gone(w);
        rd_req_unpark(parked);
    }
    return true;
}

bool rd_api_after_commit(rd_api *a, rd_req *req, rd_api_then_fn then, void (*drop)(void *arg),
                         void *arg)
{
    after *w = calloc(1, sizeof *w);
    if (w) {
        *w = (after){.a = a, .then = then, .drop = drop, .arg = arg};
        if (start(w, req, false, false))
            return true;
    }
    rd_reply_error(req, 500, "internal", "out of memory");
    if (drop)
        drop(arg);
    return false;
}

void rd_api_run_idle(rd_api *a, rd_req *req, rd_http_handler_fn handler)
{
    bool now = !rd_engine_committing(a->eng); /* nothing to wait for (always so with SQLite) */
    if (now && !req->parked) {
        handler(req, a); /* evhtp's own request: nothing to park or end */
        return;
    }
    /* Wait for the commit in flight; or, for a request parked already (a held post, a ?wait=
     * answer), run now and end it after. */
    after *w = calloc(1, sizeof *w);
    if (w) {
        *w = (after){.a = a, .handler = handler};
        if (start(w, req, now, true))
            return;
    }
    rd_reply_error(req, 500, "internal", "out of memory");
}

/* --- the reply of a change ---------------------------------------------------------------- */

typedef struct durable {
    int status;
    json_t *out;
} durable;

static void durable_drop(void *arg)
{
    durable *d = arg;
    json_decref(d->out);
    free(d);
}

static void durable_then(rd_req *req, void *arg, int rc)
{
    durable *d = arg;
    if (rc == 0) {
        rd_reply_json(req, d->status, d->out);
        d->out = NULL;
    } else {
        rd_apierr e;
        rd_fail_store(&e);
        rd_reply_apierr(req, &e);
    }
    durable_drop(d);
}

bool rd_api_reply_durable(rd_api *a, rd_req *req, int rc, int status, json_t *out,
                          const rd_apierr *e)
{
    if (rc != 0) {
        rd_reply_apierr(req, e);
        return false;
    }
    durable *d = malloc(sizeof *d);
    if (!d) {
        json_decref(out);
        rd_reply_error(req, 500, "internal", "out of memory");
        return false;
    }
    d->status = status;
    d->out = out;
    return rd_api_after_commit(a, req, durable_then, durable_drop, d);
}
