/*
 * engine.c: the lifecycle's single writer and the commit pipeline.
 *
 * Every change to a run goes through rd_transition (status) or the exec.c handlers (counts,
 * steps, items), which update the in-memory record, append events to the store's open
 * transaction and mark the record dirty. A commit event at the end of the loop iteration (or
 * rd_engine_flush, for API calls that must answer only once durable) writes the dirty
 * records, commits, and only then hands the new events to listeners (the SSE hub) and wakes
 * watchers. So nothing is published, or acknowledged, that the store could lose.
 */
#include "engine/engine_int.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "webhook/outbox.h"
#include "base/token.h"
#include "base/util.h"

rd_active *rd_active_get(rd_engine *eng, const char *id)
{
    return rd_map_get(eng->active, id);
}

/* Link placeholders ("rdlink:<a|d|s>:<nonce>") in one string become approve/deny URLs or the
 * state token. Only the link fields of a pending action are ever rendered, so a worker's or a
 * client's own text is never rewritten. Returns a malloc'd string or NULL. */
static char *render_string(rd_engine *eng, const char *run_id, const char *text)
{
    const char *p = strstr(text, "rdlink:");
    if (!p || (p[7] != 'a' && p[7] != 'd' && p[7] != 's') || p[8] != ':')
        return NULL;
    char kind = p[7], nonce[32], tok[RD_LINK_TOKEN_MAX], rep[RD_LINK_TOKEN_MAX + 512];
    size_t n = 0;
    const char *np = p + 9;
    while (n < sizeof nonce - 1 && (isalnum((unsigned char)np[n]) || np[n] == '-' || np[n] == '_'))
        n++;
    memcpy(nonce, np, n);
    nonce[n] = 0;
    if (rd_link_token_make(eng->link_key, run_id, kind, nonce, tok, sizeof tok) != 0)
        return NULL;
    if (kind == 's')
        snprintf(rep, sizeof rep, "%s", tok);
    else
        snprintf(rep, sizeof rep, "%s/v1/runs/approval?token=%s", eng->cfg->public_url, tok);
    size_t pre = (size_t)(p - text), rl = strlen(rep), rest = strlen(np + n);
    char *out = malloc(pre + rl + rest + 1);
    if (!out)
        return NULL;
    memcpy(out, text, pre);
    memcpy(out + pre, rep, rl);
    memcpy(out + pre + rl, np + n, rest + 1);
    return out;
}

void rd_render_pending(rd_engine *eng, const char *run_id, json_t *pa)
{
    static const char *fields[] = {"approve_url", "deny_url", "auth_url"};
    if (!json_is_object(pa))
        return;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        /* A provider URL may carry {state} several times: render every placeholder. */
        for (int n = 0; n < 64; n++) {
            const char *v = json_string_value(json_object_get(pa, fields[i]));
            char *r = v ? render_string(eng, run_id, v) : NULL;
            if (!r)
                break;
            json_object_set_new(pa, fields[i], json_string(r));
            free(r);
        }
    }
}

json_t *rd_public_pending(const rd_run *r)
{
    if (!json_is_object(r->pending_action))
        return json_null();
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(r->pending_action, k, v)
    {
        if (k[0] != '_')
            json_object_set(out, k, v);
    }
    return out;
}

char *rd_engine_render_links(rd_engine *eng, const char *run_id, const char *type, const char *data)
{
    bool status = strcmp(type, "run.status") == 0;
    if (!status && strcmp(type, "run.approval_required") != 0 &&
        strcmp(type, "run.auth_required") != 0)
        return NULL;
    if (!strstr(data, "rdlink:"))
        return NULL;
    json_t *d = json_loads(data, 0, NULL);
    if (!d)
        return NULL;
    rd_render_pending(eng, run_id, status ? json_object_get(d, "pending_action") : d);
    char *out = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return out;
}

json_t *rd_engine_run_json(rd_engine *eng, const rd_run *r)
{
    char token[96];
    const char *tok = NULL;
    if (rd_stream_token_make(eng->stream_key, r->id, rd_now_ms() + eng->cfg->stream_token_ttl_ms,
                             token, sizeof token) == 0)
        tok = token;
    json_t *o = rd_run_to_json(r, eng->cfg->public_url, tok);
    rd_render_pending(eng, r->id, json_object_get(o, "pending_action"));
    return o;
}

