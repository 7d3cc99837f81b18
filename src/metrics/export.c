/*
 * export: Prometheus text and the status JSON from the metrics region (export.h).
 * Each figure is the sum of every worker's block, read with relaxed loads:
 * a scrape sees each counter as some worker last wrote it, never torn.
 */
#include "metrics/export.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "main/cli.h" /* GH_VERSION */
#include "metrics/region.h"

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* Room for n more bytes and a NUL, by doubling from 16 KiB up to t->max: 0, or -1 with t->full set. */
static int reserve(gh_mtext *t, size_t n)
{
    size_t want = t->cap ? t->cap : 16384;
    char *q;

    while (want < t->len + n + 1)
        want *= 2;
    if (want == t->cap)
        return 0;
    if ((q = want <= t->max ? realloc(t->p, want) : NULL) == NULL) {
        t->full = 1;
        return -1;
    }
    t->p = q;
    t->cap = want;
    return 0;
}

void gh_mtext_printf(gh_mtext *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        size_t room = t->cap - t->len;

        if (t->full)
            return;
        va_start(ap, fmt);
        n = vsnprintf(t->p != NULL ? t->p + t->len : NULL, t->p != NULL ? room : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->full = 1;
            return;
        }
        if ((size_t)n < room) {
            t->len += (size_t)n;
            return;
        }
        if (reserve(t, (size_t)n) < 0)
            return;
    }
}

void gh_mtext_append(gh_mtext *t, const char *p, size_t n)
{
    if (t->full || n == 0 || reserve(t, n) < 0)
        return;
    memcpy(t->p + t->len, p, n);
    t->len += n;
}

void gh_mtext_dispose(gh_mtext *t)
{
    free(t->p);
    memset(t, 0, sizeof(*t));
}

/* A label value (exposition format: backslash, double quote and line feed escaped) or a JSON string body. */
static void put_escaped(gh_mtext *t, const char *s, int json)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '\\' || c == '"')
            gh_mtext_printf(t, "\\%c", c);
        else if (c == '\n')
            gh_mtext_printf(t, "\\n");
        else if (json && c < 0x20)
            gh_mtext_printf(t, "\\u%04x", c);
        else
            gh_mtext_printf(t, "%c", c);
    }
}

/* ---- sums over the workers' blocks ---- */

static const gh_metrics *R;

/* The uint64 at byte offset off of every block, summed (gauges are int64: the sum wraps back to the signed value). */
static uint64_t sum_at(size_t off)
{
    uint64_t s = 0;

    for (int w = 0; R != NULL && w < R->nworkers; w++) {
        const uint64_t *p = (const uint64_t *)((const char *)&R->slots[w] + off);
        s += LOAD(*p);
    }
    return s;
}

#define SUM(member)   sum_at(offsetof(gh_mslot, member))
#define GAUGE(member) ((int64_t)sum_at(offsetof(gh_mslot, member)))

