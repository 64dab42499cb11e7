/*
 * runs_links.c: what a run looks like from outside: its wire form with a fresh stream token, the
 * SSE payload of an event (one formatter for live and replayed events), and the one-time
 * approval and authorization links. Stored records, events and webhook bodies keep link
 * placeholders ("rdlink:<a|d|s>:<nonce>"); links are rendered here, from the link key, when
 * something is shown or sent, so the database never holds a usable token.
 */
#include "run/run_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/token.h"
#include "webhook/outbox.h"

/* Link placeholders in one string become approve/deny URLs or the state token. Only the link
 * fields of a pending action are ever rendered, so a worker's or a client's own text is never
 * rewritten. Returns a malloc'd string or NULL. */
static char *render_string(rd_runs *rs, const char *run_id, const char *text)
{
    const char *p = strstr(text, "rdlink:");
    if (!p || (p[7] != 'a' && p[7] != 'd' && p[7] != 's') || p[8] != ':')
        return NULL;
    char kind = p[7], nonce[32], tok[RD_LINK_TOKEN_MAX], rep[RD_LINK_TOKEN_MAX + 512];
    size_t n = 0;
    const char *np = p + 9;
    while (n < sizeof nonce - 1 && (isalnum((unsigned char)np[n]) || np[n] == '-' || np[n] == '_'))
        n++;
    memcpy(nonce, np, n);
    nonce[n] = 0;
    if (rd_link_token_make(rs->link_key, run_id, kind, nonce, tok, sizeof tok) != 0)
        return NULL;
    if (kind == 's')
        snprintf(rep, sizeof rep, "%s", tok);
    else
        snprintf(rep, sizeof rep, "%s/v1/runs/approval?token=%s", rs->cfg->public_url, tok);
    size_t pre = (size_t)(p - text), rl = strlen(rep), rest = strlen(np + n);
    char *out = malloc(pre + rl + rest + 1);
    if (!out)
        return NULL;
    memcpy(out, text, pre);
    memcpy(out + pre, rep, rl);
    memcpy(out + pre + rl, np + n, rest + 1);
    return out;
}

static void render_pending(rd_runs *rs, const char *run_id, json_t *pa)
{
    static const char *fields[] = {"approve_url", "deny_url", "auth_url"};
    if (!json_is_object(pa))
        return;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        /* A provider URL may carry {state} several times: render every placeholder. */
        for (int n = 0; n < 64; n++) {
            const char *v = json_string_value(json_object_get(pa, fields[i]));
            char *r = v ? render_string(rs, run_id, v) : NULL;
            if (!r)
                break;
            json_object_set_new(pa, fields[i], json_string(r));
            free(r);
        }
    }
}

json_t *rd_run_public_pending(const rd_run *r)
{
    if (!json_is_object(r->pending_action))
        return json_null();
    json_t *out = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(r->pending_action, k, v)
    {
        if (k[0] != '_')
            json_object_set(out, k, v);
    }
    return out;
}

/* Whether the stream token of a run of flow sees approve/deny links (approval_links). */
static bool stream_approvals(rd_runs *rs, const char *flow)
{
    const rd_flow_config *f = flow ? rd_config_flow(rs->cfg, flow) : NULL;
    return f && f->approval_links_stream;
}

/* Cheap test before parsing: a link field with a value, a placeholder or a rendered link. */
static bool has_link_text(const char *data)
{
    return strstr(data, "rdlink:") || strstr(data, "\"approve_url\":\"") ||
           strstr(data, "\"deny_url\":\"") || strstr(data, "\"auth_url\":\"");
}

char *rd_runs_render_event(rd_runs *rs, const char *run_id, const char *flow, const char *type,
                           const char *data, rd_audience aud)
{
    if (!rd_event_may_link(type) || !has_link_text(data))
        return NULL;
    json_t *d = json_loads(data, 0, NULL);
    if (!d)
        return NULL;
    /* Hidden fields are nulled first, so a link aud may not see is never even derived. */
    json_t *pa = rd_event_pending(type, d);
    rd_pending_redact(pa, aud, aud == RD_AUD_STREAM && stream_approvals(rs, flow));
    render_pending(rs, run_id, pa);
    char *out = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return out;
}

