/*
 * engine_query.c: read-side operations (results, the event log, flows), the external-worker
 * endpoints, and ?wait= watches. Reads go to the store after a flush, so they see every
 * acknowledged change.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static int need_run(rd_engine *eng, const char *id, json_t **run, rd_apierr *e)
{
    json_t *j = NULL;
    if (rd_engine_get(eng, id, &j, e) != 0)
        return -1;
    if (run)
        *run = j;
    else
        json_decref(j);
    if (rd_engine_flush(eng) != 0) {
        e->retry_after = 1;
        return rd_fail(e, 503, "store_unavailable", "the store could not commit; try again");
    }
    return 0;
}

static json_t *time_json(int64_t ms)
{
    char buf[40];
    rd_rfc3339(ms, buf, sizeof buf);
    return json_string(buf);
}

static int item_cb(const rd_event *ev, void *arg)
{
    json_t *arr = arg;
    json_t *d = json_loads(ev->data, 0, NULL);
    bool ok = strcmp(ev->type, "run.item") == 0;
    json_t *it =
        json_pack("{s:I, s:s}", "seq", (json_int_t)ev->item_seq, "status", ok ? "ok" : "error");
    json_object_set(it, "data",
                    d && json_object_get(d, "data") ? json_object_get(d, "data") : json_null());
    if (!ok)
        json_object_set(it, "error", d ? json_object_get(d, "error") : json_null());
    json_t *en = ev->enrichments ? json_loads(ev->enrichments, 0, NULL) : NULL;
    json_object_set_new(it, "enrichments", en && json_is_object(en) ? en : json_object());
    if (en && !json_is_object(en))
        json_decref(en);
    json_object_set_new(it, "created_at", time_json(ev->ts));
    json_object_set_new(it, "event_id", json_integer(ev->id));
    json_array_append_new(arr, it);
    json_decref(d);
    return 0;
}

int rd_engine_results(rd_engine *eng, const char *id, const rd_results_req *q, json_t **out,
                      rd_apierr *e)
{
    json_t *run = NULL;
    if (need_run(eng, id, &run, e) != 0)
        return -1;
    /* Totals come from the run's counters: counting a million rows per page would cost more
     * than the page itself. */
    json_t *counts = json_object_get(run, "counts");
    int64_t n_ok = json_integer_value(json_object_get(counts, "items"));
    int64_t n_err = json_integer_value(json_object_get(counts, "item_errors"));
    json_decref(run);
    rd_item_query iq = {
        .run_id = id,
        .status = q->status,
        .after_seq = q->has_after ? q->after : 0,
        .offset = q->has_after ? 0 : (int64_t)(q->page - 1) * q->page_size,
        .limit = q->page_size + 1, /* one more tells whether there is a next page */
    };
    json_t *items = json_array();
    int64_t total = q->status == 1 ? n_ok : q->status == 2 ? n_err : n_ok + n_err;
    int rc;
    if (q->has_after && q->after == 0)
        iq.after_seq = 0, iq.offset = 0;
    int64_t upper = 0;
    if (!q->has_after && q->status == 0 && iq.offset > 0) {
        /* Every item and item error takes the next seq (1, 2, 3...), so without a status
         * filter page p is seqs (p-1)*size+1 .. p*size: a range read on the index instead of
         * an OFFSET that steps through every earlier row. The upper bound keeps pages
         * disjoint even if a failed commit ever left a gap. */
        iq.after_seq = iq.offset;
        iq.offset = 0;
        upper = iq.after_seq + q->page_size + 1;
    }
    rc = rd_store_items_scan(eng->store, &iq, item_cb, items, NULL);
    while (upper > 0 && json_array_size(items) > 0) {
        json_t *last = json_array_get(items, json_array_size(items) - 1);
        if (json_integer_value(json_object_get(last, "seq")) <= upper)
            break;
        json_array_remove(items, json_array_size(items) - 1);
    }
    if (rc != 0) {
        json_decref(items);
        return rd_fail(e, 503, "store_unavailable", "the store could not be read");
    }
    bool more = json_array_size(items) > (size_t)q->page_size;
    if (more)
        json_array_remove(items, json_array_size(items) - 1);
    json_t *last = json_array_get(items, json_array_size(items) - 1);
    json_t *next = last ? json_incref(json_object_get(last, "seq")) : json_null();
    if (q->has_after)
        *out = json_pack("{s:o, s:I, s:i, s:I, s:b, s:o}", "items", items, "after",
                         (json_int_t)q->after, "page_size", q->page_size, "total",
                         (json_int_t)total, "has_more", more, "next_after", next);
    else
        *out = json_pack("{s:o, s:i, s:i, s:I, s:b, s:o}", "items", items, "page", q->page,
                         "page_size", q->page_size, "total", (json_int_t)total, "has_more", more,
                         "next_after", next);
    return 0;
}

