#include "gw_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "eds_framer.h"
#include "eds_log.h"
#include "eds_passwd.h"
#include "eds_proto.h"
#include "eds_schema.h"
#include "eds_tls.h"
#include "gw_loop.h"
#include "gw_metrics.h"
#include "gw_publisher.h"
#include "gw_schemas.h"
#include "gw_state.h"
#include "gw_stats.h"

#define READ_CHUNK 16384
#define OUT_SOFT (64 * 1024) /* past this, stop reading the connection */
#define MAX_BAD_IN_ROW 100
#define MAX_UNACKED_CMDS 64
#define REJECTED_LINE_MAX 1024
#define RING_MIN 16
#define PUMP_BATCH 32 /* records one device publishes before the next gets a turn */
#define TOKEN_UNTRACKED (1ULL << 63)
#define TICK_MS 200
#define TOPIC_MAX 512
#define LOGIN_DELAY_BASE_MS 200     /* second failed login from an address waits this long */
#define LOGIN_DELAY_MAX_MS 10000    /* ... doubling up to this */
#define LOGIN_FAIL_FORGET_MS 600000 /* an address's failures are forgotten after 10 min */

/* ---- types -------------------------------------------------------------- */

enum handle_kind { H_LISTENER, H_CONN, H_PUBLISHER, H_SIGNAL, H_METRICS };

typedef struct gw_handle {
    enum handle_kind kind;
} gw_handle;

typedef struct gw_cmd {
    struct gw_cmd *next;
    int64_t id; /* per connection, once sent */
    size_t len;
    char json[]; /* compact JSON, NUL-terminated */
} gw_cmd;

enum rec_kind { REC_DATA, REC_REJECT, REC_DUP };
enum rec_state { REC_WAITING, REC_INFLIGHT, REC_DONE };

typedef struct gw_record {
    uint64_t seq;
    uint8_t kind, state;
    uint32_t len;
    char *payload; /* DATA: compact data object; REJECT: rejected-topic document */
    char *reply;   /* REJECT: the nack line */
    uint32_t reply_len;
} gw_record;

struct gw_conn;

typedef struct gw_device {
    char id[EDS_DEVICE_MAX + 1];
    char stream[EDS_STREAM_MAX + 1];
    uint32_t index;
    uint64_t last_seq;      /* every seq <= this is handled (journaled) */
    uint64_t last_accepted; /* highest seq in the ring */
    uint64_t marked_seq;    /* qos 2: highest seq whose mark went to the session store */
    gw_record *ring;        /* FIFO of records in arrival order */
    uint32_t cap, head, count;
    uint32_t unsent;   /* ring offset of the first WAITING record (== count: none) */
    uint32_t head_abs; /* absolute position of ring[head], for publish tokens */
    struct gw_conn *conn;
    gw_cmd *held, *held_tail; /* downlink waiting for a connection */
    uint32_t n_held;
    bool in_ready;
    struct gw_device *ready_next;
    bool online;
    bool journaled; /* in the state journal: its status is reset after a crash */
    bool jdirty;    /* last_seq changed in this batch: journal it at the end */
    struct gw_device *jnext;
    bool status_queued; /* its retained status waits for room at the publisher */
    struct gw_device *status_next;
    time_t since;
    char peer[64];
    const eds_schema *schema;
    double tokens; /* max_rate bucket: records that may arrive now */
    int64_t tokens_ms;
    struct gw_device *hnext;
    gw_device_counters ctr; /* for /metrics */
} gw_device;

/* Per source address: connections now, recent failed logins. */
typedef struct gw_ip {
    char addr[INET6_ADDRSTRLEN];
    uint32_t conns;
    uint32_t fails;
    int64_t last_fail_ms;
    struct gw_ip *next;
} gw_ip;

enum conn_state { C_NEW, C_WAIT_WELCOME, C_READY, C_CLOSING };

typedef struct gw_conn {
    gw_handle h;
    int fd;
    enum conn_state state;
    gw_device *dev;
    eds_framer framer;
    char *out;
    size_t out_len, out_off, out_cap;
    int64_t created_ms, last_rx_ms;
    int bad_in_row;
    int64_t next_cmd_id;
    gw_cmd *unacked, *unacked_tail;
    uint32_t n_unacked;
    bool reading, writing, dirty;
    char peer[64];
    char stream[EDS_STREAM_MAX + 1]; /* from hello; applied at welcome */
    eds_tls_conn *tls;               /* NULL on a plain listener */
    bool handshaking;                /* TLS handshake not complete yet */
    int tls_want;                    /* EDS_TLS_WANT_* while handshaking */
    int64_t fail_at_ms;              /* > 0: send auth_failed then (login delay) */
    gw_ip *ip;
    struct gw_conn *next_dirty, *next_closing;
} gw_conn;

static gw_conn *ready_conn(gw_device *d)
{
    return d->conn && d->conn->state == C_READY ? d->conn : NULL;
}

typedef struct gw_listener {
    gw_handle h;
    int fd;
    int port;
    bool tls;
} gw_listener;

struct gw_server {
    const gw_config *cfg;
    gw_loop *loop;
    gw_publisher *pub;
    gw_handle pub_h, sig_h, metrics_h;
    int sig_fd;
    gw_metrics *metrics; /* NULL unless metrics_listener */
    gw_listener listeners[GW_MAX_LISTENERS];
    size_t n_listeners;
    gw_conn **conns; /* indexed by fd */
    size_t conns_cap;
    size_t n_conns;
    gw_conn *dirty, *closing;
    gw_device **devices; /* by index */
    size_t n_devices, devices_cap;
    gw_device **htab;
    size_t hsize;
    gw_device *ready, *ready_tail;
    gw_device *jlist;                     /* devices to journal at the end of the batch */
    gw_device *status_head, *status_tail; /* statuses to publish, oldest first */
    int64_t next_compact_ms;
    size_t held_bytes;        /* commands owned by the gateway (held or unacked) */
    int64_t next_drop_log_ms; /* command drops are logged at most every 10 s */
    uint64_t drops_unlogged;
    gw_schemas *schemas;
    eds_passwd *passwd;
    eds_tls_ctx *tls_ctx;
    gw_ip **iptab; /* by address; IPTAB_SIZE buckets */
    size_t n_ips;
    int64_t next_ip_sweep_ms;
    gw_state *state;
    size_t pending_bytes;
    bool broker_up, stopping, paused_global;
    bool restoring; /* qos 2 after a crash: publishes restored from the session store are
                       not all confirmed yet; no welcome, no publish until they are */
    int64_t stop_deadline_ms, next_stats_ms, started_ms;
    gw_stats st;
    char *scratch;  /* READ_CHUNK, for reads */
    char *line_buf; /* formatting of long lines (nack, cmd, rejected) */
    size_t line_cap;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rfc3339(time_t t, char *buf, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void topic_for(const gw_server *s, const char *device, const char *leaf, char *buf)
{
    snprintf(buf, TOPIC_MAX, "%s/%s/%s", s->cfg->topic_prefix, device, leaf);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

/* ---- devices ------------------------------------------------------------ */

static gw_device *device_find(gw_server *s, const char *id)
{
    for (gw_device *d = s->htab[hash_str(id) & (s->hsize - 1)]; d; d = d->hnext)
        if (strcmp(d->id, id) == 0)
            return d;
    return NULL;
}

static int htab_grow(gw_server *s)
{
    size_t nsize = s->hsize ? s->hsize * 2 : 1024;
    gw_device **nt = calloc(nsize, sizeof(*nt));
    if (!nt)
        return EDS_ERR_NOMEM;
    for (size_t i = 0; i < s->n_devices; i++) {
        gw_device *d = s->devices[i];
        size_t b = hash_str(d->id) & (nsize - 1);
        d->hnext = nt[b];
        nt[b] = d;
    }
    free(s->htab);
    s->htab = nt;
    s->hsize = nsize;
    return EDS_OK;
}

/* Finds or creates the device; NULL when out of memory or past max_devices. */
static gw_device *device_get(gw_server *s, const char *id)
{
    gw_device *d = device_find(s, id);
    if (d)
        return d;
    if (s->n_devices >= (size_t)s->cfg->max_devices)
        return NULL;
    if (s->n_devices == s->devices_cap) {
        size_t ncap = s->devices_cap ? s->devices_cap * 2 : 256;
        gw_device **nd = realloc(s->devices, ncap * sizeof(*nd));
        if (!nd)
            return NULL;
        s->devices = nd;
        s->devices_cap = ncap;
    }
    if (s->n_devices * 2 >= s->hsize && htab_grow(s) != EDS_OK)
        return NULL;
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    snprintf(d->id, sizeof(d->id), "%s", id);
    strcpy(d->stream, "0");
    d->index = (uint32_t)s->n_devices;
    s->devices[s->n_devices++] = d;
    size_t b = hash_str(id) & (s->hsize - 1);
    d->hnext = s->htab[b];
    s->htab[b] = d;
    return d;
}

/* The device's connection if it is past welcome, else NULL. */
static struct gw_conn *ready_conn(gw_device *d);

static gw_record *ring_at(gw_device *d, uint32_t off)
{
    return &d->ring[(d->head + off) % d->cap];
}

/* Makes room for one more record; EDS_ERR_FULL at the window. */
static int ring_reserve(gw_server *s, gw_device *d)
{
    if (d->count < d->cap)
        return EDS_OK;
    if (d->cap >= (uint32_t)s->cfg->window)
        return EDS_ERR_FULL;
    uint32_t ncap = d->cap ? d->cap * 2 : RING_MIN;
    if (ncap > (uint32_t)s->cfg->window)
        ncap = (uint32_t)s->cfg->window;
    gw_record *nr = malloc(ncap * sizeof(*nr));
    if (!nr)
        return EDS_ERR_NOMEM;
    for (uint32_t i = 0; i < d->count; i++)
        nr[i] = *ring_at(d, i);
    free(d->ring);
    d->ring = nr;
    d->cap = ncap;
    d->head = 0;
    return EDS_OK;
}

static void record_release(gw_server *s, gw_record *r)
{
    s->pending_bytes -= r->len + r->reply_len;
    free(r->payload);
    free(r->reply);
    r->payload = r->reply = NULL;
    r->len = r->reply_len = 0;
}

static void ready_push(gw_server *s, gw_device *d)
{
    if (d->in_ready)
        return;
    d->in_ready = true;
    d->ready_next = NULL;
    if (s->ready_tail)
        s->ready_tail->ready_next = d;
    else
        s->ready = d;
    s->ready_tail = d;
}

/* Marks d for the journal; end_batch writes one line per changed device
 * (not one per record: SD cards wear) before the acks of the batch leave. */
static void journal(gw_server *s, gw_device *d)
{
    d->journaled = true;
    if (!d->jdirty) {
        d->jdirty = true;
        d->jnext = s->jlist;
        s->jlist = d;
    }
}

/* ---- output ------------------------------------------------------------- */

static void mark_dirty(gw_server *s, gw_conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = s->dirty;
        s->dirty = c;
    }
}

/* Room for n more bytes at the end of c->out; NULL when out of memory. */
static char *out_reserve(gw_conn *c, size_t n)
{
    if (c->out_off && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len >= n)
        return c->out + c->out_len;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_cap - c->out_len >= n)
            return c->out + c->out_len;
    }
    size_t ncap = c->out_cap ? c->out_cap : 1024;
    while (ncap - c->out_len < n)
        ncap *= 2;
    char *nb = realloc(c->out, ncap);
    if (!nb)
        return NULL;
    c->out = nb;
    c->out_cap = ncap;
    return c->out + c->out_len;
}

