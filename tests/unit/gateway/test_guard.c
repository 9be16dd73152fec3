/*
 * test_guard.c - gw_guard, the per-address guard, against gw_guard.h, with
 * the clock passed in: the per-address cap, the login delay (none for the
 * first failure, then 200 ms doubling to 10 s, reset by a good login),
 * sweeping (failures forgotten after 10 minutes, entries with connections
 * kept), the bound on addresses tracked, known-good addresses (kept for a
 * week, at most GW_GUARD_MAX_GOOD, the oldest forgotten first), and the
 * max_rate bucket (a second's burst, refilled with time).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "eds_err.h"
#include "gw_guard.h"

static void test_conn_cap(void **state)
{
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    gw_ip *ip = gw_guard_ip(&g, "192.0.2.1");
    assert_non_null(ip);
    assert_ptr_equal(gw_guard_ip(&g, "192.0.2.1"), ip);
    assert_ptr_not_equal(gw_guard_ip(&g, "192.0.2.2"), ip);
    ip->conns = 2;
    assert_true(gw_guard_conn_allowed(ip, 3));
    ip->conns = 3;
    assert_false(gw_guard_conn_allowed(ip, 3));
    assert_true(gw_guard_conn_allowed(ip, 0));   /* 0: no limit */
    assert_true(gw_guard_conn_allowed(NULL, 1)); /* untracked */
    gw_guard_free(&g);
}

static void test_login_delay(void **state)
{
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    gw_ip *ip = gw_guard_ip(&g, "2001:db8::1");
    const int64_t want[] = {0, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_int_equal(gw_guard_login_failed(ip, 1000 + (int64_t)i), want[i]);
    assert_int_equal(ip->last_fail_ms, 1009);
    gw_guard_login_ok(&g, ip, 1500);
    assert_int_equal(gw_guard_login_failed(ip, 2000), 0);
    assert_int_equal(gw_guard_login_failed(NULL, 2000), 0);
    gw_guard_free(&g);
}

/* The global budget of failed logins: a burst of `rate`, then `rate` a second, whatever
 * the addresses; no limit at rate 0. */
static void test_fail_budget(void **state)
{
    (void)state;
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    int within = 0;
    for (int i = 0; i < 1000; i++) /* 1000 failures in 100 ms */
        within += gw_guard_fail_budget(&g, 20, 5000 + i / 10);
    assert_int_equal(within, 21); /* the burst of 20, plus 1 earned in the 99 ms */
    assert_true(gw_guard_fail_budget(&g, 20, 5100)); /* 20 a second: 1 every 50 ms */
    assert_true(gw_guard_fail_budget(&g, 20, 5200));
    assert_true(gw_guard_fail_budget(&g, 20, 5200));
    assert_false(gw_guard_fail_budget(&g, 20, 5200));
    for (int i = 0; i < 1000; i++)
        assert_true(gw_guard_fail_budget(&g, 0, 6000));
    gw_guard_free(&g);
}

static void test_sweep(void **state)
{
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    gw_ip *busy = gw_guard_ip(&g, "10.0.0.1");
    busy->conns = 1;
    gw_ip *failed = gw_guard_ip(&g, "10.0.0.2");
    gw_guard_login_failed(failed, 1000);
    gw_guard_login_failed(failed, 1000);
    gw_guard_ip(&g, "10.0.0.3"); /* nothing: goes at the first sweep */
    assert_int_equal(g.n, 3);
    gw_guard_sweep(&g, 1000 + GW_LOGIN_FAIL_FORGET_MS);
    assert_int_equal(g.n, 2); /* failures exactly 10 min old are still kept */
    gw_guard_sweep(&g, 1001 + GW_LOGIN_FAIL_FORGET_MS);
    assert_int_equal(g.n, 1);
    assert_ptr_equal(gw_guard_ip(&g, "10.0.0.1"), busy);
    gw_guard_free(&g);
}

static void test_addresses_bounded(void **state)
{
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    char addr[64];
    for (int i = 0; i < GW_GUARD_MAX_ADDRS; i++) {
        snprintf(addr, sizeof(addr), "2001:db8::%x:%x", i >> 16, i & 0xffff);
        assert_non_null(gw_guard_ip(&g, addr));
    }
    assert_null(gw_guard_ip(&g, "198.51.100.7"));
    assert_non_null(gw_guard_ip(&g, "2001:db8::0:5")); /* known ones still found */
    gw_guard_sweep(&g, 1);
    assert_int_equal(g.n, 0);
    assert_non_null(gw_guard_ip(&g, "198.51.100.7"));
    gw_guard_free(&g);
}

static void count_good(void *ctx, const gw_ip *ip)
{
    assert_true(ip->good);
    (*(int *)ctx)++;
}

/* An address a device logged in from is known-good: kept without connections,
 * forgotten after a week; a failed login alone does not make it good. */
static void test_known_good(void **state)
{
    (void)state;
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    gw_ip *bad = gw_guard_ip(&g, "192.0.2.9");
    gw_guard_login_failed(bad, 1);
    assert_false(gw_guard_known_good(bad));
    assert_false(gw_guard_known_good(NULL));
    gw_ip *ip = gw_guard_ip(&g, "192.0.2.10");
    gw_guard_login_ok(&g, ip, 1000);
    assert_true(gw_guard_known_good(ip));
    gw_guard_login_ok(&g, ip, 2000); /* again: counted once, the time moves on */
    assert_int_equal(g.n_good, 1);
    gw_guard_sweep(&g, 2000 + GW_LOGIN_FAIL_FORGET_MS + 1); /* no connection left */
    assert_int_equal(g.n, 1);                               /* the failure went */
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "192.0.2.10")));
    gw_guard_sweep(&g, 2000 + GW_GOOD_FORGET_MS);
    assert_int_equal(g.n_good, 1);
    gw_guard_sweep(&g, 2000 + GW_GOOD_FORGET_MS + 1);
    assert_int_equal(g.n_good, 0);
    assert_int_equal(g.n, 0);
    gw_guard_free(&g);
}

