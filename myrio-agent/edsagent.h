/*
 * edsagent.h - libedsagent, the EDS agent engine as a C library.
 *
 * The engine that `eds-agent` runs on each NI myRIO, for any C program or
 * LabVIEW's Call Library Function Node: it keeps one connection to
 * eds-gateway (protocol v1, docs/protocol.md), validates each record
 * against the schema, queues it (in memory, or in a crash-safe on-disk
 * spool), sends it with a sequence number and forgets it only once the
 * gateway acked it (or nacked it: then it is logged and dropped).
 *
 * Threading: none. The library is single-threaded and runs only inside
 * eds_agent_poll() / eds_agent_run(); call every function of one agent
 * from one thread. Nothing is done behind the caller's back.
 *
 * Typical use from C:
 *     eds_agent_config cfg;
 *     eds_agent_config_init(&cfg);
 *     cfg.gateway_host = "192.168.1.10"; cfg.device = "myrio-01"; ...
 *     eds_agent *a; eds_error err;
 *     if (eds_agent_create(&cfg, &a, &err) != EDS_OK) ... err.msg ...
 *     for (;;) {
 *         eds_agent_send(a, json, len, &err);    // EDS_ERR_FULL: try later
 *         eds_agent_poll(a, 100);                 // runs I/O for <= 100 ms
 *         while (eds_agent_next_cmd(a, buf, sizeof buf, &id) > 0) ...
 *     }
 *     eds_agent_destroy(a);
 *
 * From LabVIEW (plain C types only, no structs, no callbacks):
 *     eds_agent_open(conf_path, errbuf, errcap) -> pointer-sized handle
 *     eds_agent_send_str(handle, json_string)   -> int32 code
 *     eds_agent_poll(handle, timeout_ms)        -> int32 code
 *     eds_agent_next_cmd(handle, buf, cap, &id) -> int32 length
 *     eds_agent_destroy(handle)
 *
 * Errors: every int-returning call returns EDS_OK (0) or a negative
 * EDS_ERR_* code (eds_err.h); eds_agent_strerror() names it.
 */
#ifndef EDSAGENT_H
#define EDSAGENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eds_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's API: libedsagent.so is built with -fvisibility=hidden
 * and a version script (edsagent.map), so exactly the functions declared
 * with EDS_AGENT_API in this header are exported, nothing of libeds, OpenSSL
 * or cJSON inside it (scripts/check-abi.sh checks this list against the
 * built library). */
#if defined(__GNUC__)
#define EDS_AGENT_API __attribute__((visibility("default")))
#else
#define EDS_AGENT_API
#endif

/* What to do when a record arrives while the queue (and spool) are full. */
enum eds_agent_full_policy {
    EDS_AGENT_FULL_BLOCK = 0,       /* refuse it (EDS_ERR_FULL): inputs stop reading */
    EDS_AGENT_FULL_DROP_OLDEST = 1, /* drop the oldest undelivered record(s), logged, counted */
};

/* When the spool calls fdatasync(). */
enum eds_agent_sync_policy {
    EDS_AGENT_SYNC_NONE = 0,   /* never: a power cut may lose the newest records */
    EDS_AGENT_SYNC_BATCH = 1,  /* once per loop iteration, before the batch is sent (default) */
    EDS_AGENT_SYNC_ALWAYS = 2, /* after every record */
};

/*
 * Settings. Start from eds_agent_config_init() (defaults), then set what
 * you need. Strings are borrowed during eds_agent_create() only (copied).
 * Field names match the config file keys (docs/agent.md).
 */
