/*
 * sse.c: the transport of one SSE stream on a bufferevent we own. See sse.h for why we take
 * the connection from evhtp instead of using its chunked replies.
 */
#include "stream/sse.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define SSE_SNDBUF (64 * 1024)
#define SSE_NOTSENT_LOWAT (4 * 1024)
/* The kernel checks SSE_NOTSENT_LOWAT only when a write needs a new segment buffer, and on
 * loopback or with TSO one holds 64 KiB: so bytes are written in chunks of this size (as many
 * as the socket takes), which bounds what a write can add past the low-water mark. */
#define SSE_MAX_WRITE (16 * 1024)
#define SSE_CLOSE_TIMEOUT_S 30

struct rd_sse {
    struct bufferevent *bev;
    struct event *heartbeat;
    rd_sse_close_fn on_close;
    rd_sse_drain_fn on_drain;
    void *arg;
    size_t max_buffer;
    uint64_t written; /* bytes libevent has handed to the socket */
    bool closing;
};

/* Everything that leaves the output buffer went to the socket. */
static void sse_on_out_changed(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    rd_sse *s = arg;
    s->written += info->n_deleted;
}

static void sse_free(rd_sse *s, rd_sse_why why)
{
    rd_sse_close_fn cb = s->on_close;
    s->on_close = NULL;
    if (cb)
        cb(s, why, s->arg);
    if (s->heartbeat)
        event_free(s->heartbeat);
    bufferevent_free(s->bev);
    free(s);
}

static void sse_on_read(struct bufferevent *bev, void *arg)
{
    /* Clients send nothing after the request; discard so reading stays enabled for EOF. */
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void sse_on_write(struct bufferevent *bev, void *arg)
{
    rd_sse *s = arg;
    if (s->closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        sse_free(s, RD_SSE_CLOSED_BY_US);
    else if (!s->closing && s->on_drain)
        s->on_drain(s, s->arg);
}

static void sse_on_event(struct bufferevent *bev, short what, void *arg)
{
    rd_sse *s = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        sse_free(s, s->closing ? RD_SSE_CLOSED_BY_US : RD_SSE_CLOSED_BY_PEER);
}

static void sse_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    rd_sse *s = arg;
    rd_sse_write(s, ":\n\n", 3);
}

rd_sse *rd_sse_open(evhtp_request_t *r, const rd_sse_opts *o, rd_sse_close_fn on_close, void *arg)
{
    rd_sse *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    evhtp_connection_t *c = evhtp_request_get_connection(r);
    struct event_base *base = c->evbase;
    /* Taking ownership drops the connection's hooks without calling them: run the
     * connection-fini hook now so its state is released. */
    evhtp_hooks_t *hooks = evhtp_connection_get_hooks(c);
    if (hooks && hooks->on_connection_fini) {
        hooks->on_connection_fini(c, hooks->on_connection_fini_arg);
        evhtp_connection_unset_hook(c, evhtp_hook_on_connection_fini);
    }
    s->bev = evhtp_connection_take_ownership(c);
    if (!s->bev) {
        free(s);
        return NULL;
    }
    s->on_close = on_close;
    s->arg = arg;
    s->max_buffer = o->max_buffer;
    int fd = bufferevent_getfd(s->bev);
    int sndbuf = SSE_SNDBUF, one = 1;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    /* Frames are already gathered into one write per loop iteration; Nagle would only hold
     * the next one back until the reader's delayed ACK (up to 40 ms on Linux). On a unix
     * socket this fails harmlessly. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* The kernel keeps at most SSE_NOTSENT_LOWAT of bytes it has not sent yet; the rest waits
     * in our output buffer, where the hub sees it (lag, bounds, backpressure). Without it a
     * reader slower than the run hides up to the whole send buffer in the kernel: seconds at a
     * slow reader's pace, invisible to backpressure. Bytes in flight are not limited by it, so
     * a fast reader (or a long, fat link) is not slowed. */
    int lowat = SSE_NOTSENT_LOWAT;
    setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    bufferevent_set_timeouts(s->bev, NULL, NULL);
    bufferevent_set_max_single_write(s->bev, SSE_MAX_WRITE);
    bufferevent_setcb(s->bev, sse_on_read, sse_on_write, sse_on_event, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    struct evbuffer *out = bufferevent_get_output(s->bev);
    evbuffer_add_cb(out, sse_on_out_changed, s);
    evbuffer_add_printf(out,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                        "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
                        "Connection: close\r\n%s\r\n",
                        o->extra_headers ? o->extra_headers : "");
    if (o->retry_ms > 0)
        evbuffer_add_printf(out, "retry: %d\n\n", o->retry_ms);
    if (o->heartbeat_ms > 0) {
        s->heartbeat = event_new(base, -1, EV_PERSIST, sse_on_heartbeat, s);
        struct timeval tv = {(time_t)(o->heartbeat_ms / 1000),
                             (suseconds_t)((o->heartbeat_ms % 1000) * 1000)};
        if (s->heartbeat)
            event_add(s->heartbeat, &tv);
    }
    return s;
}

int rd_sse_write(rd_sse *s, const char *data, size_t len)
{
    if (s->closing)
        return 0;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    if (evbuffer_get_length(out) + len > s->max_buffer) {
        sse_free(s, RD_SSE_CLOSED_SLOW);
        return -1;
    }
    evbuffer_add(out, data, len);
    return 0;
}

int rd_sse_frame(rd_sse *s, int64_t id, const char *event, const char *data, size_t len)
{
    char head[160];
    int n = 0;
    if (id > 0)
        n += snprintf(head + n, sizeof head - (size_t)n, "id: %" PRId64 "\n", id);
    if (event)
        n += snprintf(head + n, sizeof head - (size_t)n, "event: %s\n", event);
    n += snprintf(head + n, sizeof head - (size_t)n, "data: ");
    if (s->closing)
        return 0;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    if (evbuffer_get_length(out) + (size_t)n + len + 2 > s->max_buffer) {
        sse_free(s, RD_SSE_CLOSED_SLOW);
        return -1;
    }
    evbuffer_add(out, head, (size_t)n);
    evbuffer_add(out, data, len);
    evbuffer_add(out, "\n\n", 2);
    return 0;
}

uint64_t rd_sse_taken(const rd_sse *s)
{
    /* SIOCOUTQ: what the kernel still holds for the peer (not yet acknowledged; on loopback
     * that is what does not fit in the reader's receive buffer). */
    int outq = 0;
    int fd = bufferevent_getfd(s->bev);
    if (fd < 0 || ioctl(fd, SIOCOUTQ, &outq) != 0 || outq < 0)
        outq = 0;
    return s->written > (uint64_t)outq ? s->written - (uint64_t)outq : 0;
}

size_t rd_sse_pending(const rd_sse *s)
{
    return evbuffer_get_length(bufferevent_get_output(s->bev));
}

void rd_sse_close(rd_sse *s)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->heartbeat)
        event_del(s->heartbeat);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0) {
        sse_free(s, RD_SSE_CLOSED_BY_US);
        return;
    }
    /* A reader that stopped reading would keep a closing stream (and its descriptor) forever:
     * give the flush a deadline of write progress. */
    struct timeval tv = {SSE_CLOSE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(s->bev, NULL, &tv);
}

