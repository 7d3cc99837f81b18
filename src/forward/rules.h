/*
 * forward/rules: what a forward proxy lets a client reach (pure logic, no I/O:
 * unit-tested in tests/unit/test_forward.c).
 *
 * A request is judged twice. Before DNS, on what the client asked (host
 * pattern, port, its own address, its user): a name that no rule can allow
 * is refused without a query. After DNS, once per candidate address, with
 * the address too: the first rule that matches decides, and an address of a
 * special-purpose range (loopback, private, link-local, cloud metadata...,
 * gh_addr_class) is refused even by an allow rule unless that rule names its
 * range in to=. So a name that resolves to an internal address cannot be used
 * to reach it (SSRF), and the address judged is the one then connected to.
 */
#ifndef GH_FORWARD_RULES_H
#define GH_FORWARD_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conf/config.h"

/* Special-purpose address ranges (RFC 6890 and successors): bits of gh_addr_class. */
enum gh_addr_class_bit {
    GH_ADDR_LOOPBACK = 1 << 0,    /* 127/8, ::1 */
    GH_ADDR_PRIVATE = 1 << 1,     /* 10/8, 172.16/12, 192.168/16, fc00::/7 (ULA), fec0::/10 */
    GH_ADDR_LINKLOCAL = 1 << 2,   /* 169.254/16, fe80::/10 */
    GH_ADDR_CGNAT = 1 << 3,       /* 100.64/10 (RFC 6598): often a provider's internal network */
    GH_ADDR_METADATA = 1 << 4,    /* 169.254.169.254, fd00:ec2::254: cloud instance metadata (credentials) */
    GH_ADDR_MULTICAST = 1 << 5,   /* 224/4, ff00::/8 */
    GH_ADDR_UNSPECIFIED = 1 << 6, /* 0/8 ("this network": 0.0.0.0 reaches the host itself), :: */
    GH_ADDR_RESERVED = 1 << 7,    /* 240/4, broadcast, 192.0.0/24, 198.18/15, documentation, 100::/64 */
};

/*
 * The classes of an address (0: an ordinary public one). An IPv6 address
 * that carries an IPv4 one (mapped ::ffff:a.b.c.d, NAT64 64:ff9b::/96, 6to4
 * 2002::/16, the old compatible ::a.b.c.d) has the classes of that IPv4
 * address too: ::ffff:127.0.0.1 is loopback.
 */
unsigned gh_addr_class(const struct sockaddr *sa);

/* "loopback", "private"... for logs: the first class of bits. */
const char *gh_addr_class_name(unsigned bits);

/* 1 when the lowercase host[0..len) matches pattern: exact, "*.example.com" (subdomains only), "*". */
int gh_fwd_host_match(const gh_cstr *pattern, const char *host, size_t len);

/* A request as the rules see it. */
typedef struct gh_fwd_req {
    const char *host; /* lowercase, without brackets or port */
    size_t host_len;
    uint16_t port;
    int connect;                   /* CONNECT (a rule without port= covers 443 only), else plain http */
    const struct sockaddr *client; /* the client's address */
    const char *user;              /* authenticated user; NULL: none */
} gh_fwd_req;

enum gh_fwd_verdict { GH_FWD_DENY = 0, GH_FWD_ALLOW, GH_FWD_RESOLVE };

/*
 * Before DNS: GH_FWD_DENY when no rule can allow the request whatever the
 * name resolves to (*rule: the deciding rule's index, -1 for the default
 * deny), else GH_FWD_RESOLVE with *rule the first rule whose conditions on
 * the name hold: when it is an allow rule with via= (and so no to=), the
 * request goes to a parent proxy, which resolves the name itself.
 */
int gh_fwd_check_name(const gh_cfg_forward *f, const gh_fwd_req *q, int *rule);

/*
 * One address the name resolved to: GH_FWD_ALLOW (*rule: the allowing rule)
 * or GH_FWD_DENY (*rule: the deciding rule, or -1; *why says why: "rule",
 * "no rule", or the class name of an internal address no to= allowed).
 */
int gh_fwd_check_addr(const gh_cfg_forward *f, const gh_fwd_req *q, const struct sockaddr *a, int *rule,
                      const char **why);

#endif
