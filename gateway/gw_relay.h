/*
 * gw_relay.h - records and statuses on their way to the broker and the
 * answers on their way back: devices take turns handing WAITING records to
 * the publisher (pump), each publish result completes its record, complete
 * records at the head of a ring are answered in order (ack, duplicate ack,
 * or nack) and advance last_seq, retained statuses wait in a queue until
 * the publisher has room, and the qos 2 recovery marks raise last_seq after
 * a crash.
 *
 * Owns the queue of devices with records to publish and the queue of
 * statuses to publish; broker_up and restoring say whether publishing is
 * possible. Records stay in gw_window; answers go out through gw_conn.
 */
#ifndef GW_RELAY_H
#define GW_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "gw_config.h"
#include "gw_conn.h"
#include "gw_publisher.h"
#include "gw_stats.h"
#include "gw_window.h"

#define GW_TOPIC_MAX 512

typedef struct gw_relay {
    const gw_config *cfg;
    gw_publisher *pub;
    gw_window *w;
    gw_conns *conns;
    gw_stats *st;
    gw_device *ready, *ready_tail;        /* devices with WAITING records, in turn order */
    gw_device *status_head, *status_tail; /* statuses to publish, oldest first */
    gw_device *answer;                    /* devices with settled records to answer */
    bool broker_up;
    bool restoring;    /* qos 2 after a crash: publishes restored from the session store are
                          not all confirmed yet; no welcome, no publish until they are */
    bool held;         /* the journal cannot be written: no new publish, no answer */
    bool store_failed; /* qos 2: the session store cannot be written: no new record */
    int64_t store_retry_ms;
} gw_relay;

void gw_relay_init(gw_relay *r, const gw_config *cfg, gw_window *w, gw_conns *conns, gw_stats *st);

/* "P/DEVICE/LEAF" into buf (GW_TOPIC_MAX bytes). */
void gw_relay_topic(const gw_relay *r, const char *device, const char *leaf, char *buf);

/* t as "YYYY-MM-DDTHH:MM:SSZ". */
void gw_rfc3339(time_t t, char *buf, size_t cap);

/* Publishes something no one waits for (stats, rejected lines) if the broker
 * is there and the publisher has room: EDS_OK, or the reason it was skipped
 * (the caller counts it). */
int gw_relay_publish_untracked(gw_relay *r, const char *topic, const char *payload, size_t len,
                               int qos, bool retain);

/* Publishes something that is not a record now if the publisher takes it, with MQTT 5
 * correlation data (corr_len bytes; NULL: none) and token (with GW_TOKEN_UNTRACKED set:
 * its DONE/FAILED event is the caller's): EDS_OK, EDS_ERR_BROKER (not connected, or
 * restoring) or the publisher's EDS_ERR_FULL; the caller keeps it for later then. */
int gw_relay_try_publish(gw_relay *r, const char *topic, const char *payload, size_t len, int qos,
                         const void *corr, size_t corr_len, uint64_t token);

/* Queues d's retained status (its online, since and peer now). Statuses are
 * never lost: they wait for the broker and for room at the publisher. */
void gw_relay_status(gw_relay *r, gw_device *d);

/* Gives d a turn at the publisher (it has WAITING records). */
void gw_relay_ready(gw_relay *r, gw_device *d);

/* Hands queued statuses and WAITING records to the publisher while it has
 * room, device by device in turns, each device's in ring order. */
void gw_relay_pump(gw_relay *r);

/* Settles the complete records at the head of d's ring: last_seq moves over
 * them (marked for the journal) and d waits for gw_relay_answer_next. */
void gw_relay_drain(gw_relay *r, gw_device *d);

/* Once the journal has what was settled (and while not held): answers the
 * next waiting device's settled records in order (ack, duplicate ack or
 * nack) and pops them; without a connection, drops what was never
 * published. Returns that device (for gw_session_progress), or NULL. */
gw_device *gw_relay_answer_next(gw_relay *r);

/* A publish result: the device whose record it completed (now settled), or
 * NULL when the token names no record in flight. */
gw_device *gw_relay_result(gw_relay *r, uint64_t token, bool ok);

/* The broker connection came up: every device that ever connected gets its
 * status again. */
void gw_relay_connected(gw_relay *r);

/* qos 2 start-up: raises last_seq of each device to its mark in the session
 * store (the broker has those records even if the journal had not caught
 * up), or, when the broker lost the session (confirmed false), warns that
 * records in flight may arrive twice. The caller journals, then forgets the
 * marks. */
void gw_relay_apply_marks(gw_relay *r, bool confirmed);

#endif
