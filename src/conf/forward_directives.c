/*
 * forward_directives: a site's `forward { }` block (docs/config.md, "Forward
 * proxy"): the access rules, the users file, the timeouts and limits of a
 * forward proxy. The users file is read here, through the loader's source, so
 * the master reads it and a worker's reload finds it in the bundle: workers
 * never open files.
 */
#include <crypt.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "conf/directives.h"
#include "conf/units.h"

#define ARG(i) (&d->args[(i)])

#define FWD_MAX_USERS     65536
#define FWD_MAX_USERS_LEN (4u << 20) /* bytes of a users file */
#define FWD_LIST_MAX      64         /* values of one condition (host=a,b,...) */

int conf__d_forward(conf__parser *p, const conf__directive *d)
{
    gh_cfg_site *site = p->site;
    gh_cfg_forward *f;
    int rc;

    if (site->forward != NULL)
        return conf__fail(p, NULL, d->line, "a site holds one forward block (first at %s:%d)",
                          site->forward->where.file, site->forward->where.line);
    if ((f = conf__arena_alloc(p->a, sizeof(*f))) == NULL)
        return conf__oom(p, d->line);
    f->where = (gh_cfg_where){p->file, d->line};
    f->connect_timeout = 10000;
    f->dns_timeout = 5000;
    f->tunnel_idle = 300000;
    f->max_tunnels_per_ip = 256;
    f->auth_failures = 10;
    f->realm = (gh_cstr){"gatehouse", 9};
    site->forward = f;
    p->forward = f;
    p->cap_fwd_rules = 0;
    rc = conf__parse_nested(p, CONF__CTX_FORWARD, d->line);
    p->forward = NULL;
    return rc;
}

/* The pieces of "a,b,c" (no empty ones): count, or -1. */
static int split_list(const char *v, size_t len, gh_cstr *out, size_t max)
{
    size_t n = 0, i = 0;

    while (i <= len) {
        const char *comma = memchr(v + i, ',', len - i);
        size_t end = comma ? (size_t)(comma - v) : len;

        if (end == i || n == max)
            return -1;
        out[n++] = (gh_cstr){v + i, end - i};
        i = end + 1;
        if (comma == NULL)
            break;
    }
    return (int)n;
}

/* "example.com", "*.example.com" or "*": lowercase in the arena. */
static int host_pattern(conf__parser *p, int line, gh_cstr v, gh_cstr *out)
{
    size_t start = v.len >= 2 && v.p[0] == '*' && v.p[1] == '.' ? 2 : 0;
    char *s;

    if (!(v.len == 1 && v.p[0] == '*')) {
        if (v.len == start || v.len > 253)
            return conf__fail(p, NULL, line, "invalid host pattern \"%.*s\": expected NAME, *.DOMAIN or *", (int)v.len,
                              v.p);
        for (size_t i = start; i < v.len; i++)
            if (!conf__is_name_char((unsigned char)v.p[i]) && v.p[i] != ':')
                return conf__fail(p, NULL, line,
                                  "invalid host pattern \"%.*s\": a name, a wildcard only as a leading \"*.\"",
                                  (int)v.len, v.p);
    }
    if ((s = conf__arena_strndup(p->a, v.p, v.len)) == NULL)
        return conf__oom(p, line);
    for (size_t i = 0; i < v.len; i++)
        s[i] = (char)tolower((unsigned char)s[i]);
    *out = (gh_cstr){s, v.len};
    return 0;
}

static int port_range(conf__parser *p, int line, gh_cstr v, gh_cfg_port_range *out)
{
    const char *dash = memchr(v.p, '-', v.len);
    uint64_t lo, hi;

    if (dash == NULL) {
        if (gh_conf_parse_uint(v.p, v.len, 1, 65535, &lo) < 0)
            goto bad;
        hi = lo;
    } else if (gh_conf_parse_uint(v.p, (size_t)(dash - v.p), 1, 65535, &lo) < 0 ||
               gh_conf_parse_uint(dash + 1, v.len - (size_t)(dash - v.p) - 1, 1, 65535, &hi) < 0 || hi < lo) {
        goto bad;
    }
    *out = (gh_cfg_port_range){(uint16_t)lo, (uint16_t)hi};
    return 0;
bad:
    return conf__fail(p, NULL, line, "invalid port \"%.*s\": expected N or N-M, from 1 to 65535", (int)v.len, v.p);
}

static int networks(conf__parser *p, int line, const gh_cstr *v, size_t n, gh_cidr **out)
{
    gh_cidr *c = conf__arena_array(p->a, n, sizeof(*c));
    const char *why;

    if (c == NULL)
        return conf__oom(p, line);
    for (size_t i = 0; i < n; i++)
        if (gh_cidr_parse(v[i].p, v[i].len, &c[i], &why) < 0)
            return conf__fail(p, NULL, line, "invalid network \"%.*s\": %s", (int)v[i].len, v[i].p, why);
    *out = c;
    return 0;
}

