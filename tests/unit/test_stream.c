/*
 * stream: the pure parts of TCP stream services: the ClientHello's SNI (tls/hello.h)
 * on real hellos made by OpenSSL (whole, cut anywhere, split across records,
 * damaged), the PostgreSQL client's first message and ErrorResponse (proxy/pg.h), and
 * the answers of the protocol health probes (health/check.h).
 */
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "health/check.h"
#include "proxy/pg.h"
#include "tls/hello.h"
#include "unit.h"

/* The first flight of an OpenSSL client (a ClientHello record) for this SNI (NULL: none); its length. */
static size_t client_hello(const char *sni, unsigned char *out, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    int n;

    SSL_set_bio(ssl, rb, wb);
    if (sni != NULL)
        SSL_set_tlsext_host_name(ssl, sni);
    SSL_set_connect_state(ssl);
    SSL_do_handshake(ssl); /* wants to read: the hello is in wb */
    n = BIO_read(wb, out, (int)cap);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return n > 0 ? (size_t)n : 0;
}

/* The same hello as two records: the handshake message cut after `at` bytes (RFC 8446 5.1 allows it). */
static size_t split_records(const unsigned char *in, size_t n, size_t at, unsigned char *out)
{
    size_t body = n - 5, rest = body - at;

    memcpy(out, in, 5);
    out[3] = (unsigned char)(at >> 8);
    out[4] = (unsigned char)at;
    memcpy(out + 5, in + 5, at);
    memcpy(out + 5 + at, in, 5);
    out[5 + at + 3] = (unsigned char)(rest >> 8);
    out[5 + at + 4] = (unsigned char)rest;
    memcpy(out + 10 + at, in + 5 + at, rest);
    return n + 5;
}

static void hello_cases(void)
{
    static unsigned char h[4096], two[4096 + 5], big[GH_TLS_HELLO_MAX + 64];
    char sni[GH_TLS_SNI_MAX];
    size_t n = client_hello("DB.Example.com", h, sizeof(h)), bad = 0;

    unit_case("a whole ClientHello");
    CHECK(n > 100);
    CHECK_INT(gh_tls_hello_sni(h, n, sni, sizeof(sni)), GH_OK);
    CHECK(strcmp(sni, "db.example.com") == 0);

    unit_case("every cut before its end asks for more");
    for (size_t k = 0; k < n; k++)
        bad += gh_tls_hello_sni(h, k, sni, sizeof(sni)) != GH_AGAIN;
    CHECK_INT(bad, 0);

    unit_case("split across two records, at any point");
    bad = 0;
    for (size_t at = 1; at < n - 5; at += 7) {
        size_t m = split_records(h, n, at, two);
        bad += gh_tls_hello_sni(two, m, sni, sizeof(sni)) != GH_OK || strcmp(sni, "db.example.com") != 0;
    }
    CHECK_INT(bad, 0);

    unit_case("no server_name: OK with an empty name");
    n = client_hello(NULL, h, sizeof(h));
    CHECK_INT(gh_tls_hello_sni(h, n, sni, sizeof(sni)), GH_OK);
    CHECK_INT(strlen(sni), 0);

    unit_case("not TLS");
    CHECK_INT(gh_tls_hello_sni((const unsigned char *)"GET / HTTP/1.1\r\n", 16, sni, sizeof(sni)), GH_ERROR);
    CHECK_INT(gh_tls_hello_sni((const unsigned char *)"\x00\x00\x00\x08\x04\xd2\x16\x2f", 8, sni, sizeof(sni)),
              GH_ERROR);

    unit_case("an alert record, not a handshake");
    n = client_hello("a.test", h, sizeof(h));
    h[0] = 21;
    CHECK_INT(gh_tls_hello_sni(h, n, sni, sizeof(sni)), GH_ERROR);
    h[0] = 22;

    unit_case("a ServerHello type in the record");
    h[5] = 2;
    CHECK_INT(gh_tls_hello_sni(h, n, sni, sizeof(sni)), GH_ERROR);
    h[5] = 1;

    unit_case("every length byte damaged: an error or a wait, never a read past the end");
    bad = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char save = h[k];
        int rc;

        h[k] = 0xff;
        rc = gh_tls_hello_sni(h, n, sni, sizeof(sni));
        bad += rc != GH_OK && rc != GH_AGAIN && rc != GH_ERROR;
        bad += rc == GH_OK && strlen(sni) >= GH_TLS_SNI_MAX;
        h[k] = save;
    }
    CHECK_INT(bad, 0);

    unit_case("records beyond the bound are refused, not waited for");
    memset(big, 0, sizeof(big));
    for (size_t at = 0; at + 5 + 16384 <= sizeof(big); at += 5 + 16384) {
        big[at] = 22;
        big[at + 1] = 3;
        big[at + 3] = 0x40; /* 16384 */
    }
    big[5] = 1;
    big[6] = 0x01; /* a handshake of 64 KiB: more than one record's worth */
    CHECK_INT(gh_tls_hello_sni(big, sizeof(big), sni, sizeof(sni)), GH_ERROR);

    unit_case("a name that is not a host name");
    n = client_hello("bad name", h, sizeof(h));
    CHECK_INT(gh_tls_hello_sni(h, n, sni, sizeof(sni)), GH_ERROR);
}

