/*
 * health/addrs: the current address of every server given by name, shared by
 * all processes. The prober process re-resolves the names periodically (it
 * may block in getaddrinfo: no client waits on it) and publishes what it found
 * here; workers read it when they open a connection, never blocking.
 *
 * One writer (the prober) and many readers, without locks: a sequence counter
 * per slot (odd while a write is under way) lets a reader retry a torn read.
 * Slots are the health slots (one per server of every pool, in config order).
 */
#ifndef GH_HEALTH_ADDRS_H
#define GH_HEALTH_ADDRS_H

#include <stddef.h>

#include "net/addr.h"

typedef struct gh_addr_shm gh_addr_shm;

/* Maps nslots empty slots, MAP_SHARED before any fork. NULL on failure. */
gh_addr_shm *gh_addr_shm_new(size_t nslots);
void gh_addr_shm_free(gh_addr_shm *s);

/* Publishes a's address for slot (the prober only). */
void gh_addr_shm_set(gh_addr_shm *s, size_t slot, const gh_addr *a);

/* Copies slot's address into out: 1, or 0 when nothing was published for it. */
int gh_addr_shm_get(const gh_addr_shm *s, size_t slot, gh_addr *out);

/* Forgets every slot (a reload may give the slots to other servers). */
void gh_addr_shm_clear(gh_addr_shm *s);

#endif
