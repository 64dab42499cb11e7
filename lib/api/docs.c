/*
 * docs.c: the documents the daemon serves about itself: its OpenAPI description
 * (GET /v1/openapi.yaml, and /v1/openapi.json converted at build time) and the JavaScript
 * client (GET /v1/client.js). Both are compiled in (assets.h), so what a daemon serves is
 * always the description of that very binary, with no file path to get wrong at run time.
 *
 * They are public: they hold no secret, and a page must be able to import the client
 * without sending a key (a module script cannot). Each carries a strong ETag (a hash of its
 * bytes, taken at build time) and "Cache-Control: no-cache": a browser keeps its copy but asks each
 * time, and gets 304 until the daemon is upgraded.
 */
#include <string.h>

#include "api/api_int.h"
#include "api/assets.h"
#include "base/util.h"

typedef struct asset {
    const char *path;
    const char *ctype;
    const unsigned char *bytes;
    const size_t *len;
    const char *etag;
} asset;

static const asset assets[] = {
    {"/v1/openapi.yaml", "application/yaml; charset=utf-8", rd_asset_openapi_yaml,
     &rd_asset_openapi_yaml_len, rd_asset_openapi_yaml_etag},
    {"/v1/openapi.json", "application/json", rd_asset_openapi_json, &rd_asset_openapi_json_len,
     rd_asset_openapi_json_etag},
    {"/v1/client.js", "text/javascript; charset=utf-8", rd_asset_client_js, &rd_asset_client_js_len,
     rd_asset_client_js_etag},
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

static void h_asset(rd_req *req, void *arg)
{
    const asset *as = arg;
    evhtp_headers_t *out = req->r->headers_out;
    evhtp_headers_add_header(out, evhtp_header_new("ETag", as->etag, 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("Cache-Control", "no-cache", 0, 0));
    evhtp_headers_add_header(out, evhtp_header_new("X-Content-Type-Options", "nosniff", 0, 0));
    if (rd_etag_matches(rd_req_header(req, "If-None-Match"), as->etag)) {
        rd_reply_raw(req, 304, as->ctype, NULL, 0);
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
