/*
 * gw_paho_store.h - Paho's persistence interface (MQTTClient_persistence) over a
 * gw_pubstore, for the publisher's exactly-once mode (and, on a store in memory,
 * for each clean-mode client: see conn_ctx in gw_publisher.c). Part of the
 * publisher: only gw_publisher.c uses it (and only the two of them include Paho).
 *
 * Paho stores a publish under its own key ("c-N", the queued command) inside
 * MQTTAsync_send, on the calling thread. The mark of that publish (gw_mark.h) is
 * handed over explicitly just before: gw_paho_store_expect_mark() names the
 * thread and the mark, and that thread's next put of a "c-" key writes it into
 * the same log record (gw_pubstore_put). Other threads' puts never take it.
 */
#ifndef GW_PAHO_STORE_H
#define GW_PAHO_STORE_H

#include <MQTTAsync.h>

#include <pthread.h>
#include <stdbool.h>

#include "gw_mark.h"
#include "gw_pubstore.h"

typedef struct gw_paho_store {
    MQTTClient_persistence paho; /* give &paho to MQTTAsync_createWithOptions */
    gw_pubstore *store;          /* not owned */
    pthread_mutex_t lock;        /* the three below */
    bool mark_set;
    pthread_t mark_thread;
    gw_mark mark;
} gw_paho_store;

/* Fills ps for store (which must outlive every Paho client that uses ps). */
void gw_paho_store_init(gw_paho_store *ps, gw_pubstore *store);

/* Releases what init made (not the store). */
void gw_paho_store_free(gw_paho_store *ps);

/* The calling thread's next put of a queued command carries mark (copied); NULL
 * withdraws a mark no put took. */
void gw_paho_store_expect_mark(gw_paho_store *ps, const gw_mark *mark);

#endif
