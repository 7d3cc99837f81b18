/*
 * upstream: the pools' servers as one worker sees them, connections to them,
 * and keep-alive reuse. An idle connection waits in its server's LIFO list (the
 * most recently used is the one least likely to have been closed by the server).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/conn.h"
#include "net/sock.h"
#include "proxy/observe.h"
#include "proxy/proxy.h"

/* An exchange's `tried` has one bit per server of its pool. */
_Static_assert(sizeof(((proxy__exchange *)0)->tried) * 8 >= GH_LB_MAX_SERVERS, "tried: one bit per server");

#define MAX_IDLE_PER_SERVER 256
#define FAIL_BACKOFF_MS     2000

/* The config's names for the algorithms, to the balancer's: spelled out, never assumed equal. */
static int lb_algorithm(int balance)
{
    switch (balance) {
    case GH_BALANCE_LEAST_CONN:
        return GH_LB_LEAST_CONN;
    case GH_BALANCE_P2C:
        return GH_LB_P2C;
    case GH_BALANCE_RANDOM:
        return GH_LB_RANDOM;
    case GH_BALANCE_HASH:
        return GH_LB_HASH;
    default:
        return GH_LB_ROUND_ROBIN;
    }
}

static void server_label(proxy__server *s)
{
    proxy__named *nm = s->named;
    char ip[64];

    if (nm->cur.len > 0)
        gh_sock_ntop(&nm->cur.ss, ip, sizeof(ip));
    snprintf(nm->label, sizeof(nm->label), "%s (%s)", s->text, nm->cur.len > 0 ? ip : "no address");
}

/* A name's slot: its current address (a re-resolution may have changed it); idle connections go to the old one. */
static void server_refresh(proxy__pool *p, size_t i)
{
    proxy__named *nm = p->servers[i].named;
    uint64_t v = gh_addr_shm_version(p->gen->rt->addrs, p->slots[i]);
    gh_addr old;

    if (v == nm->version)
        return;
    nm->version = v;
    old = nm->cur;
    gh_addr_shm_current(p->gen->rt->addrs, p->slots[i], p->servers[i].addr, &nm->cur);
    if (gh_addr_same(&old, &nm->cur))
        return;
    server_label(&p->servers[i]);
    proxy__server_close_idle(p, i);
}

/* Every address of every config server is a server of the pool: nslots entries, weight and backup copied. */
static int pool_init(proxy__gen *g, proxy__pool *p, const gh_cfg_pool *cfg)
{
    proxy__worker *w = g->w;
    size_t n = 0;

    p->w = w;
    p->gen = g;
    p->cfg = cfg;
    p->slots = &g->rt->refs[g->rt->slot_base[cfg->index]];
    p->passive = (gh_health_passive){cfg->passive.fails, cfg->passive.window, cfg->passive.eject};
    for (size_t i = 0; i < cfg->nservers; i++)
        n += cfg->servers[i].nslots;
    p->nservers = n;
    p->servers = calloc(n ? n : 1, sizeof(*p->servers));
    p->lb_servers = calloc(n ? n : 1, sizeof(*p->lb_servers));
    p->named = calloc(n ? n : 1, sizeof(*p->named)); /* apart: numeric servers stay small on the hot path */
    if (p->servers == NULL || p->lb_servers == NULL || p->named == NULL)
        return -1;
    n = 0;
    for (size_t i = 0; i < cfg->nservers; i++) {
        const gh_cfg_server *s = &cfg->servers[i];
        for (size_t j = 0; j < s->nslots; j++, n++) {
            proxy__server *ps = &p->servers[n];
            char id[320];

            ps->addr = j < s->naddrs ? &s->addrs[j] : NULL;
            ps->text = s->text.p;
            if (!gh_addr_is_numeric(s->host.p)) { /* the prober re-resolves the same ones */
                ps->named = &p->named[n];
                if (ps->addr != NULL)
                    ps->named->cur = *ps->addr;
                server_label(ps);
                server_refresh(p, n); /* a worker restarted later reads what the prober published */
            }
            p->lb_servers[n].weight = s->weight;
            p->lb_servers[n].backup = (uint8_t)s->backup;
            /* The first address keeps the id a server had before names had several (consistent hash). */
            snprintf(id, sizeof(id), "%s#%zu", s->text.p, j);
            p->lb_servers[n].id = j == 0 ? gh_lb_hash(s->text.p, s->text.len) : gh_lb_hash(id, strlen(id));
        }
    }
    /* A seed per worker and pool: p2c and random must not make every worker choose alike. */
    p->lb = gh_lb_new(lb_algorithm(cfg->balance), p->lb_servers, p->nservers,
                      ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)p ^ (uint64_t)gh_loop_now(w->loop));
    return p->lb == NULL ? -1 : 0;
}

