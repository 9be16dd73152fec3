/* Unit tests for the table of the gateway's counters (gw_stats.c), which the
 * stats topic and /metrics both walk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "gw_stats.h"

/* Every member of gw_stats has a row, once: a counter added to the struct
 * without one fails here instead of going missing from stats and /metrics. */
static void test_every_counter_has_one_row(void **state)
{
    (void)state;
    assert_int_equal(gw_stats_ncounters * sizeof(uint64_t), sizeof(gw_stats));
    for (size_t i = 0; i < gw_stats_ncounters; i++) {
        const gw_stats_counter *c = &gw_stats_counters[i];
        assert_int_equal(c->off % sizeof(uint64_t), 0);
        assert_non_null(strstr(c->metric, "_total"));
        assert_int_equal(strncmp(c->metric, "eds_", 4), 0);
        for (size_t k = 0; k < i; k++) {
            assert_int_not_equal(gw_stats_counters[k].off, c->off);
            assert_string_not_equal(gw_stats_counters[k].key, c->key);
            assert_string_not_equal(gw_stats_counters[k].metric, c->metric);
        }
    }
}

/* The stats JSON carries each counter's value under its field name. */
static void test_json_counters(void **state)
{
    (void)state;
    gw_stats st = {0};
    st.acked = 117;
    st.cmd_answers_unknown = 3;
    st.stats_skipped = UINT64_MAX;
    char buf[2048] = "{";
    size_t n = gw_stats_json_counters(&st, buf + 1, sizeof(buf) - 2);
    assert_true(n > 0);
    buf[n] = '}'; /* replaces the last ',' */
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(j), (int)gw_stats_ncounters);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "acked")->valuedouble, 117);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(j, "cmd_answers_unknown")->valuedouble, 3);
    assert_non_null(strstr(buf, "\"stats_skipped\":18446744073709551615}"));
    cJSON_Delete(j);
    /* Too small a buffer: 0, nothing half-written is claimed. */
    assert_int_equal(gw_stats_json_counters(&st, buf, 100), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_counter_has_one_row),
        cmocka_unit_test(test_json_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
