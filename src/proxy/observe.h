/*
 * observe: what the proxy tells the metrics region (metrics/metrics.h), in
 * one place, so that each hook in the session, exchange and upstream files
 * is one call. Private to src/proxy.
 */
#ifndef GH_PROXY_OBSERVE_H
#define GH_PROXY_OBSERVE_H

#include "metrics/export.h"
#include "proxy/proxy-t.h"

/* An exchange is freed: its request counts under its route (none: refused before routing). */
void proxy__observe_exchange_end(const proxy__exchange *ex);

/* The connection speaks another protocol now (ALPN chose h2): it is counted under proto until it closes. */
void proxy__observe_client_proto(proxy__client *c, int proto);

/* The parser refused a request head (400, 414, 431...): no exchange was made. */
void proxy__observe_reject(proxy__client *c, int status);

/* A handshake step of a client's (or a stream's client side's) TLS returned r (GH_OK or an error; not GH_AGAIN). */
void proxy__observe_handshake(proxy__client *c, int r);
void proxy__observe_tls(proxy__worker *w, const gh_conn *conn, int r);

/* An upstream connection began connecting / is connected (the connect histogram). */
void proxy__observe_connecting(proxy__upstream *u);
void proxy__observe_connected(const proxy__upstream *u);

/* The exchange took its upstream / parsed its response head (the response histogram). */
void proxy__observe_upstream_taken(proxy__exchange *ex);
void proxy__observe_response_head(const proxy__exchange *ex);

/* What the admin listener shows from this worker (admin/admin.h: the view callback, arg the worker). */
void proxy__observe_view(void *worker, gh_metrics_view *v);

#endif