static int strings(conf__parser *p, int line, const gh_cstr *v, size_t n, gh_cstr **out)
{
    gh_cstr *s = conf__arena_array(p->a, n, sizeof(*s));

    if (s == NULL)
        return conf__oom(p, line);
    for (size_t i = 0; i < n; i++) {
        if ((s[i].p = conf__arena_strndup(p->a, v[i].p, v[i].len)) == NULL)
            return conf__oom(p, line);
        s[i].len = v[i].len;
    }
    *out = s;
    return 0;
}

/* One `key=a,b` condition of a rule into r. */
static int rule_condition(conf__parser *p, int line, gh_cfg_fwd_rule *r, const conf__arg *a)
{
    static const char *const keys[] = {"host", "port", "from", "user", "to", "via"};
    gh_cstr vals[FWD_LIST_MAX];
    const char *v = NULL;
    size_t vlen = 0, k;
    int n;

    for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
        if ((v = conf__option_value(a, keys[k], &vlen)) != NULL)
            break;
    if (v == NULL)
        return conf__bad_value(p, line, "rule condition", a,
                               "expected host=, port=, from=, user=, to= or via= (lists with commas)");
    if ((n = split_list(v, vlen, vals, FWD_LIST_MAX)) < 0)
        return conf__bad_value(p, line, "rule condition", a, "an empty value, or more than 64");
    switch (k) {
    case 0:
        if (r->hosts != NULL || (r->hosts = conf__arena_array(p->a, (size_t)n, sizeof(gh_cstr))) == NULL)
            return r->hosts ? conf__fail(p, NULL, line, "host= given twice") : conf__oom(p, line);
        for (int i = 0; i < n; i++)
            if (host_pattern(p, line, vals[i], &r->hosts[i]) < 0)
                return -1;
        r->nhosts = (size_t)n;
        return 0;
    case 1:
        if (r->ports != NULL || (r->ports = conf__arena_array(p->a, (size_t)n, sizeof(*r->ports))) == NULL)
            return r->ports ? conf__fail(p, NULL, line, "port= given twice") : conf__oom(p, line);
        for (int i = 0; i < n; i++)
            if (port_range(p, line, vals[i], &r->ports[i]) < 0)
                return -1;
        r->nports = (size_t)n;
        return 0;
    case 2:
        if (r->from != NULL)
            return conf__fail(p, NULL, line, "from= given twice");
        r->nfrom = (size_t)n;
        return networks(p, line, vals, (size_t)n, &r->from);
    case 3:
        if (r->users != NULL)
            return conf__fail(p, NULL, line, "user= given twice");
        r->nusers = (size_t)n;
        return strings(p, line, vals, (size_t)n, &r->users);
    case 4:
        if (r->to != NULL)
            return conf__fail(p, NULL, line, "to= given twice");
        r->nto = (size_t)n;
        return networks(p, line, vals, (size_t)n, &r->to);
    default:
        if (r->via_name.p != NULL || n != 1)
            return conf__fail(p, NULL, line, "via= names one pool, once");
        if ((r->via_name.p = conf__arena_strndup(p->a, vals[0].p, vals[0].len)) == NULL)
            return conf__oom(p, line);
        r->via_name.len = vals[0].len;
        return 0;
    }
}

static int d_rule(conf__parser *p, const conf__directive *d)
{
    gh_cfg_forward *f = p->forward;
    gh_cfg_fwd_rule *r;

    r = conf__arena_push(p->a, (void **)&f->rules, &f->nrules, &p->cap_fwd_rules, sizeof(*r));
    if (r == NULL)
        return conf__oom(p, d->line);
    r->where = (gh_cfg_where){p->file, d->line};
    if (conf__arg_is(ARG(0), "allow"))
        r->allow = 1;
    else if (!conf__arg_is(ARG(0), "deny"))
        return conf__bad_value(p, d->line, "rule", ARG(0), "expected allow or deny");
    for (size_t i = 1; i < d->nargs; i++)
        if (rule_condition(p, d->line, r, ARG(i)) < 0)
            return -1;
    if (!r->allow && r->via_name.p != NULL)
        return conf__fail(p, NULL, d->line, "via= is for allow rules");
    return 0;
}

static int user_cmp(const void *a, const void *b)
{
    return strcmp(((const gh_cfg_fwd_user *)a)->name.p, ((const gh_cfg_fwd_user *)b)->name.p);
}

/*
 * One "user:hash" line. Only hashes of crypt(3)'s modern methods ("$y$"
 * yescrypt, "$2b$" bcrypt, "$6$"/"$5$" sha-crypt...) that libxcrypt accepts:
 * a DES hash or a clear password is refused at load, not discovered by a
 * client later.
 */
