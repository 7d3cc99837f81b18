/*
 * proxy-t: the types shared by the files of src/proxy (private to this folder);
 * the functions are in proxy.h (HAProxy's x-t.h / x.h split).
 *
 *   session   the client side of exchanges, whatever its protocol: the small
 *             interface below (proxy__session_ops) is all the exchange sees
 *   client    an HTTP/1 client connection (TLS or plain): handshake, keep-alive,
 *             close (client.c); its HTTP/1 codec and session ops (h1_server.c)
 *   exchange  one request and its response, streamed between a session and an upstream
 *   upstream  a plain connection to a server; pooled (keep-alive) between exchanges
 *   tunnel    two connections joined byte for byte (a WebSocket after its 101: upgrade.c)
 *   worker    the loop, the listener, the servers and their idle pools
 *
 * Ownership: the worker owns clients and tunnels (lists) and idle upstreams (per
 * server); a session owns its current exchange; an exchange borrows one upstream
 * at a time; a tunnel owns both its connections.
 * Everything here is per worker: no locks.
 */
#ifndef GH_PROXY_PROXY_T_H
#define GH_PROXY_PROXY_T_H

#include <stdint.h>
#include <sys/socket.h>

#include "balance/balance.h"
#include "conf/config.h"
#include "conf/router.h"
#include "core/buf.h"
#include "core/loop.h"
#include "http/h1.h"
#include "health/probe.h"
#include "health/state.h"
#include "metrics/metrics.h"
#include "proxy/runtime.h"
#include "net/conn.h"
#include "tls/tls.h"

typedef struct proxy__worker proxy__worker;
typedef struct proxy__client proxy__client;
typedef struct proxy__exchange proxy__exchange;
typedef struct proxy__upstream proxy__upstream;
typedef struct proxy__pool proxy__pool;
typedef struct proxy__listener proxy__listener;
typedef struct proxy__tunnel proxy__tunnel;
typedef struct proxy__gen proxy__gen;
typedef struct proxy__access proxy__access;         /* accesslog.c: a worker's log descriptor and buffer */
typedef struct proxy__access_rec proxy__access_rec; /* accesslog.c: one request's quoted log fields */
typedef struct proxy__session proxy__session;
typedef struct proxy__h2 proxy__h2; /* h2_server.c: an HTTP/2 connection's session and its streams */

#define PROXY__GONE (-1) /* a pump's answer: the exchange was finished or failed and freed */
typedef struct proxy__local proxy__local;

/*
 * The client side of an exchange as the exchange sees it: an HTTP/1 connection
 * today (h1_server.c), an HTTP/2 stream next. The exchange works on the
 * protocol-neutral request head it was started with and calls only these; a
 * session resumes its exchange (proxy__exchange_run) when what it waited for
 * came: room to write, body bytes. The terminal calls (done, fail, abort)
 * free the exchange.
 */
typedef struct proxy__session_ops {
    /* The upstream's response head. GH_OK; GH_AGAIN: not now (an interim answer still queued); GH_ERROR: does not fit.
     */
    int (*send_head)(proxy__session *s, const gh_h1_response *res, const gh_cfg_route *route);
    /* Response body bytes: how many it took (> 0), GH_AGAIN (full: it resumes the exchange later), GH_ERROR (gone). */
    ssize_t (*send_data)(proxy__session *s, const char *p, size_t n);
    /* The response body is complete (the end of a chunked or close-delimited one is framed): GH_OK or GH_AGAIN. */
    int (*end)(proxy__session *s);
    /* Writes what is queued: 1 progress, 0 none, GH_ERROR (gone). */
    int (*flush)(proxy__session *s);
    /* Bytes queued and not yet written (the exchange is done once the response is complete and this is 0). */
    size_t (*queued)(const proxy__session *s);
    /* A whole response of gatehouse's own (redirect, respond): GH_OK, or GH_ERROR when it does not fit. */
    int (*send_local)(proxy__session *s, proxy__local *l);
    /* A 100 Continue (RFC 9110 10.1.1) if the body has not started coming: 1 sent, 0 not needed. */
    int (*send_continue)(proxy__session *s);
    /* Up to cap request body bytes (decoded) into dst: n > 0; 0 none now (it resumes the exchange);
     * GH_ERROR the client is gone; -400 invalid framing. */
    ssize_t (*read_body)(proxy__session *s, char *dst, size_t cap);
    /* 1 once the whole request body has been read. */
    int (*body_done)(const proxy__session *s);
    /* Arms the session's timer for what the exchange waits on (body bytes or room to write) after
     * `progress`; returns 1 when the exchange waits for the client to take bytes. */
    int (*arm)(proxy__session *s, int progress, int want_body);
    /* The exchange ended well: free it, go on with the next request or close. */
    void (*done)(proxy__session *s);
    /* The exchange failed before any response byte: free it, answer `status` and close. */
    void (*fail)(proxy__session *s, int status);
    /* Free the exchange and cut the client at once (a response cannot be completed, or the client left). */
    void (*abort)(proxy__session *s);
    /* After an upstream event: run the session if its exchange ended (next request, close). */
    void (*dispatch)(proxy__session *s);
    /* Hands the client connection, registered and open, to a new owner (a tunnel after 101) with what was
     * read past the request (moved into *in) and what is queued for the client and not yet written, such as
     * the 101 head (into *out); the session then frees itself without closing it. GH_OK, or GH_ERROR when
     * this protocol cannot (an HTTP/2 stream). */
    int (*detach)(proxy__session *s, gh_conn *dst, gh_io_cb cb, gh_buf *in, gh_buf *out);
} proxy__session_ops;

