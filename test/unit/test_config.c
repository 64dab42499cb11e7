/*
 * test_config.c: unit tests for lib/config.c: defaults, every section and key, repeated keys,
 * flows and their versions, shell-like command splitting, and above all the error messages:
 * each kind of error must name the right file, line and key ("t.ini:LINE: key 'K': ...").
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "base/util.h"

/* 32 bytes of zeros, base64: a valid Standard Webhooks secret. */
#define WHSEC "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

static rd_config *parse_ok(const char *text)
{
    char err[512] = "";
    rd_config *cfg = NULL;

    if (rd_config_parse_string(text, "t.ini", &cfg, err, sizeof err) != RD_OK)
        fail_msg("unexpected error: %s\n--- config ---\n%s", err, text);
    assert_non_null(cfg);
    return cfg;
}

/* Asserts that text fails with a message starting with prefix. */
static void expect_err(const char *text, const char *prefix)
{
    char err[512] = "";
    rd_config *cfg = (rd_config *)&err; /* must be reset to NULL on failure */

    if (rd_config_parse_string(text, "t.ini", &cfg, err, sizeof err) != RD_EINVAL)
        fail_msg("accepted, but expected \"%s\"\n--- config ---\n%s", prefix, text);
    assert_null(cfg);
    if (strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("got      \"%s\"\nexpected \"%s...\"\n--- config ---\n%s", err, prefix, text);
}

static void test_defaults(void **state)
{
    rd_config *cfg = parse_ok("");
    static const int64_t retry[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};

    assert_string_equal(cfg->path, "t.ini");
    assert_int_equal(cfg->n_listen, 1);
    assert_string_equal(cfg->listen[0], "127.0.0.1:8080");
    assert_string_equal(cfg->public_url, "http://127.0.0.1:8080");
    assert_int_equal(cfg->max_body_bytes, 1 << 20);
    assert_int_equal(cfg->max_uri_bytes, 8 << 10);
    assert_int_equal(cfg->max_header_bytes, 16 << 10);
    assert_int_equal(cfg->max_connections, 4096);
    assert_int_equal(cfg->n_cors, 0);
    assert_int_equal(cfg->heartbeat_ms, 15000);
    assert_int_equal(cfg->max_sse_clients, 10000);
    assert_int_equal(cfg->sse_max_buffer, 256 << 10);
    assert_int_equal(cfg->stream_token_ttl_ms, 24 * 3600000);
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->store_path, "./runsd.db");
    assert_false(cfg->store_allow_memory);
    assert_string_equal(cfg->store_synchronous, "normal");
    assert_int_equal(cfg->event_retention_ms, 0);
    assert_int_equal(cfg->max_running, 8);
    assert_int_equal(cfg->max_queued, 10000);
    assert_int_equal(cfg->max_line_bytes, 1 << 20);
    assert_int_equal(cfg->max_stderr_lines, 1000);
    assert_int_equal(cfg->kill_grace_ms, 5000);
    assert_int_equal(cfg->max_wait_ms, 60000);
    assert_int_equal(cfg->max_items_per_run, 10000000);
    assert_int_equal(cfg->idempotency_ttl_ms, 24 * 3600 * 1000LL);
    assert_int_equal(cfg->n_keys, 0);
    assert_int_equal(cfg->n_hook_urls, 0);
    assert_int_equal(cfg->n_hook_secrets, 0);
    assert_int_equal(cfg->n_retry, 7);
    assert_memory_equal(cfg->retry_schedule_ms, retry, sizeof retry);
    assert_false(cfg->hook_allow_private);
    assert_int_equal(cfg->hook_timeout_ms, 10000);
    assert_int_equal(cfg->hook_max_conns, 64);
    assert_int_equal(cfg->n_flows, 0);
    assert_null(rd_config_flow(cfg, "any"));
    rd_config_free(cfg);
}

static const char full_config[] = "; every key, with a value other than its default\n"
                                  "[server]\n"
                                  "listen = 0.0.0.0:9000\n"
                                  "listen = [::1]:9001\n"
                                  "listen = unix:/run/runsd.sock\n"
                                  "public_url = https://runs.example.com/base/\n"
                                  "max_body = 2M\n"
                                  "max_uri = 4096\n"
                                  "max_headers = 32K\n"
                                  "max_connections = 100\n"
                                  "cors_origin = https://app.example.com\n"
                                  "cors_origin = *\n"
                                  "sse_heartbeat = 500ms\n"
                                  "max_sse_clients = 50\n"
                                  "sse_max_buffer = 1G\n"
                                  "stream_token_ttl = 2h\n"
                                  "log_level = debug\n"
                                  "[store]\n"
                                  "path = /var/lib/runsd/runs.db\n"
                                  "allow_memory = on\n"
                                  "synchronous = full\n"
                                  "retention = 30d\n"
                                  "[limits]\n"
                                  "max_running = 2\n"
                                  "max_queued = 0\n"
                                  "max_line = 64K\n"
                                  "max_stderr_lines = 10\n"
                                  "kill_grace = 250ms\n"
                                  "max_wait = 30s\n"
                                  "max_items = 500\n"
                                  "idempotency_ttl = 2h\n"
                                  "[auth]\n"
                                  "key = read:aaaaaaaaaaaaaaaa\n"
                                  "key = write:bbbbbbbbbbbbbbbbbbbb\n"
                                  "key = admin:cccccccccccccccc:with-colon\n"
                                  "[webhooks]\n"
                                  "url = http://127.0.0.1:9999/hook\n"
                                  "url = https://hooks.example.com/x?y=1\n"
                                  "secret = " WHSEC "\n"
                                  "retry_schedule = 1s  2s\t3m\n"
                                  "allow_private = true\n"
                                  "timeout = 2s\n"
                                  "max_connections = 8\n";

