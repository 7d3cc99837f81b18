/*
 * forward/rules: the address classes and the rule matching of a forward
 * proxy (rules.h). Pure logic, no I/O.
 */
#include "forward/rules.h"

#include <netinet/in.h>
#include <string.h>

#include "net/cidr.h"

/* The classes of an IPv4 address a.b.c.d (as four bytes). */
static unsigned class_v4(const uint8_t *b)
{
    if (b[0] == 0)
        return GH_ADDR_UNSPECIFIED;
    if (b[0] == 127)
        return GH_ADDR_LOOPBACK;
    if (b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168))
        return GH_ADDR_PRIVATE;
    if (b[0] == 169 && b[1] == 254)
        return b[2] == 169 && b[3] == 254 ? GH_ADDR_LINKLOCAL | GH_ADDR_METADATA : GH_ADDR_LINKLOCAL;
    if (b[0] == 100 && (b[1] & 0xc0) == 64)
        return GH_ADDR_CGNAT;
    if ((b[0] & 0xf0) == 224)
        return GH_ADDR_MULTICAST;
    if ((b[0] & 0xf0) == 240) /* 240/4 and 255.255.255.255 */
        return GH_ADDR_RESERVED;
    if ((b[0] == 192 && b[1] == 0 && (b[2] == 0 || b[2] == 2)) || (b[0] == 198 && (b[1] & 0xfe) == 18) ||
        (b[0] == 198 && b[1] == 51 && b[2] == 100) || (b[0] == 203 && b[1] == 0 && b[2] == 113))
        return GH_ADDR_RESERVED; /* IETF assignments, benchmarking, documentation */
    return 0;
}

static unsigned class_v6(const uint8_t *a)
{
    static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
                                   nat64[12] = {0, 0x64, 0xff, 0x9b},
                                   metadata[16] = {0xfd, 0, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54};
    unsigned c = 0;

    if (memcmp(a, zero, 16) == 0)
        return GH_ADDR_UNSPECIFIED;
    if (memcmp(a, zero, 15) == 0 && a[15] == 1)
        return GH_ADDR_LOOPBACK;
    /* Forms that carry an IPv4 address: judged as that address too (a dual-stack connect reaches it). */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return class_v4(a + 12);
    if (memcmp(a, zero, 12) == 0) /* ::a.b.c.d, deprecated (RFC 4291 2.5.5.1) */
        return class_v4(a + 12) | GH_ADDR_RESERVED;
    if (a[0] == 0x20 && a[1] == 0x02) /* 6to4: 2002:AABB:CCDD::/48 */
        c |= class_v4(a + 2);
    if (memcmp(a, metadata, 16) == 0)
        return GH_ADDR_PRIVATE | GH_ADDR_METADATA;
    if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0))
        return c | GH_ADDR_PRIVATE; /* fc00::/7 ULA, fec0::/10 site-local */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return c | GH_ADDR_LINKLOCAL;
    if (a[0] == 0xff)
        return c | GH_ADDR_MULTICAST;
    if ((a[0] == 0x01 && a[1] == 0 && memcmp(a + 2, zero, 6) == 0) ||
        (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8))
        return c | GH_ADDR_RESERVED; /* 100::/64 discard, 2001:db8::/32 documentation */
    return c;
}

unsigned gh_addr_class(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return class_v4((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return class_v6(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return GH_ADDR_RESERVED;
}

const char *gh_addr_class_name(unsigned bits)
{
    static const char *const names[] = {"loopback", "private",   "link-local",  "CGNAT",
                                        "metadata", "multicast", "unspecified", "reserved"};

    if (bits & GH_ADDR_METADATA)
        return "metadata";
    for (unsigned i = 0; i < 8; i++)
        if (bits & (1u << i))
            return names[i];
    return "public";
}

int gh_fwd_host_match(const gh_cstr *pattern, const char *host, size_t len)
{
    if (pattern->len == 1 && pattern->p[0] == '*')
        return 1;
    if (pattern->len >= 2 && pattern->p[0] == '*' && pattern->p[1] == '.')
        /* "*.example.com": "a.example.com" and "a.b.example.com", not "example.com" nor "badexample.com" */
        return len > pattern->len - 1 && memcmp(host + len - (pattern->len - 1), pattern->p + 1, pattern->len - 1) == 0;
    return len == pattern->len && memcmp(host, pattern->p, len) == 0;
}

static int port_ok(const gh_cfg_fwd_rule *r, const gh_fwd_req *q)
{
    if (r->nports == 0)
        return !q->connect || q->port == 443; /* CONNECT reaches TLS ports only unless a rule says otherwise */
    for (size_t i = 0; i < r->nports; i++)
        if (q->port >= r->ports[i].lo && q->port <= r->ports[i].hi)
            return 1;
    return 0;
}

static int user_ok(const gh_cfg_fwd_rule *r, const gh_fwd_req *q)
{
    if (r->nusers == 0)
        return 1;
    if (q->user == NULL)
        return 0;
    for (size_t i = 0; i < r->nusers; i++)
        if ((r->users[i].len == 1 && r->users[i].p[0] == '*') || strcmp(r->users[i].p, q->user) == 0)
            return 1;
    return 0;
}

/* Every condition but to=. */
static int name_ok(const gh_cfg_fwd_rule *r, const gh_fwd_req *q)
{
    int host = r->nhosts == 0;

    for (size_t i = 0; i < r->nhosts && !host; i++)
        host = gh_fwd_host_match(&r->hosts[i], q->host, q->host_len);
    return host && port_ok(r, q) && user_ok(r, q) && (r->nfrom == 0 || gh_cidr_match_any(r->from, r->nfrom, q->client));
}

int gh_fwd_check_name(const gh_cfg_forward *f, const gh_fwd_req *q, int *rule)
{
    for (size_t i = 0; i < f->nrules; i++) {
        const gh_cfg_fwd_rule *r = &f->rules[i];

        if (!name_ok(r, q))
            continue;
        *rule = (int)i;
        if (r->nto > 0 || r->allow)
            return GH_FWD_RESOLVE; /* it depends on the address (to=), or it may allow */
        return GH_FWD_DENY;
    }
    *rule = -1;
    return GH_FWD_DENY;
}

int gh_fwd_check_addr(const gh_cfg_forward *f, const gh_fwd_req *q, const struct sockaddr *a, int *rule,
                      const char **why)
{
    for (size_t i = 0; i < f->nrules; i++) {
        const gh_cfg_fwd_rule *r = &f->rules[i];
        unsigned cls;

        if (!name_ok(r, q) || (r->nto > 0 && !gh_cidr_match_any(r->to, r->nto, a)))
            continue;
        *rule = (int)i;
        if (!r->allow) {
            *why = "rule";
            return GH_FWD_DENY;
        }
        /* An internal address only through a rule that names its range: "allow host=*" is not enough. */
        if ((cls = gh_addr_class(a)) != 0 && r->nto == 0) {
            *why = gh_addr_class_name(cls);
            return GH_FWD_DENY;
        }
        return GH_FWD_ALLOW;
    }
    *rule = -1;
    *why = "no rule";
    return GH_FWD_DENY;
}
