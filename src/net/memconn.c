/* memconn: the in-memory transport of tests and fuzzing (memconn.h). */
#include "net/memconn.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"

struct gh_memconn {
    gh_conn *conn; /* the current copy of the conn; NULL once disposed */
    char alpn[32];
    size_t alpn_len;
    uint8_t *in; /* the script: what the peer sent, all chunks end to end */
    size_t in_len, in_cap, in_pos;
    size_t *ends; /* end offset of each chunk: one read stops at the end of its chunk */
    size_t nends, capends, chunk;
    uint8_t *out; /* the sink, bounded by out_cap */
    size_t out_len, out_cap;
    uint64_t written;
    uint8_t ended, reset, shut, closed;
    unsigned idles;
};

static ssize_t mem_read(gh_conn *c, void *buf, size_t len)
{
    gh_memconn *m = c->impl;
    size_t n;

    if (m->reset)
        return GH_ERROR;
    while (m->chunk < m->nends && m->ends[m->chunk] <= m->in_pos)
        m->chunk++;
    if (m->in_pos == m->in_len) {
        if (m->ended)
            return 0;
        c->can_read = 0;
        return GH_AGAIN;
    }
    n = GH_MIN(len, m->ends[m->chunk] - m->in_pos);
    memcpy(buf, m->in + m->in_pos, n);
    m->in_pos += n;
    /* a read that drained the script tells, as a short read from a socket would, that nothing more is there */
    if (m->in_pos == m->in_len && !m->ended)
        c->can_read = 0;
    return (ssize_t)n;
}

static ssize_t mem_writev(gh_conn *c, const struct iovec *iov, int iovcnt)
{
    gh_memconn *m = c->impl;
    size_t took = 0;

    if (m->reset || m->shut)
        return GH_ERROR; /* EPIPE: our side was shut */
    for (int i = 0; i < iovcnt; i++) {
        size_t n = GH_MIN(iov[i].iov_len, m->out_cap - m->out_len);
        memcpy(m->out + m->out_len, iov[i].iov_base, n);
        m->out_len += n;
        took += n;
        if (n < iov[i].iov_len)
            break;
    }
    m->written += took;
    if (m->out_len == m->out_cap)
        c->can_write = 0; /* full: a write event comes once the driver takes bytes out */
    if (took == 0)
        return GH_AGAIN;
    return (ssize_t)took;
}

static int mem_handshake(gh_conn *c)
{
    (void)c;
    return GH_OK;
}

static int mem_pending(const gh_conn *c)
{
    (void)c;
    return 0; /* nothing is held inside: what is unread is the peer's, reported by can_read */
}

static void mem_shutdown(gh_conn *c)
{
    gh_memconn *m = c->impl;
    m->shut = 1;
}

static void mem_idle(gh_conn *c)
{
    gh_memconn *m = c->impl;
    m->idles++;
}

static const char *mem_alpn(const gh_conn *c, size_t *len)
{
    gh_memconn *m = c->impl;
    *len = m->alpn_len;
    return m->alpn_len > 0 ? m->alpn : NULL;
}

static void mem_dispose(gh_conn *c)
{
    gh_memconn *m = c->impl;
    if (m == NULL)
        return;
    m->conn = NULL;
    m->closed = 1;
    c->impl = NULL;
}

static void mem_moved(gh_conn *c)
{
    gh_memconn *m = c->impl;
    if (m != NULL)
        m->conn = c;
}

static const gh_conn_ops mem_ops = {
    .name = "mem",
    .read = mem_read,
    .writev = mem_writev,
    .handshake = mem_handshake,
    .pending = mem_pending,
    .shutdown = mem_shutdown,
    .idle = mem_idle,
    .alpn = mem_alpn,
    .dispose = mem_dispose,
    .moved = mem_moved,
    .no_socket = 1,
};

