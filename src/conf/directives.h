/*
 * directives: the tables of every directive (context, arguments, block, and
 * either a handler or a typed slot), the typed setters, and the helpers the
 * handlers share. Private to src/conf.
 *
 * The rows live with the block they fill, in the manner of nginx's module
 * command tables:
 *   directives.c        the main context and `timeouts { }` (rows generated from GH_CFG_TIMEOUTS)
 *   pool_directives.c   `pool { }`: server, balance, health, passive
 *   site_directives.c   `site { }`: cert, listen, route
 *   route_directives.c  `route { }`: proxy, redirect, respond, method, header, timeout, ...
 *   setters.c           the typed setters and the shared helpers
 *
 * Adding a directive is one row. A plain value needs no handler: give the row
 * a slot, e.g. in the main context
 *     {"max_connections", CONF__CTX_MAIN, 1, 1, 0, 0, NULL, "max_connections N",
 *      CONF__COUNT(gh_config, max_connections, 1, 1000000)},
 * and in a route `{"websocket", CONF__CTX_ROUTE, ..., CONF__FLAG(gh_cfg_route, websocket)}`.
 * An `a=b` option of a directive (health, passive) is one row of its
 * conf__option table, with the same slots.
 */
#ifndef GH_CONF_DIRECTIVES_H
#define GH_CONF_DIRECTIVES_H

#include <stddef.h>
#include <stdint.h>

#include "conf/parser.h"

enum conf__ctx {
    CONF__CTX_MAIN = 0,
    CONF__CTX_TIMEOUTS,
    CONF__CTX_POOL,
    CONF__CTX_SITE,
    CONF__CTX_ROUTE,
    CONF__CTX_STREAM,
    CONF__CTX_HTTP2,
    CONF__CTX_ADMIN,
    CONF__CTX_FORWARD
};

typedef struct conf__slot conf__slot;

/*
 * A typed setter (nginx's ngx_conf_set_*_slot): reads the value v[0..len) into
 * the field at `field`, the one slot->offset names. Errors read
 * `FILE:LINE: invalid WHAT "VALUE": reason`, WHAT being slot->what, else the
 * directive's or option's name. Returns 0 or -1.
 */
typedef int conf__setter(conf__parser *p, int line, const char *what, const char *v, size_t len, void *field,
                         const conf__slot *slot);

struct conf__slot {
    conf__setter *set; /* NULL: no slot (the row has a handler) */
    size_t offset;     /* of the field in the block's object: see conf__block_object */
    uint64_t min, max; /* bounds: conf__set_count, conf__set_size (max 0: none) */
    const char *what;  /* the value's name in messages; NULL: the directive's or option's name */
};

/* The setters: the C type of the field each one writes is in brackets. */
conf__setter conf__set_duration; /* [uint32_t] ms: 500ms, 10s, 5m, 1h, a bare number of seconds; never 0 */
conf__setter conf__set_count;    /* [uint32_t] digits only, min..max */
conf__setter conf__set_size;     /* [uint64_t] bytes: 512, 16k, 1m, 1g; min..max (max 0: any) */
conf__setter conf__set_limit;    /* [uint64_t] a size or off (GH_CFG_NO_LIMIT) */
conf__setter conf__set_flag;     /* [int] on: 1, off: 0 */
conf__setter conf__set_string;   /* [gh_cstr] copied into the arena; no control characters */

/*
 * Slots for rows: CONF__DURATION(gh_cfg_health, interval). The size of the
 * field is checked at compile time against what the setter writes (the
 * kernel's BUILD_BUG_ON_ZERO: a bit-field of negative width does not compile).
 */
#define CONF__FIELD_IS(type, field, ctype)                                                                             \
    (offsetof(type, field) + 0 * sizeof(struct { int fits : sizeof(((type *)0)->field) == sizeof(ctype) ? 1 : -1; }))
#define CONF__SLOT(setter, type, field, ctype, lo, hi, what)                                                           \
    {                                                                                                                  \
        setter, CONF__FIELD_IS(type, field, ctype), lo, hi, what                                                       \
    }
