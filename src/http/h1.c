/*
 * h1: strict HTTP/1.1 head parser and chunked decoder (RFC 9110, RFC 9112). No I/O, no allocation.
 *
 * Every byte is classified by one lookup in `cls`; a head is parsed in one pass once
 * gh_h1_head_end() has found its end. Where the RFCs let a recipient choose, we choose
 * to refuse (DESIGN.md, Security). Choices the RFCs leave open, made here:
 * - Transfer-Encoding in a request: anything other than exactly "chunked" is -400.
 * - Responses: repeated Content-Length with the same value is accepted (RFC 9110 8.6) and
 *   the repeats are marked hop so that only one is forwarded; different values are -502.
 * - Hosts: a reg-name is ALPHA DIGIT - . _ ~ only (no sub-delims, no %-encoding), an
 *   IP-literal is [hex : .] without zone; ports are 1..5 digits up to 65535.
 * - Absolute-form with a query but no path ("http://a?q") is refused: it has no origin-form
 *   slice to forward. With neither, path is the static string "/".
 * - Connection: close and keep-alive may both be present; both flags are set, close wins.
 *   More than MAX_CONN_OPTIONS tokens in all Connection headers together is refused.
 * - Expect: 100-continue in an HTTP/1.0 request is ignored (RFC 9110 10.1.1), still hop.
 */
#include "http/h1.h"

#include <string.h>

#define MAX_METHOD       32
#define MAX_LENGTH       (UINT64_C(1) << 62) /* largest Content-Length or chunk size accepted */
#define MAX_CHUNK_DIGITS 16
#define MAX_CONN_OPTIONS 32 /* more Connection options than any real client sends: refused */

enum {
    C_TCHAR = 0x01,  /* token character (RFC 9110 5.6.2) */
    C_VALUE = 0x02,  /* field-value byte: HTAB SP VCHAR obs-text (RFC 9110 5.5) */
    C_PATH = 0x04,   /* plain request-target byte: unreserved sub-delims : @ / ? (RFC 3986) */
    C_HOST = 0x08,   /* reg-name byte we accept: ALPHA DIGIT - . _ ~ */
    C_HEX = 0x10,    /* HEXDIG */
    C_QDTEXT = 0x20, /* quoted-string text: HTAB SP ! #-[ ]-~ obs-text (RFC 9110 5.6.4) */
};

/* Generated from the definitions above; tests/unit/test_h1.c checks it byte by byte. */
static const uint8_t cls[256] = {
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x22, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 00-0f */
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* 10-1f */
    0x22, 0x27, 0x02, 0x23, 0x27, 0x23, 0x27, 0x27,
    0x26, 0x26, 0x27, 0x27, 0x26, 0x2f, 0x2f, 0x26, /* SP ! " # $ % & ' ( ) * + , - . / */
    0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f,
    0x3f, 0x3f, 0x26, 0x26, 0x22, 0x26, 0x22, 0x26, /* 0 1 2 3 4 5 6 7 8 9 : ; < = > ? */
    0x26, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x2f,
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, /* @ A B C D E F G H I J K L M N O */
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f,
    0x2f, 0x2f, 0x2f, 0x22, 0x02, 0x22, 0x23, 0x2f, /* P Q R S T U V W X Y Z [ \ ] ^ _ */
    0x23, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x3f, 0x2f,
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, /* ` a b c d e f g h i j k l m n o */
    0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f, 0x2f,
    0x2f, 0x2f, 0x2f, 0x22, 0x23, 0x22, 0x2f, 0x00, /* p q r s t u v w x y z { | } ~ DEL */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 80-8f */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* 90-9f */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* a0-af */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* b0-bf */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* c0-cf */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* d0-df */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* e0-ef */
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22,
    0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, 0x22, /* f0-ff */
};

static inline int has(char c, int cl)
{
    return cls[(unsigned char)c] & cl;
}
static inline int is_digit(char c)
{
    return (unsigned)(c - '0') < 10u;
}
static inline int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* ASCII only: locale-independent by construction. */
static inline unsigned char lower(char c)
{
    unsigned char u = (unsigned char)c;
    return (unsigned)(u - 'A') < 26u ? (unsigned char)(u | 0x20) : u;
}

static inline unsigned hexval(char c)
{
    return is_digit(c) ? (unsigned)(c - '0') : (unsigned)(lower(c) - 'a' + 10);
}

static inline gh_h1_str slice(const char *p, size_t len)
{
    return (gh_h1_str){p, len};
}

/* n bytes of p equal the lowercase literal lit, ignoring ASCII case. */
static int ieq_n(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(p[i]) != (unsigned char)lit[i])
            return 0;
    return 1;
}

int gh_h1_str_ieq(gh_h1_str s, const char *lit)
{
    size_t i;

    for (i = 0; i < s.len; i++)
        if (lit[i] == '\0' || lower(s.p[i]) != (unsigned char)lit[i])
            return 0;
    return lit[i] == '\0';
}

static int names_eq(gh_h1_str a, gh_h1_str b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++)
        if (lower(a.p[i]) != lower(b.p[i]))
            return 0;
    return 1;
}

/* ---- header names ---- */

