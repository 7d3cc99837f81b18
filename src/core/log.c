#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int gh_log_level = GH_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void gh_log(int level, const char *fmt, ...)
{
    char line[1024];
    time_t now = time(NULL);
    struct tm tm;
    va_list ap;
    int n, m;

    if (level > gh_log_level)
        return;
    gmtime_r(&now, &tm);
    n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, " [%s] %d ", level_names[level], (int)getpid());
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line: lines from several workers never interleave mid-line. */
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nowhere left to report it */
    }
}

int gh_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}
