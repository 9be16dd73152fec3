/*
 * gw_pubq.h - the publisher's bookkeeping without threads, locks or Paho: the
 * table of outstanding publishes in call order, and the bounded queue of events
 * the loop drains (gw_publisher.h describes the events and their guarantees).
 *
 * Pure: no I/O; the clock is passed in (monotonic ms). gw_publisher.c holds its
 * lock around every call and does the signalling (eventfd, condition variables)
 * itself.
 *
 * Bounds: every accepted publish holds a slot until its DONE/FAILED event is
 * queued, and the event counts against max_inflight until popped, so
 * completions can never overflow the queue. MESSAGE events have max_messages
 * places and control events (CONNECTED, DISCONNECTED, RESTORED) max_control.
 *
 * A publish goes: begin (SUBMITTING: being handed to Paho) -> end (accepted:
 * PENDING; refused: gone, no event) -> report (DONE/FAILED queued). A report
 * may come before end (Paho called back inside MQTTAsync_send); end then only
 * releases the slot and says the publish counts as accepted.
 */
#ifndef GW_PUBQ_H
#define GW_PUBQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw_publisher.h"

#define GW_PUBQ_NIL UINT32_MAX

typedef struct gw_pubq_event {
    gw_pub_event_type type;
    uint64_t token;          /* DONE/FAILED */
    char *buf;               /* MESSAGE: "topic\0payload\0rt\0corr\0", owned by the event (rt: the
                                MQTT 5 response topic, corr: its correlation data; both may be empty) */
    size_t topic_len;        /* MESSAGE */
    size_t len;              /* MESSAGE: payload length */
    size_t rt_len, corr_len; /* MESSAGE */
    int qos;                 /* MESSAGE, RESTORED (see gw_pub_event) */
    bool retained;           /* MESSAGE */
    int64_t expiry_s;        /* MESSAGE: MQTT 5 message expiry interval left; -1: none */
} gw_pubq_event;

struct gw_pubq_slot;

/* Embedded in the publisher; the counters may be read, never written. */
typedef struct gw_pubq {
    struct gw_pubq_slot *slots;
    uint32_t free_head, pend_head, pend_tail;
    size_t max_inflight, max_messages, max_control;
    size_t limit;          /* outstanding publishes allowed now, <= max_inflight (the broker's
                              receive maximum at MQTT 5) */
    size_t inflight;       /* slots not free: accepted or being submitted, not yet reported */
    size_t undispatched;   /* DONE/FAILED queued, not yet popped */
    gw_pubq_event *events; /* ring */
    size_t ev_cap, ev_head, ev_count;
    size_t ev_messages, ev_control;
} gw_pubq;

/* Lowers (or restores) the outstanding publishes allowed to limit, within
 * 1..max_inflight. Those outstanding already stay; new ones wait below it. */
void gw_pubq_set_limit(gw_pubq *q, size_t limit);

/* MQTT 5: the broker's receive maximum from its CONNACK. Paho holds a publish past it in
 * its queue and sends it late (docs/performance.md, "Paho"), so the cap is ours: the
 * limit becomes receive_max - 2 (room for the SUBSCRIBE and the online status of a
 * connect), at least 1. Returns the limit. */
size_t gw_pubq_set_receive_maximum(gw_pubq *q, int receive_max);

/* EDS_OK or EDS_ERR_NOMEM (q is then empty; gw_pubq_free is harmless). max_inflight >= 1. */
int gw_pubq_init(gw_pubq *q, size_t max_inflight, size_t max_messages, size_t max_control);

/* Frees the tables and the buffers of events not popped. */
void gw_pubq_free(gw_pubq *q);

/* Takes a slot for a new publish of token, last in call order, and returns its index;
 * GW_PUBQ_NIL when max_inflight publishes are outstanding or their events unpopped. */
uint32_t gw_pubq_begin(gw_pubq *q, uint64_t token);

/* The hand-over of slot i ended at now_ms. accepted: it waits for its report from now_ms
 * on (or, reported already, is released). Not accepted: withdrawn, no event. Returns true
 * when the publish counts as accepted (an event for it is or will be queued). */
bool gw_pubq_end(gw_pubq *q, uint32_t i, bool accepted, int64_t now_ms);

/* Queues DONE (ok) or FAILED for slot i and takes it out of the call order; false (and
 * nothing queued) when slot i is not outstanding: reported before, or free. */
bool gw_pubq_report(gw_pubq *q, uint32_t i, bool ok);

/* True while slot i is outstanding: being submitted or accepted, not yet reported. */
bool gw_pubq_outstanding(const gw_pubq *q, uint32_t i);

/* The oldest outstanding slot, or GW_PUBQ_NIL. */
uint32_t gw_pubq_oldest(const gw_pubq *q);

/* How long (ms, at now_ms) the oldest outstanding publish has waited for its report since
 * it was handed out (its gw_pubq_end; 0 while it is being handed over); -1 when none is
 * outstanding. The deadline on outstanding publishes (broker_publish_timeout) is checked
 * against this. */
int64_t gw_pubq_oldest_age(const gw_pubq *q, int64_t now_ms);

/* The deadline on outstanding publishes, for a connection up since since_ms: the age of
 * the oldest outstanding publish counted from since_ms at the earliest (a publish resent
 * on a new connection gets the whole timeout again), when it is timeout_ms or more;
 * otherwise (nothing outstanding, younger, timeout_ms 0 = no deadline) -1. */
int64_t gw_pubq_overdue(const gw_pubq *q, int64_t now_ms, int64_t since_ms, int64_t timeout_ms);

/* Queues a control event; false when max_control are queued already. */
bool gw_pubq_push_control(gw_pubq *q, gw_pub_event_type type, int qos);

/* True when a MESSAGE event would fit. */
bool gw_pubq_message_room(const gw_pubq *q);

/* Queues a MESSAGE event (a copy of *msg, whose type is set here) that takes over
 * msg->buf; false (buf not taken) when full. */
bool gw_pubq_push_message(gw_pubq *q, const gw_pubq_event *msg);

/* Moves up to max of the oldest events to out (their buffers now the caller's) and
 * returns how many; the counters drop with them. */
size_t gw_pubq_pop(gw_pubq *q, gw_pubq_event *out, size_t max);

#endif