static void test_every_section(void **state)
{
    rd_config *cfg = parse_ok(full_config);

    assert_int_equal(cfg->n_listen, 3);
    assert_string_equal(cfg->listen[0], "0.0.0.0:9000");
    assert_string_equal(cfg->listen[1], "[::1]:9001");
    assert_string_equal(cfg->listen[2], "unix:/run/runsd.sock");
    assert_string_equal(cfg->public_url, "https://runs.example.com/base"); /* slash dropped */
    assert_int_equal(cfg->max_body_bytes, 2 << 20);
    assert_int_equal(cfg->max_uri_bytes, 4096);
    assert_int_equal(cfg->max_header_bytes, 32 << 10);
    assert_int_equal(cfg->max_connections, 100);
    assert_int_equal(cfg->n_cors, 2);
    assert_string_equal(cfg->cors_origins[0], "https://app.example.com");
    assert_string_equal(cfg->cors_origins[1], "*");
    assert_int_equal(cfg->heartbeat_ms, 500);
    assert_int_equal(cfg->max_sse_clients, 50);
    assert_int_equal(cfg->sse_max_buffer, INT64_C(1) << 30);
    assert_int_equal(cfg->stream_token_ttl_ms, 7200000);
    assert_string_equal(cfg->log_level, "debug");
    assert_string_equal(cfg->store_path, "/var/lib/runsd/runs.db");
    assert_true(cfg->store_allow_memory);
    assert_string_equal(cfg->store_synchronous, "full");
    assert_int_equal(cfg->event_retention_ms, INT64_C(30) * 86400000);
    assert_int_equal(cfg->max_running, 2);
    assert_int_equal(cfg->max_queued, 0);
    assert_int_equal(cfg->max_line_bytes, 64 << 10);
    assert_int_equal(cfg->max_stderr_lines, 10);
    assert_int_equal(cfg->kill_grace_ms, 250);
    assert_int_equal(cfg->max_wait_ms, 30000);
    assert_int_equal(cfg->max_items_per_run, 500);
    assert_int_equal(cfg->idempotency_ttl_ms, 2 * 3600 * 1000LL);
    assert_int_equal(cfg->n_keys, 3);
    assert_int_equal(cfg->keys[0].scope, RD_SCOPE_READ);
    assert_string_equal(cfg->keys[0].key, "aaaaaaaaaaaaaaaa");
    assert_int_equal(cfg->keys[1].scope, RD_SCOPE_WRITE);
    assert_int_equal(cfg->keys[2].scope, RD_SCOPE_ADMIN);
    assert_string_equal(cfg->keys[2].key, "cccccccccccccccc:with-colon");
    assert_int_equal(cfg->n_hook_urls, 2);
    assert_string_equal(cfg->hook_urls[1], "https://hooks.example.com/x?y=1");
    assert_int_equal(cfg->n_hook_secrets, 1);
    assert_string_equal(cfg->hook_secrets[0], WHSEC);
    assert_int_equal(cfg->n_retry, 3);
    assert_int_equal(cfg->retry_schedule_ms[0], 1000);
    assert_int_equal(cfg->retry_schedule_ms[1], 2000);
    assert_int_equal(cfg->retry_schedule_ms[2], 180000);
    assert_true(cfg->hook_allow_private);
    assert_int_equal(cfg->hook_timeout_ms, 2000);
    assert_int_equal(cfg->hook_max_conns, 8);
    rd_config_free(cfg);
}

static void test_flows(void **state)
{
    rd_config *cfg = parse_ok("[flow.find-all_v2.0]\n"
                              "command = /usr/bin/worker --name 'two words' \"a \\\"q\\\"\" x\\ y\n"
                              "cwd = /tmp\n"
                              "env = MODE=fast\n"
                              "env = EMPTY=\n"
                              "env = WITH_EQ=a=b\n"
                              "concurrency = 2\n"
                              "timeout = 0\n"
                              "resumable = no\n"
                              "approval_timeout = 90s\n"
                              "auth_timeout = 5m\n"
                              "min_match_rate = 0.05\n"
                              "min_evaluated = 7\n"
                              "limit = 10\n"
                              "max_limit = 20\n"
                              "max_processes = 0\n"
                              "description = Finds all the things\n"
                              "\n"
                              "[flow.remote]\n"
                              "executor = external\n");
    const rd_flow_config *f = rd_config_flow(cfg, "find-all_v2.0");
    const rd_flow_config *r = rd_config_flow(cfg, "remote");

    assert_int_equal(cfg->n_flows, 2);
    assert_non_null(f);
    assert_false(f->external);
    assert_int_equal(f->argc, 5);
    assert_string_equal(f->argv[0], "/usr/bin/worker");
    assert_string_equal(f->argv[2], "two words");
    assert_string_equal(f->argv[3], "a \"q\"");
    assert_string_equal(f->argv[4], "x y");
    assert_null(f->argv[5]);
    assert_string_equal(f->cwd, "/tmp");
    assert_int_equal(f->n_env, 3);
    assert_string_equal(f->env[1], "EMPTY=");
    assert_string_equal(f->env[2], "WITH_EQ=a=b");
    assert_int_equal(f->concurrency, 2);
    assert_int_equal(f->timeout_ms, 0);
    assert_false(f->resumable);
    assert_int_equal(f->approval_timeout_ms, 90000);
    assert_int_equal(f->auth_timeout_ms, 300000);
    assert_true(f->min_match_rate > 0.0499 && f->min_match_rate < 0.0501);
    assert_int_equal(f->min_evaluated, 7);
    assert_int_equal(f->default_limit, 10);
    assert_int_equal(f->max_limit, 20);
    assert_int_equal(f->max_processes, 0);
    assert_string_equal(f->description, "Finds all the things");
    assert_int_equal(strlen(f->version), 16);
    assert_int_equal(strspn(f->version, "0123456789abcdef"), 16);

    /* An external flow has no command and every default. */
    assert_non_null(r);
    assert_true(r->external);
    assert_null(r->command);
    assert_int_equal(r->argc, 0);
    assert_int_equal(r->concurrency, 4);
    assert_int_equal(r->timeout_ms, 600000);
    assert_true(r->resumable);
    assert_int_equal(r->approval_timeout_ms, 86400000);
    assert_int_equal(r->auth_timeout_ms, 3600000);
    assert_true(r->min_match_rate == 0);
    assert_int_equal(r->min_evaluated, 100);
    assert_int_equal(r->default_limit, 0);
    assert_int_equal(r->max_limit, 1000000);
    assert_int_equal(r->max_processes, 512);
    assert_null(r->description);
    assert_null(rd_config_flow(cfg, "missing"));
    rd_config_free(cfg);
}

