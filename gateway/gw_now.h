/* gw_now.h - the loop's clock: eds_monotonic_ms() as a signed count, so
 * that deadlines and ages are plain differences. */
#ifndef GW_NOW_H
#define GW_NOW_H

#include <stdint.h>

#include "eds_clock.h"

static inline int64_t gw_now_ms(void)
{
    return (int64_t)eds_monotonic_ms();
}

#endif
