/*
 * stream: a TCP (L4) stream service's connection, from accept to the tunnel.
 *
 *   PG      (protocol postgres) the client's first message: an SSLRequest is
 *           answered 'S', a GSSENCRequest 'N' (then the next message is read),
 *           a TLS record is direct TLS (PostgreSQL 17), a StartupMessage is a
 *           client without TLS: refused with an ErrorResponse unless the
 *           service has allow_plaintext (then relayed as it is)
 *   HELLO   (several services on the listener, or passthrough) the ClientHello
 *           is peeked, not read, and its SNI picks the service
 *   TLS     the handshake with the service's certificate (not for passthrough
 *           or plain TCP: their bytes stay in the socket for the tunnel)
 *   CONNECT a server of the service's pool; a failed or timed-out connect moves
 *           on to another one: no byte was relayed yet
 *   RELAY   the tunnel (tunnel.c): bytes both ways, half-close, idle timeout
 *
 * The stream is a tunnel from the start (its first member): it sits in the
 * worker's tunnel list, so it counts for max_connections and the SIGTERM
 * drain deadline ends it in any phase, and it holds a reference to its
 * configuration generation, so a reload never cuts it. One access-log line
 * when it ends: service, server, SNI, duration, bytes both ways, how it ended.
 *
 *   PROXY   (a listener with proxy_protocol, a trusted peer) the PROXY
 *           protocol header comes first, before anything above: its client is
 *           the stream's client (logs, hash ip, the header sent on, limits)
 *
 * Edge rules (edge.c), on the client as the PROXY header named it:
 * max_connections_per_ip when the first phase starts, the service's
 * allow/deny and rate_limit as soon as the service is known (edge_refused);
 * a refused connection is closed at once, with its access-log line.
 *
 * A pool with proxy_protocol gets a header first on the server connection
 * (upstream_ready: into side[0].buf, which the tunnel writes to the server
 * before any byte of the client's).
 *
 * Ownership: allocated here, freed by stream_end (with gh_loop_release) after
 * the tunnel closed both connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "net/sock.h"
#include "proxy/observe.h"
#include "proxy/pg.h"
#include "proxy/proxy.h"
#include "tls/hello.h"

enum { ST_PROXY, ST_PG, ST_HELLO, ST_TLS, ST_CONNECT, ST_RELAY };

typedef struct proxy__stream {
    proxy__tunnel t; /* first: the worker's list holds tunnels; side[0] the client, side[1] the server */
    gh_timer timer;  /* the phases before the relay: first bytes and handshake, then each connect */
    const proxy__listener *listener;
    const proxy__svc *svc; /* NULL until the first bytes chose one */
    uint64_t tried;        /* servers of the pool tried (a bit each) */
    uint64_t key;          /* balance hash ip */
    long count;            /* index in w->svc_counts; -1: not counted */
    uint8_t phase;
    uint8_t gss_seen;     /* a GSSENCRequest was answered: the next one is a protocol error */
    uint8_t connected;    /* the server accepted: counted in flight for it */
    uint8_t plain;        /* postgres without TLS (allow_plaintext) */
    uint8_t handshaking;  /* counted in w->handshaking: the heap is trimmed once no handshake is under way */
    uint8_t local_known;  /* local is set (from a PROXY header, or read from the socket) */
    uint8_t peer_counted; /* counted for max_connections_per_ip (edge.c): given back once, in stream_end */
    uint8_t edge_done;    /* the service's allow/deny and rate_limit were applied (a token is taken once) */
    const char *why;      /* how it ended before the relay; NULL: the tunnel's reason */
    struct sockaddr_storage peer, local; /* the client and the address it connected to: the PROXY header sent */
    char sni[GH_TLS_SNI_MAX];
} proxy__stream;

static const char *const tunnel_reasons[] = {"", "closed", "error", "idle timeout", "shutdown"};

static void advance(proxy__stream *s);
static void proxy_header(proxy__stream *s);

static proxy__stream *of_tunnel(proxy__tunnel *t)
{
    return (proxy__stream *)t; /* t is the first member */
}

static void end_with(proxy__stream *s, const char *why)
{
    s->why = why;
    proxy__tunnel_close(&s->t, PROXY__TUNNEL_ERROR);
}

