/*
 * h2_server: the HTTP/2 session of a client connection on libnghttp2 (1.52),
 * and the session interface (proxy__session_ops) each of its streams gives
 * the exchange. One stream, one exchange: its own configuration generation,
 * address and listener copied from the connection, its head checked and
 * converted by http/h2_head.c, its request body handed over as the exchange
 * takes it (flow control: WINDOW_UPDATE only then), its response body held in
 * a bounded buffer that nghttp2 drains as the client's window allows.
 *
 * nghttp2's callbacks never re-enter the exchange: they record what happened
 * on the stream (ready to start, body bytes arrived, closed by the peer,
 * response buffer drained) in a work list that runs once nghttp2_session_mem_recv
 * or nghttp2_session_send has returned. Output is batched: a connection with
 * frames to send is marked dirty and flushed once per loop iteration (the
 * worker's idle hook), one nghttp2_session_send and as few writes as the
 * output buffer allows. DATA payloads are copied once, from the stream's
 * buffer to the connection's output, next to their frame header
 * (NGHTTP2_DATA_FLAG_NO_COPY).
 *
 * Attacks, each bounded here (nghttp2's own limits come on top): rapid reset
 * (CVE-2023-44487: resets of streams not yet answered, counted per window;
 * streams opened and reset within one read never start an exchange),
 * CONTINUATION floods (header block bytes per head), HPACK bombs (decoded
 * header list bytes), floods of SETTINGS/PING/PRIORITY/WINDOW_UPDATE/RST/empty
 * frames (a budget per second that our own output earns), slow readers and
 * zero windows (the send timeout per stream and per connection), memory
 * (max_connection_memory: new streams refused).
 *
 * Ownership: the client (client.c) owns its proxy__h2; the proxy__h2 owns its
 * streams (a list), each stream its exchange. Streams are freed with
 * gh_loop_release: an upstream event may still name one after its exchange ended.
 * A CONNECT stream handed to a tunnel (h2_detach) is held by the tunnel's conn
 * until it closes it ("a stream as a tunnel side", below), even past its connection.
 */
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "core/log.h"
#include "http/h2_head.h"
#include "http/ws.h"
#include "proxy/h2_mem.h"
#include "proxy/observe.h"
#include "proxy/proxy.h"

#define WINDOW_MS        1000 /* the flood budgets are per this */
#define FRAME_BUDGET     1000 /* cheap frames a client may send per window, plus two per frame we sent */
#define RESET_WINDOW_MS  10000
#define READS_PER_ROUND  16 /* reads before other connections get a turn */
#define FLUSH_ROUNDS     64
#define HEAD_BLOCK_SLACK (16 * 1024)

enum { W_START = 1, W_RUN = 2, W_CLOSE = 4 };
enum { T_NONE, T_GRACE, T_IDLE, T_SEND };

/* As for HTTP/1 (client.c): an idle TLS connection keeps its record buffers for a short grace, then none. */
#define IDLE_GRACE_MS 1000

typedef struct h2_stream h2_stream;

struct proxy__h2 {
    proxy__client *c;
    nghttp2_session *ngh;
    gh_cfg_http2 cfg; /* copied: the generation it came from may go */
    h2_stream *streams;
    h2_stream *work, *work_tail;
    proxy__h2 *dirty_next;
    size_t mem; /* bytes the streams hold (structs, heads, bodies, response buffers) */
    uint32_t nstreams;
    uint64_t win_start, reset_start;
    uint32_t win_cheap, win_sent, resets;
    uint32_t head_block;   /* bytes of the header block being received (HEADERS + CONTINUATION) */
    int32_t max_client_id; /* the highest stream id a client HEADERS frame carried (RFC 9113 5.1.1) */
    /* The 64 client stream ids up to max_client_id (bit k: id max_client_id - 2k): used, and reset by
     * us (RST_STREAM sent). nghttp2 keeps no closed streams (a busy connection would hold up to
     * max_concurrent_streams of them, ~220 bytes each, while idle); these 16 bytes tell a frame on a
     * closed stream from one on a never used id, and in-flight frames after our RST from errors. */
    uint64_t ids_used, ids_reset;
    /* Where the client's frames begin in its byte stream (the preface first): libnghttp2 drops DATA on
     * a stream it does not know without a callback, so feed stops at each DATA header to check it. */
    uint32_t scan_left; /* bytes before the next frame header (preface or payload) */
    uint8_t scan_hd[9];
    uint8_t scan_hlen; /* bytes of scan_hd held */
    uint8_t dirty;
    uint8_t more_input; /* stopped reading with input left (a fair share): go on in the idle hook */
    uint8_t calm;       /* GOAWAY for abuse sent: no more input is read */
    uint8_t had_tunnel; /* a stream became a tunnel side (proxy__h2_tunnels_only) */
    uint8_t dead;       /* nghttp2 failed, or the peer closed: close once the output is out */
    uint8_t draining;
    uint8_t timer_kind;
    uint8_t served;        /* a stream was started: the connection is no longer fresh (proxy__h2_idle) */
    uint8_t idled;         /* it went idle once since it served: later idles keep the grace (go_idle) */
    uint8_t released;      /* go_idle ran and no stream started since */
    proxy__h2_mem ngh_mem; /* what nghttp2 allocates for this connection (h2_mem.h) */
};

struct h2_stream {
    proxy__session s;
    proxy__h2 *h;
    h2_stream *prev, *next;
    h2_stream *work_next;
    gh_timer timer;
    int32_t id;
    uint8_t work, queued;
    uint8_t started, closed, responded, is_head;
    uint8_t es_headers; /* END_STREAM came with the request head */
    uint8_t in_done;    /* END_STREAM came */
    uint8_t drop;       /* nobody will read the body: DATA is consumed as it comes */
    uint8_t out_ended;  /* the response body is complete in rbuf */
    uint8_t deferred;   /* nghttp2 waits for rbuf (NGHTTP2_ERR_DEFERRED) */
    uint8_t want_room;  /* the exchange waits for room in rbuf */
    uint8_t eos_sent;   /* our END_STREAM went out */
    uint8_t rst_after;  /* RST_STREAM NO_ERROR once the response is out: its body is unread (RFC 9113 8.1) */
    uint8_t has_clen;
    uint64_t clen;
    uint64_t body_in; /* DATA bytes received */
    char *body;       /* received, not yet taken by the exchange: body[boff..blen) */
    size_t boff, blen, bcap;
    gh_buf rbuf; /* response body bytes for nghttp2's DATA frames */
    gh_h2_head head;
    /* A CONNECT stream (see "a stream as a tunnel side" below): */
    gh_conn *tconn;   /* the tunnel's conn for this stream, while a tunnel holds it; NULL: none */
    uint8_t tunnel;   /* a CONNECT: its DATA is a tunnel's, never a body an exchange reads */
    uint8_t ws;       /* an RFC 8441 WebSocket: upgraded upstream with ws_key, answered 200 for a 101 */
    uint8_t tev;      /* events due to tconn (GH_EV_*), delivered from the work list */
    uint8_t released; /* the tunnel let go: the stream ends (END_STREAM drains, or RST) and is then freed */
    uint8_t orphan;   /* the connection went while a tunnel held it: h is NULL, the tunnel frees it */
    char ws_key[GH_WS_KEY_LEN + 1];
};

#define ST(sp) ((h2_stream *)((char *)(sp)-offsetof(h2_stream, s)))

static const proxy__session_ops h2_ops;
static void tunnel_deliver(h2_stream *st);
static int ws_request(h2_stream *st, gh_h1_request *r);
static void stream_timeout(gh_timer *t);
static void stream_free(h2_stream *st);
static void conn_close(proxy__h2 *h);

static proxy__worker *W(const proxy__h2 *h)
{
    return h->c->w;
}

static void mark_dirty(proxy__h2 *h)
{
    if (h->dirty)
        return;
    h->dirty = 1;
    h->dirty_next = W(h)->h2_dirty;
    W(h)->h2_dirty = h;
}

static void dirty_unlink(proxy__h2 *h)
{
    proxy__h2 **pp = &W(h)->h2_dirty;
    if (!h->dirty)
        return;
    for (; *pp != NULL; pp = &(*pp)->dirty_next)
        if (*pp == h) {
            *pp = h->dirty_next;
            break;
        }
    h->dirty = 0;
}

static void queue(h2_stream *st, uint8_t bits)
{
    proxy__h2 *h = st->h;
    st->work |= bits;
    if (st->queued)
        return;
    st->queued = 1;
    st->work_next = NULL;
    if (h->work_tail != NULL)
        h->work_tail->work_next = st;
    else
        h->work = st;
    h->work_tail = st;
}

static void log_stream(const h2_stream *st, const char *what)
{
    gh_log_info("client %s stream %d: %s", st->s.ip, st->id, what);
}

