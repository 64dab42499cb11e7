/*
 * bench_http.h: the minimal keep-alive HTTP/1.1 client and helpers the C benchmarks share
 * (bench_core.c, paging_bench.c). Header-only: bench/CMakeLists.txt builds every .c file here
 * as its own program, so each includes these static inline functions.
 *
 * The client is for the daemon's own replies only: loopback, one request at a time per
 * connection, replies with Content-Length (no chunked encoding), JSON picked by substring.
 */
#ifndef RUNSD_BENCH_HTTP_H
#define RUNSD_BENCH_HTTP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Monotonic clock, in seconds and in milliseconds. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* A TCP_NODELAY connection to 127.0.0.1:port; exits the program when it fails. */
static inline int connect_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One keep-alive HTTP/1.1 exchange on fd (body may be NULL). Returns the reply's status
 * with its body, NUL-terminated, at the start of buf (cap bytes); -1 when the request does
 * not fit, the connection fails or the reply does not fit in buf. With quickack, the client
 * re-arms TCP_QUICKACK before each read, so it never delays an ACK (a server's Nagle stall
 * against a delayed ACK, ~40 ms, cannot hide the server's own time). */
static inline int http_x(int fd, const char *method, const char *path, const char *body, char *buf,
                         size_t cap, int quickack)
{
    char req[2048];
    size_t blen = body ? strlen(body) : 0;
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, blen, body ? body : "");
    if (n < 0 || (size_t)n >= sizeof req || write(fd, req, (size_t)n) != n)
        return -1;
    size_t got = 0;
    long clen = -1;
    char *hdr_end = NULL;
    for (;;) {
        if (got + 1 >= cap)
            return -1;
        if (quickack) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        }
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = 0;
        if (!hdr_end && (hdr_end = strstr(buf, "\r\n\r\n"))) {
            char *cl = strcasestr(buf, "Content-Length:");
            clen = cl && cl < hdr_end ? strtol(cl + 15, NULL, 10) : 0;
        }
        if (hdr_end && (long)(got - (size_t)(hdr_end + 4 - buf)) >= clen)
            break;
    }
    int status = atoi(buf + 9);
    memmove(buf, hdr_end + 4, (size_t)clen);
    buf[clen] = 0;
    return status;
}

/* http_x without TCP_QUICKACK: the plain client. */
static inline int http(int fd, const char *method, const char *path, const char *body, char *buf,
                       size_t cap)
{
    return http_x(fd, method, path, body, buf, cap, 0);
}

/* The integer after the first (or, with last, the last) "key": in s; -1 when absent. */
static inline long long json_ll(const char *s, const char *key, int last)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(s, pat), *q = p;
    while (last && q && (q = strstr(q + 1, pat)))
        p = q;
    if (!p)
        return -1;
    p += strlen(pat);
    while (*p == ' ')
        p++;
    return strtoll(p, NULL, 10);
}

/* Creates a run of the `items` flow emitting count items (POST /v1/runs on fd) and waits
 * until it is terminal (GET /v1/runs/{id}?wait=60 until "is_active":false). Returns 0 with
 * the run's id in id (idcap bytes) and its terminal run object in buf; -1, with the reply on
 * stderr, when a request fails. */
static inline int items_run(int fd, long long count, char *buf, size_t cap, char *id, size_t idcap)
{
    char body[256], path[256];
    snprintf(body, sizeof body, "{\"flow\":\"items\",\"input\":{\"count\":%lld}}", count);
    if (http(fd, "POST", "/v1/runs", body, buf, cap) != 201) {
        fprintf(stderr, "create: %s\n", buf);
        return -1;
    }
    const char *p = strstr(buf, "\"id\":\"");
    size_t n = p ? strcspn(p + 6, "\"") : 0;
    if (n >= idcap)
        n = idcap - 1;
    if (p)
        memcpy(id, p + 6, n);
    id[n] = 0;
    snprintf(path, sizeof path, "/v1/runs/%s?wait=60", id);
    for (;;) {
        if (http(fd, "GET", path, NULL, buf, cap) != 200) {
            fprintf(stderr, "get: %s\n", buf);
            return -1;
        }
        if (strstr(buf, "\"is_active\":false"))
            return 0;
    }
}

#endif
