/*
 * main.c: the runsd program: argv, config, signals as loop events, sd_notify, and the
 * library's build / dispatch / free in reverse order (libevent's hello-world shape).
 */
#include <event2/event.h>
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
    int exit_code;
    bool stopping;
} app;

static void usage(FILE *f)
{
    fprintf(f, "usage: runsd -c FILE [-t]\n"
               "  -c FILE  configuration file (INI)\n"
               "  -t       check the configuration and exit (0 ok, 1 with the reason)\n"
               "  -V       print the version\n");
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

int main(int argc, char **argv)
{
    app a = {.exit_code = 0};
    bool check = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
        switch (opt) {
        case 'c':
            a.config_path = optarg;
            break;
        case 't':
            check = true;
            break;
        case 'V':
            printf("runsd 0.1.0\n");
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!a.config_path) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    struct rd_config *cfg = NULL;
    if (runsd_config_load(a.config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "runsd: %s\n", err);
        return 1;
    }
    if (check) {
        if (runsd_config_warnings(cfg, err, sizeof err) > 0)
            fprintf(stderr, "runsd: warning: %s", err);
        printf("runsd: configuration %s is valid\n", a.config_path);
        runsd_config_free(cfg);
        return 0;
    }
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
    event_base_dispatch(a.base);
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
