#include "proxy/ratelimit.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define WAYS 4

struct rate_set {
    atomic_uint lock;
    uint32_t pad;
    struct {
        uint64_t key;
        uint64_t tat; /* microseconds */
    } e[WAYS];
};

struct gh_rate_shm {
    size_t nsets; /* a power of two */
    size_t mapped;
    struct rate_set sets[];
};

gh_rate_shm *gh_rate_shm_new(size_t nsets)
{
    size_t size = sizeof(gh_rate_shm) + nsets * sizeof(struct rate_set);
    gh_rate_shm *shm;

    if (nsets == 0 || (nsets & (nsets - 1)) != 0)
        return NULL;
    shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        return NULL;
    shm->nsets = nsets;
    shm->mapped = size;
    return shm;
}

void gh_rate_shm_free(gh_rate_shm *shm)
{
    if (shm != NULL)
        munmap(shm, shm->mapped);
}

/* FNV-1a, then a final mix (the low bits choose the set). */
uint64_t gh_rate_key(uint32_t id, const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ id;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h != 0 ? h : 1;
}

static void lock(struct rate_set *s)
{
    for (unsigned spins = 0; atomic_exchange_explicit(&s->lock, 1, memory_order_acquire) != 0;)
        if (++spins % 64 == 0)
            sched_yield();
}

static void unlock(struct rate_set *s)
{
    atomic_store_explicit(&s->lock, 0, memory_order_release);
}

uint32_t gh_rate_take(gh_rate_shm *shm, uint64_t key, uint64_t now_us, uint64_t interval_us, uint32_t burst)
{
    struct rate_set *s = &shm->sets[(key >> 7) & (shm->nsets - 1)];
    uint64_t tolerance = (uint64_t)(burst > 0 ? burst - 1 : 0) * interval_us, tat, wait;
    int way = -1, victim = 0;

    lock(s);
    for (int i = 0; i < WAYS; i++) {
        if (s->e[i].key == key) {
            way = i;
            break;
        }
        if (s->e[i].key == 0 ? s->e[victim].key != 0 : s->e[victim].key != 0 && s->e[i].tat < s->e[victim].tat)
            victim = i;
    }
    if (way < 0) {
        way = victim;
        s->e[way].key = key;
        s->e[way].tat = 0; /* a full bucket */
    }
    tat = s->e[way].tat > now_us ? s->e[way].tat : now_us;
    if (tat - now_us > tolerance) {
        unlock(s);
        wait = tat - now_us - tolerance;
        return (uint32_t)((wait + 999999) / 1000000);
    }
    s->e[way].tat = tat + interval_us;
    unlock(s);
    return 0;
}
