/*
 * router: from a request to a site and a route. Pure: no I/O, no allocation
 * per lookup. Built once per listener and config generation.
 *
 * Sites by Host (or by SNI for certificates), names compared lower case, the
 * port and a trailing dot ignored:
 *   1. an exact name ("www.example.com");
 *   2. a wildcard "*.example.com", which matches any depth below the domain
 *      ("a.example.com", "a.b.example.com", as nginx does) but not
 *      "example.com" itself; the most specific wildcard wins
 *      ("*.b.example.com" before "*.example.com");
 *   3. the listener's `site default`;
 *   4. nothing: NULL (the caller answers 421 Misdirected Request or 404).
 *
 * Routes within a site: the longest prefix that matches the path (before any
 * '?') wins, and then its method and header conditions must hold, else the
 * next longer-or-equal candidate is tried. A prefix that ends with '/'
 * matches any path that starts with it; one that does not ("/api") matches
 * that path exactly or followed by '/' ("/api", "/api/x"), not "/apix".
 * Paths are compared byte for byte, so the caller passes the canonical path
 * (gh_h1_request_canonical_path: other spellings refused, runs of '/' merged)
 * and sends that same path upstream; else a route could be bypassed by a
 * different spelling of the path it guards.
 */
#ifndef GH_CONF_ROUTER_H
#define GH_CONF_ROUTER_H

#include <stddef.h>

#include "conf/config.h"

/* Owns its tables (allocated by gh_router_new, freed by gh_router_free); points into the config, which must outlive it.
 */
typedef struct gh_router gh_router;

/* The router of cfg->listeners[listener], or NULL when out of memory. */
gh_router *gh_router_new(const gh_config *cfg, size_t listener);

/* NULL is a no-op. */
void gh_router_free(gh_router *r);

/* The site for a Host header value ("Example.COM:8443", "[::1]:443"), or NULL. */
const gh_cfg_site *gh_router_site(const gh_router *r, const char *host, size_t len);

/*
 * The site whose certificates answer a TLS ClientHello with this SNI name
 * (NULL or empty: no SNI). Same rules as gh_router_site, except that when no
 * site matches and there is no default, the first site of the listener (in
 * file order) answers, so every handshake gets a certificate. NULL only for a
 * listener without sites (the loader refuses those).
 */
const gh_cfg_site *gh_router_sni(const gh_router *r, const char *name, size_t len);

/*
 * Header condition callback: 1 if the request has a header named `name`
 * (lower case; compare case-insensitively) whose value is exactly `value`.
 */
typedef int (*gh_router_header_fn)(const void *ctx, const char *name, size_t name_len, const char *value,
                                   size_t value_len);

typedef struct gh_route_request {
    const char *method; /* as received: case-sensitive */
    size_t method_len;
    const char *path; /* origin-form path, with or without the query */
    size_t path_len;
    gh_router_header_fn has_header; /* NULL: routes with header conditions never match */
    const void *header_ctx;
} gh_route_request;

/* The route for req in site, or NULL (the caller answers 404). */
const gh_cfg_route *gh_router_route(const gh_cfg_site *site, const gh_route_request *req);

/* A gh_router_header_fn over a parsed HTTP/1.1 request: ctx is a const gh_h1_request *. */
int gh_router_h1_has_header(const void *ctx, const char *name, size_t name_len, const char *value, size_t value_len);

#endif
