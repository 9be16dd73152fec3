#include "gw_downlink.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eds_clock.h"
#include "eds_log.h"
#include "eds_proto.h"
#include "gw_now.h"

#define PARK_BITS 14 /* hash buckets for parked ids: 128 KiB */
#define WARN_EVERY_MS 10000
#define RESULTS_MAX 4096                /* results waiting for the broker: past this... */
#define RESULTS_BYTES (4 * 1024 * 1024) /* ...or this, no new result is made that can wait */
#define RESULT_TAG (GW_TOKEN_UNTRACKED | 1ULL << 62) /* publish tokens of results */

/* The cmd line's head with the largest numbers: a command that fits after it fits always
 * (within the gateway's max_line; an agent's own may be lower, checked when sending). */
static const char CMD_HEAD[] = "{\"type\":\"cmd\",\"id\":9007199254740991,\"uid\":9007199254740991,"
                               "\"ttl\":9007199254740991,\"data\":";
#define CMD_HEAD_LEN (sizeof(CMD_HEAD) - 1)

int gw_downlink_init(gw_downlink *dl, const gw_config *cfg, gw_window *w, gw_conns *conns,
                     gw_relay *relay, gw_stats *st)
{
    memset(dl, 0, sizeof(*dl));
    dl->cfg = cfg;
    dl->w = w;
    dl->conns = conns;
    dl->relay = relay;
    dl->st = st;
    /* Serials from the clock: a late publish event of an earlier run names no result. */
    gw_outbox_init(&dl->results, RESULTS_MAX, RESULTS_BYTES, (uint64_t)eds_wall_ms() << 10);
    dl->warn_limit = (eds_log_limit)EDS_LOG_LIMIT_INIT(WARN_EVERY_MS);
    return gw_cmdpark_init(&dl->park, PARK_BITS);
}

void gw_downlink_free(gw_downlink *dl)
{
    gw_cmdstore_close(dl->store);
    dl->store = NULL;
    gw_cmdpark_free(&dl->park, &dl->held_bytes);
    for (size_t i = 0; i < dl->w->n_devices; i++)
        gw_cmdq_clear(&dl->w->devices[i]->held, &dl->held_bytes);
    gw_outbox_free(&dl->results);
    free(dl->buf);
    dl->buf = NULL;
}

/* A warning, rate-limited (eds_log.h): a flood of bad commands cannot flood the log. */
#define warn(dl, ...) eds_log_limited(&(dl)->warn_limit, EDS_LOG_WARNING, __VA_ARGS__)

/* The parts of a command that a result needs. */
static gw_cmd_parts parts_of(const gw_cmd *c)
{
    return (gw_cmd_parts){.ref = gw_cmd_ref(c),
                          .ref_len = c->ref_len,
                          .rt = gw_cmd_rt(c),
                          .rt_len = c->rt_len,
                          .corr = gw_cmd_corr(c),
                          .corr_len = c->corr_len};
}

/* Hands m's part to the publisher; false when it cannot take it now. */
static bool publish_part(gw_downlink *dl, gw_outmsg *m, unsigned part)
{
    int qos = dl->cfg->qos ? 1 : 0;
    uint64_t token = gw_outbox_token(m, part, RESULT_TAG);
    int rc;
    if (part == GW_OUT_MAIN) {
        char topic[GW_TOPIC_MAX];
        gw_relay_topic(dl->relay, m->device, "cmd/result", topic);
        rc = gw_relay_try_publish(dl->relay, topic, m->payload, m->len, qos, NULL, 0, token);
    } else {
        rc = gw_relay_try_publish(dl->relay, m->rt, m->payload, m->len, qos, m->corr, m->corr_len,
                                  token);
    }
    if (rc != EDS_OK)
        return false;
    m->sent |= (uint8_t)part;
    return true;
}

