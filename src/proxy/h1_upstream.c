/*
 * h1_upstream: the HTTP/1.1 codec of an upstream connection: the request
 * serialized from the protocol-neutral head (headers.c writes the head), the
 * request body framed (as is, or re-chunked), written with backpressure;
 * response bytes read, the response framing judged (RFC 9112 6.3, keep-alive)
 * and a chunked body decoded in place. The exchange decides what happens; this
 * file knows how HTTP/1.1 says it.
 */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "net/conn.h"
#include "proxy/proxy.h"

#define GONE PROXY__GONE

/* A head within GH_H1_MAX_HEAD plus the forwarding headers (Host repeated twice, XFF...) fits. */
#define UPSTREAM_HEAD_MAX (4 * GH_H1_MAX_HEAD)

/*
 * A pool with proxy_protocol: the header goes in front of the head in uout, so
 * it is written first on the connection and again with the head on a retry
 * (always on a new connection: such pools reuse none across clients).
 */
static int proxy_header(proxy__exchange *ex)
{
    int version = ex->pool != NULL ? ex->pool->cfg->proxy_protocol : 0; /* a forward proxy's origin: no pool */
    ssize_t n;

    ex->pp_len = 0;
    if (version == 0)
        return 0;
    n = proxy__pp_session(ex->s, version, (uint8_t *)ex->uout.data, ex->uout.cap);
    if (n < 0)
        return GH_ERROR;
    ex->pp_len = (uint16_t)n;
    return (int)n;
}

int proxy__h1u_request(proxy__exchange *ex, const gh_h1_request *r, const proxy__forward *f)
{
    int pp = proxy_header(ex), n = -1;
    if (pp >= 0)
        n = proxy__request_head(ex->uout.data + pp, ex->uout.cap - (size_t)pp, r, f);
    if (n < 0 && gh_buf_reserve_large(&ex->uout, UPSTREAM_HEAD_MAX) == 0 && (pp = proxy_header(ex)) >= 0)
        n = proxy__request_head(ex->uout.data + pp, ex->uout.cap - (size_t)pp, r, f);
    if (n < 0 || pp < 0)
        return GH_ERROR;
    ex->uout.end = (uint32_t)(pp + n);
    return GH_OK;
}

void proxy__h1u_framing(proxy__exchange *ex, const gh_h1_response *res)
{
    ex->res_body = (uint8_t)res->body;
    ex->res_left = res->body == GH_H1_BODY_LENGTH ? res->content_length : 0;
    ex->upstream_reusable = !(res->flags & GH_H1_F_CONN_CLOSE) && res->body != GH_H1_BODY_CLOSE &&
                            (res->minor == 1 || (res->flags & GH_H1_F_CONN_KEEPALIVE));
}

int proxy__h1u_decode(proxy__exchange *ex)
{
    proxy__upstream *u = ex->u;
    size_t len = gh_buf_len(&u->in);
    ssize_t d;

    if (ex->res_decoded > 0 || gh_h1_chunked_done(&ex->res_chunk) || len == 0)
        return GH_OK;
    d = gh_h1_chunked_decode(&ex->res_chunk, gh_buf_head(&u->in), &len);
    if (d == GH_H1_CHUNKED_ERROR) {
        gh_log_warn("upstream %s sent invalid chunked framing", proxy__upstream_name(u));
        return GH_ERROR;
    }
    ex->res_decoded = (uint32_t)len;
    u->in.end = u->in.start + (uint32_t)len + (d >= 0 ? (uint32_t)d : 0);
    if (u->in.start == u->in.end)
        u->in.start = u->in.end = 0;
    return GH_OK;
}

/* Room for a chunk header "ffffffff\r\n" in front of data read in place, and the CRLF after it. */
#define CHUNK_HEAD 10
#define CHUNK_ROOM (CHUNK_HEAD + 2)

/*
 * Moves request body bytes from the session into uout, framed for the
 * upstream: as they are (Content-Length), or one chunk per batch (a chunked
 * body is decoded by the session: extensions and trailers stop there). The
 * chunk size is written with a fixed width (leading zeros are valid,
 * RFC 9112 7.1) so the data can be read in place behind it. 1 progress, 0 none, GONE.
 */
