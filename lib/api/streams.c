/*
 * streams.c: the HTTP side of the live event streams (SPEC section 4). It validates the
 * request (run existence, 204 for a finished and fully read run, the client cap, the resume
 * id, stream.reset when that id predates retained history), takes the connection over as an
 * SSE transport (sse.c) and subscribes it to the fan-out hub (hub.c), which does the rest.
 *
 * The hub is fed by an engine listener, which the engine calls after each commit: so only
 * durable events are ever sent, and the hub's last published id bounds what a replay may
 * read from the store.
 */
#include "api/streams.h"

#include "api/api_int.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/metrics.h"
#include "stream/hub.h"
#include "stream/sse.h"
#include "base/util.h"

/* The reconnection delay sent as `retry:`. A few seconds spreads the reconnects of many
 * clients after a restart. */
#define STREAM_RETRY_MS 3000
#define STREAM_MAX_FILTER 32

struct rd_streams {
    rd_engine *eng;
    rd_store *store;
    rd_hub *hub;
    int close_calls;               /* rd_streams_close_all: first graceful, then forced */
    uint64_t refused;              /* 503 too_many_streams */
    rd_metric *m_disconnects;      /* by cause; NULL without a registry */
    rd_metric *m_stats[17];        /* the hub's counts (stream_fams), copied at scrape time */
    uint64_t transport_slow;       /* cut by the transport's own bound (a heartbeat that did
                                      not fit) rather than by the hub */
    void (*on_release)(void *arg); /* backpressure lifted (runs.c's held posts) */
    void *release_arg;
};

/* The hub's backlog of subscribers that keep up passed its bound (on) or fell to half (off):
 * workers' output is not read meanwhile, and external workers' posts wait (runs.c). */
static void streams_on_pressure(void *arg, bool on)
{
    rd_streams *st = arg;
    rd_engine_throttle(st->eng, on);
    if (!on && st->on_release)
        st->on_release(st->release_arg);
}

bool rd_streams_pressure(const rd_streams *st)
{
    return st && rd_hub_pressure(st->hub);
}

void rd_streams_on_release(rd_streams *st, void (*fn)(void *arg), void *arg)
{
    st->on_release = fn;
    st->release_arg = arg;
}

/* --- engine and store glue -------------------------------------------------------------- */

static void stream_on_event(const rd_pub_event *ev, void *arg)
{
    rd_streams *st = arg;
    rd_hub_event he = {.id = ev->id,
                       .run_id = ev->run_id,
                       .flow = ev->flow,
                       .type = ev->type,
                       .ts = ev->ts,
                       .data = ev->data,
                       .frame = ev->frame,
                       .frame_len = ev->frame_len,
                       .terminal = ev->run_terminal};
    for (int a = 0; a < RD_AUD__COUNT; a++) {
        he.variant[a] = ev->variant[a];
        he.variant_len[a] = ev->variant_len[a];
    }
    rd_hub_publish(st->hub, &he);
}

/* The engine formats frames only for events some subscriber may want. */
static bool stream_wants(void *arg, const char *run_id)
{
    rd_streams *st = arg;
    return rd_hub_wants(st->hub, run_id);
}

typedef struct scan_ctx {
    rd_engine *eng;
    rd_hub_event_fn fn;
    void *arg;
    bool failed;
} scan_ctx;

static int stream_on_row(const rd_event *ev, void *arg)
{
    scan_ctx *c = arg;
    rd_hub_event he = {.id = ev->id,
                       .run_id = ev->run_id,
                       .flow = ev->flow,
                       .type = ev->type,
                       .ts = ev->ts,
                       .data = ev->data,
                       .terminal = strcmp(ev->type, "run.end") == 0};
    /* The engine renders a stored event exactly as it published it live: one frame per
     * audience that sees its links differently. */
    rd_frames fr;
    if (rd_engine_event_frames(c->eng, ev, &fr) != 0) {
        c->failed = true; /* a stop is not an error to the store: remember it */
        return 1;
    }
    he.frame = fr.text[RD_AUD_FULL];
    he.frame_len = fr.len[RD_AUD_FULL];
    for (int a = 0; a < RD_AUD__COUNT; a++) {
        he.variant[a] = a == RD_AUD_FULL ? NULL : fr.text[a];
        he.variant_len[a] = a == RD_AUD_FULL ? 0 : fr.len[a];
    }
    int rc = c->fn(&he, c->arg);
    rd_frames_dispose(&fr);
    return rc;
}

