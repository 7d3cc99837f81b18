/* Smooth weighted round-robin: exact shares per window, spread, exclusions. */
#include <string.h>

#include "proxy/balance.h"
#include "unit.h"

static void equal_weights_rotate(void)
{
    gh_rr_server s[3] = {{1, 0}, {1, 0}, {1, 0}};
    int counts[3] = {0};

    unit_case("equal weights rotate");
    for (int i = 0; i < 300; i++) {
        int k = gh_rr_pick(s, 3, 0);
        CHECK(k >= 0 && k < 3);
        if (k >= 0 && k < 3)
            counts[k]++;
    }
    CHECK_INT(counts[0], 100);
    CHECK_INT(counts[1], 100);
    CHECK_INT(counts[2], 100);
}

/* Over every window of sum(weights) picks each server gets exactly its weight. */
static void weights_exact_per_window(void)
{
    gh_rr_server s[3] = {{5, 0}, {1, 0}, {1, 0}};
    unit_case("weights 5:1:1 exact per window of 7");
    for (int window = 0; window < 20; window++) {
        int counts[3] = {0};
        for (int i = 0; i < 7; i++)
            counts[gh_rr_pick(s, 3, 0)]++;
        CHECK_INT(counts[0], 5);
        CHECK_INT(counts[1], 1);
        CHECK_INT(counts[2], 1);
    }
}

/* The smooth variant spreads the heavy server (plain weighted RR sends it 5 in a row: a a a a a b c). */
static void weights_are_spread(void)
{
    gh_rr_server s[3] = {{5, 0}, {1, 0}, {1, 0}};
    int run = 0, longest = 0;
    unit_case("weights 5:1:1 interleaved");
    for (int i = 0; i < 70; i++) {
        if (gh_rr_pick(s, 3, 0) == 0)
            run++;
        else
            run = 0;
        if (run > longest)
            longest = run;
    }
    CHECK(longest <= 4); /* a a b a c a a | a a ...: never the 5 of plain weighted RR */
}

static void exclusion(void)
{
    gh_rr_server s[3] = {{1, 0}, {1, 0}, {1, 0}};
    unit_case("excluded servers are never picked");
    for (int i = 0; i < 50; i++)
        CHECK_INT(gh_rr_pick(s, 3, 1u << 1), i % 2 == 0 ? 0 : 2);
    CHECK_INT(gh_rr_pick(s, 3, 7), -1);
    CHECK_INT(gh_rr_pick(s, 0, 0), -1);
}

void suite_balance(void)
{
    equal_weights_rotate();
    weights_exact_per_window();
    weights_are_spread();
    exclusion();
    unit_case(NULL);
}
