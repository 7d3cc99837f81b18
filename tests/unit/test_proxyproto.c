/* proxyproto: v1 and v2 headers parsed (complete, incomplete, malformed) and written, and back. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "net/proxyproto.h"
#include "unit.h"

static ssize_t parse_str(const char *s, gh_pp_header *h)
{
    return gh_pp_parse(s, strlen(s), h, NULL);
}

static void ip_of(const struct sockaddr_storage *ss, char *out, size_t cap, unsigned *port)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, out, (socklen_t)cap);
        *port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, out, (socklen_t)cap);
        *port = ntohs(a->sin6_port);
    } else {
        out[0] = '\0';
        *port = 0;
    }
}

#define CHECK_ADDR(ss, ip, port)                                                                                       \
    do {                                                                                                               \
        char t_[64];                                                                                                   \
        unsigned p_;                                                                                                   \
        ip_of((ss), t_, sizeof(t_), &p_);                                                                              \
        CHECK_MEM(t_, strlen(t_), ip);                                                                                 \
        CHECK_INT(p_, port);                                                                                           \
    } while (0)

static void sin4(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &a->sin_addr);
}

static void sin6(struct sockaddr_storage *ss, const char *ip, unsigned port)
{
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, ip, &a->sin6_addr);
}

/* Every proper prefix of a valid header is incomplete, never malformed. */
static void check_prefixes(const void *buf, size_t len, const char *what)
{
    gh_pp_header h;
    for (size_t i = 0; i < len; i++) {
        ssize_t r = gh_pp_parse(buf, i, &h, NULL);
        if (r != GH_PP_INCOMPLETE) {
            unit_check(0, __FILE__, __LINE__, "%s: prefix of %zu bytes gave %zd, want incomplete", what, i, r);
            return;
        }
    }
    CHECK(1);
}

static void v1_cases(void)
{
    gh_pp_header h;
    const char *l;

    unit_case("v1: TCP4, followed by the client's bytes");
    l = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET / HTTP/1.1\r\n";
    CHECK_INT(parse_str(l, &h), 45);
    CHECK_INT(h.version, 1);
    CHECK_INT(h.local, 0);
    CHECK_ADDR(&h.src, "192.0.2.7", 56324);
    CHECK_ADDR(&h.dst, "198.51.100.1", 443);
    check_prefixes(l, 45, "v1 TCP4");

    unit_case("v1: TCP6");
    CHECK(parse_str("PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", &h) > 0);
    CHECK_ADDR(&h.src, "2001:db8::1", 65535);
    CHECK_ADDR(&h.dst, "::1", 0);

    unit_case("v1: UNKNOWN, short and long form");
    CHECK_INT(parse_str("PROXY UNKNOWN\r\n", &h), 15);
    CHECK_INT(h.local, 1);
    CHECK(parse_str("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n", &h) > 0);
    CHECK_INT(h.local, 1);

    unit_case("v1: the longest line (107 bytes) is accepted");
    char longest[200];
    memcpy(longest, "PROXY UNKNOWN ", 14);
    memset(longest + 14, 'x', 107 - 14 - 2);
    memcpy(longest + 105, "\r\n", 3);
    CHECK_INT(gh_pp_parse(longest, 107, &h, NULL), 107);

    unit_case("v1: malformed");
    static const char *const bad[] = {
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 \r\n", /* trailing space */
        "PROXY TCP4 192.0.2.7  198.51.100.1 56324 443\r\n", /* two spaces */
        "PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n",      /* three fields */
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",      /* five fields */
        "PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n",      /* IPv6 under TCP4 */
        "PROXY TCP6 192.0.2.7 ::1 1 2\r\n",                 /* IPv4 under TCP6 */
        "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n",  /* port out of range */
        "PROXY TCP4 192.0.2.7 198.51.100.1 0443 443\r\n",   /* leading zero */
        "PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n",     /* sign */
        "PROXY TCP4 192.0.2.256 198.51.100.1 1 443\r\n",    /* octet */
        "PROXY UDP4 192.0.2.7 198.51.100.1 1 443\r\n",      /* protocol */
        "PROXY TCP4 192.0.2.7 198.51.100.1 1 443\rX",       /* CR without LF */
        "PROXY TCP4 192.0.2.7\n",                           /* bare LF */
        "PROXY \r\n",                                       /* empty */
        "proxy TCP4 192.0.2.7 198.51.100.1 1 443\r\n",      /* case */
        "GET / HTTP/1.1\r\n",                               /* no header at all */
        "\x16\x03\x01\x02\x00",                             /* a TLS ClientHello */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unit_case("v1: malformed #%zu", i);
        CHECK_INT(parse_str(bad[i], &h), GH_PP_MALFORMED);
    }

    unit_case("v1: a line longer than 107 bytes is malformed, not incomplete");
    memset(longest + 14, 'x', 200 - 14);
    CHECK_INT(gh_pp_parse(longest, 107, &h, NULL), GH_PP_MALFORMED);
    CHECK_INT(gh_pp_parse(longest, 106, &h, NULL), GH_PP_INCOMPLETE);
    memcpy(longest + 106, "\r\n", 2); /* 108 bytes with the CRLF */
    CHECK_INT(gh_pp_parse(longest, 108, &h, NULL), GH_PP_MALFORMED);

    unit_case("v1: the first wrong byte is enough");
    CHECK_INT(parse_str("PROXY TCP4 192.0.2.7\x01", &h), GH_PP_MALFORMED);
    CHECK_INT(parse_str("PRX", &h), GH_PP_MALFORMED);
    CHECK_INT(parse_str("PRO", &h), GH_PP_INCOMPLETE);
}