static int stream_scan(void *scan_arg, const char *run_id, int64_t after, int limit,
                       rd_hub_event_fn fn, void *arg)
{
    rd_streams *st = scan_arg;
    scan_ctx c = {st->eng, fn, arg, false};
    if (rd_engine_committing(st->eng))
        return RD_EAGAIN; /* the read would wait for the commit: the hub asks again after it */
    int rc = rd_store_events_scan(st->store, run_id, after, limit, stream_on_row, &c);
    return rc != 0 || c.failed ? -1 : 0;
}

/* --- the sink: an rd_sse under a hub subscriber ------------------------------------------ */

typedef struct stream_conn {
    rd_streams *st;
    rd_hub_sub *sub;
    rd_sse *sse;
    int hub_why; /* why the hub let it go (rd_hub_why), -1 while it has not */
} stream_conn;

static size_t stream_sink_unsent(void *arg)
{
    stream_conn *c = arg;
    return rd_sse_pending(c->sse);
}

static void stream_sink_send(void *arg, struct evbuffer *buf)
{
    stream_conn *c = arg;
    rd_sse_send_buffer(c->sse, buf);
}

static void stream_sink_close(void *arg, rd_hub_why why)
{
    stream_conn *c = arg;
    c->hub_why = (int)why;
    if (why == RD_HUB_END || why == RD_HUB_SHUTDOWN)
        rd_sse_close(c->sse); /* flushes what is queued first */
    else
        rd_sse_abort(c->sse); /* c is gone after this */
}

static uint64_t stream_sink_taken(void *arg)
{
    stream_conn *c = arg;
    return rd_sse_taken(c->sse);
}

static const rd_hub_sink_ops stream_sink_ops = {stream_sink_unsent, stream_sink_send,
                                                stream_sink_close, stream_sink_taken};

/* The cause of a disconnect, from a fixed set: the transport's reason first, then the hub's. */
static const char *disconnect_cause(const stream_conn *c, rd_sse_why why)
{
    if (why == RD_SSE_CLOSED_BY_PEER)
        return "client";
    if (why == RD_SSE_CLOSED_SLOW || c->hub_why == RD_HUB_SLOW)
        return "slow";
    if (c->hub_why == RD_HUB_END)
        return "run_end";
    if (c->hub_why == RD_HUB_SHUTDOWN || c->hub_why == RD_HUB_ABORT)
        return "shutdown";
    return "error";
}

static void stream_on_close(rd_sse *s, rd_sse_why why, void *arg)
{
    stream_conn *c = arg;
    if (!c)
        return;
    if (why == RD_SSE_CLOSED_SLOW)
        c->st->transport_slow++;
    rd_metric_inc(c->st->m_disconnects, RD_LV(disconnect_cause(c, why)));
    rd_hub_unsubscribe(c->sub);
    free(c);
}

static void stream_on_drain(rd_sse *s, void *arg)
{
    stream_conn *c = arg;
    rd_hub_sub_drained(c->sub);
}

/* --- request parsing -------------------------------------------------------------------- */

/* The resume point: the Last-Event-ID header (what EventSource sends on reconnect) wins
 * over the last_event_id query (a first connection's explicit choice). 1 when given, 0 when
 * not, -1 after replying 400. */
