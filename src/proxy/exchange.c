/*
 * exchange: one request and its response, streamed between a session (the
 * client side, whatever its protocol: proxy__session_ops) and an upstream
 * server with backpressure in both directions.
 *
 * Two pumps run until neither makes progress:
 *   request   session body (decoded) -> `uout` (framed for HTTP/1) -> upstream
 *   response  upstream `in` -> (parse head, decode) -> session (framed for its client)
 * A pump stops when its source is empty and not readable, or its sink is full
 * (GH_AGAIN); edge-triggered readiness wakes it, and the session resumes it.
 * Nothing is buffered whole: each direction holds at most a couple of blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "http/ws.h"
#include "net/conn.h"
#include "proxy/observe.h"
#include "proxy/proxy.h"

#define GONE PROXY__GONE

static int method_is(gh_h1_str m, const char *s)
{
    size_t n = strlen(s);
    return m.len == n && memcmp(m.p, s, n) == 0;
}

/* RFC 9110 9.2.2 */
static int is_idempotent(gh_h1_str m)
{
    return method_is(m, "GET") || method_is(m, "HEAD") || method_is(m, "OPTIONS") || method_is(m, "TRACE") ||
           method_is(m, "PUT") || method_is(m, "DELETE");
}

void proxy__exchange_free(proxy__exchange *ex)
{
    if (ex == NULL)
        return;
    proxy__observe_exchange_end(ex);
    if (ex->u != NULL)
        proxy__upstream_release(ex->u, 0);
    proxy__fwd_free(ex->fwd);
    gh_buf_release(&ex->uout);
    proxy__access_discard(ex);
    free(ex);
}

/* A response of gatehouse's own; without a route, `site` gives its security headers. */
static void local_response_of(proxy__exchange *ex, const gh_cfg_site *site, int status, const char *loc, size_t loclen,
                              const char *body, size_t bodylen);

/*
 * An error of ours (404, 421, 502...) for a request read to its end: the
 * connection is still in step, so the page is an ordinary local response and
 * keep-alive goes on (closing cost the client a new handshake per 404). A 400
 * still closes (DESIGN.md, Security: refuse, then close).
 */
static int answer_error(proxy__exchange *ex, int status)
{
    proxy__upstream *u = ex->u;
    char body[64];
    size_t n = proxy__error_body(body, sizeof(body), status);
    const gh_cfg_site *site;

    if (u != NULL) {
        ex->u = NULL;
        proxy__upstream_release(u, 0);
    }
    site = ex->route != NULL ? ex->route->site : NULL; /* its security headers stay */
    ex->route = NULL;                                  /* a page of gatehouse's: no route's header operations */
    local_response_of(ex, site, status, NULL, 0, body, n);
    return GONE;
}

int proxy__exchange_local_error(proxy__exchange *ex, int status, const char *extra, size_t extra_len)
{
    proxy__session *s = ex->s;
    char body[64];
    size_t n = proxy__error_body(body, sizeof(body), status);
    proxy__local l = {status, NULL, 0, body, n, ex->is_head, 0, NULL, NULL, s->tls, 0, extra, extra_len};

    /* out of step: the session closes. A body left unread is the session's to handle, as for any local
     * response (HTTP/1.1 closes after it; an HTTP/2 stream is reset after it, RFC 9113 8.1), so that the
     * extra fields (a 407's Proxy-Authenticate) go out also to a request with a body, or a CONNECT stream. */
    if (status == 400)
        return proxy__exchange_fail(ex, status);
    ex->buffering = 0;
    ex->route = NULL; /* a page of gatehouse's: no route's header operations */
    if (s->ops->send_local(s, &l) < 0)
        return proxy__exchange_fail(ex, 500);
    ex->status = status;
    ex->res_started = 1;
    ex->res_state = RES_DONE;
    ex->bytes_out = ex->is_head ? 0 : n;
    proxy__exchange_run(ex);
    return GONE;
}

/* A 502/503/504 is what an operator looks for: who asked, on which listener, by which route, of which server. */
static void log_gateway_error(const proxy__exchange *ex, int status)
{
    const proxy__session *s = ex->s;
    const gh_cfg_route *rt = ex->route;

    char stream[24] = "";

    if (s->stream != 0) /* HTTP/2: which stream of the client's connection */
        snprintf(stream, sizeof(stream), " stream %u", s->stream);
    gh_log_warn("%d for client %s%s on %s, route %.*s%s%s%s", status, s->ip, stream, s->listener->cfg->addr.text,
                rt ? (int)rt->prefix.len : 1, rt ? rt->prefix.p : "-", ex->server ? ", server " : "",
                ex->server ? ex->server : "", ex->res_started ? " (response cut)" : "");
}