int proxy__pools_init(proxy__gen *g)
{
    const gh_config *cfg = g->rt->cfg;
    g->npools = cfg->npools;
    g->pools = calloc(cfg->npools ? cfg->npools : 1, sizeof(*g->pools));
    if (g->pools == NULL)
        return -1;
    for (size_t i = 0; i < cfg->npools; i++)
        if (pool_init(g, &g->pools[i], &cfg->pools[i]) < 0)
            return -1;
    return 0;
}

void proxy__pools_free(proxy__gen *g)
{
    for (size_t i = 0; g->pools != NULL && i < g->npools; i++) {
        proxy__pool_close_idle(&g->pools[i]);
        gh_lb_free(g->pools[i].lb);
        free(g->pools[i].servers);
        free(g->pools[i].lb_servers);
        free(g->pools[i].named);
    }
    free(g->pools);
    g->pools = NULL;
}

static void idle_unlink(proxy__upstream *u)
{
    proxy__server *s = &u->pool->servers[u->server];
    if (u->prev != NULL)
        u->prev->next = u->next;
    else
        s->idle = u->next;
    if (u->next != NULL)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
    s->nidle--;
}

/* An idle connection leaves where it waits: its server's list, or its client's session. */
static void idle_unlink_any(proxy__upstream *u)
{
    if (u->owner != NULL) {
        u->owner->own = NULL;
        u->owner = NULL;
        return;
    }
    idle_unlink(u);
}

static void upstream_close(proxy__upstream *u)
{
    gh_loop *loop = u->w->loop;
    gh_timer_stop(loop, &u->timer);
    gh_conn_close(&u->conn, loop);
    gh_buf_release(&u->in);
    gh_loop_release(loop, u);
}

/*
 * Nothing is waiting to be read and no FIN came: the only state in which a
 * connection may carry another request. Bytes the server sent past the end of
 * a response (a second response, a body after HEAD/204/304, more than its
 * Content-Length) would otherwise be read as the next client's response; a
 * FIN would make the next request fail after it was sent (a 502 for a POST,
 * which is never retried). The flags cover what was already seen, the peek
 * what the kernel holds, including an edge not yet delivered.
 */
static int upstream_clean(proxy__upstream *u)
{
    return !u->eof && gh_buf_len(&u->in) == 0 && gh_conn_quiet(&u->conn);
}

static void on_upstream_event(gh_io *io, unsigned events)
{
    proxy__upstream *u = (proxy__upstream *)io;
    gh_conn_on_events(&u->conn, events);
    if (u->ex != NULL) {
        proxy__session *s = u->ex->s;
        proxy__exchange_upstream_event(u->ex, events);
        s->ops->dispatch(s); /* if the exchange ended: next request, or close */
        return;
    }
    /* While idle: the server closed the connection or sent something unasked. */
    if ((events & (GH_EV_READ | GH_EV_ERROR | GH_EV_HUP)) && !upstream_clean(u)) {
        idle_unlink_any(u);
        upstream_close(u);
    }
}

