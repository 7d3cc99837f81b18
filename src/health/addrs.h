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

#include "health/state.h"
#include "net/addr.h"

typedef struct gh_addr_shm gh_addr_shm;

/* Maps nslots empty slots, MAP_SHARED before any fork. NULL on failure. */
gh_addr_shm *gh_addr_shm_new(size_t nslots);
void gh_addr_shm_free(gh_addr_shm *s);

/* Publishes a's address for the server of ref (the prober only); nothing if the slot is another server's now. */
void gh_addr_shm_set(gh_addr_shm *s, gh_health_ref ref, const gh_addr *a);

/* Copies the address published for the server of ref into out: 1, or 0 when none was (for this occupant). */
int gh_addr_shm_get(const gh_addr_shm *s, gh_health_ref ref, gh_addr *out);

/*
 * The master, at a load: forgets what was published for the slot (the file
 * was just resolved) and takes ref's epoch (gh_health_claim), so that what a
 * previous occupant's prober writes afterwards is refused.
 */
void gh_addr_shm_claim(gh_addr_shm *s, gh_health_ref ref);

#endif
