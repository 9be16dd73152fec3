/*
 * gw_clock.h - monotonic deadlines for the gateway's threads that wait on
 * condition variables (the publisher's connection thread, the syncer).
 *
 * Condition variables made by gw_cond_init_monotonic() time out against
 * CLOCK_MONOTONIC, so a wall-clock step (NTP on a Pi that booted without a
 * clock) neither fires nor stretches a wait.
 */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* The monotonic time ms milliseconds from now, for pthread_cond_timedwait. */
static inline struct timespec gw_deadline_in(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* pthread_cond_init with CLOCK_MONOTONIC for its timed waits. */
static inline void gw_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

#endif