static void on_upstream_timeout(gh_timer *t)
{
    proxy__upstream *u = (proxy__upstream *)((char *)t - offsetof(proxy__upstream, timer));
    if (u->ex != NULL) {
        proxy__session *s = u->ex->s;
        proxy__exchange_upstream_timeout(u->ex);
        s->ops->dispatch(s);
        return;
    }
    idle_unlink_any(u);
    upstream_close(u);
}

/*
 * Servers that the health checks (active or passive, shared by all workers)
 * say are unusable are never picked: no healthy server is a 503 at once. Of
 * the rest, one whose connect failed in this worker just now is skipped while
 * another is left, and tried again rather than refusing when none is.
 */
static int pick_server(proxy__pool *p, uint64_t tried, uint64_t key)
{
    const gh_health_shm *shm = p->gen->rt->health;
    uint64_t now = gh_loop_now(p->w->loop), unhealthy = 0, failed = 0;
    for (size_t i = 0; i < p->nservers; i++) {
        if (p->servers[i].named != NULL)
            server_refresh(p, i);
        if ((p->servers[i].named != NULL ? p->servers[i].named->cur.len == 0 : p->servers[i].addr == NULL) ||
            !gh_health_usable(shm, p->slots[i], now))
            unhealthy |= (uint64_t)1 << i;
        else if (p->servers[i].down_until > now)
            failed |= (uint64_t)1 << i;
    }
    int i = gh_lb_pick(p->lb, p->lb_servers, p->nservers, tried | unhealthy | failed, key);
    return i >= 0 ? i : gh_lb_pick(p->lb, p->lb_servers, p->nservers, tried | unhealthy, key);
}

/* Passive health: a failed connect, a timeout or a counted status (gh_cfg_passive_counts) counts in every worker. */
void proxy__upstream_report(proxy__pool *p, size_t server, int ok)
{
    gh_health_shm *shm = p->gen->rt->health;
    if (!ok)
        gh_metric_server_failure(p->w->metrics, p->slots[server]);
    if (p->passive.max_fails == 0)
        return; /* passive ejection off: no streak to keep or end */
    if (ok)
        gh_health_passive_success(shm, p->slots[server]);
    else
        gh_health_passive_failure(shm, p->slots[server], gh_loop_now(p->w->loop), &p->passive,
                                  proxy__server_name(&p->servers[server]), p->cfg->name.p);
}

/*
 * Errors of this host, not of the server: out of descriptors (EMFILE, ENFILE),
 * of local ports (EADDRNOTAVAIL from connect) or of kernel memory. Counting
 * them against the server would let one busy moment eject every healthy
 * server, in every worker, through the shared health state.
 */
static int local_error(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM || err == EADDRNOTAVAIL;
}

/*
 * Out of descriptors: idle pooled connections are what can be given back at
 * once (the least recently used of a server sit at the end of its list, but a
 * descriptor is a descriptor: take them from the front, in O(1)).
 */
static int reclaim_idle(proxy__gen *g, int max)
{
    int n = 0;
    for (size_t i = 0; i < g->npools && n < max; i++)
        for (size_t s = 0; s < g->pools[i].nservers && n < max; s++)
            while (g->pools[i].servers[s].idle != NULL && n < max) {
                proxy__upstream *u = g->pools[i].servers[s].idle;
                idle_unlink(u);
                upstream_close(u);
                n++;
            }
    return n;
}

/* Once a second at most: under EMFILE every request would log it. */
static void log_local_error(proxy__worker *w, const char *server, int err)
{
    uint64_t now = gh_loop_now(w->loop);
    w->local_errors++;
    if (w->local_error_logged != 0 && now - w->local_error_logged < 1000)
        return;
    gh_log_error("worker %d: connect to %s: %s: a local resource error (descriptors, ports or memory of this "
                 "host), not counted against the server; answering 503 (%llu such errors)",
                 w->id, server, strerror(err), (unsigned long long)w->local_errors);
    w->local_error_logged = now;
    w->local_errors = 0;
}

