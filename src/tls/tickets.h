/*
 * tls/tickets: the session ticket keys, in memory shared by every process.
 *
 * Time is cut into periods (an hour by default). A ticket is encrypted under
 * the key of the current period, made from fresh randomness (getrandom) the
 * first time any process needs it in that period; the previous period's key is
 * kept to decrypt for one more period (such a ticket is renewed), and then it
 * is gone: overwritten, never derived again. So no key lives longer than two
 * periods, and nothing lasts the life of the process.
 *
 * One region, mapped by the master before it forks, serves every worker and
 * every worker started later, so a session resumes on any worker, across
 * worker restarts, reloads and binary upgrades (the new master maps the same
 * memfd). Readers take no lock (a sequence counter); the
 * one writer of a period is the process that wins a compare-and-swap on the
 * writer word, and a writer that died mid-rotation is taken over, so a crash
 * never stops resumption.
 *
 * No OpenSSL here: tls.c turns a key into cipher and MAC contexts. The clock
 * is the caller's (`now`, seconds), so the rotation is unit-tested with a fake.
 */
#ifndef GH_TLS_TICKETS_H
#define GH_TLS_TICKETS_H

#include <stdint.h>

#define GH_TICKET_PERIOD 3600 /* seconds */

/* One key: a 16-byte name sent in the ticket, an AES-256 key and an HMAC-SHA256 key. */
typedef struct gh_ticket_key {
    int64_t period; /* now / period length when it was made; -1: no key */
    unsigned char name[16], aes[32], hmac[32];
} gh_ticket_key;

typedef struct gh_tickets gh_tickets; /* the shared region; made by gh_tickets_new, freed by gh_tickets_free */

/*
 * Maps a region shared with the children forked after it; period_len in
 * seconds (>= 1). NULL on failure. After gh_tickets_inherit(fd), the first
 * call maps that region instead when it is one of this layout and period (the
 * old master's, in a binary upgrade), so its keys go on; otherwise it closes
 * the fd and starts fresh.
 */
gh_tickets *gh_tickets_new(int64_t period_len);

/* The old master's region (a memfd) for the next gh_tickets_new. */
void gh_tickets_inherit(int fd);

/* The memfd of the region this process mapped last (close-on-exec), -1 when none: for a binary upgrade. */
int gh_tickets_region_fd(void);
void gh_tickets_free(gh_tickets *t);
int64_t gh_tickets_period_len(const gh_tickets *t);

/* The key to encrypt a new ticket with at time now (rotating first if the period changed): 0, or -1. */
int gh_tickets_encrypt_key(gh_tickets *t, int64_t now, gh_ticket_key *out);

/*
 * The key named `name` if it may still decrypt at time now: 1 the current
 * period's, 2 the previous period's (the ticket should be renewed), 0 none
 * (unknown, or older: full handshake), -1 the keys could not be read.
 */
int gh_tickets_decrypt_key(gh_tickets *t, int64_t now, const unsigned char name[16], gh_ticket_key *out);

#endif
