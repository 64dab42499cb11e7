/* test_links.c: who sees capability links (SPEC section 3), as run/runs_links.c renders them
 * over the redaction rule of model/run_wire.c. Stored data keeps placeholders; each audience
 * gets the links it may use rendered and the others null: write keys all, read keys none, a
 * stream token the auth URL (and approve/deny with approval_links = stream). An event that
 * carries no link is one frame for everybody. A real SQLite store in a temp dir (the keys). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/runs.h"

#define RUN "run_links0123456789abcdefg"
#define APPROVAL                                                                                   \
    "{\"type\":\"approval\",\"prompt\":\"Ship?\",\"details\":null,\"approve_url\":"                \
    "\"rdlink:a:n1\",\"deny_url\":\"rdlink:d:n1\",\"expires_at\":\"2030-01-01T00:00:00Z\"}"
#define AUTH                                                                                       \
    "{\"type\":\"auth\",\"provider\":\"demo\",\"auth_url\":"                                       \
    "\"https://p.example/a?state=rdlink:s:n2&x=1\",\"expires_at\":\"2030-01-01T00:00:00Z\"}"

typedef struct fx {
    struct event_base *base;
    rd_store *store;
    rd_config *cfg;
    rd_runs *rs;
    char dir[64];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char path[128], text[512], err[256];
    snprintf(f->dir, sizeof f->dir, "/tmp/test_links.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(path, sizeof path, "%s/runsd.db", f->dir);
    assert_int_equal(rd_store_open_sqlite(path, NULL, &f->store, err, sizeof err), 0);
    snprintf(text, sizeof text,
             "[server]\npublic_url = http://x.test\n[store]\npath = %s\n"
             "[flow.a]\ncommand = /bin/true\n"
             "[flow.b]\ncommand = /bin/true\napproval_links = stream\n",
             path);
    if (rd_config_parse_string(text, "t.ini", &f->cfg, err, sizeof err) != 0)
        fail_msg("config: %s", err);
    f->base = event_base_new();
    f->rs = rd_runs_new(f->base, f->store, f->cfg);
    assert_non_null(f->rs);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    rd_runs_free(f->rs);
    rd_store_close(f->store);
    rd_config_free(f->cfg);
    event_base_free(f->base);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void frames(fx *f, const char *flow, const char *type, const char *data, rd_frames *out)
{
    rd_frame_src src = {.id = 7, .type = type, .run_id = RUN, .flow = flow, .ts = 1, .data = data};
    assert_int_equal(rd_runs_frames(f->rs, &src, out), 0);
    assert_non_null(out->text[RD_AUD_FULL]);
    for (int a = 0; a < RD_AUD__COUNT; a++)
        if (out->text[a])
            assert_int_equal(strlen(out->text[a]), out->len[a]);
}

static bool has(const char *text, const char *needle)
{
    return text && strstr(text, needle) != NULL;
}

#define LINK "http://x.test/v1/runs/approval?token=" RUN

static void test_approval_event_by_audience(void **state)
{
    fx *f = *state;
    rd_frames fr;
    frames(f, "a", "run.approval_required", APPROVAL, &fr);
    const char *full = fr.text[RD_AUD_FULL], *rd = fr.text[RD_AUD_READ],
               *st = fr.text[RD_AUD_STREAM];
    assert_true(has(full, "\"approve_url\":\"" LINK));
    assert_true(has(full, "\"deny_url\":\"" LINK));
    assert_false(has(full, "rdlink:"));
    for (int i = 0; i < 2; i++) {
        const char *t = i ? st : rd;
        assert_non_null(t);
        assert_true(has(t, "\"approve_url\":null"));
        assert_true(has(t, "\"deny_url\":null"));
        assert_true(has(t, "\"prompt\":\"Ship?\""));
        assert_true(has(t, "\"expires_at\":\"2030-01-01T00:00:00Z\""));
        assert_false(has(t, "token="));
        assert_false(has(t, "rdlink:"));
    }
    rd_frames_dispose(&fr);
    /* approval_links = stream: the stream sees the full frame (no variant of its own). */
    frames(f, "b", "run.status", "{\"status\":\"paused\",\"pending_action\":" APPROVAL "}", &fr);
    assert_true(has(fr.text[RD_AUD_FULL], LINK));
    assert_null(fr.text[RD_AUD_STREAM]);
    assert_true(has(fr.text[RD_AUD_READ], "\"approve_url\":null"));
    rd_frames_dispose(&fr);
}

static void test_auth_event_by_audience(void **state)
{
    fx *f = *state;
    rd_frames fr;
    frames(f, "a", "run.auth_required", AUTH, &fr);
    assert_true(has(fr.text[RD_AUD_FULL], "\"auth_url\":\"https://p.example/a?state=" RUN));
    assert_true(has(fr.text[RD_AUD_FULL], "&x=1\""));
    assert_null(fr.text[RD_AUD_STREAM]); /* the person watching authorizes */
    assert_true(has(fr.text[RD_AUD_READ], "\"auth_url\":null"));
    assert_true(has(fr.text[RD_AUD_READ], "\"provider\":\"demo\""));
    rd_frames_dispose(&fr);
}

