/*
 * approvals.c: the HTTP side of approvals and authorizations. Links in mail and chat get
 * prefetched by scanners, so a browser's GET of an approval link only shows a confirmation
 * page whose button POSTs; a non-browser client's GET acts (the seed's documented behaviour);
 * HEAD never acts. The OAuth callback answers browsers with a page that says the window can
 * be closed. Codes never reach a log or an event.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "base/util.h"

/* Answers now: JSON, or a small page for a browser. */
static void reply_now(rd_req *req, int rc, json_t *out, const rd_apierr *e, bool html,
                      const char *done_msg)
{
    if (!html) {
        if (rc == 0)
            rd_reply_json(req, 200, out);
        else
            rd_reply_apierr(req, e);
        return;
    }
    if (rc == 0) {
        char *m = rd_html_escape(done_msg);
        char body[600];
        snprintf(body, sizeof body, "<p>%s</p><p>You can close this window.</p>", m ? m : "");
        free(m);
        rd_api_page(req, 200, "Done", body);
        json_decref(out);
    } else {
        char *m = rd_html_escape(e->message);
        char body[800];
        snprintf(body, sizeof body, "<p>%s</p><p><small>%s</small></p>", m ? m : "", e->code);
        free(m);
        rd_api_page(req, e->http,
                    e->http == 410   ? "Link already used or expired"
                    : e->http == 503 ? "Try again"
                                     : "Link not valid",
                    body);
    }
}

/* An answer waiting for its commit. */
typedef struct answered {
    json_t *out;
    bool html;
    const char *done_msg; /* static */
} answered;

static void answered_drop(void *arg)
{
    answered *an = arg;
    json_decref(an->out);
    free(an);
}

static void answered_then(rd_req *req, void *arg, int rc)
{
    answered *an = arg;
    rd_apierr e = {0};
    if (rc != 0)
        rd_fail_store(&e);
    reply_now(req, rc, rc == 0 ? an->out : NULL, &e, an->html, an->done_msg);
    if (rc == 0)
        an->out = NULL; /* the reply took it */
    answered_drop(an);
}

/* The result of an answer: an error now; a success once the answer is committed (its reply
 * must not acknowledge what the store could lose). */
static void reply_result(rd_api *a, rd_req *req, int rc, json_t *out, const rd_apierr *e, bool html,
                         const char *done_msg)
{
    answered *an = rc == 0 ? malloc(sizeof *an) : NULL;
    if (!an) {
        if (rc == 0) {
            json_decref(out);
            rd_reply_error(req, 500, "internal", "out of memory");
            return;
        }
        reply_now(req, rc, out, e, html, done_msg);
        return;
    }
    *an = (answered){.out = out, .html = html, .done_msg = done_msg};
    rd_api_after_commit(a, req, answered_then, answered_drop, an);
}

/* GET/HEAD /v1/runs/approval?token=T */
static void approval_get(rd_req *req, rd_api *a)
{
    rd_engine *eng = a->eng;
    const char *token = rd_req_query(req, "token");
    if (!token || !*token) {
        rd_reply_error(req, 400, "missing_token", "the 'token' query parameter is required");
        return;
    }
    json_t *info = NULL;
    rd_apierr e;
    int rc = rd_engine_approval_peek(eng, token, &info, &e);
    if (req->method == htp_method_HEAD) {
        /* HEAD never acts: it only tells whether the link is live. */
        json_decref(info);
        rd_reply_raw(req, rc == 0 ? 200 : e.http, "text/html; charset=utf-8", NULL, 0);
        return;
    }
    if (!rd_api_wants_html(req)) {
        json_decref(info);
        json_t *out = NULL;
        rc = rc == 0 ? rd_engine_approval_by_token(eng, token, NULL, &out, &e) : rc;
        reply_result(a, req, rc, out, &e, false, NULL);
        return;
    }
    if (rc != 0) {
        reply_result(a, req, rc, NULL, &e, true, NULL);
        return;
    }
    bool approve = strcmp(json_string_value(json_object_get(info, "decision")), "approve") == 0;
    char *prompt = rd_html_escape(json_string_value(json_object_get(info, "prompt")));
    char *details_txt =
        json_dumps(json_object_get(info, "details"), JSON_INDENT(2) | JSON_ENCODE_ANY);
    char *details = rd_html_escape(details_txt ? details_txt : "null");
    char *tok = rd_html_escape(token);
    char *flow = rd_html_escape(json_string_value(json_object_get(info, "flow")));
    size_t cap = 2048 + (prompt ? strlen(prompt) : 0) + (details ? strlen(details) : 0);
    char *body = malloc(cap);
    if (body && prompt && details && tok && flow)
        snprintf(body, cap,
                 "<p>Flow <b>%s</b> asks:</p><blockquote>%s</blockquote><pre>%s</pre>"
                 "<form method=\"post\" action=\"/v1/runs/approval\">"
                 "<input type=\"hidden\" name=\"token\" value=\"%s\">"
                 "<p><label>Comment (optional)<br><input name=\"comment\" size=\"40\" "
                 "maxlength=\"500\"></label></p>"
                 "<button type=\"submit\">%s</button></form>",
                 flow, prompt, details, tok, approve ? "Approve" : "Deny");
    rd_api_page(req, 200, approve ? "Approve this request?" : "Deny this request?",
                body ? body : "");
    free(body);
    free(prompt);
    free(details_txt);
    free(details);
    free(tok);
    free(flow);
    json_decref(info);
}

