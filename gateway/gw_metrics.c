/*
 * gw_metrics.c - /metrics over libmicrohttpd; the hand-off between its
 * thread and the event loop is described in gw_metrics.h.
 */
#include "gw_metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "eds_log.h"
#include "eds_clock.h"

#define SCRAPE_WAIT_MS 2000 /* longest a scrape waits for the loop */
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct gw_metrics {
    struct MHD_Daemon *httpd;
    int efd;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* under mu */
    uint64_t asked;    /* tickets handed to scrapes */
    uint64_t answered; /* tickets the current text answers */
    bool failed;       /* the last rendering failed: answer 503 */
    bool closing;
    char *text;
    size_t len;
};

/* ---- the text ----------------------------------------------------------- */

/* A growable buffer bounded by GW_METRICS_MAX_TEXT; once an append fails,
 * later ones do nothing and `bad` stays set. */
typedef struct text_buf {
    char *p;
    size_t len, cap;
    bool bad;
} text_buf;

static void put(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text_buf *b, const char *fmt, ...)
{
    for (int attempt = 0; attempt < 2 && !b->bad; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->bad = true;
        } else if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        } else {
            size_t need = b->len + (size_t)n + 1;
            size_t ncap = b->cap ? b->cap : 16384;
            while (ncap < need)
                ncap *= 2;
            char *np = need > GW_METRICS_MAX_TEXT ? NULL : realloc(b->p, ncap);
            if (!np)
                b->bad = true;
            else {
                b->p = np;
                b->cap = ncap;
            }
        }
    }
}

/* A label value as the text format wants it: \ " and newline escaped. Runs
 * without them go in one put: the loop renders every device's ids on each
 * scrape, and a put per character made that 20 times slower
 * (docs/operations.md, "Prometheus metrics"). */
static void put_label(text_buf *b, const char *v)
{
    for (const char *s = v; *s && !b->bad;) {
        size_t run = strcspn(s, "\\\"\n");
        if (run) {
            put(b, "%.*s", (int)run, s);
            s += run;
        } else {
            put(b, "%s", *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : "\\n");
            s++;
        }
    }
}

static void family(text_buf *b, const char *name, const char *type, const char *help)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Per-device families: what each prints for one device. */
enum dev_metric { D_IN, D_ACKED, D_REJECTED, D_DUP, D_LAST_SEEN, D_ONLINE, D_COUNT };
static const struct {
    const char *name, *type, *help;
} dev_families[D_COUNT] = {
    {"eds_device_records_received_total", "counter", "Data messages received from the device."},
    {"eds_device_records_acked_total", "counter", "The device's records published and acked."},
    {"eds_device_records_rejected_total", "counter",
     "The device's records that failed the "
     "schema."},
    {"eds_device_records_duplicate_total", "counter",
     "The device's data messages acked as "
     "duplicates."},
    {"eds_device_last_seen_timestamp_seconds", "gauge",
     "Unix time of the device's last data "
     "message (0: none since the start)."},
    {"eds_device_online", "gauge", "1 while the device has an authenticated connection."},
};

static uint64_t dev_value(enum dev_metric k, const gw_metrics_device *d)
{
    switch (k) {
    case D_IN:
        return d->c->records_in;
    case D_ACKED:
        return d->c->acked;
    case D_REJECTED:
        return d->c->rejected;
    case D_DUP:
        return d->c->duplicates;
    case D_LAST_SEEN:
        return d->c->last_seen > 0 ? (uint64_t)d->c->last_seen : 0;
    default:
        return d->online;
    }
}

static void gauge(text_buf *b, const char *name, const char *help, uint64_t v)
{
    family(b, name, "gauge", help);
    put(b, "%s %" PRIu64 "\n", name, v);
}

