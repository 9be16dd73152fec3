/*
 * gw_publisher.h - the gateway's MQTT side: one Paho async client, seen by
 * the event loop as a file descriptor and a queue of events.
 *
 * This module is the only one in EDS that includes MQTTAsync.h. Paho calls
 * back on its own threads; the publisher turns every callback into an event
 * on a bounded queue and makes gw_publisher_fd() readable (an eventfd). The
 * loop polls that fd and calls gw_publisher_dispatch(), which runs the
 * loop's handler on the loop thread. The publisher never touches connection
 * state of the gateway.
 *
 * Guarantees (what the loop may rely on):
 *  - Every gw_publisher_publish() that returns EDS_OK yields exactly one
 *    GW_PUB_DONE or GW_PUB_FAILED event carrying its token. A call that
 *    returns anything else yields no event and queued nothing.
 *  - DONE means the broker confirmed: PUBACK for QoS 1, PUBCOMP for QoS 2;
 *    for QoS 0, that the PUBLISH was written to the socket.
 *  - Publishes go out in call order on a single MQTT connection.
 *  - Failure is all-or-nothing per connection: when the connection is lost
 *    (or any publish fails, or one stays unconfirmed for publish_timeout_s:
 *    a broker that answers pings only), every publish still outstanding on it reports
 *    FAILED, in call order, followed by GW_PUB_DISCONNECTED. Nothing that
 *    was accepted before is sent again by Paho after a reconnect (each
 *    connection uses a fresh Paho client with cleansession=1 and no
 *    persistence). So after GW_PUB_CONNECTED the loop can resend what
 *    failed, in order, and per-topic order holds. A FAILED message may still
 *    have reached the broker (its PUBACK was lost): delivery is
 *    at-least-once.
 *  - Events are dispatched in the order they were produced.
 *
 * Why not Paho's own machinery: after a connection loss Paho 1.3 fails only the
 * publishes it had written, and sends the ones still in its command queue after an
 * automatic reconnect, ahead of their resent predecessors (docs/performance.md, "Paho
 * behaviour the publisher works around"). The publisher therefore sets Paho's
 * maxInflight above max_inflight, disables automatic reconnect, keeps its own table
 * of outstanding publishes (gw_pubq.h), and replaces the Paho client on every
 * reconnect (destroying the old one drops its queue).
 *
 * Exactly once (persistent = true, used with QoS 2): the publisher keeps one
 * MQTT session (cleansession 0, same client id) for its whole life, with
 * Paho's persistence in a gw_pubstore (gw_pubstore.h); each connection still
 * gets a new Paho client, which restores from the store. Then, instead of the
 * all-or-nothing failure above:
 *  - A lost connection fails nothing: the next connection's client resends
 *    what was in flight from the store with the same packet ids (PUBLISH
 *    with DUP, or PUBREL). Publishing is refused (EDS_ERR_BROKER) until that
 *    is confirmed; then the outstanding publishes get DONE, in call order.
 *    Only when the broker had lost the session (or Paho would not resend)
 *    are they FAILED, for the loop to resend: at least once then.
 *  - Publishes in flight when the process died are restored from the store
 *    at create and resent on the first connection. gw_publisher_restoring()
 *    is true until all of them are confirmed; then GW_PUB_RESTORED is
 *    dispatched (once). Each publish may carry a mark (gw_mark.h: device,
 *    stream, seq), stored atomically with it and kept (latest per device)
 *    until forgotten: after a crash, the marks say what had been handed to
 *    the broker.
 *  With QoS 2 the broker delivers a message when it gets PUBREL and ignores
 *  a PUBLISH whose packet id it holds already, so each message reaches
 *  subscribers once, across broker restarts (mosquitto saves sessions on
 *  SIGTERM) and gateway crashes.
 *
 * Threads: create/destroy/start/publish/dispatch/flush are meant to be called
 * from one thread (the loop). connected() and inflight() may be called from
 * any thread.
 */
#ifndef GW_PUBLISHER_H
#define GW_PUBLISHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "eds_err.h"
#include "gw_mark.h"

typedef struct gw_publisher gw_publisher;

