/*
 * test_cmdstore.c - gw_cmdstore against gw_cmdstore.h: commands added and not
 * finished come back on open in order with every part; finished ones do not; a
 * torn tail is ignored; a rewrite keeps exactly what is put, in the order put
 * (a compaction's sending order is not uid order); a record a full disk cut
 * short hides none appended after it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw_cmdstore.h"

typedef struct got {
    char device[8][70];
    gw_cmd *cmd[8];
    size_t n;
    size_t budget;
    gw_outbox results; /* what open handed back as results */
} got;

static void on_restore(void *ctx, const char *device, gw_cmd *cmd)
{
    got *g = ctx;
    assert_true(g->n < 8);
    strcpy(g->device[g->n], device);
    g->cmd[g->n++] = cmd;
}

static void on_result(void *ctx, const gw_result_parts *p)
{
    got *g = ctx;
    assert_non_null(gw_outbox_push(&g->results, p));
}

static void got_free(got *g)
{
    for (size_t i = 0; i < g->n; i++)
        gw_cmd_free(g->cmd[i], &g->budget);
    assert_int_equal(g->budget, 0);
    gw_outbox_free(&g->results);
    memset(g, 0, sizeof(*g));
}

static gw_cmd *make(const char *json, const char *ref, int64_t expires, size_t *budget)
{
    gw_cmd_parts p = {.json = json,
                      .len = strlen(json),
                      .ref = ref,
                      .ref_len = strlen(ref),
                      .rt = "resp/t",
                      .rt_len = 6,
                      .corr = "\0c",
                      .corr_len = 2,
                      .expires_at = expires};
    return gw_cmd_create(&p, budget);
}

static void reopen(const char *dir, got *g, gw_cmdstore **s)
{
    eds_error err;
    gw_cmdstore_close(*s);
    *s = NULL;
    gw_outbox_init(&g->results, 100, 1 << 20, 1);
    gw_cmdstore_fns fns = {.cmd = on_restore, .result = on_result, .ctx = g};
    assert_int_equal(gw_cmdstore_open(dir, &fns, &g->budget, s, &err), EDS_OK);
}

/* Removes a test's store directory and its cmds.log. */
static void remove_store(const char *dir)
{
    char path[64];
    snprintf(path, sizeof(path), "%s/cmds.log", dir);
    unlink(path);
    rmdir(dir);
}

/* A fresh store directory (dir: a mkdtemp template), opened into *s; path gets
 * its cmds.log. */
static void fresh(char *dir, char *path, size_t cap, got *g, gw_cmdstore **s)
{
    assert_non_null(mkdtemp(dir));
    snprintf(path, cap, "%s/cmds.log", dir);
    *s = NULL;
    reopen(dir, g, s);
}

/* Ends a test: closes the store, frees the test's commands (the budget must be
 * back to 0) and removes the directory. */
static void finish(const char *dir, gw_cmdstore *s, gw_cmd **cmds, size_t n, size_t *budget)
{
    gw_cmdstore_close(s);
    for (size_t i = 0; i < n; i++)
        gw_cmd_free(cmds[i], budget);
    assert_int_equal(*budget, 0);
    remove_store(dir);
}

static void test_add_del_reopen(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    assert_int_equal(g.n, 0);
    size_t budget = 0;
    eds_error err;
    gw_cmd *a = make("{\"a\":77.0}", "\"x\"", 123, &budget);
    gw_cmd *b = make("[1]", "", 0, &budget);
    gw_cmd *c = make("\"c\"", "7", 5, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", a, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_add(s, "ghost", b, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", c, &err), EDS_OK);
    assert_true(a->uid < b->uid && b->uid < c->uid);
    assert_int_equal(gw_cmdstore_del(s, b->uid, &err), EDS_OK);
    reopen(dir, &g, &s); /* like a kill -9: nothing was closed cleanly before */
    assert_int_equal(g.n, 2);
    assert_string_equal(g.device[0], "dev-1");
    assert_string_equal(g.cmd[0]->json, "{\"a\":77.0}");
    assert_string_equal(gw_cmd_ref(g.cmd[0]), "\"x\"");
    assert_string_equal(gw_cmd_rt(g.cmd[0]), "resp/t");
    assert_memory_equal(gw_cmd_corr(g.cmd[0]), "\0c", 2);
    assert_int_equal(g.cmd[0]->expires_at, 123);
    assert_int_equal(g.cmd[0]->uid, a->uid);
    assert_string_equal(g.cmd[1]->json, "\"c\"");
    /* Finish one of the restored ones: after the next open only c is left. */
    assert_int_equal(gw_cmdstore_del(s, g.cmd[0]->uid, &err), EDS_OK);
    gw_cmd *d = make("{}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-2", d, &err), EDS_OK);
    assert_true(d->uid > c->uid); /* uids never repeat across opens */
    got_free(&g);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.cmd[0]->json, "\"c\"");
    assert_string_equal(g.device[1], "dev-2");
    got_free(&g);
    /* A torn tail (half a record) is ignored. */
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "A\1\2\3", 4), 4);
    close(fd);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 2);
    got_free(&g);
    /* A rewrite keeps what is put, nothing else. */
    assert_int_equal(gw_cmdstore_rewrite_begin(s, &err), EDS_OK);
    gw_cmdstore_rewrite_put(s, "dev-2", d);
    assert_int_equal(gw_cmdstore_rewrite_end(s, &err), EDS_OK);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.device[0], "dev-2");
    got_free(&g);
    finish(dir, s, (gw_cmd *[]){a, b, c, d}, 4, &budget);
}