static int resume_id(rd_req *req, int64_t *out)
{
    const char *v = rd_req_header(req, "Last-Event-ID");
    const char *name = "Last-Event-ID";
    if (!v || !*v) {
        v = rd_req_query(req, "last_event_id");
        name = "last_event_id";
    }
    if (!v || !*v)
        return 0;
    if (rd_parse_i64(v, out) != 0 || *out < 0)
        return rd_reply_error(req, 400, "invalid_last_event_id",
                              "%s must be a non-negative integer event id", name);
    return 1;
}

/* Splits a comma list query value into at most STREAM_MAX_FILTER non-empty items pointing
 * into buf. Count, or -1 after replying 400. */
static int split_list(rd_req *req, const char *key, char *buf, size_t buflen, const char **items)
{
    const char *v = rd_req_query(req, key);
    if (!v || !*v)
        return 0;
    if (strlen(v) >= buflen)
        return rd_reply_error(req, 400, "invalid_parameter", "'%s' is too long", key);
    snprintf(buf, buflen, "%s", v);
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t)
            continue;
        if (n == STREAM_MAX_FILTER)
            return rd_reply_error(req, 400, "invalid_parameter", "'%s' lists more than %d values",
                                  key, STREAM_MAX_FILTER);
        items[n++] = t;
    }
    return n;
}

/* The response head lines beyond sse.c's own: the request id and, for an allowed Origin,
 * CORS (the same policy as rd_req_cors, which works on evhtp replies we do not send). */
static void head_lines(rd_req *req, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "X-Request-Id: %s\r\n", req->request_id);
    const char *origin = rd_req_header(req, "Origin");
    if (!origin || strlen(origin) > 256 || n < 0)
        return;
    for (const char *p = origin; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return; /* never echo a header-splitting value */
    for (int i = 0; i < req->cfg->n_cors; i++) {
        if (strcmp(req->cfg->cors_origins[i], "*") == 0 ||
            strcmp(req->cfg->cors_origins[i], origin) == 0) {
            snprintf(out + n, outlen - (size_t)n,
                     "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n"
                     "Access-Control-Expose-Headers: X-Request-Id, Retry-After\r\n",
                     origin);
            return;
        }
    }
}

/* --- opening a stream ------------------------------------------------------------------- */

typedef struct open_args {
    rd_hub_filter f;
    int64_t resume;    /* -1: live only */
    bool run_finished; /* a run stream of a terminal run */
} open_args;

/* An id older than retained history cannot be resumed without a gap: say so with
 * stream.reset and continue from the oldest event kept. Returns the (maybe moved) resume
 * point and fills reset (empty when none). */
static int64_t check_retained(rd_streams *st, int64_t resume, char *reset, size_t len)
{
    int64_t min = 0;
    reset[0] = 0;
    if (resume < 0 || rd_engine_oldest_event_id(st->eng, &min) != 0 || min <= 0 ||
        resume >= min - 1)
        return resume;
    snprintf(reset, len,
             "id: %" PRId64 "\nevent: stream.reset\ndata: {\"reason\":\"expired\","
             "\"message\":\"events after %" PRId64 " are no longer retained; continuing from "
             "the oldest retained event\",\"last_event_id\":%" PRId64 ",\"oldest_id\":%" PRId64
             "}\n\n",
             min - 1, resume, resume, min);
    rd_hub_note_reset(st->hub);
    return min - 1;
}

