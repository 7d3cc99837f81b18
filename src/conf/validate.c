/*
 * validate: what only the whole configuration can tell. References that may
 * point forward (a route's pool, a site's listener), each listener's set of
 * sites (names unique, certificates on TLS), and the final shape of each
 * site (route defaults and match order). Errors point at the line that has
 * to change.
 */
#include <stdio.h>
#include <string.h>

#include "conf/directives.h"
#include "conf/parser.h"

static int fail_at(conf__parser *p, const gh_cfg_where *w, const char *fmt, const char *a, const char *b)
{
    return conf__fail(p, w->file, w->line, fmt, a, b);
}

static int resolve_pool_refs(conf__parser *p)
{
    for (size_t i = 0; i < p->npool_refs; i++) {
        const conf__pool_ref *ref = &p->pool_refs[i];
        const gh_cfg_pool *pool = gh_config_pool(p->cfg, ref->name.p);

        if (pool == NULL)
            return fail_at(p, &ref->where, "unknown pool \"%s\"%s", ref->name.p,
                           p->cfg->npools == 0 ? " (no pool is declared)" : "");
        p->cfg->sites[ref->site].routes[ref->route].pool = pool;
    }
    return 0;
}

static int find_listener(const gh_config *c, const gh_addr *a)
{
    for (size_t i = 0; i < c->nlisteners; i++)
        if (strcmp(c->listeners[i].addr.text, a->text) == 0)
            return (int)i;
    return -1;
}

/* 1 when a forward proxy site names listener l (then it serves that site alone). */
static int forward_listener(const conf__parser *p, size_t l)
{
    for (size_t i = 0; i < p->nlisten_refs; i++)
        if (p->cfg->sites[p->listen_refs[i].site].forward != NULL &&
            find_listener(p->cfg, &p->listen_refs[i].addr) == (int)l)
            return 1;
    return 0;
}

/* Each site's listener indexes: those it names, or every listener that no forward proxy holds. */
static int site_listeners(conf__parser *p, size_t si)
{
    gh_config *c = p->cfg;
    gh_cfg_site *site = &c->sites[si];
    size_t n = 0, *idx = conf__arena_array(p->a, c->nlisteners, sizeof(size_t));

    if (idx == NULL)
        return fail_at(p, &site->where, "%s%s", "out of memory", "");
    for (size_t i = 0; i < p->nlisten_refs; i++) {
        const conf__listen_ref *ref = &p->listen_refs[i];
        int l;

        if (ref->site != si)
            continue;
        l = find_listener(c, &ref->addr);
        if (l < 0)
            return fail_at(p, &ref->where, "no listener %s: declare it at the top with \"listen %s [tls]\"",
                           ref->addr.text, ref->addr.text);
        for (size_t k = 0; k < n; k++)
            if (idx[k] == (size_t)l)
                return fail_at(p, &ref->where, "listener %s named twice%s", ref->addr.text, "");
        idx[n++] = (size_t)l;
    }
    for (size_t i = 0; i < n; i++)
        if (c->listeners[idx[i]].stream)
            return conf__fail(p, site->where.file, site->where.line,
                              "listener %s belongs to a stream service: a site cannot serve it",
                              c->listeners[idx[i]].addr.text);
    if (site->forward != NULL && n == 0)
        return fail_at(p, &site->where, "forward proxy site %s names no listener (add \"listen ADDRESS:PORT\")%s",
                       site->nnames > 0 ? site->names[0].p : "default", "");
    if (n == 0)
        for (size_t i = 0; i < c->nlisteners; i++)
            if (!c->listeners[i].stream && !forward_listener(p, i))
                idx[n++] = i; /* every HTTP listener: stream listeners are their services', a forward proxy's its */
    if (n == 0)
        return fail_at(p, &site->where, "site %s has no HTTP listener to serve (add \"listen ADDRESS:PORT [tls]\")%s",
                       site->nnames > 0 ? site->names[0].p : "default", "");
    site->listeners = idx;
    site->nlisteners = n;
    return 0;
}

static int serves(const gh_cfg_site *s, size_t listener)
{
    for (size_t i = 0; i < s->nlisteners; i++)
        if (s->listeners[i] == listener)
            return 1;
    return 0;
}

