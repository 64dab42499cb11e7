/*
 * test_util.c: unit tests for lib/util.c: durations and integers (good and bad inputs),
 * base64 round trips and RFC 4648 vectors, SHA-256 known answers, constant-time comparison,
 * RFC 3339 formatting, random ids, logging to stderr, and the hash map under 10,000 keys.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/util.h"

static void test_duration_good(void **state)
{
    static const struct {
        const char *in;
        int64_t ms;
    } cases[] = {
        {"250ms", 250},
        {"5s", 5000},
        {"10m", 600000},
        {"2h", 7200000},
        {"1d", 86400000},
        {"0", 0},
        {"0ms", 0},
        {"42", 42000},
        {"007s", 7000},
        {"9223372036854775807ms", INT64_MAX},
        {"9223372036854775s", INT64_C(9223372036854775000)},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -1;

        assert_int_equal(rd_parse_duration_ms(cases[i].in, &ms), RD_OK);
        assert_int_equal(ms, cases[i].ms);
    }
}

static void test_duration_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "-5s",
        "+5s",
        "5 s",
        " 5s",
        "5s ",
        "5x",
        "s",
        "ms",
        "5S",
        "1.5h",
        "5sec",
        "5ms5",
        "0x10",
        "1e3",
        "5MS",
        "h5",
        "9223372036854775808",    /* bare seconds overflow before multiplying */
        "9223372036854776s",      /* overflow when multiplied */
        "99999999999999999999ms", /* too many digits */
        "9223372036854775808ms",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 12345;

        if (rd_parse_duration_ms(bad[i], &ms) != RD_EINVAL)
            fail_msg("'%s' was accepted as %lld ms", bad[i], (long long)ms);
        assert_int_equal(ms, 12345); /* untouched on error */
    }
    assert_int_equal(rd_parse_duration_ms(NULL, NULL), RD_EINVAL);
}

static void test_parse_i64(void **state)
{
    static const char *const bad[] = {
        "", "-", "+1", " 1", "1 ", "1a", "0x1", "9223372036854775808", "--1"};
    int64_t v = 0;

    assert_int_equal(rd_parse_i64("0", &v), RD_OK);
    assert_int_equal(v, 0);
    assert_int_equal(rd_parse_i64("-12", &v), RD_OK);
    assert_int_equal(v, -12);
    assert_int_equal(rd_parse_i64("9223372036854775807", &v), RD_OK);
    assert_int_equal(v, INT64_MAX);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rd_parse_i64(bad[i], &v) != RD_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

static void test_b64_vectors(void **state)
{
    /* RFC 4648 section 10. */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char out[32];
    unsigned char dec[32];

    for (size_t i = 0; i < 7; i++) {
        size_t n = strlen(plain[i]);

        assert_int_equal(rd_b64_encode(plain[i], n, out), strlen(std[i]));
        assert_string_equal(out, std[i]);
        assert_int_equal(rd_b64url_encode(plain[i], n, out), strlen(url[i]));
        assert_string_equal(out, url[i]);
        /* Padding is optional on input. */
        assert_int_equal(rd_b64_decode(std[i], strlen(std[i]), dec, sizeof dec), (int)n);
        assert_memory_equal(dec, plain[i], n);
        assert_int_equal(rd_b64_decode(url[i], strlen(url[i]), dec, sizeof dec), (int)n);
        assert_memory_equal(dec, plain[i], n);
    }
    /* The two alphabets differ in exactly these characters. */
    rd_b64_encode("\xfb\xff", 2, out);
    assert_string_equal(out, "+/8=");
    rd_b64url_encode("\xfb\xff", 2, out);
    assert_string_equal(out, "-_8");
}

static void test_b64_bad(void **state)
{
    static const char *const bad[] = {
        "Zm9vY", "Zm9v!", "Zm=9v", "Z===", "Zg=", "-_8=", "Zg== ", "=", "Zm9vYg=x"};
    unsigned char dec[32];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rd_b64_decode(bad[i], strlen(bad[i]), dec, sizeof dec) != -1)
            fail_msg("'%s' was decoded", bad[i]);
    /* Output capacity is respected. */
    assert_int_equal(rd_b64_decode("Zm9v", 4, dec, 2), -1);
    assert_int_equal(rd_b64_decode("Zm9v", 4, dec, 3), 3);
}

