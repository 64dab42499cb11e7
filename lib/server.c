/*
 * server.c: the public API of runsd.h, and the composition root: it wires config, store,
 * engine, webhook outbox, the HTTP layer and the API registered into it on the caller's
 * event_base, and takes them apart in reverse order. It is the only file that knows every
 * layer; no layer calls up into another.
 */
#include "runsd.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <sqlite3.h>

#include "api/api.h"
#include "base/metrics.h"
#include "config/config.h"
#include "engine/engine.h"
#include "exec/cgroup.h"
#include "http/http.h"
#include "webhook/outbox.h"
#include "store/store.h"
#include "store/store_journal.h"
#include "base/util.h"

struct runsd {
    struct event_base *base;
    rd_config *cfg;
    rd_config *old_cfgs[16]; /* configs replaced by reloads: runs may still name their flows */
    int n_old;
    rd_store *store;
    rd_outbox *outbox;
    rd_engine *eng;
    rd_http *http;
    rd_api *api;         /* owned by http */
    rd_metrics *metrics; /* every layer counts into it; freed last */
    struct event *probe; /* the loop stall probe (probe_on_tick) */
    double probe_due, stall_max;
    rd_metric *m_stall_max;
    void (*done)(void *);
    void *done_arg;
};

int runsd_config_load(const char *path, rd_config **out, char *err, size_t errlen)
{
    return rd_config_load(path, out, err, errlen);
}

void runsd_config_free(rd_config *cfg)
{
    rd_config_free(cfg);
}

int runsd_config_warnings(const rd_config *cfg, char *buf, size_t len)
{
    const char *first = NULL;
    int n = 0;
    rd_cg_probe p;

    if (len > 0)
        buf[0] = '\0';
    for (int i = 0; i < cfg->n_flows; i++)
        if (!cfg->flows[i].external && cfg->flows[i].max_processes > 0 && n++ == 0)
            first = cfg->flows[i].name;
    if (n == 0)
        return 0;
    /* Read-only: under v2 the daemon would also have to move into a leaf of its cgroup,
     * which only the daemon itself can find out (systemd gives it its own cgroup). */
    rd_cg_detect("", &p);
    if (p.mode != RD_CG_NONE)
        return 0;
    snprintf(buf, len,
             "max_processes (flow '%s'%s) cannot be enforced on this machine: %s; workers "
             "would run without a process limit\n",
             first, n > 1 ? " and others" : "", p.why);
    return 1;
}

/* runsd_build_info: 1, with the version and the versions of the libraries it runs on. */
static int register_build_info(rd_metrics *m)
{
    char curl[32];
    snprintf(curl, sizeof curl, "%s", curl_version_info(CURLVERSION_NOW)->version);
    rd_metric *f = rd_metrics_gauge(
        m, "runsd_build_info",
        "Always 1; the labels say which runsd and which libraries this process runs.",
        RD_LV("version", "sqlite", "libevent", "libcurl"));
    if (!f)
        return RD_ERR;
    rd_metric_set(f, RD_LV(RUNSD_VERSION, sqlite3_libversion(), event_get_version(), curl), 1);
    return 0;
}

/* The loop stall probe: a 10 ms timer that measures how late it fires. Anything that holds
 * the loop (a store round trip, a long commit, a big JSON reply) shows as lateness; the
 * largest is exported, so a benchmark can report the worst stall under load. */
#define PROBE_TICK 0.010

static void probe_on_tick(evutil_socket_t fd, short what, void *arg)
{
    runsd *d = arg;
    double now = rd_metrics_clock(), late = now - d->probe_due;

    if (d->probe_due > 0 && late > d->stall_max)
        d->stall_max = late;
    d->probe_due = now + PROBE_TICK;
}

static void probe_on_collect(void *arg)
{
    runsd *d = arg;
    rd_metric_set(d->m_stall_max, NULL, d->stall_max);
}

static int start_probe(runsd *d)
{
    struct timeval tv = {0, (int)(PROBE_TICK * 1e6)};

    d->m_stall_max = rd_metrics_gauge(d->metrics, "runsd_loop_stall_max_seconds",
                                      "The longest the event loop was held past a 10 ms timer "
                                      "since the start.",
                                      NULL);
    d->probe = event_new(d->base, -1, EV_PERSIST, probe_on_tick, d);
    if (!d->m_stall_max || !d->probe || event_add(d->probe, &tv) != 0)
        return RD_ERR;
    return rd_metrics_collector(d->metrics, probe_on_collect, d, NULL) == 0 ? 0 : RD_ERR;
}

/* The registry, the process and build families, and each layer's families. */
static int wire_metrics(runsd *d)
{
    d->metrics = rd_metrics_new();
    if (!d->metrics || rd_metrics_process(d->metrics) != 0 || register_build_info(d->metrics) != 0)
        return RD_ERR;
    if (rd_store_journal_set_metrics(d->store, d->metrics) != 0 ||
        rd_engine_set_metrics(d->eng, d->metrics) != 0 ||
        rd_outbox_set_metrics(d->outbox, d->metrics) != 0 ||
        rd_http_set_metrics(d->http, d->metrics) != 0)
        return RD_ERR;
    return start_probe(d);
}

