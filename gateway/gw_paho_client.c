/*
 * gw_paho_client.c - Paho create and connect options for the publisher. See
 * gw_paho_client.h; why each option is set is said next to it.
 */
#include "gw_paho_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eds_log.h"
#include "eds_proto.h"

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
    co.MQTTVersion = cfg->mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
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
                           MQTTAsync_onSuccess *ok, MQTTAsync_onFailure *failed,
                           MQTTAsync_onSuccess5 *ok5, MQTTAsync_onFailure5 *failed5)
{
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    MQTTProperties props = MQTTProperties_initializer;
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
    o.username = cfg->username;
    o.password = cfg->password;
    o.context = ctx;
    if (cfg->mqtt_version == 5) {
        o.MQTTVersion = MQTTVERSION_5;
        o.cleansession = 0;
        o.cleanstart = persistent ? 0 : 1;
        /* At 5 a session ends with the connection unless it has an expiry: a persistent
         * one must outlive reconnects and gateway restarts (0xFFFFFFFF: never expires). */
        MQTTProperty expiry = {.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL,
                               .value.integer4 = persistent ? 0xFFFFFFFFu : 0};
        MQTTProperties_add(&props, &expiry);
        o.connectProperties = &props;
    } else {
        o.MQTTVersion = MQTTVERSION_3_1_1;
    }
    GW_PAHO_CALLBACKS(o, cfg, ok, failed, ok5, failed5);
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
    int rc = MQTTAsync_connect(client, &o); /* Paho copies the properties */
    MQTTProperties_free(&props);
    return rc;
}

/* Appends a property to out, whose array is the caller's (gw_paho_props): nothing is
 * copied or allocated here. Paho's MQTTProperties_add would copy both strings through
 * Paho's tracked heap, and MQTTAsync_send copies them again (measured in
 * docs/performance.md: a quarter of the gateway's instructions per record at MQTT 5). */
static void add_prop(MQTTProperties *out, const MQTTProperty *p, int len)
{
    out->array[out->count++] = *p;
    out->length += 1 + len; /* identifier byte + the value (MQTTProperties_add's rule) */
}

static void add_user(MQTTProperties *out, const char *name, const char *value)
{
    MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_USER_PROPERTY};
    p.value.data.data = (char *)name;
    p.value.data.len = (int)strlen(name);
    p.value.value.data = (char *)value;
    p.value.value.len = (int)strlen(value);
    add_prop(out, &p, 2 + p.value.data.len + 2 + p.value.value.len);
}

