/*
 * deliveries.c: the webhook deliveries endpoints of SPEC section 3:
 *   GET  /v1/runs/{id}/deliveries                    (read scope)
 *   POST /v1/runs/{id}/deliveries/{did}/redeliver    (write scope)
 * They read the outbox's tables directly; only a redeliver goes through the outbox, which
 * owns attempts.
 *
 * A delivery on the wire:
 *   {"id": webhook-id, "object": "delivery", "run_id", "type", "url", "endpoint": "run" |
 *    "config", "status": "pending" | "sending" | "delivered" | "failed" | "stopped",
 *    "attempt_count", "created_at", "updated_at", "next_attempt_at" (null when none),
 *    "last_status_code" (null when none), "last_error" (null when none),
 *    "attempts": [{"attempt", "at", "trigger": "schedule" | "redeliver", "status_code"
 *                  (null: no HTTP answer), "error" (null when delivered), "duration_ms",
 *                  "next_attempt_at"}]}
 * The signing secret and the body are never shown; user:password in a URL is masked.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "base/util.h"
#include "webhook/outbox.h"

static const char *const state_names[] = {
    [RD_DLV_PENDING] = "pending", [RD_DLV_SENDING] = "sending", [RD_DLV_DELIVERED] = "delivered",
    [RD_DLV_FAILED] = "failed",   [RD_DLV_STOPPED] = "stopped",
};

static json_t *time_json(int64_t ms)
{
    char buf[40];

    if (ms <= 0)
        return json_null();
    rd_rfc3339(ms, buf, sizeof buf);
    return json_string(buf);
}

/* Receivers sometimes take credentials in the URL; the API shows where, never those. */
static json_t *url_json(const char *url)
{
    CURLU *u = curl_url();
    char *pw = NULL, *out = NULL;
    json_t *j;

    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_PASSWORD, "***", 0) == CURLUE_OK)
        curl_url_get(u, CURLUPART_URL, &out, 0);
    j = json_string(out ? out : url);
    curl_free(pw);
    curl_free(out);
    curl_url_cleanup(u);
    return j;
}

static json_t *delivery_json(const rd_delivery *d)
{
    int st = d->state >= 0 && d->state <= RD_DLV_STOPPED ? d->state : RD_DLV_PENDING;

    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:o, s:[]}",
                     "id", d->id, "object", "delivery", "run_id", d->run_id, "type", d->type, "url",
                     url_json(d->url), "endpoint", d->source == RD_DLV_SRC_RUN ? "run" : "config",
                     "status", state_names[st], "attempt_count", d->attempts, "created_at",
                     time_json(d->created_at), "updated_at", time_json(d->updated_at),
                     "next_attempt_at", time_json(st == RD_DLV_PENDING ? d->next_at : 0),
                     "last_status_code", d->last_code ? json_integer(d->last_code) : json_null(),
                     "last_error", d->last_error ? json_string(d->last_error) : json_null(),
                     "attempts");
}

static int attempt_on_row(const rd_delivery_attempt *a, void *arg)
{
    json_t *o =
        json_pack("{s:i, s:o, s:s, s:o, s:o, s:I, s:o}", "attempt", a->n, "at", time_json(a->at),
                  "trigger", a->manual ? "redeliver" : "schedule", "status_code",
                  a->status_code ? json_integer(a->status_code) : json_null(), "error",
                  a->error ? json_string(a->error) : json_null(), "duration_ms",
                  (json_int_t)a->duration_ms, "next_attempt_at", time_json(a->next_at));

    return o ? json_array_append_new(arg, o) : -1;
}

/* Fills each delivery's "attempts"; done after the deliveries scan has finished. */
static int add_attempts(rd_store *s, json_t *items)
{
    size_t i;
    json_t *d;

    json_array_foreach(items, i, d)
    {
        const char *id = json_string_value(json_object_get(d, "id"));
        if (rd_store_dlv_attempts_scan(s, id, attempt_on_row, json_object_get(d, "attempts")) != 0)
            return RD_EIO;
    }
    return 0;
}

static int collect_on_row(const rd_delivery *d, void *arg)
{
    json_t *o = delivery_json(d);

    return o ? json_array_append_new(arg, o) : -1;
}

/* The outbox's store, once the run is known to exist; NULL after replying. */
static rd_store *store_for_run(rd_req *req, rd_outbox *ob, const char *run_id)
{
    rd_run *r = NULL;
    int rc;

    if (!ob) {
        rd_reply_error(req, 503, "webhooks_unavailable", "webhooks are not running");
        return NULL;
    }
    rc = strncmp(run_id, "run_", 4) == 0 ? rd_store_run_get(rd_outbox_store(ob), run_id, &r)
                                         : RD_ENOTFOUND;
    rd_run_free(r);
    if (rc == RD_ENOTFOUND)
        rd_reply_error(req, 404, "run_not_found", "no run with that id");
    else if (rc != 0)
        rd_reply_error(req, 503, "store_unavailable", "the store could not be read");
    return rc == 0 ? rd_outbox_store(ob) : NULL;
}