int proxy__exchange_fail(proxy__exchange *ex, int status)
{
    proxy__session *s = ex->s;
    int started = ex->res_started;

    if (status >= 502 && status <= 504)
        log_gateway_error(ex, status);

    if (!started && status != 400 && s->ops->body_done(s))
        return answer_error(ex, status);
    ex->status = status;
    if (!started)
        ex->bytes_out = ex->is_head ? 0 : proxy__error_body_len(status);
    proxy__access_end(ex);
    if (started)
        s->ops->abort(s);
    else
        s->ops->fail(s, status);
    return GONE;
}

/* The client is gone: the exchange ends with it (logged 499 unless it had a status). */
int proxy__exchange_client_gone(proxy__exchange *ex)
{
    proxy__session *s = ex->s;
    if (ex->status == 0)
        ex->status = 499;
    proxy__access_end(ex);
    s->ops->abort(s);
    return GONE;
}

/* `none_left` is the answer when no server is left to try: 503 if none could be reached. */
static int attach_upstream(proxy__exchange *ex, int none_left)
{
    proxy__upstream *u = NULL;

    if (ex->fwd != NULL && ex->pool == NULL)
        u = proxy__fwd_upstream(ex); /* a forward proxy's origin: no config pool */
    else if (ex->pool->cfg->proxy_protocol)
        u = proxy__upstream_own(ex->s, ex->pool, &ex->tried); /* PROXY headers: this client's own connection */
    if (u == NULL && (ex->fwd == NULL || ex->pool != NULL))
        u = proxy__upstream_get(ex->pool, &ex->tried, ex->hash_key); /* a pool's server (a parent proxy's too) */
    if (u == NULL)
        return proxy__exchange_fail(ex, none_left);
    u->ex = ex;
    ex->u = u;
    ex->server = proxy__upstream_name(u);
    if (ex->upstream_from == 0)
        ex->upstream_from = (uint32_t)(gh_loop_now(ex->s->w->loop) - ex->start_ms + 1);
    ex->usent = 0;
    proxy__observe_upstream_taken(ex);
    if (u->reused) {
        ex->usent = ex->pp_len; /* the connection's PROXY header went before its first request */
        u->connected = 1;
        u->conn.can_write = 1;
        u->conn.can_read = 0; /* it was quiet when it went idle; new bytes bring an event */
    } else {
        gh_timer_set(ex->s->w->loop, &u->timer, ex->route->connect_timeout);
    }
    return 0;
}

/*
 * The upstream failed before a complete response. Another server gets the
 * request if nothing of it can have been acted on: not a byte was sent, or it
 * is idempotent without a body. Never once response bytes arrived.
 */
int proxy__exchange_upstream_failed(proxy__exchange *ex, int status)
{
    proxy__upstream *u = ex->u;
    int reused = u->reused, sent = ex->head_sent, connected = u->connected, server = u->server;
    int can_retry =
        !ex->res_started && gh_buf_len(&u->in) == 0 && (!sent || (ex->idempotent && ex->req_body == GH_H1_BODY_NONE));

    if (!connected && (ex->fwd == NULL || ex->pool != NULL))
        proxy__upstream_mark_failed(u);
    ex->u = NULL;
    proxy__upstream_release(u, 0);
    if (!can_retry)
        return proxy__exchange_fail(ex, status);
    if (ex->fwd != NULL && ex->pool == NULL) {
        proxy__fwd_upstream_failed(ex, connected, reused); /* its next judged address, or a fresh connection */
        if (connected)
            ex->reached = 1;
        if (attach_upstream(ex, 502) == GONE)
            return GONE;
        return 1;
    }
    if (reused) {
        /* A stale keep-alive connection (the server closed it while idle): the
         * server itself is fine, so it may be tried again with a fresh connection. */
        ex->tried &= ~((uint64_t)1 << server);
        proxy__server_close_idle(ex->pool, (size_t)server); /* its other pooled ones likely went stale alike */
    }
    if (connected)
        ex->reached = 1;
    if (attach_upstream(ex, ex->reached ? status : 503) == GONE)
        return GONE;
    return 1;
}

