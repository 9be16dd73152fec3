#include "gw_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eds_log.h"
#include "eds_proto.h"
#include "gw_now.h"

int gw_conns_init(gw_conns *t, gw_loop *loop, const gw_config *cfg, gw_stats *st)
{
    memset(t, 0, sizeof(*t));
    t->loop = loop;
    t->cfg = cfg;
    t->st = st;
    t->cap = (size_t)cfg->max_clients + 64;
    t->max_preauth = cfg->max_unauthenticated > 0 ? (size_t)cfg->max_unauthenticated
                                                  : (size_t)cfg->max_clients / 4;
    if (t->max_preauth == 0)
        t->max_preauth = 1;
    t->by_fd = calloc(t->cap, sizeof(*t->by_fd));
    t->scratch = malloc(GW_READ_CHUNK);
    return t->by_fd && t->scratch ? EDS_OK : EDS_ERR_NOMEM;
}

void gw_conns_free(gw_conns *t)
{
    if (t->by_fd)
        for (size_t fd = 0; fd < t->cap; fd++)
            if (t->by_fd[fd])
                gw_conn_destroy(t, t->by_fd[fd]);
    free(t->by_fd);
    free(t->scratch);
    free(t->spare);
    memset(t, 0, sizeof(*t));
}

int gw_listener_open(gw_listener *l, gw_loop *loop, const gw_listener_conf *lc, eds_error *err)
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
    l->h.kind = GW_H_LISTENER;
    l->fd = fd;
    l->port = lc->port;
    l->tls = lc->tls;
    if (gw_loop_add(loop, fd, GW_EV_READ, l) != EDS_OK)
        return eds_error_set(err, EDS_ERR_IO, "epoll: %s", strerror(errno));
    eds_log_notice("listening on %s port %d", lc->address[0] ? lc->address : "*", lc->port);
    return EDS_OK;
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

/* Refuses a connection with server_busy and closes it. */
static void refuse(int fd, const gw_listener *l, const char *why)
{
    char line[128];
    size_t n = eds_fmt_error(line, sizeof(line), EDS_PE_SERVER_BUSY, why);
    /* On a TLS port a plain line would be noise to the client: just close. */
    ssize_t w = l->tls ? 0 : send(fd, line, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

/* Pre-auth connections of c's address; an untracked address (the guard's
 * table is full: many addresses at once) counts as holding the most. */
static uint32_t addr_preauth(const gw_conn *c)
{
    return c->ip ? c->ip->preauth : UINT32_MAX;
}

/* True when c should be closed before o (the rule of evict_preauth). */
static bool evict_before(const gw_conn *c, const gw_conn *o, int64_t now)
{
    bool good = gw_guard_known_good(c->ip), o_good = gw_guard_known_good(o->ip);
    if (good != o_good)
        return !good;
    uint32_t n = addr_preauth(c), o_n = addr_preauth(o);
    if (n != o_n)
        return n > o_n;
    n = gw_guard_recent_opens(c->ip, now);
    o_n = gw_guard_recent_opens(o->ip, now);
    if (n != o_n)
        return n > o_n;
    return c->created_ms < o->created_ms;
}

/* Makes room for one more connection without a hello. The rule: a connection
 * from an unknown address goes before one from a known-good address (a
 * device logged in from there), so a flood of new connections cannot close
 * a returning device's login before its hello; among the same kind, one from
 * the address holding the most pre-auth connections, then from the address
 * that opened the most lately (a flood cycling through many addresses comes
 * back to each; a device's first login from an address is its only one),
 * then the oldest. Known-good connections stay bounded by max_clients and
 * max_conn_per_ip, and go too when nothing else is left to close. */
static void evict_preauth(gw_conns *t)
{
    gw_conn *old = NULL;
    int64_t now = gw_now_ms();
    for (size_t fd = 0; fd < t->cap; fd++) {
        gw_conn *c = t->by_fd[fd];
        if (c && c->preauth && (!old || evict_before(c, old, now)))
            old = c;
    }
    if (!old)
        return;
    char line[128];
    size_t n = eds_fmt_error(line, sizeof(line), EDS_PE_SERVER_BUSY,
                             "too many connections without hello, try again later");
    if (!old->handshaking)
        gw_conn_send(t, old, line, n);
    t->st->preauth_evicted++;
    eds_log_debug("%s: closed: max_unauthenticated reached", old->peer);
    gw_conns_close(t, old);
}

void gw_conns_accept(gw_conns *t, gw_listener *l, gw_guard *g, eds_tls_ctx *tls_ctx)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000); /* EMFILE repeats */
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                eds_log_limited(&lim, EDS_LOG_WARNING, "accept on port %d: %s", l->port,
                                strerror(errno));
            return;
        }
        if (t->n >= (size_t)t->cfg->max_clients || (size_t)fd >= t->cap) {
            refuse(fd, l, "max_clients reached, try again later");
            t->st->server_busy++;
            continue;
        }
        char peer[64], host[INET6_ADDRSTRLEN];
        peer_name(fd, peer, sizeof(peer), host);
        gw_ip *ip = gw_guard_ip(g, host);
        if (!gw_guard_conn_allowed(ip, (uint32_t)t->cfg->max_conn_per_ip)) {
            refuse(fd, l, "too many connections from your address");
            t->st->per_ip_refused++;
            continue;
        }
        if (t->n_preauth >= t->max_preauth)
            evict_preauth(t);
        gw_conn *c = calloc(1, sizeof(*c));
        eds_error err;
        if (!c || (l->tls && eds_tls_conn_create(tls_ctx, fd, true, NULL, &c->tls, &err))) {
            close(fd);
            free(c);
            continue;
        }
        c->h.kind = GW_H_CONN;
        c->fd = fd;
        c->state = GW_C_NEW;
        c->created_ms = c->last_rx_ms = gw_now_ms();
        c->reading = true;
        c->handshaking = l->tls;
        c->tls_want = EDS_TLS_WANT_READ;
        c->ip = ip;
        if (ip)
            ip->conns++;
        gw_guard_opened(ip, c->created_ms);
        eds_framer_init(&c->framer, t->cfg->max_line);
        memcpy(c->peer, peer, sizeof(c->peer));
        set_nonblock_opts(fd);
        if (gw_loop_add(t->loop, fd, GW_EV_READ, c) != EDS_OK) {
            if (ip)
                ip->conns--;
            eds_tls_conn_destroy(c->tls);
            close(fd);
            free(c);
            continue;
        }
        t->by_fd[fd] = c;
        t->n++;
        c->preauth = true;
        t->n_preauth++;
        if (ip)
            ip->preauth++;
        t->st->connections_total++;
        eds_log_debug("%s: connected", c->peer);
    }
}

