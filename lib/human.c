/*
 * human.c: answers from people (approvals and authorizations, SPEC sections 1-3).
 * Not built yet: this build reports approval_required / auth_required as a protocol error so
 * the worker's request is visible in the run's log, and the run keeps its flow timeout.
 * Tracked as issue 4; nothing here pretends to pause a run.
 */
#include "engine_int.h"

#include <stdio.h>

void rd_human_request(rd_active *act, const rd_msg *m)
{
    json_t *d = json_pack("{s:s, s:s, s:s}", "level", "warn", "source", "protocol", "message",
                          m->type == RD_MSG_APPROVAL_REQUIRED
                              ? "approval_required is not supported by this daemon version"
                              : "auth_required is not supported by this daemon version");
    act->run->n_proto_errors++;
    rd_emit(act, "run.log", d, 0);
    json_decref(d);
}

void rd_exec_resume_waiting(rd_active *act)
{
    /* Runs cannot be waiting in this version; a stored one (from a newer version) is
     * re-queued from its checkpoint like a running one. */
    rd_transition(act, RD_ST_QUEUED, RD_RS_NONE, NULL);
    rd_enqueue(act);
}
