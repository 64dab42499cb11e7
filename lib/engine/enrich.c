/*
 * enrich.c: enrichments (FindAll's enrich): one worker of an enrichment flow per request,
 * fed every current item of the run and then every new one as it arrives, as
 * {"type":"item","seq":N,"data":...} lines on its stdin; its {"type":"enrichment","seq":N,
 * "data":...} answers are attached to item N and announced as run.item_enriched.
 *
 * Feeding reads items back from the store a page at a time and only while the worker's stdin
 * has room, so a run of a million items does not sit in memory. A run is not finished while
 * an enrichment still works on its items: its terminal transition waits for the last
 * enrichment worker (exec.c asks rd_enrich_defer).
 */
#include "engine/engine_int.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define FEED_PAGE 500
#define FEED_ROOM (1024 * 1024) /* stdin bytes queued before feeding pauses */
#define MAX_ENRICHERS 8

struct rd_enricher {
    LIST_ENTRY(rd_enricher) link;
    rd_active *act;
    rd_worker *w;
    char flow[RD_FLOW_NAME_MAX];
    int index;        /* position in run->extra.enrichments */
    int64_t fed;      /* highest item seq written to its stdin */
    int64_t enriched; /* enrichment answers accepted */
    struct event *feed_ev;
    bool stdin_closed;
};

static json_t *info_of(rd_enricher *en)
{
    json_t *arr = json_object_get(en->act->run->extra, "enrichments");
    return json_array_get(arr, (size_t)en->index);
}

static void set_info(rd_enricher *en, const char *key, json_t *value)
{
    json_t *info = info_of(en);
    if (info)
        json_object_set_new(info, key, value);
    else
        json_decref(value);
    rd_mark_dirty(en->act);
}

static void arm_feed(rd_enricher *en, int64_t ms)
{
    struct timeval tv = {0, (suseconds_t)(ms * 1000)};
    if (en->feed_ev && !event_pending(en->feed_ev, EV_TIMEOUT, NULL))
        evtimer_add(en->feed_ev, &tv);
}

typedef struct feed_ctx {
    rd_enricher *en;
    int sent;
} feed_ctx;

static int feed_one(const rd_event *ev, void *arg)
{
    feed_ctx *c = arg;
    json_t *d = json_loads(ev->data, 0, NULL);
    json_t *msg = json_pack("{s:s, s:I, s:O}", "type", "item", "seq", (json_int_t)ev->item_seq,
                            "data", d ? json_object_get(d, "data") : json_null());
    char *line = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    int rc = line ? rd_worker_send_line(c->en->w, line, strlen(line)) : -1;
    free(line);
    json_decref(msg);
    json_decref(d);
    if (rc != 0)
        return 1; /* stdin full or closed: stop, the next tick resumes after en->fed */
    c->en->fed = ev->item_seq;
    c->sent++;
    return 0;
}

/* The run will produce no more items once it is terminal or finishing. */
static bool source_done(rd_active *act)
{
    return rd_status_terminal(act->run->status) || act->deferred;
}

static void enrich_on_feed(evutil_socket_t fd, short what, void *arg)
{
    rd_enricher *en = arg;
    rd_active *act = en->act;
    if (!en->w || en->stdin_closed)
        return;
    int64_t last = act->run->next_item_seq - 1;
    if (en->fed < last && rd_worker_stdin_pending(en->w) < FEED_ROOM) {
        feed_ctx c = {en, 0};
        rd_item_query q = {
            .run_id = act->run->id, .status = 1, .after_seq = en->fed, .limit = FEED_PAGE};
        if (en->fed == 0)
            q.after_seq = 0, q.offset = 0;
        rd_store_items_scan(act->eng->store, &q, feed_one, &c, NULL);
        if (c.sent == 0 && en->fed < last) {
            /* Only error items remain below `last`: nothing more to feed from them. */
            en->fed = last;
        }
    }
    if (en->fed >= last && source_done(act)) {
        en->stdin_closed = true;
        rd_worker_close_stdin(en->w);
        return;
    }
    /* More to feed (stdin full) or the run may still produce items. */
    arm_feed(en, en->fed < last ? 5 : 50);
}

static void enrich_on_line(void *arg, const char *line, size_t len)
{
    rd_enricher *en = arg;
    rd_active *act = en->act;
    rd_msg m;
    char err[200];
    if (len == 0)
        return;
    if (rd_proto_parse(line, len, &m, err, sizeof err) != 0) {
        act->run->n_proto_errors++;
        rd_mark_dirty(act);
        return;
    }
    if (m.type == RD_MSG_ENRICHMENT && m.seq >= 1 && m.seq < act->run->next_item_seq) {
        char *text = json_dumps(m.data, JSON_COMPACT);
        if (text && rd_store_enrichment_put(act->eng->store, act->run->id, m.seq, en->flow, text,
                                            rd_now_ms()) == 0) {
            json_t *d = json_pack("{s:I, s:s, s:O}", "seq", (json_int_t)m.seq, "flow", en->flow,
                                  "data", m.data);
            rd_emit(act, "run.item_enriched", d, 0);
            json_decref(d);
            en->enriched++;
            set_info(en, "enriched", json_integer(en->enriched));
        }
        free(text);
    } else if (m.type == RD_MSG_LOG) {
        json_t *d = json_pack("{s:s, s:s, s:s}", "level", m.level, "message", m.message, "source",
                              en->flow);
        rd_emit(act, "run.log", d, 0);
        json_decref(d);
    } else {
        act->run->n_proto_errors++;
        rd_mark_dirty(act);
    }
    rd_msg_clear(&m);
    rd_commit_soon(act->eng);
}

