/*
 * accesslog: one line per request, in the format of its route's access_log
 * (combined, json or a log_format: conf/edge_directives.c), buffered per
 * destination and written at 64 KiB or after 100 ms, never blocking the loop.
 *
 * Destinations: one descriptor and buffer per distinct path per worker (a
 * "sink"), shared by every access_log that names the path. Sinks live as long
 * as the worker: a record points to its sink, so a request that started before
 * a reload still finds it. At a reload every sink is reopened; a sink the new
 * configuration does not name is closed, and lines still coming for it (from
 * requests of the old configuration) are dropped and counted.
 *
 * What a request costs: one engine for every format, built-in or not. Each
 * format is compiled once per generation into a program (prog_make: the
 * literal text before each variable). When the exchange begins, while the
 * head is still in the client's buffer, the program renders into a record
 * (from a per-worker free list: no allocation once the worker has seen as
 * many exchanges at once as it will) everything the start knows, escaped:
 * the literal text, the client's address and the head's fields, only those
 * the format uses. What only the end knows (status, bytes, times, the date,
 * the server) is left as gaps between pieces; the end copies the pieces into
 * the sink's buffer with those values between them (write_line). A line that
 * could be longer than LINE_MAX_BYTES keeps its raw fields instead and is
 * interpreted with every bound at the end (write_slow), so a line is the same
 * bytes either way. A value that needs no escape (nearly all) is checked and
 * copied in one pass, a word at a time (logesc.h). scripts/cost_log.sh
 * measures it; docs/config.md quotes the figures.
 *
 * Escaping: the combined format and log_format without escape=json write a
 * quote, a backslash, control characters and bytes outside ASCII as \xHH. JSON
 * (format=json, escape=json) writes a valid JSON string: \" \\ and \u00XX for
 * control characters; valid UTF-8 passes as it is, and each byte of invalid
 * UTF-8 is written \u00XX (the code point of the same number), so a hostile
 * header never breaks a line's JSON. Every value is bounded, and a line is
 * at most PIPE_BUF bytes with all of its literal text: values are shortened
 * (never an escape cut in half), so a JSON line stays an object.
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
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/logesc.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define LINE_MAX_BYTES PIPE_BUF     /* a longer line is cut (and keeps its newline) */
#define BUF_MAX        (256 * 1024) /* lines waiting for a slow reader; past this they are dropped */
#define REC_FREE_MAX   256          /* records kept for reuse (1 MiB) */
#define WARN_MS        1000
/*
 * Lines wait in the buffer across loop iterations, written when FLUSH_BYTES
 * are waiting or FLUSH_MS after the first of them (a timer: it also wakes a
 * loop that has nothing else to do), as nginx's buffer=/flush= do: with one
 * write(2) per iteration, a keep-alive client's every request was a write of
 * its own (each request is an iteration of its own). Nothing waits past the
 * worker: reload, SIGUSR1 and exit write first, and a crash writes the
 * buffers from its signal handler (crash_flush).
 */
#define FLUSH_BYTES (64 * 1024)
#define FLUSH_MS    100

/* The raw fields a record keeps, and the most of each it keeps (escaped values are bounded again). */
enum { F_METHOD, F_TARGET, F_REFERER, F_UA, F_HOST, NFIELDS };
static const uint16_t field_cap[NFIELDS] = {64, 2048, 768, 768, 256};
#define REC_TEXT (64 + 2048 + 768 + 768 + 256)

/*
 * A line as rendered when its request began: the text of every value known
 * then (the request's fields, the client's address) and all of the format's
 * literal text, in pieces between the values only the end knows (status,
 * bytes, times, the date, the server). Piece i is out[piece_end[i-1],
 * piece_end[i]) (from 0 for the first), then variable end_var[i]
 * (GH_LOGV_TEXT: the last piece).
 */
#define MAX_ITEMS 24
#define SLACK     32 /* bytes copied past a piece (whole words): out[] and every line have room for them */

/* A format's program (prog_make): op i is text, then variable var (GH_LOGV_TEXT: text alone). */
typedef struct log_op {
    const char *text;
    uint16_t len;
    uint8_t var;
} log_op;

struct proxy__log_prog {
    const gh_cfg_log_format *fmt;
    size_t fixed;                 /* the literal text, the end's values at their most, a suffix, the newline */
    uint16_t uses[GH_LOGV_COUNT]; /* how many times each variable comes */
    uint8_t headers;              /* $http_referer or $http_user_agent: find them */
    uint8_t slow;                 /* always write_slow (a format with more pieces than MAX_ITEMS) */
    size_t nops;
    log_op ops[];
};
typedef struct proxy__log_prog log_prog;

static log_prog *prog_make(const gh_cfg_log_format *fmt);

/* One request's fields for its log line. */
struct proxy__access_rec {
    proxy__access_rec *next_free;
    proxy__access *sink;          /* where the line goes */
    const gh_cfg_access_log *log; /* in which format */
    const gh_cfg_route *route;    /* $site, $route; NULL: none */
    const gh_cfg_log_format *fmt; /* what out[] was rendered for (a route's log may have another format) */
    uint8_t slow;                 /* out[] was not made (a line that may be cut): text[] has the raw fields */
    uint8_t minor;                /* HTTP/1.<minor>; 20: HTTP/2 */
    uint8_t tls;                  /* $scheme: the client's connection (a tunnel's too) */
    uint8_t raw_request;          /* F_METHOD holds a whole first line as received (a request the parser refused) */
    uint8_t present[NFIELDS];     /* the header was there (else "-", or "" in JSON) */
    uint16_t off[NFIELDS], len[NFIELDS];
    uint32_t stream; /* the HTTP/2 stream id; 0: HTTP/1 */
    uint16_t piece_end[MAX_ITEMS];
    uint8_t end_var[MAX_ITEMS];
    union { /* one or the other: a line is rendered at the start, or (slow) its raw fields are kept */
        char out[LINE_MAX_BYTES + SLACK];
        char text[REC_TEXT];
    };
};

struct proxy__access {
    gh_io io;       /* registered for writability when the descriptor can block (pipe, FIFO, socket, tty) */
    gh_timer timer; /* armed while lines wait: they are written FLUSH_MS after the first */
    proxy__worker *w;
    proxy__access *next;   /* the worker's sinks */
    char *path;            /* "-": standard output */
    const proxy__gen *gen; /* the last generation that names it: not the current one, closed */
    int pollable;          /* io is in the loop: after EAGAIN, wait for its event */
    int chunked;           /* pipe, FIFO or socket: writes of whole lines, PIPE_BUF at most */
    int is_sock;           /* send(MSG_DONTWAIT): no flag changed on a descriptor shared with others */
    int blocked;           /* the last write would have blocked */
    char *buf;             /* [start, end) of BUF_MAX bytes: whole lines; NULL until a line comes */
    size_t start, end;
    uint64_t dropped;     /* lines dropped since the last warning */
    uint64_t dropped_all; /* since the start */
    uint64_t warned;      /* ms of the last warning */
};

