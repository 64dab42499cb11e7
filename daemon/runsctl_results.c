/*
 * runsctl_results.c: the paged listings: list (runs), results (a run's items) and events (a
 * run's event log). Each is fetched a page at a time and printed as it arrives, as a table,
 * one JSON array (--json: written incrementally, so memory stays one page), or one JSON object
 * a line (--ndjson). Results and events page with the server's `after` cursor, so items that
 * arrive meanwhile neither shift nor repeat across pages.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runsctl.h"

typedef struct pager {
    const rc_opts *o;
    size_t printed;
    void (*row)(const json_t *item); /* table row */
    const char *header;              /* the table's head, printed once the first page is in */
} pager;

static void pager_item(pager *p, const json_t *item)
{
    if (p->o->json) {
        fputs(p->printed ? ",\n" : "[\n", stdout);
        json_dumpf(item, stdout, JSON_COMPACT);
    } else if (p->o->ndjson) {
        json_dumpf(item, stdout, JSON_COMPACT);
        fputc('\n', stdout);
    } else {
        p->row(item);
    }
    p->printed++;
}

static void pager_end(pager *p)
{
    if (p->o->json)
        fputs(p->printed ? "\n]\n" : "[]\n", stdout);
    fflush(stdout);
}

/* Prints the items of one page; returns the page (owned by the caller) or NULL. */
static int pager_fetch(rc_http *h, pager *p, const char *path, json_t **page)
{
    int rc = rc_call(h, "GET", path, NULL, NULL, 0, page);
    if (rc != 0)
        return rc;
    json_t *items = json_object_get(*page, "items"), *it;
    size_t i;
    if (!json_is_array(items)) {
        fprintf(stderr, "runsctl: GET %s: the answer has no items\n", path);
        return RC_ERR;
    }
    if (p->header && !p->o->json && !p->o->ndjson)
        fputs(p->header, stdout);
    p->header = NULL;
    json_array_foreach(items, i, it) pager_item(p, it);
    return 0;
}

static void run_row(const json_t *r)
{
    printf("%-26s  %-16s  %-13s  %-20s  %s\n", rc_str(r, "id"), rc_str(r, "flow"),
           rc_str(r, "status"),
           *rc_str(r, "termination_reason") ? rc_str(r, "termination_reason") : "-",
           rc_str(r, "created_at"));
}

/* A comma list for a query parameter, percent-encoded but for its commas. */
static char *esc_list(const char *s)
{
    char *e = rc_esc(s), *out = malloc(strlen(e) + 1), *q = out;
    for (const char *p = e; out && *p; p++) {
        if (strncmp(p, "%2C", 3) == 0) {
            *q++ = ',';
            p += 2;
        } else {
            *q++ = *p;
        }
    }
    if (out)
        *q = 0;
    free(e);
    return out;
}

int rc_cmd_list(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    if (argc != 0) {
        fprintf(stderr, "runsctl: list takes no operands (filters are --status, --flow)\n");
        return RC_USAGE;
    }
    char *st = o->status ? esc_list(o->status) : NULL, *fl = o->flow ? esc_list(o->flow) : NULL;
    char head[160];
    snprintf(head, sizeof head, "%-26s  %-16s  %-13s  %-20s  %s\n", "ID", "FLOW", "STATUS",
             "REASON", "CREATED");
    pager p = {.o = o, .row = run_row, .header = head};
    long page = o->page > 0 ? o->page : 1, size = o->page_size > 0 ? o->page_size : 10;
    int rc;
    for (;;) {
        char path[1024];
        json_t *pg = NULL;
        snprintf(path, sizeof path, "/v1/runs?page=%ld&page_size=%ld%s%s%s%s", page, size,
                 st ? "&status=" : "", st ? st : "", fl ? "&flow=" : "", fl ? fl : "");
        rc = pager_fetch(h, &p, path, &pg);
        bool more = json_is_true(json_object_get(pg, "has_more"));
        if (rc == 0 && more && !o->all && isatty(STDOUT_FILENO))
            fprintf(stderr, "(page %ld of %lld runs; --all lists every page)\n", page,
                    json_integer_value(json_object_get(pg, "total")));
        json_decref(pg);
        if (rc != 0 || !more || !o->all)
            break;
        page++;
    }
    if (rc == 0)
        pager_end(&p);
    free(st);
    free(fl);
    return rc;
}

static void result_row(const json_t *it)
{
    char *d = rc_compact(json_object_get(it, "data"));
    const char *err = rc_str(it, "error");
    printf("%-6lld  %-6s  %s%s%s\n", json_integer_value(json_object_get(it, "seq")),
           rc_str(it, "status"), *err ? err : "", *err ? "  " : "", d);
    free(d);
}

/* Every page of a cursor-paged listing (results, events) of one run. */
static int cursor_pages(rc_http *h, pager *p, const char *base, long after, const char *extra)
{
    int rc;
    for (;;) {
        char path[1024];
        json_t *pg = NULL;
        snprintf(path, sizeof path, "%s?after=%ld%s", base, after, extra);
        rc = pager_fetch(h, p, path, &pg);
        bool more = json_is_true(json_object_get(pg, "has_more"));
        json_t *next = json_object_get(pg, "next_after");
        long n = json_is_integer(next) ? (long)json_integer_value(next) : after;
        json_decref(pg);
        if (rc != 0 || !more)
            break;
        if (n <= after) { /* a server that does not advance would loop forever */
            fprintf(stderr, "runsctl: GET %s: the cursor did not advance\n", path);
            return RC_ERR;
        }
        after = n;
    }
    if (rc == 0)
        pager_end(p);
    return rc;
}

int rc_cmd_results(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "runsctl: results takes one run id\n");
        return RC_USAGE;
    }
    if (o->status && strcmp(o->status, "ok") != 0 && strcmp(o->status, "error") != 0) {
        fprintf(stderr, "runsctl: results --status takes ok or error\n");
        return RC_USAGE;
    }
    char extra[64];
    snprintf(extra, sizeof extra, "&page_size=%ld%s%s", o->page_size > 0 ? o->page_size : 100,
             o->status ? "&status=" : "", o->status ? o->status : "");
    pager p = {.o = o, .row = result_row, .header = "SEQ     STATUS  DATA\n"};
    char *eid = rc_esc(argv[0]), base[300];
    snprintf(base, sizeof base, "/v1/runs/%s/results", eid);
    free(eid);
    int rc = cursor_pages(h, &p, base, 0, extra);
    return rc;
}

static void event_row(const json_t *ev)
{
    rc_print_event_line(stdout, ev);
}

int rc_cmd_events(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "runsctl: events takes one run id\n");
        return RC_USAGE;
    }
    pager p = {.o = o, .row = event_row};
    char *eid = rc_esc(argv[0]), base[300];
    snprintf(base, sizeof base, "/v1/runs/%s/events", eid);
    free(eid);
    int rc = cursor_pages(h, &p, base, o->after > 0 ? o->after : 0, "&limit=1000");
    return rc;
}
