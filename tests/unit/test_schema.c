/* Unit tests for the schema validator: every rule passing and failing, the
 * error layout and texts as Cerberus writes them, and load errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eds_err.h"
#include "eds_schema.h"

static eds_schema *load(const char *schema)
{
    eds_schema *s = NULL;
    eds_error err = {0};
    int rc = eds_schema_load_json(schema, strlen(schema), "test.json", &s, &err);
    if (rc != EDS_OK)
        print_error("schema %s failed to load: %s\n", schema, err.msg);
    assert_int_equal(rc, EDS_OK);
    assert_non_null(s);
    return s;
}

/* Validates doc against schema; expected is the compact error JSON, or NULL
 * for a valid document. */
static void check(const char *schema, const char *doc, const char *expected)
{
    eds_schema *s = load(schema);
    cJSON *d = cJSON_Parse(doc);
    assert_non_null(d);
    cJSON *errors = (cJSON *)1;
    int rc = eds_schema_validate(s, d, &errors);
    char *got = errors ? cJSON_PrintUnformatted(errors) : NULL;
    if (expected == NULL) {
        if (rc != EDS_OK)
            print_error("schema %s doc %s: expected valid, got %s\n", schema, doc, got);
        assert_int_equal(rc, EDS_OK);
        assert_null(errors);
    } else {
        if (rc != EDS_ERR_INVALID || !got || strcmp(got, expected) != 0)
            print_error("schema %s doc %s:\n expected %s\n got      %s\n", schema, doc, expected,
                        got ? got : "(valid)");
        assert_int_equal(rc, EDS_ERR_INVALID);
        assert_non_null(got);
        assert_string_equal(got, expected);
    }
    free(got);
    cJSON_Delete(errors);
    cJSON_Delete(d);
    eds_schema_destroy(s);
}

/* Loads schema expecting failure with code; the message must contain each
 * of the NULL-terminated fragments. */
static void check_load_error(const char *schema, int code, ...)
{
    eds_schema *s = (eds_schema *)1;
    eds_error err = {0};
    int rc = eds_schema_load_json(schema, strlen(schema), "schemas/x.json", &s, &err);
    assert_int_equal(rc, code);
    assert_null(s);
    va_list ap;
    va_start(ap, code);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;) {
        if (!strstr(err.msg, frag))
            print_error("schema %s: message '%s' lacks '%s'\n", schema, err.msg, frag);
        assert_non_null(strstr(err.msg, frag));
    }
    va_end(ap);
}

static const char energy[] =
    "{\"timestamp\": {\"type\": \"string\", \"required\": true, \"format\": \"date-time\"},"
    " \"day-ahead-price\": {\"type\": \"float\", \"min\": 0.0},"
    " \"power_factor\": {\"type\": \"float\", \"between\": [0.0, 1.0]}}";

static void test_energy_protocol_example(void **state)
{
    check(energy,
          "{\"timestamp\":\"2026-11-24T10:00:00Z\",\"day-ahead-price\":81.4,\"power_factor\":0.97}",
          NULL);
    check(energy,
          "{\"timestamp\":\"2026-11-24T10:00:01Z\",\"day-ahead-price\":-3,\"power_factor\":1.2}",
          "{\"day-ahead-price\":[\"min value is 0.0\"],"
          "\"power_factor\":[\"must be between 0.0 and 1.0\"]}");
    /* Bounds are inclusive; new attributes may be added at the top level. */
    check(energy,
          "{\"timestamp\":\"2026-11-24T10:00:00Z\",\"day-ahead-price\":0,\"power_factor\":1,"
          "\"voltage\":230.1}",
          NULL);
    check(energy, "{\"day-ahead-price\":\"81\",\"power_factor\":true}",
          "{\"day-ahead-price\":[\"must be of float type\"],"
          "\"power_factor\":[\"must be of float type\"],\"timestamp\":[\"required field\"]}");
}

