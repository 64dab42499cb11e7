/*
 * enrich.c: enrichments (FindAll's enrich): one worker of an enrichment flow per request,
 * fed every current item of the run and then every new one as it arrives, as
 * {"type":"item","seq":N,"data":...} lines on its stdin; its {"type":"enrichment","seq":N,
 * "data":...} answers are attached to item N and announced as run.item_enriched.
 *
 * Feeding reads items back from the store a page at a time and only while the worker's stdin
 * has room, so a run of a million items does not sit in memory. Feeding is driven by events,
 * never by polling: a new item (rd_enrich_kick), the worker's stdin draining, or the run's
 * end (rd_enrich_source_closed). A run is not finished while an enrichment still works on its
 * items: the owner waits for the done callback before the terminal transition.
 */
#include "exec/enrich.h"
#include "exec/pgroup.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "base/util.h"
#include "exec/proto.h"

#define FEED_PAGE 500
#define FEED_ROOM (1024 * 1024) /* stdin bytes queued before feeding waits for a drain */
#define MAX_ENRICHERS 8

typedef struct rd_enricher {
    LIST_ENTRY(rd_enricher) link;
    rd_enrich_set *set;
    rd_worker *w;
    char flow[RD_FLOW_NAME_MAX];
    int index;        /* position in run->extra.enrichments */
    int64_t fed;      /* highest item seq written to its stdin */
    int64_t enriched; /* enrichment answers accepted */
    struct event *feed_ev;
    bool stdin_closed;
} rd_enricher;

struct rd_enrich_set {
    rd_reaper *reaper;
    rd_active *act;
    rd_enrich_done_fn done;
    void *done_arg;
    LIST_HEAD(, rd_enricher) list;
    int n;
    bool source_closed;
};

static void feed_soon(rd_enricher *en)
{
    if (en->feed_ev && !event_pending(en->feed_ev, EV_TIMEOUT, NULL))
        event_active(en->feed_ev, EV_TIMEOUT, 0);
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
        return 1; /* stdin full or closed: stop; the drain resumes after en->fed */
    c->en->fed = ev->item_seq;
    c->sent++;
    return 0;
}

static bool source_done(const rd_enrich_set *s)
{
    return s->source_closed || rd_status_terminal(rd_active_run(s->act)->status);
}

static void enrich_on_feed(evutil_socket_t fd, short what, void *arg)
{
    rd_enricher *en = arg;
    rd_active *act = en->set->act;
    const rd_run *r = rd_active_run(act);
    if (!en->w || en->stdin_closed)
        return;
    int64_t last = r->next_item_seq - 1;
    while (en->fed < last && rd_worker_stdin_pending(en->w) < FEED_ROOM) {
        feed_ctx c = {en, 0};
        rd_item_query q = {.run_id = r->id, .status = 1, .after_seq = en->fed, .limit = FEED_PAGE};
        rd_store_items_scan(rd_runs_store(rd_active_runs(act)), &q, feed_one, &c, NULL);
        if (c.sent == 0) {
            if (rd_worker_stdin_pending(en->w) == 0)
                en->fed = last; /* only error items remain below `last` */
            break;
        }
    }
    if (en->fed >= last && source_done(en->set)) {
        en->stdin_closed = true;
        rd_worker_close_stdin(en->w);
    }
    /* Otherwise the next item, the run's end or the stdin drain feeds again. */
}

static void enrich_on_drained(void *arg)
{
    feed_soon(arg);
}

static void enrich_on_line(void *arg, const char *line, size_t len)
{
    rd_enricher *en = arg;
    rd_active *act = en->set->act;
    rd_msg m;
    char err[200];
    if (len == 0)
        return;
    if (rd_proto_parse(line, len, &m, err, sizeof err) != 0) {
        rd_run_protocol_error(act, NULL);
        return;
    }
    const rd_run *r = rd_active_run(act);
    if (m.type == RD_MSG_ENRICHMENT && m.seq >= 1 && m.seq < r->next_item_seq) {
        if (rd_run_enrich_item(act, m.seq, en->flow, m.data) == 0) {
            en->enriched++;
            rd_run_enrichment_set(act, en->index, "enriched", json_integer(en->enriched));
        }
    } else if (m.type == RD_MSG_LOG) {
        rd_run_log(act, m.level, en->flow, m.message);
    } else {
        rd_run_protocol_error(act, NULL);
    }
    rd_msg_clear(&m);
    rd_runs_commit_soon(rd_active_runs(act));
}

static void enrich_on_stderr(void *arg, const char *line, size_t len)
{
    /* Enrichment workers' stderr is not kept: the main worker's bounded log is the run's. */
}

static void enricher_free(rd_enricher *en)
{
    rd_enrich_set *s = en->set;
    LIST_REMOVE(en, link);
    s->n--;
    if (en->feed_ev)
        event_free(en->feed_ev);
    if (en->w)
        rd_worker_free(en->w);
    rd_active_unhold(s->act);
    free(en);
}

