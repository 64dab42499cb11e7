/*
 * fuzz_json_body.c: libFuzzer target for request bodies, as far as they can be reached from
 * below lib/api. The create-run body check (parse_create and check_webhook in lib/api/api.c)
 * is static and needs an rd_req, so this target drives what those functions rest on:
 *
 *   - the body decoded as rd_req_json_body decodes it (jansson, JSON_REJECT_DUPLICATES);
 *   - rd_outbox_check_webhook (lib/webhook) on the body's "webhook" member, the per-run
 *     webhook validation the API calls last, and on the body itself;
 *   - the Standard Webhooks secret checks (rd_whsig_secret_valid, rd_whsig_key) on every
 *     "secret" string, and rd_whsig_verify of the body as a signature header;
 *   - rd_form_parse (lib/http), the application/x-www-form-urlencoded parser of the approval
 *     and callback pages, on a copy of the raw bytes.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "http/http.h"
#include "webhook/outbox.h"
#include "webhook/outbox_policy.h"
#include "webhook/webhook_sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define SECRET "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

static void check_secret(const char *s)
{
    unsigned char k[RD_WHSIG_KEY_MAX];
    int n = rd_whsig_key(s, k, sizeof k);
    CHECK(n >= -1 && n <= (int)sizeof k);
    if (rd_whsig_secret_valid(s))
        CHECK(n >= RD_WHSIG_KEY_MIN && n <= RD_WHSIG_KEY_MAX);
}

static void check_webhook(json_t *wh)
{
    char err[320];
    err[0] = '\0';
    if (!json_is_object(wh))
        return;
    if (rd_outbox_check_webhook(wh, err, sizeof err) != 0)
        CHECK(err[0] && strlen(err) < sizeof err);
    json_t *sec = json_object_get(wh, "secret");
    if (json_is_string(sec))
        check_secret(json_string_value(sec));
    json_t *ev = json_object_get(wh, "events"), *v;
    size_t i;
    json_array_foreach(ev, i, v)
    {
        if (json_is_string(v))
            (void)rd_outbox_policy_type_known(json_string_value(v));
    }
}

static void form(const uint8_t *data, size_t size)
{
    const char *keys[16], *vals[16];
    char *body = malloc(size + 1);
    if (!body)
        return;
    memcpy(body, data, size);
    body[size] = '\0';
    int n = rd_form_parse(body, keys, vals, 16);
    CHECK(n >= -1 && n <= 16);
    for (int i = 0; i < n; i++)
        CHECK(keys[i] && vals[i] && strlen(keys[i]) <= size && strlen(vals[i]) <= size);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (j) {
        check_webhook(json_object_get(j, "webhook"));
        check_webhook(j);
        /* What is accepted must survive the store's round trip (run input, metadata). */
        char *dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dump) {
            json_t *again = json_loads(dump, JSON_DECODE_ANY, &jerr);
            CHECK(again && json_equal(j, again));
            json_decref(again);
            free(dump);
        }
        json_decref(j);
    }
    /* The body as a webhook-signature header against a fixed message. */
    char *hdr = strndup((const char *)data, size);
    if (hdr) {
        (void)rd_whsig_verify(SECRET, hdr, "msg_1", 1800000000, "{}", 2);
        check_secret(hdr);
        free(hdr);
    }
    form(data, size);
    return 0;
}
