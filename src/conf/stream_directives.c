/*
 * stream_directives: `stream NAME { }`, a TCP (L4) service: its listener,
 * certificates (or passthrough, or none for plain TCP), protocol, SNI names,
 * pool, connection limit and timeouts (allow, deny and rate_limit are
 * edge_directives.c's rows, as in a site). The checks that need every service of
 * a listener (one default, names unique, one protocol) are in validate.c.
 */
#include <ctype.h>
#include <string.h>

#include "conf/directives.h"

#define ARG(i) (&d->args[(i)])

int conf__d_stream(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_stream *st;
    const conf__arg *name = ARG(0);
    int rc;

    if (name->len == 0)
        return conf__bad_value(p, d->line, "stream name", name, "empty");
    for (size_t i = 0; i < name->len; i++)
        if (!conf__is_name_char((unsigned char)name->p[i]))
            return conf__bad_value(p, d->line, "stream name", name, "use letters, digits, '-', '_' and '.'");
    for (size_t i = 0; i < c->nstreams; i++)
        if (conf__arg_is(name, c->streams[i].name.p))
            return conf__fail(p, NULL, d->line, "duplicate stream \"%s\" (first at %s:%d)", c->streams[i].name.p,
                              c->streams[i].where.file, c->streams[i].where.line);
    st = conf__arena_push(p->a, (void **)&c->streams, &c->nstreams, &p->cap_streams, sizeof(*st));
    if (st == NULL)
        return conf__oom(p, d->line);
    if (conf__dup_arg(p, d->line, name, &st->name) < 0)
        return -1;
    st->where = (gh_cfg_where){p->file, d->line};
    st->protocol = GH_STREAM_RAW;
    p->cap_names = p->cap_certs = p->cap_stream_rules = 0;
    p->stream = st;
    rc = conf__parse_nested(p, CONF__CTX_STREAM, d->line);
    p->stream = NULL;
    return rc;
}

/*
 * The service's listener: a new stream listener, or the one another stream
 * service made on the same address (they are then chosen by SNI). An HTTP
 * listener on it is an error: one socket has one mode.
 */
/* The same networks in the same order: a listener's proxy_protocol is one setting, however many lines name it. */
static int same_pp(const gh_cfg_listener *a, const gh_cfg_listener *b)
{
    return a->proxy_protocol == b->proxy_protocol && a->npp_from == b->npp_from &&
           (a->npp_from == 0 || memcmp(a->pp_from, b->pp_from, a->npp_from * sizeof(*a->pp_from)) == 0);
}

static int d_listen(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_stream *st = p->stream;
    gh_cfg_listener *l, opts = {0};
    gh_addr a;

    if (conf__listen_addr(p, d->line, ARG(0), &a) < 0)
        return -1;
    if (conf__listen_options(p, d, 1, &opts, 0) < 0)
        return -1;
    for (size_t i = 0; i < c->nlisteners; i++) {
        if (strcmp(c->listeners[i].addr.text, a.text) != 0)
            continue;
        if (!c->listeners[i].stream)
            return conf__fail(p, NULL, d->line, "listener %s is an HTTP listener (%s:%d); a stream needs its own",
                              a.text, c->listeners[i].where.file, c->listeners[i].where.line);
        /* Services sharing a listener share its PROXY protocol setting: a later line repeats it or says nothing. */
        if (d->nargs > 1 && !same_pp(&c->listeners[i], &opts))
            return conf__fail(p, NULL, d->line,
                              "listener %s has other proxy_protocol options at %s:%d (services on one listener share "
                              "them)",
                              a.text, c->listeners[i].where.file, c->listeners[i].where.line);
        st->listener = i;
        st->has_listen = 1;
        return 0;
    }
    l = conf__arena_push(p->a, (void **)&c->listeners, &c->nlisteners, &p->cap_listeners, sizeof(*l));
    if (l == NULL)
        return conf__oom(p, d->line);
    *l = opts;
    l->addr = a;
    l->stream = 1;
    l->where = (gh_cfg_where){p->file, d->line};
    st->listener = c->nlisteners - 1;
    st->has_listen = 1;
    return 0;
}

static int d_cert(conf__parser *p, const conf__directive *d)
{
    return conf__cert(p, d, &p->stream->certs, &p->stream->ncerts);
}

static int d_protocol(conf__parser *p, const conf__directive *d)
{
    if (conf__arg_is(ARG(0), "raw"))
        p->stream->protocol = GH_STREAM_RAW;
    else if (conf__arg_is(ARG(0), "postgres"))
        p->stream->protocol = GH_STREAM_POSTGRES;
    else
        return conf__bad_value(p, d->line, "stream protocol", ARG(0),
                               "expected raw (TLS from the first byte) or postgres (SSLRequest, or direct TLS)");
    return 0;
}

