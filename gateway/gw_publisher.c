/*
 * gw_publisher.c - Paho MQTT C (async) behind a bounded event queue and an
 * eventfd. See gw_publisher.h for the guarantees; here is how they are kept.
 *
 * Threads and locks:
 *  - Paho's threads call our callbacks while holding Paho's own mutex. The
 *    callbacks take p->lock, never anything else.
 *  - The loop thread (publish/dispatch/flush) and the connection thread
 *    (supervise) never call Paho while holding p->lock, so the lock order is
 *    always Paho -> p->lock and nothing can deadlock.
 *  - p->handle_lock keeps the current Paho client alive while the loop is
 *    inside MQTTAsync_send(): the connection thread takes it to destroy a
 *    client. Order: handle_lock -> Paho -> p->lock.
 *
 * Outstanding publishes and the events for the loop are kept by gw_pubq
 * (pure, under p->lock); Paho's callback context is the slot's slot_ctx.
 * Condition variables: p->cond wakes the connection thread (connection
 * state, room for control events), p->idle wakes gw_publisher_flush (nothing
 * outstanding); a completion wakes neither unless it empties the table.
 * Other files of the publisher: gw_pubconf (configuration), gw_paho_client
 * (Paho's options), gw_paho_store (Paho's persistence on gw_pubstore).
 *
 * Each connection gets a new Paho client (generation counter). When the
 * connection is lost or any publish fails, every outstanding slot is failed
 * at once, in call order, and the connection thread destroys that client,
 * which discards whatever Paho still had queued for it; callbacks that Paho
 * makes for it meanwhile find their slot released and are ignored.
 *
 * Persistent mode (p->store set) also gets a new client per connection, but
 * fails nothing: slots stay pending, the old client is destroyed first, and
 * the new one restores what was in flight from the session store (gw_pubstore)
 * and resends it; restore_done_locked() settles the slots once the store has
 * emptied.
 */
#include "gw_publisher.h"

#include <MQTTAsync.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "eds_log.h"
#include "eds_backoff.h"
#include "eds_clock.h"
#include "gw_paho_client.h"
#include "gw_paho_store.h"
#include "gw_pubconf.h"
#include "gw_pubq.h"
#include "gw_pubstore.h"

/* CONNECTED/DISCONNECTED events that may wait undispatched; the connection
 * thread does not start a new attempt while more than CONTROL_MAX - 2 wait. */
#define CONTROL_MAX 8
#define GRACEFUL_TIMEOUT_MS 1000
/* A connection that lasted this long counts as working: after losing it, retry at once. */
#define STABLE_MS 10000
/* Restoring, nothing pending in Paho, the store unchanged this many seconds: stop waiting. */
#define RESTORE_STUCK_S 10

/* Paho's callback context of one slot: the publisher and the slot's index. */
typedef struct slot_ctx {
    gw_publisher *p;
    uint32_t idx;
} slot_ctx;

enum conn_state {
    CONN_IDLE,       /* no client, or between clients */
    CONN_CONNECTING, /* MQTTAsync_connect() issued */
    CONN_UP,         /* CONNACK received */
    CONN_DOWN,       /* attempt failed or connection lost: the client must go */
};

/* Callback context of one Paho client: identifies its generation. */
typedef struct conn_ctx {
    gw_publisher *p;
    unsigned gen;
    MQTTAsync client;
    gw_paho_mem mem; /* clean mode: its persistence (gw_paho_store.h says why) */
} conn_ctx;

struct gw_publisher {
    gw_pubconf cfg; /* checked, with defaults (gw_pubconf.h) */

    int efd;
    pthread_t thread;
    bool started;

    pthread_mutex_t handle_lock; /* see top of file */
    pthread_mutex_t lock;        /* everything below */
    pthread_cond_t cond;         /* connection state or control-event count changed */
    pthread_cond_t idle;         /* q.inflight dropped to 0 (gw_publisher_flush waits) */
    conn_ctx *conn;              /* current client; NULL while none */
    unsigned gen;
    enum conn_state state;
    bool stopping;
    bool signalled; /* efd written since the last dispatch */
    int offline_done;

    gw_pubq q;           /* slots and events (gw_pubq.h) */
    slot_ctx *slot_ctxs; /* one per slot: Paho's callback context */

    gw_publisher_stats stats;
    gw_paho_propbuf propbuf; /* loop thread (publish): MQTT 5 properties */

