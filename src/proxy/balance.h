/*
 * balance: choosing a server of a pool. Pure logic, no I/O.
 *
 * Smooth weighted round-robin (the algorithm nginx uses): every pick adds each
 * eligible server's weight to its running score, takes the highest score and
 * subtracts the total weight from it. Over any window of W picks (W = sum of
 * weights) each server gets exactly its weight, and picks of one server are
 * spread out instead of coming in bursts.
 */
#ifndef GH_PROXY_BALANCE_H
#define GH_PROXY_BALANCE_H

#include <stddef.h>
#include <stdint.h>

typedef struct gh_rr_server {
    int weight;  /* >= 1 */
    int current; /* running score, starts at 0 */
} gh_rr_server;

/*
 * Picks among servers[0..n) (n <= 64) those whose bit is not set in `exclude`.
 * Returns the index, or -1 when every server is excluded.
 */
int gh_rr_pick(gh_rr_server *servers, size_t n, uint64_t exclude);

#endif
