/*
 * worker.c: one child process driven by the libevent loop.
 *
 * A worker owns its process (own process group, only fds 0-2 inherited), the parent ends of
 * three non-blocking pipes, a kill timer, a stdout drain deadline and a "kick" event used to
 * run delivery later instead of from inside an API call. The reaper owns the only hook that
 * is process-wide: one SIGCHLD signal event per event_base, which polls each of its own
 * children with wait4(WNOHANG), so no other child of the daemon is ever reaped by accident.
 *
 * Owner callbacks run only from this file's event handlers, never from an API call, and each
 * handler brackets them with worker_enter/worker_leave. rd_worker_free inside a callback only
 * marks the worker; the outermost handler frees it on its way out (Redis' freeClientAsync),
 * and every delivery loop stops as soon as the mark is set, so nothing touches freed memory
 * and no callback follows a free.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "exec/proto.h"
#include "base/util.h"
#include "exec/cgroup.h"
#include "exec/worker.h"
#include "exec/worker_spawn.h"

/* One read per wakeup and pipe, so a chatty worker cannot starve the rest of the loop. */
#define RD_READ_MAX (64 * 1024)
/* Lines handed up per loop iteration: the owner commits and publishes between batches, so a
 * worker that writes fast cannot put more than this in one commit (or in one burst to SSE
 * readers, whose backpressure can then pause it between batches). */
#define RD_PUMP_BATCH 512
#define RD_STDIN_MAX ((size_t)16 * 1024 * 1024)
#define RD_STDOUT_LINE_DEFAULT ((size_t)1024 * 1024)
#define RD_STDERR_LINE_DEFAULT ((size_t)4096)
/* How long stdout may stay open after the child is reaped (a grandchild holding it). */
#define RD_DRAIN_MS 2000
/* Bound on the final stderr read, in case a grandchild keeps writing to it. */
#define RD_STDERR_DRAIN_MAX ((size_t)1024 * 1024)

struct rd_reaper {
    struct event_base *base;
    struct event *sigchld;
    rd_worker *live;     /* workers whose child is not reaped yet */
    rd_cgroups *cgroups; /* borrowed; NULL: no process limits */
    pid_t *orphans;      /* children of freed workers, SIGKILLed, still to be reaped */
    size_t n_orphans, cap_orphans;
};

struct rd_worker {
    struct event_base *base;
    rd_reaper *reaper;
    rd_worker *prev, *next; /* in reaper->live while linked */
    bool linked;
    pid_t pid;
    rd_cgroup *cg; /* the worker's process-limit cgroup until released after the reap */
    rd_worker_cbs cbs;
    void *arg;
    int64_t spawn_ms;

    int in_fd; /* -1 once closed; likewise out_fd and err_fd */
    struct event *in_ev;
    struct evbuffer *in_buf;
    bool in_closing; /* close once in_buf is flushed */

    int out_fd;
    struct event *out_ev;
    struct evbuffer *out_buf;
    rd_linereader lr;
    bool out_done; /* EOF seen and every line delivered */
    bool paused;
    bool batched; /* the pump yielded after RD_PUMP_BATCH lines; stdout waits for the kick */

    int err_fd;
    struct event *err_ev;
    struct evbuffer *err_buf;
    char *err_line; /* err_max + 1 bytes, the NUL-terminated line handed to on_stderr */
    size_t err_max;
    bool err_skipping; /* inside an overlong stderr line: discard up to its newline */

    struct event *kill_ev;  /* SIGKILL after the stop grace */
    struct event *drain_ev; /* stdout deadline after the reap */
    struct event *kick_ev;  /* deferred delivery pass */
    struct event *hwm_ev;   /* samples the child's VmHWM while it lives */
    int64_t hwm_kb;         /* highest VmHWM seen, 0 when never sampled */
    bool stopping;
    int64_t kill_deadline;

    bool reaped;
    bool exit_fired;
    rd_worker_exit ex;

