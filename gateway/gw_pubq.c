/*
 * gw_pubq.c - slots and events of the publisher. See gw_pubq.h.
 *
 * Slots live in one array of max_inflight; the outstanding ones form a doubly
 * linked list in call order, the free ones a singly linked free list. Events are
 * a ring sized for every bound at once, so a push that passed its check never
 * overwrites anything.
 */
#include "gw_pubq.h"

#include <stdlib.h>
#include <string.h>

#include "eds_err.h"

enum slot_state {
    SLOT_FREE,
    SLOT_SUBMITTING, /* being handed to Paho */
    SLOT_PENDING,    /* handed, waiting for its report */
    SLOT_REPORTED,   /* reported while still SUBMITTING; end() frees it */
};

struct gw_pubq_slot {
    uint64_t token;
    int64_t handed_ms;   /* hand-over ended (gw_pubq_end's now_ms): waiting since */
    uint32_t prev, next; /* call order (outstanding) or free list (next) */
    enum slot_state state;
};

int gw_pubq_init(gw_pubq *q, size_t max_inflight, size_t max_messages, size_t max_control)
{
    memset(q, 0, sizeof(*q));
    if (max_inflight < 1 || max_inflight >= GW_PUBQ_NIL)
        return EDS_ERR_INVAL;
    q->max_inflight = q->limit = max_inflight;
    q->max_messages = max_messages;
    q->max_control = max_control;
    q->ev_cap = max_inflight + max_messages + max_control;
    q->slots = calloc(max_inflight, sizeof(*q->slots));
    q->events = calloc(q->ev_cap, sizeof(*q->events));
    if (!q->slots || !q->events) {
        gw_pubq_free(q);
        return EDS_ERR_NOMEM;
    }
    q->free_head = GW_PUBQ_NIL;
    for (size_t i = max_inflight; i-- > 0;) {
        q->slots[i].next = q->free_head;
        q->free_head = (uint32_t)i;
    }
    q->pend_head = q->pend_tail = GW_PUBQ_NIL;
    return EDS_OK;
}

void gw_pubq_free(gw_pubq *q)
{
    for (size_t i = 0; q->events && i < q->ev_count; i++)
        free(q->events[(q->ev_head + i) % q->ev_cap].buf);
    free(q->events);
    free(q->slots);
    memset(q, 0, sizeof(*q));
}

static void push(gw_pubq *q, const gw_pubq_event *ev)
{
    q->events[(q->ev_head + q->ev_count) % q->ev_cap] = *ev;
    q->ev_count++;
}

static void unlink_slot(gw_pubq *q, struct gw_pubq_slot *s)
{
    if (s->prev != GW_PUBQ_NIL)
        q->slots[s->prev].next = s->next;
    else
        q->pend_head = s->next;
    if (s->next != GW_PUBQ_NIL)
        q->slots[s->next].prev = s->prev;
    else
        q->pend_tail = s->prev;
}

static void release(gw_pubq *q, uint32_t i)
{
    q->slots[i].state = SLOT_FREE;
    q->slots[i].next = q->free_head;
    q->free_head = i;
}

void gw_pubq_set_limit(gw_pubq *q, size_t limit)
{
    q->limit = limit < 1 ? 1 : limit > q->max_inflight ? q->max_inflight : limit;
}

size_t gw_pubq_set_receive_maximum(gw_pubq *q, int receive_max)
{
    gw_pubq_set_limit(q, receive_max > 3 ? (size_t)receive_max - 2 : 1);
    return q->limit;
}

uint32_t gw_pubq_begin(gw_pubq *q, uint64_t token)
{
    if (q->inflight + q->undispatched >= q->limit || q->free_head == GW_PUBQ_NIL)
        return GW_PUBQ_NIL;
    uint32_t i = q->free_head;
    struct gw_pubq_slot *s = &q->slots[i];
    q->free_head = s->next;
    s->token = token;
    s->state = SLOT_SUBMITTING;
    s->next = GW_PUBQ_NIL;
    s->prev = q->pend_tail;
    if (q->pend_tail != GW_PUBQ_NIL)
        q->slots[q->pend_tail].next = i;
    else
        q->pend_head = i;
    q->pend_tail = i;
    q->inflight++;
    return i;
}