static void out_commit(gw_server *s, gw_conn *c, size_t n)
{
    c->out_len += n;
    mark_dirty(s, c);
}

static void send_line(gw_server *s, gw_conn *c, const char *line, size_t n)
{
    char *p = out_reserve(c, n);
    if (!p) {
        eds_log_error("%s: out of memory for output", c->peer);
        return;
    }
    memcpy(p, line, n);
    out_commit(s, c, n);
}

static void close_conn(gw_server *s, gw_conn *c, const char *why);

static void send_error(gw_server *s, gw_conn *c, eds_proto_error code, const char *msg)
{
    char line[512];
    size_t n = eds_fmt_error(line, sizeof(line), code, msg);
    if (n)
        send_line(s, c, line, n);
    if (eds_proto_error_fatal(code))
        close_conn(s, c, eds_proto_error_name(code));
}

/* Grows the shared formatting buffer to at least n bytes. */
static char *line_buf(gw_server *s, size_t n)
{
    if (s->line_cap < n) {
        char *nb = realloc(s->line_buf, n);
        if (!nb)
            return NULL;
        s->line_buf = nb;
        s->line_cap = n;
    }
    return s->line_buf;
}

/* ---- publishing --------------------------------------------------------- */

static void publish_untracked(gw_server *s, const char *topic, const char *payload, size_t len,
                              int qos, bool retain)
{
    if (!s->broker_up || s->restoring)
        return;
    int rc = gw_publisher_publish(s->pub, topic, payload, len, qos, retain, TOKEN_UNTRACKED);
    if (rc != EDS_OK)
        eds_log_debug("publish to %s skipped: %s", topic, eds_strerror(rc));
}

/* Queues d's retained status. Statuses must not be lost (a device would stay
 * "online" for good), so they wait in a queue when the publisher is full or
 * the broker is away; flush_statuses() sends the latest state of each. */
static void publish_status(gw_server *s, gw_device *d)
{
    if (d->status_queued)
        return;
    d->status_queued = true;
    d->status_next = NULL;
    if (s->status_tail)
        s->status_tail->status_next = d;
    else
        s->status_head = d;
    s->status_tail = d;
}

/* Publishes queued statuses while the publisher has room. */
static void flush_statuses(gw_server *s)
{
    while (s->status_head && s->broker_up && !s->restoring) {
        gw_device *d = s->status_head;
        char topic[TOPIC_MAX], since[32], body[256];
        topic_for(s, d->id, "status", topic);
        rfc3339(d->since, since, sizeof(since));
        int n;
        if (d->online)
            n = snprintf(body, sizeof(body), "{\"online\":true,\"since\":\"%s\",\"peer\":\"%s\"}",
                         since, d->peer);
        else
            n = snprintf(body, sizeof(body), "{\"online\":false,\"since\":\"%s\"}", since);
        int rc = gw_publisher_publish(s->pub, topic, body, (size_t)n, 1, true, TOKEN_UNTRACKED);
        if (rc == EDS_ERR_FULL || rc == EDS_ERR_BROKER)
            return; /* stays queued: retried at the end of the next batch */
        s->status_head = d->status_next;
        if (!s->status_head)
            s->status_tail = NULL;
        d->status_queued = false;
    }
}

/* Hands WAITING records to the publisher, device by device in turns,
 * each device's in ring order. */
static void pump(gw_server *s)
{
    if (!s->broker_up || s->restoring)
        return;
    flush_statuses(s);
    while (s->ready) {
        gw_device *d = s->ready;
        int sent = 0;
        bool full = false;
        while (ready_conn(d) && d->unsent < d->count && sent < PUMP_BATCH) {
            gw_record *r = ring_at(d, d->unsent);
            if (r->state == REC_WAITING) {
                char topic[TOPIC_MAX];
                topic_for(s, d->id, r->kind == REC_DATA ? "data" : "rejected", topic);
                uint64_t token = ((uint64_t)d->index << 32) | (uint32_t)(d->head_abs + d->unsent);
                /* qos 2: the mark tells a restarted gateway that this seq reached the broker
                 * even if the journal had not caught up (see apply_session_marks). A record
                 * published again must not move it back. */
                char mark[EDS_STREAM_MAX + 32];
                bool raise = s->cfg->qos == 2 && r->seq > d->marked_seq;
                if (raise)
                    snprintf(mark, sizeof(mark), "%s %" PRIu64, d->stream, r->seq);
                int rc = gw_publisher_publish_marked(s->pub, topic, r->payload, r->len, s->cfg->qos,
                                                     false, token, raise ? d->id : NULL,
                                                     raise ? mark : NULL);
                if (rc == EDS_OK && raise)
                    d->marked_seq = r->seq;
                if (rc == EDS_ERR_FULL) {
                    full = true;
                    break;
                }
                if (rc != EDS_OK) {
                    /* Not connected after all: leave it WAITING for CONNECTED. */
                    full = true;
                    break;
                }
                r->state = REC_INFLIGHT;
                sent++;
            }
            d->unsent++;
        }
        if (full)
            return;
        /* Done with this device for now: pop it, and requeue it if more wait. */
        s->ready = d->ready_next;
        if (!s->ready)
            s->ready_tail = NULL;
        d->in_ready = false;
        if (ready_conn(d) && d->unsent < d->count)
            ready_push(s, d);
    }
}

/* Answers the records at the head of the ring that are complete, in
 * order, advancing last_seq; pops them. */
static void drain_replies(gw_server *s, gw_device *d)
{
    gw_conn *c = ready_conn(d);
    bool advanced = false;
    while (d->count && ring_at(d, 0)->state == REC_DONE) {
        gw_record *r = ring_at(d, 0);
        if (c) {
            char line[96];
            if (r->kind == REC_REJECT) {
                send_line(s, c, r->reply, r->reply_len);
            } else {
                size_t n = eds_fmt_ack(line, sizeof(line), r->seq, r->kind == REC_DUP);
                send_line(s, c, line, n);
            }
        }
        if (r->kind == REC_DATA) {
            s->st.acked++;
            d->ctr.acked++;
        } else if (r->kind == REC_REJECT) {
            s->st.rejected++;
            d->ctr.rejected++;
        } else {
            s->st.duplicates++;
            d->ctr.duplicates++;
        }
        if (r->kind != REC_DUP && r->seq > d->last_seq) {
            d->last_seq = r->seq;
            advanced = true;
        }
        record_release(s, r);
        d->head = (d->head + 1) % d->cap;
        d->head_abs++;
        d->count--;
        if (d->unsent)
            d->unsent--;
    }
    if (advanced)
        journal(s, d);
    if (!c) {
        /* No connection to answer: drop what was never published (the agent
         * resends it after its next welcome). */
        while (d->count && ring_at(d, d->count - 1)->state != REC_INFLIGHT) {
            record_release(s, ring_at(d, d->count - 1));
            d->count--;
        }
        if (d->unsent > d->count)
            d->unsent = d->count;
        d->last_accepted = d->last_seq;
        for (uint32_t i = 0; i < d->count; i++)
            if (ring_at(d, i)->seq > d->last_accepted)
                d->last_accepted = ring_at(d, i)->seq;
        if (d->count == 0) {
            free(d->ring);
            d->ring = NULL;
            d->cap = d->head = 0;
        }
    }
}

static void try_welcome(gw_server *s, gw_conn *c);
static void resume_reading(gw_server *s, gw_conn *c);

static void on_publish_result(gw_server *s, uint64_t token, bool ok)
{
    if (token & TOKEN_UNTRACKED)
        return;
    uint32_t index = (uint32_t)(token >> 32);
    if (index >= s->n_devices)
        return;
    gw_device *d = s->devices[index];
    uint32_t off = (uint32_t)token - d->head_abs;
    if (off >= d->count)
        return;
    gw_record *r = ring_at(d, off);
    if (r->state != REC_INFLIGHT)
        return;
    if (ok) {
        r->state = REC_DONE;
    } else {
        r->state = REC_WAITING;
        if (off < d->unsent)
            d->unsent = off;
        if (ready_conn(d))
            ready_push(s, d);
    }
    drain_replies(s, d);
    if (d->conn && d->conn->state == C_WAIT_WELCOME && d->count == 0)
        try_welcome(s, d->conn);
    else if (d->conn && d->conn->state == C_READY && !d->conn->reading)
        resume_reading(s, d->conn);
}

