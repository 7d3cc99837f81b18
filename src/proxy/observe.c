/*
 * observe: the proxy's metrics hooks (observe.h).
 */
#include "proxy/observe.h"

#include "core/common.h"
#include "core/loop.h"
#include "tls/tls.h"

void proxy__observe_exchange_end(const proxy__exchange *ex)
{
    const gh_cfg_route *r = ex->route;

    if (ex->s == NULL)
        return; /* freed before it was started (out of memory): no request to count */
    gh_metric_request(ex->s->w->metrics, r != NULL ? r->metric : GH_M_NO_ROUTE, ex->status, ex->req_total,
                      ex->bytes_out);
}

void proxy__observe_client_proto(proxy__client *c, int proto)
{
    gh_metric_conn_switch(c->w->metrics, c->s.listener->cfg->metric, c->mproto, proto);
    c->mproto = (uint8_t)proto;
}

void proxy__observe_reject(proxy__client *c, int status)
{
    gh_metric_request(c->w->metrics, GH_M_NO_ROUTE, status, 0, 0);
    if (status == 431 || status == 414)
        gh_metric_limit(c->w->metrics, GH_M_LIMIT_HEAD_SIZE);
}

void proxy__observe_tls(proxy__worker *w, const gh_conn *conn, int r)
{
    int resumed, v;

    if (r < 0 && r != GH_AGAIN) {
        GH_M_ADD(w->metrics->tls_failures, 1);
        return;
    }
    v = gh_tls_conn_version(conn, &resumed);
    gh_metric_tls(w->metrics, v == 0x0304 ? GH_M_TLS13 : v == 0x0303 ? GH_M_TLS12 : GH_M_TLS_OTHER, resumed);
}

void proxy__observe_handshake(proxy__client *c, int r)
{
    proxy__observe_tls(c->w, &c->conn, r);
}

/*
 * The histograms' times: one clock read per request. The start is read when
 * it happens (the request goes out after the client's bytes were decrypted
 * and parsed, and after the earlier events of the loop's batch: the loop's
 * time would count all that as the backend's). The end is the loop's time
 * (CLOCK_MONOTONIC when epoll_wait returned, core/loop.c): the response, or
 * the connect's completion, was already there then, so it is the more exact
 * of the two; only when the end comes in the very iteration that began it
 * (a connect to a local port, a response read at once) is the loop's time
 * older than the start, and the clock is read.
 */
static uint64_t since(const gh_loop *loop, uint64_t start_us)
{
    uint64_t now = gh_loop_now_us(loop);

    if (now < start_us)
        now = gh_metrics_now_us();
    return now - start_us;
}

void proxy__observe_connecting(proxy__upstream *u)
{
    u->connect_us = gh_metrics_now_us();
}

void proxy__observe_connected(const proxy__upstream *u)
{
    gh_metric_observe(&gh_metric_pool(u->w->metrics, u->pool->cfg->metric)->connect, since(u->w->loop, u->connect_us));
}

void proxy__observe_upstream_taken(proxy__exchange *ex)
{
    ex->upstream_us = gh_metrics_now_us();
}

void proxy__observe_response_head(const proxy__exchange *ex)
{
    /* a forward proxy's origin has no config pool: its connection's pool (the forward pool, no series) */
    const proxy__pool *p = ex->pool != NULL ? ex->pool : ex->u != NULL ? ex->u->pool : NULL;

    if (ex->upstream_us != 0 && p != NULL)
        gh_metric_observe(&gh_metric_pool(ex->s->w->metrics, p->cfg->metric)->response,
                          since(ex->s->w->loop, ex->upstream_us));
}

void proxy__observe_view(void *worker, gh_metrics_view *v)
{
    const proxy__worker *w = worker;
    const gh_runtime *rt = w->gen->rt;

    v->cfg = rt->cfg;
    v->health = rt->health;
    v->addrs = rt->addrs;
    v->refs = rt->refs;
    v->nslots = rt->nslots;
    v->worker = w->id;
}