static void test_repeated_keys(void **state)
{
    rd_config *cfg = parse_ok("[server]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n"
                              "[webhooks]\nsecret = " WHSEC "\n"
                              "secret = whsec_MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0\n");

    assert_int_equal(cfg->n_listen, 2);
    assert_string_equal(cfg->listen[1], "127.0.0.1:2");
    assert_string_equal(cfg->public_url, "http://127.0.0.1:1");
    assert_int_equal(cfg->n_hook_secrets, 2);
    rd_config_free(cfg);

    /* Keys that are not lists may be given once only. */
    expect_err("[server]\nmax_body = 1M\n\nmax_body = 2M\n",
               "t.ini:4: key 'max_body': given twice (first on line 2)");
    expect_err("[flow.a]\ncommand = /bin/true\ncommand = /bin/false\n",
               "t.ini:3: key 'command': given twice");
    /* Lists refuse duplicate entries. */
    expect_err("[server]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:1\n",
               "t.ini:3: key 'listen': '127.0.0.1:1' is given twice");
    expect_err("[auth]\nkey = read:aaaaaaaaaaaaaaaa\nkey = admin:aaaaaaaaaaaaaaaa\n",
               "t.ini:3: key 'key': the same secret is given twice");
    expect_err("[flow.a]\ncommand = x\nenv = A=1\nenv = A=2\n",
               "t.ini:4: key 'env': A is set twice");
}

static void test_public_url_default(void **state)
{
    rd_config *cfg = parse_ok("[server]\nlisten = unix:/tmp/x.sock\nlisten = 0.0.0.0:9000\n"
                              "[auth]\nkey = read:aaaaaaaaaaaaaaaa\n");

    assert_string_equal(cfg->public_url, "http://127.0.0.1:9000");
    rd_config_free(cfg);
    cfg = parse_ok("[server]\nlisten = unix:/tmp/x.sock\n");
    assert_int_equal(cfg->n_listen, 1); /* no TCP listener is added */
    assert_string_equal(cfg->public_url, "http://127.0.0.1:8080");
    rd_config_free(cfg);
    cfg = parse_ok("[server]\nlisten = [::]:81\n[auth]\nkey = read:aaaaaaaaaaaaaaaa\n");
    assert_string_equal(cfg->public_url, "http://[::1]:81");
    rd_config_free(cfg);
    cfg = parse_ok("[server]\nlisten = localhost:0\n");
    assert_string_equal(cfg->public_url, "http://localhost:0");
    rd_config_free(cfg);
}

static void test_syntax_details(void **state)
{
    /* Indented keys, comments (';' inline after a blank, '#' and ';' at line start), CRLF,
     * a byte order mark and "key: value" all parse; line numbers count every line. */
    rd_config *cfg = parse_ok("\xEF\xBB\xBF; comment\r\n"
                              "# another\r\n"
                              "[server]\r\n"
                              "   max_connections = 12   ; inline comment\r\n"
                              "\tlog_level: warn\r\n"
                              "[flow.a]\r\n"
                              "  command = /bin/echo a;b\r\n");

    assert_int_equal(cfg->max_connections, 12);
    assert_string_equal(cfg->log_level, "warn");
    assert_int_equal(rd_config_flow(cfg, "a")->argc, 2);
    assert_string_equal(rd_config_flow(cfg, "a")->argv[1], "a;b");
    rd_config_free(cfg);
    expect_err("; c\r\n\r\n[server]\r\n  ; c\r\n  bogus = 1\r\n", "t.ini:5: key 'bogus'");
}

