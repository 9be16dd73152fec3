/*
 * eds_tls.h - TLS for the agent <-> gateway link (OpenSSL 3), non-blocking.
 *
 * Two objects:
 *   eds_tls_ctx   the settings shared by many connections: certificates,
 *                 trusted CA, protocol versions. One per listener (server)
 *                 or per agent (client). Wraps an SSL_CTX.
 *   eds_tls_conn  one connection on a socket the caller owns. Wraps an SSL.
 *
 * Policy (not configurable on purpose): TLS 1.2 minimum, TLS 1.3 preferred;
 * for 1.2 only ECDHE with AES-GCM or ChaCha20-Poly1305; no compression, no
 * renegotiation, no session resumption. A client always verifies the
 * server's chain and host name (or IP address). A server verifies client
 * certificates against cafile when one is given.
 *
 * Non-blocking use. The socket must be O_NONBLOCK; this module never waits.
 * Every call that returns EDS_ERR_AGAIN sets *want to EDS_TLS_WANT_READ or
 * EDS_TLS_WANT_WRITE: wait for THAT readiness (EPOLLIN / POLLIN or
 * EPOLLOUT / POLLOUT) and call the same function again. Either call may
 * want either direction (a read may have to write a TLS alert or key
 * update, a write may wait for the peer's handshake data). Typical epoll
 * use in a server:
 *
 *   accept -> eds_tls_conn_create(ctx, fd, true, NULL, &c, &err)
 *   on any event, until it returns EDS_OK:
 *       rc = eds_tls_handshake(c, &want, &err);   arm EPOLLIN or EPOLLOUT per want
 *       (the handshake deadline is the caller's: close after auth_timeout)
 *   then, on readable:
 *       do { n = eds_tls_read(c, buf, sizeof buf, &want, &err); ... }
 *       while (n > 0 || eds_tls_pending(c))
 *
 * eds_tls_pending() matters with edge-triggered epoll: OpenSSL may have
 * decrypted more than the caller's buffer took, and those bytes will not
 * make the socket readable again. Reading until EDS_ERR_AGAIN also works.
 *
 * Writes: a write that returned EDS_ERR_AGAIN must be retried with the same
 * bytes (the buffer may move, more bytes may follow them). A write may
 * also return fewer bytes than asked (partial writes are on): send the rest
 * later, like send(2).
 *
 * Certificate reload (SIGHUP): create a new ctx from the same options; if
 * that succeeds, destroy the old one and use the new one for new
 * connections, else keep the old one and log the error. Connections made
 * from the old ctx keep working: each holds its own reference to the
 * OpenSSL context, so destroying an eds_tls_ctx while its connections live
 * is safe.
 *
 * Threads: a ctx may be shared by threads once created; a conn belongs to
 * one thread at a time. OpenSSL's error queue is per thread and is cleared
 * by every call here.
 *
 * SIGPIPE: sockets are written with send(MSG_NOSIGNAL), so a peer that hung
 * up yields EDS_ERR_CLOSED, never a signal.
 */
#ifndef EDS_TLS_H
#define EDS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "eds_err.h"

/* What a non-blocking call waits for when it returns EDS_ERR_AGAIN. */
#define EDS_TLS_WANT_READ 1
#define EDS_TLS_WANT_WRITE 2

typedef struct eds_tls_ctx eds_tls_ctx;
typedef struct eds_tls_conn eds_tls_conn;

/* The gateway's listener. Paths are read during create only. */
typedef struct eds_tls_server_opts {
    const char *certfile;     /* PEM: the server certificate, then any intermediates (required) */
    const char *keyfile;      /* PEM private key of certfile (required) */
    const char *cafile;       /* PEM CA(s) that sign client certificates; NULL: none asked */
    bool require_certificate; /* clients must present a certificate valid under cafile */
} eds_tls_server_opts;

/*
 * Creates a server context. Returns EDS_OK and *out (free with
 * eds_tls_ctx_destroy), EDS_ERR_INVAL (certfile/keyfile missing, or
 * require_certificate without cafile), EDS_ERR_TLS (a file cannot be read
 * or parsed, the key does not match the certificate: err->msg names the
 * file and OpenSSL's reason) or EDS_ERR_NOMEM.
 */
int eds_tls_server_ctx_create(const eds_tls_server_opts *o, eds_tls_ctx **out, eds_error *err);

/* The agent's side. */
typedef struct eds_tls_client_opts {
    const char *cafile;      /* PEM CA that signs the gateway's certificate; NULL: system store */
    const char *certfile;    /* PEM client certificate (CN = device id) or NULL */
    const char *keyfile;     /* its key; required with certfile */
    const char *server_name; /* default name to verify (and send as SNI) or NULL */
} eds_tls_client_opts;

