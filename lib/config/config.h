/*
 * config.h: the daemon's configuration as plain data, loaded from an INI file (SPEC section 7)
 * with libinih. Loading validates every key; an error names the file, line and key.
 * The struct is immutable once loaded; a reload builds a new one.
 */
#ifndef RUNSD_CONFIG_H
#define RUNSD_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RD_MAX_LISTEN 8
#define RD_MAX_KEYS 32
#define RD_MAX_HOOKS 8
#define RD_MAX_SECRETS 4
#define RD_MAX_ARGV 64
#define RD_MAX_ENV 32
#define RD_MAX_FLOWS 64
#define RD_MAX_CORS 16

enum { RD_SCOPE_READ = 1, RD_SCOPE_WRITE = 2, RD_SCOPE_ADMIN = 3 };

typedef struct rd_api_key {
    int scope; /* RD_SCOPE_*: admin implies write implies read */
    char *key; /* the secret itself; never logged */
} rd_api_key;

typedef struct rd_flow_config {
    char *name;       /* from the section name [flow.NAME]; [A-Za-z0-9_.-]{1,64} */
    bool external;    /* executor = external: no command, remote worker over HTTP */
    char *command;    /* the raw command line, for display */
    int command_line; /* the line of the command key, for rd_config_check_commands */
    char *
        argv[RD_MAX_ARGV + 1]; /* split like a shell would (quotes, backslashes), NULL-terminated */
    int argc;
    char *cwd;                 /* optional working directory (key: cwd) */
    char *env[RD_MAX_ENV + 1]; /* "NAME=value" entries added to the worker's environment (key: env,
                                  repeatable) */
    int n_env;
    int concurrency;             /* default 4, 1..10000 */
    int64_t timeout_ms;          /* default 10m; 0 = none */
    bool resumable;              /* default yes */
    int64_t approval_timeout_ms; /* default 24h */
    int64_t auth_timeout_ms;     /* default 1h */
    bool approval_links_stream;  /* key: approval_links = stream (default keys): approve/deny
                                    links are shown to the run's stream token too */
    double min_match_rate;       /* 0 = no policy (key absent) */
    int64_t min_evaluated;       /* default 100 */
    int64_t default_limit;       /* key: limit; 0 = unlimited; default 0 */
    int64_t max_limit;           /* key: max_limit; default 1000000 */
    int max_processes;           /* processes and threads a worker and its descendants may have at
                                    once (cgroup pids.max); default 512; 0 = no limit */
    char *description;           /* optional, shown in GET /v1/flows */
    json_t *input_schema; /* key: input_schema (@FILE or inline JSON): the accepted run input, a
                             subset of JSON Schema checked by rd_input_schema_check; NULL =
                             any input. Owned by the config */
    char version[17];     /* first 16 hex chars of SHA-256 over the flow's keys and values */
} rd_flow_config;

