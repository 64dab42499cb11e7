/*
 * runsctl.h: what the files of the runsctl client (daemon/runsctl*.c) share: the exit codes,
 * the parsed command line, the HTTP calls (libcurl), the SSE follower, the formatting of runs
 * and events, and the terminal. runsctl is a standalone program: it speaks only the wire
 * contract (docs/contract.md) and links nothing of the daemon's library.
 */
#ifndef RUNSCTL_H
#define RUNSCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes: one X-macro generates the enum and the table `runsctl --help` prints (the man
 * page repeats it; a test checks they agree). Run outcomes start at 10 so they never mix with
 * usage and transport errors. */
#define RC_EXIT_CODES(X)                                                                           \
    X(RC_OK, 0,                                                                                    \
      "the run succeeded (completed, match_limit_met, candidates_exhausted,\n"                     \
      "       low_match_rate), or the command did what it was asked")                              \
    X(RC_ERR, 1, "unexpected failure (out of memory, an answer that is not JSON)")                 \
    X(RC_USAGE, 2, "usage error (unknown command or option, bad value, bad server URL)")           \
    X(RC_CONNECT, 3, "the server cannot be reached (refused, unresolvable, timed out)")            \
    X(RC_AUTH, 4, "the API key is missing, unknown (401) or lacks the scope (403)")                \
    X(RC_NOTFOUND, 5, "no such run (404)")                                                         \
    X(RC_CONFLICT, 6,                                                                              \
      "the run's state refuses the request (409, e.g. run_terminal,\n"                             \
      "       run_not_paused; 410 for a spent link)")                                              \
    X(RC_HTTP, 7, "any other error answer (400, 413, 422, 429, 5xx)")                              \
    X(RC_FAILED, 10, "the run failed: error_occurred")                                             \
    X(RC_TIMEOUT, 11, "the run failed by a deadline: timeout, approval_timeout, auth_timeout")     \
    X(RC_INCOMPLETE, 12, "the run is incomplete: items_failed")                                    \
    X(RC_CANCELLED, 13, "the run was cancelled: user_cancelled")                                   \
    X(RC_DENIED, 14, "a person said no: approval_denied (cancelled), auth_denied (failed)")        \
    X(RC_CRASHED, 15, "the run crashed: worker_crashed, interrupted, spawn_failed")                \
    X(RC_WAITING, 16, "the run waits for a person (paused, auth_required)")                        \
    X(RC_ACTIVE, 17,                                                                               \
      "the run has not finished (created, queued, running, cancelling)\n"                          \
      "       when --timeout ran out or watch was left with q")                                    \
    X(RC_SIGINT, 130, "interrupted by SIGINT (143: SIGTERM)")

#define RC_EXIT_ENUM(name, code, text) name = code,
enum rc_exit { RC_EXIT_CODES(RC_EXIT_ENUM) RC_SIGTERM = 143 };
#undef RC_EXIT_ENUM

/* The exit code a run object's status and termination_reason map to (the table above). */
int rc_exit_for_run(const json_t *run);
/* True for succeeded, incomplete, failed, crashed, cancelled. */
bool rc_status_terminal(const char *status);
/* True for paused and auth_required: the run needs a person. */
bool rc_status_waiting(const char *status);

/* Options given on the command line; which of them a command accepts is checked by bit. */
typedef struct rc_opts {
    const char *url, *key, *input, *metadata, *idem_key, *status, *flow, *types, *comment;
    long limit, page, page_size, after;
    double timeout; /* seconds; < 0 = none */
    bool json, ndjson, wait, preview, no_start, all, plain;
    unsigned given; /* RC_O_* bits */
} rc_opts;

/* ---- HTTP (runsctl_http.c) ---- */

typedef struct rc_http {
    void *curl;      /* CURL *: one handle, so calls reuse the connection */
    char *base;      /* the server URL without a trailing '/' (http://localhost for unix:) */
    char *unix_path; /* a unix socket to connect to, or NULL */
    char *auth;      /* "Authorization: Bearer KEY", or NULL */
    const char *url; /* as given, for messages */
} rc_http;

/* Sets h up for url (http://, https:// or unix:/path) and key (may be NULL). Returns 0, or
 * RC_USAGE after a message on stderr for a URL or key it cannot use. */
int rc_http_init(rc_http *h, const char *url, const char *key);
void rc_http_dispose(rc_http *h);
/* method path (path starts with '/'; query included) with body (may be NULL) and one extra
 * header line (may be NULL). On a 2xx answer returns 0 and, when out is not NULL, *out owns
 * the parsed JSON body (NULL for an empty one). Otherwise prints the error on stderr and
 * returns its exit code (RC_CONNECT, RC_AUTH, RC_NOTFOUND, RC_CONFLICT, RC_HTTP, RC_ERR). */
