/* Unit tests for the strict JSON parser (eds_json): what RFC 8259 refuses and
 * cJSON accepted, valid edge cases (exponents, -0, big integers, escapes,
 * surrogate pairs), numbers against strtod, the data span, minify. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_json.h"
#include "eds_proto.h"

static int parse(const char *text, eds_json_doc *doc, eds_error *err)
{
    eds_error_clear(err);
    return eds_json_parse(text, strlen(text), "data", doc, err);
}

static void test_lenient_spellings_refused(void **state)
{
    (void)state;
    const char *bad[] = {
        "01",
        "-01",
        "00",
        "-.5",
        ".5",
        "1.",
        "1.e5",
        "+1",
        "1e",
        "1e+",
        "-",
        "--1",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1 2",
        "[1,]",
        "[,1]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\"}",
        "{\"a\" 1}",
        "{a:1}",
        "{'a':1}",
        "['a']",
        "\"a\tb\"",
        "\"a\nb\"",
        "\"a\x01\"",
        "\"a\x1f\"",
        "\"\\x41\"",
        "\"\\U0041\"",
        "\"\\u12\"",
        "\"\\u12G4\"",
        "\"abc",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "\xef\xbb\xbf{}",
        "\f{}",
        "{}\v",
        "\xa0{}",
        "[1]\xc2\xa0",
        "tru",
        "nul",
        "falsey",
        "[true false]",
        "",
        "   ",
        "{\"a\":1}}",
        "[[]",
        "\"\\\"",
        "1e999",
        "-1e999",
        "\"a\\u0000b\"",
        "{\"a\":1,\"a\":2}",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        eds_json_doc doc;
        eds_error err;
        int rc = parse(bad[i], &doc, &err);
        if (rc != EDS_ERR_PARSE)
            fail_msg("expected EDS_ERR_PARSE for [%s], got %d", bad[i], rc);
        assert_null(doc.root);
        assert_true(strlen(err.msg) > 0);
        assert_false(eds_json_is_value(bad[i], strlen(bad[i])));
    }
    /* A raw NUL inside the length. */
    eds_json_doc doc;
    eds_error err;
    assert_int_equal(eds_json_parse("\"a\0b\"", 5, NULL, &doc, &err), EDS_ERR_PARSE);
    assert_non_null(strstr(err.msg, "NUL"));
}

static void test_messages(void **state)
{
    (void)state;
    eds_json_doc doc;
    eds_error err;
    assert_int_equal(parse("{\"a\":\"x\\u0000\"}", &doc, &err), EDS_ERR_PARSE);
    assert_string_equal(err.msg, "\\u0000 is not allowed in strings");
    assert_int_equal(parse("{\"a\":1,\"b\":{\"c\":1,\"c\":2}}", &doc, &err), EDS_ERR_PARSE);
    assert_string_equal(err.msg, "duplicate key \"c\"");
    assert_int_equal(parse("{\"a\":1e400}", &doc, &err), EDS_ERR_PARSE);
    assert_string_equal(err.msg, "number out of range");
    assert_int_equal(parse("{\"a\":\"\xff\"}", &doc, &err), EDS_ERR_PARSE);
    assert_non_null(strstr(err.msg, "UTF-8"));
    assert_int_equal(parse("{\"a\":01}", &doc, &err), EDS_ERR_PARSE);
    assert_string_equal(err.msg, "not valid JSON at byte 7");
    /* Keys equal once unescaped are duplicates. */
    assert_int_equal(parse("{\"s\\u0065q\":1,\"seq\":2}", &doc, &err), EDS_ERR_PARSE);
}

static double num(const char *text)
{
    eds_json_doc doc;
    eds_error err;
    if (parse(text, &doc, &err) != EDS_OK)
        fail_msg("%s: %s", text, err.msg);
    assert_true(cJSON_IsNumber(doc.root));
    double d = doc.root->valuedouble;
    eds_json_doc_free(&doc);
    return d;
}

