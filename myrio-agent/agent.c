/*
 * agent.c - the engine: record intake, the protocol v1 state machine and
 * the poll(2) loop (agent_create.c builds it). It uses the queue, spool,
 * transport, input and downlink modules; none of them calls back into it
 * except the inputs through the accept callback. Commands from the gateway
 * go to agent_downlink, whose answers it sends.
 *
 * Delivery: a record is appended to the spool (or the memory queue) before
 * eds_agent_send returns, sent once it is durable, and removed only when
 * the gateway answers its seq with ack (delivered) or nack (refused by the
 * schema: logged, dropped). Replies come in send order, so the answer is
 * always for the oldest record of the queue. On every (re)connect the
 * queue is sent again from its oldest record, after dropping what the
 * welcome's last_seq says was already handled.
 */
#include "agent_engine.h"

#include "eds_clock.h"
#include "eds_log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- records in ------------------------------------------------------ */

static uint64_t pending_records(const eds_agent *a)
{
    return a->q.count + (a->spool ? spool_unread(a->spool) : 0);
}

/* Drop-oldest: frees room for one more record. Returns EDS_OK if it did. */
static int drop_oldest(eds_agent *a, eds_error *err)
{
    uint64_t n = 0;
    if (a->spool) {
        uint64_t upto, unread;
        int rc = spool_drop_oldest(a->spool, &upto, &unread, err);
        if (rc != EDS_OK)
            return rc;
        n = unread + agq_drop_upto(&a->q, upto);
    } else {
        n = agq_pop(&a->q);
    }
    if (n == 0)
        return EDS_ERR_FULL;
    bool first = a->stats.dropped == 0;
    a->stats.dropped += n;
    if (first || a->stats.dropped % 1000 < n)
        eds_log_warning("queue full: dropped the %" PRIu64 " oldest undelivered record%s "
                        "(full_policy drop-oldest; %" PRIu64 " dropped so far)",
                        n, eds_plural(n), a->stats.dropped);
    return EDS_OK;
}

static int enqueue(eds_agent *a, const char *data, size_t len, eds_error *err)
{
    for (int tries = 0;; tries++) {
        int rc;
        if (a->spool)
            rc = spool_append(a->spool, a->next_seq, data, len, err);
        else
            rc = agq_push(&a->q, a->next_seq, data, len);
        if (rc == EDS_OK)
            break;
        if (rc != EDS_ERR_FULL)
            return rc == EDS_ERR_NOMEM ? eds_error_set(err, rc, "out of memory") : rc;
        if (tries == 0 && a->spool) { /* the spool (or its disk) is full: say so */
            static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
            bool drop = a->cfg.full_policy == EDS_AGENT_FULL_DROP_OLDEST;
            eds_log_limited(&lim, EDS_LOG_WARNING, "%s: %s", err->msg,
                            drop ? "dropping the oldest records (full_policy drop-oldest)"
                                 : "inputs wait for acks (full_policy block)");
        }
        if (a->cfg.full_policy != EDS_AGENT_FULL_DROP_OLDEST || tries > 1000)
            return eds_error_set(err, EDS_ERR_FULL, "queue full");
        rc = drop_oldest(a, err);
        if (rc != EDS_OK)
            return eds_error_set(err, EDS_ERR_FULL, "queue full");
    }
    a->next_seq++;
    a->stats.accepted++;
    return EDS_OK;
}

