/*
 * p2c: the power of two choices (Mitzenmacher). Draw two distinct servers at
 * random and send the request to the one with fewer requests in flight per
 * unit of weight. Nearly as good as least_conn at spreading load, but no
 * herd: workers that each see a stale picture do not all pile onto the one
 * server that looked idlest.
 *
 * Both draws are weighted, and a tie goes to the first: an idle pool then gets
 * exactly the weighted-random distribution, and load only shifts traffic away
 * from busy servers.
 */
#include "balance/lb.h"

static int p2c_pick(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key)
{
    uint32_t weight = balance__weight(lb, s, candidates);
    int a = balance__weighted_random(lb, s, candidates, weight);
    /* The second draw among the others (there are at least 2 candidates). */
    int b = balance__weighted_random(lb, s, candidates & ~((uint64_t)1 << a), weight - s[a].weight);
    /* inflight/weight compared without division: inflight < 2^32, weight < 2^14. */
    uint64_t load_a = (uint64_t)s[a].inflight * s[b].weight, load_b = (uint64_t)s[b].inflight * s[a].weight;

    return load_b < load_a ? b : a;
}

const balance__ops balance__p2c = {
    .name = "p2c",
    .pick = p2c_pick,
};
