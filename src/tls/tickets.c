/*
 * tls/tickets: rotation of the session ticket keys in shared memory (see tickets.h).
 *
 * Layout: a sequence counter, a writer word and two keys (current, previous),
 * every field a lock-free atomic word, since only address-free lock-free atomics
 * work across processes (as in health/state.c). Readers copy both keys between
 * two reads of the counter and retry if it changed or was odd (a seqlock,
 * Boehm, "Can seqlocks get along with programming language memory models?").
 * The writer first claims the writer word (0 -> its pid), then makes the counter
 * odd, writes, and makes it even. Randomness is drawn before claiming, so the
 * claimed section makes no system call; if its process dies there anyway
 * (SIGKILL), the next process to need a key sees a dead pid in the writer word,
 * takes the claim over and finishes a rotation with its own fresh key.
 */
#include "tls/tickets.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared ticket keys need lock-free 64-bit atomics");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "shared ticket keys need lock-free atomics");

#define KEY_BYTES    80                  /* name, aes, hmac */
#define KEY_WORDS    (1 + KEY_BYTES / 8) /* period, then the bytes */
#define READ_TRIES   1000 /* a writer holds the counter odd for some hundred ns: this is a preempted writer */
#define ROTATE_TRIES 4    /* then the handshake goes on without a ticket rather than stall the event loop */

/* Changes whenever the layout does: a new binary never reads an old one's region with another layout. */
#define REGION_MAGIC 0x4748544b00000001ULL /* "GHTK", layout 1 */

struct gh_tickets {
    uint64_t magic;                    /* REGION_MAGIC; set before any fork, then read-only */
    atomic_ullong seq;                 /* even: stable; odd: being written */
    atomic_int writer;                 /* pid of the rotating process, 0 none */
    int64_t period_len;                /* seconds; set before any fork, then read-only */
    atomic_ullong words[2][KEY_WORDS]; /* [0] current, [1] previous */
};

_Static_assert(sizeof(((gh_ticket_key *)0)->name) + sizeof(((gh_ticket_key *)0)->aes) +
                       sizeof(((gh_ticket_key *)0)->hmac) ==
                   KEY_BYTES,
               "key layout");

static int region_fd = -1; /* the memfd behind the region this process made or adopted */
static int inherited_fd = -1;

void gh_tickets_inherit(int fd)
{
    inherited_fd = fd;
}

int gh_tickets_region_fd(void)
{
    return region_fd;
}

/* The region of the old master of a binary upgrade, if it is one of ours with the same layout and period. */
static gh_tickets *adopt(int fd, int64_t period_len)
{
    struct stat st;
    gh_tickets *t;

    if (fstat(fd, &st) < 0 || st.st_size != (off_t)sizeof(*t))
        return NULL;
    t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (t == MAP_FAILED)
        return NULL;
    if (t->magic != REGION_MAGIC || t->period_len != period_len) {
        munmap(t, sizeof(*t));
        return NULL;
    }
    return t;
}

gh_tickets *gh_tickets_new(int64_t period_len)
{
    gh_tickets *t;
    int fd;

    if (period_len < 1) {
        errno = EINVAL;
        return NULL;
    }
    if (inherited_fd >= 0) {
        fd = inherited_fd;
        inherited_fd = -1;
        if ((t = adopt(fd, period_len)) != NULL) {
            region_fd = fd;
            return t;
        }
        close(fd); /* another layout or period: fresh keys, as at any start */
    }
    /*
     * A memfd rather than an anonymous mapping: the same keys can then go on
     * in the new master of a binary upgrade (main/upgrade.h), so sessions
     * resume across it. The fd stays open in the master for that.
     */
    fd = memfd_create("gatehouse-tickets", MFD_CLOEXEC);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, (off_t)sizeof(*t)) < 0) {
        close(fd);
        return NULL;
    }
    t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (t == MAP_FAILED) {
        close(fd);
        return NULL;
    }
    t->magic = REGION_MAGIC;
    t->period_len = period_len;
    for (int i = 0; i < 2; i++)
        atomic_store(&t->words[i][0], (unsigned long long)-1); /* no key yet: the first use makes one */
    if (region_fd >= 0)
        close(region_fd); /* a second region (unit tests): the fd is the latest's */
    region_fd = fd;
    return t;
}

void gh_tickets_free(gh_tickets *t)
{
    if (t != NULL)
        munmap(t, sizeof(*t));
}

int64_t gh_tickets_period_len(const gh_tickets *t)
{
    return t->period_len;
}

static void pack(const gh_ticket_key *k, unsigned long long w[KEY_WORDS])
{
    unsigned char bytes[KEY_BYTES];

    memcpy(bytes, k->name, 16);
    memcpy(bytes + 16, k->aes, 32);
    memcpy(bytes + 48, k->hmac, 32);
    w[0] = (unsigned long long)k->period;
    memcpy(&w[1], bytes, KEY_BYTES);
}

