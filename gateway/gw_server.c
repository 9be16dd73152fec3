/*
 * gw_server.c - the glue: creates the modules, runs the loop, and routes
 * each event to the module whose job it is (listeners and connections to
 * gw_conn/gw_session, publisher events to gw_relay/gw_downlink, signals to
 * reload or stop), then ends each batch in the order the delivery rule
 * needs: publish, journal, then the acks the journal covers, then closes.
 * Also owns the journal (gw_journal: acks wait while state_dir cannot be
 * written), the gateway's retained status, the counters on the stats topic, and
 * the files a reload swaps (schemas, passwords, certificates).
 */
#include "gw_server.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "eds_log.h"
#include "eds_passwd.h"
#include "eds_tls.h"
#include "gw_conn.h"
#include "gw_downlink.h"
#include "gw_goodfile.h"
#include "gw_guard.h"
#include "gw_journal.h"
#include "gw_loop.h"
#include "gw_metrics.h"
#include "gw_now.h"
#include "gw_publisher.h"
#include "gw_relay.h"
#include "gw_schemas.h"
#include "gw_session.h"
#include "gw_window.h"

#define TICK_MS 200

struct gw_server {
    const gw_config *cfg;
    gw_loop *loop;
    gw_publisher *pub;
    gw_handle pub_h, sig_h, metrics_h;
    int sig_fd;
    gw_metrics *metrics; /* NULL unless metrics_listener */
    gw_listener listeners[GW_MAX_LISTENERS];
    size_t n_listeners;
    gw_window window;
    gw_guard guard;
    gw_goodfile *goodfile; /* the guard's known-good addresses on disk */
    gw_conns conns;
    gw_relay relay;
    gw_downlink downlink;
    gw_session session;
    gw_schemas *schemas;
    eds_passwd *passwd;
    eds_tls_ctx *tls_ctx;
    gw_journal journal;
    bool stopping, status_blocked, status_due;
    int64_t stop_deadline_ms, next_stats_ms, started_ms, next_ip_sweep_ms, next_expiry_ms;
    char since[32];             /* the gateway's start, for its retained status */
    time_t broker_since;        /* the broker connection's start */
    uint64_t broker_reconnects; /* connections to the broker after the first */
    gw_stats st;
};

/* ---- journal ------------------------------------------------------------ */

/* With qos 2, every record handed to Paho is in the session store with a mark until
 * the journal covers it. A record whose PUBCOMP came just before a crash is gone from
 * the store but not journaled: the marks raise last_seq over it, so the agent's resend
 * is answered as a duplicate instead of being published twice. Journal first, then
 * forget the marks. */
static void apply_session_marks(gw_server *s, bool confirmed)
{
    gw_relay_apply_marks(&s->relay, confirmed);
    if (!gw_journal_write(&s->journal, gw_now_ms(), false))
        return;                   /* the marks stay in the store until the journal has them */
    gw_journal_sync(&s->journal); /* durable before the marks are gone */
    eds_error err;
    eds_error_clear(&err);
    if (gw_publisher_forget_marks(s->pub, &err) != EDS_OK)
        eds_log_error("mqtt session store: %s", err.msg);
}

/* ---- broker events ------------------------------------------------------ */

static void on_pub_event(void *ctx, const gw_pub_event *ev)
{
    gw_server *s = ctx;
    gw_device *d;
    switch (ev->type) {
    case GW_PUB_DONE:
    case GW_PUB_FAILED:
        if (gw_downlink_published(&s->downlink, ev->token, ev->type == GW_PUB_DONE))
            break;
        d = gw_relay_result(&s->relay, ev->token, ev->type == GW_PUB_DONE);
        if (d)
            gw_session_progress(&s->session, d);
        break;
    case GW_PUB_CONNECTED:
        gw_relay_connected(&s->relay);
        if (s->broker_since)
            s->broker_reconnects++;
        s->broker_since = time(NULL);
        s->status_due = true; /* end_batch publishes it */
        break;
    case GW_PUB_DISCONNECTED:
        if (s->relay.broker_up)
            eds_log_warning("lost the broker; holding acks until it is back");
        s->relay.broker_up = false;
        break;
    case GW_PUB_MESSAGE:
        gw_downlink_message(&s->downlink, ev);
        break;
    case GW_PUB_RESTORED:
        apply_session_marks(s, ev->qos == 0);
        s->relay.restoring = false;
        gw_session_restored(&s->session);
        break;
    }
}

