/* Unit tests for eds_tls: real certificates made by scripts/make-certs.sh at
 * test time, both ends in this process over a non-blocking socketpair, so
 * every step is driven by hand and nothing may block. Covers a good
 * handshake and data both ways (partial writes, pending bytes, clean close),
 * each way verification must fail (unknown CA, wrong host name or IP,
 * missing or untrusted client certificate, TLS 1.0, plain TCP), the client
 * certificate's CN, stalled peers, and context errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "eds_err.h"
#include "eds_tls.h"

static char dir[64];

/* Paths inside the generated certificate tree. */
static const char *path(const char *rel)
{
    static char bufs[8][160];
    static unsigned next;
    char *p = bufs[next++ % 8];
    snprintf(p, sizeof(bufs[0]), "%s/%s", dir, rel);
    return p;
}

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/eds-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[512];
    /* "main": CA, gateway (localhost, 127.0.0.1, ::1), two devices; "other":
     * an unrelated CA with a device of the same name. */
    snprintf(cmd, sizeof(cmd),
             "'%s/scripts/make-certs.sh' '%s/main' myrio-01 dev2 >/dev/null && "
             "'%s/scripts/make-certs.sh' '%s/other' myrio-01 >/dev/null",
             EDS_SOURCE_DIR, dir, EDS_SOURCE_DIR, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static eds_tls_ctx *server_ctx(const char *cafile, bool require)
{
    eds_tls_server_opts o = {.certfile = path("main/gateway.crt"),
                             .keyfile = path("main/gateway.key"),
                             .cafile = cafile,
                             .require_certificate = require};
    eds_tls_ctx *ctx = NULL;
    eds_error err;
    int rc = eds_tls_server_ctx_create(&o, &ctx, &err);
    if (rc != EDS_OK)
        fail_msg("server ctx: %s", err.msg);
    return ctx;
}

static eds_tls_ctx *client_ctx(const char *cafile, const char *device, const char *name)
{
    char cert[160], key[160];
    eds_tls_client_opts o = {.cafile = cafile, .server_name = name};
    if (device) {
        snprintf(cert, sizeof(cert), "%s", path(device));
        snprintf(key, sizeof(key), "%s", cert);
        memcpy(strrchr(key, '.'), ".key", 5);
        o.certfile = cert;
        o.keyfile = key;
    }
    eds_tls_ctx *ctx = NULL;
    eds_error err;
    int rc = eds_tls_client_ctx_create(&o, &ctx, &err);
    if (rc != EDS_OK)
        fail_msg("client ctx: %s", err.msg);
    return ctx;
}

typedef struct side {
    int fd;
    eds_tls_conn *c;
    int rc;
    int want;
    eds_error err;
} side;

/* A connected non-blocking socketpair with a TLS server on one end and
 * (unless cctx is NULL) a TLS client on the other. */
static void open_pair(eds_tls_ctx *sctx, eds_tls_ctx *cctx, const char *name, side *s, side *c)
{
    int fds[2];
    memset(s, 0, sizeof(*s));
    memset(c, 0, sizeof(*c));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    s->fd = fds[0];
    c->fd = fds[1];
    eds_error err;
    assert_int_equal(eds_tls_conn_create(sctx, s->fd, true, NULL, &s->c, &err), EDS_OK);
    if (cctx)
        assert_int_equal(eds_tls_conn_create(cctx, c->fd, false, name, &c->c, &err), EDS_OK);
}

static void close_side(side *x)
{
    eds_tls_conn_destroy(x->c);
    x->c = NULL;
    if (x->fd >= 0)
        close(x->fd);
    x->fd = -1;
}

static void close_all(eds_tls_ctx *sctx, eds_tls_ctx *cctx, side *s, side *c)
{
    eds_tls_ctx_destroy(sctx);
    eds_tls_ctx_destroy(cctx);
    close_side(s);
    close_side(c);
}

/* Runs both handshakes in turns until neither wants to wait any more, or
 * one failed and the other has had a few turns to see the alert. Bounded:
 * a handshake over a socketpair needs a handful of turns. */
static void drive(side *s, side *c)
{
    s->rc = c->rc = EDS_ERR_AGAIN;
    int after_failure = 0;
    for (int turn = 0; turn < 100; turn++) {
        if (s->rc == EDS_ERR_AGAIN)
            s->rc = eds_tls_handshake(s->c, &s->want, &s->err);
        if (c->rc == EDS_ERR_AGAIN)
            c->rc = eds_tls_handshake(c->c, &c->want, &c->err);
        if (s->rc != EDS_ERR_AGAIN && c->rc != EDS_ERR_AGAIN)
            return;
        bool failed = (s->rc != EDS_OK && s->rc != EDS_ERR_AGAIN) ||
                      (c->rc != EDS_OK && c->rc != EDS_ERR_AGAIN);
        if (failed && ++after_failure > 5)
            return;
    }
}

/* open_pair + drive, both handshakes must succeed */
static void connect_ok(eds_tls_ctx *sctx, eds_tls_ctx *cctx, const char *name, side *s, side *c)
{
    open_pair(sctx, cctx, name, s, c);
    drive(s, c);
    if (s->rc != EDS_OK || c->rc != EDS_OK)
        fail_msg("handshake: server %d (%s), client %d (%s)", s->rc, s->err.msg, c->rc, c->err.msg);
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("'%s' does not contain '%s'", text, part);
}

/* Reads from x until len bytes arrived, writing pending output of w in
 * between (so that a sender blocked on a full socket can go on). */
static void read_exact(side *x, char *buf, size_t len)
{
    size_t got = 0;
    for (int turn = 0; got < len && turn < 100000; turn++) {
        ssize_t n = eds_tls_read(x->c, buf + got, len - got, &x->want, &x->err);
        if (n == EDS_ERR_AGAIN)
            break;
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, len);
}

static void test_handshake_and_data(void **state)
{
    eds_tls_ctx *sctx = server_ctx(path("main/ca.crt"), false);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), NULL, "localhost");
    side s, c;
    open_pair(sctx, cctx, NULL, &s, &c);
    assert_false(eds_tls_handshake_done(s.c));
    assert_string_equal(eds_tls_protocol(s.c), "none");

    drive(&s, &c);
    assert_int_equal(s.rc, EDS_OK);
    assert_int_equal(c.rc, EDS_OK);
    assert_true(eds_tls_handshake_done(c.c));
    assert_string_equal(eds_tls_protocol(s.c), "TLSv1.3");
    assert_string_equal(eds_tls_protocol(c.c), "TLSv1.3");
    assert_string_not_equal(eds_tls_cipher(s.c), "none");

    /* agent -> gateway: one hello line */
    const char hello[] = "{\"type\":\"hello\",\"device\":\"myrio-01\",\"proto\":1}\n";
    assert_int_equal(eds_tls_write(c.c, hello, strlen(hello), &c.want, &c.err),
                     (ssize_t)strlen(hello));
    char buf[256];
    read_exact(&s, buf, strlen(hello));
    assert_memory_equal(buf, hello, strlen(hello));
    /* nothing more: the next read waits for the socket, it does not block */
    assert_int_equal(eds_tls_read(s.c, buf, sizeof(buf), &s.want, &s.err), EDS_ERR_AGAIN);
    assert_int_equal(s.want, EDS_TLS_WANT_READ);

    /* Bytes OpenSSL decrypted but the caller did not take are "pending". */
    assert_int_equal(eds_tls_write(c.c, "abcdef", 6, &c.want, &c.err), 6);
    assert_int_equal(eds_tls_read(s.c, buf, 2, &s.want, &s.err), 2);
    assert_true(eds_tls_pending(s.c));
    assert_int_equal(eds_tls_read(s.c, buf + 2, sizeof(buf) - 2, &s.want, &s.err), 4);
    assert_memory_equal(buf, "abcdef", 6);
    assert_false(eds_tls_pending(s.c));

    close_all(sctx, cctx, &s, &c);
}

