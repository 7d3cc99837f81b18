/*
 * sock: nonblocking TCP sockets: accept, connect, options, address text.
 */
#ifndef GH_NET_SOCK_H
#define GH_NET_SOCK_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "net/addr.h"

/* Accepts one connection (nonblocking, close-on-exec, TCP_NODELAY). Returns fd, GH_AGAIN or GH_ERROR. */
int gh_sock_accept(int lfd, struct sockaddr_storage *peer, socklen_t *plen);

/*
 * Starts a nonblocking connect to a. Returns the fd (connected or in progress),
 * or -errno when the attempt failed at once.
 */
int gh_sock_connect(const gh_addr *a);

/* The pending error of a socket whose connect completed (0 when connected). */
int gh_sock_error(int fd);

/* Numeric host of a peer address ("1.2.3.4", "::1") into out (>= 46 bytes). */
void gh_sock_ntop(const struct sockaddr_storage *ss, char *out, size_t outlen);

/* The local address of a connected socket (what the client connected to). 0 or -errno. */
int gh_sock_local(int fd, struct sockaddr_storage *out);

/* Plain-socket I/O: n > 0, 0 on EOF (read), GH_AGAIN, or GH_ERROR (errno set). */
ssize_t gh_sock_read(int fd, void *buf, size_t len);
ssize_t gh_sock_write(int fd, const void *buf, size_t len);
/*
 * The first bytes waiting on fd, left there (MSG_PEEK): what a stream listener
 * looks at before it knows who handles the connection (a ClientHello relayed
 * untouched by passthrough, read again by OpenSSL when terminated). The same
 * returns as gh_sock_read; a new arrival brings a new edge-triggered event.
 */
ssize_t gh_sock_peek(int fd, void *buf, size_t len);

#endif
