/*
 * test_pubq.c - gw_pubq, the publisher's slots and events, against gw_pubq.h:
 * completions come out in the order they are reported and carry their tokens,
 * the max_inflight bound counts unpopped completions, a report that comes
 * during the hand-over to Paho counts the publish as accepted, a refused
 * hand-over leaves no event, failing "everything outstanding" walks the call
 * order, message/control events have bounds of their own, and the age of the
 * oldest outstanding publish (the deadline on publishes). Also
 * gw_pubconf: the publisher's configuration checks and defaults.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gw_pubconf.h"
#include "gw_pubq.h"

static void expect_event(gw_pubq *q, gw_pub_event_type type, uint64_t token)
{
    gw_pubq_event ev;
    assert_int_equal(gw_pubq_pop(q, &ev, 1), 1);
    assert_int_equal(ev.type, type);
    assert_int_equal(ev.token, token);
    free(ev.buf);
}

static uint32_t publish(gw_pubq *q, uint64_t token)
{
    uint32_t i = gw_pubq_begin(q, token);
    assert_int_not_equal(i, GW_PUBQ_NIL);
    assert_true(gw_pubq_end(q, i, true, 0));
    return i;
}

static void test_completions_carry_tokens_in_report_order(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 4, 2, 2), EDS_OK);
    uint32_t a = publish(&q, 100), b = publish(&q, 101), c = publish(&q, 102);
    assert_int_equal(q.inflight, 3);
    assert_int_equal(gw_pubq_oldest(&q), a);
    assert_true(gw_pubq_report(&q, b, true));
    assert_true(gw_pubq_report(&q, a, false));
    assert_false(gw_pubq_report(&q, a, true)); /* reported once only */
    assert_int_equal(gw_pubq_oldest(&q), c);
    expect_event(&q, GW_PUB_DONE, 101);
    expect_event(&q, GW_PUB_FAILED, 100);
    assert_true(gw_pubq_report(&q, c, true));
    expect_event(&q, GW_PUB_DONE, 102);
    assert_int_equal(q.inflight, 0);
    assert_int_equal(q.undispatched, 0);
    assert_int_equal(gw_pubq_oldest(&q), GW_PUBQ_NIL);
    gw_pubq_event ev;
    assert_int_equal(gw_pubq_pop(&q, &ev, 1), 0);
    gw_pubq_free(&q);
}

/* The deadline on outstanding publishes: the oldest slot's age at the clock passed in,
 * from the end of its hand-over (0 while being handed over), counted from the connection
 * at the earliest, only at or past the timeout. */
static void test_oldest_age_and_deadline(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 4, 2, 2), EDS_OK);
    assert_int_equal(gw_pubq_oldest_age(&q, 5000), -1); /* nothing outstanding */
    assert_int_equal(gw_pubq_overdue(&q, 99000, 0, 10000), -1);
    uint32_t a = gw_pubq_begin(&q, 1);
    assert_int_equal(gw_pubq_oldest_age(&q, 900), 0); /* being handed over */
    assert_true(gw_pubq_end(&q, a, true, 1000));
    uint32_t b = gw_pubq_begin(&q, 2);
    assert_int_equal(gw_pubq_oldest_age(&q, 1500), 500);
    assert_int_equal(gw_pubq_oldest_age(&q, 900), 0); /* a clock read before the end */
    assert_int_equal(gw_pubq_overdue(&q, 10999, 0, 10000), -1);
    assert_int_equal(gw_pubq_overdue(&q, 11000, 0, 10000), 10000);
    assert_int_equal(gw_pubq_overdue(&q, 11000, 0, 0), -1); /* 0 = no deadline */
    /* Resent on a connection up since 8000: the whole timeout again from there. */
    assert_int_equal(gw_pubq_overdue(&q, 17999, 8000, 10000), -1);
    assert_int_equal(gw_pubq_overdue(&q, 18000, 8000, 10000), 10000);
    /* The oldest confirmed: the next one counts, from the end of its hand-over. */
    assert_true(gw_pubq_end(&q, b, true, 4000));
    assert_true(gw_pubq_report(&q, a, true));
    assert_int_equal(gw_pubq_oldest_age(&q, 11000), 7000);
    assert_int_equal(gw_pubq_overdue(&q, 11000, 0, 10000), -1);
    assert_int_equal(gw_pubq_overdue(&q, 14500, 0, 10000), 10500);
    assert_true(gw_pubq_report(&q, b, false));
    assert_int_equal(gw_pubq_oldest_age(&q, 20000), -1);
    /* A withdrawn hand-over leaves nothing outstanding. */
    uint32_t c = gw_pubq_begin(&q, 3);
    assert_false(gw_pubq_end(&q, c, false, 21000));
    assert_int_equal(gw_pubq_overdue(&q, 99000, 0, 10000), -1);
    /* Reported during the hand-over: no longer outstanding either. */
    uint32_t d = gw_pubq_begin(&q, 4);
    assert_true(gw_pubq_report(&q, d, false));
    assert_int_equal(gw_pubq_oldest_age(&q, 50000), -1);
    assert_true(gw_pubq_end(&q, d, true, 30000));
    gw_pubq_free(&q);
}