/* Far more than a socketpair buffers: writes return EDS_ERR_AGAIN
 * (want write) and partial counts, and resume with the same bytes. */
static void test_bulk_both_ways_nonblocking(void **state)
{
    eds_tls_ctx *sctx = server_ctx(NULL, false);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), NULL, "localhost");
    side s, c;
    connect_ok(sctx, cctx, NULL, &s, &c);

    enum { TOTAL = 4 * 1024 * 1024 };
    unsigned char *out = malloc(TOTAL), *in_s = malloc(TOTAL), *in_c = malloc(TOTAL);
    assert_non_null(out);
    assert_non_null(in_s);
    assert_non_null(in_c);
    for (size_t i = 0; i < TOTAL; i++)
        out[i] = (unsigned char)(i * 7 + i / 251);
    size_t sent_s = 0, sent_c = 0, got_s = 0, got_c = 0;
    bool saw_again = false;
    for (int turn = 0; turn < 1000000 && (got_s < TOTAL || got_c < TOTAL); turn++) {
        if (sent_c < TOTAL) {
            /* the client offers up to 100 KiB at a time */
            size_t len = TOTAL - sent_c < 100000 ? TOTAL - sent_c : 100000;
            ssize_t n = eds_tls_write(c.c, out + sent_c, len, &c.want, &c.err);
            if (n == EDS_ERR_AGAIN) {
                saw_again = true;
                assert_int_equal(c.want, EDS_TLS_WANT_WRITE);
            } else {
                assert_true(n > 0);
                sent_c += (size_t)n;
            }
        }
        if (sent_s < TOTAL) {
            ssize_t n = eds_tls_write(s.c, out + sent_s, TOTAL - sent_s, &s.want, &s.err);
            if (n == EDS_ERR_AGAIN) {
                saw_again = true;
                assert_int_equal(s.want, EDS_TLS_WANT_WRITE);
            } else {
                assert_true(n > 0);
                sent_s += (size_t)n;
            }
        }
        if (got_s < TOTAL) {
            ssize_t n = eds_tls_read(s.c, in_s + got_s, TOTAL - got_s, &s.want, &s.err);
            if (n != EDS_ERR_AGAIN) {
                assert_true(n > 0);
                got_s += (size_t)n;
            }
        }
        if (got_c < TOTAL) {
            /* the client reads in small pieces: the rest stays pending */
            size_t len = TOTAL - got_c < 1000 ? TOTAL - got_c : 1000;
            ssize_t n = eds_tls_read(c.c, in_c + got_c, len, &c.want, &c.err);
            if (n != EDS_ERR_AGAIN) {
                assert_true(n > 0);
                got_c += (size_t)n;
            }
        }
    }
    assert_true(saw_again);
    assert_int_equal(got_s, TOTAL);
    assert_int_equal(got_c, TOTAL);
    assert_memory_equal(in_s, out, TOTAL);
    assert_memory_equal(in_c, out, TOTAL);
    free(out);
    free(in_s);
    free(in_c);

    /* A clean close reads as 0, like recv. */
    eds_tls_conn_destroy(c.c);
    c.c = NULL;
    char buf[16];
    assert_int_equal(eds_tls_read(s.c, buf, sizeof(buf), &s.want, &s.err), 0);

    close_all(sctx, cctx, &s, &c);
}

