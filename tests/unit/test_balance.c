/*
 * Balancers: each algorithm's distribution against the weights, least_conn and
 * p2c against load, consistent hashing's minimal remapping, backups, the
 * unusable mask, and a micro-benchmark (printed, never asserted).
 *
 * Tolerances are fixed up front and explained where they are used. Every run is
 * deterministic (fixed PRNG seeds and keys), so a tolerance that passes once
 * passes always; the margins are still chosen so that another seed would pass.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "balance/balance.h"
#include "unit.h"

#define BIT(i) ((uint64_t)1 << (i))

static const int algorithms[] = {GH_LB_ROUND_ROBIN, GH_LB_LEAST_CONN, GH_LB_P2C, GH_LB_HASH, GH_LB_RANDOM};
#define NALGS (sizeof(algorithms) / sizeof(algorithms[0]))

/* Server i is "10.0.<i / 256>.<i % 256>:8080", weight weights[i] (1 when weights is NULL). */
static void make_servers(gh_lb_server *s, size_t n, const uint32_t *weights)
{
    for (size_t i = 0; i < n; i++) {
        char name[32];
        int len = snprintf(name, sizeof(name), "10.0.%zu.%zu:8080", i / 256, i % 256);
        s[i] = (gh_lb_server){.weight = weights ? weights[i] : 1, .id = gh_lb_hash(name, (size_t)len)};
    }
}

/* The key of client number k: the hash of its IPv4 address, as the proxy computes it. */
static uint64_t client_key(uint32_t k)
{
    uint8_t ip[4] = {(uint8_t)(k >> 24), (uint8_t)(k >> 16), (uint8_t)(k >> 8), (uint8_t)k};
    return gh_lb_hash(ip, sizeof(ip));
}

/*
 * Each count's share of `total` is within `tol` (absolute, 0.01 = one percentage
 * point) of weight / sum of weights.
 */
static void check_shares(const char *what, const long *counts, const gh_lb_server *s, size_t n, long total, double tol)
{
    double wsum = 0;
    for (size_t i = 0; i < n; i++)
        wsum += s[i].weight;
    for (size_t i = 0; i < n; i++) {
        double got = (double)counts[i] / (double)total, want = s[i].weight / wsum;
        unit_check(got > want - tol && got < want + tol, __FILE__, __LINE__,
                   "%s: server %zu got %.4f of the picks, want %.4f +- %.3f", what, i, got, want, tol);
    }
}

/* ---- The hash, names and construction. ---- */

/* Published XXH64 vectors (seed 0): short tail, 8-byte words, one and more 32-byte stripes. */
static void hash_vectors(void)
{
    static const struct {
        const char *in;
        uint64_t want;
    } v[] = {
        {"", 0xef46db3751d8e999u},
        {"a", 0xd24ec4f1a98c6e5bu},
        {"abc", 0x44bc2cf5ad770999u},
        {"1234", 0xd8316e61d84f6ba4u},
        {"12345678", 0xd2d02f08cf7cfd4au},
        {"123456789012345", 0xc377d78ade001a3cu},
        {"1234567890123456789012345678901", 0x8f367cb873a5376eu},
        {"12345678901234567890123456789012", 0x40fd1aa52d98274cu},
        {"The quick brown fox jumps over the lazy dog", 0x0b242d361fda71bcu},
    };
    unit_case("gh_lb_hash is XXH64");
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint64_t got = gh_lb_hash(v[i].in, strlen(v[i].in));
        unit_check(got == v[i].want, __FILE__, __LINE__, "hash(\"%s\") is %016llx, want %016llx", v[i].in,
                   (unsigned long long)got, (unsigned long long)v[i].want);
    }
}

