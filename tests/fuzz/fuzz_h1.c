/*
 * libFuzzer target for src/http/h1.c: the request and response parsers and the chunked
 * decoder on the same input, with invariants a proxy relies on checked after each success.
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       -o build-fuzz/fuzz_h1 tests/fuzz/fuzz_h1.c src/http/h1.c
 *   build-fuzz/fuzz_h1 -max_total_time=60 tests/fuzz/corpus_h1
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            __builtin_trap();                                                                                          \
    } while (0)

static gh_h1_request req, req2;
static gh_h1_response res;

static int in_buf(gh_h1_str s, const char *buf, size_t len)
{
    return s.len == 0 || (s.p >= buf && s.len <= len && (size_t)(s.p - buf) <= len - s.len);
}

static int clean(gh_h1_str s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.p[i] == '\r' || s.p[i] == '\n' || s.p[i] == '\0' || s.p[i] == 0x7f)
            return 0;
    return 1;
}

static void check_headers(const gh_h1_header *h, size_t n, const char *buf, size_t len)
{
    unsigned ncl = 0, nte = 0;

    REQUIRE(n <= GH_H1_MAX_HEADERS);
    for (size_t i = 0; i < n; i++) {
        REQUIRE(h[i].name.len > 0 && in_buf(h[i].name, buf, len) && in_buf(h[i].value, buf, len));
        REQUIRE(clean(h[i].name) && clean(h[i].value));
        REQUIRE(memchr(h[i].name.p, ':', h[i].name.len) == NULL);
        REQUIRE(memchr(h[i].name.p, ' ', h[i].name.len) == NULL);
        if (h[i].value.len)
            REQUIRE(h[i].value.p[0] != ' ' && h[i].value.p[h[i].value.len - 1] != ' ');
        ncl += h[i].kind == GH_HDR_CONTENT_LENGTH && !h[i].hop;
        nte += h[i].kind == GH_HDR_TRANSFER_ENCODING;
        REQUIRE(h[i].kind != GH_HDR_CONTENT_LENGTH || gh_h1_str_ieq(h[i].name, "content-length"));
        REQUIRE(h[i].kind != GH_HDR_HOST || gh_h1_str_ieq(h[i].name, "host"));
    }
    /* What is forwarded frames the message one way only. */
    REQUIRE(ncl <= 1 && nte <= 1 && !(ncl && nte));
}

static size_t count_kind(const gh_h1_header *h, size_t n, int kind)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += h[i].kind == kind;
    return c;
}

/* The path policy: what it accepts, merged, is accepted again, has no "//" and does not change twice. */
static void fuzz_path(gh_h1_str path)
{
    static char tmp[GH_H1_MAX_HEAD];
    size_t n, n2;

    if (!gh_h1_path_normal(path) || path.len > sizeof(tmp))
        return;
    memcpy(tmp, path.p, path.len);
    n = gh_h1_path_merge_slashes(tmp, path.len);
    REQUIRE(n <= path.len && n > 0 && tmp[0] == '/');
    const char *q = memchr(tmp, '?', n);
    REQUIRE(memmem(tmp, q ? (size_t)(q - tmp) : n, "//", 2) == NULL);
    REQUIRE(gh_h1_path_normal((gh_h1_str){tmp, n}));
    n2 = gh_h1_path_merge_slashes(tmp, n);
    REQUIRE(n2 == n);
}

static void fuzz_request(const char *buf, size_t len, size_t cut)
{
    int rc = gh_h1_parse_request(buf, len, &req);

    REQUIRE(rc >= 0 || rc == -400 || rc == -414 || rc == -431 || rc == -417 || rc == -501 || rc == -505);
    if (rc <= 0)
        return;
    REQUIRE((size_t)rc <= len && rc <= GH_H1_MAX_HEAD);
    check_headers(req.headers, req.nheaders, buf, len);
    REQUIRE(req.method.len > 0 && req.target.len > 0 && clean(req.target));
    REQUIRE(memchr(req.target.p, ' ', req.target.len) == NULL);
    REQUIRE(req.minor == 0 || req.minor == 1);
    REQUIRE(req.minor == 0 || count_kind(req.headers, req.nheaders, GH_HDR_HOST) == 1);
    REQUIRE(count_kind(req.headers, req.nheaders, GH_HDR_HOST) <= 1);
    REQUIRE(memchr(req.host.p, '@', req.host.len) == NULL && memchr(req.host.p, ' ', req.host.len) == NULL);
    REQUIRE(req.body != GH_H1_BODY_CHUNKED || req.minor == 1);
    REQUIRE(req.body == GH_H1_BODY_NONE || req.body == GH_H1_BODY_LENGTH || req.body == GH_H1_BODY_CHUNKED);
    if (req.target_form == GH_H1_ORIGIN_FORM || req.target_form == GH_H1_ABSOLUTE_FORM)
        REQUIRE(req.path.len > 0 && req.path.p[0] == '/');
    if (req.target_form == GH_H1_ORIGIN_FORM || req.target_form == GH_H1_ABSOLUTE_FORM)
        fuzz_path(req.path);
    /* The head alone parses the same; any shorter prefix needs more bytes. */
    REQUIRE(gh_h1_parse_request(buf, (size_t)rc, &req2) == rc);
    REQUIRE(gh_h1_parse_request(buf, cut % (size_t)rc, &req2) == 0);
}

