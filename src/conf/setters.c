/*
 * setters: the typed setters that let a directive or an option be one row
 * (nginx's ngx_conf_set_*_slot, Redis's static_configs[]), and the small
 * checks every handler shares. Messages read `FILE:LINE: invalid WHAT
 * "VALUE": reason`, as the handlers' own do.
 */
#include <ctype.h>
#include <string.h>

#include "conf/directives.h"
#include "conf/units.h"

int conf__oom(conf__parser *p, int line)
{
    return conf__fail(p, NULL, line, "out of memory");
}

int conf__arg_is(const conf__arg *a, const char *lit)
{
    return a->len == strlen(lit) && memcmp(a->p, lit, a->len) == 0;
}

int conf__dup_arg(conf__parser *p, int line, const conf__arg *a, gh_cstr *out)
{
    char *s = conf__arena_strndup(p->a, a->p, a->len);

    if (s == NULL)
        return conf__oom(p, line);
    out->p = s;
    out->len = a->len;
    return 0;
}

const char *conf__option_value(const conf__arg *a, const char *key, size_t *vlen)
{
    size_t k = strlen(key);

    if (a->len <= k || memcmp(a->p, key, k) != 0 || a->p[k] != '=')
        return NULL;
    *vlen = a->len - k - 1;
    return a->p + k + 1;
}

static int is_tchar(unsigned char c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

int conf__is_token(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return 0;
    return 1;
}

int conf__is_field_text(const char *s, size_t len, int allow_space)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if ((c < 0x20 && c != '\t') || c == 0x7f || (!allow_space && (c == ' ' || c == '\t')))
            return 0;
    }
    return 1;
}

int conf__is_name_char(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '_' || c == '.';
}

static int invalid(conf__parser *p, int line, const char *what, const char *v, size_t len, const char *why)
{
    return conf__fail(p, NULL, line, "invalid %s \"%.*s\": %s", what, (int)len, v, why);
}

int conf__bad_value(conf__parser *p, int line, const char *what, const conf__arg *a, const char *why)
{
    return invalid(p, line, what, a->p, a->len, why);
}

int conf__duration_arg(conf__parser *p, int line, const char *what, const char *s, size_t len, uint32_t *ms)
{
    const char *why;

    if (gh_conf_parse_duration(s, len, ms, &why) < 0)
        return invalid(p, line, what, s, len, why);
    return 0;
}

int conf__uint_arg(conf__parser *p, int line, const char *what, const char *s, size_t len, uint64_t min, uint64_t max,
                   uint64_t *out)
{
    if (gh_conf_parse_uint(s, len, min, max, out) < 0)
        return conf__fail(p, NULL, line, "invalid %s \"%.*s\": expected a number from %llu to %llu", what, (int)len, s,
                          (unsigned long long)min, (unsigned long long)max);
    return 0;
}

/* ---- the typed setters ------------------------------------------------------------------------ */

int conf__set_duration(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                       const conf__slot *slot)
{
    return conf__duration_arg(p, line, what, v, len, field);
}

int conf__set_count(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                    const conf__slot *slot)
{
    uint64_t n, max = slot->max < UINT32_MAX ? slot->max : UINT32_MAX;

    if (conf__uint_arg(p, line, what, v, len, slot->min, max, &n) < 0)
        return -1;
    *(uint32_t *)field = (uint32_t)n;
    return 0;
}

int conf__set_size(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                   const conf__slot *slot)
{
    const char *why;
    uint64_t n;

    if (gh_conf_parse_size(v, len, &n, &why) < 0)
        return invalid(p, line, what, v, len, why);
    if (n < slot->min || (slot->max != 0 && n > slot->max))
        return conf__fail(p, NULL, line, "invalid %s \"%.*s\": expected %llu to %llu bytes", what, (int)len, v,
                          (unsigned long long)slot->min, (unsigned long long)(slot->max != 0 ? slot->max : UINT64_MAX));
    *(uint64_t *)field = n;
    return 0;
}

int conf__set_limit(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                    const conf__slot *slot)
{
    if (len == 3 && memcmp(v, "off", 3) == 0) {
        *(uint64_t *)field = GH_CFG_NO_LIMIT;
        return 0;
    }
    return conf__set_size(p, line, what, v, len, field, slot);
}

int conf__set_flag(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                   const conf__slot *slot)
{
    if (len == 2 && memcmp(v, "on", 2) == 0)
        *(int *)field = 1;
    else if (len == 3 && memcmp(v, "off", 3) == 0)
        *(int *)field = 0;
    else
        return invalid(p, line, what, v, len, "expected on or off");
    return 0;
}

int conf__set_string(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                     const conf__slot *slot)
{
    gh_cstr *out = field;
    char *s;

    /* Strings end up in logs and headers: a CR or LF there would forge lines. */
    if (!conf__is_field_text(v, len, 1))
        return invalid(p, line, what, v, len, "control characters are not allowed");
    if ((s = conf__arena_strndup(p->a, v, len)) == NULL)
        return conf__oom(p, line);
    out->p = s;
    out->len = len;
    return 0;
}

/* ---- running slots ---------------------------------------------------------------------------- */

void *conf__block_object(conf__parser *p, int ctx)
{
    switch (ctx) {
    case CONF__CTX_MAIN:
        return p->cfg;
    case CONF__CTX_TIMEOUTS:
        return &p->cfg->timeouts;
    case CONF__CTX_POOL:
        return p->pool;
    case CONF__CTX_SITE:
        return p->site;
    case CONF__CTX_ROUTE:
        return p->route;
    case CONF__CTX_STREAM:
        return p->stream;
    case CONF__CTX_HTTP2:
        return &p->cfg->http2;
    case CONF__CTX_ADMIN:
        return &p->cfg->admin;
    case CONF__CTX_FORWARD:
        return p->forward;
    default:
        return NULL;
    }
}

int conf__set_slot(conf__parser *p, const conf__directive *d, const conf__dirspec *s)
{
    char *obj = conf__block_object(p, s->ctx);
    const conf__arg *a = &d->args[0];

    return s->slot.set(p, d->line, s->slot.what != NULL ? s->slot.what : s->name, a->p, a->len, obj + s->slot.offset,
                       &s->slot);
}

int conf__set_option(conf__parser *p, int line, const conf__option *opts, const conf__arg *a, void *obj)
{
    for (const conf__option *o = opts; o->key != NULL; o++) {
        size_t n;
        const char *v = conf__option_value(a, o->key, &n);

        if (v != NULL)
            return o->slot.set(p, line, o->slot.what != NULL ? o->slot.what : o->key, v, n,
                               (char *)obj + o->slot.offset, &o->slot) < 0
                       ? -1
                       : 0;
    }
    return 1;
}
