/*
 * test_http_router.c: unit tests for lib/http/router.c, the route table as pure code: path
 * splitting (trailing slash, empty and dot segments, depth), exact matches, {name}
 * captures, a literal winning over a capture, 404 and 405 with the Allow list, and the
 * patterns the table refuses. The table here mirrors the daemon's own routes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "http/router.h"

#define GET_HEAD (RD_METHOD_GET | RD_METHOD_HEAD)

/* Distinct addresses to stand for handlers. */
static int h_health, h_list, h_create, h_get, h_delete, h_cancel, h_events_get, h_events_post,
    h_approval, h_redeliver;

static int setup(void **state)
{
    rd_router *rt = rd_router_new();
    assert_non_null(rt);
    static const struct {
        unsigned m;
        const char *pattern;
        int *data;
    } routes[] = {
        {GET_HEAD, "/healthz", &h_health},
        {GET_HEAD, "/v1/runs", &h_list},
        {RD_METHOD_POST, "/v1/runs", &h_create},
        {GET_HEAD, "/v1/runs/{id}", &h_get},
        {RD_METHOD_DELETE, "/v1/runs/{id}", &h_delete},
        {RD_METHOD_POST, "/v1/runs/{id}/cancel", &h_cancel},
        {GET_HEAD, "/v1/runs/{id}/events", &h_events_get},
        {RD_METHOD_POST, "/v1/runs/{id}/events", &h_events_post},
        {RD_METHOD_ANY, "/v1/runs/approval", &h_approval},
        {RD_METHOD_POST, "/v1/runs/{id}/deliveries/{did}/redeliver", &h_redeliver},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        assert_int_equal(rd_router_add(rt, routes[i].m, routes[i].pattern, routes[i].data), 0);
    *state = rt;
    return 0;
}

static int teardown(void **state)
{
    rd_router_free(*state);
    return 0;
}

/* Splits path (a copy) and matches it. */
static int match(void **state, unsigned method, const char *path, rd_route_hit *hit, char *buf,
                 size_t buflen)
{
    char *segs[RD_ROUTE_MAX_SEGS + 1];
    snprintf(buf, buflen, "%s", path);
    int n = rd_router_split(buf, segs);
    assert_true(n >= 0);
    return rd_router_match(*state, method, segs, n, hit);
}

static void test_split(void **state)
{
    static const struct {
        const char *path;
        int n;
        const char *last;
    } cases[] = {
        {"/", 0, NULL},
        {"/healthz", 1, "healthz"},
        {"/v1/runs/", 2, "runs"}, /* one trailing slash is tolerated */
        {"/v1/runs/run_1/cancel", 4, "cancel"},
        {"/a/b/c/d/e/f/g/h", 8, "h"},
        {"/v1/.x/..y", 3, "..y"},
        {"", -1, NULL},
        {"v1/runs", -1, NULL},
        {"//", -1, NULL},
        {"/v1//runs", -1, NULL},
        {"/v1/runs//", -1, NULL},
        {"/v1/..", -1, NULL},
        {"/v1/.", -1, NULL},
        /* A dot segment is refused wherever it is (it used to pass before the last). */
        {"/v1/./runs", -1, NULL},
        {"/v1/runs/../cancel", -1, NULL},
        {"/./x", -1, NULL},
        {"/v1/.../x", 3, "x"}, /* three dots are a name */
        {"/v1/.x/y", 3, "y"},
        {"/a/b/c/d/e/f/g/h/i", -1, NULL}, /* deeper than any route */
        {"/a/b/c/d/e/f/g/h/", -1, NULL},  /* at the bound, even a trailing slash is too deep */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[128], *segs[RD_ROUTE_MAX_SEGS + 1];
        snprintf(buf, sizeof buf, "%s", cases[i].path);
        int n = rd_router_split(buf, segs);
        if (n != cases[i].n)
            fail_msg("'%s': %d segments, expected %d", cases[i].path, n, cases[i].n);
        if (n > 0) {
            assert_string_equal(segs[n - 1], cases[i].last);
            assert_null(segs[n]);
        }
    }
}

static void test_exact(void **state)
{
    rd_route_hit hit;
    char buf[128];
    assert_int_equal(match(state, RD_METHOD_GET, "/healthz", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_health);
    assert_int_equal(hit.nparam, 0);
    assert_int_equal(match(state, RD_METHOD_HEAD, "/healthz/", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_health);
    /* The method picks among the entries of one pattern. */
    assert_int_equal(match(state, RD_METHOD_POST, "/v1/runs", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_create);
    assert_int_equal(match(state, RD_METHOD_GET, "/v1/runs/", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_list);
    assert_int_equal(hit.allow, GET_HEAD | RD_METHOD_POST);
}

static void test_capture(void **state)
{
    rd_route_hit hit;
    char buf[128];
    assert_int_equal(match(state, RD_METHOD_POST, "/v1/runs/run_42/cancel", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_cancel);
    assert_int_equal(hit.nparam, 1);
    assert_string_equal(hit.names[0], "id");
    assert_string_equal(hit.values[0], "run_42");

    assert_int_equal(match(state, RD_METHOD_DELETE, "/v1/runs/run_7", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_delete);
    assert_string_equal(hit.values[0], "run_7");

    assert_int_equal(match(state, RD_METHOD_POST, "/v1/runs/r1/deliveries/msg_9/redeliver", &hit,
                           buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_redeliver);
    assert_int_equal(hit.nparam, 2);
    assert_string_equal(hit.names[0], "id");
    assert_string_equal(hit.values[0], "r1");
    assert_string_equal(hit.names[1], "did");
    assert_string_equal(hit.values[1], "msg_9");

    /* A capture is one segment, whatever it holds: "approval" is an id one level down. */
    assert_int_equal(
        match(state, RD_METHOD_POST, "/v1/runs/approval/cancel", &hit, buf, sizeof buf),
        RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_cancel);
    assert_string_equal(hit.values[0], "approval");
}

static void test_literal_wins(void **state)
{
    rd_route_hit hit;
    char buf[128];
    /* /v1/runs/approval is its own endpoint, for every method, not a run id. */
    assert_int_equal(match(state, RD_METHOD_GET, "/v1/runs/approval", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_approval);
    assert_int_equal(hit.nparam, 0);
    assert_int_equal(match(state, RD_METHOD_DELETE, "/v1/runs/approval", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    assert_ptr_equal(hit.data, &h_approval);
    assert_int_equal(match(state, RD_METHOD_OTHER, "/v1/runs/approval", &hit, buf, sizeof buf),
                     RD_ROUTE_FOUND);
    /* The order of registration does not matter. */
    rd_router *rt = rd_router_new();
    assert_int_equal(rd_router_add(rt, RD_METHOD_GET, "/a/{x}/c", &h_get), 0);
    assert_int_equal(rd_router_add(rt, RD_METHOD_POST, "/a/b/{y}", &h_create), 0);
    char *segs[] = {"a", "b", "c", NULL};
    assert_int_equal(rd_router_match(rt, RD_METHOD_GET, segs, 3, &hit), RD_ROUTE_NO_METHOD);
    assert_int_equal(hit.allow, RD_METHOD_POST);
    assert_int_equal(rd_router_match(rt, RD_METHOD_POST, segs, 3, &hit), RD_ROUTE_FOUND);
    assert_string_equal(hit.names[0], "y");
    assert_string_equal(hit.values[0], "c");
    rd_router_free(rt);
}

static void test_not_found(void **state)
{
    static const char *const paths[] = {
        "/",
        "/v1",
        "/v1/",
        "/nope",
        "/healthz/x",
        "/v1/runs/x/y/z",
        "/v1/runs/x/nope",
        "/v1/runs/x/deliveries/d",
        "/V1/runs",
        "/v1/runs/r/deliveries/d/other",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        rd_route_hit hit;
        char buf[128];
        int rc = match(state, RD_METHOD_GET, paths[i], &hit, buf, sizeof buf);
        if (rc != RD_ROUTE_NOT_FOUND)
            fail_msg("'%s': %d, expected not found", paths[i], rc);
        assert_null(hit.data);
    }
}

static void test_method_not_allowed(void **state)
{
    static const struct {
        unsigned method;
        const char *path;
        const char *allow;
    } cases[] = {
        {RD_METHOD_DELETE, "/healthz", "GET"},
        {RD_METHOD_PUT, "/v1/runs", "GET, POST"},
        {RD_METHOD_POST, "/v1/runs/run_1", "GET, DELETE"},
        {RD_METHOD_OTHER, "/v1/runs/run_1", "GET, DELETE"},
        {RD_METHOD_GET, "/v1/runs/run_1/cancel", "POST"},
        {RD_METHOD_HEAD, "/v1/runs/run_1/cancel", "POST"},
        {RD_METHOD_DELETE, "/v1/runs/run_1/events", "GET, POST"},
        {RD_METHOD_GET, "/v1/runs/run_1/deliveries/d/redeliver", "POST"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rd_route_hit hit;
        char buf[128], allow[64];
        int rc = match(state, cases[i].method, cases[i].path, &hit, buf, sizeof buf);
        if (rc != RD_ROUTE_NO_METHOD)
            fail_msg("'%s': %d, expected method not allowed", cases[i].path, rc);
        assert_null(hit.data);
        assert_string_equal(rd_router_allow(hit.allow, allow, sizeof allow), cases[i].allow);
    }
}

static void test_allow_text(void **state)
{
    char buf[64];
    assert_string_equal(rd_router_allow(RD_METHOD_ANY, buf, sizeof buf),
                        "GET, POST, PUT, PATCH, DELETE");
    assert_string_equal(rd_router_allow(RD_METHOD_HEAD | RD_METHOD_OPTIONS, buf, sizeof buf), "");
    assert_string_equal(rd_router_allow(RD_METHOD_DELETE | RD_METHOD_GET, buf, sizeof buf),
                        "GET, DELETE");
    char small[8];
    assert_string_equal(rd_router_allow(RD_METHOD_GET | RD_METHOD_POST, small, sizeof small),
                        "GET, PO"); /* truncated, still a string */
}

static void test_bad_patterns(void **state)
{
    static const char *const bad[] = {
        "",       "v1/runs", "/v1/",      "/v1//runs",          "/v1/./x",
        "/v1/{}", "/v1/a{b", "/v1/{id}x", "/a/b/c/d/e/f/g/h/i", "/{a}/{b}/{c}/{d}/{e}",
    };
    rd_router *rt = rd_router_new();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rd_router_add(rt, RD_METHOD_GET, bad[i], &h_get) == 0)
            fail_msg("pattern '%s' was accepted", bad[i]);
    assert_int_equal(rd_router_add(rt, 0, "/x", &h_get), -1);
    assert_int_equal(rd_router_add(rt, RD_METHOD_GET, "/", &h_get), 0);
    assert_int_equal(rd_router_add(rt, RD_METHOD_GET, "/{a}/{b}/{c}/{d}", &h_get), 0);
    /* Two entries may not answer one request, whatever their captures are named. */
    assert_int_equal(rd_router_add(rt, RD_METHOD_GET, "/runs/{id}", &h_get), 0);
    assert_int_equal(rd_router_add(rt, GET_HEAD, "/runs/{run}", &h_get), -1);
    assert_int_equal(rd_router_add(rt, RD_METHOD_HEAD, "/runs/{run}", &h_get), 0);
    rd_route_hit hit;
    char *root[] = {NULL};
    assert_int_equal(rd_router_match(rt, RD_METHOD_GET, root, 0, &hit), RD_ROUTE_FOUND);
    rd_router_free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test_setup_teardown(test_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literal_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
        cmocka_unit_test(test_allow_text),
        cmocka_unit_test(test_bad_patterns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
