/* Unit tests for the limits on a `regex` rule (eds_schema__regex_check and
 * the loader's use of it): the shapes that make glibc's regcomp take
 * gigabytes or minutes are refused, before regcomp sees them, and patterns
 * people write pass with the size the limit is measured in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unistd.h>

#include "eds_schema.h"
#include "eds_schema_util.h"

static void expect_ok(const char *pattern, size_t size)
{
    size_t got = 0;
    char why[256] = "";
    bool ok = eds_schema__regex_check(pattern, &got, why, sizeof(why));
    if (!ok || got != size)
        print_error("'%s': ok %d size %zu (want %zu) %s\n", pattern, ok, got, size, why);
    assert_true(ok);
    assert_int_equal(got, size);
}

static void expect_refused(const char *pattern, const char *reason)
{
    size_t got;
    char why[256] = "";
    bool ok = eds_schema__regex_check(pattern, &got, why, sizeof(why));
    if (ok || !strstr(why, reason))
        print_error("'%s': ok %d, reason '%s' lacks '%s'\n", pattern, ok, why, reason);
    assert_false(ok);
    assert_non_null(strstr(why, reason));
}

static void test_common_patterns_pass(void **state)
{
    expect_ok("[A-Z]{2}-[0-9]+", 2 * 1 + 1 + 2);
    expect_ok("cat|dog", 6);
    expect_ok("([0-9]{1,3}\\.){3}[0-9]{1,3}", 3 * 4 + 3);
    expect_ok("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", 36);
    expect_ok("[[:alpha:]_][[:alnum:]_]*", 2);
    expect_ok("[]{}(|)*+?]x", 2); /* specials inside a bracket are members */
    expect_ok("(-|)[0-9]+(\\.[0-9]*)?", 1 + 2 + 2);
    expect_ok("a{,4}b{2,}", 4 + 3); /* GNU {,n}; {n,} counts n + 1 copies */
    expect_ok("a\\)", 2);           /* an escaped ')' is a character */
    expect_ok("", 0);
    expect_ok("a{255}", 255);
    /* The measure multiplies nested repetitions. */
    expect_ok("((ab){10}){50}", 1000);
}

static void test_limits_refused(void **state)
{
    expect_refused("a{999}{999}", "repetition count above 255 in '{999}'");
    expect_refused("a{256}", "above 255");
    expect_refused("a{1,256}", "above 255");
    expect_refused("a{99999999999999999999}", "above 255");
    expect_refused("((ab){10}){51}", "larger than 1000 elements");
    expect_refused("(a{200}){200}", "larger than 1000 elements");
    expect_refused("(((((((((((a+)+)+)+)+)+)+)+)+)+)+)", "larger than 1000"); /* x+ is x x* */
    /* 32 nested groups pass, 33 do not (100,000 overflow regcomp's stack). */
    for (int levels = EDS_SCHEMA_REGEX_MAX_NESTING; levels <= EDS_SCHEMA_REGEX_MAX_NESTING + 1;
         levels++) {
        char deep[2 * EDS_SCHEMA_REGEX_MAX_NESTING + 8];
        size_t n = 0;
        for (int i = 0; i < levels; i++)
            deep[n++] = '(';
        deep[n++] = 'a';
        for (int i = 0; i < levels; i++)
            deep[n++] = ')';
        deep[n] = '\0';
        if (levels <= EDS_SCHEMA_REGEX_MAX_NESTING)
            expect_ok(deep, 1);
        else
            expect_refused(deep, "groups nested deeper than 32");
    }
}

static void test_empty_matching_repeats_refused(void **state)
{
    expect_refused("(a?)*", "'*' repeats a part that can match the empty string");
    expect_refused("(a*)+", "'+' repeats");
    expect_refused("(a*b*){3}", "'{3}' repeats");
    expect_refused("a**", "'*' repeats");
    expect_refused("(^)*", "repeats");
    expect_refused("(a|)*", "repeats");
    expect_refused("(a?|b?)", "two alternatives can match the empty string");
    expect_refused("((a|)|)", "two alternatives");
    expect_refused("x(a*|b*)y", "two alternatives");
    /* What the messages suggest instead. */
    expect_ok("(a|b)*", 2);
    expect_ok("(a|b)?", 2);
    expect_ok("(a|b|)", 2);
    expect_ok("(a?b)*", 2);
}

/* The loader compiles "^(PATTERN)$": a ')' with no '(' (glibc's character)
 * would close that group and a back-reference would point at another group,
 * so both are refused. */
