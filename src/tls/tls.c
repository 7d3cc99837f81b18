#include "tls/tls.h"

#include "core/buf.h"
#include "core/common.h"
#include "tls/tickets.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

/*
 * Mozilla "intermediate" minus everything without forward secrecy or AEAD.
 * AES-128-GCM first: as safe in practice and the cheapest on AES-NI machines.
 */
#define TLS12_CIPHERS                                                                                                  \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                                       \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                                       \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS   "X25519:P-256:P-384" /* README.md and DESIGN.md list these three */

struct gh_tls_ctx {
    SSL_CTX *ssl;
    struct sni_select *sni;
    unsigned refs;                           /* runtimes holding it: a reload shares unchanged contexts */
    unsigned char digest[GH_TLS_DIGEST_LEN]; /* of the PEM bytes it was built from */
};

/*
 * Session tickets: a fresh random key each period (an hour), the previous one
 * kept to decrypt for one more period, then gone (tickets.c). The store is
 * shared memory mapped by the master before it forks, so every worker, every
 * restarted worker and every config generation encrypts and decrypts with the
 * same keys. One store per process tree, like the keys it holds.
 */
static gh_tickets *tickets;

const gh_tls_alpn gh_tls_alpn_http11 = {(const unsigned char *)"\x08http/1.1", 9};

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg);

/* The reason of the last OpenSSL error, "file: reason" style, into err. */
static void openssl_reason(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s %s: %s", what, file, reason ? reason : "invalid");
    ERR_clear_error();
}

static int set_hmac(EVP_MAC_CTX *hctx, const gh_ticket_key *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(hctx, k->hmac, sizeof(k->hmac), params);
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH], EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    gh_ticket_key k;
    int rc;

    (void)ssl;
    if (enc) {
        /* 0: no ticket this time (the handshake goes on), rather than a ticket under a stale key */
        if (gh_tickets_encrypt_key(tickets, (int64_t)time(NULL), &k) < 0 || RAND_bytes(iv, 16) != 1)
            rc = 0;
        else {
            memcpy(name, k.name, 16);
            rc = EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) == 1 && set_hmac(hctx, &k) == 1 ? 1 : -1;
        }
    } else {
        /* 1: valid; 2: valid under the previous period's key, so OpenSSL issues a new ticket; 0: full handshake */
        rc = gh_tickets_decrypt_key(tickets, (int64_t)time(NULL), name, &k);
        if (rc < 0)
            rc = 0;
        else if (rc > 0 &&
                 (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 || set_hmac(hctx, &k) != 1))
            rc = -1;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* GH_TEST_TICKET_PERIOD=SECONDS (1-3600) shortens the period; read once, for the tests of key expiry only. */
static int64_t ticket_period(void)
{
    const char *e = getenv("GH_TEST_TICKET_PERIOD");
    int64_t v = 0;

    if (e == NULL || *e == '\0')
        return GH_TICKET_PERIOD;
    for (; *e >= '0' && *e <= '9' && v <= GH_TICKET_PERIOD; e++)
        v = v * 10 + (*e - '0');
    return *e == '\0' && v >= 1 && v <= GH_TICKET_PERIOD ? v : GH_TICKET_PERIOD;
}

int gh_tls_tickets_init(void)
{
    if (tickets == NULL && (tickets = gh_tickets_new(ticket_period())) == NULL)
        return -1;
    return 0;
}

static int apply_policy(SSL_CTX *ctx)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) || !SSL_CTX_set1_groups_list(ctx, TLS_GROUPS))
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_SINGLE_ECDH_USE);
    /* Release buffers while idle: an idle connection then costs only its session state. */
    SSL_CTX_set_mode(ctx,
                     SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /*
     * Resumption by stateless tickets only: no server-side cache to share or
     * lock. The ticket keys are in memory every process shares, so every
     * worker decrypts every other worker's tickets.
     */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    /* Read every waiting record with one read(): a request costs one system call, not two. */
    SSL_CTX_set_read_ahead(ctx, 1);
    return 0;
}

