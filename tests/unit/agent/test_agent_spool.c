/* Unit tests for the crash-safe spool: records survive a reopen in order;
 * a torn tail (file cut mid-record) and a corrupt checksum are truncated
 * at recovery; the acked marker and segment deletion never let the seq
 * counter go backwards; the size bound, drop-oldest, the batch sync
 * policy, and one agent per folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_spool.h"
#include "eds_log.h"
#include "edsagent.h"

typedef struct fixture {
    char dir[64];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/eds-spool-test-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *de;
    char path[512];
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", f->dir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    free(f);
    return 0;
}

static size_t rec_text(char *buf, size_t cap, uint64_t seq)
{
    return (size_t)snprintf(buf, cap, "{\"n\":%llu,\"pad\":\"%0*d\"}", (unsigned long long)seq,
                            (int)(seq % 40), 0);
}

static agent_spool *open_spool(const fixture *f, size_t max, int policy)
{
    agent_spool *sp = NULL;
    eds_error err;
    eds_error_clear(&err);
    int rc = spool_open(f->dir, max, policy, &sp, &err);
    if (rc != EDS_OK)
        fail_msg("spool_open: %s", err.msg);
    return sp;
}

static void append_range(agent_spool *sp, uint64_t first, uint64_t last)
{
    eds_error err;
    for (uint64_t s = first; s <= last; s++) {
        char rec[128];
        size_t n = rec_text(rec, sizeof(rec), s);
        int rc = spool_append(sp, s, rec, n, &err);
        if (rc != EDS_OK)
            fail_msg("append %llu: %s", (unsigned long long)s, err.msg);
    }
    assert_int_equal(spool_sync(sp, &err), EDS_OK);
}

/* Reads every available record, checking content; returns how many and the seqs. */
static size_t read_all(agent_spool *sp, uint64_t *seqs, size_t cap)
{
    size_t n = 0;
    uint64_t seq;
    char *data;
    size_t len;
    eds_error err;
    int rc;
    while ((rc = spool_read_next(sp, &seq, &data, &len, &err)) == EDS_OK) {
        char want[128];
        size_t wn = rec_text(want, sizeof(want), seq);
        assert_int_equal(len, wn);
        assert_memory_equal(data, want, len);
        free(data);
        if (n < cap)
            seqs[n] = seq;
        n++;
    }
    assert_int_equal(rc, EDS_ERR_AGAIN);
    return n;
}

/* The only segment file's path (most tests use one segment). */
static void segment_path(const fixture *f, char *out, size_t cap, int index)
{
    DIR *d = opendir(f->dir);
    struct dirent *de;
    char names[16][260];
    int n = 0;
    while ((de = readdir(d)) != NULL && n < 16)
        if (strncmp(de->d_name, "seg-", 4) == 0)
            snprintf(names[n++], sizeof(names[0]), "%s", de->d_name);
    closedir(d);
    assert_true(index < n);
    qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    snprintf(out, cap, "%s/%s", f->dir, names[index]);
}

static off_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_reopen_keeps_records_and_stream(void **state)
{
    fixture *f = *state;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    char stream[80];
    snprintf(stream, sizeof(stream), "%s", spool_stream(sp));
    assert_int_equal(strlen(stream), 16);
    assert_int_equal(strspn(stream, "0123456789abcdef"), 16);
    assert_int_equal(spool_last_seq(sp), 0);
    append_range(sp, 1, 100);
    assert_int_equal(spool_unread(sp), 100);
    spool_close(sp);

    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    assert_string_equal(spool_stream(sp), stream);
    assert_int_equal(spool_last_seq(sp), 100);
    assert_int_equal(spool_unread(sp), 100);
    uint64_t seqs[128];
    assert_int_equal(read_all(sp, seqs, 128), 100);
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(seqs[i], i + 1);
    assert_int_equal(spool_unread(sp), 0);
    spool_close(sp);
}

static void test_new_spools_get_new_streams(void **state)
{
    fixture *f = *state;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    char first[80];
    snprintf(first, sizeof(first), "%s", spool_stream(sp));
    spool_close(sp);
    char path[512];
    snprintf(path, sizeof(path), "%s/stream", f->dir);
    assert_int_equal(unlink(path), 0); /* a factory reset of the spool */
    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    assert_string_not_equal(spool_stream(sp), first);
    spool_close(sp);
}

