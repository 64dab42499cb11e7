/*
 * api_hooks.h: the webhook deliveries endpoints of SPEC section 3, routed by api.c:
 *   GET  /v1/runs/{id}/deliveries                    (read scope)
 *   POST /v1/runs/{id}/deliveries/{did}/redeliver    (write scope)
 */
#ifndef RUNSD_API_HOOKS_H
#define RUNSD_API_HOOKS_H

#include "http/http.h"

/** GET /v1/runs/{id}/deliveries: the run's deliveries, each with its attempts; `page`
 * (from 1) and `page_size` (1..100, default 50). Answers exactly once. */
void rd_api_deliveries(rd_req *req, const char *run_id);
/** POST /v1/runs/{id}/deliveries/{did}/redeliver: a new attempt now with the same
 * webhook-id; 202 with the delivery. Answers exactly once. */
void rd_api_redeliver(rd_req *req, const char *run_id, const char *did);

#endif