    int depth;  /* handlers of this worker on the stack */
    bool freed; /* rd_worker_free was called while depth > 0 */
};

static void worker_destroy(rd_worker *w);

static struct timeval ms_tv(int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

static int64_t tv_ms(const struct timeval *tv)
{
    return (int64_t)tv->tv_sec * 1000 + tv->tv_usec / 1000;
}

/* ---- reaper ---------------------------------------------------------------------------- */

static void reaper_link(rd_reaper *r, rd_worker *w)
{
    w->prev = NULL;
    w->next = r->live;
    if (r->live)
        r->live->prev = w;
    r->live = w;
    w->linked = true;
}

static void reaper_unlink(rd_worker *w)
{
    if (!w->linked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->reaper->live = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->linked = false;
}

static int reaper_add_orphan(rd_reaper *r, pid_t pid)
{
    if (r->n_orphans == r->cap_orphans) {
        size_t cap = r->cap_orphans ? r->cap_orphans * 2 : 8;
        pid_t *p = realloc(r->orphans, cap * sizeof(*p));
        if (!p)
            return RD_ERR;
        r->orphans = p;
        r->cap_orphans = cap;
    }
    r->orphans[r->n_orphans++] = pid;
    return 0;
}

static void reaper_reap_orphans(rd_reaper *r)
{
    size_t keep = 0;

    for (size_t i = 0; i < r->n_orphans; i++) {
        pid_t p = waitpid(r->orphans[i], NULL, WNOHANG);
        if (p == 0 || (p < 0 && errno == EINTR))
            r->orphans[keep++] = r->orphans[i];
    }
    r->n_orphans = keep;
}

static void worker_release_cgroup(rd_worker *w)
{
    rd_cgroup_release(w->reaper ? w->reaper->cgroups : NULL, w->cg);
    w->cg = NULL;
}

/* Records the end of the child. No owner callback runs here: the reaper is iterating its
 * list, so delivery and on_exit are left to the worker's kick event. */
static void worker_on_reaped(rd_worker *w, const int *status, const struct rusage *ru)
{
    rd_worker_exit *ex = &w->ex;

    reaper_unlink(w);
    w->reaped = true;
    /* The group was SIGKILLed before the reap; the cgroup goes once its last member has. */
    worker_release_cgroup(w);
    if (status && WIFEXITED(*status)) {
        ex->exited = true;
        ex->code = WEXITSTATUS(*status);
    } else if (status && WIFSIGNALED(*status)) {
        ex->signaled = true;
        ex->sig = WTERMSIG(*status);
    }
    ex->we_signalled = w->stopping;
    ex->cpu_user_ms = tv_ms(&ru->ru_utime);
    ex->cpu_sys_ms = tv_ms(&ru->ru_stime);
    /* The sampled VmHWM when there is one; a child that exited before the first sample falls
     * back to ru_maxrss, which over-states it (see worker_sample_hwm). */
    ex->peak_rss_kb = w->hwm_kb > 0 ? w->hwm_kb : ru->ru_maxrss;
    if (w->hwm_ev)
        event_del(w->hwm_ev);
    ex->wall_ms = rd_mono_ms() - w->spawn_ms;
    event_del(w->kill_ev);
    if (w->out_fd >= 0 && !w->paused) {
        struct timeval tv = ms_tv(RD_DRAIN_MS);
        evtimer_add(w->drain_ev, &tv);
    }
    event_active(w->kick_ev, EV_TIMEOUT, 1);
}

/* The child has exited but is not reaped yet: SIGKILL what is left of its process group
 * (helpers it started, "sleep 300 &" holding stdout), so nothing of an attempt outlives it.
 * Done before wait4, while the zombie pins the pid: once reaped, the id could be reused and
 * the kill would hit a stranger's group. The group is the worker's alone (setpgid in the
 * child), so a worker that exits normally loses nothing; a grandchild that left the group
 * (setsid) is out of reach and only the stdout drain deadline bounds the wait for it. */
static void worker_kill_leftovers(rd_worker *w)
{
    siginfo_t si;
    int rc;

    memset(&si, 0, sizeof(si));
    do
        rc = waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG | WNOWAIT);
    while (rc < 0 && errno == EINTR);
    if (rc == 0 && si.si_pid == w->pid)
        kill(-w->pid, SIGKILL);
}

static void worker_try_reap(rd_worker *w)
{
    struct rusage ru;
    int status;
    pid_t p;

    worker_kill_leftovers(w);
    memset(&ru, 0, sizeof(ru));
    do
        p = wait4(w->pid, &status, WNOHANG, &ru);
    while (p < 0 && errno == EINTR);
    if (p == 0)
        return;
    if (p < 0) {
        /* ECHILD: something else reaped our child (SIGCHLD set to SIG_IGN?). Report an
         * unknown end rather than leave the owner waiting forever. */
        rd_log_warn("worker %d: wait4: %s", (int)w->pid, strerror(errno));
        memset(&ru, 0, sizeof(ru));
        worker_on_reaped(w, NULL, &ru);
        return;
    }
    worker_on_reaped(w, &status, &ru);
}

static void reaper_on_sigchld(evutil_socket_t sig, short what, void *arg)
{
    rd_reaper *r = arg;
    rd_worker *next;

    /* SIGCHLDs coalesce, so every registered child is polled on each one. */
    for (rd_worker *w = r->live; w; w = next) {
        next = w->next;
        worker_try_reap(w);
    }
    reaper_reap_orphans(r);
}

rd_reaper *rd_reaper_new(struct event_base *base)
{
    rd_reaper *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->base = base;
    r->sigchld = evsignal_new(base, SIGCHLD, reaper_on_sigchld, r);
    if (!r->sigchld || evsignal_add(r->sigchld, NULL) < 0) {
        rd_reaper_free(r);
        return NULL;
    }
    return r;
}

void rd_reaper_set_cgroups(rd_reaper *r, rd_cgroups *cs)
{
    r->cgroups = cs;
}

void rd_reaper_free(rd_reaper *r)
{
    if (!r)
        return;
    if (r->live)
        rd_log_warn("reaper freed while workers are still registered");
    /* Detach stragglers so their own free does not touch the reaper. */
    while (r->live) {
        rd_worker *w = r->live;
        worker_release_cgroup(w);
        reaper_unlink(w);
        w->reaper = NULL;
    }
    /* Last chance for SIGKILLed orphans that died meanwhile; the rest go to init when the
     * daemon exits. Blocking here would stall shutdown on a process in D state. */
    reaper_reap_orphans(r);
    if (r->sigchld)
        event_free(r->sigchld);
    free(r->orphans);
    free(r);
}

/* ---- I/O ------------------------------------------------------------------------------- */

/* One read of at most max bytes. >0 bytes read, 0 end of file, -1 error (errno set). */
static ssize_t read_some(struct evbuffer *buf, int fd, size_t max)
{
    struct evbuffer_iovec v[2];
    struct iovec iov[2];
    ssize_t n;
    int nv = evbuffer_reserve_space(buf, (ev_ssize_t)max, v, 2);

    if (nv <= 0) {
        errno = ENOMEM;
        return -1;
    }
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    do
        n = readv(fd, iov, nv);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n;
    if ((size_t)n <= v[0].iov_len) {
        v[0].iov_len = (size_t)n;
        nv = 1;
    } else {
        v[1].iov_len = (size_t)n - v[0].iov_len;
    }
    evbuffer_commit_space(buf, v, nv);
    return n;
}

/* Closing an fd must remove its event first, or epoll keeps a stale registration. */
static void close_io(struct event **ev, int *fd)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void worker_close_stdin_now(rd_worker *w)
{
    close_io(&w->in_ev, &w->in_fd);
    evbuffer_drain(w->in_buf, evbuffer_get_length(w->in_buf));
}

static void worker_on_stdin(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;

    if (evbuffer_get_length(w->in_buf) > 0 && evbuffer_write(w->in_buf, w->in_fd) < 0 &&
        errno != EAGAIN && errno != EINTR) {
        /* EPIPE and the like: the worker stopped reading. Its pending input is moot. */
        worker_close_stdin_now(w);
        return;
    }
    if (evbuffer_get_length(w->in_buf) == 0) {
        event_del(w->in_ev);
        if (w->in_closing)
            worker_close_stdin_now(w);
        else if (w->cbs.on_stdin_drained)
            w->cbs.on_stdin_drained(w->arg);
    }
}

static void worker_read_stdout(rd_worker *w)
{
    ssize_t n;

    if (w->out_fd < 0)
        return;
    n = read_some(w->out_buf, w->out_fd, RD_READ_MAX);
    if (n > 0 || (n < 0 && errno == EAGAIN))
        return;
    close_io(&w->out_ev, &w->out_fd); /* EOF, or an error that means the same to us */
}

/* Hands complete stderr lines (cut to err_max) to the owner; with at_eof the unterminated
 * rest too. Stops as soon as the owner frees the worker. */
static void worker_stderr_lines(rd_worker *w, bool at_eof)
{
    struct evbuffer *b = w->err_buf;
    size_t n, take, drop;

    while (!w->freed && (n = evbuffer_get_length(b)) > 0) {
        struct evbuffer_ptr nl = evbuffer_search(b, "\n", 1, NULL);
        if (w->err_skipping) {
            evbuffer_drain(b, nl.pos < 0 ? n : (size_t)nl.pos + 1);
            w->err_skipping = nl.pos < 0 && !at_eof;
            continue;
        }
        if (nl.pos >= 0) {
            take = (size_t)nl.pos < w->err_max ? (size_t)nl.pos : w->err_max;
            drop = (size_t)nl.pos + 1;
        } else if (n > w->err_max) {
            take = drop = w->err_max;
            w->err_skipping = true;
        } else if (at_eof) {
            take = drop = n;
        } else {
            break;
        }
        evbuffer_copyout(b, w->err_line, take);
        w->err_line[take] = '\0';
        evbuffer_drain(b, drop);
        if (w->cbs.on_stderr)
            w->cbs.on_stderr(w->arg, w->err_line, take);
    }
}

/* The child is gone, so what it wrote to stderr is already in the pipe: take it without
 * waiting for an EOF that a grandchild may hold back. */
static void worker_drain_stderr(rd_worker *w)
{
    size_t total = 0;
    ssize_t n;

    while (w->err_fd >= 0 && !w->freed && total < RD_STDERR_DRAIN_MAX) {
        n = read_some(w->err_buf, w->err_fd, RD_READ_MAX);
        if (n <= 0)
            break;
        total += (size_t)n;
        worker_stderr_lines(w, false);
    }
    if (!w->freed)
        worker_stderr_lines(w, true);
}

/* ---- delivery and the end -------------------------------------------------------------- */

static void worker_enter(rd_worker *w)
{
    w->depth++;
}

/* The outermost handler frees a worker its owner freed under a callback. */
static void worker_leave(rd_worker *w)
{
    if (--w->depth == 0 && w->freed)
        worker_destroy(w);
}

static void worker_finish(rd_worker *w)
{
    worker_drain_stderr(w);
    if (w->freed)
        return;
    close_io(&w->in_ev, &w->in_fd);
    close_io(&w->out_ev, &w->out_fd);
    close_io(&w->err_ev, &w->err_fd);
    event_del(w->drain_ev);
    w->exit_fired = true;
    if (w->cbs.on_exit)
        w->cbs.on_exit(w->arg, &w->ex);
}

/* Delivers buffered stdout lines unless paused; once stdout is closed and empty and the
 * child reaped, ends the worker with on_exit. */
static void worker_pump(rd_worker *w)
{
    bool eof = w->out_fd < 0;
    char *line;
    size_t len;
    int rc, n = 0;

    while (!w->paused && !w->freed && !w->out_done) {
        if (n++ == RD_PUMP_BATCH) {
            /* The rest next iteration; stdout is not read meanwhile (the pipe holds it). */
            if (w->out_ev)
                event_del(w->out_ev);
            w->batched = true;
            event_active(w->kick_ev, EV_TIMEOUT, 1);
            return;
        }
        rc = rd_linereader_next(&w->lr, w->out_buf, eof, &line, &len);
        if (rc == RD_LINE_OK) {
            if (w->cbs.on_line)
                w->cbs.on_line(w->arg, line, len);
            free(line);
        } else if (rc == RD_LINE_OVERLONG) {
            if (w->cbs.on_overlong)
                w->cbs.on_overlong(w->arg);
        } else {
            w->out_done = eof;
            break;
        }
    }
    if (w->out_done && w->reaped && !w->exit_fired && !w->freed)
        worker_finish(w);
}

static void worker_on_stdout(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;

    worker_enter(w);
    worker_read_stdout(w);
    worker_pump(w);
    worker_leave(w);
}

static void worker_on_stderr(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;
    ssize_t n;
    bool eof;

    worker_enter(w);
    n = read_some(w->err_buf, w->err_fd, RD_READ_MAX);
    eof = n == 0 || (n < 0 && errno != EAGAIN);
    if (eof)
        close_io(&w->err_ev, &w->err_fd);
    worker_stderr_lines(w, eof);
    worker_leave(w);
}

static void worker_on_kick(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;

    worker_enter(w);
    if (w->batched) {
        w->batched = false;
        if (w->out_ev && !w->paused)
            event_add(w->out_ev, NULL); /* reading resumes; what is buffered goes first */
    }
    worker_pump(w);
    worker_leave(w);
}

static void worker_on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;

    /* Something that outlived the child (sh -c 'daemon &') still holds stdout open. Take
     * what is there and stop waiting for it. */
    worker_enter(w);
    worker_read_stdout(w);
    close_io(&w->out_ev, &w->out_fd);
    worker_pump(w);
    worker_leave(w);
}

