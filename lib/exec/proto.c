/*
 * proto.c: the worker protocol of SPEC section 2. Two independent halves live here: a bounded
 * line splitter over an evbuffer (so a misbehaving worker can never make the daemon buffer an
 * unbounded line), and a strict parser that turns one line into an rd_msg whose fields have
 * already been type-checked, so the engine can trust them without re-validating.
 *
 * Like the other reusable parts this file includes only its own header, jansson, libevent's
 * buffer API and libc.
 */
#include "exec/proto.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* proto.h documents RD_EINVAL but does not include util.h, where the shared codes live; keep
 * this module standalone and spell the value the same way (test_proto checks they agree). */
#ifndef RD_EINVAL
#define RD_EINVAL -3
#endif

/* Error messages quote at most this many bytes of an offending value, so a hostile worker
 * cannot make one bad line produce a huge or multi-line log entry. */
#define QUOTE_MAX 64
#define URL_MAX 4096

static const char *const msg_names[RD_MSG__COUNT] = {
#define RD_X_NAME(e, n) [RD_MSG_##e] = n,
    RD_MSG_LIST(RD_X_NAME)
#undef RD_X_NAME
};

const char *rd_msg_type_name(rd_msg_type t)
{
    if ((unsigned)t >= RD_MSG__COUNT)
        return "(invalid)";
    return msg_names[t];
}

void rd_msg_clear(rd_msg *m)
{
    if (!m)
        return;
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

/* ---- error reporting ------------------------------------------------------------------- */

/* Copies at most QUOTE_MAX bytes of s into out, replacing anything that is not printable
 * ASCII (control bytes, UTF-8 sequences, invalid bytes) with '?', so the message stays one
 * readable line whatever the worker sent. out must hold QUOTE_MAX + 4 bytes. */
static void sanitize(const char *s, size_t n, char *out)
{
    size_t k = n < QUOTE_MAX ? n : QUOTE_MAX;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > QUOTE_MAX) {
        memcpy(out + k, "...", 4);
        return;
    }
    out[k] = '\0';
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return RD_EINVAL;
}

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

/* ---- field extraction ------------------------------------------------------------------ */

/* What a per-type parser needs to look up fields and word its errors. */
typedef struct pctx {
    json_t *root;
    const char *type; /* wire name, prefixed to every field error */
    char *err;
    size_t errlen;
} pctx;

/* Returns the value of key, or NULL when it is absent. An explicit null counts as absent
 * for optional fields: workers written in Python or JS commonly emit None/null for "not
 * given", and rejecting those would buy nothing. A required field that is null is reported
 * as having the wrong type by the caller. */
static json_t *lookup(pctx *c, const char *key, bool required)
{
    json_t *v = json_object_get(c->root, key);
    if (v && json_is_null(v) && !required)
        return NULL;
    return v;
}

static int missing(pctx *c, const char *key)
{
    return fail(c->err, c->errlen, "%s: missing \"%s\"", c->type, key);
}

static int wrong_type(pctx *c, const char *key, const char *want, const json_t *v)
{
    return fail(c->err, c->errlen, "%s: \"%s\" must be %s (got %s)", c->type, key, want,
                json_type_name(v));
}

/* A string field. *out borrows from root; it is left NULL when an optional field is absent.
 * Jansson refuses "\u0000" by default, so the result is always a proper C string. */
static int field_str(pctx *c, const char *key, bool required, const char **out)
{
    json_t *v = lookup(c, key, required);
    if (!v)
        return required ? missing(c, key) : 0;
    if (!json_is_string(v))
        return wrong_type(c, key, "a string", v);
    *out = json_string_value(v);
    return 0;
}

/* An integer field >= min. Reals are refused even when integral ("3.0"): the protocol says
 * integer, and accepting them would make counters depend on float formatting. */
static int field_int(pctx *c, const char *key, int64_t min, bool required, int64_t *out, bool *has)
{
    json_t *v = lookup(c, key, required);
    if (!v)
        return required ? missing(c, key) : 0;
    if (!json_is_integer(v)) {
        char want[48];
        snprintf(want, sizeof(want), "an integer >= %lld", (long long)min);
        return wrong_type(c, key, want, v);
    }
    json_int_t n = json_integer_value(v);
    if (n < min)
        return fail(c->err, c->errlen, "%s: \"%s\" must be >= %lld (got %lld)", c->type, key,
                    (long long)min, (long long)n);
    *out = (int64_t)n;
    if (has)
        *has = true;
    return 0;
}

