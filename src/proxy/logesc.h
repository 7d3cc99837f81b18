/*
 * logesc: the escapes of access-log values (pure: no I/O, unit-tested in
 * tests/unit/test_logesc.c). docs/config.md "Access log" is their contract.
 */
#ifndef GH_PROXY_LOGESC_H
#define GH_PROXY_LOGESC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PROXY__LOG_ONES UINT64_C(0x0101010101010101)
#define PROXY__LOG_HIGH UINT64_C(0x8080808080808080)

/*
 * Nonzero when some byte of x needs an escape: < 0x20, 0x7F, >= 0x80, '"' or
 * '\\'; the high bit of each such byte is set, and of no other (no carry
 * crosses a byte: every sum is of 7-bit bytes and stays below 0x100).
 */
static inline uint64_t proxy__log_word_needs_escape(uint64_t x)
{
    uint64_t y = x & ~PROXY__LOG_HIGH;                                       /* the low 7 bits of each byte */
    uint64_t printable = y + PROXY__LOG_ONES * (0x80 - 0x20);                /* high bit: y >= 0x20 */
    uint64_t del = y + PROXY__LOG_ONES * (0x80 - 0x7F);                      /* high bit: y == 0x7F */
    uint64_t quote = (y ^ (PROXY__LOG_ONES * '"')) + PROXY__LOG_ONES * 0x7F; /* high bit: y != '"' */
    uint64_t bslash = (y ^ (PROXY__LOG_ONES * '\\')) + PROXY__LOG_ONES * 0x7F;

    return (x | del | ~(printable & quote & bslash)) & PROXY__LOG_HIGH;
}

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
 * Copies s[0..n) to dst and says whether it needed no escape (1: dst holds
 * what either escape would write; 0: dst holds garbage, escape it instead).
 * Check and copy in one pass, words of eight bytes, the last word overlapping:
 * no call for the short values of a line, and no byte written past dst + n.
 */
static inline int proxy__log_copy_plain(char *dst, const char *s, size_t n)
{
    uint64_t x, bad = 0;

    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&x, s + i, 8);
            bad |= proxy__log_word_needs_escape(x);
            memcpy(dst + i, &x, 8);
        }
        memcpy(&x, s + n - 8, 8);
        bad |= proxy__log_word_needs_escape(x);
        memcpy(dst + n - 8, &x, 8);
        return bad == 0;
    }
    if (n >= 4) { /* two words of four, overlapping; the check is exact per byte: the upper half is dropped */
        uint32_t y;

        memcpy(&y, s, 4);
        x = y;
        memcpy(dst, &y, 4);
        memcpy(&y, s + n - 4, 4);
        x |= (uint64_t)y << 32;
        memcpy(dst + n - 4, &y, 4);
        return proxy__log_word_needs_escape(x) == 0;
    }
    if (n > 0) { /* 1 to 3 bytes: the first, the middle and the last cover them all */
        unsigned char a = (unsigned char)s[0], b = (unsigned char)s[n >> 1], c = (unsigned char)s[n - 1];

        dst[0] = (char)a, dst[n >> 1] = (char)b, dst[n - 1] = (char)c;
        x = a | (uint64_t)b << 8 | (uint64_t)c << 16;
        return (proxy__log_word_needs_escape(x) & UINT64_C(0x808080)) == 0;
    }
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