/* Starts a connect to a server: its fd, or -1 with *local set when this host, not the server, failed. */
static int server_connect(proxy__pool *p, int server, int *local)
{
    proxy__worker *w = p->w;
    proxy__server *s = &p->servers[server];
    const gh_addr *a = s->addr;
    int fd;

    *local = 0;
    if (s->named != NULL) /* a name: the address pick_server read */
        a = s->named->cur.len > 0 ? &s->named->cur : NULL;
    if (a == NULL) { /* pick_server skips a name's slot without an address: a safety net */
        gh_log_warn("connect to %s failed: no address", proxy__server_name(s));
        proxy__server_failed(p, (size_t)server);
        return -1;
    }
    fd = gh_sock_connect(a);
    if ((fd == -EMFILE || fd == -ENFILE) && reclaim_idle(p->gen, 16) > 0)
        fd = gh_sock_connect(a);
    if (fd < 0 && local_error(-fd)) {
        log_local_error(w, proxy__server_name(s), -fd);
        *local = 1;
        return -1;
    }
    if (fd < 0) {
        gh_log_warn("connect to %s failed: %s", proxy__server_name(s), strerror(-fd));
        proxy__server_failed(p, (size_t)server);
        return -1;
    }
    return fd;
}

/* A new connection to a server; NULL with *local set when this host, not the server, failed. */
int (*proxy__upstream_connect_hook)(gh_conn *c, gh_io_cb cb, const proxy__pool *p, int server);

static proxy__upstream *upstream_new(proxy__pool *p, int server, int *local)
{
    proxy__worker *w = p->w;
    int fd = -1;

    *local = 0;
    if (proxy__upstream_connect_hook == NULL && (fd = server_connect(p, server, local)) < 0)
        return NULL;
    proxy__upstream *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        if (fd >= 0)
            close(fd);
        *local = 1;
        return NULL;
    }
    if (proxy__upstream_connect_hook != NULL) { /* a fuzzer's in-memory server (proxy.h) */
        if (proxy__upstream_connect_hook(&u->conn, on_upstream_event, p, server) < 0) {
            free(u);
            *local = 1;
            return NULL;
        }
    } else {
        gh_conn_init(&u->conn, fd, on_upstream_event);
    }
    u->timer.cb = on_upstream_timeout;
    u->w = w;
    u->pool = p;
    u->server = (uint16_t)server;
    u->addr_version = p->servers[server].named != NULL ? p->servers[server].named->version : 0;
    if (gh_conn_add(&u->conn, w->loop) < 0) { /* a memory conn: a no-op that cannot fail */
        close(fd);
        free(u);
        *local = 1;
        return NULL;
    }
    gh_timer_set(w->loop, &u->timer, w->t->connect);
    proxy__observe_connecting(u);
    return u;
}

proxy__upstream *proxy__upstream_get(proxy__pool *p, uint64_t *tried, uint64_t key)
{
    int local;

    for (;;) {
        int i = pick_server(p, *tried, key);
        if (i < 0)
            return NULL;
        *tried |= (uint64_t)1 << i;
        proxy__server *s = &p->servers[i];
        proxy__upstream *u = s->idle;
        if (u != NULL) {
            idle_unlink(u);
            gh_timer_stop(p->w->loop, &u->timer);
            u->reused = 1;
        } else if ((u = upstream_new(p, i, &local)) == NULL) {
            if (local)
                return NULL; /* another server would fail alike: the exchange answers 503 */
            continue;
        }
        p->lb_servers[i].inflight++;
        gh_metric_inflight(p->w->metrics, p->slots[i], 1);
        return u;
    }
}

/*
 * A PROXY header named one client for the connection's whole life: another
 * client's request on it would reach the server as that client's (its logs,
 * its access rules). Such a connection waits on its own client's session for
 * that client's next request (HAProxy's private connections), never in the
 * server's list, and closes with the session.
 */
