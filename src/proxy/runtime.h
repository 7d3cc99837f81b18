/*
 * runtime: what the workers run from one configuration generation: the config
 * itself, a TLS context per site with certificates, and per listener its
 * default context (certificates chosen by SNI) and its router.
 *
 * Built by the master before it forks, so certificate errors stop the start
 * (or, later, a reload) with FILE:LINE: reason, and the workers inherit it.
 */
#ifndef GH_PROXY_RUNTIME_H
#define GH_PROXY_RUNTIME_H

#include <stddef.h>

#include "conf/config.h"
#include "health/addrs.h"
#include "health/state.h"
#include "proxy/peerlimit.h"
#include "proxy/ratelimit.h"

typedef struct gh_runtime gh_runtime;

#define GH_MAX_LISTENERS 64 /* listening sockets one reload message can carry */

/* The memory every process shares, made once by the master and kept across reloads. */
typedef struct gh_shared {
    gh_health_shm *health; /* health verdicts, one slot per server */
    gh_addr_shm *addrs;    /* re-resolved addresses of servers given by name, same slots */
    gh_rate_shm *rates;    /* rate_limit buckets of every worker (proxy/ratelimit.h) */
    gh_peer_shm *peers;    /* connections per client address of every worker (proxy/peerlimit.h) */
} gh_shared;

/* Maps both regions, and the TLS session ticket keys (gh_tls_tickets_init), before any fork; 0 or -1. */
int gh_shared_init(gh_shared *s);
void gh_shared_dispose(gh_shared *s);

/*
 * Takes ownership of cfg (freed with the runtime, or on failure); the
 * certificates and keys are read through src. `health` is
 * the shared health state, made once by the master and kept across reloads;
 * the runtime gives each server a slot in it, in config order (the same file
 * gives the same slots in every process). NULL with "FILE:LINE: reason" in err.
 */
gh_runtime *gh_runtime_new(gh_config *cfg, const gh_conf_source *src, const gh_shared *shared, char *err,
                           size_t errlen);
void gh_runtime_free(gh_runtime *rt);

/*
 * Reads the file at path, resolves its server names and builds the runtime,
 * every input read through src: the master at start (the filesystem) and at
 * a reload (recording a bundle), each worker at a reload (from that bundle:
 * no file, no DNS). workers > 0 replaces the file's `workers`. prev (or
 * NULL): the running runtime, whose site TLS contexts are shared where the
 * certificate and key bytes did not change (no parsing, no key check again).
 * NULL with "FILE:LINE: reason" in err.
 */
gh_runtime *gh_runtime_load(const char *path, const gh_conf_source *src, const gh_shared *shared, int workers,
                            gh_runtime *prev, char *err, size_t errlen);
const gh_config *gh_runtime_config(const gh_runtime *rt);

/*
 * The master, once a runtime is the one to run (at start, and at a reload
 * once it proved valid, before the workers hear of it): gives every server its
 * health slot (gh_health_claim). A slot whose server changed starts clean and
 * refuses every later write of its previous occupant's writers (the old
 * prober, old generations in the workers).
 */
void gh_runtime_claim_slots(gh_runtime *rt);

/* Runs the active health checks of every pool until SIGTERM (in a child of the master); returns its exit status. */
int gh_runtime_probe(gh_runtime *rt);
/* 1 when some pool has active health checks (a prober process is needed). */
int gh_runtime_has_probes(const gh_runtime *rt);

#endif
