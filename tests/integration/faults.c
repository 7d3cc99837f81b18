/*
 * faults: fault injection, loaded into gatehouse with LD_PRELOAD by the tests
 * of failure paths that a healthy kernel never takes on demand. gatehouse
 * itself is the binary under test, unchanged; each fault is off unless its
 * variable is set, and every other call goes to the real function.
 *
 * $GH_FAIL_MOVE_EVERY=N: every Nth hand-over of a registered connection to a
 * new owner fails with ENOMEM (t_websocket.py). gatehouse moves a connection
 * (gh_conn_move: an exchange's two sides becoming a tunnel) by EPOLL_CTL_DEL
 * of its fd, then EPOLL_CTL_ADD of the same fd, edge-triggered: that re-add is
 * the one that fails, as with a kernel out of memory. A close() in between is
 * not a move (a closed fd that accept() reuses). Counted per process.
 *
 * $GH_FAIL_CONTINUE=1: a send() of an interim "HTTP/1.1 100 Continue" fails
 * with EAGAIN, as when the client's socket buffer is full, until gatehouse has
 * read bytes from that socket again (the client sending its body): the 100
 * stays queued in gatehouse meanwhile. A client that merely does not read
 * cannot do that with 25 bytes on an empty socket (t_health.py). Each hold is
 * reported on stderr ("faults: 100 held"), so a test can tell it happened.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536

static int last_deleted = -1;
static unsigned long moves;
static unsigned char continue_held[MAX_FDS]; /* per socket: 0 not yet, 1 holding its 100 Continue, 2 done */

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    static int (*real)(int, int, int, struct epoll_event *);
    const char *every = getenv("GH_FAIL_MOVE_EVERY");
    unsigned long n = every != NULL ? strtoul(every, NULL, 10) : 0;

    if (real == NULL)
        real = (int (*)(int, int, int, struct epoll_event *))dlsym(RTLD_NEXT, "epoll_ctl");
    if (op == EPOLL_CTL_DEL) {
        last_deleted = fd;
    } else if (op == EPOLL_CTL_ADD && fd == last_deleted && ev != NULL && (ev->events & EPOLLET)) {
        last_deleted = -1; /* a second try on the same fd is not another move */
        if (n > 0 && ++moves % n == 0) {
            errno = ENOMEM;
            return -1;
        }
    }
    return real(epfd, op, fd, ev);
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static ssize_t (*real)(int, const void *, size_t, int);
    static const char interim[] = "HTTP/1.1 100 Continue\r\n";
    const char *on = getenv("GH_FAIL_CONTINUE");

    if (real == NULL)
        real = (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    if (on != NULL && on[0] == '1' && fd >= 0 && fd < MAX_FDS && continue_held[fd] < 2 &&
        len >= sizeof(interim) - 1 && memcmp(buf, interim, sizeof(interim) - 1) == 0) {
        if (continue_held[fd] == 0 && write(2, "faults: 100 held\n", 17) < 0)
            errno = EIO; /* nothing to do about it: the test then sees no report */
        continue_held[fd] = 1;
        errno = EAGAIN;
        return -1;
    }
    return real(fd, buf, len, flags);
}

int close(int fd)
{
    static int (*real)(int);

    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (fd == last_deleted)
        last_deleted = -1;
    if (fd >= 0 && fd < MAX_FDS)
        continue_held[fd] = 0;
    return real(fd);
}

ssize_t read(int fd, void *buf, size_t len)
{
    static ssize_t (*real)(int, void *, size_t);
    ssize_t n;

    if (real == NULL)
        real = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    n = real(fd, buf, len);
    if (n > 0 && fd >= 0 && fd < MAX_FDS && continue_held[fd] == 1)
        continue_held[fd] = 2; /* the client moved: its socket takes the 100 now */
    return n;
}
