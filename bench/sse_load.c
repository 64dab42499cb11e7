/*
 * sse_load.c: an SSE fan-out load client for runsd and for nginx + nchan (the baseline), so
 * both are measured by the same client in the same way.
 *
 * It opens N subscribers to an SSE URL, then publishes K events through an HTTP POST URL
 * (one event per POST, P POSTs in flight, at a fixed rate or as fast as the server answers),
 * each event carrying its send time ("bt", CLOCK_MONOTONIC microseconds) and sequence
 * ("bs"). It reports deliveries per second, per-delivery latency percentiles, the time until
 * the last subscriber had each event, and the server's memory per idle subscriber (from
 * /proc/PID/smaps_rollup, Private_Clean + Private_Dirty, before and after opening the N
 * subscribers). --pace B limits each subscriber to reading B bytes per second (in 10 ms
 * ticks), like a browser tab that takes events at its own pace. With --stall it instead opens one
 * subscriber that never reads beside one that does, publishes big events, and reports the server's
 * memory growth and whether the stalled subscriber was disconnected.
 *
 * Usage: sse_load --port P --sub PATH --pub PATH [--format item|raw] [-n N] [-k K]
 *                 [--rate R] [--inflight P] [--size BYTES] [--pid PID]... [--stall]
 * --format item wraps an event as a runsd worker line {"type":"item","data":{...}} (NDJSON);
 * raw posts the JSON object itself (nchan). Only libevent is used.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PIDS 8
#define MAX_INFLIGHT 64
#define CONNECTS_IN_FLIGHT 200

typedef struct bench bench;

typedef struct sub {
    bench *b;
    int fd;
    struct event *ev;
    char *carry; /* an incomplete frame kept between reads */
    size_t carry_len, carry_cap;
    uint64_t bytes;
    int64_t allowance; /* --pace: bytes it may still read in this tick */
    bool head_done, stalled, eof, waiting;
} sub;

struct bench {
    struct event_base *base;
    /* options */
    int port, n, k, inflight, size;
    double rate;
    int64_t pace;          /* bytes per second each subscriber reads at most (0 = no limit) */
    struct event *pace_ev; /* refills the allowances every 10 ms */
    const char *sub_path, *pub_path;
    bool raw, stall;
    pid_t pids[MAX_PIDS];
    int npids;
    /* subscribers */
    sub *subs;
    int n_subs, next_connect, connecting, open, failed;
    /* publishing */
    struct evhttp_connection *pub[MAX_INFLIGHT];
    bool pub_busy[MAX_INFLIGHT], pub_nodelay[MAX_INFLIGHT];
    int published, pub_errors;
    struct event *pub_timer, *tick;
    char *pad;
    /* results */
    int64_t *sent_us, *last_us; /* per event */
    uint32_t *got;              /* per event: subscribers that have it */
    uint32_t *lat;              /* per delivery, microseconds */
    uint64_t n_lat, deliveries;
    int64_t t_first_pub, t_last_pub, t_last_delivery, t_progress;
    long mem_base_kb, mem_peak_kb; /* after the subscribers opened; the highest since */
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *msg)
{
    fprintf(stderr, "sse_load: %s: %s\n", msg, strerror(errno));
    exit(1);
}

/* Private_Clean + Private_Dirty of the server processes, in kB. */
static long server_kb(const bench *b)
{
    long total = 0;
    for (int i = 0; i < b->npids; i++) {
        char path[64], line[256];
        snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)b->pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long v;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "Private_Clean: %ld", &v) == 1 ||
                sscanf(line, "Private_Dirty: %ld", &v) == 1)
                total += v;
        fclose(f);
    }
    return total;
}

/* Server CPU time (user + system), seconds. */
static double server_cpu(const bench *b)
{
    double total = 0;
    for (int i = 0; i < b->npids; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)b->pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        unsigned long ut = 0, st = 0;
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2)
            total += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    }
    return total;
}

/* --- subscribers ------------------------------------------------------------------------- */