static void test_energy_file(void **state)
{
    eds_schema *s = NULL;
    eds_error err = {0};
    char path[1024];
    snprintf(path, sizeof(path), "%s/schemas/energy.json", EDS_SOURCE_DIR);
    assert_int_equal(eds_schema_load_file(path, &s, &err), EDS_OK);
    assert_string_equal(eds_schema_name(s), path);
    cJSON *d = cJSON_Parse("{\"timestamp\":\"2026-11-24 10:00:00\",\"power_factor\":-0.5}");
    cJSON *errors = NULL;
    assert_int_equal(eds_schema_validate(s, d, &errors), EDS_ERR_INVALID);
    char *got = cJSON_PrintUnformatted(errors);
    assert_string_equal(got, "{\"power_factor\":[\"must be between 0.0 and 1.0\"],"
                             "\"timestamp\":[\"value is not a valid RFC 3339 date-time\"]}");
    free(got);
    cJSON_Delete(errors);
    cJSON_Delete(d);
    eds_schema_destroy(s);
}

static void test_type_names(void **state)
{
    struct {
        const char *type, *good, *bad, *msg;
    } cases[] = {
        {"string", "\"x\"", "1", "must be of string type"},
        {"integer", "-7", "1.5", "must be of integer type"},
        {"integer", "1.0", "\"1\"", "must be of integer type"},
        {"float", "1", "\"1.0\"", "must be of float type"},
        {"number", "2.5", "false", "must be of number type"},
        {"boolean", "false", "0", "must be of boolean type"},
        {"boolean", "true", "1", "must be of boolean type"},
        {"dict", "{}", "[]", "must be of dict type"},
        {"list", "[1]", "{}", "must be of list type"},
        {"float", "0.5", "true", "must be of float type"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char schema[128], good[64], bad[64], expected[128];
        snprintf(schema, sizeof(schema), "{\"f\":{\"type\":\"%s\"}}", cases[i].type);
        snprintf(good, sizeof(good), "{\"f\":%s}", cases[i].good);
        snprintf(bad, sizeof(bad), "{\"f\":%s}", cases[i].bad);
        snprintf(expected, sizeof(expected), "{\"f\":[\"%s\"]}", cases[i].msg);
        check(schema, good, NULL);
        check(schema, bad, expected);
    }
}

static void test_type_list(void **state)
{
    const char *schema = "{\"f\":{\"type\":[\"string\",\"integer\"]}}";
    check(schema, "{\"f\":\"a\"}", NULL);
    check(schema, "{\"f\":3}", NULL);
    check(schema, "{\"f\":3.5}", "{\"f\":[\"must be of ['string', 'integer'] type\"]}");
}

static void test_type_error_stops_other_rules(void **state)
{
    check("{\"f\":{\"type\":\"integer\",\"min\":10,\"allowed\":[20]}}", "{\"f\":\"x\"}",
          "{\"f\":[\"must be of integer type\"]}");
}

static void test_required(void **state)
{
    const char *schema = "{\"a\":{\"required\":true},\"b\":{\"required\":false},\"c\":{}}";
    check(schema, "{\"a\":1}", NULL);
    check(schema, "{\"b\":1,\"c\":2}", "{\"a\":[\"required field\"]}");
    /* Present but null: the field is there, null is what fails. */
    check(schema, "{\"a\":null}", "{\"a\":[\"null value not allowed\"]}");
}

static void test_nullable(void **state)
{
    check("{\"f\":{}}", "{\"f\":null}", "{\"f\":[\"null value not allowed\"]}");
    check("{\"f\":{\"type\":\"integer\"}}", "{\"f\":null}", "{\"f\":[\"null value not allowed\"]}");
    check("{\"f\":{\"type\":\"integer\",\"min\":3,\"nullable\":true}}", "{\"f\":null}", NULL);
    check("{\"f\":{\"type\":\"integer\",\"nullable\":true}}", "{\"f\":1.5}",
          "{\"f\":[\"must be of integer type\"]}");
    check("{\"f\":{\"nullable\":false,\"required\":true}}", "{\"f\":null}",
          "{\"f\":[\"null value not allowed\"]}");
}

static void test_empty(void **state)
{
    const char *no_empty = "{\"f\":{\"type\":[\"string\",\"list\"],\"empty\":false,\"minlength\":2,"
                           "\"regex\":\"[a-z]+\",\"allowed\":[\"ab\"]}}";
    check(no_empty, "{\"f\":\"\"}", "{\"f\":[\"empty values not allowed\"]}");
    check(no_empty, "{\"f\":[]}", "{\"f\":[\"empty values not allowed\"]}");
    check(no_empty, "{\"f\":\"ab\"}", NULL);
    const char *empty_ok = "{\"f\":{\"type\":[\"string\",\"list\"],\"empty\":true,"
                           "\"minlength\":2,\"maxlength\":0,\"regex\":\"[a-z]+\","
                           "\"allowed\":[\"x\"],\"forbidden\":[\"\"]}}";
    check(empty_ok, "{\"f\":\"\"}", NULL);
    check(empty_ok, "{\"f\":[]}", NULL);
    /* Without an empty rule, the other rules judge "". */
    check("{\"f\":{\"minlength\":1}}", "{\"f\":\"\"}", "{\"f\":[\"min length is 1\"]}");
    check("{\"f\":{\"type\":\"dict\",\"empty\":false}}", "{\"f\":{}}",
          "{\"f\":[\"empty values not allowed\"]}");
}

static void test_min_max_between(void **state)
{
    const char *schema = "{\"f\":{\"min\":0.0,\"max\":1},\"g\":{\"max\":1.0,\"min\":-2},"
                         "\"h\":{\"between\":[1e2,250]},\"i\":{\"min\":0.00001}}";
    check(schema, "{\"f\":0,\"g\":-2,\"h\":100,\"i\":0.00001}", NULL);
    check(schema, "{\"f\":-0.1,\"g\":1.5,\"h\":250.5,\"i\":0}",
          "{\"f\":[\"min value is 0.0\"],\"g\":[\"max value is 1.0\"],"
          "\"h\":[\"must be between 100.0 and 250\"],\"i\":[\"min value is 1e-05\"]}");
    check(schema, "{\"f\":2,\"g\":-3}", "{\"f\":[\"max value is 1\"],\"g\":[\"min value is -2\"]}");
    /* Numbers only: a string or a boolean skips them. */
    const char *mixed = "{\"f\":{\"type\":[\"number\",\"string\"],\"min\":5,\"between\":[5,6]},"
                        "\"g\":{\"max\":0}}";
    check(mixed, "{\"f\":\"abc\",\"g\":true}", NULL);
    /* "between" sorts before "min": Cerberus lists messages by rule name. */
    check(mixed, "{\"f\":4}", "{\"f\":[\"must be between 5 and 6\",\"min value is 5\"]}");
}

static void test_length(void **state)
{
    const char *schema = "{\"s\":{\"minlength\":2,\"maxlength\":3},\"l\":{\"minlength\":1,"
                         "\"maxlength\":2}}";
    /* Characters, not bytes: "héé" is 3 characters in 5 bytes. */
    check(schema, "{\"s\":\"h\u00e9\u00e9\",\"l\":[1,2]}", NULL);
    check(schema, "{\"s\":\"\\u00e9\",\"l\":[]}",
          "{\"l\":[\"min length is 1\"],\"s\":[\"min length is 2\"]}");
    check(schema, "{\"s\":\"abcd\",\"l\":[1,2,3]}",
          "{\"l\":[\"max length is 2\"],\"s\":[\"max length is 3\"]}");
    /* A number has no length. */
    check(schema, "{\"s\":12345}", NULL);
}

static void test_allowed(void **state)
{
    const char *schema = "{\"s\":{\"allowed\":[\"a\",\"b\"]},\"n\":{\"allowed\":[1,2.5]},"
                         "\"l\":{\"type\":\"list\",\"allowed\":[\"x\",\"y\"]}}";
    check(schema, "{\"s\":\"a\",\"n\":1.0,\"l\":[\"x\",\"y\",\"x\"]}", NULL);
    check(schema, "{\"s\":\"c\",\"n\":3,\"l\":[\"x\",\"z\"]}",
          "{\"l\":[\"unallowed values ('z',)\"],\"n\":[\"unallowed value 3\"],"
          "\"s\":[\"unallowed value c\"]}");
    check(schema, "{\"n\":0.5,\"l\":[\"q\",\"x\",7]}",
          "{\"l\":[\"unallowed values ('q', 7)\"],\"n\":[\"unallowed value 0.5\"]}");
    /* Booleans are not numbers: true is not 1. */
    check(schema, "{\"n\":true}", "{\"n\":[\"unallowed value True\"]}");
}

static void test_forbidden(void **state)
{
    const char *schema = "{\"s\":{\"forbidden\":[\"root\",\"admin\"]},"
                         "\"l\":{\"forbidden\":[\"a\",\"b\"]},\"n\":{\"forbidden\":[0]}}";
    check(schema, "{\"s\":\"user\",\"l\":[\"c\"],\"n\":1}", NULL);
    check(schema, "{\"s\":\"root\",\"l\":[\"c\",\"b\",\"a\",\"b\"],\"n\":0}",
          "{\"l\":[\"unallowed values ['b', 'a']\"],\"n\":[\"unallowed value 0\"],"
          "\"s\":[\"unallowed value root\"]}");
    /* A dict is compared whole (it is not a sequence for Cerberus). */
    check("{\"d\":{\"forbidden\":[{\"a\":1},\"a\"]}}", "{\"d\":{\"a\":1.0}}",
          "{\"d\":[\"unallowed value {'a': 1}\"]}");
    check("{\"d\":{\"forbidden\":[{\"a\":1},\"a\"]}}", "{\"d\":{\"a\":2}}", NULL);
}

static void test_regex_whole_string(void **state)
{
    const char *schema = "{\"pet\":{\"regex\":\"cat|dog\"},\"id\":{\"regex\":\"[A-Z]{2}-[0-9]+\"}}";
    check(schema, "{\"pet\":\"cat\",\"id\":\"AB-12\"}", NULL);
    check(schema, "{\"pet\":\"catdog\",\"id\":\"xAB-12\"}",
          "{\"id\":[\"value does not match regex '[A-Z]{2}-[0-9]+'\"],"
          "\"pet\":[\"value does not match regex 'cat|dog'\"]}");
    /* Non-strings are not matched. */
    check(schema, "{\"pet\":5}", NULL);
}

static void test_format_date_time(void **state)
{
    const char *schema = "{\"t\":{\"format\":\"date-time\"}}";
    const char *good[] = {"2026-11-24T10:00:00Z", "2026-11-24t10:00:00.123456z",
                          "2024-02-29T23:59:59+01:00", "2026-12-31T23:59:60Z",
                          "2026-06-30T19:59:60-04:00"};
    const char *bad[] = {
        "2026-11-24 10:00:00Z",     "2026-11-24T10:00:00",   "2025-02-29T10:00:00Z",
        "2026-11-24T24:00:00Z",     "2026-11-24T10:00:00.Z", "26-11-24T10:00:00Z",
        "2026-11-24T10:00:00+0100", "2026-11-24T10:00:60Z",  "2026-11-24"};
    char doc[128];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"t\":\"%s\"}", good[i]);
        check(schema, doc, NULL);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"t\":\"%s\"}", bad[i]);
        check(schema, doc, "{\"t\":[\"value is not a valid RFC 3339 date-time\"]}");
    }
    check(schema, "{\"t\":1}", NULL); /* strings only; use type to require one */
}

