/* test_input_schema.c: the input schema subset (lib/model/input_schema.c): which schemas the
 * config accepts and why it refuses the others, and the exact message a client gets for each
 * way an input can miss its schema (unknown key with the accepted ones, wrong type, missing
 * key, bounds, enum, nested objects and arrays). The messages are part of the API's 422
 * invalid_input answers, so they are compared whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/input_schema.h"

/* The demo's pkgsearch schema, as conf/flows/pkgsearch.schema.json says it. */
static const char *pkgsearch =
    "{\"type\":\"object\",\"additionalProperties\":false,"
    " \"properties\":{"
    "  \"name_contains\":{\"type\":[\"string\",\"null\"],\"maxLength\":200},"
    "  \"section\":{\"type\":[\"string\",\"null\"]},"
    "  \"priority\":{\"type\":[\"string\",\"null\"],"
    "  \"enum\":[\"required\",\"important\",\"standard\",\"optional\",\"extra\",null]},"
    "  \"depends_on\":{\"type\":[\"string\",\"null\"]},"
    "  \"min_installed_size_kb\":{\"type\":[\"number\",\"null\"],\"minimum\":0},"
    "  \"status_path\":{\"type\":[\"string\",\"null\"],\"description\":\"tests\"}}}";

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (j == NULL)
        fail_msg("bad JSON in the test (%s): %s", jerr.text, text);
    return j;
}

static json_t *schema_ok(const char *text)
{
    char why[256] = "";
    json_t *s = load(text);
    if (rd_input_schema_check(s, why, sizeof why) != 0)
        fail_msg("refused: %s\n  %s", why, text);
    return s;
}

/* input (NULL: none) against schema: 0 when message is NULL, else exactly message. */
static void expect(const char *schema, const char *input, const char *message)
{
    char why[256] = "";
    json_t *s = schema_ok(schema), *in = input ? load(input) : NULL;
    int rc = rd_input_schema_validate(s, in, why, sizeof why);

    if (message == NULL && rc != 0)
        fail_msg("refused %s: %s", input, why);
    if (message != NULL && rc == 0)
        fail_msg("accepted %s (want: %s)", input, message);
    if (message != NULL && strcmp(why, message) != 0)
        fail_msg("input %s\n  got:  %s\n  want: %s", input, why, message);
    json_decref(in);
    json_decref(s);
}

static void test_demo_schema(void **state)
{
    (void)state;
    expect(pkgsearch, NULL, NULL);
    expect(pkgsearch, "null", NULL);
    expect(pkgsearch, "{}", NULL);
    expect(pkgsearch, "{\"name_contains\":\"lib\",\"section\":null,\"priority\":\"optional\"}",
           NULL);
    expect(pkgsearch, "{\"min_installed_size_kb\":100}", NULL);
    expect(pkgsearch, "{\"min_installed_size_kb\":0.5}", NULL);
    expect(pkgsearch, "{\"nme_contains\":\"lib\"}",
           "unknown input key \"nme_contains\"; accepted: name_contains, section, priority, "
           "depends_on, min_installed_size_kb, status_path");
    expect(pkgsearch, "{\"name_contains\":5}",
           "input key \"name_contains\" must be a string or null (got an integer)");
    expect(pkgsearch, "[1,2]", "input must be an object (got an array)");
    expect(pkgsearch, "\"lib\"", "input must be an object (got a string)");
    expect(pkgsearch, "{\"min_installed_size_kb\":-1}",
           "input key \"min_installed_size_kb\" must be at least 0 (got -1)");
    expect(pkgsearch, "{\"min_installed_size_kb\":true}",
           "input key \"min_installed_size_kb\" must be a number or null (got a boolean)");
    expect(pkgsearch, "{\"priority\":\"high\"}",
           "input key \"priority\" must be one of: \"required\", \"important\", \"standard\", "
           "\"optional\", \"extra\", null");
}