/* Strings are copied by gw_publisher_create(); the caller may free them after. */
typedef struct gw_publisher_config {
    const char *host;                /* NULL = "127.0.0.1" */
    int port;                        /* 0 = 1883 */
    const char *client_id;           /* e.g. "eds-gateway-<hostname>"; required */
    const char *username, *password; /* optional (NULL) */
    int keepalive;                   /* seconds; 0 = 30 */
    const char *will_topic;          /* retained will, QoS 1; NULL = no will */
    const char *will_payload;        /* e.g. {"online":false}; also published on clean shutdown */
    const char *online_payload;      /* published retained (QoS 1) to will_topic on every connect */
    const char *subscribe_topic;     /* e.g. "energy/+/cmd" (QoS 1); re-subscribed on every
                                        connect; NULL = none */
    size_t max_inflight;             /* bound on outstanding publishes (<= 65000); 0 = 64 */
    /* TLS to the broker (optional): cafile set = connect with ssl://; certfile/keyfile for a
     * client certificate. */
    const char *cafile, *certfile, *keyfile;
    /* Optional tuning, 0 = default. */
    size_t max_messages;   /* incoming MESSAGE events queued before drops; 0 = 256 */
    int reconnect_min_ms;  /* first retry delay after a failed attempt; 0 = 1000 */
    int reconnect_max_ms;  /* backoff cap; 0 = 30000 */
    int connect_timeout_s; /* 0 = 10 */
    /* A broker that answers pings but does not confirm publishes (or a stuck Paho): when
     * the oldest publish outstanding on a connection has waited this long, the connection
     * is given up as if it were lost (GW_PUB_DISCONNECTED; clean mode fails what was
     * outstanding, persistent mode resends it from the store) and a new one is made.
     * Seconds; 0 = no deadline (only the keepalive). */
    int publish_timeout_s;
    /* Persistent session (see "Exactly once" above): one MQTT session with cleansession 0
     * for the publisher's life, Paho's persistence in a gw_pubstore in session_dir (NULL:
     * in memory, which survives broker restarts but not a restart of the gateway). */
    bool persistent;
    const char *session_dir; /* clean mode: a session store left here is deleted */
    /* Persistent mode: publishes unconfirmed at the broker at once; 0 = max_inflight.
     * Must not exceed what the broker takes in flight from one client (mosquitto:
     * max_inflight_messages). Past it mosquitto queues QoS 2 messages without PUBREC,
     * and after a reconnect answers the resent ones with PUBREC + PUBCOMP without
     * delivering them (seen with 2.0.11: lost records). Lowers max_inflight to
     * receive_maximum - 2 (room for the SUBSCRIBE and online status of a connect). */
    int receive_maximum;
    /* 5: MQTT 5 (user properties on publishes, correlation data on responses, the
     * properties of arrived messages, and the receive maximum from the broker's CONNACK
     * instead of receive_maximum); 4 or 0: MQTT 3.1.1. */
    int mqtt_version;
} gw_publisher_config;

/* MQTT 5 properties of one publish (ignored at 3.1.1). */
typedef struct gw_pub_props {
    /* data: the user properties device, stream, seq and received_at (RFC 3339 UTC, ms),
     * so that a reader past the Pi can drop duplicates; device NULL: none */
    const char *device, *stream;
    uint64_t seq;
    int64_t received_ms; /* wall clock */
    /* a response: the request's correlation data (corr_len bytes); NULL: none */
    const void *corr;
    size_t corr_len;
} gw_pub_props;

/* Validates cfg and allocates the publisher (no connection yet; see start).
 * Returns EDS_OK, EDS_ERR_INVAL (bad config, details in err), EDS_ERR_NOMEM or
 * EDS_ERR_IO (eventfd/thread creation failed). On success *out is owned by the
 * caller and released with gw_publisher_destroy(). */
int gw_publisher_create(const gw_publisher_config *cfg, gw_publisher **out, eds_error *err);

/* NULL ok. If connected: publishes will_payload (retained) to will_topic, since
 * a clean DISCONNECT suppresses the broker's will, waits up to one second for
 * it, disconnects and frees everything. Events not yet dispatched are dropped
 * (outstanding publishes are not reported). */
void gw_publisher_destroy(gw_publisher *p);

/* Readable (POLLIN/EPOLLIN) while events wait for gw_publisher_dispatch().
 * Owned by the publisher: do not close or read it. */
int gw_publisher_fd(const gw_publisher *p);

/* Starts the connection thread: connects now, and after every loss or failed
 * attempt retries with backoff (reconnect_min_ms doubling up to
 * reconnect_max_ms; the first retry after a connection that worked for 10 s
 * or more is immediate). A reconnect takes about a second even then: Paho's
 * receive thread notices the new socket only after its 1 s select times out.
 * Returns EDS_OK, EDS_ERR_INVAL if already started, EDS_ERR_IO. */
int gw_publisher_start(gw_publisher *p);

/* True between a GW_PUB_CONNECTED and the next GW_PUB_DISCONNECTED as seen by
 * the publisher (the loop may not have dispatched them yet). */
bool gw_publisher_connected(const gw_publisher *p);

/* Publishes accepted and not yet completed by Paho (no DONE/FAILED produced yet). */
size_t gw_publisher_inflight(const gw_publisher *p);

/* Persistent mode: true while publishes restored from the session store are not yet
 * all confirmed by the broker (GW_PUB_RESTORED follows). Always false otherwise. */
bool gw_publisher_restoring(const gw_publisher *p);

/* Persistent mode: calls fn once per mark (the latest per device), from the session store;
 * nothing otherwise. */
void gw_publisher_each_mark(gw_publisher *p, void (*fn)(void *ctx, const gw_mark *mark), void *ctx);

