/*
 * test_metrics.c - gw_metrics_format, the Prometheus text of a snapshot:
 * every counter ends in _total and carries the stats field's value, every
 * family has HELP and TYPE once, per-device series carry the `device` label
 * with \ " and newline escaped, devices past GW_METRICS_MAX_DEVICES are
 * counted instead of listed. (The HTTP side and promtool are in
 * tests/integration/test_gateway_metrics.py.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw_metrics.h"

typedef struct devs {
    const char **ids;
    gw_device_counters *c;
} devs;

static void device_at(void *ctx, size_t i, gw_metrics_device *out)
{
    devs *d = ctx;
    out->id = d->ids[i % 3];
    out->c = &d->c[i % 3];
    out->online = i % 3 == 0;
}

static char *format(const gw_metrics_snapshot *snap)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(gw_metrics_format(snap, &text, &len), EDS_OK);
    assert_int_equal(strlen(text), len);
    return text;
}

/* The line that starts with `prefix` followed by a space or `{`, or NULL. */
static const char *line_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return p;
    return NULL;
}

static long long value_of(const char *text, const char *series)
{
    const char *p = line_of(text, series);
    assert_non_null(p);
    return strtoll(p + strlen(series) + 1, NULL, 10);
}

static void test_gateway_counters_and_gauges(void **state)
{
    (void)state;
    gw_stats st = {0};
    st.messages_in = 120;
    st.acked = 117;
    st.rejected = 2;
    st.duplicates = 1;
    st.cmds_delivered = 5;
    st.lines_too_long = 9;
    st.journal_failures = 4;
    gw_metrics_snapshot snap = {.stats = &st,
                                .uptime_s = 42,
                                .connections = 3,
                                .devices_online = 2,
                                .broker_connected = true,
                                .broker_timeouts = 2,
                                .cmds_lost = 7};
    char *t = format(&snap);
    assert_int_equal(value_of(t, "eds_records_received_total"), 120);
    assert_int_equal(value_of(t, "eds_records_acked_total"), 117);
    assert_int_equal(value_of(t, "eds_records_rejected_total"), 2);
    assert_int_equal(value_of(t, "eds_records_duplicate_total"), 1);
    assert_int_equal(value_of(t, "eds_commands_delivered_total"), 5);
    assert_int_equal(value_of(t, "eds_lines_too_long_total"), 9);
    assert_int_equal(value_of(t, "eds_journal_failures_total"), 4);
    assert_int_equal(value_of(t, "eds_uptime_seconds"), 42);
    assert_int_equal(value_of(t, "eds_connections_open"), 3);
    assert_int_equal(value_of(t, "eds_broker_connected"), 1);
    /* The stats topic's broker_timeouts and cmds_lost (the publisher's counts) too. */
    assert_int_equal(value_of(t, "eds_broker_timeouts_total"), 2);
    assert_int_equal(value_of(t, "eds_commands_lost_total"), 7);
    assert_non_null(strstr(t, "# TYPE eds_records_acked_total counter\n"));
    assert_non_null(strstr(t, "# TYPE eds_devices_online gauge\n"));
    /* Every counter family ends in _total; every TYPE line comes once, after its HELP. */
    int families = 0;
    for (const char *p = strstr(t, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
        char name[128], type[16];
        assert_int_equal(sscanf(p, "# TYPE %127s %15s", name, type), 2);
        if (strcmp(type, "counter") == 0)
            assert_non_null(strstr(name, "_total"));
        char help[160];
        snprintf(help, sizeof(help), "# HELP %s ", name);
        assert_non_null(strstr(t, help));
        assert_int_equal(strncmp(name, "eds_", 4), 0);
        families++;
    }
    assert_int_equal(families, 33 + 8 + 6); /* counters, gauges, per-device families */
    free(t);
}

static void test_device_labels_are_escaped(void **state)
{
    (void)state;
    gw_stats st = {0};
    const char *ids[3] = {"myrio-01", "we\"ird\\id", "two\nlines"};
    gw_device_counters c[3] = {
        {.records_in = 10, .acked = 8, .rejected = 1, .duplicates = 1, .last_seen = 1796184000},
        {0},
        {.records_in = 4}};
    devs d = {ids, c};
    gw_metrics_snapshot snap = {.stats = &st, .devices_known = 3, .device = device_at, .ctx = &d};
    char *t = format(&snap);
    assert_int_equal(value_of(t, "eds_device_records_received_total{device=\"myrio-01\"}"), 10);
    assert_int_equal(value_of(t, "eds_device_records_acked_total{device=\"myrio-01\"}"), 8);
    assert_int_equal(value_of(t, "eds_device_records_rejected_total{device=\"myrio-01\"}"), 1);
    assert_int_equal(value_of(t, "eds_device_records_duplicate_total{device=\"myrio-01\"}"), 1);
    assert_int_equal(value_of(t, "eds_device_last_seen_timestamp_seconds{device=\"myrio-01\"}"),
                     1796184000);
    assert_int_equal(value_of(t, "eds_device_online{device=\"myrio-01\"}"), 1);
    assert_int_equal(value_of(t, "eds_device_online{device=\"we\\\"ird\\\\id\"}"), 0);
    assert_int_equal(value_of(t, "eds_device_records_received_total{device=\"two\\nlines\"}"), 4);
    assert_null(strstr(t, "two\nlines"));
    assert_int_equal(value_of(t, "eds_metrics_devices_omitted"), 0);
    free(t);
}

static void test_devices_past_the_limit_are_counted(void **state)
{
    (void)state;
    gw_stats st = {0};
    const char *ids[3] = {"a", "b", "c"};
    gw_device_counters c[3] = {{0}};
    devs d = {ids, c};
    gw_metrics_snapshot snap = {
        .stats = &st, .devices_known = GW_METRICS_MAX_DEVICES + 7, .device = device_at, .ctx = &d};
    char *t = format(&snap);
    assert_int_equal(value_of(t, "eds_metrics_devices_omitted"), 7);
    size_t online_lines = 0;
    for (const char *p = strstr(t, "\neds_device_online{"); p;
         p = strstr(p + 1, "\neds_device_online{"))
        online_lines++;
    assert_int_equal(online_lines, GW_METRICS_MAX_DEVICES);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_counters_and_gauges),
        cmocka_unit_test(test_device_labels_are_escaped),
        cmocka_unit_test(test_devices_past_the_limit_are_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
