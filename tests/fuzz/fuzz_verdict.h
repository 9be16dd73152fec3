/*
 * fuzz_verdict.h - the validator's contract, checked by the schema fuzzers:
 * a non-object is EDS_ERR_INVAL with no error object; EDS_OK comes without
 * one; EDS_ERR_INVALID with a non-empty object that prints. Anything else
 * (except running out of memory) aborts, which libFuzzer reports.
 */
#ifndef FUZZ_VERDICT_H
#define FUZZ_VERDICT_H

#include <stdlib.h>

#include "eds_schema.h"

static void check_verdict(const eds_schema *s, const cJSON *doc)
{
    cJSON *errors = NULL;
    int rc = eds_schema_validate(s, doc, &errors);
    if (!cJSON_IsObject(doc)) {
        if (rc != EDS_ERR_INVAL || errors)
            abort();
    } else if (rc == EDS_OK) {
        if (errors)
            abort();
    } else if (rc == EDS_ERR_INVALID) {
        if (!cJSON_IsObject(errors) || !errors->child)
            abort();
        char *text = cJSON_PrintUnformatted(errors);
        if (!text)
            abort();
        cJSON_free(text);
    } else if (rc != EDS_ERR_NOMEM) {
        abort();
    }
    cJSON_Delete(errors);
}

#endif
