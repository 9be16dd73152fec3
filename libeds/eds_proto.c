#include "eds_proto.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- message parsing ---------------------------------------------------- */

/* An integral JSON number in [min, max] (all such values are exact doubles
 * since max <= 2^53 - 1). */
static bool get_int(const cJSON *root, const char *key, double min, double max, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (d != floor(d) || d < min || d > max)
        return false;
    *out = d;
    return true;
}

static const char *get_string(const cJSON *root, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_to_gateway(eds_msg *m, const char *type, eds_error *err)
{
    double d;
    if (strcmp(type, "hello") == 0) {
        m->type = EDS_MSG_HELLO;
        const cJSON *dev = cJSON_GetObjectItemCaseSensitive(m->root, "device");
        if (!cJSON_IsString(dev))
            return eds_error_set(err, EDS_ERR_PROTO, "hello needs a string \"device\"");
        m->device = dev->valuestring;
        const cJSON *pw = cJSON_GetObjectItemCaseSensitive(m->root, "password");
        if (pw && !cJSON_IsString(pw))
            return eds_error_set(err, EDS_ERR_PROTO, "\"password\" must be a string");
        m->password = pw ? pw->valuestring : NULL;
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(m->root, "stream");
        if (st && !cJSON_IsString(st))
            return eds_error_set(err, EDS_ERR_PROTO, "\"stream\" must be a string");
        m->stream = st ? st->valuestring : "0";
        if (!eds_stream_id_valid(m->stream))
            return eds_error_set(err, EDS_ERR_PROTO,
                                 "\"stream\" must be 1..64 printable ASCII characters");
        if (!get_int(m->root, "proto", 0, 1e9, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "hello needs an integer \"proto\"");
        m->proto = (int)d;
        m->cmd_results = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m->root, "cmd_results"));
        if (cJSON_GetObjectItemCaseSensitive(m->root, "max_line")) {
            if (!get_int(m->root, "max_line", 1, (double)EDS_SEQ_MAX, &d))
                return eds_error_set(err, EDS_ERR_PROTO, "\"max_line\" must be a positive integer");
            m->max_line = (uint64_t)d;
        }
        return EDS_OK;
    }
    if (strcmp(type, "data") == 0) {
        m->type = EDS_MSG_DATA;
        if (!get_int(m->root, "seq", 1, (double)EDS_SEQ_MAX, &d))
            return eds_error_set(err, EDS_ERR_PROTO,
                                 "data needs an integer \"seq\" in 1..9007199254740991");
        m->seq = (uint64_t)d;
        m->data = cJSON_GetObjectItemCaseSensitive(m->root, "data");
        if (!cJSON_IsObject(m->data))
            return eds_error_set(err, EDS_ERR_PROTO, "data needs an object \"data\"");
        return EDS_OK;
    }
    if (strcmp(type, "ack") == 0) {
        m->type = EDS_MSG_CMD_ACK;
        if (!get_int(m->root, "id", 0, (double)EDS_SEQ_MAX, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "ack needs an integer \"id\"");
        m->id = (int64_t)d;
        return EDS_OK;
    }
    if (strcmp(type, "nack") == 0) {
        m->type = EDS_MSG_CMD_NACK;
        if (!get_int(m->root, "id", 0, (double)EDS_SEQ_MAX, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "nack needs an integer \"id\"");
        m->id = (int64_t)d;
        m->errors = cJSON_GetObjectItemCaseSensitive(m->root, "errors");
        if (!cJSON_IsObject(m->errors))
            return eds_error_set(err, EDS_ERR_PROTO, "nack needs an object \"errors\"");
        m->status = get_string(m->root, "status");
        m->reason = get_string(m->root, "reason");
        return EDS_OK;
    }
    if (strcmp(type, "ping") == 0) {
        m->type = EDS_MSG_PING;
        return EDS_OK;
    }
    return eds_error_set(err, EDS_ERR_PROTO, "unknown message type \"%.32s\"", type);
}

static int parse_to_agent(eds_msg *m, const char *type, eds_error *err)
{
    double d;
    if (strcmp(type, "welcome") == 0) {
        m->type = EDS_MSG_WELCOME;
        if (!get_int(m->root, "proto", 0, 1e9, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "welcome needs an integer \"proto\"");
        m->proto = (int)d;
        if (!get_int(m->root, "last_seq", 0, (double)EDS_SEQ_MAX, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "welcome needs an integer \"last_seq\"");
        m->last_seq = (uint64_t)d;
        m->cmd_results = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m->root, "cmd_results"));
        return EDS_OK;
    }
    if (strcmp(type, "ack") == 0 || strcmp(type, "nack") == 0) {
        bool nack = type[0] == 'n';
        m->type = nack ? EDS_MSG_NACK : EDS_MSG_ACK;
        if (!get_int(m->root, "seq", 1, (double)EDS_SEQ_MAX, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "%s needs an integer \"seq\"", type);
        m->seq = (uint64_t)d;
        if (nack) {
            m->errors = cJSON_GetObjectItemCaseSensitive(m->root, "errors");
            if (!cJSON_IsObject(m->errors))
                return eds_error_set(err, EDS_ERR_PROTO, "nack needs an object \"errors\"");
        } else {
            m->duplicate = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m->root, "duplicate"));
        }
        return EDS_OK;
    }
    if (strcmp(type, "cmd") == 0) {
        m->type = EDS_MSG_CMD;
        if (!get_int(m->root, "id", 0, (double)EDS_SEQ_MAX, &d))
            return eds_error_set(err, EDS_ERR_PROTO, "cmd needs an integer \"id\"");
        m->id = (int64_t)d;
        if (get_int(m->root, "uid", 1, (double)EDS_SEQ_MAX, &d))
            m->uid = (uint64_t)d;
        if (cJSON_GetObjectItemCaseSensitive(m->root, "ttl")) {
            /* Not a whole number in range: that command is refused, the line is read. */
            m->ttl_set = get_int(m->root, "ttl", 0, (double)EDS_CMD_TTL_MAX, &d);
            m->ttl = m->ttl_set ? (uint64_t)d : 0;
            m->ttl_bad = !m->ttl_set;
        }
        m->data = cJSON_GetObjectItemCaseSensitive(m->root, "data");
        if (!m->data)
            return eds_error_set(err, EDS_ERR_PROTO, "cmd needs \"data\"");
        return EDS_OK;
    }
    if (strcmp(type, "pong") == 0) {
        m->type = EDS_MSG_PONG;
        return EDS_OK;
    }
    if (strcmp(type, "error") == 0) {
        m->type = EDS_MSG_ERROR;
        m->code = get_string(m->root, "code");
        if (!m->code)
            return eds_error_set(err, EDS_ERR_PROTO, "error needs a string \"code\"");
        m->message = get_string(m->root, "message");
        if (!m->message)
            m->message = "";
        return EDS_OK;
    }
    return eds_error_set(err, EDS_ERR_PROTO, "unknown message type \"%.32s\"", type);
}

int eds_msg_parse(const char *line, size_t len, eds_dir dir, eds_msg *msg, eds_error *err)
{
    memset(msg, 0, sizeof(*msg));
    if (memchr(line, '\0', len))
        return eds_error_set(err, EDS_ERR_PARSE, "NUL byte in line");
    int rc = eds_json_parse(line, len, "data", &msg->doc, err);
    if (rc != EDS_OK)
        return rc;
    cJSON *root = msg->root = msg->doc.root;
    if (!cJSON_IsObject(root)) {
        eds_msg_free(msg);
        return eds_error_set(err, EDS_ERR_PARSE, "not a JSON object");
    }
    const char *type = get_string(root, "type");
    if (!type)
        rc = eds_error_set(err, EDS_ERR_PROTO, "message needs a string \"type\"");
    else if (dir == EDS_TO_GATEWAY)
        rc = parse_to_gateway(msg, type, err);
    else
        rc = parse_to_agent(msg, type, err);
    if (rc != EDS_OK) {
        eds_msg_free(msg);
        return rc;
    }
    if (msg->data) {
        msg->data_json = msg->doc.span;
        msg->data_len = msg->doc.span_len;
        msg->data_ws = msg->doc.span_ws;
    }
    return EDS_OK;
}

void eds_msg_free(eds_msg *msg)
{
    eds_json_doc_free(&msg->doc);
    memset(msg, 0, sizeof(*msg));
}

bool eds_device_id_valid(const char *id)
{
    if (!id)
        return false;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++, n++) {
        unsigned char c = *p;
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (n >= EDS_DEVICE_MAX)
            return false;
        if (!alnum && (n == 0 || (c != '_' && c != '.' && c != '-')))
            return false;
    }
    return n > 0;
}

