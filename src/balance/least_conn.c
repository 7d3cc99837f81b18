/*
 * least_conn: the server with the fewest requests in flight per unit of
 * weight (this worker's count: workers do not share it, as in nginx).
 *
 * Ties are broken by smooth weighted round-robin among the tied servers, as
 * nginx does, rather than by taking the first: at low load, when every server
 * has 0 in flight at each pick, traffic still rotates and still follows the
 * weights instead of all landing on server 0.
 */
#include "balance/lb.h"

/* a/wa < b/wb, in integers: inflight < 2^32 and weight < 2^14, so no overflow. */
static inline int less_loaded(const gh_lb_server *a, const gh_lb_server *b)
{
    return (uint64_t)a->inflight * b->weight < (uint64_t)b->inflight * a->weight;
}

static int leastconn_pick(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key)
{
    int best = __builtin_ctzll(candidates);
    uint64_t ties = (uint64_t)1 << best;

    for (uint64_t m = candidates & (candidates - 1); m != 0; m &= m - 1) {
        int i = __builtin_ctzll(m);
        if (less_loaded(&s[i], &s[best])) {
            best = i;
            ties = (uint64_t)1 << i;
        } else if (!less_loaded(&s[best], &s[i])) {
            ties |= (uint64_t)1 << i;
        }
    }
    return ties == ((uint64_t)1 << best) ? best : balance__swrr(lb, s, ties);
}

const balance__ops balance__least_conn = {
    .name = "least_conn",
    .pick = leastconn_pick,
};