json_t *rd_runs_run_json_as(rd_runs *rs, const rd_run *r, rd_audience aud)
{
    char token[96];
    const char *tok = NULL;
    if (rd_stream_token_make(rs->stream_key, r->id, rd_now_ms() + rs->cfg->stream_token_ttl_ms,
                             token, sizeof token) == 0)
        tok = token;
    json_t *o = rd_run_to_json(r, rs->cfg->public_url, tok);
    json_t *pa = json_object_get(o, "pending_action");
    rd_pending_redact(pa, aud, aud == RD_AUD_STREAM && stream_approvals(rs, r->flow));
    render_pending(rs, r->id, pa);
    return o;
}

json_t *rd_runs_run_json(rd_runs *rs, const rd_run *r)
{
    return rd_runs_run_json_as(rs, r, RD_AUD_FULL);
}

json_t *rd_active_json(const rd_active *act)
{
    return rd_runs_run_json(act->rs, act->run);
}

/* {"id","type","run_id","timestamp","data"} around data; malloc'd into *out. 0 or -1. */
static int frame_wrap(int64_t id, const char *type, const char *run_id, const char *tbuf,
                      const char *data, char **out, size_t *len)
{
    size_t cap = strlen(data) + strlen(type) + strlen(run_id) + strlen(tbuf) + 96;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    int n = snprintf(buf, cap,
                     "{\"id\":%lld,\"type\":\"%s\",\"run_id\":\"%s\",\"timestamp\":\"%s\","
                     "\"data\":%s}",
                     (long long)id, type, run_id, tbuf, data);
    *out = buf;
    *len = (size_t)n;
    return 0;
}

void rd_frames_dispose(rd_frames *f)
{
    for (int a = 0; a < RD_AUD__COUNT; a++) {
        free(f->text[a]);
        f->text[a] = NULL;
        f->len[a] = 0;
    }
}

int rd_runs_frames(rd_runs *rs, const rd_frame_src *ev, rd_frames *out)
{
    char tbuf[40];
    rd_rfc3339(ev->ts, tbuf, sizeof tbuf);
    memset(out, 0, sizeof *out);
    /* Most events carry no link: one frame, shared by every audience. */
    bool links = rd_event_may_link(ev->type) && has_link_text(ev->data);
    char *full = NULL;
    for (int a = 0; a < (links ? RD_AUD__COUNT : 1); a++) {
        char *d = links ? rd_runs_render_event(rs, ev->run_id, ev->flow, ev->type, ev->data,
                                               (rd_audience)a)
                        : NULL;
        if (a > 0 && (!d || strcmp(d, full ? full : ev->data) == 0)) {
            free(d); /* this audience sees exactly the full frame */
            continue;
        }
        int rc = frame_wrap(ev->id, ev->type, ev->run_id, tbuf, d ? d : ev->data, &out->text[a],
                            &out->len[a]);
        if (a == 0)
            full = d;
        else
            free(d);
        if (rc != 0) {
            free(full);
            rd_frames_dispose(out);
            return -1;
        }
    }
    free(full);
    return 0;
}

bool rd_runs_stream_token_ok(rd_runs *rs, const char *id, const char *token)
{
    return rd_stream_token_check(rs->stream_key, id, token, rd_now_ms());
}

int rd_runs_link_parse(rd_runs *rs, const char *token, char *id, size_t idlen, char *kind,
                       char *nonce, size_t noncelen)
{
    return rd_link_token_parse(rs->link_key, token, id, idlen, kind, nonce, noncelen);
}

/* The link key signs approval and authorization links. It is kept in a file beside the
 * store (0600), not in it, so a copy of the database cannot mint or recover a link. */
