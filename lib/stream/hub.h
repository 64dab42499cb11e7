/*
 * hub.h: the SSE fan-out hub. It receives each committed event once, formats its SSE frame
 * once, and offers it only to the subscribers that want it: those of its run (indexed by run
 * id) and the global ones whose filters match. A subscriber that resumes from an older id is
 * first replayed from the store, a page at a time as its socket drains, and switches to live
 * delivery only once it has caught up with the last published id, so nothing is missed or
 * sent twice. A live subscriber that falls behind (its socket full) is not buffered for: it
 * lags, counting the bytes it was not given, and catches up from the store the same way once
 * its socket drains. What each subscriber is behind by is bounded; one over the bound is cut
 * off. All subscribers together are bounded too; past that bound the ones furthest behind are
 * cut first. A cut subscriber resumes from the store with Last-Event-ID.
 *
 * An event that carries capability links comes with a frame per audience (full, read key,
 * stream token); each subscriber gets its audience's, and every other event one frame for all.
 *
 * The hub knows neither HTTP nor the store: the transport is a small sink interface and the
 * store a scan function, so the whole core runs in unit tests on plain evbuffers.
 */
#ifndef RUNSD_HUB_H
#define RUNSD_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/audience.h"

struct event_base;
struct evbuffer;

typedef struct rd_hub rd_hub;
typedef struct rd_hub_sub rd_hub_sub;

/** One committed event as the hub sees it. frame is the JSON data payload
 * {"id","type","run_id","timestamp","data"}; when NULL (replay) the hub builds it from the
 * other members, in the engine's exact format. Strings are borrowed for the call. */
typedef struct rd_hub_event {
    int64_t id;
    const char *run_id;
    const char *flow;
    const char *type;
    int64_t ts;        /* ms since epoch */
    const char *data;  /* JSON text */
    const char *frame; /* may be NULL */
    size_t frame_len;
    /* The frame of an audience that sees this event differently (an event with capability
     * links), or NULL: that audience gets frame. variant[RD_AUD_FULL] is ignored. */
    const char *variant[RD_AUD__COUNT];
    size_t variant_len[RD_AUD__COUNT];
    bool terminal; /* run.end: a run stream ends after it */
} rd_hub_event;

/** Called by a scan for each event in id order; return non-zero to stop the scan. */
typedef int (*rd_hub_event_fn)(const rd_hub_event *ev, void *arg);
/** Reads committed events with id > after, of one run (run_id) or of all (NULL), in id
 * order, at most limit. 0, or non-zero on a read error. */
typedef int (*rd_hub_scan_fn)(void *scan_arg, const char *run_id, int64_t after, int limit,
                              rd_hub_event_fn fn, void *arg);
/* A scan that answers RD_EAGAIN (before calling fn) cannot read now without waiting (the store
 * is committing): the hub asks again at the next publication, or within REPLAY_RETRY_MS. */

/** Why the hub lets a subscriber go. */
typedef enum {
    RD_HUB_END,      /* its run ended (run.end sent): flush what is queued, then close */
    RD_HUB_SLOW,     /* over its unsent-bytes bound: drop it now */
    RD_HUB_ERROR,    /* the replay could not read the store: drop it now */
    RD_HUB_SHUTDOWN, /* rd_hub_close_all: flush what is queued, then close */
    RD_HUB_ABORT     /* rd_hub_close_all(force): drop it now */
} rd_hub_why;

/** The transport under one subscriber (the SSE connection). */
typedef struct rd_hub_sink_ops {
    /** Bytes the transport holds and has not sent yet. */
    size_t (*unsent)(void *arg);
    /** Takes all of buf's bytes (moving, not copying). Must not close synchronously. */
    void (*send)(void *arg, struct evbuffer *buf);
    /** The hub is done with the subscriber; the sink closes and, once closed, calls
     * rd_hub_unsubscribe (it may do so from inside this call). */
    void (*close)(void *arg, rd_hub_why why);
    /** Optional: a count that grows while the reader takes bytes (also from the kernel's
     * buffers, where unsent() sees no change), to tell a slow reader from one that stopped. */
    uint64_t (*taken)(void *arg);
} rd_hub_sink_ops;

/** What a subscriber wants. A run stream names run_id; a global stream may filter by lists
 * of runs, flows and types (NULL/0 = any). audience picks which variant of an event's frame
 * it gets, live and replayed. Copied by rd_hub_subscribe. */
typedef struct rd_hub_filter {
    rd_audience audience;
    const char *run_id;
    const char *const *runs;
    int n_runs;
    const char *const *flows;
    int n_flows;
    const char *const *types;
    int n_types;
} rd_hub_filter;

