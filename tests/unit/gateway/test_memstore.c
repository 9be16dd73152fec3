/*
 * test_memstore.c - gw_memstore, the in-memory persistence table of a
 * clean-mode Paho client, against gw_memstore.h: a put is read back as the
 * concatenation of its buffers and replaces an entry with the same key, a
 * removed key is gone and its entry is reused, the table grows past its
 * hint, keys lists exactly the live ones, bad keys are refused, clear empties
 * it, and after warm-up a put/get/remove cycle allocates nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_memstore.h"

static int allocs; /* calls of counting_alloc */

static void *counting_alloc(size_t n)
{
    allocs++;
    return malloc(n);
}

static void put_str(gw_memstore *m, const char *key, const char *a, const char *b)
{
    char *bufs[2] = {(char *)a, (char *)b};
    int lens[2] = {(int)strlen(a), b ? (int)strlen(b) : 0};
    assert_int_equal(gw_memstore_put(m, key, b ? 2 : 1, bufs, lens), EDS_OK);
}

static void check_value(const gw_memstore *m, const char *key, const char *want)
{
    char *buf;
    int len;
    assert_int_equal(gw_memstore_get(m, key, malloc, &buf, &len), EDS_OK);
    assert_int_equal(len, (int)strlen(want));
    assert_memory_equal(buf, want, strlen(want));
    assert_int_equal(buf[len], '\0');
    free(buf);
}

static void test_put_get_replace_remove(void **state)
{
    (void)state;
    gw_memstore m;
    assert_int_equal(gw_memstore_init(&m, 4), EDS_OK);
    put_str(&m, "c-1", "topic", "payload");
    put_str(&m, "s-7", "x", NULL);
    assert_int_equal(gw_memstore_count(&m), 2);
    check_value(&m, "c-1", "topicpayload");
    check_value(&m, "s-7", "x");
    put_str(&m, "c-1", "new", NULL); /* replaces */
    assert_int_equal(gw_memstore_count(&m), 2);
    check_value(&m, "c-1", "new");
    assert_true(gw_memstore_contains(&m, "s-7"));
    assert_int_equal(gw_memstore_remove(&m, "s-7"), EDS_OK);
    assert_false(gw_memstore_contains(&m, "s-7"));
    assert_int_equal(gw_memstore_remove(&m, "s-7"), EDS_ERR_NOTFOUND);
    char *buf = (char *)1;
    int len = 5;
    assert_int_equal(gw_memstore_get(&m, "s-7", malloc, &buf, &len), EDS_ERR_NOTFOUND);
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(gw_memstore_count(&m), 1);
    gw_memstore_free(&m);
}

