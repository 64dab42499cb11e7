/*
 * fuzz_config.c: libFuzzer target for the INI configuration (lib/config): the input, made a
 * C string, through rd_config_parse_string, then rd_config_free on whatever came back; and its
 * first line through rd_split_command, the shell-like splitter of flow commands.
 *
 * The config is operator input rather than a network one, but it is parsed again on every
 * reload (SIGHUP) and `runsd -t` is meant to be safe on any file, so a crash or a leak there
 * is a bug all the same. Contracts of config.h are checked; a broken one aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: contract broken: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_config(const rd_config *cfg)
{
    CHECK(cfg->n_listen >= 1 && cfg->n_listen <= RD_MAX_LISTEN);
    CHECK(cfg->n_keys >= 0 && cfg->n_keys <= RD_MAX_KEYS);
    CHECK(cfg->n_flows >= 0 && cfg->n_flows <= RD_MAX_FLOWS);
    CHECK(cfg->n_retry >= 0 && cfg->n_retry <= 16);
    CHECK(cfg->public_url && cfg->log_level && cfg->store_path);
    for (int i = 0; i < cfg->n_flows; i++) {
        const rd_flow_config *f = &cfg->flows[i];
        CHECK(f->name && rd_config_flow(cfg, f->name) == f);
        CHECK(f->external || (f->argc >= 1 && f->argc <= RD_MAX_ARGV && !f->argv[f->argc]));
        CHECK(f->n_env >= 0 && f->n_env <= RD_MAX_ENV && !f->env[f->n_env]);
        CHECK(strlen(f->version) == 16);
    }
}

static void split(const char *text)
{
    /* A flow's argv has RD_MAX_ARGV + 1 slots; give the splitter exactly that. */
    char *argv[RD_MAX_ARGV + 1];
    size_t n = strcspn(text, "\n");
    char *cmd = strndup(text, n);
    CHECK(cmd);
    int argc = rd_split_command(cmd, argv, RD_MAX_ARGV);
    if (argc >= 0) {
        CHECK(argc >= 1 && argc <= RD_MAX_ARGV && !argv[argc]);
        for (int i = 0; i < argc; i++) {
            CHECK(argv[i] && strlen(argv[i]) <= n);
            free(argv[i]);
        }
    } else {
        CHECK(argc == RD_EINVAL && !argv[0]);
    }
    free(cmd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    char err[512];
    rd_config *cfg = (rd_config *)&err; /* must be replaced: NULL on failure */
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int rc = rd_config_parse_string(text, "fuzz.ini", &cfg, err, sizeof err);
    if (rc == RD_OK) {
        CHECK(cfg);
        check_config(cfg);
    } else {
        CHECK(rc == RD_EINVAL && !cfg && err[0] && strlen(err) < sizeof err);
    }
    rd_config_free(cfg);
    split(text);
    free(text);
    return 0;
}
