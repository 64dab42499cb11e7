/* test_commit.c: the commit pipeline (run/commit.c): events reach listeners only after the
 * commit that made them durable, in id order; a failed commit publishes nothing, wakes no
 * watcher and marks the store not ok until a commit succeeds again. A real SQLite store,
 * whose commit the test can make fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"
#include "run/runs.h"

typedef struct fx {
    struct event_base *base;
    rd_store *store;
    rd_config *cfg;
    rd_runs *rs;
    rd_store_ops ops; /* the store's table with commit wrapped */
    const rd_store_ops *real;
    char dir[64];
} fx;

static fx *g; /* for the commit wrapper, which gets only the store */
static int commits_done;
static bool fail_commits;

static int failing_commit(rd_store *s)
{
    if (fail_commits)
        return RD_EIO;
    int rc = g->real->commit(s);
    if (rc == 0)
        commits_done++;
    return rc;
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
    assert_int_equal(rd_store_open_sqlite(path, NULL, &f->store, err, sizeof err), 0);
    snprintf(text, sizeof text, "[store]\npath = %s\n[flow.a]\ncommand = /bin/true\n", path);
    if (rd_config_parse_string(text, "t.ini", &f->cfg, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    f->real = f->store->ops;
    f->ops = *f->real;
    f->ops.commit = failing_commit;
    f->store->ops = &f->ops;
    f->base = event_base_new();
    g = f;
    commits_done = 0;
    fail_commits = false;
    f->rs = rd_runs_new(f->base, f->store, f->cfg);
    assert_non_null(f->rs);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fail_commits = false;
    rd_runs_free(f->rs);
    f->store->ops = f->real;
    rd_store_close(f->store);
    rd_config_free(f->cfg);
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
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

static int woken;
static void on_wake(void *arg)
{
    woken++;
}

static void test_failed_commit_publishes_nothing(void **state)
{
    fx *f = *state;
    seen s = {0};
    rd_active *act = new_run(f);
    assert_int_equal(rd_run_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL), 0);
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_true(rd_runs_store_ok(f->rs));
    void *l = rd_runs_listen(f->rs, on_event, NULL, &s);
    woken = 0;
    assert_non_null(rd_runs_watch(f->rs, rd_active_run(act)->id, on_wake, NULL));
    assert_int_equal(rd_run_transition(act, RD_ST_CANCELLED, RD_RS_USER_CANCELLED, NULL), 0);
    fail_commits = true;
    assert_int_not_equal(rd_runs_flush(f->rs), 0);
    assert_int_equal(s.n, 0);   /* not durable: not published */
    assert_int_equal(woken, 0); /* and the waiter is not told the run settled */
    assert_false(rd_runs_store_ok(f->rs));
    fail_commits = false;
    rd_run_log(act, "info", "test", "after");
    assert_int_equal(rd_runs_flush(f->rs), 0);
    assert_true(rd_runs_store_ok(f->rs));
    /* Only the event of the batch that committed: the lost batch is not replayed. */
    assert_int_equal(s.n, 1);
    assert_string_equal(s.types[0], "run.log");
    rd_runs_unlisten(f->rs, l);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_published_after_commit_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_publishes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlisten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gate_sends_watermark, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
