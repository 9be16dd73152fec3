/*
 * agent_cmds.h - the agent's store of downlink commands: those waiting for a
 * local consumer, bounded, with their deadlines, and the uids of commands it
 * has finished; kept in the spool folder so that a power cycle of the myRIO
 * keeps both. Pure but for that file: no sockets, no protocol lines, the
 * clock passed in.
 *
 * The gateway's "uid" of a command (protocol.md, command results) is what
 * recognises it when it comes again: a resent command already waiting takes
 * the new connection's id instead of being queued twice, and one finished
 * already (handed over and acked, expired or dropped: its answer was lost
 * with a connection or a power cycle) is only answered again, the same way.
 * Commands without a uid (an older gateway) cannot be recognised: they wait
 * in memory only and are forgotten with their connection (agent_cmds_forget_
 * anonymous), since that gateway sends every unacked command again anyway.
 *
 * File (with a spool): DIR/cmds.pending, rewritten whole (tmp, fsync,
 * rename) by agent_cmds_sync when something changed: "W uid deadline json"
 * per waiting command (deadline: wall-clock ms, 0 none; older files have
 * "P uid json"), "T uid" per uid acked, "F uid C" per uid given up (C: an
 * agent_cmd_outcome letter). A line that cannot be read is skipped, the rest
 * is loaded.
 */
#ifndef AGENT_CMDS_H
#define AGENT_CMDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"

#define AGENT_CMDS_MAX 128          /* commands waiting at most */
#define AGENT_CMDS_BYTES (1u << 20) /* their JSON bytes at most */
#define AGENT_CMDS_DONE 1024        /* uids of finished commands remembered */
#define AGENT_CMDS_STALE UINT64_MAX /* gen of a command loaded from the file */

/* How a command was finished (the letter is its mark in the file). */
typedef enum agent_cmd_outcome {
    AGENT_DONE_ACKED = 'A',   /* handed over and acked */
    AGENT_DONE_EXPIRED = 'E', /* its deadline passed while it waited */
    AGENT_DONE_FULL = 'Q',    /* dropped: the queue was full */
    AGENT_DONE_LONG = 'L',    /* dropped: its line exceeded this agent's max_line */
} agent_cmd_outcome;

typedef struct agent_cmd {
    int64_t id;   /* the gateway's id on connection gen */
    uint64_t gen; /* AGENT_CMDS_STALE: from before a restart (answered once it comes again) */
    uint64_t uid; /* 0: none (an older gateway) */
    int64_t deadline_ms; /* wall-clock ms after which it is never handed over; 0: none */
    char *json;
    size_t len;
} agent_cmd;

typedef struct agent_cmd_done {
    uint64_t uid;
    char outcome; /* agent_cmd_outcome */
} agent_cmd_done;

typedef struct agent_cmds {
    agent_cmd q[AGENT_CMDS_MAX];
    size_t head, n, bytes;
    agent_cmd_done done[AGENT_CMDS_DONE]; /* a ring: the oldest is overwritten */
    size_t done_next;
    bool dirty;       /* the file is behind memory */
    bool head_busy;   /* the head is being handed over (part written): it does not expire */
    size_t skipped;   /* lines of the file that could not be read at open */
    char *path, *tmp; /* NULL: memory only */
} agent_cmds;

/* What agent_cmds_offer did with a command. */
enum { AGENT_CMD_QUEUED, AGENT_CMD_UPDATED, AGENT_CMD_FINISHED, AGENT_CMD_FULL };

/* Opens the store; dir NULL: memory only; else loads DIR/cmds.pending (a missing file
 * is empty; unreadable lines are skipped and counted in c->skipped).
 * EDS_OK, EDS_ERR_NOMEM. */
int agent_cmds_open(agent_cmds *c, const char *dir, eds_error *err);
void agent_cmds_close(agent_cmds *c);

/* A command from the gateway (json copied), deadline_ms 0 for none: QUEUED; UPDATED
 * (same uid already waiting: now under id/gen, the earlier deadline kept); FINISHED
 * (its uid was finished: *outcome says how; nothing queued); or FULL (over
 * AGENT_CMDS_MAX or AGENT_CMDS_BYTES, or out of memory; nothing remembered). */
int agent_cmds_offer(agent_cmds *c, int64_t id, uint64_t gen, uint64_t uid, int64_t deadline_ms,
                     const char *json, size_t len, agent_cmd_outcome *outcome);

/* How uid was finished (true), or false when it was not (or uid is 0). */
bool agent_cmds_finished(const agent_cmds *c, uint64_t uid, agent_cmd_outcome *outcome);

/* Remembers that uid (not waiting) was finished so (uid 0: nothing). */
void agent_cmds_finish(agent_cmds *c, uint64_t uid, agent_cmd_outcome outcome);

/* The oldest waiting command, or NULL. Call agent_cmds_expire first: it may be past
 * its deadline. */
const agent_cmd *agent_cmds_head(const agent_cmds *c);

/* The head was handed over: removed, its uid remembered as acked. */
void agent_cmds_taken(agent_cmds *c);

/* Removes one waiting command past its deadline at now_ms (wall clock) and remembers
 * its uid as expired: true with *id, *gen and *uid set, false when none is past it. The head
 * is left while head_busy is set (the caller sets it; removing the head clears it). */
bool agent_cmds_expire(agent_cmds *c, int64_t now_ms, int64_t *id, uint64_t *gen, uint64_t *uid);

/* The earliest deadline of a waiting command (wall-clock ms), or 0 for none. */
int64_t agent_cmds_next_deadline(const agent_cmds *c);

/* Removes the waiting commands without a uid (their connection ended). */
void agent_cmds_forget_anonymous(agent_cmds *c);

/* Writes the file if memory changed since (a failure is logged: the commands still wait
 * in memory, and the gateway still has them). Call before an answer leaves. */
void agent_cmds_sync(agent_cmds *c);

#endif
