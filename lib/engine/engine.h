/*
 * engine.h: the run engine: the operations on runs (create, cancel, extend, enrich, answers
 * from people, reads), the scheduler and recovery, on top of the run records (run/) and the
 * execution layer (exec/). The HTTP layer calls these operations; each returns 0 or fills an
 * rd_apierr with the HTTP status and a stable error code. An operation that changes state
 * returns its reply before the change is committed: the caller sends it only once
 * rd_engine_after_commit says the commit succeeded, so a reply never acknowledges anything the
 * store could lose, and no request holds the loop while the store works.
 */
#ifndef RUNSD_ENGINE_H
#define RUNSD_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/apierr.h"
#include "config/config.h"
#include "exec/exec.h"
#include "run/runs.h"
#include "store/store.h"

struct event_base;
typedef struct rd_engine rd_engine;

/** Creates the engine. Borrows base, store and cfg (cfg must outlive it or be replaced with
 * rd_engine_set_config). NULL on out of memory. */
rd_engine *rd_engine_new(struct event_base *base, rd_store *store, const rd_config *cfg);
/** Frees the engine; workers still alive are killed. */
void rd_engine_free(rd_engine *eng);
/** Swaps the config used for flows and limits from now on (reload). Borrowed. */
void rd_engine_set_config(rd_engine *eng, const rd_config *cfg);
/** Recovery per SPEC section 6; then schedules. 0 or RD_EIO. */
int rd_engine_recover(rd_engine *eng);
struct rd_outbox;
/** Gives the engine its webhook outbox (borrowed). */
void rd_engine_set_outbox(rd_engine *eng, struct rd_outbox *ob);
/** Registers a listener called after each commit for each new event, in id order. */
int rd_engine_add_listener(rd_engine *eng, rd_event_listener fn, void *arg);
/** The same, with a gate: events of runs for which wants(arg, run_id) is false are not
 * formatted; the listener then gets one watermark event per commit (id = the highest such id,
 * run_id/type/data "" and frame NULL) so it still learns the last committed id. */
int rd_engine_add_listener_gated(rd_engine *eng, rd_event_listener fn,
                                 bool (*wants)(void *arg, const char *run_id), void *arg);
/** Begins shutdown: no new starts; workers are stopped; resumable runs go back to queued,
 * others end crashed/interrupted. done(arg) is called from the loop once no worker is left. */
void rd_engine_shutdown(rd_engine *eng, void (*done)(void *arg), void *arg);
/** Commits pending writes and publishes their events now, waiting for the store: for
 * shutdown, never for a request. 0 or RD_EIO. */
int rd_engine_flush(rd_engine *eng);
/** Calls fn(arg, rc) from the loop once every change made so far is committed (rc 0) or the
 * commit carrying it failed (RD_EIO; RD_ERR when the engine is freed first), after that
 * commit's events were published and with no commit in flight: where a request answers a
 * change, or reads the store, without holding the loop (rd_runs_after_commit). A handle for
 * rd_engine_after_commit_cancel, or NULL when out of memory. */
void *rd_engine_after_commit(rd_engine *eng, void (*fn)(void *arg, int rc), void *arg);
/** fn(arg, rc) once the commit in flight has completed (rd_runs_after_inflight); NULL when
 * none is in flight (rd_engine_committing) or out of memory. */
void *rd_engine_after_inflight(rd_engine *eng, void (*fn)(void *arg, int rc), void *arg);
/** Forgets a call not made yet (the request went away). */
void rd_engine_after_commit_cancel(rd_engine *eng, void *handle);
/** The store the engine writes (borrowed), for readers such as the SSE replay. Read it
 * from rd_engine_after_commit: reads also see the engine's open, uncommitted transaction. */
rd_store *rd_engine_store(rd_engine *eng);
/** True while the store accepts writes (readiness). */
bool rd_engine_ready(const rd_engine *eng);
/** True unless the last commit failed or the store's health probe finds no database. */
bool rd_engine_store_ok(const rd_engine *eng);
/** The oldest event id the store keeps (0 when it keeps none), for streams resuming from
 * before it (stream.reset). Read once, then kept current by retention pruning, the only
 * thing that deletes events: opening a stream reads nothing for it. 0 or RD_EIO. */
int rd_engine_oldest_event_id(rd_engine *eng, int64_t *out);
/** True while a commit is in flight: a read of the store would wait for it (the SSE replay
 * then tries again after it). */
bool rd_engine_committing(const rd_engine *eng);
/** Backpressure from the event streams: while on, workers' output is not read. */
void rd_engine_throttle(rd_engine *eng, bool on);
/** True while the store's journal is past [store] max_journal (the store fails and holds that
 * much): workers' output is not read, and external workers' posts should wait, until a
 * commit succeeds. */
bool rd_engine_store_pressure(const rd_engine *eng);
/** fn(arg) is called from the loop once the store's pressure is lifted (the owner of held
 * posts lets them go). One callback; NULL removes it. */
void rd_engine_on_release(rd_engine *eng, void (*fn)(void *arg), void *arg);
/** How many runs are running (local workers holding a slot), queued for a slot, and waiting
 * for a person (paused or auth_required, in memory): for the daemon's status line. */
void rd_engine_counts(rd_engine *eng, int *running, int *queued, int *waiting);
struct rd_metrics;
/** Registers the engine's families, and those of the runs and workers under it, in reg
 * (borrowed; it must outlive the engine's scrapes). 0 or RD_ERR. */
