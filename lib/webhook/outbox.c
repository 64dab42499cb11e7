/*
 * outbox.c: the webhook outbox (see outbox.h): records deliveries in the engine's
 * transaction, decides when each is due, and writes down how every attempt ended.
 *
 * The store is the queue. A pending row waits in the deliveries_due index until its next_at;
 * the pump takes as many due rows as there are free slots (the in-flight cap), leases them
 * (state "sending") and hands them to outbox_http.c. When an attempt ends, its outcome, the
 * row's new state and, for a retry, its next_at are written in one transaction; a timer
 * wakes the pump for the earliest next_at. Memory therefore holds only the attempts in
 * flight, however many deliveries wait for a receiver that is down. After a crash, leased
 * rows go back to pending (rd_outbox_recover), so an attempt cut short is made again: the
 * receiver sees the same webhook-id, and delivery stays at-least-once.
 *
 * The outbox's writes join the store's shared, implicit transaction; a commit event at the
 * end of the loop iteration makes them durable (the engine's own commits do too).
 */
#include "webhook/outbox.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "webhook/outbox_int.h"
#include "webhook/outbox_policy.h"
#include "base/metrics.h"
#include "base/util.h"
#include "webhook/webhook_sign.h"

#define STOPPED_WHY "stopped: the endpoint answered 410 Gone for this run"

struct rd_outbox {
    struct event_base *base;
    rd_store *store;
    const rd_config *cfg;
    rd_outbox_http *http;
    struct event *pump_ev;   /* deferred: start what is due */
    struct event *due_ev;    /* the earliest next_at among pending rows */
    struct event *commit_ev; /* commits the outbox's writes at the end of the iteration */
    rd_map *inflight;        /* webhook-id -> rd_outbox_delivery */
    int n_inflight;
    bool enqueued; /* deliveries recorded since the last kick */
    bool closing;
    bool curl_ready; /* curl_global_init succeeded */
    rd_metric *m_attempts, *m_outcomes, *m_attempt_seconds, *m_in_flight; /* NULL: none */
    rd_metric *m_backlog;
    /* The backlog gauge is a count in the store, cached in m_backlog (backlog_collect). */
    int64_t backlog_at;         /* rd_mono_ms of the last count; 0: never counted */
    int64_t backlog_cost;       /* how long that count took, ms */
    bool backlog_stale;         /* a delivery was recorded or ended since then */
    rd_outbox_render_fn render; /* fills link placeholders of a stored body at send time */
    void *render_arg;
    void (*commit)(void *arg); /* the committer (rd_outbox_set_committer), or NULL */
    bool (*busy)(void *arg);
    void *commit_arg;
    STAILQ_HEAD(, ended) ended; /* attempts that ended while a commit was in flight */
};

/* An attempt that ended while a commit was in flight, recorded after it (see busy). */
typedef struct ended {
    STAILQ_ENTRY(ended) link;
    rd_outbox_delivery *d;
    rd_outbox_result res;
    char error[256]; /* res.error's copy */
} ended;

void rd_outbox_set_committer(rd_outbox *ob, void (*commit)(void *arg), bool (*busy)(void *arg),
                             void *arg)
{
    ob->commit = commit;
    ob->busy = busy;
    ob->commit_arg = arg;
}

/* A commit is in flight: the store's calls that need an answer would wait for it. */
static bool committing(const rd_outbox *ob)
{
    return ob->busy && ob->busy(ob->commit_arg);
}

/* committing(), and then the outbox waits for the next kick (which its completion gives). */
static bool busy(rd_outbox *ob)
{
    if (!committing(ob))
        return false;
    ob->enqueued = true;
    return true;
}

void rd_outbox_set_renderer(rd_outbox *ob, rd_outbox_render_fn fn, void *arg)
{
    ob->render = fn;
    ob->render_arg = arg;
}

static void outbox_on_done(rd_outbox_delivery *d, const rd_outbox_result *res, void *arg);
static void settle_ended(rd_outbox *ob);
static void note_attempt(rd_outbox *ob, int state, const rd_outbox_result *res);

static void pump_soon(rd_outbox *ob)
{
    if (!ob->closing)
        event_active(ob->pump_ev, EV_TIMEOUT, 0);
}

