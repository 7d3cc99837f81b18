/*
 * proxy: the functions shared by the files of src/proxy (private to this
 * folder); the types are in proxy-t.h.
 */
#ifndef GH_PROXY_PROXY_H
#define GH_PROXY_PROXY_H

#include "proxy/proxy-t.h"

/* client.c: an HTTP/1 client connection */
/* A new HTTP client connection: TLS when the listener has a context, else plain. */
void proxy__client_accept(proxy__worker *w, const proxy__listener *l, int fd, const struct sockaddr_storage *peer);
/* The same on a conn its transport made (a no_socket one, net/memconn.h: tests and fuzzing), moved into the client. */
void proxy__client_accept_conn(proxy__worker *w, const proxy__listener *l, gh_conn *conn,
                               const struct sockaddr_storage *peer);
/* Frees the exchange under way (logged 499 if it had no status yet) and closes. */
void proxy__client_close(proxy__client *c);
/* SIGTERM: idle connections close now, busy ones after their current response. */
void proxy__client_drain(proxy__worker *w);
/* Closes the longest-idle keep-alive clients (a batch, oldest first); returns how many. */
size_t proxy__client_close_idle(proxy__worker *w);
/* Runs the connection's state machine after something changed. */
void proxy__client_dispatch(proxy__client *c);
/* Answers with a short error page (no body for HEAD) and closes (status 400, 502...); no exchange is under way. */
void proxy__client_fail(proxy__client *c, int status, int head);
/* The exchange ended: frees it; next request (pipelined ones are already in `in`), or close. */
void proxy__client_exchange_done(proxy__client *c);
/* Reads what the client sent into c->in: 1 got bytes, 0 would block or no room, -1 closed or failed. */
int proxy__client_read(proxy__client *c);
/* Frees a client whose conn went to a new owner (proxy__exchange_to_tunnel): the socket stays open. */
void proxy__client_detached(proxy__client *c);
/* Resets the keep-alive state: no buffers held while idle. */
void proxy__client_go_idle(proxy__client *c, uint32_t timeout);
/* Shuts our side (close_notify, FIN) and discards input briefly before closing (a lingering close). */
void proxy__client_linger(proxy__client *c);

/* h1_server.c: the HTTP/1 server codec (heads, pipelining, chunked output, 100-continue, close) */
extern const proxy__session_ops proxy__h1_session_ops;
/* Reads and parses request heads; starts an exchange for a complete one. */
void proxy__h1_read_head(proxy__client *c);

/* h2_server.c: the HTTP/2 session of a client connection (streams as exchanges, on nghttp2) */
/* The connection speaks HTTP/2 from now (ALPN h2, or the preface on a plain listener): 0, or -1 (close it). */
int proxy__h2_start(proxy__client *c);
/* After an event of the connection: reads frames, runs what they started. */
void proxy__h2_dispatch(proxy__client *c);
/* The connection's timer: idle (keepalive), or a peer that takes no bytes (send). */
void proxy__h2_timeout(proxy__client *c);
/* SIGTERM: GOAWAY; the streams in flight finish, then the connection closes. */
void proxy__h2_drain(proxy__client *c);
/* Frees the session and every stream (their exchanges logged 499 unless they had a status). */
void proxy__h2_free(proxy__client *c);
/* 1 when the connection served a stream and has none open (max_connections may close it), with since when. */
int proxy__h2_idle(const proxy__client *c, uint64_t *since);
/* 1 when the connection's streams are all tunnel sides, live or let go (SIGTERM's deadline: it is a tunnel's). */
int proxy__h2_tunnels_only(const proxy__client *c);
/* The worker's idle hook: one nghttp2_session_send and one write per dirty connection. */
void proxy__h2_flush_dirty(proxy__worker *w);

/* exchange.c */
/*
 * A new exchange for session s on the protocol-neutral head r (which the
 * session keeps valid until it returns); r's path is made canonical in place
 * (gh_h1_request_canonical_path).
 */
void proxy__exchange_start(proxy__session *s, gh_h1_request *r);
void proxy__exchange_run(proxy__exchange *ex);
void proxy__exchange_free(proxy__exchange *ex);
void proxy__exchange_upstream_event(proxy__exchange *ex, unsigned events);
void proxy__exchange_upstream_timeout(proxy__exchange *ex);

