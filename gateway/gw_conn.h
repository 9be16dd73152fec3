/*
 * gw_conn.h - agent connections and their I/O: listeners, accept (with the
 * max_clients and per-address caps), reads into the line framer, the output
 * buffer and its flushing, TLS handshake steps, and the lingering close.
 * Of the protocol it knows only the server_busy line that refuses a
 * connection at accept; gw_session.h drives everything else (the session
 * and downlink fields of gw_conn are theirs).
 *
 * Owns: the connection table (indexed by fd, bounded by max_clients) and
 * every gw_conn in it, with its socket, TLS state, framer and output buffer.
 * A connection is closed in two steps: gw_conns_close() marks it (no more
 * reads; its output is still flushed) and gw_conns_pop_closing() hands it
 * to the caller at the end of the batch, which releases what it attached
 * and calls gw_conn_destroy().
 */
#ifndef GW_CONN_H
#define GW_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "eds_err.h"
#include "eds_framer.h"
#include "eds_tls.h"
#include "gw_cmdq.h"
#include "gw_config.h"
#include "gw_guard.h"
#include "gw_loop.h"
#include "gw_stats.h"
#include "gw_window.h"

#define GW_READ_CHUNK 16384     /* one read from a socket */
#define GW_OUT_SOFT (64 * 1024) /* past this much unsent output, stop reading */

/* What a pointer registered with the loop is. */
enum gw_handle_kind { GW_H_LISTENER, GW_H_CONN, GW_H_PUBLISHER, GW_H_SIGNAL, GW_H_METRICS };

typedef struct gw_handle {
    enum gw_handle_kind kind;
} gw_handle;

typedef struct gw_listener {
    gw_handle h;
    int fd;
    int port;
    bool tls;
} gw_listener;

enum gw_conn_state { GW_C_NEW, GW_C_WAIT_WELCOME, GW_C_READY, GW_C_CLOSING };

typedef struct gw_out {
    char *buf;
    size_t len, off, cap; /* bytes [off, len) not sent yet */
} gw_out;

typedef struct gw_conn {
    gw_handle h;
    int fd;
    enum gw_conn_state state;
    char peer[64]; /* "ip:port" */
    gw_ip *ip;     /* guard entry of the address; NULL if untracked */
    bool preauth;  /* counted in gw_conns.n_preauth: no successful hello yet */
    /* I/O */
    eds_framer framer;
    gw_out out;
    eds_tls_conn *tls; /* NULL on a plain listener */
    bool handshaking;  /* TLS handshake not complete yet */
    int tls_want;      /* EDS_TLS_WANT_* while handshaking */
    bool reading, writing, dirty;
    struct gw_conn *next_dirty, *next_closing;
    int64_t created_ms, last_rx_ms;
    /* session */
    gw_device *dev;
    char stream[EDS_STREAM_MAX + 1]; /* from hello; applied at welcome */
    int bad_in_row;
    int64_t fail_at_ms; /* > 0: send auth_failed then (login delay) */
    /* downlink */
    int64_t next_cmd_id;
    bool cmd_results; /* the agent's hello asked for command results (protocol.md) */
    size_t max_line;  /* the agent's limit on a received line (its hello); 0: not given */
    gw_cmdq unacked;
} gw_conn;

typedef struct gw_conns {
    gw_loop *loop;
    const gw_config *cfg;
    gw_stats *st;
    gw_conn **by_fd;
    size_t cap, n;
    size_t n_preauth, max_preauth; /* connections before their hello; its cap */
    gw_conn *dirty, *closing;
    char *scratch; /* GW_READ_CHUNK, for what a lingering close discards */
    char *spare;   /* GW_READ_CHUNK read buffer lent to the framer of the connection read next */
} gw_conns;

/* The device's connection if it is past welcome, else NULL. */
static inline gw_conn *gw_ready_conn(const gw_device *d)
{
    return d->conn && d->conn->state == GW_C_READY ? d->conn : NULL;
}

/* An empty table for cfg->max_clients connections. EDS_OK or EDS_ERR_NOMEM. */
int gw_conns_init(gw_conns *t, gw_loop *loop, const gw_config *cfg, gw_stats *st);

/* Destroys every connection left and the table. */
void gw_conns_free(gw_conns *t);

/* Opens the listener lc into l and registers it with the loop. */
int gw_listener_open(gw_listener *l, gw_loop *loop, const gw_listener_conf *lc, eds_error *err);

/* Accepts what waits on l (at most 64): refuses past max_clients or
 * max_conn_per_ip with server_busy; tls_ctx for a TLS listener. Past
 * max_unauthenticated connections without a hello, one of them is closed
 * (server_busy): from an unknown address before a known-good one, then from
 * the address holding the most, then from the one that opened the most in
 * the last 10 to 20 s, then the oldest; so squatters cannot keep a device that
 * logged in before from logging in again, and a flood that comes back to its
 * addresses closes its own connections before a device's first login. */
void gw_conns_accept(gw_conns *t, gw_listener *l, gw_guard *g, eds_tls_ctx *tls_ctx);

/* Tells the loop what c waits for (reading, writing, or the handshake). */
void gw_conn_update_events(gw_conns *t, gw_conn *c);

/* Queues c for gw_conns_pop_dirty (its output is flushed at the end of the batch). */
void gw_conn_mark_dirty(gw_conns *t, gw_conn *c);
gw_conn *gw_conns_pop_dirty(gw_conns *t);

/* Room for n more bytes of output; NULL when out of memory. */
char *gw_conn_out_reserve(gw_conn *c, size_t n);
/* Makes the n bytes written at the reserved room part of the output. */
void gw_conn_out_commit(gw_conns *t, gw_conn *c, size_t n);
/* Queues a whole line (logs when out of memory). */
void gw_conn_send(gw_conns *t, gw_conn *c, const char *line, size_t n);

/* Unsent output bytes. */
static inline size_t gw_conn_out_pending(const gw_conn *c)
{
    return c->out.len - c->out.off;
}

/* Reads once into the framer: > 0 bytes, 0 when the peer closed,
 * EDS_ERR_AGAIN, or another negative code with the reason in err. */
ssize_t gw_conn_read(gw_conns *t, gw_conn *c, eds_error *err);

/* Takes back the read buffer lent to c's framer once c holds no input, for
 * the next connection to read into (one buffer, not a malloc per read). */
void gw_conn_reclaim(gw_conns *t, gw_conn *c);

/* Sends what the output holds. EDS_OK (sent, or the rest waits for the
 * socket), or an error with the reason in err: the output is dropped and the
 * caller closes c. */
int gw_conn_flush(gw_conns *t, gw_conn *c, eds_error *err);

/* Advances c's TLS handshake: EDS_OK once done, EDS_ERR_AGAIN, or an error. */
int gw_conn_tls_step(gw_conns *t, gw_conn *c, eds_error *err);

/* c said a good hello: it no longer counts against max_unauthenticated. */
void gw_conn_authenticated(gw_conns *t, gw_conn *c);

/* Stops reading c (a pause). */
void gw_conn_pause(gw_conns *t, gw_conn *c);

/* Marks c closing (no more reads, output still flushed). Idempotent. */
void gw_conns_close(gw_conns *t, gw_conn *c);
gw_conn *gw_conns_pop_closing(gw_conns *t);

/* Lingering close and release of c (its unacked commands must be gone). */
void gw_conn_destroy(gw_conns *t, gw_conn *c);

#endif