static void open_stream(rd_req *req, rd_streams *st, open_args *a)
{
    const rd_config *cfg = req->cfg;
    if (rd_hub_count(st->hub) >= (size_t)cfg->max_sse_clients) {
        st->refused++;
        evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Retry-After", "5", 0, 0));
        rd_reply_error(req, 503, "too_many_streams",
                       "this server already serves %d event streams; retry later",
                       cfg->max_sse_clients);
        return;
    }
    if (req->method == htp_method_HEAD) {
        rd_reply_raw(req, 200, "text/event-stream", NULL, 0);
        return;
    }
    char reset[400];
    int64_t resume = check_retained(st, a->resume, reset, sizeof reset);
    if (resume > rd_hub_last_id(st->hub))
        resume = rd_hub_last_id(st->hub); /* an id from the future: nothing to replay */
    rd_hub_set_max_buffer(st->hub, (size_t)cfg->sse_max_buffer);
    rd_hub_set_max_total(st->hub, (size_t)cfg->sse_max_total);
    rd_hub_set_backpressure(st->hub, (size_t)cfg->sse_backpressure);
    rd_hub_set_stall(st->hub, cfg->sse_stall_ms);
    char head[800];
    head_lines(req, head, sizeof head);
    rd_sse_opts o = {.max_buffer = (size_t)cfg->sse_max_buffer,
                     .heartbeat_ms = cfg->heartbeat_ms,
                     .retry_ms = STREAM_RETRY_MS,
                     .extra_headers = head};
    stream_conn *c = calloc(1, sizeof *c);
    rd_sse *s = c ? rd_sse_open(req->r, &o, stream_on_close, NULL) : NULL;
    if (!s) {
        free(c);
        rd_reply_error(req, 500, "internal", "could not open the stream");
        return;
    }
    /* From here on the connection is ours: failures close it. */
    c->st = st;
    c->sse = s;
    c->hub_why = -1;
    c->sub = rd_hub_subscribe(st->hub, &a->f, resume, a->run_finished, &stream_sink_ops, c);
    if (!c->sub) {
        free(c);
        rd_sse_abort(s);
        return;
    }
    rd_sse_set_arg(s, c);
    rd_sse_set_drain(s, rd_hub_low_watermark(st->hub), stream_on_drain);
    rd_req_log(req, 200, 0); /* the stream goes on; its request is answered */
    if (reset[0])
        rd_hub_sub_write(c->sub, reset, strlen(reset));
}

/* Common checks. Every acknowledged event was committed, and so published, before it was
 * acknowledged, and the hub bounds a replay by the last published id: the stream needs no
 * commit of its own (one would hold the loop while the store is slow). A store that fails
 * refuses new streams, as it refuses writes. */
static rd_streams *begin(rd_streams *st, rd_req *req, int64_t *resume, int *have)
{
    if (st->close_calls > 0) {
        rd_reply_error(req, 503, "shutting_down", "the server is shutting down");
        return NULL;
    }
    if ((*have = resume_id(req, resume)) < 0)
        return NULL;
    if (!rd_engine_store_ok(st->eng)) {
        evhtp_headers_add_header(req->r->headers_out, evhtp_header_new("Retry-After", "1", 0, 0));
        rd_reply_error(req, 503, "store_unavailable", "the store could not commit; try again");
        return NULL;
    }
    return st;
}

void rd_streams_run(rd_streams *st, rd_req *req, const char *id, rd_audience aud)
{
    int64_t resume = 0;
    int have = 0;
    if (!begin(st, req, &resume, &have))
        return;
    json_t *run = NULL;
    rd_apierr e;
    if (rd_engine_get(st->eng, id, aud, &run, &e) != 0) {
        rd_reply_apierr(req, &e);
        return;
    }
    rd_status status;
    const char *sname = json_string_value(json_object_get(run, "status"));
    bool finished = sname && rd_status_parse(sname, &status) == 0 && rd_status_terminal(status);
    int64_t last = json_integer_value(json_object_get(run, "last_event_id"));
    json_decref(run);
    if (finished && have && resume >= last) {
        /* Everything was read: 204 tells EventSource to stop reconnecting. */
        rd_reply_raw(req, 204, "text/event-stream", NULL, 0);
        return;
    }
    /* A run stream always starts from the run's first event unless told otherwise. */
    open_args a = {.f = {.run_id = id, .audience = aud},
                   .resume = have ? resume : 0,
                   .run_finished = finished};
    open_stream(req, st, &a);
}

/* A browser tab: it asks for HTML and is no EventSource (which asks for text/event-stream). */
static bool is_tab(const rd_req *req)
{
    const char *acc = rd_req_header(req, "Accept");
    return rd_api_wants_html(req) && !strstr(acc, "text/event-stream");
}