int eds_agent_send(eds_agent *a, const char *json, size_t len, eds_error *err)
{
    size_t cap = a->cfg.max_line + 64;
    size_t n = eds_fmt_data(a->scratch, cap, a->next_seq, json, len);
    if (n == 0 || n > a->cfg.max_line) {
        a->stats.invalid++;
        return eds_error_set(err, EDS_ERR_TOOLONG,
                             "record of %zu bytes: its data line would "
                             "exceed max_line (%zu bytes)",
                             len, a->cfg.max_line);
    }
    /* The gateway's own strict parser: what passes here cannot be bad_json there. */
    eds_msg msg;
    eds_error perr;
    int rc = eds_msg_parse(a->scratch, n - 1, EDS_TO_GATEWAY, &msg, &perr);
    if (rc != EDS_OK || !cJSON_IsObject(msg.data)) {
        eds_msg_free(&msg);
        a->stats.invalid++;
        return eds_error_set(err, EDS_ERR_PARSE, "not a JSON object: %s",
                             rc != EDS_OK ? perr.msg : "not an object");
    }
    /* The bytes must be that one object and nothing more: `{"a":1},"x":{` would
     * otherwise smuggle a key into the protocol line around it. The data member's
     * span then ends where the caller's text does, but for white space. */
    const char *tail = msg.data_json + msg.data_len,
               *json_end = a->scratch + n - 2; /* before "}\n" */
    while (tail < json_end && (*tail == ' ' || *tail == '\t' || *tail == '\r' || *tail == '\n'))
        tail++;
    if (tail != json_end) {
        eds_msg_free(&msg);
        a->stats.invalid++;
        return eds_error_set(err, EDS_ERR_PARSE, "not a JSON object: text after the object");
    }
    if (a->schema) {
        cJSON *errors = NULL;
        rc = eds_schema_validate(a->schema, msg.data, &errors);
        if (rc != EDS_OK) {
            char *text = errors ? cJSON_PrintUnformatted(errors) : NULL;
            eds_error_set(err, rc == EDS_ERR_INVALID ? EDS_ERR_INVALID : rc, "%s",
                          text ? text : eds_strerror(rc));
            free(text);
            cJSON_Delete(errors);
            eds_msg_free(&msg);
            if (rc == EDS_ERR_INVALID)
                a->stats.invalid++;
            return rc == EDS_ERR_INVALID ? EDS_ERR_INVALID : rc;
        }
    }
    /* Keep the caller's bytes unless they span lines (JSON allows newlines
     * between tokens); then store them without the white space. */
    char *compact = NULL;
    if (memchr(json, '\n', len) || memchr(json, '\r', len)) {
        compact = malloc(msg.data_len + 1);
        if (!compact) {
            eds_msg_free(&msg);
            return eds_error_set(err, EDS_ERR_NOMEM, "out of memory");
        }
        len = eds_json_minify(msg.data_json, msg.data_len, compact);
        json = compact;
    }
    eds_msg_free(&msg);
    rc = enqueue(a, json, len, err);
    free(compact);
    return rc;
}

int eds_agent_send_str(eds_agent *a, const char *json)
{
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_agent_send(a, json, strlen(json), &err);
    if (rc != EDS_OK && rc != EDS_ERR_FULL)
        eds_log_warning("record refused: %s: %s", eds_strerror(rc), err.msg);
    return rc;
}

int agent_accept_record(void *ctx, const char *json, size_t len)
{
    eds_agent *a = ctx;
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_agent_send(a, json, len, &err);
    if (rc == EDS_ERR_INVALID) {
        eds_log_warning("record refused by the schema: %s; record: %.*s", err.msg,
                        (int)(len > 300 ? 300 : len), json);
    } else if (rc == EDS_ERR_PARSE || rc == EDS_ERR_TOOLONG) {
        eds_log_warning("record refused: %s; record: %.*s", err.msg, (int)(len > 300 ? 300 : len),
                        json);
    } else if (rc != EDS_OK && rc != EDS_ERR_FULL) {
        /* The spool cannot be written (disk full, I/O error): hold the record in its
         * input like a full queue would, rather than lose it; acks may free space. */
        uint64_t t = eds_monotonic_ms();
        if (t >= a->store_error_logged_at + 60000 || a->store_error_logged_at == 0) {
            a->store_error_logged_at = t;
            eds_log_error("cannot queue a record: %s; inputs paused until it can", err.msg);
        }
        return EDS_ERR_FULL;
    }
    return rc;
}

/* ---- connection ------------------------------------------------------ */

static void out_append(eds_agent *a, const char *line, size_t len)
{
    if (a->out_len + len > a->out_cap && a->out_len + len <= a->out_base + OUT_CTRL_MAX) {
        /* Control lines are never dropped for want of room (a lost command ack stalls the
         * gateway's commands): grow, within a bound against a gateway that never reads. */
        size_t cap = 2 * a->out_cap;
        if (cap < a->out_len + len)
            cap = a->out_len + len;
        if (cap > a->out_base + OUT_CTRL_MAX)
            cap = a->out_base + OUT_CTRL_MAX;
        char *grown = realloc(a->out, cap);
        if (grown) {
            a->out = grown;
            a->out_cap = cap;
        }
    }
    if (a->out_len + len <= a->out_cap) {
        memcpy(a->out + a->out_len, line, len);
        a->out_len += len;
    } else {
        eds_log_warning("output buffer full: a control line to the gateway was not sent");
    }
}

