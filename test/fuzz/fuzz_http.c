/*
 * fuzz_http.c: libFuzzer target for raw HTTP: the input's bytes are written on a loopback TCP
 * connection to a real server (runsd_new on an event_base, the whole route table, an
 * in-memory store), so they go through libevhtp's parser, our head guard and limits
 * (lib/http/http_guard.c, head.c), request parsing (req.c: path, query, API keys, CORS), the
 * router and the handlers of lib/api, and back out as an answer.
 *
 * Two servers live for the whole run, on one event_base: "open" (no API keys) and "auth"
 * (a read, a write and an admin key, and a CORS origin). An input goes to "open" unless it
 * starts with the line "# config: auth\n" (dropped before sending), the header line the
 * bad-input suite uses for the same choice. Both have a flow "test" with executor = external,
 * so no process is ever spawned, and one run created (not started) at setup; "{{RUN}}" in
 * an input is replaced by that run's id, as in test/badinput.
 *
 * Per input: connect, write everything, shutdown(SHUT_WR), then run the loop until the server
 * closes the connection or a deadline passes (an SSE stream or a long poll the server keeps
 * open; both also end on the client's EOF, so the deadline is a backstop, counted and reported
 * at exit). The client side is the only thing that waits: the server runs on the same loop.
 *
 * Contract checked on what comes back: a sequence of HTTP/1.x responses (status line, head
 * ended by a blank line, a body of Content-Length bytes), as far as it can be followed (it
 * stops at a chunked or close-delimited body, at an SSE stream, and for any input holding
 * "HEAD", whose answers have a Content-Length but no body), and no 500: with an in-memory
 * store nothing a client sends should be an internal error.
 *
 * The servers keep state between inputs (runs created, the one run cancelled...), which a
 * crash may depend on; each is made again every RESET_EVERY inputs (env FUZZ_HTTP_RESET,
 * 1 makes every input start from a fresh server, for replaying a crash), which also bounds
 * the memory that runs created by inputs take.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config/config.h"
#include "runsd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define AUTH_PREFIX "# config: auth\n"
#define RUN_MARK "{{RUN}}"
#define DEADLINE_MS 200
#define RESPONSE_KEEP (64 * 1024) /* bytes of the answer kept for the contract check */

static const char CONFIG_COMMON[] = "[server]\n"
                                    "listen = 127.0.0.1:0\n"
                                    "log_level = error\n"
                                    "max_body = 64K\n"
                                    "max_uri = 2K\n"
                                    "max_headers = 4K\n"
                                    "head_timeout = 100ms\n"
                                    "body_timeout = 100ms\n"
                                    "sse_heartbeat = 100ms\n"
                                    "%s"
                                    "[store]\n"
                                    "path = :memory:\n"
                                    "allow_memory = yes\n"
                                    "[limits]\n"
                                    "max_wait = 1s\n"
                                    "max_queued = 1000\n"
                                    "%s"
                                    "[flow.test]\n"
                                    "executor = external\n"
                                    "approval_timeout = 1h\n";

static const char AUTH_SERVER[] = "cors_origin = https://app.example.com\n";
static const char AUTH_KEYS[] = "[auth]\n"
                                "key = read:readkey-0123456789abcdef\n"
                                "key = write:writekey-0123456789abcdef\n"
                                "key = admin:adminkey-0123456789abcdef\n";

typedef struct fz_server {
    bool auth;
    runsd *d;
    int port;
    char run_id[64];
} fz_server;

/* One exchange on the client side of a connection. */
typedef struct fz_client {
    int fd;
    const uint8_t *out;
    size_t out_len, out_off;
    bool shut;
    char in[RESPONSE_KEEP];
    size_t in_len, in_total;
    bool eof, timed_out;
    struct event *ev_read, *ev_write, *ev_deadline;
} fz_client;

static struct event_base *base;
static fz_server servers[2];
static unsigned long n_inputs, n_deadlines, reset_every = 2000;
static bool print_answers; /* env FUZZ_HTTP_PRINT: each answer's status lines, to check seeds */

static void client_finish(fz_client *c)
{
    event_del(c->ev_read);
    event_del(c->ev_write);
    event_del(c->ev_deadline);
    event_base_loopbreak(base);
}

