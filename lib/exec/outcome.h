/*
 * outcome.h: how an attempt ends, as a pure function of what the daemon asked for and how
 * the worker process ended. No I/O: the attempt (attempt.c) gathers the inputs and applies
 * the answer; the unit test walks the table.
 */
#ifndef RUNSD_OUTCOME_H
#define RUNSD_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec/worker.h"
#include "model/fsm.h"

/** What the daemon asked of the attempt, by precedence: a cancel beats a timeout, which beats
 * a requested finish (done, error, the limit, a policy, a person's refusal or a deadline). */
typedef enum { RD_END_NONE, RD_END_FINISH, RD_END_TIMEOUT, RD_END_CANCEL } rd_end_kind;

typedef struct rd_outcome_in {
    rd_end_kind end;
    rd_status end_status;     /* RD_END_FINISH: the status asked for */
    rd_reason end_reason;     /* RD_END_FINISH and RD_END_CANCEL: the reason */
    bool shutdown;            /* the daemon is shutting down */
    bool resumable;           /* the run's flow is resumable */
    const rd_worker_exit *ex; /* NULL when there was no process (external, waiting) */
    rd_status now;            /* the run's status when the attempt ends */
    bool item_errors;         /* the run has item errors */
} rd_outcome_in;

typedef struct rd_outcome {
    rd_status status;
    rd_reason reason;
    char message[200]; /* "" or the error message for run.error */
} rd_outcome;

/** Decides the status and termination reason an attempt ends with. */
void rd_outcome_decide(const rd_outcome_in *in, rd_outcome *out);

#endif
