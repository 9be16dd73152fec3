/* Unit tests for the pull framer: same lines whatever the split, CR and
 * empty-line handling, the max_line bound, pausing by not asking, and the
 * memory it keeps. */
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
} collected;

static void keep(collected *c, const char *line, size_t len)
{
    assert_true(c->n < MAX_LINES);
    assert_true(len < sizeof(c->lines[0]));
    memcpy(c->lines[c->n], line, len);
    c->lines[c->n][len] = '\0';
    c->n++;
}

/* Asks for lines until the framer wants more input; returns what next said last. */
static int drain(eds_framer *f, collected *c)
{
    const char *line;
    size_t len;
    int rc;
    while ((rc = eds_framer_next(f, &line, &len)) == EDS_FRAMER_LINE)
        keep(c, line, len);
    return rc;
}

/* Writes n bytes through eds_framer_space/commit, as a socket read would. */
static void put(eds_framer *f, const char *data, size_t n)
{
    char *p = NULL;
    assert_int_equal(eds_framer_space(f, n, &p), n);
    memcpy(p, data, n);
    eds_framer_commit(f, n);
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
    put(&f, stream, strlen(stream));
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_expected(&c);
    assert_int_equal(eds_framer_pending(&f), 0);
    eds_framer_free(&f);
}

static void test_byte_by_byte(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    for (size_t i = 0; i < strlen(stream); i++) {
        assert_int_equal(eds_framer_feed(&f, stream + i, 1), EDS_OK);
        assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    }
    assert_expected(&c);
    eds_framer_free(&f);
}

/* Any split gives the same lines. Each read is exactly as big as the room
 * asked for, so the buffer ends right after the input and ASan catches a
 * scan past it. */
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
            put(&f, stream + off, n);
            assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
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
    put(&f, "abc", 3);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_int_equal(c.n, 0);
    assert_int_equal(eds_framer_pending(&f), 3);
    put(&f, "def\nxy", 6);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
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
    put(&f, "1234567\n", 8);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.lines[0], "1234567");
    put(&f, "12345678\n", 9);
    assert_int_equal(drain(&f, &c), EDS_ERR_TOOLONG);
    assert_int_equal(c.n, 1);
    /* Once failed, it stays failed and takes no more input. */
    const char *line;
    size_t len;
    assert_int_equal(eds_framer_feed(&f, "a\n", 2), EDS_ERR_TOOLONG);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_ERR_TOOLONG);
    eds_framer_free(&f);
}

/* Lines before a too-long one are handed out first, in order. */
static void test_lines_before_refusal(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 8);
    put(&f, "ok\nfine\n123456789", 17);
    assert_int_equal(drain(&f, &c), EDS_ERR_TOOLONG);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.lines[1], "fine");
    eds_framer_free(&f);
}

/* A line that never ends is refused once it passes the limit, in any split,
 * and the framer never holds more than max_line - 1 bytes of it. */
static void test_unterminated_line_is_bounded(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 100);
    char chunk[7];
    memset(chunk, 'x', sizeof(chunk));
    int rc = EDS_FRAMER_MORE;
    size_t fed = 0;
    while (rc == EDS_FRAMER_MORE && fed < 10000) {
        put(&f, chunk, sizeof(chunk));
        fed += sizeof(chunk);
        rc = drain(&f, &c);
        if (rc == EDS_FRAMER_MORE)
            assert_true(eds_framer_pending(&f) <= 99);
        assert_true(f.cap <= 99 + sizeof(chunk));
    }
    assert_int_equal(rc, EDS_ERR_TOOLONG);
    assert_true(fed <= 105);
    assert_int_equal(c.n, 0);
    eds_framer_free(&f);
}

/* skip_long: a too-long line comes out once as EDS_FRAMER_SKIPPED with its first
 * max_line - 1 bytes, the rest of it is dropped up to its LF in any split (never held
 * beyond the bound), and the lines after it come out as usual. */
static void test_skip_long_carries_on(void **state)
{
    (void)state;
    eds_framer f;
    eds_framer_init(&f, 8);
    f.skip_long = true;
    const char *line;
    size_t len;
    put(&f, "ok\n{\"id\":12", 11);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_SKIPPED);
    assert_int_equal(len, 7);
    assert_memory_equal(line, "{\"id\":1", 7);
    for (int i = 0; i < 1000; i++) { /* the rest of it, 3 bytes at a time */
        put(&f, "xyz", 3);
        assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_MORE);
        assert_true(eds_framer_pending(&f) < 8);
    }
    put(&f, "z\nnext\n", 7);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_int_equal(len, 4);
    assert_memory_equal(line, "next", 4);
    /* a long line whose LF is in the same read */
    put(&f, "0123456789\nend\n", 15);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_SKIPPED);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_memory_equal(line, "end", 3);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_MORE);
    eds_framer_free(&f);
}

/* A CR counts toward the limit, since the limit is on bytes received. */
static void test_cr_counts_toward_limit(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 5);
    put(&f, "abc\r\n", 5);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    put(&f, "abcd\r\n", 6);
    assert_int_equal(drain(&f, &c), EDS_ERR_TOOLONG);
    assert_int_equal(c.n, 1);
    eds_framer_free(&f);
}

