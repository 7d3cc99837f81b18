#include "health/addrs.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

typedef struct addr_slot {
    _Atomic unsigned seq; /* even: stable; odd: being written; 0: never written */
    gh_addr addr;
} addr_slot;

struct gh_addr_shm {
    size_t nslots;
    addr_slot slots[];
};

static size_t region_size(size_t nslots)
{
    return sizeof(gh_addr_shm) + nslots * sizeof(addr_slot);
}

gh_addr_shm *gh_addr_shm_new(size_t nslots)
{
    gh_addr_shm *s = mmap(NULL, region_size(nslots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED)
        return NULL;
    s->nslots = nslots; /* the rest is zero: nothing published */
    return s;
}

void gh_addr_shm_free(gh_addr_shm *s)
{
    if (s != NULL)
        munmap(s, region_size(s->nslots));
}

void gh_addr_shm_set(gh_addr_shm *s, size_t slot, const gh_addr *a)
{
    addr_slot *e;
    unsigned seq;

    if (slot >= s->nslots)
        return;
    e = &s->slots[slot];
    seq = atomic_load_explicit(&e->seq, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq | 1u, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&e->addr, a, sizeof(*a));
    atomic_store_explicit(&e->seq, (seq | 1u) + 1u, memory_order_release);
}

int gh_addr_shm_get(const gh_addr_shm *s, size_t slot, gh_addr *out)
{
    const addr_slot *e;

    if (s == NULL || slot >= s->nslots)
        return 0;
    e = &s->slots[slot];
    for (int tries = 0; tries < 100; tries++) {
        unsigned before = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (before == 0)
            return 0;
        if (before & 1u)
            continue;
        memcpy(out, &e->addr, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->seq, memory_order_relaxed) == before)
            return 1;
    }
    return 0; /* the writer keeps writing: use the address from the configuration */
}

void gh_addr_shm_clear(gh_addr_shm *s)
{
    for (size_t i = 0; i < s->nslots; i++)
        atomic_store_explicit(&s->slots[i].seq, 0, memory_order_release);
}
