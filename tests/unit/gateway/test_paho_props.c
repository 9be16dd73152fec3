/*
 * test_paho_props.c - gw_paho_props, the MQTT 5 properties of a publish built
 * in the publisher's gw_paho_propbuf: received_at is the RFC 3339 UTC text of
 * received_ms every time, whatever the previous call cached (second
 * boundaries, a day/month/leap-day change, the clock jumping back and
 * forward, a negative clock); seq is the decimal of any uint64; the properties'
 * length is the one MQTT 5 puts on the wire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gw_paho_client.h"

/* The reference: what the gateway wrote before the cache (gmtime + printf). */
static void reference_at(int64_t ms, char *out, size_t cap)
{
    if (ms < 0)
        ms = 0;
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03dZ", (int)(ms % 1000));
}

/* The value of user property name in p ("" when absent). */
static const char *user_prop(const MQTTProperties *p, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    for (int i = 0; i < p->count; i++) {
        const MQTTProperty *q = &p->array[i];
        if (q->identifier == MQTTPROPERTY_CODE_USER_PROPERTY &&
            q->value.data.len == (int)strlen(name) &&
            memcmp(q->value.data.data, name, strlen(name)) == 0) {
            assert_true((size_t)q->value.value.len < cap);
            memcpy(out, q->value.value.data, (size_t)q->value.value.len);
            out[q->value.value.len] = '\0';
        }
    }
    return out;
}

static void check_at(gw_paho_propbuf *buf, int64_t ms)
{
    gw_pub_props props = {.device = "myrio-01", .stream = "3", .seq = 7, .received_ms = ms};
    MQTTProperties out;
    gw_paho_props(&out, buf, &props);
    char want[40], got[40];
    reference_at(ms, want, sizeof(want));
    user_prop(&out, "received_at", got, sizeof(got));
    if (strcmp(got, want) != 0)
        fail_msg("received_ms %" PRId64 ": got %s, want %s", ms, got, want);
}

static void test_received_at_boundaries_and_jumps(void **state)
{
    (void)state;
    gw_paho_propbuf buf;
    memset(&buf, 0, sizeof(buf));
    const int64_t leap = 1709251199999; /* 2024-02-29T23:59:59.999Z */
    const int64_t walk[] = {
        0,
        999,
        1000,
        1001,
        59999,
        60000, /* second and minute boundaries */
        leap,
        leap + 1,
        leap - 1000,
        leap, /* leap day -> March, back a second */
        leap - 3600000,
        leap + 86400000,     /* clock back an hour, forward a day */
        leap + 86400000 + 5, /* same second, other milliseconds */
        -1,
        -1000,
        0,
        253402300799999, /* a clock before 1970 is clamped; 9999-12-31 */
        leap,
    };
    for (size_t i = 0; i < sizeof(walk) / sizeof(walk[0]); i++)
        check_at(&buf, walk[i]);
    /* a bounded pseudo-random walk: small steps across seconds, sometimes a big jump */
    uint64_t x = 88172645463325252u;
    int64_t ms = leap;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ms += (i % 97 == 0) ? (int64_t)(x % 200000000000u) - 100000000000 : (int64_t)(x % 1500);
        if (ms < 0)
            ms = -ms;
        check_at(&buf, ms);
    }
}

static void test_seq_and_length(void **state)
{
    (void)state;
    gw_paho_propbuf buf;
    memset(&buf, 0, sizeof(buf));
    const uint64_t seqs[] = {0, 9007199254740991u, UINT64_MAX};
    const char *texts[] = {"0", "9007199254740991", "18446744073709551615"};
    for (size_t i = 0; i < 3; i++) {
        gw_pub_props props = {.device = "myrio-01",
                              .seq = seqs[i],
                              .received_ms = 1709251199999,
                              .corr = "\x01\x00x",
                              .corr_len = 3};
        MQTTProperties out;
        gw_paho_props(&out, &buf, &props);
        char got[40];
        assert_string_equal(user_prop(&out, "seq", got, sizeof(got)), texts[i]);
        assert_string_equal(user_prop(&out, "stream", got, sizeof(got)), "0");
        assert_int_equal(out.count, 5);

        /* the length on the wire (MQTT 5, 2.2.2.2): an identifier byte per property, a
         * 2-byte length before each string, name and value, and the correlation data */
        int want = 0;
        const char *names[] = {"device", "stream", "seq", "received_at"};
        for (int k = 0; k < 4; k++)
            want += 1 + 2 + (int)strlen(names[k]) + 2 +
                    (int)strlen(user_prop(&out, names[k], got, sizeof(got)));
        want += 1 + 2 + 3;
        assert_int_equal(out.length, want);
    }
    /* correlation data alone (a response) */
    gw_pub_props props = {.corr = "abc", .corr_len = 3};
    MQTTProperties out;
    gw_paho_props(&out, &buf, &props);
    assert_int_equal(out.count, 1);
    assert_int_equal(out.array[0].identifier, MQTTPROPERTY_CODE_CORRELATION_DATA);
    assert_int_equal(out.length, 1 + 2 + 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_received_at_boundaries_and_jumps),
        cmocka_unit_test(test_seq_and_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
