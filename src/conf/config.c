/*
 * config: the public face of src/conf. Loading (parse, validate, check
 * files), resolving server names, the quick-start builder, and the small pure
 * helpers a route's action needs at request time.
 */
#include "conf/config.h"
#include "core/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/arena.h"
#include "conf/directives.h"
#include "conf/parser.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* A config with the same defaults as the command line (conf/quickstart.c), from a new arena. */
static gh_config *new_config(void)
{
    conf__arena *a = conf__arena_new();
    gh_config *c = a != NULL ? conf__arena_alloc(a, sizeof(*c)) : NULL;
    gh_conf d;

    if (c == NULL) {
        conf__arena_free(a);
        return NULL;
    }
    gh_conf_defaults(&d);
    c->arena = a;
    c->workers = d.workers; /* already at most GH_CFG_MAX_WORKERS */
    c->log_level = d.log_level;
    c->access_log = NULL;
    c->max_body = GH_CFG_NO_LIMIT;
    c->resolve_interval = 30000;
    c->http2 = (gh_cfg_http2){GH_CFG_H2_STREAMS, GH_CFG_H2_HEADER_LIST, GH_CFG_H2_TABLE,
                              GH_CFG_H2_FRAME,   GH_CFG_H2_WINDOW,      GH_CFG_H2_MEMORY};
    c->seccomp = 1;
    c->body_limits = (gh_cfg_body_limits){GH_CFG_REQUEST_BUFFER, GH_CFG_BODY_MIN_RATE, GH_CFG_BODY_RATE_GRACE};
    c->timeouts = d.timeouts;
    return c;
}

void gh_config_free(gh_config *cfg)
{
    if (cfg != NULL)
        conf__arena_free(cfg->arena); /* cfg itself lives in its arena */
}

