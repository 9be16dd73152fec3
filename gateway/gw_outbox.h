/*
 * gw_outbox.h - command results on their way to the broker, from the moment a
 * command has its result until the broker confirmed every publish of it
 * (P/DEVICE/cmd/result, and the MQTT 5 response topic when the command had
 * one). Pure: no I/O; gw_downlink publishes, and keeps each result in the
 * command store (gw_cmdstore.h) meanwhile, so that a restart (kill -9
 * included) loses none.
 *
 * A FIFO with a count and a byte bound. The bound is soft: a push always
 * succeeds (results of commands already taken must not be lost), and
 * gw_outbox_full() tells the caller to stop making new results it can put
 * off (sending, expiring); past twice the bound a push is refused.
 *
 * Each result has a serial; its publishes carry tokens made of the serial and
 * the part (GW_OUT_MAIN, GW_OUT_RT), so that each DONE/FAILED event finds its
 * result. Owns every entry; gw_outbox_remove frees one.
 */
#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_OUT_MAIN 1u /* P/DEVICE/cmd/result */
#define GW_OUT_RT 2u   /* the MQTT 5 response topic */

/* What a result is made of; pointers are copied from. */
typedef struct gw_result_parts {
    const char *device;
    const char *payload;
    size_t len;
    const char *rt; /* MQTT 5 response topic, NUL-terminated; NULL: none */
    size_t rt_len;
    const void *corr; /* correlation data; NULL: none */
    size_t corr_len;
    uint64_t uid; /* in the command store; 0: memory only */
} gw_result_parts;

typedef struct gw_outmsg {
    struct gw_outmsg *next, *prev;
    uint64_t uid;
    uint64_t serial;
    uint8_t sent, done; /* GW_OUT_* bits: handed to the publisher, confirmed */
    size_t len, rt_len, corr_len;
    char *payload, *rt, *corr; /* in data, after the device */
    char device[];             /* NUL-terminated, then payload, rt (NUL-terminated), corr */
} gw_outmsg;

typedef struct gw_outbox {
    gw_outmsg *head, *tail;
    size_t n, bytes, max_n, max_bytes;
    uint64_t next_serial;
} gw_outbox;

/* first_serial: the serial of the first entry (distinct per process, so that a late
 * event of an earlier run names none). */
void gw_outbox_init(gw_outbox *o, size_t max_n, size_t max_bytes, uint64_t first_serial);

/* Copies the result in at the tail; NULL when out of memory or over twice a bound. */
gw_outmsg *gw_outbox_push(gw_outbox *o, const gw_result_parts *p);

/* True once the count or byte bound is reached. */
static inline bool gw_outbox_full(const gw_outbox *o)
{
    return o->n >= o->max_n || o->bytes >= o->max_bytes;
}

/* The parts m must be published to (GW_OUT_* bits). */
static inline uint8_t gw_outmsg_parts(const gw_outmsg *m)
{
    return (uint8_t)(GW_OUT_MAIN | (m->rt_len ? GW_OUT_RT : 0));
}

/* The publish token of m's part (one GW_OUT_* bit) with tag (bits the caller reserves
 * for results, above bit 56), and back: the entry and part it names, or NULL. */
uint64_t gw_outbox_token(const gw_outmsg *m, unsigned part, uint64_t tag);
gw_outmsg *gw_outbox_find(const gw_outbox *o, uint64_t token, uint64_t tag, unsigned *part);

/* Unlinks and frees m. */
void gw_outbox_remove(gw_outbox *o, gw_outmsg *m);

/* Frees everything. */
void gw_outbox_free(gw_outbox *o);

#endif
