/* Unit tests for the line framer: same lines whatever the split, CR and
 * empty-line handling, and the max_line bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "eds_err.h"
#include "eds_framer.h"

#define MAX_LINES 64

typedef struct collected {
    char lines[MAX_LINES][128];
    size_t n;
    size_t stop_after; /* 0: never stop */
} collected;

static int collect(void *ctx, const char *line, size_t len)
{
    collected *c = ctx;
    assert_true(c->n < MAX_LINES);
    assert_true(len < sizeof(c->lines[0]));
    memcpy(c->lines[c->n], line, len);
    c->lines[c->n][len] = '\0';
    c->n++;
    if (c->stop_after && c->n == c->stop_after)
        return 42;
    return 0;
}

static const char stream[] = "{\"type\":\"hello\"}\n"
                             "\n"
                             "{\"a\":1}\r\n"
                             "\r\n"
                             "plain\n"
                             "with\rinner cr\n"
                             "last\r\n";
static const char *const expected[] = {"{\"type\":\"hello\"}", "{\"a\":1}", "plain",
                                       "with\rinner cr", "last"};
#define N_EXPECTED (sizeof(expected) / sizeof(expected[0]))

static void assert_expected(const collected *c)
{
    assert_int_equal(c->n, N_EXPECTED);
    for (size_t i = 0; i < N_EXPECTED; i++)
        assert_string_equal(c->lines[i], expected[i]);
}

static void test_whole(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    assert_int_equal(eds_framer_feed(&f, stream, strlen(stream), collect, &c), EDS_OK);
    assert_expected(&c);
    assert_int_equal(eds_framer_pending(&f), 0);
    eds_framer_free(&f);
}

static void test_byte_by_byte(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    for (size_t i = 0; i < strlen(stream); i++)
        assert_int_equal(eds_framer_feed(&f, stream + i, 1, collect, &c), EDS_OK);
    assert_expected(&c);
    eds_framer_free(&f);
}

static void test_random_splits(void **state)
{
    srand(12345);
    for (int round = 0; round < 2000; round++) {
        eds_framer f;
        collected c = {0};
        eds_framer_init(&f, 1024);
        size_t off = 0, total = strlen(stream);
        while (off < total) {
            size_t n = 1 + (size_t)rand() % 12;
            if (n > total - off)
                n = total - off;
            /* Feed from a heap copy of exactly n bytes so ASan catches over-reads. */
            char *piece = malloc(n);
            memcpy(piece, stream + off, n);
            assert_int_equal(eds_framer_feed(&f, piece, n, collect, &c), EDS_OK);
            free(piece);
            off += n;
        }
        assert_expected(&c);
        eds_framer_free(&f);
    }
}

static void test_partial_line_is_held(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    assert_int_equal(eds_framer_feed(&f, "abc", 3, collect, &c), EDS_OK);
    assert_int_equal(c.n, 0);
    assert_int_equal(eds_framer_pending(&f), 3);
    assert_int_equal(eds_framer_feed(&f, "def\nxy", 6, collect, &c), EDS_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.lines[0], "abcdef");
    assert_int_equal(eds_framer_pending(&f), 2);
    eds_framer_free(&f);
}

/* max_line counts the LF: with max_line 8, 7 content bytes pass, 8 fail. */
static void test_limit_boundary(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 8);
    assert_int_equal(eds_framer_feed(&f, "1234567\n", 8, collect, &c), EDS_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.lines[0], "1234567");
    assert_int_equal(eds_framer_feed(&f, "12345678\n", 9, collect, &c), EDS_ERR_TOOLONG);
    assert_int_equal(c.n, 1);
    /* Once failed, it stays failed. */
    assert_int_equal(eds_framer_feed(&f, "a\n", 2, collect, &c), EDS_ERR_TOOLONG);
    eds_framer_free(&f);
}

/* A line that never ends is refused once it passes the limit, in any split,
 * and the framer never holds more than max_line - 1 bytes. */
