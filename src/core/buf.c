#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

/* Free blocks are kept in a singly linked list threaded through the blocks themselves. */
#define POOL_MAX_FREE 1024
/* Big blocks are few at a time (one per bulk transfer in flight): keep a handful, free the rest. */
#define POOL_MAX_FREE_BIG 8

static void *free_list;
static unsigned free_count;
static void *free_big;
static unsigned free_big_count;

int gh_buf_reserve(gh_buf *b)
{
    if (b->data != NULL)
        return 0;
    if (free_list != NULL) {
        b->data = free_list;
        free_list = *(void **)free_list;
        free_count--;
    } else if ((b->data = malloc(GH_BUF_SIZE)) == NULL) {
        return -1;
    }
    b->start = b->end = 0;
    b->cap = GH_BUF_SIZE;
    return 0;
}

int gh_buf_reserve_large(gh_buf *b, size_t size)
{
    gh_buf_release(b);
    if (size <= GH_BUF_SIZE)
        return gh_buf_reserve(b);
    if (size > UINT32_MAX || (b->data = malloc(size)) == NULL)
        return -1;
    b->start = b->end = 0;
    b->cap = (uint32_t)size;
    return 0;
}

int gh_buf_reserve_big(gh_buf *b)
{
    char *p;
    size_t n = gh_buf_len(b);

    if (b->data != NULL && b->cap >= GH_BUF_BIG_SIZE)
        return 0;
    if (free_big != NULL) {
        p = free_big;
        free_big = *(void **)free_big;
        free_big_count--;
    } else if ((p = malloc(GH_BUF_BIG_SIZE)) == NULL) {
        return -1;
    }
    if (n > 0)
        memcpy(p, gh_buf_head(b), n);
    gh_buf_release(b);
    b->data = p;
    b->start = 0;
    b->end = (uint32_t)n;
    b->cap = GH_BUF_BIG_SIZE;
    return 0;
}

void gh_buf_release(gh_buf *b)
{
    if (b->data == NULL)
        return;
    if (b->cap == GH_BUF_SIZE && free_count < POOL_MAX_FREE) {
        *(void **)b->data = free_list;
        free_list = b->data;
        free_count++;
    } else if (b->cap == GH_BUF_BIG_SIZE && free_big_count < POOL_MAX_FREE_BIG) {
        *(void **)b->data = free_big;
        free_big = b->data;
        free_big_count++;
    } else {
        free(b->data);
    }
    b->data = NULL;
    b->start = b->end = 0;
}

void gh_buf_trim(gh_buf *b)
{
    if (b->data != NULL && b->start == b->end)
        gh_buf_release(b);
}

void gh_buf_compact(gh_buf *b)
{
    if (b->start == 0)
        return;
    memmove(b->data, b->data + b->start, b->end - b->start);
    b->end -= b->start;
    b->start = 0;
}

int gh_buf_append(gh_buf *b, const void *p, size_t n)
{
    if (gh_buf_reserve(b) < 0)
        return -1;
    if (gh_buf_room(b) < n)
        gh_buf_compact(b);
    if (gh_buf_room(b) < n)
        return -1;
    memcpy(b->data + b->end, p, n);
    b->end += (uint32_t)n;
    return 0;
}

void gh_buf_pool_trim(unsigned keep)
{
    while (free_count > keep) {
        void *next = *(void **)free_list;
        free(free_list);
        free_list = next;
        free_count--;
    }
}

void gh_buf_pool_drain(void)
{
    while (free_list != NULL) {
        void *next = *(void **)free_list;
        free(free_list);
        free_list = next;
    }
    free_count = 0;
    while (free_big != NULL) {
        void *next = *(void **)free_big;
        free(free_big);
        free_big = next;
    }
    free_big_count = 0;
}