static void disconnect(eds_agent *a, enum eds_log_level level, const char *why)
{
    uint64_t delay;
    if (a->backoff_hint == 1)
        delay = FATAL_BACKOFF_MS > secs_ms(a->cfg.reconnect_max) ? FATAL_BACKOFF_MS
                                                                 : secs_ms(a->cfg.reconnect_max);
    else if (a->backoff_hint == 2)
        delay = secs_ms(a->cfg.reconnect_max);
    else
        delay = eds_backoff_next(&a->bo);
    a->backoff_hint = 0;
    uint64_t waiting = pending_records(a);
    eds_log(level, "%s; %" PRIu64 " record%s waiting, reconnecting in %.1f s", why, waiting,
            eds_plural(waiting), (double)delay / 1000.0);
    conn_close(a->conn);
    a->conn = NULL;
    eds_framer_free(&a->fr);
    a->out_len = 0;
    agq_rewind(&a->q);
    a->st = ST_IDLE;
    a->ping_out = false;
    a->drop_conn = false;
    a->reconnect_at_ms = eds_monotonic_ms() + delay;
    a->gen++;
    agent_dl_disconnected(&a->dl);
}

static void on_connected(eds_agent *a)
{
    eds_log_info("connected to gateway %s (%s), sending hello as %s (stream %s)",
                 conn_peer(a->conn), conn_security(a->conn), a->cfg.device, a->stream);
    eds_framer_init(&a->fr, a->cfg.max_line);
    a->fr.skip_long = true; /* a command too long is dropped, the connection kept */
    a->st = ST_HELLO;
    a->last_rx_ms = eds_monotonic_ms();
    char line[1024];
    size_t n = eds_fmt_hello(line, sizeof(line), a->cfg.device, a->password, a->stream);
    n = eds_fmt_add_cmd_results(line, sizeof(line), n);
    n = eds_fmt_add_max_line(line, sizeof(line), n, a->cfg.max_line);
    out_append(a, line, n);
}

static void start_connect(eds_agent *a)
{
    eds_error err;
    eds_error_clear(&err);
    int rc = conn_start(a->cfg.gateway_host, a->cfg.gateway_port, a->tls, a->cfg.server_name,
                        &a->conn, &err);
    if (rc != EDS_OK) {
        a->fail_streak++;
        disconnect(a, a->fail_streak <= 1 ? EDS_LOG_WARNING : EDS_LOG_INFO, err.msg);
        return;
    }
    a->st = ST_CONNECTING;
    a->deadline_ms = eds_monotonic_ms() + secs_ms(a->cfg.connect_timeout);
    if (!conn_connecting(a->conn))
        on_connected(a);
}

static void log_msg_errors(const char *what, uint64_t seq, const cJSON *errors)
{
    char *text = errors ? cJSON_PrintUnformatted(errors) : NULL;
    eds_log_warning("%s %" PRIu64 " refused by the gateway (schema): %s; dropped", what, seq,
                    text ? text : "{}");
    free(text);
}

/* ack or nack for seq: it answers the oldest record in the queue. */
static void on_reply(eds_agent *a, const eds_msg *m)
{
    const agq_rec *head = agq_head(&a->q);
    if (!head || m->seq < head->seq) {
        eds_log_debug("reply for seq %" PRIu64 ", already gone (dropped): ignored", m->seq);
        return;
    }
    if (m->seq > head->seq || a->q.sent == 0) {
        a->drop_conn = true;
        a->drop_reason = "gateway answered a seq out of order";
        eds_log_error("gateway answered seq %" PRIu64 " while seq %" PRIu64
                      " is the oldest unanswered one",
                      m->seq, head->seq);
        return;
    }
    if (m->type == EDS_MSG_ACK) {
        a->stats.acked++;
        if (m->duplicate)
            a->stats.duplicates++;
    } else {
        a->stats.nacked++;
        log_msg_errors("record seq", m->seq, m->errors);
    }
    agq_pop(&a->q);
    if (a->spool) {
        eds_error err;
        if (spool_set_acked(a->spool, m->seq, &err) != EDS_OK)
            eds_log_error("%s", err.msg);
    }
    a->fail_streak = 0;
}

