/* eb_util.c - clock, latency histogram and /proc readings for eds-bench. */
#include "eb.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

uint64_t eb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void eb_hist_init(eb_hist *h)
{
    memset(h, 0, sizeof(*h));
}

static size_t hist_index(uint64_t v)
{
    if (v < EB_HIST_SUB)
        return (size_t)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    size_t idx =
        EB_HIST_SUB + (size_t)(e - 6) * EB_HIST_SUB + (size_t)((v >> (e - 6)) - EB_HIST_SUB);
    return idx < EB_HIST_BUCKETS ? idx : EB_HIST_BUCKETS - 1;
}

static uint64_t hist_upper(size_t idx)
{
    if (idx < EB_HIST_SUB)
        return idx;
    unsigned e = (unsigned)((idx - EB_HIST_SUB) / EB_HIST_SUB) + 6;
    uint64_t sub = (idx - EB_HIST_SUB) % EB_HIST_SUB;
    uint64_t lower = (EB_HIST_SUB + sub) << (e - 6);
    return lower + (1ull << (e - 6)) - 1;
}

void eb_hist_add(eb_hist *h, uint64_t ns)
{
    h->bucket[hist_index(ns)]++;
    h->count++;
    h->sum += ns;
    if (ns > h->max)
        h->max = ns;
}

uint64_t eb_hist_quantile(const eb_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < EB_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = hist_upper(i);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

void eb_proc_mem(int pid, long *rss_kb, long *hwm_kb)
{
    *rss_kb = -1;
    *hwm_kb = -1;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f) != NULL) {
        long v;
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            *rss_kb = v;
        else if (sscanf(line, "VmHWM: %ld kB", &v) == 1)
            *hwm_kb = v;
    }
    fclose(f);
}

double eb_proc_cpu_s(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields continue after the last ')'. */
    const char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long utime, stime;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) !=
        2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
}

int eb_send_some(int fd, const char *buf, size_t len, size_t *off)
{
    while (*off < len) {
        ssize_t n = send(fd, buf + *off, len - *off, MSG_NOSIGNAL);
        if (n > 0) {
            *off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n == 0)
            errno = EPIPE;
        return -1;
    }
    return 0;
}