bool eds_stream_id_valid(const char *id)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++, n++)
        if (n >= EDS_STREAM_MAX || *p < 0x21 || *p > 0x7E || *p == '"' || *p == '\\')
            return false;
    return n > 0;
}

/* ---- error codes -------------------------------------------------------- */

static const struct {
    const char *name;
    bool fatal;
} proto_errors[EDS_PE_COUNT] = {
    [EDS_PE_AUTH_FAILED] = {"auth_failed", true},
    [EDS_PE_NOT_AUTHENTICATED] = {"not_authenticated", true},
    [EDS_PE_UNSUPPORTED_PROTO] = {"unsupported_proto", true},
    [EDS_PE_TIMEOUT] = {"timeout", true},
    [EDS_PE_LINE_TOO_LONG] = {"line_too_long", true},
    [EDS_PE_REPLACED] = {"replaced", true},
    [EDS_PE_SERVER_BUSY] = {"server_busy", true},
    [EDS_PE_SHUTTING_DOWN] = {"shutting_down", true},
    [EDS_PE_BAD_JSON] = {"bad_json", false},
    [EDS_PE_BAD_MESSAGE] = {"bad_message", false},
};

const char *eds_proto_error_name(eds_proto_error e)
{
    return (unsigned)e < EDS_PE_COUNT ? proto_errors[e].name : "unknown";
}

