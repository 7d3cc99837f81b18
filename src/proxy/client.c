/*
 * client: an HTTP/1 connection from a client (TLS or plain), from the
 * handshake through its keep-alive requests to the close. Requests are read
 * and answered one at a time in order; pipelined requests wait in `in` until
 * the exchange before them is done. The HTTP/1 codec and the session ops the
 * exchange calls are in h1_server.c.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/conn.h"
#include "net/sock.h"
#include "proxy/observe.h"
#include "proxy/proxy.h"

#define LINGER_MS 2000

static void dispatch(proxy__client *c);
static int is_h2_alpn(const proxy__client *c);

static void list_unlink(proxy__client *c)
{
    proxy__worker *w = c->w;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->nclients--;
}

/* Everything but the socket: the conn is closed, or went to a new owner. */
static void release(proxy__client *c)
{
    proxy__worker *w = c->w;
    if (c->state == CLIENT_HANDSHAKE || c->state == CLIENT_PROXY)
        w->handshaking--;
    proxy__h2_free(c);
    gh_timer_stop(w->loop, &c->timer);
    gh_buf_release(&c->in);
    gh_buf_release(&c->out);
    proxy__peer_release(w, &c->s.peer, &c->s.peer_counted);
    proxy__session_drop_own(&c->s); /* before the generation goes: the connection refers to its pool */
    gh_metric_conn_close(w->metrics, c->s.listener->cfg->metric, c->mproto);
    proxy__gen_unref(c->s.gen);
    c->s.gen = NULL;
    list_unlink(c);
    gh_loop_release(w->loop, c);
    if (w->draining && w->nclients == 0 && w->ntunnels == 0)
        gh_loop_stop(w->loop);
}

void proxy__client_close(proxy__client *c)
{
    if (c->conn.io.fd < 0)
        return;
    if (c->s.ex != NULL) {
        proxy__exchange *ex = c->s.ex;
        c->s.ex = NULL;
        if (ex->status == 0)
            ex->status = 499;
        proxy__access_end(ex);
        proxy__exchange_free(ex);
    }
    proxy__h2_free(c); /* its streams' exchanges, logged 499 */
    gh_conn_close(&c->conn, c->w->loop);
    release(c);
}

void proxy__client_detached(proxy__client *c)
{
    release(c);
}

void proxy__client_fail(proxy__client *c, int status, int head)
{
    gh_log_debug("client %s: %d", c->s.ip, status);
    c->state = CLIENT_CLOSING;
    c->close_after = 1;
    if (gh_buf_reserve(&c->out) < 0) {
        proxy__client_close(c);
        return;
    }
    gh_buf_compact(&c->out);
    int n = proxy__error_response(gh_buf_tail(&c->out), gh_buf_room(&c->out), status, head);
    if (n > 0)
        c->out.end += (uint32_t)n;
    gh_timer_set(c->w->loop, &c->timer, c->w->t->send);
}

/*
 * A connection that has just answered a request keeps its transport's buffers
 * (OpenSSL's record buffers, about 34 KiB) for a short grace: on a busy
 * keep-alive connection the next request usually follows within milliseconds,
 * and giving the buffers back and taking them again for every request cost
 * about 1,500 instructions, 6% of a keep-alive request (callgrind). Once the
 * grace is over, and at once after a handshake, an idle connection keeps no
 * buffers: only its TLS session and this struct.
 */
#define IDLE_GRACE_MS 1000

void proxy__client_go_idle(proxy__client *c, uint32_t timeout)
{
    c->state = CLIENT_IDLE;
    c->tls_held = 0;
    gh_buf_trim(&c->in);
    gh_buf_trim(&c->out);
    gh_conn_idle(&c->conn);
    gh_timer_set(c->w->loop, &c->timer, timeout);
}

/*
 * Idle after a request: the transport's buffers go back when the grace ends (on_client_timeout), but
 * after a connection's first request at once. Its buffers then date from the handshake, and every
 * connection accepted since has put long-lived state behind them in the heap: freed a second later,
 * they leave holes of partly used pages (about 5 KiB per idle connection), where freed at once the
 * next handshake reuses them. Costs once per connection what the grace saves per request (h2_server.c
 * go_idle does the same for HTTP/2).
 */
