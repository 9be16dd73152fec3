/*
 * gw_pubconf.c - checks and defaults of gw_publisher_config. See gw_pubconf.h.
 */
#include "gw_pubconf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_opt(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

static int check(const gw_publisher_config *cfg, eds_error *err)
{
    if (!cfg || !cfg->client_id || !cfg->client_id[0])
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: client_id is required");
    if (cfg->port < 0 || cfg->port > 65535)
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: port %d out of range", cfg->port);
    if (cfg->max_inflight > 65000 || cfg->max_messages > 1000000)
        return eds_error_set(err, EDS_ERR_INVAL,
                             "mqtt: max_inflight (<= 65000) or max_messages too large");
    if ((cfg->online_payload || cfg->will_payload) && !cfg->will_topic)
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: will/online payload without will_topic");
    if ((cfg->certfile || cfg->keyfile) && !cfg->cafile)
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: certfile/keyfile need cafile");
    if (cfg->keepalive < 0 || cfg->reconnect_min_ms < 0 || cfg->reconnect_max_ms < 0 ||
        cfg->connect_timeout_s < 0 || cfg->publish_timeout_s < 0)
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: negative timing option");
    if (cfg->mqtt_version != 0 && cfg->mqtt_version != 4 && cfg->mqtt_version != 5)
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: version %d (5 or 4 for 3.1.1)",
                             cfg->mqtt_version);
    return EDS_OK;
}

int gw_pubconf_make(const gw_publisher_config *cfg, gw_pubconf *out, eds_error *err)
{
    memset(out, 0, sizeof(*out));
    int rc = check(cfg, err);
    if (rc != EDS_OK)
        return rc;
    const char *host = cfg->host && cfg->host[0] ? cfg->host : "127.0.0.1";
    int port = cfg->port ? cfg->port : 1883;
    bool v6 = strchr(host, ':') != NULL;
    char uri[600];
    int n = snprintf(uri, sizeof(uri), "%s://%s%s%s:%d", cfg->cafile ? "ssl" : "tcp", v6 ? "[" : "",
                     host, v6 ? "]" : "", port);
    if (n < 0 || (size_t)n >= sizeof(uri))
        return eds_error_set(err, EDS_ERR_INVAL, "mqtt: host name too long");
    bool oom = false;
    out->uri = dup_opt(uri, &oom);
    out->client_id = dup_opt(cfg->client_id, &oom);
    out->username = dup_opt(cfg->username, &oom);
    out->password = dup_opt(cfg->password, &oom);
    out->will_topic = dup_opt(cfg->will_topic, &oom);
    out->will_payload = dup_opt(cfg->will_payload, &oom);
    out->online_payload = dup_opt(cfg->online_payload, &oom);
    out->subscribe_topic = dup_opt(cfg->subscribe_topic, &oom);
    out->cafile = dup_opt(cfg->cafile, &oom);
    out->certfile = dup_opt(cfg->certfile, &oom);
    out->keyfile = dup_opt(cfg->keyfile, &oom);
    if (oom) {
        gw_pubconf_free(out);
        return eds_error_set(err, EDS_ERR_NOMEM, "mqtt: out of memory");
    }
    out->keepalive = cfg->keepalive ? cfg->keepalive : 30;
    out->connect_timeout_s = cfg->connect_timeout_s ? cfg->connect_timeout_s : 10;
    out->publish_timeout_ms = (int64_t)cfg->publish_timeout_s * 1000;
    out->reconnect_min_ms = cfg->reconnect_min_ms ? cfg->reconnect_min_ms : 1000;
    out->reconnect_max_ms = cfg->reconnect_max_ms ? cfg->reconnect_max_ms : 30000;
    if (out->reconnect_max_ms < out->reconnect_min_ms)
        out->reconnect_max_ms = out->reconnect_min_ms;
    out->max_inflight = cfg->max_inflight ? cfg->max_inflight : 64;
    out->max_messages = cfg->max_messages ? cfg->max_messages : 256;
    out->mqtt_version = cfg->mqtt_version == 5 ? 5 : 4;
    /* At 5 the broker's CONNACK says its receive maximum (the publisher applies it). */
    out->receive_maximum =
        cfg->receive_maximum > 0 && out->mqtt_version == 4 ? cfg->receive_maximum : 0;
    if (cfg->persistent && out->receive_maximum > 0) {
        /* Paho 1.3 sends a queued publish only when another is added or after a 1 s
         * wait, not when a confirmation frees a slot (docs/performance.md, "Paho"): the
         * cap is ours, so Paho never queues. Two below it: the SUBSCRIBE and the online
         * status that every connect adds. */
        size_t cap = out->receive_maximum > 3 ? (size_t)out->receive_maximum - 2 : 1;
        if (out->max_inflight > cap)
            out->max_inflight = cap;
    }
    return EDS_OK;
}

void gw_pubconf_free(gw_pubconf *c)
{
    if (c->password) {
        /* Do not leave the password in freed memory. */
        volatile char *s = c->password;
        while (*s)
            *s++ = '\0';
    }
    char *strings[] = {c->uri,        c->client_id,    c->username,       c->password,
                       c->will_topic, c->will_payload, c->online_payload, c->subscribe_topic,
                       c->cafile,     c->certfile,     c->keyfile};
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        free(strings[i]);
    memset(c, 0, sizeof(*c));
}
