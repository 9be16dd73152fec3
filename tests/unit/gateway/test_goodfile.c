/*
 * test_goodfile.c - gw_goodfile, the known-good addresses on disk: what a
 * gateway learned is known again after a restart (with its age), a new
 * address is written within the batch time and not at once, lines older than
 * a week, malformed lines and a clock that went back are handled, and a write
 * that fails leaves the old file and no known_good.tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eds_err.h"
#include "gw_goodfile.h"
#include "gw_guard.h"

#define WALL ((time_t)1800000000)

static char *read_file(const char *dir)
{
    static char buf[4096];
    char path[128];
    snprintf(path, sizeof(path), "%s/known_good", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void write_file(const char *dir, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/known_good", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A fresh guard with dir's file loaded (now_ms, wall). */
static gw_goodfile *open_into(gw_guard *g, const char *dir, int64_t now_ms, time_t wall)
{
    assert_int_equal(gw_guard_init(g), EDS_OK);
    gw_goodfile *f = NULL;
    eds_error err;
    assert_int_equal(gw_goodfile_open(dir, g, now_ms, wall, &f, &err), EDS_OK);
    return f;
}

static void finish(gw_goodfile *f, gw_guard *g, int64_t now_ms, time_t wall, const char *dir)
{
    gw_goodfile_close(f, g, now_ms, wall);
    gw_guard_free(g);
    if (dir) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
    }
}

/* The file is written only once a tick finds it written by the thread:
 * close waits for it. */
static void test_round_trip(void **state)
{
    char dir[] = "/tmp/eds-goodfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    gw_guard g;
    gw_goodfile *f = open_into(&g, dir, 1000000, WALL);
    gw_guard_login_ok(&g, gw_guard_ip(&g, "192.0.2.7"), 1000000 - 60000); /* a minute ago */
    gw_guard_login_ok(&g, gw_guard_ip(&g, "2001:db8::7"), 1000000);
    gw_goodfile_tick(f, &g, 1000000, WALL);
    assert_null(read_file(dir)); /* batched: not at the login */
    finish(f, &g, 1000000, WALL, NULL);
    char *text = read_file(dir);
    assert_non_null(text);
    assert_non_null(strstr(text, "192.0.2.7 1799999940\n"));
    assert_non_null(strstr(text, "2001:db8::7 1800000000\n"));

    /* A restart an hour later (another monotonic clock): known, with their ages. */
    f = open_into(&g, dir, 5000, WALL + 3600);
    gw_ip *ip = gw_guard_ip(&g, "192.0.2.7");
    assert_true(gw_guard_known_good(ip));
    assert_int_equal(ip->good_ms, 5000 - 3660 * 1000);
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "2001:db8::7")));
    assert_false(gw_guard_known_good(gw_guard_ip(&g, "192.0.2.8")));
    assert_int_equal(g.good_added, 0); /* loaded: nothing to write */
    finish(f, &g, 5000, WALL + 3600, dir);
}

/* A new address reaches the file by the loop's ticks within the batch time. */
static void test_batched_write(void **state)
{
    char dir[] = "/tmp/eds-goodfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    gw_guard g;
    gw_goodfile *f = open_into(&g, dir, 0, WALL);
    gw_guard_login_ok(&g, gw_guard_ip(&g, "192.0.2.9"), 100);
    gw_goodfile_tick(f, &g, 100, WALL);
    gw_goodfile_tick(f, &g, 100 + GW_GOODFILE_BATCH_MS - 1, WALL);
    usleep(100000);
    assert_null(read_file(dir));
    gw_goodfile_tick(f, &g, 100 + GW_GOODFILE_BATCH_MS, WALL); /* due: handed over */
    char *text = NULL;
    for (int i = 0; i < 500 && !(text = read_file(dir)); i++)
        usleep(10000); /* the writer thread: bounded wait */
    assert_non_null(text);
    assert_non_null(strstr(text, "192.0.2.9 "));
    finish(f, &g, 3000, WALL, dir);
}

/* Old, malformed and future lines at load. */
static void test_load_filters(void **state)
{
    char dir[] = "/tmp/eds-goodfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "192.0.2.1 1800000000\n"       /* now */
                    "192.0.2.2 1799000000\n"       /* 11.6 days ago: forgotten */
                    "192.0.2.3 1800009999\n"       /* in the future: a clock that went back */
                    "192.0.2.4\n"                  /* no time */
                    "not-an-address 1800000000\n"  /* junk */
                    "2001:DB8:0:0::5 1800000000\n" /* not inet_ntop's form: normalised */
                    "192.0.2.6 18000");            /* torn last line */
    gw_guard g;
    gw_goodfile *f = open_into(&g, dir, 1000000, WALL);
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "192.0.2.1")));
    assert_false(gw_guard_known_good(gw_guard_ip(&g, "192.0.2.2")));
    gw_ip *future = gw_guard_ip(&g, "192.0.2.3");
    assert_true(gw_guard_known_good(future));
    assert_int_equal(future->good_ms, 1000000);
    assert_false(gw_guard_known_good(gw_guard_ip(&g, "192.0.2.4")));
    assert_true(gw_guard_known_good(gw_guard_ip(&g, "2001:db8::5")));
    assert_false(gw_guard_known_good(gw_guard_ip(&g, "192.0.2.6")));
    assert_int_equal(g.n_good, 3);
    finish(f, &g, 1000000, WALL, dir);
}

/* A write that cannot be done (known_good.tmp is a directory here; a full
 * disk in tests/integration/test_gateway_full_disk.py) keeps the old file. */
static void test_failed_write_keeps_old_file(void **state)
{
    char dir[] = "/tmp/eds-goodfile-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_file(dir, "192.0.2.1 1800000000\n");
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%s/known_good.tmp", dir);
    assert_int_equal(mkdir(tmp, 0700), 0);
    gw_guard g;
    gw_goodfile *f = open_into(&g, dir, 0, WALL);
    gw_guard_login_ok(&g, gw_guard_ip(&g, "192.0.2.2"), 10);
    finish(f, &g, 10, WALL, NULL);
    assert_string_equal(read_file(dir), "192.0.2.1 1800000000\n");
    gw_goodfile *f2 = open_into(&g, dir, 20, WALL);
    finish(f2, &g, 20, WALL, dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_batched_write),
        cmocka_unit_test(test_load_filters),
        cmocka_unit_test(test_failed_write_keeps_old_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