/* The page a browser tab gets instead of a bare 401 body when it opens a stream address
 * without a key: what the address is and how it is meant to be opened. Same status and
 * WWW-Authenticate as the JSON answer; the token is never echoed. id is NULL for the
 * global stream. */
static void refusal_page(rd_streams *st, rd_req *req, const char *id)
{
    const char *token = rd_req_query(req, "token");
    /* A run id is 26 characters: a longer segment is quoted as what it is, so the page
     * stays whole in its buffer. */
    char *rid = id && strlen(id) <= 64 ? rd_html_escape(id) : NULL;
    const char *shown = rid ? rid : "(not a run id)";
    char body[1600];
    const char *how =
        "<p>An event stream is read by a program, not shown in a tab: in a web page with "
        "<code>new EventSource(url)</code> and one <code>addEventListener</code> per event "
        "type, or from a terminal with <code>curl -N -H 'Accept: text/event-stream' "
        "'LINK'</code>.</p>";
    if (!id)
        snprintf(body, sizeof body,
                 "<p>This address is the live event stream of every run on this server. It "
                 "needs an API key (<code>Authorization: Bearer</code> or "
                 "<code>x-api-key</code>), which a browser tab cannot send.</p>%s",
                 how);
    else if (token && *token && rd_engine_stream_token_ok(st->eng, id, token))
        snprintf(body, sizeof body,
                 "<p>This link is the live event stream of run <code>%s</code>. Its token is "
                 "valid, but it opens the stream only for a client that asks for "
                 "<code>text/event-stream</code>.</p>%s",
                 shown, how);
    else if (token && *token)
        snprintf(body, sizeof body,
                 "<p>This link was the event stream of run <code>%s</code>, but its token is "
                 "not valid for that run or has expired (stream links last a day unless the "
                 "server says otherwise). Ask the application that gave you the link for a "
                 "fresh one: it is the run's <code>stream_url</code>.</p>",
                 shown);
    else
        snprintf(body, sizeof body,
                 "<p>This address is the event stream of run <code>%s</code>. It needs an "
                 "API key (<code>Authorization: Bearer</code> or <code>x-api-key</code>) or "
                 "the run's <code>stream_url</code>, which carries a token.</p>%s",
                 shown, how);
    free(rid);
    evhtp_headers_add_header(req->r->headers_out,
                             evhtp_header_new("WWW-Authenticate", "Bearer", 0, 0));
    rd_api_page(req, 401, "Event stream: not allowed here", body);
}

/* Whether req may read streams with its key (the read scope); else refused: 401/403 in
 * JSON, or the page above for a browser tab without a key. */
static bool stream_allowed(rd_streams *st, rd_req *req, const char *id)
{
    if (req->scope != 0 || !is_tab(req))
        return rd_req_allowed(req, RD_SCOPE_READ); /* a key of any scope may read */
    refusal_page(st, req, id);
    return false;
}

/* GET /v1/events */
static void streams_on_all(rd_req *req, void *arg)
{
    rd_streams *st = arg;
    int64_t resume = 0;
    int have = 0;
    char rbuf[2048], fbuf[2048], tbuf[2048];
    const char *runs[STREAM_MAX_FILTER], *flows[STREAM_MAX_FILTER], *types[STREAM_MAX_FILTER];
    if (!stream_allowed(st, req, NULL))
        return;
    open_args a = {.resume = -1, .f.audience = rd_api_audience(req)};
    if ((a.f.n_runs = split_list(req, "run", rbuf, sizeof rbuf, runs)) < 0 ||
        (a.f.n_flows = split_list(req, "flow", fbuf, sizeof fbuf, flows)) < 0 ||
        (a.f.n_types = split_list(req, "types", tbuf, sizeof tbuf, types)) < 0)
        return;
    a.f.runs = runs;
    a.f.flows = flows;
    a.f.types = types;
    if (!begin(st, req, &resume, &have))
        return;
    /* The global stream starts live; a resume id replays what came after it. */
    if (have)
        a.resume = resume;
    open_stream(req, st, &a);
}

