/*
 * enrich.h: the enrichment workers of one run (FindAll's enrich). Each is a worker of an
 * enrichment flow, fed every current item of the run and then every new one; its answers are
 * attached to the items. The owner (the run's attempt) is told through a done callback when
 * the last of them has exited; this module never calls back into it otherwise.
 */
#ifndef RUNSD_ENRICH_H
#define RUNSD_ENRICH_H

#include <jansson.h>
#include <stdbool.h>

#include "base/apierr.h"
#include "config/config.h"
#include "exec/worker.h"
#include "run/runs.h"

typedef struct rd_enrich_set rd_enrich_set;
/** The last enrichment worker of the set exited. */
typedef void (*rd_enrich_done_fn)(void *arg);

/** A set for act's enrichments. NULL on out of memory. */
rd_enrich_set *rd_enrich_set_new(rd_reaper *reaper, rd_active *act, rd_enrich_done_fn done,
                                 void *arg);
/** Frees the set; workers still alive are killed (no callback). */
void rd_enrich_set_free(rd_enrich_set *s);
/** Starts a worker of flow (a local flow) over every item. 0, or fills e. */
int rd_enrich_start(rd_enrich_set *s, const rd_flow_config *flow, json_t *input, rd_apierr *e);
/** The run has new items: feed them. */
void rd_enrich_kick(rd_enrich_set *s);
/** The run will produce no more items: once fed, the workers' stdin is closed. */
void rd_enrich_source_closed(rd_enrich_set *s);
/** Stops every worker (SIGTERM then SIGKILL after the grace; at once when now). */
void rd_enrich_stop(rd_enrich_set *s, bool now);
/** Stops (or resumes) reading the workers' output (backpressure). */
void rd_enrich_pause(rd_enrich_set *s, bool paused);
/** Workers still running. */
int rd_enrich_count(const rd_enrich_set *s);

#endif