static void names_and_new(void)
{
    gh_lb_server s[GH_LB_MAX_SERVERS + 1];
    make_servers(s, GH_LB_MAX_SERVERS + 1, NULL);

    unit_case("algorithm names round-trip");
    for (int a = 0; a < GH_LB_NALGORITHMS; a++) {
        const char *name = gh_lb_algorithm_name(a);
        CHECK(name != NULL);
        if (name != NULL)
            CHECK_INT(gh_lb_algorithm_parse(name, strlen(name)), a);
    }
    CHECK_INT(gh_lb_algorithm_parse("least_conn", 10), GH_LB_LEAST_CONN);
    CHECK_INT(gh_lb_algorithm_parse("least", 5), -1);
    CHECK_INT(gh_lb_algorithm_parse("roundrobin", 10), -1);
    CHECK(gh_lb_algorithm_name(GH_LB_NALGORITHMS) == NULL);
    CHECK(gh_lb_algorithm_name(-1) == NULL);

    unit_case("gh_lb_new rejects what it cannot balance");
    CHECK(gh_lb_new(-1, s, 2, 0) == NULL);
    CHECK(gh_lb_new(GH_LB_NALGORITHMS, s, 2, 0) == NULL);
    CHECK(gh_lb_new(GH_LB_HASH, s, GH_LB_MAX_SERVERS + 1, 0) == NULL);
    s[1].weight = 0;
    CHECK(gh_lb_new(GH_LB_RANDOM, s, 2, 0) == NULL);
    s[1].weight = GH_LB_MAX_WEIGHT + 1;
    CHECK(gh_lb_new(GH_LB_RANDOM, s, 2, 0) == NULL);
    s[1].weight = GH_LB_MAX_WEIGHT;
    for (size_t a = 0; a < NALGS; a++) {
        gh_lb *lb = gh_lb_new(algorithms[a], s, 2, 0);
        CHECK(lb != NULL);
        if (lb != NULL)
            CHECK_INT(gh_lb_algorithm_of(lb), algorithms[a]);
        gh_lb_free(lb);
    }
    gh_lb_free(NULL);
}

/* ---- Properties every algorithm has. ---- */

/* Random masks over 6 servers: never an unusable one, -1 exactly when none is usable. */
static void unusable_respected(void)
{
    gh_lb_server s[6];
    const uint32_t w[6] = {1, 2, 3, 1, 5, 1};
    make_servers(s, 6, w);
    for (size_t a = 0; a < NALGS; a++) {
        gh_lb *lb = gh_lb_new(algorithms[a], s, 6, 7);
        unit_case("%s: unusable servers are never picked", gh_lb_algorithm_name(algorithms[a]));
        uint64_t x = 12345;
        int bad = 0;
        for (uint32_t i = 0; i < 20000; i++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            uint64_t mask = (x >> 40) & 0x3f;
            s[i % 6].inflight = (uint32_t)(x >> 20) % 8;
            int k = gh_lb_pick(lb, s, 6, mask, client_key(i));
            if (mask == 0x3f ? k != -1 : (k < 0 || k >= 6 || (mask & BIT(k))))
                bad++;
        }
        CHECK_INT(bad, 0);
        CHECK_INT(gh_lb_pick(lb, s, 6, ~(uint64_t)0, 1), -1);
        CHECK_INT(gh_lb_pick(lb, s, 5, 0, 1), -1); /* not the array it was built for */
        gh_lb_free(lb);

        lb = gh_lb_new(algorithms[a], s, 0, 7);
        unit_case("%s: an empty pool", gh_lb_algorithm_name(algorithms[a]));
        CHECK(lb != NULL);
        if (lb != NULL)
            CHECK_INT(gh_lb_pick(lb, s, 0, 0, 1), -1);
        gh_lb_free(lb);
    }
}