/* What every session carries, embedded in its protocol's struct. */
struct proxy__session {
    const proxy__session_ops *ops;
    proxy__worker *w;
    proxy__gen *gen; /* the configuration generation it was accepted on, or switched to between requests */
    const proxy__listener *listener;
    proxy__exchange *ex;  /* the current exchange, owned */
    uint8_t tls;          /* the client came over TLS (X-Forwarded-Proto, redirects) */
    uint8_t peer_counted; /* counted for max_connections_per_ip (edge.c): released once, at close */
    /*
     * The client's address (what access rules match, net/cidr.h): the socket's
     * peer, or what a trusted sender's PROXY header said (client.c).
     */
    struct sockaddr_storage peer;
    char ip[46]; /* its text, for logs and X-Forwarded-For */
    /* The address the client connected to, as the PROXY header we send names it: from a received header
     * (local_known), else read from the socket when first needed. */
    struct sockaddr_storage local;
    uint8_t local_known;
    const gh_conn *conn; /* the client's transport: the TLS facts a PROXY v2 header carries (ALPN, SNI, version) */
    /* A pool with proxy_protocol: the idle connection kept for this client's next request (its header names
     * this client, so no other may use it). Owned; closed with the session (proxy__session_drop_own). */
    proxy__upstream *own;
    uint32_t stream; /* the HTTP/2 stream id (logs); 0: HTTP/1 */
};

enum proxy__client_state {
    CLIENT_PROXY, /* a trusted sender's PROXY protocol header is awaited (before TLS) */
    CLIENT_HANDSHAKE,
    CLIENT_IDLE,     /* keep-alive: waiting for the first byte of a request */
    CLIENT_HEAD,     /* reading a request head */
    CLIENT_EXCHANGE, /* an exchange is under way */
    CLIENT_CLOSING,  /* flushing a last response, then close_notify */
    CLIENT_LINGER,   /* write side shut: discarding input until EOF or a short timeout */
    CLIENT_H2,       /* an HTTP/2 connection: its streams are exchanges (h2_server.c, c->h2) */
};

/* An HTTP/1 client connection and its session (one exchange at a time, pipelined requests wait in `in`). */
struct proxy__client {
    gh_conn conn; /* first: the loop's events name it (TLS or plain) */
    proxy__session s;
    gh_timer timer;
    proxy__worker *w;
    proxy__client *prev, *next; /* worker's list, for drain */
    gh_buf in;                  /* decrypted bytes from the client */
    gh_buf out;                 /* bytes to encrypt and send */
    uint32_t head_scanned;      /* bytes of `in` already searched for the end of a head */
    uint32_t requests;
    uint8_t state;
    uint8_t close_after; /* close once the current response is sent */
    uint8_t line_ok;     /* the request line of the head being read was judged valid */
    uint8_t tls_held;    /* idle, its transport buffers kept through the keep-alive grace (client.c) */
    uint8_t mproto;      /* enum gh_m_proto it is counted under in the metrics (0: HTTP/1.1) */
    /* the HTTP/1 codec of the current exchange */
    uint8_t minor;        /* HTTP/1.<minor> of the request */
    uint8_t is_head;      /* a HEAD request: no body in the response */
    uint8_t chunk_out;    /* the response body is re-chunked for the client */
    uint8_t req_body;     /* enum gh_h1_body of the request */
    uint8_t req_done;     /* the whole request body was read */
    uint32_t req_decoded; /* CHUNKED: decoded body bytes at the front of `in` */
    uint64_t req_left;    /* LENGTH: body bytes still to read */
    gh_h1_chunked req_chunk;
    proxy__h2 *h2; /* CLIENT_H2: the HTTP/2 session, owned; in and out then carry its frames */
};

