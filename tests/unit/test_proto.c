/* Unit tests for protocol v1 messages: parsing both directions, the strict
 * JSON checks (UTF-8, NUL, duplicate keys, non-finite numbers), device ids
 * and the exact bytes of every formatted line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "eds_proto.h"

static int parse(const char *line, eds_dir dir, eds_msg *m, eds_error *err)
{
    eds_error_clear(err);
    return eds_msg_parse(line, strlen(line), dir, m, err);
}

static void test_hello(void **state)
{
    eds_msg m;
    eds_error err;
    assert_int_equal(parse("{\"type\":\"hello\",\"device\":\"myrio-01\",\"password\":\"s3cret\","
                           "\"stream\":\"7f3a\",\"proto\":1}",
                           EDS_TO_GATEWAY, &m, &err),
                     EDS_OK);
    assert_int_equal(m.type, EDS_MSG_HELLO);
    assert_string_equal(m.device, "myrio-01");
    assert_string_equal(m.password, "s3cret");
    assert_string_equal(m.stream, "7f3a");
    assert_int_equal(m.proto, 1);
    eds_msg_free(&m);
    /* stream defaults to "0", password is optional */
    assert_int_equal(
        parse("{\"type\":\"hello\",\"device\":\"d\",\"proto\":1}", EDS_TO_GATEWAY, &m, &err),
        EDS_OK);
    assert_string_equal(m.stream, "0");
    assert_null(m.password);
    eds_msg_free(&m);
    /* wrong field types are bad_message */
    assert_int_equal(
        parse("{\"type\":\"hello\",\"device\":7,\"proto\":1}", EDS_TO_GATEWAY, &m, &err),
        EDS_ERR_PROTO);
    assert_int_equal(
        parse("{\"type\":\"hello\",\"device\":\"d\",\"proto\":\"1\"}", EDS_TO_GATEWAY, &m, &err),
        EDS_ERR_PROTO);
    assert_int_equal(parse("{\"type\":\"hello\",\"device\":\"d\",\"password\":1,\"proto\":1}",
                           EDS_TO_GATEWAY, &m, &err),
                     EDS_ERR_PROTO);
}

static void test_data(void **state)
{
    eds_msg m;
    eds_error err;
    assert_int_equal(
        parse("{\"type\":\"data\",\"seq\":42,\"data\":{\"a\":1}}", EDS_TO_GATEWAY, &m, &err),
        EDS_OK);
    assert_int_equal(m.type, EDS_MSG_DATA);
    assert_int_equal(m.seq, 42);
    assert_true(cJSON_IsObject(m.data));
    eds_msg_free(&m);
    assert_int_equal(
        parse("{\"type\":\"data\",\"seq\":9007199254740991,\"data\":{}}", EDS_TO_GATEWAY, &m, &err),
        EDS_OK);
    assert_int_equal(m.seq, EDS_SEQ_MAX);
    eds_msg_free(&m);
    const char *bad[] = {
        "{\"type\":\"data\",\"data\":{}}",                          /* no seq */
        "{\"type\":\"data\",\"seq\":0,\"data\":{}}",                /* below 1 */
        "{\"type\":\"data\",\"seq\":1.5,\"data\":{}}",              /* not integral */
        "{\"type\":\"data\",\"seq\":9007199254740992,\"data\":{}}", /* above 2^53-1 */
        "{\"type\":\"data\",\"seq\":\"1\",\"data\":{}}",            /* string */
        "{\"type\":\"data\",\"seq\":1,\"data\":[1]}",               /* data not an object */
        "{\"type\":\"data\",\"seq\":1}",                            /* no data */
        "{\"type\":\"welcome\",\"proto\":1,\"last_seq\":0}",        /* wrong direction */
        "{\"type\":\"bogus\"}",
        "{\"seq\":1,\"data\":{}}", /* no type */
        "{\"type\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], EDS_TO_GATEWAY, &m, &err);
        if (rc != EDS_ERR_PROTO)
            fail_msg("expected bad_message for %s, got %d", bad[i], rc);
        assert_true(strlen(err.msg) > 0);
    }
}

