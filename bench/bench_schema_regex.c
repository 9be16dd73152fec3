/*
 * bench_schema_regex - what a `regex` rule costs to match, through the
 * public validator: time per value and the process's memory, over COUNT
 * distinct random values of LEN bytes drawn from CHARS.
 *
 *   bench_schema_regex PATTERN LEN COUNT [CHARS]
 *   bench_schema_regex '[ab]*a[ab]{20}' 4096 40 ab
 *
 * Prints one line per value (seconds, resident MB, verdict) and a summary.
 * Figures are in docs/schema.md ("Regex limits").
 */
#define _POSIX_C_SOURCE 200809L
#include "eds_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double rss_mb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s PATTERN LEN COUNT [CHARS]\n", argv[0]);
        return 2;
    }
    const char *pattern = argv[1];
    size_t len = strtoul(argv[2], NULL, 10), count = strtoul(argv[3], NULL, 10);
    const char *chars = argc > 4 ? argv[4] : "ab0123456789";
    size_t nchars = strlen(chars);

    cJSON *rule = cJSON_CreateObject(), *top = cJSON_CreateObject();
    cJSON_AddStringToObject(rule, "type", "string");
    cJSON_AddStringToObject(rule, "regex", pattern);
    cJSON_AddItemToObject(top, "v", rule);
    char *text = cJSON_PrintUnformatted(top);
    cJSON_Delete(top);
    eds_schema *s = NULL;
    eds_error err;
    if (!text || eds_schema_load_json(text, strlen(text), "bench", &s, &err) != EDS_OK) {
        fprintf(stderr, "load: %s\n", text ? err.msg : "out of memory");
        return 1;
    }
    free(text);

    char *value = malloc(len + 1);
    cJSON *doc = cJSON_CreateObject();
    cJSON *item = cJSON_AddStringToObject(doc, "v", "");
    if (!value || !item)
        return 1;
    srand(1);
    double total = 0, worst = 0, peak = rss_mb(), start_rss = peak;
    for (size_t i = 0; i < count; i++) {
        for (size_t k = 0; k < len; k++)
            value[k] = chars[(size_t)rand() % nchars];
        value[len] = '\0';
        cJSON_SetValuestring(item, value);
        cJSON *errors = NULL;
        double t0 = now();
        int rc = eds_schema_validate(s, doc, &errors);
        double dt = now() - t0, rss = rss_mb();
        char *why = errors ? cJSON_PrintUnformatted(errors) : NULL;
        printf("%zu %.3fs %.1f MB %s%.60s\n", i + 1, dt, rss, rc == EDS_OK ? "ok" : "invalid ",
               why ? why : "");
        free(why);
        cJSON_Delete(errors);
        total += dt;
        worst = dt > worst ? dt : worst;
        peak = rss > peak ? rss : peak;
    }
    printf("%zu values of %zu bytes: total %.2fs, slowest %.3fs, resident %.1f -> peak %.1f MB\n",
           count, len, total, worst, start_rss, peak);
    cJSON_Delete(doc);
    free(value);
    eds_schema_destroy(s);
    return 0;
}
