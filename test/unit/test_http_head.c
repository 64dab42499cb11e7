/*
 * test_http_head.c: the request head check in front of libevhtp (lib/http/head.c): what is
 * accepted, and the status and error code of each refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/head.h"

static int check(const char *head, rd_head *h)
{
    return rd_head_parse(head, strlen(head), 2000, 16384, h);
}

static void test_accepts(void **state)
{
    rd_head h;
    assert_int_equal(check("GET / HTTP/1.1\r\nHost: x\r\n\r\n", &h), 0);
    assert_int_equal(h.content_length, -1);
    assert_int_equal(check("GET /healthz HTTP/1.0\r\n\r\n", &h), 0);
    assert_int_equal(check("POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length:  12 \r\n\r\n", &h),
                     0);
    assert_int_equal(h.content_length, 12);
    assert_int_equal(check("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                           "Content-Length: 3\r\n\r\n",
                           &h),
                     0);
    const char *te = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nA: b\r\n\r\n";
    assert_int_equal(check(te, &h), 0);
    assert_true(h.chunked);
    assert_int_equal(h.te_off, strlen("POST / HTTP/1.1\r\nHost: x\r\n"));
    assert_int_equal(h.te_len, strlen("Transfer-Encoding: Chunked\r\n"));
    assert_int_equal(check("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", &h), 0);
    assert_int_equal(check("GET / HTTP/1.1\r\nHost: x\r\nX-Utf8: \xc3\xa9\r\n\r\n", &h), 0);
}

static void test_refuses(void **state)
{
    static const struct {
        const char *head;
        int status;
        const char *code;
    } cases[] = {
        {"GARBAGE\r\n\r\n", 400, "bad_request"},
        {"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
        {"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
        {"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, "bad_request"},
        {"GET / HTTQ/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
        {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
        {"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
        {"M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"},
        {"get / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"},
        {"GET x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_path"},
        {"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_path"},
        {"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_path"},
        {"GET / HTTP/1.1\r\n\r\n", 400, "missing_host"},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "invalid_host"},
        {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "bad_request"},
        {"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, "bad_request"},
        {"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400, "bad_request"},
        {"GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400, "bad_request"},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "invalid_content_length"},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n", 400,
         "invalid_content_length"},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n", 400, "invalid_content_length"},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5,5\r\n\r\n", 400, "invalid_content_length"},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999999999999999\r\n\r\n", 400,
         "invalid_content_length"},
        {"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", 400,
         "invalid_content_length"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         "unsupported_transfer_encoding"},
        {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
         400, "bad_request"},
        {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "bad_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rd_head h;
        int st = check(cases[i].head, &h);
        if (st != cases[i].status || strcmp(h.code, cases[i].code) != 0)
            fail_msg("case %zu: %d %s, expected %d %s", i, st, st ? h.code : "-", cases[i].status,
                     cases[i].code);
    }
}

static void test_sizes(void **state)
{
    char buf[40000];
    rd_head h;
    int n = snprintf(buf, sizeof buf, "GET /%0*d HTTP/1.1\r\nHost: x\r\n\r\n", 2100, 0);
    assert_int_equal(rd_head_parse(buf, (size_t)n, 2000, 16384, &h), 414);
    n = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 20; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "X-%d: %0*d\r\n", i, 1000, 0);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "\r\n");
    assert_int_equal(rd_head_parse(buf, (size_t)n, 2000, 16384, &h), 431);
    assert_string_equal(h.code, "headers_too_large");
    assert_int_equal(rd_head_parse(buf, (size_t)n, 2000, 32768, &h), 0);
}

static void test_chunk_size(void **state)
{
    uint64_t v;
    assert_int_equal(rd_head_chunk_size("1a", 2, &v), 0);
    assert_int_equal(v, 26);
    assert_int_equal(rd_head_chunk_size("A;name=val;x", 12, &v), 0);
    assert_int_equal(v, 10);
    assert_int_equal(rd_head_chunk_size("0 ;last", 7, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(rd_head_chunk_size("", 0, &v), -1);
    assert_int_equal(rd_head_chunk_size("-1", 2, &v), -1);
    assert_int_equal(rd_head_chunk_size("0x10", 4, &v), -1);
    assert_int_equal(rd_head_chunk_size("1 2", 3, &v), -1);
    assert_int_equal(rd_head_chunk_size("ffffffffffffffffff", 18, &v), -1);
    assert_int_equal(rd_head_chunk_size("1;\x01", 3, &v), -1);
}

/* Every status the daemon sends has its RFC 9110 reason phrase (libevhtp's table wrote
 * "422 UNKNOWN"); test_http_status.py checks the status lines on the wire. */
static void test_reasons(void **state)
{
    static const struct {
        int status;
        const char *reason;
    } sent[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {408, "Request Timeout"},
        {409, "Conflict"},
        {410, "Gone"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {415, "Unsupported Media Type"},
        {422, "Unprocessable Content"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {503, "Service Unavailable"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof sent / sizeof sent[0]; i++)
        assert_string_equal(rd_head_reason(sent[i].status), sent[i].reason);
    assert_string_equal(rd_head_reason(299), "Error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts), cmocka_unit_test(test_refuses),
        cmocka_unit_test(test_sizes),   cmocka_unit_test(test_chunk_size),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
