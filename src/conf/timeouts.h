/*
 * timeouts: the one list of gatehouse's global timeouts. The `timeouts { }`
 * directive, the quick-start --NAME-timeout flags and their --help lines, the
 * defaults and the quick-start copy all read it, so adding a timeout is one
 * line of GH_CFG_TIMEOUTS (and a row in docs/config.md): its field in
 * gh_cfg_timeouts, its directive and its flag follow from it.
 */
#ifndef GH_CONF_TIMEOUTS_H
#define GH_CONF_TIMEOUTS_H

#include <stddef.h>
#include <stdint.h>

/*
 * X(name, flag, default ms, what it bounds):
 *   name     the field of gh_cfg_timeouts and the directive in `timeouts { }`
 *   flag     the quick-start flag without its "--", or NULL for the file only
 *            (a new flag changes which abbreviations getopt_long accepts)
 *   default  in milliseconds, > 0: every timeout is on
 */
#define GH_CFG_TIMEOUTS(X)                                                                                             \
    X(handshake, "handshake-timeout", 10 * 1000, "TLS handshake")                                                      \
    X(header, "header-timeout", 10 * 1000, "receiving a whole request head")                                           \
    X(keepalive, "keepalive-timeout", 60 * 1000, "idle client connection between requests")                            \
    X(body, NULL, 60 * 1000, "client silent while sending a request body")                                             \
    X(send, NULL, 60 * 1000, "peer that does not read what gatehouse sends")                                           \
    X(connect, "connect-timeout", 5 * 1000, "connecting to an upstream server")                                        \
    X(response, "response-timeout", 60 * 1000, "upstream silent while a response is due")                              \
    X(upstream_idle, NULL, 30 * 1000, "idle pooled upstream connection")                                               \
    X(shutdown, "shutdown-timeout", 30 * 1000, "deadline to drain connections after SIGTERM")                          \
    X(tunnel, NULL, 3600 * 1000, "tunnel (WebSocket) with no byte either way")

/* Global timeouts, ms; every one is > 0 (all timeouts are on). */
typedef struct gh_cfg_timeouts {
#define GH_CFG_TIMEOUT_FIELD(name, flag, ms, help) uint32_t name;
    GH_CFG_TIMEOUTS(GH_CFG_TIMEOUT_FIELD)
#undef GH_CFG_TIMEOUT_FIELD
} gh_cfg_timeouts;

/* How many: a constant expression, for arrays sized by it. */
#define GH_CFG_TIMEOUT_ONE(name, flag, ms, help) +1
enum { GH_CFG_NTIMEOUTS = 0 GH_CFG_TIMEOUTS(GH_CFG_TIMEOUT_ONE) };
#undef GH_CFG_TIMEOUT_ONE

/* One row of GH_CFG_TIMEOUTS, as data. */
typedef struct gh_cfg_timeout {
    const char *name;    /* "upstream_idle" */
    const char *flag;    /* "connect-timeout"; NULL: not on the command line */
    uint32_t default_ms; /* > 0 */
    size_t offset;       /* of its uint32_t in gh_cfg_timeouts */
    const char *help;    /* what it bounds, for --help */
} gh_cfg_timeout;

/* Every timeout, in GH_CFG_TIMEOUTS order. */
extern const gh_cfg_timeout gh_cfg_timeout_table[GH_CFG_NTIMEOUTS];

/* Sets every field to its default. */
void gh_cfg_timeouts_defaults(gh_cfg_timeouts *t);

/* The field of t that row r describes. */
static inline uint32_t *gh_cfg_timeout_field(gh_cfg_timeouts *t, const gh_cfg_timeout *r)
{
    return (uint32_t *)((char *)t + r->offset);
}

#endif
