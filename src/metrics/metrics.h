/*
 * metrics: the counters behind /metrics and /status (src/admin/admin.h), in
 * one shared-memory region (DESIGN.md, Process model) that the master maps
 * before it forks, so that any worker can read every worker's figures.
 *
 * Each worker writes only its own block (gh_mslot), so counters are plain
 * uint64 words: no lock, no atomic read-modify-write on the hot path (the
 * GH_M_ADD store is a relaxed atomic store of a plain sum: one add on x86).
 * Readers sum the blocks. A worker that dies leaves its counters in its block
 * and the restarted worker of the same id goes on from them; its gauges
 * (connections, tunnels, requests in flight) are zeroed at its start, as
 * whatever they counted died with it.
 *
 * What a configuration names (routes, pools, listeners) has a slot found by
 * its name, not by its place in the file: the master gives every route (site
 * and prefix), pool and listener of a configuration its slot before the
 * workers see it (gh_metrics_claim, at start and at each reload); the same
 * name keeps its slot, so its counters go on across reloads; a new name takes
 * a free slot, or one that neither the new configuration nor the one before
 * it uses, which starts again from zero (a counter reset, which Prometheus
 * expects). Per server, counters follow the server's health slot (health/state.h).
 */
#ifndef GH_METRICS_METRICS_H
#define GH_METRICS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "conf/config.h"
#include "health/state.h"

#define GH_M_MAX_ROUTES    1024 /* (site, route) pairs of one configuration; slot 0: requests no route took */
#define GH_M_MAX_POOLS     256
#define GH_M_MAX_LISTENERS 64 /* GH_MAX_LISTENERS */
#define GH_M_MAX_SERVERS   GH_HEALTH_MAX_SLOTS
#define GH_M_NO_ROUTE      0u         /* requests refused before routing (400, 404 of no site, 405 CONNECT) */
#define GH_M_NONE          UINT32_MAX /* no slot left: counted nowhere */

/* Histogram bucket upper bounds, in microseconds (exported in seconds); the last bucket is +Inf. */
#define GH_M_BUCKET_BOUNDS_US                                                                                          \
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000
#define GH_M_NBUCKETS 14

/* The protocol of a client connection (label `protocol`). */
enum gh_m_proto { GH_M_HTTP1 = 0, GH_M_H2, GH_M_STREAM, GH_M_NPROTO };

/* TLS versions counted apart (label `version`). */
enum gh_m_tls { GH_M_TLS12 = 0, GH_M_TLS13, GH_M_TLS_OTHER, GH_M_NTLS };

/* Limits that refuse or cut something (label `limit` of gatehouse_limit_hits_total). */
enum gh_m_limit {
    GH_M_LIMIT_MAX_CONNECTIONS = 0, /* a connection came at max_connections (idle ones closed, or accepts paused) */
    GH_M_LIMIT_MAX_BODY,            /* 413 */
    GH_M_LIMIT_BODY_MIN_RATE,       /* a request body slower than body_min_rate: 408 or a cut */
    GH_M_LIMIT_HEADER_TIMEOUT,      /* a request head not complete within timeouts { header }: 408 */
    GH_M_LIMIT_HEAD_SIZE,           /* a request head or line too large: 431, 414 */
    GH_M_LIMIT_RATE,                /* a rate limit answered 429 */
    GH_M_LIMIT_CONN_PER_ADDR,       /* max_connections_per_ip refused a connection */
    GH_M_LIMIT_ACCESS_RULE,         /* a site's or route's allow/deny rules answered 403 (or a stream's closed) */
    GH_M_LIMIT_CONN_PER_ADDR_FULL,  /* max_connections_per_ip's table had no free entry: let in uncounted */
    GH_M_NLIMITS
};

/* One histogram: counts per bucket (not cumulative: the exporter adds them up) and the sum. */
typedef struct gh_m_hist {
    uint64_t bucket[GH_M_NBUCKETS + 1];
    uint64_t sum_us;
} gh_m_hist;

typedef struct gh_m_route {
    uint64_t requests[5]; /* by status class 1xx..5xx */
    uint64_t bytes_in;    /* request body bytes from the client */
    uint64_t bytes_out;   /* response body bytes to the client */
} gh_m_route;

typedef struct gh_m_pool {
    gh_m_hist connect;  /* a new upstream connection: connect() to connected */
    gh_m_hist response; /* upstream given to the exchange (connect included) to the response head */
} gh_m_pool;

typedef struct gh_m_listener {
    uint64_t accepted;
    int64_t open[GH_M_NPROTO]; /* gauge, by what the connection speaks now */
} gh_m_listener;

typedef struct gh_m_server {
    int64_t inflight;  /* gauge: exchanges and tunnels on it */
    uint64_t failures; /* connect failures, timeouts, counted statuses (passive health's failures) */
} gh_m_server;

/* One worker's block. */
typedef struct gh_mslot {
    uint64_t tls_handshakes[GH_M_NTLS][2]; /* [version][0 full, 1 resumed] */
    uint64_t tls_failures;
    int64_t tunnels_open, streams_open; /* gauges */
    uint64_t tunnels, streams;
    uint64_t limits[GH_M_NLIMITS];
    gh_m_listener listeners[GH_M_MAX_LISTENERS];
    gh_m_pool pools[GH_M_MAX_POOLS];
    gh_m_server servers[GH_M_MAX_SERVERS];
    gh_m_route routes[GH_M_MAX_ROUTES];
} gh_mslot;

/* A plain add of one writer, visible to readers in other processes without a torn or reordered-away value. */
#define GH_M_ADD(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)

typedef struct gh_metrics gh_metrics;

