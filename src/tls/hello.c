/*
 * hello: the ClientHello's server_name, parsed by hand and bounded (see hello.h).
 * Layout: RFC 8446 4.1.2 (and 5.1 for records), RFC 6066 3 for the extension.
 */
#include "tls/hello.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "core/common.h"

#define REC_HANDSHAKE   22
#define HS_CLIENT_HELLO 1
#define EXT_SERVER_NAME 0
#define SNI_HOST_NAME   0
#define REC_HEADER      5
#define HS_HEADER       4

/* A reader over a byte range that fails (and stays failed) instead of running past its end. */
typedef struct rd {
    const unsigned char *p;
    size_t left;
    int bad;
} rd;

static unsigned get(rd *r, size_t width)
{
    unsigned v = 0;

    if (r->bad || r->left < width) {
        r->bad = 1;
        return 0;
    }
    for (size_t i = 0; i < width; i++)
        v = v << 8 | r->p[i];
    r->p += width;
    r->left -= width;
    return v;
}

static rd sub(rd *r, size_t len)
{
    rd s = {r->p, len, r->bad || r->left < len};

    if (s.bad) {
        r->bad = 1;
        s.left = 0;
        return s;
    }
    r->p += len;
    r->left -= len;
    return s;
}

/* A host name: letters, digits, '-', '_', '.'; kept lowercase without a trailing dot. GH_OK or GH_ERROR. */
static int copy_name(rd name, char *sni, size_t cap)
{
    size_t len = name.left;

    if (len > 0 && name.p[len - 1] == '.')
        len--;
    if (len == 0 || len >= cap || len >= GH_TLS_SNI_MAX)
        return GH_ERROR;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = name.p[i];

        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return GH_ERROR;
        sni[i] = (char)tolower(c);
    }
    sni[len] = '\0';
    return GH_OK;
}

/* The body of a whole ClientHello message. */
static int parse_hello(rd h, char *sni, size_t cap)
{
    rd ext;

    get(&h, 2);          /* legacy_version */
    sub(&h, 32);         /* random */
    sub(&h, get(&h, 1)); /* legacy_session_id */
    sub(&h, get(&h, 2)); /* cipher_suites */
    sub(&h, get(&h, 1)); /* legacy_compression_methods */
    if (h.bad)
        return GH_ERROR;
    sni[0] = '\0';
    if (h.left == 0)
        return GH_OK; /* no extensions at all (an old client): no name */
    ext = sub(&h, get(&h, 2));
    while (!ext.bad && ext.left > 0) {
        unsigned type = get(&ext, 2);
        rd body = sub(&ext, get(&ext, 2));

        if (type != EXT_SERVER_NAME)
            continue;
        rd list = sub(&body, get(&body, 2));
        while (!list.bad && list.left > 0) {
            unsigned kind = get(&list, 1);
            rd name = sub(&list, get(&list, 2));

            if (!list.bad && kind == SNI_HOST_NAME)
                return copy_name(name, sni, cap);
        }
        return GH_ERROR; /* a server_name extension without a host_name */
    }
    return ext.bad ? GH_ERROR : GH_OK;
}

int gh_tls_hello_sni(const unsigned char *p, size_t n, char *sni, size_t cap)
{
    unsigned char msg[GH_TLS_HELLO_MAX];
    size_t got = 0, want = 0, at = 0;

    if (cap < GH_TLS_SNI_MAX)
        return GH_ERROR;
    /* The handshake message may span records: their payloads are joined until it is whole. */
    for (;;) {
        if (n - at < REC_HEADER)
            return n >= GH_TLS_HELLO_MAX ? GH_ERROR : GH_AGAIN;
        size_t len = (size_t)p[at + 3] << 8 | p[at + 4];
        /* RFC 8446 5.1: a handshake record, legacy_record_version 0x03xx, never empty */
        if (p[at] != REC_HANDSHAKE || p[at + 1] != 3 || len == 0 || len > 16384)
            return GH_ERROR;
        if (n - at - REC_HEADER < len)
            return at + REC_HEADER + len > GH_TLS_HELLO_MAX ? GH_ERROR : GH_AGAIN;
        if (got + len > sizeof(msg))
            return GH_ERROR;
        memcpy(msg + got, p + at + REC_HEADER, len);
        got += len;
        at += REC_HEADER + len;
        if (want == 0 && got >= HS_HEADER) {
            if (msg[0] != HS_CLIENT_HELLO)
                return GH_ERROR;
            want = HS_HEADER + ((size_t)msg[1] << 16 | (size_t)msg[2] << 8 | msg[3]);
            if (want > sizeof(msg))
                return GH_ERROR;
        }
        if (want != 0 && got >= want)
            return parse_hello((rd){msg + HS_HEADER, want - HS_HEADER, 0}, sni, cap);
        if (at >= GH_TLS_HELLO_MAX)
            return GH_ERROR;
    }
}
