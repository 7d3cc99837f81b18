#include "conf/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/arena.h"
#include "http/h1.h"

#define MAX_HOST 255 /* RFC 1035: longer names cannot exist, so they match only the default */

/* Open addressing, linear probing; an empty slot has name == NULL. */
typedef struct slot {
    const char *name;
    size_t len;
    const gh_cfg_site *site;
} slot;

typedef struct table {
    slot *slots;
    size_t mask;
} table;

struct gh_router {
    conf__arena *arena;
    table exact;    /* "www.example.com" */
    table wildcard; /* "*.example.com" stored as its suffix ".example.com" */
    const gh_cfg_site *def, *first;
};

/* FNV-1a: short keys, no allocation, good enough spread for host names. */
static uint64_t hash(const char *p, size_t len)
{
    uint64_t h = 14695981039346656037ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static const gh_cfg_site *lookup(const table *t, const char *name, size_t len)
{
    if (t->slots == NULL)
        return NULL;
    for (size_t i = hash(name, len) & t->mask;; i = (i + 1) & t->mask) {
        const slot *s = &t->slots[i];

        if (s->name == NULL)
            return NULL;
        if (s->len == len && memcmp(s->name, name, len) == 0)
            return s->site;
    }
}

/* The first site to claim a name keeps it; the loader has already refused duplicates per listener. */
static void insert(table *t, const char *name, size_t len, const gh_cfg_site *site)
{
    size_t i = hash(name, len) & t->mask;

    for (; t->slots[i].name != NULL; i = (i + 1) & t->mask)
        if (t->slots[i].len == len && memcmp(t->slots[i].name, name, len) == 0)
            return;
    t->slots[i] = (slot){name, len, site};
}

/* A table at most half full, so probes stay short and always meet an empty slot. */
static int table_init(conf__arena *a, table *t, size_t n)
{
    size_t size = 4;

    while (size < 2 * n)
        size *= 2;
    t->slots = conf__arena_array(a, size, sizeof(slot));
    t->mask = size - 1;
    return t->slots != NULL ? 0 : -1;
}

static int serves(const gh_cfg_site *s, size_t listener)
{
    for (size_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i] == listener)
            return 1;
    return 0;
}

static void count_names(const gh_config *cfg, size_t listener, size_t *exact, size_t *wild)
{
    *exact = *wild = 0;
    for (size_t i = 0; i < cfg->nsites; i++) {
        if (!serves(&cfg->sites[i], listener))
            continue;
        for (size_t k = 0; k < cfg->sites[i].nnames; k++) {
            if (cfg->sites[i].names[k].p[0] == '*')
                (*wild)++;
            else
                (*exact)++;
        }
    }
}

static void add_site(gh_router *r, const gh_cfg_site *s)
{
    if (r->first == NULL)
        r->first = s;
    if (s->is_default && r->def == NULL)
        r->def = s;
    for (size_t k = 0; k < s->nnames; k++) {
        const gh_cstr *n = &s->names[k];

        if (n->p[0] == '*')
            insert(&r->wildcard, n->p + 1, n->len - 1, s);
        else
            insert(&r->exact, n->p, n->len, s);
    }
}

gh_router *gh_router_new(const gh_config *cfg, size_t listener)
{
    conf__arena *a = conf__arena_new();
    gh_router *r = a != NULL ? conf__arena_alloc(a, sizeof(*r)) : NULL;
    size_t nexact, nwild;

    if (r == NULL)
        goto fail;
    r->arena = a;
    count_names(cfg, listener, &nexact, &nwild);
    if (table_init(a, &r->exact, nexact) < 0 || table_init(a, &r->wildcard, nwild) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->nsites; i++)
        if (serves(&cfg->sites[i], listener))
            add_site(r, &cfg->sites[i]);
    return r;
fail:
    conf__arena_free(a);
    return NULL;
}

