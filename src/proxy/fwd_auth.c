/*
 * fwd_auth: a forward proxy's `Proxy-Authorization: Basic` (RFC 9110 11.7.1,
 * RFC 7617) against the users file (crypt(3) hashes through libxcrypt's
 * crypt_rn), per worker.
 *
 * Hashing cost: a yescrypt or bcrypt check takes milliseconds to tens of them,
 * and it runs in the worker's loop, which serves every other client
 * meanwhile. So a successful check is remembered: the cache holds a keyed
 * hash (SHA-256 under a random per-worker key) of user, password and the
 * stored hash, never the password, in a bounded direct-mapped table with a
 * lifetime. A keep-alive client (or one that sends the same credentials on
 * every new connection, as curl and browsers do) is hashed once per lifetime,
 * not per request; a changed users file changes the stored hash and so
 * misses the cache. Failures are never cached: each costs a full check, and
 * each counts towards `auth_failures` per client address per minute, past
 * which the client gets 429 without any hashing (a guessing client cannot
 * stall the loop). An unknown user is checked against a real hash too, so
 * its answer takes the time a known one's does.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core/log.h"
#include "proxy/proxy.h"

#define AUTH_CACHE       1024   /* remembered successes per worker */
#define AUTH_CACHE_MS    300000 /* how long one is trusted: 5 min */
#define AUTH_FAIL_SLOTS  256    /* client addresses whose failures are counted */
#define AUTH_FAIL_WINDOW 60000  /* ms */
#define AUTH_MAX_CRED    1024   /* base64 credentials, bytes */

typedef struct auth_hit {
    unsigned char key[32];
    uint64_t until; /* loop ms; 0: empty */
} auth_hit;

typedef struct auth_fail {
    uint64_t who; /* hash of the address; 0: empty */
    uint64_t since;
    uint32_t n;
} auth_fail;

struct proxy__fwd_auth {
    unsigned char secret[32];
    auth_hit hits[AUTH_CACHE];
    auth_fail fails[AUTH_FAIL_SLOTS];
    struct crypt_data cd; /* crypt_rn's scratch: 32 KiB, once per worker rather than on the stack */
};

static struct proxy__fwd_auth *auth_of(proxy__worker *w)
{
    if (w->auth == NULL) {
        struct proxy__fwd_auth *a = calloc(1, sizeof(*a));

        if (a == NULL || RAND_bytes(a->secret, sizeof(a->secret)) != 1) {
            free(a);
            return NULL;
        }
        w->auth = a;
    }
    return w->auth;
}

void proxy__fwd_auth_free(proxy__worker *w)
{
    if (w->auth != NULL)
        OPENSSL_cleanse(w->auth, sizeof(*w->auth));
    free(w->auth);
    w->auth = NULL;
}

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h | 1;
}

static auth_fail *fail_slot(struct proxy__fwd_auth *a, const char *ip, uint64_t now)
{
    uint64_t who = fnv(ip);
    auth_fail *f = &a->fails[who % AUTH_FAIL_SLOTS];

    if (f->who != who || now - f->since > AUTH_FAIL_WINDOW)
        *f = (auth_fail){who, now, 0}; /* another address takes the slot: a collision only forgets */
    return f;
}

static int user_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const gh_cfg_fwd_user *)elem)->name.p);
}

/* SHA-256(secret | user 0 | password 0 | stored hash) into out. */
static int cache_key(const struct proxy__fwd_auth *a, const char *user, const char *pw, const char *hash,
                     unsigned char *out)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(c, a->secret, sizeof(a->secret)) == 1 &&
             EVP_DigestUpdate(c, user, strlen(user) + 1) == 1 && EVP_DigestUpdate(c, pw, strlen(pw) + 1) == 1 &&
             EVP_DigestUpdate(c, hash, strlen(hash)) == 1 && EVP_DigestFinal_ex(c, out, NULL) == 1;

    EVP_MD_CTX_free(c);
    return ok ? 0 : -1;
}

