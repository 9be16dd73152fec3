/* eb_record.c - the energy records eds-bench sends: about 200 bytes of compact
 * JSON, valid for schemas/energy.json, with a per-device counter "n" first so
 * the subscriber can count by (device, n) without a JSON parser. */
#include "eb.h"

#include <stdio.h>
#include <time.h>

int eb_device_name(char *buf, size_t cap, const char *prefix, uint32_t dev)
{
    int n = snprintf(buf, cap, "%s-%u", prefix, (unsigned)dev);
    return n > 0 && (size_t)n < cap ? n : -1;
}

size_t eb_record(char *buf, size_t cap, uint32_t dev, uint64_t n)
{
    /* Deterministic, varied values: a cheap hash of (dev, n). */
    uint64_t h = (n * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)dev * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    time_t t = (time_t)(1795514400 + (int64_t)n); /* 2026-11-24T10:00:00Z + n s */
    struct tm tm;
    gmtime_r(&t, &tm);
    unsigned ms = (unsigned)(h % 1000);
    double price = 40.0 + (double)(h % 9000) / 100.0;         /* 40.00 .. 129.99 */
    double pf = 0.8 + (double)((h >> 16) % 2000) / 10000.0;   /* 0.8 .. 0.9999 */
    double volt = 225.0 + (double)((h >> 24) % 1000) / 100.0; /* 225 .. 234.99 */
    double amp = 1.0 + (double)((h >> 32) % 20000) / 1000.0;  /* 1 .. 20.999 */
    double kwh = 1000.0 + (double)n * 0.125 + (double)dev;
    int len =
        snprintf(buf, cap,
                 "{\"n\":%llu,\"timestamp\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03uZ\","
                 "\"day-ahead-price\":%.2f,\"power_factor\":%.4f,\"voltage\":%.2f,"
                 "\"current\":%.3f,\"energy\":%.3f,\"frequency\":50.01,"
                 "\"meter\":\"myrio-%05u/phase-a\",\"status\":\"ok\"}",
                 (unsigned long long)n, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                 tm.tm_min, tm.tm_sec, ms, price, pf, volt, amp, kwh, (unsigned)(dev % 100000));
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}
