/*
 * eb_agents.c - the gateway phase of eds-bench: N agent connections to
 * eds-gateway, all driven by one thread with epoll.
 *
 * Each connection is device <device_prefix>-<i>, says hello with a stream id
 * of this run (so the gateway's last_seq for it is 0), then sends records
 * 1..M, pipelining up to `window` unacked records. Acks arrive in order; the
 * ack latency of a record is the time from the write() that carried its data
 * line to the read() that returned its ack. Handshakes are limited to
 * connect_burst at a time so the listen backlog never overflows.
 */
#include "eb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eds_framer.h"
#include "eds_proto.h"

enum conn_state { C_IDLE, C_CONNECTING, C_HELLO, C_READY, C_DONE, C_DEAD };

typedef struct conn {
    int fd;
    uint8_t state;
    bool want_out; /* EPOLLOUT registered */
    uint32_t dev;
    uint64_t next_seq; /* next record to send (1-based) */
    uint64_t acked_to; /* every seq <= acked_to is acked or nacked */
    char *pend;        /* bytes not yet taken by the socket */
    size_t pend_len, pend_off;
    eds_framer fr;
} conn;

typedef struct run {
    const eb_opts *o;
    eb_phase_result *r;
    conn *c;
    uint64_t
        *sent_ns; /* connections * window slots: write time of seq at [i*window + seq%window] */
    int epfd;
    struct sockaddr_in gw;
    size_t handshaking, ready, finished; /* finished: DONE or DEAD */
    uint64_t now;
    char scratch[1 << 16];
    char *rx; /* 64 KiB read buffer lent to the framer of each connection read in turn */
} run;

#define MAX_RECORD 1024

static void note_error(run *u, const char *fmt, const char *a, const char *b)
{
    if (u->r->first_error[0] == '\0')
        snprintf(u->r->first_error, sizeof(u->r->first_error), fmt, a, b);
}

