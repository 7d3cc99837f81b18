/*
 * tls: everything that touches OpenSSL. The rest of gatehouse sees a context
 * (certificates, policy, ticket keys) and nonblocking read/write/handshake
 * calls on an opaque session; no other file includes OpenSSL headers.
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

typedef struct gh_tls_ctx gh_tls_ctx; /* owned by the master, inherited by workers */
typedef struct gh_tls gh_tls;         /* one TLS session, owned by its connection */

/* Returned by the I/O calls below besides byte counts. */
#define GH_TLS_WANT_READ  (-2)
#define GH_TLS_WANT_WRITE (-3)
#define GH_TLS_ERROR      (-1)

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
 * Builds a server context with gatehouse's policy and ALPN "http/1.1" for the
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
 * A server-side session on a connected nonblocking socket; NULL when out of
 * memory. The session does its own socket I/O and keeps the caller's readiness
 * flags true to the socket: it clears *readable when a read drained the socket
 * (a short read or EAGAIN) and *writable when a write could not send it all, so
 * the caller never spends a system call only to learn that it would block.
 * Once *hup is set (the peer closed its side), a short read no longer clears
 * *readable: the end of the stream is still to be read, and no new event comes.
 */
gh_tls *gh_tls_new(gh_tls_ctx *ctx, int fd, uint8_t *readable, uint8_t *writable, const uint8_t *hup);
void gh_tls_free(gh_tls *t);

/* Drives the handshake: 0 when done, GH_TLS_WANT_READ/WRITE, or GH_TLS_ERROR. */
int gh_tls_handshake(gh_tls *t);

/* Reads up to len bytes: n > 0, 0 on clean close (close_notify or EOF), WANT_*, or ERROR. */
ssize_t gh_tls_read(gh_tls *t, void *buf, size_t len);

/* Writes up to len bytes (partial writes allowed): n > 0, WANT_*, or ERROR. */
ssize_t gh_tls_write(gh_tls *t, const void *buf, size_t len);

/* 1 when the session holds received bytes not yet returned by gh_tls_read. */
int gh_tls_pending(gh_tls *t);

/* Sends close_notify, best effort, without waiting for the peer's. */
void gh_tls_shutdown(gh_tls *t);

/* Frees the session's read/write buffers while the connection is idle. */
void gh_tls_release_buffers(gh_tls *t);

#endif
