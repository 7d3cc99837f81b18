/*
 * admin_directives: `admin { listen ADDRESS:PORT; allow NETWORK... }`, the
 * listener of /metrics and /status (src/admin/admin.h).
 */
#include <string.h>

#include "conf/directives.h"

#define ARG(i)          (&d->args[(i)])
#define ADMIN_MAX_ALLOW 64 /* networks in all the block's allow lines: a bound, not a target */

int conf__d_admin(conf__parser *p, const conf__directive *d)
{
    gh_cfg_admin *a = &p->cfg->admin;

    a->enabled = 1;
    a->where = (gh_cfg_where){p->file, d->line};
    if (conf__parse_nested(p, CONF__CTX_ADMIN, d->line) < 0)
        return -1;
    if (a->addr.len == 0)
        return conf__fail(p, NULL, d->line, "the admin block needs \"listen ADDRESS:PORT\", such as 127.0.0.1:9100");
    return 0;
}

static int d_admin_listen(conf__parser *p, const conf__directive *d)
{
    return conf__listen_addr(p, d->line, ARG(0), &p->cfg->admin.addr);
}

static int d_admin_allow(conf__parser *p, const conf__directive *d)
{
    gh_cfg_admin *a = &p->cfg->admin;

    if (a->allow == NULL && (a->allow = conf__arena_alloc(p->a, ADMIN_MAX_ALLOW * sizeof(*a->allow))) == NULL)
        return conf__oom(p, d->line);
    for (size_t i = 0; i < d->nargs; i++) {
        const char *why = NULL;

        if (a->nallow + 2 > ADMIN_MAX_ALLOW)
            return conf__fail(p, NULL, d->line, "at most %d networks in the admin block's allow lists",
                              ADMIN_MAX_ALLOW - 1);
        if (conf__arg_is(ARG(i), "all")) { /* as in a site's allow: every IPv4 and IPv6 address */
            gh_cidr_parse("0.0.0.0/0", 9, &a->allow[a->nallow++], &why);
            gh_cidr_parse("::/0", 4, &a->allow[a->nallow++], &why);
            continue;
        }
        if (gh_cidr_parse(ARG(i)->p, ARG(i)->len, &a->allow[a->nallow], &why) < 0)
            return conf__bad_value(p, d->line, "network", ARG(i), why != NULL ? why : "expected ADDRESS[/BITS]");
        a->nallow++;
    }
    return 0;
}

/* The admin port is not a proxy listener: the same address in both would fail to bind at start. */
int conf__check_admin(conf__parser *p)
{
    const gh_cfg_admin *a = &p->cfg->admin;

    if (!a->enabled)
        return 0;
    for (size_t i = 0; i < p->cfg->nlisteners; i++)
        if (strcmp(p->cfg->listeners[i].addr.text, a->addr.text) == 0)
            return conf__fail(p, a->where.file, a->where.line, "admin listen %s is also a proxy listener (%s:%d)",
                              a->addr.text, p->cfg->listeners[i].where.file, p->cfg->listeners[i].where.line);
    return 0;
}

CONF__TABLE_BEGIN
/* name, context, min and max arguments, block, multi, handler (NULL: the slot), usage, slot */
const conf__dirspec conf__admin_directives[] = {
    {"listen", CONF__CTX_ADMIN, 1, 1, 0, 0, d_admin_listen, "listen ADDRESS:PORT (in the admin block)"},
    {"allow", CONF__CTX_ADMIN, 1, CONF__MAX_ARGS, 0, 1, d_admin_allow, "allow NETWORK..."},
    {NULL},
};
CONF__TABLE_END
