/*
 * engine_int.h: private to the files of engine/ (engine.c: the object, listeners, metrics,
 * retention; sched.c: the queue, executor slots and shutdown; recover.c: recovery at start;
 * ops.c: operations that
 * change runs; answers.c: answers from people; query.c: reads, external workers and watches).
 */
#ifndef RUNSD_ENGINE_INT_H
#define RUNSD_ENGINE_INT_H

#include <sys/queue.h>

#include "base/util.h"
#include "engine/engine.h"
#include "exec/exec.h"
#include "run/runs.h"

struct event;

/* The scheduler's entry for one run (the rd_active's RD_SLOT_SCHED slot). */
typedef struct rd_sched_entry {
    TAILQ_ENTRY(rd_sched_entry) qlink;
    rd_active *act;
    bool in_queue;
    bool counted; /* holds an executor slot */
} rd_sched_entry;

typedef struct rd_flow_stat {
    int running;
} rd_flow_stat;

struct rd_engine {
    struct event_base *base;
    rd_store *store;
    const rd_config *cfg;
    rd_runs *runs;
    rd_exec *exec;
    void *observer;
    rd_map *flow_stats; /* flow name -> rd_flow_stat */
    TAILQ_HEAD(, rd_sched_entry) queue;
    struct event *sched_ev;
    struct event *prune_ev; /* retention (prune.c) */
    void *prune_wait;       /* the batch waiting for a commit, or NULL */
    int prune_stage;        /* what the round deletes next; 0: no round going */
    int prune_batches;      /* batches of that stage so far */
    int64_t oldest_id;      /* the oldest event id kept (0: none), when oldest_known */
    bool oldest_known;      /* read once, then kept by pruning (the only deleter) */
    int running;            /* local workers holding a slot */
    bool shutting_down;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    uint64_t m_pruned;
    /* Producers are slowed (exec's throttle) while either asks: the event streams' readers
     * are behind (hub), or the store journal is past its bound (store). */
    bool throttle_hub, throttle_store;
    struct event *release_ev; /* tells on_release from the loop, not from inside a commit */
    void (*on_release)(void *arg);
    void *release_arg;
};

/* sched.c */
int rd_sched_init(rd_engine *eng);
void rd_sched_dispose(rd_engine *eng);
/** Queues act for a local worker (external runs wait for theirs) and schedules soon. */
void rd_sched_enqueue(rd_engine *eng, rd_active *act);
/** Starts what the queue and the capacity allow, now (in the caller's transaction). */
void rd_sched_now(rd_engine *eng);
void rd_sched_soon(rd_engine *eng);
/** Starts an attempt of act and takes a slot when it runs a local worker. */
int rd_sched_start(rd_engine *eng, rd_active *act);
int rd_sched_flow_running(rd_engine *eng, const char *flow);
/** 429 queue_full when max_queued runs are queued. 0 or -1. */
int rd_sched_check_room(rd_engine *eng, rd_apierr *e);

/* prune.c */
/** Arms retention pruning and runs its first round now (after recovery). */
void rd_engine_start_pruning(rd_engine *eng);
int rd_prune_init(rd_engine *eng);
/** Stops pruning: the round going is dropped (before the run set is freed). */
void rd_prune_dispose(rd_engine *eng);
/* engine.c */
/** Fills *out with json (stolen), the reply to a change not committed yet: the caller sends it
 * from rd_engine_after_commit. Fails 500 when json is NULL (out of memory). */
int rd_engine_reply(json_t *json, json_t **out, rd_apierr *e);

#endif
