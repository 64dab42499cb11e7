/*
 * outbox_policy.h: the decisions of webhook delivery as pure functions, so they are tested
 * without a network: which event types exist and which are on by default, what an HTTP
 * answer means, when the next attempt is due (schedule, jitter, Retry-After), and which
 * addresses a client-supplied URL may not reach (SSRF). Stands alone: no daemon state.
 */
#ifndef RUNSD_OUTBOX_POLICY_H
#define RUNSD_OUTBOX_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* X(type, on_by_default): the webhook event types of SPEC section 5. */
#define RD_HOOK_TYPES(X)                                                                           \
    X("run.succeeded", true)                                                                       \
    X("run.incomplete", true)                                                                      \
    X("run.failed", true)                                                                          \
    X("run.crashed", true)                                                                         \
    X("run.cancelled", true)                                                                       \
    X("run.paused", false)                                                                         \
    X("run.auth_required", false)                                                                  \
    X("run.item", false)

/** True for a type of RD_HOOK_TYPES. */
bool rd_outbox_policy_type_known(const char *type);
/** True for the types an endpoint gets when it names none (the terminal ones). */
bool rd_outbox_policy_type_default(const char *type);

typedef enum {
    RD_HOOK_DELIVERED, /* 2xx */
    RD_HOOK_STOP,      /* 410 Gone: stop sending to this endpoint for this run */
    RD_HOOK_RETRY,     /* anything else: try again later, if the schedule allows */
} rd_outbox_policy_outcome;

/** What an HTTP status means (0 = no answer: a transport error, which is retried). */
rd_outbox_policy_outcome rd_outbox_policy_classify(long http_status);
/** True when the answer's Retry-After is honoured (429 and 5xx). */
bool rd_outbox_policy_honours_retry_after(long http_status);

/** Delay before the next attempt after `attempts` attempts (>= 1) have failed: entry
 * attempts-1 of the schedule, scaled by a jitter factor in [0.8, 1.2] drawn from rnd, and
 * never less than retry_after_ms (0 = none; capped at 24 h). Returns -1 when the schedule is
 * spent (give up). */
int64_t rd_outbox_policy_retry_delay(const int64_t *schedule, int n, int attempts,
                                     int64_t retry_after_ms, uint32_t rnd);

/** SSRF guard: NULL when a webhook URL given by an API client may connect to sa, otherwise
 * the class of address that is refused ("loopback", "private", "link-local", ...). IPv6 forms
 * that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address. */
const char *rd_outbox_policy_addr_blocked(const struct sockaddr *sa);

#endif
