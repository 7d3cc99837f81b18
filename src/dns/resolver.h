/*
 * resolver: asynchronous name resolution in a worker's loop (c-ares), with a
 * cache that honours the answers' TTLs and is bounded in entries.
 *
 * A worker never blocks on DNS: gh_resolve answers at once from the cache
 * (or for a numeric host), else starts one query per name however many ask
 * for it at the same time (the later ones wait on the first), and calls back
 * from the loop. Answers come in happy-eyeballs order (RFC 8305 4: IPv6 and
 * IPv4 interleaved, IPv6 first), so a caller that connects to them in turn
 * falls back between the families. /etc/hosts is read before DNS (c-ares
 * lookups "fb"); tests point the resolver at a hosts file and a DNS server
 * of their own (opts.hosts_file, opts.servers).
 */
#ifndef GH_DNS_RESOLVER_H
#define GH_DNS_RESOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/loop.h"
#include "net/addr.h"

#define GH_DNS_MAX_ADDRS 16 /* kept per name: more only cost memory, a connect tries a few */
#define GH_DNS_MAX_NAME  253

/* How a resolution ended. */
enum gh_dns_status {
    GH_DNS_OK = 0,
    GH_DNS_NOTFOUND, /* NXDOMAIN or no address of either family */
    GH_DNS_TIMEOUT,  /* no answer within timeout_ms */
    GH_DNS_FAILED,   /* SERVFAIL, refused, malformed: the resolver's fault, not the name's */
    GH_DNS_BADNAME,  /* not a host name (length, characters) */
    GH_DNS_OVERLOAD, /* every cache entry is a query in flight: cache_max names at once */
};

typedef struct gh_resolver_opts {
    const char *servers;    /* "127.0.0.1:5353,[::1]:53"; NULL: /etc/resolv.conf */
    const char *hosts_file; /* NULL: /etc/hosts */
    uint32_t cache_max;     /* names cached (and in flight) at most; 0: 4096 */
    uint32_t timeout_ms;    /* a whole resolution; 0: 5000 */
    uint32_t min_ttl_ms;    /* an answer is kept at least this long (TTL 0, hosts file); 0: 1000 */
    uint32_t max_ttl_ms;    /* and at most this long; 0: 3600000 */
    uint32_t neg_ttl_ms;    /* NOTFOUND is remembered this long; 0: 5000 */
} gh_resolver_opts;

typedef struct gh_resolver gh_resolver;
typedef struct gh_dns_query gh_dns_query;

/* The addresses of a name with the port asked for; valid only during the callback (or until the next call). */
typedef struct gh_dns_answer {
    int status; /* enum gh_dns_status */
    const gh_addr *addrs;
    size_t n;
} gh_dns_answer;

typedef void (*gh_dns_cb)(void *arg, const gh_dns_answer *a);

/* A pending resolution: embedded in its owner, zeroed before first use. */
struct gh_dns_query {
    gh_dns_cb cb;
    void *arg;
    uint16_t port;
    struct gh_dns_entry *entry; /* the name it waits on; NULL when not waiting */
    gh_dns_query *next;         /* the entry's waiters */
};

/* NULL on failure (c-ares could not start: logged). */
gh_resolver *gh_resolver_new(gh_loop *l, const gh_resolver_opts *o);
/* Pending queries are dropped without their callbacks. */
void gh_resolver_free(gh_resolver *r);

/*
 * Resolves host (a name, or a numeric IPv4/IPv6 address without brackets)
 * for port. GH_OK: answered now, in *now (a cache hit, a numeric host, a bad
 * name); the callback is not called. GH_AGAIN: q waits, and q->cb(arg, ...)
 * is called once from the loop. The answer's addresses are copies the
 * caller can keep.
 */
int gh_resolve(gh_resolver *r, const char *host, size_t len, uint16_t port, gh_dns_query *q, gh_dns_cb cb, void *arg,
               gh_dns_answer *now);
/* Stops waiting (the owner goes away): the callback will not be called. The query itself goes on for the cache. */
void gh_resolve_cancel(gh_dns_query *q);

/* For tests and metrics: queries sent to c-ares, and answers taken from the cache. */
typedef struct gh_resolver_stats {
    uint64_t queries, hits, evictions;
    uint32_t entries;
} gh_resolver_stats;
void gh_resolver_stats_get(const gh_resolver *r, gh_resolver_stats *s);

const char *gh_dns_strerror(int status);

#endif
