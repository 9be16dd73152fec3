/*
 * gw_stats.c - the table of the gateway's counters (gw_stats.h): the stats
 * topic's field, the Prometheus name and help of each, in the stats topic's
 * order.
 */
#include "gw_stats.h"

#include <inttypes.h>
#include <stdio.h>

/* clang-format off */
#define C(field, name, text) {#field, name, text, offsetof(gw_stats, field)}
/* clang-format on */

const gw_stats_counter gw_stats_counters[] = {
    C(connections_total, "eds_connections_total", "Agent connections accepted."),
    C(messages_in, "eds_records_received_total", "Data messages received from agents."),
    C(acked, "eds_records_acked_total", "Records published to the broker and acked."),
    C(duplicates, "eds_records_duplicate_total",
      "Data messages at or below last_seq, not published again."),
    C(rejected, "eds_records_rejected_total", "Records that failed their schema."),
    C(bad_lines, "eds_bad_lines_total", "Lines that were not JSON or not a valid message."),
    C(auth_failures, "eds_auth_failures_total", "Hellos refused."),
    C(timeouts, "eds_timeouts_total", "Connections closed for auth_timeout or idle_timeout."),
    C(server_busy, "eds_server_busy_total", "Connections refused at max_clients."),
    C(replaced, "eds_connections_replaced_total",
      "Connections replaced by a newer one of the same device."),
    C(cmds_in, "eds_commands_received_total", "Commands received from <prefix>/<device>/cmd."),
    C(cmds_delivered, "eds_commands_delivered_total",
      "Commands the device's application took (acked by its agent)."),
    C(cmds_dropped, "eds_commands_dropped_total", "Commands dropped over a limit."),
    C(bytes_in, "eds_received_bytes_total", "Bytes read from agents."),
    C(bytes_out, "eds_sent_bytes_total", "Bytes written to agents."),
    C(tls_failures, "eds_tls_failures_total", "TLS handshakes that failed."),
    C(per_ip_refused, "eds_per_ip_refused_total", "Connections refused by max_conn_per_ip."),
    C(rate_limited, "eds_rate_limited_total", "Times a device's reading was paused by max_rate."),
    C(login_delays, "eds_login_delays_total", "Failed logins answered after a delay."),
    C(lines_too_long, "eds_lines_too_long_total", "Connections closed for a line past max_line."),
    C(cmds_sent, "eds_commands_sent_total",
      "Command lines written to agents (a resend after a reconnect counts again)."),
    C(cmds_rejected, "eds_commands_rejected_total",
      "Commands refused by the gateway's or the agent's command schema."),
    C(cmds_expired, "eds_commands_expired_total",
      "Commands that expired before delivery (cmd_expiry, MQTT 5 expiry)."),
    C(cmds_retained, "eds_commands_retained_total", "Retained messages on cmd topics, ignored."),
    C(cmd_answers_unknown, "eds_command_answers_unknown_total",
      "Acks and nacks from agents for command ids the gateway does not know."),
    C(preauth_evicted, "eds_preauth_evicted_total",
      "Connections without a good hello closed at max_unauthenticated."),
    C(logins_throttled, "eds_logins_throttled_total",
      "Failed logins held back by max_auth_failures."),
    C(journal_failures, "eds_journal_failures_total", "Journal writes that failed (state_dir)."),
    C(store_failures, "eds_store_failures_total",
      "Session store writes that failed (state_dir, qos 2)."),
    C(rejected_skipped, "eds_rejected_skipped_total",
      "Rejected-record copies not published (publisher full)."),
    C(stats_skipped, "eds_stats_skipped_total", "Stats messages not published (publisher full)."),
};

const size_t gw_stats_ncounters = sizeof(gw_stats_counters) / sizeof(gw_stats_counters[0]);

size_t gw_stats_json_counters(const gw_stats *st, char *buf, size_t size)
{
    size_t len = 0;
    for (size_t i = 0; i < gw_stats_ncounters; i++) {
        const gw_stats_counter *c = &gw_stats_counters[i];
        int n =
            snprintf(buf + len, size - len, "\"%s\":%" PRIu64 ",", c->key, gw_stats_value(st, c));
        if (n < 0 || (size_t)n >= size - len)
            return 0;
        len += (size_t)n;
    }
    return len;
}