static void on_welcome(eds_agent *a, const eds_msg *m)
{
    a->st = ST_READY;
    a->ready_since_ms = eds_monotonic_ms();
    a->stats.connects++;
    agent_dl_connected(&a->dl, m->cmd_results);
    eds_backoff_reset(&a->bo);
    uint64_t last = m->last_seq;
    if (!a->spool && last > a->sent_max) {
        /* Without a spool the records this process has not sent yet (seq > sent_max)
         * cannot be among those the gateway handled: its count comes from another run
         * on this stream (a fixed stream restarts at seq 1) or another agent. Keep them,
         * numbered after last_seq: at worst a duplicate, never a silent loss. */
        size_t i = 0;
        while (i < a->q.count && agq_at(&a->q, i)->seq <= a->sent_max)
            i++;
        size_t n = a->q.count - i;
        if (n > 0 && agq_at(&a->q, i)->seq <= last) {
            eds_log_warning("gateway has up to seq %" PRIu64 " of stream %s, beyond what this "
                            "agent sent (%" PRIu64 "): sending its %zu unsent records as seq "
                            "%" PRIu64 "..%" PRIu64,
                            last, a->stream, a->sent_max, n, last + 1, last + n);
            agq_renumber(&a->q, i, last + 1);
            a->next_seq = last + 1 + n;
        }
    }
    if (last >= a->next_seq) {
        eds_log_warning("gateway says seq %" PRIu64 " of stream %s was handled, but this agent "
                        "only reached %" PRIu64 ": another agent may share this device id and "
                        "stream; continuing after it",
                        last, a->stream, a->next_seq - 1);
        a->next_seq = last + 1;
    }
    uint64_t skipped = agq_drop_upto(&a->q, last);
    if (a->spool) {
        uint64_t before = spool_unread(a->spool);
        eds_error err;
        if (spool_set_acked(a->spool, last, &err) != EDS_OK)
            eds_log_error("%s", err.msg);
        skipped += before - spool_unread(a->spool);
    }
    a->stats.welcome_skipped += skipped;
    uint64_t to_send = pending_records(a);
    eds_log_notice("connected to gateway %s as %s (stream %s); gateway has up to seq %" PRIu64
                   "%s; %" PRIu64 " record%s to send",
                   conn_peer(a->conn), a->cfg.device, a->stream, last,
                   skipped ? " (dropped those from the queue)" : "", to_send, eds_plural(to_send));
}

static void on_error_msg(eds_agent *a, const eds_msg *m)
{
    const char *code = m->code ? m->code : "?";
    const char *text = m->message ? m->message : "";
    if (strcmp(code, "auth_failed") == 0 || strcmp(code, "unsupported_proto") == 0) {
        a->backoff_hint = 1;
        eds_log_error("gateway refused this agent: %s: %s. Check device (%s) and password_file; "
                      "retrying only every %d s",
                      code, text, a->cfg.device, FATAL_BACKOFF_MS / 1000);
    } else if (strcmp(code, "replaced") == 0) {
        a->backoff_hint = 2;
        eds_log_error("gateway: %s: ANOTHER AGENT HAS CONNECTED AS DEVICE '%s'. Two myRIOs "
                      "must not share a device id; fix the configuration of one of them",
                      text, a->cfg.device);
    } else if (strcmp(code, "bad_json") == 0 || strcmp(code, "bad_message") == 0) {
        eds_log_error("gateway: %s: %s (a bug: records are checked before sending)", code, text);
    } else {
        eds_log_warning("gateway: %s: %s", code, text);
    }
}

