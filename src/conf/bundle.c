/*
 * bundle: the recorded inputs of a configuration load (see bundle.h).
 *
 * Format (native byte order: it never leaves the host), a 16-byte header
 * "GHRB", version, entry count, 0; then entries, each a 12-byte header (kind,
 * key length, value length) followed by the key and the value:
 *   FILE  key path;          value canonical path, NUL, the file's bytes
 *   GLOB  key pattern;       value the matches, each NUL-terminated, sorted
 *   NAME  key host NUL port; value addresses, ADDR_REC bytes each
 */
#include "conf/bundle.h"

#include "conf/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC      "GHRB"
#define VERSION    1u
#define HEAD_LEN   16u
#define ENTRY_HEAD 12u
#define MAX_KEY    (2u * PATH_MAX)
#define MAX_VALUE  (GH_CFG_MAX_PEM + PATH_MAX + 1u) /* the largest file with its path */
#define MAX_GLOB   4096u                            /* matches of one include pattern */
#define MAX_ADDRS  64u                              /* addresses of one name */
#define ADDR_REC   24u /* u16 family, u16 port (network order), u32 scope, 16 address bytes */

_Static_assert(GH_CFG_MAX_FILE <= GH_CFG_MAX_PEM, "a recorded read takes files of either limit");

enum { KIND_FILE = 1, KIND_GLOB, KIND_NAME };

typedef struct entry {
    uint32_t kind, klen, vlen;
    size_t key; /* offsets into buf: a recording's buf moves as it grows */
    size_t val;
} entry;

struct gh_bundle {
    gh_conf_source src; /* first: the source's arg is the bundle */
    int recording;
    int failed; /* a recording ran out of memory or room: it must not be sent */
    char *buf;  /* the serialized bundle: owned (recording, parsed copy) */
    size_t len, cap;
    entry *entries;
    size_t nentries, cap_entries;
};

/* ---- building ---- */

static int reserve(gh_bundle *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    char *p;

    if (more > GH_BUNDLE_MAX || b->len > GH_BUNDLE_MAX - more)
        return -1;
    while (cap < b->len + more)
        cap *= 2;
    if (cap == b->cap)
        return 0;
    if ((p = realloc(b->buf, cap)) == NULL)
        return -1;
    b->buf = p;
    b->cap = cap;
    return 0;
}

static void put32(char *at, uint32_t v)
{
    memcpy(at, &v, 4);
}

static uint32_t get32(const char *at)
{
    uint32_t v;

    memcpy(&v, at, 4);
    return v;
}

static int index_entry(gh_bundle *b, uint32_t kind, size_t key, uint32_t klen, size_t val, uint32_t vlen)
{
    if (b->nentries == b->cap_entries) {
        size_t cap = b->cap_entries ? 2 * b->cap_entries : 16;
        entry *e;

        if (cap > GH_BUNDLE_MAX_ENTRIES || (e = realloc(b->entries, cap * sizeof(*e))) == NULL)
            return -1;
        b->entries = e;
        b->cap_entries = cap;
    }
    b->entries[b->nentries++] = (entry){kind, klen, vlen, key, val};
    return 0;
}

/* Appends an entry whose value is v1 then v2; marks the recording failed when it cannot. */
static const entry *append(gh_bundle *b, uint32_t kind, const char *key, size_t klen, const void *v1, size_t l1,
                           const void *v2, size_t l2)
{
    size_t at = b->len;

    if (b->failed || klen > MAX_KEY || l1 + l2 > MAX_VALUE || reserve(b, ENTRY_HEAD + klen + l1 + l2) < 0 ||
        index_entry(b, kind, at + ENTRY_HEAD, (uint32_t)klen, at + ENTRY_HEAD + klen, (uint32_t)(l1 + l2)) < 0) {
        b->failed = 1;
        return NULL;
    }
    put32(b->buf + at, kind);
    put32(b->buf + at + 4, (uint32_t)klen);
    put32(b->buf + at + 8, (uint32_t)(l1 + l2));
    memcpy(b->buf + at + ENTRY_HEAD, key, klen);
    if (l1)
        memcpy(b->buf + at + ENTRY_HEAD + klen, v1, l1);
    if (l2)
        memcpy(b->buf + at + ENTRY_HEAD + klen + l1, v2, l2);
    b->len += ENTRY_HEAD + klen + l1 + l2;
    return &b->entries[b->nentries - 1];
}