static int key_type_name(EVP_PKEY *pk, const char **name)
{
    int id = EVP_PKEY_get_base_id(pk);
    *name = id == EVP_PKEY_RSA ? "RSA" : id == EVP_PKEY_EC ? "ECDSA" : id == EVP_PKEY_ED25519 ? "Ed25519" : "other";
    return id;
}

/* A second certificate of the same key type for the same names is an error: one would silently shadow the other. */
static int check_type(SSL_CTX *ctx, const char *cert_name, int *types, size_t ntypes, char *err, size_t errlen)
{
    const char *tname;
    int type = key_type_name(X509_get0_pubkey(SSL_CTX_get0_certificate(ctx)), &tname);

    for (size_t i = 0; i < ntypes; i++)
        if (types[i] == type) {
            snprintf(err, errlen, "certificate %s: a second %s certificate for the same names", cert_name, tname);
            return -1;
        }
    types[ntypes] = type;
    return 0;
}

static int check_key(SSL_CTX *ctx, const char *cert_name, const char *key_name, char *err, size_t errlen)
{
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "key %s does not match certificate %s", key_name, cert_name);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/*
 * No passphrase prompt: a worker loading a reload must never wait on a
 * terminal. An encrypted key is refused as a bad key.
 */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

/* The end of a PEM stream reads as "no start line": expected after the last certificate of a chain. */
static int pem_at_end(void)
{
    unsigned long e = ERR_peek_last_error();

    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return 1;
    }
    return 0;
}

/* What SSL_CTX_use_certificate_chain_file does, from memory: the leaf, then its chain in this key type's slot. */
static int use_chain_pem(SSL_CTX *ctx, const gh_tls_pem *p)
{
    BIO *bio = BIO_new_mem_buf(p->cert, (int)p->cert_len);
    X509 *x = bio != NULL ? PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL) : NULL;
    int ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_clear_chain_certs(ctx) == 1;

    X509_free(x);
    while (ok) {
        X509 *ca = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);

        if (ca == NULL) {
            ok = pem_at_end();
            break;
        }
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            ok = 0;
        }
    }
    BIO_free(bio);
    return ok ? 0 : -1;
}

static int use_key_pem(SSL_CTX *ctx, const gh_tls_pem *p)
{
    BIO *bio = BIO_new_mem_buf(p->key, (int)p->key_len);
    EVP_PKEY *k = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    int ok = k != NULL && SSL_CTX_use_PrivateKey(ctx, k) == 1;

    EVP_PKEY_free(k);
    BIO_free(bio);
    return ok ? 0 : -1;
}

/* Loads one cert/key pair into its key type's slot of ctx; a second pair of the same type is an error. */
static int load_pair(SSL_CTX *ctx, const gh_tls_pem *p, int *types, size_t ntypes, char *err, size_t errlen)
{
    if (p->cert_len > INT_MAX || p->key_len > INT_MAX) {
        snprintf(err, errlen, "certificate %s: file too large", p->cert_name);
        return -1;
    }
    if (use_chain_pem(ctx, p) < 0) {
        openssl_reason(err, errlen, "bad certificate file", p->cert_name);
        return -1;
    }
    if (check_type(ctx, p->cert_name, types, ntypes, err, errlen) < 0)
        return -1;
    if (use_key_pem(ctx, p) < 0) {
        openssl_reason(err, errlen, "bad key file", p->key_name);
        return -1;
    }
    return check_key(ctx, p->cert_name, p->key_name, err, errlen);
}