    /* persistent mode (store != NULL) */
    gw_pubstore *store;       /* NULL in clean mode */
    gw_paho_store paho_store; /* Paho's persistence on store */
    bool restoring;           /* publishes in the store not yet all confirmed */
    bool announce_restored;   /* GW_PUB_RESTORED when they are (start-up only) */
    bool discarding;          /* destroying an old client: its failures mean nothing */
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void lock(const gw_publisher *p)
{
    pthread_mutex_lock((pthread_mutex_t *)&p->lock);
}

static void unlock(const gw_publisher *p)
{
    pthread_mutex_unlock((pthread_mutex_t *)&p->lock);
}

/* ---- events and slots (p->lock held) --------------------------------------------------- */

/* Makes the loop's fd readable once per dispatch. */
static void signal_locked(gw_publisher *p)
{
    if (!p->signalled) {
        uint64_t one = 1;
        /* Cannot fail short of a counter overflow (2^64 - 1), which a reset per dispatch
         * prevents; the eventfd is non-blocking. */
        if (write(p->efd, &one, sizeof(one)) == (ssize_t)sizeof(one))
            p->signalled = true;
    }
}

/* Room is guaranteed: the connection thread waits before an attempt while the control
 * events queued could not take its CONNECTED and DISCONNECTED (RESTORED has its own). */
static void push_control_locked(gw_publisher *p, gw_pub_event_type type, int qos)
{
    if (!gw_pubq_push_control(&p->q, type, qos))
        eds_log_error("mqtt: control event %d dropped (queue full)", (int)type);
    signal_locked(p);
}

/* Queues slot i's DONE/FAILED if it is still outstanding. */
static void report_locked(gw_publisher *p, uint32_t i, bool ok)
{
    if (!gw_pubq_report(&p->q, i, ok))
        return;
    if (ok)
        p->stats.done++;
    else
        p->stats.failed++;
    signal_locked(p);
    if (p->q.inflight == 0)
        pthread_cond_broadcast(&p->idle);
}

/* The connection (generation) is finished: fail everything outstanding in call
 * order, announce the loss once, and let the connection thread replace the client.
 * Persistent mode fails nothing: Paho resends it on the next connection. */
static void connection_down_locked(gw_publisher *p)
{
    while (!p->store && gw_pubq_oldest(&p->q) != GW_PUBQ_NIL)
        report_locked(p, gw_pubq_oldest(&p->q), false);
    if (p->state == CONN_UP)
        push_control_locked(p, GW_PUB_DISCONNECTED, 0);
    p->state = CONN_DOWN;
    pthread_cond_broadcast(&p->cond);
}

/* ---- Paho callbacks (Paho threads) ------------------------------------------------------ */

static void on_publish_success(void *context, MQTTAsync_successData *response)
{
    (void)response;
    const slot_ctx *sc = context;
    gw_publisher *p = sc->p;
    lock(p);
    report_locked(p, sc->idx, true);
    unlock(p);
}

static void on_publish_failure(void *context, MQTTAsync_failureData *response)
{
    const slot_ctx *sc = context;
    gw_publisher *p = sc->p;
    lock(p);
    /* A released slot belongs to a connection already declared down (or was
     * never accepted): nothing to report. */
    bool outstanding = gw_pubq_outstanding(&p->q, sc->idx);
    if (outstanding && p->store) {
        /* Nothing to report: Paho fails a publish when its connection breaks, with the
         * PUBLISH already in the store ("s-", stored before the write). The next client
         * resends it from there and restore_done_locked() settles the slot; failing it
         * here would have the loop publish it a second time. */
        eds_log_debug("mqtt: publish not confirmed on this connection (paho code %d); the next "
                      "connection resends it",
                      response ? response->code : 0);
    } else if (outstanding) {
        int code = response ? response->code : 0;
        if (p->state == CONN_UP)
            eds_log_warning("mqtt: publish failed (%s, paho code %d); failing all outstanding "
                            "and reconnecting",
                            code == MQTTASYNC_OPERATION_INCOMPLETE ? "connection lost" : "error",
                            code);
        connection_down_locked(p);
    }
    unlock(p);
}

static void on_connection_lost(void *context, char *cause)
{
    conn_ctx *c = context;
    gw_publisher *p = c->p;
    (void)cause; /* Paho 1.3 always passes NULL */
    lock(p);
    if (c->gen == p->gen && p->state != CONN_DOWN) {
        eds_log_warning("mqtt: connection to %s lost", p->cfg.uri);
        connection_down_locked(p);
    }
    unlock(p);
}

static void on_subscribe_failure(void *context, MQTTAsync_failureData *response)
{
    conn_ctx *c = context;
    gw_publisher *p = c->p;
    lock(p);
    bool current = c->gen == p->gen && p->state == CONN_UP;
    unlock(p);
    if (current) /* not a client being destroyed */
        eds_log_warning("mqtt: subscription to %s refused or failed (code %d): no commands will "
                        "be received; check the broker's ACL",
                        c->p->cfg.subscribe_topic, response ? response->code : 0);
}

GW_PAHO5_FAILURE(on_subscribe_failure5, on_subscribe_failure)

static void restore_done_locked(gw_publisher *p, bool ok);

/* Connected (CONNACK accepted); receive_max: the broker's (MQTT 5), 0 at 3.1.1. */
static void connected(conn_ctx *c, bool session_present, int receive_max)
{
    gw_publisher *p = c->p;
    /* Paho calls back with its mutex held; calling it again from here is allowed. The
     * subscription and the online status are queued before the loop learns that it may
     * publish, so they precede any data. */
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    GW_PAHO_CALLBACKS(ro, &p->cfg, NULL, on_subscribe_failure, NULL, on_subscribe_failure5);
    ro.context = c;
    gw_paho_client_announce(c->client, &p->cfg, &ro);
    lock(p);
    if (c->gen == p->gen && p->state == CONN_CONNECTING) {
        p->state = CONN_UP;
        p->stats.connects++;
        if (receive_max > 0) /* MQTT 5: the broker's limit is ours too (gw_pubq.h) */
            eds_log_info("mqtt: broker receive maximum %d: at most %zu publishes outstanding",
                         receive_max, gw_pubq_set_receive_maximum(&p->q, receive_max));
        push_control_locked(p, GW_PUB_CONNECTED, 0);
        if (p->restoring && !session_present) {
            /* The broker lost the session (killed before it saved it, no persistence, a new
             * broker): the flows in flight are gone with it, and Paho dropped its copies. */
            eds_log_warning("mqtt: the broker had lost the gateway's session: what was in flight "
                            "is published again (at least once)");
            restore_done_locked(p, false);
        } else if (p->restoring && gw_pubstore_count(p->store) == 0) {
            restore_done_locked(p, true);
        }
        pthread_cond_broadcast(&p->cond);
    }
    unlock(p);
}

static void on_connect_success(void *context, MQTTAsync_successData *response)
{
    connected(context, response && response->alt.connect.sessionPresent, 0);
}

static void on_connect_success5(void *context, MQTTAsync_successData5 *response)
{
    connected(context, response && response->alt.connect.sessionPresent,
              gw_paho_receive_maximum(response ? &response->properties : NULL));
}

static void on_connect_failure(void *context, MQTTAsync_failureData *response)
{
    conn_ctx *c = context;
    gw_publisher *p = c->p;
    int code = response ? response->code : 0;
    eds_log_warning("mqtt: connecting to %s failed: %s (code %d)", p->cfg.uri,
                    gw_paho_connect_failure_text(code, response ? response->message : NULL), code);
    lock(p);
    if (c->gen == p->gen && p->state == CONN_CONNECTING) {
        p->state = CONN_DOWN;
        pthread_cond_broadcast(&p->cond);
    }
    unlock(p);
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
    conn_ctx *c = context;
    gw_publisher *p = c->p;
    size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    size_t len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    char *buf = NULL;

    lock(p);
    bool room = gw_pubq_message_room(&p->q);
    if (!room)
        p->stats.messages_dropped++;
    unlock(p);
    if (room) {
        gw_pubq_event ev = {.topic_len = tlen,
                            .len = len,
                            .qos = m->qos,
                            .retained = m->retained != 0,
                            .expiry_s = -1};
        buf = gw_paho_message_copy(topic, tlen, m, &ev);
        lock(p);
        /* Only this (Paho receive) thread adds messages, so the room is still there. */
        if (buf && gw_pubq_push_message(&p->q, &ev)) {
            signal_locked(p);
            p->stats.messages++;
        } else {
            free(buf);
            p->stats.messages_dropped++;
        }
        unlock(p);
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1; /* consumed (or dropped and counted); never let Paho queue it */
}

/* Completion of the offline-status publish and the DISCONNECT on shutdown. */
static void on_graceful_done(void *context, MQTTAsync_successData *response)
{
    (void)response;
    gw_publisher *p = context;
    lock(p);
    p->offline_done++;
    pthread_cond_broadcast(&p->cond);
    unlock(p);
}

static void on_graceful_failed(void *context, MQTTAsync_failureData *response)
{
    (void)response;
    on_graceful_done(context, NULL);
}

/* At MQTT 5 Paho calls back with its version 5 structures: the same callbacks. */
GW_PAHO5_SUCCESS(on_publish_success5, on_publish_success)
GW_PAHO5_FAILURE(on_publish_failure5, on_publish_failure)
GW_PAHO5_FAILURE(on_connect_failure5, on_connect_failure)
GW_PAHO5_SUCCESS(on_graceful_done5, on_graceful_done)
GW_PAHO5_FAILURE(on_graceful_failed5, on_graceful_failed)

/* Persistent mode: the store's publishes are all confirmed (ok), or never will be (the
 * broker had lost the session and Paho cleared the store, or Paho does not resend them):
 * every publish outstanding from the previous client is settled in call order, DONE or
 * FAILED (then the loop resends it: at least once). */
static void restore_done_locked(gw_publisher *p, bool ok)
{
    p->restoring = false;
    while (gw_pubq_oldest(&p->q) != GW_PUBQ_NIL)
        report_locked(p, gw_pubq_oldest(&p->q), ok);
    if (p->announce_restored) {
        p->announce_restored = false;
        push_control_locked(p, GW_PUB_RESTORED, ok ? 0 : 1);
        if (ok)
            eds_log_notice("mqtt: the publishes restored from the session store are confirmed");
    }
    pthread_cond_broadcast(&p->cond);
}

/* The store ran empty (a remove on a Paho thread): restored publishes are all confirmed.
 * Only once connected: when the broker no longer has the session (sessionPresent 0), Paho
 * empties the store while handling CONNACK, before on_connect_success says so. */
static void on_store_empty(void *ctx)
{
    gw_publisher *p = ctx;
    lock(p);
    if (p->restoring && p->state == CONN_UP)
        restore_done_locked(p, true);
    unlock(p);
}

/* Persistent mode, connected and still restoring: if Paho has nothing pending for
 * the store's entries (keys it does not restore), waiting longer cannot help. */
static void check_restore_stuck(gw_publisher *p, conn_ctx *c, int *idle_checks, size_t *last_left)
{
    bool pending = gw_paho_client_pending(c->client);
    size_t left = gw_pubstore_count(p->store);
    /* Stuck: nothing pending in Paho and the store unchanged for RESTORE_STUCK_S checks. */
    *idle_checks = pending || left != *last_left ? 0 : *idle_checks + 1;
    *last_left = left;
    if (*idle_checks < RESTORE_STUCK_S)
        return;
    lock(p);
    if (p->restoring) {
        eds_log_warning("mqtt: %zu entries of the session store are not resent by Paho; not "
                        "waiting for them (what was in flight is published again)",
                        left);
        restore_done_locked(p, false);
    }
    unlock(p);
}

/* ---- the connection thread -------------------------------------------------------------- */

static conn_ctx *client_new(gw_publisher *p)
{
    conn_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->p = p;
    eds_error err;
    eds_error_clear(&err);
    if (!p->store && gw_paho_mem_open(&c->mem, p->cfg.max_inflight * 2 + 16, &err) != EDS_OK) {
        eds_log_error("mqtt: %s", err.msg);
        free(c);
        return NULL;
    }
    if (gw_paho_client_create(&p->cfg, p->store ? &p->paho_store.paho : &c->mem.paho, !p->store, c,
                              on_connection_lost, on_message, &c->client) != EDS_OK) {
        gw_paho_mem_close(&c->mem);
        free(c);
        return NULL;
    }
    return c;
}

static int client_connect(gw_publisher *p, conn_ctx *c)
{
    return gw_paho_client_connect(c->client, &p->cfg, p->store != NULL, c, on_connect_success,
                                  on_connect_failure, on_connect_success5, on_connect_failure5);
}

/* Publishes the offline status (a clean DISCONNECT suppresses the will) and
 * disconnects, each bounded by GRACEFUL_TIMEOUT_MS. p->lock held on entry and exit. */
static void graceful_disconnect_locked(gw_publisher *p, conn_ctx *c)
{
    int expected = 0;
    p->offline_done = 0;
    bool up = p->state == CONN_UP;
    unlock(p);
    if (up && p->cfg.will_topic && p->cfg.will_payload) {
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        GW_PAHO_CALLBACKS(ro, &p->cfg, on_graceful_done, on_graceful_failed, on_graceful_done5,
                          on_graceful_failed5);
        ro.context = p;
        if (MQTTAsync_send(c->client, p->cfg.will_topic, (int)strlen(p->cfg.will_payload),
                           p->cfg.will_payload, 1, 1, &ro) == MQTTASYNC_SUCCESS)
            expected = 1;
    }
    lock(p);
    struct timespec dl = eds_deadline_in(GRACEFUL_TIMEOUT_MS);
    while (p->offline_done < expected && p->state == CONN_UP)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &dl) == ETIMEDOUT)
            break;
    up = p->state == CONN_UP;
    unlock(p);
    if (up) {
        MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
        d.timeout = GRACEFUL_TIMEOUT_MS;
        GW_PAHO_CALLBACKS(d, &p->cfg, on_graceful_done, on_graceful_failed, on_graceful_done5,
                          on_graceful_failed5);
        d.context = p;
        if (MQTTAsync_disconnect(c->client, &d) == MQTTASYNC_SUCCESS)
            expected++;
    }
    lock(p);
    dl = eds_deadline_in(GRACEFUL_TIMEOUT_MS + 500);
    while (p->offline_done < expected)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &dl) == ETIMEDOUT)
            break;
}

