/*
 * h1_server: the HTTP/1 server codec of a client connection, and the session
 * interface (proxy__session_ops) it gives the exchange: request heads read
 * and parsed (pipelined ones wait in `in`), request bodies decoded
 * (Content-Length or chunked), 100-continue, response heads and bodies framed
 * for the client (chunked for HTTP/1.1 when the length is unknown), and
 * Connection: close decided. The exchange never sees HTTP/1 framing of the
 * client side; an HTTP/2 stream implements the same ops.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/log.h"
#include "proxy/observe.h"
#include "proxy/proxy.h"

#define CLIENT(s) ((proxy__client *)((char *)(s)-offsetof(proxy__client, s)))

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* ---- request heads ---- */

/* The parsed head starts an exchange: the codec's state for its body, then the exchange. */
static void start(proxy__client *c, gh_h1_request *r, size_t head_len)
{
    c->minor = (uint8_t)r->minor;
    c->is_head = r->method.len == 4 && memcmp(r->method.p, "HEAD", 4) == 0;
    c->chunk_out = 0;
    c->req_body = (uint8_t)r->body;
    c->req_left = r->body == GH_H1_BODY_LENGTH ? r->content_length : 0;
    c->req_done = r->body == GH_H1_BODY_NONE || (r->body == GH_H1_BODY_LENGTH && r->content_length == 0);
    c->req_decoded = 0;
    if (r->body == GH_H1_BODY_CHUNKED)
        memset(&c->req_chunk, 0, sizeof(c->req_chunk));
    if (r->flags & GH_H1_F_CONN_CLOSE)
        c->close_after = 1;
    c->state = CLIENT_EXCHANGE;
    /* The head's slices stay valid: consuming only moves offsets, and nothing
     * reads into `in` before the exchange has serialized the head. */
    gh_buf_consume(&c->in, head_len);
    c->head_scanned = 0;
    gh_timer_stop(c->w->loop, &c->timer);
    proxy__exchange_start(&c->s, r);
}

/* Tries to parse a head from `in`. 1 started an exchange or failed, 0 needs more. */
static int try_head(proxy__client *c)
{
    const char *p = gh_buf_head(&c->in);
    size_t len = gh_buf_len(&c->in);
    size_t end = gh_h1_head_end(p, len, c->head_scanned);
    int r;

    c->head_scanned = (uint32_t)len;
    if (end == 0) {
        int full = gh_buf_room(&c->in) == 0 && c->in.start == 0;
        /* Judge the request line as soon as it is complete: HTTP/0.9 or a bad
         * version is refused at once rather than after the header timeout. */
        if (len <= GH_H1_MAX_LINE && (c->line_ok || memchr(p, '\n', len) == NULL))
            return 0;
        /* Once the line is judged, the head is parsed only when its end is here
         * (or it outgrew the buffer): parsing a long head from byte 0 at every
         * read made a 16 KiB head sent in small pieces quadratic. */
        if (c->line_ok && !full && len <= GH_H1_MAX_HEAD)
            return 0;
    }
    r = gh_h1_parse_request(p, len, &c->w->req);
    if (r == 0 && gh_buf_room(&c->in) == 0 && c->in.start == 0)
        r = -431;
    if (r == 0) {
        c->line_ok = 1; /* a parse that wants more has judged the request line */
        return 0;
    }
    if (r < 0) {
        proxy__access_reject(c, -r, proxy__error_body_len(-r));
        proxy__observe_reject(c, -r);
        proxy__client_fail(c, -r, 0);
        return 1;
    }
    c->line_ok = 0;
    /* Its listener gone from the new configuration: the request already read is
     * answered on the generation it came on (which the client still holds), then
     * the connection closes. */
    if (c->s.gen != c->w->gen && proxy__session_regen(&c->s) < 0)
        c->close_after = 1;
    start(c, &c->w->req, (size_t)r);
    return 1;
}

void proxy__h1_read_head(proxy__client *c)
{
    for (;;) {
        if (gh_buf_len(&c->in) > 0 && try_head(c))
            return;
        int r = proxy__client_read(c);
        if (r < 0) {
            proxy__client_close(c);
            return;
        }
        if (r == 0) {
            if (c->state == CLIENT_IDLE)
                gh_buf_trim(&c->in);
            return;
        }
        if (c->state == CLIENT_IDLE) {
            /* the head must arrive within header_timeout of its first byte (slowloris) */
            c->state = CLIENT_HEAD;
            gh_timer_set(c->w->loop, &c->timer, c->w->t->header);
        }
    }
}

/* ---- chunked output ---- */