/* The earlier site on the same listener that already claims name (or default), or NULL. */
static const gh_cfg_site *name_owner(const gh_config *c, size_t upto, size_t listener, const gh_cstr *name)
{
    for (size_t i = 0; i < upto; i++) {
        const gh_cfg_site *s = &c->sites[i];

        if (!serves(s, listener))
            continue;
        if (name == NULL && s->is_default)
            return s;
        for (size_t k = 0; name != NULL && k < s->nnames; k++)
            if (strcmp(s->names[k].p, name->p) == 0)
                return s;
    }
    return NULL;
}

static int check_site_on_listener(conf__parser *p, size_t si, size_t li)
{
    const gh_config *c = p->cfg;
    const gh_cfg_site *s = &c->sites[si], *other;
    const gh_cfg_listener *l = &c->listeners[li];
    char first[512];

    if (l->tls && s->ncerts == 0)
        return conf__fail(p, s->where.file, s->where.line,
                          "site %s is served by TLS listener %s but has no cert (add \"cert FILE KEY\", or "
                          "\"listen\" lines that name only plain listeners)",
                          s->nnames > 0 ? s->names[0].p : "default", l->addr.text);
    for (size_t k = 0; k <= s->nnames; k++) {
        const gh_cstr *name = k < s->nnames ? &s->names[k] : NULL;

        if (name == NULL && !s->is_default)
            break;
        other = name_owner(c, si, li, name);
        if (other == NULL)
            continue;
        snprintf(first, sizeof(first), "%s:%d", other->where.file, other->where.line);
        return conf__fail(p, s->where.file, s->where.line, "duplicate site %s on listener %s (first at %s)",
                          name != NULL ? name->p : "default", l->addr.text, first);
    }
    return 0;
}

static int check_listeners(conf__parser *p)
{
    const gh_config *c = p->cfg;

    for (size_t li = 0; li < c->nlisteners; li++) {
        int used = 0, forward = 0;

        if (c->listeners[li].stream)
            continue; /* check_streams */
        for (size_t si = 0; si < c->nsites; si++) {
            if (!serves(&c->sites[si], li))
                continue;
            if (used && (forward || c->sites[si].forward != NULL))
                return fail_at(p, &c->sites[si].where,
                               "listener %s serves a forward proxy: it can serve no other site%s",
                               c->listeners[li].addr.text, "");
            used = 1;
            forward = c->sites[si].forward != NULL;
            if (check_site_on_listener(p, si, li) < 0)
                return -1;
        }
        if (!used)
            return fail_at(p, &c->listeners[li].where, "listener %s serves no site%s", c->listeners[li].addr.text, "");
    }
    return 0;
}

static int check_pools(conf__parser *p)
{
    for (size_t i = 0; i < p->cfg->npools; i++) {
        const gh_cfg_pool *pool = &p->cfg->pools[i];
        size_t primaries = 0;

        for (size_t k = 0; k < pool->nservers; k++)
            primaries += !pool->servers[k].backup;
        if (primaries == 0)
            return fail_at(p, &pool->where, "pool \"%s\" has no server%s", pool->name.p,
                           pool->nservers > 0 ? " that is not a backup" : "");
    }
    return 0;
}

static int has_conditions(const gh_cfg_route *r)
{
    return r->nmethods > 0 || r->nheaders > 0;
}

/* Match order: longer prefix first; at equal prefix, routes with conditions before those without. */
static int route_before(const gh_cfg_route *a, const gh_cfg_route *b)
{
    if (a->prefix.len != b->prefix.len)
        return a->prefix.len > b->prefix.len;
    return has_conditions(a) && !has_conditions(b);
}

/* Insertion sort: stable (file order breaks ties), and a site has few routes. */
static void sort_routes(gh_cfg_route *r, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        gh_cfg_route tmp = r[i];
        size_t j = i;

        for (; j > 0 && route_before(&tmp, &r[j - 1]); j--)
            r[j] = r[j - 1];
        r[j] = tmp;
    }
}

static int same_match(const gh_cfg_route *a, const gh_cfg_route *b)
{
    if (strcmp(a->prefix.p, b->prefix.p) != 0 || a->nmethods != b->nmethods || a->nheaders != b->nheaders)
        return 0;
    for (size_t i = 0; i < a->nmethods; i++)
        if (strcmp(a->methods[i].p, b->methods[i].p) != 0)
            return 0;
    for (size_t i = 0; i < a->nheaders; i++)
        if (strcmp(a->headers[i].name.p, b->headers[i].name.p) != 0 ||
            strcmp(a->headers[i].value.p, b->headers[i].value.p) != 0)
            return 0;
    return 1;
}