/* ---- the end ------------------------------------------------------------------------------ */

static void log_end(proxy__stream *s)
{
    proxy__worker *w = s->t.w;
    proxy__stream_log l = {
        .ip = s->t.ip,
        .service = s->svc != NULL ? s->svc->cfg->name.p : "-",
        .server = s->connected ? proxy__server_name(&s->t.pool->servers[s->t.server]) : "-",
        .sni = s->sni[0] ? s->sni : "-",
        .tls = s->svc == NULL                    ? "-"
               : s->svc->cfg->passthrough        ? "passthrough"
               : s->svc->tls == NULL || s->plain ? "none"
                                                 : "terminated",
        .end = s->why != NULL ? s->why : tunnel_reasons[s->t.reason < 5 ? s->t.reason : 0],
        .ms = gh_loop_now(w->loop) - s->t.start_ms,
        .in = s->t.side[0].bytes,
        .out = s->t.side[1].bytes,
    };

    gh_log_debug("stream from %s: %s to %s (%s), %llu ms, %llu bytes in, %llu out", l.ip, l.service, l.server, l.end,
                 (unsigned long long)l.ms, (unsigned long long)l.in, (unsigned long long)l.out);
    proxy__access_stream(w, s->t.gen, &l);
}

static void stream_end(proxy__tunnel *t)
{
    proxy__stream *s = of_tunnel(t);
    proxy__worker *w = t->w;

    gh_timer_stop(w->loop, &s->timer);
    if (s->handshaking)
        w->handshaking--;
    if (s->connected && t->pool->lb_servers[t->server].inflight > 0)
        t->pool->lb_servers[t->server].inflight--;
    if (s->connected)
        gh_metric_inflight(w->metrics, t->pool->slots[t->server], -1);
    gh_metric_conn_close(w->metrics, s->listener->cfg->metric, GH_M_STREAM);
    gh_metric_stream(w->metrics, -1);
    if (s->count >= 0 && w->svc_counts[s->count].n > 0)
        w->svc_counts[s->count].n--;
    proxy__peer_release(w, &s->peer, &s->peer_counted);
    log_end(s);
    proxy__tunnel_unlink(t);
    proxy__gen_unref(t->gen); /* the service, pool and listener live in the generation: after their last use */
    gh_loop_release(w->loop, s);
    if (w->draining && w->nclients == 0 && w->ntunnels == 0)
        gh_loop_stop(w->loop);
}

/* ---- choosing the service ------------------------------------------------------------------ */

/* RFC 6125 6.4.3, as for certificates: "*.example.com" stands for one label, not for example.com. */
static int name_matches(const gh_cstr *pattern, const char *name, size_t len)
{
    if (pattern->len > 2 && pattern->p[0] == '*') {
        size_t suffix = pattern->len - 1; /* ".example.com" */
        return len > suffix && memcmp(name + len - suffix, pattern->p + 1, suffix) == 0 &&
               memchr(name, '.', len - suffix) == NULL;
    }
    return pattern->len == len && memcmp(pattern->p, name, len) == 0;
}

/* The service for a name: an exact name first, then a wildcard, then the default. */
static const proxy__svc *pick_service(const proxy__listener *l, const char *name)
{
    size_t len = strlen(name);

    for (int wild = 0; len > 0 && wild < 2; wild++)
        for (size_t i = 0; i < l->nsvcs; i++)
            for (size_t k = 0; k < l->svcs[i]->cfg->nnames; k++) {
                const gh_cstr *pat = &l->svcs[i]->cfg->names[k];
                if ((pat->p[0] == '*') == wild && name_matches(pat, name, len))
                    return l->svcs[i];
            }
    return l->svc_default;
}

/* The service's counter in this worker (by name: a reload keeps counting the streams of the old generation). */
static long svc_counter(proxy__worker *w, const gh_cfg_stream *st)
{
    uint64_t key = gh_lb_hash(st->name.p, st->name.len);
    proxy__svc_count *c;

    for (size_t i = 0; i < w->nsvc_counts; i++)
        if (w->svc_counts[i].key == key)
            return (long)i;
    if ((c = realloc(w->svc_counts, (w->nsvc_counts + 1) * sizeof(*c))) == NULL)
        return -1;
    w->svc_counts = c;
    c[w->nsvc_counts] = (proxy__svc_count){key, 0};
    return (long)w->nsvc_counts++;
}

