/*
 * worker: sets up one event loop, accepts on the shared listening socket and
 * handles signals; the HTTP work is in client.c and exchange.c.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/admin.h"
#include "conf/bundle.h"
#include "core/common.h"
#include "core/log.h"
#include "core/sandbox.h"
#include "net/sock.h"
#include "proxy/limit.h"
#include "proxy/observe.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"

#define ACCEPT_BATCH    64
#define ACCEPT_PAUSE_MS 100
#define ACCEPT_LOG_MS   10000 /* "accept failed" once per this at most: it repeats every pause */
#define POOL_KEEP       64    /* free buffers kept cached once a burst is over (1 MiB) */

static int exit_status;

static void on_accept(gh_io *io, unsigned events);

static void resume_accept(gh_timer *t)
{
    proxy__worker *w = (proxy__worker *)((char *)t - offsetof(proxy__worker, drain_timer));
    w->accept_paused = 0;
    w->limit_paused = 0;
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

/* This worker's share of max_connections, from the open file limit it inherited (see proxy/limit.h). */
static void set_limit(proxy__worker *w)
{
    const gh_config *cfg = w->gen->rt->cfg;
    struct rlimit rl;
    uint64_t nofile = 1024;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        nofile = rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX : (uint64_t)rl.rlim_cur;
    w->max_clients =
        gh_conn_limit_compute(cfg->max_connections, cfg->workers, nofile, w->gen->rt->nlisteners).per_worker;
}

/* Client connections for max_connections: a tunnel (a WebSocket) is one too, with its upstream socket. */
static uint32_t nconns(const proxy__worker *w)
{
    return w->nclients + w->ntunnels;
}

/*
 * At max_connections: the longest-idle keep-alive clients make room, as nginx
 * does. 1 when there is room now; 0 when every client is busy (the caller then
 * pauses accepting until one leaves). Logged once when the limit is reached,
 * and once when it clears (check_limit), not on every accept.
 */
static int make_room(proxy__worker *w)
{
    size_t n;

    if (!w->at_limit) {
        w->at_limit = 1;
        gh_log_warn("worker %d: connection limit reached (%u clients of %u, max_connections): closing idle "
                    "keep-alive connections, oldest first, and pausing accepts while none is idle",
                    w->id, nconns(w), w->max_clients);
    }
    gh_metric_limit(w->metrics, GH_M_LIMIT_MAX_CONNECTIONS);
    n = proxy__client_close_idle(w);
    w->limit_closed += n;
    if (nconns(w) < w->max_clients)
        return 1;
    w->limit_pauses++;
    return 0;
}

/* Once per loop iteration: resume accepting as soon as a client left; say when the limit cleared. */
static void check_limit(proxy__worker *w)
{
    if (!w->at_limit)
        return;
    if (w->limit_paused && nconns(w) < w->max_clients && !w->draining) {
        gh_timer_stop(w->loop, &w->drain_timer);
        resume_accept(&w->drain_timer);
    }
    /* A tenth below the limit, so that a worker hovering at it does not log every change. */
    if (nconns(w) + w->max_clients / 10 + 1 <= w->max_clients) {
        gh_log_info("worker %d: below the connection limit again (%u clients): %llu idle connections were "
                    "closed to make room, accepting paused %llu times",
                    w->id, nconns(w), (unsigned long long)w->limit_closed, (unsigned long long)w->limit_pauses);
        w->at_limit = 0;
        w->limit_closed = w->limit_pauses = 0;
    }
}

/* accept() failed (out of descriptors, most likely): make room if idle clients can give some back. 1: retry now. */
static int accept_failed(proxy__worker *w, const proxy__acceptor *a, int err)
{
    uint64_t now = gh_loop_now(w->loop);
    size_t closed = err == EMFILE || err == ENFILE ? proxy__client_close_idle(w) : 0;

    w->accept_errors++;
    if (w->accept_error_logged == 0 || now - w->accept_error_logged >= ACCEPT_LOG_MS) {
        gh_log_error("worker %d: accept on %s: %s: %s (%llu times since the last such line)", w->id,
                     a->listener->cfg->addr.text, strerror(err),
                     closed ? "closed idle keep-alive connections to make room" : "accepting paused briefly",
                     (unsigned long long)w->accept_errors);
        w->accept_error_logged = now;
        w->accept_errors = 0;
    }
    return closed > 0;
}

/* Accepts up to ACCEPT_BATCH connections; returns 1 when all of them were taken (more may wait). */
static int accept_batch(proxy__acceptor *a)
{
    proxy__worker *w = a->w;
    struct sockaddr_storage peer;
    socklen_t plen;

    for (int i = 0; i < ACCEPT_BATCH && !w->draining; i++) {
        /* Room is made only for a connection known to wait (the listener is level-triggered:
         * if more wait after this batch, the next iteration says so), never speculatively. */
        if (nconns(w) >= w->max_clients && i > 0)
            return 0;
        if (nconns(w) >= w->max_clients && !make_room(w)) {
            /* Connections wait in the shared queue, where other workers may take them. */
            if (!w->accept_paused) {
                pause_accept(w);
                w->limit_paused = 1;
            }
            return 0;
        }
        int fd = gh_sock_accept(a->io.fd, &peer, &plen);
        if (fd == GH_AGAIN)
            return 0;
        if (fd < 0) {
            /* Out of descriptors: stop listening briefly instead of spinning on a ready socket. */
            if (accept_failed(w, a, errno))
                continue;
            pause_accept(w);
            return 0;
        }
        /* The one place a listener's mode decides what a connection becomes. */
        switch (a->listener->mode) {
        case PROXY__MODE_STREAM:
            proxy__stream_accept(w, a->listener, fd, &peer);
            break;
        case PROXY__MODE_HTTP:
        case PROXY__MODE_FORWARD: /* the same HTTP/1.1 and HTTP/2 sessions; the exchange turns to forward.c */
        default:
            proxy__client_accept(w, a->listener, fd, &peer);
            break;
        }
    }
    return !w->draining;
}

static void on_accept(gh_io *io, unsigned events)
{
    accept_batch((proxy__acceptor *)io);
}

/*
 * Tunnels (WebSockets) may last for hours: they get until the deadline to end
 * by themselves, then are closed, which is no failure. HTTP exchanges still
 * running at the deadline are.
 */
static void on_drain_deadline(gh_timer *t)
{
    proxy__worker *w = (proxy__worker *)((char *)t - offsetof(proxy__worker, drain_timer));
    if (w->ntunnels > 0)
        gh_log_info("worker %d: shutdown deadline: closing %u tunnels", w->id, w->ntunnels);
    proxy__tunnels_close(w);
    /* An HTTP/2 connection that carried nothing but tunnels (WebSockets, RFC 8441) was theirs: closed
     * with them, no failure, as an HTTP/1.1 tunnel's client connection is. */
    for (proxy__client *c = w->clients, *next; c != NULL; c = next) {
        next = c->next;
        if (c->state == CLIENT_H2 && proxy__h2_tunnels_only(c))
            proxy__client_close(c);
    }
    if (w->nclients > 0) {
        gh_log_warn("worker %d: shutdown deadline reached with %u connections open", w->id, w->nclients);
        exit_status = 1;
    }
    gh_loop_stop(w->loop);
}

static void start_drain(proxy__worker *w)
{
    if (w->draining)
        return;
    gh_log_info("worker %d: draining %u connections and %u tunnels", w->id, w->nclients, w->ntunnels);
    gh_admin_stop(); /* after a binary upgrade the new master's workers answer on the same socket */
    for (size_t i = 0; i < w->nacceptors; i++) {
        gh_loop_del(w->loop, &w->acceptors[i].io);
        /*
         * The socket lives on in other processes (the workers of a new master after a binary
         * upgrade). With EPOLLEXCLUSIVE one waiter is woken per new connection: if that was us,
         * the connection would wait in the queue with nobody woken for it. So, once out of the
         * epoll set (later arrivals wake the others), take what is queued and serve it.
         */
        for (int k = 0; k < 64 && !w->accept_paused && accept_batch(&w->acceptors[i]); k++)
            ;
        close(w->acceptors[i].io.fd);
        w->acceptors[i].io.fd = -1;
    }
    w->draining = 1;
    proxy__pools_close_idle(w->gen);
    w->drain_timer.cb = on_drain_deadline;
    gh_timer_set(w->loop, &w->drain_timer, w->t->shutdown);
    proxy__client_drain(w);
    if (w->nclients == 0 && w->ntunnels == 0)
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
        case SIGUSR1:
            proxy__access_reopen(w); /* log rotation: the master forwards it */
            break;
        case SIGUSR2:
            /* Only with GH_TEST_SECCOMP_VIOLATE set (see setup): the test of the allow-list. */
            gh_log_warn("worker %d: SIGUSR2 with GH_TEST_SECCOMP_VIOLATE: making a forbidden system call", w->id);
            gh_sandbox_violate();
            break;
        default:
            break; /* SIGHUP: the master handles reloads */
        }
    }
}

