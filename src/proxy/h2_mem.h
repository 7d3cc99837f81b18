/*
 * h2_mem: the allocator libnghttp2 gets for one HTTP/2 connection (nghttp2_mem),
 * so that an idle connection keeps resident only the state it needs.
 *
 * nghttp2 1.52 allocates, when a server session is created, a few blocks that
 * it keeps for the session's life: the 16 KiB outbound frame buffer (its
 * content is dead between two frames), the 4 KiB table of the stream map (all
 * zero while no stream is open) and the HPACK encoder's 1 KiB entry ring (never
 * written: we index no response field). From malloc's heap their pages stay
 * resident whatever they hold. These are mapped pages of their own instead, and
 * proxy__h2_mem_idle gives back the frame buffer's pages and every page of the
 * map that holds only zeros (MADV_DONTNEED: the kernel maps a zero page again
 * when it is touched, so nothing nghttp2 could read changes). Every other block
 * is malloc's: a block allocated later (a grown map, a large header) holds
 * state and would cost a system call per request.
 *
 * System calls: one mmap and one munmap per mapped block per connection (three
 * blocks), and at most one madvise per page of the frame buffer and the map each
 * time the connection goes idle (see go_idle in h2_server.c); none per request.
 *
 * A debug build (-DGH_H2_MEMSTAT) also counts the heap bytes nghttp2 holds by
 * size class, for proxy__h2_mem_report, which h2_server.c logs (info) at each
 * idle: make BUILD=/tmp/gh-memstat OPT="-O2 -g -DGH_H2_MEMSTAT", with
 * `seccomp off` in the config (the report's mincore is not on the allow-list).
 *
 * Ownership: embedded in the connection's proxy__h2 (h2_server.c), which
 * calls proxy__h2_mem_dispose after nghttp2_session_del.
 */
#ifndef GH_PROXY_H2_MEM_H
#define GH_PROXY_H2_MEM_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

#define PROXY__H2_MEM_SLOTS 4 /* mapped blocks per session: nghttp2 1.52 makes three */

enum {
    PROXY__H2_BLOCK_ZEROS,     /* its pages that hold only zeros go while idle (the stream map's table) */
    PROXY__H2_BLOCK_FRAME,     /* the frame buffer: its pages go while idle whatever they hold */
    PROXY__H2_BLOCK_UNTOUCHED, /* never written (the HPACK encoder's ring): never resident */
};

typedef struct proxy__h2_block {
    void *p;
    size_t len;   /* mapped length, whole pages */
    uint8_t kind; /* PROXY__H2_BLOCK_... */
} proxy__h2_block;

#ifdef GH_H2_MEMSTAT
#define PROXY__H2_MEM_CLASSES 12 /* heap blocks up to 16, 32, ... 16 KiB usable bytes, and larger */
#endif

typedef struct proxy__h2_mem {
    nghttp2_mem ops;   /* what nghttp2_session_server_new3 takes; its user data is this struct */
    uint8_t creating;  /* in nghttp2_session_server_new3: the blocks allocated now live as long as the session */
    uint8_t ring_seen; /* the first HPACK ring was allocated (see map_block) */
    proxy__h2_block big[PROXY__H2_MEM_SLOTS];
#ifdef GH_H2_MEMSTAT
    size_t heap[PROXY__H2_MEM_CLASSES]; /* live heap bytes (malloc_usable_size) by size class */
    uint32_t nheap[PROXY__H2_MEM_CLASSES];
#endif
} proxy__h2_mem;

/* Readies m (ops pointing at m) with creating set: call proxy__h2_mem_created once the session exists. */
void proxy__h2_mem_init(proxy__h2_mem *m);

static inline void proxy__h2_mem_created(proxy__h2_mem *m)
{
    m->creating = 0;
}

/*
 * The connection is idle: no stream, and no frame half built (nghttp2_session_want_write is 0, which
 * the caller checks: frame_dead 1). The frame buffer's pages go back when frame_dead, and the pages of
 * the other mapped blocks that hold only zeros. Returns the bytes given back.
 */
size_t proxy__h2_mem_idle(proxy__h2_mem *m, int frame_dead);

/* Pages of the mapped blocks resident now (mincore), in bytes; for tests and reports. */
size_t proxy__h2_mem_resident(const proxy__h2_mem *m);

/* After nghttp2_session_del: unmaps what nghttp2 did not free (a leak: counted, returned) . */
int proxy__h2_mem_dispose(proxy__h2_mem *m);

#ifdef GH_H2_MEMSTAT
/* One line: the heap bytes by size class, the mapped and resident bytes. */
void proxy__h2_mem_report(const proxy__h2_mem *m, char *out, size_t cap);
#endif

#endif
