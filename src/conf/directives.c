/*
 * directives: one handler per directive, each checking its own arguments and
 * filling the object of the block it is in (p->pool, p->site, p->route).
 * Checks that need the whole file (references, listeners per site) are in
 * validate.c. docs/config.md documents every directive listed here.
 */
#include "conf/directives.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/units.h"
#include "core/log.h"

#define ARG(i) (&d->args[(i)])

/* ---- small helpers ---------------------------------------------------------------------------- */

static int oom(conf__parser *p, int line)
{
    return conf__fail(p, NULL, line, "out of memory");
}

static int arg_is(const conf__arg *a, const char *lit)
{
    return a->len == strlen(lit) && memcmp(a->p, lit, a->len) == 0;
}

static int dup_arg(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    char *s = conf__arena_strndup(p->a, a->p, a->len);

    if (s == NULL)
        return oom(p, line);
    out->p = s;
    out->len = a->len;
    return 0;
}

/* "key=value": the value when a starts with key=, else NULL. */
static const char *option_value(const conf__arg *a, const char *key, size_t *vlen)
{
    size_t k = strlen(key);

    if (a->len <= k || memcmp(a->p, key, k) != 0 || a->p[k] != '=')
        return NULL;
    *vlen = a->len - k - 1;
    return a->p + k + 1;
}

/* RFC 9110 token characters: header names and methods. */
static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Printable text and tabs only: what may be written into a header value or a Location. */
static int is_field_text(const char *s, size_t len, int allow_space)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f || (!allow_space && (c == ' ' || c == '\t')))
            return 0;
    }
    return 1;
}

static int bad_value(conf__parser *p, int line, const char *what, const conf__arg *a, const char *why)
{
    return conf__fail(p, NULL, line, "invalid %s \"%.*s\": %s", what, (int)a->len, a->p, why);
}

static int duration_arg(conf__parser *p, int line, const char *what, const char *s, size_t len, uint32_t *ms)
{
    const char *why;

    if (gh_conf_parse_duration(s, len, ms, &why) < 0)
        return conf__fail(p, NULL, line, "invalid %s \"%.*s\": %s", what, (int)len, s, why);
    return 0;
}

static int uint_arg(conf__parser *p, int line, const char *what, const char *s, size_t len, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    if (gh_conf_parse_uint(s, len, min, max, out) < 0)
        return conf__fail(p, NULL, line, "invalid %s \"%.*s\": expected a number from %llu to %llu", what, (int)len, s,
                          (unsigned long long)min, (unsigned long long)max);
    return 0;
}

/* "off" or a size. */
static int max_body_arg(conf__parser *p, int line, const conf__arg *a, uint64_t *out)
{
    const char *why;

    if (arg_is(a, "off")) {
        *out = GH_CFG_NO_LIMIT;
        return 0;
    }
    if (gh_conf_parse_size(a->p, a->len, out, &why) < 0)
        return bad_value(p, line, "size", a, why);
    return 0;
}

static int status_arg(conf__parser *p, int line, const conf__arg *a, int min, int max, int *status)
{
    uint64_t v;

    if (gh_conf_parse_uint(a->p, a->len, (uint64_t)min, (uint64_t)max, &v) < 0)
        return conf__fail(p, NULL, line, "invalid status \"%.*s\": expected %d to %d", (int)a->len, a->p, min, max);
    *status = (int)v;
    return 0;
}

/* ---- main context ----------------------------------------------------------------------------- */

static int d_workers(conf__parser *p, const conf__directive *d)
{
    uint64_t v;
    long cores;

    if (arg_is(ARG(0), "auto")) {
        cores = sysconf(_SC_NPROCESSORS_ONLN);
        p->cfg->workers = cores >= 1 && cores <= GH_CFG_MAX_WORKERS ? (int)cores : 1;
        return 0;
    }
    if (uint_arg(p, d->line, "worker count", ARG(0)->p, ARG(0)->len, 1, GH_CFG_MAX_WORKERS, &v) < 0)
        return -1;
    p->cfg->workers = (int)v;
    return 0;
}

static int d_log_level(conf__parser *p, const conf__directive *d)
{
    char level[16];
    int v = -1;

    if (ARG(0)->len < sizeof(level)) {
        memcpy(level, ARG(0)->p, ARG(0)->len);
        level[ARG(0)->len] = '\0';
        v = gh_log_level_parse(level);
    }
    if (v < 0)
        return bad_value(p, d->line, "log level", ARG(0), "expected error, warn, info or debug");
    p->cfg->log_level = v;
    return 0;
}

