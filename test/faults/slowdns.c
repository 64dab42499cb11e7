/*
 * slowdns.c: an LD_PRELOAD shim that makes the C library's resolver slow for one name: a
 * getaddrinfo() of the name in RUNSD_SLOWDNS_NAME sleeps RUNSD_SLOWDNS_MS (default 5000) before
 * it answers, as a resolver that does not answer would (the timeout of /etc/resolv.conf is 5 s).
 * Every such call is appended to the file RUNSD_SLOWDNS_LOG ("getaddrinfo NAME"), so a test can
 * see whether, and when, the process called it. Other names pass through at once.
 *
 * test_pg uses it to show that reconnecting to a dsn that names its host never waits for the
 * resolver on the loop (lib/store/store_pg_dns.c resolves with evdns, which reads /etc/hosts
 * and asks DNS servers itself, never through getaddrinfo()).
 *
 * Test-only: built as a shared library, never linked into the daemon.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static gai_fn real;
    const char *name = getenv("RUNSD_SLOWDNS_NAME");
    const char *log = getenv("RUNSD_SLOWDNS_LOG");

    if (!real)
        real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (node && name && strcmp(node, name) == 0) {
        const char *ms = getenv("RUNSD_SLOWDNS_MS");
        long n = ms ? atol(ms) : 5000;
        FILE *f = log ? fopen(log, "a") : NULL;
        if (f) {
            fprintf(f, "getaddrinfo %s\n", node);
            fclose(f);
        }
        struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
    }
    return real(node, service, hints, res);
}
