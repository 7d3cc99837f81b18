/*
 * edge_directives: what an operator sets at the edge of a site or route:
 * access logs and their formats, allow/deny rules, rate limits, the response
 * headers hidden from clients, error interception and security headers; and
 * their resolution (a route's own, else its site's, else the main context's).
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf/directives.h"
#include "conf/units.h"
#include "core/common.h"

#define ARG(i) (&d->args[(i)])

/* The object whose edge a directive fills: the stream, the route, the site or the main context. */
static gh_cfg_edge *edge_of(conf__parser *p)
{
    if (p->stream != NULL)
        return &p->stream->edge;
    if (p->route != NULL)
        return &p->route->edge;
    if (p->site != NULL)
        return &p->site->edge;
    return &p->cfg->edge;
}

/* ---- log formats ---- */

static const char *const var_names[GH_LOGV_COUNT] = {
    [GH_LOGV_REMOTE_ADDR] = "remote_addr",
    [GH_LOGV_TIME_LOCAL] = "time_local",
    [GH_LOGV_TIME_ISO8601] = "time_iso8601",
    [GH_LOGV_MSEC] = "msec",
    [GH_LOGV_REQUEST] = "request",
    [GH_LOGV_METHOD] = "method",
    [GH_LOGV_URI] = "uri",
    [GH_LOGV_PROTOCOL] = "protocol",
    [GH_LOGV_SCHEME] = "scheme",
    [GH_LOGV_HOST] = "host",
    [GH_LOGV_STATUS] = "status",
    [GH_LOGV_BODY_BYTES_SENT] = "body_bytes_sent",
    [GH_LOGV_REQUEST_TIME] = "request_time",
    [GH_LOGV_UPSTREAM_ADDR] = "upstream_addr",
    [GH_LOGV_UPSTREAM_RESPONSE_TIME] = "upstream_response_time",
    [GH_LOGV_HTTP_REFERER] = "http_referer",
    [GH_LOGV_HTTP_USER_AGENT] = "http_user_agent",
    [GH_LOGV_SITE] = "site",
    [GH_LOGV_ROUTE] = "route",
    [GH_LOGV_REMOTE_USER] = "remote_user",
    [GH_LOGV_FORWARD_RULE] = "forward_rule",
};

#define COMBINED_TEXT                                                                                                  \
    "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent \"$http_referer\" "               \
    "\"$http_user_agent\""
#define JSON_TEXT                                                                                                      \
    "{\"time\":\"$time_iso8601\",\"remote_addr\":\"$remote_addr\",\"remote_user\":\"$remote_user\",\"method\":\"$"     \
    "method\",\"uri\":\"$uri\","                                                                                       \
    "\"protocol\":\"$protocol\",\"host\":\"$host\",\"status\":$status,\"body_bytes_sent\":$body_bytes_sent,"           \
    "\"request_time\":$request_time,\"upstream_addr\":\"$upstream_addr\","                                             \
    "\"upstream_response_time\":\"$upstream_response_time\",\"http_referer\":\"$http_referer\","                       \
    "\"http_user_agent\":\"$http_user_agent\",\"site\":\"$site\",\"route\":\"$route\"}"

static int push_seg(conf__arena *a, gh_cfg_log_format *f, size_t *cap, int var, const char *t, size_t n)
{
    gh_cfg_log_seg *s;

    if (var == GH_LOGV_TEXT && n == 0)
        return 0;
    if ((s = conf__arena_push(a, (void **)&f->segs, &f->nsegs, cap, sizeof(*s))) == NULL)
        return -1;
    s->var = var;
    if (var == GH_LOGV_TEXT) {
        if ((s->text.p = conf__arena_strndup(a, t, n)) == NULL)
            return -1;
        s->text.len = n;
        f->text_len += n;
    }
    return 0;
}

/*
 * "$name" or "${name}"; "$$" is a dollar sign. 0, -1 out of memory, -2 an
 * unknown variable (its name in *bad, *badlen).
 */