/*
 * A handshake allocates far more than the session it leaves behind, and the
 * freed space sits in holes between long-lived sessions. Once no handshake is
 * under way, give those pages back (at most once a second), and the buffers the
 * pool cached beyond a few, so that memory per idle connection is what the
 * connections hold, not what the busiest moment did.
 */
static void trim_heap(proxy__worker *w)
{
    uint64_t now = gh_loop_now(w->loop);
    if (!w->heap_dirty || w->handshaking != 0)
        return;
    if (now < w->next_trim) {
        /* Not now, but surely later: the loop may sleep for long after the last connection went idle
         * (nothing else is due), and what its grace freed would stay resident until then. */
        if (w->trim_timer.when == 0)
            gh_timer_set(w->loop, &w->trim_timer, (uint32_t)(w->next_trim - now));
        return;
    }
    gh_buf_pool_trim(POOL_KEEP);
    malloc_trim(64 * 1024);
    w->heap_dirty = 0;
    w->next_trim = now + 1000;
}

static void on_trim_due(gh_timer *t)
{
    (void)t; /* the idle hook that follows trims */
}

static void on_idle(void *arg)
{
    proxy__h2_flush_dirty(arg); /* HTTP/2 output of this iteration, batched: one send per connection */
    check_limit(arg);
    proxy__access_flush(arg);
    trim_heap(arg);
}

