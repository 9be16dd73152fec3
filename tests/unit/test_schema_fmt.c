/* Unit tests for the validator's helpers: Python's float and string
 * repr (Cerberus prints rule values with them) and the RFC 3339 check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eds_schema_util.h"

static void test_float_repr(void **state)
{
    struct {
        double v;
        const char *text;
    } cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {1.0, "1.0"},
        {0.1, "0.1"},
        {81.4, "81.4"},
        {-2.5, "-2.5"},
        {1e15, "1000000000000000.0"},
        {1e16, "1e+16"},
        {1.5e300, "1.5e+300"},
        {0.0001, "0.0001"},
        {0.00001, "1e-05"},
        {2.5e-5, "2.5e-05"},
        {1.0 / 3.0, "0.3333333333333333"},
        {123456789.123, "123456789.123"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {12345678901234567890.0, "1.2345678901234567e+19"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[64];
        eds_schema__float_repr(cases[i].v, buf, sizeof(buf));
        assert_string_equal(buf, cases[i].text);
    }
}

static void test_number_token_repr(void **state)
{
    struct {
        const char *tok;
        const char *text;
    } cases[] = {
        {"0", "0"},        {"-0", "0"},
        {"0.0", "0.0"},    {"1", "1"},
        {"1.0", "1.0"},    {"1e2", "100.0"},
        {"-3.50", "-3.5"}, {"123456789012345678901", "123456789012345678901"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        eds_schema_buf b;
        eds_schema__buf_init(&b, 256);
        eds_schema__number_token_repr(cases[i].tok, strlen(cases[i].tok),
                                      strtod(cases[i].tok, NULL), &b);
        assert_string_equal(eds_schema__buf_str(&b), cases[i].text);
        eds_schema__buf_free(&b);
    }
}

static void test_py_repr(void **state)
{
    struct {
        const char *json;
        const char *repr;
        const char *str;
    } cases[] = {
        {"\"ab\"", "'ab'", "ab"},
        {"\"it's\"", "\"it's\"", "it's"},
        {"\"a'b\\\"c\"", "'a\\'b\"c'", "a'b\"c"},
        {"\"tab\\there\\n\"", "'tab\\there\\n'", "tab\there\n"},
        {"\"back\\\\slash\"", "'back\\\\slash'", "back\\slash"},
        {"\"\\u0001\"", "'\\x01'", "\x01"},
        {"\"h\\u00e9\"", "'h\xc3\xa9'", "h\xc3\xa9"},
        {"true", "True", "True"},
        {"false", "False", "False"},
        {"null", "None", "None"},
        {"3", "3", "3"},
        {"2.5", "2.5", "2.5"},
        {"[1, \"a\", [true]]", "[1, 'a', [True]]", "[1, 'a', [True]]"},
        {"{\"k\": 1}", "{'k': 1}", "{'k': 1}"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *v = cJSON_Parse(cases[i].json);
        assert_non_null(v);
        eds_schema_buf b;
        eds_schema__buf_init(&b, 256);
        eds_schema__py_repr(v, &b);
        assert_string_equal(eds_schema__buf_str(&b), cases[i].repr);
        eds_schema__buf_free(&b);
        eds_schema__buf_init(&b, 256);
        eds_schema__py_str(v, &b);
        assert_string_equal(eds_schema__buf_str(&b), cases[i].str);
        eds_schema__buf_free(&b);
        cJSON_Delete(v);
    }
}

static void test_buf_limit(void **state)
{
    eds_schema_buf b;
    eds_schema__buf_init(&b, 8);
    eds_schema__buf_adds(&b, "0123");
    eds_schema__buf_adds(&b, "4567");
    assert_false(b.cut);
    assert_string_equal(eds_schema__buf_str(&b), "01234567");
    eds_schema__buf_adds(&b, "8");
    assert_true(b.cut);
    assert_string_equal(eds_schema__buf_str(&b), "01234567...");
    eds_schema__buf_free(&b);

    /* Cut before a multi-byte character, not inside it: the cut would
     * fall after the first byte of "\xc3\xa9" (é). */
    eds_schema__buf_init(&b, 8);
    eds_schema__buf_adds(&b, "abcd\xc3\xa9xyz");
    assert_true(b.cut);
    assert_string_equal(eds_schema__buf_str(&b), "abcd...");
    eds_schema__buf_adds(&b, "more");
    assert_string_equal(eds_schema__buf_str(&b), "abcd...");
    eds_schema__buf_free(&b);
}

static void test_rfc3339(void **state)
{
    const char *good[] = {
        "2026-11-24T10:00:00Z",      "2026-11-24t10:00:00z",
        "2026-11-24T10:00:00.5Z",    "2026-11-24T10:00:00.123456789+05:30",
        "2000-02-29T00:00:00-00:00", "1999-12-31T23:59:60Z",
        "2026-01-01T00:59:60+01:00", "0001-01-01T00:00:00Z",
    };
    const char *bad[] = {
        "",
        "2026-11-24",
        "2026-11-24T10:00:00",
        "2026-11-24 10:00:00Z",
        "2026-11-24T10:00Z",
        "2026-11-24T10:00:00.Z",
        "2026-11-24T10:00:00,5Z",
        "2026-11-24T10:00:00+01",
        "2026-11-24T10:00:00+0100",
        "2026-11-24T10:00:00+24:00",
        "2026-11-24T10:00:00Zjunk",
        "2026-00-24T10:00:00Z",
        "2026-13-24T10:00:00Z",
        "2026-04-31T10:00:00Z",
        "1900-02-29T10:00:00Z",
        "2026-11-24T25:00:00Z",
        "2026-11-24T10:60:00Z",
        "2026-11-24T10:00:61Z",
        "2026-11-24T23:59:60+01:00",
        "2026-1-24T10:00:00Z",
        "+2026-11-24T10:00:00Z",
        "2026-11-24T10:00:00 Z",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!eds_schema__rfc3339_valid(good[i], strlen(good[i])))
            print_error("refused %s\n", good[i]);
        assert_true(eds_schema__rfc3339_valid(good[i], strlen(good[i])));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (eds_schema__rfc3339_valid(bad[i], strlen(bad[i])))
            print_error("accepted %s\n", bad[i]);
        assert_false(eds_schema__rfc3339_valid(bad[i], strlen(bad[i])));
    }
    /* The length bounds the read: a valid prefix of a longer buffer is judged alone. */
    assert_false(eds_schema__rfc3339_valid("2026-11-24T10:00:00Z", 19));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_repr), cmocka_unit_test(test_number_token_repr),
        cmocka_unit_test(test_py_repr),    cmocka_unit_test(test_buf_limit),
        cmocka_unit_test(test_rfc3339),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