/* The service's max_connections, this worker's share (the limit is for all workers together). */
static int at_limit(proxy__stream *s, const gh_cfg_stream *st)
{
    proxy__worker *w = s->t.w;
    uint32_t workers = (uint32_t)(s->t.gen->rt->cfg->workers > 0 ? s->t.gen->rt->cfg->workers : 1);
    uint32_t share;

    if ((s->count = svc_counter(w, st)) < 0)
        return 1;
    if (st->max_connections == 0) {
        w->svc_counts[s->count].n++;
        return 0;
    }
    share = (st->max_connections + workers - 1) / workers;
    if (w->svc_counts[s->count].n >= share) {
        s->count = -1;
        return 1;
    }
    w->svc_counts[s->count].n++;
    return 0;
}

static void start_connect(proxy__stream *s);

/*
 * The service's allow/deny rules and rate limit, as soon as the service is
 * known: at once for a listener of one service (before a PostgreSQL client's
 * SSLRequest is answered), after the ClientHello's SNI chose one otherwise;
 * before any TLS handshake or server connection either way. 1: refused, and
 * the stream ended (its access-log line says why).
 */
static int edge_refused(proxy__stream *s, const proxy__svc *v)
{
    const char *why;

    if (s->edge_done)
        return 0;
    s->edge_done = 1;
    if ((why = proxy__edge_conn_check(s->t.w, s->t.gen, &v->cfg->edge, &s->peer, s->t.ip)) == NULL)
        return 0;
    s->svc = v;
    end_with(s, why);
    return 1;
}

/* The service is known: TLS with its certificate, or straight to a server (passthrough, plain TCP). */
static void begin_service(proxy__stream *s, const proxy__svc *v)
{
    proxy__tunnel *t = &s->t;
    gh_conn *c = &t->side[0].conn;

    if (v == NULL) {
        end_with(s, "no service for this name");
        return;
    }
    if (edge_refused(s, v))
        return;
    s->svc = v;
    if (at_limit(s, v->cfg)) {
        end_with(s, "service connection limit");
        return;
    }
    t->idle_ms = v->cfg->idle_timeout;
    t->pool = &t->gen->pools[v->pool];
    if (t->pool->cfg->balance == GH_BALANCE_HASH)
        s->key = gh_lb_hash(t->ip, strlen(t->ip)); /* a stream has no header or cookie: the client's address */
    if (v->tls == NULL || s->plain) {
        start_connect(s);
        return;
    }
    /* The same socket, still registered (the loop names &conn.io): TLS reads the bytes that were only peeked. */
    if (gh_tls_conn_init(c, v->tls, c->io.fd, c->io.cb, &v->alpn) < 0) {
        end_with(s, "out of memory");
        return;
    }
    c->can_read = c->can_write = 1;
    s->phase = ST_TLS;
    s->handshaking = 1;
    t->w->handshaking++;
    advance(s);
}

/* ---- the first bytes ----------------------------------------------------------------------- */

/* Peeks what the client sent so far into buf: its length, or -1 (closed: the stream was ended). */
static ssize_t peek(proxy__stream *s, unsigned char *buf, size_t cap)
{
    gh_conn *c = &s->t.side[0].conn;
    ssize_t n = gh_sock_peek(c->io.fd, buf, cap);

    if (n == GH_AGAIN)
        return 0;
    if (n <= 0) {
        end_with(s, n == 0 ? "client closed before TLS" : "client error");
        return -1;
    }
    return n;
}

static void hello(proxy__stream *s)
{
    static unsigned char buf[GH_TLS_HELLO_MAX]; /* the worker is one thread; parsed before the next event */
    ssize_t n = peek(s, buf, sizeof(buf));
    int rc;

    if (n <= 0)
        return;
    rc = gh_tls_hello_sni(buf, (size_t)n, s->sni, sizeof(s->sni));
    if (rc == GH_AGAIN)
        return;
    if (rc < 0) {
        s->sni[0] = '\0';
        end_with(s, "not a TLS ClientHello");
        return;
    }
    begin_service(s, pick_service(s->listener, s->sni));
}