/* Servers 0, 1 primary, 2, 3 backup: backups only once both primaries are unusable, then both used. */
static void backups_only_when_primaries_unusable(void)
{
    gh_lb_server s[4];
    make_servers(s, 4, NULL);
    s[2].backup = s[3].backup = 1;
    for (size_t a = 0; a < NALGS; a++) {
        int alg = algorithms[a];
        gh_lb *lb = gh_lb_new(alg, s, 4, 3);
        long counts[4] = {0};
        unit_case("%s: backups only when every primary is unusable", gh_lb_algorithm_name(alg));
        for (uint32_t i = 0; i < 1000; i++) {
            int k = gh_lb_pick(lb, s, 4, 0, client_key(i));
            counts[k >= 0 && k < 4 ? k : 0]++;
            k = gh_lb_pick(lb, s, 4, BIT(0), client_key(i));
            CHECK(k == 1);
        }
        CHECK(counts[0] > 0 && counts[1] > 0);
        CHECK_INT(counts[2] + counts[3], 0);

        memset(counts, 0, sizeof(counts));
        for (uint32_t i = 0; i < 1000; i++) {
            int k = gh_lb_pick(lb, s, 4, BIT(0) | BIT(1), client_key(i));
            counts[k >= 0 && k < 4 ? k : 0]++;
        }
        CHECK_INT(counts[0] + counts[1], 0);
        CHECK(counts[2] > 0 && counts[3] > 0); /* the backups are balanced among themselves too */
        CHECK_INT(gh_lb_pick(lb, s, 4, BIT(0) | BIT(1) | BIT(2), 9), 3);
        CHECK_INT(gh_lb_pick(lb, s, 4, 0xf, 9), -1);
        gh_lb_free(lb);
    }
}

/* A full pool of 64: index 63 works in every mask (no 32-bit shift anywhere). */
static void sixty_four_servers(void)
{
    gh_lb_server s[GH_LB_MAX_SERVERS];
    make_servers(s, GH_LB_MAX_SERVERS, NULL);
    for (size_t a = 0; a < NALGS; a++) {
        gh_lb *lb = gh_lb_new(algorithms[a], s, GH_LB_MAX_SERVERS, 1);
        unit_case("%s: 64 servers", gh_lb_algorithm_name(algorithms[a]));
        CHECK_INT(gh_lb_pick(lb, s, GH_LB_MAX_SERVERS, ~BIT(63), 5), 63);
        CHECK_INT(gh_lb_pick(lb, s, GH_LB_MAX_SERVERS, ~BIT(40), 5), 40);
        int seen63 = 0;
        for (uint32_t i = 0; i < 6400; i++)
            seen63 += gh_lb_pick(lb, s, GH_LB_MAX_SERVERS, 0, client_key(i)) == 63;
        CHECK(seen63 > 0);
        gh_lb_free(lb);
    }
}

/* ---- round_robin ---- */

/* Over every window of sum(weights) picks each server gets exactly its weight. */
static void rr_exact_per_window(void)
{
    gh_lb_server s[3];
    const uint32_t w[3] = {5, 1, 1};
    make_servers(s, 3, w);
    gh_lb *lb = gh_lb_new(GH_LB_ROUND_ROBIN, s, 3, 0);
    int run = 0, longest = 0;

    unit_case("round_robin: 5:1:1 exact in every window of 7, and interleaved");
    for (int window = 0; window < 20; window++) {
        long counts[3] = {0};
        for (int i = 0; i < 7; i++) {
            int k = gh_lb_pick(lb, s, 3, 0, 0);
            counts[k]++;
            run = k == 0 ? run + 1 : 0;
            longest = run > longest ? run : longest;
        }
        CHECK_INT(counts[0], 5);
        CHECK_INT(counts[1], 1);
        CHECK_INT(counts[2], 1);
    }
    CHECK(longest <= 4); /* a a b a c a a | a a ...: never the 5 in a row of plain weighted RR */

    unit_case("round_robin: an unusable server is skipped, the rest keep their ratio");
    long counts[3] = {0};
    for (int i = 0; i < 600; i++)
        counts[gh_lb_pick(lb, s, 3, BIT(1), 0)]++;
    CHECK_INT(counts[0], 500);
    CHECK_INT(counts[1], 0);
    CHECK_INT(counts[2], 100);
    gh_lb_free(lb);
}

