/*
 * worker_spawn.c: starting a worker's child process, split from worker.c by concern. The
 * child is vforked with every signal blocked, puts itself in a process group of its own,
 * asks to be SIGKILLed when the daemon dies (PR_SET_PDEATHSIG) so no worker outlives a
 * crashed daemon, moves itself into its process-limit cgroup when it has one (so nothing of
 * the worker's own code ever runs outside it), keeps only fds 0-2 and execs; a CLOEXEC report
 * pipe tells the parent synchronously whether the exec worked. It knows nothing of the loop:
 * worker.c takes the pipes and the pid from here.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/util.h"
#include "exec/worker_spawn.h"

/* What a child that could not exec writes to the report pipe before _exit(127). */
enum { CHILD_SETUP, CHILD_CGROUP, CHILD_CHDIR, CHILD_EXEC };
struct child_report {
    int stage;
    int err;
};

/* Everything the child needs, prepared before fork: the child only makes syscalls. */
struct child_args {
    char *const *argv;
    char **envp;
    const char *cwd;
    int fd[4];    /* stdin read end, stdout write end, stderr write end, report write end */
    int maxfd;    /* for the close loop when close_range is unavailable */
    pid_t parent; /* the daemon, for the PR_SET_PDEATHSIG race check */
    int cg_fd;    /* the worker cgroup's cgroup.procs, or -1 */
};

/* ---- child side of the fork: async-signal-safe calls only ------------------------------ */

static void child_reset_signals(void)
{
    struct sigaction sa;
    sigset_t none;

    /* Ignored dispositions survive exec (the daemon ignores SIGPIPE); handlers do not, but
     * resetting all of them is simpler and harmless. SIGKILL/SIGSTOP just fail. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        sigaction(s, &sa, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void child_close_fds(int keep, int maxfd)
{
#ifdef SYS_close_range
    /* keep (the report pipe) is >= 3; it is CLOEXEC, so exec closes it on success. */
    bool ok = keep == 3 || syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U) == 0;
    if (ok && syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U) == 0)
        return;
#endif
    for (int fd = 3; fd < maxfd; fd++)
        if (fd != keep)
            close(fd);
}

static _Noreturn void child_exec(const struct child_args *ca)
{
    struct child_report rep = {CHILD_SETUP, 0};
    int fd[4], repfd = ca->fd[3];

    setpgid(0, 0);
    /* Workers must not outlive the daemon: after a kill -9 a restarted daemon resumes their
     * runs, and two attempts of one run must never overlap. The signal is sent when the
     * thread that forked us dies (the loop thread, which is the process for this purpose).
     * If the daemon died before the prctl took effect we were already reparented and no
     * signal will ever come: getppid() tells. (Grandchildren do not inherit this; the
     * process group recorded in the store covers them at the next start.) */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != ca->parent)
        _exit(127);
    /* "0" is the writer: the child joins its cgroup itself, before exec, so the worker's
     * first instruction already counts against pids.max. Done before the fds move, while
     * cg_fd is certainly still open. */
    if (ca->cg_fd >= 0 && write(ca->cg_fd, "0", 1) != 1) {
        rep.stage = CHILD_CGROUP;
        goto fail;
    }
    child_reset_signals();
    /* Move all four ends above 2 first: if the daemon runs with a closed std fd, a pipe end
     * may sit on 0-2 and one dup2 would clobber another. */
    for (int i = 0; i < 4; i++) {
        fd[i] = fcntl(ca->fd[i], F_DUPFD_CLOEXEC, 3);
        if (fd[i] < 0)
            goto fail;
    }
    repfd = fd[3];
    for (int i = 0; i < 3; i++)
        if (dup2(fd[i], i) < 0) /* dup2 clears CLOEXEC on the copy */
            goto fail;
    child_close_fds(repfd, ca->maxfd);
    if (ca->cwd && chdir(ca->cwd) < 0) {
        rep.stage = CHILD_CHDIR;
        goto fail;
    }
    execvpe(ca->argv[0], ca->argv, ca->envp);
    rep.stage = CHILD_EXEC;
fail:
    rep.err = errno;
    if (write(repfd, &rep, sizeof(rep)) < 0) {
        /* nothing left to tell anyone */
    }
    _exit(127);
}

/* ---- parent side of the spawn ---------------------------------------------------------- */

static bool env_overridden(const char *kv, char *const *extra, size_t nx)
{
    size_t n = strcspn(kv, "=");

    for (size_t i = 0; i < nx; i++)
        if (strncmp(extra[i], kv, n) == 0 && extra[i][n] == '=')
            return true;
    return false;
}

/* environ with the extras appended; an extra replaces an inherited variable of its name.
 * The array is malloc'd, the strings are borrowed. */
