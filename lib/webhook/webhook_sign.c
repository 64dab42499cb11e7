/*
 * webhook_sign.c: Standard Webhooks signing and verification (see webhook_sign.h).
 *
 * The signed content is id "." timestamp "." body, fed to the MAC in pieces so a large body
 * is never copied. The base64 codec is local on purpose: this file includes only its own
 * header and OpenSSL, so it can be lifted into any receiver. Keys are wiped after use.
 */
#include "webhook/webhook_sign.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>

#define SHA256_LEN 32

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict standard base64, padding optional (but complete when present). */
static int b64_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    size_t pads = 0, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    while (pads < 2 && n > pads && in[n - pads - 1] == '=')
        pads++;
    if ((pads > 0 && n % 4 != 0) || (n - pads) % 4 == 1)
        return -1;
    for (size_t i = 0; i < n - pads; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (int)o;
}

int rd_whsig_key(const char *secret, unsigned char *key, size_t cap)
{
    if (!secret)
        return -1;
    if (strncmp(secret, "whsec_", 6) == 0)
        secret += 6;
    return b64_decode(secret, strlen(secret), key, cap);
}

bool rd_whsig_secret_valid(const char *secret)
{
    unsigned char key[RD_WHSIG_KEY_MAX];
    int n;

    if (!secret || strncmp(secret, "whsec_", 6) != 0)
        return false;
    n = rd_whsig_key(secret, key, sizeof key);
    OPENSSL_cleanse(key, sizeof key);
    return n >= RD_WHSIG_KEY_MIN && n <= RD_WHSIG_KEY_MAX;
}

/* HMAC-SHA256 over id "." ts "." body without assembling them in one buffer. */
static int mac_message(const unsigned char *key, size_t klen, const char *id, const char *ts,
                       const void *body, size_t len, unsigned char out[SHA256_LEN])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    size_t outl = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, klen, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)".", 1) == 1 &&
             (len == 0 || EVP_MAC_update(ctx, body, len) == 1) &&
             EVP_MAC_final(ctx, out, &outl, SHA256_LEN) == 1 && outl == SHA256_LEN;

    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? 0 : -1;
}

int rd_whsig_sign(const char *secret, const char *msg_id, int64_t ts, const void *body, size_t len,
                  char *out, size_t outlen)
{
    unsigned char key[RD_WHSIG_KEY_MAX * 2], md[SHA256_LEN];
    char tsbuf[24];
    int klen = rd_whsig_key(secret, key, sizeof key), rc = -1;

    if (outlen > 0)
        out[0] = '\0';
    snprintf(tsbuf, sizeof tsbuf, "%lld", (long long)ts);
    if (klen > 0 && outlen >= RD_WHSIG_ENTRY &&
        mac_message(key, (size_t)klen, msg_id, tsbuf, body, len, md) == 0) {
        memcpy(out, "v1,", 3);
        EVP_EncodeBlock((unsigned char *)out + 3, md, SHA256_LEN); /* 44 chars + NUL */
        rc = 0;
    }
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(md, sizeof md);
    return rc;
}

int rd_whsig_header(const char *const *secrets, int n, const char *msg_id, int64_t ts,
                    const void *body, size_t len, char *out, size_t outlen)
{
    size_t used = 0;

    if (outlen == 0)
        return -1;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        char one[RD_WHSIG_ENTRY];
        size_t k;
        if (rd_whsig_sign(secrets[i], msg_id, ts, body, len, one, sizeof one) != 0)
            goto fail;
        k = strlen(one);
        if (used + (i > 0) + k + 1 > outlen)
            goto fail;
        if (i > 0)
            out[used++] = ' ';
        memcpy(out + used, one, k + 1);
        used += k;
    }
    return (int)used;
fail:
    out[0] = '\0';
    return -1;
}

bool rd_whsig_verify(const char *secret, const char *header, const char *msg_id, int64_t ts,
                     const void *body, size_t len)
{
    char want[RD_WHSIG_ENTRY];
    bool found = false;

    if (!header || rd_whsig_sign(secret, msg_id, ts, body, len, want, sizeof want) != 0)
        return false;
    /* Every entry is compared, so the time taken does not say which one matched. */
    for (const char *p = header; *p;) {
        size_t k = strcspn(p, " ");
        if (k == strlen(want) && CRYPTO_memcmp(p, want, k) == 0)
            found = true;
        p += k;
        p += strspn(p, " ");
    }
    OPENSSL_cleanse(want, sizeof want);
    return found;
}
