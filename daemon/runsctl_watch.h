/*
 * runsctl_watch.h: the state `runsctl watch` keeps from the event stream (runsctl_watch.c)
 * and draws as a live view on a terminal (runsctl_view.c).
 */
#ifndef RUNSCTL_WATCH_H
#define RUNSCTL_WATCH_H

#include "runsctl.h"
#include "runsctl_tty.h"

typedef struct rc_watch {
    rc_http *h;
    const rc_opts *o;
    const char *run_id; /* NULL for --all */
    bool ui;            /* a live view (stdout is a terminal and not --plain), else lines */
    rc_tty tty;
    int sigfd;
    /* the run (watch RUN) */
    char status[32], reason[48], flow[128];
    json_t *steps;    /* [{name,state}] */
    json_t *progress; /* the last progress data, or NULL */
    json_t *pending;  /* pending_action, or NULL */
    long long items, errors;
    double started, finished; /* epoch seconds, 0 = not yet */
    /* all runs (watch --all): id -> {flow,status,reason,progress}, most recent first */
    json_t *runs;
    json_t *order;
    long long events;
    /* the connection and messages */
    char conn[160], note[200];
    bool lost, dirty, refresh;
    long last_draw_ms;
    char last_id[32];
} rc_watch;

/* Draws the live view of w (watch RUN or --all). */
void rc_view_draw(rc_watch *w);
/* Epoch seconds of an RFC 3339 timestamp ("...Z"); 0 when it is not one. */
double rc_parse_ts(const char *s);

#endif
