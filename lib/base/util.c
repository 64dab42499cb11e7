/*
 * util.c: the small helpers every runsd module shares (clocks, RFC 3339, random ids,
 * base64, SHA-256, constant-time comparison, durations, a string-keyed hash map; logging is
 * util_log.c).
 * It includes only its own header plus system and OpenSSL headers so that any module, test
 * or tool can link it without pulling in the daemon.
 */
#include "base/util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* ---- clocks and time formatting ---- */

static int64_t timespec_ms(clockid_t clk)
{
    struct timespec ts;

    if (clock_gettime(clk, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t rd_now_ms(void)
{
    return timespec_ms(CLOCK_REALTIME);
}

int64_t rd_mono_ms(void)
{
    return timespec_ms(CLOCK_MONOTONIC);
}

void rd_rfc3339(int64_t ms, char *buf, size_t buflen)
{
    struct tm tm;
    time_t secs;

    if (buf == NULL || buflen == 0)
        return;
    buf[0] = '\0';
    /* Zero means "never happened" in run rows; printing 1970 would look like real data. */
    if (ms <= 0)
        return;
    secs = (time_t)(ms / 1000);
    if (gmtime_r(&secs, &tm) == NULL)
        return;
    snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* ---- randomness ---- */

int rd_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;

    /* RAND_bytes takes an int length, so very large requests go in chunks. */
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;

        if (RAND_bytes(p, chunk) != 1)
            return RD_ERR;
        p += chunk;
        n -= (size_t)chunk;
    }
    return RD_OK;
}

int rd_random_id(const char *prefix, char *out, size_t outlen)
{
    unsigned char raw[16];
    size_t plen = prefix ? strlen(prefix) : 0;
    char enc[32];

    if (out == NULL || outlen < plen + 23)
        return RD_EINVAL;
    if (rd_random_bytes(raw, sizeof raw) != RD_OK)
        return RD_ERR;
    rd_b64url_encode(raw, sizeof raw, enc); /* 128 bits -> exactly 22 characters */
    memcpy(out, prefix ? prefix : "", plen);
    memcpy(out + plen, enc, 23);
    return RD_OK;
}

/* ---- base64 ---- */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_encode(const char *alphabet, bool pad, const void *in, size_t n, char *out)
{
    const unsigned char *s = in;
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);

        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = alphabet[v >> 6 & 63];
        else if (pad)
            out[o++] = '=';
        if (pad)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

size_t rd_b64url_encode(const void *in, size_t n, char *out)
{
    return b64_encode(b64_url, false, in, n, out);
}

size_t rd_b64_encode(const void *in, size_t n, char *out)
{
    return b64_encode(b64_std, true, in, n, out);
}

static int b64_value(char c)
{
    const char *p;

    if (c == '\0')
        return -1;
    p = strchr(b64_std, c);
    return p ? (int)(p - b64_std) : -1;
}

int rd_b64_decode(const char *in, size_t n, unsigned char *out, size_t outcap)
{
    size_t pads = 0, len, need, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    while (pads < 2 && n - pads > 0 && in[n - pads - 1] == '=')
        pads++;
    /* Padding, when present, must complete a 4-character group. */
    if (pads > 0 && n % 4 != 0)
        return -1;
    len = n - pads;
    if (len % 4 == 1)
        return -1;
    need = len / 4 * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (need > outcap || need > INT_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (int)o;
}

/* ---- hashing and comparison ---- */

void rd_sha256_hex(const void *in, size_t n, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (EVP_Digest(in, n, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        /* Only a broken OpenSSL gets here; an empty digest never matches a real one. */
        out[0] = '\0';
        return;
    }
    for (unsigned int i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
}

bool rd_ct_streq(const char *a, const char *b)
{
    size_t la, lb;

    if (a == NULL || b == NULL)
        return false;
    la = strlen(a);
    lb = strlen(b);
    if (la != lb)
        return false;
    return CRYPTO_memcmp(a, b, la) == 0;
}

/* ---- numbers and durations ---- */

/* Parses digits only (no sign, no spaces) into a non-negative int64. */
static int parse_digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;

    if (n == 0)
        return RD_EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return RD_EINVAL;
        if (v > (INT64_MAX - (s[i] - '0')) / 10)
            return RD_EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return RD_OK;
}

int rd_parse_i64(const char *s, int64_t *out)
{
    int64_t v;

    if (s == NULL || out == NULL)
        return RD_EINVAL;
    if (s[0] == '-') {
        /* INT64_MIN itself is not representable via negation; nothing here needs it. */
        if (parse_digits(s + 1, strlen(s + 1), &v) != RD_OK)
            return RD_EINVAL;
        *out = -v;
        return RD_OK;
    }
    if (parse_digits(s, strlen(s), &v) != RD_OK)
        return RD_EINVAL;
    *out = v;
    return RD_OK;
}

int rd_parse_duration_ms(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *suffix;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"", 1000}};
    size_t digits = 0;
    int64_t v;

    if (s == NULL || out_ms == NULL)
        return RD_EINVAL;
    while (s[digits] >= '0' && s[digits] <= '9')
        digits++;
    /* The suffix must be one of the units exactly: no spaces, signs, fractions or case. */
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(s + digits, units[i].suffix) != 0)
            continue;
        if (parse_digits(s, digits, &v) != RD_OK || v > INT64_MAX / units[i].ms)
            return RD_EINVAL;
        *out_ms = v * units[i].ms;
        return RD_OK;
    }
    return RD_EINVAL;
}

