/*
 * agent_transport.h - the agent's connection to the gateway: connect, read,
 * write, close. The only file that touches the gateway socket.
 *
 * Everything is non-blocking. conn_start resolves the host (getaddrinfo,
 * which may block briefly for a name; use an IP address on a myRIO) and
 * starts a connect to the first address; when the socket turns writable,
 * conn_finish completes it or moves on to the next address. TCP keepalive
 * is set so a dead peer is noticed even when no ping is due.
 *
 * TLS hook: the security work adds an SSL* to agent_conn; conn_finish then
 * runs the handshake (returning EDS_ERR_AGAIN and conn_want_write() while it
 * is in progress) and conn_read / conn_write call SSL_read / SSL_write.
 * Nothing outside this file needs to change.
 */
#ifndef AGENT_TRANSPORT_H
#define AGENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "eds_err.h"

typedef struct agent_conn agent_conn;

/* Resolves host:port and starts connecting. EDS_OK with *out, or
 * EDS_ERR_IO (no such host, no address accepted a connect). */
int conn_start(const char *host, int port, agent_conn **out, eds_error *err);

int conn_fd(const agent_conn *c);

/* True while the connect (or a later handshake) is in progress. */
bool conn_connecting(const agent_conn *c);

/* Call when the fd is writable while connecting: EDS_OK (connected),
 * EDS_ERR_AGAIN (still trying: maybe on another address, so re-read
 * conn_fd), EDS_ERR_IO (every address failed). */
int conn_finish(agent_conn *c, eds_error *err);

/* Reads up to cap bytes: EDS_OK with *n > 0, EDS_ERR_AGAIN, EDS_ERR_CLOSED
 * (orderly end), EDS_ERR_IO. */
int conn_read(agent_conn *c, char *buf, size_t cap, size_t *n, eds_error *err);

/* Writes up to len bytes: EDS_OK with *n (maybe 0: would block), EDS_ERR_IO. */
int conn_write(agent_conn *c, const char *buf, size_t len, size_t *n, eds_error *err);

/* "address:port" of the peer being tried / connected. */
const char *conn_peer(const agent_conn *c);

void conn_close(agent_conn *c);

#endif