/* What the end of a request adds to its record. */
typedef struct facts {
    const char *ip;
    int status;
    uint64_t bytes;
    uint64_t request_ms;
    const char *upstream;        /* NULL: none */
    int64_t upstream_ms;         /* < 0: none */
    const char *user;            /* a forward proxy's authenticated user; NULL: none */
    const gh_cfg_fwd_rule *rule; /* a forward proxy's allowing rule; NULL: none */
} facts;

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
    uint64_t now;

    if (a->dropped == 0)
        return;
    now = gh_loop_now(a->w->loop);
    if (!force && a->warned != 0 && now - a->warned < WARN_MS)
        return;
    gh_log_warn("worker %d: access log: %llu lines dropped (%llu since the start) for %s: its reader does not keep "
                "up, or the configuration no longer names it; %zu bytes are waiting",
                a->w->id, (unsigned long long)a->dropped, (unsigned long long)a->dropped_all, a->path,
                a->end - a->start);
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
    while (a->end > a->start && !a->blocked && a->io.fd >= 0) {
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
                gh_log_error("worker %d: access log %s: write failed: %s", a->w->id, a->path, strerror(errno));
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

static void on_flush_timer(gh_timer *t)
{
    flush((proxy__access *)((char *)t - offsetof(proxy__access, timer)));
}

/*
 * A fatal signal (SIGSEGV, SIGABRT...): the lines waiting are whole ones
 * ([start, end) moves only past a finished line), so they are written as they
 * are, with write(2) alone (async-signal-safe), before the previous action
 * runs: the handler it replaced (a sanitizer's) or the default (the core).
 */
static proxy__access *crash_sinks;
static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
static struct sigaction crash_prev[sizeof(crash_signals) / sizeof(crash_signals[0])];
static int crash_installed;

static void crash_flush(int sig, siginfo_t *info, void *uc)
{
    int saved = errno;

    for (proxy__access *a = crash_sinks; a != NULL; a = a->next)
        while (a->io.fd >= 0 && a->buf != NULL && a->end > a->start) {
            ssize_t r = write(a->io.fd, a->buf + a->start, a->end - a->start);
            if (r <= 0)
                break;
            a->start += (size_t)r;
        }
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
        if (crash_signals[i] == sig)
            sigaction(sig, &crash_prev[i], NULL);
    errno = saved;
    /* A fault comes again when the instruction runs again, now to the previous action; a sent signal is sent
     * again. */
    if (info == NULL || info->si_code <= 0)
        raise(sig);
}

static void crash_install(proxy__worker *w)
{
    struct sigaction sa;

    crash_sinks = w->access;
    if (crash_installed)
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = crash_flush;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(crash_signals) / sizeof(crash_signals[0]); i++)
        sigaction(crash_signals[i], &sa, &crash_prev[i]);
    crash_installed = 1;
}

static void drop(proxy__access *a)
{
    a->dropped++; /* whole lines only: never a piece of one */
    a->dropped_all++;
}