static void test_nested_dict(void **state)
{
    const char *schema = "{\"meter\":{\"type\":\"dict\",\"schema\":{"
                         "\"phase\":{\"type\":\"integer\",\"required\":true},"
                         "\"id\":{\"type\":\"string\"}}}}";
    check(schema, "{\"meter\":{\"phase\":1,\"id\":\"m\",\"extra\":true}}", NULL);
    check(schema, "{\"meter\":{\"id\":3}}",
          "{\"meter\":[{\"id\":[\"must be of string type\"],\"phase\":[\"required field\"]}]}");
    check(schema, "{\"meter\":[]}", "{\"meter\":[\"must be of dict type\"]}");
}

static void test_list_items(void **state)
{
    const char *schema = "{\"f\":{\"type\":\"list\",\"schema\":{\"type\":\"dict\",\"schema\":{"
                         "\"a\":{\"type\":\"integer\"}}}}}";
    check(schema, "{\"f\":[{\"a\":1},{\"a\":2}]}", NULL);
    check(schema, "{\"f\":[{\"a\":1},{\"a\":\"x\"}]}",
          "{\"f\":[{\"1\":[{\"a\":[\"must be of integer type\"]}]}]}");
    /* Items keyed by index in numeric order; own messages come first. */
    const char *ints =
        "{\"f\":{\"type\":\"list\",\"minlength\":12,\"schema\":{\"type\":\"integer\"}}}";
    check(ints, "{\"f\":[0,1,2,3,4,5,6,7,8,\"x\",\"y\"]}",
          "{\"f\":[\"min length is 12\",{\"9\":[\"must be of integer type\"],"
          "\"10\":[\"must be of integer type\"]}]}");
}