static void family(gh_mtext *t, const char *name, const char *type, const char *help)
{
    gh_mtext_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const proto_names[GH_M_NPROTO] = {"http/1.1", "h2", "stream"};
static const char *const tls_names[GH_M_NTLS] = {"TLSv1.2", "TLSv1.3", "other"};
static const char *const limit_names[GH_M_NLIMITS] = {
    "max_connections",         "max_body",     "body_min_rate",
    "header_timeout",          "request_head", "rate_limit",
    "connections_per_address", "access_rule",  "connections_per_address_uncounted"};
static const char *const state_names[] = {"unknown", "up", "down", "pending"};

static void requests(const gh_metrics_view *v, gh_mtext *t)
{
    static const char *const cls[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    char label[512];

    family(t, "gatehouse_http_requests_total", "counter",
           "HTTP requests answered, by site, route and status class (site and route \"-\": refused before routing).");
    for (int c = 0; c < 5; c++)
        gh_mtext_printf(t, "gatehouse_http_requests_total{site=\"-\",route=\"-\",code=\"%s\"} %llu\n", cls[c],
                        (unsigned long long)SUM(routes[GH_M_NO_ROUTE].requests[c]));
    for (size_t i = 0; i < v->cfg->nsites; i++)
        for (size_t k = 0; k < v->cfg->sites[i].nroutes; k++) {
            uint32_t m = v->cfg->sites[i].routes[k].metric;

            if (m >= GH_M_MAX_ROUTES)
                continue;
            metrics__route_label(&v->cfg->sites[i], k, label, sizeof(label));
            for (int c = 0; c < 5; c++) {
                gh_mtext_printf(t, "gatehouse_http_requests_total{site=\"");
                put_escaped(t, metrics__site_label(&v->cfg->sites[i]), 0);
                gh_mtext_printf(t, "\",route=\"");
                put_escaped(t, label, 0);
                gh_mtext_printf(t, "\",code=\"%s\"} %llu\n", cls[c], (unsigned long long)SUM(routes[m].requests[c]));
            }
        }
}

static void route_bytes(const gh_metrics_view *v, gh_mtext *t, const char *name, const char *help, int out)
{
    char label[512];

    family(t, name, "counter", help);
    for (size_t i = 0; i <= v->cfg->nsites; i++)
        for (size_t k = 0; k < (i < v->cfg->nsites ? v->cfg->sites[i].nroutes : 1); k++) {
            uint32_t m = i < v->cfg->nsites ? v->cfg->sites[i].routes[k].metric : GH_M_NO_ROUTE;

            if (m >= GH_M_MAX_ROUTES)
                continue;
            if (i < v->cfg->nsites)
                metrics__route_label(&v->cfg->sites[i], k, label, sizeof(label));
            gh_mtext_printf(t, "%s{site=\"", name);
            put_escaped(t, i < v->cfg->nsites ? metrics__site_label(&v->cfg->sites[i]) : "-", 0);
            gh_mtext_printf(t, "\",route=\"");
            put_escaped(t, i < v->cfg->nsites ? label : "-", 0);
            gh_mtext_printf(t, "\"} %llu\n",
                            (unsigned long long)(out ? SUM(routes[m].bytes_out) : SUM(routes[m].bytes_in)));
        }
}

static void histogram(const gh_metrics_view *v, gh_mtext *t, const char *name, const char *help, int response)
{
    static const uint64_t bounds[GH_M_NBUCKETS] = {GH_M_BUCKET_BOUNDS_US};

    family(t, name, "histogram", help);
    for (size_t i = 0; i < v->cfg->npools; i++) {
        uint32_t p = v->cfg->pools[i].metric;
        uint64_t cum = 0;
        size_t base = response ? offsetof(gh_mslot, pools[p].response) : offsetof(gh_mslot, pools[p].connect);

        if (p >= GH_M_MAX_POOLS)
            continue;
        for (int b = 0; b <= GH_M_NBUCKETS; b++) {
            cum += sum_at(base + offsetof(gh_m_hist, bucket[b]));
            gh_mtext_printf(t, "%s_bucket{pool=\"", name);
            put_escaped(t, v->cfg->pools[i].name.p, 0);
            if (b < GH_M_NBUCKETS)
                gh_mtext_printf(t, "\",le=\"%g\"} %llu\n", (double)bounds[b] / 1e6, (unsigned long long)cum);
            else
                gh_mtext_printf(t, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
        }
        gh_mtext_printf(t, "%s_sum{pool=\"", name);
        put_escaped(t, v->cfg->pools[i].name.p, 0);
        gh_mtext_printf(t, "\"} %.6f\n", (double)sum_at(base + offsetof(gh_m_hist, sum_us)) / 1e6);
        gh_mtext_printf(t, "%s_count{pool=\"", name);
        put_escaped(t, v->cfg->pools[i].name.p, 0);
        gh_mtext_printf(t, "\"} %llu\n", (unsigned long long)cum);
    }
}

/* ---- servers: one per health slot of the configuration ---- */

typedef struct server_info {
    const gh_cfg_pool *pool;
    const gh_cfg_server *s;
    size_t slot;
    char address[64]; /* where it connects now; "" for a slot of a name without an address */
    gh_health_stats st;
    int healthy, ejected;
    int64_t inflight;
    uint64_t failures;
} server_info;

/* Calls fn for every server slot of v->cfg, in file order (the order the runtime gives the health slots). */
static void each_server(const gh_metrics_view *v, void (*fn)(const gh_metrics_view *, const server_info *, void *),
                        void *arg)
{
    uint64_t now_ms = gh_metrics_now_us() / 1000;
    size_t slot = 0;

    for (size_t i = 0; i < v->cfg->npools; i++)
        for (size_t k = 0; k < v->cfg->pools[i].nservers; k++) {
            const gh_cfg_server *s = &v->cfg->pools[i].servers[k];

            for (size_t j = 0; j < s->nslots; j++, slot++) {
                server_info si = {&v->cfg->pools[i], s, slot, "", {0}, 0, 0, 0, 0};
                gh_health_ref ref = slot < v->nslots ? v->refs[slot] : gh_health_ref_make(slot, GH_HEALTH_NO_EPOCH);
                gh_addr cur;

                if (gh_addr_shm_current(v->addrs, ref, j < s->naddrs ? &s->addrs[j] : NULL, &cur))
                    snprintf(si.address, sizeof(si.address), "%s", cur.text);
                gh_health_stats_get(v->health, slot, &si.st);
                si.healthy = gh_health_usable(v->health, ref, now_ms) && si.address[0] != '\0';
                si.ejected = si.st.ejected_until > now_ms;
                if (slot < GH_M_MAX_SERVERS) {
                    si.inflight = GAUGE(servers[slot].inflight);
                    si.failures = SUM(servers[slot].failures);
                }
                fn(v, &si, arg);
            }
        }
}

static void server_labels(gh_mtext *t, const server_info *si)
{
    gh_mtext_printf(t, "{pool=\"");
    put_escaped(t, si->pool->name.p, 0);
    gh_mtext_printf(t, "\",server=\"");
    put_escaped(t, si->s->text.p, 0);
    gh_mtext_printf(t, "\",address=\"");
    put_escaped(t, si->address, 0);
    gh_mtext_printf(t, "\"");
}

/* One family at a time, as the format wants every sample of a family together. */
enum { S_STATE, S_HEALTHY, S_EJECTED, S_INFLIGHT, S_FAILURES, S_EJECTIONS, S_PROBES };

struct sample_arg {
    gh_mtext *t;
    int which; /* S_* */
};

static void server_sample(const gh_metrics_view *v, const server_info *si, void *arg)
{
    gh_mtext *t = ((struct sample_arg *)arg)->t;
    int which = ((struct sample_arg *)arg)->which;
    int status = si->st.status >= 0 && si->st.status <= 3 ? si->st.status : 0;

    switch (which) {
    case S_STATE:
        for (int s = 0; s < 4; s++) {
            gh_mtext_printf(t, "gatehouse_server_state");
            server_labels(t, si);
            gh_mtext_printf(t, ",state=\"%s\"} %d\n", state_names[s], s == status);
        }
        return;
    case S_HEALTHY:
        gh_mtext_printf(t, "gatehouse_server_healthy");
        server_labels(t, si);
        gh_mtext_printf(t, "} %d\n", si->healthy);
        return;
    case S_EJECTED:
        gh_mtext_printf(t, "gatehouse_server_ejected");
        server_labels(t, si);
        gh_mtext_printf(t, "} %d\n", si->ejected);
        return;
    case S_INFLIGHT:
        gh_mtext_printf(t, "gatehouse_server_requests_in_flight");
        server_labels(t, si);
        gh_mtext_printf(t, "} %lld\n", (long long)si->inflight);
        return;
    case S_FAILURES:
        gh_mtext_printf(t, "gatehouse_server_failures_total");
        server_labels(t, si);
        gh_mtext_printf(t, "} %llu\n", (unsigned long long)si->failures);
        return;
    case S_EJECTIONS:
        gh_mtext_printf(t, "gatehouse_server_ejections_total");
        server_labels(t, si);
        gh_mtext_printf(t, "} %llu\n", (unsigned long long)si->st.ejections);
        return;
    case S_PROBES:
        gh_mtext_printf(t, "gatehouse_server_health_checks_total");
        server_labels(t, si);
        gh_mtext_printf(t, ",result=\"ok\"} %llu\n", (unsigned long long)si->st.probes_ok);
        gh_mtext_printf(t, "gatehouse_server_health_checks_total");
        server_labels(t, si);
        gh_mtext_printf(t, ",result=\"failed\"} %llu\n", (unsigned long long)si->st.probes_failed);
        return;
    }
}

static void servers(const gh_metrics_view *v, gh_mtext *t)
{
    static const struct {
        const char *name, *type, *help;
    } fams[] = {
        {"gatehouse_server_state", "gauge", "Active health verdict of a server (1 for its current state)."},
        {"gatehouse_server_healthy", "gauge", "1 when new requests may go to the server (not down, not ejected)."},
        {"gatehouse_server_ejected", "gauge", "1 while passive health checks keep the server ejected."},
        {"gatehouse_server_requests_in_flight", "gauge", "Requests and tunnels the server holds now, all workers."},
        {"gatehouse_server_failures_total", "counter",
         "Connect failures, timeouts and counted statuses of the server."},
        {"gatehouse_server_ejections_total", "counter", "Passive ejections of the server."},
        {"gatehouse_server_health_checks_total", "counter", "Active health checks of the server, by result."},
    };

    for (int f = 0; f < (int)(sizeof(fams) / sizeof(fams[0])); f++) {
        struct sample_arg arg = {t, f};

        family(t, fams[f].name, fams[f].type, fams[f].help);
        each_server(v, server_sample, &arg);
    }
}

static void listeners(const gh_metrics_view *v, gh_mtext *t, int open)
{
    const char *name = open ? "gatehouse_client_connections_open" : "gatehouse_client_connections_total";

    family(t, name, open ? "gauge" : "counter",
           open ? "Client connections open, by listener and protocol (tunnels are counted apart)."
                : "Client connections accepted, by listener.");
    for (size_t i = 0; i < v->cfg->nlisteners; i++) {
        uint32_t l = v->cfg->listeners[i].metric;

        if (l >= GH_M_MAX_LISTENERS)
            continue;
        for (int p = 0; p < (open ? GH_M_NPROTO : 1); p++) {
            gh_mtext_printf(t, "%s{listener=\"", name);
            put_escaped(t, v->cfg->listeners[i].addr.text, 0);
            if (open)
                gh_mtext_printf(t, "\",protocol=\"%s\"} %lld\n", proto_names[p],
                                (long long)GAUGE(listeners[l].open[p]));
            else
                gh_mtext_printf(t, "\"} %llu\n", (unsigned long long)SUM(listeners[l].accepted));
        }
    }
}

static void process_families(gh_mtext *t)
{
    family(t, "gatehouse_build_info", "gauge", "Always 1; the version is a label.");
    gh_mtext_printf(t, "gatehouse_build_info{version=\"%s\"} 1\n", GH_VERSION);
    family(t, "gatehouse_start_time_seconds", "gauge", "When the master started, in seconds since the epoch.");
    gh_mtext_printf(t, "gatehouse_start_time_seconds %lld\n", R ? (long long)R->start_time : 0LL);
    family(t, "gatehouse_workers", "gauge", "Worker processes the master runs.");
    gh_mtext_printf(t, "gatehouse_workers %d\n", R ? R->nworkers : 0);
    family(t, "gatehouse_worker_restarts_total", "counter", "Workers that died and were started again.");
    gh_mtext_printf(t, "gatehouse_worker_restarts_total %llu\n",
                    R ? (unsigned long long)LOAD(R->worker_restarts) : 0ULL);
    family(t, "gatehouse_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
    gh_mtext_printf(t, "gatehouse_reloads_total{result=\"success\"} %llu\n",
                    R ? (unsigned long long)LOAD(R->reloads_ok) : 0ULL);
    gh_mtext_printf(t, "gatehouse_reloads_total{result=\"failure\"} %llu\n",
                    R ? (unsigned long long)LOAD(R->reloads_failed) : 0ULL);
    family(
        t, "gatehouse_config_last_reload_successful", "gauge",
        "1 when the last reload succeeded (or none was tried), 0 when it failed and the previous configuration runs.");
    gh_mtext_printf(t, "gatehouse_config_last_reload_successful %lld\n", R ? (long long)LOAD(R->last_reload_ok) : 1LL);
    family(
        t, "gatehouse_config_last_reload_success_timestamp_seconds", "gauge",
        "When the configuration last loaded (the start, or the last successful reload), in seconds since the epoch.");
    gh_mtext_printf(t, "gatehouse_config_last_reload_success_timestamp_seconds %lld\n",
                    R ? (long long)(LOAD(R->last_reload_time) ? LOAD(R->last_reload_time) : R->start_time) : 0LL);
}

void gh_metrics_prometheus(const gh_metrics_view *v, gh_mtext *t)
{
    R = gh_metrics_region();
    process_families(t);
    requests(v, t);
    route_bytes(v, t, "gatehouse_http_request_body_bytes_total", "Request body bytes read from clients, by route.", 0);
    route_bytes(v, t, "gatehouse_http_response_body_bytes_total", "Response body bytes sent to clients, by route.", 1);
    histogram(v, t, "gatehouse_upstream_connect_duration_seconds",
              "Time to connect to a server of the pool (new connections only).", 0);
    histogram(v, t, "gatehouse_upstream_response_duration_seconds",
              "Time from taking a server connection (a new one's connect included) to the response head.", 1);
    servers(v, t);
    listeners(v, t, 1);
    listeners(v, t, 0);
    family(t, "gatehouse_tls_handshakes_total", "counter", "Completed TLS handshakes, by version and kind.");
    for (int i = 0; i < GH_M_NTLS; i++)
        for (int r = 0; r < 2; r++)
            gh_mtext_printf(t, "gatehouse_tls_handshakes_total{version=\"%s\",kind=\"%s\"} %llu\n", tls_names[i],
                            r ? "resumed" : "full", (unsigned long long)SUM(tls_handshakes[i][r]));
    family(t, "gatehouse_tls_handshake_failures_total", "counter", "TLS handshakes that failed.");
    gh_mtext_printf(t, "gatehouse_tls_handshake_failures_total %llu\n", (unsigned long long)SUM(tls_failures));
    family(t, "gatehouse_tunnels_open", "gauge", "Tunnels (WebSockets after their 101) open now.");
    gh_mtext_printf(t, "gatehouse_tunnels_open %lld\n", (long long)GAUGE(tunnels_open));
    family(t, "gatehouse_tunnels_total", "counter", "Tunnels opened.");
    gh_mtext_printf(t, "gatehouse_tunnels_total %llu\n", (unsigned long long)SUM(tunnels));
    family(t, "gatehouse_streams_open", "gauge", "TCP stream sessions open now.");
    gh_mtext_printf(t, "gatehouse_streams_open %lld\n", (long long)GAUGE(streams_open));
    family(t, "gatehouse_streams_total", "counter", "TCP stream sessions opened.");
    gh_mtext_printf(t, "gatehouse_streams_total %llu\n", (unsigned long long)SUM(streams));
    family(t, "gatehouse_limit_hits_total", "counter", "Requests or connections that met a limit, by limit.");
    for (int i = 0; i < GH_M_NLIMITS; i++)
        gh_mtext_printf(t, "gatehouse_limit_hits_total{limit=\"%s\"} %llu\n", limit_names[i],
                        (unsigned long long)SUM(limits[i]));
}

/* ---- the status page ---- */

static void json_string(gh_mtext *t, const char *s)
{
    gh_mtext_printf(t, "\"");
    put_escaped(t, s, 1);
    gh_mtext_printf(t, "\"");
}

struct json_pools {
    gh_mtext *t;
    const gh_cfg_pool *open; /* the pool whose servers array is open */
    int nserver;
};

static void json_server(const gh_metrics_view *v, const server_info *si, void *arg)
{
    struct json_pools *jp = arg;
    gh_mtext *t = jp->t;
    int status = si->st.status >= 0 && si->st.status <= 3 ? si->st.status : 0;

    if (jp->open != si->pool) {
        if (jp->open != NULL)
            gh_mtext_printf(t, "\n      ]\n    },");
        gh_mtext_printf(t, "\n    {\n      \"name\": ");
        json_string(t, si->pool->name.p);
        gh_mtext_printf(t, ",\n      \"servers\": [");
        jp->open = si->pool;
        jp->nserver = 0;
    }
    gh_mtext_printf(t, "%s\n        {\"server\": ", jp->nserver++ ? "," : "");
    json_string(t, si->s->text.p);
    gh_mtext_printf(t, ", \"address\": ");
    json_string(t, si->address);
    gh_mtext_printf(t,
                    ", \"state\": \"%s\", \"healthy\": %s, \"ejected\": %s, \"in_flight\": %lld, \"failures\": %llu, "
                    "\"ejections\": %llu, \"checks_ok\": %llu, \"checks_failed\": %llu%s}",
                    state_names[status], si->healthy ? "true" : "false", si->ejected ? "true" : "false",
                    (long long)si->inflight, (unsigned long long)si->failures, (unsigned long long)si->st.ejections,
                    (unsigned long long)si->st.probes_ok, (unsigned long long)si->st.probes_failed,
                    si->s->backup ? ", \"backup\": true" : "");
}

void gh_metrics_status_json(const gh_metrics_view *v, gh_mtext *t)
{
    struct json_pools jp = {t, NULL, 0};

    R = gh_metrics_region();
    gh_mtext_printf(t, "{\n  \"version\": \"%s\",\n  \"uptime_seconds\": %lld,\n  \"workers\": %d,\n", GH_VERSION,
                    R ? (long long)(time(NULL) - R->start_time) : 0LL, R ? R->nworkers : 0);
    gh_mtext_printf(t, "  \"answered_by_worker\": %d,\n  \"config\": ", v->worker);
    json_string(t, v->cfg->path);
    gh_mtext_printf(t, ",\n  \"reloads\": {\"success\": %llu, \"failure\": %llu, \"last_successful\": %s},\n",
                    R ? (unsigned long long)LOAD(R->reloads_ok) : 0ULL,
                    R ? (unsigned long long)LOAD(R->reloads_failed) : 0ULL,
                    R == NULL || LOAD(R->last_reload_ok) ? "true" : "false");
    gh_mtext_printf(t, "  \"tunnels_open\": %lld,\n  \"streams_open\": %lld,\n  \"listeners\": [",
                    (long long)GAUGE(tunnels_open), (long long)GAUGE(streams_open));
    for (size_t i = 0; i < v->cfg->nlisteners; i++) {
        uint32_t l = v->cfg->listeners[i].metric;

        gh_mtext_printf(t, "%s\n    {\"address\": ", i ? "," : "");
        json_string(t, v->cfg->listeners[i].addr.text);
        gh_mtext_printf(t, ", \"tls\": %s, \"connections_open\": {", v->cfg->listeners[i].tls ? "true" : "false");
        for (int p = 0; p < GH_M_NPROTO; p++)
            gh_mtext_printf(t, "%s\"%s\": %lld", p ? ", " : "", proto_names[p],
                            l < GH_M_MAX_LISTENERS ? (long long)GAUGE(listeners[l].open[p]) : 0LL);
        gh_mtext_printf(t, "}}");
    }
    gh_mtext_printf(t, "\n  ],\n  \"pools\": [");
    each_server(v, json_server, &jp);
    if (jp.open != NULL)
        gh_mtext_printf(t, "\n      ]\n    }");
    gh_mtext_printf(t, "\n  ]\n}\n");
}
