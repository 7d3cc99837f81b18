/*
 * edge: what is decided about a request before it goes anywhere: the route's
 * allow/deny rules (403) and its rate limit (429 with Retry-After), from the
 * client's address as the session knows it (proxy__session.peer: the real
 * client once PROXY protocol has set it); and the count of connections per
 * client address (max_connections_per_ip), shared by all workers.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/peerlimit.h"
#include "proxy/ratelimit.h"

/* In file order, the first rule that matches decides; none matching allows (end a list with `deny all`). */
static int allowed(const gh_cfg_edge *e, const struct sockaddr *sa)
{
    for (size_t i = 0; i < e->nrules; i++)
        if (gh_cidr_match(&e->rules[i].net, sa))
            return e->rules[i].allow;
    return 1;
}

/* The bytes that key a request's bucket; an absent header or cookie is one shared key (the empty value). */
static gh_h1_str rate_key(const proxy__session *s, const gh_cfg_rate_limit *rl, const gh_h1_request *r)
{
    if (rl->key == GH_RATE_KEY_COOKIE)
        return gh_h1_request_cookie(r, rl->key_name.p, rl->key_name.len);
    if (rl->key == GH_RATE_KEY_HEADER) {
        for (size_t i = 0; i < r->nheaders; i++)
            if (r->headers[i].name.len == rl->key_name.len &&
                strncasecmp(r->headers[i].name.p, rl->key_name.p, rl->key_name.len) == 0)
                return r->headers[i].value;
        return (gh_h1_str){"", 0};
    }
    return (gh_h1_str){s->ip, strlen(s->ip)};
}

int proxy__edge_check(const proxy__session *s, const gh_cfg_route *rt, const gh_h1_request *r, uint32_t *retry_after)
{
    const gh_cfg_rate_limit *rl = rt->edge.rate;

    if (rt->edge.nrules > 0 && !allowed(&rt->edge, (const struct sockaddr *)&s->peer)) {
        gh_metric_limit(s->w->metrics, GH_M_LIMIT_ACCESS_RULE);
        return 403;
    }
    if (rl != NULL && s->gen->rt->rates != NULL) {
        gh_h1_str k = rate_key(s, rl, r);
        uint64_t key = gh_rate_key(rl->id, k.p, k.len);

        *retry_after = gh_rate_take(s->gen->rt->rates, key, gh_loop_now(s->w->loop) * 1000, rl->interval_us, rl->burst);
        if (*retry_after > 0) {
            gh_metric_limit(s->w->metrics, GH_M_LIMIT_RATE);
            return 429;
        }
    }
    return 0;
}

const char *proxy__edge_conn_check(proxy__worker *w, const proxy__gen *g, const gh_cfg_edge *e,
                                   const struct sockaddr_storage *peer, const char *ip)
{
    const gh_cfg_rate_limit *rl = e->rate;

    if (e->nrules > 0 && !allowed(e, (const struct sockaddr *)peer)) {
        gh_metric_limit(w->metrics, GH_M_LIMIT_ACCESS_RULE);
        return "denied by access rule";
    }
    if (rl != NULL && g->rt->rates != NULL &&
        gh_rate_take(g->rt->rates, gh_rate_key(rl->id, ip, strlen(ip)), gh_loop_now(w->loop) * 1000, rl->interval_us,
                     rl->burst) > 0) {
        gh_metric_limit(w->metrics, GH_M_LIMIT_RATE);
        return "refused: rate limit";
    }
    return NULL;
}

/* ---- connections per client address (all workers: peerlimit.h) ---- */

static void peer_bytes(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        /* as ::ffff:a.b.c.d, so a dual-stack socket's mapped address is the same key */
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

int proxy__peer_admit_at(proxy__worker *w, const struct sockaddr_storage *peer, const char *ip, uint8_t *counted)
{
    uint32_t max = w->gen->rt->cfg->max_conns_per_ip, held = 0;
    gh_peer_shm *shm = w->gen->rt->peers;
    uint8_t a[16];
    int rc;

    if (max == 0 || shm == NULL)
        return 0;
    peer_bytes(peer, a);
    rc = gh_peer_take(shm, a, 0, (uint16_t)w->id, max, &held);
    if (rc == GH_PEER_OVER) {
        gh_log_debug("client %s: %u connections already (max_connections_per_ip): closed", ip, held);
        gh_metric_limit(w->metrics, GH_M_LIMIT_CONN_PER_ADDR);
        return -1;
    }
    if (rc == GH_PEER_FULL) {
        /* Let in uncounted (peerlimit.h says why); the operator hears of it, at most once a minute per worker. */
        static int64_t said_at = -60000;
        int64_t now = gh_loop_now(w->loop);

        if (now - said_at >= 60000) {
            said_at = now;
            gh_log_warn("client %s: the max_connections_per_ip table has no free entry for it: let in uncounted", ip);
        }
        gh_metric_limit(w->metrics, GH_M_LIMIT_CONN_PER_ADDR_FULL);
        return 0;
    }
    *counted = 1;
    return 0;
}

int proxy__peer_admit(proxy__session *s)
{
    return proxy__peer_admit_at(s->w, &s->peer, s->ip, &s->peer_counted);
}

void proxy__peer_release(proxy__worker *w, const struct sockaddr_storage *peer, uint8_t *counted)
{
    uint8_t a[16];

    if (!*counted)
        return;
    *counted = 0; /* first: whatever happens below, never a second time */
    peer_bytes(peer, a);
    gh_peer_put(w->gen->rt->peers, a, 0, (uint16_t)w->id);
}
