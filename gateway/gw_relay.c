#include "gw_relay.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "eds_log.h"
#include "eds_proto.h"
#include "gw_now.h"

#define PUMP_BATCH 32       /* records one device publishes before the next gets a turn */
#define STORE_RETRY_MS 1000 /* qos 2: a session store that could not be written */

void gw_relay_init(gw_relay *r, const gw_config *cfg, gw_window *w, gw_conns *conns, gw_stats *st)
{
    memset(r, 0, sizeof(*r));
    r->cfg = cfg;
    r->w = w;
    r->conns = conns;
    r->st = st;
}

void gw_relay_topic(const gw_relay *r, const char *device, const char *leaf, char *buf)
{
    snprintf(buf, GW_TOPIC_MAX, "%s/%s/%s", r->cfg->topic_prefix, device, leaf);
}

void gw_rfc3339(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int gw_relay_publish_untracked(gw_relay *r, const char *topic, const char *payload, size_t len,
                               int qos, bool retain)
{
    int rc = EDS_ERR_BROKER;
    if (r->broker_up && !r->restoring)
        rc = gw_publisher_publish(r->pub, topic, payload, len, qos, retain, GW_TOKEN_UNTRACKED);
    if (rc != EDS_OK)
        eds_log_debug("publish to %s skipped: %s", topic, eds_strerror(rc));
    return rc;
}

int gw_relay_try_publish(gw_relay *r, const char *topic, const char *payload, size_t len, int qos,
                         const void *corr, size_t corr_len, uint64_t token)
{
    if (!r->broker_up || r->restoring)
        return EDS_ERR_BROKER;
    gw_pub_props props = {.corr = corr, .corr_len = corr_len};
    return gw_publisher_publish_props(r->pub, topic, payload, len, qos, false,
                                      token | GW_TOKEN_UNTRACKED, NULL, &props);
}

void gw_relay_status(gw_relay *r, gw_device *d)
{
    if (d->status_queued)
        return;
    d->status_queued = true;
    d->status_next = NULL;
    if (r->status_tail)
        r->status_tail->status_next = d;
    else
        r->status_head = d;
    r->status_tail = d;
}

/* Publishes queued statuses (the latest state of each) while the publisher has room. */
static void flush_statuses(gw_relay *r)
{
    while (r->status_head && r->broker_up && !r->restoring) {
        gw_device *d = r->status_head;
        char topic[GW_TOPIC_MAX], since[32], body[256];
        gw_relay_topic(r, d->id, "status", topic);
        gw_rfc3339(d->since, since, sizeof(since));
        int n;
        if (d->online)
            n = snprintf(body, sizeof(body), "{\"online\":true,\"since\":\"%s\",\"peer\":\"%s\"}",
                         since, d->peer);
        else
            n = snprintf(body, sizeof(body), "{\"online\":false,\"since\":\"%s\"}", since);
        int rc = gw_publisher_publish(r->pub, topic, body, (size_t)n, 1, true, GW_TOKEN_UNTRACKED);
        if (rc == EDS_ERR_FULL || rc == EDS_ERR_BROKER)
            return; /* stays queued: retried at the end of the next batch */
        r->status_head = d->status_next;
        if (!r->status_head)
            r->status_tail = NULL;
        d->status_queued = false;
    }
}

void gw_relay_ready(gw_relay *r, gw_device *d)
{
    if (d->in_ready)
        return;
    d->in_ready = true;
    d->ready_next = NULL;
    if (r->ready_tail)
        r->ready_tail->ready_next = d;
    else
        r->ready = d;
    r->ready_tail = d;
}

/* Hands one WAITING record to the publisher: EDS_OK, or not now (full, or
 * not connected after all: it stays WAITING for CONNECTED). */
static int publish_record(gw_relay *r, gw_device *d, gw_record *rec)
{
    char topic[GW_TOPIC_MAX];
    gw_relay_topic(r, d->id, rec->kind == GW_REC_DATA ? "data" : "rejected", topic);
    uint64_t token = gw_token_make(d, d->ring.unsent);
    /* qos 2: the mark tells a restarted gateway that this seq reached the broker
     * even if the journal had not caught up (see gw_relay_apply_marks). A record
     * published again must not move it back. */
    gw_mark mark;
    bool raise = r->cfg->qos == 2 && rec->seq > d->marked_seq;
    if (raise) {
        snprintf(mark.device, sizeof(mark.device), "%s", d->id);
        snprintf(mark.stream, sizeof(mark.stream), "%s", d->stream);
        mark.seq = rec->seq;
    }
    /* MQTT 5: device, stream and seq let a reader past the Pi drop duplicates. */
    gw_pub_props props = {
        .device = d->id, .stream = d->stream, .seq = rec->seq, .received_ms = rec->received_ms};
    int rc = gw_publisher_publish_props(r->pub, topic, rec->payload, rec->len, r->cfg->qos, false,
                                        token, raise ? &mark : NULL, &props);
    if (rc == EDS_OK && raise)
        d->marked_seq = rec->seq;
    /* qos 2: the session store cannot take the mark (a full disk): a record handed now
     * could be published twice after a crash. Try again in a second. */
    r->store_failed = rc == EDS_ERR_IO;
    if (r->store_failed)
        r->store_retry_ms = gw_now_ms() + STORE_RETRY_MS;
    return rc;
}

void gw_relay_pump(gw_relay *r)
{
    if (!r->broker_up || r->restoring || r->held)
        return;
    if (r->store_failed && gw_now_ms() < r->store_retry_ms)
        return;
    flush_statuses(r);
    while (r->ready) {
        gw_device *d = r->ready;
        int sent = 0;
        while (gw_ready_conn(d) && d->ring.unsent < d->ring.count && sent < PUMP_BATCH) {
            gw_record *rec = gw_ring_at(d, d->ring.unsent);
            if (rec->state == GW_REC_WAITING) {
                if (publish_record(r, d, rec) != EDS_OK)
                    return;
                rec->state = GW_REC_INFLIGHT;
                sent++;
            }
            d->ring.unsent++;
        }
        /* Done with this device for now: pop it, and requeue it if more wait. */
        r->ready = d->ready_next;
        if (!r->ready)
            r->ready_tail = NULL;
        d->in_ready = false;
        if (gw_ready_conn(d) && d->ring.unsent < d->ring.count)
            gw_relay_ready(r, d);
    }
}

void gw_relay_drain(gw_relay *r, gw_device *d)
{
    /* Settle: last_seq moves over the complete records at the head now (the journal
     * takes it at the end of the batch); they are answered only after that write. */
    bool advanced = false;
    while (d->ring.settled < d->ring.count &&
           gw_ring_at(d, d->ring.settled)->state == GW_REC_DONE) {
        gw_record *rec = gw_ring_at(d, d->ring.settled++);
        if (rec->kind != GW_REC_DUP && rec->seq > d->last_seq) {
            d->last_seq = rec->seq;
            advanced = true;
        }
    }
    if (advanced)
        gw_window_journal(r->w, d);
    if (!d->in_answer) {
        d->in_answer = true;
        d->answer_next = r->answer;
        r->answer = d;
    }
}

/* Answers d's settled records in order and pops them. Without a connection,
 * drops what was never published. */
static void answer(gw_relay *r, gw_device *d)
{
    gw_conn *c = gw_ready_conn(d);
    while (d->ring.settled) {
        gw_record *rec = gw_ring_at(d, 0);
        if (c) {
            char line[96];
            if (rec->kind == GW_REC_REJECT) {
                gw_conn_send(r->conns, c, rec->reply, rec->reply_len);
            } else {
                size_t n = eds_fmt_ack(line, sizeof(line), rec->seq, rec->kind == GW_REC_DUP);
                gw_conn_send(r->conns, c, line, n);
            }
        }
        if (rec->kind == GW_REC_DATA) {
            r->st->acked++;
            d->ctr.acked++;
        } else if (rec->kind == GW_REC_REJECT) {
            r->st->rejected++;
            d->ctr.rejected++;
        } else {
            r->st->duplicates++;
            d->ctr.duplicates++;
        }
        gw_ring_pop(r->w, d);
    }
    if (!c) /* no connection to answer: the agent resends after its next welcome */
        gw_ring_trim(r->w, d);
}

gw_device *gw_relay_answer_next(gw_relay *r)
{
    if (r->held)
        return NULL;
    gw_device *d = r->answer;
    if (!d)
        return NULL;
    r->answer = d->answer_next;
    d->in_answer = false;
    answer(r, d);
    return d;
}

gw_device *gw_relay_result(gw_relay *r, uint64_t token, bool ok)
{
    gw_device *d;
    uint32_t off;
    if (gw_token_find(r->w, token, &d, &off) != EDS_OK)
        return NULL;
    gw_record *rec = gw_ring_at(d, off);
    if (rec->state != GW_REC_INFLIGHT)
        return NULL;
    if (ok) {
        rec->state = GW_REC_DONE;
    } else {
        rec->state = GW_REC_WAITING;
        if (off < d->ring.unsent)
            d->ring.unsent = off;
        if (gw_ready_conn(d))
            gw_relay_ready(r, d);
    }
    gw_relay_drain(r, d);
    return d;
}

void gw_relay_connected(gw_relay *r)
{
    r->broker_up = true;
    eds_log_notice("connected to the broker at %s:%d", r->cfg->broker_host, r->cfg->broker_port);
    /* Status of every known device, so none stays online that is not
     * (e.g. after a crash of the gateway or a broker without persistence).
     * Only devices that ever connected: a command for an unknown id also
     * creates an entry, and it must not get a status. */
    for (size_t i = 0; i < r->w->n_devices; i++)
        if (r->w->devices[i]->journaled)
            gw_relay_status(r, r->w->devices[i]);
}

/* One session-store mark: the last record of a device handed to the broker. */
static void apply_mark(void *ctx, const gw_mark *m)
{
    gw_relay *r = ctx;
    const char *device = m->device, *stream = m->stream;
    unsigned long long seq = m->seq;
    gw_device *d = gw_window_get(r->w, device);
    if (!d)
        return;
    if (strcmp(d->stream, stream) == 0) {
        if (seq <= d->last_seq)
            return;
    } else {
        /* Records of a newer stream were handed before its welcome was journaled. */
        snprintf(d->stream, sizeof(d->stream), "%s", stream);
    }
    eds_log_notice("device %s: stream %s handled up to seq %llu (was %" PRIu64
                   " in the journal; the broker has the rest)",
                   d->id, stream, seq, d->last_seq);
    d->last_seq = d->last_accepted = seq;
    gw_window_journal(r->w, d);
}

void gw_relay_apply_marks(gw_relay *r, bool confirmed)
{
    if (confirmed)
        gw_publisher_each_mark(r->pub, apply_mark, r);
    else
        eds_log_warning("the broker had lost the gateway's MQTT session: the records in flight "
                        "at the last stop are resent by the agents and may arrive twice");
}