static int user_line(conf__parser *p, const char *file, int line, const char *s, size_t len, gh_cfg_fwd_user *u)
{
    const char *colon = memchr(s, ':', len);
    size_t nlen;

    if (colon == NULL || colon == s)
        return conf__fail(p, file, line, "expected USER:HASH (a crypt(3) hash, e.g. from mkpasswd)");
    nlen = (size_t)(colon - s);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || s[i] == 0x7f)
            return conf__fail(p, file, line, "a user or hash with a space or control character");
    if ((u->name.p = conf__arena_strndup(p->a, s, nlen)) == NULL ||
        (u->hash.p = conf__arena_strndup(p->a, colon + 1, len - nlen - 1)) == NULL)
        return conf__oom(p, line);
    u->name.len = nlen;
    u->hash.len = len - nlen - 1;
    if (u->hash.p[0] != '$' || crypt_checksalt(u->hash.p) != CRYPT_SALT_OK)
        return conf__fail(p, file, line, "user %s: not a supported crypt(3) hash (yescrypt $y$, bcrypt $2b$, $6$...)",
                          u->name.p);
    return 0;
}

static int d_auth(conf__parser *p, const conf__directive *d)
{
    gh_cfg_forward *f = p->forward;
    gh_conf_file file = {0};
    size_t cap = 0, off = 0;
    int line = 0, err, rc = -1;
    const char *v;
    size_t vlen;

    if (conf__relative_path(p, ARG(0)->p, ARG(0)->len, &f->auth_file) < 0)
        return -1;
    for (size_t i = 1; i < d->nargs; i++) {
        if ((v = conf__option_value(ARG(i), "realm", &vlen)) == NULL || vlen == 0 || vlen > 64 ||
            !conf__is_field_text(v, vlen, 1) || memchr(v, '"', vlen) || memchr(v, '\\', vlen))
            return conf__bad_value(p, d->line, "auth option", ARG(i), "expected realm=TEXT (no quotes, 64 at most)");
        if ((f->realm.p = conf__arena_strndup(p->a, v, vlen)) == NULL)
            return conf__oom(p, d->line);
        f->realm.len = vlen;
    }
    if ((err = p->src->read(p->src, f->auth_file.p, FWD_MAX_USERS_LEN, &file)) != 0)
        return conf__fail(p, NULL, d->line, "cannot read users file %s: %s", f->auth_file.p, strerror(err));
    while (off < file.len) {
        const char *s = file.data + off, *nl = memchr(s, '\n', file.len - off);
        size_t len = nl ? (size_t)(nl - s) : file.len - off;
        gh_cfg_fwd_user *u;

        off += len + 1;
        line++;
        if (len > 0 && s[len - 1] == '\r')
            len--;
        if (len == 0 || s[0] == '#')
            continue;
        if (f->nusers == FWD_MAX_USERS) {
            conf__fail(p, f->auth_file.p, line, "more than %d users", FWD_MAX_USERS);
            goto out;
        }
        if ((u = conf__arena_push(p->a, (void **)&f->users, &f->nusers, &cap, sizeof(*u))) == NULL) {
            conf__oom(p, d->line);
            goto out;
        }
        if (user_line(p, f->auth_file.p, line, s, len, u) < 0)
            goto out;
    }
    if (f->nusers == 0) {
        conf__fail(p, NULL, d->line, "users file %s holds no user", f->auth_file.p);
        goto out;
    }
    qsort(f->users, f->nusers, sizeof(*f->users), user_cmp);
    for (size_t i = 1; i < f->nusers; i++)
        if (strcmp(f->users[i].name.p, f->users[i - 1].name.p) == 0) {
            conf__fail(p, f->auth_file.p, 0, "user %s given twice", f->users[i].name.p);
            goto out;
        }
    rc = 0;
out:
    gh_conf_file_dispose(&file);
    return rc;
}

