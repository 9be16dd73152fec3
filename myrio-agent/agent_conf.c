/*
 * agent_conf.c - the agent's options: one table for the config file, the
 * command-line flags and --help (eds_conf.h), plus the password file.
 */
#include "edsagent.h"

#include "eds_conf.h"
#include "eds_log.h"
#include "eds_proto.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static int set_gateway(void *target, const char *value, eds_error *err)
{
    eds_agent_config *cfg = target;
    const char *colon = strrchr(value, ':');
    const char *host = value;
    size_t hlen = strlen(value);
    int port = cfg->gateway_port;
    if (value[0] == '[') { /* [v6addr]:port */
        const char *close = strchr(value, ']');
        if (!close)
            return eds_error_set(err, EDS_ERR_CONFIG, "'%s': missing ']'", value);
        host = value + 1;
        hlen = (size_t)(close - host);
        colon = close[1] == ':' ? close + 1 : NULL;
        if (!colon && close[1])
            return eds_error_set(err, EDS_ERR_CONFIG, "'%s': expected [ADDRESS]:PORT", value);
    } else if (colon && strchr(value, ':') != colon) {
        colon = NULL; /* a bare IPv6 address */
    } else if (colon) {
        hlen = (size_t)(colon - value);
    }
    if (colon) {
        char *end;
        errno = 0;
        long p = strtol(colon + 1, &end, 10);
        if (errno || end == colon + 1 || *end || p < 1 || p > 65535)
            return eds_error_set(err, EDS_ERR_CONFIG, "'%s': port must be 1..65535", value);
        port = (int)p;
    }
    if (hlen == 0)
        return eds_error_set(err, EDS_ERR_CONFIG, "'%s': no host", value);
    char *h = strndup(host, hlen);
    if (!h)
        return EDS_ERR_NOMEM;
    free(cfg->gateway_host);
    cfg->gateway_host = h;
    cfg->gateway_port = port;
    return EDS_OK;
}

/* value must be one of names (NULL-terminated); *field becomes its index. */
static int set_choice(int *field, const char *value, const char *const *names, const char *list,
                      eds_error *err)
{
    for (int i = 0; names[i]; i++) {
        if (strcmp(value, names[i]) == 0) {
            *field = i;
            return EDS_OK;
        }
    }
    return eds_error_set(err, EDS_ERR_CONFIG, "'%s': expected %s", value, list);
}

static int set_full_policy(void *target, const char *value, eds_error *err)
{
    /* indexes are enum eds_agent_full_policy */
    static const char *const names[] = {"block", "drop-oldest", NULL};
    eds_agent_config *cfg = target;
    if (strcmp(value, "drop_oldest") == 0)
        value = "drop-oldest";
    return set_choice(&cfg->full_policy, value, names, "block or drop-oldest", err);
}

static int set_spool_sync(void *target, const char *value, eds_error *err)
{
    /* indexes are enum eds_agent_sync_policy */
    static const char *const names[] = {"none", "batch", "always", NULL};
    eds_agent_config *cfg = target;
    return set_choice(&cfg->spool_sync, value, names, "none, batch or always", err);
}

static int set_log_level(void *target, const char *value, eds_error *err)
{
    eds_agent_config *cfg = target;
    enum eds_log_level level;
    if (eds_log_level_parse(value, &level) != 0)
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "'%s': expected error, warning, notice, info or debug", value);
    cfg->log_level = (int)level;
    return EDS_OK;
}

#define OFF(f) offsetof(eds_agent_config, f)

