/*
 * health/state: what every process knows about the health of each server, in
 * one shared-memory region (DESIGN.md, Process model).
 *
 * The master maps the region before it forks, so the prober and every worker
 * see the same pages. Each server has a slot, found by index (the config gives
 * every server of every pool its slot number). Every field is a lock-free C11
 * atomic: writers in several processes never take a lock, and a worker that
 * dies in the middle of an update leaves nothing locked behind.
 *
 * Two independent verdicts make a server unusable:
 *  - active: the prober's rise/fall verdict (probe.h). Before the first probe
 *    it is UNKNOWN, which counts as up.
 *  - passive: workers report connect failures, timeouts and counted statuses; N in a
 *    row within a window eject the server for a period.
 *
 * Times are CLOCK_MONOTONIC milliseconds (gh_loop_now() of any process: the
 * monotonic clock is the same in every process of the host).
 */
#ifndef GH_HEALTH_STATE_H
#define GH_HEALTH_STATE_H

#include <stddef.h>
#include <stdint.h>

#define GH_HEALTH_MAX_SLOTS 4096

/*
 * Which server a writer means: a slot index and the epoch of the occupant it
 * was given to (epoch << 32 | index). A reload may give a slot to another
 * server while old writers still run (the old prober until it exits, a
 * worker's old generation until its last exchange ends); the master then
 * advances the slot's epoch (gh_health_claim), and every write carrying the
 * previous one is refused, atomically with the write itself (the epoch is in
 * each word, changed by compare-and-swap), so none can land on the new
 * occupant. A plain index is epoch 0: a slot never claimed (unit tests).
 * Epochs are 16 bits: a writer would have to outlive 65536 changes of owner
 * of its slot to be mistaken for a current one.
 */
typedef uint64_t gh_health_ref;
#define GH_HEALTH_NO_EPOCH 0x10000u /* matches no slot: every write refused, every read "no verdict" */

static inline gh_health_ref gh_health_ref_make(size_t index, uint32_t epoch)
{
    return (uint64_t)epoch << 32 | (uint32_t)index;
}

static inline size_t gh_health_ref_index(gh_health_ref r)
{
    return (size_t)(uint32_t)r;
}

/* Active verdict of a slot. */
enum gh_health_status {
    GH_HEALTH_UNKNOWN = 0, /* not probed yet, or no active check: counts as up */
    GH_HEALTH_UP = 1,
    GH_HEALTH_DOWN = 2,
    /*
     * A new address of a server given by name, not probed yet: no traffic
     * until its first probe passes (an address that appears in DNS may not
     * be serving yet). The prober decides it like UNKNOWN, at the first result.
     */
    GH_HEALTH_PENDING = 3,
};

/* Passive ejection settings of a pool; part of the config, read-only. */
typedef struct gh_health_passive {
    uint32_t max_fails; /* failures in a row that eject the server; 0: passive checks off */
    uint32_t window_ms; /* ...all within this long from the first of them */
    uint32_t eject_ms;  /* how long an ejected server gets no new traffic */
} gh_health_passive;

/* A copy of a slot's counters, for metrics and tests. Counters only grow. */
typedef struct gh_health_stats {
    int status;                /* enum gh_health_status */
    uint64_t ejected_until;    /* ms; 0 or in the past: not ejected */
    uint32_t streak;           /* current run of passive failures */
    uint64_t probes_ok;        /* active probes that passed */
    uint64_t probes_failed;    /* active probes that failed */
    uint64_t downs;            /* active transitions to DOWN */
    uint64_t passive_failures; /* failures reported by workers */
    uint64_t ejections;        /* passive ejections */
} gh_health_stats;

typedef struct gh_health_shm gh_health_shm;

/*
 * Maps a region of nslots slots (1..GH_HEALTH_MAX_SLOTS), all UNKNOWN and not
 * ejected, MAP_SHARED|MAP_ANONYMOUS: children forked afterwards share it.
 * Returns NULL (errno set) on failure. Freed with gh_health_shm_free() by each
 * process that no longer needs it (unmapping in one process leaves the others'
 * mappings alone).
 */
gh_health_shm *gh_health_shm_new(size_t nslots);
void gh_health_shm_free(gh_health_shm *shm);
size_t gh_health_shm_nslots(const gh_health_shm *shm);

/*
 * The master gives slot `index` to the server named by owner (a nonzero hash
 * of its pool and its text). The same owner keeps the slot as it is (its
 * verdicts survive a reload); another one advances the epoch and starts the
 * slot clean: UNKNOWN, no failure streak, not ejected. Returns the ref that
 * the new occupant's writers use (GH_HEALTH_NO_EPOCH for an index out of range).
 */
gh_health_ref gh_health_claim(gh_health_shm *shm, size_t index, uint64_t owner);

/* A worker's ref for the server owner at index, as the master claimed it; GH_HEALTH_NO_EPOCH if it is another's. */
gh_health_ref gh_health_ref_of(const gh_health_shm *shm, size_t index, uint64_t owner);

/*
 * 1 when new traffic may go to the server of `slot`: not actively DOWN (or
 * PENDING) and not ejected at now_ms. Two relaxed loads: cheap enough for every pick. An
 * out-of-range slot (or a NULL shm), or one that another server now holds,
 * is usable: health never hides a server on a verdict about another.
 */
int gh_health_usable(const gh_health_shm *shm, gh_health_ref slot, uint64_t now_ms);

/* The slot's active verdict (enum gh_health_status). */
int gh_health_status_get(const gh_health_shm *shm, gh_health_ref slot);

/*
 * The prober's verdict. A change to UP also lifts a passive ejection and
 * clears the failure streak: the server has just proven itself, and a recovered
 * server must get traffic again without waiting out an ejection that its
 * outage caused. Returns the previous status.
 */
int gh_health_status_set(gh_health_shm *shm, gh_health_ref slot, int status);

/*
 * The slot of a name holds another address now (the same occupant, another
 * server behind it): the verdicts of the previous address do not apply. Sets
 * status (UNKNOWN, or PENDING when it has active checks) and clears the
 * passive streak and ejection; counters stay. Refused for another occupant.
 */
void gh_health_slot_reset(gh_health_shm *shm, gh_health_ref slot, int status);

/* Counts one active probe result (metrics only). */
void gh_health_probe_counted(gh_health_shm *shm, gh_health_ref slot, int ok);

/*
 * A worker saw a failure (connect, timeout, counted status) of `slot`. The
 * max_fails'th failure in a row, within window_ms of the first, ejects the
 * server until now_ms + eject_ms. Failures while the server is ejected do not
 * start a new streak. Exactly one caller, in one process, sees each ejection
 * happen, even with several workers failing at once: that caller logs it at
 * warn, naming `server` and `pool` (either may be NULL), and gets 1; every
 * other call returns 0.
 */
int gh_health_passive_failure(gh_health_shm *shm, gh_health_ref slot, uint64_t now_ms, const gh_health_passive *cfg,
                              const char *server, const char *pool);

/*
 * A worker got a good answer (or a connection) from the server: the failure
 * streak starts again. Only reads the slot when there is no streak, so the
 * common case writes no shared cache line.
 */
void gh_health_passive_success(gh_health_shm *shm, gh_health_ref slot);

/* Copies the slot's state (whoever holds it) into out; zeroes it for an out-of-range slot. */
void gh_health_stats_get(const gh_health_shm *shm, size_t slot, gh_health_stats *out);

#endif
