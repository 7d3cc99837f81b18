/*
 * ratelimit: token buckets shared by every worker, in one fixed-size region
 * of shared memory that the master maps before it forks (gh_shared).
 *
 * Each key (a client address, a header or cookie value, hashed with the id of
 * its rate_limit) has one 16-byte entry holding its bucket as GCRA keeps it:
 * the "theoretical arrival time" (TAT) of the next request. A request at time
 * `now` is allowed when TAT - now <= (burst - 1) * interval, and then moves
 * TAT to max(TAT, now) + interval: exactly a token bucket of `burst` tokens
 * refilled one per interval, with one number instead of two.
 *
 * The table is 4-way set associative: a key hashes to one set of 4 entries.
 * A key not found takes an empty entry, else the entry with the smallest TAT,
 * that is the bucket closest to full. If that bucket is full already (TAT <=
 * now) nothing is lost; if not, its key starts over with a full bucket: under
 * more distinct keys than entries, a client can gain at most one burst per
 * eviction, never more. The table never grows and never allocates.
 *
 * Each set has a spinlock: the critical section is a few loads, compares and
 * stores (no system call, no allocation), far shorter than a lock-free
 * retry loop over key and TAT would be to reason about; after 64 spins a
 * waiter yields the CPU, so a holder preempted by the scheduler is not
 * starved by its spinning peers. Workers are single-threaded processes, so a
 * set's lock is held by at most one of them at a time.
 */
#ifndef GH_PROXY_RATELIMIT_H
#define GH_PROXY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define GH_RATE_SETS 16384 /* x 4 entries: 65536 keys, 1.2 MiB */

typedef struct gh_rate_shm gh_rate_shm;

/* Maps a zeroed shared table of nsets sets (a power of two); NULL on failure. */
gh_rate_shm *gh_rate_shm_new(size_t nsets);
void gh_rate_shm_free(gh_rate_shm *shm);

/* The key of bytes p[0..n) for the limit with this id (never 0: 0 marks an empty entry). */
uint64_t gh_rate_key(uint32_t id, const char *p, size_t n);

/*
 * Takes one token of key's bucket at now_us (a clock every process shares:
 * CLOCK_MONOTONIC). 0: allowed; else refused, and the value is the seconds
 * until a request would be allowed again (at least 1: Retry-After).
 */
uint32_t gh_rate_take(gh_rate_shm *shm, uint64_t key, uint64_t now_us, uint64_t interval_us, uint32_t burst);

#endif
