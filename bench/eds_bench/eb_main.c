/*
 * eb_main.c - eds-bench: options, the two phases, the table.
 *
 *   eds-bench --gateway 127.0.0.1:5883 --broker 127.0.0.1:1883 \
 *             --broker-password-file gw.pw --sub-password-file reader.pw \
 *             --connections 10 --records 20000 --window 64 --qos 1
 *
 * Phase 1 (gateway): N agent connections send M records each through
 * eds-gateway; a subscriber on <prefix>/+/data counts them by (device, n).
 * Phase 2 (ceiling): the same records, published straight to the broker by
 * K MQTT clients at the same QoS, counted by the same kind of subscriber.
 * The table gives both and the ratio gateway/ceiling.
 *
 * Exit status: 0 when every phase run completed with nothing lost,
 * duplicated, out of order or nacked; 1 otherwise; 2 on a usage error.
 */
#include "eb.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

typedef enum { T_ADDR, T_STR, T_PWFILE, T_SIZE, T_U64, T_INT, T_DBL, T_TRUE, T_FALSE } opt_type;

typedef struct opt_def {
    const char *name;
    opt_type type;
    size_t off;  /* field in eb_opts */
    size_t off2; /* T_ADDR: the port field */
    double lo, hi;
    const char *help;
} opt_def;

#define F(f) offsetof(eb_opts, f)

static const opt_def OPTS[] = {
    {"gateway", T_ADDR, F(gw_host), F(gw_port), 0, 0, "HOST:PORT of eds-gateway (127.0.0.1:5883)"},
    {"broker", T_ADDR, F(broker_host), F(broker_port), 0, 0,
     "HOST:PORT of the broker (127.0.0.1:1883)"},
    {"broker-user", T_STR, F(broker_user), 0, 0, 0, "user of the ceiling publishers (eds-gateway)"},
    {"broker-password-file", T_PWFILE, F(broker_password), 0, 0, 0, "its password (first line)"},
    {"sub-user", T_STR, F(sub_user), 0, 0, 0, "user of the subscriber (reader)"},
    {"sub-password-file", T_PWFILE, F(sub_password), 0, 0, 0, "its password (first line)"},
    {"topic-prefix", T_STR, F(topic_prefix), 0, 0, 0, "topic prefix (energy)"},
    {"device-prefix", T_STR, F(device_prefix), 0, 0, 0, "devices are PREFIX-0.. (bench)"},
    {"stream", T_STR, F(stream), 0, 0, 0, "stream id in hello (default: new per run)"},
    {"connections", T_SIZE, F(connections), 0, 1, 1000000, "agent connections N (10)"},
    {"records", T_U64, F(records), 0, 1, 1e9, "records per connection M (1000)"},
    {"window", T_SIZE, F(window), 0, 1, 65536, "unacked records per connection (64)"},
    {"qos", T_INT, F(qos), 0, 0, 2, "QoS of subscriber and ceiling publishers (1)"},
    {"rate", T_DBL, F(rate), 0, 0, 1e9, "records/s over all connections, 0 = unpaced (0)"},
    {"timeout", T_DBL, F(timeout_s), 0, 1, 86400, "seconds for the whole run (120)"},
    {"drain", T_DBL, F(drain_s), 0, 0.1, 600, "seconds without a delivery that end a phase (3)"},
    {"ceiling-clients", T_SIZE, F(ceiling_clients), 0, 1, 1000, "ceiling publishers K (10)"},
    {"ceiling-inflight", T_SIZE, F(ceiling_inflight), 0, 1, 65535,
     "in flight per publisher (window)"},
    {"ceiling-lead", T_U64, F(ceiling_lead), 0, 0, 1e9,
     "ceiling: published - delivered at most (5000; 0 = no bound)"},
    {"settle", T_DBL, F(settle_s), 0, 0, 600,
     "seconds between the last welcome and the first record (0)"},
    {"connect-burst", T_SIZE, F(connect_burst), 0, 1, 100000, "handshakes at once (256)"},
    {"source-addrs", T_SIZE, F(source_addrs), 0, 1, 250, "bind agents to 127.0.0.1..127.0.0.N (1)"},
    {"gateway-pid", T_INT, F(gateway_pid), 0, 1, 4194304, "sample this pid's RSS and CPU"},
    {"gateway-only", T_FALSE, F(run_ceiling), 0, 0, 0, "skip the ceiling phase"},
    {"ceiling-only", T_FALSE, F(run_gateway), 0, 0, 0, "skip the gateway phase"},
    {"no-subscriber", T_TRUE, F(no_subscriber), 0, 0, 0, "do not count deliveries"},
    {"json", T_TRUE, F(json), 0, 0, 0, "print one JSON object instead of the table"},
    {"json-file", T_STR, F(json_file), 0, 0, 0, "also write that JSON object to this file"},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: eds-bench [--OPTION VALUE]...\n\n"
               "Load tool for eds-gateway: N agent connections x M records through the gateway,\n"
               "then the same records published straight to the broker (the ceiling). Prints\n"
               "throughput, ack latency and lost/duplicated counts for both, and the ratio.\n"
               "Only 127.0.0.0/8 addresses are accepted.\n\nOptions:\n");
    for (size_t i = 0; i < sizeof(OPTS) / sizeof(OPTS[0]); i++)
        fprintf(f, "  --%-22s %s\n", OPTS[i].name, OPTS[i].help);
    fprintf(f, "  --%-22s %s\n", "help", "this text");
}

