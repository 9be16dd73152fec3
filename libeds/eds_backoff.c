/*
 * eds_backoff.c - reconnect delays. See eds_backoff.h.
 */
#include "eds_backoff.h"

uint64_t eds_rand64(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

void eds_backoff_init(eds_backoff *b, uint32_t min_ms, uint32_t max_ms, uint64_t seed)
{
    b->min_ms = min_ms ? min_ms : 1;
    b->max_ms = max_ms < b->min_ms ? b->min_ms : max_ms;
    b->attempt = 0;
    b->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
    b->jitter = true;
}

uint32_t eds_backoff_next(eds_backoff *b)
{
    uint64_t d = b->min_ms;
    for (uint32_t i = 0; i < b->attempt && d < b->max_ms; i++)
        d *= 2;
    if (d > b->max_ms)
        d = b->max_ms;
    if (b->attempt < 64)
        b->attempt++;
    if (!b->jitter)
        return (uint32_t)d;
    uint64_t half = d / 2;
    uint64_t span = d - half + 1;
    return (uint32_t)(half + eds_rand64(&b->rng) % span);
}

void eds_backoff_reset(eds_backoff *b)
{
    b->attempt = 0;
}
