/*
 * runs.h: the runs the daemon holds in memory, and the only code that changes a run.
 *
 * An rd_active is a run the daemon is working on (every non-terminal run, plus finished ones
 * that are still being reaped, enriched or answered). Its record (rd_run) is written here and
 * nowhere else: the status through rd_run_transition (which checks the lifecycle table), and
 * every other field (counts, steps, progress, items, pending action, result, extras) through
 * the rd_run_* writers of this header, each of which updates the record, appends its event to
 * the store's open transaction and marks the record dirty. Other layers read the record
 * through rd_active_run() and ask for changes.
 *
 * The commit pipeline lives here too: at the end of a loop iteration (or rd_runs_flush, for
 * operations that must answer only once durable) dirty records are written, the transaction
 * commits, and only then are the new events handed to listeners and watchers woken. A failed
 * commit publishes nothing.
 *
 * Upper layers hang their own per-run state on an rd_active through slots (the execution
 * layer's attempt, the scheduler's queue entry) and learn of status changes and of the
 * record leaving memory through observers; this layer never names them.
 */
#ifndef RUNSD_RUNS_H
#define RUNSD_RUNS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "base/apierr.h"
#include "config/config.h"
#include "model/run.h"
#include "store/store.h"

struct event_base;
struct rd_outbox;
typedef struct rd_runs rd_runs;
typedef struct rd_active rd_active;

/* ---- The set ---------------------------------------------------------------------------- */

/** Creates the set on base, writing to store (both borrowed). Loads or creates the stream-token
 * key (in the store) and the link key (in <store path>.key). NULL on failure. */
rd_runs *rd_runs_new(struct event_base *base, rd_store *store, const rd_config *cfg);
/** Commits what is pending and frees every record (observers' on_free is called for each). */
void rd_runs_free(rd_runs *rs);
/** The config used from now on (borrowed; reload). */
void rd_runs_set_config(rd_runs *rs, const rd_config *cfg);
const rd_config *rd_runs_config(const rd_runs *rs);
struct event_base *rd_runs_base(const rd_runs *rs);
/** The store written (borrowed). Reads also see the open, uncommitted transaction. */
rd_store *rd_runs_store(const rd_runs *rs);
/** Gives the set its webhook outbox (borrowed; may stay NULL in tests). */
void rd_runs_set_outbox(rd_runs *rs, struct rd_outbox *ob);
/** False after a failed commit, until one succeeds. */
bool rd_runs_store_ok(const rd_runs *rs);
/** Runs in status queued (local and external). */
int rd_runs_n_queued(const rd_runs *rs);
struct rd_metrics;
/** Registers the set's families in reg (borrowed; it outlives the set's scrapes): runs by
 * flow and status, finished runs, queue wait and duration, runs waiting for a person, and
 * the set's counts. 0 or RD_ERR. */
int rd_runs_set_metrics(rd_runs *rs, struct rd_metrics *reg);

/** The active record of id, or NULL. */
rd_active *rd_runs_get(rd_runs *rs, const char *id);
/** Adopts a record loaded from the store (takes ownership). NULL on out of memory. */
rd_active *rd_runs_adopt(rd_runs *rs, rd_run *run);
/** A run's record: the active one (*r borrowed, *owned NULL) or a copy read from the store
 * (*r == *owned, which the caller frees). 0, or fills e (404 run_not_found, 503
 * store_unavailable). */
int rd_runs_find(rd_runs *rs, const char *id, const rd_run **r, rd_run **owned, rd_apierr *e);
/** Finds a run in memory or loads and adopts it (a non-active one goes away again after the
 * next commit). 0, or fills e (404 run_not_found, 503 store_unavailable). */
int rd_runs_load(rd_runs *rs, const char *id, rd_active **out, rd_apierr *e);
/** Whether a run exists, cheaply (no wire form, no token): 0 with its status and termination
 * reason, or fills e. */
