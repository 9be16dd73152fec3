/*
 * gw_journal.h - the state journal as the gate of every ack: last_seq per
 * device goes to gw_state at the end of each batch, and the acks it covers go
 * out only once that write succeeded. When state_dir is full (or failing),
 * acks wait (the records stay in their windows, so reading pauses:
 * backpressure, never loss), the condition is logged once and counted, and
 * the write is retried with a backoff (200 ms doubling up to 5 s) until it
 * works. It also reports the qos 2 session store's state (gw_relay finds out
 * when it publishes), so that there is one "state_dir" condition to show.
 *
 * Owns the gw_state (the file) and the retry timer; borrows the device table.
 */
#ifndef GW_JOURNAL_H
#define GW_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "eds_err.h"
#include "gw_state.h"
#include "gw_stats.h"
#include "gw_window.h"

typedef struct gw_journal {
    gw_state *state;
    gw_window *w;
    gw_stats *st;
    bool journal_blocked, store_blocked;
    int64_t retry_ms, backoff_ms, blocked_since_ms, next_compact_ms;
} gw_journal;

/* Opens DIR/state.log and loads last_seq of every device in it into w. */
int gw_journal_open(gw_journal *j, const char *dir, gw_window *w, gw_stats *st, eds_error *err);
void gw_journal_close(gw_journal *j);

/* Writes what devices marked (gw_window_journal) and, now and then, a
 * compacted snapshot. True when everything marked is in the file: the acks
 * may go. False: hold them (retried no sooner than the backoff allows).
 * store_failed: the session store could not be written (reported with it). */
bool gw_journal_write(gw_journal *j, int64_t now, bool store_failed);

/* True while acks are held for state_dir. */
static inline bool gw_journal_blocked(const gw_journal *j)
{
    return j->journal_blocked || j->store_blocked;
}

/* fdatasync now (before the gateway drops something the journal took over). */
void gw_journal_sync(gw_journal *j);

#endif
