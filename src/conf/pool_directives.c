/*
 * pool_directives: `pool NAME { }` and what it holds: servers, the balancing
 * algorithm, active health checks and passive ejection (src/health runs them).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

#include "conf/directives.h"
#include "conf/units.h"

#define ARG(i) (&d->args[(i)])

int conf__d_pool(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_pool *pool;
    const conf__arg *name = ARG(0);
    int rc;

    for (size_t i = 0; i < name->len; i++)
        if (!conf__is_name_char((unsigned char)name->p[i]))
            return conf__bad_value(p, d->line, "pool name", name, "use letters, digits, '-', '_' and '.'");
    if (name->len == 0)
        return conf__bad_value(p, d->line, "pool name", name, "empty");
    for (size_t i = 0; i < c->npools; i++)
        if (conf__arg_is(name, c->pools[i].name.p))
            return conf__fail(p, NULL, d->line, "duplicate pool \"%s\" (first at %s:%d)", c->pools[i].name.p,
                              c->pools[i].where.file, c->pools[i].where.line);
    pool = conf__arena_push(p->a, (void **)&c->pools, &c->npools, &p->cap_pools, sizeof(*pool));
    if (pool == NULL)
        return conf__oom(p, d->line);
    if (conf__dup_arg(p, d->line, name, &pool->name) < 0)
        return -1;
    pool->index = c->npools - 1;
    pool->balance = GH_BALANCE_ROUND_ROBIN;
    pool->where = (gh_cfg_where){p->file, d->line};
    p->pool = pool;
    p->cap_servers = 0;
    rc = conf__parse_nested(p, CONF__CTX_POOL, d->line);
    p->pool = NULL;
    return rc;
}

/* A host name as DNS allows it (letters, digits, '-', '.', and '_' seen in service names). */
static int is_host_name(const char *s, size_t len)
{
    int letters = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!conf__is_name_char(c))
            return 0;
        letters |= isalpha(c) || c == '-' || c == '_';
    }
    /* All digits and dots is an IPv4 address that inet_pton refused ("1.2.3", "256.0.0.1"): not a name. */
    return letters;
}

