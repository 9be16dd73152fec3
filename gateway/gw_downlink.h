/*
 * gw_downlink.h - commands from the broker to devices (P/DEVICE/cmd): held
 * while a device is offline, delivered once it is online, kept until the
 * agent acks them, put back in front of the queue when the connection goes.
 *
 * Owns every command alive (held on a device or unacked on a connection)
 * and their byte budget (max_held_bytes, all devices together: any local
 * reader may write P/+/cmd, also for ids that never connect). Drops are
 * counted and logged at most every 10 s.
 */
#ifndef GW_DOWNLINK_H
#define GW_DOWNLINK_H

#include <stdint.h>

#include "gw_config.h"
#include "gw_conn.h"
#include "gw_publisher.h"
#include "gw_stats.h"
#include "gw_window.h"

#define GW_MAX_UNACKED_CMDS 64 /* commands sent to one connection and not acked yet */

typedef struct gw_downlink {
    const gw_config *cfg;
    gw_window *w;
    gw_conns *conns;
    gw_stats *st;
    size_t held_bytes;        /* commands owned by the gateway (held or unacked) */
    int64_t next_drop_log_ms; /* command drops are logged at most every 10 s */
    uint64_t drops_unlogged;
} gw_downlink;

void gw_downlink_init(gw_downlink *dl, const gw_config *cfg, gw_window *w, gw_conns *conns,
                      gw_stats *st);

/* A message from the broker: a command if its topic is P/DEVICE/cmd and its
 * payload one JSON value; held, and delivered if the device is online. */
void gw_downlink_message(gw_downlink *dl, const gw_pub_event *ev);

/* Sends c's device's held commands, up to GW_MAX_UNACKED_CMDS unacked. */
void gw_downlink_deliver(gw_downlink *dl, gw_conn *c);

/* The agent acked command id on c: frees it and delivers the next. */
void gw_downlink_ack(gw_downlink *dl, gw_conn *c, int64_t id);

/* c leaves device d: its unacked commands go back to the front of d's queue. */
void gw_downlink_detach(gw_downlink *dl, gw_conn *c, gw_device *d);

/* Frees what c still holds (before gw_conn_destroy). */
void gw_downlink_conn_gone(gw_downlink *dl, gw_conn *c);

#endif
