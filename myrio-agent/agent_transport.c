#include "agent_transport.h"

#include "agent_resolve.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct agent_conn {
    int fd;
    bool connecting;      /* TCP connect or TLS handshake in progress */
    bool tcp_connecting;  /* the TCP connect itself */
    eds_tls_ctx *tls_ctx; /* borrowed; NULL: plain TCP */
    eds_tls_conn *tls;
    char *server_name;
    int want; /* EDS_TLS_WANT_* of the last TLS call that returned EDS_ERR_AGAIN, or 0 */
    agent_addr addrs[AGENT_MAX_ADDRS]; /* the candidates */
    size_t naddrs;
    size_t cur; /* the one being tried */
    char peer[80];
    char last_error[128];
};

static void describe(agent_conn *c, const agent_addr *a)
{
    char host[INET6_ADDRSTRLEN];
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->sa;
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&a->sa;
    if (a->sa.ss_family == AF_INET6 && inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host)))
        snprintf(c->peer, sizeof(c->peer), "[%s]:%u", host, ntohs(v6->sin6_port));
    else if (a->sa.ss_family == AF_INET && inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host)))
        snprintf(c->peer, sizeof(c->peer), "%s:%u", host, ntohs(v4->sin_port));
    else
        snprintf(c->peer, sizeof(c->peer), "?");
}

static void set_keepalive(int fd)
{
    int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
#ifdef TCP_KEEPIDLE
    int idle = 30, intvl = 10, cnt = 3;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
#endif
}

/* Starts a connect to c->cur or the next address that accepts one. */
static int try_from_current(agent_conn *c)
{
    for (; c->cur < c->naddrs; c->cur++) {
        const agent_addr *a = &c->addrs[c->cur];
        if (c->fd >= 0)
            close(c->fd);
        describe(c, a);
        c->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            snprintf(c->last_error, sizeof(c->last_error), "socket: %s", strerror(errno));
            continue;
        }
        set_keepalive(c->fd);
        if (connect(c->fd, (const struct sockaddr *)&a->sa, a->len) == 0) {
            c->tcp_connecting = false;
            c->connecting = c->tls_ctx != NULL;
            return c->connecting ? EDS_ERR_AGAIN : EDS_OK;
        }
        if (errno == EINPROGRESS) {
            c->tcp_connecting = c->connecting = true;
            return EDS_ERR_AGAIN;
        }
        snprintf(c->last_error, sizeof(c->last_error), "%s", strerror(errno));
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    return EDS_ERR_IO;
}

int conn_start(const char *host, int port, eds_tls_ctx *tls, const char *server_name,
               agent_conn **out, eds_error *err)
{
    *out = NULL;
    agent_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return EDS_ERR_NOMEM;
    c->fd = -1;
    c->tls_ctx = tls;
    if (tls) {
        c->server_name = strdup(server_name ? server_name : host);
        if (!c->server_name) {
            free(c);
            return EDS_ERR_NOMEM;
        }
    }
    if (agent_resolve(host, port, c->addrs, AGENT_MAX_ADDRS, &c->naddrs, err) != EDS_OK) {
        conn_close(c);
        return EDS_ERR_IO;
    }
    c->cur = 0;
    int rc = try_from_current(c);
    if (rc == EDS_ERR_IO) {
        eds_error_set(err, EDS_ERR_IO, "gateway %s:%d: %s", host, port, c->last_error);
        conn_close(c);
        return EDS_ERR_IO;
    }
    *out = c;
    return EDS_OK;
}

int conn_fd(const agent_conn *c)
{
    return c->fd;
}

bool conn_connecting(const agent_conn *c)
{
    return c->connecting;
}

const char *conn_peer(const agent_conn *c)
{
    return c->peer;
}

/* The TLS handshake, once TCP is up. */
static int handshake(agent_conn *c, eds_error *err)
{
    int rc;
    if (!c->tls) {
        rc = eds_tls_conn_create(c->tls_ctx, c->fd, false, c->server_name, &c->tls, err);
        if (rc != EDS_OK)
            return rc == EDS_ERR_NOMEM ? rc : EDS_ERR_TLS;
    }
    eds_error herr;
    eds_error_clear(&herr);
    rc = eds_tls_handshake(c->tls, &c->want, &herr);
    if (rc == EDS_ERR_AGAIN)
        return rc;
    if (rc != EDS_OK)
        return eds_error_set(err, EDS_ERR_TLS, "TLS with gateway %s (%s): %s", c->peer,
                             c->server_name, herr.msg);
    c->want = 0;
    c->connecting = false;
    return EDS_OK;
}