/* At most GW_GUARD_MAX_GOOD known-good addresses: one more forgets the address
 * whose last good login is oldest, not a recent one. */
static void test_known_good_bounded(void **state)
{
    (void)state;
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    char a[64];
    for (int i = 0; i < GW_GUARD_MAX_GOOD; i++) {
        snprintf(a, sizeof(a), "2001:db8::1:%x", i);
        gw_guard_login_ok(&g, gw_guard_ip(&g, a), 10 + i);
    }
    assert_int_equal(g.n_good, GW_GUARD_MAX_GOOD);
    gw_guard_login_ok(&g, gw_guard_ip(&g, "2001:db8::1:0"), 100000); /* the first, again */
    gw_guard_login_ok(&g, gw_guard_ip(&g, "198.51.100.1"), 100001);  /* one more */
    assert_int_equal(g.n_good, GW_GUARD_MAX_GOOD);
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "198.51.100.1")));
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "2001:db8::1:0")));
    assert_false(gw_guard_known_good(gw_guard_ip(&g, "2001:db8::1:1"))); /* the oldest */
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "2001:db8::1:2")));
    gw_guard_free(&g);
}

/* Restored known-good addresses (gw_goodfile at start) keep the later login,
 * count as no change; logins mark what the file must get. */
static void test_restore_and_marks(void **state)
{
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    assert_true(gw_guard_restore_good(&g, "192.0.2.1", 500));
    assert_true(gw_guard_restore_good(&g, "192.0.2.1", 100)); /* older: kept at 500 */
    gw_ip *ip = gw_guard_ip(&g, "192.0.2.1");
    assert_true(gw_guard_known_good(ip));
    assert_int_equal(ip->good_ms, 500);
    assert_int_equal(g.n_good, 1);
    assert_int_equal(g.good_added, 0);
    assert_false(g.good_seen);
    gw_guard_login_ok(&g, ip, 900); /* known already: seen, not added */
    assert_int_equal(g.good_added, 0);
    assert_true(g.good_seen);
    gw_guard_login_ok(&g, gw_guard_ip(&g, "192.0.2.2"), 1000);
    assert_int_equal(g.good_added, 1);
    int n = 0;
    gw_guard_each_good(&g, count_good, &n);
    assert_int_equal(n, 2);
    gw_guard_free(&g);
}