static int read_password(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "eds-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (fgets(out, (int)cap, f) == NULL)
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

static int parse_addr(const char *v, char *host, size_t hcap, int *port)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || (size_t)(colon - v) >= hcap)
        return -1;
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    if (strcmp(host, "localhost") == 0)
        snprintf(host, hcap, "127.0.0.1");
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
        return -1; /* loopback only */
    char *end;
    errno = 0;
    unsigned long p = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || end == colon + 1 || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

static int set_opt(eb_opts *o, const opt_def *d, const char *v)
{
    char *base = (char *)o;
    char *end;
    double x = 0;
    if (d->type == T_SIZE || d->type == T_U64 || d->type == T_INT || d->type == T_DBL) {
        errno = 0;
        x = strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || x < d->lo || x > d->hi ||
            (d->type != T_DBL && x != (double)(uint64_t)x)) {
            fprintf(stderr, "eds-bench: --%s: '%s' is not a number in %g..%g\n", d->name, v, d->lo,
                    d->hi);
            return -1;
        }
    }
    switch (d->type) {
    case T_ADDR:
        if (parse_addr(v, base + d->off, 64, (int *)(base + d->off2)) != 0) {
            fprintf(stderr, "eds-bench: --%s: '%s' is not 127.x.x.x:PORT\n", d->name, v);
            return -1;
        }
        return 0;
    case T_STR:
        *(const char **)(base + d->off) = v;
        return 0;
    case T_PWFILE:
        return read_password(v, base + d->off, 256);
    case T_SIZE:
        *(size_t *)(base + d->off) = (size_t)x;
        return 0;
    case T_U64:
        *(uint64_t *)(base + d->off) = (uint64_t)x;
        return 0;
    case T_INT:
        *(int *)(base + d->off) = (int)x;
        return 0;
    case T_DBL:
        *(double *)(base + d->off) = x;
        return 0;
    case T_TRUE:
    case T_FALSE:
        *(bool *)(base + d->off) = d->type == T_TRUE;
        return 0;
    }
    return -1;
}

