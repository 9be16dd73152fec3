/*
 * gw_memstore.h - a key -> bytes table in memory, for the persistence of a
 * clean-mode Paho client (gw_paho_store.h says why such a client has one).
 * Paho puts every publish it queues under a short key ("c-N", "s-ID"), reads
 * the queued ones back once to send them and removes each when its flow ends:
 * a few live entries, put and removed at the rate of records. So entries and
 * their buffers are reused, not freed: after warm-up a put, get or remove
 * allocates nothing here (get's copy comes from the caller's allocator, which
 * Paho frees). Nothing is written to disk; nothing survives the table.
 *
 * Pure: no locking (the caller serialises), no I/O. Errors: EDS_OK or a
 * negative EDS_ERR_* (eds_err.h).
 */
#ifndef GW_MEMSTORE_H
#define GW_MEMSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"

/* Longest key (Paho's are short: "sc5-65535"). */
#define GW_MEMSTORE_KEY_MAX 31
/* A buffer larger than this is freed when its entry is removed (kept otherwise). */
#define GW_MEMSTORE_KEEP_BYTES 4096

typedef struct gw_memstore_entry {
    char key[GW_MEMSTORE_KEY_MAX + 1]; /* "" = free */
    uint32_t next;                     /* bucket chain, or the free list */
    char *buf;
    size_t len, cap;
} gw_memstore_entry;

typedef struct gw_memstore {
    gw_memstore_entry *e;
    uint32_t n_entries, n_buckets; /* n_buckets: a power of two */
    uint32_t *bucket;              /* first entry of each chain */
    uint32_t free_head;            /* free entries, linked by next */
    size_t count;                  /* live entries */
} gw_memstore;

/* An empty table sized for about hint live entries (it grows past them).
 * EDS_OK or EDS_ERR_NOMEM. */
int gw_memstore_init(gw_memstore *m, size_t hint);

/* Frees everything; m may be zeroed or already freed. */
void gw_memstore_free(gw_memstore *m);

/* Stores the concatenation of n buffers under key, replacing an entry with that key.
 * EDS_OK; EDS_ERR_INVAL (key empty or longer than GW_MEMSTORE_KEY_MAX, n or a length
 * negative); EDS_ERR_NOMEM (the table is unchanged). */
int gw_memstore_put(gw_memstore *m, const char *key, int n, char *const bufs[], const int lens[]);

/* A copy of key's bytes in *buf (from alloc, len + 1 bytes, NUL after them; the caller
 * frees it) and their length in *len. EDS_OK, EDS_ERR_NOTFOUND, EDS_ERR_NOMEM. */
int gw_memstore_get(const gw_memstore *m, const char *key, void *(*alloc)(size_t), char **buf,
                    int *len);

/* EDS_OK, or EDS_ERR_NOTFOUND. */
int gw_memstore_remove(gw_memstore *m, const char *key);

bool gw_memstore_contains(const gw_memstore *m, const char *key);

/* The live keys, each and the array from alloc (the caller frees them with the matching
 * free); *keys NULL when there are none. EDS_OK or EDS_ERR_NOMEM (nothing to free). */
int gw_memstore_keys(const gw_memstore *m, void *(*alloc)(size_t), void (*release)(void *),
                     char ***keys, int *n);

/* Removes every entry. */
void gw_memstore_clear(gw_memstore *m);

static inline size_t gw_memstore_count(const gw_memstore *m)
{
    return m->count;
}

#endif
