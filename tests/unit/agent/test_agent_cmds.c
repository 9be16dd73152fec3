/*
 * test_agent_cmds.c - agent_cmds against agent_cmds.h: commands wait in order, a uid
 * sent again updates the waiting one, a taken uid is acked not queued, the bounds
 * hold, and the file brings waiting commands and taken uids back after a "power
 * cycle" (a new open on the same folder, nothing closed cleanly).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_cmds.h"

static void test_queue_uid_and_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/eds-agent-cmds-XXXXXX";
    assert_non_null(mkdtemp(dir));
    agent_cmds c;
    eds_error err;
    assert_int_equal(agent_cmds_open(&c, dir, &err), EDS_OK);
    assert_int_equal(agent_cmds_offer(&c, 1, 5, 100, "{\"p\":77.0}", 10), AGENT_CMD_QUEUED);
    assert_int_equal(agent_cmds_offer(&c, 2, 5, 0, "[1]", 3), AGENT_CMD_QUEUED);
    /* the gateway sends uid 100 again on a new connection: updated, not queued twice */
    assert_int_equal(agent_cmds_offer(&c, 9, 6, 100, "{\"p\":77.0}", 10), AGENT_CMD_UPDATED);
    assert_int_equal(c.n, 2);
    const agent_cmd *h = agent_cmds_head(&c);
    assert_int_equal(h->id, 9);
    assert_int_equal(h->gen, 6);
    assert_string_equal(h->json, "{\"p\":77.0}");
    agent_cmds_taken(&c);
    assert_int_equal(agent_cmds_offer(&c, 10, 6, 100, "{\"p\":77.0}", 10), AGENT_CMD_TAKEN_BEFORE);
    assert_int_equal(agent_cmds_offer(&c, 11, 6, 200, "\"x\"", 3), AGENT_CMD_QUEUED);
    /* power cycle: a new open without closing the old one */
    agent_cmds c2;
    assert_int_equal(agent_cmds_open(&c2, dir, &err), EDS_OK);
    assert_int_equal(c2.n, 2);
    h = agent_cmds_head(&c2);
    assert_string_equal(h->json, "[1]");
    assert_int_equal(h->gen, AGENT_CMDS_STALE);
    assert_int_equal(agent_cmds_offer(&c2, 1, 1, 100, "{\"p\":77.0}", 10), AGENT_CMD_TAKEN_BEFORE);
    assert_int_equal(agent_cmds_offer(&c2, 2, 1, 200, "\"x\"", 3), AGENT_CMD_UPDATED);
    agent_cmds_close(&c2);
    agent_cmds_close(&c);
    char path[64];
    snprintf(path, sizeof(path), "%s/cmds.pending", dir);
    unlink(path);
    rmdir(dir);
}

static void test_bounds(void **state)
{
    (void)state;
    agent_cmds c;
    eds_error err;
    assert_int_equal(agent_cmds_open(&c, NULL, &err), EDS_OK); /* memory only */
    for (int i = 0; i < AGENT_CMDS_MAX; i++)
        assert_int_equal(agent_cmds_offer(&c, i, 1, 0, "1", 1), AGENT_CMD_QUEUED);
    assert_int_equal(agent_cmds_offer(&c, 999, 1, 0, "1", 1), AGENT_CMD_FULL);
    agent_cmds_close(&c);
    assert_int_equal(agent_cmds_open(&c, NULL, &err), EDS_OK);
    char *big = calloc(1, AGENT_CMDS_BYTES);
    memset(big, '1', AGENT_CMDS_BYTES - 1);
    assert_int_equal(agent_cmds_offer(&c, 1, 1, 0, big, AGENT_CMDS_BYTES - 1), AGENT_CMD_QUEUED);
    assert_int_equal(agent_cmds_offer(&c, 2, 1, 0, "12", 2), AGENT_CMD_FULL);
    free(big);
    agent_cmds_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_uid_and_file),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
