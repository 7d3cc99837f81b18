/* h2_head: HTTP/2 request heads checked (RFC 9113 8.2, 8.3) and converted to the neutral request. */
#include <string.h>

#include "http/h2_head.h"
#include "unit.h"

static gh_h2_head head;
static gh_h1_request req;

/* A head from "name\0value\0name\0value\0..." pairs ending with an empty name; returns the first add error. */
static int build(const char *const *f, size_t max)
{
    int first = 0;
    gh_h2_head_dispose(&head);
    gh_h2_head_init(&head, max);
    for (size_t i = 0; f[i] != NULL; i += 2) {
        int r = gh_h2_head_add(&head, (const uint8_t *)f[i], strlen(f[i]), (const uint8_t *)f[i + 1], strlen(f[i + 1]));
        if (r != 0 && first == 0)
            first = r;
    }
    return first;
}

/* The answer for a whole head (add errors included). */
static int convert(const char *const *f, int end_stream)
{
    int r = build(f, 65536);
    return r != 0 ? r : gh_h2_head_request(&head, end_stream, &req);
}

/* The same where SETTINGS_ENABLE_CONNECT_PROTOCOL was sent (RFC 8441 3): :protocol may come. */
static int convert_ext(const char *const *f, int end_stream)
{
    int first = 0;
    gh_h2_head_dispose(&head);
    gh_h2_head_init(&head, 65536);
    head.extended = 1;
    for (size_t i = 0; f[i] != NULL; i += 2) {
        int r = gh_h2_head_add(&head, (const uint8_t *)f[i], strlen(f[i]), (const uint8_t *)f[i + 1], strlen(f[i + 1]));
        if (r != 0 && first == 0)
            first = r;
    }
    return first != 0 ? first : gh_h2_head_request(&head, end_stream, &req);
}

#define EXT                                                                                                            \
    ":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "ws.example", ":path", "/chat"