static const char *const hdr_name[] = {
    [GH_HDR_HOST] = "host",
    [GH_HDR_CONTENT_LENGTH] = "content-length",
    [GH_HDR_TRANSFER_ENCODING] = "transfer-encoding",
    [GH_HDR_CONNECTION] = "connection",
    [GH_HDR_KEEP_ALIVE] = "keep-alive",
    [GH_HDR_TE] = "te",
    [GH_HDR_TRAILER] = "trailer",
    [GH_HDR_UPGRADE] = "upgrade",
    [GH_HDR_PROXY_CONNECTION] = "proxy-connection",
    [GH_HDR_PROXY_AUTHORIZATION] = "proxy-authorization",
    [GH_HDR_PROXY_AUTHENTICATE] = "proxy-authenticate",
    [GH_HDR_EXPECT] = "expect",
    [GH_HDR_X_FORWARDED_FOR] = "x-forwarded-for",
    [GH_HDR_X_FORWARDED_PROTO] = "x-forwarded-proto",
    [GH_HDR_X_FORWARDED_HOST] = "x-forwarded-host",
    [GH_HDR_FORWARDED] = "forwarded",
    [GH_HDR_VIA] = "via",
    [GH_HDR_DATE] = "date",
    [GH_HDR_SERVER] = "server",
};

/* Known names by length, so that a lookup compares at most two names. */
#define HDR_MAX_LEN 19
static const uint8_t hdr_by_len[HDR_MAX_LEN + 1][2] = {
    [2] = {GH_HDR_TE},
    [3] = {GH_HDR_VIA},
    [4] = {GH_HDR_HOST, GH_HDR_DATE},
    [6] = {GH_HDR_EXPECT, GH_HDR_SERVER},
    [7] = {GH_HDR_TRAILER, GH_HDR_UPGRADE},
    [9] = {GH_HDR_FORWARDED},
    [10] = {GH_HDR_CONNECTION, GH_HDR_KEEP_ALIVE},
    [14] = {GH_HDR_CONTENT_LENGTH},
    [15] = {GH_HDR_X_FORWARDED_FOR},
    [16] = {GH_HDR_PROXY_CONNECTION, GH_HDR_X_FORWARDED_HOST},
    [17] = {GH_HDR_TRANSFER_ENCODING, GH_HDR_X_FORWARDED_PROTO},
    [18] = {GH_HDR_PROXY_AUTHENTICATE},
    [19] = {GH_HDR_PROXY_AUTHORIZATION},
};

/* Hop-by-hop by name (RFC 9110 7.6.1; Proxy-* and Expect are answered or consumed here). */
static const uint8_t hdr_hop[GH_HDR_SERVER + 1] = {
    [GH_HDR_CONNECTION] = 1,       [GH_HDR_KEEP_ALIVE] = 1,          [GH_HDR_TE] = 1,
    [GH_HDR_TRAILER] = 1,          [GH_HDR_TRANSFER_ENCODING] = 1,   [GH_HDR_UPGRADE] = 1,
    [GH_HDR_PROXY_CONNECTION] = 1, [GH_HDR_PROXY_AUTHORIZATION] = 1, [GH_HDR_PROXY_AUTHENTICATE] = 1,
    [GH_HDR_EXPECT] = 1,
};

static uint8_t hdr_kind(const char *p, size_t len)
{
    if (len > HDR_MAX_LEN)
        return GH_HDR_OTHER;
    for (int i = 0; i < 2 && hdr_by_len[len][i]; i++) {
        uint8_t k = hdr_by_len[len][i];
        if (ieq_n(p, hdr_name[k], len))
            return k;
    }
    return GH_HDR_OTHER;
}

/* ---- field values ---- */