int rd_runs_lookup(rd_runs *rs, const char *id, rd_status *status, rd_reason *reason, rd_apierr *e);
/** Calls fn for every active record (fn may not free records). */
void rd_runs_each(rd_runs *rs, void (*fn)(rd_active *act, void *arg), void *arg);
/** True when id has the form of a run id. */
bool rd_run_id_valid(const char *id);

/** Creates a run (status created) in the open transaction, with its run.created event and,
 * when idem_key_hash is set, its idempotency key. 0 and *out, or fills e. */
typedef struct rd_run_init {
    const rd_flow_config *flow;
    json_t *input, *metadata, *webhook; /* borrowed; webhook already has its secret */
    int64_t limit;
    bool preview;
    const char *idem_key_hash; /* or NULL */
    const char *body_hash;     /* or NULL */
} rd_run_init;
int rd_runs_create(rd_runs *rs, const rd_run_init *in, rd_active **out, rd_apierr *e);

/* ---- One active record ------------------------------------------------------------------- */

/** The record, read-only. Borrowed while act lives. */
const rd_run *rd_active_run(const rd_active *act);
rd_runs *rd_active_runs(const rd_active *act);
/** The record may leave memory after the next commit once it is not active and nothing holds
 * it; until then release only marks it. */
void rd_active_release(rd_active *act);
/** Undoes a release (the run became active again). */
void rd_active_keep(rd_active *act);
/** Holds act in memory (a worker or an enrichment still uses it); rd_active_unhold drops the
 * hold and performs a release that was asked for meanwhile. */
void rd_active_hold(rd_active *act);
void rd_active_unhold(rd_active *act);

/** Per-run state of upper layers: each owns its slot and clears it in its on_free. */
enum { RD_SLOT_EXEC, RD_SLOT_SCHED, RD_SLOT__COUNT };
void *rd_active_slot(const rd_active *act, int slot);
void rd_active_set_slot(rd_active *act, int slot, void *value);

/** Observers of every record: on_status after each transition (in the open transaction),
 * on_free just before a record leaves memory. Either may be NULL. */
typedef struct rd_runs_observer {
    void (*on_status)(void *arg, rd_active *act, rd_status from, rd_status to);
    void (*on_free)(void *arg, rd_active *act);
    void *arg;
} rd_runs_observer;
/** Returns a handle for rd_runs_unobserve, or NULL. */
void *rd_runs_observe(rd_runs *rs, const rd_runs_observer *o);
void rd_runs_unobserve(rd_runs *rs, void *handle);

/* ---- The writers: every change to a record ------------------------------------------------ */

/** The single transition function: checks the lifecycle table, updates the record, appends
 * run.status (and run.end when terminal), records the webhook, tells observers. 0, or
 * RD_ECONFLICT when the table refuses. error_message (may be NULL) becomes run.error. */
int rd_run_transition(rd_active *act, rd_status to, rd_reason reason, const char *error_message);
/** run.log with level, source and message. */
void rd_run_log(rd_active *act, const char *level, const char *source, const char *message);
/** Counts an invalid worker line; logs the first 100. */
void rd_run_protocol_error(rd_active *act, const char *why);
void rd_run_step(rd_active *act, const char *name, const char *state, bool has_total,
                 int64_t total);
void rd_run_progress(rd_active *act, int64_t done, bool has_total, int64_t total,
                     const char *message);
/** Appends an item (ok) or item error with the next seq; returns the seq, 0 on failure. */
int64_t rd_run_item(rd_active *act, bool ok, json_t *data, const char *error);
/** Counts an item line that was not kept (after the limit or max_items). */
void rd_run_item_dropped(rd_active *act);
/** Counts one evaluated candidate (a progress event every 100). */
void rd_run_candidate(rd_active *act, bool matched);
/** run.progress with the current counters. */
void rd_run_progress_now(rd_active *act);
void rd_run_checkpoint(rd_active *act, json_t *cursor);
void rd_run_result(rd_active *act, json_t *data);
/** Sets run.error to {"message": message[, "provider_error": provider_error]}. */
void rd_run_error(rd_active *act, const char *message, const char *provider_error);
/** Adds an attempt's resource use to the run's totals. */
void rd_run_usage(rd_active *act, int64_t cpu_user_ms, int64_t cpu_sys_ms, int64_t peak_rss_kb,
                  int64_t wall_ms);