static void test_unpopped_completions_count_against_max_inflight(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 2, 0, 1), EDS_OK);
    uint32_t a = publish(&q, 1);
    publish(&q, 2);
    assert_int_equal(gw_pubq_begin(&q, 3), GW_PUBQ_NIL); /* two outstanding */
    assert_true(gw_pubq_report(&q, a, true));
    /* The slot is free, but its DONE still waits in the queue: still full. */
    assert_int_equal(gw_pubq_begin(&q, 3), GW_PUBQ_NIL);
    expect_event(&q, GW_PUB_DONE, 1);
    uint32_t c = gw_pubq_begin(&q, 3);
    assert_int_not_equal(c, GW_PUBQ_NIL);
    assert_true(gw_pubq_end(&q, c, true, 0));
    gw_pubq_free(&q);
}

static void test_report_during_hand_over(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 2, 0, 1), EDS_OK);
    uint32_t a = gw_pubq_begin(&q, 7);
    assert_true(gw_pubq_outstanding(&q, a));
    /* Paho called back before MQTTAsync_send returned. */
    assert_true(gw_pubq_report(&q, a, true));
    assert_false(gw_pubq_outstanding(&q, a));
    /* Whatever Paho then returns, the publish counts as accepted: its event is queued. */
    assert_true(gw_pubq_end(&q, a, false, 0));
    expect_event(&q, GW_PUB_DONE, 7);
    assert_int_equal(q.inflight, 0);
    /* The slot was released exactly once: both slots can be taken again. */
    assert_int_not_equal(gw_pubq_begin(&q, 8), GW_PUBQ_NIL);
    assert_int_not_equal(gw_pubq_begin(&q, 9), GW_PUBQ_NIL);
    assert_int_equal(gw_pubq_begin(&q, 10), GW_PUBQ_NIL);
    gw_pubq_free(&q);
}

static void test_refused_hand_over_leaves_nothing(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 3, 0, 1), EDS_OK);
    uint32_t a = publish(&q, 1);
    uint32_t b = gw_pubq_begin(&q, 2);
    uint32_t c = publish(&q, 3);
    assert_false(gw_pubq_end(&q, b, false, 0)); /* Paho refused it */
    assert_false(gw_pubq_outstanding(&q, b));
    assert_false(gw_pubq_report(&q, b, true)); /* a late callback for it is ignored */
    assert_int_equal(q.inflight, 2);
    assert_int_equal(q.ev_count, 0);
    /* Failing everything outstanding walks the call order: 1 then 3. */
    while (gw_pubq_oldest(&q) != GW_PUBQ_NIL)
        assert_true(gw_pubq_report(&q, gw_pubq_oldest(&q), false));
    expect_event(&q, GW_PUB_FAILED, 1);
    expect_event(&q, GW_PUB_FAILED, 3);
    (void)a;
    (void)c;
    gw_pubq_free(&q);
}

