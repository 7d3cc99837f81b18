/*
 * metrics: the shared region, the slots of named things, the master's
 * counters (see metrics.h).
 */
#include "metrics/metrics.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "balance/balance.h"
#include "core/log.h"
#include "metrics/region.h"

static gh_metrics *region;
static gh_mslot dummy; /* before gh_metrics_init, or if it failed, and in processes that serve nothing */
static gh_mslot *self = &dummy;

uint64_t gh_metrics_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int gh_metrics_init(int nworkers)
{
    size_t size = sizeof(gh_metrics) + (size_t)nworkers * sizeof(gh_mslot);
    void *p;

    if (nworkers < 1)
        return -1;
    /* Pages are only backed once touched: a block's untouched routes and servers cost no memory. */
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        gh_log_warn("cannot map the metrics region (%zu bytes): metrics will read 0", size);
        return -1;
    }
    region = p;
    region->mapped = size;
    region->nworkers = nworkers;
    region->start_time = (int64_t)time(NULL);
    region->last_reload_ok = 1;
    return 0;
}

gh_metrics *gh_metrics_region(void)
{
    return region;
}

gh_mslot *gh_metrics_self(void)
{
    return self;
}

void gh_metrics_attach(int id)
{
    gh_mslot *m;

    if (region == NULL || id < 0 || id >= region->nworkers)
        return;
    m = &region->slots[id];
    /* Gauges of a worker that died: what they counted is gone with it. Counters go on. */
    m->tunnels_open = m->streams_open = 0;
    for (size_t i = 0; i < GH_M_MAX_LISTENERS; i++)
        memset(m->listeners[i].open, 0, sizeof(m->listeners[i].open));
    for (size_t i = 0; i < GH_M_MAX_SERVERS; i++)
        if (m->servers[i].inflight != 0)
            m->servers[i].inflight = 0;
    self = m;
}

/* ---- slots of named things ---- */

static uint64_t key_of(uint64_t kind, const char *a, const char *b)
{
    uint64_t h = gh_lb_hash(a, strlen(a)) * UINT64_C(0x9e3779b97f4a7c15) ^ kind;

    if (b != NULL)
        h = (h ^ gh_lb_hash(b, strlen(b))) * UINT64_C(0x9e3779b97f4a7c15);
    return h != 0 ? h : 1; /* 0 marks a free slot */
}

const char *metrics__site_label(const gh_cfg_site *s)
{
    return s->nnames > 0 ? s->names[0].p : "default";
}

/* The prefix; the second route of a site with the same prefix (other methods or headers) "PREFIX (2)", and so on. */
void metrics__route_label(const gh_cfg_site *s, size_t k, char *out, size_t cap)
{
    const gh_cfg_route *r = &s->routes[k];
    unsigned n = 1;

    for (size_t i = 0; i < k; i++)
        n += strcmp(s->routes[i].prefix.p, r->prefix.p) == 0;
    if (n == 1)
        snprintf(out, cap, "%s", r->prefix.p);
    else
        snprintf(out, cap, "%s (%u)", r->prefix.p, n);
}

enum { KIND_ROUTE = 1, KIND_POOL, KIND_LISTENER };

static void zero_route(size_t i)
{
    for (int w = 0; w < region->nworkers; w++)
        memset(&region->slots[w].routes[i], 0, sizeof(gh_m_route));
}

static void zero_pool(size_t i)
{
    for (int w = 0; w < region->nworkers; w++)
        memset(&region->slots[w].pools[i], 0, sizeof(gh_m_pool));
}

static void zero_listener(size_t i)
{
    for (int w = 0; w < region->nworkers; w++)
        region->slots[w].listeners[i].accepted = 0;
}

/*
 * The slot of key in t[first..n): the one it has, else a free one, else one
 * that neither this configuration nor the previous one uses (generations
 * still running may write to it for a while: a few counts on the new
 * occupant, never a crash). GH_M_NONE when every slot is in use.
 */
