/* test_store.c: the SQLite store against the contract in lib/store.h. Each test gets a fresh
 * store in its own temporary directory (or in memory, for the tests registered twice), so no
 * test sees another's rows. Tests that reopen the file or edit it behind the store's back
 * (deleting the newest events, killing a writer) run on a file only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "base/util.h"

typedef struct fx {
    char dir[64];
    char path[128];
    bool memory;
    rd_store *s;
} fx;

static rd_store *open_store(const char *path, bool memory)
{
    rd_store_opts opts = {.allow_memory = memory};
    char err[256] = "";
    rd_store *s = NULL;
    int rc = rd_store_open_sqlite(path, &opts, &s, err, sizeof(err));

    if (rc != 0)
        fail_msg("open %s: %d %s", path, rc, err);
    return s;
}

static int setup_file(void **state)
{
    fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/runsd.db", f->dir);
    f->s = open_store(f->path, false);
    *state = f;
    return 0;
}

static int setup_memory(void **state)
{
    fx *f = calloc(1, sizeof(*f));

    f->memory = true;
    snprintf(f->path, sizeof(f->path), ":memory:");
    f->s = open_store(f->path, true);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    const char *suffix[] = {"", "-wal", "-shm"};
    char p[160];

    rd_store_close(f->s);
    if (!f->memory) {
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof(p), "%s%s", f->path, suffix[i]);
            unlink(p);
        }
        rmdir(f->dir);
    }
    free(f);
    return 0;
}

static void reopen(fx *f)
{
    rd_store_close(f->s);
    f->s = open_store(f->path, f->memory);
}

/* Runs SQL on the file directly, behind the store's back (the store must be closed). */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

static json_t *js(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

static rd_run *make_run(const char *id, const char *flow, rd_status st, int64_t created)
{
    rd_run *r = rd_run_new();

    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->flow, sizeof(r->flow), "%s", flow);
    r->status = st;
    r->created_at = created;
    return r;
}

static void insert_run(rd_store *s, const char *id, const char *flow, rd_status st, int64_t created)
{
    rd_run *r = make_run(id, flow, st, created);

    assert_int_equal(rd_store_run_insert(s, r), 0);
    rd_run_free(r);
}

/* A run with every field set to a distinct value, JSON members of every kind. */
static rd_run *full_run(void)
{
    rd_run *r = make_run("run_AAAAAAAAAAAAAAAAAAAAAA", "find-all", RD_ST_SUCCEEDED, 1000);

    snprintf(r->flow_version, sizeof(r->flow_version), "v1.2.3");
    r->reason = RD_RS_MATCH_LIMIT_MET;
    r->input = js("\"a bare string\"");
    r->metadata = js("{\"k\":\"v\",\"nested\":{\"a\":[1,2,3]},\"nul\":\"x\\u0000y\"}");
    r->result = js("42.5");
    r->error = js("{\"message\":\"boom \\u00e9\"}");
    r->cursor = js("[\"page\",7]");
    r->steps = js("[{\"name\":\"s1\",\"state\":\"finished\",\"started_at\":1,\"finished_at\":2}]");
    r->progress = js("{\"done\":5,\"total\":10}");
    r->pending_action = js("null"); /* a JSON null is a value, not an absent member */
    r->webhook = js("{\"url\":\"http://x\",\"events\":[\"run.failed\"],\"secret\":\"whsec_x\"}");
    r->extra = js("true");
    r->limit = 100;
    r->preview = true;
    r->attempt = 3;
    r->n_items = 11, r->n_item_errors = 12, r->n_evaluated = 13, r->n_matched = 14;
    r->n_dropped = 15, r->n_proto_errors = 16, r->n_steps_finished = 17;
    r->started_at = 1001, r->finished_at = 1002, r->updated_at = 1003;
    r->cpu_user_ms = 21, r->cpu_sys_ms = 22, r->peak_rss_kb = 23, r->run_ms = 24;
    r->last_event_id = 9000000000LL;
    r->next_item_seq = 12;
    memset(r->stream_token_hash, 'a', 64);
    r->stream_token_exp = 5000;
    memset(r->idem_key_hash, 'b', 64);
    return r;
}

static void assert_json_eq(const json_t *a, const json_t *b, const char *what)
{
    if (!a && !b)
        return;
    if (!a || !b || !json_equal(a, b))
        fail_msg("JSON member %s differs", what);
}

static void assert_run_eq(const rd_run *a, const rd_run *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->flow, b->flow);
    assert_string_equal(a->flow_version, b->flow_version);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->reason, b->reason);
#define CMP_JSON(m) assert_json_eq(a->m, b->m, #m)
    CMP_JSON(input);
    CMP_JSON(metadata);
    CMP_JSON(result);
    CMP_JSON(error);
    CMP_JSON(cursor);
    CMP_JSON(steps);
    CMP_JSON(progress);
    CMP_JSON(pending_action);
    CMP_JSON(webhook);
    CMP_JSON(extra);