/* The exchange's endings, for its codecs (h1_upstream.c); each returns PROXY__GONE. */
int proxy__exchange_fail(proxy__exchange *ex, int status);
int proxy__exchange_client_gone(proxy__exchange *ex);
/* The upstream failed before a complete response: another server if the request allows it. 1 or PROXY__GONE. */
int proxy__exchange_upstream_failed(proxy__exchange *ex, int status);

/*
 * pp_send.c: the PROXY protocol header (version 1 or 2) that starts a new
 * connection to a server, naming the client src, the address dst it
 * connected to (NULL: unknown, then UNKNOWN / UNSPEC), and for v2 the TLS
 * facts of the client's transport `client` (NULL or plain: none). Its length,
 * or -1 when cap (GH_PP_MAX is enough) is too small. The stream services'
 * pools call proxy__pp_write with their own ends.
 */
ssize_t proxy__pp_write(int version, const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                        const gh_conn *client, uint8_t *out, size_t cap);
/* The same for an exchange's session (its local address read from the socket on first use). */
ssize_t proxy__pp_session(proxy__session *s, int version, uint8_t *out, size_t cap);

/* h1_upstream.c: the HTTP/1.1 upstream codec. Pumps return 1 progress, 0 none, or PROXY__GONE. */
/* Serializes the request head into ex->uout, behind the pool's PROXY header if it sends one (ex->pp_len
 * bytes, skipped on a reused connection): GH_OK, or GH_ERROR when it does not fit (431). */
int proxy__h1u_request(proxy__exchange *ex, const gh_h1_request *r, const proxy__forward *f);
/* Request body from the session into uout, framed. */
int proxy__h1u_fill(proxy__exchange *ex);
/* uout to the server. */
int proxy__h1u_flush(proxy__exchange *ex);
/* Response bytes into u->in; the server's FIN sets u->eof. */
int proxy__h1u_read(proxy__exchange *ex);
/* The body framing and keep-alive of a parsed response head. */
void proxy__h1u_framing(proxy__exchange *ex, const gh_h1_response *res);
/* Decodes a chunked body in u->in in place (decoded bytes counted in res_decoded): GH_OK or GH_ERROR. */
int proxy__h1u_decode(proxy__exchange *ex);

/*
 * The seam for tunnels (WebSocket after a 101, CONNECT): ends the exchange
 * and hands its two connections, registered and open, to a new owner. The
 * client's conn moves into `client` (events to client_cb) with what it had read
 * past the request (`client_in`) and what is queued for it and not yet written
 * (`client_out`: the 101 head, sent by the caller with the session's send_head
 * before the handover); the upstream's into `upstream` (upstream_cb)
 * with the bytes after the 101 head (`upstream_in`). `*gen` gets a reference
 * to the configuration generation the exchange ran on (proxy__gen_unref it).
 * The access log line is written; the session and the upstream struct are
 * freed without closing either socket (the upstream is never pooled). GH_OK;
 * GH_ERROR when the session cannot give its connection away (then the
 * exchange is aborted, both closed).
 */
typedef struct proxy__handover {
    gh_conn *client, *upstream;
    gh_io_cb client_cb, upstream_cb;
    gh_buf *client_in, *client_out, *upstream_in;
    proxy__gen **gen;
} proxy__handover;
int proxy__exchange_to_tunnel(proxy__exchange *ex, const proxy__handover *h);

/* edge.c: the route's allow/deny rules and rate limit: 0, 403 or 429 (then *retry_after, seconds). */
int proxy__edge_check(const proxy__session *s, const gh_cfg_route *rt, const gh_h1_request *r, uint32_t *retry_after);
/*
 * A stream service's allow/deny rules and connection rate limit for a new connection from peer (the
 * PROXY header's client when there was one), counted in the metrics as a site's 403 and 429 are:
 * NULL let in, else why it is to be closed (for the access log).
 */
const char *proxy__edge_conn_check(proxy__worker *w, const proxy__gen *g, const gh_cfg_edge *e,
                                   const struct sockaddr_storage *peer, const char *ip);
/*
 * max_connections_per_ip, counted across all workers (proxy/peerlimit.h) from peer (call it once peer
 * is the real client): 0 admitted (counted: *counted set, unless the table had no room), -1 over the
 * limit (close it). proxy__peer_admit is the same for a session's s->peer.
 */
