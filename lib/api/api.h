/*
 * api.h: the handlers of the HTTP API (SPEC section 3), called by http.c with a parsed,
 * size-checked request. Each handler answers exactly once (now or, for ?wait=, later).
 */
#ifndef RUNSD_API_H
#define RUNSD_API_H

#include "http/http.h"

/** Routes req to its handler by method and exact path. */
void rd_api_dispatch(rd_req *req);
/** Approval links, OAuth callback, approve/deny/auth by id, the demo provider page
 * (api_human.c). True when it handled the request. */
bool rd_api_human_route(rd_req *req);
/** Closes every stream and pending long-poll owned by h (shutdown). */
void rd_api_close_streams(rd_http *h);
/** True when req's scope is at least need; otherwise replies 401/403 and returns false. */
bool rd_req_allowed(rd_req *req, int need);
struct event_base *rd_http_base(rd_http *h);
/** A slot for api.c's per-server state (control streams). */
typedef struct rd_api_state rd_api_state;
rd_api_state **rd_http_api_state(rd_http *h);
void rd_api_free_state(rd_http *h);

#endif
