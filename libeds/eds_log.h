/*
 * eds_log.h - leveled logging to stderr, one line per event.
 *
 * Lines look like `eds-gateway[1234]: warning: message`; under systemd
 * (JOURNAL_STREAM set) they carry a `<N>` syslog priority prefix instead so
 * journald keeps the level. The level and the program name are process-wide
 * settings made once at start-up (eds_log_init) and read-only afterwards;
 * logging itself is thread-safe (one write(2) per line).
 * Never pass secrets (passwords, keys) to these functions.
 */
#ifndef EDS_LOG_H
#define EDS_LOG_H

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

#define eds_log_error(...) eds_log(EDS_LOG_ERROR, __VA_ARGS__)
#define eds_log_warning(...) eds_log(EDS_LOG_WARNING, __VA_ARGS__)
#define eds_log_notice(...) eds_log(EDS_LOG_NOTICE, __VA_ARGS__)
#define eds_log_info(...) eds_log(EDS_LOG_INFO, __VA_ARGS__)
#define eds_log_debug(...)                                                                         \
    do {                                                                                           \
        if (eds_log_get_level() >= EDS_LOG_DEBUG)                                                  \
            eds_log(EDS_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