static void test_errors_keys(void **state)
{
    static const struct {
        const char *text, *prefix;
    } cases[] = {
        {"[server]\nbogus = 1\n", "t.ini:2: key 'bogus': unknown key in [server]"},
        {"[flow.a]\ncommand = x\nlisten = 1\n", "t.ini:3: key 'listen': unknown key in [flow.a]"},
        {"x = 1\n", "t.ini:1: key 'x': outside any section"},
        {"[server]\nmax_body = 10X\n", "t.ini:2: key 'max_body': expected a size"},
        {"[server]\nmax_body = 1k\n", "t.ini:2: key 'max_body': expected a size"},
        {"[server]\nmax_body = 512\n", "t.ini:2: key 'max_body': must be between 1K and 1G"},
        {"[server]\nmax_connections = -1\n",
         "t.ini:2: key 'max_connections': must be between 1 and 1000000"},
        {"[server]\nmax_connections = many\n",
         "t.ini:2: key 'max_connections': expected an integer"},
        {"[server]\nsse_heartbeat = 2d\n",
         "t.ini:2: key 'sse_heartbeat': must be between 100ms and 1h"},
        {"[server]\nlog_level = loud\n",
         "t.ini:2: key 'log_level': expected one of: debug, info, warn, error"},
        {"[server]\npublic_url = ftp://x\n", "t.ini:2: key 'public_url': must start with http"},
        {"[server]\ncors_origin = https://a.example/path\n", "t.ini:2: key 'cors_origin': must be"},
        {"[store]\nallow_memory = maybe\n", "t.ini:2: key 'allow_memory': expected yes or no"},
        {"[store]\nsynchronous = off\n",
         "t.ini:2: key 'synchronous': expected one of: normal, full"},
        {"[store]\npath =\n", "t.ini:2: key 'path': must not be empty"},
        {"[limits]\nkill_grace = 5 seconds\n", "t.ini:2: key 'kill_grace': expected a duration"},
        {"[limits]\nmax_running = 0\n", "t.ini:2: key 'max_running': must be between 1 and 10000"},
        {"[limits]\nmax_items = 0\n", "t.ini:2: key 'max_items': must be at least 1"},
        {"[auth]\nkey = root:aaaaaaaaaaaaaaaa\n", "t.ini:2: key 'key': expected scope:secret"},
        {"[auth]\nkey = read:short\n", "t.ini:2: key 'key': the secret must be 16 to 512"},
        {"[auth]\nkey = aaaaaaaaaaaaaaaaaaaa\n", "t.ini:2: key 'key': expected scope:secret"},
        {"[webhooks]\nurl = 127.0.0.1/hook\n", "t.ini:2: key 'url': must start with http"},
        {"[webhooks]\nsecret = c2VjcmV0\n", "t.ini:2: key 'secret': expected whsec_"},
        {"[webhooks]\nsecret = whsec_!!!\n", "t.ini:2: key 'secret': the part after whsec_"},
        {"[webhooks]\nsecret = whsec_c2VjcmV0\n",
         "t.ini:2: key 'secret': must decode to 24 to 64 bytes (it decodes to 6)"},
        {"[webhooks]\nretry_schedule = 5s soon\n",
         "t.ini:2: key 'retry_schedule': 'soon' is not a positive duration"},
        {"[webhooks]\nretry_schedule = 0s\n", "t.ini:2: key 'retry_schedule': '0s' is not"},
        {"[webhooks]\nretry_schedule = 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s 1s\n",
         "t.ini:2: key 'retry_schedule': at most 16 retries"},
        {"[flow.a]\ncommand = /bin/echo 'oops\n", "t.ini:2: key 'command': cannot be split"},
        {"[flow.a]\ncommand = x\nexecutor = docker\n",
         "t.ini:3: key 'executor': expected process or external"},
        {"[flow.a]\ncommand = x\nenv = 1A=b\n", "t.ini:3: key 'env': expected NAME=value"},
        {"[flow.a]\ncommand = x\nenv = NOVALUE\n", "t.ini:3: key 'env': expected NAME=value"},
        {"[flow.a]\ncommand = x\nconcurrency = 0\n", "t.ini:3: key 'concurrency': must be"},
        {"[flow.a]\ncommand = x\napproval_timeout = 0\n", "t.ini:3: key 'approval_timeout'"},
        {"[flow.a]\ncommand = x\nmin_match_rate = 0\n",
         "t.ini:3: key 'min_match_rate': must be greater than 0 and at most 1"},
        {"[flow.a]\ncommand = x\nmin_match_rate = 1.5\n", "t.ini:3: key 'min_match_rate': must be"},
        {"[flow.a]\ncommand = x\nmin_match_rate = nan\n",
         "t.ini:3: key 'min_match_rate': expected"},
        {"[flow.a]\ncommand = x\nlimit = 5\nmax_limit = 4\n",
         "t.ini:3: key 'limit': must not exceed max_limit (4)"},
        {"[flow.a]\ncommand = x\nresumable = 2\n", "t.ini:3: key 'resumable': expected yes or no"},
        {"[flow.a]\ncommand = x\nmax_processes = -1\n",
         "t.ini:3: key 'max_processes': must be between 0 and 4194304"},
        {"[flow.a]\ncommand = x\nmax_processes = 4194305\n",
         "t.ini:3: key 'max_processes': must be between 0 and 4194304"},
        {"[flow.a]\ncommand = x\nmax_processes = lots\n",
         "t.ini:3: key 'max_processes': expected an integer"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_err(cases[i].text, cases[i].prefix);
}

static void test_errors_listen(void **state)
{
    static const char *const bad[] = {
        "8080",      "host",  "host:",    "host:port",     "host:70000", "host:-1", ":8080",
        "[::1]8080", "[::1]", "::1:8080", "unix:relative", "unix:",      "a b:80"};
    char text[128];

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "[server]\n\nlisten = %s\n", bad[i]);
        expect_err(text, "t.ini:3: key 'listen': ");
    }
    expect_err("[server]\nlisten=1.2.3.4:65536\n", "t.ini:2: key 'listen': port must be a number");
    rd_config_free(parse_ok("[server]\nlisten = 1.2.3.4:65535\nlisten = [fe80::1%eth0]:0\n"
                            "[auth]\nkey = read:aaaaaaaaaaaaaaaa\n"));
    /* No API key: only loopback and unix sockets, so -t refuses what bind would. */
    expect_err("[server]\nlisten = 0.0.0.0:8080\n",
               "t.ini:2: key 'listen': 0.0.0.0:8080 is not a loopback address");
    rd_config_free(parse_ok("[server]\nlisten = 127.0.0.2:1\nlisten = [::1]:2\n"
                            "listen = localhost:3\nlisten = unix:/tmp/s\n"));
}