static int d_access_log(conf__parser *p, const conf__directive *d)
{
    gh_cstr path;

    if (ARG(0)->len == 0)
        return bad_value(p, d->line, "access log", ARG(0), "expected a path, - or off");
    if (arg_is(ARG(0), "off")) {
        p->cfg->access_log = NULL;
        return 0;
    }
    if (arg_is(ARG(0), "-")) {
        p->cfg->access_log = "-";
        return 0;
    }
    if (conf__relative_path(p, ARG(0)->p, ARG(0)->len, &path) < 0)
        return -1;
    p->cfg->access_log = path.p;
    return 0;
}

static int d_max_body(conf__parser *p, const conf__directive *d)
{
    if (p->route == NULL)
        return max_body_arg(p, d->line, ARG(0), &p->cfg->max_body);
    p->route->set |= GH_ROUTE_SET_MAX_BODY;
    return max_body_arg(p, d->line, ARG(0), &p->route->max_body);
}

static int d_timeouts(conf__parser *p, const conf__directive *d)
{
    return conf__parse_nested(p, CONF__CTX_TIMEOUTS, d->line);
}

/* `NAME DURATION` in `timeouts { }`: one row of GH_CFG_TIMEOUTS (the table below has one per timeout). */
static int d_timeout_value(conf__parser *p, const conf__directive *d)
{
    const gh_cfg_timeout *t = gh_cfg_timeout_find(d->name.p, d->name.len);

    return duration_arg(p, d->line, "duration", ARG(0)->p, ARG(0)->len, gh_cfg_timeout_field(&p->cfg->timeouts, t));
}

/* A numeric listen address into a, with a message naming the directive. */
static int listen_addr(conf__parser *p, int line, const conf__arg *arg, gh_addr *a)
{
    char text[128];

    if (arg->len == 0 || arg->len >= sizeof(text))
        return bad_value(p, line, "listen address", arg, "expected a numeric host:port such as 0.0.0.0:443");
    memcpy(text, arg->p, arg->len);
    text[arg->len] = '\0';
    if (gh_addr_parse(a, text) < 0)
        return bad_value(p, line, "listen address", arg,
                         "expected a numeric host:port such as 0.0.0.0:443 or [::]:443");
    return 0;
}

static int d_listen(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_listener *l;
    gh_addr a;

    if (listen_addr(p, d->line, ARG(0), &a) < 0)
        return -1;
    if (d->nargs == 2 && !arg_is(ARG(1), "tls"))
        return bad_value(p, d->line, "listen option", ARG(1), "expected tls (or nothing, for plain HTTP)");
    for (size_t i = 0; i < c->nlisteners; i++)
        if (strcmp(c->listeners[i].addr.text, a.text) == 0)
            return conf__fail(p, NULL, d->line, "duplicate listener %s (first at %s:%d)", a.text,
                              c->listeners[i].where.file, c->listeners[i].where.line);
    l = conf__arena_push(p->a, (void **)&c->listeners, &c->nlisteners, &p->cap_listeners, sizeof(*l));
    if (l == NULL)
        return oom(p, d->line);
    l->addr = a;
    l->tls = d->nargs == 2;
    l->where = (gh_cfg_where){p->file, d->line};
    return 0;
}

/* ---- pools ------------------------------------------------------------------------------------ */

static int is_name_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.';
}

static int d_pool(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_pool *pool;
    const conf__arg *name = ARG(0);
    int rc;

    for (size_t i = 0; i < name->len; i++)
        if (!is_name_char((unsigned char)name->p[i]))
            return bad_value(p, d->line, "pool name", name, "use letters, digits, '-', '_' and '.'");
    if (name->len == 0)
        return bad_value(p, d->line, "pool name", name, "empty");
    for (size_t i = 0; i < c->npools; i++)
        if (arg_is(name, c->pools[i].name.p))
            return conf__fail(p, NULL, d->line, "duplicate pool \"%s\" (first at %s:%d)", c->pools[i].name.p,
                              c->pools[i].where.file, c->pools[i].where.line);
    pool = conf__arena_push(p->a, (void **)&c->pools, &c->npools, &p->cap_pools, sizeof(*pool));
    if (pool == NULL)
        return oom(p, d->line);
    if (dup_arg(p, d->line, name, &pool->name) < 0)
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

        if (!is_name_char(c))
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
        return bad_value(p, line, "server address", arg, SERVER_SYNTAX);
    if (gh_conf_parse_uint(arg->p + poff, arg->len - poff, 1, 65535, &port) < 0)
        return bad_value(p, line, "server address", arg, "the port must be a number from 1 to 65535");
    memcpy(text, arg->p, arg->len);
    text[arg->len] = '\0';
    if (gh_addr_parse(&a, text) == 0) {
        if (addr_is_unspecified(&a))
            return bad_value(p, line, "server address", arg, "0.0.0.0 and [::] are not server addresses");
        s->addrs = conf__arena_alloc(p->a, sizeof(gh_addr));
        if (s->addrs == NULL)
            return oom(p, line);
        s->addrs[0] = a;
        s->naddrs = 1;
    } else if (hoff == 1 || !is_host_name(arg->p, hlen)) {
        return bad_value(p, line, "server address", arg, SERVER_SYNTAX);
    }
    s->port = (uint16_t)port;
    s->host.p = conf__arena_strndup(p->a, arg->p + hoff, hlen);
    s->host.len = hlen;
    return s->host.p == NULL ? oom(p, line) : dup_arg(p, line, arg, &s->text);
}