struct proxy__upstream {
    gh_conn conn; /* first: the loop's events name it */
    gh_timer timer;
    proxy__worker *w;
    proxy__exchange *ex;          /* NULL while idle in the pool */
    proxy__upstream *prev, *next; /* server's idle list */
    gh_buf in;                    /* response bytes from the server */
    proxy__pool *pool;
    proxy__session *owner; /* idle on this session (a PROXY header's client): not in the server's list */
    uint64_t addr_version; /* a name's address version when it connected: a new address is not reused */
    uint16_t server;
    uint8_t connected, reused;
    uint8_t eof;         /* its FIN was read: nothing more will come (never pooled) */
    uint64_t connect_us; /* when its connect() started (metrics: the connect histogram) */
};

enum proxy__res_state { RES_HEAD, RES_BODY, RES_DONE, RES_UPGRADE /* 101 sent: a tunnel once it is flushed */ };

struct proxy__exchange {
    proxy__session *s; /* the client side; owns the exchange */
    proxy__upstream *u;
    const gh_cfg_route *route;
    proxy__pool *pool;
    const char *server;      /* the last server tried ("host:port"), for logs */
    uint64_t tried;          /* servers already tried (bit per server) */
    uint64_t hash_key;       /* for `balance hash` */
    uint64_t max_body;       /* the route's limit on the request body */
    uint64_t req_total;      /* request body bytes read so far */
    uint64_t body_wait_ms;   /* time spent waiting for the client's body (body_min_rate) */
    uint64_t body_wait_from; /* loop time since when it is waited for; 0: not waiting */
    uint64_t start_ms;
    /* request: client -> upstream */
    gh_buf uout;      /* serialized head and body for the upstream */
    uint32_t usent;   /* bytes of uout written; a retry rewinds it */
    uint16_t pp_len;  /* the PROXY header at the front of uout (pool proxy_protocol), 0: none */
    uint8_t req_body; /* enum gh_h1_body: how the body goes upstream (as is, or re-chunked) */
    uint8_t req_done; /* the whole request is in uout */
    uint8_t idempotent, is_head, expect_continue;
    uint8_t head_sent; /* uout has been written at least once */
    uint8_t websocket; /* forwarded as a WebSocket upgrade: a 101 with Upgrade: websocket makes it a tunnel */
    uint8_t reached;   /* some server accepted a connection (502, not 503, if all fail) */
    uint8_t buffering; /* the body is read before a server is chosen (request_buffer) */
    /* response: upstream -> client */
    uint8_t res_state;
    uint8_t res_body; /* enum gh_h1_body of the upstream response */
    uint8_t upstream_reusable;
    uint8_t res_started; /* response bytes already went to the client */
    /* $upstream_response_time: ms after start_ms, plus 1, when the first server was asked and when its
     * response was complete; 0: not (yet). 32 bits in the struct's holes: the exchange stays 216 bytes. */
    uint32_t upstream_to;
    uint64_t res_left;
    uint32_t res_decoded; /* CHUNKED: decoded data bytes at the front of u->in */
    uint32_t retry_after; /* seconds, for a 429 of the rate limit */
    gh_h1_chunked res_chunk;
    int status;
    uint32_t upstream_from;
    uint64_t bytes_out;     /* body bytes sent to the client (access log) */
    proxy__access_rec *log; /* request line, referer and user agent, when logging (from a free list) */
    uint64_t upstream_us;   /* when it took its upstream connection (metrics: the response histogram) */
    struct proxy__fwd *fwd; /* a forward proxy's exchange: its destination, DNS and connects (forward.c) */
};

/* Why a tunnel ended (for the log). */
enum proxy__tunnel_reason { PROXY__TUNNEL_DONE = 1, PROXY__TUNNEL_ERROR, PROXY__TUNNEL_IDLE, PROXY__TUNNEL_SHUTDOWN };