#define CONF__DURATION(type, field)      CONF__SLOT(conf__set_duration, type, field, uint32_t, 0, 0, NULL)
#define CONF__COUNT(type, field, lo, hi) CONF__SLOT(conf__set_count, type, field, uint32_t, lo, hi, NULL)
#define CONF__SIZE(type, field, lo, hi)  CONF__SLOT(conf__set_size, type, field, uint64_t, lo, hi, NULL)
#define CONF__LIMIT(type, field)         CONF__SLOT(conf__set_limit, type, field, uint64_t, 0, 0, NULL)
#define CONF__FLAG(type, field)          CONF__SLOT(conf__set_flag, type, field, int, 0, 0, NULL)
#define CONF__STRING(type, field)        CONF__SLOT(conf__set_string, type, field, gh_cstr, 0, 0, NULL)

typedef struct conf__dirspec {
    const char *name;
    int ctx;           /* enum conf__ctx; -1: any */
    unsigned char min; /* arguments */
    unsigned char max;
    unsigned char block;                                  /* 1: needs a { } block; 0: refuses one */
    unsigned char multi;                                  /* 1: may appear more than once in a block */
    int (*fn)(conf__parser *p, const conf__directive *d); /* NULL: `slot` reads the one argument */
    const char *usage;
    conf__slot slot;
} conf__dirspec;

/*
 * A row with a handler leaves the slot out (it is then all zero): the tables
 * are written between these two, which silence -Wmissing-field-initializers
 * for that one purpose.
 */
#define CONF__TABLE_BEGIN                                                                                              \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wmissing-field-initializers\"")
#define CONF__TABLE_END _Pragma("GCC diagnostic pop")

/* Each table ends with a row whose name is NULL. */
extern const conf__dirspec conf__main_directives[], conf__pool_directives[], conf__site_directives[],
    conf__route_directives[], conf__edge_directives[], conf__stream_directives[], conf__admin_directives[],
    conf__forward_directives[];

/* edge_directives.c: the built-in log formats (combined, json) first in c->formats; 0 or -1 (out of memory). */
int conf__builtin_formats(conf__arena *a, gh_config *c, size_t *cap);
/* The quick start's: built-in formats, its --access-log in combined format, the default hidden headers. */
int conf__quick_edge(conf__arena *a, gh_config *c, gh_cfg_site *s, gh_cfg_route *r);
/* Validation: every access_log's format resolved (0, or -1 with FILE:LINE). */
int conf__edge_logs(conf__parser *p);
/* Validation: a route's log, rules, rate limit, hidden headers and site header operations resolved. */
int conf__edge_route(conf__parser *p, gh_cfg_site *s, gh_cfg_route *r);

/* Once-only directives one block can hold (a bound for the parser's bookkeeping). */
#define CONF__NDIRECTIVES 64

/*
 * The directive called name in context ctx (-1: in any context), or NULL.
 * Tables are searched main, pool, site, route: the first row wins.
 */
const conf__dirspec *conf__find_directive(int ctx, const char *name, size_t len);

/* "the main context", "a site block"... for messages. */
const char *conf__context_name(int ctx);

/* The object a row of context ctx fills (gh_config, its gh_cfg_timeouts, p->pool, p->site, p->route). */
void *conf__block_object(conf__parser *p, int ctx);

/* Runs s's slot on d's one argument, in the object of s's context (the parser's dispatch, for fn == NULL). */
int conf__set_slot(conf__parser *p, const conf__directive *d, const conf__dirspec *s);

/* An `a=b` option of a directive: `health http interval=2s`, `passive fails=5`. */
typedef struct conf__option {
    const char *key;
    conf__slot slot; /* offsets into the object the caller passes */
} conf__option;

/*
 * When a is "KEY=VALUE" for a row of opts (ended by a NULL key), sets that
 * row's field in obj; returns 0, or -1 after an error. Returns 1 when a is
 * not one of these options (the caller tries its own or reports it).
 */
int conf__set_option(conf__parser *p, int line, const conf__option *opts, const conf__arg *a, void *obj);

