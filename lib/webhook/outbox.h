/*
 * outbox.h: webhooks (SPEC section 5): a durable outbox in the store and deliveries with
 * libcurl's multi-socket API on the daemon's loop. The engine records deliveries inside the
 * transaction that commits their event (rd_outbox_enqueue), and kicks delivery only after
 * that commit (rd_outbox_kick), so no transition is committed without its webhook and no
 * webhook is sent for a transition the store lost.
 *
 * Endpoints: the run's own webhook {url, events?, secret} (events absent = the terminal
 * types; present = exactly the listed types) and the [webhooks] url entries of the config
 * (terminal types only, signed with every configured secret). Each (event, endpoint) pair is
 * one delivery whose webhook-id stays the same across all its attempts. Delivery is
 * at-least-once: 2xx = delivered, 410 = stop this endpoint for this run, anything else is
 * retried on [webhooks] retry_schedule with +-20% jitter (429/5xx never before Retry-After).
 */
#ifndef RUNSD_OUTBOX_H
#define RUNSD_OUTBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "config/config.h"
#include "model/run.h"
#include "store/store.h"

struct event_base;
typedef struct rd_outbox rd_outbox;

/** Bytes of a webhook-id ("msg_" + 22 characters) with its NUL, rounded up. */
#define RD_DLV_ID_MAX 32

/** Creates the outbox (curl multi on base). Borrows store and cfg. NULL on failure. */
rd_outbox *rd_outbox_new(struct event_base *base, rd_store *store, const rd_config *cfg);
/** Stops deliveries in flight (they stay pending in the store) and frees. */
void rd_outbox_free(rd_outbox *ob);
/** Swaps the config (reload; borrowed): endpoints, secrets, schedule, limits from now on. */
void rd_outbox_set_config(rd_outbox *ob, const rd_config *cfg);
/** After a restart: schedules every pending delivery at its next attempt time. */
int rd_outbox_recover(rd_outbox *ob);
/** Inside the engine's open transaction: records one delivery per endpoint (the run's own
 * webhook and the global ones) subscribed to type ("run.succeeded", "run.paused", "run.item"
 * ...). run_wire is the run's wire form (borrowed), the body's data. 0 or RD_EIO. */
int rd_outbox_enqueue(rd_outbox *ob, const rd_run *run, const char *type, json_t *run_wire);
/** After a successful commit: starts the deliveries recorded since the last kick. */
void rd_outbox_kick(rd_outbox *ob);
/** How the outbox's writes are committed, given by the layer that owns the store's
 * transaction (run/): commit(arg) asks for a commit soon, without waiting; busy(arg) is true
 * while one is in flight, and the outbox then leaves the store alone (a store call would wait
 * for that commit) until the next rd_outbox_kick: what is due is started, and attempts that
 * ended are recorded, then. Without a committer the outbox commits itself, waiting. */
void rd_outbox_set_committer(rd_outbox *ob, void (*commit)(void *arg), bool (*busy)(void *arg),
                             void *arg);
/** Renders a stored body for sending: returns a malloc'd body, or NULL to send it as stored. */
typedef char *(*rd_outbox_render_fn)(void *arg, const char *run_id, const char *body);
void rd_outbox_set_renderer(rd_outbox *ob, rd_outbox_render_fn fn, void *arg);
struct rd_metrics;
/** Registers the outbox's families in reg (borrowed; it must outlive the outbox's scrapes):
 * attempts, attempts by outcome, their duration, the attempts in flight. 0 or RD_ERR. */
int rd_outbox_set_metrics(rd_outbox *ob, struct rd_metrics *reg);
/** True when some endpoint of this run (or a global one) subscribes to type, so the engine
 * builds payloads only when needed (run.item is opt-in and frequent). */
bool rd_outbox_wants(rd_outbox *ob, const rd_run *run, const char *type);

/* For the deliveries API (api/deliveries.c). */
/** The store the outbox writes (borrowed). */
rd_store *rd_outbox_store(rd_outbox *ob);
/** True while an attempt of delivery id is in flight. */
bool rd_outbox_in_flight(rd_outbox *ob, const char *id);
/** A new attempt of delivery id now, with the same webhook-id, recorded in the open
 * transaction and started after its commit (with a committer, the caller answers from that
 * commit's completion; without one it is committed before this returns). 0, RD_ENOTFOUND,
 * RD_ECONFLICT (an attempt is in flight) or RD_EIO. */
int rd_outbox_redeliver(rd_outbox *ob, const char *id);

/** Validates a create request's `webhook` object beyond its shape: the URL parses as
 * http(s) with a host, every `events` entry is a known type, the secret (when given) is
 * whsec_ + base64 of 24 to 64 bytes. 0, or RD_EINVAL with a client-facing reason in err. */
int rd_outbox_check_webhook(const json_t *wh, char *err, size_t errlen);

#endif
