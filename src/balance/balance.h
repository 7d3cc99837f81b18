/*
 * balance: choosing a server of a pool. Pure logic: no I/O, no clock, no
 * allocation when picking.
 *
 * One algorithm per file behind a small vtable (HAProxy's lb_*.c):
 *   balance.c     dispatcher: backups, the unusable mask, the hash, the PRNG
 *   rr.c          round_robin: smooth weighted round-robin (nginx's)
 *   least_conn.c  least_conn: fewest in flight per weight, ties by smooth WRR
 *   p2c.c         p2c: two distinct weighted-random choices, the less loaded wins
 *   hash.c        hash: consistent hashing on a ring of virtual nodes
 *   random.c      random: weighted random
 *   lb.h          what the algorithms share (the vtable, struct gh_lb): private to this folder
 *
 * The caller describes the pool once (gh_lb_new) and then, for every pick,
 * passes the same array, in which only `inflight` may have changed, plus a
 * mask of the servers it must not use for this request: down, ejected, or
 * already tried. Backup servers are considered only when every primary is in
 * that mask.
 */
#ifndef GH_BALANCE_BALANCE_H
#define GH_BALANCE_BALANCE_H

#include <stddef.h>
#include <stdint.h>

/*
 * The one bound on the servers of a pool, for the config file, the quick-start
 * --to list and every per-request mask: each server is one bit of a uint64_t
 * (gh_lb_pick's `unusable`, the exchange's `tried`). A module that keeps such a
 * mask of its own asserts statically that GH_LB_MAX_SERVERS bits fit in it.
 */
#define GH_LB_MAX_SERVERS 64
#define GH_LB_MAX_WEIGHT  10000 /* server weight=N: 1..this (sums stay far from overflowing 32 bits) */

_Static_assert(GH_LB_MAX_SERVERS <= 64, "a pool's servers are the bits of a uint64_t mask");

enum gh_lb_algorithm { GH_LB_ROUND_ROBIN, GH_LB_LEAST_CONN, GH_LB_P2C, GH_LB_HASH, GH_LB_RANDOM, GH_LB_NALGORITHMS };

/*
 * One pool member as one worker sees it. The caller owns the array (config
 * memory, or a per-worker copy) and keeps `inflight` up to date.
 */
typedef struct gh_lb_server {
    uint32_t weight;   /* 1..GH_LB_MAX_WEIGHT */
    uint32_t inflight; /* requests in flight to it from this worker */
    uint64_t id;       /* stable identity, gh_lb_hash("host:port"): places it on the hash ring */
    uint8_t backup;    /* used only when no primary is usable */
} gh_lb_server;

/*
 * The algorithm's state for one pool in one worker: rotation scores, PRNG,
 * hash ring. Created with the config generation that defines the pool, freed
 * with it. Picking mutates it: one per worker (workers are processes).
 */
typedef struct gh_lb gh_lb;

/*
 * Builds the state for servers[0..n) (n <= GH_LB_MAX_SERVERS; 0 is allowed and
 * every pick then fails). `seed` seeds the PRNG of p2c and random: give each
 * worker a different one. Returns NULL on an unknown algorithm, a weight out of
 * 1..GH_LB_MAX_WEIGHT, too many servers, or out of memory.
 */
gh_lb *gh_lb_new(int algorithm, const gh_lb_server *servers, size_t n, uint64_t seed);

/* gh_lb_free(NULL) is a no-op. */
void gh_lb_free(gh_lb *lb);

/*
 * Picks one of servers[0..n) (the array given to gh_lb_new; only `inflight` may
 * have changed since) whose bit is clear in `unusable`. Primaries first;
 * backups only when every primary is unusable. `key` is the request's hash
 * (client IP, header or cookie, through gh_lb_hash) for GH_LB_HASH, and
 * ignored by the others. Returns the index, or -1 when nothing is usable (or n
 * differs from gh_lb_new's). Never allocates.
 */
int gh_lb_pick(gh_lb *lb, const gh_lb_server *servers, size_t n, uint64_t unusable, uint64_t key);

/* The enum gh_lb_algorithm that lb was built with. */
int gh_lb_algorithm_of(const gh_lb *lb);

/* "round_robin", "least_conn", "p2c", "hash", "random"; NULL when out of range. */
const char *gh_lb_algorithm_name(int algorithm);

/* The algorithm named name[0..len) (config syntax above), or -1. */
int gh_lb_algorithm_parse(const char *name, size_t len);

/*
 * XXH64 (seed 0) of p[0..n): fast, well mixed, and the same on every host and
 * in every worker, so a client maps to the same server whichever worker or
 * gatehouse instance it reaches. Not for keys an attacker must not predict.
 */
uint64_t gh_lb_hash(const void *p, size_t n);

#endif
