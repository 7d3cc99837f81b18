/*
 * hash: consistent hashing on a ring of virtual nodes (Karger et al. 1997;
 * HAProxy's lb_chash.c). Server s owns weight(s) * scale points on a 32-bit
 * ring; a key goes to the first point at or after its own position.
 *
 * Why a ring (and not Maglev or jump hash): the ring is exactly minimal.
 * Removing a server moves only the keys it had; adding one moves only the keys
 * it takes; the other servers' points do not move because point j of server s
 * depends on nothing but (s.id, j). Maglev moves a few percent more, and jump
 * hash cannot remove a server from the middle. An unusable server is just
 * skipped: its keys go to the next point on the ring, a different server for
 * each of its points, so its load is spread rather than dumped on a neighbour,
 * and every other key stays where it was.
 *
 * Scale: 1024 points per unit of weight (share of each server within ~3% of
 * its weight: a server's arc is a sum of k exponentials, spread 1/sqrt(k)),
 * halved as often as needed to keep a ring under 65536 points (320 KiB). It
 * depends only on the total weight and moves in powers of two, so it changes
 * only when a pool's total weight crosses 64, 128, 256...; pools of up to 64
 * servers of weight 1 never see it change. (When it does change, each server
 * keeps the first half of its points, and up to half of the keys move.)
 *
 * Primaries and backups have a ring each, so that backups never take keys
 * from primaries and vice versa.
 *
 * Lookup: a bucket index on the top bits of the position narrows the binary
 * search to a few points, then a walk skips points of unusable servers.
 */
#include <errno.h>
#include <stdlib.h>

#include "balance/lb.h"

#define RING_BUDGET    65536
#define RING_MAX_SCALE 1024

typedef struct ring {
    uint32_t npoints;
    uint32_t shift;   /* bucket of a position: pos >> shift */
    uint32_t *pos;    /* [npoints], ascending */
    uint8_t *server;  /* [npoints]: the index of the server owning pos[i] */
    uint32_t *bucket; /* [nbuckets + 1]: first i with (pos[i] >> shift) >= b */
} ring;

typedef struct hash_state {
    ring rings[2]; /* primaries, backups */
} hash_state;

typedef struct point {
    uint64_t h;
    uint32_t server;
} point;

/* Position of virtual node j of a server: depends on nothing else, hence the minimal moves. */
static inline uint64_t point_hash(uint64_t id, uint32_t j)
{
    return balance__mix64(id + (uint64_t)(j + 1) * 0x9e3779b97f4a7c15u);
}

static int point_cmp(const void *a, const void *b)
{
    const point *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->server < y->server ? -1 : x->server > y->server;
}

/*
 * Points per unit of weight, in 16.16 fixed point: 1024, halved until the ring
 * fits the budget; below 1 only when the total weight alone exceeds the budget
 * (up to 64 * 10000), where every server still gets at least one point.
 */
static uint64_t ring_scale(const gh_lb_server *s, size_t n, uint64_t mask)
{
    uint64_t total = 0, scale = (uint64_t)RING_MAX_SCALE << 16;
    for (size_t i = 0; i < n; i++)
        if (mask & ((uint64_t)1 << i))
            total += s[i].weight;
    if (total > RING_BUDGET)
        return ((uint64_t)RING_BUDGET << 16) / total;
    while (scale > ((uint64_t)1 << 16) && total * scale > ((uint64_t)RING_BUDGET << 16))
        scale /= 2;
    return scale;
}

static inline uint32_t server_points(const gh_lb_server *s, uint64_t scale)
{
    uint64_t np = (s->weight * scale) >> 16;
    return np > 0 ? (uint32_t)np : 1;
}

/* log2 of the bucket count: about 4 points per bucket, between 2 and 2^16 buckets. */
static uint32_t bucket_bits(uint32_t npoints)
{
    uint32_t bits = 1;
    while (bits < 16 && ((uint32_t)4 << bits) <= npoints)
        bits++;
    return bits;
}