static void go_idle_after_request(proxy__client *c)
{
    uint32_t keepalive = c->w->t->keepalive;

    if (!c->s.tls || keepalive <= IDLE_GRACE_MS || c->requests == 1) { /* a plain socket keeps no buffers */
        proxy__client_go_idle(c, keepalive);
        if (c->s.tls)
            c->w->heap_dirty = 1; /* freed record buffers: let trim_heap return their pages */
        return;
    }
    c->state = CLIENT_IDLE;
    c->tls_held = 1;
    gh_buf_trim(&c->in);
    gh_buf_trim(&c->out);
    gh_timer_set(c->w->loop, &c->timer, IDLE_GRACE_MS);
}

void proxy__client_exchange_done(proxy__client *c)
{
    proxy__exchange *ex = c->s.ex;
    c->s.ex = NULL;
    proxy__exchange_free(ex);
    c->requests++;
    if (c->close_after || c->w->draining) {
        c->state = CLIENT_CLOSING;
        gh_timer_set(c->w->loop, &c->timer, c->w->t->send);
        return;
    }
    if (gh_buf_len(&c->in) > 0) {
        /* A pipelined request is already (partly) here: the rest of its head is
         * due within header_timeout, as for any head begun (slowloris), not
         * within the keep-alive timeout of an idle connection. */
        c->state = CLIENT_HEAD;
        gh_timer_set(c->w->loop, &c->timer, c->w->t->header);
        return;
    }
    go_idle_after_request(c);
}

int proxy__client_read(proxy__client *c)
{
    if (!gh_conn_readable(&c->conn))
        return 0;
    if (gh_buf_reserve(&c->in) < 0)
        return -1;
    gh_buf_compact(&c->in);
    if (gh_buf_room(&c->in) == 0)
        return 0;
    ssize_t n = gh_conn_read(&c->conn, gh_buf_tail(&c->in), gh_buf_room(&c->in));
    if (n > 0) {
        c->in.end += (uint32_t)n;
        return 1;
    }
    return n == GH_AGAIN ? 0 : -1;
}

static void do_handshake(proxy__client *c)
{
    int r = gh_conn_handshake(&c->conn);
    if (r == GH_AGAIN)
        return;
    proxy__observe_handshake(c, r);
    if (r < 0) {
        proxy__client_close(c);
        return;
    }
    c->w->handshaking--;
    c->w->heap_dirty = 1;
    if (c->s.listener->h2 && is_h2_alpn(c)) {
        c->state = CLIENT_IDLE; /* out of the handshake count, whatever comes next */
        if (proxy__h2_start(c) < 0)
            proxy__client_close(c);
        return;
    }
    /* the first request is due within header_timeout of the handshake */
    proxy__client_go_idle(c, c->w->t->header);
}

/* RFC 3.3 of RFC 9113: "h2" chosen by ALPN. */
static int is_h2_alpn(const proxy__client *c)
{
    size_t n = 0;
    const char *p = gh_conn_alpn(&c->conn, &n);
    return p != NULL && n == 2 && memcmp(p, "h2", 2) == 0;
}

/* RFC 9113 3.4: the client connection preface, which a client with prior knowledge sends first. */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof(h2_preface) - 1)

/*
 * A plain listener with h2 among its protocols: the first bytes say which
 * protocol (no HTTP/1 request starts with "PRI * HTTP/2.0"). 1 HTTP/2 started
 * (or the connection closed), 0 more bytes needed, -1 HTTP/1.
 */
static int sniff_h2(proxy__client *c)
{
    for (;;) {
        size_t len = gh_buf_len(&c->in), n = GH_MIN(len, H2_PREFACE_LEN);
        if (n > 0 && memcmp(gh_buf_head(&c->in), h2_preface, n) != 0)
            return -1;
        if (len >= H2_PREFACE_LEN) {
            if (proxy__h2_start(c) < 0)
                proxy__client_close(c);
            return 1;
        }
        int r = proxy__client_read(c);
        if (r < 0) {
            proxy__client_close(c);
            return 1;
        }
        if (r == 0)
            return 0;
        if (c->state == CLIENT_IDLE) {
            c->state = CLIENT_HEAD; /* as for a head begun: due within header_timeout */
            gh_timer_set(c->w->loop, &c->timer, c->w->t->header);
        }
    }
}

/* What comes after the header: the TLS handshake, or (plain) the first request. */
static void after_proxy_header(proxy__client *c)
{
    if (c->s.tls) {
        c->state = CLIENT_HANDSHAKE; /* the handshake timer keeps running: one budget for header and handshake */
        return;
    }
    c->w->handshaking--;
    proxy__client_go_idle(c, c->w->t->header);
}

