/* test_commit.c: the commit pipeline (run/runs_commit.c) over the store journal
 * (store/store_journal.c): events reach listeners only after the commit that made them
 * durable, in id order; a failed commit or a failed write publishes nothing and wakes no
 * watcher, and once the store works again the held batch is stored with the ids it was given,
 * then published. A real SQLite store under a layer whose commit and writes the test can make
 * fail, under the journal. That layer can also commit asynchronously, as PostgreSQL does: its
 * commit is in flight until the test writes a byte to a pipe the loop watches, so the test
 * sees what happens between a commit's start and its completion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/util.h"
#include "run/runs.h"
#include "store/store_journal.h"

typedef struct fx {
    struct event_base *base;
    rd_store *store; /* the journal */
    rd_store *sqlite;
    rd_config *cfg;
    rd_runs *rs;
    rd_store_ops ops; /* the store's table with commit wrapped */
    const rd_store_ops *real;
    char dir[64];
} fx;

static fx *g; /* for the commit wrapper, which gets only the store */
static int commits_done;
static bool fail_commits, fail_writes;
static int gate[2] = {-1, -1}; /* async commits: in flight until a byte is written to gate[1] */
static bool in_flight;
static int completions;  /* async commits completed (committed or failed) */
static bool lose_answer; /* the next async commit commits, and reports a failure */
static bool in_doubt;    /* it did: commit_landed says 1, once */

static int fake_landed(rd_store *s)
{
    bool was = in_doubt;
    in_doubt = false;
    return was ? 1 : 0;
}

static int failing_commit(rd_store *s)
{
    if (fail_commits)
        return RD_EIO;
    int rc = g->real->commit(s);
    if (rc == 0)
        commits_done++;
    return rc;
}

/* A commit that completes when the test says so (a byte on the gate), like a database that
 * answers later; wait completes it at once. */
static int async_poll(rd_store *s, rd_store_wait *w, bool wait)
{
    char c;
    if (!in_flight)
        return 0;
    if (!wait && read(gate[0], &c, 1) != 1) {
        w->fd = gate[0];
        w->rd = true;
        return 1;
    }
    in_flight = false;
    completions++;
    int rc = failing_commit(s);
    if (rc == 0 && lose_answer) { /* committed, and the answer lost with the connection */
        lose_answer = false;
        in_doubt = true;
        return RD_EIO;
    }
    return rc;
}

static int async_start(rd_store *s, rd_store_wait *w)
{
    in_flight = true;
    return async_poll(s, w, false);
}

static int failing_append(rd_store *s, const char *run_id, const char *flow, const char *type,
                          int64_t ts, const char *data, int64_t item_seq, int64_t *out_id)
{
    if (fail_writes)
        return RD_EIO;
    return g->real->event_append(s, run_id, flow, type, ts, data, item_seq, out_id);
}

static int failing_update(rd_store *s, const rd_run *r)
{
    return fail_writes ? RD_EIO : g->real->run_update(s, r);
}

/* What a listener saw: ids, types, and how many commits had happened at the time. */
typedef struct seen {
    int n;
    int64_t ids[64];
    char types[64][32];
    int commits_at[64];
} seen;

