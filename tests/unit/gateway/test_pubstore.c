/*
 * test_pubstore.c - gw_pubstore, the MQTT session store, against the promises
 * of gw_pubstore.h: what Paho puts comes back byte for byte (also after a
 * reopen, a SIGKILL or a torn tail), keys keep their order, bad keys are
 * refused, a put's mark (gw_mark) is written with it and outlives its entry,
 * the Paho adapter (gw_paho_store) hands a mark to the next command put of the
 * publishing thread only, on_empty fires once per drop to zero, compaction keeps the
 * log small without losing live entries or marks, and two threads can share
 * one store. Every test works in its own mkdtemp folder under /tmp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eds_bytes.h"
#include "gw_paho_store.h"
#include "gw_pubstore.h"

#define LOG_NAME "mqtt-session.log"
#define MIB ((size_t)1024 * 1024)

typedef struct fixture {
    char dir[64];    /* the test's own folder, removed by teardown */
    gw_pubstore *st; /* the store under test; closed by teardown */
} fixture;

/* ---- folders and files --------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/eds-pubstore-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_pubstore_close(f->st);
    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void log_path(const char *dir, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, LOG_NAME);
}

static size_t file_size(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        fail_msg("stat %s failed", path);
    return (size_t)sb.st_size;
}

/* Reads a whole (small) file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, size_t *len)
{
    size_t cap = file_size(path);
    unsigned char *buf = malloc(cap ? cap : 1);
    assert_non_null(buf);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return buf;
}

static void append_bytes(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Writes data as dir/mqtt-session.log, creating dir. */
static void write_log(const char *dir, const void *data, size_t len)
{
    char path[256];
    assert_int_equal(mkdir(dir, 0700), 0);
    log_path(dir, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void flip_byte(const char *path, size_t offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, (off_t)offset), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)offset), 1);
    close(fd);
}

/* ---- the store ------------------------------------------------------------------------ */

static gw_pubstore *open_at(const char *dir)
{
    gw_pubstore *st = NULL;
    eds_error err;
    eds_error_clear(&err);
    int rc = gw_pubstore_open(dir, &st, &err);
    if (rc != EDS_OK || !st)
        fail_msg("gw_pubstore_open(%s): %s: %s", dir ? dir : "NULL", eds_strerror(rc), err.msg);
    return st;
}

static void reopen(fixture *f)
{
    gw_pubstore_close(f->st);
    f->st = NULL;
    f->st = open_at(f->dir);
}

static int put_bytes_marked(gw_pubstore *st, const char *key, const void *data, size_t len,
                            const gw_mark *m)
{
    char *bufs[1] = {(char *)data};
    int lens[1] = {(int)len};
    return gw_pubstore_put(st, key, 1, bufs, lens, m);
}

static int put_bytes(gw_pubstore *st, const char *key, const void *data, size_t len)
{
    return put_bytes_marked(st, key, data, len, NULL);
}

/* The tests write a mark as device and "STREAM SEQ". */
static gw_mark to_mark(const char *device, const char *value)
{
    gw_mark m;
    memset(&m, 0, sizeof(m));
    const char *sp = strrchr(value, ' ');
    assert_non_null(sp);
    snprintf(m.device, sizeof(m.device), "%s", device);
    snprintf(m.stream, sizeof(m.stream), "%.*s", (int)(sp - value), value);
    m.seq = strtoull(sp + 1, NULL, 10);
    return m;
}

static void put_str(gw_pubstore *st, const char *key, const char *value)
{
    int rc = put_bytes(st, key, value, strlen(value));
    if (rc != EDS_OK)
        fail_msg("put %s: %s", key, eds_strerror(rc));
}

static void expect_bytes(gw_pubstore *st, const char *key, const void *want, size_t want_len)
{
    char *buf = NULL;
    int len = -1;
    int rc = gw_pubstore_get(st, key, NULL, &buf, &len);
    if (rc != EDS_OK)
        fail_msg("get %s: %s", key, eds_strerror(rc));
    bool same = len == (int)want_len && (want_len == 0 || memcmp(buf, want, want_len) == 0);
    free(buf);
    if (!same)
        fail_msg("get %s: %d bytes, not the %zu bytes put", key, len, want_len);
    assert_true(gw_pubstore_contains(st, key));
}

static void expect_str(gw_pubstore *st, const char *key, const char *value)
{
    expect_bytes(st, key, value, strlen(value));
}

static void expect_missing(gw_pubstore *st, const char *key)
{
    char *buf = NULL;
    int len = 0;
    int rc = gw_pubstore_get(st, key, NULL, &buf, &len);
    free(buf);
    if (rc != EDS_ERR_NOTFOUND)
        fail_msg("get %s: %s, want %s", key, eds_strerror(rc), eds_strerror(EDS_ERR_NOTFOUND));
    assert_false(gw_pubstore_contains(st, key));
}

static void free_keys(char **keys, int n)
{
    for (int i = 0; i < n; i++)
        free(keys[i]);
    free(keys);
}

/* The keys in the store's order, as one "a,b,c" string (count checked against them). */
static void key_list(gw_pubstore *st, char *out, size_t cap)
{
    char **keys = NULL;
    int n = -1;
    assert_int_equal(gw_pubstore_keys(st, &keys, &n), EDS_OK);
    assert_int_equal((size_t)n, gw_pubstore_count(st));
    if (n == 0)
        assert_null(keys);
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? "," : "", keys[i]);
        assert_true(w > 0 && (size_t)w < cap - used);
        used += (size_t)w;
    }
    free_keys(keys, n);
}

static void expect_keys(gw_pubstore *st, const char *want)
{
    char got[8192];
    key_list(st, got, sizeof(got));
    assert_string_equal(got, want);
}

/* ---- marks ---------------------------------------------------------------------------- */

#define MAX_MARKS 8

typedef struct mark_list {
    int n;
    char name[MAX_MARKS][EDS_DEVICE_MAX + 1];
    char value[MAX_MARKS][EDS_STREAM_MAX + 32];
} mark_list;