static void append_line(proxy__access *a, const char *line, size_t n)
{
    if (a->io.fd < 0 || (a->buf == NULL && (a->buf = malloc(BUF_MAX)) == NULL)) {
        drop(a);
        return;
    }
    if (BUF_MAX - a->end < n && a->start > 0) {
        memmove(a->buf, a->buf + a->start, a->end - a->start);
        a->end -= a->start;
        a->start = 0;
    }
    if (BUF_MAX - a->end < n)
        flush(a);
    if (BUF_MAX - a->end < n) {
        drop(a);
        return;
    }
    memcpy(a->buf + a->end, line, n);
    a->end += n;
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

/* Descriptors of access log files the master opened (see gh_access_give): path -> fd. */
static struct given_log {
    char *path;
    int fd;
} given[GH_MAX_LOG_FDS];
static size_t ngiven;

void gh_access_give(const char *path, int fd)
{
    char *copy;

    for (size_t i = 0; i < ngiven; i++)
        if (strcmp(given[i].path, path) == 0) {
            close(given[i].fd);
            given[i].fd = fd;
            return;
        }
    if (ngiven == GH_MAX_LOG_FDS || (copy = strdup(path)) == NULL) {
        close(fd); /* the worker opens that one itself */
        return;
    }
    given[ngiven++] = (struct given_log){copy, fd};
}

void gh_access_given_reset(void)
{
    for (size_t i = 0; i < ngiven; i++) {
        close(given[i].fd);
        free(given[i].path);
    }
    ngiven = 0;
}

/* A descriptor of its own for the sink (closed with it), from the master's; -1: none given. */
static int given_fd(const char *path)
{
    for (size_t i = 0; i < ngiven; i++)
        if (strcmp(given[i].path, path) == 0)
            return fcntl(given[i].fd, F_DUPFD_CLOEXEC, 3);
    return -1;
}

static int open_sink(proxy__access *a)
{
    struct stat st;
    int fd, is_sock = 0;

    if (strcmp(a->path, "-") == 0) {
        fd = open_stdout(&is_sock);
    } else if ((fd = given_fd(a->path)) >= 0) {
        /* the master's descriptor: nothing to open as the workers' account */
    } else {
        /* O_NONBLOCK: a FIFO must not block the open (no reader: ENXIO) nor the writes. */
        fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
        if (fd < 0) {
            gh_log_error("cannot open access log %s: %s", a->path, strerror(errno));
            return -1;
        }
    }
    a->io.fd = fd;
    a->io.cb = on_writable;
    a->is_sock = is_sock;
    a->chunked = fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    a->blocked = 0;
    /* A regular file cannot be polled (EPERM): it never says EAGAIN either. */
    a->pollable = fstat(fd, &st) == 0 && !S_ISREG(st.st_mode) && gh_loop_add(a->w->loop, &a->io) == 0;
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

static proxy__access *sink_for(proxy__worker *w, const char *path)
{
    proxy__access *a;

    for (a = w->access; a != NULL; a = a->next)
        if (strcmp(a->path, path) == 0)
            return a;
    if ((a = calloc(1, sizeof(*a))) == NULL || (a->path = strdup(path)) == NULL) {
        free(a);
        return NULL;
    }
    a->w = w;
    a->io.fd = -1;
    a->timer.cb = on_flush_timer;
    a->next = w->access;
    w->access = a;
    crash_sinks = w->access;
    return a;
}

/*
 * Gives the generation its sinks (g->access, one per config log) and opens
 * those not open yet. -1 when one cannot be allocated or opened (that log's
 * lines are then dropped and counted).
 */
static int map_gen(proxy__worker *w, proxy__gen *g)
{
    const gh_config *cfg = g->rt->cfg;
    int rc = 0;

    if (cfg->nlogs == 0)
        return 0;
    if (g->access == NULL && (g->access = calloc(cfg->nlogs, sizeof(*g->access))) == NULL)
        return -1;
    if (g->log_progs == NULL) {
        log_prog **progs = calloc(cfg->nformats, sizeof(*progs));

        for (size_t i = 0; progs != NULL && i < cfg->nformats; i++)
            if ((progs[i] = prog_make(&cfg->formats[i])) == NULL) {
                while (i > 0)
                    free(progs[--i]);
                free(progs);
                progs = NULL;
            }
        g->log_progs = progs; /* NULL: no line (out of memory) */
        if (progs == NULL)
            rc = -1;
    }
    for (size_t i = 0; i < cfg->nlogs; i++) {
        proxy__access *a = sink_for(w, cfg->logs[i].path);

        g->access[i] = a;
        if (a == NULL) {
            rc = -1;
            continue;
        }
        a->gen = g;
        if (a->io.fd < 0 && open_sink(a) < 0)
            rc = -1;
    }
    return rc;
}

int proxy__access_open(proxy__worker *w)
{
    int rc = map_gen(w, w->gen);

    crash_install(w);
    return rc;
}

/*
 * On reload (and SIGUSR1): a file may have moved (a new path, or log rotation
 * renamed it), so every sink is closed and the ones the current generation
 * names are opened again. Lines not written yet go to the new descriptor.
 */
void proxy__access_reopen(proxy__worker *w)
{
    for (proxy__access *a = w->access; a != NULL; a = a->next) {
        flush(a);
        close_fd(a);
        a->blocked = 0;
    }
    map_gen(w, w->gen);
    for (proxy__access *a = w->access; a != NULL; a = a->next)
        if (a->gen != w->gen && a->end > a->start) {
            size_t lost = count_lines(a->buf + a->start, a->end - a->start);
            a->dropped += lost;
            a->dropped_all += lost;
            a->start = a->end = 0;
        }
}

/* A generation is freed: its map goes (the sinks stay with the worker). */
void proxy__access_gen_free(proxy__gen *g)
{
    if (g->log_progs != NULL)
        for (size_t i = 0; i < g->rt->cfg->nformats; i++)
            free(g->log_progs[i]);
    free(g->log_progs);
    g->log_progs = NULL;
    free(g->access);
    g->access = NULL;
}

/* The program of log's format (map_gen made them). */
static inline const log_prog *prog_of(const proxy__gen *g, const gh_cfg_access_log *log)
{
    return g->log_progs[log->format - g->rt->cfg->formats];
}

/* At worker exit: what cannot be written without blocking is dropped, and counted. */
void proxy__access_close(proxy__worker *w)
{
    while (w->access != NULL) {
        proxy__access *a = w->access;

        flush(a);
        if (a->end > a->start) {
            size_t lost = count_lines(a->buf + a->start, a->end - a->start);
            a->dropped += lost;
            a->dropped_all += lost;
        }
        warn_dropped(a, 1);
        close_fd(a);
        gh_timer_stop(w->loop, &a->timer);
        w->access = a->next;
        crash_sinks = w->access;
        free(a->buf);
        free(a->path);
        free(a);
    }
    while (rec_free != NULL) {
        proxy__access_rec *r = rec_free;
        rec_free = r->next_free;
        free(r);
    }
    rec_nfree = 0;
}

/* The idle hook, once per loop iteration: lines are written at FLUSH_BYTES, or by the timer. */
void proxy__access_flush(proxy__worker *w)
{
    for (proxy__access *a = w->access; a != NULL; a = a->next) {
        if (a->end - a->start >= FLUSH_BYTES)
            flush(a);
        if (a->end > a->start && a->timer.when == 0)
            gh_timer_set(w->loop, &a->timer, FLUSH_MS);
        if (a->dropped != 0)
            warn_dropped(a, 0);
    }
}

/* ---- formatting ---- */

/* The dates of the line, made once a second; *len: their length (the worker's only loop: statics are its). */
static size_t date_len, iso_len;

static const char *log_date(proxy__worker *w)
{
    int64_t now = gh_loop_wall(w->loop);
    if (now != w->date_sec) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        date_len = strftime(w->date, sizeof(w->date), "%d/%b/%Y:%H:%M:%S +0000", &tm);
        w->date_sec = now;
    }
    return w->date;
}

static const char *log_iso(proxy__worker *w)
{
    static int64_t sec = -1;
    static char iso[32];
    int64_t now = gh_loop_wall(w->loop);

    if (now != sec) {
        time_t t = (time_t)now;
        struct tm tm;
        gmtime_r(&t, &tm);
        iso_len = strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
        sec = now;
    }
    return iso;
}

/* Decimal digits, two at a time from the end. */
static size_t put_num(char *dst, uint64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                "8081828384858687888990919293949596979899";
    size_t n = v < 10 ? 1 : v < 100 ? 2 : v < 1000 ? 3 : v < 10000 ? 4 : 5, i;

    for (uint64_t t = v / 100000; t != 0; t /= 10)
        n++;
    for (i = n; v >= 100; v /= 100) {
        i -= 2;
        memcpy(dst + i, pairs + 2 * (v % 100), 2);
    }
    if (v >= 10)
        memcpy(dst + i - 2, pairs + 2 * v, 2);
    else
        dst[i - 1] = (char)('0' + v);
    return n;
}

/* Milliseconds as seconds with three decimals: "0.004". */
static size_t put_secs(char *dst, uint64_t ms)
{
    size_t o = put_num(dst, ms / 1000);

    dst[o++] = '.';
    dst[o++] = (char)('0' + ms / 100 % 10);
    dst[o++] = (char)('0' + ms / 10 % 10);
    dst[o++] = (char)('0' + ms % 10);
    return o;
}

typedef struct line {
    char *p;
    size_t len, cap;
    size_t reserve; /* literal text still to come: values leave room for it */
    int json;
} line;

/* Appends a value, escaped, at most max bytes of output (and never into the reserve). */
static void put_val(line *l, const char *s, size_t n, size_t max)
{
    size_t room = l->cap - l->len - l->reserve;

    if (max > room)
        max = room;
    if (n <= max && proxy__log_is_plain(s, n)) { /* what either escape would write */
        memcpy(l->p + l->len, s, n);
        l->len += n;
        return;
    }
    l->len +=
        l->json ? proxy__log_esc_json(l->p + l->len, max, s, n) : proxy__log_esc_default(l->p + l->len, max, s, n);
}

/* A value of our own making (digits, addresses, names): no escape needed beyond the bound. */
static void put_raw(line *l, const char *s, size_t n)
{
    size_t room = l->cap - l->len - l->reserve;

    if (n > room)
        n = room;
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

static void put_missing(line *l)
{
    if (!l->json)
        put_raw(l, "-", 1);
}

static void put_field(line *l, const proxy__access_rec *r, int f)
{
    if (!r->present[f])
        put_missing(l);
    else
        put_val(l, r->text + r->off[f], r->len[f], (size_t)field_cap[f] * 2);
}

/* The interpretation of a variable, for a line that may be cut (write_slow). */
static void put_var(line *l, proxy__worker *w, const proxy__access_rec *r, const facts *f, int var)
{
    char num[48];
    const char *proto = r->minor == 20 ? "HTTP/2.0" : r->minor == 0 ? "HTTP/1.0" : "HTTP/1.1";

    switch (var) {
    case GH_LOGV_REMOTE_ADDR:
        put_val(l, f->ip, strlen(f->ip), 64);
        break;
    case GH_LOGV_TIME_LOCAL: {
        const char *d = log_date(w); /* before date_len: it may make the date of a new second */
        put_raw(l, d, date_len);
        break;
    }
    case GH_LOGV_TIME_ISO8601: {
        const char *d = log_iso(w);
        put_raw(l, d, iso_len);
        break;
    }
    case GH_LOGV_MSEC: {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        put_raw(l, num, put_secs(num, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000));
        break;
    }
    case GH_LOGV_REQUEST:
        if (r->raw_request) {
            put_field(l, r, F_TARGET);
            break;
        }
        put_field(l, r, F_METHOD);
        put_raw(l, " ", 1);
        put_field(l, r, F_TARGET);
        put_raw(l, " ", 1);
        put_raw(l, proto, 8);
        break;
    case GH_LOGV_METHOD:
        if (r->raw_request)
            put_missing(l);
        else
            put_field(l, r, F_METHOD);
        break;
    case GH_LOGV_URI:
        if (r->raw_request)
            put_missing(l);
        else
            put_field(l, r, F_TARGET);
        break;
    case GH_LOGV_PROTOCOL:
        if (r->raw_request)
            put_missing(l);
        else
            put_raw(l, proto, 8);
        break;
    case GH_LOGV_SCHEME:
        put_raw(l, r->tls ? "https" : "http", r->tls ? 5 : 4);
        break;
    case GH_LOGV_HOST:
        put_field(l, r, F_HOST);
        break;
    case GH_LOGV_STATUS:
        put_raw(l, num, put_num(num, (uint64_t)(f->status > 0 ? f->status : 0)));
        break;
    case GH_LOGV_BODY_BYTES_SENT:
        put_raw(l, num, put_num(num, f->bytes));
        break;
    case GH_LOGV_REQUEST_TIME:
        put_raw(l, num, put_secs(num, f->request_ms));
        break;
    case GH_LOGV_UPSTREAM_ADDR:
        if (f->upstream == NULL)
            put_missing(l);
        else
            put_val(l, f->upstream, strlen(f->upstream), 256);
        break;
    case GH_LOGV_UPSTREAM_RESPONSE_TIME:
        if (f->upstream_ms < 0)
            put_missing(l);
        else
            put_raw(l, num, put_secs(num, (uint64_t)f->upstream_ms));
        break;
    case GH_LOGV_HTTP_REFERER:
        put_field(l, r, F_REFERER);
        break;
    case GH_LOGV_HTTP_USER_AGENT:
        put_field(l, r, F_UA);
        break;
    case GH_LOGV_SITE:
        if (r->route == NULL || r->route->site == NULL)
            put_missing(l);
        else if (r->route->site->nnames > 0)
            put_val(l, r->route->site->names[0].p, r->route->site->names[0].len, 256);
        else
            put_raw(l, "default", 7);
        break;
    case GH_LOGV_ROUTE:
        if (r->route == NULL)
            put_missing(l);
        else
            put_val(l, r->route->prefix.p, r->route->prefix.len, 512);
        break;
    case GH_LOGV_REMOTE_USER:
        if (f->user == NULL)
            put_missing(l);
        else
            put_val(l, f->user, strlen(f->user), 256);
        break;
    case GH_LOGV_FORWARD_RULE:
        if (f->rule == NULL) {
            put_missing(l);
        } else {
            int n = snprintf(num, sizeof(num), ":%d", f->rule->where.line);
            put_val(l, f->rule->where.file, strlen(f->rule->where.file), 512);
            put_raw(l, num, n > 0 ? (size_t)n : 0);
        }
        break;
    default:
        break;
    }
}

/*
 * The record's line from the raw fields, seg by seg, each value bounded by
 * the room left: for a line that may be longer than LINE_MAX_BYTES (a long
 * target or header) and for a request the parser refused.
 */
static void write_slow(proxy__worker *w, const proxy__access_rec *r, const facts *f, const char *suffix, size_t slen)
{
    const gh_cfg_log_format *fmt = r->log->format;
    proxy__access *a = r->sink;
    char buf[LINE_MAX_BYTES];
    line l = {buf, 0, sizeof(buf), 1 + slen + fmt->text_len, fmt->json};

    if (l.reserve > l.cap) {
        drop(a);
        return;
    }
    for (size_t i = 0; i < fmt->nsegs; i++) {
        const gh_cfg_log_seg *s = &fmt->segs[i];

        if (s->var != GH_LOGV_TEXT) {
            put_var(&l, w, r, f, s->var);
            continue;
        }
        l.reserve -= s->text.len;
        memcpy(l.p + l.len, s->text.p, s->text.len);
        l.len += s->text.len;
    }
    memcpy(l.p + l.len, suffix, slen);
    l.len += slen;
    l.p[l.len++] = '\n';
    append_line(a, l.p, l.len);
}

/*
 * memcpy for the short pieces of a line, inline: words, the last one
 * overlapping (a call to memcpy costs more than most of these copies).
 */
static inline void copy_small(char *dst, const char *src, size_t n)
{
    uint64_t x;
    uint32_t y;

    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, src + i, 8);
            memcpy(dst + i, &x, 8);
        }
        memcpy(&x, src + n - 8, 8);
        memcpy(dst + n - 8, &x, 8);
    } else if (n >= 4) {
        memcpy(&y, src, 4);
        memcpy(dst, &y, 4);
        memcpy(&y, src + n - 4, 4);
        memcpy(dst + n - 4, &y, 4);
    } else if (n >= 2) {
        uint16_t z;

        memcpy(&z, src, 2);
        memcpy(dst, &z, 2);
        dst[n - 1] = src[n - 1];
    } else if (n == 1) {
        dst[0] = src[0];
    }
}