/* ---- configuration generations ---- */

static proxy__gen *gen_new(proxy__worker *w, gh_runtime *rt)
{
    proxy__gen *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->w = w;
    g->rt = rt;
    g->refs = 1;
    if (proxy__pools_init(g) < 0) {
        proxy__pools_free(g);
        free(g);
        return NULL;
    }
    return g;
}

void proxy__gen_unref(proxy__gen *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    proxy__fwd_pool_free(g);
    proxy__pools_free(g);
    proxy__access_gen_free(g);
    gh_runtime_free(g->rt);
    free(g);
}

/* A listener's identity across generations: its address and whether it speaks TLS. */
static int same_listener(const char *addr, int tls, const gh_cfg_listener *l)
{
    return strcmp(l->addr.text, addr) == 0 && !tls == !l->tls;
}

int proxy__session_regen(proxy__session *s)
{
    proxy__worker *w = s->w;
    const gh_runtime *rt = w->gen->rt;
    const gh_cfg_listener *mine = s->listener->cfg;

    for (size_t i = 0; i < rt->nlisteners; i++) {
        const proxy__listener *l = &rt->listeners[i];
        /* an HTTP session never moves to an address that became a stream service's: it has no router; a
         * forward proxy's moves as a reverse proxy's does (its exchanges follow l->forward) */
        if (l->mode != PROXY__MODE_STREAM && same_listener(mine->addr.text, mine->tls, l->cfg)) {
            proxy__session_drop_own(s); /* it belongs to a pool of the old generation */
            proxy__gen_unref(s->gen);
            s->gen = w->gen;
            s->gen->refs++;
            s->listener = l;
            return 0;
        }
    }
    return -1;
}

