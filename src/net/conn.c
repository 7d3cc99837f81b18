/*
 * conn: the plain-socket transport and what every transport shares
 * (registration, readiness from events, close).
 */
#include "net/conn.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "net/sock.h"

static ssize_t plain_read(gh_conn *c, void *buf, size_t len)
{
    ssize_t n = read(c->io.fd, buf, len);
    if (n > 0) {
        /* A short read drained the socket, unless the peer closed: then the
         * end of stream is still to be read and no new edge will announce it. */
        if ((size_t)n < len && !c->hup)
            c->can_read = 0;
        return n;
    }
    if (n == 0)
        return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->can_read = 0;
        return GH_AGAIN;
    }
    return GH_ERROR;
}

static ssize_t plain_writev(gh_conn *c, const struct iovec *iov, int iovcnt)
{
    if (iovcnt == 1) {
        /* One buffer is the common case (a head, a block of body): send() costs less than sendmsg(). */
        ssize_t n = send(c->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
        if (n > 0) {
            if ((size_t)n < iov[0].iov_len)
                c->can_write = 0;
            return n;
        }
        if (n == 0 && iov[0].iov_len == 0)
            return 0;
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            c->can_write = 0;
            return GH_AGAIN;
        }
        return GH_ERROR;
    }
    struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    size_t total = 0;
    ssize_t n;

    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    n = sendmsg(c->io.fd, &msg, MSG_NOSIGNAL);
    if (n > 0) {
        if ((size_t)n < total)
            c->can_write = 0;
        return n;
    }
    if (n == 0 && total == 0)
        return 0;
    if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->can_write = 0;
        return GH_AGAIN;
    }
    return GH_ERROR;
}

static int plain_handshake(gh_conn *c)
{
    (void)c;
    return GH_OK;
}

static int plain_pending(const gh_conn *c)
{
    (void)c;
    return 0;
}

static void plain_shutdown(gh_conn *c)
{
    shutdown(c->io.fd, SHUT_WR);
}

static void plain_idle(gh_conn *c)
{
    (void)c;
}

static const char *plain_alpn(const gh_conn *c, size_t *len)
{
    (void)c;
    *len = 0;
    return NULL;
}

static void plain_dispose(gh_conn *c)
{
    (void)c;
}

const gh_conn_ops gh_conn_plain_ops = {
    .name = "tcp",
    .read = plain_read,
    .writev = plain_writev,
    .handshake = plain_handshake,
    .pending = plain_pending,
    .shutdown = plain_shutdown,
    .idle = plain_idle,
    .alpn = plain_alpn,
    .dispose = plain_dispose,
    .moved = NULL,
};

void gh_conn_init(gh_conn *c, int fd, gh_io_cb cb)
{
    *c = (gh_conn){.io = {fd, cb}, .ops = &gh_conn_plain_ops};
}

int gh_conn_add(gh_conn *c, gh_loop *l)
{
    if (c->ops->no_socket)
        return 0; /* its owner delivers its events */
    return gh_loop_add(l, &c->io);
}

int gh_conn_move(gh_conn *dst, gh_conn *src, gh_loop *l, gh_io_cb cb)
{
    gh_io_cb was = src->io.cb;
    int rc;

    if (src->ops->no_socket) { /* nothing registered: only the address and the callback change */
        *dst = *src;
        dst->io.cb = cb;
        if (dst->ops->moved != NULL)
            dst->ops->moved(dst);
        src->io.fd = -1;
        src->impl = NULL;
        return 0;
    }
    /* The loop knows the conn by the address of its io: register the new one. */
    gh_loop_del(l, &src->io);
    *dst = *src;
    dst->io.cb = cb;
    if (dst->ops->moved != NULL)
        dst->ops->moved(dst);
    src->io.fd = -1;
    src->impl = NULL;
    if ((rc = gh_loop_add(l, &dst->io)) == 0)
        return 0;
    /*
     * Back to src, which its owner then closes and frees as usual: left in dst,
     * the socket and everything its owner holds for it would be orphaned (the
     * owner's close returns at once on fd -1). Registered again, best effort,
     * for an owner that still has bytes to send before it closes.
     */
    *src = *dst;
    src->io.cb = was;
    if (src->ops->moved != NULL)
        src->ops->moved(src);
    dst->io.fd = -1;
    dst->impl = NULL;
    (void)gh_loop_add(l, &src->io);
    return rc;
}

int gh_conn_connect_result(gh_conn *c)
{
    if (c->ops->no_socket)
        return 0; /* an in-memory conn (memconn.h) is connected when made */
    return gh_sock_error(c->io.fd);
}

int gh_conn_quiet(gh_conn *c)
{
    char byte;
    ssize_t n;

    if (c->hup || c->ops->pending(c))
        return 0;
    if (c->ops->no_socket) /* nothing to peek at: its flags are exact (memconn.h) */
        return !c->can_read;
    n = recv(c->io.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

int gh_conn_read_proxy(gh_conn *c, gh_pp_header *h, uint8_t *scratch, size_t cap, const char **why)
{
    ssize_t n, r;

    *why = NULL;
    if (!c->can_read)
        return GH_AGAIN;
    n = recv(c->io.fd, scratch, cap, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->can_read = 0;
        return GH_AGAIN;
    }
    if (n <= 0) {
        *why = n == 0 ? "closed before its PROXY header ended" : "socket error before its PROXY header";
        return GH_ERROR;
    }
    r = gh_pp_parse(scratch, (size_t)n, h, why);
    if (r == GH_PP_INCOMPLETE) {
        if (c->hup) {
            *why = "closed before its PROXY header ended";
            return GH_ERROR;
        }
        /* The peeked bytes stay queued; the next segment brings a new edge (EPOLLET fires per arrival). */
        c->can_read = 0;
        return GH_AGAIN;
    }
    if (r < 0)
        return GH_ERROR;
    /* The header is there whole: take exactly its bytes, none of the client's own. */
    n = recv(c->io.fd, scratch, (size_t)r, MSG_DONTWAIT);
    if (n != r) {
        *why = "socket error reading its PROXY header";
        return GH_ERROR;
    }
    return GH_OK;
}

void gh_conn_close(gh_conn *c, gh_loop *l)
{
    if (c->io.fd < 0)
        return;
    if (!c->ops->no_socket)
        gh_loop_del(l, &c->io);
    c->ops->dispose(c);
    c->impl = NULL;
    if (!c->ops->no_socket)
        close(c->io.fd);
    c->io.fd = -1;
}