/* GOAWAY ENHANCE_YOUR_CALM (RFC 9113 5.4.1) and no more input: the client crossed a limit. */
static int calm(proxy__h2 *h, const char *why)
{
    if (!h->calm) {
        gh_log_warn("client %s: HTTP/2 %s: GOAWAY ENHANCE_YOUR_CALM, closing", h->c->s.ip, why);
        nghttp2_session_terminate_session(h->ngh, NGHTTP2_ENHANCE_YOUR_CALM);
        h->calm = 1;
        h->dead = 1;
        mark_dirty(h);
    }
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* A connection error (RFC 9113 5.4.1) libnghttp2 does not catch itself: GOAWAY, no more input. */
static int conn_error(proxy__h2 *h, uint32_t code, const char *why)
{
    if (!h->calm) {
        gh_log_info("client %s: HTTP/2 %s: GOAWAY %s, closing", h->c->s.ip, why, nghttp2_http2_strerror(code));
        nghttp2_session_terminate_session(h->ngh, code);
        h->calm = 1;
        h->dead = 1;
        mark_dirty(h);
    }
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static void roll_window(proxy__h2 *h)
{
    uint64_t now = gh_loop_now(W(h)->loop);
    if (now - h->win_start >= WINDOW_MS) {
        h->win_start = now;
        h->win_cheap = h->win_sent = 0;
    }
    if (now - h->reset_start >= RESET_WINDOW_MS) {
        h->reset_start = now;
        h->resets = 0;
    }
}

static size_t head_mem(const gh_h2_head *hd)
{
    return hd->cap + hd->fcap * sizeof(gh_h2_field);
}

static void mem_add(proxy__h2 *h, size_t n)
{
    h->mem += n;
}

static void mem_sub(proxy__h2 *h, size_t n)
{
    h->mem = h->mem > n ? h->mem - n : 0;
}

/* ---- nghttp2 callbacks: record, never run an exchange ---- */

/* A client stream id at or above max_client_id: the bit windows move along. */
static void ids_advance(proxy__h2 *h, int32_t id)
{
    uint32_t d = (uint32_t)(id - h->max_client_id) / 2;
    h->ids_used = d >= 64 ? 0 : h->ids_used << d;
    h->ids_reset = d >= 64 ? 0 : h->ids_reset << d;
    h->ids_used |= 1;
    h->max_client_id = id;
}

/* The bit of client stream id in the windows, or 64 when it is older than they reach. */
static unsigned ids_bit(const proxy__h2 *h, int32_t id)
{
    uint32_t k = (uint32_t)(h->max_client_id - id) / 2;
    return k < 64 ? k : 64;
}

/*
 * DATA or HEADERS on a client stream id nghttp2 no longer (or never) knew, below the highest one
 * used. RFC 9113 5.1: after we reset a stream, frames in flight are ignored; on a closed stream
 * it is a connection error STREAM_CLOSED (h2spec 5.1/8-12); RFC 9113 5.1.1: a HEADERS on an id
 * that was skipped (never used) is PROTOCOL_ERROR (h2spec 5.1.1/2). 0: nghttp2 handles it.
 */
static int closed_stream_frame(proxy__h2 *h, const nghttp2_frame_hd *hd)
{
    if (!(hd->stream_id & 1) || hd->stream_id > h->max_client_id ||
        nghttp2_session_find_stream(h->ngh, hd->stream_id) != NULL)
        return 0;
    unsigned k = ids_bit(h, hd->stream_id);
    if (k < 64 && (h->ids_reset >> k & 1))
        return 0; /* nghttp2 drops it (and gives its DATA's connection window back) */
    if (k < 64 && !(h->ids_used >> k & 1) && hd->type == NGHTTP2_HEADERS)
        return conn_error(h, NGHTTP2_PROTOCOL_ERROR, "HEADERS on a stream id below the highest one used");
    return conn_error(h, NGHTTP2_STREAM_CLOSED, "a frame on a closed stream");
}

static int on_begin_frame(nghttp2_session *ngh, const nghttp2_frame_hd *hd, void *ud)
{
    proxy__h2 *h = ud;
    int cheap = 0;

    roll_window(h);
    switch (hd->type) {
    case NGHTTP2_DATA:
        cheap = hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
        break;
    case NGHTTP2_HEADERS:
        /* RFC 9113 5.1.1: a new stream's id is above every id the client used; a HEADERS below it on a
         * stream nghttp2 does not know is a connection error PROTOCOL_ERROR, which libnghttp2 1.52 lets
         * pass (it ignores the frame, h2spec 5.1.1/2). Known streams (trailers, closed ones kept) are its. */
        if (closed_stream_frame(h, hd) < 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (hd->stream_id > h->max_client_id && (hd->stream_id & 1))
            ids_advance(h, hd->stream_id);
        h->head_block = 0;
        /* fall through */
    case NGHTTP2_CONTINUATION:
        /* CONTINUATION floods (2024): a header block is bounded whatever HPACK makes of it */
        h->head_block += hd->length;
        if (h->head_block > h->cfg.max_header_list_size + HEAD_BLOCK_SLACK)
            return calm(h, "header block over max_header_list_size (CONTINUATION flood)");
        cheap = hd->type == NGHTTP2_CONTINUATION && hd->length == 0;
        break;
    case NGHTTP2_PRIORITY:
    case NGHTTP2_WINDOW_UPDATE:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PING:
    case NGHTTP2_RST_STREAM:
        cheap = 1;
        break;
    default:
        cheap = 1; /* unknown frame types are ignored (RFC 9113 5.5), not for free */
        break;
    }
    if (cheap && ++h->win_cheap > FRAME_BUDGET + 2 * h->win_sent)
        return calm(h, "control frame flood");
    return 0;
}

static int on_begin_headers(nghttp2_session *ngh, const nghttp2_frame *frame, void *ud)
{
    proxy__h2 *h = ud;
    proxy__client *c = h->c;
    h2_stream *st;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST || h->calm)
        return 0;
    if (h->mem > h->cfg.max_connection_memory || h->draining || (st = calloc(1, sizeof(*st))) == NULL) {
        /* RFC 9113 8.7: not processed, the client may retry it */
        nghttp2_submit_rst_stream(ngh, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    st->s.ops = &h2_ops;
    st->s.w = c->w;
    st->s.gen = c->s.gen;
    st->s.gen->refs++;
    st->s.listener = c->s.listener;
    st->s.tls = c->s.tls;
    st->s.peer = c->s.peer; /* the PROXY header's client, when a trusted sender gave one */
    st->s.local = c->s.local;
    st->s.local_known = c->s.local_known;
    st->s.conn = &c->conn; /* the TLS facts a PROXY v2 header to a server carries */
    memcpy(st->s.ip, c->s.ip, sizeof(st->s.ip));
    st->s.stream = (uint32_t)frame->hd.stream_id;
    st->h = h;
    st->id = frame->hd.stream_id;
    st->timer.cb = stream_timeout;
    gh_timer_set(c->w->loop, &st->timer, c->w->t->header); /* a head that never ends (slow CONTINUATION) */
    gh_h2_head_init(&st->head, h->cfg.max_header_list_size);
    st->head.extended = 1; /* SETTINGS_ENABLE_CONNECT_PROTOCOL went with our first SETTINGS */
    /* a forward proxy's listener (forward.c): :scheme + :authority name the destination, RFC 9113 8.3.1 */
    st->head.absolute = c->s.listener->forward != NULL;
    st->next = h->streams;
    if (h->streams != NULL)
        h->streams->prev = st;
    h->streams = st;
    h->nstreams++;
    mem_add(h, sizeof(*st));
    nghttp2_session_set_stream_user_data(ngh, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *ngh, const nghttp2_frame *frame, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
    proxy__h2 *h = ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    size_t before;

    if (st == NULL || h->calm || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST || st->started) {
        /* trailers: counted against the same limit, then dropped (framing never comes from trailers) */
        st->head.list_size += nlen + vlen + 32;
        if (nlen > 0 && name[0] == ':')
            st->head.error = GH_H2_MALFORMED;
    } else {
        before = head_mem(&st->head);
        gh_h2_head_add(&st->head, name, nlen, value, vlen);
        mem_add(h, head_mem(&st->head) - before);
    }
    /* HPACK bomb: a few bytes on the wire that decode to far more than the limit */
    if (st->head.list_size > 4 * h->cfg.max_header_list_size)
        return calm(h, "decoded header list far over max_header_list_size (HPACK bomb)");
    return 0;
}

static int on_frame_recv(nghttp2_session *ngh, const nghttp2_frame *frame, void *ud)
{
    proxy__h2 *h = ud;
    h2_stream *st = frame->hd.stream_id ? nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id) : NULL;
    int es = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (st == NULL)
            return 0;
        if (frame->headers.cat == NGHTTP2_HCAT_REQUEST && !st->started) {
            st->es_headers = st->in_done = (uint8_t)es;
            queue(st, W_START);
        } else {
            st->in_done = 1; /* trailers end the stream (RFC 9113 8.1) */
            st->tev |= GH_EV_READ;
            queue(st, W_RUN);
        }
        break;
    case NGHTTP2_DATA:
        if (st != NULL && es) {
            st->in_done = 1;
            st->tev |= GH_EV_READ; /* a tunnel's read() now says 0: the client's end (RFC 9113 8.5) */
            queue(st, W_RUN);
        }
        break;
    case NGHTTP2_RST_STREAM:
        /* Rapid reset (CVE-2023-44487): streams the client cancels before any answer cost it nothing
         * and us an exchange each; past a few per window, the connection goes. */
        if (st != NULL && !st->responded && ++h->resets > GH_MIN(h->cfg.max_concurrent_streams * 2, 200u))
            return calm(h, "rapid reset (streams cancelled before their response)");
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    proxy__h2 *h = ud;
    h2_stream *st = nghttp2_session_get_stream_user_data(ngh, id);

    if (st == NULL || st->drop) {
        nghttp2_session_consume(ngh, id, len); /* nobody reads it: the window goes back at once */
        return 0;
    }
    st->body_in += len;
    if (st->has_clen && st->body_in > st->clen) {
        /* RFC 9113 8.1.1: more DATA than content-length: malformed */
        nghttp2_submit_rst_stream(ngh, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
        st->drop = 1;
        nghttp2_session_consume(ngh, id, len);
        return 0;
    }
    if (st->boff > 0) { /* what the exchange took goes: the rest moves to the front */
        memmove(st->body, st->body + st->boff, st->blen - st->boff);
        st->blen -= st->boff;
        st->boff = 0;
    }
    if (st->blen + len > st->bcap) {
        /* the stream's window bounds it (nghttp2 refuses DATA past it), so it grows at most to the window */
        size_t cap = st->bcap ? st->bcap : 16384;
        char *nb;
        while (cap < st->blen + len)
            cap *= 2;
        if ((nb = realloc(st->body, cap)) == NULL) {
            nghttp2_submit_rst_stream(ngh, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
            st->drop = 1;
            nghttp2_session_consume(ngh, id, len);
            return 0;
        }
        mem_add(h, cap - st->bcap);
        st->body = nb;
        st->bcap = cap;
    }
    memcpy(st->body + st->blen, data, len);
    st->blen += len;
    st->tev |= GH_EV_READ;
    if (st->started)
        queue(st, W_RUN);
    return 0;
}

static int on_stream_close(nghttp2_session *ngh, int32_t id, uint32_t code, void *ud)
{
    h2_stream *st = nghttp2_session_get_stream_user_data(ngh, id);
    if (st == NULL)
        return 0;
    st->closed = 1;
    queue(st, W_CLOSE);
    return 0;
}

static int on_frame_send(nghttp2_session *ngh, const nghttp2_frame *frame, void *ud)
{
    proxy__h2 *h = ud;
    h2_stream *st;

    h->win_sent++;
    if (frame->hd.type == NGHTTP2_RST_STREAM && (frame->hd.stream_id & 1) && frame->hd.stream_id <= h->max_client_id) {
        unsigned k = ids_bit(h, frame->hd.stream_id);
        if (k < 64)
            h->ids_reset |= UINT64_C(1) << k; /* what the client sent before it saw this is ignored */
        return 0;
    }
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    st = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    if (st == NULL)
        return 0;
    st->eos_sent = 1;
    if (st->rst_after && !st->closed)
        nghttp2_submit_rst_stream(ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    return 0;
}

/* Frames into the connection's output buffer; the write happens once per round (flush). */
static ssize_t on_send(nghttp2_session *ngh, const uint8_t *data, size_t len, int flags, void *ud)
{
    proxy__h2 *h = ud;
    gh_buf *out = &h->c->out;
    size_t room;

    if (out->data == NULL && gh_buf_reserve_big(out) < 0 && gh_buf_reserve(out) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    gh_buf_compact(out);
    room = gh_buf_room(out);
    if (room == 0)
        return NGHTTP2_ERR_WOULDBLOCK;
    len = GH_MIN(len, room);
    memcpy(gh_buf_tail(out), data, len);
    out->end += (uint32_t)len;
    return (ssize_t)len;
}

/* A whole DATA frame, header and payload, straight from the stream's buffer (NGHTTP2_DATA_FLAG_NO_COPY). */
static int on_send_data(nghttp2_session *ngh, nghttp2_frame *frame, const uint8_t *framehd, size_t length,
                        nghttp2_data_source *source, void *ud)
{
    proxy__h2 *h = ud;
    h2_stream *st = source->ptr;
    gh_buf *out = &h->c->out;

    if (out->data == NULL && gh_buf_reserve_big(out) < 0 && gh_buf_reserve(out) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    gh_buf_compact(out);
    if (gh_buf_room(out) < 9 + length)
        return NGHTTP2_ERR_WOULDBLOCK;
    memcpy(gh_buf_tail(out), framehd, 9);
    if (length > 0) /* an empty END_STREAM frame: rbuf may hold no block at all */
        memcpy(gh_buf_tail(out) + 9, gh_buf_head(&st->rbuf), length);
    out->end += (uint32_t)(9 + length);
    gh_buf_consume(&st->rbuf, length);
    if (gh_buf_len(&st->rbuf) == 0 && st->rbuf.data != NULL) {
        mem_sub(h, st->rbuf.cap);
        gh_buf_release(&st->rbuf);
    }
    if (st->s.ex == NULL && st->timer.when != 0) { /* draining after its exchange: progress */
        if (st->rbuf.data == NULL)
            gh_timer_stop(st->s.w->loop, &st->timer);
        else
            gh_timer_set(st->s.w->loop, &st->timer, st->s.w->t->send);
    }
    /* room again, or little left: the exchange goes on (or finishes: it waits for queued() == 0) */
    if (st->want_room || (st->s.ex != NULL && gh_buf_len(&st->rbuf) <= GH_BUF_SIZE)) {
        st->want_room = 0;
        st->tev |= GH_EV_WRITE; /* a tunnel's writev() has room again */
        queue(st, W_RUN);
    }
    return 0;
}

static ssize_t read_data(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *ud)
{
    h2_stream *st = source->ptr;
    size_t n = GH_MIN(length, gh_buf_len(&st->rbuf));

    if (n == 0 && !st->out_ended) {
        st->deferred = 1; /* resumed by send_data or end */
        return NGHTTP2_ERR_DEFERRED;
    }
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->out_ended && n == gh_buf_len(&st->rbuf))
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* ---- the work list: what the callbacks recorded, run outside nghttp2 ---- */

static void stream_timeout(gh_timer *t)
{
    h2_stream *st = (h2_stream *)((char *)t - offsetof(h2_stream, timer));
    proxy__h2 *h = st->h;

    if (!st->started) {
        /* a head that never ends (RFC 9113 allows CONTINUATION in pieces): the stream goes */
        nghttp2_submit_rst_stream(h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    } else if (st->s.ex != NULL) {
        log_stream(st, "timed out (the client did not send or take bytes)");
        proxy__exchange_client_gone(st->s.ex); /* aborts: RST_STREAM; logged 499 */
    } else if (!st->closed) {
        nghttp2_submit_rst_stream(h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    }
    mark_dirty(h);
}

/* A response of the stream's own: an error page before any exchange (431, 417), the RST after it. */
static void answer(h2_stream *st, int status);

static void start(h2_stream *st)
{
    proxy__h2 *h = st->h;
    proxy__worker *w = W(h);
    gh_h1_request *r = &w->req;
    int rc;

    st->started = 1;
    h->served = 1;
    gh_timer_stop(w->loop, &st->timer);
    /* a reload: the new stream runs on the current generation (the connection follows too) */
    if (st->s.gen != w->gen) {
        if (proxy__session_regen(&st->s) < 0 && !h->draining)
            proxy__h2_drain(h->c); /* its listener is gone: this stream is answered, then GOAWAY */
        proxy__session_regen(&h->c->s);
    }
    /* accepted before a drain began: what it asks first is served, then GOAWAY (as HTTP/1's first request) */
    if (w->draining && !h->draining)
        proxy__h2_drain(h->c);
    rc = gh_h2_head_request(&st->head, st->es_headers, r);
    if (rc == 0 && st->in_done && st->body_in == 0 && r->body == GH_H1_BODY_CHUNKED)
        r->body = GH_H1_BODY_NONE; /* END_STREAM on an empty DATA frame: no body */
    if (rc == 0 && r->body == GH_H1_BODY_LENGTH &&
        (st->body_in > r->content_length || (st->in_done && st->body_in != r->content_length)))
        rc = GH_H2_MALFORMED; /* RFC 9113 8.1.1 */
    if (rc == GH_H2_MALFORMED) {
        gh_log_debug("client %s stream %d: malformed request", st->s.ip, st->id);
        nghttp2_submit_rst_stream(h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_PROTOCOL_ERROR);
        st->drop = 1;
        return;
    }
    if (rc == 0 && (r->flags & GH_H1_F_CONNECT)) {
        st->tunnel = 1; /* its DATA is kept for a tunnel (h2_detach), or dropped with its answer */
        if (r->protocol.len > 0)
            rc = ws_request(st, r);
    }
    if (rc < 0) {
        answer(st, -rc);
        return;
    }
    st->has_clen = r->body == GH_H1_BODY_LENGTH;
    st->clen = r->content_length;
    st->is_head = r->method.len == 4 && memcmp(r->method.p, "HEAD", 4) == 0;
    proxy__exchange_start(&st->s, r);
    /* the exchange serialized what it needs: the head's storage goes */
    mem_sub(h, head_mem(&st->head));
    gh_h2_head_dispose(&st->head);
}

static void run_work(proxy__h2 *h)
{
    h2_stream *st;

    while ((st = h->work) != NULL) {
        uint8_t bits = st->work;
        h->work = st->work_next;
        if (h->work == NULL)
            h->work_tail = NULL;
        st->work = 0;
        st->queued = 0;
        if ((bits & W_CLOSE) && st->tconn != NULL) {
            /* a tunnel holds the stream: it reads the end (or the reset) and its close frees the stream */
            st->tev |= GH_EV_READ | GH_EV_WRITE | (st->in_done && st->eos_sent ? 0 : GH_EV_ERROR);
            tunnel_deliver(st);
            continue;
        }
        if (bits & W_CLOSE) {
            /* the whole response went out: the exchange finishes (it waited for its last bytes to drain) */
            if (st->s.ex != NULL && st->eos_sent)
                proxy__exchange_run(st->s.ex);
            /* else the client reset it; streams opened and reset within one read end here, never started */
            if (st->s.ex != NULL)
                proxy__exchange_client_gone(st->s.ex);
            stream_free(st);
            continue;
        }
        if ((bits & W_START) && !st->started)
            start(st);
        else if ((bits & W_RUN) && st->s.ex != NULL)
            proxy__exchange_run(st->s.ex);
        else if ((bits & W_RUN) && st->tconn != NULL)
            tunnel_deliver(st);
    }
}

/* ---- the session ops ---- */

/* Header fields of an HTTP/1 response head (ours, from headers.c) as HTTP/2 fields: lower case, no hop-by-hop. */
#define HEAD_TEXT (4 * GH_H1_MAX_HEAD)
static char head_text[HEAD_TEXT]; /* one worker, one thread: a scratch per process */
static gh_h1_response head_res;

static int submit_text(h2_stream *st, char *text, size_t len, int has_body, size_t *head_len)
{
    proxy__h2 *h = st->h;
    nghttp2_nv nv[GH_H1_MAX_HEADERS + 1];
    char status[4];
    size_t n = 0;
    int hl = gh_h1_parse_response(text, len, 1, &head_res);
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_data};

    if (hl <= 0)
        return GH_ERROR;
    status[0] = (char)('0' + head_res.status / 100);
    status[1] = (char)('0' + head_res.status / 10 % 10);
    status[2] = (char)('0' + head_res.status % 10);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < head_res.nheaders && n < GH_ARRAY_LEN(nv); i++) {
        gh_h1_header *f = &head_res.headers[i];
        /* Proxy-Authenticate is hop-by-hop, and a forward proxy's 407 is that hop's own (RFC 9110 11.7.1) */
        if (f->hop && f->kind != GH_HDR_PROXY_AUTHENTICATE)
            continue;
        for (size_t k = 0; k < f->name.len; k++) {
            char ch = f->name.p[k];
            if (ch >= 'A' && ch <= 'Z')
                ((char *)f->name.p)[k] = (char)(ch + 32); /* RFC 9113 8.2.1: lower case on the wire */
        }
        nv[n++] =
            (nghttp2_nv){(uint8_t *)f->name.p, (uint8_t *)f->value.p, f->name.len, f->value.len, NGHTTP2_NV_FLAG_NONE};
    }
    if (nghttp2_submit_response(h->ngh, st->id, nv, n, has_body ? &dp : NULL) != 0)
        return GH_ERROR;
    st->responded = 1;
    if (!has_body)
        st->out_ended = 1;
    if (head_len != NULL)
        *head_len = (size_t)hl;
    mark_dirty(h);
    return GH_OK;
}

/* ---- WebSocket over HTTP/2 (RFC 8441): the HTTP/1.1 upgrade it stands for ---- */

/*
 * An extended CONNECT with :protocol websocket as the HTTP/1.1 opening
 * handshake (RFC 6455 4.1) it asks for, so that the exchange routes, checks
 * (gh_ws_check_request: version 13, else 426) and forwards it as it does an
 * HTTP/1.1 one: GET, Connection: Upgrade, Upgrade: websocket (both hop-by-hop
 * here: headers.c writes its own for a checked upgrade) and a
 * Sec-WebSocket-Key of ours (RFC 8441 5: the HTTP/2 client sends none and
 * gets no accept; any key it sent is dropped), whose accept the 101 must
 * carry (tunnel_answer). 0, -501 (another :protocol: nothing here speaks it),
 * -431 (no room for the three fields) or -500 (no randomness).
 */
static int ws_request(h2_stream *st, gh_h1_request *r)
{
    size_t k = 0;

    if (!gh_h1_str_ieq(r->protocol, "websocket"))
        return -501;
    if (gh_ws_key_new(st->ws_key) < 0)
        return -500;
    for (size_t i = 0; i < r->nheaders; i++)
        if (!gh_h1_str_ieq(r->headers[i].name, "sec-websocket-key"))
            r->headers[k++] = r->headers[i];
    r->nheaders = k;
    if (r->nheaders + 3 > GH_H1_MAX_HEADERS)
        return -431;
    r->headers[r->nheaders++] = (gh_h1_header){{"connection", 10}, {"upgrade", 7}, GH_HDR_CONNECTION, 1};
    r->headers[r->nheaders++] = (gh_h1_header){{"upgrade", 7}, {"websocket", 9}, GH_HDR_UPGRADE, 1};
    r->headers[r->nheaders++] = (gh_h1_header){{"sec-websocket-key", 17}, {st->ws_key, GH_WS_KEY_LEN}, GH_HDR_OTHER, 0};
    r->method = (gh_h1_str){"GET", 3};
    r->flags |= GH_H1_F_UPGRADE | GH_H1_F_WS_CONNECT;
    st->ws = 1;
    return 0;
}

/* Fields of a 101 that are the HTTP/1.1 handshake's own, not the client's (RFC 8441 5). */
static int ws_hop(const gh_h1_header *f)
{
    return f->kind == GH_HDR_CONNECTION || f->kind == GH_HDR_UPGRADE || gh_h1_str_ieq(f->name, "sec-websocket-accept");
}

/*
 * The answer to a CONNECT stream's request: 1 when it opens the tunnel (a
 * 2xx for a plain CONNECT; for a WebSocket, the 101 whose Sec-WebSocket-Accept
 * matches our key), 0 an ordinary answer that ends the stream, -1 one that
 * must not reach the client (a 2xx to a WebSocket, which it would take for
 * the tunnel open; a 101 with a wrong or missing accept: the server did not
 * take our handshake).
 */
static int tunnel_answer(h2_stream *st, const gh_h1_response *res)
{
    char want[GH_WS_ACCEPT_LEN + 1];
    int naccept = 0, good = 0;

    if (!st->ws)
        return res->status >= 200 && res->status < 300;
    if (res->status >= 200 && res->status < 300) {
        gh_log_warn("client %s stream %d: the server answered %d to a WebSocket upgrade, not 101", st->s.ip, st->id,
                    res->status);
        return -1;
    }
    if (res->status != 101)
        return 0;
    if (gh_ws_accept((gh_h1_str){st->ws_key, GH_WS_KEY_LEN}, want) < 0)
        return -1;
    for (size_t i = 0; i < res->nheaders; i++)
        if (gh_h1_str_ieq(res->headers[i].name, "sec-websocket-accept")) {
            naccept++;
            good = res->headers[i].value.len == GH_WS_ACCEPT_LEN &&
                   memcmp(res->headers[i].value.p, want, GH_WS_ACCEPT_LEN) == 0;
        }
    if (naccept != 1 || !good) {
        gh_log_warn("client %s stream %d: the server's 101 has %s Sec-WebSocket-Accept for our key", st->s.ip, st->id,
                    naccept == 0 ? "no" : "a wrong");
        return -1;
    }
    return 1;
}

/* A field name as HTTP/2 sends it (RFC 9113 8.2.1: lower case), copied lowered into *scratch; NULL: no room. */
static uint8_t *lower_name(const char *name, size_t len, char **scratch, const char *end)
{
    char *out = *scratch;

    if ((size_t)(end - out) < len)
        return NULL;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)(name[i] | (name[i] >= 'A' && name[i] <= 'Z' ? 0x20 : 0));
    *scratch += len;
    return (uint8_t *)out;
}

/*
 * The upstream's response head as HEADERS, converted directly (no HTTP/1 text in between): the
 * fields of proxy__resp_walk (headers.c), the walk HTTP/1's proxy__response_head makes too.
 */
static int h2_send_head(proxy__session *s, const gh_h1_response *res, const gh_cfg_route *route)
{
    h2_stream *st = ST(s);
    nghttp2_nv nv[2 * GH_H1_MAX_HEADERS + 1];
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_data};
    char status[4], *scratch = head_text;
    const char *end = head_text + sizeof(head_text);
    size_t n = 0;
    proxy__resp_walk w;
    const gh_h1_header *from;
    gh_h1_str fname, fvalue;
    int has_body = !(res->body == GH_H1_BODY_NONE || (res->body == GH_H1_BODY_LENGTH && res->content_length == 0));
    int opens = 0, code = res->status;

    if (st->closed || res->status < 100 || res->status > 999)
        return GH_ERROR;
    if (st->tunnel && (opens = tunnel_answer(st, res)) < 0)
        return GH_ERROR; /* the exchange answers 502: never a tunnel */
    if (opens) {
        code = st->ws ? 200 : code; /* RFC 8441 5: the 101 of the HTTP/1.1 upgrade is a 2xx here */
        has_body = 1;               /* no END_STREAM: the stream goes on as the tunnel */
    }
    status[0] = (char)('0' + code / 100);
    status[1] = (char)('0' + code / 10 % 10);
    status[2] = (char)('0' + code % 10);
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    proxy__resp_walk_init(&w, res, route, st->s.tls);
    while (proxy__resp_walk_next(&w, &fname, &fvalue, &from)) {
        if (opens && from != NULL && ws_hop(from))
            continue;
        uint8_t *name = lower_name(fname.p, fname.len, &scratch, end);
        if (name == NULL || n == GH_ARRAY_LEN(nv))
            return GH_ERROR;
        nv[n++] = (nghttp2_nv){name, (uint8_t *)fvalue.p, fname.len, fvalue.len, NGHTTP2_NV_FLAG_NONE};
    }
    has_body = has_body && !st->is_head;
    if (nghttp2_submit_response(st->h->ngh, st->id, nv, n, has_body ? &dp : NULL) != 0)
        return GH_ERROR;
    st->responded = 1;
    if (!has_body)
        st->out_ended = 1;
    mark_dirty(st->h);
    return GH_OK;
}

/* Room in rbuf: a pool block (held only while it has bytes), counted in the connection's memory. */
static int rbuf_reserve(h2_stream *st, size_t want)
{
    if (st->rbuf.data != NULL)
        return 0;
    if (want > GH_BUF_SIZE ? gh_buf_reserve_large(&st->rbuf, want) < 0 : gh_buf_reserve(&st->rbuf) < 0)
        return -1;
    mem_add(st->h, st->rbuf.cap);
    return 0;
}

static void resume(h2_stream *st)
{
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h->ngh, st->id);
    }
    mark_dirty(st->h);
}

static ssize_t h2_send_data(proxy__session *s, const char *p, size_t n)
{
    h2_stream *st = ST(s);
    size_t room;

    if (st->closed)
        return GH_ERROR;
    if (rbuf_reserve(st, 0) < 0)
        return GH_ERROR;
    gh_buf_compact(&st->rbuf);
    room = gh_buf_room(&st->rbuf);
    /* A large response takes a big block (pooled, given back once drained), within half the connection's
     * memory: eight DATA frames per round instead of one, and big reads from the upstream. */
    if (room < n && st->rbuf.cap == GH_BUF_SIZE &&
        st->h->mem + GH_BUF_BIG_SIZE <= st->h->cfg.max_connection_memory / 2) {
        uint32_t before = st->rbuf.cap;
        if (gh_buf_reserve_big(&st->rbuf) == 0)
            mem_add(st->h, st->rbuf.cap - before);
        room = gh_buf_room(&st->rbuf);
    }
    if (room == 0) {
        st->want_room = 1;
        return GH_AGAIN;
    }
    n = GH_MIN(n, room);
    memcpy(gh_buf_tail(&st->rbuf), p, n);
    st->rbuf.end += (uint32_t)n;
    resume(st);
    return (ssize_t)n;
}

static int h2_end(proxy__session *s)
{
    h2_stream *st = ST(s);
    st->out_ended = 1;
    resume(st);
    return GH_OK;
}

static int h2_flush(proxy__session *s)
{
    return 0; /* the connection's flush is batched (proxy__h2_flush_dirty) */
}

/*
 * What the exchange waits on: up to a block's worth in rbuf counts as sent. The stream drains the rest
 * by itself (its own send timer, h2_done), so the exchange finishes, and its upstream goes back to the
 * pool, as soon as the response is all in rbuf; and a client that keeps up lets the upstream be read
 * in big blocks (h1_upstream.c reads so when nothing is queued).
 */
static size_t h2_queued(const proxy__session *s)
{
    const h2_stream *st = (const h2_stream *)((const char *)s - offsetof(h2_stream, s));
    size_t n = gh_buf_len(&st->rbuf);
    return n <= GH_BUF_SIZE ? 0 : n;
}

/* The body is not read whole: it is dropped as it comes, and the stream reset once the response is out. */
static void unread_body(h2_stream *st)
{
    proxy__h2 *h = st->h;
    if (st->blen > st->boff)
        nghttp2_session_consume(h->ngh, st->id, st->blen - st->boff);
    st->boff = st->blen = 0;
    if (st->in_done)
        return; /* it all came: nothing more to stop */
    st->drop = 1;
    if (st->closed)
        return;
    if (st->eos_sent)
        nghttp2_submit_rst_stream(h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    else
        st->rst_after = 1;
    mark_dirty(h);
}

/* A whole response of ours (headers.c wrote it as HTTP/1): head as HEADERS, body into rbuf. */
static int send_whole(h2_stream *st, char *text, size_t len, int has_body)
{
    size_t hl = 0;

    if (submit_text(st, text, len, has_body, &hl) < 0)
        return GH_ERROR;
    if (has_body) {
        if (rbuf_reserve(st, len - hl) < 0)
            return GH_ERROR;
        gh_buf_compact(&st->rbuf);
        if (gh_buf_room(&st->rbuf) < len - hl)
            return GH_ERROR;
        memcpy(gh_buf_tail(&st->rbuf), text + hl, len - hl);
        st->rbuf.end += (uint32_t)(len - hl);
        st->out_ended = 1;
    }
    return GH_OK;
}

static int h2_send_local(proxy__session *s, proxy__local *l)
{
    h2_stream *st = ST(s);
    int bodiless = l->status < 200 || l->status == 204 || l->status == 304;
    int n;

    if (st->closed)
        return GH_ERROR;
    l->close = 0;
    n = proxy__local_response(head_text, sizeof(head_text), l);
    if (n < 0)
        return GH_ERROR;
    unread_body(st);
    return send_whole(st, head_text, (size_t)n, !bodiless && !l->head && l->body_len > 0);
}

static void answer(h2_stream *st, int status)
{
    char text[512];
    int n = proxy__error_response(text, sizeof(text), status, st->is_head);

    gh_log_debug("client %s stream %d: %d", st->s.ip, st->id, status);
    unread_body(st);
    if (n < 0 || st->closed || send_whole(st, text, (size_t)n, !st->is_head) < 0)
        nghttp2_submit_rst_stream(st->h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    mark_dirty(st->h);
}

static int h2_send_continue(proxy__session *s)
{
    h2_stream *st = ST(s);
    static const nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};

    if (st->closed || st->in_done || st->blen > st->boff || st->body_in > 0)
        return 0; /* the body is coming already */
    if (nghttp2_submit_headers(st->h->ngh, NGHTTP2_FLAG_NONE, st->id, NULL, &nv, 1, NULL) < 0)
        return 0;
    mark_dirty(st->h);
    return 1;
}

static ssize_t h2_read_body(proxy__session *s, char *dst, size_t cap)
{
    h2_stream *st = ST(s);
    size_t n = GH_MIN(cap, st->blen - st->boff);

    if (st->tunnel)
        return 0; /* a CONNECT's DATA waits for its tunnel (h2_detach), never an upstream request body */
    if (n > 0) {
        memcpy(dst, st->body + st->boff, n);
        st->boff += n;
        if (st->boff == st->blen)
            st->boff = st->blen = 0;
        /* flow control: the window opens only as the upstream side takes the bytes */
        nghttp2_session_consume(st->h->ngh, st->id, n);
        mark_dirty(st->h);
        return (ssize_t)n;
    }
    if (st->closed && !st->in_done)
        return GH_ERROR; /* reset by the client in the middle of its body */
    return 0;
}

static int h2_body_done(const proxy__session *s)
{
    const h2_stream *st = (const h2_stream *)((const char *)s - offsetof(h2_stream, s));
    return st->tunnel || (st->in_done && st->boff == st->blen);
}

static int h2_arm(proxy__session *s, int progress, int want_body)
{
    h2_stream *st = ST(s);
    const gh_cfg_timeouts *t = st->s.w->t;
    int wait_write = gh_buf_len(&st->rbuf) > 0;
    int wait_read = want_body && !st->in_done && st->blen == st->boff;

    if (wait_write || wait_read) {
        if (progress || st->timer.when == 0) {
            st->timer.cb = stream_timeout;
            gh_timer_set(st->s.w->loop, &st->timer, wait_write ? t->send : t->body);
        }
    } else {
        gh_timer_stop(st->s.w->loop, &st->timer);
    }
    return wait_write;
}

static void free_exchange(h2_stream *st)
{
    proxy__exchange *ex = st->s.ex;
    st->s.ex = NULL;
    proxy__exchange_free(ex);
    gh_timer_stop(st->s.w->loop, &st->timer);
}

static void h2_done(proxy__session *s)
{
    h2_stream *st = ST(s);
    free_exchange(st);
    unread_body(st); /* the server answered before the whole body: RST_STREAM NO_ERROR after the response */
    if (gh_buf_len(&st->rbuf) > 0 && !st->closed) {
        /* the rest of the response drains without the exchange: a client that takes none of it is reset */
        st->timer.cb = stream_timeout;
        gh_timer_set(st->s.w->loop, &st->timer, st->s.w->t->send);
    }
    mark_dirty(st->h);
}

static void h2_fail(proxy__session *s, int status)
{
    h2_stream *st = ST(s);
    free_exchange(st);
    if (!st->closed)
        answer(st, status); /* this stream only: the connection lives */
}

static void h2_abort(proxy__session *s)
{
    h2_stream *st = ST(s);
    free_exchange(st);
    st->drop = 1;
    if (!st->closed)
        nghttp2_submit_rst_stream(st->h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
    mark_dirty(st->h);
}

static void h2_dispatch(proxy__session *s)
{
    mark_dirty(ST(s)->h);
}

/* ---- a stream as a tunnel side ----
 *
 * A CONNECT stream (RFC 9113 8.5; RFC 8441 for WebSocket) becomes one side of
 * the same tunnel as an HTTP/1.1 upgrade (tunnel.c) through a gh_conn of its
 * own with no socket (gh_conn_ops.no_socket): read() takes the DATA received
 * and gives its flow-control credit back only as the tunnel takes it
 * (nghttp2_session_consume: a slow backend slows its stream, the stream's
 * window bounds what waits here); writev() appends to rbuf, one pool block
 * that nghttp2 drains as the client's window allows (GH_AGAIN when full);
 * END_STREAM from the client is read() 0; shutdown() is our END_STREAM after
 * what rbuf holds; a reset, or the connection going, is GH_ERROR. Events come
 * from the work list (outside nghttp2's callbacks) through the conn's io.cb.
 *
 * Lifetime: while a tunnel holds the conn (st->tconn), the stream is never
 * freed: a close of the stream by nghttp2 is an event for the tunnel, and the
 * connection going leaves it an orphan (proxy__h2_free). Closing the conn
 * (gh_conn_close -> tun_dispose) lets go: a stream that ended both ways drains
 * its END_STREAM (within the send timeout), any other is reset (CANCEL); it is
 * freed once nghttp2 closed it.
 */
#define TUN_FD 0x7fffffff /* ">= 0 while open": a no_socket conn's fd is never used */

static void stream_unlink(h2_stream *st);

static void tunnel_deliver(h2_stream *st)
{
    unsigned ev = st->tev;

    st->tev = 0;
    if (st->tconn != NULL && ev != 0)
        st->tconn->io.cb(&st->tconn->io, ev); /* the tunnel's pumps; they may close the conn (tun_dispose) */
}

static ssize_t tun_read(gh_conn *c, void *buf, size_t len)
{
    h2_stream *st = c->impl;
    size_t n;

    if (st->orphan || (st->closed && !st->in_done))
        return GH_ERROR; /* reset by the client, or its connection went */
    n = GH_MIN(len, st->blen - st->boff);
    if (n > 0) {
        memcpy(buf, st->body + st->boff, n);
        st->boff += n;
        if (st->boff == st->blen)
            st->boff = st->blen = 0;
        /* flow control: WINDOW_UPDATE only for what the tunnel took */
        if (st->closed)
            nghttp2_session_consume_connection(st->h->ngh, n);
        else
            nghttp2_session_consume(st->h->ngh, st->id, n);
        mark_dirty(st->h);
        return (ssize_t)n;
    }
    if (st->in_done)
        return 0; /* END_STREAM: the client's half-close */
    c->can_read = 0;
    return GH_AGAIN;
}

static ssize_t tun_writev(gh_conn *c, const struct iovec *iov, int iovcnt)
{
    h2_stream *st = c->impl;
    size_t room, n = 0;

    if (st->orphan || st->closed || st->out_ended)
        return GH_ERROR;
    if (rbuf_reserve(st, 0) < 0)
        return GH_ERROR;
    gh_buf_compact(&st->rbuf);
    room = gh_buf_room(&st->rbuf);
    if (room == 0) {
        st->want_room = 1; /* on_send_data: GH_EV_WRITE once DATA took some */
        c->can_write = 0;
        return GH_AGAIN;
    }
    for (int i = 0; i < iovcnt && n < room; i++) {
        size_t k = GH_MIN(iov[i].iov_len, room - n);
        memcpy(gh_buf_tail(&st->rbuf) + n, iov[i].iov_base, k);
        n += k;
    }
    st->rbuf.end += (uint32_t)n;
    resume(st);
    return (ssize_t)n;
}

static int tun_handshake(gh_conn *c)
{
    return GH_OK;
}

/* DATA waiting, the end, or an error: readable without an event. */
static int tun_pending(const gh_conn *c)
{
    const h2_stream *st = c->impl;
    return st->orphan || st->closed || st->in_done || st->blen > st->boff;
}

static void tun_shutdown(gh_conn *c)
{
    h2_stream *st = c->impl;

    if (st->orphan || st->closed || st->out_ended)
        return;
    st->out_ended = 1; /* read_data: END_STREAM with the last of rbuf */
    resume(st);
}

static void tun_idle(gh_conn *c) {}

static const char *tun_alpn(const gh_conn *c, size_t *len)
{
    *len = 0;
    return NULL;
}

static void tun_moved(gh_conn *c)
{
    ((h2_stream *)c->impl)->tconn = c;
}

/* Takes st out of the work list (the tunnel may let go while the stream waits there). */
static void dequeue(h2_stream *st)
{
    proxy__h2 *h = st->h;
    h2_stream *prev = NULL;

    if (!st->queued)
        return;
    for (h2_stream *p = h->work; p != NULL; prev = p, p = p->work_next)
        if (p == st) {
            if (prev != NULL)
                prev->work_next = st->work_next;
            else
                h->work = st->work_next;
            if (h->work_tail == st)
                h->work_tail = prev;
            break;
        }
    st->queued = 0;
    st->work = 0;
}

static void tun_dispose(gh_conn *c)
{
    h2_stream *st = c->impl;
    proxy__h2 *h = st->h;

    st->tconn = NULL;
    if (st->orphan) {
        gh_timer_stop(st->s.w->loop, &st->timer);
        gh_loop_release(st->s.w->loop, st);
        return;
    }
    if (st->blen > st->boff) { /* unread DATA: its connection window goes back */
        if (st->closed)
            nghttp2_session_consume_connection(h->ngh, st->blen - st->boff);
        else
            nghttp2_session_consume(h->ngh, st->id, st->blen - st->boff);
    }
    st->boff = st->blen = 0;
    st->drop = 1; /* DATA still coming is consumed as it comes */
    st->released = 1;
    mark_dirty(h);
    if (st->closed) {
        dequeue(st);
        stream_free(st);
        return;
    }
    if (st->in_done && st->out_ended) {
        /* ended both ways: the END_STREAM goes after rbuf; a client that takes none of it is reset */
        st->timer.cb = stream_timeout;
        gh_timer_set(st->s.w->loop, &st->timer, st->s.w->t->send);
        return;
    }
    nghttp2_submit_rst_stream(h->ngh, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL); /* RFC 9113 8.5 */
}

static const gh_conn_ops tun_ops = {
    .name = "h2-stream",
    .read = tun_read,
    .writev = tun_writev,
    .handshake = tun_handshake,
    .pending = tun_pending,
    .shutdown = tun_shutdown,
    .idle = tun_idle,
    .alpn = tun_alpn,
    .dispose = tun_dispose,
    .moved = tun_moved,
    .no_socket = 1,
};

/* The connection went: its error reaches the tunnel from the loop, not from inside proxy__h2_free. */
static void orphan_event(gh_timer *t)
{
    h2_stream *st = (h2_stream *)((char *)t - offsetof(h2_stream, timer));

    st->tev = GH_EV_READ | GH_EV_WRITE | GH_EV_ERROR;
    tunnel_deliver(st);
}

static void orphan(h2_stream *st)
{
    stream_unlink(st); /* all but the struct, which the tunnel's conn still names */
    st->h = NULL;
    st->orphan = 1;
    st->body = NULL;
    st->boff = st->blen = st->bcap = 0;
    st->timer.cb = orphan_event;
    gh_timer_set(st->s.w->loop, &st->timer, 0);
}

/*
 * A CONNECT stream's conn for a tunnel (RFC 9113 8.5, RFC 8441): its DATA so
 * far stays in the stream, read through the conn (*in is left empty), and its
 * answer went to nghttp2 as HEADERS (send_head: a 2xx leaves the stream open;
 * *out is left empty). The exchange is freed; the stream lives on as the
 * tunnel's until it closes the conn. GH_ERROR: not a CONNECT, or already
 * closed or ended by us (then the caller aborts the exchange: RST_STREAM).
 */
static int h2_detach(proxy__session *s, gh_conn *dst, gh_io_cb cb, gh_buf *in, gh_buf *out)
{
    h2_stream *st = ST(s);

    if (!st->tunnel || st->closed || st->out_ended || st->tconn != NULL)
        return GH_ERROR;
    *dst = (gh_conn){.io = {TUN_FD, cb}, .ops = &tun_ops, .impl = st, .can_write = 1};
    dst->can_read = (uint8_t)tun_pending(dst);
    st->tconn = dst;
    st->h->had_tunnel = 1;
    free_exchange(st); /* also stops the stream's timer: the tunnel's idle timeout rules now */
    mark_dirty(st->h);
    return GH_OK;
}

static const proxy__session_ops h2_ops = {
    .send_head = h2_send_head,
    .send_data = h2_send_data,
    .end = h2_end,
    .flush = h2_flush,
    .queued = h2_queued,
    .send_local = h2_send_local,
    .send_continue = h2_send_continue,
    .read_body = h2_read_body,
    .body_done = h2_body_done,
    .arm = h2_arm,
    .done = h2_done,
    .fail = h2_fail,
    .abort = h2_abort,
    .dispatch = h2_dispatch,
    .detach = h2_detach,
};

/* ---- streams and the connection ---- */

static void stream_free(h2_stream *st)
{
    stream_unlink(st);
    gh_loop_release(st->s.w->loop, st);
}

/* Everything of a stream but its struct: its exchange, nghttp2's pointer, buffers, generation, list place. */
static void stream_unlink(h2_stream *st)
{
    proxy__h2 *h = st->h;

    if (st->s.ex != NULL) {
        proxy__exchange *ex = st->s.ex;
        st->s.ex = NULL;
        if (ex->status == 0)
            ex->status = 499;
        proxy__access_end(ex);
        proxy__exchange_free(ex);
    }
    if (!st->closed)
        nghttp2_session_set_stream_user_data(h->ngh, st->id, NULL);
    else if (st->blen > st->boff)
        nghttp2_session_consume_connection(h->ngh, st->blen - st->boff);
    gh_timer_stop(st->s.w->loop, &st->timer);
    mem_sub(h, sizeof(*st) + st->bcap + head_mem(&st->head) + st->rbuf.cap);
    gh_h2_head_dispose(&st->head);
    free(st->body);
    gh_buf_release(&st->rbuf);
    proxy__session_drop_own(&st->s); /* before the generation goes: the connection refers to its pool */
    proxy__gen_unref(st->s.gen);
    if (st->prev != NULL)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next != NULL)
        st->next->prev = st->prev;
    h->nstreams--;
}

static void go_idle(proxy__h2 *h);

static void arm_conn(proxy__h2 *h)
{
    proxy__client *c = h->c;
    const gh_cfg_timeouts *t = c->w->t;
    int kind = T_NONE;

    if (gh_buf_len(&c->out) > 0)
        kind = T_SEND; /* a peer that takes no bytes for `send`: closed (slow reads, zero windows) */
    else if (h->nstreams == 0)
        kind = h->timer_kind == T_IDLE || t->keepalive <= IDLE_GRACE_MS ? T_IDLE : T_GRACE;
    if (h->released && kind == T_IDLE) {
        /* a frame read (or sent) while idle took record buffers again: they go now (no system call),
         * their pages with the next heap trim */
        gh_conn_idle(&c->conn);
        c->w->heap_dirty = 1;
    }
    if (kind == h->timer_kind)
        return;
    if (kind == T_NONE)
        h->released = 0;
    if (kind == T_GRACE && h->served && !h->idled) {
        h->idled = 1; /* the first idle after a stream: no grace (see go_idle) */
        go_idle(h);
        kind = T_IDLE;
    }
    h->timer_kind = (uint8_t)kind;
    if (kind == T_NONE)
        gh_timer_stop(c->w->loop, &c->timer);
    else
        gh_timer_set(c->w->loop, &c->timer, kind == T_GRACE ? IDLE_GRACE_MS : kind == T_IDLE ? t->keepalive : t->send);
}

/* Writes c->out: 1 all of it, 0 some left (wait for room), -1 failed. */
static int write_out(proxy__h2 *h)
{
    proxy__client *c = h->c;

    while (gh_buf_len(&c->out) > 0) {
        if (!c->conn.can_write)
            return 0;
        ssize_t n = gh_conn_write(&c->conn, gh_buf_head(&c->out), gh_buf_len(&c->out));
        if (n == GH_AGAIN)
            return 0;
        if (n < 0)
            return -1;
        gh_buf_consume(&c->out, (size_t)n);
        if (h->timer_kind == T_SEND)
            h->timer_kind = T_NONE; /* progress: the send timeout starts again */
    }
    gh_buf_trim(&c->out);
    return 1;
}

/*
 * Sends what nghttp2 has and runs what sending finished (drained buffers let
 * exchanges go on), round after round, writing only when the output buffer
 * is nearly full or nothing more is coming: a large response leaves in writes
 * of up to a big block, not one per DATA frame.
 */
static void flush(proxy__h2 *h)
{
    gh_buf *out = &h->c->out;
    int w = 1;

    for (int round = 0; round < FLUSH_ROUNDS; round++) {
        size_t before = gh_buf_len(out);
        if (nghttp2_session_send(h->ngh) != 0) {
            h->dead = 1;
            break;
        }
        int sent = gh_buf_len(out) != before || h->work != NULL;
        run_work(h);
        int idle = !sent || (h->work == NULL && !nghttp2_session_want_write(h->ngh));
        if (!idle && out->data != NULL && gh_buf_room(out) + out->start >= 9 + 16384)
            continue; /* room for another frame: fill it before writing */
        if ((w = write_out(h)) < 0) {
            conn_close(h);
            return;
        }
        if (w == 0 || idle)
            break;
    }
    if (w > 0 && gh_buf_len(out) > 0 && (w = write_out(h)) < 0) {
        conn_close(h);
        return;
    }
    if (gh_buf_len(out) == 0 &&
        (h->dead || (!nghttp2_session_want_read(h->ngh) && !nghttp2_session_want_write(h->ngh)))) {
        conn_close(h);
        return;
    }
    arm_conn(h);
}

/* Hands what c->in holds to nghttp2 and empties it, then runs the streams it started. */
/*
 * How many of the len bytes at p nghttp2 may take before the next check: up to and with a DATA
 * frame's header (*data set, the header in hd), or all of them.
 */
static size_t scan(proxy__h2 *h, const uint8_t *p, size_t len, nghttp2_frame_hd *hd, int *data)
{
    size_t i = 0;

    *data = 0;
    while (i < len) {
        if (h->scan_left > 0) {
            size_t n = GH_MIN((size_t)h->scan_left, len - i);
            h->scan_left -= (uint32_t)n;
            i += n;
            continue;
        }
        h->scan_hd[h->scan_hlen++] = p[i++];
        if (h->scan_hlen < 9)
            continue;
        h->scan_hlen = 0;
        const uint8_t *b = h->scan_hd;
        h->scan_left = (uint32_t)b[0] << 16 | (uint32_t)b[1] << 8 | b[2];
        if (b[3] == NGHTTP2_DATA) {
            hd->length = h->scan_left;
            hd->type = NGHTTP2_DATA;
            hd->flags = b[4];
            hd->stream_id =
                (int32_t)(((uint32_t)b[5] << 24 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 8 | b[8]) & 0x7fffffffu);
            *data = 1;
            return i;
        }
    }
    return i;
}

static void feed(proxy__h2 *h)
{
    proxy__client *c = h->c;
    const uint8_t *p = (const uint8_t *)gh_buf_head(&c->in);
    size_t len = gh_buf_len(&c->in);

    while (len > 0 && !h->dead) {
        nghttp2_frame_hd hd;
        int data;
        size_t n = scan(h, p, len, &hd, &data);
        /* up to the DATA header's last byte but one: nghttp2 has seen every frame before it */
        size_t first = data ? n - 1 : n;
        ssize_t r = first > 0 ? nghttp2_session_mem_recv(h->ngh, p, first) : 0;
        if (r >= 0 && data && closed_stream_frame(h, &hd) == 0)
            r = nghttp2_session_mem_recv(h->ngh, p + first, 1);
        if (r < 0) {
            if (!h->calm)
                gh_log_debug("client %s: HTTP/2: %s", c->s.ip, nghttp2_strerror((int)r));
            h->dead = 1;
        }
        p += n;
        len -= n;
    }
    gh_buf_consume(&c->in, gh_buf_len(&c->in));
    run_work(h);
}

/* Reads and hands frames to nghttp2, then runs the streams they started. */
static void read_in(proxy__h2 *h)
{
    proxy__client *c = h->c;

    h->more_input = 0;
    /* Bytes read before the session existed (the preface sniff on a plain listener read the client's
     * first frames with it): the socket is edge-triggered and may never say readable again for them. */
    if (gh_buf_len(&c->in) > 0 && !h->calm && !h->dead)
        feed(h);
    for (int i = 0; i < READS_PER_ROUND; i++) {
        if (h->calm || h->dead)
            return;
        /* A client that does not read what we send gets no more of its input read (PING, SETTINGS...). */
        if (gh_buf_len(&c->out) > GH_BUF_SIZE && !c->conn.can_write)
            return;
        int r = proxy__client_read(c);
        if (r < 0) {
            h->dead = 1; /* closed or failed: what is in flight ends with it */
            return;
        }
        if (r == 0)
            return;
        feed(h);
    }
    h->more_input = 1;
}

/* An empty input block goes back to the pool between reads. */
static void read_round(proxy__h2 *h)
{
    read_in(h);
    if (h->c->h2 == h)
        gh_buf_trim(&h->c->in);
}

static void conn_close(proxy__h2 *h)
{
    proxy__client *c = h->c;
    proxy__client_linger(c); /* frees h (proxy__h2_free) */
}

void proxy__h2_dispatch(proxy__client *c)
{
    proxy__h2 *h = c->h2;
    if (h == NULL)
        return;
    read_round(h);
    mark_dirty(h);
}

void proxy__h2_flush_dirty(proxy__worker *w)
{
    for (int round = 0; round < 4 && w->h2_dirty != NULL; round++) {
        proxy__h2 *list = w->h2_dirty;
        w->h2_dirty = NULL;
        while (list != NULL) {
            proxy__h2 *h = list;
            list = h->dirty_next;
            h->dirty = 0;
            if (h->more_input) {
                read_round(h);
                /* a fair share read again: the rest waits in the socket, and edge-triggered epoll
                 * will not report it again (before flush, which unlinks h if it closes it) */
                if (h->more_input)
                    mark_dirty(h);
            }
            flush(h); /* may close it */
        }
    }
    if (w->h2_dirty != NULL)
        gh_timer_set(w->loop, &w->h2_kick, 0); /* left for the next iteration: epoll must not sleep */
}

static void on_kick(gh_timer *t)
{
    (void)t; /* the idle hook that follows does the work */
}

static nghttp2_session_callbacks *callbacks(void)
{
    static nghttp2_session_callbacks *cbs;
    if (cbs != NULL || nghttp2_session_callbacks_new(&cbs) != 0)
        return cbs;
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    return cbs;
}

static nghttp2_option *options(void)
{
    static nghttp2_option *opt;
    if (opt != NULL || nghttp2_option_new(&opt) != 0)
        return opt;
    /* WINDOW_UPDATE only as the exchange takes request body bytes (nghttp2_session_consume) */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* No closed streams kept: nghttp2 would keep up to max_concurrent_streams of them per connection,
     * idle or not; closed_stream_frame tells closed from never used ids (RFC 9113 5.1, 5.1.1). */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, 1000); /* SETTINGS and PING floods: queued ACKs bounded */
    nghttp2_option_set_max_settings(opt, 32);
    /* Responses are encoded from the static table and Huffman only, as nginx and HAProxy do: no
     * dynamic table of our own to keep per idle connection (~1.5 KiB measured, scripts/bench_h2.sh). */
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 0);
    return opt;
}

int proxy__h2_start(proxy__client *c)
{
    proxy__h2 *h = calloc(1, sizeof(*h));
    nghttp2_session_callbacks *cbs = callbacks();
    nghttp2_option *opt = options();
    const gh_cfg_http2 *cfg = &c->s.gen->rt->cfg->http2;
    nghttp2_settings_entry iv[6];
    uint64_t conn_window;

    if (h != NULL)
        proxy__h2_mem_init(&h->ngh_mem);
    if (h == NULL || cbs == NULL || opt == NULL ||
        nghttp2_session_server_new3(&h->ngh, cbs, h, opt, &h->ngh_mem.ops) != 0) {
        if (h != NULL)
            (void)proxy__h2_mem_dispose(&h->ngh_mem);
        free(h);
        return -1;
    }
    proxy__h2_mem_created(&h->ngh_mem);
    h->scan_left = NGHTTP2_CLIENT_MAGIC_LEN; /* the preface comes first */
    h->c = c;
    h->cfg = *cfg;
    h->win_start = h->reset_start = gh_loop_now(c->w->loop);
    c->w->h2_kick.cb = on_kick;
    iv[0] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams};
    iv[1] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)cfg->initial_window_size};
    iv[2] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_FRAME_SIZE, (uint32_t)cfg->max_frame_size};
    iv[3] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, (uint32_t)cfg->header_table_size};
    iv[4] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_list_size};
    /* RFC 8441 3: extended CONNECT (WebSocket over HTTP/2) is offered; on_begin_headers lets :protocol in */
    iv[5] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1};
    /* The connection's window: what all request bodies may hold at once, within the memory bound. */
    conn_window = GH_MIN(cfg->max_connection_memory / 2, (uint64_t)(1u << 30));
    if (conn_window < cfg->initial_window_size)
        conn_window = cfg->initial_window_size;
    if (nghttp2_submit_settings(h->ngh, NGHTTP2_FLAG_NONE, iv, GH_ARRAY_LEN(iv)) != 0 ||
        nghttp2_session_set_local_window_size(h->ngh, NGHTTP2_FLAG_NONE, 0, (int32_t)conn_window) != 0) {
        nghttp2_session_del(h->ngh);
        (void)proxy__h2_mem_dispose(&h->ngh_mem);
        free(h);
        return -1;
    }
    c->h2 = h;
    c->state = CLIENT_H2;
    proxy__observe_client_proto(c, GH_M_H2); /* the open-connection gauge: this one speaks HTTP/2 now */
    gh_timer_stop(c->w->loop, &c->timer);
    h->timer_kind = T_NONE;
    h->more_input = gh_buf_len(&c->in) > 0; /* the preface and what came with it: fed in the idle hook */
    mark_dirty(h);
    return 0;
}