/* Destroys c: Paho drops its queue and calls back for queued publishes (ignored:
 * their slots were released). Takes handle_lock so no publish is using it. */
static void client_destroy(gw_publisher *p, conn_ctx *c)
{
    pthread_mutex_lock(&p->handle_lock);
    lock(p);
    if (p->conn == c)
        p->conn = NULL;
    unlock(p);
    MQTTAsync_destroy(&c->client);
    pthread_mutex_unlock(&p->handle_lock);
    gw_paho_mem_close(&c->mem);
    free(c);
}

static void *supervise(void *arg)
{
    gw_publisher *p = arg;
    conn_ctx *old = NULL; /* previous client, destroyed after the next one exists */
    int delay_ms = 0;
    eds_backoff bo;
    eds_backoff_init(&bo, (uint32_t)p->cfg.reconnect_min_ms, (uint32_t)p->cfg.reconnect_max_ms, 1);
    bo.jitter = false; /* one client per broker: nobody to spread out from */

    lock(p);
    while (!p->stopping) {
        if (delay_ms > 0) {
            struct timespec dl = eds_deadline_in(delay_ms);
            while (!p->stopping && pthread_cond_timedwait(&p->cond, &p->lock, &dl) != ETIMEDOUT)
                ;
        }
        /* Leave room for this attempt's CONNECTED + DISCONNECTED. */
        while (!p->stopping && p->q.ev_control > CONTROL_MAX - 2)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stopping)
            break;
        unlock(p);

        conn_ctx *c;
        if (p->store) {
            /* One session, but a new Paho client per connection all the same: reconnecting
             * a cleansession-0 client, Paho 1.3 resent a PUBLISH whose topic its send
             * thread had freed (ASan, test_gateway_exactly_once). The old client goes
             * first, so that only one restores from the store; the new one resends what
             * the store holds, as after a crash, and restore_done_locked() settles the
             * old client's outstanding publishes once that is confirmed. */
            if (old) {
                lock(p);
                p->discarding = true;
                unlock(p);
                client_destroy(p, old);
                old = NULL;
                lock(p);
                p->discarding = false;
                unlock(p);
            }
            c = client_new(p);
            lock(p);
            if (c && gw_pubstore_count(p->store) > 0)
                p->restoring = true;
            else if (c && gw_pubq_oldest(&p->q) != GW_PUBQ_NIL)
                restore_done_locked(p, true); /* nothing unconfirmed left (QoS 0 only) */
            unlock(p);
        } else {
            /* Creating the next client before destroying the previous keeps Paho's
             * threads running (they stop, taking up to a second, when no client is left). */
            c = client_new(p);
            if (old) {
                client_destroy(p, old);
                old = NULL;
            }
        }
        lock(p);
        if (!c) {
            p->stats.connect_failures++;
            delay_ms = (int)eds_backoff_next(&bo);
            continue;
        }
        c->gen = ++p->gen;
        p->conn = c;
        p->state = CONN_CONNECTING;
        unlock(p);

        int rc = client_connect(p, c);

        lock(p);
        if (rc != MQTTASYNC_SUCCESS) {
            eds_log_warning("mqtt: connect to %s not started (paho code %d)", p->cfg.uri, rc);
            p->state = CONN_DOWN;
        }
        /* Paho reports the attempt within connectTimeout; the extra bound only
         * guards against a lost callback. */
        struct timespec dl = eds_deadline_in(p->cfg.connect_timeout_s * 1000 + 5000);
        while (!p->stopping && p->state == CONN_CONNECTING)
            if (pthread_cond_timedwait(&p->cond, &p->lock, &dl) == ETIMEDOUT)
                p->state = CONN_DOWN;
        bool was_up = p->state == CONN_UP;
        uint64_t up_since = eds_monotonic_ms();
        int idle_checks = 0;
        size_t last_left = 0;
        while (!p->stopping && p->state == CONN_UP) {
            struct timespec tick = eds_deadline_in(1000); /* the checks, once a second */
            bool timed_out = pthread_cond_timedwait(&p->cond, &p->lock, &tick) == ETIMEDOUT;
            /* Deadline (a broker that answers pings only, a stuck Paho): as if lost. */
            int64_t age = gw_pubq_overdue(&p->q, (int64_t)eds_monotonic_ms(), (int64_t)up_since,
                                          p->cfg.publish_timeout_ms);
            if (age >= 0 && p->state == CONN_UP) {
                eds_log_warning("mqtt: no confirmation from the broker for %.1f s: reconnecting "
                                "(broker_publish_timeout)",
                                (double)age / 1000.0);
                p->stats.publish_timeouts++;
                connection_down_locked(p);
            } else if (timed_out && p->restoring && p->state == CONN_UP) {
                unlock(p);
                check_restore_stuck(p, c, &idle_checks, &last_left);
                lock(p);
            }
        }
        if (p->stopping) {
            graceful_disconnect_locked(p, c);
            old = c;
            break;
        }
        if (was_up && eds_monotonic_ms() - up_since >= STABLE_MS) {
            delay_ms = 0; /* a working connection was lost: retry at once */
            eds_backoff_reset(&bo);
        } else {
            /* Refused, or dropped right after CONNACK (e.g. another client with our
             * client id keeps taking over): back off, do not spin. */
            if (!was_up)
                p->stats.connect_failures++;
            delay_ms = (int)eds_backoff_next(&bo);
        }
        p->state = CONN_IDLE;
        old = c;
    }
    /* Stopping: whatever was outstanding is dropped with the client. */
    p->state = CONN_IDLE;
    unlock(p);
    if (old)
        client_destroy(p, old);
    return NULL;
}

