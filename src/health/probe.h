/*
 * health/probe: active health checks. One process (a child the master forks
 * for this alone, like a worker) probes every server, so that each server is
 * probed once per interval, not once per worker, and writes its verdicts into
 * the shared state (state.h) that the workers read.
 */
#ifndef GH_HEALTH_PROBE_H
#define GH_HEALTH_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "health/addrs.h"
#include "net/addr.h"
#include "health/state.h"

enum gh_probe_type {
    GH_PROBE_TCP = 0,  /* passes when the connection is established */
    GH_PROBE_HTTP = 1, /* passes on a valid response head with a status in range */
    GH_PROBE_POSTGRES, /* an SSLRequest answered 'S' or 'N' (no credentials, no startup: health/check.h) */
    GH_PROBE_REDIS,    /* PING answered +PONG (or -NOAUTH: alive, wants a password we do not have) */
};

/*
 * One server to probe. Built from the config by the master before the fork;
 * the strings are borrowed and must outlive gh_health_run().
 */
typedef struct gh_health_target {
    gh_health_ref slot; /* the server's slot in the shared state, and its occupant's epoch */
    gh_addr addr;       /* from the load; len 0: none (a slot of a name that it did not fill) */
    /*
     * Given by name: the prober probes the slot's current address (the one it
     * re-resolved last and published in the address region, which workers
     * connect to), not addr, and names it "NAME (ADDRESS)" in logs.
     */
    const char *name;                /* "app.internal:8080" as written; NULL: a numeric server */
    const char *pool;                /* for logs; may be NULL */
    int type;                        /* enum gh_probe_type */
    const char *method;              /* HTTP: NULL means "GET" */
    const char *path;                /* HTTP: NULL means "/" */
    const char *host;                /* HTTP: the Host header; NULL means addr.text */
    uint16_t status_min, status_max; /* HTTP: passing statuses, inclusive; 0, 0 means 200..399 */
    uint32_t interval_ms;            /* between the starts of two probes; >= 1 */
    uint32_t timeout_ms;             /* connect plus answer; >= 1 */
    uint32_t rise, fall;             /* passes / failures in a row that change the verdict; 0 counts as 1 */
    uint16_t port;                   /* probe this port of the server's address (port=); 0: the server's own */
    /* HTTP: 1 or 2, the request starts with a PROXY header of that version saying "no client" (v2 LOCAL, v1
     * UNKNOWN: spec 2.2, what health checks send), for servers that refuse a connection without one; 0: none. */
    uint8_t proxy_protocol;
} gh_health_target;

/*
 * Probes the n targets until SIGTERM, SIGINT or SIGQUIT (read from a signalfd;
 * they are blocked here, as the master has them blocked already), writing each
 * verdict change into shm and logging it at warn ("server 127.0.0.1:8081 of
 * pool app is down: connect refused", "... is up"). The first probe of each
 * target comes at a random point of its first interval, so that targets do not
 * all fire together. Allocates once at start (a small struct per target) and
 * never per probe. Returns 0 when stopped by a signal, 1 when it could not
 * start: a process exit status. `tick`, if not NULL, is started every
 * tick->period_ms in the same loop.
 */
/*
 * Other periodic work of the prober process (re-resolving server names); see
 * gh_health_run. fn starts it in the prober's loop and calls done(done_arg)
 * once it is over (possibly before it returns; at most once per call).
 */
typedef struct gh_health_tick {
    void (*fn)(void *arg, gh_loop *loop, void (*done)(void *done_arg), void *done_arg);
    void (*stop)(void *arg); /* before the loop goes: what fn left in it (may be NULL) */
    void *arg;
    uint32_t period_ms;
} gh_health_tick;

/*
 * `addrs` (may be NULL when no target has a name): the current addresses of
 * the slots of names. When a tick is done, a target whose address changed is
 * probed at once, its verdict decided by that first result.
 */
int gh_health_run(const gh_health_target *targets, size_t n, gh_health_shm *shm, const gh_addr_shm *addrs,
                  const gh_health_tick *tick);

#endif
