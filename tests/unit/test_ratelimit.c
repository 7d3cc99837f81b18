/* ratelimit: the shared token buckets (GCRA): bursts, refill, Retry-After, keys and eviction. */
#include "proxy/ratelimit.h"
#include "unit.h"

void suite_ratelimit(void)
{
    gh_rate_shm *shm = gh_rate_shm_new(4);
    uint64_t k1 = gh_rate_key(1, "10.0.0.1", 8), k2 = gh_rate_key(1, "10.0.0.2", 8);
    uint64_t t = 1000000000; /* µs */
    int allowed = 0;

    CHECK(shm != NULL);
    if (shm == NULL)
        return;
    unit_case("a full bucket lets a burst through, then one per interval");
    for (int i = 0; i < 10; i++)
        allowed += gh_rate_take(shm, k1, t, 100000, 5) == 0; /* 10 r/s, burst 5 */
    CHECK_INT(allowed, 5);
    CHECK_INT(gh_rate_take(shm, k1, t + 99000, 100000, 5), 1); /* not yet a token: retry after 1 s at most */
    CHECK_INT(gh_rate_take(shm, k1, t + 100000, 100000, 5), 0);
    CHECK(gh_rate_take(shm, k1, t + 100000, 100000, 5) != 0);

    unit_case("Retry-After is the wait for the next token, rounded up to seconds");
    CHECK_INT(gh_rate_take(shm, k2, t, 60000000, 1), 0);            /* 1 r/m */
    CHECK_INT(gh_rate_take(shm, k2, t + 1000000, 60000000, 1), 59); /* 59 s left */
    CHECK_INT(gh_rate_take(shm, k2, t + 60000000, 60000000, 1), 0);

    unit_case("keys: other limits and other values have other buckets");
    CHECK(gh_rate_key(1, "a", 1) != gh_rate_key(2, "a", 1));
    CHECK(gh_rate_key(1, "a", 1) != gh_rate_key(1, "b", 1));
    CHECK(gh_rate_key(7, "", 0) != 0);

    unit_case("idle buckets refill: after burst intervals, the whole burst again");
    allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += gh_rate_take(shm, k1, t + 10000000, 100000, 5) == 0;
    CHECK_INT(allowed, 5);

    unit_case("eviction: many keys in a small table never let one key past its burst plus one per eviction");
    {
        /* 4 sets x 4 entries = 16 buckets; 64 keys hammered in turn at one instant. Each key
         * gets its burst; a key evicted and seen again starts over, so the bound is per eviction. */
        gh_rate_shm *small = gh_rate_shm_new(1);
        int got = 0;

        for (int round = 0; round < 3; round++)
            for (int k = 0; k < 8; k++) {
                char name[8] = {'k', (char)('0' + k)};
                got += gh_rate_take(small, gh_rate_key(3, name, 2), t, 1000000, 2) == 0;
            }
        /* 8 keys in 4 ways: rounds 2 and 3 meet evicted keys (at most one full burst each time) */
        CHECK(got >= 16 && got <= 8 * 2 * 3);
        gh_rate_shm_free(small);
        /* the victim is the bucket closest to full (the smallest TAT): in one set of 4 ways, z0..z3 each
         * empty their bucket of 1, z0 first; z4 then takes z0's entry, so z0 starts over (allowed once more)
         * while z1, never evicted, is still refused */
        small = gh_rate_shm_new(1);
        for (int k = 0; k < 5; k++) {
            char name[8] = {'z', (char)('0' + k)};
            CHECK_INT(gh_rate_take(small, gh_rate_key(4, name, 2), t + (uint64_t)k, 1000000, 1), 0);
        }
        CHECK(gh_rate_take(small, gh_rate_key(4, "z1", 2), t + 10, 1000000, 1) != 0);
        CHECK_INT(gh_rate_take(small, gh_rate_key(4, "z0", 2), t + 10, 1000000, 1), 0);
        gh_rate_shm_free(small);
    }
    CHECK(gh_rate_shm_new(3) == NULL); /* not a power of two */
    gh_rate_shm_free(shm);
    unit_case(NULL);
}
