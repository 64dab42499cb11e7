/*
 * runsctl_watch.c: `runsctl watch RUN` and `watch --all`. The run's event stream (or
 * /v1/events) is followed by rc_follow, which resumes with Last-Event-ID across disconnects;
 * each event updates the state kept here. On a terminal the state is drawn as a live view
 * (runsctl_view.c) and, when stdin is a terminal too, the keys a/d answer an approval and q
 * leaves; otherwise every event is one plain line. Signals arrive through a pipe, so SIGINT,
 * SIGTERM and SIGHUP end the loop like any other stop and the terminal is restored on the way
 * out; SIGWINCH redraws at the new size; SIGTSTP restores the terminal before stopping.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runsctl_watch.h"

static int sig_w = -1; /* the write end of the signal pipe */

static void watch_on_signal(int sig)
{
    int e = errno;
    unsigned char c = (unsigned char)sig;
    if (write(sig_w, &c, 1) < 0) {
        /* the pipe is full: a signal of each kind is already waiting in it */
    }
    errno = e;
}

static int signals_open(void)
{
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    sig_w = p[1];
    struct sigaction sa = {.sa_handler = watch_on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGTSTP, SIGCONT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return p[0];
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- state ---- */

static void set_json(json_t **slot, json_t *v)
{
    json_t *old = *slot;
    *slot = v && !json_is_null(v) ? json_incref(v) : NULL;
    json_decref(old);
}

/* A whole run object (run.created, run.end, a GET). */
static void apply_run(rc_watch *w, const json_t *run)
{
    json_t *c = json_object_get(run, "counts");
    snprintf(w->status, sizeof w->status, "%s", rc_str(run, "status"));
    snprintf(w->reason, sizeof w->reason, "%s", rc_str(run, "termination_reason"));
    snprintf(w->flow, sizeof w->flow, "%s", rc_str(run, "flow"));
    json_decref(w->steps);
    w->steps = json_deep_copy(json_object_get(run, "steps"));
    set_json(&w->progress, json_object_get(run, "progress"));
    set_json(&w->pending, json_object_get(run, "pending_action"));
    w->items = json_integer_value(json_object_get(c, "items"));
    w->errors = json_integer_value(json_object_get(c, "item_errors"));
    w->started = rc_parse_ts(rc_str(run, "started_at"));
    w->finished = rc_parse_ts(rc_str(run, "finished_at"));
}

static void apply_step(rc_watch *w, const json_t *d)
{
    size_t i;
    json_t *s;
    if (!w->steps)
        w->steps = json_array();
    json_array_foreach(w->steps, i, s) if (strcmp(rc_str(s, "name"), rc_str(d, "name")) == 0)
    {
        json_object_set_new(s, "state", json_string(rc_str(d, "state")));
        return;
    }
    json_array_append_new(
        w->steps, json_pack("{s:s,s:s}", "name", rc_str(d, "name"), "state", rc_str(d, "state")));
}

/* One event of the run being watched; returns the exit code once the run has ended, else -1. */
static int apply_event(rc_watch *w, const char *type, const json_t *ev)
{
    json_t *d = json_object_get(ev, "data");
    const char *t = strncmp(type, "run.", 4) == 0 ? type + 4 : type;
    if (strcmp(t, "created") == 0 || strcmp(t, "end") == 0) {
        apply_run(w, json_object_get(d, "run"));
        if (strcmp(t, "end") == 0)
            return rc_exit_for_run(json_object_get(d, "run"));
    } else if (strcmp(t, "status") == 0) {
        snprintf(w->status, sizeof w->status, "%s", rc_str(d, "status"));
        snprintf(w->reason, sizeof w->reason, "%s", rc_str(d, "termination_reason"));
        set_json(&w->pending, json_object_get(d, "pending_action"));
        if (strcmp(w->status, "running") == 0 && w->started == 0)
            w->started = rc_parse_ts(rc_str(ev, "timestamp"));
        if (rc_status_terminal(w->status))
            w->finished = rc_parse_ts(rc_str(ev, "timestamp"));
        w->note[0] = 0;
    } else if (strcmp(t, "step") == 0) {
        apply_step(w, d);
    } else if (strcmp(t, "progress") == 0) {
        set_json(&w->progress, (json_t *)d);
        if (json_is_integer(json_object_get(d, "items")))
            w->items = json_integer_value(json_object_get(d, "items"));
    } else if (strcmp(t, "item") == 0) {
        w->items++;
    } else if (strcmp(t, "item_error") == 0) {
        w->errors++;
    } else if (strcmp(t, "approval_required") == 0 || strcmp(t, "auth_required") == 0) {
        set_json(&w->pending, (json_t *)d);
    }
    return -1;
}

/* One event of --all: the run's line in the table. */
static void apply_all(rc_watch *w, const char *type, const json_t *ev)
{
    const char *id = rc_str(ev, "run_id");
    json_t *d = json_object_get(ev, "data"), *r = json_object_get(w->runs, id);
    if (!*id)
        return;
    if (!r) {
        r = json_object();
        json_object_set_new(w->runs, id, r);
    }
    json_t *run = json_object_get(d, "run");
    if (run) {
        json_object_set_new(r, "flow", json_string(rc_str(run, "flow")));
        json_object_set_new(r, "status", json_string(rc_str(run, "status")));
        json_object_set_new(r, "reason", json_string(rc_str(run, "termination_reason")));
    } else if (strcmp(type, "run.status") == 0) {
        json_object_set_new(r, "status", json_string(rc_str(d, "status")));
        json_object_set_new(r, "reason", json_string(rc_str(d, "termination_reason")));
    } else if (strcmp(type, "run.progress") == 0) {
        json_object_set(r, "progress", (json_t *)d);
    }
    /* Most recently changed first; at most 200 runs are remembered. */
    size_t i;
    json_t *x;
    json_array_foreach(w->order, i, x) if (strcmp(json_string_value(x), id) == 0)
    {
        json_array_remove(w->order, i);
        break;
    }
    json_array_insert_new(w->order, 0, json_string(id));
    while (json_array_size(w->order) > 200) {
        json_object_del(w->runs, json_string_value(json_array_get(w->order, 200)));
        json_array_remove(w->order, 200);
    }
}

/* ---- follower callbacks ---- */

static void watch_draw(rc_watch *w)
{
    rc_view_draw(w);
    w->last_draw_ms = now_ms();
}

static int watch_on_event(void *arg, const char *id, const char *type, const char *data)
{
    rc_watch *w = arg;
    json_t *ev = json_loads(data, 0, NULL);
    int rc = -1;
    snprintf(w->last_id, sizeof w->last_id, "%s", id);
    w->events++;
    if (strcmp(type, "stream.reset") == 0) {
        /* Events were pruned past our resume point: what we kept may be stale, so the run is
         * read again at the next tick (not here, inside libcurl's write callback). */
        if (!w->ui)
            fprintf(stdout, "%s - %s stream.reset %s\n", id, w->run_id ? w->run_id : "-", data);
        w->refresh = w->run_id != NULL;
        w->dirty = true;
        json_decref(ev);
        return 0;
    }
    if (!ev)
        return 0; /* not an event object; nothing to show */
    if (!w->ui) {
        rc_print_event_line(stdout, ev);
        fflush(stdout);
    }
    if (w->run_id)
        rc = apply_event(w, type, ev);
    else
        apply_all(w, type, ev);
    json_decref(ev);
    w->dirty = true;
    return rc >= 0 ? RC_STOP(rc) : 0;
}

/* The run as stored now (after a stream.reset). */
static void watch_refresh(rc_watch *w)
{
    char *eid = rc_esc(w->run_id), path[256];
    snprintf(path, sizeof path, "/v1/runs/%s", eid);
    free(eid);
    json_t *run = NULL;
    if (w->ui)
        rc_tty_clear(&w->tty);
    if (rc_call(w->h, "GET", path, NULL, NULL, 0, &run) == 0)
        apply_run(w, run);
    json_decref(run);
    w->refresh = false;
}

static int watch_on_tick(void *arg)
{
    rc_watch *w = arg;
    if (w->refresh)
        watch_refresh(w);
    if (w->ui && (w->dirty || now_ms() - w->last_draw_ms >= 1000))
        watch_draw(w);
    return 0;
}

static void watch_on_conn(void *arg, enum rc_conn_state st, long delay_ms, const char *why)
{
    rc_watch *w = arg;
    if (st == RC_CONN_OPEN) {
        snprintf(w->conn, sizeof w->conn, "%s",
                 w->ui && w->tty.color ? "\x1b[32mlive\x1b[0m" : "live");
        if (w->lost && !w->ui)
            fprintf(stderr, "runsctl: reconnected; resuming after event %s\n",
                    *w->last_id ? w->last_id : "0");
        w->lost = false;
    } else if (st == RC_CONN_LOST) {
        snprintf(w->conn, sizeof w->conn, "%sreconnecting in %.1fs (%s)%s",
                 w->ui && w->tty.color ? "\x1b[33m" : "", delay_ms / 1000.0, why,
                 w->ui && w->tty.color ? "\x1b[0m" : "");
        if (!w->ui)
            fprintf(stderr, "runsctl: stream lost (%s); reconnecting in %.1fs\n", why,
                    delay_ms / 1000.0);
        w->lost = true;
    } else if (!w->lost) {
        snprintf(w->conn, sizeof w->conn, "connecting");
    }
    w->dirty = true;
}

/* 204: the run's stream has nothing more (we have seen its last event): the run as stored. */
static int watch_on_end(void *arg, long status)
{
    rc_watch *w = arg;
    if (!w->run_id)
        return RC_OK;
    char *eid = rc_esc(w->run_id), path[256];
    snprintf(path, sizeof path, "/v1/runs/%s", eid);
    free(eid);
    json_t *run = NULL;
    if (w->ui)
        rc_tty_clear(&w->tty); /* an error message then lands where the view was */
    int rc = rc_call(w->h, "GET", path, NULL, NULL, 0, &run);
    if (rc != 0)
        return rc;
    apply_run(w, run);
    if (!w->ui) {
        char buf[160];
        printf("%s %s\n", w->run_id, rc_status_text(run, buf, sizeof buf));
    }
    rc = rc_exit_for_run(run);
    json_decref(run);
    return rc;
}

/* A key in the live view: a/d answer the approval, q leaves. */
static int watch_key(rc_watch *w, char k)
{
    bool approval =
        rc_status_waiting(w->status) && strcmp(rc_str(w->pending, "type"), "approval") == 0;
    if (k == 'q' || k == 'Q') {
        json_t *r = json_pack("{s:s,s:s}", "status", w->status, "termination_reason", w->reason);
        int rc = w->run_id ? rc_exit_for_run(r) : RC_OK;
        json_decref(r);
        return RC_STOP(rc);
    }
    if ((k != 'a' && k != 'd') || !approval || !w->run_id)
        return 0;
    snprintf(w->note, sizeof w->note, "%s...", k == 'a' ? "approving" : "denying");
    watch_draw(w);
    rc_tty_clear(&w->tty); /* an error from the call is printed above the next view */
    int rc = rc_answer(w->h, w->run_id, k == 'a', NULL, true);
    snprintf(w->note, sizeof w->note,
             rc == 0 ? "%s; waiting for the run to go on" : "%s failed (see above)",
             k == 'a' ? "approved" : "denied");
    w->dirty = true;
    return 0;
}

/* A signal from the pipe; a stop code or 0. */
static int watch_signal(rc_watch *w, int sig)
{
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP)
        return RC_STOP(128 + sig);
    if (sig == SIGWINCH && w->ui) {
        rc_tty_size(&w->tty);
        watch_draw(w);
    } else if (sig == SIGTSTP) {
        /* Give the terminal back as it was, stop, and take it again when continued. */
        bool ui = w->ui && w->tty.open;
        if (ui)
            rc_tty_close(&w->tty);
        signal(SIGTSTP, SIG_DFL);
        raise(SIGTSTP);
        struct sigaction sa = {.sa_handler = watch_on_signal, .sa_flags = SA_RESTART};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTSTP, &sa, NULL);
        if (ui) {
            bool keys = w->tty.keys;
            rc_tty_open(&w->tty, keys);
            watch_draw(w);
        }
    }
    return 0;
}

