/*
 * gw_session.h - the agent protocol on each connection: hello,
 * authentication (password file, client certificate, login delay), welcome,
 * and one line at a time after it (data, ping, cmd_ack), with the reasons to
 * stop reading a connection for a while (window full, max_rate, output not
 * drained, max_pending_bytes). Errors go to the agent as protocol errors,
 * fatal ones close the connection.
 *
 * Owns the binding of a connection to its device (gw_conn.dev, gw_device.conn)
 * and the connection-level timers (auth_timeout, idle_timeout, the login
 * delay). Borrows everything else: connections (gw_conn.h), records
 * (gw_window.h), publishing (gw_relay.h), commands (gw_downlink.h).
 */
#ifndef GW_SESSION_H
#define GW_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "eds_passwd.h"
#include "gw_config.h"
#include "gw_conn.h"
#include "gw_downlink.h"
#include "gw_guard.h"
#include "gw_relay.h"
#include "gw_schemas.h"
#include "gw_stats.h"
#include "gw_window.h"

typedef struct gw_session {
    const gw_config *cfg;
    gw_conns *conns;
    gw_window *w;
    gw_relay *relay;
    gw_downlink *dl;
    gw_guard *guard;
    gw_stats *st;
    eds_passwd *passwd;  /* borrowed; NULL: none (the server swaps it on reload) */
    gw_schemas *schemas; /* borrowed (the server swaps it on reload) */
    bool stopping;       /* no more reading */
    bool paused_global;  /* max_pending_bytes reached: every connection waits */
    char *line_buf;      /* formatting of rejected-line documents; owned */
    size_t line_cap;
} gw_session;

void gw_session_init(gw_session *ss, const gw_config *cfg, gw_conns *conns, gw_window *w,
                     gw_relay *relay, gw_downlink *dl, gw_guard *guard, gw_stats *st);
void gw_session_free(gw_session *ss);

/* Events of the loop for connection c. */
void gw_session_event(gw_session *ss, gw_conn *c, uint32_t events);

/* A record of d completed (gw_relay_result): a connection waiting for its
 * welcome may get it, a paused one may read again. */
void gw_session_progress(gw_session *ss, gw_device *d);

/* The restored publishes are confirmed: connections waiting get welcome. */
void gw_session_restored(gw_session *ss);

/* Timers: the login delay, auth_timeout, idle_timeout, and connections held
 * back by max_rate. */
void gw_session_tick(gw_session *ss, int64_t now);

/* End of a batch: flushes output, releases closed connections, and resumes
 * everyone once max_pending_bytes allows. */
void gw_session_end_batch(gw_session *ss);

/* Shutdown: stop reading everyone; later, tell everyone shutting_down. */
void gw_session_stop_reading(gw_session *ss);
void gw_session_shutting_down(gw_session *ss);

#endif
