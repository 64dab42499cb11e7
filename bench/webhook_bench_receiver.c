/*
 * webhook_bench_receiver.c: a webhook receiver for bench/webhook_bench.py, on libevent's
 * evhttp so that it is never the bottleneck of a throughput measurement.
 *
 *   webhook_bench_receiver fast|hang [port]
 *
 * fast: every POST gets 204 at once. hang: every POST is held open, never answered (the
 * connection stays until the sender gives up). In both modes GET /stats answers
 * {"n": POSTs received, "first": t, "last": t, "open": POSTs held} (t: seconds, monotonic
 * clock), so the driver can watch progress. Prints "PORT <n>" once listening.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

typedef struct rx {
    int hang;
    long n, open;
    double first, last;
} rx;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rx_on_stats(struct evhttp_request *req, rx *r)
{
    struct evbuffer *out = evbuffer_new();

    evbuffer_add_printf(out, "{\"n\": %ld, \"first\": %.6f, \"last\": %.6f, \"open\": %ld}\n", r->n,
                        r->first, r->last, r->open);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void rx_on_request(struct evhttp_request *req, void *arg)
{
    rx *r = arg;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        rx_on_stats(req, r);
        return;
    }
    r->last = now_s();
    if (r->n++ == 0)
        r->first = r->last;
    if (r->hang) {
        r->open++; /* evhttp frees the request when the client closes the connection */
        return;
    }
    evhttp_send_reply(req, 204, "No Content", NULL);
}

int main(int argc, char **argv)
{
    rx r = {0};
    struct event_base *base;
    struct evhttp *http;
    struct evconnlistener *l;
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof sin;

    if (argc < 2 || (strcmp(argv[1], "fast") != 0 && strcmp(argv[1], "hang") != 0)) {
        fprintf(stderr, "usage: %s fast|hang [port]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    r.hang = strcmp(argv[1], "hang") == 0;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons(argc > 2 ? (unsigned short)atoi(argv[2]) : 0);
    base = event_base_new();
    http = evhttp_new(base);
    /* Our own listener: a deep backlog, so a burst of 1,000 connects is not dropped. */
    l = evconnlistener_new_bind(base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
                                (struct sockaddr *)&sin, sizeof sin);
    if (!base || !http || !l || !evhttp_bind_listener(http, l)) {
        perror("listen");
        return 1;
    }
    evhttp_set_timeout(http, 3600);
    evhttp_set_gencb(http, rx_on_request, &r);
    getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
    printf("PORT %d\n", ntohs(sin.sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