static void client_on_write(evutil_socket_t fd, short what, void *arg)
{
    fz_client *c = arg;
    (void)what;
    while (c->out_off < c->out_len) {
        ssize_t n = send(fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return; /* again when writable */
        break;      /* the server closed early (EPIPE, ECONNRESET): fine, read what it said */
    }
    event_del(c->ev_write);
    shutdown(fd, SHUT_WR);
    c->shut = true;
}

static void client_on_read(evutil_socket_t fd, short what, void *arg)
{
    fz_client *c = arg;
    char buf[16384];
    (void)what;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            size_t keep = sizeof c->in - c->in_len;
            if (keep > (size_t)n)
                keep = (size_t)n;
            memcpy(c->in + c->in_len, buf, keep);
            c->in_len += keep;
            c->in_total += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        c->eof = true; /* 0, or ECONNRESET: a server may reset what it refuses */
        client_finish(c);
        return;
    }
}

static void client_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    fz_client *c = arg;
    (void)fd;
    (void)what;
    c->timed_out = true;
    client_finish(c);
}

/* Sends data to port and runs the loop until the server closes or the deadline. Fills c. */
static void exchange(int port, const uint8_t *data, size_t size, fz_client *c)
{
    memset(c, 0, sizeof *c);
    c->out = data;
    c->out_len = size;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
    CHECK(rc == 0 || errno == EINPROGRESS);
    c->ev_read = event_new(base, c->fd, EV_READ | EV_PERSIST, client_on_read, c);
    c->ev_write = event_new(base, c->fd, EV_WRITE | EV_PERSIST, client_on_write, c);
    c->ev_deadline = evtimer_new(base, client_on_deadline, c);
    CHECK(c->ev_read && c->ev_write && c->ev_deadline);
    struct timeval tv = {.tv_sec = 0, .tv_usec = DEADLINE_MS * 1000};
    event_add(c->ev_read, NULL);
    event_add(c->ev_write, NULL);
    event_add(c->ev_deadline, &tv);
    event_base_loop(base, 0);
    event_free(c->ev_read);
    event_free(c->ev_write);
    event_free(c->ev_deadline);
    close(c->fd);
    /* Let the server see the close (a stream we gave up on) before the next input. */
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static const char *find(const char *p, const char *end, const char *s)
{
    size_t n = strlen(s);
    for (; p + n <= end; p++)
        if (memcmp(p, s, n) == 0)
            return p;
    return NULL;
}

/* The header's value in head [p, end), case-insensitive name, or NULL. */
static const char *header(const char *p, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = p; l && l < end;) {
        const char *nl = find(l, end, "\r\n");
        if (!nl)
            return NULL;
        if ((size_t)(nl - l) > n && strncasecmp(l, name, n) == 0 && l[n] == ':')
            return l + n + 1;
        l = nl + 2;
    }
    return NULL;
}

/* The contract on the answer: HTTP/1.x responses one after the other, no 500. */
static void check_answer(const fz_client *c, bool head_request)
{
    const char *p = c->in, *end = c->in + c->in_len;
    while (p < end) {
        if (end - p < 13)
            return; /* cut by the deadline or by our buffer */
        CHECK(memcmp(p, "HTTP/1.1 ", 9) == 0 || memcmp(p, "HTTP/1.0 ", 9) == 0);
        int status = atoi(p + 9);
        CHECK(status >= 100 && status <= 599);
        CHECK(status != 500);
        const char *eoh = find(p, end, "\r\n\r\n");
        if (!eoh)
            return;
        const char *cl = header(p, eoh + 2, "Content-Length");
        const char *te = header(p, eoh + 2, "Transfer-Encoding");
        if (head_request || te || (!cl && status >= 200 && status != 204 && status != 304))
            return; /* chunked, an SSE stream, close-delimited, or no body after a HEAD */
        long long len = cl ? strtoll(cl, NULL, 10) : 0;
        CHECK(len >= 0);
        if (len > end - (eoh + 4))
            return;
        p = eoh + 4 + len;
    }
}

static void print_status_lines(const fz_client *c)
{
    fprintf(stderr, "fuzz_http: %zu bytes back%s\n", c->in_total,
            c->timed_out ? " (deadline)" : "");
    const char *end = c->in + c->in_len;
    for (const char *p = c->in; (p = find(p, end, "HTTP/1.")); p++) {
        const char *eol = find(p, end, "\r\n");
        int n = (int)((eol ? eol : end) - p);
        fprintf(stderr, "  %.*s\n", n < 80 ? n : 80, p);
    }
}