bool gw_pubq_end(gw_pubq *q, uint32_t i, bool accepted, int64_t now_ms)
{
    struct gw_pubq_slot *s = &q->slots[i];
    if (s->state == SLOT_REPORTED) {
        release(q, i);
        return true;
    }
    if (s->state != SLOT_SUBMITTING)
        return false;
    if (accepted) {
        s->state = SLOT_PENDING;
        s->handed_ms = now_ms;
        return true;
    }
    unlink_slot(q, s);
    release(q, i);
    q->inflight--;
    return false;
}

bool gw_pubq_report(gw_pubq *q, uint32_t i, bool ok)
{
    struct gw_pubq_slot *s = &q->slots[i];
    if (s->state != SLOT_PENDING && s->state != SLOT_SUBMITTING)
        return false;
    gw_pubq_event ev = {.type = ok ? GW_PUB_DONE : GW_PUB_FAILED, .token = s->token};
    push(q, &ev);
    unlink_slot(q, s);
    q->inflight--;
    q->undispatched++;
    if (s->state == SLOT_SUBMITTING)
        s->state = SLOT_REPORTED;
    else
        release(q, i);
    return true;
}

bool gw_pubq_outstanding(const gw_pubq *q, uint32_t i)
{
    return i < q->max_inflight &&
           (q->slots[i].state == SLOT_PENDING || q->slots[i].state == SLOT_SUBMITTING);
}

uint32_t gw_pubq_oldest(const gw_pubq *q)
{
    return q->pend_head;
}

int64_t gw_pubq_oldest_age(const gw_pubq *q, int64_t now_ms)
{
    if (q->pend_head == GW_PUBQ_NIL)
        return -1;
    const struct gw_pubq_slot *s = &q->slots[q->pend_head];
    if (s->state != SLOT_PENDING)
        return 0; /* being handed over right now */
    int64_t age = now_ms - s->handed_ms;
    return age > 0 ? age : 0; /* a clock read before the slot was taken */
}

int64_t gw_pubq_overdue(const gw_pubq *q, int64_t now_ms, int64_t since_ms, int64_t timeout_ms)
{
    int64_t age = gw_pubq_oldest_age(q, now_ms);
    if (age > now_ms - since_ms)
        age = now_ms - since_ms;
    return timeout_ms > 0 && age >= timeout_ms ? age : -1;
}

bool gw_pubq_push_control(gw_pubq *q, gw_pub_event_type type, int qos)
{
    if (q->ev_control >= q->max_control)
        return false;
    gw_pubq_event ev = {.type = type, .qos = qos};
    push(q, &ev);
    q->ev_control++;
    return true;
}

bool gw_pubq_message_room(const gw_pubq *q)
{
    return q->ev_messages < q->max_messages;
}

bool gw_pubq_push_message(gw_pubq *q, const gw_pubq_event *msg)
{
    if (!gw_pubq_message_room(q))
        return false;
    gw_pubq_event ev = *msg;
    ev.type = GW_PUB_MESSAGE;
    push(q, &ev);
    q->ev_messages++;
    return true;
}

size_t gw_pubq_pop(gw_pubq *q, gw_pubq_event *out, size_t max)
{
    size_t k = q->ev_count < max ? q->ev_count : max;
    for (size_t i = 0; i < k; i++) {
        out[i] = q->events[q->ev_head];
        q->ev_head = (q->ev_head + 1) % q->ev_cap;
        switch (out[i].type) {
        case GW_PUB_MESSAGE:
            q->ev_messages--;
            break;
        case GW_PUB_CONNECTED:
        case GW_PUB_DISCONNECTED:
        case GW_PUB_RESTORED:
            q->ev_control--;
            break;
        case GW_PUB_DONE:
        case GW_PUB_FAILED:
            q->undispatched--;
            break;
        }
    }
    q->ev_count -= k;
    return k;
}
