/*
 * directives: the table of every directive (context, arguments, block) and
 * the handlers that fill the model. Private to src/conf.
 */
#ifndef GH_CONF_DIRECTIVES_H
#define GH_CONF_DIRECTIVES_H

#include "conf/parser.h"

enum conf__ctx { CONF__CTX_MAIN = 0, CONF__CTX_TIMEOUTS, CONF__CTX_POOL, CONF__CTX_SITE, CONF__CTX_ROUTE };

typedef struct conf__dirspec {
    const char *name;
    int ctx;           /* enum conf__ctx */
    unsigned char min; /* arguments */
    unsigned char max;
    unsigned char block; /* 1: needs a { } block; 0: refuses one */
    unsigned char multi; /* 1: may appear more than once in a block */
    int (*fn)(conf__parser *p, const conf__directive *d);
    const char *usage;
} conf__dirspec;

#define CONF__NDIRECTIVES 40 /* >= entries in conf__directives; checked by a static assert */

extern const conf__dirspec conf__directives[];

/* The directive called name in context ctx (-1: in any context), or NULL. */
const conf__dirspec *conf__find_directive(int ctx, const char *name, size_t len);

/* "the main context", "a site block"... for messages. */
const char *conf__context_name(int ctx);

/* Parses the block that d opened, in context ctx. Defined in parser.c. */
int conf__parse_nested(conf__parser *p, int ctx, int open_line);

/* include GLOB, defined in parser.c. */
int conf__include(conf__parser *p, const conf__directive *d);

/* A path relative to the directory of the file being read (absolute paths unchanged). */
int conf__relative_path(conf__parser *p, const char *s, size_t len, gh_cstr *out);

#endif
