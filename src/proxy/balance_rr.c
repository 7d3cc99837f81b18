#include "proxy/balance.h"

int gh_rr_pick(gh_rr_server *s, size_t n, uint64_t exclude)
{
    int best = -1, total = 0;

    for (size_t i = 0; i < n; i++) {
        if (exclude & ((uint64_t)1 << i))
            continue;
        s[i].current += s[i].weight;
        total += s[i].weight;
        if (best < 0 || s[i].current > s[best].current)
            best = (int)i;
    }
    if (best >= 0)
        s[best].current -= total;
    return best;
}
