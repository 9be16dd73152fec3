/*
 * gw_stats.h - the gateway's counters, published on P/_gateway/stats and
 * served on /metrics (gw_metrics.c). One gw_stats owned by the server; each
 * module counts its own events in it. gw_device_counters sit inside each
 * device. Written only by the event loop's thread; never reset (a SIGHUP
 * reload keeps them).
 */
#ifndef GW_STATS_H
#define GW_STATS_H

#include <stddef.h>
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

/* One counter of gw_stats: the stats topic's JSON (gw_server.c) and /metrics
 * (gw_metrics.c) both walk gw_stats_counters, so a counter added there shows
 * in both (docs/operations.md has a row for each, in both tables). */
typedef struct gw_stats_counter {
    const char *key;    /* field of the stats JSON, and of gw_stats */
    const char *metric; /* Prometheus name, ending in _total */
    const char *help;   /* its # HELP text */
    size_t off;         /* offsetof(gw_stats, field) */
} gw_stats_counter;

extern const gw_stats_counter gw_stats_counters[];
extern const size_t gw_stats_ncounters;

static inline uint64_t gw_stats_value(const gw_stats *st, const gw_stats_counter *c)
{
    return *(const uint64_t *)(const void *)((const char *)st + c->off);
}

/* Writes "key":value, for every counter, in the table's order, into buf
 * (NUL-terminated); returns the length, or 0 if size is too small. */
size_t gw_stats_json_counters(const gw_stats *st, char *buf, size_t size);

#endif