void conf__route_defaults(const gh_config *c, gh_cfg_route *r)
{
    if (!(r->set & GH_ROUTE_SET_CONNECT))
        r->connect_timeout = c->timeouts.connect;
    if (!(r->set & GH_ROUTE_SET_RESPONSE))
        r->response_timeout = c->timeouts.response;
    if (!(r->set & GH_ROUTE_SET_MAX_BODY))
        r->max_body = c->max_body;
    if (!(r->set & GH_ROUTE_SET_REQUEST_BUFFER))
        r->body_limits.buffer = c->body_limits.buffer;
    if (!(r->set & GH_ROUTE_SET_BODY_MIN_RATE)) {
        r->body_limits.min_rate = c->body_limits.min_rate;
        r->body_limits.grace = c->body_limits.grace;
    }
}

static int check_site(conf__parser *p, gh_cfg_site *s)
{
    char first[512];

    if (s->forward != NULL) {
        if (s->nroutes > 0)
            return fail_at(p, &s->routes[0].where, "a forward proxy site has no routes (its rules decide)%s%s", "", "");
        return conf__forward_validate(p, s);
    }
    if (s->nroutes == 0)
        return fail_at(p, &s->where, "site %s has no route (add, for example, \"route / { proxy POOL }\")%s",
                       s->nnames > 0 ? s->names[0].p : "default", "");
    for (size_t i = 0; i < s->nroutes; i++) {
        if (s->routes[i].action == 0)
            return fail_at(p, &s->routes[i].where, "route %s has no action (proxy, redirect or respond)%s",
                           s->routes[i].prefix.p, "");
        conf__route_defaults(p->cfg, &s->routes[i]);
    }
    for (size_t i = 0; i < s->nroutes; i++)
        if (conf__edge_route(p, s, &s->routes[i]) < 0)
            return -1;
    sort_routes(s->routes, s->nroutes);
    for (size_t i = 1; i < s->nroutes; i++) {
        const gh_cfg_route *a = &s->routes[i - 1], *b = &s->routes[i];

        if (!same_match(a, b))
            continue;
        /* Sorting is stable, so b is the later one in the file: that is the line to fix. */
        snprintf(first, sizeof(first), "%s:%d", a->where.file, a->where.line);
        return fail_at(p, &b->where, "duplicate route %s with the same conditions (first at %s)", b->prefix.p, first);
    }
    return 0;
}

static int stream_fail(conf__parser *p, const gh_cfg_stream *st, const char *why)
{
    return conf__fail(p, st->where.file, st->where.line, "stream %s %s", st->name.p, why);
}

/* One service on its own: what it needs, what goes together. */
static int check_stream(conf__parser *p, gh_cfg_stream *st)
{
    const gh_config *c = p->cfg;

    if (!st->has_listen)
        return stream_fail(p, st, "has no listen (add \"listen ADDRESS:PORT\")");
    if (st->pool_name.len == 0)
        return stream_fail(p, st, "has no pool (add \"proxy POOL\")");
    if ((st->pool = gh_config_pool(c, st->pool_name.p)) == NULL)
        return conf__fail(p, st->where.file, st->where.line, "stream %s: unknown pool \"%s\"", st->name.p,
                          st->pool_name.p);
    if (st->passthrough && st->ncerts > 0)
        return stream_fail(p, st, "is passthrough: the backend has the certificate, remove cert");
    if (st->passthrough && st->protocol == GH_STREAM_POSTGRES)
        return stream_fail(
            p, st, "is passthrough: postgres negotiates TLS inside its protocol; use protocol raw for direct TLS");
    if (st->protocol == GH_STREAM_POSTGRES && st->ncerts == 0)
        return stream_fail(p, st, "speaks postgres and needs a cert to terminate TLS with");
    if (st->allow_plaintext && st->protocol != GH_STREAM_POSTGRES)
        return stream_fail(p, st, "has allow_plaintext, which is for protocol postgres only");
    if (st->nnames > 0 && st->ncerts == 0 && !st->passthrough)
        return stream_fail(p, st, "has sni names but takes plain TCP: add cert, or passthrough");
    if (!(st->set & GH_STREAM_SET_CONNECT))
        st->connect_timeout = c->timeouts.connect;
    if (!(st->set & GH_STREAM_SET_IDLE))
        st->idle_timeout = c->timeouts.tunnel;
    return 0;
}