static int compile(conf__arena *a, gh_cfg_log_format *f, const char *s, size_t len, const char **bad, size_t *badlen)
{
    size_t cap = 0, start = 0, i = 0;

    while (i < len) {
        size_t n = 0, skip = 1;
        int braced, var = -1;

        if (s[i] != '$') {
            i++;
            continue;
        }
        if (push_seg(a, f, &cap, GH_LOGV_TEXT, s + start, i - start + (i + 1 < len && s[i + 1] == '$')) < 0)
            return -1;
        if (i + 1 < len && s[i + 1] == '$') {
            start = i += 2;
            continue;
        }
        braced = i + 1 < len && s[i + 1] == '{';
        skip += (size_t)braced;
        while (i + skip + n < len && (islower((unsigned char)s[i + skip + n]) ||
                                      isdigit((unsigned char)s[i + skip + n]) || s[i + skip + n] == '_'))
            n++;
        for (int v = 1; v < GH_LOGV_COUNT; v++)
            if (strlen(var_names[v]) == n && memcmp(var_names[v], s + i + skip, n) == 0)
                var = v;
        if (var < 0 || (braced && (i + skip + n >= len || s[i + skip + n] != '}'))) {
            *bad = s + i + skip;
            *badlen = n;
            return -2;
        }
        if (push_seg(a, f, &cap, var, "", 0) < 0)
            return -1;
        start = i += skip + n + (size_t)braced;
    }
    return push_seg(a, f, &cap, GH_LOGV_TEXT, s + start, len - start) < 0 ? -1 : 0;
}

static gh_cfg_log_format *push_format(conf__arena *a, gh_config *c, size_t *cap, const char *name, int json)
{
    gh_cfg_log_format *f = conf__arena_push(a, (void **)&c->formats, &c->nformats, cap, sizeof(*f));

    if (f == NULL || (f->name.p = conf__arena_strndup(a, name, strlen(name))) == NULL)
        return NULL;
    f->name.len = strlen(name);
    f->json = json;
    return f;
}

int conf__builtin_formats(conf__arena *a, gh_config *c, size_t *cap)
{
    const char *bad;
    size_t badlen;
    gh_cfg_log_format *f;

    if ((f = push_format(a, c, cap, "combined", 0)) == NULL ||
        compile(a, f, COMBINED_TEXT, sizeof(COMBINED_TEXT) - 1, &bad, &badlen) < 0)
        return -1;
    if ((f = push_format(a, c, cap, "json", 1)) == NULL ||
        compile(a, f, JSON_TEXT, sizeof(JSON_TEXT) - 1, &bad, &badlen) < 0)
        return -1;
    return 0;
}

