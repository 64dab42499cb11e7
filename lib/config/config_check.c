/*
 * config_check.c: the checks that need the whole file, run once every key is parsed: a flow
 * needs a command unless it is external, its limit may not exceed its max_limit, an open API
 * (no [auth] key) may only listen on loopback, and :memory: needs allow_memory. It also fills
 * what is derived rather than read (the default listener, public_url, each flow's version).
 */
#include "config/config_int.h"
#include "base/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    fprintf(m, "executor=%s\n", f->external ? "external" : "process");
    /* The schema's content, not where it was read from, and only when set (as max_processes
     * below), so flows without one keep the versions they had. */
    if (f->input_schema != NULL) {
        char *schema = json_dumps(f->input_schema, JSON_COMPACT | JSON_SORT_KEYS);

        if (schema == NULL) {
            fclose(m);
            free(text);
            return false;
        }
        fprintf(m, "input_schema=%s\n", schema);
        free(schema);
    }
    fprintf(m, "limit=%lld\nmax_limit=%lld\n", (long long)f->default_limit,
            (long long)f->max_limit);
    /* Only when not the default, so the versions of flows written before the key existed do
     * not change with the upgrade; a changed value still changes the version. */
    if (f->max_processes != 512)
        fprintf(m, "max_processes=%d\n", f->max_processes);
    fprintf(m, "min_evaluated=%lld\nmin_match_rate=%.17g\nresumable=%d\ntimeout=%lld\n",
            (long long)f->min_evaluated, f->min_match_rate, f->resumable, (long long)f->timeout_ms);
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

    f->command_line = lines[config_key_index(SEC_FLOW, "command")];
    if (f->external && f->command != NULL)
        config_error(ctx, lines[config_key_index(SEC_FLOW, "command")],
                     "key 'command': not allowed with executor = external");
    else if (!f->external && f->command == NULL)
        config_error(ctx, ctx->flow_line[i],
                     "section [flow.%s]: needs a command (or executor = external)", f->name);
    else if (!f->external && !config_resolve_command(ctx, f))
        config_error(ctx, ctx->flow_line[i], "section [flow.%s]: out of memory", f->name);
    else if (f->default_limit > f->max_limit)
        config_error(ctx, lines[config_key_index(SEC_FLOW, "limit")],
                     "key 'limit': must not exceed max_limit (%lld)", (long long)f->max_limit);
    else if (!flow_version(f))
        config_error(ctx, ctx->flow_line[i], "section [flow.%s]: out of memory", f->name);
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

void config_finish(parse_ctx *ctx)
{
    rd_config *cfg = ctx->cfg;

    if (cfg->n_listen == 0) {
        cfg->listen[0] = strdup("127.0.0.1:8080");
        if (cfg->listen[0] == NULL) {
            config_error(ctx, 1, "out of memory");
            return;
        }
        cfg->n_listen = 1;
    }
    cfg->public_url_derived = cfg->public_url == NULL;
    if (cfg->public_url == NULL && !default_public_url(cfg)) {
        cfg->public_url = NULL;
        config_error(ctx, 1, "out of memory");
        return;
    }
    /* No API key means an open API: only loopback may reach it (SPEC section 3). Checked here
     * too so `runsd -t` refuses what the daemon would refuse at bind. */
    for (int i = 0; i < cfg->n_listen && cfg->n_keys == 0 && ctx->err_line == 0; i++) {
        const char *l = cfg->listen[i];
        bool local = strncmp(l, "unix:", 5) == 0 || strncmp(l, "127.", 4) == 0 ||
                     strncmp(l, "[::1]:", 6) == 0 || strncmp(l, "localhost:", 10) == 0;
        if (!local)
            config_error(ctx, ctx->key_line[SEC_SERVER][config_key_index(SEC_SERVER, "listen")],
                         "key 'listen': %s is not a loopback address and no [auth] key is "
                         "configured (the API would be open to the network)",
                         l);
    }
    int lv_server = ctx->key_line[SEC_SERVER][config_key_index(SEC_SERVER, "log_level")];
    int lv_log = ctx->key_line[SEC_LOG][config_key_index(SEC_LOG, "level")];
    if (lv_server && lv_log)
        config_error(ctx, lv_server > lv_log ? lv_server : lv_log,
                     "the log level is set twice ([server] log_level and [log] level): keep one");
    if (strcmp(cfg->store_path, ":memory:") == 0 && !cfg->store_allow_memory)
        config_error(ctx, ctx->key_line[SEC_STORE][config_key_index(SEC_STORE, "path")],
                     "key 'path': :memory: loses every run on exit; it needs allow_memory = yes");
    if (cfg->store_password_file && *cfg->store_password_file &&
        access(cfg->store_password_file, R_OK) != 0)
        config_error(ctx, ctx->key_line[SEC_STORE][config_key_index(SEC_STORE, "password_file")],
                     "key 'password_file': cannot read %s: %s", cfg->store_password_file,
                     strerror(errno));
    for (int i = 0; i < cfg->n_flows && ctx->err_line == 0; i++)
        finish_flow(ctx, i);
}