/* 1*DIGIT up to MAX_LENGTH (RFC 9110 8.6): no sign, no list, no inner space. */
static int parse_length(gh_h1_str v, uint64_t *out)
{
    uint64_t n = 0;

    if (v.len == 0)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        unsigned d = (unsigned)(v.p[i] - '0');
        if (d > 9 || n > (MAX_LENGTH - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    *out = n;
    return 0;
}

/*
 * Next token of a #token list (RFC 9110 5.6.1) from v at *at: 1 with *tok set, 0 at the
 * end, -1 when malformed. Empty list elements are skipped, as the RFC requires.
 */
static int next_token(gh_h1_str v, size_t *at, gh_h1_str *tok)
{
    size_t p = *at, start;

    while (p < v.len && (v.p[p] == ',' || is_ows(v.p[p])))
        p++;
    if (p == v.len) {
        *at = p;
        return 0;
    }
    for (start = p; p < v.len && has(v.p[p], C_TCHAR); p++)
        ;
    if (p == start)
        return -1;
    *tok = slice(v.p + start, p - start);
    while (p < v.len && is_ows(v.p[p]))
        p++;
    if (p < v.len && v.p[p] != ',')
        return -1;
    *at = p;
    return 1;
}

static size_t skip_ows(const char *p, size_t i, size_t n)
{
    while (i < n && is_ows(p[i]))
        i++;
    return i;
}

static int valid_port(const char *p, size_t n)
{
    unsigned v = 0;

    if (n == 0 || n > 5)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return 0;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    return v <= 65535;
}

/*
 * host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2), port mandatory when need_port. No
 * userinfo: "user@host" is a classic way to make two parsers see two different hosts.
 * Exported: the HTTP/2 front checks :authority and host with this same function, so
 * that no Host one front refuses reaches a backend through the other.
 */
int gh_h1_authority_ok(const char *p, size_t n, int need_port)
{
    size_t i = 0, colons = 0;

    if (n == 0)
        return 0;
    if (p[0] == '[') {
        for (i = 1; i < n && (has(p[i], C_HEX) || p[i] == ':' || p[i] == '.'); i++)
            colons += p[i] == ':';
        if (i == n || p[i] != ']' || colons < 2 || colons > 7)
            return 0;
        i++;
    } else {
        while (i < n && has(p[i], C_HOST))
            i++;
        if (i == 0)
            return 0;
    }
    if (i == n)
        return !need_port;
    return p[i] == ':' && valid_port(p + i + 1, n - i - 1);
}

/* ---- the head ---- */

size_t gh_h1_head_end(const char *buf, size_t len, size_t from)
{
    /* A terminator is recognised at its last LF, which is new; start 3 back in any case. */
    size_t i = from < len ? from : len;

    for (i = i > 3 ? i - 3 : 0; i < len; i++) {
        const char *lf = memchr(buf + i, '\n', len - i);
        if (lf == NULL)
            return 0;
        i = (size_t)(lf - buf);
        if (i >= 1 && buf[i - 1] == '\n')
            return i + 1;
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
            return i + 1;
    }
    return 0;
}

/* What the header loop learns about framing and connection handling. */
struct head {
    gh_h1_header *h; /* the caller's array, GH_H1_MAX_HEADERS long */
    size_t n;
    int response;
    unsigned flags;
    unsigned ncl, nte, nhost;
    size_t te, host; /* index of the (single) Transfer-Encoding and Host */
    uint64_t cl;
    unsigned conn_options; /* Connection tokens seen, bounded by MAX_CONN_OPTIONS */
    int conn_names;        /* a Connection token may name another header: mark those */
    int expect;            /* 1: 100-continue seen, -1: another expectation */
};

static int on_connection(struct head *hd, gh_h1_str v)
{
    gh_h1_str tok;
    size_t at = 0;
    int rc;

    while ((rc = next_token(v, &at, &tok)) > 0) {
        /* The bound keeps marking the named headers cheap: tokens x headers comparisons. */
        if (++hd->conn_options > MAX_CONN_OPTIONS)
            return -400;
        if (gh_h1_str_ieq(tok, "keep-alive")) {
            hd->flags |= GH_H1_F_CONN_KEEPALIVE; /* names Keep-Alive, hop-by-hop anyway */
            continue;
        }
        if (gh_h1_str_ieq(tok, "close"))
            hd->flags |= GH_H1_F_CONN_CLOSE;
        hd->conn_names = 1;
    }
    return rc < 0 ? -400 : 0;
}

static int on_content_length(struct head *hd, gh_h1_header *h)
{
    uint64_t v;

    if (parse_length(h->value, &v) < 0)
        return -400;
    if (hd->ncl++ == 0) {
        hd->cl = v;
        return 0;
    }
    /* RFC 9112 6.3: several lengths are a smuggling vector. A response repeating the same
     * value is unambiguous (RFC 9110 8.6); forward a single copy of it. */
    if (!hd->response || v != hd->cl)
        return -400;
    h->hop = 1;
    return 0;
}

/* Framing and connection semantics of one header, as it is read. */
static int on_header(struct head *hd, gh_h1_header *h)
{
    switch (h->kind) {
    case GH_HDR_CONTENT_LENGTH:
        return on_content_length(hd, h);
    case GH_HDR_TRANSFER_ENCODING:
        hd->te = hd->n;
        return hd->nte++ ? -400 : 0; /* one coding list, never a merge of several */
    case GH_HDR_HOST:
        hd->host = hd->n;
        return hd->nhost++ && !hd->response ? -400 : 0;
    case GH_HDR_CONNECTION:
        return on_connection(hd, h->value);
    case GH_HDR_EXPECT:
        if (hd->expect >= 0)
            hd->expect = gh_h1_str_ieq(h->value, "100-continue") ? 1 : -1;
        return 0;
    case GH_HDR_UPGRADE:
        hd->flags |= GH_H1_F_UPGRADE;
        return 0;
    default:
        return 0;
    }
}

/*
 * Header lines from *pos through the empty line (RFC 9112 5): name ":" OWS value OWS CRLF.
 * A line starting with SP/HTAB (obs-fold), whitespace before the colon, a bare CR or LF, or
 * a control byte in the value all fail the same way: the byte is not what the grammar allows.
 */
static int parse_fields(const char *buf, size_t end, size_t *pos, struct head *hd)
{
    size_t p = *pos;

    while (p == end || buf[p] != '\r') {
        size_t name = p, colon, value, vend;
        gh_h1_header *h;
        int rc;

        if (hd->n == GH_H1_MAX_HEADERS)
            return -431;
        while (p < end && has(buf[p], C_TCHAR))
            p++;
        if (p == name || p == end || buf[p] != ':')
            return -400;
        colon = p;
        value = p = skip_ows(buf, p + 1, end);
        while (p < end && has(buf[p], C_VALUE))
            p++;
        if (end - p < 2 || buf[p] != '\r' || buf[p + 1] != '\n')
            return -400;
        for (vend = p; vend > value && is_ows(buf[vend - 1]); vend--)
            ;
        p += 2;
        h = &hd->h[hd->n];
        h->name = slice(buf + name, colon - name);
        h->value = slice(buf + value, vend - value);
        h->kind = hdr_kind(h->name.p, h->name.len);
        h->hop = hdr_hop[h->kind];
        if ((rc = on_header(hd, h)) < 0)
            return rc;
        hd->n++;
    }
    if (end - p < 2 || buf[p + 1] != '\n')
        return -400;
    *pos = p + 2;
    return 0;
}

static int is_protected(uint8_t kind)
{
    return kind == GH_HDR_HOST || kind == GH_HDR_CONTENT_LENGTH || kind == GH_HDR_TRANSFER_ENCODING;
}

/* FNV-1a of the lowercase name: compared before the bytes, so that comparing every token
 * with every header name costs integers, not strings with a long common prefix. */
static uint32_t name_hash(gh_h1_str s)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < s.len; i++)
        h = (h ^ lower(s.p[i])) * 16777619u;
    return h;
}

