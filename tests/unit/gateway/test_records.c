/*
 * test_records.c - gw_records, what a line becomes on the way to the broker,
 * against gw_records.h: a valid record is published as the agent wrote its
 * data object (numbers as sent, whitespace gone), a record the schema refuses
 * becomes the rejected-topic document plus a nack line, and a refused line
 * becomes a rejected-topic document that is valid JSON whatever bytes the
 * line held (quotes, control bytes, broken UTF-8, a cut at 1024 bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eds_err.h"
#include "eds_proto.h"
#include "eds_schema.h"
#include "gw_records.h"

static const char schema_text[] = "{\"v\": {\"type\": \"float\", \"max\": 10}}";

static eds_schema *schema(void)
{
    eds_schema *s = NULL;
    eds_error err;
    assert_int_equal(eds_schema_load_json(schema_text, strlen(schema_text), "t", &s, &err), EDS_OK);
    return s;
}

static void build(const char *line, const eds_schema *s, gw_record *r)
{
    eds_msg m;
    eds_error err;
    assert_int_equal(eds_msg_parse(line, strlen(line), EDS_TO_GATEWAY, &m, &err), EDS_OK);
    assert_int_equal(m.type, EDS_MSG_DATA);
    assert_int_equal(gw_record_build(r, s, &m), EDS_OK);
    r->seq = m.seq;
    eds_msg_free(&m);
}

static void test_data_as_sent(void **state)
{
    eds_schema *s = schema();
    gw_record r = {0};
    build("{\"type\":\"data\", \"seq\":7, \"data\": { \"v\" : 5.0, \"s\":\"a b\\\" c\", "
          "\"big\":12345678901234567890 }}",
          s, &r);
    assert_int_equal(r.kind, GW_REC_DATA);
    assert_string_equal(r.payload, "{\"v\":5.0,\"s\":\"a b\\\" c\",\"big\":12345678901234567890}");
    assert_int_equal(r.len, strlen(r.payload));
    assert_null(r.reply);
    free(r.payload);
    eds_schema_destroy(s);
}

static void test_no_schema_takes_any_object(void **state)
{
    gw_record r = {0};
    build("{\"data\":{\"x\":[1, 2]},\"seq\":1,\"type\":\"data\"}", NULL, &r);
    assert_int_equal(r.kind, GW_REC_DATA);
    assert_string_equal(r.payload, "{\"x\":[1,2]}");
    free(r.payload);
}

static void test_rejected_document_and_nack(void **state)
{
    eds_schema *s = schema();
    gw_record r = {0};
    build("{\"type\":\"data\",\"seq\":9,\"data\":{\"v\":11.50}}", s, &r);
    assert_int_equal(r.kind, GW_REC_REJECT);
    cJSON *doc = cJSON_Parse(r.payload);
    assert_non_null(doc);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(doc, "seq")->valueint, 9);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(doc, "errors"));
    assert_non_null(strstr(r.payload, "\"data\":{\"v\":11.50}}"));
    cJSON_Delete(doc);
    eds_msg m;
    eds_error err;
    assert_int_equal(r.reply[r.reply_len - 1], '\n'); /* a whole protocol line */
    assert_int_equal(eds_msg_parse(r.reply, r.reply_len - 1, EDS_TO_AGENT, &m, &err), EDS_OK);
    assert_int_equal(m.type, EDS_MSG_NACK);
    assert_int_equal(m.seq, 9);
    eds_msg_free(&m);
    free(r.payload);
    free(r.reply);
    eds_schema_destroy(s);
}

static char *reject(const char *line, size_t len, const char *reason)
{
    size_t cap = gw_reject_line_cap(len, reason);
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t n = gw_reject_line_doc(buf, cap, EDS_PE_BAD_JSON, line, len, reason);
    assert_true(n < cap);
    buf[n] = '\0';
    return buf;
}

static void test_rejected_line_is_json(void **state)
{
    const char line[] = "{\"a\":\"q\\\"\x01\xff\"}";
    char *doc = reject(line, sizeof(line) - 1, "bad \"json\"");
    cJSON *v = cJSON_Parse(doc);
    assert_non_null(v);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(v, "error")->valuestring, "bad_json");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(v, "reason")->valuestring, "bad \"json\"");
    assert_non_null(strstr(doc, "\\u0001\\u00ff"));
    cJSON_Delete(v);
    free(doc);
}

static void test_rejected_line_cut(void **state)
{
    char line[3000];
    memset(line, 'x', sizeof(line));
    memcpy(line + GW_REJECTED_LINE_MAX - 1, "\xc3\xa9", 2); /* a character cut in two */
    char *doc = reject(line, sizeof(line), "too long");
    cJSON *v = cJSON_Parse(doc);
    assert_non_null(v);
    const char *kept = cJSON_GetObjectItemCaseSensitive(v, "line")->valuestring;
    assert_int_equal(strlen(kept), GW_REJECTED_LINE_MAX - 1 + 2); /* \u00c3 as U+00C3 */
    cJSON_Delete(v);
    free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_as_sent),
        cmocka_unit_test(test_no_schema_takes_any_object),
        cmocka_unit_test(test_rejected_document_and_nack),
        cmocka_unit_test(test_rejected_line_is_json),
        cmocka_unit_test(test_rejected_line_cut),
    };
    return cmocka_run_group_tests_name("gw_records", tests, NULL, NULL);
}