/* One line from the gateway. Sets drop_conn on a protocol error. */
static void on_line(eds_agent *a, const char *line, size_t len)
{
    eds_msg m;
    eds_error err;
    a->last_rx_ms = eds_monotonic_ms();
    int rc = eds_msg_parse(line, len, EDS_TO_AGENT, &m, &err);
    if (rc != EDS_OK && agent_dl_bad_line(&a->dl, line, len, err.msg))
        return; /* a command this agent cannot parse: refused, the connection kept */
    if (rc != EDS_OK) {
        eds_log_error("gateway sent an invalid line (%s): %.*s", err.msg,
                      (int)(len > 200 ? 200 : len), line);
        a->drop_conn = true;
        a->drop_reason = "protocol error";
        return;
    }
    if (m.type == EDS_MSG_ERROR) {
        on_error_msg(a, &m);
    } else if (a->st == ST_HELLO) {
        if (m.type == EDS_MSG_WELCOME) {
            on_welcome(a, &m);
        } else {
            eds_log_error("gateway sent %.*s before welcome", (int)(len > 200 ? 200 : len), line);
            a->drop_conn = true;
            a->drop_reason = "protocol error";
        }
    } else {
        switch (m.type) {
        case EDS_MSG_ACK:
        case EDS_MSG_NACK:
            on_reply(a, &m);
            break;
        case EDS_MSG_CMD:
            agent_dl_cmd(&a->dl, &m, a->in, eds_wall_ms());
            break;
        case EDS_MSG_PONG:
            a->ping_out = false;
            break;
        default:
            eds_log_error("gateway sent an unexpected message: %.*s", (int)(len > 200 ? 200 : len),
                          line);
            a->drop_conn = true;
            a->drop_reason = "protocol error";
        }
    }
    eds_msg_free(&m);
}

/* A line over max_line that is not a command the downlink could answer. */
static void log_skipped_line(const char *line, size_t len)
{
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
    eds_log_limited(&lim, EDS_LOG_WARNING,
                    "gateway sent a line longer than max_line: skipped: %.*s",
                    (int)(len > 80 ? 80 : len), line);
}

static void conn_readable(eds_agent *a)
{
    /* TLS may hold decrypted bytes the socket will not signal again: read them too. */
    for (int i = 0; a->conn && (i < 16 || (conn_pending(a->conn) && i < 4096)); i++) {
        size_t n;
        eds_error err;
        char *p;
        if (!a->fr.buf && (a->rx || (a->rx = malloc(RX_CHUNK)) != NULL) &&
            eds_framer_lend(&a->fr, a->rx, RX_CHUNK))
            a->rx = NULL;
        if (eds_framer_space(&a->fr, RX_CHUNK, &p) == 0) {
            disconnect(a, EDS_LOG_ERROR, "out of memory");
            return;
        }
        int rc = conn_read(a->conn, p, RX_CHUNK, &n, &err);
        if (rc == EDS_ERR_AGAIN)
            return;
        if (rc != EDS_OK) {
            disconnect(a, EDS_LOG_WARNING, err.msg);
            return;
        }
        eds_framer_commit(&a->fr, n);
        const char *line;
        size_t len;
        while (!a->drop_conn && ((rc = eds_framer_next(&a->fr, &line, &len)) == EDS_FRAMER_LINE ||
                                 rc == EDS_FRAMER_SKIPPED)) {
            if (rc == EDS_FRAMER_LINE)
                on_line(a, line, len);
            else if (!agent_dl_bad_line(&a->dl, line, len, NULL))
                log_skipped_line(line, len);
        }
        size_t cap;
        char *back = eds_framer_reclaim(&a->fr, &cap); /* no malloc and free per read */
        if (back && !a->rx && cap == RX_CHUNK)
            a->rx = back;
        else
            free(back);
        if (a->drop_conn) {
            disconnect(a, EDS_LOG_WARNING, a->drop_reason);
            return;
        }
    }
}

/* Formats unsent records into the output buffer, within the window. */
static void fill_output(eds_agent *a)
{
    if (a->st != ST_READY)
        return;
    const agq_rec *r;
    while (a->q.sent < (size_t)a->cfg.window && (r = agq_next_unsent(&a->q)) != NULL) {
        if (a->out_len + OUT_SLACK >= a->out_base)
            break;
        size_t room = a->out_base - OUT_SLACK - a->out_len;
        size_t n = eds_fmt_data(a->out + a->out_len, room, r->seq, r->data, r->len);
        if (n == 0)
            break;
        a->out_len += n;
        agq_mark_sent(&a->q);
        if (r->seq > a->sent_max)
            a->sent_max = r->seq;
    }
}