/* log_format NAME [escape=default|json] TEXT...: the pieces of TEXT are joined as written (nginx's rule). */
static int d_log_format(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    char text[4096], name[64];
    size_t len = 0, first = 1;
    int json = 0, rc;
    const char *bad;
    size_t badlen, vlen;
    const char *v;
    gh_cfg_log_format *f;

    if (!conf__is_token(ARG(0)->p, ARG(0)->len) || ARG(0)->len >= sizeof(name))
        return conf__bad_value(p, d->line, "log format name", ARG(0), "expected a short name such as main");
    memcpy(name, ARG(0)->p, ARG(0)->len);
    name[ARG(0)->len] = '\0';
    for (size_t i = 0; i < c->nformats; i++)
        if (strcmp(c->formats[i].name.p, name) == 0)
            return c->formats[i].where.line == 0
                       ? conf__bad_value(p, d->line, "log format name", ARG(0), "combined and json are built in")
                       : conf__fail(p, NULL, d->line, "duplicate log_format %s (first at %s:%d)", name,
                                    c->formats[i].where.file, c->formats[i].where.line);
    if ((v = conf__option_value(ARG(1), "escape", &vlen)) != NULL) {
        if (vlen == 4 && memcmp(v, "json", 4) == 0)
            json = 1;
        else if (!(vlen == 7 && memcmp(v, "default", 7) == 0))
            return conf__bad_value(p, d->line, "log format escape", ARG(1), "expected escape=default or escape=json");
        first = 2;
    }
    if (first >= d->nargs)
        return conf__fail(p, NULL, d->line, "usage: log_format NAME [escape=default|json] TEXT...");
    for (size_t i = first; i < d->nargs; i++) {
        if (ARG(i)->len > sizeof(text) - 1 - len)
            return conf__bad_value(p, d->line, "log format", ARG(i), "a format is at most 4095 bytes");
        memcpy(text + len, ARG(i)->p, ARG(i)->len);
        len += ARG(i)->len;
    }
    if (!conf__is_field_text(text, len, 1))
        return conf__fail(p, NULL, d->line, "invalid log format: control characters are not allowed");
    if ((f = push_format(p->a, c, &p->cap_formats, name, json)) == NULL)
        return conf__oom(p, d->line);
    f->where = (gh_cfg_where){p->file, d->line};
    rc = compile(p->a, f, text, len, &bad, &badlen);
    if (rc == -2) {
        char known[512];
        size_t o = 0;

        for (int k = 1; k < GH_LOGV_COUNT && o < sizeof(known) - 32; k++)
            o += (size_t)snprintf(known + o, sizeof(known) - o, "%s$%s", k > 1 ? " " : "", var_names[k]);
        return conf__fail(p, NULL, d->line,
                          "unknown variable \"$%.*s\" in log format (known: %s; $$ for a dollar sign)", (int)badlen,
                          bad, known);
    }
    return rc < 0 ? conf__oom(p, d->line) : 0;
}

/* access_log PATH|-|stdout|off [format=combined|json|NAME], in the main context, a site or a route. */
static int d_access_log(conf__parser *p, const conf__directive *d)
{
    gh_config *c = p->cfg;
    gh_cfg_edge *e = edge_of(p);
    gh_cfg_access_log *l;
    gh_cstr path;
    const char *v = "combined";
    size_t vlen = 8;

    if (ARG(0)->len == 0)
        return conf__bad_value(p, d->line, "access log", ARG(0), "expected a path, -, stdout or off");
    if (conf__arg_is(ARG(0), "off")) {
        if (d->nargs > 1)
            return conf__bad_value(p, d->line, "access_log", ARG(1), "nothing may follow off");
        e->log_ref = -1;
        if (e == &c->edge)
            c->access_log = NULL;
        return 0;
    }
    if (d->nargs == 2 && (v = conf__option_value(ARG(1), "format", &vlen)) == NULL)
        return conf__bad_value(p, d->line, "access_log option", ARG(1), "expected format=combined|json|NAME");
    if (conf__arg_is(ARG(0), "-") || conf__arg_is(ARG(0), "stdout"))
        path = (gh_cstr){"-", 1};
    else if (conf__relative_path(p, ARG(0)->p, ARG(0)->len, &path) < 0)
        return -1;
    if ((l = conf__arena_push(p->a, (void **)&c->logs, &c->nlogs, &p->cap_logs, sizeof(*l))) == NULL)
        return conf__oom(p, d->line);
    l->path = path.p;
    l->index = c->nlogs - 1;
    l->where = (gh_cfg_where){p->file, d->line};
    if ((l->format_name.p = conf__arena_strndup(p->a, v, vlen)) == NULL)
        return conf__oom(p, d->line);
    l->format_name.len = vlen;
    e->log_ref = (int)c->nlogs;
    if (e == &c->edge)
        c->access_log = path.p;
    return 0;
}

/* ---- access rules ---- */

