/*
 * runs_metrics.c: what the run set tells /metrics. Transitions are counted where they
 * happen (rd_runs_count_transition, called once by rd_run_transition): finished runs by
 * flow, status and reason, and the time a run waited in the queue and took from its first
 * start to its end, by flow. The gauges (runs by flow and status, runs waiting for a person)
 * are filled at scrape time from the records in memory, and the set's own counts (created,
 * events, items, protocol errors, commits) are copied into their counters then too.
 *
 * Label values come from bounded sets only: flow names (a run's flow was a configured one
 * when it was created), and the status and reason tables of model/fsm.h.
 */
#include <stdlib.h>

#include "base/metrics.h"
#include "run/run_int.h"

struct rd_runs_metrics {
    rd_metric *finished, *queue_wait, *duration, *by_status, *waiting;
    rd_metric *created, *events, *items, *proto_errors, *commits, *commit_failures;
};

static void count_active(rd_active *act, void *arg)
{
    struct rd_runs_metrics *m = arg;
    const rd_run *r = act->run;
    if (!rd_status_active(r->status))
        return;
    rd_metric_inc(m->by_status, RD_LV(r->flow, rd_status_name(r->status)));
    if (r->status == RD_ST_PAUSED || r->status == RD_ST_AUTH_REQUIRED)
        rd_metric_inc(m->waiting,
                      RD_LV(r->flow, r->status == RD_ST_PAUSED ? "approval" : "authorization"));
}

static void runs_on_collect(void *arg)
{
    rd_runs *rs = arg;
    struct rd_runs_metrics *m = rs->metrics;
    rd_metric_zero(m->by_status);
    rd_metric_zero(m->waiting);
    /* Every configured flow shows every active status, 0 included. */
    for (int i = 0; i < rs->cfg->n_flows; i++) {
        const char *flow = rs->cfg->flows[i].name;
        for (int s = 0; s < RD_ST__COUNT; s++)
            if (rd_status_active(s))
                rd_metric_add(m->by_status, RD_LV(flow, rd_status_name(s)), 0);
        rd_metric_add(m->waiting, RD_LV(flow, "approval"), 0);
        rd_metric_add(m->waiting, RD_LV(flow, "authorization"), 0);
    }
    rd_runs_each(rs, count_active, m);
    rd_metric_set(m->created, NULL, (double)rs->m_runs_created);
    rd_metric_set(m->events, NULL, (double)rs->m_events);
    rd_metric_set(m->items, NULL, (double)rs->m_items);
    rd_metric_set(m->proto_errors, NULL, (double)rs->m_proto_errors);
    rd_metric_set(m->commits, NULL, (double)rs->m_commits);
    rd_metric_set(m->commit_failures, NULL, (double)rs->m_commit_failures);
}

static void register_counts(struct rd_runs_metrics *m, rd_metrics *reg)
{
    m->created = rd_metrics_counter(reg, "runsd_runs_created_total", "Runs created.", NULL);
    m->events = rd_metrics_counter(reg, "runsd_events_total",
                                   "Events appended to the store (every type).", NULL);
    m->items = rd_metrics_counter(reg, "runsd_items_total", "Result items recorded.", NULL);
    m->proto_errors =
        rd_metrics_counter(reg, "runsd_protocol_errors_total",
                           "Worker protocol errors (bad lines, unknown types).", NULL);
    m->commits = rd_metrics_counter(reg, "runsd_store_commits_total",
                                    "Commits of the run pipeline, failed ones included.", NULL);
    m->commit_failures = rd_metrics_counter(reg, "runsd_store_commit_failures_total",
                                            "Commits of the run pipeline that failed.", NULL);
}

int rd_runs_set_metrics(rd_runs *rs, rd_metrics *reg)
{
    struct rd_runs_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return RD_ERR;
    m->finished = rd_metrics_counter(reg, "runsd_runs_finished_total",
                                     "Runs that reached a terminal status, by flow, status and "
                                     "termination reason.",
                                     RD_LV("flow", "status", "reason"));
    m->queue_wait = rd_metrics_histogram(
        reg, "runsd_run_queue_wait_seconds",
        "Time a run waited in status queued before a worker started it, by flow.", RD_LV("flow"),
        rd_metrics_seconds_buckets, rd_metrics_seconds_nbuckets);
    m->duration = rd_metrics_histogram(
        reg, "runsd_run_duration_seconds",
        "Time from a run's first start to its terminal status, by flow and status.",
        RD_LV("flow", "status"), rd_metrics_seconds_buckets, rd_metrics_seconds_nbuckets);
    m->by_status =
        rd_metrics_gauge(reg, "runsd_runs", "Active runs held by the daemon, by flow and status.",
                         RD_LV("flow", "status"));
    m->waiting = rd_metrics_gauge(reg, "runsd_runs_waiting_for_person",
                                  "Runs waiting for a person's approval or authorization, by "
                                  "flow.",
                                  RD_LV("flow", "action"));
    register_counts(m, reg);
    free(rs->metrics);
    rs->metrics = m;
    if (rd_metrics_collector(reg, runs_on_collect, rs, NULL) != 0)
        return RD_ERR;
    return 0;
}

void rd_runs_count_transition(rd_active *act, rd_status from, rd_status to)
{
    struct rd_runs_metrics *m = act->rs->metrics;
    const rd_run *r = act->run;
    int64_t now = r->updated_at;
    if (to == RD_ST_QUEUED)
        act->queued_at = now;
    if (!m)
        return;
    if (from == RD_ST_QUEUED && to == RD_ST_RUNNING && act->queued_at > 0)
        rd_metric_observe(m->queue_wait, RD_LV(r->flow), (double)(now - act->queued_at) / 1e3);
    if (!rd_status_terminal(to))
        return;
    const char *status = rd_status_name(to);
    rd_metric_inc(m->finished,
                  RD_LV(r->flow, status, r->reason ? rd_reason_name(r->reason) : "none"));
    if (r->started_at > 0)
        rd_metric_observe(m->duration, RD_LV(r->flow, status),
                          (double)(r->finished_at - r->started_at) / 1e3);
}
