/*
 * eds_tls.c - OpenSSL 3 contexts and non-blocking connections (eds_tls.h).
 *
 * Sockets are reached through a tiny BIO of our own instead of OpenSSL's
 * socket BIO, for one reason: it writes with send(MSG_NOSIGNAL), so a
 * library call never raises SIGPIPE whatever the process's signal setup.
 */
#include "eds_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 keeps OpenSSL's
 * defaults (all AEAD). */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"
#define VERIFY_DEPTH 4

struct eds_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    char *server_name; /* client: default name to verify; owned */
};

struct eds_tls_conn {
    SSL *ssl;
    bool server;
    bool done; /* handshake complete */
    bool dead; /* a fatal error or EOF was seen: no close_notify on destroy */
};

/* ---- the socket BIO ---- */

static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

static int sock_write(BIO *b, const char *data, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do {
        n = send(fd, data, (size_t)len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    do {
        n = recv(fd, buf, (size_t)len, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = (int)(intptr_t)BIO_get_data(b);
        return (int)(intptr_t)BIO_get_data(b);
    default:
        return 0;
    }
}

static void sock_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "eds socket");
    if (m && BIO_meth_set_write(m, sock_write) && BIO_meth_set_read(m, sock_read) &&
        BIO_meth_set_ctrl(m, sock_ctrl))
        sock_method = m;
    else
        BIO_meth_free(m);
}

/* ---- error text ---- */

/* Pops OpenSSL's error queue into buf: the first (most specific) reason. */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(buf, cap, "unknown OpenSSL error");
    } else {
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(buf, cap, "%s", r);
        else
            ERR_error_string_n(e, buf, cap);
    }
    ERR_clear_error();
    return buf;
}

/* The reason code of error e if it comes from library lib, else 0: reason
 * numbers are only unique within one library. */
static int reason_of(unsigned long e, int lib)
{
    return ERR_GET_LIB(e) == lib ? ERR_GET_REASON(e) : 0;
}

/* Maps a failed SSL_* call (ret as returned by it) to an EDS code. */
static int conn_fail(eds_tls_conn *c, int ret, int saved_errno, int *want, eds_error *err)
{
    char reason[200];
    int se = SSL_get_error(c->ssl, ret);
    switch (se) {
    case SSL_ERROR_WANT_READ:
        *want = EDS_TLS_WANT_READ;
        return EDS_ERR_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        *want = EDS_TLS_WANT_WRITE;
        return EDS_ERR_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        c->dead = true;
        return eds_error_set(err, EDS_ERR_CLOSED, "peer closed TLS (close_notify)");
    case SSL_ERROR_SYSCALL:
        c->dead = true;
        if (ERR_peek_error() == 0) {
            if (saved_errno == 0)
                return eds_error_set(err, EDS_ERR_CLOSED, "peer closed the connection");
            return eds_error_set(err, EDS_ERR_CLOSED, "connection lost: %s", strerror(saved_errno));
        }
        return eds_error_set(err, EDS_ERR_TLS, "%s", ssl_reason(reason, sizeof(reason)));
    case SSL_ERROR_SSL:
        break;
    default:
        c->dead = true;
        ERR_clear_error();
        return eds_error_set(err, EDS_ERR_TLS, "unexpected OpenSSL state %d", se);
    }

    c->dead = true;
    int r = reason_of(ERR_peek_error(), ERR_LIB_SSL);
    if (r == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ERR_clear_error();
        return eds_error_set(err, EDS_ERR_CLOSED,
                             "peer closed the connection without close_notify");
    }
    if (r == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(c->ssl);
        ERR_clear_error();
        return eds_error_set(err, EDS_ERR_TLS, "%scertificate verify failed: %s",
                             c->server ? "client " : "", X509_verify_cert_error_string(v));
    }
    if (r == SSL_R_UNSUPPORTED_PROTOCOL && c->server) {
        ERR_clear_error();
        return eds_error_set(err, EDS_ERR_TLS,
                             "peer offers only TLS versions older than 1.2 (unsupported protocol)");
    }
    if (!c->done && c->server &&
        (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_HTTP_REQUEST ||
         r == SSL_R_PACKET_LENGTH_TOO_LONG || r == SSL_R_RECORD_LENGTH_MISMATCH))
        return eds_error_set(err, EDS_ERR_TLS,
                             "not a TLS handshake (plain TCP on the TLS port?): %s",
                             ssl_reason(reason, sizeof(reason)));
    return eds_error_set(err, EDS_ERR_TLS, "%s%s",
                         c->done ? "" : "handshake failed: ", ssl_reason(reason, sizeof(reason)));
}

