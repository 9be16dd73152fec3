/*
 * gw_goodfile.h - the known-good addresses (gw_guard.h) kept across restarts,
 * so that pre-auth eviction still spares a device's address after the
 * gateway restarted (or was killed).
 *
 * The file is `DIR/known_good`, a text snapshot, one line per address:
 *     ADDRESS UNIX_SECONDS_OF_ITS_LAST_GOOD_LOGIN\n
 * at most GW_GUARD_MAX_GOOD lines. It is written whole as DIR/known_good.tmp,
 * fsynced and renamed over the old one, so a crash leaves the old file or the
 * new one, never a mix. Writing is batched and off the loop: the loop turns
 * the table into a buffer (no I/O) at most every GW_GOODFILE_BATCH_MS after an
 * address became known-good (hourly when only known ones logged in again, to
 * keep their week fresh), and a thread of this module writes it. A write
 * that fails (a full state_dir) changes nothing for logins: the old file
 * stays, the failure is logged once and retried after GW_GOODFILE_RETRY_MS.
 * A kill -9 loses at most the last batch.
 *
 * On load, lines older than a week (by the wall clock) and malformed lines
 * are skipped; a wall clock that went back counts the login as just now.
 *
 * Owns the file, the thread and the buffers; borrows the guard at each call.
 * Errors: EDS_OK or a negative EDS_ERR_* (eds_err.h), details in err.
 */
#ifndef GW_GOODFILE_H
#define GW_GOODFILE_H

#include <stdint.h>
#include <time.h>

#include "eds_err.h"
#include "gw_guard.h"

#define GW_GOODFILE_BATCH_MS 2000    /* a new known-good address is on disk within this */
#define GW_GOODFILE_TOUCH_MS 3600000 /* only refreshed logins: written hourly */
#define GW_GOODFILE_RETRY_MS 5000    /* after a failed write */

typedef struct gw_goodfile gw_goodfile;

/* Loads DIR/known_good (if any) into g, with now_ms the loop's clock and
 * wall the wall clock, and starts the writer thread. EDS_OK, EDS_ERR_NOMEM,
 * or EDS_ERR_IO (thread creation; an unreadable file is only a warning). */
int gw_goodfile_open(const char *dir, gw_guard *g, int64_t now_ms, time_t wall, gw_goodfile **out,
                     eds_error *err);

/* The loop's timer: hands a snapshot of g to the writer when one is due, and
 * logs the outcome of the last write (once per failure spell). */
void gw_goodfile_tick(gw_goodfile *f, gw_guard *g, int64_t now_ms, time_t wall);

/* Writes a last snapshot of g if anything changed, waits for the writer and
 * frees f. NULL ok. */
void gw_goodfile_close(gw_goodfile *f, gw_guard *g, int64_t now_ms, time_t wall);

#endif