/* allow NET... / deny NET...|all: appended in file order; the first rule that matches decides. */
static int d_rule(conf__parser *p, const conf__directive *d)
{
    gh_cfg_edge *e = edge_of(p);
    int allow = d->name.p[0] == 'a';

    for (size_t i = 0; i < d->nargs; i++) {
        gh_cfg_access_rule *r;
        const char *why = "";
        gh_cidr nets[2];
        size_t n = 1;

        if (conf__arg_is(ARG(i), "all")) {
            /* both families: "all" is 0.0.0.0/0 and ::/0 */
            gh_cidr_parse("0.0.0.0/0", 9, &nets[0], &why);
            gh_cidr_parse("::/0", 4, &nets[1], &why);
            n = 2;
        } else if (gh_cidr_parse(ARG(i)->p, ARG(i)->len, &nets[0], &why) < 0) {
            return conf__bad_value(p, d->line, "network", ARG(i), why);
        }
        for (size_t k = 0; k < n; k++) {
            if ((r = conf__arena_push(p->a, (void **)&e->rules, &e->nrules,
                                      p->stream  ? &p->cap_stream_rules
                                      : p->route ? &p->cap_route_rules
                                                 : &p->cap_site_rules,
                                      sizeof(*r))) == NULL)
                return conf__oom(p, d->line);
            r->allow = allow;
            r->net = nets[k];
        }
    }
    return 0;
}

/* ---- rate limits ---- */

/* "10r/s", "600r/m", "1r/h": the interval between two requests, in microseconds. */
static int rate_arg(conf__parser *p, int line, const conf__arg *a, uint64_t *interval_us, uint64_t *per_s)
{
    const char *slash = memchr(a->p, '/', a->len);
    uint64_t n, unit;
    size_t nlen;

    if (slash == NULL || slash - a->p < 2 || slash[-1] != 'r' || (size_t)(slash - a->p) + 2 != a->len)
        return conf__bad_value(p, line, "rate", a, "expected requests per second, minute or hour: 10r/s, 600r/m");
    nlen = (size_t)(slash - a->p) - 1;
    switch (slash[1]) {
    case 's':
        unit = 1000000;
        break;
    case 'm':
        unit = 60000000;
        break;
    case 'h':
        unit = 3600000000ull;
        break;
    default:
        return conf__bad_value(p, line, "rate", a, "the unit is r/s, r/m or r/h");
    }
    if (gh_conf_parse_uint(a->p, nlen, 1, 1000000, &n) < 0)
        return conf__bad_value(p, line, "rate", a, "expected 1 to 1000000 requests per unit");
    *interval_us = unit / n;
    if (*interval_us == 0)
        *interval_us = 1;
    *per_s = 1000000 / *interval_us;
    return 0;
}