void gw_downlink_flush(gw_downlink *dl)
{
    if (!dl->results_unsent)
        return;
    for (gw_outmsg *m = dl->results.head; m; m = m->next) {
        uint8_t todo = gw_outmsg_parts(m) & (uint8_t)~m->sent;
        if (((todo & GW_OUT_MAIN) && !publish_part(dl, m, GW_OUT_MAIN)) ||
            ((todo & GW_OUT_RT) && !publish_part(dl, m, GW_OUT_RT)))
            return; /* the rest at the end of a later batch */
    }
    dl->results_unsent = false;
}

bool gw_downlink_published(gw_downlink *dl, uint64_t token, bool ok)
{
    unsigned part;
    gw_outmsg *m = gw_outbox_find(&dl->results, token, RESULT_TAG, &part);
    if (!m)
        return (token & RESULT_TAG) == RESULT_TAG; /* a result's, already finished */
    if (!ok) {
        m->sent &= (uint8_t)~part; /* sent again at the end of the batch */
        dl->results_unsent = true;
        return true;
    }
    m->done |= (uint8_t)part;
    if (m->done != gw_outmsg_parts(m))
        return true;
    eds_error err;
    if (gw_cmdstore_del(dl->store, m->uid, &err) != EDS_OK)
        warn(dl, "command store: %s", err.msg);
    gw_outbox_remove(&dl->results, m);
    return true;
}

/* Keeps a result (in memory and in the command store, under uid: its command's, or 0
 * for a new one) until the broker confirms it; published at the end of the batch. */
static void keep_result(gw_downlink *dl, const char *device, const gw_cmd_parts *p, const char *b,
                        size_t len, uint64_t uid)
{
    gw_result_parts rp = {.device = device,
                          .payload = b,
                          .len = len,
                          .rt = p->rt,
                          .rt_len = p->rt_len,
                          .corr = p->corr,
                          .corr_len = p->corr_len,
                          .uid = uid};
    eds_error err;
    gw_outmsg *m = gw_outbox_push(&dl->results, &rp);
    if (!m) {
        warn(dl, "command result for %s lost: %zu results wait for the broker", device,
             dl->results.n);
        if (gw_cmdstore_del(dl->store, uid, &err) != EDS_OK) /* or it comes back */
            warn(dl, "command store: %s", err.msg);
        return;
    }
    if (gw_cmdstore_result(dl->store, m, &err) != EDS_OK)
        warn(dl, "command store (the result lives in memory only): %s", err.msg);
    dl->results_unsent = true;
}

/* The result {"status":S[,"ref":R][,"reason":..][,"errors":{..}]} of a command (uid: in
 * the store, 0: none), for P/device/cmd/result and, for an MQTT 5 request, its response
 * topic with its correlation data. */
static void result(gw_downlink *dl, const char *device, const gw_cmd_parts *p, uint64_t uid,
                   const char *status, const char *reason, const char *errors)
{
    size_t cap =
        64 + p->ref_len + (reason ? strlen(reason) * 6 : 0) + (errors ? strlen(errors) : 0);
    if (dl->buf_cap < cap) {
        char *nb = realloc(dl->buf, cap);
        if (!nb)
            return;
        dl->buf = nb;
        dl->buf_cap = cap;
    }
    char *b = dl->buf;
    int n = snprintf(b, cap, "{\"status\":\"%s\"", status);
    size_t len = (size_t)n;
    if (p->ref_len) {
        memcpy(b + len, ",\"ref\":", 7);
        memcpy(b + len + 7, p->ref, p->ref_len);
        len += 7 + p->ref_len;
    }
    if (reason) {
        memcpy(b + len, ",\"reason\":", 10);
        len += 10;
        eds_json_append_string(b, cap, &len, reason);
    }
    if (errors) {
        size_t el = strlen(errors);
        memcpy(b + len, ",\"errors\":", 10);
        memcpy(b + len + 10, errors, el);
        len += 10 + el;
    }
    b[len++] = '}';
    keep_result(dl, device, p, b, len, uid);
}