static int d_server(conf__parser *p, const conf__directive *d)
{
    gh_cfg_pool *pool = p->pool;
    gh_cfg_server *s;
    uint64_t w;

    if (pool->nservers == GH_LB_MAX_SERVERS)
        return conf__fail(p, NULL, d->line, "too many servers in pool \"%s\" (at most %d)", pool->name.p,
                          GH_LB_MAX_SERVERS);
    s = conf__arena_push(p->a, (void **)&pool->servers, &pool->nservers, &p->cap_servers, sizeof(*s));
    if (s == NULL)
        return oom(p, d->line);
    s->weight = 1;
    s->where = (gh_cfg_where){p->file, d->line};
    if (server_addr(p, d->line, ARG(0), s) < 0)
        return -1;
    for (size_t i = 1; i < d->nargs; i++) {
        const char *v;
        size_t vlen;

        if (arg_is(ARG(i), "backup") && !s->backup) {
            s->backup = 1;
        } else if ((v = option_value(ARG(i), "weight", &vlen)) != NULL) {
            if (uint_arg(p, d->line, "weight", v, vlen, 1, GH_LB_MAX_WEIGHT, &w) < 0)
                return -1;
            s->weight = (uint32_t)w;
        } else {
            return bad_value(p, d->line, "server option", ARG(i), "expected weight=N or backup");
        }
    }
    return 0;
}

