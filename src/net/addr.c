#include "net/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Longest host part we accept: a full IPv6 text form (with an embedded IPv4 tail). */
#define HOST_MAX INET6_ADDRSTRLEN

/*
 * A port is 1 to 5 decimal digits with a value in 1..65535; no sign, no
 * spaces, nothing after it. Counting digits first means the value cannot
 * overflow while it is accumulated.
 */
static int parse_port(const char *s, uint16_t *port)
{
    size_t n = strlen(s);
    uint32_t v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/*
 * Splits "host:port" or "[v6]:port" into a NUL-terminated host copy and a
 * pointer to the port text. A bare IPv6 address has colons of its own, so it
 * is only accepted inside brackets, where the port cannot be mistaken for
 * its last group ("::1:443" would be ambiguous).
 */
static int split_host_port(const char *text, char *host, size_t hostlen, const char **port, int *v6)
{
    const char *end, *colon;
    size_t n;

    if (text[0] == '[') {
        end = strchr(text, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        text++;
        colon = end + 1;
        *v6 = 1;
    } else {
        colon = strchr(text, ':');
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
        end = colon;
        *v6 = 0;
    }
    n = (size_t)(end - text);
    if (n == 0 || n >= hostlen)
        return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    *port = colon + 1;
    return 0;
}

int gh_addr_parse(gh_addr *a, const char *text)
{
    char host[HOST_MAX], canon[HOST_MAX];
    const char *port_text;
    uint16_t port;
    int v6;
    gh_addr out;

    memset(&out, 0, sizeof(out));
    if (split_host_port(text, host, sizeof(host), &port_text, &v6) < 0 || parse_port(port_text, &port) < 0)
        return -1;
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out.ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        out.len = sizeof(*sin6);
        inet_ntop(AF_INET6, &sin6->sin6_addr, canon, sizeof(canon));
        snprintf(out.text, sizeof(out.text), "[%s]:%u", canon, (unsigned)port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out.ss;

        /* inet_pton accepts only dotted quads: no "1.2.3", octal, hex or trailing junk. */
        if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return -1;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out.len = sizeof(*sin);
        inet_ntop(AF_INET, &sin->sin_addr, canon, sizeof(canon));
        snprintf(out.text, sizeof(out.text), "%s:%u", canon, (unsigned)port);
    }
    *a = out;
    return 0;
}

int gh_addr_is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int gh_addr_same(const gh_addr *a, const gh_addr *b)
{
    if (a->len == 0 || b->len == 0)
        return a->len == b->len;
    if (a->ss.ss_family != b->ss.ss_family)
        return 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss, *y = (const struct sockaddr_in *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss, *y = (const struct sockaddr_in6 *)&b->ss;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int gh_addr_in(const gh_addr *a, const gh_addr *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (gh_addr_same(a, &list[i]))
            return 1;
    return 0;
}