typedef struct rd_hub_opts {
    size_t max_buffer; /* unsent bytes bound per subscriber */
    size_t max_total;  /* unsent bytes bound over all subscribers (0 = none): past it, those
                          furthest behind are cut first (RD_HUB_SLOW) */
    /* Backpressure: past `backpressure` unsent bytes over the subscribers that keep up (each
     * under half its own bound), on_pressure(arg, true) asks the owner to slow its producers;
     * on_pressure(arg, false) once the backlog is down to half. 0 = never. */
    size_t backpressure;
    /* While producers are slowed, a subscriber whose unsent bytes do not go down for stall_ms
     * stops counting as keeping up (0: 5000). */
    int64_t stall_ms;
    void (*on_pressure)(void *arg, bool on);
    void *pressure_arg;
    int page; /* events per replay page */
    rd_hub_scan_fn scan;
    void *scan_arg;
} rd_hub_opts;

typedef struct rd_hub_stats {
    uint64_t subscribers; /* gauge */
    uint64_t frames;      /* frames queued to subscribers, live and replayed */
    uint64_t bytes;
    uint64_t slow_disconnects;
    uint64_t replays; /* subscriptions that started with a replay */
    uint64_t replay_frames;
    uint64_t resets;
    uint64_t shared_frames;   /* live frames handed out by reference instead of copied */
    uint64_t budget_cuts;     /* subscribers cut to keep all of them within max_total */
    uint64_t pressure_events; /* times producers were asked to slow down */
    uint64_t stalls;          /* readers that took nothing for a while under pressure: no longer
                               * counted as keeping up, so they cannot hold producers */
    uint64_t lags;            /* live subscribers that fell behind and caught up from the store */
    uint64_t held_bytes;      /* gauge: bytes gathered in the hub, not yet handed to transports */
    uint64_t ring_frames;     /* frames lagging subscribers caught up on from the ring of recent
                               * frames instead of the store */
    uint64_t ring_bytes;      /* gauge: bytes of frames kept in that ring */
} rd_hub_stats;

/** A hub on base whose last published id is last_id (the store's newest committed event).
 * NULL on out of memory. */
rd_hub *rd_hub_new(struct event_base *base, const rd_hub_opts *o, int64_t last_id);
/** Frees the hub. Every subscriber must have been unsubscribed. */
void rd_hub_free(rd_hub *hub);
/** Changes the unsent-bytes bound (config reload). */
void rd_hub_set_max_buffer(rd_hub *hub, size_t max_buffer);
/** Changes the bound over all subscribers (config reload; 0 = none). */
void rd_hub_set_max_total(rd_hub *hub, size_t max_total);
/** Changes the backpressure bound (config reload; 0 = never). */
void rd_hub_set_backpressure(rd_hub *hub, size_t bytes);
/** Changes the stall time of backpressure (config reload; ms > 0). */
void rd_hub_set_stall(rd_hub *hub, int64_t ms);
/** True while producers are asked to slow down. */
bool rd_hub_pressure(const rd_hub *hub);

/** Offers one committed event (in id order) to its subscribers. Nothing is written to a
 * socket here: subscribers' frames are gathered and sent once per loop iteration. */
void rd_hub_publish(rd_hub *hub, const rd_hub_event *ev);
/** The highest id published so far. */
int64_t rd_hub_last_id(const rd_hub *hub);
/** True when some subscriber may want run_id's events (its run's or a global one). When false
 * the publisher may send just the id (frame and data NULL) to advance rd_hub_last_id. */
bool rd_hub_wants(const rd_hub *hub, const char *run_id);

/** Adds a subscriber. resume < 0: live only, from the next published event; resume >= 0:
 * replays every wanted event with id > resume from the store, then live. run_finished tells
 * a run stream that its run is terminal (so it closes once replayed even if run.end is gone
 * from the store). ops/arg is the sink. NULL on out of memory. */
rd_hub_sub *rd_hub_subscribe(rd_hub *hub, const rd_hub_filter *f, int64_t resume, bool run_finished,
                             const rd_hub_sink_ops *ops, void *arg);
/** Queues raw bytes (a stream.reset frame, say) ahead of everything else for sub. */
void rd_hub_sub_write(rd_hub_sub *sub, const char *data, size_t len);
/** The sink tells the hub its unsent bytes fell below the low watermark: a replaying
 * subscriber gets its next page. */
void rd_hub_sub_drained(rd_hub_sub *sub);
/** Removes and frees sub (the sink is closed or closing). Safe from any sink callback. */
void rd_hub_unsubscribe(rd_hub_sub *sub);
/** Asks every subscriber's sink to close: RD_HUB_SHUTDOWN (flush, then close), or with
 * force RD_HUB_ABORT (at once), e.g. for those a stalled reader keeps from flushing. */
void rd_hub_close_all(rd_hub *hub, bool force);
/** The low watermark a sink should report drains at. */
size_t rd_hub_low_watermark(const rd_hub *hub);
/** Number of subscribers. */
size_t rd_hub_count(const rd_hub *hub);
void rd_hub_note_reset(rd_hub *hub);
void rd_hub_get_stats(const rd_hub *hub, rd_hub_stats *out);

/** Appends "id: N\nevent: TYPE\ndata: <frame>\n\n" for ev to buf, with the frame aud gets
 * (building it from data when ev->frame is NULL: then every audience gets data). 0 or -1. */
int rd_hub_format(struct evbuffer *buf, const rd_hub_event *ev, rd_audience aud);

#endif
