/*
 * fsm.h: the run lifecycle of SPEC section 1 as data: statuses, termination reasons, and the
 * transition table. Pure functions, no I/O; the engine's single transition function consults
 * this table before it persists anything.
 */
#ifndef RUNSD_FSM_H
#define RUNSD_FSM_H

#include <stdbool.h>

/* X(ENUM, "wire name", terminal, active) */
#define RD_STATUS_LIST(X)                                                                          \
    X(CREATED, "created", 0, 0)                                                                    \
    X(QUEUED, "queued", 0, 1)                                                                      \
    X(RUNNING, "running", 0, 1)                                                                    \
    X(AUTH_REQUIRED, "auth_required", 0, 1)                                                        \
    X(PAUSED, "paused", 0, 1)                                                                      \
    X(CANCELLING, "cancelling", 0, 1)                                                              \
    X(SUCCEEDED, "succeeded", 1, 0)                                                                \
    X(INCOMPLETE, "incomplete", 1, 0)                                                              \
    X(FAILED, "failed", 1, 0)                                                                      \
    X(CRASHED, "crashed", 1, 0)                                                                    \
    X(CANCELLED, "cancelled", 1, 0)

typedef enum {
#define RD_X_ENUM(e, n, t, a) RD_ST_##e,
    RD_STATUS_LIST(RD_X_ENUM)
#undef RD_X_ENUM
        RD_ST__COUNT
} rd_status;

/* X(ENUM, "wire name", status it belongs to) */
#define RD_REASON_LIST(X)                                                                          \
    X(NONE, "", RD_ST__COUNT)                                                                      \
    X(COMPLETED, "completed", RD_ST_SUCCEEDED)                                                     \
    X(MATCH_LIMIT_MET, "match_limit_met", RD_ST_SUCCEEDED)                                         \
    X(CANDIDATES_EXHAUSTED, "candidates_exhausted", RD_ST_SUCCEEDED)                               \
    X(LOW_MATCH_RATE, "low_match_rate", RD_ST_SUCCEEDED)                                           \
    X(ITEMS_FAILED, "items_failed", RD_ST_INCOMPLETE)                                              \
    X(ERROR_OCCURRED, "error_occurred", RD_ST_FAILED)                                              \
    X(TIMEOUT, "timeout", RD_ST_FAILED)                                                            \
    X(APPROVAL_TIMEOUT, "approval_timeout", RD_ST_FAILED)                                          \
    X(AUTH_TIMEOUT, "auth_timeout", RD_ST_FAILED)                                                  \
    X(AUTH_DENIED, "auth_denied", RD_ST_FAILED)                                                    \
    X(WORKER_CRASHED, "worker_crashed", RD_ST_CRASHED)                                             \
    X(INTERRUPTED, "interrupted", RD_ST_CRASHED)                                                   \
    X(SPAWN_FAILED, "spawn_failed", RD_ST_CRASHED)                                                 \
    X(USER_CANCELLED, "user_cancelled", RD_ST_CANCELLED)                                           \
    X(APPROVAL_DENIED, "approval_denied", RD_ST_CANCELLED)

typedef enum {
#define RD_X_ENUM(e, n, s) RD_RS_##e,
    RD_REASON_LIST(RD_X_ENUM)
#undef RD_X_ENUM
        RD_RS__COUNT
} rd_reason;

/** Wire name of a status ("queued"); "?" for out-of-range values. Static storage. */
const char *rd_status_name(rd_status s);
/** Parses a wire name. 0, or -1 when unknown. */
int rd_status_parse(const char *name, rd_status *out);
bool rd_status_terminal(rd_status s);
bool rd_status_active(rd_status s);

/** Wire name of a reason ("" for NONE). Static storage. */
const char *rd_reason_name(rd_reason r);
int rd_reason_parse(const char *name, rd_reason *out);
/** The terminal status a reason belongs to (RD_ST__COUNT for NONE). */
rd_status rd_reason_status(rd_reason r);

/** True when the table of SPEC section 1 allows from -> to. Guards that depend on the run
 * (extend needs match_limit_met and not preview) are rd_fsm_can_extend's business. */
bool rd_fsm_allowed(rd_status from, rd_status to);
/** True when a run in this status with this reason may be extended (succeeded ->
 * queued): status succeeded, reason match_limit_met, not a preview. */
bool rd_fsm_can_extend(rd_status s, rd_reason r, bool preview);
/** True when enrich is allowed in this status (SPEC section 1). */
bool rd_fsm_can_enrich(rd_status s);

#endif
