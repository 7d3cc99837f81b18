/*
 * h2_mem: libnghttp2's memory for one connection, with the pages of its
 * session-long blocks given back while the connection idles (see h2_mem.h).
 */
#include "proxy/h2_mem.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef GH_H2_MEMSTAT
#include <malloc.h>
#include <stdio.h>
#endif

/* nghttp2 1.52's frame buffer: NGHTTP2_FRAMEBUF_CHUNKLEN, 16 KiB of payload and its frame header; the
 * stream map's table is 4 KiB, below this. */
#define FRAME_MIN 8192
/* The HPACK tables' entry rings: 128 pointers each (hd_ringbuf_init, for the default 4 KiB table). */
#define RING_SIZE 1024

static size_t page_size(void)
{
    static size_t page;
    if (page == 0) {
        long ps = sysconf(_SC_PAGESIZE);
        page = ps > 0 ? (size_t)ps : 4096;
    }
    return page;
}

#ifdef GH_H2_MEMSTAT
static void stat_add(proxy__h2_mem *m, void *p, int sign)
{
    if (p == NULL)
        return;
    size_t n = malloc_usable_size(p);
    int k = 0;
    while (k < PROXY__H2_MEM_CLASSES - 1 && ((size_t)16 << k) < n)
        k++;
    m->heap[k] += sign > 0 ? n : -n;
    m->nheap[k] += sign > 0 ? 1u : -1u;
}
#else
#define stat_add(m, p, sign) ((void)0)
#endif

/* The slot of block p; p NULL: a free slot. */
static proxy__h2_block *find(proxy__h2_mem *m, const void *p)
{
    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++)
        if (m->big[i].p == p)
            return &m->big[i];
    return NULL;
}

/* A block of whole pages while the session is created (zero-filled), else NULL: take it from the heap. */
static void *map_block(proxy__h2_mem *m, size_t size, int *failed)
{
    size_t page = page_size();
    proxy__h2_block *b;

    *failed = 0;
    /*
     * The first ring is the encoder's (nghttp2_session_new sets up the deflater before the inflater).
     * We never index a response field (max_deflate_dynamic_table_size 0, h2_server.c): nothing is ever
     * written to it, and as pages of its own it is never resident. The decoder's ring holds the
     * client's entries: it stays on the heap, where it costs 1 KiB, not a page. (Were the order ever
     * the other way, the decoder's ring would cost a page: t_h2's idle memory bound would say so.)
     */
    int ring = m->creating && size == RING_SIZE && !m->ring_seen;
    if (size == RING_SIZE && m->creating)
        m->ring_seen = 1;
    if (!m->creating || (size < page && !ring) || size > SIZE_MAX - page || (b = find(m, NULL)) == NULL)
        return NULL;
    size_t len = (size + page - 1) / page * page;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        *failed = 1;
        return NULL;
    }
    *b = (proxy__h2_block){p, len, ring ? PROXY__H2_BLOCK_UNTOUCHED : size >= FRAME_MIN ? PROXY__H2_BLOCK_FRAME : 0};
    return p;
}

static void *mem_malloc(size_t size, void *ud)
{
    proxy__h2_mem *m = ud;
    int failed;
    void *p = m->creating ? map_block(m, size, &failed) : NULL; /* per request: one test, then malloc's */
    if (p != NULL || (m->creating && failed))
        return p;
    p = malloc(size);
    stat_add(m, p, 1);
    return p;
}

static void mem_free(void *p, void *ud)
{
    proxy__h2_mem *m = ud;
    proxy__h2_block *b = p != NULL ? find(m, p) : NULL;
    if (b == NULL) {
        stat_add(m, p, -1);
        free(p);
        return;
    }
    munmap(b->p, b->len);
    *b = (proxy__h2_block){NULL, 0, 0};
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    proxy__h2_mem *m = ud;
    int failed;
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    void *p = m->creating ? map_block(m, n * size, &failed) : NULL; /* fresh mapped pages are zero */
    if (p != NULL || (m->creating && failed))
        return p;
    p = calloc(n, size);
    stat_add(m, p, 1);
    return p;
}

