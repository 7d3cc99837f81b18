/*
 * proxy: the structures shared by the files of src/proxy (private to this folder).
 *
 *   client    a TLS connection from a client: handshake, request heads, keep-alive
 *   exchange  one request and its response, streamed between a client and an upstream
 *   upstream  a plain connection to a server; pooled (keep-alive) between exchanges
 *   worker    the loop, the listener, the servers and their idle pools
 *
 * Ownership: the worker owns clients (a list) and idle upstreams (per server);
 * a client owns its current exchange; an exchange borrows one upstream at a time.
 * Everything here is per worker: no locks.
 */
#ifndef GH_PROXY_PROXY_H
#define GH_PROXY_PROXY_H

#include <stdint.h>
#include <sys/socket.h>

#include "core/buf.h"
#include "core/conf.h"
#include "core/loop.h"
#include "http/h1.h"
#include "proxy/balance.h"
#include "tls/tls.h"

typedef struct proxy__worker proxy__worker;
typedef struct proxy__client proxy__client;
typedef struct proxy__exchange proxy__exchange;
typedef struct proxy__upstream proxy__upstream;

enum proxy__client_state {
    CLIENT_HANDSHAKE,
    CLIENT_IDLE,     /* keep-alive: waiting for the first byte of a request */
    CLIENT_HEAD,     /* reading a request head */
    CLIENT_EXCHANGE, /* an exchange is under way */
    CLIENT_CLOSING,  /* flushing a last response, then close_notify */
    CLIENT_LINGER,   /* write side shut: discarding input until EOF or a short timeout */
};

struct proxy__client {
    gh_io io;
    gh_timer timer;
    proxy__worker *w;
    gh_tls *tls;
    proxy__client *prev, *next; /* worker's list, for drain */
    gh_buf in;                  /* decrypted bytes from the client */
    gh_buf out;                 /* bytes to encrypt and send */
    proxy__exchange *ex;
    uint32_t head_scanned; /* bytes of `in` already searched for the end of a head */
    uint32_t requests;
    uint8_t state;
    uint8_t can_read, can_write;
    uint8_t hup;         /* the client closed its side (EPOLLRDHUP) */
    uint8_t close_after; /* close once the current response is sent */
    uint8_t line_ok;     /* the request line of the head being read was judged valid */
    char ip[46];
};

struct proxy__upstream {
    gh_io io;
    gh_timer timer;
    proxy__worker *w;
    proxy__exchange *ex;          /* NULL while idle in the pool */
    proxy__upstream *prev, *next; /* server's idle list */
    gh_buf in;                    /* response bytes from the server */
    uint16_t server;
    uint8_t connected, reused, can_read, can_write;
    uint8_t hup; /* the server closed its side: read until EOF */
};

enum proxy__res_state { RES_HEAD, RES_BODY, RES_DONE };

struct proxy__exchange {
    proxy__client *c;
    proxy__upstream *u;
    uint64_t tried; /* servers already tried (bit per server) */
    uint64_t start_ms;
    /* request: client -> upstream */
    gh_buf uout;            /* serialized head and body for the upstream */
    uint32_t usent;         /* bytes of uout written; a retry rewinds it */
    uint64_t req_left;      /* LENGTH: body bytes still to read from the client */
    uint64_t req_body_sent; /* body bytes handed to the upstream connection */
    uint32_t req_decoded;   /* CHUNKED: decoded data bytes at the front of c->in */
    gh_h1_chunked req_chunk;
    uint8_t req_body; /* enum gh_h1_body */
    uint8_t req_done; /* the whole request is in uout */
    uint8_t idempotent, is_head, expect_continue, client_minor;
    uint8_t head_sent; /* uout has been written at least once */
    uint8_t reached;   /* some server accepted a connection (502, not 503, if all fail) */
    /* response: upstream -> client */
    uint8_t res_state;
    uint8_t res_body;  /* enum gh_h1_body of the upstream response */
    uint8_t chunk_out; /* re-encode the body as chunked for the client */
    uint8_t upstream_reusable;
    uint8_t res_started; /* response bytes already went to the client */
    uint64_t res_left;
    uint32_t res_decoded; /* CHUNKED: decoded data bytes at the front of u->in */
    gh_h1_chunked res_chunk;
    int status;
    uint64_t bytes_out; /* body bytes sent to the client (access log) */
    char *log;          /* request line, referer and user agent, when logging */
};

