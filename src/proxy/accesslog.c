/*
 * accesslog: one line per request in the combined format, buffered per worker
 * and written once per loop iteration, never blocking the loop.
 *
 * What a request costs: its quoted fields (request line, referer, user agent)
 * are escaped at the start, while the head is still in the client's buffer,
 * into a record from a per-worker free list (no allocation once the worker has
 * seen as many exchanges at once as it will); the line is formatted at the end
 * into the worker's buffer.
 *
 * Writing: the descriptor is nonblocking (a pipe or FIFO with O_NONBLOCK, a
 * socket with MSG_DONTWAIT; a regular file cannot block in that sense). When
 * the reader does not keep up, lines wait in the worker's buffer up to
 * BUF_MAX, then whole lines are dropped and counted, with a warning once a
 * second at most: a stalled log reader never stalls a worker.
 *
 * Lines never interleave: a line is at most PIPE_BUF bytes; to a pipe or FIFO
 * each write() is whole lines of at most PIPE_BUF bytes, which POSIX makes
 * atomic (with O_NONBLOCK it is written whole or not at all), so the lines of
 * several workers sharing the pipe stay whole; to a regular file each write()
 * is the whole buffer with O_APPEND, which Linux appends as one piece. (A
 * stream socket may take part of a chunk; the rest follows, and another
 * worker's chunk could come between: the one case without the guarantee.)
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/proxy.h"

#define LINE_MAX_BYTES PIPE_BUF     /* a longer line is cut (and keeps its newline) */
#define BUF_MAX        (256 * 1024) /* lines waiting for a slow reader; past this they are dropped */
#define REC_TEXT       3840         /* the quoted fields; the rest of a line fits in LINE_MAX_BYTES */
#define REC_FREE_MAX   256          /* records kept for reuse (1 MiB) */
#define WARN_MS        1000

/* The quoted fields of one request, `"METHOD target HTTP/1.x"` then `"referer" "user-agent"`. */
struct proxy__access_rec {
    proxy__access_rec *next_free;
    uint16_t req_len; /* bytes of text that are the quoted request line */
    uint16_t len;
    char text[REC_TEXT];
};

struct proxy__access {
    gh_io io; /* registered for writability when the descriptor can block (pipe, FIFO, socket, tty) */
    proxy__worker *w;
    int pollable; /* io is in the loop: after EAGAIN, wait for its event */
    int chunked;  /* pipe, FIFO or socket: writes of whole lines, PIPE_BUF at most */
    int is_sock;  /* send(MSG_DONTWAIT): no flag changed on a descriptor shared with others */
    int blocked;  /* the last write would have blocked */
    char *buf;    /* [start, end) of BUF_MAX bytes: whole lines */
    size_t start, end;
    uint64_t dropped;     /* lines dropped since the last warning */
    uint64_t dropped_all; /* since the start */
    uint64_t warned;      /* ms of the last warning */
};

static proxy__access_rec *rec_free;
static unsigned rec_nfree;

static proxy__access_rec *rec_get(void)
{
    proxy__access_rec *r = rec_free;
    if (r == NULL)
        return malloc(sizeof(*r));
    rec_free = r->next_free;
    rec_nfree--;
    return r;
}

static void rec_put(proxy__access_rec *r)
{
    if (rec_nfree >= REC_FREE_MAX) {
        free(r);
        return;
    }
    r->next_free = rec_free;
    rec_free = r;
    rec_nfree++;
}

/* ---- writing ---- */

static void warn_dropped(proxy__access *a, int force)
{
    uint64_t now = gh_loop_now(a->w->loop);
    if (a->dropped == 0 || (!force && a->warned != 0 && now - a->warned < WARN_MS))
        return;
    gh_log_warn("worker %d: access log: %llu lines dropped (%llu since the start): its reader does not keep up, "
                "%zu bytes are waiting",
                a->w->id, (unsigned long long)a->dropped, (unsigned long long)a->dropped_all, a->end - a->start);
    a->dropped = 0;
    a->warned = now;
}

static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        k++;
    return k;
}