/* 100k picks with weights 1..10: exact, since 100k is a multiple of the window (55 * 1818 = 99990). */
static void rr_distribution(void)
{
    gh_lb_server s[10];
    const uint32_t w[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    make_servers(s, 10, w);
    gh_lb *lb = gh_lb_new(GH_LB_ROUND_ROBIN, s, 10, 0);
    long counts[10] = {0};

    unit_case("round_robin: weights 1..10 over 99990 picks, exact");
    for (int i = 0; i < 99990; i++)
        counts[gh_lb_pick(lb, s, 10, 0, 0)]++;
    for (int i = 0; i < 10; i++)
        CHECK_INT(counts[i], 1818 * w[i]);
    gh_lb_free(lb);
}

/* ---- random ---- */

/*
 * 100k independent picks, weights 1..4 (shares 0.1..0.4): the standard deviation
 * of a share is at most sqrt(0.25 / 100000) = 0.0016, so +-0.01 is over 6 sigma.
 */
static void random_distribution(void)
{
    gh_lb_server s[4];
    const uint32_t w[4] = {1, 2, 3, 4};
    make_servers(s, 4, w);
    gh_lb *lb = gh_lb_new(GH_LB_RANDOM, s, 4, 42);
    long counts[4] = {0};

    unit_case("random: weights 1:2:3:4 over 100k picks, each share +-0.01");
    for (int i = 0; i < 100000; i++)
        counts[gh_lb_pick(lb, s, 4, 0, 0)]++;
    check_shares("random", counts, s, 4, 100000, 0.01);

    unit_case("random: two workers (seeds) draw different sequences");
    gh_lb *other = gh_lb_new(GH_LB_RANDOM, s, 4, 43);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += gh_lb_pick(lb, s, 4, 0, 0) == gh_lb_pick(other, s, 4, 0, 0);
    CHECK(same < 500); /* 0.3 expected when independent */
    gh_lb_free(other);
    gh_lb_free(lb);
}

/* ---- least_conn ---- */

static void leastconn_least_loaded(void)
{
    gh_lb_server s[4];
    make_servers(s, 4, NULL);
    gh_lb *lb = gh_lb_new(GH_LB_LEAST_CONN, s, 4, 0);

    unit_case("least_conn: the least loaded server wins");
    s[0].inflight = 3, s[1].inflight = 1, s[2].inflight = 2, s[3].inflight = 5;
    for (int i = 0; i < 10; i++)
        CHECK_INT(gh_lb_pick(lb, s, 4, 0, 0), 1);
    CHECK_INT(gh_lb_pick(lb, s, 4, BIT(1), 0), 2);
    gh_lb_free(lb);

    unit_case("least_conn: load is per unit of weight");
    s[0].weight = 2, s[0].inflight = 4; /* 2 per unit */
    s[1].weight = 1, s[1].inflight = 3; /* 3 */
    s[2].weight = 4, s[2].inflight = 9; /* 2.25 */
    s[3].weight = 1, s[3].inflight = 5;
    lb = gh_lb_new(GH_LB_LEAST_CONN, s, 4, 0);
    CHECK_INT(gh_lb_pick(lb, s, 4, 0, 0), 0);
    s[0].inflight = 5; /* 2.5 */
    CHECK_INT(gh_lb_pick(lb, s, 4, 0, 0), 2);
    gh_lb_free(lb);
}

/* Ties rotate: not always the first; with weights, the rotation follows them (smooth WRR). */
static void leastconn_ties_rotate(void)
{
    gh_lb_server s[3];
    make_servers(s, 3, NULL);
    gh_lb *lb = gh_lb_new(GH_LB_LEAST_CONN, s, 3, 0);
    long counts[3] = {0};
    int prev = -1, repeats = 0;

    unit_case("least_conn: equal load rotates over the tied servers");
    for (int i = 0; i < 300; i++) {
        int k = gh_lb_pick(lb, s, 3, 0, 0);
        counts[k]++;
        repeats += k == prev;
        prev = k;
    }
    CHECK_INT(counts[0], 100);
    CHECK_INT(counts[1], 100);
    CHECK_INT(counts[2], 100);
    CHECK_INT(repeats, 0);

    unit_case("least_conn: only the tied servers share the rotation");
    s[1].inflight = 1;
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 100; i++)
        counts[gh_lb_pick(lb, s, 3, 0, 0)]++;
    CHECK_INT(counts[0], 50);
    CHECK_INT(counts[1], 0);
    CHECK_INT(counts[2], 50);
    gh_lb_free(lb);

    unit_case("least_conn: idle servers of weights 3:1 share 3:1");
    const uint32_t w[3] = {3, 1, 1};
    make_servers(s, 3, w);
    lb = gh_lb_new(GH_LB_LEAST_CONN, s, 3, 0);
    memset(counts, 0, sizeof(counts));
    for (int i = 0; i < 500; i++)
        counts[gh_lb_pick(lb, s, 3, 0, 0)]++;
    CHECK_INT(counts[0], 300);
    CHECK_INT(counts[1], 100);
    CHECK_INT(counts[2], 100);
    gh_lb_free(lb);
}

