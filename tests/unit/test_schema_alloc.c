/* The validator's promise that a valid document costs no allocation, and
 * the parser's that a data line costs none once its thread has parsed one:
 * every malloc of the process is counted meanwhile. (Skipped under
 * AddressSanitizer, which owns malloc.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "eds_err.h"
#include "eds_proto.h"
#include "eds_schema.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static volatile bool counting;
static volatile size_t allocations;

#ifndef UNDER_ASAN
/* The wrappers replace malloc for the whole process (cJSON's shared library
 * too), so they must be exported although the build hides symbols by default. */
#define INTERPOSE __attribute__((visibility("default")))
/* glibc's own entry points, so these wrappers can count and forward. */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);

INTERPOSE void *malloc(size_t size)
{
    if (counting)
        allocations++;
    return __libc_malloc(size);
}

INTERPOSE void *calloc(size_t n, size_t size)
{
    if (counting)
        allocations++;
    return __libc_calloc(n, size);
}

INTERPOSE void *realloc(void *p, size_t size)
{
    if (counting)
        allocations++;
    return __libc_realloc(p, size);
}

INTERPOSE void free(void *p)
{
    __libc_free(p);
}
#endif

static const char schema_text[] =
    "{\"timestamp\": {\"type\": \"string\", \"required\": true, \"format\": \"date-time\"},"
    " \"day-ahead-price\": {\"type\": \"float\", \"min\": 0.0},"
    " \"power_factor\": {\"type\": \"float\", \"between\": [0.0, 1.0]},"
    " \"meter\": {\"type\": \"dict\", \"schema\": {\"id\": {\"type\": \"string\", \"minlength\": 1,"
    "   \"allowed\": [\"m1\", \"m2\"]}, \"phase\": {\"type\": \"integer\", \"required\": true}}},"
    " \"tags\": {\"type\": \"list\", \"empty\": false, \"schema\": {\"type\": \"string\","
    "   \"forbidden\": [\"x\"], \"maxlength\": 8}},"
    " \"note\": {\"type\": \"string\", \"nullable\": true}}";

static const char valid_doc[] =
    "{\"timestamp\":\"2026-11-24T10:00:00Z\",\"day-ahead-price\":81.4,\"power_factor\":0.97,"
    "\"meter\":{\"id\":\"m1\",\"phase\":2},\"tags\":[\"a\",\"bc\"],\"note\":null,\"extra\":[1]}";

static void test_valid_document_allocates_nothing(void **state)
{
#ifdef UNDER_ASAN
    skip(); /* returns from the test: ASan's malloc is not counted */
#endif
    eds_schema *s = NULL;
    eds_error err = {0};
    assert_int_equal(eds_schema_load_json(schema_text, strlen(schema_text), "t", &s, &err), EDS_OK);
    cJSON *doc = cJSON_Parse(valid_doc);
    assert_non_null(doc);
    cJSON *errors = NULL;

    allocations = 0;
    counting = true;
    int rc = EDS_OK;
    for (int i = 0; i < 100 && rc == EDS_OK; i++)
        rc = eds_schema_validate(s, doc, &errors);
    counting = false;
    assert_int_equal(rc, EDS_OK);
    assert_int_equal(allocations, 0);

    /* The counter works: an invalid document does allocate its errors. */
    cJSON_ReplaceItemInObjectCaseSensitive(doc, "power_factor", cJSON_CreateNumber(2));
    counting = true;
    rc = eds_schema_validate(s, doc, &errors);
    counting = false;
    assert_int_equal(rc, EDS_ERR_INVALID);
    assert_true(allocations > 0);
    cJSON_Delete(errors);
    cJSON_Delete(doc);
    eds_schema_destroy(s);
}

static void test_data_line_parse_allocates_nothing(void **state)
{
#ifdef UNDER_ASAN
    skip();
#endif
    char line[512];
    int n = snprintf(line, sizeof(line), "{\"type\":\"data\",\"seq\":7,\"data\":%s}", valid_doc);
    assert_true(n > 0 && (size_t)n < sizeof(line));
    eds_msg m;
    eds_error err;
    assert_int_equal(eds_msg_parse(line, (size_t)n, EDS_TO_GATEWAY, &m, &err), EDS_OK);
    eds_msg_free(&m); /* the thread keeps the arena's first block from here */

    allocations = 0;
    counting = true;
    int rc = EDS_OK;
    for (int i = 0; i < 100 && rc == EDS_OK; i++) {
        rc = eds_msg_parse(line, (size_t)n, EDS_TO_GATEWAY, &m, &err);
        eds_msg_free(&m);
    }
    counting = false;
    assert_int_equal(rc, EDS_OK);
    assert_int_equal(allocations, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_document_allocates_nothing),
        cmocka_unit_test(test_data_line_parse_allocates_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