/* ---- signals, timers, stats --------------------------------------------- */

static void reload(gw_server *s)
{
    eds_error err;
    eds_error_clear(&err);
    gw_schemas *ns = NULL;
    if (gw_schemas_load(s->cfg, &ns, &err) != EDS_OK) {
        eds_log_error("SIGHUP: keeping the old schemas: %s", err.msg);
    } else {
        gw_schemas_destroy(s->schemas);
        s->schemas = s->session.schemas = ns;
        s->downlink.schemas = ns;
        for (size_t i = 0; i < s->window.n_devices; i++)
            s->window.devices[i]->schema = gw_schemas_for(ns, s->window.devices[i]->id);
        eds_log_notice("SIGHUP: schemas reloaded");
    }
    if (s->tls_ctx) {
        eds_tls_server_opts o = {s->cfg->certfile, s->cfg->keyfile, s->cfg->cafile,
                                 s->cfg->require_certificate};
        eds_tls_ctx *nc = NULL;
        if (eds_tls_server_ctx_create(&o, &nc, &err) != EDS_OK) {
            eds_log_error("SIGHUP: keeping the old certificates: %s", err.msg);
        } else {
            eds_tls_ctx_destroy(s->tls_ctx); /* live connections keep their reference */
            s->tls_ctx = nc;
            eds_log_notice("SIGHUP: certificates reloaded");
        }
    }
    if (s->cfg->password_file) {
        eds_passwd *np = NULL;
        if (eds_passwd_load(s->cfg->password_file, &np, &err) != EDS_OK) {
            eds_log_error("SIGHUP: keeping the old password file: %s", err.msg);
        } else {
            eds_passwd_destroy(s->passwd);
            s->passwd = s->session.passwd = np;
            if (eds_passwd_world_readable(s->cfg->password_file))
                eds_log_warning("%s is readable by every user: chmod 600 it (or 640 with a "
                                "group)",
                                s->cfg->password_file);
            eds_log_notice("SIGHUP: password file reloaded (%zu devices)", eds_passwd_count(np));
        }
    }
}

static void begin_stop(gw_server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->stop_deadline_ms = gw_now_ms() + (int64_t)(s->cfg->shutdown_timeout * 1000);
    eds_log_notice("shutting down: finishing publishes in flight");
    for (size_t i = 0; i < s->n_listeners; i++) {
        gw_loop_del(s->loop, s->listeners[i].fd);
        close(s->listeners[i].fd);
        s->listeners[i].fd = -1;
    }
    gw_session_stop_reading(&s->session);
}

static void on_signal(gw_server *s)
{
    struct signalfd_siginfo si;
    while (read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP)
            reload(s);
        else
            begin_stop(s);
    }
}

static size_t devices_online(const gw_server *s)
{
    size_t online = 0;
    for (size_t i = 0; i < s->window.n_devices; i++)
        online += s->window.devices[i]->online;
    return online;
}

static void metrics_device(void *ctx, size_t i, gw_metrics_device *out)
{
    const gw_device *d = ((const gw_server *)ctx)->window.devices[i];
    *out = (gw_metrics_device){.id = d->id, .c = &d->ctr, .online = d->online};
}