static const entry *find(const gh_bundle *b, uint32_t kind, const char *key, size_t klen)
{
    for (size_t i = 0; i < b->nentries; i++) {
        const entry *e = &b->entries[i];

        if (e->kind == kind && e->klen == klen && memcmp(b->buf + e->key, key, klen) == 0)
            return e;
    }
    return NULL;
}

/* ---- the source ---- */

static gh_bundle *of(const gh_conf_source *s)
{
    return s->arg;
}

static int file_from(const gh_bundle *b, const entry *e, size_t max, gh_conf_file *out)
{
    const char *v = b->buf + e->val, *nul = memchr(v, '\0', e->vlen);
    size_t rlen, dlen;

    if (nul == NULL)
        return EINVAL; /* checked when parsed: cannot happen */
    rlen = (size_t)(nul - v);
    dlen = e->vlen - rlen - 1;
    if (dlen > max)
        return EFBIG;
    out->data = malloc(dlen + 1);
    out->real = strndup(v, rlen);
    if (out->data == NULL || out->real == NULL) {
        gh_conf_file_dispose(out);
        return ENOMEM;
    }
    memcpy(out->data, nul + 1, dlen);
    out->data[dlen] = '\0';
    out->len = dlen;
    return 0;
}

static int src_read(const gh_conf_source *s, const char *path, size_t max, gh_conf_file *out)
{
    gh_bundle *b = of(s);
    const entry *e = find(b, KIND_FILE, path, strlen(path));
    gh_conf_file f = {0};
    int rc;

    memset(out, 0, sizeof(*out));
    if (e == NULL && !b->recording)
        return ENOENT; /* not what the master read: never the disk */
    if (e == NULL) {
        /* The largest file any caller accepts, so that a second reader with a larger limit finds it. */
        if ((rc = gh_conf_source_fs()->read(gh_conf_source_fs(), path, GH_CFG_MAX_PEM, &f)) != 0)
            return rc;
        e = append(b, KIND_FILE, path, strlen(path), f.real, strlen(f.real) + 1, f.data, f.len);
        gh_conf_file_dispose(&f);
        if (e == NULL)
            return ENOMEM;
    }
    return file_from(b, e, max, out);
}

static int glob_from(const gh_bundle *b, const entry *e, glob_t *g)
{
    const char *v = b->buf + e->val, *end = v + e->vlen;
    size_t n = 0;

    for (const char *p = v; p < end; p += strlen(p) + 1)
        n++;
    memset(g, 0, sizeof(*g));
    if (n == 0)
        return GLOB_NOMATCH;
    if ((g->gl_pathv = calloc(n + 1, sizeof(char *))) == NULL)
        return GLOB_NOSPACE;
    for (const char *p = v; p < end; p += strlen(p) + 1)
        if ((g->gl_pathv[g->gl_pathc++] = strdup(p)) == NULL)
            return GLOB_NOSPACE; /* the caller's globfree frees what is there */
    return 0;
}

static int src_glob(const gh_conf_source *s, const char *pattern, glob_t *g)
{
    gh_bundle *b = of(s);
    const entry *e = find(b, KIND_GLOB, pattern, strlen(pattern));
    glob_t real;
    char *list = NULL;
    size_t len = 0;
    int rc;

    memset(g, 0, sizeof(*g));
    if (e == NULL && !b->recording)
        return GLOB_ABORTED;
    if (e == NULL) {
        memset(&real, 0, sizeof(real));
        rc = gh_conf_source_fs()->glob(gh_conf_source_fs(), pattern, &real);
        if (rc != 0 && rc != GLOB_NOMATCH) {
            globfree(&real);
            return rc;
        }
        for (size_t i = 0; rc == 0 && i < real.gl_pathc; i++)
            len += strlen(real.gl_pathv[i]) + 1;
        if (len > MAX_VALUE || real.gl_pathc > MAX_GLOB || (len > 0 && (list = malloc(len)) == NULL)) {
            globfree(&real);
            return GLOB_NOSPACE;
        }
        len = 0;
        for (size_t i = 0; rc == 0 && i < real.gl_pathc; i++) {
            size_t n = strlen(real.gl_pathv[i]) + 1;

            memcpy(list + len, real.gl_pathv[i], n);
            len += n;
        }
        globfree(&real);
        e = append(b, KIND_GLOB, pattern, strlen(pattern), list, len, NULL, 0);
        free(list);
        if (e == NULL)
            return GLOB_NOSPACE;
    }
    return glob_from(b, e, g);
}