/* Uids never repeat, also when the newest ones were finished and the log compacted
 * away (on open, twice in a row, and by a rewrite): an agent remembers the uids it
 * finished and would only ack a new command that reused one. */
static void test_uids_never_repeat_after_compactions(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    size_t budget = 0;
    eds_error err;
    gw_cmd *a = make("{}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", a, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_del(s, a->uid, &err), EDS_OK);
    reopen(dir, &g, &s); /* compacts to nothing live */
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 0);
    gw_cmd *b = make("{}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", b, &err), EDS_OK);
    assert_true(b->uid > a->uid);
    assert_int_equal(gw_cmdstore_del(s, b->uid, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_rewrite_begin(s, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_rewrite_end(s, &err), EDS_OK);
    reopen(dir, &g, &s);
    gw_cmd *c = make("{}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", c, &err), EDS_OK);
    assert_true(c->uid > b->uid);
    finish(dir, s, (gw_cmd *[]){a, b, c}, 3, &budget);
}

/* A compaction writes the commands in sending order: a device's, then the next
 * device's, parked ones adopted in front. Every one of them comes back, in that
 * order, and a removal after the compaction still finds its command. */
static void test_rewrite_not_in_uid_order(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    size_t budget = 0;
    eds_error err;
    gw_cmd *a = make("{\"a\":1}", "", 0, &budget);
    gw_cmd *b = make("{\"b\":2}", "", 0, &budget);
    gw_cmd *c = make("{\"c\":3}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", a, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_add(s, "dev-2", b, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", c, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_rewrite_begin(s, &err), EDS_OK);
    gw_cmdstore_rewrite_put(s, "dev-2", b);
    gw_cmdstore_rewrite_put(s, "dev-1", c);
    gw_cmdstore_rewrite_put(s, "dev-1", a);
    assert_int_equal(gw_cmdstore_rewrite_end(s, &err), EDS_OK);
    reopen(dir, &g, &s); /* a kill -9 after the compaction */
    assert_int_equal(g.n, 3);
    assert_string_equal(g.cmd[0]->json, "{\"b\":2}");
    assert_string_equal(g.cmd[1]->json, "{\"c\":3}");
    assert_string_equal(g.cmd[2]->json, "{\"a\":1}");
    got_free(&g);
    assert_int_equal(gw_cmdstore_del(s, a->uid, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_del(s, b->uid, &err), EDS_OK);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.device[0], "dev-1");
    assert_int_equal(g.cmd[0]->uid, c->uid);
    got_free(&g);
    finish(dir, s, (gw_cmd *[]){a, b, c}, 3, &budget);
}

/* RLIMIT_FSIZE stands in for a full disk (EFBIG): the record that did not fit is
 * cut off, so the next one after room came back is not lost behind it. */
static void test_full_disk_mid_record(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    size_t budget = 0;
    eds_error err;
    char big[2048];
    memset(big, 'x', sizeof(big) - 3);
    big[0] = big[sizeof(big) - 3] = '"';
    big[sizeof(big) - 2] = '\0';
    gw_cmd *a = make("{\"a\":1}", "", 0, &budget);
    gw_cmd *b = make(big, "", 0, &budget);
    gw_cmd *c = make("{\"c\":3}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", a, &err), EDS_OK);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    struct rlimit saved, lim;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_act;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
    lim = (struct rlimit){(rlim_t)sb.st_size + 100, saved.rlim_max};
    assert_int_equal(sigaction(SIGXFSZ, &ign, &old_act), 0);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = gw_cmdstore_add(s, "dev-1", b, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
    assert_int_equal(sigaction(SIGXFSZ, &old_act, NULL), 0);
    assert_int_equal(rc, EDS_ERR_IO);
    assert_int_equal(b->uid, 0);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", c, &err), EDS_OK);
    reopen(dir, &g, &s); /* a kill -9 */
    assert_int_equal(g.n, 2);
    assert_string_equal(g.cmd[0]->json, "{\"a\":1}");
    assert_string_equal(g.cmd[1]->json, "{\"c\":3}");
    got_free(&g);
    finish(dir, s, (gw_cmd *[]){a, b, c}, 3, &budget);
}

/* A result replaces its command until it is confirmed (D); a result without a command
 * gets its own uid; an S record comes back as with_agent; a rewrite keeps results. */
static void test_results_and_sent(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    size_t budget = 0;
    eds_error err;
    gw_outbox out;
    gw_outbox_init(&out, 10, 1 << 20, 1);
    gw_cmd *a = make("{\"a\":1}", "", 0, &budget);
    gw_cmd *b = make("{\"b\":2}", "", 0, &budget);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", a, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_add(s, "dev-1", b, &err), EDS_OK);
    assert_int_equal(gw_cmdstore_sent(s, b, &err), EDS_OK);
    gw_result_parts rp = {.device = "dev-1",
                          .payload = "{\"status\":\"delivered\"}",
                          .len = 22,
                          .rt = "r/t",
                          .rt_len = 3,
                          .corr = "\0k",
                          .corr_len = 2,
                          .uid = a->uid};
    gw_outmsg *ra = gw_outbox_push(&out, &rp);
    assert_int_equal(gw_cmdstore_result(s, ra, &err), EDS_OK);
    assert_int_equal(ra->uid, a->uid);
    rp = (gw_result_parts){.device = "ghost", .payload = "{\"status\":\"rejected\"}", .len = 21};
    gw_outmsg *rx = gw_outbox_push(&out, &rp);
    assert_int_equal(gw_cmdstore_result(s, rx, &err), EDS_OK);
    assert_true(rx->uid > b->uid); /* a uid of its own */
    reopen(dir, &g, &s);           /* a kill -9 */
    assert_int_equal(g.n, 1);      /* a became its result */
    assert_int_equal(g.cmd[0]->uid, b->uid);
    assert_true(g.cmd[0]->with_agent);
    assert_int_equal(g.results.n, 2);
    const gw_outmsg *m = g.results.head;
    assert_int_equal(m->uid, a->uid);
    assert_string_equal(m->device, "dev-1");
    assert_memory_equal(m->payload, "{\"status\":\"delivered\"}", 22);
    assert_string_equal(m->rt, "r/t");
    assert_memory_equal(m->corr, "\0k", 2);
    assert_string_equal(m->next->device, "ghost");
    got_free(&g);
    /* Confirmed: gone; the open's rewrite kept S (b still the agent's) and the result. */
    assert_int_equal(gw_cmdstore_del(s, a->uid, &err), EDS_OK);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 1);
    assert_true(g.cmd[0]->with_agent);
    assert_int_equal(g.results.n, 1);
    assert_int_equal(g.results.head->uid, rx->uid);
    got_free(&g);
    assert_int_equal(gw_cmdstore_rewrite_begin(s, &err), EDS_OK);
    gw_cmdstore_rewrite_put_result(s, rx);
    assert_int_equal(gw_cmdstore_rewrite_end(s, &err), EDS_OK);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 0);
    assert_int_equal(g.results.n, 1);
    got_free(&g);
    gw_outbox_free(&out);
    finish(dir, s, (gw_cmd *[]){a, b}, 2, &budget);
}

