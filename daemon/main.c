/*
 * main.c: the runsd program: argv, config, signals as loop events, sd_notify (readiness, the
 * watchdog, a status line), and the library's build / dispatch / free in reverse order
 * (libevent's hello-world shape).
 */
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "runsd.h"

typedef struct app {
    struct event_base *base;
    runsd *d;
    const char *config_path;
    struct event *watchdog;
    struct event *status; /* STATUS= refresh, only under systemd */
    char status_line[160];
    int exit_code;
    bool stopping;
} app;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: runsd [-c FILE] [-t]\n"
            "Runs flows through worker processes and serves them over HTTP (runsd(8)).\n"
            "\n"
            "  -c, --config FILE  configuration file (INI, runsd.conf(5));\n"
            "                     default " RUNSD_DEFAULT_CONFIG "\n"
            "  -t, --test         check the configuration and that every worker command\n"
            "                     exists and is executable, then exit (0 ok, 1 with the reasons)\n"
            "  -V, --version      print the version and exit\n"
            "  -h, --help         print this help and exit\n"
            "\n"
            "Signals: TERM/INT drain and exit (twice: stop workers now), HUP reloads flows.\n");
}

static void main_on_done(void *arg)
{
    app *a = arg;
    event_base_loopexit(a->base, NULL);
}

static void main_on_term(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    runsd_log(5, a->stopping ? "second signal: stopping workers now" : "signal: draining",
              strsignal((int)sig));
    a->stopping = true;
    sd_notify(0, "STOPPING=1");
    runsd_shutdown(a->d, main_on_done, a);
}

static void main_on_hup(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    char err[512];
    struct rd_config *cfg = NULL;
    sd_notify(0, "RELOADING=1");
    if (runsd_config_load(a->config_path, &cfg, err, sizeof err) != 0 ||
        runsd_reload(a->d, cfg, err, sizeof err) != 0)
        runsd_log(3, "config reload refused, keeping the running config", err);
    sd_notify(0, "READY=1");
}

static void main_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    sd_notify(0, "WATCHDOG=1");
}

/* The status line systemd shows (systemctl status): checked once a second, sent only when it
 * changed, so a burst of runs costs one notification a second at most. */
static void main_on_status(evutil_socket_t fd, short what, void *arg)
{
    app *a = arg;
    runsd_status st;
    char line[sizeof a->status_line];

    runsd_get_status(a->d, &st);
    snprintf(line, sizeof line, "%d running, %d queued, %d waiting for people, %zu subscribers",
             st.running, st.queued, st.waiting, st.subscribers);
    if (strcmp(line, a->status_line) == 0)
        return;
    memcpy(a->status_line, line, sizeof line);
    sd_notifyf(0, "STATUS=%s", line);
}

static void start_status(app *a)
{
    struct timeval tv = {1, 0};
    if (!getenv("NOTIFY_SOCKET"))
        return;
    a->status = event_new(a->base, -1, EV_PERSIST, main_on_status, a);
    if (a->status) {
        main_on_status(-1, 0, a);
        event_add(a->status, &tv);
    }
}

static void start_watchdog(app *a)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    a->watchdog = event_new(a->base, -1, EV_PERSIST, main_on_watchdog, a);
    struct timeval tv = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
    if (a->watchdog)
        event_add(a->watchdog, &tv);
}

/* -t: the config (already loaded) and its worker commands; the exit code. */
static int check_config(const app *a, struct rd_config *cfg)
{
    char buf[4096];
    int bad = runsd_config_check_commands(cfg, buf, sizeof buf);

    if (bad > 0)
        fprintf(stderr, "runsd: %d worker command(s) cannot be started:\n%s", bad, buf);
    if (runsd_config_warnings(cfg, buf, sizeof buf) > 0)
        fprintf(stderr, "runsd: warning: %s", buf);
    runsd_config_free(cfg);
    if (bad > 0)
        return 1;
    printf("runsd: configuration %s is valid\n", a->config_path);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app a = {.exit_code = 0, .config_path = RUNSD_DEFAULT_CONFIG};
    bool check = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            a.config_path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'V':
            printf("runsd %s\n", RUNSD_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "runsd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    char err[1024];
    struct rd_config *cfg = NULL;
    if (runsd_config_load(a.config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "runsd: %s\n", err);
        return 1;
    }
    if (check)
        return check_config(&a, cfg);
    /* A missing worker fails its runs (crashed/spawn_failed); it may be installed later, so
     * the daemon starts, but says so. */
    char buf[4096];
    if (runsd_config_check_commands(cfg, buf, sizeof buf) > 0)
        fprintf(stderr, "<4>runsd: warning: worker command(s) cannot be started:\n%s", buf);
    signal(SIGPIPE, SIG_IGN);
    a.base = event_base_new();
    if (!a.base || runsd_new(a.base, cfg, &a.d, err, sizeof err) != 0) {
        fprintf(stderr, "runsd: %s\n", a.base ? err : "cannot create the event loop");
        if (a.base)
            event_base_free(a.base);
        return 1;
    }
    struct event *term = evsignal_new(a.base, SIGTERM, main_on_term, &a);
    struct event *intr = evsignal_new(a.base, SIGINT, main_on_term, &a);
    struct event *hup = evsignal_new(a.base, SIGHUP, main_on_hup, &a);
    event_add(term, NULL);
    event_add(intr, NULL);
    event_add(hup, NULL);
    runsd_start(a.d);
    printf("runsd: listening on port %d\n", runsd_bound_port(a.d));
    fflush(stdout);
    start_watchdog(&a);
    sd_notify(0, "READY=1");
    start_status(&a);
    event_base_dispatch(a.base);
    if (a.status)
        event_free(a.status);
    if (a.watchdog)
        event_free(a.watchdog);
    event_free(hup);
    event_free(intr);
    event_free(term);
    runsd_free(a.d);
    event_base_free(a.base);
    runsd_log(6, "runsd stopped", NULL);
    return a.exit_code;
}