static int log_format(const char *s)
{
    return s && strcmp(s, "json") == 0 ? RD_LOG_JSON : RD_LOG_LOGFMT;
}

static int log_level(const char *s)
{
    if (!s || strcmp(s, "info") == 0)
        return RD_LOG_INFO;
    if (strcmp(s, "debug") == 0)
        return RD_LOG_DEBUG;
    if (strcmp(s, "warn") == 0)
        return RD_LOG_WARN;
    return RD_LOG_ERR;
}

int runsd_config_check_commands(const rd_config *cfg, char *buf, size_t len)
{
    return rd_config_check_commands(cfg, buf, len);
}

/* Under socket activation the listen keys are not what clients reach: links use systemd's
 * socket unless public_url is set. A reload must not drop every key while a socket beyond
 * loopback is open (rd_http_listen refuses that at start). */
static bool activated_links(runsd *d, rd_config *cfg, char *err, size_t errlen)
{
    const char *url = rd_http_activated_url(d->http);

    if (rd_http_activated_open(d->http) && cfg->n_keys == 0) {
        snprintf(err, errlen, "systemd's socket is not on loopback: [auth] keys are required");
        return false;
    }
    if (url && cfg->public_url_derived) {
        char *copy = strdup(url);
        if (!copy) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        free(cfg->public_url);
        cfg->public_url = copy;
    }
    return true;
}

static bool is_pg(const rd_config *cfg)
{
    return cfg->store_backend && strcmp(cfg->store_backend, "postgresql") == 0;
}

/* The backend [store] backend names; the journal is wrapped around it by the caller. */
static int open_store(struct event_base *base, const rd_config *cfg, rd_store **out, char *err,
                      size_t errlen)
{
    if (is_pg(cfg))
        return rd_store_open_pg(&(rd_store_pg_opts){.dsn = cfg->store_dsn,
                                                    .password_file = cfg->store_password_file,
                                                    .timeout_ms = cfg->store_timeout_ms,
                                                    .base = base},
                                out, err, errlen);
    rd_store_opts so = {.allow_memory = cfg->store_allow_memory,
                        .synchronous_full =
                            cfg->store_synchronous && strcmp(cfg->store_synchronous, "full") == 0};
    return rd_store_open_sqlite(cfg->store_path, &so, out, err, errlen);
}

int runsd_new(struct event_base *base, rd_config *cfg, runsd **out, char *err, size_t errlen)
{
    runsd *d = calloc(1, sizeof *d);
    if (!d) {
        rd_config_free(cfg);
        return snprintf(err, errlen, "out of memory"), RD_ERR;
    }
    d->base = base;
    d->cfg = cfg;
    rd_log_set_level(log_level(cfg->log_level));
    rd_log_set_format(log_format(cfg->log_format));
    if (open_store(base, cfg, &d->store, err, errlen) != 0)
        goto fail;
    /* A failed commit (disk full, I/O error) keeps its writes for the next one. */
    d->store = rd_store_journal_wrap(d->store);
    if (!d->store) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    d->eng = rd_engine_new(base, d->store, cfg);
    if (!d->eng) {
        snprintf(err, errlen, "cannot create the engine");
        goto fail;
    }
    d->outbox = rd_outbox_new(base, d->store, cfg);
    if (!d->outbox) {
        snprintf(err, errlen, "cannot create the webhook outbox (libcurl)");
        goto fail;
    }
    rd_engine_set_outbox(d->eng, d->outbox);
    d->http = rd_http_new(base, cfg, err, errlen);
    if (!d->http)
        goto fail;
    if (wire_metrics(d) != 0) {
        snprintf(err, errlen, "cannot create the metrics (out of memory)");
        goto fail;
    }
    rd_api_opts ao = {
        .base = base, .eng = d->eng, .outbox = d->outbox, .cfg = cfg, .metrics = d->metrics};
    /* The API's state belongs to the server from here on: rd_http_free frees it. */
    if (rd_api_register(d->http, &ao, &d->api, err, errlen) != 0 ||
        rd_http_listen(d->http, err, errlen) != 0 || !activated_links(d, cfg, err, errlen))
        goto fail;
    if (rd_engine_recover(d->eng) != 0) {
        snprintf(err, errlen, "recovery failed: the store could not be read or written");
        goto fail;
    }
    if (rd_outbox_recover(d->outbox) != 0) {
        snprintf(err, errlen, "webhook recovery failed: the store could not be written");
        goto fail;
    }
    *out = d;
    return 0;
fail:
    runsd_free(d);
    return RD_ERR;
}

