/*
 * logesc: the escapes of access-log values (pure: no I/O, unit-tested in
 * tests/unit/test_logesc.c). docs/config.md "Access log" is their contract.
 */
#ifndef GH_PROXY_LOGESC_H
#define GH_PROXY_LOGESC_H

#include <stddef.h>

/*
 * The length of the run at the start of s[0..n) that both escapes copy as it
 * is: printable ASCII (0x20-0x7E) but a quote or a backslash. Checked eight
 * bytes at a time, since almost every value is one such run.
 */
size_t proxy__log_plain_run(const char *s, size_t n);

/* 1 for the bytes both escapes copy as they are. */
extern const unsigned char proxy__log_plain[256];

/* s[0..n) needs no escape at all: the common case, inline for the short values of every line. */
static inline int proxy__log_is_plain(const char *s, size_t n)
{
    if (n >= 8)
        return proxy__log_plain_run(s, n) == n;
    for (size_t i = 0; i < n; i++)
        if (!proxy__log_plain[(unsigned char)s[i]])
            return 0;
    return 1;
}

/*
 * The default escape (combined, log_format without escape=json): a quote, a
 * backslash, control characters (and DEL) and bytes outside ASCII as \xHH, as
 * nginx does. Writes at most cap bytes to dst, never half an escape; returns
 * how many.
 */
size_t proxy__log_esc_default(char *dst, size_t cap, const char *s, size_t n);

/*
 * A JSON string's content (RFC 8259 7): \" \\, control characters and DEL as
 * \u00XX; valid UTF-8 (RFC 3629 4: no overlong forms, no surrogates) as it is,
 * each byte of invalid UTF-8 as \u00XX (the code point with that number), so a
 * hostile header never breaks the line's JSON. Bounded as the default escape.
 */
size_t proxy__log_esc_json(char *dst, size_t cap, const char *s, size_t n);

#endif
