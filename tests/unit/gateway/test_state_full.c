/*
 * test_state_full.c - gw_state's compaction on a disk with no room
 * (RLIMIT_FSIZE stands in for a full file system: EFBIG): it fails with
 * EDS_ERR_IO, leaves no half-written state.tmp taking the space, and the
 * journal keeps every entry and takes appends afterwards. And the newline
 * that ends a torn last line (a crash mid-write) waits for room like an
 * entry: an entry written after it is not glued to the torn line. A torn last
 * line is cut off, so it never reads as an entry with a wrong seq.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eds_err.h"
#include "gw_state.h"

#define N_DEV 2048

static uint64_t seen[N_DEV + 1];

static void on_entry(void *ctx, const char *device, const char *stream, uint64_t last_seq)
{
    (void)ctx;
    (void)stream;
    int i = atoi(device + 4);
    if (i >= 0 && i <= N_DEV)
        seen[i] = last_seq;
}

static char names[N_DEV][16];

static int iter(void *ctx, const char **device, const char **stream, uint64_t *last_seq)
{
    size_t *i = ctx;
    if (*i >= N_DEV)
        return 0;
    *device = names[*i];
    *stream = "s";
    *last_seq = 1000 + *i;
    ++*i;
    return 1;
}

static void test_compaction_on_full_disk(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-state-full-XXXXXX";
    assert_non_null(mkdtemp(dir));
    gw_state *st;
    eds_error err;
    assert_int_equal(gw_state_open(dir, on_entry, NULL, &st, &err), EDS_OK);
    for (int i = 0; i < N_DEV; i++) {
        snprintf(names[i], sizeof(names[i]), "dev-%04d", i);
        assert_int_equal(gw_state_append(st, names[i], "s", 1000 + (uint64_t)i), EDS_OK);
    }
    assert_int_equal(gw_state_flush(st, &err), EDS_OK);

    struct rlimit saved, lim;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_act;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = (struct rlimit){8192, saved.rlim_max}; /* the soft limit: it can be raised again */
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    size_t it = 0;
    int rc = gw_state_compact(st, iter, &it, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_act, NULL), 0);
    assert_int_equal(rc, EDS_ERR_IO);

    char tmp[64];
    struct stat sb;
    snprintf(tmp, sizeof(tmp), "%s/state.tmp", dir);
    assert_int_not_equal(stat(tmp, &sb), 0); /* the space is given back */

    /* The journal still takes appends and keeps everything. */
    assert_int_equal(gw_state_append(st, "dev-2048", "s", 7), EDS_OK);
    assert_int_equal(gw_state_flush(st, &err), EDS_OK);
    gw_state_close(st);
    memset(seen, 0, sizeof(seen));
    assert_int_equal(gw_state_open(dir, on_entry, NULL, &st, &err), EDS_OK);
    for (int i = 0; i < N_DEV; i++)
        assert_int_equal(seen[i], 1000 + (uint64_t)i);
    assert_int_equal(seen[N_DEV], 7);
    gw_state_close(st);

    char path[64];
    snprintf(path, sizeof(path), "%s/state.log", dir);
    unlink(path);
    unlink(tmp);
    rmdir(dir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static void test_torn_line_on_full_disk(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-state-torn-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/state.log", dir);
    const char *text = "dev-0001 s 5\ndev-0002 s";
    write_file(path, text);

    struct rlimit saved, lim;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_act;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = (struct rlimit){strlen(text), saved.rlim_max}; /* not one byte more */
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    gw_state *st;
    eds_error err;
    memset(seen, 0, sizeof(seen));
    int rc = gw_state_open(dir, on_entry, NULL, &st, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_act, NULL), 0);
    assert_int_equal(rc, EDS_OK);
    assert_int_equal(seen[1], 5);

    /* Room again: the next entry is a line of its own. */
    assert_int_equal(gw_state_append(st, "dev-0003", "s", 9), EDS_OK);
    assert_int_equal(gw_state_flush(st, &err), EDS_OK);
    gw_state_close(st);
    memset(seen, 0, sizeof(seen));
    assert_int_equal(gw_state_open(dir, on_entry, NULL, &st, &err), EDS_OK);
    assert_int_equal(seen[1], 5);
    assert_int_equal(seen[3], 9);
    gw_state_close(st);
    unlink(path);
    rmdir(dir);
}

/* "dev-0001 s 12", torn from "dev-0001 s 1234" by a crash, is no entry: not at
 * the replay that finds it, nor at any later one (12 > 5 would answer records
 * 6..12 as duplicates, never published). */
static void test_torn_line_is_cut_off(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-state-cut-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/state.log", dir);
    write_file(path, "dev-0001 s 5\ndev-0001 s 12");
    gw_state *st;
    eds_error err;
    memset(seen, 0, sizeof(seen));
    assert_int_equal(gw_state_open(dir, on_entry, NULL, &st, &err), EDS_OK);
    assert_int_equal(seen[1], 5);
    assert_int_equal(gw_state_append(st, "dev-0002", "s", 7), EDS_OK);
    assert_int_equal(gw_state_flush(st, &err), EDS_OK);
    gw_state_close(st);
    memset(seen, 0, sizeof(seen));
    assert_int_equal(gw_state_open(dir, on_entry, NULL, &st, &err), EDS_OK);
    assert_int_equal(seen[1], 5);
    assert_int_equal(seen[2], 7);
    gw_state_close(st);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compaction_on_full_disk),
        cmocka_unit_test(test_torn_line_on_full_disk),
        cmocka_unit_test(test_torn_line_is_cut_off),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