static void enrich_on_stderr(void *arg, const char *line, size_t len)
{
    /* Enrichment workers' stderr is not kept: the main worker's bounded log is the run's. */
}

static void enricher_free(rd_enricher *en)
{
    LIST_REMOVE(en, link);
    en->act->n_enrichers--;
    if (en->feed_ev)
        event_free(en->feed_ev);
    if (en->w)
        rd_worker_free(en->w);
    free(en);
}

static void enrich_on_exit(void *arg, const rd_worker_exit *ex)
{
    rd_enricher *en = arg;
    rd_active *act = en->act;
    bool ok = ex->exited && ex->code == 0;
    set_info(en, "status", json_string(ok ? "completed" : "failed"));
    char when[40];
    rd_rfc3339(rd_now_ms(), when, sizeof when);
    set_info(en, "finished_at", json_string(when));
    if (!ok) {
        char msg[120];
        snprintf(msg, sizeof msg, ex->signaled ? "killed by signal %d" : "exited with status %d",
                 ex->signaled ? ex->sig : ex->code);
        set_info(en, "error", json_string(msg));
    }
    rd_worker_free(en->w);
    en->w = NULL;
    enricher_free(en);
    if (act->n_enrichers == 0)
        rd_exec_enrichers_done(act);
    rd_commit_soon(act->eng);
}

static const rd_worker_cbs enrich_cbs = {
    .on_line = enrich_on_line,
    .on_overlong = NULL,
    .on_stderr = enrich_on_stderr,
    .on_exit = enrich_on_exit,
};

static int spawn(rd_enricher *en, const rd_flow_config *flow, json_t *input, char *err,
                 size_t errlen)
{
    rd_active *act = en->act;
    rd_worker_spec spec = {.argv = flow->argv,
                           .env_extra = flow->n_env ? flow->env : NULL,
                           .cwd = flow->cwd,
                           .max_line = (size_t)act->eng->cfg->max_line_bytes,
                           .max_stderr_line = 4096};
    if (rd_worker_spawn(act->eng->base, act->eng->reaper, &spec, &enrich_cbs, en, &en->w, err,
                        errlen) != 0)
        return -1;
    json_t *start = json_pack("{s:s, s:{s:s, s:s, s:O, s:s, s:O}}", "type", "start", "run", "id",
                              act->run->id, "flow", flow->name, "input",
                              input ? input : json_null(), "enriches", act->run->flow, "metadata",
                              act->run->metadata ? act->run->metadata : json_null());
    char *line = start ? json_dumps(start, JSON_COMPACT) : NULL;
    if (line)
        rd_worker_send_line(en->w, line, strlen(line));
    free(line);
    json_decref(start);
    return 0;
}

static void record(rd_enricher *en, json_t *input)
{
    rd_run *r = en->act->run;
    if (!r->extra)
        r->extra = json_object();
    json_t *arr = json_object_get(r->extra, "enrichments");
    if (!arr) {
        arr = json_array();
        json_object_set_new(r->extra, "enrichments", arr);
    }
    char when[40];
    rd_rfc3339(rd_now_ms(), when, sizeof when);
    en->index = (int)json_array_size(arr);
    json_array_append_new(arr, json_pack("{s:s, s:O, s:s, s:s, s:i}", "flow", en->flow, "input",
                                         input ? input : json_null(), "status", "running",
                                         "started_at", when, "enriched", 0));
    rd_mark_dirty(en->act);
}

int rd_enrich_start(rd_active *act, const rd_flow_config *flow, json_t *input, rd_apierr *e)
{
    if (act->n_enrichers >= MAX_ENRICHERS)
        return rd_fail(e, 429, "too_many_enrichments",
                       "at most %d enrichments may work on a run at once", MAX_ENRICHERS);
    rd_enricher *en = calloc(1, sizeof *en);
    if (!en)
        return rd_fail(e, 500, "internal", "out of memory");
    en->act = act;
    snprintf(en->flow, sizeof en->flow, "%s", flow->name);
    en->feed_ev = evtimer_new(act->eng->base, enrich_on_feed, en);
    char err[256];
    if (!en->feed_ev || spawn(en, flow, input, err, sizeof err) != 0) {
        if (en->feed_ev)
            event_free(en->feed_ev);
        free(en);
        return rd_fail(e, 500, "spawn_failed", "could not start the enrichment worker: %s", err);
    }
    LIST_INSERT_HEAD(&act->enrichers, en, link);
    act->n_enrichers++;
    record(en, input);
    arm_feed(en, 0);
    return 0;
}

void rd_enrich_kick(rd_active *act)
{
    rd_enricher *en;
    LIST_FOREACH(en, &act->enrichers, link)
    {
        arm_feed(en, 0);
    }
}

void rd_enrich_stop(rd_active *act, bool now)
{
    rd_enricher *en;
    LIST_FOREACH(en, &act->enrichers, link)
    {
        if (en->w)
            rd_worker_stop(en->w, now ? 0 : act->eng->cfg->kill_grace_ms);
    }
}

void rd_enrich_dispose(rd_active *act)
{
    rd_enricher *en;
    while ((en = LIST_FIRST(&act->enrichers)))
        enricher_free(en);
}