/* An object field; optional ones are left NULL when absent. */
static int field_obj(pctx *c, const char *key, bool required, json_t **out)
{
    json_t *v = lookup(c, key, required);
    if (!v)
        return required ? missing(c, key) : 0;
    if (!json_is_object(v))
        return wrong_type(c, key, "an object", v);
    *out = v;
    return 0;
}

/* A required field of any JSON type, null included (a null cursor or result is a value). */
static int field_any(pctx *c, const char *key, json_t **out)
{
    json_t *v = json_object_get(c->root, key);
    if (!v)
        return missing(c, key);
    *out = v;
    return 0;
}

/* A string field restricted to the NULL-terminated list allowed. *out is set to the matching
 * entry of allowed (static storage), or to dflt when an optional field is absent. */
static int field_enum(pctx *c, const char *key, const char *const *allowed, bool required,
                      const char *dflt, const char **out)
{
    const char *s = NULL;
    if (field_str(c, key, required, &s) < 0)
        return RD_EINVAL;
    if (!s) {
        *out = dflt;
        return 0;
    }
    char list[128] = "", q[QUOTE_MAX + 4];
    size_t used = 0;
    for (size_t i = 0; allowed[i]; i++) {
        if (strcmp(s, allowed[i]) == 0) {
            *out = allowed[i];
            return 0;
        }
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? "|" : "", allowed[i]);
        if (w > 0 && (size_t)w < sizeof(list) - used)
            used += (size_t)w;
    }
    sanitize(s, strlen(s), q);
    return fail(c->err, c->errlen, "%s: \"%s\" must be one of %s (got \"%s\")", c->type, key, list,
                q);
}

/* ---- per-type validation --------------------------------------------------------------- */

/* Each parser fills the fields its type defines (see proto.h) and returns 0 or RD_EINVAL
 * with the reason already in c->err. */
typedef int (*msg_parser)(pctx *c, rd_msg *m);

static int parse_step(pctx *c, rd_msg *m)
{
    static const char *const states[] = {"started", "finished", NULL};
    if (field_str(c, "name", true, &m->name) < 0)
        return RD_EINVAL;
    if (m->name[0] == '\0')
        return fail(c->err, c->errlen, "step: \"name\" must not be empty");
    if (field_enum(c, "state", states, true, NULL, &m->state) < 0)
        return RD_EINVAL;
    return field_int(c, "total", 0, false, &m->total, &m->has_total);
}

static int parse_progress(pctx *c, rd_msg *m)
{
    if (field_int(c, "done", 0, true, &m->done, NULL) < 0 ||
        field_int(c, "total", 0, false, &m->total, &m->has_total) < 0)
        return RD_EINVAL;
    return field_str(c, "message", false, &m->message);
}

static int parse_log(pctx *c, rd_msg *m)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    if (field_enum(c, "level", levels, false, "info", &m->level) < 0)
        return RD_EINVAL;
    return field_str(c, "message", true, &m->message);
}

static int parse_item(pctx *c, rd_msg *m)
{
    return field_obj(c, "data", true, &m->data);
}

static int parse_item_error(pctx *c, rd_msg *m)
{
    if (field_str(c, "error", true, &m->message) < 0)
        return RD_EINVAL;
    return field_obj(c, "data", false, &m->data);
}

static int parse_candidate(pctx *c, rd_msg *m)
{
    json_t *v = json_object_get(c->root, "matched");
    if (!v)
        return missing(c, "matched");
    if (!json_is_boolean(v))
        return wrong_type(c, "matched", "a boolean", v);
    m->matched = json_is_true(v);
    return 0;
}

static int parse_checkpoint(pctx *c, rd_msg *m)
{
    return field_any(c, "cursor", &m->cursor);
}

/* The URL is shown to a human and may end up in a Location header, so besides the scheme
 * it must be bounded and free of spaces and control bytes (no header splitting). */
