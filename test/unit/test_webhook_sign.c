/*
 * test_webhook_sign.c: Standard Webhooks signatures against the specification's published
 * test vector (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py,
 * test_sign_function: secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id
 * msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330, payload {"test": 2432232314} ->
 * v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=), plus rotation and verification.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "webhook/webhook_sign.h"

#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS 1614265330
#define VEC_BODY "{\"test\": 2432232314}"
#define VEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* base64 of the 32 bytes "another secret of 32 bytes......" */
#define OTHER "whsec_YW5vdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMuLi4uLi4="

static void test_spec_vector(void **state)
{
    char out[RD_WHSIG_ENTRY];

    assert_int_equal(
        rd_whsig_sign(VEC_SECRET, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), out, sizeof out), 0);
    assert_string_equal(out, VEC_SIG);
    /* The reference libraries accept the bare base64 too. */
    assert_int_equal(
        rd_whsig_sign(VEC_SECRET + 6, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), out, sizeof out),
        0);
    assert_string_equal(out, VEC_SIG);
}

static void test_each_input_matters(void **state)
{
    char out[RD_WHSIG_ENTRY];
    const char *body2 = "{\"test\": 2432232315}";

    rd_whsig_sign(VEC_SECRET, VEC_ID, VEC_TS + 1, VEC_BODY, strlen(VEC_BODY), out, sizeof out);
    assert_string_not_equal(out, VEC_SIG);
    rd_whsig_sign(VEC_SECRET, "msg_other", VEC_TS, VEC_BODY, strlen(VEC_BODY), out, sizeof out);
    assert_string_not_equal(out, VEC_SIG);
    rd_whsig_sign(VEC_SECRET, VEC_ID, VEC_TS, body2, strlen(body2), out, sizeof out);
    assert_string_not_equal(out, VEC_SIG);
    rd_whsig_sign(OTHER, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), out, sizeof out);
    assert_string_not_equal(out, VEC_SIG);
}

static void test_rotation_header(void **state)
{
    const char *secrets[] = {VEC_SECRET, OTHER};
    char hdr[2 * RD_WHSIG_ENTRY], other[RD_WHSIG_ENTRY], want[3 * RD_WHSIG_ENTRY];
    int n =
        rd_whsig_header(secrets, 2, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), hdr, sizeof hdr);

    rd_whsig_sign(OTHER, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), other, sizeof other);
    snprintf(want, sizeof want, "%s %s", VEC_SIG, other);
    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(hdr, want);
    assert_true(rd_whsig_verify(VEC_SECRET, hdr, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
    assert_true(rd_whsig_verify(OTHER, hdr, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
    /* Too small a buffer: refused whole, never a truncated header. */
    assert_int_equal(rd_whsig_header(secrets, 2, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), hdr,
                                     RD_WHSIG_ENTRY + 10),
                     -1);
    assert_string_equal(hdr, "");
    assert_int_equal(rd_whsig_header(secrets, 0, VEC_ID, VEC_TS, "", 0, hdr, sizeof hdr), 0);
}

static void test_verify(void **state)
{
    /* The spec's multi-signature case: one valid entry among decoys and another version. */
    const char *hdr = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "
                      "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " VEC_SIG
                      " v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    const char *bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";

    assert_true(rd_whsig_verify(VEC_SECRET, hdr, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
    assert_false(rd_whsig_verify(VEC_SECRET, bad, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
    assert_false(rd_whsig_verify(VEC_SECRET, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
                                 VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
    assert_false(rd_whsig_verify(VEC_SECRET, VEC_SIG, VEC_ID, VEC_TS, VEC_BODY, 5));
    assert_false(rd_whsig_verify(VEC_SECRET, NULL, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
    assert_false(rd_whsig_verify(VEC_SECRET, "", VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY)));
}

static void test_secrets(void **state)
{
    unsigned char key[64];
    char out[RD_WHSIG_ENTRY];

    assert_int_equal(rd_whsig_key(VEC_SECRET, key, sizeof key), 24);
    assert_true(rd_whsig_secret_valid(VEC_SECRET));
    assert_true(rd_whsig_secret_valid(OTHER));
    assert_false(rd_whsig_secret_valid("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")); /* no prefix */
    assert_false(rd_whsig_secret_valid("whsec_c2hvcnQ="));                   /* 5 bytes */
    assert_false(rd_whsig_secret_valid("whsec_not base64!"));
    assert_false(rd_whsig_secret_valid("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS")); /* cut */
    assert_false(rd_whsig_secret_valid(NULL));
    assert_int_equal(rd_whsig_sign("whsec_***", VEC_ID, VEC_TS, "x", 1, out, sizeof out), -1);
    assert_string_equal(out, "");
    assert_int_equal(rd_whsig_sign(VEC_SECRET, VEC_ID, VEC_TS, "x", 1, out, 10), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_vector),     cmocka_unit_test(test_each_input_matters),
        cmocka_unit_test(test_rotation_header), cmocka_unit_test(test_verify),
        cmocka_unit_test(test_secrets),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
