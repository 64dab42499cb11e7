/*
 * outbox.h: webhooks (SPEC section 5): a durable outbox in the store and deliveries with
 * libcurl's multi-socket API on the daemon's loop. The engine records deliveries inside the
 * transaction that commits their event (rd_outbox_enqueue), and kicks delivery only after
 * that commit (rd_outbox_kick), so no transition is committed without its webhook and no
 * webhook is sent for a transition the store lost.
 */
#ifndef RUNSD_OUTBOX_H
#define RUNSD_OUTBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "config.h"
#include "run.h"
#include "store.h"

struct event_base;
typedef struct rd_outbox rd_outbox;

/** Creates the outbox (curl multi on base). Borrows store and cfg. NULL on failure. */
rd_outbox *rd_outbox_new(struct event_base *base, rd_store *store, const rd_config *cfg);
/** Stops deliveries in flight (they stay pending in the store) and frees. */
void rd_outbox_free(rd_outbox *ob);
void rd_outbox_set_config(rd_outbox *ob, const rd_config *cfg);
/** After a restart: schedules every pending delivery at its next attempt time. */
int rd_outbox_recover(rd_outbox *ob);
/** Inside the engine's open transaction: records one delivery per endpoint (the run's own
 * webhook and the global ones) subscribed to type ("run.succeeded", "run.paused", "run.item"
 * ...). run_wire is the run's wire form (borrowed), the body's data. 0 or RD_EIO. */
int rd_outbox_enqueue(rd_outbox *ob, const rd_run *run, const char *type, json_t *run_wire);
/** After a successful commit: starts the deliveries recorded since the last kick. */
void rd_outbox_kick(rd_outbox *ob);
/** True when some endpoint of this run (or a global one) subscribes to type, so the engine
 * builds payloads only when needed (run.item is opt-in and frequent). */
bool rd_outbox_wants(rd_outbox *ob, const rd_run *run, const char *type);

#endif
