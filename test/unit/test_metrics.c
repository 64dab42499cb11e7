/*
 * test_metrics.c: unit tests for lib/base/metrics.c: the exposition of each type (HELP and
 * TYPE on every family, families and series sorted), label value escaping, histogram buckets
 * cumulative up to +Inf with _sum and _count, counters that never go down, the naming rules
 * promtool enforces, the series cap, collectors, and the process families from /proc.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"

static char *expose(rd_metrics *m)
{
    size_t len = 0;
    char *text = rd_metrics_expose(m, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void test_counter_gauge(void **state)
{
    rd_metrics *m = rd_metrics_new();
    rd_metric *c = rd_metrics_counter(m, "t_things_total", "Things.", RD_LV("kind"));
    rd_metric *g = rd_metrics_gauge(m, "t_level", "A level.", NULL);
    assert_non_null(c);
    assert_non_null(g);
    rd_metric_inc(c, RD_LV("b"));
    rd_metric_add(c, RD_LV("a"), 2.5);
    rd_metric_inc(c, RD_LV("b"));
    rd_metric_add(c, RD_LV("b"), -5); /* a counter never goes down */
    rd_metric_set(c, RD_LV("a"), 1);  /* nor when a collector copies a lower count */
    rd_metric_set(g, NULL, -3);
    char *t = expose(m);
    assert_string_equal(t, "# HELP t_level A level.\n"
                           "# TYPE t_level gauge\n"
                           "t_level -3\n"
                           "# HELP t_things_total Things.\n"
                           "# TYPE t_things_total counter\n"
                           "t_things_total{kind=\"a\"} 2.5\n"
                           "t_things_total{kind=\"b\"} 2\n");
    free(t);
    rd_metric_zero(g);
    rd_metric_set(c, RD_LV("a"), 7);
    t = expose(m);
    assert_non_null(strstr(t, "t_level 0\n"));
    assert_non_null(strstr(t, "t_things_total{kind=\"a\"} 7\n"));
    free(t);
    rd_metrics_free(m);
}

static void test_escaping(void **state)
{
    rd_metrics *m = rd_metrics_new();
    rd_metric *g =
        rd_metrics_gauge(m, "t_g", "Help with \\ and\nnewline \"kept\".", RD_LV("a", "b"));
    rd_metric_set(g, RD_LV("q\"uote", "back\\slash\nnl"), 1);
    char *t = expose(m);
    assert_string_equal(t, "# HELP t_g Help with \\\\ and\\nnewline \"kept\".\n"
                           "# TYPE t_g gauge\n"
                           "t_g{a=\"q\\\"uote\",b=\"back\\\\slash\\nnl\"} 1\n");
    free(t);
    rd_metrics_free(m);
}

static void test_histogram(void **state)
{
    rd_metrics *m = rd_metrics_new();
    static const double b[] = {0.1, 1, 5};
    rd_metric *h = rd_metrics_histogram(m, "t_wait_seconds", "Waits.", RD_LV("flow"), b, 3);
    assert_non_null(h);
    rd_metric_observe(h, RD_LV("f"), 0.05);
    rd_metric_observe(h, RD_LV("f"), 0.1); /* on a bound: in that bucket (le) */
    rd_metric_observe(h, RD_LV("f"), 3);
    rd_metric_observe(h, RD_LV("f"), 100);
    char *t = expose(m);
    assert_string_equal(t, "# HELP t_wait_seconds Waits.\n"
                           "# TYPE t_wait_seconds histogram\n"
                           "t_wait_seconds_bucket{flow=\"f\",le=\"0.1\"} 2\n"
                           "t_wait_seconds_bucket{flow=\"f\",le=\"1\"} 2\n"
                           "t_wait_seconds_bucket{flow=\"f\",le=\"5\"} 3\n"
                           "t_wait_seconds_bucket{flow=\"f\",le=\"+Inf\"} 4\n"
                           "t_wait_seconds_sum{flow=\"f\"} 103.15\n"
                           "t_wait_seconds_count{flow=\"f\"} 4\n");
    free(t);
    rd_metrics_free(m);
}