static void collect_mark(void *ctx, const gw_mark *m)
{
    mark_list *ml = ctx;
    if (ml->n < MAX_MARKS) {
        snprintf(ml->name[ml->n], sizeof(ml->name[0]), "%s", m->device);
        snprintf(ml->value[ml->n], sizeof(ml->value[0]), "%s %llu", m->stream,
                 (unsigned long long)m->seq);
    }
    ml->n++;
}

static void get_marks(gw_pubstore *st, mark_list *ml)
{
    memset(ml, 0, sizeof(*ml));
    gw_pubstore_each_mark(st, collect_mark, ml);
}

/* want: n pairs name, value (any order in the store). */
static void expect_marks(gw_pubstore *st, int n, const char *const want[][2])
{
    mark_list ml;
    get_marks(st, &ml);
    assert_int_equal(ml.n, n);
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < ml.n && strcmp(ml.name[j], want[i][0]) != 0)
            j++;
        if (j == ml.n)
            fail_msg("mark %s missing", want[i][0]);
        assert_string_equal(ml.value[j], want[i][1]);
    }
}

static void expect_no_marks(gw_pubstore *st)
{
    expect_marks(st, 0, NULL);
}

static void put_marked(gw_pubstore *st, const char *key, const char *mname, const char *mvalue)
{
    gw_mark m = to_mark(mname, mvalue);
    assert_int_equal(put_bytes_marked(st, key, "queued-command", 14, &m), EDS_OK);
}

/* ---- threads -------------------------------------------------------------------------- */

typedef struct thread_job {
    gw_pubstore *st;
    int id;
    int iterations;
    gw_paho_store *paho; /* put_from_thread: put through Paho's interface when set */
    int failures;        /* counted here: cmocka asserts belong to the main thread */
} thread_job;

static void run_in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

static void *put_from_thread(void *arg)
{
    thread_job *job = arg;
    char key[32];
    snprintf(key, sizeof(key), "c-thread-%d", job->id);
    if (job->paho) {
        char x[] = "x", *bufs[1] = {x};
        int lens[1] = {1};
        void *handle = NULL;
        job->paho->paho.popen(&handle, "id", "tcp://x", job->paho->paho.context);
        if (job->paho->paho.pput(handle, key, 1, bufs, lens) != 0)
            job->failures++;
    } else if (put_bytes(job->st, key, "x", 1) != EDS_OK) {
        job->failures++;
    }
    return NULL;
}

/* ---- put / get / keys ----------------------------------------------------------------- */

static void test_put_concatenates_buffers(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    char head[] = "head:";
    char empty[] = "";
    char bin[] = {'\0', '\x01', '\xff', '\0'};
    char tail[] = "|tail";
    char *bufs[4] = {head, empty, bin, tail};
    int lens[4] = {5, 0, 4, 5};
    assert_int_equal(gw_pubstore_put(f->st, "s-1", 4, bufs, lens, NULL), EDS_OK);

    char want[] = "head:\0\x01\xff\0|tail";
    /* The store copied the buffers: the caller may reuse them at once. */
    memset(head, '#', 5);
    expect_bytes(f->st, "s-1", want, 14);

    /* get hands out a copy: scribbling on it does not touch the entry. */
    char *buf = NULL;
    int len = 0;
    assert_int_equal(gw_pubstore_get(f->st, "s-1", NULL, &buf, &len), EDS_OK);
    memset(buf, 'z', (size_t)len);
    free(buf);
    expect_bytes(f->st, "s-1", want, 14);

    /* One zero-length buffer alone is an empty entry, still present. */
    char *only_empty[1] = {empty};
    int zero[1] = {0};
    assert_int_equal(gw_pubstore_put(f->st, "s-2", 1, only_empty, zero, NULL), EDS_OK);
    expect_bytes(f->st, "s-2", "", 0);
    assert_int_equal(gw_pubstore_count(f->st), 2);
}

static void test_replace_missing_and_count(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    assert_int_equal(gw_pubstore_count(f->st), 0);
    expect_keys(f->st, "");
    expect_missing(f->st, "c-1");
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);

    put_str(f->st, "c-1", "first");
    put_str(f->st, "c-1", "second, longer");
    expect_str(f->st, "c-1", "second, longer");
    assert_int_equal(gw_pubstore_count(f->st), 1);
    put_str(f->st, "c-1", "3");
    expect_str(f->st, "c-1", "3");

    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    expect_missing(f->st, "c-1");
    assert_int_equal(gw_pubstore_count(f->st), 0);
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
}

/* The order promised is insertion order; a replace may either keep the key's place or
 * move it to the end, but the other keys keep theirs, and the order after a remove and
 * a later put follows from the one before. */
static void test_keys_in_insertion_order(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "c-3", "x");
    put_str(f->st, "s-1", "x");
    put_str(f->st, "c-1", "x");
    expect_keys(f->st, "c-3,s-1,c-1");

    put_str(f->st, "s-1", "replaced");
    char after_replace[64];
    key_list(f->st, after_replace, sizeof(after_replace));
    if (strcmp(after_replace, "c-3,s-1,c-1") != 0 && strcmp(after_replace, "c-3,c-1,s-1") != 0)
        fail_msg("keys after replacing s-1: %s", after_replace);

    assert_int_equal(gw_pubstore_remove(f->st, "c-3"), EDS_OK);
    put_str(f->st, "sc-7", "x");
    char want[128];
    snprintf(want, sizeof(want), "%s,sc-7", after_replace + strlen("c-3,"));
    expect_keys(f->st, want);

    /* A removed key put again counts as new: it goes last. */
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    put_str(f->st, "c-1", "back");
    key_list(f->st, want, sizeof(want));
    assert_int_equal(strcmp(want + strlen(want) - strlen(",c-1"), ",c-1"), 0);
}

