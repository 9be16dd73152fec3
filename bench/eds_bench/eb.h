/*
 * eb.h - eds-bench, the project's load tool: shared types of its modules.
 *
 *   eb_main.c    options, the run (gateway phase, then ceiling phase), the table
 *   eb_agents.c  N agent connections to eds-gateway, driven by one epoll thread
 *   eb_mqtt.c    the counting subscriber and the ceiling publishers (libmosquitto)
 *   eb_record.c  the ~200-byte energy records both phases send
 *   eb_hist.c    latency histogram (log-linear buckets, no per-sample allocation)
 *
 * Everything runs against 127.0.0.0/8 only, and every loop is bounded by a
 * deadline (--timeout) as well as by the record count.
 */
#ifndef EB_H
#define EB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- time ---- */

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t eb_now_ns(void);

/* Sends buf[*off, len) on a non-blocking socket until all is sent or it would block,
 * advancing *off. Returns 0, or -1 with errno set when the connection is gone. */
int eb_send_some(int fd, const char *buf, size_t len, size_t *off);

/* ---- latency histogram ----
 * Log-linear: exact below 64 ns, then 64 buckets per power of two, so a
 * reported percentile is within 1.6% of the true sample. Values in ns. */
#define EB_HIST_SUB 64
#define EB_HIST_BUCKETS (EB_HIST_SUB * 40)

typedef struct eb_hist {
    uint64_t count;
    uint64_t max;
    uint64_t sum;
    uint64_t bucket[EB_HIST_BUCKETS];
} eb_hist;

void eb_hist_init(eb_hist *h);
void eb_hist_add(eb_hist *h, uint64_t ns);
/* Value at quantile q (0..1): the upper edge of the bucket holding it; 0 if empty. */
uint64_t eb_hist_quantile(const eb_hist *h, double q);

/* ---- records ---- */

/* Writes the data object (compact JSON, no newline) of record `n` (1-based
 * counter, unique per device) of device index `dev` into buf; returns its
 * length, or 0 if cap is too small. Valid for schemas/energy.json. The
 * counter is the first field: {"n":N,...}. */
size_t eb_record(char *buf, size_t cap, uint32_t dev, uint64_t n);

/* Device id of index dev: "<prefix>-<dev>". */
int eb_device_name(char *buf, size_t cap, const char *prefix, uint32_t dev);

/* ---- options ---- */

typedef struct eb_opts {
    char gw_host[64];
    int gw_port;
    char broker_host[64];
    int broker_port;
    const char *broker_user; /* ceiling publishers (the ACL lets eds-gateway write data) */
    char broker_password[256];
    const char *sub_user; /* subscriber */
    char sub_password[256];
    const char *topic_prefix;
    const char *device_prefix;
    const char *stream; /* NULL: one made up per run */
    size_t connections;
    uint64_t records; /* per connection */
    size_t window;
    int qos;
    double rate; /* records/s, all connections together; 0 = unpaced */
    bool run_gateway;
    bool run_ceiling;
    bool json;
    const char *json_file;
    double timeout_s; /* whole run */
    double drain_s;   /* wait for the last deliveries after the last ack */
    size_t ceiling_clients;
    size_t ceiling_inflight;
    uint64_t ceiling_lead; /* records published but not yet delivered, at most */
    size_t connect_burst;  /* handshakes in progress at once */
    double settle_s;       /* pause after the last welcome, before the data phase */
    size_t source_addrs;   /* bind agents to 127.0.0.1 .. 127.0.0.<source_addrs> */
    int gateway_pid;       /* > 0: sample its RSS and CPU time */
    bool no_subscriber;
} eb_opts;

/* ---- subscriber ---- */

typedef struct eb_sub eb_sub;

typedef struct eb_sub_result {
    uint64_t delivered;         /* messages counted (unique + duplicates) */
    uint64_t unique;            /* distinct (device, n) */
    uint64_t duplicated;        /* a (device, n) seen again */
    uint64_t out_of_order;      /* n lower than one already seen for that device */
    uint64_t foreign;           /* messages that were not bench records of this run */
    uint64_t first_ns, last_ns; /* times of the first and last delivery */
} eb_sub_result;

/* Connects and subscribes (waits for SUBACK, until deadline_ns). Counts
 * records of devices 0..devices-1, counters 1..records. Returns 0 or -1
 * (message on stderr). */
int eb_sub_start(const eb_opts *o, uint64_t deadline_ns, eb_sub **out);
/* Distinct records seen so far (any thread). */
uint64_t eb_sub_unique(eb_sub *s);
uint64_t eb_sub_last_ns(eb_sub *s);
/* Waits until `expected` distinct records arrived, or nothing arrived for
 * quiet_ns, or deadline_ns. */
void eb_sub_wait(eb_sub *s, uint64_t expected, uint64_t quiet_ns, uint64_t deadline_ns);
/* Stops, fills *r, frees. */
void eb_sub_stop(eb_sub *s, eb_sub_result *r);

/* ---- phases ---- */

typedef struct eb_phase_result {
    bool ran;
    bool completed;   /* every record acked (or nacked) before the deadline */
    uint64_t records; /* expected */
    uint64_t sent;
    uint64_t acked;
    uint64_t nacked;
    uint64_t dup_acks;    /* acks flagged duplicate */
    uint64_t bad_acks;    /* ack for a seq not expected next */
    uint64_t conn_errors; /* connections lost or refused (error lines included) */
    char first_error[160];
    size_t connected;
    double connect_s; /* time to get every connection welcomed */
    uint64_t t0_ns;   /* data phase start */
    uint64_t last_ack_ns;
    eb_hist lat; /* write of the data line -> its ack (ceiling: publish -> PUBACK) */
    eb_sub_result sub;
    bool have_sub;
    /* gateway process, when --gateway-pid is given */
    long rss_kb_connected, rss_kb_end, hwm_kb;
    double gw_cpu_s;    /* user+system CPU of the gateway during the data phase */
    double bench_cpu_s; /* eds-bench's own CPU (all threads) during the whole phase */
} eb_phase_result;

/* Runs the agent side of the gateway phase; r->lat etc. filled. The
 * subscriber, if any, is started by the caller. */
int eb_agents_run(const eb_opts *o, uint64_t deadline_ns, eb_sub *sub, eb_phase_result *r);

/* Publishes the same records straight to the broker, at most o->ceiling_lead records
 * ahead of what sub (if not NULL) has received. */
int eb_ceiling_run(const eb_opts *o, uint64_t deadline_ns, eb_sub *sub, eb_phase_result *r);

/* /proc/<pid>/status VmRSS and VmHWM in kB (-1 when unreadable); CPU seconds
 * (utime + stime) from /proc/<pid>/stat (-1 when unreadable). */
void eb_proc_mem(int pid, long *rss_kb, long *hwm_kb);
double eb_proc_cpu_s(int pid);

#endif
