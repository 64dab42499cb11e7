/*
 * token.c: stream tokens (see token.h). HMAC-SHA256 from OpenSSL.
 */
#include "base/token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static int mac(const unsigned char *key, const char *run_id, long long exp_s, char *out,
               size_t outlen)
{
    char msg[160];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(msg, sizeof msg, "%s.%lld", run_id, exp_s);
    if (n < 0 || (size_t)n >= sizeof msg)
        return -1;
    if (!HMAC(EVP_sha256(), key, RD_TOKEN_KEY_LEN, (const unsigned char *)msg, (size_t)n, md,
              &mdlen))
        return -1;
    if (outlen < 4 * ((mdlen + 2) / 3) + 1)
        return -1;
    rd_b64url_encode(md, mdlen, out);
    return 0;
}

int rd_stream_token_make(const unsigned char *key, const char *run_id, int64_t exp_ms, char *out,
                         size_t outlen)
{
    char sig[64];
    long long exp_s = (long long)(exp_ms / 1000);
    if (mac(key, run_id, exp_s, sig, sizeof sig) != 0)
        return -1;
    int n = snprintf(out, outlen, "%lld.%s", exp_s, sig);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

bool rd_stream_token_check(const unsigned char *key, const char *run_id, const char *token,
                           int64_t now_ms)
{
    if (!token || !run_id)
        return false;
    const char *dot = strchr(token, '.');
    if (!dot || dot == token || dot - token > 15)
        return false;
    char num[16];
    memcpy(num, token, (size_t)(dot - token));
    num[dot - token] = 0;
    int64_t exp_s;
    if (rd_parse_i64(num, &exp_s) != 0 || exp_s <= 0 || exp_s * 1000 < now_ms)
        return false;
    char sig[64];
    if (mac(key, run_id, (long long)exp_s, sig, sizeof sig) != 0)
        return false;
    return rd_ct_streq(sig, dot + 1);
}

static int link_mac(const unsigned char *key, const char *run_id, char kind, const char *nonce,
                    char *out, size_t outlen)
{
    char msg[200];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = snprintf(msg, sizeof msg, "link|%s|%c|%s", run_id, kind, nonce);
    if (n < 0 || (size_t)n >= sizeof msg || outlen < 45)
        return -1;
    if (!HMAC(EVP_sha256(), key, RD_TOKEN_KEY_LEN, (const unsigned char *)msg, (size_t)n, md,
              &mdlen))
        return -1;
    rd_b64url_encode(md, mdlen, out);
    out[22] = 0; /* 132 bits are plenty and keep links short */
    return 0;
}

int rd_link_token_make(const unsigned char *key, const char *run_id, char kind, const char *nonce,
                       char *out, size_t outlen)
{
    char mac[64];
    if (link_mac(key, run_id, kind, nonce, mac, sizeof mac) != 0)
        return -1;
    int n = snprintf(out, outlen, "%s.%c%s.%s", run_id, kind, nonce, mac);
    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

int rd_link_token_parse(const unsigned char *key, const char *token, char *run_id,
                        size_t run_id_len, char *kind, char *nonce, size_t nonce_len)
{
    if (!token || strlen(token) >= RD_LINK_TOKEN_MAX)
        return -1;
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d1 || !d2 || strchr(d2 + 1, '.') || (size_t)(d1 - token) >= run_id_len || d2 - d1 < 3 ||
        (size_t)(d2 - d1 - 1) >= nonce_len || strlen(d2 + 1) != 22)
        return -1;
    memcpy(run_id, token, (size_t)(d1 - token));
    run_id[d1 - token] = 0;
    *kind = d1[1];
    if (*kind != 'a' && *kind != 'd' && *kind != 's')
        return -1;
    memcpy(nonce, d1 + 2, (size_t)(d2 - d1 - 2));
    nonce[d2 - d1 - 2] = 0;
    char mac[64];
    if (link_mac(key, run_id, *kind, nonce, mac, sizeof mac) != 0)
        return -1;
    return rd_ct_streq(mac, d2 + 1) ? 0 : -1;
}
