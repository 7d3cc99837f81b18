/*
 * tunnel: the pump between two plain connections over socketpairs: bytes both
 * ways and counted, backpressure (bounded buffering while a peer does not
 * read), half-close in each direction, an error ends it, no buffer held idle,
 * and the idle timeout through a real loop.
 *
 *   peer_a <-> [side 0] tunnel [side 1] <-> peer_b
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "proxy/proxy.h"
#include "unit.h"

static int ended, stop_on_end;

static void on_end(proxy__tunnel *t)
{
    ended = t->reason;
    if (stop_on_end)
        gh_loop_stop(t->loop);
}

struct rig {
    gh_loop *loop;
    proxy__tunnel t;
    int peer_a, peer_b;
};

static int rig_up(struct rig *r, uint32_t idle_ms)
{
    int a[2], b[2];

    memset(r, 0, sizeof(*r));
    ended = 0;
    if ((r->loop = gh_loop_new()) == NULL)
        return -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) < 0 ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) < 0)
        return -1;
    proxy__tunnel_init(&r->t, r->loop, idle_ms, on_end);
    gh_conn_init(&r->t.side[0].conn, a[1], proxy__tunnel_on_event);
    gh_conn_init(&r->t.side[1].conn, b[0], proxy__tunnel_on_event);
    r->peer_a = a[0];
    r->peer_b = b[1];
    if (gh_conn_add(&r->t.side[0].conn, r->loop) < 0 || gh_conn_add(&r->t.side[1].conn, r->loop) < 0)
        return -1;
    proxy__tunnel_start(&r->t);
    return 0;
}

static void rig_down(struct rig *r)
{
    if (!ended)
        proxy__tunnel_close(&r->t, PROXY__TUNNEL_SHUTDOWN);
    close(r->peer_a);
    close(r->peer_b);
    gh_loop_free(r->loop);
}

/* What an event from the loop would do: both sides ready, then the pump. */
static void kick(struct rig *r)
{
    for (int i = 0; i < 2 && !ended; i++)
        gh_conn_on_events(&r->t.side[i].conn, GH_EV_READ | GH_EV_WRITE);
    if (!ended)
        proxy__tunnel_run(&r->t);
}

/* Reads what is there now from a nonblocking fd into buf (up to cap). */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while (got < cap && (n = read(fd, buf + got, cap - got)) > 0)
        got += (size_t)n;
    return got;
}

static void both_ways(void)
{
    struct rig r;
    char buf[64];

    unit_case("bytes go both ways, counted per side; no buffer is held once they went");
    CHECK(rig_up(&r, 60000) == 0);
    CHECK(write(r.peer_a, "hello", 5) == 5);
    CHECK(write(r.peer_b, "world!", 6) == 6);
    kick(&r);
    CHECK_INT(drain(r.peer_b, buf, sizeof(buf)), 5);
    CHECK_MEM(buf, 5, "hello");
    CHECK_INT(drain(r.peer_a, buf, sizeof(buf)), 6);
    CHECK_MEM(buf, 6, "world!");
    CHECK_INT(r.t.side[0].bytes, 5);
    CHECK_INT(r.t.side[1].bytes, 6);
    CHECK(r.t.side[0].buf.data == NULL);
    CHECK(r.t.side[1].buf.data == NULL);
    CHECK(r.t.timer.when != 0); /* the idle timeout is armed */
    CHECK_INT(ended, 0);
    rig_down(&r);
}