/** A new attempt begins (attempt + 1). */
void rd_run_attempt_begins(rd_active *act);
/** Raises the run's limit (extend). */
void rd_run_extend_limit(rd_active *act, int64_t additional);
/** A person is asked: stores pa (stolen; private members start with '_'), goes to to
 * (paused or auth_required) and appends run.approval_required or run.auth_required. */
void rd_run_ask(rd_active *act, json_t *pa, rd_status to);
/** Spends the pending request's one-time link now (the run still waits for its worker). */
void rd_run_spend_request(rd_active *act);
/** Answers kept for a worker restarted after them (kind "approval" or "auth"). */
void rd_run_keep_answer(rd_active *act, const char *kind, json_t *msg);
/** Takes a kept answer of kind (new reference) or NULL. */
json_t *rd_run_take_answer(rd_active *act, const char *kind);
/** Items and item errors stored after the last checkpoint: a worker resuming from that
 * checkpoint sends them again (SPEC section 2: the cursor says where it resumes). */
int64_t rd_run_items_after_checkpoint(const rd_run *r);
/** The reason a cancelling run was cancelled for (user_cancelled unless recorded). */
rd_reason rd_run_cancel_reason(const rd_run *r);
/** Records an enrichment request in run.extra.enrichments; returns its index. */
int rd_run_enrichment_begin(rd_active *act, const char *flow, json_t *input);
/** Sets key of enrichment index (value stolen). */
void rd_run_enrichment_set(rd_active *act, int index, const char *key, json_t *value);
/** Attaches an enrichment to item seq and appends run.item_enriched. 0 or RD_EIO. */
int rd_run_enrich_item(rd_active *act, int64_t seq, const char *flow, json_t *data);

/* ---- Commit and publish ------------------------------------------------------------------- */

/** A committed event, as listeners see it. data is the event's data as JSON text; frame is
 * the SSE data payload {"id","type","run_id","timestamp","data"}, formatted once per audience
 * that sees something different. Borrowed for the call. */
typedef struct rd_pub_event {
    int64_t id;
    const char *run_id;
    const char *flow;
    const char *type;
    int64_t ts;
    const char *data;  /* as stored: link placeholders, never a usable link */
    const char *frame; /* what RD_AUD_FULL sees */
    size_t frame_len;
    /* The frame of an audience that sees something else (the events that carry links), or
     * NULL: that audience gets frame. variant[RD_AUD_FULL] is always NULL. */
    const char *variant[RD_AUD__COUNT];
    size_t variant_len[RD_AUD__COUNT];
    bool run_terminal; /* the run reached a terminal status with this event (run.end) */
} rd_pub_event;
typedef void (*rd_event_listener)(const rd_pub_event *ev, void *arg);

/** Registers a listener called after each commit for each new event, in id order. With a
 * gate, events of runs for which wants(arg, run_id) is false are not formatted; the listener
 * then gets one watermark event per commit (id = the highest such id, run_id/type/data "",
 * frame NULL). Returns a handle for rd_runs_unlisten, or NULL. */
void *rd_runs_listen(rd_runs *rs, rd_event_listener fn, bool (*wants)(void *arg, const char *id),
                     void *arg);
void rd_runs_unlisten(rd_runs *rs, void *handle);

/** Schedules a commit at the end of this loop iteration. */
void rd_runs_commit_soon(rd_runs *rs);
/** Writes dirty records, commits, publishes, wakes watchers, frees released records.
 * 0 or RD_EIO (nothing published). It waits for the commit in flight and for its own: for
 * start, shutdown and timers, never for a request (see rd_runs_after_commit). */
