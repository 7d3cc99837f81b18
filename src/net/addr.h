/*
 * addr: a socket address with the text form logs show, and the parser of the
 * numeric "host:port" forms the command line and the config file accept.
 */
#ifndef GH_NET_ADDR_H
#define GH_NET_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A socket address with its text form ("127.0.0.1:8080", "[::1]:443") for logs. */
typedef struct gh_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
} gh_addr;

/*
 * Parses "host:port", "[v6]:port" or "v6" forms with a mandatory port into a.
 * Numeric addresses only (names come with the config file). Returns 0 or -1.
 */
int gh_addr_parse(gh_addr *a, const char *text);

/* 1 when host is a numeric IPv4 or IPv6 address (no brackets), 0 for a name to resolve. */
int gh_addr_is_numeric(const char *host);

/*
 * 1 when a and b are the same endpoint (family, address, port, IPv6 scope;
 * not the text). Two empty addresses (len 0: "no address") are the same.
 */
int gh_addr_same(const gh_addr *a, const gh_addr *b);

/* 1 when a is one of list[0..n). */
int gh_addr_in(const gh_addr *a, const gh_addr *list, size_t n);

#endif