static void backpressure(void)
{
    struct rig r;
    static char out[4 << 20], in[4 << 20];
    size_t sent = 0, got = 0;
    int rounds = 0;

    unit_case("a peer that does not read stops the other: the tunnel buffers at most one block");
    CHECK(rig_up(&r, 60000) == 0);
    for (size_t i = 0; i < sizeof(out); i++)
        out[i] = (char)(i * 7 + i / 4093);
    /* peer_a writes until its socket is full; peer_b reads nothing */
    for (int i = 0; i < 1000; i++) {
        ssize_t n = write(r.peer_a, out + sent, sizeof(out) - sent);
        if (n <= 0)
            break;
        sent += (size_t)n;
        kick(&r);
    }
    CHECK(sent < sizeof(out)); /* the chain filled up: the tunnel did not swallow it all */
    CHECK(gh_buf_len(&r.t.side[0].buf) <= GH_BUF_SIZE);
    CHECK(r.t.side[0].bytes < sent); /* bytes still wait in peer_a's socket, unread by the tunnel */

    unit_case("once the reader reads, every byte arrives in order");
    while (got < sizeof(out) && rounds++ < 100000) {
        ssize_t n;
        if (sent < sizeof(out) && (n = write(r.peer_a, out + sent, sizeof(out) - sent)) > 0)
            sent += (size_t)n;
        kick(&r);
        got += drain(r.peer_b, in + got, sizeof(in) - got);
    }
    CHECK_INT(got, sizeof(out));
    CHECK(memcmp(in, out, sizeof(out)) == 0);
    CHECK_INT(r.t.side[0].bytes, sizeof(out));
    CHECK(r.t.side[0].buf.data == NULL);
    rig_down(&r);
}

static void half_close(void)
{
    struct rig r;
    char buf[64];

    unit_case("EOF from one side is passed on after its bytes; the other direction still runs");
    CHECK(rig_up(&r, 60000) == 0);
    CHECK(write(r.peer_a, "bye", 3) == 3);
    shutdown(r.peer_a, SHUT_WR);
    gh_conn_on_events(&r.t.side[0].conn, GH_EV_HUP); /* EPOLLRDHUP, as the loop reports it */
    kick(&r);
    CHECK_INT(drain(r.peer_b, buf, sizeof(buf)), 3);
    CHECK_INT(read(r.peer_b, buf, sizeof(buf)), 0); /* the FIN came through */
    CHECK_INT(r.t.side[1].shut, 1);
    CHECK_INT(ended, 0);
    CHECK(write(r.peer_b, "late reply", 10) == 10);
    kick(&r);
    CHECK_INT(drain(r.peer_a, buf, sizeof(buf)), 10);
    CHECK_MEM(buf, 10, "late reply");

    unit_case("the second EOF ends the tunnel: both connections closed");
    shutdown(r.peer_b, SHUT_WR);
    gh_conn_on_events(&r.t.side[1].conn, GH_EV_HUP);
    kick(&r);
    CHECK_INT(ended, PROXY__TUNNEL_DONE);
    CHECK_INT(read(r.peer_a, buf, sizeof(buf)), 0);
    CHECK_INT(r.t.side[0].conn.io.fd, -1);
    CHECK_INT(r.t.side[1].conn.io.fd, -1);
    rig_down(&r);
}

static void reset(void)
{
    struct rig r;
    char buf[64];
    struct linger lg = {1, 0};

    unit_case("a side that fails ends the tunnel at once; the other side sees its end");
    CHECK(rig_up(&r, 60000) == 0);
    CHECK(write(r.peer_b, "x", 1) == 1);
    kick(&r);
    CHECK_INT(drain(r.peer_a, buf, sizeof(buf)), 1);
    setsockopt(r.peer_a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(r.peer_a);
    r.peer_a = -1;
    CHECK(write(r.peer_b, "more", 4) == 4);
    for (int i = 0; i < 3 && !ended; i++)
        kick(&r);
    CHECK(ended != 0);
    CHECK(read(r.peer_b, buf, sizeof(buf)) <= 0);
    rig_down(&r);
}

static void idle_timeout(void)
{
    struct rig r;
    char buf[8];

    unit_case("no byte either way for the idle time: the loop's timer ends the tunnel");
    CHECK(rig_up(&r, 30) == 0);
    stop_on_end = 1;
    gh_loop_run(r.loop); /* the loop's own events first (epoll's initial readiness), then the timer */
    stop_on_end = 0;
    CHECK_INT(ended, PROXY__TUNNEL_IDLE);
    CHECK_INT(read(r.peer_b, buf, sizeof(buf)), 0);
    rig_down(&r);
}

void suite_tunnel(void)
{
    both_ways();
    backpressure();
    half_close();
    reset();
    idle_timeout();
}
