/*
 * test_proto.c: the worker protocol module. The parser half is driven with one line per
 * case (valid messages of every type, then every way a line can be refused); the line reader
 * half feeds an evbuffer the way a pipe would and checks that lines come out whole, overlong
 * lines are reported once, and the buffer never grows past max + one chunk.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/proto.h"
#include "base/util.h"

/* ---- helpers --------------------------------------------------------------------------- */

static void parse_ok(const char *line, rd_msg *m)
{
    char err[256];
    int rc = rd_proto_parse(line, strlen(line), m, err, sizeof(err));
    if (rc != 0)
        print_error("unexpected error for %s: %s\n", line, err);
    assert_int_equal(rc, 0);
    assert_non_null(m->root);
    assert_string_equal(err, "");
}

/* Every refusal must be RD_EINVAL, leave the message zeroed, and word a short, single-line,
 * printable reason that contains want. */
static void expect_error_n(const char *line, size_t len, const char *want)
{
    char err[512];
    rd_msg m;
    memset(&m, 0xab, sizeof(m));
    int rc = rd_proto_parse(line, len, &m, err, sizeof(err));
    if (rc != RD_EINVAL || !strstr(err, want))
        print_error("line %.80s: rc %d, err \"%s\", wanted \"%s\"\n", line, rc, err, want);
    assert_int_equal(rc, RD_EINVAL);
    assert_non_null(strstr(err, want));
    assert_null(m.root);
    assert_null(m.data);
    assert_null(m.message);
    assert_true(strlen(err) < 200);
    for (const char *p = err; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
}

static void expect_error(const char *line, const char *want)
{
    expect_error_n(line, strlen(line), want);
}

/* ---- valid messages, one test per type -------------------------------------------------- */

static void test_type_names(void **state)
{
    assert_string_equal(rd_msg_type_name(RD_MSG_STEP), "step");
    assert_string_equal(rd_msg_type_name(RD_MSG_ITEM_ERROR), "item_error");
    assert_string_equal(rd_msg_type_name(RD_MSG_APPROVAL_REQUIRED), "approval_required");
    assert_string_equal(rd_msg_type_name(RD_MSG_ERROR), "error");
    assert_string_equal(rd_msg_type_name(RD_MSG__COUNT), "(invalid)");
    assert_string_equal(rd_msg_type_name((rd_msg_type)-1), "(invalid)");
    /* Every name round-trips through the parser's type lookup. */
    for (int t = 0; t < RD_MSG__COUNT; t++) {
        char line[128], err[256];
        rd_msg m;
        snprintf(line, sizeof(line), "{\"type\":\"%s\"}", rd_msg_type_name((rd_msg_type)t));
        if (rd_proto_parse(line, strlen(line), &m, err, sizeof(err)) == 0) {
            assert_int_equal(m.type, t);
            rd_msg_clear(&m);
        } else {
            assert_null(strstr(err, "unknown type"));
        }
    }
}

static void test_step(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"step\",\"name\":\"fetch\",\"state\":\"started\",\"total\":10}", &m);
    assert_int_equal(m.type, RD_MSG_STEP);
    assert_string_equal(m.name, "fetch");
    assert_string_equal(m.state, "started");
    assert_true(m.has_total);
    assert_int_equal(m.total, 10);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"step\",\"name\":\"fetch\",\"state\":\"finished\"}", &m);
    assert_string_equal(m.state, "finished");
    assert_false(m.has_total);
    rd_msg_clear(&m);
}

static void test_progress(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"progress\",\"done\":3,\"total\":9,\"message\":\"three\"}", &m);
    assert_int_equal(m.type, RD_MSG_PROGRESS);
    assert_int_equal(m.done, 3);
    assert_true(m.has_total);
    assert_int_equal(m.total, 9);
    assert_string_equal(m.message, "three");
    rd_msg_clear(&m);

    /* An explicit null is "not given" for optional fields. */
    parse_ok("{\"type\":\"progress\",\"done\":0,\"total\":null,\"message\":null}", &m);
    assert_int_equal(m.done, 0);
    assert_false(m.has_total);
    assert_null(m.message);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"progress\",\"done\":9223372036854775807}", &m);
    assert_int_equal(m.done, INT64_MAX);
    rd_msg_clear(&m);
}

