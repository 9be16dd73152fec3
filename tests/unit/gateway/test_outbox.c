/*
 * test_outbox.c - gw_outbox and gw_cmdpark against their headers: the outbox keeps
 * order, refuses past its count and byte bounds and gives the bytes back; the park
 * finds, keeps creation order for eviction, and counts its entries in the budget.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gw_cmdpark.h"
#include "gw_outbox.h"

static void test_outbox_order_and_bounds(void **state)
{
    (void)state;
    gw_outbox o;
    gw_outbox_init(&o, 2, 1 << 20);
    assert_true(gw_outbox_push(&o, "t/1", "{\"a\":1}", 7, NULL, 0));
    assert_true(gw_outbox_push(&o, "t/2", "x", 1, "\0c", 2));
    assert_false(gw_outbox_push(&o, "t/3", "y", 1, NULL, 0)); /* over the count */
    const gw_outmsg *m = gw_outbox_head(&o);
    assert_string_equal(m->topic, "t/1");
    assert_memory_equal(m->payload, "{\"a\":1}", 7);
    gw_outbox_pop(&o);
    m = gw_outbox_head(&o);
    assert_string_equal(m->topic, "t/2");
    assert_int_equal(m->corr_len, 2);
    assert_memory_equal(m->corr, "\0c", 2);
    gw_outbox_pop(&o);
    assert_null(gw_outbox_head(&o));
    assert_int_equal(o.bytes, 0);
    gw_outbox_init(&o, 100, 64); /* a byte bound below one message */
    assert_false(
        gw_outbox_push(&o, "topic", "0123456789012345678901234567890123456789", 40, NULL, 0));
    assert_true(gw_outbox_push(&o, "t", "x", 1, NULL, 0));
    gw_outbox_free(&o); /* ASan: nothing left */
}

static void test_park_order_and_budget(void **state)
{
    (void)state;
    gw_cmdpark p;
    size_t budget = 0;
    assert_int_equal(gw_cmdpark_init(&p, 2), EDS_OK); /* 4 buckets: chains get long */
    char id[16];
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof(id), "ghost-%d", i);
        assert_non_null(gw_cmdpark_get(&p, id, &budget));
    }
    assert_int_equal(p.n, 50);
    assert_int_equal(budget, 50 * GW_PARK_ENTRY_SIZE);
    assert_ptr_equal(gw_cmdpark_get(&p, "ghost-7", &budget), gw_cmdpark_find(&p, "ghost-7"));
    assert_int_equal(p.n, 50); /* found, not created */
    assert_string_equal(p.oldest->id, "ghost-0");
    assert_string_equal(p.newest->id, "ghost-49");
    gw_cmdpark_remove(&p, gw_cmdpark_find(&p, "ghost-0"), &budget);
    assert_string_equal(p.oldest->id, "ghost-1");
    gw_cmdpark_remove(&p, gw_cmdpark_find(&p, "ghost-25"), &budget);
    assert_null(gw_cmdpark_find(&p, "ghost-25"));
    assert_non_null(gw_cmdpark_find(&p, "ghost-26"));
    gw_park_entry *e = gw_cmdpark_find(&p, "ghost-3");
    gw_cmd_parts parts = {.json = "1", .len = 1};
    gw_cmdq_push(&e->q, gw_cmd_create(&parts, &budget));
    gw_cmdpark_free(&p, &budget); /* entries and their commands */
    assert_int_equal(budget, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outbox_order_and_bounds),
        cmocka_unit_test(test_park_order_and_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
