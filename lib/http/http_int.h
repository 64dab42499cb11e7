/*
 * http_int.h: what http.c (the server: connections, dispatch) and req.c (one request:
 * parsing, access, replies) share inside the HTTP layer. Nothing above http/ includes it.
 */
#ifndef RUNSD_HTTP_INT_H
#define RUNSD_HTTP_INT_H

#include "http/http.h"

/** Decodes and splits the request path into req->path, req->pcopy and req->segs.
 * 0, or -1 when it is malformed (the caller answers 400). */
int rd_req_parse_path(rd_req *req, const char *full);
/** Decodes the raw query string into req's pairs. 0, or -1 when malformed. */
int rd_req_parse_query(rd_req *req, const char *raw);
/** The scope req's credentials grant (0 when none), per req->cfg's keys. */
int rd_req_grant_scope(const rd_req *req);
/** Answers an OPTIONS request: the CORS preflight. */
void rd_req_preflight(rd_req *req);
/** Frees what parsing req allocated (req itself lives on the stack). */
void rd_req_dispose(rd_req *req);

#endif