static void test_peer_gone(void **state)
{
    eds_tls_ctx *sctx = server_ctx(NULL, false);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), NULL, "localhost");
    side s, c;
    connect_ok(sctx, cctx, NULL, &s, &c);

    /* The agent's socket vanishes without close_notify: EDS_ERR_CLOSED; a
     * write to it must not raise SIGPIPE (which would kill this test). */
    close(c.fd);
    c.fd = -1;
    char buf[16];
    assert_int_equal(eds_tls_read(s.c, buf, sizeof(buf), &s.want, &s.err), EDS_ERR_CLOSED);
    close_side(&s);
    close_side(&c);
    open_pair(sctx, cctx, NULL, &s, &c); /* fresh pair */
    drive(&s, &c);
    assert_int_equal(s.rc, EDS_OK);
    close(c.fd);
    c.fd = -1;
    ssize_t n = eds_tls_write(s.c, "x\n", 2, &s.want, &s.err);
    assert_int_equal(n, EDS_ERR_CLOSED);
    close_all(sctx, cctx, &s, &c);
}

static void test_unknown_ca_refused(void **state)
{
    eds_tls_ctx *sctx = server_ctx(NULL, false);
    eds_tls_ctx *cctx = client_ctx(path("other/ca.crt"), NULL, "localhost");
    side s, c;
    open_pair(sctx, cctx, NULL, &s, &c);
    drive(&s, &c);
    assert_int_equal(c.rc, EDS_ERR_TLS);
    assert_contains(c.err.msg, "certificate verify failed: unable to get local issuer certificate");
    assert_true(s.rc == EDS_ERR_TLS || s.rc == EDS_ERR_CLOSED);
    /* the connection is dead: no data goes either way */
    assert_int_equal(eds_tls_write(c.c, "x", 1, &c.want, &c.err), EDS_ERR_TLS);
    close_all(sctx, cctx, &s, &c);
}

