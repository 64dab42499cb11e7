/*
 * docs.c: the documents the daemon serves about itself: its OpenAPI description
 * (GET /v1/openapi.yaml, and /v1/openapi.json converted at build time) and the JavaScript
 * client (GET /v1/client.js). Both are compiled in (assets.h), so what a daemon serves is
 * always the description of that very binary, with no file path to get wrong at run time.
 *
 * They are public: they hold no secret, and a page must be able to import the client
 * without sending a key (a module script cannot). Each carries a strong ETag (a hash of its
 * bytes, taken at build time) and "Cache-Control: no-cache": a browser keeps its copy but asks each
 * time, and gets 304 until the daemon is upgraded. The client also comes gzipped to those who
 * accept it. The helpers for both (ETag match, Accept-Encoding) serve the dashboard too (web.c).
 */
#include <string.h>
#include <strings.h>

#include "api/api_int.h"
#include "api/assets.h"
#include "base/util.h"

typedef struct asset {
    const char *path;
    const char *ctype;
    const unsigned char *bytes;
    const size_t *len;
    const char *etag;
    const unsigned char *gz; /* the same gzipped, or NULL */
    const size_t *gz_len;
    const char *gz_etag;
} asset;

static const asset assets[] = {
    {"/v1/openapi.yaml", "application/yaml; charset=utf-8", rd_asset_openapi_yaml,
     &rd_asset_openapi_yaml_len, rd_asset_openapi_yaml_etag, NULL, NULL, NULL},
    {"/v1/openapi.json", "application/json", rd_asset_openapi_json, &rd_asset_openapi_json_len,
     rd_asset_openapi_json_etag, NULL, NULL, NULL},
    {"/v1/client.js", "text/javascript; charset=utf-8", rd_asset_client_js, &rd_asset_client_js_len,
     rd_asset_client_js_etag, rd_asset_client_js_gz, &rd_asset_client_js_gz_len,
     rd_asset_client_js_gz_etag},
};

/* True when If-None-Match names etag (a list, or "*"); weak validators compare too, as
 * RFC 9110 13.1.2 asks for GET. Also the dashboard's files (web.c). */
bool rd_etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return false;
    if (strcmp(inm, "*") == 0)
        return true;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        bool start = p == inm || p[-1] == ' ' || p[-1] == ',' || (p >= inm + 2 && p[-1] == '/');
        bool end = p[n] == 0 || p[n] == ',' || p[n] == ' ';
        if (start && end)
            return true;
    }
    return false;
}

/* Whether Accept-Encoding accepts gzip (RFC 9110 12.5.3): named, or "*", with a q-value
 * other than 0 (also for web.c). Coarse but safe: a malformed q reads as acceptance, as browsers
 * send none. */
bool rd_accepts_gzip(const char *ae)
{
    for (const char *p = ae; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",;");
        bool named = (n == 4 && strncasecmp(p, "gzip", 4) == 0) || (n == 1 && *p == '*');
        const char *end = p + strcspn(p, ",");
        if (named) {
            const char *q = strstr(p, "q=");
            bool zero = q && q < end && q[2] == '0' && strspn(q + 3, ".0") == (size_t)(end - q - 3);
            return !zero;
        }
        p = end;
    }
    return false;
}

/* The client is gzipped for those who accept it (the dashboard imports it on every first
 * load); each representation has its own ETag, and Vary says the answer depends on it. */
static void h_asset(rd_req *req, void *arg)
{
    const asset *as = arg;
    bool zipped = as->gz && rd_accepts_gzip(rd_req_header(req, "Accept-Encoding"));
    const char *etag = zipped ? as->gz_etag : as->etag;
    evhtp_headers_t *out = req->r->headers_out;
    evhtp_headers_add_header(out, evhtp_header_new("ETag", etag, 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Cache-Control", "no-cache", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("X-Content-Type-Options", "nosniff", 0, 0));
    if (as->gz)
        evhtp_headers_add_header(out, evhtp_header_new("Vary", "Accept-Encoding", 0, 0));
    if (rd_etag_matches(rd_req_header(req, "If-None-Match"), etag)) {
        rd_reply_raw(req, 304, as->ctype, NULL, 0);
        return;
    }
    if (zipped) {
        evhtp_headers_add_header(out, evhtp_header_new("Content-Encoding", "gzip", 0, 0));
        rd_reply_raw(req, 200, as->ctype, (const char *)as->gz, *as->gz_len);
        return;
    }
    rd_reply_raw(req, 200, as->ctype, (const char *)as->bytes, *as->len);
}

int rd_docs_register(rd_http *h)
{
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++)
        if (rd_http_route(h, RD_METHOD_GET | RD_METHOD_HEAD, assets[i].path, RD_HTTP_PUBLIC,
                          h_asset, (void *)&assets[i]) != 0)
            return RD_ERR;
    return 0;
}