gh_memconn *gh_memconn_new(gh_conn *c, gh_io_cb cb, const char *alpn, size_t sink_cap)
{
    gh_memconn *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->out = malloc(sink_cap > 0 ? sink_cap : 1)) == NULL) {
        free(m);
        return NULL;
    }
    m->out_cap = sink_cap;
    if (alpn != NULL) {
        m->alpn_len = GH_MIN(strlen(alpn), sizeof(m->alpn) - 1);
        memcpy(m->alpn, alpn, m->alpn_len);
    }
    *c = (gh_conn){.io = {GH_MEMCONN_FD, cb}, .ops = &mem_ops, .impl = m, .can_write = 1};
    m->conn = c;
    return m;
}

void gh_memconn_free(gh_memconn *m)
{
    if (m == NULL)
        return;
    if (m->conn != NULL) { /* never closed: detach, so that the conn cannot reach freed state */
        m->conn->impl = NULL;
        m->conn->io.fd = -1;
    }
    free(m->in);
    free(m->ends);
    free(m->out);
    free(m);
}

int gh_memconn_feed(gh_memconn *m, const void *p, size_t len)
{
    if (m->ended)
        return -1;
    if (len == 0)
        return 0;
    if (m->in_len + len > m->in_cap) {
        size_t cap = m->in_cap * 2 > m->in_len + len ? m->in_cap * 2 : m->in_len + len;
        uint8_t *in = realloc(m->in, cap);
        if (in == NULL)
            return -1;
        m->in = in;
        m->in_cap = cap;
    }
    if (m->nends == m->capends) {
        size_t cap = m->capends ? m->capends * 2 : 16;
        size_t *ends = realloc(m->ends, cap * sizeof(*ends));
        if (ends == NULL)
            return -1;
        m->ends = ends;
        m->capends = cap;
    }
    memcpy(m->in + m->in_len, p, len);
    m->in_len += len;
    m->ends[m->nends++] = m->in_len;
    if (m->conn != NULL)
        m->conn->can_read = 1;
    return 0;
}

void gh_memconn_end(gh_memconn *m)
{
    m->ended = 1;
    if (m->conn != NULL) {
        m->conn->can_read = 1;
        m->conn->hup = 1;
    }
}

void gh_memconn_reset(gh_memconn *m)
{
    m->reset = 1;
    if (m->conn != NULL)
        m->conn->can_read = m->conn->can_write = 1; /* the next call reports the error */
}

const uint8_t *gh_memconn_sink(const gh_memconn *m, size_t *len)
{
    *len = m->out_len;
    return m->out;
}

void gh_memconn_take(gh_memconn *m, size_t n)
{
    n = GH_MIN(n, m->out_len);
    memmove(m->out, m->out + n, m->out_len - n);
    m->out_len -= n;
}

uint64_t gh_memconn_written(const gh_memconn *m)
{
    return m->written;
}

gh_conn *gh_memconn_of(const gh_memconn *m)
{
    return m->conn;
}

size_t gh_memconn_unread(const gh_memconn *m)
{
    return m->in_len - m->in_pos;
}

int gh_memconn_shut(const gh_memconn *m)
{
    return m->shut;
}

int gh_memconn_closed(const gh_memconn *m)
{
    return m->closed;
}

unsigned gh_memconn_idles(const gh_memconn *m)
{
    return m->idles;
}

void gh_memconn_kick(gh_memconn *m)
{
    gh_conn *c = m->conn;
    unsigned ev = 0;

    if (c == NULL || c->io.fd < 0)
        return;
    if (m->reset)
        ev = GH_EV_ERROR | GH_EV_READ | GH_EV_WRITE | GH_EV_HUP;
    if (m->in_pos < m->in_len || m->ended)
        ev |= GH_EV_READ;
    if (m->ended)
        ev |= GH_EV_HUP;
    if (m->out_len < m->out_cap)
        ev |= GH_EV_WRITE;
    if (ev != 0)
        c->io.cb(&c->io, ev);
}