static void *mem_realloc(void *p, size_t size, void *ud)
{
    proxy__h2_mem *m = ud;
    if (p == NULL)
        return mem_malloc(size, m); /* how nghttp2_buf_reserve allocates the frame buffer */
    proxy__h2_block *b = find(m, p);
    if (b == NULL) {
        stat_add(m, p, -1);
        void *q = realloc(p, size); /* heap blocks stay on the heap */
        stat_add(m, q != NULL ? q : p, 1);
        return q;
    }
    if (size <= b->len)
        return p;
    void *q = mem_malloc(size, m);
    if (q == NULL)
        return NULL;
    memcpy(q, p, b->len);
    mem_free(p, m);
    return q;
}

void proxy__h2_mem_init(proxy__h2_mem *m)
{
    memset(m, 0, sizeof(*m));
    m->ops = (nghttp2_mem){m, mem_malloc, mem_free, mem_calloc, mem_realloc};
    m->creating = 1;
}

static int all_zero(const unsigned char *p, size_t n)
{
    return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

size_t proxy__h2_mem_idle(proxy__h2_mem *m, int frame_dead)
{
    size_t page = page_size(), freed = 0;

    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++) {
        proxy__h2_block *b = &m->big[i];
        if (b->p == NULL)
            continue;
        if (b->kind == PROXY__H2_BLOCK_UNTOUCHED)
            continue; /* never resident: reading it to check would cost a fault and a call */
        if (b->kind == PROXY__H2_BLOCK_FRAME) {
            /* nghttp2 builds every frame from the start of its buffer: between frames it holds nothing */
            if (frame_dead && madvise(b->p, b->len, MADV_DONTNEED) == 0)
                freed += b->len;
            continue;
        }
        /* A page of zeros reads the same once dropped. Reading a page already dropped maps the shared
         * zero page, which is not resident memory of ours. */
        for (size_t off = 0; off < b->len; off += page) {
            unsigned char *p = (unsigned char *)b->p + off;
            if (all_zero(p, page) && madvise(p, page, MADV_DONTNEED) == 0)
                freed += page;
        }
    }
    return freed;
}

size_t proxy__h2_mem_resident(const proxy__h2_mem *m)
{
    size_t page = page_size(), n = 0;
    unsigned char v[64];

    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++) {
        const proxy__h2_block *b = &m->big[i];
        for (size_t off = 0; b->p != NULL && off < b->len; off += sizeof(v) * page) {
            size_t len = b->len - off < sizeof(v) * page ? b->len - off : sizeof(v) * page;
            if (mincore((char *)b->p + off, len, v) != 0)
                continue;
            for (size_t k = 0; k < len / page; k++)
                n += (v[k] & 1) ? page : 0;
        }
    }
    return n;
}

int proxy__h2_mem_dispose(proxy__h2_mem *m)
{
    int leaked = 0;
    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++)
        if (m->big[i].p != NULL) {
            munmap(m->big[i].p, m->big[i].len);
            m->big[i] = (proxy__h2_block){NULL, 0, 0};
            leaked++;
        }
    return leaked;
}

#ifdef GH_H2_MEMSTAT
void proxy__h2_mem_report(const proxy__h2_mem *m, char *out, size_t cap)
{
    size_t used = 0, total = 0, mapped = 0;

    out[0] = '\0';
    for (int k = 0; k < PROXY__H2_MEM_CLASSES && used < cap; k++) {
        total += m->heap[k];
        if (m->nheap[k] == 0)
            continue;
        int r = snprintf(out + used, cap - used, "%s<=%zu:%ux=%zu", used ? " " : "heap ", (size_t)16 << k, m->nheap[k],
                         m->heap[k]);
        used += r > 0 ? (size_t)r : 0;
    }
    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++)
        mapped += m->big[i].len;
    if (used < cap)
        snprintf(out + used, cap - used, " heap-total=%zu mapped=%zu resident=%zu", total, mapped,
                 proxy__h2_mem_resident(m));
}
#endif