int rd_engine_event_frame(rd_engine *eng, const rd_event *ev, char **out, size_t *len)
{
    char tbuf[40];
    rd_rfc3339(ev->ts, tbuf, sizeof tbuf);
    char *rendered = rd_engine_render_links(eng, ev->run_id, ev->type, ev->data);
    const char *data = rendered ? rendered : ev->data;
    size_t cap = strlen(data) + strlen(ev->type) + strlen(ev->run_id) + strlen(tbuf) + 96;
    char *buf = malloc(cap);
    if (!buf) {
        free(rendered);
        return -1;
    }
    int n = snprintf(buf, cap,
                     "{\"id\":%lld,\"type\":\"%s\",\"run_id\":\"%s\",\"timestamp\":\"%s\","
                     "\"data\":%s}",
                     (long long)ev->id, ev->type, ev->run_id, tbuf, data);
    free(rendered);
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* The link key signs approval and authorization links. It is kept in a file beside the
 * store (0600), not in it, so a copy of the database cannot mint or recover a link. */
static int load_link_key(rd_engine *eng)
{
    const char *db = eng->cfg->store_path;
    if (!db || strcmp(db, ":memory:") == 0)
        return rd_random_bytes(eng->link_key, sizeof eng->link_key);
    char path[4200], b64[64] = "";
    snprintf(path, sizeof path, "%s.key", db);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(b64, 1, sizeof b64 - 1, f);
        fclose(f);
        b64[n] = 0;
        while (n && (b64[n - 1] == '\n' || b64[n - 1] == '\r'))
            b64[--n] = 0;
        if (rd_b64_decode(b64, n, eng->link_key, sizeof eng->link_key) == (int)sizeof eng->link_key)
            return 0;
        rd_log_err("%s: not a valid key file", path);
        return RD_EINVAL;
    }
    if (rd_random_bytes(eng->link_key, sizeof eng->link_key) != 0)
        return RD_ERR;
    rd_b64_encode(eng->link_key, sizeof eng->link_key, b64);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rd_log_err("cannot create %s: %s", path, strerror(errno));
        return RD_EIO;
    }
    size_t bl = strlen(b64);
    b64[bl] = '\n';
    bool ok = write(fd, b64, bl + 1) == (ssize_t)(bl + 1) && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : RD_EIO;
}

json_t *rd_active_json(rd_active *act)
{
    return rd_engine_run_json(act->eng, act->run);
}

bool rd_engine_stream_token_ok(rd_engine *eng, const char *id, const char *token)
{
    return rd_stream_token_check(eng->stream_key, id, token, rd_now_ms());
}

/* The stream-token key is created at first start and kept in the store, so tokens survive
 * restarts (until they expire). */
static int load_stream_key(rd_engine *eng)
{
    char *val = NULL;
    int rc = rd_store_kv_get(eng->store, "stream_key", &val);
    if (rc == 0 && rd_b64_decode(val, strlen(val), eng->stream_key, sizeof eng->stream_key) ==
                       (int)sizeof eng->stream_key) {
        free(val);
        return 0;
    }
    free(val);
    char b64[64];
    if (rd_random_bytes(eng->stream_key, sizeof eng->stream_key) != 0)
        return RD_ERR;
    rd_b64_encode(eng->stream_key, sizeof eng->stream_key, b64);
    if (rd_store_kv_put(eng->store, "stream_key", b64) != 0 || rd_store_commit(eng->store) != 0)
        return RD_EIO;
    return 0;
}

void rd_mark_dirty(rd_active *act)
{
    if (!act->dirty) {
        act->dirty = true;
        TAILQ_INSERT_TAIL(&act->eng->dirty, act, dlink);
    }
    rd_commit_soon(act->eng);
}

void rd_commit_soon(rd_engine *eng)
{
    if (!event_pending(eng->commit_ev, EV_TIMEOUT, NULL))
        event_active(eng->commit_ev, EV_TIMEOUT, 0);
}

