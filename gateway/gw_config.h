/*
 * gw_config.h - eds-gateway's settings: defaults, the option table shared
 * by the config file (`-c FILE`, mosquitto.conf style) and the command-line
 * flags, and the checks run once everything is read.
 *
 * A gw_config owns its strings and lists; release with gw_config_free().
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "eds_conf.h"
#include "eds_err.h"

#define GW_MAX_LISTENERS 8
#define GW_MAX_SCHEMA_RULES 64

typedef struct gw_listener_conf {
    int port;
    char address[64]; /* "" = all IPv4 and IPv6 addresses */
    bool tls;         /* set by `tls_listener` */
} gw_listener_conf;

typedef struct gw_schema_rule {
    char *pattern; /* fnmatch(3) pattern on the device id */
    char *file;
} gw_schema_rule;

typedef struct gw_config {
    gw_listener_conf listeners[GW_MAX_LISTENERS];
    size_t n_listeners;
    gw_listener_conf metrics; /* metrics_listener; port 0 = off */
    char *broker_host;
    int broker_port;
    char *broker_username;
    char *broker_password_file; /* file holding the broker password (first line) */
    char *broker_cafile, *broker_certfile, *broker_keyfile;
    char *client_id;
    char *topic_prefix;
    char *schema; /* default schema file; NULL = accept any JSON object */
    gw_schema_rule schema_rules[GW_MAX_SCHEMA_RULES];
    size_t n_schema_rules;
    char *cmd_schema; /* default schema for downlink commands; NULL = any JSON value */
    gw_schema_rule cmd_schema_rules[GW_MAX_SCHEMA_RULES];
    size_t n_cmd_schema_rules;
    int mqtt_version;  /* 5 (MQTT 5, the default) or 4 (MQTT 3.1.1) on the broker link */
    double cmd_expiry; /* seconds a command without its own expiry is kept; 0 = forever */
    char *password_file;
    bool allow_anonymous;
    int qos;
    int max_clients;
    size_t max_line;
    double auth_timeout;
    double idle_timeout;
    int window;                 /* records per device accepted before their acks */
    size_t max_inflight;        /* publishes outstanding at the broker, all devices */
    int broker_receive_maximum; /* qos 2: cap on QoS 2 flows open at the broker */
    size_t max_pending_bytes;
    int max_held_cmds;
    size_t max_held_bytes;
    int max_devices;
    char *state_dir;
    double stats_interval;
    double shutdown_timeout;
    char *log_level;
    /* TLS listener (security issue) */
    char *certfile, *keyfile, *cafile;
    bool require_certificate;
    int max_conn_per_ip;
    int max_unauthenticated;  /* connections before hello; 0 = max_clients / 4 */
    double max_auth_failures; /* failed logins per second, all addresses; 0 = no limit */
    int broker_keepalive;     /* seconds: a hung broker is noticed in 2-3x this */
    double max_rate;          /* records per second per device; 0 = unlimited */
    /* seconds a publish may wait for the broker's confirmation; 0 = no deadline */
    int broker_publish_timeout;
} gw_config;

/* Fills c with the defaults. */
void gw_config_init(gw_config *c);

/* Releases what c owns. */
void gw_config_free(gw_config *c);

/* The option table (file keys and --flags). */
const eds_conf_opt *gw_config_options(void);

/* Checks the combination once file and flags are applied; adds a default
 * listener if none was given. Returns EDS_OK or EDS_ERR_CONFIG with err. */
int gw_config_finish(gw_config *c, eds_error *err);

#endif
