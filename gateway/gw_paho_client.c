/*
 * gw_paho_client.c - Paho create and connect options for the publisher. See
 * gw_paho_client.h; why each option is set is said next to it.
 */
#include "gw_paho_client.h"

#include "eds_log.h"

/* Paho 1.3.12 leaks the copies MQTTAsync_send() makes of a publish that was in flight
 * when its connection dropped (seen under LeakSanitizer in test_publisher's connection-loss
 * test; allocated inside MQTTAsync_send, not ours to free). This tells LSan so in every
 * binary that links the publisher. Paho has no frame pointers, so the match needs full
 * unwinding: run with ASAN_OPTIONS=fast_unwind_on_malloc=0 (test_publisher sets it in
 * __asan_default_options). Matching the whole Paho module instead would also hide a leak
 * of our own on a Paho thread (on_message's buffer). Weak: a program may define its own. */
const char *__lsan_default_suppressions(void);
__attribute__((weak, used)) const char *__lsan_default_suppressions(void)
{
    return "leak:^MQTTAsync_send$\n";
}

int gw_paho_client_create(const gw_pubconf *cfg, MQTTClient_persistence *persistence,
                          bool persist_qos0, void *ctx, MQTTAsync_connectionLost *lost,
                          MQTTAsync_messageArrived *message, MQTTAsync *out)
{
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = 0;
    /* Paho's bound on queued commands also applies while connected (default 100);
     * ours is max_inflight, plus the online status. */
    co.maxBufferedMessages = (int)cfg->max_inflight + 8;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    co.persistQoS0 = persist_qos0 ? 1 : 0;
    int rc = MQTTAsync_createWithOptions(
        out, cfg->uri, cfg->client_id,
        persistence ? MQTTCLIENT_PERSISTENCE_USER : MQTTCLIENT_PERSISTENCE_NONE, persistence, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        eds_log_error("mqtt: creating a client for %s failed (paho code %d)", cfg->uri, rc);
        return EDS_ERR_BROKER;
    }
    rc = MQTTAsync_setCallbacks(*out, ctx, lost, message, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
        eds_log_error("mqtt: setting the client's callbacks failed (paho code %d)", rc);
        MQTTAsync_destroy(out);
        return EDS_ERR_BROKER;
    }
    return EDS_OK;
}

/* Paho calls this (on its thread) with OpenSSL's own reason when TLS to the
 * broker fails, e.g. "certificate verify failed"; Paho itself only reports
 * "TCP/TLS connect failure". eds_log is thread-safe. */
static int on_ssl_error(const char *str, size_t len, void *u)
{
    (void)u;
    while (len > 0 && (str[len - 1] == '\n' || str[len - 1] == '\r'))
        len--;
    eds_log_warning("mqtt: TLS to the broker: %.*s", (int)(len > 400 ? 400 : len), str);
    return 0;
}

int gw_paho_client_connect(MQTTAsync client, const gw_pubconf *cfg, bool persistent, void *ctx,
                           MQTTAsync_onSuccess *ok, MQTTAsync_onFailure *failed)
{
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;

    o.keepAliveInterval = cfg->keepalive;
    o.cleansession = persistent ? 0 : 1;
    /* Paho's default of 10 would hold most of our window in its command queue, where a
     * connection loss does not fail them. Room for ours + the online status + SUBSCRIBE. */
    o.maxInflight = (int)cfg->max_inflight + 4;
    if (persistent && cfg->receive_maximum > 0 && cfg->receive_maximum < o.maxInflight)
        o.maxInflight = cfg->receive_maximum;
    o.connectTimeout = cfg->connect_timeout_s;
    o.retryInterval = 0;
    o.automaticReconnect = 0;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    o.username = cfg->username;
    o.password = cfg->password;
    o.onSuccess = ok;
    o.onFailure = failed;
    o.context = ctx;
    if (cfg->will_topic && cfg->will_payload) {
        will.topicName = cfg->will_topic;
        will.message = cfg->will_payload;
        will.retained = 1;
        will.qos = 1;
        o.will = &will;
    }
    if (cfg->cafile) {
        ssl.trustStore = cfg->cafile;
        ssl.keyStore = cfg->certfile;
        ssl.privateKey = cfg->keyfile;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        if (ssl.struct_version >= 3) {
            ssl.ssl_error_cb = on_ssl_error;
            ssl.ssl_error_context = NULL;
        }
        o.ssl = &ssl;
    }
    return MQTTAsync_connect(client, &o);
}
