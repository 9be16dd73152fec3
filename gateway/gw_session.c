#include "gw_session.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eds_clock.h"
#include "eds_log.h"
#include "eds_proto.h"
#include "gw_now.h"
#include "gw_records.h"

#define MAX_BAD_IN_ROW 100

/* What on_line tells the reader: go on, stop asking for lines (a pause), or
 * stop for good (the connection is closing). */
enum { LINE_GO, LINE_PAUSE, LINE_STOP };

void gw_session_init(gw_session *ss, const gw_config *cfg, gw_conns *conns, gw_window *w,
                     gw_relay *relay, gw_downlink *dl, gw_guard *guard, gw_stats *st)
{
    memset(ss, 0, sizeof(*ss));
    ss->cfg = cfg;
    ss->conns = conns;
    ss->w = w;
    ss->relay = relay;
    ss->dl = dl;
    ss->guard = guard;
    ss->st = st;
}

void gw_session_free(gw_session *ss)
{
    free(ss->line_buf);
    ss->line_buf = NULL;
    ss->line_cap = 0;
}

/* Detaches c from its device: unpublished records go (the agent resends
 * them), unacked commands go back to the front of the held queue. */
static void detach(gw_session *ss, gw_conn *c)
{
    gw_device *d = c->dev;
    if (!d)
        return;
    c->dev = NULL;
    if (d->conn != c)
        return;
    d->conn = NULL;
    gw_downlink_detach(ss->dl, c, d);
    gw_relay_drain(ss->relay, d); /* trims the never-published tail */
    if (d->online) {
        d->online = false;
        d->since = time(NULL);
        gw_relay_status(ss->relay, d);
    }
}

static void close_conn(gw_session *ss, gw_conn *c, const char *why)
{
    if (c->state == GW_C_CLOSING)
        return;
    eds_log_info("%s%s%s: closing (%s)", c->peer, c->dev ? " " : "", c->dev ? c->dev->id : "", why);
    detach(ss, c);
    gw_conns_close(ss->conns, c);
}

static void send_error(gw_session *ss, gw_conn *c, eds_proto_error code, const char *msg)
{
    char line[512];
    size_t n = eds_fmt_error(line, sizeof(line), code, msg);
    if (n)
        gw_conn_send(ss->conns, c, line, n);
    if (eds_proto_error_fatal(code))
        close_conn(ss, c, eds_proto_error_name(code));
}

static bool must_pause(gw_session *ss, gw_conn *c)
{
    if (ss->w->pending_bytes > ss->cfg->max_pending_bytes) {
        ss->paused_global = true; /* end_batch resumes everyone once below */
        return true;
    }
    if (gw_conn_out_pending(c) > GW_OUT_SOFT)
        return true;
    if (c->dev && gw_bucket_empty(&c->dev->rate, ss->cfg->max_rate, gw_now_ms())) {
        ss->st->rate_limited++; /* tick() resumes it once the bucket refills */
        return true;
    }
    return c->dev && c->dev->ring.count >= (uint32_t)ss->cfg->window;
}

static void resume_reading(gw_session *ss, gw_conn *c);

static void try_welcome(gw_session *ss, gw_conn *c)
{
    gw_device *d = c->dev;
    if (d->ring.count)
        return; /* records of an earlier connection still in flight */
    if (ss->relay->restoring)
        return; /* last_seq is known once the restored publishes are confirmed */
    if (strcmp(d->stream, c->stream) != 0) {
        /* A new sequence space: the agent lost its counter. */
        snprintf(d->stream, sizeof(d->stream), "%s", c->stream);
        d->last_seq = 0;
        d->marked_seq = 0;
        gw_window_journal(ss->w, d);
    } else if (!d->journaled) {
        /* Known after a restart, so that a crash never leaves it marked online. */
        gw_window_journal(ss->w, d);
    }
    char line[128];
    size_t n = eds_fmt_welcome(line, sizeof(line), d->last_seq);
    if (c->cmd_results)
        n = eds_fmt_add_cmd_results(line, sizeof(line), n);
    gw_conn_send(ss->conns, c, line, n);
    c->state = GW_C_READY;
    d->last_accepted = d->last_seq;
    d->online = true;
    d->since = time(NULL);
    snprintf(d->peer, sizeof(d->peer), "%s", c->peer);
    gw_relay_status(ss->relay, d);
    gw_downlink_deliver(ss->dl, c);
    resume_reading(ss, c);
    eds_log_info("%s: device %s online (stream %s, last_seq %" PRIu64 ")", c->peer, d->id,
                 d->stream, d->last_seq);
}

