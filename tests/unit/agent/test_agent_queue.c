/* Unit tests for the agent's in-memory queue: order, bound, the send
 * cursor (window and rewind on reconnect) and dropping by seq. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agent_queue.h"
#include "eds_err.h"

static void push_n(agent_queue *q, uint64_t first, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char rec[32];
        int len = snprintf(rec, sizeof(rec), "{\"n\":%llu}", (unsigned long long)(first + i));
        assert_int_equal(agq_push(q, first + i, rec, (size_t)len), EDS_OK);
    }
}

static void test_fifo_order_and_bound(void **state)
{
    agent_queue q;
    assert_int_equal(agq_init(&q, 3), EDS_OK);
    push_n(&q, 1, 3);
    assert_true(agq_full(&q));
    assert_int_equal(agq_push(&q, 4, "{}", 2), EDS_ERR_FULL);
    assert_int_equal(q.count, 3);
    assert_int_equal(q.bytes, 3 * strlen("{\"n\":1}"));
    for (uint64_t s = 1; s <= 3; s++) {
        const agq_rec *r = agq_head(&q);
        assert_non_null(r);
        assert_int_equal(r->seq, s);
        char want[32];
        snprintf(want, sizeof(want), "{\"n\":%llu}", (unsigned long long)s);
        assert_int_equal(r->len, strlen(want));
        assert_memory_equal(r->data, want, r->len);
        assert_int_equal(agq_pop(&q), 1);
    }
    assert_null(agq_head(&q));
    assert_int_equal(agq_pop(&q), 0);
    assert_int_equal(q.bytes, 0);
    /* wraps around the ring */
    push_n(&q, 10, 3);
    assert_int_equal(agq_at(&q, 2)->seq, 12);
    agq_free(&q);
}

static void test_seq_must_increase(void **state)
{
    agent_queue q;
    assert_int_equal(agq_init(&q, 4), EDS_OK);
    assert_int_equal(agq_push(&q, 5, "{}", 2), EDS_OK);
    assert_int_equal(agq_push(&q, 5, "{}", 2), EDS_ERR_INVAL);
    assert_int_equal(agq_push(&q, 4, "{}", 2), EDS_ERR_INVAL);
    assert_int_equal(agq_push(&q, 9, "{}", 2), EDS_OK);
    assert_int_equal(agq_tail_seq(&q), 9);
    agq_free(&q);
}

static void test_send_cursor_and_rewind(void **state)
{
    agent_queue q;
    assert_int_equal(agq_init(&q, 8), EDS_OK);
    push_n(&q, 1, 5);
    for (uint64_t s = 1; s <= 3; s++) {
        const agq_rec *r = agq_next_unsent(&q);
        assert_int_equal(r->seq, s);
        agq_mark_sent(&q);
    }
    assert_int_equal(q.sent, 3);
    /* an ack for the head keeps the cursor on the same record */
    agq_pop(&q);
    assert_int_equal(q.sent, 2);
    assert_int_equal(agq_next_unsent(&q)->seq, 4);
    /* reconnect: everything left is unsent again, oldest first */
    agq_rewind(&q);
    assert_int_equal(agq_next_unsent(&q)->seq, 2);
    for (int i = 0; i < 4; i++)
        agq_mark_sent(&q);
    assert_null(agq_next_unsent(&q));
    agq_mark_sent(&q); /* no-op past the end */
    assert_int_equal(q.sent, 4);
    agq_free(&q);
}

static void test_drop_upto(void **state)
{
    agent_queue q;
    assert_int_equal(agq_init(&q, 8), EDS_OK);
    push_n(&q, 10, 6); /* 10..15 */
    agq_mark_sent(&q);
    agq_mark_sent(&q);
    assert_int_equal(agq_drop_upto(&q, 9), 0);
    assert_int_equal(agq_drop_upto(&q, 12), 3);
    assert_int_equal(agq_head(&q)->seq, 13);
    assert_int_equal(q.sent, 0);
    assert_int_equal(agq_drop_upto(&q, 100), 3);
    assert_int_equal(q.count, 0);
    agq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_order_and_bound),
        cmocka_unit_test(test_seq_must_increase),
        cmocka_unit_test(test_send_cursor_and_rewind),
        cmocka_unit_test(test_drop_upto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
