/* Unit tests for the simulator: every record is a JSON object valid under
 * schemas/energy.json, with values in their documented ranges, an energy
 * counter that never decreases and a unique sample counter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent_sim.h"
#include "eds_schema.h"

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static void test_records_valid_and_realistic(void **state)
{
    eds_schema *schema = NULL;
    eds_error err;
    int rc = eds_schema_load_file(EDS_SOURCE_DIR "/schemas/energy.json", &schema, &err);
    if (rc != EDS_OK)
        fail_msg("%s", err.msg);
    regex_t ts;
    assert_int_equal(regcomp(&ts,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    agent_sim sim;
    agent_sim_init(&sim, 42);
    struct timespec now = {.tv_sec = 1795000000, .tv_nsec = 250000000};
    double last_energy = -1, last_price = -1;
    for (int i = 1; i <= 5000; i++) {
        char buf[512];
        size_t n = agent_sim_record(&sim, &now, 1.0, buf, sizeof(buf));
        assert_true(n > 0 && n == strlen(buf));
        cJSON *o = cJSON_ParseWithLength(buf, n);
        assert_non_null(o);
        cJSON *errors = NULL;
        rc = eds_schema_validate(schema, o, &errors);
        if (rc != EDS_OK) {
            char *t = cJSON_PrintUnformatted(errors);
            fail_msg("record %d invalid: %s: %s", i, t, buf);
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
        assert_true(cJSON_IsString(t));
        assert_int_equal(regexec(&ts, t->valuestring, 0, NULL, 0), 0);
        double price = num(o, "day-ahead-price");
        assert_true(price >= 20.0 && price <= 150.0);
        if (last_price >= 0)
            assert_true(price - last_price < 5.01 && last_price - price < 5.01); /* a walk */
        last_price = price;
        double pf = num(o, "power_factor");
        assert_true(pf >= 0.85 && pf <= 1.0);
        double v = num(o, "voltage");
        assert_true(v >= 225.0 && v <= 235.0);
        double c = num(o, "current");
        assert_true(c >= 2.0 && c <= 16.0);
        double p = num(o, "power");
        assert_true(p > 0 && p < 235.0 * 16.0 + 1);
        double e = num(o, "energy");
        assert_true(e >= last_energy);
        last_energy = e;
        assert_true(num(o, "sample") == (double)i);
        cJSON_Delete(o);
        now.tv_sec++;
    }
    regfree(&ts);
    eds_schema_destroy(schema);
}

static void test_timestamp_is_utc_of_given_time(void **state)
{
    agent_sim sim;
    agent_sim_init(&sim, 1);
    struct timespec now = {.tv_sec = 1795514400, .tv_nsec = 7000000}; /* 2026-11-24 10:00:00 */
    char buf[512];
    assert_true(agent_sim_record(&sim, &now, 0, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "\"timestamp\":\"2026-11-24T10:00:00.007Z\""));
    /* too small a buffer is refused, not overrun */
    assert_int_equal(agent_sim_record(&sim, &now, 0, buf, 20), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_valid_and_realistic),
        cmocka_unit_test(test_timestamp_is_utc_of_given_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
