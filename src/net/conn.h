/*
 * conn: the transport under every protocol. A connection moves bytes and
 * nothing else: read, write, shut down, close, with the readiness of its
 * socket kept exact for the edge-triggered loop: a flag is cleared only when a
 * call saw EAGAIN or a short transfer, so no system call is spent to learn that
 * it would block, and a set flag means the next call may make progress.
 *
 * Implementations: a plain socket (conn.c) and TLS (src/tls); the PROXY
 * protocol reader (gh_conn_read_proxy) runs on the socket before either
 * starts; in memory (memconn.c) for unit tests and fuzzing. Nothing above this layer calls socket or OpenSSL
 * functions, so a new transport changes one file. (nginx swaps c->recv/c->send after the handshake; HAProxy has
 * xprt_ops; curl stacks connection filters.)
 *
 * Ownership: a gh_conn is embedded in its owner (a client session, an upstream
 * connection, a tunnel side). The owner calls gh_conn_close() before it frees
 * itself. A connection can change owner without being closed (an exchange
 * that becomes a tunnel): gh_conn_move() re-registers it for its new owner.
 *
 * Return codes (src/core/common.h): a byte count (> 0), 0 for the end of the
 * stream (read only), GH_AGAIN (wait for readiness: the matching flag is now
 * 0), or GH_ERROR (the connection is unusable; close it).
 */
#ifndef GH_NET_CONN_H
#define GH_NET_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "core/loop.h"
#include "net/proxyproto.h"

typedef struct gh_conn gh_conn;

typedef struct gh_conn_ops {
    const char *name; /* "tcp", "tls": for logs */
    /* Reads up to len bytes: n > 0, 0 at the end of the stream, GH_AGAIN, GH_ERROR. */
    ssize_t (*read)(gh_conn *c, void *buf, size_t len);
    /* Writes from iov (partial writes allowed): bytes taken (> 0), GH_AGAIN, GH_ERROR. */
    ssize_t (*writev)(gh_conn *c, const struct iovec *iov, int iovcnt);
    /* Drives the transport's own handshake: GH_OK when done (at once for a plain socket), GH_AGAIN, GH_ERROR. */
    int (*handshake)(gh_conn *c);
    /* 1 when bytes already received sit inside the transport (decrypted TLS records): readable without an event. */
    int (*pending)(const gh_conn *c);
    /* Ends our direction, best effort: TLS sends close_notify, then the socket's write side is shut (FIN). */
    void (*shutdown)(gh_conn *c);
    /* The connection goes idle: give back what buffers the transport can. */
    void (*idle)(gh_conn *c);
    /* The protocol the handshake agreed on (ALPN), e.g. "h2", with its length; NULL when none. */
    const char *(*alpn)(const gh_conn *c, size_t *len);
    /* Frees the transport's state; the socket itself is closed by gh_conn_close. */
    void (*dispose)(gh_conn *c);
    /* The conn was copied to a new address (gh_conn_move): re-point what refers to it. NULL: nothing does. */
    void (*moved)(gh_conn *c);
    /*
     * 1: no socket of its own (an HTTP/2 stream as a tunnel side, h2_server.c). Its io.fd is only
     * ">= 0 while open"; gh_conn_add/move/close never touch the loop nor close() it, and its owner
     * (the HTTP/2 connection, a test's driver) delivers its events by calling io.cb itself.
     * gh_conn_read_proxy does not apply to it; gh_conn_connect_result is 0 (connected when made),
     * gh_conn_quiet reads its flags (hup, pending, can_read): nothing to peek at.
     */
    uint8_t no_socket;
} gh_conn_ops;

struct gh_conn {
    gh_io io; /* first member: the loop hands &conn.io (and so the owner, when the conn is its first member) */
    const gh_conn_ops *ops;
    void *impl;        /* the transport's state (a TLS session); NULL for a plain socket */
    uint8_t can_read;  /* readable as far as we know: the last read did not drain the socket */
    uint8_t can_write; /* writable as far as we know: the last write took everything */
    uint8_t hup;       /* the peer closed its side (EPOLLRDHUP): read on until 0, no new event comes */
};