static void test_numbers(void **state)
{
    (void)state;
    const char *ok[] = {
        "0",
        "-0",
        "1",
        "-1",
        "0.5",
        "-0.5",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "0e0",
        "-0e-0",
        "0.0",
        "123456789012345",
        "9007199254740991",
        "9007199254740992",
        "9007199254740993",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "0.1",
        "0.2",
        "0.3",
        "3.14159",
        "2.718281828459045",
        "1.7976931348623157e308",
        "2.2250738585072014e-308",
        "4.9e-324",
        "1e-400",
        "1e22",
        "1e23",
        "9.999999999999999e22",
        "0.000000000000000000000000000001",
        "100000000000000000000000",
        "123.456e-10",
        "229.50",
        "12.500",
        "123456.789",
        "0.80",
        "40.00",
        "1e-22",
        "8.98846567431158e307",
        "0.1e1",
        "10e-1",
        "1234567890123456789",
        "12345678901234567890e-5",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        double want = strtod(ok[i], NULL), got = num(ok[i]);
        if (memcmp(&want, &got, sizeof(got)) != 0)
            fail_msg("%s: got %.17g, strtod %.17g", ok[i], got, want);
    }
    assert_true(signbit(num("-0")));
    assert_true(signbit(num("-0.0")));
    assert_false(signbit(num("0")));
    /* Pseudo-random decimals: the fast path and strtod agree bit for bit. */
    unsigned long long x = 88172645463325252ULL;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char buf[64];
        int digits = 1 + (int)(x % 17), e = (int)((x >> 8) % 61) - 30;
        unsigned long long m = (x >> 12) % 100000000000000000ULL;
        snprintf(buf, sizeof(buf), "%s%llu.%0*llue%d", (x & 1) ? "-" : "", m % 1000, digits,
                 m % 10000000000000000ULL % (unsigned long long)pow(10, digits), e);
        double want = strtod(buf, NULL), got = num(buf);
        if (memcmp(&want, &got, sizeof(got)) != 0)
            fail_msg("%s: got %.17g, strtod %.17g", buf, got, want);
    }
    /* A fraction with more leading zeros than the exponent counter follows, scaled
     * back by a large exponent: 0.<100001 zeros>1e100000 is 0.01, not 1. */
    size_t zeros = 100001, n = 0;
    char *big = malloc(zeros + 32);
    assert_non_null(big);
    n += (size_t)sprintf(big, "0.");
    memset(big + n, '0', zeros);
    n += zeros;
    n += (size_t)sprintf(big + n, "1e100000");
    double small = num(big);
    free(big);
    assert_true(small == 0.01);
    /* valueint saturates as cJSON's does. */
    eds_json_doc doc;
    eds_error err;
    assert_int_equal(parse("[3000000000,-3000000000,7.9]", &doc, &err), EDS_OK);
    assert_int_equal(doc.root->child->valueint, 2147483647);
    assert_int_equal(doc.root->child->next->valueint, -2147483647 - 1);
    assert_int_equal(doc.root->child->next->next->valueint, 7);
    eds_json_doc_free(&doc);
}

