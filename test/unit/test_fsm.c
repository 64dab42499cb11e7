/* test_fsm.c: every (from, to) pair of the lifecycle table against SPEC section 1, written
 * out here independently of lib/fsm.c's bitmasks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "model/fsm.h"

/* The SPEC's table, spelled as strings so a typo in fsm.c's table cannot be mirrored here. */
static const char *legal[] = {
    "created>queued",        "created>cancelled",        "queued>running",
    "queued>cancelled",      "queued>crashed",           "running>auth_required",
    "running>paused",        "running>cancelling",       "running>succeeded",
    "running>incomplete",    "running>failed",           "running>crashed",
    "auth_required>running", "auth_required>cancelling", "auth_required>failed",
    "auth_required>crashed", "paused>running",           "paused>cancelling",
    "paused>failed",         "paused>crashed",           "cancelling>cancelled",
    "running>queued",        "auth_required>queued",     "paused>queued",
    "succeeded>queued",
};

static bool in_legal(const char *from, const char *to)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s>%s", from, to);
    for (size_t i = 0; i < sizeof legal / sizeof legal[0]; i++)
        if (strcmp(legal[i], buf) == 0)
            return true;
    return false;
}

static void test_every_pair(void **state)
{
    int n_allowed = 0;
    for (int f = 0; f < RD_ST__COUNT; f++) {
        for (int t = 0; t < RD_ST__COUNT; t++) {
            bool want = in_legal(rd_status_name(f), rd_status_name(t));
            bool got = rd_fsm_allowed((rd_status)f, (rd_status)t);
            if (want != got)
                fail_msg("%s -> %s: table says %d, spec says %d", rd_status_name(f),
                         rd_status_name(t), got, want);
            n_allowed += got;
        }
    }
    assert_int_equal(n_allowed, (int)(sizeof legal / sizeof legal[0]));
    assert_false(rd_fsm_allowed(RD_ST__COUNT, RD_ST_QUEUED));
    assert_false(rd_fsm_allowed(RD_ST_QUEUED, (rd_status)-1));
}

static void test_terminal_and_active(void **state)
{
    const char *terminal[] = {"succeeded", "incomplete", "failed", "crashed", "cancelled"};
    const char *active[] = {"queued", "running", "auth_required", "paused", "cancelling"};
    for (int s = 0; s < RD_ST__COUNT; s++) {
        bool t = false, a = false;
        for (int i = 0; i < 5; i++) {
            t |= strcmp(terminal[i], rd_status_name(s)) == 0;
            a |= strcmp(active[i], rd_status_name(s)) == 0;
        }
        assert_int_equal(rd_status_terminal(s), t);
        assert_int_equal(rd_status_active(s), a);
    }
    /* created is neither. */
    assert_false(rd_status_terminal(RD_ST_CREATED));
    assert_false(rd_status_active(RD_ST_CREATED));
}

static void test_names_round_trip(void **state)
{
    for (int s = 0; s < RD_ST__COUNT; s++) {
        rd_status back;
        assert_int_equal(rd_status_parse(rd_status_name(s), &back), 0);
        assert_int_equal(back, s);
    }
    rd_status st;
    assert_int_equal(rd_status_parse("QUEUED", &st), -1);
    assert_int_equal(rd_status_parse("", &st), -1);
    assert_string_equal(rd_status_name((rd_status)99), "?");
    for (int r = 1; r < RD_RS__COUNT; r++) {
        rd_reason back;
        assert_int_equal(rd_reason_parse(rd_reason_name(r), &back), 0);
        assert_int_equal(back, r);
    }
    rd_reason rr;
    assert_int_equal(rd_reason_parse("", &rr), -1);
    assert_int_equal(rd_reason_parse("nope", &rr), -1);
}

static void test_reason_status(void **state)
{
    /* SPEC's termination_reason table. */
    static const struct {
        const char *reason, *status;
    } table[] = {
        {"completed", "succeeded"},
        {"match_limit_met", "succeeded"},
        {"candidates_exhausted", "succeeded"},
        {"low_match_rate", "succeeded"},
        {"items_failed", "incomplete"},
        {"error_occurred", "failed"},
        {"timeout", "failed"},
        {"approval_timeout", "failed"},
        {"auth_timeout", "failed"},
        {"auth_denied", "failed"},
        {"worker_crashed", "crashed"},
        {"interrupted", "crashed"},
        {"spawn_failed", "crashed"},
        {"user_cancelled", "cancelled"},
        {"approval_denied", "cancelled"},
    };
    assert_int_equal(sizeof table / sizeof table[0], RD_RS__COUNT - 1);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        rd_reason r;
        assert_int_equal(rd_reason_parse(table[i].reason, &r), 0);
        assert_string_equal(rd_status_name(rd_reason_status(r)), table[i].status);
    }
    assert_int_equal(rd_reason_status(RD_RS_NONE), RD_ST__COUNT);
}

static void test_extend_and_enrich(void **state)
{
    for (int s = 0; s < RD_ST__COUNT; s++) {
        for (int r = 0; r < RD_RS__COUNT; r++) {
            bool want = s == RD_ST_SUCCEEDED && r == RD_RS_MATCH_LIMIT_MET;
            assert_int_equal(rd_fsm_can_extend(s, r, false), want);
            assert_false(rd_fsm_can_extend(s, r, true));
        }
    }
    const char *enrich_ok[] = {"running", "auth_required", "paused", "succeeded", "incomplete"};
    for (int s = 0; s < RD_ST__COUNT; s++) {
        bool want = false;
        for (int i = 0; i < 5; i++)
            want |= strcmp(enrich_ok[i], rd_status_name(s)) == 0;
        assert_int_equal(rd_fsm_can_enrich(s), want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair),        cmocka_unit_test(test_terminal_and_active),
        cmocka_unit_test(test_names_round_trip),  cmocka_unit_test(test_reason_status),
        cmocka_unit_test(test_extend_and_enrich),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
