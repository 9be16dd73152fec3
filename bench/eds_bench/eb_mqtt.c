/*
 * eb_mqtt.c - the MQTT side of eds-bench: the subscriber that counts every
 * record by (device, n), and the ceiling publishers that send the same
 * records straight to the broker.
 *
 * Both speak MQTT 3.1.1 through the small client below instead of a library:
 * it reads whatever the socket has (many packets per recv) and answers a
 * whole batch of PUBLISHes with one send of PUBACKs. Measured here, a
 * libmosquitto subscriber (one select and four recv calls per message) fell
 * behind at about 4,000 messages/s on this 2-core machine, the broker then
 * dropped messages past max_queued_messages, and the "ceiling" measured the
 * subscriber instead of the broker.
 *
 * The subscriber runs on its own thread; its per-device tables are touched
 * only there until eb_sub_stop() has joined it. The publishers are driven by
 * the calling thread with one poll() over all their sockets.
 */
#include "eb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* A minimal MQTT 3.1.1 client connection */

enum {
    MQ_CONNECT = 1,
    MQ_CONNACK = 2,
    MQ_PUBLISH = 3,
    MQ_PUBACK = 4,
    MQ_PUBREC = 5,
    MQ_PUBREL = 6,
    MQ_PUBCOMP = 7,
    MQ_SUBSCRIBE = 8,
    MQ_SUBACK = 9,
};

#define MQ_IN_MAX (1u << 20)  /* longest packet we accept: 1 MiB */
#define MQ_OUT_MAX (8u << 20) /* bytes queued for the socket before we stop producing */

typedef struct mq {
    int fd;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    char err[120];
} mq;

/* A packet handed to the caller: type, flags (low nibble), body. */
typedef struct mq_pkt {
    int type, flags;
    const unsigned char *body;
    size_t len;
} mq_pkt;

static void mq_free(mq *m)
{
    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    free(m->in);
    free(m->out);
    m->in = m->out = NULL;
}

static bool mq_reserve(mq *m, size_t more)
{
    if (m->out_off > 0 && m->out_off == m->out_len)
        m->out_off = m->out_len = 0;
    if (m->out_len + more <= m->out_cap)
        return true;
    if (m->out_off > 0) {
        memmove(m->out, m->out + m->out_off, m->out_len - m->out_off);
        m->out_len -= m->out_off;
        m->out_off = 0;
        if (m->out_len + more <= m->out_cap)
            return true;
    }
    size_t cap = m->out_cap ? m->out_cap : 65536;
    while (cap < m->out_len + more)
        cap *= 2;
    char *p = realloc(m->out, cap);
    if (p == NULL)
        return false;
    m->out = p;
    m->out_cap = cap;
    return true;
}

/* Appends one packet: fixed header byte, remaining length, then parts. */
static bool mq_put(mq *m, unsigned char hdr, const void *a, size_t alen, const void *b, size_t blen,
                   const void *c, size_t clen)
{
    size_t rem = alen + blen + clen;
    if (!mq_reserve(m, rem + 5))
        return false;
    unsigned char *p = (unsigned char *)m->out + m->out_len;
    size_t n = 0;
    p[n++] = hdr;
    size_t x = rem;
    do {
        unsigned char byte = (unsigned char)(x % 128);
        x /= 128;
        p[n++] = (unsigned char)(byte | (x > 0 ? 0x80 : 0));
    } while (x > 0);
    if (alen)
        memcpy(p + n, a, alen);
    if (blen)
        memcpy(p + n + alen, b, blen);
    if (clen)
        memcpy(p + n + alen + blen, c, clen);
    m->out_len += n + rem;
    return true;
}

/* Writes "<u16 length><bytes>" to buf; returns bytes written. */
static size_t mq_str(unsigned char *buf, const char *s)
{
    size_t n = strlen(s);
    buf[0] = (unsigned char)(n >> 8);
    buf[1] = (unsigned char)n;
    memcpy(buf + 2, s, n);
    return n + 2;
}