/* The key that `balance hash` maps to a server: client address, a header or a cookie. */
static uint64_t hash_key(const proxy__session *c, const gh_cfg_pool *pool, const gh_h1_request *r)
{
    gh_h1_str v = {"", 0};

    if (pool->balance != GH_BALANCE_HASH)
        return 0;
    if (pool->hash_key == GH_HASH_IP)
        return gh_lb_hash(c->ip, strlen(c->ip));
    if (pool->hash_key == GH_HASH_COOKIE) {
        v = gh_h1_request_cookie(r, pool->hash_name.p, pool->hash_name.len);
    } else {
        for (size_t i = 0; i < r->nheaders; i++)
            if (r->headers[i].name.len == pool->hash_name.len &&
                strncasecmp(r->headers[i].name.p, pool->hash_name.p, pool->hash_name.len) == 0) {
                v = r->headers[i].value;
                break;
            }
    }
    return gh_lb_hash(v.p, v.len);
}

/* A response of gatehouse's own (redirect, respond): no upstream; the pumps only flush it. */
static void local_response_of(proxy__exchange *ex, const gh_cfg_site *site, int status, const char *loc, size_t loclen,
                              const char *body, size_t bodylen)
{
    proxy__session *s = ex->s;
    ex->buffering = 0; /* no server will take the body now */
    /* `close` is the session's to decide (an unread body, HTTP/1.0...) */
    proxy__local l = {status, loc,    loclen,          body, bodylen, ex->is_head, 0, ex->route,
                      site,   s->tls, ex->retry_after, NULL, 0};

    if (s->ops->send_local(s, &l) < 0) {
        proxy__exchange_fail(ex, 500);
        return;
    }
    ex->status = status;
    ex->res_started = 1;
    ex->res_state = RES_DONE;
    ex->bytes_out = ex->is_head || status == 204 || status == 304 ? 0 : bodylen;
    proxy__exchange_run(ex);
}

static void local_response(proxy__exchange *ex, int status, const char *loc, size_t loclen, const char *body,
                           size_t bodylen)
{
    local_response_of(ex, NULL, status, loc, loclen, body, bodylen);
}

static void do_redirect(proxy__exchange *ex, const gh_h1_request *r, gh_h1_str host)
{
    char loc[4096];
    const char *colon = memchr(host.p, ':', host.len);
    gh_redirect_vars v = {
        .scheme = ex->s->tls ? (gh_cstr){"https", 5} : (gh_cstr){"http", 4},
        .host = {host.p, colon && host.p[0] != '[' ? (size_t)(colon - host.p) : host.len},
        .request_uri = {r->path.p, r->path.len},
    };
    int n = gh_route_redirect_target(ex->route, &v, loc, sizeof(loc));
    if (n < 0) {
        proxy__exchange_fail(ex, 414);
        return;
    }
    local_response(ex, ex->route->status, loc, (size_t)n, "", 0);
}

/* Serializes the upstream head and connects. */
static void do_proxy(proxy__exchange *ex, const gh_h1_request *r)
{
    proxy__session *c = ex->s;
    const gh_cfg_route *rt = ex->route;
    char path[GH_H1_MAX_LINE + 256];
    proxy__forward f = {.client_ip = c->ip, .tls = c->tls, .route = rt};
    int n;

    if (r->body == GH_H1_BODY_LENGTH && r->content_length > rt->max_body) {
        gh_metric_limit(c->w->metrics, GH_M_LIMIT_MAX_BODY);
        proxy__exchange_fail(ex, 413);
        return;
    }
    if (rt->websocket) {
        /* `websocket off`: the Upgrade is dropped like any hop-by-hop field, a plain request goes on */
        int ws = gh_ws_check_request(r);
        if (ws < 0) {
            proxy__exchange_fail(ex, -ws); /* 400, or 426 naming version 13 */
            return;
        }
        ex->websocket = f.websocket = ws == GH_WS_UPGRADE;
    }
    if (rt->rewrite != GH_REWRITE_NONE && r->target_form != GH_H1_ASTERISK_FORM) {
        n = gh_route_rewrite_path(rt, r->path.p, r->path.len, path, sizeof(path));
        if (n < 0) {
            proxy__exchange_fail(ex, 414);
            return;
        }
        f.path = path;
        f.path_len = (size_t)n;
    }
    ex->pool = &c->gen->pools[rt->pool->index];
    ex->hash_key = hash_key(c, rt->pool, r);
    f.fallback_host = ex->pool->nservers > 0 ? ex->pool->servers[0].text : "localhost";
    if (proxy__h1u_request(ex, r, &f) < 0) {
        proxy__exchange_fail(ex, 431);
        return;
    }
    /*
     * A5: a body (up to request_buffer) is read before a server is chosen, so
     * a client sending it slowly holds no backend connection meanwhile; a small
     * body then reaches the server whole, at once.
     */
    if (!ex->req_done && rt->body_limits.buffer > 0 &&
        ((r->body == GH_H1_BODY_LENGTH && r->content_length <= gh_buf_room(&ex->uout)) ||
         gh_buf_reserve_big(&ex->uout) == 0)) {
        /* A body that fits beside the head waits in its block; only a larger or chunked one takes a big block. */
        ex->buffering = 1;
        proxy__exchange_run(ex);
        return;
    }
    if (attach_upstream(ex, 503) == GONE)
        return;
    proxy__exchange_run(ex);
}

