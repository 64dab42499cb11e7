/*
 * worker.h: a child process driven by the libevent loop. It owns the process (its own
 * process group, only stdin/stdout/stderr inherited), the three pipes, the kill timer, and
 * the reaping. Output is handed up line by line; the exit is reported exactly once, after
 * the process is reaped AND its stdout is drained (or a drain deadline passed). When the
 * child exits, the rest of its process group is SIGKILLed (before the reap), so nothing it
 * started outlives it; the kernel SIGKILLs the child if the daemon dies (PR_SET_PDEATHSIG).
 * With a process limit the child runs in a cgroup of its own (cgroup.h), removed after it.
 * It knows nothing about runs or the protocol's meaning.
 */
#ifndef RUNSD_WORKER_H
#define RUNSD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;

/* One per event_base: turns SIGCHLD into a loop event and reaps with wait4(WNOHANG). */
typedef struct rd_reaper rd_reaper;
/** Creates the reaper (installs a libevent signal event for SIGCHLD). NULL on failure. */
rd_reaper *rd_reaper_new(struct event_base *base);
/** Frees the reaper. All workers must be freed first. */
void rd_reaper_free(rd_reaper *r);
struct rd_cgroups;
/** Gives the reaper's workers process-limit cgroups (spec.max_processes); cs is borrowed and
 * must outlive the reaper's workers. Without it max_processes is ignored. */
void rd_reaper_set_cgroups(rd_reaper *r, struct rd_cgroups *cs);

typedef struct rd_worker rd_worker;

typedef struct rd_worker_spec {
    char *const *argv;      /* argv[0] is resolved through PATH when it has no '/' */
    char *const *env_extra; /* "NAME=value" added to the daemon's environment; may be NULL */
    const char *cwd;        /* NULL: inherit */
    size_t max_line;        /* stdout line bound (bytes) */
    size_t max_stderr_line; /* stderr lines are cut to this length (default 4096 if 0) */
    int max_processes;      /* pids.max of the worker's own cgroup; 0: none (no cgroup) */
} rd_worker_spec;

typedef struct rd_worker_exit {
    bool exited; /* normal exit: code is valid */
    int code;
    bool signaled; /* killed by a signal: sig is valid */
    int sig;
    bool we_signalled;   /* the daemon sent SIGTERM/SIGKILL to this worker (stop/kill) */
    int64_t cpu_user_ms; /* from wait4's rusage */
    int64_t cpu_sys_ms;
    int64_t peak_rss_kb; /* ru_maxrss */
    int64_t wall_ms;     /* spawn to reap */
} rd_worker_exit;

typedef struct rd_worker_cbs {
    /** A complete stdout line, newline stripped, NUL-terminated; borrowed for the call. */
    void (*on_line)(void *arg, const char *line, size_t len);
    /** A stdout line longer than max_line was dropped. */
    void (*on_overlong)(void *arg);
    /** A stderr line (cut to max_stderr_line), borrowed for the call. */
    void (*on_stderr)(void *arg, const char *line, size_t len);
    /** Once, at the end. The worker may be freed from inside this callback. */
    void (*on_exit)(void *arg, const rd_worker_exit *ex);
    /** Optional: everything queued for stdin has been written (a writer that pages its input
     * can queue more). Must not free the worker. */
    void (*on_stdin_drained)(void *arg);
} rd_worker_cbs;

/** Spawns argv. On success 0 and *out; on failure RD_ERR with a reason in err (no callback
 * is ever called for a failed spawn, e.g. a missing executable is reported here, not as an
 * exit 127 — the child reports exec failure through a CLOEXEC pipe). */
int rd_worker_spawn(struct event_base *base, rd_reaper *reaper, const rd_worker_spec *spec,
                    const rd_worker_cbs *cbs, void *arg, rd_worker **out, char *err, size_t errlen);
/** The child's pid (also its process group id). */
pid_t rd_worker_pid(const rd_worker *w);
/** Queues len bytes plus a newline on the worker's stdin (non-blocking). 0, or RD_ERR when
 * stdin is closed or more than 16 MiB are already waiting. */
int rd_worker_send_line(rd_worker *w, const char *line, size_t len);
/** Bytes queued for the worker's stdin and not yet written. */
size_t rd_worker_stdin_pending(const rd_worker *w);
/** Closes stdin once everything queued has been written. */
void rd_worker_close_stdin(rd_worker *w);
/** Stops reading stdout while paused (backpressure), resumes when false. */
void rd_worker_pause_output(rd_worker *w, bool paused);
/** SIGTERM to the process group, then SIGKILL after grace_ms if it is still alive.
 * Idempotent; marks we_signalled. */
void rd_worker_stop(rd_worker *w, int64_t grace_ms);
/** Frees the worker. If the process is still alive it is SIGKILLed and reaped in the
 * background by the reaper (no callback is called after free). Safe inside on_exit. */
void rd_worker_free(rd_worker *w);

#endif
