/* Unit tests for the rate-limited log (eds_log_limit): the first line of a
 * burst is written, the rest of the interval only counted, and the next line
 * (or the flush from a timer) carries the count of those held back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eds_log.h"

static void first_then_counted(void **state)
{
    (void)state;
    eds_log_limit l = EDS_LOG_LIMIT_INIT(1000);
    uint64_t rep = 99;
    int64_t span = 99;
    assert_true(eds_log_limit_check(&l, 5000, &rep, &span));
    assert_int_equal(rep, 0);
    assert_int_equal(span, 0);
    for (int i = 0; i < 700; i++) /* 700 a second, as a full disk logged */
        assert_false(eds_log_limit_check(&l, 5000 + i, &rep, &span));
    assert_false(eds_log_limit_check(&l, 5999, &rep, &span));
    assert_true(eds_log_limit_check(&l, 6000, &rep, &span));
    assert_int_equal(rep, 701);
    assert_int_equal(span, 1000);
    /* after a quiet interval nothing is owed */
    assert_true(eds_log_limit_check(&l, 9000, &rep, &span));
    assert_int_equal(rep, 0);
}

/* Runs fn with stderr sent to a file, and returns what was written. */
static size_t capture(void (*fn)(void *), void *arg, char *out, size_t cap)
{
    char path[] = "/tmp/eds-log-limit-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn(arg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    close(fd);
    assert_true(n >= 0);
    out[n] = '\0';
    return (size_t)n;
}

static void burst(void *arg)
{
    eds_log_limit *l = arg;
    for (int i = 0; i < 1000; i++)
        eds_log_limited(l, EDS_LOG_WARNING, "state journal: No space left on device (%d)", i);
}

static void flush(void *arg)
{
    assert_int_equal(eds_log_limit_flush(arg), 999);
}

static void burst_is_one_line_then_a_summary(void **state)
{
    (void)state;
    eds_log_init("test", EDS_LOG_INFO);
    eds_log_limit l = EDS_LOG_LIMIT_INIT(0);
    l.interval_ms = 60000; /* nothing but the first line within the test */
    char out[4096];
    capture(burst, &l, out, sizeof(out));
    assert_non_null(strstr(out, "warning: state journal: No space left on device (0)\n"));
    assert_null(strstr(out, "(1)"));
    assert_int_equal(l.held, 999);
    /* The summary is due once the interval is over: pretend it is. */
    assert_int_equal(eds_log_limit_flush(&l), 0);
    l.next_ms = 0;
    capture(flush, &l, out, sizeof(out));
    assert_non_null(strstr(out, "No space left on device (999) (repeated 999 times in the last"));
    assert_int_equal(eds_log_limit_flush(&l), 0); /* once */
}

static void below_the_level_is_not_counted(void **state)
{
    (void)state;
    eds_log_init("test", EDS_LOG_ERROR);
    eds_log_limit l = EDS_LOG_LIMIT_INIT(1000);
    assert_false(eds_log_limited(&l, EDS_LOG_WARNING, "hidden"));
    assert_int_equal(l.held, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_then_counted),
        cmocka_unit_test(burst_is_one_line_then_a_summary),
        cmocka_unit_test(below_the_level_is_not_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
