/*
 * run_int.h: private to the files of run/. The module "runs" is split by concern: runs.c (the
 * set and its records), runs_commit.c (the commit pipeline), runs_links.c (wire forms and
 * links); record.c (the writers) sits on top of it and nothing in it calls record.c.
 */
#ifndef RUNSD_RUN_INT_H
#define RUNSD_RUN_INT_H

#include <sys/queue.h>

#include "base/util.h"
#include "run/runs.h"

struct event;

typedef struct rd_watch {
    LIST_ENTRY(rd_watch) link;
    struct rd_active *act;
    rd_watch_fn fn;
    void *arg;
} rd_watch;

typedef struct rd_observer {
    LIST_ENTRY(rd_observer) link;
    rd_runs_observer o;
} rd_observer;

/* A caller waiting for the commit that carries what was written before it asked
 * (rd_runs_after_commit). */
typedef struct rd_after {
    TAILQ_ENTRY(rd_after) link;
    uint64_t ticket; /* the first commit started after it asked */
    rd_commit_fn fn;
    void *arg;
} rd_after;

typedef struct rd_listener {
    LIST_ENTRY(rd_listener) link;
    rd_event_listener fn;
    bool (*wants)(void *arg, const char *run_id); /* NULL: every event */
    void *arg;
} rd_listener;

/* An event appended in the open transaction, published after commit. */
typedef struct rd_pending_pub {
    STAILQ_ENTRY(rd_pending_pub) link;
    rd_pub_event ev;
    rd_frames frames; /* owns ev's frame and variants */
    char *buf;        /* owns the other strings of ev */
} rd_pending_pub;

struct rd_active {
    rd_runs *rs;
    rd_run *run;
    TAILQ_ENTRY(rd_active) dlink; /* in rs->dirty while its row needs writing */
    bool dirty;
    TAILQ_ENTRY(rd_active) rlink; /* in rs->releasing: freed after the next commit */
    bool releasing;
    bool release_wanted;    /* asked while held */
    uint64_t written_in;    /* the commit (ticket) that carries its row as it is now */
    uint64_t release_after; /* freed once this commit (ticket) has completed */
    int holds;
    int64_t queued_at; /* ms since epoch when it last entered queued (queue wait metrics) */
    void *slots[RD_SLOT__COUNT];
    LIST_HEAD(, rd_watch) watches;
};

struct rd_runs {
    struct event_base *base;
    rd_store *store;
    const rd_config *cfg;
    struct rd_outbox *outbox;
    rd_map *active; /* run id -> rd_active */
    TAILQ_HEAD(, rd_active) dirty;
    TAILQ_HEAD(, rd_active) releasing;
    STAILQ_HEAD(, rd_pending_pub) pending;
    LIST_HEAD(, rd_listener) listeners;
    LIST_HEAD(, rd_observer) observers;
    TAILQ_HEAD(, rd_after) afters; /* in ticket order */
    struct event *commit_ev;
    struct event *retry_ev;  /* after a failed commit */
    struct event *commit_io; /* waits on the store's socket for the commit in flight */
    uint64_t tickets;        /* commits started (the last one's ticket) */
    uint64_t inflight;       /* the ticket of the commit in flight, 0: none */
    bool again;              /* a commit was asked for while one was in flight */
    bool commit_late;        /* the one in flight is late: probe_down was set for it */
    int64_t commit_at;       /* rd_mono_ms when the one in flight started */
    int n_pending;           /* entries in pending */
    int cut_n;               /* the first cut_n of them are carried by the commit in flight */
    int64_t cut_watermark;   /* pub_watermark as it was when that commit started */
    int retry_ms;
    int64_t pub_watermark; /* highest id no listener wanted formatted */
    int n_watches;
    int n_queued;
    bool store_ok;
    bool probe_down;              /* the last health probe found no database (runs_probe.c) */
    struct event *probe_timer;    /* the next probe */
    struct event *probe_answer;   /* waits on the store's socket for a probe's answer */
    int probe_ms;                 /* the wait before the next probe: grows while down */
    unsigned char stream_key[32]; /* HMAC key of stream tokens, kept in the store's kv */
    unsigned char link_key[32];   /* HMAC key of approval/auth links, kept outside the store */
    uint64_t m_runs_created, m_events, m_items, m_proto_errors, m_commits, m_commit_failures;
    struct rd_runs_metrics *metrics; /* runs_metrics.c; NULL without a registry */
};

/* runs.c */
/** Frees a record now: wakes its watches, tells observers (on_free). */
void rd_active_free(rd_active *act);
void rd_active_mark_dirty(rd_active *act);
/** Every observer hears a transition, in the transaction that made it. */
void rd_runs_tell_status(rd_active *act, rd_status from, rd_status to);
/* runs_commit.c */
/** Starts committing what the loop iteration wrote, without waiting (rd_runs_flush waits). */
void rd_runs_commit_async(rd_runs *rs);
/** Waits for the commit in flight, if any, and acts on its completion (rd_runs_free). */
void rd_runs_commit_wait(rd_runs *rs);
/** Calls every rd_runs_after_commit still waiting with RD_ERR (rd_runs_free). */
void rd_runs_afters_drop(rd_runs *rs);
/** Queues the publication of an appended event (formats it once, if anyone watches). */
void rd_runs_queue_publish(rd_runs *rs, const rd_run *r, int64_t id, const char *type, int64_t ts,
                           const char *data, bool terminal);
/** Wakes and drops every watch of act (it is settled or leaving memory). */
void rd_active_wake_watches(rd_active *act);
/* runs_metrics.c */
/** Counts a transition just made (rd_run_transition): finished runs, queue wait, duration. */
void rd_runs_count_transition(rd_active *act, rd_status from, rd_status to);
/* runs_probe.c */
/** Starts the periodic health probe when the store has one (PostgreSQL). 0 or RD_ERR. */
int rd_runs_probe_start(rd_runs *rs);
/** Stops it and frees its events. */
void rd_runs_probe_stop(rd_runs *rs);
/* runs_links.c */
int rd_runs_load_keys(rd_runs *rs);
/** Records a webhook delivery of type in the open transaction (run_wire may be NULL). */
void rd_runs_notify_webhook(rd_active *act, const char *type, json_t *run_wire);

#endif