/* Group commit: the outbox's writes (leases, outcomes) are made durable at most
 * COMMIT_DELAY_MS after they are written, in one transaction per window rather than one per
 * loop iteration. Each commit rewrites the WAL pages it touched, and under load most of
 * them are the same few index pages; batching them is several times cheaper. A crash loses
 * at most that window of outcomes, whose deliveries are then simply attempted again. */
#define COMMIT_DELAY_MS 10

static void commit_soon(rd_outbox *ob)
{
    struct timeval tv = {0, COMMIT_DELAY_MS * 1000};

    if (!evtimer_pending(ob->commit_ev, NULL))
        evtimer_add(ob->commit_ev, &tv);
}

static void outbox_on_commit(evutil_socket_t fd, short what, void *arg)
{
    rd_outbox *ob = arg;

    ob->backlog_stale = true;
    if (ob->commit) {
        ob->commit(ob->commit_arg); /* off the loop; a failure is held by the store journal */
        return;
    }
    if (rd_store_commit(ob->store) != 0) {
        rd_store_rollback(ob->store);
        rd_log_err("webhooks: store commit failed: the last delivery outcomes were not saved "
                   "(those deliveries will be attempted again)");
    }
}

/* ---- recording deliveries (inside the engine's transaction) ----------------------------- */

/* The run's own endpoint: its `events`, or the terminal types when it names none. */
static bool run_subscribes(const rd_run *run, const char *type)
{
    json_t *wh = run->webhook, *ev, *v;
    size_t i;

    if (!json_is_object(wh) || !json_is_string(json_object_get(wh, "url")))
        return false;
    ev = json_object_get(wh, "events");
    if (!json_is_array(ev))
        return rd_outbox_policy_type_default(type);
    json_array_foreach(ev, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), type) == 0)
            return true;
    }
    return false;
}

bool rd_outbox_wants(rd_outbox *ob, const rd_run *run, const char *type)
{
    if (!ob || !rd_outbox_policy_type_known(type))
        return false;
    return run_subscribes(run, type) ||
           (ob->cfg->n_hook_urls > 0 && rd_outbox_policy_type_default(type));
}

static int record(rd_outbox *ob, const rd_run *run, const char *type, const char *url, int source,
                  const char *secret, const char *body, int64_t now)
{
    char id[RD_DLV_ID_MAX];
    rd_delivery d;

    if (rd_random_id("msg_", id, sizeof id) != 0)
        return RD_EIO;
    /* Recorded pending, with no read of the store (this is inside a run's transition, which
     * must not wait for a commit in flight): whether its endpoint answered 410 for this run is
     * asked when it is due (stopped_now). */
    d = (rd_delivery){.id = id,
                      .run_id = run->id,
                      .type = type,
                      .url = url,
                      .source = source,
                      .secret = secret,
                      .body = body,
                      .state = RD_DLV_PENDING,
                      .created_at = now,
                      .updated_at = now,
                      .next_at = now};
    return rd_store_dlv_insert(ob->store, &d) == 0 ? 0 : RD_EIO;
}

int rd_outbox_enqueue(rd_outbox *ob, const rd_run *run, const char *type, json_t *run_wire)
{
    bool own;
    int n_global, rc = 0;
    int64_t now = rd_now_ms();
    char ts[40], *body;
    json_t *msg;

    if (!ob || !rd_outbox_policy_type_known(type))
        return 0;
    own = run_subscribes(run, type);
    n_global = rd_outbox_policy_type_default(type) ? ob->cfg->n_hook_urls : 0;
    if (!own && n_global == 0)
        return 0;
    /* The body is fixed now, so every attempt sends (and signs) the same bytes. */
    rd_rfc3339(now, ts, sizeof ts);
    msg = json_pack("{s:s, s:s, s:O}", "type", type, "timestamp", ts, "data", run_wire);
    body = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!body)
        return RD_EIO;
    if (own)
        rc = record(ob, run, type, json_string_value(json_object_get(run->webhook, "url")),
                    RD_DLV_SRC_RUN, json_string_value(json_object_get(run->webhook, "secret")),
                    body, now);
    for (int i = 0; i < n_global && rc == 0; i++)
        rc = record(ob, run, type, ob->cfg->hook_urls[i], RD_DLV_SRC_CONFIG, NULL, body, now);
    free(body);
    if (rc == 0)
        ob->enqueued = true;
    return rc;
}

