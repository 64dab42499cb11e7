/*
 * control.c: the external worker control stream, GET /v1/runs/{id}/control: an SSE stream
 * on which the engine sends an external worker its messages (each message's type is the
 * event name). The engine holds a sink per attached stream; this file owns the streams and
 * detaches them from the engine when they close.
 */
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "stream/sse.h"

typedef struct ctl_stream {
    rd_sse *sse;
    rd_engine *eng;
    void *handle;
    LIST_ENTRY(ctl_stream) link;
} ctl_stream;

static int ctl_send(void *arg, const char *line, size_t len)
{
    ctl_stream *cs = arg;
    if (!cs->sse)
        return -1;
    /* the type of the message doubles as the SSE event name */
    json_t *j = json_loadb(line, len, 0, NULL);
    const char *type = j ? json_string_value(json_object_get(j, "type")) : NULL;
    int rc = rd_sse_frame(cs->sse, 0, type ? type : "message", line, len);
    json_decref(j);
    return rc;
}

static void ctl_close(void *arg)
{
    ctl_stream *cs = arg;
    cs->handle = NULL; /* the engine dropped the sink */
    if (cs->sse)
        rd_sse_close(cs->sse);
}

static void ctl_on_close(rd_sse *s, rd_sse_why why, void *arg)
{
    ctl_stream *cs = arg;
    cs->sse = NULL;
    if (cs->handle)
        rd_engine_ctl_detach(cs->eng, cs->handle);
    LIST_REMOVE(cs, link);
    free(cs);
}

static void h_control(rd_req *req, void *arg)
{
    rd_api *a = arg;
    const char *id = rd_req_param(req, "id");
    ctl_stream *cs = calloc(1, sizeof *cs);
    if (!cs) {
        rd_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    cs->eng = a->eng;
    /* Validate before taking the connection over, so errors are ordinary JSON replies. */
    json_t *run = NULL;
    rd_apierr e;
    if (rd_engine_get(a->eng, id, RD_AUD_FULL, &run, &e) != 0) {
        free(cs);
        rd_reply_apierr(req, &e);
        return;
    }
    json_decref(run);
    rd_sse_opts o = {.max_buffer = (size_t)req->cfg->sse_max_buffer,
                     .heartbeat_ms = req->cfg->heartbeat_ms,
                     .retry_ms = 1000};
    rd_ctl_sink sink = {.send = ctl_send, .close = ctl_close, .arg = cs};
    /* Attach first so a refusal (not external, not active) is still a JSON reply. */
    if (rd_engine_ctl_attach(a->eng, id, &sink, &cs->handle, &e) != 0) {
        free(cs);
        rd_reply_apierr(req, &e);
        return;
    }
    LIST_INSERT_HEAD(&a->ctls, cs, link);
    /* The replayed messages were sent before the stream existed: attach buffered nothing,
     * so re-attach now that the transport is up. */
    rd_engine_ctl_detach(a->eng, cs->handle);
    cs->handle = NULL;
    cs->sse = rd_sse_open(req->r, &o, ctl_on_close, cs);
    if (!cs->sse) {
        LIST_REMOVE(cs, link);
        free(cs);
        rd_reply_error(req, 500, "internal", "could not open the stream");
        return;
    }
    if (rd_engine_ctl_attach(a->eng, id, &sink, &cs->handle, &e) != 0)
        rd_sse_close(cs->sse);
}

void rd_control_close_all(rd_api *a)
{
    ctl_stream *cs;
    while ((cs = LIST_FIRST(&a->ctls))) {
        if (cs->sse)
            rd_sse_abort(cs->sse); /* ctl_on_close unlinks and frees */
        else {
            LIST_REMOVE(cs, link);
            free(cs);
        }
    }
}

int rd_control_register(rd_http *h, rd_api *a)
{
    return rd_http_route(h, RD_METHOD_GET, "/v1/runs/{id}/control", RD_SCOPE_WRITE, h_control, a);
}
