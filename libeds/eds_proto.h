/*
 * eds_proto.h - protocol v1 messages (docs/protocol.md): parse one line into
 * a message, and format the lines each side sends.
 *
 * No I/O and no framing (eds_framer.h does that). Each line is parsed once,
 * by the strict parser of eds_json.h: the line must be one JSON object as
 * RFC 8259 spells it (no `01`, `-.5`, `1.`, `+1`, raw control characters or
 * other white space), in valid UTF-8 with no NUL (raw or escaped: a C
 * string would be cut there), no duplicate keys anywhere (a consumer that
 * keeps the last one would see other data than the validator saw), and
 * only finite numbers (1e999 would be republished as null). Those failures
 * are EDS_ERR_PARSE, i.e. the spec's `bad_json`; a JSON object that is not
 * a valid message of the expected direction is EDS_ERR_PROTO, the spec's
 * `bad_message`. A data or cmd message also hands back the raw text of its
 * `data` member, so that it can be passed on as the agent wrote it without
 * a second scan.
 */
#ifndef EDS_PROTO_H
#define EDS_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "eds_err.h"
#include "eds_json.h"

#define EDS_PROTO_VERSION 1
#define EDS_SEQ_MAX 9007199254740991ULL /* 2^53 - 1 */
#define EDS_CMD_TTL_MAX 4294967295ULL   /* a cmd line's ttl at most (MQTT 5's longest expiry, s) */
#define EDS_DEVICE_MAX 64               /* characters in a device id */
#define EDS_STREAM_MAX 64               /* characters in a stream id */
#define EDS_DEFAULT_PORT 5883
#define EDS_DEFAULT_TLS_PORT 5884
#define EDS_DEFAULT_MAX_LINE 65536

typedef enum eds_dir {
    EDS_TO_GATEWAY, /* lines the agent sends */
    EDS_TO_AGENT,   /* lines the gateway sends */
} eds_dir;

typedef enum eds_msg_type {
    EDS_MSG_NONE = 0,
    EDS_MSG_HELLO,    /* agent -> gateway */
    EDS_MSG_DATA,     /* agent -> gateway */
    EDS_MSG_CMD_ACK,  /* agent -> gateway: {"type":"ack","id":N} */
    EDS_MSG_PING,     /* agent -> gateway */
    EDS_MSG_WELCOME,  /* gateway -> agent */
    EDS_MSG_ACK,      /* gateway -> agent: {"type":"ack","seq":N} */
    EDS_MSG_NACK,     /* gateway -> agent */
    EDS_MSG_CMD,      /* gateway -> agent */
    EDS_MSG_PONG,     /* gateway -> agent */
    EDS_MSG_ERROR,    /* gateway -> agent */
    EDS_MSG_CMD_NACK, /* agent -> gateway: {"type":"nack","id":N,"errors":{...}} (cmd_results) */
} eds_msg_type;

/* A parsed message. Every pointer points into root (or, for data_json, into the
 * parsed line), which the message owns: release with eds_msg_free. Fields not used
 * by a type stay zero/NULL. The cJSON nodes are read-only (eds_json.h). */
typedef struct eds_msg {
    eds_msg_type type;
    cJSON *root;
    const char *device;    /* hello */
    const char *password;  /* hello, NULL when absent */
    const char *stream;    /* hello, "0" when absent */
    int proto;             /* hello, welcome */
    uint64_t seq;          /* data, ack, nack */
    uint64_t last_seq;     /* welcome */
    int64_t id;            /* cmd, cmd ack */
    uint64_t uid;          /* cmd: the gateway's uid of the command (cmd_results); 0: none */
    uint64_t ttl;          /* cmd: seconds left until the command expires (cmd_results) */
    bool ttl_set;          /* cmd: "ttl" given, 0..EDS_CMD_TTL_MAX (0: expired already) */
    bool ttl_bad;          /* cmd: "ttl" given but not a whole number in that range */
    uint64_t max_line;     /* hello: the agent's limit on a received line, LF included; 0: none */
    bool duplicate;        /* ack */
    cJSON *data;           /* data: the record object; cmd: any JSON value */
    const char *data_json; /* data, cmd: the member's text in the line (not NUL-terminated) */
    size_t data_len;       /* its length in bytes */
    bool data_ws;          /* it holds white space between tokens (eds_json_minify drops it) */
    cJSON *errors;         /* nack, cmd nack */
    const char *status;    /* cmd nack: its "status" ("expired", "dropped"); NULL when absent */
    const char *reason;    /* cmd nack: its "reason"; NULL when absent */
    bool cmd_results;      /* hello, welcome: the side speaks command results (protocol.md) */
    const char *code;      /* error */
    const char *message;   /* error */
    eds_json_doc doc;      /* owns root */
} eds_msg;

/*
 * Parses one line (without its LF) sent in direction dir into *msg; the line
 * must stay unchanged while msg->data_json is used.
 * Returns EDS_OK; EDS_ERR_PARSE when the line is not a strict JSON object (bad
 * UTF-8, NUL, duplicate key, non-finite number, nesting deeper than
 * EDS_JSON_MAX_DEPTH included); EDS_ERR_PROTO when it is JSON but not a valid
 * message; EDS_ERR_NOMEM.
 * err->msg says why in words fit for the peer. On error *msg is empty and
 * need not be freed (freeing it is harmless).
 */
