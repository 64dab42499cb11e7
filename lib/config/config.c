/*
 * config.c: loads the INI configuration (SPEC section 7) into an immutable rd_config.
 *
 * libinih does the tokenising, but the Debian build hands its callback no line number and no
 * notice of section headers. We therefore feed inih through our own line reader: it counts
 * lines, sees every section header before inih does (so empty and duplicate sections are
 * caught), strips leading blanks (so indented keys are plain keys, never inih's multi-line
 * continuations) and refuses lines too long for inih's fixed buffer instead of letting inih
 * split them silently. Keys are described by tables; one generic routine parses and
 * range-checks typed values, and small functions handle the structured ones. The first error
 * wins and is reported as "FILE:LINE: key 'K': reason".
 */
#include "config/config.h"
#include "base/util.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define MAX_SECTION_KEYS 16
#define MAX_FILE_BYTES (1 << 20) /* a config is a few KiB; anything bigger is a mistake */
#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define SEC ((int64_t)1000)
#define MINUTE (SEC * 60)
#define HOUR (MINUTE * 60)
#define DAY (HOUR * 24)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum section { SEC_SERVER, SEC_STORE, SEC_LIMITS, SEC_AUTH, SEC_WEBHOOKS, SEC_FLOW, SEC_COUNT };
enum kind { K_STR, K_BOOL, K_INT, K_I64, K_SIZE, K_DUR, K_FN };

typedef struct parse_ctx parse_ctx;
/* Applies value to base (the rd_config, or the rd_flow_config for flow keys). On failure it
 * returns false with the reason in ctx->reason. */
typedef bool (*apply_fn)(parse_ctx *ctx, void *base, const char *value);

typedef struct key_spec {
    const char *name;
    const char *def; /* the default, as it would be written in the file; NULL = none */
    enum kind kind;
    size_t off;       /* field offset for typed kinds */
    int64_t min, max; /* inclusive range for numeric kinds */
    apply_fn fn;      /* K_FN only */
    bool repeatable;
} key_spec;

typedef struct section_spec {
    const char *name;
    const key_spec *keys;
    size_t n_keys;
} section_spec;

struct parse_ctx {
    rd_config *cfg;
    const char *name; /* file name for messages */
    const char *text;
    size_t len, pos;
    int line;                                          /* line last handed to inih */
    int sec_line[SEC_COUNT];                           /* header line, 0 = not seen */
    int flow_line[RD_MAX_FLOWS];                       /* header line of each flow */
    int key_line[SEC_COUNT][MAX_SECTION_KEYS];         /* first line of each key */
    int flow_key_line[RD_MAX_FLOWS][MAX_SECTION_KEYS]; /* the same, per flow */
    int err_line;                                      /* line of the first error; 0 = none */
    char err[512];                                     /* the first error, minus "FILE:LINE: " */
    char reason[256];                                  /* scratch for apply functions */
};

/* ---- errors ---- */

static bool fail(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parse_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ctx->reason, sizeof ctx->reason, fmt, ap);
    va_end(ap);
    return false;
}

/* Records the first error only: later ones are usually consequences of it. */
static void ctx_error(parse_ctx *ctx, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ctx_error(parse_ctx *ctx, int line, const char *fmt, ...)
{
    va_list ap;

    if (ctx->err_line != 0)
        return;
    ctx->err_line = line > 0 ? line : 1;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
}

static void write_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void write_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- value parsers ---- */

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0 || strcasecmp(s, no[i]) == 0) {
            *out = strcasecmp(s, yes[i]) == 0;
            return true;
        }
    }
    return false;
}

/* Bytes, or a number with a K, M or G suffix (binary multiples). */
static int parse_size(const char *s, int64_t *out)
{
    size_t n = strspn(s, "0123456789");
    int64_t v, mult = 1;
    char digits[24];

    if (n == 0 || n >= sizeof digits)
        return RD_EINVAL;
    if (s[n] != '\0') {
        const char *p = strchr("KMG", s[n]);

        if (p == NULL || s[n + 1] != '\0')
            return RD_EINVAL;
        mult = KIB << (10 * (p - "KMG"));
    }
    memcpy(digits, s, n);
    digits[n] = '\0';
    if (rd_parse_i64(digits, &v) != RD_OK || v > INT64_MAX / mult)
        return RD_EINVAL;
    *out = v * mult;
    return RD_OK;
}

static void fmt_value(enum kind kind, int64_t v, char *buf, size_t n)
{
    static const struct {
        int64_t unit;
        const char *name;
    } durs[] = {{DAY, "d"}, {HOUR, "h"}, {MINUTE, "m"}, {SEC, "s"}},
      sizes[] = {{GIB, "G"}, {MIB, "M"}, {KIB, "K"}};

    for (size_t i = 0; kind == K_DUR && v != 0 && i < ARRAY_LEN(durs); i++) {
        if (v % durs[i].unit == 0) {
            snprintf(buf, n, "%lld%s", (long long)(v / durs[i].unit), durs[i].name);
            return;
        }
    }
    for (size_t i = 0; kind == K_SIZE && v != 0 && i < ARRAY_LEN(sizes); i++) {
        if (v % sizes[i].unit == 0) {
            snprintf(buf, n, "%lld%s", (long long)(v / sizes[i].unit), sizes[i].name);
            return;
        }
    }
    snprintf(buf, n, "%lld%s", (long long)v, kind == K_DUR ? "ms" : "");
}

