/* conn: the plain-socket transport over a socketpair: readiness kept exact, quiet before pooling. */
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "net/conn.h"
#include "unit.h"

static void nop(gh_io *io, unsigned events)
{
    (void)io;
    (void)events;
}

static int pair(gh_conn *c, int *peer)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return -1;
    gh_conn_init(c, sv[0], nop);
    *peer = sv[1];
    return 0;
}

static void readiness(void)
{
    gh_conn c;
    int peer = -1;
    char buf[64];

    unit_case("a short read clears can_read, EAGAIN too");
    CHECK(pair(&c, &peer) == 0);
    CHECK(write(peer, "hello", 5) == 5);
    gh_conn_on_events(&c, GH_EV_READ);
    CHECK_INT(c.can_read, 1);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 5);
    CHECK_INT(c.can_read, 0);
    c.can_read = 1;
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), GH_AGAIN);
    CHECK_INT(c.can_read, 0);

    unit_case("after a hang-up a short read keeps can_read: the end of stream is still due");
    CHECK(write(peer, "ab", 2) == 2);
    shutdown(peer, SHUT_WR);
    gh_conn_on_events(&c, GH_EV_READ | GH_EV_HUP);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 2);
    CHECK_INT(c.can_read, 1);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 0);

    unit_case("writev gathers and reports what it took");
    struct iovec iov[2] = {{"abc", 3}, {"defg", 4}};
    c.can_write = 1;
    CHECK_INT(gh_conn_writev(&c, iov, 2), 7);
    CHECK_INT(c.can_write, 1);
    CHECK_INT(read(peer, buf, sizeof(buf)), 7);
    CHECK_MEM(buf, 7, "abcdefg");

    unit_case("close makes the fd -1 and a second close is a no-op");
    gh_loop *l = gh_loop_new();
    CHECK(gh_conn_add(&c, l) == 0);
    gh_conn_close(&c, l);
    CHECK_INT(c.io.fd, -1);
    gh_conn_close(&c, l);
    gh_loop_free(l);
    close(peer);
}

static void quiet(void)
{
    gh_conn c;
    int peer = -1;
    char buf[8];

    unit_case("quiet: nothing unread and no FIN");
    CHECK(pair(&c, &peer) == 0);
    CHECK_INT(gh_conn_quiet(&c), 1);
    unit_case("quiet: a stray byte waiting makes it unfit for a pool, and the peek takes nothing");
    CHECK(write(peer, "X", 1) == 1);
    CHECK_INT(gh_conn_quiet(&c), 0);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 1);
    CHECK_INT(gh_conn_quiet(&c), 1);
    unit_case("quiet: a FIN already received");
    shutdown(peer, SHUT_WR);
    CHECK_INT(gh_conn_quiet(&c), 0);
    close(c.io.fd);
    close(peer);
}

/* A conn with no socket of its own (an HTTP/2 stream as a tunnel side): its owner's state in impl. */
static int disposed, moved_to_dst;
static gh_conn *where;

static void fake_dispose(gh_conn *c)
{
    (void)c;
    disposed++;
}

static void fake_moved(gh_conn *c)
{
    where = c;
    moved_to_dst++;
}

static const gh_conn_ops fake_ops = {.name = "fake", .dispose = fake_dispose, .moved = fake_moved, .no_socket = 1};

static void no_socket(void)
{
    gh_conn a, b;
    int sv[2];
    gh_loop *l = gh_loop_new();

    unit_case("no_socket: add, move and close neither register with the loop nor close the fd it carries");
    CHECK(l != NULL);
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    a = (gh_conn){.io = {sv[0], nop}, .ops = &fake_ops, .impl = &a, .can_write = 1};
    CHECK_INT(gh_conn_add(&a, l), 0);
    CHECK_INT(gh_conn_move(&b, &a, l, nop), 0);
    CHECK_INT(a.io.fd, -1);
    CHECK_INT(b.io.fd, sv[0]);
    CHECK(b.impl == &a && b.can_write == 1);
    CHECK(where == &b && moved_to_dst == 1); /* re-pointed to its new address */
    gh_conn_close(&b, l);
    CHECK_INT(disposed, 1);
    CHECK_INT(b.io.fd, -1);
    CHECK(fcntl(sv[0], F_GETFD) >= 0); /* not closed: it was never the conn's */
    gh_conn_close(&b, l);
    CHECK_INT(disposed, 1);
    close(sv[0]);
    close(sv[1]);
    gh_loop_free(l);
}

void suite_conn(void)
{
    readiness();
    quiet();
    no_socket();
}
