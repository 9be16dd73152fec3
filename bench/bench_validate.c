/*
 * bench_validate - documents per second through the schema validator, one
 * thread, on ~200-byte energy records: with cJSON parsing (what the gateway
 * does per data line) and validation alone, for valid and invalid records.
 *
 *   bench_validate [--seconds S] [--count N] [--repeat R] [SCHEMA]
 *
 * Each case stops after N documents or S seconds (wall clock), whichever
 * comes first (defaults: 5,000,000 and 2 s). Rates are per second of this
 * thread's CPU time, so that other work on the machine does not halve
 * them; the wall time is printed too. Each case is run R times (default 3)
 * and the fastest run is reported, the usual way to see through a busy
 * machine. SCHEMA defaults to a built-in copy of schemas/energy.json.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "eds_err.h"
#include "eds_schema.h"

#define NDOCS 64

static const char energy_schema[] =
    "{\n"
    "  \"timestamp\":       {\"type\": \"string\", \"required\": true, \"format\": "
    "\"date-time\"},\n"
    "  \"day-ahead-price\": {\"type\": \"float\", \"min\": 0.0},\n"
    "  \"power_factor\":    {\"type\": \"float\", \"between\": [0.0, 1.0]}\n"
    "}\n";

typedef struct doc {
    char text[320];
    size_t len;
    cJSON *parsed;
} doc;

static double clock_secs(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double now(void)
{
    return clock_secs(CLOCK_MONOTONIC);
}

/* ~200-byte records: the schema's three fields and a few more attributes
 * the schema does not name (they are allowed at the top level). */
static void make_docs(doc *docs, bool valid)
{
    for (int i = 0; i < NDOCS; i++) {
        double price = valid ? 40.0 + i * 0.37 : -1.0 - i;
        double pf = valid ? 0.80 + (i % 20) * 0.01 : 1.05 + i * 0.01;
        int n =
            snprintf(docs[i].text, sizeof(docs[i].text),
                     "{\"timestamp\":\"2026-11-24T10:%02d:%02d.%03dZ\",\"day-ahead-price\":%.2f,"
                     "\"power_factor\":%.2f,\"device\":\"myrio-%02d\",\"voltage_l1\":%.2f,"
                     "\"voltage_l2\":%.2f,\"current_l1\":%.3f,\"energy_kwh\":%.3f}",
                     i % 60, (i * 7) % 60, i * 13 % 1000, price, pf, i % 3 + 1, 229.5 + i * 0.01,
                     230.1 - i * 0.01, 12.5 + i * 0.1, 123456.789 + i);
        docs[i].len = (size_t)n;
        docs[i].parsed = cJSON_ParseWithLength(docs[i].text, docs[i].len);
        if (!docs[i].parsed) {
            fprintf(stderr, "bench_validate: internal document %d does not parse\n", i);
            exit(2);
        }
    }
}

typedef struct result {
    uint64_t n;
    double secs;     /* wall clock */
    double cpu_secs; /* this thread's CPU time: the rate is per core-second */
    uint64_t invalid;
} result;

/* Runs one case: parse (when asked) and validate documents round robin. */
static result run_case(const eds_schema *s, doc *docs, bool parse, bool validate,
                       uint64_t max_count, double max_secs)
{
    result r = {0};
    double cpu_start = clock_secs(CLOCK_THREAD_CPUTIME_ID);
    double start = now();
    double deadline = start + max_secs;
    uint64_t i = 0;
    for (; i < max_count; i++) {
        doc *d = &docs[i % NDOCS];
        cJSON *j = d->parsed;
        if (parse) {
            j = cJSON_ParseWithLength(d->text, d->len);
            if (!j) {
                fprintf(stderr, "bench_validate: out of memory\n");
                exit(2);
            }
        }
        if (validate) {
            cJSON *errors = NULL;
            int rc = eds_schema_validate(s, j, &errors);
            if (rc == EDS_ERR_INVALID)
                r.invalid++;
            else if (rc != EDS_OK) {
                fprintf(stderr, "bench_validate: %s\n", eds_strerror(rc));
                exit(2);
            }
            cJSON_Delete(errors);
        }
        if (parse)
            cJSON_Delete(j);
        if ((i & 1023) == 1023 && now() >= deadline) {
            i++;
            break;
        }
    }
    r.n = i;
    r.secs = now() - start;
    r.cpu_secs = clock_secs(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
    return r;
}

/* The fastest of `repeat` runs of one case. */
static result best_of(int repeat, const eds_schema *s, doc *docs, bool parse, bool validate,
                      uint64_t max_count, double max_secs)
{
    result best = {0};
    for (int k = 0; k < repeat; k++) {
        result r = run_case(s, docs, parse, validate, max_count, max_secs);
        if (k == 0 || (double)r.n / r.cpu_secs > (double)best.n / best.cpu_secs)
            best = r;
    }
    return best;
}

static void report(const char *name, result r, double avg_len)
{
    double rate = r.cpu_secs > 0 ? (double)r.n / r.cpu_secs : 0;
    printf("%-28s %10.0f docs/s %8.1f ns/doc %7.1f MB/s  (%llu docs, %llu invalid, %.2f s CPU, "
           "%.2f s wall)\n",
           name, rate, rate > 0 ? 1e9 / rate : 0, rate * avg_len / 1e6, (unsigned long long)r.n,
           (unsigned long long)r.invalid, r.cpu_secs, r.secs);
}

static bool parse_num(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0))
        return false;
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    double secs = 2.0, count = 5e6, repeat = 3;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc && parse_num(argv[i + 1], &secs)) {
            i++;
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc &&
                   parse_num(argv[i + 1], &count)) {
            i++;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc &&
                   parse_num(argv[i + 1], &repeat) && repeat <= 100) {
            i++;
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr,
                    "usage: bench_validate [--seconds S] [--count N] [--repeat R] [SCHEMA]\n");
            return 2;
        }
    }
    eds_schema *s = NULL;
    eds_error err = {0};
    int rc = path ? eds_schema_load_file(path, &s, &err)
                  : eds_schema_load_json(energy_schema, strlen(energy_schema),
                                         "schemas/energy.json (built in)", &s, &err);
    if (rc != EDS_OK) {
        fprintf(stderr, "bench_validate: %s\n", err.msg);
        return 2;
    }
    static doc valid[NDOCS], invalid[NDOCS];
    make_docs(valid, true);
    make_docs(invalid, false);
    double vlen = 0, ilen = 0;
    for (int i = 0; i < NDOCS; i++) {
        vlen += (double)valid[i].len / NDOCS;
        ilen += (double)invalid[i].len / NDOCS;
    }
    printf("schema %s; documents: %.0f bytes (valid), %.0f bytes (invalid); "
           "each case: up to %.0f docs or %.1f s, best of %d runs, one thread\n",
           eds_schema_name(s), vlen, ilen, count, secs, (int)repeat);
    uint64_t max = (uint64_t)count;
    int rep = (int)repeat;
    report("valid: parse + validate", best_of(rep, s, valid, true, true, max, secs), vlen);
    report("valid: validate only", best_of(rep, s, valid, false, true, max, secs), vlen);
    report("valid: parse only (cJSON)", best_of(rep, s, valid, true, false, max, secs), vlen);
    report("invalid: parse + validate", best_of(rep, s, invalid, true, true, max, secs), ilen);
    report("invalid: validate only", best_of(rep, s, invalid, false, true, max, secs), ilen);
    for (int i = 0; i < NDOCS; i++) {
        cJSON_Delete(valid[i].parsed);
        cJSON_Delete(invalid[i].parsed);
    }
    eds_schema_destroy(s);
    return 0;
}
