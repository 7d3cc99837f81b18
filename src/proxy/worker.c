/*
 * worker: sets up one event loop, accepts on the shared listening socket and
 * handles signals; the HTTP work is in client.c and exchange.c.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/sock.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define ACCEPT_BATCH    64
#define ACCEPT_PAUSE_MS 100

static int exit_status;

static void on_accept(gh_io *io, unsigned events);

static void resume_accept(gh_timer *t)
{
    proxy__worker *w = (proxy__worker *)((char *)t - offsetof(proxy__worker, drain_timer));
    w->accept_paused = 0;
    if (!w->draining)
        for (size_t i = 0; i < w->nacceptors; i++)
            gh_loop_add_listener(w->loop, &w->acceptors[i].io);
}

static void pause_accept(proxy__worker *w)
{
    if (w->accept_paused)
        return;
    w->accept_paused = 1;
    for (size_t i = 0; i < w->nacceptors; i++)
        gh_loop_del(w->loop, &w->acceptors[i].io);
    w->drain_timer.cb = resume_accept;
    gh_timer_set(w->loop, &w->drain_timer, ACCEPT_PAUSE_MS);
}

static void on_accept(gh_io *io, unsigned events)
{
    proxy__acceptor *a = (proxy__acceptor *)io;
    proxy__worker *w = a->w;
    struct sockaddr_storage peer;
    socklen_t plen;

    for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
        int fd = gh_sock_accept(io->fd, &peer, &plen);
        if (fd == GH_AGAIN)
            return;
        if (fd < 0) {
            /* Out of descriptors: stop listening briefly instead of spinning on a ready socket. */
            gh_log_error("accept on %s: %s", a->listener->cfg->addr.text, strerror(errno));
            pause_accept(w);
            return;
        }
        proxy__client_accept(w, a->listener, fd, &peer);
    }
}

static void on_drain_deadline(gh_timer *t)
{
    proxy__worker *w = (proxy__worker *)((char *)t - offsetof(proxy__worker, drain_timer));
    gh_log_warn("worker %d: shutdown deadline reached with %u connections open", w->id, w->nclients);
    exit_status = 1;
    gh_loop_stop(w->loop);
}

static void start_drain(proxy__worker *w)
{
    if (w->draining)
        return;
    w->draining = 1;
    gh_log_info("worker %d: draining %u connections", w->id, w->nclients);
    for (size_t i = 0; i < w->nacceptors; i++) {
        gh_loop_del(w->loop, &w->acceptors[i].io);
        close(w->acceptors[i].io.fd);
        w->acceptors[i].io.fd = -1;
    }
    proxy__pools_close_idle(w);
    w->drain_timer.cb = on_drain_deadline;
    gh_timer_set(w->loop, &w->drain_timer, w->t->shutdown);
    proxy__client_drain(w);
    if (w->nclients == 0)
        gh_loop_stop(w->loop);
}

static void on_signal(gh_io *io, unsigned events)
{
    proxy__worker *w = (proxy__worker *)((char *)io - offsetof(proxy__worker, signal_io));
    struct signalfd_siginfo si;

    while (read(io->fd, &si, sizeof(si)) == sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
            start_drain(w);
            break;
        case SIGINT:
        case SIGQUIT:
            exit_status = 0;
            gh_loop_stop(w->loop);
            return;
        default:
            break; /* SIGHUP: the master handles reloads */
        }
    }
}

/*
 * A handshake allocates far more than the session it leaves behind, and the
 * freed space sits in holes between long-lived sessions. Once no handshake is
 * under way, give those pages back (at most once a second), so that memory per
 * idle connection is what the connections hold, not what the busiest moment did.
 */
static void trim_heap(proxy__worker *w)
{
    uint64_t now = gh_loop_now(w->loop);
    if (!w->heap_dirty || w->handshaking != 0 || now < w->next_trim)
        return;
    malloc_trim(64 * 1024);
    w->heap_dirty = 0;
    w->next_trim = now + 1000;
}

static void on_idle(void *arg)
{
    proxy__access_flush(arg);
    trim_heap(arg);
}

static int setup(proxy__worker *w, const gh_runtime *rt, const int *listen_fds, int id)
{
    sigset_t mask;

    w->rt = rt;
    w->cfg = rt->cfg;
    w->t = &rt->cfg->timeouts;
    w->id = id;
    if ((w->loop = gh_loop_new()) == NULL || proxy__pools_init(w) < 0 || proxy__access_open(w) < 0)
        return -1;
    w->nacceptors = rt->nlisteners;
    if ((w->acceptors = calloc(rt->nlisteners ? rt->nlisteners : 1, sizeof(*w->acceptors))) == NULL)
        return -1;
    for (size_t i = 0; i < rt->nlisteners; i++) {
        proxy__acceptor *a = &w->acceptors[i];
        a->io.fd = listen_fds[i];
        a->io.cb = on_accept;
        a->w = w;
        a->listener = &rt->listeners[i];
        if (gh_loop_add_listener(w->loop, &a->io) < 0)
            return -1;
    }
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    w->signal_io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    w->signal_io.cb = on_signal;
    if (w->signal_io.fd < 0 || gh_loop_add(w->loop, &w->signal_io) < 0)
        return -1;
    gh_loop_on_idle(w->loop, on_idle, w);
    return 0;
}

static void teardown(proxy__worker *w)
{
    while (w->clients != NULL)
        proxy__client_close(w->clients);
    proxy__pools_free(w);
    free(w->acceptors);
    if (w->access_fd >= 0)
        proxy__access_flush(w);
    if (w->access_fd > STDERR_FILENO)
        close(w->access_fd);
    if (w->signal_io.fd >= 0)
        close(w->signal_io.fd);
    gh_timer_stop(w->loop, &w->drain_timer);
    gh_loop_free(w->loop);
    gh_buf_pool_drain();
}

int gh_worker_run(const gh_runtime *rt, const int *listen_fds, int id)
{
    proxy__worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return 1;
    w->access_fd = -1;
    if (setup(w, rt, listen_fds, id) < 0) {
        gh_log_error("worker %d: cannot start: %s", id, strerror(errno));
        return 1;
    }
    gh_log_debug("worker %d started", id);
    gh_loop_run(w->loop);
    teardown(w);
    free(w);
    return exit_status;
}