/* Connections opened lately: this 10 s window and the one before; an entry
 * with recent opens outlives its connections until they are old. */
static void test_recent_opens(void **state)
{
    gw_guard g;
    assert_int_equal(gw_guard_init(&g), EDS_OK);
    gw_ip *ip = gw_guard_ip(&g, "192.0.2.20");
    assert_int_equal(gw_guard_recent_opens(ip, 100000), 0);
    assert_int_equal(gw_guard_recent_opens(NULL, 100000), UINT32_MAX); /* untracked: most */
    gw_guard_opened(ip, 100000);
    gw_guard_opened(ip, 105000);
    assert_int_equal(gw_guard_recent_opens(ip, 109999), 2);
    gw_guard_opened(ip, 110000); /* the next window: the first two still count */
    assert_int_equal(gw_guard_recent_opens(ip, 119999), 3);
    assert_int_equal(gw_guard_recent_opens(ip, 120000), 1); /* only the window before */
    assert_int_equal(gw_guard_recent_opens(ip, 130000), 0);
    gw_guard_opened(ip, 150000); /* after a gap: counted afresh */
    assert_int_equal(gw_guard_recent_opens(ip, 150000), 1);
    gw_guard_sweep(&g, 155000); /* no connection, but opened lately: kept */
    assert_ptr_equal(gw_guard_ip(&g, "192.0.2.20"), ip);
    assert_int_equal(gw_guard_recent_opens(ip, 155000), 1);
    gw_guard_sweep(&g, 170000); /* 20 s later: nothing recent left, freed */
    assert_int_equal(g.n, 0);
    gw_guard_free(&g);
}

static void test_bucket(void **state)
{
    gw_bucket b = {0};
    assert_false(gw_bucket_empty(&b, 0, 5)); /* no max_rate */
    int64_t now = 1000;
    int taken = 0;
    while (!gw_bucket_empty(&b, 10, now) && taken < 100) {
        gw_bucket_take(&b, 10, now);
        taken++;
    }
    assert_int_equal(taken, 10); /* one second's worth */
    assert_true(gw_bucket_empty(&b, 10, now + 99));
    assert_false(gw_bucket_empty(&b, 10, now + 100)); /* 100 ms = one record at 10/s */
    assert_false(gw_bucket_empty(&b, 10, now + 60000));
    assert_true(b.tokens <= 10); /* never more than the burst */
    gw_bucket slow = {0};
    assert_false(gw_bucket_empty(&slow, 0.5, 1)); /* below 1/s the burst is one record */
    gw_bucket_take(&slow, 0.5, 1);
    assert_true(gw_bucket_empty(&slow, 0.5, 1000));
    assert_false(gw_bucket_empty(&slow, 0.5, 2001));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_cap),
        cmocka_unit_test(test_login_delay),
        cmocka_unit_test(test_sweep),
        cmocka_unit_test(test_addresses_bounded),
        cmocka_unit_test(test_bucket),
        cmocka_unit_test(test_fail_budget),
        cmocka_unit_test(test_known_good),
        cmocka_unit_test(test_known_good_bounded),
        cmocka_unit_test(test_restore_and_marks),
        cmocka_unit_test(test_recent_opens),
    };
    return cmocka_run_group_tests_name("gw_guard", tests, NULL, NULL);
}
