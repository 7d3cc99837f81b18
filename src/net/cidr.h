/*
 * cidr: networks as operators write them ("10.0.0.0/8", "2001:db8::/32",
 * "192.0.2.7", "::1"), and the test whether an address is in one. The one
 * parser and matcher for every list of networks: trusted PROXY protocol
 * sources, admin and site allow/deny lists, forward proxy rules.
 */
#ifndef GH_NET_CIDR_H
#define GH_NET_CIDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct gh_cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t bits;   /* prefix length: 0..32 or 0..128 */
    uint8_t addr[16];
} gh_cidr;

/*
 * Parses "ADDR" or "ADDR/BITS" (numeric IPv4 or IPv6, no brackets, no zone)
 * from s[0..len). Host bits set beyond the prefix ("10.1.2.3/8") are an
 * error: they suggest the operator meant another network. 0, or -1 with a
 * reason for a FILE:LINE message in *why.
 */
int gh_cidr_parse(const char *s, size_t len, gh_cidr *out, const char **why);

/*
 * 1 when the address sa (AF_INET or AF_INET6) is in c. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d, as a dual-stack socket reports IPv4 clients) is
 * matched as the IPv4 address it carries, so "10.0.0.0/8" covers it.
 */
int gh_cidr_match(const gh_cidr *c, const struct sockaddr *sa);

/* 1 when sa is in any of list[0..n). */
int gh_cidr_match_any(const gh_cidr *list, size_t n, const struct sockaddr *sa);

/* "10.0.0.0/8" into dst (at least 50 bytes), for logs and error messages. */
void gh_cidr_format(const gh_cidr *c, char *dst, size_t cap);

#endif
