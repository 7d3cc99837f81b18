/* ws: the WebSocket opening handshake as the proxy judges it (RFC 6455 4.1, 4.2.2). */
#include <stdio.h>
#include <string.h>

#include "http/ws.h"
#include "unit.h"

static gh_h1_request req;
static gh_h1_response res;

/* Classifies a request head, or returns 1000 + the parser's answer when it does not parse. */
static int classify(const char *head)
{
    int n = gh_h1_parse_request(head, strlen(head), &req);
    return n > 0 ? gh_ws_check_request(&req) : 1000 + n;
}

#define KEY "dGhlIHNhbXBsZSBub25jZQ==" /* RFC 6455 1.3's example */

static void requests(void)
{
    char head[1024];

    unit_case("RFC 6455 1.2's example handshake is an upgrade");
    CHECK_INT(classify("GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: " KEY "\r\nOrigin: http://example.com\r\n"
                       "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_UPGRADE);

    unit_case("tokens are case-insensitive and may sit in a list (Firefox: keep-alive, Upgrade)");
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_UPGRADE);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, websocket\r\nConnection: upgrade\r\n"
                       "Connection: x\r\nSec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_UPGRADE);

    unit_case("no Upgrade, or one Connection does not name, or another protocol: a plain request");
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), GH_WS_NONE);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Key: " KEY
                       "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_NONE);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                       "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"),
              GH_WS_NONE);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocketx\r\n\r\n"), GH_WS_NONE);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgraded\r\nUpgrade: websocket\r\n\r\n"), GH_WS_NONE);

    unit_case("not GET, HTTP/1.0, or a body: 400");
    CHECK_INT(classify("POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_BAD);
    CHECK_INT(classify("GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_BAD);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Content-Length: 5\r\nSec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_BAD);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Content-Length: 0\r\nSec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_UPGRADE);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Transfer-Encoding: chunked\r\nSec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_BAD);

    unit_case("a missing, repeated or malformed key: 400");
    static const char *const bad_keys[] = {
        "",                          /* empty */
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "dGhlIHNhbXBsZSBub25jZR==",  /* low bits set in the last character: not 16 bytes exactly */
        "dGhlIHNhbXBsZSBub25j*Q==",  /* not base64 */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* no padding: 18 bytes */
    };
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        snprintf(head, sizeof(head),
                 "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 bad_keys[i]);
        unit_case("key \"%s\"", bad_keys[i]);
        CHECK_INT(classify(head), GH_WS_BAD);
    }
    unit_case("no key, two keys");
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_BAD);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"),
              GH_WS_BAD);

    unit_case("a version other than 13, or none: 426");
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n"),
              GH_WS_VERSION);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 130\r\n\r\n"),
              GH_WS_VERSION);
    CHECK_INT(classify("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: " KEY "\r\n\r\n"),
              GH_WS_VERSION);
}

static int switched(const char *head)
{
    int n = gh_h1_parse_response(head, strlen(head), 0, &res);
    return n > 0 ? gh_ws_check_response(&res) : -1;
}

static void responses(void)
{
    unit_case("101 with Upgrade: websocket switches");
    CHECK_INT(switched("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"),
              1);
    CHECK_INT(switched("HTTP/1.1 101 OK\r\nUpgrade: WebSocket\r\n\r\n"), 1);
    unit_case("101 to another protocol, or without Upgrade, does not");
    CHECK_INT(switched("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"), 0);
    CHECK_INT(switched("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"), 0);
    unit_case("any other status does not, even with Upgrade");
    CHECK_INT(switched("HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n"), 0);
    CHECK_INT(switched("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"), 0);
}

static void lists(void)
{
    unit_case("list elements compared whole, whitespace and empty elements skipped");
    CHECK_INT(gh_ws_list_has((gh_h1_str){" , Upgrade ,", 12}, "upgrade"), 1);
    CHECK_INT(gh_ws_list_has((gh_h1_str){"upgrade2", 8}, "upgrade"), 0);
    CHECK_INT(gh_ws_list_has((gh_h1_str){"", 0}, "upgrade"), 0);
    CHECK_INT(gh_ws_list_has((gh_h1_str){"a,\tupgrade", 10}, "upgrade"), 1);
}

static void keys(void)
{
    char key[GH_WS_KEY_LEN + 1], key2[GH_WS_KEY_LEN + 1], acc[GH_WS_ACCEPT_LEN + 1];

    unit_case("RFC 6455 1.3: the accept of the sample key");
    CHECK_INT(gh_ws_accept((gh_h1_str){"dGhlIHNhbXBsZSBub25jZQ==", 24}, acc), 0);
    CHECK_MEM(acc, strlen(acc), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");

    unit_case("a key of ours is a valid one (16 bytes, base64), and a fresh one each time");
    CHECK_INT(gh_ws_key_new(key), 0);
    CHECK_INT(gh_ws_key_new(key2), 0);
    CHECK_INT((int)strlen(key), GH_WS_KEY_LEN);
    CHECK_INT(gh_ws_key_valid((gh_h1_str){key, strlen(key)}), 1);
    CHECK(strcmp(key, key2) != 0);
}

void suite_ws(void)
{
    requests();
    responses();
    lists();
    keys();
}