/* "Basic BASE64" into user and password (NUL-terminated in buf): 0 or -1. */
static int basic(gh_h1_str v, char *buf, size_t cap, char **user, char **pw)
{
    int n;
    char *colon;

    if (v.len < 6 || strncasecmp(v.p, "basic ", 6) != 0)
        return -1;
    v.p += 6, v.len -= 6;
    while (v.len > 0 && v.p[0] == ' ')
        v.p++, v.len--;
    if (v.len == 0 || v.len % 4 != 0 || v.len > AUTH_MAX_CRED || v.len / 4 * 3 >= cap)
        return -1;
    if ((n = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)v.p, (int)v.len)) < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding's zero bytes */
    for (size_t k = v.len; k > 0 && v.p[k - 1] == '='; k--)
        n--;
    buf[n] = '\0';
    if ((int)strlen(buf) != n || (colon = strchr(buf, ':')) == NULL || colon == buf)
        return -1; /* a NUL inside, or no user */
    *colon = '\0';
    *user = buf;
    *pw = colon + 1;
    return 0;
}

int proxy__fwd_auth(proxy__session *s, const gh_cfg_forward *f, const gh_h1_request *r, const char **user)
{
    struct proxy__fwd_auth *a = auth_of(s->w);
    uint64_t now = gh_loop_now(s->w->loop);
    const gh_h1_str *v = NULL;
    char buf[AUTH_MAX_CRED], *u, *pw;
    unsigned char key[32];
    const gh_cfg_fwd_user *known;
    const char *hash, *got;
    auth_fail *fl;
    auth_hit *hit;

    if (a == NULL)
        return 407;
    for (size_t i = 0; i < r->nheaders; i++)
        if (r->headers[i].kind == GH_HDR_PROXY_AUTHORIZATION) {
            if (v != NULL)
                return 407; /* two credentials: which one? neither */
            v = &r->headers[i].value;
        }
    if (v == NULL)
        return 407; /* the usual first request of a client: not a failure */
    fl = fail_slot(a, s->ip, now);
    if (fl->n >= f->auth_failures)
        return 429;
    if (basic(*v, buf, sizeof(buf), &u, &pw) < 0)
        goto failed;
    known = bsearch(u, f->users, f->nusers, sizeof(*f->users), user_cmp);
    hash = known ? known->hash.p : f->users[0].hash.p; /* the same work for an unknown user */
    if (cache_key(a, u, pw, hash, key) < 0)
        goto failed;
    hit = &a->hits[(key[0] | (unsigned)key[1] << 8) % AUTH_CACHE];
    if (known && hit->until > now && CRYPTO_memcmp(hit->key, key, sizeof(key)) == 0) {
        *user = known->name.p;
        OPENSSL_cleanse(buf, sizeof(buf));
        return 0;
    }
    got = crypt_rn(pw, hash, &a->cd, sizeof(a->cd));
    if (known && got != NULL && strlen(got) == known->hash.len && CRYPTO_memcmp(got, hash, known->hash.len) == 0) {
        memcpy(hit->key, key, sizeof(key));
        hit->until = now + AUTH_CACHE_MS;
        *user = known->name.p;
        OPENSSL_cleanse(buf, sizeof(buf));
        return 0;
    }
failed:
    OPENSSL_cleanse(buf, sizeof(buf));
    fl->n++;
    gh_log_warn("forward: client %s: wrong proxy credentials (%u in this minute)", s->ip, fl->n);
    return 407;
}

void proxy__fwd_auth_refuse(proxy__exchange *ex, const gh_cfg_forward *f, int status)
{
    char extra[128];
    int n = 0;

    if (status == 407) /* RFC 9110 11.7.1 */
        n = snprintf(extra, sizeof(extra), "Proxy-Authenticate: Basic realm=\"%s\", charset=\"UTF-8\"\r\n", f->realm.p);
    proxy__exchange_local_error(ex, status, extra, n > 0 && (size_t)n < sizeof(extra) ? (size_t)n : 0);
}
