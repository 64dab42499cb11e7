/*
 * pages.c: the few HTML pages the API answers browsers with (approval links, the OAuth
 * callback, the demo provider, a stream link opened in a tab without access): one page
 * shape, escaped text, no script. A Content-Security-Policy forbids scripts and framing, so
 * nothing a worker or a client wrote into a prompt can run in the daemon's origin.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

bool rd_api_wants_html(const rd_req *req)
{
    const char *acc = rd_req_header(req, "Accept");
    return acc && strstr(acc, "text/html") != NULL;
}

char *rd_html_escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p; p++)
        n += (*p == '<' || *p == '>') ? 4 : *p == '&' ? 5 : (*p == '"' || *p == '\'') ? 6 : 1;
    char *o = malloc(n + 1), *q = o;
    if (!o)
        return NULL;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '<':
            q = stpcpy(q, "&lt;");
            break;
        case '>':
            q = stpcpy(q, "&gt;");
            break;
        case '&':
            q = stpcpy(q, "&amp;");
            break;
        case '"':
            q = stpcpy(q, "&quot;");
            break;
        case '\'':
            q = stpcpy(q, "&#39;");
            break;
        default:
            *q++ = *p;
        }
    }
    *q = 0;
    return o;
}

void rd_api_page(rd_req *req, int status, const char *title, const char *body_html)
{
    char *t = rd_html_escape(title);
    size_t cap = strlen(body_html) + (t ? strlen(t) : 0) * 2 + 1024;
    char *html = malloc(cap);
    if (!html || !t) {
        free(html);
        free(t);
        rd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    int n = snprintf(html, cap,
                     "<!doctype html><html><head><meta charset=\"utf-8\">"
                     "<meta name=\"viewport\" content=\"width=device-width\">"
                     "<meta name=\"robots\" content=\"noindex\"><title>%s</title>"
                     "<style>body{font:16px system-ui,sans-serif;max-width:40em;margin:3em auto;"
                     "padding:0 1em}button{font-size:1em;padding:.5em 1.5em}pre{background:#f4f4f4;"
                     "padding:1em;overflow:auto}</style></head><body><h1>%s</h1>%s</body></html>",
                     t, t, body_html);
    evhtp_headers_add_header(req->r->headers_out,
                             evhtp_header_new("Content-Security-Policy",
                                              "default-src 'none'; style-src 'unsafe-inline'; "
                                              "form-action 'self'",
                                              0, 0));
    evhtp_headers_add_header(req->r->headers_out,
                             evhtp_header_new("X-Frame-Options", "DENY", 0, 0));
    rd_reply_raw(req, status, "text/html; charset=utf-8", html, (size_t)n);
    free(html);
    free(t);
}
