/*
 * api.h: the HTTP API of SPEC sections 3 and 4 on top of the HTTP layer. rd_api_register
 * puts every endpoint into a server's route table; the handlers get their context (engine,
 * outbox, event streams) from the state registered with them, never from the server.
 */
#ifndef RUNSD_API_H
#define RUNSD_API_H

#include <stddef.h>

#include "engine/engine.h"
#include "http/http.h"

struct rd_outbox;
typedef struct rd_api rd_api;

/** What the handlers work with, all borrowed: they must outlive the server. */
typedef struct rd_api_opts {
    struct event_base *base;
    rd_engine *eng;
    struct rd_outbox *outbox;   /* the webhook deliveries endpoints answer 503 without it */
    const rd_config *cfg;       /* the startup config: the event hub's initial bounds */
    struct rd_metrics *metrics; /* what /metrics exposes (borrowed); NULL: an empty page */
} rd_api_opts;

/** Creates the API's state (with the fan-out hub of the event streams, registered with the
 * engine), routes every endpoint into h, and hooks its shutdown and free into h's: the
 * state is owned by h from here on and freed by rd_http_free, also when this fails
 * half-way. Call once, before rd_http_listen. 0 or RD_ERR with err. */
int rd_api_register(rd_http *h, const rd_api_opts *o, rd_api **out, char *err, size_t errlen);
/** Event-stream subscribers connected now (the daemon's status line). */
size_t rd_api_subscribers(const rd_api *a);

#endif
