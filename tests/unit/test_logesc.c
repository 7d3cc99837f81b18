/* The access log's escapes (src/proxy/logesc.c), as docs/config.md "Access log" documents them. */
#include <stdint.h>
#include <string.h>

#include "proxy/logesc.h"
#include "unit.h"

#define ESC_D(in) proxy__log_esc_default(out, sizeof(out), in, sizeof(in) - 1)
#define ESC_J(in) proxy__log_esc_json(out, sizeof(out), in, sizeof(in) - 1)

static void documented(void)
{
    char out[256];
    size_t n;

    unit_case("default: plain text as it is");
    n = ESC_D("GET /index.html?a=1&b=%20 HTTP/1.1");
    CHECK_MEM(out, n, "GET /index.html?a=1&b=%20 HTTP/1.1");
    unit_case("default: quote, backslash, control bytes, DEL and non-ASCII as \\xHH");
    n = ESC_D("a\"b\\c\r\n\t\x01\x7f\xc3\xa9z");
    CHECK_MEM(out, n, "a\\x22b\\x5Cc\\x0D\\x0A\\x09\\x01\\x7F\\xC3\\xA9z");
    unit_case("default: NUL in a value");
    n = proxy__log_esc_default(out, sizeof(out), "a\0b", 3);
    CHECK_MEM(out, n, "a\\x00b");

    unit_case("json: quote and backslash as \\\" and \\\\");
    n = ESC_J("say \"hi\" \\o/");
    CHECK_MEM(out, n, "say \\\"hi\\\" \\\\o/");
    unit_case("json: control bytes and DEL as \\u00XX");
    n = ESC_J("\r\n\x1f\x7f.");
    CHECK_MEM(out, n, "\\u000D\\u000A\\u001F\\u007F.");
    unit_case("json: valid UTF-8 kept (2, 3 and 4 bytes)");
    n = ESC_J("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    CHECK_MEM(out, n, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    unit_case("json: invalid UTF-8 byte by byte as \\u00XX (stray continuation, overlong, surrogate, cut)");
    n = ESC_J("\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82");
    CHECK_MEM(out, n, "\\u0080|\\u00C0\\u00AF|\\u00ED\\u00A0\\u0080|\\u00E2\\u0082");
    unit_case("json: above U+10FFFF is invalid");
    n = ESC_J("\xf4\x90\x80\x80");
    CHECK_MEM(out, n, "\\u00F4\\u0090\\u0080\\u0080");
}

static void bounded(void)
{
    char out[16];
    size_t n;

    unit_case("a run is cut at the bound");
    n = proxy__log_esc_default(out, 5, "abcdefghij", 10);
    CHECK_MEM(out, n, "abcde");
    unit_case("an escape is never cut in half");
    n = proxy__log_esc_default(out, 6, "abc\"def", 7);
    CHECK_MEM(out, n, "abc");
    n = proxy__log_esc_json(out, 7, "ab\x01", 3);
    CHECK_MEM(out, n, "ab");
    n = proxy__log_esc_json(out, 4, "ab\xc3\xa9", 4);
    CHECK_MEM(out, n, "ab\xc3\xa9");
    n = proxy__log_esc_json(out, 3, "ab\xc3\xa9", 4);
    CHECK_MEM(out, n, "ab");
    unit_case("nothing fits");
    CHECK_INT(proxy__log_esc_default(out, 0, "abc", 3), 0);
    CHECK_INT(proxy__log_esc_json(out, 1, "\"", 1), 0);
}

/* The byte-at-a-time escapes the word-at-a-time ones replaced: the reference they must equal. */
static const char hx[] = "0123456789ABCDEF";

static size_t ref_default(char *dst, size_t cap, const unsigned char *s, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char ch = s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            if (o + 4 > cap)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hx[ch >> 4];
            dst[o++] = hx[ch & 15];
        } else {
            if (o + 1 > cap)
                break;
            dst[o++] = (char)ch;
        }
    }
    return o;
}