void rd_schedule_soon(rd_engine *eng)
{
    if (!event_pending(eng->sched_ev, EV_TIMEOUT, NULL))
        event_active(eng->sched_ev, EV_TIMEOUT, 0);
}

rd_active *rd_active_adopt(rd_engine *eng, rd_run *run)
{
    rd_active *act = calloc(1, sizeof *act);
    if (!act)
        return NULL;
    act->eng = eng;
    act->run = run;
    LIST_INIT(&act->enrichers);
    LIST_INIT(&act->watches);
    LIST_INIT(&act->ctls);
    const rd_flow_config *flow = rd_config_flow(eng->cfg, run->flow);
    act->external = flow && flow->external;
    if (rd_map_set(eng->active, run->id, act) != 0) {
        free(act);
        return NULL;
    }
    if (run->status == RD_ST_QUEUED)
        eng->n_queued++;
    return act;
}

/* Marks an active record that is terminal (or created) and has no worker for freeing after
 * the next commit, so watchers it wakes read durable state. */
void rd_active_release(rd_active *act)
{
    if (act->worker || act->releasing || act->n_enrichers > 0)
        return; /* exec.c / enrich.c release it once its workers are reaped */
    act->releasing = true;
    rd_dequeue(act);
    TAILQ_INSERT_TAIL(&act->eng->releasing, act, rlink);
    rd_commit_soon(act->eng);
}

void rd_active_keep(rd_active *act)
{
    if (act->releasing) {
        TAILQ_REMOVE(&act->eng->releasing, act, rlink);
        act->releasing = false;
    }
}

static void active_free(rd_active *act)
{
    rd_engine *eng = act->eng;
    rd_watch *w;
    while ((w = LIST_FIRST(&act->watches))) {
        LIST_REMOVE(w, link);
        eng->n_watches--;
        w->fn(w->arg);
        free(w);
    }
    rd_exec_dispose(act);
    if (act->run->status == RD_ST_QUEUED)
        eng->n_queued--;
    rd_map_del(eng->active, act->run->id);
    rd_run_free(act->run);
    free(act);
}

void rd_enqueue(rd_active *act)
{
    if (!act->in_queue && !act->external) {
        TAILQ_INSERT_TAIL(&act->eng->queue, act, qlink);
        act->in_queue = true;
    }
    rd_schedule_soon(act->eng);
}

void rd_dequeue(rd_active *act)
{
    if (act->in_queue) {
        TAILQ_REMOVE(&act->eng->queue, act, qlink);
        act->in_queue = false;
    }
}

static rd_flow_stat *flow_stat(rd_engine *eng, const char *flow)
{
    rd_flow_stat *st = rd_map_get(eng->flow_stats, flow);
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st || rd_map_set(eng->flow_stats, flow, st) != 0) {
            free(st);
            return NULL;
        }
    }
    return st;
}

void rd_slot_release(rd_active *act)
{
    if (!act->counted)
        return;
    act->counted = false;
    act->eng->running--;
    rd_flow_stat *st = flow_stat(act->eng, act->run->flow);
    if (st)
        st->running--;
    rd_schedule_soon(act->eng);
}

static bool listeners_want(rd_engine *eng, const char *run_id);