int proxy__exchange_fwd_head(proxy__exchange *ex, const gh_h1_request *r, const char *extra, size_t extra_len,
                             int absolute)
{
    proxy__session *c = ex->s;
    /* origin-form upstream (RFC 9112 3.2.1), Host from the target (3.2.2), hop-by-hop and Proxy-* fields out */
    proxy__forward f = {
        .client_ip = c->ip, .tls = c->tls, .route = ex->route, .anonymous = 1, .extra = extra, .extra_len = extra_len};

    if (r->body == GH_H1_BODY_LENGTH && r->content_length > ex->route->max_body)
        return proxy__exchange_fail(ex, 413);
    f.fallback_host = "localhost"; /* unused: absolute-form always has its authority */
    if (absolute) {                /* a parent proxy takes the absolute-form target (RFC 9112 3.2.2) */
        f.path = r->target.p;
        f.path_len = r->target.len;
    }
    if (proxy__h1u_request(ex, r, &f) < 0)
        return proxy__exchange_fail(ex, 431);
    return 0;
}

int proxy__exchange_fwd_go(proxy__exchange *ex)
{
    if (attach_upstream(ex, 502) == GONE)
        return GONE;
    proxy__exchange_run(ex);
    return 0;
}

void proxy__exchange_start(proxy__session *s, gh_h1_request *r)
{
    proxy__worker *w = s->w;
    proxy__exchange *ex = calloc(1, sizeof(*ex));
    const gh_cfg_site *site;
    gh_h1_str host;

    if (ex == NULL || gh_buf_reserve(&ex->uout) < 0) {
        proxy__exchange_free(ex); /* gives back uout if it was reserved */
        s->ops->fail(s, 500);
        return;
    }
    ex->s = s;
    s->ex = ex;
    ex->start_ms = gh_loop_now(w->loop);
    ex->req_body = (uint8_t)r->body;
    ex->req_done = s->ops->body_done(s);
    if (ex->req_done)
        ex->req_body = GH_H1_BODY_NONE;
    ex->idempotent = (uint8_t)is_idempotent(r->method);
    ex->is_head = (uint8_t)method_is(r->method, "HEAD");
    ex->expect_continue = (r->flags & GH_H1_F_EXPECT_CONTINUE) && !ex->req_done;
    proxy__access_begin(ex, r);

    if (s->listener->forward != NULL) {
        proxy__fwd_start(ex, r); /* CONNECT and absolute-form: a forward proxy's (forward.c) */
        return;
    }
    if (r->target_form == GH_H1_AUTHORITY_FORM) {
        proxy__exchange_fail(ex, 405); /* CONNECT: this is a reverse proxy */
        return;
    }
    if (gh_h1_request_canonical_path(r) < 0) {
        /* "/x/../admin", "/%61dmin", "/admin;x/": a backend may read another path (h1.c) */
        proxy__exchange_fail(ex, 400);
        return;
    }
    /* RFC 9112 3.2.2: with an absolute-form target, its authority is the host. */
    host = r->target_form == GH_H1_ABSOLUTE_FORM ? r->authority : r->host;
    site = gh_router_site(s->listener->router, host.p, host.len);
    if (site != NULL) {
        gh_route_request rq = {r->method.p, r->method.len, r->path.p, r->path.len, gh_router_h1_has_header, r};
        if (r->target_form == GH_H1_ASTERISK_FORM)
            rq.path = "/", rq.path_len = 1;
        ex->route = gh_router_route(site, &rq);
    }
    if (ex->route == NULL) {
        proxy__exchange_fail(ex,
                             site ? 404 : 421); /* 421: this listener serves no site by that name (RFC 9110 15.5.20) */
        return;
    }
    ex->max_body = ex->route->max_body;
    proxy__access_route(ex, r);
    if (ex->route->edge.nrules > 0 || ex->route->edge.rate != NULL) {
        int refused = proxy__edge_check(s, ex->route, r, &ex->retry_after);

        if (refused) {
            /* 403 or 429: gatehouse's page, before any backend, as a local response (keep-alive goes on
             * unless a body is left unread, which the session decides, as for `respond`) */
            answer_error(ex, refused);
            return;
        }
    }
    if ((r->flags & GH_H1_F_WS_CONNECT) && (ex->route->action != GH_ACTION_PROXY || !ex->route->websocket)) {
        /* RFC 8441: an HTTP/2 client takes any 2xx for its WebSocket open; a route that upgrades nothing
         * (`websocket off`, redirect, respond) has none to give, and a plain request would be a lie */
        proxy__exchange_fail(ex, 501);
        return;
    }
    switch (ex->route->action) {
    case GH_ACTION_REDIRECT:
        do_redirect(ex, r, host);
        break;
    case GH_ACTION_RESPOND:
        local_response(ex, ex->route->status, NULL, 0, ex->route->body.p, ex->route->body.len);
        break;
    default:
        do_proxy(ex, r);
        break;
    }
}