/*
 * RFC 9110 7.6.1: a proxy removes every field a Connection option names. Framing and Host
 * are never removed that way, or a client could make them vanish between us and the origin.
 */
static void mark_connection_named(struct head *hd)
{
    uint32_t hash[GH_H1_MAX_HEADERS];

    for (size_t j = 0; j < hd->n; j++)
        hash[j] = name_hash(hd->h[j].name);
    for (size_t i = 0; i < hd->n; i++) {
        gh_h1_str tok;
        size_t at = 0;

        if (hd->h[i].kind != GH_HDR_CONNECTION)
            continue;
        while (next_token(hd->h[i].value, &at, &tok) > 0) {
            uint32_t th = name_hash(tok);
            for (size_t j = 0; j < hd->n; j++)
                if (hash[j] == th && !hd->h[j].hop && !is_protected(hd->h[j].kind) && names_eq(tok, hd->h[j].name))
                    hd->h[j].hop = 1;
        }
    }
}

static void head_init(struct head *hd, gh_h1_header *h, int response)
{
    memset(hd, 0, sizeof(*hd));
    hd->h = h;
    hd->response = response;
}

/* The end of the head, if it is within GH_H1_MAX_HEAD. */
static size_t head_end_within(const char *buf, size_t len)
{
    return gh_h1_head_end(buf, len < GH_H1_MAX_HEAD ? len : GH_H1_MAX_HEAD, 0);
}

/*
 * Sets *line to the length of the start line with its LF, or 0 if it has not ended yet.
 * Returns -1 when it is longer than GH_H1_MAX_LINE plus CRLF, ended or not. The start line
 * is parsed as soon as it is whole, so a bad one is refused before the headers arrive.
 */
static int first_line(const char *buf, size_t len, size_t *line)
{
    const char *lf = memchr(buf, '\n', len < GH_H1_MAX_LINE + 2 ? len : GH_H1_MAX_LINE + 2);

    *line = lf ? (size_t)(lf - buf) + 1 : 0;
    return lf == NULL && len >= GH_H1_MAX_LINE + 2 ? -1 : 0;
}

/* ---- requests ---- */

/*
 * Scans the request-target up to the first byte that cannot be part of one (RFC 3986; a
 * '%' must start a valid %HH). *brackets is set past the last '[' or ']' so that the form
 * check can confine them to an IP-literal authority.
 */
static int scan_target(const char *buf, size_t end, size_t *pos, size_t *brackets)
{
    size_t p = *pos;

    for (;;) {
        while (p < end && has(buf[p], C_PATH))
            p++;
        if (p == end)
            break;
        if (buf[p] == '%') {
            if (end - p < 3 || !has(buf[p + 1], C_HEX) || !has(buf[p + 2], C_HEX))
                return -400;
            p += 3;
        } else if (buf[p] == '[' || buf[p] == ']') {
            *brackets = ++p;
        } else {
            break;
        }
    }
    *pos = p;
    return 0;
}

int gh_h1_origin_target_ok(const char *p, size_t n)
{
    size_t pos = 0, brackets = 0;

    /* what parse_request_line and parse_target accept as origin-form, byte for byte */
    return n > 0 && p[0] == '/' && scan_target(p, n, &pos, &brackets) == 0 && pos == n && brackets == 0;
}

/* HTTP-version CRLF (RFC 9112 2.3); a well-formed version we do not speak is 505. */
static int parse_version(const char *p, size_t n, int *minor)
{
    if (n < 10 || memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' || !is_digit(p[7]) || p[8] != '\r' ||
        p[9] != '\n')
        return -400;
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return -505;
    *minor = p[7] - '0';
    return 0;
}

