/*
 * health/addrs: the current address of every server given by name, shared by
 * all processes. The prober process re-resolves the names periodically (it
 * may block in getaddrinfo: no client waits on it) and publishes what it found
 * here; workers read it when they open a connection, never blocking.
 *
 * One writer (the prober) and many readers, without locks: a sequence counter
 * per slot (with a bit set while a write is under way) lets a reader retry a
 * torn read, and the slot's epoch in the same word refuses a stale writer.
 * Slots are the health slots (one per server of every pool, in config order).
 */
#ifndef GH_HEALTH_ADDRS_H
#define GH_HEALTH_ADDRS_H

#include <stddef.h>
#include <stdint.h>

#include "health/state.h"
#include "net/addr.h"

typedef struct gh_addr_shm gh_addr_shm;

/* Maps nslots empty slots, MAP_SHARED before any fork. NULL on failure. */
gh_addr_shm *gh_addr_shm_new(size_t nslots);
void gh_addr_shm_free(gh_addr_shm *s);

/*
 * Publishes a's address for the server of ref (the prober only); nothing if
 * the slot is another server's now. a->len == 0 publishes "no address": the
 * name no longer resolves to as many addresses as it has slots.
 */
void gh_addr_shm_set(gh_addr_shm *s, gh_health_ref ref, const gh_addr *a);

/* Copies the address published for the server of ref into out (len 0: "no address"): 1, or 0 when none was. */
int gh_addr_shm_get(const gh_addr_shm *s, gh_health_ref ref, gh_addr *out);

/*
 * A number that changes whenever the slot is published or claimed: a reader
 * that keeps a copy checks it (one relaxed load) and reads again only on a change.
 */
uint64_t gh_addr_shm_version(const gh_addr_shm *s, gh_health_ref ref);

/*
 * The address the slot has now, the one that workers connect to and the
 * prober probes: the published one, else `loaded` (from the file's load;
 * NULL: none). Returns 1 with it in out, 0 when the slot has no address.
 */
int gh_addr_shm_current(const gh_addr_shm *s, gh_health_ref ref, const gh_addr *loaded, gh_addr *out);

/*
 * Fits the addresses a name resolves to now, found[0..nfound), into its
 * nslots slots, cur[0..nslots) (len 0: no address), writing next[0..nslots):
 * an address still found keeps its slot (its health, its pooled connections),
 * one no longer found leaves its slot empty, a new one takes the first empty
 * slot. Duplicates in found count once. Returns how many found addresses
 * had no free slot (left out). Pure: no shared memory.
 */
size_t gh_addr_assign(const gh_addr *cur, gh_addr *next, size_t nslots, const gh_addr *found, size_t nfound);

/*
 * The master, at a load: forgets what was published for the slot (the file
 * was just resolved) and takes ref's epoch (gh_health_claim), so that what a
 * previous occupant's prober writes afterwards is refused.
 */
void gh_addr_shm_claim(gh_addr_shm *s, gh_health_ref ref);

#endif
