/*
 * agent_transport.h - the agent's connection to the gateway: connect, read,
 * write, close. The only file that touches the gateway socket.
 *
 * Everything is non-blocking. conn_start resolves the host (agent_resolve.h,
 * which may block briefly for a name; use an IP address on a myRIO) and
 * starts a connect to the first address; when the socket turns writable,
 * conn_finish completes it or moves on to the next address. TCP keepalive
 * is set so a dead peer is noticed even when no ping is due.
 *
 * TLS: with a client context (eds_tls.h) the connection runs the TLS
 * handshake right after the TCP connect, still inside conn_finish (which
 * keeps returning EDS_ERR_AGAIN, and conn_poll_events says which readiness
 * to wait for); conn_read / conn_write then go through OpenSSL. The engine
 * sees the same calls for plain TCP and TLS.
 */
#ifndef AGENT_TRANSPORT_H
#define AGENT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>

#include "eds_err.h"
#include "eds_tls.h"

typedef struct agent_conn agent_conn;

/* Resolves host:port and starts connecting; with tls (not NULL) TLS follows,
 * verifying the gateway's certificate against server_name (NULL: host).
 * EDS_OK with *out, or EDS_ERR_IO (no such host, no address accepted a
 * connect). tls must outlive the connection. */
int conn_start(const char *host, int port, eds_tls_ctx *tls, const char *server_name,
               agent_conn **out, eds_error *err);

/* poll(2) events to wait for: while connecting, what the connect or the
 * handshake needs; afterwards POLLIN when reading, POLLOUT when writing,
 * plus whatever TLS asked for on the last read or write. */
short conn_poll_events(const agent_conn *c, bool reading, bool writing);

/* True when TLS holds decrypted bytes the socket will not signal again. */
bool conn_pending(const agent_conn *c);

/* "TLSv1.3" or "plain TCP", for log lines. */
const char *conn_security(const agent_conn *c);

int conn_fd(const agent_conn *c);

/* True while the connect (or a later handshake) is in progress. */
bool conn_connecting(const agent_conn *c);

/* Call on any poll event while connecting: EDS_OK (connected, handshake
 * done), EDS_ERR_AGAIN (still trying: maybe on another address, so re-read
 * conn_fd), EDS_ERR_IO (every address failed), EDS_ERR_TLS (handshake
 * failed: err says why, e.g. the certificate check). */
int conn_finish(agent_conn *c, eds_error *err);

/* Reads up to cap bytes: EDS_OK with *n > 0, EDS_ERR_AGAIN, EDS_ERR_CLOSED
 * (orderly end), EDS_ERR_IO. */
int conn_read(agent_conn *c, char *buf, size_t cap, size_t *n, eds_error *err);

/* Writes up to len bytes: EDS_OK with *n (maybe 0: would block; retry with
 * the same bytes), EDS_ERR_IO. */
int conn_write(agent_conn *c, const char *buf, size_t len, size_t *n, eds_error *err);

/* "address:port" of the peer being tried / connected. */
const char *conn_peer(const agent_conn *c);

void conn_close(agent_conn *c);

#endif