/* The hello's credentials: the password file, or with mutual TLS the
 * verified certificate that names the device. */
static bool authenticated(gw_session *ss, gw_conn *c, const eds_msg *m, bool *cert_mismatch)
{
    char cn[EDS_DEVICE_MAX + 2] = "";
    bool want_cert = c->tls && ss->cfg->require_certificate;
    bool cert_ok = want_cert && eds_tls_peer_cn(c->tls, cn, sizeof(cn)) == EDS_OK &&
                   strcmp(cn, m->device) == 0;
    *cert_mismatch = want_cert && !cert_ok;
    if (*cert_mismatch)
        return false;
    if (ss->passwd)
        return eds_passwd_check(ss->passwd, m->device, m->password) == EDS_OK;
    return cert_ok || ss->cfg->allow_anonymous;
}

static void handle_hello(gw_session *ss, gw_conn *c, const eds_msg *m)
{
    if (!eds_device_id_valid(m->device)) {
        ss->st->auth_failures++;
        send_error(ss, c, EDS_PE_AUTH_FAILED, "invalid device id");
        return;
    }
    if (m->proto != EDS_PROTO_VERSION) {
        send_error(ss, c, EDS_PE_UNSUPPORTED_PROTO, "this gateway speaks proto 1");
        return;
    }
    bool cert_mismatch;
    if (!authenticated(ss, c, m, &cert_mismatch)) {
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000);
        ss->st->auth_failures++;
        eds_log_limited(&lim, EDS_LOG_NOTICE, "%s: authentication failed for device %s%s", c->peer,
                        m->device, cert_mismatch ? " (certificate CN does not match)" : "");
        /* A growing delay per address slows password guessing; a budget for all
         * addresses together slows guessing from many. */
        int64_t now = gw_now_ms();
        int64_t delay = gw_guard_login_failed(c->ip, now);
        if (!gw_guard_fail_budget(ss->guard, ss->cfg->max_auth_failures, now)) {
            ss->st->logins_throttled++;
            delay = GW_LOGIN_DELAY_MAX_MS;
        }
        if (delay > 0) {
            ss->st->login_delays++;
            c->fail_at_ms = now + delay;
            return; /* on_line pauses reading; tick() sends auth_failed */
        }
        send_error(ss, c, EDS_PE_AUTH_FAILED, "unknown device or wrong password");
        return;
    }
    gw_guard_login_ok(ss->guard, c->ip, gw_now_ms());
    gw_conn_authenticated(ss->conns, c);
    gw_device *d = gw_window_get(ss->w, m->device);
    if (!d) {
        send_error(ss, c, EDS_PE_SERVER_BUSY, "too many devices");
        return;
    }
    if (d->conn) {
        ss->st->replaced++;
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000); /* two devices, one id */
        eds_log_limited(&lim, EDS_LOG_NOTICE, "device %s: new connection from %s replaces %s",
                        d->id, c->peer, d->conn->peer);
        send_error(ss, d->conn, EDS_PE_REPLACED, "a newer connection authenticated as this device");
    }
    /* Records of an earlier connection still in flight finish first:
     * try_welcome waits for them, then applies the stream. */
    snprintf(c->stream, sizeof(c->stream), "%s", m->stream);
    c->cmd_results = m->cmd_results;
    c->max_line = m->max_line < SIZE_MAX ? (size_t)m->max_line : SIZE_MAX;
    d->conn = c;
    c->dev = d;
    d->schema = gw_schemas_for(ss->schemas, d->id);
    c->state = GW_C_WAIT_WELCOME;
    try_welcome(ss, c);
}

/* Publishes a bad line to the rejected topic: {"error":CODE,"line":"..."}. */
static void reject_line(gw_session *ss, gw_conn *c, eds_proto_error code, const char *line,
                        size_t len, const char *reason)
{
    size_t cap = gw_reject_line_cap(len, reason);
    if (ss->line_cap < cap) {
        char *nb = realloc(ss->line_buf, cap);
        if (!nb) {
            ss->st->rejected_skipped++;
            return;
        }
        ss->line_buf = nb;
        ss->line_cap = cap;
    }
    size_t n = gw_reject_line_doc(ss->line_buf, cap, code, line, len, reason);
    char topic[GW_TOPIC_MAX];
    gw_relay_topic(ss->relay, c->dev->id, "rejected", topic);
    if (gw_relay_publish_untracked(ss->relay, topic, ss->line_buf, n, ss->cfg->qos, false) !=
        EDS_OK)
        ss->st->rejected_skipped++;
}