static void test_errors_sections(void **state)
{
    expect_err("[server]\n\n[nope]\nx = 1\n", "t.ini:3: section [nope]: unknown section");
    expect_err("[store]\n[nope]\n", "t.ini:2: section [nope]: unknown section");
    expect_err("[server]\nmax_body = 1M\n[server]\n",
               "t.ini:3: section [server]: appears twice (first on line 1)");
    expect_err("[flow.a]\ncommand = /bin/true\n\n[flow.a]\ncommand = /bin/false\n",
               "t.ini:4: section [flow.a]: defined twice (first on line 1)");
    expect_err("[flow.]\n", "t.ini:1: section [flow.]: a flow name is");
    expect_err("[flow.bad name]\ncommand = x\n", "t.ini:1: section [flow.bad name]: a flow name");
    /* A flow needs exactly one of command and executor = external. */
    expect_err("[server]\n[flow.a]\nconcurrency = 2\n",
               "t.ini:2: section [flow.a]: needs a command (or executor = external)");
    expect_err("[flow.empty]\n", "t.ini:1: section [flow.empty]: needs a command");
    expect_err("[flow.a]\nexecutor = external\ncommand = /bin/true\n",
               "t.ini:3: key 'command': not allowed with executor = external");
    expect_err("[flow.a]\ncommand = /bin/true\nexecutor = external\n",
               "t.ini:2: key 'command': not allowed with executor = external");
}

static void test_errors_syntax(void **state)
{
    char text[600];

    expect_err("[server]\njunk line\n", "t.ini:2: expected key = value or [section]");
    expect_err("[server\nmax_body = 1M\n", "t.ini:1: expected key = value or [section]");
    /* The first error in file order wins, whichever kind it is. */
    expect_err("[server]\njunk\nbogus = 1\n", "t.ini:2: expected key");
    expect_err("[server]\nbogus = 1\njunk\n", "t.ini:2: key 'bogus'");
    expect_err("[server]\nmax_body = 1M\n[nope]\nmax_body = 2M\n", "t.ini:3: section [nope]");
    /* A header longer than inih's buffer names no section (flow names are short). */
    snprintf(text, sizeof text, "[flow.%0300d]\ncommand = /bin/true\n", 0);
    expect_err(text, "t.ini:1: section: line longer than 198 characters");
    snprintf(text, sizeof text, "[flow.a]\ncommand = /bin/echo %0170d\n", 0);
    rd_config_free(parse_ok(text));
}

/* Lines longer than inih's 198-character buffer are split by our reader as inih would split
 * them: never cut in two, inline comments and blanks dropped, errors on the right line. */
static void test_long_lines(void **state)
{
    char text[2400], want[600];
    rd_config *cfg;

    snprintf(text, sizeof text,
             "[flow.a]\n  command = /bin/echo %0300d 'two words'   ; a comment\n; %0500d\n"
             "description:%0250d\nconcurrency = 3\n",
             0, 0, 0);
    cfg = parse_ok(text);
    assert_int_equal(cfg->flows[0].argc, 3);
    assert_int_equal(strlen(cfg->flows[0].argv[1]), 300);
    assert_string_equal(cfg->flows[0].argv[2], "two words");
    assert_int_equal(strlen(cfg->flows[0].description), 250);
    assert_int_equal(cfg->flows[0].concurrency, 3);
    assert_int_equal(cfg->flows[0].command_line, 2);
    rd_config_free(cfg);
    /* The handler's checks apply to long lines too, with their line number. */
    snprintf(text, sizeof text, "[flow.a]\ncommand = /bin/true\n\nbogus = %0300d\n", 0);
    expect_err(text, "t.ini:4: key 'bogus': unknown key in [flow.a]");
    snprintf(text, sizeof text, "[flow.a]\ncommand = /bin/true\ncommand = /bin/%0300d\n", 0);
    expect_err(text, "t.ini:3: key 'command': given twice (first on line 2)");
    snprintf(text, sizeof text, "[server]\n%0300d\n", 0);
    expect_err(text, "t.ini:2: expected key = value or [section]");
    snprintf(text, sizeof text, "max_body = %0300d\n", 0);
    expect_err(text, "t.ini:1: key 'max_body': outside any section");
    snprintf(text, sizeof text, "[server]\nmax_body = 1M\n[store]\nmax_body = %0300d\n", 0);
    snprintf(want, sizeof want, "t.ini:4: key 'max_body': unknown key in [store]");
    expect_err(text, want);
}

/* A relative program path is found next to the config, a bare name is left to PATH, and the
 * check reports what cannot be executed with the file and line of its command. */
static void test_commands(void **state)
{
    char dir[] = "/tmp/test_config_cmd_XXXXXX", path[64], exe[600], want[1024], err[1024];
    rd_config *cfg;
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.ini", dir);
    snprintf(exe, sizeof exe, "%s/w.sh", dir);
    f = fopen(exe, "w");
    assert_non_null(f);
    fputs("#!/bin/sh\n", f);
    fclose(f);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("[flow.rel]\ncommand = ./w.sh x/y\n[flow.bare]\ncommand = sh -c true\n"
          "[flow.gone]\ncommand = sub/none\n[flow.nopath]\ncommand = no-such-runsd-program\n"
          "[flow.ext]\nexecutor = external\n",
          f);
    fclose(f);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_OK);
    snprintf(exe, sizeof exe, "%s/./w.sh", dir);
    assert_string_equal(cfg->flows[0].argv[0], exe);
    assert_string_equal(cfg->flows[0].argv[1], "x/y"); /* arguments are left alone */
    assert_string_equal(cfg->flows[1].argv[0], "sh");
    /* w.sh is not executable yet: three problems, one line each, in flow order. */
    assert_int_equal(rd_config_check_commands(cfg, err, sizeof err), 3);
    snprintf(want, sizeof want,
             "%s:2: key 'command': %s/./w.sh is not executable (no x permission for runsd's "
             "user)\n%s:6: key 'command': %s/sub/none does not exist\n%s:8: key 'command': "
             "no-such-runsd-program not found in PATH",
             path, dir, path, dir, path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got\n%s\nexpected\n%s", err, want);
    snprintf(exe, sizeof exe, "%s/w.sh", dir);
    chmod(exe, 0755);
    assert_int_equal(rd_config_check_commands(cfg, err, sizeof err), 2);
    rd_config_free(cfg);
    unlink(exe);
    unlink(path);
    rmdir(dir);
}