static const eds_conf_opt agent_opts[] = {
    {"gateway", EDS_CONF_CUSTOM, 0, 0, 0, set_gateway, "HOST[:PORT]",
     "The gateway to connect to (port default 5883)."},
    {"gateway_host", EDS_CONF_STRING, OFF(gateway_host), 0, 0, NULL, "HOST",
     "Gateway host name or address (same as the HOST of --gateway)."},
    {"gateway_port", EDS_CONF_INT, OFF(gateway_port), 1, 65535, NULL, "PORT", "Gateway TCP port."},
    {"device", EDS_CONF_STRING, OFF(device), 0, 0, NULL, "ID",
     "This myRIO's device id (letters, digits, _ . -; becomes part of the MQTT topic)."},
    {"password_file", EDS_CONF_STRING, OFF(password_file), 0, 0, NULL, "FILE",
     "File whose first line is the device password (never give it on the command line)."},
    {"stream", EDS_CONF_STRING, OFF(stream), 0, 0, NULL, "ID",
     "Fixed stream id; by default taken from the spool, or random per start without one."},
    {"schema", EDS_CONF_STRING, OFF(schema), 0, 0, NULL, "FILE",
     "Schema (Cerberus rules as JSON) each record must pass before it is queued."},
    {"spool", EDS_CONF_STRING, OFF(spool), 0, 0, NULL, "DIR",
     "Crash-safe on-disk queue folder; without it records wait in memory only."},
    {"spool_max", EDS_CONF_SIZE, OFF(spool_max), 65536, 0x7fffffff, NULL, "BYTES",
     "Disk space the spool may use (suffix k, m, g)."},
    {"spool_sync", EDS_CONF_CUSTOM, 0, 0, 0, set_spool_sync, "none|batch|always",
     "When the spool calls fdatasync: never, per batch of records (default), per record."},
    {"queue_max", EDS_CONF_SIZE, OFF(queue_max), 1, 10000000, NULL, "RECORDS",
     "Records held in memory (all of them without --spool, a read-ahead window with it)."},
    {"full_policy", EDS_CONF_CUSTOM, 0, 0, 0, set_full_policy, "block|drop-oldest",
     "When queue and spool are full: stop reading inputs (default) or drop the oldest."},
    {"window", EDS_CONF_INT, OFF(window), 1, 100000, NULL, "N",
     "Data messages sent ahead of their acks."},
    {"max_line", EDS_CONF_SIZE, OFF(max_line), 256, 16777216, NULL, "BYTES",
     "Longest protocol line, newline included (the gateway's max_line)."},
    {"ping_interval", EDS_CONF_DOUBLE, OFF(ping_interval), 0, 86400, NULL, "SECONDS",
     "Quiet time after which the agent pings the gateway."},
    {"ping_timeout", EDS_CONF_DOUBLE, OFF(ping_timeout), 0, 86400, NULL, "SECONDS",
     "An unanswered ping this old means the connection is dead."},
    {"connect_timeout", EDS_CONF_DOUBLE, OFF(connect_timeout), 0, 3600, NULL, "SECONDS",
     "Time allowed for TCP connect plus welcome."},
    {"reconnect_min", EDS_CONF_DOUBLE, OFF(reconnect_min), 0, 3600, NULL, "SECONDS",
     "First reconnect delay; it doubles (with jitter) up to reconnect_max."},
    {"reconnect_max", EDS_CONF_DOUBLE, OFF(reconnect_max), 0, 3600, NULL, "SECONDS",
     "Longest reconnect delay."},
    {"drain_timeout", EDS_CONF_DOUBLE, OFF(drain_timeout), 0, 86400, NULL, "SECONDS",
     "After the inputs end: how long to wait for the last acks before exiting 1."},
    {"stats_interval", EDS_CONF_DOUBLE, OFF(stats_interval), 0, 86400, NULL, "SECONDS",
     "Log a status line (connection, counters, backlog) this often; 0: never."},
    {"stdin", EDS_CONF_BOOL, OFF(read_stdin), 0, 0, NULL, NULL,
     "Read NDJSON records from stdin (the default when no other input is given)."},
    {"tcp", EDS_CONF_INT, OFF(tcp_port), 0, 65535, NULL, "PORT",
     "Accept NDJSON records on TCP 127.0.0.1:PORT (lossless: pushes back when full)."},
    {"udp", EDS_CONF_INT, OFF(udp_port), 0, 65535, NULL, "PORT",
     "Accept one JSON record per datagram on UDP 127.0.0.1:PORT (dropped and counted when "
     "full)."},
    {"simulate", EDS_CONF_DOUBLE, OFF(simulate), 0, 100000, NULL, "RATE",
     "Generate RATE simulated energy records per second (timestamp, day-ahead-price, "
     "power_factor, voltage, current, power, energy, sample)."},
    {"count", EDS_CONF_INT, OFF(count), 0, 0, NULL, "N",
     "Stop reading inputs after N accepted records, deliver them, and exit (0: no limit)."},
    {"cmd_stdout", EDS_CONF_BOOL, OFF(cmd_stdout), 0, 0, NULL, NULL,
     "Write each downlink command's data as one JSON line to stdout (eds-agent: on unless "
     "cmd_udp is set)."},
    {"cmd_schema", EDS_CONF_STRING, OFF(cmd_schema), 0, 0, NULL, "FILE",
     "Schema each downlink command must pass before it is handed over; a command that fails "
     "is refused and its errors reported to the gateway."},
    {"cmd_tcp", EDS_CONF_BOOL, OFF(cmd_tcp), 0, 0, NULL, NULL,
     "Write each downlink command as one JSON line to the client of the tcp input; acked "
     "once written, kept (in the spool) while no client is connected."},
    {"cmd_udp", EDS_CONF_INT, OFF(cmd_udp), 0, 65535, NULL, "PORT",
     "Send each downlink command's data as one datagram to 127.0.0.1:PORT."},
    {"log_level", EDS_CONF_CUSTOM, 0, 0, 0, set_log_level, "error|warning|notice|info|debug",
     "Most verbose log level written to stderr (default notice; -v means info)."},
    {"tls", EDS_CONF_BOOL, OFF(tls), 0, 0, NULL, NULL,
     "Connect with TLS. The port stays what --gateway says: give the gateway's TLS port (usually "
     "5884) there."},
    {"cafile", EDS_CONF_STRING, OFF(cafile), 0, 0, NULL, "FILE",
     "CA certificate that signs the gateway's certificate (TLS)."},
    {"cert", EDS_CONF_STRING, OFF(cert), 0, 0, NULL, "FILE",
     "This device's client certificate, CN = device id (TLS)."},
    {"key", EDS_CONF_STRING, OFF(key), 0, 0, NULL, "FILE", "The client certificate's key (TLS)."},
    {"server_name", EDS_CONF_STRING, OFF(server_name), 0, 0, NULL, "NAME",
     "Name or IP address the gateway's certificate must carry (TLS; default: the gateway "
     "host)."},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};

