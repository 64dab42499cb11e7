/*
 * runsd.h: the public API of the runsd core library. A program (daemon/main.c, or a test)
 * loads a config, creates a server on its own event_base, starts it, dispatches the loop,
 * and frees in reverse order. The library never exits, parses argv or installs signal
 * handlers other than the SIGCHLD event of its own loop.
 */
#ifndef RUNSD_H
#define RUNSD_H

#include <stddef.h>

struct event_base;
struct rd_config;

typedef struct runsd runsd;

/** Loads and validates a config file. 0 and *out (free with runsd_config_free), or non-zero
 * with "FILE:LINE: key 'K': reason" in err. */
int runsd_config_load(const char *path, struct rd_config **out, char *err, size_t errlen);
void runsd_config_free(struct rd_config *cfg);
/** What a valid cfg cannot have on this machine, as warnings (for -t): a max_processes that
 * no cgroup can enforce. Looks only, changes nothing. Writes them into buf, one per line;
 * returns how many. */
int runsd_config_warnings(const struct rd_config *cfg, char *buf, size_t len);
/** Whether each flow's worker command exists and is executable (a bare name: in PATH), for
 * -t. Writes "FILE:LINE: key 'command': PROGRAM reason" lines into buf; returns how many
 * flows fail. Looks only. */
int runsd_config_check_commands(const struct rd_config *cfg, char *buf, size_t len);

/** Creates a server on base. The server takes ownership of cfg. Opens the store, binds every
 * listener (or takes systemd's sockets), recovers runs. 0 and *out, or non-zero with a
 * reason in err; on failure cfg has been freed. */
int runsd_new(struct event_base *base, struct rd_config *cfg, runsd **out, char *err,
              size_t errlen);
/** Starts serving and executing (after runsd_new; separate so the caller can notify
 * readiness in between). */
int runsd_start(runsd *d);
/** Replaces the flows with those of cfg (taking ownership of cfg): new and changed flows
 * apply to runs started from now on; running workers continue. Non-flow settings need a
 * restart and are kept. 0, or non-zero with a reason in err (the old config stays). */
int runsd_reload(runsd *d, struct rd_config *cfg, char *err, size_t errlen);
/** Begins a graceful shutdown: stops accepting, closes streams, stops workers (runs of
 * resumable flows are resumed at the next start), commits, then calls done(arg) from the
 * loop. Calling it twice hurries it (workers are killed at once). */
void runsd_shutdown(runsd *d, void (*done)(void *arg), void *arg);
/** Frees everything. The loop must no longer be dispatching this server's events. */
void runsd_free(runsd *d);
/** What the daemon is doing, for a status line (sd_notify STATUS=). */
typedef struct runsd_status {
    int running;        /* runs whose worker holds an executor slot */
    int queued;         /* runs waiting for a slot */
    int waiting;        /* runs waiting for a person (paused, auth_required) */
    size_t subscribers; /* event-stream (SSE) subscribers connected */
} runsd_status;
void runsd_get_status(const runsd *d, runsd_status *out);
/** The port the first TCP listener is bound to (useful with port 0), or 0. */
int runsd_bound_port(const runsd *d);
/** Calls fn once for each method of each route the server answers ("GET", "HEAD", "POST",
 * "PUT", "PATCH", "DELETE"; OPTIONS, the CORS preflight on every path, is not listed) with
 * the route's pattern, such as "/v1/runs/{id}/cancel". Both strings are borrowed for the
 * call. For tests that compare the route table with docs/openapi.yaml. */
void runsd_routes(const runsd *d, void (*fn)(void *arg, const char *method, const char *pattern),
                  void *arg);
/** Writes one line in the daemon's log format: syslog priority (3 error .. 7 debug), a fixed
 * message, and a reason field when reason is not NULL. For the program's own events
 * (signals, reload refusals) so that every line of stderr parses alike. */
void runsd_log(int priority, const char *msg, const char *reason);

#endif