/* POST /v1/runs/approval: {token, comment?} as JSON or a form. */
static void approval_post(rd_req *req, rd_api *a)
{
    rd_engine *eng = a->eng;
    const char *ctype = rd_req_header(req, "Content-Type");
    bool form = ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0;
    const char *token = NULL, *comment = NULL;
    json_t *body = NULL;
    char *raw = NULL;
    if (form) {
        size_t len;
        raw = rd_req_body(req, &len);
        if (!raw)
            return;
        const char *k[8], *v[8];
        int n = rd_form_parse(raw, k, v, 8);
        for (int i = 0; i < n; i++) {
            if (strcmp(k[i], "token") == 0)
                token = v[i];
            else if (strcmp(k[i], "comment") == 0)
                comment = v[i];
        }
    } else {
        if (rd_req_json_body(req, &body) != 0)
            return;
        token = json_string_value(json_object_get(body, "token"));
        comment = json_string_value(json_object_get(body, "comment"));
    }
    if (!token || !*token) {
        rd_reply_error(req, 400, "missing_token", "'token' is required");
    } else if (comment && strlen(comment) > 2000) {
        rd_reply_error(req, 422, "invalid_comment", "'comment' is at most 2000 bytes");
    } else {
        json_t *out = NULL;
        rd_apierr e;
        int rc =
            rd_engine_approval_by_token(eng, token, comment && *comment ? comment : NULL, &out, &e);
        const char *d = rc == 0 ? json_string_value(json_object_get(out, "decision")) : "";
        reply_result(a, req, rc, out, &e, form || rd_api_wants_html(req),
                     d && strcmp(d, "approved") == 0 ? "The request was approved."
                                                     : "The request was denied.");
    }
    json_decref(body);
    free(raw);
}

/* POST /v1/runs/{id}/approve|deny {comment?} */
static void approve_by_id(rd_req *req, rd_api *a, const char *id, bool approve)
{
    rd_engine *eng = a->eng;
    json_t *body;
    if (rd_req_json_body(req, &body) != 0)
        return;
    json_t *c = json_object_get(body, "comment");
    if (c && !json_is_null(c) && (!json_is_string(c) || json_string_length(c) > 2000)) {
        json_decref(body);
        rd_reply_error(req, 422, "invalid_comment",
                       "'comment' must be a string of at most 2000 bytes");
        return;
    }
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_approval_by_id(eng, id, approve, json_string_value(c), &out, &e);
    json_decref(body);
    reply_result(a, req, rc, out, &e, false, NULL);
}

/* GET /v1/auth/callback?state=S&code=C (or error=E) */
static void auth_callback(rd_req *req, rd_api *a)
{
    rd_engine *eng = a->eng;
    const char *state = rd_req_query(req, "state"), *code = rd_req_query(req, "code"),
               *error = rd_req_query(req, "error");
    bool html = rd_api_wants_html(req);
    rd_apierr e = {0};
    int rc = -1;
    json_t *out = NULL;
    if (!state || !*state)
        rd_fail(&e, 400, "missing_state", "the 'state' query parameter is required");
    else if ((!code || !*code) && (!error || !*error))
        rd_fail(&e, 400, "missing_code", "the callback carries neither 'code' nor 'error'");
    else if (code && strlen(code) > 4096)
        rd_fail(&e, 400, "invalid_code", "the code is too long");
    else
        rc = rd_engine_auth_by_state(eng, state, code && *code ? code : NULL,
                                     code && *code ? NULL : error, &out, &e);
    reply_result(a, req, rc, out, &e, html,
                 code && *code ? "Authorization complete." : "Authorization was declined.");
}