void eds_agent_config_init(eds_agent_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->gateway_port = EDS_DEFAULT_PORT;
    cfg->window = 64;
    cfg->spool_max = 64u * 1024u * 1024u;
    cfg->spool_sync = EDS_AGENT_SYNC_BATCH;
    cfg->queue_max = 10000;
    cfg->full_policy = EDS_AGENT_FULL_BLOCK;
    cfg->max_line = EDS_DEFAULT_MAX_LINE;
    cfg->ping_interval = 15;
    cfg->ping_timeout = 10;
    cfg->connect_timeout = 10;
    cfg->reconnect_min = 0.5;
    cfg->reconnect_max = 30;
    cfg->drain_timeout = 30;
    cfg->stats_interval = 600;
    cfg->log_level = -1;
}

void eds_agent_config_free(eds_agent_config *cfg)
{
    eds_conf_free_strings(agent_opts, cfg);
}

int eds_agent_config_set(eds_agent_config *cfg, const char *name, const char *value,
                         const char *source, eds_error *err)
{
    return eds_conf_set(agent_opts, cfg, name, value, source, err);
}

int eds_agent_config_load(eds_agent_config *cfg, const char *path, eds_error *err)
{
    return eds_conf_load_file(path, agent_opts, cfg, err);
}

int eds_agent_config_set_arg(eds_agent_config *cfg, int argc, char *const argv[], int *index,
                             eds_error *err)
{
    return eds_conf_set_arg(agent_opts, cfg, argc, argv, index, err);
}

bool eds_agent_config_is_flag(const char *name)
{
    const eds_conf_opt *o = eds_conf_find(agent_opts, name);
    return o && o->type == EDS_CONF_BOOL;
}

bool eds_agent_config_known(const char *name)
{
    return eds_conf_find(agent_opts, name) != NULL;
}

void eds_agent_config_help(FILE *out)
{
    eds_agent_config defaults;
    eds_agent_config_init(&defaults);
    eds_conf_print_help(out, agent_opts, &defaults);
}
