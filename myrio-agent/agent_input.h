/*
 * agent_input.h - the agent's built-in record sources: NDJSON on stdin, an
 * NDJSON TCP listener and a UDP socket on 127.0.0.1, and the simulator.
 *
 * Each record found is handed to an accept callback (the engine: validate
 * and queue). When it answers EDS_ERR_FULL the source holds that record
 * and stops reading (stdin and TCP thus push back on the writer; nothing
 * is lost) until a later inputs_handle() call gets it accepted. UDP cannot
 * push back: a datagram that finds the queue full is dropped and counted.
 * The owner (the engine's poll loop) asks for the fds to poll and hands
 * back the results; this module never calls poll itself.
 */
#ifndef AGENT_INPUT_H
#define AGENT_INPUT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"

/* Returns EDS_OK (taken), EDS_ERR_FULL (hold it, retry later), or another
 * negative code (refused: the engine has logged and counted it). */
typedef int (*agent_accept_fn)(void *ctx, const char *json, size_t len);

typedef struct agent_inputs_config {
    bool read_stdin;
    int tcp_port;    /* 0: off */
    int udp_port;    /* 0: off */
    double simulate; /* records/s; 0: off */
    long long count; /* close every input after this many accepted; 0: no limit */
    size_t max_line; /* longest record line, LF included */
    uint64_t seed;   /* simulator */
} agent_inputs_config;

typedef struct agent_inputs agent_inputs;

/* Opens the listeners. EDS_OK, EDS_ERR_IO (port in use...), EDS_ERR_NOMEM. */
int inputs_open(const agent_inputs_config *cfg, agent_accept_fn fn, void *ctx, agent_inputs **out,
                eds_error *err);

/* Closes everything; NULL is fine. */
void inputs_close(agent_inputs *in);

/* Appends the fds to poll (at most cap) to fds; returns how many. */
size_t inputs_pollfds(agent_inputs *in, struct pollfd *fds, size_t cap);

/* Milliseconds until the simulator is due (0: now), or -1. */
int inputs_timeout_ms(const agent_inputs *in, uint64_t now_ms);

/* Handles the poll results for the fds inputs_pollfds gave (same order),
 * retries held records and runs the simulator. fds may be NULL with n 0. */
void inputs_handle(agent_inputs *in, const struct pollfd *fds, size_t n, uint64_t now_ms);

/* True while some input may still produce records. */
bool inputs_active(const agent_inputs *in);

/* Closes every input now (shutdown); held records are discarded. */
void inputs_stop(agent_inputs *in);

/* Writes line (without its LF; one is added) to every connected tcp client that has
 * room for all of it in its socket buffer, so a line is never split. EDS_OK when at
 * least one took it; EDS_ERR_NOTFOUND with no client; EDS_ERR_AGAIN when none has room
 * (or a write failed). */
int inputs_send_line(agent_inputs *in, const char *line, size_t len);

/* Datagrams dropped because the queue was full; lines too long refused. */
uint64_t inputs_udp_dropped(const agent_inputs *in);
uint64_t inputs_too_long(const agent_inputs *in);

#endif