static void test_b64_round_trip(void **state)
{
    unsigned char in[100], dec[100];
    char enc[4 * 34 + 1];

    for (size_t n = 0; n <= sizeof in; n++) {
        size_t len;

        assert_int_equal(rd_random_bytes(in, n), RD_OK);
        len = rd_b64_encode(in, n, enc);
        assert_int_equal(len, 4 * ((n + 2) / 3));
        assert_int_equal(strlen(enc), len);
        assert_int_equal(rd_b64_decode(enc, len, dec, sizeof dec), (int)n);
        assert_memory_equal(dec, in, n);

        len = rd_b64url_encode(in, n, enc);
        assert_int_equal(len, (n * 4 + 2) / 3);
        assert_null(strpbrk(enc, "+/="));
    }
}

static void test_sha256(void **state)
{
    char hex[65];

    rd_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    rd_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    rd_sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

static void test_ct_streq(void **state)
{
    assert_true(rd_ct_streq("secret-value", "secret-value"));
    assert_true(rd_ct_streq("", ""));
    assert_false(rd_ct_streq("secret-value", "secret-valuE"));
    assert_false(rd_ct_streq("secret", "secret-value"));
    assert_false(rd_ct_streq("secret-value", "secret"));
    assert_false(rd_ct_streq(NULL, "x"));
    assert_false(rd_ct_streq("x", NULL));
    assert_false(rd_ct_streq(NULL, NULL));
}

static void test_rfc3339(void **state)
{
    char buf[32];

    rd_rfc3339(INT64_C(1795341600123), buf, sizeof buf);
    assert_string_equal(buf, "2026-11-22T10:00:00.123Z");
    rd_rfc3339(INT64_C(951868799999), buf, sizeof buf); /* leap day, last millisecond */
    assert_string_equal(buf, "2000-02-29T23:59:59.999Z");
    rd_rfc3339(1, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.001Z");
    rd_rfc3339(0, buf, sizeof buf);
    assert_string_equal(buf, "");
    strcpy(buf, "junk");
    rd_rfc3339(-5, buf, sizeof buf);
    assert_string_equal(buf, "");
    /* A short buffer truncates rather than overflows. */
    rd_rfc3339(INT64_C(1795341600123), buf, 11);
    assert_string_equal(buf, "2026-11-22");
}

static void test_clocks(void **state)
{
    int64_t m1 = rd_mono_ms(), m2;

    assert_true(rd_now_ms() > INT64_C(1577836800000)); /* after 2020-01-01 */
    m2 = rd_mono_ms();
    assert_true(m2 >= m1);
}

static void test_random_id(void **state)
{
    char a[40], b[40];

    assert_int_equal(rd_random_id("run_", a, sizeof a), RD_OK);
    assert_int_equal(rd_random_id("run_", b, sizeof b), RD_OK);
    assert_int_equal(strlen(a), 4 + 22);
    assert_memory_equal(a, "run_", 4);
    assert_int_equal(strspn(a + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_"),
                     22);
    assert_string_not_equal(a, b);
    /* Exactly strlen(prefix) + 23 bytes fit; one fewer is refused. */
    assert_int_equal(rd_random_id("run_", a, 27), RD_OK);
    assert_int_equal(rd_random_id("run_", a, 26), RD_EINVAL);
    assert_int_equal(rd_random_id(NULL, a, 23), RD_OK);
    assert_int_equal(strlen(a), 22);
    assert_int_equal(rd_random_bytes(a, 0), RD_OK);
}

/* Runs fn with stderr captured into out (at most outlen - 1 bytes). */
static void capture_stderr(void (*fn)(void), char *out, size_t outlen)
{
    int fds[2], saved;
    ssize_t n;

    assert_int_equal(pipe(fds), 0);
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    fn();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    n = read(fds[0], out, outlen - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
}

static void log_some(void)
{
    rd_log_set_level(RD_LOG_WARN);
    rd_log_debug("hidden debug");
    rd_log_info("hidden info %d", 1);
    rd_log_warn("warned %d", 42);
    errno = EPIPE;
    rd_log_err("two\nlines");
    assert_int_equal(errno, EPIPE); /* logging keeps errno for the caller */
    rd_log_set_level(RD_LOG_DEBUG);
    rd_log_debug("shown");
    rd_log_set_level(RD_LOG_INFO);
    rd_log_debug("hidden again");
}

static void test_log(void **state)
{
    char out[512];

    unsetenv("JOURNAL_STREAM"); /* read at the first line: these lines have timestamps */
    capture_stderr(log_some, out, sizeof out);
    /* Each line: ts=<RFC 3339> level=... msg=...; the timestamps differ run to run. */
    const char *want[] = {"level=warn msg=\"warned 42\"\n", "level=error msg=\"two\\nlines\"\n",
                          "level=debug msg=shown\n"};
    char *p = out;
    for (size_t i = 0; i < 3; i++) {
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_memory_equal(p, "ts=20", 5);
        char *sp = strchr(p, ' ');
        assert_non_null(sp);
        assert_int_equal(sp - p, 3 + 24); /* ts= and 2026-01-02T03:04:05.678Z */
        assert_memory_equal(sp + 1, want[i], strlen(want[i]));
        p = nl + 1;
    }
    assert_string_equal(p, "");
}

static void test_log_format(void **state)
{
    char buf[512];
    const rd_log_field f[] = {RD_LS("route", "/v1/runs/{id}"),
                              RD_LI("status", 201),
                              RD_LS("empty", ""),
                              RD_LS("absent", NULL),
                              RD_LS("q", "a \"b\"=c\\d\x01"),
                              RD_LS("bad", "\xff\xc3\xa9"),
                              RD_LI("neg", -5)};
    int64_t ts = 1767323045678; /* 2026-01-02T03:04:05.678Z */

    rd_log_format_line(buf, sizeof buf, RD_LOG_LOGFMT, false, ts, RD_LOG_INFO, "http request", f,
                       7);
    assert_string_equal(buf, "ts=2026-01-02T03:04:05.678Z level=info msg=\"http request\" "
                             "route=/v1/runs/{id} status=201 empty=\"\" "
                             "q=\"a \\\"b\\\"=c\\\\d\\u0001\" bad=\"\\ufffd\xc3\xa9\" neg=-5\n");
    rd_log_format_line(buf, sizeof buf, RD_LOG_JSON, false, ts, RD_LOG_WARN, "x", f, 2);
    assert_string_equal(buf, "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"warn\",\"msg\":"
                             "\"x\",\"route\":\"/v1/runs/{id}\",\"status\":201}\n");
    /* The journal keeps time and priority itself. */
    rd_log_format_line(buf, sizeof buf, RD_LOG_LOGFMT, true, ts, RD_LOG_ERR, "boom", f + 1, 1);
    assert_string_equal(buf, "<3>level=error msg=boom status=201\n");
    rd_log_format_line(buf, sizeof buf, RD_LOG_JSON, true, ts, RD_LOG_INFO, "m", NULL, 0);
    assert_string_equal(buf, "<6>{\"level\":\"info\",\"msg\":\"m\"}\n");
}

/* A line too long is cut inside a value and still closes its quote and its object. */
static void test_log_cut(void **state)
{
    char big[2000], buf[300];
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = 0;
    const rd_log_field f[] = {RD_LS("v", big), RD_LS("after", "x")};

    for (int fmt = RD_LOG_LOGFMT; fmt <= RD_LOG_JSON; fmt++) {
        size_t n = rd_log_format_line(buf, sizeof buf, fmt, false, 1, RD_LOG_INFO, "m", f, 2);
        assert_true(n < sizeof buf);
        assert_int_equal(buf[n - 1], '\n');
        const char *tail = fmt == RD_LOG_JSON ? "\\\"...\"}\n" : "\\\"...\"\n";
        assert_string_equal(buf + n - strlen(tail), tail);
        assert_null(strstr(buf, "after"));
    }
}

static void count_entry(const char *key, void *value, void *arg)
{
    size_t *sum = arg;

    assert_non_null(key);
    sum[0]++;
    sum[1] += (size_t)(uintptr_t)value;
}

static void test_map(void **state)
{
    enum { N = 10000 };
    rd_map *m = rd_map_new();
    size_t acc[2] = {0, 0};
    char key[32];

    assert_non_null(m);
    for (uintptr_t i = 1; i <= N; i++) {
        snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
        assert_int_equal(rd_map_set(m, key, (void *)i), RD_OK);
    }
    strcpy(key, "overwritten"); /* the map kept its own copies */
    assert_int_equal(rd_map_count(m), N);
    for (uintptr_t i = 1; i <= N; i++) {
        snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
        assert_ptr_equal(rd_map_get(m, key), (void *)i);
    }
    assert_null(rd_map_get(m, "key-0"));
    assert_null(rd_map_get(m, "missing"));
    /* Replacing keeps the count. */
    assert_int_equal(rd_map_set(m, "key-7", (void *)(uintptr_t)7000), RD_OK);
    assert_int_equal(rd_map_count(m), N);
    assert_ptr_equal(rd_map_get(m, "key-7"), (void *)(uintptr_t)7000);
    assert_int_equal(rd_map_set(m, "key-7", (void *)(uintptr_t)7), RD_OK);
    /* Delete the even keys; the odd ones must survive the backward shifts. */
    for (uintptr_t i = 2; i <= N; i += 2) {
        snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
        assert_ptr_equal(rd_map_del(m, key), (void *)i);
        assert_null(rd_map_del(m, key));
    }
    assert_int_equal(rd_map_count(m), N / 2);
    for (uintptr_t i = 1; i <= N; i++) {
        snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
        assert_ptr_equal(rd_map_get(m, key), i % 2 ? (void *)i : NULL);
    }
    rd_map_each(m, count_entry, acc);
    assert_int_equal(acc[0], N / 2);
    assert_int_equal(acc[1], (size_t)(N / 2) * (N / 2)); /* 1 + 3 + ... + (N-1) */
    for (uintptr_t i = 1; i <= N; i += 2) {
        snprintf(key, sizeof key, "key-%lu", (unsigned long)i);
        assert_ptr_equal(rd_map_del(m, key), (void *)i);
    }
    assert_int_equal(rd_map_count(m), 0);
    assert_int_equal(rd_map_set(m, "", (void *)(uintptr_t)1), RD_OK); /* empty key is a key */
    assert_ptr_equal(rd_map_get(m, ""), (void *)(uintptr_t)1);
    rd_map_free(m);
    rd_map_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_good), cmocka_unit_test(test_duration_bad),
        cmocka_unit_test(test_parse_i64),     cmocka_unit_test(test_b64_vectors),
        cmocka_unit_test(test_b64_bad),       cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_sha256),        cmocka_unit_test(test_ct_streq),
        cmocka_unit_test(test_rfc3339),       cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_random_id),     cmocka_unit_test(test_log),
        cmocka_unit_test(test_log_format),    cmocka_unit_test(test_log_cut),
        cmocka_unit_test(test_map),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