/* input_schema: inline JSON or @FILE next to the config; the schema is checked when the config
 * is loaded and its errors name the config's file, line and key, then the schema file (with
 * the JSON error's line and column) or the keyword. */
static void test_input_schema(void **state)
{
    char dir[] = "/tmp/test_config_schema_XXXXXX", path[64], sch[96], bad[96], err[1024];
    char want[1024];
    rd_config *cfg;
    FILE *f;

    cfg = parse_ok("[flow.a]\ncommand = /bin/a\n"
                   "input_schema = {\"type\": \"object\", \"additionalProperties\": false}\n"
                   "[flow.b]\ncommand = /bin/b\n");
    assert_non_null(cfg->flows[0].input_schema);
    assert_true(json_is_false(json_object_get(cfg->flows[0].input_schema, "additionalProperties")));
    assert_null(cfg->flows[1].input_schema);
    rd_config_free(cfg);
    expect_err("[flow.a]\ncommand = /bin/a\ninput_schema = object\n",
               "t.ini:3: key 'input_schema': expected @FILE (a JSON file, relative to this "
               "config's directory) or an inline JSON object");
    expect_err("[flow.a]\ncommand = /bin/a\ninput_schema = {\"type\": \"object\",}\n",
               "t.ini:3: key 'input_schema': inline JSON: line 1, column");
    expect_err("[flow.a]\ncommand = /bin/a\ninput_schema = {\"type\": \"array\"}\n",
               "t.ini:3: key 'input_schema': inline JSON: type: the root must say");
    expect_err("[flow.a]\ncommand = /bin/a\ninput_schema = @\n",
               "t.ini:3: key 'input_schema': expected @FILE");

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/r.ini", dir);
    snprintf(sch, sizeof sch, "%s/s.json", dir);
    snprintf(bad, sizeof bad, "%s/bad.json", dir);
    f = fopen(sch, "w");
    assert_non_null(f);
    fputs("{\"type\": \"object\",\n \"properties\": {\"n\": {\"type\": \"integer\"}}}\n", f);
    fclose(f);
    f = fopen(bad, "w");
    assert_non_null(f);
    fputs("{\"type\": \"object\",\n \"properties\": {\"n\": {\"type\": \"int\"}}}\n", f);
    fclose(f);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("[flow.a]\ncommand = /bin/a\ninput_schema = @s.json\n", f);
    fclose(f);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_OK);
    assert_true(json_is_object(json_object_get(cfg->flows[0].input_schema, "properties")));
    rd_config_free(cfg);

    f = fopen(path, "w");
    fputs("[flow.a]\ncommand = /bin/a\n\ninput_schema = @bad.json\n", f);
    fclose(f);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_EINVAL);
    snprintf(want, sizeof want,
             "%s:4: key 'input_schema': bad.json: properties.n.type: unknown type \"int\"", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got\n%s\nexpected\n%s", err, want);

    f = fopen(bad, "w");
    fputs("{\"type\": \"object\",\n \"properties\": {\n}}}\n", f);
    fclose(f);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_EINVAL);
    snprintf(want, sizeof want, "%s:4: key 'input_schema': bad.json: line 3, column", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got\n%s\nexpected\n%s", err, want);

    f = fopen(path, "w");
    fputs("[flow.a]\ncommand = /bin/a\ninput_schema = @none.json\n", f);
    fclose(f);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_EINVAL);
    snprintf(want, sizeof want, "%s:3: key 'input_schema': unable to open %s/none.json: ", path,
             dir);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got\n%s\nexpected\n%s", err, want);
    unlink(sch);
    unlink(bad);
    unlink(path);
    rmdir(dir);
}

static void test_memory_store(void **state)
{
    rd_config *cfg;

    expect_err(
        "[store]\n\npath = :memory:\n",
        "t.ini:3: key 'path': :memory: loses every run on exit; it needs allow_memory = yes");
    expect_err("[store]\npath = :memory:\nallow_memory = no\n", "t.ini:2: key 'path': :memory:");
    /* allow_memory may come before or after path. */
    cfg = parse_ok("[store]\npath = :memory:\nallow_memory = yes\n");
    assert_string_equal(cfg->store_path, ":memory:");
    assert_true(cfg->store_allow_memory);
    rd_config_free(cfg);
    rd_config_free(parse_ok("[store]\nallow_memory = 1\npath = :memory:\n"));
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/test_config_XXXXXX", err[512], want[600];
    rd_config *cfg = (rd_config *)&err;
    int fd;

    assert_int_equal(rd_config_load("/nonexistent/runsd.ini", &cfg, err, sizeof err), RD_EINVAL);
    assert_null(cfg);
    assert_string_equal(err, "/nonexistent/runsd.ini: cannot open: No such file or directory");
    assert_int_equal(rd_config_load("/tmp", &cfg, err, sizeof err), RD_EINVAL);
    assert_string_equal(err, "/tmp: cannot read: Is a directory");

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "[limits]\nmax_running = 3\n", 25), 25);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_OK);
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->max_running, 3);
    rd_config_free(cfg);

    assert_int_equal(write(fd, "max_queued = lots\n", 18), 18);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_EINVAL);
    snprintf(want, sizeof want, "%s:3: key 'max_queued': expected an integer", path);
    assert_string_equal(err, want);

    assert_int_equal(write(fd, "\0", 1), 1);
    assert_int_equal(rd_config_load(path, &cfg, err, sizeof err), RD_EINVAL);
    snprintf(want, sizeof want, "%s: contains a NUL byte", path);
    assert_int_equal(strncmp(err, want, strlen(want)), 0);
    close(fd);
    unlink(path);

    /* A tiny error buffer truncates, and NULL is accepted everywhere it is harmless. */
    assert_int_equal(rd_config_parse_string("[x]\n", "t.ini", &cfg, err, 6), RD_EINVAL);
    assert_string_equal(err, "t.ini");
    assert_int_equal(rd_config_parse_string("[x]\n", NULL, &cfg, NULL, 0), RD_EINVAL);
    rd_config_free(NULL);
    assert_null(rd_config_flow(NULL, "a"));
}