static size_t ref_utf8(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len;

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

static size_t ref_json(char *dst, size_t cap, const unsigned char *s, size_t n)
{
    size_t o = 0;

    for (size_t i = 0; i < n;) {
        unsigned char ch = s[i];
        size_t k;

        if (ch == '"' || ch == '\\') {
            if (o + 2 > cap)
                break;
            dst[o++] = '\\';
            dst[o++] = (char)ch;
            i++;
        } else if (ch >= 0x20 && ch < 0x7f) {
            if (o + 1 > cap)
                break;
            dst[o++] = (char)ch;
            i++;
        } else if (ch >= 0x80 && (k = ref_utf8(s + i, n - i)) > 0) {
            if (o + k > cap)
                break;
            memcpy(dst + o, s + i, k);
            o += k;
            i += k;
        } else {
            if (o + 6 > cap)
                break;
            memcpy(dst + o, "\\u00", 4);
            dst[o + 4] = hx[ch >> 4];
            dst[o + 5] = hx[ch & 15];
            o += 6;
            i++;
        }
    }
    return o;
}

/*
 * Every single byte in every position of a word (the word-at-a-time test must
 * see each), then random values mostly plain with a few hostile bytes, each
 * at every bound: both escapes give exactly the reference's bytes.
 */
static void same_as_bytewise(void)
{
    unsigned char in[40];
    char got[260], want[260];
    uint64_t seed = 0x9e3779b97f4a7c15u;
    int bad = 0;

    unit_case("each byte value at each position of a 17-byte value");
    for (int b = 0; b < 256 && !bad; b++)
        for (size_t pos = 0; pos < 17 && !bad; pos++) {
            memset(in, 'a', 17);
            in[pos] = (unsigned char)b;
            size_t gd = proxy__log_esc_default(got, sizeof(got), (const char *)in, 17);
            size_t wd = ref_default(want, sizeof(want), in, 17);
            bad |= gd != wd || memcmp(got, want, wd) != 0;
            size_t gj = proxy__log_esc_json(got, sizeof(got), (const char *)in, 17);
            size_t wj = ref_json(want, sizeof(want), in, 17);
            bad |= gj != wj || memcmp(got, want, wj) != 0;
            if (bad)
                unit_check(0, __FILE__, __LINE__, "byte 0x%02X at %zu differs", b, pos);
        }
    CHECK(!bad);

    unit_case("random values at every bound");
    for (int t = 0; t < 3000 && !bad; t++) {
        size_t n = (size_t)(t % (int)sizeof(in));

        for (size_t i = 0; i < n; i++) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            unsigned r = (unsigned)(seed >> 33);
            in[i] = (r & 7) ? (unsigned char)(0x20 + r % 0x5F) : (unsigned char)(r >> 8);
        }
        for (size_t cap = 0; cap <= 6 * n && !bad; cap++) {
            size_t gd = proxy__log_esc_default(got, cap, (const char *)in, n);
            size_t wd = ref_default(want, cap, in, n);
            size_t gj, wj;

            bad |= gd != wd || memcmp(got, want, wd) != 0;
            gj = proxy__log_esc_json(got, cap, (const char *)in, n);
            wj = ref_json(want, cap, in, n);
            bad |= gj != wj || memcmp(got, want, wj) != 0;
            if (bad)
                unit_check(0, __FILE__, __LINE__, "value %d (length %zu) at bound %zu differs", t, n, cap);
        }
    }
    CHECK(!bad);
}

static void plain_run(void)
{
    unit_case("the plain run stops at the first byte that needs an escape");
    CHECK_INT(proxy__log_plain_run("abcdefghijklmnop", 16), 16);
    CHECK_INT(proxy__log_plain_run("abcdefghij\"lmnop", 16), 10);
    CHECK_INT(proxy__log_plain_run("abcdefg\x7f", 8), 7);
    CHECK_INT(proxy__log_plain_run("\x80", 1), 0);
    CHECK_INT(proxy__log_plain_run(" ~", 2), 2);
    CHECK_INT(proxy__log_plain_run("abcdefgh\x1f", 9), 8);
    CHECK_INT(proxy__log_plain_run("", 0), 0);
    unit_case("a value is plain when it needs no escape");
    CHECK(proxy__log_is_plain("GET", 3));
    CHECK(proxy__log_is_plain("", 0));
    CHECK(!proxy__log_is_plain("a\"b", 3));
    CHECK(!proxy__log_is_plain("curl/7.88.1 \xc3\xa9", 14));
    CHECK(proxy__log_is_plain("h2load nghttp2/1.52.0", 21));
    CHECK(!proxy__log_is_plain("h2load nghttp2/1.52.\x7f", 21));
}

/*
 * proxy__log_copy_plain: says plain exactly when every byte is (the table, byte
 * by byte), copies the value whole when it is, and never writes past dst + n.
 */
static void copy_plain(void)
{
    static const unsigned char bytes[] = {'a', 'Z', ' ', '~', '/', '"', '\\', 0x1f, 0x7f, 0x80, 0xc3, 0x00, 0x09};
    uint32_t seed = 7;
    int bad = 0;

    unit_case("copy_plain: plain exactly when each byte is, the value copied, nothing past its end");
    for (int round = 0; round < 20000 && !bad; round++) {
        unsigned char in[64], out[80];
        size_t n = (size_t)(round % 40), i;
        int want = 1, got;

        for (i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly plain letters, now and then a byte that needs an escape */
            in[i] =
                (seed >> 16) % 16 == 0 ? bytes[(seed >> 8) % sizeof(bytes)] : (unsigned char)('a' + (seed >> 20) % 26);
            want &= proxy__log_plain[in[i]];
        }
        memset(out, 0xAA, sizeof(out));
        got = proxy__log_copy_plain((char *)out, (const char *)in, n);
        if (got != want || (got && memcmp(out, in, n) != 0))
            bad = 1;
        for (i = n; i < sizeof(out); i++)
            if (out[i] != 0xAA)
                bad = 1;
    }
    CHECK(!bad);
    unit_case("the word check: each byte value at each place of a word, beside plain and beside hostile bytes");
    for (int b = 0; b < 256; b++)
        for (int at = 0; at < 8; at++)
            for (int other = 0; other < 3; other++) {
                static const unsigned char beside[3] = {'a', 0x00, 0xff};
                unsigned char wb[8];
                uint64_t x, flag;

                memset(wb, beside[other], 8);
                wb[at] = (unsigned char)b;
                memcpy(&x, wb, 8);
                flag = proxy__log_word_needs_escape(x) >> (8 * at) & 0x80;
                if ((flag != 0) != !proxy__log_plain[b])
                    bad = 1;
            }
    CHECK(!bad);
    CHECK(proxy__log_copy_plain((char[32]){0}, "h2load nghttp2/1.52.0", 21));
    CHECK(!proxy__log_copy_plain((char[32]){0}, "h2load nghttp2/1.52\"0", 21));
}

void suite_logesc(void)
{
    copy_plain();
    documented();
    bounded();
    plain_run();
    same_as_bytewise();
}
