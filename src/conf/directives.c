/*
 * directives: the main context and `timeouts { }`, and the lookup over every
 * table. Each handler checks its own arguments and fills the object of its
 * block; checks that need the whole file (references, listeners per site) are
 * in validate.c. docs/config.md documents every directive of the tables.
 */
#include "conf/directives.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define ARG(i) (&d->args[(i)])

static int d_workers(conf__parser *p, const conf__directive *d)
{
    uint64_t v;
    long cores;
    int capped;

    if (conf__arg_is(ARG(0), "auto")) {
        cores = sysconf(_SC_NPROCESSORS_ONLN);
        p->cfg->workers = gh_conf_auto_workers(cores, GH_CFG_MAX_WORKERS, &capped);
        if (capped)
            gh_log_warn("%s:%d: workers auto: %ld cores, capped at %d workers", p->file, d->line, cores,
                        GH_CFG_MAX_WORKERS);
        return 0;
    }
    if (conf__uint_arg(p, d->line, "worker count", ARG(0)->p, ARG(0)->len, 1, GH_CFG_MAX_WORKERS, &v) < 0)
        return -1;
    p->cfg->workers = (int)v;
    return 0;
}

static int d_max_connections(conf__parser *p, const conf__directive *d)
{
    uint64_t v;

    if (conf__arg_is(ARG(0), "auto")) {
        p->cfg->max_connections = 0;
        return 0;
    }
    if (conf__uint_arg(p, d->line, "connection limit", ARG(0)->p, ARG(0)->len, 1, GH_CFG_MAX_CONNS, &v) < 0)
        return -1;
    p->cfg->max_connections = (uint32_t)v;
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
        return conf__bad_value(p, d->line, "log level", ARG(0), "expected error, warn, info or debug");
    p->cfg->log_level = v;
    return 0;
}

/* `resolver ADDRESS[:PORT]...`: numeric DNS servers, port 53 unless given ("[::1]:5353" for IPv6 with a port). */
static int d_resolver(conf__parser *p, const conf__directive *d)
{
    char list[8 * 72], one[80]; /* 8 servers at most (the table's limit), each at most 64 bytes long */
    size_t len = 0;

    for (size_t i = 0; i < d->nargs; i++) {
        const conf__arg *a = ARG(i);
        const char *colon = a->len > 0 ? memchr(a->p, ':', a->len) : NULL;
        int bare = colon == NULL || (a->p[0] != '[' && memchr(colon + 1, ':', a->len - (size_t)(colon + 1 - a->p)));
        gh_addr addr;
        int n;

        /* "10.0.0.1" and "2001:db8::1" take port 53; "10.0.0.1:5353" and "[2001:db8::1]:5353" keep theirs */
        if (bare)
            n = snprintf(one, sizeof(one), colon ? "[%.*s]:53" : "%.*s:53", (int)a->len, a->p);
        else
            n = snprintf(one, sizeof(one), "%.*s", (int)a->len, a->p);
        if (n < 0 || (size_t)n >= sizeof(one) || gh_addr_parse(&addr, one) < 0)
            return conf__bad_value(p, d->line, "DNS server", a, "expected a numeric address, with an optional port");
        n = snprintf(list + len, sizeof(list) - len, "%s%s", len ? "," : "", addr.text);
        if (n < 0 || (size_t)n >= sizeof(list) - len)
            return conf__bad_value(p, d->line, "DNS server", a, "too many servers");
        len += (size_t)n;
    }
    if ((p->cfg->resolver = conf__arena_strndup(p->a, list, len)) == NULL)
        return conf__oom(p, d->line);
    return 0;
}

/* The portable account names of useradd(8): a letter or '_' first, then letters, digits, '.', '_', '-'. */
static int is_account_name(const conf__arg *a)
{
    if (a->len == 0 || a->len > 32 || !(isalpha((unsigned char)a->p[0]) || a->p[0] == '_'))
        return 0;
    for (size_t i = 1; i < a->len; i++)
        if (!isalnum((unsigned char)a->p[i]) && a->p[i] != '.' && a->p[i] != '_' && a->p[i] != '-')
            return 0;
    return 1;
}

/*
 * `user NAME` / `group NAME`: names, not numbers resolved here, because a
 * worker parses the file again at a reload (from the bundle) and must not ask
 * NSS; the master resolves them once, at start (core/sandbox.h), and says
 * FILE:LINE when the account does not exist.
 */
