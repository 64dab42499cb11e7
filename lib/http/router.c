/*
 * router.c: the route table (see router.h). A table holds a few dozen entries and a path
 * at most eight segments, so a linear scan is both the simplest and fast enough: it costs
 * less than parsing the request that asked. Each entry keeps its pattern split into
 * segments (NULL for a capture) and a specificity number whose bits, from the most
 * significant, say which segments are literals; comparing the numbers compares patterns
 * left to right.
 */
#include "http/router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct route_entry {
    unsigned methods;
    int nseg;
    unsigned spec;                 /* bit (nseg - 1 - i) set: segment i is a literal */
    char *lit[RD_ROUTE_MAX_SEGS];  /* literal segments; NULL for a capture */
    char *name[RD_ROUTE_MAX_SEGS]; /* capture names; NULL for a literal */
    char *pattern;                 /* owned storage of lit and name */
    void *data;
} route_entry;

struct rd_router {
    route_entry *v;
    int n, cap;
};

rd_router *rd_router_new(void)
{
    return calloc(1, sizeof(rd_router));
}

void rd_router_free(rd_router *rt)
{
    if (!rt)
        return;
    for (int i = 0; i < rt->n; i++)
        free(rt->v[i].pattern);
    free(rt->v);
    free(rt);
}

int rd_router_split(char *path, char **segs)
{
    int n = 0;
    char *p = path;
    if (*p != '/')
        return -1;
    while (*p == '/' && n < RD_ROUTE_MAX_SEGS) {
        *p++ = 0;
        char *start = p;
        while (*p && *p != '/')
            p++;
        if (start == p && *p == 0)
            break; /* one trailing slash is tolerated */
        size_t sl = (size_t)(p - start);
        if (sl == 0 || (start[0] == '.' && (sl == 1 || (sl == 2 && start[1] == '.'))))
            return -1; /* an empty or dot segment, wherever it is */
        segs[n++] = start;
    }
    if (*p)
        return -1; /* deeper than any route */
    segs[n] = NULL;
    return n;
}

/* Splits pattern into e (segments point into e->pattern). 0 or -1. */
static int parse_pattern(route_entry *e, const char *pattern)
{
    char *segs[RD_ROUTE_MAX_SEGS + 1];
    e->pattern = strdup(pattern);
    if (!e->pattern)
        return -1;
    size_t len = strlen(pattern);
    if (len > 1 && pattern[len - 1] == '/')
        return -1; /* a pattern names its path exactly */
    int n = rd_router_split(e->pattern, segs), nparam = 0;
    if (n < 0)
        return -1;
    e->nseg = n;
    for (int i = 0; i < n; i++) {
        size_t sl = strlen(segs[i]);
        int capture = sl > 2 && segs[i][0] == '{' && segs[i][sl - 1] == '}';
        if (capture) {
            if (++nparam > RD_ROUTE_MAX_PARAMS)
                return -1;
            segs[i][sl - 1] = 0;
            e->name[i] = segs[i] + 1;
        } else {
            if (strchr(segs[i], '{') || strchr(segs[i], '}') || strcmp(segs[i], ".") == 0 ||
                strcmp(segs[i], "..") == 0)
                return -1;
            e->lit[i] = segs[i];
            e->spec |= 1u << (n - 1 - i);
        }
    }
    return 0;
}

/* True when a and b have the same shape: equal depth, literals and capture positions. */
static int same_shape(const route_entry *a, const route_entry *b)
{
    if (a->nseg != b->nseg || a->spec != b->spec)
        return 0;
    for (int i = 0; i < a->nseg; i++)
        if (a->lit[i] && strcmp(a->lit[i], b->lit[i]) != 0)
            return 0;
    return 1;
}

int rd_router_add(rd_router *rt, unsigned methods, const char *pattern, void *data)
{
    route_entry e = {.methods = methods & RD_METHOD_ANY, .data = data};
    if (!e.methods || !pattern || parse_pattern(&e, pattern) != 0) {
        free(e.pattern);
        return -1;
    }
    for (int i = 0; i < rt->n; i++) {
        if (same_shape(&rt->v[i], &e) && (rt->v[i].methods & e.methods)) {
            free(e.pattern);
            return -1; /* two entries would answer one request */
        }
    }
    if (rt->n == rt->cap) {
        int cap = rt->cap ? rt->cap * 2 : 32;
        route_entry *v = realloc(rt->v, (size_t)cap * sizeof *v);
        if (!v) {
            free(e.pattern);
            return -1;
        }
        rt->v = v;
        rt->cap = cap;
    }
    rt->v[rt->n++] = e;
    return 0;
}

static int entry_matches(const route_entry *e, char *const *segs, int nseg)
{
    if (e->nseg != nseg)
        return 0;
    for (int i = 0; i < nseg; i++)
        if (e->lit[i] && strcmp(e->lit[i], segs[i]) != 0)
            return 0;
    return 1;
}

int rd_router_match(const rd_router *rt, unsigned method, char *const *segs, int nseg,
                    rd_route_hit *hit)
{
    const route_entry *found = NULL;
    long best = -1;
    memset(hit, 0, sizeof *hit);
    for (int i = 0; i < rt->n; i++) {
        const route_entry *e = &rt->v[i];
        if ((long)e->spec < best || !entry_matches(e, segs, nseg))
            continue;
        if ((long)e->spec > best) {
            best = e->spec; /* a more specific pattern owns the path: forget the others */
            found = NULL;
            hit->allow = 0;
        }
        hit->allow |= e->methods;
        if (e->methods & method)
            found = e;
    }
    if (best < 0)
        return RD_ROUTE_NOT_FOUND;
    if (!found)
        return RD_ROUTE_NO_METHOD;
    hit->data = found->data;
    for (int i = 0; i < nseg; i++) {
        if (found->name[i]) {
            hit->names[hit->nparam] = found->name[i];
            hit->values[hit->nparam++] = segs[i];
        }
    }
    return RD_ROUTE_FOUND;
}

char *rd_router_allow(unsigned mask, char *buf, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } order[] = {{RD_METHOD_GET, "GET"},
                 {RD_METHOD_POST, "POST"},
                 {RD_METHOD_PUT, "PUT"},
                 {RD_METHOD_PATCH, "PATCH"},
                 {RD_METHOD_DELETE, "DELETE"}};
    size_t used = 0;
    if (len)
        buf[0] = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        if (!(mask & order[i].bit) || used >= len)
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", order[i].name);
        used += n > 0 ? (size_t)n : 0;
    }
    return buf;
}