static int is_method(gh_h1_str m, const char *name, size_t len)
{
    return m.len == len && memcmp(m.p, name, len) == 0; /* methods are case-sensitive */
}

/* absolute-form (RFC 9112 3.2.2): "http" or "https" "://" authority [path-abempty ["?" query]]. */
static int parse_absolute(gh_h1_request *req, size_t brackets)
{
    gh_h1_str t = req->target;
    size_t s, a;

    if (t.len > 7 && ieq_n(t.p, "http://", 7))
        s = 7;
    else if (t.len > 8 && ieq_n(t.p, "https://", 8))
        s = 8;
    else
        return -400;
    for (a = s; a < t.len && t.p[a] != '/' && t.p[a] != '?'; a++)
        ;
    if ((a < t.len && t.p[a] == '?') || brackets > a || !gh_h1_authority_ok(t.p + s, a - s, 0))
        return -400;
    req->target_form = GH_H1_ABSOLUTE_FORM;
    req->authority = slice(t.p + s, a - s);
    req->path = a < t.len ? slice(t.p + a, t.len - a) : slice("/", 1);
    return 0;
}

/* Which of the four forms (RFC 9112 3.2) the target is, and whether the method allows it. */
static int parse_target(gh_h1_request *req, size_t brackets)
{
    gh_h1_str t = req->target;
    int connect = is_method(req->method, "CONNECT", 7);

    if (t.p[0] == '/') {
        if (connect || brackets)
            return -400;
        req->target_form = GH_H1_ORIGIN_FORM;
        req->path = t;
        return 0;
    }
    if (connect) {
        if (!gh_h1_authority_ok(t.p, t.len, 1))
            return -400;
        req->target_form = GH_H1_AUTHORITY_FORM;
        req->authority = t;
        return 0;
    }
    if (t.len == 1 && t.p[0] == '*') {
        if (!is_method(req->method, "OPTIONS", 7))
            return -400;
        req->target_form = GH_H1_ASTERISK_FORM;
        return 0;
    }
    return parse_absolute(req, brackets);
}

/* method SP request-target SP HTTP-version CRLF, exactly one SP each (RFC 9112 3). */
static int parse_request_line(const char *buf, size_t end, size_t *pos, gh_h1_request *req)
{
    size_t p = 0, t, brackets = 0;
    int rc;

    while (p < end && has(buf[p], C_TCHAR))
        p++;
    if (p == 0 || p > MAX_METHOD || p == end || buf[p] != ' ')
        return -400;
    req->method = slice(buf, p);
    t = ++p;
    if ((rc = scan_target(buf, end, &p, &brackets)) < 0)
        return rc;
    if (p == t || p == end || buf[p] != ' ')
        return -400;
    req->target = slice(buf + t, p - t);
    p++;
    if ((rc = parse_version(buf + p, end - p, &req->minor)) < 0)
        return rc;
    *pos = p + 10;
    return parse_target(req, brackets ? brackets - t : 0);
}

/* RFC 9112 6.1 and 6.3: the one framing we accept per request, or a refusal. */
static int request_framing(gh_h1_request *req, struct head *hd)
{
    if (hd->nte) {
        gh_h1_str v = hd->h[hd->te].value;
        if (req->minor == 0 || hd->ncl)
            return -400;
        /* Only a lone "chunked" frames a request; any other list is refused as
         * ambiguous (400, not RFC 9112's optional 501): a backend that reads
         * "gzip, chunked" or "chunked, identity" differently must never see it. */
        if (!gh_h1_str_ieq(v, "chunked"))
            return -400;
        req->body = GH_H1_BODY_CHUNKED;
    } else if (hd->ncl) {
        req->body = GH_H1_BODY_LENGTH;
        req->content_length = hd->cl;
    }
    return 0;
}

static int request_semantics(gh_h1_request *req, struct head *hd)
{
    int rc;

    /* RFC 9112 3.2: exactly one Host in HTTP/1.1, and it must be a valid authority. */
    if (hd->nhost == 0 && req->minor == 1)
        return -400;
    if (hd->nhost == 1) {
        req->host = hd->h[hd->host].value;
        if (!gh_h1_authority_ok(req->host.p, req->host.len, 0))
            return -400;
    }
    if ((rc = request_framing(req, hd)) < 0)
        return rc;
    if (hd->expect < 0)
        return -417;
    if (hd->expect > 0 && req->minor == 1) /* RFC 9110 10.1.1: ignored from HTTP/1.0 */
        hd->flags |= GH_H1_F_EXPECT_CONTINUE;
    if (req->minor == 0 && !(hd->flags & GH_H1_F_CONN_KEEPALIVE))
        hd->flags |= GH_H1_F_CONN_CLOSE;
    if (hd->conn_names)
        mark_connection_named(hd);
    req->nheaders = hd->n;
    req->flags = hd->flags;
    return 0;
}

/*
 * Before the request line has ended, its first bytes can already show it is no request:
 * this turns away TLS on a plain port, leading CRLFs and binary junk at once.
 */
static int request_prefix_ok(const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len && i <= MAX_METHOD; i++) {
        if (buf[i] == ' ')
            return i > 0;
        if (!has(buf[i], C_TCHAR))
            return 0;
    }
    return i <= MAX_METHOD;
}