/* Writes what it can without blocking. */
static void flush(proxy__access *a)
{
    while (a->end > a->start && !a->blocked) {
        size_t n = a->end - a->start;
        ssize_t r;

        if (a->chunked && n > PIPE_BUF)
            n = (size_t)((char *)memrchr(a->buf + a->start, '\n', PIPE_BUF) - (a->buf + a->start)) + 1;
        r = a->is_sock ? send(a->io.fd, a->buf + a->start, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                       : write(a->io.fd, a->buf + a->start, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            a->blocked = a->pollable; /* not pollable: try again next iteration */
            break;
        }
        if (r <= 0) {
            /* EPIPE (the reader went away), ENOSPC...: these lines are lost; say so with the count. */
            size_t lost = count_lines(a->buf + a->start, a->end - a->start);
            if (a->warned == 0 || gh_loop_now(a->w->loop) - a->warned >= WARN_MS)
                gh_log_error("worker %d: access log write failed: %s", a->w->id, strerror(errno));
            a->dropped += lost;
            a->dropped_all += lost;
            a->start = a->end = 0;
            break;
        }
        a->start += (size_t)r;
    }
    if (a->start == a->end)
        a->start = a->end = 0;
}

static void on_writable(gh_io *io, unsigned events)
{
    proxy__access *a = (proxy__access *)io;
    a->blocked = 0;
    flush(a);
}

/* n is what snprintf returned for a buffer of cap bytes: a cut line keeps its newline. */
static void append_line(proxy__worker *w, char *line, size_t cap, int n)
{
    proxy__access *a = w->access;

    if (n <= 0)
        return;
    if ((size_t)n >= cap) {
        n = (int)cap - 1;
        line[n - 1] = '\n';
    }
    if (BUF_MAX - a->end < (size_t)n && a->start > 0) {
        memmove(a->buf, a->buf + a->start, a->end - a->start);
        a->end -= a->start;
        a->start = 0;
    }
    if (BUF_MAX - a->end < (size_t)n)
        flush(a);
    if (BUF_MAX - a->end < (size_t)n) {
        a->dropped++; /* whole lines only: never a piece of one */
        a->dropped_all++;
        return;
    }
    memcpy(a->buf + a->end, line, (size_t)n);
    a->end += (size_t)n;
}

/* ---- opening ---- */

/*
 * "-": standard output, shared with the master and the other workers. A pipe
 * gets a description of its own (/proc/self/fd/1), so that O_NONBLOCK does not
 * change it for whoever else writes there (stderr may be the same pipe); a
 * socket is written with MSG_DONTWAIT; anything else is written as it is.
 */
static int open_stdout(int *is_sock)
{
    struct stat st;
    int fd;

    *is_sock = 0;
    if (fstat(STDOUT_FILENO, &st) < 0)
        return STDOUT_FILENO;
    if (S_ISSOCK(st.st_mode))
        *is_sock = 1;
    if (S_ISFIFO(st.st_mode) && (fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC)) >= 0)
        return fd;
    return STDOUT_FILENO;
}

int proxy__access_open(proxy__worker *w)
{
    const char *path = w->gen->rt->cfg->access_log;
    proxy__access *a = w->access;
    struct stat st;
    int fd, is_sock = 0;

    if (path == NULL)
        return 0;
    if (strcmp(path, "-") == 0) {
        fd = open_stdout(&is_sock);
    } else {
        /* O_NONBLOCK: a FIFO must not block the open (no reader: ENXIO) nor the writes. */
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
        if (fd < 0) {
            gh_log_error("cannot open access log %s: %s", path, strerror(errno));
            return -1;
        }
    }
    if (a == NULL) {
        /* Allocated once per worker; its pages are touched only as far as lines wait. */
        if ((a = calloc(1, sizeof(*a))) == NULL || (a->buf = malloc(BUF_MAX)) == NULL) {
            free(a);
            if (fd > STDERR_FILENO)
                close(fd);
            return -1;
        }
        a->w = w;
        w->access = a;
    }
    a->io.fd = fd;
    a->io.cb = on_writable;
    a->is_sock = is_sock;
    a->chunked = fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    a->blocked = 0;
    /* A regular file cannot be polled (EPERM): it never says EAGAIN either. */
    a->pollable = fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && gh_loop_add(w->loop, &a->io) == 0;
    return 0;
}

/* Closes the descriptor; the buffer and the lines in it stay (for the next one, on reopen). */
static void close_fd(proxy__access *a)
{
    if (a->pollable)
        gh_loop_del(a->w->loop, &a->io);
    a->pollable = 0;
    if (a->io.fd > STDERR_FILENO)
        close(a->io.fd);
    a->io.fd = -1;
}

/*
 * On reload: the file may have moved (a new path, or log rotation renamed it),
 * so the current one is closed and the configured one opened again. Lines not
 * written yet go to the new one.
 */
void proxy__access_reopen(proxy__worker *w)
{
    proxy__access *a = w->access;

    if (a != NULL) {
        flush(a);
        close_fd(a);
    }
    if (proxy__access_open(w) < 0 || (a != NULL && w->gen->rt->cfg->access_log == NULL)) {
        if (a != NULL) {
            free(a->buf);
            free(a);
        }
        w->access = NULL; /* the log was turned off (or cannot be opened): nothing to keep lines for */
    }
}