static void test_unmatched_paren_and_backrefs_refused(void **state)
{
    expect_refused("a)", "')' without a '('");
    expect_refused("[0-9]+)|x", "')' without a '('");
    expect_refused("(a)(b)\\2", "back-reference '\\2' (not supported)");
    expect_refused("(a)\\1", "back-reference '\\1'");
    expect_ok("[)]\\(x\\)", 4); /* in a bracket or escaped: characters */
}

static void check_load(const char *schema, const char *want)
{
    eds_schema *s = NULL;
    eds_error err = {0};
    int rc = eds_schema_load_json(schema, strlen(schema), "schemas/x.json", &s, &err);
    if (!strstr(err.msg, want))
        print_error("'%s': '%s' lacks '%s'\n", schema, err.msg, want);
    assert_int_equal(rc, EDS_ERR_SCHEMA);
    assert_null(s);
    assert_non_null(strstr(err.msg, want));
}

/* The loader names the field; the pattern that filled 2 GB is refused at once. */
static void test_load_refuses(void **state)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    check_load("{\"m\":{\"type\":\"dict\",\"schema\":{\"id\":{\"regex\":\"a{999}{999}\"}}}}",
               "schemas/x.json: field 'm.id': rule 'regex': regular expression refused: "
               "repetition count above 255 in '{999}'");
    /* Was loaded as "^(a))|b)$", which matched "a)x" and "xb)". */
    check_load("{\"a\":{\"regex\":\"a)|b\"}}",
               "field 'a': rule 'regex': regular expression refused: ')' without a '('");
    check_load("{\"a\":{\"regex\":\"(a?|b?)(a?|b?)\"}}",
               "field 'a': rule 'regex': regular expression refused: two alternatives");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 2);
}

/* All regex rules of a schema together: 10 of size 1000 load, an 11th does not. */
static void test_load_total(void **state)
{
    char text[1024];
    for (int rules = 10; rules <= 11; rules++) {
        size_t n = (size_t)snprintf(text, sizeof(text), "{");
        for (int i = 0; i < rules; i++)
            n += (size_t)snprintf(text + n, sizeof(text) - n,
                                  "%s\"f%d\":{\"regex\":\"(abcd){250}\"}", i ? "," : "", i);
        n += (size_t)snprintf(text + n, sizeof(text) - n, "}");
        assert_true(n < sizeof(text));
        if (rules == 10) {
            eds_schema *s = NULL;
            eds_error err = {0};
            assert_int_equal(eds_schema_load_json(text, n, "x.json", &s, &err), EDS_OK);
            eds_schema_destroy(s);
        } else {
            check_load(text, "together are larger than 10000 elements");
        }
    }
}

/* Validates {"v": value} against schema and returns the errors as JSON
 * text ("" when valid); the caller frees it. */
static char *verdict(const eds_schema *s, const char *value)
{
    cJSON *doc = cJSON_CreateObject();
    assert_non_null(cJSON_AddStringToObject(doc, "v", value));
    cJSON *errors = NULL;
    int rc = eds_schema_validate(s, doc, &errors);
    assert_int_equal(rc, errors ? EDS_ERR_INVALID : EDS_OK);
    char *text = errors ? cJSON_PrintUnformatted(errors) : strdup("");
    assert_non_null(text);
    cJSON_Delete(errors);
    cJSON_Delete(doc);
    return text;
}

static eds_schema *load_v(const char *pattern)
{
    char text[256];
    snprintf(text, sizeof(text), "{\"v\": {\"type\": \"string\", \"regex\": \"%s\"}}", pattern);
    eds_schema *s = NULL;
    eds_error err = {0};
    assert_int_equal(eds_schema_load_json(text, strlen(text), "x.json", &s, &err), EDS_OK);
    return s;
}

