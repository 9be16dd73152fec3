#include "eds_log.h"

#include "eds_clock.h"
#include "eds_write.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Process-wide, written once by eds_log_init before any thread starts. */
static const char *log_progname = "eds";
static enum eds_log_level log_level = EDS_LOG_NOTICE;
static int log_journal;

/* Lines held back (eds_log_hold): bounded, the rest only counted. Under hold_lock, which
 * every line is written under too, so none slips past a hold. */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static int hold_count;
static char held[16384];
static size_t held_len;
static uint64_t held_dropped;

/* One write per line (at most 1 KiB: atomic on a pipe) so lines from threads never
 * interleave; no SIGPIPE when stderr's reader has gone. */
static void write_line(const char *line, size_t n)
{
    ssize_t w = eds_write(STDERR_FILENO, line, n);
    (void)w;
}

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

static void log_v(enum eds_log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];
    size_t n;
    int k;
    if (log_journal)
        k = snprintf(line, sizeof(line), "<%d>%s: ", level_prio[level], level_names[level]);
    else
        k = snprintf(line, sizeof(line), "%s[%ld]: %s: ", log_progname, (long)getpid(),
                     level_names[level]);
    n = k > 0 ? (size_t)k : 0;
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (k > 0)
        n += (size_t)k;
    if (n < sizeof(line) && suffix) {
        k = snprintf(line + n, sizeof(line) - n, "%s", suffix);
        if (k > 0)
            n += (size_t)k;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    pthread_mutex_lock(&hold_lock);
    if (hold_count > 0) {
        if (held_len + n <= sizeof(held)) {
            memcpy(held + held_len, line, n);
            held_len += n;
        } else {
            held_dropped++;
        }
    } else {
        write_line(line, n);
    }
    pthread_mutex_unlock(&hold_lock);
}

void eds_log_hold(void)
{
    pthread_mutex_lock(&hold_lock);
    hold_count++;
    pthread_mutex_unlock(&hold_lock);
}

void eds_log_release(void)
{
    pthread_mutex_lock(&hold_lock);
    if (hold_count > 0 && --hold_count == 0) {
        for (size_t i = 0; i < held_len;) { /* each line its own write, as when written */
            const char *lf = memchr(held + i, '\n', held_len - i);
            size_t n = (size_t)(lf - (held + i)) + 1;
            write_line(held + i, n);
            i += n;
        }
        held_len = 0;
        if (held_dropped) {
            char line[160];
            int k;
            if (log_journal)
                k = snprintf(line, sizeof(line), "<4>warning: ");
            else
                k = snprintf(line, sizeof(line), "%s[%ld]: warning: ", log_progname,
                             (long)getpid());
            if (k > 0 && (size_t)k < sizeof(line))
                k += snprintf(line + k, sizeof(line) - (size_t)k,
                              "%llu log line%s dropped while held back\n",
                              (unsigned long long)held_dropped, eds_plural(held_dropped));
            if (k > 0 && (size_t)k < sizeof(line))
                write_line(line, (size_t)k);
            held_dropped = 0;
        }
    }
    pthread_mutex_unlock(&hold_lock);
}

void eds_log(enum eds_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_v(level, NULL, fmt, ap);
    va_end(ap);
}

static void log_s(enum eds_log_level level, const char *suffix, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_s(enum eds_log_level level, const char *suffix, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_v(level, suffix, fmt, ap);
    va_end(ap);
}

bool eds_log_limit_check(eds_log_limit *l, int64_t now, uint64_t *repeated, int64_t *span_ms)
{
    if (now < l->next_ms) {
        if (l->held++ == 0)
            l->since_ms = now;
        return false;
    }
    *repeated = l->held;
    *span_ms = l->held ? now - l->since_ms : 0;
    l->held = 0;
    l->next_ms = now + l->interval_ms;
    return true;
}

/* " (repeated N times in the last S s)" into buf, or "" when n is 0. */
static void repeated_suffix(char *buf, size_t cap, uint64_t n, int64_t span_ms)
{
    buf[0] = '\0';
    if (n)
        snprintf(buf, cap, " (repeated %llu times in the last %lld s)", (unsigned long long)n,
                 (long long)((span_ms + 999) / 1000));
}

static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;
static eds_log_limit *limits; /* those that held a line back, for eds_log_limits_flush */

static void list_limit(eds_log_limit *l)
{
    pthread_mutex_lock(&limits_lock);
    if (!l->listed) {
        l->listed = true;
        l->next = limits;
        limits = l;
    }
    pthread_mutex_unlock(&limits_lock);
}

uint64_t eds_log_limits_flush(void)
{
    uint64_t n = 0;
    pthread_mutex_lock(&limits_lock); /* then each limiter's lock: the only order */
    for (eds_log_limit *l = limits; l; l = l->next)
        n += eds_log_limit_flush(l);
    pthread_mutex_unlock(&limits_lock);
    return n;
}

bool eds_log_limited(eds_log_limit *l, enum eds_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return false;
    char msg[sizeof(l->last)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uint64_t repeated = 0;
    int64_t span = 0;
    pthread_mutex_lock(&l->lock);
    bool write_now = eds_log_limit_check(l, (int64_t)eds_monotonic_ms(), &repeated, &span);
    if (!write_now) {
        memcpy(l->last, msg, sizeof(l->last));
        l->level = level;
    }
    pthread_mutex_unlock(&l->lock);
    if (!write_now)
        list_limit(l);
    if (write_now) {
        char suffix[96];
        repeated_suffix(suffix, sizeof(suffix), repeated, span);
        log_s(level, suffix, "%s", msg);
    }
    return write_now;
}

uint64_t eds_log_limit_flush(eds_log_limit *l)
{
    int64_t now = (int64_t)eds_monotonic_ms();
    char msg[sizeof(l->last)];
    enum eds_log_level level;
    uint64_t repeated = 0;
    int64_t span = 0;
    pthread_mutex_lock(&l->lock);
    bool due = l->held && now >= l->next_ms;
    if (due) {
        repeated = l->held;
        span = now - l->since_ms;
        l->held = 0;
        l->next_ms = now + l->interval_ms;
        memcpy(msg, l->last, sizeof(msg));
        level = l->level;
    }
    pthread_mutex_unlock(&l->lock);
    if (!due)
        return 0;
    char suffix[96];
    repeated_suffix(suffix, sizeof(suffix), repeated, span);
    log_s(level, suffix, "%s", msg);
    return repeated;
}