static void test_host_name_checked(void **state)
{
    eds_tls_ctx *sctx = server_ctx(NULL, false);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), NULL, "localhost");
    static const struct {
        const char *name;
        int rc;
        const char *msg;
    } cases[] = {
        {"localhost", EDS_OK, ""},
        {"127.0.0.1", EDS_OK, ""},
        {"::1", EDS_OK, ""},
        {"gw.example.org", EDS_ERR_TLS, "certificate verify failed: hostname mismatch"},
        {"local", EDS_ERR_TLS, "hostname mismatch"},
        {"localhost.evil.example", EDS_ERR_TLS, "hostname mismatch"},
        {"10.0.0.1", EDS_ERR_TLS, "certificate verify failed: IP address mismatch"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        side s, c;
        open_pair(sctx, cctx, cases[i].name, &s, &c);
        drive(&s, &c);
        if (c.rc != cases[i].rc)
            fail_msg("%s: rc %d (%s)", cases[i].name, c.rc, c.err.msg);
        if (c.rc != EDS_OK)
            assert_contains(c.err.msg, cases[i].msg);
        close_side(&s);
        close_side(&c);
    }
    eds_tls_ctx_destroy(sctx);
    eds_tls_ctx_destroy(cctx);
}

static void test_client_certificate(void **state)
{
    eds_tls_ctx *strict = server_ctx(path("main/ca.crt"), true);
    eds_tls_ctx *optional = server_ctx(path("main/ca.crt"), false);
    eds_tls_ctx *no_ca = server_ctx(NULL, false);
    eds_tls_ctx *dev = client_ctx(path("main/ca.crt"), "main/devices/myrio-01.crt", "localhost");
    eds_tls_ctx *anon = client_ctx(path("main/ca.crt"), NULL, "localhost");
    eds_tls_ctx *alien = client_ctx(path("main/ca.crt"), "other/devices/myrio-01.crt", "localhost");
    char cn[80];
    side s, c;

    /* The verified CN is the device id. */
    connect_ok(strict, dev, NULL, &s, &c);
    assert_int_equal(eds_tls_peer_cn(s.c, cn, sizeof(cn)), EDS_OK);
    assert_string_equal(cn, "myrio-01");
    assert_int_equal(eds_tls_peer_cn(s.c, cn, 8), EDS_ERR_TOOLONG);
    assert_int_equal(eds_tls_peer_cn(s.c, cn, 9), EDS_OK);
    close_side(&s);
    close_side(&c);

    /* require_certificate: no certificate, no connection. In TLS 1.3 the
     * client finishes first and learns it from the server's alert. */
    open_pair(strict, anon, NULL, &s, &c);
    drive(&s, &c);
    assert_int_equal(s.rc, EDS_ERR_TLS);
    assert_contains(s.err.msg, "peer did not return a certificate");
    char buf[16];
    ssize_t n = EDS_ERR_AGAIN;
    for (int i = 0; i < 10 && n == EDS_ERR_AGAIN; i++)
        n = eds_tls_read(c.c, buf, sizeof(buf), &c.want, &c.err);
    assert_int_equal(n, EDS_ERR_TLS);
    assert_contains(c.err.msg, "certificate required");
    close_side(&s);
    close_side(&c);

    /* A certificate from another CA with the right CN is refused. */
    open_pair(strict, alien, NULL, &s, &c);
    drive(&s, &c);
    assert_int_equal(s.rc, EDS_ERR_TLS);
    assert_contains(s.err.msg, "client certificate verify failed: ");
    close_side(&s);
    close_side(&c);
    open_pair(optional, alien, NULL, &s, &c);
    drive(&s, &c);
    assert_int_equal(s.rc, EDS_ERR_TLS);
    close_side(&s);
    close_side(&c);

    /* Optional certificate: none given, none found. */
    connect_ok(optional, anon, NULL, &s, &c);
    assert_int_equal(eds_tls_peer_cn(s.c, cn, sizeof(cn)), EDS_ERR_NOTFOUND);
    close_side(&s);
    close_side(&c);
    connect_ok(optional, dev, NULL, &s, &c);
    assert_int_equal(eds_tls_peer_cn(s.c, cn, sizeof(cn)), EDS_OK);
    assert_string_equal(cn, "myrio-01");
    close_side(&s);
    close_side(&c);

    /* A server without cafile asks for no certificate and trusts no CN. */
    connect_ok(no_ca, dev, NULL, &s, &c);
    assert_int_equal(eds_tls_peer_cn(s.c, cn, sizeof(cn)), EDS_ERR_NOTFOUND);
    /* The client sees the gateway's certificate. */
    assert_int_equal(eds_tls_peer_cn(c.c, cn, sizeof(cn)), EDS_OK);
    assert_string_equal(cn, "localhost");
    close_side(&s);
    close_side(&c);

    eds_tls_ctx_destroy(strict);
    eds_tls_ctx_destroy(optional);
    eds_tls_ctx_destroy(no_ca);
    eds_tls_ctx_destroy(dev);
    eds_tls_ctx_destroy(anon);
    eds_tls_ctx_destroy(alien);
}