static void handle_data(gw_session *ss, gw_conn *c, const eds_msg *m)
{
    gw_device *d = c->dev;
    ss->st->messages_in++;
    d->ctr.records_in++;
    d->ctr.last_seen = time(NULL);
    if (gw_ring_reserve(ss->w, d) != EDS_OK) {
        /* Cannot happen while must_pause() is honoured; refuse rather than grow. */
        send_error(ss, c, EDS_PE_BAD_MESSAGE, "window full: wait for acks before sending more");
        return;
    }
    gw_record r = {
        .seq = m->seq, .kind = GW_REC_DATA, .state = GW_REC_WAITING, .received_ms = eds_wall_ms()};
    if (m->seq <= d->last_accepted) {
        r.kind = GW_REC_DUP;
        r.state = GW_REC_DONE;
    } else if (gw_record_build(&r, d->schema, m) != EDS_OK) {
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000);
        eds_log_limited(&lim, EDS_LOG_ERROR, "%s: out of memory for a record", d->id);
        send_error(ss, c, EDS_PE_SERVER_BUSY, "out of memory");
        return;
    }
    /* refill, then take this record's token */
    gw_bucket_take(&d->rate, ss->cfg->max_rate, gw_now_ms());
    if (m->seq > d->last_accepted)
        d->last_accepted = m->seq;
    gw_ring_push(ss->w, d, &r);
    if (r.state == GW_REC_WAITING)
        gw_relay_ready(ss->relay, d);
    else
        gw_relay_drain(ss->relay, d);
}

/* True when the line is a JSON object whose "type" is "hello", whatever else
 * is wrong with it (only called for lines the strict parser refused). */