static void test_torn_tail_is_truncated(void **state)
{
    fixture *f = *state;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    append_range(sp, 1, 10);
    spool_close(sp);
    char seg[512];
    segment_path(f, seg, sizeof(seg), 0);
    off_t full = file_size(seg);
    char rec10[128];
    size_t len10 = rec_text(rec10, sizeof(rec10), 10);
    /* a crash in the middle of writing record 10's payload */
    assert_int_equal(truncate(seg, full - (off_t)len10 / 2), 0);

    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    assert_int_equal(file_size(seg), full - (off_t)(SPOOL_HEADER + len10));
    assert_int_equal(spool_unread(sp), 9);
    assert_int_equal(spool_last_seq(sp), 9);
    /* appending goes on cleanly after the cut */
    append_range(sp, 10, 12);
    uint64_t seqs[16];
    assert_int_equal(read_all(sp, seqs, 16), 12);
    assert_int_equal(seqs[11], 12);
    spool_close(sp);

    /* a cut inside a header */
    segment_path(f, seg, sizeof(seg), 0);
    full = file_size(seg);
    char rec12[128];
    size_t len12 = rec_text(rec12, sizeof(rec12), 12);
    assert_int_equal(truncate(seg, full - (off_t)len12 - 9), 0);
    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    assert_int_equal(spool_last_seq(sp), 11);
    assert_int_equal(file_size(seg), full - (off_t)(SPOOL_HEADER + len12));
    spool_close(sp);
}

static void test_corrupt_crc_truncates_from_there(void **state)
{
    fixture *f = *state;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    append_range(sp, 1, 8);
    spool_close(sp);
    char seg[512];
    segment_path(f, seg, sizeof(seg), 0);
    /* flip one payload byte of record 5 */
    off_t off = 0;
    for (uint64_t s = 1; s < 5; s++) {
        char rec[128];
        off += (off_t)(SPOOL_HEADER + rec_text(rec, sizeof(rec), s));
    }
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    char c;
    assert_int_equal(pread(fd, &c, 1, off + SPOOL_HEADER + 3), 1);
    c ^= 0x20;
    assert_int_equal(pwrite(fd, &c, 1, off + SPOOL_HEADER + 3), 1);
    close(fd);

    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    assert_int_equal(file_size(seg), off);
    uint64_t seqs[16];
    assert_int_equal(read_all(sp, seqs, 16), 4);
    assert_int_equal(seqs[3], 4);
    spool_close(sp);
}