static bool fail_range(parse_ctx *ctx, const key_spec *k)
{
    char lo[32], hi[32];

    fmt_value(k->kind, k->min, lo, sizeof lo);
    fmt_value(k->kind, k->max, hi, sizeof hi);
    if (k->max == INT64_MAX)
        return fail(ctx, "must be at least %s", lo);
    return fail(ctx, "must be between %s and %s", lo, hi);
}

static bool set_str(parse_ctx *ctx, char **dst, const char *value)
{
    char *copy;

    if (value[0] == '\0')
        return fail(ctx, "must not be empty");
    copy = strdup(value);
    if (copy == NULL)
        return fail(ctx, "out of memory");
    free(*dst);
    *dst = copy;
    return true;
}

/* Appends a copy of value to a bounded list, refusing duplicates. */
static bool list_add(parse_ctx *ctx, char **list, int *n, int max, const char *value)
{
    if (*n >= max)
        return fail(ctx, "at most %d entries are allowed", max);
    for (int i = 0; i < *n; i++)
        if (strcmp(list[i], value) == 0)
            return fail(ctx, "'%s' is given twice", value);
    list[*n] = strdup(value);
    if (list[*n] == NULL)
        return fail(ctx, "out of memory");
    (*n)++;
    return true;
}

/* The generic path: parse by kind, range-check, store at the key's offset. */
static bool apply_typed(parse_ctx *ctx, const key_spec *k, void *base, const char *value)
{
    char *field = (char *)base + k->off;
    int64_t v = 0;
    bool b;

    switch (k->kind) {
    case K_STR:
        return set_str(ctx, (char **)(void *)field, value);
    case K_BOOL:
        if (!parse_bool(value, &b))
            return fail(ctx, "expected yes or no (or true/false, on/off, 1/0)");
        *(bool *)field = b;
        return true;
    case K_INT:
    case K_I64:
        if (rd_parse_i64(value, &v) != RD_OK)
            return fail(ctx, "expected an integer");
        break;
    case K_SIZE:
        if (parse_size(value, &v) != RD_OK)
            return fail(ctx, "expected a size in bytes, optionally with a K, M or G suffix");
        break;
    case K_DUR:
        if (rd_parse_duration_ms(value, &v) != RD_OK)
            return fail(ctx, "expected a duration such as 250ms, 5s, 10m, 2h or 1d");
        break;
    case K_FN:
        return k->fn(ctx, base, value);
    }
    if (v < k->min || v > k->max)
        return fail_range(ctx, k);
    if (k->kind == K_INT)
        *(int *)(void *)field = (int)v;
    else
        *(int64_t *)(void *)field = v;
    return true;
}

/* ---- [server] ---- */

static bool host_chars(const char *s, size_t n, const char *extra)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
            return false;
    return n > 0;
}

/* "host:port", "[v6]:port" or "unix:/path"; the listener module resolves and binds. */
static bool check_listen(parse_ctx *ctx, const char *v)
{
    const char *port;
    int64_t p;

    if (strncmp(v, "unix:", 5) == 0) {
        if (v[5] != '/')
            return fail(ctx, "a unix socket needs an absolute path (unix:/path)");
        if (strlen(v + 5) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return fail(ctx, "unix socket path is too long");
        return true;
    }
    if (v[0] == '[') {
        const char *close = strchr(v, ']');

        if (close == NULL || close[1] != ':' || !host_chars(v + 1, (size_t)(close - v - 1), ":.%"))
            return fail(ctx, "expected [IPv6]:port");
        port = close + 2;
    } else {
        const char *colon = strrchr(v, ':');

        if (colon == NULL || !host_chars(v, (size_t)(colon - v), ".-"))
            return fail(ctx, "expected host:port, [IPv6]:port or unix:/path");
        port = colon + 1;
    }
    if (port[0] < '0' || port[0] > '9' || strlen(port) > 5 || rd_parse_i64(port, &p) != RD_OK ||
        p > 65535)
        return fail(ctx, "port must be a number from 0 to 65535");
    return true;
}

static bool apply_listen(parse_ctx *ctx, void *base, const char *value)
{
    rd_config *cfg = base;

    return check_listen(ctx, value) &&
           list_add(ctx, cfg->listen, &cfg->n_listen, RD_MAX_LISTEN, value);
}

/* An http(s) URL with a host; rest says what may follow the host ("/" allows a path). */
static bool check_url(parse_ctx *ctx, const char *v, bool allow_path)
{
    size_t skip = strncmp(v, "http://", 7) == 0 ? 7 : strncmp(v, "https://", 8) == 0 ? 8 : 0;
    size_t host;

    if (skip == 0)
        return fail(ctx, "must start with http:// or https://");
    host = strcspn(v + skip, "/?#");
    if (host == 0)
        return fail(ctx, "has no host");
    for (const char *p = v; *p; p++)
        if (isspace((unsigned char)*p) || iscntrl((unsigned char)*p))
            return fail(ctx, "must not contain spaces");
    if (!allow_path && v[skip + host] != '\0')
        return fail(ctx, "must be scheme://host[:port] with no path");
    return true;
}

static bool apply_public_url(parse_ctx *ctx, void *base, const char *value)
{
    rd_config *cfg = base;
    size_t n;

    if (!check_url(ctx, value, true))
        return false;
    if (strpbrk(value, "?#") != NULL)
        return fail(ctx, "must not have a query or fragment");
    if (!set_str(ctx, &cfg->public_url, value))
        return false;
    /* Links are built as public_url + "/v1/...", so a trailing slash would double up. */
    n = strlen(cfg->public_url);
    while (n > 0 && cfg->public_url[n - 1] == '/')
        cfg->public_url[--n] = '\0';
    return true;
}

static bool apply_cors(parse_ctx *ctx, void *base, const char *value)
{
    rd_config *cfg = base;

    if (strcmp(value, "*") != 0 && !check_url(ctx, value, false))
        return false;
    return list_add(ctx, cfg->cors_origins, &cfg->n_cors, RD_MAX_CORS, value);
}

/* Sets *dst to value when it is one of the NULL-terminated choices. */
static bool set_choice(parse_ctx *ctx, char **dst, const char *value, const char *const *choices)
{
    char list[128] = "";

    for (size_t i = 0; choices[i] != NULL; i++) {
        if (strcmp(value, choices[i]) == 0)
            return set_str(ctx, dst, value);
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                 choices[i]);
    }
    return fail(ctx, "expected one of: %s", list);
}

