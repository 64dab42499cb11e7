/*
 * stream.c: live SSE streams. This version refuses SSE requests with 406 and a pointer to
 * the JSON event log; the fan-out hub is issue 3's work.
 */
#include "stream.h"

#include <stdlib.h>

void rd_stream_run(rd_req *req, const char *id)
{
    rd_reply_error(req, 406, "sse_unavailable",
                   "this daemon version serves the event log as JSON only; omit "
                   "Accept: text/event-stream");
}

void rd_stream_all(rd_req *req)
{
    rd_stream_run(req, NULL);
}

bool rd_stream_token_ok(rd_req *req, const char *id)
{
    return false;
}

char *rd_stream_metrics(rd_http *h)
{
    return NULL;
}

void rd_stream_close_all(rd_http *h)
{
}

void rd_stream_free_state(rd_http *h)
{
}