/* Frees cmd after making its result (which replaces it in the store). */
static void finish(gw_downlink *dl, const char *device, gw_cmd *cmd, const char *status,
                   const char *reason)
{
    gw_cmd_parts p = parts_of(cmd);
    result(dl, device, &p, cmd->uid, status, reason, NULL);
    gw_cmd_free(cmd, &dl->held_bytes);
}

static void dropped(gw_downlink *dl, const char *device, gw_cmd *cmd, const char *why)
{
    dl->st->cmds_dropped++;
    warn(dl, "command for %s dropped: %s", device, why);
    finish(dl, device, cmd, "dropped", why);
}

static bool expired(const gw_cmd *cmd, int64_t now)
{
    return cmd->expires_at && cmd->expires_at <= now;
}

/* cmd's expiry passed while it waited here. One sent to a cmd_results agent before its
 * connection went is not sent again either: an agent that never got the line (it was
 * in flight, or the agent lost it) would hand it over late; one that had it has
 * expired it by its own deadline, or took it in time and its ack was lost. */
static void expire(gw_downlink *dl, const char *device, gw_cmd *cmd)
{
    dl->st->cmds_expired++;
    finish(dl, device, cmd, "expired",
           cmd->with_agent ? "expired while the agent was away (it may have taken it before)"
                           : "expired before the device was online");
}

/* Writes cmd to the command store (it then survives a restart until its result). */
static void store(gw_downlink *dl, const char *device, gw_cmd *cmd)
{
    eds_error err;
    if (gw_cmdstore_add(dl->store, device, cmd, &err) != EDS_OK)
        warn(dl, "command store (the command lives in memory only): %s", err.msg);
}

/* Moves the commands parked under d's id (the device has connected) to the front of
 * its queue: they came first. Parked commands live in memory only (an id that never
 * connected is not trusted with writes to the Pi's SD card); from now on they are
 * stored like the device's own. */
static void adopt(gw_downlink *dl, gw_device *d)
{
    gw_park_entry *e = gw_cmdpark_find(&dl->park, d->id);
    if (!e)
        return;
    for (gw_cmd *c = e->q.head; c; c = c->next)
        if (!c->uid)
            store(dl, d->id, c);
    gw_cmdq_prepend(&d->held, &e->q);
    gw_cmdpark_remove(&dl->park, e, &dl->held_bytes);
}

/* Whole seconds cmd has left at now, rounded up, at least 1 (the cmd line's "ttl");
 * 0 for a command that never expires. */
static uint64_t ttl_of(const gw_cmd *cmd, int64_t now)
{
    if (!cmd->expires_at)
        return 0;
    int64_t left = cmd->expires_at - now;
    return left <= 1000 ? 1 : (uint64_t)((left + 999) / 1000);
}

/* The longest cmd line c's agent takes (LF included): its own max_line from the hello
 * when it gave one and it is below the gateway's. */
static size_t line_limit(const gw_downlink *dl, const gw_conn *c)
{
    return c->max_line && c->max_line < dl->cfg->max_line ? c->max_line : dl->cfg->max_line;
}

/* Writes cmd's line to c; false (nothing written) when it does not fit c's limit. */
static bool send_cmd(gw_downlink *dl, gw_conn *c, gw_cmd *cmd, int64_t now)
{
    size_t cap = cmd->len + 128;
    char *p = gw_conn_out_reserve(c, cap);
    /* An agent that speaks command results gets the uid (it recognises a command sent
     * again after a reconnect or its own power cycle) and the seconds left. */
    uint64_t uid = c->cmd_results ? cmd->uid : 0;
    uint64_t ttl = c->cmd_results ? ttl_of(cmd, now) : 0;
    size_t n = p ? eds_fmt_cmd_uid(p, cap, cmd->id, uid, ttl, cmd->json, cmd->len) : 0;
    if (n > line_limit(dl, c))
        return false;
    if (n)
        gw_conn_out_commit(dl->conns, c, n);
    return true;
}