/* ---- idle memory (h2_mem.h) ---- */

/*
 * No stream, nothing to send: the transport's record buffers and the pages of nghttp2's session-long
 * blocks go back (a debug build says what nghttp2 still holds). After the idle grace, so that a busy
 * client's next request finds them; but at once the first time a connection idles after a stream:
 * its TLS buffers date from the handshake, and every connection accepted since has put long-lived
 * state behind them in the heap, so that freed a second later they leave holes of partly used pages
 * (~4 KiB per idle connection, scripts/bench_h2.sh) where at once the next handshake reuses them.
 * Costs once per connection what the grace costs: two frees, two madvise.
 */
static void go_idle(proxy__h2 *h)
{
    h->released = 1;
    gh_conn_idle(&h->c->conn);
    /* no frame may be half built in the buffer */
    (void)proxy__h2_mem_idle(&h->ngh_mem, !nghttp2_session_want_write(h->ngh));
    h->c->w->heap_dirty = 1;
#ifdef GH_H2_MEMSTAT
    char line[512];
    proxy__h2_mem_report(&h->ngh_mem, line, sizeof(line));
    gh_log_info("client %s: HTTP/2 idle: nghttp2 %s; ours: proxy__h2 %zu, proxy__client %zu", h->c->s.ip, line,
                sizeof(*h), sizeof(*h->c));
#endif
}