/* rate_limit RATE [burst=N] [key=ip|header:NAME|cookie:NAME] | off, in a site or a route; in a stream (key=ip). */
static int d_rate_limit(conf__parser *p, const conf__directive *d)
{
    gh_cfg_edge *e = edge_of(p);
    gh_cfg_rate_limit *r;
    uint64_t per_s = 1, v;

    if (conf__arg_is(ARG(0), "off")) {
        if (d->nargs > 1)
            return conf__bad_value(p, d->line, "rate_limit", ARG(1), "nothing may follow off");
        e->rate_off = 1;
        return 0;
    }
    if ((r = conf__arena_alloc(p->a, sizeof(*r))) == NULL)
        return conf__oom(p, d->line);
    r->where = (gh_cfg_where){p->file, d->line};
    r->id = ++p->cfg->nrate_limits;
    if (rate_arg(p, d->line, ARG(0), &r->interval_us, &per_s) < 0)
        return -1;
    r->burst = per_s > 0 ? (uint32_t)(per_s > 100000 ? 100000 : per_s) : 1;
    for (size_t i = 1; i < d->nargs; i++) {
        const char *val;
        size_t vlen;

        if ((val = conf__option_value(ARG(i), "burst", &vlen)) != NULL) {
            if (conf__uint_arg(p, d->line, "burst", val, vlen, 1, 100000, &v) < 0)
                return -1;
            r->burst = (uint32_t)v;
        } else if ((val = conf__option_value(ARG(i), "key", &vlen)) != NULL) {
            size_t skip = 0;

            if (vlen == 2 && memcmp(val, "ip", 2) == 0) {
                r->key = GH_RATE_KEY_IP;
                continue;
            }
            if (vlen > 7 && memcmp(val, "header:", 7) == 0)
                r->key = GH_RATE_KEY_HEADER, skip = 7;
            else if (vlen > 7 && memcmp(val, "cookie:", 7) == 0)
                r->key = GH_RATE_KEY_COOKIE, skip = 7;
            else
                return conf__bad_value(p, d->line, "rate limit key", ARG(i),
                                       "expected key=ip, key=header:NAME or key=cookie:NAME");
            if (!conf__is_token(val + skip, vlen - skip))
                return conf__bad_value(p, d->line, "rate limit key", ARG(i), "the name must be a token");
            if ((r->key_name.p = conf__arena_strndup(p->a, val + skip, vlen - skip)) == NULL)
                return conf__oom(p, d->line);
            r->key_name.len = vlen - skip;
            if (r->key == GH_RATE_KEY_HEADER)
                for (size_t k = 0; k < r->key_name.len; k++)
                    ((char *)r->key_name.p)[k] = (char)tolower((unsigned char)r->key_name.p[k]);
        } else {
            return conf__bad_value(p, d->line, "rate_limit option", ARG(i), "expected burst=N or key=...");
        }
    }
    /* A stream has no request: what it limits is new connections, and all it knows of one is its address */
    if (p->stream != NULL && r->key != GH_RATE_KEY_IP)
        return conf__fail(p, NULL, d->line,
                          "a stream's rate_limit counts new connections per client address: key=ip only");
    e->rate = r;
    return 0;
}

/* ---- shielding ---- */

/* hide_header NAME... | none: response headers removed (added to the defaults and the enclosing blocks'). */
static int d_hide_header(conf__parser *p, const conf__directive *d)
{
    gh_cfg_edge *e = edge_of(p);
    size_t *cap = p->route ? &p->cap_route_hide : p->site ? &p->cap_site_hide : &p->cap_main_hide;

    if (conf__arg_is(ARG(0), "none")) {
        if (d->nargs > 1)
            return conf__bad_value(p, d->line, "hide_header", ARG(1), "nothing may follow none");
        e->hide_reset = 1;
        e->nhide = 0;
        return 0;
    }
    for (size_t i = 0; i < d->nargs; i++) {
        gh_cstr *h;

        if (!conf__is_token(ARG(i)->p, ARG(i)->len))
            return conf__bad_value(p, d->line, "header name", ARG(i), "expected a token such as X-Powered-By");
        if ((h = conf__arena_push(p->a, (void **)&e->hide, &e->nhide, cap, sizeof(*h))) == NULL)
            return conf__oom(p, d->line);
        if (conf__dup_arg(p, d->line, ARG(i), h) < 0)
            return -1;
    }
    return 0;
}

/* intercept_errors on|off|STATUS|LO-HI...: `on` is every 5xx. */
static int d_intercept(conf__parser *p, const conf__directive *d)
{
    gh_cfg_route *r = p->route;

    memset(r->intercept, 0, sizeof(r->intercept));
    r->intercept_any = 0;
    if (conf__arg_is(ARG(0), "off") && d->nargs == 1)
        return 0;
    for (size_t i = 0; i < d->nargs; i++) {
        const char *dash = memchr(ARG(i)->p, '-', ARG(i)->len);
        uint64_t lo, hi;

        if (conf__arg_is(ARG(i), "on")) {
            lo = 500, hi = 599;
        } else if (dash != NULL) {
            if (gh_conf_parse_uint(ARG(i)->p, (size_t)(dash - ARG(i)->p), 400, 599, &lo) < 0 ||
                gh_conf_parse_uint(dash + 1, ARG(i)->len - (size_t)(dash - ARG(i)->p) - 1, 400, 599, &hi) < 0 ||
                hi < lo)
                return conf__bad_value(p, d->line, "status range", ARG(i), "expected LO-HI within 400-599");
        } else if (gh_conf_parse_uint(ARG(i)->p, ARG(i)->len, 400, 599, &lo) < 0) {
            return conf__bad_value(p, d->line, "status", ARG(i), "expected on, off, or statuses from 400 to 599");
        } else {
            hi = lo;
        }
        for (uint64_t s = lo; s <= hi; s++)
            r->intercept[(s - 100) / 64] |= 1ull << ((s - 100) % 64);
        r->intercept_any = 1;
    }
    return 0;
}

