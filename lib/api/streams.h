/*
 * streams.h: the live event streams of SPEC section 4 (GET /v1/runs/{id}/events with
 * Accept: text/event-stream, its /sse alias, and GET /v1/events): replay from the store, then
 * live from the fan-out hub, with resume by Last-Event-ID, bounded per-subscriber memory,
 * heartbeats, and read-only stream tokens for browsers.
 */
#ifndef RUNSD_STREAMS_H
#define RUNSD_STREAMS_H

#include <stdbool.h>

#include "engine/engine.h"
#include "http/http.h"

typedef struct rd_streams rd_streams;

/** Creates the streams' state (the fan-out hub) and registers it with the engine, so every
 * committed event reaches it. eng is borrowed and must outlive it (the engine cannot drop
 * a listener: free this before the engine). cfg gives the hub's initial bounds. NULL with
 * err on failure. Free with rd_streams_free. */
rd_streams *rd_streams_new(struct event_base *base, rd_engine *eng, const rd_config *cfg, char *err,
                           size_t errlen);
/** Routes GET /v1/events (SSE, with the flow/run/types filters) into h. 0 or RD_ERR. */
int rd_streams_register(rd_streams *st, rd_http *h);
/** GET /v1/runs/{id}/events as SSE, for aud (see rd_streams_access). Answers (an error, 204,
 * or the stream). */
void rd_streams_run(rd_streams *st, rd_req *req, const char *id, rd_audience aud);
/** Whether req may read run id's events, and as which audience: a write or admin scope (or no
 * keys configured) RD_AUD_FULL; a valid stream token (?token=, SSE only) RD_AUD_STREAM; a read
 * key RD_AUD_READ. False after replying 401/403. */
bool rd_streams_access(rd_streams *st, rd_req *req, const char *id, rd_audience *aud);
/** True while subscribers that keep up are behind by more than [server] sse_backpressure:
 * producers should wait (the engine stops reading workers' output by itself). */
bool rd_streams_pressure(const rd_streams *st);
/** fn(arg) is called when the pressure is lifted (one callback; the last set wins). */
void rd_streams_on_release(rd_streams *st, void (*fn)(void *arg), void *arg);
/** How many event-stream subscribers are connected. */
size_t rd_streams_count(const rd_streams *st);
struct rd_metrics;
/** Registers the streams' families in reg (borrowed; it must outlive the streams' scrapes):
 * the hub's counts, subscribers, and disconnects by cause. 0 or RD_ERR. */
int rd_streams_set_metrics(rd_streams *st, struct rd_metrics *reg);
/** Closes every stream (shutdown): the first call flushes what is queued, later calls
 * drop streams still flushing. New streams are refused from the first call on. Safe on
 * NULL. */
void rd_streams_close_all(rd_streams *st);
/** Closes what is left and frees the state. Safe on NULL. */
void rd_streams_free(rd_streams *st);

#endif