static bool apply_log_level(parse_ctx *ctx, void *base, const char *value)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

    return set_choice(ctx, &((rd_config *)base)->log_level, value, levels);
}

static bool apply_synchronous(parse_ctx *ctx, void *base, const char *value)
{
    static const char *const modes[] = {"normal", "full", NULL};

    return set_choice(ctx, &((rd_config *)base)->store_synchronous, value, modes);
}

/* ---- [auth] and [webhooks] ---- */

static bool apply_auth_key(parse_ctx *ctx, void *base, const char *value)
{
    static const char *const scopes[] = {"read", "write", "admin"};
    rd_config *cfg = base;
    const char *colon = strchr(value, ':'), *secret;
    int scope = 0;

    for (size_t i = 0; colon != NULL && i < ARRAY_LEN(scopes); i++)
        if ((size_t)(colon - value) == strlen(scopes[i]) &&
            strncmp(value, scopes[i], strlen(scopes[i])) == 0)
            scope = (int)i + 1; /* the RD_SCOPE_* values follow this order */
    if (scope == 0)
        return fail(ctx, "expected scope:secret with scope read, write or admin");
    secret = colon + 1;
    if (strlen(secret) < 16 || strlen(secret) > 512)
        return fail(ctx, "the secret must be 16 to 512 characters");
    for (const char *p = secret; *p; p++)
        if (*p <= ' ' || *p > '~')
            return fail(ctx, "the secret must be printable ASCII without spaces");
    if (cfg->n_keys >= RD_MAX_KEYS)
        return fail(ctx, "at most %d keys are allowed", RD_MAX_KEYS);
    for (int i = 0; i < cfg->n_keys; i++)
        if (strcmp(cfg->keys[i].key, secret) == 0)
            return fail(ctx, "the same secret is given twice"); /* never echo a secret */
    cfg->keys[cfg->n_keys].key = strdup(secret);
    if (cfg->keys[cfg->n_keys].key == NULL)
        return fail(ctx, "out of memory");
    cfg->keys[cfg->n_keys++].scope = scope;
    return true;
}

static bool apply_hook_url(parse_ctx *ctx, void *base, const char *value)
{
    rd_config *cfg = base;

    return check_url(ctx, value, true) &&
           list_add(ctx, cfg->hook_urls, &cfg->n_hook_urls, RD_MAX_HOOKS, value);
}

/* Standard Webhooks secrets: "whsec_" + base64 of 24 to 64 random bytes. */
static bool apply_hook_secret(parse_ctx *ctx, void *base, const char *value)
{
    rd_config *cfg = base;
    unsigned char raw[128];
    const char *b64 = value + 6;
    int n;

    if (strncmp(value, "whsec_", 6) != 0)
        return fail(ctx, "expected whsec_ followed by base64");
    n = strlen(b64) > 200 ? -1 : rd_b64_decode(b64, strlen(b64), raw, sizeof raw);
    if (n < 0)
        return fail(ctx, "the part after whsec_ is not valid base64");
    if (n < 24 || n > 64)
        return fail(ctx, "must decode to 24 to 64 bytes (it decodes to %d)", n);
    return list_add(ctx, cfg->hook_secrets, &cfg->n_hook_secrets, RD_MAX_SECRETS, value);
}

static bool apply_retry(parse_ctx *ctx, void *base, const char *value)
{
    rd_config *cfg = base;
    int64_t sched[ARRAY_LEN(cfg->retry_schedule_ms)];
    char word[32];
    int n = 0;

    for (const char *p = value + strspn(value, " \t"); *p; p += strspn(p, " \t")) {
        size_t len = strcspn(p, " \t");

        if (n == (int)ARRAY_LEN(sched))
            return fail(ctx, "at most %d retries are allowed", n);
        if (len >= sizeof word)
            return fail(ctx, "'%.*s' is not a duration", (int)len, p);
        memcpy(word, p, len);
        word[len] = '\0';
        if (rd_parse_duration_ms(word, &sched[n]) != RD_OK || sched[n] <= 0)
            return fail(ctx, "'%s' is not a positive duration such as 5s or 2h", word);
        n++;
        p += len;
    }
    if (n == 0)
        return fail(ctx, "expected one or more durations separated by spaces");
    memcpy(cfg->retry_schedule_ms, sched, sizeof sched[0] * (size_t)n);
    cfg->n_retry = n;
    return true;
}

/* ---- [flow.NAME] ---- */

static bool apply_command(parse_ctx *ctx, void *base, const char *value)
{
    rd_flow_config *f = base;
    int argc;

    argc = rd_split_command(value, f->argv, RD_MAX_ARGV);
    if (argc < 0) {
        f->argc = 0;
        if (value[0] == '\0')
            return fail(ctx, "must not be empty");
        return fail(ctx,
                    "cannot be split into words (unbalanced quote, trailing backslash, "
                    "or more than %d words)",
                    RD_MAX_ARGV);
    }
    f->argc = argc;
    return set_str(ctx, &f->command, value);
}

