/*
 * proxyproto: parsing and writing PROXY protocol headers (see proxyproto.h).
 * Section numbers are those of HAProxy's doc/proxy-protocol.txt.
 */
#include "net/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* 2.2: "\r\n\r\n\0\r\nQUIT\n", chosen so that no HTTP, TLS or v1 stream can start with it. */
static const uint8_t sig_v2[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char sig_v1[6] = "PROXY ";

#define FAIL(reason)                                                                                                   \
    do {                                                                                                               \
        if (why != NULL)                                                                                               \
            *why = (reason);                                                                                           \
        return GH_PP_MALFORMED;                                                                                        \
    } while (0)

uint32_t gh_pp_crc32c(uint32_t crc, const uint8_t *buf, size_t len)
{
    /* Bit by bit: it runs only for headers that carry a CRC TLV (a few hundred bytes), so no 1 KiB table. */
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* ---- v1 ---------------------------------------------------------------- */

/* A decimal port, 0..65535, without sign or leading zeros (2.1: "represented as a decimal integer"). */
static int v1_port(const char *p, size_t n, uint16_t *out)
{
    uint32_t v = 0;

    if (n == 0 || n > 5 || (n > 1 && p[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int v1_addr(int family, const char *p, size_t n, uint16_t port, struct sockaddr_storage *ss)
{
    char text[INET6_ADDRSTRLEN];

    if (n == 0 || n >= sizeof(text))
        return -1;
    memcpy(text, p, n);
    text[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        return inet_pton(AF_INET, text, &a->sin_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    return inet_pton(AF_INET6, text, &a->sin6_addr) == 1 ? 0 : -1;
}

/* The next field of a v1 line: up to a single space or the end; *p moves past the space. */
static size_t v1_field(const char **p, const char *end, const char **field)
{
    const char *s = *p, *sp = memchr(s, ' ', (size_t)(end - s));
    const char *stop = sp != NULL ? sp : end;

    *field = s;
    *p = sp != NULL ? sp + 1 : end;
    return (size_t)(stop - s);
}

static ssize_t parse_v1(const char *b, size_t len, gh_pp_header *out, const char **why)
{
    /* the CR of a line of at most 107 bytes is at 105 at the latest */
    size_t scan = len < GH_PP_V1_MAX - 1 ? len : GH_PP_V1_MAX - 1, eol = 0;
    const char *p, *end, *f[5];
    size_t n[5];
    int family;

    /* Only printable US-ASCII before CRLF: a binary stream is refused at its first bytes, not at 107. */
    for (size_t i = sizeof(sig_v1); i < scan; i++) {
        if (b[i] == '\r') {
            if (i + 1 == len)
                return GH_PP_INCOMPLETE;
            if (b[i + 1] != '\n')
                FAIL("v1: CR without LF");
            eol = i;
            break;
        }
        if (b[i] < 0x20 || b[i] > 0x7e)
            FAIL("v1: a byte that is not printable US-ASCII");
    }
    if (eol == 0) {
        if (len < GH_PP_V1_MAX)
            return GH_PP_INCOMPLETE;
        FAIL("v1: no CRLF within 107 bytes");
    }
    memset(out, 0, sizeof(*out));
    out->version = 1;
    p = b + sizeof(sig_v1);
    end = b + eol;
    n[0] = v1_field(&p, end, &f[0]);
    /* 2.1: UNKNOWN ignores the rest of the line; the connection's own addresses stand. */
    if (n[0] == 7 && memcmp(f[0], "UNKNOWN", 7) == 0) {
        out->local = 1;
        return (ssize_t)(eol + 2);
    }
    if (n[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
        family = AF_INET;
    else if (n[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
        family = AF_INET6;
    else
        FAIL("v1: protocol other than TCP4, TCP6 or UNKNOWN");
    for (int i = 1; i < 5; i++) {
        if (p >= end)
            FAIL("v1: fewer than four address fields");
        n[i] = v1_field(&p, end, &f[i]);
    }
    if (p != end || (end > b && end[-1] == ' '))
        FAIL("v1: more than four address fields");
    uint16_t sport, dport;
    if (v1_port(f[3], n[3], &sport) < 0 || v1_port(f[4], n[4], &dport) < 0)
        FAIL("v1: bad port");
    if (v1_addr(family, f[1], n[1], sport, &out->src) < 0 || v1_addr(family, f[2], n[2], dport, &out->dst) < 0)
        FAIL("v1: bad address for its protocol");
    return (ssize_t)(eol + 2);
}

/* ---- v2 ---------------------------------------------------------------- */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The SSL TLV (2.2.5): client bits, verify result, then sub-TLVs that must end exactly with it. */
static int parse_ssl(const uint8_t *v, size_t n, gh_pp_header *out)
{
    size_t off = 5;

    if (n < 5)
        return -1;
    out->ssl = 1;
    out->ssl_client = v[0];
    out->ssl_verify = be32(v + 1);
    while (off < n) {
        if (n - off < 3)
            return -1;
        uint8_t type = v[off];
        uint16_t len = be16(v + off + 1);
        if (n - off - 3 < len)
            return -1;
        gh_pp_slice s = {v + off + 3, len};
        if (type == GH_PP2_SUBTYPE_SSL_VERSION)
            out->ssl_version = s;
        else if (type == GH_PP2_SUBTYPE_SSL_CIPHER)
            out->ssl_cipher = s;
        else if (type == GH_PP2_SUBTYPE_SSL_CN)
            out->ssl_cn = s;
        off += 3 + (size_t)len;
    }
    return 0;
}

/* Every TLV from b[off] to b[total] must lie whole within it (2.2: a length is never trusted). */
static int parse_tlvs(const uint8_t *b, size_t off, size_t total, gh_pp_header *out, const char **why)
{
    size_t crc_at = 0;

    while (off < total) {
        if (total - off < 3)
            FAIL("v2: truncated TLV");
        uint8_t type = b[off];
        uint16_t len = be16(b + off + 1);
        if (total - off - 3 < len)
            FAIL("v2: TLV longer than the header");
        gh_pp_slice s = {b + off + 3, len};
        switch (type) {
        case GH_PP2_TYPE_ALPN:
            out->alpn = s;
            break;
        case GH_PP2_TYPE_AUTHORITY:
            out->authority = s;
            break;
        case GH_PP2_TYPE_UNIQUE_ID:
            if (len > 128) /* 2.2.6 */
                FAIL("v2: unique id longer than 128 bytes");
            out->unique_id = s;
            break;
        case GH_PP2_TYPE_CRC32C:
            if (len != 4 || crc_at != 0)
                FAIL("v2: CRC32C TLV not 4 bytes, or twice");
            crc_at = off + 3;
            break;
        case GH_PP2_TYPE_SSL:
            if (parse_ssl(s.p, len, out) < 0)
                FAIL("v2: malformed SSL TLV");
            break;
        default: /* 2.2.8: unknown types (NOOP, NETNS, custom ones) are skipped */
            break;
        }
        off += 3 + (size_t)len;
    }
    if (crc_at != 0) {
        /* 2.2.3: the checksum of the whole header with the checksum field itself zeroed */
        static const uint8_t zero[4];
        uint32_t crc = gh_pp_crc32c(0, b, crc_at);
        crc = gh_pp_crc32c(crc, zero, 4);
        crc = gh_pp_crc32c(crc, b + crc_at + 4, total - crc_at - 4);
        if (crc != be32(b + crc_at))
            FAIL("v2: CRC32C mismatch");
        out->crc_checked = 1;
    }
    return 0;
}

static void v2_addrs(const uint8_t *a, int family, gh_pp_header *out)
{
    if (family == AF_INET) {
        struct sockaddr_in *s = (struct sockaddr_in *)&out->src, *d = (struct sockaddr_in *)&out->dst;
        s->sin_family = d->sin_family = AF_INET;
        memcpy(&s->sin_addr, a, 4);
        memcpy(&d->sin_addr, a + 4, 4);
        memcpy(&s->sin_port, a + 8, 2); /* both in network order */
        memcpy(&d->sin_port, a + 10, 2);
        return;
    }
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&out->src, *d = (struct sockaddr_in6 *)&out->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
}

static ssize_t parse_v2(const uint8_t *b, size_t len, gh_pp_header *out, const char **why)
{
    static const size_t addr_len[4] = {0, 12, 36, 216}; /* 2.2: UNSPEC, INET, INET6, UNIX */
    size_t total;
    int cmd, fam, proto;

    if (len < GH_PP_V2_FIXED)
        return GH_PP_INCOMPLETE;
    if ((b[12] >> 4) != 2)
        FAIL("v2: version other than 2");
    cmd = b[12] & 0x0f;
    fam = b[13] >> 4;
    proto = b[13] & 0x0f;
    if (cmd > 1)
        FAIL("v2: command other than LOCAL or PROXY");
    if (fam > 3 || proto > 2)
        FAIL("v2: unknown address family or transport");
    total = GH_PP_V2_FIXED + (size_t)be16(b + 14);
    if (total > GH_PP_MAX)
        FAIL("v2: header longer than we accept");
    if (len < total)
        return GH_PP_INCOMPLETE;
    memset(out, 0, sizeof(*out));
    out->version = 2;
    /* 2.2: LOCAL (the sender's own connection, e.g. its health check) and UNSPEC
     * keep the real endpoints, and what follows is to be skipped, not read. */
    if (cmd == 0 || fam == 0) {
        out->local = 1;
        return (ssize_t)total;
    }
    if (total - GH_PP_V2_FIXED < addr_len[fam])
        FAIL("v2: address block shorter than its family");
    if (fam == 3 || proto == 0)
        out->local = 1; /* a UNIX socket or an unspecified transport: no IP client to take */
    else
        v2_addrs(b + GH_PP_V2_FIXED, fam == 1 ? AF_INET : AF_INET6, out);
    if (parse_tlvs(b, GH_PP_V2_FIXED + addr_len[fam], total, out, why) < 0)
        return GH_PP_MALFORMED;
    return (ssize_t)total;
}

ssize_t gh_pp_parse(const void *buf, size_t len, gh_pp_header *out, const char **why)
{
    const uint8_t *b = buf;
    size_t n;

    if (len == 0)
        return GH_PP_INCOMPLETE;
    /* Each byte that came is held against both signatures, so a client speaking
     * directly is refused at once, not after the timeout. */
    n = len < sizeof(sig_v2) ? len : sizeof(sig_v2);
    if (memcmp(b, sig_v2, n) == 0)
        return len < sizeof(sig_v2) ? GH_PP_INCOMPLETE : parse_v2(b, len, out, why);
    n = len < sizeof(sig_v1) ? len : sizeof(sig_v1);
    if (memcmp(b, sig_v1, n) == 0)
        return len < sizeof(sig_v1) ? GH_PP_INCOMPLETE : parse_v1(buf, len, out, why);
    FAIL("no PROXY protocol signature");
}

/* ---- writing ----------------------------------------------------------- */

/* An IPv4-mapped IPv6 address (a dual-stack socket's IPv4 client) as the IPv4 address it is. */
static void unmap(const struct sockaddr *sa, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
            struct sockaddr_in *a = (struct sockaddr_in *)out;
            a->sin_family = AF_INET;
            a->sin_port = a6->sin6_port;
            memcpy(&a->sin_addr, a6->sin6_addr.s6_addr + 12, 4);
            return;
        }
        memcpy(out, a6, sizeof(*a6));
    } else if (sa->sa_family == AF_INET) {
        memcpy(out, sa, sizeof(struct sockaddr_in));
    }
}

/*
 * The family both addresses share, or 0 (then the header carries none).
 * IPv4-mapped addresses go as IPv4 when both are (a dual-stack socket's IPv4
 * client); one mapped beside a real IPv6 address keeps both as IPv6.
 */
static int pair(const gh_pp_info *i, struct sockaddr_storage *s, struct sockaddr_storage *d)
{
    if (i->local || i->src == NULL || i->dst == NULL)
        return 0;
    unmap(i->src, s);
    unmap(i->dst, d);
    if (s->ss_family != d->ss_family && i->src->sa_family == AF_INET6 && i->dst->sa_family == AF_INET6) {
        memcpy(s, i->src, sizeof(struct sockaddr_in6));
        memcpy(d, i->dst, sizeof(struct sockaddr_in6));
    }
    if (s->ss_family != d->ss_family)
        return 0;
    return s->ss_family == AF_INET || s->ss_family == AF_INET6 ? s->ss_family : 0;
}

ssize_t gh_pp_write_v1(char *dst, size_t cap, const gh_pp_info *i)
{
    struct sockaddr_storage s, d;
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    int fam = pair(i, &s, &d), n;

    if (fam == 0) {
        n = snprintf(dst, cap, "PROXY UNKNOWN\r\n");
    } else {
        const void *sa = fam == AF_INET ? (const void *)&((struct sockaddr_in *)&s)->sin_addr
                                        : (const void *)&((struct sockaddr_in6 *)&s)->sin6_addr;
        const void *da = fam == AF_INET ? (const void *)&((struct sockaddr_in *)&d)->sin_addr
                                        : (const void *)&((struct sockaddr_in6 *)&d)->sin6_addr;
        unsigned sp =
            ntohs(fam == AF_INET ? ((struct sockaddr_in *)&s)->sin_port : ((struct sockaddr_in6 *)&s)->sin6_port);
        unsigned dp =
            ntohs(fam == AF_INET ? ((struct sockaddr_in *)&d)->sin_port : ((struct sockaddr_in6 *)&d)->sin6_port);
        inet_ntop(fam, sa, a, sizeof(a));
        inet_ntop(fam, da, b, sizeof(b));
        n = snprintf(dst, cap, "PROXY %s %s %s %u %u\r\n", fam == AF_INET ? "TCP4" : "TCP6", a, b, sp, dp);
    }
    return n > 0 && (size_t)n < cap ? n : -1;
}

/* A TLV of type t with value v[0..n) at dst[*off], n cut to 255 (what our senders' values need). */
static int put_tlv(uint8_t *dst, size_t cap, size_t *off, uint8_t t, const void *v, size_t n)
{
    if (n > 255)
        n = 255;
    if (cap - *off < 3 + n)
        return -1;
    dst[*off] = t;
    dst[*off + 1] = (uint8_t)(n >> 8);
    dst[*off + 2] = (uint8_t)n;
    if (n > 0)
        memcpy(dst + *off + 3, v, n);
    *off += 3 + n;
    return 0;
}

static int put_ssl(uint8_t *dst, size_t cap, size_t *off, const gh_pp_info *i)
{
    size_t vlen = i->tls_version_len > 255 ? 255 : i->tls_version_len;
    size_t sub = vlen > 0 ? 3 + vlen : 0, len = 5 + sub;

    if (cap - *off < 3 + len)
        return -1;
    dst[*off] = GH_PP2_TYPE_SSL;
    dst[*off + 1] = (uint8_t)(len >> 8);
    dst[*off + 2] = (uint8_t)len;
    dst[*off + 3] = GH_PP2_CLIENT_SSL;
    /* verify: 2.2.5 says zero only for a client certificate that was verified; we ask for none */
    dst[*off + 4] = dst[*off + 5] = dst[*off + 6] = 0;
    dst[*off + 7] = 1;
    *off += 8;
    if (vlen > 0)
        return put_tlv(dst, cap, off, GH_PP2_SUBTYPE_SSL_VERSION, i->tls_version, vlen);
    return 0;
}

ssize_t gh_pp_write_v2(uint8_t *dst, size_t cap, const gh_pp_info *i)
{
    struct sockaddr_storage s, d;
    int fam = pair(i, &s, &d);
    size_t off = GH_PP_V2_FIXED;

    if (cap < GH_PP_V2_FIXED + 36)
        return -1;
    memcpy(dst, sig_v2, sizeof(sig_v2));
    dst[12] = (uint8_t)(0x20 | (i->local ? 0 : 1));
    if (i->local) { /* 2.2: LOCAL says nothing of a client: no addresses, no TLVs */
        dst[13] = 0;
        dst[14] = dst[15] = 0;
        return GH_PP_V2_FIXED;
    }
    if (fam == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&s, *b = (const struct sockaddr_in *)&d;
        dst[13] = 0x11; /* INET, STREAM */
        memcpy(dst + off, &a->sin_addr, 4);
        memcpy(dst + off + 4, &b->sin_addr, 4);
        memcpy(dst + off + 8, &a->sin_port, 2);
        memcpy(dst + off + 10, &b->sin_port, 2);
        off += 12;
    } else if (fam == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&s, *b = (const struct sockaddr_in6 *)&d;
        dst[13] = 0x21; /* INET6, STREAM */
        memcpy(dst + off, &a->sin6_addr, 16);
        memcpy(dst + off + 16, &b->sin6_addr, 16);
        memcpy(dst + off + 32, &a->sin6_port, 2);
        memcpy(dst + off + 34, &b->sin6_port, 2);
        off += 36;
    } else {
        dst[13] = 0x00; /* UNSPEC: the receiver keeps the connection's own addresses */
    }
    if ((i->alpn_len > 0 && put_tlv(dst, cap, &off, GH_PP2_TYPE_ALPN, i->alpn, i->alpn_len) < 0) ||
        (i->authority_len > 0 && put_tlv(dst, cap, &off, GH_PP2_TYPE_AUTHORITY, i->authority, i->authority_len) < 0) ||
        (i->tls && put_ssl(dst, cap, &off, i) < 0))
        return -1;
    if (i->crc) {
        static const uint32_t zero;
        size_t at = off + 3;
        if (put_tlv(dst, cap, &off, GH_PP2_TYPE_CRC32C, &zero, 4) < 0)
            return -1;
        dst[14] = (uint8_t)((off - GH_PP_V2_FIXED) >> 8);
        dst[15] = (uint8_t)(off - GH_PP_V2_FIXED);
        uint32_t crc = gh_pp_crc32c(0, dst, off);
        dst[at] = (uint8_t)(crc >> 24);
        dst[at + 1] = (uint8_t)(crc >> 16);
        dst[at + 2] = (uint8_t)(crc >> 8);
        dst[at + 3] = (uint8_t)crc;
    }
    dst[14] = (uint8_t)((off - GH_PP_V2_FIXED) >> 8);
    dst[15] = (uint8_t)(off - GH_PP_V2_FIXED);
    return (ssize_t)off;
}
