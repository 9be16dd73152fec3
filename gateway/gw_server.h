/*
 * gw_server.h - eds-gateway's engine. The server creates and glues the
 * modules that do the work: gw_conn (connections and I/O), gw_session (the
 * protocol per connection), gw_window (per-device records), gw_guard
 * (per-address and login limits), gw_relay (publishing and acks),
 * gw_downlink (commands), gw_publisher (MQTT) and gw_journal (the journal,
 * gw_state, as the gate of the acks: none while state_dir cannot be written).
 *
 * Delivery rule (docs/gateway.md): a record is acked only after the broker
 * confirmed it (QoS >= 1); records of one device are published in seq
 * order; last_seq advances only over a contiguous prefix of handled
 * records and is journaled (gw_journal.h) before the ack leaves.
 *
 * One thread runs everything except Paho's internals; signals arrive
 * through a signalfd: SIGTERM/SIGINT drain and stop, SIGHUP reloads the
 * schemas and the password file.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include "eds_err.h"
#include "gw_config.h"

typedef struct gw_server gw_server;

/* Loads schemas, passwords and state, opens listeners, starts the MQTT
 * client. cfg is borrowed and must outlive the server. */
int gw_server_create(const gw_config *cfg, gw_server **out, eds_error *err);

/* Runs until SIGTERM/SIGINT (or gw_server_stop); returns EDS_OK after a
 * clean drain. */
int gw_server_run(gw_server *s);

void gw_server_destroy(gw_server *s); /* NULL ok */

#endif
