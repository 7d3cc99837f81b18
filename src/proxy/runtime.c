/*
 * runtime: TLS contexts and routers built from a config generation (see runtime.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "dns/resolver.h"
#include "metrics/metrics.h"
#include "net/sock.h"
#include "proxy/proxy.h"

/*
 * A TLS context with the certificates of site s, from the bytes `src` gives
 * (the files, or a reload bundle: a worker opens nothing); NULL with
 * "FILE:LINE: reason" in err.
 */
/* A context of prev built from the same bytes (a reload that left this certificate alone), shared; else NULL. */
static gh_tls_ctx *shared_context(gh_runtime *prev, const gh_tls_pem *pems, size_t n)
{
    unsigned char digest[GH_TLS_DIGEST_LEN];
    gh_tls_ctx *c = NULL;

    if (prev == NULL)
        return NULL;
    gh_tls_pem_digest(pems, n, digest);
    for (size_t i = 0; c == NULL && i < prev->cfg->nsites; i++)
        c = gh_tls_ctx_share(prev->site_tls[i], digest);
    return c;
}

/* A context with these certificates (a site's or a stream service's). */
static gh_tls_ctx *certs_context(const gh_cfg_cert *certs, size_t ncerts, const char *of, const gh_conf_source *src,
                                 gh_runtime *prev, char *err, size_t errlen)
{
    gh_conf_file files[16];
    gh_tls_pem pems[8];
    char why[512];
    gh_tls_ctx *c = NULL;
    size_t bad = 0, nfiles = 0;

    if (ncerts > 8) {
        snprintf(err, errlen, "%s:%d: at most 8 certificates per %s", certs[8].where.file, certs[8].where.line, of);
        return NULL;
    }
    memset(files, 0, sizeof(files));
    memset(pems, 0, sizeof(pems));
    for (size_t k = 0; k < ncerts; k++, nfiles += 2) {
        const gh_cfg_cert *ct = &certs[k];
        const char *what = "certificate", *path = ct->cert_file.p;
        int e = src->read(src, path, GH_CFG_MAX_PEM, &files[nfiles]);

        if (e == 0) {
            what = "key";
            path = ct->key_file.p;
            e = src->read(src, path, GH_CFG_MAX_PEM, &files[nfiles + 1]);
        }
        if (e != 0) {
            snprintf(err, errlen, "%s:%d: cannot read %s \"%s\": %s", ct->where.file, ct->where.line, what, path,
                     e == EFBIG ? "file too large (the limit is 1 MiB)" : strerror(e));
            nfiles += 2;
            goto out;
        }
        pems[k] = (gh_tls_pem){ct->cert_file.p,        ct->key_file.p,    files[nfiles].data,
                               files[nfiles + 1].data, files[nfiles].len, files[nfiles + 1].len};
    }
    if ((c = shared_context(prev, pems, ncerts)) == NULL &&
        (c = gh_tls_ctx_new_pem(pems, ncerts, &bad, why, sizeof(why))) == NULL)
        snprintf(err, errlen, "%s:%d: %s", certs[bad].where.file, certs[bad].where.line, why);
out:
    for (size_t i = 0; i < nfiles; i++)
        gh_conf_file_dispose(&files[i]);
    return c;
}

static gh_tls_ctx *site_context(const gh_cfg_site *s, const gh_conf_source *src, gh_runtime *prev, char *err,
                                size_t errlen)
{
    return certs_context(s->certs, s->ncerts, "site", src, prev, err, errlen);
}

static int load_site_tls(gh_runtime *rt, size_t i, const gh_conf_source *src, gh_runtime *prev, char *err,
                         size_t errlen)
{
    const gh_cfg_site *s = &rt->cfg->sites[i];
    if (s->ncerts == 0)
        return 0;
    return (rt->site_tls[i] = site_context(s, src, prev, err, errlen)) == NULL ? -1 : 0;
}