/* ---- string-keyed hash map ---- */

/*
 * Open addressing with linear probing and backward-shift deletion (no tombstones), keyed
 * with SipHash-2-4 under a per-map random key: some keys (idempotency keys, run ids) come
 * from clients, and a seeded keyed hash keeps them from forcing long probe chains.
 */
typedef struct rd_map_slot {
    char *key; /* NULL = empty slot */
    void *value;
    uint64_t hash;
} rd_map_slot;

struct rd_map {
    rd_map_slot *slots;
    size_t cap; /* a power of two */
    size_t count;
    uint64_t k0, k1;
};

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = ROTL64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = ROTL64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = ROTL64(v2, 32);                                                                       \
    } while (0)

static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *in, size_t len)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        m = 0;
        for (int j = 7; j >= 0; j--)
            m = m << 8 | in[i + (size_t)j];
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        b |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t map_hash(const rd_map *m, const char *key)
{
    return siphash24(m->k0, m->k1, (const unsigned char *)key, strlen(key));
}

rd_map *rd_map_new(void)
{
    rd_map *m = calloc(1, sizeof *m);
    uint64_t seed[2];

    if (m == NULL)
        return NULL;
    m->cap = 16;
    m->slots = calloc(m->cap, sizeof *m->slots);
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    /* Without entropy the map still works; it only loses its flooding resistance. */
    if (rd_random_bytes(seed, sizeof seed) != RD_OK) {
        seed[0] = (uint64_t)rd_mono_ms();
        seed[1] = (uint64_t)(uintptr_t)m;
    }
    m->k0 = seed[0];
    m->k1 = seed[1];
    return m;
}

void rd_map_free(rd_map *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

/* Index of key's slot, or of the empty slot where it would go. */
static size_t map_find(const rd_map *m, const char *key, uint64_t h)
{
    size_t mask = m->cap - 1, i = (size_t)h & mask;

    while (m->slots[i].key != NULL) {
        if (m->slots[i].hash == h && strcmp(m->slots[i].key, key) == 0)
            return i;
        i = (i + 1) & mask;
    }
    return i;
}

static int map_grow(rd_map *m)
{
    size_t ncap = m->cap * 2, mask = ncap - 1;
    rd_map_slot *ns = calloc(ncap, sizeof *ns);

    if (ns == NULL)
        return RD_ERR;
    for (size_t i = 0; i < m->cap; i++) {
        size_t j;

        if (m->slots[i].key == NULL)
            continue;
        j = (size_t)m->slots[i].hash & mask;
        while (ns[j].key != NULL)
            j = (j + 1) & mask;
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return RD_OK;
}

int rd_map_set(rd_map *m, const char *key, void *value)
{
    uint64_t h;
    size_t i;
    char *copy;

    if (m == NULL || key == NULL)
        return RD_ERR;
    h = map_hash(m, key);
    i = map_find(m, key, h);
    if (m->slots[i].key != NULL) {
        m->slots[i].value = value;
        return RD_OK;
    }
    /* Keep the load at or under 3/4 so probe chains stay short. */
    if ((m->count + 1) * 4 > m->cap * 3) {
        if (map_grow(m) != RD_OK)
            return RD_ERR;
        i = map_find(m, key, h);
    }
    copy = strdup(key);
    if (copy == NULL)
        return RD_ERR;
    m->slots[i] = (rd_map_slot){copy, value, h};
    m->count++;
    return RD_OK;
}

void *rd_map_get(const rd_map *m, const char *key)
{
    size_t i;

    if (m == NULL || key == NULL)
        return NULL;
    i = map_find(m, key, map_hash(m, key));
    return m->slots[i].key ? m->slots[i].value : NULL;
}

void *rd_map_del(rd_map *m, const char *key)
{
    size_t mask, i, j;
    void *value;

    if (m == NULL || key == NULL)
        return NULL;
    mask = m->cap - 1;
    i = map_find(m, key, map_hash(m, key));
    if (m->slots[i].key == NULL)
        return NULL;
    value = m->slots[i].value;
    free(m->slots[i].key);
    m->slots[i].key = NULL;
    m->count--;
    /* Backward shift: pull later entries of the chain into the hole when that does not move
     * them before their home slot, so lookups never need tombstones. */
    for (j = (i + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
        size_t home = (size_t)m->slots[j].hash & mask;

        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
    return value;
}

size_t rd_map_count(const rd_map *m)
{
    return m ? m->count : 0;
}

void rd_map_each(const rd_map *m, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            fn(m->slots[i].key, m->slots[i].value, arg);
}
