/*
 * accesslog: one line per request in the combined format, buffered per worker
 * and written once per loop iteration (or when the buffer fills) with O_APPEND,
 * so lines of several workers never interleave.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy.h"

int proxy__access_open(proxy__worker *w)
{
    const char *path = w->gen->rt->cfg->access_log;
    w->access_fd = -1;
    if (path == NULL)
        return 0;
    if (strcmp(path, "-") == 0) {
        w->access_fd = STDOUT_FILENO;
        return 0;
    }
    w->access_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (w->access_fd < 0) {
        gh_log_error("cannot open access log %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Appends s for a quoted log field: quotes, backslashes and bytes outside ASCII print as \xHH. */
static size_t put_escaped(char *dst, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[ch >> 4];
            dst[o++] = hex[ch & 15];
        } else {
            dst[o++] = (char)ch;
        }
    }
    return o;
}

static gh_h1_str find_header(const gh_h1_request *r, const char *lower)
{
    for (size_t i = 0; i < r->nheaders; i++)
        if (gh_h1_str_ieq(r->headers[i].name, lower))
            return r->headers[i].value;
    return (gh_h1_str){"-", 1};
}

/* Keeps `"METHOD target HTTP/1.x" "referer" "user-agent"` for the line written at the end. */
void proxy__access_begin(proxy__exchange *ex, const gh_h1_request *r)
{
    char tmp[4096];
    size_t o = 0;
    gh_h1_str ref, ua;

    if (ex->c->w->access_fd < 0)
        return;
    ref = find_header(r, "referer");
    ua = find_header(r, "user-agent");
    tmp[o++] = '"';
    o += put_escaped(tmp + o, 1024, r->method.p, r->method.len);
    tmp[o++] = ' ';
    o += put_escaped(tmp + o, 2048, r->target.p, r->target.len);
    o += (size_t)snprintf(tmp + o, sizeof(tmp) - o, " HTTP/1.%d\" \"", r->minor);
    o += put_escaped(tmp + o, 512, ref.p, ref.len);
    tmp[o++] = '"';
    tmp[o++] = ' ';
    tmp[o++] = '"';
    o += put_escaped(tmp + o, 400, ua.p, ua.len);
    tmp[o++] = '"';
    ex->log = strndup(tmp, o);
}

static const char *log_date(proxy__worker *w)
{
    int64_t now = gh_loop_wall(w->loop);
    if (now != w->date_sec) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(w->date, sizeof(w->date), "%d/%b/%Y:%H:%M:%S +0000", &tm);
        w->date_sec = now;
    }
    return w->date;
}

static void append_line(proxy__worker *w, char *line, size_t cap, int n);

void proxy__access_end(proxy__exchange *ex)
{
    proxy__worker *w = ex->c->w;
    char line[5120];
    int n;

    if (w->access_fd < 0 || ex->log == NULL)
        return;
    n = snprintf(line, sizeof(line), "%s - - [%s] %.*s %d %llu %s\n", ex->c->ip, log_date(w),
                 (int)(strchr(ex->log + 1, '"') - ex->log + 1), ex->log, ex->status, (unsigned long long)ex->bytes_out,
                 strchr(ex->log + 1, '"') + 2);
    free(ex->log);
    ex->log = NULL;
    append_line(w, line, sizeof(line), n);
}

/*
 * A request refused by the parser: as nginx does, the log shows its first line
 * as received (escaped, at most 2 KiB), or "-" when there is none.
 */
void proxy__access_reject(proxy__client *c, int status, size_t bytes)
{
    proxy__worker *w = c->w;
    const char *p = gh_buf_head(&c->in), *nl;
    size_t len = gh_buf_len(&c->in), o = 0;
    char first[2048 * 4 + 4], line[sizeof(first) + 256];

    if (w->access_fd < 0)
        return;
    nl = len ? memchr(p, '\n', len) : NULL;
    len = nl ? (size_t)(nl - p) : 0;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    if (len > 2048)
        len = 2048;
    if (len == 0)
        first[o++] = '-';
    else
        o = put_escaped(first, sizeof(first), p, len);
    append_line(w, line, sizeof(line),
                snprintf(line, sizeof(line), "%s - - [%s] \"%.*s\" %d %zu \"-\" \"-\"\n", c->ip, log_date(w), (int)o,
                         first, status, bytes));
}

/* n is what snprintf returned for a buffer of cap bytes: a cut line keeps its newline. */
static void append_line(proxy__worker *w, char *line, size_t cap, int n)
{
    if (n <= 0)
        return;
    if ((size_t)n >= cap) {
        n = (int)cap - 1;
        line[n - 1] = '\n';
    }
    if (gh_buf_append(&w->access_buf, line, (size_t)n) < 0) {
        proxy__access_flush(w);
        gh_buf_append(&w->access_buf, line, (size_t)n);
    }
}

/*
 * On reload: the file may have moved (a new path, or log rotation renamed it),
 * so the current one is closed and the configured one opened again.
 */
void proxy__access_reopen(proxy__worker *w)
{
    if (w->access_fd >= 0)
        proxy__access_flush(w);
    if (w->access_fd > STDERR_FILENO)
        close(w->access_fd);
    proxy__access_open(w);
}

void proxy__access_flush(proxy__worker *w)
{
    size_t len = gh_buf_len(&w->access_buf);
    if (len == 0)
        return;
    if (write(w->access_fd, gh_buf_head(&w->access_buf), len) < 0)
        gh_log_error("access log write failed: %s", strerror(errno));
    gh_buf_release(&w->access_buf);
}
