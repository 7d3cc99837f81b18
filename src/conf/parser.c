/*
 * parser: reading files and includes, and dispatching each directive through
 * a declarative table (name, block, argument count), in the manner of nginx.
 * The handlers that fill the model live in directives.c.
 */
#include "conf/parser.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/directives.h"

/* One open block: its context and where each of its once-only directives first appeared. */
typedef struct conf__block {
    int ctx;
    int open_line;
    size_t nseen;
    const conf__dirspec *seen[CONF__NDIRECTIVES];
    int first_line[CONF__NDIRECTIVES];
    const char *first_file[CONF__NDIRECTIVES];
} conf__block;

static int parse_block(conf__parser *p, conf__block *b, int nested);

int conf__fail(conf__parser *p, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->errlen == 0)
        return -1;
    n = snprintf(p->err, p->errlen, "%s:%d: ", file != NULL ? file : p->file, line);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *read_error(int e)
{
    if (e == EFBIG)
        return "file too large (the limit is 1 MiB)";
    if (e == EINVAL)
        return "not a regular file";
    return strerror(e);
}

/* Is the file at `real` (its canonical path) already being read (an include cycle)? Else pushes it; takes real. */
static int push_file(conf__parser *p, const char *path, char *real, int from_line)
{
    for (int i = 0; i < p->depth; i++) {
        if (strcmp(p->stack[i], real) == 0) {
            free(real);
            return conf__fail(p, NULL, from_line, "include cycle: \"%s\" is already being read", path);
        }
    }
    if (p->depth > GH_CFG_INCLUDE_DEPTH) {
        free(real);
        return conf__fail(p, NULL, from_line, "includes nested more than %d deep", GH_CFG_INCLUDE_DEPTH);
    }
    p->stack[p->depth++] = real;
    return 0;
}

static void pop_file(conf__parser *p)
{
    free(p->stack[--p->depth]);
    p->stack[p->depth] = NULL;
}

/*
 * Parses one file into block b. from_line is the include line in the current
 * file (errors opening an included file are reported there), or 0 for the
 * main file, whose open errors read "FILE: reason" since there is no line.
 */
static int parse_file(conf__parser *p, const char *path, conf__block *b, int from_line)
{
    const char *saved_file = p->file;
    conf__lexer *saved_lx = p->lx, lx;
    gh_conf_file f = {0};
    int e, rc;

    if ((e = p->src->read(p->src, path, GH_CFG_MAX_FILE, &f)) != 0) {
        if (from_line == 0) {
            snprintf(p->err, p->errlen, "%s: cannot read: %s", path, read_error(e));
            return -1;
        }
        return conf__fail(p, NULL, from_line, "cannot read \"%s\": %s", path, read_error(e));
    }
    if (push_file(p, path, f.real, from_line) < 0) {
        free(f.data);
        return -1;
    }
    f.real = NULL; /* the stack owns it now */
    p->file = conf__arena_strndup(p->a, path, strlen(path));
    if (p->file == NULL) {
        rc = conf__fail(p, saved_file, from_line, "out of memory");
    } else {
        conf__lexer_init(&lx, p->file, f.data, f.len, p->err, p->errlen);
        p->lx = &lx;
        rc = parse_block(p, b, 0);
        if (from_line == 0)
            p->main_lines = lx.line;
    }
    pop_file(p);
    gh_conf_file_dispose(&f);
    p->file = saved_file;
    p->lx = saved_lx;
    return rc;
}

/* The directory part of file with its slash ("conf.d/a.conf" -> "conf.d/"), or "" for a bare name. */
static size_t dir_len(const char *file)
{
    const char *slash = strrchr(file, '/');

    return slash != NULL ? (size_t)(slash - file) + 1 : 0;
}

int conf__relative_path(conf__parser *p, const char *s, size_t len, gh_cstr *out)
{
    size_t dl = s[0] == '/' ? 0 : dir_len(p->file);
    char *r;

    if (len > PATH_MAX || dl > PATH_MAX)
        return conf__fail(p, NULL, p->lx->line, "path too long");
    r = conf__arena_alloc(p->a, dl + len + 1);
    if (r == NULL)
        return conf__fail(p, NULL, p->lx->line, "out of memory");
    memcpy(r, p->file, dl);
    memcpy(r + dl, s, len);
    r[dl + len] = '\0';
    out->p = r;
    out->len = dl + len;
    return 0;
}

/*
 * include GLOB: every matching file in sorted order (glob(3) sorts), parsed
 * in the current block as if its text stood here. A pattern without wildcards
 * must name an existing file; one with wildcards may match nothing.
 */
