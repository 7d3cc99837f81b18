/*
 * tunnel: two connections joined byte for byte (a WebSocket after its 101;
 * later CONNECT and TCP streams). Nothing is parsed: what one side sends, the
 * other receives, in order, with the end of each direction passed on.
 *
 * Per direction one buffer of GH_BUF_SIZE from the pool, held only while it
 * has bytes in it: a side is read only while its buffer has room, so a peer
 * that does not read stops the other peer at the kernel's socket buffers
 * (backpressure), and an idle tunnel holds no buffer at all.
 *
 * Half-close: the end of one side's stream (EOF, or TLS close_notify) is
 * passed on once every byte before it was written: the other side's write
 * direction is shut (close_notify and FIN). The other direction runs on until
 * it ends the same way; then the tunnel ends. An error on either side, or the
 * idle timeout (no byte either way), ends it at once.
 *
 * Ownership: the tunnel owns both connections (embedded, moved in with
 * gh_conn_move) and closes them when it ends; then it calls `end`,
 * whose owner frees the tunnel (with gh_loop_release: an event of the same
 * batch may still name one of its connections).
 */
#include <stddef.h>

#include "core/common.h"
#include "proxy/proxy.h"

#define GONE (-1)

static proxy__tunnel *of_side(proxy__tunnel_side *s)
{
    return (proxy__tunnel *)((char *)(s - s->idx) - offsetof(proxy__tunnel, side));
}

static void finish(proxy__tunnel *t, int reason)
{
    gh_timer_stop(t->loop, &t->timer);
    for (int i = 0; i < 2; i++) {
        gh_conn_close(&t->side[i].conn, t->loop);
        gh_buf_release(&t->side[i].buf);
    }
    t->reason = (uint8_t)reason;
    t->end(t);
}

/* Writes what src holds to dst. 1 progress, 0 none, GONE on an error of dst. */
static int flush(proxy__tunnel_side *src, proxy__tunnel_side *dst)
{
    int progress = 0;

    while (gh_buf_len(&src->buf) > 0 && dst->conn.can_write) {
        ssize_t n = gh_conn_write(&dst->conn, gh_buf_head(&src->buf), gh_buf_len(&src->buf));
        if (n == GH_AGAIN)
            break;
        if (n < 0)
            return GONE;
        gh_buf_consume(&src->buf, (size_t)n);
        progress = 1;
    }
    if (gh_buf_len(&src->buf) == 0)
        gh_buf_release(&src->buf); /* idle tunnels hold no buffers */
    return progress;
}

/* Reads from src while its buffer has room. 1 progress, 0 none, GONE on an error of src. */
static int fill(proxy__tunnel_side *src)
{
    ssize_t n;

    if (src->eof || !gh_conn_readable(&src->conn))
        return 0;
    if (gh_buf_reserve(&src->buf) < 0)
        return GONE;
    gh_buf_compact(&src->buf);
    if (gh_buf_room(&src->buf) == 0)
        return 0; /* the other side is not taking: stop reading this one (backpressure) */
    n = gh_conn_read(&src->conn, gh_buf_tail(&src->buf), gh_buf_room(&src->buf));
    if (n > 0) {
        src->buf.end += (uint32_t)n;
        src->bytes += (uint64_t)n;
        return 1;
    }
    if (gh_buf_len(&src->buf) == 0)
        gh_buf_release(&src->buf);
    if (n == GH_AGAIN)
        return 0;
    if (n == 0) {
        src->eof = 1;
        return 1;
    }
    return GONE;
}

/* One direction, src -> dst, until it makes no more progress. 1 progress, 0 none, GONE. */
static int pump(proxy__tunnel_side *src, proxy__tunnel_side *dst)
{
    int any = 0;

    for (;;) {
        int w = flush(src, dst), r;
        if (w == GONE)
            return GONE;
        r = fill(src);
        if (r == GONE)
            return GONE;
        if (!w && !r)
            break;
        any = 1;
    }
    if (src->eof && gh_buf_len(&src->buf) == 0 && !dst->shut) {
        /* every byte before the end went out: pass the end on */
        gh_conn_shutdown(&dst->conn);
        dst->shut = 1;
        any = 1;
    }
    return any;
}

void proxy__tunnel_run(proxy__tunnel *t)
{
    proxy__tunnel_side *a = &t->side[0], *b = &t->side[1];
    int any = 0;

    for (;;) {
        int p = pump(a, b), q;
        if (p == GONE) {
            finish(t, PROXY__TUNNEL_ERROR);
            return;
        }
        q = pump(b, a);
        if (q == GONE) {
            finish(t, PROXY__TUNNEL_ERROR);
            return;
        }
        if (!p && !q)
            break;
        any = 1;
    }
    if (a->shut && b->shut) {
        finish(t, PROXY__TUNNEL_DONE);
        return;
    }
    if (any || t->timer.when == 0)
        gh_timer_set(t->loop, &t->timer, t->idle_ms);
}

void proxy__tunnel_on_event(gh_io *io, unsigned events)
{
    proxy__tunnel_side *s = (proxy__tunnel_side *)io; /* io is the first member of the side's conn */

    gh_conn_on_events(&s->conn, events);
    proxy__tunnel_run(of_side(s));
}

static void on_idle_timeout(gh_timer *tm)
{
    proxy__tunnel *t = (proxy__tunnel *)((char *)tm - offsetof(proxy__tunnel, timer));
    finish(t, PROXY__TUNNEL_IDLE);
}

void proxy__tunnel_init(proxy__tunnel *t, gh_loop *l, uint32_t idle_ms, void (*end)(proxy__tunnel *t))
{
    t->loop = l;
    t->idle_ms = idle_ms;
    t->end = end;
    t->timer.cb = on_idle_timeout;
    for (int i = 0; i < 2; i++) {
        t->side[i].idx = (uint8_t)i;
        t->side[i].conn.io.fd = -1;
    }
}

void proxy__tunnel_start(proxy__tunnel *t)
{
    proxy__tunnel_run(t); /* bytes that came with the heads may be waiting on either side */
}

void proxy__tunnel_close(proxy__tunnel *t, int reason)
{
    finish(t, reason);
}