/* ---- request pump ---- */

/*
 * body_min_rate: once its grace period is over, the body must average the
 * rate over the time spent waiting for the client (time the server or our
 * own buffers held it back does not count), so one byte every 50 s cannot
 * hold an exchange, and a backend connection, for ever. 0 ok, GONE cut.
 */
static int check_body_rate(proxy__exchange *ex)
{
    const gh_cfg_body_limits *b;
    uint64_t now;

    if (ex->req_done || ex->route->body_limits.min_rate == 0)
        return 0;
    b = &ex->route->body_limits;
    now = gh_loop_now(ex->s->w->loop);
    if (ex->body_wait_from != 0)
        ex->body_wait_ms += now - ex->body_wait_from;
    ex->body_wait_from = !ex->req_done && gh_buf_room(&ex->uout) > 64 ? now : 0;
    if (ex->body_wait_ms <= b->grace || ex->req_total >= b->min_rate * (ex->body_wait_ms - b->grace) / 1000)
        return 0;
    gh_log_info("client %s: request body below %llu bytes/s, cut", ex->s->ip, (unsigned long long)b->min_rate);
    gh_metric_limit(ex->s->w->metrics, GH_M_LIMIT_BODY_MIN_RATE);
    if (!ex->head_sent)
        return proxy__exchange_fail(ex, 408); /* RFC 9110 15.5.9: nothing went upstream yet */
    ex->status = 408;
    return proxy__exchange_client_gone(ex);
}

static int pump_request(proxy__exchange *ex)
{
    int p = 0, r;

    if (ex->u == NULL && !ex->buffering)
        return 0; /* a local response: the request body is not read */
    if (ex->expect_continue && (ex->buffering || ex->u->connected)) {
        /* RFC 9110 10.1.1: the proxy answers the expectation once it wants the body */
        ex->expect_continue = 0;
        p = ex->s->ops->send_continue(ex->s);
    }
    /* The codec's calls only when they can do something: this loop runs several times a request. */
    if (!ex->req_done) {
        if ((r = proxy__h1u_fill(ex)) == GONE)
            return GONE;
        p |= r;
        if (check_body_rate(ex) == GONE)
            return GONE;
    }
    if (ex->buffering) {
        if (!ex->req_done && ex->req_total < ex->route->body_limits.buffer && gh_buf_room(&ex->uout) > 64)
            return p;
        ex->buffering = 0; /* whole, or as much as may wait: now a server */
        if (attach_upstream(ex, 503) == GONE)
            return GONE;
        return 1;
    }
    if (ex->usent < ex->uout.end && ex->u->conn.can_write && (r = proxy__h1u_flush(ex)) != 0) {
        if (r == GONE)
            return GONE;
        p = 1;
    }
    return p;
}

/* ---- response pump ---- */

static int finish(proxy__exchange *ex)
{
    proxy__session *s = ex->s;
    proxy__upstream *u = ex->u;
    int reusable = ex->upstream_reusable && ex->req_done && ex->usent == ex->uout.end;

    ex->u = NULL;
    if (u != NULL) {
        ex->upstream_to = (uint32_t)(gh_loop_now(s->w->loop) - ex->start_ms + 1);
        proxy__upstream_release(u, reusable);
    }
    proxy__access_end(ex);
    s->ops->done(s); /* an answer before the whole body: the session knows the rest is unread */
    return GONE;
}

