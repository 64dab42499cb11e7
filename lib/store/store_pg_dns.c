/*
 * store_pg_dns.c: resolves the host names of the PostgreSQL dsn on the event loop (libevent's
 * evdns: /etc/hosts, then the servers of /etc/resolv.conf), so that a reconnection never waits
 * for a resolver. libpq would call getaddrinfo() inside PQconnectStart/PQconnectPoll, on the
 * loop, at every attempt. The reconnection (store_pg_conn.c) instead passes the addresses found
 * here as hostaddr= beside the dsn's host= (which libpq still uses for TLS verification and the
 * password file), and libpq resolves nothing.
 *
 * Only a dsn whose hosts are all TCP hosts is handled (host=a,b: each resolved); a Unix socket,
 * a hostaddr given by the user or no host at all (libpq's default socket) need no resolution.
 * Every reconnection resolves again, so a name moved by a failover is followed.
 */
#include "store/store_pg_int.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define MAX_HOSTS 16

struct pg_dns {
    struct evdns_base *evdns;
    int n;                    /* hosts in the dsn's list */
    char *name[MAX_HOSTS];    /* each host, as the dsn has it */
    char addr[MAX_HOSTS][64]; /* its address, numeric */
    struct evdns_getaddrinfo_request *req[MAX_HOSTS];
    int left;    /* answers still to come (+1 while requests are being made) */
    bool failed; /* a name did not resolve */
    bool ready;  /* every name resolved: hostaddr holds the list */
    char hostaddr[MAX_HOSTS * 64];
};

/* Whether the host needs resolving: not a socket path, not a numeric address. */
static bool is_name(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return h[0] != '/' && h[0] != '@' && inet_pton(AF_INET, h, buf) != 1 &&
           inet_pton(AF_INET6, h, buf) != 1;
}

/* The dsn's host list (or PGHOST), when it has a name and only TCP hosts; else NULL. */
static char *host_list(const char *dsn)
{
    char *msg = NULL, *hosts = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn ? dsn : "", &msg);
    const char *host = NULL, *hostaddr = NULL;

    PQfreemem(msg);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
    }
    if (!host || !*host)
        host = getenv("PGHOST");
    if (host && *host && !(hostaddr && *hostaddr))
        hosts = strdup(host);
    PQconninfoFree(opts);
    return hosts;
}

static void dns_split(pg_dns *d, char *hosts)
{
    bool names = false, sockets = false;
    for (char *save = NULL, *h = strtok_r(hosts, ",", &save); h && d->n < MAX_HOSTS;
         h = strtok_r(NULL, ",", &save)) {
        d->name[d->n++] = strdup(h);
        names = names || is_name(h);
        sockets = sockets || h[0] == '/' || h[0] == '@';
    }
    if (!names || sockets)
        d->n = 0; /* nothing to resolve, or a mix libpq's hostaddr cannot express */
}

pg_dns *rd_pg_dns_new(struct event_base *base, const char *dsn)
{
    char *hosts = base ? host_list(dsn) : NULL;
    pg_dns *d = hosts ? calloc(1, sizeof *d) : NULL;

    if (d)
        dns_split(d, hosts);
    free(hosts);
    if (d && d->n > 0)
        d->evdns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (d && d->n > 0 && !d->evdns)
        rd_log_warn("store: postgresql: no asynchronous resolver (/etc/resolv.conf?): host names"
                    " are resolved by libpq, on the loop");
    if (d && !d->evdns) {
        rd_pg_dns_free(d);
        d = NULL;
    }
    return d;
}

void rd_pg_dns_free(pg_dns *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n; i++) {
        if (d->req[i])
            evdns_getaddrinfo_cancel(d->req[i]); /* its callback runs now: it frees nothing */
        free(d->name[i]);
    }
    for (int i = d->n; i < MAX_HOSTS; i++)
        free(d->name[i]);
    if (d->evdns)
        evdns_base_free(d->evdns, 0);
    free(d);
}

/* All answers are in: the hostaddr list, in the dsn's order. */
static void dns_done(pg_dns *d)
{
    size_t len = 0;
    d->hostaddr[0] = '\0';
    for (int i = 0; i < d->n && !d->failed; i++)
        len += (size_t)snprintf(d->hostaddr + len, sizeof d->hostaddr - len, "%s%s", i ? "," : "",
                                d->addr[i]);
    d->ready = !d->failed;
}

typedef struct dns_q {
    pg_dns *d;
    int i;
} dns_q;

static const void *addr_of(const struct evutil_addrinfo *ai)
{
    if (ai->ai_family == AF_INET)
        return &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
    return &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
}

static void pg_dns_on_answer(int err, struct evutil_addrinfo *res, void *arg)
{
    dns_q *q = arg;
    pg_dns *d = q->d;
    int i = q->i;

    free(q);
    if (err == EVUTIL_EAI_CANCEL)
        return; /* the store is closing */
    d->req[i] = NULL;
    /* One address per host (hostaddr pairs with host): an IPv4 one if there is one, as
     * getaddrinfo's usual order would try first. */
    struct evutil_addrinfo *ai = res;
    for (struct evutil_addrinfo *p = res; p; p = p->ai_next)
        if (p->ai_family == AF_INET) {
            ai = p;
            break;
        }
    if (err != 0 || !ai ||
        !evutil_inet_ntop(ai->ai_family, addr_of(ai), d->addr[i], sizeof d->addr[i])) {
        rd_log_err("store: postgresql: cannot resolve %s: %s", d->name[i],
                   err ? evutil_gai_strerror(err) : "no address");
        d->failed = true;
    }
    if (res)
        evutil_freeaddrinfo(res);
    if (--d->left == 0)
        dns_done(d);
}

/* Asks for one host; a numeric one is its own address. */
static void dns_ask(pg_dns *d, int i)
{
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    dns_q *q = is_name(d->name[i]) ? malloc(sizeof *q) : NULL;

    if (!is_name(d->name[i])) {
        snprintf(d->addr[i], sizeof d->addr[i], "%s", d->name[i]);
        d->left--;
        return;
    }
    if (!q) {
        d->failed = true;
        d->left--;
        return;
    }
    *q = (dns_q){d, i};
    /* The answer may come at once (the hosts file): the callback then runs before this
     * returns, and the request is NULL. */
    d->req[i] = evdns_getaddrinfo(d->evdns, d->name[i], NULL, &hints, pg_dns_on_answer, q);
}

bool rd_pg_dns_resolve(pg_dns *d)
{
    if (d->ready || d->left > 0)
        return d->ready;
    d->failed = false;
    d->left = d->n + 1;
    for (int i = 0; i < d->n; i++)
        dns_ask(d, i);
    if (--d->left == 0)
        dns_done(d);
    return d->ready;
}

const char *rd_pg_dns_take(pg_dns *d)
{
    d->ready = false; /* the next reconnection resolves again */
    return d->hostaddr;
}