static void flush_output(eds_agent *a)
{
    const char *replies;
    size_t n_replies = agent_dl_replies(&a->dl, &replies);
    if (n_replies && a->st == ST_READY)
        out_append(a, replies, n_replies);
    agent_dl_replies_clear(&a->dl);
    while (a->conn && a->st >= ST_HELLO && a->out_len > 0) {
        size_t n;
        eds_error err;
        if (conn_write(a->conn, a->out, a->out_len, &n, &err) != EDS_OK) {
            disconnect(a, EDS_LOG_WARNING, err.msg);
            return;
        }
        if (n == 0)
            return;
        memmove(a->out, a->out + n, a->out_len - n);
        a->out_len -= n;
    }
}

/* Syncs the spool, tops the memory queue up from it, sends what the window allows. */
static int pump(eds_agent *a)
{
    if (a->spool) {
        eds_error err;
        int rc = spool_sync(a->spool, &err);
        if (rc != EDS_OK) {
            eds_log_error("%s", err.msg);
            return rc;
        }
        while (!agq_full(&a->q)) {
            uint64_t seq;
            char *data;
            size_t len;
            rc = spool_read_next(a->spool, &seq, &data, &len, &err);
            if (rc == EDS_ERR_AGAIN)
                break;
            if (rc != EDS_OK) {
                eds_log_error("%s", err.msg);
                return rc;
            }
            rc = agq_push(&a->q, seq, data, len);
            free(data);
            if (rc != EDS_OK) {
                eds_log_error("queue: cannot hold seq %" PRIu64 ": %s", seq, eds_strerror(rc));
                return rc;
            }
        }
        uint64_t t = eds_monotonic_ms();
        if (t >= a->acked_flush_at) {
            a->acked_flush_at = t + ACKED_FLUSH_MS;
            if (spool_flush_acked(a->spool, &err) != EDS_OK)
                eds_log_error("%s", err.msg);
        }
    }
    agent_dl_tick(&a->dl, a->in, eds_wall_ms());
    fill_output(a);
    flush_output(a);
    return EDS_OK;
}

/* The periodic status line, for an operator watching the console or log. */
static void log_status(eds_agent *a, uint64_t t)
{
    eds_agent_stats st;
    eds_agent_get_stats(a, &st);
    char conn[160];
    if (a->st == ST_READY)
        snprintf(conn, sizeof(conn), "connected to %s for %llu s", conn_peer(a->conn),
                 (unsigned long long)((t - a->ready_since_ms) / 1000));
    else
        snprintf(conn, sizeof(conn), "not connected");
    eds_log_notice("status: %s; records: %llu accepted, %llu acked, %llu nacked, %llu invalid, "
                   "%llu dropped, %llu udp dropped; %llu waiting%s",
                   conn, (unsigned long long)st.accepted, (unsigned long long)st.acked,
                   (unsigned long long)st.nacked, (unsigned long long)st.invalid,
                   (unsigned long long)st.dropped, (unsigned long long)st.udp_dropped,
                   (unsigned long long)st.pending, a->spool ? " (spool)" : "");
}

static void run_timers(eds_agent *a, uint64_t t)
{
    eds_log_limits_flush(); /* a full spool that stopped still gets its summary */
    if (a->cfg.stats_interval > 0 && t >= a->stats_at) {
        if (a->stats_at)
            log_status(a, t);
        a->stats_at = t + secs_ms(a->cfg.stats_interval);
    }
    if (a->st == ST_IDLE && t >= a->reconnect_at_ms) {
        start_connect(a);
        return;
    }
    if ((a->st == ST_CONNECTING || a->st == ST_HELLO) && t >= a->deadline_ms) {
        a->fail_streak++;
        disconnect(a, EDS_LOG_WARNING,
                   a->st == ST_CONNECTING ? "gateway connect timed out" : "no welcome in time");
        return;
    }
    if (a->st == ST_READY) {
        /* Written as `t >= x + d`: x may be a little later than t (set while handling
         * this batch), and t - x would wrap around. */
        if (a->ping_out && t >= a->ping_sent_ms + secs_ms(a->cfg.ping_timeout)) {
            disconnect(a, EDS_LOG_WARNING, "gateway did not answer a ping: connection is dead");
            return;
        }
        if (!a->ping_out && a->cfg.ping_interval > 0 &&
            t >= a->last_rx_ms + secs_ms(a->cfg.ping_interval)) {
            char line[32];
            size_t n = eds_fmt_ping(line, sizeof(line));
            out_append(a, line, n);
            a->ping_out = true;
            a->ping_sent_ms = t;
        }
    }
}

