/*
 * gw_cmdstore.h - downlink commands on disk, so that the commands held for
 * offline devices (and those sent but not acked) survive a gateway restart,
 * kill -9 included.
 *
 * An append-only log `DIR/cmds.log` of two kinds of record, each with a
 * CRC-32 so that a torn tail (a crash in mid-write) is recognised and
 * ignored:
 *     'A' uid expires_at lengths device json ref rt corr crc   a command
 *     'D' uid crc                                              its result is out
 * Every record is one write(2) to the page cache before the loop goes on, so
 * a killed process loses nothing; fdatasync runs within 2 s on the syncer's
 * thread (a power cut loses at most those 2 s). On open the live commands are
 * handed back in their original order and the log is rewritten with only
 * them; while running it is rewritten (write tmp, fsync, rename) once it has
 * grown well past what is live.
 *
 * The store does not own commands: the caller (gw_downlink) does, and tells
 * the store when one is added (its uid is set here) and when it is finished.
 */
#ifndef GW_CMDSTORE_H
#define GW_CMDSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "eds_err.h"
#include "gw_cmdq.h"

typedef struct gw_cmdstore gw_cmdstore;

/* Called per live command found on open, oldest first; fn owns cmd (created with
 * gw_cmd_create against *budget). */
typedef void (*gw_cmdstore_restore_fn)(void *ctx, const char *device, gw_cmd *cmd);

/* Opens DIR/cmds.log (creating it), restores the live commands through fn and
 * compacts the file. EDS_OK, EDS_ERR_IO (err names the file) or EDS_ERR_NOMEM. */
int gw_cmdstore_open(const char *dir, gw_cmdstore_restore_fn fn, void *ctx, size_t *budget,
                     gw_cmdstore **out, eds_error *err);

/* Syncs and closes; NULL ok. */
void gw_cmdstore_close(gw_cmdstore *s);

/* Gives cmd a uid and appends it. EDS_OK or EDS_ERR_IO (err; the command then lives
 * in memory only). NULL store: EDS_OK, nothing stored. */
int gw_cmdstore_add(gw_cmdstore *s, const char *device, gw_cmd *cmd, eds_error *err);

/* cmd is finished (its result is out): appends its removal. Nothing for uid 0. */
int gw_cmdstore_del(gw_cmdstore *s, const gw_cmd *cmd, eds_error *err);

/* True when a rewrite is worth it. */
bool gw_cmdstore_wants_compaction(const gw_cmdstore *s);

/* Rewrites the log from the live commands: begin, put each one (in delivery order),
 * end. A failed rewrite leaves the old log in use. */
int gw_cmdstore_rewrite_begin(gw_cmdstore *s, eds_error *err);
void gw_cmdstore_rewrite_put(gw_cmdstore *s, const char *device, const gw_cmd *cmd);
int gw_cmdstore_rewrite_end(gw_cmdstore *s, eds_error *err);

#endif
