#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int gh_log_level = GH_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* sd-daemon(3) prefixes: journald reads "<N>" at the start of a line as its priority (err, warning, info, debug). */
static const char *const journal_prefix[] = {"<3>", "<4>", "<6>", "<7>"};
static int to_journal; /* stderr is journald's stream: it adds the time itself */

void gh_log_detect_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char *end;

    /* systemd sets "DEV:INODE" of the stream it gave us; a child whose stderr went elsewhere must not match. */
    to_journal = 0;
    if (js == NULL || fstat(STDERR_FILENO, &st) < 0)
        return;
    errno = 0;
    dev = strtoull(js, &end, 10);
    if (errno != 0 || *end != ':')
        return;
    ino = strtoull(end + 1, &end, 10);
    if (errno != 0 || *end != '\0')
        return;
    to_journal = dev == (unsigned long long)st.st_dev && ino == (unsigned long long)st.st_ino;
}

void gh_log(int level, const char *fmt, ...)
{
    char line[1024];
    time_t now = time(NULL);
    struct tm tm;
    va_list ap;
    int n, m;

    if (level > gh_log_level)
        return;
    if (to_journal) {
        memcpy(line, journal_prefix[level], 3);
        n = 3;
    } else {
        gmtime_r(&now, &tm);
        n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    n += snprintf(line + n, sizeof(line) - (size_t)n, "%s[%s] %d ", to_journal ? "" : " ", level_names[level],
                  (int)getpid());
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

int gh_log_to_journal(void)
{
    return to_journal;
}

int gh_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}