/* ---- downlink commands -------------------------------------------------- */

static void deliver_cmds(gw_server *s, gw_conn *c)
{
    gw_device *d = c->dev;
    while (d->held && c->n_unacked < MAX_UNACKED_CMDS) {
        gw_cmd *cmd = d->held;
        d->held = cmd->next;
        if (!d->held)
            d->held_tail = NULL;
        d->n_held--;
        cmd->id = ++c->next_cmd_id;
        cmd->next = NULL;
        size_t cap = cmd->len + 64;
        char *p = out_reserve(c, cap);
        size_t n = p ? eds_fmt_cmd(p, cap, cmd->id, cmd->json, cmd->len) : 0;
        if (n)
            out_commit(s, c, n);
        if (c->unacked_tail)
            c->unacked_tail->next = cmd;
        else
            c->unacked = cmd;
        c->unacked_tail = cmd;
        c->n_unacked++;
        s->st.cmds_delivered++;
    }
}

/* Counts a dropped command; logs drops at most every 10 s, so a flood of
 * commands cannot flood the log too. */
static void cmd_dropped(gw_server *s, const char *why, const char *device)
{
    s->st.cmds_dropped++;
    int64_t now = now_ms();
    if (now < s->next_drop_log_ms) {
        s->drops_unlogged++;
        return;
    }
    eds_log_warning("command for %s dropped: %s (%" PRIu64 " more dropped since the last warning)",
                    device, why, s->drops_unlogged);
    s->drops_unlogged = 0;
    s->next_drop_log_ms = now + 10000;
}

static void cmd_free(gw_server *s, gw_cmd *cmd)
{
    s->held_bytes -= sizeof(*cmd) + cmd->len;
    free(cmd);
}

static void hold_cmd(gw_server *s, gw_device *d, gw_cmd *cmd)
{
    if (s->cfg->max_held_cmds == 0) {
        cmd_free(s, cmd);
        cmd_dropped(s, "max_held_cmds is 0", d->id);
        return;
    }
    while (d->n_held >= (uint32_t)s->cfg->max_held_cmds) {
        gw_cmd *old = d->held;
        d->held = old->next;
        if (!d->held)
            d->held_tail = NULL;
        d->n_held--;
        cmd_free(s, old);
        cmd_dropped(s, "over max_held_cmds, the oldest", d->id);
    }
    cmd->next = NULL;
    if (d->held_tail)
        d->held_tail->next = cmd;
    else
        d->held = cmd;
    d->held_tail = cmd;
    d->n_held++;
}

static void on_mqtt_message(gw_server *s, const gw_pub_event *ev)
{
    /* topic: PREFIX/DEVICE/cmd */
    size_t plen = strlen(s->cfg->topic_prefix);
    const char *t = ev->topic;
    if (strncmp(t, s->cfg->topic_prefix, plen) != 0 || t[plen] != '/')
        return;
    const char *dev = t + plen + 1;
    const char *slash = strchr(dev, '/');
    if (!slash || strcmp(slash, "/cmd") != 0)
        return;
    char id[EDS_DEVICE_MAX + 2];
    size_t idlen = (size_t)(slash - dev);
    if (idlen >= sizeof(id))
        return;
    memcpy(id, dev, idlen);
    id[idlen] = '\0';
    if (!eds_device_id_valid(id)) {
        eds_log_warning("command on %s: not a valid device id, dropped", ev->topic);
        return;
    }
    s->st.cmds_in++;
    cJSON *v = NULL;
    if (eds_utf8_valid(ev->payload, ev->len)) {
        /* Not require_null_terminated: with a length that excludes the NUL,
         * cJSON then refuses every payload. Trailing bytes are checked here. */
        const char *end = NULL;
        v = cJSON_ParseWithLengthOpts(ev->payload, ev->len, &end, 0);
        while (v && end < ev->payload + ev->len && strchr(" \t\r\n", *end) && *end)
            end++;
        if (v && end != ev->payload + ev->len) {
            cJSON_Delete(v);
            v = NULL;
        }
    }
    char *compact = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    if (!compact) {
        eds_log_warning("command on %s is not JSON, dropped", ev->topic);
        s->st.cmds_dropped++;
        return;
    }
    size_t n = strlen(compact);
    if (n + 64 > s->cfg->max_line) {
        /* The agent could never take it (its line limit is the gateway's):
         * delivering it would make it reconnect again and again. */
        eds_log_warning("command on %s: %zu bytes do not fit max_line, dropped", ev->topic, n);
        free(compact);
        s->st.cmds_dropped++;
        return;
    }
    /* All commands the gateway owns are bounded in bytes: the broker lets
     * any local reader write P/+/cmd, also for ids that never connect. */
    if (s->held_bytes + sizeof(gw_cmd) + n > s->cfg->max_held_bytes) {
        free(compact);
        cmd_dropped(s, "max_held_bytes reached", id);
        return;
    }
    gw_cmd *cmd = malloc(sizeof(*cmd) + n + 1);
    gw_device *d = cmd ? device_get(s, id) : NULL;
    if (!d) {
        free(cmd);
        free(compact);
        cmd_dropped(s, "out of memory or max_devices", id);
        return;
    }
    s->held_bytes += sizeof(*cmd) + n;
    cmd->len = n;
    memcpy(cmd->json, compact, n + 1);
    free(compact);
    hold_cmd(s, d, cmd);
    if (d->conn && d->conn->state == C_READY)
        deliver_cmds(s, d->conn);
}

static void on_cmd_ack(gw_server *s, gw_conn *c, int64_t id)
{
    gw_cmd **pp = &c->unacked, *prev = NULL;
    for (gw_cmd *cmd = c->unacked; cmd; prev = cmd, pp = &cmd->next, cmd = cmd->next) {
        if (cmd->id == id) {
            *pp = cmd->next;
            if (c->unacked_tail == cmd)
                c->unacked_tail = prev;
            c->n_unacked--;
            cmd_free(s, cmd);
            deliver_cmds(s, c);
            return;
        }
    }
    eds_log_info("%s: ack for unknown command id %" PRId64, c->peer, id);
}

/* ---- connections -------------------------------------------------------- */

static void update_events(gw_server *s, gw_conn *c)
{
    uint32_t ev = (c->reading ? GW_EV_READ : 0) | (c->writing ? GW_EV_WRITE : 0);
    if (c->handshaking)
        ev = c->tls_want == EDS_TLS_WANT_WRITE ? GW_EV_WRITE : GW_EV_READ;
    gw_loop_mod(s->loop, c->fd, ev, c);
}

/* ---- per-address limits ------------------------------------------------- */

#define IPTAB_SIZE 4096
#define IPTAB_MAX_ENTRIES 65536 /* addresses tracked at once; past it new ones go untracked */

static gw_ip *ip_get(gw_server *s, const char *addr)
{
    gw_ip **b = &s->iptab[hash_str(addr) & (IPTAB_SIZE - 1)];
    for (gw_ip *ip = *b; ip; ip = ip->next)
        if (strcmp(ip->addr, addr) == 0)
            return ip;
    /* Bounded: many source addresses (an IPv6 prefix) must not grow it without end.
     * Untracked addresses get no per-address cap and no login delay. */
    if (s->n_ips >= IPTAB_MAX_ENTRIES)
        return NULL;
    gw_ip *ip = calloc(1, sizeof(*ip));
    if (!ip)
        return NULL;
    s->n_ips++;
    snprintf(ip->addr, sizeof(ip->addr), "%s", addr);
    ip->next = *b;
    *b = ip;
    return ip;
}

/* Frees entries with no connection and no recent failed login. */
static void ip_sweep(gw_server *s, int64_t now)
{
    for (size_t i = 0; i < IPTAB_SIZE; i++) {
        gw_ip **pp = &s->iptab[i];
        while (*pp) {
            gw_ip *ip = *pp;
            if (ip->fails && now - ip->last_fail_ms > LOGIN_FAIL_FORGET_MS)
                ip->fails = 0;
            if (ip->conns == 0 && ip->fails == 0) {
                *pp = ip->next;
                free(ip);
                s->n_ips--;
            } else {
                pp = &ip->next;
            }
        }
    }
}

/* max_rate: refills the device's bucket; true while it is empty. */
static bool rate_exhausted(gw_server *s, gw_device *d, int64_t now)
{
    double rate = s->cfg->max_rate;
    if (rate <= 0)
        return false;
    double burst = rate < 1 ? 1 : rate; /* one second's worth */
    if (d->tokens_ms == 0)
        d->tokens = burst;
    else
        d->tokens += (double)(now - d->tokens_ms) * rate / 1000.0;
    if (d->tokens > burst)
        d->tokens = burst;
    d->tokens_ms = now;
    return d->tokens < 1;
}

/* ---- connection I/O (plain or TLS) -------------------------------------- */

/* Like recv: > 0 bytes, 0 when the peer closed, EDS_ERR_AGAIN, or another
 * negative code with the reason in err. */
static ssize_t conn_recv(gw_conn *c, char *buf, size_t len, eds_error *err)
{
    if (c->tls) {
        int want = 0;
        ssize_t n = eds_tls_read(c->tls, buf, len, &want, err);
        return n == EDS_ERR_CLOSED ? 0 : n;
    }
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return EDS_ERR_AGAIN;
    return eds_error_set(err, EDS_ERR_IO, "%s", strerror(errno));
}

