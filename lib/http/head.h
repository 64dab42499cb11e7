/*
 * head.h: the check of one HTTP/1.x request head as pure code, before libevhtp sees it.
 * libevhtp 1.2.18 closes the connection without a word on much that RFC 9112 says to answer
 * (a bad Content-Length, a lower-case method, a chunk extension), answers HTTP/2.0 requests
 * as if they were HTTP/2.0, and lets a second Content-Length win. So the head guard of the
 * server (http_guard.c) hands evhtp only heads this module has passed, and answers the rest
 * itself with the status and error code found here. It knows nothing of sockets.
 */
#ifndef RUNSD_HEAD_H
#define RUNSD_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest single line (request line or header field) evhtp's parser can hold. */
#define RD_HEAD_LINE_MAX 8000

/** What a head says about its message, or why it is refused. */
typedef struct rd_head {
    int status;             /* 0 when the head is acceptable, else the status to answer */
    const char *code;       /* error code when refused (static) */
    const char *message;    /* error message when refused (static) */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    size_t te_off, te_len;  /* the Transfer-Encoding line (with its CRLF), to drop it */
} rd_head;

/** Checks head, the len bytes of a request head up to and including its blank line
 * ("...\r\n\r\n"). The request line may be at most max_line bytes (else 414), each header
 * line at most RD_HEAD_LINE_MAX and all header lines together at most max_headers (else 431).
 * Fills out; returns out->status (0 when acceptable). */
int rd_head_parse(const char *head, size_t len, size_t max_line, size_t max_headers, rd_head *out);

/** Parses a chunk-size line (without its CRLF): hex digits, then optional whitespace and
 * chunk extensions (";name[=value]", ignored per RFC 9112 7.1.1). 0 with *size, or -1. */
int rd_head_chunk_size(const char *line, size_t len, uint64_t *size);

/** The RFC 9110 reason phrase of status ("Bad Request"), "Error" when unknown. Every reply
 * of the daemon carries it (libevhtp's own table lacks 422 and 429, and misnames some). */
const char *rd_head_reason(int status);

#endif