void gw_downlink_deliver(gw_downlink *dl, gw_conn *c)
{
    gw_device *d = c->dev;
    adopt(dl, d);
    int64_t now = eds_wall_ms();
    /* Results waiting for the broker past their bound: no new command goes out (its
     * result could not be kept) until they drain; the timer tries again. */
    while (d->held.head && c->unacked.n < GW_MAX_UNACKED_CMDS && !gw_outbox_full(&dl->results)) {
        gw_cmd *cmd = gw_cmdq_pop(&d->held);
        if (expired(cmd, now)) {
            expire(dl, d->id, cmd);
            continue;
        }
        cmd->id = ++c->next_cmd_id;
        if (!send_cmd(dl, c, cmd, now)) {
            char why[160];
            snprintf(why, sizeof(why), "the cmd line does not fit %s's max_line (%zu bytes)", d->id,
                     line_limit(dl, c));
            dropped(dl, d->id, cmd, why);
            continue;
        }
        if (c->cmd_results && !cmd->with_agent) {
            /* While the connection lasts the agent decides when it has expired
             * (protocol.md); kept across a restart for the result's reason. */
            cmd->with_agent = true;
            eds_error err;
            if (gw_cmdstore_sent(dl->store, cmd, &err) != EDS_OK)
                warn(dl, "command store: %s", err.msg);
        }
        gw_cmdq_push(&c->unacked, cmd);
        dl->st->cmds_sent++;
    }
}

/* Evicts the oldest parked id other than keep, with its commands. False if none. */
static bool evict_one(gw_downlink *dl, const gw_park_entry *keep)
{
    gw_park_entry *e = dl->park.oldest;
    if (e == keep)
        e = e->newer;
    if (!e)
        return false;
    gw_cmd *cmd;
    while ((cmd = gw_cmdq_pop(&e->q)) != NULL)
        dropped(dl, e->id, cmd, "max_held_bytes: commands for ids that never connected go first");
    gw_cmdpark_remove(&dl->park, e, &dl->held_bytes);
    return true;
}

/* Room for size more bytes, evicting parked ids if needed (never keep's). */
static bool make_room(gw_downlink *dl, size_t size, const gw_park_entry *keep)
{
    while (dl->held_bytes + size > dl->cfg->max_held_bytes)
        if (!evict_one(dl, keep))
            return false;
    return true;
}

/* The payload, checked as the agent will parse it, minified into a cmd line; the
 * verdict when it cannot be sent. */
typedef struct checked {
    char *line; /* CMD_HEAD + the minified payload; owned */
    size_t len; /* of the minified payload (at line + CMD_HEAD_LEN) */
    char *ref;  /* the payload's "id" member: its bytes in the minified payload; owned */
    size_t ref_len;
    const char *status; /* NULL: fine */
    char reason[600];   /* room for err.msg (512) and the words around it */
    char *errors;       /* cJSON_PrintUnformatted; owned */
} checked;

static void check_schema(gw_downlink *dl, const char *device, const eds_msg *m, checked *ck)
{
    const eds_schema *s = dl->schemas ? gw_schemas_cmd_for(dl->schemas, device) : NULL;
    if (!s)
        return;
    ck->status = "rejected";
    if (!cJSON_IsObject(m->data)) {
        snprintf(ck->reason, sizeof(ck->reason), "cmd_schema: the command is not a JSON object");
        return;
    }
    cJSON *errors = NULL;
    int rc = eds_schema_validate(s, m->data, &errors);
    if (rc == EDS_OK) {
        ck->status = NULL;
        return;
    }
    snprintf(ck->reason, sizeof(ck->reason), "refused by the gateway's cmd_schema");
    ck->errors = errors ? cJSON_PrintUnformatted(errors) : NULL;
    cJSON_Delete(errors);
}

/* True when text[0..len) holds only JSON white space. */
static bool blank(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\r\n", text[i]) || !text[i])
            return false;
    return true;
}

/* The reason of a refused parse: the parser counts bytes in the cmd line around the
 * payload; the publisher of the command wants them counted in its payload. */