bool eds_proto_error_fatal(eds_proto_error e)
{
    return (unsigned)e < EDS_PE_COUNT ? proto_errors[e].fatal : true;
}

/* ---- formatting --------------------------------------------------------- */

static bool append(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    if (n > cap - *len)
        return false;
    memcpy(buf + *len, s, n);
    *len += n;
    return true;
}

static bool appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool appendf(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= cap - *len)
        return false;
    *len += (size_t)k;
    return true;
}

bool eds_json_append_string(char *buf, size_t cap, size_t *len, const char *s)
{
    return eds_json_append_text(buf, cap, len, s, strlen(s));
}

/* Ends a line: appends the LF, returns the length or 0 if it did not fit. */
static size_t finish(char *buf, size_t cap, size_t len, bool ok)
{
    return ok && append(buf, cap, &len, "\n", 1) ? len : 0;
}

size_t eds_fmt_hello(char *buf, size_t cap, const char *device, const char *password,
                     const char *stream)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"hello\",\"device\":") &&
              eds_json_append_string(buf, cap, &n, device);
    if (ok && password)
        ok = appendf(buf, cap, &n, ",\"password\":") &&
             eds_json_append_string(buf, cap, &n, password);
    if (ok && stream)
        ok = appendf(buf, cap, &n, ",\"stream\":") && eds_json_append_string(buf, cap, &n, stream);
    ok = ok && appendf(buf, cap, &n, ",\"proto\":%d}", EDS_PROTO_VERSION);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_data(char *buf, size_t cap, uint64_t seq, const char *data_json, size_t data_len)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n,
                      "{\"type\":\"data\",\"seq\":%llu,\"data\":", (unsigned long long)seq) &&
              append(buf, cap, &n, data_json, data_len) && append(buf, cap, &n, "}", 1);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_cmd_ack(char *buf, size_t cap, int64_t id)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"ack\",\"id\":%lld}", (long long)id);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_ping(char *buf, size_t cap)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"ping\"}");
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_welcome(char *buf, size_t cap, uint64_t last_seq)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"welcome\",\"proto\":%d,\"last_seq\":%llu}",
                      EDS_PROTO_VERSION, (unsigned long long)last_seq);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_u64(char *buf, size_t cap, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (n >= cap)
        return 0;
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* Appends v in decimal (one line per record gets an ack: no printf for it). */
static bool append_u64(char *buf, size_t cap, size_t *len, uint64_t v)
{
    size_t n = eds_fmt_u64(buf + *len, cap - *len, v); /* the NUL is overwritten or finished */
    *len += n;
    return n > 0;
}

size_t eds_fmt_ack(char *buf, size_t cap, uint64_t seq, bool duplicate)
{
    static const char head[] = "{\"type\":\"ack\",\"seq\":", dup[] = ",\"duplicate\":true}";
    size_t n = 0;
    bool ok =
        append(buf, cap, &n, head, sizeof(head) - 1) && append_u64(buf, cap, &n, seq) &&
        (duplicate ? append(buf, cap, &n, dup, sizeof(dup) - 1) : append(buf, cap, &n, "}", 1));
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_nack(char *buf, size_t cap, uint64_t seq, const char *errors_json, size_t errors_len)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n,
                      "{\"type\":\"nack\",\"seq\":%llu,\"errors\":", (unsigned long long)seq) &&
              append(buf, cap, &n, errors_json, errors_len) && append(buf, cap, &n, "}", 1);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_cmd(char *buf, size_t cap, int64_t id, const char *data_json, size_t data_len)
{
    return eds_fmt_cmd_uid(buf, cap, id, 0, 0, data_json, data_len);
}

size_t eds_fmt_cmd_uid(char *buf, size_t cap, int64_t id, uint64_t uid, uint64_t ttl,
                       const char *data_json, size_t data_len)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"cmd\",\"id\":%lld,", (long long)id) &&
              (!uid || appendf(buf, cap, &n, "\"uid\":%llu,", (unsigned long long)uid)) &&
              (!ttl || appendf(buf, cap, &n, "\"ttl\":%llu,", (unsigned long long)ttl)) &&
              append(buf, cap, &n, "\"data\":", 7) && append(buf, cap, &n, data_json, data_len) &&
              append(buf, cap, &n, "}", 1);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_cmd_nack(char *buf, size_t cap, int64_t id, const char *errors_json,
                        size_t errors_len)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"nack\",\"id\":%lld,\"errors\":", (long long)id) &&
              append(buf, cap, &n, errors_json, errors_len) && append(buf, cap, &n, "}", 1);
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_cmd_nack_status(char *buf, size_t cap, int64_t id, const char *status,
                               const char *reason)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"nack\",\"id\":%lld,\"status\":", (long long)id) &&
              eds_json_append_string(buf, cap, &n, status) &&
              append(buf, cap, &n, ",\"reason\":", 10) &&
              eds_json_append_string(buf, cap, &n, reason) &&
              append(buf, cap, &n, ",\"errors\":{\"cmd\":[", 18) &&
              eds_json_append_string(buf, cap, &n, reason) && append(buf, cap, &n, "]}}", 3);
    return finish(buf, cap, n, ok);
}

