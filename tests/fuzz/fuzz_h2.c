/*
 * libFuzzer target for the HTTP/2 front at frame level: the input is what a client sends after
 * the connection preface (frames, HPACK blocks), fed in two pieces to a libnghttp2 server
 * session set up as src/proxy/h2_server.c sets up its own (same nghttp2 options, same SETTINGS
 * defaults), whose header callbacks go through gatehouse's own request-head code
 * (src/http/h2_head.c: gh_h2_head_add, gh_h2_head_request). After every head that is accepted,
 * the invariant a proxy lives by is checked: the HTTP/1.1 head it becomes re-parses
 * (src/http/h1.c) as exactly ONE request, of the same length, with the same method, target,
 * Host, header count and framing: nothing a client sends over HTTP/2 can become a second
 * request, a second header or a framing field upstream. CONNECT is in it: plain (RFC 9113 8.5)
 * and extended (RFC 8441, offered as h2_server.c offers it), whose WebSocket form goes upstream
 * as a GET of its :path (h2_server.c ws_request; its three added fields are ours, not checked).
 *
 * h2_server.c itself (its work queue, flood and limit counters, flow control, memory accounting)
 * is driven by tests/fuzz/fuzz_front.c, on an in-memory conn (src/net/memconn.h) with a real
 * worker context; and through real sockets by tests/integration/t_h2_attacks.py.
 *
 *   make fuzz FUZZ_SECONDS=60        (builds build-fuzz/fuzz_h2 and runs it on tests/fuzz/corpus_h2)
 */
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1.h"
#include "http/h2_head.h"

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            __builtin_trap();                                                                                          \
    } while (0)

#define MAX_STREAMS 16
#define LIST_MAX    (64 * 1024) /* http2 { max_header_list_size 64k } */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

typedef struct fz_stream {
    int32_t id;
    gh_h2_head head;
    int started;
    int body;
    uint64_t length, got;
} fz_stream;

static fz_stream streams[MAX_STREAMS];
static gh_h1_request req, again;
static char out[128 * 1024];

static fz_stream *find(int32_t id)
{
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].id == id)
            return &streams[i];
    return NULL;
}

static int put(size_t *n, const char *p, size_t len)
{
    if (*n + len > sizeof(out))
        return -1;
    memcpy(out + *n, p, len);
    *n += len;
    return 0;
}

/* The HTTP/1.1 head the request becomes upstream (hop-by-hop fields dropped, as the exchange does). */
static size_t serialize(const gh_h1_request *r, size_t *nkept)
{
    size_t n = 0;
    int bad = 0;
    *nkept = 0;
    bad |= put(&n, r->method.p, r->method.len) | put(&n, " ", 1) | put(&n, r->target.p, r->target.len);
    bad |= put(&n, " HTTP/1.1\r\nhost: ", 17) | put(&n, r->host.p, r->host.len) | put(&n, "\r\n", 2);
    for (size_t i = 0; i < r->nheaders; i++) {
        const gh_h1_header *h = &r->headers[i];
        if (h->hop || h->kind == GH_HDR_HOST)
            continue;
        bad |= put(&n, h->name.p, h->name.len) | put(&n, ": ", 2) | put(&n, h->value.p, h->value.len);
        bad |= put(&n, "\r\n", 2);
        ++*nkept;
    }
    if (r->body == GH_H1_BODY_CHUNKED)
        bad |= put(&n, "transfer-encoding: chunked\r\n", 28);
    bad |= put(&n, "\r\n", 2);
    return bad ? 0 : n;
}