static int watch_on_fd(void *arg, int fd)
{
    rc_watch *w = arg;
    unsigned char buf[32];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0 && fd == STDIN_FILENO)
        w->tty.keys = false; /* stdin closed: no more keys */
    for (ssize_t i = 0; i < n; i++) {
        int r = fd == w->sigfd ? watch_signal(w, buf[i]) : w->ui ? watch_key(w, (char)buf[i]) : 0;
        if (r)
            return r;
    }
    return 0;
}

/* ---- the command ---- */

static char *watch_path(const rc_opts *o, const char *run_id)
{
    char *e = run_id ? rc_esc(run_id) : NULL, *f = o->flow ? rc_esc(o->flow) : NULL;
    char *t = o->types ? rc_esc(o->types) : NULL, *p = NULL;
    int n = run_id ? asprintf(&p, "/v1/runs/%s/events", e)
                   : asprintf(&p, "/v1/events?flow=%s&types=%s", f ? f : "", t ? t : "");
    free(e);
    free(f);
    free(t);
    if (n < 0)
        return NULL;
    for (char *c = p; *c; c++) /* comma lists stay lists */
        if (strncmp(c, "%2C", 3) == 0) {
            *c = ',';
            memmove(c + 1, c + 3, strlen(c + 3) + 1);
        }
    return p;
}

