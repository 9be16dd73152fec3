#include "agent_downlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eds_json.h"
#include "eds_log.h"
#include "eds_write.h"

#define OUTBOX_MAX (1u << 20) /* answers held between two flushes of the engine */
#define REASON_FULL "agent queue full"
#define STDOUT_MAX (1u << 20) /* bytes for stdout beside cmd_tcp (one line may be longer) */
#define REASON_EXPIRED "expired on the agent before the application took it"

/* A pipe or socket (a reader that may stop) is the only stdout made non-blocking: the flag
 * is on the open file, shared with whoever else holds it. A terminal (the shell's, stdin
 * and stderr too) would stay non-blocking after a kill -9; files and /dev/null never wait. */
static bool stdout_may_stall(void)
{
    struct stat st;
    return fstat(STDOUT_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* stderr is the same pipe or socket as stdout (2>&1): the agent's log lines could land
 * inside a command line written in pieces. */
static bool stderr_is_stdout(void)
{
    struct stat out, err;
    return fstat(STDOUT_FILENO, &out) == 0 && fstat(STDERR_FILENO, &err) == 0 &&
           out.st_dev == err.st_dev && out.st_ino == err.st_ino;
}

int agent_dl_init(agent_downlink *d, const agent_dl_config *cfg, eds_error *err)
{
    memset(d, 0, sizeof(*d));
    d->udp_fd = -1;
    d->so_flags = -1;
    d->cfg = *cfg;
    d->cfg.cmd_schema = d->cfg.dir = NULL;
    int rc;
    if (cfg->cmd_schema && (rc = eds_schema_load_file(cfg->cmd_schema, &d->schema, err)) != EDS_OK)
        return rc;
    if ((rc = agent_cmds_open(&d->q, cfg->dir, err)) != EDS_OK)
        return eds_error_set(err, rc, "out of memory");
    if (cfg->to_stdout && stdout_may_stall()) {
        /* Never blocks on a reader that stopped: the gateway link and records go on. */
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) == 0)
            d->so_flags = fl;
        d->so_shares_log = stderr_is_stdout();
    }
    if (cfg->udp_port > 0) {
        d->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (d->udp_fd < 0)
            return eds_error_set(err, EDS_ERR_IO, "cmd_udp socket: %s", strerror(errno));
    }
    return EDS_OK;
}

void agent_dl_free(agent_downlink *d)
{
    eds_schema_destroy(d->schema);
    agent_cmds_close(&d->q);
    if (d->udp_fd >= 0)
        close(d->udp_fd);
    free(d->out);
    free(d->so);
    if (d->so_holding)
        eds_log_release();
    if (d->so_flags >= 0)
        (void)fcntl(STDOUT_FILENO, F_SETFL, d->so_flags);
    memset(d, 0, sizeof(*d));
    d->udp_fd = -1;
    d->so_flags = -1;
}

void agent_dl_connected(agent_downlink *d, bool results)
{
    d->ready = true;
    d->results = results;
}

void agent_dl_disconnected(agent_downlink *d)
{
    d->ready = false;
    d->gen++;
    d->out_len = 0;
    agent_cmds_forget_anonymous(&d->q);
}

/* ---- answers ---------------------------------------------------------- */

static void reply(agent_downlink *d, const char *line, size_t len)
{
    if (len == 0)
        return;
    if (d->out_len + len > d->out_cap && d->out_len + len <= OUTBOX_MAX) {
        size_t cap = d->out_cap ? 2 * d->out_cap : 4096;
        while (cap < d->out_len + len)
            cap *= 2;
        char *grown = realloc(d->out, cap);
        if (grown) {
            d->out = grown;
            d->out_cap = cap;
        }
    }
    if (d->out_len + len > d->out_cap) {
        /* the gateway asks again after a reconnect; the uid gets the answer then */
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
        eds_log_limited(&lim, EDS_LOG_WARNING, "too many answers for the gateway: one not sent");
        return;
    }
    memcpy(d->out + d->out_len, line, len);
    d->out_len += len;
}

static void send_ack(agent_downlink *d, int64_t id)
{
    char line[64];
    reply(d, line, eds_fmt_cmd_ack(line, sizeof(line), id));
}

/* Refuses command id with errors (a Cerberus-style object, JSON text): a gateway that
 * offered command results gets them in a nack; an older one an ack (it knows no nack
 * and would otherwise send the command again on every connection). */
static void refuse(agent_downlink *d, int64_t id, const char *errors, size_t len)
{
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
    d->refused++;
    eds_log_limited(&lim, EDS_LOG_WARNING, "command %" PRId64 " refused: %.*s", id,
                    (int)(len > 300 ? 300 : len), errors);
    if (!d->results) {
        send_ack(d, id);
        return;
    }
    size_t cap = len + 64;
    char *line = malloc(cap);
    size_t n = line ? eds_fmt_cmd_nack(line, cap, id, errors, len) : 0;
    reply(d, line, n);
    free(line);
}