static void worker_signal(rd_worker *w, int sig)
{
    /* The whole group, so helpers the worker started go too; the leader alone if it left
     * its group. Only called before the reap, while the zombie pins the pid. */
    if (kill(-w->pid, sig) < 0 && errno == ESRCH)
        kill(w->pid, sig);
}

static void worker_on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;

    if (!w->reaped)
        worker_signal(w, SIGKILL);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

/* Kills a child nobody will wait for any more and leaves its reaping to the reaper. */
static void worker_abandon_process(rd_worker *w)
{
    worker_signal(w, SIGKILL);
    reaper_unlink(w);
    if (waitpid(w->pid, NULL, WNOHANG) == w->pid)
        return;
    if (!w->reaper || reaper_add_orphan(w->reaper, w->pid) < 0)
        rd_log_warn("worker %d: cannot queue for reaping; it stays a zombie", (int)w->pid);
}

/* The one teardown: safe on a half-built worker and on every spawn error path. */
/* Peak memory. wait4's ru_maxrss is no use here: the kernel folds the high-water mark of the
 * memory image the child had before exec (a copy of the daemon's, with fork or vfork alike)
 * into it, so every worker would report at least the daemon's size. VmHWM of the exec'd
 * image is right, but only readable while the child lives, so it is sampled. */
