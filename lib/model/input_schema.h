/*
 * input_schema.h: what a flow's run input may hold, as a small subset of JSON Schema
 * (docs/config.md, "Input schemas"): type, properties, required, additionalProperties
 * (a boolean), minimum, maximum, minLength, maxLength, enum and items, plus the annotations
 * title, description, default, $schema and $comment. The config checks a schema once when it
 * is loaded; a create (and an enrich) validates the input against it before anything is
 * stored, so a typo in a key is a 422 that names it, not a run that silently ignores it.
 * Pure functions on jansson values, no I/O.
 */
#ifndef RUNSD_INPUT_SCHEMA_H
#define RUNSD_INPUT_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

/** Checks that schema is within the subset above and that its root is {"type": "object"}.
 * Returns 0, or -1 with the reason (prefixed with the keyword's path, such as
 * "properties.count.minimum: must be a number") in why, which is always UTF-8. */
int rd_input_schema_check(const json_t *schema, char *why, size_t len);

/** Validates a run's input against a schema that passed rd_input_schema_check. A missing
 * input (NULL or JSON null) is validated as {}. Returns 0, or -1 with a message for the
 * client in why (UTF-8, cut to len), e.g. `unknown input key "nme_contains"; accepted:
 * name_contains, section` or `missing required input key "path"`. */
int rd_input_schema_validate(const json_t *schema, const json_t *input, char *why, size_t len);

#endif
