#include "agent_queue.h"

#include "eds_err.h"

#include <stdlib.h>
#include <string.h>

int agq_init(agent_queue *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    if (cap == 0)
        cap = 1;
    q->ring = calloc(cap, sizeof(*q->ring));
    if (!q->ring)
        return EDS_ERR_NOMEM;
    q->cap = cap;
    return EDS_OK;
}

void agq_free(agent_queue *q)
{
    while (agq_pop(q))
        ;
    free(q->ring);
    memset(q, 0, sizeof(*q));
}

const agq_rec *agq_at(const agent_queue *q, size_t i)
{
    return &q->ring[(q->head + i) % q->cap];
}

const agq_rec *agq_head(const agent_queue *q)
{
    return q->count ? agq_at(q, 0) : NULL;
}

uint64_t agq_tail_seq(const agent_queue *q)
{
    return q->count ? agq_at(q, q->count - 1)->seq : 0;
}

int agq_push(agent_queue *q, uint64_t seq, const char *data, size_t len)
{
    if (q->count >= q->cap)
        return EDS_ERR_FULL;
    if (q->count && seq <= agq_tail_seq(q))
        return EDS_ERR_INVAL;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return EDS_ERR_NOMEM;
    memcpy(copy, data, len);
    agq_rec *r = &q->ring[(q->head + q->count) % q->cap];
    r->seq = seq;
    r->data = copy;
    r->len = len;
    q->count++;
    q->bytes += len;
    return EDS_OK;
}

const agq_rec *agq_next_unsent(const agent_queue *q)
{
    return q->sent < q->count ? agq_at(q, q->sent) : NULL;
}

void agq_mark_sent(agent_queue *q)
{
    if (q->sent < q->count)
        q->sent++;
}

void agq_rewind(agent_queue *q)
{
    q->sent = 0;
}

size_t agq_pop(agent_queue *q)
{
    if (q->count == 0)
        return 0;
    agq_rec *r = &q->ring[q->head];
    q->bytes -= r->len;
    free(r->data);
    memset(r, 0, sizeof(*r));
    q->head = (q->head + 1) % q->cap;
    q->count--;
    if (q->sent > 0)
        q->sent--;
    return 1;
}

size_t agq_drop_upto(agent_queue *q, uint64_t upto)
{
    size_t n = 0;
    while (q->count && agq_at(q, 0)->seq <= upto)
        n += agq_pop(q);
    return n;
}

void agq_renumber(agent_queue *q, size_t i, uint64_t first)
{
    for (; i < q->count; i++)
        q->ring[(q->head + i) % q->cap].seq = first++;
}