void rd_sse_abort(rd_sse *s)
{
    sse_free(s, RD_SSE_CLOSED_BY_US);
}

void rd_sse_set_arg(rd_sse *s, void *arg)
{
    s->arg = arg;
}

void rd_sse_set_drain(rd_sse *s, size_t low, rd_sse_drain_fn fn)
{
    s->on_drain = fn;
    bufferevent_setwatermark(s->bev, EV_WRITE, low, 0);
}

/* Writes b to fd a chunk at a time while the socket takes whole chunks: as much as a fast
 * reader takes (a burst is not held back), while each chunk's new segment buffer makes the
 * kernel check the low-water mark, so a slow reader's socket stops taking past it. Returns the
 * bytes written. */
static uint64_t write_chunks(struct evbuffer *b, int fd)
{
    uint64_t total = 0;
    while (evbuffer_get_length(b) > 0) {
        int n = evbuffer_write_atmost(b, fd, SSE_MAX_WRITE);
        if (n <= 0)
            break;
        total += (uint64_t)n;
        if (n < SSE_MAX_WRITE)
            break; /* the socket took less than asked: it is full */
    }
    return total;
}

void rd_sse_send_buffer(rd_sse *s, struct evbuffer *buf)
{
    if (s->closing) {
        evbuffer_drain(buf, evbuffer_get_length(buf));
        return;
    }
    struct evbuffer *out = bufferevent_get_output(s->bev);
    int fd = bufferevent_getfd(s->bev);
    /* Writing straight away saves arming the write event, a poll wake-up and disarming it,
     * per subscriber per batch; bytes stay in order because buf is written directly only
     * when nothing is queued before it. With a backlog, the write event is armed already;
     * one more attempt lets a reader that caught up since take the bytes now. Errors are
     * left for the bufferevent to see on its own next write or read. */
    if (evbuffer_get_length(out) == 0) {
        /* not through out: its callback does not see these bytes */
        s->written += write_chunks(buf, fd);
        if (evbuffer_get_length(buf) > 0)
            evbuffer_add_buffer(out, buf);
    } else {
        evbuffer_add_buffer(out, buf);
        write_chunks(out, fd); /* counted by out's callback */
    }
}