static int parse_args(int argc, char **argv, eb_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        const opt_def *d = NULL;
        for (size_t k = 0; a[0] == '-' && a[1] == '-' && k < sizeof(OPTS) / sizeof(OPTS[0]); k++)
            if (strcmp(a + 2, OPTS[k].name) == 0)
                d = &OPTS[k];
        if (d == NULL) {
            fprintf(stderr, "eds-bench: unknown option '%s' (see --help)\n", a);
            return -1;
        }
        if (d->type == T_TRUE || d->type == T_FALSE) {
            set_opt(o, d, NULL);
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "eds-bench: --%s needs a value\n", d->name);
            return -1;
        }
        if (set_opt(o, d, argv[++i]) != 0)
            return -1;
    }
    if (!o->run_gateway && !o->run_ceiling) {
        fprintf(stderr, "eds-bench: --gateway-only and --ceiling-only exclude each other\n");
        return -1;
    }
    if ((double)o->connections * (double)o->records > 4e9) {
        fprintf(stderr, "eds-bench: connections x records is limited to 4e9\n");
        return -1;
    }
    if (o->ceiling_inflight == 0)
        o->ceiling_inflight = o->window < 65535 ? o->window : 65535;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Report */

static double per_s(uint64_t n, uint64_t t0, uint64_t t1)
{
    return t1 > t0 ? (double)n * 1e9 / (double)(t1 - t0) : 0;
}

typedef struct figures {
    double acked_s, delivered_s, p50_ms, p99_ms, max_ms, mean_ms;
    uint64_t lost;
} figures;

static figures figures_of(const eb_phase_result *r)
{
    figures f = {0};
    f.acked_s = per_s(r->acked + r->nacked, r->t0_ns, r->last_ack_ns);
    f.delivered_s = r->have_sub ? per_s(r->sub.unique, r->t0_ns, r->sub.last_ns) : 0;
    f.p50_ms = (double)eb_hist_quantile(&r->lat, 0.50) / 1e6;
    f.p99_ms = (double)eb_hist_quantile(&r->lat, 0.99) / 1e6;
    f.max_ms = (double)r->lat.max / 1e6;
    f.mean_ms = r->lat.count ? (double)r->lat.sum / (double)r->lat.count / 1e6 : 0;
    f.lost = r->have_sub && r->records > r->sub.unique ? r->records - r->sub.unique : 0;
    return f;
}

static bool phase_ok(const eb_phase_result *r)
{
    if (!r->ran)
        return true;
    figures f = figures_of(r);
    return r->completed && r->conn_errors == 0 && r->nacked == 0 && r->bad_acks == 0 &&
           (!r->have_sub || (f.lost == 0 && r->sub.duplicated == 0 && r->sub.out_of_order == 0));
}

