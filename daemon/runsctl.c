/*
 * runsctl.c: the runsctl program: the command line (global and per-command options, checked
 * against what each command accepts), the help with its exit code table, and the mapping of a
 * run's status and termination_reason to an exit code. The commands live in runsctl_cmds.c,
 * runsctl_results.c and runsctl_watch.c.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "runsctl.h"

#ifndef RUNSD_VERSION
#define RUNSD_VERSION "dev"
#endif

enum {
    O_URL = 1u << 0,
    O_KEY = 1u << 1,
    O_JSON = 1u << 2,
    O_NDJSON = 1u << 3,
    O_INPUT = 1u << 4,
    O_LIMIT = 1u << 5,
    O_META = 1u << 6,
    O_PREVIEW = 1u << 7,
    O_NOSTART = 1u << 8,
    O_IDEM = 1u << 9,
    O_WAIT = 1u << 10,
    O_TIMEOUT = 1u << 11,
    O_STATUS = 1u << 12,
    O_FLOW = 1u << 13,
    O_PAGE = 1u << 14,
    O_PSIZE = 1u << 15,
    O_ALL = 1u << 16,
    O_TYPES = 1u << 17,
    O_AFTER = 1u << 18,
    O_COMMENT = 1u << 19,
    O_PLAIN = 1u << 20,
};
#define O_GLOBAL (O_URL | O_KEY)

typedef int (*rc_cmd_fn)(rc_http *, const rc_opts *, int, char **);

static const struct rc_cmd {
    const char *name;
    rc_cmd_fn fn;
    unsigned opts;
    const char *synopsis;
} cmds[] = {
    {"create", rc_cmd_create,
     O_JSON | O_INPUT | O_LIMIT | O_META | O_PREVIEW | O_NOSTART | O_IDEM | O_WAIT | O_TIMEOUT,
     "create FLOW [--input JSON|@FILE|-] [--limit N] [--metadata JSON] [--preview]\n"
     "             [--no-start] [--idempotency-key K] [--wait [--timeout S]] [--json]"},
    {"get", rc_cmd_get, O_JSON, "get RUN [--json]"},
    {"list", rc_cmd_list, O_JSON | O_NDJSON | O_STATUS | O_FLOW | O_PAGE | O_PSIZE | O_ALL,
     "list [--status S[,S]] [--flow F] [--page N] [--page-size N] [--all]\n"
     "             [--json|--ndjson]"},
    {"cancel", rc_cmd_cancel, O_JSON, "cancel RUN [--json]"},
    {"approve", rc_cmd_approve, O_JSON | O_COMMENT, "approve RUN [--comment TEXT] [--json]"},
    {"deny", rc_cmd_deny, O_JSON | O_COMMENT, "deny RUN [--comment TEXT] [--json]"},
    {"results", rc_cmd_results, O_JSON | O_NDJSON | O_STATUS | O_PSIZE,
     "results RUN [--status ok|error] [--page-size N] [--json|--ndjson]"},
    {"events", rc_cmd_events, O_JSON | O_NDJSON | O_AFTER,
     "events RUN [--after ID] [--json|--ndjson]"},
    {"wait", rc_cmd_wait, O_JSON | O_TIMEOUT, "wait RUN [--timeout S] [--json]"},
    {"watch", rc_cmd_watch, O_ALL | O_FLOW | O_TYPES | O_PLAIN | O_AFTER,
     "watch RUN [--plain]\n"
     "  watch --all [--flow F[,F]] [--types T[,T]] [--after ID] [--plain]"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: runsctl [-u URL] [-k KEY] COMMAND [ARGS]\n"
               "A client for runsd's HTTP API (runsctl(1)).\n\nCommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %s\n", cmds[i].synopsis);
    fprintf(f, "\nOptions:\n"
               "  -u, --url URL   the server: http://HOST:PORT, https://..., or unix:/PATH\n"
               "                  (default $RUNSD_URL, else http://127.0.0.1:8080)\n"
               "  -k, --key KEY   the API key (default $RUNSD_KEY); sent as a Bearer token\n"
               "  -h, --help      this help;  -V, --version  the version\n"
               "\ncreate prints the run id alone (--json: the run). wait, create --wait and\n"
               "watch RUN exit with the run's outcome; watch shows a live view on a terminal\n"
               "(keys: a approve, d deny, q quit) and plain lines otherwise.\n\nExit codes:\n");
#define RC_EXIT_HELP(name, code, text) fprintf(f, "  %3d  %s\n", code, text);
    RC_EXIT_CODES(RC_EXIT_HELP)
#undef RC_EXIT_HELP
}

static bool parse_long(const char *s, long min, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min)
        return false;
    *out = v;
    return true;
}

static bool parse_secs(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0) || v > 1e9)
        return false;
    *out = v;
    return true;
}

static const struct option longopts[] = {
    {"url", required_argument, NULL, 'u'},
    {"key", required_argument, NULL, 'k'},
    {"json", no_argument, NULL, 'j'},
    {"ndjson", no_argument, NULL, 'J'},
    {"input", required_argument, NULL, 'i'},
    {"limit", required_argument, NULL, 'l'},
    {"metadata", required_argument, NULL, 'm'},
    {"preview", no_argument, NULL, 'P'},
    {"no-start", no_argument, NULL, 'N'},
    {"idempotency-key", required_argument, NULL, 'I'},
    {"wait", no_argument, NULL, 'w'},
    {"timeout", required_argument, NULL, 't'},
    {"status", required_argument, NULL, 's'},
    {"flow", required_argument, NULL, 'f'},
    {"page", required_argument, NULL, 'p'},
    {"page-size", required_argument, NULL, 'z'},
    {"all", no_argument, NULL, 'a'},
    {"types", required_argument, NULL, 'T'},
    {"after", required_argument, NULL, 'A'},
    {"comment", required_argument, NULL, 'c'},
    {"plain", no_argument, NULL, 'L'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const struct {
    int ch;
    unsigned bit;
} optbits[] = {
    {'u', O_URL},   {'k', O_KEY},     {'j', O_JSON},    {'J', O_NDJSON},  {'i', O_INPUT},
    {'l', O_LIMIT}, {'m', O_META},    {'P', O_PREVIEW}, {'N', O_NOSTART}, {'I', O_IDEM},
    {'w', O_WAIT},  {'t', O_TIMEOUT}, {'s', O_STATUS},  {'f', O_FLOW},    {'p', O_PAGE},
    {'z', O_PSIZE}, {'a', O_ALL},     {'T', O_TYPES},   {'A', O_AFTER},   {'c', O_COMMENT},
    {'L', O_PLAIN},
};

/* One option into o; false (after a message) for a bad value. */
static bool set_opt(rc_opts *o, int ch, const char *arg)
{
    for (size_t i = 0; i < sizeof optbits / sizeof optbits[0]; i++)
        if (optbits[i].ch == ch)
            o->given |= optbits[i].bit;
    bool ok = true;
    switch (ch) {
    case 'u':
        o->url = arg;
        break;
    case 'k':
        o->key = arg;
        break;
    case 'j':
        o->json = true;
        break;
    case 'J':
        o->ndjson = true;
        break;
    case 'i':
        o->input = arg;
        break;
    case 'l':
        ok = parse_long(arg, 1, &o->limit);
        break;
    case 'm':
        o->metadata = arg;
        break;
    case 'P':
        o->preview = true;
        break;
    case 'N':
        o->no_start = true;
        break;
    case 'I':
        o->idem_key = arg;
        break;
    case 'w':
        o->wait = true;
        break;
    case 't':
        ok = parse_secs(arg, &o->timeout);
        break;
    case 's':
        o->status = arg;
        break;
    case 'f':
        o->flow = arg;
        break;
    case 'p':
        ok = parse_long(arg, 1, &o->page);
        break;
    case 'z':
        ok = parse_long(arg, 1, &o->page_size) && o->page_size <= 100;
        break;
    case 'a':
        o->all = true;
        break;
    case 'T':
        o->types = arg;
        break;
    case 'A':
        ok = parse_long(arg, 0, &o->after);
        break;
    case 'c':
        o->comment = arg;
        break;
    case 'L':
        o->plain = true;
        break;
    }
    if (!ok)
        fprintf(stderr, "runsctl: bad value '%s' for an option (see runsctl --help)\n", arg);
    return ok;
}