/*
 * A 101: only the answer to the WebSocket upgrade we forwarded may switch
 * protocols (anything else would leave the connection speaking what nobody
 * checked). The 101 goes to the client; once it is flushed the exchange
 * becomes a tunnel (pump_response).
 */
static int switch_protocols(proxy__exchange *ex, const gh_h1_response *res, int n)
{
    proxy__session *s = ex->s;
    proxy__upstream *u = ex->u;
    int r;

    if (!ex->websocket || !gh_ws_check_response(res)) {
        gh_log_warn("upstream %s switched protocols without a WebSocket upgrade to answer", proxy__upstream_name(u));
        return proxy__exchange_fail(ex, 502);
    }
    if ((r = s->ops->send_head(s, res, ex->route)) == GH_AGAIN)
        return 0;
    if (r < 0)
        return proxy__exchange_fail(ex, 502);
    proxy__upstream_report(u->pool, u->server, 1);
    ex->status = 101;
    ex->res_started = 1;
    ex->upstream_reusable = 0;
    gh_buf_consume(&u->in, (size_t)n); /* what follows the head is the server's first frames */
    ex->res_state = RES_UPGRADE;
    return 1;
}

/*
 * intercept_errors: the backend's error (a 5xx with a stack trace, internal
 * addresses...) never reaches the client; gatehouse's own page with the same
 * status does. The backend's body is discarded: when all of it is already
 * here and framed by Content-Length, the connection may go back to the pool
 * by the usual rules (nothing more readable, no FIN); otherwise it is closed.
 */
static int intercept(proxy__exchange *ex, const gh_h1_response *res, int n)
{
    proxy__upstream *u = ex->u;
    size_t after = gh_buf_len(&u->in) - (size_t)n;
    int whole = res->body == GH_H1_BODY_NONE || (res->body == GH_H1_BODY_LENGTH && ex->res_left == after);
    int reusable = whole && ex->upstream_reusable && !u->eof && ex->req_done && ex->usent == ex->uout.end;

    proxy__upstream_report(u->pool, u->server, !gh_cfg_passive_counts(&u->pool->cfg->passive, res->status));
    gh_log_info("%d from %s for client %s, route %s: answered with gatehouse's page (intercept_errors)", res->status,
                proxy__upstream_name(u), ex->s->ip, ex->route->prefix.p);
    gh_buf_consume(&u->in, gh_buf_len(&u->in));
    ex->u = NULL;
    ex->upstream_to = (uint32_t)(gh_loop_now(ex->s->w->loop) - ex->start_ms + 1);
    proxy__upstream_release(u, reusable);
    return answer_error(ex, res->status);
}

static int start_response(proxy__exchange *ex)
{
    proxy__session *s = ex->s;
    proxy__upstream *u = ex->u;
    gh_h1_response *res = &s->w->res;
    int n = gh_h1_parse_response(gh_buf_head(&u->in), gh_buf_len(&u->in), ex->is_head, res);
    int r;

    if (n == 0) {
        if (gh_buf_len(&u->in) >= GH_H1_MAX_HEAD || gh_buf_room(&u->in) == 0)
            return proxy__exchange_upstream_failed(ex, 502);
        return 0;
    }
    if (n < 0) {
        gh_log_warn("upstream %s sent a malformed response head", proxy__upstream_name(u));
        return proxy__exchange_fail(ex, 502);
    }
    if (proxy__fwd_parent_connect(ex))
        return proxy__fwd_parent_answer(ex, res, n); /* our CONNECT to a parent proxy */
    if (res->status == 101)
        return switch_protocols(ex, res, n);
    if (res->status < 200) {
        gh_buf_consume(&u->in, (size_t)n); /* interim responses stop here */
        return 1;
    }
    proxy__h1u_framing(ex, res);
    proxy__observe_response_head(ex);
    if (ex->route->intercept_any && gh_cfg_status_in(ex->route->intercept, res->status))
        return intercept(ex, res, n);
    if ((r = s->ops->send_head(s, res, ex->route)) == GH_AGAIN)
        return 0; /* an interim answer is still queued: this head is parsed again later */
    /* Once per response, so after the GH_AGAIN above: one 5xx must not count twice towards ejection. */
    proxy__upstream_report(u->pool, u->server, !gh_cfg_passive_counts(&u->pool->cfg->passive, res->status));
    if (r < 0)
        return proxy__exchange_fail(ex, 502);
    ex->status = res->status;
    ex->res_started = 1;
    gh_buf_consume(&u->in, (size_t)n);
    ex->res_state =
        (res->body == GH_H1_BODY_NONE || (res->body == GH_H1_BODY_LENGTH && ex->res_left == 0)) ? RES_DONE : RES_BODY;
    return 1;
}

