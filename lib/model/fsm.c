/*
 * fsm.c: the lifecycle table of SPEC section 1. Everything here is data and pure lookups so
 * the unit test can walk every (from, to) pair; the engine's transition function is the only
 * caller that acts on the answers.
 */
#include "model/fsm.h"

#include <string.h>

static const struct {
    const char *name;
    bool terminal;
    bool active;
} status_info[RD_ST__COUNT] = {
#define RD_X_INFO(e, n, t, a) [RD_ST_##e] = {n, t, a},
    RD_STATUS_LIST(RD_X_INFO)
#undef RD_X_INFO
};

static const struct {
    const char *name;
    rd_status status;
} reason_info[RD_RS__COUNT] = {
#define RD_X_INFO(e, n, s) [RD_RS_##e] = {n, s},
    RD_REASON_LIST(RD_X_INFO)
#undef RD_X_INFO
};

#define B(s) (1u << RD_ST_##s)

/* allowed[from] is the set of statuses `from` may move to. The recovery edges
 * (running/auth_required/paused -> queued) and extend (succeeded -> queued) are here too;
 * extend's extra guard is rd_fsm_can_extend. */
static const unsigned allowed[RD_ST__COUNT] = {
    [RD_ST_CREATED] = B(QUEUED) | B(CANCELLED),
    [RD_ST_QUEUED] = B(RUNNING) | B(CANCELLED) | B(CRASHED),
    [RD_ST_RUNNING] = B(AUTH_REQUIRED) | B(PAUSED) | B(CANCELLING) | B(SUCCEEDED) | B(INCOMPLETE) |
                      B(FAILED) | B(CRASHED) | B(QUEUED),
    [RD_ST_AUTH_REQUIRED] = B(RUNNING) | B(CANCELLING) | B(FAILED) | B(CRASHED) | B(QUEUED),
    [RD_ST_PAUSED] = B(RUNNING) | B(CANCELLING) | B(FAILED) | B(CRASHED) | B(QUEUED),
    [RD_ST_CANCELLING] = B(CANCELLED),
    [RD_ST_SUCCEEDED] = B(QUEUED),
    [RD_ST_INCOMPLETE] = 0,
    [RD_ST_FAILED] = 0,
    [RD_ST_CRASHED] = 0,
    [RD_ST_CANCELLED] = 0,
};

const char *rd_status_name(rd_status s)
{
    return (unsigned)s < RD_ST__COUNT ? status_info[s].name : "?";
}

int rd_status_parse(const char *name, rd_status *out)
{
    for (int i = 0; i < RD_ST__COUNT; i++) {
        if (strcmp(status_info[i].name, name) == 0) {
            *out = (rd_status)i;
            return 0;
        }
    }
    return -1;
}

bool rd_status_terminal(rd_status s)
{
    return (unsigned)s < RD_ST__COUNT && status_info[s].terminal;
}

bool rd_status_active(rd_status s)
{
    return (unsigned)s < RD_ST__COUNT && status_info[s].active;
}

const char *rd_reason_name(rd_reason r)
{
    return (unsigned)r < RD_RS__COUNT ? reason_info[r].name : "?";
}

int rd_reason_parse(const char *name, rd_reason *out)
{
    for (int i = 1; i < RD_RS__COUNT; i++) {
        if (strcmp(reason_info[i].name, name) == 0) {
            *out = (rd_reason)i;
            return 0;
        }
    }
    return -1;
}

rd_status rd_reason_status(rd_reason r)
{
    return (unsigned)r < RD_RS__COUNT ? reason_info[r].status : RD_ST__COUNT;
}

bool rd_fsm_allowed(rd_status from, rd_status to)
{
    if ((unsigned)from >= RD_ST__COUNT || (unsigned)to >= RD_ST__COUNT)
        return false;
    return (allowed[from] & (1u << to)) != 0;
}

bool rd_fsm_can_extend(rd_status s, rd_reason r, bool preview)
{
    return s == RD_ST_SUCCEEDED && r == RD_RS_MATCH_LIMIT_MET && !preview;
}

bool rd_fsm_can_enrich(rd_status s)
{
    return s == RD_ST_RUNNING || s == RD_ST_AUTH_REQUIRED || s == RD_ST_PAUSED ||
           s == RD_ST_SUCCEEDED || s == RD_ST_INCOMPLETE;
}
