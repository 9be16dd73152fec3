#include "gw_downlink.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "eds_log.h"
#include "eds_proto.h"
#include "gw_now.h"

void gw_downlink_init(gw_downlink *dl, const gw_config *cfg, gw_window *w, gw_conns *conns,
                      gw_stats *st)
{
    memset(dl, 0, sizeof(*dl));
    dl->cfg = cfg;
    dl->w = w;
    dl->conns = conns;
    dl->st = st;
}

void gw_downlink_deliver(gw_downlink *dl, gw_conn *c)
{
    gw_device *d = c->dev;
    while (d->held.head && c->unacked.n < GW_MAX_UNACKED_CMDS) {
        gw_cmd *cmd = gw_cmdq_pop(&d->held);
        cmd->id = ++c->next_cmd_id;
        size_t cap = cmd->len + 64;
        char *p = gw_conn_out_reserve(c, cap);
        size_t n = p ? eds_fmt_cmd(p, cap, cmd->id, cmd->json, cmd->len) : 0;
        if (n)
            gw_conn_out_commit(dl->conns, c, n);
        gw_cmdq_push(&c->unacked, cmd);
        dl->st->cmds_delivered++;
    }
}

/* Counts a dropped command; logs drops at most every 10 s, so a flood of
 * commands cannot flood the log too. */
static void dropped(gw_downlink *dl, const char *why, const char *device)
{
    dl->st->cmds_dropped++;
    int64_t now = gw_now_ms();
    if (now < dl->next_drop_log_ms) {
        dl->drops_unlogged++;
        return;
    }
    eds_log_warning("command for %s dropped: %s (%" PRIu64 " more dropped since the last warning)",
                    device, why, dl->drops_unlogged);
    dl->drops_unlogged = 0;
    dl->next_drop_log_ms = now + 10000;
}

static void hold(gw_downlink *dl, gw_device *d, gw_cmd *cmd)
{
    if (dl->cfg->max_held_cmds == 0) {
        gw_cmd_free(cmd, &dl->held_bytes);
        dropped(dl, "max_held_cmds is 0", d->id);
        return;
    }
    while (d->held.n >= (uint32_t)dl->cfg->max_held_cmds) {
        gw_cmd_free(gw_cmdq_pop(&d->held), &dl->held_bytes);
        dropped(dl, "over max_held_cmds, the oldest", d->id);
    }
    gw_cmdq_push(&d->held, cmd);
}

/* The payload as compact JSON (malloc'd) if it is exactly one strict JSON
 * value (what the agent's parser takes), in cJSON's rendering; else NULL. */
static char *compact_json(const char *payload, size_t len)
{
    eds_json_doc doc;
    char *compact = NULL;
    if (eds_json_parse(payload, len, NULL, &doc, NULL) == EDS_OK)
        compact = cJSON_PrintUnformatted(doc.root);
    eds_json_doc_free(&doc);
    return compact;
}

void gw_downlink_message(gw_downlink *dl, const gw_pub_event *ev)
{
    /* topic: PREFIX/DEVICE/cmd */
    size_t plen = strlen(dl->cfg->topic_prefix);
    const char *t = ev->topic;
    if (strncmp(t, dl->cfg->topic_prefix, plen) != 0 || t[plen] != '/')
        return;
    const char *dev = t + plen + 1;
    const char *slash = strchr(dev, '/');
    if (!slash || strcmp(slash, "/cmd") != 0)
        return;
    char id[EDS_DEVICE_MAX + 2];
    size_t idlen = (size_t)(slash - dev);
    if (idlen >= sizeof(id))
        return;
    memcpy(id, dev, idlen);
    id[idlen] = '\0';
    if (!eds_device_id_valid(id)) {
        eds_log_warning("command on %s: not a valid device id, dropped", ev->topic);
        return;
    }
    dl->st->cmds_in++;
    char *compact = compact_json(ev->payload, ev->len);
    if (!compact) {
        eds_log_warning("command on %s is not JSON, dropped", ev->topic);
        dl->st->cmds_dropped++;
        return;
    }
    size_t n = strlen(compact);
    if (n + 64 > dl->cfg->max_line) {
        /* The agent could never take it (its line limit is the gateway's):
         * delivering it would make it reconnect again and again. */
        eds_log_warning("command on %s: %zu bytes do not fit max_line, dropped", ev->topic, n);
        free(compact);
        dl->st->cmds_dropped++;
        return;
    }
    if (dl->held_bytes + gw_cmd_size(n) > dl->cfg->max_held_bytes) {
        free(compact);
        dropped(dl, "max_held_bytes reached", id);
        return;
    }
    gw_cmd *cmd = gw_cmd_create(compact, n, &dl->held_bytes);
    free(compact);
    gw_device *d = cmd ? gw_window_get(dl->w, id) : NULL;
    if (!d) {
        gw_cmd_free(cmd, &dl->held_bytes);
        dropped(dl, "out of memory or max_devices", id);
        return;
    }
    hold(dl, d, cmd);
    if (gw_ready_conn(d))
        gw_downlink_deliver(dl, d->conn);
}

void gw_downlink_ack(gw_downlink *dl, gw_conn *c, int64_t id)
{
    gw_cmd *cmd = gw_cmdq_take(&c->unacked, id);
    if (!cmd) {
        eds_log_info("%s: ack for unknown command id %" PRId64, c->peer, id);
        return;
    }
    gw_cmd_free(cmd, &dl->held_bytes);
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