/* hsts max-age=DURATION [includeSubDomains] [preload] | off (RFC 6797 6.1), in a site. */
static int d_hsts(conf__parser *p, const conf__directive *d)
{
    gh_cfg_site *s = p->site;
    char v[128];
    const char *val;
    size_t vlen;
    uint64_t secs;
    int sub = 0, pre = 0, n;

    if (conf__arg_is(ARG(0), "off") && d->nargs == 1) {
        s->hsts = (gh_cstr){"", 0};
        return 0;
    }
    if ((val = conf__option_value(ARG(0), "max-age", &vlen)) == NULL)
        return conf__fail(p, NULL, d->line, "usage: hsts max-age=SECONDS [includeSubDomains] [preload] | off");
    if (gh_conf_parse_uint(val, vlen, 0, 1000000000, &secs) < 0) {
        uint32_t ms;
        if (conf__duration_arg(p, d->line, "max-age", val, vlen, &ms) < 0)
            return -1;
        secs = ms / 1000;
    }
    for (size_t i = 1; i < d->nargs; i++) {
        if (conf__arg_is(ARG(i), "includeSubDomains"))
            sub = 1;
        else if (conf__arg_is(ARG(i), "preload"))
            pre = 1;
        else
            return conf__bad_value(p, d->line, "hsts option", ARG(i), "expected includeSubDomains or preload");
    }
    /* hstspreload.org asks for a year and includeSubDomains before it lists a domain */
    if (pre && (!sub || secs < 31536000))
        return conf__fail(p, NULL, d->line, "hsts preload needs includeSubDomains and max-age of at least 31536000");
    n = snprintf(v, sizeof(v), "max-age=%llu%s%s", (unsigned long long)secs, sub ? "; includeSubDomains" : "",
                 pre ? "; preload" : "");
    if ((s->hsts.p = conf__arena_strndup(p->a, v, (size_t)n)) == NULL)
        return conf__oom(p, d->line);
    s->hsts.len = (size_t)n;
    return 0;
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__edge_directives[] = {
    {"access_log", CONF__CTX_MAIN, 1, 2, 0, 0, d_access_log,
     "access_log PATH|-|stdout|off [format=combined|json|NAME]"},
    {"access_log", CONF__CTX_SITE, 1, 2, 0, 0, d_access_log,
     "access_log PATH|-|stdout|off [format=combined|json|NAME]"},
    {"access_log", CONF__CTX_ROUTE, 1, 2, 0, 0, d_access_log,
     "access_log PATH|-|stdout|off [format=combined|json|NAME]"},
    {"log_format", CONF__CTX_MAIN, 2, CONF__MAX_ARGS, 0, 1, d_log_format, "log_format NAME [escape=default|json] TEXT"},
    {"max_connections_per_ip", CONF__CTX_MAIN, 1, 1, 0, 0, NULL, "max_connections_per_ip N",
     CONF__COUNT(gh_config, max_conns_per_ip, 1, 1000000)},
    {"hide_header", CONF__CTX_MAIN, 1, CONF__MAX_ARGS, 0, 1, d_hide_header, "hide_header NAME...|none"},
    {"hide_header", CONF__CTX_SITE, 1, CONF__MAX_ARGS, 0, 1, d_hide_header, "hide_header NAME...|none"},
    {"hide_header", CONF__CTX_ROUTE, 1, CONF__MAX_ARGS, 0, 1, d_hide_header, "hide_header NAME...|none"},
    {"allow", CONF__CTX_SITE, 1, CONF__MAX_ARGS, 0, 1, d_rule, "allow NETWORK...|all"},
    {"allow", CONF__CTX_ROUTE, 1, CONF__MAX_ARGS, 0, 1, d_rule, "allow NETWORK...|all"},
    {"deny", CONF__CTX_SITE, 1, CONF__MAX_ARGS, 0, 1, d_rule, "deny NETWORK...|all"},
    {"deny", CONF__CTX_ROUTE, 1, CONF__MAX_ARGS, 0, 1, d_rule, "deny NETWORK...|all"},
    {"rate_limit", CONF__CTX_SITE, 1, 3, 0, 0, d_rate_limit,
     "rate_limit RATE [burst=N] [key=ip|header:NAME|cookie:NAME]|off"},
    {"rate_limit", CONF__CTX_ROUTE, 1, 3, 0, 0, d_rate_limit,
     "rate_limit RATE [burst=N] [key=ip|header:NAME|cookie:NAME]|off"},
    {"allow", CONF__CTX_STREAM, 1, CONF__MAX_ARGS, 0, 1, d_rule, "allow NETWORK...|all"},
    {"deny", CONF__CTX_STREAM, 1, CONF__MAX_ARGS, 0, 1, d_rule, "deny NETWORK...|all"},
    {"rate_limit", CONF__CTX_STREAM, 1, 3, 0, 0, d_rate_limit, "rate_limit RATE [burst=N]"},
    {"intercept_errors", CONF__CTX_ROUTE, 1, CONF__MAX_ARGS, 0, 0, d_intercept,
     "intercept_errors on|off|STATUS|LO-HI..."},
    {"hsts", CONF__CTX_SITE, 1, 3, 0, 0, d_hsts, "hsts max-age=SECONDS [includeSubDomains] [preload] | off"},
    {NULL},
};
CONF__TABLE_END

/* ---- resolution (validation) ---- */

static int fail_where(conf__parser *p, const gh_cfg_where *w, const char *fmt, const char *arg)
{
    return conf__fail(p, w->file, w->line, fmt, arg);
}

static const gh_cfg_access_log *log_of(const gh_config *c, int ref)
{
    return ref > 0 ? &c->logs[ref - 1] : NULL;
}

/* The hidden names of a route: the defaults unless reset, then main, site and route lists, each reset dropping all
 * before. */
static int route_hide(conf__parser *p, const gh_cfg_site *s, gh_cfg_route *r)
{
    static const char *const defaults[] = {GH_CFG_HIDE_DEFAULT};
    const gh_cfg_edge *levels[3] = {&p->cfg->edge, &s->edge, &r->edge};
    size_t first = 0, n = 0, k = 0;
    int use_defaults = 1;
    gh_cstr *all;

    for (size_t i = 0; i < 3; i++)
        if (levels[i]->hide_reset)
            first = i, use_defaults = 0;
    n = use_defaults ? GH_ARRAY_LEN(defaults) : 0;
    for (size_t i = first; i < 3; i++)
        n += levels[i]->nhide;
    if (n == 0) {
        r->edge.hide = NULL;
        r->edge.nhide = 0;
        return 0;
    }
    if ((all = conf__arena_array(p->a, n, sizeof(*all))) == NULL)
        return conf__oom(p, r->where.line);
    if (use_defaults)
        for (size_t i = 0; i < GH_ARRAY_LEN(defaults); i++)
            all[k++] = (gh_cstr){defaults[i], strlen(defaults[i])};
    for (size_t i = first; i < 3; i++)
        for (size_t j = 0; j < levels[i]->nhide; j++)
            all[k++] = levels[i]->hide[j];
    r->edge.hide = all;
    r->edge.nhide = k;
    for (size_t i = 0; i < k; i++)
        r->edge.hide_lens |= gh_cfg_hide_bit(all[i].p, all[i].len);
    return 0;
}

/* The site's response_header operations go to every route that does not name the same header itself. */
static int route_site_ops(conf__parser *p, const gh_cfg_site *s, gh_cfg_route *r)
{
    gh_cfg_header_op *ops;
    size_t n = 0;

    if (s->nresp_ops == 0)
        return 0;
    if ((ops = conf__arena_array(p->a, s->nresp_ops + r->nresp_ops, sizeof(*ops))) == NULL)
        return conf__oom(p, r->where.line);
    for (size_t i = 0; i < s->nresp_ops; i++) {
        int named = 0;

        for (size_t j = 0; j < r->nresp_ops; j++)
            named |= r->resp_ops[j].name.len == s->resp_ops[i].name.len &&
                     strncasecmp(r->resp_ops[j].name.p, s->resp_ops[i].name.p, s->resp_ops[i].name.len) == 0;
        if (!named)
            ops[n++] = s->resp_ops[i];
    }
    if (r->nresp_ops > 0)
        memcpy(ops + n, r->resp_ops, r->nresp_ops * sizeof(*ops));
    r->resp_ops = ops;
    r->nresp_ops = n + r->nresp_ops;
    return 0;
}

int conf__edge_route(conf__parser *p, gh_cfg_site *s, gh_cfg_route *r)
{
    const gh_config *c = p->cfg;
    int ref = r->edge.log_ref ? r->edge.log_ref : s->edge.log_ref ? s->edge.log_ref : c->edge.log_ref;

    r->site = s;
    r->access_log = log_of(c, ref);
    if (r->edge.nrules == 0 && !r->edge.rules) {
        r->edge.rules = s->edge.rules;
        r->edge.nrules = s->edge.nrules;
    }
    if (r->edge.rate_off)
        r->edge.rate = NULL;
    else if (r->edge.rate == NULL && !s->edge.rate_off)
        r->edge.rate = s->edge.rate;
    if (route_hide(p, s, r) < 0)
        return -1;
    return route_site_ops(p, s, r);
}

/* Every access_log's format name names a format. */
int conf__edge_logs(conf__parser *p)
{
    gh_config *c = p->cfg;

    for (size_t i = 0; i < c->nlogs; i++) {
        gh_cfg_access_log *l = &c->logs[i];

        for (size_t k = 0; k < c->nformats && l->format == NULL; k++)
            if (strcmp(c->formats[k].name.p, l->format_name.p) == 0)
                l->format = &c->formats[k];
        if (l->format == NULL)
            return fail_where(p, &l->where, "unknown log format \"%s\" (combined, json, or a log_format NAME)",
                              l->format_name.p);
    }
    return 0;
}

int conf__quick_edge(conf__arena *a, gh_config *c, gh_cfg_site *s, gh_cfg_route *r)
{
    static const char *const defaults[] = {GH_CFG_HIDE_DEFAULT};
    size_t cap = 0;

    if (conf__builtin_formats(a, c, &cap) < 0)
        return -1;
    r->site = s;
    if ((r->edge.hide = conf__arena_array(a, GH_ARRAY_LEN(defaults), sizeof(gh_cstr))) == NULL)
        return -1;
    for (size_t i = 0; i < GH_ARRAY_LEN(defaults); i++)
        r->edge.hide[i] = (gh_cstr){defaults[i], strlen(defaults[i])};
    r->edge.nhide = GH_ARRAY_LEN(defaults);
    for (size_t i = 0; i < GH_ARRAY_LEN(defaults); i++)
        r->edge.hide_lens |= gh_cfg_hide_bit(defaults[i], strlen(defaults[i]));
    if (c->access_log != NULL) {
        if ((c->logs = conf__arena_alloc(a, sizeof(*c->logs))) == NULL)
            return -1;
        c->nlogs = 1;
        c->logs[0] = (gh_cfg_access_log){.path = c->access_log, .format = &c->formats[0], .where = {c->path, 0}};
        c->logs[0].format_name = c->formats[0].name;
        r->access_log = &c->logs[0];
        c->edge.log_ref = 1;
    }
    return 0;
}