static int parse_auth_required(pctx *c, rd_msg *m)
{
    if (field_str(c, "url", true, &m->url) < 0 || field_str(c, "provider", false, &m->provider) < 0)
        return RD_EINVAL;
    size_t n = strlen(m->url), skip = 0;
    if (strncasecmp(m->url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(m->url, "https://", 8) == 0)
        skip = 8;
    char q[QUOTE_MAX + 4];
    sanitize(m->url, n, q);
    if (skip == 0 || n == skip)
        return fail(c->err, c->errlen, "auth_required: \"url\" must be an http(s) URL (got \"%s\")",
                    q);
    if (n > URL_MAX)
        return fail(c->err, c->errlen, "auth_required: \"url\" longer than %d bytes", URL_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)m->url[i];
        if (ch <= 0x20 || ch == 0x7f)
            return fail(c->err, c->errlen,
                        "auth_required: \"url\" contains a space or control byte (got \"%s\")", q);
    }
    return 0;
}

static int parse_approval_required(pctx *c, rd_msg *m)
{
    if (field_str(c, "prompt", true, &m->message) < 0)
        return RD_EINVAL;
    return field_obj(c, "details", false, &m->details);
}

static int parse_enrichment(pctx *c, rd_msg *m)
{
    if (field_int(c, "seq", 1, true, &m->seq, NULL) < 0)
        return RD_EINVAL;
    return field_obj(c, "data", true, &m->data);
}

static int parse_result(pctx *c, rd_msg *m)
{
    return field_any(c, "data", &m->data);
}

static int parse_done(pctx *c, rd_msg *m)
{
    static const char *const reasons[] = {"completed", "candidates_exhausted", "low_match_rate",
                                          NULL};
    return field_enum(c, "reason", reasons, false, NULL, &m->reason);
}

static int parse_error(pctx *c, rd_msg *m)
{
    return field_str(c, "message", true, &m->message);
}

static const msg_parser parsers[RD_MSG__COUNT] = {
    [RD_MSG_STEP] = parse_step,
    [RD_MSG_PROGRESS] = parse_progress,
    [RD_MSG_LOG] = parse_log,
    [RD_MSG_ITEM] = parse_item,
    [RD_MSG_ITEM_ERROR] = parse_item_error,
    [RD_MSG_CANDIDATE] = parse_candidate,
    [RD_MSG_CHECKPOINT] = parse_checkpoint,
    [RD_MSG_AUTH_REQUIRED] = parse_auth_required,
    [RD_MSG_APPROVAL_REQUIRED] = parse_approval_required,
    [RD_MSG_ENRICHMENT] = parse_enrichment,
    [RD_MSG_RESULT] = parse_result,
    [RD_MSG_DONE] = parse_done,
    [RD_MSG_ERROR] = parse_error,
};

/* ---- parsing a line -------------------------------------------------------------------- */

/* Refuses what jansson would either accept or describe poorly: blank lines (a worker's stray
 * newline deserves a clearer message than "unexpected token") and raw NUL bytes. */
static int precheck(const char *line, size_t len, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r' || line[i] == '\n'))
        i++;
    if (i == len)
        return fail(err, errlen, "empty line");
    if (memchr(line + i, '\0', len - i))
        return fail(err, errlen, "NUL byte in line");
    return 0;
}

/* Finds the message type. "type" is expected first but accepted anywhere in the object. */
static int resolve_type(json_t *root, rd_msg_type *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, "type");
    if (!v)
        return fail(err, errlen, "missing \"type\"");
    if (!json_is_string(v))
        return fail(err, errlen, "\"type\" must be a string (got %s)", json_type_name(v));
    const char *s = json_string_value(v);
    for (int t = 0; t < RD_MSG__COUNT; t++) {
        if (strcmp(s, msg_names[t]) == 0) {
            *out = (rd_msg_type)t;
            return 0;
        }
    }
    char q[QUOTE_MAX + 4];
    sanitize(s, json_string_length(v), q);
    return fail(err, errlen, "unknown type \"%s\"", q);
}