typedef struct proxy__server {
    const gh_addr *addr;
    proxy__upstream *idle; /* LIFO of idle keep-alive connections */
    uint32_t nidle;
    uint64_t down_until; /* ms: skipped after a failed connect until then */
} proxy__server;

struct proxy__worker {
    const gh_conf *conf;
    gh_loop *loop;
    gh_tls_ctx *tls;
    int id;
    gh_io listen_io;
    gh_io signal_io;
    int draining;
    gh_timer drain_timer;
    proxy__client *clients;
    uint32_t nclients;
    uint32_t handshaking; /* clients in CLIENT_HANDSHAKE */
    uint8_t heap_dirty;   /* handshakes finished since the heap was last trimmed */
    uint64_t next_trim;
    proxy__server servers[GH_MAX_SERVERS];
    gh_rr_server rr[GH_MAX_SERVERS];
    size_t nservers;
    gh_h1_request req; /* parse scratch: heads are turned into uout at once */
    gh_h1_response res;
    int access_fd;
    gh_buf access_buf;
    int64_t date_sec;
    char date[32]; /* "25/Nov/2026:13:47:19 +0000" */
};

/* client.c */
/* A new client connection: TLS with `tls`, plain HTTP when it is NULL. */
void proxy__client_accept(proxy__worker *w, int fd, const struct sockaddr_storage *peer, gh_tls_ctx *tls);
void proxy__client_exchange_done(proxy__client *c);
/* Answers with a short error page and closes (status 400, 502...). */
void proxy__client_fail(proxy__client *c, int status);
void proxy__client_close(proxy__client *c);
/* Runs the client's state machine after something changed (an upstream event). */
void proxy__client_dispatch(proxy__client *c);
void proxy__client_drain(proxy__worker *w);
ssize_t proxy__client_write(proxy__client *c, const char *p, size_t n);
/* Reads what the client sent into c->in: 1 got bytes, 0 would block or no room, -1 closed or failed. */
int proxy__client_read(proxy__client *c);

/* exchange.c */
void proxy__exchange_start(proxy__client *c, const gh_h1_request *r, size_t head_len);
void proxy__exchange_run(proxy__exchange *ex);
void proxy__exchange_free(proxy__exchange *ex);
void proxy__exchange_upstream_event(proxy__exchange *ex, unsigned events);
void proxy__exchange_upstream_timeout(proxy__exchange *ex);

/* upstream.c */
void proxy__servers_init(proxy__worker *w);
/* Gets a pooled or new connection to a server not yet tried; NULL when none is left. */
proxy__upstream *proxy__upstream_get(proxy__worker *w, uint64_t *tried);
void proxy__upstream_release(proxy__upstream *u, int reusable);
void proxy__upstream_mark_failed(proxy__upstream *u);
void proxy__servers_close_idle(proxy__worker *w);

/* headers.c: serialize heads; return the length written, or -1 if it does not fit in cap. */
int proxy__request_head(char *dst, size_t cap, const gh_h1_request *r, const char *client_ip, const char *fallback_host,
                        int tls);
int proxy__response_head(char *dst, size_t cap, const gh_h1_response *r, int chunk_out, int close);
int proxy__error_response(char *dst, size_t cap, int status);
const char *proxy__status_text(int status);

/* accesslog.c */
int proxy__access_open(proxy__worker *w);
void proxy__access_begin(proxy__exchange *ex, const gh_h1_request *r);
void proxy__access_end(proxy__exchange *ex);
void proxy__access_flush(proxy__worker *w);

#endif