/* Like send: bytes taken, EDS_ERR_AGAIN, or another negative code. */
static ssize_t conn_send(gw_conn *c, const char *buf, size_t len, eds_error *err)
{
    if (c->tls) {
        int want = 0;
        return eds_tls_write(c->tls, buf, len, &want, err);
    }
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return EDS_ERR_AGAIN;
    return eds_error_set(err, EDS_ERR_IO, "%s", strerror(errno));
}

/* Detaches c from its device: unpublished records go (the agent resends
 * them), unacked commands go back to the front of the held queue. */
static void detach(gw_server *s, gw_conn *c)
{
    gw_device *d = c->dev;
    if (!d)
        return;
    c->dev = NULL;
    if (d->conn != c)
        return;
    d->conn = NULL;
    if (c->unacked) {
        c->unacked_tail->next = d->held;
        if (!d->held)
            d->held_tail = c->unacked_tail;
        d->held = c->unacked;
        d->n_held += c->n_unacked;
        c->unacked = c->unacked_tail = NULL;
        c->n_unacked = 0;
    }
    drain_replies(s, d); /* trims the never-published tail */
    if (d->online) {
        d->online = false;
        d->since = time(NULL);
        publish_status(s, d);
    }
}

static void close_conn(gw_server *s, gw_conn *c, const char *why)
{
    if (c->state == C_CLOSING)
        return;
    eds_log_info("%s%s%s: closing (%s)", c->peer, c->dev ? " " : "", c->dev ? c->dev->id : "", why);
    detach(s, c);
    c->state = C_CLOSING;
    c->reading = false;
    c->next_closing = s->closing;
    s->closing = c;
    mark_dirty(s, c); /* flush the last error line before closing */
}

static void free_conn(gw_server *s, gw_conn *c)
{
    gw_loop_del(s->loop, c->fd);
    eds_tls_conn_destroy(c->tls);
    /* Lingering close: closing a socket with unread input makes the kernel
     * send RST instead of FIN, and an RST can destroy the last error line
     * still on its way to the agent. So send FIN first, then discard what
     * the peer sent that we will never read (bounded), then close. */
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 16; i++)
        if (recv(c->fd, s->scratch, READ_CHUNK, MSG_DONTWAIT) <= 0)
            break;
    close(c->fd);
    if (c->ip)
        c->ip->conns--;
    s->conns[c->fd] = NULL;
    s->n_conns--;
    eds_framer_free(&c->framer);
    while (c->unacked) {
        gw_cmd *n = c->unacked->next;
        cmd_free(s, c->unacked);
        c->unacked = n;
    }
    free(c->out);
    free(c);
}

static void flush_out(gw_server *s, gw_conn *c)
{
    if (c->handshaking)
        return; /* nothing can be sent before the TLS handshake completes */
    while (c->out_off < c->out_len) {
        eds_error err;
        ssize_t w = conn_send(c, c->out + c->out_off, c->out_len - c->out_off, &err);
        if (w == EDS_ERR_AGAIN)
            break;
        if (w < 0) {
            c->out_off = c->out_len; /* peer gone: drop the output */
            if (c->state != C_CLOSING)
                close_conn(s, c, err.msg);
            break;
        }
        c->out_off += (size_t)w;
        s->st.bytes_out += (uint64_t)w;
    }
    bool pending = c->out_off < c->out_len;
    if (!pending) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > OUT_SOFT) { /* do not pin a large buffer on an idle connection */
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
    }
    if (pending != c->writing && c->state != C_CLOSING) {
        c->writing = pending;
        update_events(s, c);
    }
    if (!pending && c->state == C_READY && !c->reading)
        resume_reading(s, c);
}

static bool must_pause(gw_server *s, gw_conn *c)
{
    if (s->pending_bytes > s->cfg->max_pending_bytes) {
        s->paused_global = true; /* end_batch resumes everyone once below */
        return true;
    }
    if (c->out_len - c->out_off > OUT_SOFT)
        return true;
    if (c->dev && rate_exhausted(s, c->dev, now_ms())) {
        s->st.rate_limited++; /* tick() resumes it once the bucket refills */
        return true;
    }
    return c->dev && c->dev->count >= (uint32_t)s->cfg->window;
}

static void try_welcome(gw_server *s, gw_conn *c)
{
    gw_device *d = c->dev;
    if (d->count)
        return; /* records of an earlier connection still in flight */
    if (s->restoring)
        return; /* last_seq is known once the restored publishes are confirmed */
    if (strcmp(d->stream, c->stream) != 0) {
        /* A new sequence space: the agent lost its counter. */
        snprintf(d->stream, sizeof(d->stream), "%s", c->stream);
        d->last_seq = 0;
        d->marked_seq = 0;
        journal(s, d);
    } else if (!d->journaled) {
        /* Known after a restart, so that a crash never leaves it marked online. */
        journal(s, d);
    }
    char line[128];
    size_t n = eds_fmt_welcome(line, sizeof(line), d->last_seq);
    send_line(s, c, line, n);
    c->state = C_READY;
    d->last_accepted = d->last_seq;
    d->online = true;
    d->since = time(NULL);
    snprintf(d->peer, sizeof(d->peer), "%s", c->peer);
    publish_status(s, d);
    deliver_cmds(s, c);
    resume_reading(s, c);
    eds_log_info("%s: device %s online (stream %s, last_seq %" PRIu64 ")", c->peer, d->id,
                 d->stream, d->last_seq);
}

static void handle_hello(gw_server *s, gw_conn *c, const eds_msg *m)
{
    if (!eds_device_id_valid(m->device)) {
        s->st.auth_failures++;
        send_error(s, c, EDS_PE_AUTH_FAILED, "invalid device id");
        return;
    }
    if (m->proto != EDS_PROTO_VERSION) {
        send_error(s, c, EDS_PE_UNSUPPORTED_PROTO, "this gateway speaks proto 1");
        return;
    }
    /* Mutual TLS: the verified certificate names the device. */
    char cn[EDS_DEVICE_MAX + 2] = "";
    bool cert_ok = c->tls && s->cfg->require_certificate &&
                   eds_tls_peer_cn(c->tls, cn, sizeof(cn)) == EDS_OK && strcmp(cn, m->device) == 0;
    bool ok;
    if (c->tls && s->cfg->require_certificate && !cert_ok)
        ok = false;
    else if (s->passwd)
        ok = eds_passwd_check(s->passwd, m->device, m->password) == EDS_OK;
    else
        ok = cert_ok || s->cfg->allow_anonymous;
    if (!ok) {
        s->st.auth_failures++;
        eds_log_notice("%s: authentication failed for device %s%s", c->peer, m->device,
                       c->tls && s->cfg->require_certificate && !cert_ok
                           ? " (certificate CN does not match)"
                           : "");
        /* A growing delay per address slows password guessing. */
        int64_t delay = 0;
        if (c->ip) {
            c->ip->fails++;
            c->ip->last_fail_ms = now_ms();
            if (c->ip->fails > 1) {
                delay = LOGIN_DELAY_BASE_MS << (c->ip->fails > 7 ? 6 : c->ip->fails - 2);
                if (delay > LOGIN_DELAY_MAX_MS)
                    delay = LOGIN_DELAY_MAX_MS;
            }
        }
        if (delay > 0) {
            s->st.login_delays++;
            c->fail_at_ms = now_ms() + delay;
            return; /* on_line pauses reading; tick() sends auth_failed */
        }
        send_error(s, c, EDS_PE_AUTH_FAILED, "unknown device or wrong password");
        return;
    }
    if (c->ip)
        c->ip->fails = 0;
    gw_device *d = device_get(s, m->device);
    if (!d) {
        send_error(s, c, EDS_PE_SERVER_BUSY, "too many devices");
        return;
    }
    if (d->conn) {
        s->st.replaced++;
        eds_log_notice("device %s: new connection from %s replaces %s", d->id, c->peer,
                       d->conn->peer);
        gw_conn *old = d->conn;
        send_error(s, old, EDS_PE_REPLACED, "a newer connection authenticated as this device");
    }
    /* Records of an earlier connection still in flight finish first:
     * try_welcome waits for them, then applies the stream. */
    snprintf(c->stream, sizeof(c->stream), "%s", m->stream);
    d->conn = c;
    c->dev = d;
    d->schema = gw_schemas_for(s->schemas, d->id);
    c->state = C_WAIT_WELCOME;
    try_welcome(s, c);
}

/* Publishes a bad line to the rejected topic: {"error":CODE,"line":"..."}. */
static void reject_line(gw_server *s, gw_conn *c, eds_proto_error code, const char *line,
                        size_t len, const char *reason)
{
    if (len > REJECTED_LINE_MAX)
        len = REJECTED_LINE_MAX;
    /* Bytes that are not valid UTF-8 (also a character cut by the limit)
     * are written as \u00XX escapes so the document stays valid JSON. */
    /* Every byte of the line and of the reason may become a 6-byte escape. */
    size_t cap = (len + strlen(reason)) * 6 + 256;
    char *buf = line_buf(s, cap);
    if (!buf)
        return;
    size_t n =
        (size_t)snprintf(buf, cap, "{\"error\":\"%s\",\"line\":\"", eds_proto_error_name(code));
    bool utf8 = eds_utf8_valid(line, len);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20 || (ch >= 0x80 && !utf8)) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    n += (size_t)snprintf(buf + n, cap - n, "\",\"reason\":");
    eds_json_append_string(buf, cap, &n, reason);
    buf[n++] = '}';
    char topic[TOPIC_MAX];
    topic_for(s, c->dev->id, "rejected", topic);
    publish_untracked(s, topic, buf, n, s->cfg->qos, false);
}

/* Copies JSON text without the whitespace between tokens. */
static size_t json_minify(const char *in, size_t len, char *out)
{
    size_t n = 0;
    bool str = false;
    for (size_t i = 0; i < len; i++) {
        char ch = in[i];
        if (str) {
            out[n++] = ch;
            if (ch == '\\' && i + 1 < len)
                out[n++] = in[++i];
            else if (ch == '"')
                str = false;
        } else if (ch == '"') {
            str = true;
            out[n++] = ch;
        } else if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') {
            out[n++] = ch;
        }
    }
    return n;
}