static void request_init(gh_h1_request *req, const char *buf)
{
    req->method = req->target = req->authority = req->path = req->host = req->protocol = slice(buf, 0);
    req->target_form = GH_H1_ORIGIN_FORM;
    req->minor = 1;
    req->nheaders = 0;
    req->body = GH_H1_BODY_NONE;
    req->content_length = 0;
    req->flags = 0;
}

int gh_h1_parse_request(const char *buf, size_t len, gh_h1_request *req)
{
    size_t end = head_end_within(buf, len), line, pos = 0;
    struct head hd;
    int rc;

    if (first_line(buf, len, &line) < 0)
        return -414;
    if (end == 0 && len > GH_H1_MAX_HEAD)
        return -431;
    if (line == 0)
        return request_prefix_ok(buf, len) ? 0 : -400;
    request_init(req, buf);
    if ((rc = parse_request_line(buf, line, &pos, req)) < 0 || end == 0)
        return rc;
    head_init(&hd, req->headers, 0);
    if ((rc = parse_fields(buf, end, &pos, &hd)) < 0 || (rc = request_semantics(req, &hd)) < 0)
        return rc;
    return (int)pos;
}

/* ---- responses ---- */

/* HTTP-version SP 3DIGIT [SP reason-phrase] CRLF (RFC 9112 4); a missing SP is tolerated. */
static int parse_status_line(const char *buf, size_t end, size_t *pos, gh_h1_response *res)
{
    size_t p = 12, reason = 12;

    if (end < 14 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
        !is_digit(buf[9]) || !is_digit(buf[10]) || !is_digit(buf[11]))
        return -502;
    res->minor = buf[7] - '0';
    res->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (res->status < 100 || res->status > 599)
        return -502;
    if (buf[12] == ' ')
        for (reason = p = 13; p < end && has(buf[p], C_VALUE); p++)
            ;
    if (end - p < 2 || buf[p] != '\r' || buf[p + 1] != '\n')
        return -502;
    res->reason = slice(buf + reason, p - reason);
    *pos = p + 2;
    return 0;
}

/* RFC 9112 6.3, in its order. */
static int response_semantics(gh_h1_response *res, struct head *hd, int head_request)
{
    if (hd->nte && (res->minor == 0 || hd->ncl || !gh_h1_str_ieq(hd->h[hd->te].value, "chunked")))
        return -502;
    if (hd->ncl)
        res->content_length = hd->cl;
    if (head_request || res->status < 200 || res->status == 204 || res->status == 304)
        res->body = GH_H1_BODY_NONE;
    else if (hd->nte)
        res->body = GH_H1_BODY_CHUNKED;
    else if (hd->ncl)
        res->body = GH_H1_BODY_LENGTH;
    else
        res->body = GH_H1_BODY_CLOSE;
    if (res->minor == 0 && !(hd->flags & GH_H1_F_CONN_KEEPALIVE))
        hd->flags |= GH_H1_F_CONN_CLOSE;
    if (hd->conn_names)
        mark_connection_named(hd);
    res->nheaders = hd->n;
    res->flags = hd->flags;
    return 0;
}

static int response_prefix_ok(const char *buf, size_t len)
{
    return memcmp(buf, "HTTP/1.", len < 7 ? len : 7) == 0;
}

int gh_h1_parse_response(const char *buf, size_t len, int head_request, gh_h1_response *res)
{
    size_t end = head_end_within(buf, len), line, pos = 0;
    struct head hd;

    if (first_line(buf, len, &line) < 0 || (end == 0 && len > GH_H1_MAX_HEAD))
        return -502;
    if (line == 0)
        return response_prefix_ok(buf, len) ? 0 : -502;
    res->reason = slice(buf, 0);
    res->nheaders = 0;
    res->body = GH_H1_BODY_NONE;
    res->content_length = 0;
    res->flags = 0;
    if (parse_status_line(buf, line, &pos, res) < 0)
        return -502;
    if (end == 0)
        return 0;
    head_init(&hd, res->headers, 1);
    if (parse_fields(buf, end, &pos, &hd) < 0 || response_semantics(res, &hd, head_request) < 0)
        return -502;
    return (int)pos;
}

/* ---- chunked transfer coding (RFC 9112 7.1) ---- */

enum {
    CH_SIZE_FIRST = 0, /* a zeroed gh_h1_chunked starts here */
    CH_SIZE,
    CH_EXT_NAME_FIRST, /* chunk-ext = *( ";" token [ "=" ( token / quoted-string ) ] ), no BWS */
    CH_EXT_NAME,
    CH_EXT_VALUE_FIRST,
    CH_EXT_TOKEN,
    CH_EXT_QUOTED,
    CH_EXT_ESCAPE,
    CH_EXT_QUOTED_END,
    CH_SIZE_LF,
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER_FIRST, /* trailer-section = *( field-line CRLF ), then CRLF */
    CH_TRAILER_NAME,
    CH_TRAILER_VALUE,
    CH_TRAILER_LF,
    CH_END_LF,
    CH_DONE,
    CH_ERROR,
};