/* ---- contexts ---- */

static int ctx_new(bool server, eds_tls_ctx **out, eds_error *err)
{
    char reason[200];
    *out = NULL;
    eds_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    ctx->server = server;
#ifdef EDS_TLS_NO_SYSTEM_CONFIG
    /* Self-contained builds (the myRIO's, cmake/SelfContained.cmake) carry their own
     * OpenSSL 3: the device's openssl.cnf belongs to its own OpenSSL, and an engine or
     * provider module it names must not be loaded into this one. Every setting here is
     * made in code, so the file is not read at all (the first init decides). */
    OPENSSL_init_ssl(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
#endif
    ERR_clear_error();
    ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx->ssl) {
        free(ctx);
        return eds_error_set(err, EDS_ERR_NOMEM, "SSL_CTX_new: %s",
                             ssl_reason(reason, sizeof(reason)));
    }
    SSL_CTX *s = ctx->ssl;
    if (!SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(s, TLS12_CIPHERS)) {
        eds_tls_ctx_destroy(ctx);
        return eds_error_set(err, EDS_ERR_TLS, "cannot set the TLS policy: %s",
                             ssl_reason(reason, sizeof(reason)));
    }
    SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                               SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* RELEASE_BUFFERS: an idle connection holds no 16 KiB record buffers. */
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    if (server)
        SSL_CTX_set_num_tickets(s, 0);
    SSL_CTX_set_verify_depth(s, VERIFY_DEPTH);
    *out = ctx;
    return EDS_OK;
}

/* Loads certfile + keyfile into ctx and checks they belong together. */
static int ctx_load_pair(eds_tls_ctx *ctx, const char *certfile, const char *keyfile,
                         eds_error *err)
{
    char reason[200];
    if (SSL_CTX_use_certificate_chain_file(ctx->ssl, certfile) != 1)
        return eds_error_set(err, EDS_ERR_TLS, "certfile %s: %s", certfile,
                             ssl_reason(reason, sizeof(reason)));
    if (SSL_CTX_use_PrivateKey_file(ctx->ssl, keyfile, SSL_FILETYPE_PEM) != 1) {
        if (reason_of(ERR_peek_error(), ERR_LIB_X509) == X509_R_KEY_VALUES_MISMATCH) {
            ERR_clear_error();
            return eds_error_set(err, EDS_ERR_TLS, "keyfile %s is not the key of certfile %s",
                                 keyfile, certfile);
        }
        return eds_error_set(err, EDS_ERR_TLS, "keyfile %s: %s", keyfile,
                             ssl_reason(reason, sizeof(reason)));
    }
    if (SSL_CTX_check_private_key(ctx->ssl) != 1) {
        ERR_clear_error();
        return eds_error_set(err, EDS_ERR_TLS, "keyfile %s is not the key of certfile %s", keyfile,
                             certfile);
    }
    return EDS_OK;
}

static int ctx_load_ca(eds_tls_ctx *ctx, const char *cafile, eds_error *err)
{
    char reason[200];
    if (SSL_CTX_load_verify_locations(ctx->ssl, cafile, NULL) != 1)
        return eds_error_set(err, EDS_ERR_TLS, "cafile %s: %s", cafile,
                             ssl_reason(reason, sizeof(reason)));
    return EDS_OK;
}