static void test_schema_without_type(void **state)
{
    /* Without a type, `schema` applies as field rules to a dict and as item
     * rules to a list, whichever reading the rules allow. */
    check("{\"d\":{\"schema\":{\"x\":{\"type\":\"integer\"}}}}", "{\"d\":{\"x\":\"1\"}}",
          "{\"d\":[{\"x\":[\"must be of integer type\"]}]}");
    check("{\"l\":{\"schema\":{\"type\":\"integer\"}}}", "{\"l\":[1,\"2\"]}",
          "{\"l\":[{\"1\":[\"must be of integer type\"]}]}");
}

static void test_allow_unknown(void **state)
{
    const char *nested = "{\"m\":{\"type\":\"dict\",\"schema\":{\"a\":{}}}}";
    check(nested, "{\"x\":1,\"m\":{\"a\":1,\"b\":2}}", NULL);
    /* A strict top level; nested dicts inherit it unless they set their own. */
    const char *strict =
        "{\"$allow_unknown\":false,\"m\":{\"type\":\"dict\",\"schema\":{\"a\":{}}},"
        "\"o\":{\"type\":\"dict\",\"allow_unknown\":true,\"schema\":{}}}";
    check(strict, "{\"m\":{\"a\":1},\"o\":{\"z\":1}}", NULL);
    check(strict, "{\"x\":1,\"m\":{\"a\":1,\"b\":2},\"o\":{\"z\":1}}",
          "{\"m\":[{\"b\":[\"unknown field\"]}],\"x\":[\"unknown field\"]}");
    /* And a lenient top level with one strict nested dict. */
    check("{\"m\":{\"type\":\"dict\",\"allow_unknown\":false,\"schema\":{\"a\":{}}}}",
          "{\"x\":1,\"m\":{\"b\":2}}", "{\"m\":[{\"b\":[\"unknown field\"]}]}");
    /* List items inherit from the level holding the list. */
    check("{\"$allow_unknown\":false,\"l\":{\"type\":\"list\",\"schema\":{\"type\":\"dict\","
          "\"schema\":{\"a\":{}}}}}",
          "{\"l\":[{\"a\":1},{\"b\":1}]}", "{\"l\":[{\"1\":[{\"b\":[\"unknown field\"]}]}]}");
}

