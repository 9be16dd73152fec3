/* Unit tests for reconnect backoff: doubling from min, capped at max,
 * equal jitter (each delay in [d/2, d]), reset after success. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "eds_backoff.h"

static void test_doubles_to_cap_with_jitter(void **state)
{
    for (uint64_t seed = 1; seed <= 50; seed++) {
        eds_backoff b;
        eds_backoff_init(&b, 500, 30000, seed);
        uint32_t nominal = 500;
        for (int i = 0; i < 12; i++) {
            uint32_t d = eds_backoff_next(&b);
            assert_true(d >= nominal / 2);
            assert_true(d <= nominal);
            nominal = nominal * 2 > 30000 ? 30000 : nominal * 2;
        }
        /* long after the cap: stays within [15 s, 30 s] */
        for (int i = 0; i < 100; i++) {
            uint32_t d = eds_backoff_next(&b);
            assert_true(d >= 15000 && d <= 30000);
        }
    }
}

static void test_reset(void **state)
{
    eds_backoff b;
    eds_backoff_init(&b, 500, 30000, 7);
    for (int i = 0; i < 10; i++)
        eds_backoff_next(&b);
    eds_backoff_reset(&b);
    uint32_t d = eds_backoff_next(&b);
    assert_true(d >= 250 && d <= 500);
}

static void test_jitter_spreads_agents(void **state)
{
    /* 100 agents losing the gateway at once must not all retry at the same ms. */
    uint32_t first[100];
    int distinct = 0;
    for (int i = 0; i < 100; i++) {
        eds_backoff b;
        eds_backoff_init(&b, 1000, 30000, (uint64_t)i * 7919 + 1);
        eds_backoff_next(&b);
        first[i] = eds_backoff_next(&b); /* nominal 2000: in [1000, 2000] */
        int seen = 0;
        for (int k = 0; k < i; k++)
            seen |= first[k] == first[i];
        distinct += !seen;
    }
    assert_true(distinct > 80);
}

static void test_degenerate_bounds(void **state)
{
    eds_backoff b;
    eds_backoff_init(&b, 0, 0, 0);
    for (int i = 0; i < 5; i++) {
        uint32_t d = eds_backoff_next(&b);
        assert_true(d <= 1);
    }
    eds_backoff_init(&b, 4000, 1000, 3); /* max below min: min wins */
    for (int i = 0; i < 5; i++) {
        uint32_t d = eds_backoff_next(&b);
        assert_true(d >= 2000 && d <= 4000);
    }
}

static void test_without_jitter(void **state)
{
    (void)state;
    eds_backoff b;
    eds_backoff_init(&b, 100, 400, 5);
    b.jitter = false;
    uint32_t want[] = {100, 200, 400, 400};
    for (int i = 0; i < 4; i++)
        assert_int_equal(eds_backoff_next(&b), want[i]);
    eds_backoff_reset(&b);
    assert_int_equal(eds_backoff_next(&b), 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_jitter),
        cmocka_unit_test(test_doubles_to_cap_with_jitter),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_jitter_spreads_agents),
        cmocka_unit_test(test_degenerate_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