/* One end of a tunnel: its connection and the bytes read from it, waiting to be written to the other end. */
typedef struct proxy__tunnel_side {
    gh_conn conn;   /* first member: an event's gh_io is the side */
    gh_buf buf;     /* held only while it has bytes (an idle tunnel holds no buffer) */
    uint64_t bytes; /* read from this end in all */
    uint8_t idx;    /* 0 or 1: finds the tunnel from the side */
    uint8_t eof;    /* this end's stream ended */
    uint8_t shut;   /* our write direction towards this end is shut: nothing more will come */
} proxy__tunnel_side;

/*
 * Two connections joined byte for byte (tunnel.c). Allocated by its owner,
 * who puts registered connections into side[0].conn and side[1].conn (events
 * to proxy__tunnel_on_event) before proxy__tunnel_start; the tunnel closes
 * both when it ends, then calls `end`, after which the owner frees it.
 */
struct proxy__tunnel {
    proxy__tunnel_side side[2]; /* [0] the client, [1] the server */
    gh_timer timer;             /* idle: no byte either way */
    gh_loop *loop;
    uint32_t idle_ms;
    uint8_t reason; /* enum proxy__tunnel_reason, once ended */
    void (*end)(proxy__tunnel *t);
    /* What the proxy keeps for an upgraded exchange (upgrade.c): */
    proxy__worker *w;
    proxy__gen *gen; /* a reference: a reload never cuts a tunnel */
    proxy__pool *pool;
    uint16_t server;            /* counted in flight for its server while the tunnel lasts (least_conn) */
    proxy__tunnel *prev, *next; /* worker's list, for the drain deadline */
    uint64_t start_ms;
    int status;                   /* 101 */
    proxy__access_rec *log;       /* the access log's request fields (from its free list); NULL when not logging */
    struct sockaddr_storage peer; /* the client's, and whether it counts for max_connections_per_ip */
    uint8_t peer_counted;
    char ip[46];
    /* A forward proxy's CONNECT (forward.c): who, where to, by which rule; for its log line and limits. */
    const char *fwd_user;               /* in the generation's config (t->gen holds it); NULL: none */
    int fwd_rule;                       /* 1 + the allowing rule's index; 0: not a forward tunnel */
    const gh_cfg_fwd_rule *fwd_rule_at; /* that rule (FILE:LINE for the access log) */
    char fwd_dst[64];                   /* the address connected to */
};

/* An address of a server given by name, as this worker last read it (owned by its pool: proxy__pool.named). */
typedef struct proxy__named {
    gh_addr cur;      /* len 0: none */
    uint64_t version; /* of the slot in the address region when cur was read */
    char label[128];  /* for logs: "app.internal:8080 (10.0.0.5)" */
} proxy__named;

/*
 * One address of a config server (a name has several: src/proxy/runtime.c):
 * its own health slot and balancer entry.
 */
typedef struct proxy__server {
    const gh_addr *addr;        /* this slot's address at the load; NULL: none (a slot the name did not fill) */
    struct proxy__named *named; /* given by name: the prober's latest address wins; NULL: a numeric server */
    const char *text;           /* "host:port" as configured */
    proxy__upstream *idle;      /* LIFO of idle keep-alive connections */
    uint32_t nidle;
    uint64_t down_until; /* ms: skipped after a failed connect until then */
} proxy__server;

/* A pool as one worker sees it: its servers' idle connections and the balancer's state. */
struct proxy__pool {
    proxy__worker *w;
    proxy__gen *gen;
    const gh_cfg_pool *cfg;
    proxy__server *servers;
    gh_lb_server *lb_servers; /* inflight kept up to date for least_conn and p2c */
    proxy__named *named;      /* one per server of servers[] given by name */
    gh_lb *lb;
    size_t nservers;
    const gh_health_ref *slots; /* per server: its health slot (the runtime's refs) */
    gh_health_passive passive;
    gh_addr *origins; /* the forward pool (proxy__fwd_pool): each server's address, set when a slot is taken */
};

/* What a listener's connections speak; chosen at accept (worker.c on_accept), in one switch. */
enum proxy__listener_mode {
    PROXY__MODE_HTTP,    /* HTTP/1.1 or HTTP/2 (over TLS or not): a client session, an exchange per request or stream */
    PROXY__MODE_STREAM,  /* TCP stream services (stream.c): TLS or not, then a tunnel to a pool's server */
    PROXY__MODE_FORWARD, /* HTTP/1.1 or HTTP/2 sessions; each exchange (stream) is a forward proxy's (forward.c) */
};