/* At worker exit: what cannot be written without blocking is dropped, and counted. */
void proxy__access_close(proxy__worker *w)
{
    proxy__access *a = w->access;

    if (a != NULL) {
        flush(a);
        if (a->end > a->start) {
            size_t lost = count_lines(a->buf + a->start, a->end - a->start);
            a->dropped += lost;
            a->dropped_all += lost;
        }
        warn_dropped(a, 1);
        close_fd(a);
        free(a->buf);
        free(a);
        w->access = NULL;
    }
    while (rec_free != NULL) {
        proxy__access_rec *r = rec_free;
        rec_free = r->next_free;
        free(r);
    }
    rec_nfree = 0;
}

void proxy__access_flush(proxy__worker *w)
{
    if (w->access == NULL)
        return;
    flush(w->access);
    warn_dropped(w->access, 0);
}

/* ---- formatting ---- */

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

/*
 * Escapes the request line, referer and user agent now: the head they point
 * into is consumed from the client's buffer once the exchange starts. Bounded
 * per field (REC_TEXT in all), so that the line fits in PIPE_BUF.
 */
void proxy__access_begin(proxy__exchange *ex, const gh_h1_request *r)
{
    proxy__access_rec *rec;
    gh_h1_str ref, ua;
    char *t;
    size_t o = 0;

    if (ex->s->w->access == NULL || (rec = rec_get()) == NULL)
        return;
    t = rec->text;
    ref = find_header(r, "referer");
    ua = find_header(r, "user-agent");
    t[o++] = '"';
    o += put_escaped(t + o, 128, r->method.p, r->method.len);
    t[o++] = ' ';
    o += put_escaped(t + o, 2048, r->target.p, r->target.len);
    memcpy(t + o, " HTTP/1.", 8);
    o += 8;
    t[o++] = r->minor == 0 ? '0' : '1';
    t[o++] = '"';
    rec->req_len = (uint16_t)o;
    t[o++] = ' ';
    t[o++] = '"';
    o += put_escaped(t + o, 768, ref.p, ref.len);
    t[o++] = '"';
    t[o++] = ' ';
    t[o++] = '"';
    o += put_escaped(t + o, 768, ua.p, ua.len);
    t[o++] = '"';
    rec->len = (uint16_t)o;
    ex->log = rec;
}

void proxy__access_discard(proxy__exchange *ex)
{
    if (ex->log != NULL)
        rec_put(ex->log);
    ex->log = NULL;
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

void proxy__access_end(proxy__exchange *ex)
{
    proxy__worker *w = ex->s->w;
    proxy__access_rec *rec = ex->log;
    char line[LINE_MAX_BYTES];

    if (rec == NULL)
        return;
    if (w->access != NULL)
        append_line(w, line, sizeof(line),
                    snprintf(line, sizeof(line), "%s - - [%s] %.*s %d %llu%.*s\n", ex->s->ip, log_date(w),
                             (int)rec->req_len, rec->text, ex->status, (unsigned long long)ex->bytes_out,
                             (int)(rec->len - rec->req_len), rec->text + rec->req_len));
    proxy__access_discard(ex);
}

/*
 * A tunnel is logged when it ends, as its request with status 101, the bytes
 * sent to the client in the size field, and at the end how long it lasted and
 * the bytes each way (in: from the client, out: to the client).
 */
void proxy__access_tunnel(proxy__tunnel *t)
{
    proxy__worker *w = t->w;
    proxy__access_rec *rec = t->log;
    char line[LINE_MAX_BYTES];
    uint64_t ms = gh_loop_now(w->loop) - t->start_ms;

    if (rec == NULL)
        return;
    if (w->access != NULL)
        append_line(w, line, sizeof(line),
                    snprintf(line, sizeof(line), "%s - - [%s] %.*s %d %llu%.*s tunnel=%llu.%03llus in=%llu out=%llu\n",
                             t->ip, log_date(w), (int)rec->req_len, rec->text, t->status,
                             (unsigned long long)t->side[1].bytes, (int)(rec->len - rec->req_len),
                             rec->text + rec->req_len, (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
                             (unsigned long long)t->side[0].bytes, (unsigned long long)t->side[1].bytes));
    rec_put(rec);
    t->log = NULL;
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
    char first[2048 * 4 + 4], line[LINE_MAX_BYTES];

    if (w->access == NULL)
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
                snprintf(line, sizeof(line), "%s - - [%s] \"%.*s\" %d %zu \"-\" \"-\"\n", c->s.ip, log_date(w), (int)o,
                         first, status, bytes));
}