static void src_globfree(const gh_conf_source *s, glob_t *g)
{
    (void)s;
    for (size_t i = 0; g->gl_pathv != NULL && i < g->gl_pathc; i++)
        free(g->gl_pathv[i]);
    free(g->gl_pathv);
    memset(g, 0, sizeof(*g));
}

static void src_freeaddrinfo(const gh_conf_source *s, struct addrinfo *res)
{
    (void)s;
    while (res != NULL) {
        struct addrinfo *next = res->ai_next;

        free(res); /* one block with its sockaddr */
        res = next;
    }
}

typedef struct ai_block {
    struct addrinfo ai;
    struct sockaddr_storage ss;
} ai_block;

/* The addrinfo list of a NAME entry: the records were checked when recorded or parsed. */
static int addrs_from(const gh_bundle *b, const entry *e, struct addrinfo **res)
{
    struct addrinfo *head = NULL, **tail = &head;

    for (uint32_t off = 0; off + ADDR_REC <= e->vlen; off += ADDR_REC) {
        const char *r = b->buf + e->val + off;
        ai_block *blk = calloc(1, sizeof(*blk));
        uint16_t family, port;
        uint32_t scope;

        if (blk == NULL) {
            src_freeaddrinfo(NULL, head);
            return EAI_MEMORY;
        }
        memcpy(&family, r, 2);
        memcpy(&port, r + 2, 2);
        memcpy(&scope, r + 4, 4);
        if (family == AF_INET) {
            struct sockaddr_in *sin = (struct sockaddr_in *)&blk->ss;

            sin->sin_family = AF_INET;
            sin->sin_port = port;
            memcpy(&sin->sin_addr, r + 8, 4);
            blk->ai.ai_addrlen = sizeof(*sin);
        } else {
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&blk->ss;

            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = port;
            sin6->sin6_scope_id = scope;
            memcpy(&sin6->sin6_addr, r + 8, 16);
            blk->ai.ai_addrlen = sizeof(*sin6);
        }
        blk->ai.ai_family = family;
        blk->ai.ai_socktype = SOCK_STREAM;
        blk->ai.ai_protocol = IPPROTO_TCP;
        blk->ai.ai_addr = (struct sockaddr *)&blk->ss;
        *tail = &blk->ai;
        tail = &blk->ai.ai_next;
    }
    *res = head;
    return head != NULL ? 0 : EAI_NONAME;
}

/* The resolver's answer as records: IPv4 and IPv6 only, at most MAX_ADDRS. */
static size_t to_records(const struct addrinfo *ai, char *out)
{
    size_t n = 0;

    for (; ai != NULL && n < MAX_ADDRS; ai = ai->ai_next) {
        char *r = out + n * ADDR_REC;
        uint16_t family = (uint16_t)ai->ai_family;
        uint32_t scope = 0;

        memset(r, 0, ADDR_REC);
        if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;

            memcpy(r + 2, &sin->sin_port, 2);
            memcpy(r + 8, &sin->sin_addr, 4);
        } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ai->ai_addr;

            memcpy(r + 2, &sin6->sin6_port, 2);
            scope = sin6->sin6_scope_id;
            memcpy(r + 8, &sin6->sin6_addr, 16);
        } else {
            continue;
        }
        memcpy(r, &family, 2);
        memcpy(r + 4, &scope, 4);
        n++;
    }
    return n;
}