void gw_conn_update_events(gw_conns *t, gw_conn *c)
{
    uint32_t ev = (c->reading ? GW_EV_READ : 0) | (c->writing ? GW_EV_WRITE : 0);
    if (c->handshaking)
        ev = c->tls_want == EDS_TLS_WANT_WRITE ? GW_EV_WRITE : GW_EV_READ;
    gw_loop_mod(t->loop, c->fd, ev, c);
}

void gw_conn_mark_dirty(gw_conns *t, gw_conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        c->next_dirty = t->dirty;
        t->dirty = c;
    }
}

gw_conn *gw_conns_pop_dirty(gw_conns *t)
{
    gw_conn *c = t->dirty;
    if (c) {
        t->dirty = c->next_dirty;
        c->dirty = false;
    }
    return c;
}

char *gw_conn_out_reserve(gw_conn *c, size_t n)
{
    gw_out *o = &c->out;
    if (o->off && o->off == o->len)
        o->off = o->len = 0;
    if (o->cap - o->len >= n)
        return o->buf + o->len;
    if (o->off) {
        memmove(o->buf, o->buf + o->off, o->len - o->off);
        o->len -= o->off;
        o->off = 0;
        if (o->cap - o->len >= n)
            return o->buf + o->len;
    }
    size_t ncap = o->cap ? o->cap : 1024;
    while (ncap - o->len < n)
        ncap *= 2;
    char *nb = realloc(o->buf, ncap);
    if (!nb)
        return NULL;
    o->buf = nb;
    o->cap = ncap;
    return o->buf + o->len;
}

void gw_conn_out_commit(gw_conns *t, gw_conn *c, size_t n)
{
    c->out.len += n;
    gw_conn_mark_dirty(t, c);
}

void gw_conn_send(gw_conns *t, gw_conn *c, const char *line, size_t n)
{
    char *p = gw_conn_out_reserve(c, n);
    if (!p) {
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000);
        eds_log_limited(&lim, EDS_LOG_ERROR, "%s: out of memory for output", c->peer);
        return;
    }
    memcpy(p, line, n);
    gw_conn_out_commit(t, c, n);
}