static void pg_cases(void)
{
    const unsigned char ssl_req[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    const unsigned char gss_req[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30};
    const unsigned char startup[] = {0, 0, 0, 9, 0, 3, 0, 0, 0};
    const unsigned char cancel[] = {0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e};
    const unsigned char junk[] = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
    char out[256];
    size_t n;

    unit_case("the client's first message");
    CHECK_INT(gh_pg_first(ssl_req, 0), GH_PG_MORE);
    CHECK_INT(gh_pg_first(ssl_req, 7), GH_PG_MORE);
    CHECK_INT(gh_pg_first(ssl_req, 8), GH_PG_SSL_REQUEST);
    CHECK_INT(gh_pg_first(gss_req, 8), GH_PG_GSS_REQUEST);
    CHECK_INT(gh_pg_first(startup, 8), GH_PG_STARTUP);
    CHECK_INT(gh_pg_first(cancel, 8), GH_PG_STARTUP);
    CHECK_INT(gh_pg_first((const unsigned char *)"\x16\x03\x01", 1), GH_PG_TLS);
    CHECK_INT(gh_pg_first(junk, 8), GH_PG_INVALID);

    unit_case("an ErrorResponse libpq can show");
    n = gh_pg_error(out, sizeof(out), "28000", "needs TLS");
    /* 'E', int32 length (without the type byte), S V C M fields, a final NUL */
    CHECK_INT(n, 1 + 4 + 7 + 7 + 7 + 11 + 1);
    CHECK(out[0] == 'E');
    CHECK_INT(((unsigned)(unsigned char)out[3] << 8 | (unsigned char)out[4]), n - 1);
    CHECK(memcmp(out + 5, "SFATAL\0VFATAL\0C28000\0Mneeds TLS\0\0", n - 5) == 0);
    CHECK_INT(gh_pg_error(out, 20, "28000", "needs TLS"), 0);
    CHECK_INT(gh_pg_error(out, sizeof(out), "2800", "x"), 0);
}

static void probe_cases(void)
{
    unit_case("postgres probe: 'S' or 'N' is alive");
    CHECK_INT(gh_health_pg_answer("", 0), 0);
    CHECK_INT(gh_health_pg_answer("S", 1), 1);
    CHECK_INT(gh_health_pg_answer("N", 1), 1);
    CHECK_INT(gh_health_pg_answer("E\0\0", 3), -1);
    CHECK_INT(gh_health_pg_answer("HTTP/1.1", 8), -1);

    unit_case("redis probe: +PONG, or -NOAUTH");
    CHECK_INT(gh_health_redis_answer("+PO", 3), 0);
    CHECK_INT(gh_health_redis_answer("+PONG\r\n", 7), 1);
    CHECK_INT(gh_health_redis_answer("-NOAUTH Authentication required.\r\n", 34), 1);
    CHECK_INT(gh_health_redis_answer("-LOADING Redis is loading\r\n", 27), -1);
    CHECK_INT(gh_health_redis_answer("-", 1), 0);
    CHECK_INT(gh_health_redis_answer("+OK\r\n", 5), -1);
}

void suite_stream(void)
{
    hello_cases();
    pg_cases();
    probe_cases();
}
