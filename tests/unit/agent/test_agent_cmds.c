/*
 * test_agent_cmds.c - agent_cmds against agent_cmds.h: commands wait in order, a uid
 * sent again updates the waiting one, a finished uid is answered not queued (with how
 * it was finished), the bounds hold, deadlines expire commands, and the file brings
 * waiting commands (with their deadlines) and finished uids back after a "power
 * cycle" (a new open on the same folder, nothing closed cleanly), also past a line
 * that cannot be read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_cmds.h"

static char dir[] = "/tmp/eds-agent-cmds-XXXXXX";
static char path[64];

static int make_dir(void **state)
{
    (void)state;
    strcpy(dir + strlen(dir) - 6, "XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof(path), "%s/cmds.pending", dir);
    return 0;
}

static int remove_dir(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static int offer(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, int64_t deadline,
                 const char *json, agent_cmd_outcome *o)
{
    agent_cmd_outcome ignored;
    return agent_cmds_offer(c, id, gen, uid, deadline, json, strlen(json), o ? o : &ignored);
}

static void test_queue_uid_and_file(void **state)
{
    (void)state;
    agent_cmds c;
    eds_error err;
    agent_cmd_outcome o;
    assert_int_equal(agent_cmds_open(&c, dir, &err), EDS_OK);
    assert_int_equal(offer(&c, 1, 5, 100, 0, "{\"p\":77.0}", NULL), AGENT_CMD_QUEUED);
    assert_int_equal(offer(&c, 2, 5, 0, 0, "[1]", NULL), AGENT_CMD_QUEUED);
    assert_int_equal(offer(&c, 3, 5, 300, 5000, "[3]", NULL), AGENT_CMD_QUEUED);
    /* the gateway sends uid 100 again on a new connection: updated, not queued twice */
    assert_int_equal(offer(&c, 9, 6, 100, 0, "{\"p\":77.0}", NULL), AGENT_CMD_UPDATED);
    /* ...and 300 with a later deadline (its ttl rounded up): the earlier one stays */
    assert_int_equal(offer(&c, 10, 6, 300, 6000, "[3]", NULL), AGENT_CMD_UPDATED);
    assert_int_equal(agent_cmds_next_deadline(&c), 5000);
    assert_int_equal(c.n, 3);
    const agent_cmd *h = agent_cmds_head(&c);
    assert_int_equal(h->id, 9);
    assert_int_equal(h->gen, 6);
    assert_string_equal(h->json, "{\"p\":77.0}");
    agent_cmds_taken(&c);
    assert_int_equal(offer(&c, 11, 6, 100, 0, "{\"p\":77.0}", &o), AGENT_CMD_FINISHED);
    assert_int_equal(o, AGENT_DONE_ACKED);
    assert_int_equal(offer(&c, 12, 6, 200, 0, "\"x\"", NULL), AGENT_CMD_QUEUED);
    agent_cmds_finish(&c, 400, AGENT_DONE_FULL);
    agent_cmds_sync(&c);
    /* power cycle: a new open without closing the old one */
    agent_cmds c2;
    assert_int_equal(agent_cmds_open(&c2, dir, &err), EDS_OK);
    assert_int_equal(c2.skipped, 0);
    assert_int_equal(c2.n, 2); /* [1] had no uid: not kept (the gateway sends it again) */
    h = agent_cmds_head(&c2);
    assert_string_equal(h->json, "[3]");
    assert_int_equal(h->deadline_ms, 5000);
    assert_int_equal(h->gen, AGENT_CMDS_STALE);
    assert_int_equal(offer(&c2, 1, 1, 100, 0, "{\"p\":77.0}", &o), AGENT_CMD_FINISHED);
    assert_int_equal(o, AGENT_DONE_ACKED);
    assert_int_equal(offer(&c2, 1, 1, 400, 0, "{}", &o), AGENT_CMD_FINISHED);
    assert_int_equal(o, AGENT_DONE_FULL);
    assert_int_equal(offer(&c2, 2, 1, 200, 0, "\"x\"", NULL), AGENT_CMD_UPDATED);
    agent_cmds_close(&c2);
    agent_cmds_close(&c);
}

static void test_expiry(void **state)
{
    (void)state;
    agent_cmds c;
    eds_error err;
    agent_cmd_outcome o;
    int64_t id;
    uint64_t gen, uid;
    assert_int_equal(agent_cmds_open(&c, dir, &err), EDS_OK);
    assert_int_equal(offer(&c, 1, 1, 10, 0, "1", NULL), AGENT_CMD_QUEUED);
    assert_int_equal(offer(&c, 2, 1, 20, 2000, "2", NULL), AGENT_CMD_QUEUED);
    assert_int_equal(offer(&c, 3, 1, 30, 1000, "3", NULL), AGENT_CMD_QUEUED);
    assert_false(agent_cmds_expire(&c, 999, &id, &gen, &uid));
    assert_true(agent_cmds_expire(&c, 1000, &id, &gen, &uid));
    assert_int_equal(id, 3);
    assert_false(agent_cmds_expire(&c, 1999, &id, &gen, &uid));
    assert_int_equal(agent_cmds_next_deadline(&c), 2000);
    agent_cmds_sync(&c);
    /* a power cycle keeps the deadline: past it, the command expires at once */
    agent_cmds c2;
    assert_int_equal(agent_cmds_open(&c2, dir, &err), EDS_OK);
    assert_true(agent_cmds_expire(&c2, 5000, &id, &gen, &uid));
    assert_int_equal(gen, AGENT_CMDS_STALE);
    assert_false(agent_cmds_expire(&c2, 5000, &id, &gen, &uid));
    assert_int_equal(c2.n, 1);
    assert_string_equal(agent_cmds_head(&c2)->json, "1");
    assert_int_equal(agent_cmds_next_deadline(&c2), 0);
    /* a resend of an expired one is answered, never queued again */
    assert_int_equal(offer(&c2, 7, 2, 20, 9000, "2", &o), AGENT_CMD_FINISHED);
    assert_int_equal(o, AGENT_DONE_EXPIRED);
    assert_int_equal(offer(&c2, 8, 2, 30, 9000, "3", &o), AGENT_CMD_FINISHED);
    assert_int_equal(o, AGENT_DONE_EXPIRED);
    agent_cmds_close(&c2);
    agent_cmds_close(&c);
}