void rd_outbox_kick(rd_outbox *ob)
{
    /* Called after every engine commit; most commits record no webhook. */
    if (!ob || !ob->enqueued)
        return;
    ob->enqueued = false;
    ob->backlog_stale = true;
    pump_soon(ob);
}

/* ---- starting attempts ------------------------------------------------------------------ */

static rd_outbox_delivery *delivery_from_row(rd_outbox *ob, const rd_delivery *row)
{
    rd_outbox_delivery *d = calloc(1, sizeof *d);

    if (!d)
        return NULL;
    snprintf(d->id, sizeof d->id, "%s", row->id);
    snprintf(d->run_id, sizeof d->run_id, "%s", row->run_id);
    d->url = strdup(row->url);
    /* Stored bodies keep approval/auth links as placeholders (the database holds no live
     * link); they are rendered here, identically on every attempt. */
    d->body = ob->render ? ob->render(ob->render_arg, row->run_id, row->body) : NULL;
    if (!d->body)
        d->body = strdup(row->body);
    d->body_len = d->body ? strlen(d->body) : 0;
    d->source = row->source;
    d->attempts = row->attempts;
    d->manual = row->manual;
    /* Config endpoints are the operator's; only URLs from API clients are guarded. */
    d->guard = row->source == RD_DLV_SRC_RUN && !ob->cfg->hook_allow_private;
    if (!d->url || !d->body) {
        rd_outbox_delivery_close(d);
        return NULL;
    }
    return d;
}

/* Ends an attempt that never reached the network. */
static void end_early(rd_outbox *ob, rd_outbox_delivery *d, const char *error, bool fatal)
{
    rd_outbox_result res = {.code = CURLE_FAILED_INIT, .error = error, .fatal = fatal};

    if (!d->started_at)
        d->started_at = rd_now_ms();
    outbox_on_done(d, &res, ob);
}

/* The signature covers this attempt's timestamp, so it is computed per attempt. */
static int sign(rd_outbox *ob, const rd_outbox_delivery *d, const char *secret, int64_t ts,
                char *out, size_t outlen)
{
    const char *one[1] = {secret};
    const char *const *secrets =
        d->source == RD_DLV_SRC_RUN ? one : (const char *const *)ob->cfg->hook_secrets;
    int n = d->source == RD_DLV_SRC_RUN ? (secret ? 1 : 0) : ob->cfg->n_hook_secrets;

    out[0] = '\0';
    if (n == 0)
        return 0; /* a config endpoint without [webhooks] secret: sent unsigned (warned) */
    return rd_whsig_header(secrets, n, d->id, ts, d->body, d->body_len, out, outlen) < 0 ? -1 : 0;
}

/* A due delivery whose endpoint answered 410 for its run (after it was recorded: the 410
 * stopped those pending then) is stopped, never attempted: the deliveries API shows why
 * nothing was sent. True when d was stopped (and closed) or the
 * store could not tell (it stays pending for a later pump). */
static bool stopped_now(rd_outbox *ob, rd_outbox_delivery *d)
{
    bool stopped = false;
    int rc = rd_store_dlv_stopped(ob->store, d->run_id, d->url, &stopped);

    if (rc == 0 && stopped) {
        rd_delivery row = {.id = d->id,
                           .state = RD_DLV_STOPPED,
                           .attempts = d->attempts,
                           .manual = d->manual,
                           .updated_at = rd_now_ms(),
                           .last_error = STOPPED_WHY};
        rc = rd_store_dlv_update(ob->store, &row);
        ob->backlog_stale = true;
        commit_soon(ob);
    }
    if (rc == 0 && !stopped)
        return false;
    rd_outbox_delivery_close(d);
    return true;
}

