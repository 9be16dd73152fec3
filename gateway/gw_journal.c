/*
 * gw_journal.c - the journal's writes and the ack gate. See gw_journal.h.
 */
#include "gw_journal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "eds_log.h"

#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 5000
#define COMPACT_RETRY_MS 60000

static void loaded(void *ctx, const char *device, const char *stream, uint64_t last_seq)
{
    gw_journal *j = ctx;
    gw_device *d = gw_window_get(j->w, device);
    if (!d)
        return;
    snprintf(d->stream, sizeof(d->stream), "%s", stream);
    d->last_seq = d->last_accepted = last_seq;
    d->journaled = true;
    d->since = time(NULL);
}

int gw_journal_open(gw_journal *j, const char *dir, gw_window *w, gw_stats *st, eds_error *err)
{
    memset(j, 0, sizeof(*j));
    j->w = w;
    j->st = st;
    return gw_state_open(dir, loaded, j, &j->state, err);
}

void gw_journal_close(gw_journal *j)
{
    gw_state_close(j->state);
    j->state = NULL;
}

typedef struct snap_iter {
    gw_window *w;
    size_t i;
} snap_iter;

static int snap_next(void *ctx, const char **device, const char **stream, uint64_t *last_seq)
{
    snap_iter *it = ctx;
    while (it->i < it->w->n_devices) {
        gw_device *d = it->w->devices[it->i++];
        if (!d->journaled) /* ids known only from a command get no entry */
            continue;
        *device = d->id;
        *stream = d->stream;
        *last_seq = d->last_seq;
        return 1;
    }
    return 0;
}

/* Buffers the marked devices' lines and writes them. EDS_OK or EDS_ERR_IO (err);
 * devices whose line could not be buffered stay marked. */
static int write_marked(gw_journal *j, eds_error *err)
{
    int rc = gw_state_flush(j->state, err); /* what an earlier failure left */
    gw_device *d;
    while (rc == EDS_OK && (d = gw_window_journal_pop(j->w)) != NULL) {
        if (gw_state_append(j->state, d->id, d->stream, d->last_seq) != EDS_OK) {
            gw_window_journal(j->w, d); /* buffer full: write, then go on */
            rc = gw_state_flush(j->state, err);
            if (rc == EDS_OK && gw_state_append(j->state, d->id, d->stream, d->last_seq) != EDS_OK)
                return eds_error_set(err, EDS_ERR_NOMEM, "state journal: out of memory");
            if (rc == EDS_OK)
                gw_window_journal_pop(j->w);
        }
    }
    return rc == EDS_OK ? gw_state_flush(j->state, err) : rc;
}

static void compact_now_and_then(gw_journal *j, int64_t now)
{
    if (now < j->next_compact_ms || !gw_state_wants_compaction(j->state, j->w->n_devices))
        return;
    eds_error err;
    snap_iter it = {j->w, 0};
    if (gw_state_compact(j->state, snap_next, &it, &err) != EDS_OK) {
        eds_log_error("state compaction (retried in 60 s): %s", err.msg);
        j->next_compact_ms = now + COMPACT_RETRY_MS;
    }
}

/* The condition changed: say so once; the retries in between are only counted. */
static void set_blocked(gw_journal *j, bool journal, bool store, const char *why, int64_t now)
{
    bool was = gw_journal_blocked(j);
    j->journal_blocked = journal;
    j->store_blocked = store;
    if (journal || store) {
        if (!was) {
            j->blocked_since_ms = now;
            j->backoff_ms = RETRY_MIN_MS;
            eds_log_error("state_dir cannot be written (%s): holding acks, records wait; "
                          "retrying until there is room",
                          why);
        } else if (j->backoff_ms < RETRY_MAX_MS) {
            j->backoff_ms *= 2;
            if (j->backoff_ms > RETRY_MAX_MS)
                j->backoff_ms = RETRY_MAX_MS;
        }
        j->retry_ms = now + j->backoff_ms;
    } else if (was) {
        eds_log_notice("state_dir writable again after %lld s: acks resume",
                       (long long)((now - j->blocked_since_ms) / 1000));
    }
}

bool gw_journal_write(gw_journal *j, int64_t now, bool store_failed)
{
    if (store_failed != j->store_blocked) {
        if (store_failed)
            j->st->store_failures++;
        set_blocked(j, j->journal_blocked, store_failed, "mqtt session store: write failed", now);
    }
    if (j->journal_blocked && now < j->retry_ms)
        return false;
    eds_error err;
    eds_error_clear(&err);
    bool ok = write_marked(j, &err) == EDS_OK;
    if (!ok)
        j->st->journal_failures++;
    if (ok != !j->journal_blocked || !ok)
        set_blocked(j, !ok, j->store_blocked, err.msg, now);
    if (ok)
        compact_now_and_then(j, now);
    return ok;
}

void gw_journal_sync(gw_journal *j)
{
    gw_state_sync(j->state);
}