static bool push_msg(gw_pubq *q, char *buf, int qos)
{
    gw_pubq_event m = {.buf = buf, .topic_len = 1, .len = 1, .qos = qos, .expiry_s = -1};
    return gw_pubq_push_message(q, &m);
}

static void test_messages_and_control_have_own_bounds(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 1, 2, 2), EDS_OK);
    uint32_t a = publish(&q, 5);
    for (int i = 0; i < 2; i++) {
        char *buf = malloc(8);
        memcpy(buf, "t\0p\0", 4);
        assert_true(gw_pubq_message_room(&q));
        assert_true(push_msg(&q, buf, 1));
    }
    assert_false(gw_pubq_message_room(&q));
    char *extra = malloc(4);
    assert_false(push_msg(&q, extra, 1)); /* not taken */
    free(extra);
    assert_true(gw_pubq_push_control(&q, GW_PUB_CONNECTED, 0));
    assert_true(gw_pubq_push_control(&q, GW_PUB_RESTORED, 1));
    assert_false(gw_pubq_push_control(&q, GW_PUB_DISCONNECTED, 0));
    assert_true(gw_pubq_report(&q, a, true)); /* a completion always has its place */
    gw_pubq_event ev[8];
    assert_int_equal(gw_pubq_pop(&q, ev, 8), 5);
    assert_int_equal(ev[0].type, GW_PUB_MESSAGE);
    assert_int_equal(ev[0].topic_len, 1);
    assert_string_equal(ev[0].buf, "t");
    assert_int_equal(ev[1].type, GW_PUB_MESSAGE);
    assert_int_equal(ev[2].type, GW_PUB_CONNECTED);
    assert_int_equal(ev[3].type, GW_PUB_RESTORED);
    assert_int_equal(ev[3].qos, 1);
    assert_int_equal(ev[4].type, GW_PUB_DONE);
    free(ev[0].buf);
    free(ev[1].buf);
    assert_true(gw_pubq_message_room(&q));
    assert_int_equal(q.ev_control, 0);
    /* Unpopped messages are freed with the queue (ASan would report a leak). */
    char *left = malloc(4);
    assert_true(push_msg(&q, left, 0));
    gw_pubq_free(&q);
    gw_pubq_free(&q); /* a zeroed queue is fine */
}

/* MQTT 5: the broker's receive maximum lowers what may be outstanding (never above
 * max_inflight, never below 1); publishes past it wait. */
static void test_receive_maximum_limits_outstanding(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 10, 4, 4), EDS_OK);
    assert_int_equal(gw_pubq_set_receive_maximum(&q, 5), 3);
    for (int i = 0; i < 3; i++)
        publish(&q, (uint64_t)i);
    assert_int_equal(gw_pubq_begin(&q, 99), GW_PUBQ_NIL);
    assert_int_equal(gw_pubq_set_receive_maximum(&q, 65535), 10);
    assert_int_not_equal(gw_pubq_begin(&q, 99), GW_PUBQ_NIL);
    assert_int_equal(gw_pubq_set_receive_maximum(&q, 1), 1);
    gw_pubq_free(&q);
}

static void test_ring_wraps_many_times(void **state)
{
    (void)state;
    gw_pubq q;
    assert_int_equal(gw_pubq_init(&q, 3, 1, 1), EDS_OK);
    uint64_t next_done = 0, token = 0;
    for (int round = 0; round < 1000; round++) {
        uint32_t i;
        while ((i = gw_pubq_begin(&q, token)) != GW_PUBQ_NIL) {
            assert_true(gw_pubq_end(&q, i, true, 0));
            token++;
        }
        while (gw_pubq_oldest(&q) != GW_PUBQ_NIL)
            assert_true(gw_pubq_report(&q, gw_pubq_oldest(&q), true));
        gw_pubq_event ev;
        while (gw_pubq_pop(&q, &ev, 1) == 1)
            assert_int_equal(ev.token, next_done++);
    }
    assert_int_equal(next_done, token);
    assert_int_equal(token, 3000);
    gw_pubq_free(&q);
}

