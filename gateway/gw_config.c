#include "gw_config.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "eds_proto.h"

#define GW_DEFAULT_BROKER_HOST "127.0.0.1"
#define GW_DEFAULT_TOPIC_PREFIX "energy"
#define GW_DEFAULT_STATE_DIR "/var/lib/eds-gateway"
#define GW_DEFAULT_LOG_LEVEL "notice"

#define GW_TOPIC_PREFIX_MAX 256

static int parse_port(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 1 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

/* `PORT [ADDRESS]` into *l. */
static int parse_listener(const char *value, gw_listener_conf *l, eds_error *err)
{
    char port[16] = "", addr[64] = "", extra[2] = "";
    int n = sscanf(value, "%15s %63s %1s", port, addr, extra);
    if (n < 1 || n > 2 || parse_port(port, &l->port) != 0)
        return eds_error_set(err, EDS_ERR_CONFIG, "expected PORT [ADDRESS], got '%s'", value);
    memcpy(l->address, addr, sizeof(l->address));
    return EDS_OK;
}

/* `listener PORT [ADDRESS]`, repeatable. */
static int add_listener(gw_config *c, const char *value, bool tls, eds_error *err)
{
    if (c->n_listeners >= GW_MAX_LISTENERS)
        return eds_error_set(err, EDS_ERR_CONFIG, "at most %d listeners", GW_MAX_LISTENERS);
    gw_listener_conf *l = &c->listeners[c->n_listeners];
    int rc = parse_listener(value, l, err);
    if (rc != EDS_OK)
        return rc;
    l->tls = tls;
    c->n_listeners++;
    return EDS_OK;
}

/* `metrics_listener PORT [ADDRESS]`: one; the address defaults to 127.0.0.1
 * (gw_metrics.c), unlike the agent listeners. */
static int opt_metrics_listener(void *target, const char *value, eds_error *err)
{
    gw_config *c = target;
    return parse_listener(value, &c->metrics, err);
}

static int opt_listener(void *target, const char *value, eds_error *err)
{
    return add_listener(target, value, false, err);
}

static int opt_tls_listener(void *target, const char *value, eds_error *err)
{
    return add_listener(target, value, true, err);
}

/* `schema_for PATTERN FILE` and `cmd_schema_for PATTERN FILE`, repeatable; first
 * match wins. */
static int add_schema_rule(gw_schema_rule *rules, size_t *n, const char *value, eds_error *err)
{
    if (*n >= GW_MAX_SCHEMA_RULES)
        return eds_error_set(err, EDS_ERR_CONFIG, "at most %d rules", GW_MAX_SCHEMA_RULES);
    const char *sp = strpbrk(value, " \t");
    if (!sp)
        return eds_error_set(err, EDS_ERR_CONFIG, "expected PATTERN FILE, got '%s'", value);
    const char *file = sp + strspn(sp, " \t");
    gw_schema_rule *r = &rules[*n];
    r->pattern = strndup(value, (size_t)(sp - value));
    r->file = strdup(file);
    if (!r->pattern || !r->file) {
        free(r->pattern);
        free(r->file);
        return EDS_ERR_NOMEM;
    }
    (*n)++;
    return EDS_OK;
}

static int opt_schema_for(void *target, const char *value, eds_error *err)
{
    gw_config *c = target;
    return add_schema_rule(c->schema_rules, &c->n_schema_rules, value, err);
}

static int opt_cmd_schema_for(void *target, const char *value, eds_error *err)
{
    gw_config *c = target;
    return add_schema_rule(c->cmd_schema_rules, &c->n_cmd_schema_rules, value, err);
}

/* `mqtt_version 5` or `mqtt_version 3.1.1`. */
static int opt_mqtt_version(void *target, const char *value, eds_error *err)
{
    gw_config *c = target;
    if (strcmp(value, "5") == 0)
        c->mqtt_version = 5;
    else if (strcmp(value, "3.1.1") == 0)
        c->mqtt_version = 4;
    else
        return eds_error_set(err, EDS_ERR_CONFIG, "mqtt_version: '%s' is not 5 or 3.1.1", value);
    return EDS_OK;
}

#define OFF(f) offsetof(gw_config, f)
static const eds_conf_opt options[] = {
    {"listener", EDS_CONF_CUSTOM, 0, 0, 0, opt_listener, "PORT [ADDRESS]",
     "Plain TCP listener for agents (repeatable). Default: 5883 on all addresses."},
    {"tls_listener", EDS_CONF_CUSTOM, 0, 0, 0, opt_tls_listener, "PORT [ADDRESS]",
     "TLS listener for agents (repeatable; needs certfile and keyfile). Usual port: 5884."},
    {"metrics_listener", EDS_CONF_CUSTOM, 0, 0, 0, opt_metrics_listener, "PORT [ADDRESS]",
     "Serve Prometheus metrics at http://ADDRESS:PORT/metrics. Off by default; ADDRESS "
     "defaults to 127.0.0.1."},
    {"broker_host", EDS_CONF_STRING, OFF(broker_host), 0, 0, NULL, "HOST",
     "MQTT broker to publish to."},
    {"broker_port", EDS_CONF_INT, OFF(broker_port), 1, 65535, NULL, "PORT", "MQTT broker port."},
    {"broker_username", EDS_CONF_STRING, OFF(broker_username), 0, 0, NULL, "NAME",
     "User name for the broker (the ACL in broker-config/ expects eds-gateway)."},
    {"broker_password_file", EDS_CONF_STRING, OFF(broker_password_file), 0, 0, NULL, "FILE",
     "File whose first line is the broker password (kept out of the command line)."},
    {"broker_cafile", EDS_CONF_STRING, OFF(broker_cafile), 0, 0, NULL, "FILE",
     "CA file: connect to the broker with TLS and verify it."},
    {"broker_certfile", EDS_CONF_STRING, OFF(broker_certfile), 0, 0, NULL, "FILE",
     "Client certificate for the broker (TLS)."},
    {"broker_keyfile", EDS_CONF_STRING, OFF(broker_keyfile), 0, 0, NULL, "FILE",
     "Key of broker_certfile."},
    {"client_id", EDS_CONF_STRING, OFF(client_id), 0, 0, NULL, "ID",
     "MQTT client id. Default: eds-gateway-<hostname>."},
    {"topic_prefix", EDS_CONF_STRING, OFF(topic_prefix), 0, 0, NULL, "PREFIX",
     "Topic prefix P: records go to P/<device>/data."},
    {"schema", EDS_CONF_STRING, OFF(schema), 0, 0, NULL, "FILE",
     "Default schema for records. Without one, any JSON object is accepted."},
    {"schema_for", EDS_CONF_CUSTOM, 0, 0, 0, opt_schema_for, "PATTERN FILE",
     "Schema for devices whose id matches the shell PATTERN (repeatable, first match wins)."},
    {"cmd_schema", EDS_CONF_STRING, OFF(cmd_schema), 0, 0, NULL, "FILE",
     "Default schema for downlink commands (P/<device>/cmd); a command that fails is not sent."},
    {"cmd_schema_for", EDS_CONF_CUSTOM, 0, 0, 0, opt_cmd_schema_for, "PATTERN FILE",
     "Command schema for devices whose id matches PATTERN (repeatable, first match wins)."},
    {"cmd_expiry", EDS_CONF_DOUBLE, OFF(cmd_expiry), 0, 1e9, NULL, "SECONDS",
     "A command without an MQTT 5 expiry is dropped as expired after this long (0 = never)."},
    {"password_file", EDS_CONF_STRING, OFF(password_file), 0, 0, NULL, "FILE",
     "Device credentials, as written by mosquitto_passwd."},
    {"allow_anonymous", EDS_CONF_BOOL, OFF(allow_anonymous), 0, 0, NULL, NULL,
     "Accept devices without a password when there is no password_file."},
    {"mqtt_version", EDS_CONF_CUSTOM, 0, 0, 0, opt_mqtt_version, "5|3.1.1",
     "MQTT version to the broker; at 5 data publishes carry the user properties device, "
     "stream, seq and received_at, and the broker's receive maximum is used (default 5)."},
    {"qos", EDS_CONF_INT, OFF(qos), 0, 2, NULL, "0|1|2",
     "QoS of data publishes; acks wait for the broker's confirmation at 1 and 2."},
    {"max_clients", EDS_CONF_INT, OFF(max_clients), 1, 1000000, NULL, "N",
     "Agent connections served at once; more get server_busy."},
    {"max_line", EDS_CONF_SIZE, OFF(max_line), 64, 16 * 1024 * 1024, NULL, "BYTES",
     "Longest protocol line, LF included; longer gets line_too_long."},
    {"auth_timeout", EDS_CONF_DOUBLE, OFF(auth_timeout), 0, 3600, NULL, "SECONDS",
     "Time a new connection has to send hello."},
    {"idle_timeout", EDS_CONF_DOUBLE, OFF(idle_timeout), 0, 86400, NULL, "SECONDS",
     "Close a connection silent for this long (0 = never)."},
    {"window", EDS_CONF_INT, OFF(window), 1, 65536, NULL, "N",
     "Records per device held between arrival and ack; past it the gateway stops reading."},
    {"max_inflight", EDS_CONF_SIZE, OFF(max_inflight), 1, 65000, NULL, "N",
     "Publishes outstanding at the broker, all devices together."},
    {"broker_receive_maximum", EDS_CONF_INT, OFF(broker_receive_maximum), 1, 65000, NULL, "N",
     "With qos 2: QoS 2 publishes unconfirmed at the broker at once; at most the broker's own "
     "limit (mosquitto: max_inflight_messages, default 20)."},
    {"max_pending_bytes", EDS_CONF_SIZE, OFF(max_pending_bytes), 65536, 1LL << 40, NULL, "BYTES",
     "Memory for records waiting for the broker, all devices; past it reading pauses."},
    {"max_held_cmds", EDS_CONF_INT, OFF(max_held_cmds), 0, 100000, NULL, "N",
     "Downlink commands held per offline device (oldest dropped past it)."},
    {"max_held_bytes", EDS_CONF_SIZE, OFF(max_held_bytes), 0, 1LL << 40, NULL, "BYTES",
     "Memory for downlink commands not yet acked, all devices together; past it new ones are "
     "dropped."},
    {"max_devices", EDS_CONF_INT, OFF(max_devices), 1, 10000000, NULL, "N",
     "Devices the gateway keeps state for."},
    {"state_dir", EDS_CONF_STRING, OFF(state_dir), 0, 0, NULL, "DIR",
     "Where last_seq per device is kept across restarts."},
    {"stats_interval", EDS_CONF_DOUBLE, OFF(stats_interval), 0, 86400, NULL, "SECONDS",
     "Publish counters to P/_gateway/stats this often (0 = never)."},
    {"shutdown_timeout", EDS_CONF_DOUBLE, OFF(shutdown_timeout), 0, 600, NULL, "SECONDS",
     "On SIGTERM, time to finish publishes in flight."},
    {"log_level", EDS_CONF_STRING, OFF(log_level), 0, 0, NULL, "LEVEL",
     "error, warning, notice, info or debug."},
    {"certfile", EDS_CONF_STRING, OFF(certfile), 0, 0, NULL, "FILE",
     "Gateway certificate (PEM) for tls_listener."},
    {"keyfile", EDS_CONF_STRING, OFF(keyfile), 0, 0, NULL, "FILE", "Key of certfile (PEM)."},
    {"cafile", EDS_CONF_STRING, OFF(cafile), 0, 0, NULL, "FILE",
     "CA that signs device certificates (mutual TLS)."},
    {"require_certificate", EDS_CONF_BOOL, OFF(require_certificate), 0, 0, NULL, NULL,
     "TLS clients must present a certificate whose CN equals their device id."},
    {"max_conn_per_ip", EDS_CONF_INT, OFF(max_conn_per_ip), 0, 1000000, NULL, "N",
     "Connections from one address at once (0 = no limit)."},
    {"max_unauthenticated", EDS_CONF_INT, OFF(max_unauthenticated), 0, 1000000, NULL, "N",
     "Connections that have not said hello yet, all addresses (0 = a quarter of max_clients); "
     "past it the oldest is closed."},
    {"max_auth_failures", EDS_CONF_DOUBLE, OFF(max_auth_failures), 0, 1e6, NULL, "PER_SECOND",
     "Failed logins per second answered at once, all addresses (0 = no limit); past it each "
     "waits 10 s."},
    {"broker_keepalive", EDS_CONF_INT, OFF(broker_keepalive), 1, 3600, NULL, "SECONDS",
     "MQTT keepalive with the broker: a broker that stops answering is noticed within 2 to 3 "
     "times this."},
    {"broker_publish_timeout", EDS_CONF_INT, OFF(broker_publish_timeout), 0, 3600, NULL, "SECONDS",
     "A publish the broker has not confirmed after this long gives the connection up as lost "
     "(a broker that answers pings only); 0 = no deadline."},
    {"max_rate", EDS_CONF_DOUBLE, OFF(max_rate), 0, 1e9, NULL, "PER_SECOND",
     "Records per second per device (0 = no limit); past it the gateway reads slower."},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
#undef OFF

const eds_conf_opt *gw_config_options(void)
{
    return options;
}

void gw_config_init(gw_config *c)
{
    memset(c, 0, sizeof(*c));
    c->broker_port = 1883;
    c->qos = 1;
    c->max_clients = 1024;
    c->max_conn_per_ip = 32;
    c->max_auth_failures = 20;
    c->broker_keepalive = 4;
    c->broker_publish_timeout = 10;
    c->max_line = EDS_DEFAULT_MAX_LINE;
    c->auth_timeout = 5;
    c->idle_timeout = 300;
    c->window = 256;
    c->max_inflight = 256;          /* bench_paho: 16..256 equal, 1024 slower */
    c->broker_receive_maximum = 20; /* mosquitto's default max_inflight_messages */
    c->max_pending_bytes = 64 * 1024 * 1024;
    c->max_held_cmds = 100;
    c->max_held_bytes = 16 * 1024 * 1024;
    c->cmd_expiry = 86400;
    c->mqtt_version = 5; /* a day-ahead price a day late is wrong */
    c->max_devices = 100000;
    c->stats_interval = 10;
    c->shutdown_timeout = 5;
    /* String defaults are owned like any value (a file or flag replaces and
     * frees them), so --help can show them; gw_config_finish fills any that
     * an allocation failure left NULL. */
    c->broker_host = strdup(GW_DEFAULT_BROKER_HOST);
    c->topic_prefix = strdup(GW_DEFAULT_TOPIC_PREFIX);
    c->state_dir = strdup(GW_DEFAULT_STATE_DIR);
    c->log_level = strdup(GW_DEFAULT_LOG_LEVEL);
}

static int set_default(char **field, const char *value)
{
    if (*field)
        return EDS_OK;
    *field = strdup(value);
    return *field ? EDS_OK : EDS_ERR_NOMEM;
}

void gw_config_free(gw_config *c)
{
    eds_conf_free_strings(options, c);
    for (size_t i = 0; i < c->n_schema_rules; i++) {
        free(c->schema_rules[i].pattern);
        free(c->schema_rules[i].file);
    }
    for (size_t i = 0; i < c->n_cmd_schema_rules; i++) {
        free(c->cmd_schema_rules[i].pattern);
        free(c->cmd_schema_rules[i].file);
    }
    c->n_schema_rules = 0;
    c->n_cmd_schema_rules = 0;
}

int gw_config_finish(gw_config *c, eds_error *err)
{
    if (c->n_listeners == 0) {
        c->listeners[0].port = EDS_DEFAULT_PORT;
        c->n_listeners = 1;
    }
    if (set_default(&c->broker_host, GW_DEFAULT_BROKER_HOST) ||
        set_default(&c->topic_prefix, GW_DEFAULT_TOPIC_PREFIX) ||
        set_default(&c->state_dir, GW_DEFAULT_STATE_DIR) ||
        set_default(&c->log_level, GW_DEFAULT_LOG_LEVEL))
        return EDS_ERR_NOMEM;
    const char *p = c->topic_prefix;
    if (!*p || strpbrk(p, "+#") || p[strlen(p) - 1] == '/')
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "topic_prefix: '%s' must be non-empty, without + # or a trailing /",
                             p);
    /* The server formats topics into 512-byte buffers: prefix + / + device + /rejected. */
    if (strlen(p) > GW_TOPIC_PREFIX_MAX)
        return eds_error_set(err, EDS_ERR_CONFIG, "topic_prefix: longer than %d bytes",
                             GW_TOPIC_PREFIX_MAX);
    if (!c->password_file && !c->allow_anonymous && !c->require_certificate)
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "no password_file: set one, use mutual TLS (require_certificate "
                             "true), or allow devices without a password explicitly with "
                             "'allow_anonymous true'");
    for (size_t i = 0; i < c->n_listeners; i++)
        if (c->listeners[i].tls && (!c->certfile || !c->keyfile))
            return eds_error_set(err, EDS_ERR_CONFIG, "tls_listener %d needs certfile and keyfile",
                                 c->listeners[i].port);
    if (c->require_certificate && !c->cafile)
        return eds_error_set(err, EDS_ERR_CONFIG, "require_certificate needs cafile");
    unsigned char ip[16];
    const char *ma = c->metrics.address;
    if (c->metrics.port && *ma && inet_pton(AF_INET, ma, ip) != 1 &&
        inet_pton(AF_INET6, ma, ip) != 1)
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "metrics_listener: '%s' is not a numeric IPv4 or IPv6 address", ma);
    return EDS_OK;
}
