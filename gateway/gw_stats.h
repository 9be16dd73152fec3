/*
 * gw_stats.h - the gateway's counters, published on P/_gateway/stats. One
 * struct owned by the server; each module counts its own events in it.
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
    /* issue 15: floods, squatters, a full state_dir, what was skipped */
    uint64_t preauth_evicted, logins_throttled, journal_failures, store_failures, rejected_skipped,
        stats_skipped;
} gw_stats;

#endif