static void test_pubconf_checks_and_defaults(void **state)
{
    (void)state;
    gw_pubconf c;
    eds_error err;
    gw_publisher_config cfg = {.client_id = "gw"};
    assert_int_equal(gw_pubconf_make(&cfg, &c, &err), EDS_OK);
    assert_string_equal(c.uri, "tcp://127.0.0.1:1883");
    assert_int_equal(c.keepalive, 30);
    assert_int_equal(c.max_inflight, 64);
    assert_int_equal(c.max_messages, 256);
    assert_int_equal(c.reconnect_min_ms, 1000);
    assert_int_equal(c.reconnect_max_ms, 30000);
    assert_int_equal(c.publish_timeout_ms, 0); /* no deadline unless asked */
    gw_pubconf_free(&c);
    cfg.publish_timeout_s = 10;
    assert_int_equal(gw_pubconf_make(&cfg, &c, &err), EDS_OK);
    assert_int_equal(c.publish_timeout_ms, 10000);
    gw_pubconf_free(&c);

    cfg = (gw_publisher_config){.client_id = "gw",
                                .host = "::1",
                                .port = 8883,
                                .cafile = "ca",
                                .password = "pw",
                                .max_inflight = 256,
                                .persistent = true,
                                .receive_maximum = 20,
                                .reconnect_min_ms = 5000,
                                .reconnect_max_ms = 10};
    assert_int_equal(gw_pubconf_make(&cfg, &c, &err), EDS_OK);
    assert_string_equal(c.uri, "ssl://[::1]:8883");
    assert_string_equal(c.password, "pw");
    assert_int_equal(c.max_inflight, 18); /* receive maximum 20 - 2 */
    assert_int_equal(c.reconnect_max_ms, 5000);
    gw_pubconf_free(&c);
    cfg.persistent = false; /* the cap is for the persistent session only */
    assert_int_equal(gw_pubconf_make(&cfg, &c, &err), EDS_OK);
    assert_int_equal(c.max_inflight, 256);
    gw_pubconf_free(&c);

    const gw_publisher_config bad[] = {
        {.client_id = ""},
        {.client_id = "gw", .port = 70000},
        {.client_id = "gw", .max_inflight = 65001},
        {.client_id = "gw", .will_payload = "x"},
        {.client_id = "gw", .certfile = "c"},
        {.client_id = "gw", .keepalive = -1},
        {.client_id = "gw", .publish_timeout_s = -1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        eds_error_clear(&err);
        assert_int_equal(gw_pubconf_make(&bad[i], &c, &err), EDS_ERR_INVAL);
        assert_non_null(strstr(err.msg, "mqtt: "));
        assert_null(c.uri);
    }
    assert_int_equal(gw_pubconf_make(NULL, &c, &err), EDS_ERR_INVAL);
    static char host[700];
    memset(host, 'h', sizeof(host) - 1);
    cfg = (gw_publisher_config){.client_id = "gw", .host = host};
    assert_int_equal(gw_pubconf_make(&cfg, &c, &err), EDS_ERR_INVAL);
    assert_non_null(strstr(err.msg, "too long"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completions_carry_tokens_in_report_order),
        cmocka_unit_test(test_unpopped_completions_count_against_max_inflight),
        cmocka_unit_test(test_report_during_hand_over),
        cmocka_unit_test(test_oldest_age_and_deadline),
        cmocka_unit_test(test_refused_hand_over_leaves_nothing),
        cmocka_unit_test(test_messages_and_control_have_own_bounds),
        cmocka_unit_test(test_ring_wraps_many_times),
        cmocka_unit_test(test_receive_maximum_limits_outstanding),
        cmocka_unit_test(test_pubconf_checks_and_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