/* Splits cmd and compares with the expected words (NULL-terminated list). */
static void split_eq(const char *cmd, const char *const *want)
{
    char *argv[9];
    int n = 0, argc = rd_split_command(cmd, argv, 8);

    while (want[n] != NULL)
        n++;
    if (argc != n)
        fail_msg("'%s': %d words, expected %d", cmd, argc, n);
    for (int i = 0; i < n; i++) {
        assert_string_equal(argv[i], want[i]);
        free(argv[i]);
    }
    assert_null(argv[n]);
}

static void test_split_command(void **state)
{
    char *argv[70];
    char many[300] = "", text[400];

    split_eq("a b  c", (const char *[]){"a", "b", "c", NULL});
    split_eq("  \tlead trail \t", (const char *[]){"lead", "trail", NULL});
    split_eq("'single quoted' x", (const char *[]){"single quoted", "x", NULL});
    split_eq("'no \\escape \"here'", (const char *[]){"no \\escape \"here", NULL});
    split_eq("\"dq \\\" \\\\ \\$ \\` \\n\"", (const char *[]){"dq \" \\ $ ` \\n", NULL});
    split_eq("a\\ b c\\'d", (const char *[]){"a b", "c'd", NULL});
    split_eq("'' \"\" x", (const char *[]){"", "", "x", NULL});
    split_eq("a'b'c\"d\"e", (const char *[]){"abcde", NULL});
    split_eq("'it''s'", (const char *[]){"its", NULL});
    split_eq("$HOME * `x` | y", (const char *[]){"$HOME", "*", "`x`", "|", "y", NULL});

    assert_int_equal(rd_split_command("'open", argv, 8), RD_EINVAL);
    assert_null(argv[0]);
    assert_int_equal(rd_split_command("ok \"open", argv, 8), RD_EINVAL);
    assert_null(argv[0]);
    assert_int_equal(rd_split_command("trailing\\", argv, 8), RD_EINVAL);
    assert_int_equal(rd_split_command("", argv, 8), RD_EINVAL);
    assert_int_equal(rd_split_command(" \t ", argv, 8), RD_EINVAL);
    assert_int_equal(rd_split_command("a", argv, 0), RD_EINVAL);

    /* Exactly max words fit; one more is refused (and nothing leaks). */
    for (int i = 0; i < RD_MAX_ARGV; i++)
        strcat(many, "w ");
    assert_int_equal(rd_split_command(many, argv, RD_MAX_ARGV), RD_MAX_ARGV);
    assert_null(argv[RD_MAX_ARGV]);
    for (int i = 0; i < RD_MAX_ARGV; i++)
        free(argv[i]);
    strcat(many, "w");
    assert_int_equal(rd_split_command(many, argv, RD_MAX_ARGV), RD_EINVAL);
    for (int i = 0; i <= RD_MAX_ARGV; i++)
        assert_null(argv[i]); /* no stale pointers left for a later free */
    snprintf(text, sizeof text, "[flow.a]\ncommand = %s\n", many);
    expect_err(text, "t.ini:2: key 'command': cannot be split");
}

/* The version of flow "a" in text. */
static void version_of(const char *text, char out[17])
{
    rd_config *cfg = parse_ok(text);

    strcpy(out, rd_config_flow(cfg, "a")->version);
    rd_config_free(cfg);
}

/* A flow name may be 64 bytes, but inih keeps only 49 bytes of a section name ("flow." plus 44),
 * so the keys of a longer flow were refused as "unknown section", and two flows alike in
 * their first 44 bytes could not be told apart. The reader's own view of the section wins. */
static void test_flow_long_name(void **state)
{
    char text[512], a[65], b[65];

    memset(a, 'a', 64);
    a[64] = '\0';
    memcpy(b, a, sizeof b);
    b[63] = 'b';
    snprintf(text, sizeof text,
             "[flow.%s]\ncommand = /bin/a\n[server]\nmax_connections = 9\n"
             "[flow.%s]\ncommand = /bin/b\nconcurrency = 3\n",
             a, b);
    rd_config *cfg = parse_ok(text);
    const rd_flow_config *fa = rd_config_flow(cfg, a), *fb = rd_config_flow(cfg, b);

    assert_int_equal(cfg->n_flows, 2);
    assert_non_null(fa);
    assert_non_null(fb);
    assert_string_equal(fa->argv[0], "/bin/a");
    assert_int_equal(fa->concurrency, 4);
    assert_string_equal(fb->argv[0], "/bin/b");
    assert_int_equal(fb->concurrency, 3);
    assert_int_equal(cfg->max_connections, 9);
    rd_config_free(cfg);
}

