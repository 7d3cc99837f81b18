/*
 * resolver: c-ares in the worker's loop, and the name cache in front of it.
 *
 * c-ares tells which sockets it wants watched (ARES_OPT_SOCK_STATE_CB); they
 * are registered level-triggered, because ares_process_fd reads one TCP
 * segment per call and relies on being called again while more is there.
 * Its timeouts are one loop timer, re-armed from ares_timeout after every
 * call into it.
 *
 * The cache maps a lower-cased name to its addresses (port-less) until the
 * smallest TTL of the answer runs out (clamped to [min_ttl, max_ttl]),
 * NOTFOUND for neg_ttl; other failures are not cached. An entry with a query
 * in flight holds its waiters; it is never evicted. At cache_max entries the
 * least recently used settled entry goes.
 */
#include "dns/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"

#define MAX_SOCKS 16 /* c-ares opens one UDP socket per server in use, and TCP ones for truncated answers */

typedef struct dns_ip {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
} dns_ip;

typedef struct gh_dns_entry {
    struct gh_dns_entry *hnext;       /* hash chain */
    struct gh_dns_entry *prev, *next; /* LRU list, most recent first */
    gh_resolver *r;
    uint64_t expires; /* loop ms; 0 while pending */
    gh_dns_query *waiters;
    uint32_t hash;
    uint8_t pending;
    uint8_t notifying; /* its waiters are being called: not freed under them, its answer still given */
    uint8_t status;
    uint8_t n;
    dns_ip ips[GH_DNS_MAX_ADDRS];
    char name[GH_DNS_MAX_NAME + 1];
} gh_dns_entry;

typedef struct dns_sock {
    gh_io io; /* first: the loop's events name it */
    gh_resolver *r;
    uint8_t used;
} dns_sock;

struct gh_resolver {
    gh_loop *loop;
    ares_channel ch;
    gh_timer timer;
    gh_resolver_opts o;
    gh_dns_entry **buckets;
    uint32_t nbuckets; /* a power of two */
    gh_dns_entry *lru_head, *lru_tail;
    uint32_t entries;
    gh_resolver_stats st;
    uint8_t in_call; /* inside ares_getaddrinfo: an answer now is returned, not called back */
    uint8_t answered_now;
    dns_sock socks[MAX_SOCKS];
    gh_addr scratch[GH_DNS_MAX_ADDRS]; /* the answer handed to callbacks */
};

const char *gh_dns_strerror(int status)
{
    switch (status) {
    case GH_DNS_OK:
        return "ok";
    case GH_DNS_NOTFOUND:
        return "name not found";
    case GH_DNS_TIMEOUT:
        return "DNS timeout";
    case GH_DNS_FAILED:
        return "DNS failure";
    case GH_DNS_BADNAME:
        return "not a host name";
    case GH_DNS_OVERLOAD:
        return "too many names being resolved";
    default:
        return "?";
    }
}

/* ---- c-ares sockets and timeouts in the loop ---- */

static void rearm(gh_resolver *r)
{
    struct timeval tv, *t = ares_timeout(r->ch, NULL, &tv);
    if (t == NULL) {
        gh_timer_stop(r->loop, &r->timer);
        return;
    }
    gh_timer_set(r->loop, &r->timer, (uint32_t)(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000));
}

static void on_sock(gh_io *io, unsigned events)
{
    dns_sock *s = (dns_sock *)io;
    gh_resolver *r = s->r;
    int fd = io->fd;

    ares_process_fd(r->ch, (events & (GH_EV_READ | GH_EV_ERROR)) ? fd : ARES_SOCKET_BAD,
                    (events & GH_EV_WRITE) ? fd : ARES_SOCKET_BAD);
    rearm(r);
}

static void on_timer(gh_timer *t)
{
    gh_resolver *r = (gh_resolver *)((char *)t - offsetof(gh_resolver, timer));
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(r);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    gh_resolver *r = data;
    dns_sock *s = NULL, *free_slot = NULL;

    for (size_t i = 0; i < MAX_SOCKS; i++) {
        if (r->socks[i].used && r->socks[i].io.fd == fd)
            s = &r->socks[i];
        else if (!r->socks[i].used && free_slot == NULL)
            free_slot = &r->socks[i];
    }
    if (!readable && !writable) { /* c-ares closes it next */
        if (s != NULL) {
            gh_loop_del(r->loop, &s->io);
            s->used = 0;
            s->io.fd = -1;
        }
        return;
    }
    if (s != NULL) {
        gh_loop_want(r->loop, &s->io, writable);
        return;
    }
    if (free_slot == NULL) {
        gh_log_warn("resolver: more than %d DNS sockets at once", MAX_SOCKS); /* its queries time out */
        return;
    }
    free_slot->io.fd = fd;
    free_slot->io.cb = on_sock;
    free_slot->r = r;
    if (gh_loop_add_level(r->loop, &free_slot->io, writable) == 0)
        free_slot->used = 1;
}

