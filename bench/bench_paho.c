/*
 * bench_paho.c - publishes confirmed per second through gw_publisher (one
 * Paho async client, or -k of them in this process with publishes dealt
 * round robin) at a few max_inflight values, against a private mosquitto
 * that tests/integration/edsrig.py starts from broker-config/ on a free
 * loopback port. No subscriber is attached.
 *
 *   bench_paho [-n COUNT] [-t SECONDS] [-q QOS] [-s PAYLOAD_BYTES] [-k CLIENTS] [INFLIGHT...]
 *
 * Defaults: 50000 publishes or 20 s per run, whichever ends first; QoS 1;
 * 210-byte payloads; one client; max_inflight (per client) 16 64 256 1024.
 * Each run uses fresh publishers; time runs from the first publish to the
 * last DONE.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eds_log.h"
#include "gw_publisher.h"

extern char **environ;

typedef struct run {
    uint64_t done, failed;
    bool connected;
} run;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_event(void *ctx, const gw_pub_event *ev)
{
    run *r = ctx;
    switch (ev->type) {
    case GW_PUB_DONE:
        r->done++;
        break;
    case GW_PUB_FAILED:
        r->failed++;
        break;
    case GW_PUB_CONNECTED:
        r->connected = true;
        break;
    case GW_PUB_DISCONNECTED:
        r->connected = false;
        break;
    case GW_PUB_MESSAGE:
    case GW_PUB_RESTORED:
        break;
    }
}

#define MAX_CLIENTS 8

static bool pump(gw_publisher **p, int k, run *r, int timeout_ms)
{
    struct pollfd pfd[MAX_CLIENTS];
    for (int i = 0; i < k; i++)
        pfd[i] = (struct pollfd){.fd = gw_publisher_fd(p[i]), .events = POLLIN};
    int rc = poll(pfd, (nfds_t)k, timeout_ms);
    if (rc < 0 && errno != EINTR)
        return false;
    for (int i = 0; rc > 0 && i < k; i++)
        if (pfd[i].revents)
            gw_publisher_dispatch(p[i], on_event, &r[i]);
    return true;
}

static void destroy_all(gw_publisher **p, int k)
{
    for (int i = 0; i < k; i++)
        gw_publisher_destroy(p[i]);
}

/* k publishers (Paho clients) in this process, publishes dealt round robin: what
 * sharding the gateway's records over k clients would give at most. */
static int bench_one(int port, size_t inflight, long count, double max_s, int qos,
                     size_t payload_len, int k)
{
    gw_publisher *p[MAX_CLIENTS] = {0};
    run r[MAX_CLIENTS] = {0};
    for (int i = 0; i < k; i++) {
        char id[64];
        snprintf(id, sizeof(id), "bench-paho-%d-%zu-%d", (int)getpid(), inflight, i);
        gw_publisher_config cfg = {
            .port = port,
            .client_id = id,
            .username = "eds-gateway",
            .password = "gw-test-secret",
            .max_inflight = inflight,
        };
        eds_error err;
        if (gw_publisher_create(&cfg, &p[i], &err) != EDS_OK) {
            fprintf(stderr, "bench_paho: %s\n", err.msg);
            destroy_all(p, i);
            return -1;
        }
        gw_publisher_start(p[i]);
    }
    double t0 = now_s();
    int up = 0;
    while (up < k && now_s() - t0 < 10) {
        pump(p, k, r, 100);
        up = 0;
        for (int i = 0; i < k; i++)
            up += r[i].connected;
    }
    if (up < k) {
        fprintf(stderr, "bench_paho: not connected to 127.0.0.1:%d\n", port);
        destroy_all(p, k);
        return -1;
    }

    char *payload = malloc(payload_len);
    if (!payload) {
        destroy_all(p, k);
        return -1;
    }
    memset(payload, 'x', payload_len);
    if (payload_len >= 2) {
        payload[0] = '{';
        payload[payload_len - 1] = '}';
    }
    long sent = 0;
    uint64_t done = 0, failed = 0;
    double start = now_s(), deadline = start + max_s;
    while (done + failed < (uint64_t)count && now_s() < deadline) {
        int stuck = 0; /* clients in a row that took nothing */
        while (sent < count && stuck < k) {
            int rc = gw_publisher_publish(p[sent % k], "energy/bench/data", payload, payload_len,
                                          qos, false, (uint64_t)sent);
            if (rc != EDS_OK) { /* full, or disconnected: counted as not done */
                stuck++;
                continue;
            }
            stuck = 0;
            sent++;
        }
        pump(p, k, r, 100);
        done = failed = 0;
        for (int i = 0; i < k; i++) {
            done += r[i].done;
            failed += r[i].failed;
        }
    }
    double secs = now_s() - start;
    printf("%10zu %7d %5d %10ld %10llu %8llu %8.2f %12.0f\n", inflight, k, qos, sent,
           (unsigned long long)done, (unsigned long long)failed, secs, (double)done / secs);
    fflush(stdout);
    free(payload);
    destroy_all(p, k);
    return 0;
}

