/* test_routes.c: the route table and docs/openapi.yaml name the same routes and methods.
 * A real server (lib/include/runsd.h: a temp store, loopback port 0, no worker run) registers
 * every endpoint the way the daemon does; its table is walked with runsd_routes and compared
 * both ways with the paths and operations of the document, read from the JSON the build
 * converts it to (RUNSD_OPENAPI_JSON). A route missing from the document, an operation the
 * daemon does not serve, or a method on the wrong path fails with the pair named. Also: the
 * document's operations each have an operationId, unique, and its {name} captures are the
 * router's (the router matches them by position, the document by name). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runsd.h"

#define MAX_PAIRS 256

typedef struct pairs {
    char *v[MAX_PAIRS]; /* "GET /v1/runs/{id}" */
    int n;
} pairs;

static void pairs_add(pairs *p, const char *method, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s %s", method, path);
    assert_true(p->n < MAX_PAIRS);
    p->v[p->n++] = strdup(buf);
}

static bool pairs_has(const pairs *p, const char *s)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->v[i], s) == 0)
            return true;
    return false;
}

static void pairs_free(pairs *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->v[i]);
    p->n = 0;
}

static void on_route(void *arg, const char *method, const char *pattern)
{
    pairs_add(arg, method, pattern);
}

/* The routes of a real server, registered as the daemon registers them. */
static void server_routes(pairs *out)
{
    char dir[] = "/tmp/test_routes.XXXXXX", conf[128], text[512], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "%s/runsd.ini", dir);
    snprintf(text, sizeof text,
             "[server]\nlisten = 127.0.0.1:0\n[store]\npath = %s/runsd.db\n"
             "[flow.t]\ncommand = /bin/true\n",
             dir);
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    struct rd_config *cfg = NULL;
    if (runsd_config_load(conf, &cfg, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    struct event_base *base = event_base_new();
    runsd *d = NULL;
    if (runsd_new(base, cfg, &d, err, sizeof err) != 0)
        fail_msg("server: %s", err);
    runsd_routes(d, on_route, out);
    runsd_free(d);
    event_base_free(base);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static json_t *load_doc(void)
{
    json_error_t jerr;
    json_t *doc = json_load_file(RUNSD_OPENAPI_JSON, 0, &jerr);
    if (!doc)
        fail_msg("%s: %s (line %d)", RUNSD_OPENAPI_JSON, jerr.text, jerr.line);
    return doc;
}

/* The document's operations as "METHOD /path" pairs (OpenAPI's path-item keys that are
 * methods; "parameters", "summary" and extensions are not). */
static void doc_routes(json_t *doc, pairs *out)
{
    static const char *methods[] = {"get",    "head",    "post",  "put", "patch",
                                    "delete", "options", "trace", NULL};
    json_t *paths = json_object_get(doc, "paths");
    assert_true(json_is_object(paths));
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        for (int i = 0; methods[i]; i++) {
            if (!json_object_get(item, methods[i]))
                continue;
            char up[16];
            snprintf(up, sizeof up, "%s", methods[i]);
            for (char *c = up; *c; c++)
                *c = (char)(*c - 'a' + 'A');
            pairs_add(out, up, path);
        }
    }
}

static void test_same_routes_both_ways(void **state)
{
    pairs srv = {0}, doc = {0};
    server_routes(&srv);
    json_t *d = load_doc();
    doc_routes(d, &doc);
    assert_true(srv.n > 20); /* the walk saw the table, not an empty server */
    int missing = 0, extra = 0;
    for (int i = 0; i < srv.n; i++) {
        if (!pairs_has(&doc, srv.v[i])) {
            print_error("served but not in docs/openapi.yaml: %s\n", srv.v[i]);
            missing++;
        }
    }
    for (int i = 0; i < doc.n; i++) {
        if (!pairs_has(&srv, doc.v[i])) {
            print_error("in docs/openapi.yaml but not served: %s\n", doc.v[i]);
            extra++;
        }
    }
    assert_int_equal(missing, 0);
    assert_int_equal(extra, 0);
    assert_int_equal(srv.n, doc.n); /* no pair twice on either side */
    pairs_free(&srv);
    pairs_free(&doc);
    json_decref(d);
}

/* Every operation has an operationId, no two the same; every {name} in a path is declared as
 * a path parameter of that name (on the path item or the operation). */
static void test_operations_are_named_and_captures_declared(void **state)
{
    json_t *d = load_doc();
    json_t *paths = json_object_get(d, "paths"), *seen = json_object();
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        const char *m;
        json_t *op;
        json_object_foreach(item, m, op)
        {
            if (!json_is_object(op) || !json_object_get(op, "responses"))
                continue;
            const char *oid = json_string_value(json_object_get(op, "operationId"));
            if (!oid)
                fail_msg("%s %s: no operationId", m, path);
            if (json_object_get(seen, oid))
                fail_msg("operationId %s used twice", oid);
            json_object_set_new(seen, oid, json_true());
            for (const char *p = strchr(path, '{'); p; p = strchr(p + 1, '{')) {
                char name[64];
                const char *e = strchr(p, '}');
                assert_non_null(e);
                snprintf(name, sizeof name, "%.*s", (int)(e - p - 1), p + 1);
                bool declared = false;
                json_t *lists[2] = {json_object_get(item, "parameters"),
                                    json_object_get(op, "parameters")};
                for (int l = 0; l < 2; l++) {
                    size_t i;
                    json_t *prm;
                    json_array_foreach(lists[l], i, prm)
                    {
                        json_t *ref = json_object_get(prm, "$ref");
                        if (ref) { /* #/components/parameters/<Name> */
                            const char *r = strrchr(json_string_value(ref), '/');
                            prm = json_object_get(
                                json_object_get(json_object_get(d, "components"), "parameters"),
                                r ? r + 1 : "");
                        }
                        const char *in = json_string_value(json_object_get(prm, "in"));
                        const char *pn = json_string_value(json_object_get(prm, "name"));
                        declared |= in && pn && strcmp(in, "path") == 0 && strcmp(pn, name) == 0;
                    }
                }
                if (!declared)
                    fail_msg("%s %s: path parameter {%s} not declared", m, path, name);
            }
        }
    }
    json_decref(seen);
    json_decref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_routes_both_ways),
        cmocka_unit_test(test_operations_are_named_and_captures_declared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