int conf__include(conf__parser *p, const conf__directive *d)
{
    gh_cstr pattern;
    glob_t g;
    int rc, line = d->line;

    if (memchr(d->args[0].p, '\0', d->args[0].len) != NULL)
        return conf__fail(p, NULL, line, "invalid include path");
    if (conf__relative_path(p, d->args[0].p, d->args[0].len, &pattern) < 0)
        return -1;
    if (strpbrk(pattern.p, "*?[") == NULL)
        return parse_file(p, pattern.p, p->block, line);
    memset(&g, 0, sizeof(g));
    rc = p->src->glob(p->src, pattern.p, &g);
    if (rc == GLOB_NOMATCH) {
        p->src->globfree(p->src, &g);
        return 0;
    }
    if (rc != 0) {
        p->src->globfree(p->src, &g);
        return conf__fail(p, NULL, line, "include \"%s\": %s", pattern.p,
                          rc == GLOB_NOSPACE ? "out of memory" : "cannot read the directory");
    }
    rc = 0;
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++)
        rc = parse_file(p, g.gl_pathv[i], p->block, line);
    p->src->globfree(p->src, &g);
    return rc;
}

/* "1 argument", "2 to 3 arguments", "at least 1 argument". */
static int bad_arg_count(conf__parser *p, const conf__directive *d, const conf__dirspec *s)
{
    return conf__fail(p, NULL, d->line, "wrong number of arguments for \"%.*s\" (usage: %s)", (int)d->name.len,
                      d->name.p, s->usage);
}

static int dispatch(conf__parser *p, conf__block *b, const conf__directive *d)
{
    const conf__dirspec *s = conf__find_directive(b->ctx, d->name.p, d->name.len);
    size_t i;

    if (s == NULL) {
        const conf__dirspec *elsewhere = conf__find_directive(-1, d->name.p, d->name.len);

        if (elsewhere != NULL)
            return conf__fail(p, NULL, d->line, "\"%.*s\" is not allowed here (it belongs in %s)", (int)d->name.len,
                              d->name.p, conf__context_name(elsewhere->ctx));
        return conf__fail(p, NULL, d->line, "unknown directive \"%.*s\"", (int)d->name.len, d->name.p);
    }
    if (d->nargs < s->min || d->nargs > s->max)
        return bad_arg_count(p, d, s);
    if (d->block && !s->block)
        return conf__fail(p, NULL, d->line, "\"%s\" takes no { } block", s->name);
    if (!d->block && s->block)
        return conf__fail(p, NULL, d->line, "\"%s\" needs a { } block opened on the same line (usage: %s)", s->name,
                          s->usage);
    if (!s->multi) {
        for (i = 0; i < b->nseen; i++)
            if (b->seen[i] == s)
                return conf__fail(p, NULL, d->line, "duplicate \"%s\" (first at %s:%d)", s->name, b->first_file[i],
                                  b->first_line[i]);
        /* Each once-only directive is seen once per block: the tables bound nseen; this guards a bigger one. */
        if (b->nseen == CONF__NDIRECTIVES)
            return conf__fail(p, NULL, d->line, "too many directives in %s", conf__context_name(b->ctx));
        b->seen[b->nseen] = s;
        b->first_line[b->nseen] = d->line;
        b->first_file[b->nseen++] = p->file;
    }
    return s->fn != NULL ? s->fn(p, d) : conf__set_slot(p, d, s);
}

static int parse_block(conf__parser *p, conf__block *b, int nested)
{
    conf__directive d;

    for (;;) {
        conf__block *saved = p->block;
        int rc = conf__lexer_next(p->lx, &d);

        if (rc == CONF__FAIL)
            return -1;
        if (rc == CONF__EOF && nested)
            return conf__fail(p, NULL, d.line, "unexpected end of file: the block opened at line %d is not closed",
                              b->open_line);
        if (rc == CONF__EOF)
            return 0;
        if (rc == CONF__CLOSE && nested)
            return 0;
        if (rc == CONF__CLOSE)
            return conf__fail(p, NULL, d.line, "unexpected \"}\"");
        p->block = b;
        rc = dispatch(p, b, &d);
        p->block = saved;
        if (rc < 0)
            return -1;
    }
}

int conf__parse_nested(conf__parser *p, int ctx, int open_line)
{
    conf__block *b = calloc(1, sizeof(*b));
    int rc;

    if (b == NULL)
        return conf__fail(p, NULL, open_line, "out of memory");
    b->ctx = ctx;
    b->open_line = open_line;
    rc = parse_block(p, b, 1);
    free(b);
    return rc;
}

int conf__parse_main(conf__parser *p, const char *path)
{
    conf__block *b = calloc(1, sizeof(*b));
    int rc;

    if (b == NULL) {
        snprintf(p->err, p->errlen, "%s: out of memory", path);
        return -1;
    }
    b->ctx = CONF__CTX_MAIN;
    p->file = path;
    rc = parse_file(p, path, b, 0);
    free(b);
    return rc;
}