/* Starts `python3 edsrig.py broker`; returns its port, or -1. */
static int start_broker(pid_t *pid, FILE **to, FILE **from)
{
    const char *src = getenv("EDS_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/integration/edsrig.py", src ? src : EDS_SOURCE_DIR);
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addclose(&fa, in[1]);
    posix_spawn_file_actions_addclose(&fa, out[0]);
    char *argv[] = {"python3", path, "broker", NULL};
    int rc = posix_spawn(pid, "/usr/bin/python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0)
        return -1;
    *to = fdopen(in[1], "w");
    *from = fdopen(out[0], "r");
    char line[256];
    int port = -1, bpid;
    if (*to && *from && fgets(line, sizeof(line), *from) &&
        sscanf(line, "READY %d %d", &port, &bpid) == 2)
        return port;
    return -1;
}

static long parse_long(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "bench_paho: bad number %s\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long count = 50000, secs = 20, qos = 1, size = 210, clients = 1;
    int opt;
    while ((opt = getopt(argc, argv, "n:t:q:s:k:")) != -1) {
        switch (opt) {
        case 'n':
            count = parse_long(optarg, 1, 100000000);
            break;
        case 't':
            secs = parse_long(optarg, 1, 3600);
            break;
        case 'q':
            qos = parse_long(optarg, 0, 2);
            break;
        case 's':
            size = parse_long(optarg, 1, 1 << 20);
            break;
        case 'k':
            clients = parse_long(optarg, 1, MAX_CLIENTS);
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-n COUNT] [-t SECONDS] [-q QOS] [-s BYTES] [-k CLIENTS] "
                    "[INFLIGHT...]\n",
                    argv[0]);
            return 2;
        }
    }
    eds_log_init("bench_paho", EDS_LOG_WARNING);
    signal(SIGPIPE, SIG_IGN);
    pid_t pid;
    FILE *to = NULL, *from = NULL;
    int port = start_broker(&pid, &to, &from);
    if (port < 0) {
        fprintf(stderr, "bench_paho: could not start mosquitto through edsrig.py\n");
        return 1;
    }
    printf("# mosquitto (broker-config) on 127.0.0.1:%d, %ld-byte payloads, up to %ld "
           "publishes or %ld s per run\n",
           port, size, count, secs);
    printf("%10s %7s %5s %10s %10s %8s %8s %12s\n", "inflight", "clients", "qos", "sent", "done",
           "failed", "seconds", "done/s");
    size_t defaults[] = {16, 64, 256, 1024};
    int rc = 0;
    if (optind < argc) {
        for (int i = optind; i < argc && rc == 0; i++)
            rc = bench_one(port, (size_t)parse_long(argv[i], 1, 65000), count, (double)secs,
                           (int)qos, (size_t)size, (int)clients);
    } else {
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]) && rc == 0; i++)
            rc = bench_one(port, defaults[i], count, (double)secs, (int)qos, (size_t)size,
                           (int)clients);
    }
    fclose(to); /* EOF: the rig stops mosquitto */
    int st;
    waitpid(pid, &st, 0);
    fclose(from);
    return rc == 0 ? 0 : 1;
}