int gw_metrics_format(const gw_metrics_snapshot *snap, char **text, size_t *len)
{
    text_buf b = {0};
    for (size_t i = 0; i < gw_stats_ncounters; i++) {
        const gw_stats_counter *c = &gw_stats_counters[i];
        family(&b, c->metric, "counter", c->help);
        put(&b, "%s %" PRIu64 "\n", c->metric, gw_stats_value(snap->stats, c));
    }
    family(&b, "eds_broker_timeouts_total", "counter",
           "Broker connections given up for a publish unconfirmed past broker_publish_timeout.");
    put(&b, "eds_broker_timeouts_total %" PRIu64 "\n", snap->broker_timeouts);
    family(&b, "eds_commands_lost_total", "counter",
           "Commands the broker delivered that the gateway could not take (its queue was full).");
    put(&b, "eds_commands_lost_total %" PRIu64 "\n", snap->cmds_lost);
    gauge(&b, "eds_uptime_seconds", "Seconds since the gateway started.",
          snap->uptime_s > 0 ? (uint64_t)snap->uptime_s : 0);
    gauge(&b, "eds_connections_open", "Agent connections open, authenticated or not.",
          snap->connections);
    gauge(&b, "eds_devices_online", "Devices with an authenticated connection.",
          snap->devices_online);
    gauge(&b, "eds_devices_known", "Devices the gateway keeps state for.", snap->devices_known);
    gauge(&b, "eds_pending_bytes", "Memory held by records waiting for the broker.",
          snap->pending_bytes);
    gauge(&b, "eds_inflight_publishes", "Publishes sent to the broker, not yet confirmed.",
          snap->inflight);
    gauge(&b, "eds_broker_connected", "1 while the gateway is connected to the broker.",
          snap->broker_connected);
    size_t shown =
        snap->devices_known < GW_METRICS_MAX_DEVICES ? snap->devices_known : GW_METRICS_MAX_DEVICES;
    gauge(&b, "eds_metrics_devices_omitted", "Known devices not listed here (past 10000).",
          snap->devices_known - shown);
    for (int k = 0; k < D_COUNT; k++) {
        family(&b, dev_families[k].name, dev_families[k].type, dev_families[k].help);
        for (size_t i = 0; i < shown && !b.bad; i++) {
            gw_metrics_device d;
            snap->device(snap->ctx, i, &d);
            put(&b, "%s{device=\"", dev_families[k].name);
            put_label(&b, d.id);
            put(&b, "\"} %" PRIu64 "\n", dev_value((enum dev_metric)k, &d));
        }
    }
    if (b.bad) {
        free(b.p);
        return EDS_ERR_NOMEM;
    }
    *text = b.p;
    *len = b.len;
    return EDS_OK;
}

/* ---- the loop's side ---------------------------------------------------- */

int gw_metrics_fd(const gw_metrics *m)
{
    return m->efd;
}

bool gw_metrics_wanted(gw_metrics *m)
{
    uint64_t n;
    while (read(m->efd, &n, sizeof(n)) == (ssize_t)sizeof(n))
        ;
    pthread_mutex_lock(&m->mu);
    bool wanted = m->asked > m->answered;
    pthread_mutex_unlock(&m->mu);
    return wanted;
}

void gw_metrics_publish(gw_metrics *m, const gw_metrics_snapshot *snap)
{
    pthread_mutex_lock(&m->mu);
    uint64_t ticket = m->asked; /* this rendering answers every scrape asked so far */
    pthread_mutex_unlock(&m->mu);
    char *text = NULL;
    size_t len = 0;
    int rc = gw_metrics_format(snap, &text, &len);
    if (rc != EDS_OK)
        eds_log_warning("metrics: cannot render (%s): scrape answered 503", eds_strerror(rc));
    pthread_mutex_lock(&m->mu);
    free(m->text);
    m->text = text;
    m->len = len;
    m->failed = rc != EDS_OK;
    m->answered = ticket;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
}