/* `parent_auth POOL USER:PASSWORD`: Basic credentials (RFC 7617) for that pool's parent proxies. */
static int d_parent_auth(conf__parser *p, const conf__directive *d)
{
    gh_cfg_forward *f = p->forward;
    const conf__arg *cred = ARG(1);
    size_t cap = f->nparents; /* a handful: grown one at a time */
    gh_cfg_parent_auth *pa;
    char b64[4 * ((256 + 2) / 3) + 1];
    char *h;
    int n;

    if (cred->len == 0 || cred->len > 256 || memchr(cred->p, ':', cred->len) == NULL || cred->p[0] == ':' ||
        !conf__is_field_text(cred->p, cred->len, 0))
        return conf__bad_value(p, d->line, "parent credentials", cred,
                               "expected USER:PASSWORD (printable, 256 at most)");
    if ((pa = conf__arena_push(p->a, (void **)&f->parents, &f->nparents, &cap, sizeof(*pa))) == NULL)
        return conf__oom(p, d->line);
    pa->where = (gh_cfg_where){p->file, d->line};
    if (conf__dup_arg(p, d->line, ARG(0), &pa->pool) < 0)
        return -1;
    n = EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)cred->p, (int)cred->len);
    if (n < 0 || (h = conf__arena_alloc(p->a, (size_t)n + 32)) == NULL)
        return conf__oom(p, d->line);
    pa->header.len = (size_t)snprintf(h, (size_t)n + 32, "Proxy-Authorization: Basic %.*s\r\n", n, b64);
    pa->header.p = h;
    return 0;
}

int conf__forward_validate(conf__parser *p, gh_cfg_site *s)
{
    gh_cfg_forward *f = s->forward;

    for (size_t i = 0; i < f->nparents; i++)
        if (gh_config_pool(p->cfg, f->parents[i].pool.p) == NULL)
            return conf__fail(p, f->parents[i].where.file, f->parents[i].where.line, "unknown pool \"%s\"",
                              f->parents[i].pool.p);
    for (size_t i = 0; i < f->nrules; i++) {
        gh_cfg_fwd_rule *r = &f->rules[i];

        if (r->via_name.p != NULL && (r->via = gh_config_pool(p->cfg, r->via_name.p)) == NULL)
            return conf__fail(p, r->where.file, r->where.line, "unknown pool \"%s\" in via=", r->via_name.p);
        /* The parent resolves the name: no address of ours to judge, so no range to allow. */
        if (r->via != NULL && r->nto > 0)
            return conf__fail(p, r->where.file, r->where.line, "to= and via= exclude each other (the parent resolves)");
        for (size_t k = 0; r->via != NULL && k < f->nparents; k++)
            if (strcmp(f->parents[k].pool.p, r->via->name.p) == 0)
                r->via_auth = f->parents[k].header;
        if (r->nusers > 0 && f->nusers == 0)
            return conf__fail(p, r->where.file, r->where.line, "user= needs an \"auth FILE\" in the forward block");
    }
    /* What an absolute-form request runs with: the main context's timeouts and limits, the site's log. */
    f->route.prefix = (gh_cstr){"/", 1};
    f->route.action = GH_ACTION_PROXY;
    f->route.where = f->where;
    conf__route_defaults(p->cfg, &f->route);
    f->route.connect_timeout = f->connect_timeout;
    return conf__edge_route(p, s, &f->route);
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__forward_directives[] = {
    {"forward", CONF__CTX_SITE, 0, 0, 1, 0, conf__d_forward, "forward { ... }"},
    {"rule", CONF__CTX_FORWARD, 1, 8, 0, 1, d_rule,
     "rule allow|deny [host=P,...] [port=N|N-M,...] [from=NET,...] [user=U,...] [to=NET,...] [via=POOL]"},
    {"auth", CONF__CTX_FORWARD, 1, 2, 0, 0, d_auth, "auth USERS-FILE [realm=TEXT]"},
    {"parent_auth", CONF__CTX_FORWARD, 2, 2, 0, 1, d_parent_auth, "parent_auth POOL USER:PASSWORD"},
    {"connect_timeout", CONF__CTX_FORWARD, 1, 1, 0, 0, NULL, "connect_timeout DURATION",
     CONF__DURATION(gh_cfg_forward, connect_timeout)},
    {"dns_timeout", CONF__CTX_FORWARD, 1, 1, 0, 0, NULL, "dns_timeout DURATION",
     CONF__DURATION(gh_cfg_forward, dns_timeout)},
    {"tunnel_idle", CONF__CTX_FORWARD, 1, 1, 0, 0, NULL, "tunnel_idle DURATION",
     CONF__DURATION(gh_cfg_forward, tunnel_idle)},
    {"max_tunnels_per_ip", CONF__CTX_FORWARD, 1, 1, 0, 0, NULL, "max_tunnels_per_ip N (0: no limit)",
     CONF__COUNT(gh_cfg_forward, max_tunnels_per_ip, 0, 1000000)},
    {"max_tunnels_per_user", CONF__CTX_FORWARD, 1, 1, 0, 0, NULL, "max_tunnels_per_user N (0: no limit)",
     CONF__COUNT(gh_cfg_forward, max_tunnels_per_user, 0, 1000000)},
    {"auth_failures", CONF__CTX_FORWARD, 1, 1, 0, 0, NULL, "auth_failures N (per client address per minute)",
     CONF__COUNT(gh_cfg_forward, auth_failures, 1, 1000000)},
    {NULL},
};
CONF__TABLE_END