static void parse_reason(const char *msg, char *out, size_t cap)
{
    static const char at[] = "not valid JSON at byte ";
    size_t byte;
    if (strncmp(msg, at, sizeof(at) - 1) == 0 && sscanf(msg + sizeof(at) - 1, "%zu", &byte) == 1 &&
        byte > CMD_HEAD_LEN)
        snprintf(out, cap, "not valid JSON at byte %zu of the command", byte - CMD_HEAD_LEN);
    else if (strncmp(msg, "not valid JSON", 14) == 0)
        snprintf(out, cap, "%s", msg);
    else
        snprintf(out, cap, "not valid JSON: %s", msg);
}

/* One strict parse of the cmd line as the agent will get it (nesting counts with the
 * line around the payload), then the payload minified in place for sending. */
static void check(gw_downlink *dl, const char *device, const char *payload, size_t len, checked *ck)
{
    memset(ck, 0, sizeof(*ck));
    /* Size first: a command too long for any agent costs no parse. */
    if (CMD_HEAD_LEN + len + 2 > dl->cfg->max_line) {
        ck->status = "dropped";
        snprintf(ck->reason, sizeof(ck->reason),
                 "%zu bytes (as published) do not fit a max_line cmd line", len);
        return;
    }
    ck->line = malloc(CMD_HEAD_LEN + len + 2);
    if (!ck->line) {
        ck->status = "dropped";
        snprintf(ck->reason, sizeof(ck->reason), "out of memory");
        return;
    }
    char *body = ck->line + CMD_HEAD_LEN;
    memcpy(ck->line, CMD_HEAD, CMD_HEAD_LEN);
    memcpy(body, payload, len);
    body[len] = '}';
    eds_msg m;
    eds_error err;
    eds_error_clear(&err);
    int rc = eds_msg_parse(ck->line, CMD_HEAD_LEN + len + 1, EDS_TO_AGENT, &m, &err);
    /* The data member must be the whole payload: "1,\"x\":2" parses as a line too. */
    if (rc == EDS_OK &&
        (m.data_json < body || !blank(body, (size_t)(m.data_json - body)) ||
         !blank(m.data_json + m.data_len, (size_t)(body + len - (m.data_json + m.data_len))))) {
        eds_msg_free(&m);
        rc = EDS_ERR_PARSE;
        snprintf(err.msg, sizeof(err.msg), "not exactly one JSON value");
    }
    if (rc != EDS_OK) {
        ck->status = "rejected";
        parse_reason(err.msg, ck->reason, sizeof(ck->reason));
        return;
    }
    /* Which member is "id": its text is taken from the minified payload below. */
    size_t id_at = 0;
    const cJSON *id = NULL;
    if (cJSON_IsObject(m.data))
        for (id = m.data->child; id && strcmp(id->string, "id") != 0; id = id->next)
            id_at++;
    check_schema(dl, device, &m, ck);
    /* Minified in place (never longer, and never ahead of what it reads). */
    ck->len = m.data_ws ? eds_json_minify(m.data_json, m.data_len, body)
                        : (memmove(body, m.data_json, m.data_len), m.data_len);
    eds_msg_free(&m);
    const char *ref;
    if (id && eds_json_member_text(body, ck->len, id_at, &ref, &ck->ref_len)) {
        /* The command's own bytes (77.0 stays 77.0), never re-printed. */
        ck->ref = malloc(ck->ref_len);
        if (ck->ref)
            memcpy(ck->ref, ref, ck->ref_len);
        else
            ck->ref_len = 0;
    }
}

/* Counts and logs a retained command once: the broker sends it again on every
 * subscribe (each gateway start), so delivering it would repeat an old command. */
static void retained(gw_downlink *dl, const char *topic)
{
    dl->st->cmds_retained++;
    if (dl->retained_logged)
        return;
    dl->retained_logged = true;
    eds_log_warning("retained message on %s not delivered: commands must not be retained (clear "
                    "it with mosquitto_pub -r -n -t '%s'); counted as cmds_retained, logged once",
                    topic, topic);
}

