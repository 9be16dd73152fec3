/*
 * gw_pubstore.h - the MQTT session store behind the gateway's exactly-once mode.
 *
 * With qos 2 the publisher keeps one persistent MQTT session (cleansession 0)
 * and gives Paho this store as its persistence. Paho puts every publish it
 * accepts, and every QoS 2 flow step, under a key ("c-N" queued command,
 * "s-ID" sent PUBLISH, "sc-ID" sent PUBREL, ...) and removes it when the
 * flow completes. After a SIGKILL the next gateway opens the same file and
 * Paho resends exactly what was in flight, with the same packet ids, so the
 * broker (which delivers a QoS 2 message when it gets PUBREL) hands each
 * record to subscribers once.
 *
 * Marks: what Paho stores does not say which record (device, stream, seq) a
 * publish carries, and a record whose flow completed just before a crash is
 * neither in the store nor yet in the gateway's journal. So a put may carry a
 * mark (gw_mark.h), written in the same log record; the publisher passes it
 * with the put of the queued command inside MQTTAsync_send (gw_paho_store.h).
 * The store keeps the latest mark per device: at start the gateway raises each
 * device's last_seq to its mark once the restored publishes are confirmed.
 * Marks are hashed by device (10,000 devices must not slow every put).
 *
 * File: DIR/mqtt-session.log, append-only, one write(2) per operation (a
 * SIGKILL loses nothing the page cache has; fdatasync at most every 2 s).
 * A write that fails half-way is cut off again (ftruncate), so later records
 * stay readable. Each log record is [u32 len][u32 crc32][len bytes body], little-endian;
 * the body is one of
 *     'p' u16 klen key u32 dlen data MARK      (put; MARK's device length 0 = no mark)
 *     'q' as 'p', then u16 rklen rkey          (put, and remove rkey: see below)
 *     'm' MARK                                 (mark, written by compaction)
 *     'R' u16 klen key                         (remove)
 *     'C'                                      (clear)
 * where MARK is u8 devlen device u8 stlen stream u64 seq. Files written before
 * marks were typed hold 'P', 'Q' and 'M' records instead, with the mark as
 * u16 len device u16 len "STREAM SEQ"; they are still read.
 * Paho removes a queued command ("c-N") just before it stores the PUBLISH it
 * sent for it ("s-ID"), on the same thread. Two records would leave a crash
 * window with neither in the file, and a handed record lost; so the removal
 * of a "c-" key is held back (gone for readers, kept in the file) until that
 * thread's next put, and both go out as one 'q' record.
 * Loading replays records in order and stops at the first short or corrupt
 * one (a torn tail after power loss), truncating the file there. When the
 * log is past 8 MiB and four times the live data, it is rewritten (tmp,
 * fsync, rename) as the live entries plus the marks.
 *
 * Threads: every function may be called from any thread; one mutex inside.
 * Paho calls put/get/remove on its own threads.
 *
 * Errors: EDS_OK or a negative EDS_ERR_* (eds_err.h). Write failures (a full
 * disk) are logged (rate-limited) and returned as EDS_ERR_IO; the in-memory
 * state still changes (Paho goes on either way), the store is "failed" and
 * the file lags memory until a rewrite of everything succeeds (at the next
 * write or gw_pubstore_failed). The gateway hands no new record to Paho and
 * acks none while the store has failed.
 */
#ifndef GW_PUBSTORE_H
#define GW_PUBSTORE_H

#include <stdbool.h>
#include <string.h>
#include <stddef.h>

#include "eds_err.h"
#include "gw_mark.h"

typedef struct gw_pubstore gw_pubstore;

/* Longest key accepted (Paho keys are short: "sc-65535"). */
#define GW_PUBSTORE_KEY_MAX 64

/* Opens dir/mqtt-session.log (creating dir and the file), replaying it; dir NULL = in
 * memory only (exactly once across broker restarts, not across gateway crashes).
 * Returns EDS_OK, EDS_ERR_IO (path and reason in err) or EDS_ERR_NOMEM. */
int gw_pubstore_open(const char *dir, gw_pubstore **out, eds_error *err);

/* Writes removals still held back, closes the file and frees everything; NULL ok.
 * Entries stay in the file. */
void gw_pubstore_close(gw_pubstore *st);

/* Stores the concatenation of n buffers under key, replacing any entry with that key,
 * and mark (NULL = none; copied) in the same log record.
 * EDS_OK, EDS_ERR_INVAL (key too long or empty, a mark with an invalid device or stream
 * id), EDS_ERR_NOMEM, EDS_ERR_IO. */
int gw_pubstore_put(gw_pubstore *st, const char *key, int n, char *const bufs[], const int lens[],
                    const gw_mark *mark);

/* *buf: a copy of key's data made with alloc (NULL = malloc; Paho needs its own
 * allocator, see gw_publisher.c), which the caller frees; *len its length.
 * EDS_OK, EDS_ERR_NOTFOUND, EDS_ERR_NOMEM. */
int gw_pubstore_get(gw_pubstore *st, const char *key, void *(*alloc)(size_t), char **buf, int *len);

/* EDS_OK (removed or not there), EDS_ERR_IO, EDS_ERR_NOMEM (the entry is gone from memory
 * either way; only its removal from the file failed). */
int gw_pubstore_remove(gw_pubstore *st, const char *key);

bool gw_pubstore_contains(gw_pubstore *st, const char *key);

/* *keys: malloc'd array of *n malloc'd strings (NULL when n is 0), in insertion order.
 * EDS_OK or EDS_ERR_NOMEM. */
int gw_pubstore_keys(gw_pubstore *st, char ***keys, int *n);

/* Removes every entry (marks stay). EDS_OK or EDS_ERR_IO. */
int gw_pubstore_clear(gw_pubstore *st);

/* Entries held now. */
size_t gw_pubstore_count(gw_pubstore *st);

/* Calls fn(ctx) from the thread whose remove/clear takes the count to 0 (not on
 * puts), with the store unlocked. NULL fn = none. */
void gw_pubstore_on_empty(gw_pubstore *st, void (*fn)(void *ctx), void *ctx);

/* Calls fn once per mark (the latest per device), in no particular order; fn must not
 * call the store. */
void gw_pubstore_each_mark(gw_pubstore *st, void (*fn)(void *ctx, const gw_mark *mark), void *ctx);

/* Drops every mark and rewrites the file without them (the caller has made them
 * durable elsewhere). EDS_OK or EDS_ERR_IO (err). */
int gw_pubstore_forget_marks(gw_pubstore *st, eds_error *err);

/* Deletes dir's session store file, if there is one (a gateway switched from qos 2 to a
 * clean session: its old session must not be resent later). EDS_OK when removed,
 * EDS_ERR_NOTFOUND when there was none, EDS_ERR_IO (err) when it could not be removed. */
int gw_pubstore_discard(const char *dir, eds_error *err);

/* True while the file lags memory after a failed write (first tries the
 * rewrite that would end that), or while the disk has no room for the space
 * kept ahead of the log (gw_reserve_ahead) for the flows already handed:
 * then hand the store nothing new. */
bool gw_pubstore_failed(gw_pubstore *st);

/* Bytes in the log file now (0 in memory mode); for tests and stats. */
size_t gw_pubstore_log_bytes(gw_pubstore *st);

/* True for Paho's key of a queued command ("c-N"; "c5-N" at MQTT 5). */
static inline bool gw_pubstore_is_command(const char *key)
{
    return strncmp(key, "c-", 2) == 0 || strncmp(key, "c5-", 3) == 0;
}

#endif
