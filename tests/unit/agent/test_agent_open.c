/* eds_agent_open: the LabVIEW entry point (a config file path in, a handle or
 * an error text out, plain C types only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edsagent.h"

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/eds-agent-open-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A good file gives a handle that takes records (queued: no gateway runs). */
static void test_open_and_send(void **state)
{
    char pw[160], conf[512];
    snprintf(pw, sizeof(pw), "%s", write_file("pw", "s3cret\n"));
    snprintf(
        conf, sizeof(conf),
        "gateway 127.0.0.1:1\ndevice myrio-01\npassword_file %s\nschema %s/schemas/energy.json\n",
        pw, EDS_SOURCE_DIR);
    char err[256] = "untouched";
    eds_agent *a = eds_agent_open(write_file("agent.conf", conf), err, sizeof(err));
    if (!a)
        fail_msg("eds_agent_open failed: %s", err);
    assert_int_equal(eds_agent_send_str(a, "{\"timestamp\":\"2026-11-24T10:00:00Z\","
                                           "\"day-ahead-price\":81.4,\"power_factor\":0.97}"),
                     0);
    assert_int_equal(eds_agent_pending(a), 1);
    /* A record the schema refuses is not queued. */
    assert_true(eds_agent_send_str(a, "{\"day-ahead-price\":-3}") < 0);
    assert_int_equal(eds_agent_pending(a), 1);
    eds_agent_destroy(a);
}

/* A bad file gives NULL and a message naming the file and the line. */
static void test_bad_config_names_file_and_line(void **state)
{
    char err[256] = "";
    const char *path = write_file("bad.conf", "device myrio-01\nlisener 5\n");
    eds_agent *a = eds_agent_open(path, err, sizeof(err));
    assert_null(a);
    assert_non_null(strstr(err, "bad.conf:2"));
    assert_non_null(strstr(err, "lisener"));
}

static void test_missing_file(void **state)
{
    char err[256] = "";
    assert_null(eds_agent_open("/nonexistent/eds-agent.conf", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/eds-agent.conf"));
    /* errcap 0 is allowed (LabVIEW may pass no buffer). */
    assert_null(eds_agent_open("/nonexistent/eds-agent.conf", NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_send),
        cmocka_unit_test(test_bad_config_names_file_and_line),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests_name("agent_open", tests, setup, teardown);
}