/* Listens on fds[i] for the current generation's listener i; the previous sockets are closed. */
static int set_acceptors(proxy__worker *w, const int *fds)
{
    const gh_runtime *rt = w->gen->rt;
    proxy__acceptor *a = calloc(rt->nlisteners ? rt->nlisteners : 1, sizeof(*a));

    if (a == NULL)
        return -1;
    for (size_t i = 0; i < w->nacceptors; i++) {
        if (!w->accept_paused)
            gh_loop_del(w->loop, &w->acceptors[i].io);
        close(w->acceptors[i].io.fd);
        w->acceptors[i].io.fd = -1; /* an accept event of this batch may still name it */
    }
    if (w->acceptors != NULL)
        gh_loop_release(w->loop, w->acceptors); /* freed after the batch, not under its feet */
    w->acceptors = a;
    w->nacceptors = rt->nlisteners;
    for (size_t i = 0; i < rt->nlisteners; i++) {
        a[i].io.fd = fds[i];
        a[i].io.cb = on_accept;
        a[i].w = w;
        a[i].listener = &rt->listeners[i];
        if (!w->accept_paused && gh_loop_add_listener(w->loop, &a[i].io) < 0)
            return -1;
    }
    return 0;
}

/*
 * Orders the sockets of a reload message by the listeners of rt: out[i] is the
 * socket tagged with listener i's identity. Every listener must have one;
 * sockets no listener takes are closed. Returns 0, or -1 (all closed).
 */
