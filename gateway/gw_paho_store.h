/*
 * gw_paho_store.h - Paho's persistence interface (MQTTClient_persistence) over a
 * gw_pubstore, for the publisher's exactly-once mode, and over a gw_memstore for
 * each clean-mode client (gw_paho_mem below; see conn_ctx in gw_publisher.c). Part
 * of the publisher: only gw_publisher.c uses it (and only the publisher's files
 * include Paho).
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
#include "gw_memstore.h"
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

/* A persistence of its own, in memory only, for one clean-mode client. Paho 1.3.12's
 * MQTTAsync_destroy leaks the topic and payload of every PUBLISH still queued
 * (MQTTAsync_NULLPublishCommands clears those pointers as if a session owned them),
 * i.e. whatever the send thread had not written when the connection broke. With a
 * persistence, MQTTAsync_send moves each command into the store and frees Paho's
 * copies at once (QoS 0 too with persistQoS0), so destroy has nothing to leak. The
 * table is a gw_memstore (no allocation per record on our side); what it costs in
 * Paho is in docs/performance.md. */
typedef struct gw_paho_mem {
    MQTTClient_persistence paho; /* give &paho to MQTTAsync_createWithOptions */
    pthread_mutex_t lock;        /* Paho calls from the loop and its send/receive threads */
    gw_memstore tab;
    bool open;
} gw_paho_mem;

/* hint: entries expected at once (publishes in flight). EDS_OK, or EDS_ERR_NOMEM with
 * err. */
int gw_paho_mem_open(gw_paho_mem *m, size_t hint, eds_error *err);

/* After MQTTAsync_destroy of the client using it; accepts one never opened. */
void gw_paho_mem_close(gw_paho_mem *m);

/* gw_pubstore_discard() for a publisher in clean mode, saying what it did in the log:
 * a store left by a run with qos 2 (the broker drops that session at the clean connect,
 * and resending it in some later qos 2 run would duplicate old records). */
void gw_paho_store_discard_logged(const char *dir);

#endif
