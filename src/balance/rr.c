/*
 * round_robin: smooth weighted round-robin, the algorithm nginx uses. Every
 * pick adds each candidate's weight to its running score, takes the highest
 * score and subtracts the candidates' total weight from it. Over any window of
 * W picks (W = sum of the weights) each server gets exactly its weight, and the
 * picks of a heavy server are spread out instead of coming in a burst
 * (5:1:1 gives a a b a c a a, not a a a a a b c).
 *
 * A server left out of a pick (unusable) keeps its score: it neither gains
 * credit while it is down nor loses its place.
 */
#include "balance/lb.h"

int balance__swrr(gh_lb *lb, const gh_lb_server *s, uint64_t mask)
{
    int best = -1;
    int64_t total = 0, best_score = INT64_MIN;

    for (uint64_t m = mask; m != 0; m &= m - 1) {
        int i = __builtin_ctzll(m);
        int64_t score = lb->current[i] += s[i].weight;
        total += s[i].weight;
        if (score > best_score) { /* strict: the lowest index wins a tie, as in nginx */
            best_score = score;
            best = i;
        }
    }
    lb->current[best] -= total;
    return best;
}

static int rr_pick(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key)
{
    return balance__swrr(lb, s, candidates);
}

const balance__ops balance__rr = {
    .name = "round_robin",
    .pick = rr_pick,
};