/* Body bytes of u->in to the session (which frames them for its client). */
static int relay_plain(proxy__exchange *ex, size_t n)
{
    proxy__session *s = ex->s;
    proxy__upstream *u = ex->u;
    ssize_t w = s->ops->send_data(s, gh_buf_head(&u->in), n);

    if (w == GH_AGAIN || w == 0)
        return 0;
    if (w < 0)
        return proxy__exchange_client_gone(ex);
    gh_buf_consume(&u->in, (size_t)w);
    if (gh_buf_len(&u->in) == 0 && u->in.cap == GH_BUF_BIG_SIZE)
        gh_buf_release(&u->in); /* drained: the next read takes one again if the client keeps up */
    ex->bytes_out += (uint64_t)w;
    return 1;
}

/* The response body is complete: the session frames its end, then the pumps flush it. */
static int end_body(proxy__exchange *ex)
{
    if (ex->s->ops->end(ex->s) == GH_AGAIN)
        return 0; /* tried again once its output drained */
    ex->res_state = RES_DONE;
    return 1;
}

static int relay_body(proxy__exchange *ex)
{
    proxy__upstream *u = ex->u;
    size_t avail = gh_buf_len(&u->in);
    int r;

    switch (ex->res_body) {
    case GH_H1_BODY_LENGTH:
        if (avail == 0)
            return 0;
        r = relay_plain(ex, GH_MIN(avail, ex->res_left));
        if (r == GONE)
            return GONE;
        ex->res_left -= (uint64_t)(avail - gh_buf_len(&u->in));
        if (ex->res_left == 0)
            return end_body(ex) | r;
        return r;
    case GH_H1_BODY_CLOSE:
        if (avail == 0)
            return 0;
        return relay_plain(ex, avail);
    default:
        if (proxy__h1u_decode(ex) < 0)
            return proxy__exchange_fail(ex, 502);
        if (ex->res_decoded == 0) {
            if (!gh_h1_chunked_done(&ex->res_chunk))
                return 0;
            return end_body(ex);
        }
        size_t before = gh_buf_len(&u->in);
        r = relay_plain(ex, ex->res_decoded);
        ex->res_decoded -= (uint32_t)(before - gh_buf_len(&u->in));
        return r;
    }
}

static int flush_client(proxy__exchange *ex)
{
    int r = ex->s->ops->flush(ex->s);
    return r < 0 ? proxy__exchange_client_gone(ex) : r;
}

static int upstream_eof(proxy__exchange *ex)
{
    if (ex->res_state == RES_HEAD)
        return proxy__exchange_upstream_failed(ex, 502);
    if (ex->res_body == GH_H1_BODY_CLOSE) {
        ex->upstream_reusable = 0;
        return end_body(ex); /* not yet: tried again once out drained (u->eof stays set) */
    }
    /* truncated body: the client must see a cut, not a short complete response */
    gh_log_warn("upstream %s closed in the middle of a response", proxy__upstream_name(ex->u));
    ex->s->ops->abort(ex->s);
    return GONE;
}

/*
 * The server's FIN counts only once nothing before it is left to relay: bytes
 * still waiting in u->in for a slow client are part of the response, and the
 * end of a close-delimited body (the last chunk, or the client's close) must
 * come after them. A head still incomplete at that point never will be.
 */
static int eof_due(const proxy__exchange *ex)
{
    const proxy__upstream *u = ex->u;

    if (u == NULL || !u->eof || ex->res_state == RES_DONE)
        return 0;
    if (ex->res_state == RES_HEAD)
        return ex->s->ops->queued(ex->s) == 0; /* not waiting for a 100 Continue to drain */
    return gh_buf_len(&u->in) == 0 && ex->res_decoded == 0;
}