static void unpack(const unsigned long long w[KEY_WORDS], gh_ticket_key *k)
{
    unsigned char bytes[KEY_BYTES];

    memcpy(bytes, &w[1], KEY_BYTES);
    k->period = (int64_t)w[0];
    memcpy(k->name, bytes, 16);
    memcpy(k->aes, bytes + 16, 32);
    memcpy(k->hmac, bytes + 48, 32);
}

/* Both keys as of one moment; -1 when a writer kept the counter odd for READ_TRIES. */
static int snapshot(gh_tickets *t, gh_ticket_key keys[2])
{
    unsigned long long w[2][KEY_WORDS];

    for (int tries = 0; tries < READ_TRIES; tries++) {
        unsigned long long s = atomic_load_explicit(&t->seq, memory_order_acquire);
        if (s & 1) {
            sched_yield();
            continue;
        }
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < KEY_WORDS; j++)
                w[i][j] = atomic_load_explicit(&t->words[i][j], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&t->seq, memory_order_relaxed) != s)
            continue;
        unpack(w[0], &keys[0]);
        unpack(w[1], &keys[1]);
        return 0;
    }
    return -1;
}

static int64_t period_of(const gh_tickets *t, int64_t now)
{
    return (now < 0 ? 0 : now) / t->period_len;
}

/* Claims the writer word: 1 claimed, 0 a live process holds it. */
static int claim(gh_tickets *t, int self)
{
    int holder = 0;

    if (atomic_compare_exchange_strong(&t->writer, &holder, self))
        return 1;
    /* A holder that no longer exists died between claim and release: take over. (EPERM: it exists.) */
    if (kill(holder, 0) < 0 && errno == ESRCH)
        return atomic_compare_exchange_strong(&t->writer, &holder, self);
    return 0;
}

/* Writes keys as the claimed writer: counter odd, words, counter even (whatever a dead writer left). */
static void publish(gh_tickets *t, const gh_ticket_key *cur, const gh_ticket_key *prev)
{
    unsigned long long w[2][KEY_WORDS];
    unsigned long long s = atomic_load_explicit(&t->seq, memory_order_relaxed) | 1;

    pack(cur, w[0]);
    pack(prev, w[1]);
    atomic_store_explicit(&t->seq, s, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < KEY_WORDS; j++)
            atomic_store_explicit(&t->words[i][j], w[i][j], memory_order_relaxed);
    atomic_store_explicit(&t->seq, s + 1, memory_order_release);
}

static int fresh_key(gh_ticket_key *k, int64_t period)
{
    unsigned char bytes[KEY_BYTES];
    size_t got = 0;

    while (got < sizeof(bytes)) {
        ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    k->period = period;
    memcpy(k->name, bytes, 16);
    memcpy(k->aes, bytes + 16, 32);
    memcpy(k->hmac, bytes + 48, 32);
    memset(bytes, 0, sizeof(bytes));
    return 0;
}

/* Makes sure keys[0] is the key of now's period (or a later one, if the clock went back); fills keys. 0 or -1. */
static int refresh(gh_tickets *t, int64_t now, gh_ticket_key keys[2])
{
    int64_t p = period_of(t, now);
    gh_ticket_key next, none = {.period = -1};
    int rc = -1;

    for (int tries = 0; tries < ROTATE_TRIES; tries++) {
        if (snapshot(t, keys) == 0 && keys[0].period >= p)
            return 0;
        if (fresh_key(&next, p) < 0)
            return -1;
        if (!claim(t, (int)getpid())) {
            sched_yield(); /* another process is rotating: read its key */
            continue;
        }
        /* Sole writer now: the words are stable, but the counter may be odd if a dead writer left it so. */
        for (int i = 0; i < 2; i++) {
            unsigned long long w[KEY_WORDS];
            for (int j = 0; j < KEY_WORDS; j++)
                w[j] = atomic_load_explicit(&t->words[i][j], memory_order_relaxed);
            unpack(w, &keys[i]);
        }
        if (keys[0].period < p || (atomic_load(&t->seq) & 1)) {
            /* The previous key decrypts for one more period only: older than that, it goes now. */
            publish(t, &next, keys[0].period == p - 1 ? &keys[0] : &none);
            keys[1] = keys[0].period == p - 1 ? keys[0] : none;
            keys[0] = next;
        }
        atomic_store_explicit(&t->writer, 0, memory_order_release);
        rc = 0;
        break;
    }
    memset(&next, 0, sizeof(next));
    return rc;
}

int gh_tickets_encrypt_key(gh_tickets *t, int64_t now, gh_ticket_key *out)
{
    gh_ticket_key keys[2];

    if (refresh(t, now, keys) < 0)
        return -1;
    *out = keys[0];
    return 0;
}

int gh_tickets_decrypt_key(gh_tickets *t, int64_t now, const unsigned char name[16], gh_ticket_key *out)
{
    gh_ticket_key keys[2];
    int64_t p = period_of(t, now);

    if (refresh(t, now, keys) < 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (keys[i].period >= p - 1 && keys[i].period >= 0 && memcmp(keys[i].name, name, 16) == 0) {
            *out = keys[i];
            return keys[i].period >= p ? 1 : 2;
        }
    return 0;
}