int proxy__h1u_fill(proxy__exchange *ex)
{
    proxy__session *s = ex->s;
    int chunked = ex->req_body == GH_H1_BODY_CHUNKED;
    size_t room;
    ssize_t n;
    char *p;

    if (ex->req_done)
        return 0;
    gh_buf_compact(&ex->uout);
    room = gh_buf_room(&ex->uout);
    if (chunked && room <= CHUNK_ROOM)
        return 0;
    if (room == 0)
        return 0;
    p = gh_buf_tail(&ex->uout);
    n = s->ops->read_body(s, chunked ? p + CHUNK_HEAD : p, chunked ? room - CHUNK_ROOM : room);
    if (n == GH_ERROR)
        return proxy__exchange_client_gone(ex); /* the client went away in the middle of its request body */
    if (n < 0)
        return proxy__exchange_fail(ex, (int)-n);
    if ((ex->req_total += (uint64_t)n) > ex->max_body)
        return proxy__exchange_fail(ex, 413); /* a chunked body is only known to be too large on the way */
    if (n > 0 && chunked) {
        static const char hex[] = "0123456789abcdef";
        for (int i = 0; i < 8; i++)
            p[i] = hex[((uint64_t)n >> (28 - 4 * i)) & 15];
        p[8] = '\r';
        p[9] = '\n';
        p[CHUNK_HEAD + n] = '\r';
        p[CHUNK_HEAD + n + 1] = '\n';
        ex->uout.end += (uint32_t)(n + CHUNK_ROOM);
    } else {
        ex->uout.end += (uint32_t)n;
    }
    if (s->ops->body_done(s)) {
        if (chunked && gh_buf_append(&ex->uout, "0\r\n\r\n", 5) < 0)
            return 1; /* the last chunk goes once uout drained */
        ex->req_done = 1;
        return 1;
    }
    return n > 0;
}

int proxy__h1u_flush(proxy__exchange *ex)
{
    proxy__upstream *u = ex->u;
    size_t pending = ex->uout.end - ex->usent;
    ssize_t n;

    if (pending == 0 || !u->connected || !u->conn.can_write)
        return 0;
    n = gh_conn_write(&u->conn, ex->uout.data + ex->usent, pending);
    if (n == GH_AGAIN)
        return 0;
    if (n < 0)
        return proxy__exchange_upstream_failed(ex, 502);
    ex->usent += (uint32_t)n;
    ex->head_sent = 1;
    /* Keep a body-less head until the exchange ends: a retry sends it again. */
    if (ex->usent == ex->uout.end && ex->req_body != GH_H1_BODY_NONE) {
        ex->uout.start = ex->uout.end = 0;
        ex->usent = 0;
    }
    return 1;
}

int proxy__h1u_read(proxy__exchange *ex)
{
    proxy__upstream *u = ex->u;
    size_t room;
    ssize_t n;

    if (u == NULL || ex->res_state == RES_DONE || !u->connected || !u->conn.can_read || u->eof || ex->res_decoded > 0)
        return 0; /* no server yet (the body is buffered first), or nothing to read */
    /*
     * A long body for a client that keeps up (it took every byte so far) is
     * read in big blocks: a few system calls per megabyte, and a batch of TLS
     * records per send, instead of two per 16 KiB. Only into an empty buffer
     * (nothing to move); the block goes back once drained (relay_plain), so a
     * stalled client does not keep one and an idle connection holds none. A
     * read takes at most GH_BUF_BIG_DATA, what one TLS batch sends whole, so
     * the block empties instead of moving its tail.
     */
    if (ex->res_state == RES_BODY && gh_buf_len(&u->in) == 0 && ex->s->ops->queued(ex->s) == 0 &&
        (ex->res_body != GH_H1_BODY_LENGTH || ex->res_left > GH_BUF_SIZE))
        gh_buf_reserve_big(&u->in); /* out of memory: the small block below will do */
    if (gh_buf_reserve(&u->in) < 0)
        return proxy__exchange_fail(ex, 500);
    gh_buf_compact(&u->in);
    room = gh_buf_room(&u->in);
    if (u->in.cap == GH_BUF_BIG_SIZE)
        room = gh_buf_len(&u->in) < GH_BUF_BIG_DATA ? GH_MIN(room, GH_BUF_BIG_DATA - gh_buf_len(&u->in)) : 0;
    if (room == 0)
        return 0;
    n = gh_conn_read(&u->conn, gh_buf_tail(&u->in), room);
    if (n > 0) {
        u->in.end += (uint32_t)n;
        return 1;
    }
    if (n == GH_AGAIN)
        return 0;
    if (n == 0) {
        u->eof = 1; /* acted on in pump_response, once what came before it has gone on */
        return 1;
    }
    return proxy__exchange_upstream_failed(ex, 502);
}
