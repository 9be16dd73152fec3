/*
 * eds_log.h - leveled logging to stderr, one line per event.
 *
 * Lines look like `eds-gateway[1234]: warning: message`; under systemd
 * (JOURNAL_STREAM set) they carry a `<N>` syslog priority prefix instead so
 * journald keeps the level. The level and the program name are process-wide
 * settings made once at start-up (eds_log_init) and read-only afterwards;
 * logging itself is thread-safe (one write(2) per line, SIGPIPE-safe: eds_write.h).
 * Never pass secrets (passwords, keys) to these functions.
 */
#ifndef EDS_LOG_H
#define EDS_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum eds_log_level {
    EDS_LOG_ERROR = 0,
    EDS_LOG_WARNING = 1,
    EDS_LOG_NOTICE = 2,
    EDS_LOG_INFO = 3,
    EDS_LOG_DEBUG = 4,
};

/* Sets the program name shown in each line and the most verbose level shown. */
void eds_log_init(const char *progname, enum eds_log_level level);

/* Parses "error", "warning", "notice", "info" or "debug"; returns 0 or -1. */
int eds_log_level_parse(const char *name, enum eds_log_level *out);

enum eds_log_level eds_log_get_level(void);

void eds_log(enum eds_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "s" unless n is 1: "%" PRIu64 " record%s", n, eds_plural(n) says "1 record", "2 records". */
#define eds_plural(n) ((n) == 1 ? "" : "s")

/*
 * Holding the log back: while held, lines wait (up to 16 KiB, further ones are
 * only counted) and eds_log_release writes them, once as many releases as
 * holds were made. For a writer that puts a line into the file stderr shares
 * in several pieces (the agent's stdout with 2>&1): no log line lands inside
 * it. Process-wide, like the log; thread-safe.
 */
void eds_log_hold(void);
void eds_log_release(void);

#define eds_log_error(...) eds_log(EDS_LOG_ERROR, __VA_ARGS__)
#define eds_log_warning(...) eds_log(EDS_LOG_WARNING, __VA_ARGS__)
#define eds_log_notice(...) eds_log(EDS_LOG_NOTICE, __VA_ARGS__)
#define eds_log_info(...) eds_log(EDS_LOG_INFO, __VA_ARGS__)
#define eds_log_debug(...)                                                                         \
    do {                                                                                           \
        if (eds_log_get_level() >= EDS_LOG_DEBUG)                                                  \
            eds_log(EDS_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

/*
 * Rate-limited warnings, for a condition that may repeat thousands of times a
 * second (a full disk, a flood of bad logins): the first line is written, the
 * ones within the next interval are only counted, and the next line written
 * after it (or eds_log_limit_flush from a timer, once a burst has stopped)
 * says how many were held back: "... (repeated 7349 times in the last 10 s)".
 * So a log shows every kind of event, the first one at once, and how often it
 * happened, and cannot fill a disk.
 *
 * One limiter per kind of event, usually static:
 *     static eds_log_limit lim = EDS_LOG_LIMIT_INIT(10000);
 *     eds_log_limited(&lim, EDS_LOG_WARNING, "state journal: %s", err.msg);
 * Thread-safe (a mutex per limiter).
 */
typedef struct eds_log_limit {
    pthread_mutex_t lock;
    int64_t interval_ms; /* at most one line per interval */
    int64_t next_ms;     /* a line may be written from then on; 0: now */
    int64_t since_ms;    /* when the held-back lines started */
    uint64_t held;       /* lines counted but not written since the last one */
    enum eds_log_level level;
    char last[200];             /* the latest held-back message, for the summary */
    struct eds_log_limit *next; /* in the list eds_log_limits_flush walks (once listed) */
    bool listed;
} eds_log_limit;

#define EDS_LOG_LIMIT_INIT(ms)                                                                     \
    {                                                                                              \
        PTHREAD_MUTEX_INITIALIZER, (ms), 0, 0, 0, EDS_LOG_ERROR, "", NULL, false                   \
    }

/* The decision, pure (now in monotonic ms): true when a line may be written
 * now, and then *repeated is the number held back before it (0: none) and
 * *span_ms the time they cover. False: counted, not to be written. */
bool eds_log_limit_check(eds_log_limit *l, int64_t now, uint64_t *repeated, int64_t *span_ms);

/* Like eds_log, at most once per interval; see above. Returns true when the
 * line was written. */
bool eds_log_limited(eds_log_limit *l, enum eds_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the summary of lines held back once their interval is over (call it
 * from a timer). Returns the number summarised. */
uint64_t eds_log_limit_flush(eds_log_limit *l);

/* eds_log_limit_flush for every limiter that ever held a line back (a limiter
 * is listed then, so it must live as long as the process: static). Call it
 * from a timer, so that a burst that has stopped still gets its summary. */
uint64_t eds_log_limits_flush(void);

#endif