void proxy__h2_timeout(proxy__client *c)
{
    proxy__h2 *h = c->h2;
    if (h == NULL)
        return;
    if (h->timer_kind == T_GRACE && h->nstreams == 0) {
        /* idle past the grace: the buffers go back, the rest of the keep-alive runs */
        go_idle(h);
        h->timer_kind = T_IDLE;
        gh_timer_set(c->w->loop, &c->timer,
                     c->w->t->keepalive > IDLE_GRACE_MS ? c->w->t->keepalive - IDLE_GRACE_MS : 1);
        return;
    }
    if (h->timer_kind == T_IDLE && h->nstreams == 0) {
        /* RFC 9113 9.1: an idle connection is closed with a GOAWAY, no stream lost */
        nghttp2_session_terminate_session(h->ngh, NGHTTP2_NO_ERROR);
        h->dead = 1;
        h->timer_kind = T_NONE;
        flush(h);
        return;
    }
    gh_log_info("client %s: HTTP/2 connection took no bytes for %u ms, closed", c->s.ip, c->w->t->send);
    conn_close(h);
}

int proxy__h2_idle(const proxy__client *c, uint64_t *since)
{
    const proxy__h2 *h = c->h2;
    uint32_t armed;

    if (h == NULL || h->nstreams > 0 || !h->served || gh_buf_len(&c->out) > 0 ||
        (h->timer_kind != T_GRACE && h->timer_kind != T_IDLE))
        return 0;
    /* the timer was armed when it went idle: its deadline less that timeout is the moment */
    armed = h->timer_kind == T_GRACE ? IDLE_GRACE_MS : c->w->t->keepalive;
    *since = c->timer.when > armed ? c->timer.when - armed : 0;
    return 1;
}