static size_t skip_ws(const char *p, size_t i, size_t len)
{
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* End (exclusive) of the string that starts at p[i] == '"'. */
static size_t skip_string(const char *p, size_t i, size_t len)
{
    for (i++; i < len; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return len;
}

/* The top-level member "data" of a line the parser accepted (one object,
 * no duplicate keys), as the agent wrote it minus whitespace: malloc'd, or
 * NULL (not found as a plain key, or out of memory). Publishing these bytes
 * rather than cJSON's rendering keeps every number as sent: cJSON prints
 * 51.0 as 51 and rounds integers past 2^53. */
static char *raw_data_member(const char *line, size_t len, size_t *out_len)
{
    size_t i = skip_ws(line, 0, len);
    if (i >= len || line[i] != '{')
        return NULL;
    i++;
    for (;;) {
        i = skip_ws(line, i, len);
        if (i >= len || line[i] != '"')
            return NULL;
        size_t kstart = i;
        i = skip_string(line, i, len);
        bool is_data = i - kstart == 6 && memcmp(line + kstart, "\"data\"", 6) == 0;
        i = skip_ws(line, i, len);
        if (i >= len || line[i] != ':')
            return NULL;
        i = skip_ws(line, i + 1, len);
        size_t vstart = i;
        int depth = 0;
        while (i < len) {
            char ch = line[i];
            if (ch == '"') {
                i = skip_string(line, i, len);
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if (ch == '}' || ch == ']') {
                if (depth == 0)
                    break;
                depth--;
            } else if (ch == ',' && depth == 0) {
                break;
            }
            i++;
        }
        if (is_data) {
            char *out = malloc(i - vstart + 1);
            if (!out)
                return NULL;
            *out_len = json_minify(line + vstart, i - vstart, out);
            out[*out_len] = '\0';
            return out;
        }
        if (i >= len || line[i] != ',')
            return NULL;
        i++;
    }
}

static void handle_data(gw_server *s, gw_conn *c, const eds_msg *m, const char *line, size_t len)
{
    gw_device *d = c->dev;
    s->st.messages_in++;
    d->ctr.records_in++;
    d->ctr.last_seen = time(NULL);
    if (ring_reserve(s, d) != EDS_OK) {
        /* Cannot happen while must_pause() is honoured; refuse rather than grow. */
        send_error(s, c, EDS_PE_BAD_MESSAGE, "window full: wait for acks before sending more");
        return;
    }
    gw_record r = {.seq = m->seq, .kind = REC_DATA, .state = REC_WAITING};
    if (m->seq <= d->last_accepted) {
        r.kind = REC_DUP;
        r.state = REC_DONE;
    } else {
        cJSON *errors = NULL;
        int rc = d->schema ? eds_schema_validate(d->schema, m->data, &errors) : EDS_OK;
        size_t dlen = 0;
        char *data =
            rc == EDS_OK || rc == EDS_ERR_INVALID ? raw_data_member(line, len, &dlen) : NULL;
        if (!data && (data = cJSON_PrintUnformatted(m->data)) != NULL)
            dlen = strlen(data);
        if (rc == EDS_ERR_INVALID) {
            r.kind = REC_REJECT;
            /* rejected topic: {"seq":N,"errors":{...},"data":{...}} */
            char *errs = cJSON_PrintUnformatted(errors);
            cJSON_Delete(errors);
            if (data && errs) {
                size_t elen = strlen(errs), cap = elen + dlen + 96;
                r.payload = malloc(cap);
                if (r.payload)
                    snprintf(r.payload, cap, "{\"seq\":%" PRIu64 ",\"errors\":%s,\"data\":%s}",
                             m->seq, errs, data);
                r.reply = malloc(elen + 96);
                if (r.reply)
                    r.reply_len = (uint32_t)eds_fmt_nack(r.reply, elen + 96, m->seq, errs, elen);
            }
            free(errs);
            free(data);
        } else if (rc == EDS_OK) {
            r.payload = data;
        } else {
            free(data);
        }
        if (!r.payload || (r.kind == REC_REJECT && !r.reply)) {
            free(r.payload);
            free(r.reply);
            eds_log_error("%s: out of memory for a record", d->id);
            send_error(s, c, EDS_PE_SERVER_BUSY, "out of memory");
            return;
        }
        r.len = (uint32_t)strlen(r.payload);
        s->pending_bytes += r.len + r.reply_len;
    }
    if (s->cfg->max_rate > 0) {
        rate_exhausted(s, d, now_ms()); /* refill, then take this record's token */
        d->tokens -= 1;
    }
    if (m->seq > d->last_accepted)
        d->last_accepted = m->seq;
    *ring_at(d, d->count) = r;
    d->count++;
    if (r.state == REC_WAITING)
        ready_push(s, d);
    else
        drain_replies(s, d);
}

/* True when the line is a JSON object whose "type" is "hello", whatever else
 * is wrong with it (only called for lines the strict parser refused). */
static bool looks_like_hello(const char *line, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(line, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    bool hello = cJSON_IsString(type) && strcmp(type->valuestring, "hello") == 0;
    cJSON_Delete(root);
    return hello;
}

typedef struct line_ctx {
    gw_server *s;
    gw_conn *c;
} line_ctx;

static int on_line(void *ctx, const char *line, size_t len)
{
    gw_server *s = ((line_ctx *)ctx)->s;
    gw_conn *c = ((line_ctx *)ctx)->c;
    if (c->state == C_CLOSING)
        return EDS_ERR_STOP;
    eds_msg m;
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_msg_parse(line, len, EDS_TO_GATEWAY, &m, &err);
    if (c->state == C_NEW) {
        if (rc == EDS_OK && m.type == EDS_MSG_HELLO) {
            handle_hello(s, c, &m);
        } else if (rc != EDS_OK && looks_like_hello(line, len)) {
            /* A hello with a bad field (a device id with \u0000, a number for a
             * string): the spec refuses such ids with auth_failed. */
            s->st.auth_failures++;
            send_error(s, c, EDS_PE_AUTH_FAILED, err.msg);
        } else {
            send_error(s, c, EDS_PE_NOT_AUTHENTICATED, "the first message must be hello");
        }
        if (c->fail_at_ms) {
            eds_msg_free(&m);
            return EDS_FRAMER_PAUSE; /* waiting out the login delay */
        }
        eds_msg_free(&m);
        if (c->state == C_CLOSING)
            return EDS_ERR_STOP;
        if (c->state != C_READY)
            return EDS_FRAMER_PAUSE; /* until welcome */
        return must_pause(s, c) ? EDS_FRAMER_PAUSE : EDS_OK;
    }
    if (c->state == C_WAIT_WELCOME) {
        /* Cannot happen: reading is off until welcome. */
        eds_msg_free(&m);
        return EDS_FRAMER_PAUSE;
    }
    if (rc != EDS_OK) {
        eds_proto_error code = rc == EDS_ERR_PARSE ? EDS_PE_BAD_JSON : EDS_PE_BAD_MESSAGE;
        s->st.bad_lines++;
        reject_line(s, c, code, line, len, err.msg);
        if (++c->bad_in_row >= MAX_BAD_IN_ROW) {
            /* bad_message is not fatal by itself: here it is, so close explicitly. */
            send_error(s, c, EDS_PE_BAD_MESSAGE, "too many bad lines in a row");
            close_conn(s, c, "too many bad lines in a row");
            return EDS_ERR_STOP;
        }
        send_error(s, c, code, err.msg);
        return EDS_OK;
    }
    c->bad_in_row = 0;
    switch (m.type) {
    case EDS_MSG_DATA:
        handle_data(s, c, &m, line, len);
        break;
    case EDS_MSG_PING: {
        char pong[32];
        send_line(s, c, pong, eds_fmt_pong(pong, sizeof(pong)));
        break;
    }
    case EDS_MSG_CMD_ACK:
        on_cmd_ack(s, c, m.id);
        break;
    case EDS_MSG_HELLO:
        send_error(s, c, EDS_PE_BAD_MESSAGE, "already authenticated");
        break;
    default:
        break;
    }
    eds_msg_free(&m);
    if (c->state == C_CLOSING)
        return EDS_ERR_STOP;
    return must_pause(s, c) ? EDS_FRAMER_PAUSE : EDS_OK;
}

static void pause_reading(gw_server *s, gw_conn *c)
{
    if (c->reading) {
        c->reading = false;
        update_events(s, c);
    }
}

/* Feeds what the framer kept at the last pause, then reads from the
 * socket again if nothing stands in the way. */
static void conn_readable(gw_server *s, gw_conn *c);
static void conn_consume(gw_server *s, gw_conn *c, size_t n);
static void framer_result(gw_server *s, gw_conn *c, int rc);

static void resume_reading(gw_server *s, gw_conn *c)
{
    if (c->state != C_READY || s->stopping)
        return;
    if (must_pause(s, c))
        return;
    line_ctx lc = {s, c};
    int rc = eds_framer_resume(&c->framer, on_line, &lc);
    if (rc != EDS_OK) {
        framer_result(s, c, rc);
        return;
    }
    if (c->state == C_CLOSING)
        return;
    if (!c->reading) {
        c->reading = true;
        c->last_rx_ms = now_ms(); /* idle time counts only while we read */
        update_events(s, c);
        /* Bytes OpenSSL already decrypted make no epoll event: read them now. */
        if (c->tls && eds_tls_pending(c->tls))
            conn_readable(s, c);
    }
}

static void conn_readable(gw_server *s, gw_conn *c)
{
    /* A TLS connection may hold decrypted bytes past one read: loop while
     * OpenSSL has some and the connection still wants input. */
    do {
        eds_error err;
        ssize_t n = conn_recv(c, s->scratch, READ_CHUNK, &err);
        if (n == 0) {
            close_conn(s, c, "peer closed");
            return;
        }
        if (n == EDS_ERR_AGAIN)
            return;
        if (n < 0) {
            close_conn(s, c, err.msg);
            return;
        }
        conn_consume(s, c, (size_t)n);
    } while (c->tls && c->reading && c->state != C_CLOSING && eds_tls_pending(c->tls));
}

/* Feeds n bytes from the scratch buffer to the connection's framer. */
static void conn_consume(gw_server *s, gw_conn *c, size_t n)
{
    s->st.bytes_in += (uint64_t)n;
    c->last_rx_ms = now_ms();
    line_ctx lc = {s, c};
    framer_result(s, c, eds_framer_feed(&c->framer, s->scratch, n, on_line, &lc));
}

/* What feeding (or resuming) the framer returned, for the connection. */
static void framer_result(gw_server *s, gw_conn *c, int rc)
{
    if (rc == EDS_ERR_TOOLONG) {
        char msg[96];
        snprintf(msg, sizeof(msg), "line longer than max_line (%zu bytes)", s->cfg->max_line);
        s->st.lines_too_long++;
        send_error(s, c, EDS_PE_LINE_TOO_LONG, msg);
    } else if (rc == EDS_ERR_NOMEM) {
        close_conn(s, c, "out of memory");
    } else if (rc == EDS_FRAMER_PAUSE && c->state != C_CLOSING) {
        pause_reading(s, c);
    }
}

static void set_nonblock_opts(int fd)
{
    /* Bounded kernel memory for a peer that never reads its acks: the
     * gateway stops reading it once this and its own 64 KiB are full. */
    int sndbuf = 128 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

/* "ip:port" into buf, the ip alone into host (INET6_ADDRSTRLEN bytes). */
static void peer_name(int fd, char *buf, size_t cap, char *host_out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
                inet_ntop(AF_INET, &a->sin6_addr.s6_addr[12], host, sizeof(host));
            else
                inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        }
    }
    snprintf(buf, cap, "%s:%d", host, port);
    memcpy(host_out, host, sizeof(host));
}

static void accept_conns(gw_server *s, gw_listener *l)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                eds_log_warning("accept on port %d: %s", l->port, strerror(errno));
            return;
        }
        if (s->n_conns >= (size_t)s->cfg->max_clients || (size_t)fd >= s->conns_cap) {
            char line[128];
            size_t n = eds_fmt_error(line, sizeof(line), EDS_PE_SERVER_BUSY,
                                     "max_clients reached, try again later");
            /* On a TLS port a plain line would be noise to the client: just close. */
            ssize_t w = l->tls ? 0 : send(fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            close(fd);
            s->st.server_busy++;
            continue;
        }
        char peer[64], host[INET6_ADDRSTRLEN];
        peer_name(fd, peer, sizeof(peer), host);
        gw_ip *ip = ip_get(s, host);
        if (ip && s->cfg->max_conn_per_ip > 0 && ip->conns >= (uint32_t)s->cfg->max_conn_per_ip) {
            char line[128];
            size_t n = eds_fmt_error(line, sizeof(line), EDS_PE_SERVER_BUSY,
                                     "too many connections from your address");
            ssize_t w = l->tls ? 0 : send(fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)w;
            close(fd);
            s->st.per_ip_refused++;
            continue;
        }
        gw_conn *c = calloc(1, sizeof(*c));
        eds_error err;
        if (!c || (l->tls && eds_tls_conn_create(s->tls_ctx, fd, true, NULL, &c->tls, &err))) {
            close(fd);
            free(c);
            continue;
        }
        c->h.kind = H_CONN;
        c->fd = fd;
        c->state = C_NEW;
        c->created_ms = c->last_rx_ms = now_ms();
        c->reading = true;
        c->handshaking = l->tls;
        c->tls_want = EDS_TLS_WANT_READ;
        c->ip = ip;
        if (ip)
            ip->conns++;
        eds_framer_init(&c->framer, s->cfg->max_line);
        memcpy(c->peer, peer, sizeof(c->peer));
        set_nonblock_opts(fd);
        if (gw_loop_add(s->loop, fd, GW_EV_READ, c) != EDS_OK) {
            if (ip)
                ip->conns--;
            eds_tls_conn_destroy(c->tls);
            close(fd);
            free(c);
            continue;
        }
        s->conns[fd] = c;
        s->n_conns++;
        s->st.connections_total++;
        eds_log_debug("%s: connected", c->peer);
    }
}

/* ---- broker events ------------------------------------------------------ */

static void write_journal(gw_server *s);

/* One session-store mark: device -> "STREAM SEQ", the last record handed to the broker. */
static void apply_mark(void *ctx, const char *device, const char *value)
{
    gw_server *s = ctx;
    char stream[EDS_STREAM_MAX + 1];
    unsigned long long seq;
    if (sscanf(value, "%64s %llu", stream, &seq) != 2 || !eds_stream_id_valid(stream))
        return;
    gw_device *d = device_get(s, device);
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
    journal(s, d);
}

/* With qos 2, every record handed to Paho is in the session store with a mark until
 * the journal covers it. A record whose PUBCOMP came just before a crash is gone from
 * the store but not journaled: the marks raise last_seq over it, so the agent's resend
 * is answered as a duplicate instead of being published twice. Journal first, then
 * forget the marks. */
static void apply_session_marks(gw_server *s, bool confirmed)
{
    if (confirmed)
        gw_publisher_each_mark(s->pub, apply_mark, s);
    else
        eds_log_warning("the broker had lost the gateway's MQTT session: the records in flight "
                        "at the last stop are resent by the agents and may arrive twice");
    write_journal(s);
    gw_state_sync(s->state); /* durable before the marks are gone */
    eds_error err;
    eds_error_clear(&err);
    if (gw_publisher_forget_marks(s->pub, &err) != EDS_OK)
        eds_log_error("mqtt session store: %s", err.msg);
}

static void on_pub_event(void *ctx, const gw_pub_event *ev)
{
    gw_server *s = ctx;
    switch (ev->type) {
    case GW_PUB_DONE:
        on_publish_result(s, ev->token, true);
        break;
    case GW_PUB_FAILED:
        on_publish_result(s, ev->token, false);
        break;
    case GW_PUB_CONNECTED:
        s->broker_up = true;
        eds_log_notice("connected to the broker at %s:%d", s->cfg->broker_host,
                       s->cfg->broker_port);
        /* Status of every known device, so none stays online that is not
         * (e.g. after a crash of the gateway or a broker without persistence).
         * Only devices that ever connected: a command for an unknown id also
         * creates an entry, and it must not get a status. */
        for (size_t i = 0; i < s->n_devices; i++)
            if (s->devices[i]->journaled)
                publish_status(s, s->devices[i]);
        break;
    case GW_PUB_DISCONNECTED:
        if (s->broker_up)
            eds_log_warning("lost the broker; holding acks until it is back");
        s->broker_up = false;
        break;
    case GW_PUB_MESSAGE:
        on_mqtt_message(s, ev);
        break;
    case GW_PUB_RESTORED:
        apply_session_marks(s, ev->qos == 0);
        s->restoring = false;
        for (size_t fd = 0; fd < s->conns_cap; fd++)
            if (s->conns[fd] && s->conns[fd]->state == C_WAIT_WELCOME)
                try_welcome(s, s->conns[fd]);
        break;
    }
}

/* ---- signals, timers, stats --------------------------------------------- */

static void reload(gw_server *s)
{
    eds_error err;
    eds_error_clear(&err);
    gw_schemas *ns = NULL;
    if (gw_schemas_load(s->cfg, &ns, &err) != EDS_OK) {
        eds_log_error("SIGHUP: keeping the old schemas: %s", err.msg);
    } else {
        gw_schemas_destroy(s->schemas);
        s->schemas = ns;
        for (size_t i = 0; i < s->n_devices; i++)
            s->devices[i]->schema = gw_schemas_for(ns, s->devices[i]->id);
        eds_log_notice("SIGHUP: schemas reloaded");
    }
    if (s->tls_ctx) {
        eds_tls_server_opts o = {s->cfg->certfile, s->cfg->keyfile, s->cfg->cafile,
                                 s->cfg->require_certificate};
        eds_tls_ctx *nc = NULL;
        if (eds_tls_server_ctx_create(&o, &nc, &err) != EDS_OK) {
            eds_log_error("SIGHUP: keeping the old certificates: %s", err.msg);
        } else {
            eds_tls_ctx_destroy(s->tls_ctx); /* live connections keep their reference */
            s->tls_ctx = nc;
            eds_log_notice("SIGHUP: certificates reloaded");
        }
    }
    if (s->cfg->password_file) {
        eds_passwd *np = NULL;
        if (eds_passwd_load(s->cfg->password_file, &np, &err) != EDS_OK) {
            eds_log_error("SIGHUP: keeping the old password file: %s", err.msg);
        } else {
            eds_passwd_destroy(s->passwd);
            s->passwd = np;
            if (eds_passwd_world_readable(s->cfg->password_file))
                eds_log_warning("%s is readable by every user: chmod 600 it (or 640 with a "
                                "group)",
                                s->cfg->password_file);
            eds_log_notice("SIGHUP: password file reloaded (%zu devices)", eds_passwd_count(np));
        }
    }
}

static void begin_stop(gw_server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->stop_deadline_ms = now_ms() + (int64_t)(s->cfg->shutdown_timeout * 1000);
    eds_log_notice("shutting down: finishing publishes in flight");
    for (size_t i = 0; i < s->n_listeners; i++) {
        gw_loop_del(s->loop, s->listeners[i].fd);
        close(s->listeners[i].fd);
        s->listeners[i].fd = -1;
    }
    for (size_t fd = 0; fd < s->conns_cap; fd++)
        if (s->conns[fd])
            pause_reading(s, s->conns[fd]);
}

static void on_signal(gw_server *s)
{
    struct signalfd_siginfo si;
    while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP)
            reload(s);
        else
            begin_stop(s);
    }
}

