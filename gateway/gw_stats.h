/*
 * gw_stats.h - the gateway's counters, published on P/_gateway/stats and
 * served on /metrics (gw_metrics.c). One gw_stats owned by the server; each
 * module counts its own events in it. gw_device_counters sit inside each
 * device. Written only by the event loop's thread; never reset (a SIGHUP
 * reload keeps them).
 */
#ifndef GW_STATS_H
#define GW_STATS_H

#include <stdint.h>

typedef struct gw_stats {
    uint64_t connections_total, auth_failures, messages_in, acked, duplicates, rejected, bad_lines,
        bytes_in, bytes_out, cmds_in, cmds_delivered, cmds_dropped, server_busy, timeouts, replaced;
    uint64_t tls_failures, per_ip_refused, rate_limited, login_delays, lines_too_long;
    /* commands: cmds_in = delivered + rejected + expired + dropped + still held; sent counts
     * cmd lines written (a command sent again after a reconnect counts again) */
    uint64_t cmds_sent, cmds_rejected, cmds_expired, cmds_retained;
    uint64_t cmd_answers_unknown; /* acks/nacks for command ids not outstanding */
    /* issue 15: floods, squatters, a full state_dir, what was skipped */
    uint64_t preauth_evicted, logins_throttled, journal_failures, store_failures, rejected_skipped,
        stats_skipped;
} gw_stats;

/* One device's share of messages_in, acked, rejected and duplicates. */
typedef struct gw_device_counters {
    uint64_t records_in, acked, rejected, duplicates;
    int64_t last_seen; /* Unix time (s) of its last data message; 0 = none yet */
} gw_device_counters;

#endif