/* A raw OpenSSL client limited to one old protocol version. */
static void old_client_refused(int version)
{
    eds_tls_ctx *sctx = server_ctx(NULL, false);
    side s, c;
    open_pair(sctx, NULL, NULL, &s, &c);
    SSL_CTX *old = SSL_CTX_new(TLS_client_method());
    assert_non_null(old);
    SSL_CTX_set_security_level(old, 0);
    assert_int_equal(SSL_CTX_set_cipher_list(old, "ALL:@SECLEVEL=0"), 1);
    assert_int_equal(SSL_CTX_set_min_proto_version(old, version), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(old, version), 1);
    SSL *ssl = SSL_new(old);
    assert_non_null(ssl);
    assert_int_equal(SSL_set_fd(ssl, c.fd), 1);
    SSL_set_connect_state(ssl);
    int client_ret = -1;
    s.rc = EDS_ERR_AGAIN;
    for (int turn = 0; turn < 20 && s.rc == EDS_ERR_AGAIN; turn++) {
        client_ret = SSL_do_handshake(ssl);
        s.rc = eds_tls_handshake(s.c, &s.want, &s.err);
    }
    assert_int_equal(s.rc, EDS_ERR_TLS);
    assert_contains(s.err.msg, "older than 1.2");
    client_ret = SSL_do_handshake(ssl);
    assert_int_not_equal(client_ret, 1);
    SSL_free(ssl);
    SSL_CTX_free(old);
    eds_tls_ctx_destroy(sctx);
    close_side(&s);
    close_side(&c);
}

static void test_tls10_and_tls11_refused(void **state)
{
    old_client_refused(TLS1_VERSION);
    old_client_refused(TLS1_1_VERSION);
}

