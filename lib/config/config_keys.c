/*
 * config_keys.c: what each configuration key accepts. Keys are described by tables, one per
 * section; one generic routine parses and range-checks typed values (strings, booleans,
 * integers, sizes, durations) and small functions handle the structured ones (listen
 * addresses, URLs, API keys, webhook secrets, retry schedules, flow commands). Defaults are
 * applied through the same parsers, so a default is always a value the file could hold.
 * Failures leave their reason in ctx->reason; config.c adds the file, line and key.
 */
#include "config/config_int.h"
#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include <libpq-fe.h>

static bool fail(parse_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parse_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(ctx->reason, sizeof ctx->reason, fmt, ap);
    va_end(ap);
    return false;
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
bool config_apply(parse_ctx *ctx, const key_spec *k, void *base, const char *value)
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

static bool apply_log_format(parse_ctx *ctx, void *base, const char *value)
{
    static const char *const formats[] = {"logfmt", "json", NULL};

    return set_choice(ctx, &((rd_config *)base)->log_format, value, formats);
}

static bool apply_synchronous(parse_ctx *ctx, void *base, const char *value)
{
    static const char *const modes[] = {"normal", "full", NULL};

    return set_choice(ctx, &((rd_config *)base)->store_synchronous, value, modes);
}

static bool apply_backend(parse_ctx *ctx, void *base, const char *value)
{
    static const char *const backends[] = {"sqlite", "postgresql", NULL};

    return set_choice(ctx, &((rd_config *)base)->store_backend, value, backends);
}

/* A libpq connection string. libpq parses it here so `runsd -t` finds a typo; a password in
 * it is refused (it would sit in a file that is often world-readable, and in ps-like
 * listings of the config): password_file or PGPASSFILE hold it. The value is never echoed. */
static bool apply_dsn(parse_ctx *ctx, void *base, const char *value)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(value, &perr);
    bool has_password = false;

    if (!opts) {
        bool ok = fail(ctx, "not a libpq connection string (%s)",
                       perr ? strtok(perr, "\n") : "out of memory");
        PQfreemem(perr);
        return ok;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && *o->val)
            has_password = true;
    PQconninfoFree(opts);
    if (has_password)
        return fail(ctx, "holds a password: put it in password_file (or PGPASSFILE) instead");
    return set_str(ctx, &((rd_config *)base)->store_dsn, value);
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

/* Who besides write keys sees a paused run's approve/deny links: "keys" (only they) or
 * "stream" (also whoever opens the run's stream_url). */
static bool apply_approval_links(parse_ctx *ctx, void *base, const char *value)
{
    rd_flow_config *f = base;

    if (strcmp(value, "keys") != 0 && strcmp(value, "stream") != 0)
        return fail(ctx, "expected keys or stream");
    f->approval_links_stream = strcmp(value, "stream") == 0;
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
    KEY("head_timeout", "10s", K_DUR, CFG(head_timeout_ms), 100, HOUR),
    KEY("body_timeout", "60s", K_DUR, CFG(body_timeout_ms), 100, HOUR),
    FN("cors_origin", NULL, apply_cors, true),
    KEY("sse_heartbeat", "15s", K_DUR, CFG(heartbeat_ms), 100, HOUR),
    KEY("max_sse_clients", "10000", K_INT, CFG(max_sse_clients), 1, 1000000),
    KEY("sse_max_buffer", "256K", K_SIZE, CFG(sse_max_buffer), KIB, GIB),
    KEY("sse_max_total", "64M", K_SIZE, CFG(sse_max_total), MIB, 64 * GIB),
    KEY("sse_backpressure", "4M", K_SIZE, CFG(sse_backpressure), 0, 64 * GIB),
    KEY("sse_stall", "5s", K_DUR, CFG(sse_stall_ms), 100, HOUR),
    KEY("stream_token_ttl", "24h", K_DUR, CFG(stream_token_ttl_ms), SEC, 365 * DAY),
    FN("log_level", "info", apply_log_level, false),
};

static const key_spec store_keys[] = {
    KEY("path", "./runsd.db", K_STR, CFG(store_path), 0, 0),
    KEY("allow_memory", "no", K_BOOL, CFG(store_allow_memory), 0, 0),
    FN("synchronous", "normal", apply_synchronous, false),
    FN("backend", "sqlite", apply_backend, false),
    FN("dsn", NULL, apply_dsn, false), /* none: libpq's defaults and PG* variables */
    KEY("password_file", NULL, K_STR, CFG(store_password_file), 0, 0),
    KEY("retention", "0", K_DUR, CFG(event_retention_ms), 0, 3650 * DAY),
    KEY("max_journal", "64M", K_SIZE, CFG(store_max_journal), 0, 64 * GIB),
    KEY("timeout", "10s", K_DUR, CFG(store_timeout_ms), 100, HOUR),
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

/* [log] level is [server] log_level under its newer name: both set the same value. */
static const key_spec log_keys[] = {
    FN("format", "logfmt", apply_log_format, false),
    FN("level", NULL, apply_log_level, false), /* default: [server] log_level's */
};

static const key_spec flow_keys[] = {
    FN("command", NULL, apply_command, false), FN("executor", "process", apply_executor, false),
    KEY("cwd", NULL, K_STR, FLW(cwd), 0, 0), FN("env", NULL, apply_env, true),
    KEY("concurrency", "4", K_INT, FLW(concurrency), 1, 10000),
    KEY("timeout", "10m", K_DUR, FLW(timeout_ms), 0, 365 * DAY),
    KEY("resumable", "yes", K_BOOL, FLW(resumable), 0, 0),
    KEY("approval_timeout", "24h", K_DUR, FLW(approval_timeout_ms), 1, 365 * DAY),
    KEY("auth_timeout", "1h", K_DUR, FLW(auth_timeout_ms), 1, 365 * DAY),
    FN("approval_links", "keys", apply_approval_links, false),
    FN("min_match_rate", NULL, apply_match_rate, false), /* absent: no policy */
    KEY("min_evaluated", "100", K_I64, FLW(min_evaluated), 0, INT64_MAX),
    KEY("limit", "0", K_I64, FLW(default_limit), 0, INT64_MAX),
    KEY("max_limit", "1000000", K_I64, FLW(max_limit), 1, INT64_MAX),
    /* 4194304 is the kernel's PID_MAX_LIMIT: a larger pids.max could never be reached. */
    KEY("max_processes", "512", K_INT, FLW(max_processes), 0, 4194304),
    KEY("description", NULL, K_STR, FLW(description), 0, 0),
    FN("input_schema", NULL, config_apply_input_schema, false), /* absent: any input */
};

const section_spec config_sections[SEC_COUNT] = {
    [SEC_SERVER] = {"server", server_keys, ARRAY_LEN(server_keys)},
    [SEC_STORE] = {"store", store_keys, ARRAY_LEN(store_keys)},
    [SEC_LIMITS] = {"limits", limits_keys, ARRAY_LEN(limits_keys)},
    [SEC_AUTH] = {"auth", auth_keys, ARRAY_LEN(auth_keys)},
    [SEC_WEBHOOKS] = {"webhooks", webhook_keys, ARRAY_LEN(webhook_keys)},
    [SEC_LOG] = {"log", log_keys, ARRAY_LEN(log_keys)},
    [SEC_FLOW] = {"flow.NAME", flow_keys, ARRAY_LEN(flow_keys)},
};

_Static_assert(ARRAY_LEN(server_keys) <= MAX_SECTION_KEYS, "raise MAX_SECTION_KEYS");
_Static_assert(ARRAY_LEN(flow_keys) <= MAX_SECTION_KEYS, "raise MAX_SECTION_KEYS");

int config_key_index(enum section sec, const char *name)
{
    for (size_t i = 0; i < config_sections[sec].n_keys; i++)
        if (strcmp(config_sections[sec].keys[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- defaults ---- */

/* Applies every default of section sec to base; false only when memory runs out. */
bool config_apply_defaults(parse_ctx *ctx, enum section sec, void *base)
{
    for (size_t i = 0; i < config_sections[sec].n_keys; i++) {
        const key_spec *k = &config_sections[sec].keys[i];

        if (k->def != NULL && !config_apply(ctx, k, base, k->def))
            return false;
    }
    return true;
}

bool config_defaults(parse_ctx *ctx, const char *name)
{
    ctx->cfg->path = strdup(name);
    if (ctx->cfg->path == NULL)
        return false;
    for (int s = 0; s < SEC_FLOW; s++)
        if (!config_apply_defaults(ctx, (enum section)s, ctx->cfg))
            return false;
    return true;
}

/* ---- flow names ---- */

bool config_flow_name_ok(const char *s)
{
    size_t n = strlen(s);

    return n >= 1 && n <= 64 && host_chars(s, n, "_.-");
}
