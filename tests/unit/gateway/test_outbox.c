/*
 * test_outbox.c - gw_outbox and gw_cmdpark against their headers: the outbox keeps
 * order, is full at its bounds and refuses past twice them, finds an entry by the token
 * of its publish and gives the bytes back; the park
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

static gw_outmsg *push(gw_outbox *o, const char *dev, const char *payload, const char *rt)
{
    gw_result_parts p = {.device = dev,
                         .payload = payload,
                         .len = strlen(payload),
                         .rt = rt,
                         .rt_len = rt ? strlen(rt) : 0,
                         .corr = rt ? "\0c" : NULL,
                         .corr_len = rt ? 2 : 0};
    return gw_outbox_push(o, &p);
}

static void test_outbox_order_bounds_tokens(void **state)
{
    (void)state;
    const uint64_t tag = 3ULL << 62;
    gw_outbox o;
    gw_outbox_init(&o, 2, 1 << 20, 1000);
    gw_outmsg *a = push(&o, "d1", "{\"a\":1}", NULL);
    gw_outmsg *b = push(&o, "d2", "x", "resp/t");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(gw_outmsg_parts(a), GW_OUT_MAIN);
    assert_int_equal(gw_outmsg_parts(b), GW_OUT_MAIN | GW_OUT_RT);
    assert_true(gw_outbox_full(&o)); /* the soft bound: the caller stops making results */
    gw_outmsg *c = push(&o, "d3", "y", NULL);
    gw_outmsg *d = push(&o, "d4", "z", NULL);
    assert_non_null(c); /* still taken up to twice the bound */
    assert_non_null(d);
    assert_null(push(&o, "d5", "w", NULL));
    unsigned part = 0;
    assert_ptr_equal(gw_outbox_find(&o, gw_outbox_token(b, GW_OUT_RT, tag), tag, &part), b);
    assert_int_equal(part, GW_OUT_RT);
    assert_ptr_equal(gw_outbox_find(&o, gw_outbox_token(c, GW_OUT_MAIN, tag), tag, &part), c);
    assert_int_equal(part, GW_OUT_MAIN);
    assert_null(gw_outbox_find(&o, gw_outbox_token(c, GW_OUT_MAIN, tag) & ~tag, tag, &part));
    assert_string_equal(b->rt, "resp/t");
    assert_memory_equal(b->corr, "\0c", 2);
    gw_outbox_remove(&o, b); /* from the middle */
    assert_null(gw_outbox_find(&o, gw_outbox_token(a, GW_OUT_MAIN, tag) + 2, tag, &part));
    assert_ptr_equal(a->next, c);
    assert_ptr_equal(c->prev, a);
    gw_outbox_remove(&o, a);
    gw_outbox_remove(&o, d); /* the tail */
    assert_ptr_equal(o.head, c);
    assert_ptr_equal(o.tail, c);
    gw_outbox_remove(&o, c);
    assert_int_equal(o.bytes, 0);
    assert_int_equal(o.n, 0);
    gw_outbox_init(&o, 100, 64, 1); /* a byte bound below one message */
    assert_null(push(&o, "d",
                     "0123456789012345678901234567890123456789012345678901234567890123"
                     "456789",
                     NULL));
    assert_non_null(push(&o, "d", "x", NULL));
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
        cmocka_unit_test(test_outbox_order_bounds_tokens),
        cmocka_unit_test(test_park_order_and_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