static int d_account(conf__parser *p, const conf__directive *d)
{
    int is_user = conf__arg_is(&d->name, "user");
    gh_cstr name;

    if (!is_account_name(ARG(0)))
        return conf__bad_value(p, d->line, is_user ? "user" : "group", ARG(0),
                               "expected an account name (letters, digits, '.', '_', '-'; not a number)");
    if (conf__dup_arg(p, d->line, ARG(0), &name) < 0)
        return -1;
    if (is_user) {
        p->cfg->user = name.p;
        p->cfg->user_where = (gh_cfg_where){p->file, d->line};
    } else {
        p->cfg->group = name.p;
        p->cfg->group_where = (gh_cfg_where){p->file, d->line};
    }
    return 0;
}

static int d_seccomp(conf__parser *p, const conf__directive *d)
{
    if (conf__arg_is(ARG(0), "on"))
        p->cfg->seccomp = 1;
    else if (conf__arg_is(ARG(0), "off"))
        p->cfg->seccomp = 0;
    else
        return conf__bad_value(p, d->line, "seccomp", ARG(0), "expected on or off");
    return 0;
}

static int d_timeouts(conf__parser *p, const conf__directive *d)
{
    return conf__parse_nested(p, CONF__CTX_TIMEOUTS, d->line);
}

int conf__listen_addr(conf__parser *p, int line, const conf__arg *arg, gh_addr *a)
{
    char text[128];

    if (arg->len == 0 || arg->len >= sizeof(text))
        return conf__bad_value(p, line, "listen address", arg, "expected a numeric host:port such as 0.0.0.0:443");
    memcpy(text, arg->p, arg->len);
    text[arg->len] = '\0';
    if (gh_addr_parse(a, text) < 0)
        return conf__bad_value(p, line, "listen address", arg,
                               "expected a numeric host:port such as 0.0.0.0:443 or [::]:443");
    return 0;
}

static int d_http2(conf__parser *p, const conf__directive *d)
{
    return conf__parse_nested(p, CONF__CTX_HTTP2, d->line);
}

/* `protocols=h2,http/1.1`: each once, in our order of preference (the ALPN order on TLS). */
static int listen_protocols(conf__parser *p, int line, const conf__arg *a, const char *v, size_t len,
                            gh_cfg_listener *l)
{
    const char *end = v + len;

    l->nprotos = 0;
    while (v <= end) {
        const char *comma = memchr(v, ',', (size_t)(end - v)), *stop = comma ? comma : end;
        size_t n = (size_t)(stop - v);
        uint8_t proto = 0;

        if (n == 2 && memcmp(v, "h2", 2) == 0)
            proto = GH_CFG_PROTO_H2;
        else if (n == 8 && memcmp(v, "http/1.1", 8) == 0)
            proto = GH_CFG_PROTO_HTTP1;
        if (proto == 0 || l->nprotos == 2 || (l->nprotos == 1 && l->protos[0] == proto))
            return conf__bad_value(p, line, "listen protocols", a,
                                   "expected h2, http/1.1 or both, each once, comma-separated");
        l->protos[l->nprotos++] = proto;
        v = stop + 1;
    }
    return 0;
}

/* `from=NET,NET...` (cidr.h): the networks trusted to send a PROXY protocol header. */
static int pp_from(conf__parser *p, int line, const conf__arg *a, const char *v, size_t n, gh_cfg_listener *l)
{
    size_t count = 1;

    for (size_t i = 0; i < n; i++)
        count += v[i] == ',';
    if (n == 0 || count > CONF__MAX_PP_FROM)
        return conf__bad_value(p, line, "proxy_protocol from", a,
                               "expected up to 64 networks separated by commas, such as from=10.0.0.0/8,192.0.2.7");
    l->pp_from = conf__arena_alloc(p->a, count * sizeof(*l->pp_from));
    if (l->pp_from == NULL)
        return conf__oom(p, line);
    l->npp_from = 0;
    for (const char *s = v, *end = v + n; s <= end;) {
        const char *comma = memchr(s, ',', (size_t)(end - s)), *stop = comma != NULL ? comma : end;
        const char *why = "empty";
        conf__arg one = {s, (size_t)(stop - s), 0};

        if (one.len == 0 || gh_cidr_parse(s, one.len, &l->pp_from[l->npp_from], &why) < 0)
            return conf__bad_value(p, line, "proxy_protocol network", &one, why);
        l->npp_from++;
        s = stop + 1;
    }
    return 0;
}