/* POST /v1/runs/{id}/auth {code} | {error} */
static void auth_by_id(rd_req *req, rd_api *a, const char *id)
{
    rd_engine *eng = a->eng;
    json_t *body;
    if (rd_req_json_body(req, &body) != 0)
        return;
    const char *code = json_string_value(json_object_get(body, "code"));
    const char *error = json_string_value(json_object_get(body, "error"));
    if ((!code || !*code) == (!error || !*error)) {
        json_decref(body);
        rd_reply_error(req, 422, "invalid_auth_answer", "send exactly one of 'code' or 'error'");
        return;
    }
    json_t *out = NULL;
    rd_apierr e;
    int rc = rd_engine_auth_by_id(eng, id, code, error, &out, &e);
    json_decref(body);
    reply_result(a, req, rc, out, &e, false, NULL);
}

/* GET /v1/demo/oauth/authorize?state=S: a stand-in provider, clearly marked as a demo, so the
 * whole loop can be clicked through on a laptop. */
static void demo_provider(rd_req *req)
{
    const char *state = rd_req_query(req, "state");
    if (!state || !*state || strlen(state) > 200) {
        rd_reply_error(req, 400, "missing_state", "the 'state' query parameter is required");
        return;
    }
    unsigned char raw[12];
    char code[20];
    rd_random_bytes(raw, sizeof raw);
    rd_b64url_encode(raw, sizeof raw, code);
    char *st = rd_html_escape(state);
    char body[1500];
    snprintf(body, sizeof body,
             "<p><b>DEMO ONLY.</b> This page stands in for an OAuth provider's consent screen so "
             "the authorization loop can be tried locally. It grants nothing.</p>"
             "<p>The run asks to access your (imaginary) account.</p>"
             "<p><a href=\"/v1/auth/callback?state=%s&amp;code=demo-%s\">Allow</a> &nbsp; "
             "<a href=\"/v1/auth/callback?state=%s&amp;error=access_denied\">Deny</a></p>",
             st ? st : "", code, st ? st : "");
    free(st);
    rd_api_page(req, 200, "Demo provider: authorize?", body);
}

/* The route table answers other methods 405 with Allow, before any scope check. */

/* /v1/runs/approval */
static void h_approval(rd_req *req, void *arg)
{
    rd_api *a = arg;
    if (req->method == htp_method_POST)
        approval_post(req, a);
    else
        approval_get(req, a);
}

/* /v1/auth/callback */
static void h_callback(rd_req *req, void *arg)
{
    rd_api *a = arg;
    auth_callback(req, a);
}

/* /v1/demo/oauth/authorize */
static void h_demo(rd_req *req, void *arg)
{
    demo_provider(req);
}

/* /v1/runs/{id}/approve|deny|auth */
static void h_answer(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    const char *sub = req->segs[3];
    if (strcmp(sub, "auth") == 0)
        auth_by_id(req, a, id);
    else
        approve_by_id(req, a, id, strcmp(sub, "approve") == 0);
}

#define GET_HEAD (RD_METHOD_GET | RD_METHOD_HEAD)

static const rd_http_route_def approvals_routes[] = {
    {GET_HEAD | RD_METHOD_POST, "/v1/runs/approval", RD_HTTP_PUBLIC, h_approval},
    {GET_HEAD, "/v1/auth/callback", RD_HTTP_PUBLIC, h_callback},
    {GET_HEAD, "/v1/demo/oauth/authorize", RD_HTTP_PUBLIC, h_demo},
    {RD_METHOD_POST, "/v1/runs/{id}/approve", RD_SCOPE_WRITE, h_answer},
    {RD_METHOD_POST, "/v1/runs/{id}/deny", RD_SCOPE_WRITE, h_answer},
    {RD_METHOD_POST, "/v1/runs/{id}/auth", RD_SCOPE_WRITE, h_answer},
};

int rd_approvals_register(rd_http *h, rd_api *a)
{
    return rd_http_route_all(h, approvals_routes,
                             sizeof approvals_routes / sizeof approvals_routes[0], a);
}
