/*
 * random: each pick independent, with probability weight / total weight of the
 * usable servers. Stateless apart from the per-worker PRNG, so workers need no
 * coordination and a recovering server gets its share at once.
 */
#include "proxy/balance.h"

static int random_pick(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key)
{
    return proxy__lb_weighted_random(lb, s, candidates, proxy__lb_weight(lb, s, candidates));
}

const proxy__lb_ops proxy__lb_random = {
    .name = "random",
    .pick = random_pick,
};