/*
 * A trusted sender's PROXY header (spec 2: the very first bytes, before TLS).
 * Its client becomes this connection's client for everything that follows:
 * logs, X-Forwarded-For, `hash ip`, limits and access rules. A header that is
 * malformed, or missing (the sender spoke HTTP or TLS at once), closes the
 * connection: a sender we trust to name clients must name them, and guessing
 * would let a client through as the sender.
 */
static void read_proxy_header(proxy__client *c)
{
    uint8_t scratch[GH_PP_MAX];
    gh_pp_header h;
    const char *why;
    int r = gh_conn_read_proxy(&c->conn, &h, scratch, sizeof(scratch), &why);

    if (r == GH_AGAIN)
        return;
    if (r < 0) {
        gh_log_info("client %s on %s: %s, closed", c->s.ip, c->s.listener->cfg->addr.text,
                    why != NULL ? why : "bad PROXY header");
        proxy__client_close(c);
        return;
    }
    if (!h.local) { /* LOCAL/UNKNOWN: the sender's own connection (its health check): the real endpoints stand */
        c->s.peer = h.src;
        c->s.local = h.dst;
        c->s.local_known = 1;
        gh_sock_ntop(&c->s.peer, c->s.ip, sizeof(c->s.ip));
    }
    /* max_connections_per_ip counts the client the header named (released with the same address) */
    if (proxy__peer_admit(&c->s) < 0) {
        proxy__client_close(c);
        return;
    }
    after_proxy_header(c);
}

/* CLOSING: send what is queued, then close_notify and half-close; LINGER: drain input briefly. */
static void closing(proxy__client *c)
{
    while (gh_buf_len(&c->out) > 0) {
        if (!c->conn.can_write)
            return;
        ssize_t n = gh_conn_write(&c->conn, gh_buf_head(&c->out), gh_buf_len(&c->out));
        if (n == GH_AGAIN)
            return;
        if (n < 0) {
            proxy__client_close(c);
            return;
        }
        gh_buf_consume(&c->out, (size_t)n);
    }
    /* close_notify for TLS, then FIN. Lingering close: closing with unread input
     * would send RST and could destroy the response before the client reads it. */
    gh_conn_shutdown(&c->conn);
    c->state = CLIENT_LINGER;
    gh_buf_release(&c->in);
    gh_buf_release(&c->out);
    gh_timer_set(c->w->loop, &c->timer, LINGER_MS);
}

static void linger(proxy__client *c)
{
    char junk[4096];
    for (int i = 0; i < 64; i++) {
        /* The socket under the transport: what comes after our close_notify is not read, only discarded. */
        ssize_t n = gh_conn_plain_ops.read(&c->conn, junk, sizeof(junk));
        if (n == GH_AGAIN)
            return;
        if (n <= 0)
            break;
    }
    proxy__client_close(c);
}

void proxy__client_linger(proxy__client *c)
{
    proxy__h2_free(c);
    gh_conn_shutdown(&c->conn);
    c->state = CLIENT_LINGER;
    gh_buf_release(&c->in);
    gh_buf_release(&c->out);
    gh_timer_set(c->w->loop, &c->timer, LINGER_MS);
}

/*
 * A client that closed its side while its response is pending has left:
 * abort the exchange now rather than on the first write, which may come only
 * when a slow upstream answers (nginx's proxy_ignore_client_abort off).
 * Bytes sent before the FIN (pipelined requests) are kept in `in`; only the
 * end of the stream, once the request was read whole, counts.
 */
static int client_left(proxy__client *c)
{
    if (!c->conn.hup || !c->req_done)
        return 0;
    for (;;) {
        int r = proxy__client_read(c);
        if (r <= 0)
            return r < 0;
    }
}

static void dispatch(proxy__client *c)
{
    for (;;) {
        int state = c->state;
        uint32_t requests = c->requests;
        if (c->conn.io.fd < 0)
            return;
        switch (state) {
        case CLIENT_PROXY:
            read_proxy_header(c);
            break;
        case CLIENT_HANDSHAKE:
            do_handshake(c);
            break;
        case CLIENT_IDLE:
        case CLIENT_HEAD:
            if (c->w->draining && state == CLIENT_IDLE && c->requests > 0 && gh_buf_len(&c->in) == 0) {
                proxy__client_close(c);
                return;
            }
            if (c->requests == 0 && !c->s.tls && c->s.listener->h2) {
                int r = sniff_h2(c);
                if (r >= 0)
                    break;
                if (!c->s.listener->h1) { /* protocols=h2 alone: HTTP/1 is not spoken here */
                    proxy__client_close(c);
                    return;
                }
            }
            proxy__h1_read_head(c);
            break;
        case CLIENT_H2:
            proxy__h2_dispatch(c);
            return;
        case CLIENT_EXCHANGE:
            if (client_left(c)) {
                proxy__client_close(c); /* drops the upstream request; logged 499 */
                return;
            }
            proxy__exchange_run(c->s.ex);
            break;
        case CLIENT_CLOSING:
            closing(c);
            break;
        case CLIENT_LINGER:
            linger(c);
            return;
        }
        if (c->conn.io.fd < 0 || (c->state == state && c->requests == requests))
            return;
    }
}

