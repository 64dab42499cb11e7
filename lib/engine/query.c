/*
 * query.c: reads (a run, lists, results, the event log, flows), the external-worker endpoints
 * and ?wait= watches. Reads go to the store after a commit, so they see every acknowledged
 * change; a run's existence is checked cheaply, without building its wire form.
 */
#include "engine/engine_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads that go to the store are made from rd_engine_after_commit (the API waits for it), so
 * every acknowledged change is committed and no commit is in flight when they run.
 * While the store fails, memory is ahead of it. Reads then show what is stored: every bit of
 * it was published and none of it can be lost, while what memory holds beyond it could still
 * be (a crash before the store works again). The journal reads the committed state while it
 * waits (store_journal.c), so the row, the event log and the results agree with each other
 * and with what streams have sent. 0 and *out (owned), or fills e: 404, or 503 for a run that
 * so far exists only in memory. */
static int stored_run(rd_engine *eng, const char *id, rd_run **out, rd_apierr *e)
{
    int rc = rd_store_run_get(eng->store, id, out);
    if (rc == 0)
        return 0;
    if (rc == RD_ENOTFOUND && !rd_runs_get(eng->runs, id))
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    return rd_fail_store(e);
}

int rd_engine_get(rd_engine *eng, const char *id, rd_audience aud, json_t **out, rd_apierr *e)
{
    if (!rd_run_id_valid(id))
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    const rd_run *r;
    rd_run *stored;
    if (!rd_runs_store_ok(eng->runs)) {
        if (stored_run(eng, id, &stored, e) != 0)
            return -1;
        r = stored;
    } else if (rd_runs_find(eng->runs, id, &r, &stored, e) != 0) {
        return -1;
    }
    *out = rd_runs_run_json_as(eng->runs, r, aud);
    rd_run_free(stored);
    return 0;
}

bool rd_engine_settled(rd_engine *eng, const char *id)
{
    rd_active *act = rd_runs_get(eng->runs, id);
    if (!act)
        return true; /* not active: terminal, created or unknown */
    rd_status s = rd_active_run(act)->status;
    return rd_status_terminal(s) || s == RD_ST_PAUSED || s == RD_ST_AUTH_REQUIRED ||
           s == RD_ST_CREATED;
}

int rd_engine_list(rd_engine *eng, const rd_run_filter *f, int page, int page_size, rd_audience aud,
                   json_t **out, rd_apierr *e)
{
    rd_run **runs = NULL;
    size_t n = 0;
    int64_t total = 0;
    /* While the store fails the list is what is stored (see stored_run). */
    bool stored_only = !rd_runs_store_ok(eng->runs);
    if (rd_store_run_list(eng->store, f, (int64_t)(page - 1) * page_size, page_size, &runs, &n,
                          &total) != 0)
        return rd_fail_store(e);
    json_t *items = json_array();
    for (size_t i = 0; i < n; i++) {
        rd_active *act = stored_only ? NULL : rd_runs_get(eng->runs, runs[i]->id);
        /* An active record is newer than its row. */
        const rd_run *r = act ? rd_active_run(act) : runs[i];
        json_array_append_new(items, rd_runs_run_json_as(eng->runs, r, aud));
    }
    rd_run_array_free(runs, n);
    *out =
        json_pack("{s:o, s:i, s:i, s:I, s:b}", "items", items, "page", page, "page_size", page_size,
                  "total", (json_int_t)total, "has_more", (int64_t)page * page_size < total);
    return 0;
}

/* The run exists (404 otherwise) and every acknowledged change is committed; or the store
 * fails and *stored is its stored row (see stored_run), which the caller frees. */
static int need_run(rd_engine *eng, const char *id, rd_run **stored, rd_apierr *e)
{
    rd_status st;
    rd_reason rs;
    *stored = NULL;
    if (!rd_run_id_valid(id))
        return rd_fail(e, 404, "run_not_found", "no run with that id");
    if (!rd_runs_store_ok(eng->runs))
        return stored_run(eng, id, stored, e);
    return rd_runs_lookup(eng->runs, id, &st, &rs, e);
}

/* Totals come from the run's counters: counting a million rows per page would cost more than
 * the page itself. While the store fails, the stored row's, which match the stored items. */
static int run_counts(rd_engine *eng, const char *id, const rd_run *stored, int64_t *n_ok,
                      int64_t *n_err, rd_apierr *e)
{
    const rd_run *r = stored;
    rd_run *owned = NULL;
    if (!r && rd_runs_find(eng->runs, id, &r, &owned, e) != 0)
        return -1;
    *n_ok = r->n_items;
    *n_err = r->n_item_errors;
    rd_run_free(owned);
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
    int64_t n_ok = 0, n_err = 0;
    rd_run *stored;
    if (need_run(eng, id, &stored, e) != 0)
        return -1;
    int crc = run_counts(eng, id, stored, &n_ok, &n_err, e);
    rd_run_free(stored);
    if (crc != 0)
        return -1;
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
        return rd_fail_store(e);
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
    rd_audience aud;
} ev_ctx;

