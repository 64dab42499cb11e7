/*
 * runsctl_view.c: the live view of `runsctl watch` on a terminal. For one run: its id and
 * flow, the connection, the status with the time it has run, the steps (the last ten), a
 * progress bar, the counts, and what a person is asked with the keys that answer it. For
 * --all: a line per run, most recently changed first. Built as plain strings with ANSI
 * colours; runsctl_tty.c draws them in place.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runsctl_watch.h"

typedef struct lines {
    char *l[RC_TTY_MAX_LINES];
    int n;
} lines;

static void add(lines *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(lines *L, const char *fmt, ...)
{
    if (L->n >= RC_TTY_MAX_LINES)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&L->l[L->n], fmt, ap) >= 0)
        L->n++;
    va_end(ap);
}

double rc_parse_ts(const char *s)
{
    struct tm tm = {0};
    const char *e = s && *s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!e)
        return 0;
    return (double)timegm(&tm) + (*e == '.' ? strtod(e, NULL) : 0);
}

static const char *status_color(const rc_watch *w, const char *st)
{
    if (!w->tty.color)
        return "";
    if (strcmp(st, "succeeded") == 0)
        return "\x1b[1;32m";
    if (strcmp(st, "failed") == 0 || strcmp(st, "crashed") == 0)
        return "\x1b[1;31m";
    if (strcmp(st, "running") == 0)
        return "\x1b[1;36m";
    if (strcmp(st, "cancelled") == 0)
        return "\x1b[1;35m";
    if (strcmp(st, "queued") == 0 || strcmp(st, "created") == 0)
        return "\x1b[2m";
    return "\x1b[1;33m"; /* paused, auth_required, cancelling, incomplete */
}

/* A bar of width cells for done/total into buf. */
static void bar(const rc_watch *w, char *buf, size_t n, double frac, int width)
{
    const char *full = w->tty.utf8 ? "\xe2\x96\x88" : "#";
    const char *empty = w->tty.utf8 ? "\xe2\x96\x91" : "-";
    int k = (int)(frac * width + 0.5), o = 0;
    for (int i = 0; i < width && (size_t)o + 4 < n; i++)
        o += snprintf(buf + o, n - (size_t)o, "%s", i < k ? full : empty);
}

static void progress_line(rc_watch *w, lines *L)
{
    json_t *p = w->progress;
    double done = json_number_value(json_object_get(p, "done"));
    double total = json_number_value(json_object_get(p, "total"));
    const char *msg = rc_str(p, "message");
    char b[512];
    if (!p || !json_is_number(json_object_get(p, "done"))) {
        add(L, "progress  -");
        return;
    }
    if (total <= 0) {
        add(L, "progress  %g done%s%s", done, *msg ? "  " : "", msg);
        return;
    }
    double frac = done / total > 1 ? 1 : done / total;
    int width = w->tty.cols - 40;
    width = width < 10 ? 10 : width > 50 ? 50 : width;
    bar(w, b, sizeof b, frac, width);
    add(L, "progress  [%s] %3d%%  %g/%g%s%s", b, (int)(frac * 100), done, total, *msg ? "  " : "",
        msg);
}

static void steps_lines(rc_watch *w, lines *L)
{
    size_t n = json_array_size(w->steps), fin = 0, i;
    json_t *s;
    json_array_foreach(w->steps, i, s) fin += strcmp(rc_str(s, "state"), "finished") == 0;
    if (n == 0)
        return;
    add(L, "steps     %zu/%zu finished", fin, n);
    if (n > 10)
        add(L, "  ... %zu earlier", n - 10);
    for (i = n > 10 ? n - 10 : 0; i < n; i++) {
        s = json_array_get(w->steps, i);
        bool f = strcmp(rc_str(s, "state"), "finished") == 0;
        const char *mark =
            f ? (w->tty.utf8 ? "\xe2\x9c\x93" : "*") : (w->tty.utf8 ? "\xe2\x96\xb8" : ">");
        add(L, "  %s %s", mark, rc_str(s, "name"));
    }
}