static void park_on_session(proxy__upstream *u, proxy__session *owner)
{
    proxy__session_drop_own(owner); /* one per session: an older one goes */
    gh_buf_release(&u->in);
    owner->own = u;
    u->owner = owner;
    gh_timer_set(u->w->loop, &u->timer, u->w->t->upstream_idle);
}

void proxy__upstream_release(proxy__upstream *u, int reusable)
{
    proxy__pool *p = u->pool;
    proxy__worker *w = u->w;
    proxy__server *s = &p->servers[u->server];
    proxy__session *owner = u->ex != NULL ? u->ex->s : NULL;

    if (u->ex != NULL && p->lb_servers[u->server].inflight > 0)
        p->lb_servers[u->server].inflight--;
    if (u->ex != NULL)
        gh_metric_inflight(w->metrics, p->slots[u->server], -1);
    u->ex = NULL;
    if (p->cfg->proxy_protocol) {
        if (reusable && !w->draining && owner != NULL && upstream_clean(u))
            park_on_session(u, owner);
        else
            upstream_close(u);
        return;
    }
    if (!reusable || w->draining || s->nidle >= MAX_IDLE_PER_SERVER || !upstream_clean(u)) {
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
    gh_timer_set(w->loop, &u->timer, w->t->upstream_idle);
}

proxy__upstream *proxy__upstream_own(proxy__session *s, proxy__pool *p, uint64_t *tried)
{
    proxy__upstream *u = s->own;
    proxy__server *sv;

    if (u == NULL)
        return NULL;
    sv = &p->servers[u->server];
    if (u->pool != p || (*tried >> u->server & 1) ||
        !gh_health_usable(p->gen->rt->health, p->slots[u->server], gh_loop_now(p->w->loop)))
        goto drop;
    if (sv->named != NULL) {
        server_refresh(p, u->server);
        if (sv->named->version != u->addr_version)
            goto drop; /* the name moved: the next request goes to what it says now */
    }
    s->own = NULL;
    u->owner = NULL;
    gh_timer_stop(p->w->loop, &u->timer);
    u->reused = 1;
    *tried |= (uint64_t)1 << u->server;
    p->lb_servers[u->server].inflight++;
    return u;
drop:
    proxy__session_drop_own(s);
    return NULL;
}

void proxy__session_drop_own(proxy__session *s)
{
    proxy__upstream *u = s->own;

    if (u == NULL)
        return;
    s->own = NULL;
    u->owner = NULL;
    upstream_close(u);
}

void proxy__upstream_mark_failed(proxy__upstream *u)
{
    proxy__server_failed(u->pool, u->server);
}

void proxy__server_failed(proxy__pool *p, size_t server)
{
    p->servers[server].down_until = gh_loop_now(p->w->loop) + FAIL_BACKOFF_MS;
    proxy__upstream_report(p, server, 0);
}

int proxy__upstream_open(proxy__pool *p, uint64_t *tried, uint64_t key, int *server)
{
    int local;

    for (;;) {
        int i = pick_server(p, *tried, key), fd;

        if (i < 0)
            return -1;
        *tried |= (uint64_t)1 << i;
        if ((fd = server_connect(p, i, &local)) >= 0) {
            *server = i;
            return fd;
        }
        if (local)
            return -1; /* another server would fail alike */
    }
}

void proxy__server_close_idle(proxy__pool *p, size_t server)
{
    while (p->servers[server].idle != NULL) {
        proxy__upstream *u = p->servers[server].idle;
        idle_unlink(u);
        upstream_close(u);
    }
}

void proxy__pool_close_idle(proxy__pool *p)
{
    for (size_t i = 0; i < p->nservers; i++)
        proxy__server_close_idle(p, i);
}

void proxy__pools_close_idle(proxy__gen *g)
{
    for (size_t i = 0; i < g->npools; i++)
        proxy__pool_close_idle(&g->pools[i]);
    if (g->fwd_pool != NULL)
        proxy__pool_close_idle(g->fwd_pool);
}

/*
 * The forward pool: the origins of a forward proxy's absolute-form requests,
 * as slots of a pool without balancer or health state (a slot per origin
 * address, taken when a request needs one and none holds it). Keep-alive
 * connections are reused by the address they are connected to, never by the
 * name asked for: two names of one address share them, and a name that
 * moved to another address never gets the old one's connection.
 */
#define FWD_POOL_SLOTS 64

/* No passive ejection, no balancer: what the exchange reads of a pool's config (passive counts, name). */
static const gh_cfg_pool fwd_pool_cfg = {.name = {"forward", 7}, .metric = UINT32_MAX};
/* Origins have no health slot nor metrics series: refs past every region (ignored) that match no epoch. */
static gh_health_ref fwd_refs[FWD_POOL_SLOTS];

proxy__pool *proxy__fwd_pool(proxy__gen *g)
{
    proxy__pool *p = g->fwd_pool;

    if (p != NULL)
        return p;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return NULL;
    p->w = g->w;
    p->gen = g;
    p->cfg = &fwd_pool_cfg;
    p->nservers = FWD_POOL_SLOTS;
    p->servers = calloc(FWD_POOL_SLOTS, sizeof(*p->servers));
    p->lb_servers = calloc(FWD_POOL_SLOTS, sizeof(*p->lb_servers));
    p->origins = calloc(FWD_POOL_SLOTS, sizeof(*p->origins));
    if (p->servers == NULL || p->lb_servers == NULL || p->origins == NULL) {
        free(p->servers);
        free(p->lb_servers);
        free(p->origins);
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < FWD_POOL_SLOTS; i++) {
        p->servers[i].text = p->origins[i].text;
        fwd_refs[i] = gh_health_ref_make(UINT32_MAX, GH_HEALTH_NO_EPOCH);
    }
    p->slots = fwd_refs;
    g->fwd_pool = p;
    return p;
}

void proxy__fwd_pool_free(proxy__gen *g)
{
    proxy__pool *p = g->fwd_pool;

    if (p == NULL)
        return;
    proxy__pool_close_idle(p);
    free(p->servers);
    free(p->lb_servers);
    free(p->origins);
    free(p);
    g->fwd_pool = NULL;
}

/* The slot holding a, or a free one (no connection in use or idle), else one whose idle ones are closed. -1: none. */
static int origin_slot(proxy__pool *p, const gh_addr *a)
{
    int free_slot = -1, idle_slot = -1;

    for (size_t i = 0; i < p->nservers; i++) {
        proxy__server *s = &p->servers[i];

        if (s->addr != NULL && gh_addr_same(s->addr, a))
            return (int)i;
        if (p->lb_servers[i].inflight == 0 && free_slot < 0 && (s->addr == NULL || s->nidle == 0))
            free_slot = (int)i;
        else if (p->lb_servers[i].inflight == 0 && idle_slot < 0)
            idle_slot = (int)i;
    }
    if (free_slot < 0 && idle_slot >= 0) {
        proxy__server_close_idle(p, (size_t)idle_slot); /* the least kept: more origins than slots */
        free_slot = idle_slot;
    }
    if (free_slot >= 0) {
        p->origins[free_slot] = *a;
        p->servers[free_slot].addr = &p->origins[free_slot];
        p->servers[free_slot].text = p->origins[free_slot].text;
    }
    return free_slot;
}

proxy__upstream *proxy__upstream_to(proxy__pool *p, const gh_addr *a, int fresh)
{
    int i = origin_slot(p, a), local;
    proxy__upstream *u;

    if (i < 0)
        return NULL;
    if (!fresh && (u = p->servers[i].idle) != NULL) {
        idle_unlink(u);
        gh_timer_stop(p->w->loop, &u->timer);
        u->reused = 1;
    } else {
        if (fresh)
            proxy__server_close_idle(p, (size_t)i); /* one went stale: the others likely did too */
        if ((u = upstream_new(p, i, &local)) == NULL)
            return NULL;
    }
    p->lb_servers[i].inflight++;
    return u;
}