static void json_phase(FILE *out, const char *name, const eb_phase_result *r)
{
    figures f = figures_of(r);
    fprintf(out, "\"%s\":{\"ran\":%s", name, r->ran ? "true" : "false");
    if (r->ran) {
        fprintf(out,
                ",\"completed\":%s,\"records\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"acked\":%" PRIu64
                ",\"nacked\":%" PRIu64 ",\"dup_acks\":%" PRIu64 ",\"bad_acks\":%" PRIu64
                ",\"conn_errors\":%" PRIu64 ",\"connected\":%zu,\"connect_s\":%.3f"
                ",\"acked_per_s\":%.1f,\"ack_latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f,"
                "\"mean\":%.3f},\"bench_cpu_s\":%.3f",
                r->completed ? "true" : "false", r->records, r->sent, r->acked, r->nacked,
                r->dup_acks, r->bad_acks, r->conn_errors, r->connected, r->connect_s, f.acked_s,
                f.p50_ms, f.p99_ms, f.max_ms, f.mean_ms, r->bench_cpu_s);
        if (r->have_sub)
            fprintf(out,
                    ",\"delivered\":%" PRIu64 ",\"delivered_per_s\":%.1f,\"lost\":%" PRIu64
                    ",\"duplicated\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"foreign\":%" PRIu64,
                    r->sub.unique, f.delivered_s, f.lost, r->sub.duplicated, r->sub.out_of_order,
                    r->sub.foreign);
        if (r->rss_kb_connected > 0 || r->rss_kb_end > 0)
            fprintf(out,
                    ",\"gateway_rss_kb\":{\"connected\":%ld,\"end\":%ld,\"peak\":%ld}"
                    ",\"gateway_cpu_s\":%.3f",
                    r->rss_kb_connected, r->rss_kb_end, r->hwm_kb, r->gw_cpu_s);
        if (r->first_error[0] != '\0') {
            fprintf(out, ",\"first_error\":\"");
            for (const char *p = r->first_error; *p; p++)
                if (*p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
                    fputc(*p, out);
            fprintf(out, "\"");
        }
    }
    fprintf(out, "}");
}

static void row_rate(const char *label, double g, double c, bool ratio)
{
    printf("%-32s %14.0f %14.0f", label, g, c);
    if (ratio && c > 0)
        printf(" %10.2f", g / c);
    printf("\n");
}

static void row_ms(const char *label, double g, double c)
{
    printf("%-32s %14.3f %14.3f\n", label, g, c);
}

static void row_n(const char *label, uint64_t g, uint64_t c)
{
    printf("%-32s %14" PRIu64 " %14" PRIu64 "\n", label, g, c);
}

static void print_table(const eb_opts *o, const eb_phase_result *g, const eb_phase_result *c,
                        size_t record_bytes)
{
    figures fg = figures_of(g), fc = figures_of(c);
    printf("eds-bench: %zu connections x %" PRIu64 " records = %" PRIu64
           ", window %zu, QoS %d, %s, record ~%zu B\n",
           o->connections, o->records, (uint64_t)o->connections * o->records, o->window, o->qos,
           o->rate > 0 ? "paced" : "unpaced", record_bytes);
    if (o->rate > 0)
        printf("pace: %.0f records/s in total\n", o->rate);
    printf("ceiling: %zu MQTT publishers x %zu in flight, straight to the broker\n",
           o->ceiling_clients < o->connections ? o->ceiling_clients : o->connections,
           o->ceiling_inflight);
    printf("%-32s %14s %14s %10s\n", "", "gateway", "ceiling", "ratio");
    if (!g->ran || !c->ran)
        printf("(a phase marked 0 was not run)\n");
    row_rate("delivered to subscriber /s", fg.delivered_s, fc.delivered_s, g->ran && c->ran);
    row_rate("acked /s (ceiling: PUBACK)", fg.acked_s, fc.acked_s, g->ran && c->ran);
    row_ms("ack latency p50 (ms)", fg.p50_ms, fc.p50_ms);
    row_ms("ack latency p99 (ms)", fg.p99_ms, fc.p99_ms);
    row_ms("ack latency max (ms)", fg.max_ms, fc.max_ms);
    row_n("records acked", g->acked + g->nacked, c->acked);
    row_n("records delivered", g->sub.unique, c->sub.unique);
    row_n("lost", fg.lost, fc.lost);
    row_n("duplicated", g->sub.duplicated, c->sub.duplicated);
    row_n("out of order", g->sub.out_of_order, c->sub.out_of_order);
    row_n("nacked / bad acks", g->nacked + g->bad_acks, 0);
    row_n("connection errors", g->conn_errors, c->conn_errors);
    row_ms("eds-bench CPU s (with subscriber)", g->bench_cpu_s, c->bench_cpu_s);
    if (g->ran)
        printf("%-32s %14zu %14s   (%.2f s to connect)\n", "agent connections welcomed",
               g->connected, "", g->connect_s);
    if (g->rss_kb_connected > 0)
        printf("gateway RSS: %.1f MB after connect, %.1f MB at end, %.1f MB peak; "
               "gateway CPU %.2f s = %.1f us/record\n",
               g->rss_kb_connected / 1024.0, g->rss_kb_end / 1024.0, g->hwm_kb / 1024.0,
               g->gw_cpu_s, g->acked ? g->gw_cpu_s * 1e6 / (double)g->acked : 0.0);
    if (g->first_error[0] != '\0')
        printf("gateway phase, first problem: %s\n", g->first_error);
    if (c->first_error[0] != '\0')
        printf("ceiling phase, first problem: %s\n", c->first_error);
    if (o->no_subscriber)
        printf("(no subscriber: delivered, lost and duplicated not measured)\n");
}

static void print_json(FILE *out, const eb_opts *o, const eb_phase_result *g,
                       const eb_phase_result *c, size_t record_bytes)
{
    figures fg = figures_of(g), fc = figures_of(c);
    fprintf(out,
            "{\"connections\":%zu,\"records_per_connection\":%" PRIu64
            ",\"window\":%zu,\"qos\":%d,\"rate\":%.1f,\"record_bytes\":%zu,"
            "\"ceiling_clients\":%zu,\"ceiling_inflight\":%zu,",
            o->connections, o->records, o->window, o->qos, o->rate, record_bytes,
            o->ceiling_clients < o->connections ? o->ceiling_clients : o->connections,
            o->ceiling_inflight);
    json_phase(out, "gateway", g);
    fprintf(out, ",");
    json_phase(out, "ceiling", c);
    if (g->ran && c->ran && fc.delivered_s > 0)
        fprintf(out, ",\"ratio_delivered\":%.3f", fg.delivered_s / fc.delivered_s);
    if (g->ran && c->ran && fc.acked_s > 0)
        fprintf(out, ",\"ratio_acked\":%.3f", fg.acked_s / fc.acked_s);
    fprintf(out, ",\"ok\":%s}\n", phase_ok(g) && phase_ok(c) ? "true" : "false");
}

/* ------------------------------------------------------------------------------------------ */

static double self_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void run_phase(const eb_opts *o, bool gateway, uint64_t deadline, eb_phase_result *r)
{
    eb_sub *sub = NULL;
    double cpu0 = self_cpu_s();
    eb_hist_init(&r->lat);
    if (!o->no_subscriber) {
        if (eb_sub_start(o, deadline, &sub) != 0) {
            r->ran = true;
            snprintf(r->first_error, sizeof(r->first_error), "subscriber failed");
            return;
        }
        r->have_sub = true;
    }
    if (gateway)
        eb_agents_run(o, deadline, sub, r);
    else
        eb_ceiling_run(o, deadline, sub, r);
    if (sub != NULL) {
        eb_sub_wait(sub, r->records, (uint64_t)(o->drain_s * 1e9), deadline);
        eb_sub_stop(sub, &r->sub);
    }
    r->bench_cpu_s = self_cpu_s() - cpu0;
}

int main(int argc, char **argv)
{
    static char stream[64];
    eb_opts o = {
        .gw_host = "127.0.0.1",
        .gw_port = 5883,
        .broker_host = "127.0.0.1",
        .broker_port = 1883,
        .broker_user = "eds-gateway",
        .sub_user = "reader",
        .topic_prefix = "energy",
        .device_prefix = "bench",
        .connections = 10,
        .records = 1000,
        .window = 64,
        .qos = 1,
        .run_gateway = true,
        .run_ceiling = true,
        .timeout_s = 120,
        .drain_s = 3,
        .ceiling_clients = 10,
        .ceiling_lead = 5000,
        .connect_burst = 256,
        .source_addrs = 1,
    };
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    if (o.stream == NULL) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(stream, sizeof(stream), "bench-%ld-%ld%09ld", (long)getpid(), (long)ts.tv_sec,
                 ts.tv_nsec);
        o.stream = stream;
    }
    char rec[1024];
    size_t record_bytes = eb_record(rec, sizeof(rec), 0, 1);
    uint64_t start = eb_now_ns();
    uint64_t deadline = start + (uint64_t)(o.timeout_s * 1e9);
    static eb_phase_result g, c; /* static: the histograms are 20 KiB each */
    if (o.run_gateway)
        run_phase(&o, true, deadline, &g);
    if (o.run_ceiling)
        run_phase(&o, false, deadline, &c);
    if (o.json)
        print_json(stdout, &o, &g, &c, record_bytes);
    if (o.json_file != NULL) {
        FILE *f = fopen(o.json_file, "w");
        if (f == NULL) {
            fprintf(stderr, "eds-bench: %s: %s\n", o.json_file, strerror(errno));
        } else {
            print_json(f, &o, &g, &c, record_bytes);
            fclose(f);
        }
    }
    if (!o.json) {
        print_table(&o, &g, &c, record_bytes);
    }
    return phase_ok(&g) && phase_ok(&c) ? 0 : 1;
}
