#include "gw_records.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_err.h"

/* The record's data member as the agent wrote it minus white space (malloc'd,
 * NUL-terminated), from the span the parser handed back: publishing these bytes
 * rather than cJSON's rendering keeps every number as sent (cJSON prints 51.0 as
 * 51 and rounds integers past 2^53). */
static char *data_text(const eds_msg *m, size_t *out_len)
{
    char *out = malloc(m->data_len + 1);
    if (!out)
        return NULL;
    if (m->data_ws) {
        *out_len = eds_json_minify(m->data_json, m->data_len, out);
    } else {
        memcpy(out, m->data_json, m->data_len);
        *out_len = m->data_len;
    }
    out[*out_len] = '\0';
    return out;
}

int gw_record_build(gw_record *r, const eds_schema *schema, const eds_msg *m)
{
    r->kind = GW_REC_DATA;
    r->payload = r->reply = NULL;
    r->len = r->reply_len = 0;
    cJSON *errors = NULL;
    int rc = schema ? eds_schema_validate(schema, m->data, &errors) : EDS_OK;
    size_t dlen = 0;
    char *data = rc == EDS_OK || rc == EDS_ERR_INVALID ? data_text(m, &dlen) : NULL;
    if (rc == EDS_ERR_INVALID) {
        r->kind = GW_REC_REJECT;
        /* rejected topic: {"seq":N,"errors":{...},"data":{...}} */
        char *errs = cJSON_PrintUnformatted(errors);
        cJSON_Delete(errors);
        if (data && errs) {
            size_t elen = strlen(errs), cap = elen + dlen + 96;
            r->payload = malloc(cap);
            if (r->payload)
                snprintf(r->payload, cap, "{\"seq\":%" PRIu64 ",\"errors\":%s,\"data\":%s}", m->seq,
                         errs, data);
            r->reply = malloc(elen + 96);
            if (r->reply)
                r->reply_len = (uint32_t)eds_fmt_nack(r->reply, elen + 96, m->seq, errs, elen);
        }
        free(errs);
        free(data);
    } else if (rc == EDS_OK) {
        r->payload = data;
    } else {
        free(data);
    }
    if (!r->payload || (r->kind == GW_REC_REJECT && !r->reply)) {
        free(r->payload);
        free(r->reply);
        r->payload = r->reply = NULL;
        r->reply_len = 0;
        return EDS_ERR_NOMEM;
    }
    r->len = (uint32_t)strlen(r->payload);
    return EDS_OK;
}

size_t gw_reject_line_cap(size_t len, const char *reason)
{
    if (len > GW_REJECTED_LINE_MAX)
        len = GW_REJECTED_LINE_MAX;
    /* Every byte of the line and of the reason may become a 6-byte escape. */
    return (len + strlen(reason)) * 6 + 256;
}

size_t gw_reject_line_doc(char *buf, size_t cap, eds_proto_error code, const char *line, size_t len,
                          const char *reason)
{
    if (len > GW_REJECTED_LINE_MAX)
        len = GW_REJECTED_LINE_MAX;
    size_t n =
        (size_t)snprintf(buf, cap, "{\"error\":\"%s\",\"line\":", eds_proto_error_name(code));
    eds_json_append_text(buf, cap, &n, line, len);
    n += (size_t)snprintf(buf + n, cap - n, ",\"reason\":");
    eds_json_append_string(buf, cap, &n, reason);
    buf[n++] = '}';
    return n;
}
