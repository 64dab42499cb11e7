/*
 * input_schema.c: a flow's input schema, a small subset of JSON Schema (input_schema.h),
 * checked once when the config is loaded and applied to each run's input at create time.
 * The subset is what a flow's author needs to say which keys a worker reads, of which JSON
 * types, which of them are required, and simple bounds; keywords outside it are refused when
 * the config is loaded rather than ignored, so a schema never promises a check it does not
 * make. Keywords apply to values of their own type only (minimum to numbers, maxLength to
 * strings, properties to objects), as in JSON Schema. Messages go to clients and to
 * `runsd -t`, so they name the key and are always whole UTF-8.
 */
#include "model/input_schema.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16 /* nested schemas (properties, items) */
#define KEY_SHOWN 64 /* bytes of one key shown in a path */
#define PATH_MAX_LEN 200

static const char *const type_names[] = {"object", "array",   "string", "integer",
                                         "number", "boolean", "null",   NULL};
static const char *const keywords[] = {"type",    "properties", "required",  "additionalProperties",
                                       "minimum", "maximum",    "minLength", "maxLength",
                                       "enum",    "items",      "title",     "description",
                                       "default", "$schema",    "$comment",  NULL};

/* Cuts s so it ends on a whole UTF-8 character (s was valid UTF-8 before some cut). */
static void utf8_cut(char *s)
{
    size_t n = strlen(s), i = n;

    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char c = (unsigned char)s[i - 1];
    size_t need = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    if (n - (i - 1) < need)
        s[i - 1] = '\0';
}