/* A refusal the client's library can show (libpq prints the message), then the end. */
static void pg_refuse(proxy__stream *s, const char *code, const char *msg, const char *why)
{
    gh_conn *c = &s->t.side[0].conn;
    char out[512], junk[4096];
    size_t n = gh_pg_error(out, sizeof(out), code, msg);

    /* What the client sent is read first: closing with unread bytes would send a RST, which may
     * destroy the answer before the client reads it. */
    while (gh_sock_read(c->io.fd, junk, sizeof(junk)) > 0)
        ;
    if (n > 0 && gh_sock_write(c->io.fd, out, n) == (ssize_t)n)
        shutdown(c->io.fd, SHUT_WR);
    end_with(s, why);
}

/* Answers one byte to a request that it consumes (SSLRequest 'S', GSSENCRequest 'N'). 0, or -1 (ended). */
static int pg_answer(proxy__stream *s, char answer)
{
    gh_conn *c = &s->t.side[0].conn;
    char req[GH_PG_REQUEST_LEN];

    /* The socket is fresh and the client waits for the byte: a 1-byte send cannot block */
    if (gh_sock_read(c->io.fd, req, sizeof(req)) != (ssize_t)sizeof(req) || gh_sock_write(c->io.fd, &answer, 1) != 1) {
        end_with(s, "client error");
        return -1;
    }
    return 0;
}

static void pg_preface(proxy__stream *s)
{
    const proxy__listener *l = s->listener;
    const proxy__svc *def = l->svc_default != NULL ? l->svc_default : l->svcs[0];
    unsigned char buf[GH_PG_REQUEST_LEN];
    ssize_t n = peek(s, buf, sizeof(buf));

    if (n <= 0)
        return;
    switch (gh_pg_first(buf, (size_t)n)) {
    case GH_PG_MORE:
        return;
    case GH_PG_TLS: /* PostgreSQL 17 sslnegotiation=direct */
        break;
    case GH_PG_SSL_REQUEST:
        if (pg_answer(s, 'S') < 0)
            return;
        break;
    case GH_PG_GSS_REQUEST:
        /* GSSAPI encryption is not offered: 'N', and libpq goes on with an SSLRequest or a startup */
        if (s->gss_seen) {
            end_with(s, "a second GSSENCRequest");
            return;
        }
        s->gss_seen = 1;
        if (pg_answer(s, 'N') == 0)
            advance(s);
        return;
    case GH_PG_STARTUP:
        if (def->cfg->allow_plaintext) {
            s->plain = 1; /* the startup stays in the socket: the server reads it first */
            begin_service(s, def);
            return;
        }
        pg_refuse(s, "28000", "gatehouse: this service requires TLS (connect with sslmode=require)", "refused: no TLS");
        return;
    default:
        end_with(s, "not PostgreSQL");
        return;
    }
    s->phase = ST_HELLO;
    if (l->peek_hello)
        advance(s);
    else
        begin_service(s, def);
}

/* ---- the server ---------------------------------------------------------------------------- */

/* A pool with proxy_protocol: its header, first in the bytes for the server (side[0].buf is empty yet). */
static int send_proxy_header(proxy__stream *s)
{
    proxy__tunnel *t = &s->t;
    gh_buf *b = &t->side[0].buf;
    ssize_t n;

    if (t->pool->cfg->proxy_protocol == 0)
        return 0;
    if (!s->local_known && gh_sock_local(t->side[0].conn.io.fd, &s->local) == 0)
        s->local_known = 1;
    if (gh_buf_reserve(b) < 0)
        return -1;
    /* passthrough or plain TCP: the client's conn is a plain socket, so no TLS TLVs */
    n = proxy__pp_write(t->pool->cfg->proxy_protocol, &s->peer, s->local_known ? &s->local : NULL, &t->side[0].conn,
                        (uint8_t *)gh_buf_tail(b), gh_buf_room(b));
    if (n < 0)
        return -1;
    b->end += (uint32_t)n;
    return 0;
}