int eds_tls_server_ctx_create(const eds_tls_server_opts *o, eds_tls_ctx **out, eds_error *err)
{
    *out = NULL;
    if (!o || !o->certfile || !o->keyfile)
        return eds_error_set(err, EDS_ERR_INVAL, "a TLS listener needs certfile and keyfile");
    if (o->require_certificate && !o->cafile)
        return eds_error_set(err, EDS_ERR_INVAL, "require_certificate needs cafile");

    eds_tls_ctx *ctx;
    int rc = ctx_new(true, &ctx, err);
    if (rc != EDS_OK)
        return rc;
    rc = ctx_load_pair(ctx, o->certfile, o->keyfile, err);
    if (rc != EDS_OK)
        goto fail;
    if (o->cafile) {
        rc = ctx_load_ca(ctx, o->cafile, err);
        if (rc != EDS_OK)
            goto fail;
        /* Tell clients which CA we accept, so they pick the right certificate. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->cafile);
        if (names)
            SSL_CTX_set_client_CA_list(ctx->ssl, names);
        ERR_clear_error();
        SSL_CTX_set_verify(
            ctx->ssl,
            SSL_VERIFY_PEER | (o->require_certificate ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
    }
    *out = ctx;
    return EDS_OK;
fail:
    eds_tls_ctx_destroy(ctx);
    return rc;
}

int eds_tls_client_ctx_create(const eds_tls_client_opts *o, eds_tls_ctx **out, eds_error *err)
{
    char reason[200];
    *out = NULL;
    if (!o)
        return eds_error_set(err, EDS_ERR_INVAL, "no TLS client options");
    if (!o->certfile != !o->keyfile)
        return eds_error_set(err, EDS_ERR_INVAL, "a client certificate needs both cert and key");

    eds_tls_ctx *ctx;
    int rc = ctx_new(false, &ctx, err);
    if (rc != EDS_OK)
        return rc;
    if (o->server_name) {
        ctx->server_name = strdup(o->server_name);
        if (!ctx->server_name) {
            rc = eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    if (o->cafile) {
        rc = ctx_load_ca(ctx, o->cafile, err);
    } else if (SSL_CTX_set_default_verify_paths(ctx->ssl) != 1) {
        rc = eds_error_set(err, EDS_ERR_TLS, "system CA store: %s",
                           ssl_reason(reason, sizeof(reason)));
    }
    if (rc != EDS_OK)
        goto fail;
    if (o->certfile) {
        rc = ctx_load_pair(ctx, o->certfile, o->keyfile, err);
        if (rc != EDS_OK)
            goto fail;
    }
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
    *out = ctx;
    return EDS_OK;
fail:
    eds_tls_ctx_destroy(ctx);
    return rc;
}

void eds_tls_ctx_destroy(eds_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl); /* live SSL objects hold their own reference */
    free(ctx->server_name);
    free(ctx);
}

/* ---- connections ---- */

static bool is_ip_literal(const char *name)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
}

int eds_tls_conn_create(eds_tls_ctx *ctx, int fd, bool server, const char *server_name,
                        eds_tls_conn **out, eds_error *err)
{
    char reason[200];
    *out = NULL;
    if (!ctx || fd < 0)
        return eds_error_set(err, EDS_ERR_INVAL, "eds_tls_conn_create: no context or socket");
    if (server != ctx->server)
        return eds_error_set(err, EDS_ERR_INVAL, "a %s context cannot make a %s connection",
                             ctx->server ? "server" : "client", server ? "server" : "client");
    const char *name = server_name ? server_name : ctx->server_name;
    if (!server && (!name || !*name))
        return eds_error_set(err, EDS_ERR_INVAL,
                             "TLS client: no server name to verify the certificate against");

    pthread_once(&sock_method_once, sock_method_init);
    if (!sock_method)
        return eds_error_set(err, EDS_ERR_NOMEM, "cannot create the socket BIO method");

    ERR_clear_error();
    eds_tls_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
    c->server = server;
    c->ssl = SSL_new(ctx->ssl);
    BIO *bio = BIO_new(sock_method);
    if (!c->ssl || !bio) {
        BIO_free(bio);
        eds_tls_conn_destroy(c);
        return eds_error_set(err, EDS_ERR_NOMEM, "SSL_new: %s", ssl_reason(reason, sizeof(reason)));
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    BIO_set_init(bio, 1);
    SSL_set_bio(c->ssl, bio, bio); /* c->ssl owns bio now */

    if (server) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        int ok;
        SSL_set_hostflags(c->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (is_ip_literal(name)) {
            /* RFC 6066: no SNI for an address; match the certificate's IP SAN. */
            ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name);
        } else {
            ok = SSL_set_tlsext_host_name(c->ssl, name) == 1 && SSL_set1_host(c->ssl, name) == 1;
        }
        if (!ok) {
            eds_tls_conn_destroy(c);
            return eds_error_set(err, EDS_ERR_INVAL, "bad TLS server name '%s': %s", name,
                                 ssl_reason(reason, sizeof(reason)));
        }
    }
    *out = c;
    return EDS_OK;
}