static size_t put_hex(char *p, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = hex[v & 15];
        v >>= 4;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* Appends up to n data bytes from src to dst framed as one chunk; returns bytes taken. */
static size_t append_chunk(gh_buf *dst, const char *src, size_t n)
{
    char *p;
    size_t room, hl;

    gh_buf_compact(dst);
    room = gh_buf_room(dst);
    if (room < 24)
        return 0;
    if (n > room - 24)
        n = room - 24;
    p = gh_buf_tail(dst);
    hl = put_hex(p, n);
    p[hl] = '\r';
    p[hl + 1] = '\n';
    memcpy(p + hl + 2, src, n);
    p[hl + 2 + n] = '\r';
    p[hl + 3 + n] = '\n';
    dst->end += (uint32_t)(hl + 4 + n);
    return n;
}

/* ---- the session ops ---- */

static int h1_send_head(proxy__session *s, const gh_h1_response *res, const gh_cfg_route *route)
{
    proxy__client *c = CLIENT(s);
    int n;

    if (res->body == GH_H1_BODY_CHUNKED || res->body == GH_H1_BODY_CLOSE) {
        if (c->minor == 1)
            c->chunk_out = 1;
        else
            c->close_after = 1; /* HTTP/1.0 client: the end of the body is the end of the connection */
    }
    if (c->minor == 0 || c->w->draining)
        c->close_after = 1;
    if (gh_buf_reserve(&c->out) < 0)
        return GH_ERROR;
    gh_buf_compact(&c->out);
    n = proxy__response_head(gh_buf_tail(&c->out), gh_buf_room(&c->out), res, c->chunk_out, c->close_after, route,
                             c->s.tls);
    if (n < 0)
        return gh_buf_len(&c->out) > 0 ? GH_AGAIN : GH_ERROR; /* a 100 Continue still drains */
    c->out.end += (uint32_t)n;
    return GH_OK;
}

/* Straight from the caller's buffer when nothing is queued, else copied (and chunked) into `out`. */
static ssize_t h1_send_data(proxy__session *s, const char *p, size_t n)
{
    proxy__client *c = CLIENT(s);

    if (c->chunk_out) {
        if (gh_buf_reserve(&c->out) < 0)
            return GH_ERROR;
        n = append_chunk(&c->out, p, n);
        return n > 0 ? (ssize_t)n : GH_AGAIN;
    }
    if (gh_buf_len(&c->out) == 0) {
        if (!c->conn.can_write)
            return GH_AGAIN;
        return gh_conn_write(&c->conn, p, n);
    }
    gh_buf_compact(&c->out);
    n = GH_MIN(n, gh_buf_room(&c->out));
    if (n == 0)
        return GH_AGAIN;
    memcpy(gh_buf_tail(&c->out), p, n);
    c->out.end += (uint32_t)n;
    return (ssize_t)n;
}

static int h1_end(proxy__session *s)
{
    proxy__client *c = CLIENT(s);
    if (c->chunk_out && gh_buf_append(&c->out, "0\r\n\r\n", 5) < 0)
        return GH_AGAIN;
    return GH_OK;
}

static int h1_flush(proxy__session *s)
{
    proxy__client *c = CLIENT(s);
    size_t pending = gh_buf_len(&c->out);

    if (pending == 0 || !c->conn.can_write)
        return 0;
    ssize_t n = gh_conn_write(&c->conn, gh_buf_head(&c->out), pending);
    if (n == GH_AGAIN)
        return 0;
    if (n < 0)
        return GH_ERROR;
    gh_buf_consume(&c->out, (size_t)n);
    return 1;
}

static size_t h1_queued(const proxy__session *s)
{
    return gh_buf_len(&((const proxy__client *)((const char *)s - offsetof(proxy__client, s)))->out);
}

static int h1_send_local(proxy__session *s, proxy__local *l)
{
    proxy__client *c = CLIENT(s);
    int n;

    if (!c->req_done)
        c->close_after = 1; /* the body is not read: the connection cannot carry another request */
    if (gh_buf_reserve(&c->out) < 0)
        return GH_ERROR;
    gh_buf_compact(&c->out);
    l->close = c->close_after;
    n = proxy__local_response(gh_buf_tail(&c->out), gh_buf_room(&c->out), l);
    if (n < 0)
        return GH_ERROR;
    c->out.end += (uint32_t)n;
    return GH_OK;
}

static int h1_send_continue(proxy__session *s)
{
    proxy__client *c = CLIENT(s);
    if (gh_buf_len(&c->in) > 0 || gh_buf_reserve(&c->out) < 0)
        return 0; /* the body is coming already: no need to ask for it */
    return gh_buf_append(&c->out, continue_100, sizeof(continue_100) - 1) == 0;
}

/* Decodes what `in` holds (chunked: in place, extensions and trailers dropped). 0, or -400. */
static int decode(proxy__client *c)
{
    size_t avail = gh_buf_len(&c->in);
    if (c->req_body != GH_H1_BODY_CHUNKED || c->req_decoded > 0 || gh_h1_chunked_done(&c->req_chunk) || avail == 0)
        return 0;
    size_t len = avail;
    ssize_t r = gh_h1_chunked_decode(&c->req_chunk, gh_buf_head(&c->in), &len);
    if (r == GH_H1_CHUNKED_ERROR)
        return -400;
    c->req_decoded = (uint32_t)len;
    c->in.end = c->in.start + (uint32_t)len + (r >= 0 ? (uint32_t)r : 0);
    if (c->in.start == c->in.end)
        c->in.start = c->in.end = 0;
    return 0;
}

static ssize_t h1_read_body(proxy__session *s, char *dst, size_t cap)
{
    proxy__client *c = CLIENT(s);
    size_t n;

    for (;;) {
        if (c->req_done || cap == 0)
            return 0;
        if (decode(c) < 0)
            return -400;
        if (c->req_body == GH_H1_BODY_LENGTH)
            n = GH_MIN(gh_buf_len(&c->in), c->req_left);
        else
            n = c->req_decoded;
        if (n > 0) {
            n = GH_MIN(n, cap);
            memcpy(dst, gh_buf_head(&c->in), n);
            gh_buf_consume(&c->in, n);
            if (c->req_body == GH_H1_BODY_LENGTH)
                c->req_done = (c->req_left -= n) == 0;
            else
                c->req_decoded -= (uint32_t)n;
            if (c->req_body == GH_H1_BODY_CHUNKED && c->req_decoded == 0 && gh_h1_chunked_done(&c->req_chunk))
                c->req_done = 1;
            return (ssize_t)n;
        }
        if (c->req_body == GH_H1_BODY_CHUNKED && gh_h1_chunked_done(&c->req_chunk)) {
            c->req_done = 1;
            return 0;
        }
        int r = proxy__client_read(c);
        if (r < 0)
            return GH_ERROR;
        if (r == 0)
            return 0;
    }
}

static int h1_body_done(const proxy__session *s)
{
    return ((const proxy__client *)((const char *)s - offsetof(proxy__client, s)))->req_done;
}

static int h1_arm(proxy__session *s, int progress, int want_body)
{
    proxy__client *c = CLIENT(s);
    const gh_cfg_timeouts *t = c->w->t;
    int wait_write = gh_buf_len(&c->out) > 0 && !c->conn.can_write;
    int wait_read = want_body && !c->conn.can_read && c->req_decoded == 0;

    if (wait_write || wait_read) {
        if (progress || c->timer.when == 0)
            gh_timer_set(c->w->loop, &c->timer, wait_write ? t->send : t->body);
    } else {
        gh_timer_stop(c->w->loop, &c->timer);
    }
    return wait_write;
}

static void h1_done(proxy__session *s)
{
    proxy__client *c = CLIENT(s);
    if (!c->req_done)
        c->close_after = 1; /* the server answered early: the rest of the body is unread */
    proxy__client_exchange_done(c);
}

static void h1_fail(proxy__session *s, int status)
{
    proxy__client *c = CLIENT(s);
    proxy__exchange *ex = s->ex;
    s->ex = NULL;
    proxy__exchange_free(ex);
    proxy__client_fail(c, status, c->is_head);
}

static void h1_abort(proxy__session *s)
{
    proxy__client *c = CLIENT(s);
    proxy__exchange *ex = s->ex;
    s->ex = NULL;
    proxy__exchange_free(ex); /* logged by the exchange already */
    proxy__client_close(c);
}

static void h1_dispatch(proxy__session *s)
{
    proxy__client *c = CLIENT(s);
    if (c->state != CLIENT_EXCHANGE)
        proxy__client_dispatch(c);
}

static int h1_detach(proxy__session *s, gh_conn *dst, gh_io_cb cb, gh_buf *in, gh_buf *out)
{
    proxy__client *c = CLIENT(s);
    proxy__exchange *ex = s->ex;

    if (gh_conn_move(dst, &c->conn, c->w->loop, cb) < 0)
        return GH_ERROR; /* the conn stayed the client's: the exchange's abort closes it and frees c */
    *in = c->in;         /* bytes the client sent after its request: the tunnel's first */
    c->in = (gh_buf){0};
    *out = c->out; /* the 101 head, if not written yet */
    c->out = (gh_buf){0};
    s->ex = NULL;
    proxy__exchange_free(ex);
    proxy__client_detached(c);
    return GH_OK;
}

const proxy__session_ops proxy__h1_session_ops = {
    .send_head = h1_send_head,
    .send_data = h1_send_data,
    .end = h1_end,
    .flush = h1_flush,
    .queued = h1_queued,
    .send_local = h1_send_local,
    .send_continue = h1_send_continue,
    .read_body = h1_read_body,
    .body_done = h1_body_done,
    .arm = h1_arm,
    .done = h1_done,
    .fail = h1_fail,
    .abort = h1_abort,
    .dispatch = h1_dispatch,
    .detach = h1_detach,
};