static int64_t next_timer(const eds_agent *a, uint64_t t)
{
    int64_t due = -1;
#define CONSIDER(at)                                                                               \
    do {                                                                                           \
        int64_t d_ = (at) > t ? (int64_t)((at)-t) : 0;                                             \
        if (due < 0 || d_ < due)                                                                   \
            due = d_;                                                                              \
    } while (0)
    if (a->st == ST_IDLE)
        CONSIDER(a->reconnect_at_ms);
    if (a->st == ST_CONNECTING || a->st == ST_HELLO)
        CONSIDER(a->deadline_ms);
    if (a->st == ST_READY && a->ping_out)
        CONSIDER(a->ping_sent_ms + secs_ms(a->cfg.ping_timeout));
    if (a->st == ST_READY && !a->ping_out && a->cfg.ping_interval > 0)
        CONSIDER(a->last_rx_ms + secs_ms(a->cfg.ping_interval));
    if (a->spool)
        CONSIDER(a->acked_flush_at);
    if (a->cfg.stats_interval > 0 && a->stats_at)
        CONSIDER(a->stats_at);
    int64_t expiry = agent_dl_next_due(&a->dl, eds_wall_ms());
    if (expiry >= 0)
        CONSIDER(t + (uint64_t)expiry);
#undef CONSIDER
    return due;
}

int eds_agent_pollfds(eds_agent *a, struct pollfd *fds, size_t cap, int *timeout_ms)
{
    int rc = pump(a);
    if (rc != EDS_OK)
        return rc;
    uint64_t t = eds_monotonic_ms();
    run_timers(a, t);
    rc = pump(a);
    if (rc != EDS_OK)
        return rc;

    size_t n = 0;
    a->polled_conn = -1;
    if (a->conn && cap > 0) {
        bool reading = a->st >= ST_HELLO;
        bool writing = a->out_len > 0;
        fds[n].fd = conn_fd(a->conn);
        fds[n].events = conn_poll_events(a->conn, reading, writing);
        fds[n].revents = 0;
        a->polled_conn = fds[n].fd;
        n++;
    }
    /* Stdout that did not take a command yet: its readiness wakes the loop (pump writes). */
    if (n < cap && agent_dl_pollfd(&a->dl, &fds[n]))
        n++;
    a->polled_in = n;
    if (a->in)
        n += inputs_pollfds(a->in, fds + n, cap - n);
    a->polled_n = n;

    int64_t wait = *timeout_ms < 0 ? -1 : *timeout_ms;
    int64_t due = next_timer(a, t);
    if (due >= 0 && (wait < 0 || due < wait))
        wait = due;
    if (a->in) {
        int sim = inputs_timeout_ms(a->in, t);
        if (sim >= 0 && (wait < 0 || sim < wait))
            wait = sim;
    }
    if (wait > 60000)
        wait = 60000;
    if (a->conn && conn_pending(a->conn))
        wait = 0;
    *timeout_ms = (int)wait;
    return (int)n;
}

int eds_agent_dispatch(eds_agent *a, const struct pollfd *fds, size_t n)
{
    if (n != a->polled_n)
        return EDS_ERR_INVAL;
    uint64_t t = eds_monotonic_ms();
    if (a->polled_conn >= 0 && a->conn && conn_fd(a->conn) == a->polled_conn && fds[0].revents) {
        if (a->st == ST_CONNECTING) {
            eds_error err;
            eds_error_clear(&err);
            int rc = conn_finish(a->conn, &err);
            if (rc == EDS_OK) {
                on_connected(a);
            } else if (rc != EDS_ERR_AGAIN) {
                a->fail_streak++;
                disconnect(a, a->fail_streak <= 1 ? EDS_LOG_WARNING : EDS_LOG_INFO, err.msg);
            }
        } else {
            /* Either readiness may be what TLS waits for: try both directions. */
            conn_readable(a);
            if (a->conn)
                flush_output(a);
        }
    }
    if (a->in) {
        inputs_handle(a->in, fds + a->polled_in, n - a->polled_in, t);
    }
    a->polled_n = 0;
    a->polled_conn = -1;
    run_timers(a, t);
    return pump(a);
}