/*
 * Requests that never finish (each pick adds one in flight): least_conn keeps
 * inflight/weight level, so after 1000 picks with weights 1:2:3:4 each server
 * holds its weight's share to within one request.
 */
static void leastconn_tracks_weights_under_load(void)
{
    gh_lb_server s[4];
    const uint32_t w[4] = {1, 2, 3, 4};
    make_servers(s, 4, w);
    gh_lb *lb = gh_lb_new(GH_LB_LEAST_CONN, s, 4, 0);

    unit_case("least_conn: in flight stays proportional to weight");
    for (int i = 0; i < 1000; i++)
        s[gh_lb_pick(lb, s, 4, 0, 0)].inflight++;
    for (int i = 0; i < 4; i++)
        CHECK(s[i].inflight >= 100 * w[i] - 1 && s[i].inflight <= 100 * w[i] + 1);
    gh_lb_free(lb);
}

/* ---- p2c ---- */

static void p2c_favours_less_loaded(void)
{
    gh_lb_server s[4];
    make_servers(s, 4, NULL);
    long counts[4] = {0};

    /* With two servers both are always drawn: the loaded one never wins. */
    unit_case("p2c: 0 vs 10 in flight: the loaded server is never picked");
    s[1].inflight = 10;
    gh_lb *lb = gh_lb_new(GH_LB_P2C, s, 2, 5);
    for (int i = 0; i < 10000; i++)
        counts[gh_lb_pick(lb, s, 2, 0, 0)]++;
    CHECK_INT(counts[1], 0);
    gh_lb_free(lb);

    /*
     * In flight 0, 5, 10: server 2 loses every pair; server 1 wins only the
     * pair {1, 2}, a third of the pairs (0.333 +- 0.02: 4 sigma at 10k picks).
     */
    unit_case("p2c: 0/5/10 in flight: the busiest is never picked, the middle one a third of the time");
    memset(counts, 0, sizeof(counts));
    s[1].inflight = 5, s[2].inflight = 10;
    lb = gh_lb_new(GH_LB_P2C, s, 3, 5);
    for (int i = 0; i < 10000; i++)
        counts[gh_lb_pick(lb, s, 3, 0, 0)]++;
    CHECK_INT(counts[2], 0);
    CHECK(counts[1] > 3133 && counts[1] < 3533);
    CHECK_INT(gh_lb_pick(lb, s, 3, BIT(0) | BIT(1), 0), 2); /* load never overrides the mask */
    gh_lb_free(lb);
}

/* Idle: exactly weighted random (the tie goes to the first draw); +-0.01 as for random. */
static void p2c_idle_follows_weights(void)
{
    gh_lb_server s[4];
    const uint32_t w[4] = {1, 2, 3, 4};
    make_servers(s, 4, w);
    gh_lb *lb = gh_lb_new(GH_LB_P2C, s, 4, 9);
    long counts[4] = {0};

    unit_case("p2c: idle servers of weights 1:2:3:4 over 100k picks, each share +-0.01");
    for (int i = 0; i < 100000; i++)
        counts[gh_lb_pick(lb, s, 4, 0, 0)]++;
    check_shares("p2c", counts, s, 4, 100000, 0.01);
    gh_lb_free(lb);
}