static int load_link_key(rd_runs *rs)
{
    const char *db = rs->cfg->store_path;
    if (!db || strcmp(db, ":memory:") == 0)
        return rd_random_bytes(rs->link_key, sizeof rs->link_key);
    char path[4200], b64[64] = "";
    snprintf(path, sizeof path, "%s.key", db);
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(b64, 1, sizeof b64 - 1, f);
        fclose(f);
        b64[n] = 0;
        while (n && (b64[n - 1] == '\n' || b64[n - 1] == '\r'))
            b64[--n] = 0;
        if (rd_b64_decode(b64, n, rs->link_key, sizeof rs->link_key) == (int)sizeof rs->link_key)
            return 0;
        rd_log_err("%s: not a valid key file", path);
        return RD_EINVAL;
    }
    if (rd_random_bytes(rs->link_key, sizeof rs->link_key) != 0)
        return RD_ERR;
    rd_b64_encode(rs->link_key, sizeof rs->link_key, b64);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rd_log_err("cannot create %s: %s", path, strerror(errno));
        return RD_EIO;
    }
    size_t bl = strlen(b64);
    b64[bl] = '\n';
    bool ok = write(fd, b64, bl + 1) == (ssize_t)(bl + 1) && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : RD_EIO;
}

/* The stream-token key is created at first start and kept in the store, so tokens survive
 * restarts (until they expire). */
static int load_stream_key(rd_runs *rs)
{
    char *val = NULL;
    int rc = rd_store_kv_get(rs->store, "stream_key", &val);
    if (rc == 0 && rd_b64_decode(val, strlen(val), rs->stream_key, sizeof rs->stream_key) ==
                       (int)sizeof rs->stream_key) {
        free(val);
        return 0;
    }
    free(val);
    char b64[64];
    if (rd_random_bytes(rs->stream_key, sizeof rs->stream_key) != 0)
        return RD_ERR;
    rd_b64_encode(rs->stream_key, sizeof rs->stream_key, b64);
    if (rd_store_kv_put(rs->store, "stream_key", b64) != 0 || rd_store_commit(rs->store) != 0)
        return RD_EIO;
    return 0;
}

int rd_runs_load_keys(rd_runs *rs)
{
    return load_stream_key(rs) == 0 && load_link_key(rs) == 0 ? 0 : RD_ERR;
}

/* Webhook bodies are stored with link placeholders and rendered when sent. */
static char *links_render_body(void *arg, const char *run_id, const char *body)
{
    rd_runs *rs = arg;
    if (!strstr(body, "rdlink:"))
        return NULL;
    json_t *msg = json_loads(body, 0, NULL);
    if (!msg)
        return NULL;
    render_pending(rs, run_id, json_object_get(json_object_get(msg, "data"), "pending_action"));
    char *out = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    return out;
}

static void outbox_commit(void *arg)
{
    rd_runs_commit_soon(arg);
}

static bool outbox_busy(void *arg)
{
    return rd_runs_committing(arg);
}

void rd_runs_set_outbox(rd_runs *rs, struct rd_outbox *ob)
{
    rs->outbox = ob;
    if (!ob)
        return;
    rd_outbox_set_renderer(ob, links_render_body, rs);
    /* The outbox's writes join the store's one transaction: the commit pipeline commits them
     * (off the loop) and says when a commit is in flight. */
    rd_outbox_set_committer(ob, outbox_commit, outbox_busy, rs);
}

void rd_runs_notify_webhook(rd_active *act, const char *type, json_t *run_wire)
{
    rd_runs *rs = act->rs;
    if (!rs->outbox || act->run->preview)
        return; /* previews send no webhooks (FindAll preview) */
    /* With a pending action the stored body must keep its placeholders: build an
     * unrendered wire form (links_render_body renders it at send time). */
    json_t *wire = NULL;
    if (act->run->pending_action) {
        wire = rd_run_to_json(act->run, rs->cfg->public_url, NULL);
        if (run_wire && json_object_get(run_wire, "item"))
            json_object_set(wire, "item", json_object_get(run_wire, "item"));
    } else {
        wire = run_wire ? json_incref(run_wire) : rd_active_json(act);
    }
    if (rd_outbox_enqueue(rs->outbox, act->run, type, wire) != 0)
        rd_log_err("run %s: could not record the %s webhook", act->run->id, type);
    json_decref(wire);
}
