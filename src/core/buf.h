/*
 * buf: fixed-size byte buffers from a per-worker free list. A connection takes
 * a buffer only while it has bytes to hold and gives it back as soon as it is
 * empty, so an idle keep-alive connection holds none (memory per idle
 * connection is a headline figure of a proxy).
 */
#ifndef GH_CORE_BUF_H
#define GH_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

#define GH_BUF_SIZE (16 * 1024)

/*
 * A big block: taken only while bulk data flows (a response body streaming
 * from an upstream, a batch of TLS records waiting for one send) and given back
 * as soon as it drains, so that a large transfer costs a few system calls per
 * megabyte instead of one per 16 KiB, and an idle connection still holds none.
 */
#define GH_BUF_BIG_DATA (128 * 1024)                 /* what one read or one batch moves: eight 16 KiB TLS records */
#define GH_BUF_BIG_SIZE (GH_BUF_BIG_DATA + 4 * 1024) /* those records' headers and tags fit too */

/* Bytes live in data[start..end); embedded in its owner, which calls gh_buf_release. */
typedef struct gh_buf {
    char *data; /* NULL while no block is held */
    uint32_t start, end;
    uint32_t cap; /* GH_BUF_SIZE, GH_BUF_BIG_SIZE, or any size from gh_buf_reserve_large */
} gh_buf;

/* Makes sure b holds a block. Returns 0 or -1 when out of memory. */
int gh_buf_reserve(gh_buf *b);
/*
 * Makes sure b holds an empty block of at least size bytes, outside the pool
 * when larger than GH_BUF_SIZE (rare: an upstream request head that the
 * forwarding headers made larger than a block). Drops what b held.
 */
int gh_buf_reserve_large(gh_buf *b, size_t size);
/*
 * Makes sure b holds a big block (GH_BUF_BIG_SIZE) from the pool of big ones,
 * keeping its bytes (moved over from a smaller block). 0, or -1 when out of
 * memory (b is unchanged).
 */
int gh_buf_reserve_big(gh_buf *b);
/* Gives the block back (any bytes in it are dropped). */
void gh_buf_release(gh_buf *b);
/* Gives the block back if it holds no bytes. */
void gh_buf_trim(gh_buf *b);

static inline size_t gh_buf_len(const gh_buf *b)
{
    return b->end - b->start;
}
static inline char *gh_buf_head(const gh_buf *b)
{
    return b->data + b->start;
}
static inline char *gh_buf_tail(const gh_buf *b)
{
    return b->data + b->end;
}
static inline size_t gh_buf_room(const gh_buf *b)
{
    return b->data ? b->cap - b->end : 0;
}

/* Drops n bytes from the front; resets offsets when it empties. */
static inline void gh_buf_consume(gh_buf *b, size_t n)
{
    b->start += (uint32_t)n;
    if (b->start == b->end)
        b->start = b->end = 0;
}

/* Moves the bytes to the front so that gh_buf_room() is as large as it can be. */
void gh_buf_compact(gh_buf *b);

/* Appends n bytes if they fit (compacting if needed). Returns 0, or -1 if they do not fit. */
int gh_buf_append(gh_buf *b, const void *p, size_t n);

/* Frees the cached free blocks (at worker exit, for leak checkers). */
void gh_buf_pool_drain(void);

/*
 * Frees cached free blocks beyond `keep`: after a burst (a wave of handshakes
 * and upgrades) the cache would otherwise keep the burst's blocks for good,
 * which idle connections then seem to cost.
 */
void gh_buf_pool_trim(unsigned keep);

#endif
