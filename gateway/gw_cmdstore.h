/*
 * gw_cmdstore.h - downlink commands on disk, so that the commands held for
 * offline devices (and those sent but not acked) survive a gateway restart,
 * kill -9 included.
 *
 * Results are kept here too, from the moment a command has one until the
 * broker confirmed its publishes (gw_outbox.h): "exactly one result" holds
 * across a restart, kill -9 included.
 *
 * An append-only log `DIR/cmds.log` of four kinds of record, each with a
 * CRC-32 so that a torn tail (a crash in mid-write) is recognised and
 * ignored, and a corrupt record in the middle is skipped (the reader looks
 * for the next valid record) without losing the ones after it:
 *     'A' uid expires_at lengths device json ref rt corr crc   a command
 *     'S' uid crc                 sent to a cmd_results agent (expiry is the agent's)
 *     'R' uid lengths device payload rt corr crc   its result (replaces the command;
 *                                                  a result with no command gets a uid)
 *     'D' uid crc                 the broker confirmed the result: finished
 * Every record is one write(2) to the page cache before the loop goes on, so
 * a killed process loses nothing; fdatasync runs within 2 s on the syncer's
 * thread (a power cut loses at most those 2 s). On open the live commands are
 * handed back in their original order and the log is rewritten with only
 * them; while running it is rewritten (write tmp, fsync, rename) once it has
 * grown well past what is live.
 *
 * The store does not own commands or results: the caller (gw_downlink) does,
 * and tells the store when one is added (its uid is set here), sent, has its
 * result, and is finished.
 */
#ifndef GW_CMDSTORE_H
#define GW_CMDSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "eds_err.h"
#include "gw_cmdq.h"
#include "gw_outbox.h"

typedef struct gw_cmdstore gw_cmdstore;

/* What open hands back, in file order: cmd per live command (it owns cmd, created with
 * gw_cmd_create against *budget, with_agent set from its S record), result per result
 * not yet confirmed (parts point into the file's text: copy them). */
typedef struct gw_cmdstore_fns {
    void (*cmd)(void *ctx, const char *device, gw_cmd *cmd);
    void (*result)(void *ctx, const gw_result_parts *p);
    void *ctx;
} gw_cmdstore_fns;

/* Opens DIR/cmds.log (creating it), restores the live commands and results through fns
 * and compacts the file. EDS_OK, EDS_ERR_IO (err names the file) or EDS_ERR_NOMEM. */
int gw_cmdstore_open(const char *dir, const gw_cmdstore_fns *fns, size_t *budget, gw_cmdstore **out,
                     eds_error *err);

/* Syncs and closes; NULL ok. */
void gw_cmdstore_close(gw_cmdstore *s);

/* Gives cmd a uid and appends it. EDS_OK or EDS_ERR_IO (err; the command then lives
 * in memory only). NULL store: EDS_OK, nothing stored. */
int gw_cmdstore_add(gw_cmdstore *s, const char *device, gw_cmd *cmd, eds_error *err);

/* cmd was sent to a cmd_results agent: appends that (its expiry is the agent's from now
 * on, also after a restart). Nothing for uid 0 or a NULL store. */
int gw_cmdstore_sent(gw_cmdstore *s, const gw_cmd *cmd, eds_error *err);

/* Appends result m: with m->uid (its command's) it replaces the command; with uid 0 it
 * gets one. EDS_OK (also for a NULL store), EDS_ERR_IO (err; m then lives in memory only,
 * a fresh one with uid 0) or EDS_ERR_NOMEM. */
int gw_cmdstore_result(gw_cmdstore *s, gw_outmsg *m, eds_error *err);

/* uid is finished (its result confirmed by the broker): appends its removal. Nothing for
 * uid 0. */
int gw_cmdstore_del(gw_cmdstore *s, uint64_t uid, eds_error *err);

/* True when a rewrite is worth it. */
bool gw_cmdstore_wants_compaction(const gw_cmdstore *s);

/* Rewrites the log from the live commands and results: begin, put each one (commands in
 * delivery order, results in theirs), end. A failed rewrite leaves the old log in use. */
int gw_cmdstore_rewrite_begin(gw_cmdstore *s, eds_error *err);
void gw_cmdstore_rewrite_put(gw_cmdstore *s, const char *device, const gw_cmd *cmd);
void gw_cmdstore_rewrite_put_result(gw_cmdstore *s, const gw_outmsg *m);
int gw_cmdstore_rewrite_end(gw_cmdstore *s, eds_error *err);

#endif