static void test_grows_and_lists_live_keys(void **state)
{
    (void)state;
    gw_memstore m;
    assert_int_equal(gw_memstore_init(&m, 1), EDS_OK);
    char key[16], val[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "c-%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        put_str(&m, key, val, NULL);
    }
    for (int i = 0; i < 1000; i += 2) {
        snprintf(key, sizeof(key), "c-%d", i);
        assert_int_equal(gw_memstore_remove(&m, key), EDS_OK);
    }
    assert_int_equal(gw_memstore_count(&m), 500);
    for (int i = 1; i < 1000; i += 2) {
        snprintf(key, sizeof(key), "c-%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        check_value(&m, key, val);
    }
    char **keys;
    int n;
    assert_int_equal(gw_memstore_keys(&m, malloc, free, &keys, &n), EDS_OK);
    assert_int_equal(n, 500);
    int odd = 0;
    for (int i = 0; i < n; i++) {
        int v = atoi(keys[i] + 2);
        odd += v % 2 == 1 && strncmp(keys[i], "c-", 2) == 0;
        free(keys[i]);
    }
    free(keys);
    assert_int_equal(odd, 500);
    gw_memstore_clear(&m);
    assert_int_equal(gw_memstore_count(&m), 0);
    assert_false(gw_memstore_contains(&m, "c-1"));
    assert_int_equal(gw_memstore_keys(&m, malloc, free, &keys, &n), EDS_OK);
    assert_null(keys);
    assert_int_equal(n, 0);
    put_str(&m, "c-1", "again", NULL); /* usable after clear */
    check_value(&m, "c-1", "again");
    gw_memstore_free(&m);
}

static void test_refuses_bad_keys_and_lengths(void **state)
{
    (void)state;
    gw_memstore m;
    assert_int_equal(gw_memstore_init(&m, 4), EDS_OK);
    char *bufs[1] = {"x"};
    int lens[1] = {1};
    char longkey[GW_MEMSTORE_KEY_MAX + 2];
    memset(longkey, 'k', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(gw_memstore_put(&m, "", 1, bufs, lens), EDS_ERR_INVAL);
    assert_int_equal(gw_memstore_put(&m, longkey, 1, bufs, lens), EDS_ERR_INVAL);
    int neg[1] = {-1};
    assert_int_equal(gw_memstore_put(&m, "c-1", 1, bufs, neg), EDS_ERR_INVAL);
    assert_int_equal(gw_memstore_count(&m), 0);
    longkey[GW_MEMSTORE_KEY_MAX] = '\0'; /* exactly the longest */
    assert_int_equal(gw_memstore_put(&m, longkey, 1, bufs, lens), EDS_OK);
    assert_int_equal(gw_memstore_put(&m, "empty", 0, NULL, NULL), EDS_OK);
    check_value(&m, "empty", "");
    gw_memstore_free(&m);
}

/* The point of the module: once warm, the record rate allocates nothing here but the
 * copy handed out by get: entries stay, buffers are reused (same pointers). */
static void test_reuses_entries_and_buffers(void **state)
{
    (void)state;
    gw_memstore m;
    assert_int_equal(gw_memstore_init(&m, 8), EDS_OK);
    char payload[300];
    memset(payload, 'p', sizeof(payload));
    char *bufs[1] = {payload};
    int lens[1] = {(int)sizeof(payload)};
    char key[16];
    for (int i = 0; i < 8; i++) { /* warm-up: every entry gets a buffer */
        snprintf(key, sizeof(key), "c-%d", i);
        assert_int_equal(gw_memstore_put(&m, key, 1, bufs, lens), EDS_OK);
    }
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof(key), "c-%d", i);
        assert_int_equal(gw_memstore_remove(&m, key), EDS_OK);
    }
    char *before[8];
    for (uint32_t i = 0; i < 8; i++)
        before[i] = m.e[i].buf;
    uint32_t n_entries = m.n_entries;
    for (int i = 8; i < 10008; i++) { /* steady state: put, get, remove */
        snprintf(key, sizeof(key), "c-%d", i);
        assert_int_equal(gw_memstore_put(&m, key, 1, bufs, lens), EDS_OK);
        char *got;
        int len;
        allocs = 0;
        assert_int_equal(gw_memstore_get(&m, key, counting_alloc, &got, &len), EDS_OK);
        assert_int_equal(allocs, 1); /* only the copy handed out */
        free(got);
        assert_int_equal(gw_memstore_remove(&m, key), EDS_OK);
    }
    assert_int_equal(m.n_entries, n_entries);
    for (uint32_t i = 0; i < 8; i++)
        assert_ptr_equal(m.e[i].buf, before[i]); /* no buffer was replaced */
    /* a large record's buffer is not kept */
    char *big = calloc(1, GW_MEMSTORE_KEEP_BYTES + 1);
    char *bb[1] = {big};
    int bl[1] = {GW_MEMSTORE_KEEP_BYTES + 1};
    assert_int_equal(gw_memstore_put(&m, "c-big", 1, bb, bl), EDS_OK);
    assert_int_equal(gw_memstore_remove(&m, "c-big"), EDS_OK);
    for (uint32_t i = 0; i < m.n_entries; i++)
        assert_true(m.e[i].cap <= GW_MEMSTORE_KEEP_BYTES);
    free(big);
    gw_memstore_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_replace_remove),
        cmocka_unit_test(test_grows_and_lists_live_keys),
        cmocka_unit_test(test_refuses_bad_keys_and_lengths),
        cmocka_unit_test(test_reuses_entries_and_buffers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