int rd_engine_set_metrics(rd_engine *eng, struct rd_metrics *reg);

typedef struct rd_create_req {
    const char *flow;
    json_t *input;    /* borrowed; any JSON or NULL */
    json_t *metadata; /* borrowed; object or NULL */
    json_t *webhook;  /* borrowed; validated object or NULL */
    int64_t limit;    /* 0 = flow default */
    bool preview;
    bool start;            /* default true */
    const char *idem_key;  /* Idempotency-Key (already scoped by the caller) or NULL */
    const char *body_hash; /* SHA-256 hex of the request body, for idempotency */
} rd_create_req;

/** Creates a run. *out is the run's wire form (new reference); *replayed is set when an
 * Idempotency-Key matched an earlier identical request. */
int rd_engine_create(rd_engine *eng, const rd_create_req *req, json_t **out, bool *replayed,
                     rd_apierr *e);
/** The run's wire form, with the links aud may see (SPEC section 3, "Who sees capability
 * links"). */
int rd_engine_get(rd_engine *eng, const char *id, rd_audience aud, json_t **out, rd_apierr *e);
/** True when the run is terminal or waits for a human (the ?wait= condition), or unknown. */
bool rd_engine_settled(rd_engine *eng, const char *id);
/** A page of runs, each with the links aud may see. */
int rd_engine_list(rd_engine *eng, const rd_run_filter *f, int page, int page_size, rd_audience aud,
                   json_t **out, rd_apierr *e);
int rd_engine_cancel(rd_engine *eng, const char *id, json_t **out, rd_apierr *e);
int rd_engine_start(rd_engine *eng, const char *id, json_t **out, rd_apierr *e);

/** POST /v1/runs/{id}/extend: succeeded/match_limit_met, non-preview runs only. */
int rd_engine_extend(rd_engine *eng, const char *id, int64_t additional, json_t **out,
                     rd_apierr *e);
/** POST /v1/runs/{id}/enrich: runs flow's worker over every current and future item. */
int rd_engine_enrich(rd_engine *eng, const char *id, const char *flow, json_t *input, json_t **out,
                     rd_apierr *e);

typedef struct rd_results_req {
    int status;    /* 0 any, 1 ok, 2 error */
    int64_t after; /* > 0: cursor mode */
    bool has_after;
    int page;      /* from 1 */
    int page_size; /* 1..100 */
} rd_results_req;
int rd_engine_results(rd_engine *eng, const char *id, const rd_results_req *q, json_t **out,
                      rd_apierr *e);
/** The event log as JSON: {"items":[...], "has_more", "next_after"}, with the links aud may
 * see. */
int rd_engine_events(rd_engine *eng, const char *id, int64_t after, int limit, rd_audience aud,
                     json_t **out, rd_apierr *e);
/** GET /v1/flows. New reference. */
json_t *rd_engine_flows(rd_engine *eng);

/** The wire form of a run record, with a fresh stream_url. New reference. */
json_t *rd_engine_run_json(rd_engine *eng, const rd_run *r);
/** True when token is a valid stream token for run id. */
bool rd_engine_stream_token_ok(rd_engine *eng, const char *id, const char *token);

/* People: approvals and authorizations (human.c). Each answers like the others: 0 and *out
 * ({decision|status, run}), or an rd_apierr (404 token_invalid, 410 token_spent/expired,
 * 409 run_not_paused...). */
int rd_engine_approval_by_token(rd_engine *eng, const char *token, const char *comment,
                                json_t **out, rd_apierr *e);
int rd_engine_approval_by_id(rd_engine *eng, const char *id, bool approve, const char *comment,
                             json_t **out, rd_apierr *e);
/** What a token would do (run_id, decision, prompt, details), changing nothing. */
int rd_engine_approval_peek(rd_engine *eng, const char *token, json_t **out, rd_apierr *e);
int rd_engine_auth_by_state(rd_engine *eng, const char *state, const char *code, const char *error,
                            json_t **out, rd_apierr *e);
int rd_engine_auth_by_id(rd_engine *eng, const char *id, const char *code, const char *error,
                         json_t **out, rd_apierr *e);
/** Builds the SSE data payloads of a stored event ({"id","type","run_id","timestamp","data"}),
 * one per audience that sees it differently, exactly as live events are published (see
 * rd_runs_frames). 0 or -1. */
int rd_engine_event_frames(rd_engine *eng, const rd_event *ev, rd_frames *out);

/* External workers (flows with executor = external). */
/** Applies an NDJSON body of worker messages to the run. *out summarises what was accepted. */
int rd_engine_ext_post(rd_engine *eng, const char *id, const char *body, size_t len, json_t **out,
                       rd_apierr *e);

/** Attaches a control sink: replays every message sent so far (start, answers) and delivers
 * new ones; starts a queued external run. Returns a handle for rd_engine_ctl_detach. */
int rd_engine_ctl_attach(rd_engine *eng, const char *id, const rd_ctl_sink *sink, void **handle,
                         rd_apierr *e);
void rd_engine_ctl_detach(rd_engine *eng, void *handle);

/* Watches, for GET /v1/runs/{id}?wait=N: fn is called once (after a commit) when the run is
 * terminal or waiting for a human. */
void *rd_engine_watch(rd_engine *eng, const char *id, rd_watch_fn fn, void *arg);
void rd_engine_unwatch(rd_engine *eng, void *handle);

#endif
