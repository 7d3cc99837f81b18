/*
 * peerlimit: the connections each client address holds, counted across every
 * worker (max_connections_per_ip), in one fixed-size region of shared memory
 * that the master maps before it forks (gh_shared), as ratelimit.h's buckets.
 *
 * An entry is (address, scope, worker) and its count: each worker counts its
 * own connections in entries of its own, and an address's total is the sum of
 * its entries. The entries of one address all lie in one set (the address
 * picks the set), so a check reads one set under one lock. Keeping each
 * worker's share apart is what makes a dead worker harmless: the master wipes
 * that worker's entries (gh_peer_forget_worker) before it starts the next one,
 * so its connections, which died with it, stop counting; no other worker's
 * count is touched. A shared single count could not be mended that way.
 *
 * Bounds: GH_PEER_SETS sets of GH_PEER_WAYS entries; the table never grows or
 * allocates. A live entry is a worker holding at least one connection from
 * that address, so a set overflows only with more than GH_PEER_WAYS such
 * (address, worker) pairs at once in it; the set is picked by a keyed hash
 * (a random key drawn when the table is made), so a client cannot aim its
 * addresses at another client's set. A connection that finds its set full is
 * let in uncounted (GH_PEER_FULL: the caller logs and counts it): refusing
 * it would let whoever fills a set lock other clients out, while letting it
 * in loses only the per-address bound for it (max_connections still holds).
 *
 * Each set has a spinlock whose word names its holder (worker + 1): the
 * critical section is a few loads and stores, no system call. A worker killed
 * while it holds one (SIGKILL, the OOM killer) would leave the set locked for
 * ever; gh_peer_forget_worker takes such a lock over. Whatever the dead
 * worker was writing is in its own entries only, which are then wiped.
 */
#ifndef GH_PROXY_PEERLIMIT_H
#define GH_PROXY_PEERLIMIT_H

#include <stddef.h>
#include <stdint.h>

#define GH_PEER_SETS 4096 /* x GH_PEER_WAYS entries of 32 bytes: 65536 entries, 2 MiB */
#define GH_PEER_WAYS 16

enum { GH_PEER_OVER = -1, GH_PEER_FULL = -2 };

typedef struct gh_peer_shm gh_peer_shm;

/* Maps a zeroed shared table of nsets sets (a power of two) with a random hash key; NULL on failure. */
gh_peer_shm *gh_peer_shm_new(size_t nsets);
void gh_peer_shm_free(gh_peer_shm *shm);

/*
 * One more connection of addr (16 bytes: IPv6, or IPv4 as ::ffff:a.b.c.d) in
 * scope (0: max_connections_per_ip of the main context) held by worker, when
 * all workers together hold fewer than max: 0 (counted: give it back with
 * gh_peer_put), GH_PEER_OVER (not counted: refuse it), GH_PEER_FULL (no free
 * entry in its set: not counted). *held: the total before this one.
 */
int gh_peer_take(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope, uint16_t worker, uint32_t max,
                 uint32_t *held);
/* Gives back one connection that gh_peer_take counted (exactly once). */
void gh_peer_put(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope, uint16_t worker);
/* What all workers hold for addr in scope. */
uint32_t gh_peer_count(gh_peer_shm *shm, const uint8_t addr[16], uint32_t scope);
/*
 * The master, when a worker has exited (before it starts another in its
 * slot): drops every count of that worker, and a lock it died holding.
 * Returns the connections dropped.
 */
uint64_t gh_peer_forget_worker(gh_peer_shm *shm, uint16_t worker);

#endif
