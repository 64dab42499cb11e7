/*
 * assets.h: the files compiled into the daemon at build time (CMake writes their bytes into
 * a generated assets.c from cmake/Embed.cmake): the OpenAPI document as written
 * (docs/openapi.yaml) and converted to JSON, and the JavaScript client
 * (clients/js/runsd.mjs). Static storage, never freed; each array has one NUL after its
 * _len bytes, and each _etag is a strong ETag ("..." with the quotes: the first 16 hex
 * digits of the file's SHA-256), taken at build time.
 *
 * The dashboard's files (web/, docs/dashboard.md) are compiled in the same way, each also
 * gzipped at build time (gzip -9n, "<name>.gz"), and listed in rd_web by file name, so
 * lib/api/web.c finds a file and its compressed twin without a declaration per file.
 */
#ifndef RUNSD_ASSETS_H
#define RUNSD_ASSETS_H

#include <stddef.h>

extern const unsigned char rd_asset_openapi_yaml[];
extern const size_t rd_asset_openapi_yaml_len;
extern const char rd_asset_openapi_yaml_etag[];
extern const unsigned char rd_asset_openapi_json[];
extern const size_t rd_asset_openapi_json_len;
extern const char rd_asset_openapi_json_etag[];
extern const unsigned char rd_asset_client_js[];
extern const size_t rd_asset_client_js_len;
extern const char rd_asset_client_js_etag[];
extern const unsigned char rd_asset_client_js_gz[]; /* the client gzipped (gzip -9n) */
extern const size_t rd_asset_client_js_gz_len;
extern const char rd_asset_client_js_gz_etag[];

/** One compiled-in file of a table: its base name ("app.mjs", "app.mjs.gz"), bytes, length
 * and strong ETag. Static storage. */
typedef struct rd_embedded {
    const char *name;
    const unsigned char *bytes;
    size_t len;
    const char *etag;
} rd_embedded;

/** The dashboard's files (web/) and their gzipped twins, rd_web_count of them. */
extern const rd_embedded rd_web[];
extern const size_t rd_web_count;

#endif