static void test_clear_removes_entries_not_marks(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_marked(f->st, "c-1", "dev-a", "1 4");
    put_str(f->st, "c-2", "x");
    assert_int_equal(gw_pubstore_clear(f->st), EDS_OK);
    assert_int_equal(gw_pubstore_count(f->st), 0);
    expect_keys(f->st, "");
    expect_missing(f->st, "c-1");
    const char *const marks[][2] = {{"dev-a", "1 4"}};
    expect_marks(f->st, 1, marks);

    /* The store keeps working after a clear, and the clear is in the log. */
    put_str(f->st, "c-3", "after");
    reopen(f);
    expect_keys(f->st, "c-3");
    expect_str(f->st, "c-3", "after");
    expect_marks(f->st, 1, marks);
}

static void test_invalid_keys_refused(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    char longest[GW_PUBSTORE_KEY_MAX + 1];
    char too_long[GW_PUBSTORE_KEY_MAX + 2];
    memset(longest, 'k', GW_PUBSTORE_KEY_MAX);
    longest[GW_PUBSTORE_KEY_MAX] = '\0';
    memset(too_long, 'k', GW_PUBSTORE_KEY_MAX + 1);
    too_long[GW_PUBSTORE_KEY_MAX + 1] = '\0';

    assert_int_equal(put_bytes(f->st, "", "x", 1), EDS_ERR_INVAL);
    assert_int_equal(put_bytes(f->st, too_long, "x", 1), EDS_ERR_INVAL);
    assert_int_equal(gw_pubstore_count(f->st), 0);
    assert_false(gw_pubstore_contains(f->st, too_long));

    assert_int_equal(put_bytes(f->st, longest, "x", 1), EDS_OK);
    expect_str(f->st, longest, "x");
    reopen(f);
    expect_keys(f->st, longest);
}

/* ---- the file --------------------------------------------------------------------------- */

static void test_entries_survive_reopen(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "c-1", "one");
    put_str(f->st, "c-2", "two");
    put_str(f->st, "s-3", "three");
    put_str(f->st, "c-4", "four");
    assert_int_equal(gw_pubstore_remove(f->st, "c-2"), EDS_OK);
    assert_int_equal(gw_pubstore_remove(f->st, "c-9"), EDS_OK);
    put_str(f->st, "s-3", "three again");
    char *bufs[3] = {"ab", "", "cd"};
    int lens[3] = {2, 0, 2};
    assert_int_equal(gw_pubstore_put(f->st, "sc-5", 3, bufs, lens, NULL), EDS_OK);

    char before[256];
    key_list(f->st, before, sizeof(before));
    char path[256];
    log_path(f->dir, path, sizeof(path));
    assert_int_equal(gw_pubstore_log_bytes(f->st), file_size(path));

    reopen(f);
    expect_keys(f->st, before);
    expect_str(f->st, "c-1", "one");
    expect_missing(f->st, "c-2");
    expect_str(f->st, "s-3", "three again");
    expect_str(f->st, "c-4", "four");
    expect_str(f->st, "sc-5", "abcd");
    assert_int_equal(gw_pubstore_log_bytes(f->st), file_size(path));
}

static void test_memory_mode(void **state)
{
    fixture *f = *state;
    f->st = open_at(NULL);
    put_str(f->st, "c-1", "one");
    put_marked(f->st, "c-2", "dev-a", "1 1");
    expect_str(f->st, "c-1", "one");
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    expect_keys(f->st, "c-2");
    const char *const marks[][2] = {{"dev-a", "1 1"}};
    expect_marks(f->st, 1, marks);
    assert_int_equal(gw_pubstore_log_bytes(f->st), 0);

    gw_pubstore_close(f->st);
    f->st = open_at(NULL);
    assert_int_equal(gw_pubstore_count(f->st), 0);
}

static void test_open_creates_dir_and_reports_errors(void **state)
{
    fixture *f = *state;
    char sub[128], path[256];
    snprintf(sub, sizeof(sub), "%s/state", f->dir);
    f->st = open_at(sub);
    put_str(f->st, "c-1", "one");
    log_path(sub, path, sizeof(path));
    assert_true(file_size(path) > 0);
    assert_int_equal(gw_pubstore_log_bytes(f->st), file_size(path));
    gw_pubstore_close(f->st);
    f->st = NULL;

    /* A folder that is a regular file cannot hold the log. */
    gw_pubstore *st = NULL;
    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(gw_pubstore_open(path, &st, &err), EDS_ERR_IO);
    assert_true(err.msg[0] != '\0');
    gw_pubstore_close(NULL);
}

/* SIGKILL keeps what write(2) handed to the kernel: a copy of the file taken while
 * the store is still open (nothing flushed or closed) restores the same state. */
static void test_copy_of_open_log_restores(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "k-1", "one");
    put_marked(f->st, "k-2", "dev-a", "1 9");
    put_str(f->st, "s-1", "sent");
    assert_int_equal(gw_pubstore_remove(f->st, "k-1"), EDS_OK);

    char path[256], copy_dir[128];
    log_path(f->dir, path, sizeof(path));
    size_t len = 0;
    unsigned char *bytes = slurp(path, &len);
    assert_int_equal(len, gw_pubstore_log_bytes(f->st));
    snprintf(copy_dir, sizeof(copy_dir), "%s/copy", f->dir);
    write_log(copy_dir, bytes, len);
    free(bytes);

    gw_pubstore *copy = open_at(copy_dir);
    expect_keys(copy, "k-2,s-1");
    expect_str(copy, "s-1", "sent");
    const char *const marks[][2] = {{"dev-a", "1 9"}};
    expect_marks(copy, 1, marks);
    gw_pubstore_close(copy);
}

/* What a crash leaves when the gateway is killed at an instant: the log file as it is,
 * opened as a copy. */
static gw_pubstore *crash_copy(fixture *f, const char *name)
{
    char path[256], copy_dir[128];
    log_path(f->dir, path, sizeof(path));
    size_t len = 0;
    unsigned char *bytes = slurp(path, &len);
    snprintf(copy_dir, sizeof(copy_dir), "%s/%s", f->dir, name);
    write_log(copy_dir, bytes, len);
    free(bytes);
    return open_at(copy_dir);
}

