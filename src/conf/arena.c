#include "conf/arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE (16 * 1024)
#define ALIGN      alignof(max_align_t)

struct chunk {
    struct chunk *next;
    size_t used, size;
    alignas(max_align_t) unsigned char data[];
};

struct conf__arena {
    struct chunk *head;
};

conf__arena *conf__arena_new(void)
{
    return calloc(1, sizeof(conf__arena));
}

void conf__arena_free(conf__arena *a)
{
    if (a == NULL)
        return;
    for (struct chunk *c = a->head, *next; c != NULL; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

/* A fresh chunk large enough for n bytes; big requests get a chunk of their own. */
static struct chunk *new_chunk(conf__arena *a, size_t n)
{
    size_t size = n > CHUNK_SIZE ? n : CHUNK_SIZE;
    struct chunk *c = malloc(sizeof(*c) + size);

    if (c == NULL)
        return NULL;
    c->size = size;
    c->used = 0;
    c->next = a->head;
    a->head = c;
    return c;
}

void *conf__arena_alloc(conf__arena *a, size_t n)
{
    struct chunk *c = a->head;
    void *p;

    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / 2)
        return NULL;
    n = (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (c == NULL || c->size - c->used < n) {
        c = new_chunk(a, n);
        if (c == NULL)
            return NULL;
    }
    p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void *conf__arena_array(conf__arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / 2 / size)
        return NULL;
    return conf__arena_alloc(a, n * size);
}

char *conf__arena_strndup(conf__arena *a, const char *p, size_t n)
{
    char *s = n < SIZE_MAX ? conf__arena_alloc(a, n + 1) : NULL;

    if (s == NULL)
        return NULL;
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

void *conf__arena_push(conf__arena *a, void **items, size_t *n, size_t *cap, size_t size)
{
    unsigned char *base;

    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        void *grown = conf__arena_array(a, ncap, size);

        if (grown == NULL)
            return NULL;
        if (*n > 0)
            memcpy(grown, *items, *n * size);
        *items = grown;
        *cap = ncap;
    }
    base = *items;
    return base + (*n)++ * size;
}