#undef CMP_JSON
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->preview, b->preview);
    assert_int_equal(a->attempt, b->attempt);
    assert_int_equal(a->n_items, b->n_items);
    assert_int_equal(a->n_item_errors, b->n_item_errors);
    assert_int_equal(a->n_evaluated, b->n_evaluated);
    assert_int_equal(a->n_matched, b->n_matched);
    assert_int_equal(a->n_dropped, b->n_dropped);
    assert_int_equal(a->n_proto_errors, b->n_proto_errors);
    assert_int_equal(a->n_steps_finished, b->n_steps_finished);
    assert_int_equal(a->created_at, b->created_at);
    assert_int_equal(a->started_at, b->started_at);
    assert_int_equal(a->finished_at, b->finished_at);
    assert_int_equal(a->updated_at, b->updated_at);
    assert_int_equal(a->cpu_user_ms, b->cpu_user_ms);
    assert_int_equal(a->cpu_sys_ms, b->cpu_sys_ms);
    assert_int_equal(a->peak_rss_kb, b->peak_rss_kb);
    assert_int_equal(a->run_ms, b->run_ms);
    assert_int_equal(a->last_event_id, b->last_event_id);
    assert_int_equal(a->next_item_seq, b->next_item_seq);
    assert_string_equal(a->stream_token_hash, b->stream_token_hash);
    assert_int_equal(a->stream_token_exp, b->stream_token_exp);
    assert_string_equal(a->idem_key_hash, b->idem_key_hash);
}

/* ---- runs ------------------------------------------------------------------------------- */

static void test_run_roundtrip(void **state)
{
    fx *f = *state;
    rd_run *r = full_run(), *bare = make_run("run_bare", "f", RD_ST_CREATED, 5), *got = NULL;

    assert_int_equal(rd_store_run_insert(f->s, r), 0);
    assert_int_equal(rd_store_run_insert(f->s, bare), 0);
    /* Reads see the open transaction's writes... */
    assert_int_equal(rd_store_run_get(f->s, r->id, &got), 0);
    assert_run_eq(r, got);
    rd_run_free(got);
    assert_int_equal(rd_store_commit(f->s), 0);
    /* ...and the committed ones. */
    assert_int_equal(rd_store_run_get(f->s, r->id, &got), 0);
    assert_run_eq(r, got);
    assert_true(json_is_null(got->pending_action));
    assert_string_equal(json_string_value(json_object_get(got->metadata, "nul")), "x");
    assert_int_equal(json_string_length(json_object_get(got->metadata, "nul")), 3);
    rd_run_free(got);
    assert_int_equal(rd_store_run_get(f->s, "run_bare", &got), 0);
    assert_run_eq(bare, got);
    assert_null(got->input);
    assert_null(got->metadata);
    assert_null(got->extra);
    assert_int_equal(got->next_item_seq, 1);
    rd_run_free(got);
    rd_run_free(bare);
    rd_run_free(r);
}

static void test_run_dup(void **state)
{
    rd_run *r = full_run(), *c = rd_run_dup(r), *fresh = rd_run_new();

    assert_int_equal(fresh->status, RD_ST_CREATED);
    assert_int_equal(fresh->reason, RD_RS_NONE);
    assert_int_equal(fresh->attempt, 0);
    assert_int_equal(fresh->next_item_seq, 1);
    assert_null(fresh->input);
    rd_run_free(fresh);
    assert_non_null(c);
    assert_run_eq(r, c);
    assert_ptr_not_equal(r->metadata, c->metadata); /* deep, not shared */
    json_object_set_new(c->metadata, "k", json_string("changed"));
    assert_string_equal(json_string_value(json_object_get(r->metadata, "k")), "v");
    rd_run_free(c);
    rd_run_free(r);
    rd_run_free(NULL);
}

static void test_run_update(void **state)
{
    fx *f = *state;
    rd_run *r = full_run(), *got = NULL;

    assert_int_equal(rd_store_run_insert(f->s, r), 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    r->status = RD_ST_FAILED;
    r->reason = RD_RS_TIMEOUT;
    json_decref(r->result);
    r->result = NULL;
    json_decref(r->error);
    r->error = js("{\"message\":\"late\"}");
    r->n_items = 99;
    r->stream_token_hash[0] = '\0';
    assert_int_equal(rd_store_run_update(f->s, r), 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_run_get(f->s, r->id, &got), 0);
    assert_run_eq(r, got);
    assert_null(got->result);
    rd_run_free(got);
    rd_run_free(r);
}

static void test_run_not_found(void **state)
{
    fx *f = *state;
    rd_run *r = make_run("run_missing", "f", RD_ST_QUEUED, 1), *got = NULL;

    assert_int_equal(rd_store_run_get(f->s, "run_missing", &got), RD_ENOTFOUND);
    assert_null(got);
    assert_int_equal(rd_store_run_update(f->s, r), RD_ENOTFOUND);
    assert_int_equal(rd_store_commit(f->s), 0);
    rd_run_free(r);
}

static void test_run_duplicate(void **state)
{
    fx *f = *state;
    rd_run *r = make_run("run_dup", "first", RD_ST_QUEUED, 1), *got = NULL;

    assert_int_equal(rd_store_run_insert(f->s, r), 0);
    snprintf(r->flow, sizeof(r->flow), "second");
    assert_int_equal(rd_store_run_insert(f->s, r), RD_ECONFLICT);
    /* The conflict undid only its own statement: the transaction commits the first insert. */
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_run_get(f->s, "run_dup", &got), 0);
    assert_string_equal(got->flow, "first");
    rd_run_free(got);
    rd_run_free(r);
}