static int match_listeners(const gh_runtime *rt, const gh_reload_msg *m, int *fds, int *out)
{
    size_t n = m->nlisteners;
    int rc = rt->nlisteners == n ? 0 : -1;

    for (size_t i = 0; i < rt->nlisteners; i++)
        out[i] = -1;
    for (size_t i = 0; rc == 0 && i < rt->nlisteners; i++) {
        for (size_t k = 0; k < n && out[i] < 0; k++)
            if (fds[k] >= 0 && same_listener(m->listeners[k].addr, m->listeners[k].tls, rt->listeners[i].cfg)) {
                out[i] = fds[k];
                fds[k] = -1;
            }
        if (out[i] < 0)
            rc = -1;
    }
    for (size_t k = 0; k < n; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    if (rc < 0)
        for (size_t i = 0; i < rt->nlisteners; i++)
            if (out[i] >= 0)
                close(out[i]);
    return rc;
}

/*
 * A reload, as the master sends it once the new file proved valid: the worker
 * builds the new generation from the bundle, the bytes and addresses the
 * master read (no file is opened, no name resolved: the loop must not wait on
 * a disk or a resolver), and takes the listening sockets by identity (the
 * same sockets for addresses that stay, so no connection waiting in a queue is
 * lost). Connections in flight keep their generation.
 */
static void close_all(const int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
}

/* The master's descriptors of the access log files of rt (gh_access_give): they replace the previous ones. */
static void take_logs(const gh_runtime *rt, const gh_reload_msg *m, const int *logfds)
{
    gh_access_given_reset();
    for (size_t k = 0; k < m->nlogs; k++) {
        if (m->log_index[k] < rt->cfg->nlogs)
            gh_access_give(rt->cfg->logs[m->log_index[k]].path, logfds[k]);
        else
            close(logfds[k]);
    }
}

static void reload(proxy__worker *w, int bundle_fd, const gh_reload_msg *m, int *fds)
{
    const int *logfds = fds + m->nlisteners;
    const char *path = w->gen->rt->cfg->path;
    char err[1024] = "";
    proxy__gen *g = NULL, *old = w->gen;
    gh_shared shared = {old->rt->health, old->rt->addrs, old->rt->rates, old->rt->peers};
    gh_bundle *b = gh_bundle_from_memfd(bundle_fd, err, sizeof(err));
    gh_runtime *rt = NULL;
    int ordered[GH_MAX_LISTENERS];

    close(bundle_fd);
    if (b != NULL)
        rt = gh_runtime_load(path, gh_bundle_source(b), &shared, 0, old->rt, err, sizeof(err));
    gh_bundle_free(b);
    if (rt != NULL)
        take_logs(rt, m, logfds);
    else
        close_all(logfds, m->nlogs);
    if (rt != NULL && match_listeners(rt, m, fds, ordered) < 0) {
        snprintf(err, sizeof(err), "the listening sockets do not match the listeners of %s", path);
        gh_runtime_free(rt);
        gh_log_error("worker %d: reload failed, keeping the running configuration: %s", w->id, err);
        return;
    }
    if (rt == NULL || (g = gen_new(w, rt)) == NULL) {
        gh_log_error("worker %d: reload failed, keeping the running configuration: %s", w->id,
                     err[0] ? err : "out of memory");
        if (rt != NULL && g == NULL) {
            for (size_t i = 0; i < rt->nlisteners; i++)
                close(ordered[i]);
            gh_runtime_free(rt);
        } else {
            for (size_t k = 0; k < m->nlisteners; k++)
                close(fds[k]);
        }
        return;
    }
    w->gen = g;
    w->t = &rt->cfg->timeouts;
    set_limit(w);
    if (set_acceptors(w, ordered) < 0)
        gh_log_error("worker %d: cannot listen on the new sockets: %s", w->id, strerror(errno));
    proxy__pools_close_idle(old); /* pooled connections of the old generation will not be used again */
    proxy__access_reopen(w);
    proxy__gen_unref(old);
    gh_log_info("worker %d: reloaded %s", w->id, rt->cfg->path); /* `path` went with the old generation */
}

/* The master's control socket: one gh_reload_msg per reload, the bundle and the listening sockets attached. */
static void on_ctl(gh_io *io, unsigned events)
{
    proxy__worker *w = (proxy__worker *)((char *)io - offsetof(proxy__worker, ctl_io));
    static gh_reload_msg rm; /* 4 KiB: not on the stack of every event */
    char cbuf[CMSG_SPACE(sizeof(int) * (GH_MAX_LISTENERS + 1 + GH_MAX_LOG_FDS))];
    struct iovec iov = {&rm, sizeof(rm)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};

    for (;;) {
        ssize_t n = recvmsg(io->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        int fds[GH_MAX_LISTENERS + 1 + GH_MAX_LOG_FDS];
        size_t nfds = 0;

        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                gh_loop_del(w->loop, io); /* the master is gone: PDEATHSIG brings SIGTERM */
                close(io->fd);
                io->fd = -1;
            }
            return;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && nfds == 0) {
                nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                if (nfds > GH_ARRAY_LEN(fds))
                    nfds = GH_ARRAY_LEN(fds); /* cannot happen: cbuf holds no more */
                memcpy(fds, CMSG_DATA(c), nfds * sizeof(int));
            }
        /* From the master, but checked all the same: a malformed message changes nothing. */
        if ((size_t)n == sizeof(rm) && !(msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && rm.magic == GH_REOPEN_MAGIC &&
            rm.nlisteners == 0 && rm.nlogs <= GH_MAX_LOG_FDS && nfds == rm.nlogs) {
            /* SIGUSR1 at the master: the log files it opened again, after a rotation */
            take_logs(w->gen->rt, &rm, fds);
            proxy__access_reopen(w);
        } else if ((size_t)n != sizeof(rm) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
                   rm.magic != GH_RELOAD_MAGIC || rm.nlisteners > GH_MAX_LISTENERS || rm.nlogs > GH_MAX_LOG_FDS ||
                   nfds != rm.nlisteners + 1 + rm.nlogs) {
            gh_log_error("worker %d: malformed reload message from the master (%zd bytes, %zu descriptors); ignored",
                         w->id, n, nfds);
            close_all(fds, nfds);
        } else if (w->draining) {
            close_all(fds, nfds);
        } else {
            for (size_t i = 0; i < rm.nlisteners; i++)
                rm.listeners[i].addr[sizeof(rm.listeners[i].addr) - 1] = '\0';
            reload(w, fds[0], &rm, fds + 1);
        }
        msg.msg_controllen = sizeof(cbuf);
    }
}

static int setup(proxy__worker *w, gh_runtime *rt, const int *listen_fds, int ctl_fd, int id)
{
    sigset_t mask;

    w->id = id;
    w->t = &rt->cfg->timeouts;
    w->metrics = gh_metrics_self();
    if ((w->loop = gh_loop_new()) == NULL || (w->gen = gen_new(w, rt)) == NULL || proxy__access_open(w) < 0)
        return -1;
    set_limit(w);
    if (set_acceptors(w, listen_fds) < 0)
        return -1;
    w->ctl_io.fd = ctl_fd;
    w->ctl_io.cb = on_ctl;
    if (ctl_fd >= 0 && gh_loop_add(w->loop, &w->ctl_io) < 0)
        return -1;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    /* The one test hook of the sandbox: SIGUSR2 makes a call outside the allow-list. Without the variable,
     * SIGUSR2 keeps its default action (the worker ends), as before. */
    if (getenv("GH_TEST_SECCOMP_VIOLATE") != NULL)
        sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    w->signal_io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    w->signal_io.cb = on_signal;
    if (w->signal_io.fd < 0 || gh_loop_add(w->loop, &w->signal_io) < 0)
        return -1;
    gh_loop_on_idle(w->loop, on_idle, w);
    w->trim_timer.cb = on_trim_due;
    return gh_admin_start(w->loop, proxy__observe_view, w);
}

static void teardown(proxy__worker *w)
{
    while (w->clients != NULL)
        proxy__client_close(w->clients);
    proxy__tunnels_close(w);
    gh_admin_stop();
    for (size_t i = 0; i < w->nacceptors; i++)
        if (w->acceptors[i].io.fd >= 0)
            close(w->acceptors[i].io.fd);
    free(w->acceptors);
    proxy__gen_unref(w->gen);
    proxy__fwd_worker_free(w);
    proxy__access_close(w);
    if (w->signal_io.fd >= 0)
        close(w->signal_io.fd);
    if (w->ctl_io.fd >= 0)
        close(w->ctl_io.fd);
    gh_timer_stop(w->loop, &w->drain_timer);
    free(w->svc_counts);
    gh_timer_stop(w->loop, &w->h2_kick);
    gh_timer_stop(w->loop, &w->trim_timer);
    gh_loop_free(w->loop);
    gh_buf_pool_drain();
}

int gh_worker_run(gh_runtime *rt, const int *listen_fds, int ctl_fd, int id)
{
    proxy__worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return 1;
    w->ctl_io.fd = -1;
    if (setup(w, rt, listen_fds, ctl_fd, id) < 0) {
        gh_log_error("worker %d: cannot start: %s", id, strerror(errno));
        return 1;
    }
    /* Everything the worker opens by itself is open: from here on, the allow-list (core/sandbox.h). */
    if (gh_sandbox_lock("worker") < 0)
        return 1;
    gh_log_debug("worker %d started", id);
    /*
     * On the control socket, not by kill(): a worker that dropped its privileges may not
     * signal a root master, but it may always write to its end of the pair.
     */
    if (ctl_fd >= 0 && send(ctl_fd, GH_WORKER_READY_MSG, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        gh_log_warn("worker %d: cannot tell the master it is ready: %s", id, strerror(errno));
    gh_loop_run(w->loop);
    teardown(w);
    free(w);
    return exit_status;
}
