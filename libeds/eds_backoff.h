/*
 * eds_backoff.h - reconnect delays: exponential backoff with jitter.
 *
 * The n-th delay in a row is drawn uniformly from [d/2, d] where
 * d = min(max, min * 2^n) ("equal jitter"): many agents that lost the same
 * gateway do not all come back in the same millisecond, yet none waits
 * less than half the nominal delay. A successful session resets it. A lone
 * client (the gateway's publisher: one per broker) may set jitter to false
 * and wait exactly d.
 * The random source is a small xorshift state, seeded by the caller, so
 * tests are reproducible.
 */
#ifndef EDS_BACKOFF_H
#define EDS_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

typedef struct eds_backoff {
    uint32_t min_ms, max_ms;
    uint32_t attempt; /* failures in a row */
    uint64_t rng;     /* xorshift64 state, never 0 */
    bool jitter;      /* true after init */
} eds_backoff;

/* min_ms >= 1, max_ms >= min_ms (both are clamped to that). */
void eds_backoff_init(eds_backoff *b, uint32_t min_ms, uint32_t max_ms, uint64_t seed);

/* The delay before the next attempt, in ms; counts one more failure. */
uint32_t eds_backoff_next(eds_backoff *b);

/* After a successful session: the next delay starts from min again. */
void eds_backoff_reset(eds_backoff *b);

/* A random 64-bit number from the same generator (also used for jitter). */
uint64_t eds_rand64(uint64_t *state);

#endif