/*
 * Maps the region for nworkers workers and the master's own counters,
 * MAP_SHARED|MAP_ANONYMOUS (children forked afterwards share it), and makes
 * it the process's region (gh_metrics_region). Returns 0 or -1; after -1 every
 * process counts into a private dummy block, so that no caller needs a check.
 */
int gh_metrics_init(int nworkers);
gh_metrics *gh_metrics_region(void);

/*
 * This process's block: in a worker, after gh_metrics_attach(id); elsewhere
 * (the master, the prober, unit tests) a private dummy one. Never NULL.
 */
gh_mslot *gh_metrics_self(void);

/* In a worker right after fork: takes block id as its own and zeroes its gauges (a restart's leftovers). */
void gh_metrics_attach(int id);

/*
 * The master, before any worker hears of cfg (at start and at each reload
 * that proved valid): gives every route, pool and listener of cfg its slot
 * (writing cfg's `metric` fields) as the header says. A worker building the
 * same configuration from the reload bundle finds them with gh_metrics_bind.
 */
void gh_metrics_claim(gh_config *cfg);
void gh_metrics_bind(gh_config *cfg);

/* The master's own counters. */
void gh_metrics_reload(int ok);
void gh_metrics_worker_restart(void);

/* ---- the hot path: inline, a few instructions each ---- */

static inline void gh_metric_observe(gh_m_hist *h, uint64_t us)
{
    static const uint64_t bounds[GH_M_NBUCKETS] = {GH_M_BUCKET_BOUNDS_US};
    int i = 0;

    while (i < GH_M_NBUCKETS && us > bounds[i])
        i++;
    GH_M_ADD(h->bucket[i], 1);
    GH_M_ADD(h->sum_us, us);
}

/* A request ended (status 0: it ended without one, counted as a 4xx like nginx's 499). */
static inline void gh_metric_request(gh_mslot *m, uint32_t route, int status, uint64_t in, uint64_t out)
{
    unsigned cls = (unsigned)status / 100u;
    gh_m_route *r;

    if (route >= GH_M_MAX_ROUTES)
        return;
    r = &m->routes[route];
    GH_M_ADD(r->requests[cls >= 1 && cls <= 5 ? cls - 1 : 3], 1);
    GH_M_ADD(r->bytes_in, in);
    GH_M_ADD(r->bytes_out, out);
}

/* A client connection speaking `proto` was accepted on the listener of slot `listener`, or closed. */
static inline void gh_metric_conn_open(gh_mslot *m, uint32_t listener, int proto)
{
    if (listener >= GH_M_MAX_LISTENERS || (unsigned)proto >= GH_M_NPROTO)
        return;
    GH_M_ADD(m->listeners[listener].accepted, 1);
    GH_M_ADD(m->listeners[listener].open[proto], 1);
}

static inline void gh_metric_conn_close(gh_mslot *m, uint32_t listener, int proto)
{
    if (listener >= GH_M_MAX_LISTENERS || (unsigned)proto >= GH_M_NPROTO)
        return;
    GH_M_ADD(m->listeners[listener].open[proto], -1);
}

/* An open connection changes protocol (accepted as HTTP/1.1, ALPN chose h2): moves it between the gauges. */
static inline void gh_metric_conn_switch(gh_mslot *m, uint32_t listener, int from, int to)
{
    if (listener >= GH_M_MAX_LISTENERS || (unsigned)from >= GH_M_NPROTO || (unsigned)to >= GH_M_NPROTO)
        return;
    GH_M_ADD(m->listeners[listener].open[from], -1);
    GH_M_ADD(m->listeners[listener].open[to], 1);
}

static inline void gh_metric_limit(gh_mslot *m, int limit)
{
    if ((unsigned)limit < GH_M_NLIMITS)
        GH_M_ADD(m->limits[limit], 1);
}

/* delta +1 when a server takes an exchange or tunnel, -1 when it gives it back. */
static inline void gh_metric_inflight(gh_mslot *m, gh_health_ref slot, int delta)
{
    size_t i = gh_health_ref_index(slot);

    if (i < GH_M_MAX_SERVERS)
        GH_M_ADD(m->servers[i].inflight, delta);
}

static inline void gh_metric_server_failure(gh_mslot *m, gh_health_ref slot)
{
    size_t i = gh_health_ref_index(slot);

    if (i < GH_M_MAX_SERVERS)
        GH_M_ADD(m->servers[i].failures, 1);
}

static inline gh_m_pool *gh_metric_pool(gh_mslot *m, uint32_t pool)
{
    static gh_m_pool none; /* a pool without a slot: counted, never read */
    return pool < GH_M_MAX_POOLS ? &m->pools[pool] : &none;
}

/* Tunnels (a WebSocket after its 101) and TCP streams: +1 when one opens, -1 when it ends. */
static inline void gh_metric_tunnel(gh_mslot *m, int delta)
{
    GH_M_ADD(m->tunnels_open, delta);
    if (delta > 0)
        GH_M_ADD(m->tunnels, 1);
}

static inline void gh_metric_stream(gh_mslot *m, int delta)
{
    GH_M_ADD(m->streams_open, delta);
    if (delta > 0)
        GH_M_ADD(m->streams, 1);
}

/* A TLS handshake ended: version enum gh_m_tls; resumed 0 or 1. */
static inline void gh_metric_tls(gh_mslot *m, int version, int resumed)
{
    GH_M_ADD(m->tls_handshakes[(unsigned)version < GH_M_NTLS ? version : GH_M_TLS_OTHER][resumed != 0], 1);
}

/* Monotonic microseconds, for the upstream histograms (the loop's clock counts milliseconds only). */
uint64_t gh_metrics_now_us(void);

#endif
