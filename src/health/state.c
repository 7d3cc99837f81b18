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
 * Every word a writer changes carries the epoch of the slot's occupant
 * (state.h, gh_health_ref) in its top 16 bits, and is changed by
 * compare-and-swap against it: a write meant for a previous occupant fails
 * instead of landing. The status word is epoch << 16 | status; the two 64-bit
 * words are epoch << 48 | 48 bits of value.
 *
 * The passive failure streak is one word, so that a failure updates the count
 * and the window start together with one compare-and-swap: count in 10 bits
 * (max_fails is at most 1000), window start (ms) in the low 38 (8.7 years of
 * uptime; a wrap costs one streak its start, nothing more).
 */
#define EPOCH_SHIFT      48
#define VALUE_MASK       ((UINT64_C(1) << EPOCH_SHIFT) - 1)
#define STREAK_TIME_BITS 38
#define STREAK_TIME_MASK ((UINT64_C(1) << STREAK_TIME_BITS) - 1)
#define STREAK_MAX       0x3ffu

/* One cache line per server: workers failing on different servers never contend. */
struct slot {
    _Alignas(64) atomic_uint status; /* epoch << 16 | enum gh_health_status */
    atomic_ullong ejected_until;     /* epoch << 48 | ms */
    atomic_ullong streak;            /* epoch << 48 | count << 38 | window start */
    atomic_ullong owner;             /* hash of the occupant (gh_health_claim); written by the master only */
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

static uint32_t epoch_of(gh_health_ref r)
{
    return (uint32_t)(r >> 32);
}

/* The slot of ref if its occupant is still the one ref was given to (a racy check: writes CAS again). */
static struct slot *slot_if_owner(const gh_health_shm *shm, gh_health_ref r)
{
    struct slot *s = slot_of(shm, gh_health_ref_index(r));

    if (s == NULL || atomic_load_explicit(&s->status, memory_order_relaxed) >> 16 != epoch_of(r))
        return NULL;
    return s;
}

/* Stores value into a 64-bit word of epoch e, unless the word's epoch moved on. Returns 1 if stored. */
static int store_if(atomic_ullong *w, uint32_t e, uint64_t value)
{
    uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);

    do {
        if (cur >> EPOCH_SHIFT != e)
            return 0;
    } while (!atomic_compare_exchange_weak(w, &cur, (uint64_t)e << EPOCH_SHIFT | (value & VALUE_MASK)));
    return 1;
}

gh_health_ref gh_health_claim(gh_health_shm *shm, size_t i, uint64_t owner)
{
    struct slot *s = slot_of(shm, i);
    uint32_t e;

    if (s == NULL)
        return gh_health_ref_make(i, GH_HEALTH_NO_EPOCH);
    e = atomic_load(&s->status) >> 16;
    if (owner != 0 && atomic_load(&s->owner) == owner)
        return gh_health_ref_make(i, e);
    /*
     * Plain stores, epoch first in every word: a writer of the old epoch whose
     * compare-and-swap came before is overwritten, one that comes after fails.
     * The owner last, so that whoever sees it sees the new epoch too.
     */
    e = (e + 1) & 0xffffu;
    atomic_store(&s->status, e << 16 | GH_HEALTH_UNKNOWN);
    atomic_store(&s->ejected_until, (uint64_t)e << EPOCH_SHIFT);
    atomic_store(&s->streak, (uint64_t)e << EPOCH_SHIFT);
    atomic_store(&s->owner, owner);
    return gh_health_ref_make(i, e);
}

gh_health_ref gh_health_ref_of(const gh_health_shm *shm, size_t i, uint64_t owner)
{
    struct slot *s = slot_of(shm, i);

    if (s == NULL || atomic_load(&s->owner) != owner)
        return gh_health_ref_make(i, GH_HEALTH_NO_EPOCH);
    return gh_health_ref_make(i, atomic_load(&s->status) >> 16);
}

int gh_health_usable(const gh_health_shm *shm, gh_health_ref r, uint64_t now_ms)
{
    struct slot *s = slot_of(shm, gh_health_ref_index(r));
    unsigned st;
    uint64_t ej;

    if (s == NULL)
        return 1;
    st = atomic_load_explicit(&s->status, memory_order_relaxed);
    if (st >> 16 != epoch_of(r))
        return 1; /* another server's verdict says nothing about this one */
    if ((st & 0xffffu) == GH_HEALTH_DOWN || (st & 0xffffu) == GH_HEALTH_PENDING)
        return 0;
    ej = atomic_load_explicit(&s->ejected_until, memory_order_relaxed);
    return ej >> EPOCH_SHIFT != epoch_of(r) || (ej & VALUE_MASK) <= now_ms;
}

int gh_health_status_get(const gh_health_shm *shm, gh_health_ref r)
{
    struct slot *s = slot_if_owner(shm, r);

    return s != NULL ? (int)(atomic_load_explicit(&s->status, memory_order_relaxed) & 0xffffu) : GH_HEALTH_UNKNOWN;
}