/* Parses argv into o; leaves the command and its operands at argv[optind..]. Returns -1 to
 * go on, or the exit code. */
static int parse_args(int argc, char **argv, rc_opts *o)
{
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":u:k:hV", longopts, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return RC_OK;
        }
        if (ch == 'V') {
            printf("runsctl %s\n", RUNSD_VERSION);
            return RC_OK;
        }
        if (ch == '?' || ch == ':') {
            fprintf(stderr, "runsctl: %s option '%s' (see runsctl --help)\n",
                    ch == '?' ? "unknown" : "missing value for", argv[optind - 1]);
            return RC_USAGE;
        }
        if (!set_opt(o, ch, optarg))
            return RC_USAGE;
    }
    return -1;
}

/* The options given that cmd does not take: a usage error, not silently ignored. */
static bool check_opts(const struct rc_cmd *c, const rc_opts *o)
{
    unsigned extra = o->given & ~(c->opts | O_GLOBAL);
    for (size_t i = 0; extra && i < sizeof longopts / sizeof longopts[0] - 1; i++)
        for (size_t k = 0; k < sizeof optbits / sizeof optbits[0]; k++)
            if (optbits[k].ch == longopts[i].val && (extra & optbits[k].bit)) {
                fprintf(stderr, "runsctl: %s does not take --%s\nusage: runsctl %s\n", c->name,
                        longopts[i].name, c->synopsis);
                return false;
            }
    if (o->json && o->ndjson) {
        fprintf(stderr, "runsctl: --json and --ndjson exclude each other\n");
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    rc_opts o = {.timeout = -1};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (optind >= argc) {
        usage(stderr);
        return RC_USAGE;
    }
    const struct rc_cmd *c = NULL;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmds[i].name, argv[optind]) == 0)
            c = &cmds[i];
    if (!c) {
        fprintf(stderr, "runsctl: unknown command '%s' (see runsctl --help)\n", argv[optind]);
        return RC_USAGE;
    }
    if (!check_opts(c, &o))
        return RC_USAGE;
    if (!o.url)
        o.url = getenv("RUNSD_URL");
    if (!o.key)
        o.key = getenv("RUNSD_KEY");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "runsctl: libcurl failed to initialize\n");
        return RC_ERR;
    }
    rc_http h;
    rc = rc_http_init(&h, o.url && *o.url ? o.url : "http://127.0.0.1:8080",
                      o.key && *o.key ? o.key : NULL);
    if (rc == 0) {
        rc = c->fn(&h, &o, argc - optind - 1, argv + optind + 1);
        rc_http_dispose(&h);
    }
    curl_global_cleanup();
    return rc;
}