static bool looks_like_hello(const char *line, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(line, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    bool hello = cJSON_IsString(type) && strcmp(type->valuestring, "hello") == 0;
    cJSON_Delete(root);
    return hello;
}

/* The first line of a connection: it must be a hello. */
static int on_first_line(gw_session *ss, gw_conn *c, int rc, const eds_msg *m, const char *line,
                         size_t len, const eds_error *err)
{
    if (rc == EDS_OK && m->type == EDS_MSG_HELLO) {
        handle_hello(ss, c, m);
    } else if (rc != EDS_OK && looks_like_hello(line, len)) {
        /* A hello with a bad field (a device id with \u0000, a number for a
         * string): the spec refuses such ids with auth_failed. */
        ss->st->auth_failures++;
        send_error(ss, c, EDS_PE_AUTH_FAILED, err->msg);
    } else {
        send_error(ss, c, EDS_PE_NOT_AUTHENTICATED, "the first message must be hello");
    }
    if (c->fail_at_ms)
        return LINE_PAUSE; /* waiting out the login delay */
    if (c->state == GW_C_CLOSING)
        return LINE_STOP;
    if (c->state != GW_C_READY)
        return LINE_PAUSE; /* until welcome */
    return must_pause(ss, c) ? LINE_PAUSE : LINE_GO;
}

static int on_line(gw_session *ss, gw_conn *c, const char *line, size_t len)
{
    if (c->state == GW_C_CLOSING)
        return LINE_STOP;
    eds_msg m;
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_msg_parse(line, len, EDS_TO_GATEWAY, &m, &err);
    if (c->state == GW_C_NEW) {
        int next = on_first_line(ss, c, rc, &m, line, len, &err);
        eds_msg_free(&m);
        return next;
    }
    if (c->state == GW_C_WAIT_WELCOME) {
        /* Cannot happen: reading is off until welcome. */
        eds_msg_free(&m);
        return LINE_PAUSE;
    }
    if (rc != EDS_OK) {
        eds_proto_error code = rc == EDS_ERR_PARSE ? EDS_PE_BAD_JSON : EDS_PE_BAD_MESSAGE;
        ss->st->bad_lines++;
        reject_line(ss, c, code, line, len, err.msg);
        if (++c->bad_in_row >= MAX_BAD_IN_ROW) {
            /* bad_message is not fatal by itself: here it is, so close explicitly. */
            send_error(ss, c, EDS_PE_BAD_MESSAGE, "too many bad lines in a row");
            close_conn(ss, c, "too many bad lines in a row");
            return LINE_STOP;
        }
        send_error(ss, c, code, err.msg);
        return LINE_GO;
    }
    c->bad_in_row = 0;
    switch (m.type) {
    case EDS_MSG_DATA:
        handle_data(ss, c, &m);
        break;
    case EDS_MSG_PING: {
        char pong[32];
        gw_conn_send(ss->conns, c, pong, eds_fmt_pong(pong, sizeof(pong)));
        break;
    }
    case EDS_MSG_CMD_ACK:
        gw_downlink_ack(ss->dl, c, m.id);
        break;
    case EDS_MSG_CMD_NACK:
        gw_downlink_nack(ss->dl, c, &m);
        break;
    case EDS_MSG_HELLO:
        send_error(ss, c, EDS_PE_BAD_MESSAGE, "already authenticated");
        break;
    default:
        break;
    }
    eds_msg_free(&m);
    if (c->state == GW_C_CLOSING)
        return LINE_STOP;
    return must_pause(ss, c) ? LINE_PAUSE : LINE_GO;
}

/* The framer refused the input: a line too long (or out of memory). */
static void framer_failed(gw_session *ss, gw_conn *c, int rc)
{
    if (rc == EDS_ERR_TOOLONG) {
        char msg[96];
        snprintf(msg, sizeof(msg), "line longer than max_line (%zu bytes)", ss->cfg->max_line);
        ss->st->lines_too_long++;
        send_error(ss, c, EDS_PE_LINE_TOO_LONG, msg);
    } else {
        close_conn(ss, c, "out of memory");
    }
}

/* Asks the framer for the lines it holds, one at a time, until it needs more
 * input (true) or the connection pauses or closes (false). Pausing is just
 * not asking: the unread lines wait in the framer's buffer. */
static bool take_lines(gw_session *ss, gw_conn *c)
{
    for (;;) {
        const char *line;
        size_t len;
        int rc = eds_framer_next(&c->framer, &line, &len);
        if (rc == EDS_FRAMER_MORE) {
            gw_conn_reclaim(ss->conns, c);
            return true;
        }
        if (rc != EDS_FRAMER_LINE) {
            framer_failed(ss, c, rc);
            return false;
        }
        rc = on_line(ss, c, line, len);
        if (rc == LINE_STOP)
            return false;
        if (rc == LINE_PAUSE) {
            if (c->state != GW_C_CLOSING)
                gw_conn_pause(ss->conns, c);
            return false;
        }
    }
}

static void conn_readable(gw_session *ss, gw_conn *c)
{
    /* A TLS connection may hold decrypted bytes past one read: loop while
     * OpenSSL has some and the connection still wants input. */
    do {
        eds_error err;
        ssize_t n = gw_conn_read(ss->conns, c, &err);
        if (n == 0) {
            close_conn(ss, c, "peer closed");
            return;
        }
        if (n == EDS_ERR_AGAIN)
            return;
        if (n < 0) {
            close_conn(ss, c, err.msg);
            return;
        }
        take_lines(ss, c);
    } while (c->tls && c->reading && c->state != GW_C_CLOSING && eds_tls_pending(c->tls));
}

/* Takes the lines held since the last pause, then reads from the socket
 * again if nothing stands in the way. */
static void resume_reading(gw_session *ss, gw_conn *c)
{
    if (c->state != GW_C_READY || ss->stopping)
        return;
    if (must_pause(ss, c))
        return;
    if (!take_lines(ss, c) || c->state == GW_C_CLOSING)
        return;
    if (!c->reading) {
        c->reading = true;
        c->last_rx_ms = gw_now_ms(); /* idle time counts only while we read */
        gw_conn_update_events(ss->conns, c);
        /* Bytes OpenSSL already decrypted make no epoll event: read them now. */
        if (c->tls && eds_tls_pending(c->tls))
            conn_readable(ss, c);
    }
}

/* Advances a TLS handshake; once done, the connection reads like any other. */
static void tls_step(gw_session *ss, gw_conn *c)
{
    eds_error err;
    eds_error_clear(&err);
    int rc = gw_conn_tls_step(ss->conns, c, &err);
    if (rc == EDS_ERR_AGAIN)
        return;
    if (rc != EDS_OK) {
        ss->st->tls_failures++;
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000); /* junk on the TLS port */
        eds_log_limited(&lim, EDS_LOG_NOTICE, "%s: TLS handshake failed: %s", c->peer,
                        rc == EDS_ERR_CLOSED ? "peer closed" : err.msg);
        close_conn(ss, c, "TLS handshake failed");
        return;
    }
    if (eds_tls_pending(c->tls))
        conn_readable(ss, c);
}