static void set_events(run *u, conn *c, bool want_out)
{
    if (c->want_out == want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0u),
                             .data.u32 = (uint32_t)(c - u->c)};
    epoll_ctl(u->epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void conn_kill(run *u, conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (c->state != C_DONE) {
        u->r->conn_errors++;
        char name[96];
        eb_device_name(name, sizeof(name), u->o->device_prefix, c->dev);
        note_error(u, "%s: %s", name, why);
        if (c->state == C_CONNECTING || c->state == C_HELLO)
            u->handshaking--;
        else if (c->state == C_READY)
            u->finished++;
    }
    if (c->fd >= 0) {
        epoll_ctl(u->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_off = 0;
    eds_framer_free(&c->fr);
    c->state = C_DEAD;
}

/* Writes data (or keeps what the socket does not take). Returns false if the connection died. */
static bool conn_write(run *u, conn *c, const char *data, size_t len)
{
    size_t off = 0;
    if (c->pend_len == c->pend_off) {
        if (eb_send_some(c->fd, data, len, &off) != 0) {
            conn_kill(u, c, strerror(errno));
            return false;
        }
        if (off == len)
            return true;
        free(c->pend);
        c->pend = NULL;
        c->pend_len = c->pend_off = 0;
    }
    size_t rest = len - off;
    char *p = realloc(c->pend, c->pend_len + rest);
    if (p == NULL) {
        conn_kill(u, c, "out of memory");
        return false;
    }
    memcpy(p + c->pend_len, data + off, rest);
    c->pend = p;
    c->pend_len += rest;
    set_events(u, c, true);
    return true;
}

static bool conn_flush(run *u, conn *c)
{
    if (eb_send_some(c->fd, c->pend, c->pend_len, &c->pend_off) != 0) {
        conn_kill(u, c, strerror(errno));
        return false;
    }
    if (c->pend_off < c->pend_len)
        return true;
    free(c->pend);
    c->pend = NULL;
    c->pend_len = c->pend_off = 0;
    set_events(u, c, false);
    return true;
}

/* Sends up to `limit` more records within the window; returns how many. */
static uint64_t conn_fill(run *u, conn *c, uint64_t limit)
{
    const eb_opts *o = u->o;
    if (c->state != C_READY || c->pend_len != c->pend_off)
        return 0;
    uint64_t unacked = c->next_seq - 1 - c->acked_to;
    uint64_t room = o->window > unacked ? o->window - unacked : 0;
    uint64_t left = o->records - (c->next_seq - 1);
    uint64_t k = room < left ? room : left;
    if (k > limit)
        k = limit;
    if (k == 0)
        return 0;
    char rec[MAX_RECORD];
    size_t len = 0;
    uint64_t first = c->next_seq, count = 0;
    while (count < k) {
        size_t rlen = eb_record(rec, sizeof(rec), c->dev, c->next_seq);
        size_t n = eds_fmt_data(u->scratch + len, sizeof(u->scratch) - len, c->next_seq, rec, rlen);
        if (n == 0)
            break; /* scratch full: the rest goes next time */
        len += n;
        c->next_seq++;
        count++;
    }
    uint64_t now = eb_now_ns();
    uint64_t *slots = u->sent_ns + (size_t)(c - u->c) * o->window;
    for (uint64_t s = first; s < first + count; s++)
        slots[s % o->window] = now;
    u->r->sent += count;
    if (!conn_write(u, c, u->scratch, len))
        return 0;
    return count;
}

static void on_progress(run *u, conn *c, uint64_t seq)
{
    if (seq != c->acked_to + 1)
        u->r->bad_acks++;
    if (seq > c->acked_to && seq < c->next_seq) {
        c->acked_to = seq;
        uint64_t t = u->sent_ns[(size_t)(c - u->c) * u->o->window + seq % u->o->window];
        eb_hist_add(&u->r->lat, u->now - t);
    }
    u->r->last_ack_ns = u->now;
    if (c->acked_to >= u->o->records && c->state == C_READY) {
        c->state = C_DONE;
        u->finished++;
    }
}

static uint64_t parse_digits(const char *p, const char *e, const char **after)
{
    uint64_t v = 0;
    while (p < e && *p >= '0' && *p <= '9' && v < UINT64_MAX / 10)
        v = v * 10 + (uint64_t)(*p++ - '0');
    *after = p;
    return v;
}

/* A line handler does not close the connection itself (its framer holds the
 * line): it leaves the reason here and the reader stops asking for lines. */
typedef struct line_ctx {
    run *u;
    conn *c;
    char why[160];
} line_ctx;

static int line_fail(line_ctx *lc, const char *why)
{
    snprintf(lc->why, sizeof(lc->why), "%s", why);
    return EDS_ERR_STOP;
}

static int on_line(line_ctx *lc, const char *line, size_t len)
{
    run *u = lc->u;
    conn *c = lc->c;
    /* Fast path: the gateway's ack line, as eds_fmt_ack writes it. */
    static const char ack[] = "{\"type\":\"ack\",\"seq\":";
    const size_t alen = sizeof(ack) - 1;
    if (len > alen && memcmp(line, ack, alen) == 0 && c->state == C_READY) {
        const char *after;
        const char *e = line + len;
        uint64_t seq = parse_digits(line + alen, e, &after);
        if (after > line + alen && after + 1 == e && *after == '}') {
            u->r->acked++;
            on_progress(u, c, seq);
            return 0;
        }
    }
    eds_msg m;
    eds_error err;
    memset(&err, 0, sizeof(err));
    if (eds_msg_parse(line, len, EDS_TO_AGENT, &m, &err) != EDS_OK) {
        return line_fail(lc, "unparsable line from the gateway");
    }
    int ret = 0;
    switch (m.type) {
    case EDS_MSG_WELCOME:
        if (c->state != C_HELLO) {
            ret = line_fail(lc, "unexpected welcome");
        } else if (m.last_seq != 0) {
            ret = line_fail(lc, "welcome with last_seq != 0 (stream id reused?)");
        } else {
            c->state = C_READY;
            u->handshaking--;
            u->ready++;
        }
        break;
    case EDS_MSG_ACK:
        if (c->state == C_READY) {
            u->r->acked++;
            if (m.duplicate)
                u->r->dup_acks++;
            on_progress(u, c, m.seq);
        }
        break;
    case EDS_MSG_NACK:
        if (c->state == C_READY) {
            u->r->nacked++;
            if (u->r->first_error[0] == '\0') {
                char *txt = cJSON_PrintUnformatted(m.errors);
                note_error(u, "nack: %s%s", txt != NULL ? txt : "?", "");
                free(txt);
            }
            on_progress(u, c, m.seq);
        }
        break;
    case EDS_MSG_ERROR: {
        char why[120];
        snprintf(why, sizeof(why), "error %s: %s", m.code != NULL ? m.code : "?",
                 m.message != NULL ? m.message : "");
        ret = line_fail(lc, why);
        break;
    }
    default: /* cmd, pong: not used by the bench */
        break;
    }
    eds_msg_free(&m);
    return ret;
}

/* Takes the read buffer back from c's framer once it holds no input, for the
 * next connection (no malloc and free per read). */
static void reclaim_rx(run *u, conn *c, size_t want)
{
    size_t cap;
    char *back = eds_framer_reclaim(&c->fr, &cap);
    if (back && !u->rx && cap == want)
        u->rx = back;
    else
        free(back);
}

static void conn_read(run *u, conn *c)
{
    const size_t want = 1 << 16;
    for (int rounds = 0; rounds < 16 && c->state != C_DEAD; rounds++) {
        char *buf;
        if (!c->fr.buf && (u->rx || (u->rx = malloc(want)) != NULL) &&
            eds_framer_lend(&c->fr, u->rx, want))
            u->rx = NULL;
        if (eds_framer_space(&c->fr, want, &buf) == 0) {
            conn_kill(u, c, "out of memory");
            return;
        }
        ssize_t n = recv(c->fd, buf, want, 0);
        if (n <= 0)
            reclaim_rx(u, c, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_kill(u, c, n == 0 ? "closed by the gateway" : strerror(errno));
            return;
        }
        u->now = eb_now_ns();
        eds_framer_commit(&c->fr, (size_t)n);
        line_ctx lc = {.u = u, .c = c};
        const char *line;
        size_t len;
        int rc;
        while ((rc = eds_framer_next(&c->fr, &line, &len)) == EDS_FRAMER_LINE)
            if (on_line(&lc, line, len) != 0)
                break;
        reclaim_rx(u, c, want);
        if (lc.why[0] != '\0') {
            conn_kill(u, c, lc.why);
            return;
        }
        if (rc < 0) {
            conn_kill(u, c, "line from the gateway too long");
            return;
        }
        if ((size_t)n < want)
            return;
    }
}

static void conn_open(run *u, size_t i)
{
    const eb_opts *o = u->o;
    conn *c = &u->c[i];
    c->dev = (uint32_t)i;
    c->next_seq = 1;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    u->handshaking++;
    c->state = C_CONNECTING;
    if (c->fd < 0) {
        conn_kill(u, c, strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (o->source_addrs > 1) {
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % o->source_addrs));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
            conn_kill(u, c, strerror(errno));
            return;
        }
    }
    eds_framer_init(&c->fr, 65536);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)i};
    c->want_out = true;
    if (epoll_ctl(u->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        conn_kill(u, c, strerror(errno));
        return;
    }
    if (connect(c->fd, (struct sockaddr *)&u->gw, sizeof(u->gw)) != 0 && errno != EINPROGRESS)
        conn_kill(u, c, strerror(errno));
}

static void conn_connected(run *u, conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr != 0) {
        conn_kill(u, c, strerror(soerr));
        return;
    }
    char name[96], line[512];
    eb_device_name(name, sizeof(name), u->o->device_prefix, c->dev);
    size_t n = eds_fmt_hello(line, sizeof(line), name, NULL, u->o->stream);
    c->state = C_HELLO;
    set_events(u, c, false);
    if (n == 0)
        conn_kill(u, c, "hello does not fit");
    else
        conn_write(u, c, line, n);
}