/* A corrupt record in the middle (a bit flipped on the SD card) is skipped: the records
 * after it come back; a torn last record is still cut off. */
static void test_corrupt_middle_record_skipped(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    size_t budget = 0;
    eds_error err;
    gw_cmd *c[4];
    const char *json[4] = {"{\"n\":1}", "{\"n\":2}", "{\"n\":3}", "{\"n\":4}"};
    struct stat sb;
    off_t at = 0;
    for (int i = 0; i < 4; i++) {
        c[i] = make(json[i], "", 0, &budget);
        assert_int_equal(gw_cmdstore_add(s, "dev-1", c[i], &err), EDS_OK);
        if (i == 0) {
            assert_int_equal(stat(path, &sb), 0);
            at = sb.st_size; /* the second record starts here */
        }
    }
    gw_cmdstore_close(s);
    s = NULL;
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    /* The second record's JSON: its CRC no longer matches. */
    assert_int_equal(pwrite(fd, "X", 1, at + 34 + 5 + 2), 1);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(pwrite(fd, "A\7\7", 3, sb.st_size), 3); /* and a torn tail */
    close(fd);
    reopen(dir, &g, &s);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.cmd[0]->json, "{\"n\":1}");
    assert_string_equal(g.cmd[1]->json, "{\"n\":3}");
    assert_string_equal(g.cmd[2]->json, "{\"n\":4}");
    got_free(&g);
    reopen(dir, &g, &s); /* the rewrite at open kept them */
    assert_int_equal(g.n, 3);
    got_free(&g);
    finish(dir, s, c, 4, &budget);
}

