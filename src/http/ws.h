/*
 * ws: what an HTTP/1.1 head says about a WebSocket opening handshake
 * (RFC 6455 section 4), as pure functions over parsed heads. The proxy relays
 * the frames byte for byte once the server agreed (101); it only has to know
 * whether a request asks for WebSocket, whether it asks correctly, and whether
 * the answer switched protocols.
 */
#ifndef GH_HTTP_WS_H
#define GH_HTTP_WS_H

#include "http/h1.h"

enum gh_ws_request {
    GH_WS_NONE = 0,       /* not a WebSocket upgrade: any Upgrade (h2c...) is hop-by-hop and dropped */
    GH_WS_UPGRADE = 1,    /* a valid opening handshake: forwarded with Connection: Upgrade, Upgrade: websocket */
    GH_WS_BAD = -400,     /* asks for websocket but breaks RFC 6455 4.1 (method, version, key, a body) */
    GH_WS_VERSION = -426, /* Sec-WebSocket-Version missing or not 13: 426 with Sec-WebSocket-Version: 13 */
};

/*
 * Classifies a parsed request. It asks for WebSocket when a Connection header
 * has the "upgrade" option and an Upgrade header lists "websocket" (RFC 9110
 * 7.8: an Upgrade that Connection does not name is not an upgrade request).
 * Such a request is valid when it is a GET over HTTP/1.1 without a body, with
 * one Sec-WebSocket-Key that is the base64 of 16 bytes and one
 * Sec-WebSocket-Version: 13. Returns an enum gh_ws_request.
 */
int gh_ws_check_request(const gh_h1_request *r);

/*
 * 1 when a response switches a WebSocket request to the WebSocket protocol:
 * status 101 and an Upgrade header listing "websocket". Sec-WebSocket-Accept
 * is the client's to check (the proxy never changes the key).
 */
int gh_ws_check_response(const gh_h1_response *r);

/* 1 when the value is the base64 encoding of exactly 16 bytes (RFC 6455 4.1, item 7). */
int gh_ws_key_valid(gh_h1_str key);

/*
 * For a WebSocket over HTTP/2 (RFC 8441 5: its client sends no key and gets no
 * accept), the proxy speaks the HTTP/1.1 handshake upstream itself: a fresh
 * Sec-WebSocket-Key (16 random bytes, base64: 24 characters and a NUL in
 * out[GH_WS_KEY_LEN + 1]), 0 or -1 when no randomness is to be had; and the
 * Sec-WebSocket-Accept a server must answer it with (RFC 6455 4.2.2 item 5.4:
 * base64 of SHA-1 of key + the GUID; 28 characters and a NUL in
 * out[GH_WS_ACCEPT_LEN + 1]), 0 or -1.
 */
#define GH_WS_KEY_LEN    24
#define GH_WS_ACCEPT_LEN 28
int gh_ws_key_new(char *out);
int gh_ws_accept(gh_h1_str key, char *out);

/* 1 when the comma-separated list v has an element equal to the lowercase token tok (case-insensitive). */
int gh_ws_list_has(gh_h1_str v, const char *tok);

#endif