static bool token_ok(rd_streams *st, rd_req *req, const char *id)
{
    /* The token opens the run's event stream and nothing else, not even its JSON log. */
    const char *token = rd_req_query(req, "token");
    const char *acc = rd_req_header(req, "Accept");
    if (!token || !*token || !acc || !strstr(acc, "text/event-stream"))
        return false;
    return rd_engine_stream_token_ok(st->eng, id, token);
}

/* Who reads a run's events (SPEC section 3, "Who sees capability links"): a write key (or no
 * keys at all) sees every link; a valid stream token the auth URL (and approve/deny links
 * when the flow allows); a read key none. The token wins over a read key: it shows more. */
bool rd_streams_access(rd_streams *st, rd_req *req, const char *id, rd_audience *aud)
{
    if (req->scope >= RD_SCOPE_WRITE) {
        *aud = RD_AUD_FULL;
        return true;
    }
    if (token_ok(st, req, id)) {
        *aud = RD_AUD_STREAM;
        return true;
    }
    if (!stream_allowed(st, req, id))
        return false;
    *aud = RD_AUD_READ;
    return true;
}

/* --- lifecycle and metrics -------------------------------------------------------------- */

rd_streams *rd_streams_new(struct event_base *base, rd_engine *eng, const rd_config *cfg, char *err,
                           size_t errlen)
{
    rd_streams *st = calloc(1, sizeof *st);
    if (!st) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->eng = eng;
    st->store = rd_engine_store(st->eng);
    int64_t last = 0;
    if (rd_store_max_event_id(st->store, &last) != 0) {
        free(st);
        snprintf(err, errlen, "cannot read the newest event id");
        return NULL;
    }
    rd_hub_opts o = {.max_buffer = (size_t)cfg->sse_max_buffer,
                     .max_total = (size_t)cfg->sse_max_total,
                     .backpressure = (size_t)cfg->sse_backpressure,
                     .stall_ms = cfg->sse_stall_ms,
                     .on_pressure = streams_on_pressure,
                     .page = 500,
                     .scan = stream_scan,
                     .scan_arg = st};
    o.pressure_arg = st;
    st->hub = rd_hub_new(base, &o, last);
    if (!st->hub || rd_engine_add_listener_gated(st->eng, stream_on_event, stream_wants, st) != 0) {
        rd_hub_free(st->hub);
        free(st);
        snprintf(err, errlen, "cannot create the event hub");
        return NULL;
    }
    return st;
}

int rd_streams_register(rd_streams *st, rd_http *h)
{
    /* Public to the route table: streams_on_all checks the key, so that a browser tab
     * without one gets a page rather than a bare 401 body. */
    return rd_http_route(h, RD_METHOD_GET | RD_METHOD_HEAD, "/v1/events", RD_HTTP_PUBLIC,
                         streams_on_all, st);
}

size_t rd_streams_count(const rd_streams *st)
{
    return rd_hub_count(st->hub);
}

