/*
 * gw_pubconf.h - the publisher's configuration checked and resolved: defaults
 * applied, the broker URI built, strings copied, max_inflight capped by the
 * broker's receive maximum. Pure (no I/O, no Paho); gw_publisher_create() uses
 * it and owns the result.
 */
#ifndef GW_PUBCONF_H
#define GW_PUBCONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"
#include "gw_publisher.h"

typedef struct gw_pubconf {
    char *uri; /* tcp://host:port, ssl://..., [v6]:port */
    /* deadline on the oldest outstanding publish; 0 = none */
    int64_t publish_timeout_ms;
    char *client_id, *username, *password;
    char *will_topic, *will_payload, *online_payload, *subscribe_topic;
    char *cafile, *certfile, *keyfile;
    int keepalive, connect_timeout_s, reconnect_min_ms, reconnect_max_ms;
    int receive_maximum; /* 0 = none */
    int mqtt_version;    /* MQTTVERSION_3_1_1 (4) or MQTTVERSION_5 (5) */
    size_t max_inflight, max_messages;
} gw_pubconf;

/* Checks cfg and fills out (zeroed first). EDS_OK; EDS_ERR_INVAL with the reason in err
 * ("mqtt: ..."); EDS_ERR_NOMEM. On error out holds nothing (freeing it is harmless). */
int gw_pubconf_make(const gw_publisher_config *cfg, gw_pubconf *out, eds_error *err);

/* Frees the strings (the password is overwritten first) and zeroes c. */
void gw_pubconf_free(gw_pubconf *c);

#endif