/* Refuses command id with one message under "cmd". */
static void refuse_msg(agent_downlink *d, int64_t id, const char *msg)
{
    char errors[700];
    size_t n = 8;
    memcpy(errors, "{\"cmd\":[", 8);
    if (!eds_json_append_string(errors, sizeof(errors) - 3, &n, msg))
        n = 8;
    memcpy(errors + n, "]}", 2);
    refuse(d, id, errors, n + 2);
}

/* Gives up command id (status "expired" or "dropped", protocol.md); an older gateway
 * gets an ack, its only final answer. */
static void give_up(agent_downlink *d, int64_t id, const char *status, const char *reason)
{
    if (!d->results) {
        send_ack(d, id);
        return;
    }
    char line[512];
    reply(d, line, eds_fmt_cmd_nack_status(line, sizeof(line), id, status, reason));
}

static void too_long_reason(const agent_downlink *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "cmd line longer than the agent's max_line (%zu bytes)", d->cfg.max_line);
}

/* The same answer as the first time, for a command the gateway sent again. */
static void answer_again(agent_downlink *d, int64_t id, agent_cmd_outcome outcome)
{
    char reason[96];
    switch (outcome) {
    case AGENT_DONE_ACKED:
        send_ack(d, id);
        break;
    case AGENT_DONE_EXPIRED:
        give_up(d, id, "expired", REASON_EXPIRED);
        break;
    case AGENT_DONE_FULL:
        give_up(d, id, "dropped", REASON_FULL);
        break;
    case AGENT_DONE_LONG:
        too_long_reason(d, reason, sizeof(reason));
        give_up(d, id, "dropped", reason);
        break;
    }
}

/* ---- hand-over ---------------------------------------------------------- */

/* The command's data passes cmd_schema (or there is none); else refused. */
static bool cmd_valid(agent_downlink *d, const eds_msg *m)
{
    if (!d->schema)
        return true;
    if (!cJSON_IsObject(m->data)) {
        refuse_msg(d, m->id, "must be of dict type");
        return false;
    }
    cJSON *errors = NULL;
    if (eds_schema_validate(d->schema, m->data, &errors) == EDS_OK)
        return true;
    char *text = errors ? cJSON_PrintUnformatted(errors) : NULL;
    cJSON_Delete(errors);
    if (text)
        refuse(d, m->id, text, strlen(text));
    else
        refuse_msg(d, m->id, "out of memory while checking cmd_schema");
    free(text);
    return false;
}

/* UDP (best effort): true if the socket took the datagram. */
static bool send_udp(agent_downlink *d, int64_t id, const char *json, size_t len)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)d->cfg.udp_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sendto(d->udp_fd, json, len, 0, (struct sockaddr *)&sa, sizeof(sa)) == (ssize_t)len)
        return true;
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
    eds_log_limited(&lim, EDS_LOG_ERROR, "command %" PRId64 ": cannot send to udp 127.0.0.1:%d: %s",
                    id, d->cfg.udp_port, strerror(errno));
    return false;
}

/* Appends json and an LF to the stdout buffer: false (nothing appended) past STDOUT_MAX
 * or out of memory. */
static bool stdout_append(agent_downlink *d, const char *json, size_t len)
{
    size_t need = d->so_len + len + 1;
    if (need > STDOUT_MAX && d->so_len > 0)
        return false;
    if (need > d->so_cap) {
        char *grown = realloc(d->so, need);
        if (!grown)
            return false;
        d->so = grown;
        d->so_cap = need;
    }
    memcpy(d->so + d->so_len, json, len);
    d->so[d->so_len + len] = '\n';
    d->so_len += len + 1;
    return true;
}

/* Writes what the stdout buffer holds, without blocking: true once all of it is written.
 * One line per write: a pipe takes a line of up to PIPE_BUF bytes whole or not at all, so
 * a log line (one write to stderr) never lands inside it. A longer line, or any on a
 * socket, may be written in pieces: with stderr the same file the log is held back until
 * the line is complete. */