int conn_finish(agent_conn *c, eds_error *err)
{
    if (!c->connecting)
        return EDS_OK;
    if (c->tcp_connecting) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr == EINPROGRESS || soerr == EALREADY)
            return EDS_ERR_AGAIN;
        if (soerr != 0) {
            snprintf(c->last_error, sizeof(c->last_error), "%s", strerror(soerr));
            char failed[80];
            snprintf(failed, sizeof(failed), "%s", c->peer);
            c->cur++;
            int rc = try_from_current(c);
            if (rc == EDS_ERR_IO)
                return eds_error_set(err, EDS_ERR_IO, "connect to %s: %s", failed, c->last_error);
            if (rc == EDS_OK)
                return EDS_OK;
            if (c->tcp_connecting)
                return EDS_ERR_AGAIN;
        }
        c->tcp_connecting = false;
        if (!c->tls_ctx) {
            c->connecting = false;
            return EDS_OK;
        }
    }
    return handshake(c, err);
}

short conn_poll_events(const agent_conn *c, bool reading, bool writing)
{
    if (c->tcp_connecting)
        return POLLOUT;
    if (c->connecting) /* the handshake: the client speaks first */
        return c->want == EDS_TLS_WANT_READ ? POLLIN : POLLOUT;
    short ev = 0;
    if (reading || c->want == EDS_TLS_WANT_READ)
        ev |= POLLIN;
    if (writing || c->want == EDS_TLS_WANT_WRITE)
        ev |= POLLOUT;
    return ev;
}

bool conn_pending(const agent_conn *c)
{
    return c->tls && !c->connecting && eds_tls_pending(c->tls);
}

const char *conn_security(const agent_conn *c)
{
    return c->tls ? eds_tls_protocol(c->tls) : "plain TCP";
}

/* Maps an eds_tls_read/write result. */
static int tls_result(agent_conn *c, ssize_t r, size_t *n, const eds_error *terr, eds_error *err)
{
    if (r > 0) {
        *n = (size_t)r;
        c->want = 0;
        return EDS_OK;
    }
    if (r == EDS_ERR_AGAIN)
        return EDS_ERR_AGAIN;
    if (r == 0 || r == EDS_ERR_CLOSED)
        return eds_error_set(err, EDS_ERR_CLOSED, "gateway %s closed the connection", c->peer);
    return eds_error_set(err, EDS_ERR_IO, "gateway %s: TLS: %s", c->peer, terr->msg);
}

int conn_read(agent_conn *c, char *buf, size_t cap, size_t *n, eds_error *err)
{
    *n = 0;
    if (c->tls) {
        eds_error terr;
        eds_error_clear(&terr);
        ssize_t r = eds_tls_read(c->tls, buf, cap, &c->want, &terr);
        return tls_result(c, r, n, &terr, err);
    }
    for (;;) {
        ssize_t r = recv(c->fd, buf, cap, 0);
        if (r > 0) {
            *n = (size_t)r;
            return EDS_OK;
        }
        if (r == 0)
            return eds_error_set(err, EDS_ERR_CLOSED, "gateway %s closed the connection", c->peer);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return EDS_ERR_AGAIN;
        return eds_error_set(err, EDS_ERR_IO, "gateway %s: %s", c->peer, strerror(errno));
    }
}

int conn_write(agent_conn *c, const char *buf, size_t len, size_t *n, eds_error *err)
{
    *n = 0;
    if (c->tls) {
        eds_error terr;
        eds_error_clear(&terr);
        ssize_t r = eds_tls_write(c->tls, buf, len, &c->want, &terr);
        int rc = tls_result(c, r, n, &terr, err);
        return rc == EDS_ERR_AGAIN ? EDS_OK : rc == EDS_ERR_CLOSED ? EDS_ERR_IO : rc;
    }
    for (;;) {
        ssize_t r = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (r >= 0) {
            *n = (size_t)r;
            return EDS_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return EDS_OK;
        return eds_error_set(err, EDS_ERR_IO, "gateway %s: %s", c->peer, strerror(errno));
    }
}

void conn_close(agent_conn *c)
{
    if (!c)
        return;
    eds_tls_conn_destroy(c->tls);
    free(c->server_name);
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}
