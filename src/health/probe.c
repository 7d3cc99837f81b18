/*
 * health/probe: the prober's event loop. Each target has one prober struct,
 * made at start, holding its socket, its one timer (the probe's timeout while a
 * probe is in flight, the next probe's start otherwise) and its read buffer;
 * a probe allocates nothing.
 */
#include "health/probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/sandbox.h"
#include "health/check.h"
#include "net/proxyproto.h"
#include "net/sock.h"

#define DEFAULT_INTERVAL_MS 5000
#define DEFAULT_TIMEOUT_MS  2000

enum { PROBE_IDLE, PROBE_CONNECTING, PROBE_SENDING, PROBE_READING };

typedef struct health__run health__run;

typedef struct health__prober {
    gh_io io; /* first: the io callback casts back */
    gh_timer timer;
    health__run *run;
    const gh_health_target *t;
    uint32_t interval, timeout, rise, fall;
    uint16_t status_min, status_max;
    int head_request;
    int state;
    gh_health_fsm fsm;
    uint64_t started; /* loop ms at which the current (or last) probe began */
    gh_addr addr;     /* what it probes: the target's current address (len 0: none, no probe) */
    uint64_t version; /* of the target's slot in the address region when addr was read */
    char label[128];  /* "127.0.0.1:8081", or "app.internal:8080 (10.0.0.5)" for a name */
    char *req;        /* HTTP request text, built once */
    size_t req_len, sent;
    size_t got, searched;
    char why[96]; /* the last failure, for the "is down" line */
    char buf[GH_HEALTH_HEAD_MAX];
} health__prober;

struct health__run {
    gh_loop *loop;
    gh_health_shm *shm;
    const gh_addr_shm *addrs;
    gh_io signal_io;
    health__prober *probers;
    size_t n;
    gh_h1_response res; /* parse scratch, used synchronously by one prober at a time */
    gh_timer tick_timer;
    const gh_health_tick *tick;
};

static void schedule_next(health__prober *p);
static void start_probe(health__prober *p);
static void close_socket(health__prober *p);

static void set_label(health__prober *p)
{
    char ip[64];

    if (p->t->name == NULL) {
        snprintf(p->label, sizeof(p->label), "%s", p->t->addr.text);
        return;
    }
    if (p->addr.len > 0)
        gh_sock_ntop(&p->addr.ss, ip, sizeof(ip));
    snprintf(p->label, sizeof(p->label), "%s (%s)", p->t->name, p->addr.len > 0 ? ip : "no address");
}

/* Reads the target's current address; 1 when it is another one than the prober had. */
static int refresh_addr(health__prober *p)
{
    uint64_t v = gh_addr_shm_version(p->run->addrs, p->t->slot);
    gh_addr a;

    if (p->t->name == NULL || v == p->version)
        return 0;
    p->version = v;
    gh_addr_shm_current(p->run->addrs, p->t->slot, &p->t->addr, &a);
    if (gh_addr_same(&a, &p->addr))
        return 0;
    p->addr = a;
    set_label(p);
    return 1;
}

/*
 * After a re-resolution: a target whose slot holds another address now is
 * another server. A probe in flight to the old one says nothing about it, so
 * it is dropped; the new one is probed at once and judged by its first result
 * (the resolver left the slot PENDING, so it gets no traffic until then).
 */
static void readdress(health__run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        health__prober *p = &r->probers[i];

        if (!refresh_addr(p))
            continue;
        gh_timer_stop(r->loop, &p->timer);
        close_socket(p);
        p->state = PROBE_IDLE;
        p->fsm = (gh_health_fsm){GH_HEALTH_UNKNOWN, 0};
        if (p->addr.len > 0)
            start_probe(p);
        else
            schedule_next(p);
    }
}

static void tick_done(void *arg)
{
    readdress(arg);
}

static void on_tick(gh_timer *t)
{
    health__run *r = (health__run *)((char *)t - offsetof(health__run, tick_timer));
    gh_timer_set(r->loop, &r->tick_timer, r->tick->period_ms);
    r->tick->fn(r->tick->arg, r->loop, tick_done, r);
}

/* ---- verdicts ------------------------------------------------------------------------------- */

static void log_change(const health__prober *p, int status, int first)
{
    const char *of = p->t->pool ? " of pool " : "", *pool = p->t->pool ? p->t->pool : "";

    if (status == GH_HEALTH_DOWN)
        gh_log_warn("server %s%s%s is down: %s", p->label, of, pool, p->why);
    else if (first)
        gh_log_info("server %s%s%s is up", p->label, of, pool);
    else
        gh_log_warn("server %s%s%s is up", p->label, of, pool);
}

