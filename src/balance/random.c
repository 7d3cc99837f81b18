/*
 * random: each pick independent, with probability weight / total weight of the
 * usable servers. Stateless apart from the per-worker PRNG, so workers need no
 * coordination and a recovering server gets its share at once.
 */
#include "balance/lb.h"

static int random_pick(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key)
{
    return balance__weighted_random(lb, s, candidates, balance__weight(lb, s, candidates));
}

const balance__ops balance__random = {
    .name = "random",
    .pick = random_pick,
};