/*
 * A simulated worker: each pick adds one in flight and then a random request
 * finishes, with server 0 four times slower to finish. p2c must send the slow
 * server clearly less than its equal share (0.25) while using it.
 */
static void p2c_routes_around_slow_server(void)
{
    gh_lb_server s[4];
    make_servers(s, 4, NULL);
    gh_lb *lb = gh_lb_new(GH_LB_P2C, s, 4, 11);
    long counts[4] = {0};
    uint64_t x = 99;

    unit_case("p2c: a slow server gets less traffic");
    for (int i = 0; i < 100000; i++) {
        int k = gh_lb_pick(lb, s, 4, 0, 0);
        counts[k]++;
        s[k].inflight++;
        for (int j = 0; j < 4; j++) {
            x = x * 6364136223846793005u + 1442695040888963407u;
            uint32_t finish_per_1024 = j == 0 ? 64 : 256;
            if (s[j].inflight > 0 && (uint32_t)(x >> 54) < finish_per_1024)
                s[j].inflight--;
        }
    }
    CHECK(counts[0] > 1000 && counts[0] < 20000);
    gh_lb_free(lb);
}

/* ---- hash ---- */

/* key -> server id, for comparing pools whose indices differ. */
static void hash_map(const gh_lb_server *s, size_t n, uint64_t unusable, uint64_t *out, uint32_t nkeys)
{
    gh_lb *lb = gh_lb_new(GH_LB_HASH, s, n, 0);
    for (uint32_t k = 0; k < nkeys; k++) {
        int i = gh_lb_pick(lb, s, n, unusable, client_key(k));
        out[k] = i >= 0 ? s[i].id : 0;
    }
    gh_lb_free(lb);
}

#define NKEYS 100000
static uint64_t map_a[NKEYS], map_b[NKEYS];

static void hash_same_key_same_server(void)
{
    gh_lb_server s[10];
    make_servers(s, 10, NULL);
    gh_lb *a = gh_lb_new(GH_LB_HASH, s, 10, 1), *b = gh_lb_new(GH_LB_HASH, s, 10, 2);
    int differ = 0;

    /* Another worker (another seed) or another config generation must agree. */
    unit_case("hash: a key always maps to the same server, in every worker");
    for (uint32_t k = 0; k < 10000; k++) {
        int first = gh_lb_pick(a, s, 10, 0, client_key(k));
        differ += gh_lb_pick(a, s, 10, 0, client_key(k)) != first;
        differ += gh_lb_pick(b, s, 10, 0, client_key(k)) != first;
    }
    CHECK_INT(differ, 0);

    /* A retry (the first choice marked tried) goes to the same next server every time. */
    unit_case("hash: the fallback of a key is deterministic");
    for (uint32_t k = 0; k < 1000; k++) {
        int first = gh_lb_pick(a, s, 10, 0, client_key(k));
        int next = gh_lb_pick(a, s, 10, BIT(first), client_key(k));
        CHECK(next >= 0 && next != first);
        CHECK_INT(gh_lb_pick(b, s, 10, BIT(first), client_key(k)), next);
    }
    gh_lb_free(a);
    gh_lb_free(b);
}

/*
 * 100k keys. With 1024 ring points per unit of weight, a server's share has a
 * relative spread of about 1/sqrt(1024 * weight) = 3% or less, so +-0.02
 * absolute (a fifth of a 0.1 share) is over 5 sigma.
 */