typedef struct ev_ctx {
    rd_engine *eng;
    json_t *arr;
} ev_ctx;

static int event_cb(const rd_event *ev, void *arg)
{
    ev_ctx *c = arg;
    json_t *arr = c->arr;
    char *rendered = rd_engine_render_links(c->eng, ev->run_id, ev->type, ev->data);
    json_t *d = json_loads(rendered ? rendered : ev->data, 0, NULL);
    free(rendered);
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:o, s:o}", "id", (json_int_t)ev->id, "type", ev->type, "run_id",
                  ev->run_id, "timestamp", time_json(ev->ts), "data", d ? d : json_null());
    json_array_append_new(arr, o);
    return 0;
}

int rd_engine_events(rd_engine *eng, const char *id, int64_t after, int limit, json_t **out,
                     rd_apierr *e)
{
    if (need_run(eng, id, NULL, e) != 0)
        return -1;
    json_t *items = json_array();
    ev_ctx c = {eng, items};
    if (rd_store_events_scan(eng->store, id, after, limit + 1, event_cb, &c) != 0) {
        json_decref(items);
        return rd_fail(e, 503, "store_unavailable", "the store could not be read");
    }
    bool more = json_array_size(items) > (size_t)limit;
    if (more)
        json_array_remove(items, json_array_size(items) - 1);
    json_t *last = json_array_get(items, json_array_size(items) - 1);
    int64_t next = last ? json_integer_value(json_object_get(last, "id")) : after;
    *out = json_pack("{s:o, s:b, s:I}", "items", items, "has_more", more, "next_after",
                     (json_int_t)next);
    return 0;
}

json_t *rd_engine_flows(rd_engine *eng)
{
    json_t *arr = json_array();
    const rd_config *cfg = eng->cfg;
    for (int i = 0; i < cfg->n_flows; i++) {
        const rd_flow_config *f = &cfg->flows[i];
        rd_flow_stat *st = rd_map_get(eng->flow_stats, f->name);
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:i, s:I, s:b, s:I, s:I, s:i}", "name", f->name, "version", f->version,
            "executor", f->external ? "external" : "process", "concurrency", f->concurrency,
            "timeout_ms", (json_int_t)f->timeout_ms, "resumable", f->resumable,
            "approval_timeout_ms", (json_int_t)f->approval_timeout_ms, "auth_timeout_ms",
            (json_int_t)f->auth_timeout_ms, "running", st ? st->running : 0);
        if (f->description)
            json_object_set_new(o, "description", json_string(f->description));
        if (f->min_match_rate > 0) {
            json_object_set_new(o, "min_match_rate", json_real(f->min_match_rate));
            json_object_set_new(o, "min_evaluated", json_integer(f->min_evaluated));
        }
        json_object_set_new(o, "default_limit",
                            f->default_limit ? json_integer(f->default_limit) : json_null());
        json_object_set_new(o, "max_limit", json_integer(f->max_limit));
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "items", arr);
}

static int ext_active(rd_engine *eng, const char *id, rd_active **out, rd_apierr *e)
{
    json_t *j = NULL;
    if (rd_engine_get(eng, id, &j, e) != 0)
        return -1;
    json_decref(j);
    rd_active *act = rd_active_get(eng, id);
    const rd_flow_config *flow = rd_config_flow(eng->cfg, act ? act->run->flow : "");
    if (!act || rd_status_terminal(act->run->status) || act->run->status == RD_ST_CREATED)
        return rd_fail(e, 409, "run_not_active", "the run is not active");
    if (!flow || !flow->external)
        return rd_fail(e, 409, "not_external", "the run's flow is not executed externally");
    if (act->run->status == RD_ST_QUEUED && !eng->shutting_down)
        rd_exec_start(act);
    *out = act;
    return 0;
}

