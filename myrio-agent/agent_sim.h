/*
 * agent_sim.h - simulated energy records (--simulate), for demos and tests.
 *
 * Each record looks like one reading of a grid meter with the current
 * day-ahead price:
 *   {"timestamp":"2026-11-24T10:00:00.250Z","day-ahead-price":81.42,
 *    "power_factor":0.962,"voltage":229.8,"current":11.27,"power":2491.6,
 *    "energy":1534.2171,"sample":17}
 * timestamp is RFC 3339 UTC (the wall clock), day-ahead-price a random walk
 * in 20..150 EUR/MWh, power_factor in 0.85..1.0, voltage around 230 V,
 * current 2..16 A, power = V * I * pf in W, energy a kWh counter that only
 * grows, sample a counter from 1 (unique per record: tests count it).
 * Every record is valid for schemas/energy.json. No I/O.
 */
#ifndef AGENT_SIM_H
#define AGENT_SIM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct agent_sim {
    uint64_t rng;
    double price;   /* EUR/MWh */
    double current; /* A */
    double energy;  /* kWh */
    uint64_t sample;
} agent_sim;

void agent_sim_init(agent_sim *s, uint64_t seed);

/* Writes the next record (compact JSON, no newline, NUL-terminated) for
 * wall-clock time now, dt_s seconds after the previous one. Returns its
 * length, or 0 when cap is too small (< 256 is always enough). */
size_t agent_sim_record(agent_sim *s, const struct timespec *now, double dt_s, char *buf,
                        size_t cap);

#endif
