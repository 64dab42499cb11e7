/*
 * paging_bench.c: latency of GET /v1/runs/{id}/results on a run of many items: the first
 * page, a deep OFFSET page and the after= cursor at the same depth. bench/paging_bench.sh
 * starts the daemon and runs the modes below.
 *
 *   paging_bench fill    PORT COUNT          one run of the `items` flow emitting COUNT items;
 *                                             waits until it is terminal; prints its id
 *   paging_bench measure PORT RUN_ID REPS    the results requests, REPS timed each after one
 *                                             untimed warm-up, over one keep-alive connection;
 *                                             twice: as a plain client sees it, then with the
 *                                             client re-arming TCP_QUICKACK (so a stall of the
 *                                             server's Nagle against our delayed ACK, ~40 ms,
 *                                             cannot hide the server's own time)
 *   paging_bench sql     DBPATH RUN_ID REPS  the same three reads as raw SQLite statements
 *                                             (the store's own SQL), to attribute the time:
 *                                             the COUNT(*) behind "total", the OFFSET scan and
 *                                             the cursor scan
 *
 * Every reply is checked (status 200, 100 items, first and last seq as expected) so a fast
 * wrong answer cannot pass for a fast right one. Times are wall-clock per request, client
 * side; the summary line per case is "case median_ms p95_ms min_ms max_ms".
 */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_http.h"

#define PAGE 100

static char buf[1 << 22];
static int quickack; /* re-arm TCP_QUICKACK before each read: the client never delays an ACK */