static void fuzz_response(const char *buf, size_t len, int head)
{
    int rc = gh_h1_parse_response(buf, len, head, &res);

    REQUIRE(rc >= 0 || rc == -502);
    if (rc <= 0)
        return;
    REQUIRE((size_t)rc <= len);
    check_headers(res.headers, res.nheaders, buf, len);
    REQUIRE(res.status >= 100 && res.status <= 599);
    REQUIRE(!head || res.body == GH_H1_BODY_NONE);
    REQUIRE(gh_h1_parse_response(buf, (size_t)rc, head, &res) == rc);
}

struct decoded {
    ssize_t rc;
    int done;
    char *data; /* decoded data, then whatever followed the body */
    size_t ndata, nrest;
};

/* Decodes in[0..n) in two pieces cut at `cut` (cut == n: in one piece). */
static void decode(const char *in, size_t n, size_t cut, struct decoded *d)
{
    gh_h1_chunked c;
    char *tmp = malloc(n + 1);
    size_t pieces[2] = {cut, n - cut}, at = 0;

    memset(&c, 0, sizeof(c));
    d->data = malloc(n + 1);
    d->ndata = d->nrest = 0;
    d->rc = GH_H1_CHUNKED_MORE;
    for (int i = 0; i < 2 && d->rc == GH_H1_CHUNKED_MORE; i++) {
        size_t len = pieces[i];
        memcpy(tmp, in + at, len);
        at += len;
        d->rc = gh_h1_chunked_decode(&c, tmp, &len);
        REQUIRE(d->rc >= GH_H1_CHUNKED_MORE);
        if (d->rc == GH_H1_CHUNKED_ERROR)
            break;
        REQUIRE(len <= pieces[i] && (d->rc < 0 || len + (size_t)d->rc <= pieces[i]));
        memcpy(d->data + d->ndata, tmp, len);
        d->ndata += len;
        if (d->rc >= 0) {
            memcpy(d->data + d->ndata, tmp + len, (size_t)d->rc);
            memcpy(d->data + d->ndata + d->rc, in + at, n - at);
            d->nrest = (size_t)d->rc + n - at;
        }
    }
    d->done = gh_h1_chunked_done(&c);
    REQUIRE(d->done == (d->rc >= 0));
    free(tmp);
}

static void fuzz_chunked(const char *in, size_t n, size_t cut)
{
    struct decoded whole, split;

    decode(in, n, n, &whole);
    decode(in, n, cut % (n + 1), &split);
    REQUIRE((whole.rc == GH_H1_CHUNKED_ERROR) == (split.rc == GH_H1_CHUNKED_ERROR));
    if (whole.rc != GH_H1_CHUNKED_ERROR) {
        REQUIRE(whole.done == split.done && whole.ndata == split.ndata && whole.nrest == split.nrest);
        REQUIRE(memcmp(whole.data, split.data, whole.ndata + whole.nrest) == 0);
        REQUIRE(whole.ndata + whole.nrest <= n);
    }
    free(whole.data);
    free(split.data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    size_t cut = size ? (size_t)data[0] * 131u + data[size - 1] : 0;
    int rc;

    fuzz_request(buf, size, cut);
    fuzz_response(buf, size, 0);
    fuzz_response(buf, size, 1);
    fuzz_chunked(buf, size, cut);
    /* A chunked request's body, so that the decoder also sees well-framed input. */
    rc = gh_h1_parse_request(buf, size, &req);
    if (rc > 0 && req.body == GH_H1_BODY_CHUNKED)
        fuzz_chunked(buf + rc, size - (size_t)rc, cut);
    return 0;
}