static void start(rd_outbox *ob, rd_outbox_delivery *d, const char *secret)
{
    char h_id[64], h_ts[48], sig[RD_MAX_SECRETS * RD_WHSIG_ENTRY], h_sig[sizeof sig + 32];
    const char *hdrs[5] = {"Content-Type: application/json", h_id, h_ts, "Expect:"};
    int64_t ts = rd_now_ms() / 1000;
    int n = 4;

    if (!d->manual && stopped_now(ob, d)) /* a redelivery is asked for by a person: sent */
        return;
    if (rd_map_set(ob->inflight, d->id, d) != 0) {
        rd_outbox_delivery_close(d); /* out of memory: it stays pending for a later pump */
        return;
    }
    if (rd_store_dlv_lease(ob->store, d->id) != 0) {
        rd_map_del(ob->inflight, d->id);
        rd_outbox_delivery_close(d); /* no longer pending: changed since it was read */
        return;
    }
    commit_soon(ob);
    ob->n_inflight++;
    snprintf(h_id, sizeof h_id, "webhook-id: %s", d->id);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", (long long)ts);
    if (sign(ob, d, secret, ts, sig, sizeof sig) != 0) {
        end_early(ob, d, "cannot sign: the endpoint's secret is not whsec_ + base64", true);
        return;
    }
    if (sig[0]) {
        snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
        hdrs[n++] = h_sig;
    }
    if (rd_outbox_http_start(ob->http, d, hdrs, n, ob->cfg->hook_timeout_ms) != 0)
        end_early(ob, d, "could not start the HTTP transfer (out of memory?)", false);
}

typedef struct pick_ctx {
    rd_outbox *ob;
    rd_outbox_delivery **picked;
    char **secrets;
    int n, cap;
} pick_ctx;

static int pick_on_row(const rd_delivery *row, void *arg)
{
    pick_ctx *p = arg;
    rd_outbox_delivery *d;

    /* A lease lost to a rolled-back transaction leaves a row pending that is in flight. */
    if (rd_map_get(p->ob->inflight, row->id))
        return 0;
    if (p->n == p->cap || !(d = delivery_from_row(p->ob, row)))
        return 1;
    p->secrets[p->n] = row->secret ? strdup(row->secret) : NULL;
    p->picked[p->n++] = d;
    return 0;
}

/* Arms the timer for the earliest pending next_at, when a slot is free to use it. */
static void arm_due(rd_outbox *ob)
{
    int64_t next = 0, delay;
    struct timeval tv;

    evtimer_del(ob->due_ev);
    if (ob->closing || busy(ob) || ob->n_inflight >= ob->cfg->hook_max_conns ||
        rd_store_dlv_next_due(ob->store, &next) != 0 || next == 0)
        return;
    delay = next - rd_now_ms();
    /* Due but not startable now (rare): look again shortly rather than spin. Far away:
     * look again within a minute anyway, in case the wall clock jumped. */
    delay = delay < 10 ? 10 : delay > 60000 ? 60000 : delay;
    tv.tv_sec = delay / 1000;
    tv.tv_usec = (delay % 1000) * 1000;
    evtimer_add(ob->due_ev, &tv);
}

/* Starts at most this many attempts per loop iteration, so a large backlog is started in
 * slices and the loop keeps serving the API in between. */
#define PUMP_BATCH 128

static void pump(rd_outbox *ob)
{
    pick_ctx p = {.ob = ob};

    if (ob->closing || busy(ob))
        return;
    settle_ended(ob); /* frees the slots of attempts that ended during a commit */
    int slots = ob->cfg->hook_max_conns - ob->n_inflight;
    slots = slots > PUMP_BATCH ? PUMP_BATCH : slots;
    p.cap = slots;
    if (slots > 0) {
        /* Collected first and started after the scan: the scan's statement must be done
         * before start() writes to the same table. */
        p.picked = calloc((size_t)slots, sizeof *p.picked);
        p.secrets = calloc((size_t)slots, sizeof *p.secrets);
        if (p.picked && p.secrets)
            rd_store_dlv_due(ob->store, rd_now_ms(), slots, pick_on_row, &p);
        for (int i = 0; i < p.n; i++) {
            start(ob, p.picked[i], p.secrets[i]);
            if (p.secrets[i])
                explicit_bzero(p.secrets[i], strlen(p.secrets[i]));
            free(p.secrets[i]);
        }
        free(p.picked);
        free(p.secrets);
        if (p.n == PUMP_BATCH) {
            /* More may be due. A zero timer (not event_active, which would run again in
             * this same iteration) lets the loop poll its sockets first. */
            struct timeval zero = {0, 0};
            evtimer_add(ob->due_ev, &zero);
            return;
        }
    }
    arm_due(ob);
}

static void outbox_on_pump(evutil_socket_t fd, short what, void *arg)
{
    pump(arg);
}

/* ---- how attempts end ------------------------------------------------------------------- */