static bool apply_executor(parse_ctx *ctx, void *base, const char *value)
{
    rd_flow_config *f = base;

    if (strcmp(value, "external") != 0 && strcmp(value, "process") != 0)
        return fail(ctx, "expected process or external");
    f->external = strcmp(value, "external") == 0;
    return true;
}

static bool apply_env(parse_ctx *ctx, void *base, const char *value)
{
    rd_flow_config *f = base;
    size_t n = strcspn(value, "=");

    if (value[n] != '=' || n == 0 || isdigit((unsigned char)value[0]) || !host_chars(value, n, "_"))
        return fail(ctx, "expected NAME=value with NAME made of letters, digits and _");
    for (int i = 0; i < f->n_env; i++)
        if (strncmp(f->env[i], value, n + 1) == 0)
            return fail(ctx, "%.*s is set twice", (int)n, value);
    return list_add(ctx, f->env, &f->n_env, RD_MAX_ENV, value);
}

static bool apply_match_rate(parse_ctx *ctx, void *base, const char *value)
{
    rd_flow_config *f = base;
    char *end;
    double v;

    /* strtod also takes "nan", "inf", hex and leading blanks; a rate is plain decimal. */
    if (value[0] == '\0' || strspn(value, "0123456789.eE-+") != strlen(value))
        return fail(ctx, "expected a number such as 0.05");
    errno = 0;
    v = strtod(value, &end);
    if (*end != '\0' || errno != 0 || !isfinite(v))
        return fail(ctx, "expected a number such as 0.05");
    if (!(v > 0 && v <= 1))
        return fail(ctx, "must be greater than 0 and at most 1");
    f->min_match_rate = v;
    return true;
}

/* ---- key tables ---- */

#define CFG(f) offsetof(rd_config, f)
#define FLW(f) offsetof(rd_flow_config, f)
// clang-format off
#define FN(name, def, fn, rep) {name, def, K_FN, 0, 0, 0, fn, rep}
#define KEY(name, def, kind, off, lo, hi) {name, def, kind, off, lo, hi, NULL, false}
// clang-format on

/* Defaults are written as they would be in the file and applied through the same parsers at
 * start, so a default can never be a value the file itself could not hold. */
static const key_spec server_keys[] = {
    FN("listen", NULL, apply_listen, true),          /* none: 127.0.0.1:8080, set after parsing */
    FN("public_url", NULL, apply_public_url, false), /* none: derived after parsing */
    KEY("max_body", "1M", K_SIZE, CFG(max_body_bytes), KIB, GIB),
    KEY("max_uri", "8K", K_SIZE, CFG(max_uri_bytes), 256, MIB),
    KEY("max_headers", "16K", K_SIZE, CFG(max_header_bytes), KIB, MIB),
    KEY("max_connections", "4096", K_INT, CFG(max_connections), 1, 1000000),
    FN("cors_origin", NULL, apply_cors, true),
    KEY("sse_heartbeat", "15s", K_DUR, CFG(heartbeat_ms), 100, HOUR),
    KEY("max_sse_clients", "10000", K_INT, CFG(max_sse_clients), 1, 1000000),
    KEY("sse_max_buffer", "256K", K_SIZE, CFG(sse_max_buffer), KIB, GIB),
    KEY("stream_token_ttl", "24h", K_DUR, CFG(stream_token_ttl_ms), SEC, 365 * DAY),
    FN("log_level", "info", apply_log_level, false),
};

static const key_spec store_keys[] = {
    KEY("path", "./runsd.db", K_STR, CFG(store_path), 0, 0),
    KEY("allow_memory", "no", K_BOOL, CFG(store_allow_memory), 0, 0),
    FN("synchronous", "normal", apply_synchronous, false),
    KEY("retention", "0", K_DUR, CFG(event_retention_ms), 0, 3650 * DAY),
};

static const key_spec limits_keys[] = {
    KEY("max_running", "8", K_INT, CFG(max_running), 1, 10000),
    KEY("max_queued", "10000", K_INT, CFG(max_queued), 0, 100000000),
    KEY("max_line", "1M", K_SIZE, CFG(max_line_bytes), 256, GIB),
    KEY("max_stderr_lines", "1000", K_I64, CFG(max_stderr_lines), 0, 100000000),
    KEY("kill_grace", "5s", K_DUR, CFG(kill_grace_ms), 0, HOUR),
    KEY("max_wait", "60s", K_DUR, CFG(max_wait_ms), 0, HOUR),
    KEY("max_items", "10000000", K_I64, CFG(max_items_per_run), 1, INT64_MAX),
    KEY("idempotency_ttl", "24h", K_DUR, CFG(idempotency_ttl_ms), MINUTE, 3650 * DAY),
};

static const key_spec auth_keys[] = {
    FN("key", NULL, apply_auth_key, true),
};

static const key_spec webhook_keys[] = {
    FN("url", NULL, apply_hook_url, true),
    FN("secret", NULL, apply_hook_secret, true),
    FN("retry_schedule", "5s 5m 30m 2h 5h 10h 10h", apply_retry, false),
    KEY("allow_private", "no", K_BOOL, CFG(hook_allow_private), 0, 0),
    KEY("timeout", "10s", K_DUR, CFG(hook_timeout_ms), 100, 10 * MINUTE),
    KEY("max_connections", "64", K_INT, CFG(hook_max_conns), 1, 10000),
};