int rc_call(rc_http *h, const char *method, const char *path, json_t *body, const char *header,
            long wait_s, json_t **out);
/* The exit code of an HTTP error status. */
int rc_exit_for_http(long status);
/* Prints "runsctl: WHAT: STATUS code: message (request id)" from an error body (may be NULL). */
void rc_print_http_error(const char *what, long status, const char *body, size_t n);
/* A malloc'd, percent-encoded copy of s (a run id, a flow name). */
char *rc_esc(const char *s);

/* ---- SSE (runsctl_sse.c) ---- */

enum rc_conn_state { RC_CONN_CONNECTING, RC_CONN_OPEN, RC_CONN_LOST };

typedef struct rc_follow_cb {
    void *arg;
    /* One dispatched event; returns 0 to go on, or an exit code (>= 0, + 1000) to stop. */
    int (*on_event)(void *arg, const char *id, const char *type, const char *data);
    /* An extra fd (see rc_follow) is readable; same return convention. */
    int (*on_fd)(void *arg, int fd);
    /* About every 200 ms and after each batch of reads: redraw; same return convention. */
    int (*on_tick)(void *arg);
    /* The connection changed state; delay_ms is the wait before the next attempt (LOST). */
    void (*on_conn)(void *arg, enum rc_conn_state st, long delay_ms, const char *why);
    /* The stream ended without being stopped: 204 (the run's stream has nothing more) or the
     * run's last event seen; returns the exit code. */
    int (*on_end)(void *arg, long status);
} rc_follow_cb;

#define RC_STOP(code) ((code) + 1000)

/* Follows the SSE stream at path until a callback stops it or the stream ends for good:
 * reconnects with Last-Event-ID after the server's retry: interval, doubling on each failed
 * attempt up to 30 s. last_id (may be NULL) resumes from that id. fds (nfds of them) are
 * watched for reading alongside the stream. ends_after_end: the stream closes after run.end
 * (a run's stream), so a close after it is the end, not a disconnect. Returns the exit code. */
int rc_follow(rc_http *h, const char *path, const char *last_id, const int *fds, int nfds,
              const rc_follow_cb *cb);

/* The SSE parser on its own (exposed for the follower and for a test of the parser). */
typedef struct rc_sse_parser {
    char *line, *data;
    size_t len, cap, dlen, dcap;
    char event[64], id_buf[64], last_id[64]; /* id_buf: the id field; last_id: as dispatched */
    long retry_ms;                           /* the last retry: value, 0 before one */
    bool seen_cr, started;
    int stopped; /* the first non-zero return of on_event */
    int (*on_event)(void *arg, const char *id, const char *type, const char *data);
    void *arg;
} rc_sse_parser;
void rc_sse_feed(rc_sse_parser *p, const char *buf, size_t n);
void rc_sse_reset(rc_sse_parser *p); /* a new connection: partial lines and data dropped */
void rc_sse_dispose(rc_sse_parser *p);

/* ---- formatting (runsctl_fmt.c) ---- */

/* One line summary of an event's data (no newline); malloc'd. */
char *rc_event_summary(const char *type, const json_t *data);
/* Prints an event as one plain line: "ID TIME RUN TYPE SUMMARY". */
void rc_print_event_line(FILE *f, const json_t *ev);
/* Prints the human view of a run (get). */
void rc_print_run(FILE *f, const json_t *run);
/* "status" or "status (reason)" into buf. */
const char *rc_status_text(const json_t *run, char *buf, size_t n);
/* JSON as one compact line, malloc'd ("null" for NULL). */
char *rc_compact(const json_t *j);
/* Prints json (pretty) followed by a newline. */
void rc_print_json(FILE *f, const json_t *j);
const char *rc_str(const json_t *obj, const char *key); /* "" when absent or not a string */

/* ---- commands ---- */

int rc_cmd_create(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_get(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_list(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_cancel(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_approve(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_deny(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_results(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_events(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_wait(rc_http *h, const rc_opts *o, int argc, char **argv);
int rc_cmd_watch(rc_http *h, const rc_opts *o, int argc, char **argv);
/* Waits for run id with ?wait= long-polls (runsctl_cmds.c); *final owns the last run seen. */
int rc_wait_run(rc_http *h, const char *id, double timeout, json_t **final);
/* POST approve/deny; prints the outcome (runsctl_cmds.c). quiet: no line on stdout. */
int rc_answer(rc_http *h, const char *id, bool approve, const char *comment, bool quiet);

#endif
