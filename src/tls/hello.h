/*
 * hello: reads the server name (SNI, RFC 6066 3) from the first bytes of a
 * TLS connection without taking part in it: a stream listener routes by it,
 * and a passthrough service relays the very bytes it read to a backend that
 * terminates TLS itself. Pure: no I/O, no OpenSSL (the bytes are peeked from
 * the socket, so they stay there for whoever handles the connection next).
 */
#ifndef GH_TLS_HELLO_H
#define GH_TLS_HELLO_H

#include <stddef.h>

/*
 * At most this many bytes of records are read for a ClientHello: one record's
 * worth (RFC 8446 5.1: 2^14 bytes of plaintext), with its header. A hello
 * split into several records is put back together within this bound. A
 * client that sends more (none does: post-quantum key shares make ~1.8 KiB)
 * is refused rather than buffered without end.
 */
#define GH_TLS_HELLO_MAX (16384 + 5)

/* Longest name kept (RFC 1035 2.3.4: 255 octets). */
#define GH_TLS_SNI_MAX 256

/*
 * Looks at the first n bytes the client sent. GH_OK with the name in sni
 * (lowercase, without a trailing dot; "" when the hello has no server_name)
 * once the whole ClientHello is there; GH_AGAIN when more bytes are needed
 * (fewer than GH_TLS_HELLO_MAX so far); GH_ERROR when these are not the
 * records of a TLS ClientHello, it is malformed, too large, or its name is
 * not a host name (cap must be >= GH_TLS_SNI_MAX).
 */
int gh_tls_hello_sni(const unsigned char *p, size_t n, char *sni, size_t cap);

#endif
