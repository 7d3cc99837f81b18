/* What crosses the proxy: the upstream request head and the client response head. */
#include <string.h>

#include "http/h1.h"
#include "proxy/proxy.h"
#include "unit.h"

static char out[4096];

static int upstream_head(const char *raw, const char *ip)
{
    static gh_h1_request r;
    int n = gh_h1_parse_request(raw, strlen(raw), &r);
    CHECK(n > 0);
    if (n <= 0)
        return -1;
    proxy__forward f = {.client_ip = ip, .fallback_host = "10.0.0.1:80", .tls = 1};
    return proxy__request_head(out, sizeof(out), &r, &f);
}

static void hop_by_hop_removed(void)
{
    unit_case("hop-by-hop headers and Connection-named ones are removed");
    int n = upstream_head("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Secret\r\n"
                          "Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Secret: 1\r\nUpgrade: h2c\r\n"
                          "Proxy-Authorization: Basic eA==\r\nProxy-Connection: close\r\nAccept: */*\r\n\r\n",
                          "192.0.2.7");
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
              "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: example.com\r\n"
              "Forwarded: for=192.0.2.7;proto=https;host=\"example.com\"\r\n\r\n");
}

static void forwarded_appended(void)
{
    unit_case("X-Forwarded-For and Forwarded are appended to, X-Forwarded-Proto/Host replaced");
    int n = upstream_head("POST /up HTTP/1.1\r\nHost: a.test:8443\r\nX-Forwarded-For: 1.2.3.4\r\n"
                          "X-Forwarded-For: 5.6.7.8\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: evil\r\n"
                          "Forwarded: for=1.2.3.4\r\nContent-Length: 3\r\n\r\n",
                          "2001:db8::1");
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "POST /up HTTP/1.1\r\nHost: a.test:8443\r\nContent-Length: 3\r\n"
              "X-Forwarded-For: 1.2.3.4, 5.6.7.8, 2001:db8::1\r\nX-Forwarded-Proto: https\r\n"
              "X-Forwarded-Host: a.test:8443\r\n"
              "Forwarded: for=1.2.3.4, for=\"[2001:db8::1]\";proto=https;host=\"a.test:8443\"\r\n\r\n");
}

static void chunked_and_absolute(void)
{
    unit_case("absolute-form: authority becomes Host; chunked body re-framed");
    int n = upstream_head("PUT http://b.test/x HTTP/1.1\r\nHost: b.test\r\nTransfer-Encoding: chunked\r\n\r\n",
                          "127.0.0.1");
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "PUT /x HTTP/1.1\r\nHost: b.test\r\nX-Forwarded-For: 127.0.0.1\r\n"
              "X-Forwarded-Proto: https\r\nX-Forwarded-Host: b.test\r\n"
              "Forwarded: for=127.0.0.1;proto=https;host=\"b.test\"\r\nTransfer-Encoding: chunked\r\n\r\n");
    unit_case("HTTP/1.0 without Host gets the server's address as Host");
    n = upstream_head("GET / HTTP/1.0\r\n\r\n", "127.0.0.1");
    CHECK(n > 0 && memcmp(out, "GET / HTTP/1.1\r\nHost: 10.0.0.1:80\r\n", 35) == 0);
}

static void too_large(void)
{
    static gh_h1_request r;
    const char *raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    unit_case("a head that does not fit is refused, not cut");
    CHECK(gh_h1_parse_request(raw, strlen(raw), &r) > 0);
    proxy__forward f = {.client_ip = "127.0.0.1", .fallback_host = "x", .tls = 1};
    CHECK_INT(proxy__request_head(out, 40, &r, &f), -1);
    unit_case("a plain-HTTP listener says proto http");
    f.tls = 0;
    int n = proxy__request_head(out, sizeof(out), &r, &f);
    CHECK(n > 0 && memmem(out, (size_t)n, "X-Forwarded-Proto: http\r\n", 25) != NULL);
    CHECK(n > 0 && memmem(out, (size_t)n, "for=127.0.0.1;proto=http;host=\"h\"", 33) != NULL);
}