static void connect_forms(void)
{
    unit_case("RFC 9113 8.5: a plain CONNECT is authority-form, flagged, the target in authority, no body");
    const char *const con[] = {":method", "CONNECT", ":authority", "origin.example:443", "x-a", "1", NULL};
    CHECK_INT(convert(con, 0), 0);
    CHECK_INT(req.target_form, GH_H1_AUTHORITY_FORM);
    CHECK(req.flags & GH_H1_F_CONNECT);
    CHECK_MEM(req.authority.p, req.authority.len, "origin.example:443");
    CHECK_MEM(req.host.p, req.host.len, "origin.example:443");
    CHECK_INT(req.protocol.len, 0);
    CHECK_INT(req.body, GH_H1_BODY_NONE); /* its DATA is the tunnel's */
    CHECK_INT(convert_ext(con, 0), 0);    /* the same where extended CONNECT was offered */
    CHECK_INT(req.protocol.len, 0);

    unit_case("a plain CONNECT needs :authority with a port and no :scheme, :path or content-length");
    const char *const noport[] = {":method", "CONNECT", ":authority", "origin.example", NULL};
    CHECK_INT(convert(noport, 0), GH_H2_MALFORMED);
    const char *const noauth[] = {":method", "CONNECT", "host", "origin.example:443", NULL};
    CHECK_INT(convert(noauth, 0), GH_H2_MALFORMED);
    const char *const scheme[] = {":method", "CONNECT", ":scheme", "https", ":authority", "a:1", NULL};
    CHECK_INT(convert(scheme, 0), GH_H2_MALFORMED);
    const char *const clen[] = {":method", "CONNECT", ":authority", "a:1", "content-length", "0", NULL};
    CHECK_INT(convert(clen, 0), GH_H2_MALFORMED);

    unit_case("RFC 8441 4: an extended CONNECT is origin-form with its :protocol, flagged, no body");
    const char *const ext[] = {EXT, "sec-websocket-version", "13", "cookie", "a=1", "cookie", "b=2", NULL};
    CHECK_INT(convert_ext(ext, 0), 0);
    CHECK_INT(req.target_form, GH_H1_ORIGIN_FORM);
    CHECK(req.flags & GH_H1_F_CONNECT);
    CHECK_MEM(req.method.p, req.method.len, "CONNECT");
    CHECK_MEM(req.protocol.p, req.protocol.len, "websocket"); /* taken again after the cookies were joined */
    CHECK_MEM(req.path.p, req.path.len, "/chat");
    CHECK_MEM(req.host.p, req.host.len, "ws.example");
    CHECK_INT(req.authority.len, 0);
    CHECK_INT(req.body, GH_H1_BODY_NONE);
    CHECK_INT(req.nheaders, 2);
    const char *const other[] = {":method",    "CONNECT",    ":protocol", "connect-udp", ":scheme", "https",
                                 ":authority", "ws.example", ":path",     "/",           NULL};
    CHECK_INT(convert_ext(other, 0), 0); /* any token here: which ones are served is the proxy's to say */
    CHECK_MEM(req.protocol.p, req.protocol.len, "connect-udp");

    unit_case("extended CONNECT: unoffered, on another method, without :scheme/:path/:authority, bad token");
    const char *const ext0[] = {EXT, NULL};
    CHECK_INT(convert(ext0, 0), GH_H2_MALFORMED); /* ENABLE_CONNECT_PROTOCOL not sent */
    const char *const get[] = {":method",    "GET",        ":protocol", "websocket", ":scheme", "https",
                               ":authority", "ws.example", ":path",     "/chat",     NULL};
    CHECK_INT(convert_ext(get, 0), GH_H2_MALFORMED);
    const char *const nopath[] = {":method", "CONNECT",    ":protocol",  "websocket", ":scheme",
                                  "https",   ":authority", "ws.example", NULL};
    CHECK_INT(convert_ext(nopath, 0), GH_H2_MALFORMED);
    const char *const noscheme[] = {":method",    "CONNECT", ":protocol", "websocket", ":authority",
                                    "ws.example", ":path",   "/chat",     NULL};
    CHECK_INT(convert_ext(noscheme, 0), GH_H2_MALFORMED);
    const char *const enoauth[] = {":method", "CONNECT", ":protocol", "websocket",  ":scheme", "https",
                                   ":path",   "/chat",   "host",      "ws.example", NULL};
    CHECK_INT(convert_ext(enoauth, 0), GH_H2_MALFORMED);
    const char *const empty[] = {":method",    "CONNECT",    ":protocol", "",      ":scheme", "https",
                                 ":authority", "ws.example", ":path",     "/chat", NULL};
    CHECK_INT(convert_ext(empty, 0), GH_H2_MALFORMED);
    const char *const space[] = {":method",    "CONNECT",    ":protocol", "web socket", ":scheme", "https",
                                 ":authority", "ws.example", ":path",     "/chat",      NULL};
    CHECK_INT(convert_ext(space, 0), GH_H2_MALFORMED);
    const char *const star[] = {":method",    "CONNECT",    ":protocol", "websocket", ":scheme", "https",
                                ":authority", "ws.example", ":path",     "*",         NULL};
    CHECK_INT(convert_ext(star, 0), GH_H2_MALFORMED);
    const char *const twice[] = {EXT, ":protocol", "websocket", NULL};
    CHECK_INT(convert_ext(twice, 0), GH_H2_MALFORMED);
    const char *const eclen[] = {EXT, "content-length", "5", NULL};
    CHECK_INT(convert_ext(eclen, 0), GH_H2_MALFORMED);
    const char *const upgrade[] = {EXT, "upgrade", "websocket", NULL};
    CHECK_INT(convert_ext(upgrade, 0), GH_H2_MALFORMED); /* connection-specific, as on any request */
}

#define BASE ":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/a?b=1"

