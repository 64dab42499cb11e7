/*
 * config_schema.c: a flow's input_schema key. The value is "@FILE", a JSON file whose
 * relative path is taken from the config file's directory (like a relative worker command),
 * or the schema itself inline ("{...}" on the key's line). The file is read when the config
 * is loaded, so `runsd -t` checks it and a reload (SIGHUP) reads it again; what the schema
 * may say is model/input_schema.c's to decide. Errors name the file and, for JSON syntax,
 * its line and column; config.c adds the config's own file, line and key.
 */
#include "config/config_int.h"
#include "model/input_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool fail(parse_ctx *ctx, json_t *doomed, const char *where, const char *what)
{
    json_decref(doomed);
    snprintf(ctx->reason, sizeof ctx->reason, "%s%s%s", where, *where ? ": " : "", what);
    return false;
}

bool config_apply_input_schema(parse_ctx *ctx, void *base, const char *value)
{
    rd_flow_config *f = base;
    json_error_t jerr;
    json_t *schema;
    char why[200], at[64] = "";

    if (value[0] == '@') {
        char *path = value[1] ? config_path(ctx, value + 1) : NULL;

        if (value[1] == '\0')
            return fail(ctx, NULL, "", "expected @FILE (a JSON file) or an inline JSON object");
        if (path == NULL)
            return fail(ctx, NULL, "", "out of memory");
        schema = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
        free(path);
        snprintf(at, sizeof at, "%.60s", value + 1);
        if (schema == NULL && jerr.line < 1)
            return fail(ctx, NULL, "", jerr.text); /* "unable to open PATH: reason" */
    } else if (value[0] == '{') {
        schema = json_loads(value, JSON_REJECT_DUPLICATES, &jerr);
        snprintf(at, sizeof at, "inline JSON");
    } else {
        return fail(ctx, NULL, "",
                    "expected @FILE (a JSON file, relative to this config's "
                    "directory) or an inline JSON object");
    }
    if (schema == NULL) {
        snprintf(why, sizeof why, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        return fail(ctx, NULL, at, why);
    }
    if (rd_input_schema_check(schema, why, sizeof why) != 0)
        return fail(ctx, schema, at, why);
    json_decref(f->input_schema);
    f->input_schema = schema;
    return true;
}