static size_t devices_online(const gw_server *s)
{
    size_t online = 0;
    for (size_t i = 0; i < s->n_devices; i++)
        online += s->devices[i]->online;
    return online;
}

static void metrics_device(void *ctx, size_t i, gw_metrics_device *out)
{
    const gw_device *d = ((const gw_server *)ctx)->devices[i];
    *out = (gw_metrics_device){.id = d->id, .c = &d->ctr, .online = d->online};
}

/* A scrape of /metrics waits: render what the loop knows now (gw_metrics.h). */
static void serve_metrics(gw_server *s)
{
    if (!gw_metrics_wanted(s->metrics))
        return;
    gw_metrics_snapshot snap = {
        .stats = &s->st,
        .uptime_s = (now_ms() - s->started_ms) / 1000,
        .connections = s->n_conns,
        .devices_online = devices_online(s),
        .devices_known = s->n_devices,
        .pending_bytes = s->pending_bytes,
        .inflight = gw_publisher_inflight(s->pub),
        .broker_connected = s->broker_up,
        .device = metrics_device,
        .ctx = s,
    };
    gw_metrics_publish(s->metrics, &snap);
}

static void publish_stats(gw_server *s)
{
    char topic[TOPIC_MAX], body[1024];
    snprintf(topic, sizeof(topic), "%s/_gateway/stats", s->cfg->topic_prefix);
    size_t online = devices_online(s);
    int n = snprintf(
        body, sizeof(body),
        "{\"uptime\":%" PRId64 ",\"connections\":%zu,\"connections_total\":%" PRIu64
        ",\"devices_online\":%zu,\"devices_known\":%zu,\"messages_in\":%" PRIu64
        ",\"acked\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"rejected\":%" PRIu64
        ",\"bad_lines\":%" PRIu64 ",\"auth_failures\":%" PRIu64 ",\"timeouts\":%" PRIu64
        ",\"server_busy\":%" PRIu64 ",\"replaced\":%" PRIu64 ",\"cmds_in\":%" PRIu64
        ",\"cmds_delivered\":%" PRIu64 ",\"cmds_dropped\":%" PRIu64 ",\"bytes_in\":%" PRIu64
        ",\"bytes_out\":%" PRIu64 ",\"tls_failures\":%" PRIu64 ",\"per_ip_refused\":%" PRIu64
        ",\"rate_limited\":%" PRIu64 ",\"login_delays\":%" PRIu64 ",\"lines_too_long\":%" PRIu64
        ",\"pending_bytes\":%zu,\"inflight\":%zu,\"broker\":\"%s\"}",
        (now_ms() - s->started_ms) / 1000, s->n_conns, s->st.connections_total, online,
        s->n_devices, s->st.messages_in, s->st.acked, s->st.duplicates, s->st.rejected,
        s->st.bad_lines, s->st.auth_failures, s->st.timeouts, s->st.server_busy, s->st.replaced,
        s->st.cmds_in, s->st.cmds_delivered, s->st.cmds_dropped, s->st.bytes_in, s->st.bytes_out,
        s->st.tls_failures, s->st.per_ip_refused, s->st.rate_limited, s->st.login_delays,
        s->st.lines_too_long, s->pending_bytes, gw_publisher_inflight(s->pub),
        s->broker_up ? "connected" : "disconnected");
    publish_untracked(s, topic, body, (size_t)n, 0, false);
}