typedef struct window_job {
    fixture *f;
    int failures; /* counted here: cmocka asserts belong to the main thread */
} window_job;

static void *remove_command_then_put_sent(void *arg)
{
    window_job *job = arg;
    gw_pubstore *st = job->f->st;
    gw_pubstore_remove(st, "c-7");
    gw_pubstore *mid = crash_copy(job->f, "between");
    /* Paho's window: the command is gone for readers, but a crash here must still find
     * the record in the file, or a publish handed to Paho would vanish. */
    job->failures += gw_pubstore_contains(st, "c-7") || gw_pubstore_count(st) != 0;
    job->failures += !gw_pubstore_contains(mid, "c-7");
    gw_pubstore_close(mid);
    char *bufs[] = {"sent"};
    int lens[] = {4};
    job->failures += gw_pubstore_put(st, "s-7", 1, bufs, lens, NULL) != EDS_OK;
    return NULL;
}

/* Paho removes a queued command ("c-N") and then, on the same thread, stores the PUBLISH
 * it sent ("s-ID"). At no instant may the file hold neither; afterwards it holds only
 * the sent one. A put from another thread does not take the removal with it. */
static void test_command_removal_rides_on_the_same_threads_next_put(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_marked(f->st, "c-7", "dev-a", "s1 7");
    window_job job = {.f = f};
    run_in_thread(remove_command_then_put_sent, &job);
    assert_int_equal(job.failures, 0);
    gw_pubstore *after = crash_copy(f, "after");
    expect_keys(after, "s-7");
    gw_pubstore_close(after);

    /* Removed on this thread, then a put on another: the file still has c-8. */
    put_str(f->st, "c-8", "queued");
    assert_int_equal(gw_pubstore_remove(f->st, "c-8"), EDS_OK);
    thread_job other_put = {.st = f->st, .id = 1};
    run_in_thread(put_from_thread, &other_put);
    assert_int_equal(other_put.failures, 0);
    gw_pubstore *other = crash_copy(f, "other");
    assert_true(gw_pubstore_contains(other, "c-8"));
    gw_pubstore_close(other);
    /* Closing writes the removal that no put took. */
    reopen(f);
    expect_keys(f->st, "s-7,c-thread-1");
}

/* Puts three entries, closes, appends tail to the log and reopens: the entries are
 * there, the file is cut back, and a put after that survives the next reopen (it was
 * not written behind the garbage). */
static void check_tail_dropped(fixture *f, const void *tail, size_t tail_len)
{
    f->st = open_at(f->dir);
    put_str(f->st, "k-1", "one");
    put_str(f->st, "k-2", "two");
    put_str(f->st, "k-3", "three");
    assert_int_equal(gw_pubstore_remove(f->st, "k-2"), EDS_OK);
    size_t good = gw_pubstore_log_bytes(f->st);
    gw_pubstore_close(f->st);
    f->st = NULL;

    char path[256];
    log_path(f->dir, path, sizeof(path));
    assert_int_equal(file_size(path), good);
    append_bytes(path, tail, tail_len);

    f->st = open_at(f->dir);
    expect_keys(f->st, "k-1,k-3");
    expect_str(f->st, "k-3", "three");
    assert_int_equal(gw_pubstore_log_bytes(f->st), good);
    assert_int_equal(file_size(path), good);

    put_str(f->st, "k-4", "after the tear");
    reopen(f);
    expect_keys(f->st, "k-1,k-3,k-4");
    expect_str(f->st, "k-4", "after the tear");
}

static void test_torn_tail_short_header(void **state)
{
    check_tail_dropped(*state, "\x11\x00\x00", 3);
}

static void test_torn_tail_length_past_end(void **state)
{
    /* A header announcing more bytes than the file holds. */
    check_tail_dropped(*state,
                       "\x00\x10\x00\x00\xde\xad\xbe\xef"
                       "P\x03\x00"
                       "c-9",
                       14);
}

static void test_torn_tail_bad_crc(void **state)
{
    /* A complete record whose crc does not match its body. */
    check_tail_dropped(*state,
                       "\x04\x00\x00\x00\x00\x00\x00\x00"
                       "R\x01\x00"
                       "c",
                       12);
}

static void test_record_cut_mid_way_is_dropped(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "c-1", "one");
    size_t before = gw_pubstore_log_bytes(f->st);
    put_str(f->st, "c-2", "a record that the power cut tears in half");
    size_t after = gw_pubstore_log_bytes(f->st);
    assert_true(after > before);
    gw_pubstore_close(f->st);
    f->st = NULL;

    char path[256];
    log_path(f->dir, path, sizeof(path));
    assert_int_equal(truncate(path, (off_t)(before + (after - before) / 2)), 0);
    f->st = open_at(f->dir);
    expect_keys(f->st, "c-1");
    expect_missing(f->st, "c-2");
    assert_int_equal(gw_pubstore_log_bytes(f->st), before);
    assert_int_equal(file_size(path), before);
}

/* A flipped byte in the last record: that record (here a replace) is dropped, so the
 * entry it replaced comes back, and the records before it stay. */
static void test_corrupt_last_record_is_dropped(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "s-1", "old value");
    put_str(f->st, "s-2", "two");
    size_t before = gw_pubstore_log_bytes(f->st);
    put_str(f->st, "s-1", "new value, to be corrupted on disk");
    size_t after = gw_pubstore_log_bytes(f->st);
    gw_pubstore_close(f->st);
    f->st = NULL;

    char path[256];
    log_path(f->dir, path, sizeof(path));
    /* The middle of the body: past the 8-byte header, inside the data. */
    flip_byte(path, before + 8 + (after - before - 8) / 2);
    f->st = open_at(f->dir);
    expect_str(f->st, "s-1", "old value");
    expect_str(f->st, "s-2", "two");
    assert_int_equal(gw_pubstore_count(f->st), 2);
    assert_int_equal(gw_pubstore_log_bytes(f->st), before);
}

