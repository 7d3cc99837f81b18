/*
 * balance: the dispatcher shared by every algorithm. It validates the pool,
 * narrows each pick to the usable primaries (or, failing those, the usable
 * backups) and hands that set to the algorithm, which then never has to think
 * about backups or empty sets. Also the key hash and the PRNG.
 */
#include <stdlib.h>
#include <string.h>

#include "balance/lb.h"

static const balance__ops *const algorithms[GH_LB_NALGORITHMS] = {
    [GH_LB_ROUND_ROBIN] = &balance__rr, [GH_LB_LEAST_CONN] = &balance__least_conn, [GH_LB_P2C] = &balance__p2c,
    [GH_LB_HASH] = &balance__hash,      [GH_LB_RANDOM] = &balance__random,
};

gh_lb *gh_lb_new(int algorithm, const gh_lb_server *servers, size_t n, uint64_t seed)
{
    if (algorithm < 0 || algorithm >= GH_LB_NALGORITHMS || n > GH_LB_MAX_SERVERS || (n > 0 && servers == NULL))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (servers[i].weight < 1 || servers[i].weight > GH_LB_MAX_WEIGHT)
            return NULL;

    gh_lb *lb = calloc(1, sizeof(*lb));
    if (lb == NULL)
        return NULL;
    lb->ops = algorithms[algorithm];
    lb->algorithm = algorithm;
    lb->n = (uint32_t)n;
    /* Mixed, so that seeds 0, 1, 2... (worker ids) start far apart in the sequence. */
    lb->rng = balance__mix64(seed ^ 0x6a09e667f3bcc909u);
    for (size_t i = 0; i < n; i++) {
        if (servers[i].backup) {
            lb->backups |= (uint64_t)1 << i;
            lb->backups_weight += servers[i].weight;
        } else {
            lb->primaries |= (uint64_t)1 << i;
            lb->primaries_weight += servers[i].weight;
        }
    }
    if (lb->ops->init != NULL && lb->ops->init(lb, servers, n) < 0) {
        free(lb);
        return NULL;
    }
    return lb;
}

void gh_lb_free(gh_lb *lb)
{
    if (lb == NULL)
        return;
    if (lb->ops->dispose != NULL)
        lb->ops->dispose(lb);
    free(lb);
}

int gh_lb_pick(gh_lb *lb, const gh_lb_server *servers, size_t n, uint64_t unusable, uint64_t key)
{
    if (n != lb->n)
        return -1;
    uint64_t candidates = lb->primaries & ~unusable;
    if (candidates == 0)
        candidates = lb->backups & ~unusable;
    if (candidates == 0)
        return -1;
    if ((candidates & (candidates - 1)) == 0) /* only one: nothing to decide */
        return __builtin_ctzll(candidates);
    return lb->ops->pick(lb, servers, candidates, key);
}

int gh_lb_algorithm_of(const gh_lb *lb)
{
    return lb->algorithm;
}

const char *gh_lb_algorithm_name(int algorithm)
{
    if (algorithm < 0 || algorithm >= GH_LB_NALGORITHMS)
        return NULL;
    return algorithms[algorithm]->name;
}

int gh_lb_algorithm_parse(const char *name, size_t len)
{
    for (int i = 0; i < GH_LB_NALGORITHMS; i++) {
        const char *s = algorithms[i]->name;
        if (strlen(s) == len && memcmp(s, name, len) == 0)
            return i;
    }
    return -1;
}

/* ---- PRNG: splitmix64 (Steele, Lea, Flood 2014). Passes BigCrush; one add and a mix per draw. ---- */

uint64_t balance__rand(gh_lb *lb)
{
    lb->rng += 0x9e3779b97f4a7c15u;
    return balance__mix64(lb->rng);
}

/* Uniform in [0, bound) for bound < 2^32, by multiply-shift (Lemire): no division, bias < 2^-32 * bound. */
static uint32_t rand_below(gh_lb *lb, uint32_t bound)
{
    return (uint32_t)(((balance__rand(lb) >> 32) * bound) >> 32);
}

uint32_t balance__weight(const gh_lb *lb, const gh_lb_server *s, uint64_t mask)
{
    if (mask == lb->primaries)
        return lb->primaries_weight;
    if (mask == lb->backups)
        return lb->backups_weight;
    uint32_t total = 0;
    for (uint64_t m = mask; m != 0; m &= m - 1)
        total += s[__builtin_ctzll(m)].weight;
    return total;
}

int balance__weighted_random(gh_lb *lb, const gh_lb_server *s, uint64_t mask, uint32_t weight)
{
    uint32_t r = rand_below(lb, weight);
    int last = -1;
    for (uint64_t m = mask; m != 0; m &= m - 1) {
        last = __builtin_ctzll(m);
        if (r < s[last].weight)
            return last;
        r -= s[last].weight;
    }
    return last; /* not reached: r < weight */
}

/* ---- XXH64 (Yann Collet's public algorithm, written here from its specification). ---- */

#define P1 0x9e3779b185ebca87u
#define P2 0xc2b2ae3d27d4eb4fu
#define P3 0x165667b19e3779f9u
#define P4 0x85ebca77c2b2ae63u
#define P5 0x27d4eb2f165667c5u

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

/* Little-endian loads whatever the host: the hash must not depend on the machine. */
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline uint32_t load32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
    acc += input * P2;
    return rotl(acc, 31) * P1;
}

static inline uint64_t xxh_merge(uint64_t h, uint64_t v)
{
    h ^= xxh_round(0, v);
    return h * P1 + P4;
}

/* Four accumulators over 32-byte stripes; returns their merged value. */
static uint64_t xxh_stripes(const uint8_t **pp, const uint8_t *end)
{
    const uint8_t *p = *pp;
    uint64_t v1 = P1 + P2, v2 = P2, v3 = 0, v4 = -P1;
    do {
        v1 = xxh_round(v1, load64(p));
        v2 = xxh_round(v2, load64(p + 8));
        v3 = xxh_round(v3, load64(p + 16));
        v4 = xxh_round(v4, load64(p + 24));
        p += 32;
    } while (end - p >= 32);
    *pp = p;
    uint64_t h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
    h = xxh_merge(h, v1);
    h = xxh_merge(h, v2);
    h = xxh_merge(h, v3);
    return xxh_merge(h, v4);
}

uint64_t gh_lb_hash(const void *data, size_t n)
{
    const uint8_t *p = data, *end = p + n;
    uint64_t h = n >= 32 ? xxh_stripes(&p, end) : P5;

    h += (uint64_t)n;
    for (; end - p >= 8; p += 8)
        h = rotl(h ^ xxh_round(0, load64(p)), 27) * P1 + P4;
    if (end - p >= 4) {
        h = rotl(h ^ (uint64_t)load32(p) * P1, 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++)
        h = rotl(h ^ *p * P5, 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    return h ^ (h >> 32);
}