static void test_events_without_links_are_one_frame(void **state)
{
    fx *f = *state;
    rd_frames fr;
    /* A worker's item may say anything: it is not a link field, so it is neither rendered
     * nor redacted. */
    const char *item = "{\"seq\":1,\"data\":{\"approve_url\":\"rdlink:a:n1\"}}";
    frames(f, "a", "run.item", item, &fr);
    assert_true(has(fr.text[RD_AUD_FULL], item));
    assert_null(fr.text[RD_AUD_READ]);
    assert_null(fr.text[RD_AUD_STREAM]);
    rd_frames_dispose(&fr);
    frames(f, "a", "run.status",
           "{\"status\":\"running\",\"previous\":\"paused\",\"pending_action\":null}", &fr);
    assert_null(fr.text[RD_AUD_READ]);
    assert_null(fr.text[RD_AUD_STREAM]);
    rd_frames_dispose(&fr);
    assert_null(rd_runs_render_event(f->rs, RUN, "a", "run.log", "{\"m\":\"x\"}", RD_AUD_READ));
}

static void test_run_objects_in_events(void **state)
{
    fx *f = *state;
    /* run.end and run.created carry a run object: a link in it (rendered or not) is hidden
     * the same way. */
    char *t = rd_runs_render_event(f->rs, RUN, "a", "run.end",
                                   "{\"run\":{\"id\":\"" RUN "\",\"pending_action\":{\"type\":"
                                   "\"approval\",\"deny_url\":\"http://x.test/v1/runs/approval?"
                                   "token=abc\"}}}",
                                   RD_AUD_READ);
    assert_true(has(t, "\"deny_url\":null"));
    assert_false(has(t, "token="));
    free(t);
}

static void test_run_json_by_audience(void **state)
{
    fx *f = *state;
    rd_run *r = rd_run_new();
    snprintf(r->id, sizeof r->id, "%s", RUN);
    snprintf(r->flow, sizeof r->flow, "a");
    r->status = RD_ST_PAUSED;
    r->pending_action = json_loads(APPROVAL, 0, NULL);
    json_object_set_new(r->pending_action, "_nonce", json_string("n1"));
    json_t *full = rd_runs_run_json_as(f->rs, r, RD_AUD_FULL);
    json_t *rd = rd_runs_run_json_as(f->rs, r, RD_AUD_READ);
    json_t *pf = json_object_get(full, "pending_action"),
           *pr = json_object_get(rd, "pending_action");
    assert_true(has(json_string_value(json_object_get(pf, "approve_url")), LINK));
    assert_true(json_is_null(json_object_get(pr, "approve_url")));
    assert_true(json_is_null(json_object_get(pr, "deny_url")));
    assert_string_equal(json_string_value(json_object_get(pr, "prompt")), "Ship?");
    assert_null(json_object_get(pr, "_nonce"));
    /* The stream token's view of a run of flow b shows approve/deny. */
    snprintf(r->flow, sizeof r->flow, "b");
    json_t *sb = rd_runs_run_json_as(f->rs, r, RD_AUD_STREAM);
    assert_true(
        has(json_string_value(json_object_get(json_object_get(sb, "pending_action"), "deny_url")),
            LINK));
    json_decref(full);
    json_decref(rd);
    json_decref(sb);
    rd_run_free(r);
}

static void test_redact_rule(void **state)
{
    (void)state;
    json_t *pa = json_loads(APPROVAL, 0, NULL);
    assert_false(rd_pending_redact(pa, RD_AUD_FULL, false));
    assert_true(rd_pending_redact(pa, RD_AUD_STREAM, false));
    assert_false(rd_pending_redact(pa, RD_AUD_READ, false)); /* already hidden */
    assert_null(json_object_get(pa, "auth_url"));            /* absent fields stay absent */
    json_decref(pa);
    pa = json_loads(AUTH, 0, NULL);
    assert_false(rd_pending_redact(pa, RD_AUD_STREAM, false));
    assert_true(rd_pending_redact(pa, RD_AUD_READ, true));
    assert_true(json_is_null(json_object_get(pa, "auth_url")));
    json_decref(pa);
    assert_false(rd_pending_redact(NULL, RD_AUD_READ, false));
    assert_true(rd_event_may_link("run.end"));
    assert_false(rd_event_may_link("run.item"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_approval_event_by_audience, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_event_by_audience, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_without_links_are_one_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_objects_in_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_json_by_audience, setup, teardown),
        cmocka_unit_test(test_redact_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
