/*
 * bench_core.c: the core issue's two throughput benchmarks, each beside its baseline.
 *
 *   bench_core runs  PORT N [CONNS]    create N runs of the `trivial` flow over HTTP from CONNS
 *                                      connections at once (default 8) and time create -> all
 *                                      terminal
 *   bench_core spawn WORKER N CONC     spawn-and-wait the same worker N times, CONC at once
 *   bench_core items PORT COUNT        one run of the `items` flow emitting COUNT items; time
 *                                      create -> terminal, items persisted per second
 *   bench_core raw   DBPATH COUNT      raw SQLite inserts of the same rows into the same schema
 *
 * Each prints one line "name value unit". bench/core_bench.sh runs them side by side.
 */
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_http.h"
#include "store/store.h"

/* Creates n runs over `conns` keep-alive connections at once (clients do not wait for each
 * other), then polls until all are terminal. */
static int bench_runs(int port, int n, int conns)
{
    static char buf[1 << 20];
    static const char req[] = "POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Content-Type: application/json\r\nContent-Length: 18\r\n\r\n"
                              "{\"flow\":\"trivial\"}";
    struct pollfd pfd[64];
    char rbuf[64][8192];
    size_t rlen[64] = {0};
    int sent = 0, created = 0, retries = 0;
    if (conns > 64)
        conns = 64;
    double t0 = now_s();
    for (int i = 0; i < conns; i++) {
        pfd[i].fd = connect_port(port);
        pfd[i].events = POLLIN;
        if (sent < n && write(pfd[i].fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1))
            sent++;
    }
    while (created < n) {
        if (poll(pfd, (nfds_t)conns, 10000) <= 0) {
            fprintf(stderr, "create: timed out\n");
            return 1;
        }
        for (int i = 0; i < conns; i++) {
            if (!(pfd[i].revents & POLLIN))
                continue;
            ssize_t r = read(pfd[i].fd, rbuf[i] + rlen[i], sizeof rbuf[i] - 1 - rlen[i]);
            if (r <= 0)
                return 1;
            rlen[i] += (size_t)r;
            rbuf[i][rlen[i]] = 0;
            char *end = strstr(rbuf[i], "\r\n\r\n");
            char *cl = end ? strcasestr(rbuf[i], "Content-Length:") : NULL;
            if (!end || !cl || rlen[i] < (size_t)(end + 4 - rbuf[i]) + strtoul(cl + 15, NULL, 10))
                continue; /* the reply is not complete yet */
            int st = atoi(rbuf[i] + 9);
            rlen[i] = 0;
            if (st == 201)
                created++;
            else if (st == 429)
                retries++, sent--; /* queue full: send it again */
            else {
                fprintf(stderr, "create: status %d\n", st);
                return 1;
            }
            if (sent < n && write(pfd[i].fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1))
                sent++;
        }
    }
    int fd = connect_port(port);
    for (;;) {
        http(fd, "GET", "/v1/runs?status=succeeded,failed,crashed&flow=trivial&page_size=1", NULL,
             buf, sizeof buf);
        if (json_ll(buf, "total", 0) >= n)
            break;
        usleep(1000);
    }
    double dt = now_s() - t0;
    http(fd, "GET", "/v1/runs?status=succeeded&flow=trivial&page_size=1", NULL, buf, sizeof buf);
    long long ok = json_ll(buf, "total", 0);
    printf("daemon_runs_per_s %.1f runs/s (%d runs over %d connections, %lld succeeded, %.3f s)\n",
           n / dt, n, conns, ok, dt);
    close(fd);
    for (int i = 0; i < conns; i++)
        close(pfd[i].fd);
    return ok == n ? 0 : 1;
}

/* Output pipes of running workers, by pid: read after the worker exits (its output is far
 * below a pipe's capacity, so it never blocks on a full pipe). */
static struct {
    pid_t pid;
    int fd;
} outs[256];

