/*
 * memconn: an in-memory gh_conn (conn.h) for unit tests and fuzzing. No socket (no_socket: the loop never
 * sees it; whoever drives it delivers its events by calling io.cb, as h2_server.c does for a stream). Its
 * reads take the bytes of a script, chunk by chunk as the driver adds them (one read never crosses a chunk,
 * so the driver decides where a peer's writes were cut); its writes go into a bounded sink. It reports
 * readiness, the end of the peer's stream, shutdown, idle and ALPN as a real transport does: a read of an
 * empty script is GH_AGAIN (can_read 0) until the driver ends it (then 0), a write into a full sink is a
 * short write or GH_AGAIN (can_write 0) until the driver takes bytes out, a write after shutdown is GH_ERROR.
 *
 * The state lives apart from the gh_conn (impl), so the conn may be copied by gh_conn_move; `moved` keeps
 * gh_memconn_of pointing at the current copy, and dispose (gh_conn_close) detaches it: the driver keeps the
 * state, and frees it with gh_memconn_free, after the conn was closed or never was.
 */
#ifndef GH_NET_MEMCONN_H
#define GH_NET_MEMCONN_H

#include <stddef.h>
#include <stdint.h>

#include "net/conn.h"

typedef struct gh_memconn gh_memconn;

/*
 * A new state and c made a memory conn on it, events to cb. alpn: what the "handshake" agreed on (e.g. "h2"),
 * NULL for none. sink_cap bounds what the peer side holds unread. NULL when out of memory.
 */
gh_memconn *gh_memconn_new(gh_conn *c, gh_io_cb cb, const char *alpn, size_t sink_cap);
/* Frees the state (the conn must be closed already, or never used: then it is detached first). */
void gh_memconn_free(gh_memconn *m);

/* Appends a chunk of what the peer sends; 0, or -1 out of memory or after gh_memconn_end. */
int gh_memconn_feed(gh_memconn *m, const void *p, size_t len);
/* The peer ends its stream (FIN): once the script is read, reads return 0. */
void gh_memconn_end(gh_memconn *m);
/* The peer resets: every later read and write is GH_ERROR. */
void gh_memconn_reset(gh_memconn *m);

/* What was written and not taken yet, and its length; take removes n bytes from its front. */
const uint8_t *gh_memconn_sink(const gh_memconn *m, size_t *len);
void gh_memconn_take(gh_memconn *m, size_t n);
/* Every byte ever written (taken or not). */
uint64_t gh_memconn_written(const gh_memconn *m);

/* The conn now (it follows gh_conn_move), NULL once closed. */
gh_conn *gh_memconn_of(const gh_memconn *m);
/* Script bytes not read yet. */
size_t gh_memconn_unread(const gh_memconn *m);
/* 1 once our side shut down (gh_conn_shutdown), closed (gh_conn_close); how many times it went idle. */
int gh_memconn_shut(const gh_memconn *m);
int gh_memconn_closed(const gh_memconn *m);
unsigned gh_memconn_idles(const gh_memconn *m);

/*
 * Delivers what the conn is ready for to its owner, as the loop would after the driver fed, ended or drained
 * it: io.cb with READ (and HUP after gh_memconn_end), WRITE when the sink has room. A closed conn: nothing.
 */
void gh_memconn_kick(gh_memconn *m);

/* The io.fd a memory conn carries: >= 0 while open (conn.h's rule), never a descriptor of this process. */
#define GH_MEMCONN_FD 0x3fffffff

#endif