static void good(void)
{
    unit_case("a GET: origin-form path, :authority as the host, no body with END_STREAM");
    const char *const get[] = {BASE, "accept", "*/*", "user-agent", "t", NULL};
    CHECK_INT(convert(get, 1), 0);
    CHECK_MEM(req.method.p, req.method.len, "GET");
    CHECK_MEM(req.path.p, req.path.len, "/a?b=1");
    CHECK_MEM(req.target.p, req.target.len, "/a?b=1");
    CHECK_INT(req.target_form, GH_H1_ORIGIN_FORM);
    CHECK_MEM(req.host.p, req.host.len, "example.com");
    CHECK_INT(req.body, GH_H1_BODY_NONE);
    CHECK_INT(req.nheaders, 2);
    CHECK_INT(req.minor, 1);

    unit_case("content-length gives a LENGTH body; without it and without END_STREAM, CHUNKED");
    const char *const post[] = {":method", "POST", ":scheme",        "https", ":authority", "a",
                                ":path",   "/",    "content-length", "12",    NULL};
    CHECK_INT(convert(post, 0), 0);
    CHECK_INT(req.body, GH_H1_BODY_LENGTH);
    CHECK_INT(req.content_length, 12);
    CHECK_INT(req.headers[0].kind, GH_HDR_CONTENT_LENGTH);
    CHECK_INT(convert(get, 0), 0);
    CHECK_INT(req.body, GH_H1_BODY_CHUNKED);

    unit_case("Host without :authority is the host; the same in both is fine");
    const char *const host[] = {":method", "GET", ":scheme", "http", ":path", "/", "host", "h.example:8080", NULL};
    CHECK_INT(convert(host, 1), 0);
    CHECK_MEM(req.host.p, req.host.len, "h.example:8080");
    CHECK_INT(req.headers[0].kind, GH_HDR_HOST);
    const char *const both[] = {BASE, "host", "EXAMPLE.com", NULL};
    CHECK_INT(convert(both, 1), 0);

    unit_case("RFC 9113 8.2.3: cookie crumbs joined with \"; \" into one field");
    const char *const cookies[] = {BASE, "cookie", "a=1", "x-y", "z", "cookie", "b=2", "cookie", "c=3", NULL};
    CHECK_INT(convert(cookies, 1), 0);
    CHECK_INT(req.nheaders, 2);
    CHECK_MEM(req.headers[0].name.p, req.headers[0].name.len, "cookie");
    CHECK_MEM(req.headers[0].value.p, req.headers[0].value.len, "a=1; b=2; c=3");
    CHECK_MEM(req.headers[1].value.p, req.headers[1].value.len, "z");
    CHECK_MEM(req.path.p, req.path.len, "/a?b=1"); /* slices taken again after the buffer grew */

    unit_case("OPTIONS * is asterisk-form; CONNECT is authority-form (the exchange answers 405)");
    const char *const opt[] = {":method", "OPTIONS", ":scheme", "https", ":authority", "a", ":path", "*", NULL};
    CHECK_INT(convert(opt, 1), 0);
    CHECK_INT(req.target_form, GH_H1_ASTERISK_FORM);
    const char *const con[] = {":method", "CONNECT", ":authority", "a:443", NULL};
    CHECK_INT(convert(con, 0), 0);
    CHECK_INT(req.target_form, GH_H1_AUTHORITY_FORM);

    unit_case("te: trailers and expect: 100-continue are kept but not forwarded (hop)");
    const char *const te[] = {BASE, "te", "trailers", "expect", "100-continue", NULL};
    CHECK_INT(convert(te, 0), 0);
    CHECK(req.headers[0].hop && req.headers[1].hop);
    CHECK(req.flags & GH_H1_F_EXPECT_CONTINUE);
}

