/*
 * route_directives: what a `route PREFIX { }` holds: its action (proxy,
 * redirect, respond), its conditions (method, header), its own limits and
 * timeouts, and header rewriting.
 */
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "conf/directives.h"
#include "conf/units.h"

#define ARG(i) (&d->args[(i)])

static int status_arg(conf__parser *p, int line, const conf__arg *a, int min, int max, int *status)
{
    uint64_t v;

    if (gh_conf_parse_uint(a->p, a->len, (uint64_t)min, (uint64_t)max, &v) < 0)
        return conf__fail(p, NULL, line, "invalid status \"%.*s\": expected %d to %d", (int)a->len, a->p, min, max);
    *status = (int)v;
    return 0;
}

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
        return conf__oom(p, d->line);
    ref->site = p->cfg->nsites - 1;
    ref->route = p->site->nroutes - 1;
    ref->where = (gh_cfg_where){p->file, d->line};
    if (conf__dup_arg(p, d->line, ARG(0), &ref->name) < 0)
        return -1;
    if (d->nargs == 1)
        return 0;
    if (d->nargs == 2 && conf__arg_is(ARG(1), "strip_prefix")) {
        r->rewrite = GH_REWRITE_STRIP;
        return 0;
    }
    if (d->nargs == 3 && conf__arg_is(ARG(1), "replace_prefix")) {
        r->rewrite = GH_REWRITE_REPLACE;
        if (ARG(2)->len == 0 || ARG(2)->p[0] != '/' || !conf__is_field_text(ARG(2)->p, ARG(2)->len, 0))
            return conf__bad_value(p, d->line, "replacement prefix", ARG(2), "must start with / and have no spaces");
        return conf__dup_arg(p, d->line, ARG(2), &r->replace_with);
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
        return conf__oom(p, line);
    seg->kind = kind;
    seg->text.p = conf__arena_strndup(p->a, text, len);
    seg->text.len = len;
    return seg->text.p == NULL ? conf__oom(p, line) : 0;
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

    if (a->len == 0 || !conf__is_field_text(a->p, a->len, 0))
        return conf__bad_value(p, line, "redirect target", a, "expected a URL without spaces");
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
    return conf__dup_arg(p, d->line, ARG(1), &r->body);
}

static int d_method(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;

    for (size_t i = 0; i < d->nargs; i++) {
        gh_cstr *m;

        if (!conf__is_token(ARG(i)->p, ARG(i)->len))
            return conf__bad_value(p, d->line, "method", ARG(i), "expected a token such as GET");
        m = conf__arena_push(p->a, (void **)&r->methods, &r->nmethods, &p->cap_methods, sizeof(*m));
        if (m == NULL || conf__dup_arg(p, d->line, ARG(i), m) < 0)
            return m == NULL ? conf__oom(p, d->line) : -1;
    }
    return 0;
}

