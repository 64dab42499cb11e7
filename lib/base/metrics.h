/*
 * metrics.h: a small Prometheus metrics registry. Families (counters, gauges, histograms
 * with fixed buckets) are registered once with a name, a help text and their label names;
 * modules then count into them, and rd_metrics_expose writes every family in the text
 * exposition format 0.0.4, families sorted by name and series by label values, so two
 * scrapes compare line by line.
 *
 * Label values must come from bounded sets (flow names from the config, route patterns,
 * statuses, causes): the registry also caps the series of each family, so a bug that passes
 * a client's string cannot grow memory without bound. Collectors are callbacks run at the
 * start of each exposition, to fill gauges (and counters a module keeps itself) from the
 * module's own state.
 *
 * Every counting function accepts a NULL family and does nothing: a module that was not
 * given a registry (unit tests) counts nowhere. Not thread-safe: the loop thread only.
 */
#ifndef RUNSD_METRICS_H
#define RUNSD_METRICS_H

#include <stddef.h>

typedef struct rd_metrics rd_metrics;
typedef struct rd_metric rd_metric;

typedef enum { RD_METRIC_COUNTER, RD_METRIC_GAUGE, RD_METRIC_HISTOGRAM } rd_metric_type;

/** The most labels a family has, and the most series one holds (more are dropped). */
#define RD_METRIC_MAX_LABELS 4
#define RD_METRIC_MAX_SERIES 4096

/** Label values (or names) as an array literal: RD_LV("flow_a", "succeeded"). */
#define RD_LV(...) ((const char *const[]){__VA_ARGS__, NULL})

/** A callback run at the start of every exposition (see rd_metrics_collector). */
typedef void (*rd_metrics_collect_fn)(void *arg);

/** A new, empty registry (NULL on out of memory). Free with rd_metrics_free, after every
 * module that counts into it. */
rd_metrics *rd_metrics_new(void);
void rd_metrics_free(rd_metrics *m);

/** Registers a family. labels: NULL-terminated label names (RD_LV(...)) or NULL; buckets:
 * a histogram's ascending upper bounds (n of them; +Inf is implied), else NULL and 0. A
 * counter's name must end in _total and no other's may (promtool's rule). Registering a name
 * again with the same type returns the family already there. NULL when m is NULL, the name
 * or a label is malformed, the name is taken by another type, or out of memory. Owned by m. */
rd_metric *rd_metrics_family(rd_metrics *m, rd_metric_type type, const char *name, const char *help,
                             const char *const *labels, const double *buckets, int n);
rd_metric *rd_metrics_counter(rd_metrics *m, const char *name, const char *help,
                              const char *const *labels);
rd_metric *rd_metrics_gauge(rd_metrics *m, const char *name, const char *help,
                            const char *const *labels);
rd_metric *rd_metrics_histogram(rd_metrics *m, const char *name, const char *help,
                                const char *const *labels, const double *buckets, int n);

/** Buckets for durations in seconds: 5 ms to 1 h. */
extern const double rd_metrics_seconds_buckets[];
extern const int rd_metrics_seconds_nbuckets;
/** Buckets for short latencies in seconds: 0.5 ms to 10 s. */
extern const double rd_metrics_latency_buckets[];
extern const int rd_metrics_latency_nbuckets;

/* Counting. values: one value per label of the family, in order (RD_LV(...)), NULL when it
 * has none. A series appears on first use. */
/** Adds v (>= 0; a negative v is ignored on a counter) to a counter or a gauge. */
void rd_metric_add(rd_metric *f, const char *const *values, double v);
/** rd_metric_add(f, values, 1). */
void rd_metric_inc(rd_metric *f, const char *const *values);
/** Sets a gauge. On a counter (a collector copying a module's own count) the value only
 * ever goes up: a lower v is ignored, so a counter never goes down. */
void rd_metric_set(rd_metric *f, const char *const *values, double v);
/** Records one observation in a histogram. */
void rd_metric_observe(rd_metric *f, const char *const *values, double v);
/** Sets every series of a gauge to 0 (a collector's first step before it refills it; the
 * series stay, so a flow with no run shows 0 rather than vanishing). */
void rd_metric_zero(rd_metric *f);

/** Adds a collector, run in registration order at each exposition. arg is borrowed and must
 * outlive the scrapes, unless free_arg is given: then the registry owns arg and frees it with
 * free_arg when it is freed. 0, or -1 (arg is then still the caller's). */
int rd_metrics_collector(rd_metrics *m, rd_metrics_collect_fn fn, void *arg,
                         void (*free_arg)(void *arg));

/** A monotonic clock in seconds (microsecond resolution), to time what a histogram observes. */
double rd_metrics_clock(void);

/** Runs the collectors and returns the whole exposition (text format 0.0.4), NUL-terminated,
 * its length in *len. The caller frees it. NULL on out of memory. */
char *rd_metrics_expose(rd_metrics *m, size_t *len);

/** Registers the standard process families (process_cpu_seconds_total,
 * process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
 * process_max_fds, process_start_time_seconds), read from /proc/self at each exposition.
 * 0 or -1. */
int rd_metrics_process(rd_metrics *m);

#endif
