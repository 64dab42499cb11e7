/*
 * engine_int.h: private to the engine's files (engine.c: lifecycle, commit, scheduler,
 * recovery; exec.c: workers and the protocol; engine_api.c: the operations the HTTP layer
 * calls). Nothing outside these three includes it.
 */
#ifndef RUNSD_ENGINE_INT_H
#define RUNSD_ENGINE_INT_H

#include <sys/queue.h>

#include "engine/engine.h"
#include "exec/proto.h"
#include "base/util.h"
#include "exec/worker.h"

struct event;
typedef struct rd_enricher rd_enricher;

typedef struct rd_watch {
    LIST_ENTRY(rd_watch) link;
    struct rd_active *act;
    rd_watch_fn fn;
    void *arg;
} rd_watch;

typedef struct rd_ctl {
    LIST_ENTRY(rd_ctl) link;
    struct rd_active *act;
    rd_ctl_sink sink;
} rd_ctl;

/* A run the engine holds in memory: every non-terminal run, plus terminal ones whose worker
 * is still being reaped. The record is the only copy that may change. */
typedef struct rd_active {
    rd_engine *eng;
    rd_run *run;
    rd_worker *worker;
    struct event *timeout_ev;     /* flow timeout of the current attempt */
    struct event *wait_ev;        /* approval/auth deadline, or done-grace */
    TAILQ_ENTRY(rd_active) qlink; /* in eng->queue while queued for a local worker */
    bool in_queue;
    TAILQ_ENTRY(rd_active) dlink; /* in eng->dirty while its row needs writing */
    bool dirty;
    TAILQ_ENTRY(rd_active) rlink; /* in eng->releasing: freed after the next commit */
    bool releasing;
    bool external;
    bool counted; /* holds an executor slot */
    /* How the current attempt should end once the worker exits. */
    bool finishing;
    rd_status fin_status;
    rd_reason fin_reason;
    bool timed_out;
    bool cancel_requested;
    rd_reason cancel_reason;
    bool limit_hit;
    bool dropped_items;      /* an item of this attempt was dropped (after the limit) */
    int64_t timeout_left_ms; /* flow timeout left while a person is asked */
    int64_t stderr_lines;
    int64_t attempt_started_mono;
    json_t *ctl_log; /* external runs: daemon -> worker messages so far */
    LIST_HEAD(, rd_enricher) enrichers;
    int n_enrichers;
    /* The main worker finished while enrichments still work: the terminal transition waits
     * for the last of them. */
    bool deferred;
    rd_status def_status;
    rd_reason def_reason;
    char def_msg[200];
    LIST_HEAD(, rd_watch) watches;
    LIST_HEAD(, rd_ctl) ctls;
} rd_active;

/* An event appended in the open transaction, published after commit. */
typedef struct rd_pending_pub {
    STAILQ_ENTRY(rd_pending_pub) link;
    rd_pub_event ev;
    char *buf; /* owns the strings of ev */
} rd_pending_pub;

typedef struct rd_listener {
    rd_event_listener fn;
    bool (*wants)(void *arg, const char *run_id); /* NULL: every event */
    void *arg;
} rd_listener;

typedef struct rd_flow_stat {
    int running;
} rd_flow_stat;

struct rd_engine {
    struct event_base *base;
    rd_store *store;
    const rd_config *cfg;
    rd_reaper *reaper;
    rd_map *active;     /* run id -> rd_active */
    rd_map *flow_stats; /* flow name -> rd_flow_stat */
    TAILQ_HEAD(, rd_active) queue;
    TAILQ_HEAD(, rd_active) dirty;
    TAILQ_HEAD(, rd_active) releasing;
    STAILQ_HEAD(, rd_pending_pub) pending;
    struct event *commit_ev;
    struct event *sched_ev;
    struct event *prune_ev; /* retention */
    rd_listener listeners[8];
    int n_listeners;
    int64_t pub_watermark; /* highest committed-to-be id no listener wanted formatted */
    int running;           /* local workers holding a slot */
    int n_watches;         /* ?wait= waiters across all runs */
    int n_queued;          /* runs in status queued (local and external) */
    bool shutting_down;
    bool store_ok;
    struct rd_outbox *outbox;     /* webhooks; may be NULL (tests) */
    unsigned char stream_key[32]; /* HMAC key of stream tokens, kept in the store's kv */
    unsigned char link_key[32];   /* HMAC key of approval/auth links, kept outside the store */
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    struct event *shutdown_ev;
    /* counters for /metrics */
    uint64_t m_runs_created, m_runs_finished[RD_ST__COUNT], m_events, m_items, m_proto_errors,
        m_spawn_failures, m_commits, m_commit_failures, m_pruned;
};