static int src_getaddrinfo(const gh_conf_source *s, const char *host, const char *port, const struct addrinfo *hints,
                           struct addrinfo **res)
{
    gh_bundle *b = of(s);
    size_t hl = strlen(host), pl = strlen(port), n;
    char key[NI_MAXHOST + 1 + NI_MAXSERV], recs[MAX_ADDRS * ADDR_REC];
    const entry *e;
    struct addrinfo *real = NULL;
    int rc;

    *res = NULL;
    if (hl >= NI_MAXHOST || pl >= NI_MAXSERV)
        return EAI_NONAME;
    memcpy(key, host, hl + 1);
    memcpy(key + hl + 1, port, pl);
    e = find(b, KIND_NAME, key, hl + 1 + pl);
    if (e == NULL && !b->recording)
        return EAI_NONAME; /* a worker never asks the resolver */
    if (e == NULL) {
        if ((rc = gh_conf_source_fs()->getaddrinfo(gh_conf_source_fs(), host, port, hints, &real)) != 0)
            return rc;
        n = to_records(real, recs);
        freeaddrinfo(real);
        if (n == 0)
            return EAI_NONAME;
        if ((e = append(b, KIND_NAME, key, hl + 1 + pl, recs, n * ADDR_REC, NULL, 0)) == NULL)
            return EAI_MEMORY;
    }
    return addrs_from(b, e, res);
}

static gh_bundle *bundle_new(int recording)
{
    gh_bundle *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return NULL;
    b->src = (gh_conf_source){src_read, src_glob, src_globfree, src_getaddrinfo, src_freeaddrinfo, b};
    b->recording = recording;
    return b;
}

gh_bundle *gh_bundle_recorder(void)
{
    gh_bundle *b = bundle_new(1);

    if (b != NULL && reserve(b, HEAD_LEN) < 0) {
        gh_bundle_free(b);
        return NULL;
    }
    if (b != NULL)
        b->len = HEAD_LEN; /* written by gh_bundle_memfd, once the count is known */
    return b;
}

void gh_bundle_free(gh_bundle *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    free(b->entries);
    free(b);
}

const gh_conf_source *gh_bundle_source(gh_bundle *b)
{
    return &b->src;
}

size_t gh_bundle_size(const gh_bundle *b)
{
    return b->len;
}

const void *gh_bundle_data(const gh_bundle *b)
{
    if (b->recording && b->len >= HEAD_LEN) {
        /* The header is only known now: the count of what was recorded. */
        memcpy(b->buf, MAGIC, 4);
        put32(b->buf + 4, VERSION);
        put32(b->buf + 8, (uint32_t)b->nentries);
        put32(b->buf + 12, 0);
    }
    return b->buf;
}

/* ---- parsing ---- */

static int bad(char *err, size_t errlen, const char *why, size_t at)
{
    snprintf(err, errlen, "invalid reload bundle: %s at byte %zu", why, at);
    return -1;
}

/* Checks the value of one entry against its kind, so that the lookups can trust it. */
static const char *check_value(uint32_t kind, const char *k, uint32_t klen, const char *v, uint32_t vlen)
{
    switch (kind) {
    case KIND_FILE: {
        const char *nul = memchr(v, '\0', vlen < PATH_MAX + 1 ? vlen : PATH_MAX + 1);

        if (memchr(k, '\0', klen) != NULL)
            return "a file path with a NUL";
        return nul == NULL || nul == v ? "a file without its canonical path" : NULL;
    }
    case KIND_GLOB: {
        size_t n = 0;

        if (memchr(k, '\0', klen) != NULL)
            return "a pattern with a NUL";
        if (vlen > 0 && v[vlen - 1] != '\0')
            return "an unterminated glob match";
        for (const char *p = v; p < v + vlen; p += strlen(p) + 1)
            if (++n > MAX_GLOB || *p == '\0')
                return "a bad glob match list";
        return NULL;
    }
    case KIND_NAME: {
        const char *nul = memchr(k, '\0', klen);

        if (nul == NULL || nul == k || memchr(nul + 1, '\0', klen - (size_t)(nul - k) - 1) != NULL)
            return "a name key that is not host NUL port";
        if (vlen == 0 || vlen % ADDR_REC != 0 || vlen / ADDR_REC > MAX_ADDRS)
            return "a bad address count";
        for (uint32_t off = 0; off < vlen; off += ADDR_REC) {
            uint16_t family;

            memcpy(&family, v + off, 2);
            if (family != AF_INET && family != AF_INET6)
                return "an address that is not IPv4 or IPv6";
        }
        return NULL;
    }
    default:
        return "an unknown entry kind";
    }
}