int rd_proto_parse(const char *line, size_t len, rd_msg *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (err && errlen > 0)
        err[0] = '\0';
    if (!line && len > 0)
        return fail(err, errlen, "no line");
    /* A CRLF worker is not an error. Jansson would skip the '\r' as whitespace anyway; it is
     * dropped here so that the contract does not rest on that. */
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (precheck(line, len, err, errlen) < 0)
        return RD_EINVAL;

    /* JSON_DECODE_ANY so that a bare scalar gets "not an object" rather than jansson's less
     * helpful wording. Jansson validates UTF-8, refuses "\u0000" and caps nesting depth
     * (JSON_PARSER_MAX_DEPTH, 2048), so a hostile line cannot exhaust the stack. */
    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        char q[QUOTE_MAX + 4];
        sanitize(jerr.text, strnlen(jerr.text, sizeof(jerr.text)), q);
        return fail(err, errlen, "invalid JSON at byte %d: %s", jerr.position, q);
    }
    if (!json_is_object(root)) {
        int rc = fail(err, errlen, "not a JSON object (got %s)", json_type_name(root));
        json_decref(root);
        return rc;
    }
    rd_msg_type t = RD_MSG__COUNT; /* set by resolve_type on success */
    if (resolve_type(root, &t, err, errlen) < 0) {
        json_decref(root);
        return RD_EINVAL;
    }
    pctx c = {.root = root, .type = msg_names[t], .err = err, .errlen = errlen};
    out->type = t;
    if (parsers[t](&c, out) < 0) {
        json_decref(root);
        memset(out, 0, sizeof(*out));
        return RD_EINVAL;
    }
    out->root = root;
    return 0;
}

/* ---- line splitting -------------------------------------------------------------------- */

/* Position of the first '\n' among the first window bytes of in, or -1. The end bound is what
 * makes a newline beyond max count as "not found", i.e. the line as overlong. */
static ev_ssize_t find_newline(struct evbuffer *in, size_t window)
{
    struct evbuffer_ptr end;
    if (evbuffer_ptr_set(in, &end, window, EVBUFFER_PTR_SET) < 0)
        return -1;
    struct evbuffer_ptr p = evbuffer_search_range(in, "\n", 1, NULL, &end);
    return p.pos;
}

/* Discards the rest of an overlong line. Returns true when its newline was found (and
 * drained), so the caller may go on with the next line; otherwise everything buffered is
 * dropped. At EOF the line ends with the stream, so skipping stops either way. */
static bool skip_rest(rd_linereader *lr, struct evbuffer *in, bool at_eof)
{
    struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
    if (p.pos >= 0) {
        evbuffer_drain(in, (size_t)p.pos + 1);
        lr->skipping = false;
        return true;
    }
    evbuffer_drain(in, evbuffer_get_length(in));
    if (at_eof)
        lr->skipping = false;
    return false;
}

/* Moves n bytes plus `drop` newline bytes out of in into a fresh NUL-terminated string. The
 * newline lands in the terminator's slot, so one copy does both. There is no out-of-memory
 * result in the API; the line is dropped and reported as RD_LINE_OVERLONG ("a line was
 * dropped") so the buffer stays bounded and the caller's loop still makes progress. */
static int take_line(struct evbuffer *in, size_t n, size_t drop, char **line, size_t *len)
{
    char *buf = malloc(n + 1);
    if (!buf) {
        evbuffer_drain(in, n + drop);
        return RD_LINE_OVERLONG;
    }
    /* Cannot come up short: the caller has seen at least n + drop bytes in the buffer. */
    evbuffer_remove(in, buf, n + drop);
    buf[n] = '\0';
    *line = buf;
    *len = n;
    return RD_LINE_OK;
}

int rd_linereader_next(rd_linereader *lr, struct evbuffer *in, bool at_eof, char **line,
                       size_t *len)
{
    *line = NULL;
    *len = 0;
    if (lr->skipping && !skip_rest(lr, in, at_eof))
        return RD_LINE_NONE;

    /* A newline beyond position max would end an overlong line, so only max + 1 bytes are
     * ever searched. Without a saved scan offset (rd_linereader has none) a partial line is
     * rescanned on each call: bounded by max per call, O(max^2 / chunk) per line at worst. */
    size_t avail = evbuffer_get_length(in);
    size_t window = avail <= lr->max ? avail : lr->max + 1;
    ev_ssize_t nl = find_newline(in, window);
    if (nl >= 0)
        return take_line(in, (size_t)nl, 1, line, len);
    if (avail > lr->max) {
        evbuffer_drain(in, lr->max + 1);
        lr->skipping = true;
        skip_rest(lr, in, at_eof);
        return RD_LINE_OVERLONG;
    }
    if (at_eof && avail > 0)
        return take_line(in, avail, 0, line, len);
    return RD_LINE_NONE;
}