/* 30 runs: status i % 11, flow "a" or "b" by i % 3, created_at with ties (i / 2). */
static void seed_runs(rd_store *s)
{
    char id[32];

    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "run_%02d", i);
        insert_run(s, id, i % 3 ? "a" : "b", (rd_status)(i % RD_ST__COUNT), 100 + i / 2);
    }
    assert_int_equal(rd_store_commit(s), 0);
}

static bool seed_matches(int i, unsigned mask, const char *flow)
{
    if (mask && !(mask & (1u << (i % RD_ST__COUNT))))
        return false;
    return !flow || strcmp(flow, i % 3 ? "a" : "b") == 0;
}

/* Pages through run_list with page size 4 and checks the order, the total and the set
 * against the seed, for one filter. */
static void check_list(rd_store *s, unsigned mask, const char *flow)
{
    rd_run_filter filt = {mask, flow};
    int expect[30], n_expect = 0, seen = 0;

    /* Newest first: created_at DESC then id DESC, i.e. descending i for this seed. */
    for (int i = 29; i >= 0; i--)
        if (seed_matches(i, mask, flow))
            expect[n_expect++] = i;
    for (int64_t off = 0;; off += 4) {
        rd_run **v = NULL;
        size_t n = 0;
        int64_t total = -1;
        assert_int_equal(rd_store_run_list(s, &filt, off, 4, &v, &n, &total), 0);
        assert_int_equal(total, n_expect);
        for (size_t k = 0; k < n; k++) {
            char id[32];
            snprintf(id, sizeof(id), "run_%02d", expect[seen++]);
            assert_string_equal(v[k]->id, id);
        }
        rd_run_array_free(v, n);
        if (n < 4)
            break;
    }
    assert_int_equal(seen, n_expect);
}

static void test_run_list(void **state)
{
    fx *f = *state;
    unsigned running = 1u << RD_ST_RUNNING, two = (1u << RD_ST_FAILED) | (1u << RD_ST_CREATED);
    rd_run **v = NULL;
    size_t n = 0;
    int64_t total = 0;

    seed_runs(f->s);
    check_list(f->s, 0, NULL);
    check_list(f->s, running, NULL);
    check_list(f->s, two, NULL);
    check_list(f->s, 0, "a");
    check_list(f->s, two, "b");
    check_list(f->s, 0, "nope");
    /* Bits beyond the last status select nothing; a NULL filter and no limit select all. */
    assert_int_equal(
        rd_store_run_list(f->s, &(rd_run_filter){1u << 30, NULL}, 0, 10, &v, &n, &total), 0);
    assert_int_equal(n, 0);
    assert_int_equal(total, 0);
    rd_run_array_free(v, n);
    assert_int_equal(rd_store_run_list(f->s, NULL, 0, 0, &v, &n, NULL), 0);
    assert_int_equal(n, 30);
    rd_run_array_free(v, n);
}

static void test_runs_active(void **state)
{
    fx *f = *state;
    rd_run **v = NULL;
    size_t n = 0;
    /* Ties on created_at go by insertion order (FIFO across restarts), not by id. */
    const char *expect[] = {"run_c", "run_b", "run_a", "run_d", "run_e"};

    insert_run(f->s, "run_b", "x", RD_ST_PAUSED, 20);
    insert_run(f->s, "run_done", "x", RD_ST_SUCCEEDED, 1);
    insert_run(f->s, "run_a", "x", RD_ST_RUNNING, 20); /* same time as b, inserted later */
    insert_run(f->s, "run_e", "y", RD_ST_CANCELLING, 40);
    insert_run(f->s, "run_c", "y", RD_ST_QUEUED, 10);
    insert_run(f->s, "run_new", "y", RD_ST_CREATED, 15);
    insert_run(f->s, "run_d", "x", RD_ST_AUTH_REQUIRED, 30);
    insert_run(f->s, "run_x", "x", RD_ST_CRASHED, 35);
    assert_int_equal(rd_store_runs_active(f->s, &v, &n), 0);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(v[i]->id, expect[i]);
    rd_run_array_free(v, n);
}

/* ---- events ----------------------------------------------------------------------------- */

