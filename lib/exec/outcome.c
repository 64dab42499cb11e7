/*
 * outcome.c: the attempt's outcome table (SPEC section 1): what was asked first, then how the
 * process ended, then two corrections that hold whatever the cause (a run that ends while a
 * person is asked has not succeeded; item errors make a success incomplete).
 */
#include "exec/outcome.h"

#include <stdio.h>
#include <string.h>

static void by_process(const rd_outcome_in *in, rd_outcome *o)
{
    const rd_worker_exit *ex = in->ex;
    if (in->shutdown) {
        o->status = in->resumable ? RD_ST_QUEUED : RD_ST_CRASHED;
        o->reason = in->resumable ? RD_RS_NONE : RD_RS_INTERRUPTED;
        if (!in->resumable)
            snprintf(o->message, sizeof o->message,
                     "the daemon shut down while the run was active");
    } else if (ex && ex->signaled) {
        o->status = RD_ST_CRASHED;
        o->reason = RD_RS_WORKER_CRASHED;
        snprintf(o->message, sizeof o->message, "worker killed by signal %d (%s)", ex->sig,
                 strsignal(ex->sig));
    } else if (ex && ex->exited && ex->code == 0) {
        o->status = RD_ST_SUCCEEDED;
        o->reason = RD_RS_COMPLETED;
    } else {
        o->status = RD_ST_FAILED;
        o->reason = RD_RS_ERROR_OCCURRED;
        snprintf(o->message, sizeof o->message, "worker exited with status %d", ex ? ex->code : -1);
    }
}

static void by_request(const rd_outcome_in *in, rd_outcome *o)
{
    const rd_worker_exit *ex = in->ex;
    switch (in->end) {
    case RD_END_CANCEL:
        o->status = RD_ST_CANCELLED;
        o->reason = in->end_reason;
        break;
    case RD_END_TIMEOUT:
        o->status = RD_ST_FAILED;
        o->reason = RD_RS_TIMEOUT;
        snprintf(o->message, sizeof o->message, "the run exceeded its flow's timeout");
        break;
    case RD_END_FINISH:
        o->status = in->end_status;
        o->reason = in->end_reason;
        /* A worker the daemon stopped (limit, policy, done grace) exits how SIGTERM makes it;
         * one that exits non-zero by itself after done has failed. */
        if (o->status == RD_ST_SUCCEEDED && ex && ex->exited && ex->code != 0 &&
            !ex->we_signalled) {
            o->status = RD_ST_FAILED;
            o->reason = RD_RS_ERROR_OCCURRED;
            snprintf(o->message, sizeof o->message, "worker exited with status %d after done",
                     ex->code);
        }
        break;
    case RD_END_NONE:
        by_process(in, o);
        break;
    }
}

void rd_outcome_decide(const rd_outcome_in *in, rd_outcome *o)
{
    o->message[0] = 0;
    by_request(in, o);
    bool waiting = in->now == RD_ST_PAUSED || in->now == RD_ST_AUTH_REQUIRED;
    if (waiting && (o->status == RD_ST_SUCCEEDED || o->status == RD_ST_INCOMPLETE)) {
        /* Finishing while a person is asked is not a success: the question is unanswered. */
        o->status = RD_ST_FAILED;
        o->reason = RD_RS_ERROR_OCCURRED;
        snprintf(o->message, sizeof o->message, "worker exited while waiting for %s",
                 in->now == RD_ST_PAUSED ? "an approval" : "an authorization");
    }
    if (o->status == RD_ST_SUCCEEDED && in->item_errors) {
        o->status = RD_ST_INCOMPLETE;
        o->reason = RD_RS_ITEMS_FAILED;
    }
}
