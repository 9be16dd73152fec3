#include "agent_sim.h"

#include "eds_backoff.h"

#include <stdio.h>

/* Uniform in [lo, hi). */
static double uniform(agent_sim *s, double lo, double hi)
{
    double u = (double)(eds_rand64(&s->rng) >> 11) / 9007199254740992.0;
    return lo + (hi - lo) * u;
}

static double clamp_reflect(double v, double lo, double hi)
{
    if (v < lo)
        v = lo + (lo - v);
    if (v > hi)
        v = hi - (v - hi);
    return v < lo ? lo : v > hi ? hi : v;
}

void agent_sim_init(agent_sim *s, uint64_t seed)
{
    s->rng = seed ? seed : 0x2545F4914F6CDD1DULL;
    s->price = uniform(s, 40.0, 110.0);
    s->current = uniform(s, 4.0, 12.0);
    s->energy = uniform(s, 1000.0, 5000.0);
    s->sample = 0;
}

size_t agent_sim_record(agent_sim *s, const struct timespec *now, double dt_s, char *buf,
                        size_t cap)
{
    if (dt_s < 0)
        dt_s = 0;
    s->price = clamp_reflect(s->price + uniform(s, -2.5, 2.5), 20.0, 150.0);
    s->current = clamp_reflect(s->current + uniform(s, -0.6, 0.6), 2.0, 16.0);
    double pf = uniform(s, 0.85, 1.0);
    double voltage = 230.0 + uniform(s, -4.0, 4.0);
    double power = voltage * s->current * pf;
    s->energy += power * dt_s / 3600000.0;
    s->sample++;

    struct tm tm;
    time_t t = now->tv_sec;
    gmtime_r(&t, &tm);
    int n = snprintf(buf, cap,
                     "{\"timestamp\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
                     "\"day-ahead-price\":%.2f,\"power_factor\":%.3f,\"voltage\":%.1f,"
                     "\"current\":%.2f,\"power\":%.1f,\"energy\":%.4f,\"sample\":%llu}",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (long)(now->tv_nsec / 1000000), s->price, pf, voltage, s->current, power,
                     s->energy, (unsigned long long)s->sample);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}