int runsd_start(runsd *d)
{
    /* Never the dsn: it is the operator's, and the log is not the place for it. */
    rd_log_info("runsd listening on port %d with %d flow(s), store %s", rd_http_port(d->http),
                d->cfg->n_flows, is_pg(d->cfg) ? "postgresql" : d->cfg->store_path);
    return 0;
}

int runsd_reload(runsd *d, rd_config *cfg, char *err, size_t errlen)
{
    /* Listeners and the store are bound once; a reload that changes them is refused so the
     * operator is not misled into thinking it took effect. */
    bool same_listen = cfg->n_listen == d->cfg->n_listen;
    for (int i = 0; same_listen && i < cfg->n_listen; i++)
        same_listen = strcmp(cfg->listen[i], d->cfg->listen[i]) == 0;
    bool same_store =
        strcmp(cfg->store_path, d->cfg->store_path) == 0 && is_pg(cfg) == is_pg(d->cfg) &&
        strcmp(cfg->store_dsn ? cfg->store_dsn : "", d->cfg->store_dsn ? d->cfg->store_dsn : "") ==
            0;
    if (!same_listen || !same_store) {
        snprintf(err, errlen, "listen and the [store] need a restart; nothing was changed");
        rd_config_free(cfg);
        return RD_EINVAL;
    }
    if (!activated_links(d, cfg, err, errlen)) {
        rd_config_free(cfg);
        return RD_EINVAL;
    }
    if (d->n_old >= (int)(sizeof d->old_cfgs / sizeof d->old_cfgs[0])) {
        rd_config_free(d->old_cfgs[0]);
        memmove(d->old_cfgs, d->old_cfgs + 1, sizeof d->old_cfgs - sizeof d->old_cfgs[0]);
        d->n_old--;
    }
    /* The old config stays allocated for a while: nothing should hold its pointers past
     * this call, but keeping a few is cheap insurance against a callback that does. */
    d->old_cfgs[d->n_old++] = d->cfg;
    d->cfg = cfg;
    rd_log_set_level(log_level(cfg->log_level));
    rd_log_set_format(log_format(cfg->log_format));
    rd_engine_set_config(d->eng, cfg);
    rd_http_set_config(d->http, cfg);
    rd_outbox_set_config(d->outbox, cfg);
    rd_logk(RD_LOG_INFO, "config reloaded", RD_LS("path", cfg->path), RD_LI("flows", cfg->n_flows),
            RD_LS("log_format", cfg->log_format), RD_LS("log_level", cfg->log_level));
    return 0;
}

void runsd_log(int priority, const char *msg, const char *reason)
{
    rd_logk(priority, msg, RD_LS("reason", reason));
}

static void server_on_engine_done(void *arg)
{
    runsd *d = arg;
    if (d->done)
        d->done(d->done_arg);
}

void runsd_shutdown(runsd *d, void (*done)(void *arg), void *arg)
{
    d->done = done;
    d->done_arg = arg;
    if (d->http)
        rd_http_close(d->http);
    rd_engine_shutdown(d->eng, server_on_engine_done, d);
}

void runsd_free(runsd *d)
{
    if (!d)
        return;
    if (d->probe)
        event_free(d->probe);
    rd_http_free(d->http); /* with the API registered into it, before the engine it uses */
    rd_engine_free(d->eng);
    rd_outbox_free(d->outbox); /* after the engine, which holds it; before the store */
    rd_store_close(d->store);
    rd_metrics_free(d->metrics); /* last: everything above counted into it until it went */
    for (int i = 0; i < d->n_old; i++)
        rd_config_free(d->old_cfgs[i]);
    rd_config_free(d->cfg);
    free(d);
}

void runsd_get_status(const runsd *d, runsd_status *out)
{
    rd_engine_counts(d->eng, &out->running, &out->queued, &out->waiting);
    out->subscribers = rd_api_subscribers(d->api);
}

int runsd_bound_port(const runsd *d)
{
    return d->http ? rd_http_port(d->http) : 0;
}

typedef struct route_walk {
    void (*fn)(void *arg, const char *method, const char *pattern);
    void *arg;
} route_walk;

static void server_on_route(void *arg, unsigned methods, const char *pattern, int scope)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{RD_METHOD_GET, "GET"}, {RD_METHOD_HEAD, "HEAD"},   {RD_METHOD_POST, "POST"},
                 {RD_METHOD_PUT, "PUT"}, {RD_METHOD_PATCH, "PATCH"}, {RD_METHOD_DELETE, "DELETE"}};
    route_walk *w = arg;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (methods & names[i].bit)
            w->fn(w->arg, names[i].name, pattern);
}

void runsd_routes(const runsd *d, void (*fn)(void *arg, const char *method, const char *pattern),
                  void *arg)
{
    route_walk w = {fn, arg};
    if (d->http)
        rd_http_each_route(d->http, server_on_route, &w);
}
