/*
 * gw_metrics.h - Prometheus metrics: `metrics_listener PORT [ADDRESS]` serves
 * GET /metrics in the Prometheus text format (version 0.0.4) with
 * libmicrohttpd.
 *
 * Threads. libmicrohttpd answers HTTP on a thread of its own; every counter
 * belongs to the event loop's thread. They meet in this module only, under
 * one mutex:
 *   1. a scrape (HTTP thread) takes a ticket and writes to an eventfd, then
 *      waits on a condition variable (at most 2 s: a stuck or stopping loop
 *      gets 503, never a hang);
 *   2. the loop sees the eventfd readable (gw_metrics_fd), asks
 *      gw_metrics_wanted() and, if a scrape waits, fills a snapshot and calls
 *      gw_metrics_publish(): the text is rendered on the loop's thread from
 *      the loop's own data, without the lock, then swapped in under the lock
 *      and the waiting scrapes are woken;
 *   3. the scrape copies the text to its response under the lock.
 * So the loop pays for a rendering only when someone scrapes, nothing reads
 * loop data from another thread, and the lock is held only for a swap or a
 * copy.
 *
 * Names (docs/operations.md, "Prometheus metrics"): eds_ prefix; counters end
 * in _total; per device the label `device`, escaped as the format wants
 * (\\, \", \n). At most GW_METRICS_MAX_DEVICES devices are listed (by index);
 * eds_metrics_devices_omitted counts the rest.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"
#include "gw_stats.h"

#define GW_METRICS_MAX_DEVICES 10000
#define GW_METRICS_MAX_TEXT (32u * 1024 * 1024)

/* One device as the snapshot's iterator hands it out. */
typedef struct gw_metrics_device {
    const char *id;
    const gw_device_counters *c;
    bool online;
} gw_metrics_device;

/* What the loop knows at the moment of a scrape. Borrowed for the duration of
 * gw_metrics_publish()/gw_metrics_format(). */
typedef struct gw_metrics_snapshot {
    const gw_stats *stats;
    int64_t uptime_s;
    size_t connections, devices_online, devices_known, pending_bytes, inflight;
    bool broker_connected;
    uint64_t broker_timeouts, cmds_lost; /* the publisher's, not in gw_stats */
    /* Device i (0 <= i < devices_known) into *out. */
    void (*device)(void *ctx, size_t i, gw_metrics_device *out);
    void *ctx;
} gw_metrics_snapshot;

typedef struct gw_metrics gw_metrics;

/* Starts the HTTP server on ADDRESS:PORT (address "" = 127.0.0.1; an IPv6
 * literal works too). EDS_OK, EDS_ERR_CONFIG for an address that is not a
 * numeric IP, EDS_ERR_IO if it cannot listen, EDS_ERR_NOMEM. */
int gw_metrics_create(const char *address, int port, gw_metrics **out, eds_error *err);

/* Stops the HTTP thread (a waiting scrape gets 503) and frees. NULL ok. */
void gw_metrics_destroy(gw_metrics *m);

/* The eventfd the loop watches for reading. Owned by m. */
int gw_metrics_fd(const gw_metrics *m);

/* Loop thread: drains the eventfd; true if a scrape waits for a snapshot. */
bool gw_metrics_wanted(gw_metrics *m);

/* Loop thread: renders snap and hands it to the waiting scrapes. A
 * rendering that fails (out of memory) answers them 503. */
void gw_metrics_publish(gw_metrics *m, const gw_metrics_snapshot *snap);

/* The exposition text of snap, in *text (malloc'd, NUL-terminated; caller
 * frees) and *len. EDS_OK, or EDS_ERR_NOMEM (also past GW_METRICS_MAX_TEXT).
 * Pure: the HTTP part is not needed (unit tests call it). */
int gw_metrics_format(const gw_metrics_snapshot *snap, char **text, size_t *len);

#endif
