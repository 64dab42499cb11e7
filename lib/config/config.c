/*
 * config.c: loads the INI configuration (SPEC section 7) into an immutable rd_config.
 *
 * libinih does the tokenising, but the Debian build hands its callback no line number and no
 * notice of section headers. We therefore feed inih through our own line reader: it counts
 * lines, sees every section header before inih does (so empty and duplicate sections are
 * caught), strips leading blanks (so indented keys are plain keys, never inih's multi-line
 * continuations) and takes the key lines too long for inih's fixed buffer (198 characters on
 * Debian; worker commands with absolute paths get that long) off inih's hands: it splits
 * them itself the way inih would and hands inih an empty line instead, so inih never cuts
 * a line in two. The first error wins and is reported as "FILE:LINE: key 'K': reason".
 * This file owns that driver, the entry points and freeing; what each key accepts is in
 * config_keys.c, the whole-file checks in config_check.c.
 */
#include "config/config_int.h"
#include "base/util.h"

#include <ini.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES (1 << 20) /* a config is a few KiB; anything bigger is a mistake */

/* Records the first error only: later ones are usually consequences of it. */
void config_error(parse_ctx *ctx, int line, const char *fmt, ...)
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

/* ---- sections (seen by the reader, before inih) ---- */

static void flow_section(parse_ctx *ctx, const char *sname, const char *fname)
{
    rd_config *cfg = ctx->cfg;
    rd_flow_config *f;

    if (!config_flow_name_ok(fname)) {
        config_error(ctx, ctx->line, "section [%s]: a flow name is 1 to 64 of A-Z a-z 0-9 _ . -",
                     sname);
        return;
    }
    for (int i = 0; i < cfg->n_flows; i++) {
        if (strcmp(cfg->flows[i].name, fname) == 0) {
            config_error(ctx, ctx->line, "section [%s]: defined twice (first on line %d)", sname,
                         ctx->flow_line[i]);
            return;
        }
    }
    if (cfg->n_flows >= RD_MAX_FLOWS) {
        config_error(ctx, ctx->line, "section [%s]: at most %d flows are allowed", sname,
                     RD_MAX_FLOWS);
        return;
    }
    f = &cfg->flows[cfg->n_flows];
    f->name = strdup(fname);
    if (f->name == NULL || !config_apply_defaults(ctx, SEC_FLOW, f)) {
        config_error(ctx, ctx->line, "section [%s]: out of memory", sname);
        return;
    }
    ctx->cur_flow = cfg->n_flows;
    ctx->flow_line[cfg->n_flows++] = ctx->line;
}

static void section_begin(parse_ctx *ctx, const char *sname)
{
    ctx->cur_flow = -1;
    if (strncmp(sname, "flow.", 5) == 0) {
        flow_section(ctx, sname, sname + 5);
        return;
    }
    for (int s = 0; s < SEC_FLOW; s++) {
        if (strcmp(sname, config_sections[s].name) != 0)
            continue;
        if (ctx->sec_line[s] != 0)
            config_error(ctx, ctx->line, "section [%s]: appears twice (first on line %d)", sname,
                         ctx->sec_line[s]);
        else
            ctx->sec_line[s] = ctx->line;
        return;
    }
    config_error(ctx, ctx->line,
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
    snprintf(ctx->section, sizeof ctx->section, "%s", line + 1);
    section_begin(ctx, line + 1);
    *p = ']';
}

static int ctx_handler(void *user, const char *section, const char *name, const char *value);

/* The first of chars, or an inline comment (a ';' after a blank), or the end, as inih's
 * find_chars_or_comment finds it. */
static char *find_chars_or_comment(char *s, const char *chars)
{
    bool was_space = false;

    while (*s && !(chars && strchr(chars, *s)) && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static char *rstrip(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A key line longer than inih's buffer (n bytes at p, leading blanks gone), split into name
 * and value as inih splits a line (name [=:] value ; comment) and given to the handler. */
static void long_line(parse_ctx *ctx, const char *p, size_t n)
{
    char *line = strndup(p, n), *end, *value;

    if (line == NULL) {
        config_error(ctx, ctx->line, "out of memory");
        return;
    }
    rstrip(line);
    end = find_chars_or_comment(line, "=:");
    if (*end != '=' && *end != ':') {
        config_error(ctx, ctx->line, "expected key = value or [section]");
        free(line);
        return;
    }
    *end = '\0';
    value = end + 1;
    *find_chars_or_comment(value, NULL) = '\0';
    while (isspace((unsigned char)*value))
        value++;
    ctx_handler(ctx, ctx->section, rstrip(line), rstrip(value));
    free(line);
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
        /* A section header that long names no section (flow names are at most 64
         * characters); a comment is dropped; a key line is parsed here. */
        if (p[0] == '[')
            config_error(ctx, ctx->line, "section: line longer than %d characters", num - 2);
        else if (p[0] != ';' && p[0] != '#')
            long_line(ctx, p, n);
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

/* Maps inih's section string to its table and to the struct its keys write into. inih keeps
 * only INI_MAX_SECTION - 1 bytes of a section name (49 on Debian), less than "flow." and a
 * 64-byte flow name, so for flows the reader's own record of the header it last saw decides;
 * inih's (possibly cut) name must only agree with it. */
static bool resolve_section(parse_ctx *ctx, const char *section, enum section *sec, void **base,
                            int **lines)
{
    if (strncmp(section, "flow.", 5) == 0) {
        int i = ctx->cur_flow;

        if (i < 0 || i >= ctx->cfg->n_flows ||
            strncmp(ctx->cfg->flows[i].name, section + 5, strlen(section + 5)) != 0)
            return false;
        *sec = SEC_FLOW;
        *base = &ctx->cfg->flows[i];
        *lines = ctx->flow_key_line[i];
        return true;
    }
    for (int s = 0; s < SEC_FLOW; s++) {
        if (strcmp(section, config_sections[s].name) == 0) {
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
        config_error(ctx, ctx->line, "key '%s': outside any section", name);
        return 0;
    }
    if (!resolve_section(ctx, section, &sec, &base, &lines)) {
        config_error(ctx, ctx->line, "section [%s]: unknown section", section);
        return 0;
    }
    k = config_key_index(sec, name);
    if (k < 0) {
        config_error(ctx, ctx->line, "key '%s': unknown key in [%s]", name, section);
        return 0;
    }
    if (lines[k] != 0 && !config_sections[sec].keys[k].repeatable) {
        config_error(ctx, ctx->line, "key '%s': given twice (first on line %d)", name, lines[k]);
        return 0;
    }
    if (lines[k] == 0)
        lines[k] = ctx->line;
    if (!config_apply(ctx, &config_sections[sec].keys[k], base, value)) {
        config_error(ctx, ctx->line, "key '%s': %s", name, ctx->reason);
        return 0;
    }
    return 1;
}

/* ---- entry points ---- */

/* A line inih could not tokenise: no '=' (or ':'), or a '[' without its ']'. */
static void syntax_error(parse_ctx *ctx, int line)
{
    config_error(ctx, line, "expected key = value or [section]");
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
    *ctx = (parse_ctx){.cfg = cfg, .name = name, .text = text, .len = len, .cur_flow = -1};
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
    json_decref(f->input_schema);
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
    free(cfg->log_format);
    free(cfg->store_path);
    free(cfg->store_synchronous);
    free(cfg->store_backend);
    free(cfg->store_dsn);
    free(cfg->store_password_file);
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
