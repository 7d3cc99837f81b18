/*
 * admin: the admin listener's connections (see admin.h).
 */
#include "admin/admin.h"

#include <errno.h>
#include <stdio.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/cidr.h"
#include "net/sock.h"

#define ADMIN_MAX_HEAD  4096
#define ADMIN_TIMEOUT   5000                /* ms for the whole request and its answer */
#define ADMIN_LINGER    1000                /* ms to wait for the client's FIN after the answer */
#define ADMIN_MAX_CONNS 32                  /* per worker */
#define ADMIN_MAX_BODY  (16u * 1024 * 1024) /* a configuration with thousands of routes and servers fits */

typedef struct admin_conn {
    gh_io io; /* first: the loop's events name it */
    gh_timer timer;
    struct admin_conn *prev, *next;
    size_t inlen, sent;
    uint8_t refused;   /* not in the allow list: its request is read, then answered 403 */
    uint8_t lingering; /* answer sent and write side shut: input is discarded until EOF (no RST) */
    gh_mtext out;      /* the whole answer, head and body */
    char in[ADMIN_MAX_HEAD];
} admin_conn;

static int listen_fd = -1;
static char bound[sizeof(((gh_addr *)0)->text)]; /* the address of listen_fd, for reloads */
static struct {
    gh_io io;
    gh_timer pause; /* accept failed (out of descriptors): the listener rests, else level-triggered it spins */
    gh_loop *loop;
    void (*view)(void *arg, gh_metrics_view *v);
    void *arg;
    admin_conn *conns;
    int nconns;
} A = {{-1, NULL}, {0, 0, 0, NULL}, NULL, NULL, NULL, NULL, 0};

int gh_admin_bind(const gh_cfg_admin *a, int (*open_listener)(const gh_addr *a))
{
    if (!a->enabled)
        return 0;
    listen_fd = open_listener(&a->addr);
    snprintf(bound, sizeof(bound), "%s", a->addr.text);
    return listen_fd < 0 ? -1 : 0;
}

int gh_admin_listen_fd(void)
{
    return listen_fd;
}

const char *gh_admin_listen_addr(void)
{
    return bound;
}

void gh_admin_check_reload(const gh_cfg_admin *old, const gh_cfg_admin *new_admin)
{
    const char *was = listen_fd >= 0 ? bound : "none";
    const char *is = new_admin->enabled ? new_admin->addr.text : "none";

    if (strcmp(was, is) != 0)
        gh_log_warn("admin listen: the address changes with a restart, not a reload (%s stays; the file says %s)", was,
                    is);
}

static void conn_close(admin_conn *c)
{
    gh_timer_stop(A.loop, &c->timer);
    gh_loop_del(A.loop, &c->io);
    close(c->io.fd);
    c->io.fd = -1;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        A.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    A.nconns--;
    gh_mtext_dispose(&c->out);
    gh_loop_release(A.loop, c); /* an event of this batch may still name it */
}

/*
 * Lingering close: closing with unread input (the rest of a refused or
 * oversized request) would send an RST that can destroy the answer before the
 * client reads it. Input is read and dropped until EOF or ADMIN_LINGER.
 */
static void linger(admin_conn *c)
{
    char junk[4096];

    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->io.fd, junk, sizeof(junk), 0);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0)
            break;
    }
    conn_close(c);
}

/* Writes what is left of the answer; once it is all sent, shuts the write side and lingers. */
static void flush(admin_conn *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = send(c->io.fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->sent += (size_t)n;
    }
    shutdown(c->io.fd, SHUT_WR);
    c->lingering = 1;
    gh_timer_set(A.loop, &c->timer, ADMIN_LINGER);
    linger(c);
}

