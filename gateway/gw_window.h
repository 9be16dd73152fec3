/*
 * gw_window.h - the per-device window: the device table, each device's
 * record ring, and the publish tokens that name a record in it. Pure: no
 * I/O, no clock, no sockets.
 *
 * Owns: every gw_device (created on first use, kept until the table is
 * freed; at most max_devices), each device's ring of records between arrival
 * and ack, and the records' payloads (counted in pending_bytes). A device's
 * connection, held commands, schema and status fields are stored here but
 * owned and changed by the modules named next to them.
 *
 * Records of one device sit in its ring in arrival order; the ring grows on
 * demand up to the window and is freed when empty on a device without a
 * connection. A publish token is (device index << 32 | absolute ring
 * position), so a result for a record that was dropped since is recognised
 * and ignored.
 */
#ifndef GW_WINDOW_H
#define GW_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "eds_proto.h"
#include "eds_schema.h"
#include "gw_cmdq.h"
#include "gw_guard.h"
#include "gw_stats.h"

/* Tokens with this bit are not records (statuses, stats, rejected lines). */
#define GW_TOKEN_UNTRACKED (1ULL << 63)

enum gw_rec_kind { GW_REC_DATA, GW_REC_REJECT, GW_REC_DUP };
enum gw_rec_state { GW_REC_WAITING, GW_REC_INFLIGHT, GW_REC_DONE };

typedef struct gw_record {
    uint64_t seq;
    uint8_t kind, state;
    uint32_t len;
    char *payload; /* DATA: compact data object; REJECT: rejected-topic document; owned */
    char *reply;   /* REJECT: the nack line; owned */
    uint32_t reply_len;
    int64_t received_ms; /* wall clock at arrival (MQTT 5 user property received_at) */
} gw_record;

/* A device's records between arrival and ack, oldest first. */
typedef struct gw_ring {
    gw_record *slot;
    uint32_t cap, head, count;
    uint32_t unsent;   /* offset of the first WAITING record (== count: none) */
    uint32_t head_abs; /* absolute position of slot[head], for publish tokens */
    uint32_t settled;  /* relay: DONE records at the head that last_seq covers, waiting for
                          the journal before they are answered */
} gw_ring;

struct gw_conn;

typedef struct gw_device {
    char id[EDS_DEVICE_MAX + 1];
    uint32_t index;
    struct gw_device *hnext; /* hash chain */
    /* sequence space (session, relay) */
    char stream[EDS_STREAM_MAX + 1];
    uint64_t last_seq;      /* every seq <= this is handled (journaled) */
    uint64_t last_accepted; /* highest seq in the ring */
    uint64_t marked_seq;    /* qos 2: highest seq whose mark went to the session store */
    gw_ring ring;
    bool journaled;           /* in the state journal: its status is reset after a crash */
    bool jdirty;              /* last_seq changed in this batch: journal it at the end */
    struct gw_device *jnext;  /* list of jdirty devices */
    struct gw_conn *conn;     /* session: the connection authenticated as this device */
    const eds_schema *schema; /* session: borrowed from gw_schemas */
    gw_cmdq held;             /* downlink: commands waiting for a connection */
    gw_bucket rate;           /* guard */
    /* relay: turn in the publish queue, answers waiting for the journal, retained status */
    bool in_ready;
    struct gw_device *ready_next;
    bool in_answer;
    struct gw_device *answer_next;
    bool online;
    bool status_queued; /* its retained status waits for room at the publisher */
    struct gw_device *status_next;
    time_t since;
    char peer[64];
    gw_device_counters ctr; /* session and relay count; gw_metrics reads */
} gw_device;

typedef struct gw_window {
    gw_device **devices; /* by index */
    size_t n_devices, devices_cap, max_devices;
    gw_device **htab; /* by id */
    size_t hsize;
    uint32_t window;      /* records per device at most */
    size_t pending_bytes; /* payload and reply bytes of all records held */
    gw_device *jlist;     /* devices marked by gw_window_journal */
} gw_window;

/* Prepares an empty table for at most max_devices devices of window records
 * each. EDS_OK or EDS_ERR_NOMEM. */
int gw_window_init(gw_window *w, size_t max_devices, uint32_t window);

/* Frees every device, its records and its held commands. */
void gw_window_free(gw_window *w);

/* The device named id, or NULL. */
gw_device *gw_window_find(const gw_window *w, const char *id);

/* Finds or creates the device (stream "0", nothing handled); NULL when out
 * of memory or past max_devices. */
gw_device *gw_window_get(gw_window *w, const char *id);

/* Marks d for the journal (once per batch); gw_window_journal_pop hands the
 * marked devices out, each once. */
void gw_window_journal(gw_window *w, gw_device *d);
gw_device *gw_window_journal_pop(gw_window *w);

/* The record at offset off (< count) of d's ring. */
static inline gw_record *gw_ring_at(gw_device *d, uint32_t off)
{
    return &d->ring.slot[(d->ring.head + off) % d->ring.cap];
}

/* Makes room for one more record: EDS_OK, EDS_ERR_FULL at the window, or
 * EDS_ERR_NOMEM. */
int gw_ring_reserve(gw_window *w, gw_device *d);

/* Appends r (after gw_ring_reserve); the ring takes over its payload and
 * reply, and their bytes count in pending_bytes. */
void gw_ring_push(gw_window *w, gw_device *d, const gw_record *r);

/* Removes the record at the head, freeing its payload. */
void gw_ring_pop(gw_window *w, gw_device *d);

/* Drops the records at the tail that are not INFLIGHT (never reached the
 * publisher: the agent sends them again), recomputes last_accepted, and
 * frees the ring if it is empty. For a device without a connection. */
void gw_ring_trim(gw_window *w, gw_device *d);

/* The publish token of the record at offset off of d's ring. */
static inline uint64_t gw_token_make(const gw_device *d, uint32_t off)
{
    return ((uint64_t)d->index << 32) | (uint32_t)(d->ring.head_abs + off);
}

/* The device and ring offset a token names, if that record is still held:
 * EDS_OK, or EDS_ERR_NOTFOUND (untracked, unknown device, record gone). */
int gw_token_find(const gw_window *w, uint64_t token, gw_device **d, uint32_t *off);

#endif
