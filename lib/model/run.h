/*
 * run.h: the persisted record of one run, as plain data shared by the store (which loads and
 * saves it) and the engine (which is its only writer). JSON members are jansson values owned
 * by the record. Rendering to the wire form lives in run_wire.c.
 */
#ifndef RUNSD_RUN_H
#define RUNSD_RUN_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/audience.h"
#include "model/fsm.h"

#define RD_RUN_ID_MAX 64
#define RD_FLOW_NAME_MAX 65

typedef struct rd_run {
    char id[RD_RUN_ID_MAX]; /* "run_" + 22 URL-safe chars */
    char flow[RD_FLOW_NAME_MAX];
    char flow_version[17];
    rd_status status;
    rd_reason reason;
    json_t *input;          /* any JSON value or NULL */
    json_t *metadata;       /* object or NULL */
    json_t *result;         /* any JSON value or NULL */
    json_t *error;          /* {"message":...} or NULL */
    json_t *cursor;         /* last checkpoint or NULL */
    json_t *steps;          /* array of {name,state,total?,started_at,finished_at} or NULL */
    json_t *progress;       /* {done,total?,message?} or NULL */
    json_t *pending_action; /* stored form of the pending action (hashes, never raw tokens) */
    json_t *webhook;        /* {url, events, secret}: secret is stored, never rendered */
    json_t *extra;          /* free-form object for features that need a persisted slot */
    int64_t limit;          /* 0 = unlimited */
    bool preview;
    int attempt; /* 1 on first start; +1 on each resume/extend */
    int64_t n_items, n_item_errors, n_evaluated, n_matched;
    int64_t n_dropped;      /* item lines after the limit */
    int64_t n_proto_errors; /* invalid lines from the worker */
    int64_t n_steps_finished;
    int64_t created_at, started_at, finished_at, updated_at; /* ms since epoch; 0 = null */
    int64_t cpu_user_ms, cpu_sys_ms, peak_rss_kb;            /* summed / max over attempts */
    int64_t run_ms; /* accumulated worker wall time over attempts */
    int64_t last_event_id;
    int64_t next_item_seq;      /* seq the next item gets (starts at 1) */
    char stream_token_hash[65]; /* SHA-256 hex of the run's stream token; "" when none */
    int64_t stream_token_exp;
    char idem_key_hash[65]; /* hash of the Idempotency-Key that created it, or "" */
} rd_run;

/** A zeroed record with status created and next_item_seq 1. Free with rd_run_free. */
rd_run *rd_run_new(void);
void rd_run_free(rd_run *r);
/** Deep copy. NULL on out of memory. */
rd_run *rd_run_dup(const rd_run *r);
/** Frees an array of records (as the store's run_list / runs_active return) and the records. */
void rd_run_array_free(rd_run **runs, size_t n);

/** The wire form of SPEC section 3. public_url (may be NULL) builds approve/deny/auth/stream
 * links; stream_token (may be NULL) is the raw token, added to stream_url when given.
 * New reference owned by the caller. */
json_t *rd_run_to_json(const rd_run *r, const char *public_url, const char *stream_token);

/* ---- Who sees capability links (SPEC section 3) ---- */

/** Hides from pa (a pending action in wire form) the link fields aud may not see: for
 * RD_AUD_READ approve_url, deny_url and auth_url; for RD_AUD_STREAM approve_url and deny_url
 * unless stream_approvals (the flow's approval_links = stream). A hidden field becomes null;
 * absent and null ones stay as they are. Nothing happens to a non-object. True when a field
 * was hidden. */
bool rd_pending_redact(json_t *pa, rd_audience aud, bool stream_approvals);
/** True for the event types whose data may carry a pending action: run.status,
 * run.approval_required, run.auth_required, and the run objects of run.created and run.end. */
bool rd_event_may_link(const char *type);
/** The pending action inside the data of an event of type (borrowed from data), or NULL. */
json_t *rd_event_pending(const char *type, json_t *data);

#endif