int gh_health_status_set(gh_health_shm *shm, gh_health_ref r, int status)
{
    struct slot *s = slot_of(shm, gh_health_ref_index(r));
    uint32_t e = epoch_of(r);
    unsigned cur;
    int old;

    if (s == NULL)
        return GH_HEALTH_UNKNOWN;
    cur = atomic_load_explicit(&s->status, memory_order_relaxed);
    do {
        if (cur >> 16 != e)
            return GH_HEALTH_UNKNOWN; /* the slot is another server's now */
    } while (!atomic_compare_exchange_weak(&s->status, &cur, e << 16 | (unsigned)status));
    old = (int)(cur & 0xffffu);
    if (status == GH_HEALTH_UP && old != GH_HEALTH_UP) {
        store_if(&s->ejected_until, e, 0);
        store_if(&s->streak, e, 0);
    }
    if (status == GH_HEALTH_DOWN && old != GH_HEALTH_DOWN)
        atomic_fetch_add_explicit(&s->downs, 1, memory_order_relaxed);
    return old;
}

void gh_health_slot_reset(gh_health_shm *shm, gh_health_ref r, int status)
{
    struct slot *s = slot_of(shm, gh_health_ref_index(r));
    uint32_t e = epoch_of(r);
    unsigned cur;

    if (s == NULL)
        return;
    cur = atomic_load_explicit(&s->status, memory_order_relaxed);
    do {
        if (cur >> 16 != e)
            return; /* the slot is another server's now */
    } while (!atomic_compare_exchange_weak(&s->status, &cur, e << 16 | (unsigned)status));
    store_if(&s->ejected_until, e, 0);
    store_if(&s->streak, e, 0);
}

void gh_health_probe_counted(gh_health_shm *shm, gh_health_ref r, int ok)
{
    struct slot *s = slot_if_owner(shm, r);

    /* Counters only: a count that races with a change of owner is off by one, nothing decides on it. */
    if (s != NULL)
        atomic_fetch_add_explicit(ok ? &s->probes_ok : &s->probes_failed, 1, memory_order_relaxed);
}

/*
 * The streak after one more failure at now: a new streak when there was none
 * or its window has passed, else one more (saturating: max_fails bounds it).
 */
static uint64_t streak_next(uint64_t cur, uint64_t now, uint32_t window_ms)
{
    uint64_t count = (cur & VALUE_MASK) >> STREAK_TIME_BITS, start = cur & STREAK_TIME_MASK;

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

int gh_health_passive_failure(gh_health_shm *shm, gh_health_ref r, uint64_t now_ms, const gh_health_passive *cfg,
                              const char *server, const char *pool)
{
    struct slot *s = slot_if_owner(shm, r);
    uint32_t e = epoch_of(r);
    uint64_t cur, next, need, ej;

    if (s == NULL || cfg == NULL || cfg->max_fails == 0)
        return 0;
    need = GH_MIN(cfg->max_fails, STREAK_MAX);
    atomic_fetch_add_explicit(&s->passive_failures, 1, memory_order_relaxed);
    /* Requests that were in flight when it was ejected fail too: they say nothing new. */
    ej = atomic_load_explicit(&s->ejected_until, memory_order_relaxed);
    if (ej >> EPOCH_SHIFT != e || (ej & VALUE_MASK) > now_ms)
        return 0;
    cur = atomic_load_explicit(&s->streak, memory_order_relaxed);
    do {
        if (cur >> EPOCH_SHIFT != e)
            return 0;
        next = streak_next(cur, now_ms, cfg->window_ms);
        /* The failure that completes the streak also ends it: only that one caller ejects. */
        if ((next >> STREAK_TIME_BITS) >= need)
            next = 0;
        next |= (uint64_t)e << EPOCH_SHIFT;
    } while (!atomic_compare_exchange_weak(&s->streak, &cur, next));
    if ((next & VALUE_MASK) != 0 || !store_if(&s->ejected_until, e, now_ms + cfg->eject_ms))
        return 0;
    atomic_fetch_add_explicit(&s->ejections, 1, memory_order_relaxed);
    log_ejection(server, pool, cfg);
    return 1;
}

void gh_health_passive_success(gh_health_shm *shm, gh_health_ref r)
{
    struct slot *s = slot_of(shm, gh_health_ref_index(r));
    uint64_t cur, zero = (uint64_t)epoch_of(r) << EPOCH_SHIFT;

    if (s == NULL)
        return;
    /* Only reads the slot when there is no streak: the common case writes no shared cache line. */
    cur = atomic_load_explicit(&s->streak, memory_order_relaxed);
    if (cur >> EPOCH_SHIFT == epoch_of(r) && cur != zero)
        atomic_compare_exchange_strong(&s->streak, &cur, zero);
}

void gh_health_stats_get(const gh_health_shm *shm, size_t i, gh_health_stats *out)
{
    struct slot *s = slot_of(shm, i);

    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return;
    out->status = (int)(atomic_load(&s->status) & 0xffffu);
    out->ejected_until = atomic_load(&s->ejected_until) & VALUE_MASK;
    out->streak = (uint32_t)((atomic_load(&s->streak) & VALUE_MASK) >> STREAK_TIME_BITS);
    out->probes_ok = atomic_load(&s->probes_ok);
    out->probes_failed = atomic_load(&s->probes_failed);
    out->downs = atomic_load(&s->downs);
    out->passive_failures = atomic_load(&s->passive_failures);
    out->ejections = atomic_load(&s->ejections);
}