/* Creates a client context; returns as eds_tls_server_ctx_create. */
int eds_tls_client_ctx_create(const eds_tls_client_opts *o, eds_tls_ctx **out, eds_error *err);

/* Frees ctx; NULL is fine. Live connections made from it stay valid. */
void eds_tls_ctx_destroy(eds_tls_ctx *ctx);

/*
 * Starts TLS on the connected, non-blocking socket fd (no bytes are sent
 * yet: call eds_tls_handshake). server selects the role; it must match the
 * ctx's kind (EDS_ERR_INVAL otherwise). For a client, server_name (or, when
 * NULL, the ctx's server_name) is the gateway's DNS name, which is sent as
 * SNI and must match the certificate, or an IP address literal, which must
 * match an IP entry of the certificate; with neither, EDS_ERR_INVAL.
 * Servers ignore server_name. A client's fd may still be connecting (a
 * non-blocking connect() in progress): the handshake then wants WRITE until
 * the connection is up, and a refused connection ends it with
 * EDS_ERR_CLOSED ("connection lost: Connection refused"). The fd stays
 * the caller's: it is never closed here. Returns EDS_OK with *out,
 * EDS_ERR_INVAL or EDS_ERR_NOMEM.
 */
int eds_tls_conn_create(eds_tls_ctx *ctx, int fd, bool server, const char *server_name,
                        eds_tls_conn **out, eds_error *err);

/*
 * Advances the handshake as far as the socket allows. Returns EDS_OK once
 * complete (again on later calls), EDS_ERR_AGAIN with *want set,
 * EDS_ERR_CLOSED when the peer hung up during the handshake, or
 * EDS_ERR_TLS with the reason in err->msg, e.g.
 *   "peer offers only TLS versions older than 1.2 (unsupported protocol)"
 *   "certificate verify failed: unable to get local issuer certificate"
 *   "certificate verify failed: hostname mismatch"
 *   "peer did not return a certificate"
 *   "not a TLS handshake (plain TCP on the TLS port?): wrong version number"
 * After EDS_ERR_CLOSED or EDS_ERR_TLS the connection is dead: destroy it.
 */
int eds_tls_handshake(eds_tls_conn *c, int *want, eds_error *err);

/*
 * Like recv(2): reads up to len decrypted bytes into buf. Returns the
 * number read (> 0), 0 when the peer closed TLS cleanly (close_notify), or
 * a negative code: EDS_ERR_AGAIN (*want set), EDS_ERR_CLOSED (the TCP
 * connection ended or was reset without close_notify), EDS_ERR_TLS (err
 * says why). Runs the handshake first if it is not complete. err may be NULL.
 */
ssize_t eds_tls_read(eds_tls_conn *c, void *buf, size_t len, int *want, eds_error *err);

/*
 * Like send(2): encrypts and sends up to len bytes. Returns the number of
 * bytes taken (> 0, possibly fewer than len; 0 only when len is 0) or
 * EDS_ERR_AGAIN (*want set; retry with the same bytes), EDS_ERR_CLOSED
 * (the peer is gone) or EDS_ERR_TLS. err may be NULL.
 */
ssize_t eds_tls_write(eds_tls_conn *c, const void *buf, size_t len, int *want, eds_error *err);

/* True when decrypted bytes are buffered inside OpenSSL: read them now, the
 * socket will not signal them. */
bool eds_tls_pending(const eds_tls_conn *c);

/* True once the handshake has completed. */
bool eds_tls_handshake_done(const eds_tls_conn *c);

/*
 * Copies the common name of the peer's VERIFIED certificate into buf (NUL-
 * terminated). For a gateway with require_certificate this is the device
 * id the connection may use: hello's device must equal it. Returns EDS_OK,
 * EDS_ERR_NOTFOUND (no verified peer certificate, or no CN), EDS_ERR_INVAL
 * (several CNs, or a CN with a NUL byte: never trust it) or EDS_ERR_TOOLONG
 * (does not fit in cap bytes).
 */
int eds_tls_peer_cn(const eds_tls_conn *c, char *buf, size_t cap);

/* Negotiated protocol and cipher for log lines, e.g. "TLSv1.3" and
 * "TLS_AES_256_GCM_SHA384"; "none" before the handshake. Static strings. */
const char *eds_tls_protocol(const eds_tls_conn *c);
const char *eds_tls_cipher(const eds_tls_conn *c);

/* Sends close_notify if the handshake completed (best effort, never waits),
 * then frees c. Does NOT close the fd. NULL is fine. */
void eds_tls_conn_destroy(eds_tls_conn *c);

#endif
