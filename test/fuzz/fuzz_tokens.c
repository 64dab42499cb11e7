/*
 * fuzz_tokens.c: libFuzzer target for the small parsers of lib/base and lib/model that take
 * strings straight from a URL, a query or a header:
 *
 *   0  stream tokens (?token= on SSE URLs), checked against a fixed key, plus a round trip
 *   1  link tokens (approve/deny links, OAuth state): parse, then re-make from the parts
 *   2  base64 decode (and encode -> decode round trip of the raw bytes)
 *   3  rd_parse_i64, compared with strtoll; it is also the whole of the Last-Event-ID and
 *      last_event_id parsing (resume_id in lib/api/stream.c, static: rd_parse_i64 and >= 0)
 *   4  rd_parse_duration_ms (config values, ?wait=)
 *   5  status and reason names (?status= filters), rd_ct_streq
 *
 * The first byte picks the parser, the rest is the string. Every parser's output is checked
 * against what its header promises; a broken promise aborts.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/token.h"
#include "base/util.h"
#include "model/fsm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const unsigned char key[RD_TOKEN_KEY_LEN] = "0123456789abcdef0123456789abcdef";
#define NOW_MS 1800000000000LL /* 2027-01-15: fixed, so a result never depends on the clock */

/* Input "RUN_ID\nTOKEN" (or just TOKEN against a fixed run id). */
static void stream_token(char *s)
{
    char *nl = strchr(s, '\n');
    const char *run_id = "run_0123456789abcdefghijkl", *token = s;
    if (nl) {
        *nl = '\0';
        run_id = s;
        token = nl + 1;
    }
    (void)rd_stream_token_check(key, run_id, token, NOW_MS);
    (void)rd_stream_token_check(key, run_id, token, 0);
    /* A token made for any run id that fits must check, and not under another key. */
    char made[128];
    if (rd_stream_token_make(key, run_id, NOW_MS + 60000, made, sizeof made) == 0) {
        CHECK(rd_stream_token_check(key, run_id, made, NOW_MS));
        static const unsigned char other[RD_TOKEN_KEY_LEN] = "another key, another key, anothe";
        CHECK(!rd_stream_token_check(other, run_id, made, NOW_MS));
    }
}

static void link_token(const char *s)
{
    char run_id[64], nonce[64], kind = 0, again[RD_LINK_TOKEN_MAX + 64];
    if (rd_link_token_parse(key, s, run_id, sizeof run_id, &kind, nonce, sizeof nonce) == 0) {
        /* Only a token this key made parses, so re-making it from its parts gives it back. */
        CHECK(kind == 'a' || kind == 'd' || kind == 's');
        CHECK(rd_link_token_make(key, run_id, kind, nonce, again, sizeof again) == 0);
        CHECK(strcmp(again, s) == 0);
    }
    /* The input as a nonce: what make produces, parse must accept with the same parts. */
    if (strlen(s) < 40 && !strchr(s, '.') && s[0]) {
        char tok[RD_LINK_TOKEN_MAX];
        if (rd_link_token_make(key, "run_x", 'a', s, tok, sizeof tok) == 0) {
            CHECK(rd_link_token_parse(key, tok, run_id, sizeof run_id, &kind, nonce,
                                      sizeof nonce) == 0);
            CHECK(kind == 'a' && strcmp(run_id, "run_x") == 0 && strcmp(nonce, s) == 0);
        }
    }
}

static void base64(const char *s, size_t n, const uint8_t *raw, size_t rawn)
{
    unsigned char out[512];
    /* A small capacity too, to exercise the bound. */
    int got = rd_b64_decode(s, n, out, sizeof out);
    CHECK(got >= -1 && got <= (int)sizeof out);
    got = rd_b64_decode(s, n, out, 3);
    CHECK(got >= -1 && got <= 3);

    if (rawn > 300)
        rawn = 300;
    char enc[4 * 100 + 1 + 4];
    size_t len = rd_b64_encode(raw, rawn, enc);
    CHECK(len == 4 * ((rawn + 2) / 3) && enc[len] == '\0');
    got = rd_b64_decode(enc, len, out, sizeof out);
    CHECK(got == (int)rawn && memcmp(out, raw, rawn) == 0);
    len = rd_b64url_encode(raw, rawn, enc);
    CHECK(len == (rawn * 4 + 2) / 3 && !strchr(enc, '+') && !strchr(enc, '/') && !strchr(enc, '='));
}

static bool plain_integer(const char *s)
{
    if (*s == '-')
        s++;
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void integer(const char *s)
{
    int64_t v = 42;
    int rc = rd_parse_i64(s, &v);
    errno = 0;
    char *end;
    long long ref = strtoll(s, &end, 10);
    bool ref_ok = plain_integer(s) && *end == '\0' && errno == 0;
    if (rc == RD_OK) {
        CHECK(ref_ok && ref == v);
    } else {
        CHECK(rc == RD_EINVAL && v == 42);
        /* The one value documented as refused although strtoll takes it. */
        CHECK(!ref_ok || ref == INT64_MIN);
    }
}

static void duration(const char *s)
{
    int64_t ms = -7;
    int rc = rd_parse_duration_ms(s, &ms);
    CHECK(rc == RD_OK ? ms >= 0 : (rc == RD_EINVAL && ms == -7));
}

static void names(const char *s)
{
    rd_status st;
    rd_reason r;
    if (rd_status_parse(s, &st) == 0)
        CHECK(strcmp(rd_status_name(st), s) == 0);
    if (rd_reason_parse(s, &r) == 0)
        CHECK(strcmp(rd_reason_name(r), s) == 0);
    CHECK(rd_ct_streq(s, s));
    CHECK(!rd_ct_streq(s, NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    size_t n = size - 1;
    char *s = malloc(n + 1);
    if (!s)
        return 0;
    memcpy(s, data + 1, n);
    s[n] = '\0';
    switch (data[0] % 6) {
    case 0:
        stream_token(s);
        break;
    case 1:
        link_token(s);
        break;
    case 2:
        base64(s, n, data + 1, n);
        break;
    case 3:
        integer(s);
        break;
    case 4:
        duration(s);
        break;
    default:
        names(s);
        break;
    }
    free(s);
    return 0;
}
