/*
 * edge: what is decided about a request before it goes anywhere: the route's
 * allow/deny rules (403) and its rate limit (429 with Retry-After), from the
 * client's address as the session knows it (proxy__session.peer: the real
 * client once PROXY protocol has set it); and the count of connections per
 * client address (max_connections_per_ip).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "proxy/proxy.h"
#include "proxy/ratelimit.h"

/* In file order, the first rule that matches decides; none matching allows (end a list with `deny all`). */
static int allowed(const gh_cfg_route *rt, const struct sockaddr *sa)
{
    for (size_t i = 0; i < rt->edge.nrules; i++)
        if (gh_cidr_match(&rt->edge.rules[i].net, sa))
            return rt->edge.rules[i].allow;
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

    if (rt->edge.nrules > 0 && !allowed(rt, (const struct sockaddr *)&s->peer)) {
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

/* ---- connections per client address (per worker) ---- */

/*
 * Counted per worker, not in shared memory: a worker that dies takes its
 * connections with it, and a shared count would keep its increments for
 * ever. So a client may hold max_connections_per_ip in each worker. Open
 * addressing with linear probing, grown at half full, backward-shift delete.
 */
typedef struct peer_entry {
    uint8_t addr[16];
    uint8_t used;
    uint32_t count;
} peer_entry;

static peer_entry *table;
static size_t cap, used;

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

static size_t slot_of(const uint8_t a[16])
{
    return (size_t)gh_rate_key(0, (const char *)a, 16) & (cap - 1);
}

static peer_entry *find(const uint8_t a[16], int insert)
{
    size_t i;

    if (cap == 0)
        return NULL;
    for (i = slot_of(a); table[i].used; i = (i + 1) & (cap - 1))
        if (memcmp(table[i].addr, a, 16) == 0)
            return &table[i];
    if (!insert)
        return NULL;
    memcpy(table[i].addr, a, 16);
    table[i].used = 1;
    table[i].count = 0;
    used++;
    return &table[i];
}

static int grow(void)
{
    peer_entry *old = table;
    size_t ocap = cap;

    cap = cap ? cap * 2 : 256;
    if ((table = calloc(cap, sizeof(*table))) == NULL) {
        table = old;
        cap = ocap;
        return -1;
    }
    used = 0;
    for (size_t i = 0; i < ocap; i++)
        if (old[i].used)
            find(old[i].addr, 1)->count = old[i].count;
    free(old);
    return 0;
}

static void erase(peer_entry *e)
{
    size_t i = (size_t)(e - table), j = i;

    table[i].used = 0;
    used--;
    for (;;) {
        size_t k;

        j = (j + 1) & (cap - 1);
        if (!table[j].used)
            return;
        k = slot_of(table[j].addr);
        /* j's entry may move into the hole at i unless its home lies cyclically in (i, j] */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        table[i] = table[j];
        table[j].used = 0;
        i = j;
    }
}

int proxy__peer_admit(proxy__session *s)
{
    uint32_t max = s->w->gen->rt->cfg->max_conns_per_ip;
    uint8_t a[16];
    peer_entry *e;

    if (max == 0)
        return 0;
    if ((used + 1) * 2 > cap && grow() < 0)
        return 0; /* out of memory: not counted, let in (the global limit still holds) */
    peer_bytes(&s->peer, a);
    e = find(a, 1);
    if (e->count >= max) {
        gh_log_debug("client %s: %u connections already (max_connections_per_ip): closed", s->ip, e->count);
        gh_metric_limit(s->w->metrics, GH_M_LIMIT_CONN_PER_ADDR);
        return -1;
    }
    e->count++;
    s->peer_counted = 1;
    return 0;
}

void proxy__peer_release(const struct sockaddr_storage *peer, uint8_t *counted)
{
    uint8_t a[16];
    peer_entry *e;

    if (!*counted)
        return;
    *counted = 0;
    peer_bytes(peer, a);
    if ((e = find(a, 0)) != NULL && --e->count == 0)
        erase(e);
}