void gh_router_free(gh_router *r)
{
    if (r != NULL)
        conf__arena_free(r->arena); /* r lives in its own arena */
}

/*
 * Host without port and trailing dot, lower case, into buf. Returns its
 * length, or -1 when it cannot be a name we hold (empty, too long).
 */
static int normalize_host(const char *host, size_t len, char *buf)
{
    size_t n = len;

    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);

        n = close != NULL ? (size_t)(close - host) + 1 : len;
    } else {
        const char *colon = memchr(host, ':', len);

        if (colon != NULL)
            n = (size_t)(colon - host);
    }
    if (n > 0 && host[n - 1] == '.')
        n--;
    if (n == 0 || n > MAX_HOST)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)host[i];

        buf[i] = (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    }
    return (int)n;
}

/* Exact, then wildcards from the most specific suffix to the least; NULL when none. */
static const gh_cfg_site *match_name(const gh_router *r, const char *host, size_t len)
{
    char buf[MAX_HOST];
    const gh_cfg_site *s;
    int n = normalize_host(host, len, buf);

    if (n < 0)
        return NULL;
    if ((s = lookup(&r->exact, buf, (size_t)n)) != NULL)
        return s;
    for (int i = 1; i < n; i++)
        if (buf[i] == '.' && (s = lookup(&r->wildcard, buf + i, (size_t)(n - i))) != NULL)
            return s;
    return NULL;
}

const gh_cfg_site *gh_router_site(const gh_router *r, const char *host, size_t len)
{
    const gh_cfg_site *s = match_name(r, host, len);

    return s != NULL ? s : r->def;
}

const gh_cfg_site *gh_router_sni(const gh_router *r, const char *name, size_t len)
{
    const gh_cfg_site *s = name != NULL ? match_name(r, name, len) : NULL;

    if (s == NULL)
        s = r->def;
    return s != NULL ? s : r->first;
}

static int prefix_matches(const gh_cstr *prefix, const char *path, size_t len)
{
    if (len < prefix->len || memcmp(path, prefix->p, prefix->len) != 0)
        return 0;
    return prefix->p[prefix->len - 1] == '/' || len == prefix->len || path[prefix->len] == '/';
}

static int method_matches(const gh_cfg_route *r, const gh_route_request *req)
{
    if (r->nmethods == 0)
        return 1;
    for (size_t i = 0; i < r->nmethods; i++)
        if (r->methods[i].len == req->method_len && memcmp(r->methods[i].p, req->method, req->method_len) == 0)
            return 1;
    return 0;
}

static int headers_match(const gh_cfg_route *r, const gh_route_request *req)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const gh_cfg_header_match *h = &r->headers[i];

        if (req->has_header == NULL ||
            !req->has_header(req->header_ctx, h->name.p, h->name.len, h->value.p, h->value.len))
            return 0;
    }
    return 1;
}

const gh_cfg_route *gh_router_route(const gh_cfg_site *site, const gh_route_request *req)
{
    const char *q = memchr(req->path, '?', req->path_len);
    size_t len = q != NULL ? (size_t)(q - req->path) : req->path_len;

    /* Routes are sorted longest prefix first (validate.c), so the first that holds is the answer. */
    for (size_t i = 0; i < site->nroutes; i++) {
        const gh_cfg_route *r = &site->routes[i];

        if (prefix_matches(&r->prefix, req->path, len) && method_matches(r, req) && headers_match(r, req))
            return r;
    }
    return NULL;
}

int gh_router_h1_has_header(const void *ctx, const char *name, size_t name_len, const char *value, size_t value_len)
{
    const gh_h1_request *req = ctx;

    for (size_t i = 0; i < req->nheaders; i++) {
        const gh_h1_header *h = &req->headers[i];

        if (h->name.len == name_len && strncasecmp(h->name.p, name, name_len) == 0 && h->value.len == value_len &&
            memcmp(h->value.p, value, value_len) == 0)
            return 1;
    }
    return 0;
}