int rc_cmd_watch(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    if ((o->all && argc != 0) || (!o->all && argc != 1) || (!o->all && (o->flow || o->types))) {
        fprintf(stderr, "usage: runsctl watch RUN [--plain] | watch --all [--flow F] "
                        "[--types T] [--after ID] [--plain]\n");
        return RC_USAGE;
    }
    rc_watch w = {.h = h, .o = o, .run_id = o->all ? NULL : argv[0]};
    w.ui = !o->plain && isatty(STDOUT_FILENO);
    w.runs = json_object();
    w.order = json_array();
    snprintf(w.status, sizeof w.status, "connecting");
    w.sigfd = signals_open();
    char *path = watch_path(o, w.run_id), last[32] = "";
    if (w.sigfd < 0 || !path) {
        fprintf(stderr, "runsctl: cannot set up: %s\n", strerror(errno));
        free(path);
        return RC_ERR;
    }
    if (o->after > 0)
        snprintf(last, sizeof last, "%ld", o->after);
    if (w.ui)
        rc_tty_open(&w.tty, true);
    int fds[2] = {w.sigfd, STDIN_FILENO};
    rc_follow_cb cb = {.arg = &w,
                       .on_event = watch_on_event,
                       .on_fd = watch_on_fd,
                       .on_tick = watch_on_tick,
                       .on_conn = watch_on_conn,
                       .on_end = watch_on_end};
    int rc = rc_follow(h, path, *last ? last : NULL, fds, w.ui && w.tty.keys ? 2 : 1, &cb);
    if (w.ui) {
        w.note[0] = 0;
        snprintf(w.conn, sizeof w.conn, "%s", rc_status_terminal(w.status) ? "ended" : "stopped");
        if (rc_status_terminal(w.status) || rc >= 128)
            watch_draw(&w);
        rc_tty_close(&w.tty);
    }
    free(path);
    json_decref(w.steps);
    json_decref(w.progress);
    json_decref(w.pending);
    json_decref(w.runs);
    json_decref(w.order);
    close(w.sigfd);
    close(sig_w);
    return rc;
}
