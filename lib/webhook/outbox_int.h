/*
 * outbox_int.h: private to the outbox's two files. outbox.c decides (what to send, when, and
 * what an answer means) and keeps the store up to date; outbox_http.c moves bytes: libcurl's
 * multi-socket API driven by libevent on the daemon's loop, and the SSRF guard on the socket
 * curl is about to connect.
 */
#ifndef RUNSD_OUTBOX_INT_H
#define RUNSD_OUTBOX_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "webhook/outbox.h"

typedef struct rd_outbox_http rd_outbox_http;

/* One attempt in flight. It holds copies of what the transfer needs, so the store row may
 * change and the config may be reloaded while it runs. Closed only by rd_outbox_delivery_close. */
typedef struct rd_outbox_delivery {
    rd_outbox_http *http; /* set once the transfer is added to the multi handle */
    CURL *easy;
    struct curl_slist *hdrs;
    char id[RD_DLV_ID_MAX];
    char run_id[RD_RUN_ID_MAX];
    char *url;
    char *body;
    size_t body_len;
    int source;         /* RD_DLV_SRC_* */
    int attempts;       /* made before this one */
    bool manual;        /* asked for by a redeliver */
    bool guard;         /* the SSRF guard applies (client URL, allow_private = no) */
    char refused[160];  /* the first address the guard refused, with its class */
    int64_t started_at; /* wall clock, ms */
    int64_t started_mono;
    char errbuf[CURL_ERROR_SIZE];
} rd_outbox_delivery;

/* How an attempt ended. */
typedef struct rd_outbox_result {
    CURLcode code;
    long http_status;       /* 0: no HTTP answer */
    int64_t retry_after_ms; /* from Retry-After, 0 = none */
    int64_t duration_ms;
    const char *error; /* transport error text (borrowed) when code != CURLE_OK */
    bool fatal;        /* retrying cannot help (the attempt could not even be built) */
} rd_outbox_result;

/** Called from the loop (never inside curl) when an attempt ended. The callee owns d and
 * must close it. */
typedef void (*rd_outbox_done_fn)(rd_outbox_delivery *d, const rd_outbox_result *res, void *arg);

/** A curl multi handle driven by base. NULL on failure. */
rd_outbox_http *rd_outbox_http_new(struct event_base *base, int max_conns, rd_outbox_done_fn done,
                                   void *arg);
/** Frees the multi handle; every delivery must have been closed first. */
void rd_outbox_http_free(rd_outbox_http *h);
void rd_outbox_http_set_max_conns(rd_outbox_http *h, int max_conns);
/** Starts d's transfer: a POST of d->body with the n header lines (copied). 0, or -1 when
 * curl refused (d is left for the caller to close). */
int rd_outbox_http_start(rd_outbox_http *h, rd_outbox_delivery *d, const char *const *headers,
                         int n, int64_t timeout_ms);
/** The one teardown of a delivery: removes its transfer (if any) and frees it. Safe on a
 * half-built delivery; never called from inside a curl callback. */
void rd_outbox_delivery_close(rd_outbox_delivery *d);

#endif
