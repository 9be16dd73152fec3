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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_patterns_pass),
        cmocka_unit_test(test_limits_refused),
        cmocka_unit_test(test_empty_matching_repeats_refused),
        cmocka_unit_test(test_unmatched_paren_and_backrefs_refused),
        cmocka_unit_test(test_load_refuses),
        cmocka_unit_test(test_load_total),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
