#include "conf/lexer.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum tok { T_EOF, T_WORD, T_STRING, T_OPEN, T_CLOSE, T_END, T_FAIL };

typedef struct token {
    int kind;
    const char *p;
    size_t len;
    int line;
} token;

void conf__lexer_init(conf__lexer *lx, const char *file, char *buf, size_t len, char *err, size_t errlen)
{
    memset(lx, 0, sizeof(*lx));
    lx->file = file;
    lx->buf = buf;
    lx->len = len;
    lx->line = 1;
    lx->err = err;
    lx->errlen = errlen;
}

static int lex_fail(conf__lexer *lx, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int lex_fail(conf__lexer *lx, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (lx->errlen == 0)
        return T_FAIL;
    n = snprintf(lx->err, lx->errlen, "%s:%d: ", lx->file, line);
    if (n >= 0 && (size_t)n < lx->errlen) {
        va_start(ap, fmt);
        vsnprintf(lx->err + n, lx->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return T_FAIL;
}

/* Bytes that end a bare word. */
static int is_delim(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == ';' || c == '{' || c == '}';
}

/* Control characters have no business in a config file: they hide text from the reader. */
static int is_control(unsigned char c)
{
    return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

static char unescape(char c)
{
    switch (c) {
    case '"':
    case '\\':
        return c;
    case 'n':
        return '\n';
    case 't':
        return '\t';
    default:
        return 0;
    }
}

/* A quoted string, unescaped in place: the output never overtakes the input. */
static int lex_string(conf__lexer *lx, token *t)
{
    char *out = lx->buf + lx->pos + 1;
    size_t i = lx->pos + 1;

    t->p = out;
    for (; i < lx->len && lx->buf[i] != '"'; i++) {
        char c = lx->buf[i];

        if (c == '\n')
            break;
        if (is_control((unsigned char)c))
            return lex_fail(lx, lx->line, "control character 0x%02x in a string", (unsigned char)c);
        if (c == '\\') {
            if (i + 1 >= lx->len || (c = unescape(lx->buf[i + 1])) == 0)
                return lex_fail(lx, lx->line, "unknown escape in a string (use \\\" \\\\ \\n or \\t)");
            i++;
        }
        *out++ = c;
    }
    if (i >= lx->len || lx->buf[i] != '"')
        return lex_fail(lx, lx->line, "unterminated string (strings end on the line they start)");
    t->len = (size_t)(out - t->p);
    lx->pos = i + 1;
    if (lx->pos < lx->len && !is_delim(lx->buf[lx->pos]) && lx->buf[lx->pos] != '#')
        return lex_fail(lx, lx->line, "a quoted string must be followed by a space or the end of the directive");
    return T_STRING;
}

static int lex_word(conf__lexer *lx, token *t)
{
    size_t i = lx->pos;

    t->p = lx->buf + i;
    for (; i < lx->len && !is_delim(lx->buf[i]); i++) {
        unsigned char c = (unsigned char)lx->buf[i];

        if (c == '"')
            return lex_fail(lx, lx->line, "unexpected quote inside a word (quote the whole argument)");
        if (is_control(c))
            return lex_fail(lx, lx->line, "control character 0x%02x", c);
    }
    t->len = i - lx->pos;
    lx->pos = i;
    return T_WORD;
}

static void skip_blanks_and_comments(conf__lexer *lx)
{
    while (lx->pos < lx->len) {
        char c = lx->buf[lx->pos];

        if (c == ' ' || c == '\t' || c == '\r') {
            lx->pos++;
        } else if (c == '#') {
            while (lx->pos < lx->len && lx->buf[lx->pos] != '\n')
                lx->pos++;
        } else {
            break;
        }
    }
}

static int next_token(conf__lexer *lx, token *t)
{
    char c;

    skip_blanks_and_comments(lx);
    t->line = lx->line;
    t->p = lx->buf + lx->pos;
    t->len = 0;
    if (lx->pos >= lx->len)
        return t->kind = T_EOF;
    c = lx->buf[lx->pos];
    if (c == '\n' || c == ';') {
        lx->line += c == '\n';
        lx->pos++;
        return t->kind = T_END;
    }
    if (c == '{' || c == '}') {
        lx->pos++;
        t->len = 1;
        return t->kind = c == '{' ? T_OPEN : T_CLOSE;
    }
    if (c == '"')
        return t->kind = lex_string(lx, t);
    return t->kind = lex_word(lx, t);
}

static int add_arg(conf__lexer *lx, conf__directive *d, const token *t)
{
    if (d->nargs == CONF__MAX_ARGS) {
        lex_fail(lx, t->line, "too many arguments (at most %d)", CONF__MAX_ARGS);
        return -1;
    }
    d->args[d->nargs].p = t->p;
    d->args[d->nargs].len = t->len;
    d->args[d->nargs].quoted = t->kind == T_STRING;
    d->nargs++;
    return 0;
}

/* The arguments after the name, up to the directive's end. */
static int read_args(conf__lexer *lx, conf__directive *d)
{
    token t;

    for (;;) {
        switch (next_token(lx, &t)) {
        case T_WORD:
        case T_STRING:
            if (add_arg(lx, d, &t) < 0)
                return CONF__FAIL;
            break;
        case T_OPEN:
            d->block = 1;
            return CONF__DIRECTIVE;
        case T_CLOSE:
            lx->pending_close = t.line;
            return CONF__DIRECTIVE;
        case T_END:
        case T_EOF:
            return CONF__DIRECTIVE;
        default:
            return CONF__FAIL;
        }
    }
}

int conf__lexer_next(conf__lexer *lx, conf__directive *d)
{
    token t;

    memset(d, 0, sizeof(*d));
    if (lx->pending_close) {
        d->line = lx->pending_close;
        lx->pending_close = 0;
        return CONF__CLOSE;
    }
    do
        next_token(lx, &t);
    while (t.kind == T_END);
    d->line = t.line;
    switch (t.kind) {
    case T_EOF:
        return CONF__EOF;
    case T_CLOSE:
        return CONF__CLOSE;
    case T_OPEN:
        lex_fail(lx, t.line, "unexpected \"{\" (a block follows its directive on the same line)");
        return CONF__FAIL;
    case T_STRING:
        lex_fail(lx, t.line, "a directive name cannot be quoted");
        return CONF__FAIL;
    case T_WORD:
        d->name.p = t.p;
        d->name.len = t.len;
        return read_args(lx, d);
    default:
        return CONF__FAIL;
    }
}