/* Builds the SSE data payload once, at append time, so every subscriber shares it. */
static void queue_publish(rd_engine *eng, rd_active *act, int64_t id, const char *type, int64_t ts,
                          const char *data, bool terminal)
{
    if (eng->n_listeners == 0)
        return;
    if (!listeners_want(eng, act->run->id)) {
        /* Nobody watches this run: formatting and copying the frame would be wasted (a
         * million items are a million frames); the id alone goes out after the commit. */
        if (id > eng->pub_watermark)
            eng->pub_watermark = id;
        return;
    }
    char *rendered = rd_engine_render_links(eng, act->run->id, type, data);
    if (rendered)
        data = rendered;
    char tbuf[40];
    rd_rfc3339(ts, tbuf, sizeof tbuf);
    size_t dlen = strlen(data);
    /* data is in buf twice: inside the frame and as its own copy. */
    size_t cap = dlen * 2 + strlen(type) * 2 + strlen(act->run->id) * 2 + strlen(act->run->flow) +
                 strlen(tbuf) + 160;
    rd_pending_pub *p = calloc(1, sizeof *p);
    char *buf = malloc(cap);
    if (!p || !buf) {
        free(p);
        free(buf);
        free(rendered);
        return;
    }
    /* Layout in buf: frame \0 run_id \0 flow \0 type \0 data \0 */
    int n = snprintf(buf, cap,
                     "{\"id\":%lld,\"type\":\"%s\",\"run_id\":\"%s\",\"timestamp\":\"%s\","
                     "\"data\":%s}",
                     (long long)id, type, act->run->id, tbuf, data);
    size_t off = (size_t)n + 1;
    p->ev.frame = buf;
    p->ev.frame_len = (size_t)n;
    p->ev.run_id = strcpy(buf + off, act->run->id);
    off += strlen(act->run->id) + 1;
    p->ev.flow = strcpy(buf + off, act->run->flow);
    off += strlen(act->run->flow) + 1;
    p->ev.type = strcpy(buf + off, type);
    off += strlen(type) + 1;
    p->ev.data = memcpy(buf + off, data, dlen + 1);
    p->ev.id = id;
    p->ev.ts = ts;
    p->ev.run_terminal = terminal;
    p->buf = buf;
    STAILQ_INSERT_TAIL(&eng->pending, p, link);
    free(rendered);
}

static int64_t emit_text(rd_active *act, const char *type, const char *data, int64_t item_seq,
                         bool terminal)
{
    rd_engine *eng = act->eng;
    int64_t ts = rd_now_ms(), id = 0;
    if (rd_store_event_append(eng->store, act->run->id, act->run->flow, type, ts, data, item_seq,
                              &id) != 0)
        return 0;
    act->run->last_event_id = id;
    eng->m_events++;
    queue_publish(eng, act, id, type, ts, data, terminal);
    rd_mark_dirty(act);
    return id;
}

int64_t rd_emit(rd_active *act, const char *type, json_t *data, int64_t item_seq)
{
    char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return 0;
    int64_t id = emit_text(act, type, text, item_seq, false);
    free(text);
    return id;
}

/* Webhook bodies are stored with link placeholders and rendered when sent. */
static char *engine_render_body(void *arg, const char *run_id, const char *body)
{
    rd_engine *eng = arg;
    if (!strstr(body, "rdlink:"))
        return NULL;
    json_t *msg = json_loads(body, 0, NULL);
    if (!msg)
        return NULL;
    rd_render_pending(eng, run_id, json_object_get(json_object_get(msg, "data"), "pending_action"));
    char *out = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    return out;
}

void rd_engine_set_outbox(rd_engine *eng, struct rd_outbox *ob)
{
    eng->outbox = ob;
    if (ob)
        rd_outbox_set_renderer(ob, engine_render_body, eng);
}

void rd_notify_webhook(rd_active *act, const char *type, json_t *run_wire)
{
    rd_engine *eng = act->eng;
    if (!eng->outbox || act->run->preview)
        return; /* previews send no webhooks (FindAll preview) */
    /* With a pending action the stored body must keep its placeholders: build an
     * unrendered wire form (engine_render_body renders it at send time). */
    json_t *wire = NULL;
    if (act->run->pending_action) {
        wire = rd_run_to_json(act->run, eng->cfg->public_url, NULL);
        if (run_wire && json_object_get(run_wire, "item"))
            json_object_set(wire, "item", json_object_get(run_wire, "item"));
    } else {
        wire = run_wire ? json_incref(run_wire) : rd_active_json(act);
    }
    if (rd_outbox_enqueue(eng->outbox, act->run, type, wire) != 0)
        rd_log_err("run %s: could not record the %s webhook", act->run->id, type);
    json_decref(wire);
}

static bool settled(rd_status s)
{
    return rd_status_terminal(s) || s == RD_ST_PAUSED || s == RD_ST_AUTH_REQUIRED;
}

