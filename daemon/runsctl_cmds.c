/*
 * runsctl_cmds.c: the request/answer commands of runsctl: create, get, list, cancel, approve,
 * deny and wait. wait (and create --wait) holds a `GET /v1/runs/{id}?wait=N` long-poll in a
 * loop, so it costs one request a minute however long the run takes, and stops as soon as the
 * run is terminal or needs a person (the API answers then).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runsctl.h"

/* The single RUN operand of a command; NULL after a usage message. */
static const char *one_run(const char *cmd, int argc, char **argv)
{
    if (argc != 1 || !*argv[0]) {
        fprintf(stderr, "runsctl: %s takes one run id (see runsctl --help)\n", cmd);
        return NULL;
    }
    return argv[0];
}

/* JSON text, @FILE or - (stdin) into a JSON value; NULL after a message. */
static json_t *load_json_arg(const char *what, const char *arg)
{
    json_error_t err;
    json_t *j;
    if (strcmp(arg, "-") == 0) {
        j = json_loadf(stdin, JSON_DECODE_ANY, &err);
    } else if (arg[0] == '@') {
        FILE *f = fopen(arg + 1, "r");
        if (!f) {
            fprintf(stderr, "runsctl: %s: cannot open %s: %m\n", what, arg + 1);
            return NULL;
        }
        j = json_loadf(f, JSON_DECODE_ANY, &err);
        fclose(f);
    } else {
        j = json_loads(arg, JSON_DECODE_ANY, &err);
    }
    if (!j)
        fprintf(stderr, "runsctl: %s is not JSON: %s (line %d, column %d)\n", what, err.text,
                err.line, err.column);
    return j;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int rc_wait_run(rc_http *h, const char *id, double timeout, json_t **final)
{
    char *eid = rc_esc(id), path[256];
    double end = timeout >= 0 ? now_s() + timeout : 0;
    int rc;
    *final = NULL;
    for (;;) {
        long w = 60;
        if (timeout >= 0) {
            double left = end - now_s();
            w = left <= 0 ? 0 : left < 60 ? (long)(left + 0.999) : 60;
        }
        snprintf(path, sizeof path, "/v1/runs/%s?wait=%ld", eid, w);
        json_t *run = NULL;
        rc = rc_call(h, "GET", path, NULL, NULL, w, &run);
        if (rc != 0)
            break;
        json_decref(*final);
        *final = run;
        const char *st = rc_str(run, "status");
        if (rc_status_terminal(st) || rc_status_waiting(st) || (timeout >= 0 && now_s() >= end) ||
            strcmp(st, "created") == 0) {
            rc = rc_exit_for_run(run);
            break;
        }
    }
    free(eid);
    return rc;
}

/* The wait's outcome: the run (--json) on stdout, or its status line on `to`. */
static void report_outcome(FILE *to, const json_t *run, bool json)
{
    char buf[256];
    if (json) {
        rc_print_json(stdout, run);
        return;
    }
    fprintf(to, "%s %s\n", rc_str(run, "id"), rc_status_text(run, buf, sizeof buf));
    if (rc_status_waiting(rc_str(run, "status"))) {
        json_t *pa = json_object_get(run, "pending_action");
        if (strcmp(rc_str(pa, "type"), "approval") == 0)
            fprintf(to, "waiting for approval: %s (runsctl approve|deny %s)\n",
                    rc_str(pa, "prompt"), rc_str(run, "id"));
        else
            fprintf(to, "waiting for authorization%s%s\n", *rc_str(pa, "auth_url") ? ": " : "",
                    rc_str(pa, "auth_url"));
    }
}

/* The body of POST /v1/runs from the options; NULL after a message. */
static json_t *create_body(const char *flow, const rc_opts *o)
{
    json_t *body = json_pack("{s:s}", "flow", flow);
    if (o->input) {
        json_t *in = load_json_arg("--input", o->input);
        if (!in)
            goto fail;
        json_object_set_new(body, "input", in);
    }
    if (o->metadata) {
        json_t *m = load_json_arg("--metadata", o->metadata);
        if (!m)
            goto fail;
        json_object_set_new(body, "metadata", m);
    }
    if (o->limit > 0)
        json_object_set_new(body, "limit", json_integer(o->limit));
    if (o->preview)
        json_object_set_new(body, "preview", json_true());
    if (o->no_start)
        json_object_set_new(body, "start", json_false());
    return body;
fail:
    json_decref(body);
    return NULL;
}

int rc_cmd_create(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    if (argc != 1 || !*argv[0]) {
        fprintf(stderr, "runsctl: create takes one flow name (see runsctl --help)\n");
        return RC_USAGE;
    }
    if (o->no_start && o->wait) {
        fprintf(stderr, "runsctl: --wait with --no-start would wait forever\n");
        return RC_USAGE;
    }
    json_t *body = create_body(argv[0], o), *run = NULL;
    if (!body)
        return RC_USAGE;
    char idem[400] = "";
    if (o->idem_key)
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", o->idem_key);
    int rc = rc_call(h, "POST", "/v1/runs", body, o->idem_key ? idem : NULL, 0, &run);
    json_decref(body);
    if (rc != 0)
        return rc;
    if (!o->wait) {
        if (o->json)
            rc_print_json(stdout, run);
        else
            printf("%s\n", rc_str(run, "id"));
        json_decref(run);
        return RC_OK;
    }
    /* The id first, so a script has it even while the run goes on. */
    if (!o->json) {
        printf("%s\n", rc_str(run, "id"));
        fflush(stdout);
    }
    json_t *final = NULL;
    rc = rc_wait_run(h, rc_str(run, "id"), o->timeout, &final);
    if (final)
        report_outcome(o->json ? stdout : stderr, final, o->json);
    json_decref(final);
    json_decref(run);
    return rc;
}

int rc_cmd_wait(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    const char *id = one_run("wait", argc, argv);
    if (!id)
        return RC_USAGE;
    json_t *final = NULL;
    int rc = rc_wait_run(h, id, o->timeout, &final);
    if (final)
        report_outcome(stdout, final, o->json);
    json_decref(final);
    return rc;
}

int rc_cmd_get(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    const char *id = one_run("get", argc, argv);
    if (!id)
        return RC_USAGE;
    char *eid = rc_esc(id), path[256];
    snprintf(path, sizeof path, "/v1/runs/%s", eid);
    free(eid);
    json_t *run = NULL;
    int rc = rc_call(h, "GET", path, NULL, NULL, 0, &run);
    if (rc == 0) {
        if (o->json)
            rc_print_json(stdout, run);
        else
            rc_print_run(stdout, run);
    }
    json_decref(run);
    return rc;
}

int rc_cmd_cancel(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    const char *id = one_run("cancel", argc, argv);
    if (!id)
        return RC_USAGE;
    char *eid = rc_esc(id), path[256], buf[256];
    snprintf(path, sizeof path, "/v1/runs/%s/cancel", eid);
    free(eid);
    json_t *run = NULL, *empty = json_object();
    int rc = rc_call(h, "POST", path, empty, NULL, 0, &run);
    json_decref(empty);
    if (rc == 0) {
        if (o->json)
            rc_print_json(stdout, run);
        else
            printf("%s %s\n", rc_str(run, "id"), rc_status_text(run, buf, sizeof buf));
    }
    json_decref(run);
    return rc;
}

int rc_answer(rc_http *h, const char *id, bool approve, const char *comment, bool quiet)
{
    char *eid = rc_esc(id), path[256], buf[256];
    snprintf(path, sizeof path, "/v1/runs/%s/%s", eid, approve ? "approve" : "deny");
    free(eid);
    json_t *body = comment ? json_pack("{s:s}", "comment", comment) : json_object(), *out = NULL;
    int rc = rc_call(h, "POST", path, body, NULL, 0, &out);
    json_decref(body);
    if (rc == 0 && !quiet)
        printf("%s %s %s\n", id, rc_str(out, "decision"),
               rc_status_text(json_object_get(out, "run"), buf, sizeof buf));
    json_decref(out);
    return rc;
}

static int answer_cmd(rc_http *h, const rc_opts *o, int argc, char **argv, bool approve)
{
    const char *id = one_run(approve ? "approve" : "deny", argc, argv);
    if (!id)
        return RC_USAGE;
    if (!o->json)
        return rc_answer(h, id, approve, o->comment, false);
    char *eid = rc_esc(id), path[256];
    snprintf(path, sizeof path, "/v1/runs/%s/%s", eid, approve ? "approve" : "deny");
    free(eid);
    json_t *body = o->comment ? json_pack("{s:s}", "comment", o->comment) : json_object();
    json_t *out = NULL;
    int rc = rc_call(h, "POST", path, body, NULL, 0, &out);
    if (rc == 0)
        rc_print_json(stdout, out);
    json_decref(body);
    json_decref(out);
    return rc;
}

int rc_cmd_approve(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    return answer_cmd(h, o, argc, argv, true);
}

int rc_cmd_deny(rc_http *h, const rc_opts *o, int argc, char **argv)
{
    return answer_cmd(h, o, argc, argv, false);
}
