/*
 * http.h: the HTTP front of the daemon on libevhtp: listeners, exact routing, access control,
 * request limits, CORS, JSON replies and errors. Handlers live in api.c; this file's job is
 * that every request gets a well-formed answer and nothing a client sends can hurt the loop.
 */
#ifndef RUNSD_HTTP_H
#define RUNSD_HTTP_H

#include <evhtp/evhtp.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "engine/engine.h"

typedef struct rd_http rd_http;

/** One request being handled. Borrowed by handlers for the duration of the call. */
typedef struct rd_req {
    evhtp_request_t *r;
    rd_http *h;
    rd_engine *eng;
    const rd_config *cfg;
    htp_method method;
    char *path;    /* decoded path, owned */
    char *pcopy;   /* storage of segs, owned */
    char *segs[9]; /* path segments (pointers into pcopy), NULL-terminated */
    int nseg;
    char *qbuf; /* decoded query storage, owned */
    const char *qk[32], *qv[32];
    int nq;
    int scope; /* granted scope (RD_SCOPE_*), or RD_SCOPE_ADMIN when no keys exist */
    bool body_too_big;
    char request_id[24];
} rd_req;

rd_http *rd_http_new(struct event_base *base, rd_engine *eng, const rd_config *cfg, char *err,
                     size_t errlen);
/** Binds the configured listeners (or takes systemd's sockets). 0 or RD_ERR with err. */
int rd_http_listen(rd_http *h, char *err, size_t errlen);
/** Stops accepting and closes every open stream. */
void rd_http_close(rd_http *h);
void rd_http_free(rd_http *h);
int rd_http_port(const rd_http *h);
void rd_http_set_config(rd_http *h, const rd_config *cfg);
struct rd_outbox;
/** The webhook outbox the deliveries endpoints use (borrowed; NULL until set). */
void rd_http_set_outbox(rd_http *h, struct rd_outbox *ob);
struct rd_outbox *rd_http_outbox(rd_http *h);

/* For handlers. */
/** Decoded query value or NULL. Borrowed from req. */
const char *rd_req_query(const rd_req *req, const char *key);
/** Parses an application/x-www-form-urlencoded body in place. Returns the number of pairs or
 * -1 (malformed, %00, more than max). */
int rd_form_parse(char *body, const char **keys, const char **vals, int max);
/** A request header or NULL. */
const char *rd_req_header(const rd_req *req, const char *key);
/** Parses the body as one JSON object. 0, or -1 after replying 400/413/415. *out owned. */
int rd_req_json_body(rd_req *req, json_t **out);
/** The raw body (NUL-terminated copy, caller frees) or NULL after replying 413. */
char *rd_req_body(rd_req *req, size_t *len);
/** Replies with a JSON body (steals the reference). */
void rd_reply_json(rd_req *req, int status, json_t *body);
/** Replies {"error":{code,message,request_id}}. Returns -1. */
int rd_reply_error(rd_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rd_reply_apierr(rd_req *req, const rd_apierr *e);
/** Replies with a raw body and content type. */
void rd_reply_raw(rd_req *req, int status, const char *ctype, const char *body, size_t len);
/** Adds CORS headers for an allowed Origin to a response. */
void rd_req_cors(rd_req *req, evhtp_headers_t *out);

#endif