static int ch_to(gh_h1_chunked *c, int state)
{
    c->state = state;
    return 0;
}

/* After a chunk size or an extension: another extension or the end of the size line. */
static int ch_ext_next(gh_h1_chunked *c, char b)
{
    if (b == ';')
        return ch_to(c, CH_EXT_NAME_FIRST);
    if (b == '\r')
        return ch_to(c, CH_SIZE_LF);
    return -1;
}

static int ch_size_digit(gh_h1_chunked *c, char b)
{
    unsigned d = hexval(b);

    /* Two parsers that wrap a long size differently disagree on where the body ends. */
    if (++c->digits > MAX_CHUNK_DIGITS || c->left > (MAX_LENGTH - d) >> 4)
        return -1;
    c->left = c->left << 4 | d;
    return ch_to(c, CH_SIZE);
}

/* The size line: chunk-size [ chunk-ext ] CRLF. */
static int ch_size_line(gh_h1_chunked *c, char b)
{
    switch (c->state) {
    case CH_SIZE_FIRST:
        c->left = 0;
        c->digits = 0;
        return has(b, C_HEX) ? ch_size_digit(c, b) : -1;
    case CH_SIZE:
        return has(b, C_HEX) ? ch_size_digit(c, b) : ch_ext_next(c, b);
    case CH_EXT_NAME_FIRST:
        return has(b, C_TCHAR) ? ch_to(c, CH_EXT_NAME) : -1;
    case CH_EXT_NAME:
        if (has(b, C_TCHAR))
            return 0;
        return b == '=' ? ch_to(c, CH_EXT_VALUE_FIRST) : ch_ext_next(c, b);
    case CH_EXT_VALUE_FIRST:
        if (b == '"')
            return ch_to(c, CH_EXT_QUOTED);
        return has(b, C_TCHAR) ? ch_to(c, CH_EXT_TOKEN) : -1;
    case CH_EXT_TOKEN:
        return has(b, C_TCHAR) ? 0 : ch_ext_next(c, b);
    case CH_EXT_QUOTED:
        if (b == '"')
            return ch_to(c, CH_EXT_QUOTED_END);
        if (b == '\\')
            return ch_to(c, CH_EXT_ESCAPE);
        return has(b, C_QDTEXT) ? 0 : -1;
    case CH_EXT_ESCAPE:
        return has(b, C_VALUE) ? ch_to(c, CH_EXT_QUOTED) : -1;
    case CH_EXT_QUOTED_END:
        return ch_ext_next(c, b);
    default: /* CH_SIZE_LF */
        if (b != '\n')
            return -1;
        return ch_to(c, c->left ? CH_DATA : CH_TRAILER_FIRST);
    }
}

/* The trailer section: validated like header lines, bounded, then dropped. */
static int ch_trailer(gh_h1_chunked *c, char b)
{
    if (++c->trailer_bytes > GH_H1_MAX_TRAILER)
        return -1;
    switch (c->state) {
    case CH_TRAILER_FIRST:
        if (b == '\r')
            return ch_to(c, CH_END_LF);
        return has(b, C_TCHAR) ? ch_to(c, CH_TRAILER_NAME) : -1; /* SP here would be obs-fold */
    case CH_TRAILER_NAME:
        if (has(b, C_TCHAR))
            return 0;
        return b == ':' ? ch_to(c, CH_TRAILER_VALUE) : -1;
    case CH_TRAILER_VALUE:
        if (has(b, C_VALUE))
            return 0;
        return b == '\r' ? ch_to(c, CH_TRAILER_LF) : -1;
    case CH_TRAILER_LF:
        return b == '\n' ? ch_to(c, CH_TRAILER_FIRST) : -1;
    default: /* CH_END_LF */
        return b == '\n' ? ch_to(c, CH_DONE) : -1;
    }
}

/* One framing byte (anything but chunk data). */
static int ch_step(gh_h1_chunked *c, char b)
{
    switch (c->state) {
    case CH_DATA_CR:
        return b == '\r' ? ch_to(c, CH_DATA_LF) : -1;
    case CH_DATA_LF:
        return b == '\n' ? ch_to(c, CH_SIZE_FIRST) : -1;
    default:
        if (c->state >= CH_TRAILER_FIRST)
            return ch_trailer(c, b);
        return ch_size_line(c, b);
    }
}

ssize_t gh_h1_chunked_decode(gh_h1_chunked *c, char *buf, size_t *len)
{
    size_t src = 0, dst = 0, n = *len;

    if ((unsigned)c->state >= CH_ERROR) {
        *len = 0;
        return GH_H1_CHUNKED_ERROR;
    }
    while (src < n && c->state != CH_DONE) {
        if (c->state == CH_DATA) {
            size_t take = n - src < c->left ? n - src : (size_t)c->left;
            memmove(buf + dst, buf + src, take);
            src += take;
            dst += take;
            if ((c->left -= take) == 0)
                c->state = CH_DATA_CR;
        } else if (ch_step(c, buf[src++]) < 0) {
            c->state = CH_ERROR;
            *len = dst;
            return GH_H1_CHUNKED_ERROR;
        }
    }
    *len = dst;
    if (c->state != CH_DONE)
        return GH_H1_CHUNKED_MORE;
    memmove(buf + dst, buf + src, n - src);
    return (ssize_t)(n - src);
}

