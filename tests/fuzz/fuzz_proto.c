/*
 * fuzz_proto - the protocol v1 message parser, both directions.
 *
 * Every input is parsed as a line to the gateway and as a line to the
 * agent. Checked besides "no crash, no leak": a message that parses holds
 * no NUL and is valid UTF-8 (the parser's promise); eds_device_id_valid()
 * agrees with the spec's regex written out here (the device id becomes
 * part of an MQTT topic); and a parsed message formatted again by the
 * eds_fmt_* functions parses back to the same fields.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$, spelled out. */
static bool spec_device_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > EDS_DEVICE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return false;
    }
    return true;
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Parses buf[0..len) (a formatted line, LF included) in direction dir. */
static void reparse(const char *buf, size_t len, eds_dir dir, eds_msg *m)
{
    eds_error err;
    if (len == 0 || buf[len - 1] != '\n')
        abort();
    if (eds_msg_parse(buf, len - 1, dir, m, &err) != EDS_OK) {
        fprintf(stderr, "formatted line does not parse: %s\n%.*s", err.msg, (int)len, buf);
        abort();
    }
}

static void round_trip(const eds_msg *m)
{
    char *json = m->data ? cJSON_PrintUnformatted(m->data) : NULL;
    size_t jlen = json ? strlen(json) : 0;
    size_t cap = 6 * (jlen + 1024) + 256;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    eds_msg r;
    size_t n = 0;
    switch (m->type) {
    case EDS_MSG_HELLO:
        n = eds_fmt_hello(buf, cap, m->device, m->password, m->stream);
        reparse(buf, n, EDS_TO_GATEWAY, &r);
        if (r.type != EDS_MSG_HELLO || !same(r.device, m->device) ||
            !same(r.password, m->password) || !same(r.stream, m->stream))
            abort();
        break;
    case EDS_MSG_DATA:
        n = eds_fmt_data(buf, cap, m->seq, json, jlen);
        reparse(buf, n, EDS_TO_GATEWAY, &r);
        if (r.type != EDS_MSG_DATA || r.seq != m->seq || !cJSON_Compare(r.data, m->data, 1))
            abort();
        break;
    case EDS_MSG_CMD_ACK:
        n = eds_fmt_cmd_ack(buf, cap, m->id);
        reparse(buf, n, EDS_TO_GATEWAY, &r);
        if (r.type != EDS_MSG_CMD_ACK || r.id != m->id)
            abort();
        break;
    case EDS_MSG_WELCOME:
        n = eds_fmt_welcome(buf, cap, m->last_seq);
        reparse(buf, n, EDS_TO_AGENT, &r);
        if (r.type != EDS_MSG_WELCOME || r.last_seq != m->last_seq)
            abort();
        break;
    case EDS_MSG_ACK:
        n = eds_fmt_ack(buf, cap, m->seq, m->duplicate);
        reparse(buf, n, EDS_TO_AGENT, &r);
        if (r.type != EDS_MSG_ACK || r.seq != m->seq || r.duplicate != m->duplicate)
            abort();
        break;
    case EDS_MSG_CMD:
        n = eds_fmt_cmd_uid(buf, cap, m->id, m->uid, m->ttl, json, jlen);
        reparse(buf, n, EDS_TO_AGENT, &r);
        if (r.type != EDS_MSG_CMD || r.id != m->id || r.uid != m->uid || r.ttl != m->ttl ||
            !cJSON_Compare(r.data, m->data, 1))
            abort();
        break;
    case EDS_MSG_CMD_NACK: {
        char *errs = cJSON_PrintUnformatted(m->errors);
        size_t elen = errs ? strlen(errs) : 0;
        char *line = errs ? malloc(elen + 128) : NULL;
        if (!line)
            abort();
        n = eds_fmt_cmd_nack(line, elen + 128, m->id, errs, elen);
        reparse(line, n, EDS_TO_GATEWAY, &r);
        if (r.type != EDS_MSG_CMD_NACK || r.id != m->id || !cJSON_Compare(r.errors, m->errors, 1))
            abort();
        free(line);
        cJSON_free(errs);
        break;
    }
    default:
        memset(&r, 0, sizeof(r));
        break;
    }
    eds_msg_free(&r);
    free(buf);
    cJSON_free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *line = (const char *)data;
    for (int dir = EDS_TO_GATEWAY; dir <= EDS_TO_AGENT; dir++) {
        eds_msg m;
        eds_error err;
        int rc = eds_msg_parse(line, size, (eds_dir)dir, &m, &err);
        if (rc == EDS_OK) {
            if (memchr(line, '\0', size) || !eds_utf8_valid(line, size) || !m.root)
                abort();
            if (m.type == EDS_MSG_HELLO) {
                if (eds_device_id_valid(m.device) != spec_device_id(m.device))
                    abort();
                if (!eds_stream_id_valid(m.stream))
                    abort();
            }
            round_trip(&m);
        } else if (rc != EDS_ERR_PARSE && rc != EDS_ERR_PROTO && rc != EDS_ERR_NOMEM) {
            abort();
        } else if (m.root) {
            abort(); /* on error nothing is left to free */
        }
        eds_msg_free(&m);
    }
    return 0;
}
