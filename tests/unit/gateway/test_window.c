/*
 * test_window.c - gw_window, the per-device window, against gw_window.h:
 * devices are found by id and bounded by max_devices, the ring keeps
 * arrival order across growth and wrap-around and stops at the window,
 * pending_bytes follows the records held, trimming drops only what never
 * reached the publisher, tokens name a record until it is gone, and the
 * journal list hands each marked device out once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_err.h"
#include "gw_window.h"

static gw_record data_rec(uint64_t seq, size_t len)
{
    gw_record r = {.seq = seq, .kind = GW_REC_DATA, .state = GW_REC_WAITING};
    r.payload = malloc(len + 1);
    assert_non_null(r.payload);
    memset(r.payload, 'x', len);
    r.payload[len] = '\0';
    r.len = (uint32_t)len;
    return r;
}

static void push(gw_window *w, gw_device *d, gw_record r)
{
    assert_int_equal(gw_ring_reserve(w, d), EDS_OK);
    gw_ring_push(w, d, &r);
}

static void test_devices_by_id_and_bounded(void **state)
{
    gw_window w;
    assert_int_equal(gw_window_init(&w, 3000, 8), EDS_OK);
    char id[32];
    for (int i = 0; i < 3000; i++) { /* past the first table size: it regrows */
        snprintf(id, sizeof(id), "dev-%d", i);
        gw_device *d = gw_window_get(&w, id);
        assert_non_null(d);
        assert_int_equal(d->index, i);
        assert_string_equal(d->stream, "0");
    }
    assert_null(gw_window_get(&w, "one-too-many"));
    assert_null(gw_window_find(&w, "one-too-many"));
    for (int i = 0; i < 3000; i += 7) {
        snprintf(id, sizeof(id), "dev-%d", i);
        gw_device *d = gw_window_find(&w, id);
        assert_non_null(d);
        assert_string_equal(d->id, id);
        assert_ptr_equal(gw_window_get(&w, id), d);
    }
    gw_window_free(&w);
}

static void test_ring_order_growth_wrap_and_window(void **state)
{
    gw_window w;
    assert_int_equal(gw_window_init(&w, 10, 40), EDS_OK);
    gw_device *d = gw_window_get(&w, "a");
    uint64_t next_in = 1, next_out = 1;
    for (int round = 0; round < 5; round++) {
        while (gw_ring_reserve(&w, d) == EDS_OK) {
            gw_record r = data_rec(next_in++, 10);
            gw_ring_push(&w, d, &r);
        }
        assert_int_equal(d->ring.count, 40);
        assert_int_equal(gw_ring_reserve(&w, d), EDS_ERR_FULL);
        assert_int_equal(w.pending_bytes, 400);
        for (int k = 0; k < 25; k++) { /* the head moves: the next round wraps */
            assert_int_equal(gw_ring_at(d, 0)->seq, next_out++);
            gw_ring_pop(&w, d);
        }
        for (uint32_t k = 0; k < d->ring.count; k++)
            assert_int_equal(gw_ring_at(d, k)->seq, next_out + k);
    }
    assert_int_equal(w.pending_bytes, d->ring.count * 10);
    gw_window_free(&w);
}

static void test_trim_keeps_inflight_prefix(void **state)
{
    gw_window w;
    assert_int_equal(gw_window_init(&w, 10, 16), EDS_OK);
    gw_device *d = gw_window_get(&w, "a");
    d->last_seq = 4;
    for (uint64_t s = 5; s <= 10; s++)
        push(&w, d, data_rec(s, 3));
    gw_ring_at(d, 0)->state = GW_REC_INFLIGHT;
    gw_ring_at(d, 1)->state = GW_REC_INFLIGHT;
    d->ring.unsent = 6;
    gw_ring_trim(&w, d);
    assert_int_equal(d->ring.count, 2);
    assert_int_equal(d->ring.unsent, 2);
    assert_int_equal(d->last_accepted, 6);
    assert_int_equal(w.pending_bytes, 6);
    gw_ring_pop(&w, d);
    gw_ring_pop(&w, d);
    gw_ring_trim(&w, d);
    assert_null(d->ring.slot); /* an empty ring of an absent device costs nothing */
    assert_int_equal(d->last_accepted, 4);
    assert_int_equal(w.pending_bytes, 0);
    gw_window_free(&w);
}

static void test_tokens_name_records_until_gone(void **state)
{
    gw_window w;
    assert_int_equal(gw_window_init(&w, 10, 16), EDS_OK);
    gw_window_get(&w, "a");
    gw_device *b = gw_window_get(&w, "b");
    for (uint64_t s = 1; s <= 3; s++)
        push(&w, b, data_rec(s, 1));
    uint64_t t2 = gw_token_make(b, 1);
    gw_device *d = NULL;
    uint32_t off = 99;
    assert_int_equal(gw_token_find(&w, t2, &d, &off), EDS_OK);
    assert_ptr_equal(d, b);
    assert_int_equal(gw_ring_at(d, off)->seq, 2);
    gw_ring_pop(&w, b); /* the offset of seq 2 moves; its token still finds it */
    assert_int_equal(gw_token_find(&w, t2, &d, &off), EDS_OK);
    assert_int_equal(off, 0);
    assert_int_equal(gw_ring_at(d, off)->seq, 2);
    gw_ring_pop(&w, b);
    assert_int_equal(gw_token_find(&w, t2, &d, &off), EDS_ERR_NOTFOUND);
    assert_int_equal(gw_token_find(&w, GW_TOKEN_UNTRACKED | 1, &d, &off), EDS_ERR_NOTFOUND);
    assert_int_equal(gw_token_find(&w, (uint64_t)7 << 32, &d, &off), EDS_ERR_NOTFOUND);
    gw_window_free(&w);
}

static void test_journal_list_once_each(void **state)
{
    gw_window w;
    assert_int_equal(gw_window_init(&w, 10, 16), EDS_OK);
    gw_device *a = gw_window_get(&w, "a"), *b = gw_window_get(&w, "b");
    gw_window_journal(&w, a);
    gw_window_journal(&w, b);
    gw_window_journal(&w, a);
    assert_true(a->journaled && b->journaled);
    int seen = 0;
    gw_device *d;
    while ((d = gw_window_journal_pop(&w)) != NULL) {
        assert_false(d->jdirty);
        seen++;
    }
    assert_int_equal(seen, 2);
    gw_window_journal(&w, a); /* marked again in a later batch */
    assert_ptr_equal(gw_window_journal_pop(&w), a);
    gw_window_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devices_by_id_and_bounded),
        cmocka_unit_test(test_ring_order_growth_wrap_and_window),
        cmocka_unit_test(test_trim_keeps_inflight_prefix),
        cmocka_unit_test(test_tokens_name_records_until_gone),
        cmocka_unit_test(test_journal_list_once_each),
    };
    return cmocka_run_group_tests_name("gw_window", tests, NULL, NULL);
}