int eds_msg_parse(const char *line, size_t len, eds_dir dir, eds_msg *msg, eds_error *err);

/* Releases what msg owns and zeroes it. */
void eds_msg_free(eds_msg *msg);

/* The spec's device-id rule: ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$. */
bool eds_device_id_valid(const char *id);

/* Stream ids: 1..64 printable ASCII characters other than '"' and '\\'. */
bool eds_stream_id_valid(const char *id);

/* Fatal and non-fatal error codes of the spec, as sent in "code". */
typedef enum eds_proto_error {
    EDS_PE_AUTH_FAILED,
    EDS_PE_NOT_AUTHENTICATED,
    EDS_PE_UNSUPPORTED_PROTO,
    EDS_PE_TIMEOUT,
    EDS_PE_LINE_TOO_LONG,
    EDS_PE_REPLACED,
    EDS_PE_SERVER_BUSY,
    EDS_PE_SHUTTING_DOWN,
    EDS_PE_BAD_JSON,
    EDS_PE_BAD_MESSAGE,
    EDS_PE_COUNT
} eds_proto_error;

const char *eds_proto_error_name(eds_proto_error e);
bool eds_proto_error_fatal(eds_proto_error e);

/* v in decimal into buf (cap bytes), NUL-terminated; returns its length, or 0 when it
 * does not fit (cap 21 always does). No printf: one per record (acks, MQTT 5 seq). */
size_t eds_fmt_u64(char *buf, size_t cap, uint64_t v);

/*
 * Formatters. Each writes one complete line, LF included, into buf (cap
 * bytes) and returns its length, or 0 when it does not fit (nothing useful
 * is left in buf then). JSON arguments (`*_json`) must be compact JSON
 * text of the given length; strings are escaped here.
 */
size_t eds_fmt_hello(char *buf, size_t cap, const char *device, const char *password,
                     const char *stream);
size_t eds_fmt_data(char *buf, size_t cap, uint64_t seq, const char *data_json, size_t data_len);
size_t eds_fmt_cmd_ack(char *buf, size_t cap, int64_t id);
size_t eds_fmt_ping(char *buf, size_t cap);
size_t eds_fmt_welcome(char *buf, size_t cap, uint64_t last_seq);
size_t eds_fmt_ack(char *buf, size_t cap, uint64_t seq, bool duplicate);
size_t eds_fmt_nack(char *buf, size_t cap, uint64_t seq, const char *errors_json,
                    size_t errors_len);
size_t eds_fmt_cmd(char *buf, size_t cap, int64_t id, const char *data_json, size_t data_len);
/* {"type":"cmd","id":N,"uid":U,"ttl":S,"data":...}: for a cmd_results agent, with the
 * command's uid and the seconds it has left (uid 0: no uid; ttl 0: no ttl; both 0: the
 * plain eds_fmt_cmd line). */
size_t eds_fmt_cmd_uid(char *buf, size_t cap, int64_t id, uint64_t uid, uint64_t ttl,
                       const char *data_json, size_t data_len);
size_t eds_fmt_pong(char *buf, size_t cap);
/* {"type":"nack","id":N,"errors":ERRORS}: the agent refuses command id (cmd_results). */
size_t eds_fmt_cmd_nack(char *buf, size_t cap, int64_t id, const char *errors_json,
                        size_t errors_len);

/* {"type":"nack","id":N,"status":S,"reason":R,"errors":{"cmd":[R]}}: the agent gives
 * command id up with status S ("expired" or "dropped"); errors keeps it a final refusal
 * for a gateway that does not know status. */
size_t eds_fmt_cmd_nack_status(char *buf, size_t cap, int64_t id, const char *status,
                               const char *reason);

/* Adds ,"cmd_results":true to the hello or welcome line buf[0..n) just formatted
 * (cap bytes); returns the new length, or 0 when it does not fit. */
size_t eds_fmt_add_cmd_results(char *buf, size_t cap, size_t n);

/* Adds ,"max_line":N (the agent's own line limit) to the hello line buf[0..n); returns
 * the new length, or 0 when it does not fit. */
size_t eds_fmt_add_max_line(char *buf, size_t cap, size_t n, uint64_t max_line);

/* The id of a line that starts the way every gateway writes a cmd line
 * ({"type":"cmd","id":N,), also when the rest is not valid JSON: so that an agent
 * can answer that one command instead of dropping its connection. False if not. */
bool eds_cmd_line_id(const char *line, size_t len, int64_t *id);
/* The uid of such a line when "uid":U follows the id ({"type":"cmd","id":N,"uid":U,),
 * else 0. */
uint64_t eds_cmd_line_uid(const char *line, size_t len);
size_t eds_fmt_error(char *buf, size_t cap, eds_proto_error code, const char *message);

/* eds_json_append_text() of the NUL-terminated s. */
bool eds_json_append_string(char *buf, size_t cap, size_t *len, const char *s);

#endif
