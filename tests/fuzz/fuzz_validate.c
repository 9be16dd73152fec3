/*
 * fuzz_validate - the schema validator on hostile records.
 *
 * Two schemas are compiled once: the shipped schemas/energy.json and a
 * schema below that uses every rule of the dialect. The input is parsed as
 * JSON; an object is validated against both. The verdict must be
 * consistent: EDS_OK with no error object, EDS_ERR_INVALID with a
 * non-empty object that prints. Anything but an object must be refused
 * with EDS_ERR_INVAL.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_schema.h"
#include "fuzz_verdict.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char every_rule[] =
    "{\"timestamp\":{\"type\":\"string\",\"required\":true,\"format\":\"date-time\"},"
    "\"price\":{\"type\":\"float\",\"min\":0.0,\"max\":1000,\"nullable\":true},"
    "\"pf\":{\"type\":\"number\",\"between\":[0,1]},"
    "\"count\":{\"type\":[\"integer\",\"string\"],\"min\":1,\"regex\":\"[0-9]+\"},"
    "\"flag\":{\"type\":\"boolean\"},"
    "\"name\":{\"type\":\"string\",\"minlength\":1,\"maxlength\":8,\"empty\":false,"
    "\"forbidden\":[\"root\"]},"
    "\"mode\":{\"type\":\"string\",\"allowed\":[\"auto\",\"manual\"]},"
    "\"meter\":{\"type\":\"dict\",\"allow_unknown\":false,\"schema\":{"
    "\"phase\":{\"type\":\"integer\",\"allowed\":[1,2,3],\"required\":true},"
    "\"id\":{\"type\":\"string\",\"regex\":\"[a-z]{2}-[0-9]+\"},"
    "\"sub\":{\"type\":\"dict\",\"schema\":{\"x\":{\"type\":\"integer\",\"max\":9}}}}},"
    "\"readings\":{\"type\":\"list\",\"minlength\":1,\"maxlength\":4,\"schema\":{"
    "\"type\":\"dict\",\"schema\":{\"a\":{\"type\":\"integer\"},\"v\":{\"type\":\"float\"}}}},"
    "\"tags\":{\"type\":\"list\",\"allowed\":[\"x\",\"y\"],\"empty\":true}}";

static eds_schema *energy, *rich;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    eds_error err;
    if (eds_schema_load_file(EDS_SOURCE_DIR "/schemas/energy.json", &energy, &err) != EDS_OK ||
        eds_schema_load_json(every_rule, strlen(every_rule), "every-rule", &rich, &err) != EDS_OK) {
        fprintf(stderr, "fuzz_validate: %s\n", err.msg);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
    if (!doc)
        return 0;
    check_verdict(energy, doc);
    check_verdict(rich, doc);
    cJSON_Delete(doc);
    return 0;
}