typedef struct rd_config {
    char *path; /* the file it was loaded from */
    /* [server] */
    char *listen[RD_MAX_LISTEN]; /* "host:port", "[v6]:port" or "unix:/path" */
    int n_listen;
    char *public_url;                /* default "http://" + first listen */
    bool public_url_derived;         /* not in the file: socket activation may replace it */
    int64_t max_body_bytes;          /* default 1 MiB (key: max_body) */
    int64_t max_uri_bytes;           /* default 8 KiB (key: max_uri) */
    int64_t max_header_bytes;        /* default 16 KiB (key: max_headers) */
    int max_connections;             /* default 4096 */
    int64_t head_timeout_ms;         /* a whole request head, default 10s */
    int64_t body_timeout_ms;         /* a whole request body, default 60s */
    char *cors_origins[RD_MAX_CORS]; /* key: cors_origin, repeatable; "*" allowed */
    int n_cors;
    int64_t heartbeat_ms;        /* SSE heartbeat, default 15s (key: sse_heartbeat) */
    int max_sse_clients;         /* default 10000 */
    int64_t sse_max_buffer;      /* per-subscriber unsent bytes bound, default 256 KiB */
    int64_t sse_max_total;       /* unsent bytes bound over all subscribers, default 64 MiB */
    int64_t sse_backpressure;    /* backlog of keeping-up subscribers that slows producers */
    int64_t sse_stall_ms;        /* a subscriber taking nothing this long stops slowing them */
    int64_t stream_token_ttl_ms; /* lifetime of stream_url tokens, default 24h */
    char *log_level;             /* "debug" | "info" | "warn" | "error"; default info */
    /* [log] (level: the same log_level) */
    char *log_format; /* "logfmt" (default) | "json" */
    /* [store] */
    char *store_path;           /* default ./runsd.db; ":memory:" only with allow_memory */
    bool store_allow_memory;    /* key: allow_memory (tests only) */
    char *store_synchronous;    /* "normal" (default) | "full" */
    char *store_backend;        /* "sqlite" (default) | "postgresql" */
    char *store_dsn;            /* postgresql: a libpq connection string without a password */
    char *store_password_file;  /* postgresql: a libpq password file (else PGPASSFILE) */
    int64_t event_retention_ms; /* key: retention; 0 = keep forever (default) */
    int64_t store_max_journal;  /* bytes held while the store fails before producers are
                                   paused (store_journal.h); 0 = no bound; default 64M */
    int64_t store_timeout_ms;   /* postgresql: an unanswered commit or wait past it drops the
                                   connection (default 10s) */
    /* [limits] */
    int max_running;            /* default 8 */
    int max_queued;             /* default 10000 */
    int64_t max_line_bytes;     /* worker stdout line bound, default 1 MiB (key: max_line) */
    int64_t max_stderr_lines;   /* per run, default 1000 (key: max_stderr_lines) */
    int64_t kill_grace_ms;      /* SIGTERM -> SIGKILL, default 5s (key: kill_grace) */
    int64_t max_wait_ms;        /* cap for ?wait=, default 60s (key: max_wait) */
    int64_t max_items_per_run;  /* default 10000000 (key: max_items) */
    int64_t idempotency_ttl_ms; /* how long an Idempotency-Key is remembered, default 24h */
    /* [auth] */
    rd_api_key keys[RD_MAX_KEYS];
    int n_keys;
    /* [webhooks] */
    char *hook_urls[RD_MAX_HOOKS]; /* key: url, repeatable */
    int n_hook_urls;
    char *hook_secrets[RD_MAX_SECRETS]; /* key: secret, repeatable (rotation); whsec_<base64> */
    int n_hook_secrets;
    int64_t retry_schedule_ms[16]; /* default 5s 5m 30m 2h 5h 10h 10h */
    int n_retry;
    bool hook_allow_private; /* key: allow_private, default no */
    int64_t hook_timeout_ms; /* key: timeout, default 10s */
    int hook_max_conns;      /* key: max_connections, default 64 */
    /* [flow.NAME] sections */
    rd_flow_config flows[RD_MAX_FLOWS];
    int n_flows;
} rd_config;

/** Loads and validates path. On success returns 0 and *out (free with rd_config_free).
 * On failure returns RD_EINVAL and writes "FILE:LINE: key 'K': reason" (or
 * "FILE: reason" when no line applies) into err. */
int rd_config_load(const char *path, rd_config **out, char *err, size_t errlen);
/** Parses config text as if read from the file named `name` (for tests). Returns, fills *out
 * (free with rd_config_free) and writes err as rd_config_load does; text stays the caller's. */
int rd_config_parse_string(const char *text, const char *name, rd_config **out, char *err,
                           size_t errlen);
/** Frees cfg and every string it holds, wiping the secrets first. Safe on a half-built config;
 * NULL is a no-op. */
void rd_config_free(rd_config *cfg);
/** The flow named name, or NULL. Borrowed from cfg. */
const rd_flow_config *rd_config_flow(const rd_config *cfg, const char *name);
/** Checks that each flow's worker command can be started: argv[0] with a '/' must be an
 * executable regular file, a bare name must be one in the flow's PATH (its env, else
 * runsd's, else /usr/local/bin:/usr/bin:/bin) as execvp would find it. Writes one line per
 * failing flow ("FILE:LINE: key 'command': PROGRAM: reason\n") into err; returns how many. */
int rd_config_check_commands(const rd_config *cfg, char *err, size_t errlen);
/** Splits a command line like a POSIX shell would split words (single and double quotes,
 * backslash escapes; no expansion). Fills argv with malloc'd strings, NULL-terminated, which
 * the caller frees. Returns argc, or RD_EINVAL on unbalanced quotes / too many words / empty;
 * on failure every slot it used is freed and NULL again. */
int rd_split_command(const char *cmd, char **argv, int max_argv);

#endif
