/*
 * hub_int.h: private to the files of the hub (hub.c: subscribers, frames, replay, flush;
 * hub_load.c: what all subscribers hold together: the budget and backpressure).
 */
#ifndef RUNSD_HUB_INT_H
#define RUNSD_HUB_INT_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <sys/queue.h>

#include "base/audience.h"
#include "base/util.h"
#include "stream/hub.h"

/* Below this a frame is copied into each subscriber's buffer; from it on it is shared. */
#define SHARE_MIN 512
/* Replay pages handled per callback before the loop gets to poll sockets again. */
#define REPLAY_BUDGET 32
/* A replay that found the store committing tries again at the next publication, or after this
 * (a commit may carry no event to publish). */
#define REPLAY_RETRY_MS 10
/* A live reader whose socket is full (its transport holds bytes) may have this much more
 * gathered in the hub; the frame that would pass it makes the reader lag: from then on it gets
 * no copies, only a count of the bytes it is behind by, and it catches up from the store once
 * its socket drains. One evbuffer chain's worth: a reader that keeps up has a full socket
 * (64 KiB asked, 128 KiB or more in the kernel) only for moments, never this much more. */
#define LAG_AT 4096
/* A lagging reader catching up gets replay pages of about this much (hub.c page_high); a live
 * reader's burst within one iteration is handed to its transport early past it. */
#define CATCHUP_HIGH (4 * LAG_AT)

/* The ring of recent frames (hub_ring.c): at most this many bytes of frames and events. */
#define RING_BYTES (4 * 1024 * 1024)
#define RING_EVENTS 16384
/* Ring entries looked at per catch-up page: a run's reader skips other runs' events. */
#define RING_PAGE_ROWS 4096

/* LIVE takes published frames; LAG (a live reader that fell behind) only counts them; REPLAY
 * pages from the store: a resume from Last-Event-ID, or a lagging reader catching up. */
enum { SUB_REPLAY, SUB_LIVE, SUB_LAG, SUB_CLOSING };

typedef struct hub_filter {
    char **runs, **flows, **types;
    int n_runs, n_flows, n_types;
} hub_filter;

struct rd_hub_sub {
    rd_hub *hub;
    const rd_hub_sink_ops *ops;
    void *arg;
    struct evbuffer *pending; /* frames gathered this iteration, not yet sent */
    char *run_id;             /* a run stream's run (indexed), or NULL for a global one */
    hub_filter *filter;       /* a global stream's filters, or NULL */
    int64_t cursor;           /* every wanted event with id <= cursor has been queued */
    rd_audience audience;     /* which frame of an event with links it gets */
    uint8_t state;
    uint8_t why;
    bool dirty, queued, dooming, run_finished;
    bool held;    /* live frames kept in pending while the transport is behind */
    bool lagging; /* LAG, or the REPLAY that catches it up: lag counts */
    size_t lag;   /* bytes of wanted events after cursor it was not given (lagging) */
    size_t load;  /* its part of hub->backlog (hub_load.c) */
    /* Progress while producers are paused (hub_load.c): a reader that takes no bytes for
     * hub->stall_ms is "stalled" and stops counting as keeping up, until it takes some. */
    size_t last_behind;
    uint64_t last_taken;
    int64_t stuck_since_ms;
    bool stalled;
    TAILQ_ENTRY(rd_hub_sub) link;  /* its run's list, or the global list */
    TAILQ_ENTRY(rd_hub_sub) dlink; /* hub->dirty */
    TAILQ_ENTRY(rd_hub_sub) rlink; /* hub->replay */
    TAILQ_ENTRY(rd_hub_sub) xlink; /* hub->doomed */
};

TAILQ_HEAD(sub_list, rd_hub_sub);

typedef struct run_subs {
    struct sub_list subs;
} run_subs;

/* A frame shared by reference; freed by the last buffer that drops it. */
typedef struct shared_frame {
    size_t refs;
    size_t len;
    char data[];
} shared_frame;

typedef struct hub_ring hub_ring;