static const key_spec flow_keys[] = {
    FN("command", NULL, apply_command, false),
    FN("executor", "process", apply_executor, false),
    KEY("cwd", NULL, K_STR, FLW(cwd), 0, 0),
    FN("env", NULL, apply_env, true),
    KEY("concurrency", "4", K_INT, FLW(concurrency), 1, 10000),
    KEY("timeout", "10m", K_DUR, FLW(timeout_ms), 0, 365 * DAY),
    KEY("resumable", "yes", K_BOOL, FLW(resumable), 0, 0),
    KEY("approval_timeout", "24h", K_DUR, FLW(approval_timeout_ms), 1, 365 * DAY),
    KEY("auth_timeout", "1h", K_DUR, FLW(auth_timeout_ms), 1, 365 * DAY),
    FN("min_match_rate", NULL, apply_match_rate, false), /* absent: no policy */
    KEY("min_evaluated", "100", K_I64, FLW(min_evaluated), 0, INT64_MAX),
    KEY("limit", "0", K_I64, FLW(default_limit), 0, INT64_MAX),
    KEY("max_limit", "1000000", K_I64, FLW(max_limit), 1, INT64_MAX),
    KEY("description", NULL, K_STR, FLW(description), 0, 0),
};

static const section_spec sections[SEC_COUNT] = {
    [SEC_SERVER] = {"server", server_keys, ARRAY_LEN(server_keys)},
    [SEC_STORE] = {"store", store_keys, ARRAY_LEN(store_keys)},
    [SEC_LIMITS] = {"limits", limits_keys, ARRAY_LEN(limits_keys)},
    [SEC_AUTH] = {"auth", auth_keys, ARRAY_LEN(auth_keys)},
    [SEC_WEBHOOKS] = {"webhooks", webhook_keys, ARRAY_LEN(webhook_keys)},
    [SEC_FLOW] = {"flow.NAME", flow_keys, ARRAY_LEN(flow_keys)},
};

_Static_assert(ARRAY_LEN(server_keys) <= MAX_SECTION_KEYS, "raise MAX_SECTION_KEYS");
_Static_assert(ARRAY_LEN(flow_keys) <= MAX_SECTION_KEYS, "raise MAX_SECTION_KEYS");