void proxy__client_dispatch(proxy__client *c)
{
    dispatch(c);
}

static void on_client_event(gh_io *io, unsigned events)
{
    proxy__client *c = (proxy__client *)io;
    gh_conn_on_events(&c->conn, events);
    dispatch(c);
}

static void on_client_timeout(gh_timer *t)
{
    proxy__client *c = (proxy__client *)((char *)t - offsetof(proxy__client, timer));
    if (c->state == CLIENT_H2) {
        proxy__h2_timeout(c);
        return;
    }
    if (c->state == CLIENT_IDLE && c->tls_held) {
        /* the keep-alive grace is over: the buffers go back, the rest of the keep-alive timeout runs */
        c->tls_held = 0;
        gh_conn_idle(&c->conn);
        c->w->heap_dirty = 1; /* freed record buffers: let trim_heap return their pages */
        /* the keep-alive timeout is the current generation's: a reload may have made it shorter than the grace */
        gh_timer_set(c->w->loop, &c->timer,
                     c->w->t->keepalive > IDLE_GRACE_MS ? c->w->t->keepalive - IDLE_GRACE_MS : 1);
        return;
    }
    if (c->state == CLIENT_PROXY)
        gh_log_info("client %s on %s: no PROXY header within the handshake timeout, closed", c->s.ip,
                    c->s.listener->cfg->addr.text);
    if (c->state == CLIENT_HEAD && gh_buf_len(&c->in) > 0) {
        /* RFC 9110 15.5.9: the client was too slow sending its request */
        gh_metric_limit(c->w->metrics, GH_M_LIMIT_HEADER_TIMEOUT);
        proxy__client_fail(c, 408, 0);
        dispatch(c);
        return;
    }
    proxy__client_close(c);
}

static void client_start(proxy__client *c, proxy__worker *w, const proxy__listener *l,
                         const struct sockaddr_storage *peer);

void proxy__client_accept(proxy__worker *w, const proxy__listener *l, int fd, const struct sockaddr_storage *peer)
{
    proxy__client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    if (l->tls == NULL)
        gh_conn_init(&c->conn, fd, on_client_event);
    else if (gh_tls_conn_init(&c->conn, l->tls, fd, on_client_event, &l->alpn) < 0) {
        free(c);
        close(fd);
        return;
    }
    client_start(c, w, l, peer);
}

/* Tests and fuzzing (tests/fuzz/fuzz_front.c): a client on a conn that has no socket (net/memconn.h). */
void proxy__client_accept_conn(proxy__worker *w, const proxy__listener *l, gh_conn *conn,
                               const struct sockaddr_storage *peer)
{
    proxy__client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        gh_conn_close(conn, w->loop);
        return;
    }
    gh_conn_move(&c->conn, conn, w->loop, on_client_event); /* a no_socket conn only moves */
    client_start(c, w, l, peer);
}