void gw_paho_props(MQTTProperties *out, gw_paho_propbuf *buf, const gw_pub_props *props)
{
    *out = (MQTTProperties)MQTTProperties_initializer;
    out->array = buf->prop;
    out->max_count = (int)(sizeof(buf->prop) / sizeof(buf->prop[0]));
    if (props->device) {
        eds_fmt_u64(buf->seq, sizeof(buf->seq), props->seq);
        /* RFC 3339 UTC with milliseconds; printf-free, the date once per second */
        int64_t ms = props->received_ms > 0 ? props->received_ms : 0;
        if (buf->at_sec != ms / 1000 + 1) {
            time_t t = (time_t)(ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            if (strftime(buf->at, sizeof(buf->at), "%Y-%m-%dT%H:%M:%S", &tm) != 19)
                memcpy(buf->at, "1970-01-01T00:00:00", 19); /* year past 9999: cannot be */
            buf->at_sec = ms / 1000 + 1;
        }
        int frac = (int)(ms % 1000);
        char *f = buf->at + 19;
        f[0] = '.';
        f[1] = (char)('0' + frac / 100);
        f[2] = (char)('0' + frac / 10 % 10);
        f[3] = (char)('0' + frac % 10);
        f[4] = 'Z';
        f[5] = '\0';
        add_user(out, "device", props->device);
        add_user(out, "stream", props->stream ? props->stream : "0");
        add_user(out, "seq", buf->seq);
        add_user(out, "received_at", buf->at);
    }
    if (props->corr && props->corr_len) {
        MQTTProperty p = {.identifier = MQTTPROPERTY_CODE_CORRELATION_DATA};
        p.value.data.data = (char *)props->corr;
        p.value.data.len = (int)props->corr_len;
        add_prop(out, &p, 2 + p.value.data.len);
    }
}

int gw_paho_receive_maximum(const MQTTProperties *props)
{
    if (props &&
        MQTTProperties_hasProperty((MQTTProperties *)props, MQTTPROPERTY_CODE_RECEIVE_MAXIMUM))
        return (int)MQTTProperties_getNumericValue((MQTTProperties *)props,
                                                   MQTTPROPERTY_CODE_RECEIVE_MAXIMUM);
    return 65535;
}

/* The bytes of a binary or string property of m, or NULL when absent. */
static const MQTTLenString *property(const MQTTAsync_message *m, enum MQTTPropertyCodes code)
{
    for (int i = 0; i < m->properties.count; i++)
        if (m->properties.array[i].identifier == code)
            return &m->properties.array[i].value.data;
    return NULL;
}

char *gw_paho_message_copy(const char *topic, size_t tlen, const MQTTAsync_message *m,
                           gw_pubq_event *ev)
{
    size_t len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;
    const MQTTLenString *rt = property(m, MQTTPROPERTY_CODE_RESPONSE_TOPIC);
    const MQTTLenString *corr = property(m, MQTTPROPERTY_CODE_CORRELATION_DATA);
    ev->rt_len = rt && rt->len > 0 ? (size_t)rt->len : 0;
    ev->corr_len = corr && corr->len > 0 ? (size_t)corr->len : 0;
    ev->expiry_s = -1;
    for (int i = 0; i < m->properties.count; i++)
        if (m->properties.array[i].identifier == MQTTPROPERTY_CODE_MESSAGE_EXPIRY_INTERVAL)
            ev->expiry_s = m->properties.array[i].value.integer4;
    char *buf = malloc(tlen + len + ev->rt_len + ev->corr_len + 4);
    if (!buf)
        return NULL;
    char *p = buf;
    memcpy(p, topic, tlen);
    p[tlen] = '\0';
    p += tlen + 1;
    if (len)
        memcpy(p, m->payload, len);
    p[len] = '\0';
    p += len + 1;
    if (ev->rt_len)
        memcpy(p, rt->data, ev->rt_len);
    p[ev->rt_len] = '\0';
    p += ev->rt_len + 1;
    if (ev->corr_len)
        memcpy(p, corr->data, ev->corr_len);
    p[ev->corr_len] = '\0';
    ev->buf = buf;
    return buf;
}

const char *gw_paho_connect_failure_text(int code, const char *message)
{
    static const char *const connack[] = {NULL,
                                          "unacceptable protocol version",
                                          "client id rejected",
                                          "server unavailable",
                                          "bad user name or password",
                                          "not authorized"};
    if (code >= 1 && code <= 5)
        return connack[code];
    return message ? message : "connection failed";
}

MQTTAsync_failureData gw_paho_failure_of(const MQTTAsync_failureData5 *r)
{
    MQTTAsync_failureData f = {0};
    if (r) {
        f.token = r->token;
        f.code = r->code ? r->code : (int)r->reasonCode;
        f.message = r->message              ? r->message
                    : r->reasonCode >= 0x80 ? MQTTReasonCode_toString(r->reasonCode)
                                            : NULL;
    }
    return f;
}

bool gw_paho_client_pending(MQTTAsync client)
{
    MQTTAsync_token *tokens = NULL;
    bool pending = MQTTAsync_getPendingTokens(client, &tokens) == MQTTASYNC_SUCCESS && tokens &&
                   tokens[0] != -1;
    MQTTAsync_free(tokens);
    return pending;
}

void gw_paho_client_announce(MQTTAsync client, const gw_pubconf *cfg, MQTTAsync_responseOptions *ro)
{
    if (cfg->subscribe_topic) {
        int rc = MQTTAsync_subscribe(client, cfg->subscribe_topic, 1, ro);
        if (rc != MQTTASYNC_SUCCESS)
            eds_log_warning("mqtt: subscribing to %s failed (paho code %d)", cfg->subscribe_topic,
                            rc);
    }
    if (cfg->will_topic && cfg->online_payload) {
        int rc = MQTTAsync_send(client, cfg->will_topic, (int)strlen(cfg->online_payload),
                                cfg->online_payload, 1, 1, NULL);
        if (rc != MQTTASYNC_SUCCESS)
            eds_log_warning("mqtt: publishing online status failed (paho code %d)", rc);
    }
}
