/*
 * web.c: the dashboard (docs/dashboard.md): GET / is its page, GET /ui/{file} its style sheet
 * and script modules, all compiled in from web/ (assets.h, rd_web). The files hold no data
 * and no secret, so they are public; the page asks for a key itself and sends it on the API
 * calls it makes. Each file was gzipped at build time: a client that accepts gzip gets that
 * twin, with its own strong ETag (a different representation must not share a validator),
 * and every answer says Vary: Accept-Encoding so a cache keeps the two apart.
 *
 * The Content-Security-Policy is the page's second line of defence: scripts and styles only
 * from this origin (no inline script, no eval), no plugin, no frame, connections only back
 * to the daemon, and Trusted Types required, so a string handed to innerHTML or a similar
 * sink throws instead of becoming markup. The scripts write worker and client data with
 * textContent only.
 */
#include <stdio.h>
#include <string.h>

#include "api/api_int.h"
#include "api/assets.h"
#include "base/util.h"

#define WEB_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; "           \
    "form-action 'self'; require-trusted-types-for 'script'; trusted-types 'none'"

/* The compiled-in file called name, or NULL. */
static const rd_embedded *web_find(const char *name)
{
    for (size_t i = 0; i < rd_web_count; i++)
        if (strcmp(rd_web[i].name, name) == 0)
            return &rd_web[i];
    return NULL;
}

static const char *web_ctype(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    return "text/javascript; charset=utf-8"; /* .mjs: the only other kind in web/ */
}

static void web_send(rd_req *req, const char *name)
{
    const rd_embedded *f = web_find(name);
    if (!f) {
        rd_reply_error(req, 404, "not_found", "no such file");
        return;
    }
    char gzname[64];
    snprintf(gzname, sizeof gzname, "%s.gz", name);
    const rd_embedded *gz = web_find(gzname);
    bool zipped = gz && gz->len < f->len && rd_accepts_gzip(rd_req_header(req, "Accept-Encoding"));
    const rd_embedded *sent = zipped ? gz : f;
    evhtp_headers_t *out = req->r->headers_out;
    evhtp_headers_add_header(out, evhtp_header_new("ETag", sent->etag, 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Cache-Control", "no-cache", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Vary", "Accept-Encoding", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("X-Content-Type-Options", "nosniff", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Content-Security-Policy", WEB_CSP, 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("X-Frame-Options", "DENY", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Referrer-Policy", "no-referrer", 0, 0));
    if (rd_etag_matches(rd_req_header(req, "If-None-Match"), sent->etag)) {
        rd_reply_raw(req, 304, web_ctype(name), NULL, 0);
        return;
    }
    if (zipped)
        evhtp_headers_add_header(out, evhtp_header_new("Content-Encoding", "gzip", 0, 0));
    rd_reply_raw(req, 200, web_ctype(name), (const char *)sent->bytes, sent->len);
}

/* GET / */
static void web_on_index(rd_req *req, void *arg)
{
    (void)arg;
    web_send(req, "index.html");
}

/* GET /ui/{file}: the page's own files; the compressed twins are not addressable. */
static void web_on_file(rd_req *req, void *arg)
{
    (void)arg;
    const char *name = rd_req_param(req, "file");
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 48 || (n > 3 && strcmp(name + n - 3, ".gz") == 0) ||
        strcmp(name, "index.html") == 0) {
        rd_reply_error(req, 404, "not_found", "no such file");
        return;
    }
    web_send(req, name);
}

int rd_web_register(rd_http *h)
{
    if (rd_http_route(h, RD_METHOD_GET | RD_METHOD_HEAD, "/", RD_HTTP_PUBLIC, web_on_index, NULL) !=
            0 ||
        rd_http_route(h, RD_METHOD_GET | RD_METHOD_HEAD, "/ui/{file}", RD_HTTP_PUBLIC, web_on_file,
                      NULL) != 0)
        return RD_ERR;
    return 0;
}
