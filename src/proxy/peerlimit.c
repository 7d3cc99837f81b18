#include "proxy/peerlimit.h"

#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define MASTER 0xffffffffu /* the lock word of the master's wipe (workers hold worker + 1) */

struct peer_entry {
    uint8_t addr[16];
    uint32_t scope;
    uint16_t worker;
    uint16_t pad;
    uint32_t count; /* 0: a free entry */
    uint32_t pad2;
};

struct peer_set {
    atomic_uint lock; /* 0, or its holder: worker + 1, or MASTER */
    uint32_t pad;
    struct peer_entry e[GH_PEER_WAYS];
};

struct gh_peer_shm {
    size_t nsets; /* a power of two */
    size_t mapped;
    uint64_t seed;
    struct peer_set sets[];
};

gh_peer_shm *gh_peer_shm_new(size_t nsets)
{
    size_t size = sizeof(gh_peer_shm) + nsets * sizeof(struct peer_set);
    gh_peer_shm *shm;
    uint64_t seed = 0;

    if (nsets == 0 || (nsets & (nsets - 1)) != 0)
        return NULL;
    shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        return NULL;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts); /* no entropy yet (early boot): at least not a constant */
        seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    }
    shm->nsets = nsets;
    shm->mapped = size;
    shm->seed = seed;
    return shm;
}

void gh_peer_shm_free(gh_peer_shm *shm)
{
    if (shm != NULL)
        munmap(shm, shm->mapped);
}

/* FNV-1a from the table's random seed, then a final mix: the set of an address and scope. */
static struct peer_set *set_of(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope)
{
    uint64_t h = 0xcbf29ce484222325ull ^ shm->seed;

    for (int i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 0x100000001b3ull;
    for (int i = 0; i < 4; i++)
        h = (h ^ ((scope >> (8 * i)) & 0xff)) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return &shm->sets[h & (shm->nsets - 1)];
}

static void lock(struct peer_set *s, unsigned me)
{
    unsigned spins = 0;
    unsigned expected = 0;

    while (
        !atomic_compare_exchange_weak_explicit(&s->lock, &expected, me, memory_order_acquire, memory_order_relaxed)) {
        expected = 0;
        if (++spins % 64 == 0)
            sched_yield(); /* a holder preempted by the scheduler gets the CPU back */
    }
}

static void unlock(struct peer_set *s)
{
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

static int same(const struct peer_entry *e, const uint8_t addr[16], uint32_t scope)
{
    return e->count > 0 && e->scope == scope && memcmp(e->addr, addr, 16) == 0;
}

int gh_peer_take(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope, uint16_t worker, uint32_t max,
                 uint32_t *held)
{
    struct peer_set *s = set_of(shm, addr, scope);
    struct peer_entry *mine = NULL, *free_e = NULL;
    uint32_t total = 0;
    int rc = 0;

    lock(s, (unsigned)worker + 1);
    for (int i = 0; i < GH_PEER_WAYS; i++) {
        struct peer_entry *e = &s->e[i];

        if (same(e, addr, scope)) {
            total += e->count;
            if (e->worker == worker)
                mine = e;
        } else if (e->count == 0 && free_e == NULL) {
            free_e = e;
        }
    }
    *held = total;
    if (total >= max) {
        rc = GH_PEER_OVER;
    } else if (mine != NULL) {
        mine->count++;
    } else if (free_e != NULL) {
        memcpy(free_e->addr, addr, 16);
        free_e->scope = scope;
        free_e->worker = worker;
        free_e->count = 1; /* last: a count of 0 is what marks an entry free */
    } else {
        rc = GH_PEER_FULL;
    }
    unlock(s);
    return rc;
}

void gh_peer_put(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope, uint16_t worker)
{
    struct peer_set *s = set_of(shm, addr, scope);

    lock(s, (unsigned)worker + 1);
    for (int i = 0; i < GH_PEER_WAYS; i++)
        if (same(&s->e[i], addr, scope) && s->e[i].worker == worker) {
            s->e[i].count--;
            break;
        }
    unlock(s);
}

uint32_t gh_peer_count(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope)
{
    struct peer_set *s = set_of(shm, addr, scope);
    uint32_t total = 0;

    lock(s, MASTER - 1); /* any non-zero holder: this is a reader that never dies holding it */
    for (int i = 0; i < GH_PEER_WAYS; i++)
        if (same(&s->e[i], addr, scope))
            total += s->e[i].count;
    unlock(s);
    return total;
}

uint64_t gh_peer_forget_worker(gh_peer_shm *shm, uint16_t worker)
{
    unsigned dead = (unsigned)worker + 1;
    uint64_t dropped = 0;

    for (size_t k = 0; k < shm->nsets; k++) {
        struct peer_set *s = &shm->sets[k];
        unsigned spins = 0, expected = 0;

        /* Free, or held by the dead worker (it will never let go): ours. Else a live holder lets go soon. */
        while (!atomic_compare_exchange_weak_explicit(&s->lock, &expected, MASTER, memory_order_acquire,
                                                      memory_order_relaxed)) {
            if (expected != dead)
                expected = 0;
            if (++spins % 64 == 0)
                sched_yield();
        }
        for (int i = 0; i < GH_PEER_WAYS; i++)
            if (s->e[i].count > 0 && s->e[i].worker == worker) {
                dropped += s->e[i].count;
                s->e[i].count = 0;
            }
        unlock(s);
    }
    return dropped;
}
