#include "eds_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Process-wide, written once by eds_log_init before any thread starts. */
static const char *log_progname = "eds";
static enum eds_log_level log_level = EDS_LOG_NOTICE;
static int log_journal;

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug"};
/* syslog priorities: err, warning, notice, info, debug */
static const int level_prio[] = {3, 4, 5, 6, 7};

void eds_log_init(const char *progname, enum eds_log_level level)
{
    log_progname = progname;
    log_level = level;
    log_journal = getenv("JOURNAL_STREAM") != NULL;
}

int eds_log_level_parse(const char *name, enum eds_log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum eds_log_level)i;
            return 0;
        }
    }
    return -1;
}

enum eds_log_level eds_log_get_level(void)
{
    return log_level;
}

void eds_log(enum eds_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[1024];
    size_t n;
    int k;
    if (log_journal)
        k = snprintf(line, sizeof(line), "<%d>%s: ", level_prio[level], level_names[level]);
    else
        k = snprintf(line, sizeof(line), "%s[%ld]: %s: ", log_progname, (long)getpid(),
                     level_names[level]);
    n = k > 0 ? (size_t)k : 0;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    /* One write per line so lines from threads never interleave. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
