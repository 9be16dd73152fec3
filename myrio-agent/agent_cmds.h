/*
 * agent_cmds.h - downlink commands waiting for a local consumer (the
 * application's eds_agent_next_cmd, or the client of the TCP input with
 * cmd_tcp), bounded, and kept in the spool folder so that a power cycle of
 * the myRIO keeps them.
 *
 * A command is acked to the gateway only once a consumer has taken it, so
 * the gateway keeps (and after a reconnect resends) every command not taken
 * yet. The gateway's "uid" of a command (protocol.md, command results) is
 * what recognises it when it comes again: a resent command already waiting
 * takes the new connection's id instead of being queued twice, and one taken
 * already (its ack was lost with a connection or a power cycle) is only acked
 * again. Commands without a uid (an older gateway) are queued as they come.
 *
 * File (with a spool): DIR/cmds.pending, rewritten whole (tmp, fsync, rename)
 * on each change: "P uid json" per waiting command, "T uid" per uid taken
 * recently (the last AGENT_CMDS_TAKEN). Pure otherwise: no sockets.
 */
#ifndef AGENT_CMDS_H
#define AGENT_CMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"

#define AGENT_CMDS_MAX 256          /* commands waiting at most */
#define AGENT_CMDS_BYTES (1u << 20) /* their JSON bytes at most */
#define AGENT_CMDS_TAKEN 256        /* uids of taken commands remembered */
#define AGENT_CMDS_STALE UINT64_MAX /* gen of a command loaded from the file */

typedef struct agent_cmd {
    int64_t id;   /* the gateway's id on connection gen */
    uint64_t gen; /* AGENT_CMDS_STALE: from before a restart (acked once it comes again) */
    uint64_t uid; /* 0: none (an older gateway) */
    char *json;
    size_t len;
} agent_cmd;

typedef struct agent_cmds {
    agent_cmd q[AGENT_CMDS_MAX];
    size_t head, n, bytes;
    uint64_t taken[AGENT_CMDS_TAKEN];
    size_t taken_next;
    char *path, *tmp; /* NULL: memory only */
} agent_cmds;

/* What agent_cmds_offer did with a command. */
enum { AGENT_CMD_QUEUED, AGENT_CMD_UPDATED, AGENT_CMD_TAKEN_BEFORE, AGENT_CMD_FULL };

/* Opens the queue; dir NULL: memory only; else loads DIR/cmds.pending (a missing or torn
 * file loads what it can). EDS_OK, EDS_ERR_NOMEM. */
int agent_cmds_open(agent_cmds *c, const char *dir, eds_error *err);
void agent_cmds_close(agent_cmds *c);

/* A command from the gateway (json copied): QUEUED, UPDATED (same uid already waiting:
 * now under id/gen), TAKEN_BEFORE (its uid was taken: ack it, nothing queued) or FULL. */
int agent_cmds_offer(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, const char *json,
                     size_t len);

/* The oldest waiting command, or NULL. */
const agent_cmd *agent_cmds_head(const agent_cmds *c);

/* The head was taken by a consumer: removed, its uid remembered. */
void agent_cmds_taken(agent_cmds *c);

#endif
