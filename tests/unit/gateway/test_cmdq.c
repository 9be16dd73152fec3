/*
 * test_cmdq.c - gw_cmdq, the downlink command FIFO, against gw_cmdq.h:
 * order, taking by id from anywhere, putting unacked commands back in front,
 * and the byte budget returning to zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "gw_cmdq.h"

static gw_cmd *cmd(const char *json, int64_t id, size_t *budget)
{
    gw_cmd_parts parts = {.json = json, .len = strlen(json)};
    gw_cmd *c = gw_cmd_create(&parts, budget);
    assert_non_null(c);
    c->id = id;
    return c;
}

static void test_parts(void **state)
{
    (void)state;
    size_t budget = 0;
    gw_cmd_parts p = {.json = "{\"id\":\"x\"}",
                      .len = 10,
                      .ref = "\"x\"",
                      .ref_len = 3,
                      .rt = "r/t",
                      .rt_len = 3,
                      .corr = "\0\1",
                      .corr_len = 2,
                      .expires_at = 5,
                      .uid = 9};
    gw_cmd *c = gw_cmd_create(&p, &budget);
    assert_non_null(c);
    assert_int_equal(budget, gw_cmd_size(&p));
    assert_string_equal(c->json, "{\"id\":\"x\"}");
    assert_string_equal(gw_cmd_ref(c), "\"x\"");
    assert_string_equal(gw_cmd_rt(c), "r/t");
    assert_memory_equal(gw_cmd_corr(c), "\0\1", 2);
    assert_int_equal(c->uid, 9);
    assert_int_equal(c->expires_at, 5);
    gw_cmd_free(c, &budget);
    assert_int_equal(budget, 0);
}

static void test_fifo_and_budget(void **state)
{
    size_t budget = 0;
    gw_cmdq q = {0};
    gw_cmdq_push(&q, cmd("{\"a\":1}", 0, &budget));
    gw_cmdq_push(&q, cmd("{\"b\":2}", 0, &budget));
    assert_int_equal(q.n, 2);
    gw_cmd_parts seven = {.len = 7};
    assert_int_equal(budget, 2 * gw_cmd_size(&seven));
    gw_cmd *c = gw_cmdq_pop(&q);
    assert_string_equal(c->json, "{\"a\":1}");
    assert_int_equal(c->len, 7);
    gw_cmd_free(c, &budget);
    c = gw_cmdq_pop(&q);
    assert_string_equal(c->json, "{\"b\":2}");
    gw_cmd_free(c, &budget);
    assert_int_equal(budget, 0);
    assert_null(gw_cmdq_pop(&q));
    assert_null(q.tail);
}

static void test_take_by_id(void **state)
{
    size_t budget = 0;
    gw_cmdq q = {0};
    for (int64_t id = 1; id <= 4; id++)
        gw_cmdq_push(&q, cmd("{}", id, &budget));
    gw_cmd *c = gw_cmdq_take(&q, 4); /* the tail: the tail pointer moves back */
    assert_int_equal(c->id, 4);
    gw_cmd_free(c, &budget);
    assert_null(gw_cmdq_take(&q, 9));
    gw_cmd_free(gw_cmdq_take(&q, 2), &budget);
    gw_cmdq_push(&q, cmd("{}", 5, &budget));
    const int64_t want[] = {1, 3, 5};
    for (size_t i = 0; i < 3; i++) {
        c = gw_cmdq_pop(&q);
        assert_int_equal(c->id, want[i]);
        gw_cmd_free(c, &budget);
    }
    assert_int_equal(budget, 0);
}

static void test_prepend_and_clear(void **state)
{
    size_t budget = 0;
    gw_cmdq held = {0}, unacked = {0};
    gw_cmdq_prepend(&held, &unacked); /* empty: nothing happens */
    assert_null(held.head);
    gw_cmdq_push(&held, cmd("{}", 3, &budget));
    gw_cmdq_push(&unacked, cmd("{}", 1, &budget));
    gw_cmdq_push(&unacked, cmd("{}", 2, &budget));
    gw_cmdq_prepend(&held, &unacked);
    assert_int_equal(held.n, 3);
    assert_int_equal(unacked.n, 0);
    assert_null(unacked.head);
    assert_int_equal(held.head->id, 1);
    assert_int_equal(held.tail->id, 3);
    gw_cmdq empty = {0};
    gw_cmdq_push(&unacked, cmd("{}", 4, &budget));
    gw_cmdq_prepend(&empty, &unacked);
    assert_ptr_equal(empty.tail, empty.head);
    gw_cmdq_clear(&empty, &budget);
    gw_cmdq_clear(&held, &budget);
    assert_int_equal(budget, 0);
    assert_int_equal(held.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_budget),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_take_by_id),
        cmocka_unit_test(test_prepend_and_clear),
    };
    return cmocka_run_group_tests_name("gw_cmdq", tests, NULL, NULL);
}