static int pump_response(proxy__exchange *ex)
{
    int p = 0, r;

    if (ex->res_state == RES_HEAD && ex->u != NULL && gh_buf_len(&ex->u->in) > 0) {
        if ((r = start_response(ex)) == GONE)
            return GONE;
        p |= r;
    }
    if (ex->res_state == RES_BODY) {
        if ((r = relay_body(ex)) == GONE)
            return GONE;
        p |= r;
    }
    if ((r = flush_client(ex)) == GONE)
        return GONE;
    p |= r;
    if (ex->res_state == RES_DONE && ex->s->ops->queued(ex->s) == 0)
        return finish(ex);
    if (ex->res_state == RES_UPGRADE) {
        if (ex->s->ops->queued(ex->s) > 0)
            return p;
        proxy__upgrade_tunnel(ex); /* hands both connections over and frees ex */
        return GONE;
    }
    if (ex->res_state != RES_DONE && ex->u != NULL && ex->u->conn.can_read && (r = proxy__h1u_read(ex)) != 0) {
        if (r == GONE)
            return GONE;
        p = 1;
    }
    if (!p && eof_due(ex))
        return upstream_eof(ex);
    return p;
}

/* ---- driving ---- */

static void arm_timers(proxy__exchange *ex, int progress)
{
    proxy__session *s = ex->s;
    proxy__upstream *u = ex->u;
    int wait_client_write = s->ops->arm(s, progress, (u != NULL || ex->buffering) && !ex->req_done);
    int wait_upstream = u != NULL && (!u->connected || (ex->usent < ex->uout.end && !u->conn.can_write) ||
                                      (ex->res_state != RES_DONE && !wait_client_write));

    if (u == NULL)
        return;
    if (wait_upstream) {
        if (progress || u->timer.when == 0)
            gh_timer_set(s->w->loop, &u->timer,
                         u->connected ? ex->route->response_timeout : ex->route->connect_timeout);
    } else {
        gh_timer_stop(s->w->loop, &u->timer);
    }
}

void proxy__exchange_run(proxy__exchange *ex)
{
    int any = 0;
    for (;;) {
        int p = pump_request(ex);
        if (p == GONE)
            return;
        int q = pump_response(ex);
        if (q == GONE)
            return;
        if (!p && !q)
            break;
        any = 1;
    }
    arm_timers(ex, any);
}

int proxy__exchange_to_tunnel(proxy__exchange *ex, const proxy__handover *h)
{
    proxy__session *s = ex->s;
    proxy__upstream *u = ex->u;
    gh_loop *loop = s->w->loop;

    if (u == NULL || gh_conn_move(h->upstream, &u->conn, loop, h->upstream_cb) < 0) {
        proxy__exchange_fail(ex, 502);
        return GH_ERROR;
    }
    gh_timer_stop(loop, &u->timer);
    *h->upstream_in = u->in; /* what the server sent after its 101 head: the tunnel's first bytes */
    u->in = (gh_buf){0};
    ex->u = NULL;
    proxy__upstream_release(u, 0); /* its socket went with the conn: only the struct is freed */
    proxy__access_end(ex);
    *h->gen = s->gen;
    s->gen->refs++;
    if (s->ops->detach(s, h->client, h->client_cb, h->client_in, h->client_out) < 0) {
        gh_conn_close(h->upstream, loop);
        gh_buf_release(h->upstream_in);
        proxy__gen_unref(*h->gen);
        *h->gen = NULL;
        s->ops->abort(s);
        return GH_ERROR;
    }
    return GH_OK;
}

void proxy__exchange_upstream_event(proxy__exchange *ex, unsigned events)
{
    proxy__upstream *u = ex->u;
    if (!u->connected) {
        if (!(events & (GH_EV_WRITE | GH_EV_ERROR)))
            return;
        int err = gh_conn_connect_result(&u->conn);
        if (err != 0) {
            gh_log_warn("connect to %s failed: %s", proxy__upstream_name(u), strerror(err));
            if (proxy__exchange_upstream_failed(ex, 503) == GONE)
                return;
        } else {
            u->connected = 1;
            proxy__observe_connected(u);
        }
    }
    proxy__exchange_run(ex);
}

void proxy__exchange_upstream_timeout(proxy__exchange *ex)
{
    proxy__upstream *u = ex->u;
    if (!u->connected) {
        gh_log_warn("connect to %s timed out", proxy__upstream_name(u));
        if (proxy__exchange_upstream_failed(ex, 503) != GONE)
            proxy__exchange_run(ex);
        return;
    }
    gh_log_warn("upstream %s timed out", proxy__upstream_name(u));
    /* The server's failure only once it had the whole request: a client that stalls its body is not one. */
    if (ex->req_done && ex->usent == ex->uout.end)
        proxy__upstream_report(u->pool, u->server, 0);
    proxy__exchange_fail(ex, 504);
}