static void test_strings(void **state)
{
    (void)state;
    eds_json_doc doc;
    eds_error err;
    assert_int_equal(parse("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\",\"\\u00e9\\u20AC\",\"\\ud83d\\ude00\","
                           "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"\\u0001\",\"\"]",
                           &doc, &err),
                     EDS_OK);
    const cJSON *c = doc.root->child;
    assert_string_equal(c->valuestring, "\"\\/\b\f\n\r\t");
    c = c->next;
    assert_string_equal(c->valuestring, "\xc3\xa9\xe2\x82\xac");
    c = c->next;
    assert_string_equal(c->valuestring, "\xf0\x9f\x98\x80");
    c = c->next;
    assert_string_equal(c->valuestring, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    c = c->next;
    assert_string_equal(c->valuestring, "\x01");
    c = c->next;
    assert_string_equal(c->valuestring, "");
    assert_null(c->next);
    assert_ptr_equal(doc.root->child->prev, c); /* cJSON's layout: first->prev is the last */
    eds_json_doc_free(&doc);
}

static void test_structure_and_span(void **state)
{
    (void)state;
    eds_json_doc doc;
    eds_error err;
    const char *text = " {\"type\" : \"data\", \"data\" : { \"a\" : [1, 2.50, true, false, null],"
                       " \"b\":{}} , \"z\":[]}\r\n";
    assert_int_equal(parse(text, &doc, &err), EDS_OK);
    assert_true(cJSON_IsObject(doc.root));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc.root, "data");
    assert_true(cJSON_IsObject(data));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, "a")), 5);
    assert_non_null(doc.span);
    assert_true(doc.span_ws);
    assert_int_equal(doc.span_len, strlen("{ \"a\" : [1, 2.50, true, false, null], \"b\":{}}"));
    assert_memory_equal(doc.span, "{ \"a\"", 5);
    char out[128];
    size_t n = eds_json_minify(doc.span, doc.span_len, out);
    assert_int_equal(n, strlen("{\"a\":[1,2.50,true,false,null],\"b\":{}}"));
    assert_memory_equal(out, "{\"a\":[1,2.50,true,false,null],\"b\":{}}", n);
    /* cJSON reads the arena nodes like its own. */
    char *printed = cJSON_PrintUnformatted(doc.root);
    assert_string_equal(printed,
                        "{\"type\":\"data\",\"data\":{\"a\":[1,2.5,true,false,null],\"b\":{}},"
                        "\"z\":[]}");
    cJSON_free(printed);
    eds_json_doc_free(&doc);
    eds_json_doc_free(&doc); /* a zeroed doc is fine */
    /* A compact span; no span when there is no such member or the root is no object. */
    assert_int_equal(parse("{\"data\":{\"a\":\"b c\"}}", &doc, &err), EDS_OK);
    assert_false(doc.span_ws);
    assert_int_equal(doc.span_len, strlen("{\"a\":\"b c\"}"));
    eds_json_doc_free(&doc);
    assert_int_equal(parse("{\"x\":{\"data\":1}}", &doc, &err), EDS_OK);
    assert_null(doc.span);
    eds_json_doc_free(&doc);
    assert_int_equal(parse("[{\"data\":1}]", &doc, &err), EDS_OK);
    assert_null(doc.span);
    eds_json_doc_free(&doc);
    /* Scalars at the top level are values too. */
    assert_true(eds_json_is_value(" 42 ", 4));
    assert_true(eds_json_is_value("\"s\"", 3));
    assert_true(eds_json_is_value("null", 4));
}

static void test_depth(void **state)
{
    (void)state;
    static char buf[2 * 1002 + 1];
    eds_json_doc doc;
    eds_error err;
    for (int depth = 1000; depth <= 1001; depth++) {
        memset(buf, '[', (size_t)depth);
        memset(buf + depth, ']', (size_t)depth);
        int rc = eds_json_parse(buf, 2 * (size_t)depth, NULL, &doc, &err);
        assert_int_equal(rc, depth <= EDS_JSON_MAX_DEPTH ? EDS_OK : EDS_ERR_PARSE);
        eds_json_doc_free(&doc);
    }
}

static void test_many_nodes(void **state)
{
    (void)state;
    /* Arena growth: 100,000 members across many blocks. */
    size_t cap = 100000 * 16 + 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    buf[n++] = '{';
    for (int i = 0; i < 100000; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"k%d\":%d", i ? "," : "", i, i);
    buf[n++] = '}';
    eds_json_doc doc;
    eds_error err;
    assert_int_equal(eds_json_parse(buf, n, NULL, &doc, &err), EDS_OK);
    assert_int_equal(cJSON_GetArraySize(doc.root), 100000);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(doc.root, "k99999")->valueint, 99999);
    eds_json_doc_free(&doc);
    free(buf);
}