int rd_engine_ext_post(rd_engine *eng, const char *id, const char *body, size_t len, json_t **out,
                       rd_apierr *e)
{
    rd_active *act;
    if (ext_active(eng, id, &act, e) != 0)
        return -1;
    int64_t errors_before = act->run->n_proto_errors, lines = 0;
    const char *p = body, *end = body + len;
    while (p < end && !rd_status_terminal(act->run->status)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0 && !(n == 1 && p[0] == '\r')) {
            rd_exec_line(act, p, n);
            lines++;
        }
        p += n + 1;
    }
    int64_t errs = act->run->n_proto_errors - errors_before;
    json_t *run = rd_active_json(act);
    if (rd_engine_flush(eng) != 0) {
        json_decref(run);
        e->retry_after = 1;
        return rd_fail(e, 503, "store_unavailable", "the store could not commit; try again");
    }
    *out = json_pack("{s:I, s:I, s:o}", "accepted", (json_int_t)(lines - errs), "protocol_errors",
                     (json_int_t)errs, "run", run);
    return 0;
}

int rd_engine_ctl_attach(rd_engine *eng, const char *id, const rd_ctl_sink *sink, void **handle,
                         rd_apierr *e)
{
    rd_active *act;
    if (ext_active(eng, id, &act, e) != 0)
        return -1;
    rd_ctl *c = calloc(1, sizeof *c);
    if (!c)
        return rd_fail(e, 500, "internal", "out of memory");
    c->act = act;
    c->sink = *sink;
    size_t i;
    json_t *msg;
    json_array_foreach(act->ctl_log, i, msg)
    {
        char *line = json_dumps(msg, JSON_COMPACT);
        if (line)
            sink->send(sink->arg, line, strlen(line));
        free(line);
    }
    LIST_INSERT_HEAD(&act->ctls, c, link);
    *handle = c;
    if (rd_engine_flush(eng) != 0) {
        e->retry_after = 1;
        LIST_REMOVE(c, link);
        free(c);
        return rd_fail(e, 503, "store_unavailable", "the store could not commit; try again");
    }
    return 0;
}

void rd_engine_ctl_detach(rd_engine *eng, void *handle)
{
    rd_ctl *c = handle;
    if (!c)
        return;
    LIST_REMOVE(c, link);
    free(c);
}

void *rd_engine_watch(rd_engine *eng, const char *id, rd_watch_fn fn, void *arg)
{
    rd_active *act = rd_active_get(eng, id);
    if (!act)
        return NULL;
    rd_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->act = act;
    w->fn = fn;
    w->arg = arg;
    LIST_INSERT_HEAD(&act->watches, w, link);
    eng->n_watches++;
    return w;
}

void rd_engine_unwatch(rd_engine *eng, void *handle)
{
    rd_watch *w = handle;
    if (!w)
        return;
    LIST_REMOVE(w, link);
    eng->n_watches--;
    free(w);
}

char *rd_engine_metrics_text(rd_engine *eng)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fprintf(f, "# TYPE runsd_runs_created_total counter\nrunsd_runs_created_total %llu\n",
            (unsigned long long)eng->m_runs_created);
    fprintf(f, "# TYPE runsd_runs_finished_total counter\n");
    for (int s = 0; s < RD_ST__COUNT; s++)
        if (rd_status_terminal(s))
            fprintf(f, "runsd_runs_finished_total{status=\"%s\"} %llu\n", rd_status_name(s),
                    (unsigned long long)eng->m_runs_finished[s]);
    fprintf(f, "# TYPE runsd_runs_running gauge\nrunsd_runs_running %d\n", eng->running);
    fprintf(f, "# TYPE runsd_runs_queued gauge\nrunsd_runs_queued %d\n", eng->n_queued);
    fprintf(f, "# TYPE runsd_events_total counter\nrunsd_events_total %llu\n",
            (unsigned long long)eng->m_events);
    fprintf(f, "# TYPE runsd_items_total counter\nrunsd_items_total %llu\n",
            (unsigned long long)eng->m_items);
    fprintf(f, "# TYPE runsd_protocol_errors_total counter\nrunsd_protocol_errors_total %llu\n",
            (unsigned long long)eng->m_proto_errors);
    fprintf(f, "# TYPE runsd_spawn_failures_total counter\nrunsd_spawn_failures_total %llu\n",
            (unsigned long long)eng->m_spawn_failures);
    fprintf(f, "# TYPE runsd_store_commits_total counter\nrunsd_store_commits_total %llu\n",
            (unsigned long long)eng->m_commits);
    fprintf(f,
            "# TYPE runsd_store_commit_failures_total counter\n"
            "runsd_store_commit_failures_total %llu\n",
            (unsigned long long)eng->m_commit_failures);
    fprintf(f, "# TYPE runsd_events_pruned_total counter\nrunsd_events_pruned_total %llu\n",
            (unsigned long long)eng->m_pruned);
    fclose(f);
    return buf;
}

rd_store *rd_engine_store(rd_engine *eng)
{
    return eng->store;
}
