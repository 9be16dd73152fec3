#include "gw_outbox.h"

#include <stdlib.h>
#include <string.h>

#define SERIAL_MASK ((1ULL << 55) - 1) /* tokens: tag bits, serial, part bit */

void gw_outbox_init(gw_outbox *o, size_t max_n, size_t max_bytes, uint64_t first_serial)
{
    memset(o, 0, sizeof(*o));
    o->max_n = max_n;
    o->max_bytes = max_bytes;
    o->next_serial = first_serial & SERIAL_MASK;
}

static size_t size_of(size_t dev_len, size_t len, size_t rt_len, size_t corr_len)
{
    return sizeof(gw_outmsg) + dev_len + 1 + len + rt_len + 1 + corr_len;
}

gw_outmsg *gw_outbox_push(gw_outbox *o, const gw_result_parts *p)
{
    size_t dlen = strlen(p->device);
    size_t size = size_of(dlen, p->len, p->rt_len, p->corr_len);
    if (o->n >= 2 * o->max_n || o->bytes + size > 2 * o->max_bytes)
        return NULL;
    gw_outmsg *m = malloc(size);
    if (!m)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->uid = p->uid;
    m->serial = o->next_serial;
    o->next_serial = (o->next_serial + 1) & SERIAL_MASK;
    m->len = p->len;
    m->rt_len = p->rt_len;
    m->corr_len = p->corr_len;
    memcpy(m->device, p->device, dlen + 1);
    m->payload = m->device + dlen + 1;
    memcpy(m->payload, p->payload, p->len);
    m->rt = m->payload + p->len;
    if (p->rt_len)
        memcpy(m->rt, p->rt, p->rt_len);
    m->rt[p->rt_len] = '\0';
    m->corr = m->rt + p->rt_len + 1;
    if (p->corr_len)
        memcpy(m->corr, p->corr, p->corr_len);
    m->prev = o->tail;
    if (o->tail)
        o->tail->next = m;
    else
        o->head = m;
    o->tail = m;
    o->n++;
    o->bytes += size;
    return m;
}

uint64_t gw_outbox_token(const gw_outmsg *m, unsigned part, uint64_t tag)
{
    return tag | m->serial << 1 | (part == GW_OUT_RT);
}

gw_outmsg *gw_outbox_find(const gw_outbox *o, uint64_t token, uint64_t tag, unsigned *part)
{
    if ((token & ~(SERIAL_MASK << 1 | 1)) != tag)
        return NULL;
    uint64_t serial = (token >> 1) & SERIAL_MASK;
    /* Confirmations come in publish order: the entry is near the head. */
    for (gw_outmsg *m = o->head; m; m = m->next)
        if (m->serial == serial) {
            *part = token & 1 ? GW_OUT_RT : GW_OUT_MAIN;
            return m;
        }
    return NULL;
}

void gw_outbox_remove(gw_outbox *o, gw_outmsg *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        o->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        o->tail = m->prev;
    o->n--;
    o->bytes -= size_of(strlen(m->device), m->len, m->rt_len, m->corr_len);
    free(m);
}

void gw_outbox_free(gw_outbox *o)
{
    while (o->head)
        gw_outbox_remove(o, o->head);
}
