/* test_outcome.c: the attempt's outcome table (exec/outcome.c): what was asked, how the
 * process ended, and the two corrections (waiting for a person, item errors). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <string.h>

#include "exec/outcome.h"

static const rd_worker_exit EXIT0 = {.exited = true, .code = 0};
static const rd_worker_exit EXIT3 = {.exited = true, .code = 3};
static const rd_worker_exit SEGV = {.signaled = true, .sig = SIGSEGV};
static const rd_worker_exit TERMED = {.signaled = true, .sig = SIGTERM, .we_signalled = true};
static const rd_worker_exit EXIT1_STOPPED = {.exited = true, .code = 1, .we_signalled = true};

typedef struct row {
    const char *name;
    rd_outcome_in in;
    rd_status status;
    rd_reason reason;
    const char *message; /* substring of the message, or "" for none */
} row;

static const row table[] = {
    {"clean exit", {.ex = &EXIT0, .now = RD_ST_RUNNING}, RD_ST_SUCCEEDED, RD_RS_COMPLETED, ""},
    {"non-zero exit",
     {.ex = &EXIT3, .now = RD_ST_RUNNING},
     RD_ST_FAILED,
     RD_RS_ERROR_OCCURRED,
     "status 3"},
    {"killed by a signal",
     {.ex = &SEGV, .now = RD_ST_RUNNING},
     RD_ST_CRASHED,
     RD_RS_WORKER_CRASHED,
     "signal 11"},
    {"clean exit with item errors",
     {.ex = &EXIT0, .now = RD_ST_RUNNING, .item_errors = true},
     RD_ST_INCOMPLETE,
     RD_RS_ITEMS_FAILED,
     ""},
    {"done, then exit 0",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_SUCCEEDED,
      .end_reason = RD_RS_COMPLETED,
      .ex = &EXIT0,
      .now = RD_ST_RUNNING},
     RD_ST_SUCCEEDED,
     RD_RS_COMPLETED,
     ""},
    {"done, then exit 1 by itself",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_SUCCEEDED,
      .end_reason = RD_RS_COMPLETED,
      .ex = &EXIT3,
      .now = RD_ST_RUNNING},
     RD_ST_FAILED,
     RD_RS_ERROR_OCCURRED,
     "after done"},
    {"limit met, stopped with SIGTERM",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_SUCCEEDED,
      .end_reason = RD_RS_MATCH_LIMIT_MET,
      .ex = &TERMED,
      .now = RD_ST_RUNNING},
     RD_ST_SUCCEEDED,
     RD_RS_MATCH_LIMIT_MET,
     ""},
    {"low match rate, stopped, exit 1 on SIGTERM",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_SUCCEEDED,
      .end_reason = RD_RS_LOW_MATCH_RATE,
      .ex = &EXIT1_STOPPED,
      .now = RD_ST_RUNNING},
     RD_ST_SUCCEEDED,
     RD_RS_LOW_MATCH_RATE,
     ""},
    {"error message from the worker",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_FAILED,
      .end_reason = RD_RS_ERROR_OCCURRED,
      .ex = &EXIT3,
      .now = RD_ST_RUNNING},
     RD_ST_FAILED,
     RD_RS_ERROR_OCCURRED,
     ""},
    {"timeout beats the exit status",
     {.end = RD_END_TIMEOUT, .ex = &EXIT0, .now = RD_ST_RUNNING},
     RD_ST_FAILED,
     RD_RS_TIMEOUT,
     "timeout"},
    {"cancel beats everything",
     {.end = RD_END_CANCEL,
      .end_reason = RD_RS_USER_CANCELLED,
      .ex = &SEGV,
      .now = RD_ST_CANCELLING},
     RD_ST_CANCELLED,
     RD_RS_USER_CANCELLED,
     ""},
    {"approval denied",
     {.end = RD_END_CANCEL, .end_reason = RD_RS_APPROVAL_DENIED, .ex = NULL, .now = RD_ST_PAUSED},
     RD_ST_CANCELLED,
     RD_RS_APPROVAL_DENIED,
     ""},
    {"approval deadline",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_FAILED,
      .end_reason = RD_RS_APPROVAL_TIMEOUT,
      .ex = &TERMED,
      .now = RD_ST_PAUSED},
     RD_ST_FAILED,
     RD_RS_APPROVAL_TIMEOUT,
     ""},
    {"auth denied, no worker",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_FAILED,
      .end_reason = RD_RS_AUTH_DENIED,
      .ex = NULL,
      .now = RD_ST_AUTH_REQUIRED},
     RD_ST_FAILED,
     RD_RS_AUTH_DENIED,
     ""},
    {"exit 0 while a person is asked",
     {.ex = &EXIT0, .now = RD_ST_PAUSED},
     RD_ST_FAILED,
     RD_RS_ERROR_OCCURRED,
     "waiting for an approval"},
    {"exit 0 while an authorization is asked",
     {.ex = &EXIT0, .now = RD_ST_AUTH_REQUIRED},
     RD_ST_FAILED,
     RD_RS_ERROR_OCCURRED,
     "waiting for an authorization"},
    {"shutdown, resumable flow",
     {.shutdown = true, .resumable = true, .ex = &TERMED, .now = RD_ST_RUNNING},
     RD_ST_QUEUED,
     RD_RS_NONE,
     ""},
    {"shutdown, not resumable",
     {.shutdown = true, .ex = &TERMED, .now = RD_ST_RUNNING},
     RD_ST_CRASHED,
     RD_RS_INTERRUPTED,
     "shut down"},
    {"shutdown does not override a done",
     {.end = RD_END_FINISH,
      .end_status = RD_ST_SUCCEEDED,
      .end_reason = RD_RS_COMPLETED,
      .shutdown = true,
      .ex = &EXIT0,
      .now = RD_ST_RUNNING},
     RD_ST_SUCCEEDED,
     RD_RS_COMPLETED,
     ""},
    {"external worker ends without a process",
     {.ex = NULL, .now = RD_ST_RUNNING},
     RD_ST_FAILED,
     RD_RS_ERROR_OCCURRED,
     "status -1"},
};

static void test_table(void **state)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        const row *t = &table[i];
        rd_outcome o;
        memset(&o, 0x55, sizeof o);
        rd_outcome_decide(&t->in, &o);
        if (o.status != t->status || o.reason != t->reason)
            fail_msg("%s: got %s/%s, want %s/%s", t->name, rd_status_name(o.status),
                     rd_reason_name(o.reason) ? rd_reason_name(o.reason) : "none",
                     rd_status_name(t->status),
                     rd_reason_name(t->reason) ? rd_reason_name(t->reason) : "none");
        if (t->message[0] == 0 && o.message[0] != 0)
            fail_msg("%s: unexpected message '%s'", t->name, o.message);
        if (t->message[0] && !strstr(o.message, t->message))
            fail_msg("%s: message '%s' lacks '%s'", t->name, o.message, t->message);
    }
}

/* Every outcome the table can give is a status the lifecycle allows from running (or from
 * cancelling, for a cancel). */
static void test_outcomes_are_legal(void **state)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        rd_outcome o;
        rd_outcome_decide(&table[i].in, &o);
        rd_status from = o.status == RD_ST_CANCELLED ? RD_ST_CANCELLING : RD_ST_RUNNING;
        if (!rd_fsm_allowed(from, o.status))
            fail_msg("%s: %s -> %s is not in the lifecycle", table[i].name, rd_status_name(from),
                     rd_status_name(o.status));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_outcomes_are_legal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