/* A scrape of /metrics waits: render what the loop knows now (gw_metrics.h). */
static void serve_metrics(gw_server *s)
{
    if (!gw_metrics_wanted(s->metrics))
        return;
    gw_publisher_stats ps;
    gw_publisher_get_stats(s->pub, &ps);
    gw_metrics_snapshot snap = {
        .stats = &s->st,
        .uptime_s = (gw_now_ms() - s->started_ms) / 1000,
        .connections = s->conns.n,
        .devices_online = devices_online(s),
        .devices_known = s->window.n_devices,
        .pending_bytes = s->window.pending_bytes,
        .inflight = gw_publisher_inflight(s->pub),
        .broker_connected = s->relay.broker_up,
        .broker_timeouts = ps.publish_timeouts,
        .cmds_lost = ps.messages_dropped,
        .device = metrics_device,
        .ctx = s,
    };
    gw_metrics_publish(s->metrics, &snap);
}

/* metrics_listener: the HTTP thread's eventfd in the loop. */
static int open_metrics(gw_server *s, eds_error *err)
{
    int rc = gw_metrics_create(s->cfg->metrics.address, s->cfg->metrics.port, &s->metrics, err);
    if (rc != EDS_OK)
        return rc;
    s->metrics_h.kind = GW_H_METRICS;
    if (gw_loop_add(s->loop, gw_metrics_fd(s->metrics), GW_EV_READ, &s->metrics_h) != EDS_OK)
        return eds_error_set(err, EDS_ERR_IO, "metrics: cannot watch its eventfd");
    return EDS_OK;
}

static void publish_stats(gw_server *s)
{
    char topic[GW_TOPIC_MAX], body[2048];
    snprintf(topic, sizeof(topic), "%s/_gateway/stats", s->cfg->topic_prefix);
    gw_publisher_stats ps;
    gw_publisher_get_stats(s->pub, &ps);
    int head = snprintf(body, sizeof(body),
                        "{\"uptime\":%" PRId64 ",\"connections\":%zu,\"devices_online\":%zu,"
                        "\"devices_known\":%zu,",
                        (gw_now_ms() - s->started_ms) / 1000, s->conns.n, devices_online(s),
                        s->window.n_devices);
    size_t n = (size_t)head;
    size_t counters = gw_stats_json_counters(&s->st, body + n, sizeof(body) - n);
    n += counters;
    int tail =
        snprintf(body + n, sizeof(body) - n,
                 "\"cmds_held_bytes\":%zu,\"cmd_results_waiting\":%zu,\"state_dir\":\"%s\","
                 "\"pending_bytes\":%zu,"
                 "\"inflight\":%zu,\"broker\":\"%s\",\"broker_timeouts\":%" PRIu64
                 ",\"cmds_lost\":%" PRIu64 "}",
                 s->downlink.held_bytes, s->downlink.results.n,
                 gw_journal_blocked(&s->journal) ? "full" : "ok", s->window.pending_bytes,
                 gw_publisher_inflight(s->pub), s->relay.broker_up ? "connected" : "disconnected",
                 ps.publish_timeouts, ps.messages_dropped);
    /* body is sized for every counter; one that outgrows it shows as skipped stats */
    if (!counters || tail < 0 || (size_t)tail >= sizeof(body) - n ||
        gw_relay_publish_untracked(&s->relay, topic, body, n + (size_t)tail, 0, false) != EDS_OK)
        s->st.stats_skipped++;
}

static void tick(gw_server *s)
{
    int64_t now = gw_now_ms();
    gw_session_tick(&s->session, now);
    if (now >= s->next_ip_sweep_ms) {
        s->next_ip_sweep_ms = now + 10000;
        gw_guard_sweep(&s->guard, now);
    }
    gw_goodfile_tick(s->goodfile, &s->guard, now, time(NULL));
    if (now >= s->next_expiry_ms) {
        s->next_expiry_ms = now + 1000;
        gw_downlink_tick(&s->downlink);
    }
    eds_log_limits_flush(); /* a burst that stopped still gets its "repeated N times" */
    if (s->cfg->stats_interval > 0 && now >= s->next_stats_ms) {
        s->next_stats_ms = now + (int64_t)(s->cfg->stats_interval * 1000);
        publish_stats(s);
    }
}

/* The gateway's retained status: online since, the broker connection's start
 * and how many came before it, and whether state_dir holds the acks. Published
 * at each connection to the broker and when state_dir changes; the publisher's
 * will says offline. */