int proxy__peer_admit_at(proxy__worker *w, const struct sockaddr_storage *peer, const char *ip, uint8_t *counted);
int proxy__peer_admit(proxy__session *s);
/* Gives the count back when *counted (then clears it); a tunnel takes it over from its session. */
void proxy__peer_release(proxy__worker *w, const struct sockaddr_storage *peer, uint8_t *counted);

/* forward.c: the exchanges of a forward proxy listener (CONNECT, absolute-form) */
typedef struct proxy__fwd proxy__fwd;
/* Judges, resolves and connects for the request head r (valid only during the call). */
void proxy__fwd_start(proxy__exchange *ex, gh_h1_request *r);
/* With its exchange: the DNS query cancelled, connects closed. */
void proxy__fwd_free(proxy__fwd *f);
/* Absolute-form: a connection to the next judged address (pooled unless it went stale); NULL: none left. */
proxy__upstream *proxy__fwd_upstream(proxy__exchange *ex);
/* That connection failed before a response: a stale pooled one is replaced, else the next address. */
void proxy__fwd_upstream_failed(proxy__exchange *ex, int connected, int reused);
/* The exchange is a CONNECT through a parent proxy: its 2xx makes a tunnel (proxy__fwd_parent_answer). */
int proxy__fwd_parent_connect(const proxy__exchange *ex);
/* The parent's answer head (n bytes in u->in): a 2xx becomes a tunnel, anything else a 502. PROXY__GONE. */
int proxy__fwd_parent_answer(proxy__exchange *ex, const gh_h1_response *res, int n);
/* A forward tunnel's user, rule, idle timeout and destination (dst: the address, or the parent) for t. */
void proxy__fwd_tunnel_info(const proxy__fwd *f, proxy__tunnel *t, const char *dst);
/* For the access log: the user (NULL: none) and the allowing rule (NULL: none yet, or denied). */
void proxy__fwd_log_facts(const proxy__fwd *f, const char **user, const gh_cfg_fwd_rule **rule);
/* At worker exit: the resolver and the credential cache. */
void proxy__fwd_worker_free(proxy__worker *w);

/* fwd_auth.c: Proxy-Authorization: Basic against the users file */
/* 0 (*user: the user, in the config), 407 (none, or wrong), or 429 (too many failures from this address). */
int proxy__fwd_auth(proxy__session *s, const gh_cfg_forward *f, const gh_h1_request *r, const char **user);
/* Answers 407 (with Proxy-Authenticate) or 429. */
void proxy__fwd_auth_refuse(proxy__exchange *ex, const gh_cfg_forward *f, int status);
void proxy__fwd_auth_free(proxy__worker *w);

/* exchange.c, for forward.c */
/* Gatehouse's error page for status (with extra header lines), before any upstream. Returns PROXY__GONE. */
int proxy__exchange_local_error(proxy__exchange *ex, int status, const char *extra, size_t extra_len);
/*
 * Absolute-form: the upstream head into uout, origin-form for an origin, absolute-form (absolute 1) for a
 * parent proxy, with extra header lines (the parent's Proxy-Authorization). 0, or PROXY__GONE after a 4xx.
 */
int proxy__exchange_fwd_head(proxy__exchange *ex, const gh_h1_request *r, const char *extra, size_t extra_len,
                             int absolute);
/* Absolute-form, addresses judged: connect and run the pumps. 0 or PROXY__GONE. */
int proxy__exchange_fwd_go(proxy__exchange *ex);

/* upgrade.c: an exchange whose 101 reached the client becomes a tunnel (through proxy__exchange_to_tunnel). */
void proxy__upgrade_tunnel(proxy__exchange *ex);
/* A tunnel joins the worker's list (the drain deadline ends it). */
void proxy__tunnel_link(proxy__tunnel *t);
/* A tunnel's `end` for the proxy's tunnels: logged, counts given back, unlinked, its generation let go, freed. */
void proxy__tunnel_finish(proxy__tunnel *t);
/* The drain deadline: every tunnel of the worker ends now. */
void proxy__tunnels_close(proxy__worker *w);
/* A tunnel (or a stream, whose first member is one) in the worker's list and count, or out of them. */
void proxy__tunnel_link(proxy__tunnel *t);
void proxy__tunnel_unlink(proxy__tunnel *t);