/* Puts member (",KEY:VALUE", mlen bytes) before the closing brace of the line buf[0..n). */
static size_t add_member(char *buf, size_t cap, size_t n, const char *member, size_t mlen)
{
    if (n < 2 || buf[n - 1] != '\n' || buf[n - 2] != '}' || cap - (n - 2) < mlen + 2)
        return 0;
    memcpy(buf + n - 2, member, mlen);
    memcpy(buf + n - 2 + mlen, "}\n", 2);
    return n + mlen;
}

size_t eds_fmt_add_cmd_results(char *buf, size_t cap, size_t n)
{
    static const char flag[] = ",\"cmd_results\":true";
    return add_member(buf, cap, n, flag, sizeof(flag) - 1);
}

size_t eds_fmt_add_max_line(char *buf, size_t cap, size_t n, uint64_t max_line)
{
    char member[40];
    int k = snprintf(member, sizeof(member), ",\"max_line\":%llu", (unsigned long long)max_line);
    return add_member(buf, cap, n, member, (size_t)k);
}

/* Reads the digits at line[i..] (at most 16) up to a comma: the number, and *end the
 * comma's index; false when there is none. */
static bool line_number(const char *line, size_t len, size_t i, uint64_t *v, size_t *end)
{
    size_t from = i;
    *v = 0;
    for (; i < len && i < from + 16 && line[i] >= '0' && line[i] <= '9'; i++)
        *v = *v * 10 + (uint64_t)(line[i] - '0');
    *end = i;
    return i > from && i < len && line[i] == ',' && *v <= EDS_SEQ_MAX;
}

static const char cmd_head[] = "{\"type\":\"cmd\",\"id\":";

bool eds_cmd_line_id(const char *line, size_t len, int64_t *id)
{
    size_t h = sizeof(cmd_head) - 1, end;
    uint64_t v;
    if (len <= h || memcmp(line, cmd_head, h) != 0 || !line_number(line, len, h, &v, &end))
        return false;
    *id = (int64_t)v;
    return true;
}

uint64_t eds_cmd_line_uid(const char *line, size_t len)
{
    static const char uid[] = ",\"uid\":";
    size_t h = sizeof(cmd_head) - 1, u = sizeof(uid) - 1, end;
    uint64_t v;
    if (len <= h || memcmp(line, cmd_head, h) != 0 || !line_number(line, len, h, &v, &end) ||
        len - end <= u || memcmp(line + end, uid, u) != 0 ||
        !line_number(line, len, end + u, &v, &end))
        return 0;
    return v;
}

size_t eds_fmt_pong(char *buf, size_t cap)
{
    size_t n = 0;
    bool ok = appendf(buf, cap, &n, "{\"type\":\"pong\"}");
    return finish(buf, cap, n, ok);
}

size_t eds_fmt_error(char *buf, size_t cap, eds_proto_error code, const char *message)
{
    size_t n = 0;
    bool ok =
        appendf(buf, cap, &n,
                "{\"type\":\"error\",\"code\":\"%s\",\"message\":", eds_proto_error_name(code)) &&
        eds_json_append_string(buf, cap, &n, message) && append(buf, cap, &n, "}", 1);
    return finish(buf, cap, n, ok);
}