static void on_event(const rd_pub_event *ev, void *arg)
{
    seen *s = arg;
    if (!ev->frame || s->n >= 64)
        return; /* watermark */
    s->ids[s->n] = ev->id;
    snprintf(s->types[s->n], sizeof s->types[0], "%s", ev->type);
    s->commits_at[s->n] = commits_done;
    s->n++;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char path[128], text[256], err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/test_commit.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(path, sizeof path, "%s/runsd.db", f->dir);
    assert_int_equal(rd_store_open_sqlite(path, NULL, &f->sqlite, err, sizeof err), 0);
    snprintf(text, sizeof text, "[store]\npath = %s\n[flow.a]\ncommand = /bin/true\n", path);
    if (rd_config_parse_string(text, "t.ini", &f->cfg, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    f->real = f->sqlite->ops;
    f->ops = *f->real;
    f->ops.commit = failing_commit;
    f->ops.event_append = failing_append;
    f->ops.run_update = failing_update;
    f->sqlite->ops = &f->ops;
    assert_int_equal(pipe(gate), 0);
    assert_int_equal(fcntl(gate[0], F_SETFL, O_NONBLOCK), 0);
    in_flight = false;
    f->store = rd_store_journal_wrap(f->sqlite);
    assert_non_null(f->store);
    f->base = event_base_new();
    g = f;
    commits_done = 0;
    fail_commits = fail_writes = lose_answer = in_doubt = false;
    f->rs = rd_runs_new(f->base, f->store, f->cfg);
    assert_non_null(f->rs);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fail_commits = fail_writes = false;
    rd_runs_free(f->rs);
    rd_store_close(f->store); /* closes the sqlite store under it */
    rd_config_free(f->cfg);
    event_base_free(f->base);
    close(gate[0]);
    close(gate[1]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int woken;
static void on_wake(void *arg)
{
    woken++;
}

static rd_active *new_run(fx *f)
{
    rd_apierr e;
    rd_active *act = NULL;
    rd_run_init in = {.flow = rd_config_flow(f->cfg, "a")};
    assert_int_equal(rd_runs_create(f->rs, &in, &act, &e), 0);
    return act;
}

static void test_published_after_commit_in_order(void **state)
{
    fx *f = *state;
    seen s = {0};
    assert_non_null(rd_runs_listen(f->rs, on_event, NULL, &s));
    rd_active *act = new_run(f);
    assert_int_equal(rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL), 0);
    rd_run_log(act, "info", "test", "hello");
    assert_int_equal(s.n, 0); /* appended, not committed: nobody has seen it */
    int before = commits_done;
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.types[0], "run.created");
    assert_string_equal(s.types[1], "run.status");
    assert_string_equal(s.types[2], "run.log");
    for (int i = 0; i < s.n; i++) {
        assert_int_equal(s.commits_at[i], before + 1); /* each seen after its commit */
        if (i > 0)
            assert_true(s.ids[i] > s.ids[i - 1]);
    }
}

static int count_cb(const rd_event *ev, void *arg)
{
    seen *s = arg;
    if (s->n < 64) {
        s->ids[s->n] = ev->id;
        snprintf(s->types[s->n], sizeof s->types[0], "%s", ev->type);
        s->n++;
    }
    return 0;
}

/* The run's stored events, read from SQLite itself (under the journal). */
static seen stored_events(fx *f, const char *run_id)
{
    seen s = {0};
    assert_int_equal(f->real->events_scan(f->sqlite, run_id, 0, 0, count_cb, &s), 0);
    return s;
}

/* A commit fails (and, in the second case, the writes before it too): nothing is published or
 * woken; when the store works again the batch is stored with the ids it had, then published. */
static void check_held_batch(fx *f, bool writes_fail)
{
    seen s = {0};
    rd_active *act = new_run(f);
    char id[RD_RUN_ID_MAX];
    snprintf(id, sizeof id, "%s", rd_active_run(act)->id);
    assert_int_equal(rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL), 0);
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_true(rd_runs_store_ok(f->rs));
    int stored_before = stored_events(f, id).n;
    void *l = rd_runs_listen(f->rs, on_event, NULL, &s);
    woken = 0;
    assert_non_null(rd_runs_watch(f->rs, id, on_wake, NULL));
    fail_commits = true;
    fail_writes = writes_fail;
    assert_int_equal(rd_run_transition(act, RD_ST_CANCELLED, RD_RS_USER_CANCELLED, NULL), 0);
    int64_t held_last = rd_active_run(act)->last_event_id;
    assert_int_not_equal(rd_runs_flush(f->rs), 0);
    assert_int_equal(s.n, 0);   /* not durable: not published */
    assert_int_equal(woken, 0); /* and the waiter is not told the run settled */
    assert_false(rd_runs_store_ok(f->rs));
    assert_int_equal(stored_events(f, id).n, stored_before); /* rolled back */
    assert_true(rd_store_journal_writes(f->store) > 0);
    fail_commits = fail_writes = false;
    /* Nothing else happens: the retry timer alone catches up. */
    struct timeval tv = {2, 0};
    event_base_loopexit(f->base, &tv);
    while (!rd_runs_store_ok(f->rs) && event_base_loop(f->base, EVLOOP_ONCE) == 0)
        ;
    assert_true(rd_runs_store_ok(f->rs));
    assert_int_equal(rd_store_journal_writes(f->store), 0);
    assert_int_equal(s.n, 2); /* run.status cancelled, run.end */
    assert_string_equal(s.types[0], "run.status");
    assert_string_equal(s.types[1], "run.end");
    assert_int_equal(s.ids[1], held_last); /* the ids given while the store failed */
    assert_int_equal(woken, 1);
    seen st = stored_events(f, id);
    assert_int_equal(st.n, stored_before + 2);
    assert_int_equal(st.ids[st.n - 2], s.ids[0]);
    assert_int_equal(st.ids[st.n - 1], s.ids[1]);
    rd_runs_unlisten(f->rs, l);
}

/* The journal's bound: told once when the bytes held pass it (writes are still kept: nothing
 * is dropped), once more when a commit empties it; reads meanwhile see the committed state. */
static int over_calls[2];
static void on_over(void *arg, bool over)
{
    over_calls[over]++;
}

static void test_journal_bound(void **state)
{
    fx *f = *state;
    rd_active *act = new_run(f);
    assert_int_equal(rd_runs_flush(f->rs), 0);
    const char *id = rd_active_run(act)->id;
    int stored_before = stored_events(f, id).n;
    over_calls[0] = over_calls[1] = 0;
    rd_store_journal_bound(f->store, 4096, on_over, NULL);
    fail_commits = true;
    int logs = 0;
    while (!rd_store_journal_over(f->store) && logs < 1000) {
        rd_run_log(act, "info", "test", "a line that the journal must hold");
        logs++;
        assert_int_not_equal(rd_runs_flush(f->rs), 0);
    }
    assert_true(rd_store_journal_over(f->store));
    assert_int_equal(over_calls[1], 1);
    assert_true(rd_store_journal_bytes(f->store) > 4096);
    rd_run_log(act, "info", "test", "past the bound: kept too");
    assert_int_not_equal(rd_runs_flush(f->rs), 0);
    assert_int_equal(over_calls[1], 1); /* told once */
    /* Reads through the journal see what is committed, not a half-replayed transaction. */
    seen s = {0};
    assert_int_equal(rd_store_events_scan(f->store, id, 0, 0, count_cb, &s), 0);
    assert_int_equal(s.n, stored_before);
    fail_commits = false;
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_false(rd_store_journal_over(f->store));
    assert_int_equal(over_calls[0], 1);
    assert_int_equal(rd_store_journal_bytes(f->store), 0);
    assert_int_equal(stored_events(f, id).n, stored_before + logs + 1);
    rd_store_journal_bound(f->store, 0, NULL, NULL);
}

static void test_failed_commit_holds_the_batch(void **state)
{
    check_held_batch(*state, false);
}

static void test_failed_writes_keep_their_ids(void **state)
{
    check_held_batch(*state, true);
}

static void test_unlisten(void **state)
{
    fx *f = *state;
    seen a = {0}, b = {0};
    void *la = rd_runs_listen(f->rs, on_event, NULL, &a);
    void *lb = rd_runs_listen(f->rs, on_event, NULL, &b);
    new_run(f);
    assert_int_equal(rd_runs_flush(f->rs), 0);
    rd_runs_unlisten(f->rs, la);
    new_run(f);
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 2);
    rd_runs_unlisten(f->rs, lb);
}

