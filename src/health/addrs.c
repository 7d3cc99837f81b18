#include "health/addrs.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

/*
 * seq: epoch << 48 | count << 2 | published << 1 | writing. The epoch is the
 * health slot's (state.h): the prober writes with the ref of its target and
 * a write of a previous occupant fails its compare-and-swap, at the start or
 * at the end (then what it copied stays unpublished). The count only grows,
 * so a reader that saw the same seq before and after its copy read one write.
 * Only one prober runs at a time (the master starts the next once the last
 * has exited), so two writers never copy into one slot at once.
 */
#define EPOCH_SHIFT 48
#define WRITING     UINT64_C(1)
#define PUBLISHED   UINT64_C(2)
#define COUNT_ONE   UINT64_C(4)
#define COUNT_MASK  (((UINT64_C(1) << EPOCH_SHIFT) - 1) & ~(COUNT_ONE - 1))

typedef struct addr_slot {
    _Atomic unsigned long long seq;
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

static uint32_t epoch_of(gh_health_ref r)
{
    return (uint32_t)(r >> 32);
}

void gh_addr_shm_set(gh_addr_shm *s, gh_health_ref ref, const gh_addr *a)
{
    size_t slot = gh_health_ref_index(ref);
    unsigned long long cur, busy;
    addr_slot *e;

    if (s == NULL || slot >= s->nslots)
        return;
    e = &s->slots[slot];
    cur = atomic_load_explicit(&e->seq, memory_order_relaxed);
    /* A prober that died mid-write left WRITING set: its successor writes over it. */
    if (cur >> EPOCH_SHIFT != epoch_of(ref))
        return;
    busy = (cur & ~PUBLISHED) | WRITING;
    if (!atomic_compare_exchange_strong(&e->seq, &cur, busy))
        return; /* the slot was just given to another server */
    atomic_thread_fence(memory_order_release);
    memcpy(&e->addr, a, sizeof(*a));
    atomic_compare_exchange_strong_explicit(&e->seq, &busy, ((busy & ~WRITING) + COUNT_ONE) | PUBLISHED,
                                            memory_order_release, memory_order_relaxed);
}

int gh_addr_shm_get(const gh_addr_shm *s, gh_health_ref ref, gh_addr *out)
{
    size_t slot = gh_health_ref_index(ref);
    const addr_slot *e;

    if (s == NULL || slot >= s->nslots)
        return 0;
    e = &s->slots[slot];
    for (int tries = 0; tries < 100; tries++) {
        unsigned long long before = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (before >> EPOCH_SHIFT != epoch_of(ref) || !(before & PUBLISHED))
            return 0; /* nothing published for this occupant: the configuration's address */
        if (before & WRITING)
            continue;
        memcpy(out, &e->addr, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->seq, memory_order_relaxed) == before)
            return 1;
    }
    return 0; /* the writer keeps writing: use the address from the configuration */
}

void gh_addr_shm_claim(gh_addr_shm *s, gh_health_ref ref)
{
    size_t slot = gh_health_ref_index(ref);
    unsigned long long cur;

    if (s == NULL || slot >= s->nslots)
        return;
    cur = atomic_load(&s->slots[slot].seq);
    atomic_store(&s->slots[slot].seq,
                 (unsigned long long)epoch_of(ref) << EPOCH_SHIFT | ((cur + COUNT_ONE) & COUNT_MASK));
}

uint64_t gh_addr_shm_version(const gh_addr_shm *s, gh_health_ref ref)
{
    size_t slot = gh_health_ref_index(ref);

    if (s == NULL || slot >= s->nslots)
        return 0;
    return atomic_load_explicit(&s->slots[slot].seq, memory_order_acquire);
}

int gh_addr_shm_current(const gh_addr_shm *s, gh_health_ref ref, const gh_addr *loaded, gh_addr *out)
{
    if (gh_addr_shm_get(s, ref, out))
        return out->len > 0;
    if (loaded == NULL || loaded->len == 0) {
        memset(out, 0, sizeof(*out));
        return 0;
    }
    *out = *loaded;
    return 1;
}

size_t gh_addr_assign(const gh_addr *cur, gh_addr *next, size_t nslots, const gh_addr *found, size_t nfound)
{
    size_t left = 0;

    for (size_t i = 0; i < nslots; i++) {
        if (cur[i].len > 0 && gh_addr_in(&cur[i], found, nfound))
            next[i] = cur[i];
        else
            memset(&next[i], 0, sizeof(next[i]));
    }
    for (size_t k = 0; k < nfound; k++) {
        size_t i;

        if (found[k].len == 0 || gh_addr_in(&found[k], next, nslots) || gh_addr_in(&found[k], found, k))
            continue; /* kept in its slot, or a duplicate */
        for (i = 0; i < nslots && next[i].len > 0; i++)
            ;
        if (i == nslots)
            left++;
        else
            next[i] = found[k];
    }
    return left;
}