typedef struct verdict {
    int state;
    int64_t next_at;
    bool gave_up;
    char error[400]; /* the attempt's error; "" when delivered */
} verdict;

static void judge(rd_outbox *ob, const rd_outbox_delivery *d, const rd_outbox_result *res,
                  int attempts, verdict *v)
{
    long st = res->http_status;
    uint32_t rnd = 0;
    int64_t delay;

    *v = (verdict){.state = RD_DLV_PENDING};
    if (st == 0 && d->refused[0]) {
        /* Policy, not a network failure: retrying cannot help. */
        snprintf(v->error, sizeof v->error,
                 "ssrf: refused to connect: %s ([webhooks] allow_private = yes allows it)",
                 d->refused);
        v->state = RD_DLV_FAILED;
        return;
    }
    if (st == 0) {
        snprintf(v->error, sizeof v->error, "%s", res->error ? res->error : "no answer");
        if (res->fatal) {
            v->state = RD_DLV_FAILED;
            return;
        }
    } else if (rd_outbox_policy_classify(st) == RD_HOOK_DELIVERED) {
        v->state = RD_DLV_DELIVERED;
        return;
    } else if (rd_outbox_policy_classify(st) == RD_HOOK_STOP) {
        snprintf(v->error, sizeof v->error,
                 "HTTP 410 Gone: no more deliveries to this endpoint for this run");
        v->state = RD_DLV_STOPPED;
        return;
    } else {
        snprintf(v->error, sizeof v->error, "HTTP %ld%s", st,
                 st >= 300 && st <= 399 ? " (redirects are not followed)" : "");
    }
    rd_random_bytes(&rnd, sizeof rnd);
    delay = rd_outbox_policy_retry_delay(
        ob->cfg->retry_schedule_ms, ob->cfg->n_retry, attempts,
        rd_outbox_policy_honours_retry_after(st) ? res->retry_after_ms : 0, rnd);
    if (delay < 0) {
        v->state = RD_DLV_FAILED;
        v->gave_up = true;
    } else {
        v->next_at = rd_now_ms() + delay;
    }
}

/* One line per attempt: never the URL (a client's may carry a token) nor the body. */
static void log_outcome(const rd_outbox_delivery *d, const rd_outbox_result *res, const verdict *v,
                        int attempts)
{
    static const char *const outcome[] = {[RD_DLV_PENDING] = "retry",
                                          [RD_DLV_DELIVERED] = "delivered",
                                          [RD_DLV_FAILED] = "failed",
                                          [RD_DLV_STOPPED] = "stopped"};
    rd_logk(v->state == RD_DLV_DELIVERED || v->state == RD_DLV_PENDING ? RD_LOG_INFO : RD_LOG_WARN,
            "webhook attempt", RD_LS("delivery", d->id), RD_LS("run", d->run_id),
            RD_LI("attempt", attempts), RD_LS("outcome", outcome[v->state]),
            RD_LI("http_status", res->http_status), RD_LI("duration_ms", res->duration_ms),
            RD_LS("error", v->error[0] ? v->error : NULL),
            v->state == RD_DLV_PENDING ? RD_LI("next_in_ms", v->next_at - rd_now_ms()) : RD_LNONE);
}

/* Writes the attempt and the row's new state; both go into the same transaction. */
static void settle(rd_outbox *ob, const rd_outbox_delivery *d, const rd_outbox_result *res)
{
    int n = d->attempts + 1, rc;
    int64_t now = rd_now_ms();
    char last[sizeof((verdict *)0)->error + 48];
    verdict v;

    judge(ob, d, res, n, &v);
    if (v.gave_up)
        snprintf(last, sizeof last, "gave up after %d attempts: %s", n, v.error);
    else
        snprintf(last, sizeof last, "%s", v.error);
    rd_delivery_attempt a = {.delivery_id = d->id,
                             .n = n,
                             .manual = d->manual,
                             .at = d->started_at,
                             .duration_ms = res->duration_ms,
                             .status_code = (int)res->http_status,
                             .error = v.error[0] ? v.error : NULL,
                             .next_at = v.next_at};
    rd_delivery row = {.id = d->id,
                       .state = v.state,
                       .attempts = n,
                       .updated_at = now,
                       .next_at = v.next_at,
                       .last_code = (int)res->http_status,
                       .last_error = last[0] ? last : NULL};
    rc = rd_store_dlv_attempt_add(ob->store, &a);
    if (rc == 0)
        rc = rd_store_dlv_update(ob->store, &row);
    if (rc == 0 && v.state == RD_DLV_STOPPED)
        rc = rd_store_dlv_stop(ob->store, d->run_id, d->url, now, STOPPED_WHY);
    if (rc != 0)
        rd_log_err("webhook %s: could not record attempt %d", d->id, n);
    log_outcome(d, res, &v, n);
    note_attempt(ob, v.state, res);
    commit_soon(ob);
}

