/*
 * agent_engine.h - the agent engine's state, shared by the two files that make
 * it: agent.c (record intake, the protocol state machine, the poll loop) and
 * agent_create.c (building an agent from its config, and tearing it down).
 * Internal: nothing outside myrio-agent/ includes it; the API is edsagent.h.
 */
#ifndef AGENT_ENGINE_H
#define AGENT_ENGINE_H

#include "edsagent.h"

#include "agent_downlink.h"
#include "agent_input.h"
#include "agent_queue.h"
#include "agent_spool.h"
#include "agent_transport.h"
#include "eds_backoff.h"
#include "eds_framer.h"
#include "eds_proto.h"
#include "eds_schema.h"
#include "eds_tls.h"

#include <signal.h>

#define RX_CHUNK 16384
#define OUT_SLACK 1024          /* room kept free in the output buffer for acks and pings */
#define OUT_CTRL_MAX (1u << 20) /* growth allowed beyond that for acks and pings */
#define FATAL_BACKOFF_MS 60000
#define ACKED_FLUSH_MS                                                                             \
    30000 /* persist the acked marker this often (flash wear; welcome corrects) */

enum conn_state { ST_IDLE, ST_CONNECTING, ST_HELLO, ST_READY };

struct eds_agent {
    eds_agent_config cfg; /* strings owned (copied) */
    char *password;
    eds_schema *schema;
    agent_queue q;
    agent_spool *spool;
    agent_inputs *in;
    char stream[EDS_STREAM_MAX + 1];
    uint64_t next_seq;
    char *scratch; /* max_line + 64: strict re-parse of incoming records */
    char *rx;      /* RX_CHUNK: lent to the framer for each read, taken back once consumed */

    enum conn_state st;
    agent_conn *conn;
    eds_tls_ctx *tls;  /* NULL: plain TCP */
    uint64_t gen;      /* connection counter */
    uint64_t sent_max; /* highest seq sent on any connection of this process */
    eds_framer fr;
    char *out;
    size_t out_len, out_cap;
    size_t out_base;      /* data lines fill the output buffer up to out_base - OUT_SLACK */
    uint64_t deadline_ms; /* connect + welcome */
    uint64_t last_rx_ms, ping_sent_ms;
    bool ping_out;
    bool drop_conn; /* set while parsing: close after this read */
    const char *drop_reason;
    int backoff_hint; /* 0 normal, 1 fatal refusal, 2 replaced */
    uint64_t reconnect_at_ms;
    eds_backoff bo;
    unsigned fail_streak;

    agent_downlink dl; /* commands from the gateway to the application */

    /* what eds_agent_pollfds handed out, for eds_agent_dispatch */
    int polled_conn;  /* the connection's fd, or -1 */
    size_t polled_in; /* index of the first input fd */
    size_t polled_n;

    uint64_t acked_flush_at;
    uint64_t stats_at; /* next status line; 0 before the first poll */
    uint64_t ready_since_ms;
    uint64_t store_error_logged_at;
    eds_agent_stats stats;
    volatile sig_atomic_t stop;
};

static inline uint64_t secs_ms(double s)
{
    return s <= 0 ? 0 : (uint64_t)(s * 1000.0 + 0.5);
}

/* The inputs' accept callback (agent.c): queue, or report a bad record on stderr. */
int agent_accept_record(void *ctx, const char *json, size_t len);

#endif