static void expect_verdict(const eds_schema *s, const char *value, const char *want)
{
    char *got = verdict(s, value);
    if (strcmp(got, want) != 0)
        print_error("'%.40s': got %s, want %s\n", value, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* A value over EDS_SCHEMA_REGEX_MAX_VALUE bytes is not matched: it fails
 * the rule with its own message, whether or not the pattern would match. */
static void test_long_value_fails(void **state)
{
    eds_schema *s = load_v("[a-z]*");
    char *value = malloc(EDS_SCHEMA_REGEX_MAX_VALUE + 2);
    assert_non_null(value);
    memset(value, 'a', EDS_SCHEMA_REGEX_MAX_VALUE + 1);
    value[EDS_SCHEMA_REGEX_MAX_VALUE] = '\0';
    expect_verdict(s, value, ""); /* 4096 bytes: matched */
    value[EDS_SCHEMA_REGEX_MAX_VALUE] = 'a';
    value[EDS_SCHEMA_REGEX_MAX_VALUE + 1] = '\0';
    expect_verdict(s, value,
                   "{\"v\":[\"value too long to match against regex (over 4096 bytes)\"]}");
    value[0] = '0'; /* would not match either: still the one message */
    expect_verdict(s, value,
                   "{\"v\":[\"value too long to match against regex (over 4096 bytes)\"]}");
    free(value);
    eds_schema_destroy(s);
}

/* Patterns match whole values as before, and still do after the matcher
 * has been compiled afresh many times. */
static void test_patterns_match_across_recompiles(void **state)
{
    eds_schema *s = load_v("[A-Z]{2}-[0-9]+");
    const char *no = "{\"v\":[\"value does not match regex '[A-Z]{2}-[0-9]+'\"]}";
    char big[EDS_SCHEMA_REGEX_MAX_VALUE + 1];
    memset(big, '7', sizeof(big) - 1);
    big[0] = 'Q', big[1] = 'Z', big[2] = '-', big[sizeof(big) - 1] = '\0';
    /* Each round matches 4 KiB, so every other round passes the budget. */
    for (int round = 0; round < 10; round++) {
        expect_verdict(s, big, "");
        expect_verdict(s, "AB-12", "");
        expect_verdict(s, "AB-", no);
        expect_verdict(s, "xAB-12", no); /* anchored at both ends */
        expect_verdict(s, "AB-12x", no);
    }
    eds_schema_destroy(s);
}

/* The matcher is compiled afresh each time the bytes matched since its last
 * compile would pass EDS_SCHEMA_REGEX_MATCH_BUDGET. */
static void test_recompiles_at_budget(void **state)
{
    eds_schema_rx *m = NULL;
    assert_int_equal(eds_schema__rx_create("[a-z]+", &m), EDS_OK);
    char value[1001];
    memset(value, 'q', 1000);
    value[1000] = '\0';
    bool matched = false;
    size_t per = EDS_SCHEMA_REGEX_MATCH_BUDGET / 1000; /* values between two compiles */
    for (size_t i = 0; i < 10 * per; i++) {
        assert_int_equal(eds_schema__rx_match(m, value, 1000, &matched), EDS_OK);
        assert_true(matched);
    }
    assert_int_equal(eds_schema__rx_recompiles(m), 9);
    assert_int_equal(eds_schema__rx_match(m, "q9", 2, &matched), EDS_OK);
    assert_false(matched);
    eds_schema__rx_destroy(m);
    eds_schema__rx_destroy(NULL);
}

static double resident_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld %ld", &pages, &resident), 2);
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* [ab]*a[ab]{20} makes glibc keep a matcher state (~3 KB) for nearly every
 * byte of every new value: 32 distinct 1 KiB values took the process to
 * ~100 MB before the budget; now the states of at most 8 KiB are kept
 * (~28 MB, docs/schema.md). Under ASan freed memory sits in quarantine, so
 * only the recompiles are checked there. */
static void test_state_cache_bounded(void **state)
{
    eds_schema *s = load_v("[ab]*a[ab]{20}");
    char value[1025];
    srand(7);
    double before = resident_mb();
    for (int i = 0; i < 32; i++) {
        for (size_t k = 0; k < 1024; k++)
            value[k] = "ab"[rand() % 2];
        value[1024] = '\0';
        char *got = verdict(s, value);
        /* Random: matches unless one of the last 21 bytes is wrong. */
        assert_true(got[0] == '\0' || strstr(got, "does not match regex") != NULL);
        free(got);
    }
    double grown = resident_mb() - before;
    print_message("resident memory grew %.1f MB over 32 values of 1 KiB\n", grown);
#if !defined(__SANITIZE_ADDRESS__)
    assert_true(grown < 60.0);
#endif
    eds_schema_destroy(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_patterns_pass),
        cmocka_unit_test(test_limits_refused),
        cmocka_unit_test(test_empty_matching_repeats_refused),
        cmocka_unit_test(test_unmatched_paren_and_backrefs_refused),
        cmocka_unit_test(test_load_refuses),
        cmocka_unit_test(test_load_total),
        cmocka_unit_test(test_long_value_fails),
        cmocka_unit_test(test_patterns_match_across_recompiles),
        cmocka_unit_test(test_recompiles_at_budget),
        cmocka_unit_test(test_state_cache_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