static void handle_event(run *u, const struct epoll_event *ev)
{
    conn *c = &u->c[ev->data.u32];
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING) {
        if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            conn_connected(u, c);
        return;
    }
    if ((ev->events & EPOLLOUT) && !conn_flush(u, c))
        return;
    if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_read(u, c);
}

static void raise_nofile(size_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int eb_agents_run(const eb_opts *o, uint64_t deadline_ns, eb_sub *sub, eb_phase_result *r)
{
    int ret = -1;
    run *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return -1;
    u->o = o;
    u->r = r;
    r->ran = true;
    r->records = (uint64_t)o->connections * o->records;
    u->epfd = -1;
    u->c = calloc(o->connections, sizeof(conn));
    u->sent_ns = calloc(o->connections * o->window, sizeof(uint64_t));
    if (u->c == NULL || u->sent_ns == NULL) {
        fprintf(stderr, "eds-bench: out of memory for %zu connections\n", o->connections);
        goto out;
    }
    for (size_t i = 0; i < o->connections; i++)
        u->c[i].fd = -1;
    raise_nofile(o->connections + 64);
    u->gw.sin_family = AF_INET;
    u->gw.sin_port = htons((uint16_t)o->gw_port);
    inet_pton(AF_INET, o->gw_host, &u->gw.sin_addr);
    u->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (u->epfd < 0) {
        perror("eds-bench: epoll_create1");
        goto out;
    }
    enum { MAX_EVENTS = 1024 };
    static struct epoll_event evs[MAX_EVENTS];

    /* 1. Connect and say hello, connect_burst handshakes at a time. */
    uint64_t start = eb_now_ns();
    size_t opened = 0;
    while (opened - u->handshaking < o->connections) { /* welcomed or dead: opened - handshaking */
        while (opened < o->connections && u->handshaking < o->connect_burst)
            conn_open(u, opened++);
        if (eb_now_ns() >= deadline_ns) {
            note_error(u, "%s%s", "deadline passed while connecting", "");
            break;
        }
        int n = epoll_wait(u->epfd, evs, MAX_EVENTS, 100);
        for (int i = 0; i < n; i++)
            handle_event(u, &evs[i]);
    }
    r->connected = u->ready;
    r->connect_s = (double)(eb_now_ns() - start) / 1e9;
    if (o->gateway_pid > 0) {
        long hwm;
        eb_proc_mem(o->gateway_pid, &r->rss_kb_connected, &hwm);
    }
    /* Connections that are not ready (died, or still connecting at the deadline) are
     * finished already. */
    u->finished = 0;
    for (size_t i = 0; i < o->connections; i++)
        u->finished += u->c[i].state != C_READY;

    /* Each welcome makes the gateway publish the device's retained status: with many
     * connections those publishes are still queued ahead of the first records.
     * --settle lets them drain so that the data phase measures records only. */
    uint64_t settle_end = eb_now_ns() + (uint64_t)(o->settle_s * 1e9);
    while (o->settle_s > 0 && eb_now_ns() < settle_end && eb_now_ns() < deadline_ns) {
        int n = epoll_wait(u->epfd, evs, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++)
            handle_event(u, &evs[i]);
    }

    /* 2. Data. */
    double cpu0 = o->gateway_pid > 0 ? eb_proc_cpu_s(o->gateway_pid) : -1;
    uint64_t t0 = eb_now_ns();
    r->t0_ns = t0;
    size_t cursor = 0;
    if (o->rate <= 0) {
        for (size_t i = 0; i < o->connections; i++)
            conn_fill(u, &u->c[i], UINT64_MAX);
    }
    while (u->finished < o->connections) {
        uint64_t now = eb_now_ns();
        if (now >= deadline_ns) {
            note_error(u, "%s%s", "deadline passed before every record was acked", "");
            break;
        }
        if (o->rate > 0) {
            /* Pace: spread the records due by now over the connections, round-robin. */
            uint64_t allowed = (uint64_t)(o->rate * (double)(now - t0) / 1e9) + 1;
            uint64_t credit = allowed > r->sent ? allowed - r->sent : 0;
            for (size_t scanned = 0; credit > 0 && scanned < o->connections; scanned++) {
                conn *c = &u->c[cursor];
                cursor = (cursor + 1) % o->connections;
                credit -= conn_fill(u, c, 1);
            }
        }
        int n = epoll_wait(u->epfd, evs, MAX_EVENTS, o->rate > 0 ? 1 : 50);
        if (n < 0 && errno != EINTR) {
            perror("eds-bench: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            handle_event(u, &evs[i]);
            if (o->rate <= 0)
                conn_fill(u, &u->c[evs[i].data.u32], UINT64_MAX);
        }
    }
    r->completed = r->acked + r->nacked >= r->records && r->conn_errors == 0;
    if (o->gateway_pid > 0) {
        double cpu1 = eb_proc_cpu_s(o->gateway_pid);
        r->gw_cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    }
    /* Deliveries trail the acks a little: let the subscriber catch up before closing, so
     * the gateway's disconnect work does not run during the measurement. */
    if (sub != NULL)
        eb_sub_wait(sub, r->acked, (uint64_t)(o->drain_s * 1e9), deadline_ns);
    if (o->gateway_pid > 0)
        eb_proc_mem(o->gateway_pid, &r->rss_kb_end, &r->hwm_kb);
    ret = 0;
out:
    if (u->c != NULL) {
        for (size_t i = 0; i < o->connections; i++) {
            conn *c = &u->c[i];
            if (c->fd >= 0)
                close(c->fd);
            free(c->pend);
            eds_framer_free(&c->fr);
        }
    }
    if (u->epfd >= 0)
        close(u->epfd);
    free(u->c);
    free(u->sent_ns);
    free(u->rx);
    free(u);
    return ret;
}