/* The server accepted: the relay starts (with the PROXY header first, if the pool sends one). */
static void upstream_ready(proxy__stream *s)
{
    proxy__tunnel *t = &s->t;

    gh_timer_stop(t->w->loop, &s->timer);
    if (send_proxy_header(s) < 0) {
        end_with(s, "out of memory");
        return;
    }
    s->phase = ST_RELAY;
    proxy__upstream_report(t->pool, t->server, 1);
    t->side[0].conn.io.cb = proxy__tunnel_on_event;
    t->side[1].conn.io.cb = proxy__tunnel_on_event;
    proxy__tunnel_start(t);
}

static void on_connect_timeout(gh_timer *tm);
static void on_event(gh_io *io, unsigned events);

/* The next server of the pool; none left ends the stream (nothing was relayed: the client sees a close). */
static void start_connect(proxy__stream *s)
{
    proxy__tunnel *t = &s->t;
    proxy__worker *w = t->w;
    gh_conn *u = &t->side[1].conn;
    int server, fd;

    s->phase = ST_CONNECT;
    gh_timer_stop(w->loop, &s->timer);
    for (;;) {
        if ((fd = proxy__upstream_open(t->pool, &s->tried, s->key, &server)) < 0) {
            end_with(s, s->tried != 0 ? "no server answered" : "no server available");
            return;
        }
        gh_conn_init(u, fd, on_event); /* the stream's until the relay */
        if (gh_conn_add(u, w->loop) == 0)
            break;
        gh_conn_close(u, w->loop);
    }
    t->server = (uint16_t)server;
    s->connected = 1;
    t->pool->lb_servers[server].inflight++; /* a stream is load on its server (least_conn, p2c) */
    gh_metric_inflight(w->metrics, t->pool->slots[server], 1);
    s->timer.cb = on_connect_timeout;
    gh_timer_set(w->loop, &s->timer, s->svc->cfg->connect_timeout);
}

/* This server failed before any byte went to it: the next one. */
static void connect_failed(proxy__stream *s, const char *what)
{
    proxy__tunnel *t = &s->t;

    gh_log_warn("stream %s: connect to %s %s; trying another server", s->svc->cfg->name.p,
                proxy__server_name(&t->pool->servers[t->server]), what);
    gh_conn_close(&t->side[1].conn, t->w->loop);
    if (t->pool->lb_servers[t->server].inflight > 0)
        t->pool->lb_servers[t->server].inflight--;
    gh_metric_inflight(t->w->metrics, t->pool->slots[t->server], -1);
    s->connected = 0;
    proxy__server_failed(t->pool, t->server);
    start_connect(s);
}

static void on_connect_timeout(gh_timer *tm)
{
    proxy__stream *s = (proxy__stream *)((char *)tm - offsetof(proxy__stream, timer));
    connect_failed(s, "timed out");
}

static void on_first_timeout(gh_timer *tm)
{
    proxy__stream *s = (proxy__stream *)((char *)tm - offsetof(proxy__stream, timer));
    end_with(s, s->phase == ST_TLS     ? "TLS handshake timeout"
                : s->phase == ST_PROXY ? "no PROXY header within the handshake timeout"
                                       : "client silent before TLS");
}

/* ---- events -------------------------------------------------------------------------------- */

static void advance(proxy__stream *s)
{
    int rc;

    switch (s->phase) {
    case ST_PROXY:
        proxy_header(s);
        return;
    case ST_PG:
        pg_preface(s);
        return;
    case ST_HELLO:
        hello(s);
        return;
    case ST_TLS:
        rc = gh_conn_handshake(&s->t.side[0].conn);
        if (rc == GH_AGAIN)
            return;
        proxy__observe_tls(s->t.w, &s->t.side[0].conn, rc);
        s->handshaking = 0;
        s->t.w->handshaking--;
        s->t.w->heap_dirty = 1; /* a handshake's allocations are freed: trim_heap gives the pages back */
        if (rc < 0) {
            end_with(s, "TLS handshake failed");
            return;
        }
        /* As for a WebSocket handed to a tunnel (tls_moved): buffers given back whenever idle */
        if (s->t.side[0].conn.ops->moved != NULL)
            s->t.side[0].conn.ops->moved(&s->t.side[0].conn);
        start_connect(s);
        return;
    default:
        return;
    }
}

