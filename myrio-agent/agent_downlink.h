/*
 * agent_downlink.h - downlink commands, from the gateway's cmd line to the
 * application and back to an answer: checks them (cmd_schema), hands them to
 * the consumers (stdout, a UDP port, the tcp input's client with cmd_tcp,
 * eds_agent_next_cmd), keeps the ones no consumer has taken yet in
 * agent_cmds (bounded, with deadlines, in the spool folder), and formats the
 * answers (ack, nack with errors or with a status) for the gateway.
 *
 * It owns the command store, the command schema, the UDP socket and the bytes
 * waiting for stdout (written without blocking). It sends
 * nothing itself: answers collect in an outbox that the engine (agent.c)
 * moves into its output after each step (agent_dl_replies), so no call
 * re-enters the engine. The engine tells it when a connection becomes ready
 * and when it ends; answers for commands of an older connection are not
 * sent (the gateway sends those commands again, and their uid gets the same
 * answer then).
 *
 * Wall-clock times (deadlines) are passed in as now_ms (eds_wall_ms()).
 */
#ifndef AGENT_DOWNLINK_H
#define AGENT_DOWNLINK_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_cmds.h"
#include "agent_input.h"
#include "eds_err.h"
#include "eds_proto.h"
#include "eds_schema.h"

typedef struct agent_dl_config {
    const char *cmd_schema; /* file, or NULL: commands are not checked */
    const char *dir;        /* the spool folder (commands survive a power cycle), or NULL */
    bool to_stdout;         /* one line per command on stdout */
    int udp_port;           /* one datagram per command to 127.0.0.1:udp_port; 0: off */
    bool to_tcp;            /* the tcp input's client takes commands (cmd_tcp) */
    size_t max_line;        /* this agent's limit on a received line (for the reason text) */
} agent_dl_config;

typedef struct agent_downlink {
    agent_dl_config cfg; /* strings not kept */
    eds_schema *schema;
    agent_cmds q;
    int udp_fd;
    uint64_t gen; /* connection counter: commands of an older one are not answered */
    bool ready;   /* a connection is up (welcome received) */
    bool results; /* its gateway speaks command results (nacks) */
    char *out;    /* answers for the gateway, complete lines */
    char *so;     /* bytes for stdout not yet written (so_off of so_len written) */
    size_t so_len, so_off, so_cap;
    bool so_head;       /* so ends with the store's head (taken once written) */
    bool so_dead;       /* stdout failed (closed): commands wait as with no consumer */
    int so_flags;       /* stdout's flags before O_NONBLOCK, restored at free; -1: unchanged */
    bool so_shares_log; /* stderr is the same pipe or socket (2>&1) */
    bool so_holding;    /* the log is held back (eds_log_hold): a line is half written */
    size_t out_len, out_cap;
    uint64_t handed, refused; /* commands handed over; refused, expired or dropped */
} agent_downlink;

/* Loads the schema, opens the store (loading the file) and the UDP socket.
 * EDS_OK, or an EDS_ERR_* code with err set; agent_dl_free is safe either way. */
int agent_dl_init(agent_downlink *d, const agent_dl_config *cfg, eds_error *err);
void agent_dl_free(agent_downlink *d);

/* A connection became ready (welcome): results says whether its gateway offered
 * command results. */
void agent_dl_connected(agent_downlink *d, bool results);
/* It ended: unsent answers are dropped, commands without a uid forgotten. */
void agent_dl_disconnected(agent_downlink *d);

/* A parsed cmd line from the gateway. */
void agent_dl_cmd(agent_downlink *d, const eds_msg *m, agent_inputs *in, int64_t now_ms);

/* A line the agent could not take: parse_error set, one that is not valid JSON (refused
 * if it starts like a cmd line); NULL, the start of a line longer than max_line (dropped
 * if it starts like a cmd line). False when the line is not recognisably a command. */
bool agent_dl_bad_line(agent_downlink *d, const char *line, size_t len, const char *parse_error);

/* Expires what is past its deadline, hands waiting commands to the tcp client (cmd_tcp)
 * while it takes them, and syncs the file. */
void agent_dl_tick(agent_downlink *d, agent_inputs *in, int64_t now_ms);

/* *fd for poll(2) when stdout (--cmd-stdout) has bytes waiting to be written: true. */
bool agent_dl_pollfd(const agent_downlink *d, struct pollfd *fd);

/* ms until the next deadline of a waiting command, or -1 when none. */
int64_t agent_dl_next_due(const agent_downlink *d, int64_t now_ms);

/* eds_agent_next_cmd (edsagent.h): the length, 0 when none waits, EDS_ERR_TOOLONG. */
int agent_dl_next(agent_downlink *d, char *buf, size_t cap, int64_t *id, int64_t now_ms);

/* The answers collected (after syncing the file, so that an ack never precedes the
 * record of what it answers): *lines and the byte count; agent_dl_replies_clear once
 * they are taken. */
size_t agent_dl_replies(agent_downlink *d, const char **lines);
void agent_dl_replies_clear(agent_downlink *d);

#endif
