/*
 * lexer: the config file as a sequence of directives. Private to src/conf.
 *
 * A directive is a bare name, arguments (bare words or "quoted strings"),
 * and an end: a newline, a ';', a '{' that opens its block, or a '}' that
 * closes the enclosing block (so `route / { proxy app }` fits on one line).
 * '#' starts a comment where a token could start. Quoted strings take the
 * escapes \" \\ \n and \t, and end on the same line. A dollar sign is
 * written $$ where variables are expanded (redirect targets).
 */
#ifndef GH_CONF_LEXER_H
#define GH_CONF_LEXER_H

#include <stddef.h>

#define CONF__MAX_ARGS 64

typedef struct conf__arg {
    const char *p; /* into the lexer's buffer: not NUL-terminated */
    size_t len;
    int quoted; /* 1: came from "...", so "{" or "off" are plain text */
} conf__arg;

typedef struct conf__directive {
    conf__arg name;
    conf__arg args[CONF__MAX_ARGS];
    size_t nargs;
    int line;
    int block; /* 1: ended with '{' */
} conf__directive;

typedef struct conf__lexer {
    const char *file; /* for messages */
    char *buf;        /* the whole file; quoted strings are unescaped in place */
    size_t len, pos;
    int line;
    int pending_close; /* a '}' ended the last directive and is still to be returned */
    char *err;
    size_t errlen;
} conf__lexer;

enum conf__read {
    CONF__DIRECTIVE = 1, /* *d holds a directive */
    CONF__CLOSE = 2,     /* a '}' at d->line */
    CONF__EOF = 3,       /* end of the file at d->line */
    CONF__FAIL = -1,     /* err holds "FILE:LINE: reason" */
};

/* Starts lexing buf[0..len) (owned by the caller, modified in place). */
void conf__lexer_init(conf__lexer *lx, const char *file, char *buf, size_t len, char *err, size_t errlen);

/* Reads the next directive, block close or end of file: enum conf__read. */
int conf__lexer_next(conf__lexer *lx, conf__directive *d);

#endif