typedef struct collect {
    int64_t ids[16384];
    int64_t seqs[16384];
    char types[16384];
    int n;
    int stop_after; /* > 0: stop the scan after this many */
    rd_store *s;    /* set: re-enter the scan from the callback */
    int inner_rc;
} collect;

static int collect_cb(const rd_event *ev, void *arg)
{
    collect *c = arg;

    assert_true(c->n < 16384);
    assert_non_null(ev->run_id);
    assert_non_null(ev->flow);
    assert_non_null(ev->data);
    c->ids[c->n] = ev->id;
    c->seqs[c->n] = ev->item_seq;
    c->types[c->n] = strcmp(ev->type, "run.item") == 0         ? 'i'
                     : strcmp(ev->type, "run.item_error") == 0 ? 'e'
                                                               : 'o';
    c->n++;
    if (c->s)
        c->inner_rc = rd_store_events_scan(c->s, NULL, 0, 1, collect_cb, arg);
    return c->stop_after > 0 && c->n >= c->stop_after;
}

static int64_t append(rd_store *s, const char *run, const char *type, int64_t seq)
{
    int64_t id = 0;

    assert_int_equal(rd_store_event_append(s, run, "f", type, 1234, "{\"x\":1}", seq, &id), 0);
    return id;
}

/* Retention deletes the old non-item events of finished runs only, and min_event_id moves to
 * where complete history starts. */
static void test_events_prune(void **state)
{
    fx *f = *state;
    rd_run *done_run = make_run("run_done", "f", RD_ST_SUCCEEDED, 100);
    done_run->finished_at = 1000;
    assert_int_equal(rd_store_run_insert(f->s, done_run), 0);
    rd_run_free(done_run);
    insert_run(f->s, "run_live", "f", RD_ST_RUNNING, 100);
    int64_t first = append(f->s, "run_done", "run.status", 0); /* ts 1234 */
    int64_t item = append(f->s, "run_done", "run.item", 1);
    int64_t last_old = append(f->s, "run_done", "run.end", 0);
    append(f->s, "run_live", "run.log", 0);
    int64_t n = -1, min = 0;
    assert_int_equal(rd_store_min_event_id(f->s, &min), 0);
    assert_int_equal(min, first);
    /* Nothing is older than 1000: nothing goes. */
    assert_int_equal(rd_store_events_prune(f->s, 1000, 100, &n), 0);
    assert_int_equal(n, 0);
    /* Before 5000: run_done's two non-item events go; its item and the live run's stay. */
    assert_int_equal(rd_store_events_prune(f->s, 5000, 100, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rd_store_commit(f->s), 0);
    collect c = {0};
    assert_int_equal(rd_store_events_scan(f->s, NULL, 0, 0, collect_cb, &c), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.ids[0], item);
    assert_int_equal(rd_store_min_event_id(f->s, &min), 0);
    assert_int_equal(min, last_old + 1);
    assert_int_equal(rd_store_events_prune(f->s, 5000, 100, &n), 0);
    assert_int_equal(n, 0);
}

static void test_event_ids_never_reused(void **state)
{
    fx *f = *state;
    int64_t last = 0, id, max = -1, min = -1;

    assert_int_equal(rd_store_max_event_id(f->s, &max), 0);
    assert_int_equal(rd_store_min_event_id(f->s, &min), 0);
    assert_int_equal(max, 0);
    assert_int_equal(min, 0);
    for (int i = 0; i < 10; i++) {
        id = append(f->s, "run_a", "run.log", 0);
        assert_true(id > last);
        last = id;
    }
    assert_int_equal(rd_store_commit(f->s), 0);
    rd_store_close(f->s);
    f->s = NULL;
    raw_exec(f->path, "DELETE FROM events WHERE id > 5");
    f->s = open_store(f->path, false);
    assert_int_equal(rd_store_max_event_id(f->s, &max), 0);
    assert_int_equal(max, 5);
    id = append(f->s, "run_a", "run.log", 0);
    assert_true(id > last);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_min_event_id(f->s, &min), 0);
    assert_int_equal(min, 1);
}