int conf__listen_options(conf__parser *p, const conf__directive *d, size_t first, gh_cfg_listener *l, int allow_tls)
{
    int from = 0;

    for (size_t i = first; i < d->nargs; i++) {
        const char *v;
        size_t n;

        if (allow_tls && conf__arg_is(ARG(i), "tls") && !l->tls) {
            l->tls = 1;
        } else if (allow_tls && (v = conf__option_value(ARG(i), "protocols", &n)) != NULL && l->nprotos == 0) {
            if (listen_protocols(p, d->line, ARG(i), v, n, l) < 0)
                return -1;
        } else if (conf__arg_is(ARG(i), "proxy_protocol") && !l->proxy_protocol) {
            l->proxy_protocol = 1;
        } else if ((v = conf__option_value(ARG(i), "from", &n)) != NULL && !from) {
            if (pp_from(p, d->line, ARG(i), v, n, l) < 0)
                return -1;
            from = 1;
        } else {
            return conf__bad_value(
                p, d->line, "listen option", ARG(i),
                allow_tls ? "expected tls, protocols=h2,http/1.1, proxy_protocol and from=NETWORKS, each at most once"
                          : "expected proxy_protocol and from=NETWORKS, each at most once (a "
                            "stream's TLS comes with its cert)");
        }
    }
    /* Trusting every source would let any client choose the address we log and
     * match: the trusted senders are always named, 0.0.0.0/0 when meant. */
    if (l->proxy_protocol && !from)
        return conf__fail(p, NULL, d->line,
                          "proxy_protocol needs from=NETWORKS: the senders trusted to name the client");
    if (from && !l->proxy_protocol)
        return conf__fail(p, NULL, d->line, "from= is for proxy_protocol: add proxy_protocol or drop from=");
    return 0;
}

int conf__cert(conf__parser *p, const conf__directive *d, gh_cfg_cert **certs, size_t *ncerts)
{
    gh_cfg_cert *cert;

    if (ARG(0)->len == 0 || ARG(1)->len == 0)
        return conf__fail(p, NULL, d->line, "cert needs a certificate file and a key file");
    cert = conf__arena_push(p->a, (void **)certs, ncerts, &p->cap_certs, sizeof(*cert));
    if (cert == NULL)
        return conf__oom(p, d->line);
    cert->where = (gh_cfg_where){p->file, d->line};
    if (conf__relative_path(p, ARG(0)->p, ARG(0)->len, &cert->cert_file) < 0)
        return -1;
    return conf__relative_path(p, ARG(1)->p, ARG(1)->len, &cert->key_file);
}

static int d_listen(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_listener *l;
    gh_addr a;

    if (conf__listen_addr(p, d->line, ARG(0), &a) < 0)
        return -1;
    for (size_t i = 0; i < c->nlisteners; i++)
        if (strcmp(c->listeners[i].addr.text, a.text) == 0)
            return conf__fail(p, NULL, d->line, "duplicate listener %s (first at %s:%d%s)", a.text,
                              c->listeners[i].where.file, c->listeners[i].where.line,
                              c->listeners[i].stream ? ", a stream service's" : "");
    l = conf__arena_push(p->a, (void **)&c->listeners, &c->nlisteners, &p->cap_listeners, sizeof(*l));
    if (l == NULL)
        return conf__oom(p, d->line);
    l->addr = a;
    l->where = (gh_cfg_where){p->file, d->line};
    return conf__listen_options(p, d, 1, l, 1);
}

/* One row per GH_CFG_TIMEOUTS entry: `timeouts { NAME DURATION }`. */
/* clang-format off */
#define TIMEOUT(name, flag, ms, help)                                                                                  \
    {#name, CONF__CTX_TIMEOUTS, 1, 1, 0, 0, NULL, #name " DURATION",                                                   \
     CONF__SLOT(conf__set_duration, gh_cfg_timeouts, name, uint32_t, 0, 0, "duration")},