static void answer(admin_conn *c, int status, const char *type, const gh_mtext *body, int head_only)
{
    static const struct {
        int status;
        const char *text;
    } reasons[] = {{200, "OK"},
                   {400, "Bad Request"},
                   {403, "Forbidden"},
                   {404, "Not Found"},
                   {405, "Method Not Allowed"},
                   {431, "Request Header Fields Too Large"},
                   {500, "Internal Server Error"},
                   {505, "HTTP Version Not Supported"}};
    const char *reason = "Error";

    for (size_t i = 0; i < GH_ARRAY_LEN(reasons); i++)
        if (reasons[i].status == status)
            reason = reasons[i].text;
    c->out.max = ADMIN_MAX_BODY + 1024;
    gh_mtext_printf(&c->out,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s"
                    "Connection: close\r\n\r\n",
                    status, reason, type, body != NULL ? body->len : 0, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    if (body != NULL && !head_only)
        gh_mtext_append(&c->out, body->p, body->len);
    flush(c);
}

static void answer_text(admin_conn *c, int status, const char *text)
{
    gh_mtext body = {NULL, 0, 0, 4096, 0};

    gh_mtext_printf(&body, "%s\n", text);
    answer(c, status, "text/plain; charset=utf-8", &body, 0);
    gh_mtext_dispose(&body);
}

static const char index_page[] = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>gatehouse</title></head>"
                                 "<body><h1>gatehouse</h1><ul><li><a href=\"/status\">/status</a>: pools, servers "
                                 "and their health (JSON)</li><li><a href=\"/metrics\">/metrics</a>: Prometheus "
                                 "metrics</li></ul></body></html>\n";

/* One request line: "GET /metrics HTTP/1.1". Headers are read (bounded) and ignored. */
static void serve(admin_conn *c, size_t line_len)
{
    const char *sp1 = memchr(c->in, ' ', line_len), *sp2, *q;
    gh_mtext body = {NULL, 0, 0, ADMIN_MAX_BODY, 0};
    gh_metrics_view v;
    size_t plen;
    int head;

    sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', line_len - (size_t)(sp1 + 1 - c->in)) : NULL;
    if (sp1 == NULL || sp2 == NULL || sp2 == sp1 + 1 || sp1[1] != '/') {
        answer_text(c, 400, "bad request line");
        return;
    }
    if ((size_t)(c->in + line_len - (sp2 + 1)) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1')) {
        answer_text(c, 505, "HTTP/1.0 or HTTP/1.1 only");
        return;
    }
    head = sp1 - c->in == 4 && memcmp(c->in, "HEAD", 4) == 0;
    if (!head && !(sp1 - c->in == 3 && memcmp(c->in, "GET", 3) == 0)) {
        answer_text(c, 405, "GET or HEAD only");
        return;
    }
    q = memchr(sp1 + 1, '?', (size_t)(sp2 - sp1 - 1));
    plen = (size_t)((q != NULL ? q : sp2) - (sp1 + 1));
    memset(&v, 0, sizeof(v));
    A.view(A.arg, &v);
    if (plen == 8 && memcmp(sp1 + 1, "/metrics", 8) == 0)
        gh_metrics_prometheus(&v, &body);
    else if (plen == 7 && memcmp(sp1 + 1, "/status", 7) == 0)
        gh_metrics_status_json(&v, &body);
    else if (plen == 1)
        gh_mtext_append(&body, index_page, sizeof(index_page) - 1);
    else {
        answer_text(c, 404, "not found: try /metrics or /status");
        return;
    }
    if (body.full) {
        gh_log_error("admin: the answer to %.*s is larger than %u bytes (or out of memory)", (int)plen, sp1 + 1,
                     ADMIN_MAX_BODY);
        answer_text(c, 500, "answer too large");
    } else {
        answer(c, 200,
               plen == 8   ? "text/plain; version=0.0.4; charset=utf-8"
               : plen == 7 ? "application/json"
                           : "text/html; charset=utf-8",
               &body, head);
    }
    gh_mtext_dispose(&body);
}

static void on_conn_event(gh_io *io, unsigned events)
{
    admin_conn *c = (admin_conn *)io;
    const char *end;

    if (c->lingering) {
        linger(c);
        return;
    }
    if (c->out.len > 0) { /* answering: only room to write matters */
        flush(c);
        return;
    }
    for (;;) {
        ssize_t n = recv(io->fd, c->in + c->inlen, sizeof(c->in) - c->inlen, 0);

        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->inlen += (size_t)n;
        if ((end = memmem(c->in, c->inlen, "\r\n\r\n", 4)) != NULL) {
            if (c->refused)
                answer_text(c, 403, "forbidden: not in the admin allow list");
            else
                serve(c, (size_t)((const char *)memchr(c->in, '\r', c->inlen) - c->in));
            return;
        }
        if (c->inlen == sizeof(c->in)) {
            answer_text(c, 431, "request head too large");
            return;
        }
    }
}

static void on_conn_timeout(gh_timer *t)
{
    conn_close((admin_conn *)((char *)t - offsetof(admin_conn, timer)));
}

static int allowed(const struct sockaddr_storage *peer)
{
    gh_metrics_view v;
    static gh_cidr loopback[2];
    const char *why;

    memset(&v, 0, sizeof(v));
    A.view(A.arg, &v);
    if (v.cfg == NULL || !v.cfg->admin.enabled)
        return 0; /* a reload removed the admin block: nothing is served until the restart closes the port */
    if (v.cfg->admin.nallow > 0)
        return gh_cidr_match_any(v.cfg->admin.allow, v.cfg->admin.nallow, (const struct sockaddr *)peer);
    if (loopback[0].family == 0) {
        gh_cidr_parse("127.0.0.0/8", 11, &loopback[0], &why);
        gh_cidr_parse("::1", 3, &loopback[1], &why);
    }
    return gh_cidr_match_any(loopback, 2, (const struct sockaddr *)peer);
}

static void resume_accept(gh_timer *t)
{
    if (A.io.fd >= 0)
        gh_loop_add_listener(A.loop, &A.io);
}

static void on_accept(gh_io *io, unsigned events)
{
    for (int i = 0; i < 16; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        admin_conn *c;
        int fd = gh_sock_accept(io->fd, &peer, &plen);

        if (fd == GH_AGAIN)
            return;
        if (fd < 0) {
            gh_loop_del(A.loop, io);
            gh_timer_set(A.loop, &A.pause, ADMIN_TIMEOUT / 5);
            return;
        }
        if (A.nconns >= ADMIN_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
            close(fd);
            continue;
        }
        c->io.fd = fd;
        c->io.cb = on_conn_event;
        c->timer.cb = on_conn_timeout;
        c->next = A.conns;
        if (A.conns != NULL)
            A.conns->prev = c;
        A.conns = c;
        A.nconns++;
        if (gh_loop_add(A.loop, &c->io) < 0) {
            conn_close(c);
            continue;
        }
        gh_timer_set(A.loop, &c->timer, ADMIN_TIMEOUT);
        if (!allowed(&peer)) {
            char ip[64];

            gh_sock_ntop(&peer, ip, sizeof(ip));
            gh_log_debug("admin: refused %s: not in the admin block's allow list", ip);
            c->refused = 1;
        }
        on_conn_event(&c->io, GH_EV_READ); /* the request is often there already */
    }
}

int gh_admin_start(gh_loop *loop, void (*view)(void *arg, gh_metrics_view *v), void *arg)
{
    if (listen_fd < 0)
        return 0;
    A.loop = loop;
    A.view = view;
    A.arg = arg;
    A.io.fd = listen_fd;
    A.io.cb = on_accept;
    A.pause.cb = resume_accept;
    return gh_loop_add_listener(loop, &A.io);
}

void gh_admin_stop(void)
{
    while (A.conns != NULL)
        conn_close(A.conns);
    if (A.loop != NULL)
        gh_timer_stop(A.loop, &A.pause);
    if (A.io.fd >= 0 && A.loop != NULL)
        gh_loop_del(A.loop, &A.io);
    A.io.fd = -1;
}