/* A gated listener that wants nothing gets only the watermark, never a formatted frame. */
static bool wants_none(void *arg, const char *id)
{
    return false;
}

static int64_t watermark;
static void on_mark(const rd_pub_event *ev, void *arg)
{
    assert_null(ev->frame);
    watermark = ev->id;
}

static void test_gate_sends_watermark(void **state)
{
    fx *f = *state;
    watermark = 0;
    void *l = rd_runs_listen(f->rs, on_mark, wants_none, NULL);
    rd_active *act = new_run(f);
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_int_equal(watermark, rd_active_run(act)->last_event_id);
    rd_runs_unlisten(f->rs, l);
}

/* Runs the loop until nothing is ready (a commit in flight waits on the gate). */
static void loop_idle(fx *f)
{
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* Lets the commit in flight complete, and the loop act on it (and start the next). */
static void complete_commit(fx *f)
{
    int before = completions;
    assert_true(in_flight);
    assert_int_equal(write(gate[1], "x", 1), 1);
    while (completions == before && event_base_loop(f->base, EVLOOP_ONCE) == 0)
        ;
    loop_idle(f);
}

/* The fake backend's commits made asynchronous, a listener recording into s (*l), and a new
 * run whose id is copied into id. */
static rd_active *async_run(fx *f, seen *s, void **l, char id[RD_RUN_ID_MAX])
{
    f->ops.commit_start = async_start;
    f->ops.commit_poll = async_poll;
    *l = rd_runs_listen(f->rs, on_event, NULL, s);
    rd_active *act = new_run(f);
    snprintf(id, RD_RUN_ID_MAX, "%s", rd_active_run(act)->id);
    return act;
}

/* The end of a loop iteration starts a commit and does not wait: what it carries is published,
 * and its settled run's watcher woken, only when it completes; what the loop writes meanwhile
 * is held for the next commit, numbered after it, and published after it. */
static void test_async_commit_publishes_on_completion(void **state)
{
    fx *f = *state;
    seen s = {0};
    char id[RD_RUN_ID_MAX];
    void *l;
    rd_active *act = async_run(f, &s, &l, id);
    assert_int_equal(rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL), 0);
    loop_idle(f); /* the iteration ends: the commit starts */
    assert_true(in_flight);
    assert_int_equal(s.n, 0); /* in flight: not durable, not published */
    /* Meanwhile: held in the journal, not in the store's transaction. */
    assert_int_equal(rd_run_transition(act, RD_ST_CANCELLED, RD_RS_USER_CANCELLED, NULL), 0);
    woken = 0;
    assert_non_null(rd_runs_watch(f->rs, id, on_wake, NULL));
    loop_idle(f);
    assert_int_equal(stored_events(f, id).n, 2); /* the later events are not in the store */
    complete_commit(f);                          /* the first completes; the second starts */
    assert_int_equal(s.n, 2);   /* run.created, run.status queued: the first commit's */
    assert_int_equal(woken, 0); /* its settled row is in the second */
    assert_true(in_flight);
    complete_commit(f);
    assert_false(in_flight);
    assert_int_equal(woken, 1);
    assert_int_equal(s.n, 4); /* run.status cancelled, run.end */
    seen st = stored_events(f, id);
    assert_int_equal(st.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(st.ids[i], s.ids[i]);
        if (i > 0)
            assert_true(s.ids[i] > s.ids[i - 1]);
    }
    rd_runs_unlisten(f->rs, l);
}

