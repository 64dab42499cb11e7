/*
 * test_worker.c: rd_worker and rd_reaper against real /bin/sh workers on a real event_base.
 * No test sleeps: each dispatches the loop until its condition holds, under a safety timer
 * that fails the test when it fires first.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "base/util.h"
#include "exec/worker.h"

#define SAFETY_MS 30000

typedef struct fixture {
    struct event_base *base;
    rd_reaper *reaper;
} fixture;

/* What one worker did, as seen through its callbacks. */
typedef struct tw {
    rd_worker *w;
    bool check_seq; /* stdout lines must be 1, 2, 3... (not logged) */
    int64_t seq_bad;
    int n_lines, n_overlong, n_err, n_exit;
    int lines_at_exit, errs_at_exit;
    char out[4096]; /* "line|line|" with "<overlong>|" for dropped lines */
    char err[4096];
    rd_worker_exit ex;
    int64_t exit_ms;
    int free_at_line; /* rd_worker_free from inside on_line number N */
    int pause_at_line;
    int lines_at_resume; /* -1 until the paused worker is resumed */
    bool free_on_exit, free_on_stderr;
} tw;

static void logf_append(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s|", s);
}

static void t_on_line(void *arg, const char *line, size_t len)
{
    tw *t = arg;

    assert_int_equal(strlen(line), len);
    t->n_lines++;
    if (t->check_seq) {
        if (strtoll(line, NULL, 10) != t->n_lines)
            t->seq_bad++;
    } else {
        logf_append(t->out, sizeof(t->out), line);
    }
    if (t->n_lines == t->free_at_line) {
        rd_worker_free(t->w);
        t->w = NULL;
    }
    if (t->n_lines == t->pause_at_line)
        rd_worker_pause_output(t->w, true);
}

static void t_on_overlong(void *arg)
{
    tw *t = arg;

    t->n_overlong++;
    logf_append(t->out, sizeof(t->out), "<overlong>");
}

static void t_on_stderr(void *arg, const char *line, size_t len)
{
    tw *t = arg;

    assert_int_equal(strlen(line), len);
    t->n_err++;
    logf_append(t->err, sizeof(t->err), line);
    if (t->free_on_stderr) {
        rd_worker_free(t->w);
        t->w = NULL;
    }
}

static void t_on_exit(void *arg, const rd_worker_exit *ex)
{
    tw *t = arg;

    t->n_exit++;
    t->ex = *ex;
    t->exit_ms = rd_mono_ms();
    t->lines_at_exit = t->n_lines;
    t->errs_at_exit = t->n_err;
    if (t->free_on_exit) {
        rd_worker_free(t->w);
        t->w = NULL;
    }
}

static const rd_worker_cbs cbs = {t_on_line, t_on_overlong, t_on_stderr, t_on_exit, NULL};

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->reaper = rd_reaper_new(f->base);
    assert_non_null(f->reaper);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    rd_reaper_free(f->reaper);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void on_safety(evutil_socket_t fd, short what, void *arg)
{
    *(bool *)arg = true;
}

/* Dispatches until done(arg) or the safety timer; returns whether done(arg) held. */
static bool run_until(fixture *f, bool (*done)(void *), void *arg, int64_t timeout_ms)
{
    bool expired = false;
    struct event *t = evtimer_new(f->base, on_safety, &expired);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

    evtimer_add(t, &tv);
    while (!done(arg) && !expired)
        event_base_loop(f->base, EVLOOP_ONCE);
    event_free(t);
    return done(arg);
}

static bool exited(void *arg)
{
    return ((tw *)arg)->n_exit > 0;
}

static bool worker_gone(void *arg)
{
    return ((tw *)arg)->w == NULL;
}

static bool has_line(void *arg)
{
    return ((tw *)arg)->n_lines > 0;
}

static int spawn_spec(fixture *f, tw *t, rd_worker_spec *spec, char *err, size_t errlen)
{
    return rd_worker_spawn(f->base, f->reaper, spec, &cbs, t, &t->w, err, errlen);
}

static void spawn_sh(fixture *f, tw *t, const char *script, size_t max_line, size_t max_err)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    rd_worker_spec spec = {.argv = argv, .max_line = max_line, .max_stderr_line = max_err};
    char err[256] = "";

    assert_int_equal(spawn_spec(f, t, &spec, err, sizeof(err)), 0);
    assert_non_null(t->w);
}

