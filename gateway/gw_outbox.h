/*
 * gw_outbox.h - publishes that wait for the broker: command results, which
 * must not be lost because the broker is away for a moment (a gateway
 * restarting welcomes agents, and takes their acks, before it is connected).
 * Pure: no I/O. A FIFO bounded in count and bytes; past either a new entry is
 * refused (the caller counts and logs it).
 */
#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>

typedef struct gw_outmsg {
    struct gw_outmsg *next;
    size_t len, corr_len;
    char *payload; /* in data, after the topic */
    char *corr;    /* in data, after the payload; corr_len bytes */
    char topic[];  /* NUL-terminated, then payload, then corr */
} gw_outmsg;

typedef struct gw_outbox {
    gw_outmsg *head, *tail;
    size_t n, bytes, max_n, max_bytes;
} gw_outbox;

void gw_outbox_init(gw_outbox *o, size_t max_n, size_t max_bytes);

/* Copies the message in at the tail; false when over a bound or out of memory. */
bool gw_outbox_push(gw_outbox *o, const char *topic, const char *payload, size_t len,
                    const void *corr, size_t corr_len);

/* The oldest, or NULL; gw_outbox_pop frees it. */
static inline const gw_outmsg *gw_outbox_head(const gw_outbox *o)
{
    return o->head;
}
void gw_outbox_pop(gw_outbox *o);

/* Frees everything. */
void gw_outbox_free(gw_outbox *o);

#endif