static void close_socket(health__prober *p)
{
    if (p->io.fd < 0)
        return;
    gh_loop_del(p->run->loop, &p->io);
    close(p->io.fd);
    p->io.fd = -1;
}

/* Ends the probe in flight: verdict, shared state, next probe. */
static void finish(health__prober *p, int ok)
{
    int first = p->fsm.status == GH_HEALTH_UNKNOWN, change;

    gh_timer_stop(p->run->loop, &p->timer);
    close_socket(p);
    p->state = PROBE_IDLE;
    gh_health_probe_counted(p->run->shm, p->t->slot, ok);
    change = gh_health_fsm_step(&p->fsm, ok, p->rise, p->fall);
    if (change != 0) {
        gh_health_status_set(p->run->shm, p->t->slot, change);
        log_change(p, change, first);
    }
    schedule_next(p);
}

static void fail(health__prober *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(health__prober *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(p->why, sizeof(p->why), fmt, ap);
    va_end(ap);
    finish(p, 0);
}

static void fail_connect(health__prober *p, int err)
{
    if (err == ECONNREFUSED)
        fail(p, "connect refused");
    else
        fail(p, "connect failed: %s", strerror(err));
}

/* ---- one probe ------------------------------------------------------------------------------ */

static void start_probe(health__prober *p)
{
    health__run *r = p->run;
    int fd, rc;

    p->started = gh_loop_now(r->loop);
    p->sent = p->got = p->searched = 0;
    if (refresh_addr(p))
        p->fsm = (gh_health_fsm){GH_HEALTH_UNKNOWN, 0}; /* another server now: its first result decides */
    if (p->addr.len == 0) {
        schedule_next(p); /* a slot of a name with no address: nothing to probe, nothing to say */
        return;
    }
    {
        gh_addr to = p->addr;

        /* port=: the same host, another port (Patroni's REST API beside PostgreSQL) */
        if (p->t->port != 0 && to.ss.ss_family == AF_INET)
            ((struct sockaddr_in *)&to.ss)->sin_port = htons(p->t->port);
        else if (p->t->port != 0 && to.ss.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&to.ss)->sin6_port = htons(p->t->port);
        fd = gh_sock_connect(&to);
    }
    if (fd < 0) {
        fail_connect(p, -fd);
        return;
    }
    p->io.fd = fd;
    if ((rc = gh_loop_add(r->loop, &p->io)) < 0) {
        close(fd);
        p->io.fd = -1;
        fail(p, "cannot watch the socket: %s", strerror(-rc));
        return;
    }
    p->state = PROBE_CONNECTING;
    gh_timer_set(r->loop, &p->timer, p->timeout);
}

/* Returns 1 once the whole request is written, 0 to wait for writability, -1 after a failure. */
static int send_request(health__prober *p)
{
    while (p->sent < p->req_len) {
        ssize_t n = gh_sock_write(p->io.fd, p->req + p->sent, p->req_len - p->sent);

        if (n == GH_AGAIN)
            return 0;
        if (n < 0) {
            fail(p, "send failed: %s", strerror(errno));
            return -1;
        }
        p->sent += (size_t)n;
    }
    return 1;
}

static void judge_status(health__prober *p, int status)
{
    if (status >= p->status_min && status <= p->status_max) {
        finish(p, 1);
        return;
    }
    fail(p, "status %d (expected %u-%u)", status, (unsigned)p->status_min, (unsigned)p->status_max);
}

/* A protocol probe's answer (postgres, redis): judged as soon as enough of it is there. */
static int judge_protocol(health__prober *p)
{
    int rc =
        p->t->type == GH_PROBE_POSTGRES ? gh_health_pg_answer(p->buf, p->got) : gh_health_redis_answer(p->buf, p->got);

    if (rc > 0)
        finish(p, 1);
    else if (rc < 0)
        fail(p, "unexpected answer to %s", p->t->type == GH_PROBE_POSTGRES ? "an SSLRequest" : "PING");
    return rc;
}

/* Reads until the head is complete (only the head: the body is never read). */
static void read_answer(health__prober *p)
{
    health__run *r = p->run;
    int status = 0, rc;

    for (;;) {
        ssize_t n = gh_sock_read(p->io.fd, p->buf + p->got, sizeof(p->buf) - p->got);

        if (n == GH_AGAIN)
            return;
        if (n < 0) {
            fail(p, "read failed: %s", strerror(errno));
            return;
        }
        if (n == 0) {
            fail(p, "connection closed before a response head");
            return;
        }
        p->got += (size_t)n;
        if (p->t->type != GH_PROBE_HTTP) {
            if (judge_protocol(p) != 0)
                return;
            continue;
        }
        rc = gh_health_http_answer(p->buf, p->got, &p->searched, p->head_request, &r->res, &status);
        if (rc > 0) {
            judge_status(p, status);
            return;
        }
        if (rc < 0) {
            if (p->got >= sizeof(p->buf))
                fail(p, "response head larger than %zu bytes", sizeof(p->buf));
            else
                fail(p, "invalid response");
            return;
        }
    }
}

static void on_probe_event(gh_io *io, unsigned events)
{
    health__prober *p = (health__prober *)io;
    int err;

    if (p->state == PROBE_CONNECTING) {
        if (!(events & (GH_EV_WRITE | GH_EV_ERROR)))
            return;
        if ((err = gh_sock_error(io->fd)) != 0) {
            fail_connect(p, err);
            return;
        }
        if (p->t->type == GH_PROBE_TCP) {
            finish(p, 1);
            return;
        }
        p->state = PROBE_SENDING;
    }
    if (p->state == PROBE_SENDING) {
        if (send_request(p) <= 0)
            return;
        p->state = PROBE_READING;
    }
    if (p->state == PROBE_READING)
        read_answer(p);
}

/* The one timer: a probe's deadline while it is in flight, else the next probe's start. */
static void on_probe_timer(gh_timer *t)
{
    health__prober *p = (health__prober *)((char *)t - offsetof(health__prober, timer));

    if (p->state == PROBE_IDLE)
        start_probe(p);
    else if (p->state == PROBE_CONNECTING)
        fail(p, "connect timed out after %u ms", (unsigned)p->timeout);
    else
        fail(p, "no response within %u ms", (unsigned)p->timeout);
}

/* Probes start every interval from the previous start, whatever the previous one took. */
static void schedule_next(health__prober *p)
{
    uint64_t now = gh_loop_now(p->run->loop), at = p->started + p->interval;

    gh_timer_set(p->run->loop, &p->timer, at > now ? (uint32_t)(at - now) : 0);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64: the jitter only needs to differ between targets and runs */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int prober_init(health__run *r, health__prober *p, const gh_health_target *t, uint64_t *rng)
{
    p->run = r;
    p->t = t;
    p->io.fd = -1;
    p->io.cb = on_probe_event;
    p->timer.cb = on_probe_timer;
    p->interval = t->interval_ms ? t->interval_ms : DEFAULT_INTERVAL_MS;
    p->timeout = t->timeout_ms ? t->timeout_ms : DEFAULT_TIMEOUT_MS;
    p->rise = t->rise;
    p->fall = t->fall;
    p->status_min = t->status_min || t->status_max ? t->status_min : 200;
    p->status_max = t->status_min || t->status_max ? t->status_max : 399;
    p->addr = t->addr;
    p->version = 0;
    refresh_addr(p);
    set_label(p);
    if (gh_health_ref_index(t->slot) >= gh_health_shm_nslots(r->shm)) {
        gh_log_error("health check of %s: slot %zu out of range", p->label, gh_health_ref_index(t->slot));
        return -1;
    }
    /* A restarted prober goes on from the shared verdict: no second "is down", and rise still applies. */
    p->fsm.status = (uint8_t)gh_health_status_get(r->shm, t->slot);
    if (p->fsm.status == GH_HEALTH_PENDING)
        p->fsm.status = GH_HEALTH_UNKNOWN; /* a new address: its first result decides */
    if (t->type == GH_PROBE_HTTP) {
        const char *method = t->method ? t->method : "GET", *path = t->path ? t->path : "/";
        const char *host = t->host ? t->host : t->addr.text;
        size_t cap = strlen(method) + strlen(path) + strlen(host) + 96 + GH_PP_V1_MAX;
        ssize_t len, pp = 0;
        gh_pp_info local = {.local = 1};

        if ((p->req = malloc(cap)) == NULL)
            return -1;
        if (t->proxy_protocol == 1)
            pp = gh_pp_write_v1(p->req, cap, &local);
        else if (t->proxy_protocol == 2)
            pp = gh_pp_write_v2((uint8_t *)p->req, cap, &local);
        if (pp < 0 || (len = gh_health_http_request(p->req + pp, cap - (size_t)pp, method, path, host)) < 0) {
            gh_log_error("health check of %s: invalid method, path or host", p->label);
            return -1;
        }
        p->req_len = (size_t)(pp + len);
        p->head_request = strcmp(method, "HEAD") == 0;
    } else if (t->type == GH_PROBE_POSTGRES || t->type == GH_PROBE_REDIS) {
        const char *req = t->type == GH_PROBE_POSTGRES ? GH_HEALTH_PG_REQUEST : GH_HEALTH_REDIS_REQUEST;

        p->req_len = t->type == GH_PROBE_POSTGRES ? GH_HEALTH_PG_REQUEST_LEN : strlen(req);
        if ((p->req = malloc(p->req_len)) == NULL)
            return -1;
        memcpy(p->req, req, p->req_len);
    }
    /*
     * Due at a random point of the first interval, so that targets spread out;
     * but a server not known to be up is probed at once: after a reload (which
     * restarts the prober) a down server must not wait out a whole interval, or
     * reloads in a row would keep it out of the pool.
     */
    if (p->fsm.status == GH_HEALTH_UP)
        p->started = gh_loop_now(r->loop) + rng_next(rng) % p->interval - p->interval;
    else
        p->started = gh_loop_now(r->loop) + rng_next(rng) % 20 - p->interval;
    schedule_next(p);
    return 0;
}

static void on_signal(gh_io *io, unsigned events)
{
    health__run *r = (health__run *)((char *)io - offsetof(health__run, signal_io));
    struct signalfd_siginfo si;

    while (read(io->fd, &si, sizeof(si)) == sizeof(si))
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT)
            gh_loop_stop(r->loop);
}

static int open_signals(health__run *r)
{
    sigset_t mask;

    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigaddset(&mask, SIGHUP); /* reloads are the master's business */
    sigprocmask(SIG_BLOCK, &mask, NULL);
    r->signal_io.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    r->signal_io.cb = on_signal;
    if (r->signal_io.fd < 0 || gh_loop_add(r->loop, &r->signal_io) < 0)
        return -1;
    return 0;
}

static void teardown(health__run *r)
{
    for (size_t i = 0; r->probers != NULL && i < r->n; i++) {
        health__prober *p = &r->probers[i];

        if (p->run == NULL)
            continue;
        gh_timer_stop(r->loop, &p->timer);
        close_socket(p);
        free(p->req);
    }
    free(r->probers);
    if (r->signal_io.fd >= 0)
        close(r->signal_io.fd);
    gh_loop_free(r->loop);
    free(r);
}

int gh_health_run(const gh_health_target *targets, size_t n, gh_health_shm *shm, const gh_addr_shm *addrs,
                  const gh_health_tick *tick)
{
    health__run *r = calloc(1, sizeof(*r));
    struct timespec ts;
    uint64_t rng;
    int rc = 1;

    if (r == NULL)
        return 1;
    r->signal_io.fd = -1;
    r->shm = shm;
    r->addrs = addrs;
    r->n = n;
    if ((r->loop = gh_loop_new()) == NULL || (n > 0 && (r->probers = calloc(n, sizeof(*r->probers))) == NULL) ||
        open_signals(r) < 0) {
        gh_log_error("health checks: cannot start: %s", strerror(errno));
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rng = ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec;
    rng |= 1; /* xorshift must not start at 0 */
    for (size_t i = 0; i < n; i++)
        if (prober_init(r, &r->probers[i], &targets[i], &rng) < 0)
            goto out;
    /* Set up: from here on, the system-call allow-list (core/sandbox.h). */
    if (gh_sandbox_lock("prober") < 0)
        goto out;
    gh_log_debug("health checks started: %zu target%s", n, n == 1 ? "" : "s");
    if (tick != NULL && tick->fn != NULL && tick->period_ms > 0) {
        r->tick = tick;
        r->tick_timer.cb = on_tick;
        gh_timer_set(r->loop, &r->tick_timer, tick->period_ms);
    }
    gh_loop_run(r->loop);
    gh_timer_stop(r->loop, &r->tick_timer);
    if (r->tick != NULL && r->tick->stop != NULL)
        r->tick->stop(r->tick->arg);
    rc = 0;
out:
    teardown(r);
    return rc;
}