#define RD_HWM_SAMPLE_MS 100

static void worker_sample_hwm(rd_worker *w)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/status", (int)w->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = 0;
    const char *p = strstr(buf, "VmHWM:");
    long long kb = p ? atoll(p + 6) : 0;
    if (kb > w->hwm_kb)
        w->hwm_kb = kb;
}

static void worker_on_hwm(evutil_socket_t fd, short what, void *arg)
{
    rd_worker *w = arg;
    if (!w->reaped)
        worker_sample_hwm(w);
}

static void worker_destroy(rd_worker *w)
{
    if (w->pid > 0 && !w->reaped)
        worker_abandon_process(w);
    worker_release_cgroup(w); /* SIGKILLed above: removed when it is empty */
    close_io(&w->in_ev, &w->in_fd);
    close_io(&w->out_ev, &w->out_fd);
    close_io(&w->err_ev, &w->err_fd);
    if (w->kill_ev)
        event_free(w->kill_ev);
    if (w->drain_ev)
        event_free(w->drain_ev);
    if (w->kick_ev)
        event_free(w->kick_ev);
    if (w->hwm_ev)
        event_free(w->hwm_ev);
    if (w->in_buf)
        evbuffer_free(w->in_buf);
    if (w->out_buf)
        evbuffer_free(w->out_buf);
    if (w->err_buf)
        evbuffer_free(w->err_buf);
    free(w->err_line);
    free(w);
}

