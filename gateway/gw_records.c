#include "gw_records.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_err.h"

/* Copies JSON text without the whitespace between tokens. */
static size_t json_minify(const char *in, size_t len, char *out)
{
    size_t n = 0;
    bool str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (str) {
            out[n++] = ch;
            if (ch == '\\' && i + 1 < len)
                out[n++] = in[++i];
            else if (ch == '"')
                str = false;
        } else if (ch == '"') {
            str = true;
            out[n++] = ch;
        } else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            out[n++] = ch;
        }
    }
    return n;
}

static size_t skip_ws(const char *p, size_t i, size_t len)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* End (exclusive) of the string that starts at p[i] == '"'. */
static size_t skip_string(const char *p, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return len;
}

/* The top-level member "data" of a line the parser accepted (one object,
 * no duplicate keys), as the agent wrote it minus whitespace: malloc'd, or
 * NULL (not found as a plain key, or out of memory). Publishing these bytes
 * rather than cJSON's rendering keeps every number as sent: cJSON prints
 * 51.0 as 51 and rounds integers past 2^53. */
static char *raw_data_member(const char *line, size_t len, size_t *out_len)
{
    size_t i = skip_ws(line, 0, len);
    if (i >= len || line[i] != '{')
        return NULL;
    i++;
    for (;;) {
        i = skip_ws(line, i, len);
        if (i >= len || line[i] != '"')
            return NULL;
        size_t kstart = i;
        i = skip_string(line, i, len);
        bool is_data = i - kstart == 6 && memcmp(line + kstart, "\"data\"", 6) == 0;
        i = skip_ws(line, i, len);
        if (i >= len || line[i] != ':')
            return NULL;
        i = skip_ws(line, i + 1, len);
        size_t vstart = i;
        int depth = 0;
        while (i < len) {
            char ch = line[i];
            if (ch == '"') {
                i = skip_string(line, i, len);
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (depth == 0)
                    break;
                depth--;
            } else if (ch == ',' && depth == 0) {
                break;
            }
            i++;
        }
        if (is_data) {
            char *out = malloc(i - vstart + 1);
            if (!out)
                return NULL;
            *out_len = json_minify(line + vstart, i - vstart, out);
            out[*out_len] = '\0';
            return out;
        }
        if (i >= len || line[i] != ',')
            return NULL;
        i++;
    }
}

int gw_record_build(gw_record *r, const eds_schema *schema, const eds_msg *m, const char *line,
                    size_t len)
{
    r->kind = GW_REC_DATA;
    r->payload = r->reply = NULL;
    r->len = r->reply_len = 0;
    cJSON *errors = NULL;
    int rc = schema ? eds_schema_validate(schema, m->data, &errors) : EDS_OK;
    size_t dlen = 0;
    char *data = rc == EDS_OK || rc == EDS_ERR_INVALID ? raw_data_member(line, len, &dlen) : NULL;
    if (!data && (data = cJSON_PrintUnformatted(m->data)) != NULL)
        dlen = strlen(data);
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
        (size_t)snprintf(buf, cap, "{\"error\":\"%s\",\"line\":\"", eds_proto_error_name(code));
    bool utf8 = eds_utf8_valid(line, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20 || (ch >= 0x80 && !utf8)) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    n += (size_t)snprintf(buf + n, cap - n, "\",\"reason\":");
    eds_json_append_string(buf, cap, &n, reason);
    buf[n++] = '}';
    return n;
}