/* One exchange on the client's buffer, re-arming TCP_QUICKACK when quickack is set. */
static int request(int fd, const char *method, const char *path, const char *body)
{
    return http_x(fd, method, path, body, buf, sizeof buf, quickack);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double summary(const char *name, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    int i95 = (int)ceil(0.95 * n) - 1;
    printf("%-52s median %8.3f ms  p95 %8.3f ms  min %8.3f ms  max %8.3f ms  (n=%d)\n", name,
           median, v[i95 < 0 ? 0 : i95], v[0], v[n - 1], n);
    return median;
}

/* ------------------------------------------------------------------------------ fill */

static int fill(int port, long long count)
{
    char id[96];
    int fd = connect_port(port);
    double t0 = now_ms();
    if (items_run(fd, count, buf, sizeof buf, id, sizeof id) != 0)
        return 1;
    long long items = json_ll(buf, "items", 0);
    fprintf(stderr, "filled %s: %lld items in %.1f s\n", id, items, (now_ms() - t0) / 1e3);
    if (items != count) {
        fprintf(stderr, "expected %lld items: %.300s\n", count, buf);
        return 1;
    }
    printf("%s\n", id);
    close(fd);
    return 0;
}

/* --------------------------------------------------------------------------- measure */

typedef struct {
    const char *name;
    char query[128];
    long long first; /* expected first and last seq of the page */
    long long last;
} http_case;

static int measure(int port, const char *id, int reps)
{
    long long total;
    int fd = connect_port(port);
    char path[512];
    snprintf(path, sizeof path, "/v1/runs/%s/results?page_size=1", id);
    if (request(fd, "GET", path, NULL) != 200 || (total = json_ll(buf, "total", 0)) < 2 * PAGE) {
        fprintf(stderr, "run %s: %.300s\n", id, buf);
        return 1;
    }
    long long deep_page = total / PAGE; /* the last full page: 10,000 for 1,000,000 items */
    long long deep_first = (deep_page - 1) * PAGE + 1;
    http_case cases[5] = {
        {"page 1", "", 1, PAGE},
        {"middle page (OFFSET)", "", (deep_page / 2 - 1) * PAGE + 1, deep_page / 2 * PAGE},
        {"last page (OFFSET)", "", deep_first, deep_first + PAGE - 1},
        {"cursor, first page", "", 1, PAGE},
        {"cursor, last page", "", deep_first, deep_first + PAGE - 1},
    };
    snprintf(cases[0].query, sizeof cases[0].query, "page=1&page_size=%d", PAGE);
    snprintf(cases[1].query, sizeof cases[1].query, "page=%lld&page_size=%d", deep_page / 2, PAGE);
    snprintf(cases[2].query, sizeof cases[2].query, "page=%lld&page_size=%d", deep_page, PAGE);
    snprintf(cases[3].query, sizeof cases[3].query, "after=0&page_size=%d", PAGE);
    snprintf(cases[4].query, sizeof cases[4].query, "after=%lld&page_size=%d", deep_first - 1,
             PAGE);
    printf("run %s: %lld items; page_size %d; deep page %lld = after %lld; %d reps each\n", id,
           total, PAGE, deep_page, deep_first - 1, reps);
    double *t = calloc((size_t)reps, sizeof *t);
    double medians[5] = {0};
    for (quickack = 0; quickack < 2; quickack++) {
        printf(quickack
                   ? "-- client re-arms TCP_QUICKACK before each read (server-side time only)\n"
                   : "-- plain keep-alive client (TCP_NODELAY, default delayed ACKs)\n");
        for (int c = 0; c < 5; c++) {
            snprintf(path, sizeof path, "/v1/runs/%s/results?%s", id, cases[c].query);
            for (int i = -1; i < reps; i++) { /* i = -1: warm-up, not timed */
                double t0 = now_ms();
                int st = request(fd, "GET", path, NULL);
                double dt = now_ms() - t0;
                long long first = json_ll(buf, "seq", 0), last = json_ll(buf, "seq", 1);
                if (st != 200 || first != cases[c].first || last != cases[c].last) {
                    fprintf(stderr, "%s: status %d, seq %lld..%lld, expected %lld..%lld\n",
                            cases[c].query, st, first, last, cases[c].first, cases[c].last);
                    return 1;
                }
                if (i >= 0)
                    t[i] = dt;
            }
            char name[160];
            snprintf(name, sizeof name, "%-22s ?%s", cases[c].name, cases[c].query);
            medians[c] = summary(name, t, reps);
        }
        printf("medians: last page OFFSET / page 1 = %.2f, last page OFFSET / cursor = %.2f, "
               "cursor last / page 1 = %.2f\n",
               medians[2] / medians[0], medians[2] / medians[4], medians[4] / medians[0]);
    }
    quickack = 0;
    free(t);
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------------------- sql */

/* The store's statements (lib/store_sqlite.c, ITEMS_SCAN and ITEMS_COUNT). */
static const char scan_sql[] =
    "SELECT id, run_id, flow, type, ts, data, item_seq, (SELECT"
    " json_group_object(e.flow, json(e.data)) FROM enrichments e WHERE"
    " e.run_id = events.run_id AND e.item_seq = events.item_seq) FROM events"
    " WHERE run_id = ?1 AND item_seq IS NOT NULL AND item_seq > ?2"
    " AND type IN (?3, ?4) ORDER BY item_seq LIMIT ?5 OFFSET ?6";
static const char count_sql[] =
    "SELECT COUNT(*) FROM events WHERE run_id = ?1 AND item_seq IS NOT NULL";

static double time_stmt(sqlite3_stmt *st, long long *rows, long long *first)
{
    double t0 = now_ms();
    *rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        if ((*rows)++ == 0 && first)
            *first = sqlite3_column_int64(st, 6);
    }
    sqlite3_reset(st);
    return now_ms() - t0;
}

static int sql(const char *path, const char *id, int reps)
{
    sqlite3 *db;
    sqlite3_stmt *scan, *count;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, scan_sql, -1, &scan, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, count_sql, -1, &count, NULL) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    long long rows, total = 0, first = 0;
    sqlite3_bind_text(count, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(count) == SQLITE_ROW)
        total = sqlite3_column_int64(count, 0);
    sqlite3_reset(count);
    long long deep_page = total / PAGE, deep_first = (deep_page - 1) * PAGE + 1;
    sqlite3_bind_text(scan, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(scan, 3, "run.item", -1, SQLITE_STATIC);
    sqlite3_bind_text(scan, 4, "run.item_error", -1, SQLITE_STATIC);
    sqlite3_bind_int64(scan, 5, PAGE + 1); /* as the daemon asks: one more for has_more */
    printf("sqlite %s: %lld items\n", path, total);
    double *t = calloc((size_t)reps, sizeof *t);
    struct {
        const char *name;
        long long after, offset, want_first;
    } cases[] = {
        {"scan OFFSET 0 (page 1)", 0, 0, 1},
        {"scan OFFSET deep (page N)", 0, deep_first - 1, deep_first},
        {"scan item_seq > deep (cursor)", deep_first - 1, 0, deep_first},
    };
    for (int i = -1; i < reps; i++) {
        double dt = time_stmt(count, &rows, NULL);
        if (i >= 0)
            t[i] = dt;
    }
    summary("COUNT(*) of the run's items", t, reps);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sqlite3_bind_int64(scan, 2, cases[c].after);
        sqlite3_bind_int64(scan, 6, cases[c].offset);
        for (int i = -1; i < reps; i++) {
            double dt = time_stmt(scan, &rows, &first);
            long long left = total - cases[c].after - cases[c].offset;
            if (rows != (left < PAGE + 1 ? left : PAGE + 1)) {
                fprintf(stderr, "%s: %lld rows\n", cases[c].name, rows);
                return 1;
            }
            if (first != cases[c].want_first) {
                fprintf(stderr, "%s: first seq %lld, expected %lld\n", cases[c].name, first,
                        cases[c].want_first);
                return 1;
            }
            if (i >= 0)
                t[i] = dt;
        }
        summary(cases[c].name, t, reps);
    }
    free(t);
    sqlite3_finalize(scan);
    sqlite3_finalize(count);
    sqlite3_close(db);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "fill") == 0)
        return fill(atoi(argv[2]), atoll(argv[3]));
    if (argc >= 5 && strcmp(argv[1], "measure") == 0)
        return measure(atoi(argv[2]), argv[3], atoi(argv[4]));
    if (argc >= 5 && strcmp(argv[1], "sql") == 0)
        return sql(argv[2], argv[3], atoi(argv[4]));
    fprintf(stderr, "usage: see the comment at the top of paging_bench.c\n");
    return 2;
}