int eds_tls_handshake(eds_tls_conn *c, int *want, eds_error *err)
{
    if (c->done)
        return EDS_OK;
    if (c->dead)
        return eds_error_set(err, EDS_ERR_TLS, "the TLS connection already failed");
    ERR_clear_error();
    errno = 0;
    int ret = SSL_do_handshake(c->ssl);
    if (ret == 1) {
        c->done = true;
        return EDS_OK;
    }
    return conn_fail(c, ret, errno, want, err);
}

/* The common start of read and write: finishes the handshake first. */
static int io_begin(eds_tls_conn *c, int *want, eds_error *err)
{
    if (!c->done) {
        int rc = eds_tls_handshake(c, want, err);
        if (rc != EDS_OK)
            return rc;
    }
    if (c->dead)
        return eds_error_set(err, EDS_ERR_CLOSED, "the TLS connection is closed");
    ERR_clear_error();
    errno = 0;
    return EDS_OK;
}

ssize_t eds_tls_read(eds_tls_conn *c, void *buf, size_t len, int *want, eds_error *err)
{
    int rc = io_begin(c, want, err);
    if (rc != EDS_OK || len == 0)
        return rc;
    size_t n = 0;
    int ret = SSL_read_ex(c->ssl, buf, len, &n);
    if (ret == 1)
        return (ssize_t)n;
    if (SSL_get_error(c->ssl, ret) == SSL_ERROR_ZERO_RETURN) {
        c->dead = true;
        return 0;
    }
    return conn_fail(c, ret, errno, want, err);
}

ssize_t eds_tls_write(eds_tls_conn *c, const void *buf, size_t len, int *want, eds_error *err)
{
    int rc = io_begin(c, want, err);
    if (rc != EDS_OK || len == 0)
        return rc;
    size_t n = 0;
    int ret = SSL_write_ex(c->ssl, buf, len, &n);
    if (ret == 1)
        return (ssize_t)n;
    return conn_fail(c, ret, errno, want, err);
}

bool eds_tls_pending(const eds_tls_conn *c)
{
    return c->done && !c->dead && SSL_pending(c->ssl) > 0;
}

bool eds_tls_handshake_done(const eds_tls_conn *c)
{
    return c->done;
}

int eds_tls_peer_cn(const eds_tls_conn *c, char *buf, size_t cap)
{
    if (cap > 0)
        buf[0] = '\0';
    /* Without SSL_VERIFY_PEER the verify result stays X509_V_OK for an
     * unchecked certificate: only a verifying side may trust the CN. */
    X509 *x = SSL_get0_peer_certificate(c->ssl);
    if (!c->done || !x || !(SSL_get_verify_mode(c->ssl) & SSL_VERIFY_PEER) ||
        SSL_get_verify_result(c->ssl) != X509_V_OK)
        return EDS_ERR_NOTFOUND;
    X509_NAME *subject = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i < 0)
        return EDS_ERR_NOTFOUND;
    if (X509_NAME_get_index_by_NID(subject, NID_commonName, i) >= 0)
        return EDS_ERR_INVAL;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    int rc = EDS_OK;
    if (n < 0)
        rc = EDS_ERR_INVAL;
    else if (memchr(utf8, '\0', (size_t)n))
        rc = EDS_ERR_INVAL;
    else if ((size_t)n >= cap)
        rc = EDS_ERR_TOOLONG;
    else
        memcpy(buf, utf8, (size_t)n + 1);
    OPENSSL_free(utf8);
    ERR_clear_error();
    return rc;
}

const char *eds_tls_protocol(const eds_tls_conn *c)
{
    return c->done ? SSL_get_version(c->ssl) : "none";
}

const char *eds_tls_cipher(const eds_tls_conn *c)
{
    const char *name = c->done ? SSL_get_cipher_name(c->ssl) : NULL;
    return name ? name : "none";
}

void eds_tls_conn_destroy(eds_tls_conn *c)
{
    if (!c)
        return;
    if (c->ssl) {
        ERR_clear_error();
        if (c->done && !c->dead)
            SSL_shutdown(c->ssl); /* queues close_notify; a full socket just drops it */
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    free(c);
}