static void test_bad_json(void **state)
{
    eds_msg m;
    eds_error err;
    const char *bad[] = {
        "not json",
        "[1,2]",
        "\"str\"",
        "{\"type\":\"ping\"} trailing",
        "{\"type\":\"ping\"",
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"a\":1,\"a\":2}}",         /* duplicate key */
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"x\":{\"b\":1,\"b\":1}}}", /* nested */
        "{\"type\":\"data\",\"seq\":1,\"data\":{\"a\":1e999}}",             /* infinite */
        "{\"type\":\"hello\",\"device\":\"ab\\u0000cd\",\"proto\":1}",      /* NUL escape */
        "{\"type\":\"ping\",\"x\":\"\xff\"}",                               /* invalid UTF-8 */
        "{\"type\":\"ping\",\"x\":\"\xc0\xaf\"}",                           /* overlong */
        "{\"type\":\"ping\",\"x\":\"\xed\xa0\x80\"}",                       /* surrogate */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], EDS_TO_GATEWAY, &m, &err);
        if (rc != EDS_ERR_PARSE)
            fail_msg("expected bad_json for %s, got %d", bad[i], rc);
    }
    /* A raw NUL inside the length */
    const char with_nul[] = "{\"type\":\"ping\"}\0";
    assert_int_equal(eds_msg_parse(with_nul, sizeof(with_nul) - 1, EDS_TO_GATEWAY, &m, &err),
                     EDS_ERR_PARSE);
    /* An escaped backslash before u0000 is not a NUL */
    assert_int_equal(parse("{\"type\":\"ping\",\"x\":\"\\\\u0000\"}", EDS_TO_GATEWAY, &m, &err),
                     EDS_OK);
    eds_msg_free(&m);
    /* -0 and UTF-8 text are fine */
    assert_int_equal(parse("{\"type\":\"data\",\"seq\":1,\"data\":{\"v\":-0,\"t\":\"\xc3\xa9\"}}",
                           EDS_TO_GATEWAY, &m, &err),
                     EDS_OK);
    eds_msg_free(&m);
    /* Nesting past cJSON's limit is bad_json, not a crash */
    static char deep[3000 * 6 + 64];
    size_t n = 0;
    n += (size_t)sprintf(deep, "{\"type\":\"data\",\"seq\":1,\"data\":");
    for (int i = 0; i < 3000; i++)
        n += (size_t)sprintf(deep + n, "{\"a\":");
    n += (size_t)sprintf(deep + n, "1");
    for (int i = 0; i < 3000; i++)
        deep[n++] = '}';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_int_equal(parse(deep, EDS_TO_GATEWAY, &m, &err), EDS_ERR_PARSE);
}

static void test_many_keys_duplicate(void **state)
{
    /* More than 16 keys takes the sorting path. */
    char line[2048];
    size_t n = (size_t)sprintf(line, "{\"type\":\"data\",\"seq\":1,\"data\":{");
    for (int i = 0; i < 40; i++)
        n += (size_t)sprintf(line + n, "%s\"k%d\":%d", i ? "," : "", i, i);
    strcpy(line + n, "}}");
    eds_msg m;
    eds_error err;
    assert_int_equal(parse(line, EDS_TO_GATEWAY, &m, &err), EDS_OK);
    eds_msg_free(&m);
    n = (size_t)sprintf(line, "{\"type\":\"data\",\"seq\":1,\"data\":{");
    for (int i = 0; i < 40; i++)
        n += (size_t)sprintf(line + n, "%s\"k%d\":%d", i ? "," : "", i % 39, i);
    strcpy(line + n, "}}");
    assert_int_equal(parse(line, EDS_TO_GATEWAY, &m, &err), EDS_ERR_PARSE);
    assert_non_null(strstr(err.msg, "duplicate key"));
}

static void test_to_agent(void **state)
{
    eds_msg m;
    eds_error err;
    assert_int_equal(
        parse("{\"type\":\"welcome\",\"proto\":1,\"last_seq\":41}", EDS_TO_AGENT, &m, &err),
        EDS_OK);
    assert_int_equal(m.type, EDS_MSG_WELCOME);
    assert_int_equal(m.last_seq, 41);
    eds_msg_free(&m);
    assert_int_equal(
        parse("{\"type\":\"ack\",\"seq\":42,\"duplicate\":true}", EDS_TO_AGENT, &m, &err), EDS_OK);
    assert_int_equal(m.type, EDS_MSG_ACK);
    assert_true(m.duplicate);
    eds_msg_free(&m);
    assert_int_equal(
        parse("{\"type\":\"nack\",\"seq\":43,\"errors\":{\"a\":[\"x\"]}}", EDS_TO_AGENT, &m, &err),
        EDS_OK);
    assert_int_equal(m.type, EDS_MSG_NACK);
    assert_true(cJSON_IsObject(m.errors));
    eds_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"cmd\",\"id\":1,\"data\":[1,2]}", EDS_TO_AGENT, &m, &err),
                     EDS_OK);
    assert_int_equal(m.type, EDS_MSG_CMD);
    assert_int_equal(m.id, 1);
    assert_true(cJSON_IsArray(m.data));
    eds_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"error\",\"code\":\"replaced\",\"message\":\"m\"}",
                           EDS_TO_AGENT, &m, &err),
                     EDS_OK);
    assert_string_equal(m.code, "replaced");
    eds_msg_free(&m);
    /* agent-side ack has an id, gateway-side ack a seq */
    assert_int_equal(parse("{\"type\":\"ack\",\"id\":3}", EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_int_equal(m.type, EDS_MSG_CMD_ACK);
    assert_int_equal(m.id, 3);
    eds_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"ack\",\"id\":3}", EDS_TO_AGENT, &m, &err), EDS_ERR_PROTO);
}