static void test_messages_order(void **state)
{
    /* A field's messages in rule-name order, whatever the schema's order. */
    check("{\"f\":{\"type\":\"string\",\"regex\":\"[a-z]+\",\"minlength\":5,\"allowed\":[\"q\"]}}",
          "{\"f\":\"AB\"}",
          "{\"f\":[\"unallowed value AB\",\"min length is 5\","
          "\"value does not match regex '[a-z]+'\"]}");
    /* Except `between`: Cerberus's custom rule reports without a rule name,
     * which sorts first. */
    check("{\"f\":{\"allowed\":[1,9],\"between\":[0,5],\"max\":8}}", "{\"f\":9.5}",
          "{\"f\":[\"must be between 0 and 5\",\"unallowed value 9.5\",\"max value is 8\"]}");
    /* Fields sorted by name, and every failing field reported. */
    check("{\"b\":{\"type\":\"integer\"},\"a\":{\"type\":\"integer\"},\"C\":{\"required\":true}}",
          "{\"b\":\"1\",\"a\":\"2\"}",
          "{\"C\":[\"required field\"],\"a\":[\"must be of integer type\"],"
          "\"b\":[\"must be of integer type\"]}");
}

static void test_many_required_fields(void **state)
{
    /* More required fields than the validator tracks with its bitmap. */
    enum { N = 1500 };
    char *schema = malloc(N * 40 + 16), *doc = malloc(N * 16 + 16);
    assert_non_null(schema);
    assert_non_null(doc);
    size_t ns = 0, nd = 0;
    schema[ns++] = '{';
    doc[nd++] = '{';
    for (int i = 0; i < N; i++) {
        ns += (size_t)sprintf(schema + ns, "%s\"f%d\":{\"required\":true}", i ? "," : "", i);
        if (i != 7 && i != N - 2)
            nd += (size_t)sprintf(doc + nd, "%s\"f%d\":%d", nd > 1 ? "," : "", i, i);
    }
    strcpy(schema + ns, "}");
    strcpy(doc + nd, "}");
    char expected[128];
    snprintf(expected, sizeof(expected),
             "{\"f1498\":[\"required field\"],\"f7\":[\"required field\"]}");
    check(schema, doc, expected);
    free(schema);
    free(doc);
}