/* ---- run outcome -> exit code ---- */

static const struct {
    const char *reason;
    int code;
} reason_codes[] = {
    {"completed", RC_OK},        {"match_limit_met", RC_OK},       {"candidates_exhausted", RC_OK},
    {"low_match_rate", RC_OK},   {"items_failed", RC_INCOMPLETE},  {"error_occurred", RC_FAILED},
    {"timeout", RC_TIMEOUT},     {"approval_timeout", RC_TIMEOUT}, {"auth_timeout", RC_TIMEOUT},
    {"auth_denied", RC_DENIED},  {"approval_denied", RC_DENIED},   {"worker_crashed", RC_CRASHED},
    {"interrupted", RC_CRASHED}, {"spawn_failed", RC_CRASHED},     {"user_cancelled", RC_CANCELLED},
};

static const struct {
    const char *status;
    int code;
} status_codes[] = {
    {"succeeded", RC_OK},          {"incomplete", RC_INCOMPLETE}, {"failed", RC_FAILED},
    {"crashed", RC_CRASHED},       {"cancelled", RC_CANCELLED},   {"paused", RC_WAITING},
    {"auth_required", RC_WAITING},
};

bool rc_status_terminal(const char *s)
{
    return strcmp(s, "succeeded") == 0 || strcmp(s, "incomplete") == 0 ||
           strcmp(s, "failed") == 0 || strcmp(s, "crashed") == 0 || strcmp(s, "cancelled") == 0;
}

bool rc_status_waiting(const char *s)
{
    return strcmp(s, "paused") == 0 || strcmp(s, "auth_required") == 0;
}

int rc_exit_for_run(const json_t *run)
{
    const char *st = rc_str(run, "status"), *why = rc_str(run, "termination_reason");
    if (rc_status_terminal(st))
        for (size_t i = 0; i < sizeof reason_codes / sizeof reason_codes[0]; i++)
            if (strcmp(reason_codes[i].reason, why) == 0)
                return reason_codes[i].code;
    /* A reason this client does not know (a later extension): its status decides. */
    for (size_t i = 0; i < sizeof status_codes / sizeof status_codes[0]; i++)
        if (strcmp(status_codes[i].status, st) == 0)
            return status_codes[i].code;
    return RC_ACTIVE;
}