/*
 * Copies n bytes: sixteen at once (most pieces of a line are shorter), then
 * words of eight, up to SLACK / 2 bytes more than n: for a source and a
 * destination that have SLACK bytes of room past them.
 */
static inline void copy_words(char *dst, const char *src, size_t n)
{
    uint64_t x, y;

    memcpy(&x, src, 8);
    memcpy(&y, src + 8, 8);
    memcpy(dst, &x, 8);
    memcpy(dst + 8, &y, 8);
    for (size_t i = 16; i < n; i += 8) {
        memcpy(&x, src + i, 8);
        memcpy(dst + i, &x, 8);
    }
}

/*
 * A value into dst, escaped, at most max bytes: what put_val writes when the
 * line has room for it. Returns its length.
 */
static inline __attribute__((always_inline)) size_t put_str(char *dst, const char *s, size_t n, size_t max, int json)
{
    if (n <= max && proxy__log_copy_plain(dst, s, n))
        return n;
    return json ? proxy__log_esc_json(dst, max, s, n) : proxy__log_esc_default(dst, max, s, n);
}

static inline size_t put_dash(char *dst, int json)
{
    dst[0] = '-';
    return json ? 0 : 1;
}

/*
 * The most each variable known only at the end writes (its bound in put_var;
 * the dates are copied as their 32-byte arrays), so that a line rendered at
 * the start is known at the start to fit: then no value of it is ever cut.
 */