/* The device id of a P/DEVICE/cmd topic into id; false for other topics. */
static bool topic_device(const gw_downlink *dl, const char *t, char *id)
{
    size_t plen = strlen(dl->cfg->topic_prefix);
    if (strncmp(t, dl->cfg->topic_prefix, plen) != 0 || t[plen] != '/')
        return false;
    const char *dev = t + plen + 1;
    const char *slash = strchr(dev, '/');
    if (!slash || strcmp(slash, "/cmd") != 0)
        return false;
    size_t idlen = (size_t)(slash - dev);
    if (idlen > EDS_DEVICE_MAX)
        return false;
    memcpy(id, dev, idlen);
    id[idlen] = '\0';
    return true;
}

/* An MQTT 5 response topic the gateway will publish to: P/device/cmd/result or below
 * only, so that no reader can make the gateway write to a data or status topic. */
static bool response_topic_ok(const gw_downlink *dl, const char *device, const char *rt)
{
    char base[GW_TOPIC_MAX];
    gw_relay_topic(dl->relay, device, "cmd/result", base);
    size_t n = strlen(base);
    return strncmp(rt, base, n) == 0 && (rt[n] == '\0' || rt[n] == '/') && !strpbrk(rt, "+#");
}

/* Queues cmd on q (the device's or its parked entry), dropping the oldest past
 * max_held_cmds. */
static void hold(gw_downlink *dl, const char *device, gw_cmdq *q, gw_cmd *cmd)
{
    while (q->n >= (uint32_t)dl->cfg->max_held_cmds && q->head)
        dropped(dl, device, gw_cmdq_pop(q), "over max_held_cmds, the oldest");
    if (dl->cfg->max_held_cmds == 0) {
        dropped(dl, device, cmd, "max_held_cmds is 0");
        return;
    }
    gw_cmdq_push(q, cmd);
}

void gw_downlink_message(gw_downlink *dl, const gw_pub_event *ev)
{
    char id[EDS_DEVICE_MAX + 1];
    if (!topic_device(dl, ev->topic, id))
        return;
    if (!eds_device_id_valid(id)) {
        warn(dl, "command on %.200s: not a valid device id, dropped", ev->topic);
        return;
    }
    if (ev->retained) {
        retained(dl, ev->topic);
        return;
    }
    dl->st->cmds_in++;
    gw_cmd_parts parts = {.corr = ev->corr, .corr_len = ev->corr_len};
    if (ev->response_topic && response_topic_ok(dl, id, ev->response_topic)) {
        parts.rt = ev->response_topic;
        parts.rt_len = strlen(ev->response_topic);
    } else if (ev->response_topic) {
        warn(dl,
             "command for %s: response topic %.200s ignored (only %s/%s/cmd/result and "
             "below)",
             id, ev->response_topic, dl->cfg->topic_prefix, id);
    }
    checked ck;
    check(dl, id, ev->payload, ev->len, &ck);
    parts.ref = ck.ref;
    parts.ref_len = ck.ref_len;
    if (ck.status) {
        if (strcmp(ck.status, "rejected") == 0)
            dl->st->cmds_rejected++;
        else
            dl->st->cmds_dropped++;
        warn(dl, "command for %s %s: %s", id, ck.status, ck.reason);
        result(dl, id, &parts, 0, ck.status, ck.reason, ck.errors);
        free(ck.errors);
        free(ck.line);
        free(ck.ref);
        return;
    }
    parts.json = ck.line + CMD_HEAD_LEN;
    parts.len = ck.len;
    int64_t now = eds_wall_ms();
    if (ev->expiry_s >= 0)
        parts.expires_at = now + ev->expiry_s * 1000;
    else if (dl->cfg->cmd_expiry > 0)
        parts.expires_at = now + (int64_t)(dl->cfg->cmd_expiry * 1000);
    gw_device *d = gw_window_find(dl->w, id);
    gw_park_entry *e = d ? NULL : gw_cmdpark_get(&dl->park, id, &dl->held_bytes);
    gw_cmd *cmd = NULL;
    if ((d || e) && make_room(dl, gw_cmd_size(&parts), e))
        cmd = gw_cmd_create(&parts, &dl->held_bytes);
    if (!cmd) {
        dl->st->cmds_dropped++;
        warn(dl, "command for %s dropped: max_held_bytes reached", id);
        result(dl, id, &parts, 0, "dropped", "max_held_bytes reached", NULL);
        if (e && !e->q.head)
            gw_cmdpark_remove(&dl->park, e, &dl->held_bytes);
        free(ck.line);
        free(ck.ref);
        return;
    }
    free(ck.line); /* the command has its own copy */
    free(ck.ref);
    if (d)
        store(dl, id, cmd); /* parked ones go to disk once their device connects */
    hold(dl, id, d ? &d->held : &e->q, cmd);
    if (d && gw_ready_conn(d))
        gw_downlink_deliver(dl, d->conn);
}

