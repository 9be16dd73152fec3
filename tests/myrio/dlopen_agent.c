/*
 * dlopen_agent - loads libedsagent.so the way LabVIEW's Call Library Function
 * Node does (dlopen, dlsym, C calling convention, plain C types: a config
 * path, strings, int32 codes, a pointer-sized handle) and sends records
 * through it. tests/myrio/test_myrio_qemu.py runs it under qemu-arm against
 * the host's gateway. It links nothing of EDS: edsagent.h only gives it the
 * EDS_ERR_* codes.
 *
 * Usage: dlopen_agent LIBRARY CONF FIRST LAST
 * Sends records FIRST..LAST (energy schema, `sample` = i), then polls until
 * the gateway has acked all of them (60 s at most). Exit 0 when it has.
 */
#include "edsagent.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

typedef eds_agent *(*open_fn)(const char *conf, char *errbuf, size_t errcap);
typedef int (*send_str_fn)(eds_agent *a, const char *json);
typedef int (*poll_fn)(eds_agent *a, int timeout_ms);
typedef uint64_t (*pending_fn)(const eds_agent *a);
typedef void (*destroy_fn)(eds_agent *a);
typedef const char *(*strerror_fn)(int code);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "dlopen_agent: %s: %s\n", name, dlerror());
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "Usage: dlopen_agent LIBRARY CONF FIRST LAST\n");
        return 2;
    }
    long first = strtol(argv[3], NULL, 10), last = strtol(argv[4], NULL, 10);
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen_agent: %s\n", dlerror());
        return 1;
    }
    open_fn agent_open = (open_fn)sym(lib, "eds_agent_open");
    send_str_fn send_str = (send_str_fn)sym(lib, "eds_agent_send_str");
    poll_fn agent_poll = (poll_fn)sym(lib, "eds_agent_poll");
    pending_fn pending = (pending_fn)sym(lib, "eds_agent_pending");
    destroy_fn destroy = (destroy_fn)sym(lib, "eds_agent_destroy");
    strerror_fn errstr = (strerror_fn)sym(lib, "eds_agent_strerror");

    char errbuf[256];
    eds_agent *a = agent_open(argv[2], errbuf, sizeof(errbuf));
    if (!a) {
        fprintf(stderr, "dlopen_agent: eds_agent_open: %s\n", errbuf);
        return 1;
    }
    int status = 1;
    double deadline = now() + 60;
    for (long i = first; i <= last; i++) {
        char rec[256];
        snprintf(rec, sizeof(rec),
                 "{\"timestamp\":\"2026-11-24T%02ld:%02ld:%02ldZ\",\"day-ahead-price\":%.1f,"
                 "\"power_factor\":0.97,\"sample\":%ld}",
                 i / 3600 % 24, i / 60 % 60, i % 60, 20 + (double)(i % 1000) / 10.0, i);
        int rc;
        while ((rc = send_str(a, rec)) == EDS_ERR_FULL && now() < deadline)
            agent_poll(a, 50);
        if (rc != EDS_OK) {
            fprintf(stderr, "dlopen_agent: record %ld: %s\n", i, errstr(rc));
            goto out;
        }
        agent_poll(a, 0);
    }
    while (pending(a) > 0 && now() < deadline) {
        int rc = agent_poll(a, 100);
        if (rc != EDS_OK) {
            fprintf(stderr, "dlopen_agent: poll: %s\n", errstr(rc));
            goto out;
        }
    }
    printf("dlopen_agent: sent %ld, pending %llu\n", last - first + 1,
           (unsigned long long)pending(a));
    status = pending(a) == 0 ? 0 : 1;
out:
    destroy(a);
    dlclose(lib);
    return status;
}