static const uint16_t end_max[GH_LOGV_COUNT] = {
    [GH_LOGV_TIME_LOCAL] = 32,     [GH_LOGV_TIME_ISO8601] = 32,           [GH_LOGV_MSEC] = 24,
    [GH_LOGV_STATUS] = 24,         [GH_LOGV_BODY_BYTES_SENT] = 24,        [GH_LOGV_REQUEST_TIME] = 24,
    [GH_LOGV_UPSTREAM_ADDR] = 256, [GH_LOGV_UPSTREAM_RESPONSE_TIME] = 24, [GH_LOGV_SITE] = 256,
    [GH_LOGV_ROUTE] = 512,         [GH_LOGV_REMOTE_USER] = 256,           [GH_LOGV_FORWARD_RULE] = 512 + 12,
};
#define SUFFIX_MAX 128 /* the longest suffix (a tunnel's) and the newline */

/* A variable the end knows, into dst (room for end_max[var] bytes); returns its length. */
static size_t put_end(char *dst, proxy__worker *w, const proxy__access_rec *r, const facts *f, int var, int json)
{
    switch (var) {
    case GH_LOGV_TIME_LOCAL: {
        const char *d = log_date(w); /* before date_len: it may make the date of a new second */
        memcpy(dst, d, 32);
        return date_len;
    }
    case GH_LOGV_TIME_ISO8601: {
        const char *d = log_iso(w);
        memcpy(dst, d, 32);
        return iso_len;
    }
    case GH_LOGV_MSEC: {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return put_secs(dst, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
    }
    case GH_LOGV_STATUS:
        if (f->status >= 100 && f->status <= 999) { /* three digits: all but a status of 0 */
            dst[0] = (char)('0' + f->status / 100);
            dst[1] = (char)('0' + f->status / 10 % 10);
            dst[2] = (char)('0' + f->status % 10);
            return 3;
        }
        return put_num(dst, (uint64_t)(f->status > 0 ? f->status : 0));
    case GH_LOGV_BODY_BYTES_SENT:
        return put_num(dst, f->bytes);
    case GH_LOGV_REQUEST_TIME:
        return put_secs(dst, f->request_ms);
    case GH_LOGV_UPSTREAM_ADDR:
        return f->upstream == NULL ? put_dash(dst, json) : put_str(dst, f->upstream, strlen(f->upstream), 256, json);
    case GH_LOGV_UPSTREAM_RESPONSE_TIME:
        return f->upstream_ms < 0 ? put_dash(dst, json) : put_secs(dst, (uint64_t)f->upstream_ms);
    case GH_LOGV_SITE:
        if (r->route == NULL || r->route->site == NULL)
            return put_dash(dst, json);
        if (r->route->site->nnames > 0)
            return put_str(dst, r->route->site->names[0].p, r->route->site->names[0].len, 256, json);
        memcpy(dst, "default", 7);
        return 7;
    case GH_LOGV_ROUTE:
        return r->route == NULL ? put_dash(dst, json)
                                : put_str(dst, r->route->prefix.p, r->route->prefix.len, 512, json);
    case GH_LOGV_REMOTE_USER:
        return f->user == NULL ? put_dash(dst, json) : put_str(dst, f->user, strlen(f->user), 256, json);
    case GH_LOGV_FORWARD_RULE: {
        size_t n;
        char num[16];
        int k;

        if (f->rule == NULL)
            return put_dash(dst, json);
        n = put_str(dst, f->rule->where.file, strlen(f->rule->where.file), 512, json);
        k = snprintf(num, sizeof(num), ":%d", f->rule->where.line);
        k = k > 0 && k < (int)sizeof(num) ? k : 0;
        memcpy(dst + n, num, (size_t)k);
        return n + (size_t)k;
    }
    default:
        return 0;
    }
}

/*
 * The record's line, with `suffix` before the newline, into its sink: the
 * pieces rendered at the start with the end's values between them, made in
 * place in the sink's buffer when it has room for the longest line.
 */
static void write_line(proxy__worker *w, const proxy__access_rec *r, const facts *f, const char *suffix)
{
    proxy__access *a = r->sink;
    size_t slen = suffix[0] != '\0' ? strlen(suffix) : 0;
    int json = r->fmt->json, in_place;
    char buf[LINE_MAX_BYTES], *o;

    if (r->slow) {
        write_slow(w, r, f, suffix, slen);
        return;
    }
    in_place = a->io.fd >= 0 && a->buf != NULL && BUF_MAX - a->end >= LINE_MAX_BYTES;
    o = in_place ? a->buf + a->end : buf;
    for (size_t i = 0, from = 0;; i++) {
        size_t len = r->piece_end[i] - from;

        copy_words(o, r->out + from, len);
        o += len;
        from = r->piece_end[i];
        if (r->end_var[i] == GH_LOGV_TEXT)
            break;
        o += put_end(o, w, r, f, r->end_var[i], json);
    }
    if (slen != 0) {
        memcpy(o, suffix, slen);
        o += slen;
    }
    *o++ = '\n';
    if (in_place)
        a->end = (size_t)(o - a->buf);
    else
        append_line(a, buf, (size_t)(o - buf));
}

/* ---- the records of requests ---- */

static void keep(proxy__access_rec *rec, size_t *o, int f, const char *p, size_t n, int present)
{
    if (n > field_cap[f])
        n = field_cap[f];
    rec->off[f] = (uint16_t)*o;
    rec->len[f] = (uint16_t)n;
    rec->present[f] = (uint8_t)present;
    memcpy(rec->text + *o, p, n);
    *o += n;
}

/*
 * A header name equals lit (lowercase letters and '-', 4 to 16 bytes), compared
 * as two overlapping words. OR-ing 0x20 into each byte lowers a letter and
 * turns no other token byte (RFC 9110 5.6.2: the parser accepts no other in a
 * name) into a letter or '-', so this is the case-insensitive comparison.
 */
static int name_is(gh_h1_str name, const char *lit, size_t len)
{
    if (name.len != len)
        return 0;
    if (len >= 8) {
        uint64_t a, b, la, lb;

        memcpy(&a, name.p, 8), memcpy(&b, name.p + len - 8, 8);
        memcpy(&la, lit, 8), memcpy(&lb, lit + len - 8, 8);
        return ((a | UINT64_C(0x2020202020202020)) == la) & ((b | UINT64_C(0x2020202020202020)) == lb);
    } else {
        uint32_t a, b, la, lb;

        memcpy(&a, name.p, 4), memcpy(&b, name.p + len - 4, 4);
        memcpy(&la, lit, 4), memcpy(&lb, lit + len - 4, 4);
        return ((a | 0x20202020u) == la) & ((b | 0x20202020u) == lb);
    }
}

/*
 * Referer and User-Agent in one pass over the headers, the first of each (as
 * before); the length is compared first, so most names cost one comparison.
 */
static void find_headers(const gh_h1_request *r, const gh_h1_header **ref, const gh_h1_header **ua);

static void keep_headers(proxy__access_rec *rec, size_t *o, const gh_h1_request *r)
{
    const gh_h1_header *ref, *ua;

    find_headers(r, &ref, &ua);
    keep(rec, o, F_REFERER, ref ? ref->value.p : "", ref ? ref->value.len : 0, ref != NULL);
    keep(rec, o, F_UA, ua ? ua->value.p : "", ua ? ua->value.len : 0, ua != NULL);
}

/* The main context's log: for requests refused before a route was chosen. */
static const gh_cfg_access_log *main_log(const gh_config *cfg)
{
    return cfg->edge.log_ref > 0 ? &cfg->logs[cfg->edge.log_ref - 1] : NULL;
}

/* The raw fields, for write_slow. */
static void keep_raw(proxy__access_rec *rec, const gh_h1_request *r)
{
    size_t o = 0;

    keep(rec, &o, F_METHOD, r->method.p, r->method.len, 1);
    keep(rec, &o, F_TARGET, r->target.p, r->target.len, 1);
    keep_headers(rec, &o, r);
    keep(rec, &o, F_HOST, r->host.p, r->host.len, r->host.len > 0);
}

/* Referer and User-Agent as keep_headers finds them (NULL: absent). */
static void find_headers(const gh_h1_request *r, const gh_h1_header **ref, const gh_h1_header **ua)
{
    *ref = *ua = NULL;
    for (size_t i = 0; i < r->nheaders && (*ref == NULL || *ua == NULL); i++) {
        const gh_h1_header *h = &r->headers[i];

        if (*ref == NULL && name_is(h->name, "referer", 7))
            *ref = h;
        else if (*ua == NULL && name_is(h->name, "user-agent", 10))
            *ua = h;
    }
}

/* A raw field as put_field writes it: bounded as keep() keeps it, then escaped up to twice that. */
static inline size_t put_raw_field(char *dst, const char *p, size_t n, int f, int present, int json)
{
    if (!present)
        return put_dash(dst, json);
    if (n > field_cap[f])
        n = field_cap[f];
    return put_str(dst, p, n, (size_t)field_cap[f] * 2, json);
}

/* The most a raw field of n bytes writes: 6 per byte (JSON's \u00XX), at most twice its bound. */
static inline size_t field_max(size_t n, int f)
{
    if (n > field_cap[f])
        n = field_cap[f];
    return n * 6 < (size_t)field_cap[f] * 2 ? n * 6 : (size_t)field_cap[f] * 2;
}

/*
 * Renders the line's start-known part (rec_item) with the format's program:
 * each value as put_var writes it when the line has room. When the line
 * could be longer than LINE_MAX_BYTES (prog->fixed, with every value at its
 * most), nothing is rendered: the raw fields are kept and the line is
 * interpreted at the end with its bounds (write_slow). Otherwise no value
 * can be cut, so the bytes are those of write_slow.
 */
static void render(proxy__access_rec *rec, const log_prog *prog, const proxy__session *s, const gh_h1_request *r)
{
    const gh_h1_header *ref = NULL, *ua = NULL;
    const char *proto = rec->minor == 20 ? "HTTP/2.0" : rec->minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    size_t o = 0, k = 0, most = prog->fixed;
    int json = prog->fmt->json, fwd = s->listener->forward != NULL;
    char *out = rec->out;

    rec->fmt = prog->fmt;
    rec->slow = prog->slow;
    if (prog->headers)
        find_headers(r, &ref, &ua);
    most +=
        prog->uses[GH_LOGV_METHOD] * field_max(r->method.len, F_METHOD) +
        prog->uses[GH_LOGV_URI] * field_max(r->target.len, F_TARGET) +
        prog->uses[GH_LOGV_HOST] * field_max(r->host.len, F_HOST) +
        prog->uses[GH_LOGV_HTTP_REFERER] * field_max(ref ? ref->value.len : 1, F_REFERER) +
        prog->uses[GH_LOGV_HTTP_USER_AGENT] * field_max(ua ? ua->value.len : 1, F_UA) +
        prog->uses[GH_LOGV_REQUEST] * (field_max(r->method.len, F_METHOD) + field_max(r->target.len, F_TARGET) + 10);
    if (rec->slow || most > LINE_MAX_BYTES) {
        rec->slow = 1;
        keep_raw(rec, r);
        return;
    }
    for (size_t i = 0; i < prog->nops; i++) {
        const log_op *op = &prog->ops[i];

        copy_words(out + o, op->text, op->len); /* the program's copy, padded */
        o += op->len;
        switch (op->var) {
        case GH_LOGV_TEXT:
            break;
        case GH_LOGV_REMOTE_ADDR: { /* gh_sock_ntop's: digits, dots, colons, hex or "unknown", never escaped */
            size_t n = strlen(s->ip);
            copy_small(out + o, s->ip, n);
            o += n;
            break;
        }
        case GH_LOGV_REQUEST:
            o += put_raw_field(out + o, r->method.p, r->method.len, F_METHOD, 1, json);
            out[o++] = ' ';
            o += put_raw_field(out + o, r->target.p, r->target.len, F_TARGET, 1, json);
            out[o++] = ' ';
            memcpy(out + o, proto, 8);
            o += 8;
            break;
        case GH_LOGV_METHOD:
            o += put_raw_field(out + o, r->method.p, r->method.len, F_METHOD, 1, json);
            break;
        case GH_LOGV_URI:
            o += put_raw_field(out + o, r->target.p, r->target.len, F_TARGET, 1, json);
            break;
        case GH_LOGV_PROTOCOL:
            memcpy(out + o, proto, 8);
            o += 8;
            break;
        case GH_LOGV_SCHEME:
            memcpy(out + o, rec->tls ? "https" : "http", 5);
            o += rec->tls ? 5 : 4;
            break;
        case GH_LOGV_HOST:
            o += put_raw_field(out + o, r->host.p, r->host.len, F_HOST, r->host.len > 0, json);
            break;
        case GH_LOGV_HTTP_REFERER:
            o +=
                put_raw_field(out + o, ref ? ref->value.p : "", ref ? ref->value.len : 0, F_REFERER, ref != NULL, json);
            break;
        case GH_LOGV_HTTP_USER_AGENT:
            o += put_raw_field(out + o, ua ? ua->value.p : "", ua ? ua->value.len : 0, F_UA, ua != NULL, json);
            break;
        case GH_LOGV_REMOTE_USER:
            if (!fwd) { /* only a forward proxy authenticates: known now to be none */
                o += put_dash(out + o, json);
                break;
            }
            /* fall through */
        default: /* known at the end: the piece so far, then this variable */
            rec->piece_end[k] = (uint16_t)o;
            rec->end_var[k++] = op->var;
            break;
        }
    }
    rec->piece_end[k] = (uint16_t)o;
    rec->end_var[k] = GH_LOGV_TEXT;
}

/*
 * A format as a program (per generation, in proxy__gen.log_progs): each op
 * the literal text before a variable, and the bounds render needs.
 */
static log_prog *prog_make(const gh_cfg_log_format *fmt)
{
    size_t ops = (fmt->nsegs + 1) * sizeof(log_op), n = 0, ends = 0;
    /* the literal text again, each piece with room to be copied in words (copy_words) */
    log_prog *p = calloc(1, sizeof(*p) + ops + fmt->text_len + fmt->nsegs * 8 + SLACK);
    char *text;

    if (p == NULL)
        return NULL;
    text = (char *)p->ops + ops;
    for (size_t i = 0; i <= fmt->nsegs; i++)
        p->ops[i].text = text + fmt->text_len + fmt->nsegs * 8; /* no text: SLACK bytes of zeros to copy */
    p->fmt = fmt;
    p->fixed = fmt->text_len + SUFFIX_MAX;
    for (size_t i = 0; i < fmt->nsegs; i++) {
        const gh_cfg_log_seg *g = &fmt->segs[i];

        if (g->var == GH_LOGV_TEXT) {
            if (p->ops[n].len != 0)
                n++; /* two pieces of text in a row: an op of text alone */
            memcpy(text, g->text.p, g->text.len);
            p->ops[n].text = text;
            p->ops[n].len = (uint16_t)(g->text.len < UINT16_MAX ? g->text.len : UINT16_MAX);
            text += (g->text.len + 7) / 8 * 8;
            if (g->text.len >= UINT16_MAX)
                p->slow = 1;
            continue;
        }
        p->ops[n++].var = (uint8_t)g->var;
        p->uses[g->var]++;
        /* what the value writes at most: the end's (end_max), the request's are counted per line in render */
        if (end_max[g->var] != 0) {
            p->fixed += end_max[g->var];
            ends++;
        } else {
            p->fixed += g->var == GH_LOGV_REMOTE_ADDR ? 64 : 8; /* $remote_addr; $protocol, $scheme */
        }
    }
    if (p->ops[n].len != 0)
        n++;
    p->nops = n;
    p->headers = p->uses[GH_LOGV_HTTP_REFERER] || p->uses[GH_LOGV_HTTP_USER_AGENT];
    if (ends >= MAX_ITEMS)
        p->slow = 1; /* more pieces than a record has room for */
    return p;
}

/* A record for ex in log (its format rendered); NULL: out of memory. */
static proxy__access_rec *rec_start(proxy__exchange *ex, const gh_h1_request *r, const gh_cfg_access_log *log)
{
    proxy__access_rec *rec = rec_get();

    if (rec == NULL)
        return NULL;
    rec->log = log;
    rec->sink = ex->s->gen->access[log->index];
    rec->route = NULL;
    rec->minor = ex->s->stream != 0 ? 20 : (uint8_t)r->minor; /* $protocol: HTTP/2.0 for a stream */
    rec->stream = ex->s->stream;
    rec->tls = ex->s->tls;
    rec->raw_request = 0;
    render(rec, prog_of(ex->s->gen, log), ex->s, r);
    ex->log = rec;
    return rec;
}

/*
 * Renders the line for the main context's log now: the head is consumed
 * from the client's buffer once the exchange starts. proxy__access_route
 * names the route's log (rendered again only if its format is another).
 */
void proxy__access_begin(proxy__exchange *ex, const gh_h1_request *r)
{
    const proxy__gen *g = ex->s->gen;
    const gh_cfg_access_log *log;

    if (g->log_progs == NULL || (log = main_log(g->rt->cfg)) == NULL)
        return; /* no log at all, or none before a route is chosen (a route may have one) */
    rec_start(ex, r, log);
}

void proxy__access_route(proxy__exchange *ex, const gh_h1_request *r)
{
    proxy__access_rec *rec = ex->log;
    const gh_cfg_access_log *log = ex->route->access_log;

    if (log == NULL) {
        proxy__access_discard(ex); /* this route is not logged */
        return;
    }
    if (rec == NULL) {
        if (ex->s->gen->log_progs == NULL || (rec = rec_start(ex, r, log)) == NULL)
            return;
    } else if (rec->fmt != log->format) {
        render(rec, prog_of(ex->s->gen, log), ex->s, r);
    }
    rec->log = log;
    rec->sink = ex->s->gen->access[log->index];
    rec->route = ex->route;
}

void proxy__access_discard(proxy__exchange *ex)
{
    if (ex->log != NULL)
        rec_put(ex->log);
    ex->log = NULL;
}

void proxy__access_end(proxy__exchange *ex)
{
    proxy__worker *w = ex->s->w;
    proxy__access_rec *rec = ex->log;
    uint64_t now = gh_loop_now(w->loop);
    facts f = {ex->s->ip, ex->status, ex->bytes_out, now - ex->start_ms, ex->server, -1, NULL, NULL};

    if (rec == NULL)
        return;
    if (ex->fwd != NULL)
        proxy__fwd_log_facts(ex->fwd, &f.user, &f.rule);
    if (ex->upstream_from != 0)
        f.upstream_ms = (int64_t)(ex->upstream_to ? ex->upstream_to : now - ex->start_ms + 1) - ex->upstream_from;
    if (rec->sink != NULL) {
        char suffix[24] = "";
        /* HTTP/2: which stream of the connection, at the end of a combined line (docs/config.md) */
        if (rec->stream != 0 && strcmp(rec->log->format->name.p, "combined") == 0)
            snprintf(suffix, sizeof(suffix), " stream=%u", rec->stream);
        write_line(w, rec, &f, suffix);
    }
    proxy__access_discard(ex);
}

/*
 * A tunnel is logged when it ends, as its request with status 101, the bytes
 * sent to the client in the size field and how long it lasted as
 * request_time; the combined format adds at the end the duration and the
 * bytes each way (in: from the client, out: to the client).
 */
void proxy__access_tunnel(proxy__tunnel *t)
{
    proxy__worker *w = t->w;
    proxy__access_rec *rec = t->log;
    uint64_t ms = gh_loop_now(w->loop) - t->start_ms;
    facts f = {t->ip, t->status, t->side[1].bytes, ms, NULL, -1, t->fwd_user, t->fwd_rule_at};
    char suffix[128] = "";

    if (rec == NULL)
        return;
    if (rec->sink != NULL) {
        if (strcmp(rec->log->format->name.p, "combined") == 0)
            snprintf(suffix, sizeof(suffix), " tunnel=%llu.%03llus in=%llu out=%llu%s%s",
                     (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000),
                     (unsigned long long)t->side[0].bytes, (unsigned long long)t->side[1].bytes,
                     t->fwd_rule ? " to=" : "", t->fwd_rule ? t->fwd_dst : "");
        write_line(w, rec, &f, suffix);
    }
    rec_put(rec);
    t->log = NULL;
}

/*
 * A request refused by the parser: as nginx does, the log shows its first line
 * as received (escaped, at most 2 KiB), or "-" when there is none, in the main
 * context's log and format.
 */
void proxy__access_reject(proxy__client *c, int status, size_t bytes)
{
    proxy__worker *w = c->w;
    const proxy__gen *g = c->s.gen;
    const gh_cfg_access_log *log = main_log(g->rt->cfg);
    const char *p = gh_buf_head(&c->in), *nl;
    size_t len = gh_buf_len(&c->in), o = 0;
    facts f = {c->s.ip, status, bytes, 0, NULL, -1, NULL, NULL};
    proxy__access_rec *rec;

    if (log == NULL || g->access == NULL || g->access[log->index] == NULL || (rec = rec_get()) == NULL)
        return;
    nl = len ? memchr(p, '\n', len) : NULL;
    len = nl ? (size_t)(nl - p) : 0;
    if (len > 0 && p[len - 1] == '\r')
        len--;
    rec->log = log;
    rec->sink = g->access[log->index];
    rec->route = NULL;
    rec->minor = 1;
    rec->stream = 0;
    rec->tls = c->s.tls;
    rec->raw_request = 1;
    rec->fmt = log->format;
    rec->slow = 1; /* rare: interpreted from the raw fields */
    keep(rec, &o, F_METHOD, "", 0, 0);
    keep(rec, &o, F_TARGET, p, len, len > 0);
    keep(rec, &o, F_REFERER, "", 0, 0);
    keep(rec, &o, F_UA, "", 0, 0);
    keep(rec, &o, F_HOST, "", 0, 0);
    write_line(w, rec, &f, "");
    rec_put(rec);
}

/* A value of ours or of the config (names, addresses): JSON-escaped into a bounded buffer, NUL-terminated. */
static const char *json_val(char *dst, size_t cap, const char *v)
{
    size_t n = proxy__log_esc_json(dst, cap - 1, v, strlen(v));

    dst[n] = '\0';
    return dst;
}

/*
 * A stream is logged in the main context's access_log, in its own fields
 * (a stream has no request line): key=value text, or a JSON object when that
 * log's format is JSON, so that a JSON log stays one object per line.
 */
void proxy__access_stream(proxy__worker *w, const proxy__gen *g, const proxy__stream_log *l)
{
    const gh_cfg_access_log *log = main_log(g->rt->cfg);
    proxy__access *a;
    char out[LINE_MAX_BYTES], v[4][300];
    int n;

    if (log == NULL || g->access == NULL || (a = g->access[log->index]) == NULL)
        return;
    if (log->format != NULL && log->format->json)
        n = snprintf(out, sizeof(out),
                     "{\"time\":\"%s\",\"remote_addr\":\"%s\",\"stream\":\"%s\",\"server\":\"%s\",\"sni\":\"%s\","
                     "\"tls\":\"%s\",\"duration\":%llu.%03llu,\"bytes_in\":%llu,\"bytes_out\":%llu,\"end\":\"%s\"}\n",
                     log_iso(w), l->ip, json_val(v[0], sizeof(v[0]), l->service),
                     json_val(v[1], sizeof(v[1]), l->server), json_val(v[2], sizeof(v[2]), l->sni), l->tls,
                     (unsigned long long)(l->ms / 1000), (unsigned long long)(l->ms % 1000), (unsigned long long)l->in,
                     (unsigned long long)l->out, json_val(v[3], sizeof(v[3]), l->end));
    else
        n = snprintf(out, sizeof(out),
                     "%s - - [%s] stream=%s server=%s sni=%s tls=%s time=%llu.%03llus in=%llu out=%llu end=\"%s\"\n",
                     l->ip, log_date(w), l->service, l->server, l->sni, l->tls, (unsigned long long)(l->ms / 1000),
                     (unsigned long long)(l->ms % 1000), (unsigned long long)l->in, (unsigned long long)l->out, l->end);
    if (n <= 0)
        return;
    if ((size_t)n >= sizeof(out)) {
        n = (int)sizeof(out) - 1;
        out[n - 1] = '\n';
    }
    append_line(a, out, (size_t)n);
}