static void test_plain_tcp_on_tls_port(void **state)
{
    eds_tls_ctx *sctx = server_ctx(NULL, false);
    side s, c;
    open_pair(sctx, NULL, NULL, &s, &c);
    const char line[] = "{\"type\":\"hello\",\"device\":\"myrio-01\",\"proto\":1}\n";
    assert_int_equal(write(c.fd, line, strlen(line)), (ssize_t)strlen(line));
    assert_int_equal(eds_tls_handshake(s.c, &s.want, &s.err), EDS_ERR_TLS);
    assert_contains(s.err.msg, "not a TLS handshake");
    /* A dead connection stays dead. */
    assert_int_equal(eds_tls_handshake(s.c, &s.want, &s.err), EDS_ERR_TLS);
    eds_tls_ctx_destroy(sctx);
    close_side(&s);
    close_side(&c);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Stalled peers: silence, half a ClientHello, a server that never answers.
 * Every call returns at once with EDS_ERR_AGAIN and what to wait for. */
static void test_stalled_peer_never_blocks(void **state)
{
    eds_tls_ctx *sctx = server_ctx(path("main/ca.crt"), true);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), NULL, "localhost");
    side s, c;

    /* silence */
    open_pair(sctx, NULL, NULL, &s, &c);
    double t0 = now();
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(eds_tls_handshake(s.c, &s.want, &s.err), EDS_ERR_AGAIN);
        assert_int_equal(s.want, EDS_TLS_WANT_READ);
    }
    char buf[64];
    assert_int_equal(eds_tls_read(s.c, buf, sizeof(buf), &s.want, &s.err), EDS_ERR_AGAIN);
    assert_true(now() - t0 < 2.0);

    /* half a ClientHello */
    side c2, s2;
    open_pair(sctx, cctx, NULL, &s2, &c2);
    assert_int_equal(eds_tls_handshake(c2.c, &c2.want, &c2.err), EDS_ERR_AGAIN);
    assert_int_equal(c2.want, EDS_TLS_WANT_READ); /* sent its hello, waits for ours */
    char hello[4096];
    ssize_t n = read(s2.fd, hello, sizeof(hello)); /* steal it from the server */
    assert_true(n > 10);
    assert_int_equal(write(c.fd, hello, (size_t)n / 2), n / 2);
    t0 = now();
    for (int i = 0; i < 1000; i++)
        assert_int_equal(eds_tls_handshake(s.c, &s.want, &s.err), EDS_ERR_AGAIN);
    assert_int_equal(s.want, EDS_TLS_WANT_READ);
    assert_true(now() - t0 < 2.0);
    /* the rest arrives: the handshake goes on (and then waits for a client
     * certificate that nobody sends) */
    assert_int_equal(write(c.fd, hello + n / 2, (size_t)(n - n / 2)), n - n / 2);
    assert_int_equal(eds_tls_handshake(s.c, &s.want, &s.err), EDS_ERR_AGAIN);
    n = read(c.fd, hello, sizeof(hello));
    assert_true(n > 100); /* ServerHello and the rest of the server's flight */

    /* a client whose server never answers */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(eds_tls_handshake(c2.c, &c2.want, &c2.err), EDS_ERR_AGAIN);
        assert_int_equal(c2.want, EDS_TLS_WANT_READ);
    }
    close_side(&s);
    close_side(&c);
    close_side(&s2);
    close_side(&c2);
    eds_tls_ctx_destroy(sctx);
    eds_tls_ctx_destroy(cctx);
}

/* Certificate reload: a new ctx replaces the old one; connections made
 * from the old one finish their handshake and keep working. */