/* The backlog is counted in the store (rd_store_dlv_backlog) only when a scrape asks for it
 * and a delivery was recorded or ended since the last count, and then at most once a second,
 * or once per 20 times the last count's duration when that is longer: a dashboard reads the
 * metrics every few seconds per tab, and a backlog of a million rows takes tens of ms to
 * count, which must not take more than a twentieth of the loop. An idle daemon never counts.
 * When the count fails, the gauge keeps the last value. */
static void backlog_collect(rd_outbox *ob)
{
    int64_t now = rd_mono_ms(), n, wait = ob->backlog_cost * 20;

    if (wait < 1000)
        wait = 1000;
    if (ob->backlog_at && (!ob->backlog_stale || now - ob->backlog_at < wait))
        return;
    if (committing(ob))
        return; /* the gauge keeps its value until a scrape finds no commit in flight */
    if (rd_store_dlv_backlog(ob->store, &n) != 0)
        return;
    ob->backlog_stale = false;
    ob->backlog_at = now;
    ob->backlog_cost = rd_mono_ms() - now;
    rd_metric_set(ob->m_backlog, NULL, (double)n);
}

static void outbox_on_collect(void *arg)
{
    rd_outbox *ob = arg;
    rd_metric_set(ob->m_in_flight, NULL, ob->n_inflight);
    backlog_collect(ob);
}

static const char *const outcome_names[] = {"delivered", "retry", "failed", "stopped"};

static const char *outcome_name(int state)
{
    return state == RD_DLV_DELIVERED ? "delivered"
           : state == RD_DLV_PENDING ? "retry"
           : state == RD_DLV_STOPPED ? "stopped"
                                     : "failed";
}

/* One attempt ended in state: counted by outcome, its HTTP time observed. */
static void note_attempt(rd_outbox *ob, int state, const rd_outbox_result *res)
{
    const char *outcome = outcome_name(state);
    rd_metric_inc(ob->m_attempts, NULL);
    rd_metric_inc(ob->m_outcomes, RD_LV(outcome));
    rd_metric_observe(ob->m_attempt_seconds, RD_LV(outcome), (double)res->duration_ms / 1e3);
}

int rd_outbox_set_metrics(rd_outbox *ob, rd_metrics *reg)
{
    ob->m_attempts = rd_metrics_counter(reg, "runsd_webhook_attempts_total",
                                        "Webhook delivery attempts made.", NULL);
    ob->m_outcomes = rd_metrics_counter(
        reg, "runsd_webhook_outcomes_total",
        "Webhook delivery attempts by outcome: delivered (2xx), retry (will be tried again), "
        "failed (gave up), stopped (410 Gone).",
        RD_LV("outcome"));
    ob->m_attempt_seconds = rd_metrics_histogram(
        reg, "runsd_webhook_attempt_duration_seconds",
        "Time from sending a webhook to its answer (or the transport error), by outcome.",
        RD_LV("outcome"), rd_metrics_latency_buckets, rd_metrics_latency_nbuckets);
    ob->m_in_flight =
        rd_metrics_gauge(reg, "runsd_webhook_in_flight", "Webhook attempts in flight.", NULL);
    ob->m_backlog = rd_metrics_gauge(
        reg, "runsd_webhook_backlog",
        "Webhook deliveries not yet delivered and not given up: due, waiting for a retry, or "
        "in flight.",
        NULL);
    rd_metric_set(ob->m_backlog, NULL, 0);
    for (size_t i = 0; i < sizeof outcome_names / sizeof outcome_names[0]; i++)
        rd_metric_add(ob->m_outcomes, RD_LV(outcome_names[i]), 0);
    return rd_metrics_collector(reg, outbox_on_collect, ob, NULL) == 0 ? 0 : RD_ERR;
}

