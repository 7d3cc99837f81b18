/*
 * logesc: the escapes of access-log values (logesc.h).
 *
 * The cost is per byte of every logged value, on every request: values are
 * copied in runs (memcpy) between the bytes that need an escape, and a run is
 * found a 64-bit word at a time (the "has a zero byte" tricks of Sean
 * Anderson's Bit Twiddling Hacks), not byte by byte.
 */
#include "proxy/logesc.h"

#include <stdint.h>
#include <string.h>

static const char hex[] = "0123456789ABCDEF";

/* 1: the byte is copied as it is by both escapes (0x80 to 0xFF: 0). */
/* clang-format off */
const unsigned char proxy__log_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00: control characters */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: but the quote */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, /* 0x50: but the backslash */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, /* 0x70: but DEL */
};
/* clang-format on */

size_t proxy__log_plain_run(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    uint64_t x;

    if (n >= 8) {
        for (; i + 8 <= n; i += 8) {
            memcpy(&x, s + i, 8); /* an unaligned load */
            if (proxy__log_word_needs_escape(x))
                goto bytes;
        }
        if (i == n)
            return n;
        /* The last bytes, as the word that ends the value (overlapping what was checked). */
        memcpy(&x, s + n - 8, 8);
        if (!proxy__log_word_needs_escape(x))
            return n;
    }
bytes:
    while (i < n && proxy__log_plain[u[i]])
        i++;
    return i;
}

/*
 * Copies the plain run at s[*i..n) into dst[*o..cap). Returns 0 when the
 * value is done or dst is full (a run cut short), 1 when s[*i] needs an escape.
 */
static inline int copy_run(char *dst, size_t cap, size_t *o, const char *s, size_t n, size_t *i)
{
    size_t k = proxy__log_plain_run(s + *i, n - *i);
    int cut = 0;

    if (k > cap - *o)
        k = cap - *o, cut = 1;
    memcpy(dst + *o, s + *i, k);
    *o += k;
    *i += k;
    return !cut && *i < n;
}

size_t proxy__log_esc_default(char *dst, size_t cap, const char *s, size_t n)
{
    size_t o = 0, i = 0;

    while (i < n && copy_run(dst, cap, &o, s, n, &i)) {
        unsigned char ch = (unsigned char)s[i++];

        if (o + 4 > cap)
            break;
        dst[o++] = '\\';
        dst[o++] = 'x';
        dst[o++] = hex[ch >> 4];
        dst[o++] = hex[ch & 15];
    }
    return o;
}

/* The length of the valid UTF-8 sequence at s (RFC 3629 4: no overlong forms, no surrogates), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

size_t proxy__log_esc_json(char *dst, size_t cap, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0, i = 0;

    while (i < n && copy_run(dst, cap, &o, s, n, &i)) {
        unsigned char ch = u[i];
        size_t k;

        if (ch == '"' || ch == '\\') {
            if (o + 2 > cap)
                break;
            dst[o++] = '\\';
            dst[o++] = (char)ch;
            i++;
        } else if (ch >= 0x80 && (k = utf8_len(u + i, n - i)) > 0) {
            if (o + k > cap)
                break;
            memcpy(dst + o, s + i, k);
            o += k;
            i += k;
        } else {
            if (o + 6 > cap)
                break;
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hex[ch >> 4];
            dst[o + 5] = hex[ch & 15];
            o += 6;
            i++;
        }
    }
    return o;
}