static void test_flow_version(void **state)
{
    static const char base[] = "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\n";
    static const char *const changed[] = {
        "[flow.a]\ncommand = /bin/w y\nenv = A=1\nenv = B=2\n",
        "[flow.a]\ncommand = '/bin/w x'\nenv = A=1\nenv = B=2\n", /* word boundaries */
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=3\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nconcurrency = 5\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\ntimeout = 11m\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nresumable = no\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\napproval_timeout = 1h\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nauth_timeout = 2h\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nmin_match_rate = 0.5\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nmin_evaluated = 1\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nlimit = 3\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nmax_limit = 3\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nmax_processes = 0\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\nmax_processes = 513\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\ncwd = /\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\ndescription = d\n",
        "[flow.a]\nexecutor = external\nenv = A=1\nenv = B=2\n",
        "[flow.a]\ncommand = /bin/w x\nenv = A=1\nenv = B=2\ninput_schema = "
        "{\"type\":\"object\"}\n",
    };
    char v0[17], v1[17];

    version_of(base, v0);
    assert_int_equal(strlen(v0), 16);
    /* Same meaning, different spelling: key order, env order, blanks, explicit defaults. */
    version_of("[flow.a]\nenv = B=2\nconcurrency = 4\nenv = A=1\ncommand =  /bin/w   x\n"
               "timeout = 600s\nmax_processes = 512\n",
               v1);
    assert_string_equal(v0, v1);
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        version_of(changed[i], v1);
        if (strcmp(v0, v1) == 0)
            fail_msg("version did not change for:\n%s", changed[i]);
    }
}

/* conf/runsd.example.ini doubles as the reference documentation: it must parse, and every
 * value it sets must be the real default. */
static void test_example_config(void **state)
{
    const char *src = __FILE__, *tail = strstr(src, "test/unit/test_config.c");
    char path[4096], err[512];
    rd_config *ex = NULL, *def = parse_ok("[flow.a]\nexecutor = external\n");
    const rd_flow_config *f, *d = rd_config_flow(def, "a");

    snprintf(path, sizeof path, "%.*sconf/runsd.example.ini", tail ? (int)(tail - src) : 0, src);
    if (access(path, R_OK) != 0) {
        rd_config_free(def);
        skip(); /* built out of tree without the sources at hand */
    }
    if (rd_config_load(path, &ex, err, sizeof err) != RD_OK)
        fail_msg("%s", err);
    assert_int_equal(ex->n_listen, 1);
    assert_string_equal(ex->listen[0], def->listen[0]);
    assert_string_equal(ex->public_url, def->public_url);
    assert_int_equal(ex->max_body_bytes, def->max_body_bytes);
    assert_int_equal(ex->max_uri_bytes, def->max_uri_bytes);
    assert_int_equal(ex->max_header_bytes, def->max_header_bytes);
    assert_int_equal(ex->max_connections, def->max_connections);
    assert_int_equal(ex->n_cors, 0);
    assert_int_equal(ex->heartbeat_ms, def->heartbeat_ms);
    assert_int_equal(ex->max_sse_clients, def->max_sse_clients);
    assert_int_equal(ex->sse_max_buffer, def->sse_max_buffer);
    assert_int_equal(ex->stream_token_ttl_ms, def->stream_token_ttl_ms);
    assert_string_equal(ex->log_level, def->log_level);
    assert_string_equal(ex->log_format, def->log_format);
    assert_string_equal(ex->store_path, def->store_path);
    assert_int_equal(ex->store_allow_memory, def->store_allow_memory);
    assert_string_equal(ex->store_synchronous, def->store_synchronous);
    assert_int_equal(ex->event_retention_ms, def->event_retention_ms);
    assert_int_equal(ex->max_running, def->max_running);
    assert_int_equal(ex->max_queued, def->max_queued);
    assert_int_equal(ex->max_line_bytes, def->max_line_bytes);
    assert_int_equal(ex->max_stderr_lines, def->max_stderr_lines);
    assert_int_equal(ex->kill_grace_ms, def->kill_grace_ms);
    assert_int_equal(ex->max_wait_ms, def->max_wait_ms);
    assert_int_equal(ex->max_items_per_run, def->max_items_per_run);
    assert_int_equal(ex->idempotency_ttl_ms, def->idempotency_ttl_ms);
    assert_int_equal(ex->n_keys + ex->n_hook_urls + ex->n_hook_secrets, 0);
    assert_int_equal(ex->n_retry, def->n_retry);
    assert_memory_equal(ex->retry_schedule_ms, def->retry_schedule_ms,
                        sizeof def->retry_schedule_ms[0] * (size_t)def->n_retry);
    assert_int_equal(ex->hook_allow_private, def->hook_allow_private);
    assert_int_equal(ex->hook_timeout_ms, def->hook_timeout_ms);
    assert_int_equal(ex->hook_max_conns, def->hook_max_conns);
    assert_int_equal(ex->n_flows, 1);
    f = &ex->flows[0];
    assert_false(f->external);
    assert_int_equal(f->argc, 3);
    assert_null(f->cwd);
    assert_int_equal(f->n_env, 0);
    assert_int_equal(f->concurrency, d->concurrency);
    assert_int_equal(f->timeout_ms, d->timeout_ms);
    assert_int_equal(f->resumable, d->resumable);
    assert_int_equal(f->approval_timeout_ms, d->approval_timeout_ms);
    assert_int_equal(f->auth_timeout_ms, d->auth_timeout_ms);
    assert_true(f->min_match_rate == d->min_match_rate);
    assert_int_equal(f->min_evaluated, d->min_evaluated);
    assert_int_equal(f->default_limit, d->default_limit);
    assert_int_equal(f->max_limit, d->max_limit);
    assert_int_equal(f->max_processes, d->max_processes);
    assert_null(f->description);
    assert_null(f->input_schema);
    rd_config_free(ex);
    rd_config_free(def);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_section),
        cmocka_unit_test(test_flows),
        cmocka_unit_test(test_repeated_keys),
        cmocka_unit_test(test_public_url_default),
        cmocka_unit_test(test_syntax_details),
        cmocka_unit_test(test_errors_keys),
        cmocka_unit_test(test_errors_listen),
        cmocka_unit_test(test_errors_sections),
        cmocka_unit_test(test_errors_syntax),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_input_schema),
        cmocka_unit_test(test_memory_store),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_split_command),
        cmocka_unit_test(test_flow_version),
        cmocka_unit_test(test_flow_long_name),
        cmocka_unit_test(test_example_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