static void test_ctx_swap_keeps_connections(void **state)
{
    eds_tls_ctx *old = server_ctx(path("main/ca.crt"), true);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), "main/devices/dev2.crt", "localhost");
    side s, c;
    open_pair(old, cctx, NULL, &s, &c);
    assert_int_equal(eds_tls_handshake(c.c, &c.want, &c.err), EDS_ERR_AGAIN);
    eds_tls_ctx *fresh = server_ctx(path("main/ca.crt"), true);
    eds_tls_ctx_destroy(old);
    drive(&s, &c);
    assert_int_equal(s.rc, EDS_OK);
    assert_int_equal(c.rc, EDS_OK);
    char cn[80];
    assert_int_equal(eds_tls_peer_cn(s.c, cn, sizeof(cn)), EDS_OK);
    assert_string_equal(cn, "dev2");
    assert_int_equal(eds_tls_write(s.c, "ok\n", 3, &s.want, &s.err), 3);
    char buf[8];
    read_exact(&c, buf, 3);
    assert_memory_equal(buf, "ok\n", 3);
    close_side(&s);
    close_side(&c);
    /* the new ctx serves new connections */
    connect_ok(fresh, cctx, NULL, &s, &c);
    close_side(&s);
    close_side(&c);
    eds_tls_ctx_destroy(fresh);
    eds_tls_ctx_destroy(cctx);
}

/* Real TCP on 127.0.0.1, as the agent does it: the client starts its
 * handshake while its non-blocking connect() is still in progress, and
 * both sides wait with poll() for exactly what they are told to want. */
static void test_loopback_tcp_with_poll(void **state)
{
    eds_tls_ctx *sctx = server_ctx(path("main/ca.crt"), true);
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), "main/devices/myrio-01.crt", "127.0.0.1");
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);

    side s = {.fd = -1}, c = {.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0)};
    assert_true(c.fd >= 0);
    int rc = connect(c.fd, (struct sockaddr *)&a, sizeof(a));
    assert_true(rc == 0 || errno == EINPROGRESS);
    assert_int_equal(eds_tls_conn_create(cctx, c.fd, false, NULL, &c.c, &c.err), EDS_OK);
    s.rc = c.rc = EDS_ERR_AGAIN;
    c.want = EDS_TLS_WANT_WRITE;
    double deadline = now() + 10.0;
    while ((s.rc == EDS_ERR_AGAIN || c.rc == EDS_ERR_AGAIN) && now() < deadline) {
        struct pollfd p[2] = {{.fd = c.fd}, {.fd = s.c ? s.fd : lfd, .events = POLLIN}};
        p[0].events = c.rc != EDS_ERR_AGAIN ? 0 : c.want == EDS_TLS_WANT_READ ? POLLIN : POLLOUT;
        if (s.c)
            p[1].events = s.rc != EDS_ERR_AGAIN         ? 0
                          : s.want == EDS_TLS_WANT_READ ? POLLIN
                                                        : POLLOUT;
        assert_true(poll(p, 2, 1000) >= 0);
        if (p[0].revents && c.rc == EDS_ERR_AGAIN)
            c.rc = eds_tls_handshake(c.c, &c.want, &c.err);
        if (p[1].revents && !s.c) {
            s.fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
            assert_true(s.fd >= 0);
            assert_int_equal(eds_tls_conn_create(sctx, s.fd, true, NULL, &s.c, &s.err), EDS_OK);
        }
        if (s.c && s.rc == EDS_ERR_AGAIN)
            s.rc = eds_tls_handshake(s.c, &s.want, &s.err);
    }
    if (s.rc != EDS_OK || c.rc != EDS_OK)
        fail_msg("handshake: server %d (%s), client %d (%s)", s.rc, s.err.msg, c.rc, c.err.msg);
    char cn[80];
    assert_int_equal(eds_tls_peer_cn(s.c, cn, sizeof(cn)), EDS_OK);
    assert_string_equal(cn, "myrio-01");
    close(lfd);
    close_all(sctx, cctx, &s, &c);
}

/* Nothing listens: the client's handshake ends with EDS_ERR_CLOSED and
 * the reason, it does not hang. */