static void record(bench *b, const char *frame, size_t len, int64_t t)
{
    const char *bt = memmem(frame, len, "\"bt\":", 5);
    const char *bs = memmem(frame, len, "\"bs\":", 5);
    if (!bt || !bs)
        return; /* a status event, a comment, a heartbeat */
    long long sent = strtoll(bt + 5, NULL, 10), seq = strtoll(bs + 5, NULL, 10);
    if (seq < 0 || seq >= b->k)
        return;
    b->deliveries++;
    b->got[seq]++;
    if (t > b->last_us[seq])
        b->last_us[seq] = t;
    if (b->n_lat < (uint64_t)b->n * (uint64_t)b->k)
        b->lat[b->n_lat++] = (uint32_t)(t - sent > 0 ? t - sent : 0);
    b->t_last_delivery = t;
    b->t_progress = t;
}

/* Splits buf into "\n\n"-terminated frames; returns the bytes consumed. */
static size_t frames(bench *b, const char *buf, size_t len, int64_t t)
{
    size_t start = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] == '\n' && buf[i + 1] == '\n') {
            record(b, buf + start, i - start, t);
            start = i + 2;
            i++;
        }
    }
    return start;
}

static void carry_keep(sub *s, const char *p, size_t n)
{
    if (n > s->carry_cap) {
        s->carry_cap = n * 2;
        s->carry = realloc(s->carry, s->carry_cap);
        if (!s->carry)
            die("realloc");
    }
    memmove(s->carry, p, n);
    s->carry_len = n;
}

static bool head(sub *s, char **p, size_t *n)
{
    char *end = memmem(*p, *n, "\r\n\r\n", 4);
    if (!end)
        return false;
    if (strncmp(*p, "HTTP/1.1 200", 12) != 0 && strncmp(*p, "HTTP/1.0 200", 12) != 0) {
        fprintf(stderr, "sse_load: subscriber refused: %.*s\n", (int)(strchr(*p, '\r') - *p), *p);
        s->b->failed++;
    } else {
        s->b->open++;
    }
    s->head_done = true;
    s->b->connecting--;
    size_t h = (size_t)(end + 4 - *p);
    *p += h;
    *n -= h;
    return true;
}

static void start_connects(bench *b);

static void sub_on_read(evutil_socket_t fd, short what, void *arg)
{
    sub *s = arg;
    bench *b = s->b;
    static char scratch[256 * 1024];
    size_t have = s->carry_len;
    memcpy(scratch, s->carry, have);
    size_t room = sizeof scratch - have;
    if (b->pace && s->head_done) {
        /* A reader paced like a browser tab: at most its allowance per 10 ms tick. */
        if (s->allowance <= 0) {
            event_del(s->ev);
            s->waiting = true;
            return;
        }
        if ((int64_t)room > s->allowance)
            room = (size_t)s->allowance;
    }
    ssize_t r = read(fd, scratch + have, room);
    if (r > 0 && b->pace && s->head_done)
        s->allowance -= r;
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        s->eof = true;
        event_del(s->ev);
        if (!s->head_done) {
            b->connecting--;
            b->failed++;
            start_connects(b);
        }
        return;
    }
    s->bytes += (uint64_t)r;
    char *p = scratch;
    size_t n = have + (size_t)r;
    if (!s->head_done) {
        if (!head(s, &p, &n)) {
            carry_keep(s, scratch, n);
            return;
        }
        start_connects(b);
    }
    size_t used = frames(b, p, n, now_us());
    carry_keep(s, p + used, n - used);
}

static void bench_on_pace(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    for (int i = 0; i < b->n_subs; i++) {
        sub *s = &b->subs[i];
        s->allowance = b->pace / 100;
        if (s->waiting && !s->eof && s->ev) {
            s->waiting = false;
            event_add(s->ev, NULL);
        }
    }
}

static void sub_on_connected(evutil_socket_t fd, short what, void *arg)
{
    sub *s = arg;
    bench *b = s->b;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
                     b->sub_path);
    if (err || write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "sse_load: connect/send failed: %s\n", strerror(err ? err : errno));
        b->connecting--;
        b->failed++;
        start_connects(b);
        return;
    }
    event_free(s->ev);
    s->ev = event_new(b->base, fd, EV_READ | EV_PERSIST, sub_on_read, s);
    if (!s->stalled)
        event_add(s->ev, NULL);
    else {
        b->connecting--; /* never reads, not even the head */
        b->open++;
        start_connects(b);
    }
}