/* ---- public API ------------------------------------------------------------------------- */

int gw_publisher_create(const gw_publisher_config *cfg, gw_publisher **out, eds_error *err)
{
    *out = NULL;
    gw_pubconf pc;
    int rc = gw_pubconf_make(cfg, &pc, err);
    if (rc != EDS_OK)
        return rc;
    gw_publisher *p = calloc(1, sizeof(*p));
    if (!p) {
        gw_pubconf_free(&pc);
        return eds_error_set(err, EDS_ERR_NOMEM, "mqtt: out of memory");
    }
    p->cfg = pc;
    p->efd = -1;
    eds_cond_init_monotonic(&p->cond);
    eds_cond_init_monotonic(&p->idle);
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->handle_lock, NULL);
    p->slot_ctxs = calloc(p->cfg.max_inflight, sizeof(*p->slot_ctxs));
    if (!p->slot_ctxs ||
        gw_pubq_init(&p->q, p->cfg.max_inflight, p->cfg.max_messages, CONTROL_MAX + 1) != EDS_OK) {
        gw_publisher_destroy(p);
        return eds_error_set(err, EDS_ERR_NOMEM, "mqtt: out of memory");
    }
    for (size_t i = 0; i < p->cfg.max_inflight; i++)
        p->slot_ctxs[i] = (slot_ctx){.p = p, .idx = (uint32_t)i};

    if (!cfg->persistent && cfg->session_dir)
        gw_paho_store_discard_logged(cfg->session_dir);
    if (cfg->persistent) {
        rc = gw_pubstore_open(cfg->session_dir, &p->store, err);
        if (rc != EDS_OK) {
            gw_publisher_destroy(p);
            return rc;
        }
        p->restoring = gw_pubstore_count(p->store) > 0;
        p->announce_restored = p->restoring;
        if (p->restoring)
            eds_log_notice("mqtt: %zu entries in the session store: resending what was in "
                           "flight before the gateway stopped",
                           gw_pubstore_count(p->store));
        gw_pubstore_on_empty(p->store, on_store_empty, p);
        gw_paho_store_init(&p->paho_store, p->store);
    }

    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
        int e = errno;
        gw_publisher_destroy(p);
        return eds_error_set(err, EDS_ERR_IO, "mqtt: eventfd: %s", strerror(e));
    }
    *out = p;
    return EDS_OK;
}