static void test_log(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"log\",\"level\":\"warn\",\"message\":\"careful\"}", &m);
    assert_int_equal(m.type, RD_MSG_LOG);
    assert_string_equal(m.level, "warn");
    assert_string_equal(m.message, "careful");
    rd_msg_clear(&m);

    const char *levels[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < 4; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"type\":\"log\",\"level\":\"%s\",\"message\":\"\"}",
                 levels[i]);
        parse_ok(line, &m);
        assert_string_equal(m.level, levels[i]);
        rd_msg_clear(&m);
    }

    parse_ok("{\"type\":\"log\",\"message\":\"no level\"}", &m);
    assert_string_equal(m.level, "info");
    rd_msg_clear(&m);
}

static void test_item(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"item\",\"data\":{\"name\":\"pkg\",\"version\":\"1.2.3\",\"size\":12345}}",
             &m);
    assert_int_equal(m.type, RD_MSG_ITEM);
    assert_true(json_is_object(m.data));
    assert_string_equal(json_string_value(json_object_get(m.data, "name")), "pkg");
    assert_int_equal(json_integer_value(json_object_get(m.data, "size")), 12345);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"item\",\"data\":{}}", &m);
    assert_int_equal(json_object_size(m.data), 0);
    rd_msg_clear(&m);
}

static void test_item_error(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"item_error\",\"error\":\"timeout\",\"data\":{\"id\":7}}", &m);
    assert_int_equal(m.type, RD_MSG_ITEM_ERROR);
    assert_string_equal(m.message, "timeout");
    assert_int_equal(json_integer_value(json_object_get(m.data, "id")), 7);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"item_error\",\"error\":\"bad\"}", &m);
    assert_null(m.data);
    rd_msg_clear(&m);
}

static void test_candidate(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"candidate\",\"matched\":true}", &m);
    assert_int_equal(m.type, RD_MSG_CANDIDATE);
    assert_true(m.matched);
    rd_msg_clear(&m);
    parse_ok("{\"type\":\"candidate\",\"matched\":false}", &m);
    assert_false(m.matched);
    rd_msg_clear(&m);
}

static void test_checkpoint(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"checkpoint\",\"cursor\":{\"page\":4}}", &m);
    assert_int_equal(m.type, RD_MSG_CHECKPOINT);
    assert_int_equal(json_integer_value(json_object_get(m.cursor, "page")), 4);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"checkpoint\",\"cursor\":\"abc\"}", &m);
    assert_string_equal(json_string_value(m.cursor), "abc");
    rd_msg_clear(&m);

    /* "Any JSON value" includes null: a worker may reset its cursor. */
    parse_ok("{\"type\":\"checkpoint\",\"cursor\":null}", &m);
    assert_true(json_is_null(m.cursor));
    rd_msg_clear(&m);
}

static void test_auth_required(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"auth_required\",\"url\":\"https://idp.example/auth?s={state}\","
             "\"provider\":\"github\"}",
             &m);
    assert_int_equal(m.type, RD_MSG_AUTH_REQUIRED);
    assert_string_equal(m.url, "https://idp.example/auth?s={state}");
    assert_string_equal(m.provider, "github");
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"auth_required\",\"url\":\"http://127.0.0.1:8080/cb\"}", &m);
    assert_string_equal(m.url, "http://127.0.0.1:8080/cb");
    assert_null(m.provider);
    rd_msg_clear(&m);

    /* Exactly 4096 bytes is still accepted. */
    char line[4300];
    int n = snprintf(line, sizeof(line), "{\"type\":\"auth_required\",\"url\":\"https://");
    memset(line + n, 'a', 4096 - 8);
    snprintf(line + n + 4096 - 8, sizeof(line) - (size_t)n - (4096 - 8), "\"}");
    parse_ok(line, &m);
    assert_int_equal(strlen(m.url), 4096);
    rd_msg_clear(&m);
}