/* clang-format on */

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__main_directives[] = {
    {"include", -1, 1, 1, 0, 1, conf__include, "include PATH-OR-GLOB"},
    {"workers", CONF__CTX_MAIN, 1, 1, 0, 0, d_workers, "workers N|auto"},
    {"max_connections", CONF__CTX_MAIN, 1, 1, 0, 0, d_max_connections, "max_connections N|auto"},
    {"log_level", CONF__CTX_MAIN, 1, 1, 0, 0, d_log_level, "log_level error|warn|info|debug"},
    {"user", CONF__CTX_MAIN, 1, 1, 0, 0, d_account, "user NAME"},
    {"group", CONF__CTX_MAIN, 1, 1, 0, 0, d_account, "group NAME"},
    {"seccomp", CONF__CTX_MAIN, 1, 1, 0, 0, d_seccomp, "seccomp on|off"},
    {"max_body", CONF__CTX_MAIN, 1, 1, 0, 0, NULL, "max_body SIZE|off",
     CONF__SLOT(conf__set_limit, gh_config, max_body, uint64_t, 0, 0, "size")},
    {"resolve_interval", CONF__CTX_MAIN, 1, 1, 0, 0, NULL, "resolve_interval DURATION",
     CONF__SLOT(conf__set_duration, gh_config, resolve_interval, uint32_t, 0, 0, "resolve_interval")},
    {"resolver", CONF__CTX_MAIN, 1, 8, 0, 0, d_resolver, "resolver ADDRESS[:PORT]..."},
    {"request_buffer", CONF__CTX_MAIN, 1, 1, 0, 0, conf__d_request_buffer, "request_buffer SIZE|off"},
    {"body_min_rate", CONF__CTX_MAIN, 1, 2, 0, 0, conf__d_body_min_rate, "body_min_rate SIZE [GRACE]|off"},
    {"timeouts", CONF__CTX_MAIN, 0, 0, 1, 0, d_timeouts, "timeouts { NAME DURATION ... }"},
    {"listen", CONF__CTX_MAIN, 1, 5, 0, 1, d_listen,
     "listen ADDRESS:PORT [tls] [protocols=h2,http/1.1] [proxy_protocol from=NETWORKS]"},
    {"http2", CONF__CTX_MAIN, 0, 0, 1, 0, d_http2, "http2 { NAME VALUE ... }"},
    {"pool", CONF__CTX_MAIN, 1, 1, 1, 1, conf__d_pool, "pool NAME { ... }"},
    {"site", CONF__CTX_MAIN, 1, CONF__MAX_ARGS, 1, 1, conf__d_site, "site NAME... { ... }"},
    {"stream", CONF__CTX_MAIN, 1, 1, 1, 1, conf__d_stream, "stream NAME { ... }"},
    {"admin", CONF__CTX_MAIN, 0, 0, 1, 0, conf__d_admin, "admin { listen ADDRESS:PORT; allow NETWORK... }"},
    /* clang-format off */
    GH_CFG_TIMEOUTS(TIMEOUT)
    /* clang-format on */
    /* `http2 { }`: SETTINGS gatehouse sends and the bounds it enforces (RFC 9113 6.5.2). */
    {"max_concurrent_streams", CONF__CTX_HTTP2, 1, 1, 0, 0, NULL, "max_concurrent_streams N",
     CONF__COUNT(gh_cfg_http2, max_concurrent_streams, 1, 10000)},
    {"max_header_list_size", CONF__CTX_HTTP2, 1, 1, 0, 0, NULL, "max_header_list_size SIZE",
     CONF__SIZE(gh_cfg_http2, max_header_list_size, 1024, 1024 * 1024)},
    {"header_table_size", CONF__CTX_HTTP2, 1, 1, 0, 0, NULL, "header_table_size SIZE",
     CONF__SIZE(gh_cfg_http2, header_table_size, 0, 64 * 1024)},
    {"max_frame_size", CONF__CTX_HTTP2, 1, 1, 0, 0, NULL, "max_frame_size SIZE",
     CONF__SIZE(gh_cfg_http2, max_frame_size, 16384, 16777215)},
    {"initial_window_size", CONF__CTX_HTTP2, 1, 1, 0, 0, NULL, "initial_window_size SIZE",
     CONF__SIZE(gh_cfg_http2, initial_window_size, 1024, 16 * 1024 * 1024)},
    {"max_connection_memory", CONF__CTX_HTTP2, 1, 1, 0, 0, NULL, "max_connection_memory SIZE",
     CONF__SIZE(gh_cfg_http2, max_connection_memory, 256 * 1024, 1024 * 1024 * 1024)},
    {NULL},
};
CONF__TABLE_END

/* In this order: a name in several contexts is reported as belonging to the first ("listen", "max_body"). */
static const conf__dirspec *const tables[] = {conf__main_directives,  conf__pool_directives,   conf__site_directives,
                                              conf__route_directives, conf__edge_directives,   conf__stream_directives,
                                              conf__admin_directives, conf__forward_directives};

const conf__dirspec *conf__find_directive(int ctx, const char *name, size_t len)
{
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++)
        for (const conf__dirspec *s = tables[t]; s->name != NULL; s++)
            if ((ctx < 0 || s->ctx < 0 || s->ctx == ctx) && strlen(s->name) == len && memcmp(s->name, name, len) == 0)
                return s;
    return NULL;
}

const char *conf__context_name(int ctx)
{
    static const char *const names[] = {"the main context", "a timeouts block", "a pool block",
                                        "a site block",     "a route block",    "a stream block",
                                        "an http2 block",   "the admin block",  "a forward block"};

    return ctx >= 0 && ctx < (int)(sizeof(names) / sizeof(names[0])) ? names[ctx] : "another block";
}