/* A write that fails half way (disk full; here the file size limit) must not leave a
 * partial record that hides every later record from the next open: once writes work
 * again, what follows is durable. */
static void test_failed_write_does_not_hide_later_records(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "c-1", "before the failure");
    size_t good = gw_pubstore_log_bytes(f->st);

    struct rlimit saved, lim;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_act;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = saved;
    lim.rlim_cur = (rlim_t)good + 10; /* the next record gets 10 bytes, then EFBIG */
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    static char big[200];
    memset(big, 'b', sizeof(big));
    int rc = put_bytes(f->st, "c-2", big, sizeof(big));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_act, NULL), 0);
    assert_int_equal(rc, EDS_ERR_IO);
    expect_bytes(f->st, "c-2", big, sizeof(big)); /* memory changed all the same */

    put_str(f->st, "c-3", "after the failure");
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    reopen(f);
    expect_missing(f->st, "c-1");
    expect_str(f->st, "c-3", "after the failure");
    char path[256];
    log_path(f->dir, path, sizeof(path));
    assert_int_equal(gw_pubstore_log_bytes(f->st), file_size(path));
}

/* ---- the documented record format --------------------------------------------------- */

typedef struct rec {
    unsigned char b[4096];
    size_t n;
} rec;

static void rec_byte(rec *r, char c)
{
    assert_true(r->n < sizeof(r->b));
    r->b[r->n++] = (unsigned char)c;
}

/* Appends s with its length in front, as a u16 (width 2) or u32 (width 4). */
static void rec_lenstr(rec *r, size_t width, const char *s)
{
    size_t len = strlen(s);
    assert_true(r->n + width + len <= sizeof(r->b));
    if (width == 2)
        eds_put_le16(r->b + r->n, (uint16_t)len);
    else
        eds_put_le32(r->b + r->n, (uint32_t)len);
    memcpy(r->b + r->n + width, s, len);
    r->n += width + len;
}

/* u16-prefixed: keys, mark names and values. */
static void rec_str16(rec *r, const char *s)
{
    rec_lenstr(r, 2, s);
}

/* Appends [u32 len][u32 crc32(body)][body] to out. */
static void rec_frame(rec *out, const rec *body)
{
    assert_true(out->n + 8 + body->n <= sizeof(out->b));
    eds_put_le32(out->b + out->n, (uint32_t)body->n);
    eds_put_le32(out->b + out->n + 4, eds_crc32(0, body->b, body->n));
    memcpy(out->b + out->n + 8, body->b, body->n);
    out->n += 8 + body->n;
}

/* MARK: u8 device, u8 stream, u64 seq; an empty device is no mark. */
static void rec_mark(rec *r, const char *device, const char *stream, uint64_t seq)
{
    rec_lenstr(r, 1, device);
    rec_lenstr(r, 1, stream);
    assert_true(r->n + 8 <= sizeof(r->b));
    eds_put_le64(r->b + r->n, seq);
    r->n += 8;
}

static void rec_put(rec *out, const char *key, const char *data, const char *device,
                    const char *stream, uint64_t seq)
{
    rec body = {.n = 0};
    rec_byte(&body, 'p');
    rec_str16(&body, key);
    rec_lenstr(&body, 4, data); /* u32-prefixed data */
    rec_mark(&body, device, stream, seq);
    rec_frame(out, &body);
}

/* A 'q' record: put key (no mark) and remove gone, in one record. */
static void rec_put_removing(rec *out, const char *key, const char *data, const char *gone)
{
    rec body = {.n = 0};
    rec_byte(&body, 'q');
    rec_str16(&body, key);
    rec_lenstr(&body, 4, data);
    rec_mark(&body, "", "", 0);
    rec_str16(&body, gone);
    rec_frame(out, &body);
}

/* The records of files written before marks were typed: the mark as two u16 strings. */
static void rec_put_legacy(rec *out, const char *key, const char *data, const char *mname,
                           const char *mvalue)
{
    rec body = {.n = 0};
    rec_byte(&body, 'P');
    rec_str16(&body, key);
    rec_lenstr(&body, 4, data);
    rec_str16(&body, mname);
    rec_str16(&body, mvalue);
    rec_frame(out, &body);
}

static void rec_remove(rec *out, const char *key)
{
    rec body = {.n = 0};
    rec_byte(&body, 'R');
    rec_str16(&body, key);
    rec_frame(out, &body);
}

/* The store writes exactly the records the header documents (a put with its mark, a
 * remove), so other tools and later versions can read the file. */
static void test_writes_documented_records(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_marked(f->st, "c-1", "dev-a", "1 2");
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    put_str(f->st, "s-2", "payload");
    gw_pubstore_close(f->st);
    f->st = NULL;

    rec want = {.n = 0};
    rec_put(&want, "c-1", "queued-command", "dev-a", "1", 2);
    /* the removal of the queued command rides on the same thread's next put */
    rec_put_removing(&want, "s-2", "payload", "c-1");
    char path[256];
    log_path(f->dir, path, sizeof(path));
    size_t len = 0;
    unsigned char *got = slurp(path, &len);
    assert_int_equal(len, want.n);
    assert_memory_equal(got, want.b, want.n);
    free(got);
}

/* A log written by hand in the documented format, with every record kind, replays in
 * order: 'C' drops the entries before it, 'm' sets a mark. */
