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
#include "gw_pubq.h"

/* Creates a client for cfg->uri with persistence (NULL = none); persist_qos0: QoS 0
 * publishes go through it too. Callbacks get ctx. EDS_OK, or EDS_ERR_BROKER (logged)
 * when Paho refused. */
int gw_paho_client_create(const gw_pubconf *cfg, MQTTClient_persistence *persistence,
                          bool persist_qos0, void *ctx, MQTTAsync_connectionLost *lost,
                          MQTTAsync_messageArrived *message, MQTTAsync *out);

/* Starts connecting (persistent: cleansession 0, at MQTT 5 clean start off and a session
 * that never expires); Paho reports with ok/failed(ctx) at 3.1.1, ok5/failed5 at 5.
 * Returns Paho's code (MQTTASYNC_SUCCESS when the attempt started). */
int gw_paho_client_connect(MQTTAsync client, const gw_pubconf *cfg, bool persistent, void *ctx,
                           MQTTAsync_onSuccess *ok, MQTTAsync_onFailure *failed,
                           MQTTAsync_onSuccess5 *ok5, MQTTAsync_onFailure5 *failed5);

/* Sets the callbacks of Paho's options opts (response, connect or disconnect options)
 * for cfg's MQTT version: Paho refuses the other version's pair. */
#define GW_PAHO_CALLBACKS(opts, cfg, ok, failed, ok5, failed5)                                     \
    do {                                                                                           \
        if ((cfg)->mqtt_version == 5) {                                                            \
            (opts).onSuccess5 = (ok5);                                                             \
            (opts).onFailure5 = (failed5);                                                         \
        } else {                                                                                   \
            (opts).onSuccess = (ok);                                                               \
            (opts).onFailure = (failed);                                                           \
        }                                                                                          \
    } while (0)

/* Room for the MQTT 5 properties of one publish: its four user properties and
 * correlation data, and the texts of seq and received_at. Kept from one publish to the
 * next (one per publisher, loop thread): received_at's date and time are formatted once
 * per second. Zero it before the first use. */
typedef struct gw_paho_propbuf {
    MQTTProperty prop[5];
    char seq[24], at[32];
    int64_t at_sec; /* the second at[] holds (+1: 0 = none yet) */
} gw_paho_propbuf;

/* MQTT 5 properties of a publish from props (user properties and correlation data),
 * into *out, whose array and texts are in buf and whose strings point into props: valid
 * while both are; for MQTTAsync_send, which copies them. Never MQTTProperties_free it. */
void gw_paho_props(MQTTProperties *out, gw_paho_propbuf *buf, const gw_pub_props *props);

/* A failed connect in words: CONNACK refusals of 3.1.1 come as codes 1..5 with a
 * generic message. */
const char *gw_paho_connect_failure_text(int code, const char *message);

/* Paho's version 5 failure data as the 3.1.1 structure (token, code, message; an MQTT 5
 * reason code of 0x80 and up goes into code when Paho gave none). */
MQTTAsync_failureData gw_paho_failure_of(const MQTTAsync_failureData5 *r);

/* At MQTT 5 Paho calls back with its version 5 structures: these define a callback
 * NAME that calls the 3.1.1-style FN with the same context. */
#define GW_PAHO5_SUCCESS(NAME, FN)                                                                 \
    static void NAME(void *context, MQTTAsync_successData5 *response)                              \
    {                                                                                              \
        (void)response;                                                                            \
        FN(context, NULL);                                                                         \
    }
#define GW_PAHO5_FAILURE(NAME, FN)                                                                 \
    static void NAME(void *context, MQTTAsync_failureData5 *response)                              \
    {                                                                                              \
        MQTTAsync_failureData f = gw_paho_failure_of(response);                                    \
        FN(context, response ? &f : NULL);                                                         \
    }

/* The Receive Maximum of a CONNACK's properties; 65535 (MQTT's default) when absent. */
int gw_paho_receive_maximum(const MQTTProperties *props);

/* A MESSAGE event's buffer for an arrived message: "topic\0payload\0rt\0corr\0" with
 * the MQTT 5 response topic and correlation data (empty at 3.1.1); fills ev's lengths
 * and expiry_s from the message's properties. NULL when out of memory. */
char *gw_paho_message_copy(const char *topic, size_t tlen, const MQTTAsync_message *m,
                           gw_pubq_event *ev);

/* True when Paho still has commands of client pending (sent and unconfirmed, or queued). */
bool gw_paho_client_pending(MQTTAsync client);

/* Once connected (from Paho's callback): subscribes to cfg->subscribe_topic (ro carries
 * the failure callbacks) and queues the retained online status, so both precede any
 * data. Failures are logged. */
void gw_paho_client_announce(MQTTAsync client, const gw_pubconf *cfg,
                             MQTTAsync_responseOptions *ro);

#endif
