/* cidr: networks in CIDR notation and the match of an address against them. */
#include "net/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

int gh_cidr_parse(const char *s, size_t len, gh_cidr *out, const char **why)
{
    char host[64];
    const char *slash = memchr(s, '/', len);
    size_t hlen = slash ? (size_t)(slash - s) : len;
    unsigned bits = 0, max;

    *why = "not a network (ADDR or ADDR/BITS, numeric)";
    if (hlen == 0 || hlen >= sizeof(host))
        return -1;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        return -1;
    }
    if (slash == NULL) {
        bits = max;
    } else {
        const char *p = slash + 1, *end = s + len;
        if (p == end || end - p > 3) {
            *why = "bad prefix length";
            return -1;
        }
        for (; p < end; p++) {
            if (*p < '0' || *p > '9') {
                *why = "bad prefix length";
                return -1;
            }
            bits = bits * 10 + (unsigned)(*p - '0');
        }
        if (bits > max || (end - slash > 2 && slash[1] == '0')) {
            *why = "bad prefix length";
            return -1;
        }
    }
    out->bits = (uint8_t)bits;
    for (unsigned i = bits; i < max; i++)
        if (out->addr[i / 8] & (0x80u >> (i % 8))) {
            *why = "address has bits set beyond the prefix length";
            return -1;
        }
    *why = NULL;
    return 0;
}

static int prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int gh_cidr_match(const gh_cidr *c, const struct sockaddr *sa)
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const uint8_t *a;
    int family = sa->sa_family;

    if (family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        a = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (c->family == AF_INET && memcmp(a, v4mapped, 12) == 0) {
            a += 12;
            family = AF_INET;
        }
    } else {
        return 0;
    }
    return family == c->family && prefix_eq(a, c->addr, c->bits);
}

int gh_cidr_match_any(const gh_cidr *list, size_t n, const struct sockaddr *sa)
{
    for (size_t i = 0; i < n; i++)
        if (gh_cidr_match(&list[i], sa))
            return 1;
    return 0;
}

void gh_cidr_format(const gh_cidr *c, char *dst, size_t cap)
{
    char host[INET6_ADDRSTRLEN];
    if (inet_ntop(c->family, c->addr, host, sizeof(host)) == NULL)
        host[0] = '\0';
    snprintf(dst, cap, "%s/%u", host, c->bits);
}
