/* ws: the WebSocket opening handshake as the proxy judges it (RFC 6455 section 4). */
#include "http/ws.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * List elements are tokens, maybe with "/version" (Upgrade, RFC 9110 7.8) or
 * parameters we do not look at: an element is what lies between commas, with
 * its whitespace trimmed, compared whole.
 */
int gh_ws_list_has(gh_h1_str v, const char *tok)
{
    size_t i = 0;

    while (i < v.len) {
        size_t start, end;

        while (i < v.len && (v.p[i] == ',' || is_ows(v.p[i])))
            i++;
        start = i;
        while (i < v.len && v.p[i] != ',')
            i++;
        for (end = i; end > start && is_ows(v.p[end - 1]); end--)
            ;
        if (end > start && gh_h1_str_ieq((gh_h1_str){v.p + start, end - start}, tok))
            return 1;
    }
    return 0;
}

static int is_b64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 16 bytes are 24 characters: 21 full ones, one whose low 4 bits are zero, then "==". */
int gh_ws_key_valid(gh_h1_str key)
{
    static const char last[] = "AQgw"; /* the characters with zero low bits, as a 16th byte ends */

    if (key.len != 24 || key.p[22] != '=' || key.p[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; i++)
        if (!is_b64(key.p[i]))
            return 0;
    return memchr(last, key.p[21], 4) != NULL;
}

static int is_named(gh_h1_str name, const char *lower)
{
    return gh_h1_str_ieq(name, lower);
}

int gh_ws_check_request(const gh_h1_request *r)
{
    int conn_upgrade = 0, wants = 0;
    unsigned nkey = 0, nversion = 0;
    gh_h1_str key = {"", 0}, version = {"", 0};

    if (!(r->flags & GH_H1_F_UPGRADE))
        return GH_WS_NONE;
    for (size_t i = 0; i < r->nheaders; i++) {
        const gh_h1_header *h = &r->headers[i];
        if (h->kind == GH_HDR_CONNECTION)
            conn_upgrade |= gh_ws_list_has(h->value, "upgrade");
        else if (h->kind == GH_HDR_UPGRADE)
            wants |= gh_ws_list_has(h->value, "websocket");
        else if (is_named(h->name, "sec-websocket-key"))
            nkey++, key = h->value;
        else if (is_named(h->name, "sec-websocket-version"))
            nversion++, version = h->value;
    }
    if (!conn_upgrade || !wants)
        return GH_WS_NONE;
    /* RFC 6455 4.1: GET, HTTP/1.1 at least; a body would be read by nobody once the protocol switched. */
    if (r->method.len != 3 || memcmp(r->method.p, "GET", 3) != 0 || r->minor != 1)
        return GH_WS_BAD;
    if (r->body == GH_H1_BODY_CHUNKED || (r->body == GH_H1_BODY_LENGTH && r->content_length > 0))
        return GH_WS_BAD;
    if (nkey != 1 || !gh_ws_key_valid(key) || nversion > 1)
        return GH_WS_BAD;
    /* RFC 6455 4.2.2: a version the server does not speak gets 426 and the versions it does. */
    if (nversion == 0 || version.len != 2 || memcmp(version.p, "13", 2) != 0)
        return GH_WS_VERSION;
    return GH_WS_UPGRADE;
}

int gh_ws_check_response(const gh_h1_response *r)
{
    if (r->status != 101)
        return 0;
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].kind == GH_HDR_UPGRADE && gh_ws_list_has(r->headers[i].value, "websocket"))
            return 1;
    return 0;
}

int gh_ws_key_new(char *out)
{
    unsigned char raw[16];

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw)) == GH_WS_KEY_LEN ? 0 : -1;
}

int gh_ws_accept(gh_h1_str key, char *out)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"; /* RFC 6455 1.3 */
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, key.p, key.len) == 1 && EVP_DigestUpdate(ctx, guid, sizeof(guid) - 1) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20;

    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -1;
    return EVP_EncodeBlock((unsigned char *)out, md, 20) == GH_WS_ACCEPT_LEN ? 0 : -1;
}
