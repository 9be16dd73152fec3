#include "gw_window.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eds_bytes.h"
#include "eds_err.h"

#define RING_MIN 16

static int htab_grow(gw_window *w)
{
    size_t nsize = w->hsize ? w->hsize * 2 : 1024;
    gw_device **nt = calloc(nsize, sizeof(*nt));
    if (!nt)
        return EDS_ERR_NOMEM;
    for (size_t i = 0; i < w->n_devices; i++) {
        gw_device *d = w->devices[i];
        size_t b = eds_fnv1a(d->id, strlen(d->id)) & (nsize - 1);
        d->hnext = nt[b];
        nt[b] = d;
    }
    free(w->htab);
    w->htab = nt;
    w->hsize = nsize;
    return EDS_OK;
}

int gw_window_init(gw_window *w, size_t max_devices, uint32_t window)
{
    memset(w, 0, sizeof(*w));
    w->max_devices = max_devices;
    w->window = window;
    return htab_grow(w);
}

static void release(gw_window *w, gw_record *r)
{
    w->pending_bytes -= r->len + r->reply_len;
    free(r->payload);
    free(r->reply);
    r->payload = r->reply = NULL;
    r->len = r->reply_len = 0;
}

void gw_window_free(gw_window *w)
{
    size_t cmd_bytes = 0; /* the downlink's budget ends with it */
    for (size_t i = 0; i < w->n_devices; i++) {
        gw_device *d = w->devices[i];
        for (uint32_t k = 0; k < d->ring.count; k++)
            release(w, gw_ring_at(d, k));
        gw_cmdq_clear(&d->held, &cmd_bytes);
        free(d->ring.slot);
        free(d);
    }
    free(w->devices);
    free(w->htab);
    memset(w, 0, sizeof(*w));
}

gw_device *gw_window_find(const gw_window *w, const char *id)
{
    for (gw_device *d = w->htab[eds_fnv1a(id, strlen(id)) & (w->hsize - 1)]; d; d = d->hnext)
        if (strcmp(d->id, id) == 0)
            return d;
    return NULL;
}

gw_device *gw_window_get(gw_window *w, const char *id)
{
    gw_device *d = gw_window_find(w, id);
    if (d)
        return d;
    if (w->n_devices >= w->max_devices)
        return NULL;
    if (w->n_devices == w->devices_cap) {
        size_t ncap = w->devices_cap ? w->devices_cap * 2 : 256;
        gw_device **nd = realloc(w->devices, ncap * sizeof(*nd));
        if (!nd)
            return NULL;
        w->devices = nd;
        w->devices_cap = ncap;
    }
    if (w->n_devices * 2 >= w->hsize && htab_grow(w) != EDS_OK)
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    snprintf(d->id, sizeof(d->id), "%s", id);
    strcpy(d->stream, "0");
    d->index = (uint32_t)w->n_devices;
    w->devices[w->n_devices++] = d;
    size_t b = eds_fnv1a(id, strlen(id)) & (w->hsize - 1);
    d->hnext = w->htab[b];
    w->htab[b] = d;
    return d;
}

void gw_window_journal(gw_window *w, gw_device *d)
{
    d->journaled = true;
    if (!d->jdirty) {
        d->jdirty = true;
        d->jnext = w->jlist;
        w->jlist = d;
    }
}

gw_device *gw_window_journal_pop(gw_window *w)
{
    gw_device *d = w->jlist;
    if (d) {
        w->jlist = d->jnext;
        d->jdirty = false;
    }
    return d;
}

int gw_ring_reserve(gw_window *w, gw_device *d)
{
    gw_ring *r = &d->ring;
    if (r->count < r->cap)
        return EDS_OK;
    if (r->cap >= w->window)
        return EDS_ERR_FULL;
    uint32_t ncap = r->cap ? r->cap * 2 : RING_MIN;
    if (ncap > w->window)
        ncap = w->window;
    gw_record *nr = malloc(ncap * sizeof(*nr));
    if (!nr)
        return EDS_ERR_NOMEM;
    for (uint32_t i = 0; i < r->count; i++)
        nr[i] = *gw_ring_at(d, i);
    free(r->slot);
    r->slot = nr;
    r->cap = ncap;
    r->head = 0;
    return EDS_OK;
}

void gw_ring_push(gw_window *w, gw_device *d, const gw_record *r)
{
    w->pending_bytes += r->len + r->reply_len;
    *gw_ring_at(d, d->ring.count) = *r;
    d->ring.count++;
}

void gw_ring_pop(gw_window *w, gw_device *d)
{
    gw_ring *r = &d->ring;
    release(w, gw_ring_at(d, 0));
    r->head = (r->head + 1) % r->cap;
    r->head_abs++;
    r->count--;
    if (r->unsent)
        r->unsent--;
    if (r->settled)
        r->settled--;
}

void gw_ring_trim(gw_window *w, gw_device *d)
{
    gw_ring *r = &d->ring;
    while (r->count && gw_ring_at(d, r->count - 1)->state != GW_REC_INFLIGHT) {
        release(w, gw_ring_at(d, r->count - 1));
        r->count--;
    }
    if (r->unsent > r->count)
        r->unsent = r->count;
    if (r->settled > r->count)
        r->settled = r->count;
    d->last_accepted = d->last_seq;
    for (uint32_t i = 0; i < r->count; i++)
        if (gw_ring_at(d, i)->seq > d->last_accepted)
            d->last_accepted = gw_ring_at(d, i)->seq;
    if (r->count == 0) {
        free(r->slot);
        r->slot = NULL;
        r->cap = r->head = 0;
    }
}

int gw_token_find(const gw_window *w, uint64_t token, gw_device **d, uint32_t *off)
{
    if (token & GW_TOKEN_UNTRACKED)
        return EDS_ERR_NOTFOUND;
    uint32_t index = (uint32_t)(token >> 32);
    if (index >= w->n_devices)
        return EDS_ERR_NOTFOUND;
    gw_device *dev = w->devices[index];
    uint32_t o = (uint32_t)token - dev->ring.head_abs;
    if (o >= dev->ring.count)
        return EDS_ERR_NOTFOUND;
    *d = dev;
    *off = o;
    return EDS_OK;
}