static void tick(gw_server *s)
{
    int64_t now = now_ms();
    int64_t auth_ms = (int64_t)(s->cfg->auth_timeout * 1000);
    int64_t idle_ms = (int64_t)(s->cfg->idle_timeout * 1000);
    for (size_t fd = 0; fd < s->conns_cap; fd++) {
        gw_conn *c = s->conns[fd];
        if (!c || c->state == C_CLOSING)
            continue;
        if (c->fail_at_ms && now >= c->fail_at_ms) {
            send_error(s, c, EDS_PE_AUTH_FAILED, "unknown device or wrong password");
        } else if (c->state == C_NEW && !c->fail_at_ms && now - c->created_ms >= auth_ms) {
            s->st.timeouts++;
            send_error(s, c, EDS_PE_TIMEOUT, "no hello within auth_timeout");
        } else if (c->state == C_READY && c->reading && idle_ms > 0 &&
                   now - c->last_rx_ms >= idle_ms) {
            s->st.timeouts++;
            send_error(s, c, EDS_PE_TIMEOUT, "idle past idle_timeout");
        } else if (c->state == C_READY && !c->reading && s->cfg->max_rate > 0) {
            resume_reading(s, c); /* a rate-limited connection whose bucket refilled */
        }
    }
    if (now >= s->next_ip_sweep_ms) {
        s->next_ip_sweep_ms = now + 10000;
        ip_sweep(s, now);
    }
    if (s->cfg->stats_interval > 0 && now >= s->next_stats_ms) {
        s->next_stats_ms = now + (int64_t)(s->cfg->stats_interval * 1000);
        publish_stats(s);
    }
}

typedef struct state_iter {
    gw_server *s;
    size_t i;
} state_iter;

static int state_next(void *ctx, const char **device, const char **stream, uint64_t *last_seq)
{
    state_iter *it = ctx;
    if (it->i >= it->s->n_devices)
        return 0;
    gw_device *d = it->s->devices[it->i++];
    while (!d->journaled) { /* ids known only from a command get no entry */
        if (it->i >= it->s->n_devices)
            return 0;
        d = it->s->devices[it->i++];
    }
    *device = d->id;
    *stream = d->stream;
    *last_seq = d->last_seq;
    return 1;
}

/* Writes the devices marked by journal() with one write. */
static void write_journal(gw_server *s)
{
    while (s->jlist) {
        gw_device *d = s->jlist;
        s->jlist = d->jnext;
        d->jdirty = false;
        if (gw_state_append(s->state, d->id, d->stream, d->last_seq) != EDS_OK)
            eds_log_error("state journal: buffer full or out of memory");
    }
    eds_error err;
    if (gw_state_flush(s->state, &err) != EDS_OK)
        eds_log_error("%s", err.msg); /* acks still go: the broker has the records */
}

/* End of an iteration: journal first, then the acks it covers, then closes. */
static void end_batch(gw_server *s)
{
    pump(s);
    write_journal(s);
    eds_error err;
    int64_t now = now_ms();
    if (now >= s->next_compact_ms && gw_state_wants_compaction(s->state, s->n_devices)) {
        state_iter it = {s, 0};
        if (gw_state_compact(s->state, state_next, &it, &err) != EDS_OK) {
            eds_log_error("state compaction (retried in 60 s): %s", err.msg);
            s->next_compact_ms = now + 60000;
        }
    }
    while (s->dirty) {
        gw_conn *c = s->dirty;
        s->dirty = c->next_dirty;
        c->dirty = false;
        flush_out(s, c);
    }
    while (s->closing) {
        gw_conn *c = s->closing;
        s->closing = c->next_closing;
        free_conn(s, c);
    }
    if (s->paused_global && s->pending_bytes <= s->cfg->max_pending_bytes) {
        s->paused_global = false;
        for (size_t fd = 0; fd < s->conns_cap; fd++)
            if (s->conns[fd] && !s->conns[fd]->reading)
                resume_reading(s, s->conns[fd]);
    }
}

/* ---- setup and run ------------------------------------------------------ */

static int open_listener(gw_server *s, const gw_listener_conf *lc, eds_error *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%d", lc->port);
    const char *host = lc->address[0] ? lc->address : "::";
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0 && !lc->address[0])
        gai = getaddrinfo("0.0.0.0", port, &hints, &res);
    if (gai != 0)
        return eds_error_set(err, EDS_ERR_IO, "listener %s port %d: %s", host, lc->port,
                             gai_strerror(gai));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 512) != 0) {
            close(fd);
            fd = -1;
        }
    }
    int saved = errno;
    freeaddrinfo(res);
    if (fd < 0)
        return eds_error_set(err, EDS_ERR_IO, "listener %s port %d: %s", host, lc->port,
                             strerror(saved));
    gw_listener *l = &s->listeners[s->n_listeners++];
    l->h.kind = H_LISTENER;
    l->fd = fd;
    l->port = lc->port;
    l->tls = lc->tls;
    if (gw_loop_add(s->loop, fd, GW_EV_READ, l) != EDS_OK)
        return eds_error_set(err, EDS_ERR_IO, "epoll: %s", strerror(errno));
    eds_log_notice("listening on %s port %d", lc->address[0] ? lc->address : "*", lc->port);
    return EDS_OK;
}

static void state_loaded(void *ctx, const char *device, const char *stream, uint64_t last_seq)
{
    gw_server *s = ctx;
    gw_device *d = device_get(s, device);
    if (!d)
        return;
    snprintf(d->stream, sizeof(d->stream), "%s", stream);
    d->last_seq = d->last_accepted = last_seq;
    d->journaled = true;
    d->since = time(NULL);
}

static int read_secret(const char *path, char **out, eds_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return eds_error_set(err, EDS_ERR_IO, "%s: %s", path, strerror(errno));
    char buf[256];
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    *out = strdup(buf);
    return *out ? EDS_OK : EDS_ERR_NOMEM;
}