static gh_config *parse_from(const char *path, const gh_conf_source *src, char *err, size_t errlen)
{
    gh_config *c = new_config();
    conf__parser p;
    int rc;

    if (errlen > 0)
        err[0] = '\0';
    if (c == NULL) {
        set_err(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    memset(&p, 0, sizeof(p));
    p.cfg = c;
    p.src = src;
    p.a = c->arena;
    p.err = err;
    p.errlen = errlen;
    c->path = conf__arena_strndup(c->arena, path, strlen(path));
    rc =
        c->path != NULL && conf__builtin_formats(c->arena, c, &p.cap_formats) == 0 ? conf__parse_main(&p, c->path) : -1;
    if (rc == 0)
        rc = conf__validate(&p);
    /* The parser's side tables live in the arena too: nothing else to free. */
    if (rc < 0) {
        if (errlen > 0 && err[0] == '\0')
            set_err(err, errlen, "%s: out of memory", path);
        gh_config_free(c);
        return NULL;
    }
    return c;
}

gh_config *gh_config_parse(const char *path, char *err, size_t errlen)
{
    return parse_from(path, gh_conf_source_fs(), err, errlen);
}

/* Read, not access(2): the effective ids decide, as they will when the TLS contexts are built from the bytes. */
static int check_readable(const gh_conf_source *src, const gh_cfg_where *w, const char *what, const char *path,
                          char *err, size_t errlen)
{
    gh_conf_file f = {0};
    int e = src->read(src, path, GH_CFG_MAX_PEM, &f);

    gh_conf_file_dispose(&f);
    if (e == 0)
        return 0;
    set_err(err, errlen, "%s:%d: cannot read %s \"%s\": %s", w->file, w->line, what, path,
            e == EFBIG ? "file too large (the limit is 1 MiB)" : strerror(e));
    return -1;
}

static int check_certs(const gh_cfg_cert *certs, size_t n, const gh_conf_source *src, char *err, size_t errlen)
{
    for (size_t k = 0; k < n; k++) {
        const gh_cfg_cert *c = &certs[k];

        if (check_readable(src, &c->where, "certificate", c->cert_file.p, err, errlen) < 0 ||
            check_readable(src, &c->where, "key", c->key_file.p, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int check_files_from(const gh_config *cfg, const gh_conf_source *src, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nsites; i++)
        if (check_certs(cfg->sites[i].certs, cfg->sites[i].ncerts, src, err, errlen) < 0)
            return -1;
    for (size_t i = 0; i < cfg->nstreams; i++)
        if (check_certs(cfg->streams[i].certs, cfg->streams[i].ncerts, src, err, errlen) < 0)
            return -1;
    return 0;
}

int gh_config_check_files(const gh_config *cfg, char *err, size_t errlen)
{
    return check_files_from(cfg, gh_conf_source_fs(), err, errlen);
}

gh_config *gh_config_load_from(const char *path, const gh_conf_source *src, char *err, size_t errlen)
{
    gh_config *c = parse_from(path, src, err, errlen);

    if (c != NULL && check_files_from(c, src, err, errlen) < 0) {
        gh_config_free(c);
        return NULL;
    }
    return c;
}

gh_config *gh_config_load(const char *path, char *err, size_t errlen)
{
    return gh_config_load_from(path, gh_conf_source_fs(), err, errlen);
}

/* The text form the rest of gatehouse uses for addresses: "1.2.3.4:80", "[::1]:80". */
static void addr_from_sockaddr(gh_addr *a, const struct sockaddr *sa, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];

    memset(a, 0, sizeof(*a));
    memcpy(&a->ss, sa, len);
    a->len = len;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(a->text, sizeof(a->text), "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(a->text, sizeof(a->text), "%s:%u", host, (unsigned)ntohs(s4->sin_port));
    }
}

/* IPv4 before IPv6, then by address bytes: one order whatever order (or rotation) the resolver answers in. */
static int addr_order(const void *x, const void *y)
{
    const gh_addr *a = x, *b = y;

    if (a->ss.ss_family != b->ss.ss_family)
        return a->ss.ss_family == AF_INET ? -1 : 1;
    if (a->ss.ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr, &((const struct sockaddr_in *)&b->ss)->sin_addr,
                      sizeof(struct in_addr));
    return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr, &((const struct sockaddr_in6 *)&b->ss)->sin6_addr,
                  sizeof(struct in6_addr));
}

static int resolve_server(gh_config *cfg, const gh_conf_source *src, gh_cfg_server *s, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    size_t n = 0;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", (unsigned)s->port);
    rc = src->getaddrinfo(src, s->host.p, port, &hints, &res);
    if (rc != 0) {
        set_err(err, errlen, "%s:%d: cannot resolve %s: %s", s->where.file, s->where.line, s->host.p,
                rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    /* Every address (up to the most a name may have) first, then sorted, then the first nslots kept:
     * truncating in the resolver's order would keep another subset each time a rotating DNS answers. */
    s->addrs = conf__arena_array(cfg->arena, GH_CFG_MAX_NAME_ADDRS, sizeof(gh_addr));
    for (struct addrinfo *ai = res; s->addrs != NULL && ai != NULL && n < GH_CFG_MAX_NAME_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(struct sockaddr_storage))
            continue;
        addr_from_sockaddr(&s->addrs[n], ai->ai_addr, ai->ai_addrlen);
        if (!gh_addr_in(&s->addrs[n], s->addrs, n)) /* a hosts file may list one address twice */
            n++;
    }
    src->freeaddrinfo(src, res);
    if (s->addrs == NULL || n == 0) {
        set_err(err, errlen, "%s:%d: cannot resolve %s: %s", s->where.file, s->where.line, s->host.p,
                s->addrs == NULL ? "out of memory" : "no IPv4 or IPv6 address");
        return -1;
    }
    /*
     * Sorted, so that processes that resolve the same file apart (a worker at
     * a reload, today) give the same address to the same slot.
     */
    qsort(s->addrs, n, sizeof(gh_addr), addr_order);
    s->naddrs = GH_MIN(n, s->nslots);
    return 0;
}

int gh_config_resolve_from(gh_config *cfg, const gh_conf_source *src, char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->npools; i++)
        for (size_t k = 0; k < cfg->pools[i].nservers; k++)
            if (cfg->pools[i].servers[k].naddrs == 0 &&
                resolve_server(cfg, src, &cfg->pools[i].servers[k], err, errlen) < 0)
                return -1;
    return 0;
}

int gh_config_resolve(gh_config *cfg, char *err, size_t errlen)
{
    return gh_config_resolve_from(cfg, gh_conf_source_fs(), err, errlen);
}

const gh_cfg_pool *gh_config_pool(const gh_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name.p, name) == 0)
            return &cfg->pools[i];
    return NULL;
}

/* ---- quick start ------------------------------------------------------------------------------ */

static int cstr(gh_config *c, const char *s, gh_cstr *out)
{
    size_t n = strlen(s);

    out->p = conf__arena_strndup(c->arena, s, n);
    out->len = n;
    return out->p != NULL ? 0 : -1;
}

static int quick_server(gh_config *c, gh_cfg_server *s, const gh_addr *a)
{
    const char *t = a->text, *colon = strrchr(t, ':');
    int v6 = t[0] == '[';
    size_t hlen = (size_t)(colon - t) - (v6 ? 2 : 0);

    s->weight = 1;
    s->where = (gh_cfg_where){c->path, 0};
    s->port = ntohs(a->ss.ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)&a->ss)->sin6_port
                                                : ((const struct sockaddr_in *)&a->ss)->sin_port);
    s->addrs = conf__arena_alloc(c->arena, sizeof(gh_addr));
    s->host.p = conf__arena_strndup(c->arena, t + v6, hlen);
    s->host.len = hlen;
    if (s->addrs == NULL || s->host.p == NULL)
        return -1;
    s->addrs[0] = *a;
    s->naddrs = 1;
    s->nslots = 1;
    return cstr(c, t, &s->text);
}