/* A big line grows the buffer; once it is consumed the memory is released. */
static void test_big_line_memory_released(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 65536);
    char *big = malloc(60000);
    memset(big, 'y', 60000);
    assert_int_equal(eds_framer_feed(&f, big, 60000), EDS_OK);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_int_equal(eds_framer_pending(&f), 60000);
    assert_int_equal(eds_framer_feed(&f, "\n", 1), EDS_OK);
    const char *line;
    size_t len;
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_int_equal(len, 60000);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_MORE);
    assert_int_equal(eds_framer_pending(&f), 0);
    assert_null(f.buf);
    free(big);
    eds_framer_free(&f);
}

/* A read that ends inside a line leaves only that partial line held, in a
 * buffer of its size rather than the whole read's. */
static void test_partial_tail_not_pinning_the_read_buffer(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 65536);
    char *chunk = malloc(16384);
    memset(chunk, 'z', 16384);
    for (size_t i = 99; i < 16384 - 100; i += 100)
        chunk[i] = '\n';
    char *p;
    assert_int_equal(eds_framer_space(&f, 16384, &p), 16384);
    memcpy(p, chunk, 16384);
    eds_framer_commit(&f, 16384);
    const char *line;
    size_t len;
    while (eds_framer_next(&f, &line, &len) == EDS_FRAMER_LINE)
        c.n++;
    assert_int_equal(c.n, 162);
    size_t held = eds_framer_pending(&f);
    assert_int_equal(held, 16384 - 162 * 100);
    assert_true(f.cap == held);
    put(&f, "\n", 1);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_int_equal(len, held);
    free(chunk);
    eds_framer_free(&f);
}

/* Pausing is not asking: the unread lines stay where they are (no copy, the
 * span handed out later points into the same buffer) and come out in order
 * whenever the caller asks again, also after more input arrived. */
static void test_pause_is_not_asking(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    size_t half = strlen(stream) / 2;
    put(&f, stream, half);
    const char *line, *buf_before = f.buf;
    size_t len;
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    keep(&c, line, len);
    size_t held = eds_framer_pending(&f);
    assert_true(held > 0);
    /* paused: nothing happens to the input held */
    assert_int_equal(eds_framer_pending(&f), held);
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_ptr_equal(line, buf_before + strlen(expected[0]) + 1 + 1);
    keep(&c, line, len);
    put(&f, stream + half, strlen(stream) - half);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_expected(&c);
    eds_framer_free(&f);
}

/* A lent buffer is read into without an allocation, kept while it holds
 * input (a pause), given back once consumed, and given back too when an
 * unfinished line moves out of it. */
static void test_lend_and_reclaim(void **state)
{
    eds_framer f;
    collected c = {0};
    eds_framer_init(&f, 1024);
    char *lent = malloc(8192), *other = malloc(16);
    assert_true(eds_framer_lend(&f, lent, 8192));
    assert_false(eds_framer_lend(&f, other, 16)); /* it has one */
    free(other);
    size_t cap = 0;
    put(&f, "one\ntwo\n", 8);
    assert_ptr_equal(f.buf, lent);
    const char *line;
    size_t len;
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_null(eds_framer_reclaim(&f, &cap)); /* paused: "two" is still in it */
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_ptr_equal(eds_framer_reclaim(&f, &cap), lent);
    assert_int_equal(cap, 8192);
    assert_null(f.buf);
    assert_null(eds_framer_reclaim(&f, &cap));
    /* An unfinished line moves out; the lent buffer comes back. */
    assert_true(eds_framer_lend(&f, lent, 8192));
    put(&f, "three\nfo", 8);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_ptr_equal(eds_framer_reclaim(&f, &cap), lent);
    assert_ptr_not_equal(f.buf, lent);
    put(&f, "ur\n", 3);
    assert_int_equal(drain(&f, &c), EDS_FRAMER_MORE);
    assert_int_equal(c.n, 3);
    assert_string_equal(c.lines[2], "four");
    free(lent);
    eds_framer_free(&f);
}

/* Room is refused while max_line bytes are held: the caller must ask for
 * lines first, so the buffer stays bounded however the caller reads. */
static void test_space_refused_when_full(void **state)
{
    eds_framer f;
    eds_framer_init(&f, 16);
    char *p;
    assert_int_equal(eds_framer_feed(&f, "a\nb\nc\nd\ne\nf\ng\nh\n", 16), EDS_OK);
    assert_int_equal(eds_framer_space(&f, 64, &p), 0);
    assert_int_equal(eds_framer_feed(&f, "x", 1), EDS_ERR_FULL);
    const char *line;
    size_t len;
    assert_int_equal(eds_framer_next(&f, &line, &len), EDS_FRAMER_LINE);
    assert_int_equal(eds_framer_space(&f, 64, &p), 64);
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
        cmocka_unit_test(test_lines_before_refusal),
        cmocka_unit_test(test_unterminated_line_is_bounded),
        cmocka_unit_test(test_cr_counts_toward_limit),
        cmocka_unit_test(test_skip_long_carries_on),
        cmocka_unit_test(test_big_line_memory_released),
        cmocka_unit_test(test_partial_tail_not_pinning_the_read_buffer),
        cmocka_unit_test(test_pause_is_not_asking),
        cmocka_unit_test(test_space_refused_when_full),
        cmocka_unit_test(test_lend_and_reclaim),
    };
    return cmocka_run_group_tests_name("framer", tests, NULL, NULL);
}