/* A commit in flight fails: nothing it carried nor anything held behind it is published; the
 * next commit stores both with the ids they were given, and publishes them in order.
 * rd_runs_flush waits for a commit in flight. */
static void test_async_commit_fails_in_flight(void **state)
{
    fx *f = *state;
    seen s = {0};
    char id[RD_RUN_ID_MAX];
    void *l;
    rd_active *act = async_run(f, &s, &l, id);
    loop_idle(f);
    assert_true(in_flight);
    rd_run_log(act, "info", "test", "held behind the commit in flight");
    int64_t held = rd_active_run(act)->last_event_id;
    assert_int_equal(stored_events(f, id).n, 1); /* run.created in flight; run.log held */
    fail_commits = true;
    complete_commit(f);
    assert_int_equal(s.n, 0);
    assert_false(rd_runs_store_ok(f->rs));
    assert_true(in_flight); /* the next, which writes the whole journal again */
    fail_commits = false;
    complete_commit(f);
    assert_true(rd_runs_store_ok(f->rs));
    assert_int_equal(s.n, 2);
    assert_string_equal(s.types[0], "run.created");
    assert_string_equal(s.types[1], "run.log");
    assert_int_equal(s.ids[1], held);
    assert_int_equal(stored_events(f, id).n, 2);
    /* A flush while a commit is in flight waits for it, then commits its own. */
    rd_run_log(act, "info", "test", "one");
    loop_idle(f);
    assert_true(in_flight);
    rd_run_log(act, "info", "test", "two");
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_false(in_flight);
    assert_int_equal(s.n, 4);
    assert_true(s.ids[3] > s.ids[2] && s.ids[2] > s.ids[1]);
    assert_int_equal(stored_events(f, id).n, 4);
    rd_runs_unlisten(f->rs, l);
}