static rd_worker *worker_new(struct event_base *base, rd_reaper *reaper, const rd_worker_spec *spec,
                             const rd_worker_cbs *cbs, void *arg)
{
    rd_worker *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->base = base;
    w->reaper = reaper;
    w->in_fd = w->out_fd = w->err_fd = -1;
    if (cbs)
        w->cbs = *cbs;
    w->arg = arg;
    w->lr.max = spec->max_line ? spec->max_line : RD_STDOUT_LINE_DEFAULT;
    w->err_max = spec->max_stderr_line ? spec->max_stderr_line : RD_STDERR_LINE_DEFAULT;
    w->err_line = malloc(w->err_max + 1);
    w->in_buf = evbuffer_new();
    w->out_buf = evbuffer_new();
    w->err_buf = evbuffer_new();
    w->kill_ev = evtimer_new(base, worker_on_kill_timer, w);
    w->drain_ev = evtimer_new(base, worker_on_drain_deadline, w);
    w->kick_ev = event_new(base, -1, 0, worker_on_kick, w);
    w->hwm_ev = event_new(base, -1, EV_PERSIST, worker_on_hwm, w);
    if (!w->hwm_ev || !w->err_line || !w->in_buf || !w->out_buf || !w->err_buf || !w->kill_ev ||
        !w->drain_ev || !w->kick_ev) {
        worker_destroy(w);
        return NULL;
    }
    return w;
}