/* A stream service of the runtime (`stream NAME { }`): its TLS context and ALPN list. */
typedef struct proxy__svc {
    const gh_cfg_stream *cfg;
    gh_tls_ctx *tls;  /* terminates TLS with it; NULL: passthrough or plain TCP */
    gh_tls_alpn alpn; /* postgres: "postgresql" (PostgreSQL 17 direct TLS insists on it); raw: none */
    size_t pool;      /* index of its pool in a generation's pools */
    size_t index;     /* in gh_runtime.svcs */
} proxy__svc;

/* A listener of the runtime: its address, TLS context (NULL: plain HTTP), and router. */
struct proxy__listener {
    const gh_cfg_listener *cfg;
    const struct gh_runtime *rt;
    size_t index;
    gh_tls_ctx *tls;  /* default context; the SNI hook picks the site's */
    gh_tls_alpn alpn; /* the protocols offered in the TLS handshake, by preference */
    uint8_t mode;     /* enum proxy__listener_mode */
    uint8_t h1;       /* HTTP/1.1 is served (on TLS: also to clients without ALPN) */
    uint8_t h2;       /* HTTP/2 is offered (ALPN "h2"); on a plain listener, with prior knowledge */
    gh_router *router;
    /* PROXY__MODE_STREAM: its services, chosen by the ClientHello's SNI */
    const proxy__svc **svcs;
    size_t nsvcs;
    const proxy__svc *svc_default; /* the one without sni names; NULL: an unknown name is refused */
    uint8_t peek_hello;            /* the SNI decides (several services, or passthrough) */
    uint8_t pg;                    /* protocol postgres: the SSLRequest comes first */
    const gh_cfg_site *forward;    /* PROXY__MODE_FORWARD: the forward proxy site it serves alone */
};

/* Built by the master from a config (gh_runtime_new), inherited by the workers. */
struct gh_runtime {
    gh_config *cfg;
    gh_health_shm *health;     /* one slot per server of every pool, shared by all processes */
    gh_addr_shm *addrs;        /* where the prober publishes re-resolved server names */
    gh_rate_shm *rates;        /* rate_limit buckets, shared by all workers */
    gh_peer_shm *peers;        /* max_connections_per_ip counts, shared by all workers */
    struct proxy__name *names; /* servers given by name: re-resolved by the prober */
    size_t nnames;
    struct gh_resolver *resolver; /* the prober's (runtime.c resolve_names); NULL elsewhere */
    size_t resolving;             /* answers of the current tick still due */
    void (*resolved)(void *);     /* the tick's done() */
    void *resolved_arg;
    size_t *slot_base;   /* per pool: the slot of its first server */
    gh_health_ref *refs; /* per slot: the ref its server writes with (gh_runtime_claim_slots) */
    uint64_t *owners;    /* per slot: the identity of its server (pool and server text) */
    /* per slot: 1 when a reload found another address for the same name there (starts PENDING); NULL: none */
    unsigned char *readdressed;
    size_t nslots;
    gh_health_target *probes; /* the servers with active checks */
    size_t nprobes;
    gh_tls_ctx **site_tls; /* per site; NULL for a site without certificates */
    proxy__svc *svcs;      /* per stream service */
    size_t nsvcs;
    proxy__listener *listeners;
    size_t nlisteners;
};

/*
 * A configuration generation in a worker: the runtime and the worker's pools
 * for it. The worker holds a reference to the current one and every client
 * one to the generation it uses; a client moves to the current generation
 * between requests, so requests in flight finish on the config they started
 * with and the old generation is freed when its last client lets go.
 */
struct proxy__gen {
    proxy__worker *w;
    gh_runtime *rt;
    proxy__pool *pools; /* one per config pool, same order */
    size_t npools;
    proxy__access **access; /* per config log (gh_config.logs): its sink, owned by the worker; NULL: no log */
    struct proxy__log_prog **log_progs; /* per config format: its program (accesslog.c); NULL: no log */
    proxy__pool *fwd_pool; /* forward proxies' origins (absolute-form), made on first use; NULL: none yet */
    uint32_t refs;
};

/* A listening socket in a worker's loop. */
typedef struct proxy__acceptor {
    gh_io io;
    proxy__worker *w;
    const proxy__listener *listener;
} proxy__acceptor;