/* Parses the block that d opened, in context ctx. Defined in parser.c. */
int conf__parse_nested(conf__parser *p, int ctx, int open_line);

/* include GLOB, defined in parser.c. */
int conf__include(conf__parser *p, const conf__directive *d);

/* A path relative to the directory of the file being read (absolute paths unchanged). */
int conf__relative_path(conf__parser *p, const char *s, size_t len, gh_cstr *out);

/* `pool NAME { }` (pool_directives.c) and `site NAME... { }` (site_directives.c): rows of the main table. */
int conf__d_pool(conf__parser *p, const conf__directive *d);
int conf__d_site(conf__parser *p, const conf__directive *d);
/* `stream NAME { }` (stream_directives.c). */
int conf__d_stream(conf__parser *p, const conf__directive *d);
/* `admin { }` (admin_directives.c). */
int conf__d_admin(conf__parser *p, const conf__directive *d);
/* `forward { }` in a site (forward_directives.c), and its validation (rules' pools, the synthesized route). */
int conf__d_forward(conf__parser *p, const conf__directive *d);
int conf__forward_validate(conf__parser *p, gh_cfg_site *s);
/* A route's timeouts and body limits from the main context where it set none (validate.c). */
void conf__route_defaults(const gh_config *c, gh_cfg_route *r);
/* request_buffer and body_min_rate (route_directives.c), in the main context and in routes. */
int conf__d_request_buffer(conf__parser *p, const conf__directive *d);
int conf__d_body_min_rate(conf__parser *p, const conf__directive *d);
/* request_header / response_header (route_directives.c); response_header in a site too. */
int conf__d_header_op(conf__parser *p, const conf__directive *d);

/* A numeric listen address into a (the main context's `listen` and a site's). Returns 0 or -1. */
int conf__listen_addr(conf__parser *p, int line, const conf__arg *arg, gh_addr *a);

/*
 * A listener's options after its address, from d's argument `first` on: tls
 * (when allow_tls), proxy_protocol, from=NET,NET... (at most CONF__MAX_PP_FROM
 * networks), for the main context's `listen` and a stream service's. 0 or -1.
 */
#define CONF__MAX_PP_FROM 64
/* `cert CERT-FILE KEY-FILE` of a site or a stream: one more pair into certs[0..*ncerts), paths made relative to the
 * file's directory. */
int conf__cert(conf__parser *p, const conf__directive *d, gh_cfg_cert **certs, size_t *ncerts);
int conf__listen_options(conf__parser *p, const conf__directive *d, size_t first, gh_cfg_listener *l, int allow_tls);

/* ---- helpers for handlers (setters.c) ---- */

int conf__oom(conf__parser *p, int line);

/* 1 when a is exactly lit. */
int conf__arg_is(const conf__arg *a, const char *lit);

/* A copy of a in the arena. Returns 0 or -1 (out of memory, reported). */
int conf__dup_arg(conf__parser *p, int line, const conf__arg *a, gh_cstr *out);

/* "key=value": the value when a starts with key=, else NULL. */
const char *conf__option_value(const conf__arg *a, const char *key, size_t *vlen);

/* An RFC 9110 token: header names and methods. */
int conf__is_token(const char *s, size_t len);

/* Printable text and tabs only (no spaces either unless allow_space): header values, Locations. */
int conf__is_field_text(const char *s, size_t len, int allow_space);

/* Letters, digits, '-', '_' and '.': pool names, host names. */
int conf__is_name_char(unsigned char c);

/* `FILE:LINE: invalid WHAT "ARG": why`. Returns -1. */
int conf__bad_value(conf__parser *p, int line, const char *what, const conf__arg *a, const char *why);

/* A duration (conf__set_duration) named what in messages. */
int conf__duration_arg(conf__parser *p, int line, const char *what, const char *s, size_t len, uint32_t *ms);

/* An integer in min..max: `invalid WHAT "S": expected a number from MIN to MAX`. */
int conf__uint_arg(conf__parser *p, int line, const char *what, const char *s, size_t len, uint64_t min, uint64_t max,
                   uint64_t *out);

#endif