typedef struct eds_agent_config {
    /* gateway */
    char *gateway_host;  /* required */
    int gateway_port;    /* default 5883 */
    char *device;        /* required; ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ */
    char *password;      /* NULL: none (gateway with allow_anonymous) */
    char *password_file; /* read at create when password is NULL; first line */
    char *stream;        /* NULL: from the spool, or a new random one */
    int window;          /* data messages sent but not yet acked, default 64 */

    /* records */
    char *schema;     /* schema file; NULL: records are only checked to be JSON objects */
    char *spool;      /* spool folder; NULL: in-memory queue only */
    size_t spool_max; /* bytes on disk, default 64 MiB */
    int spool_sync;   /* enum eds_agent_sync_policy, default BATCH */
    size_t queue_max; /* records in memory, default 10000 */
    int full_policy;  /* enum eds_agent_full_policy, default BLOCK */
    size_t max_line;  /* longest protocol line, default 65536 (the gateway's max_line) */

    /* timing, in seconds */
    double ping_interval;   /* idle time before a ping, default 15 */
    double ping_timeout;    /* a ping unanswered this long: dead connection, default 10 */
    double connect_timeout; /* TCP connect + welcome, default 10 */
    double reconnect_min;   /* first reconnect delay, default 0.5 (doubles, with jitter) */
    double reconnect_max;   /* longest reconnect delay, default 30 */
    double drain_timeout;   /* eds_agent_run: after the inputs end, default 30 */
    double stats_interval;  /* log a status line this often, default 600; 0: never */

    /* built-in inputs (used by eds-agent; a library user may leave them off) */
    bool read_stdin; /* NDJSON on stdin */
    int tcp_port;    /* NDJSON listener on 127.0.0.1; 0: off */
    int udp_port;    /* one record per datagram on 127.0.0.1; 0: off */
    double simulate; /* simulated energy records per second; 0: off */
    int count;       /* stop the inputs after this many accepted records; 0: no limit */

    /* downlink commands: where they go (when neither is set they wait for
     * eds_agent_next_cmd) */
    bool cmd_stdout; /* one JSON line per command on stdout */
    int cmd_udp;     /* one datagram per command to 127.0.0.1:cmd_udp; 0: off */

    /* logging: enum eds_log_level (eds_log.h) from the `log_level` key, -1 when not
     * set. eds-agent applies it unless -v/--log-level is given; eds_agent_open applies
     * it (process-wide); eds_agent_create leaves logging alone. */
    int log_level;

    /* TLS to the gateway's TLS port (docs/security.md): TLS 1.2+, the gateway's
     * certificate verified against cafile and server_name; optional client
     * certificate. A failed handshake is logged and retried like a lost connection. */
    bool tls;
    char *cafile;      /* PEM CA that signs the gateway's certificate */
    char *cert;        /* PEM client certificate (CN = device id), optional */
    char *key;         /* its private key */
    char *server_name; /* name or IP checked against the gateway's certificate; default:
                          the gateway host */

    /* Schema each downlink command's data must pass before it is handed over; a
     * command that fails is refused (its errors go back to the gateway). NULL: any
     * JSON value. Last in the struct so that older callers keep their layout. */
    char *cmd_schema;
    /* Write each downlink command as one line to the client connected to the tcp input
     * (the connection LabVIEW sends records on); acked once written; with no client
     * connected it waits (in the spool with one). */
    bool cmd_tcp;
} eds_agent_config;

/* Counters, for logs, tests and LabVIEW indicators. */
typedef struct eds_agent_stats {
    uint64_t accepted;        /* records queued */
    uint64_t invalid;         /* records refused by the schema or as bad JSON */
    uint64_t acked;           /* records the gateway acked (duplicates included) */
    uint64_t duplicates;      /* ...of which acked as duplicate */
    uint64_t nacked;          /* records the gateway refused (dropped) */
    uint64_t dropped;         /* records dropped by the drop-oldest policy */
    uint64_t udp_dropped;     /* UDP datagrams dropped because the queue was full */
    uint64_t welcome_skipped; /* queued records dropped because welcome said they were handled */
    uint64_t connects;        /* successful welcomes */
    uint64_t cmds;            /* downlink commands handed over */
    uint64_t pending;         /* records not yet acked (memory + spool) */
    uint64_t cmds_refused;    /* downlink commands not handed over: refused (cmd_schema, not
                               * parseable), expired, or dropped (too long, queue full) */
} eds_agent_stats;

typedef struct eds_agent eds_agent;

/* Fills cfg with the defaults above (all strings NULL). */
EDS_AGENT_API void eds_agent_config_init(eds_agent_config *cfg);

/* Frees the strings of a config filled by eds_agent_config_load/set. */
EDS_AGENT_API void eds_agent_config_free(eds_agent_config *cfg);

/* Applies one option, as in the config file (`name value`) or as a flag
 * ("--spool-max", "spool_max"). The strings set are owned by cfg. */
EDS_AGENT_API int eds_agent_config_set(eds_agent_config *cfg, const char *name, const char *value,
                                       const char *source, eds_error *err);

/* Reads a config file (`key value` lines, docs/agent.md) into cfg. */
EDS_AGENT_API int eds_agent_config_load(eds_agent_config *cfg, const char *path, eds_error *err);

/* Prints every option with its default (for --help). */
EDS_AGENT_API void eds_agent_config_help(FILE *out);

/* For command-line parsers: whether name ("--spool-max", "spool_max") is an
 * option, and whether it is a bare flag (a boolean that takes no value). */
EDS_AGENT_API bool eds_agent_config_known(const char *name);
EDS_AGENT_API bool eds_agent_config_is_flag(const char *name);

/* Applies the command-line option at argv[*index] (`--name VALUE`, `--name=VALUE`, a
 * flag `--name`, `--name true|false`) and advances *index past what it used; the
 * table's rules, as eds_conf_set_arg() in libeds. EDS_OK or EDS_ERR_CONFIG (err). */
int eds_agent_config_set_arg(eds_agent_config *cfg, int argc, char *const argv[], int *index,
                             eds_error *err);

/*
 * Creates an agent: loads the schema, opens (and recovers) the spool,
 * opens the configured inputs. It connects on the first poll.
 * Returns EDS_OK and *out, or EDS_ERR_CONFIG / EDS_ERR_IO / EDS_ERR_SCHEMA /
 * EDS_ERR_NOMEM with err->msg.
 */
EDS_AGENT_API int eds_agent_create(const eds_agent_config *cfg, eds_agent **out, eds_error *err);

/* Stops and frees; records still queued stay in the spool (without a spool
 * they are lost). Also flushes the spool's state. NULL is fine. */