void gw_publisher_destroy(gw_publisher *p)
{
    if (!p)
        return;
    if (p->started) {
        lock(p);
        p->stopping = true;
        pthread_cond_broadcast(&p->cond);
        unlock(p);
        pthread_join(p->thread, NULL);
    }
    gw_pubq_free(&p->q);
    gw_paho_store_free(&p->paho_store);
    gw_pubstore_close(p->store); /* after the client (and Paho's use of it) is gone */
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->handle_lock);
    pthread_cond_destroy(&p->cond);
    pthread_cond_destroy(&p->idle);
    if (p->efd >= 0)
        close(p->efd);
    free(p->slot_ctxs);
    gw_pubconf_free(&p->cfg);
    free(p);
}

int gw_publisher_fd(const gw_publisher *p)
{
    return p->efd;
}

int gw_publisher_start(gw_publisher *p)
{
    if (p->started)
        return EDS_ERR_INVAL;
    int rc = pthread_create(&p->thread, NULL, supervise, p);
    if (rc != 0)
        return EDS_ERR_IO;
    p->started = true;
    return EDS_OK;
}

bool gw_publisher_connected(const gw_publisher *p)
{
    lock(p);
    bool up = p->state == CONN_UP;
    unlock(p);
    return up;
}

size_t gw_publisher_inflight(const gw_publisher *p)
{
    lock(p);
    size_t n = p->q.inflight;
    unlock(p);
    return n;
}

