/*
 * pg: what a stream service of protocol postgres must know of the PostgreSQL
 * wire protocol (protocol 3, "Message Flow: Start-up" and "SSL Session
 * Encryption"): the client's first message, and an ErrorResponse to refuse it.
 * Pure: the I/O is in stream.c.
 *
 * A client opens with one of: an SSLRequest (8 bytes: length 8, code
 * 80877103) to which the server answers one byte, 'S' (TLS follows) or 'N';
 * a GSSENCRequest (code 80877104), answered 'N' here, after which the client
 * sends an SSLRequest or a StartupMessage; a CancelRequest (code 80877102,
 * 16 bytes); a StartupMessage (protocol 3.x, the start of a plaintext
 * session); or, from PostgreSQL 17 with sslnegotiation=direct, a TLS
 * ClientHello at once (ALPN "postgresql").
 */
#ifndef GH_PROXY_PG_H
#define GH_PROXY_PG_H

#include <stddef.h>

enum gh_pg_first {
    GH_PG_MORE = 0,    /* fewer bytes than the message needs */
    GH_PG_TLS,         /* a TLS record: direct TLS */
    GH_PG_SSL_REQUEST, /* answer 'S', then TLS */
    GH_PG_GSS_REQUEST, /* answer 'N', then read the next message */
    GH_PG_STARTUP,     /* a plaintext session (or a CancelRequest): refused unless allowed */
    GH_PG_INVALID,     /* not PostgreSQL */
};

/* The length of the requests gatehouse consumes itself (SSLRequest, GSSENCRequest). */
#define GH_PG_REQUEST_LEN 8

/* What the client's first n bytes are (enum gh_pg_first). */
int gh_pg_first(const unsigned char *p, size_t n);

/*
 * A FATAL ErrorResponse (message 'E') with SQLSTATE `code` (5 characters) and
 * the message text into out: its length, or 0 when it does not fit. libpq
 * shows the text to the user, where silence would read as a network failure.
 */
size_t gh_pg_error(char *out, size_t cap, const char *code, const char *msg);

#endif