void gw_session_event(gw_session *ss, gw_conn *c, uint32_t events)
{
    if (c->state == GW_C_CLOSING)
        return;
    if (c->handshaking) {
        tls_step(ss, c);
        return;
    }
    if (events & GW_EV_WRITE)
        gw_conn_mark_dirty(ss->conns, c); /* flushed in end_batch, after the journal */
    if ((events & (GW_EV_READ | GW_EV_ERROR)) && c->reading)
        conn_readable(ss, c);
    else if ((events & GW_EV_ERROR) && c->state != GW_C_CLOSING)
        close_conn(ss, c, "connection error");
}

void gw_session_progress(gw_session *ss, gw_device *d)
{
    if (d->conn && d->conn->state == GW_C_WAIT_WELCOME && d->ring.count == 0)
        try_welcome(ss, d->conn);
    else if (d->conn && d->conn->state == GW_C_READY && !d->conn->reading)
        resume_reading(ss, d->conn);
}

void gw_session_restored(gw_session *ss)
{
    for (size_t fd = 0; fd < ss->conns->cap; fd++)
        if (ss->conns->by_fd[fd] && ss->conns->by_fd[fd]->state == GW_C_WAIT_WELCOME)
            try_welcome(ss, ss->conns->by_fd[fd]);
}

void gw_session_tick(gw_session *ss, int64_t now)
{
    int64_t auth_ms = (int64_t)(ss->cfg->auth_timeout * 1000);
    int64_t idle_ms = (int64_t)(ss->cfg->idle_timeout * 1000);
    for (size_t fd = 0; fd < ss->conns->cap; fd++) {
        gw_conn *c = ss->conns->by_fd[fd];
        if (!c || c->state == GW_C_CLOSING)
            continue;
        if (c->fail_at_ms && now >= c->fail_at_ms) {
            send_error(ss, c, EDS_PE_AUTH_FAILED, "unknown device or wrong password");
        } else if (c->state == GW_C_NEW && !c->fail_at_ms && now - c->created_ms >= auth_ms) {
            ss->st->timeouts++;
            send_error(ss, c, EDS_PE_TIMEOUT, "no hello within auth_timeout");
        } else if (c->state == GW_C_WAIT_WELCOME && now - c->created_ms >= auth_ms) {
            /* Its welcome waits for records still in flight (a hung broker, a full
             * state_dir): say so rather than leave the agent guessing. */
            ss->st->server_busy++;
            send_error(ss, c, EDS_PE_SERVER_BUSY,
                       ss->relay->held || ss->relay->store_failed
                           ? "state_dir is full: try again later"
                           : "waiting for the broker: try again later");
        } else if (c->state == GW_C_READY && c->reading && idle_ms > 0 &&
                   now - c->last_rx_ms >= idle_ms) {
            ss->st->timeouts++;
            send_error(ss, c, EDS_PE_TIMEOUT, "idle past idle_timeout");
        } else if (c->state == GW_C_READY && !c->reading && ss->cfg->max_rate > 0) {
            resume_reading(ss, c); /* a rate-limited connection whose bucket refilled */
        }
    }
}

void gw_session_end_batch(gw_session *ss)
{
    gw_conn *c;
    while ((c = gw_conns_pop_dirty(ss->conns)) != NULL) {
        eds_error err;
        if (gw_conn_flush(ss->conns, c, &err) != EDS_OK) {
            if (c->state != GW_C_CLOSING)
                close_conn(ss, c, err.msg);
        } else if (gw_conn_out_pending(c) == 0 && c->state == GW_C_READY && !c->reading) {
            resume_reading(ss, c);
        }
    }
    while ((c = gw_conns_pop_closing(ss->conns)) != NULL) {
        gw_downlink_conn_gone(ss->dl, c);
        gw_conn_destroy(ss->conns, c);
    }
    if (ss->paused_global && ss->w->pending_bytes <= ss->cfg->max_pending_bytes) {
        ss->paused_global = false;
        for (size_t fd = 0; fd < ss->conns->cap; fd++)
            if (ss->conns->by_fd[fd] && !ss->conns->by_fd[fd]->reading)
                resume_reading(ss, ss->conns->by_fd[fd]);
    }
}

void gw_session_stop_reading(gw_session *ss)
{
    ss->stopping = true;
    for (size_t fd = 0; fd < ss->conns->cap; fd++)
        if (ss->conns->by_fd[fd])
            gw_conn_pause(ss->conns, ss->conns->by_fd[fd]);
}

void gw_session_shutting_down(gw_session *ss)
{
    for (size_t fd = 0; fd < ss->conns->cap; fd++) {
        gw_conn *c = ss->conns->by_fd[fd];
        if (c && c->state != GW_C_CLOSING)
            send_error(ss, c, EDS_PE_SHUTTING_DOWN, "the gateway is stopping");
    }
}
