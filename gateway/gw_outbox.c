#include "gw_outbox.h"

#include <stdlib.h>
#include <string.h>

void gw_outbox_init(gw_outbox *o, size_t max_n, size_t max_bytes)
{
    memset(o, 0, sizeof(*o));
    o->max_n = max_n;
    o->max_bytes = max_bytes;
}

static size_t size_of(size_t topic_len, size_t len, size_t corr_len)
{
    return sizeof(gw_outmsg) + topic_len + 1 + len + corr_len;
}

bool gw_outbox_push(gw_outbox *o, const char *topic, const char *payload, size_t len,
                    const void *corr, size_t corr_len)
{
    size_t tlen = strlen(topic);
    size_t size = size_of(tlen, len, corr_len);
    if (o->n >= o->max_n || o->bytes + size > o->max_bytes)
        return false;
    gw_outmsg *m = malloc(size);
    if (!m)
        return false;
    m->next = NULL;
    m->len = len;
    m->corr_len = corr_len;
    memcpy(m->topic, topic, tlen + 1);
    m->payload = m->topic + tlen + 1;
    memcpy(m->payload, payload, len);
    m->corr = m->payload + len;
    if (corr_len)
        memcpy(m->corr, corr, corr_len);
    if (o->tail)
        o->tail->next = m;
    else
        o->head = m;
    o->tail = m;
    o->n++;
    o->bytes += size;
    return true;
}

void gw_outbox_pop(gw_outbox *o)
{
    gw_outmsg *m = o->head;
    if (!m)
        return;
    o->head = m->next;
    if (!o->head)
        o->tail = NULL;
    o->n--;
    o->bytes -= size_of(strlen(m->topic), m->len, m->corr_len);
    free(m);
}

void gw_outbox_free(gw_outbox *o)
{
    while (o->head)
        gw_outbox_pop(o);
}
