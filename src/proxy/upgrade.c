/*
 * upgrade: an HTTP/1.1 exchange that the server switched to WebSocket (its
 * 101 has reached the client) becomes a tunnel. Through the exchange's
 * hand-over seam (proxy__exchange_to_tunnel) the tunnel takes both
 * connections, open, and the bytes each side sent after its head (the
 * client's first frames, the server's first frames); the exchange, the session
 * and the upstream record are freed.
 *
 * A tunnel holds a reference to the configuration generation it started on,
 * so a reload never cuts it, and stays in the worker's list so that the
 * SIGTERM drain deadline ends it. It writes one access-log line when it ends.
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proxy/proxy.h"

static const char *const reasons[] = {"", "closed", "error", "idle timeout", "shutdown"};

void proxy__tunnel_unlink(proxy__tunnel *t)
{
    proxy__worker *w = t->w;

    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        w->tunnels = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    w->ntunnels--;
}

void proxy__tunnel_finish(proxy__tunnel *t)
{
    proxy__worker *w = t->w;

    if (t->fwd_rule != 0) /* a forward proxy's CONNECT: who, where to, by which rule, how much, how long */
        gh_log_info("forward: tunnel from %s%s%s to %s by rule %d ended (%s) after %llu ms: %llu bytes up, %llu down",
                    t->ip, t->fwd_user ? " user " : "", t->fwd_user ? t->fwd_user : "", t->fwd_dst, t->fwd_rule,
                    reasons[t->reason], (unsigned long long)(gh_loop_now(w->loop) - t->start_ms),
                    (unsigned long long)t->side[0].bytes, (unsigned long long)t->side[1].bytes);

    if (t->pool != NULL) {
        gh_lb_server *s = &t->pool->lb_servers[t->server];
        gh_log_debug("tunnel from %s to %s ended (%s) after %llu ms, %llu bytes in, %llu out", t->ip,
                     t->pool->servers[t->server].text, reasons[t->reason],
                     (unsigned long long)(gh_loop_now(w->loop) - t->start_ms), (unsigned long long)t->side[0].bytes,
                     (unsigned long long)t->side[1].bytes);
        if (s->inflight > 0)
            s->inflight--;
        gh_metric_inflight(w->metrics, t->pool->slots[t->server], -1);
        gh_metric_tunnel(w->metrics, -1);
    }
    proxy__access_tunnel(t);
    proxy__peer_release(w, &t->peer, &t->peer_counted);
    proxy__tunnel_unlink(t);
    proxy__gen_unref(t->gen); /* the pool lives in the generation: after its last use */
    gh_loop_release(w->loop, t);
    if (w->draining && w->nclients == 0 && w->ntunnels == 0)
        gh_loop_stop(w->loop);
}

void proxy__tunnel_link(proxy__tunnel *t)
{
    proxy__worker *w = t->w;

    t->next = w->tunnels;
    if (w->tunnels != NULL)
        w->tunnels->prev = t;
    w->tunnels = t;
    w->ntunnels++;
}

void proxy__upgrade_tunnel(proxy__exchange *ex)
{
    proxy__session *s = ex->s;
    proxy__worker *w = s->w;
    proxy__tunnel *t = calloc(1, sizeof(*t));
    proxy__handover h;
    gh_buf unsent = {0}; /* stays empty: the exchange hands over only once the 101 is written (pump_response) */

    if (t == NULL) {
        s->ops->abort(s); /* frees ex, closes both */
        return;
    }
    proxy__tunnel_init(t, w->loop, s->gen->rt->cfg->timeouts.tunnel, proxy__tunnel_finish);
    t->w = w;
    t->pool = ex->pool;
    t->server = ex->u->server;
    t->start_ms = ex->start_ms;
    t->status = ex->status;
    t->log = ex->log; /* logged when the tunnel ends, not at the 101 */
    ex->log = NULL;
    memcpy(t->ip, s->ip, sizeof(t->ip));
    /* the client's connection goes on as the tunnel: so does its place in max_connections_per_ip */
    t->peer = s->peer;
    t->peer_counted = s->peer_counted;
    s->peer_counted = 0;
    if (ex->fwd != NULL) /* a forward proxy's CONNECT through a parent */
        proxy__fwd_tunnel_info(ex->fwd, t, proxy__upstream_name(ex->u));
    h = (proxy__handover){.client = &t->side[0].conn,
                          .upstream = &t->side[1].conn,
                          .client_cb = proxy__tunnel_on_event,
                          .upstream_cb = proxy__tunnel_on_event,
                          .client_in = &t->side[0].buf,
                          .client_out = &unsent,
                          .upstream_in = &t->side[1].buf,
                          .gen = &t->gen};
    proxy__tunnel_link(t); /* before the session lets go: a drain never sees zero connections in between */
    if (proxy__exchange_to_tunnel(ex, &h) < 0) {
        gh_buf_release(&unsent);
        /* ex is gone; whatever reached the tunnel is closed here, and its line
         * logged (the client had its 101) with no bytes and no server to count */
        t->reason = PROXY__TUNNEL_ERROR;
        for (int i = 0; i < 2; i++) {
            gh_conn_close(&t->side[i].conn, w->loop);
            gh_buf_release(&t->side[i].buf);
        }
        t->pool = NULL;
        proxy__tunnel_finish(t);
        return;
    }
    gh_buf_release(&unsent);
    /* The bytes that came with each head are the tunnel's first (frames sent early). */
    t->side[0].bytes = gh_buf_len(&t->side[0].buf);
    t->side[1].bytes = gh_buf_len(&t->side[1].buf);
    t->pool->lb_servers[t->server].inflight++; /* a WebSocket is load on its server (least_conn, p2c) */
    gh_metric_inflight(w->metrics, t->pool->slots[t->server], 1);
    gh_metric_tunnel(w->metrics, 1);
    proxy__tunnel_start(t);
}

void proxy__tunnels_close(proxy__worker *w)
{
    while (w->tunnels != NULL)
        proxy__tunnel_close(w->tunnels, PROXY__TUNNEL_SHUTDOWN);
}