static int quick_pool(gh_config *c, const gh_conf *q)
{
    gh_cfg_pool *pool = c->pools = conf__arena_alloc(c->arena, sizeof(*pool));

    if (pool == NULL || cstr(c, "default", &pool->name) < 0)
        return -1;
    c->npools = 1;
    pool->where = (gh_cfg_where){c->path, 0};
    pool->servers = conf__arena_array(c->arena, q->nservers, sizeof(gh_cfg_server));
    if (pool->servers == NULL)
        return -1;
    for (size_t i = 0; i < q->nservers; i++)
        if (quick_server(c, &pool->servers[i], &q->servers[i]) < 0)
            return -1;
    pool->nservers = q->nservers;
    return 0;
}

static int quick_site(gh_config *c, const gh_conf *q)
{
    gh_cfg_site *site = c->sites = conf__arena_alloc(c->arena, sizeof(*site));
    gh_cfg_route *r;

    if (site == NULL)
        return -1;
    c->nsites = 1;
    site->is_default = 1;
    site->where = (gh_cfg_where){c->path, 0};
    site->listeners = conf__arena_alloc(c->arena, sizeof(size_t));
    site->certs = conf__arena_alloc(c->arena, sizeof(gh_cfg_cert));
    site->routes = r = conf__arena_alloc(c->arena, sizeof(gh_cfg_route));
    if (site->listeners == NULL || site->certs == NULL || r == NULL)
        return -1;
    site->nlisteners = site->ncerts = site->nroutes = 1;
    site->certs[0].where = site->where;
    if (cstr(c, q->cert_file, &site->certs[0].cert_file) < 0 || cstr(c, q->key_file, &site->certs[0].key_file) < 0 ||
        cstr(c, "/", &r->prefix) < 0)
        return -1;
    r->action = GH_ACTION_PROXY;
    r->websocket = 1;
    r->pool = &c->pools[0];
    r->connect_timeout = c->timeouts.connect;
    r->response_timeout = c->timeouts.response;
    r->max_body = c->max_body;
    r->body_limits = c->body_limits;
    r->where = site->where;
    return 0;
}