static void test_required_and_bounds(void **state)
{
    const char *s = "{\"type\":\"object\",\"required\":[\"path\"],\"additionalProperties\":false,"
                    "\"properties\":{\"path\":{\"type\":\"string\",\"minLength\":1,"
                    "\"maxLength\":4},\"count\":{\"type\":\"integer\",\"minimum\":1,"
                    "\"maximum\":10000}}}";
    (void)state;
    expect(s, "{\"path\":\"a\"}", NULL);
    expect(s, NULL, "missing required input key \"path\"");
    expect(s, "{\"count\":3}", "missing required input key \"path\"");
    /* an unknown key is named before the required one it probably misspells */
    expect(s, "{\"pth\":\"x\"}", "unknown input key \"pth\"; accepted: path, count");
    expect(s, "{\"path\":\"\"}", "input key \"path\" must be at least 1 character long (got 0)");
    expect(s, "{\"path\":\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", NULL); /* 4 characters, 8 bytes */
    expect(s, "{\"path\":\"abcde\"}",
           "input key \"path\" must be at most 4 characters long (got 5)");
    expect(s, "{\"path\":\"a\",\"count\":0}", "input key \"count\" must be at least 1 (got 0)");
    expect(s, "{\"path\":\"a\",\"count\":10001}",
           "input key \"count\" must be at most 10000 (got 10001)");
    expect(s, "{\"path\":\"a\",\"count\":2.5}",
           "input key \"count\" must be an integer (got a number)");
    /* additionalProperties defaults to true, as in JSON Schema */
    expect("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}", "{\"b\":1}", NULL);
    expect("{\"type\":\"object\",\"additionalProperties\":false}", "{\"b\":1}",
           "unknown input key \"b\"; this flow accepts no keys");
}

static void test_nested(void **state)
{
    const char *s = "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"
                    "\"records\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
                    "\"required\":[\"id\"],\"additionalProperties\":false,"
                    "\"properties\":{\"id\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\","
                    "\"items\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]}}}}},"
                    "\"filter\":{\"type\":\"object\",\"additionalProperties\":false,"
                    "\"properties\":{\"min\":{\"type\":\"number\",\"enum\":[1,2]}}}}}";
    (void)state;
    expect(s, "{\"records\":[{\"id\":1},{\"id\":2,\"tags\":[\"a\",\"b\"]}]}", NULL);
    expect(s, "{\"records\":[{\"id\":1},{\"ID\":2}]}",
           "unknown input key \"records[1].ID\"; accepted: id, tags");
    expect(s, "{\"records\":[{\"id\":1},{\"tags\":[]}]}",
           "missing required input key \"records[1].id\"");
    expect(s, "{\"records\":[{\"id\":1,\"tags\":[\"a\",\"c\"]}]}",
           "input key \"records[0].tags[1]\" must be one of: \"a\", \"b\"");
    expect(s, "{\"filter\":{\"min\":2.0}}", NULL); /* numbers compare by value */
    expect(s, "{\"filter\":{\"max\":2}}", "unknown input key \"filter.max\"; accepted: min");
    expect(s, "{\"records\":{}}", "input key \"records\" must be an array (got an object)");
}

/* Messages stay whole UTF-8 however long the key: a client's key is cut on a character. */
static void test_long_keys(void **state)
{
    char input[600], key[400] = "";
    char why[256];
    json_t *s = schema_ok("{\"type\":\"object\",\"additionalProperties\":false,"
                          "\"properties\":{\"a\":{}}}");
    (void)state;
    for (int i = 0; i < 150; i++)
        strcat(key, "\xc3\xa9"); /* é, two bytes */
    snprintf(input, sizeof input, "{\"%s\":1}", key);
    json_t *in = load(input);
    assert_int_equal(rd_input_schema_validate(s, in, why, sizeof why), -1);
    json_t *as_json = json_string(why); /* NULL when not valid UTF-8 */
    assert_non_null(as_json);
    assert_non_null(strstr(why, "...\"; accepted: a"));
    json_decref(as_json);
    /* a tiny buffer still ends on a character */
    assert_int_equal(rd_input_schema_validate(s, in, why, 22), -1);
    as_json = json_string(why);
    assert_non_null(as_json);
    json_decref(as_json);
    json_decref(in);
    json_decref(s);
}