/* Persistent mode: drops all marks (the caller made them durable elsewhere).
 * EDS_OK or EDS_ERR_IO (err); EDS_OK with nothing to do otherwise. */
int gw_publisher_forget_marks(gw_publisher *p, eds_error *err);

/* Queues a publish of len bytes of payload (copied) to topic. token is echoed
 * in the DONE/FAILED event. qos is 0, 1 or 2.
 * Returns EDS_OK; EDS_ERR_FULL when max_inflight publishes are outstanding
 * (a publish counts until its DONE/FAILED event is dispatched, which keeps the
 * event queue bounded); EDS_ERR_BROKER when not connected or Paho refused it;
 * EDS_ERR_INVAL for a bad argument (including a topic with + or #, or not UTF-8).
 * Nothing is queued unless EDS_OK. */
int gw_publisher_publish(gw_publisher *p, const char *topic, const void *payload, size_t len,
                         int qos, bool retain, uint64_t token);

/* gw_publisher_publish() that also records mark (copied; NULL = none) with the publish
 * in the session store (persistent mode; ignored otherwise), and carries props (MQTT 5
 * properties, copied; NULL = none; ignored at 3.1.1). Persistent mode with a mark:
 * EDS_ERR_IO, nothing queued, while the store cannot be written (a full disk; each call
 * tries again, see gw_pubstore_failed). */
int gw_publisher_publish_props(gw_publisher *p, const char *topic, const void *payload, size_t len,
                               int qos, bool retain, uint64_t token, const gw_mark *mark,
                               const struct gw_pub_props *props);
static inline int gw_publisher_publish_marked(gw_publisher *p, const char *topic,
                                              const void *payload, size_t len, int qos, bool retain,
                                              uint64_t token, const gw_mark *mark)
{
    return gw_publisher_publish_props(p, topic, payload, len, qos, retain, token, mark, NULL);
}

typedef enum {
    GW_PUB_DONE,         /* token: the broker confirmed it */
    GW_PUB_FAILED,       /* token: not confirmed; resend after the next CONNECTED */
    GW_PUB_CONNECTED,    /* connected (online status published, subscription requested) */
    GW_PUB_DISCONNECTED, /* connection lost or refused after it was up; reconnecting */
    GW_PUB_MESSAGE,      /* a message arrived on subscribe_topic */
    GW_PUB_RESTORED,     /* persistent mode, once at start: the restored publishes are all
                            confirmed (qos 0) or lost with the broker's session (qos 1) */
} gw_pub_event_type;

typedef struct gw_pub_event {
    gw_pub_event_type type;
    uint64_t token;      /* DONE/FAILED */
    const char *topic;   /* MESSAGE: topic, NUL-terminated */
    const char *payload; /* MESSAGE: payload, len bytes (also NUL-terminated for convenience) */
    size_t len;          /* MESSAGE */
    int qos;             /* MESSAGE: QoS it was delivered with. RESTORED: 0 = confirmed; 1 =
                            not: the broker had lost the session (what was in flight is gone:
                            forget the marks, the agents resend) */
    bool retained;       /* MESSAGE: the broker's retained copy (sent on subscribe) */
    int64_t expiry_s;    /* MESSAGE: MQTT 5 message expiry interval left, seconds; -1: none */
    const char *response_topic; /* MESSAGE: MQTT 5 response topic; NULL: none */
    const void *corr;           /* MESSAGE: MQTT 5 correlation data (corr_len bytes) */
    size_t corr_len;
} gw_pub_event;

/* Loop thread: resets the fd and calls fn once for each event pending when it
 * was called, in order. topic/payload are valid only during fn. fn may call
 * gw_publisher_publish() (e.g. to resend on CONNECTED), but must not destroy
 * the publisher. Returns the number of events handled (>= 0). */
int gw_publisher_dispatch(gw_publisher *p, void (*fn)(void *ctx, const gw_pub_event *ev),
                          void *ctx);

/* Waits up to timeout_ms until gw_publisher_inflight() is 0, i.e. every
 * accepted publish has its DONE/FAILED queued (call dispatch afterwards to
 * receive them). Returns EDS_OK or EDS_ERR_TIMEOUT. */
int gw_publisher_flush(gw_publisher *p, int timeout_ms);

/* Counters for stats. */
typedef struct gw_publisher_stats {
    uint64_t published;        /* publishes accepted */
    uint64_t done;             /* DONE events produced */
    uint64_t failed;           /* FAILED events produced */
    uint64_t messages;         /* MESSAGE events produced */
    uint64_t messages_dropped; /* incoming messages dropped: MESSAGE queue full */
    uint64_t connects;         /* successful connections */
    uint64_t connect_failures; /* failed connection attempts */
    uint64_t publish_timeouts; /* connections given up: a publish outstanding past
                                  publish_timeout_s */
} gw_publisher_stats;

void gw_publisher_get_stats(const gw_publisher *p, gw_publisher_stats *out);

#endif