/* SNI: the certificate of the site that the router picks for the name on this listener. */
static gh_tls_ctx *select_by_name(void *arg, const char *name)
{
    proxy__listener *l = arg;
    const gh_runtime *rt = l->rt;
    const gh_cfg_site *s = gh_router_sni(l->router, name, strlen(name));
    if (s == NULL)
        return NULL;
    return rt->site_tls[(size_t)(s - rt->cfg->sites)];
}

/* The site whose certificate a TLS listener shows without SNI: its default site, else its first with one. */
static int site_serves(const gh_cfg_site *s, size_t listener)
{
    if (s->nlisteners == 0)
        return 1;
    for (size_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i] == listener)
            return 1;
    return 0;
}

static const gh_cfg_site *default_site(const gh_runtime *rt, const gh_router *router, size_t listener)
{
    const gh_cfg_site *s = gh_router_sni(router, NULL, 0);
    if (s != NULL && s->ncerts > 0)
        return s;
    for (size_t i = 0; i < rt->cfg->nsites; i++)
        if (rt->cfg->sites[i].ncerts > 0 && site_serves(&rt->cfg->sites[i], listener))
            return &rt->cfg->sites[i];
    return NULL;
}

/* "postgresql" (RFC 7301 wire format): what PostgreSQL 17 clients require with sslnegotiation=direct. */
static const gh_tls_alpn alpn_postgres = {(const unsigned char *)"\x0apostgresql", 11};
static const gh_tls_alpn alpn_none = {(const unsigned char *)"", 0};

