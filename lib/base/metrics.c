/*
 * metrics.c: the metrics registry and its text exposition (see metrics.h). A family keeps
 * its series in a map keyed by the joined label values and in an array that the exposition
 * sorts; a histogram series keeps one count per bucket and makes them cumulative only when
 * written, so an observation costs a short scan of the bounds and one increment.
 */
#include "base/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"

typedef struct series {
    char *key;     /* the label values joined by US (0x1f): the map key and the sort key */
    char **values; /* one per label of the family */
    double value;  /* counter, gauge */
    double sum;    /* histogram */
    uint64_t count;
    uint64_t *hits; /* histogram: observations per bucket (not cumulative), the last +Inf */
} series;

struct rd_metric {
    rd_metric_type type;
    char *name, *help;
    char *labels[RD_METRIC_MAX_LABELS];
    int nlabels;
    double *bounds;
    int nbounds;
    rd_map *index; /* key -> series */
    series **all;
    size_t n, cap;
    bool warned; /* the series cap was hit (logged once) */
};

typedef struct collector {
    rd_metrics_collect_fn fn;
    void *arg;
    void (*free_arg)(void *arg);
} collector;

struct rd_metrics {
    rd_metric **fams;
    size_t n, cap;
    collector *cols;
    int ncols;
};

const double rd_metrics_seconds_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,    2.5,
                                             5,     10,   30,    60,   120, 300,  600, 1800, 3600};
const int rd_metrics_seconds_nbuckets =
    (int)(sizeof rd_metrics_seconds_buckets / sizeof rd_metrics_seconds_buckets[0]);
const double rd_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const int rd_metrics_latency_nbuckets =
    (int)(sizeof rd_metrics_latency_buckets / sizeof rd_metrics_latency_buckets[0]);

/* --- registration --------------------------------------------------------------------- */

rd_metrics *rd_metrics_new(void)
{
    return calloc(1, sizeof(rd_metrics));
}

static void series_free(series *s, int nlabels)
{
    if (!s)
        return;
    for (int i = 0; s->values && i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->hits);
    free(s->key);
    free(s);
}

