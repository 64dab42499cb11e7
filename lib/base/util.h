/*
 * util.h: small helpers every module of runsd may use: clocks and RFC 3339 times,
 * random tokens, base64, hashing, constant-time comparison, durations, logging, and a
 * string-keyed hash map. Nothing here knows about runs or HTTP.
 */
#ifndef RUNSD_UTIL_H
#define RUNSD_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Error codes shared by lib/ modules: 0 is success, these are negative. */
#define RD_OK 0
#define RD_ERR -1       /* generic failure; details in an err buffer */
#define RD_ENOTFOUND -2 /* no such row / object */
#define RD_EINVAL -3    /* bad argument or bad input */
#define RD_ECONFLICT -4 /* illegal transition, duplicate key */
#define RD_EIO -5       /* storage or system I/O error */
#define RD_EFULL -6     /* a bound was reached (queue full...) */

/** Wall-clock time in milliseconds since the epoch. */
int64_t rd_now_ms(void);
/** Monotonic time in milliseconds (for durations and timers). */
int64_t rd_mono_ms(void);
/** Formats ms-since-epoch as RFC 3339 UTC with milliseconds ("2026-11-22T10:00:00.123Z")
 * into buf (at least 32 bytes). A value <= 0 writes an empty string. */
void rd_rfc3339(int64_t ms, char *buf, size_t buflen);

/** Fills buf with n cryptographically random bytes (OpenSSL). 0 or RD_ERR. */
int rd_random_bytes(void *buf, size_t n);
/** Writes a new random id "<prefix><22 URL-safe chars>" (128 bits) into out (>= strlen(prefix)+23).
 */
int rd_random_id(const char *prefix, char *out, size_t outlen);

/** Base64url without padding; out must hold 4*ceil(n/3)+1 bytes. Returns length written. */
size_t rd_b64url_encode(const void *in, size_t n, char *out);
/** Standard base64 with padding; out must hold 4*ceil(n/3)+1 bytes. Returns length. */
size_t rd_b64_encode(const void *in, size_t n, char *out);
/** Decodes standard base64 (padding optional). Returns decoded length or -1. */
int rd_b64_decode(const char *in, size_t n, unsigned char *out, size_t outcap);

/** Lowercase hex SHA-256 of (in, n) into out[65]. */
void rd_sha256_hex(const void *in, size_t n, char out[65]);
/** Constant-time comparison of two strings; false when lengths differ (length leaks only). */
bool rd_ct_streq(const char *a, const char *b);

/** Parses "250ms", "5s", "10m", "2h", "1d" or a bare number of seconds into milliseconds.
 * Returns 0, or RD_EINVAL for anything else (negative, overflow, junk). */
int rd_parse_duration_ms(const char *s, int64_t *out_ms);
/** Parses a decimal integer that must fill the whole string. 0 or RD_EINVAL. */
int rd_parse_i64(const char *s, int64_t *out);

/* Logging to stderr with systemd priority prefixes ("<3>"...), so journald keeps levels. */
enum { RD_LOG_ERR = 3, RD_LOG_WARN = 4, RD_LOG_INFO = 6, RD_LOG_DEBUG = 7 };
void rd_log_set_level(int level);
void rd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define rd_log_err(...) rd_log(RD_LOG_ERR, __VA_ARGS__)
#define rd_log_warn(...) rd_log(RD_LOG_WARN, __VA_ARGS__)
#define rd_log_info(...) rd_log(RD_LOG_INFO, __VA_ARGS__)
#define rd_log_debug(...) rd_log(RD_LOG_DEBUG, __VA_ARGS__)

/* A string-keyed hash map of borrowed values. Keys are copied. Not thread-safe. */
typedef struct rd_map rd_map;
rd_map *rd_map_new(void);
/** Frees the map and its key copies; values are the caller's. */
void rd_map_free(rd_map *m);
/** Inserts or replaces. 0 or RD_ERR (out of memory). */
int rd_map_set(rd_map *m, const char *key, void *value);
void *rd_map_get(const rd_map *m, const char *key);
/** Removes key; returns its value or NULL. */
void *rd_map_del(rd_map *m, const char *key);
size_t rd_map_count(const rd_map *m);
/** Calls fn for each entry; fn must not modify the map. */
void rd_map_each(const rd_map *m, void (*fn)(const char *key, void *value, void *arg), void *arg);

#endif