/* The attempt's outcome is written (settle) and its slot freed. */
static void finish(rd_outbox *ob, rd_outbox_delivery *d, const rd_outbox_result *res)
{
    settle(ob, d, res);
    rd_map_del(ob->inflight, d->id);
    ob->n_inflight--;
    rd_outbox_delivery_close(d);
}

static void outbox_on_done(rd_outbox_delivery *d, const rd_outbox_result *res, void *arg)
{
    rd_outbox *ob = arg;
    ended *e;

    if (busy(ob) && (e = calloc(1, sizeof *e))) {
        /* Recorded by the pump after the commit in flight: it stays in flight till then. */
        e->d = d;
        e->res = *res;
        if (res->error) {
            snprintf(e->error, sizeof e->error, "%s", res->error);
            e->res.error = e->error;
        }
        STAILQ_INSERT_TAIL(&ob->ended, e, link);
        return;
    }
    finish(ob, d, res);
    pump_soon(ob); /* a slot is free */
}

static void settle_ended(rd_outbox *ob)
{
    ended *e;

    while ((e = STAILQ_FIRST(&ob->ended))) {
        STAILQ_REMOVE_HEAD(&ob->ended, link);
        finish(ob, e->d, &e->res);
        free(e);
    }
}

/* ---- the deliveries API ----------------------------------------------------------------- */

rd_store *rd_outbox_store(rd_outbox *ob)
{
    return ob->store;
}

bool rd_outbox_in_flight(rd_outbox *ob, const char *id)
{
    return rd_map_get(ob->inflight, id) != NULL;
}

typedef struct redo_ctx {
    int attempts, last_code;
    char *last_error;
} redo_ctx;

static int redo_on_row(const rd_delivery *row, void *arg)
{
    redo_ctx *r = arg;

    r->attempts = row->attempts;
    r->last_code = row->last_code;
    r->last_error = row->last_error ? strdup(row->last_error) : NULL;
    return 0;
}

int rd_outbox_redeliver(rd_outbox *ob, const char *id)
{
    redo_ctx r = {0};
    int64_t now = rd_now_ms();
    int rc;

    if (rd_map_get(ob->inflight, id))
        return RD_ECONFLICT;
    if ((rc = rd_store_dlv_get(ob->store, id, redo_on_row, &r)) != 0)
        return rc;
    /* Pending now, whatever it was: the attempt counts on top of the earlier ones, so a
     * delivery whose schedule is spent gets this one attempt and no more retries. */
    rd_delivery row = {.id = id,
                       .state = RD_DLV_PENDING,
                       .attempts = r.attempts,
                       .manual = true,
                       .updated_at = now,
                       .next_at = now,
                       .last_code = r.last_code,
                       .last_error = r.last_error};
    rc = rd_store_dlv_update(ob->store, &row);
    free(r.last_error);
    ob->backlog_stale = true;
    if (ob->commit) {
        ob->enqueued = true; /* started by the kick after the commit */
        ob->commit(ob->commit_arg);
        return rc == 0 ? 0 : RD_EIO;
    }
    if (rc != 0 || rd_store_commit(ob->store) != 0) {
        rd_store_rollback(ob->store);
        return RD_EIO;
    }
    pump_soon(ob);
    return 0;
}

/* ---- validation of a create request's webhook ------------------------------------------- */

static bool url_ok(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);

    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

static int __attribute__((format(printf, 3, 4)))
refuse(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return RD_EINVAL;
}