static char **build_env(char *const *extra)
{
    size_t ne = 0, nx = 0, k = 0;
    char **env;

    while (environ && environ[ne])
        ne++;
    while (extra && extra[nx])
        nx++;
    env = calloc(ne + nx + 1, sizeof(*env));
    if (!env)
        return NULL;
    for (size_t i = 0; i < ne; i++)
        if (!env_overridden(environ[i], extra, nx))
            env[k++] = environ[i];
    for (size_t i = 0; i < nx; i++)
        env[k++] = extra[i];
    env[k] = NULL;
    return env;
}

static int max_fd(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > 1024 * 1024)
        return 1024 * 1024;
    return (int)rl.rlim_cur;
}

static pid_t spawn_child(const struct child_args *ca)
{
    sigset_t all, old;
    pid_t pid;
    int saved;

    /* Block every signal across the spawn so no daemon handler (libevent writing to its
     * signal socketpair) can run in the child before child_reset_signals.
     * vfork, not fork: the child only makes system calls and then execs or _exits, and
     * vfork does not copy the daemon's page tables (fork's cost grows with the daemon's
     * memory: SQLite's cache, buffers), which made fork the largest cost of a short run. The
     * child has its own copy of the signal handlers (no CLONE_SIGHAND), so resetting them
     * does not touch the daemon's. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0)
        child_exec(ca);
    saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}

/* Blocks until the child has exec'd (the CLOEXEC report pipe closes: EOF) or has reported
 * why it could not. That is microseconds, and it lets spawn fail synchronously. */
static int wait_exec(int fd, const rd_worker_spec *spec, char *err, size_t errlen)
{
    struct child_report rep;
    ssize_t n;

    do
        n = read(fd, &rep, sizeof(rep));
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof(rep)) {
        snprintf(err, errlen, "spawn '%s': lost the child's exec report", spec->argv[0]);
        return RD_ERR;
    }
    if (rep.stage == CHILD_EXEC)
        snprintf(err, errlen, "exec '%s': %s", spec->argv[0], strerror(rep.err));
    else if (rep.stage == CHILD_CGROUP)
        snprintf(err, errlen, "spawn '%s': cannot enter its max_processes cgroup: %s",
                 spec->argv[0], strerror(rep.err));
    else if (rep.stage == CHILD_CHDIR)
        snprintf(err, errlen, "chdir '%s': %s", spec->cwd, strerror(rep.err));
    else
        snprintf(err, errlen, "spawn '%s': fd setup: %s", spec->argv[0], strerror(rep.err));
    return RD_ERR;
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* Creates the four pipes. The parent's ends go into w (non-blocking); the child's ends and
 * the report pipe's read end come back in child[4] and *rep_rd. */
static int open_pipes(worker_proc *w, int child[4], int *rep_rd, char *err, size_t errlen)
{
    int p[4][2];

    for (int i = 0; i < 4; i++) {
        if (pipe2(p[i], O_CLOEXEC) < 0) {
            snprintf(err, errlen, "pipe: %s", strerror(errno));
            for (int j = 0; j < i; j++)
                close_fds(p[j], 2);
            return RD_ERR;
        }
    }
    w->in_fd = p[0][1];
    child[0] = p[0][0];
    w->out_fd = p[1][0];
    child[1] = p[1][1];
    w->err_fd = p[2][0];
    child[2] = p[2][1];
    child[3] = p[3][1];
    *rep_rd = p[3][0];
    /* Only the parent's ends: most programs misbehave on a non-blocking stdin/stdout. */
    fcntl(w->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(w->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(w->err_fd, F_SETFL, O_NONBLOCK);
    return 0;
}

int worker_spawn_process(const rd_worker_spec *spec, int cg_fd, worker_proc *w, char *err,
                         size_t errlen)
{
    struct child_args ca = {.argv = spec->argv,
                            .cwd = spec->cwd,
                            .maxfd = max_fd(),
                            .parent = getpid(),
                            .cg_fd = cg_fd};
    int rep_rd = -1, rc;
    pid_t pid;

    if (open_pipes(w, ca.fd, &rep_rd, err, errlen) < 0)
        return RD_ERR;
    ca.envp = build_env(spec->env_extra);
    if (!ca.envp) {
        snprintf(err, errlen, "spawn: out of memory");
        close_fds(ca.fd, 4);
        close(rep_rd);
        return RD_ERR;
    }
    pid = spawn_child(&ca);
    if (pid < 0)
        snprintf(err, errlen, "fork: %s", strerror(errno));
    close_fds(ca.fd, 4); /* including the report write end, or wait_exec never sees EOF */
    free(ca.envp);
    if (pid < 0) {
        close(rep_rd);
        return RD_ERR;
    }
    w->pid = pid;
    /* Also here, so no kill(-pid) can race the child's own setpgid. EACCES once it has
     * exec'd is fine: it did the same call first. */
    setpgid(pid, pid);
    rc = wait_exec(rep_rd, spec, err, errlen);
    close(rep_rd);
    return rc;
}
