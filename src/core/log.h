/*
 * log: the error log (stderr, levels) and the access log (combined format).
 * Error lines: "2026-11-25T13:47:19Z [error] <pid> message" (to journald: see gh_log_detect_journal).
 */
#ifndef GH_CORE_LOG_H
#define GH_CORE_LOG_H

enum { GH_LOG_ERROR = 0, GH_LOG_WARN = 1, GH_LOG_INFO = 2, GH_LOG_DEBUG = 3 };

extern int gh_log_level;

void gh_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gh_log_error(...) gh_log(GH_LOG_ERROR, __VA_ARGS__)
#define gh_log_warn(...)                                                                                               \
    do {                                                                                                               \
        if (gh_log_level >= GH_LOG_WARN)                                                                               \
            gh_log(GH_LOG_WARN, __VA_ARGS__);                                                                          \
    } while (0)
#define gh_log_info(...)                                                                                               \
    do {                                                                                                               \
        if (gh_log_level >= GH_LOG_INFO)                                                                               \
            gh_log(GH_LOG_INFO, __VA_ARGS__);                                                                          \
    } while (0)
#define gh_log_debug(...)                                                                                              \
    do {                                                                                                               \
        if (gh_log_level >= GH_LOG_DEBUG)                                                                              \
            gh_log(GH_LOG_DEBUG, __VA_ARGS__);                                                                         \
    } while (0)

/*
 * When stderr is the journal's stream ($JOURNAL_STREAM names its device and
 * inode), lines start with the "<N>" priority journald reads (sd-daemon(3))
 * and carry no timestamp: "<6>[info] <pid> message". Call once at start.
 */
void gh_log_detect_journal(void);

/* 1 when gh_log_detect_journal found stderr to be the journal's stream. */
int gh_log_to_journal(void);

/* Parses "error", "warn", "info", "debug". Returns the level or -1. */
int gh_log_level_parse(const char *s);

#endif