/* The bytes of one valid A record (a command for dev-x), from a store of its own; *len
 * its size. */
static unsigned char *valid_record(size_t *len)
{
    char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
    got g = {0};
    gw_cmdstore *s;
    fresh(dir, path, sizeof(path), &g, &s);
    size_t budget = 0;
    eds_error err;
    gw_cmd *c = make("{\"evil\":1}", "", 0, &budget);
    struct stat sb;
    for (int i = 0; i < 10; i++) { /* the last one's uid is no other store's first */
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(gw_cmdstore_add(s, "dev-x", c, &err), EDS_OK);
    }
    off_t at = sb.st_size;
    gw_cmdstore_close(s);
    gw_cmd_free(c, &budget);
    assert_int_equal(stat(path, &sb), 0);
    *len = (size_t)(sb.st_size - at);
    unsigned char *buf = malloc(*len);
    int fd = open(path, O_RDONLY);
    assert_int_equal(pread(fd, buf, *len, at), (ssize_t)*len);
    close(fd);
    remove_store(dir);
    return buf;
}

/* A publisher controls a command's correlation data (any bytes): a valid record inside
 * it must never be taken for one when the record around it is torn or corrupt. */
static void test_record_inside_a_corrupt_one_not_taken(void **state)
{
    (void)state;
    size_t fake_len;
    unsigned char *fake = valid_record(&fake_len);
    for (int torn = 0; torn < 2; torn++) {
        char dir[] = "/tmp/eds-cmdstore-XXXXXX", path[64];
        got g = {0};
        gw_cmdstore *s;
        fresh(dir, path, sizeof(path), &g, &s);
        size_t budget = 0;
        eds_error err;
        gw_cmd_parts p = {.json = "{\"n\":2}", .len = 7, .corr = fake, .corr_len = fake_len};
        gw_cmd *c[3] = {make("{\"n\":1}", "", 0, &budget), gw_cmd_create(&p, &budget),
                        make("{\"n\":3}", "", 0, &budget)};
        struct stat sb;
        off_t at = 0;
        for (int i = 0; i < (torn ? 2 : 3); i++) {
            if (i == 1) {
                assert_int_equal(stat(path, &sb), 0);
                at = sb.st_size; /* the record holding the fake starts here */
            }
            assert_int_equal(gw_cmdstore_add(s, "dev-1", c[i], &err), EDS_OK);
        }
        gw_cmdstore_close(s);
        s = NULL;
        assert_int_equal(stat(path, &sb), 0);
        if (torn) /* a power cut: the record's last bytes (its CRC) never reached the disk */
            assert_int_equal(truncate(path, sb.st_size - 2), 0);
        else { /* a flipped bit in its JSON */
            int fd = open(path, O_RDWR);
            assert_int_equal(pwrite(fd, "X", 1, at + 34 + 5 + 2), 1);
            close(fd);
        }
        reopen(dir, &g, &s);
        assert_int_equal(g.n, torn ? 1 : 2);
        for (size_t i = 0; i < g.n; i++)
            assert_string_equal(g.device[i], "dev-1");
        assert_string_equal(g.cmd[0]->json, "{\"n\":1}");
        if (!torn)
            assert_string_equal(g.cmd[1]->json, "{\"n\":3}");
        got_free(&g);
        gw_cmdstore_close(s);
        for (int i = 0; i < 3; i++)
            gw_cmd_free(c[i], &budget);
        remove_store(dir);
    }
    free(fake);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_and_sent),
        cmocka_unit_test(test_corrupt_middle_record_skipped),
        cmocka_unit_test(test_record_inside_a_corrupt_one_not_taken),
        cmocka_unit_test(test_add_del_reopen),
        cmocka_unit_test(test_rewrite_not_in_uid_order),
        cmocka_unit_test(test_uids_never_repeat_after_compactions),
        cmocka_unit_test(test_full_disk_mid_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