static void malformed(void)
{
    unit_case("connection-specific fields (RFC 9113 8.2.2)");
    static const char *const conn[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof(conn) / sizeof(conn[0]); i++) {
        const char *const f[] = {BASE, conn[i], "x", NULL};
        CHECK_INT(convert(f, 1), GH_H2_MALFORMED);
    }
    const char *const te[] = {BASE, "te", "gzip", NULL};
    CHECK_INT(convert(te, 1), GH_H2_MALFORMED);

    unit_case("upper case or non-token names; CR, LF, NUL, control bytes, edge whitespace in values");
    const char *const upper[] = {BASE, "X-Up", "1", NULL};
    CHECK_INT(convert(upper, 1), GH_H2_MALFORMED);
    const char *const sp[] = {BASE, "a b", "1", NULL};
    CHECK_INT(convert(sp, 1), GH_H2_MALFORMED);
    const char *const colon[] = {BASE, "a:b", "1", NULL};
    CHECK_INT(convert(colon, 1), GH_H2_MALFORMED);
    static const char *const values[] = {
        "a\r\nx-injected: 1", "a\nb", "a\rb", "\x01", " lead", "trail ", "\ttab", "del\x7f"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *const f[] = {BASE, "x-v", values[i], NULL};
        CHECK_INT(convert(f, 1), GH_H2_MALFORMED);
    }
    CHECK_INT(gh_h2_value_ok((const uint8_t *)"a\0b", 3), 0);
    CHECK_INT(gh_h2_value_ok((const uint8_t *)"in side\ttab ok", 14), 1);
    CHECK_INT(gh_h2_value_ok((const uint8_t *)"", 0), 1);

    unit_case("pseudo-headers: unknown, repeated, missing, after a regular field, :protocol unoffered");
    const char *const unknown[] = {BASE, ":foo", "x", NULL};
    CHECK_INT(convert(unknown, 1), GH_H2_MALFORMED);
    const char *const status[] = {BASE, ":status", "200", NULL};
    CHECK_INT(convert(status, 1), GH_H2_MALFORMED);
    const char *const dup[] = {BASE, ":path", "/b", NULL};
    CHECK_INT(convert(dup, 1), GH_H2_MALFORMED);
    const char *const after[] = {":method", "GET", ":scheme",    "https", "accept", "*",
                                 ":path",   "/",   ":authority", "a",     NULL};
    CHECK_INT(convert(after, 1), GH_H2_MALFORMED);
    const char *const nopath[] = {":method", "GET", ":scheme", "https", ":authority", "a", NULL};
    CHECK_INT(convert(nopath, 1), GH_H2_MALFORMED);
    const char *const nomethod[] = {":scheme", "https", ":authority", "a", ":path", "/", NULL};
    CHECK_INT(convert(nomethod, 1), GH_H2_MALFORMED);
    const char *const noscheme[] = {":method", "GET", ":authority", "a", ":path", "/", NULL};
    CHECK_INT(convert(noscheme, 1), GH_H2_MALFORMED);
    const char *const proto[] = {":method",    "CONNECT", ":protocol", "websocket", ":scheme", "https",
                                 ":authority", "a",       ":path",     "/",         NULL};
    CHECK_INT(convert(proto, 0), GH_H2_MALFORMED);
    const char *const conpath[] = {":method", "CONNECT", ":authority", "a:1", ":path", "/", NULL};
    CHECK_INT(convert(conpath, 0), GH_H2_MALFORMED);

    unit_case("what cannot cross into an HTTP/1.1 request line or Host");
    static const char *const paths[] = {"",  "a",     "/a b",     "/a#f", "/\"",  "/a\\b",
                                        "*", "/\x80", "/echo%zz", "/a%",  "/a%4", "/[a]"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        const char *const f[] = {":method", "GET", ":scheme", "https", ":authority", "a", ":path", paths[i], NULL};
        CHECK_INT(convert(f, 1), GH_H2_MALFORMED);
    }
    static const char *const methods[] = {"", "G T", "GET\r\n", "G(T"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        const char *const f[] = {":method", methods[i], ":scheme", "https", ":authority", "a", ":path", "/", NULL};
        CHECK_INT(convert(f, 1), GH_H2_MALFORMED);
    }
    static const char *const auths[] = {
        "",          "u@a",        "a b", "a:x", "a:123456", "[::1", "[]", "a/b", "a.example,b.example",
        "loc=lhost", "loc%zzhost", "a;b", "a!b"};
    for (size_t i = 0; i < sizeof(auths) / sizeof(auths[0]); i++) {
        const char *const f[] = {":method", "GET", ":scheme", "https", ":authority", auths[i], ":path", "/", NULL};
        CHECK_INT(convert(f, 1), GH_H2_MALFORMED);
    }
    const char *const scheme[] = {":method", "GET", ":scheme", "ftp", ":authority", "a", ":path", "/", NULL};
    CHECK_INT(convert(scheme, 1), GH_H2_MALFORMED);

    unit_case(":authority and Host that disagree; two Hosts; neither");
    const char *const differ[] = {BASE, "host", "other.example", NULL};
    CHECK_INT(convert(differ, 1), GH_H2_MALFORMED);
    const char *const hosts[] = {":method", "GET", ":scheme", "http", ":path", "/", "host", "a", "host", "a", NULL};
    CHECK_INT(convert(hosts, 1), GH_H2_MALFORMED);
    const char *const nohost[] = {":method", "GET", ":scheme", "http", ":path", "/", NULL};
    CHECK_INT(convert(nohost, 1), GH_H2_MALFORMED);

    unit_case("content-length: not digits, disagreeing copies, non-zero with END_STREAM on the head");
    const char *const cl_bad[] = {BASE, "content-length", "1,1", NULL};
    CHECK_INT(convert(cl_bad, 0), GH_H2_MALFORMED);
    const char *const cl_two[] = {BASE, "content-length", "1", "content-length", "2", NULL};
    CHECK_INT(convert(cl_two, 0), GH_H2_MALFORMED);
    const char *const cl_es[] = {BASE, "content-length", "5", NULL};
    CHECK_INT(convert(cl_es, 1), GH_H2_MALFORMED);
    const char *const cl_zero[] = {BASE, "content-length", "0", NULL};
    CHECK_INT(convert(cl_zero, 1), 0);

    unit_case("expect other than 100-continue: 417");
    const char *const expect[] = {BASE, "expect", "200-ok", NULL};
    CHECK_INT(convert(expect, 0), -417);
}

