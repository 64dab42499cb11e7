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
#define RD_EAGAIN -7    /* not now: try again later (the store is busy with a commit) */

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

/*
 * Logging: one line per call on stderr, logfmt (default) or JSON, written with a single
 * write(2). Each line has a level, a fixed message and typed fields whose keys are fixed
 * by the caller (lowercase, digits, '_'); values are escaped so every line parses. When
 * stderr is the journal (JOURNAL_STREAM names it), a line starts with the systemd priority
 * ("<6>") and has no timestamp, since journald keeps both; elsewhere it starts with
 * ts=<RFC 3339, ms>. Nothing secret may be passed as a value: the log is not a secret.
 * Implemented in util_log.c.
 */
enum { RD_LOG_ERR = 3, RD_LOG_WARN = 4, RD_LOG_NOTICE = 5, RD_LOG_INFO = 6, RD_LOG_DEBUG = 7 };
enum { RD_LOG_LOGFMT = 0, RD_LOG_JSON = 1 };

/** One field of a structured line: a string (NULL: the field is left out) or an integer. */
typedef struct rd_log_field {
    const char *key;
    const char *str;
    int64_t num;
    bool is_num;
} rd_log_field;
#define RD_LS(k, v) ((rd_log_field){.key = (k), .str = (v)})
#define RD_LI(k, v) ((rd_log_field){.key = (k), .num = (int64_t)(v), .is_num = true})
/* No field: for a field present only sometimes (cond ? RD_LI(...) : RD_LNONE). */
#define RD_LNONE ((rd_log_field){.key = NULL})

void rd_log_set_level(int level);
/** RD_LOG_LOGFMT or RD_LOG_JSON. */
void rd_log_set_format(int format);
/** True when a line of this level would be written. */
bool rd_log_enabled(int level);
/** A free-text line: msg="<formatted>" and no other field. */
void rd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** A structured line: msg, then the n fields in order. */
void rd_log_fields(int level, const char *msg, const rd_log_field *fields, size_t n);
/** rd_logk(level, "msg", RD_LS("key", str), RD_LI("key", n), ...): at least one field. */
#define rd_logk(level, msg, ...)                                                                   \
    do {                                                                                           \
        const rd_log_field rd_lf_[] = {__VA_ARGS__};                                               \
        rd_log_fields((level), (msg), rd_lf_, sizeof rd_lf_ / sizeof rd_lf_[0]);                   \
    } while (0)
/** Formats one line (with its newline) into buf as rd_log_fields would write it, for the
 * given format, journal mode and time. Returns its length (always < cap; a line too long
 * is cut between fields or inside a value, and stays well-formed). cap >= 256. */
size_t rd_log_format_line(char *buf, size_t cap, int format, bool journal, int64_t ts_ms, int level,
                          const char *msg, const rd_log_field *fields, size_t n);
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