static void test_duplicate_document_keys(void **state)
{
    check("{\"a\":{\"type\":\"integer\"}}", "{\"a\":\"x\",\"a\":\"y\"}",
          "{\"a\":[\"must be of integer type\"]}");
}

static void test_not_an_object(void **state)
{
    eds_schema *s = load(energy);
    cJSON *d = cJSON_Parse("[1]");
    cJSON *errors = (cJSON *)1;
    assert_int_equal(eds_schema_validate(s, d, &errors), EDS_ERR_INVAL);
    assert_null(errors);
    cJSON_Delete(d);
    eds_schema_destroy(s);
}

static void test_python_number_text(void **state)
{
    check("{\"a\":{\"max\":1e16},\"b\":{\"max\":2.50},\"c\":{\"max\":-0},\"d\":{\"max\":1E2}}",
          "{\"a\":1e17,\"b\":3,\"c\":1,\"d\":101}",
          "{\"a\":[\"max value is 1e+16\"],\"b\":[\"max value is 2.5\"],"
          "\"c\":[\"max value is 0\"],\"d\":[\"max value is 100.0\"]}");
}

static void test_load_errors(void **state)
{
    check_load_error("{\"meter\":{\"type\":\"dict\",\"schema\":{\"phase\":{\"min\":\"x\"}}}}",
                     EDS_ERR_SCHEMA,
                     "schemas/x.json: field 'meter.phase': rule 'min': expected a number", NULL);
    check_load_error("{\"a\":{\"typo\":1}}", EDS_ERR_SCHEMA,
                     "schemas/x.json: field 'a': rule 'typo': unknown rule", NULL);
    check_load_error("{\"a\":{\"regex\":\"(ab\"}}", EDS_ERR_SCHEMA,
                     "schemas/x.json: field 'a': rule 'regex': invalid regular expression", NULL);
    check_load_error("{\"a\":{\"type\":\"str\"}}", EDS_ERR_SCHEMA, "field 'a': rule 'type'",
                     "unknown type 'str'", NULL);
    check_load_error("{\"a\":{\"required\":\"yes\"}}", EDS_ERR_SCHEMA,
                     "field 'a': rule 'required': expected true or false", NULL);
    check_load_error("{\"a\":{\"between\":[1]}}", EDS_ERR_SCHEMA, "rule 'between'", NULL);
    check_load_error("{\"a\":{\"between\":[2,1]}}", EDS_ERR_SCHEMA, "rule 'between'", NULL);
    check_load_error("{\"a\":{\"minlength\":1.5}}", EDS_ERR_SCHEMA,
                     "rule 'minlength': expected a non-negative integer", NULL);
    check_load_error("{\"a\":{\"allowed\":\"x\"}}", EDS_ERR_SCHEMA, "rule 'allowed'", NULL);
    check_load_error("{\"a\":{\"format\":\"date\"}}", EDS_ERR_SCHEMA, "rule 'format'", NULL);
    check_load_error("{\"a\":{\"type\":\"string\",\"schema\":{}}}", EDS_ERR_SCHEMA, "rule 'schema'",
                     NULL);
    check_load_error("{\"l\":{\"type\":\"list\",\"schema\":{\"typ\":\"integer\"}}}", EDS_ERR_SCHEMA,
                     "field 'l[]': rule 'typ': unknown rule", NULL);
    check_load_error("{\"a\":5}", EDS_ERR_SCHEMA, "field 'a': rules must be a JSON object", NULL);
    check_load_error("{\"a\":{}, \"a\":{}}", EDS_ERR_SCHEMA, "field 'a'", "twice", NULL);
    check_load_error("{\"a\":{\"min\":1,\"min\":2}}", EDS_ERR_SCHEMA, "rule 'min'", "twice", NULL);
    check_load_error("[1]", EDS_ERR_SCHEMA, "schemas/x.json: a schema must be a JSON object", NULL);
    check_load_error("{\"a\":{}", EDS_ERR_SCHEMA, "schemas/x.json: not valid JSON", NULL);
    check_load_error("{} x", EDS_ERR_SCHEMA, "schemas/x.json: text after the JSON value", NULL);
    check_load_error("", EDS_ERR_SCHEMA, "schemas/x.json: not valid JSON", NULL);
    check_load_error("{\"$strict\":true}", EDS_ERR_SCHEMA, "unknown schema option '$strict'", NULL);
    check_load_error("{\"$allow_unknown\":1}", EDS_ERR_SCHEMA, "'$allow_unknown'", NULL);
}

