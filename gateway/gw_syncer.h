/*
 * gw_syncer.h - fdatasync off the hot path.
 *
 * The journal and the session store write with write(2), which is enough for
 * a killed process (the page cache keeps the data), and fdatasync at most
 * every interval for a power cut. An fdatasync on an SD card or a loaded
 * disk takes milliseconds to tens of milliseconds; done on the event loop it
 * holds every ack behind it (on Paho's threads, every publish). A syncer is
 * one thread per file that does it instead: the writer only marks the file
 * dirty (a mutex and, at most once per interval, a condition signal). On the
 * development VM's disk the p99 ack latency did not move measurably either
 * way (docs/performance.md, runs 5 to 7); on a Pi's SD card it is the point.
 *
 * Guarantee: after gw_syncer_dirty(), an fdatasync of the file starts within
 * the interval (or at gw_syncer_stop()).
 *
 * Threads: dirty() from any thread; set_fd()/stop() from the owner. Errors:
 * EDS_OK or a negative EDS_ERR_* (eds_err.h).
 */
#ifndef GW_SYNCER_H
#define GW_SYNCER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"

typedef struct gw_syncer gw_syncer;

/* Starts the thread for fd (not owned: the caller closes it after stop or set_fd).
 * EDS_OK, EDS_ERR_NOMEM or EDS_ERR_IO (thread creation failed). */
int gw_syncer_start(int fd, int64_t interval_ms, gw_syncer **out);

/* The file was written: sync it within the interval. Never blocks on a sync. NULL ok. */
void gw_syncer_dirty(gw_syncer *s);

/* The file was replaced (compaction): sync fd from now on. Waits for a sync of the old
 * fd in progress, so the caller may close the old one afterwards. NULL ok. */
void gw_syncer_set_fd(gw_syncer *s, int fd);

/* Syncs once more if dirty, stops the thread and frees it; NULL ok. */
void gw_syncer_stop(gw_syncer *s);

/* pthread_create of a thread that takes no signals (the loop reads them from
 * a signalfd): 0 or pthread_create's error. */
int gw_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* fsync of the directory that holds path, so that a rename into it survives a
 * power cut (best effort: errors are ignored). */
void gw_sync_dir(const char *path);

/* Keeps GW_RESERVE_BYTES of disk allocated past `end` of an append-only file
 * (fallocate with FALLOC_FL_KEEP_SIZE; *reserved is the end of that
 * allocation), so that writes already promised can finish when the disk
 * fills. False when the disk has no room for the reserve: the caller should
 * take on no new work. True where the file system cannot preallocate. */
#define GW_RESERVE_BYTES (64 * 1024)
bool gw_reserve_ahead(int fd, size_t end, size_t *reserved);

#endif