/* The input as sent: the auth line dropped, {{RUN}} replaced. Returns a malloc'd copy. */
static uint8_t *prepare(const uint8_t *data, size_t size, const fz_server *s, size_t *out_len)
{
    size_t idlen = strlen(s->run_id), marks = 0, mlen = strlen(RUN_MARK);
    for (size_t i = 0; i + mlen <= size; i++)
        if (memcmp(data + i, RUN_MARK, mlen) == 0)
            marks++, i += mlen - 1;
    uint8_t *buf = malloc(size + marks * idlen + 1);
    CHECK(buf);
    size_t n = 0;
    for (size_t i = 0; i < size;) {
        if (i + mlen <= size && memcmp(data + i, RUN_MARK, mlen) == 0) {
            memcpy(buf + n, s->run_id, idlen);
            n += idlen;
            i += mlen;
        } else {
            buf[n++] = data[i++];
        }
    }
    *out_len = n;
    return buf;
}

static void server_on_done(void *arg)
{
    *(bool *)arg = true;
}

static void server_stop(fz_server *s)
{
    if (!s->d)
        return;
    bool done = false;
    runsd_shutdown(s->d, server_on_done, &done);
    for (int i = 0; i < 1000 && !done; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK(done);
    runsd_free(s->d);
    s->d = NULL;
}

/* Creates the server and its run (POST /v1/runs, not started), whose id {{RUN}} stands for. */
static void server_start(fz_server *s)
{
    char text[2048], err[512];
    snprintf(text, sizeof text, CONFIG_COMMON, s->auth ? AUTH_SERVER : "",
             s->auth ? AUTH_KEYS : "");
    rd_config *cfg = NULL;
    if (rd_config_parse_string(text, "fuzz_http.ini", &cfg, err, sizeof err) != 0 ||
        runsd_new(base, cfg, &s->d, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_http: cannot start a server: %s\n", err);
        abort();
    }
    runsd_start(s->d);
    s->port = runsd_bound_port(s->d);
    CHECK(s->port > 0);

    static const char body[] = "{\"flow\":\"test\",\"start\":false}";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/runs HTTP/1.1\r\nHost: runsd\r\n%sContent-Type: application/json"
                     "\r\nContent-Length: %zu\r\n\r\n%s",
                     s->auth ? "Authorization: Bearer writekey-0123456789abcdef\r\n" : "",
                     sizeof body - 1, body);
    static fz_client c; /* large; once per server */
    exchange(s->port, (const uint8_t *)req, (size_t)n, &c);
    c.in[c.in_len < sizeof c.in ? c.in_len : sizeof c.in - 1] = '\0';
    const char *id = strstr(c.in, "\"id\":\"");
    CHECK(strncmp(c.in, "HTTP/1.1 201", 12) == 0 && id);
    id += 6;
    size_t len = strcspn(id, "\"");
    CHECK(len > 0 && len < sizeof s->run_id);
    memcpy(s->run_id, id, len);
    s->run_id[len] = '\0';
}

static void report(void)
{
    fprintf(stderr, "fuzz_http: %lu inputs, %lu ended by the %d ms deadline\n", n_inputs,
            n_deadlines, DEADLINE_MS);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    print_answers = getenv("FUZZ_HTTP_PRINT") != NULL;
    const char *e = getenv("FUZZ_HTTP_RESET");
    if (e && atol(e) > 0)
        reset_every = (unsigned long)atol(e);
    base = event_base_new();
    CHECK(base);
    servers[1].auth = true;
    server_start(&servers[0]);
    server_start(&servers[1]);
    atexit(report);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (n_inputs > 0 && n_inputs % reset_every == 0)
        for (int i = 0; i < 2; i++) {
            server_stop(&servers[i]);
            server_start(&servers[i]);
        }
    n_inputs++;

    fz_server *s = &servers[0];
    size_t plen = strlen(AUTH_PREFIX);
    if (size >= plen && memcmp(data, AUTH_PREFIX, plen) == 0) {
        s = &servers[1];
        data += plen;
        size -= plen;
    }
    size_t len;
    uint8_t *buf = prepare(data, size, s, &len);
    static fz_client c;
    exchange(s->port, buf, len, &c);
    if (c.timed_out)
        n_deadlines++;
    if (print_answers)
        print_status_lines(&c);
    check_answer(&c, memmem(buf, len, "HEAD", 4) != NULL);
    free(buf);
    return 0;
}