static void hash_distribution(void)
{
    gh_lb_server s[10];
    long counts[10] = {0};
    make_servers(s, 10, NULL);
    gh_lb *lb = gh_lb_new(GH_LB_HASH, s, 10, 0);

    unit_case("hash: 100k keys over 10 equal servers, each share 0.1 +- 0.02");
    for (uint32_t k = 0; k < NKEYS; k++)
        counts[gh_lb_pick(lb, s, 10, 0, client_key(k))]++;
    check_shares("hash", counts, s, 10, NKEYS, 0.02);
    gh_lb_free(lb);

    unit_case("hash: 100k keys over weights 1:2:3:4, each share +-0.02");
    const uint32_t w[4] = {1, 2, 3, 4};
    make_servers(s, 4, w);
    lb = gh_lb_new(GH_LB_HASH, s, 4, 0);
    memset(counts, 0, sizeof(counts));
    for (uint32_t k = 0; k < NKEYS; k++)
        counts[gh_lb_pick(lb, s, 4, 0, client_key(k))]++;
    check_shares("hash", counts, s, 4, NKEYS, 0.02);
    gh_lb_free(lb);

    /* Total weight 1001: the ring is scaled down to 64 points per unit; the light server still gets keys. */
    unit_case("hash: weights 1000:1, the light server keeps about its 1/1001");
    const uint32_t w2[2] = {1000, 1};
    make_servers(s, 2, w2);
    lb = gh_lb_new(GH_LB_HASH, s, 2, 0);
    memset(counts, 0, sizeof(counts));
    for (uint32_t k = 0; k < NKEYS; k++)
        counts[gh_lb_pick(lb, s, 2, 0, client_key(k))]++;
    CHECK(counts[1] > 30 && counts[1] < 300); /* 100 expected */
    gh_lb_free(lb);

    /* Total weight 640000 > the ring's 65536 points: scaled below one point per unit, equal servers still even. */
    unit_case("hash: 64 servers of weight 10000, each share 1/64 +- 0.01");
    gh_lb_server big[GH_LB_MAX_SERVERS];
    long bigcounts[GH_LB_MAX_SERVERS] = {0};
    make_servers(big, GH_LB_MAX_SERVERS, NULL);
    for (size_t i = 0; i < GH_LB_MAX_SERVERS; i++)
        big[i].weight = GH_LB_MAX_WEIGHT;
    lb = gh_lb_new(GH_LB_HASH, big, GH_LB_MAX_SERVERS, 0);
    CHECK(lb != NULL);
    for (uint32_t k = 0; lb != NULL && k < NKEYS; k++)
        bigcounts[gh_lb_pick(lb, big, GH_LB_MAX_SERVERS, 0, client_key(k))]++;
    if (lb != NULL)
        check_shares("hash", bigcounts, big, GH_LB_MAX_SERVERS, NKEYS, 0.01);
    gh_lb_free(lb);
}

/* Keys that moved between two maps, and whether every move involved server `id`. */
static long moved(uint64_t id, int *only_id)
{
    long m = 0;
    *only_id = 1;
    for (uint32_t k = 0; k < NKEYS; k++) {
        if (map_a[k] == map_b[k])
            continue;
        m++;
        if (map_a[k] != id && map_b[k] != id)
            *only_id = 0;
    }
    return m;
}

/*
 * Membership changes move only the keys they must: removing one of 10 moves
 * the keys it had (1/10 expected, assert <= 1/10 + 0.02), and adding an 11th
 * moves the keys it takes (<= 1/11 + 0.02). Every moved key involves the
 * changed server: no key moves between two servers that stayed.
 */