static void test_unterminated_line_is_bounded(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 100);
    char chunk[7];
    memset(chunk, 'x', sizeof(chunk));
    int rc = EDS_OK;
    size_t fed = 0;
    while (rc == EDS_OK && fed < 10000) {
        rc = eds_framer_feed(&f, chunk, sizeof(chunk), collect, &c);
        fed += sizeof(chunk);
        assert_true(eds_framer_pending(&f) <= 99);
        assert_true(f.cap <= 99);
    }
    assert_int_equal(rc, EDS_ERR_TOOLONG);
    assert_true(fed <= 105);
    assert_int_equal(c.n, 0);
    eds_framer_free(&f);
}

/* A CR counts toward the limit, since the limit is on bytes received. */
static void test_cr_counts_toward_limit(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 5);
    assert_int_equal(eds_framer_feed(&f, "abc\r\n", 5, collect, &c), EDS_OK);
    assert_int_equal(eds_framer_feed(&f, "abcd\r\n", 6, collect, &c), EDS_ERR_TOOLONG);
    assert_int_equal(c.n, 1);
    eds_framer_free(&f);
}

static void test_callback_stops_feed(void **state)
{
    eds_framer f;
    collected c = {0};
    c.stop_after = 2;
    eds_framer_init(&f, 1024);
    assert_int_equal(eds_framer_feed(&f, stream, strlen(stream), collect, &c), 42);
    assert_int_equal(c.n, 2);
    eds_framer_free(&f);
}

static int count_len(void *ctx, const char *line, size_t len)
{
    *(size_t *)ctx = len;
    return 0;
}

/* A big line grows the buffer; after it completes the memory is released. */
static void test_big_line_memory_released(void **state)
{
    eds_framer f;
    eds_framer_init(&f, 65536);
    char *big = malloc(60000);
    memset(big, 'y', 60000);
    size_t seen = 0;
    assert_int_equal(eds_framer_feed(&f, big, 60000, count_len, &seen), EDS_OK);
    assert_int_equal(eds_framer_pending(&f), 60000);
    assert_int_equal(seen, 0);
    assert_int_equal(eds_framer_feed(&f, "\n", 1, count_len, &seen), EDS_OK);
    assert_int_equal(seen, 60000);
    assert_int_equal(eds_framer_pending(&f), 0);
    assert_null(f.buf);
    free(big);
    eds_framer_free(&f);
}

static int pause_each(void *ctx, const char *line, size_t len)
{
    collect(ctx, line, len);
    return EDS_FRAMER_PAUSE;
}

/* Pausing after every line and resuming yields the same lines, and the
 * framer refuses new input while paused. */
static void test_pause_resume(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    size_t half = strlen(stream) / 2;
    int rc = eds_framer_feed(&f, stream, half, pause_each, &c);
    assert_int_equal(rc, EDS_FRAMER_PAUSE);
    assert_int_equal(c.n, 1);
    assert_int_equal(eds_framer_feed(&f, "x\n", 2, pause_each, &c), EDS_ERR_INVAL);
    while (f.paused)
        assert_int_equal(eds_framer_resume(&f, pause_each, &c), EDS_FRAMER_PAUSE);
    rc = eds_framer_feed(&f, stream + half, strlen(stream) - half, pause_each, &c);
    while (f.paused)
        rc = eds_framer_resume(&f, pause_each, &c);
    assert_expected(&c);
    assert_int_equal(eds_framer_resume(&f, pause_each, &c), EDS_OK);
    eds_framer_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_random_splits),
        cmocka_unit_test(test_partial_line_is_held),
        cmocka_unit_test(test_limit_boundary),
        cmocka_unit_test(test_unterminated_line_is_bounded),
        cmocka_unit_test(test_cr_counts_toward_limit),
        cmocka_unit_test(test_callback_stops_feed),
        cmocka_unit_test(test_big_line_memory_released),
        cmocka_unit_test(test_pause_resume),
    };
    return cmocka_run_group_tests_name("framer", tests, NULL, NULL);
}