int rd_transition(rd_active *act, rd_status to, rd_reason reason, const char *error_message)
{
    rd_run *r = act->run;
    rd_status from = r->status;
    if (!rd_fsm_allowed(from, to)) {
        rd_log_warn("run %s: refused transition %s -> %s", r->id, rd_status_name(from),
                    rd_status_name(to));
        return RD_ECONFLICT;
    }
    int64_t now = rd_now_ms();
    r->status = to;
    r->updated_at = now;
    if (from == RD_ST_QUEUED)
        act->eng->n_queued--;
    if (to == RD_ST_QUEUED) {
        act->eng->n_queued++;
        r->reason = RD_RS_NONE;
        r->finished_at = 0;
    }
    if (to == RD_ST_RUNNING && r->started_at == 0)
        r->started_at = now;
    if (to == RD_ST_RUNNING || rd_status_terminal(to)) {
        json_decref(r->pending_action);
        r->pending_action = NULL;
    }
    if (rd_status_terminal(to)) {
        r->reason = rd_reason_status(reason) == to ? reason : RD_RS_NONE;
        r->finished_at = now;
        act->eng->m_runs_finished[to]++;
        if (error_message) {
            json_decref(r->error);
            r->error = json_pack("{s:s}", "message", error_message);
        }
    }
    /* The wire form of the pending action hides its private members; it only exists in
     * waiting states, and run.end needs the whole run, so the wire form is built only then. */
    json_t *wire = (r->pending_action || rd_status_terminal(to)) ? rd_active_json(act) : NULL;
    /* The stored event keeps link placeholders; they are rendered when it is shown. */
    json_t *data = json_pack("{s:s, s:s, s:o, s:o}", "status", rd_status_name(to), "previous",
                             rd_status_name(from), "termination_reason",
                             r->reason ? json_string(rd_reason_name(r->reason)) : json_null(),
                             "pending_action", rd_public_pending(r));
    if (data) {
        rd_emit(act, "run.status", data, 0);
        json_decref(data);
    }
    if (rd_status_terminal(to) || to == RD_ST_PAUSED || to == RD_ST_AUTH_REQUIRED) {
        char type[40];
        snprintf(type, sizeof type, "run.%s", rd_status_name(to));
        rd_notify_webhook(act, type, wire);
    }
    if (rd_status_terminal(to) && wire) {
        /* last_event_id in run.end is the id of the terminal run.status just appended. */
        json_object_set_new(wire, "last_event_id", json_integer(r->last_event_id));
        json_t *end = json_pack("{s:O}", "run", wire);
        char *text = end ? json_dumps(end, JSON_COMPACT) : NULL;
        if (text)
            emit_text(act, "run.end", text, 0, true);
        free(text);
        json_decref(end);
    }
    json_decref(wire);
    if (rd_status_terminal(to))
        rd_exec_close_ctls(act);
    rd_mark_dirty(act);
    return 0;
}

/* Writes dirty rows, commits, then publishes and wakes watchers. */
static int flush(rd_engine *eng)
{
    rd_active *act;
    int rc = 0;
    while ((act = TAILQ_FIRST(&eng->dirty))) {
        TAILQ_REMOVE(&eng->dirty, act, dlink);
        act->dirty = false;
        if (rd_store_run_update(eng->store, act->run) != 0)
            rc = RD_EIO;
    }
    if (rc == 0)
        rc = rd_store_commit(eng->store);
    eng->m_commits++;
    rd_pending_pub *p;
    if (rc != 0) {
        /* The batch is lost to the store: do not publish what is not durable. */
        rd_store_rollback(eng->store);
        eng->m_commit_failures++;
        eng->store_ok = false;
        rd_log_err("store commit failed; events of this batch were not published");
        eng->pub_watermark = 0;
        while ((p = STAILQ_FIRST(&eng->pending))) {
            STAILQ_REMOVE_HEAD(&eng->pending, link);
            free(p->buf);
            free(p);
        }
        return rc;
    }
    eng->store_ok = true;
    if (eng->outbox)
        rd_outbox_kick(eng->outbox);
    while ((p = STAILQ_FIRST(&eng->pending))) {
        STAILQ_REMOVE_HEAD(&eng->pending, link);
        for (int i = 0; i < eng->n_listeners; i++)
            eng->listeners[i].fn(&p->ev, eng->listeners[i].arg);
        free(p->buf);
        free(p);
    }
    if (eng->pub_watermark > 0) {
        /* After the formatted ones: listeners ignore ids at or below what they have seen. */
        rd_pub_event w = {.id = eng->pub_watermark,
                          .run_id = "",
                          .flow = "",
                          .type = "",
                          .data = "",
                          .frame = NULL};
        eng->pub_watermark = 0;
        for (int i = 0; i < eng->n_listeners; i++)
            eng->listeners[i].fn(&w, eng->listeners[i].arg);
    }
    return 0;
}

