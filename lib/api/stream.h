/*
 * stream.h: the live event streams of SPEC section 4 (GET /v1/runs/{id}/events with
 * Accept: text/event-stream, its /sse alias, and GET /v1/events): replay from the store, then
 * live from the fan-out hub, with resume by Last-Event-ID, bounded per-subscriber memory,
 * heartbeats, and read-only stream tokens for browsers.
 */
#ifndef RUNSD_STREAM_H
#define RUNSD_STREAM_H

#include <stdbool.h>

#include "http/http.h"

/** Creates h's stream state (the fan-out hub) and registers it with the engine, so every
 * committed event reaches it. Called once by rd_http_new. 0 or RD_ERR with err. */
int rd_stream_init(rd_http *h, char *err, size_t errlen);
/** GET /v1/runs/{id}/events as SSE. Answers (an error, 204, or the stream). */
void rd_stream_run(rd_req *req, const char *id);
/** GET /v1/events as SSE, with the flow/run/types filters. */
void rd_stream_all(rd_req *req);
/** True when the request carries a valid stream token (?token=) for run id. */
bool rd_stream_token_ok(rd_req *req, const char *id);
/** Prometheus lines for the streams (malloc'd text, caller frees; may be NULL). */
char *rd_stream_metrics(rd_http *h);
/** Closes every stream (shutdown): the first call flushes what is queued, later calls
 * drop streams still flushing. New streams are refused from the first call on. */
void rd_stream_close_all(rd_http *h);
/** Closes what is left and frees the state (rd_http_free). */
void rd_stream_free_state(rd_http *h);

/* From http.c, for stream.c. */
void **rd_http_stream_state(rd_http *h);
rd_engine *rd_http_engine(rd_http *h);
const rd_config *rd_http_config(rd_http *h);

#endif
