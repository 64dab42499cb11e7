/*
 * exec_int.h: private to the files of exec/ above the worker and the protocol parser:
 * apply.c (worker messages -> record changes and a decision), prompt.c (the pending action
 * of a question to a person) and attempt.c (the attempt object).
 */
#ifndef RUNSD_EXEC_INT_H
#define RUNSD_EXEC_INT_H

#include "exec/exec.h"
#include "exec/proto.h"

/* What apply.c knows of the attempt, and updates. */
typedef struct rd_apply_state {
    bool ending;        /* an end was asked: later items are dropped, candidates ignored */
    bool limit_hit;     /* the run's limit was reached in this attempt */
    bool dropped_items; /* an item of this attempt was dropped (after the limit) */
    bool has_worker;
    int64_t replay_skip; /* item lines a resumed worker sends again: not stored twice */
} rd_apply_state;

typedef enum {
    RD_APPLY_NONE,
    RD_APPLY_FINISH,      /* done, error or the limit: close stdin, let the worker exit */
    RD_APPLY_POLICY_STOP, /* a policy ended the run (low match rate): stop the worker */
    RD_APPLY_STOP_WORKER, /* the worker ignores the limit: stop it */
    RD_APPLY_ASK,         /* approval_required / auth_required: the attempt asks a person */
    RD_APPLY_NEW_ITEM,    /* an item was kept: feed the enrichments */
} rd_apply_action;

typedef struct rd_apply_result {
    rd_apply_action action;
    rd_status status;
    rd_reason reason;
} rd_apply_result;

/** Applies one parsed worker message to act's record; says what the attempt must do. */
void rd_apply_msg(rd_active *act, rd_apply_state *st, const rd_msg *m, rd_apply_result *res);

/** The stored pending action of a question to a person, with a fresh nonce and its expiry.
 * New reference, or NULL. */
json_t *rd_prompt_action(const rd_msg *m, int64_t expires_ms);
/** How long a question of this kind waits for its answer. */
int64_t rd_prompt_ttl(const rd_flow_config *flow, bool approval);

#endif