/* A v2 header: fixed part with the given command/family, then body[0..n). */
static size_t v2(uint8_t *dst, uint8_t ver_cmd, uint8_t fam, const uint8_t *body, size_t n)
{
    static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
    memcpy(dst, sig, 12);
    dst[12] = ver_cmd;
    dst[13] = fam;
    dst[14] = (uint8_t)(n >> 8);
    dst[15] = (uint8_t)n;
    if (n > 0)
        memcpy(dst + 16, body, n);
    return 16 + n;
}

static void v2_cases(void)
{
    gh_pp_header h;
    uint8_t b[GH_PP_MAX + 64];
    size_t n;
    static const uint8_t inet[12] = {192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb};

    unit_case("v2: PROXY TCP4");
    n = v2(b, 0x21, 0x11, inet, sizeof(inet));
    memcpy(b + n, "GET", 3);
    CHECK_INT(gh_pp_parse(b, n + 3, &h, NULL), 28);
    CHECK_INT(h.version, 2);
    CHECK_INT(h.local, 0);
    CHECK_ADDR(&h.src, "192.0.2.7", 56324);
    CHECK_ADDR(&h.dst, "198.51.100.1", 443);
    check_prefixes(b, n, "v2 TCP4");

    unit_case("v2: PROXY TCP6");
    uint8_t in6[36] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1, [31] = 1, [32] = 0x1f, [33] = 0x90, [34] = 0, [35] = 80};
    n = v2(b, 0x21, 0x21, in6, sizeof(in6));
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), 52);
    CHECK_ADDR(&h.src, "2001:db8::1", 8080);
    CHECK_ADDR(&h.dst, "::1", 80);

    unit_case("v2: LOCAL keeps the real endpoints and skips what follows");
    n = v2(b, 0x20, 0x11, inet, sizeof(inet));
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), 28);
    CHECK_INT(h.local, 1);
    n = v2(b, 0x20, 0x00, NULL, 0);
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), 16);
    CHECK_INT(h.local, 1);

    unit_case("v2: PROXY with UNSPEC family or UNIX: no IP client");
    n = v2(b, 0x21, 0x00, NULL, 0);
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), 16);
    CHECK_INT(h.local, 1);
    uint8_t unix_addrs[216] = {0};
    n = v2(b, 0x21, 0x31, unix_addrs, sizeof(unix_addrs));
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), 16 + 216);
    CHECK_INT(h.local, 1);

    unit_case("v2: malformed fixed part");
    n = v2(b, 0x11, 0x11, inet, sizeof(inet)); /* version 1 */
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    n = v2(b, 0x22, 0x11, inet, sizeof(inet)); /* command 2 */
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    n = v2(b, 0x21, 0x41, inet, sizeof(inet)); /* family 4 */
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    n = v2(b, 0x21, 0x13, inet, sizeof(inet)); /* transport 3 */
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    n = v2(b, 0x21, 0x21, inet, sizeof(inet)); /* INET6 with 12 bytes */
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    n = v2(b, 0x21, 0x11, inet, sizeof(inet));
    b[3] = 0x0B; /* signature */
    CHECK_INT(gh_pp_parse(b, 4, &h, NULL), GH_PP_MALFORMED);

    unit_case("v2: the length bound: beyond GH_PP_MAX is malformed at once, up to it is waited for");
    n = v2(b, 0x21, 0x11, inet, sizeof(inet));
    b[14] = (uint8_t)((GH_PP_MAX - 16 + 1) >> 8);
    b[15] = (uint8_t)(GH_PP_MAX - 16 + 1);
    CHECK_INT(gh_pp_parse(b, 16, &h, NULL), GH_PP_MALFORMED);
    b[14] = 0xff;
    b[15] = 0xff;
    CHECK_INT(gh_pp_parse(b, 16, &h, NULL), GH_PP_MALFORMED);
    b[14] = (uint8_t)((GH_PP_MAX - 16) >> 8);
    b[15] = (uint8_t)(GH_PP_MAX - 16);
    CHECK_INT(gh_pp_parse(b, 100, &h, NULL), GH_PP_INCOMPLETE);
    /* and one that long with NOOP padding is fine */
    memset(b + 28, 0, GH_PP_MAX - 28);
    b[28] = GH_PP2_TYPE_NOOP;
    b[29] = (uint8_t)((GH_PP_MAX - 31) >> 8);
    b[30] = (uint8_t)(GH_PP_MAX - 31);
    CHECK_INT(gh_pp_parse(b, GH_PP_MAX, &h, NULL), GH_PP_MAX);

    unit_case("v2: TLVs parsed and bounded");
    uint8_t body[128];
    size_t bl = 0;
    memcpy(body, inet, 12), bl = 12;
    memcpy(body + bl, "\x01\x00\x02h2", 5), bl += 5;
    memcpy(body + bl,
           "\x02\x00\x0b"
           "example.com",
           14),
        bl += 14;
    memcpy(body + bl, "\x20\x00\x0f\x05\x00\x00\x00\x00\x21\x00\x07TLSv1.3", 18), bl += 18;
    memcpy(body + bl,
           "\x05\x00\x03"
           "abc",
           6),
        bl += 6;
    memcpy(body + bl, "\xe0\x00\x01Z", 4), bl += 4; /* a custom type: skipped */
    n = v2(b, 0x21, 0x11, body, bl);
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), (long long)n);
    CHECK_MEM((const char *)h.alpn.p, h.alpn.len, "h2");
    CHECK_MEM((const char *)h.authority.p, h.authority.len, "example.com");
    CHECK_MEM((const char *)h.unique_id.p, h.unique_id.len, "abc");
    CHECK_INT(h.ssl, 1);
    CHECK_INT(h.ssl_client, GH_PP2_CLIENT_SSL | GH_PP2_CLIENT_CERT_SESS);
    CHECK_MEM((const char *)h.ssl_version.p, h.ssl_version.len, "TLSv1.3");
    check_prefixes(b, n, "v2 with TLVs");

    unit_case("v2: a TLV that overruns the header, or is cut, is malformed");
    for (size_t cut = 1; cut <= 3; cut++) {
        /* the announced length ends inside the last TLV */
        n = v2(b, 0x21, 0x11, body, bl - cut);
        CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    }
    memcpy(body + 12, "\x01\x00\xffh2", 5); /* ALPN says 255 bytes */
    n = v2(b, 0x21, 0x11, body, 17);
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    memcpy(body + 12, "\x20\x00\x0a\x05\x00\x00\x00\x00\x21\x00\x07TL", 13); /* sub-TLV overruns the SSL TLV */
    n = v2(b, 0x21, 0x11, body, 25);
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    memcpy(body + 12, "\x20\x00\x03\x05\x00\x00", 6); /* SSL TLV shorter than client and verify */
    n = v2(b, 0x21, 0x11, body, 18);
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
    uint8_t uid[12 + 3 + 129];
    memcpy(uid, inet, 12);
    memcpy(uid + 12, "\x05\x00\x81", 3);
    memset(uid + 15, 'u', 129);
    n = v2(b, 0x21, 0x11, uid, sizeof(uid));
    CHECK_INT(gh_pp_parse(b, n, &h, NULL), GH_PP_MALFORMED);
}

