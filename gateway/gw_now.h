/* gw_now.h - monotonic milliseconds for the gateway loop's timers and
 * timeouts (a wall-clock step must neither fire nor stretch them). */
#ifndef GW_NOW_H
#define GW_NOW_H

#include <stdint.h>
#include <time.h>

static inline int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