static void on_event(gh_io *io, unsigned events)
{
    proxy__tunnel_side *side = (proxy__tunnel_side *)io;
    proxy__stream *s = of_tunnel((proxy__tunnel *)((char *)(side - side->idx) - offsetof(proxy__tunnel, side)));
    int err;

    gh_conn_on_events(&side->conn, events);
    if (side->idx == 0) {
        if (s->phase < ST_CONNECT)
            advance(s);
        return; /* while connecting, the client's bytes wait in its socket for the tunnel */
    }
    if (s->phase != ST_CONNECT || !(events & (GH_EV_WRITE | GH_EV_ERROR)))
        return;
    if ((err = gh_conn_connect_result(&side->conn)) != 0) {
        connect_failed(s, strerror(err));
        return;
    }
    upstream_ready(s);
}

/*
 * What the listener's connections start with (after a PROXY header, if one
 * came first: s->peer is then the client it named, for every limit).
 */
static void first_phase(proxy__stream *s)
{
    const proxy__listener *l = s->listener;
    const proxy__svc *def = l->svc_default != NULL ? l->svc_default : l->svcs[0];

    /* As client.c does for HTTP: counted once the real client is known, and before anything is answered */
    if (proxy__peer_admit_at(s->t.w, &s->peer, s->t.ip, &s->peer_counted) < 0) {
        end_with(s, "refused: max_connections_per_ip");
        return;
    }
    if (!l->peek_hello && edge_refused(s, def))
        return;
    if (l->pg) {
        s->phase = ST_PG;
        advance(s);
    } else if (l->peek_hello) {
        s->phase = ST_HELLO;
        advance(s);
    } else {
        begin_service(s, def);
    }
}

/*
 * A trusted sender's PROXY header, read before anything else (client.c does
 * the same for HTTP): malformed, missing or cut short ends the stream.
 */
static void proxy_header(proxy__stream *s)
{
    uint8_t scratch[GH_PP_MAX];
    gh_pp_header h;
    const char *why;
    int r = gh_conn_read_proxy(&s->t.side[0].conn, &h, scratch, sizeof(scratch), &why);

    if (r == GH_AGAIN)
        return;
    if (r < 0) {
        end_with(s, why != NULL ? why : "bad PROXY header");
        return;
    }
    if (!h.local) {
        s->peer = h.src;
        s->local = h.dst;
        s->local_known = 1;
        gh_sock_ntop(&s->peer, s->t.ip, sizeof(s->t.ip));
    }
    first_phase(s);
}

void proxy__stream_accept(proxy__worker *w, const proxy__listener *l, int fd, const struct sockaddr_storage *peer)
{
    proxy__stream *s = calloc(1, sizeof(*s));
    proxy__tunnel *t;

    if (s == NULL) {
        close(fd);
        return;
    }
    t = &s->t;
    proxy__tunnel_init(t, w->loop, w->t->tunnel, stream_end);
    t->w = w;
    t->start_ms = gh_loop_now(w->loop);
    s->peer = *peer;
    gh_sock_ntop(peer, t->ip, sizeof(t->ip));
    s->listener = l;
    s->count = -1;
    gh_conn_init(&t->side[0].conn, fd, on_event);
    if (gh_conn_add(&t->side[0].conn, w->loop) < 0) {
        gh_conn_close(&t->side[0].conn, w->loop);
        free(s);
        return;
    }
    t->gen = w->gen;
    w->gen->refs++;
    proxy__tunnel_link(t);
    gh_metric_conn_open(w->metrics, l->cfg->metric, GH_M_STREAM);
    gh_metric_stream(w->metrics, 1);
    t->side[0].conn.can_read = 1; /* the first bytes are often there already */
    s->timer.cb = on_first_timeout;
    gh_timer_set(w->loop, &s->timer, w->t->handshake);
    /* Only a trusted sender's header is read; anyone else's bytes are its own (never believed). */
    if (l->cfg->proxy_protocol && gh_cidr_match_any(l->cfg->pp_from, l->cfg->npp_from, (const struct sockaddr *)peer)) {
        s->phase = ST_PROXY;
        advance(s);
        return;
    }
    first_phase(s);
}