/* The hub's counts under their historical names, copied into the registry at scrape time. */
static const struct {
    const char *name, *help;
    bool counter;
} stream_fams[] = {
    {"runsd_sse_subscribers", "Event stream subscribers connected.", false},
    {"runsd_sse_frames_total", "SSE frames queued to subscribers, live and replayed.", true},
    {"runsd_sse_bytes_total", "SSE bytes queued to subscribers.", true},
    {"runsd_sse_shared_frames_total", "Live frames handed out by reference instead of copied.",
     true},
    {"runsd_sse_slow_disconnects_total",
     "Subscribers cut for holding more unsent bytes than their bound.", true},
    {"runsd_sse_replays_total", "Subscriptions that began with a replay from the store.", true},
    {"runsd_sse_replay_frames_total", "Frames replayed from the store.", true},
    {"runsd_sse_resets_total", "stream.reset sent: the resume id predated retained history.", true},
    {"runsd_sse_budget_cuts_total",
     "Subscribers cut to keep all subscribers' unsent bytes within sse_max_total.", true},
    {"runsd_sse_lagged_total",
     "Times a subscriber whose socket was full stopped receiving frames and caught up later, "
     "from the ring of recent frames or the store.",
     true},
    {"runsd_sse_held_bytes",
     "Bytes of frames held in the hub for subscribers whose socket is full.", false},
    {"runsd_sse_backpressure_total", "Times producers were asked to slow down.", true},
    {"runsd_sse_stalls_total",
     "Subscribers that took nothing for sse_stall while producers were paused, and so stopped "
     "holding them.",
     true},
    {"runsd_sse_backpressure_on", "1 while producers are asked to slow down.", false},
    {"runsd_sse_refused_total", "Streams refused with 503 at max_sse_clients.", true},
    {"runsd_sse_ring_frames_total",
     "Frames subscribers that lagged caught up on from the ring of recent frames, not the store.",
     true},
    {"runsd_sse_ring_bytes", "Bytes of frames kept in the ring of recent frames (at most 4 MiB).",
     false},
};

_Static_assert(sizeof stream_fams / sizeof stream_fams[0] ==
                   sizeof((rd_streams *)0)->m_stats / sizeof(rd_metric *),
               "one registry family per hub count");

static void streams_on_collect(void *arg)
{
    rd_streams *st = arg;
    rd_hub_stats s;
    rd_hub_get_stats(st->hub, &s);
    const uint64_t v[] = {s.subscribers,
                          s.frames,
                          s.bytes,
                          s.shared_frames,
                          s.slow_disconnects + st->transport_slow,
                          s.replays,
                          s.replay_frames,
                          s.resets,
                          s.budget_cuts,
                          s.lags,
                          s.held_bytes,
                          s.pressure_events,
                          s.stalls,
                          rd_hub_pressure(st->hub) ? 1 : 0,
                          st->refused,
                          s.ring_frames,
                          s.ring_bytes};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        rd_metric_set(st->m_stats[i], NULL, (double)v[i]);
}

int rd_streams_set_metrics(rd_streams *st, rd_metrics *reg)
{
    static const char *const causes[] = {"client", "slow", "run_end", "shutdown", "error"};
    for (size_t i = 0; i < sizeof stream_fams / sizeof stream_fams[0]; i++)
        st->m_stats[i] =
            rd_metrics_family(reg, stream_fams[i].counter ? RD_METRIC_COUNTER : RD_METRIC_GAUGE,
                              stream_fams[i].name, stream_fams[i].help, NULL, NULL, 0);
    st->m_disconnects = rd_metrics_counter(
        reg, "runsd_sse_disconnects_total",
        "Event streams that ended, by cause: client (the reader went away), slow (cut for "
        "falling behind), run_end (the run's stream ended), shutdown, error.",
        RD_LV("cause"));
    for (size_t i = 0; i < sizeof causes / sizeof causes[0]; i++)
        rd_metric_add(st->m_disconnects, RD_LV(causes[i]), 0);
    return rd_metrics_collector(reg, streams_on_collect, st, NULL) == 0 ? 0 : RD_ERR;
}

void rd_streams_close_all(rd_streams *st)
{
    if (!st)
        return;
    /* First call (shutdown begins): flush and close. Later ones (the server is being
     * freed): whoever is still flushing to a stalled reader goes at once. */
    rd_hub_close_all(st->hub, st->close_calls++ > 0);
}

void rd_streams_free(rd_streams *st)
{
    if (!st)
        return;
    rd_hub_close_all(st->hub, true);
    /* The engine cannot drop a listener, and rd_engine_free flushes once more: publish
     * everything pending now, while the hub exists, so that last flush has nothing for us. */
    rd_engine_flush(st->eng);
    rd_hub_free(st->hub);
    free(st);
}