/* Watchers are woken after the commit that made their run settle. */
static void wake_watchers(const char *key, void *value, void *arg)
{
    rd_active *act = value;
    if (!settled(act->run->status))
        return;
    rd_watch *w;
    while ((w = LIST_FIRST(&act->watches))) {
        LIST_REMOVE(w, link);
        act->eng->n_watches--;
        w->fn(w->arg);
        free(w);
    }
}

int rd_engine_flush(rd_engine *eng)
{
    int rc = flush(eng);
    if (rc != 0)
        return rc;
    if (eng->n_watches > 0) /* most commits have no waiter to wake */
        rd_map_each(eng->active, wake_watchers, NULL);
    rd_active *act;
    while ((act = TAILQ_FIRST(&eng->releasing))) {
        TAILQ_REMOVE(&eng->releasing, act, rlink);
        if (act->dirty) {
            /* Changed again by a watcher: its row goes into the next transaction. */
            TAILQ_REMOVE(&eng->dirty, act, dlink);
            act->dirty = false;
            rd_store_run_update(eng->store, act->run);
            rd_commit_soon(eng);
        }
        active_free(act);
    }
    return 0;
}

static void engine_on_commit(evutil_socket_t fd, short what, void *arg)
{
    rd_engine_flush(arg);
}

void rd_schedule_now(rd_engine *eng)
{
    if (eng->shutting_down)
        return;
    rd_active *act, *next;
    for (act = TAILQ_FIRST(&eng->queue); act && eng->running < eng->cfg->max_running; act = next) {
        next = TAILQ_NEXT(act, qlink);
        const rd_flow_config *flow = rd_config_flow(eng->cfg, act->run->flow);
        rd_flow_stat *st = flow_stat(eng, act->run->flow);
        if (flow && st && st->running >= flow->concurrency)
            continue;
        rd_dequeue(act);
        rd_exec_start(act); /* takes the slot, or ends the run spawn_failed */
    }
    rd_commit_soon(eng);
}

static void engine_on_schedule(evutil_socket_t fd, short what, void *arg)
{
    rd_schedule_now(arg);
}

/* Retention and idempotency-key expiry: a few small batches a minute, each its own short
 * transaction, so pruning a large backlog never holds the loop for long. */
#define PRUNE_BATCH 2000
#define PRUNE_BATCHES 5
#define PRUNE_PERIOD_S 60

static void engine_on_prune(evutil_socket_t fd, short what, void *arg)
{
    rd_engine *eng = arg;
    int64_t keep = eng->cfg->event_retention_ms, forgotten = 0;
    if (eng->shutting_down)
        return;
    /* Idempotency keys are remembered for idempotency_ttl (checked here, so a key may live
     * up to one period longer). */
    if (rd_store_idem_prune(eng->store, rd_now_ms() - eng->cfg->idempotency_ttl_ms, &forgotten) ==
        0)
        rd_engine_flush(eng);
    if (keep <= 0)
        return;
    int64_t total = 0;
    for (int i = 0; i < PRUNE_BATCHES; i++) {
        int64_t n = 0;
        if (rd_store_events_prune(eng->store, rd_now_ms() - keep, PRUNE_BATCH, &n) != 0 ||
            rd_engine_flush(eng) != 0)
            break;
        total += n;
        if (n < PRUNE_BATCH)
            break;
    }
    for (int i = 0; i < PRUNE_BATCHES; i++) {
        int64_t n = 0;
        if (rd_store_dlv_prune(eng->store, rd_now_ms() - keep, PRUNE_BATCH, &n) != 0 ||
            rd_engine_flush(eng) != 0 || n < PRUNE_BATCH)
            break;
    }
    eng->m_pruned += (uint64_t)total;
    if (total)
        rd_log_debug("retention: %lld event(s) of finished runs deleted", (long long)total);
}