int gw_server_create(const gw_config *cfg, gw_server **out, eds_error *err)
{
    *out = NULL;
    gw_server *s = calloc(1, sizeof(*s));
    if (!s)
        return EDS_ERR_NOMEM;
    s->cfg = cfg;
    s->sig_fd = -1;
    s->started_ms = now_ms();
    char *broker_pw = NULL;
    int rc = EDS_ERR_NOMEM;
    s->scratch = malloc(READ_CHUNK);
    s->conns_cap = (size_t)cfg->max_clients + 64;
    s->conns = calloc(s->conns_cap, sizeof(*s->conns));
    s->iptab = calloc(IPTAB_SIZE, sizeof(*s->iptab));
    eds_tls_server_opts tls_opts = {cfg->certfile, cfg->keyfile, cfg->cafile,
                                    cfg->require_certificate};
    if (!s->scratch || !s->conns || !s->iptab || htab_grow(s) != EDS_OK)
        goto err;
    if ((rc = gw_schemas_load(cfg, &s->schemas, err)) != EDS_OK)
        goto err;
    if (cfg->password_file) {
        if ((rc = eds_passwd_load(cfg->password_file, &s->passwd, err)) != EDS_OK)
            goto err;
        if (eds_passwd_world_readable(cfg->password_file))
            eds_log_warning("%s is readable by every user: chmod 600 it (or 640 with a group)",
                            cfg->password_file);
    }
    if ((rc = gw_state_open(cfg->state_dir, state_loaded, s, &s->state, err)) != EDS_OK)
        goto err;
    if ((rc = gw_loop_create(&s->loop, err)) != EDS_OK)
        goto err;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].tls && !s->tls_ctx &&
            (rc = eds_tls_server_ctx_create(&tls_opts, &s->tls_ctx, err)) != EDS_OK)
            goto err;
        if ((rc = open_listener(s, &cfg->listeners[i], err)) != EDS_OK)
            goto err;
    }
    /* Signals through a signalfd so handlers never run inside the loop. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->sig_h.kind = H_SIGNAL;
    if (s->sig_fd < 0 || gw_loop_add(s->loop, s->sig_fd, GW_EV_READ, &s->sig_h) != EDS_OK) {
        rc = eds_error_set(err, EDS_ERR_IO, "signalfd: %s", strerror(errno));
        goto err;
    }
    if (cfg->metrics.port) {
        if ((rc = gw_metrics_create(cfg->metrics.address, cfg->metrics.port, &s->metrics, err)) !=
            EDS_OK)
            goto err;
        s->metrics_h.kind = H_METRICS;
        if (gw_loop_add(s->loop, gw_metrics_fd(s->metrics), GW_EV_READ, &s->metrics_h) != EDS_OK) {
            rc = eds_error_set(err, EDS_ERR_IO, "metrics: cannot watch its eventfd");
            goto err;
        }
    }
    /* MQTT */
    char client_id[128], host[64] = "localhost", will_topic[TOPIC_MAX], sub[TOPIC_MAX], online[128],
                         since[32];
    gethostname(host, sizeof(host) - 1);
    snprintf(client_id, sizeof(client_id), "eds-gateway-%s", host);
    snprintf(will_topic, sizeof(will_topic), "%s/_gateway/status", cfg->topic_prefix);
    snprintf(sub, sizeof(sub), "%s/+/cmd", cfg->topic_prefix);
    rfc3339(time(NULL), since, sizeof(since));
    snprintf(online, sizeof(online), "{\"online\":true,\"since\":\"%s\"}", since);
    if (cfg->broker_password_file && (rc = read_secret(cfg->broker_password_file, &broker_pw, err)))
        goto err;
    gw_publisher_config pc = {
        .host = cfg->broker_host,
        .port = cfg->broker_port,
        .client_id = cfg->client_id ? cfg->client_id : client_id,
        .username = cfg->broker_username,
        .password = broker_pw,
        .will_topic = will_topic,
        .will_payload = "{\"online\":false}",
        .online_payload = online,
        .subscribe_topic = sub,
        .max_inflight = cfg->max_inflight,
        .cafile = cfg->broker_cafile,
        .certfile = cfg->broker_certfile,
        .keyfile = cfg->broker_keyfile,
        /* qos 2: exactly once, with the MQTT session persisted beside the journal */
        .persistent = cfg->qos == 2,
        .session_dir = cfg->state_dir,
        .receive_maximum = cfg->broker_receive_maximum,
    };
    if ((rc = gw_publisher_create(&pc, &s->pub, err)) != EDS_OK)
        goto err;
    s->restoring = gw_publisher_restoring(s->pub);
    if (!s->restoring)
        apply_session_marks(s, true);
    s->pub_h.kind = H_PUBLISHER;
    if (gw_loop_add(s->loop, gw_publisher_fd(s->pub), GW_EV_READ, &s->pub_h) != EDS_OK ||
        (rc = gw_publisher_start(s->pub)) != EDS_OK) {
        rc = eds_error_set(err, EDS_ERR_IO, "cannot start the MQTT client");
        goto err;
    }
    free(broker_pw);
    *out = s;
    return EDS_OK;
err:
    free(broker_pw);
    gw_server_destroy(s);
    return rc;
}

/* Advances a TLS handshake; once done, the connection reads like any other. */
static void tls_step(gw_server *s, gw_conn *c)
{
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_tls_handshake(c->tls, &c->tls_want, &err);
    if (rc == EDS_ERR_AGAIN) {
        update_events(s, c);
        return;
    }
    if (rc != EDS_OK) {
        s->st.tls_failures++;
        eds_log_notice("%s: TLS handshake failed: %s", c->peer,
                       rc == EDS_ERR_CLOSED ? "peer closed" : err.msg);
        close_conn(s, c, "TLS handshake failed");
        return;
    }
    c->handshaking = false;
    eds_log_debug("%s: TLS %s %s", c->peer, eds_tls_protocol(c->tls), eds_tls_cipher(c->tls));
    c->writing = c->out_off < c->out_len;
    update_events(s, c);
    if (eds_tls_pending(c->tls))
        conn_readable(s, c);
}

static void on_ready(void *ctx, void *ptr, uint32_t events)
{
    gw_server *s = ctx;
    gw_handle *h = ptr;
    switch (h->kind) {
    case H_LISTENER:
        if (!s->stopping)
            accept_conns(s, (gw_listener *)h);
        break;
    case H_PUBLISHER:
        gw_publisher_dispatch(s->pub, on_pub_event, s);
        break;
    case H_SIGNAL:
        on_signal(s);
        break;
    case H_METRICS:
        serve_metrics(s);
        break;
    case H_CONN: {
        gw_conn *c = (gw_conn *)h;
        if (c->state == C_CLOSING)
            break;
        if (c->handshaking) {
            tls_step(s, c);
            break;
        }
        if (events & GW_EV_WRITE)
            mark_dirty(s, c); /* flushed in end_batch, after the journal */
        if ((events & (GW_EV_READ | GW_EV_ERROR)) && c->reading)
            conn_readable(s, c);
        else if ((events & GW_EV_ERROR) && c->state != C_CLOSING)
            close_conn(s, c, "connection error");
        break;
    }
    }
}

static bool drained(gw_server *s)
{
    for (size_t i = 0; i < s->n_devices; i++)
        if (s->devices[i]->count)
            return false;
    return true;
}

/* Sends shutting_down to everyone, marks devices offline, flushes. */
static void finish_stop(gw_server *s)
{
    for (size_t fd = 0; fd < s->conns_cap; fd++) {
        gw_conn *c = s->conns[fd];
        if (c && c->state != C_CLOSING)
            send_error(s, c, EDS_PE_SHUTTING_DOWN, "the gateway is stopping");
    }
    end_batch(s);
    if (s->broker_up) { /* the offline statuses just published */
        gw_publisher_flush(s->pub, 2000);
        gw_publisher_dispatch(s->pub, on_pub_event, s);
    }
}

int gw_server_run(gw_server *s)
{
    int64_t next_tick = now_ms() + TICK_MS;
    for (;;) {
        int64_t now = now_ms();
        int timeout = next_tick > now ? (int)(next_tick - now) : 0;
        if (gw_loop_wait(s->loop, timeout, on_ready, s) < 0) {
            eds_log_error("epoll_wait: %s", strerror(errno));
            return EDS_ERR_IO;
        }
        now = now_ms();
        if (now >= next_tick) {
            tick(s);
            next_tick = now + TICK_MS;
        }
        end_batch(s);
        if (s->stopping && (drained(s) || now >= s->stop_deadline_ms)) {
            if (!drained(s))
                eds_log_warning("shutdown_timeout: records still unconfirmed; agents resend "
                                "them");
            break;
        }
    }
    finish_stop(s);
    eds_log_notice("stopped");
    return EDS_OK;
}

void gw_server_destroy(gw_server *s)
{
    if (!s)
        return;
    if (s->conns)
        for (size_t fd = 0; fd < s->conns_cap; fd++)
            if (s->conns[fd])
                free_conn(s, s->conns[fd]);
    gw_publisher_destroy(s->pub);
    for (size_t i = 0; i < s->n_listeners; i++)
        if (s->listeners[i].fd >= 0)
            close(s->listeners[i].fd);
    for (size_t i = 0; i < s->n_devices; i++) {
        gw_device *d = s->devices[i];
        for (uint32_t k = 0; k < d->count; k++)
            record_release(s, ring_at(d, k));
        while (d->held) {
            gw_cmd *n = d->held->next;
            free(d->held);
            d->held = n;
        }
        free(d->ring);
        free(d);
    }
    free(s->devices);
    free(s->htab);
    gw_state_close(s->state);
    gw_schemas_destroy(s->schemas);
    eds_passwd_destroy(s->passwd);
    eds_tls_ctx_destroy(s->tls_ctx);
    if (s->iptab) {
        for (size_t i = 0; i < IPTAB_SIZE; i++)
            while (s->iptab[i]) {
                gw_ip *n = s->iptab[i]->next;
                free(s->iptab[i]);
                s->iptab[i] = n;
            }
        free(s->iptab);
    }
    gw_metrics_destroy(s->metrics);
    gw_loop_destroy(s->loop);
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    free(s->conns);
    free(s->scratch);
    free(s->line_buf);
    free(s);
}
