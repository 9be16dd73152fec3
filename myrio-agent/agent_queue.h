/*
 * agent_queue.h - the agent's bounded in-memory record queue.
 *
 * A ring of records in seq order: the oldest (head) is the next one the
 * gateway must answer. A send cursor separates records already sent on the
 * current connection from those still to send; a reconnect rewinds it.
 * The queue owns copies of the record payloads.
 */
#ifndef AGENT_QUEUE_H
#define AGENT_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct agq_rec {
    uint64_t seq;
    char *data; /* compact JSON object, not NUL-terminated; owned */
    size_t len;
} agq_rec;

typedef struct agent_queue {
    agq_rec *ring;
    size_t cap;   /* records */
    size_t head;  /* index of the oldest record */
    size_t count; /* records held */
    size_t sent;  /* records from the head already sent on this connection */
    size_t bytes; /* payload bytes held */
} agent_queue;

/* Allocates room for cap records (cap >= 1). EDS_OK or EDS_ERR_NOMEM. */
int agq_init(agent_queue *q, size_t cap);
void agq_free(agent_queue *q);

static inline int agq_full(const agent_queue *q)
{
    return q->count >= q->cap;
}

/* Copies the record in at the tail. seq must be larger than the tail's.
 * EDS_OK, EDS_ERR_FULL, EDS_ERR_INVAL (seq order) or EDS_ERR_NOMEM. */
int agq_push(agent_queue *q, uint64_t seq, const char *data, size_t len);

/* The i-th record from the head (i < count). */
const agq_rec *agq_at(const agent_queue *q, size_t i);

/* The oldest record, or NULL. */
const agq_rec *agq_head(const agent_queue *q);

/* The next record to send (after the cursor), or NULL. agq_mark_sent moves
 * the cursor over it. */
const agq_rec *agq_next_unsent(const agent_queue *q);
void agq_mark_sent(agent_queue *q);

/* Moves the send cursor back to the head: everything is unsent again. */
void agq_rewind(agent_queue *q);

/* Drops the head record. Returns 1, or 0 when empty. */
size_t agq_pop(agent_queue *q);

/* Drops head records with seq <= upto; returns how many. */
size_t agq_drop_upto(agent_queue *q, uint64_t upto);

/* Numbers the records from the i-th (from the head) on first, first + 1, ... (keeping
 * their order; first must be above the seq of the record before the i-th). */
void agq_renumber(agent_queue *q, size_t i, uint64_t first);

/* Seq of the newest record, or 0 when empty. */
uint64_t agq_tail_seq(const agent_queue *q);

#endif
