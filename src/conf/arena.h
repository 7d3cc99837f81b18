/*
 * arena: the memory of one config generation. Many small allocations, freed
 * all together; no per-object free, so nothing in a generation can dangle
 * into another. Private to src/conf.
 */
#ifndef GH_CONF_ARENA_H
#define GH_CONF_ARENA_H

#include <stddef.h>

typedef struct conf__arena conf__arena;

/* A new, empty arena, or NULL when out of memory. */
conf__arena *conf__arena_new(void);

/* Frees every allocation made from a; NULL is a no-op. */
void conf__arena_free(conf__arena *a);

/* n zeroed bytes aligned for any type, or NULL (out of memory or n absurdly large). */
void *conf__arena_alloc(conf__arena *a, size_t n);

/* n * size zeroed bytes, with the multiplication checked. */
void *conf__arena_array(conf__arena *a, size_t n, size_t size);

/* A NUL-terminated copy of p[0..n), or NULL. */
char *conf__arena_strndup(conf__arena *a, const char *p, size_t n);

/*
 * Appends one zeroed element of `size` bytes to the array *items holding *n
 * of them (capacity *cap), doubling into a new block when full; the old block
 * stays in the arena until it is freed. Pointers to elements are valid only
 * until the next push to the same array. Returns the new element or NULL.
 */
void *conf__arena_push(conf__arena *a, void **items, size_t *n, size_t *cap, size_t size);

#endif