EDS_AGENT_API void eds_agent_destroy(eds_agent *a);

/*
 * Validates one record (a JSON object, len bytes, no NUL needed) and queues
 * it. Returns EDS_OK; EDS_ERR_PARSE (not a JSON object the gateway would
 * accept) or EDS_ERR_INVALID (fails the schema; the errors are in err->msg
 * as JSON) or EDS_ERR_TOOLONG (the data line would exceed max_line): the
 * record is refused and counted; EDS_ERR_FULL under the block policy when
 * the queue/spool is full: try again after a poll; EDS_ERR_IO when the
 * spool cannot be written.
 */
EDS_AGENT_API int eds_agent_send(eds_agent *a, const char *json, size_t len, eds_error *err);

/* eds_agent_send for a NUL-terminated string, without details (LabVIEW). */
EDS_AGENT_API int eds_agent_send_str(eds_agent *a, const char *json);

/*
 * Runs the engine once: waits at most timeout_ms (0: do not wait) for
 * network, input or timer events and handles them. Returns EDS_OK, or a
 * negative code when the agent cannot go on (spool write failure).
 * Connection problems are not errors here: the agent reconnects by itself.
 */
EDS_AGENT_API int eds_agent_poll(eds_agent *a, int timeout_ms);

/*
 * The same in two halves, for a program with its own poll(2) loop:
 * eds_agent_pollfds fills fds (at most cap entries; EDS_AGENT_MAX_FDS is
 * always enough) with what the agent waits for, and lowers *timeout_ms (in:
 * the caller's limit, -1 for none) to the agent's next timer. It returns
 * the number of entries, or a negative code as eds_agent_poll. After
 * poll(2), hand exactly those entries back to eds_agent_dispatch (EDS_OK,
 * EDS_ERR_INVAL if n differs, or a code as eds_agent_poll).
 */
#define EDS_AGENT_MAX_FDS 16
EDS_AGENT_API int eds_agent_pollfds(eds_agent *a, struct pollfd *fds, size_t cap, int *timeout_ms);
EDS_AGENT_API int eds_agent_dispatch(eds_agent *a, const struct pollfd *fds, size_t n);

/*
 * Runs until the built-in inputs have ended and every record is acked
 * (EDS_OK), until eds_agent_stop() (EDS_OK with a spool; otherwise it
 * drains first), or until drain_timeout after the inputs ended
 * (EDS_ERR_TIMEOUT: the rest stays in the spool). Other codes as poll.
 */
EDS_AGENT_API int eds_agent_run(eds_agent *a);

/* Asks eds_agent_run to finish. Async-signal-safe. */
EDS_AGENT_API void eds_agent_stop(eds_agent *a);

/*
 * Takes the oldest downlink command waiting in the agent's store: copies its
 * `data` as the gateway sent it (compact JSON, never re-printed),
 * NUL-terminated, into buf, sets *id, acks it to the gateway, and returns its
 * length. A command is acked only once taken (here or by another consumer):
 * until then the gateway keeps it, and with a spool it survives a power cycle
 * of the myRIO too. What waits in the store depends on the consumers set:
 *   - none, or cmd_udp beside cmd_stdout or cmd_tcp: every command, for this
 *     call (and the consumer below); cmd_udp alone stores none (each is acked
 *     once sent), so this call returns 0;
 *   - cmd_stdout (without cmd_tcp): stdout takes the commands, one line at a
 *     time in order; while a command is being written to stdout (whenever one
 *     waits and stdout works, however slowly its reader reads) this call
 *     returns 0. Once stdout has failed (its reader closed it; logged once)
 *     commands wait in the store and this call takes them;
 *   - cmd_tcp: the tcp client and this call both take the head, whichever
 *     comes first (stdout beside cmd_tcp only gets a copy).
 * Returns 0 when none is waiting for it, EDS_ERR_TOOLONG when cap is too small
 * (the command stays queued).
 */
EDS_AGENT_API int eds_agent_next_cmd(eds_agent *a, char *buf, size_t cap, int64_t *id);

/* The text for an EDS_OK / EDS_ERR_* code (static; never NULL). */
EDS_AGENT_API const char *eds_agent_strerror(int code);

/* Current counters. */
EDS_AGENT_API void eds_agent_get_stats(const eds_agent *a, eds_agent_stats *out);

/* True while a connection is authenticated (welcome received). */
EDS_AGENT_API bool eds_agent_connected(const eds_agent *a);

/* Records accepted but not yet acked or dropped (memory + spool). */
EDS_AGENT_API uint64_t eds_agent_pending(const eds_agent *a);

/* The stream id in use (NUL-terminated, owned by a). */
EDS_AGENT_API const char *eds_agent_stream(const eds_agent *a);

/*
 * LabVIEW-friendly create: reads the config file at conf_path (same keys as
 * eds-agent) and creates the agent. Returns NULL on error with a message in
 * errbuf (errcap bytes, may be 0). Log lines go to stderr.
 */
EDS_AGENT_API eds_agent *eds_agent_open(const char *conf_path, char *errbuf, size_t errcap);

#ifdef __cplusplus
}
#endif

#endif