bool gw_publisher_restoring(const gw_publisher *p)
{
    lock(p);
    bool r = p->restoring;
    unlock(p);
    return r;
}

void gw_publisher_each_mark(gw_publisher *p, void (*fn)(void *ctx, const gw_mark *mark), void *ctx)
{
    if (p->store)
        gw_pubstore_each_mark(p->store, fn, ctx);
}

int gw_publisher_forget_marks(gw_publisher *p, eds_error *err)
{
    return p->store ? gw_pubstore_forget_marks(p->store, err) : EDS_OK;
}

int gw_publisher_publish(gw_publisher *p, const char *topic, const void *payload, size_t len,
                         int qos, bool retain, uint64_t token)
{
    return gw_publisher_publish_props(p, topic, payload, len, qos, retain, token, NULL, NULL);
}

int gw_publisher_publish_props(gw_publisher *p, const char *topic, const void *payload, size_t len,
                               int qos, bool retain, uint64_t token, const gw_mark *mark,
                               const gw_pub_props *props)
{
    if (!topic || !topic[0] || (len && !payload) || len > INT_MAX || qos < 0 || qos > 2)
        return EDS_ERR_INVAL;
    /* A wildcard in a PUBLISH topic is a protocol violation: the broker would drop the
     * connection, the publish would FAIL and be resent, forever. */
    if (strpbrk(topic, "+#") || strlen(topic) > 65535)
        return EDS_ERR_INVAL;
    if (mark && p->store && gw_pubstore_failed(p->store))
        return EDS_ERR_IO; /* Paho would send it without its mark in the file */
    pthread_mutex_lock(&p->handle_lock);
    lock(p);
    if (p->state != CONN_UP || !p->conn || p->restoring) {
        unlock(p);
        pthread_mutex_unlock(&p->handle_lock);
        return EDS_ERR_BROKER;
    }
    uint32_t idx = gw_pubq_begin(&p->q, token);
    if (idx == GW_PUBQ_NIL) {
        unlock(p);
        pthread_mutex_unlock(&p->handle_lock);
        return EDS_ERR_FULL;
    }
    MQTTAsync client = p->conn->client;
    unlock(p);

    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    GW_PAHO_CALLBACKS(ro, &p->cfg, on_publish_success, on_publish_failure, on_publish_success5,
                      on_publish_failure5);
    ro.context = &p->slot_ctxs[idx];
    if (props && p->cfg.mqtt_version == 5)
        gw_paho_props(&ro.properties, &p->propbuf, props);
    /* Paho puts the queued command into the store inside MQTTAsync_send, on this thread:
     * the mark goes into the same log record. */
    if (p->store && mark)
        gw_paho_store_expect_mark(&p->paho_store, mark);
    int prc = MQTTAsync_send(client, topic, (int)len, payload, qos, retain ? 1 : 0, &ro);
    if (p->store && mark)
        gw_paho_store_expect_mark(&p->paho_store, NULL);

    int rc = EDS_OK;
    lock(p);
    /* Completed (or failed with its connection) before MQTTAsync_send returned: the event
     * is queued, so the call counts as accepted whatever Paho returned. */
    if (!gw_pubq_end(&p->q, idx, prc == MQTTASYNC_SUCCESS, (int64_t)eds_monotonic_ms())) {
        if (p->q.inflight == 0)
            pthread_cond_broadcast(&p->idle);
        rc = prc == MQTTASYNC_BAD_UTF8_STRING ? EDS_ERR_INVAL : EDS_ERR_BROKER;
    }
    if (rc == EDS_OK)
        p->stats.published++;
    unlock(p);
    pthread_mutex_unlock(&p->handle_lock);
    return rc;
}