/* Every stream service: its TLS context (when it terminates TLS) and its pool. */
static int build_services(gh_runtime *rt, const gh_conf_source *src, char *err, size_t errlen)
{
    const gh_config *cfg = rt->cfg;

    rt->nsvcs = cfg->nstreams;
    if ((rt->svcs = calloc(cfg->nstreams ? cfg->nstreams : 1, sizeof(*rt->svcs))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->nstreams; i++) {
        const gh_cfg_stream *st = &cfg->streams[i];
        proxy__svc *v = &rt->svcs[i];

        v->cfg = st;
        v->index = i;
        v->pool = st->pool->index;
        v->alpn = st->protocol == GH_STREAM_POSTGRES ? alpn_postgres : alpn_none;
        if (st->ncerts > 0 && (v->tls = certs_context(st->certs, st->ncerts, "stream", src, NULL, err, errlen)) == NULL)
            return -1;
    }
    return 0;
}

static int build_stream_listener(gh_runtime *rt, proxy__listener *l, char *err, size_t errlen)
{
    size_t n = 0;

    l->mode = PROXY__MODE_STREAM;
    for (size_t i = 0; i < rt->nsvcs; i++)
        n += rt->svcs[i].cfg->listener == l->index;
    if ((l->svcs = calloc(n ? n : 1, sizeof(*l->svcs))) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < rt->nsvcs; i++) {
        const proxy__svc *v = &rt->svcs[i];

        if (v->cfg->listener != l->index)
            continue;
        l->svcs[l->nsvcs++] = v;
        if (v->cfg->nnames == 0)
            l->svc_default = v;
        l->peek_hello |= v->cfg->passthrough || n > 1;
        l->pg = v->cfg->protocol == GH_STREAM_POSTGRES; /* one protocol per listener (validate.c) */
    }
    return 0;
}

/* The ALPN lists (RFC 7301 3.1 wire format) a listener may offer, by our preference. */
static const gh_tls_alpn alpn_h2_h1 = {(const unsigned char *)"\x02h2\x08http/1.1", 12};
static const gh_tls_alpn alpn_h1_h2 = {(const unsigned char *)"\x08http/1.1\x02h2", 12};
static const gh_tls_alpn alpn_h2 = {(const unsigned char *)"\x02h2", 3};

static void listener_protocols(proxy__listener *l, const gh_cfg_listener *lc)
{
    uint8_t p[2];
    size_t n = gh_cfg_listener_protocols(lc, p);

    l->h1 = p[0] == GH_CFG_PROTO_HTTP1 || (n == 2 && p[1] == GH_CFG_PROTO_HTTP1);
    l->h2 = p[0] == GH_CFG_PROTO_H2 || (n == 2 && p[1] == GH_CFG_PROTO_H2);
    if (l->h1 && l->h2)
        l->alpn = p[0] == GH_CFG_PROTO_H2 ? alpn_h2_h1 : alpn_h1_h2;
    else if (l->h2)
        l->alpn = alpn_h2;
    else
        l->alpn = gh_tls_alpn_http11;
}

static int build_listener(gh_runtime *rt, size_t i, const gh_conf_source *src, char *err, size_t errlen)
{
    proxy__listener *l = &rt->listeners[i];
    const gh_cfg_listener *lc = &rt->cfg->listeners[i];

    l->cfg = lc;
    l->index = i;
    l->rt = rt;
    if (lc->stream)
        return build_stream_listener(rt, l, err, errlen);
    l->mode = PROXY__MODE_HTTP;
    listener_protocols(l, lc);
    if ((l->router = gh_router_new(rt->cfg, i)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t k = 0; k < rt->cfg->nsites; k++)
        if (rt->cfg->sites[k].forward != NULL && site_serves(&rt->cfg->sites[k], i)) {
            l->forward = &rt->cfg->sites[k]; /* validation: it serves this listener alone */
            l->mode = PROXY__MODE_FORWARD;   /* its protocols as any listener's: HTTP/2 streams CONNECT too */
        }
    if (!lc->tls)
        return 0;
    const gh_cfg_site *def = default_site(rt, l->router, i);
    if (def == NULL) {
        snprintf(err, errlen, "%s:%d: TLS listener %s serves no site with a certificate", lc->where.file,
                 lc->where.line, lc->addr.text);
        return -1;
    }
    /* A context of its own: the SNI hook (with this listener's router) is set on the context a session starts on. */
    if ((l->tls = site_context(def, src, NULL, err, errlen)) == NULL)
        return -1;
    if (gh_tls_ctx_set_sni(l->tls, select_by_name, l) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Who holds a slot: the pool's name, the server as written and, for a name,
 * which of its places (j) with the address it got at the load. The same
 * server in the same pool at the same slot (for a name: with the same
 * address) keeps its health across a reload; anything else is a new occupant
 * (gh_health_claim). Never 0 (no owner).
 */
static uint64_t slot_owner(const gh_cfg_pool *p, const gh_cfg_server *s, size_t j)
{
    uint64_t h = gh_lb_hash(p->name.p, p->name.len) * UINT64_C(0x9e3779b97f4a7c15) ^ gh_lb_hash(s->text.p, s->text.len);

    if (!gh_addr_is_numeric(s->host.p)) {
        const char *a = j < s->naddrs ? s->addrs[j].text : "";
        h = (h ^ (j + 1)) * UINT64_C(0x9e3779b97f4a7c15) ^ gh_lb_hash(a, strlen(a));
    }
    return h != 0 ? h : 1;
}

static int probe_type(int type)
{
    switch (type) {
    case GH_HEALTH_TCP:
        return GH_PROBE_TCP;
    case GH_HEALTH_POSTGRES:
        return GH_PROBE_POSTGRES;
    case GH_HEALTH_REDIS:
        return GH_PROBE_REDIS;
    default:
        return GH_PROBE_HTTP;
    }
}

/* Slots in the shared health state (one per address a server may have), and the probe list. */
static int build_health(gh_runtime *rt, char *err, size_t errlen)
{
    const gh_config *cfg = rt->cfg;
    size_t total = 0, n = 0;

    if ((rt->slot_base = calloc(cfg->npools ? cfg->npools : 1, sizeof(size_t))) == NULL)
        goto oom;
    for (size_t i = 0; i < cfg->npools; i++) {
        size_t slots = 0;

        rt->slot_base[i] = total;
        for (size_t k = 0; k < cfg->pools[i].nservers; k++) {
            const gh_cfg_server *sv = &cfg->pools[i].servers[k];

            slots += sv->nslots;
            /* The server that goes over the limit is the one to name: the file is fine up to it. */
            if (total + slots > gh_health_shm_nslots(rt->health)) {
                snprintf(err, errlen, "%s:%d: server %.*s: more than %zu servers (addresses) in all pools",
                         sv->where.file, sv->where.line, (int)sv->text.len, sv->text.p,
                         gh_health_shm_nslots(rt->health));
                return -1;
            }
        }
        total += slots;
        if (cfg->pools[i].health.type != GH_HEALTH_NONE)
            n += slots;
    }
    rt->nslots = total;
    if ((rt->refs = calloc(total ? total : 1, sizeof(*rt->refs))) == NULL ||
        (rt->owners = calloc(total ? total : 1, sizeof(*rt->owners))) == NULL)
        goto oom;
    for (size_t i = 0; i < cfg->npools; i++) {
        size_t slot = rt->slot_base[i];

        for (size_t k = 0; k < cfg->pools[i].nservers; k++)
            for (size_t j = 0; j < cfg->pools[i].servers[k].nslots; j++, slot++) {
                rt->owners[slot] = slot_owner(&cfg->pools[i], &cfg->pools[i].servers[k], j);
                /* As the master claimed it (a worker's reload comes after the claim); the master claims again. */
                rt->refs[slot] = gh_health_ref_of(rt->health, slot, rt->owners[slot]);
            }
    }
    if (n == 0)
        return 0;
    if ((rt->probes = calloc(n, sizeof(*rt->probes))) == NULL)
        goto oom;
    for (size_t i = 0; i < cfg->npools; i++) {
        const gh_cfg_pool *p = &cfg->pools[i];
        size_t slot = rt->slot_base[i];

        if (p->health.type == GH_HEALTH_NONE)
            continue;
        for (size_t k = 0; k < p->nservers; k++) {
            const gh_cfg_server *s = &p->servers[k];

            /* Every slot of a name is probed, filled or not: a re-resolution may fill it. */
            for (size_t j = 0; j < s->nslots; j++, slot++) {
                gh_health_target *t = &rt->probes[rt->nprobes++];

                t->slot = rt->refs[slot];
                if (j < s->naddrs)
                    t->addr = s->addrs[j];
                t->name = gh_addr_is_numeric(s->host.p) ? NULL : s->text.p;
                t->pool = p->name.p;
                t->type = probe_type(p->health.type);
                t->port = (uint16_t)p->health.port;
                t->method = p->health.method.len ? p->health.method.p : NULL;
                t->path = p->health.path.len ? p->health.path.p : NULL;
                t->host = p->health.host.len ? p->health.host.p : s->text.p;
                t->status_min = p->health.status_min;
                t->status_max = p->health.status_max;
                t->interval_ms = p->health.interval;
                t->timeout_ms = p->health.timeout;
                t->rise = p->health.rise;
                t->fall = p->health.fall;
                t->proxy_protocol = p->proxy_protocol_check ? (uint8_t)p->proxy_protocol : 0;
            }
        }
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int gh_runtime_has_probes(const gh_runtime *rt)
{
    return rt->nprobes > 0 || rt->nnames > 0;
}

int gh_shared_init(gh_shared *s)
{
    s->health = gh_health_shm_new(GH_HEALTH_MAX_SLOTS);
    s->addrs = gh_addr_shm_new(GH_HEALTH_MAX_SLOTS);
    s->rates = gh_rate_shm_new(GH_RATE_SETS);
    s->peers = gh_peer_shm_new(GH_PEER_SETS);
    /* The session ticket keys too (tls/tickets.h): kept by the TLS layer, for the life of the process tree. */
    if (s->health == NULL || s->addrs == NULL || s->rates == NULL || s->peers == NULL || gh_tls_tickets_init() < 0) {
        gh_shared_dispose(s);
        return -1;
    }
    return 0;
}

void gh_shared_dispose(gh_shared *s)
{
    gh_health_shm_free(s->health);
    gh_addr_shm_free(s->addrs);
    gh_rate_shm_free(s->rates);
    s->rates = NULL;
    gh_peer_shm_free(s->peers);
    s->peers = NULL;
    s->health = NULL;
    s->addrs = NULL;
}

/* A server given by name, re-resolved every resolve_interval by the prober: its slots are base..base+nslots. */
typedef struct proxy__name {
    size_t base; /* index of its first slot: the refs are rt->refs[base + j] */
    const gh_cfg_server *s;
    int checked;    /* its pool has active checks: a new address is probed before it gets traffic */
    gh_dns_query q; /* in the prober: waiting for its answer while q.entry != NULL */
    gh_runtime *rt;
} proxy__name;

static int collect_names(gh_runtime *rt)
{
    const gh_config *cfg = rt->cfg;
    size_t n = 0;

    for (size_t i = 0; i < cfg->npools; i++)
        for (size_t k = 0; k < cfg->pools[i].nservers; k++)
            n += !gh_addr_is_numeric(cfg->pools[i].servers[k].host.p);
    if (n == 0)
        return 0;
    if ((rt->names = calloc(n, sizeof(*rt->names))) == NULL)
        return -1;
    for (size_t i = 0; i < cfg->npools; i++) {
        size_t slot = rt->slot_base[i];

        for (size_t k = 0; k < cfg->pools[i].nservers; k++) {
            const gh_cfg_server *s = &cfg->pools[i].servers[k];

            if (!gh_addr_is_numeric(s->host.p)) {
                proxy__name *nm = &rt->names[rt->nnames++];
                nm->base = slot;
                nm->s = s;
                nm->checked = cfg->pools[i].health.type != GH_HEALTH_NONE;
            }
            slot += s->nslots;
        }
    }
    return 0;
}

_Static_assert(GH_DNS_MAX_ADDRS >= GH_CFG_MAX_NAME_ADDRS, "the resolver keeps as many addresses as a name has slots");

/* The answer as slot addresses, at most max; -1 when there is none (logged). */
static int found_addrs(const proxy__name *nm, const gh_dns_answer *a, gh_addr *found, size_t max)
{
    size_t n = GH_MIN(a->n, max);

    if (a->status != GH_DNS_OK || n == 0) {
        gh_log_warn("cannot resolve %s: %s; keeping its last addresses", nm->s->host.p, gh_dns_strerror(a->status));
        return -1;
    }
    memcpy(found, a->addrs, n * sizeof(*found));
    return (int)n;
}

/*
 * One name: its slots take the addresses it has now (gh_addr_assign). A slot
 * whose address is gone publishes "no address" (workers stop sending it new
 * requests); one that gets a new address starts as another server: no
 * ejection, no streak, and PENDING when there are active checks, so that it
 * gets traffic only once its first probe passed. The verdict is written
 * before the address: a worker that sees the new address sees it pending.
 */
static void resolve_name(const gh_runtime *rt, const proxy__name *nm, const gh_dns_answer *a)
{
    gh_addr found[GH_CFG_MAX_NAME_ADDRS], cur[GH_CFG_MAX_NAME_ADDRS], next[GH_CFG_MAX_NAME_ADDRS];
    size_t nslots = GH_MIN(nm->s->nslots, GH_CFG_MAX_NAME_ADDRS), left;
    int n = found_addrs(nm, a, found, GH_CFG_MAX_NAME_ADDRS);

    if (n < 0)
        return;                  /* a resolver outage must not empty a pool */
    memset(cur, 0, sizeof(cur)); /* slots beyond nslots are never read; the compiler cannot tell */
    for (size_t j = 0; j < nslots; j++)
        gh_addr_shm_current(rt->addrs, rt->refs[nm->base + j], j < nm->s->naddrs ? &nm->s->addrs[j] : NULL, &cur[j]);
    left = gh_addr_assign(cur, next, nslots, found, (size_t)n);
    for (size_t j = 0; j < nslots; j++) {
        gh_health_ref ref = rt->refs[nm->base + j];

        if (gh_addr_same(&cur[j], &next[j]))
            continue;
        if (next[j].len > 0)
            gh_health_slot_reset(rt->health, ref, nm->checked ? GH_HEALTH_PENDING : GH_HEALTH_UNKNOWN);
        gh_addr_shm_set(rt->addrs, ref, &next[j]);
        if (cur[j].len > 0)
            gh_log_info("%s no longer resolves to %s: no new requests go there", nm->s->text.p, cur[j].text);
        if (next[j].len > 0)
            gh_log_info("%s resolves to %s, a new address%s", nm->s->text.p, next[j].text,
                        nm->checked ? ": it gets requests once a health check passed" : "");
    }
    if (left > 0)
        gh_log_warn("%s resolves to %zu more addresses than its %zu slots (max_addrs): they get no requests",
                    nm->s->text.p, left, nslots);
}

/* One name's answer came (from the cache, the hosts file or DNS). */
static void name_resolved(proxy__name *nm, const gh_dns_answer *a)
{
    gh_runtime *rt = nm->rt;

    resolve_name(rt, nm, a);
    if (--rt->resolving == 0 && rt->resolved != NULL)
        rt->resolved(rt->resolved_arg);
}

static void on_name(void *arg, const gh_dns_answer *a)
{
    name_resolved(arg, a);
}

/*
 * The prober's periodic task: every name is asked of the resolver (c-ares in
 * the prober's loop: DNS never blocks the probes), which answers from its
 * cache while the last answer's TTL lasts. A name still waiting from the last
 * tick (a slow DNS server) is not asked again. done() runs once every answer
 * of this tick is in.
 */
static void resolve_names(void *arg, gh_loop *loop, void (*done)(void *), void *done_arg)
{
    gh_runtime *rt = arg;

    if (rt->resolver == NULL) {
        /* TTL 0 and hosts-file answers are not kept: the next tick asks again, as getaddrinfo did. */
        gh_resolver_opts o = {.servers = rt->cfg->resolver, .min_ttl_ms = 1, .neg_ttl_ms = 1};
        if ((rt->resolver = gh_resolver_new(loop, &o)) == NULL) {
            done(done_arg);
            return;
        }
    }
    rt->resolved = NULL; /* no done() while the tick is still asking */
    rt->resolving++;
    for (size_t i = 0; i < rt->nnames; i++) {
        proxy__name *nm = &rt->names[i];
        gh_dns_answer now;

        if (nm->q.entry != NULL)
            continue;
        nm->rt = rt;
        rt->resolving++;
        if (gh_resolve(rt->resolver, nm->s->host.p, nm->s->host.len, nm->s->port, &nm->q, on_name, nm, &now) == GH_OK)
            name_resolved(nm, &now);
    }
    rt->resolved = done;
    rt->resolved_arg = done_arg;
    if (--rt->resolving == 0)
        done(done_arg);
}

static void stop_resolving(void *arg)
{
    gh_runtime *rt = arg;
    gh_resolver_free(rt->resolver);
    rt->resolver = NULL;
    for (size_t i = 0; i < rt->nnames; i++)
        rt->names[i].q.entry = NULL; /* their queries went with the resolver */
}

/* The server of prev with the pool name and server text of s in pool p, or NULL; its first slot in *slot. */
static const gh_cfg_server *prev_server(const gh_runtime *prev, const gh_cfg_pool *p, const gh_cfg_server *s,
                                        size_t *slot)
{
    for (size_t i = 0; i < prev->cfg->npools; i++) {
        const gh_cfg_pool *q = &prev->cfg->pools[i];

        if (q->name.len != p->name.len || memcmp(q->name.p, p->name.p, p->name.len) != 0)
            continue;
        *slot = prev->slot_base[i];
        for (size_t k = 0; k < q->nservers; *slot += q->servers[k].nslots, k++)
            if (q->servers[k].text.len == s->text.len && memcmp(q->servers[k].text.p, s->text.p, s->text.len) == 0)
                return &q->servers[k];
    }
    return NULL;
}

/* 1 when place j of server s has an address that the same place of prev's server did not have. */
static int new_address(const gh_runtime *prev, const gh_cfg_server *old, size_t slot, const gh_cfg_server *s, size_t j)
{
    gh_addr cur;

    if (j >= s->naddrs)
        return 0; /* no address: never picked */
    /* What the place has now: the prober may have found s's address already (and probed it). */
    if (j >= old->nslots ||
        !gh_addr_shm_current(prev->addrs, prev->refs[slot + j], j < old->naddrs ? &old->addrs[j] : NULL, &cur))
        return 1;
    return !gh_addr_same(&cur, &s->addrs[j]);
}

/*
 * A reload that resolves a name of a pool with active checks to an address
 * that its slot did not have: the slot's owner changes (slot_owner hashes the
 * address), and the claim would make it UNKNOWN, which counts as up. The
 * prober's re-resolution makes such an address PENDING (resolve_name), so that
 * it gets traffic only once a probe passed; a reload must do the same. A name
 * new to the file, like a new numeric server, starts as at a start.
 */
static int mark_readdressed(gh_runtime *rt, const gh_runtime *prev)
{
    const gh_config *cfg = rt->cfg;

    if (prev == NULL || rt->nslots == 0)
        return 0;
    if ((rt->readdressed = calloc(rt->nslots, 1)) == NULL)
        return -1;
    for (size_t i = 0; i < cfg->npools; i++) {
        size_t slot = rt->slot_base[i];

        for (size_t k = 0; k < cfg->pools[i].nservers; k++) {
            const gh_cfg_server *s = &cfg->pools[i].servers[k];
            size_t at = 0;
            const gh_cfg_server *old = prev_server(prev, &cfg->pools[i], s, &at);
            int named = !gh_addr_is_numeric(s->host.p), checked = cfg->pools[i].health.type != GH_HEALTH_NONE;

            for (size_t j = 0; j < s->nslots; j++, slot++)
                rt->readdressed[slot] = named && checked && old != NULL && new_address(prev, old, at, s, j);
        }
    }
    return 0;
}

void gh_runtime_claim_slots(gh_runtime *rt)
{
    gh_metrics_claim(rt->cfg); /* the slots of its routes, pools and listeners in the metrics region */
    for (size_t i = 0; i < rt->nslots; i++) {
        gh_health_ref kept = gh_health_ref_of(rt->health, i, rt->owners[i]); /* the claim's ref unless it resets */

        rt->refs[i] = gh_health_claim(rt->health, i, rt->owners[i]);
        gh_addr_shm_claim(rt->addrs, rt->refs[i]); /* the file was just resolved: nothing published yet */
        if (rt->refs[i] != kept && rt->readdressed != NULL && rt->readdressed[i])
            gh_health_slot_reset(rt->health, rt->refs[i], GH_HEALTH_PENDING);
    }
    for (size_t i = 0; i < rt->nprobes; i++)
        rt->probes[i].slot = rt->refs[gh_health_ref_index(rt->probes[i].slot)];
    /* PENDING waits for a probe: a pool without active checks any more would never get one. */
    for (size_t i = 0; i < rt->cfg->npools; i++) {
        size_t slot = rt->slot_base[i];

        for (size_t k = 0; k < rt->cfg->pools[i].nservers; k++)
            for (size_t j = 0; j < rt->cfg->pools[i].servers[k].nslots; j++, slot++)
                if (rt->cfg->pools[i].health.type == GH_HEALTH_NONE &&
                    gh_health_status_get(rt->health, rt->refs[slot]) == GH_HEALTH_PENDING)
                    gh_health_status_set(rt->health, rt->refs[slot], GH_HEALTH_UNKNOWN);
    }
}

int gh_runtime_probe(gh_runtime *rt)
{
    gh_health_tick tick = {resolve_names, stop_resolving, rt, rt->cfg->resolve_interval};
    return gh_health_run(rt->probes, rt->nprobes, rt->health, rt->addrs, rt->nnames > 0 ? &tick : NULL);
}

static gh_runtime *build(gh_config *cfg, const gh_conf_source *src, const gh_shared *shared, gh_runtime *prev,
                         char *err, size_t errlen)
{
    gh_runtime *rt = calloc(1, sizeof(*rt));

    if (rt == NULL) {
        gh_config_free(cfg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->cfg = cfg;
    rt->health = shared->health;
    rt->addrs = shared->addrs;
    rt->rates = shared->rates;
    rt->peers = shared->peers;
    rt->site_tls = calloc(cfg->nsites ? cfg->nsites : 1, sizeof(*rt->site_tls));
    rt->listeners = calloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*rt->listeners));
    rt->nlisteners = cfg->nlisteners;
    if (cfg->nlisteners > GH_MAX_LISTENERS) {
        snprintf(err, errlen, "%s: %zu listeners; at most %d", cfg->path, cfg->nlisteners, GH_MAX_LISTENERS);
        goto fail;
    }
    if (rt->site_tls == NULL || rt->listeners == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->nsites; i++)
        if (load_site_tls(rt, i, src, prev, err, errlen) < 0)
            goto fail;
    if (build_services(rt, src, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (build_listener(rt, i, src, err, errlen) < 0)
            goto fail;
    if (build_health(rt, err, errlen) < 0)
        goto fail;
    if (mark_readdressed(rt, prev) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (collect_names(rt) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    gh_metrics_bind(cfg); /* as the master claimed them (the master claims again: gh_runtime_claim_slots) */
    return rt;
fail:
    gh_runtime_free(rt);
    return NULL;
}

gh_runtime *gh_runtime_new(gh_config *cfg, const gh_conf_source *src, const gh_shared *shared, char *err, size_t errlen)
{
    return build(cfg, src, shared, NULL, err, errlen);
}

void gh_runtime_free(gh_runtime *rt)
{
    if (rt == NULL)
        return;
    for (size_t i = 0; rt->listeners != NULL && i < rt->nlisteners; i++) {
        gh_router_free(rt->listeners[i].router);
        gh_tls_ctx_free(rt->listeners[i].tls);
        free(rt->listeners[i].svcs);
    }
    for (size_t i = 0; rt->svcs != NULL && i < rt->nsvcs; i++)
        gh_tls_ctx_free(rt->svcs[i].tls);
    free(rt->svcs);
    for (size_t i = 0; rt->site_tls != NULL && i < rt->cfg->nsites; i++)
        gh_tls_ctx_free(rt->site_tls[i]);
    free(rt->listeners);
    free(rt->site_tls);
    free(rt->probes);
    free(rt->names);
    free(rt->slot_base);
    free(rt->refs);
    free(rt->owners);
    free(rt->readdressed);
    gh_config_free(rt->cfg);
    free(rt);
}

gh_runtime *gh_runtime_load(const char *path, const gh_conf_source *src, const gh_shared *shared, int workers,
                            gh_runtime *prev, char *err, size_t errlen)
{
    gh_config *cfg = gh_config_load_from(path, src, err, errlen);

    if (cfg == NULL)
        return NULL;
    if (gh_config_resolve_from(cfg, src, err, errlen) < 0) {
        gh_config_free(cfg);
        return NULL;
    }
    if (workers > 0)
        cfg->workers = workers;
    return build(cfg, src, shared, prev, err, errlen); /* frees cfg when it fails */
}

const gh_config *gh_runtime_config(const gh_runtime *rt)
{
    return rt->cfg;
}