static void test_approval_required(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"approval_required\",\"prompt\":\"Send 40 mails?\","
             "\"details\":{\"count\":40}}",
             &m);
    assert_int_equal(m.type, RD_MSG_APPROVAL_REQUIRED);
    assert_string_equal(m.message, "Send 40 mails?");
    assert_int_equal(json_integer_value(json_object_get(m.details, "count")), 40);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"approval_required\",\"prompt\":\"ok?\"}", &m);
    assert_null(m.details);
    rd_msg_clear(&m);
}

static void test_enrichment(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"enrichment\",\"seq\":1,\"data\":{\"score\":0.5}}", &m);
    assert_int_equal(m.type, RD_MSG_ENRICHMENT);
    assert_int_equal(m.seq, 1);
    assert_true(json_is_real(json_object_get(m.data, "score")));
    rd_msg_clear(&m);
}

static void test_result(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"result\",\"data\":{\"total\":3}}", &m);
    assert_int_equal(m.type, RD_MSG_RESULT);
    assert_int_equal(json_integer_value(json_object_get(m.data, "total")), 3);
    rd_msg_clear(&m);

    parse_ok("{\"type\":\"result\",\"data\":[1,2,3]}", &m);
    assert_int_equal(json_array_size(m.data), 3);
    rd_msg_clear(&m);
}

static void test_done(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"done\"}", &m);
    assert_int_equal(m.type, RD_MSG_DONE);
    assert_null(m.reason);
    rd_msg_clear(&m);

    const char *reasons[] = {"completed", "candidates_exhausted", "low_match_rate"};
    for (size_t i = 0; i < 3; i++) {
        char line[128];
        snprintf(line, sizeof(line), "{\"type\":\"done\",\"reason\":\"%s\"}", reasons[i]);
        parse_ok(line, &m);
        assert_string_equal(m.reason, reasons[i]);
        rd_msg_clear(&m);
    }
}

static void test_error_msg(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"error\",\"message\":\"disk full \\u00e9\"}", &m);
    assert_int_equal(m.type, RD_MSG_ERROR);
    assert_string_equal(m.message, "disk full \xc3\xa9");
    rd_msg_clear(&m);
}

/* "type" first is the convention, not a requirement; unknown keys are ignored. */
static void test_type_anywhere_and_extra_keys(void **state)
{
    rd_msg m;
    parse_ok("{\"matched\":true,\"x\":[1,{\"y\":null}],\"type\":\"candidate\"}", &m);
    assert_int_equal(m.type, RD_MSG_CANDIDATE);
    assert_true(m.matched);
    rd_msg_clear(&m);

    parse_ok("  {\"type\" : \"done\" , \"future\" : {\"a\":1} }  ", &m);
    assert_int_equal(m.type, RD_MSG_DONE);
    rd_msg_clear(&m);
}

static void test_clear(void **state)
{
    rd_msg m;
    memset(&m, 0, sizeof(m));
    rd_msg_clear(&m);
    rd_msg_clear(NULL);
    parse_ok("{\"type\":\"item\",\"data\":{\"a\":1}}", &m);
    rd_msg_clear(&m);
    assert_null(m.root);
    assert_null(m.data);
    rd_msg_clear(&m);
}

/* ---- refusals -------------------------------------------------------------------------- */

static void test_missing_required(void **state)
{
    static const char *const cases[][2] = {
        {"{\"type\":\"step\",\"state\":\"started\"}", "step: missing \"name\""},
        {"{\"type\":\"step\",\"name\":\"a\"}", "step: missing \"state\""},
        {"{\"type\":\"progress\",\"total\":3}", "progress: missing \"done\""},
        {"{\"type\":\"log\",\"level\":\"info\"}", "log: missing \"message\""},
        {"{\"type\":\"item\"}", "item: missing \"data\""},
        {"{\"type\":\"item_error\",\"data\":{}}", "item_error: missing \"error\""},
        {"{\"type\":\"candidate\"}", "candidate: missing \"matched\""},
        {"{\"type\":\"checkpoint\"}", "checkpoint: missing \"cursor\""},
        {"{\"type\":\"auth_required\",\"provider\":\"x\"}", "auth_required: missing \"url\""},
        {"{\"type\":\"approval_required\"}", "approval_required: missing \"prompt\""},
        {"{\"type\":\"enrichment\",\"data\":{}}", "enrichment: missing \"seq\""},
        {"{\"type\":\"enrichment\",\"seq\":1}", "enrichment: missing \"data\""},
        {"{\"type\":\"result\"}", "result: missing \"data\""},
        {"{\"type\":\"error\"}", "error: missing \"message\""},
        {"{\"name\":\"x\"}", "missing \"type\""},
        {"{}", "missing \"type\""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i][0], cases[i][1]);
}