rd_engine *rd_engine_new(struct event_base *base, rd_store *store, const rd_config *cfg)
{
    rd_engine *eng = calloc(1, sizeof *eng);
    if (!eng)
        return NULL;
    eng->base = base;
    eng->store = store;
    eng->cfg = cfg;
    eng->store_ok = true;
    TAILQ_INIT(&eng->queue);
    TAILQ_INIT(&eng->dirty);
    TAILQ_INIT(&eng->releasing);
    STAILQ_INIT(&eng->pending);
    eng->active = rd_map_new();
    eng->flow_stats = rd_map_new();
    eng->reaper = rd_reaper_new(base);
    eng->commit_ev = event_new(base, -1, 0, engine_on_commit, eng);
    eng->sched_ev = event_new(base, -1, 0, engine_on_schedule, eng);
    eng->prune_ev = event_new(base, -1, EV_PERSIST, engine_on_prune, eng);
    if (!eng->active || !eng->flow_stats || !eng->reaper || !eng->commit_ev || !eng->sched_ev ||
        !eng->prune_ev || load_stream_key(eng) != 0 || load_link_key(eng) != 0) {
        rd_engine_free(eng);
        return NULL;
    }
    /* Commits run after the iteration's other callbacks: a lower priority would need
     * event_base_priority_init on the caller's base, so order is by activation instead. */
    return eng;
}

void rd_engine_set_config(rd_engine *eng, const rd_config *cfg)
{
    eng->cfg = cfg;
    rd_schedule_soon(eng);
}

int rd_engine_add_listener_gated(rd_engine *eng, rd_event_listener fn,
                                 bool (*wants)(void *arg, const char *run_id), void *arg)
{
    if (eng->n_listeners >= (int)(sizeof eng->listeners / sizeof eng->listeners[0]))
        return RD_EFULL;
    eng->listeners[eng->n_listeners].fn = fn;
    eng->listeners[eng->n_listeners].wants = wants;
    eng->listeners[eng->n_listeners].arg = arg;
    eng->n_listeners++;
    return 0;
}

int rd_engine_add_listener(rd_engine *eng, rd_event_listener fn, void *arg)
{
    return rd_engine_add_listener_gated(eng, fn, NULL, arg);
}

static bool listeners_want(rd_engine *eng, const char *run_id)
{
    for (int i = 0; i < eng->n_listeners; i++)
        if (!eng->listeners[i].wants || eng->listeners[i].wants(eng->listeners[i].arg, run_id))
            return true;
    return false;
}

static void free_active(const char *key, void *value, void *arg)
{
    rd_active *act = value;
    rd_watch *w;
    while ((w = LIST_FIRST(&act->watches))) {
        LIST_REMOVE(w, link);
        act->eng->n_watches--;
        free(w);
    }
    rd_exec_dispose(act);
    if (act->worker) {
        rd_worker_free(act->worker);
        act->worker = NULL;
    }
    rd_run_free(act->run);
    free(act);
}

static void free_stat(const char *key, void *value, void *arg)
{
    free(value);
}

void rd_engine_free(rd_engine *eng)
{
    if (!eng)
        return;
    if (eng->active) {
        flush(eng);
        rd_map_each(eng->active, free_active, NULL);
        rd_map_free(eng->active);
    }
    if (eng->flow_stats) {
        rd_map_each(eng->flow_stats, free_stat, NULL);
        rd_map_free(eng->flow_stats);
    }
    rd_pending_pub *p;
    while ((p = STAILQ_FIRST(&eng->pending))) {
        STAILQ_REMOVE_HEAD(&eng->pending, link);
        free(p->buf);
        free(p);
    }
    if (eng->commit_ev)
        event_free(eng->commit_ev);
    if (eng->sched_ev)
        event_free(eng->sched_ev);
    if (eng->prune_ev)
        event_free(eng->prune_ev);
    if (eng->shutdown_ev)
        event_free(eng->shutdown_ev);
    rd_reaper_free(eng->reaper);
    free(eng);
}

