/*
 * fuzz_json - the strict JSON parser (eds_json) against cJSON.
 *
 * Checked besides "no crash, no leak, no over-read": whatever the strict parser
 * accepts, cJSON (which accepts more) parses to an equal tree; the accepted text
 * is valid UTF-8 with no NUL; printing the tree gives text the strict parser takes
 * back unchanged; and the captured span of the root's "data" member, minified,
 * parses to the same value as the member.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* cJSON copies at most 63 characters of a number before strtod, so it reads longer
 * ones wrongly; where the text has such a run, the comparison with it is skipped. */
static bool has_long_number(const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        bool num = (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' || s[i] == 'E' ||
                   s[i] == '+' || s[i] == '-';
        run = num ? run + 1 : 0;
        if (run >= 63)
            return true;
    }
    return false;
}

static void check_reparse(const cJSON *v)
{
    char *text = cJSON_PrintUnformatted(v);
    if (!text)
        abort();
    eds_json_doc again;
    eds_error err;
    if (eds_json_parse(text, strlen(text), NULL, &again, &err) != EDS_OK) {
        fprintf(stderr, "printed text refused: %s\n%s\n", err.msg, text);
        abort();
    }
    if (!cJSON_Compare(again.root, v, 1))
        abort();
    eds_json_doc_free(&again);
    cJSON_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan catches any read past the end. */
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    eds_json_doc doc;
    eds_error err;
    int rc = eds_json_parse(text, size, "data", &doc, &err);
    if (rc == EDS_OK) {
        if (!doc.root || memchr(text, '\0', size) || !eds_utf8_valid(text, size))
            abort();
        cJSON *ref = cJSON_ParseWithLength(text, size);
        /* cJSON refuses what nests past its limit of 1000 the same way; scalars at the
         * top level with white space around them it takes too. */
        if (!ref || (!cJSON_Compare(ref, doc.root, 1) && !has_long_number(text, size))) {
            fprintf(stderr, "cJSON disagrees on %.*s\n", (int)size, text);
            abort();
        }
        cJSON_Delete(ref);
        check_reparse(doc.root);
        if (doc.span) {
            const cJSON *member = cJSON_GetObjectItemCaseSensitive(doc.root, "data");
            char *min = malloc(doc.span_len + 1);
            if (!min || !member)
                abort();
            size_t n = eds_json_minify(doc.span, doc.span_len, min);
            eds_json_doc part;
            if (eds_json_parse(min, n, NULL, &part, &err) != EDS_OK ||
                !cJSON_Compare(part.root, member, 1))
                abort();
            if (!doc.span_ws && (n != doc.span_len || memcmp(min, doc.span, n) != 0))
                abort();
            eds_json_doc_free(&part);
            free(min);
        }
    } else if (rc != EDS_ERR_PARSE && rc != EDS_ERR_NOMEM) {
        abort();
    } else if (doc.root || doc.arena) {
        abort(); /* on error nothing is left to free */
    }
    eds_json_doc_free(&doc);
    free(text);
    return 0;
}