gh_config *gh_config_from_quickstart(const gh_conf *q, char *err, size_t errlen)
{
    gh_config *c = new_config();

    if (c == NULL)
        goto oom;
    c->path = "(command line)";
    c->workers = q->workers;
    c->log_level = q->log_level;
    c->max_connections = q->max_connections;
    c->timeouts = q->timeouts;
    c->seccomp = q->seccomp;
    if ((q->user != NULL && (c->user = conf__arena_strndup(c->arena, q->user, strlen(q->user))) == NULL) ||
        (q->group != NULL && (c->group = conf__arena_strndup(c->arena, q->group, strlen(q->group))) == NULL))
        goto oom;
    if (q->access_log != NULL &&
        (c->access_log = conf__arena_strndup(c->arena, q->access_log, strlen(q->access_log))) == NULL)
        goto oom;
    if (q->cert_file == NULL || q->key_file == NULL || q->nservers == 0) {
        set_err(err, errlen, "(command line): --cert, --key and --to are required");
        gh_config_free(c);
        return NULL;
    }
    c->listeners = conf__arena_alloc(c->arena, sizeof(gh_cfg_listener));
    if (c->listeners == NULL)
        goto oom;
    c->nlisteners = 1;
    c->listeners[0] = (gh_cfg_listener){.addr = q->listen, .tls = 1, .where = {c->path, 0}}; /* h2 and http/1.1 */
    if (quick_pool(c, q) < 0 || quick_site(c, q) < 0 ||
        conf__quick_edge(c->arena, c, &c->sites[0], &c->sites[0].routes[0]) < 0)
        goto oom;
    return c;
oom:
    gh_config_free(c);
    set_err(err, errlen, "(command line): out of memory");
    return NULL;
}

/* ---- request-time helpers --------------------------------------------------------------------- */

void gh_cfg_passive_add_statuses(gh_cfg_passive *ps, int lo, int hi)
{
    if (lo < GH_CFG_STATUS_MIN || hi > GH_CFG_STATUS_MAX)
        return;
    for (int s = lo; s <= hi; s++)
        ps->statuses[(s - GH_CFG_STATUS_MIN) / 64] |= UINT64_C(1) << ((s - GH_CFG_STATUS_MIN) % 64);
}

/* Appends p[0..n) at *at within out[0..cap); returns -1 once it does not fit (with the final NUL). */
static int put(char *out, size_t cap, size_t *at, const char *p, size_t n)
{
    if (n >= cap - *at)
        return -1;
    memcpy(out + *at, p, n);
    *at += n;
    return 0;
}

int gh_route_redirect_target(const gh_cfg_route *r, const gh_redirect_vars *v, char *out, size_t outlen)
{
    size_t at = 0;

    if (outlen == 0)
        return -1;
    for (size_t i = 0; i < r->ntarget; i++) {
        const gh_cfg_redirect_seg *s = &r->target[i];
        const gh_cstr *val = s->kind == GH_REDIR_SCHEME        ? &v->scheme
                             : s->kind == GH_REDIR_HOST        ? &v->host
                             : s->kind == GH_REDIR_REQUEST_URI ? &v->request_uri
                                                               : &s->text;

        if (put(out, outlen, &at, val->p, val->len) < 0)
            return -1;
    }
    out[at] = '\0';
    return (int)at;
}

int gh_route_rewrite_path(const gh_cfg_route *r, const char *path, size_t len, char *out, size_t outlen)
{
    size_t at = 0, plen = r->prefix.len;
    const char *rest;
    size_t rest_len;

    if (outlen == 0)
        return -1;
    if (r->rewrite == GH_REWRITE_NONE || len < plen || memcmp(path, r->prefix.p, plen) != 0) {
        if (put(out, outlen, &at, path, len) < 0)
            return -1;
        out[at] = '\0';
        return (int)at;
    }
    rest = path + plen;
    rest_len = len - plen;
    if (r->rewrite == GH_REWRITE_REPLACE) {
        if (put(out, outlen, &at, r->replace_with.p, r->replace_with.len) < 0)
            return -1;
        /*
         * The replacement takes the prefix's place, slashes kept as one:
         * "/api/" -> "/v2" on "/api/x" gives "/v2/x", "/api" -> "/v2/" gives "/v2/x" too.
         */
        if (r->prefix.p[plen - 1] == '/' && out[at - 1] != '/' && put(out, outlen, &at, "/", 1) < 0)
            return -1;
        if (out[at - 1] == '/' && rest_len > 0 && rest[0] == '/') {
            rest++;
            rest_len--;
        }
    } else if (rest_len == 0 || rest[0] != '/') {
        /* Stripping "/api/" from "/api/x" leaves "x"; the upstream needs an absolute path. */
        if (put(out, outlen, &at, "/", 1) < 0)
            return -1;
    }
    if (put(out, outlen, &at, rest, rest_len) < 0)
        return -1;
    out[at] = '\0';
    return (int)at;
}