static void test_refused_schemas(void **state)
{
    static const struct {
        const char *schema, *why;
    } cases[] = {
        {"[]", "a schema must be a JSON object"},
        {"{}", "type: the root must say \"type\": \"object\" (a run's input is an object)"},
        {"{\"type\":\"array\"}",
         "type: the root must say \"type\": \"object\" (a run's input is an object)"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"strin\"}}}",
         "properties.a.type: unknown type \"strin\" (expected object, array, string, integer, "
         "number, boolean or null)"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":[]}}}",
         "properties.a.type: must be a type name or a non-empty array of them"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":[\"string\",\"string\"]}}}",
         "properties.a.type: \"string\" is listed twice"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"pattern\":\"x\"}}}",
         "properties.a.pattern: unsupported keyword (supported: type, properties, required, "
         "additionalProperties, minimum, maximum, minLength, maxLength, enum, items, and the "
         "annotations title, description, default, $schema, $comment)"},
        {"{\"type\":\"object\",\"properties\":{\"a\":3}}",
         "properties.a: a schema must be a JSON object"},
        {"{\"type\":\"object\",\"properties\":[]}", "properties: must be an object of schemas"},
        {"{\"type\":\"object\",\"required\":[\"a\"]}", "required: \"a\" is not in properties"},
        {"{\"type\":\"object\",\"required\":\"a\",\"properties\":{\"a\":{}}}",
         "required: must be an array of key names"},
        {"{\"type\":\"object\",\"additionalProperties\":{}}",
         "additionalProperties: must be true or false (schemas are not supported here)"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"minimum\":\"1\"}}}",
         "properties.n.minimum: must be a number"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"minimum\":2,\"maximum\":1}}}",
         "properties.n.minimum: is greater than maximum"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"maxLength\":-1}}}",
         "properties.n.maxLength: must be a non-negative integer"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"enum\":[]}}}",
         "properties.n.enum: must be a non-empty array of values"},
        {"{\"type\":\"object\",\"properties\":{\"n\":{\"items\":{\"type\":\"nope\"}}}}",
         "properties.n.items.type: unknown type \"nope\" (expected object, array, string, "
         "integer, number, boolean or null)"},
        {"{\"type\":\"object\",\"description\":5}", "description: must be a string"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[512] = "";
        json_t *s = load(cases[i].schema);
        if (rd_input_schema_check(s, why, sizeof why) == 0)
            fail_msg("accepted %s", cases[i].schema);
        if (strcmp(why, cases[i].why) != 0)
            fail_msg("schema %s\n  got:  %s\n  want: %s", cases[i].schema, why, cases[i].why);
        json_decref(s);
    }
}

static void test_depth_bound(void **state)
{
    char text[4096] = "{\"type\":\"object\",\"properties\":{\"a\":";
    char why[256];
    (void)state;
    for (int i = 0; i < 20; i++)
        strcat(text, "{\"items\":");
    strcat(text, "{}");
    for (int i = 0; i < 20; i++)
        strcat(text, "}");
    strcat(text, "}}");
    json_t *s = load(text);
    assert_int_equal(rd_input_schema_check(s, why, sizeof why), -1);
    assert_non_null(strstr(why, "schemas nested deeper than 16 levels"));
    json_decref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_schema),     cmocka_unit_test(test_required_and_bounds),
        cmocka_unit_test(test_nested),          cmocka_unit_test(test_long_keys),
        cmocka_unit_test(test_refused_schemas), cmocka_unit_test(test_depth_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