static void enrich_on_exit(void *arg, const rd_worker_exit *ex)
{
    rd_enricher *en = arg;
    rd_enrich_set *s = en->set;
    rd_active *act = s->act;
    bool ok = ex->exited && ex->code == 0;
    rd_run_enrichment_set(act, en->index, "status", json_string(ok ? "completed" : "failed"));
    char when[40];
    rd_rfc3339(rd_now_ms(), when, sizeof when);
    rd_run_enrichment_set(act, en->index, "finished_at", json_string(when));
    if (!ok) {
        char msg[120];
        snprintf(msg, sizeof msg, ex->signaled ? "killed by signal %d" : "exited with status %d",
                 ex->signaled ? ex->sig : ex->code);
        rd_run_enrichment_set(act, en->index, "error", json_string(msg));
    }
    rd_pgroup_forget(rd_runs_store(rd_active_runs(act)), rd_worker_pid(en->w));
    rd_worker_free(en->w);
    en->w = NULL;
    rd_active_hold(act); /* the done callback may release it */
    enricher_free(en);
    if (s->n == 0 && s->done)
        s->done(s->done_arg);
    rd_runs_commit_soon(rd_active_runs(act));
    rd_active_unhold(act);
}

static const rd_worker_cbs enrich_cbs = {
    .on_line = enrich_on_line,
    .on_overlong = NULL,
    .on_stderr = enrich_on_stderr,
    .on_stdin_drained = enrich_on_drained,
    .on_exit = enrich_on_exit,
};

static int spawn(rd_enricher *en, const rd_flow_config *flow, json_t *input, char *err,
                 size_t errlen)
{
    rd_active *act = en->set->act;
    rd_runs *rs = rd_active_runs(act);
    const rd_run *r = rd_active_run(act);
    rd_worker_spec spec = {.argv = flow->argv,
                           .env_extra = flow->n_env ? flow->env : NULL,
                           .cwd = flow->cwd,
                           .max_line = (size_t)rd_runs_config(rs)->max_line_bytes,
                           .max_stderr_line = 4096,
                           .max_processes = flow->max_processes};
    if (rd_worker_spawn(rd_runs_base(rs), en->set->reaper, &spec, &enrich_cbs, en, &en->w, err,
                        errlen) != 0)
        return -1;
    rd_pgroup_record(rd_runs_store(rs), rd_worker_pid(en->w), r->id);
    json_t *start =
        json_pack("{s:s, s:{s:s, s:s, s:O, s:s, s:O}}", "type", "start", "run", "id", r->id, "flow",
                  flow->name, "input", input ? input : json_null(), "enriches", r->flow, "metadata",
                  r->metadata ? r->metadata : json_null());
    char *line = start ? json_dumps(start, JSON_COMPACT) : NULL;
    if (line)
        rd_worker_send_line(en->w, line, strlen(line));
    free(line);
    json_decref(start);
    return 0;
}

rd_enrich_set *rd_enrich_set_new(rd_reaper *reaper, rd_active *act, rd_enrich_done_fn done,
                                 void *arg)
{
    rd_enrich_set *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->reaper = reaper;
    s->act = act;
    s->done = done;
    s->done_arg = arg;
    LIST_INIT(&s->list);
    return s;
}

void rd_enrich_set_free(rd_enrich_set *s)
{
    if (!s)
        return;
    rd_enricher *en;
    while ((en = LIST_FIRST(&s->list)))
        enricher_free(en);
    free(s);
}

int rd_enrich_start(rd_enrich_set *s, const rd_flow_config *flow, json_t *input, rd_apierr *e)
{
    if (s->n >= MAX_ENRICHERS)
        return rd_fail(e, 429, "too_many_enrichments",
                       "at most %d enrichments may work on a run at once", MAX_ENRICHERS);
    rd_enricher *en = calloc(1, sizeof *en);
    if (!en)
        return rd_fail(e, 500, "internal", "out of memory");
    en->set = s;
    snprintf(en->flow, sizeof en->flow, "%s", flow->name);
    en->feed_ev = event_new(rd_runs_base(rd_active_runs(s->act)), -1, 0, enrich_on_feed, en);
    char err[256];
    if (!en->feed_ev || spawn(en, flow, input, err, sizeof err) != 0) {
        if (en->feed_ev)
            event_free(en->feed_ev);
        free(en);
        return rd_fail(e, 500, "spawn_failed", "could not start the enrichment worker: %s", err);
    }
    LIST_INSERT_HEAD(&s->list, en, link);
    s->n++;
    rd_active_hold(s->act);
    en->index = rd_run_enrichment_begin(s->act, en->flow, input);
    feed_soon(en);
    return 0;
}

void rd_enrich_kick(rd_enrich_set *s)
{
    rd_enricher *en;
    LIST_FOREACH(en, &s->list, link)
    feed_soon(en);
}

void rd_enrich_source_closed(rd_enrich_set *s)
{
    s->source_closed = true;
    rd_enrich_kick(s);
}

void rd_enrich_stop(rd_enrich_set *s, bool now)
{
    int64_t grace = rd_runs_config(rd_active_runs(s->act))->kill_grace_ms;
    rd_enricher *en;
    LIST_FOREACH(en, &s->list, link)
    {
        if (en->w)
            rd_worker_stop(en->w, now ? 0 : grace);
    }
}

int rd_enrich_count(const rd_enrich_set *s)
{
    return s ? s->n : 0;
}

void rd_enrich_pause(rd_enrich_set *s, bool paused)
{
    rd_enricher *en;
    LIST_FOREACH(en, &s->list, link)
    {
        if (en->w)
            rd_worker_pause_output(en->w, paused);
    }
}
