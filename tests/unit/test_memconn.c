/* memconn: the in-memory transport reports what a socket would (net/memconn.h). */
#include <string.h>

#include "core/common.h"
#include "net/memconn.h"
#include "unit.h"

static unsigned last_events;
static int calls;

static void on_event(gh_io *io, unsigned events)
{
    (void)io;
    last_events = events;
    calls++;
}

static void reads(void)
{
    gh_conn c;
    char buf[16];
    size_t len;
    gh_memconn *m = gh_memconn_new(&c, on_event, "h2", 8);

    unit_case("memconn: alpn, an empty script is GH_AGAIN, one read never crosses a chunk");
    CHECK(c.ops->no_socket);
    CHECK(c.io.fd >= 0);
    const char *a = gh_conn_alpn(&c, &len);
    CHECK_MEM(a, len, "h2");
    CHECK_INT(gh_conn_handshake(&c), GH_OK);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), GH_AGAIN);
    CHECK_INT(c.can_read, 0);
    CHECK_INT(gh_memconn_feed(m, "abc", 3), 0);
    CHECK_INT(gh_memconn_feed(m, "defg", 4), 0);
    CHECK_INT(c.can_read, 1);
    CHECK_INT(gh_conn_read(&c, buf, 2), 2);
    CHECK_MEM(buf, 2, "ab");
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 1); /* the rest of the first chunk only */
    CHECK_INT(c.can_read, 1);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 4);
    CHECK_MEM(buf, 4, "defg");
    CHECK_INT(c.can_read, 0); /* drained: as a short read says */
    CHECK(gh_conn_quiet(&c));

    unit_case("memconn: the peer's FIN: 0 once read, HUP delivered; a feed after it fails");
    CHECK_INT(gh_memconn_feed(m, "h", 1), 0);
    gh_memconn_end(m);
    CHECK(!gh_conn_quiet(&c));
    CHECK_INT(gh_memconn_feed(m, "x", 1), -1);
    calls = 0;
    gh_memconn_kick(m);
    CHECK_INT(calls, 1);
    CHECK(last_events & GH_EV_READ);
    CHECK(last_events & GH_EV_HUP);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 1);
    CHECK_INT(gh_conn_read(&c, buf, sizeof(buf)), 0);
    CHECK_INT(gh_memconn_unread(m), 0);
    gh_conn_close(&c, NULL);
    CHECK(gh_memconn_closed(m));
    CHECK(gh_memconn_of(m) == NULL);
    CHECK_INT(c.io.fd, -1);
    calls = 0;
    gh_memconn_kick(m); /* closed: nothing delivered */
    CHECK_INT(calls, 0);
    gh_memconn_free(m);
}

static void writes(void)
{
    gh_conn c, moved;
    size_t len;
    struct iovec iov[2] = {{"hello", 5}, {"world", 5}};
    gh_memconn *m = gh_memconn_new(&c, on_event, NULL, 8);

    unit_case("memconn: a bounded sink: short write, GH_AGAIN when full, room again once taken");
    CHECK(gh_conn_alpn(&c, &len) == NULL);
    CHECK_INT(gh_conn_writev(&c, iov, 2), 8);
    CHECK_INT(c.can_write, 0);
    CHECK_INT(gh_conn_write(&c, "x", 1), GH_AGAIN);
    const uint8_t *p = gh_memconn_sink(m, &len);
    CHECK_MEM((const char *)p, len, "hellowor");
    gh_memconn_take(m, 5);
    p = gh_memconn_sink(m, &len);
    CHECK_MEM((const char *)p, len, "wor");
    calls = 0;
    gh_memconn_kick(m);
    CHECK(last_events & GH_EV_WRITE);
    CHECK_INT(gh_conn_write(&c, "ld", 2), 2);
    CHECK_INT(gh_memconn_written(m), 10);

    unit_case("memconn: gh_conn_move re-points it; shutdown, idle; a write after shutdown fails");
    CHECK_INT(gh_conn_move(&moved, &c, NULL, on_event), 0);
    CHECK(gh_memconn_of(m) == &moved);
    CHECK_INT(c.io.fd, -1);
    gh_conn_idle(&moved);
    CHECK_INT(gh_memconn_idles(m), 1);
    gh_conn_shutdown(&moved);
    CHECK(gh_memconn_shut(m));
    CHECK_INT(gh_conn_write(&moved, "z", 1), GH_ERROR);
    gh_conn_close(&moved, NULL);
    gh_memconn_free(m);

    unit_case("memconn: a reset fails reads and writes; freeing an unclosed one detaches its conn");
    m = gh_memconn_new(&c, on_event, NULL, 8);
    gh_memconn_feed(m, "a", 1);
    gh_memconn_reset(m);
    char b;
    CHECK_INT(gh_conn_read(&c, &b, 1), GH_ERROR);
    CHECK_INT(gh_conn_write(&c, "a", 1), GH_ERROR);
    calls = 0;
    gh_memconn_kick(m);
    CHECK(last_events & GH_EV_ERROR);
    gh_memconn_free(m);
    CHECK_INT(c.io.fd, -1);
    CHECK(c.impl == NULL);
}

void suite_memconn(void)
{
    reads();
    writes();
}