static void limits(void)
{
    char big[600];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';

    unit_case("the header list limit (name + value + 32 per field) answers 431, and later fields are dropped");
    const char *const f[] = {BASE, "a", big, "b", big, NULL};
    CHECK_INT(build(f, 1024), GH_H2_TOO_LARGE);
    CHECK_INT(gh_h2_head_request(&head, 1, &req), GH_H2_TOO_LARGE);
    CHECK(head.list_size > 1200); /* still counted: the HPACK bomb bound is on this */
    CHECK(head.len <= 1024);

    unit_case("more fields than an HTTP/1.1 head may carry: 431");
    gh_h2_head_dispose(&head);
    gh_h2_head_init(&head, 1 << 20);
    const char *const base[] = {BASE, NULL};
    for (size_t i = 0; base[i] != NULL; i += 2)
        gh_h2_head_add(&head, (const uint8_t *)base[i], strlen(base[i]), (const uint8_t *)base[i + 1],
                       strlen(base[i + 1]));
    for (int i = 0; i < GH_H1_MAX_HEADERS + 1; i++)
        gh_h2_head_add(&head, (const uint8_t *)"x-n", 3, (const uint8_t *)"1", 1);
    CHECK_INT(gh_h2_head_request(&head, 1, &req), GH_H2_TOO_LARGE);
    gh_h2_head_dispose(&head);
}

/* The same fields as convert(), on a forward proxy's stream (h->absolute). */
static int convert_fwd(const char *const *f, int end_stream)
{
    int r = build(f, 65536);
    head.absolute = 1;
    return r != 0 ? r : gh_h2_head_request(&head, end_stream, &req);
}

static void forward(void)
{
    unit_case("a forward proxy's stream: :scheme + :authority + :path become absolute-form (RFC 9113 8.3.1)");
    const char *const get[] = {
        ":method", "GET", ":scheme", "http", ":authority",          "origin.example:8080", ":path", "/a?b=1",
        "cookie",  "x=1", "cookie",  "y=2",  "proxy-authorization", "Basic YTpi",          NULL};
    CHECK_INT(convert_fwd(get, 1), 0);
    CHECK_INT(req.target_form, GH_H1_ABSOLUTE_FORM);
    CHECK_MEM(req.target.p, req.target.len, "http://origin.example:8080/a?b=1");
    CHECK_MEM(req.authority.p, req.authority.len, "origin.example:8080");
    CHECK_MEM(req.path.p, req.path.len, "/a?b=1");
    CHECK_MEM(req.host.p, req.host.len, "origin.example:8080");
    CHECK_INT(req.nheaders, 2);
    CHECK_MEM(req.headers[0].value.p, req.headers[0].value.len, "x=1; y=2"); /* slices retaken after the join */
    CHECK_INT(req.headers[1].kind, GH_HDR_PROXY_AUTHORIZATION);
    CHECK_INT(req.headers[1].hop, 1); /* consumed by the proxy, never forwarded */

    unit_case("https keeps its scheme (forward.c refuses it as for HTTP/1.1: 501)");
    const char *const tls[] = {":method", "GET", ":scheme", "https", ":authority", "o.example", ":path", "/", NULL};
    CHECK_INT(convert_fwd(tls, 1), 0);
    CHECK_MEM(req.target.p, req.target.len, "https://o.example/");

    unit_case("without :authority (Host only), or OPTIONS *: not absolute-form (forward.c answers 400)");
    const char *const host[] = {":method", "GET", ":scheme", "http", ":path", "/", "host", "o.example", NULL};
    CHECK_INT(convert_fwd(host, 1), 0);
    CHECK_INT(req.target_form, GH_H1_ORIGIN_FORM);
    const char *const star[] = {":method", "OPTIONS", ":scheme", "http", ":authority", "o", ":path", "*", NULL};
    CHECK_INT(convert_fwd(star, 1), 0);
    CHECK_INT(req.target_form, GH_H1_ASTERISK_FORM);

    unit_case("CONNECT stays authority-form on a forward proxy's stream");
    const char *const con[] = {":method", "CONNECT", ":authority", "o.example:443", NULL};
    CHECK_INT(convert_fwd(con, 0), 0);
    CHECK_INT(req.target_form, GH_H1_AUTHORITY_FORM);
    CHECK_MEM(req.authority.p, req.authority.len, "o.example:443");

    unit_case("the reverse proxy's streams are unchanged: origin-form");
    CHECK_INT(convert(get, 1), 0);
    CHECK_INT(req.target_form, GH_H1_ORIGIN_FORM);
    CHECK_MEM(req.target.p, req.target.len, "/a?b=1");
}

void suite_h2_head(void)
{
    good();
    malformed();
    connect_forms();
    limits();
    forward();
}