static void publish_gateway_status(gw_server *s, bool blocked)
{
    char topic[GW_TOPIC_MAX], body[512], broker_since[32];
    snprintf(topic, sizeof(topic), "%s/_gateway/status", s->cfg->topic_prefix);
    gw_rfc3339(s->broker_since, broker_since, sizeof(broker_since));
    int n = snprintf(body, sizeof(body),
                     "{\"online\":true,\"since\":\"%s\",\"broker_since\":\"%s\","
                     "\"broker_reconnects\":%" PRIu64 "%s}",
                     s->since, broker_since, s->broker_reconnects,
                     blocked ? ",\"state_dir\":\"cannot be written: acks held\"" : "");
    if (gw_relay_publish_untracked(&s->relay, topic, body, (size_t)n, 1, true) == EDS_OK) {
        s->status_blocked = blocked;
        s->status_due = false;
    }
}

/* End of an iteration: journal first, then the acks it covers, then closes. */
static void end_batch(gw_server *s)
{
    gw_relay_pump(&s->relay);
    gw_downlink_flush(&s->downlink);
    int64_t now = gw_now_ms();
    s->relay.held = !gw_journal_write(&s->journal, now, s->relay.store_failed);
    gw_device *d;
    while ((d = gw_relay_answer_next(&s->relay)) != NULL)
        gw_session_progress(&s->session, d);
    /* Welcomes just given may have marked devices; nothing is held back for them. */
    if (!s->relay.held)
        s->relay.held = !gw_journal_write(&s->journal, now, s->relay.store_failed);
    bool blocked = gw_journal_blocked(&s->journal);
    if ((s->status_due || blocked != s->status_blocked) && s->relay.broker_up)
        publish_gateway_status(s, blocked);
    gw_session_end_batch(&s->session);
}

/* ---- setup and run ------------------------------------------------------ */

/* Signals through a signalfd so handlers never run inside the loop. */
static int open_signals(gw_server *s, eds_error *err)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->sig_h.kind = GW_H_SIGNAL;
    if (s->sig_fd < 0 || gw_loop_add(s->loop, s->sig_fd, GW_EV_READ, &s->sig_h) != EDS_OK)
        return eds_error_set(err, EDS_ERR_IO, "signalfd: %s", strerror(errno));
    return EDS_OK;
}

/* The MQTT client: the gateway's will and online status, the command
 * subscription, and with qos 2 a session persisted beside the journal. */
static int open_publisher(gw_server *s, eds_error *err)
{
    const gw_config *cfg = s->cfg;
    char client_id[128], host[64] = "localhost", will_topic[GW_TOPIC_MAX], sub[GW_TOPIC_MAX];
    gethostname(host, sizeof(host) - 1);
    snprintf(client_id, sizeof(client_id), "eds-gateway-%s", host);
    snprintf(will_topic, sizeof(will_topic), "%s/_gateway/status", cfg->topic_prefix);
    snprintf(sub, sizeof(sub), "%s/+/cmd", cfg->topic_prefix);
    gw_rfc3339(time(NULL), s->since, sizeof(s->since));
    char *broker_pw = NULL;
    int rc;
    bool exposed = false;
    if (cfg->broker_password_file &&
        (rc = eds_secret_read("broker_password_file", cfg->broker_password_file, &broker_pw,
                              &exposed, err)))
        return rc;
    if (exposed)
        eds_log_warning("broker_password_file %s can be read by other users (chmod 600 it)",
                        cfg->broker_password_file);
    gw_publisher_config pc = {
        .host = cfg->broker_host,
        .port = cfg->broker_port,
        .client_id = cfg->client_id ? cfg->client_id : client_id,
        .username = cfg->broker_username,
        .password = broker_pw,
        .will_topic = will_topic,
        .will_payload = "{\"online\":false}",
        .online_payload = NULL, /* publish_gateway_status, at GW_PUB_CONNECTED */
        .subscribe_topic = sub,
        .max_inflight = cfg->max_inflight,
        .keepalive = cfg->broker_keepalive, /* a hung broker: noticed in 2-3x this */
        /* a broker that answers pings but confirms nothing: given up after this */
        .publish_timeout_s = cfg->broker_publish_timeout,
        .cafile = cfg->broker_cafile,
        .certfile = cfg->broker_certfile,
        .keyfile = cfg->broker_keyfile,
        /* qos 2: exactly once, with the MQTT session persisted beside the journal */
        .persistent = cfg->qos == 2,
        .session_dir = cfg->state_dir,
        .receive_maximum = cfg->broker_receive_maximum, /* 3.1.1 only: 5 takes the broker's */
        .mqtt_version = cfg->mqtt_version,
    };
    rc = gw_publisher_create(&pc, &s->pub, err);
    free(broker_pw);
    if (rc != EDS_OK)
        return rc;
    s->relay.pub = s->pub;
    s->relay.restoring = gw_publisher_restoring(s->pub);
    if (!s->relay.restoring)
        apply_session_marks(s, true);
    s->pub_h.kind = GW_H_PUBLISHER;
    if (gw_loop_add(s->loop, gw_publisher_fd(s->pub), GW_EV_READ, &s->pub_h) != EDS_OK ||
        gw_publisher_start(s->pub) != EDS_OK)
        return eds_error_set(err, EDS_ERR_IO, "cannot start the MQTT client");
    return EDS_OK;
}