static void family_free(rd_metric *f)
{
    for (size_t i = 0; i < f->n; i++)
        series_free(f->all[i], f->nlabels);
    free(f->all);
    rd_map_free(f->index);
    for (int i = 0; i < f->nlabels; i++)
        free(f->labels[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void rd_metrics_free(rd_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        family_free(m->fams[i]);
    free(m->fams);
    for (int i = 0; i < m->ncols; i++)
        if (m->cols[i].free_arg)
            m->cols[i].free_arg(m->cols[i].arg);
    free(m->cols);
    free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for names; labels allow no ':' and may not start with "__". */
static bool valid_name(const char *s, bool label)
{
    if (!s || !*s || (label && strncmp(s, "__", 2) == 0))
        return false;
    for (const char *p = s; *p; p++) {
        bool alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                     (!label && *p == ':');
        if (!alpha && !(p > s && *p >= '0' && *p <= '9'))
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool valid_family(rd_metric_type type, const char *name, const char *const *labels,
                         const double *buckets, int n)
{
    if (!valid_name(name, false) || (type == RD_METRIC_COUNTER) != ends_with(name, "_total"))
        return false;
    int nl = 0;
    for (; labels && labels[nl]; nl++)
        if (nl >= RD_METRIC_MAX_LABELS || !valid_name(labels[nl], true) ||
            (type == RD_METRIC_HISTOGRAM && strcmp(labels[nl], "le") == 0))
            return false;
    if (type != RD_METRIC_HISTOGRAM)
        return true;
    for (int i = 1; i < n; i++)
        if (!(buckets[i] > buckets[i - 1]))
            return false;
    return buckets && n > 0 && isfinite(buckets[n - 1]);
}

static rd_metric *find(const rd_metrics *m, const char *name)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->fams[i]->name, name) == 0)
            return m->fams[i];
    return NULL;
}

static series *get_series(rd_metric *f, const char *const *values);

static bool same_shape(const rd_metric *f, rd_metric_type type, const char *const *labels)
{
    int n = 0;
    for (; labels && labels[n]; n++)
        if (n >= f->nlabels || strcmp(labels[n], f->labels[n]) != 0)
            return false;
    return f->type == type && n == f->nlabels;
}

static rd_metric *family_new(rd_metric_type type, const char *name, const char *help,
                             const char *const *labels, const double *buckets, int n)
{
    rd_metric *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->index = rd_map_new();
    bool ok = f->name && f->help && f->index;
    for (; ok && labels && labels[f->nlabels]; f->nlabels++)
        ok = (f->labels[f->nlabels] = strdup(labels[f->nlabels])) != NULL;
    if (ok && type == RD_METRIC_HISTOGRAM) {
        f->bounds = malloc((size_t)n * sizeof *f->bounds);
        ok = f->bounds != NULL;
        if (ok)
            memcpy(f->bounds, buckets, (size_t)n * sizeof *f->bounds);
        f->nbounds = n;
    }
    /* A family without labels has its one series from the start: it shows 0, not nothing. */
    if (ok && f->nlabels == 0)
        ok = get_series(f, NULL) != NULL;
    if (!ok) {
        family_free(f);
        return NULL;
    }
    return f;
}

rd_metric *rd_metrics_family(rd_metrics *m, rd_metric_type type, const char *name, const char *help,
                             const char *const *labels, const double *buckets, int n)
{
    if (!m)
        return NULL;
    if (!valid_family(type, name, labels, buckets, n)) {
        rd_log_err("metrics: refused family '%s' (its name, labels or buckets)", name);
        return NULL;
    }
    rd_metric *f = find(m, name);
    if (f)
        return same_shape(f, type, labels) ? f : NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 32;
        rd_metric **v = realloc(m->fams, cap * sizeof *v);
        if (!v)
            return NULL;
        m->fams = v;
        m->cap = cap;
    }
    f = family_new(type, name, help, labels, buckets, n);
    if (f)
        m->fams[m->n++] = f;
    return f;
}

rd_metric *rd_metrics_counter(rd_metrics *m, const char *name, const char *help,
                              const char *const *labels)
{
    return rd_metrics_family(m, RD_METRIC_COUNTER, name, help, labels, NULL, 0);
}

rd_metric *rd_metrics_gauge(rd_metrics *m, const char *name, const char *help,
                            const char *const *labels)
{
    return rd_metrics_family(m, RD_METRIC_GAUGE, name, help, labels, NULL, 0);
}

rd_metric *rd_metrics_histogram(rd_metrics *m, const char *name, const char *help,
                                const char *const *labels, const double *buckets, int n)
{
    return rd_metrics_family(m, RD_METRIC_HISTOGRAM, name, help, labels, buckets, n);
}

int rd_metrics_collector(rd_metrics *m, rd_metrics_collect_fn fn, void *arg,
                         void (*free_arg)(void *arg))
{
    if (!m || !fn)
        return -1;
    collector *v = realloc(m->cols, (size_t)(m->ncols + 1) * sizeof *v);
    if (!v)
        return -1;
    m->cols = v;
    m->cols[m->ncols++] = (collector){fn, arg, free_arg};
    return 0;
}

/* --- counting --------------------------------------------------------------------------- */

static char *join_values(const rd_metric *f, const char *const *values)
{
    size_t len = 1;
    for (int i = 0; i < f->nlabels; i++)
        len += strlen(values && values[i] ? values[i] : "") + 1;
    char *key = malloc(len), *p = key;
    if (!key)
        return NULL;
    for (int i = 0; i < f->nlabels; i++) {
        const char *v = values && values[i] ? values[i] : "";
        size_t n = strlen(v);
        memcpy(p, v, n);
        p += n;
        *p++ = '\x1f';
    }
    *p = 0;
    return key;
}

static series *series_new(rd_metric *f, char *key, const char *const *values)
{
    series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->key = key;
    s->values = calloc((size_t)f->nlabels + 1, sizeof *s->values);
    bool ok = s->values != NULL;
    for (int i = 0; ok && i < f->nlabels; i++)
        ok = (s->values[i] = strdup(values && values[i] ? values[i] : "")) != NULL;
    if (ok && f->type == RD_METRIC_HISTOGRAM)
        ok = (s->hits = calloc((size_t)f->nbounds + 1, sizeof *s->hits)) != NULL;
    if (!ok) {
        series_free(s, f->nlabels);
        return NULL;
    }
    return s;
}

static series *get_series(rd_metric *f, const char *const *values)
{
    char *key = join_values(f, values);
    if (!key)
        return NULL;
    series *s = rd_map_get(f->index, key);
    if (s) {
        free(key);
        return s;
    }
    if (f->n >= RD_METRIC_MAX_SERIES) {
        if (!f->warned)
            rd_log_warn("metrics: %s has %d series; new ones are dropped", f->name,
                        RD_METRIC_MAX_SERIES);
        f->warned = true;
        free(key);
        return NULL;
    }
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        series **v = realloc(f->all, cap * sizeof *v);
        if (!v) {
            free(key);
            return NULL;
        }
        f->all = v;
        f->cap = cap;
    }
    s = series_new(f, key, values);
    if (!s)
        return NULL;
    if (rd_map_set(f->index, s->key, s) != 0) {
        series_free(s, f->nlabels);
        return NULL;
    }
    f->all[f->n++] = s;
    return s;
}

void rd_metric_add(rd_metric *f, const char *const *values, double v)
{
    if (!f || f->type == RD_METRIC_HISTOGRAM || (f->type == RD_METRIC_COUNTER && !(v >= 0)))
        return;
    series *s = get_series(f, values);
    if (s)
        s->value += v;
}

void rd_metric_inc(rd_metric *f, const char *const *values)
{
    rd_metric_add(f, values, 1);
}

void rd_metric_set(rd_metric *f, const char *const *values, double v)
{
    if (!f || f->type == RD_METRIC_HISTOGRAM)
        return;
    series *s = get_series(f, values);
    if (s && (f->type == RD_METRIC_GAUGE || v > s->value))
        s->value = v;
}

void rd_metric_observe(rd_metric *f, const char *const *values, double v)
{
    if (!f || f->type != RD_METRIC_HISTOGRAM || isnan(v))
        return;
    series *s = get_series(f, values);
    if (!s)
        return;
    int b = 0;
    while (b < f->nbounds && v > f->bounds[b])
        b++;
    s->hits[b]++;
    s->count++;
    s->sum += v;
}

void rd_metric_zero(rd_metric *f)
{
    if (!f || f->type != RD_METRIC_GAUGE)
        return;
    for (size_t i = 0; i < f->n; i++)
        f->all[i]->value = 0;
}

double rd_metrics_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000) / 1e6;
}

