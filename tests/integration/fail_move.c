/*
 * fail_move: a fault injection, loaded into gatehouse with LD_PRELOAD by the
 * tests of hand-overs that fail (t_websocket.py). gatehouse moves a registered
 * connection to a new owner (gh_conn_move: an exchange's two sides becoming a
 * tunnel) by EPOLL_CTL_DEL of its fd, then EPOLL_CTL_ADD of the same fd,
 * edge-triggered. This library makes every Nth such re-add fail with ENOMEM
 * (N from $GH_FAIL_MOVE_EVERY; unset or 0: none), as a kernel out of memory
 * would: the failure path of the hand-over runs for real, against the real
 * binary. Any other epoll_ctl goes to the real one untouched.
 *
 * Counted per process: the workers are the ones that move connections. A
 * close() between the two is not a move (a closed fd that accept() reuses).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

static int last_deleted = -1;
static unsigned long moves;

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

int close(int fd)
{
    static int (*real)(int);

    if (real == NULL)
        real = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (fd == last_deleted)
        last_deleted = -1;
    return real(fd);
}