int gw_server_create(const gw_config *cfg, gw_server **out, eds_error *err)
{
    *out = NULL;
    gw_server *s = calloc(1, sizeof(*s));
    if (!s)
        return EDS_ERR_NOMEM;
    s->cfg = cfg;
    s->sig_fd = -1;
    s->started_ms = gw_now_ms();
    int rc = EDS_ERR_NOMEM;
    eds_tls_server_opts tls_opts = {cfg->certfile, cfg->keyfile, cfg->cafile,
                                    cfg->require_certificate};
    if (gw_window_init(&s->window, (size_t)cfg->max_devices, (uint32_t)cfg->window) != EDS_OK ||
        gw_guard_init(&s->guard) != EDS_OK)
        goto err;
    if ((rc = gw_loop_create(&s->loop, err)) != EDS_OK)
        goto err;
    if ((rc = gw_conns_init(&s->conns, s->loop, cfg, &s->st)) != EDS_OK)
        goto err;
    gw_relay_init(&s->relay, cfg, &s->window, &s->conns, &s->st);
    if (gw_downlink_init(&s->downlink, cfg, &s->window, &s->conns, &s->relay, &s->st) != EDS_OK)
        goto err;
    gw_session_init(&s->session, cfg, &s->conns, &s->window, &s->relay, &s->downlink, &s->guard,
                    &s->st);
    if ((rc = gw_schemas_load(cfg, &s->schemas, err)) != EDS_OK)
        goto err;
    s->session.schemas = s->schemas;
    s->downlink.schemas = s->schemas;
    if (cfg->password_file) {
        if ((rc = eds_passwd_load(cfg->password_file, &s->passwd, err)) != EDS_OK)
            goto err;
        s->session.passwd = s->passwd;
        if (eds_passwd_world_readable(cfg->password_file))
            eds_log_warning("%s is readable by every user: chmod 600 it (or 640 with a group)",
                            cfg->password_file);
    }
    if ((rc = gw_journal_open(&s->journal, cfg->state_dir, &s->window, &s->st, err)) != EDS_OK ||
        (rc = gw_downlink_open_store(&s->downlink, cfg->state_dir, err)) != EDS_OK ||
        (rc = gw_goodfile_open(cfg->state_dir, &s->guard, gw_now_ms(), time(NULL), &s->goodfile,
                               err)) != EDS_OK)
        goto err;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        if (cfg->listeners[i].tls && !s->tls_ctx &&
            (rc = eds_tls_server_ctx_create(&tls_opts, &s->tls_ctx, err)) != EDS_OK)
            goto err;
        gw_listener *l = &s->listeners[s->n_listeners++];
        l->fd = -1;
        if ((rc = gw_listener_open(l, s->loop, &cfg->listeners[i], err)) != EDS_OK)
            goto err;
    }
    if ((rc = open_signals(s, err)) != EDS_OK ||
        (cfg->metrics.port && (rc = open_metrics(s, err)) != EDS_OK) ||
        (rc = open_publisher(s, err)) != EDS_OK)
        goto err;
    *out = s;
    return EDS_OK;