int rd_runs_flush(rd_runs *rs);

/** Called once by rd_runs_after_commit: rc 0 when the commit succeeded, RD_EIO when it
 * failed (what it carried is held for the next one), RD_ERR when the set is freed first. */
typedef void (*rd_commit_fn)(void *arg, int rc);
/** Calls fn(arg, rc) once the commit that carries every write made so far has completed,
 * from the loop and with no commit in flight (so a read then costs the store no wait), after
 * that commit's publications. It is the first commit started after this call; one is
 * scheduled (rd_runs_commit_soon). How a request answers only once durable without holding
 * the loop. A handle for rd_runs_after_commit_cancel, or NULL when out of memory. */
void *rd_runs_after_commit(rd_runs *rs, rd_commit_fn fn, void *arg);
/** The same for the commit in flight: fn(arg, rc) once it has completed, with no commit in
 * flight then, and no new commit asked for. NULL when none is in flight (rd_runs_committing)
 * or out of memory. */
void *rd_runs_after_inflight(rd_runs *rs, rd_commit_fn fn, void *arg);
/** Forgets a call not made yet (its requester went away). */
void rd_runs_after_commit_cancel(rd_runs *rs, void *handle);
/** True while a commit is in flight: a store call that needs an answer would wait for it. */
bool rd_runs_committing(const rd_runs *rs);

/** ?wait= watches: fn(arg) is called once, after the commit that makes the run terminal or
 * waiting for a person (or when the record leaves memory). NULL when the run is not active. */
typedef void (*rd_watch_fn)(void *arg);
void *rd_runs_watch(rd_runs *rs, const char *id, rd_watch_fn fn, void *arg);
void rd_runs_unwatch(rd_runs *rs, void *handle);

/* ---- Wire forms and links (runs_links.c) ---------------------------------------------------- */

/** The wire form of a record with a fresh stream_url and the links aud may see rendered (the
 * others null). New reference. */
json_t *rd_runs_run_json_as(rd_runs *rs, const rd_run *r, rd_audience aud);
/** The same for RD_AUD_FULL (replies to write keys, webhooks, stored run objects). */
json_t *rd_runs_run_json(rd_runs *rs, const rd_run *r);
json_t *rd_active_json(const rd_active *act);
/** The pending action without its private members, placeholders unrendered. New ref. */
json_t *rd_run_public_pending(const rd_run *r);
/** A stored event's data as aud sees it: links it may see rendered, the others null. malloc'd,
 * or NULL when data is shown as it is (no link field). flow (of the run) decides
 * approval_links for RD_AUD_STREAM. */
char *rd_runs_render_event(rd_runs *rs, const char *run_id, const char *flow, const char *type,
                           const char *data, rd_audience aud);

/** An event to format: borrowed strings. */
typedef struct rd_frame_src {
    int64_t id;
    const char *type, *run_id, *flow;
    int64_t ts;
    const char *data; /* as stored */
} rd_frame_src;
/** The SSE data payloads of one event: text[RD_AUD_FULL] always; text[a] of another audience
 * only when it sees something else (an event with links), else NULL (it gets the full one).
 * Owned; free with rd_frames_dispose. */
typedef struct rd_frames {
    char *text[RD_AUD__COUNT];
    size_t len[RD_AUD__COUNT];
} rd_frames;
/** Formats ev for every audience, exactly as live events are published (the one formatter of
 * live and replayed frames). 0, or -1 with nothing allocated. */
int rd_runs_frames(rd_runs *rs, const rd_frame_src *ev, rd_frames *out);
void rd_frames_dispose(rd_frames *f);
bool rd_runs_stream_token_ok(rd_runs *rs, const char *id, const char *token);
/** Verifies an approval/auth link token: 0 with id, kind ('a', 'd' or 's') and nonce. */
int rd_runs_link_parse(rd_runs *rs, const char *token, char *id, size_t idlen, char *kind,
                       char *nonce, size_t noncelen);

#endif