/* An agent answered a command id not outstanding on its connection: counted, logged
 * rate-limited (an agent could send any number). */
static void unknown_answer(gw_downlink *dl, const gw_conn *c, const char *what, int64_t id)
{
    dl->st->cmd_answers_unknown++;
    warn(dl, "%s: %s for unknown command id %" PRId64 " (%" PRIu64 " so far)", c->peer, what, id,
         dl->st->cmd_answers_unknown);
}

void gw_downlink_ack(gw_downlink *dl, gw_conn *c, int64_t id)
{
    gw_cmd *cmd = gw_cmdq_take(&c->unacked, id);
    if (!cmd) {
        unknown_answer(dl, c, "ack", id);
        return;
    }
    dl->st->cmds_delivered++;
    finish(dl, c->dev ? c->dev->id : "?", cmd, "delivered", NULL);
    if (c->dev)
        gw_downlink_deliver(dl, c);
}

/* The result status of an agent's nack: its "status" when it is one the agent may give,
 * else rejected (as before the status member existed). */
static const char *nack_status(const char *status)
{
    if (status && (strcmp(status, "expired") == 0 || strcmp(status, "dropped") == 0))
        return status;
    return "rejected";
}

void gw_downlink_nack(gw_downlink *dl, gw_conn *c, const eds_msg *m)
{
    gw_cmd *cmd = gw_cmdq_take(&c->unacked, m->id);
    if (!cmd) {
        unknown_answer(dl, c, "nack", m->id);
        return;
    }
    const char *device = c->dev ? c->dev->id : "?";
    const char *status = nack_status(m->status);
    gw_cmd_parts p = parts_of(cmd);
    if (status[0] == 'r') {
        dl->st->cmds_rejected++;
        char *errs = cJSON_PrintUnformatted(m->errors);
        warn(dl, "command for %s rejected by the agent: %.300s", device, errs ? errs : "?");
        result(dl, device, &p, cmd->uid, "rejected", "refused by the agent", errs);
        free(errs);
    } else {
        if (status[0] == 'e')
            dl->st->cmds_expired++;
        else
            dl->st->cmds_dropped++;
        char why[300];
        snprintf(why, sizeof(why), "the agent: %.280s", m->reason ? m->reason : status);
        warn(dl, "command for %s %s by the agent: %s", device, status, why);
        result(dl, device, &p, cmd->uid, status, why, NULL);
    }
    gw_cmd_free(cmd, &dl->held_bytes);
    if (c->dev)
        gw_downlink_deliver(dl, c);
}

void gw_downlink_detach(gw_downlink *dl, gw_conn *c, gw_device *d)
{
    (void)dl;
    gw_cmdq_prepend(&d->held, &c->unacked);
}

void gw_downlink_conn_gone(gw_downlink *dl, gw_conn *c)
{
    gw_cmdq_clear(&c->unacked, &dl->held_bytes);
}

/* Takes the expired commands out of q, each with its result. */
static void expire_queue(gw_downlink *dl, const char *device, gw_cmdq *q, int64_t now)
{
    gw_cmdq keep = {0};
    gw_cmd *cmd;
    while ((cmd = gw_cmdq_pop(q)) != NULL) {
        if (!expired(cmd, now)) {
            gw_cmdq_push(&keep, cmd);
            continue;
        }
        expire(dl, device, cmd);
    }
    *q = keep;
}

