/*
 * proto.h: the worker protocol of SPEC section 2: JSON Lines, one object per line with
 * "type" first. This module splits a byte stream into bounded lines and turns one line into
 * a validated message. It never decides what a message does to a run: that is the engine's.
 */
#ifndef RUNSD_PROTO_H
#define RUNSD_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define RD_MSG_LIST(X)                                                                             \
    X(STEP, "step")                                                                                \
    X(PROGRESS, "progress")                                                                        \
    X(LOG, "log")                                                                                  \
    X(ITEM, "item")                                                                                \
    X(ITEM_ERROR, "item_error")                                                                    \
    X(CANDIDATE, "candidate")                                                                      \
    X(CHECKPOINT, "checkpoint")                                                                    \
    X(AUTH_REQUIRED, "auth_required")                                                              \
    X(APPROVAL_REQUIRED, "approval_required")                                                      \
    X(ENRICHMENT, "enrichment")                                                                    \
    X(RESULT, "result")                                                                            \
    X(DONE, "done")                                                                                \
    X(ERROR, "error")

typedef enum {
#define RD_X_ENUM(e, n) RD_MSG_##e,
    RD_MSG_LIST(RD_X_ENUM)
#undef RD_X_ENUM
        RD_MSG__COUNT
} rd_msg_type;

/*
 * A parsed worker -> daemon message. `root` owns everything; the other pointers borrow from
 * it and are NULL when absent. Which fields are set depends on the type:
 *   STEP:              name (required, non-empty string), state ("started"|"finished"),
 *                      total (optional integer >= 0, has_total)
 *   PROGRESS:          done (required integer >= 0), total (optional, has_total), message (opt)
 *   LOG:               level ("debug"|"info"|"warn"|"error", default "info"), message (required)
 *   ITEM:              data (required object)
 *   ITEM_ERROR:        error (required string, as `message`), data (optional object)
 *   CANDIDATE:         matched (required boolean)
 *   CHECKPOINT:        cursor (required, any JSON value)
 *   AUTH_REQUIRED:     url (required string, http(s)://), provider (optional string)
 *   APPROVAL_REQUIRED: prompt (required string, as `message`), details (optional object)
 *   ENRICHMENT:        seq (required integer >= 1), data (required object)
 *   RESULT:            data (required, any JSON value)
 *   DONE:              reason (optional: "completed"|"candidates_exhausted"|"low_match_rate")
 *   ERROR:             message (required string)
 * Unknown extra keys are ignored (forward compatibility).
 */
typedef struct rd_msg {
    rd_msg_type type;
    json_t *root;
    const char *name;  /* STEP */
    const char *state; /* STEP */
    const char *level; /* LOG */
    const char
        *message;    /* LOG, PROGRESS, ITEM_ERROR (error text), APPROVAL_REQUIRED (prompt), ERROR */
    const char *url; /* AUTH_REQUIRED */
    const char *provider; /* AUTH_REQUIRED */
    const char *reason;   /* DONE */
    json_t *data;         /* ITEM, ITEM_ERROR, ENRICHMENT, RESULT */
    json_t *cursor;       /* CHECKPOINT */
    json_t *details;      /* APPROVAL_REQUIRED */
    int64_t done, total, seq;
    bool has_total;
    bool matched;
} rd_msg;

/** Wire name of a message type. Static storage. */
const char *rd_msg_type_name(rd_msg_type t);

/** Parses one line (without its newline; a trailing '\r' is tolerated) into out.
 * Returns 0 and fills out (free with rd_msg_clear), or RD_EINVAL with a one-line reason in
 * err (invalid JSON, not an object, missing/unknown type, a field of the wrong type...).
 * Invalid UTF-8 is refused. On error out->root is NULL. */
int rd_proto_parse(const char *line, size_t len, rd_msg *out, char *err, size_t errlen);
/** Releases out->root and zeroes out. Safe on a zeroed or already-cleared msg. */
void rd_msg_clear(rd_msg *m);

/*
 * A bounded line splitter over an evbuffer. Lines longer than max are dropped whole (up to
 * and including their newline) and reported once each, without ever buffering more than
 * max + one read's worth of bytes.
 */
typedef struct rd_linereader {
    size_t max;    /* longest accepted line, in bytes, without the newline */
    bool skipping; /* inside an overlong line: discard up to the next newline */
} rd_linereader;

enum {
    RD_LINE_NONE = 0,     /* no complete line yet */
    RD_LINE_OK = 1,       /* *line (malloc'd, NUL-terminated, newline stripped) and *len set */
    RD_LINE_OVERLONG = 2, /* an overlong line was dropped; call again */
};
/** Takes the next line out of in. With at_eof, a final unterminated line is returned too. */
int rd_linereader_next(rd_linereader *lr, struct evbuffer *in, bool at_eof, char **line,
                       size_t *len);

#endif