static int d_header_match(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    gh_cfg_header_match *h;

    if (!conf__is_token(ARG(0)->p, ARG(0)->len))
        return conf__bad_value(p, d->line, "header name", ARG(0), "expected a token such as X-Canary");
    if (!conf__is_field_text(ARG(1)->p, ARG(1)->len, 1))
        return conf__bad_value(p, d->line, "header value", ARG(1), "control characters are not allowed");
    h = conf__arena_push(p->a, (void **)&r->headers, &r->nheaders, &p->cap_hmatch, sizeof(*h));
    if (h == NULL)
        return conf__oom(p, d->line);
    if (conf__dup_arg(p, d->line, ARG(0), &h->name) < 0 || conf__dup_arg(p, d->line, ARG(1), &h->value) < 0)
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

    if (conf__arg_is(ARG(0), "connect")) {
        bit = GH_ROUTE_SET_CONNECT;
        field = &r->connect_timeout;
    } else if (conf__arg_is(ARG(0), "response")) {
        bit = GH_ROUTE_SET_RESPONSE;
        field = &r->response_timeout;
    } else {
        return conf__bad_value(p, d->line, "route timeout", ARG(0), "expected connect or response");
    }
    if (r->set & bit)
        return conf__fail(p, NULL, d->line, "duplicate timeout %.*s", (int)ARG(0)->len, ARG(0)->p);
    r->set |= bit;
    return conf__duration_arg(p, d->line, "duration", ARG(1)->p, ARG(1)->len, field);
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

/* The route's own limit; the main context's max_body is its default (GH_ROUTE_SET_MAX_BODY: given here). */
static int d_max_body(conf__parser *p, const conf__directive *d)
{
    static const conf__slot limit = CONF__SLOT(conf__set_limit, gh_cfg_route, max_body, uint64_t, 0, 0, "size");

    p->route->set |= GH_ROUTE_SET_MAX_BODY;
    return limit.set(p, d->line, limit.what, ARG(0)->p, ARG(0)->len, (char *)p->route + limit.offset, &limit);
}

/*
 * request_buffer SIZE|off (A5): the body bytes read before a server is chosen.
 * At most GH_CFG_REQUEST_BUFFER_MAX: the body waits in one buffer with the head.
 */
int conf__d_request_buffer(conf__parser *p, const conf__directive *d)
{
    static const conf__slot size =
        CONF__SLOT(conf__set_size, gh_cfg_body_limits, buffer, uint64_t, 0, GH_CFG_REQUEST_BUFFER_MAX, "size");
    gh_cfg_body_limits *b = p->route != NULL ? &p->route->body_limits : &p->cfg->body_limits;

    if (p->route != NULL)
        p->route->set |= GH_ROUTE_SET_REQUEST_BUFFER;
    if (conf__arg_is(ARG(0), "off")) {
        b->buffer = 0;
        return 0;
    }
    return size.set(p, d->line, size.what, ARG(0)->p, ARG(0)->len, (char *)b + size.offset, &size);
}

/* body_min_rate SIZE [GRACE] | off (A5): bytes per second a body must average once GRACE (default 20s) is over. */
int conf__d_body_min_rate(conf__parser *p, const conf__directive *d)
{
    static const conf__slot rate = CONF__SLOT(conf__set_size, gh_cfg_body_limits, min_rate, uint64_t, 1, 0, "rate");
    static const conf__slot grace =
        CONF__SLOT(conf__set_duration, gh_cfg_body_limits, grace, uint32_t, 0, 0, "grace period");
    gh_cfg_body_limits *b = p->route != NULL ? &p->route->body_limits : &p->cfg->body_limits;

    if (p->route != NULL)
        p->route->set |= GH_ROUTE_SET_BODY_MIN_RATE;
    b->grace = GH_CFG_BODY_RATE_GRACE;
    if (conf__arg_is(ARG(0), "off")) {
        if (d->nargs != 1)
            return conf__bad_value(p, d->line, "body_min_rate", ARG(1), "nothing may follow off");
        b->min_rate = 0;
        return 0;
    }
    if (rate.set(p, d->line, rate.what, ARG(0)->p, ARG(0)->len, (char *)b + rate.offset, &rate) < 0)
        return -1;
    if (d->nargs == 2)
        return grace.set(p, d->line, grace.what, ARG(1)->p, ARG(1)->len, (char *)b + grace.offset, &grace);
    return 0;
}

/* In a route; `response_header` also in a site, for every route of it (security headers: docs/config.md). */
int conf__d_header_op(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;
    int response = d->name.p[1] == 'e' && d->name.p[2] == 's'; /* "response_header" vs "request_header" */
    gh_cfg_header_op *op;

    if (!(conf__arg_is(ARG(0), "set") && d->nargs == 3) && !(conf__arg_is(ARG(0), "remove") && d->nargs == 2))
        return conf__fail(p, NULL, d->line, "usage: %.*s set NAME VALUE | %.*s remove NAME", (int)d->name.len,
                          d->name.p, (int)d->name.len, d->name.p);
    if (!conf__is_token(ARG(1)->p, ARG(1)->len))
        return conf__bad_value(p, d->line, "header name", ARG(1), "expected a token such as X-From");
    if (is_protected_header(ARG(1)))
        return conf__bad_value(p, d->line, "header name", ARG(1), "framing headers are managed by gatehouse");
    /* RFC 9112 3.2: an HTTP/1.1 request carries exactly one Host; it can be set, never removed */
    if (!response && d->nargs == 2 && ARG(1)->len == 4 && strncasecmp(ARG(1)->p, "host", 4) == 0)
        return conf__bad_value(p, d->line, "header name", ARG(1), "an HTTP/1.1 request needs a Host: set it instead");
    if (d->nargs == 3 && !conf__is_field_text(ARG(2)->p, ARG(2)->len, 1))
        return conf__bad_value(p, d->line, "header value", ARG(2), "control characters are not allowed");
    if (response && r == NULL)
        op = conf__arena_push(p->a, (void **)&p->site->resp_ops, &p->site->nresp_ops, &p->cap_site_resp_ops,
                              sizeof(*op));
    else if (response)
        op = conf__arena_push(p->a, (void **)&r->resp_ops, &r->nresp_ops, &p->cap_resp_ops, sizeof(*op));
    else
        op = conf__arena_push(p->a, (void **)&r->req_ops, &r->nreq_ops, &p->cap_req_ops, sizeof(*op));
    if (op == NULL)
        return conf__oom(p, d->line);
    op->op = d->nargs == 3 ? GH_HEADER_SET : GH_HEADER_REMOVE;
    op->value = (gh_cstr){"", 0};
    if (conf__dup_arg(p, d->line, ARG(1), &op->name) < 0)
        return -1;
    return d->nargs == 3 ? conf__dup_arg(p, d->line, ARG(2), &op->value) : 0;
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__route_directives[] = {
    {"proxy", CONF__CTX_ROUTE, 1, 3, 0, 0, d_proxy, "proxy POOL [strip_prefix | replace_prefix NEW]"},
    {"redirect", CONF__CTX_ROUTE, 2, 2, 0, 0, d_redirect, "redirect 301|302|303|307|308 TARGET"},
    {"respond", CONF__CTX_ROUTE, 1, 2, 0, 0, d_respond, "respond STATUS [BODY]"},
    {"method", CONF__CTX_ROUTE, 1, CONF__MAX_ARGS, 0, 0, d_method, "method METHOD..."},
    {"header", CONF__CTX_ROUTE, 2, 2, 0, 1, d_header_match, "header NAME VALUE"},
    {"timeout", CONF__CTX_ROUTE, 2, 2, 0, 1, d_route_timeout, "timeout connect|response DURATION"},
    {"max_body", CONF__CTX_ROUTE, 1, 1, 0, 0, d_max_body, "max_body SIZE|off"},
    {"request_buffer", CONF__CTX_ROUTE, 1, 1, 0, 0, conf__d_request_buffer, "request_buffer SIZE|off"},
    {"body_min_rate", CONF__CTX_ROUTE, 1, 2, 0, 0, conf__d_body_min_rate, "body_min_rate SIZE [GRACE]|off"},
    {"websocket", CONF__CTX_ROUTE, 1, 1, 0, 0, NULL, "websocket on|off", CONF__FLAG(gh_cfg_route, websocket)},
    {"request_header", CONF__CTX_ROUTE, 2, 3, 0, 1, conf__d_header_op, "request_header set NAME VALUE | remove NAME"},
    {"response_header", CONF__CTX_ROUTE, 2, 3, 0, 1, conf__d_header_op, "response_header set NAME VALUE | remove NAME"},
    {NULL},
};
CONF__TABLE_END
