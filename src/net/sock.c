#include "net/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

void gh_sock_ntop(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    const void *addr = NULL;
    if (ss->ss_family == AF_INET)
        addr = &((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (addr == NULL || inet_ntop(ss->ss_family, addr, out, (socklen_t)outlen) == NULL)
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