int gh_h1_chunked_done(const gh_h1_chunked *c)
{
    return c->state == CH_DONE;
}

/*
 * The path policy (one spelling per path, so that a route cannot be bypassed). RFC 3986 6.2.2 lets
 * a server treat "%61" as "a", and real backends go further than the RFC: Tomcat and Jetty drop
 * ";params" from every segment ("/admin;x/y" is /admin/y), IIS and Spring read "\\" as "/",
 * many frameworks decode "%2F" before splitting, some decode twice ("%2561" -> "%61" -> "a"), and C
 * servers stop at "%00". A proxy cannot know which reading its backend has, and matching either
 * one leaves the other open, so every byte sequence whose meaning differs between backends is
 * refused, as Spring Security's StrictHttpFirewall does and as Envoy's
 * path_with_escaped_slashes_action REJECT_REQUEST does for "%2F". Empty segments are not refused
 * but merged (nginx's merge_slashes, on by default; Envoy's merge_slashes): "//" is common in
 * clients that join URLs, and merging for the router AND upstream gives both the same path.
 */
static int path_escape_refused(const char *p, const char *end)
{
    char c = (char)(hexval(p[1]) << 4 | hexval(p[2]));

    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~')
        return 1; /* an unreserved character has one spelling: itself (RFC 3986 2.3) */
    if (c == '/' || c == '\\' || c == ';' || c == '\0')
        return 1; /* a separator, or the end of a C string, once decoded */
    /* "%25" then two hex digits decodes to another escape: double encoding. ("%25" followed by an
     * escape of a hex digit, "%25%36%31", is refused by the unreserved rule above.) */
    return c == '%' && end - p >= 5 && has(p[3], C_HEX) && has(p[4], C_HEX);
}

/* The bytes the path policy looks at; every other one is skipped at table speed. */
static const uint8_t path_special[256] = {
    ['%'] = 1, ['.'] = 1, ['/'] = 1, [';'] = 1, ['?'] = 1, ['\\'] = 1,
};

/* gh_h1_path_normal in one pass; *runs is set when the path part has an empty segment ("//"). */
static int path_check(gh_h1_str path, int *runs)
{
    const char *p = path.p, *end = path.p + path.len, *seg = p;

    *runs = 0;
    for (;; p++) {
        while (p < end && !path_special[(unsigned char)*p])
            p++;
        char c = p < end ? *p : '?'; /* the end of the path part either way */
        if (c == '/' || c == '?') {
            size_t n = (size_t)(p - seg);
            if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (c == '?')
                return 1;
            *runs |= n == 0 && p > path.p;
            seg = p + 1;
        } else if (c == ';' || c == '\\') {
            return 0;
        } else if (c == '%' && end - p >= 3 && has(p[1], C_HEX) && has(p[2], C_HEX) && path_escape_refused(p, end)) {
            return 0;
        }
    }
}

int gh_h1_path_normal(gh_h1_str path)
{
    int runs;

    return path_check(path, &runs);
}

size_t gh_h1_path_merge_slashes(char *path, size_t len)
{
    const char *q = memchr(path, '?', len);
    size_t end = q != NULL ? (size_t)(q - path) : len, w;
    const char *run = end >= 2 ? memmem(path, end, "//", 2) : NULL;

    if (run == NULL)
        return len; /* nothing written: a read-only path is safe */
    w = (size_t)(run - path) + 1;
    for (size_t r = w + 1; r < end; r++)
        if (path[r] != '/' || path[w - 1] != '/')
            path[w++] = path[r];
    memmove(path + w, path + end, len - end);
    return w + (len - end);
}

int gh_h1_request_canonical_path(gh_h1_request *r)
{
    size_t n;
    int runs;

    if (r->target_form != GH_H1_ORIGIN_FORM && r->target_form != GH_H1_ABSOLUTE_FORM)
        return 0;
    if (!path_check(r->path, &runs))
        return -400;
    if (!runs)
        return 0;
    /* The path lies in the buffer the request was parsed from (the caller's, writable), at the end of
     * the target; the head's other slices are outside it and stay valid. */
    n = gh_h1_path_merge_slashes((char *)r->path.p, r->path.len);
    r->target.len -= r->path.len - n;
    r->path.len = n;
    return 0;
}

gh_h1_str gh_h1_request_cookie(const gh_h1_request *r, const char *name, size_t len)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const char *p, *end;
        if (!gh_h1_str_ieq(r->headers[i].name, "cookie"))
            continue;
        p = r->headers[i].value.p;
        end = p + r->headers[i].value.len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p)), *stop = semi ? semi : end;
            while (p < stop && *p == ' ')
                p++;
            if ((size_t)(stop - p) > len && memcmp(p, name, len) == 0 && p[len] == '=')
                return (gh_h1_str){p + len + 1, (size_t)(stop - p) - len - 1};
            p = stop + 1;
        }
    }
    return (gh_h1_str){"", 0};
}