/* rd_runs_after_commit: what a request that changed something, or reads the store, waits
 * for without holding the loop. */
typedef struct after_seen {
    seen *s;
    int calls, rc, published; /* at the call */
    bool in_flight;           /* a commit was in flight at the call */
} after_seen;

static void on_after(void *arg, int rc)
{
    after_seen *a = arg;
    a->calls++;
    a->rc = rc;
    a->published = a->s->n;
    a->in_flight = in_flight;
}

/* Called after the commit that carries every write made before the call (not the one in
 * flight then), after its publications and with no commit in flight; a failed one says so;
 * a cancelled call is never made. */
static void test_after_commit(void **state)
{
    fx *f = *state;
    seen s = {0};
    char id[RD_RUN_ID_MAX];
    void *l;
    rd_active *act = async_run(f, &s, &l, id);
    after_seen a = {.s = &s}, b = {.s = &s}, c = {.s = &s};
    loop_idle(f);
    assert_true(in_flight); /* run.created */
    rd_run_log(act, "info", "test", "held");
    assert_non_null(rd_runs_after_commit(f->rs, on_after, &a));
    complete_commit(f); /* run.created completes; the held run.log starts */
    assert_int_equal(s.n, 1);
    assert_int_equal(a.calls, 0);
    assert_true(in_flight);
    rd_run_log(act, "info", "test", "after b");
    assert_non_null(rd_runs_after_commit(f->rs, on_after, &b));
    void *hc = rd_runs_after_commit(f->rs, on_after, &c);
    assert_non_null(hc);
    rd_runs_after_commit_cancel(f->rs, hc);
    fail_commits = true;
    complete_commit(f); /* the run.log fails */
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.rc, RD_EIO);
    assert_false(a.in_flight);
    assert_int_equal(b.calls, 0);
    fail_commits = false;
    assert_true(in_flight); /* the journal again, with what b waits for */
    complete_commit(f);
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.published, 3); /* run.created, run.log, run.log: published first */
    assert_false(b.in_flight);
    assert_int_equal(a.calls, 1);
    assert_int_equal(c.calls, 0);
    /* Idle: a call schedules a commit, and is made when it completes. */
    after_seen d = {.s = &s};
    assert_non_null(rd_runs_after_commit(f->rs, on_after, &d));
    loop_idle(f);
    if (in_flight)
        complete_commit(f);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.rc, 0);
    rd_runs_unlisten(f->rs, l);
}

/* A commit whose answer was lost was committed after all (rd_store_commit_landed says so):
 * what it carried is not written again (no duplicate), what was held behind it is, and every
 * event is published once, in order, with the commit that succeeds next. */
static void test_commit_in_doubt_that_landed(void **state)
{
    fx *f = *state;
    seen s = {0};
    char id[RD_RUN_ID_MAX];
    void *l;
    rd_active *act = async_run(f, &s, &l, id);
    f->ops.commit_landed = fake_landed;
    loop_idle(f);
    assert_true(in_flight); /* run.created */
    rd_run_log(act, "info", "test", "held behind the commit in doubt");
    lose_answer = true;
    complete_commit(f);
    assert_int_equal(s.n, 0); /* failed as far as anyone knows: nothing published */
    assert_false(rd_runs_store_ok(f->rs));
    if (in_flight)
        complete_commit(f);
    else
        assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_false(in_doubt); /* the journal asked */
    assert_true(rd_runs_store_ok(f->rs));
    seen st = stored_events(f, id);
    assert_int_equal(st.n, 2); /* run.created once, run.log */
    assert_int_equal(s.n, 2);
    assert_string_equal(s.types[0], "run.created");
    assert_string_equal(s.types[1], "run.log");
    assert_int_equal(s.ids[0], st.ids[0]);
    assert_int_equal(s.ids[1], st.ids[1]);
    rd_runs_unlisten(f->rs, l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_published_after_commit_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_holds_the_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_writes_keep_their_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlisten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_sends_watermark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_commit_publishes_on_completion, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_commit_fails_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_in_doubt_that_landed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