static void test_device_ids(void **state)
{
    assert_true(eds_device_id_valid("myrio-01"));
    assert_true(eds_device_id_valid("A"));
    assert_true(eds_device_id_valid("a.b_c-d"));
    char max[65];
    memset(max, 'x', 64);
    max[64] = '\0';
    assert_true(eds_device_id_valid(max));
    char over[66];
    memset(over, 'x', 65);
    over[65] = '\0';
    assert_false(eds_device_id_valid(over));
    const char *bad[] = {"", "-a", ".a", "_a", "a/b", "a+b", "a#", "a b", "é", "a\tb", NULL};
    for (size_t i = 0; bad[i]; i++)
        if (eds_device_id_valid(bad[i]))
            fail_msg("device id '%s' must be refused", bad[i]);
    assert_false(eds_device_id_valid(NULL));
}

static void test_format_exact(void **state)
{
    char b[256];
    size_t n;
    n = eds_fmt_welcome(b, sizeof(b), 41);
    assert_int_equal(n, strlen("{\"type\":\"welcome\",\"proto\":1,\"last_seq\":41}\n"));
    assert_memory_equal(b, "{\"type\":\"welcome\",\"proto\":1,\"last_seq\":41}\n", n);
    n = eds_fmt_ack(b, sizeof(b), 42, false);
    assert_memory_equal(b, "{\"type\":\"ack\",\"seq\":42}\n", n);
    assert_int_equal(n, strlen("{\"type\":\"ack\",\"seq\":42}\n"));
    n = eds_fmt_ack(b, sizeof(b), 42, true);
    assert_memory_equal(b, "{\"type\":\"ack\",\"seq\":42,\"duplicate\":true}\n", n);
    const char *errs = "{\"a\":[\"min value is 0.0\"]}";
    n = eds_fmt_nack(b, sizeof(b), 43, errs, strlen(errs));
    assert_memory_equal(
        b, "{\"type\":\"nack\",\"seq\":43,\"errors\":{\"a\":[\"min value is 0.0\"]}}\n", n);
    n = eds_fmt_pong(b, sizeof(b));
    assert_memory_equal(b, "{\"type\":\"pong\"}\n", n);
    n = eds_fmt_cmd(b, sizeof(b), 1, "{\"x\":1}", 7);
    assert_memory_equal(b, "{\"type\":\"cmd\",\"id\":1,\"data\":{\"x\":1}}\n", n);
    n = eds_fmt_error(b, sizeof(b), EDS_PE_BAD_JSON, "say \"hi\"\n");
    assert_memory_equal(
        b, "{\"type\":\"error\",\"code\":\"bad_json\",\"message\":\"say \\\"hi\\\"\\n\"}\n", n);
    n = eds_fmt_hello(b, sizeof(b), "myrio-01", "s3cret", "7f3a");
    assert_memory_equal(b,
                        "{\"type\":\"hello\",\"device\":\"myrio-01\",\"password\":\"s3cret\","
                        "\"stream\":\"7f3a\",\"proto\":1}\n",
                        n);
    n = eds_fmt_data(b, sizeof(b), 42, "{\"a\":1}", 7);
    assert_memory_equal(b, "{\"type\":\"data\",\"seq\":42,\"data\":{\"a\":1}}\n", n);
    n = eds_fmt_cmd_ack(b, sizeof(b), 9);
    assert_memory_equal(b, "{\"type\":\"ack\",\"id\":9}\n", n);
    /* Too small a buffer gives 0, never a cut line. */
    assert_int_equal(eds_fmt_ack(b, 10, 42, false), 0);
    assert_int_equal(eds_fmt_hello(b, 30, "myrio-01", "s3cret", "7f3a"), 0);
}