err:
    gw_server_destroy(s);
    return rc;
}

static void on_ready(void *ctx, void *ptr, uint32_t events)
{
    gw_server *s = ctx;
    gw_handle *h = ptr;
    switch (h->kind) {
    case GW_H_LISTENER:
        if (!s->stopping)
            gw_conns_accept(&s->conns, (gw_listener *)h, &s->guard, s->tls_ctx);
        break;
    case GW_H_PUBLISHER:
        gw_publisher_dispatch(s->pub, on_pub_event, s);
        break;
    case GW_H_SIGNAL:
        on_signal(s);
        break;
    case GW_H_METRICS:
        serve_metrics(s);
        break;
    case GW_H_CONN:
        gw_session_event(&s->session, (gw_conn *)h, events);
        break;
    }
}

static bool drained(gw_server *s)
{
    for (size_t i = 0; i < s->window.n_devices; i++)
        if (s->window.devices[i]->ring.count)
            return false;
    return true;
}

/* Sends shutting_down to everyone, marks devices offline, flushes. */
static void finish_stop(gw_server *s)
{
    gw_session_shutting_down(&s->session);
    end_batch(s);
    if (s->relay.broker_up) { /* the offline statuses just published */
        gw_publisher_flush(s->pub, 2000);
        gw_publisher_dispatch(s->pub, on_pub_event, s);
    }
}

int gw_server_run(gw_server *s)
{
    int64_t next_tick = gw_now_ms() + TICK_MS;
    for (;;) {
        int64_t now = gw_now_ms();
        int timeout = next_tick > now ? (int)(next_tick - now) : 0;
        if (gw_loop_wait(s->loop, timeout, on_ready, s) < 0) {
            eds_log_error("epoll_wait: %s", strerror(errno));
            return EDS_ERR_IO;
        }
        now = gw_now_ms();
        if (now >= next_tick) {
            tick(s);
            next_tick = now + TICK_MS;
        }
        end_batch(s);
        if (s->stopping && (drained(s) || now >= s->stop_deadline_ms)) {
            if (!drained(s))
                eds_log_warning("shutdown_timeout: records still unconfirmed; agents resend "
                                "them");
            break;
        }
    }
    finish_stop(s);
    eds_log_notice("stopped");
    return EDS_OK;
}

void gw_server_destroy(gw_server *s)
{
    if (!s)
        return;
    if (s->conns.by_fd)
        for (size_t fd = 0; fd < s->conns.cap; fd++)
            if (s->conns.by_fd[fd])
                gw_downlink_conn_gone(&s->downlink, s->conns.by_fd[fd]);
    gw_conns_free(&s->conns);
    gw_publisher_destroy(s->pub);
    for (size_t i = 0; i < s->n_listeners; i++)
        if (s->listeners[i].fd >= 0)
            close(s->listeners[i].fd);
    gw_downlink_free(&s->downlink);
    gw_window_free(&s->window);
    gw_journal_close(&s->journal);
    gw_schemas_destroy(s->schemas);
    eds_passwd_destroy(s->passwd);
    eds_tls_ctx_destroy(s->tls_ctx);
    gw_goodfile_close(s->goodfile, &s->guard, gw_now_ms(), time(NULL));
    gw_guard_free(&s->guard);
    gw_session_free(&s->session);
    gw_metrics_destroy(s->metrics);
    gw_loop_destroy(s->loop);
    if (s->sig_fd >= 0)
        close(s->sig_fd);
    free(s);
}
