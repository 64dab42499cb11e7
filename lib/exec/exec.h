/*
 * exec.h: the execution layer: one attempt of a run at a time, carried out by a local worker
 * process or by an external worker over HTTP, plus the run's enrichment workers. It turns
 * worker messages into changes of the run record (through run/runs.h), decides how an attempt
 * ends (outcome.h), and asks the engine nothing: the engine starts, cancels and answers
 * attempts through this header and hears that a local worker has gone through a hook.
 *
 * The attempt object (struct rd_attempt) is private to this layer; it hangs on the run's
 * rd_active in the RD_SLOT_EXEC slot and is freed when the record leaves memory.
 */
#ifndef RUNSD_EXEC_H
#define RUNSD_EXEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "base/apierr.h"
#include "run/runs.h"

typedef struct rd_exec rd_exec;

typedef struct rd_exec_hooks {
    /** A run's local worker has been reaped and its attempt concluded (the executor slot it
     * held is free). */
    void (*worker_gone)(void *arg, rd_active *act);
    void *arg;
} rd_exec_hooks;

/** Creates the layer on rs's loop (installs the SIGCHLD reaper). NULL on failure. */
rd_exec *rd_exec_new(rd_runs *rs, const rd_exec_hooks *hooks);
/** Frees the layer; call after rd_runs_free (which frees the attempts). */
void rd_exec_free(rd_exec *x);
struct rd_metrics;
/** Registers the layer's families in reg (borrowed): worker spawn failures by flow. */
void rd_exec_set_metrics(rd_exec *x, struct rd_metrics *reg);
/** At start, before any run is recovered: SIGKILLs the workers' process groups that a crashed
 * daemon left running (recorded in the store, checked against pid reuse) and waits a few
 * seconds at most until they are gone. Blocks: call before the loop runs. Returns the number
 * of groups still alive after the wait. */
int rd_exec_reap_leftovers(rd_exec *x);

/** Starts an attempt of a queued run: spawns its local worker, or hands it to an external
 * one. The run goes running, or crashed/spawn_failed (then RD_ERR). */
int rd_exec_start(rd_exec *x, rd_active *act);
/** True while act has a local worker process. */
bool rd_exec_has_worker(const rd_active *act);
/** Applies one worker message line (an external worker's POST). */
void rd_exec_line(rd_exec *x, rd_active *act, const char *line, size_t len);
/** Cancel: stop the worker (or end at once when there is none). reason: user_cancelled or
 * approval_denied. */
void rd_exec_cancel(rd_exec *x, rd_active *act, rd_reason reason);
/** True when an end of the attempt was asked (done, error, cancel, timeout, deadline);
 * *reason is the reason asked for. */
bool rd_exec_ending(const rd_active *act, rd_reason *reason);

/** Backpressure from the event streams: while on, no worker's output is read (its pipe fills
 * and the worker blocks on write), so runs produce no faster than subscribers take events. */
void rd_exec_throttle(rd_exec *x, bool on);

/** Shutdown: no attempt ends as if it had failed; each worker is stopped (resumable runs go
 * back to queued, others end crashed/interrupted). Second call: kill at once. */
void rd_exec_shutdown(rd_exec *x, bool now);
/** After a restart: a waiting run of a resumable flow keeps waiting without a worker. */
void rd_exec_resume_waiting(rd_exec *x, rd_active *act);

/* Answers from people (engine/answers.c decides which run; these deliver). */
/** Delivers an approval or successful authorization (msg borrowed): to the live worker, which
 * resumes running, or kept for the worker a re-queue will start (returns true: the caller
 * queues the run). kind is "approval" or "auth". */
bool rd_exec_answer(rd_exec *x, rd_active *act, const char *kind, json_t *msg);
/** Denied approval: tells the worker (msg borrowed) and cancels with approval_denied. */
void rd_exec_deny_approval(rd_exec *x, rd_active *act, json_t *msg);
/** Denied authorization: tells the worker, spends the state, fails with auth_denied. */
void rd_exec_deny_auth(rd_exec *x, rd_active *act, json_t *msg, const char *provider_error);

/** Starts an enrichment worker of flow over the run's items. 0, or fills e. */
int rd_exec_enrich(rd_exec *x, rd_active *act, const rd_flow_config *flow, json_t *input,
                   rd_apierr *e);

/** A sink for daemon -> worker messages of an external run (the control stream). */
typedef struct rd_ctl_sink {
    /** Called with one message line (JSON object text); return non-zero if the sink is gone. */
    int (*send)(void *arg, const char *line, size_t len);
    /** The run ended or the daemon is going away: the sink should close. */
    void (*close)(void *arg);
    void *arg;
} rd_ctl_sink;
/** Attaches a control sink to an external run: replays every message sent so far and
 * delivers new ones. Returns a handle for rd_exec_ctl_detach, or NULL (out of memory). */
void *rd_exec_ctl_attach(rd_exec *x, rd_active *act, const rd_ctl_sink *sink);
void rd_exec_ctl_detach(rd_exec *x, void *handle);

#endif