static void test_reads_documented_records(void **state)
{
    fixture *f = *state;
    rec log = {.n = 0};
    rec_put(&log, "c-1", "one", "dev-a", "1", 5);
    rec_put(&log, "c-2", "two", "", "", 0);
    rec_remove(&log, "c-1");
    rec mark = {.n = 0};
    rec_byte(&mark, 'm');
    rec_mark(&mark, "dev-b", "2", 7);
    rec_frame(&log, &mark);
    rec clear = {.n = 0};
    rec_byte(&clear, 'C');
    rec_frame(&log, &clear);
    rec_put(&log, "s-3", "three", "dev-a", "1", 6);

    char dir[128];
    snprintf(dir, sizeof(dir), "%s/handmade", f->dir);
    write_log(dir, log.b, log.n);
    f->st = open_at(dir);
    expect_keys(f->st, "s-3");
    expect_str(f->st, "s-3", "three");
    const char *const marks[][2] = {{"dev-a", "1 6"}, {"dev-b", "2 7"}};
    expect_marks(f->st, 2, marks);
    assert_int_equal(gw_pubstore_log_bytes(f->st), log.n);
}

/* A log of the earlier format ('P', 'Q', 'M', marks as "STREAM SEQ" text) still replays;
 * a mark whose text does not convert is dropped, the record kept. */
static void test_reads_legacy_records(void **state)
{
    fixture *f = *state;
    rec log = {.n = 0};
    rec_put_legacy(&log, "c-1", "one", "dev-a", "s1 5");
    rec_put_legacy(&log, "c-2", "two", "dev-x", "no-seq");
    rec body = {.n = 0};
    rec_byte(&body, 'Q');
    rec_str16(&body, "s-3");
    rec_lenstr(&body, 4, "three");
    rec_str16(&body, "");
    rec_str16(&body, "");
    rec_str16(&body, "c-1");
    rec_frame(&log, &body);
    rec mark = {.n = 0};
    rec_byte(&mark, 'M');
    rec_str16(&mark, "dev-b");
    rec_str16(&mark, "abc 9007199254740991");
    rec_frame(&log, &mark);

    char dir[128];
    snprintf(dir, sizeof(dir), "%s/legacy", f->dir);
    write_log(dir, log.b, log.n);
    f->st = open_at(dir);
    expect_keys(f->st, "c-2,s-3");
    expect_str(f->st, "s-3", "three");
    const char *const marks[][2] = {{"dev-a", "s1 5"}, {"dev-b", "abc 9007199254740991"}};
    expect_marks(f->st, 2, marks);
    assert_int_equal(gw_pubstore_log_bytes(f->st), log.n);
}

/* ---- marks ------------------------------------------------------------------------------ */

static void test_mark_rides_on_next_put(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_str(f->st, "c-0", "x");
    expect_no_marks(f->st); /* a put without a mark */
    put_marked(f->st, "c-1", "dev-a", "1 10");
    const char *const first[][2] = {{"dev-a", "1 10"}};
    expect_marks(f->st, 1, first);

    put_marked(f->st, "c-2", "dev-a", "1 11");
    put_marked(f->st, "c-3", "dev-b", "2 5");
    put_marked(f->st, "c-4", "dev-a", "1 12");
    const char *const latest[][2] = {{"dev-a", "1 12"}, {"dev-b", "2 5"}};
    expect_marks(f->st, 2, latest);
    reopen(f);
    expect_marks(f->st, 2, latest);
    expect_keys(f->st, "c-0,c-1,c-2,c-3,c-4");
}

/* A plain put on this thread writes no mark, and none comes back from the file. */
static void expect_put_without_mark(fixture *f, const char *key)
{
    put_str(f->st, key, "x");
    expect_no_marks(f->st);
    reopen(f);
    expect_no_marks(f->st);
}

static void test_mark_consumed_by_one_put(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_marked(f->st, "c-1", "dev-a", "1 1");
    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(gw_pubstore_forget_marks(f->st, &err), EDS_OK);
    expect_no_marks(f->st);
    /* A later put without a mark brings none back. */
    expect_put_without_mark(f, "c-2");
}

/* Paho's persistence interface: a mark handed over with gw_paho_store_expect_mark rides
 * on the next put of a queued command ("c-") made by the same thread, once. */
static int paho_put(gw_paho_store *ps, const char *key)
{
    char x[] = "x", *bufs[1] = {x}, k[32];
    int lens[1] = {1};
    void *handle = NULL;
    snprintf(k, sizeof(k), "%s", key);
    assert_int_equal(ps->paho.popen(&handle, "id", "tcp://x", ps->paho.context), 0);
    return ps->paho.pput(handle, k, 1, bufs, lens);
}

static void test_paho_mark_withdrawn_with_null(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    gw_paho_store ps;
    gw_paho_store_init(&ps, f->st);
    gw_mark m = to_mark("dev-a", "1 1");
    gw_paho_store_expect_mark(&ps, &m);
    gw_paho_store_expect_mark(&ps, NULL);
    assert_int_equal(paho_put(&ps, "c-1"), 0);
    expect_no_marks(f->st);
    gw_paho_store_free(&ps);
}

static void test_paho_mark_is_per_thread_and_command(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    gw_paho_store ps;
    gw_paho_store_init(&ps, f->st);
    gw_mark m = to_mark("dev-main", "1 1");
    gw_paho_store_expect_mark(&ps, &m);

    /* Another thread's put does not carry this thread's mark... */
    thread_job plain = {.st = f->st, .id = 1, .paho = &ps};
    run_in_thread(put_from_thread, &plain);
    assert_int_equal(plain.failures, 0);
    expect_no_marks(f->st);
    /* ...nor does a put of another kind of key on this thread (a sent PUBLISH)... */
    assert_int_equal(paho_put(&ps, "s-1"), 0);
    expect_no_marks(f->st);

    /* ...but the next command put of this thread does, once. */
    assert_int_equal(paho_put(&ps, "c-main"), 0);
    const char *const mine[][2] = {{"dev-main", "1 1"}};
    expect_marks(f->st, 1, mine);
    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(gw_pubstore_forget_marks(f->st, &err), EDS_OK);
    assert_int_equal(paho_put(&ps, "c-2"), 0);
    expect_no_marks(f->st);
    expect_keys(f->st, "c-thread-1,s-1,c-main,c-2");
    gw_paho_store_free(&ps);
}