static void connect_one(bench *b, sub *s)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)b->port)};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    s->b = b;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (s->fd < 0)
        die("socket (raise ulimit -n)");
    if (s->stalled || b->pace) {
        /* A stalled or paced reader: a small receive buffer, so what it has not taken waits
         * at the server, not in this process's kernel buffer. */
        int small = s->stalled ? 4096 : 8192;
        setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    if (connect(s->fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        die("connect");
    b->connecting++;
    s->ev = event_new(b->base, s->fd, EV_WRITE, sub_on_connected, s);
    event_add(s->ev, NULL);
}

static void start_connects(bench *b)
{
    while (b->connecting < CONNECTS_IN_FLIGHT && b->next_connect < b->n_subs)
        connect_one(b, &b->subs[b->next_connect++]);
}

/* --- publishing -------------------------------------------------------------------------- */

typedef struct pub_slot {
    bench *b;
    int i;
} pub_slot;

static pub_slot slots[MAX_INFLIGHT];

static void publish_one(bench *b, int slot);

static void pub_on_done(struct evhttp_request *req, void *arg)
{
    pub_slot *ps = arg;
    bench *b = ps->b;
    b->pub_busy[ps->i] = false;
    if (!req || evhttp_request_get_response_code(req) >= 300) {
        if (b->pub_errors++ < 5)
            fprintf(stderr, "sse_load: publish failed: %d\n",
                    req ? evhttp_request_get_response_code(req) : -1);
    }
    if (b->rate <= 0)
        publish_one(b, ps->i);
}

static void publish_one(bench *b, int slot)
{
    if (b->published >= b->k)
        return;
    int seq = b->published++;
    int64_t t = now_us();
    if (seq == 0)
        b->t_first_pub = t;
    b->sent_us[seq] = t;
    b->t_last_pub = t;
    struct evhttp_request *req = evhttp_request_new(pub_on_done, &slots[slot]);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", "127.0.0.1");
    evhttp_add_header(h, "Content-Type", b->raw ? "application/json" : "application/x-ndjson");
    struct evbuffer *body = evhttp_request_get_output_buffer(req);
    if (b->raw)
        evbuffer_add_printf(body, "{\"bt\":%lld,\"bs\":%d,\"pad\":\"%s\"}", (long long)t, seq,
                            b->pad);
    else
        evbuffer_add_printf(body,
                            "{\"type\":\"item\",\"data\":{\"bt\":%lld,\"bs\":%d,"
                            "\"pad\":\"%s\"}}\n",
                            (long long)t, seq, b->pad);
    b->pub_busy[slot] = true;
    if (evhttp_make_request(b->pub[slot], req, EVHTTP_REQ_POST, b->pub_path) != 0)
        die("evhttp_make_request");
    /* Without it a big body's last segment waits for the server's delayed ACK (40 ms). */
    int fd = bufferevent_getfd(evhttp_connection_get_bufferevent(b->pub[slot]));
    if (fd >= 0 && !b->pub_nodelay[slot]) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        b->pub_nodelay[slot] = true;
    }
}

/* Fixed rate: publish what is due since the start, on any idle connection. */
static void bench_on_pub_timer(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    double elapsed = (double)(now_us() - b->t_first_pub) / 1e6;
    int due = b->published == 0 ? 1 : (int)(elapsed * b->rate) + 1;
    for (int i = 0; i < b->inflight && b->published < due && b->published < b->k; i++)
        if (!b->pub_busy[i])
            publish_one(b, i);
}

static bool idle_publishers(const bench *b)
{
    for (int i = 0; i < b->inflight; i++)
        if (b->pub_busy[i])
            return false;
    return true;
}

static void bench_on_tick(evutil_socket_t fd, short what, void *arg)
{
    bench *b = arg;
    long kb = server_kb(b);
    if (kb > b->mem_peak_kb)
        b->mem_peak_kb = kb;
    if (b->published < b->k || !idle_publishers(b))
        return;
    uint64_t want = (uint64_t)(b->n_subs - b->failed - (b->stall ? 1 : 0)) * (uint64_t)b->k;
    int64_t quiet = now_us() - (b->t_progress > b->t_last_pub ? b->t_progress : b->t_last_pub);
    if (b->deliveries >= want || quiet > 5000000)
        event_base_loopbreak(b->base);
}

/* --- results ----------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)(p * (double)(n - 1));
    return v[i] / 1000.0;
}

static void report_fanout(bench *b, double idle_kb, double cpu)
{
    uint64_t want = (uint64_t)b->open * (uint64_t)b->k;
    double secs = (double)(b->t_last_delivery - b->t_first_pub) / 1e6;
    qsort(b->lat, b->n_lat, sizeof *b->lat, cmp_u32);
    uint32_t *last = calloc((size_t)b->k, sizeof *last);
    size_t nl = 0;
    for (int i = 0; i < b->k; i++)
        if (b->got[i] >= (uint32_t)b->open)
            last[nl++] = (uint32_t)(b->last_us[i] - b->sent_us[i]);
    qsort(last, nl, sizeof *last, cmp_u32);
    printf("RESULT subscribers=%d events=%d deliveries=%llu lost=%lld secs=%.3f "
           "deliveries_per_s=%.0f lat_p50_ms=%.2f lat_p99_ms=%.2f last_p50_ms=%.2f "
           "last_p99_ms=%.2f last_max_ms=%.2f idle_bytes_per_sub=%.0f server_cpu_s=%.2f "
           "server_growth_kb=%ld publish_errors=%d refused=%d\n",
           b->open, b->k, (unsigned long long)b->deliveries,
           (long long)want - (long long)b->deliveries, secs,
           secs > 0 ? (double)b->deliveries / secs : 0, pct_ms(b->lat, b->n_lat, 0.5),
           pct_ms(b->lat, b->n_lat, 0.99), pct_ms(last, nl, 0.5), pct_ms(last, nl, 0.99),
           pct_ms(last, nl, 1.0), idle_kb * 1024.0, cpu, b->mem_peak_kb - b->mem_base_kb,
           b->pub_errors, b->failed);
    free(last);
}

/* After the run: read the stalled subscriber to its end (2 s at most). */
static void report_stall(bench *b, long base_kb)
{
    sub *s = &b->subs[0];
    int fl = fcntl(s->fd, F_GETFL);
    fcntl(s->fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {2, 0};
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    /* Memory now, with the stalled reader still connected and nothing read. */
    long end_kb = server_kb(b);
    if (end_kb > b->mem_peak_kb)
        b->mem_peak_kb = end_kb;
    char buf[65536];
    ssize_t r;
    bool closed = false;
    while ((r = read(s->fd, buf, sizeof buf)) > 0)
        s->bytes += (uint64_t)r;
    closed = r == 0 || (r < 0 && errno == ECONNRESET);
    printf("RESULT stall events=%d event_bytes=%d reader_deliveries=%llu "
           "server_growth_kb=%ld server_end_growth_kb=%ld stalled_disconnected=%s "
           "stalled_bytes=%llu\n",
           b->k, b->size, (unsigned long long)b->deliveries, b->mem_peak_kb - base_kb,
           end_kb - base_kb, closed ? "yes" : "no", (unsigned long long)s->bytes);
}

/* --- main -------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(
        stderr,
        "usage: sse_load --port P --sub PATH --pub PATH [--format item|raw] [-n N]"
        " [-k K] [--rate R] [--inflight P] [--size BYTES] [--pid PID]... [--stall] [--pace B/s]\n");
    exit(2);
}

static void parse(bench *b, int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", 1, 0, 'p'},  {"sub", 1, 0, 's'},      {"pub", 1, 0, 'u'},  {"format", 1, 0, 'f'},
        {"rate", 1, 0, 'r'},  {"inflight", 1, 0, 'i'}, {"size", 1, 0, 'z'}, {"pid", 1, 0, 'P'},
        {"stall", 0, 0, 'S'}, {"pace", 1, 0, 'a'},     {0, 0, 0, 0}};
    int c;
    b->n = 100, b->k = 1000, b->inflight = 4, b->size = 64;
    while ((c = getopt_long(argc, argv, "n:k:", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            b->port = atoi(optarg);
            break;
        case 's':
            b->sub_path = optarg;
            break;
        case 'u':
            b->pub_path = optarg;
            break;
        case 'f':
            b->raw = strcmp(optarg, "raw") == 0;
            break;
        case 'r':
            b->rate = atof(optarg);
            break;
        case 'i':
            b->inflight = atoi(optarg);
            break;
        case 'z':
            b->size = atoi(optarg);
            break;
        case 'P':
            if (b->npids < MAX_PIDS)
                b->pids[b->npids++] = (pid_t)atoi(optarg);
            break;
        case 'S':
            b->stall = true;
            break;
        case 'a':
            b->pace = atoll(optarg);
            break;
        case 'n':
            b->n = atoi(optarg);
            break;
        case 'k':
            b->k = atoi(optarg);
            break;
        default:
            usage();
        }
    }
    if (!b->port || !b->sub_path || !b->pub_path || b->n < 1 || b->k < 1 || b->inflight < 1 ||
        b->inflight > MAX_INFLIGHT)
        usage();
}

static void alloc_all(bench *b)
{
    b->n_subs = b->n + (b->stall ? 1 : 0);
    b->subs = calloc((size_t)b->n_subs, sizeof *b->subs);
    b->sent_us = calloc((size_t)b->k, sizeof *b->sent_us);
    b->last_us = calloc((size_t)b->k, sizeof *b->last_us);
    b->got = calloc((size_t)b->k, sizeof *b->got);
    b->lat = malloc((size_t)b->n * (size_t)b->k * sizeof *b->lat);
    b->pad = malloc((size_t)b->size + 1);
    if (!b->subs || !b->sent_us || !b->last_us || !b->got || !b->lat || !b->pad)
        die("out of memory");
    memset(b->pad, 'x', (size_t)b->size);
    b->pad[b->size] = 0;
    if (b->stall)
        b->subs[0].stalled = true;
}

static void run_until(bench *b, bool (*done)(const bench *))
{
    while (!done(b))
        event_base_loop(b->base, EVLOOP_ONCE);
}

static bool all_connected(const bench *b)
{
    return b->open + b->failed >= b->n_subs;
}

int main(int argc, char **argv)
{
    static bench b;
    parse(&b, argc, argv);
    alloc_all(&b);
    b.base = event_base_new();
    long kb0 = server_kb(&b);
    start_connects(&b);
    run_until(&b, all_connected);
    struct timeval settle = {1, 0};
    event_base_loopexit(b.base, &settle); /* let the server finish setting them up */
    event_base_dispatch(b.base);
    long kb1 = server_kb(&b);
    b.mem_base_kb = b.mem_peak_kb = kb1;
    double idle_kb = b.open ? (double)(kb1 - kb0) / b.open : 0;
    fprintf(stderr, "sse_load: %d subscribers open, %d refused; server %ld -> %ld kB\n", b.open,
            b.failed, kb0, kb1);
    for (int i = 0; i < b.inflight; i++) {
        slots[i] = (pub_slot){&b, i};
        b.pub[i] = evhttp_connection_base_new(b.base, NULL, "127.0.0.1", (uint16_t)b.port);
        if (!b.pub[i])
            die("evhttp_connection_base_new");
    }
    b.tick = event_new(b.base, -1, EV_PERSIST, bench_on_tick, &b);
    struct timeval tick = {0, 50000}, ms = {0, 1000}, pace_tick = {0, 10000};
    event_add(b.tick, &tick);
    if (b.pace > 0) {
        bench_on_pace(-1, 0, &b);
        b.pace_ev = event_new(b.base, -1, EV_PERSIST, bench_on_pace, &b);
        event_add(b.pace_ev, &pace_tick);
    }
    double cpu0 = server_cpu(&b);
    b.t_progress = now_us();
    if (b.rate > 0) {
        b.pub_timer = event_new(b.base, -1, EV_PERSIST, bench_on_pub_timer, &b);
        event_add(b.pub_timer, &ms);
    } else {
        for (int i = 0; i < b.inflight; i++)
            publish_one(&b, i);
    }
    event_base_dispatch(b.base);
    double cpu = server_cpu(&b) - cpu0;
    if (b.stall) {
        b.open--; /* the stalled one is not counted in deliveries */
        report_fanout(&b, idle_kb, cpu);
        report_stall(&b, kb1);
    } else {
        report_fanout(&b, idle_kb, cpu);
    }
    return 0;
}
