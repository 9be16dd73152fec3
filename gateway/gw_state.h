/*
 * gw_state.h - last_seq per device, kept across gateway restarts.
 *
 * Why a local journal and not retained MQTT messages: the gateway must
 * answer hello with the right last_seq even while the broker is down, and
 * a per-ack retained publish would double the broker's load. The journal
 * is an append-only text file `DIR/state.log`, one line per change:
 *     DEVICE STREAM LAST_SEQ\n
 * The loop appends lines during an iteration and writes them with one
 * write(2) (gw_state_flush) before it sends the acks they cover, so a
 * killed gateway (SIGKILL) never forgets a seq it acked: the page cache
 * keeps what was written. An fdatasync runs at most once per sync interval
 * for power loss. On load the last line of a device wins and a torn final
 * line is ignored. When the journal has grown well past the live state it is
 * rewritten as a snapshot (write tmp, fsync, rename).
 */
#ifndef GW_STATE_H
#define GW_STATE_H

#include <stdint.h>

#include "eds_err.h"

typedef struct gw_state gw_state;

/* Called per loaded entry, oldest first; a later call for the same device overrides. */
typedef void (*gw_state_entry_fn)(void *ctx, const char *device, const char *stream,
                                  uint64_t last_seq);

/* Opens (creating DIR and the journal if needed) and replays it through fn.
 * Returns EDS_OK, or EDS_ERR_IO with the path in err. */
int gw_state_open(const char *dir, gw_state_entry_fn fn, void *ctx, gw_state **out, eds_error *err);

/* Writes what is buffered and closes; NULL ok. */
void gw_state_close(gw_state *st);

/* Buffers one change. Returns EDS_OK, EDS_ERR_NOMEM, or EDS_ERR_FULL when 4 MiB wait
 * unwritten (the journal file keeps failing). */
int gw_state_append(gw_state *st, const char *device, const char *stream, uint64_t last_seq);

/* Writes buffered changes (one write). Returns EDS_OK or EDS_ERR_IO (err). */
int gw_state_flush(gw_state *st, eds_error *err);

/* fdatasync now, on the caller's thread (rare: before the gateway drops information that
 * the journal has just taken over). */
void gw_state_sync(gw_state *st);

/* True when the journal has grown enough that a snapshot is worth writing. */
int gw_state_wants_compaction(const gw_state *st, size_t live_entries);

/* Rewrites the journal from the live entries: each call of the iterator
 * hands out one entry and returns 1, or returns 0 at the end. */
typedef int (*gw_state_iter_fn)(void *ctx, const char **device, const char **stream,
                                uint64_t *last_seq);
int gw_state_compact(gw_state *st, gw_state_iter_fn next, void *ctx, eds_error *err);

#endif