static int worker_watch(rd_worker *w)
{
    w->in_ev = event_new(w->base, w->in_fd, EV_WRITE | EV_PERSIST, worker_on_stdin, w);
    w->out_ev = event_new(w->base, w->out_fd, EV_READ | EV_PERSIST, worker_on_stdout, w);
    w->err_ev = event_new(w->base, w->err_fd, EV_READ | EV_PERSIST, worker_on_stderr, w);
    if (!w->in_ev || !w->out_ev || !w->err_ev || event_add(w->out_ev, NULL) < 0 ||
        event_add(w->err_ev, NULL) < 0)
        return RD_ERR;
    return 0;
}

int rd_worker_spawn(struct event_base *base, rd_reaper *reaper, const rd_worker_spec *spec,
                    const rd_worker_cbs *cbs, void *arg, rd_worker **out, char *err, size_t errlen)
{
    rd_worker *w;

    *out = NULL;
    if (!spec || !spec->argv || !spec->argv[0] || !reaper) {
        snprintf(err, errlen, "spawn: no command");
        return RD_ERR;
    }
    w = worker_new(base, reaper, spec, cbs, arg);
    if (!w) {
        snprintf(err, errlen, "spawn '%s': out of memory", spec->argv[0]);
        return RD_ERR;
    }
    if (spec->max_processes > 0 && rd_cgroups_enabled(reaper->cgroups) &&
        rd_cgroup_new(reaper->cgroups, spec->max_processes, &w->cg, err, errlen) < 0) {
        worker_destroy(w);
        return RD_ERR;
    }
    worker_proc p = {.pid = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    int rc = worker_spawn_process(spec, w->cg ? rd_cgroup_procs_fd(w->cg) : -1, &p, err, errlen);
    w->pid = p.pid;
    w->in_fd = p.in_fd;
    w->out_fd = p.out_fd;
    w->err_fd = p.err_fd;
    w->spawn_ms = rd_mono_ms();
    if (rc < 0) {
        worker_destroy(w); /* a child that failed to exec goes to the orphans, silently */
        return RD_ERR;
    }
    /* Linked before the loop runs again, so no SIGCHLD for this child can be missed. */
    reaper_link(reaper, w);
    if (worker_watch(w) < 0) {
        snprintf(err, errlen, "spawn '%s': cannot watch its pipes", spec->argv[0]);
        worker_destroy(w);
        return RD_ERR;
    }
    struct timeval hwm_tv = ms_tv(RD_HWM_SAMPLE_MS);
    event_add(w->hwm_ev, &hwm_tv);
    *out = w;
    return 0;
}

pid_t rd_worker_pid(const rd_worker *w)
{
    return w->pid;
}

int rd_worker_send_line(rd_worker *w, const char *line, size_t len)
{
    struct evbuffer *b = w->in_buf;

    if (w->in_fd < 0 || w->in_closing || w->freed)
        return RD_ERR;
    if (evbuffer_get_length(b) + len + 1 > RD_STDIN_MAX)
        return RD_ERR;
    /* Reserve first so the line never goes out without its newline. */
    if (evbuffer_expand(b, len + 1) < 0 || evbuffer_add(b, line, len) < 0 ||
        evbuffer_add(b, "\n", 1) < 0)
        return RD_ERR;
    event_add(w->in_ev, NULL);
    return 0;
}

size_t rd_worker_stdin_pending(const rd_worker *w)
{
    return w->in_fd < 0 ? 0 : evbuffer_get_length(w->in_buf);
}

void rd_worker_close_stdin(rd_worker *w)
{
    if (w->in_fd < 0)
        return;
    w->in_closing = true;
    if (evbuffer_get_length(w->in_buf) == 0)
        worker_close_stdin_now(w);
}

void rd_worker_pause_output(rd_worker *w, bool paused)
{
    if (w->paused == paused)
        return;
    w->paused = paused;
    if (w->exit_fired || w->freed)
        return;
    if (paused) {
        /* The drain deadline is for grandchildren, not for an owner applying backpressure. */
        if (w->out_ev)
            event_del(w->out_ev);
        event_del(w->drain_ev);
        return;
    }
    if (w->out_ev)
        event_add(w->out_ev, NULL);
    if (w->reaped && w->out_fd >= 0) {
        struct timeval tv = ms_tv(RD_DRAIN_MS);
        evtimer_add(w->drain_ev, &tv);
    }
    /* Lines read before the pause are delivered from the loop, not from inside this call. */
    event_active(w->kick_ev, EV_TIMEOUT, 1);
}

void rd_worker_stop(rd_worker *w, int64_t grace_ms)
{
    int64_t deadline;
    struct timeval tv;

    if (w->reaped || w->freed)
        return;
    if (grace_ms < 0)
        grace_ms = 0;
    deadline = rd_mono_ms() + grace_ms;
    if (!w->stopping) {
        w->stopping = true;
        worker_signal(w, SIGTERM);
    } else if (deadline >= w->kill_deadline) {
        return; /* a repeated stop never postpones the SIGKILL, a shorter grace hurries it */
    }
    w->kill_deadline = deadline;
    tv = ms_tv(grace_ms);
    evtimer_add(w->kill_ev, &tv);
}

void rd_worker_free(rd_worker *w)
{
    if (!w)
        return;
    if (w->depth > 0) {
        w->freed = true; /* worker_leave finishes the job */
        return;
    }
    worker_destroy(w);
}