int rd_outbox_check_webhook(const json_t *wh, char *err, size_t errlen)
{
    const char *url = json_string_value(json_object_get(wh, "url"));
    json_t *ev = json_object_get(wh, "events"), *sec = json_object_get(wh, "secret"), *v;
    size_t i;

    if (!url || !url_ok(url))
        return refuse(err, errlen, "'webhook.url' must be an absolute http(s) URL with a host");
    json_array_foreach(ev, i, v)
    {
        if (!json_is_string(v) || !rd_outbox_policy_type_known(json_string_value(v)))
            return refuse(err, errlen,
                          "'webhook.events[%zu]' is not a webhook event type (run.succeeded, "
                          "run.incomplete, run.failed, run.crashed, run.cancelled, run.paused, "
                          "run.auth_required, run.item)",
                          i);
    }
    if (sec && !rd_whsig_secret_valid(json_string_value(sec)))
        return refuse(err, errlen,
                      "'webhook.secret' must be whsec_ followed by the base64 of %d to %d "
                      "random bytes",
                      RD_WHSIG_KEY_MIN, RD_WHSIG_KEY_MAX);
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

static void warn_config(const rd_config *cfg)
{
    if (cfg->n_hook_urls > 0 && cfg->n_hook_secrets == 0)
        rd_log_warn("webhooks: [webhooks] url without secret: those deliveries are unsigned");
}

rd_outbox *rd_outbox_new(struct event_base *base, rd_store *store, const rd_config *cfg)
{
    rd_outbox *ob = calloc(1, sizeof *ob);

    if (!ob)
        return NULL;
    ob->base = base;
    STAILQ_INIT(&ob->ended);
    ob->store = store;
    ob->cfg = cfg;
    ob->curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    if (ob->curl_ready && !(curl_version_info(CURLVERSION_NOW)->features & CURL_VERSION_ASYNCHDNS))
        rd_log_warn("webhooks: libcurl has no asynchronous resolver: DNS lookups block the loop");
    ob->inflight = rd_map_new();
    ob->pump_ev = event_new(base, -1, 0, outbox_on_pump, ob);
    ob->due_ev = evtimer_new(base, outbox_on_pump, ob);
    ob->commit_ev = evtimer_new(base, outbox_on_commit, ob);
    ob->http =
        ob->curl_ready ? rd_outbox_http_new(base, cfg->hook_max_conns, outbox_on_done, ob) : NULL;
    if (!ob->inflight || !ob->pump_ev || !ob->due_ev || !ob->commit_ev || !ob->http) {
        rd_outbox_free(ob);
        return NULL;
    }
    warn_config(cfg);
    return ob;
}

void rd_outbox_set_config(rd_outbox *ob, const rd_config *cfg)
{
    if (!ob)
        return;
    ob->cfg = cfg;
    rd_outbox_http_set_max_conns(ob->http, cfg->hook_max_conns);
    warn_config(cfg);
    pump_soon(ob); /* the cap may have grown */
}

int rd_outbox_recover(rd_outbox *ob)
{
    if (!ob)
        return 0;
    /* Attempts cut short by a crash are made again. */
    if (rd_store_dlv_unlease(ob->store) != 0 || rd_store_commit(ob->store) != 0)
        return RD_EIO;
    ob->backlog_stale = true;
    pump_soon(ob);
    return 0;
}

static void collect_inflight(const char *key, void *value, void *arg)
{
    rd_outbox_delivery ***p = arg;

    *(*p)++ = value;
}

void rd_outbox_free(rd_outbox *ob)
{
    if (!ob)
        return;
    ob->closing = true;
    bool dirty = ob->commit_ev && evtimer_pending(ob->commit_ev, NULL);
    ended *e;
    while ((e = STAILQ_FIRST(&ob->ended))) { /* their deliveries are closed with the others */
        STAILQ_REMOVE_HEAD(&ob->ended, link);
        free(e);
    }
    if (ob->inflight) {
        size_t n = rd_map_count(ob->inflight);
        rd_outbox_delivery **all = calloc(n + 1, sizeof *all), **p = all;
        if (all)
            rd_map_each(ob->inflight, collect_inflight, &p);
        for (size_t i = 0; all && i < n; i++) {
            rd_map_del(ob->inflight, all[i]->id);
            rd_outbox_delivery_close(all[i]);
        }
        free(all);
        /* The attempts cut short stay pending: the next start makes them again. */
        if (n > 0 && rd_store_dlv_unlease(ob->store) != 0)
            rd_log_err("webhooks: could not return in-flight deliveries to pending");
        dirty |= n > 0;
        rd_map_free(ob->inflight);
    }
    /* Outcomes still inside the group-commit window, and the unleases. */
    if (dirty && rd_store_commit(ob->store) != 0)
        rd_log_err("webhooks: the last delivery outcomes were not saved");
    rd_outbox_http_free(ob->http);
    if (ob->pump_ev)
        event_free(ob->pump_ev);
    if (ob->due_ev)
        event_free(ob->due_ev);
    if (ob->commit_ev)
        event_free(ob->commit_ev);
    if (ob->curl_ready)
        curl_global_cleanup();
    free(ob);
}
