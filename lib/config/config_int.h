/*
 * config_int.h: private to the config module's files. config.c drives the parse (its own line
 * reader in front of inih, the handler, the entry points); config_keys.c says what each key
 * accepts (the key tables, the value parsers, the defaults); config_check.c runs the checks
 * that need the whole file; config_split.c splits a command line into words; config_cmd.c
 * resolves relative worker commands and checks that they can be executed. They share the
 * parse context and the key tables declared here. Nothing outside lib/config includes this.
 */
#ifndef RUNSD_CONFIG_INT_H
#define RUNSD_CONFIG_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define MAX_SECTION_KEYS 24
#define KIB ((int64_t)1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define SEC ((int64_t)1000)
#define MINUTE (SEC * 60)
#define HOUR (MINUTE * 60)
#define DAY (HOUR * 24)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

enum section {
    SEC_SERVER,
    SEC_STORE,
    SEC_LIMITS,
    SEC_AUTH,
    SEC_WEBHOOKS,
    SEC_LOG,
    SEC_FLOW,
    SEC_COUNT
};
enum kind { K_STR, K_BOOL, K_INT, K_I64, K_SIZE, K_DUR, K_FN };

typedef struct parse_ctx parse_ctx;
/* Applies value to base (the rd_config, or the rd_flow_config for flow keys). On failure it
 * returns false with the reason in ctx->reason. */
typedef bool (*apply_fn)(parse_ctx *ctx, void *base, const char *value);

typedef struct key_spec {
    const char *name;
    const char *def; /* the default, as it would be written in the file; NULL = none */
    enum kind kind;
    size_t off;       /* field offset for typed kinds */
    int64_t min, max; /* inclusive range for numeric kinds */
    apply_fn fn;      /* K_FN only */
    bool repeatable;
} key_spec;

typedef struct section_spec {
    const char *name;
    const key_spec *keys;
    size_t n_keys;
} section_spec;

struct parse_ctx {
    rd_config *cfg;
    const char *name; /* file name for messages */
    const char *text;
    size_t len, pos;
    int line;                                          /* line last handed to inih */
    int cur_flow;                                      /* flow of the last header; -1 = none */
    char section[200];                                 /* name in the last header ("" = none) */
    int sec_line[SEC_COUNT];                           /* header line, 0 = not seen */
    int flow_line[RD_MAX_FLOWS];                       /* header line of each flow */
    int key_line[SEC_COUNT][MAX_SECTION_KEYS];         /* first line of each key */
    int flow_key_line[RD_MAX_FLOWS][MAX_SECTION_KEYS]; /* the same, per flow */
    int err_line;                                      /* line of the first error; 0 = none */
    char err[512];                                     /* the first error, minus "FILE:LINE: " */
    char reason[256];                                  /* scratch for apply functions */
};

/* config.c */
/** Records the first error at line (later ones are usually its consequences). */
void config_error(parse_ctx *ctx, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* config_keys.c */
/** The key table of each section, indexed by enum section. */
extern const section_spec config_sections[SEC_COUNT];
/** The index of key name in section sec's table, or -1. */
int config_key_index(enum section sec, const char *name);
/** Parses value as key k and stores it into base (the rd_config, or the rd_flow_config of a
 * flow key). false with the reason in ctx->reason. */
bool config_apply(parse_ctx *ctx, const key_spec *k, void *base, const char *value);
/** Applies every default of section sec to base; false only when memory runs out. */
bool config_apply_defaults(parse_ctx *ctx, enum section sec, void *base);
/** Sets cfg->path to name and applies the defaults of every non-flow section. */
bool config_defaults(parse_ctx *ctx, const char *name);
/** Whether s is a valid flow name: 1 to 64 of A-Z a-z 0-9 _ . - */
bool config_flow_name_ok(const char *s);

/* config_cmd.c */
/** A path as written in the config, made absolute against the config file's directory when
 * it is relative. Malloc'd (the caller frees); NULL when memory runs out. */
char *config_path(parse_ctx *ctx, const char *path);
/** Makes a relative program path (argv[0] with a '/', not absolute) absolute against the
 * config file's directory. false only when memory runs out. */
bool config_resolve_command(parse_ctx *ctx, rd_flow_config *f);

/* config_schema.c */
/** The input_schema key: "@FILE" (a JSON file, relative to the config's directory) or an
 * inline JSON object, checked with rd_input_schema_check. An apply_fn. */
bool config_apply_input_schema(parse_ctx *ctx, void *base, const char *value);

/* config_check.c */
/** The checks that need the whole file, run once every key is parsed; errors go to ctx. */
void config_finish(parse_ctx *ctx);

#endif