static int event_cb(const rd_event *ev, void *arg)
{
    ev_ctx *c = arg;
    json_t *arr = c->arr;
    char *rendered =
        rd_runs_render_event(c->eng->runs, ev->run_id, ev->flow, ev->type, ev->data, c->aud);
    json_t *d = json_loads(rendered ? rendered : ev->data, 0, NULL);
    free(rendered);
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:o, s:o}", "id", (json_int_t)ev->id, "type", ev->type, "run_id",
                  ev->run_id, "timestamp", time_json(ev->ts), "data", d ? d : json_null());
    json_array_append_new(arr, o);
    return 0;
}

int rd_engine_events(rd_engine *eng, const char *id, int64_t after, int limit, rd_audience aud,
                     json_t **out, rd_apierr *e)
{
    rd_run *stored;
    if (need_run(eng, id, &stored, e) != 0)
        return -1;
    rd_run_free(stored);
    json_t *items = json_array();
    ev_ctx c = {eng, items, aud};
    if (rd_store_events_scan(eng->store, id, after, limit + 1, event_cb, &c) != 0) {
        json_decref(items);
        return rd_fail_store(e);
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
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:i, s:I, s:b, s:I, s:I, s:i}", "name", f->name, "version", f->version,
            "executor", f->external ? "external" : "process", "concurrency", f->concurrency,
            "timeout_ms", (json_int_t)f->timeout_ms, "resumable", f->resumable,
            "approval_timeout_ms", (json_int_t)f->approval_timeout_ms, "auth_timeout_ms",
            (json_int_t)f->auth_timeout_ms, "running", rd_sched_flow_running(eng, f->name));
        if (f->description)
            json_object_set_new(o, "description", json_string(f->description));
        if (f->min_match_rate > 0) {
            json_object_set_new(o, "min_match_rate", json_real(f->min_match_rate));
            json_object_set_new(o, "min_evaluated", json_integer(f->min_evaluated));
        }
        json_object_set_new(o, "default_limit",
                            f->default_limit ? json_integer(f->default_limit) : json_null());
        json_object_set_new(o, "max_limit", json_integer(f->max_limit));
        /* The accepted input (docs/config.md, input schemas); null: any input. */
        json_object_set_new(o, "input_schema",
                            f->input_schema ? json_deep_copy(f->input_schema) : json_null());
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "items", arr);
}

static int ext_active(rd_engine *eng, const char *id, rd_active **out, rd_apierr *e)
{
    rd_status st;
    rd_reason rs;
    if (rd_runs_lookup(eng->runs, id, &st, &rs, e) != 0)
        return -1;
    rd_active *act = rd_runs_get(eng->runs, id);
    const rd_run *r = act ? rd_active_run(act) : NULL;
    const rd_flow_config *flow = rd_config_flow(eng->cfg, r ? r->flow : "");
    if (!r || rd_status_terminal(r->status) || r->status == RD_ST_CREATED)
        return rd_fail(e, 409, "run_not_active", "the run is not active");
    if (!flow || !flow->external)
        return rd_fail(e, 409, "not_external", "the run's flow is not executed externally");
    if (r->status == RD_ST_QUEUED && !eng->shutting_down)
        rd_sched_start(eng, act);
    *out = act;
    return 0;
}

int rd_engine_ext_post(rd_engine *eng, const char *id, const char *body, size_t len, json_t **out,
                       rd_apierr *e)
{
    rd_active *act;
    if (ext_active(eng, id, &act, e) != 0)
        return -1;
    const rd_run *r = rd_active_run(act);
    int64_t errors_before = r->n_proto_errors, lines = 0;
    const char *p = body, *end = body + len;
    while (p < end && !rd_status_terminal(r->status)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0 && !(n == 1 && p[0] == '\r')) {
            rd_exec_line(eng->exec, act, p, n);
            lines++;
        }
        p += n + 1;
    }
    int64_t errs = r->n_proto_errors - errors_before;
    json_t *run = rd_active_json(act);
    return rd_engine_reply(json_pack("{s:I, s:I, s:o}", "accepted", (json_int_t)(lines - errs),
                                     "protocol_errors", (json_int_t)errs, "run", run),
                           out, e);
}

int rd_engine_ctl_attach(rd_engine *eng, const char *id, const rd_ctl_sink *sink, void **handle,
                         rd_apierr *e)
{
    rd_active *act;
    if (ext_active(eng, id, &act, e) != 0)
        return -1;
    void *c = rd_exec_ctl_attach(eng->exec, act, sink);
    if (!c)
        return rd_fail(e, 500, "internal", "out of memory");
    *handle = c;
    if (!rd_runs_store_ok(eng->runs)) {
        rd_exec_ctl_detach(eng->exec, c);
        return rd_fail_store(e);
    }
    return 0;
}

void rd_engine_ctl_detach(rd_engine *eng, void *handle)
{
    rd_exec_ctl_detach(eng->exec, handle);
}

void *rd_engine_watch(rd_engine *eng, const char *id, rd_watch_fn fn, void *arg)
{
    return rd_runs_watch(eng->runs, id, fn, arg);
}

void rd_engine_unwatch(rd_engine *eng, void *handle)
{
    rd_runs_unwatch(eng->runs, handle);
}