static int parse_entries(gh_bundle *b, char *err, size_t errlen)
{
    size_t at = HEAD_LEN;
    uint32_t count;

    if (b->len < HEAD_LEN || memcmp(b->buf, MAGIC, 4) != 0 || get32(b->buf + 4) != VERSION)
        return bad(err, errlen, "no header", 0);
    count = get32(b->buf + 8);
    if (count > GH_BUNDLE_MAX_ENTRIES)
        return bad(err, errlen, "too many entries", 8);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t kind, klen, vlen;
        const char *why;

        if (b->len - at < ENTRY_HEAD)
            return bad(err, errlen, "a truncated entry", at);
        kind = get32(b->buf + at);
        klen = get32(b->buf + at + 4);
        vlen = get32(b->buf + at + 8);
        if (klen == 0 || klen > MAX_KEY || vlen > MAX_VALUE || b->len - at - ENTRY_HEAD < (size_t)klen + vlen)
            return bad(err, errlen, "an entry longer than the bundle", at);
        why = check_value(kind, b->buf + at + ENTRY_HEAD, klen, b->buf + at + ENTRY_HEAD + klen, vlen);
        if (why != NULL)
            return bad(err, errlen, why, at);
        if (index_entry(b, kind, at + ENTRY_HEAD, klen, at + ENTRY_HEAD + klen, vlen) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        at += ENTRY_HEAD + (size_t)klen + vlen;
    }
    if (at != b->len)
        return bad(err, errlen, "bytes after the last entry", at);
    return 0;
}

gh_bundle *gh_bundle_parse(const void *data, size_t len, char *err, size_t errlen)
{
    gh_bundle *b;

    if (len > GH_BUNDLE_MAX) {
        snprintf(err, errlen, "invalid reload bundle: %zu bytes, at most %u", len, GH_BUNDLE_MAX);
        return NULL;
    }
    if ((b = bundle_new(0)) == NULL || (b->buf = malloc(len ? len : 1)) == NULL) {
        gh_bundle_free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(b->buf, data, len);
    b->len = b->cap = len;
    if (parse_entries(b, err, errlen) < 0) {
        gh_bundle_free(b);
        return NULL;
    }
    return b;
}

gh_bundle *gh_bundle_from_memfd(int fd, char *err, size_t errlen)
{
    const int need = F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK;
    struct stat st;
    gh_bundle *b;
    void *map;
    int seals = fcntl(fd, F_GET_SEALS);

    /* Unsealed, the bytes could change between the checks below and their use. */
    if (seals < 0 || (seals & need) != need) {
        snprintf(err, errlen, "the reload bundle is not sealed");
        return NULL;
    }
    if (fstat(fd, &st) < 0 || st.st_size < (off_t)HEAD_LEN || (uint64_t)st.st_size > GH_BUNDLE_MAX) {
        snprintf(err, errlen, "invalid reload bundle: size %lld", (long long)st.st_size);
        return NULL;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map the reload bundle: %s", strerror(errno));
        return NULL;
    }
    /* One copy (memcpy from the page cache): the bundle then outlives the mapping and the fd. */
    b = gh_bundle_parse(map, (size_t)st.st_size, err, errlen);
    munmap(map, (size_t)st.st_size);
    return b;
}

int gh_bundle_memfd(const gh_bundle *b)
{
    const char *data;
    size_t off = 0;
    int fd;

    if (!b->recording || b->failed) {
        errno = b->failed ? E2BIG : EINVAL;
        return -1;
    }
    data = gh_bundle_data(b);
    if ((fd = memfd_create("gatehouse-reload", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0)
        return -1;
    while (off < b->len) {
        ssize_t n = write(fd, data + off, b->len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        off += (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
        goto fail;
    return fd;
fail : {
    int e = errno;

    close(fd);
    errno = e;
    return -1;
}
}