static bool stdout_flush(agent_downlink *d)
{
    while (d->so_off < d->so_len) {
        const char *start = d->so + d->so_off;
        const char *lf = memchr(start, '\n', d->so_len - d->so_off); /* every line ends so */
        size_t n = (size_t)(lf - start) + 1;
        if (d->so_shares_log && !d->so_holding) {
            eds_log_hold();
            d->so_holding = true;
        }
        ssize_t w = eds_write(STDOUT_FILENO, start, n);
        int e = errno;
        if (w > 0)
            d->so_off += (size_t)w;
        if (d->so_holding && (d->so_off == 0 || d->so[d->so_off - 1] == '\n')) {
            d->so_holding = false; /* no line half written */
            eds_log_release();
        }
        if (w < 0 && e == EINTR)
            continue;
        if (w < 0 && (e == EAGAIN || e == EWOULDBLOCK))
            return false;
        if (w <= 0) {
            /* A closed pipe stays closed: commands wait as with no consumer. */
            d->so_dead = true;
            d->q.head_busy = false;
            d->so_len = d->so_off = 0;
            if (d->so_holding) {
                d->so_holding = false;
                eds_log_release();
            }
            eds_log_error("cannot write commands to stdout: %s; they wait for no consumer now",
                          w < 0 ? strerror(e) : "nothing written");
            return false;
        }
    }
    d->so_len = d->so_off = 0;
    return true;
}

/* The head of the store was taken by a consumer: acked if its connection is this one
 * (otherwise the gateway sends it again, and its uid gets the ack then). */
static void head_taken(agent_downlink *d)
{
    const agent_cmd *c = agent_cmds_head(&d->q);
    if (c->gen == d->gen && d->ready) {
        send_ack(d, c->id);
        eds_log_info("command %" PRId64 " handed over and acked", c->id);
    }
    agent_cmds_taken(&d->q);
    d->handed++;
}

static void expire(agent_downlink *d, int64_t now_ms)
{
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
    int64_t id;
    uint64_t gen, uid;
    while (agent_cmds_expire(&d->q, now_ms, &id, &gen, &uid)) {
        d->refused++;
        if (gen == AGENT_CMDS_STALE) /* loaded from cmds.pending: no id on this connection */
            eds_log_limited(&lim, EDS_LOG_WARNING,
                            "command uid %" PRIu64 " (from before the restart) expired before "
                            "the application took it",
                            uid);
        else
            eds_log_limited(&lim, EDS_LOG_WARNING,
                            "command %" PRId64 " expired before the application took it", id);
        if (gen == d->gen && d->ready)
            give_up(d, id, "expired", REASON_EXPIRED);
    }
}

/* --cmd-stdout: writes the stdout buffer; when stdout is the consumer (no cmd_tcp), the
 * head of the store goes into it, one command at a time, and is taken (acked) once its
 * line is fully written. While stdout does not take more, commands wait in the store. */
static void pump_stdout(agent_downlink *d)
{
    while (d->cfg.to_stdout && !d->so_dead && stdout_flush(d)) {
        if (d->so_head) {
            d->so_head = false;
            if (d->q.head_busy) /* still the command written (not forgotten meanwhile) */
                head_taken(d);
        }
        const agent_cmd *c = agent_cmds_head(&d->q);
        if (d->cfg.to_tcp || !c || !stdout_append(d, c->json, c->len))
            return;
        d->so_head = true;
        d->q.head_busy = true;
    }
}

/* cmd_tcp: writes waiting commands to the local tcp client while it takes them. */
static void pump_tcp(agent_downlink *d, agent_inputs *in)
{
    const agent_cmd *c;
    while (d->cfg.to_tcp && in && (c = agent_cmds_head(&d->q)) != NULL &&
           inputs_send_line(in, c->json, c->len) == EDS_OK)
        head_taken(d);
}

/* The tcp client (cmd_tcp), stdout or eds_agent_next_cmd, when one is the consumer,
 * decides the ack (cmd_tcp first): then the command waits in the store, and UDP (and
 * stdout beside cmd_tcp) are extras. UDP alone acks what the socket took. */
static bool waits_for_consumer(const agent_downlink *d)
{
    return d->cfg.to_tcp || d->cfg.to_stdout || d->cfg.udp_port <= 0;
}

