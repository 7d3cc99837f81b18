/*
 * region: the layout of the shared metrics region, private to src/metrics
 * (metrics.c writes the master's part and the slot tables, export.c reads it all).
 */
#ifndef GH_METRICS_REGION_H
#define GH_METRICS_REGION_H

#include "metrics/metrics.h"

/* A slot of a named thing: the hash of its name (0: free) and the last configuration that used it. */
struct gh_m_name {
    uint64_t key;
    uint64_t gen;
};

/*
 * Written by the master only (the slot tables, its counters), and by each
 * worker in slots[its id]; read by every worker that serves /metrics.
 */
struct gh_metrics {
    size_t mapped;
    int nworkers;
    uint64_t gen; /* configurations claimed so far */
    uint64_t reloads_ok, reloads_failed, worker_restarts;
    int64_t last_reload_ok;   /* gauge: 1 when the last reload (or the start) succeeded */
    int64_t last_reload_time; /* unix seconds of the last successful reload; 0: none yet */
    int64_t start_time;       /* unix seconds */
    struct gh_m_name routes[GH_M_MAX_ROUTES];
    struct gh_m_name pools[GH_M_MAX_POOLS];
    struct gh_m_name listeners[GH_M_MAX_LISTENERS];
    gh_mslot slots[]; /* nworkers */
};

/* Label values: a site's first name ("default" for a site with none), a route's prefix (see metrics.c). */
const char *metrics__site_label(const gh_cfg_site *s);
void metrics__route_label(const gh_cfg_site *s, size_t k, char *out, size_t cap);

#endif
