/*
 * eds_clock.h - the monotonic clock, for timeouts, intervals and the deadlines
 * of threads that wait on condition variables (gateway and agent alike).
 *
 * Condition variables made by eds_cond_init_monotonic() time out against
 * CLOCK_MONOTONIC, so a wall-clock step (NTP on a Pi or a myRIO that booted
 * without a clock) neither fires nor stretches a wait.
 */
#ifndef EDS_CLOCK_H
#define EDS_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Milliseconds of CLOCK_MONOTONIC (since some unspecified start). */
static inline uint64_t eds_monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The monotonic time ms milliseconds from now, for pthread_cond_timedwait. */
/* Wall clock, ms since the epoch: for times that outlive the process or leave it
 * (command expiry, received_at), never for intervals. */
static inline int64_t eds_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline struct timespec eds_deadline_in(int64_t ms)
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
static inline void eds_cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &ca);
    pthread_condattr_destroy(&ca);
}

#endif