/* stream.c: TCP stream services (PROXY__MODE_STREAM listeners) */
/*
 * A new connection on a stream listener: the PostgreSQL preface, the
 * ClientHello's SNI, TLS, a server, then a tunnel. The accept path a PROXY
 * protocol reader wraps (it would run before this, with the header's peer).
 */
void proxy__stream_accept(proxy__worker *w, const proxy__listener *l, int fd, const struct sockaddr_storage *peer);

/* upstream.c */
int proxy__pools_init(proxy__gen *g);
void proxy__pools_free(proxy__gen *g);
/* Gets a pooled or new connection to a server of the pool not yet tried; NULL when none is left. */
proxy__upstream *proxy__upstream_get(proxy__pool *p, uint64_t *tried, uint64_t key);
/*
 * NULL in gatehouse. Set by tests/fuzz/fuzz_front.c: a new upstream connection is made by it (an in-memory
 * server, net/memconn.h: c initialised, events to cb) instead of a connect to the server's address; 0 or -1.
 */
extern int (*proxy__upstream_connect_hook)(gh_conn *c, gh_io_cb cb, const proxy__pool *p, int server);
void proxy__upstream_release(proxy__upstream *u, int reusable);
/*
 * A pool with proxy_protocol: the connection this session's last request
 * left idle (its PROXY header named this client), when it may carry the next
 * one: the same pool and generation, its server untried and still healthy.
 * Counted in flight like proxy__upstream_get's; NULL: none (a stale one is closed).
 */
proxy__upstream *proxy__upstream_own(proxy__session *s, proxy__pool *p, uint64_t *tried);
/* Closes the session's own idle connection, if any: the session ends or changes generation. */
void proxy__session_drop_own(proxy__session *s);
void proxy__upstream_mark_failed(proxy__upstream *u);
/* A connect to this server failed or timed out: skipped for a while in this worker, and passive health told. */
void proxy__server_failed(proxy__pool *p, size_t server);
/*
 * For a stream: a new connection (never a pooled HTTP one) to a server of p
 * that the balancer picks among those not yet in *tried (the bit is set).
 * Returns its fd, connecting, with the server in *server; -1 when no server
 * is left or this host is out of descriptors, ports or memory.
 */
int proxy__upstream_open(proxy__pool *p, uint64_t *tried, uint64_t key, int *server);
/* Passive health: ok 0 for a failed connect, a timeout or a counted status (gh_cfg_passive_counts), 1 for a good
 * answer. */
void proxy__upstream_report(proxy__pool *p, size_t server, int ok);
void proxy__pool_close_idle(proxy__pool *p);
/* Closes one server's idle connections (after one of them proved stale, the others likely are too). */
void proxy__server_close_idle(proxy__pool *p, size_t server);
void proxy__pools_close_idle(proxy__gen *g);
/* The generation's forward pool: slots of origin addresses, made on first use; NULL: out of memory. */
proxy__pool *proxy__fwd_pool(proxy__gen *g);
void proxy__fwd_pool_free(proxy__gen *g);
/* A connection to address a in the forward pool: an idle one of its slot unless fresh, else new. NULL: failed. */
proxy__upstream *proxy__upstream_to(proxy__pool *p, const gh_addr *a, int fresh);

/* worker.c */
void proxy__gen_unref(proxy__gen *g);
/* Moves a session between requests to the current generation; 0, or -1 when its listener is gone. */
int proxy__session_regen(proxy__session *s);

/* tunnel.c */
/* Prepares a zeroed tunnel; the owner then moves registered connections into side[0].conn and side[1].conn. */
void proxy__tunnel_init(proxy__tunnel *t, gh_loop *l, uint32_t idle_ms, void (*end)(proxy__tunnel *t));
/* The callback of both connections' events once they are the tunnel's. */
void proxy__tunnel_on_event(gh_io *io, unsigned events);
/* Starts pumping what both sides hold and arms the idle timeout (it may end at once: `end` is called). */
void proxy__tunnel_start(proxy__tunnel *t);
/* Pumps both directions as far as they go (after an event). */
void proxy__tunnel_run(proxy__tunnel *t);
/* Ends the tunnel now (drain deadline): both connections closed, `end` called. */
void proxy__tunnel_close(proxy__tunnel *t, int reason);