static int d_balance(conf__parser *p, const conf__directive *d)
{
    static const char *const names[] = {"round_robin", "least_conn", "p2c", "random"};
    gh_cfg_pool *pool = p->pool;

    for (int i = 0; i < 4; i++) {
        if (arg_is(ARG(0), names[i])) {
            if (d->nargs != 1)
                return conf__fail(p, NULL, d->line, "balance %s takes no further argument", names[i]);
            pool->balance = i; /* the order of enum gh_cfg_balance */
            return 0;
        }
    }
    if (!arg_is(ARG(0), "hash"))
        return bad_value(p, d->line, "balance", ARG(0),
                         "expected round_robin, least_conn, p2c, random or hash (ip | header NAME | cookie NAME)");
    pool->balance = GH_BALANCE_HASH;
    if (d->nargs == 2 && arg_is(ARG(1), "ip")) {
        pool->hash_key = GH_HASH_IP;
        return 0;
    }
    if (d->nargs >= 2 && (arg_is(ARG(1), "header") || arg_is(ARG(1), "cookie"))) {
        pool->hash_key = arg_is(ARG(1), "header") ? GH_HASH_HEADER : GH_HASH_COOKIE;
        if (d->nargs != 3 || !is_token(ARG(2)->p, ARG(2)->len))
            return conf__fail(p, NULL, d->line, "balance hash %.*s needs a %s name", (int)ARG(1)->len, ARG(1)->p,
                              pool->hash_key == GH_HASH_HEADER ? "header" : "cookie");
        return dup_arg(p, d->line, ARG(2), &pool->hash_name);
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

static int health_option(conf__parser *p, int line, const conf__arg *a, gh_cfg_health *h)
{
    const char *v;
    size_t n;
    uint64_t u;

    if ((v = option_value(a, "interval", &n)) != NULL)
        return duration_arg(p, line, "interval", v, n, &h->interval);
    if ((v = option_value(a, "timeout", &n)) != NULL)
        return duration_arg(p, line, "timeout", v, n, &h->timeout);
    if ((v = option_value(a, "rise", &n)) != NULL || (v = option_value(a, "fall", &n)) != NULL) {
        if (uint_arg(p, line, "count", v, n, 1, 1000, &u) < 0)
            return -1;
        *(a->p[0] == 'r' ? &h->rise : &h->fall) = (uint32_t)u;
        return 0;
    }
    if (h->type == GH_HEALTH_HTTP && (v = option_value(a, "status", &n)) != NULL)
        return status_range(p, line, v, n, h);
    if (h->type == GH_HEALTH_HTTP && (v = option_value(a, "host", &n)) != NULL) {
        if (n == 0 || !is_field_text(v, n, 0))
            return bad_value(p, line, "health host", a, "expected a host name");
        h->host.p = conf__arena_strndup(p->a, v, n);
        h->host.len = n;
        return h->host.p == NULL ? oom(p, line) : 0;
    }
    if (h->type == GH_HEALTH_HTTP && a->len > 0 && a->p[0] == '/' && h->path.len == 0 && is_field_text(a->p, a->len, 0))
        return dup_arg(p, line, a, &h->path);
    if (h->type == GH_HEALTH_HTTP && h->method.len == 0 && h->path.len == 0 && is_token(a->p, a->len))
        return dup_arg(p, line, a, &h->method);
    return bad_value(p, line, "health option", a,
                     h->type == GH_HEALTH_HTTP ? "expected [METHOD] [PATH] status= interval= timeout= rise= fall= host="
                                               : "expected interval= timeout= rise= fall=");
}

static int d_health(conf__parser *p, const conf__directive *d)
{
    gh_cfg_health *h = &p->pool->health;

    memset(h, 0, sizeof(*h));
    if (arg_is(ARG(0), "off")) {
        if (d->nargs != 1)
            return conf__fail(p, NULL, d->line, "health off takes no further argument");
        return 0;
    }
    if (arg_is(ARG(0), "http"))
        h->type = GH_HEALTH_HTTP;
    else if (arg_is(ARG(0), "tcp"))
        h->type = GH_HEALTH_TCP;
    else
        return bad_value(p, d->line, "health check", ARG(0), "expected http, tcp or off");
    *h = (gh_cfg_health){h->type, {"", 0}, {"", 0}, {"", 0}, 200, 399, 5000, 2000, 2, 3};
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

static int d_passive(conf__parser *p, const conf__directive *d)
{
    gh_cfg_passive *ps = &p->pool->passive;
    uint64_t u;

    if (d->nargs == 1 && arg_is(ARG(0), "off")) {
        ps->fails = 0;
        return 0;
    }
    *ps = (gh_cfg_passive){3, 10000, 30000};
    for (size_t i = 0; i < d->nargs; i++) {
        const char *v;
        size_t n;

        if ((v = option_value(ARG(i), "fails", &n)) != NULL) {
            if (uint_arg(p, d->line, "fails", v, n, 1, 1000, &u) < 0)
                return -1;
            ps->fails = (uint32_t)u;
        } else if ((v = option_value(ARG(i), "window", &n)) != NULL) {
            if (duration_arg(p, d->line, "window", v, n, &ps->window) < 0)
                return -1;
        } else if ((v = option_value(ARG(i), "eject", &n)) != NULL) {
            if (duration_arg(p, d->line, "eject", v, n, &ps->eject) < 0)
                return -1;
        } else {
            return bad_value(p, d->line, "passive option", ARG(i), "expected fails=N window=DURATION eject=DURATION");
        }
    }
    return 0;
}

/* ---- sites ------------------------------------------------------------------------------------ */

/*
 * Site names: "default", an exact host ("example.com", "127.0.0.1",
 * "[::1]"), or "*." followed by one. Stored lower case: Host and SNI are
 * compared case-insensitively (RFC 9110 4.2.3, RFC 6066 3).
 */
static int site_name(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    size_t start = a->len >= 2 && a->p[0] == '*' && a->p[1] == '.' ? 2 : 0;
    char *s;

    if (a->len == start || a->len > 255)
        return bad_value(p, line, "site name", a, "expected a host name, *.domain or default");
    for (size_t i = start; i < a->len; i++) {
        unsigned char c = (unsigned char)a->p[i];

        if (!is_name_char(c) && c != ':' && c != '[' && c != ']')
            return bad_value(p, line, "site name", a,
                             c == '*' ? "a wildcard is only allowed as a leading \"*.\"" : "not a host name");
    }
    if (a->p[a->len - 1] == '.')
        return bad_value(p, line, "site name", a, "write it without the trailing dot");
    /* Brackets and colons only as an IPv6 literal "[...]": a port never belongs in a site name. */
    if ((memchr(a->p, ':', a->len) || memchr(a->p, '[', a->len) || memchr(a->p, ']', a->len)) &&
        (start != 0 || a->p[0] != '[' || a->p[a->len - 1] != ']' || memchr(a->p + 1, '[', a->len - 1) ||
         memchr(a->p, ']', a->len - 1)))
        return bad_value(p, line, "site name", a, "no port here (sites serve the listeners they name)");
    if ((s = conf__arena_strndup(p->a, a->p, a->len)) == NULL)
        return oom(p, line);
    for (size_t i = 0; i < a->len; i++)
        s[i] = (char)tolower((unsigned char)s[i]);
    out->p = s;
    out->len = a->len;
    return 0;
}

static int add_site_names(conf__parser *p, const conf__directive *d, gh_cfg_site *site)
{
    for (size_t i = 0; i < d->nargs; i++) {
        gh_cstr name, *slot;

        if (arg_is(ARG(i), "default")) {
            if (site->is_default)
                return conf__fail(p, NULL, d->line, "\"default\" given twice");
            site->is_default = 1;
            continue;
        }
        if (site_name(p, d->line, ARG(i), &name) < 0)
            return -1;
        for (size_t j = 0; j < site->nnames; j++)
            if (strcmp(site->names[j].p, name.p) == 0)
                return conf__fail(p, NULL, d->line, "site name \"%s\" given twice", name.p);
        slot = conf__arena_push(p->a, (void **)&site->names, &site->nnames, &p->cap_names, sizeof(*slot));
        if (slot == NULL)
            return oom(p, d->line);
        *slot = name;
    }
    return 0;
}

static int d_site(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_site *site;
    int rc;

    site = conf__arena_push(p->a, (void **)&c->sites, &c->nsites, &p->cap_sites, sizeof(*site));
    if (site == NULL)
        return oom(p, d->line);
    site->where = (gh_cfg_where){p->file, d->line};
    p->cap_names = p->cap_certs = p->cap_routes = 0;
    if (add_site_names(p, d, site) < 0)
        return -1;
    p->site = site;
    rc = conf__parse_nested(p, CONF__CTX_SITE, d->line);
    p->site = NULL;
    return rc;
}

static int d_cert(conf__parser *p, const conf__directive *d)
{
    gh_cfg_site *site = p->site;
    gh_cfg_cert *cert;

    if (ARG(0)->len == 0 || ARG(1)->len == 0)
        return conf__fail(p, NULL, d->line, "cert needs a certificate file and a key file");
    cert = conf__arena_push(p->a, (void **)&site->certs, &site->ncerts, &p->cap_certs, sizeof(*cert));
    if (cert == NULL)
        return oom(p, d->line);
    cert->where = (gh_cfg_where){p->file, d->line};
    if (conf__relative_path(p, ARG(0)->p, ARG(0)->len, &cert->cert_file) < 0)
        return -1;
    return conf__relative_path(p, ARG(1)->p, ARG(1)->len, &cert->key_file);
}

static int d_site_listen(conf__parser *p, const conf__directive *d)
{
    conf__listen_ref *ref;
    gh_addr a;

    if (listen_addr(p, d->line, ARG(0), &a) < 0)
        return -1;
    ref = conf__arena_push(p->a, (void **)&p->listen_refs, &p->nlisten_refs, &p->cap_listen_refs, sizeof(*ref));
    if (ref == NULL)
        return oom(p, d->line);
    ref->site = p->cfg->nsites - 1;
    ref->addr = a;
    ref->where = (gh_cfg_where){p->file, d->line};
    return 0;
}

/* A path prefix: starts with '/', printable, no query or fragment (routes match the path only). */
static int route_prefix(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    if (a->len == 0 || a->p[0] != '/')
        return bad_value(p, line, "route prefix", a, "must start with /");
    if (!is_field_text(a->p, a->len, 0) || memchr(a->p, '?', a->len) || memchr(a->p, '#', a->len))
        return bad_value(p, line, "route prefix", a, "a path without spaces, '?' or '#'");
    return dup_arg(p, line, a, out);
}

static int d_route(conf__parser *p, const conf__directive *d)
{
    gh_cfg_site *site = p->site;
    gh_cfg_route *r;
    int rc;

    r = conf__arena_push(p->a, (void **)&site->routes, &site->nroutes, &p->cap_routes, sizeof(*r));
    if (r == NULL)
        return oom(p, d->line);
    r->where = (gh_cfg_where){p->file, d->line};
    if (route_prefix(p, d->line, ARG(0), &r->prefix) < 0)
        return -1;
    p->cap_methods = p->cap_hmatch = p->cap_req_ops = p->cap_resp_ops = p->cap_target = 0;
    p->route = r;
    rc = conf__parse_nested(p, CONF__CTX_ROUTE, d->line);
    p->route = NULL;
    return rc;
}

/* ---- routes ----------------------------------------------------------------------------------- */

static int one_action(conf__parser *p, int line)
{
    if (p->route->action != 0)
        return conf__fail(p, NULL, line, "a route has one action: proxy, redirect or respond");
    return 0;
}

static int d_proxy(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    conf__pool_ref *ref;

    if (one_action(p, d->line) < 0)
        return -1;
    r->action = GH_ACTION_PROXY;
    ref = conf__arena_push(p->a, (void **)&p->pool_refs, &p->npool_refs, &p->cap_pool_refs, sizeof(*ref));
    if (ref == NULL)
        return oom(p, d->line);
    ref->site = p->cfg->nsites - 1;
    ref->route = p->site->nroutes - 1;
    ref->where = (gh_cfg_where){p->file, d->line};
    if (dup_arg(p, d->line, ARG(0), &ref->name) < 0)
        return -1;
    if (d->nargs == 1)
        return 0;
    if (d->nargs == 2 && arg_is(ARG(1), "strip_prefix")) {
        r->rewrite = GH_REWRITE_STRIP;
        return 0;
    }
    if (d->nargs == 3 && arg_is(ARG(1), "replace_prefix")) {
        r->rewrite = GH_REWRITE_REPLACE;
        if (ARG(2)->len == 0 || ARG(2)->p[0] != '/' || !is_field_text(ARG(2)->p, ARG(2)->len, 0))
            return bad_value(p, d->line, "replacement prefix", ARG(2), "must start with / and have no spaces");
        return dup_arg(p, d->line, ARG(2), &r->replace_with);
    }
    return conf__fail(p, NULL, d->line, "usage: proxy POOL [strip_prefix | replace_prefix NEW]");
}

static int target_segment(conf__parser *p, int line, int kind, const char *text, size_t len)
{
    gh_cfg_route *r = p->route;
    gh_cfg_redirect_seg *seg;

    if (kind == GH_REDIR_TEXT && len == 0)
        return 0;
    seg = conf__arena_push(p->a, (void **)&r->target, &r->ntarget, &p->cap_target, sizeof(*seg));
    if (seg == NULL)
        return oom(p, line);
    seg->kind = kind;
    seg->text.p = conf__arena_strndup(p->a, text, len);
    seg->text.len = len;
    return seg->text.p == NULL ? oom(p, line) : 0;
}

/* Which variable starts at s (after the '$'): its kind and name length, or -1. */
static int target_variable(const char *s, size_t len, size_t *namelen)
{
    static const struct {
        const char *name;
        int kind;
    } vars[] = {{"scheme", GH_REDIR_SCHEME}, {"host", GH_REDIR_HOST}, {"request_uri", GH_REDIR_REQUEST_URI}};
    size_t n = 0;

    while (n < len && (islower((unsigned char)s[n]) || s[n] == '_'))
        n++;
    *namelen = n;
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (strlen(vars[i].name) == n && memcmp(vars[i].name, s, n) == 0)
            return vars[i].kind;
    return -1;
}

/*
 * Splits a redirect target into literal text and variables once, at load,
 * so a redirect costs one pass of copies. "$$" is a literal '$'.
 */
static int compile_target(conf__parser *p, int line, const conf__arg *a)
{
    size_t start = 0, i = 0;

    if (a->len == 0 || !is_field_text(a->p, a->len, 0))
        return bad_value(p, line, "redirect target", a, "expected a URL without spaces");
    while (i < a->len) {
        size_t n;
        int kind;

        if (a->p[i] != '$') {
            i++;
            continue;
        }
        if (i + 1 < a->len && a->p[i + 1] == '$') {
            /* "$$": the text so far with one '$' */
            if (target_segment(p, line, GH_REDIR_TEXT, a->p + start, i + 1 - start) < 0)
                return -1;
            start = i += 2;
            continue;
        }
        if (target_segment(p, line, GH_REDIR_TEXT, a->p + start, i - start) < 0)
            return -1;
        kind = target_variable(a->p + i + 1, a->len - i - 1, &n);
        if (kind < 0)
            return conf__fail(p, NULL, line,
                              "unknown variable \"$%.*s\" in redirect target (known: $scheme, $host, $request_uri; "
                              "$$ for a dollar sign)",
                              (int)n, a->p + i + 1);
        if (target_segment(p, line, kind, "", 0) < 0)
            return -1;
        start = i += 1 + n;
    }
    return target_segment(p, line, GH_REDIR_TEXT, a->p + start, a->len - start);
}

static int d_redirect(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    int status = 0;

    if (one_action(p, d->line) < 0)
        return -1;
    r->action = GH_ACTION_REDIRECT;
    if (status_arg(p, d->line, ARG(0), 301, 308, &status) < 0)
        return -1;
    if (status == 304 || status == 305 || status == 306)
        return conf__fail(p, NULL, d->line, "invalid redirect status %d: expected 301, 302, 303, 307 or 308", status);
    r->status = status;
    return compile_target(p, d->line, ARG(1));
}

static int d_respond(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;

    if (one_action(p, d->line) < 0)
        return -1;
    r->action = GH_ACTION_RESPOND;
    if (status_arg(p, d->line, ARG(0), 200, 599, &r->status) < 0)
        return -1;
    r->body = (gh_cstr){"", 0};
    if (d->nargs == 1)
        return 0;
    if (r->status == 204 || r->status == 304)
        return conf__fail(p, NULL, d->line, "status %d has no body", r->status);
    return dup_arg(p, d->line, ARG(1), &r->body);
}

static int d_method(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;

    for (size_t i = 0; i < d->nargs; i++) {
        gh_cstr *m;

        if (!is_token(ARG(i)->p, ARG(i)->len))
            return bad_value(p, d->line, "method", ARG(i), "expected a token such as GET");
        m = conf__arena_push(p->a, (void **)&r->methods, &r->nmethods, &p->cap_methods, sizeof(*m));
        if (m == NULL || dup_arg(p, d->line, ARG(i), m) < 0)
            return m == NULL ? oom(p, d->line) : -1;
    }
    return 0;
}

static int d_header_match(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    gh_cfg_header_match *h;

    if (!is_token(ARG(0)->p, ARG(0)->len))
        return bad_value(p, d->line, "header name", ARG(0), "expected a token such as X-Canary");
    if (!is_field_text(ARG(1)->p, ARG(1)->len, 1))
        return bad_value(p, d->line, "header value", ARG(1), "control characters are not allowed");
    h = conf__arena_push(p->a, (void **)&r->headers, &r->nheaders, &p->cap_hmatch, sizeof(*h));
    if (h == NULL)
        return oom(p, d->line);
    if (dup_arg(p, d->line, ARG(0), &h->name) < 0 || dup_arg(p, d->line, ARG(1), &h->value) < 0)
        return -1;
    for (size_t i = 0; i < h->name.len; i++)
        ((char *)h->name.p)[i] = (char)tolower((unsigned char)h->name.p[i]);
    return 0;
}

static int d_route_timeout(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    unsigned bit;
    uint32_t *field;

    if (arg_is(ARG(0), "connect")) {
        bit = GH_ROUTE_SET_CONNECT;
        field = &r->connect_timeout;
    } else if (arg_is(ARG(0), "response")) {
        bit = GH_ROUTE_SET_RESPONSE;
        field = &r->response_timeout;
    } else {
        return bad_value(p, d->line, "route timeout", ARG(0), "expected connect or response");
    }
    if (r->set & bit)
        return conf__fail(p, NULL, d->line, "duplicate timeout %.*s", (int)ARG(0)->len, ARG(0)->p);
    r->set |= bit;
    return duration_arg(p, d->line, "duration", ARG(1)->p, ARG(1)->len, field);
}

/*
 * Headers that frame or route the message: setting or removing them would
 * let a config line desynchronise gatehouse and the server (smuggling), so
 * they stay under the proxy's control.
 */
static int is_protected_header(const conf__arg *name)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection",      "keep-alive", "te",
                                        "trailer",        "upgrade",           "proxy-connection"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (name->len == strlen(names[i]) && strncasecmp(name->p, names[i], name->len) == 0)
            return 1;
    return 0;
}

static int d_header_op(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    int response = d->name.p[1] == 'e' && d->name.p[2] == 's'; /* "response_header" vs "request_header" */
    gh_cfg_header_op *op;

    if (!(arg_is(ARG(0), "set") && d->nargs == 3) && !(arg_is(ARG(0), "remove") && d->nargs == 2))
        return conf__fail(p, NULL, d->line, "usage: %.*s set NAME VALUE | %.*s remove NAME", (int)d->name.len,
                          d->name.p, (int)d->name.len, d->name.p);
    if (!is_token(ARG(1)->p, ARG(1)->len))
        return bad_value(p, d->line, "header name", ARG(1), "expected a token such as X-From");
    if (is_protected_header(ARG(1)))
        return bad_value(p, d->line, "header name", ARG(1), "framing headers are managed by gatehouse");
    if (d->nargs == 3 && !is_field_text(ARG(2)->p, ARG(2)->len, 1))
        return bad_value(p, d->line, "header value", ARG(2), "control characters are not allowed");
    if (response)
        op = conf__arena_push(p->a, (void **)&r->resp_ops, &r->nresp_ops, &p->cap_resp_ops, sizeof(*op));
    else
        op = conf__arena_push(p->a, (void **)&r->req_ops, &r->nreq_ops, &p->cap_req_ops, sizeof(*op));
    if (op == NULL)
        return oom(p, d->line);
    op->op = d->nargs == 3 ? GH_HEADER_SET : GH_HEADER_REMOVE;
    op->value = (gh_cstr){"", 0};
    if (dup_arg(p, d->line, ARG(1), &op->name) < 0)
        return -1;
    return d->nargs == 3 ? dup_arg(p, d->line, ARG(2), &op->value) : 0;
}

/* ---- the table -------------------------------------------------------------------------------- */

/* A row per GH_CFG_TIMEOUTS entry: `timeouts { NAME DURATION }`. */
#define TIMEOUT(name, flag, ms, help) {#name, CONF__CTX_TIMEOUTS, 1, 1, 0, 0, d_timeout_value, #name " DURATION"},

const conf__dirspec conf__directives[] = {
    {"include", -1, 1, 1, 0, 1, conf__include, "include PATH-OR-GLOB"},
    {"workers", CONF__CTX_MAIN, 1, 1, 0, 0, d_workers, "workers N|auto"},
    {"log_level", CONF__CTX_MAIN, 1, 1, 0, 0, d_log_level, "log_level error|warn|info|debug"},
    {"access_log", CONF__CTX_MAIN, 1, 1, 0, 0, d_access_log, "access_log PATH|-|off"},
    {"max_body", CONF__CTX_MAIN, 1, 1, 0, 0, d_max_body, "max_body SIZE|off"},
    {"timeouts", CONF__CTX_MAIN, 0, 0, 1, 0, d_timeouts, "timeouts { NAME DURATION ... }"},
    {"listen", CONF__CTX_MAIN, 1, 2, 0, 1, d_listen, "listen ADDRESS:PORT [tls]"},
    {"pool", CONF__CTX_MAIN, 1, 1, 1, 1, d_pool, "pool NAME { ... }"},
    {"site", CONF__CTX_MAIN, 1, CONF__MAX_ARGS, 1, 1, d_site, "site NAME... { ... }"},
    /* clang-format off */
    GH_CFG_TIMEOUTS(TIMEOUT)
    /* clang-format on */
    {"server", CONF__CTX_POOL, 1, 3, 0, 1, d_server, "server HOST:PORT [weight=N] [backup]"},
    {"balance", CONF__CTX_POOL, 1, 3, 0, 0, d_balance,
     "balance round_robin|least_conn|p2c|random|hash ip|hash header NAME|hash cookie NAME"},
    {"health", CONF__CTX_POOL, 1, 9, 0, 0, d_health,
     "health http [METHOD] [PATH] [status=200-399] [interval=5s] [timeout=2s] [rise=2] [fall=3] [host=NAME] | "
     "health tcp [...] | health off"},
    {"passive", CONF__CTX_POOL, 0, 3, 0, 0, d_passive, "passive [fails=3] [window=10s] [eject=30s] | passive off"},
    {"cert", CONF__CTX_SITE, 2, 2, 0, 1, d_cert, "cert CERT-FILE KEY-FILE"},
    {"listen", CONF__CTX_SITE, 1, 1, 0, 1, d_site_listen, "listen ADDRESS:PORT (a listener declared at the top)"},
    {"route", CONF__CTX_SITE, 1, 1, 1, 1, d_route, "route PREFIX { ... }"},
    {"proxy", CONF__CTX_ROUTE, 1, 3, 0, 0, d_proxy, "proxy POOL [strip_prefix | replace_prefix NEW]"},
    {"redirect", CONF__CTX_ROUTE, 2, 2, 0, 0, d_redirect, "redirect 301|302|303|307|308 TARGET"},
    {"respond", CONF__CTX_ROUTE, 1, 2, 0, 0, d_respond, "respond STATUS [BODY]"},
    {"method", CONF__CTX_ROUTE, 1, CONF__MAX_ARGS, 0, 0, d_method, "method METHOD..."},
    {"header", CONF__CTX_ROUTE, 2, 2, 0, 1, d_header_match, "header NAME VALUE"},
    {"timeout", CONF__CTX_ROUTE, 2, 2, 0, 1, d_route_timeout, "timeout connect|response DURATION"},
    {"max_body", CONF__CTX_ROUTE, 1, 1, 0, 0, d_max_body, "max_body SIZE|off"},
    {"request_header", CONF__CTX_ROUTE, 2, 3, 0, 1, d_header_op, "request_header set NAME VALUE | remove NAME"},
    {"response_header", CONF__CTX_ROUTE, 2, 3, 0, 1, d_header_op, "response_header set NAME VALUE | remove NAME"},
    {NULL, 0, 0, 0, 0, 0, NULL, NULL},
};

_Static_assert(sizeof(conf__directives) / sizeof(conf__directives[0]) <= CONF__NDIRECTIVES, "raise CONF__NDIRECTIVES");

const conf__dirspec *conf__find_directive(int ctx, const char *name, size_t len)
{
    for (const conf__dirspec *s = conf__directives; s->name != NULL; s++)
        if ((ctx < 0 || s->ctx < 0 || s->ctx == ctx) && strlen(s->name) == len && memcmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

const char *conf__context_name(int ctx)
{
    static const char *const names[] = {"the main context", "a timeouts block", "a pool block", "a site block",
                                        "a route block"};

    return ctx >= 0 && ctx < (int)(sizeof(names) / sizeof(names[0])) ? names[ctx] : "another block";
}