/* A result from the store: waits for the broker again. */
static void restored_result(void *ctx, const gw_result_parts *p)
{
    gw_downlink *dl = ctx;
    if (!gw_outbox_push(&dl->results, p)) /* the file keeps it until the next compaction */
        eds_log_error("command result for %s: out of memory at open; not published, and lost "
                      "at the command store's next compaction",
                      p->device);
    dl->results_unsent = true;
}

/* A command from the store: back where it was waiting. */
static void restored(void *ctx, const char *device, gw_cmd *cmd)
{
    gw_downlink *dl = ctx;
    gw_device *d = gw_window_find(dl->w, device);
    gw_park_entry *e = d ? NULL : gw_cmdpark_get(&dl->park, device, &dl->held_bytes);
    if (!d && !e) {
        eds_log_error("held command for %s: out of memory at open; not sent, and lost at the "
                      "command store's next compaction",
                      device);
        gw_cmd_free(cmd, &dl->held_bytes);
        return;
    }
    gw_cmdq_push(d ? &d->held : &e->q, cmd);
}

int gw_downlink_open_store(gw_downlink *dl, const char *dir, eds_error *err)
{
    gw_cmdstore_fns fns = {.cmd = restored, .result = restored_result, .ctx = dl};
    int rc = gw_cmdstore_open(dir, &fns, &dl->held_bytes, &dl->store, err);
    if (rc == EDS_OK && (dl->held_bytes || dl->results.n))
        eds_log_notice("%zu bytes of downlink commands and %zu results waiting for the broker "
                       "taken back from the command store",
                       dl->held_bytes, dl->results.n);
    return rc;
}

static void rewrite_queue(gw_downlink *dl, const char *device, const gw_cmdq *q)
{
    for (const gw_cmd *c = q->head; c; c = c->next)
        gw_cmdstore_rewrite_put(dl->store, device, c);
}

/* Rewrites the store from the commands alive, in the order they go out. */
static void compact(gw_downlink *dl)
{
    eds_error err;
    if (gw_cmdstore_rewrite_begin(dl->store, &err) == EDS_OK) {
        for (size_t i = 0; i < dl->w->n_devices; i++) {
            gw_device *d = dl->w->devices[i];
            if (d->conn)
                rewrite_queue(dl, d->id, &d->conn->unacked);
            rewrite_queue(dl, d->id, &d->held);
        }
        for (const gw_park_entry *e = dl->park.oldest; e; e = e->newer)
            rewrite_queue(dl, e->id, &e->q);
        for (const gw_outmsg *m = dl->results.head; m; m = m->next)
            gw_cmdstore_rewrite_put_result(dl->store, m);
        if (gw_cmdstore_rewrite_end(dl->store, &err) == EDS_OK)
            return;
    }
    eds_log_error("command store compaction: %s", err.msg);
}

void gw_downlink_tick(gw_downlink *dl)
{
    eds_log_limit_flush(&dl->warn_limit); /* the summary of a burst that has stopped */
    if (gw_cmdstore_wants_compaction(dl->store))
        compact(dl);
    if (gw_outbox_full(&dl->results))
        return; /* expiring makes results: later, once those waiting have drained */
    int64_t now = eds_wall_ms();
    for (size_t i = 0; i < dl->w->n_devices; i++) {
        gw_device *d = dl->w->devices[i];
        if (d->held.head)
            expire_queue(dl, d->id, &d->held, now);
        if (d->held.head && gw_ready_conn(d)) /* held back while results were full */
            gw_downlink_deliver(dl, d->conn);
    }
    for (gw_park_entry *e = dl->park.oldest, *next; e; e = next) {
        next = e->newer;
        expire_queue(dl, e->id, &e->q, now);
        if (!e->q.head)
            gw_cmdpark_remove(&dl->park, e, &dl->held_bytes);
    }
}