static void client_start(proxy__client *c, proxy__worker *w, const proxy__listener *l,
                         const struct sockaddr_storage *peer)
{
    c->s.ops = &proxy__h1_session_ops;
    c->s.w = w;
    c->s.listener = l;
    c->s.tls = l->tls != NULL;
    c->timer.cb = on_client_timeout;
    c->w = w;
    c->state = CLIENT_HANDSHAKE;
    c->s.peer = *peer;
    c->s.conn = &c->conn;
    gh_sock_ntop(peer, c->s.ip, sizeof(c->s.ip));
    /* Only a trusted sender's header is read; anyone else's bytes are its own
     * request (a header there is a 400, or a failed handshake), never believed. */
    if (l->cfg->proxy_protocol && gh_cidr_match_any(l->cfg->pp_from, l->cfg->npp_from, (const struct sockaddr *)peer))
        c->state = CLIENT_PROXY;
    /* The one call site of max_connections_per_ip where s.peer is the real client; behind a PROXY header,
     * the header's client is counted once it is read (read_proxy_header). */
    if (c->state != CLIENT_PROXY && proxy__peer_admit(&c->s) < 0) {
        gh_conn_close(&c->conn, w->loop); /* never registered: the delete is a no-op */
        free(c);
        return;
    }
    if (gh_conn_add(&c->conn, w->loop) < 0) {
        gh_conn_close(&c->conn, w->loop); /* never registered: the delete is a no-op */
        proxy__peer_release(w, &c->s.peer, &c->s.peer_counted);
        free(c);
        return;
    }
    c->s.gen = w->gen;
    w->gen->refs++;
    c->next = w->clients;
    if (w->clients != NULL)
        w->clients->prev = c;
    w->clients = c;
    w->nclients++;
    gh_metric_conn_open(w->metrics, l->cfg->metric, GH_M_HTTP1);
    c->conn.can_read = 1; /* the first bytes are often there already */
    if (c->s.tls || c->state == CLIENT_PROXY) {
        w->handshaking++;
        gh_timer_set(w->loop, &c->timer, w->t->handshake);
    } else {
        proxy__client_go_idle(c, w->t->header);
    }
    dispatch(c);
}

/* SIGTERM: idle connections close now, busy ones after their current response. */
/*
 * Idle keep-alive connections are closed (RFC 9112 9.3 allows it; a client
 * retries a request that met such a close on a reused connection). A
 * connection accepted but not yet given its first request (its PROXY header
 * or handshake under way, or before its first head) is served one: its client saw connect() succeed
 * and sent its request in good faith; nothing tells it to retry. Its handshake
 * and header timeouts, and the drain deadline, bound what it costs.
 */
void proxy__client_drain(proxy__worker *w)
{
    proxy__client *c = w->clients, *next;
    for (; c != NULL; c = next) {
        next = c->next;
        c->close_after = 1;
        if (c->state == CLIENT_H2)
            proxy__h2_drain(c); /* GOAWAY: the streams in flight finish */
        else if (c->state == CLIENT_IDLE && c->requests > 0 && gh_buf_len(&c->in) == 0)
            proxy__client_close(c);
    }
}

/*
 * At the connection limit (max_connections) or out of descriptors: closes the
 * clients that have waited longest for their next request, as nginx does with
 * its reusable connections, max(1, min(32, idle / 8)) of them, so that a burst
 * of accepts costs one scan, not one per accept. Busy clients (a head being
 * read, an exchange, a response being flushed) are never chosen: RFC 9112 9.3
 * lets a server close an idle persistent connection at any time, not one with
 * a request under way. Returns how many it closed.
 */
size_t proxy__client_close_idle(proxy__worker *w)
{
    enum { PICK = 32 };
    proxy__client *pick[PICK];
    uint64_t since[PICK];
    size_t n = 0, idle = 0, want;

    for (proxy__client *c = w->clients; c != NULL; c = c->next) {
        uint64_t s;
        size_t i;

        if (c->state == CLIENT_H2) {
            /* an HTTP/2 connection that served a stream and has none open is as idle (h2_server.c) */
            if (c->conn.io.fd < 0 || !proxy__h2_idle(c, &s))
                continue;
        } else {
            /* Fresh connections (no request yet) are left to the header timeout: their first request may be on
             * its way. */
            if (c->state != CLIENT_IDLE || c->requests == 0 || gh_buf_len(&c->in) > 0 || c->conn.io.fd < 0)
                continue;
            /* going idle armed the timer: its deadline less the timeout (the grace, while in it) is that moment. */
            uint32_t armed = c->tls_held ? IDLE_GRACE_MS : w->t->keepalive;
            s = c->timer.when > armed ? c->timer.when - armed : 0;
        }
        idle++;
        if (n == PICK && s >= since[PICK - 1])
            continue;
        if (n < PICK)
            n++;
        for (i = n - 1; i > 0 && since[i - 1] > s; i--) {
            since[i] = since[i - 1];
            pick[i] = pick[i - 1];
        }
        since[i] = s;
        pick[i] = c;
    }
    want = GH_MIN(PICK, idle / 8);
    want = GH_MIN(n, want > 0 ? want : 1);
    for (size_t i = 0; i < want; i++) {
        if (pick[i]->s.tls)
            gh_conn_shutdown(&pick[i]->conn); /* close_notify: a clean end, not a truncation */
        proxy__client_close(pick[i]);
    }
    return want;
}