int eds_agent_poll(eds_agent *a, int timeout_ms)
{
    struct pollfd fds[EDS_AGENT_MAX_FDS];
    int wait = timeout_ms;
    int n = eds_agent_pollfds(a, fds, EDS_AGENT_MAX_FDS, &wait);
    if (n < 0)
        return n;
    if (poll(fds, (nfds_t)n, wait) < 0) {
        if (errno != EINTR) {
            eds_log_error("poll: %s", strerror(errno));
            return EDS_ERR_IO;
        }
        for (int i = 0; i < n; i++)
            fds[i].revents = 0;
    }
    return eds_agent_dispatch(a, fds, (size_t)n);
}

int eds_agent_run(eds_agent *a)
{
    uint64_t drain_deadline = 0;
    bool stopping = false;
    for (;;) {
        if (a->stop && !stopping) {
            stopping = true;
            if (a->in)
                inputs_stop(a->in);
            if (a->spool) {
                uint64_t left = pending_records(a);
                eds_log_notice("stopping; %" PRIu64 " undelivered record%s in the spool", left,
                               left == 1 ? " stays" : "s stay");
                return EDS_OK;
            }
            uint64_t queued_now = pending_records(a);
            eds_log_notice("stopping; delivering the %" PRIu64 " queued record%s first", queued_now,
                           eds_plural(queued_now));
        }
        bool inputs = a->in && inputs_active(a->in);
        uint64_t t = eds_monotonic_ms();
        if (!inputs && pending_records(a) == 0) {
            eds_log_info("all records delivered");
            return EDS_OK;
        }
        if (!inputs && drain_deadline == 0) {
            drain_deadline = t + secs_ms(a->cfg.drain_timeout);
            uint64_t queued = pending_records(a);
            eds_log_info("inputs ended; delivering the %" PRIu64 " queued record%s", queued,
                         eds_plural(queued));
        }
        if (drain_deadline && t >= drain_deadline) {
            uint64_t left = pending_records(a);
            eds_log_error("%" PRIu64 " record%s not delivered within drain_timeout (%g s); %s",
                          left, eds_plural(left), a->cfg.drain_timeout,
                          a->spool ? "they stay in the spool for the next start"
                                   : "they are lost (no spool)");
            return EDS_ERR_TIMEOUT;
        }
        int wait = 1000;
        if (drain_deadline && drain_deadline - t < (uint64_t)wait)
            wait = (int)(drain_deadline - t);
        int rc = eds_agent_poll(a, wait);
        if (rc != EDS_OK)
            return rc;
    }
}

void eds_agent_stop(eds_agent *a)
{
    a->stop = 1;
}

int eds_agent_next_cmd(eds_agent *a, char *buf, size_t cap, int64_t *id)
{
    int rc = agent_dl_next(&a->dl, buf, cap, id, eds_wall_ms());
    if (rc > 0)
        flush_output(a);
    return rc;
}

void eds_agent_get_stats(const eds_agent *a, eds_agent_stats *out)
{
    *out = a->stats;
    if (a->in) {
        out->udp_dropped = inputs_udp_dropped(a->in);
        out->invalid += inputs_too_long(a->in);
    }
    out->pending = pending_records(a);
    out->cmds = a->dl.handed;
    out->cmds_refused = a->dl.refused;
}

bool eds_agent_connected(const eds_agent *a)
{
    return a->st == ST_READY;
}

uint64_t eds_agent_pending(const eds_agent *a)
{
    return pending_records(a);
}

const char *eds_agent_stream(const eds_agent *a)
{
    return a->stream;
}

const char *eds_agent_strerror(int code)
{
    return eds_strerror(code);
}