static void hash_minimal_remap(void)
{
    gh_lb_server s[11], fewer[9];
    int only;
    make_servers(s, 11, NULL);
    hash_map(s, 10, 0, map_a, NKEYS);

    unit_case("hash: removing one of 10 servers moves only its keys");
    memcpy(fewer, s, 3 * sizeof(s[0]));
    memcpy(fewer + 3, s + 4, 6 * sizeof(s[0])); /* server 3 removed: indices shift, ids do not */
    hash_map(fewer, 9, 0, map_b, NKEYS);
    long m = moved(s[3].id, &only);
    CHECK(m > 0 && m <= NKEYS / 10 + NKEYS / 50);
    CHECK(only);

    /* Marking it unusable is the same as removing it: the mapping is identical. */
    unit_case("hash: an unusable server's keys go where removal sends them");
    hash_map(s, 10, BIT(3), map_a, NKEYS);
    CHECK(moved(s[3].id, &only) == 0);

    unit_case("hash: adding an 11th server moves only the keys it takes");
    hash_map(s, 10, 0, map_a, NKEYS);
    hash_map(s, 11, 0, map_b, NKEYS);
    m = moved(s[10].id, &only);
    CHECK(m > 0 && m <= NKEYS / 11 + NKEYS / 50);
    CHECK(only);

    unit_case("hash: doubling a server's weight moves only keys towards it");
    hash_map(s, 10, 0, map_a, NKEYS);
    s[5].weight = 2;
    hash_map(s, 10, 0, map_b, NKEYS);
    m = moved(s[5].id, &only);
    CHECK(m > 0 && m <= NKEYS / 11 + NKEYS / 50); /* 1/10 -> 2/11: it gains about 0.082 */
    CHECK(only);
}

/* The keys of an unusable server are spread over the others, not dumped on one neighbour. */
static void hash_failover_spreads(void)
{
    gh_lb_server s[10];
    long counts[10] = {0}, total = 0;
    make_servers(s, 10, NULL);
    gh_lb *lb = gh_lb_new(GH_LB_HASH, s, 10, 0);

    unit_case("hash: an unusable server's keys spread over the 9 others");
    for (uint32_t k = 0; k < NKEYS; k++) {
        if (gh_lb_pick(lb, s, 10, 0, client_key(k)) != 0)
            continue;
        counts[gh_lb_pick(lb, s, 10, BIT(0), client_key(k))]++;
        total++;
    }
    CHECK_INT(counts[0], 0);
    for (int i = 1; i < 10; i++) /* 1/9 = 0.111 each; the 1024 points make it within a few percent */
        unit_check(counts[i] > total / 20 && counts[i] < total / 5, __FILE__, __LINE__,
                   "server %d took %ld of %ld keys", i, counts[i], total);
    gh_lb_free(lb);
}

/* ---- Micro-benchmark: printed for the record, never asserted (machines differ). ---- */

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile int bench_sink; /* keeps the picks from being optimised away */

static void benchmark(void)
{
    enum { N = 16, PICKS = 2000000 };
    gh_lb_server s[N];
    uint32_t w[N];
    for (int i = 0; i < N; i++)
        w[i] = 1 + (uint32_t)i % 4;
    make_servers(s, N, w);

    printf("balance: ns/pick over %d servers (weights 1..4), %d picks:", N, PICKS);
    for (size_t a = 0; a < NALGS; a++) {
        gh_lb *lb = gh_lb_new(algorithms[a], s, N, 1);
        uint64_t key = 0;
        double t0 = now_ns();
        for (int i = 0; i < PICKS; i++) {
            key += 0x9e3779b97f4a7c15u;
            int k = gh_lb_pick(lb, s, N, (uint64_t)(i & 1) << 3, key);
            s[k].inflight = (s[k].inflight + 1) & 7;
            bench_sink = k;
        }
        printf(" %s %.1f", gh_lb_algorithm_name(algorithms[a]), (now_ns() - t0) / PICKS);
        gh_lb_free(lb);
    }
    printf("\n");
}

void suite_balance(void)
{
    hash_vectors();
    names_and_new();
    unusable_respected();
    backups_only_when_primaries_unusable();
    sixty_four_servers();
    rr_exact_per_window();
    rr_distribution();
    random_distribution();
    leastconn_least_loaded();
    leastconn_ties_rotate();
    leastconn_tracks_weights_under_load();
    p2c_favours_less_loaded();
    p2c_idle_follows_weights();
    p2c_routes_around_slow_server();
    hash_same_key_same_server();
    hash_distribution();
    hash_minimal_remap();
    hash_failover_spreads();
    benchmark();
    unit_case(NULL);
}