struct proxy__worker {
    proxy__gen *gen;          /* the current generation: new connections and requests use it */
    const gh_cfg_timeouts *t; /* the current generation's */
    gh_io ctl_io;             /* from the master: reload with these listening sockets */
    gh_loop *loop;
    int id;
    struct proxy__acceptor *acceptors; /* one per listener, in runtime order */
    size_t nacceptors;
    gh_io signal_io;
    int draining;
    gh_timer drain_timer;
    proxy__client *clients;
    uint32_t nclients;
    proxy__tunnel *tunnels; /* WebSockets after their 101, and streams: not waited for past the drain deadline */
    uint32_t ntunnels;
    struct proxy__svc_count *svc_counts; /* streams open per service name (max_connections), across reloads */
    size_t nsvc_counts;
    uint32_t handshaking; /* clients in CLIENT_HANDSHAKE */
    uint8_t heap_dirty;   /* handshakes finished since the heap was last trimmed */
    uint64_t next_trim;
    gh_timer trim_timer; /* due at next_trim while a trim waits for it (trim_heap) */
    uint8_t accept_paused;
    uint8_t limit_paused;         /* paused at max_connections: resumed as soon as a client leaves */
    uint8_t at_limit;             /* since "connection limit reached" was logged, until it clears */
    uint32_t max_clients;         /* this worker's share of max_connections (proxy/limit.h) */
    uint64_t limit_closed;        /* idle clients closed to make room, since the limit was reached */
    uint64_t limit_pauses;        /* accepts paused for want of an idle client to close, idem */
    uint64_t accept_error_logged; /* ms: last "accept ... Too many open files" line */
    uint64_t accept_errors;       /* since that line */
    uint64_t local_error_logged;  /* ms: last "local resource error" line (once a second at most) */
    uint64_t local_errors;        /* since that line */
    gh_h1_request req;            /* parse scratch: heads are turned into uout at once */
    proxy__h2 *h2_dirty;          /* HTTP/2 connections with frames to send: flushed once per loop iteration */
    gh_timer h2_kick;             /* due at once while HTTP/2 work is left: the loop must not sleep on it */
    gh_h1_response res;
    proxy__access *access;        /* NULL: no access log */
    gh_mslot *metrics;            /* this worker's block of the shared metrics region (metrics/metrics.h) */
    struct gh_resolver *resolver; /* the forward proxy's (forward.c), made on first use; NULL: none */
    struct proxy__fwd_auth *auth; /* the forward proxy's credential cache and failure counts (fwd_auth.c) */
    int64_t date_sec;
    char date[32]; /* "25/Nov/2026:13:47:19 +0000" */
};

/* A stream service's open streams in this worker, by the service's name (kept across generations). */
typedef struct proxy__svc_count {
    uint64_t key; /* gh_lb_hash of the name */
    uint32_t n;
} proxy__svc_count;

/* What the upstream request carries besides the client's head (headers.c). */
typedef struct proxy__forward {
    const char *client_ip;
    const char *fallback_host; /* Host for an HTTP/1.0 request without one */
    int tls;                   /* the client came over TLS: proto https */
    const char *path;          /* the request-target to send (rewritten by the route), NULL: as received */
    size_t path_len;
    const gh_cfg_route *route; /* header operations; NULL: none */
    int websocket;             /* a valid WebSocket upgrade (gh_ws_check_request): ask the server to switch */
    int anonymous;             /* a forward proxy's request: no X-Forwarded-For, X-Forwarded-* nor Forwarded */
    const char *extra;         /* whole header lines added (a parent proxy's Proxy-Authorization); NULL: none */
    size_t extra_len;
} proxy__forward;

/* A response of gatehouse's own (redirect, respond). */
struct proxy__local {
    int status;
    const char *location; /* NULL: none */
    size_t location_len;
    const char *body;
    size_t body_len;
    int head;                  /* a HEAD request: the same head, no body */
    int close;                 /* Connection: close */
    const gh_cfg_route *route; /* its response_header operations apply */
    const gh_cfg_site *site;   /* without a route: the site's security headers apply */
    int tls;                   /* HSTS only over TLS */
    uint32_t retry_after;      /* seconds (429); 0: no Retry-After */
    const char *extra;         /* whole header lines of gatehouse's own (Proxy-Authenticate); NULL: none */
    size_t extra_len;
};

/* For logs: "127.0.0.1:8081" as configured, or "app.internal:8080 (10.0.0.5)" for an address of a name. */
static inline const char *proxy__server_name(const proxy__server *s)
{
    return s->named != NULL ? s->named->label : s->text;
}

static inline const char *proxy__upstream_name(const proxy__upstream *u)
{
    return proxy__server_name(&u->pool->servers[u->server]);
}

#endif
