/*
 * upstream: connections to the servers of the pool, and their keep-alive
 * reuse. An idle connection waits in its server's LIFO list (the most recently
 * used is the one least likely to have been closed by the server).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/sock.h"
#include "proxy/proxy.h"

#define MAX_IDLE_PER_SERVER 256
#define FAIL_BACKOFF_MS     2000

void proxy__servers_init(proxy__worker *w)
{
    w->nservers = w->conf->nservers;
    for (size_t i = 0; i < w->nservers; i++) {
        w->servers[i].addr = &w->conf->servers[i];
        w->rr[i].weight = 1;
        w->rr[i].current = 0;
    }
}

static void idle_unlink(proxy__upstream *u)
{
    proxy__server *s = &u->w->servers[u->server];
    if (u->prev != NULL)
        u->prev->next = u->next;
    else
        s->idle = u->next;
    if (u->next != NULL)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
    s->nidle--;
}

static void upstream_close(proxy__upstream *u)
{
    gh_loop *loop = u->w->loop;
    gh_timer_stop(loop, &u->timer);
    gh_loop_del(loop, &u->io);
    close(u->io.fd);
    u->io.fd = -1;
    gh_buf_release(&u->in);
    gh_loop_release(loop, u);
}

/* Events while idle: the server closed the connection or sent something unasked. */
static int idle_still_good(proxy__upstream *u)
{
    char c;
    ssize_t n = recv(u->io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void on_upstream_event(gh_io *io, unsigned events)
{
    proxy__upstream *u = (proxy__upstream *)io;
    if (events & GH_EV_READ)
        u->can_read = 1;
    if (events & GH_EV_HUP)
        u->hup = 1;
    if (events & GH_EV_WRITE)
        u->can_write = 1;
    if (u->ex != NULL) {
        proxy__client *c = u->ex->c;
        proxy__exchange_upstream_event(u->ex, events);
        if (c->state != CLIENT_EXCHANGE)
            proxy__client_dispatch(c); /* the exchange ended: next request, or close */
        return;
    }
    if ((events & (GH_EV_READ | GH_EV_ERROR)) && !idle_still_good(u)) {
        idle_unlink(u);
        upstream_close(u);
    }
}

static void on_upstream_timeout(gh_timer *t)
{
    proxy__upstream *u = (proxy__upstream *)((char *)t - offsetof(proxy__upstream, timer));
    if (u->ex != NULL) {
        proxy__client *c = u->ex->c;
        proxy__exchange_upstream_timeout(u->ex);
        if (c->state != CLIENT_EXCHANGE)
            proxy__client_dispatch(c);
        return;
    }
    idle_unlink(u);
    upstream_close(u);
}

static int pick_server(proxy__worker *w, uint64_t tried)
{
    uint64_t now = gh_loop_now(w->loop), down = 0;
    for (size_t i = 0; i < w->nservers; i++)
        if (w->servers[i].down_until > now)
            down |= (uint64_t)1 << i;
    int i = gh_rr_pick(w->rr, w->nservers, tried | down);
    /* Every untried server recently failed: try them anyway rather than refuse at once. */
    return i >= 0 ? i : gh_rr_pick(w->rr, w->nservers, tried);
}

static proxy__upstream *upstream_new(proxy__worker *w, int server)
{
    const gh_addr *a = w->servers[server].addr;
    int fd = gh_sock_connect(a);
    if (fd < 0) {
        gh_log_warn("connect to %s failed: %s", a->text, strerror(-fd));
        w->servers[server].down_until = gh_loop_now(w->loop) + FAIL_BACKOFF_MS;
        return NULL;
    }
    proxy__upstream *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        close(fd);
        return NULL;
    }
    u->io.fd = fd;
    u->io.cb = on_upstream_event;
    u->timer.cb = on_upstream_timeout;
    u->w = w;
    u->server = (uint16_t)server;
    if (gh_loop_add(w->loop, &u->io) < 0) {
        close(fd);
        free(u);
        return NULL;
    }
    gh_timer_set(w->loop, &u->timer, w->conf->connect_timeout);
    return u;
}

proxy__upstream *proxy__upstream_get(proxy__worker *w, uint64_t *tried)
{
    for (;;) {
        if (w->nservers == 0)
            return NULL;
        int i = pick_server(w, *tried);
        if (i < 0)
            return NULL;
        *tried |= (uint64_t)1 << i;
        proxy__server *s = &w->servers[i];
        if (s->idle != NULL) {
            proxy__upstream *u = s->idle;
            idle_unlink(u);
            gh_timer_stop(w->loop, &u->timer);
            u->reused = 1;
            return u;
        }
        proxy__upstream *u = upstream_new(w, i);
        if (u != NULL)
            return u;
    }
}

void proxy__upstream_release(proxy__upstream *u, int reusable)
{
    proxy__worker *w = u->w;
    proxy__server *s = &w->servers[u->server];

    u->ex = NULL;
    if (!reusable || w->draining || s->nidle >= MAX_IDLE_PER_SERVER || gh_buf_len(&u->in) != 0) {
        upstream_close(u);
        return;
    }
    gh_buf_release(&u->in);
    u->next = s->idle;
    u->prev = NULL;
    if (s->idle != NULL)
        s->idle->prev = u;
    s->idle = u;
    s->nidle++;
    gh_timer_set(w->loop, &u->timer, w->conf->upstream_idle_timeout);
}

void proxy__upstream_mark_failed(proxy__upstream *u)
{
    proxy__server *s = &u->w->servers[u->server];
    s->down_until = gh_loop_now(u->w->loop) + FAIL_BACKOFF_MS;
}

void proxy__servers_close_idle(proxy__worker *w)
{
    for (size_t i = 0; i < w->nservers; i++)
        while (w->servers[i].idle != NULL) {
            proxy__upstream *u = w->servers[i].idle;
            idle_unlink(u);
            upstream_close(u);
        }
}