static bool mq_ack(mq *m, int type, unsigned pid)
{
    unsigned char b[2] = {(unsigned char)(pid >> 8), (unsigned char)pid};
    return mq_put(m, (unsigned char)(type << 4 | (type == MQ_PUBREL ? 2 : 0)), b, 2, NULL, 0, NULL,
                  0);
}

/* Sends what is queued; returns -1 on a dead connection, else 0. */
static int mq_flush(mq *m)
{
    if (eb_send_some(m->fd, m->out, m->out_len, &m->out_off) != 0) {
        snprintf(m->err, sizeof(m->err), "send: %s", strerror(errno));
        return -1;
    }
    if (m->out_off == m->out_len)
        m->out_off = m->out_len = 0;
    return 0;
}

static bool mq_want_write(const mq *m)
{
    return m->out_off < m->out_len;
}

/* Reads what the socket has (one recv of up to 256 KiB). Returns bytes read, 0 for
 * nothing yet, -1 when the connection is gone. */
static ssize_t mq_read(mq *m)
{
    if (m->in_cap - m->in_len < 262144) {
        size_t cap = m->in_cap ? m->in_cap * 2 : 524288;
        if (cap > 2 * MQ_IN_MAX + 524288)
            cap = 2 * MQ_IN_MAX + 524288;
        if (cap <= m->in_cap) {
            snprintf(m->err, sizeof(m->err), "input buffer full");
            return -1;
        }
        char *p = realloc(m->in, cap);
        if (p == NULL)
            return -1;
        m->in = p;
        m->in_cap = cap;
    }
    for (;;) {
        ssize_t n = recv(m->fd, m->in + m->in_len, m->in_cap - m->in_len, 0);
        if (n > 0) {
            m->in_len += (size_t)n;
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        snprintf(m->err, sizeof(m->err), "%s", n == 0 ? "closed by the broker" : strerror(errno));
        return -1;
    }
}

/* Calls fn for every complete packet in the input; keeps a partial one. Returns -1 on
 * a malformed packet or when fn returns non-zero. */
static int mq_parse(mq *m, int (*fn)(void *ctx, const mq_pkt *p), void *ctx)
{
    size_t off = 0;
    int rc = 0;
    const unsigned char *in = (const unsigned char *)m->in;
    while (m->in_len - off >= 2) {
        size_t rem = 0, mult = 1, i = 1;
        bool complete = false;
        while (off + i < m->in_len && i <= 4) {
            unsigned char b = in[off + i++];
            rem += (size_t)(b & 0x7f) * mult;
            mult *= 128;
            if (!(b & 0x80)) {
                complete = true;
                break;
            }
        }
        if (!complete) {
            if (i > 4) {
                snprintf(m->err, sizeof(m->err), "malformed remaining length");
                return -1;
            }
            break;
        }
        if (rem > MQ_IN_MAX) {
            snprintf(m->err, sizeof(m->err), "packet of %zu bytes", rem);
            return -1;
        }
        if (m->in_len - off - i < rem)
            break;
        mq_pkt p = {in[off] >> 4, in[off] & 0x0f, in + off + i, rem};
        off += i + rem;
        if (fn(ctx, &p) != 0) {
            rc = -1;
            break;
        }
    }
    memmove(m->in, m->in + off, m->in_len - off);
    m->in_len -= off;
    return rc;
}

typedef struct connack_ctx {
    int code; /* -1 until CONNACK */
} connack_ctx;

static int on_connack(void *ctx, const mq_pkt *p)
{
    connack_ctx *c = ctx;
    if (p->type == MQ_CONNACK && p->len >= 2)
        c->code = p->body[1];
    return 0;
}

/* Connects to host:port (non-blocking socket), sends CONNECT (clean session, no
 * keepalive) and waits for CONNACK until deadline. Returns 0 or -1 (m->err says why). */
static int mq_connect(mq *m, const char *host, int port, const char *client_id, const char *user,
                      const char *password, uint64_t deadline_ns)
{
    memset(m, 0, sizeof(*m));
    m->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (m->fd < 0) {
        snprintf(m->err, sizeof(m->err), "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    if (connect(m->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        snprintf(m->err, sizeof(m->err), "connect to %s:%d: %s", host, port, strerror(errno));
        return -1;
    }
    unsigned char vh[10] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0};
    unsigned char pl[1024];
    size_t pn = 0;
    if (strlen(client_id) + (user ? strlen(user) : 0) + (password ? strlen(password) : 0) > 1000) {
        snprintf(m->err, sizeof(m->err), "credentials too long");
        return -1;
    }
    pn += mq_str(pl + pn, client_id);
    if (user != NULL) {
        vh[7] |= 0x80;
        pn += mq_str(pl + pn, user);
        if (password != NULL) {
            vh[7] |= 0x40;
            pn += mq_str(pl + pn, password);
        }
    }
    if (!mq_put(m, MQ_CONNECT << 4, vh, sizeof(vh), pl, pn, NULL, 0))
        return -1;
    connack_ctx cc = {-1};
    while (cc.code < 0) {
        uint64_t now = eb_now_ns();
        if (now >= deadline_ns) {
            snprintf(m->err, sizeof(m->err), "no CONNACK from %s:%d before the deadline", host,
                     port);
            return -1;
        }
        struct pollfd pfd = {m->fd, (short)(POLLIN | (mq_want_write(m) ? POLLOUT : 0)), 0};
        poll(&pfd, 1, 100);
        if ((pfd.revents & POLLOUT) && mq_flush(m) != 0)
            return -1;
        if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
            if (mq_read(m) < 0 || mq_parse(m, on_connack, &cc) != 0)
                return -1;
        }
    }
    if (cc.code != 0) {
        static const char *const why[] = {
            "accepted",           "bad protocol version",      "client id refused",
            "server unavailable", "bad user name or password", "not authorised"};
        snprintf(m->err, sizeof(m->err), "broker refused the connection: %s",
                 cc.code < 6 ? why[cc.code] : "unknown reason");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Subscriber */

struct eb_sub {
    mq m;
    uint32_t devices;
    uint64_t records;
    char prefix[160]; /* "<topic_prefix>/<device_prefix>-" */
    size_t prefix_len;
    uint8_t *seen;    /* devices * records bits */
    uint64_t *last_n; /* per device: highest n seen */
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    _Atomic uint64_t unique;
    _Atomic uint64_t last_ns;
    uint64_t now;
    uint64_t first_ns;
    uint64_t delivered, duplicated, out_of_order, foreign;
    char err[160];
    int suback; /* -1 until SUBACK, then the granted QoS (0x80 refused) */
};

static uint64_t parse_u64(const char *p, const char *e, const char **after, bool *ok)
{
    uint64_t v = 0;
    const char *start = p;
    while (p < e && *p >= '0' && *p <= '9' && v < UINT64_MAX / 10)
        v = v * 10 + (uint64_t)(*p++ - '0');
    *ok = p > start;
    *after = p;
    return v;
}

static void sub_count(eb_sub *s, const char *topic, size_t tlen, const char *pl, size_t plen)
{
    const char *te = topic + tlen;
    bool ok;
    const char *after;
    if (s->first_ns == 0)
        s->first_ns = s->now;
    s->delivered++;
    if (tlen <= s->prefix_len || memcmp(topic, s->prefix, s->prefix_len) != 0) {
        s->foreign++;
        return;
    }
    uint64_t dev = parse_u64(topic + s->prefix_len, te, &after, &ok);
    if (!ok || (size_t)(te - after) != 5 || memcmp(after, "/data", 5) != 0 || dev >= s->devices) {
        s->foreign++;
        return;
    }
    const char *k =
        plen >= 5 && memcmp(pl, "{\"n\":", 5) == 0 ? pl + 1 : memmem(pl, plen, "\"n\":", 4);
    if (k == NULL) {
        s->foreign++;
        return;
    }
    uint64_t n = parse_u64(k + 4, pl + plen, &after, &ok);
    if (!ok || n < 1 || n > s->records) {
        s->foreign++;
        return;
    }
    uint64_t bit = dev * s->records + (n - 1);
    uint8_t mask = (uint8_t)(1u << (bit & 7));
    if (s->seen[bit >> 3] & mask) {
        s->duplicated++;
        return;
    }
    s->seen[bit >> 3] |= mask;
    if (n < s->last_n[dev])
        s->out_of_order++;
    else
        s->last_n[dev] = n;
    atomic_fetch_add_explicit(&s->unique, 1, memory_order_relaxed);
}

static int sub_packet(void *ctx, const mq_pkt *p)
{
    eb_sub *s = ctx;
    switch (p->type) {
    case MQ_PUBLISH: {
        int qos = (p->flags >> 1) & 3;
        if (p->len < 2)
            return -1;
        size_t tlen = (size_t)p->body[0] << 8 | p->body[1];
        size_t off = 2 + tlen + (qos > 0 ? 2 : 0);
        if (off > p->len)
            return -1;
        sub_count(s, (const char *)p->body + 2, tlen, (const char *)p->body + off, p->len - off);
        if (qos > 0) {
            unsigned pid = (unsigned)p->body[2 + tlen] << 8 | p->body[3 + tlen];
            if (!mq_ack(&s->m, qos == 1 ? MQ_PUBACK : MQ_PUBREC, pid))
                return -1;
        }
        atomic_store_explicit(&s->last_ns, s->now, memory_order_relaxed);
        return 0;
    }
    case MQ_PUBREL:
        if (p->len < 2)
            return -1;
        return mq_ack(&s->m, MQ_PUBCOMP, (unsigned)p->body[0] << 8 | p->body[1]) ? 0 : -1;
    case MQ_SUBACK:
        if (p->len >= 3)
            s->suback = p->body[2];
        return 0;
    default:
        return 0;
    }
}

/* One step of the subscriber's loop: wait up to timeout_ms, read, answer. */
static int sub_step(eb_sub *s, int timeout_ms)
{
    struct pollfd pfd = {s->m.fd, (short)(POLLIN | (mq_want_write(&s->m) ? POLLOUT : 0)), 0};
    int n = poll(&pfd, 1, timeout_ms);
    if (n < 0 && errno != EINTR)
        return -1;
    if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
        for (int i = 0; i < 8; i++) {
            ssize_t got = mq_read(&s->m);
            if (got < 0)
                return -1;
            if (got == 0)
                break;
            s->now = eb_now_ns();
            if (mq_parse(&s->m, sub_packet, s) != 0)
                return -1;
        }
    }
    return mq_flush(&s->m);
}

static void *sub_main(void *arg)
{
    eb_sub *s = arg;
    while (!atomic_load(&s->stop)) {
        if (sub_step(s, 50) != 0) {
            snprintf(s->err, sizeof(s->err), "subscriber: %s", s->m.err);
            fprintf(stderr, "eds-bench: subscriber: %s\n", s->m.err);
            break;
        }
    }
    return NULL;
}

static void sub_free(eb_sub *s)
{
    if (s == NULL)
        return;
    mq_free(&s->m);
    free(s->seen);
    free(s->last_n);
    free(s);
}

int eb_sub_start(const eb_opts *o, uint64_t deadline_ns, eb_sub **out)
{
    *out = NULL;
    eb_sub *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -1;
    s->m.fd = -1;
    s->suback = -1;
    s->devices = (uint32_t)o->connections;
    s->records = o->records;
    int pl = snprintf(s->prefix, sizeof(s->prefix), "%s/%s-", o->topic_prefix, o->device_prefix);
    s->prefix_len = (size_t)pl;
    uint64_t bits = (uint64_t)s->devices * s->records;
    s->seen = calloc((size_t)(bits / 8 + 1), 1);
    s->last_n = calloc(s->devices, sizeof(*s->last_n));
    if (s->seen == NULL || s->last_n == NULL) {
        fprintf(stderr, "eds-bench: subscriber: out of memory\n");
        goto err;
    }
    char id[64];
    snprintf(id, sizeof(id), "eds-bench-sub-%ld", (long)getpid());
    if (mq_connect(&s->m, o->broker_host, o->broker_port, id, o->sub_user, o->sub_password,
                   deadline_ns) != 0) {
        fprintf(stderr, "eds-bench: subscriber: %s\n", s->m.err);
        goto err;
    }
    char topic[160];
    unsigned char vh[2] = {0, 1}, tp[200], q = (unsigned char)o->qos;
    snprintf(topic, sizeof(topic), "%s/+/data", o->topic_prefix);
    size_t tn = mq_str(tp, topic);
    if (!mq_put(&s->m, MQ_SUBSCRIBE << 4 | 2, vh, 2, tp, tn, &q, 1))
        goto err;
    while (s->suback < 0) {
        if (eb_now_ns() >= deadline_ns || sub_step(s, 100) != 0) {
            fprintf(stderr, "eds-bench: subscriber: no SUBACK for %s (%s)\n", topic, s->m.err);
            goto err;
        }
    }
    if (s->suback > 2) {
        fprintf(stderr, "eds-bench: subscriber: subscription to %s refused\n", topic);
        goto err;
    }
    if (pthread_create(&s->thread, NULL, sub_main, s) != 0) {
        fprintf(stderr, "eds-bench: subscriber: cannot start its thread\n");
        goto err;
    }
    s->started = true;
    *out = s;
    return 0;
err:
    sub_free(s);
    return -1;
}

uint64_t eb_sub_unique(eb_sub *s)
{
    return atomic_load_explicit(&s->unique, memory_order_relaxed);
}

uint64_t eb_sub_last_ns(eb_sub *s)
{
    return atomic_load_explicit(&s->last_ns, memory_order_relaxed);
}

void eb_sub_wait(eb_sub *s, uint64_t expected, uint64_t quiet_ns, uint64_t deadline_ns)
{
    uint64_t mark = eb_now_ns();
    uint64_t seen = eb_sub_unique(s);
    for (;;) {
        uint64_t now = eb_now_ns();
        uint64_t u = eb_sub_unique(s);
        if (u >= expected || now >= deadline_ns)
            return;
        if (u != seen) {
            seen = u;
            mark = now;
        } else if (now - mark >= quiet_ns) {
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void eb_sub_stop(eb_sub *s, eb_sub_result *r)
{
    memset(r, 0, sizeof(*r));
    if (s == NULL)
        return;
    atomic_store(&s->stop, true);
    if (s->started)
        pthread_join(s->thread, NULL);
    r->delivered = s->delivered;
    r->unique = eb_sub_unique(s);
    r->duplicated = s->duplicated;
    r->out_of_order = s->out_of_order;
    r->foreign = s->foreign;
    r->first_ns = s->first_ns;
    r->last_ns = eb_sub_last_ns(s);
    if (getenv("EB_DEBUG") != NULL) {
        int shown = 0;
        for (uint64_t b = 0; b < (uint64_t)s->devices * s->records && shown < 20; b++)
            if (!(s->seen[b >> 3] & (1u << (b & 7)))) {
                fprintf(stderr, "missing dev %" PRIu64 " n %" PRIu64 "\n", b / s->records,
                        b % s->records + 1);
                shown++;
            }
    }
    sub_free(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Ceiling publishers */

typedef struct pubc {
    mq m;
    eb_phase_result *r;
    int qos;
    uint32_t first_dev, stride, ndev; /* devices first_dev, first_dev+stride, ... */
    uint64_t next;                    /* next record index k over this client's records */
    uint64_t total;                   /* ndev * records */
    size_t outstanding;
    unsigned next_pid;
    uint64_t now;
    uint64_t *sent_ns; /* by packet id (65536 slots) */
} pubc;

static void pub_done(pubc *c, unsigned pid)
{
    if (c->outstanding > 0)
        c->outstanding--;
    c->r->acked++;
    c->r->last_ack_ns = c->now;
    eb_hist_add(&c->r->lat, c->now - c->sent_ns[pid & 0xffff]);
}

static int pub_packet(void *ctx, const mq_pkt *p)
{
    pubc *c = ctx;
    if (p->len < 2)
        return 0;
    unsigned pid = (unsigned)p->body[0] << 8 | p->body[1];
    switch (p->type) {
    case MQ_PUBACK:
        pub_done(c, pid);
        return 0;
    case MQ_PUBREC:
        return mq_ack(&c->m, MQ_PUBREL, pid) ? 0 : -1;
    case MQ_PUBCOMP:
        pub_done(c, pid);
        return 0;
    default:
        return 0;
    }
}

/* Queues one PUBLISH of record c->next. */
static bool pub_one(pubc *c, const eb_opts *o)
{
    char payload[1024], name[96], topic[200];
    uint32_t dev = c->first_dev + (uint32_t)(c->next % c->ndev) * c->stride;
    uint64_t n = c->next / c->ndev + 1;
    size_t plen = eb_record(payload, sizeof(payload), dev, n);
    eb_device_name(name, sizeof(name), o->device_prefix, dev);
    unsigned char th[256];
    snprintf(topic, sizeof(topic), "%s/%s/data", o->topic_prefix, name);
    size_t tn = mq_str(th, topic);
    unsigned pid = 0;
    if (c->qos > 0) {
        pid = c->next_pid;
        c->next_pid = c->next_pid == 65535 ? 1 : c->next_pid + 1;
        th[tn++] = (unsigned char)(pid >> 8);
        th[tn++] = (unsigned char)pid;
    }
    if (!mq_put(&c->m, (unsigned char)(MQ_PUBLISH << 4 | c->qos << 1), th, tn, payload, plen, NULL,
                0))
        return false;
    c->sent_ns[pid] = eb_now_ns();
    c->next++;
    c->r->sent++;
    if (c->qos == 0) { /* nothing comes back: done when handed to the socket */
        c->now = c->sent_ns[pid];
        c->outstanding++;
        pub_done(c, pid);
    } else {
        c->outstanding++;
    }
    return true;
}

int eb_ceiling_run(const eb_opts *o, uint64_t deadline_ns, eb_sub *sub, eb_phase_result *r)
{
    size_t k = o->ceiling_clients;
    if (k > o->connections)
        k = o->connections;
    if (k == 0)
        k = 1;
    size_t inflight = o->ceiling_inflight < 65535 ? o->ceiling_inflight : 65535;
    pubc *cs = calloc(k, sizeof(*cs));
    struct pollfd *pfd = calloc(k, sizeof(*pfd));
    int ret = -1;
    if (cs == NULL || pfd == NULL)
        goto out;
    for (size_t i = 0; i < k; i++)
        cs[i].m.fd = -1;
    r->ran = true;
    r->records = (uint64_t)o->connections * o->records;
    for (size_t i = 0; i < k; i++) {
        pubc *c = &cs[i];
        c->r = r;
        c->qos = o->qos;
        c->next_pid = 1;
        c->first_dev = (uint32_t)i;
        c->stride = (uint32_t)k;
        c->ndev = (uint32_t)((o->connections - i + k - 1) / k);
        c->total = (uint64_t)c->ndev * o->records;
        c->sent_ns = calloc(65536, sizeof(uint64_t));
        char id[64];
        snprintf(id, sizeof(id), "eds-bench-pub-%ld-%zu", (long)getpid(), i);
        if (c->sent_ns == NULL ||
            mq_connect(&c->m, o->broker_host, o->broker_port, id, o->broker_user,
                       o->broker_password, deadline_ns) != 0) {
            snprintf(r->first_error, sizeof(r->first_error), "ceiling publisher: %s", c->m.err);
            fprintf(stderr, "eds-bench: %s\n", r->first_error);
            r->conn_errors++;
            goto out;
        }
        pfd[i].fd = c->m.fd;
    }

    uint64_t t0 = eb_now_ns();
    r->t0_ns = t0;
    size_t cursor = 0;
    while (r->acked < r->records) {
        uint64_t now = eb_now_ns();
        if (now >= deadline_ns) {
            snprintf(r->first_error, sizeof(r->first_error), "deadline passed");
            break;
        }
        /* Publish what the windows (and the pace) allow, round-robin over clients. */
        uint64_t credit = UINT64_MAX;
        if (o->rate > 0) {
            uint64_t allowed = (uint64_t)(o->rate * (double)(now - t0) / 1e9) + 1;
            credit = allowed > r->sent ? allowed - r->sent : 0;
        }
        /* Stay at most ceiling_lead records ahead of the subscriber: the broker queues
         * what a subscriber has not taken up to max_queued_messages and then drops, so
         * publishing faster than it delivers would measure drops, not throughput. */
        if (sub != NULL && o->ceiling_lead > 0) {
            uint64_t delivered = eb_sub_unique(sub);
            uint64_t lead = r->sent > delivered ? r->sent - delivered : 0;
            uint64_t room = lead < o->ceiling_lead ? o->ceiling_lead - lead : 0;
            if (room < credit)
                credit = room;
        }
        for (size_t j = 0; j < k && credit > 0; j++) {
            pubc *c = &cs[cursor];
            cursor = (cursor + 1) % k;
            while (credit > 0 && c->next < c->total && c->outstanding < inflight &&
                   c->m.out_len - c->m.out_off < MQ_OUT_MAX) {
                if (!pub_one(c, o)) {
                    snprintf(r->first_error, sizeof(r->first_error), "out of memory");
                    goto out_phase;
                }
                if (credit != UINT64_MAX)
                    credit--;
            }
            if (mq_flush(&c->m) != 0) {
                snprintf(r->first_error, sizeof(r->first_error), "ceiling publisher: %s", c->m.err);
                r->conn_errors++;
                goto out_phase;
            }
        }
        for (size_t i = 0; i < k; i++)
            pfd[i].events = (short)(POLLIN | (mq_want_write(&cs[i].m) ? POLLOUT : 0));
        int n = poll(pfd, k, credit != UINT64_MAX ? 1 : 100);
        if (n < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < k && n > 0; i++) {
            pubc *c = &cs[i];
            int rc = 0;
            if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                ssize_t got = mq_read(&c->m);
                c->now = eb_now_ns();
                rc = got < 0 ? -1 : mq_parse(&c->m, pub_packet, c);
            }
            if (rc == 0 && (pfd[i].revents & POLLOUT))
                rc = mq_flush(&c->m);
            if (rc != 0) {
                snprintf(r->first_error, sizeof(r->first_error), "ceiling publisher %zu: %s", i,
                         c->m.err);
                r->conn_errors++;
                goto out_phase;
            }
        }
    }
out_phase:
    r->completed = r->acked >= r->records;
    ret = 0;
out:
    if (cs != NULL) {
        for (size_t i = 0; i < k; i++) {
            if (cs[i].m.fd >= 0) {
                unsigned char disconnect[2] = {0xe0, 0};
                ssize_t n = send(cs[i].m.fd, disconnect, 2, MSG_NOSIGNAL);
                (void)n;
            }
            mq_free(&cs[i].m);
            free(cs[i].sent_ns);
        }
    }
    free(cs);
    free(pfd);
    return ret;
}
