/*
 * outbox_policy.c: the pure decisions of webhook delivery (see outbox_policy.h).
 *
 * The SSRF table lists every range a client-supplied URL must not reach: not only the
 * private ranges but also loopback, link-local (cloud metadata at 169.254.169.254), CGNAT,
 * "this network", multicast and reserved space, because each of them reaches something on
 * or next to the daemon's host that the client could not reach itself.
 */
#include "webhook/outbox_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#define X_KNOWN(t, def) || strcmp(type, t) == 0
#define X_DEFAULT(t, def) || (def && strcmp(type, t) == 0)

bool rd_outbox_policy_type_known(const char *type)
{
    return type && (false RD_HOOK_TYPES(X_KNOWN));
}

bool rd_outbox_policy_type_default(const char *type)
{
    return type && (false RD_HOOK_TYPES(X_DEFAULT));
}

rd_outbox_policy_outcome rd_outbox_policy_classify(long http_status)
{
    if (http_status >= 200 && http_status <= 299)
        return RD_HOOK_DELIVERED;
    if (http_status == 410)
        return RD_HOOK_STOP;
    return RD_HOOK_RETRY;
}

bool rd_outbox_policy_honours_retry_after(long http_status)
{
    return http_status == 429 || (http_status >= 500 && http_status <= 599);
}

int64_t rd_outbox_policy_retry_delay(const int64_t *schedule, int n, int attempts,
                                     int64_t retry_after_ms, uint32_t rnd)
{
    const int64_t day = 24LL * 3600 * 1000;
    int64_t base, delay;

    if (attempts < 1 || attempts > n)
        return -1;
    base = schedule[attempts - 1];
    /* base * (0.8 + 0.4 * rnd / 2^32), in integers: spreads receivers' retries out so an
     * endpoint that comes back is not hit by every delayed delivery in the same instant. */
    delay = base - base / 5 + (int64_t)(((__int128)base * 2 / 5 * rnd) >> 32);
    if (retry_after_ms > day)
        retry_after_ms = day;
    return delay > retry_after_ms ? delay : retry_after_ms;
}

typedef struct v4_range {
    uint32_t net;
    int bits;
    const char *why;
} v4_range;

/* clang-format off */
static const v4_range v4_blocked[] = {
    {0x00000000, 8, "this-network"},    /* 0.0.0.0/8 */
    {0x0a000000, 8, "private"},         /* 10/8 */
    {0x64400000, 10, "shared (CGNAT)"}, /* 100.64/10 */
    {0x7f000000, 8, "loopback"},        /* 127/8 */
    {0xa9fe0000, 16, "link-local"},     /* 169.254/16 */
    {0xac100000, 12, "private"},        /* 172.16/12 */
    {0xc0000000, 24, "reserved"},       /* 192.0.0/24 (IETF protocol assignments) */
    {0xc0a80000, 16, "private"},        /* 192.168/16 */
    {0xc6120000, 15, "reserved"},       /* 198.18/15 (benchmarking) */
    {0xe0000000, 4, "multicast"},       /* 224/4 */
    {0xf0000000, 4, "reserved"},        /* 240/4, with 255.255.255.255 */
};
/* clang-format on */

static const char *v4_blocked_why(uint32_t a)
{
    for (size_t i = 0; i < sizeof v4_blocked / sizeof v4_blocked[0]; i++) {
        uint32_t mask = 0xffffffffu << (32 - v4_blocked[i].bits);
        if ((a & mask) == v4_blocked[i].net)
            return v4_blocked[i].why;
    }
    return NULL;
}

static uint32_t v4_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *v6_blocked_why(const uint8_t *a)
{
    static const uint8_t zero[16], nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (memcmp(a, zero, 15) == 0 && (a[15] == 0 || a[15] == 1))
        return a[15] ? "loopback" : "unspecified";
    /* ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64). */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, zero, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return v4_blocked_why(v4_at(a + 12));
    if (a[0] == 0x20 && a[1] == 0x02) /* 2002:a.b.c.d::/48 (6to4) */
        return v4_blocked_why(v4_at(a + 2));
    if ((a[0] & 0xfe) == 0xfc)
        return "private"; /* fc00::/7 unique local */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return "link-local"; /* fe80::/10 */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        return "site-local"; /* fec0::/10, deprecated but still routed by some */
    if (a[0] == 0xff)
        return "multicast";
    return NULL;
}

const char *rd_outbox_policy_addr_blocked(const struct sockaddr *sa)
{
    if (!sa)
        return "unknown";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return v4_blocked_why(ntohl(in->sin_addr.s_addr));
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return v6_blocked_why(in6->sin6_addr.s6_addr);
    }
    return "non-IP"; /* unix sockets and anything else a URL should never reach */
}
