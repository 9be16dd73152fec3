/*
 * gw_memstore.c - Paho's keys and bytes in a chained hash table over one
 * array of entries that are reused. See gw_memstore.h.
 */
#include "gw_memstore.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

static uint32_t hash(const char *k)
{
    uint32_t h = 2166136261u; /* FNV-1a: keys are a few bytes */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 16777619u;
    return h;
}

/* Makes entries [from, to) free, in order. */
static void link_free(gw_memstore *m, uint32_t from, uint32_t to)
{
    for (uint32_t i = to; i > from; i--) {
        m->e[i - 1].key[0] = '\0';
        m->e[i - 1].next = m->free_head;
        m->free_head = i - 1;
    }
}

int gw_memstore_init(gw_memstore *m, size_t hint)
{
    memset(m, 0, sizeof(*m));
    uint32_t n = hint < 16 ? 16 : hint > (1u << 20) ? (1u << 20) : (uint32_t)hint;
    uint32_t nb = 16;
    while (nb < n)
        nb <<= 1;
    m->e = calloc(n, sizeof(*m->e));
    m->bucket = malloc(nb * sizeof(*m->bucket));
    if (!m->e || !m->bucket) {
        gw_memstore_free(m);
        return EDS_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < nb; i++)
        m->bucket[i] = NIL;
    m->n_entries = n;
    m->n_buckets = nb;
    m->free_head = NIL;
    link_free(m, 0, n);
    return EDS_OK;
}

void gw_memstore_free(gw_memstore *m)
{
    for (uint32_t i = 0; m->e && i < m->n_entries; i++)
        free(m->e[i].buf);
    free(m->e);
    free(m->bucket);
    memset(m, 0, sizeof(*m));
}

/* The index of key's entry, or NIL; *link: where that index is stored (for unlinking). */
static uint32_t find(const gw_memstore *m, const char *key, uint32_t **link)
{
    uint32_t *l = &m->bucket[hash(key) & (m->n_buckets - 1)];
    while (*l != NIL && strcmp(m->e[*l].key, key) != 0)
        l = &m->e[*l].next;
    if (link)
        *link = l;
    return *l;
}

/* Doubles the entries (the buckets stay: chains get longer only past twice the hint). */
static int grow(gw_memstore *m)
{
    if (m->n_entries >= (1u << 24))
        return EDS_ERR_NOMEM;
    uint32_t n = m->n_entries * 2;
    gw_memstore_entry *e = realloc(m->e, n * sizeof(*e));
    if (!e)
        return EDS_ERR_NOMEM;
    memset(e + m->n_entries, 0, (n - m->n_entries) * sizeof(*e));
    m->e = e;
    uint32_t old = m->n_entries;
    m->n_entries = n;
    link_free(m, old, n);
    return EDS_OK;
}

int gw_memstore_put(gw_memstore *m, const char *key, int n, char *const bufs[], const int lens[])
{
    size_t klen = key ? strlen(key) : 0;
    if (klen == 0 || klen > GW_MEMSTORE_KEY_MAX || n < 0)
        return EDS_ERR_INVAL;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 0)
            return EDS_ERR_INVAL;
        total += (size_t)lens[i];
    }
    uint32_t i = find(m, key, NULL);
    bool fresh = i == NIL;
    if (fresh) {
        if (m->free_head == NIL && grow(m) != EDS_OK)
            return EDS_ERR_NOMEM;
        i = m->free_head;
    }
    gw_memstore_entry *e = &m->e[i];
    if (e->cap < total || !e->buf) {
        char *b = realloc(e->buf, total ? total : 1);
        if (!b)
            return EDS_ERR_NOMEM;
        e->buf = b;
        e->cap = total ? total : 1;
    }
    size_t off = 0;
    for (int k = 0; k < n; k++) {
        if (lens[k])
            memcpy(e->buf + off, bufs[k], (size_t)lens[k]);
        off += (size_t)lens[k];
    }
    e->len = total;
    if (fresh) {
        m->free_head = e->next;
        memcpy(e->key, key, klen + 1);
        uint32_t *head = &m->bucket[hash(key) & (m->n_buckets - 1)];
        e->next = *head;
        *head = i;
        m->count++;
    }
    return EDS_OK;
}

int gw_memstore_get(const gw_memstore *m, const char *key, void *(*alloc)(size_t), char **buf,
                    int *len)
{
    *buf = NULL;
    *len = 0;
    uint32_t i = key && m->bucket ? find(m, key, NULL) : NIL;
    if (i == NIL)
        return EDS_ERR_NOTFOUND;
    const gw_memstore_entry *e = &m->e[i];
    if (e->len > (size_t)INT32_MAX)
        return EDS_ERR_NOMEM;
    char *b = alloc(e->len + 1);
    if (!b)
        return EDS_ERR_NOMEM;
    memcpy(b, e->buf, e->len);
    b[e->len] = '\0';
    *buf = b;
    *len = (int)e->len;
    return EDS_OK;
}

static void release_entry(gw_memstore *m, uint32_t *link)
{
    uint32_t i = *link;
    gw_memstore_entry *e = &m->e[i];
    *link = e->next;
    if (e->cap > GW_MEMSTORE_KEEP_BYTES) { /* a rare large record: do not keep it */
        free(e->buf);
        e->buf = NULL;
        e->cap = 0;
    }
    e->key[0] = '\0';
    e->len = 0;
    e->next = m->free_head;
    m->free_head = i;
    m->count--;
}

int gw_memstore_remove(gw_memstore *m, const char *key)
{
    uint32_t *link;
    if (!key || !m->bucket || find(m, key, &link) == NIL)
        return EDS_ERR_NOTFOUND;
    release_entry(m, link);
    return EDS_OK;
}

bool gw_memstore_contains(const gw_memstore *m, const char *key)
{
    return key && m->bucket && find(m, key, NULL) != NIL;
}

int gw_memstore_keys(const gw_memstore *m, void *(*alloc)(size_t), void (*release)(void *),
                     char ***keys, int *n)
{
    *keys = NULL;
    *n = 0;
    if (m->count == 0)
        return EDS_OK;
    char **k = alloc(m->count * sizeof(*k));
    if (!k)
        return EDS_ERR_NOMEM;
    int made = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        if (!m->e[i].key[0])
            continue;
        size_t len = strlen(m->e[i].key) + 1;
        if (!(k[made] = alloc(len))) {
            while (made > 0)
                release(k[--made]);
            release(k);
            return EDS_ERR_NOMEM;
        }
        memcpy(k[made++], m->e[i].key, len);
    }
    *keys = k;
    *n = made;
    return EDS_OK;
}

void gw_memstore_clear(gw_memstore *m)
{
    for (uint32_t b = 0; m->bucket && b < m->n_buckets; b++)
        while (m->bucket[b] != NIL)
            release_entry(m, &m->bucket[b]);
}