static void test_marks_outlive_entry_and_reopen(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_marked(f->st, "c-1", "dev-a", "1 3");
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    assert_int_equal(gw_pubstore_count(f->st), 0);
    const char *const marks[][2] = {{"dev-a", "1 3"}};
    expect_marks(f->st, 1, marks);
    reopen(f);
    assert_int_equal(gw_pubstore_count(f->st), 0);
    expect_marks(f->st, 1, marks);
}

static void test_forget_marks_is_durable(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    put_marked(f->st, "c-1", "dev-a", "1 3");
    put_marked(f->st, "c-2", "dev-b", "2 3");
    put_str(f->st, "c-3", "kept");
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);

    eds_error err;
    eds_error_clear(&err);
    assert_int_equal(gw_pubstore_forget_marks(f->st, &err), EDS_OK);
    expect_no_marks(f->st);
    expect_keys(f->st, "c-2,c-3");

    /* The rewritten file keeps the entries and is still the one written to. */
    put_str(f->st, "c-4", "after forget");
    reopen(f);
    expect_no_marks(f->st);
    expect_keys(f->st, "c-2,c-3,c-4");
    expect_str(f->st, "c-3", "kept");
    expect_str(f->st, "c-4", "after forget");
}

/* A mark must name a valid device and stream: it is refused with its put, and nothing is
 * stored. */
static void test_invalid_mark_refused(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    const char *const bad[][2] = {{"a/b", "s 1"}, {"", "s 1"}, {"dev", "\"q 1"}, {"dev", " 1"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gw_mark m = to_mark(bad[i][0], bad[i][1]);
        assert_int_equal(put_bytes_marked(f->st, "c-1", "x", 1, &m), EDS_ERR_INVAL);
    }
    gw_mark m = to_mark("dev", "s 1");
    m.device[sizeof(m.device) - 1] = 'x'; /* not terminated */
    memset(m.device, 'd', sizeof(m.device));
    assert_int_equal(put_bytes_marked(f->st, "c-1", "x", 1, &m), EDS_ERR_INVAL);
    expect_no_marks(f->st);
    assert_int_equal(gw_pubstore_count(f->st), 0);
    reopen(f);
    expect_no_marks(f->st);
    assert_int_equal(gw_pubstore_count(f->st), 0);
}

/* ---- on_empty --------------------------------------------------------------------------- */

typedef struct empty_probe {
    gw_pubstore *st;
    int calls;
    size_t count_seen; /* gw_pubstore_count from inside the callback: the store is unlocked */
    pthread_t thread;
} empty_probe;

static void on_empty(void *ctx)
{
    empty_probe *p = ctx;
    p->calls++;
    p->count_seen = gw_pubstore_count(p->st);
    p->thread = pthread_self();
}

static void *remove_from_thread(void *arg)
{
    thread_job *job = arg;
    if (gw_pubstore_remove(job->st, "c-last") != EDS_OK)
        job->failures++;
    return NULL;
}

static void test_on_empty_fires_on_drop_to_zero(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    empty_probe probe = {.st = f->st, .count_seen = 99};
    gw_pubstore_on_empty(f->st, on_empty, &probe);

    put_str(f->st, "c-1", "x");
    put_str(f->st, "c-2", "x");
    assert_int_equal(probe.calls, 0);
    assert_int_equal(gw_pubstore_remove(f->st, "c-1"), EDS_OK);
    assert_int_equal(probe.calls, 0);
    assert_int_equal(gw_pubstore_remove(f->st, "c-2"), EDS_OK);
    assert_int_equal(probe.calls, 1);
    assert_int_equal(probe.count_seen, 0);
    assert_true(pthread_equal(probe.thread, pthread_self()));

    put_str(f->st, "c-3", "x");
    put_str(f->st, "c-4", "x");
    assert_int_equal(probe.calls, 1);
    assert_int_equal(gw_pubstore_clear(f->st), EDS_OK);
    assert_int_equal(probe.calls, 2);

    /* From the thread whose remove empties the store. */
    put_str(f->st, "c-last", "x");
    thread_job job = {.st = f->st};
    pthread_t main_thread = pthread_self();
    run_in_thread(remove_from_thread, &job);
    assert_int_equal(job.failures, 0);
    assert_int_equal(probe.calls, 3);
    assert_false(pthread_equal(probe.thread, main_thread));

    gw_pubstore_on_empty(f->st, NULL, NULL);
    put_str(f->st, "c-5", "x");
    assert_int_equal(gw_pubstore_remove(f->st, "c-5"), EDS_OK);
    assert_int_equal(probe.calls, 3);
}

/* ---- compaction ------------------------------------------------------------------------- */

#define BIG_LEN 4096
#define CHURN_MAX 4000 /* ~16 MiB of puts: twice what the first compaction needs */

static void big_value(char *buf, unsigned seed)
{
    for (size_t i = 0; i < BIG_LEN; i++)
        buf[i] = (char)('a' + (seed + i * 7) % 26);
}

static void expect_big(gw_pubstore *st, const char *key, unsigned seed)
{
    static char want[BIG_LEN];
    big_value(want, seed);
    expect_bytes(st, key, want, BIG_LEN);
}

/* Three live entries and marks, then put+remove of 4 KB entries until the log has been
 * compacted (and a little more): the log never grows far past 8 MiB, ends well under
 * 1 MiB, and the live entries and marks come back after a reopen. */
static void test_compaction_keeps_live_entries_and_marks(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    static char buf[BIG_LEN];
    const char *live[3] = {"s-1", "s-2", "sc-3"};
    for (unsigned i = 0; i < 3; i++) {
        big_value(buf, 1000 + i);
        gw_mark m = to_mark("dev-live", "0 1");
        assert_int_equal(put_bytes_marked(f->st, live[i], buf, BIG_LEN, i == 0 ? &m : NULL),
                         EDS_OK);
    }

    size_t prev = gw_pubstore_log_bytes(f->st), peak = prev, written = prev;
    int compactions = 0, after_first = 0;
    char last_mark[32] = "";
    for (unsigned i = 0; i < CHURN_MAX && after_first < 20; i++) {
        char key[32];
        snprintf(key, sizeof(key), "c-%u", i);
        big_value(buf, i);
        gw_mark churn = to_mark("dev-churn", "1 0");
        if (i % 50 == 0) {
            snprintf(last_mark, sizeof(last_mark), "1 %u", i);
            churn.seq = i;
        }
        assert_int_equal(put_bytes_marked(f->st, key, buf, BIG_LEN, i % 50 == 0 ? &churn : NULL),
                         EDS_OK);
        for (int op = 0; op < 2; op++) {
            size_t now = gw_pubstore_log_bytes(f->st);
            if (now < prev)
                compactions++;
            else
                written += now - prev;
            peak = now > peak ? now : peak;
            prev = now;
            if (op == 0)
                assert_int_equal(gw_pubstore_remove(f->st, key), EDS_OK);
        }
        if (compactions > 0)
            after_first++;
    }
    assert_true(compactions >= 1);
    assert_true(written > 8 * MIB);
    assert_true(peak <= 8 * MIB + 64 * 1024);
    assert_true(gw_pubstore_log_bytes(f->st) < MIB);
    char path[256];
    log_path(f->dir, path, sizeof(path));
    assert_int_equal(gw_pubstore_log_bytes(f->st), file_size(path));

    const char *const marks[][2] = {{"dev-live", "0 1"}, {"dev-churn", last_mark}};
    expect_marks(f->st, 2, marks);
    reopen(f);
    expect_keys(f->st, "s-1,s-2,sc-3");
    for (unsigned i = 0; i < 3; i++)
        expect_big(f->st, live[i], 1000 + i);
    expect_marks(f->st, 2, marks);
}

/* ---- threads ---------------------------------------------------------------------------- */

#define CHURN_PER_THREAD 2000
#define KEEP_EVERY 10

static void *churn(void *arg)
{
    thread_job *job = arg;
    for (int i = 0; i < job->iterations; i++) {
        char key[32], value[48];
        snprintf(key, sizeof(key), "t%d-%d", job->id, i);
        int vlen = snprintf(value, sizeof(value), "value of %s", key);
        if (put_bytes(job->st, key, value, (size_t)vlen) != EDS_OK)
            job->failures++;
        char *got = NULL;
        int len = 0;
        if (gw_pubstore_get(job->st, key, NULL, &got, &len) != EDS_OK || len != vlen ||
            memcmp(got, value, (size_t)vlen) != 0)
            job->failures++;
        free(got);
        if (i % KEEP_EVERY != 0 &&
            (gw_pubstore_remove(job->st, key) != EDS_OK || gw_pubstore_contains(job->st, key)))
            job->failures++;
    }
    return NULL;
}

static void expect_survivors(gw_pubstore *st, int threads)
{
    assert_int_equal(gw_pubstore_count(st), (size_t)(threads * CHURN_PER_THREAD / KEEP_EVERY));
    for (int t = 0; t < threads; t++) {
        for (int i = 0; i < CHURN_PER_THREAD; i++) {
            char key[32], value[48];
            snprintf(key, sizeof(key), "t%d-%d", t, i);
            snprintf(value, sizeof(value), "value of %s", key);
            if (i % KEEP_EVERY == 0)
                expect_str(st, key, value);
            else
                assert_false(gw_pubstore_contains(st, key));
        }
    }
}

static void test_two_threads_share_store(void **state)
{
    fixture *f = *state;
    f->st = open_at(f->dir);
    thread_job jobs[2];
    pthread_t threads[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] = (thread_job){.st = f->st, .id = t, .iterations = CHURN_PER_THREAD};
        assert_int_equal(pthread_create(&threads[t], NULL, churn, &jobs[t]), 0);
    }
    for (int t = 0; t < 2; t++) {
        assert_int_equal(pthread_join(threads[t], NULL), 0);
        assert_int_equal(jobs[t].failures, 0);
    }
    expect_survivors(f->st, 2);
    char before[8192];
    key_list(f->st, before, sizeof(before));
    reopen(f);
    expect_survivors(f->st, 2);
    expect_keys(f->st, before);
}