/* ---- the HTTP thread ---------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *body,
                             size_t len, const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned status, const char *msg)
{
    return reply(conn, status, msg, strlen(msg), "text/plain; charset=utf-8");
}

/* Asks the loop for a rendering and answers with it (see gw_metrics.h). */
static enum MHD_Result scrape(gw_metrics *m, struct MHD_Connection *conn)
{
    uint64_t one = 1;
    pthread_mutex_lock(&m->mu);
    uint64_t ticket = ++m->asked;
    if (write(m->efd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        pthread_mutex_unlock(&m->mu);
        return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "eventfd failed\n");
    }
    struct timespec until = eds_deadline_in(SCRAPE_WAIT_MS);
    int rc = 0;
    while (m->answered < ticket && !m->closing && rc == 0)
        rc = pthread_cond_timedwait(&m->cond, &m->mu, &until);
    enum MHD_Result ret;
    if (m->answered < ticket || m->failed)
        ret = plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                    "the gateway did not answer in time (busy or stopping)\n");
    else
        ret = reply(conn, MHD_HTTP_OK, m->text, m->len, CONTENT_TYPE);
    pthread_mutex_unlock(&m->mu);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version;
    (void)upload_data;
    (void)req_cls;
    if (*upload_data_size)
        return MHD_NO; /* a body: not for us */
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET /metrics\n");
    if (strcmp(url, "/metrics") != 0)
        return plain(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n");
    return scrape(cls, conn);
}

/* libmicrohttpd's own complaints go to our log (bind errors and the like). */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[256];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    eds_log_warning("metrics: %s", msg);
}

int gw_metrics_create(const char *address, int port, gw_metrics **out, eds_error *err)
{
    *out = NULL;
    struct sockaddr_in6 sa6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    struct sockaddr_in sa4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    const char *addr = address && *address ? address : "127.0.0.1";
    const struct sockaddr *sa = (const struct sockaddr *)&sa4;
    /* epoll (MHD_USE_AUTO on Linux), not select(): with thousands of agents connected,
     * a scrape's socket has an fd number past select's FD_SETSIZE. */
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET6, addr, &sa6.sin6_addr) == 1) {
        sa = (const struct sockaddr *)&sa6;
        flags |= MHD_USE_IPv6;
    } else if (inet_pton(AF_INET, addr, &sa4.sin_addr) != 1) {
        return eds_error_set(err, EDS_ERR_CONFIG,
                             "metrics_listener: '%s' is not a numeric IPv4 or IPv6 address", addr);
    }
    gw_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return EDS_ERR_NOMEM;
    pthread_mutex_init(&m->mu, NULL);
    eds_cond_init_monotonic(&m->cond);
    m->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (m->efd < 0) {
        int e = errno;
        gw_metrics_destroy(m);
        return eds_error_set(err, EDS_ERR_IO, "metrics: eventfd: %s", strerror(e));
    }
    /* One HTTP thread; a few connections, each closed after 10 s of silence:
     * a scraper is one client, a crowd is not served. The timeout is one of
     * silence, so a client trickling a byte every few seconds keeps its slot:
     * at most 4 per address, so one such host cannot take all 8 from the
     * Prometheus server (the same address can, hence loopback by default). */
    m->httpd = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, on_request, m,
                                MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, sa,
                                MHD_OPTION_CONNECTION_LIMIT, 8u, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                4u, MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!m->httpd) {
        gw_metrics_destroy(m);
        return eds_error_set(err, EDS_ERR_IO, "metrics_listener: cannot listen on %s port %d", addr,
                             port);
    }
    eds_log_notice("metrics on http://%s%s%s:%d/metrics", strchr(addr, ':') ? "[" : "", addr,
                   strchr(addr, ':') ? "]" : "", port);
    *out = m;
    return EDS_OK;
}

void gw_metrics_destroy(gw_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->closing = true; /* a scrape waiting for the loop gives up now */
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->mu);
    if (m->httpd)
        MHD_stop_daemon(m->httpd);
    if (m->efd >= 0)
        close(m->efd);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->mu);
    free(m->text);
    free(m);
}
