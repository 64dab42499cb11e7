/*
 * sse.h: one Server-Sent Events connection taken over from libevhtp. We write our own
 * response head (close-delimited body, right for HTTP/1.0 and 1.1), keep reading so a
 * disconnect is seen at once, cap the kernel send buffer, and bound the bytes waiting in
 * user space: a reader that falls further behind is disconnected, never buffered for.
 */
#ifndef RUNSD_SSE_H
#define RUNSD_SSE_H

#include <evhtp/evhtp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rd_sse rd_sse;

typedef enum {
    RD_SSE_CLOSED_BY_PEER, /* EOF or socket error */
    RD_SSE_CLOSED_SLOW,    /* over the unsent-bytes bound */
    RD_SSE_CLOSED_BY_US,   /* rd_sse_close */
} rd_sse_why;

/** Called once when the stream is gone (the rd_sse is freed right after it returns). */
typedef void (*rd_sse_close_fn)(rd_sse *s, rd_sse_why why, void *arg);

typedef struct rd_sse_opts {
    size_t max_buffer;         /* unsent bytes bound (user space) */
    int64_t heartbeat_ms;      /* comment line interval; 0 = none */
    int retry_ms;              /* `retry:` sent on connect; 0 = none */
    const char *extra_headers; /* "Name: value\r\n..." lines (CORS), may be NULL */
} rd_sse_opts;

/** Takes r's connection over (only inside the request callback) and writes the head. The
 * request must not be used afterwards. NULL on failure (the request is still evhtp's). */
rd_sse *rd_sse_open(evhtp_request_t *r, const rd_sse_opts *o, rd_sse_close_fn on_close, void *arg);
/** Queues raw SSE bytes. Returns 0, or -1 when the stream was closed for being over the
 * bound (on_close has then been called and s freed). */
int rd_sse_write(rd_sse *s, const char *data, size_t len);
/** Queues a frame: "id: <id>\nevent: <event>\ndata: <data>\n\n" (id <= 0 / event NULL
 * omitted). Same return as rd_sse_write. */
int rd_sse_frame(rd_sse *s, int64_t id, const char *event, const char *data, size_t len);
/** Bytes waiting in user space. */
size_t rd_sse_pending(const rd_sse *s);
/** Bytes the peer has taken so far (written to the socket and no longer in the kernel's send
 * queue): grows while the reader reads, even when nothing moves in user space. */
uint64_t rd_sse_taken(const rd_sse *s);
/** Flushes what is queued, then closes; on_close is called with RD_SSE_CLOSED_BY_US. A reader
 * that takes nothing for 30 s is dropped instead of holding the stream open. */
void rd_sse_close(rd_sse *s);
/** Closes at once without flushing (shutdown); on_close called. */
void rd_sse_abort(rd_sse *s);
void rd_sse_set_arg(rd_sse *s, void *arg);

/** Called when the unsent bytes fall to the low watermark after a write (not while closing),
 * so a writer that pages its output (a replay) can produce the next page. */
typedef void (*rd_sse_drain_fn)(rd_sse *s, void *arg);
void rd_sse_set_drain(rd_sse *s, size_t low, rd_sse_drain_fn fn);
/** Moves all of buf to the stream. When nothing else is queued the bytes are written to the
 * socket at once (one writev, no event-loop round trip); what the socket does not take is
 * queued. No bound check and never closes synchronously: the caller bounds its writes. */
void rd_sse_send_buffer(rd_sse *s, struct evbuffer *buf);

#endif