static void crc_cases(void)
{
    gh_pp_header h;
    uint8_t b[GH_PP_MAX];
    struct sockaddr_storage s, d;
    ssize_t n;

    unit_case("crc32c: the check value of the Castagnoli polynomial");
    CHECK_INT(gh_pp_crc32c(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
    CHECK_INT(gh_pp_crc32c(gh_pp_crc32c(0, (const uint8_t *)"1234", 4), (const uint8_t *)"56789", 5), 0xE3069283u);

    unit_case("v2: a CRC32C TLV that matches is checked, one that does not is malformed");
    sin4(&s, "192.0.2.7", 1234);
    sin4(&d, "198.51.100.1", 443);
    gh_pp_info i = {.src = (struct sockaddr *)&s, .dst = (struct sockaddr *)&d, .alpn = "h2", .alpn_len = 2, .crc = 1};
    n = gh_pp_write_v2(b, sizeof(b), &i);
    CHECK(n > 0);
    CHECK_INT(gh_pp_parse(b, (size_t)n, &h, NULL), n);
    CHECK_INT(h.crc_checked, 1);
    b[20] ^= 1; /* a bit of the source address */
    CHECK_INT(gh_pp_parse(b, (size_t)n, &h, NULL), GH_PP_MALFORMED);
    b[20] ^= 1;
    b[n - 1] ^= 0x80; /* the checksum itself */
    CHECK_INT(gh_pp_parse(b, (size_t)n, &h, NULL), GH_PP_MALFORMED);
}

static void write_cases(void)
{
    struct sockaddr_storage s, d;
    gh_pp_header h;
    char line[GH_PP_V1_MAX];
    uint8_t b[GH_PP_MAX];
    ssize_t n;

    unit_case("write v1: TCP4, TCP6, mapped addresses, mixed families, LOCAL");
    sin4(&s, "192.0.2.7", 56324);
    sin4(&d, "198.51.100.1", 443);
    gh_pp_info i = {.src = (struct sockaddr *)&s, .dst = (struct sockaddr *)&d};
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_MEM(line, (size_t)n, "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
    CHECK_INT(gh_pp_parse(line, (size_t)n, &h, NULL), n);
    sin6(&s, "2001:db8::1", 1);
    sin6(&d, "::1", 2);
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_MEM(line, (size_t)n, "PROXY TCP6 2001:db8::1 ::1 1 2\r\n");
    sin6(&s, "::ffff:192.0.2.7", 1);
    sin4(&d, "198.51.100.1", 2);
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_MEM(line, (size_t)n, "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n");
    sin6(&s, "2001:db8::1", 1);
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_MEM(line, (size_t)n, "PROXY UNKNOWN\r\n");
    sin6(&s, "::ffff:192.0.2.7", 1); /* mapped beside a real IPv6 address: both stay IPv6 */
    sin6(&d, "2001:db8::1", 2);
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_MEM(line, (size_t)n, "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 1 2\r\n");
    sin6(&s, "2001:db8::1", 1);
    sin4(&d, "198.51.100.1", 2);
    i.local = 1;
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_MEM(line, (size_t)n, "PROXY UNKNOWN\r\n");
    sin6(&s, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
    sin6(&d, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535);
    i.local = 0;
    n = gh_pp_write_v1(line, sizeof(line), &i);
    CHECK_INT(n, 104); /* spec 2.1: the longest TCP6 line */
    CHECK_INT(gh_pp_write_v1(line, 20, &i), -1);

    unit_case("write v2: round trip with TLVs");
    sin6(&s, "2001:db8::7", 40000);
    sin6(&d, "2001:db8::1", 8443);
    gh_pp_info t = {.src = (struct sockaddr *)&s,
                    .dst = (struct sockaddr *)&d,
                    .alpn = "http/1.1",
                    .alpn_len = 8,
                    .authority = "www.example.com",
                    .authority_len = 15,
                    .tls = 1,
                    .tls_version = "TLSv1.3",
                    .tls_version_len = 7};
    n = gh_pp_write_v2(b, sizeof(b), &t);
    CHECK_INT(n, 16 + 36 + 3 + 8 + 3 + 15 + 3 + 5 + 3 + 7);
    CHECK_INT(gh_pp_parse(b, (size_t)n, &h, NULL), n);
    CHECK_ADDR(&h.src, "2001:db8::7", 40000);
    CHECK_ADDR(&h.dst, "2001:db8::1", 8443);
    CHECK_MEM((const char *)h.alpn.p, h.alpn.len, "http/1.1");
    CHECK_MEM((const char *)h.authority.p, h.authority.len, "www.example.com");
    CHECK_INT(h.ssl, 1);
    CHECK_INT(h.ssl_client, GH_PP2_CLIENT_SSL);
    CHECK(h.ssl_verify != 0);
    CHECK_MEM((const char *)h.ssl_version.p, h.ssl_version.len, "TLSv1.3");
    CHECK_INT(gh_pp_write_v2(b, 60, &t), -1);

    unit_case("write v2: LOCAL, and mixed families as UNSPEC");
    t.local = 1;
    n = gh_pp_write_v2(b, sizeof(b), &t);
    CHECK_INT(n, 16);
    CHECK_INT(b[12], 0x20);
    CHECK_INT(gh_pp_parse(b, (size_t)n, &h, NULL), 16);
    CHECK_INT(h.local, 1);
    t.local = 0;
    sin4(&d, "192.0.2.1", 1);
    n = gh_pp_write_v2(b, sizeof(b), &t);
    CHECK_INT(b[13], 0x00);
    CHECK_INT(gh_pp_parse(b, (size_t)n, &h, NULL), n);
    CHECK_INT(h.local, 1);
}

void suite_proxyproto(void)
{
    v1_cases();
    v2_cases();
    crc_cases();
    write_cases();
}