extern const gh_conn_ops gh_conn_plain_ops;

/* Makes c a plain-socket connection on fd whose events go to cb. Not registered with a loop yet. */
void gh_conn_init(gh_conn *c, int fd, gh_io_cb cb);

/* Registers the connection with the loop (edge-triggered read and write). 0 or -errno. */
int gh_conn_add(gh_conn *c, gh_loop *l);

/*
 * Moves a registered connection from src to dst (a new owner: an exchange's
 * two sides becoming a tunnel) without closing it: the loop's registration
 * follows it (events go to cb), the transport re-points its state, and src is
 * left closed-looking (fd -1) so that its old owner frees it without touching
 * the socket. An event of the current batch for src finds fd -1. 0 or -errno;
 * on an error the connection is back in src (dst is closed-looking), so that
 * the old owner closes it and frees what it holds for it. A no_socket conn
 * only moves (it cannot fail).
 */
int gh_conn_move(gh_conn *dst, gh_conn *src, gh_loop *l, gh_io_cb cb);

/* Records what an event from the loop says about readiness (call first in the event callback). */
static inline void gh_conn_on_events(gh_conn *c, unsigned events)
{
    if (events & GH_EV_READ)
        c->can_read = 1;
    if (events & GH_EV_HUP)
        c->hup = 1;
    if (events & GH_EV_WRITE)
        c->can_write = 1;
    if (events & GH_EV_ERROR)
        c->can_read = c->can_write = 1; /* the next call reports the error */
}

/*
 * For an outgoing connection: once its write event came, whether connect()
 * succeeded. 0 connected, or the errno it failed with.
 */
int gh_conn_connect_result(gh_conn *c);

static inline ssize_t gh_conn_read(gh_conn *c, void *buf, size_t len)
{
    return c->ops->read(c, buf, len);
}

static inline ssize_t gh_conn_writev(gh_conn *c, const struct iovec *iov, int iovcnt)
{
    return c->ops->writev(c, iov, iovcnt);
}

static inline ssize_t gh_conn_write(gh_conn *c, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return c->ops->writev(c, &iov, 1);
}

static inline int gh_conn_handshake(gh_conn *c)
{
    return c->ops->handshake(c);
}

/* Something can be read without waiting for an event: the flag, or bytes inside the transport. */
static inline int gh_conn_readable(const gh_conn *c)
{
    return c->can_read || c->ops->pending(c);
}

static inline void gh_conn_shutdown(gh_conn *c)
{
    c->ops->shutdown(c);
}

static inline void gh_conn_idle(gh_conn *c)
{
    c->ops->idle(c);
}

static inline const char *gh_conn_alpn(const gh_conn *c, size_t *len)
{
    return c->ops->alpn(c, len);
}

/*
 * Nothing is waiting to be read and the peer has not closed: what a connection
 * must show before it goes back to a keep-alive pool (a peek, no bytes taken).
 * 1 clean, 0 bytes or an end of stream are there (or the socket failed).
 */
int gh_conn_quiet(gh_conn *c);

/*
 * Reads the PROXY protocol header (proxyproto.h) that a trusted sender puts
 * first on the connection, from the socket itself, before any transport
 * handshake (TLS starts after it). It peeks and then takes exactly the
 * header's bytes, so what follows (a ClientHello, a request) is left in the
 * socket for the transport. scratch[0..cap) (at least GH_PP_MAX) holds the
 * header while *h's TLV slices are in use. GH_OK with *h filled; GH_AGAIN:
 * not all there yet (can_read is now 0); GH_ERROR: not a valid header, or the
 * peer closed or failed before it ended (*why says which, for the log).
 */
int gh_conn_read_proxy(gh_conn *c, gh_pp_header *h, uint8_t *scratch, size_t cap, const char **why);

/* Unregisters, disposes of the transport and closes the socket (a no_socket conn: disposes only); io.fd becomes
 * -1. A closed conn is a no-op. */
void gh_conn_close(gh_conn *c, gh_loop *l);

#endif