/* GET /v1/runs/{id}/deliveries: the run's deliveries, each with its attempts; `page` (from
 * 1) and `page_size` (1..100, default 50). */
static void deliveries_now(rd_req *req, void *arg)
{
    rd_outbox *ob = ((rd_api *)arg)->outbox;
    const char *run_id = rd_req_param(req, "id");
    int64_t page, size, total = 0;
    json_t *items;
    rd_store *s;

    if (rd_req_query_int(req, "page", 1, 1, 100000000, &page) != 0 ||
        rd_req_query_int(req, "page_size", 50, 1, 100, &size) != 0 ||
        !(s = store_for_run(req, ob, run_id)))
        return;
    items = json_array();
    if (!items ||
        rd_store_dlv_run_scan(s, run_id, (page - 1) * size, (int)size, collect_on_row, items,
                              &total) != 0 ||
        add_attempts(s, items) != 0) {
        json_decref(items);
        rd_reply_error(req, 503, "store_unavailable", "the store could not be read");
        return;
    }
    rd_reply_json(req, 200,
                  json_pack("{s:o, s:I, s:I, s:I, s:b}", "items", items, "page", (json_int_t)page,
                            "page_size", (json_int_t)size, "total", (json_int_t)total, "has_more",
                            page * size < total));
}

typedef struct one_ctx {
    const char *run_id;
    json_t *out; /* the delivery, when it belongs to run_id */
} one_ctx;

static int one_on_row(const rd_delivery *d, void *arg)
{
    one_ctx *c = arg;

    if (strcmp(d->run_id, c->run_id) == 0)
        c->out = delivery_json(d);
    return 0;
}

/* The delivery did of run_id as JSON with its attempts; NULL after replying 404/503. */
static json_t *load_delivery(rd_req *req, rd_store *s, const char *run_id, const char *did)
{
    one_ctx c = {run_id, NULL};
    json_t *arr;
    int rc = rd_store_dlv_get(s, did, one_on_row, &c);

    if (rc == 0 && !c.out)
        rc = RD_ENOTFOUND;
    if (rc == RD_ENOTFOUND) {
        rd_reply_error(req, 404, "delivery_not_found", "this run has no delivery with that id");
        return NULL;
    }
    arr = json_array();
    if (rc != 0 || !arr || json_array_append(arr, c.out) != 0 || add_attempts(s, arr) != 0) {
        json_decref(arr);
        json_decref(c.out);
        rd_reply_error(req, 503, "store_unavailable", "the store could not be read");
        return NULL;
    }
    json_decref(arr); /* c.out keeps its attempts */
    return c.out;
}

/* The redelivery is committed: the delivery as it is now, 202. */
static void redelivered(rd_req *req, void *arg, int rc)
{
    rd_outbox *ob = ((rd_api *)arg)->outbox;
    const char *run_id = rd_req_param(req, "id"), *did = rd_req_param(req, "did");
    json_t *d;

    if (rc != 0) {
        rd_reply_error(req, 503, "store_unavailable", "the redelivery could not be recorded");
        return;
    }
    if ((d = load_delivery(req, rd_outbox_store(ob), run_id, did)))
        rd_reply_json(req, 202, d);
}

/* POST /v1/runs/{id}/deliveries/{did}/redeliver: a new attempt now with the same
 * webhook-id; 202 with the delivery once that is committed. */
static void redeliver_now(rd_req *req, void *arg)
{
    rd_outbox *ob = ((rd_api *)arg)->outbox;
    const char *run_id = rd_req_param(req, "id"), *did = rd_req_param(req, "did");
    rd_store *s = store_for_run(req, ob, run_id);
    json_t *d;
    int rc;

    if (!s || !(d = load_delivery(req, s, run_id, did)))
        return;
    json_decref(d);
    rc = rd_outbox_redeliver(ob, did);
    if (rc == RD_ECONFLICT) {
        rd_reply_error(req, 409, "delivery_in_flight",
                       "an attempt of this delivery is in flight; ask again when it has ended");
        return;
    }
    if (rc != 0) {
        rd_reply_error(req, 503, "store_unavailable", "the redelivery could not be recorded");
        return;
    }
    rd_api_after_commit(arg, req, redelivered, NULL, arg);
}

/* Both read the store: they run once no commit is in flight (commit.c). */
static void h_deliveries(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, deliveries_now);
}

static void h_redeliver(rd_req *req, void *arg)
{
    rd_api_run_idle(arg, req, redeliver_now);
}

static const rd_http_route_def deliveries_routes[] = {
    {RD_METHOD_GET | RD_METHOD_HEAD, "/v1/runs/{id}/deliveries", RD_SCOPE_READ, h_deliveries},
    {RD_METHOD_POST, "/v1/runs/{id}/deliveries/{did}/redeliver", RD_SCOPE_WRITE, h_redeliver},
};

int rd_deliveries_register(rd_http *h, rd_api *a)
{
    return rd_http_route_all(h, deliveries_routes,
                             sizeof deliveries_routes / sizeof deliveries_routes[0], a);
}