void proxy__h2_drain(proxy__client *c)
{
    proxy__h2 *h = c->h2;
    if (h == NULL || h->draining)
        return;
    h->draining = 1;
    /* RFC 9113 6.8: streams up to the last one we saw finish; the client opens no new ones here */
    nghttp2_submit_goaway(h->ngh, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ngh), NGHTTP2_NO_ERROR,
                          NULL, 0);
    mark_dirty(h);
}

int proxy__h2_tunnels_only(const proxy__client *c)
{
    const proxy__h2 *h = c->h2;

    if (h == NULL || !h->had_tunnel)
        return 0;
    for (const h2_stream *st = h->streams; st != NULL; st = st->next)
        if (st->tconn == NULL && !st->released)
            return 0;
    return 1;
}

void proxy__h2_free(proxy__client *c)
{
    proxy__h2 *h = c->h2;
    if (h == NULL)
        return;
    dirty_unlink(h);
    while (h->streams != NULL) {
        if (h->streams->tconn != NULL)
            orphan(h->streams); /* a tunnel holds it: it learns from an event, then frees it */
        else
            stream_free(h->streams);
    }
    h->work = h->work_tail = NULL;
    nghttp2_session_del(h->ngh);
    if (proxy__h2_mem_dispose(&h->ngh_mem) != 0)
        gh_log_error("HTTP/2: libnghttp2 left mapped blocks after its session was freed"); /* a leak */
    free(h);
    c->h2 = NULL;
}