static void check_request(gh_h1_request *r)
{
    size_t nkept, len;

    if (r->flags & GH_H1_F_CONNECT) {
        REQUIRE(r->body == GH_H1_BODY_NONE);         /* its DATA is a tunnel's, never a body */
        for (size_t i = 0; i < r->protocol.len; i++) /* a token: nothing that could end a line or a field */
            REQUIRE(r->protocol.p[i] > 0x20 && r->protocol.p[i] < 0x7f && r->protocol.p[i] != ':');
        REQUIRE((r->protocol.len > 0) == (r->target_form == GH_H1_ORIGIN_FORM));
        if (r->protocol.len > 0)
            r->method = (gh_h1_str){"GET", 3}; /* what ws_request sends upstream */
    }
    len = serialize(r, &nkept);
    if (len == 0)
        return; /* bigger than our buffer: h1's own limits would refuse it (431) */
    int rc = gh_h1_parse_request(out, len, &again);
    if (rc == -414 || rc == -431)
        return; /* a size limit of the HTTP/1.1 parser, not a second reading */
    if (rc == -400 && r->target_form == GH_H1_AUTHORITY_FORM && memchr(r->target.p, ':', r->target.len) == NULL)
        return; /* CONNECT without a port: h2_head lets it through, the exchange refuses it
                   (h2_strict_connect_without_port) */
    REQUIRE(rc == (int)len);
    REQUIRE(again.method.len == r->method.len && memcmp(again.method.p, r->method.p, r->method.len) == 0);
    REQUIRE(again.target.len == r->target.len && memcmp(again.target.p, r->target.p, r->target.len) == 0);
    REQUIRE(again.host.len == r->host.len && memcmp(again.host.p, r->host.p, r->host.len) == 0);
    REQUIRE(again.nheaders == nkept + 1 + (r->body == GH_H1_BODY_CHUNKED));
    REQUIRE(again.body == r->body);
    if (r->body == GH_H1_BODY_LENGTH)
        REQUIRE(again.content_length == r->content_length);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s, (void)ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    fz_stream *st = find(0);
    if (st == NULL)
        return 0;
    st->id = f->hd.stream_id;
    st->started = 0;
    st->got = 0;
    gh_h2_head_init(&st->head, LIST_MAX);
    st->head.extended = 1; /* SETTINGS_ENABLE_CONNECT_PROTOCOL, as h2_server.c sends it */
    return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen, const uint8_t *value,
                     size_t vlen, uint8_t flags, void *ud)
{
    (void)s, (void)flags, (void)ud;
    fz_stream *st = find(f->hd.stream_id);
    if (st == NULL || st->started || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    gh_h2_head_add(&st->head, name, nlen, value, vlen);
    REQUIRE(st->head.len <= st->head.cap && st->head.nfields <= GH_H2_MAX_FIELDS);
    return 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    fz_stream *st = f->hd.stream_id ? find(f->hd.stream_id) : NULL;
    int es = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (st == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->started) {
        st->started = 1;
        int rc = gh_h2_head_request(&st->head, es, &req);
        REQUIRE(rc == 0 || rc == GH_H2_MALFORMED || rc == GH_H2_TOO_LARGE || rc == -417);
        if (rc != 0) {
            nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
            return 0;
        }
        REQUIRE(req.nheaders <= GH_H1_MAX_HEADERS);
        check_request(&req);
        st->body = req.body;
        st->length = req.content_length;
    } else if (f->hd.type == NGHTTP2_DATA && es && st->body == GH_H1_BODY_LENGTH && st->got != st->length) {
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
    (void)flags, (void)data, (void)ud;
    fz_stream *st = find(id);
    if (st != NULL)
        st->got += len;
    nghttp2_session_consume(s, id, len); /* as the exchange takes the bytes */
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s, (void)code, (void)ud;
    fz_stream *st = find(id);
    if (st != NULL) {
        gh_h2_head_dispose(&st->head);
        memset(st, 0, sizeof(*st));
    }
    return 0;
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)s, (void)data, (void)flags, (void)ud;
    return (ssize_t)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static nghttp2_session_callbacks *cbs;
    static nghttp2_option *opt;
    nghttp2_session *s;

    if (cbs == NULL) {
        if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
            abort();
        nghttp2_session_callbacks_set_send_callback(cbs, on_send);
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        /* the options of h2_server.c options() */
        nghttp2_option_set_no_auto_window_update(opt, 1);
        nghttp2_option_set_max_outbound_ack(opt, 1000);
        nghttp2_option_set_max_settings(opt, 32);
    }
    if (size < 1 || nghttp2_session_server_new2(&s, cbs, NULL, opt) != 0)
        return 0;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65536},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, 16384},          {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 4096},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, LIST_MAX}, {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
    };
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    memset(streams, 0, sizeof(streams));
    /* the first byte chooses where the input is cut in two reads (incremental parsing) */
    size_t cut = size > 1 ? (size_t)data[0] * (size - 1) / 255 : 0;
    data++, size--;
    if (nghttp2_session_mem_recv(s, (const uint8_t *)preface, sizeof(preface) - 1) >= 0 &&
        nghttp2_session_mem_recv(s, data, cut) >= 0 && nghttp2_session_send(s) == 0)
        if (nghttp2_session_mem_recv(s, data + cut, size - cut) >= 0)
            nghttp2_session_send(s);
    nghttp2_session_del(s);
    for (int i = 0; i < MAX_STREAMS; i++)
        if (streams[i].id != 0)
            gh_h2_head_dispose(&streams[i].head);
    return 0;
}