/* headers.c: serialize heads; return the length written, or -1 if it does not fit in cap. */

int proxy__request_head(char *dst, size_t cap, const gh_h1_request *r, const proxy__forward *f);
/* The response head for the client: hop-by-hop, hidden (shielding) and replaced headers out, the route's and
 * site's in, HSTS when tls. */
int proxy__response_head(char *dst, size_t cap, const gh_h1_response *r, int chunk_out, int close,
                         const gh_cfg_route *route, int tls);
/*
 * The fields a client gets in a response head, in order, for every client protocol (proxy__response_head
 * writes them as HTTP/1.1 text, h2_server.c as HEADERS): the upstream's fields but the hop-by-hop ones, the
 * hidden ones (hide_header) and those a response_header operation names; then the route's `set` fields; then
 * the site's HSTS (over TLS, unless an operation names it). One walk, so that the protocols cannot drift apart.
 */
typedef struct proxy__resp_walk {
    const gh_h1_response *r;
    const gh_cfg_route *route;
    const gh_cfg_header_op *ops;
    const gh_cstr *hsts; /* still to send, or NULL */
    uint32_t nops, i, op;
    uint8_t hide;
} proxy__resp_walk;
void proxy__resp_walk_init(proxy__resp_walk *w, const gh_h1_response *r, const gh_cfg_route *route, int tls);
/* The next field: 1 with its name and value (*from: the upstream's field, NULL for one of ours), 0 at the end. */
int proxy__resp_walk_next(proxy__resp_walk *w, gh_h1_str *name, gh_h1_str *value, const gh_h1_header **from);
/* The Strict-Transport-Security value to send, or NULL (no hsts, or not over TLS). */
const gh_cstr *proxy__hsts(const gh_cfg_site *site, int tls);

int proxy__local_response(char *dst, size_t cap, const proxy__local *l);
/* The error page of `status` with Connection: close (for HEAD: its head only). */
int proxy__error_response(char *dst, size_t cap, int status, int head);
/* The body of that page ("404 Not Found\n") into dst; its length, 0 if it does not fit. */
size_t proxy__error_body(char *dst, size_t cap, int status);
/* The body length of proxy__error_response's page, for the access log. */
size_t proxy__error_body_len(int status);
const char *proxy__status_text(int status);

/* accesslog.c: the access logs of a worker (one sink per distinct path) */
/* Opens the sinks of the worker's current generation; -1 when one cannot be opened. */
int proxy__access_open(proxy__worker *w);
/* Renders the head's part of the line for the main context's log (proxy__access_route: the route's). */
void proxy__access_begin(proxy__exchange *ex, const gh_h1_request *r);
/* The route is chosen: its log and format (a route not logged gives its record back). */
void proxy__access_route(proxy__exchange *ex, const gh_h1_request *r);
/* Writes the exchange's line into its sink's buffer and gives its record back. */
void proxy__access_end(proxy__exchange *ex);
/* Gives the record back without a line (the exchange is freed without one). */
void proxy__access_discard(proxy__exchange *ex);
/* At worker exit: a last nonblocking flush, the count of lines dropped, and the descriptors closed. */
void proxy__access_close(proxy__worker *w);
void proxy__access_reject(proxy__client *c, int status, size_t bytes);
/* A tunnel ended: its request line, 101, bytes both ways and how long it lasted. */
void proxy__access_tunnel(proxy__tunnel *t);
void proxy__access_flush(proxy__worker *w);
/* A stream ended (stream.c): its line in the main context's access_log. */
typedef struct proxy__stream_log {
    const char *ip, *service, *server, *sni, *tls, *end; /* "-" for none */
    uint64_t ms, in, out;                                /* duration; bytes from and to the client */
} proxy__stream_log;
void proxy__access_stream(proxy__worker *w, const proxy__gen *g, const proxy__stream_log *l);
/* Reload and SIGUSR1: every sink closed, the current generation's opened again (log rotation). */
void proxy__access_reopen(proxy__worker *w);
/* A generation is freed: its map of sinks goes with it. */
void proxy__access_gen_free(proxy__gen *g);

#endif