static void test_proto_lenient_is_bad_json(void **state)
{
    (void)state;
    /* The examples: acked and published as invalid JSON before. */
    const char *bad[] = {
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":01}}",
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":-.5}}",
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":1.}}",
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":+1}}",
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":\"a\tb\"}}",
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":1}\f}",
        "{\"type\":\"data\",\"seq\":01,\"data\":{}}",
        "{\"type\":\"ping\"}\v",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        eds_msg m;
        eds_error err;
        eds_error_clear(&err);
        int rc = eds_msg_parse(bad[i], strlen(bad[i]), EDS_TO_GATEWAY, &m, &err);
        if (rc != EDS_ERR_PARSE)
            fail_msg("expected bad_json for %s, got %d", bad[i], rc);
    }
    /* The data span of a message, whitespace and all. */
    const char *line =
        "{\"type\":\"data\",\"seq\":7,\"data\": {\"v\": 51.0, \"n\":12345678901234567890}"
        " }";
    eds_msg m;
    eds_error err;
    assert_int_equal(eds_msg_parse(line, strlen(line), EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_int_equal(m.data_len, strlen("{\"v\": 51.0, \"n\":12345678901234567890}"));
    assert_memory_equal(m.data_json, "{\"v\": 51.0, \"n\":12345678901234567890}", m.data_len);
    assert_true(m.data_ws);
    eds_msg_free(&m);
    assert_int_equal(eds_msg_parse("{\"type\":\"ping\"}", 15, EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_null(m.data_json);
    assert_int_equal(m.data_len, 0);
    eds_msg_free(&m);
}

static void expect_text(const char *in, size_t n, const char *want)
{
    char buf[128];
    size_t len = 3;
    memcpy(buf, "x: ", 3);
    assert_true(eds_json_append_text(buf, sizeof(buf), &len, in, n));
    assert_int_equal(len, 3 + strlen(want));
    assert_memory_equal(buf + 3, want, strlen(want));
    /* What it writes is valid JSON that reads back as the text (UTF-8 input). */
    eds_json_doc doc;
    eds_error err;
    assert_int_equal(eds_json_parse(buf + 3, len - 3, NULL, &doc, &err), EDS_OK);
    assert_true(cJSON_IsString(doc.root));
    eds_json_doc_free(&doc);
}

static void test_append_text(void **state)
{
    (void)state;
    expect_text("plain", 5, "\"plain\"");
    expect_text("q\"b\\n\nr\rt\t\x01\x1f", 12, "\"q\\\"b\\\\n\\nr\\rt\\t\\u0001\\u001f\"");
    expect_text("caf\xc3\xa9", 5, "\"caf\xc3\xa9\""); /* valid UTF-8 stays */
    expect_text("caf\xe9", 4, "\"caf\\u00e9\"");      /* Latin-1 byte escaped */
    expect_text("\xc3", 1, "\"\\u00c3\"");            /* a character cut short */
    /* Exactly the room it needs, and one byte less. */
    char buf[8];
    size_t len = 0;
    assert_true(eds_json_append_text(buf, 8, &len, "a\"b\n", 4)); /* "a\"b\n" */
    assert_int_equal(len, 8);
    len = 0;
    assert_false(eds_json_append_text(buf, 7, &len, "a\"b\n", 4));
    assert_int_equal(len, 0);
    len = 0;
    assert_false(eds_json_append_text(buf, 1, &len, "", 0));
    assert_true(eds_json_append_text(buf, 2, &len, "", 0));
    assert_int_equal(len, 2);
}

/* The n-th member's value text of a minified object, every kind of value. */
static void test_member_text(void **state)
{
    (void)state;
    const char *j = "{\"a\":77.0,\"b\":\"x\\\"},\",\"c\":{\"d\":[1,{\"e\":\"]\"}]},\"id\":-1e+2,"
                    "\"f\":[],\"g\":true}";
    const char *want[] = {"77.0",  "\"x\\\"},\"", "{\"d\":[1,{\"e\":\"]\"}]}",
                          "-1e+2", "[]",          "true"};
    const char *v;
    size_t vlen;
    for (size_t n = 0; n < 6; n++) {
        assert_true(eds_json_member_text(j, strlen(j), n, &v, &vlen));
        assert_int_equal(vlen, strlen(want[n]));
        assert_memory_equal(v, want[n], vlen);
    }
    assert_false(eds_json_member_text(j, strlen(j), 6, &v, &vlen));
    assert_false(eds_json_member_text("{}", 2, 0, &v, &vlen));
    assert_false(eds_json_member_text("[1]", 3, 0, &v, &vlen));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lenient_spellings_refused),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_structure_and_span),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_many_nodes),
        cmocka_unit_test(test_proto_lenient_is_bad_json),
        cmocka_unit_test(test_append_text),
        cmocka_unit_test(test_member_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
