/*
 * lb: what the algorithms of src/balance share, private to this folder. The
 * rest of the program sees gh_lb as an opaque type through balance.h.
 */
#ifndef GH_BALANCE_LB_H
#define GH_BALANCE_LB_H

#include <stddef.h>
#include <stdint.h>

#include "balance/balance.h"

/* An algorithm. `candidates` is never 0 and is all primaries or all backups. */
typedef struct balance__ops {
    const char *name;
    int (*init)(gh_lb *lb, const gh_lb_server *s, size_t n); /* optional: 0 or -ENOMEM */
    int (*pick)(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key);
    void (*dispose)(gh_lb *lb); /* optional: frees what init allocated */
} balance__ops;

struct gh_lb {
    const balance__ops *ops;
    int algorithm;
    uint32_t n;
    uint64_t primaries, backups;               /* one bit per server */
    uint32_t primaries_weight, backups_weight; /* sums of the weights */
    uint64_t rng;                              /* PRNG state (splitmix64) */
    int64_t current[GH_LB_MAX_SERVERS];        /* smooth WRR scores: round_robin, least_conn ties */
    void *priv;                                /* the algorithm's own tables (hash ring) */
};

extern const balance__ops balance__rr, balance__least_conn, balance__p2c, balance__hash, balance__random;

/* Smooth WRR among `mask` (not 0), using lb->current. */
int balance__swrr(gh_lb *lb, const gh_lb_server *s, uint64_t mask);

/* Sum of the weights of `mask` (from the cache when it is all primaries or all backups). */
uint32_t balance__weight(const gh_lb *lb, const gh_lb_server *s, uint64_t mask);

/* A server of `mask` (not 0, total weight `weight`) at random, with probability weight / `weight`. */
int balance__weighted_random(gh_lb *lb, const gh_lb_server *s, uint64_t mask, uint32_t weight);

/* The next 64 random bits of lb's PRNG. */
uint64_t balance__rand(gh_lb *lb);

/* A bijective 64-bit mixer (splitmix64's finaliser): spreads structured input over all bits. */
static inline uint64_t balance__mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

#endif