static void test_load_depth_limit(void **state)
{
    /* 64 nested levels load; 65 do not. */
    for (int levels = EDS_SCHEMA_MAX_DEPTH; levels <= EDS_SCHEMA_MAX_DEPTH + 1; levels++) {
        char text[8192] = "";
        size_t n = 0;
        for (int i = 1; i < levels; i++)
            n += (size_t)snprintf(text + n, sizeof(text) - n,
                                  "{\"d\":{\"type\":\"dict\",\"schema\":");
        n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"leaf\":{\"type\":\"integer\"}}");
        for (int i = 1; i < levels; i++)
            n += (size_t)snprintf(text + n, sizeof(text) - n, "}}");
        assert_true(n < sizeof(text));
        eds_schema *s = NULL;
        eds_error err = {0};
        int rc = eds_schema_load_json(text, n, "deep.json", &s, &err);
        if (levels <= EDS_SCHEMA_MAX_DEPTH) {
            assert_int_equal(rc, EDS_OK);
            eds_schema_destroy(s);
        } else {
            assert_int_equal(rc, EDS_ERR_SCHEMA);
            assert_non_null(strstr(err.msg, "nested deeper than 64"));
        }
    }
}

static void test_load_file_errors(void **state)
{
    eds_schema *s = (eds_schema *)1;
    eds_error err = {0};
    assert_int_equal(eds_schema_load_file("/nonexistent/schema.json", &s, &err), EDS_ERR_IO);
    assert_null(s);
    assert_non_null(strstr(err.msg, "/nonexistent/schema.json: cannot open"));

    char path[] = "/tmp/test_schema_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    fputs("{\n  \"a\": {\"type\": \"string\"},\n  \"b\": {\"type\": \"integer\",}\n}\n", fp);
    fclose(fp);
    assert_int_equal(eds_schema_load_file(path, &s, &err), EDS_ERR_SCHEMA);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "not valid JSON at line 3"));
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_energy_protocol_example),
        cmocka_unit_test(test_energy_file),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_type_list),
        cmocka_unit_test(test_type_error_stops_other_rules),
        cmocka_unit_test(test_required),
        cmocka_unit_test(test_nullable),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_min_max_between),
        cmocka_unit_test(test_length),
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_forbidden),
        cmocka_unit_test(test_regex_whole_string),
        cmocka_unit_test(test_format_date_time),
        cmocka_unit_test(test_nested_dict),
        cmocka_unit_test(test_list_items),
        cmocka_unit_test(test_schema_without_type),
        cmocka_unit_test(test_allow_unknown),
        cmocka_unit_test(test_messages_order),
        cmocka_unit_test(test_many_required_fields),
        cmocka_unit_test(test_duplicate_document_keys),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_python_number_text),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_depth_limit),
        cmocka_unit_test(test_load_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
