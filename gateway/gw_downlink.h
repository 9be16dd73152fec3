/*
 * gw_downlink.h - commands from the broker to devices (P/DEVICE/cmd):
 * checked, held while a device is offline, delivered once it is online,
 * kept until the agent acks them, put back in front of the queue when the
 * connection goes; and every command's result on P/DEVICE/cmd/result.
 *
 * A command is checked the way the agent will parse it (the strict parser
 * of records, depth included with the cmd line around it), against the
 * device's cmd_schema if there is one, and passed on minified, never
 * re-printed. Its result is a JSON object: {"status":S,"ref":R,...} with S
 * delivered (the agent acked it), rejected (not JSON, or refused by the
 * gateway's or the agent's schema: "errors" in Cerberus's layout),
 * expired (cmd_expiry or the MQTT 5 message expiry passed before it was
 * sent) or dropped (over a limit: "reason"); R is the command's own "id"
 * member when it has one. A command published with an MQTT 5 response
 * topic gets its result there too, with the same correlation data.
 *
 * Every command for a known device (one that has connected) is in the
 * command store (gw_cmdstore.h) from its arrival to its result, and every
 * result from then until the broker confirmed it (PUBACK), so held and
 * unacked commands and results waiting for the broker survive a restart,
 * kill -9 included. Results wait in a bounded queue (gw_outbox.h): once it is
 * full no command is sent or expired (those make results) until it drains.
 * Commands parked for an id never seen stay in memory until it connects: a
 * flood of made-up ids costs no writes to the Pi's SD card.
 *
 * Owns every command alive (held on a device, parked for an id never seen,
 * or unacked on a connection) and their byte budget (max_held_bytes, all
 * devices together, parked entries included: any local reader may write
 * P/+/cmd, also for ids that never connect, so the oldest parked id is
 * evicted first and a real device is never locked out). Retained messages
 * on cmd topics are not delivered (counted, logged once). Warnings are
 * logged at most every 10 s with a count of those left out.
 */
#ifndef GW_DOWNLINK_H
#define GW_DOWNLINK_H

#include <stdint.h>

#include "eds_log.h"
#include "gw_cmdpark.h"
#include "gw_cmdstore.h"
#include "gw_config.h"
#include "gw_conn.h"
#include "gw_outbox.h"
#include "gw_publisher.h"
#include "gw_relay.h"
#include "gw_schemas.h"
#include "gw_stats.h"
#include "gw_window.h"

#define GW_MAX_UNACKED_CMDS 64 /* commands sent to one connection and not acked yet */

typedef struct gw_downlink {
    const gw_config *cfg;
    gw_window *w;
    gw_conns *conns;
    gw_relay *relay;
    gw_stats *st;
    const gw_schemas *schemas; /* borrowed; the server swaps it on reload */
    gw_cmdpark park;           /* commands for ids never seen connect */
    gw_cmdstore *store;        /* NULL until gw_downlink_open_store; owned */
    size_t held_bytes;         /* commands owned by the gateway (held, parked or unacked) */
    eds_log_limit warn_limit;  /* warnings: at most one every 10 s, then a summary */
    bool retained_logged;
    gw_outbox results;   /* results until the broker confirmed them (also in the store) */
    bool results_unsent; /* some of them wait to be handed to the publisher */
    char *buf;           /* result documents; owned */
    size_t buf_cap;
} gw_downlink;

/* EDS_OK or EDS_ERR_NOMEM. */
int gw_downlink_init(gw_downlink *dl, const gw_config *cfg, gw_window *w, gw_conns *conns,
                     gw_relay *relay, gw_stats *st);

/* Frees every command held or parked (not those on connections) and closes the
 * store; the stored commands stay on disk for the next start. */
void gw_downlink_free(gw_downlink *dl);

/* Opens the command store in dir and takes back the commands a previous run left
 * (after the devices are loaded from the journal). EDS_OK or EDS_ERR_IO/NOMEM (err). */
int gw_downlink_open_store(gw_downlink *dl, const char *dir, eds_error *err);

/* A message from the broker: a command if its topic is P/DEVICE/cmd; checked,
 * held, and delivered if the device is online. */
void gw_downlink_message(gw_downlink *dl, const gw_pub_event *ev);

/* Sends c's device's held commands (first those parked under its id), up to
 * GW_MAX_UNACKED_CMDS unacked; expired ones get their result instead. */
void gw_downlink_deliver(gw_downlink *dl, gw_conn *c);

/* The agent acked command id on c: result delivered; delivers the next. */
void gw_downlink_ack(gw_downlink *dl, gw_conn *c, int64_t id);

/* The agent gave command m->id on c up: m->status "expired" or "dropped" (with m->reason)
 * gives that result; anything else is rejected, with m->errors (Cerberus layout). */
void gw_downlink_nack(gw_downlink *dl, gw_conn *c, const eds_msg *m);

/* c leaves device d: its unacked commands go back to the front of d's queue. */
void gw_downlink_detach(gw_downlink *dl, gw_conn *c, gw_device *d);

/* Frees what c still holds (before gw_conn_destroy). */
void gw_downlink_conn_gone(gw_downlink *dl, gw_conn *c);

/* Publishes the results that wait for the broker, while the publisher takes them (once
 * per batch, after the records). */
void gw_downlink_flush(gw_downlink *dl);

/* A publish event (DONE: ok) of token: true when it was a result's (handled: confirmed,
 * the result is finished and leaves the store; failed, it is sent again). */
bool gw_downlink_published(gw_downlink *dl, uint64_t token, bool ok);

/* Timer: commands past their expiry get their result and are freed; the store is
 * compacted when it has grown enough. */
void gw_downlink_tick(gw_downlink *dl);

#endif
