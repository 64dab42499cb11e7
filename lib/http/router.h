/*
 * router.h: the route table of the HTTP layer as pure code: path patterns made of literal
 * segments and {name} captures, each with the set of methods it answers. It knows nothing
 * of sockets, requests or handlers (an entry carries an opaque pointer), so it is tested
 * on its own. http.c owns one table and turns its answers into replies.
 *
 * Matching rule: among the patterns that match a path, the most specific one owns it (a
 * literal beats a capture at the first segment where they differ), then the method picks
 * the entry. A path owned by no pattern is "not found"; an owned path whose pattern has no
 * entry for the method is "method not allowed", with the methods it does answer.
 */
#ifndef RUNSD_ROUTER_H
#define RUNSD_ROUTER_H

#include <stddef.h>

/* The deepest path a route may name; deeper paths are malformed (no route is that deep). */
#define RD_ROUTE_MAX_SEGS 8
#define RD_ROUTE_MAX_PARAMS 4

/* Methods as bits, so an entry can answer several. OTHER is every method not listed. */
enum {
    RD_METHOD_GET = 1u << 0,
    RD_METHOD_HEAD = 1u << 1,
    RD_METHOD_POST = 1u << 2,
    RD_METHOD_PUT = 1u << 3,
    RD_METHOD_PATCH = 1u << 4,
    RD_METHOD_DELETE = 1u << 5,
    RD_METHOD_OPTIONS = 1u << 6,
    RD_METHOD_OTHER = 1u << 7,
    RD_METHOD_ANY = (1u << 8) - 1,
};

/* What rd_router_match answers. */
enum { RD_ROUTE_FOUND = 0, RD_ROUTE_NOT_FOUND = 1, RD_ROUTE_NO_METHOD = 2 };

typedef struct rd_router rd_router;

/** A match. Every pointer is borrowed: data from the table, names from the table's
 * patterns, values from the segments given to rd_router_match. */
typedef struct rd_route_hit {
    void *data;     /* the entry's pointer (RD_ROUTE_FOUND) */
    unsigned allow; /* the methods the owning pattern answers (FOUND and NO_METHOD) */
    int nparam;
    const char *names[RD_ROUTE_MAX_PARAMS];
    const char *values[RD_ROUTE_MAX_PARAMS];
} rd_route_hit;

/** An empty table, or NULL (out of memory). Free with rd_router_free. */
rd_router *rd_router_new(void);
/** Frees the table and its copies of the patterns; the data pointers are the caller's. */
void rd_router_free(rd_router *rt);

/** Adds an entry: `methods` (RD_METHOD_* bits, not 0) on `pattern`, e.g.
 * "/v1/runs/{id}/cancel". The pattern is copied; data is borrowed and handed back by
 * rd_router_match. -1 when the pattern is malformed (not absolute, empty or dot segment,
 * deeper than RD_ROUTE_MAX_SEGS, more than RD_ROUTE_MAX_PARAMS captures), when an entry of
 * the same shape already answers one of the methods, or when out of memory; 0 otherwise. */
int rd_router_add(rd_router *rt, unsigned methods, const char *pattern, void *data);

/** Matches the decoded segments of a path (from rd_router_split) for one method bit.
 * RD_ROUTE_FOUND (hit filled), RD_ROUTE_NO_METHOD (hit->allow filled) or
 * RD_ROUTE_NOT_FOUND. */
int rd_router_match(const rd_router *rt, unsigned method, char *const *segs, int nseg,
                    rd_route_hit *hit);

/** Splits a decoded absolute path in place into at most RD_ROUTE_MAX_SEGS segments
 * (pointers into path; segs needs RD_ROUTE_MAX_SEGS + 1 slots and is NULL-terminated).
 * One trailing slash is tolerated; an empty segment, a "." or ".." segment anywhere, a path
 * not starting with '/', or a deeper path is malformed. The number of segments (0 for "/"),
 * or -1. */
int rd_router_split(char *path, char **segs);

/** Writes the methods of mask an Allow header lists ("GET, POST"; HEAD, OPTIONS and
 * OTHER are never listed) into buf. Returns buf. */
char *rd_router_allow(unsigned mask, char *buf, size_t len);

#endif