/* --- exposition ------------------------------------------------------------------------- */

/* The shortest of %.15g and %.17g that reads back as v; Prometheus' spellings of the
 * non-finite values. */
static void put_number(FILE *out, double v)
{
    if (isnan(v)) {
        fputs("NaN", out);
    } else if (isinf(v)) {
        fputs(v > 0 ? "+Inf" : "-Inf", out);
    } else {
        char buf[40];
        snprintf(buf, sizeof buf, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, sizeof buf, "%.17g", v);
        fputs(buf, out);
    }
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static void put_escaped(FILE *out, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", out);
        else if (*s == '\n')
            fputs("\\n", out);
        else if (quote && *s == '"')
            fputs("\\\"", out);
        else
            fputc(*s, out);
    }
}

/* name{a="x",b="y"[,le="..."]} (or just name) */
static void put_sample_name(FILE *out, const rd_metric *f, const series *s, const char *suffix,
                            const double *le)
{
    fputs(f->name, out);
    fputs(suffix, out);
    if (f->nlabels == 0 && !le)
        return;
    fputc('{', out);
    for (int i = 0; i < f->nlabels; i++) {
        fprintf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
        put_escaped(out, s->values[i], true);
        fputc('"', out);
    }
    if (le) {
        fprintf(out, "%sle=\"", f->nlabels ? "," : "");
        put_number(out, *le);
        fputc('"', out);
    }
    fputc('}', out);
}

static void put_series(FILE *out, const rd_metric *f, const series *s)
{
    if (f->type != RD_METRIC_HISTOGRAM) {
        put_sample_name(out, f, s, "", NULL);
        fputc(' ', out);
        put_number(out, s->value);
        fputc('\n', out);
        return;
    }
    uint64_t cum = 0;
    for (int b = 0; b <= f->nbounds; b++) {
        double le = b < f->nbounds ? f->bounds[b] : INFINITY;
        cum += s->hits[b];
        put_sample_name(out, f, s, "_bucket", &le);
        fprintf(out, " %llu\n", (unsigned long long)cum);
    }
    put_sample_name(out, f, s, "_sum", NULL);
    fputc(' ', out);
    put_number(out, s->sum);
    fputc('\n', out);
    put_sample_name(out, f, s, "_count", NULL);
    fprintf(out, " %llu\n", (unsigned long long)s->count);
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(series *const *)a)->key, (*(series *const *)b)->key);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(rd_metric *const *)a)->name, (*(rd_metric *const *)b)->name);
}

static void put_family(FILE *out, rd_metric *f)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    fprintf(out, "# HELP %s ", f->name);
    put_escaped(out, f->help, false);
    fprintf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
    if (f->n > 1) /* qsort's array may not be NULL, even when empty */
        qsort(f->all, f->n, sizeof *f->all, by_key);
    for (size_t i = 0; i < f->n; i++)
        put_series(out, f, f->all[i]);
}

char *rd_metrics_expose(rd_metrics *m, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    if (!m)
        return NULL;
    for (int i = 0; i < m->ncols; i++)
        m->cols[i].fn(m->cols[i].arg);
    FILE *out = open_memstream(&buf, &n);
    if (!out)
        return NULL;
    if (m->n > 1)
        qsort(m->fams, m->n, sizeof *m->fams, by_name);
    for (size_t i = 0; i < m->n; i++)
        put_family(out, m->fams[i]);
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    if (len)
        *len = n;
    return buf;
}