/* engine.c */
/** The single transition function: checks the table, updates the record, marks it dirty,
 * appends run.status (and run.end when terminal), wakes watchers. Returns 0 or
 * RD_ECONFLICT when the table refuses. */
int rd_transition(rd_active *act, rd_status to, rd_reason reason, const char *error_message);
/** Appends an event for act's run in the open transaction (data: borrowed object).
 * item_seq > 0 for items. Returns the event id or 0 on failure. */
int64_t rd_emit(rd_active *act, const char *type, json_t *data, int64_t item_seq);
void rd_mark_dirty(rd_active *act);
/** Schedules a commit at the end of this loop iteration. */
void rd_commit_soon(rd_engine *eng);
void rd_schedule_soon(rd_engine *eng);
/** Starts what the queue and the capacity allow, now (in the caller's transaction). */
void rd_schedule_now(rd_engine *eng);
rd_active *rd_active_get(rd_engine *eng, const char *id);
/** Adopts a record (takes ownership) into the active set. */
rd_active *rd_active_adopt(rd_engine *eng, rd_run *run);
/** Drops act from the active set once it is terminal and has no worker. */
void rd_active_release(rd_active *act);
/** Cancels a pending release (the run became active again). */
void rd_active_keep(rd_active *act);
void rd_enqueue(rd_active *act);
void rd_dequeue(rd_active *act);
void rd_slot_release(rd_active *act);
json_t *rd_active_json(rd_active *act);

/* human.c */
/** approval_required / auth_required from the worker: mint tokens, go paused/auth_required. */
void rd_human_request(rd_active *act, const rd_msg *m);

/* enrich.c */
int rd_enrich_start(rd_active *act, const rd_flow_config *flow, json_t *input, rd_apierr *e);
/** New items (or the run's end): wake the feeders. */
void rd_enrich_kick(rd_active *act);
void rd_enrich_stop(rd_active *act, bool now);
void rd_enrich_dispose(rd_active *act);

/* exec.c */
/** The last enrichment worker of act exited. */
void rd_exec_enrichers_done(rd_active *act);
/** Starts act's attempt: a local worker, or waits for/notifies an external one. */
int rd_exec_start(rd_active *act);
/** Applies one worker message line (from stdout or an external POST). */
void rd_exec_line(rd_active *act, const char *line, size_t len);
/** Cancel: stop the worker (or finish at once when there is none). */
void rd_exec_cancel(rd_active *act, rd_reason reason);
/** Ends an external attempt or one without a worker, applying the finishing state. */
void rd_exec_finish_now(rd_active *act);
/** Stops the worker for shutdown. */
void rd_exec_shutdown(rd_active *act);
/** Sends a daemon -> worker message (stdin, or the control log of an external run). */
void rd_exec_send(rd_active *act, json_t *msg);
void rd_exec_close_ctls(rd_active *act);
void rd_exec_dispose(rd_active *act);
/** After a restart: a waiting run of a resumable flow keeps waiting without a worker. */
void rd_exec_resume_waiting(rd_active *act);
/** rd_map_each callback: kill a worker at once (second shutdown request). */
void rd_exec_kill_cb(const char *key, void *value, void *arg);
/** Records a webhook delivery of type for act's run in the open transaction (no-op for
 * previews and when there is no outbox). run_wire may be NULL (built on demand). */
void rd_notify_webhook(rd_active *act, const char *type, json_t *run_wire);
/** The pending action without its private members, placeholders unrendered. New ref. */
json_t *rd_public_pending(const rd_run *r);
/** Renders approve_url / deny_url / auth_url of a public pending action in place. */
void rd_render_pending(rd_engine *eng, const char *run_id, json_t *pa);
/* engine.c, for exec.c */
void rd_engine_note_worker_gone(rd_engine *eng);

#endif