bool rd_engine_ready(const rd_engine *eng)
{
    return eng->store_ok && !eng->shutting_down;
}

/* Recovery of one stored active run (SPEC section 6). */
static void recover_one(rd_engine *eng, rd_run *run)
{
    rd_active *act = rd_active_adopt(eng, run);
    if (!act) {
        rd_run_free(run);
        return;
    }
    const rd_flow_config *flow = rd_config_flow(eng->cfg, run->flow);
    bool resumable = flow && flow->resumable;
    switch (run->status) {
    case RD_ST_QUEUED:
        if (!flow)
            rd_transition(act, RD_ST_CRASHED, RD_RS_INTERRUPTED, "flow is no longer configured");
        else
            rd_enqueue(act);
        break;
    case RD_ST_RUNNING:
    case RD_ST_PAUSED:
    case RD_ST_AUTH_REQUIRED:
        if (resumable && run->status == RD_ST_RUNNING) {
            rd_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
            rd_enqueue(act);
        } else if (resumable) {
            rd_exec_resume_waiting(act);
        } else {
            rd_transition(act, RD_ST_CRASHED, RD_RS_INTERRUPTED,
                          "the daemon stopped while the run was active");
        }
        break;
    case RD_ST_CANCELLING:
        rd_transition(act, RD_ST_CANCELLED, RD_RS_USER_CANCELLED, NULL);
        break;
    default:
        break;
    }
    if (!rd_status_active(run->status))
        rd_active_release(act);
}

int rd_engine_recover(rd_engine *eng)
{
    rd_run **runs = NULL;
    size_t n = 0;
    if (rd_store_runs_active(eng->store, &runs, &n) != 0)
        return RD_EIO;
    for (size_t i = 0; i < n; i++) {
        recover_one(eng, runs[i]);
        runs[i] = NULL;
    }
    rd_run_array_free(runs, n);
    if (n)
        rd_log_info("recovered %zu active run(s)", n);
    int rc = rd_engine_flush(eng);
    rd_schedule_soon(eng);
    struct timeval tv = {PRUNE_PERIOD_S, 0};
    event_add(eng->prune_ev, &tv);
    engine_on_prune(-1, 0, eng); /* a backlog from a long stop goes at once */
    return rc;
}

static void shutdown_check(rd_engine *eng);

static void engine_on_shutdown_tick(evutil_socket_t fd, short what, void *arg)
{
    shutdown_check(arg);
}

static int count_workers(rd_engine *eng)
{
    return eng->running;
}

static void shutdown_check(rd_engine *eng)
{
    if (count_workers(eng) > 0 || !eng->shutdown_done)
        return;
    rd_engine_flush(eng);
    void (*done)(void *) = eng->shutdown_done;
    eng->shutdown_done = NULL;
    done(eng->shutdown_arg);
}

static void stop_one(const char *key, void *value, void *arg)
{
    rd_exec_shutdown(value);
}

void rd_engine_shutdown(rd_engine *eng, void (*done)(void *arg), void *arg)
{
    bool again = eng->shutting_down;
    eng->shutting_down = true;
    eng->shutdown_done = done;
    eng->shutdown_arg = arg;
    if (!again)
        rd_map_each(eng->active, stop_one, NULL);
    else
        rd_map_each(eng->active, rd_exec_kill_cb, NULL);
    if (!eng->shutdown_ev) {
        eng->shutdown_ev = event_new(eng->base, -1, EV_PERSIST, engine_on_shutdown_tick, eng);
        struct timeval tv = {0, 50000};
        if (eng->shutdown_ev)
            event_add(eng->shutdown_ev, &tv);
    }
    shutdown_check(eng);
}

void rd_engine_note_worker_gone(rd_engine *eng)
{
    if (eng->shutting_down)
        shutdown_check(eng);
}