static void drain_output(pid_t pid)
{
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        if (outs[i].pid == pid) {
            char buf[4096];
            while (read(outs[i].fd, buf, sizeof buf) > 0)
                ;
            close(outs[i].fd);
            outs[i].pid = 0;
            return;
        }
    }
}

static pid_t spawn_one(const char *worker)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(worker, worker, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    static const char start[] =
        "{\"type\":\"start\",\"run\":{\"id\":\"run_x\",\"flow\":\"trivial\",\"input\":null,"
        "\"limit\":null,\"preview\":false,\"cursor\":null,\"attempt\":1,\"metadata\":null}}\n";
    if (write(in[1], start, sizeof start - 1) < 0)
        perror("write");
    close(in[1]);
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        if (outs[i].pid == 0) {
            outs[i].pid = pid;
            outs[i].fd = out[0];
            return pid;
        }
    }
    close(out[0]);
    return pid;
}

static int bench_spawn(const char *worker, int n, int conc)
{
    double t0 = now_s();
    int started = 0, done = 0, running = 0;
    while (done < n) {
        while (running < conc && started < n) {
            if (spawn_one(worker) < 0)
                return 1;
            started++;
            running++;
        }
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid > 0) {
            drain_output(pid);
            done++;
            running--;
        }
    }
    double dt = now_s() - t0;
    printf("spawn_wait_per_s %.1f runs/s (%d runs, concurrency %d, %.3f s)\n", n / dt, n, conc, dt);
    return 0;
}

static int bench_items(int port, long count)
{
    static char buf[1 << 20];
    char id[80];
    int fd = connect_port(port);
    double t0 = now_s();
    if (items_run(fd, count, buf, sizeof buf, id, sizeof id) != 0)
        return 1;
    double dt = now_s() - t0;
    long long items = json_ll(buf, "items", 0);
    printf("daemon_items_per_s %.0f items/s (%lld items persisted, %.3f s create->terminal)\n",
           items / dt, items, dt);
    close(fd);
    return items == count ? 0 : 1;
}

static int bench_raw(const char *path, long count)
{
    char err[256];
    rd_store *s = NULL;
    rd_store_opts o = {0};
    unlink(path);
    /* The store creates the very schema (tables, indexes, pragmas) the daemon writes to. */
    if (rd_store_open_sqlite(path, &o, &s, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    rd_store_close(s);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "INSERT INTO events(run_id, flow, type, ts, data, item_seq) "
                       "VALUES('run_benchbenchbenchbenchbe','items','run.item',?,?,?)",
                       -1, &st, NULL);
    double t0 = now_s();
    char data[256];
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (long i = 1; i <= count; i++) {
        int n = snprintf(data, sizeof data,
                         "{\"seq\":%ld,\"data\":{\"name\":\"pkg-%ld\",\"version\":\"1.%ld\","
                         "\"size\":%ld}}",
                         i, i - 1, i - 1, i - 1);
        sqlite3_bind_int64(st, 1, (sqlite3_int64)(t0 * 1000));
        sqlite3_bind_text(st, 2, data, n, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, i);
        if (sqlite3_step(st) != SQLITE_DONE) {
            fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
            return 1;
        }
        sqlite3_reset(st);
        if (i % 10000 == 0) { /* raw at its best: large batches */
            sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
            sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        }
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    double dt = now_s() - t0;
    sqlite3_finalize(st);
    sqlite3_close(db);
    printf("raw_sqlite_rows_per_s %.0f rows/s (%ld rows, %.3f s)\n", count / dt, count, dt);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "runs") == 0)
        return bench_runs(atoi(argv[2]), atoi(argv[3]), argc >= 5 ? atoi(argv[4]) : 8);
    if (argc >= 5 && strcmp(argv[1], "spawn") == 0)
        return bench_spawn(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "items") == 0)
        return bench_items(atoi(argv[2]), atol(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "raw") == 0)
        return bench_raw(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: see the comment at the top of bench_core.c\n");
    return 2;
}
