/*
 * health/state: the shared slots. Every field is a lock-free atomic, because
 * the region is shared by processes: an address-free, lock-free atomic is the
 * only kind C11 makes work across processes (a lock-based fallback would use a
 * lock private to each process).
 */
#include "health/state.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "core/common.h"
#include "core/log.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared health state needs lock-free 64-bit atomics");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "shared health state needs lock-free atomics");

/*
 * The passive failure streak is one word, so that a failure updates the count
 * and the window start together with one compare-and-swap: count in the top
 * 16 bits, window start (ms) in the low 48 (about 8,900 years of uptime).
 */
#define STREAK_TIME_BITS 48
#define STREAK_TIME_MASK ((UINT64_C(1) << STREAK_TIME_BITS) - 1)
#define STREAK_MAX       0xffffu

/* One cache line per server: workers failing on different servers never contend. */
struct slot {
    _Alignas(64) atomic_uint status; /* enum gh_health_status */
    atomic_ullong ejected_until;     /* ms */
    atomic_ullong streak;            /* count << 48 | window start */
    atomic_ullong probes_ok;
    atomic_ullong probes_failed;
    atomic_ullong downs;
    atomic_ullong passive_failures;
    atomic_ullong ejections;
};

struct gh_health_shm {
    size_t nslots;
    size_t mapped; /* bytes, for munmap */
    struct slot slots[];
};

static size_t region_size(size_t nslots)
{
    return sizeof(gh_health_shm) + nslots * sizeof(struct slot);
}

gh_health_shm *gh_health_shm_new(size_t nslots)
{
    gh_health_shm *shm;
    size_t size;

    if (nslots == 0 || nslots > GH_HEALTH_MAX_SLOTS) {
        errno = EINVAL;
        return NULL;
    }
    size = region_size(nslots);
    shm = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shm == MAP_FAILED)
        return NULL;
    /* Anonymous pages are zero: every slot starts UNKNOWN, not ejected, no streak. */
    shm->nslots = nslots;
    shm->mapped = size;
    return shm;
}

void gh_health_shm_free(gh_health_shm *shm)
{
    if (shm != NULL)
        munmap(shm, shm->mapped);
}

size_t gh_health_shm_nslots(const gh_health_shm *shm)
{
    return shm != NULL ? shm->nslots : 0;
}

static struct slot *slot_of(const gh_health_shm *shm, size_t i)
{
    if (shm == NULL || i >= shm->nslots)
        return NULL;
    return (struct slot *)&shm->slots[i];
}

int gh_health_usable(const gh_health_shm *shm, size_t i, uint64_t now_ms)
{
    struct slot *s = slot_of(shm, i);

    if (s == NULL)
        return 1;
    if (atomic_load_explicit(&s->status, memory_order_relaxed) == GH_HEALTH_DOWN)
        return 0;
    return atomic_load_explicit(&s->ejected_until, memory_order_relaxed) <= now_ms;
}

int gh_health_status_get(const gh_health_shm *shm, size_t i)
{
    struct slot *s = slot_of(shm, i);

    return s != NULL ? (int)atomic_load_explicit(&s->status, memory_order_relaxed) : GH_HEALTH_UNKNOWN;
}

int gh_health_status_set(gh_health_shm *shm, size_t i, int status)
{
    struct slot *s = slot_of(shm, i);
    int old;

    if (s == NULL)
        return GH_HEALTH_UNKNOWN;
    old = (int)atomic_exchange(&s->status, (unsigned)status);
    if (status == GH_HEALTH_UP && old != GH_HEALTH_UP) {
        atomic_store(&s->ejected_until, 0);
        atomic_store(&s->streak, 0);
    }
    if (status == GH_HEALTH_DOWN && old != GH_HEALTH_DOWN)
        atomic_fetch_add_explicit(&s->downs, 1, memory_order_relaxed);
    return old;
}

void gh_health_probe_counted(gh_health_shm *shm, size_t i, int ok)
{
    struct slot *s = slot_of(shm, i);

    if (s != NULL)
        atomic_fetch_add_explicit(ok ? &s->probes_ok : &s->probes_failed, 1, memory_order_relaxed);
}

/*
 * The streak after one more failure at now: a new streak when there was none
 * or its window has passed, else one more (saturating: max_fails bounds it).
 */
static uint64_t streak_next(uint64_t cur, uint64_t now, uint32_t window_ms)
{
    uint64_t count = cur >> STREAK_TIME_BITS, start = cur & STREAK_TIME_MASK;

    now &= STREAK_TIME_MASK;
    if (count == 0 || now < start || now - start > window_ms)
        return (UINT64_C(1) << STREAK_TIME_BITS) | now;
    if (count < STREAK_MAX)
        count++;
    return (count << STREAK_TIME_BITS) | start;
}

static void log_ejection(const char *server, const char *pool, const gh_health_passive *cfg)
{
    gh_log_warn("server %s%s%s is ejected for %u ms: %u failures in a row within %u ms", server ? server : "?",
                pool ? " of pool " : "", pool ? pool : "", (unsigned)cfg->eject_ms, (unsigned)cfg->max_fails,
                (unsigned)cfg->window_ms);
}

int gh_health_passive_failure(gh_health_shm *shm, size_t i, uint64_t now_ms, const gh_health_passive *cfg,
                              const char *server, const char *pool)
{
    struct slot *s = slot_of(shm, i);
    uint64_t cur, next, need;

    if (s == NULL || cfg == NULL || cfg->max_fails == 0)
        return 0;
    need = GH_MIN(cfg->max_fails, STREAK_MAX);
    atomic_fetch_add_explicit(&s->passive_failures, 1, memory_order_relaxed);
    /* Requests that were in flight when it was ejected fail too: they say nothing new. */
    if (atomic_load_explicit(&s->ejected_until, memory_order_relaxed) > now_ms)
        return 0;
    cur = atomic_load_explicit(&s->streak, memory_order_relaxed);
    do {
        next = streak_next(cur, now_ms, cfg->window_ms);
        /* The failure that completes the streak also ends it: only that one caller ejects. */
        if ((next >> STREAK_TIME_BITS) >= need)
            next = 0;
    } while (!atomic_compare_exchange_weak(&s->streak, &cur, next));
    if (next != 0)
        return 0;
    atomic_store(&s->ejected_until, now_ms + cfg->eject_ms);
    atomic_fetch_add_explicit(&s->ejections, 1, memory_order_relaxed);
    log_ejection(server, pool, cfg);
    return 1;
}

void gh_health_passive_success(gh_health_shm *shm, size_t i)
{
    struct slot *s = slot_of(shm, i);

    if (s != NULL && atomic_load_explicit(&s->streak, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->streak, 0, memory_order_relaxed);
}

void gh_health_stats_get(const gh_health_shm *shm, size_t i, gh_health_stats *out)
{
    struct slot *s = slot_of(shm, i);

    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return;
    out->status = (int)atomic_load(&s->status);
    out->ejected_until = atomic_load(&s->ejected_until);
    out->streak = (uint32_t)(atomic_load(&s->streak) >> STREAK_TIME_BITS);
    out->probes_ok = atomic_load(&s->probes_ok);
    out->probes_failed = atomic_load(&s->probes_failed);
    out->downs = atomic_load(&s->downs);
    out->passive_failures = atomic_load(&s->passive_failures);
    out->ejections = atomic_load(&s->ejections);
}
