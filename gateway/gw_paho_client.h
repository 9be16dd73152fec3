/*
 * gw_paho_client.h - one Paho async client made and connected from the
 * publisher's configuration (gw_pubconf.h): the Paho options that carry the
 * publisher's guarantees (no automatic reconnect, no resend after a lost clean
 * session, Paho's queue bounds above ours). Part of the publisher: only
 * gw_publisher.c uses it.
 */
#ifndef GW_PAHO_CLIENT_H
#define GW_PAHO_CLIENT_H

#include <MQTTAsync.h>

#include <stdbool.h>

#include "gw_pubconf.h"

/* Creates a client for cfg->uri with persistence (NULL = none); persist_qos0: QoS 0
 * publishes go through it too. Callbacks get ctx. EDS_OK, or EDS_ERR_BROKER (logged)
 * when Paho refused. */
int gw_paho_client_create(const gw_pubconf *cfg, MQTTClient_persistence *persistence,
                          bool persist_qos0, void *ctx, MQTTAsync_connectionLost *lost,
                          MQTTAsync_messageArrived *message, MQTTAsync *out);

/* Starts connecting (persistent: cleansession 0); Paho reports with ok/failed(ctx).
 * Returns Paho's code (MQTTASYNC_SUCCESS when the attempt started). */
int gw_paho_client_connect(MQTTAsync client, const gw_pubconf *cfg, bool persistent, void *ctx,
                           MQTTAsync_onSuccess *ok, MQTTAsync_onFailure *failed);

#endif
