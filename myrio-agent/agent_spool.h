/*
 * agent_spool.h - the agent's crash-safe on-disk record spool.
 *
 * Layout of the spool folder:
 *   stream                   the stream id (hex, from /dev/urandom when the
 *                            folder is new), written once, atomically
 *   acked                    "acked up to seq": decimal, replaced atomically
 *                            (write acked.tmp, fsync, rename)
 *   seg-<first seq, hex>.eds append-only segment files
 *   lock                     flock()ed while an agent uses the folder
 * Each record in a segment is [u32 length][u32 crc32][u64 seq][payload],
 * little-endian; the CRC-32 covers the 8 seq bytes and the payload. Seqs
 * increase through the segments.
 *
 * Recovery (spool_open) scans every segment and truncates it at the first
 * record that is torn (cut by a crash) or fails its checksum or its seq
 * order; the rest of that segment is lost and logged. A segment whose
 * records are all acked is deleted, but only after the acked file that
 * proves it has been made durable, so the seq counter recovered from the
 * folder (max of acked and the newest seq on disk) never goes backwards
 * and a restarted agent never reuses a seq the gateway has seen.
 *
 * The spool is the source of truth: records are appended here, made
 * durable per the sync policy, and only then read back (spool_read_next)
 * to be sent. Bounded by max_bytes (segment files on disk).
 */
#ifndef AGENT_SPOOL_H
#define AGENT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"

#define SPOOL_HEADER 16u
#define SPOOL_MAX_RECORD (16u * 1024u * 1024u) /* larger length fields mean corruption */

typedef struct agent_spool agent_spool;

/* Opens (creating the folder if missing, one level) and recovers the spool.
 * sync_policy is an enum eds_agent_sync_policy. EDS_OK, EDS_ERR_IO
 * (folder unusable or in use by another agent), EDS_ERR_NOMEM. */
int spool_open(const char *dir, size_t max_bytes, int sync_policy, agent_spool **out,
               eds_error *err);

/* Syncs, writes the acked file and closes; NULL is fine. */
void spool_close(agent_spool *sp);

const char *spool_stream(const agent_spool *sp);

/* The highest seq ever written or acked: the next record takes this + 1. */
uint64_t spool_last_seq(const agent_spool *sp);

uint64_t spool_acked(const agent_spool *sp);

/* Bytes in segment files. */
size_t spool_bytes(const agent_spool *sp);

/* Records on disk not yet handed out by spool_read_next (seq > acked). */
uint64_t spool_unread(const agent_spool *sp);

/* Segment files currently on disk. */
size_t spool_segments(const agent_spool *sp);

/* Appends one record (seq > spool_last_seq). EDS_OK, EDS_ERR_FULL when it
 * would exceed max_bytes or the disk has no room for it (ENOSPC, EDQUOT,
 * EFBIG), EDS_ERR_IO; on an error nothing of it is kept (a half-written
 * record is cut off again). */
int spool_append(agent_spool *sp, uint64_t seq, const char *data, size_t len, eds_error *err);

/* Makes appended records durable (fdatasync, per the policy) and thus
 * readable by spool_read_next. */
int spool_sync(agent_spool *sp, eds_error *err);

/* The next durable record after the read cursor with seq > acked: *data is
 * malloc'd (caller frees). EDS_OK, EDS_ERR_AGAIN when there is none yet,
 * EDS_ERR_IO, EDS_ERR_NOMEM. A record failing its checksum here is logged
 * and the rest of its segment skipped. */
int spool_read_next(agent_spool *sp, uint64_t *seq, char **data, size_t *len, eds_error *err);

/* Records that every seq <= seq is done (acked, nacked or dropped); deletes
 * segments that hold nothing else (after persisting the acked file). */
int spool_set_acked(agent_spool *sp, uint64_t seq, eds_error *err);

/* Persists the acked marker if it changed. */
int spool_flush_acked(agent_spool *sp, eds_error *err);

/* Deletes the oldest segment (drop-oldest policy). *upto: its last seq
 * (every record <= it is gone); *unread: records dropped that had not been
 * read yet. EDS_ERR_NOTFOUND when there is no segment. */
int spool_drop_oldest(agent_spool *sp, uint64_t *upto, uint64_t *unread, eds_error *err);

#endif