static void test_events_scan(void **state)
{
    fx *f = *state;
    int64_t a[20], b[20];
    collect *c = calloc(1, sizeof(*c));

    for (int i = 0; i < 20; i++) {
        a[i] = append(f->s, "run_a", "run.log", 0);
        b[i] = append(f->s, "run_b", "run.item", i + 1);
    }
    assert_int_equal(rd_store_commit(f->s), 0);
    /* One run, from an id, limited. */
    assert_int_equal(rd_store_events_scan(f->s, "run_a", a[4], 5, collect_cb, c), 0);
    assert_int_equal(c->n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(c->ids[i], a[5 + i]);
    assert_int_equal(c->seqs[0], 0);
    /* One run, no limit: everything after. */
    memset(c, 0, sizeof(*c));
    assert_int_equal(rd_store_events_scan(f->s, "run_b", b[17], 0, collect_cb, c), 0);
    assert_int_equal(c->n, 2);
    assert_int_equal(c->ids[1], b[19]);
    assert_int_equal(c->seqs[1], 20);
    /* All runs, in id order, interleaved. */
    memset(c, 0, sizeof(*c));
    assert_int_equal(rd_store_events_scan(f->s, NULL, a[10], 6, collect_cb, c), 0);
    assert_int_equal(c->n, 6);
    assert_int_equal(c->ids[0], b[10]);
    assert_int_equal(c->ids[1], a[11]);
    for (int i = 1; i < c->n; i++)
        assert_true(c->ids[i] > c->ids[i - 1]);
    /* The callback stops the scan; an unknown run has no events. */
    memset(c, 0, sizeof(*c));
    c->stop_after = 3;
    assert_int_equal(rd_store_events_scan(f->s, NULL, 0, 0, collect_cb, c), 0);
    assert_int_equal(c->n, 3);
    memset(c, 0, sizeof(*c));
    assert_int_equal(rd_store_events_scan(f->s, "run_zzz", 0, 0, collect_cb, c), 0);
    assert_int_equal(c->n, 0);
    /* Calling the same scan from its own callback is refused, and the outer scan goes on. */
    memset(c, 0, sizeof(*c));
    c->s = f->s;
    assert_int_equal(rd_store_events_scan(f->s, NULL, 0, 4, collect_cb, c), 0);
    assert_int_equal(c->inner_rc, RD_EINVAL);
    assert_int_equal(c->n, 4);
    assert_int_equal(c->ids[3], b[1]);
    free(c);
}

/* ---- items ------------------------------------------------------------------------------ */

#define N_ITEMS 10000

static bool item_is_error(int seq)
{
    return seq % 7 == 0;
}

/* N_ITEMS items on run_a (every 7th an item_error), with other events of run_a and items of
 * run_b in between, so the scans must skip rows that are not theirs. */
static void seed_items(rd_store *s)
{
    for (int seq = 1; seq <= N_ITEMS; seq++) {
        append(s, "run_a", item_is_error(seq) ? "run.item_error" : "run.item", seq);
        if (seq % 10 == 0)
            append(s, "run_a", "run.progress", 0);
        if (seq % 100 == 0)
            append(s, "run_b", "run.item", seq / 100);
        if (seq % 1000 == 0)
            assert_int_equal(rd_store_commit(s), 0);
    }
    assert_int_equal(rd_store_commit(s), 0);
}

/* Reads every item of run_a with the given status filter, page by page (page mode) or by
 * cursor, and checks there is no gap, no duplicate and no wrong type. */
static void check_items(rd_store *s, int status, bool by_cursor, int page)
{
    collect *c = calloc(1, sizeof(*c));
    int64_t total = -1, after = 0, offset = 0;
    int expect = 0, want_total = 0;

    for (int seq = 1; seq <= N_ITEMS; seq++)
        want_total += status == 0 || (status == 2) == item_is_error(seq);
    for (;;) {
        rd_item_query q = {"run_a", status, by_cursor ? after : 0, offset, page};
        int before = c->n;
        assert_int_equal(rd_store_items_scan(s, &q, collect_cb, c, &total), 0);
        assert_int_equal(total, want_total);
        if (c->n == before)
            break;
        assert_true(c->n - before <= page);
        after = c->seqs[c->n - 1];
        offset += c->n - before;
    }
    assert_int_equal(c->n, want_total);
    for (int i = 0; i < c->n; i++) {
        do
            expect++;
        while (status && (status == 2) != item_is_error(expect));
        assert_int_equal(c->seqs[i], expect);
        assert_int_equal(c->types[i], item_is_error(expect) ? 'e' : 'i');
    }
    free(c);
}

static void test_items_scan(void **state)
{
    fx *f = *state;
    collect *c = calloc(1, sizeof(*c));
    int64_t total = -1;

    seed_items(f->s);
    for (int status = 0; status <= 2; status++) {
        check_items(f->s, status, false, 100);
        check_items(f->s, status, true, 100);
        check_items(f->s, status, true, 333);
    }
    /* A page in the middle; total may be NULL; another run's items are its own. */
    rd_item_query q = {"run_a", 0, 0, 4990, 20};
    assert_int_equal(rd_store_items_scan(f->s, &q, collect_cb, c, NULL), 0);
    assert_int_equal(c->n, 20);
    assert_int_equal(c->seqs[0], 4991);
    memset(c, 0, sizeof(*c));
    q = (rd_item_query){"run_b", 0, 0, 0, 0};
    assert_int_equal(rd_store_items_scan(f->s, &q, collect_cb, c, &total), 0);
    assert_int_equal(c->n, N_ITEMS / 100);
    assert_int_equal(total, N_ITEMS / 100);
    /* A second item with the same seq is a conflict; the rest of the batch survives. */
    assert_int_equal(rd_store_event_append(f->s, "run_a", "f", "run.item", 1, "{}", 5, NULL),
                     RD_ECONFLICT);
    append(f->s, "run_b", "run.item", N_ITEMS);
    assert_int_equal(rd_store_commit(f->s), 0);
    free(c);
}

/* ---- idempotency, kv, transactions ------------------------------------------------------ */

static void test_idempotency(void **state)
{
    fx *f = *state;
    char run[RD_RUN_ID_MAX], body[65], tiny[4];

    assert_int_equal(rd_store_idem_get(f->s, "k1", run, sizeof(run), body, sizeof(body)),
                     RD_ENOTFOUND);
    assert_int_equal(rd_store_idem_put(f->s, "k1", "run_1", "bodyhash1", 10), 0);
    assert_int_equal(rd_store_idem_put(f->s, "k1", "run_2", "bodyhash2", 11), RD_ECONFLICT);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_idem_get(f->s, "k1", run, sizeof(run), body, sizeof(body)), 0);
    assert_string_equal(run, "run_1");
    assert_string_equal(body, "bodyhash1");
    assert_int_equal(rd_store_idem_get(f->s, "k1", NULL, 0, NULL, 0), 0);
    assert_int_equal(rd_store_idem_get(f->s, "k1", tiny, sizeof(tiny), NULL, 0), RD_EINVAL);
    /* Expiry: keys recorded before the cut are forgotten, later ones stay. */
    int64_t n = -1;
    assert_int_equal(rd_store_idem_put(f->s, "k2", "run_2", "bodyhash2", 50), 0);
    assert_int_equal(rd_store_idem_prune(f->s, 10, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(rd_store_idem_prune(f->s, 20, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_idem_get(f->s, "k1", NULL, 0, NULL, 0), RD_ENOTFOUND);
    assert_int_equal(rd_store_idem_get(f->s, "k2", run, sizeof(run), NULL, 0), 0);
    assert_string_equal(run, "run_2");
}

static int count_dlv(const rd_delivery *d, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static int count_att(const rd_delivery_attempt *a, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

/* A delivery of run_a's run.succeeded in state, created at 50. */
static rd_delivery run_dlv(const char *id, int state, int64_t updated_at, int64_t next_at)
{
    return (rd_delivery){.id = id,
                         .run_id = "run_a",
                         .type = "run.succeeded",
                         .url = "http://127.0.0.1:9/h",
                         .source = RD_DLV_SRC_RUN,
                         .body = "{}",
                         .state = state,
                         .created_at = 50,
                         .updated_at = updated_at,
                         .next_at = next_at};
}

/* Retention of webhook deliveries: finished ones last changed before the cut go, with their
 * attempts; pending ones and recent ones stay. */
static void test_deliveries_prune(void **state)
{
    fx *f = *state;
    const char *ids[] = {"msg_old_delivered", "msg_old_pending", "msg_new_failed"};
    int states[] = {RD_DLV_DELIVERED, RD_DLV_PENDING, RD_DLV_FAILED};
    int64_t updated[] = {100, 100, 900};
    for (int i = 0; i < 3; i++) {
        rd_delivery d = run_dlv(ids[i], states[i], updated[i], 0);
        d.attempts = 1;
        rd_delivery_attempt a = {.delivery_id = ids[i], .n = 1, .at = 60, .status_code = 200};
        assert_int_equal(rd_store_dlv_insert(f->s, &d), 0);
        assert_int_equal(rd_store_dlv_attempt_add(f->s, &a), 0);
    }
    int64_t n = -1;
    assert_int_equal(rd_store_dlv_prune(f->s, 500, 100, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rd_store_commit(f->s), 0);
    int left = 0;
    int64_t total = 0;
    assert_int_equal(rd_store_dlv_run_scan(f->s, "run_a", 0, 10, count_dlv, &left, &total), 0);
    assert_int_equal(left, 2);
    left = 0;
    assert_int_equal(rd_store_dlv_get(f->s, "msg_old_delivered", count_dlv, &left), RD_ENOTFOUND);
    assert_int_equal(rd_store_dlv_get(f->s, "msg_old_pending", count_dlv, &left), 0);
    assert_int_equal(left, 1);
    int att = 0;
    assert_int_equal(rd_store_dlv_attempts_scan(f->s, "msg_old_delivered", count_att, &att), 0);
    assert_int_equal(att, 0);
    assert_int_equal(rd_store_dlv_attempts_scan(f->s, "msg_new_failed", count_att, &att), 0);
    assert_int_equal(att, 1);
}

/* The backlog: pending and sending deliveries, in the open transaction and after its commit;
 * delivered, failed and stopped ones are not counted. */
static void test_deliveries_backlog(void **state)
{
    fx *f = *state;
    const char *ids[] = {"msg_pending", "msg_sending", "msg_delivered",
                         "msg_failed",  "msg_stopped", "msg_retry"};
    int states[] = {RD_DLV_PENDING, RD_DLV_PENDING, RD_DLV_DELIVERED,
                    RD_DLV_FAILED,  RD_DLV_STOPPED, RD_DLV_PENDING};
    int64_t n = -1;

    assert_int_equal(rd_store_dlv_backlog(f->s, &n), 0);
    assert_int_equal(n, 0);
    for (int i = 0; i < 6; i++) {
        rd_delivery d = run_dlv(ids[i], states[i], 50, i == 5 ? 1000 : 50);
        assert_int_equal(rd_store_dlv_insert(f->s, &d), 0);
    }
    assert_int_equal(rd_store_dlv_lease(f->s, "msg_sending"), 0);
    assert_int_equal(rd_store_dlv_backlog(f->s, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rd_store_commit(f->s), 0);
    rd_delivery done = {.id = "msg_pending",
                        .state = RD_DLV_DELIVERED,
                        .attempts = 1,
                        .updated_at = 60,
                        .last_code = 200};
    assert_int_equal(rd_store_dlv_update(f->s, &done), 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_dlv_backlog(f->s, &n), 0);
    assert_int_equal(n, 2);
}

static void test_kv(void **state)
{
    fx *f = *state;
    char *v = NULL;

    assert_int_equal(rd_store_kv_get(f->s, "secret", &v), RD_ENOTFOUND);
    assert_int_equal(rd_store_kv_put(f->s, "secret", "one"), 0);
    assert_int_equal(rd_store_kv_get(f->s, "secret", &v), 0);
    assert_string_equal(v, "one");
    free(v);
    assert_int_equal(rd_store_kv_put(f->s, "secret", "two"), 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_kv_get(f->s, "secret", &v), 0);
    assert_string_equal(v, "two");
    free(v);
}

static int collect_pgroup(const rd_pgroup *g, void *arg)
{
    char *out = arg;
    size_t n = strlen(out);

    snprintf(out + n, 256 - n, "%lld:%lld:%s:%s|", (long long)g->pgid, (long long)g->start_ticks,
             g->boot_id, g->run_id ? g->run_id : "-");
    return 0;
}

static void test_pgroups(void **state)
{
    fx *f = *state;
    char got[256] = "";
    rd_pgroup a = {.pgid = 200, .start_ticks = 7, .boot_id = "b1", .run_id = "run_a"};
    rd_pgroup b = {.pgid = 100, .start_ticks = 9, .boot_id = "b1", .run_id = NULL};

    assert_int_equal(rd_store_pgroup_put(f->s, &a), 0);
    assert_int_equal(rd_store_pgroup_put(f->s, &b), 0);
    a.start_ticks = 8; /* the same pgid again (a lost delete): replaced, not refused */
    assert_int_equal(rd_store_pgroup_put(f->s, &a), 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_pgroups_scan(f->s, collect_pgroup, got), 0);
    assert_string_equal(got, "100:9:b1:-|200:8:b1:run_a|");
    assert_int_equal(rd_store_pgroup_del(f->s, 100), 0);
    assert_int_equal(rd_store_pgroup_del(f->s, 12345), 0);
    got[0] = '\0';
    assert_int_equal(rd_store_pgroups_scan(f->s, collect_pgroup, got), 0);
    assert_string_equal(got, "200:8:b1:run_a|");
}

static void test_commit_rollback(void **state)
{
    fx *f = *state;
    rd_run *got = NULL;
    char *v = NULL;
    int64_t kept, max = 0;

    /* Nothing open: both are no-ops. */
    assert_int_equal(rd_store_commit(f->s), 0);
    assert_int_equal(rd_store_rollback(f->s), 0);
    insert_run(f->s, "run_kept", "f", RD_ST_QUEUED, 1);
    kept = append(f->s, "run_kept", "run.created", 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    insert_run(f->s, "run_gone", "f", RD_ST_QUEUED, 2);
    append(f->s, "run_gone", "run.created", 0);
    assert_int_equal(rd_store_kv_put(f->s, "k", "v"), 0);
    assert_int_equal(rd_store_idem_put(f->s, "key", "run_gone", "h", 2), 0);
    assert_int_equal(rd_store_run_get(f->s, "run_gone", &got), 0);
    rd_run_free(got);
    assert_int_equal(rd_store_rollback(f->s), 0);
    assert_int_equal(rd_store_rollback(f->s), 0);
    assert_int_equal(rd_store_run_get(f->s, "run_gone", &got), RD_ENOTFOUND);
    assert_int_equal(rd_store_run_get(f->s, "run_kept", &got), 0);
    rd_run_free(got);
    assert_int_equal(rd_store_kv_get(f->s, "k", &v), RD_ENOTFOUND);
    assert_int_equal(rd_store_idem_get(f->s, "key", NULL, 0, NULL, 0), RD_ENOTFOUND);
    assert_int_equal(rd_store_max_event_id(f->s, &max), 0);
    assert_int_equal(max, kept);
    /* The next write opens a new transaction. */
    assert_true(append(f->s, "run_kept", "run.status", 0) > kept);
    assert_int_equal(rd_store_commit(f->s), 0);
}

static void test_durability(void **state)
{
    fx *f = *state;
    rd_run *r = full_run(), *got = NULL;
    collect *c = calloc(1, sizeof(*c));
    char *v = NULL;

    assert_int_equal(rd_store_run_insert(f->s, r), 0);
    append(f->s, r->id, "run.created", 0);
    assert_int_equal(rd_store_kv_put(f->s, "k", "v"), 0);
    assert_int_equal(rd_store_commit(f->s), 0);
    reopen(f);
    assert_int_equal(rd_store_run_get(f->s, r->id, &got), 0);
    assert_run_eq(r, got);
    rd_run_free(got);
    assert_int_equal(rd_store_kv_get(f->s, "k", &v), 0);
    free(v);
    assert_int_equal(rd_store_events_scan(f->s, r->id, 0, 0, collect_cb, c), 0);
    assert_int_equal(c->n, 1);
    /* close commits what is still open. */
    append(f->s, r->id, "run.status", 0);
    reopen(f);
    memset(c, 0, sizeof(*c));
    assert_int_equal(rd_store_events_scan(f->s, r->id, 0, 0, collect_cb, c), 0);
    assert_int_equal(c->n, 2);
    free(c);
    rd_run_free(r);
}

/* A writer killed with SIGKILL keeps what it committed and loses what it had not. */
static void test_kill9(void **state)
{
    fx *f = *state;
    collect *c = calloc(1, sizeof(*c));
    int wst = 0;
    pid_t pid;

    rd_store_close(f->s);
    f->s = NULL;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* No cmocka asserts here: a failure would unwind into the runner in the child. */
        rd_store *s = NULL;
        char err[256];
        if (rd_store_open_sqlite(f->path, NULL, &s, err, sizeof(err)) != 0 ||
            rd_store_event_append(s, "run_k", "f", "run.created", 1, "{}", 0, NULL) != 0 ||
            rd_store_commit(s) != 0 ||
            rd_store_event_append(s, "run_k", "f", "run.status", 2, "{}", 0, NULL) != 0)
            _exit(1);
        raise(SIGKILL);
        _exit(2);
    }
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
    f->s = open_store(f->path, false);
    assert_int_equal(rd_store_events_scan(f->s, "run_k", 0, 0, collect_cb, c), 0);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->types[0], 'o');
    free(c);
}

/* ---- open ------------------------------------------------------------------------------- */

static void test_open_refusals(void **state)
{
    fx *f = *state;
    rd_store *s = NULL;
    char err[256] = "";

    assert_int_equal(rd_store_open_sqlite(":memory:", NULL, &s, err, sizeof(err)), RD_EINVAL);
    assert_non_null(strstr(err, "memory"));
    assert_null(s);
    assert_int_equal(
        rd_store_open_sqlite("file::memory:", &(rd_store_opts){0}, &s, err, sizeof(err)),
        RD_EINVAL);
    assert_int_equal(rd_store_open_sqlite("", NULL, &s, err, sizeof(err)), RD_EINVAL);
    assert_int_equal(rd_store_open_sqlite("/nonexistent/dir/x.db", NULL, &s, err, sizeof(err)),
                     RD_EIO);
    assert_true(err[0] != '\0');
    /* A file written by a newer runsd is refused rather than misread. */
    rd_store_close(f->s);
    f->s = NULL;
    raw_exec(f->path, "PRAGMA user_version = 99");
    assert_int_equal(rd_store_open_sqlite(f->path, NULL, &s, err, sizeof(err)), RD_EINVAL);
    assert_non_null(strstr(err, "newer"));
    raw_exec(f->path, "PRAGMA user_version = 1");
    f->s = open_store(f->path, false);
}

#define BOTH(t)                                                                                    \
    cmocka_unit_test_setup_teardown(t, setup_file, teardown),                                      \
        cmocka_unit_test_setup_teardown(t, setup_memory, teardown)
#define FILE_ONLY(t) cmocka_unit_test_setup_teardown(t, setup_file, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_run_roundtrip),
        cmocka_unit_test(test_run_dup),
        BOTH(test_run_update),
        BOTH(test_run_not_found),
        BOTH(test_run_duplicate),
        BOTH(test_run_list),
        BOTH(test_runs_active),
        FILE_ONLY(test_event_ids_never_reused),
        BOTH(test_events_scan),
        BOTH(test_items_scan),
        BOTH(test_events_prune),
        BOTH(test_idempotency),
        BOTH(test_kv),
        BOTH(test_pgroups),
        BOTH(test_deliveries_prune),
        BOTH(test_deliveries_backlog),
        BOTH(test_commit_rollback),
        FILE_ONLY(test_durability),
        FILE_ONLY(test_kill9),
        FILE_ONLY(test_open_refusals),
    };

    rd_log_set_level(RD_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