/* ---- the cache ---- */

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void lru_unlink(gh_resolver *r, gh_dns_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        r->lru_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        r->lru_tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_front(gh_resolver *r, gh_dns_entry *e)
{
    e->next = r->lru_head;
    e->prev = NULL;
    if (r->lru_head)
        r->lru_head->prev = e;
    r->lru_head = e;
    if (r->lru_tail == NULL)
        r->lru_tail = e;
}

static gh_dns_entry *lookup(gh_resolver *r, const char *name, uint32_t h)
{
    for (gh_dns_entry *e = r->buckets[h & (r->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void entry_free(gh_resolver *r, gh_dns_entry *e)
{
    gh_dns_entry **pp = &r->buckets[e->hash & (r->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(r, e);
    r->entries--;
    free(e);
}

/* Room for one more entry: an expired or the least recently used settled one goes. 0, or -1 when all are pending. */
static int make_room(gh_resolver *r)
{
    if (r->entries < r->o.cache_max)
        return 0;
    for (gh_dns_entry *e = r->lru_tail; e; e = e->prev)
        if (!e->pending) {
            entry_free(r, e);
            r->st.evictions++;
            return 0;
        }
    return -1;
}

/* ---- answers ---- */

static void format_addr(gh_addr *a)
{
    char host[INET6_ADDRSTRLEN];
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(a->text, sizeof(a->text), "%s:%u", host, ntohs(in->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(a->text, sizeof(a->text), "[%s]:%u", host, ntohs(in6->sin6_port));
    }
}

static void to_addr(const dns_ip *ip, uint16_t port, gh_addr *a)
{
    memset(a, 0, sizeof(*a));
    if (ip->family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        memcpy(&in->sin_addr, ip->addr, 4);
        a->len = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        memcpy(&in6->sin6_addr, ip->addr, 16);
        a->len = sizeof(*in6);
    }
    format_addr(a);
}

static void answer_of(gh_resolver *r, const gh_dns_entry *e, uint16_t port, gh_dns_answer *out)
{
    for (size_t i = 0; i < e->n; i++)
        to_addr(&e->ips[i], port, &r->scratch[i]);
    out->status = e->status;
    out->addrs = r->scratch;
    out->n = e->status == GH_DNS_OK ? e->n : 0;
}

/* RFC 8305 4: IPv6 first, then the families alternate, each in the order the answer gave. */
static void interleave(gh_dns_entry *e, const dns_ip *v6, size_t n6, const dns_ip *v4, size_t n4)
{
    size_t i6 = 0, i4 = 0;
    e->n = 0;
    while ((i6 < n6 || i4 < n4) && e->n < GH_DNS_MAX_ADDRS) {
        if (i6 < n6)
            e->ips[e->n++] = v6[i6++];
        if (i4 < n4 && e->n < GH_DNS_MAX_ADDRS)
            e->ips[e->n++] = v4[i4++];
    }
}

static int has_ip(const dns_ip *list, size_t n, const dns_ip *ip)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].family == ip->family && memcmp(list[i].addr, ip->addr, 16) == 0)
            return 1;
    return 0;
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    gh_dns_entry *e = arg;
    gh_resolver *r = e->r;
    dns_ip v6[GH_DNS_MAX_ADDRS], v4[GH_DNS_MAX_ADDRS];
    size_t n6 = 0, n4 = 0;
    uint64_t ttl_ms = UINT64_MAX;
    gh_dns_query *w;
    (void)timeouts;

    if (status == ARES_EDESTRUCTION) { /* the resolver is being freed: no callbacks */
        ares_freeaddrinfo(res);
        return;
    }
    if (status == ARES_SUCCESS && res != NULL) {
        for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next) {
            dns_ip ip = {0};
            if (n->ai_family == AF_INET && n4 < GH_DNS_MAX_ADDRS) {
                ip.family = AF_INET;
                memcpy(ip.addr, &((struct sockaddr_in *)(void *)n->ai_addr)->sin_addr, 4);
                if (has_ip(v4, n4, &ip))
                    continue;
                v4[n4++] = ip;
            } else if (n->ai_family == AF_INET6 && n6 < GH_DNS_MAX_ADDRS) {
                ip.family = AF_INET6;
                memcpy(ip.addr, &((struct sockaddr_in6 *)(void *)n->ai_addr)->sin6_addr, 16);
                if (has_ip(v6, n6, &ip))
                    continue;
                v6[n6++] = ip;
            } else {
                continue;
            }
            uint64_t t = n->ai_ttl > 0 ? (uint64_t)n->ai_ttl * 1000 : 0;
            if (t < ttl_ms)
                ttl_ms = t;
        }
    }
    ares_freeaddrinfo(res);
    interleave(e, v6, n6, v4, n4);
    if (status == ARES_SUCCESS && e->n > 0) {
        e->status = GH_DNS_OK;
    } else if (status == ARES_SUCCESS || status == ARES_ENOTFOUND || status == ARES_ENODATA) {
        e->status = GH_DNS_NOTFOUND;
        ttl_ms = r->o.neg_ttl_ms;
    } else {
        e->status = status == ARES_ETIMEOUT ? GH_DNS_TIMEOUT : GH_DNS_FAILED;
        ttl_ms = 0; /* not cached: the next request asks again */
    }
    if (e->status == GH_DNS_OK)
        ttl_ms = ttl_ms < r->o.min_ttl_ms ? r->o.min_ttl_ms : ttl_ms > r->o.max_ttl_ms ? r->o.max_ttl_ms : ttl_ms;
    e->pending = 0;
    e->expires = gh_loop_now(r->loop) + ttl_ms;
    if (r->in_call) { /* the hosts file answered inside ares_getaddrinfo: gh_resolve returns it */
        r->answered_now = 1;
        return;
    }

    /* One waiter at a time off the list: a callback may cancel a later waiter (its owner freed). */
    e->notifying = 1;
    while ((w = e->waiters) != NULL) {
        gh_dns_answer a;
        e->waiters = w->next;
        w->entry = NULL;
        w->next = NULL;
        answer_of(r, e, w->port, &a);
        w->cb(w->arg, &a);
    }
    e->notifying = 0;
    if (ttl_ms == 0)
        entry_free(r, e);
}

/* ---- the API ---- */

static int numeric(const char *host, uint16_t port, gh_addr *a)
{
    dns_ip ip = {0};
    if (inet_pton(AF_INET, host, ip.addr) == 1)
        ip.family = AF_INET;
    else if (inet_pton(AF_INET6, host, ip.addr) == 1)
        ip.family = AF_INET6;
    else
        return 0;
    to_addr(&ip, port, a);
    return 1;
}

/* RFC 1123 2.1 host names, lower-cased into out; a trailing dot is dropped. 0, or -1. */
static int normalize(const char *s, size_t len, char *out)
{
    size_t label = 0;
    if (len > 0 && s[len - 1] == '.')
        len--;
    if (len == 0 || len > GH_DNS_MAX_NAME)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return -1;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            if (c == '-' && label == 0)
                return -1;
            label++;
        } else if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
            label++;
        } else {
            return -1;
        }
        if (label > 63)
            return -1;
        out[i] = c;
    }
    if (s[len - 1] == '-')
        return -1;
    out[len] = '\0';
    return 0;
}

int gh_resolve(gh_resolver *r, const char *host, size_t len, uint16_t port, gh_dns_query *q, gh_dns_cb cb, void *arg,
               gh_dns_answer *now)
{
    char name[GH_DNS_MAX_NAME + 1];
    gh_dns_entry *e;
    uint32_t h;

    *now = (gh_dns_answer){GH_DNS_BADNAME, r->scratch, 0};
    if (len < sizeof(name)) {
        memcpy(name, host, len);
        name[len] = '\0';
        if (memchr(host, '\0', len) == NULL && numeric(name, port, &r->scratch[0])) {
            *now = (gh_dns_answer){GH_DNS_OK, r->scratch, 1};
            return GH_OK;
        }
    }
    if (normalize(host, len, name) < 0)
        return GH_OK;
    h = hash_name(name);
    e = lookup(r, name, h);
    if (e != NULL && !e->pending && !e->notifying && e->expires <= gh_loop_now(r->loop)) {
        entry_free(r, e);
        e = NULL;
    }
    if (e != NULL && !e->pending) {
        lru_unlink(r, e);
        lru_front(r, e);
        r->st.hits++;
        answer_of(r, e, port, now);
        return GH_OK;
    }
    q->cb = cb;
    q->arg = arg;
    q->port = port;
    if (e == NULL) {
        struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_flags = ARES_AI_ENVHOSTS};
        if (make_room(r) < 0) {
            now->status = GH_DNS_OVERLOAD;
            return GH_OK;
        }
        e = calloc(1, sizeof(*e));
        if (e == NULL) {
            now->status = GH_DNS_FAILED;
            return GH_OK;
        }
        e->r = r;
        e->hash = h;
        e->pending = 1;
        memcpy(e->name, name, strlen(name) + 1);
        e->hnext = r->buckets[h & (r->nbuckets - 1)];
        r->buckets[h & (r->nbuckets - 1)] = e;
        lru_front(r, e);
        r->entries++;
        r->st.queries++;
        q->entry = e;
        q->next = NULL;
        e->waiters = q;
        r->in_call = 1;
        r->answered_now = 0;
        ares_getaddrinfo(r->ch, e->name, NULL, &hints, on_answer, e);
        r->in_call = 0;
        rearm(r);
        if (r->answered_now) { /* from the hosts file, at once */
            e->waiters = NULL;
            q->entry = NULL;
            answer_of(r, e, port, now);
            if (e->expires <= gh_loop_now(r->loop))
                entry_free(r, e);
            return GH_OK;
        }
        return GH_AGAIN;
    }
    q->entry = e;
    q->next = e->waiters;
    e->waiters = q;
    return GH_AGAIN;
}

