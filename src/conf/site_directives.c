/*
 * site_directives: `site NAME... { }` and what it holds: certificates, the
 * listeners it serves, and its routes (whose own directives are in
 * route_directives.c).
 */
#include <ctype.h>
#include <string.h>

#include "conf/directives.h"
#include "http/h1.h"

#define ARG(i) (&d->args[(i)])

static int site_name(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    size_t start = a->len >= 2 && a->p[0] == '*' && a->p[1] == '.' ? 2 : 0;
    char *s;

    if (a->len == start || a->len > 255)
        return conf__bad_value(p, line, "site name", a, "expected a host name, *.domain or default");
    for (size_t i = start; i < a->len; i++) {
        unsigned char c = (unsigned char)a->p[i];

        if (!conf__is_name_char(c) && c != ':' && c != '[' && c != ']')
            return conf__bad_value(p, line, "site name", a,
                                   c == '*' ? "a wildcard is only allowed as a leading \"*.\"" : "not a host name");
    }
    if (a->p[a->len - 1] == '.')
        return conf__bad_value(p, line, "site name", a, "write it without the trailing dot");
    /* Brackets and colons only as an IPv6 literal "[...]": a port never belongs in a site name. */
    if ((memchr(a->p, ':', a->len) || memchr(a->p, '[', a->len) || memchr(a->p, ']', a->len)) &&
        (start != 0 || a->p[0] != '[' || a->p[a->len - 1] != ']' || memchr(a->p + 1, '[', a->len - 1) ||
         memchr(a->p, ']', a->len - 1)))
        return conf__bad_value(p, line, "site name", a, "no port here (sites serve the listeners they name)");
    if ((s = conf__arena_strndup(p->a, a->p, a->len)) == NULL)
        return conf__oom(p, line);
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

        if (conf__arg_is(ARG(i), "default")) {
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
            return conf__oom(p, d->line);
        *slot = name;
    }
    return 0;
}

int conf__d_site(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_site *site;
    int rc;

    site = conf__arena_push(p->a, (void **)&c->sites, &c->nsites, &p->cap_sites, sizeof(*site));
    if (site == NULL)
        return conf__oom(p, d->line);
    site->where = (gh_cfg_where){p->file, d->line};
    p->cap_names = p->cap_certs = p->cap_routes = p->cap_site_rules = p->cap_site_hide = p->cap_site_resp_ops = 0;
    if (add_site_names(p, d, site) < 0)
        return -1;
    p->site = site;
    rc = conf__parse_nested(p, CONF__CTX_SITE, d->line);
    p->site = NULL;
    return rc;
}

static int d_cert(conf__parser *p, const conf__directive *d)
{
    return conf__cert(p, d, &p->site->certs, &p->site->ncerts);
}

static int d_site_listen(conf__parser *p, const conf__directive *d)
{
    conf__listen_ref *ref;
    gh_addr a;

    if (conf__listen_addr(p, d->line, ARG(0), &a) < 0)
        return -1;
    ref = conf__arena_push(p->a, (void **)&p->listen_refs, &p->nlisten_refs, &p->cap_listen_refs, sizeof(*ref));
    if (ref == NULL)
        return conf__oom(p, d->line);
    ref->site = p->cfg->nsites - 1;
    ref->addr = a;
    ref->where = (gh_cfg_where){p->file, d->line};
    return 0;
}

/* A path prefix: starts with '/', printable, no query or fragment (routes match the path only). */
static int route_prefix(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    if (a->len == 0 || a->p[0] != '/')
        return conf__bad_value(p, line, "route prefix", a, "must start with /");
    if (!conf__is_field_text(a->p, a->len, 0) || memchr(a->p, '?', a->len) || memchr(a->p, '#', a->len))
        return conf__bad_value(p, line, "route prefix", a, "a path without spaces, '?' or '#'");
    /* Requests are routed by their canonical path (gh_h1_request_canonical_path): a prefix in
     * another spelling could never match, and would leave what it meant to guard open. */
    if (!gh_h1_path_normal((gh_h1_str){a->p, a->len}) || memmem(a->p, a->len, "//", 2) != NULL)
        return conf__bad_value(p, line, "route prefix", a,
                               "requests with '//', ';', '\\', dot segments or such escapes are merged or refused, "
                               "so this prefix would never match");
    return conf__dup_arg(p, line, a, out);
}

static int d_route(conf__parser *p, const conf__directive *d)
{
    gh_cfg_site *site = p->site;
    gh_cfg_route *r;
    int rc;

    r = conf__arena_push(p->a, (void **)&site->routes, &site->nroutes, &p->cap_routes, sizeof(*r));
    if (r == NULL)
        return conf__oom(p, d->line);
    r->where = (gh_cfg_where){p->file, d->line};
    r->websocket = 1;
    if (route_prefix(p, d->line, ARG(0), &r->prefix) < 0)
        return -1;
    p->cap_methods = p->cap_hmatch = p->cap_req_ops = p->cap_resp_ops = p->cap_target = 0;
    p->cap_route_rules = p->cap_route_hide = 0;
    p->route = r;
    rc = conf__parse_nested(p, CONF__CTX_ROUTE, d->line);
    p->route = NULL;
    return rc;
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__site_directives[] = {
    {"cert", CONF__CTX_SITE, 2, 2, 0, 1, d_cert, "cert CERT-FILE KEY-FILE"},
    {"listen", CONF__CTX_SITE, 1, 1, 0, 1, d_site_listen, "listen ADDRESS:PORT (a listener declared at the top)"},
    {"route", CONF__CTX_SITE, 1, 1, 1, 1, d_route, "route PREFIX { ... }"},
    {"response_header", CONF__CTX_SITE, 2, 3, 0, 1, conf__d_header_op, "response_header set NAME VALUE | remove NAME"},
    {NULL},
};
CONF__TABLE_END