ssize_t gw_conn_read(gw_conns *t, gw_conn *c, eds_error *err)
{
    if (!c->framer.buf) {
        if (!t->spare)
            t->spare = malloc(GW_READ_CHUNK);
        if (t->spare && eds_framer_lend(&c->framer, t->spare, GW_READ_CHUNK))
            t->spare = NULL;
    }
    char *p;
    if (eds_framer_space(&c->framer, GW_READ_CHUNK, &p) == 0)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    ssize_t n;
    if (c->tls) {
        int want = 0;
        n = eds_tls_read(c->tls, p, GW_READ_CHUNK, &want, err);
        if (n == EDS_ERR_CLOSED)
            n = 0;
    } else {
        n = recv(c->fd, p, GW_READ_CHUNK, 0);
        if (n < 0)
            n = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                    ? EDS_ERR_AGAIN
                    : eds_error_set(err, EDS_ERR_IO, "%s", strerror(errno));
    }
    if (n <= 0) {
        /* Nothing came (a partial TLS record, a spurious wake-up): the buffer
         * lent for this read goes back rather than idling here. */
        gw_conn_reclaim(t, c);
        return n;
    }
    eds_framer_commit(&c->framer, (size_t)n);
    t->st->bytes_in += (uint64_t)n;
    c->last_rx_ms = gw_now_ms();
    return n;
}

void gw_conn_reclaim(gw_conns *t, gw_conn *c)
{
    size_t cap;
    char *b = eds_framer_reclaim(&c->framer, &cap);
    if (b && !t->spare && cap == GW_READ_CHUNK)
        t->spare = b;
    else
        free(b);
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

int gw_conn_flush(gw_conns *t, gw_conn *c, eds_error *err)
{
    if (c->handshaking)
        return EDS_OK; /* nothing can be sent before the TLS handshake completes */
    gw_out *o = &c->out;
    int rc = EDS_OK;
    while (o->off < o->len) {
        ssize_t w = conn_send(c, o->buf + o->off, o->len - o->off, err);
        if (w == EDS_ERR_AGAIN)
            break;
        if (w < 0) {
            o->off = o->len; /* peer gone: drop the output */
            rc = (int)w;
            break;
        }
        o->off += (size_t)w;
        t->st->bytes_out += (uint64_t)w;
    }
    bool pending = o->off < o->len;
    if (!pending) {
        o->off = o->len = 0;
        if (o->cap > GW_OUT_SOFT) { /* do not pin a large buffer on an idle connection */
            free(o->buf);
            o->buf = NULL;
            o->cap = 0;
        }
    }
    if (rc == EDS_OK && pending != c->writing && c->state != GW_C_CLOSING) {
        c->writing = pending;
        gw_conn_update_events(t, c);
    }
    return rc;
}

int gw_conn_tls_step(gw_conns *t, gw_conn *c, eds_error *err)
{
    int rc = eds_tls_handshake(c->tls, &c->tls_want, err);
    if (rc == EDS_ERR_AGAIN)
        gw_conn_update_events(t, c);
    if (rc != EDS_OK)
        return rc;
    c->handshaking = false;
    eds_log_debug("%s: TLS %s %s", c->peer, eds_tls_protocol(c->tls), eds_tls_cipher(c->tls));
    c->writing = c->out.off < c->out.len;
    gw_conn_update_events(t, c);
    return EDS_OK;
}

void gw_conn_authenticated(gw_conns *t, gw_conn *c)
{
    if (c->preauth) {
        c->preauth = false;
        t->n_preauth--;
        if (c->ip)
            c->ip->preauth--;
    }
}

void gw_conn_pause(gw_conns *t, gw_conn *c)
{
    if (c->reading) {
        c->reading = false;
        gw_conn_update_events(t, c);
    }
}

void gw_conns_close(gw_conns *t, gw_conn *c)
{
    if (c->state == GW_C_CLOSING)
        return;
    gw_conn_authenticated(t, c); /* its slot is free from now on */
    c->state = GW_C_CLOSING;
    c->reading = false;
    c->next_closing = t->closing;
    t->closing = c;
    gw_conn_mark_dirty(t, c); /* flush the last error line before closing */
}

gw_conn *gw_conns_pop_closing(gw_conns *t)
{
    gw_conn *c = t->closing;
    if (c)
        t->closing = c->next_closing;
    return c;
}

void gw_conn_destroy(gw_conns *t, gw_conn *c)
{
    gw_loop_del(t->loop, c->fd);
    eds_tls_conn_destroy(c->tls);
    /* Lingering close: closing a socket with unread input makes the kernel
     * send RST instead of FIN, and an RST can destroy the last error line
     * still on its way to the agent. So send FIN first, then discard what
     * the peer sent that we will never read (bounded), then close. */
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 16; i++)
        if (recv(c->fd, t->scratch, GW_READ_CHUNK, MSG_DONTWAIT) <= 0)
            break;
    close(c->fd);
    if (c->ip)
        c->ip->conns--;
    t->by_fd[c->fd] = NULL;
    t->n--;
    eds_framer_free(&c->framer);
    free(c->out.buf);
    free(c);
}
