/*
 * pg: the PostgreSQL client's first message and an ErrorResponse (see pg.h).
 */
#include "proxy/pg.h"

#include <stdint.h>
#include <string.h>

#define SSL_REQUEST_CODE 80877103u
#define GSS_REQUEST_CODE 80877104u
#define CANCEL_CODE      80877102u
#define PROTOCOL_3       3u     /* major version in the high 16 bits of a StartupMessage's code */
#define STARTUP_MAX      10000u /* the server's own bound on a startup packet (MAX_STARTUP_PACKET_LENGTH) */
#define TLS_HANDSHAKE    0x16

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int gh_pg_first(const unsigned char *p, size_t n)
{
    uint32_t len, code;

    if (n == 0)
        return GH_PG_MORE;
    /* A StartupMessage's length starts with 0 (it is below 10000): a first byte 0x16 is TLS. */
    if (p[0] == TLS_HANDSHAKE)
        return GH_PG_TLS;
    if (n < 8)
        return GH_PG_MORE;
    len = be32(p);
    code = be32(p + 4);
    if (len == GH_PG_REQUEST_LEN && code == SSL_REQUEST_CODE)
        return GH_PG_SSL_REQUEST;
    if (len == GH_PG_REQUEST_LEN && code == GSS_REQUEST_CODE)
        return GH_PG_GSS_REQUEST;
    if (len == 16 && code == CANCEL_CODE)
        return GH_PG_STARTUP;
    if (len >= 8 && len <= STARTUP_MAX && code >> 16 == PROTOCOL_3)
        return GH_PG_STARTUP;
    return GH_PG_INVALID;
}

static size_t put_field(char *out, size_t cap, size_t at, char type, const char *s)
{
    size_t len = strlen(s);

    if (at == 0 || cap - at < len + 2)
        return 0;
    out[at] = type;
    memcpy(out + at + 1, s, len + 1);
    return at + len + 2;
}

size_t gh_pg_error(char *out, size_t cap, const char *code, const char *msg)
{
    size_t at = 5;
    uint32_t len;

    if (cap < 6 || strlen(code) != 5)
        return 0;
    out[0] = 'E';
    at = put_field(out, cap, at, 'S', "FATAL");
    at = put_field(out, cap, at, 'V', "FATAL");
    at = put_field(out, cap, at, 'C', code);
    at = put_field(out, cap, at, 'M', msg);
    if (at == 0 || at >= cap)
        return 0;
    out[at++] = '\0'; /* the end of the fields */
    len = (uint32_t)(at - 1);
    out[1] = (char)(len >> 24);
    out[2] = (char)(len >> 16);
    out[3] = (char)(len >> 8);
    out[4] = (char)len;
    return at;
}