static void test_wrong_types(void **state)
{
    static const char *const cases[][2] = {
        {"{\"type\":\"step\",\"name\":1,\"state\":\"started\"}", "\"name\" must be a string"},
        {"{\"type\":\"step\",\"name\":null,\"state\":\"started\"}", "(got null)"},
        {"{\"type\":\"step\",\"name\":\"a\",\"state\":true}", "\"state\" must be a string"},
        {"{\"type\":\"step\",\"name\":\"a\",\"state\":\"started\",\"total\":\"3\"}",
         "\"total\" must be an integer >= 0 (got string)"},
        {"{\"type\":\"progress\",\"done\":\"3\"}", "\"done\" must be an integer >= 0"},
        {"{\"type\":\"progress\",\"done\":3.0}", "(got number)"},
        {"{\"type\":\"progress\",\"done\":null}", "(got null)"},
        {"{\"type\":\"progress\",\"done\":1,\"total\":[1]}", "\"total\" must be an integer"},
        {"{\"type\":\"progress\",\"done\":1,\"message\":5}", "\"message\" must be a string"},
        {"{\"type\":\"log\",\"level\":3,\"message\":\"m\"}", "\"level\" must be a string"},
        {"{\"type\":\"log\",\"message\":{}}", "\"message\" must be a string (got object)"},
        {"{\"type\":\"item\",\"data\":[]}", "item: \"data\" must be an object (got array)"},
        {"{\"type\":\"item\",\"data\":\"x\"}", "\"data\" must be an object"},
        {"{\"type\":\"item\",\"data\":null}", "\"data\" must be an object (got null)"},
        {"{\"type\":\"item_error\",\"error\":{}}", "\"error\" must be a string"},
        {"{\"type\":\"item_error\",\"error\":\"e\",\"data\":1}", "\"data\" must be an object"},
        {"{\"type\":\"candidate\",\"matched\":1}", "\"matched\" must be a boolean (got integer)"},
        {"{\"type\":\"candidate\",\"matched\":\"true\"}", "\"matched\" must be a boolean"},
        {"{\"type\":\"candidate\",\"matched\":null}", "\"matched\" must be a boolean"},
        {"{\"type\":\"auth_required\",\"url\":5}", "\"url\" must be a string"},
        {"{\"type\":\"auth_required\",\"url\":\"http://a\",\"provider\":1}",
         "\"provider\" must be a string"},
        {"{\"type\":\"approval_required\",\"prompt\":[]}", "\"prompt\" must be a string"},
        {"{\"type\":\"approval_required\",\"prompt\":\"p\",\"details\":\"d\"}",
         "\"details\" must be an object"},
        {"{\"type\":\"enrichment\",\"seq\":\"1\",\"data\":{}}", "\"seq\" must be an integer >= 1"},
        {"{\"type\":\"enrichment\",\"seq\":1,\"data\":[]}", "\"data\" must be an object"},
        {"{\"type\":\"done\",\"reason\":1}", "\"reason\" must be a string"},
        {"{\"type\":\"error\",\"message\":false}", "\"message\" must be a string (got boolean)"},
        {"{\"type\":1}", "\"type\" must be a string (got integer)"},
        {"{\"type\":null}", "\"type\" must be a string (got null)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i][0], cases[i][1]);
}

static void test_bad_values(void **state)
{
    static const char *const cases[][2] = {
        {"{\"type\":\"step\",\"name\":\"\",\"state\":\"started\"}", "\"name\" must not be empty"},
        {"{\"type\":\"step\",\"name\":\"a\",\"state\":\"running\"}",
         "\"state\" must be one of started|finished (got \"running\")"},
        {"{\"type\":\"step\",\"name\":\"a\",\"state\":\"started\",\"total\":-1}",
         "\"total\" must be >= 0 (got -1)"},
        {"{\"type\":\"progress\",\"done\":-5}", "\"done\" must be >= 0 (got -5)"},
        {"{\"type\":\"log\",\"level\":\"fatal\",\"message\":\"m\"}",
         "must be one of debug|info|warn|error (got \"fatal\")"},
        {"{\"type\":\"log\",\"level\":\"INFO\",\"message\":\"m\"}", "(got \"INFO\")"},
        {"{\"type\":\"enrichment\",\"seq\":0,\"data\":{}}", "\"seq\" must be >= 1 (got 0)"},
        {"{\"type\":\"done\",\"reason\":\"bored\"}",
         "must be one of completed|candidates_exhausted|low_match_rate (got \"bored\")"},
        {"{\"type\":\"auth_required\",\"url\":\"ftp://x\"}", "must be an http(s) URL"},
        {"{\"type\":\"auth_required\",\"url\":\"javascript:alert(1)\"}", "http(s) URL"},
        {"{\"type\":\"auth_required\",\"url\":\"https://\"}", "http(s) URL"},
        {"{\"type\":\"auth_required\",\"url\":\"\"}", "http(s) URL"},
        {"{\"type\":\"auth_required\",\"url\":\"https://a\\r\\nSet-Cookie: x\"}",
         "space or control byte"},
        {"{\"type\":\"progress\",\"done\":99999999999999999999}", "too big integer"},
        {"{\"type\":\"item\",\"data\":{},\"data\":{}}", "duplicate object key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i][0], cases[i][1]);

    /* One byte over the URL bound. */
    char line[4300];
    int n = snprintf(line, sizeof(line), "{\"type\":\"auth_required\",\"url\":\"https://");
    memset(line + n, 'a', 4097 - 8);
    snprintf(line + n + 4097 - 8, sizeof(line) - (size_t)n - (4097 - 8), "\"}");
    expect_error(line, "longer than 4096 bytes");
}

static void test_unknown_type(void **state)
{
    expect_error("{\"type\":\"start\"}", "unknown type \"start\"");
    expect_error("{\"type\":\"Item\",\"data\":{}}", "unknown type \"Item\"");
    expect_error("{\"type\":\"\"}", "unknown type \"\"");
    /* The quoted value is sanitized: no control bytes or raw UTF-8 reach the message. */
    expect_error("{\"type\":\"a\\nb\\u00e9\"}", "unknown type \"a?b??\"");
}

static void test_invalid_json(void **state)
{
    expect_error("{\"type\":\"done\"", "invalid JSON");
    expect_error("{\"type\":\"done\"}}", "invalid JSON");
    expect_error("{\"type\":\"done\"} {\"type\":\"done\"}", "invalid JSON");
    expect_error("{type:\"done\"}", "invalid JSON");
    expect_error("{'type':'done'}", "invalid JSON");
    expect_error("{\"type\":\"done\",}", "invalid JSON");
    expect_error("hello world", "invalid JSON at byte");
    expect_error("{\"type\":\"log\",\"message\":\"\\u0000\"}", "invalid JSON");
    expect_error("{\"type\":\"log\",\"message\":\"\\ud800\"}", "invalid JSON");
    expect_error("{\"type\":\"progress\",\"done\":NaN}", "invalid JSON");
}

static void test_invalid_utf8(void **state)
{
    static const char *const cases[] = {
        "{\"type\":\"log\",\"message\":\"\xff\"}",             /* never valid */
        "{\"type\":\"log\",\"message\":\"\xc0\x80\"}",         /* overlong NUL */
        "{\"type\":\"log\",\"message\":\"\xed\xa0\x80\"}",     /* encoded surrogate */
        "{\"type\":\"log\",\"message\":\"\xe2\x82\"}",         /* truncated sequence */
        "{\"type\":\"log\",\"message\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
        "{\"type\":\"log\",\"\x80\":1,\"message\":\"m\"}",     /* in a key */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_error(cases[i], "invalid JSON");
}

static void test_not_object(void **state)
{
    expect_error("[{\"type\":\"done\"}]", "not a JSON object (got array)");
    expect_error("\"done\"", "not a JSON object (got string)");
    expect_error("42", "not a JSON object (got integer)");
    expect_error("null", "not a JSON object (got null)");
    expect_error("true", "not a JSON object (got boolean)");
}

static char *repeat(const char *head, char c, size_t n, const char *tail)
{
    size_t h = strlen(head), t = strlen(tail);
    char *s = malloc(h + n + t + 1);
    assert_non_null(s);
    memcpy(s, head, h);
    memset(s + h, c, n);
    memcpy(s + h + n, tail, t + 1);
    return s;
}

/* Jansson caps nesting at 2048, so hostile depth is refused without deep recursion. */
static void test_deep_nesting(void **state)
{
    char *s = repeat("", '[', 100000, "");
    expect_error(s, "maximum parsing depth");
    free(s);

    s = malloc(5 * 100000 + 1);
    assert_non_null(s);
    for (size_t i = 0; i < 100000; i++)
        memcpy(s + 5 * i, "{\"a\":", 5);
    s[5 * 100000] = '\0';
    expect_error(s, "maximum parsing depth");
    free(s);

    /* Reasonable depth inside a field is fine. */
    char *open = repeat("{\"type\":\"checkpoint\",\"cursor\":", '[', 1000, "");
    char *line = repeat(open, ']', 1000, "}");
    rd_msg m;
    parse_ok(line, &m);
    assert_true(json_is_array(m.cursor));
    rd_msg_clear(&m);
    free(open);
    free(line);
}

static void test_crlf(void **state)
{
    rd_msg m;
    parse_ok("{\"type\":\"done\"}\r", &m);
    assert_int_equal(m.type, RD_MSG_DONE);
    rd_msg_clear(&m);
    /* Only the line end is tolerated, not a stray CR inside a value. */
    expect_error("{\"type\":\"log\",\"message\":\"a\rb\"}\r", "invalid JSON");
}

static void test_empty_line(void **state)
{
    expect_error("", "empty line");
    expect_error("   ", "empty line");
    expect_error("\r", "empty line");
    expect_error(" \t \r", "empty line");
    expect_error_n(NULL, 0, "empty line");
}

static void test_nul_byte(void **state)
{
    static const char line[] = "{\"type\":\"done\"}\0garbage";
    expect_error_n(line, sizeof(line) - 1, "NUL byte");
    static const char inner[] = "{\"type\":\"log\",\"message\":\"a\0b\"}";
    expect_error_n(inner, sizeof(inner) - 1, "NUL byte");
}

/* A hostile worker must not be able to make one error message large or multi-line. */
static void test_error_message_bounded(void **state)
{
    char *s = repeat("{\"type\":\"", 'x', 100000, "\"}");
    expect_error(s, "unknown type \"xxxx");
    free(s);

    s = repeat("{\"type\":\"log\",\"level\":\"", 'y', 100000, "\",\"message\":\"m\"}");
    expect_error(s, "...");
    free(s);

    s = repeat("{\"type\":\"log\",\"message\":\"", 'z', 100000, ""); /* unterminated */
    expect_error(s, "invalid JSON");
    free(s);

    /* A tiny or absent error buffer is honoured. */
    char err[8];
    rd_msg m;
    assert_int_equal(rd_proto_parse("nope", 4, &m, err, sizeof(err)), RD_EINVAL);
    assert_int_equal(strlen(err), 7);
    assert_int_equal(rd_proto_parse("nope", 4, &m, NULL, 0), RD_EINVAL);
    assert_int_equal(rd_proto_parse("{\"type\":\"x\"}", 12, &m, err, 0), RD_EINVAL);
    assert_null(m.root);
}

/* ---- line reader ----------------------------------------------------------------------- */

/* Pulls the next line and checks its text (want NULL: expect rc without a line). */
static void expect_line(rd_linereader *lr, struct evbuffer *in, bool eof, int rc, const char *want)
{
    char *line = (char *)1;
    size_t len = 99;
    int got = rd_linereader_next(lr, in, eof, &line, &len);
    assert_int_equal(got, rc);
    if (rc == RD_LINE_OK) {
        assert_non_null(line);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(line, want, len);
        assert_int_equal(line[len], '\0');
        free(line);
    } else {
        assert_null(line);
        assert_int_equal(len, 0);
    }
}

static void test_lr_several_lines(void **state)
{
    rd_linereader lr = {.max = 64};
    struct evbuffer *in = evbuffer_new();
    evbuffer_add_printf(in, "one\ntwo\n\nthree\r\nfour");
    expect_line(&lr, in, false, RD_LINE_OK, "one");
    expect_line(&lr, in, false, RD_LINE_OK, "two");
    expect_line(&lr, in, false, RD_LINE_OK, ""); /* empty lines reach the parser */
    expect_line(&lr, in, false, RD_LINE_OK, "three\r");
    expect_line(&lr, in, false, RD_LINE_NONE, NULL);
    assert_int_equal(evbuffer_get_length(in), 4);
    evbuffer_free(in);
}

static void test_lr_split_appends(void **state)
{
    rd_linereader lr = {.max = 1024};
    struct evbuffer *in = evbuffer_new();
    const char *text = "{\"type\":\"item\",\"data\":{\"name\":\"pkg\"}}";
    for (const char *p = text; *p; p++) {
        evbuffer_add(in, p, 1);
        expect_line(&lr, in, false, RD_LINE_NONE, NULL);
    }
    evbuffer_add(in, "\n", 1);
    expect_line(&lr, in, false, RD_LINE_OK, text);
    assert_int_equal(evbuffer_get_length(in), 0);
    evbuffer_free(in);
}

static void test_lr_exact_max(void **state)
{
    rd_linereader lr = {.max = 100};
    struct evbuffer *in = evbuffer_new();
    char *exact = repeat("", 'a', 100, "");
    char *over = repeat("", 'b', 101, "");
    evbuffer_add_printf(in, "%s\n%s\nnext\n", exact, over);
    expect_line(&lr, in, false, RD_LINE_OK, exact);
    expect_line(&lr, in, false, RD_LINE_OVERLONG, NULL);
    expect_line(&lr, in, false, RD_LINE_OK, "next");
    expect_line(&lr, in, false, RD_LINE_NONE, NULL);
    assert_false(lr.skipping);

    /* Exactly max without its newline yet must wait, not be called overlong. */
    evbuffer_add(in, exact, 100);
    expect_line(&lr, in, false, RD_LINE_NONE, NULL);
    evbuffer_add(in, "\n", 1);
    expect_line(&lr, in, false, RD_LINE_OK, exact);
    free(exact);
    free(over);
    evbuffer_free(in);
}

static void test_lr_overlong_chunks(void **state)
{
    rd_linereader lr = {.max = 100};
    struct evbuffer *in = evbuffer_new();
    char chunk[7];
    memset(chunk, 'x', sizeof(chunk));
    int overlong = 0;
    for (int i = 0; i < 200; i++) {
        evbuffer_add(in, chunk, sizeof(chunk));
        char *line;
        size_t len;
        int rc;
        while ((rc = rd_linereader_next(&lr, in, false, &line, &len)) != RD_LINE_NONE) {
            assert_int_equal(rc, RD_LINE_OVERLONG);
            overlong++;
        }
        assert_true(evbuffer_get_length(in) <= lr.max + sizeof(chunk));
    }
    assert_int_equal(overlong, 1);
    assert_true(lr.skipping);
    evbuffer_add_printf(in, "tail-of-long\nok\n");
    expect_line(&lr, in, false, RD_LINE_OK, "ok");
    assert_false(lr.skipping);
    evbuffer_free(in);
}

static void test_lr_eof(void **state)
{
    rd_linereader lr = {.max = 16};
    struct evbuffer *in = evbuffer_new();
    evbuffer_add_printf(in, "a\npartial");
    expect_line(&lr, in, true, RD_LINE_OK, "a");
    expect_line(&lr, in, true, RD_LINE_OK, "partial");
    expect_line(&lr, in, true, RD_LINE_NONE, NULL);

    /* An overlong unterminated tail at EOF is reported, and skipping does not outlive it. */
    evbuffer_add_printf(in, "0123456789abcdefXYZ");
    expect_line(&lr, in, true, RD_LINE_OVERLONG, NULL);
    assert_false(lr.skipping);
    assert_int_equal(evbuffer_get_length(in), 0);

    /* EOF while skipping an overlong line found earlier. */
    evbuffer_add_printf(in, "0123456789abcdefXYZ");
    expect_line(&lr, in, false, RD_LINE_OVERLONG, NULL);
    assert_true(lr.skipping);
    evbuffer_add_printf(in, "more");
    expect_line(&lr, in, true, RD_LINE_NONE, NULL);
    assert_false(lr.skipping);
    assert_int_equal(evbuffer_get_length(in), 0);
    evbuffer_free(in);
}

/* An overlong line followed by good lines in the same buffer loses only itself. */
static void test_lr_overlong_then_lines_same_buffer(void **state)
{
    rd_linereader lr = {.max = 8};
    struct evbuffer *in = evbuffer_new();
    evbuffer_add_printf(in, "this line is far too long\nshort\nalso way too long here\nend\n");
    expect_line(&lr, in, false, RD_LINE_OVERLONG, NULL);
    expect_line(&lr, in, false, RD_LINE_OK, "short");
    expect_line(&lr, in, false, RD_LINE_OVERLONG, NULL);
    expect_line(&lr, in, false, RD_LINE_OK, "end");
    expect_line(&lr, in, false, RD_LINE_NONE, NULL);
    evbuffer_free(in);
}

static void test_lr_flood_bounded(void **state)
{
    enum { CHUNK = 4096, TOTAL = 10 * 1024 * 1024 };
    rd_linereader lr = {.max = 64 * 1024};
    struct evbuffer *in = evbuffer_new();
    char *chunk = malloc(CHUNK);
    assert_non_null(chunk);
    memset(chunk, 'f', CHUNK);
    int overlong = 0;
    for (size_t sent = 0; sent < TOTAL; sent += CHUNK) {
        evbuffer_add(in, chunk, CHUNK);
        char *line;
        size_t len;
        int rc = rd_linereader_next(&lr, in, false, &line, &len);
        assert_int_not_equal(rc, RD_LINE_OK);
        if (rc == RD_LINE_OVERLONG)
            overlong++;
        assert_true(evbuffer_get_length(in) <= lr.max + CHUNK);
    }
    assert_int_equal(overlong, 1);
    evbuffer_add_printf(in, "\n{\"type\":\"done\"}\n");
    expect_line(&lr, in, false, RD_LINE_OK, "{\"type\":\"done\"}");
    free(chunk);
    evbuffer_free(in);
}

/* The reader leaves a CRLF line's '\r' in place; the parser tolerates it. */
static void test_lr_to_parser(void **state)
{
    rd_linereader lr = {.max = 256};
    struct evbuffer *in = evbuffer_new();
    evbuffer_add_printf(in, "{\"type\":\"candidate\",\"matched\":true}\r\n");
    char *line, err[128];
    size_t len;
    assert_int_equal(rd_linereader_next(&lr, in, false, &line, &len), RD_LINE_OK);
    rd_msg m;
    assert_int_equal(rd_proto_parse(line, len, &m, err, sizeof(err)), 0);
    assert_true(m.matched);
    rd_msg_clear(&m);
    free(line);
    evbuffer_free(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_item),
        cmocka_unit_test(test_item_error),
        cmocka_unit_test(test_candidate),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_auth_required),
        cmocka_unit_test(test_approval_required),
        cmocka_unit_test(test_enrichment),
        cmocka_unit_test(test_result),
        cmocka_unit_test(test_done),
        cmocka_unit_test(test_error_msg),
        cmocka_unit_test(test_type_anywhere_and_extra_keys),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_invalid_json),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_not_object),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_empty_line),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_error_message_bounded),
        cmocka_unit_test(test_lr_several_lines),
        cmocka_unit_test(test_lr_split_appends),
        cmocka_unit_test(test_lr_exact_max),
        cmocka_unit_test(test_lr_overlong_chunks),
        cmocka_unit_test(test_lr_eof),
        cmocka_unit_test(test_lr_overlong_then_lines_same_buffer),
        cmocka_unit_test(test_lr_flood_bounded),
        cmocka_unit_test(test_lr_to_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