/* An SNI name (RFC 6066 3: a DNS host name, no trailing dot, no IP literal), or "*.domain" for one label. */
static int sni_name(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    size_t start = a->len >= 2 && a->p[0] == '*' && a->p[1] == '.' ? 2 : 0;
    char *s;

    if (a->len == start || a->len > 253 || a->p[a->len - 1] == '.')
        return conf__bad_value(p, line, "sni name", a, "expected a host name or *.domain");
    for (size_t i = start; i < a->len; i++)
        if (!conf__is_name_char((unsigned char)a->p[i]) || a->p[i] == '_')
            return conf__bad_value(p, line, "sni name", a,
                                   a->p[i] == '*' ? "a wildcard is only allowed as a leading \"*.\""
                                                  : "not a host name");
    if ((s = conf__arena_strndup(p->a, a->p, a->len)) == NULL)
        return conf__oom(p, line);
    for (size_t i = 0; i < a->len; i++)
        s[i] = (char)tolower((unsigned char)s[i]);
    *out = (gh_cstr){s, a->len};
    return 0;
}

static int d_sni(conf__parser *p, const conf__directive *d)
{
    gh_cfg_stream *st = p->stream;

    for (size_t i = 0; i < d->nargs; i++) {
        gh_cstr name, *slot;

        if (sni_name(p, d->line, ARG(i), &name) < 0)
            return -1;
        for (size_t k = 0; k < st->nnames; k++)
            if (strcmp(st->names[k].p, name.p) == 0)
                return conf__fail(p, NULL, d->line, "sni name \"%s\" given twice", name.p);
        slot = conf__arena_push(p->a, (void **)&st->names, &st->nnames, &p->cap_names, sizeof(*slot));
        if (slot == NULL)
            return conf__oom(p, d->line);
        *slot = name;
    }
    return 0;
}

static int d_proxy(conf__parser *p, const conf__directive *d)
{
    for (size_t i = 0; i < ARG(0)->len; i++)
        if (!conf__is_name_char((unsigned char)ARG(0)->p[i]))
            return conf__bad_value(p, d->line, "pool name", ARG(0), "use letters, digits, '-', '_' and '.'");
    return conf__dup_arg(p, d->line, ARG(0), &p->stream->pool_name);
}

static int d_passthrough(conf__parser *p, const conf__directive *d)
{
    p->stream->passthrough = 1;
    return 0;
}

static int d_allow_plaintext(conf__parser *p, const conf__directive *d)
{
    p->stream->allow_plaintext = 1;
    return 0;
}

static int d_connect_timeout(conf__parser *p, const conf__directive *d)
{
    p->stream->set |= GH_STREAM_SET_CONNECT;
    return conf__duration_arg(p, d->line, "connect_timeout", ARG(0)->p, ARG(0)->len, &p->stream->connect_timeout);
}

static int d_idle_timeout(conf__parser *p, const conf__directive *d)
{
    p->stream->set |= GH_STREAM_SET_IDLE;
    return conf__duration_arg(p, d->line, "idle_timeout", ARG(0)->p, ARG(0)->len, &p->stream->idle_timeout);
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__stream_directives[] = {
    {"listen", CONF__CTX_STREAM, 1, 3, 0, 0, d_listen, "listen ADDRESS:PORT [proxy_protocol from=NETWORKS]"},
    {"cert", CONF__CTX_STREAM, 2, 2, 0, 1, d_cert, "cert CERT-FILE KEY-FILE"},
    {"protocol", CONF__CTX_STREAM, 1, 1, 0, 0, d_protocol, "protocol raw|postgres"},
    {"sni", CONF__CTX_STREAM, 1, CONF__MAX_ARGS, 0, 1, d_sni, "sni NAME..."},
    {"proxy", CONF__CTX_STREAM, 1, 1, 0, 0, d_proxy, "proxy POOL"},
    {"passthrough", CONF__CTX_STREAM, 0, 0, 0, 0, d_passthrough, "passthrough"},
    {"allow_plaintext", CONF__CTX_STREAM, 0, 0, 0, 0, d_allow_plaintext, "allow_plaintext"},
    {"max_connections", CONF__CTX_STREAM, 1, 1, 0, 0, NULL, "max_connections N",
     CONF__SLOT(conf__set_count, gh_cfg_stream, max_connections, uint32_t, 1, GH_CFG_MAX_CONNS, "connection limit")},
    {"connect_timeout", CONF__CTX_STREAM, 1, 1, 0, 0, d_connect_timeout, "connect_timeout DURATION"},
    {"idle_timeout", CONF__CTX_STREAM, 1, 1, 0, 0, d_idle_timeout, "idle_timeout DURATION"},
    {NULL},
};
CONF__TABLE_END