static void pending_lines(rc_watch *w, lines *L)
{
    json_t *pa = w->pending;
    if (!json_is_object(pa) || !rc_status_waiting(w->status))
        return;
    const char *hl = w->tty.color ? "\x1b[1;33m" : "", *off = w->tty.color ? "\x1b[0m" : "";
    add(L, "%s", "");
    if (strcmp(rc_str(pa, "type"), "auth") == 0) {
        add(L, "%sauthorization needed%s%s", hl, *rc_str(pa, "provider") ? " by " : "",
            rc_str(pa, "provider"));
        add(L, "  open %s", *rc_str(pa, "auth_url") ? rc_str(pa, "auth_url") : "(link not shown)");
        add(L, "%s", off);
        return;
    }
    add(L, "%sapproval needed:%s %s", hl, off, rc_str(pa, "prompt"));
    json_t *d = json_object_get(pa, "details");
    if (d && !json_is_null(d)) {
        char *c = rc_compact(d);
        add(L, "  %s", c);
        free(c);
    }
    if (w->tty.keys)
        add(L, "  press %sa%s to approve, %sd%s to deny", hl, off, hl, off);
    else
        add(L, "  runsctl approve %s  |  runsctl deny %s", w->run_id, w->run_id);
}

static void run_view(rc_watch *w, lines *L)
{
    const char *b = w->tty.color ? "\x1b[1m" : "", *off = w->tty.color ? "\x1b[0m" : "";
    add(L, "%s%s%s  flow %s   %s", b, w->run_id, off, *w->flow ? w->flow : "?", w->conn);
    double end = w->finished > 0 ? w->finished : (double)time(NULL);
    long el = w->started > 0 && end > w->started ? (long)(end - w->started) : 0;
    add(L, "status    %s%s%s%s%s   %ld:%02ld", status_color(w, w->status), w->status,
        *w->reason ? " (" : "", w->reason, *w->reason ? ")\x1b[0m" : "\x1b[0m", el / 60, el % 60);
    steps_lines(w, L);
    progress_line(w, L);
    add(L, "items     %lld ok, %lld errors", w->items, w->errors);
    pending_lines(w, L);
    if (*w->note)
        add(L, "%s", w->note);
    if (w->tty.keys && !rc_status_terminal(w->status))
        add(L, "%s(q quits)%s", w->tty.color ? "\x1b[2m" : "", off);
}

static void all_view(rc_watch *w, lines *L)
{
    const char *b = w->tty.color ? "\x1b[1m" : "", *off = w->tty.color ? "\x1b[0m" : "";
    add(L, "%sall runs%s   %lld events   %s", b, off, w->events, w->conn);
    size_t i;
    json_t *id;
    json_array_foreach(w->order, i, id)
    {
        if (L->n >= w->tty.rows - 2)
            break;
        json_t *r = json_object_get(w->runs, json_string_value(id));
        json_t *p = json_object_get(r, "progress");
        double d = json_number_value(json_object_get(p, "done"));
        double t = json_number_value(json_object_get(p, "total"));
        char pb[256] = "";
        if (t > 0) {
            char bb[200];
            bar(w, bb, sizeof bb, d / t > 1 ? 1 : d / t, 12);
            snprintf(pb, sizeof pb, "[%s] %3d%%", bb, (int)(100 * (d / t > 1 ? 1 : d / t)));
        }
        const char *st = rc_str(r, "status");
        add(L, "%-26s %-14s %s%-13s\x1b[0m %-20s %s", json_string_value(id), rc_str(r, "flow"),
            status_color(w, st), st, rc_str(r, "reason"), pb);
    }
    if (*w->note)
        add(L, "%s", w->note);
}

void rc_view_draw(rc_watch *w)
{
    lines L = {.n = 0};
    if (w->run_id)
        run_view(w, &L);
    else
        all_view(w, &L);
    rc_tty_frame(&w->tty, L.l, L.n);
    for (int i = 0; i < L.n; i++)
        free(L.l[i]);
    w->dirty = false;
}