void gh_resolve_cancel(gh_dns_query *q)
{
    gh_dns_entry *e = q->entry;
    if (e == NULL)
        return;
    for (gh_dns_query **pp = &e->waiters; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            break;
        }
    q->entry = NULL;
    q->next = NULL;
}

gh_resolver *gh_resolver_new(gh_loop *l, const gh_resolver_opts *o)
{
    static int lib_ready;
    struct ares_options ao;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES, rc;
    gh_resolver *r;
    char lookups[] = "fb"; /* the hosts file, then DNS */

    if (!lib_ready) {
        if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
            gh_log_error("resolver: %s", ares_strerror(rc));
            return NULL;
        }
        lib_ready = 1;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->loop = l;
    r->o = *o;
    if (r->o.cache_max == 0)
        r->o.cache_max = 4096;
    if (r->o.timeout_ms == 0)
        r->o.timeout_ms = 5000;
    if (r->o.min_ttl_ms == 0)
        r->o.min_ttl_ms = 1000;
    if (r->o.max_ttl_ms == 0)
        r->o.max_ttl_ms = 3600 * 1000;
    if (r->o.neg_ttl_ms == 0)
        r->o.neg_ttl_ms = 5000;
    for (r->nbuckets = 64; r->nbuckets < r->o.cache_max; r->nbuckets *= 2)
        ;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    if (r->buckets == NULL) {
        free(r);
        return NULL;
    }
    r->timer.cb = on_timer;
    for (size_t i = 0; i < MAX_SOCKS; i++)
        r->socks[i].io.fd = -1;
    /* c-ares takes another hosts file only from the environment (CARES_HOSTS, with ARES_AI_ENVHOSTS). */
    if (o->hosts_file != NULL)
        setenv("CARES_HOSTS", o->hosts_file, 1);
    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state;
    ao.sock_state_cb_data = r;
    ao.lookups = lookups;
    ao.tries = 2; /* each try gets half of the whole timeout */
    ao.timeout = (int)(r->o.timeout_ms / 2 > 0 ? r->o.timeout_ms / 2 : 1);
    if ((rc = ares_init_options(&r->ch, &ao, mask)) != ARES_SUCCESS) {
        gh_log_error("resolver: %s", ares_strerror(rc));
        free(r->buckets);
        free(r);
        return NULL;
    }
    if (o->servers != NULL && (rc = ares_set_servers_ports_csv(r->ch, o->servers)) != ARES_SUCCESS) {
        gh_log_error("resolver: servers %s: %s", o->servers, ares_strerror(rc));
        gh_resolver_free(r);
        return NULL;
    }
    return r;
}

void gh_resolver_free(gh_resolver *r)
{
    if (r == NULL)
        return;
    ares_destroy(r->ch); /* pending callbacks see ARES_EDESTRUCTION; sock_state unregisters the sockets */
    gh_timer_stop(r->loop, &r->timer);
    while (r->lru_head != NULL)
        entry_free(r, r->lru_head);
    free(r->buckets);
    free(r);
}

void gh_resolver_stats_get(const gh_resolver *r, gh_resolver_stats *s)
{
    *s = r->st;
    s->entries = r->entries;
}