/* What the formatters write, the parser reads back. */
static void test_roundtrip(void **state)
{
    char b[256];
    eds_msg m;
    eds_error err;
    size_t n = eds_fmt_hello(b, sizeof(b), "dev", "p\"w", NULL);
    assert_int_equal(eds_msg_parse(b, n - 1, EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_string_equal(m.password, "p\"w");
    eds_msg_free(&m);
    n = eds_fmt_error(b, sizeof(b), EDS_PE_REPLACED, "x");
    assert_int_equal(eds_msg_parse(b, n - 1, EDS_TO_AGENT, &m, &err), EDS_OK);
    assert_string_equal(m.code, "replaced");
    eds_msg_free(&m);
}

/* The #13 contract: the agent's max_line in its hello, ttl on cmd lines, nacks with a
 * status; each formatted by one side and parsed by the other. */
static void test_cmd_contract(void **state)
{
    (void)state;
    char b[256];
    eds_msg m;
    eds_error err;
    size_t n = eds_fmt_hello(b, sizeof(b), "dev", NULL, "s");
    n = eds_fmt_add_cmd_results(b, sizeof(b), n);
    n = eds_fmt_add_max_line(b, sizeof(b), n, 4096);
    assert_memory_equal(b,
                        "{\"type\":\"hello\",\"device\":\"dev\",\"stream\":\"s\",\"proto\":1,"
                        "\"cmd_results\":true,\"max_line\":4096}\n",
                        n);
    assert_int_equal(eds_msg_parse(b, n - 1, EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_true(m.cmd_results);
    assert_int_equal(m.max_line, 4096);
    eds_msg_free(&m);
    assert_int_equal(
        parse("{\"type\":\"hello\",\"device\":\"d\",\"proto\":1}", EDS_TO_GATEWAY, &m, &err),
        EDS_OK);
    assert_int_equal(m.max_line, 0); /* absent: the gateway's own */
    eds_msg_free(&m);
    assert_int_equal(parse("{\"type\":\"hello\",\"device\":\"d\",\"proto\":1,\"max_line\":0}",
                           EDS_TO_GATEWAY, &m, &err),
                     EDS_ERR_PROTO);
    assert_int_equal(parse("{\"type\":\"hello\",\"device\":\"d\",\"proto\":1,\"max_line\":1.5}",
                           EDS_TO_GATEWAY, &m, &err),
                     EDS_ERR_PROTO);
    n = eds_fmt_cmd_uid(b, sizeof(b), 3, 17, 3600, "{\"p\":77.0}", 10);
    assert_memory_equal(
        b, "{\"type\":\"cmd\",\"id\":3,\"uid\":17,\"ttl\":3600,\"data\":{\"p\":77.0}}\n", n);
    assert_int_equal(eds_msg_parse(b, n - 1, EDS_TO_AGENT, &m, &err), EDS_OK);
    assert_int_equal(m.uid, 17);
    assert_int_equal(m.ttl, 3600);
    eds_msg_free(&m);
    n = eds_fmt_cmd_uid(b, sizeof(b), 3, 17, 0, "1", 1);
    assert_memory_equal(b, "{\"type\":\"cmd\",\"id\":3,\"uid\":17,\"data\":1}\n", n);
    n = eds_fmt_cmd_nack_status(b, sizeof(b), 4, "dropped", "agent queue \"full\"");
    assert_memory_equal(
        b,
        "{\"type\":\"nack\",\"id\":4,\"status\":\"dropped\",\"reason\":\"agent "
        "queue \\\"full\\\"\",\"errors\":{\"cmd\":[\"agent queue \\\"full\\\"\"]}}\n",
        n);
    assert_int_equal(eds_msg_parse(b, n - 1, EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_int_equal(m.type, EDS_MSG_CMD_NACK);
    assert_string_equal(m.status, "dropped");
    assert_string_equal(m.reason, "agent queue \"full\"");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(m.errors, "cmd"));
    eds_msg_free(&m);
    assert_int_equal(eds_fmt_cmd_nack_status(b, 40, 4, "dropped", "agent queue full"), 0);
}

static void test_error_codes(void **state)
{
    assert_string_equal(eds_proto_error_name(EDS_PE_AUTH_FAILED), "auth_failed");
    assert_string_equal(eds_proto_error_name(EDS_PE_SHUTTING_DOWN), "shutting_down");
    assert_true(eds_proto_error_fatal(EDS_PE_LINE_TOO_LONG));
    assert_false(eds_proto_error_fatal(EDS_PE_BAD_JSON));
    assert_false(eds_proto_error_fatal(EDS_PE_BAD_MESSAGE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello),        cmocka_unit_test(test_data),
        cmocka_unit_test(test_bad_json),     cmocka_unit_test(test_many_keys_duplicate),
        cmocka_unit_test(test_to_agent),     cmocka_unit_test(test_device_ids),
        cmocka_unit_test(test_format_exact), cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_error_codes),  cmocka_unit_test(test_cmd_contract),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
