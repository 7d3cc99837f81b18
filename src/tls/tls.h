/*
 * tls: everything that touches OpenSSL. The rest of gatehouse sees a context
 * (certificates, policy, ticket keys) and a transport (net/conn.h) whose ops
 * are a nonblocking TLS session; no other file includes OpenSSL headers.
 *
 * Policy: TLS 1.2 and 1.3 only; AEAD ciphers with forward secrecy only
 * (ECDHE + AES-GCM / ChaCha20-Poly1305); groups X25519, P-256 and P-384;
 * server cipher order; no renegotiation, no compression; session tickets for
 * resumption, under keys that rotate (tickets.h).
 */
#ifndef GH_TLS_TLS_H
#define GH_TLS_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "net/conn.h"

typedef struct gh_tls_ctx gh_tls_ctx; /* owned by the master, inherited by workers */

/* A certificate chain and its key as PEM bytes (not NUL-terminated); the names are for errors only. */
typedef struct gh_tls_pem {
    const char *cert_name, *key_name;
    const void *cert, *key;
    size_t cert_len, key_len;
} gh_tls_pem;

/*
 * Maps the session ticket keys that every process of this tree shares: call it
 * once in the master before forking (gh_shared_init does). 0, or -1 with errno.
 */
int gh_tls_tickets_init(void);

/*
 * A list of ALPN protocol names in wire format (RFC 7301 3.1: each name
 * prefixed by its length), in the server's order of preference; a listener's.
 */
typedef struct gh_tls_alpn {
    const unsigned char *p;
    size_t len;
} gh_tls_alpn;

extern const gh_tls_alpn gh_tls_alpn_http11; /* {"http/1.1"}: the default */

/*
 * Builds a server context with gatehouse's policy for the
 * names of one site: up to 8 certificate chains and keys of different key
 * types (ECDSA and RSA side by side; the client's signature algorithms choose),
 * from PEM bytes in memory: the master reads the files once and every worker
 * builds its contexts from the same bytes, opening nothing (DESIGN.md, Reload).
 * Returns NULL with a one-line reason in err (not a certificate, key does not
 * match...; files named by cert_name/key_name) and, if failed is not NULL, the
 * index of the pair at fault in *failed. An encrypted key is refused: nothing
 * may wait for a passphrase.
 */
gh_tls_ctx *gh_tls_ctx_new_pem(const gh_tls_pem *pairs, size_t n, size_t *failed, char *err, size_t errlen);

#define GH_TLS_DIGEST_LEN 32

/* SHA-256 over the pairs' bytes: two contexts built from the same bytes are the same. */
void gh_tls_pem_digest(const gh_tls_pem *pairs, size_t n, unsigned char out[GH_TLS_DIGEST_LEN]);

/*
 * ctx with one more reference when it was built from PEM bytes of this digest
 * and has no SNI hook (a hook belongs to one runtime's listener); else NULL.
 * A reload then shares the contexts of unchanged certificates instead of
 * parsing them again in every worker's loop. gh_tls_ctx_free drops one reference.
 */
gh_tls_ctx *gh_tls_ctx_share(gh_tls_ctx *ctx, const unsigned char digest[GH_TLS_DIGEST_LEN]);

/*
 * Makes `def` the context of a listener whose sessions pick their certificate
 * by SNI: select(arg, name) returns the context for a name, or NULL to keep
 * the default. Returns 0 or -1 (out of memory).
 */
int gh_tls_ctx_set_sni(gh_tls_ctx *def, gh_tls_ctx *(*select)(void *arg, const char *name), void *arg);

/* Drops a reference; the last one frees the context. NULL is a no-op. */
void gh_tls_ctx_free(gh_tls_ctx *ctx);

/*
 * Makes c a server-side TLS connection on a connected nonblocking socket
 * (see net/conn.h), events to cb, not yet registered with a loop. The session
 * does its own socket I/O and keeps c's readiness flags true to the socket: it
 * clears can_read when a read drained the socket (a short read or EAGAIN) and
 * can_write when a write could not send it all, so the caller never spends a
 * system call only to learn that it would block. Once hup is set (the peer
 * closed its side), a short read no longer clears can_read: the end of the
 * stream is still to be read, and no new event comes. The handshake is
 * gh_conn_handshake; ALPN picks from `alpn` (NULL: gh_tls_alpn_http11; an
 * empty list: no ALPN, whatever the client offers), which must outlive the
 * connection. GH_OK, or GH_ERROR when out of memory (fd is
 * left open for the caller).
 */
int gh_tls_conn_init(gh_conn *c, gh_tls_ctx *ctx, int fd, gh_io_cb cb, const gh_tls_alpn *alpn);

extern const gh_conn_ops gh_tls_conn_ops;

/* The server name the client asked for (SNI), NULL when none or c is not TLS (for PROXY v2's authority TLV). */
const char *gh_tls_conn_sni(const gh_conn *c);

/* The protocol version agreed ("TLSv1.3"), NULL when c is not TLS (PROXY v2's SSL_VERSION sub-TLV). */
const char *gh_tls_conn_version_name(const gh_conn *c);

/*
 * After a handshake of c (a TLS connection, else 0): the protocol version
 * (0x0303 TLS 1.2, 0x0304 TLS 1.3), and in *resumed whether the session was
 * resumed (a ticket) rather than negotiated in full. For metrics.
 */
int gh_tls_conn_version(const gh_conn *c, int *resumed);

#endif
