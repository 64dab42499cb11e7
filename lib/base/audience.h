/*
 * audience.h: who a rendered run or event is for. A capability link (an approve or deny URL,
 * an auth URL with its state token) lets whoever holds it act on the run, so each audience
 * sees only the links it may use (SPEC section 3, "Who sees capability links"). The run layer
 * renders one variant per audience; the SSE hub hands each subscriber its own.
 */
#ifndef RUNSD_AUDIENCE_H
#define RUNSD_AUDIENCE_H

typedef enum rd_audience {
    RD_AUD_FULL,   /* write or admin keys, or anyone when no keys exist (loopback): every link */
    RD_AUD_READ,   /* read keys: no link at all */
    RD_AUD_STREAM, /* a run's stream token: the auth URL; approve/deny only with the flow's
                      approval_links = stream */
    RD_AUD__COUNT
} rd_audience;

#endif