struct rd_hub {
    struct event_base *base;
    hub_ring *ring; /* recent frames for catching up (hub_ring.c) */
    rd_hub_scan_fn scan;
    void *scan_arg;
    size_t max_buffer;
    int page;
    int64_t last_id;
    rd_map *by_run;          /* run id -> run_subs */
    struct sub_list global;  /* global streams */
    struct sub_list dirty;   /* have pending bytes to hand to their sink */
    struct sub_list replay;  /* replaying and ready for their next page */
    struct sub_list doomed;  /* to be closed from the flush callback */
    struct event *flush_ev;  /* activated once per iteration with work */
    struct event *replay_ev; /* zero timer: replay pages after the loop polled sockets */
    bool replay_waits;       /* a scan answered RD_EAGAIN: replays wait for the next publish */
    bool flush_scheduled;
    size_t n_subs;
    /* The budget over all subscribers: the exact total at the last check plus what was queued
     * since (an upper bound, as sockets drain meanwhile); past max_total the check runs. */
    size_t max_total;
    size_t total_at_check, since_check;
    struct event *budget_ev;
    /* Backpressure (hub_load.c): the unsent bytes of the subscribers that keep up. */
    size_t backpressure, backlog;
    int64_t stall_ms;
    bool pressure;
    void (*on_pressure)(void *arg, bool on);
    void *pressure_arg;
    struct event *pressure_ev;
    rd_hub_stats st;
};

/* hub.c */
void rd_hub_doom(rd_hub_sub *sub, rd_hub_why why);
/** Bytes sub's transport holds plus those gathered in the hub. */
size_t rd_hub_unsent(const rd_hub_sub *sub);
/** What sub is behind by: its unsent bytes plus, while it lags, those it was not given. The
 * bounds (its own, the total, backpressure) judge this, wherever the bytes are. */
size_t rd_hub_behind(const rd_hub_sub *sub);
/** Every subscriber into all (room for n_subs); returns how many. */
size_t rd_hub_collect(rd_hub *hub, rd_hub_sub **all);

/* hub_ring.c */
/** Drops one reference to f; frees it with the last. */
void rd_frame_unref(shared_frame *f);
/** An empty ring whose floor is floor (the last id before the hub's first event). 0 or -1. */
int rd_hub_ring_new(rd_hub *hub, int64_t floor);
void rd_hub_ring_free(rd_hub *hub);
/** Keeps ev's frames (frames[RD_AUD_FULL], and frames[a] for an audience with its own), each
 * by one more reference. Without a full frame it drops everything: a hole at ev->id. */
void rd_hub_ring_add(rd_hub *hub, const rd_hub_event *ev, shared_frame *const frames[]);
/** Drops everything kept; nobody catches up from the ring across id. */
void rd_hub_ring_reset(rd_hub *hub, int64_t id);
/** True when the ring holds every event a live subscriber wants after cursor. */
bool rd_hub_ring_covers(const rd_hub *hub, int64_t cursor);
size_t rd_hub_ring_bytes(const rd_hub *hub);
typedef int (*rd_ring_row_fn)(const rd_hub_event *ev, shared_frame *f, void *arg);
/** Calls fn for each kept event with id > after, in order, with aud's frame, at most max_rows:
 * 0 at the end of the ring, 1 when fn returned non-zero, 2 at max_rows with more left. */
int rd_hub_ring_scan(const rd_hub *hub, int64_t after, rd_audience aud, size_t max_rows,
                     rd_ring_row_fn fn, void *arg);

/* hub_load.c */
/** Bytes were queued to subscribers: the budget check runs once past max_total. */
void rd_hub_account(rd_hub *hub, size_t bytes);
/** The budget check (an event callback). */
void rd_hub_on_budget(evutil_socket_t fd, short what, void *arg);
/** sub is behind by this many bytes now (after a send or a drain): updates the backlog. */
void rd_hub_note_load(rd_hub_sub *sub, size_t behind);
/** The backpressure recheck while under pressure (an event callback). */
void rd_hub_on_pressure(evutil_socket_t fd, short what, void *arg);

#endif