static int addr_is_unspecified(const gh_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

/* Splits "host:port" or "[v6]:port"; host excludes the brackets. */
static int split_server(const char *text, size_t len, size_t *hoff, size_t *hlen, size_t *poff)
{
    const char *colon;

    if (len > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', len);

        if (close == NULL || (size_t)(close - text) + 1 >= len || close[1] != ':')
            return -1;
        *hoff = 1;
        *hlen = (size_t)(close - text) - 1;
        *poff = (size_t)(close - text) + 2;
        return 0;
    }
    colon = memchr(text, ':', len);
    if (colon == NULL || memchr(colon + 1, ':', len - (size_t)(colon - text) - 1) != NULL)
        return -1;
    *hoff = 0;
    *hlen = (size_t)(colon - text);
    *poff = *hlen + 1;
    return 0;
}

#define SERVER_SYNTAX "expected host:port (127.0.0.1:8080, [::1]:8080, app.internal:8080)"

static int server_addr(conf__parser *p, int line, const conf__arg *arg, gh_cfg_server *s)
{
    size_t hoff, hlen, poff;
    uint64_t port;
    char text[300];
    gh_addr a;

    if (arg->len == 0 || arg->len >= sizeof(text) || split_server(arg->p, arg->len, &hoff, &hlen, &poff) < 0 ||
        hlen == 0)
        return conf__bad_value(p, line, "server address", arg, SERVER_SYNTAX);
    if (gh_conf_parse_uint(arg->p + poff, arg->len - poff, 1, 65535, &port) < 0)
        return conf__bad_value(p, line, "server address", arg, "the port must be a number from 1 to 65535");
    memcpy(text, arg->p, arg->len);
    text[arg->len] = '\0';
    if (gh_addr_parse(&a, text) == 0) {
        if (addr_is_unspecified(&a))
            return conf__bad_value(p, line, "server address", arg, "0.0.0.0 and [::] are not server addresses");
        s->addrs = conf__arena_alloc(p->a, sizeof(gh_addr));
        if (s->addrs == NULL)
            return conf__oom(p, line);
        s->addrs[0] = a;
        s->naddrs = 1;
    } else if (hoff == 1 || !is_host_name(arg->p, hlen)) {
        return conf__bad_value(p, line, "server address", arg, SERVER_SYNTAX);
    }
    s->port = (uint16_t)port;
    s->host.p = conf__arena_strndup(p->a, arg->p + hoff, hlen);
    s->host.len = hlen;
    return s->host.p == NULL ? conf__oom(p, line) : conf__dup_arg(p, line, arg, &s->text);
}

/* Balancer entries the pool's servers take so far: one per address a server may have. */
static size_t pool_slots(const gh_cfg_pool *pool)
{
    size_t n = 0;

    for (size_t i = 0; i < pool->nservers; i++)
        n += pool->servers[i].nslots;
    return n;
}

static int d_server(conf__parser *p, const conf__directive *d)
{
    gh_cfg_pool *pool = p->pool;
    gh_cfg_server *s;
    uint64_t w;
    int max_addrs = 0;

    if (pool->nservers == GH_LB_MAX_SERVERS)
        return conf__fail(p, NULL, d->line, "too many servers in pool \"%s\" (at most %d)", pool->name.p,
                          GH_LB_MAX_SERVERS);
    s = conf__arena_push(p->a, (void **)&pool->servers, &pool->nservers, &p->cap_servers, sizeof(*s));
    if (s == NULL)
        return conf__oom(p, d->line);
    s->weight = 1;
    s->where = (gh_cfg_where){p->file, d->line};
    if (server_addr(p, d->line, ARG(0), s) < 0)
        return -1;
    s->nslots = s->naddrs > 0 ? 1 : GH_CFG_NAME_SLOTS; /* numeric: its one address; a name: room for several */
    for (size_t i = 1; i < d->nargs; i++) {
        const char *v;
        size_t vlen;

        if (conf__arg_is(ARG(i), "backup") && !s->backup) {
            s->backup = 1;
        } else if ((v = conf__option_value(ARG(i), "weight", &vlen)) != NULL) {
            if (conf__uint_arg(p, d->line, "weight", v, vlen, 1, GH_LB_MAX_WEIGHT, &w) < 0)
                return -1;
            s->weight = (uint32_t)w;
        } else if ((v = conf__option_value(ARG(i), "max_addrs", &vlen)) != NULL && !max_addrs) {
            if (s->naddrs > 0)
                return conf__fail(p, NULL, d->line, "max_addrs is for a server given by name, not %s", s->text.p);
            if (conf__uint_arg(p, d->line, "max_addrs", v, vlen, 1, GH_CFG_MAX_NAME_ADDRS, &w) < 0)
                return -1;
            s->nslots = (uint32_t)w;
            max_addrs = 1;
        } else {
            return conf__bad_value(p, d->line, "server option", ARG(i), "expected weight=N, max_addrs=N or backup");
        }
    }
    /* Every address is a balancer entry, and balancers take 64-bit masks. */
    if (pool_slots(pool) > GH_LB_MAX_SERVERS)
        return conf__fail(p, NULL, d->line,
                          "too many servers in pool \"%s\" (at most %d; a server given by name counts as its "
                          "max_addrs, %d unless set)",
                          pool->name.p, GH_LB_MAX_SERVERS, GH_CFG_NAME_SLOTS);
    return 0;
}

static int d_balance(conf__parser *p, const conf__directive *d)
{
    gh_cfg_pool *pool = p->pool;
    int a = gh_lb_algorithm_parse(ARG(0)->p, ARG(0)->len);

    if (a >= 0 && a != GH_LB_HASH) {
        if (d->nargs != 1)
            return conf__fail(p, NULL, d->line, "balance %s takes no further argument", gh_lb_algorithm_name(a));
        pool->balance = a; /* enum gh_cfg_balance has the balancer's values */
        return 0;
    }
    if (a != GH_LB_HASH)
        return conf__bad_value(
            p, d->line, "balance", ARG(0),
            "expected round_robin, least_conn, p2c, random or hash (ip | header NAME | cookie NAME)");
    pool->balance = GH_BALANCE_HASH;
    if (d->nargs == 2 && conf__arg_is(ARG(1), "ip")) {
        pool->hash_key = GH_HASH_IP;
        return 0;
    }
    if (d->nargs >= 2 && (conf__arg_is(ARG(1), "header") || conf__arg_is(ARG(1), "cookie"))) {
        pool->hash_key = conf__arg_is(ARG(1), "header") ? GH_HASH_HEADER : GH_HASH_COOKIE;
        if (d->nargs != 3 || !conf__is_token(ARG(2)->p, ARG(2)->len))
            return conf__fail(p, NULL, d->line, "balance hash %.*s needs a %s name", (int)ARG(1)->len, ARG(1)->p,
                              pool->hash_key == GH_HASH_HEADER ? "header" : "cookie");
        return conf__dup_arg(p, d->line, ARG(2), &pool->hash_name);
    }
    return conf__fail(p, NULL, d->line, "balance hash needs a key: ip, header NAME or cookie NAME");
}

/* status=200 or status=200-399 */
static int status_range(conf__parser *p, int line, const char *v, size_t len, gh_cfg_health *h)
{
    const char *dash = memchr(v, '-', len);
    uint64_t lo, hi;
    size_t lo_len = dash != NULL ? (size_t)(dash - v) : len;

    if (gh_conf_parse_uint(v, lo_len, 100, 599, &lo) < 0 ||
        (dash != NULL && gh_conf_parse_uint(dash + 1, len - lo_len - 1, 100, 599, &hi) < 0) ||
        (dash != NULL && hi < lo))
        return conf__fail(p, NULL, line, "invalid status range \"%.*s\": expected 200 or 200-399", (int)len, v);
    h->status_min = (uint16_t)lo;
    h->status_max = (uint16_t)(dash != NULL ? hi : lo);
    return 0;
}

/* The options of every health check; health_option adds the HTTP ones. */
static const conf__option health_options[] = {
    {"interval", CONF__DURATION(gh_cfg_health, interval)},
    {"timeout", CONF__DURATION(gh_cfg_health, timeout)},
    {"rise", CONF__SLOT(conf__set_count, gh_cfg_health, rise, uint32_t, 1, 1000, "count")},
    {"fall", CONF__SLOT(conf__set_count, gh_cfg_health, fall, uint32_t, 1, 1000, "count")},
    /* Another port than the traffic's: Patroni answers /primary on its REST API, not on PostgreSQL's port. */
    {"port", CONF__SLOT(conf__set_count, gh_cfg_health, port, uint32_t, 1, 65535, "port")},
    {NULL, {0}},
};

static int health_option(conf__parser *p, int line, const conf__arg *a, gh_cfg_health *h)
{
    const char *v;
    size_t n;
    int rc = conf__set_option(p, line, health_options, a, h);

    if (rc <= 0)
        return rc;
    if (h->type == GH_HEALTH_HTTP && (v = conf__option_value(a, "status", &n)) != NULL)
        return status_range(p, line, v, n, h);
    if (h->type == GH_HEALTH_HTTP && (v = conf__option_value(a, "host", &n)) != NULL) {
        if (n == 0 || !conf__is_field_text(v, n, 0))
            return conf__bad_value(p, line, "health host", a, "expected a host name");
        h->host.p = conf__arena_strndup(p->a, v, n);
        h->host.len = n;
        return h->host.p == NULL ? conf__oom(p, line) : 0;
    }
    if (h->type == GH_HEALTH_HTTP && a->len > 0 && a->p[0] == '/' && h->path.len == 0 &&
        conf__is_field_text(a->p, a->len, 0))
        return conf__dup_arg(p, line, a, &h->path);
    if (h->type == GH_HEALTH_HTTP && h->method.len == 0 && h->path.len == 0 && conf__is_token(a->p, a->len))
        return conf__dup_arg(p, line, a, &h->method);
    return conf__bad_value(p, line, "health option", a,
                           h->type == GH_HEALTH_HTTP
                               ? "expected [METHOD] [PATH] status= interval= timeout= rise= fall= host= port="
                               : "expected interval= timeout= rise= fall= port=");
}

static int d_health(conf__parser *p, const conf__directive *d)
{
    gh_cfg_health *h = &p->pool->health;

    memset(h, 0, sizeof(*h));
    if (conf__arg_is(ARG(0), "off")) {
        if (d->nargs != 1)
            return conf__fail(p, NULL, d->line, "health off takes no further argument");
        return 0;
    }
    if (conf__arg_is(ARG(0), "http"))
        h->type = GH_HEALTH_HTTP;
    else if (conf__arg_is(ARG(0), "tcp"))
        h->type = GH_HEALTH_TCP;
    else if (conf__arg_is(ARG(0), "postgres"))
        h->type = GH_HEALTH_POSTGRES;
    else if (conf__arg_is(ARG(0), "redis"))
        h->type = GH_HEALTH_REDIS;
    else
        return conf__bad_value(p, d->line, "health check", ARG(0), "expected http, tcp, postgres, redis or off");
    *h = (gh_cfg_health){h->type, {"", 0}, {"", 0}, {"", 0}, 200, 399, 5000, 2000, 2, 3, 0};
    for (size_t i = 1; i < d->nargs; i++)
        if (health_option(p, d->line, ARG(i), h) < 0)
            return -1;
    if (h->type == GH_HEALTH_HTTP && h->method.len == 0)
        h->method = (gh_cstr){"GET", 3};
    if (h->type == GH_HEALTH_HTTP && h->path.len == 0)
        h->path = (gh_cstr){"/", 1};
    if (h->timeout >= h->interval)
        return conf__fail(p, NULL, d->line, "the health check timeout must be shorter than its interval");
    return 0;
}

static const conf__option passive_options[] = {
    {"fails", CONF__COUNT(gh_cfg_passive, fails, 1, 1000)},
    {"window", CONF__DURATION(gh_cfg_passive, window)},
    {"eject", CONF__DURATION(gh_cfg_passive, eject)},
    {NULL, {0}},
};

/*
 * passive status=502-504,429 or status=none: which response statuses count as
 * failures (the same N or N-M form as health status=, several joined by ',').
 */
static int passive_statuses(conf__parser *p, int line, const char *v, size_t len, gh_cfg_passive *ps)
{
    memset(ps->statuses, 0, sizeof(ps->statuses));
    if (len == 4 && memcmp(v, "none", 4) == 0)
        return 0;
    for (size_t at = 0; at <= len;) {
        const char *item = v + at, *comma = memchr(item, ',', len - at), *dash;
        size_t n = comma != NULL ? (size_t)(comma - item) : len - at, lo_len;
        uint64_t lo, hi;

        dash = memchr(item, '-', n);
        lo_len = dash != NULL ? (size_t)(dash - item) : n;
        if (gh_conf_parse_uint(item, lo_len, GH_CFG_STATUS_MIN, GH_CFG_STATUS_MAX, &lo) < 0 ||
            (dash != NULL &&
             gh_conf_parse_uint(dash + 1, n - lo_len - 1, GH_CFG_STATUS_MIN, GH_CFG_STATUS_MAX, &hi) < 0) ||
            (dash != NULL && hi < lo))
            return conf__fail(p, NULL, line, "invalid status list \"%.*s\": expected e.g. 502-504, 500-504,429 or none",
                              (int)len, v);
        gh_cfg_passive_add_statuses(ps, (int)lo, (int)(dash != NULL ? hi : lo));
        at += n + 1;
    }
    return 0;
}

static int d_passive(conf__parser *p, const conf__directive *d)
{
    gh_cfg_passive *ps = &p->pool->passive;

    if (d->nargs == 1 && conf__arg_is(ARG(0), "off")) {
        ps->fails = 0;
        return 0;
    }
    *ps = (gh_cfg_passive){3, 10000, 30000, {0}};
    gh_cfg_passive_add_statuses(ps, 502, 504);
    for (size_t i = 0; i < d->nargs; i++) {
        const char *v;
        size_t n;
        int rc = conf__set_option(p, d->line, passive_options, ARG(i), ps);

        if (rc < 0)
            return -1;
        if (rc > 0 && (v = conf__option_value(ARG(i), "status", &n)) != NULL) {
            if (passive_statuses(p, d->line, v, n, ps) < 0)
                return -1;
        } else if (rc > 0) {
            return conf__bad_value(p, d->line, "passive option", ARG(i),
                                   "expected fails=N window=DURATION eject=DURATION status=LIST");
        }
    }
    return 0;
}

/* `proxy_protocol v1|v2 [check]`, or off. */
static int d_proxy_protocol(conf__parser *p, const conf__directive *d)
{
    gh_cfg_pool *pool = p->pool;

    if (d->nargs == 1 && conf__arg_is(ARG(0), "off")) {
        pool->proxy_protocol = pool->proxy_protocol_check = 0;
        return 0;
    }
    if (conf__arg_is(ARG(0), "v1"))
        pool->proxy_protocol = 1;
    else if (conf__arg_is(ARG(0), "v2"))
        pool->proxy_protocol = 2;
    else
        return conf__bad_value(p, d->line, "proxy_protocol version", ARG(0), "expected v1, v2 or off");
    if (d->nargs == 2 && !conf__arg_is(ARG(1), "check"))
        return conf__bad_value(p, d->line, "proxy_protocol option", ARG(1),
                               "expected check (health checks send a header too)");
    pool->proxy_protocol_check = d->nargs == 2;
    return 0;
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__pool_directives[] = {
    {"server", CONF__CTX_POOL, 1, 4, 0, 1, d_server, "server HOST:PORT [weight=N] [max_addrs=N] [backup]"},
    {"balance", CONF__CTX_POOL, 1, 3, 0, 0, d_balance,
     "balance round_robin|least_conn|p2c|random|hash ip|hash header NAME|hash cookie NAME"},
    {"health", CONF__CTX_POOL, 1, 9, 0, 0, d_health,
     "health http [METHOD] [PATH] [status=200-399] [interval=5s] [timeout=2s] [rise=2] [fall=3] [host=NAME] | "
     "health tcp|postgres|redis [...] | health off (each takes port=N)"},
    {"passive", CONF__CTX_POOL, 0, 4, 0, 0, d_passive,
     "passive [fails=3] [window=10s] [eject=30s] [status=502-504] | passive off"},
    {"proxy_protocol", CONF__CTX_POOL, 1, 2, 0, 0, d_proxy_protocol,
     "proxy_protocol v1|v2 [check] | proxy_protocol off"},
    {NULL},
};
CONF__TABLE_END