void agent_dl_cmd(agent_downlink *d, const eds_msg *m, agent_inputs *in, int64_t now_ms)
{
    if (!cmd_valid(d, m))
        return;
    agent_cmd_outcome outcome;
    if (agent_cmds_finished(&d->q, m->uid, &outcome)) {
        answer_again(d, m->id, outcome);
        return;
    }
    if (m->ttl_bad) {
        refuse_msg(d, m->id, "ttl must be a whole number of seconds from 0 to 4294967295");
        return;
    }
    if (m->ttl_set && m->ttl == 0) { /* its time ran out on the way */
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
        eds_log_limited(&lim, EDS_LOG_WARNING, "command %" PRId64 " expired on arrival (ttl 0)",
                        m->id);
        d->refused++;
        agent_cmds_finish(&d->q, m->uid, AGENT_DONE_EXPIRED);
        give_up(d, m->id, "expired", REASON_EXPIRED);
        return;
    }
    /* The data as the gateway wrote it, never re-printed (77.0 stays 77.0). */
    char *json = malloc(m->data_len + 2);
    if (!json) {
        eds_log_error("command %" PRId64 ": out of memory", m->id);
        return;
    }
    size_t len = m->data_len;
    if (m->data_ws)
        len = eds_json_minify(m->data_json, m->data_len, json);
    else
        memcpy(json, m->data_json, len);
    json[len] = '\0';
    if (!waits_for_consumer(d)) {
        if (send_udp(d, m->id, json, len)) {
            d->handed++;
            agent_cmds_finish(&d->q, m->uid, AGENT_DONE_ACKED);
            send_ack(d, m->id);
            eds_log_info("command %" PRId64 " handed over and acked", m->id);
        }
        free(json);
        return;
    }
    int64_t deadline = m->ttl_set ? now_ms + (int64_t)m->ttl * 1000 : 0;
    switch (agent_cmds_offer(&d->q, m->id, d->gen, m->uid, deadline, json, len, &outcome)) {
    case AGENT_CMD_QUEUED:
        if (d->cfg.udp_port > 0)
            send_udp(d, m->id, json, len);
        if (d->cfg.to_tcp && d->cfg.to_stdout && !d->so_dead && !stdout_append(d, json, len)) {
            static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
            eds_log_limited(&lim, EDS_LOG_WARNING,
                            "command %" PRId64 " not copied to stdout: 1 MiB waits for it", m->id);
        }
        pump_tcp(d, in);
        pump_stdout(d);
        break;
    case AGENT_CMD_FULL: {
        static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
        eds_log_limited(&lim, EDS_LOG_WARNING,
                        "command %" PRId64 " dropped: %d commands (or 1 MiB) wait for the "
                        "application",
                        m->id, AGENT_CMDS_MAX);
        d->refused++;
        agent_cmds_finish(&d->q, m->uid, AGENT_DONE_FULL);
        give_up(d, m->id, "dropped", REASON_FULL);
        break;
    }
    default: /* UPDATED: waits already; FINISHED was answered above */
        pump_tcp(d, in);
        pump_stdout(d);
    }
    free(json);
}

bool agent_dl_bad_line(agent_downlink *d, const char *line, size_t len, const char *parse_error)
{
    int64_t id;
    if (!d->ready || !eds_cmd_line_id(line, len, &id))
        return false;
    if (parse_error) {
        /* An older gateway passes on duplicate keys or deep nesting: refuse that one. */
        char msg[600];
        snprintf(msg, sizeof(msg), "not valid JSON: %s", parse_error);
        refuse_msg(d, id, msg);
        return true;
    }
    uint64_t uid = eds_cmd_line_uid(line, len);
    agent_cmd_outcome outcome;
    if (agent_cmds_finished(&d->q, uid, &outcome)) {
        answer_again(d, id, outcome);
        return true;
    }
    static eds_log_limit lim = EDS_LOG_LIMIT_INIT(60000);
    char reason[96];
    too_long_reason(d, reason, sizeof(reason));
    eds_log_limited(&lim, EDS_LOG_WARNING, "command %" PRId64 " dropped: %s", id, reason);
    d->refused++;
    agent_cmds_finish(&d->q, uid, AGENT_DONE_LONG);
    give_up(d, id, "dropped", reason);
    return true;
}

void agent_dl_tick(agent_downlink *d, agent_inputs *in, int64_t now_ms)
{
    expire(d, now_ms);
    pump_tcp(d, in);
    pump_stdout(d);
    agent_cmds_sync(&d->q);
}

bool agent_dl_pollfd(const agent_downlink *d, struct pollfd *fd)
{
    if (!d->cfg.to_stdout || d->so_dead || d->so_off >= d->so_len)
        return false;
    fd->fd = STDOUT_FILENO;
    fd->events = POLLOUT;
    fd->revents = 0;
    return true;
}

int64_t agent_dl_next_due(const agent_downlink *d, int64_t now_ms)
{
    int64_t first = agent_cmds_next_deadline(&d->q);
    if (!first)
        return -1;
    return first > now_ms ? first - now_ms : 0;
}

int agent_dl_next(agent_downlink *d, char *buf, size_t cap, int64_t *id, int64_t now_ms)
{
    expire(d, now_ms);
    const agent_cmd *c = agent_cmds_head(&d->q);
    if (!c || d->q.head_busy) /* none, or stdout is writing it */
        return 0;
    if (c->len + 1 > cap || c->len > 0x7fffffff)
        return EDS_ERR_TOOLONG;
    memcpy(buf, c->json, c->len);
    buf[c->len] = '\0';
    *id = c->id;
    int len = (int)c->len;
    head_taken(d);
    return len;
}

size_t agent_dl_replies(agent_downlink *d, const char **lines)
{
    agent_cmds_sync(&d->q);
    *lines = d->out;
    return d->out_len;
}

void agent_dl_replies_clear(agent_downlink *d)
{
    d->out_len = 0;
}