/* Fills the arrays of r (npoints and shift already set) from the sorted points. */
static void ring_index(ring *r, const point *pts)
{
    uint32_t nbuckets = (uint32_t)1 << (32 - r->shift), i = 0;
    for (uint32_t k = 0; k < r->npoints; k++) {
        r->pos[k] = (uint32_t)(pts[k].h >> 32);
        r->server[k] = (uint8_t)pts[k].server;
    }
    for (uint32_t b = 0; b <= nbuckets; b++) {
        while (i < r->npoints && (r->pos[i] >> r->shift) < b)
            i++;
        r->bucket[b] = i;
    }
}

static int ring_build(ring *r, const gh_lb_server *s, size_t n, uint64_t mask)
{
    uint64_t scale = ring_scale(s, n, mask);
    uint32_t np = 0;
    for (size_t i = 0; i < n; i++)
        if (mask & ((uint64_t)1 << i))
            np += server_points(&s[i], scale);
    r->npoints = np;
    if (np == 0)
        return 0;

    uint32_t bits = bucket_bits(np);
    size_t nbuckets = ((size_t)1 << bits) + 1;
    point *pts = malloc((size_t)np * sizeof(*pts));
    char *mem = malloc(((size_t)np + nbuckets) * sizeof(uint32_t) + np); /* positions, buckets, servers */
    if (pts == NULL || mem == NULL) {
        free(pts);
        free(mem);
        return -ENOMEM;
    }
    np = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(mask & ((uint64_t)1 << i)))
            continue;
        for (uint32_t j = 0, k = server_points(&s[i], scale); j < k; j++)
            pts[np++] = (point){point_hash(s[i].id, j), (uint32_t)i};
    }
    qsort(pts, np, sizeof(*pts), point_cmp);
    r->pos = (uint32_t *)mem;
    r->bucket = r->pos + np;
    r->server = (uint8_t *)(r->bucket + nbuckets);
    r->shift = 32 - bits;
    ring_index(r, pts);
    free(pts);
    return 0;
}

static int hash_init(gh_lb *lb, const gh_lb_server *s, size_t n)
{
    hash_state *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    lb->priv = st;
    if (ring_build(&st->rings[0], s, n, lb->primaries) < 0 || ring_build(&st->rings[1], s, n, lb->backups) < 0) {
        free(st->rings[0].pos);
        free(st);
        lb->priv = NULL;
        return -ENOMEM;
    }
    return 0;
}

static void hash_dispose(gh_lb *lb)
{
    hash_state *st = lb->priv;
    if (st == NULL)
        return;
    free(st->rings[0].pos);
    free(st->rings[1].pos);
    free(st);
    lb->priv = NULL;
}

/* Index of the first point at or after pos, wrapping past the end to 0. */
static uint32_t ring_find(const ring *r, uint32_t pos)
{
    uint32_t b = pos >> r->shift, lo = r->bucket[b], hi = r->bucket[b + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->pos[mid] < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->npoints ? 0 : lo;
}

static int hash_pick(gh_lb *lb, const gh_lb_server *s, uint64_t candidates, uint64_t key)
{
    const hash_state *st = lb->priv;
    const ring *r = &st->rings[(candidates & lb->primaries) ? 0 : 1];
    /* Mixed again: a caller may pass a raw IPv4 address or a small integer. */
    uint32_t i = ring_find(r, (uint32_t)(balance__mix64(key) >> 32));

    /* Ends: every candidate owns at least one point of this ring. */
    while (!(candidates & ((uint64_t)1 << r->server[i])))
        i = i + 1 == r->npoints ? 0 : i + 1;
    return r->server[i];
}

const balance__ops balance__hash = {
    .name = "hash",
    .init = hash_init,
    .pick = hash_pick,
    .dispose = hash_dispose,
};
