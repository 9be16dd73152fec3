/*
 * gw_cmdpark.h - commands parked for device ids the gateway has never seen
 * connect. Pure: no I/O.
 *
 * Any local MQTT client may publish to P/<anything>/cmd, so the ids here
 * are not trusted: they get no gw_device (the device table is for devices
 * that authenticated, and max_devices must never be used up by ghosts).
 * Each entry is one id with its queue; entries are kept in creation order
 * so the oldest ghost can be evicted when max_held_bytes is reached. An
 * entry's own bytes (GW_PARK_ENTRY_SIZE) count against the same budget as
 * its commands.
 */
#ifndef GW_CMDPARK_H
#define GW_CMDPARK_H

#include <stddef.h>

#include "eds_proto.h"
#include "gw_cmdq.h"

typedef struct gw_park_entry {
    char id[EDS_DEVICE_MAX + 1];
    gw_cmdq q; /* owned */
    struct gw_park_entry *hnext, *older, *newer;
} gw_park_entry;

#define GW_PARK_ENTRY_SIZE sizeof(gw_park_entry)

typedef struct gw_cmdpark {
    gw_park_entry **htab;
    size_t hsize; /* power of two */
    gw_park_entry *oldest, *newest;
    size_t n;
} gw_cmdpark;

/* An empty park with 2^bits hash buckets. EDS_OK or EDS_ERR_NOMEM. */
int gw_cmdpark_init(gw_cmdpark *p, unsigned bits);

/* Frees every entry and its commands (their bytes off *budget). */
void gw_cmdpark_free(gw_cmdpark *p, size_t *budget);

/* The entry for id, or NULL. */
gw_park_entry *gw_cmdpark_find(const gw_cmdpark *p, const char *id);

/* Finds or creates (as the newest) the entry for id, adding GW_PARK_ENTRY_SIZE
 * to *budget when created; NULL when out of memory. */
gw_park_entry *gw_cmdpark_get(gw_cmdpark *p, const char *id, size_t *budget);

/* Unlinks and frees e; its queue must be empty (moved or freed by the caller). */
void gw_cmdpark_remove(gw_cmdpark *p, gw_park_entry *e, size_t *budget);

#endif