static void test_acked_marker(void **state)
{
    fixture *f = *state;
    eds_error err;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    append_range(sp, 1, 10);
    assert_int_equal(spool_set_acked(sp, 6, &err), EDS_OK);
    assert_int_equal(spool_flush_acked(sp, &err), EDS_OK);
    char path[512];
    snprintf(path, sizeof(path), "%s/acked", f->dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    unsigned long long v = 0;
    assert_int_equal(fscanf(fp, "%llu", &v), 1);
    fclose(fp);
    assert_int_equal(v, 6);
    snprintf(path, sizeof(path), "%s/acked.tmp", f->dir);
    assert_int_not_equal(access(path, F_OK), 0);
    spool_close(sp);

    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    assert_int_equal(spool_acked(sp), 6);
    assert_int_equal(spool_unread(sp), 4);
    uint64_t seqs[16];
    assert_int_equal(read_all(sp, seqs, 16), 4);
    assert_int_equal(seqs[0], 7);
    assert_int_equal(seqs[3], 10);
    spool_close(sp);
}

static void test_acked_segments_deleted_seq_never_goes_back(void **state)
{
    fixture *f = *state;
    eds_error err;
    /* 64 KiB budget: 8 KiB segments, so 2000 records span many of them */
    agent_spool *sp = open_spool(f, 65536, EDS_AGENT_SYNC_BATCH);
    uint64_t seqs[1];
    for (uint64_t s = 1; s <= 2000; s += 100) {
        append_range(sp, s, s + 99);
        (void)read_all(sp, seqs, 0);
        assert_int_equal(spool_set_acked(sp, s + 99, &err), EDS_OK);
    }
    assert_true(spool_segments(sp) <= 2);
    assert_true(spool_bytes(sp) <= 65536 / 8 + 200);
    spool_close(sp);
    sp = open_spool(f, 65536, EDS_AGENT_SYNC_BATCH);
    /* everything acked and (almost) deleted: the counter still resumes after 2000 */
    assert_int_equal(spool_last_seq(sp), 2000);
    assert_int_equal(spool_unread(sp), 0);
    spool_close(sp);
}

static void test_bound_and_drop_oldest(void **state)
{
    fixture *f = *state;
    eds_error err;
    agent_spool *sp = open_spool(f, 65536, EDS_AGENT_SYNC_BATCH);
    char rec[128];
    uint64_t s = 1;
    int rc;
    for (;; s++) {
        size_t n = rec_text(rec, sizeof(rec), s);
        rc = spool_append(sp, s, rec, n, &err);
        if (rc != EDS_OK)
            break;
        assert_true(s < 100000);
    }
    assert_int_equal(rc, EDS_ERR_FULL);
    assert_true(spool_bytes(sp) <= 65536);
    uint64_t total = s - 1;
    assert_int_equal(spool_unread(sp), total);
    uint64_t upto, dropped;
    assert_int_equal(spool_drop_oldest(sp, &upto, &dropped, &err), EDS_OK);
    assert_true(upto > 0 && upto < total);
    assert_int_equal(dropped, upto);
    size_t n = rec_text(rec, sizeof(rec), s);
    assert_int_equal(spool_append(sp, s, rec, n, &err), EDS_OK);
    assert_int_equal(spool_sync(sp, &err), EDS_OK);
    uint64_t seqs[4096];
    size_t got = read_all(sp, seqs, 4096);
    assert_int_equal(got, total - upto + 1);
    assert_int_equal(seqs[0], upto + 1);
    assert_int_equal(seqs[got - 1], s);
    spool_close(sp);
}

static void test_batch_sync_gates_reading(void **state)
{
    fixture *f = *state;
    eds_error err;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    char rec[128];
    size_t n = rec_text(rec, sizeof(rec), 1);
    assert_int_equal(spool_append(sp, 1, rec, n, &err), EDS_OK);
    uint64_t seq;
    char *data;
    size_t len;
    /* not durable yet: not handed out for sending */
    assert_int_equal(spool_read_next(sp, &seq, &data, &len, &err), EDS_ERR_AGAIN);
    assert_int_equal(spool_sync(sp, &err), EDS_OK);
    assert_int_equal(spool_read_next(sp, &seq, &data, &len, &err), EDS_OK);
    assert_int_equal(seq, 1);
    free(data);
    /* seq must grow */
    assert_int_equal(spool_append(sp, 1, rec, n, &err), EDS_ERR_INVAL);
    spool_close(sp);
}

/* A disk with no room (RLIMIT_FSIZE stands in for a full file system: EFBIG) is a full
 * spool, EDS_ERR_FULL, so full_policy applies; the half-written record is cut off and
 * the spool stays readable, with every record appended before. */
static void test_full_disk_is_full_not_corrupt(void **state)
{
    fixture *f = *state;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_ALWAYS);
    append_range(sp, 1, 10);
    char path[512];
    segment_path(f, path, sizeof(path), 0);
    off_t good = file_size(path);

    struct rlimit saved, lim;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_act;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = (rlim_t)good + 20; /* the header fits, the payload does not */
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char rec[128];
    size_t n = rec_text(rec, sizeof(rec), 11);
    eds_error err;
    int rc = spool_append(sp, 11, rec, n, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_act, NULL), 0);
    assert_int_equal(rc, EDS_ERR_FULL);
    assert_non_null(strstr(err.msg, "the disk is full"));
    assert_int_equal(file_size(path), good);

    append_range(sp, 11, 12); /* room again: the same seq goes in */
    spool_close(sp);
    sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_ALWAYS);
    uint64_t seqs[16];
    assert_int_equal(read_all(sp, seqs, 16), 12);
    for (uint64_t i = 0; i < 12; i++)
        assert_int_equal(seqs[i], i + 1);
    spool_close(sp);
}

static void test_one_agent_per_folder(void **state)
{
    fixture *f = *state;
    agent_spool *sp = open_spool(f, 1 << 20, EDS_AGENT_SYNC_BATCH);
    agent_spool *other = NULL;
    eds_error err;
    assert_int_equal(spool_open(f->dir, 1 << 20, EDS_AGENT_SYNC_BATCH, &other, &err), EDS_ERR_IO);
    assert_null(other);
    assert_non_null(strstr(err.msg, "in use"));
    spool_close(sp);
}

int main(void)
{
    eds_log_init("test_agent_spool", EDS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_keeps_records_and_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_spools_get_new_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_is_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_crc_truncates_from_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acked_marker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_acked_segments_deleted_seq_never_goes_back, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_bound_and_drop_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_sync_gates_reading, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_agent_per_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk_is_full_not_corrupt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