static int stream_has_name(const gh_cfg_stream *st, const char *name)
{
    for (size_t k = 0; k < st->nnames; k++)
        if (strcmp(st->names[k].p, name) == 0)
            return 1;
    return 0;
}

/* The services that share a listener: one protocol, at most one default, each SNI name once. */
static int check_stream_listener(conf__parser *p, size_t li)
{
    const gh_config *c = p->cfg;
    const gh_cfg_stream *first = NULL, *def = NULL;
    size_t n = 0;
    char at[512];

    for (size_t i = 0; i < c->nstreams; i++) {
        const gh_cfg_stream *st = &c->streams[i];

        if (st->listener != li)
            continue;
        if (++n > GH_CFG_MAX_STREAMS_PER_LISTENER)
            return stream_fail(p, st, "is one stream service too many on its listener (at most 64)");
        if (first == NULL) {
            first = st;
        } else {
            snprintf(at, sizeof(at), "%s:%d", first->where.file, first->where.line);
            if (st->protocol != first->protocol)
                return conf__fail(p, st->where.file, st->where.line,
                                  "stream %s: one listener speaks one protocol (stream %s at %s)", st->name.p,
                                  first->name.p, at);
            if ((st->ncerts == 0 && !st->passthrough) || (first->ncerts == 0 && !first->passthrough))
                return conf__fail(p, st->where.file, st->where.line,
                                  "stream %s: a plain TCP service needs a listener of its own (stream %s at %s)",
                                  st->name.p, first->name.p, at);
        }
        if (st->nnames == 0) {
            if (def != NULL) {
                snprintf(at, sizeof(at), "%s:%d", def->where.file, def->where.line);
                return conf__fail(p, st->where.file, st->where.line,
                                  "stream %s: two services without sni on %s (stream %s at %s): give one sni names",
                                  st->name.p, c->listeners[li].addr.text, def->name.p, at);
            }
            def = st;
        }
        for (size_t k = 0; k < st->nnames; k++)
            for (size_t j = 0; j < i; j++)
                if (c->streams[j].listener == li && stream_has_name(&c->streams[j], st->names[k].p)) {
                    snprintf(at, sizeof(at), "%s:%d", c->streams[j].where.file, c->streams[j].where.line);
                    return conf__fail(p, st->where.file, st->where.line, "stream %s: sni %s is stream %s's (at %s)",
                                      st->name.p, st->names[k].p, c->streams[j].name.p, at);
                }
    }
    return 0;
}

static int check_streams(conf__parser *p)
{
    gh_config *c = p->cfg;

    for (size_t i = 0; i < c->nstreams; i++)
        if (check_stream(p, &c->streams[i]) < 0)
            return -1;
    for (size_t li = 0; li < c->nlisteners; li++)
        if (c->listeners[li].stream && check_stream_listener(p, li) < 0)
            return -1;
    return 0;
}

int conf__validate(conf__parser *p)
{
    gh_config *c = p->cfg;
    const char *main_file = c->path;

    for (size_t i = 0; i < c->nstreams; i++)
        if (!c->streams[i].has_listen) /* before "no listener": it is this block that lacks one */
            return stream_fail(p, &c->streams[i], "has no listen (add \"listen ADDRESS:PORT\")");
    if (c->nlisteners == 0)
        return conf__fail(p, main_file, p->main_lines, "no listener: add one, such as \"listen 0.0.0.0:443 tls\"");
    if (c->nsites == 0 && c->nstreams == 0)
        return conf__fail(p, main_file, p->main_lines, "no site: add one, such as \"site default { ... }\"");
    if (resolve_pool_refs(p) < 0 || check_pools(p) < 0 || conf__edge_logs(p) < 0 || check_streams(p) < 0)
        return -1;
    for (size_t i = 0; i < c->nsites; i++)
        if (site_listeners(p, i) < 0 || check_site(p, &c->sites[i]) < 0)
            return -1;
    if (conf__check_admin(p) < 0)
        return -1;
    return check_listeners(p);
}