static int upstream_head_ops(const char *raw, const gh_cfg_header_op *ops, size_t nops)
{
    static gh_h1_request r;
    static gh_cfg_route route;
    int n = gh_h1_parse_request(raw, strlen(raw), &r);
    CHECK(n > 0);
    if (n <= 0)
        return -1;
    route.req_ops = (gh_cfg_header_op *)ops;
    route.nreq_ops = nops;
    proxy__forward f = {.client_ip = "192.0.2.7", .fallback_host = "x", .tls = 1, .route = &route};
    return proxy__request_head(out, sizeof(out), &r, &f);
}

#define OP(kind, n, v)                                                                                                 \
    {                                                                                                                  \
        kind, {n, sizeof(n) - 1},                                                                                      \
        {                                                                                                              \
            v, sizeof(v) - 1                                                                                           \
        }                                                                                                              \
    }

static void request_header_set_host_adds_second_copy(void)
{
    static const gh_cfg_header_op set_all[] = {
        OP(GH_HEADER_SET, "host", "internal.svc"),     OP(GH_HEADER_SET, "X-Forwarded-For", "10.9.9.9"),
        OP(GH_HEADER_SET, "x-forwarded-proto", "wss"), OP(GH_HEADER_SET, "X-Forwarded-Host", "pub.example"),
        OP(GH_HEADER_SET, "Forwarded", "for=unknown"),
    };
    static const gh_cfg_header_op remove_fwd[] = {
        OP(GH_HEADER_REMOVE, "X-Forwarded-For", ""),
        OP(GH_HEADER_REMOVE, "forwarded", ""),
    };
    const char *raw = "GET /a HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: ftp\r\n"
                      "X-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\nAccept: */*\r\n\r\n";
    unit_case("request_header set Host / X-Forwarded-* / Forwarded: exactly one copy, the route's");
    int n = upstream_head_ops(raw, set_all, sizeof(set_all) / sizeof(set_all[0]));
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "GET /a HTTP/1.1\r\nAccept: */*\r\nhost: internal.svc\r\nX-Forwarded-For: 10.9.9.9\r\n"
              "x-forwarded-proto: wss\r\nX-Forwarded-Host: pub.example\r\nForwarded: for=unknown\r\n\r\n");
    unit_case("request_header remove X-Forwarded-For / Forwarded: none at all, not gatehouse's either");
    n = upstream_head_ops(raw, remove_fwd, sizeof(remove_fwd) / sizeof(remove_fwd[0]));
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "GET /a HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nX-Forwarded-Proto: https\r\n"
              "X-Forwarded-Host: a.test\r\n\r\n");
}

static void response_head(void)
{
    static gh_h1_response r;
    const char *raw = "HTTP/1.1 200 OK\r\nServer: origin\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\n"
                      "Keep-Alive: timeout=2\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n";
    unit_case("response: hop-by-hop removed, re-framed as chunked, Connection: close when closing");
    CHECK(gh_h1_parse_response(raw, strlen(raw), 0, &r) > 0);
    int n = proxy__response_head(out, sizeof(out), &r, 1, 1, NULL, 0);
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "HTTP/1.1 200 OK\r\nServer: origin\r\nContent-Type: text/plain\r\n"
              "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
}

static void error_page(void)
{
    unit_case("error pages are short, plain and closing");
    int n = proxy__error_response(out, sizeof(out), 502, 0);
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n"
              "Connection: close\r\n\r\n502 Bad Gateway\n");
    unit_case("the error page answering HEAD: the same head, no body (RFC 9110 9.3.2)");
    n = proxy__error_response(out, sizeof(out), 404, 1);
    CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0),
              "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n"
              "Connection: close\r\n\r\n");
}

void suite_headers(void)
{
    hop_by_hop_removed();
    forwarded_appended();
    chunked_and_absolute();
    too_large();
    request_header_set_host_adds_second_copy();
    response_head();
    error_page();
    unit_case(NULL);
}