static int fail(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (len == 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    utf8_cut(why);
    return -1;
}

/* Appends ".key" (or "key" to an empty path) to path, the key cut to KEY_SHOWN bytes on a
 * character boundary with "..." after it when cut. */
static void path_key(char *path, size_t cap, const char *key)
{
    char shown[KEY_SHOWN + 4];
    size_t n = strlen(path);

    snprintf(shown, KEY_SHOWN + 1, "%s", key);
    utf8_cut(shown);
    if (strlen(key) > strlen(shown))
        strcat(shown, "...");
    snprintf(path + n, cap - n, "%s%s", n ? "." : "", shown);
    utf8_cut(path);
}

static bool in_list(const char *s, const char *const *list)
{
    for (size_t i = 0; list[i] != NULL; i++)
        if (strcmp(s, list[i]) == 0)
            return true;
    return false;
}

/* ---- checking a schema ---------------------------------------------------------------- */

static int check_type(const json_t *t, const char *at, char *why, size_t len)
{
    size_t i;
    const json_t *v;

    if (json_is_string(t)) {
        if (!in_list(json_string_value(t), type_names))
            return fail(why, len,
                        "%stype: unknown type \"%.32s\" (expected object, array, string, integer, "
                        "number, boolean or null)",
                        at, json_string_value(t));
        return 0;
    }
    if (!json_is_array(t) || json_array_size(t) == 0)
        return fail(why, len, "%stype: must be a type name or a non-empty array of them", at);
    json_array_foreach(t, i, v)
    {
        if (!json_is_string(v) || check_type(v, at, why, len) != 0)
            return json_is_string(v) ? -1 : fail(why, len, "%stype: must hold type names", at);
        for (size_t j = 0; j < i; j++)
            if (json_equal(v, json_array_get(t, j)))
                return fail(why, len, "%stype: \"%s\" is listed twice", at, json_string_value(v));
    }
    return 0;
}

static int check_node(const json_t *s, const char *at, int depth, char *why, size_t len);

static int check_properties(const json_t *props, const char *at, int depth, char *why, size_t len)
{
    const char *name;
    const json_t *sub;

    if (!json_is_object(props))
        return fail(why, len, "%sproperties: must be an object of schemas", at);
    json_object_foreach((json_t *)props, name, sub)
    {
        char child[PATH_MAX_LEN + 16] = "";

        snprintf(child, PATH_MAX_LEN, "%sproperties", at);
        path_key(child, PATH_MAX_LEN, name);
        strcat(child, ".");
        if (check_node(sub, child, depth + 1, why, len) != 0)
            return -1;
    }
    return 0;
}

static int check_required(const json_t *s, const char *at, char *why, size_t len)
{
    const json_t *req = json_object_get(s, "required"), *props = json_object_get(s, "properties");
    size_t i;
    const json_t *v;

    if (!json_is_array(req))
        return fail(why, len, "%srequired: must be an array of key names", at);
    json_array_foreach(req, i, v)
    {
        if (!json_is_string(v))
            return fail(why, len, "%srequired: must be an array of key names", at);
        for (size_t j = 0; j < i; j++)
            if (json_equal(v, json_array_get(req, j)))
                return fail(why, len, "%srequired: \"%.64s\" is listed twice", at,
                            json_string_value(v));
        /* A required key that properties does not describe is almost always a typo. */
        if (!json_object_get(props, json_string_value(v)))
            return fail(why, len, "%srequired: \"%.64s\" is not in properties", at,
                        json_string_value(v));
    }
    return 0;
}

/* The bounds: numbers for minimum/maximum, non-negative integers for the lengths, and
 * neither pair upside down. */
static int check_bounds(const json_t *s, const char *at, char *why, size_t len)
{
    const json_t *lo = json_object_get(s, "minimum"), *hi = json_object_get(s, "maximum");
    const json_t *lmin = json_object_get(s, "minLength"), *lmax = json_object_get(s, "maxLength");

    if ((lo && !json_is_number(lo)) || (hi && !json_is_number(hi)))
        return fail(why, len, "%s%s: must be a number", at,
                    lo && !json_is_number(lo) ? "minimum" : "maximum");
    if (lo && hi && json_number_value(lo) > json_number_value(hi))
        return fail(why, len, "%sminimum: is greater than maximum", at);
    if ((lmin && (!json_is_integer(lmin) || json_integer_value(lmin) < 0)) ||
        (lmax && (!json_is_integer(lmax) || json_integer_value(lmax) < 0)))
        return fail(why, len, "%s%s: must be a non-negative integer", at,
                    lmin && (!json_is_integer(lmin) || json_integer_value(lmin) < 0) ? "minLength"
                                                                                     : "maxLength");
    if (lmin && lmax && json_integer_value(lmin) > json_integer_value(lmax))
        return fail(why, len, "%sminLength: is greater than maxLength", at);
    return 0;
}

static int check_node(const json_t *s, const char *at, int depth, char *why, size_t len)
{
    const char *k;
    const json_t *v;

    int n = *at ? (int)strlen(at) - 1 : 0; /* at without its trailing dot */

    if (depth > MAX_DEPTH)
        return fail(why, len, "%.*s: schemas nested deeper than %d levels", n, at, MAX_DEPTH);
    if (!json_is_object(s))
        return fail(why, len, "%.*s%sa schema must be a JSON object", n, at, *at ? ": " : "");
    json_object_foreach((json_t *)s, k, v)
    {
        if (!in_list(k, keywords))
            return fail(why, len,
                        "%s%.64s: unsupported keyword (supported: type, properties, required, "
                        "additionalProperties, minimum, maximum, minLength, maxLength, enum, "
                        "items, and the annotations title, description, default, $schema, "
                        "$comment)",
                        at, k);
        if ((strcmp(k, "title") == 0 || strcmp(k, "description") == 0 || k[0] == '$') &&
            !json_is_string(v))
            return fail(why, len, "%s%s: must be a string", at, k);
    }
    if ((v = json_object_get(s, "type")) && check_type(v, at, why, len) != 0)
        return -1;
    if ((v = json_object_get(s, "properties")) && check_properties(v, at, depth, why, len) != 0)
        return -1;
    if (json_object_get(s, "required") && check_required(s, at, why, len) != 0)
        return -1;
    if ((v = json_object_get(s, "additionalProperties")) && !json_is_boolean(v))
        return fail(why, len,
                    "%sadditionalProperties: must be true or false (schemas are not "
                    "supported here)",
                    at);
    if ((v = json_object_get(s, "enum")) && (!json_is_array(v) || json_array_size(v) == 0))
        return fail(why, len, "%senum: must be a non-empty array of values", at);
    if (check_bounds(s, at, why, len) != 0)
        return -1;
    if ((v = json_object_get(s, "items"))) {
        char child[PATH_MAX_LEN + 16];

        snprintf(child, sizeof child, "%sitems.", at);
        return check_node(v, child, depth + 1, why, len);
    }
    return 0;
}

int rd_input_schema_check(const json_t *schema, char *why, size_t len)
{
    const json_t *t;

    if (check_node(schema, "", 0, why, len) != 0)
        return -1;
    t = json_object_get(schema, "type");
    if (!json_is_string(t) || strcmp(json_string_value(t), "object") != 0)
        return fail(why, len,
                    "type: the root must say \"type\": \"object\" (a run's input is "
                    "an object)");
    return 0;
}

/* ---- validating an input -------------------------------------------------------------- */

/* "an integer", "a string or null" ... for messages. */
static const char *type_phrase(const char *t)
{
    static const char *const phrases[] = {"an object", "an array",  "a string", "an integer",
                                          "a number",  "a boolean", "null"};

    for (size_t i = 0; type_names[i] != NULL; i++)
        if (strcmp(t, type_names[i]) == 0)
            return phrases[i];
    return t;
}

static const char *value_phrase(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static bool type_is(const char *t, const json_t *v)
{
    if (strcmp(t, "object") == 0)
        return json_is_object(v);
    if (strcmp(t, "array") == 0)
        return json_is_array(v);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    return json_is_null(v);
}

/* The subject of a message: `input` or `input key "a.b"`. */
static void subject(const char *path, char *out, size_t n)
{
    if (*path)
        snprintf(out, n, "input key \"%s\"", path);
    else
        snprintf(out, n, "input");
}

static int check_value_type(const json_t *t, const json_t *v, const char *path, char *why,
                            size_t len)
{
    char subj[PATH_MAX_LEN + 16], want[128] = "";
    size_t i, n = json_is_array(t) ? json_array_size(t) : 1;

    for (i = 0; i < n; i++)
        if (type_is(json_string_value(json_is_array(t) ? json_array_get(t, i) : t), v))
            return 0;
    for (i = 0; i < n; i++) {
        const char *name = json_string_value(json_is_array(t) ? json_array_get(t, i) : t);
        size_t used = strlen(want);

        snprintf(want + used, sizeof want - used, "%s%s",
                 i == 0       ? ""
                 : i + 1 == n ? " or "
                              : ", ",
                 type_phrase(name));
    }
    subject(path, subj, sizeof subj);
    return fail(why, len, "%s must be %s (got %s)", subj, want, value_phrase(v));
}

/* Numbers compare by value (1 and 1.0 are equal), everything else as jansson does. */
static bool values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

static int check_enum(const json_t *e, const json_t *v, const char *path, char *why, size_t len)
{
    char subj[PATH_MAX_LEN + 16], list[160] = "";
    size_t i;
    const json_t *x;

    json_array_foreach(e, i, x) if (values_equal(x, v)) return 0;
    json_array_foreach(e, i, x)
    {
        char *s = json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT);
        size_t used = strlen(list);

        if (s != NULL && used + strlen(s) + 8 < sizeof list)
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", s);
        else if (used + 6 < sizeof list)
            snprintf(list + used, sizeof list - used, ", ...");
        free(s);
        if (s == NULL || strstr(list, "...") != NULL)
            break;
    }
    subject(path, subj, sizeof subj);
    return fail(why, len, "%s must be one of: %s", subj, list);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int check_range(const json_t *s, const json_t *v, const char *path, char *why, size_t len)
{
    const json_t *lo = json_object_get(s, "minimum"), *hi = json_object_get(s, "maximum");
    const json_t *lmin = json_object_get(s, "minLength"), *lmax = json_object_get(s, "maxLength");
    char subj[PATH_MAX_LEN + 16];

    subject(path, subj, sizeof subj);
    if (json_is_number(v) && lo && json_number_value(v) < json_number_value(lo))
        return fail(why, len, "%s must be at least %.15g (got %.15g)", subj, json_number_value(lo),
                    json_number_value(v));
    if (json_is_number(v) && hi && json_number_value(v) > json_number_value(hi))
        return fail(why, len, "%s must be at most %.15g (got %.15g)", subj, json_number_value(hi),
                    json_number_value(v));
    if (json_is_string(v)) {
        size_t n = utf8_chars(json_string_value(v));

        if (lmin && (json_int_t)n < json_integer_value(lmin))
            return fail(why, len, "%s must be at least %lld character%s long (got %zu)", subj,
                        (long long)json_integer_value(lmin),
                        json_integer_value(lmin) == 1 ? "" : "s", n);
        if (lmax && (json_int_t)n > json_integer_value(lmax))
            return fail(why, len, "%s must be at most %lld characters long (got %zu)", subj,
                        (long long)json_integer_value(lmax), n);
    }
    return 0;
}

static int validate_node(const json_t *s, const json_t *v, char *path, char *why, size_t len);

/* The keys the object schema s accepts, for the message about an unknown one. */
static void accepted_keys(const json_t *s, char *out, size_t n)
{
    const char *k;
    const json_t *sub;

    out[0] = '\0';
    json_object_foreach(json_object_get(s, "properties"), k, sub)
    {
        size_t used = strlen(out);

        if (used + strlen(k) + 8 >= n) {
            snprintf(out + used, n - used, ", ...");
            break;
        }
        snprintf(out + used, n - used, "%s%s", used ? ", " : "", k);
    }
    (void)sub;
}

static int validate_object(const json_t *s, const json_t *v, char *path, char *why, size_t len)
{
    const json_t *props = json_object_get(s, "properties"), *sub, *r;
    size_t plen = strlen(path), i;
    const char *k;

    json_object_foreach((json_t *)v, k, sub)
    {
        if (json_object_get(props, k) || !json_is_false(json_object_get(s, "additionalProperties")))
            continue;
        char accepted[160];

        path_key(path, PATH_MAX_LEN, k);
        accepted_keys(s, accepted, sizeof accepted);
        if (!accepted[0])
            return fail(why, len, "unknown input key \"%s\"; %s accepts no keys", path,
                        plen ? "this object" : "this flow");
        return fail(why, len, "unknown input key \"%s\"; accepted: %s", path, accepted);
    }
    json_array_foreach(json_object_get(s, "required"), i, r)
    {
        if (json_object_get(v, json_string_value(r)))
            continue;
        path_key(path, PATH_MAX_LEN, json_string_value(r));
        return fail(why, len, "missing required input key \"%s\"", path);
    }
    json_object_foreach((json_t *)v, k, sub)
    {
        const json_t *ks = json_object_get(props, k);

        if (!ks)
            continue;
        path_key(path, PATH_MAX_LEN, k);
        if (validate_node(ks, sub, path, why, len) != 0)
            return -1;
        path[plen] = '\0';
    }
    return 0;
}

static int validate_node(const json_t *s, const json_t *v, char *path, char *why, size_t len)
{
    const json_t *t = json_object_get(s, "type"), *e = json_object_get(s, "enum");
    const json_t *items = json_object_get(s, "items"), *x;
    size_t plen = strlen(path), i;

    if (t && check_value_type(t, v, path, why, len) != 0)
        return -1;
    if (e && check_enum(e, v, path, why, len) != 0)
        return -1;
    if (check_range(s, v, path, why, len) != 0)
        return -1;
    if (json_is_object(v))
        return validate_object(s, v, path, why, len);
    if (!json_is_array(v) || !items)
        return 0;
    json_array_foreach(v, i, x)
    {
        snprintf(path + plen, PATH_MAX_LEN - plen, "[%zu]", i);
        if (validate_node(items, x, path, why, len) != 0)
            return -1;
        path[plen] = '\0';
    }
    return 0;
}

int rd_input_schema_validate(const json_t *schema, const json_t *input, char *why, size_t len)
{
    char path[PATH_MAX_LEN + 8] = "";
    json_t *empty = NULL;
    int rc;

    if (input == NULL || json_is_null(input))
        input = empty = json_object();
    rc = empty == NULL && input == NULL ? fail(why, len, "out of memory")
                                        : validate_node(schema, input, path, why, len);
    json_decref(empty);
    return rc;
}