/* Every test gets its own folder (setup) and leaves nothing behind (teardown). */
#define STORE_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_put_concatenates_buffers),
        STORE_TEST(test_replace_missing_and_count),
        STORE_TEST(test_keys_in_insertion_order),
        STORE_TEST(test_clear_removes_entries_not_marks),
        STORE_TEST(test_invalid_keys_refused),
        STORE_TEST(test_entries_survive_reopen),
        STORE_TEST(test_memory_mode),
        STORE_TEST(test_open_creates_dir_and_reports_errors),
        STORE_TEST(test_copy_of_open_log_restores),
        STORE_TEST(test_command_removal_rides_on_the_same_threads_next_put),
        STORE_TEST(test_torn_tail_short_header),
        STORE_TEST(test_torn_tail_length_past_end),
        STORE_TEST(test_torn_tail_bad_crc),
        STORE_TEST(test_record_cut_mid_way_is_dropped),
        STORE_TEST(test_corrupt_last_record_is_dropped),
        STORE_TEST(test_failed_write_does_not_hide_later_records),
        STORE_TEST(test_writes_documented_records),
        STORE_TEST(test_reads_documented_records),
        STORE_TEST(test_reads_legacy_records),
        STORE_TEST(test_mark_rides_on_next_put),
        STORE_TEST(test_mark_consumed_by_one_put),
        STORE_TEST(test_paho_mark_withdrawn_with_null),
        STORE_TEST(test_paho_mark_is_per_thread_and_command),
        STORE_TEST(test_marks_outlive_entry_and_reopen),
        STORE_TEST(test_forget_marks_is_durable),
        STORE_TEST(test_invalid_mark_refused),
        STORE_TEST(test_on_empty_fires_on_drop_to_zero),
        STORE_TEST(test_compaction_keeps_live_entries_and_marks),
        STORE_TEST(test_two_threads_share_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