static void test_connect_refused(void **state)
{
    eds_tls_ctx *cctx = client_ctx(path("main/ca.crt"), NULL, "localhost");
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a)); /* bound, not listening */
    assert_true(rc == 0 || errno == EINPROGRESS || errno == ECONNREFUSED);
    eds_tls_conn *conn;
    eds_error err;
    assert_int_equal(eds_tls_conn_create(cctx, fd, false, NULL, &conn, &err), EDS_OK);
    int want = 0;
    rc = EDS_ERR_AGAIN;
    for (int i = 0; i < 100 && rc == EDS_ERR_AGAIN; i++) {
        struct pollfd p = {.fd = fd, .events = want == EDS_TLS_WANT_READ ? POLLIN : POLLOUT};
        poll(&p, 1, 100);
        rc = eds_tls_handshake(conn, &want, &err);
    }
    assert_int_equal(rc, EDS_ERR_CLOSED);
    assert_contains(err.msg, "refused");
    eds_tls_conn_destroy(conn);
    eds_tls_ctx_destroy(cctx);
    close(fd);
    close(lfd);
}

static void test_ctx_errors(void **state)
{
    eds_tls_ctx *ctx = (eds_tls_ctx *)&ctx; /* must be reset to NULL on failure */
    eds_error err;
    eds_tls_server_opts so = {.certfile = path("main/gateway.crt")};
    assert_int_equal(eds_tls_server_ctx_create(&so, &ctx, &err), EDS_ERR_INVAL);
    assert_null(ctx);

    so.keyfile = path("main/gateway.key");
    so.require_certificate = true;
    assert_int_equal(eds_tls_server_ctx_create(&so, &ctx, &err), EDS_ERR_INVAL);
    assert_contains(err.msg, "require_certificate needs cafile");

    so.require_certificate = false;
    so.certfile = path("main/missing.crt");
    assert_int_equal(eds_tls_server_ctx_create(&so, &ctx, &err), EDS_ERR_TLS);
    assert_contains(err.msg, "certfile ");
    assert_contains(err.msg, "missing.crt");

    so.certfile = path("main/gateway.crt");
    so.keyfile = path("main/devices/dev2.key");
    assert_int_equal(eds_tls_server_ctx_create(&so, &ctx, &err), EDS_ERR_TLS);
    assert_contains(err.msg, "is not the key of certfile");

    so.keyfile = path("main/gateway.key");
    so.cafile = path("main/gateway.key"); /* a key is no CA */
    assert_int_equal(eds_tls_server_ctx_create(&so, &ctx, &err), EDS_ERR_TLS);
    assert_contains(err.msg, "cafile ");
    assert_null(ctx);

    eds_tls_client_opts co = {.cafile = path("main/ca.crt"),
                              .certfile = path("main/devices/dev2.crt")};
    assert_int_equal(eds_tls_client_ctx_create(&co, &ctx, &err), EDS_ERR_INVAL);

    /* A client needs a name to check; a server ctx makes no client. */
    co.certfile = NULL;
    assert_int_equal(eds_tls_client_ctx_create(&co, &ctx, &err), EDS_OK);
    eds_tls_conn *conn = (eds_tls_conn *)&conn;
    assert_int_equal(eds_tls_conn_create(ctx, 0, false, NULL, &conn, &err), EDS_ERR_INVAL);
    assert_null(conn);
    assert_contains(err.msg, "no server name");
    assert_int_equal(eds_tls_conn_create(ctx, 0, true, NULL, &conn, &err), EDS_ERR_INVAL);
    eds_tls_ctx_destroy(ctx);

    eds_tls_ctx_destroy(NULL);
    eds_tls_conn_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_bulk_both_ways_nonblocking),
        cmocka_unit_test(test_peer_gone),
        cmocka_unit_test(test_unknown_ca_refused),
        cmocka_unit_test(test_host_name_checked),
        cmocka_unit_test(test_client_certificate),
        cmocka_unit_test(test_tls10_and_tls11_refused),
        cmocka_unit_test(test_plain_tcp_on_tls_port),
        cmocka_unit_test(test_stalled_peer_never_blocks),
        cmocka_unit_test(test_ctx_swap_keeps_connections),
        cmocka_unit_test(test_loopback_tcp_with_poll),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_ctx_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