static int key_index(enum section sec, const char *name)
{
    for (size_t i = 0; i < sections[sec].n_keys; i++)
        if (strcmp(sections[sec].keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- defaults ---- */

/* Applies every default of section sec to base; false only when memory runs out. */
static bool apply_defaults(parse_ctx *ctx, enum section sec, void *base)
{
    for (size_t i = 0; i < sections[sec].n_keys; i++) {
        const key_spec *k = &sections[sec].keys[i];

        if (k->def != NULL && !apply_typed(ctx, k, base, k->def))
            return false;
    }
    return true;
}

static bool config_defaults(parse_ctx *ctx, const char *name)
{
    ctx->cfg->path = strdup(name);
    if (ctx->cfg->path == NULL)
        return false;
    for (int s = 0; s < SEC_FLOW; s++)
        if (!apply_defaults(ctx, (enum section)s, ctx->cfg))
            return false;
    return true;
}

/* ---- sections (seen by the reader, before inih) ---- */

static bool valid_flow_name(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= 64 && host_chars(s, n, "_.-");
}

static void flow_section(parse_ctx *ctx, const char *sname, const char *fname)
{
    rd_config *cfg = ctx->cfg;
    rd_flow_config *f;

    if (!valid_flow_name(fname)) {
        ctx_error(ctx, ctx->line, "section [%s]: a flow name is 1 to 64 of A-Z a-z 0-9 _ . -",
                  sname);
        return;
    }
    for (int i = 0; i < cfg->n_flows; i++) {
        if (strcmp(cfg->flows[i].name, fname) == 0) {
            ctx_error(ctx, ctx->line, "section [%s]: defined twice (first on line %d)", sname,
                      ctx->flow_line[i]);
            return;
        }
    }
    if (cfg->n_flows >= RD_MAX_FLOWS) {
        ctx_error(ctx, ctx->line, "section [%s]: at most %d flows are allowed", sname,
                  RD_MAX_FLOWS);
        return;
    }
    f = &cfg->flows[cfg->n_flows];
    f->name = strdup(fname);
    if (f->name == NULL || !apply_defaults(ctx, SEC_FLOW, f)) {
        ctx_error(ctx, ctx->line, "section [%s]: out of memory", sname);
        return;
    }
    ctx->flow_line[cfg->n_flows++] = ctx->line;
}

static void section_begin(parse_ctx *ctx, const char *sname)
{
    if (strncmp(sname, "flow.", 5) == 0) {
        flow_section(ctx, sname, sname + 5);
        return;
    }
    for (int s = 0; s < SEC_FLOW; s++) {
        if (strcmp(sname, sections[s].name) != 0)
            continue;
        if (ctx->sec_line[s] != 0)
            ctx_error(ctx, ctx->line, "section [%s]: appears twice (first on line %d)", sname,
                      ctx->sec_line[s]);
        else
            ctx->sec_line[s] = ctx->line;
        return;
    }
    ctx_error(ctx, ctx->line,
              "section [%s]: unknown section (expected server, store, limits, auth, webhooks "
              "or flow.NAME)",
              sname);
}

/* Finds a section header in line the way inih does: '[' up to ']', where a ';' after a
 * blank starts a comment. Without the ']' inih reports the line as malformed, so we
 * register nothing. */
static void detect_section(parse_ctx *ctx, char *line)
{
    bool was_space = false;
    char *p = line + 1;

    while (*p && *p != ']' && !(was_space && *p == ';')) {
        was_space = isspace((unsigned char)*p);
        p++;
    }
    if (*p != ']')
        return;
    *p = '\0';
    section_begin(ctx, line + 1);
    *p = ']';
}

/* The key name of a raw line, for messages about lines inih never passed to us. */
static void line_key(const char *line, char *out, size_t outlen)
{
    size_t n = strcspn(line, "=:");

    while (n > 0 && isspace((unsigned char)line[n - 1]))
        n--;
    snprintf(out, outlen, "%.*s", (int)n, line);
}

/* inih's fgets-like reader: hands over exactly one source line per call. */
static char *ctx_reader(char *buf, int num, void *stream)
{
    parse_ctx *ctx = stream;
    const char *p, *eol, *end = ctx->text + ctx->len;
    size_t n;

    if (ctx->pos >= ctx->len || num < 3)
        return NULL;
    p = ctx->text + ctx->pos;
    eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL)
        eol = end;
    ctx->pos = (size_t)(eol - ctx->text) + (eol < end ? 1 : 0);
    ctx->line++;
    if (ctx->line == 1 && eol - p >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3; /* UTF-8 byte order mark */
    while (p < eol && (*p == ' ' || *p == '\t'))
        p++;
    n = (size_t)(eol - p);
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n + 2 > (size_t)num) {
        char key[64];

        line_key(p, key, sizeof key);
        if (p[0] != '[' && p[0] != ';' && p[0] != '#' && memchr(p, '=', n) != NULL)
            ctx_error(ctx, ctx->line, "key '%s': line longer than %d characters", key, num - 2);
        else
            ctx_error(ctx, ctx->line, "line longer than %d characters", num - 2);
        n = 0;
    }
    memcpy(buf, p, n);
    buf[n] = '\n';
    buf[n + 1] = '\0';
    if (buf[0] == '[')
        detect_section(ctx, buf);
    return buf;
}

/* ---- the inih handler ---- */

/* Maps inih's section string to its table and to the struct its keys write into. */
static bool resolve_section(parse_ctx *ctx, const char *section, enum section *sec, void **base,
                            int **lines)
{
    if (strncmp(section, "flow.", 5) == 0) {
        for (int i = 0; i < ctx->cfg->n_flows; i++) {
            if (strcmp(ctx->cfg->flows[i].name, section + 5) == 0) {
                *sec = SEC_FLOW;
                *base = &ctx->cfg->flows[i];
                *lines = ctx->flow_key_line[i];
                return true;
            }
        }
        return false;
    }
    for (int s = 0; s < SEC_FLOW; s++) {
        if (strcmp(section, sections[s].name) == 0) {
            *sec = (enum section)s;
            *base = ctx->cfg;
            *lines = ctx->key_line[s];
            return true;
        }
    }
    return false;
}

static int ctx_handler(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *ctx = user;
    enum section sec;
    void *base;
    int *lines, k;

    /* After the first error we only let inih finish; nothing else will be reported. */
    if (ctx->err_line != 0)
        return 1;
    if (section[0] == '\0') {
        ctx_error(ctx, ctx->line, "key '%s': outside any section", name);
        return 0;
    }
    if (!resolve_section(ctx, section, &sec, &base, &lines)) {
        ctx_error(ctx, ctx->line, "section [%s]: unknown section", section);
        return 0;
    }
    k = key_index(sec, name);
    if (k < 0) {
        ctx_error(ctx, ctx->line, "key '%s': unknown key in [%s]", name, section);
        return 0;
    }
    if (lines[k] != 0 && !sections[sec].keys[k].repeatable) {
        ctx_error(ctx, ctx->line, "key '%s': given twice (first on line %d)", name, lines[k]);
        return 0;
    }
    if (lines[k] == 0)
        lines[k] = ctx->line;
    if (!apply_typed(ctx, &sections[sec].keys[k], base, value)) {
        ctx_error(ctx, ctx->line, "key '%s': %s", name, ctx->reason);
        return 0;
    }
    return 1;
}

/* ---- whole-config checks, after every key is known ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* version = the first 16 hex digits of SHA-256 over the flow's canonical "key=value\n"
 * lines in key order, so the order in the file does not matter but any value change does.
 * argv is one line, length-prefixed, because word order and boundaries matter. */
static bool flow_version(rd_flow_config *f)
{
    char *env[RD_MAX_ENV], hex[65], *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);

    if (m == NULL)
        return false;
    fprintf(m, "approval_timeout=%lld\nargv=", (long long)f->approval_timeout_ms);
    for (int i = 0; i < f->argc; i++)
        fprintf(m, "%zu:%s;", strlen(f->argv[i]), f->argv[i]);
    fprintf(m, "\nauth_timeout=%lld\nconcurrency=%d\ncwd=%s\ndescription=%s\n",
            (long long)f->auth_timeout_ms, f->concurrency, f->cwd ? f->cwd : "",
            f->description ? f->description : "");
    memcpy(env, f->env, sizeof env[0] * (size_t)f->n_env);
    qsort(env, (size_t)f->n_env, sizeof env[0], cmp_str);
    for (int i = 0; i < f->n_env; i++)
        fprintf(m, "env=%s\n", env[i]);
    fprintf(m,
            "executor=%s\nlimit=%lld\nmax_limit=%lld\nmin_evaluated=%lld\n"
            "min_match_rate=%.17g\nresumable=%d\ntimeout=%lld\n",
            f->external ? "external" : "process", (long long)f->default_limit,
            (long long)f->max_limit, (long long)f->min_evaluated, f->min_match_rate, f->resumable,
            (long long)f->timeout_ms);
    if (fclose(m) != 0) {
        free(text);
        return false;
    }
    rd_sha256_hex(text, len, hex);
    free(text);
    memcpy(f->version, hex, 16);
    f->version[16] = '\0';
    return true;
}

static void finish_flow(parse_ctx *ctx, int i)
{
    rd_flow_config *f = &ctx->cfg->flows[i];
    int *lines = ctx->flow_key_line[i];

    if (f->external && f->command != NULL)
        ctx_error(ctx, lines[key_index(SEC_FLOW, "command")],
                  "key 'command': not allowed with executor = external");
    else if (!f->external && f->command == NULL)
        ctx_error(ctx, ctx->flow_line[i],
                  "section [flow.%s]: needs a command (or executor = external)", f->name);
    else if (f->default_limit > f->max_limit)
        ctx_error(ctx, lines[key_index(SEC_FLOW, "limit")],
                  "key 'limit': must not exceed max_limit (%lld)", (long long)f->max_limit);
    else if (!flow_version(f))
        ctx_error(ctx, ctx->flow_line[i], "section [flow.%s]: out of memory", f->name);
}

/* The URL a browser should use for links: the first TCP listener, with a wildcard address
 * replaced by loopback because 0.0.0.0 and [::] are not addresses a client can dial. */
static bool default_public_url(rd_config *cfg)
{
    const char *l = NULL;

    for (int i = 0; i < cfg->n_listen && l == NULL; i++)
        if (strncmp(cfg->listen[i], "unix:", 5) != 0)
            l = cfg->listen[i];
    if (l == NULL)
        l = "127.0.0.1:8080";
    else if (strncmp(l, "0.0.0.0:", 8) == 0)
        return asprintf(&cfg->public_url, "http://127.0.0.1%s", l + 7) >= 0;
    else if (strncmp(l, "[::]:", 5) == 0)
        return asprintf(&cfg->public_url, "http://[::1]%s", l + 4) >= 0;
    return asprintf(&cfg->public_url, "http://%s", l) >= 0;
}

static void config_finish(parse_ctx *ctx)
{
    rd_config *cfg = ctx->cfg;

    if (cfg->n_listen == 0) {
        cfg->listen[0] = strdup("127.0.0.1:8080");
        if (cfg->listen[0] == NULL) {
            ctx_error(ctx, 1, "out of memory");
            return;
        }
        cfg->n_listen = 1;
    }
    if (cfg->public_url == NULL && !default_public_url(cfg)) {
        cfg->public_url = NULL;
        ctx_error(ctx, 1, "out of memory");
        return;
    }
    /* No API key means an open API: only loopback may reach it (SPEC section 3). Checked here
     * too so `runsd -t` refuses what the daemon would refuse at bind. */
    for (int i = 0; i < cfg->n_listen && cfg->n_keys == 0 && ctx->err_line == 0; i++) {
        const char *l = cfg->listen[i];
        bool local = strncmp(l, "unix:", 5) == 0 || strncmp(l, "127.", 4) == 0 ||
                     strncmp(l, "[::1]:", 6) == 0 || strncmp(l, "localhost:", 10) == 0;
        if (!local)
            ctx_error(ctx, ctx->key_line[SEC_SERVER][key_index(SEC_SERVER, "listen")],
                      "key 'listen': %s is not a loopback address and no [auth] key is "
                      "configured (the API would be open to the network)",
                      l);
    }
    if (strcmp(cfg->store_path, ":memory:") == 0 && !cfg->store_allow_memory)
        ctx_error(ctx, ctx->key_line[SEC_STORE][key_index(SEC_STORE, "path")],
                  "key 'path': :memory: loses every run on exit; it needs allow_memory = yes");
    for (int i = 0; i < cfg->n_flows && ctx->err_line == 0; i++)
        finish_flow(ctx, i);
}

/* ---- entry points ---- */

/* A line inih could not tokenise: no '=' (or ':'), or a '[' without its ']'. */
static void syntax_error(parse_ctx *ctx, int line)
{
    ctx_error(ctx, line, "expected key = value or [section]");
}

static int config_parse(const char *text, size_t len, const char *name, rd_config **out, char *err,
                        size_t errlen)
{
    parse_ctx *ctx = calloc(1, sizeof *ctx);
    rd_config *cfg = calloc(1, sizeof *cfg);
    int rc;

    *out = NULL;
    if (ctx != NULL)
        ctx->cfg = cfg;
    if (ctx == NULL || cfg == NULL || !config_defaults(ctx, name)) {
        write_err(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    if (memchr(text, '\0', len) != NULL) {
        write_err(err, errlen, "%s: contains a NUL byte (not a text file?)", name);
        goto fail;
    }
    *ctx = (parse_ctx){.cfg = cfg, .name = name, .text = text, .len = len};
    rc = ini_parse_stream(ctx_reader, ctx, ctx_handler, ctx);
    if (rc == -2) {
        write_err(err, errlen, "%s: out of memory", name);
        goto fail;
    }
    /* inih reports the first line it failed on, which is either a line our handler refused
     * (then ctx holds the reason) or an earlier line it could not tokenise. */
    if (rc > 0 && (ctx->err_line == 0 || rc < ctx->err_line)) {
        ctx->err_line = 0;
        syntax_error(ctx, rc);
    }
    if (ctx->err_line == 0)
        config_finish(ctx);
    if (ctx->err_line != 0) {
        write_err(err, errlen, "%s:%d: %s", name, ctx->err_line, ctx->err);
        goto fail;
    }
    free(ctx);
    *out = cfg;
    return RD_OK;
fail:
    free(ctx);
    rd_config_free(cfg);
    return RD_EINVAL;
}

int rd_config_parse_string(const char *text, const char *name, rd_config **out, char *err,
                           size_t errlen)
{
    if (name == NULL)
        name = "<string>";
    if (text == NULL || out == NULL) {
        write_err(err, errlen, "%s: no config text", name);
        return RD_EINVAL;
    }
    return config_parse(text, strlen(text), name, out, err, errlen);
}

/* Reads a whole file; NULL with the reason in why. */
static char *read_file(const char *path, size_t *len, char *why, size_t whylen)
{
    FILE *fp = fopen(path, "re");
    char *buf;
    size_t n;

    if (fp == NULL) {
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    buf = malloc(MAX_FILE_BYTES + 1);
    if (buf == NULL) {
        fclose(fp);
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    n = fread(buf, 1, MAX_FILE_BYTES + 1, fp);
    if (ferror(fp) || n > MAX_FILE_BYTES) {
        if (ferror(fp))
            snprintf(why, whylen, "cannot read: %s", strerror(errno));
        else
            snprintf(why, whylen, "larger than %d bytes", MAX_FILE_BYTES);
        fclose(fp);
        free(buf);
        return NULL;
    }
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}

int rd_config_load(const char *path, rd_config **out, char *err, size_t errlen)
{
    char why[256];
    size_t len = 0;
    char *text;
    int rc;

    if (path == NULL || out == NULL) {
        write_err(err, errlen, "no config path");
        return RD_EINVAL;
    }
    *out = NULL;
    text = read_file(path, &len, why, sizeof why);
    if (text == NULL) {
        write_err(err, errlen, "%s: %s", path, why);
        return RD_EINVAL;
    }
    rc = config_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

/* Frees a string that may hold a secret, wiping it first so it does not linger in freed
 * heap memory (core dumps, later allocations). */
static void free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void flow_free(rd_flow_config *f)
{
    free(f->name);
    free(f->command);
    for (int i = 0; i < RD_MAX_ARGV + 1; i++)
        free(f->argv[i]);
    free(f->cwd);
    for (int i = 0; i < RD_MAX_ENV + 1; i++)
        free(f->env[i]);
    free(f->description);
}

void rd_config_free(rd_config *cfg)
{
    /* Walks whole arrays rather than counts, so a half-built config is freed correctly. */
    if (cfg == NULL)
        return;
    free(cfg->path);
    for (int i = 0; i < RD_MAX_LISTEN; i++)
        free(cfg->listen[i]);
    free(cfg->public_url);
    for (int i = 0; i < RD_MAX_CORS; i++)
        free(cfg->cors_origins[i]);
    free(cfg->log_level);
    free(cfg->store_path);
    free(cfg->store_synchronous);
    for (int i = 0; i < RD_MAX_KEYS; i++)
        free_secret(cfg->keys[i].key);
    for (int i = 0; i < RD_MAX_HOOKS; i++)
        free(cfg->hook_urls[i]);
    for (int i = 0; i < RD_MAX_SECRETS; i++)
        free_secret(cfg->hook_secrets[i]);
    for (int i = 0; i < RD_MAX_FLOWS; i++)
        flow_free(&cfg->flows[i]);
    free(cfg);
}

const rd_flow_config *rd_config_flow(const rd_config *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (int i = 0; i < cfg->n_flows; i++)
        if (strcmp(cfg->flows[i].name, name) == 0)
            return &cfg->flows[i];
    return NULL;
}

/* ---- command splitting ---- */

/* Reads one shell word starting at *pp into word (which has room for the whole command).
 * Returns its length, or -1 on an unbalanced quote or a trailing backslash. */
static long split_word(const char **pp, char *word)
{
    const char *p = *pp;
    long n = 0;

    while (*p != '\0' && !isspace((unsigned char)*p)) {
        if (*p == '\'') {
            const char *close = strchr(p + 1, '\'');

            if (close == NULL)
                return -1;
            memcpy(word + n, p + 1, (size_t)(close - p - 1));
            n += close - p - 1;
            p = close + 1;
        } else if (*p == '"') {
            for (p++; *p != '"'; p++) {
                if (*p == '\0')
                    return -1;
                /* Inside double quotes a backslash escapes only these, as in POSIX sh. */
                if (*p == '\\' && p[1] != '\0' && strchr("\"\\$`", p[1]) != NULL)
                    p++;
                word[n++] = *p;
            }
            p++;
        } else if (*p == '\\') {
            if (p[1] == '\0')
                return -1;
            word[n++] = p[1];
            p += 2;
        } else {
            word[n++] = *p++;
        }
    }
    *pp = p;
    return n;
}

int rd_split_command(const char *cmd, char **argv, int max_argv)
{
    char *word;
    int argc = 0;

    if (cmd == NULL || argv == NULL || max_argv <= 0)
        return RD_EINVAL;
    argv[0] = NULL;
    word = malloc(strlen(cmd) + 1);
    if (word == NULL)
        return RD_EINVAL;
    for (const char *p = cmd;;) {
        long n;

        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        n = split_word(&p, word);
        if (n < 0 || argc == max_argv)
            goto fail;
        argv[argc] = strndup(word, (size_t)n);
        if (argv[argc] == NULL)
            goto fail;
        argv[++argc] = NULL;
    }
    free(word);
    if (argc == 0)
        return RD_EINVAL;
    return argc;
fail:
    free(word);
    /* NULL every slot we used: the caller's array (a flow's argv) is freed again later. */
    while (argc > 0) {
        free(argv[--argc]);
        argv[argc] = NULL;
    }
    return RD_EINVAL;
}