gh_tls_ctx *gh_tls_ctx_new_pem(const gh_tls_pem *pairs, size_t n, size_t *failed, char *err, size_t errlen)
{
    gh_tls_ctx *c = NULL;
    SSL_CTX *ctx = NULL;
    int types[8];

    if (n == 0 || n > GH_ARRAY_LEN(types)) {
        snprintf(err, errlen, "between 1 and %zu certificates per context", GH_ARRAY_LEN(types));
        return NULL;
    }
    if (gh_tls_tickets_init() < 0) { /* done by the master before forking; here for a process that did not */
        snprintf(err, errlen, "cannot map the session ticket keys: %s", strerror(errno));
        return NULL;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || apply_policy(ctx) < 0) {
        snprintf(err, errlen, "cannot set up TLS: %s", ERR_reason_error_string(ERR_peek_last_error()));
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if (load_pair(ctx, &pairs[i], types, i, err, errlen) < 0) {
            if (failed != NULL)
                *failed = i;
            goto fail;
        }
    if ((c = calloc(1, sizeof(*c))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    c->refs = 1;
    gh_tls_pem_digest(pairs, n, c->digest);
    c->ssl = ctx;
    SSL_CTX_set_app_data(ctx, c);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    /* A ticket cannot outlive its key (two periods); the lifetime hint tells the client so (RFC 8446 4.6.1). */
    SSL_CTX_set_timeout(ctx, (long)(2 * gh_tickets_period_len(tickets)));
    return c;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

typedef struct sni_select {
    gh_tls_ctx *(*select)(void *arg, const char *name);
    void *arg;
} sni_select;

/* RFC 6066 3: an unknown name gets the default certificate, as browsers expect of nginx and others. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    const sni_select *s = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    gh_tls_ctx *c;
    (void)alert;

    if (name == NULL || (c = s->select(s->arg, name)) == NULL)
        return SSL_TLSEXT_ERR_OK;
    if (c->ssl != SSL_get_SSL_CTX(ssl) && SSL_set_SSL_CTX(ssl, c->ssl) == NULL)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

int gh_tls_ctx_set_sni(gh_tls_ctx *def, gh_tls_ctx *(*select)(void *arg, const char *name), void *arg)
{
    sni_select *s = malloc(sizeof(*s));
    if (s == NULL)
        return -1;
    s->select = select;
    s->arg = arg;
    free(def->sni);
    def->sni = s;
    SSL_CTX_set_tlsext_servername_callback(def->ssl, on_servername);
    SSL_CTX_set_tlsext_servername_arg(def->ssl, s);
    return 0;
}

void gh_tls_pem_digest(const gh_tls_pem *pairs, size_t n, unsigned char out[GH_TLS_DIGEST_LEN])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = md != NULL && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;

    /* Lengths first: the boundaries between the files are part of what is hashed. */
    for (size_t i = 0; ok && i < n; i++) {
        uint64_t lens[2] = {pairs[i].cert_len, pairs[i].key_len};

        ok = EVP_DigestUpdate(md, lens, sizeof(lens)) == 1 &&
             EVP_DigestUpdate(md, pairs[i].cert, pairs[i].cert_len) == 1 &&
             EVP_DigestUpdate(md, pairs[i].key, pairs[i].key_len) == 1;
    }
    if (!ok || EVP_DigestFinal_ex(md, out, &len) != 1 || len != GH_TLS_DIGEST_LEN)
        RAND_bytes(out, GH_TLS_DIGEST_LEN); /* matches nothing: the context is built again, never wrongly shared */
    EVP_MD_CTX_free(md);
    ERR_clear_error();
}

gh_tls_ctx *gh_tls_ctx_share(gh_tls_ctx *c, const unsigned char digest[GH_TLS_DIGEST_LEN])
{
    if (c == NULL || c->sni != NULL || memcmp(c->digest, digest, GH_TLS_DIGEST_LEN) != 0)
        return NULL;
    c->refs++;
    return c;
}

void gh_tls_ctx_free(gh_tls_ctx *c)
{
    if (c == NULL || --c->refs > 0)
        return;
    SSL_CTX_free(c->ssl);
    free(c->sni);
    free(c);
}

/*
 * Socket BIO of our own: the same read()/send() as OpenSSL's, plus the
 * readiness bookkeeping that lets an edge-triggered loop skip reads that would
 * only return EAGAIN. With read-ahead one read() takes every record waiting in
 * the socket, so a short read means the socket is empty. Its data is the
 * gh_conn (its fd and flags), re-pointed when the conn moves (tls_moved).
 */
static BIO_METHOD *sock_method;

static int sock_read(BIO *b, char *buf, size_t len, size_t *got)
{
    gh_conn *c = BIO_get_data(b);
    ssize_t n = read(c->io.fd, buf, len);

    BIO_clear_retry_flags(b);
    if (n > 0) {
        if ((size_t)n < len && !c->hup)
            c->can_read = 0;
        *got = (size_t)n;
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        c->can_read = 0;
        BIO_set_retry_read(b);
    }
    *got = 0;
    return n == 0 ? 0 : -1;
}

/*
 * Writes gather: OpenSSL hands its BIO one record (at most 16 KiB of
 * plaintext) at a time, and its write buffer holds only that record, so a
 * 1 MiB response would cost 64 send() calls. While tls_writev encrypts a
 * batch, the records are queued (in a big pool block, held only while records
 * wait) and leave with one send() when the batch is made. Records that the
 * socket did not take stay queued, in order, and go first on the next call;
 * what they carry is not reported written until it is on the wire, so the
 * caller keeps those bytes and offers them again, as OpenSSL's own contract for
 * a retried SSL_write asks. Backpressure and can_write stay exact.
 *
 * The price is one copy of each batched record (OpenSSL's buffer to the
 * queue); a write of one record still goes straight from OpenSSL's buffer.
 */
#define PLAIN_MAX 16384 /* TLS record plaintext limit (RFC 8446 5.1, RFC 5246 6.2.1) */
/* Room kept for one more record: plaintext, header, tag, and a KeyUpdate that may precede it. */
#define RECORD_ROOM (PLAIN_MAX + 512)
#define GATHER_MAX  16 /* records per batch; 8 full ones fill a big block */

/* Records waiting for the socket: the session's ex_data while some wait, so an idle session carries none. */
typedef struct sock_queue {
    gh_buf out;            /* encrypted bytes not yet sent, in wire order */
    uint64_t queued, sent; /* bytes appended to / sent from out */
    size_t held;           /* plaintext bytes of the queued records, not yet reported written */
    uint32_t nrec, rdone;  /* records of the batch, and how many of them left whole */
    uint8_t gather;        /* a batch is being made: queue records, do not send */
    struct {
        uint64_t end;   /* `queued` once the record was appended */
        uint32_t plain; /* plaintext bytes it carries */
    } rec[GATHER_MAX];
} sock_queue;

static int queue_index = -1;
/* Queues alive in this (single-threaded) worker: while none is, no session has one and no lookup is made. */
static unsigned queues_alive;

static sock_queue *queue_of(const gh_conn *c)
{
    return queues_alive > 0 ? SSL_get_ex_data(c->impl, queue_index) : NULL;
}

static size_t queued_len(const sock_queue *q)
{
    return q != NULL ? gh_buf_len(&q->out) : 0;
}

static void queue_free(gh_conn *c, sock_queue *q)
{
    gh_buf_release(&q->out);
    free(q);
    SSL_set_ex_data(c->impl, queue_index, NULL);
    queues_alive--;
}

/* Frees the queue once nothing waits in it and every record was accounted for. */
static void queue_trim(gh_conn *c, sock_queue *q)
{
    if (q != NULL && gh_buf_len(&q->out) == 0 && q->nrec == 0 && !q->gather)
        queue_free(c, q);
}

/* Sends what the queue holds, once: a short send means the socket is full. 0, or -1 when the socket failed. */
static int queue_flush(gh_conn *c, sock_queue *q)
{
    size_t len = queued_len(q);
    ssize_t n;

    if (len == 0)
        return 0;
    n = send(c->io.fd, gh_buf_head(&q->out), len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        n = 0;
    }
    if ((size_t)n < len)
        c->can_write = 0;
    gh_buf_consume(&q->out, (size_t)n);
    q->sent += (uint64_t)n;
    if (gh_buf_len(&q->out) == 0)
        gh_buf_release(&q->out); /* nothing waits: the block goes back at once */
    return 0;
}

/* Appends encrypted bytes behind the queued ones. 1 taken, 0 no room (or no memory) now. */
static int queue_append(sock_queue *q, const char *buf, size_t len)
{
    if (gh_buf_reserve_big(&q->out) < 0)
        return 0;
    if (gh_buf_room(&q->out) < len)
        gh_buf_compact(&q->out);
    if (gh_buf_room(&q->out) < len)
        return 0;
    memcpy(gh_buf_tail(&q->out), buf, len);
    q->out.end += (uint32_t)len;
    q->queued += len;
    return 1;
}

static int sock_write(BIO *b, const char *buf, size_t len, size_t *put)
{
    gh_conn *c = BIO_get_data(b);
    sock_queue *q = queue_of(c);
    ssize_t n;

    BIO_clear_retry_flags(b);
    *put = 0;
    if (q != NULL && (q->gather || queued_len(q) > 0)) {
        /* Into a batch, or behind queued records: the wire order is the order of writes. */
        if (!queue_append(q, buf, len)) {
            if (!q->gather && queue_flush(c, q) < 0)
                return -1;
            if (!queue_append(q, buf, len)) {
                BIO_set_retry_write(b); /* OpenSSL keeps the record and offers it again */
                return -1;
            }
        }
        *put = len;
        if (!q->gather && queue_flush(c, q) < 0)
            return -1;
        return 1;
    }
    n = send(c->io.fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
        if ((size_t)n < len)
            c->can_write = 0;
        *put = (size_t)n;
        return 1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        c->can_write = 0;
        BIO_set_retry_write(b);
    }
    return -1;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *get_sock_method(void)
{
    if (sock_method == NULL) {
        BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gatehouse socket");
        if (m == NULL || !BIO_meth_set_read_ex(m, sock_read) || !BIO_meth_set_write_ex(m, sock_write) ||
            !BIO_meth_set_ctrl(m, sock_ctrl)) {
            BIO_meth_free(m);
            return NULL;
        }
        sock_method = m;
    }
    return sock_method;
}

/* The listener's ALPN list of a session, for select_alpn (which runs on whichever context SNI chose). */
static int alpn_index = -1;

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    const gh_tls_alpn *a = alpn_index >= 0 ? SSL_get_ex_data(ssl, alpn_index) : NULL;
    (void)arg;
    if (a == NULL)
        a = &gh_tls_alpn_http11;
    if (a->len == 0)
        return SSL_TLSEXT_ERR_NOACK; /* a raw stream service: it names no protocol, whatever the client offers */
    /* RFC 7301 3.2: the server's preference among the protocols both sides name. */
    if (SSL_select_next_proto((unsigned char **)out, outlen, a->p, (unsigned)a->len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no common protocol: go on without ALPN, as HTTP/1.1 */
    return SSL_TLSEXT_ERR_OK;
}

/* Maps an SSL_get_error() result to GH_AGAIN (clearing the flag to wait on) or GH_ERROR; 0 for a clean close. */
static int map_error(gh_conn *c, int ret)
{
    SSL *ssl = c->impl;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
        c->can_read = 0;
        return GH_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        c->can_write = 0;
        return GH_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        ERR_clear_error(); /* the next call starts clean */
        return GH_ERROR;
    }
}

static int tls_handshake(gh_conn *c)
{
    int r = SSL_do_handshake(c->impl);
    if (r == 1) {
        /* From now on the connection frees its record buffers when it goes idle (tls_idle), not
         * after every read and write: a busy keep-alive connection would otherwise allocate them
         * again for every request. During the handshake they go as soon as a read would block, so
         * connections stalled in a handshake hold none. */
        SSL_clear_mode(c->impl, SSL_MODE_RELEASE_BUFFERS);
        return GH_OK;
    }
    r = map_error(c, r);
    return r == 0 ? GH_ERROR : r;
}

int gh_tls_conn_version(const gh_conn *c, int *resumed)
{
    *resumed = 0;
    if (c->ops != &gh_tls_conn_ops || c->impl == NULL)
        return 0;
    *resumed = SSL_session_reused(c->impl) == 1;
    return SSL_version(c->impl);
}

static ssize_t tls_read(gh_conn *c, void *buf, size_t len)
{
    size_t n;
    if (SSL_read_ex(c->impl, buf, len, &n) == 1)
        return (ssize_t)n;
    int r = map_error(c, 0);
    if (r == GH_AGAIN)
        c->can_read = 0; /* a read that must first write waits for the peer too (as before) */
    return r;
}

/* The plaintext of the queued records that are now wholly on the wire; they leave the batch. */
static size_t take_sent(sock_queue *q)
{
    size_t done = 0;

    while (q->rdone < q->nrec && q->rec[q->rdone].end <= q->sent)
        done += q->rec[q->rdone++].plain;
    q->held -= done;
    if (q->rdone == q->nrec)
        q->rdone = q->nrec = 0;
    return done;
}

/* The contiguous piece of iov at byte offset off: its start and length (NULL past the end). */
static const char *piece_at(const struct iovec *iov, int iovcnt, size_t off, size_t *len)
{
    for (int i = 0; i < iovcnt; i++) {
        if (off < iov[i].iov_len) {
            *len = iov[i].iov_len - off;
            return (const char *)iov[i].iov_base + off;
        }
        off -= iov[i].iov_len;
    }
    *len = 0;
    return NULL;
}

/* One record from one buffer (what a small response is): straight from OpenSSL's buffer to the socket, no copy. */
static ssize_t write_one(gh_conn *c, const char *p, size_t len, size_t done)
{
    size_t n;
    int err;

    if (SSL_write_ex(c->impl, p, len, &n) == 1)
        return (ssize_t)(done + n);
    err = map_error(c, 0);
    if (err == GH_AGAIN)
        c->can_write = 0; /* a write that must first read waits for the peer too (as before) */
    return done > 0 ? (ssize_t)done : err == 0 ? GH_ERROR : err;
}

static ssize_t tls_writev(gh_conn *c, const struct iovec *iov, int iovcnt)
{
    sock_queue *q;
    size_t total = 0, done = 0, off, len, n;
    const char *p;
    int err = 0;

    if (iovcnt == 1 && queues_alive == 0 && iov[0].iov_len <= PLAIN_MAX && iov[0].iov_len > 0)
        return write_one(c, iov[0].iov_base, iov[0].iov_len, 0);
    q = queue_of(c);
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (q != NULL) {
        /* Records of an earlier call go first; until they are out, nothing new is encrypted. */
        if (queue_flush(c, q) < 0)
            return GH_ERROR;
        done = take_sent(q);
        if (gh_buf_len(&q->out) > 0) {
            if (done > 0)
                return (ssize_t)done;
            c->can_write = 0;
            return GH_AGAIN;
        }
        if (q->held > 0 || done > total)
            return GH_ERROR; /* the caller did not offer again what it was told is not written yet */
        queue_free(c, q);
        q = NULL;
    }
    off = done;
    if ((p = piece_at(iov, iovcnt, off, &len)) == NULL)
        return (ssize_t)done;
    if (total - off <= len && len <= PLAIN_MAX)
        return write_one(c, p, len, done);
    if ((q = calloc(1, sizeof(*q))) == NULL || !SSL_set_ex_data(c->impl, queue_index, q)) {
        free(q);
        return done > 0 ? (ssize_t)done : GH_ERROR;
    }
    queues_alive++;
    q->gather = 1;
    while (p != NULL && q->nrec < GATHER_MAX && queue_append(q, "", 0)) {
        gh_buf_compact(&q->out);
        if (gh_buf_room(&q->out) < RECORD_ROOM)
            break;
        if (SSL_write_ex(c->impl, p, GH_MIN(len, PLAIN_MAX), &n) != 1) {
            err = map_error(c, 0);
            break;
        }
        q->rec[q->nrec].end = q->queued;
        q->rec[q->nrec].plain = (uint32_t)n;
        q->nrec++;
        q->held += n;
        off += n;
        p = piece_at(iov, iovcnt, off, &len);
    }
    q->gather = 0;
    if (queue_flush(c, q) < 0)
        return GH_ERROR;
    done += take_sent(q);
    queue_trim(c, q);
    if (done > 0)
        return (ssize_t)done;
    if (queue_of(c) != NULL) {
        c->can_write = 0;
        return GH_AGAIN;
    }
    return err != 0 ? err : GH_ERROR;
}

static int tls_pending(const gh_conn *c)
{
    return SSL_has_pending(c->impl);
}

static void tls_shutdown(gh_conn *c)
{
    SSL *ssl = c->impl;
    if (SSL_is_init_finished(ssl)) {
        SSL_set_quiet_shutdown(ssl, 0);
        if (SSL_shutdown(ssl) < 0)
            ERR_clear_error();
    }
    shutdown(c->io.fd, SHUT_WR);
}

static void tls_idle(gh_conn *c)
{
    /* The record buffers go back now (SSL_MODE_RELEASE_BUFFERS is off once the handshake is
     * done, see tls_handshake). What an idle session still holds (~14 KiB on OpenSSL 3.0: the
     * SSL object with its 32-pipeline record arrays, AEAD states, session, key shares) no public
     * call releases. */
    SSL_free_buffers(c->impl);
}

static const char *tls_alpn(const gh_conn *c, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(c->impl, &p, &n);
    *len = n;
    return n > 0 ? (const char *)p : NULL;
}

const char *gh_tls_conn_sni(const gh_conn *c)
{
    return c->ops == &gh_tls_conn_ops && c->impl != NULL ? SSL_get_servername(c->impl, TLSEXT_NAMETYPE_host_name)
                                                         : NULL;
}

const char *gh_tls_conn_version_name(const gh_conn *c)
{
    return c->ops == &gh_tls_conn_ops && c->impl != NULL ? SSL_get_version(c->impl) : NULL;
}

static void tls_dispose(gh_conn *c)
{
    sock_queue *q = queue_of(c);
    if (q != NULL)
        queue_free(c, q); /* records never sent: the connection is closing */
    SSL_free(c->impl);
}

static void tls_moved(gh_conn *c)
{
    BIO_set_data(SSL_get_rbio(c->impl), c);
    /* A new owner (a tunnel) has no idle phase of its own to give the buffers back in: let OpenSSL
     * free them whenever a read would block and a write is complete, as during the handshake. */
    SSL_set_mode(c->impl, SSL_MODE_RELEASE_BUFFERS);
    SSL_free_buffers(c->impl); /* the ones held since the handshake (refused, harmlessly, while bytes wait in them) */
}

const gh_conn_ops gh_tls_conn_ops = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .handshake = tls_handshake,
    .pending = tls_pending,
    .shutdown = tls_shutdown,
    .idle = tls_idle,
    .alpn = tls_alpn,
    .dispose = tls_dispose,
    .moved = tls_moved,
};

int gh_tls_conn_init(gh_conn *c, gh_tls_ctx *ctx, int fd, gh_io_cb cb, const gh_tls_alpn *alpn)
{
    BIO_METHOD *m = get_sock_method();
    BIO *bio = NULL;
    SSL *ssl = NULL;

    if (alpn_index < 0)
        alpn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (queue_index < 0)
        queue_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (m == NULL || alpn_index < 0 || queue_index < 0 || (bio = BIO_new(m)) == NULL ||
        (ssl = SSL_new(ctx->ssl)) == NULL) {
        BIO_free(bio);
        return GH_ERROR;
    }
    gh_conn_init(c, fd, cb);
    c->ops = &gh_tls_conn_ops;
    c->impl = ssl;
    SSL_set_ex_data(ssl, alpn_index, (void *)alpn); /* the listener's, which outlives the session */
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_accept_state(ssl);
    return GH_OK;
}