/* A line in the middle that cannot be read (a flash bit flip, a stray edit) costs that
 * line only; a torn last line too. */
static void test_corrupt_line_skipped(void **state)
{
    (void)state;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("W 1 0 {\"a\":1}\nW x 0 {}\nQ 2 {}\nP 3 [3]\nF 4 Z\nT 5\nW 6 0 {\"b\"", f);
    fclose(f);
    agent_cmds c;
    eds_error err;
    agent_cmd_outcome o;
    assert_int_equal(agent_cmds_open(&c, dir, &err), EDS_OK);
    assert_int_equal(c.skipped, 4);
    assert_int_equal(c.n, 2);
    assert_string_equal(agent_cmds_head(&c)->json, "{\"a\":1}");
    assert_true(agent_cmds_finished(&c, 5, &o));
    assert_false(agent_cmds_finished(&c, 4, &o));
    agent_cmds_close(&c);
}

/* A file that cannot be written (full disk, here a folder where the temporary file goes)
 * is logged once, not on every sync (the engine syncs on every turn of its loop), and
 * written once it can be again. */
static void test_unwritable_file_logged_once(void **state)
{
    (void)state;
    agent_cmds c;
    eds_error err;
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s/cmds.pending.tmp", dir);
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(agent_cmds_open(&c, dir, &err), EDS_OK);
    assert_int_equal(offer(&c, 1, 5, 100, 0, "{\"p\":77.0}", NULL), AGENT_CMD_QUEUED);
    char log[4096];
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    for (int i = 0; i < 1000; i++)
        agent_cmds_sync(&c);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, log, sizeof(log) - 1, 0);
    close(fd);
    assert_true(n > 0);
    log[n] = '\0';
    size_t lines = 0;
    for (char *p = log; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, 1);
    assert_int_equal(access(path, F_OK), -1); /* nothing written yet */
    assert_int_equal(rmdir(tmp), 0);
    agent_cmds_sync(&c);
    agent_cmds_close(&c);
    assert_int_equal(agent_cmds_open(&c, dir, &err), EDS_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(agent_cmds_head(&c)->json, "{\"p\":77.0}");
    agent_cmds_close(&c);
}

static void test_bounds(void **state)
{
    (void)state;
    agent_cmds c;
    eds_error err;
    agent_cmd_outcome o;
    assert_int_equal(agent_cmds_open(&c, NULL, &err), EDS_OK); /* memory only */
    for (int i = 0; i < AGENT_CMDS_MAX; i++)
        assert_int_equal(offer(&c, i, 1, (uint64_t)i + 1, 0, "1", NULL), AGENT_CMD_QUEUED);
    assert_int_equal(offer(&c, 999, 1, 999, 0, "1", NULL), AGENT_CMD_FULL);
    assert_false(agent_cmds_finished(&c, 999, &o));
    /* the finished uids are a ring: the oldest goes first */
    for (uint64_t u = 1; u <= AGENT_CMDS_DONE + 1; u++)
        agent_cmds_finish(&c, 10000 + u, AGENT_DONE_EXPIRED);
    assert_false(agent_cmds_finished(&c, 10001, &o));
    assert_true(agent_cmds_finished(&c, 10002, &o));
    agent_cmds_forget_anonymous(&c);
    assert_int_equal(c.n, AGENT_CMDS_MAX);
    agent_cmds_close(&c);
    assert_int_equal(agent_cmds_open(&c, NULL, &err), EDS_OK);
    char *big = calloc(1, AGENT_CMDS_BYTES);
    memset(big, '1', AGENT_CMDS_BYTES - 1);
    assert_int_equal(offer(&c, 1, 1, 0, 0, big, NULL), AGENT_CMD_QUEUED);
    assert_int_equal(offer(&c, 2, 1, 0, 0, "12", NULL), AGENT_CMD_FULL);
    agent_cmds_forget_anonymous(&c);
    assert_int_equal(c.n, 0);
    assert_int_equal(c.bytes, 0);
    free(big);
    agent_cmds_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queue_uid_and_file, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_expiry, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_corrupt_line_skipped, make_dir, remove_dir),
        cmocka_unit_test_setup_teardown(test_unwritable_file_logged_once, make_dir, remove_dir),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
