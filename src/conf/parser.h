/*
 * parser: turns directives into a gh_config (parser.c), then checks what only
 * the whole file can tell (validate.c). Private to src/conf.
 */
#ifndef GH_CONF_PARSER_H
#define GH_CONF_PARSER_H

#include "conf/arena.h"
#include "conf/config.h"
#include "conf/lexer.h"
#include "conf/source.h"

/* A route's `proxy POOL`, resolved once every pool is known (pools may follow the sites). */
typedef struct conf__pool_ref {
    size_t site, route;
    gh_cstr name;
    gh_cfg_where where;
} conf__pool_ref;

/* A site's `listen ADDR`, resolved once every listener is known. */
typedef struct conf__listen_ref {
    size_t site;
    gh_addr addr;
    gh_cfg_where where;
} conf__listen_ref;

struct conf__block;

typedef struct conf__parser {
    gh_config *cfg;
    const gh_conf_source *src; /* every file is read through it (the filesystem, or a reload bundle) */
    conf__arena *a;
    char *err;
    size_t errlen;

    /* Where we are: the current file, its lexer and block, the objects being filled. */
    const char *file; /* in the arena: gh_cfg_where points to it */
    conf__lexer *lx;
    struct conf__block *block;
    gh_cfg_pool *pool;
    gh_cfg_site *site;
    gh_cfg_route *route;
    gh_cfg_stream *stream;
    gh_cfg_forward *forward; /* the `forward { }` block being read */
    int main_lines;          /* lines in the main file: where "no listener" is reported */

    /* Files being read, outermost first (realpath, malloc'd): include cycles and depth. */
    char *stack[GH_CFG_INCLUDE_DEPTH + 1];
    int depth;

    /* Capacities of the arrays under construction (conf__arena_push). */
    size_t cap_listeners, cap_pools, cap_sites, cap_servers, cap_streams;
    size_t cap_names, cap_certs, cap_routes;
    size_t cap_methods, cap_hmatch, cap_req_ops, cap_resp_ops, cap_target;
    size_t cap_formats, cap_logs, cap_site_rules, cap_route_rules, cap_stream_rules, cap_site_resp_ops;
    size_t cap_main_hide, cap_site_hide, cap_route_hide;
    size_t cap_fwd_rules;

    conf__pool_ref *pool_refs;
    size_t npool_refs, cap_pool_refs;
    conf__listen_ref *listen_refs;
    size_t nlisten_refs, cap_listen_refs;
} conf__parser;

/* Writes "FILE:LINE: message" into p->err (file NULL: p->file). Returns -1. */
int conf__fail(conf__parser *p, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Parses the main file into p->cfg (defaults already set). Returns 0 or -1. */
int conf__parse_main(conf__parser *p, const char *path);

/* Whole-config checks and fix-ups: references, defaults, route order. Returns 0 or -1. */
int conf__validate(conf__parser *p);

/* The admin block against the listeners, once the whole file is read (admin_directives.c). Returns 0 or -1. */
int conf__check_admin(conf__parser *p);

#endif
