/*
 * apierr.h: the error every operation of the daemon can answer with: an HTTP status, a
 * stable machine-readable code and a message. Lower layers fill it (the engine, the
 * enrichment starter); the HTTP layer turns it into {"error":{code,message,request_id}}.
 */
#ifndef RUNSD_APIERR_H
#define RUNSD_APIERR_H

typedef struct rd_apierr {
    int http;          /* HTTP status to answer with */
    const char *code;  /* stable machine-readable code, static storage */
    char message[256]; /* human-readable */
    int retry_after;   /* seconds, for 429/503; 0 = none */
} rd_apierr;

/** Fills e (retry_after 0) and returns -1, so handlers can
 * `return rd_fail(e, 404, "run_not_found", ...)`. */
int rd_fail(rd_apierr *e, int http, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/** rd_fail for 503 store_unavailable with Retry-After: 1. Returns -1. */
int rd_fail_store(rd_apierr *e);

#endif