static void finish(tw *t)
{
    rd_worker_free(t->w);
    t->w = NULL;
}

/* Processes whose parent is this process. A killed child counts until it is reaped: a bare
 * zombie count would miss one that is still dying and not yet a zombie. */
static int child_processes(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d))) {
        char path[300], buf[512], *p;
        FILE *fp;
        int ppid;
        char st;

        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
        if (!(fp = fopen(path, "r")))
            continue;
        p = fgets(buf, sizeof(buf), fp) ? strrchr(buf, ')') : NULL;
        if (p && sscanf(p + 1, " %c %d", &st, &ppid) == 2 && ppid == getpid())
            n++;
        fclose(fp);
    }
    closedir(d);
    return n;
}

static bool all_reaped(void *arg)
{
    return child_processes() == 0;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_stdout_lines_in_order(void **state)
{
    fixture *f = *state;
    tw t = {.check_seq = true};
    int64_t t0 = rd_mono_ms();

    spawn_sh(f, &t, "seq 1 100000", 0, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_int_equal(t.n_lines, 100000);
    assert_int_equal(t.seq_bad, 0);
    assert_int_equal(t.lines_at_exit, 100000);
    assert_int_equal(t.n_exit, 1);
    assert_true(t.ex.exited);
    assert_int_equal(t.ex.code, 0);
    assert_false(t.ex.signaled);
    assert_false(t.ex.we_signalled);
    assert_true(t.ex.peak_rss_kb > 0);
    /* Measured from the spawn to the exit: within the span the test saw from before the
     * spawn to its exit callback (same clock), and not 0 for 100000 lines through a pipe. */
    assert_true(t.ex.wall_ms > 0);
    assert_true(t.ex.wall_ms <= t.exit_ms - t0);
    finish(&t);
}

static void test_final_line_and_stderr_before_exit(void **state)
{
    fixture *f = *state;
    tw t = {0};

    spawn_sh(f, &t, "printf 'a\\nb'; printf 'e1\\ne2' >&2", 0, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_string_equal(t.out, "a|b|");
    assert_string_equal(t.err, "e1|e2|");
    assert_int_equal(t.lines_at_exit, 2);
    assert_int_equal(t.errs_at_exit, 2);
    finish(&t);
}

static void test_stderr_held_by_grandchild(void **state)
{
    fixture *f = *state;
    tw t = {0};
    pid_t pgid;

    /* stderr never reaches EOF here, yet its unterminated last line is delivered at the
     * exit, and the exit does not wait for stderr (only stdout has a drain deadline). */
    spawn_sh(f, &t, "sleep 30 >/dev/null & printf 'done\\nno newline' >&2", 0, 0);
    pgid = rd_worker_pid(t.w);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_string_equal(t.err, "done|no newline|");
    assert_int_equal(t.errs_at_exit, 2);
    assert_true(t.ex.wall_ms < 1500);
    finish(&t);
    kill(-pgid, SIGKILL);
}

static void test_stderr_lines_cut(void **state)
{
    fixture *f = *state;
    tw t = {0};

    /* The 200 kB line spans several reads, so the discard state must survive between them. */
    spawn_sh(f, &t,
             "printf '0123456789abcdef\\nshort\\n' >&2;"
             "head -c 200000 /dev/zero | tr '\\0' x >&2; printf '\\ntail\\n' >&2",
             0, 8);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_string_equal(t.err, "01234567|short|xxxxxxxx|tail|");
    finish(&t);
}

static void test_stdin_round_trip(void **state)
{
    fixture *f = *state;
    tw t = {.check_seq = true};
    char line[32];

    /* 20000 lines are more than a pipe holds: writes hit EAGAIN and resume from the loop. */
    spawn_sh(f, &t, "exec cat", 0, 0);
    for (int i = 1; i <= 20000; i++) {
        int n = snprintf(line, sizeof(line), "%d", i);
        assert_int_equal(rd_worker_send_line(t.w, line, (size_t)n), 0);
    }
    rd_worker_close_stdin(t.w);
    assert_int_equal(rd_worker_send_line(t.w, "late", 4), RD_ERR);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_int_equal(t.n_lines, 20000);
    assert_int_equal(t.seq_bad, 0);
    assert_true(t.ex.exited);
    assert_int_equal(t.ex.code, 0);
    finish(&t);
}

static void test_exit_code_and_rusage(void **state)
{
    fixture *f = *state;
    tw t = {0};

    spawn_sh(f, &t, "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exit 3", 0, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_true(t.ex.exited);
    assert_int_equal(t.ex.code, 3);
    assert_false(t.ex.signaled);
    assert_false(t.ex.we_signalled);
    assert_true(t.ex.cpu_user_ms + t.ex.cpu_sys_ms > 0);
    assert_true(t.ex.peak_rss_kb > 0);
    assert_true(t.ex.wall_ms > 0);
    /* Stopping a worker that is already over does nothing, and nothing fires twice. */
    rd_worker_stop(t.w, 0);
    assert_false(t.ex.we_signalled);
    assert_int_equal(t.n_exit, 1);
    finish(&t);
}

static void test_self_kill_is_not_ours(void **state)
{
    fixture *f = *state;
    tw t = {0};

    spawn_sh(f, &t, "kill -9 $$", 0, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_false(t.ex.exited);
    assert_true(t.ex.signaled);
    assert_int_equal(t.ex.sig, SIGKILL);
    assert_false(t.ex.we_signalled);
    finish(&t);
}

static void test_stop_sigterm(void **state)
{
    fixture *f = *state;
    tw t = {0};
    int64_t t0;

    spawn_sh(f, &t, "echo ready; exec sleep 100", 0, 0);
    assert_true(run_until(f, has_line, &t, SAFETY_MS));
    t0 = rd_mono_ms();
    rd_worker_stop(t.w, 10000);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_true(t.ex.signaled);
    assert_int_equal(t.ex.sig, SIGTERM);
    assert_true(t.ex.we_signalled);
    assert_true(t.exit_ms - t0 < 5000);
    finish(&t);
}

static void test_stop_escalates_to_sigkill(void **state)
{
    fixture *f = *state;
    tw t = {0};
    int64_t t0, took;

    /* The ignored TERM is inherited by sleep too, so only the SIGKILL ends the group. */
    spawn_sh(f, &t, "trap '' TERM; echo ready; sleep 100", 0, 0);
    assert_true(run_until(f, has_line, &t, SAFETY_MS));
    t0 = rd_mono_ms();
    rd_worker_stop(t.w, 300);
    rd_worker_stop(t.w, 300);   /* idempotent */
    rd_worker_stop(t.w, 60000); /* never postpones the kill */
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    took = t.exit_ms - t0;
    assert_true(t.ex.signaled);
    assert_int_equal(t.ex.sig, SIGKILL);
    assert_true(t.ex.we_signalled);
    assert_true(took >= 250);
    assert_true(took < 3000);
    assert_int_equal(t.n_exit, 1);
    finish(&t);
}

static void test_spawn_failures(void **state)
{
    fixture *f = *state;
    tw bad = {0}, ok = {0};
    char *missing[] = {"runsd-no-such-command", NULL};
    char *absent[] = {"/nonexistent/bin/x", NULL};
    char *truecmd[] = {"true", NULL};
    rd_worker_spec spec = {.argv = missing};
    char err[256] = "";

    assert_int_equal(spawn_spec(f, &bad, &spec, err, sizeof(err)), RD_ERR);
    assert_string_equal(err, "exec 'runsd-no-such-command': No such file or directory");
    assert_null(bad.w);
    spec.argv = absent;
    assert_int_equal(spawn_spec(f, &bad, &spec, err, sizeof(err)), RD_ERR);
    assert_string_equal(err, "exec '/nonexistent/bin/x': No such file or directory");
    spec.argv = truecmd;
    spec.cwd = "/nonexistent-dir";
    assert_int_equal(spawn_spec(f, &bad, &spec, err, sizeof(err)), RD_ERR);
    assert_string_equal(err, "chdir '/nonexistent-dir': No such file or directory");

    /* A good worker runs to the end; the failed ones never call back and are reaped. */
    spec.cwd = NULL;
    assert_int_equal(spawn_spec(f, &ok, &spec, err, sizeof(err)), 0);
    assert_true(run_until(f, exited, &ok, SAFETY_MS));
    assert_true(run_until(f, all_reaped, NULL, SAFETY_MS));
    assert_int_equal(bad.n_exit + bad.n_lines + bad.n_err + bad.n_overlong, 0);
    finish(&ok);
}

static void test_child_fds_signals_pgid(void **state)
{
    fixture *f = *state;
    tw t = {0};
    int leak[2], devnull, top;
    sigset_t usr2, old;
    char script[1024], expect[256];
    size_t n;

    /* Inheritable fds in the parent, and a blocked signal: none may reach the child. */
    assert_int_equal(pipe(leak), 0);
    devnull = open("/dev/null", O_RDONLY);
    assert_true(devnull >= 0);
    top = devnull + 4;
    n = (size_t)snprintf(script, sizeof(script), "for i in");
    for (int i = 0; i <= top; i++)
        n += (size_t)snprintf(script + n, sizeof(script) - n, " %d", i);
    snprintf(script + n, sizeof(script) - n,
             "; do [ -L /proc/$$/fd/$i ] && echo fd$i; done;"
             " echo pgid $(cut -d' ' -f5 /proc/$$/stat);"
             " grep -E '^(SigIgn|SigBlk)' /proc/$$/status | tr -d '\\t'");
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, &old);
    spawn_sh(f, &t, script, 0, 0);
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(leak[0]);
    close(leak[1]);
    close(devnull);

    assert_true(run_until(f, exited, &t, SAFETY_MS));
    snprintf(expect, sizeof(expect),
             "fd0|fd1|fd2|pgid %d|SigBlk:0000000000000000|SigIgn:0000000000000000|",
             (int)rd_worker_pid(t.w));
    assert_string_equal(t.out, expect);
    assert_int_equal(t.ex.code, 0);
    finish(&t);
}

static void test_overlong_stdout_line(void **state)
{
    fixture *f = *state;
    tw t = {0};

    spawn_sh(f, &t,
             "printf 'short\\n'; head -c 100000 /dev/zero | tr '\\0' y;"
             " printf '\\nafter\\nexactly16bytes!!\\ntail'",
             16, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_string_equal(t.out, "short|<overlong>|after|exactly16bytes!!|tail|");
    assert_int_equal(t.n_overlong, 1);
    finish(&t);
}

static void test_env_and_cwd(void **state)
{
    fixture *f = *state;
    tw t = {0};
    char *argv[] = {"/bin/sh", "-c",
                    "echo \"$RUNSD_T_A\"; echo \"$RUNSD_T_B\"; pwd; env | grep -c '^RUNSD_T_B='",
                    NULL};
    char *extra[] = {"RUNSD_T_A=hello", "RUNSD_T_B=new", NULL};
    rd_worker_spec spec = {.argv = argv, .env_extra = extra, .cwd = "/"};
    char err[256] = "";

    setenv("RUNSD_T_B", "old", 1);
    assert_int_equal(spawn_spec(f, &t, &spec, err, sizeof(err)), 0);
    unsetenv("RUNSD_T_B");
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_string_equal(t.out, "hello|new|/|1|");
    finish(&t);
}

static void test_free_inside_on_line(void **state)
{
    fixture *f = *state;
    tw t = {.check_seq = true, .free_at_line = 5}, other = {0};

    /* Freed with many more lines already buffered from the same read. */
    spawn_sh(f, &t, "seq 1 100000; exec sleep 100", 0, 0);
    assert_true(run_until(f, has_line, &t, SAFETY_MS));
    assert_null(t.w);
    spawn_sh(f, &other, "printf 'x\\n'", 0, 0);
    assert_true(run_until(f, exited, &other, SAFETY_MS));
    assert_true(run_until(f, all_reaped, NULL, SAFETY_MS));
    assert_int_equal(t.n_lines, 5);
    assert_int_equal(t.n_exit, 0);
    finish(&other);
}

static void test_free_inside_on_exit(void **state)
{
    fixture *f = *state;
    tw t = {.free_on_exit = true}, other = {0};

    spawn_sh(f, &t, "echo x; echo y >&2", 0, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_null(t.w);
    spawn_sh(f, &other, "true", 0, 0);
    assert_true(run_until(f, exited, &other, SAFETY_MS));
    assert_int_equal(t.n_exit, 1);
    assert_string_equal(t.out, "x|");
    finish(&other);
}

static void test_free_inside_on_stderr_and_live(void **state)
{
    fixture *f = *state;
    tw t = {.free_on_stderr = true}, live = {0};

    /* Both children are still running when freed: SIGKILLed and reaped in the background. */
    spawn_sh(f, &t, "echo oops >&2; echo more >&2; exec sleep 100", 0, 0);
    spawn_sh(f, &live, "exec sleep 100", 0, 0);
    rd_worker_send_line(live.w, "pending", 7);
    finish(&live);
    assert_true(run_until(f, worker_gone, &t, SAFETY_MS));
    assert_true(run_until(f, all_reaped, NULL, SAFETY_MS));
    assert_int_equal(t.n_err, 1);
    assert_int_equal(t.n_exit, 0);
    assert_int_equal(live.n_exit, 0);
}

/* A grandchild in the worker's process group is SIGKILLed when the worker exits: it no longer
 * holds stdout open until the drain deadline, and it does not outlive the attempt. */
static void test_grandchild_holds_stdout(void **state)
{
    fixture *f = *state;
    tw t = {0};
    int64_t t0 = rd_mono_ms();
    pid_t pgid;

    spawn_sh(f, &t, "sleep 30 & echo hi; exit 0", 0, 0);
    pgid = rd_worker_pid(t.w);
    assert_true(run_until(f, exited, &t, 6000));
    assert_true(t.exit_ms - t0 < 1500);
    assert_string_equal(t.out, "hi|");
    assert_true(t.ex.exited);
    assert_int_equal(t.ex.code, 0);
    assert_false(t.ex.we_signalled);
    finish(&t);
    /* The group is gone once init has reaped the killed sleep. */
    for (int i = 0; i < 500 && kill(-pgid, 0) == 0; i++)
        usleep(10 * 1000);
    assert_int_equal(kill(-pgid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* A grandchild that left the group (setsid) is out of the group kill's reach: the drain
 * deadline still bounds the wait for its copy of stdout. */
static void test_detached_grandchild_holds_stdout(void **state)
{
    fixture *f = *state;
    tw t = {0};
    int64_t t0;
    char path[64], cmd[512];
    FILE *pf;
    int gpid = 0;

    /* The worker waits until the grandchild is in its own session before it exits. */
    snprintf(path, sizeof path, "/tmp/runsd-test-detached.%d", (int)getpid());
    unlink(path);
    snprintf(cmd, sizeof cmd,
             "setsid sh -c 'echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 30' &"
             " while [ ! -s %s ]; do sleep 0.01; done; echo hi",
             path, path, path, path);
    t0 = rd_mono_ms();
    spawn_sh(f, &t, cmd, 0, 0);
    assert_true(run_until(f, exited, &t, 6000));
    assert_true(t.exit_ms - t0 >= 1500);
    assert_true(t.exit_ms - t0 < 4000);
    assert_string_equal(t.out, "hi|");
    finish(&t);
    pf = fopen(path, "r");
    assert_non_null(pf);
    assert_int_equal(fscanf(pf, "%d", &gpid), 1);
    fclose(pf);
    unlink(path);
    kill(gpid, SIGKILL); /* ours: it was started by this test's worker */
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    tw *t = arg;

    t->lines_at_resume = t->n_lines;
    rd_worker_pause_output(t->w, false);
}

static void test_pause_output(void **state)
{
    fixture *f = *state;
    tw t = {.check_seq = true, .pause_at_line = 10, .lines_at_resume = -1};
    struct timeval tv = {0, 100 * 1000};

    /* All 1000 lines arrive in one read; the pause must hold back the rest of it, and the
     * exit that happens meanwhile must wait for them. */
    spawn_sh(f, &t, "seq 1 1000", 0, 0);
    assert_true(run_until(f, has_line, &t, SAFETY_MS));
    event_base_once(f->base, -1, EV_TIMEOUT, on_resume, &t, &tv);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_int_equal(t.lines_at_resume, 10);
    assert_int_equal(t.n_lines, 1000);
    assert_int_equal(t.seq_bad, 0);
    assert_int_equal(t.lines_at_exit, 1000);
    finish(&t);
}

static void test_stdin_limit(void **state)
{
    fixture *f = *state;
    tw t = {0};
    size_t len = 1024 * 1024 - 1;
    char *big = malloc(len);
    int accepted = 0;

    /* Nothing is written until the loop runs, so exactly 16 MiB fit. */
    assert_non_null(big);
    memset(big, 'z', len);
    spawn_sh(f, &t, "exec sleep 100", 0, 0);
    while (accepted < 100 && rd_worker_send_line(t.w, big, len) == 0)
        accepted++;
    free(big);
    assert_int_equal(accepted, 16);
    assert_int_equal(rd_worker_stdin_pending(t.w), 16 * 1024 * 1024);
    rd_worker_stop(t.w, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_true(t.ex.we_signalled);
    assert_true(t.ex.signaled);
    finish(&t);
}

static bool stdin_refused(void *arg)
{
    tw *t = arg;
    static const char chunk[4096] = {'q'};

    return rd_worker_send_line(t->w, chunk, 1000) < 0;
}

static bool two_lines(void *arg)
{
    return ((tw *)arg)->n_lines >= 2;
}

static void test_stdin_epipe(void **state)
{
    fixture *f = *state;
    tw t = {0};

    /* The worker closes its stdin: writes fail with EPIPE (SIGPIPE is ignored, as in the
     * daemon), the pending input is dropped and stdin reports closed. */
    spawn_sh(f, &t, "read x; echo \"got $x\"; exec 0<&-; echo closed; exec sleep 100", 0, 0);
    assert_int_equal(rd_worker_send_line(t.w, "hello", 5), 0);
    assert_true(run_until(f, two_lines, &t, SAFETY_MS));
    assert_string_equal(t.out, "got hello|closed|");
    assert_true(run_until(f, stdin_refused, &t, SAFETY_MS));
    rd_worker_stop(t.w, 5000);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_true(t.ex.signaled);
    assert_int_equal(t.ex.sig, SIGTERM);
    finish(&t);
}

static bool all_exited(void *arg)
{
    tw *t = arg;

    for (int i = 0; i < 8; i++)
        if (t[i].n_exit == 0)
            return false;
    return true;
}

/* The worker's peak is its own, not the daemon's: with a 96 MiB daemon image (this test
 * process), a shell that sleeps reports a few MiB. ru_maxrss alone would report >= 96 MiB. */
static void test_peak_rss_is_the_workers(void **state)
{
    fixture *f = *state;
    tw t = {0};
    size_t big = 96u << 20;
    char *ballast = malloc(big);
    assert_non_null(ballast);
    memset(ballast, 1, big); /* resident, so a copy of this image would count it */
    spawn_sh(f, &t, "sleep 0.35", 0, 0);
    assert_true(run_until(f, exited, &t, SAFETY_MS));
    assert_true(t.ex.exited);
    assert_true(t.ex.peak_rss_kb > 0);
    assert_true(t.ex.peak_rss_kb < 32 * 1024);
    free(ballast);
    finish(&t);
}

static void test_many_workers(void **state)
{
    fixture *f = *state;
    tw t[8];
    char script[64], line[8];

    memset(t, 0, sizeof(t));
    for (int i = 0; i < 8; i++) {
        snprintf(script, sizeof(script), "echo %d; exit %d", i, i);
        spawn_sh(f, &t[i], script, 0, 0);
    }
    assert_true(run_until(f, all_exited, t, SAFETY_MS));
    for (int i = 0; i < 8; i++) {
        snprintf(line, sizeof(line), "%d|", i);
        assert_string_equal(t[i].out, line);
        assert_int_equal(t[i].ex.code, i);
        assert_int_equal(t[i].n_exit, 1);
        finish(&t[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stdout_lines_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_line_and_stderr_before_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_held_by_grandchild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_lines_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_code_and_rusage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_self_kill_is_not_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_escalates_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spawn_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_fds_signals_pgid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlong_stdout_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_and_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_on_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_on_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_on_stderr_and_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grandchild_holds_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detached_grandchild_holds_stdout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin_epipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peak_rss_is_the_workers, setup, teardown),
    };

    /* As the daemon does: a worker closing its stdin must not kill us. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
