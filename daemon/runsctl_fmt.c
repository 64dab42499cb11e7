/*
 * runsctl_fmt.c: how runsctl writes runs and events for people: one line per event (the
 * `events` command and `watch` without a terminal print the same lines, so a piped watch is a
 * log a script can grep), and the key/value view of one run (`get`). JSON output is the
 * server's objects unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "runsctl.h"

const char *rc_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

char *rc_compact(const json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    return s ? s : strdup("null");
}

void rc_print_json(FILE *f, const json_t *j)
{
    json_dumpf(j, f, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', f);
}

const char *rc_status_text(const json_t *run, char *buf, size_t n)
{
    const char *why = rc_str(run, "termination_reason");
    snprintf(buf, n, *why ? "%s (%s)" : "%s", rc_str(run, "status"), why);
    return buf;
}

/* "done/total (P%)" or "done" of a progress object; "" for none. */
static void progress_text(const json_t *p, char *buf, size_t n)
{
    json_t *done = json_object_get(p, "done"), *total = json_object_get(p, "total");
    const char *msg = rc_str(p, "message");
    *buf = 0;
    if (!json_is_number(done))
        return;
    double d = json_number_value(done), t = json_number_value(total);
    if (json_is_number(total) && t > 0)
        snprintf(buf, n, "%g/%g (%d%%)%s%s", d, t, (int)(100.0 * d / t), *msg ? " " : "", msg);
    else
        snprintf(buf, n, "%g%s%s", d, *msg ? " " : "", msg);
}

/* At most max bytes of s, cut on a UTF-8 boundary, with "..." when cut. malloc'd. */
static char *clip(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return s;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    strcpy(s + max, "...");
    return s;
}

static char *pending_text(const json_t *pa, const char *run_id)
{
    char *out = NULL;
    if (!json_is_object(pa))
        return strdup("");
    if (strcmp(rc_str(pa, "type"), "auth") == 0) {
        const char *u = rc_str(pa, "auth_url");
        if (asprintf(&out, "authorization needed%s%s%s%s", *rc_str(pa, "provider") ? " by " : "",
                     rc_str(pa, "provider"), *u ? ": open " : "", u) < 0)
            out = NULL;
        return out;
    }
    if (asprintf(&out, "approval needed: %s (runsctl approve %s | runsctl deny %s)",
                 rc_str(pa, "prompt"), run_id, run_id) < 0)
        out = NULL;
    return out;
}

char *rc_event_summary(const char *type, const json_t *data)
{
    char buf[512], *out = NULL, *c = NULL;
    const char *t = strncmp(type, "run.", 4) == 0 ? type + 4 : type;
    if (strcmp(t, "status") == 0) {
        const char *why = rc_str(data, "termination_reason");
        snprintf(buf, sizeof buf, "%s%s%s", rc_str(data, "status"), *why ? " " : "", why);
    } else if (strcmp(t, "created") == 0 || strcmp(t, "end") == 0) {
        json_t *run = json_object_get(data, "run");
        char st[128];
        snprintf(buf, sizeof buf, "%s flow=%s", rc_status_text(run, st, sizeof st),
                 rc_str(run, "flow"));
    } else if (strcmp(t, "step") == 0) {
        snprintf(buf, sizeof buf, "%s %s", rc_str(data, "name"), rc_str(data, "state"));
    } else if (strcmp(t, "progress") == 0) {
        progress_text(data, buf, sizeof buf);
    } else if (strcmp(t, "log") == 0) {
        snprintf(buf, sizeof buf, "%s %s", rc_str(data, "level"), rc_str(data, "message"));
    } else if (strcmp(t, "item") == 0 || strcmp(t, "item_error") == 0 ||
               strcmp(t, "item_enriched") == 0) {
        c = rc_compact(json_object_get(data, "data"));
        const char *err = rc_str(data, "error");
        snprintf(buf, sizeof buf, "#%lld %s%s%s", json_integer_value(json_object_get(data, "seq")),
                 err, *err ? " " : "", c);
    } else if (strcmp(t, "approval_required") == 0 || strcmp(t, "auth_required") == 0) {
        return pending_text(data, "RUN");
    } else if (strcmp(t, "result") == 0) {
        c = rc_compact(json_object_get(data, "data"));
        snprintf(buf, sizeof buf, "%s", c);
    } else {
        c = rc_compact(data);
        snprintf(buf, sizeof buf, "%s", c);
    }
    free(c);
    out = strdup(buf);
    return out ? clip(out, 300) : NULL;
}

void rc_print_event_line(FILE *f, const json_t *ev)
{
    const char *type = rc_str(ev, "type"), *run = rc_str(ev, "run_id");
    json_t *data = json_object_get(ev, "data");
    char *s;
    if (strcmp(type, "run.approval_required") == 0 || strcmp(type, "run.auth_required") == 0)
        s = pending_text(data, run);
    else
        s = rc_event_summary(type, data);
    fprintf(f, "%lld %s %s %s %s\n", json_integer_value(json_object_get(ev, "id")),
            rc_str(ev, "timestamp"), *run ? run : "-", type, s ? s : "");
    free(s);
}

static void kv(FILE *f, const char *k, const char *v)
{
    if (v && *v)
        fprintf(f, "%-10s %s\n", k, v);
}

static void print_steps(FILE *f, const json_t *run)
{
    json_t *steps = json_object_get(run, "steps"), *s;
    size_t i;
    if (json_array_size(steps) == 0)
        return;
    fprintf(f, "%-10s %lld/%zu finished\n",
            "steps:", json_integer_value(json_object_get(run, "steps_finished")),
            json_array_size(steps));
    json_array_foreach(steps, i, s)
        fprintf(f, "  %-8s %s\n", rc_str(s, "state"), rc_str(s, "name"));
}

void rc_print_run(FILE *f, const json_t *run)
{
    char buf[512];
    json_t *counts = json_object_get(run, "counts");
    kv(f, "id:", rc_str(run, "id"));
    kv(f, "flow:", rc_str(run, "flow"));
    kv(f, "status:", rc_status_text(run, buf, sizeof buf));
    kv(f, "created:", rc_str(run, "created_at"));
    kv(f, "started:", rc_str(run, "started_at"));
    kv(f, "finished:", rc_str(run, "finished_at"));
    if (json_is_integer(json_object_get(run, "limit"))) {
        snprintf(buf, sizeof buf, "%lld", json_integer_value(json_object_get(run, "limit")));
        kv(f, "limit:", buf);
    }
    print_steps(f, run);
    progress_text(json_object_get(run, "progress"), buf, sizeof buf);
    kv(f, "progress:", buf);
    snprintf(buf, sizeof buf, "%lld ok, %lld errors",
             json_integer_value(json_object_get(counts, "items")),
             json_integer_value(json_object_get(counts, "item_errors")));
    kv(f, "items:", buf);
    char *p = pending_text(json_object_get(run, "pending_action"), rc_str(run, "id"));
    kv(f, "waiting:", p);
    free(p);
    json_t *err = json_object_get(run, "error");
    if (err && !json_is_null(err)) {
        char *e = json_is_string(err) ? strdup(json_string_value(err)) : rc_compact(err);
        kv(f, "error:", e);
        free(e);
    }
    json_t *res = json_object_get(run, "result");
    if (res && !json_is_null(res)) {
        char *r = rc_compact(res);
        kv(f, "result:", r);
        free(r);
    }
}