static uint32_t find(const struct gh_m_name *t, size_t first, size_t n, uint64_t key)
{
    for (size_t i = first; i < n; i++)
        if (__atomic_load_n(&t[i].key, __ATOMIC_RELAXED) == key)
            return (uint32_t)i;
    return GH_M_NONE;
}

static uint32_t claim(struct gh_m_name *t, size_t first, size_t n, uint64_t key, void (*zero)(size_t))
{
    uint64_t gen = region->gen;
    uint32_t i = find(t, first, n, key);

    if (i == GH_M_NONE)
        for (size_t k = first; k < n && i == GH_M_NONE; k++)
            if (t[k].key == 0)
                i = (uint32_t)k;
    if (i == GH_M_NONE)
        for (size_t k = first; k < n && i == GH_M_NONE; k++)
            if (t[k].gen + 1 < gen) {
                i = (uint32_t)k;
                zero(k);
            }
    if (i == GH_M_NONE)
        return GH_M_NONE;
    t[i].gen = gen;
    __atomic_store_n(&t[i].key, key, __ATOMIC_RELEASE);
    return i;
}

static void assign(gh_config *cfg, int master)
{
    char label[512];

    for (size_t i = 0; i < cfg->nsites; i++)
        for (size_t k = 0; k < cfg->sites[i].nroutes; k++) {
            uint64_t key;

            metrics__route_label(&cfg->sites[i], k, label, sizeof(label));
            key = key_of(KIND_ROUTE, metrics__site_label(&cfg->sites[i]), label);
            cfg->sites[i].routes[k].metric = master ? claim(region->routes, 1, GH_M_MAX_ROUTES, key, zero_route)
                                                    : find(region->routes, 1, GH_M_MAX_ROUTES, key);
        }
    for (size_t i = 0; i < cfg->npools; i++) {
        uint64_t key = key_of(KIND_POOL, cfg->pools[i].name.p, NULL);

        cfg->pools[i].metric = master ? claim(region->pools, 0, GH_M_MAX_POOLS, key, zero_pool)
                                      : find(region->pools, 0, GH_M_MAX_POOLS, key);
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        uint64_t key = key_of(KIND_LISTENER, cfg->listeners[i].addr.text, cfg->listeners[i].tls ? "tls" : "");

        cfg->listeners[i].metric = master ? claim(region->listeners, 0, GH_M_MAX_LISTENERS, key, zero_listener)
                                          : find(region->listeners, 0, GH_M_MAX_LISTENERS, key);
    }
}

static void unbound(gh_config *cfg)
{
    for (size_t i = 0; i < cfg->nsites; i++)
        for (size_t k = 0; k < cfg->sites[i].nroutes; k++)
            cfg->sites[i].routes[k].metric = GH_M_NONE;
    for (size_t i = 0; i < cfg->npools; i++)
        cfg->pools[i].metric = GH_M_NONE;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        cfg->listeners[i].metric = GH_M_NONE;
}

void gh_metrics_claim(gh_config *cfg)
{
    if (region == NULL) {
        unbound(cfg);
        return;
    }
    region->gen++;
    assign(cfg, 1);
}

void gh_metrics_bind(gh_config *cfg)
{
    if (region == NULL)
        unbound(cfg);
    else
        assign(cfg, 0);
}

/* ---- the master's counters ---- */

void gh_metrics_reload(int ok)
{
    if (region == NULL)
        return;
    if (ok) {
        GH_M_ADD(region->reloads_ok, 1);
        __atomic_store_n(&region->last_reload_time, (int64_t)time(NULL), __ATOMIC_RELAXED);
    } else {
        GH_M_ADD(region->reloads_failed, 1);
    }
    __atomic_store_n(&region->last_reload_ok, ok != 0, __ATOMIC_RELAXED);
}

void gh_metrics_worker_restart(void)
{
    if (region != NULL)
        GH_M_ADD(region->worker_restarts, 1);
}