static void test_histogram_exact(void **state)
{
    rd_metrics *m = rd_metrics_new();
    static const double b[] = {0.5, 2};
    rd_metric *h = rd_metrics_histogram(m, "t_d_seconds", "D.", NULL, b, 2);
    char *t = expose(m); /* no observation yet: the series is there, all zero */
    assert_string_equal(t, "# HELP t_d_seconds D.\n"
                           "# TYPE t_d_seconds histogram\n"
                           "t_d_seconds_bucket{le=\"0.5\"} 0\n"
                           "t_d_seconds_bucket{le=\"2\"} 0\n"
                           "t_d_seconds_bucket{le=\"+Inf\"} 0\n"
                           "t_d_seconds_sum 0\n"
                           "t_d_seconds_count 0\n");
    free(t);
    rd_metric_observe(h, NULL, 0.25);
    rd_metric_observe(h, NULL, 1.5);
    rd_metric_observe(h, NULL, 9);
    t = expose(m);
    assert_string_equal(t, "# HELP t_d_seconds D.\n"
                           "# TYPE t_d_seconds histogram\n"
                           "t_d_seconds_bucket{le=\"0.5\"} 1\n"
                           "t_d_seconds_bucket{le=\"2\"} 2\n"
                           "t_d_seconds_bucket{le=\"+Inf\"} 3\n"
                           "t_d_seconds_sum 10.75\n"
                           "t_d_seconds_count 3\n");
    free(t);
    rd_metrics_free(m);
}

static void test_names(void **state)
{
    rd_metrics *m = rd_metrics_new();
    static const double b[] = {1};
    assert_null(rd_metrics_counter(m, "t_things", "no _total", NULL));
    assert_null(rd_metrics_gauge(m, "t_level_total", "_total on a gauge", NULL));
    assert_null(rd_metrics_gauge(m, "1t", "digit first", NULL));
    assert_null(rd_metrics_gauge(m, "t-x", "dash", NULL));
    assert_null(rd_metrics_gauge(m, "t_x", "reserved label", RD_LV("__x")));
    assert_null(rd_metrics_histogram(m, "t_h", "le label", RD_LV("le"), b, 1));
    static const double bad[] = {2, 1};
    assert_null(rd_metrics_histogram(m, "t_h", "unsorted", NULL, bad, 2));
    rd_metric *a = rd_metrics_gauge(m, "t_x", "x", RD_LV("k"));
    assert_non_null(a);
    assert_ptr_equal(rd_metrics_gauge(m, "t_x", "x", RD_LV("k")), a); /* same: the same one */
    assert_null(rd_metrics_gauge(m, "t_x", "x", RD_LV("other")));     /* another shape */
    assert_null(rd_metrics_counter(NULL, "t_y_total", "no registry", NULL));
    rd_metric_inc(NULL, NULL); /* counting into nothing is allowed */
    rd_metric_observe(NULL, NULL, 1);
    rd_metrics_free(m);
}

static void test_series_cap(void **state)
{
    rd_metrics *m = rd_metrics_new();
    rd_metric *c = rd_metrics_counter(m, "t_many_total", "Many.", RD_LV("k"));
    char v[32];
    for (int i = 0; i < RD_METRIC_MAX_SERIES + 100; i++) {
        snprintf(v, sizeof v, "v%d", i);
        rd_metric_inc(c, RD_LV(v));
    }
    char *t = expose(m);
    size_t lines = 0;
    for (char *p = t; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + RD_METRIC_MAX_SERIES);
    free(t);
    rd_metrics_free(m);
}

static int collected;

static void on_collect(void *arg)
{
    collected++;
    rd_metric_set(arg, NULL, collected);
}

static void test_collector_and_process(void **state)
{
    rd_metrics *m = rd_metrics_new();
    rd_metric *g = rd_metrics_gauge(m, "t_scrapes", "Scrapes.", NULL);
    assert_int_equal(rd_metrics_collector(m, on_collect, g, NULL), 0);
    assert_int_equal(rd_metrics_process(m), 0);
    char *t = expose(m);
    assert_non_null(strstr(t, "t_scrapes 1\n"));
    free(t);
    t = expose(m);
    assert_non_null(strstr(t, "t_scrapes 2\n"));
    static const char *const proc[] = {"\nprocess_cpu_seconds_total ",
                                       "\nprocess_open_fds ",
                                       "\nprocess_max_fds ",
                                       "\nprocess_resident_memory_bytes ",
                                       "\nprocess_virtual_memory_bytes ",
                                       "\nprocess_start_time_seconds "};
    for (size_t i = 0; i < sizeof proc / sizeof proc[0]; i++) {
        char *line = strstr(t, proc[i]);
        assert_non_null(line);
        if (i > 0) /* all but the CPU time of a fresh process are above zero */
            assert_true(strtod(line + strlen(proc[i]), NULL) > 0);
    }
    free(t);
    rd_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_gauge),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_exact),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_series_cap),
        cmocka_unit_test(test_collector_and_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