int gw_publisher_dispatch(gw_publisher *p, void (*fn)(void *ctx, const gw_pub_event *ev), void *ctx)
{
    uint64_t v;
    lock(p);
    p->signalled = false;
    /* EAGAIN when nothing was written: fine, the counter is reset either way. */
    if (read(p->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        eds_log_debug("mqtt: eventfd read: %s", strerror(errno));
    size_t n = p->q.ev_count;
    unlock(p);

    /* Pop in batches (one lock per batch, not per event); fn runs unlocked so it may
     * publish. A popped completion no longer counts against max_inflight. */
    gw_pubq_event batch[64];
    for (size_t done = 0; done < n;) {
        lock(p);
        size_t control = p->q.ev_control;
        size_t k = gw_pubq_pop(&p->q, batch, n - done < 64 ? n - done : 64);
        if (p->q.ev_control != control)
            pthread_cond_broadcast(&p->cond); /* the connection thread may wait for room */
        unlock(p);
        if (k == 0)
            break;
        for (size_t i = 0; i < k; i++) {
            const gw_pubq_event *e = &batch[i];
            gw_pub_event ev = {.type = e->type, .token = e->token, .qos = e->qos};
            if (e->type == GW_PUB_MESSAGE) {
                ev.topic = e->buf;
                ev.payload = e->buf + e->topic_len + 1;
                ev.len = e->len;
                ev.retained = e->retained;
                ev.expiry_s = e->expiry_s;
                ev.response_topic = e->rt_len ? ev.payload + e->len + 1 : NULL;
                ev.corr = ev.payload + e->len + 1 + e->rt_len + 1;
                ev.corr_len = e->corr_len;
            }
            fn(ctx, &ev);
            free(e->buf);
        }
        done += k;
    }
    return (int)(n > INT_MAX ? INT_MAX : n);
}

int gw_publisher_flush(gw_publisher *p, int timeout_ms)
{
    struct timespec dl = eds_deadline_in(timeout_ms > 0 ? timeout_ms : 0);
    int rc = EDS_OK;
    lock(p);
    while (p->q.inflight > 0) {
        if (pthread_cond_timedwait(&p->idle, &p->lock, &dl) == ETIMEDOUT) {
            rc = p->q.inflight > 0 ? EDS_ERR_TIMEOUT : EDS_OK;
            break;
        }
    }
    unlock(p);
    return rc;
}

void gw_publisher_get_stats(const gw_publisher *p, gw_publisher_stats *out)
{
    lock(p);
    *out = p->stats;
    unlock(p);
}
