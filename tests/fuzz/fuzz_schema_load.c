/*
 * fuzz_schema_load - the schema loader (eds_schema_load_json).
 *
 * The input is a schema file. A schema that loads is then used: it
 * validates a few fixed records and the input itself (when the input is a
 * JSON object), and the verdicts must be consistent (EDS_OK without an
 * error object, EDS_ERR_INVALID with a non-empty one). Regexes are not
 * filtered: the loader's limits (docs/schema.md, "Regex limits") must keep
 * regcomp within libFuzzer's memory and time limits on its own.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eds_schema.h"
#include "fuzz_verdict.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const records[] = {
    "{\"timestamp\":\"2026-11-24T10:00:00Z\",\"day-ahead-price\":81.4,\"power_factor\":0.97}",
    "{\"timestamp\":\"2026-11-24T10:00:01Z\",\"day-ahead-price\":-3,\"power_factor\":1.2}",
    "{}",
    "{\"a\":null,\"b\":[1,\"x\",{\"c\":true}],\"meter\":{\"phase\":2},\"readings\":[{\"a\":1}]}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    eds_schema *s = NULL;
    eds_error err;
    int rc = eds_schema_load_json((const char *)data, size, "fuzz.json", &s, &err);
    if (rc != EDS_OK) {
        if (s || (rc != EDS_ERR_SCHEMA && rc != EDS_ERR_NOMEM) || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (!s || strcmp(eds_schema_name(s), "fuzz.json") != 0)
        abort();
    for (size_t i = 0; i < sizeof(records) / sizeof(records[0]); i++) {
        cJSON *doc = cJSON_Parse(records[i]);
        if (!doc)
            abort();
        check_verdict(s, doc);
        cJSON_Delete(doc);
    }
    cJSON *self = cJSON_ParseWithLength((const char *)data, size);
    if (cJSON_IsObject(self))
        check_verdict(s, self);
    cJSON_Delete(self);
    eds_schema_destroy(s);
    return 0;
}
