/*
 * test_pgroup.c: the /proc/<pid>/stat parser, and the start-up sweep of the process groups a
 * crashed daemon left running: it kills a recorded group that is still ours, and leaves alone
 * one whose start time or boot id says the id now belongs to someone else.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/util.h"
#include "exec/pgroup.h"

static void test_parse(void **state)
{
    /* A command name with spaces and parentheses: only the last ')' ends it. */
    const char *s = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 "
                    "987654 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
    rd_pstat st;

    assert_int_equal(rd_pstat_parse(s, strlen(s), &st), 0);
    assert_int_equal(st.pid, 4242);
    assert_int_equal(st.state, 'S');
    assert_int_equal(st.ppid, 17);
    assert_int_equal(st.pgrp, 4242);
    assert_int_equal(st.start_ticks, 987654);
}

static void test_parse_refuses(void **state)
{
    const char *bad[] = {"", "12 (x", "12 (x) S 1 2 3",
                         "x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 "
                         "14 15 16 17 18 19 20"};
    const char *cut = "1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555";
    rd_pstat st;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(rd_pstat_parse(bad[i], strlen(bad[i]), &st), RD_EINVAL);
    /* len is honoured: no reading past it even without a NUL there */
    assert_int_equal(rd_pstat_parse(cut, strlen(cut), &st), 0);
    assert_int_equal(st.start_ticks, 555);
    assert_int_equal(rd_pstat_parse(cut, strlen(cut) - 4, &st), RD_EINVAL);
}

static void test_read_self(void **state)
{
    rd_pstat st;
    char boot[64];

    assert_int_equal(rd_pstat_read(getpid(), &st), 0);
    assert_int_equal(st.pid, getpid());
    assert_int_equal(st.pgrp, getpgrp());
    assert_true(st.start_ticks > 0);
    assert_int_equal(rd_boot_id(boot, sizeof boot), 0);
    assert_int_equal(strlen(boot), 36);
}

/* A child in a process group of its own, sleeping until killed. */
static pid_t spawn_group(void)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        setpgid(0, 0);
        execlp("sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    return pid;
}

static rd_store *open_store(void)
{
    rd_store_opts opts = {.allow_memory = true};
    rd_store *s = NULL;
    char err[256];

    assert_int_equal(rd_store_open_sqlite(":memory:", &opts, &s, err, sizeof err), 0);
    return s;
}

static int count_cb(const rd_pgroup *g, void *arg)
{
    (*(int *)arg)++;
    return 0;
}

static void test_sweep(void **state)
{
    rd_store *s = open_store();
    pid_t ours = spawn_group(), reused = spawn_group(), other_boot = spawn_group();
    rd_pstat st;
    char boot[64];
    int n = 0, status;

    assert_int_equal(rd_boot_id(boot, sizeof boot), 0);
    rd_pgroup_record(s, ours, "run_a");
    /* The id came round again: the recorded start time is not its leader's. */
    assert_int_equal(rd_pstat_read(reused, &st), 0);
    rd_pgroup g = {.pgid = reused, .start_ticks = st.start_ticks - 1, .boot_id = boot};
    assert_int_equal(rd_store_pgroup_put(s, &g), 0);
    /* Recorded before a reboot. */
    assert_int_equal(rd_pstat_read(other_boot, &st), 0);
    g = (rd_pgroup){.pgid = other_boot, .start_ticks = st.start_ticks, .boot_id = "old-boot"};
    assert_int_equal(rd_store_pgroup_put(s, &g), 0);
    /* Gone long ago. */
    g = (rd_pgroup){.pgid = 999999999, .start_ticks = 1, .boot_id = boot};
    assert_int_equal(rd_store_pgroup_put(s, &g), 0);
    assert_int_equal(rd_store_commit(s), 0);

    assert_int_equal(rd_pgroup_kill_leftovers(s, 3000), 0);
    /* Ours was killed (our own child: a zombie until we reap it), the others were not. */
    assert_int_equal(waitpid(ours, &status, 0), ours);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(waitpid(reused, &status, WNOHANG), 0);
    assert_int_equal(waitpid(other_boot, &status, WNOHANG), 0);
    assert_int_equal(rd_store_pgroups_scan(s, count_cb, &n), 0);
    assert_int_equal(n, 0); /* every record is forgotten */
    kill(reused, SIGKILL);
    kill(other_boot, SIGKILL);
    waitpid(reused, NULL, 0);
    waitpid(other_boot, NULL, 0);
    rd_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_read_self),
        cmocka_unit_test(test_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
