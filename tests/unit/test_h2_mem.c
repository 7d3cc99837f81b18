/* h2_mem: a server session on the connection allocator serves a request from an in-memory client;
 * what it maps, what is resident before and after proxy__h2_mem_idle, and that nothing leaks. */
#include <nghttp2/nghttp2.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proxy/h2_mem.h"
#include "unit.h"

typedef struct pipe_buf {
    uint8_t data[65536];
    size_t len;
} pipe_buf;

static ssize_t to_buf(nghttp2_session *s, const uint8_t *p, size_t n, int flags, void *ud)
{
    pipe_buf *b = ud;
    (void)s, (void)flags;
    if (n > sizeof(b->data) - b->len)
        return NGHTTP2_ERR_WOULDBLOCK;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return (ssize_t)n;
}

/* The server answers each request head with a bodiless 204 as soon as it ends the stream. */
static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)ud;
    if (f->hd.type == NGHTTP2_HEADERS && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"204", 7, 3, NGHTTP2_NV_FLAG_NONE}};
        return nghttp2_submit_response(s, f->hd.stream_id, nv, 1, NULL);
    }
    return 0;
}

static int responses;
static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    (void)s, (void)id, (void)ud;
    responses += code == NGHTTP2_NO_ERROR;
    return 0;
}

/* Moves bytes both ways until neither side has more to send. */
static int pump(nghttp2_session *srv, pipe_buf *to_srv, nghttp2_session *cli, pipe_buf *to_cli)
{
    for (int round = 0; round < 32; round++) {
        if (nghttp2_session_send(cli) != 0 || nghttp2_session_send(srv) != 0)
            return -1;
        if (to_srv->len == 0 && to_cli->len == 0)
            return 0;
        if (nghttp2_session_mem_recv(srv, to_srv->data, to_srv->len) != (ssize_t)to_srv->len ||
            nghttp2_session_mem_recv(cli, to_cli->data, to_cli->len) != (ssize_t)to_cli->len)
            return -1;
        to_srv->len = to_cli->len = 0;
    }
    return -1;
}

static size_t resident_of(const proxy__h2_mem *m, int kind)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = 0;
    unsigned char v[16];
    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++) {
        const proxy__h2_block *b = &m->big[i];
        if (b->p == NULL || b->kind != kind || b->len > sizeof(v) * page || mincore(b->p, b->len, v) != 0)
            continue;
        for (size_t k = 0; k < b->len / page; k++)
            n += (v[k] & 1) ? page : 0;
    }
    return n;
}

static int count_kind(const proxy__h2_mem *m, int kind)
{
    int n = 0;
    for (int i = 0; i < PROXY__H2_MEM_SLOTS; i++)
        n += m->big[i].p != NULL && m->big[i].kind == kind;
    return n;
}

static void serve_and_idle(void)
{
    static pipe_buf to_srv, to_cli;
    nghttp2_session_callbacks *scb, *ccb;
    nghttp2_option *opt;
    nghttp2_session *srv, *cli;
    proxy__h2_mem m;
    nghttp2_nv req[] = {
        {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)"example.com", 10, 11, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)"/", 5, 1, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"user-agent", (uint8_t *)"unit/1", 10, 6, NGHTTP2_NV_FLAG_NONE},
    };

    unit_case("h2_mem: a request served, then idle");
    to_srv.len = to_cli.len = 0;
    responses = 0;
    CHECK(nghttp2_session_callbacks_new(&scb) == 0 && nghttp2_session_callbacks_new(&ccb) == 0);
    nghttp2_session_callbacks_set_send_callback(scb, to_buf);
    nghttp2_session_callbacks_set_on_frame_recv_callback(scb, on_frame);
    nghttp2_session_callbacks_set_send_callback(ccb, to_buf);
    nghttp2_session_callbacks_set_on_stream_close_callback(ccb, on_close);
    CHECK(nghttp2_option_new(&opt) == 0);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_deflate_dynamic_table_size(opt, 0); /* as h2_server.c: the encoder's ring unused */

    proxy__h2_mem_init(&m);
    CHECK(nghttp2_session_server_new3(&srv, scb, &to_cli, opt, &m.ops) == 0);
    proxy__h2_mem_created(&m);
    CHECK(nghttp2_session_client_new(&cli, ccb, &to_srv) == 0);
    /* nghttp2 1.52 maps three blocks: the frame buffer, the stream map's table, the encoder's ring */
    CHECK_INT(count_kind(&m, PROXY__H2_BLOCK_FRAME), 1);
    CHECK_INT(count_kind(&m, PROXY__H2_BLOCK_ZEROS), 1);
    CHECK_INT(count_kind(&m, PROXY__H2_BLOCK_UNTOUCHED), 1);

    CHECK(nghttp2_submit_settings(srv, NGHTTP2_FLAG_NONE, NULL, 0) == 0);
    CHECK(nghttp2_submit_settings(cli, NGHTTP2_FLAG_NONE, NULL, 0) == 0);
    for (int i = 0; i < 3; i++) /* the client indexes its fields: the decoder's ring is written */
        CHECK(nghttp2_submit_request(cli, NULL, req, sizeof(req) / sizeof(req[0]), NULL, NULL) > 0);
    CHECK(pump(srv, &to_srv, cli, &to_cli) == 0);
    CHECK_INT(responses, 3);

    /* Busy, the frame buffer and the map were written; the encoder's ring never (else the order
     * h2_mem.c relies on changed: it would be the decoder's, written by the client's entries). */
    CHECK(resident_of(&m, PROXY__H2_BLOCK_FRAME) > 0);
    CHECK(resident_of(&m, PROXY__H2_BLOCK_ZEROS) > 0);
    CHECK_INT(resident_of(&m, PROXY__H2_BLOCK_UNTOUCHED), 0);

    CHECK(!nghttp2_session_want_write(srv));
    CHECK(proxy__h2_mem_idle(&m, 1) > 0);
    CHECK_INT(proxy__h2_mem_resident(&m), 0);

    /* the session works on from zero-filled pages */
    CHECK(nghttp2_submit_request(cli, NULL, req, sizeof(req) / sizeof(req[0]), NULL, NULL) > 0);
    CHECK(pump(srv, &to_srv, cli, &to_cli) == 0);
    CHECK_INT(responses, 4);
    /* a frame half built (frame_dead 0): the frame buffer stays, the map's zero pages still go */
    (void)proxy__h2_mem_idle(&m, 0);
    CHECK(resident_of(&m, PROXY__H2_BLOCK_FRAME) > 0);
    CHECK_INT(resident_of(&m, PROXY__H2_BLOCK_ZEROS), 0);

    nghttp2_session_del(srv);
    CHECK_INT(proxy__h2_mem_dispose(&m), 0); /* nghttp2 freed every mapped block: no leak */
    nghttp2_session_del(cli);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(scb);
    nghttp2_session_callbacks_del(ccb);
    unit_case(NULL);
}

/* Blocks allocated after the session exists stay on the heap: a system call per request otherwise. */
static void later_blocks_on_heap(void)
{
    proxy__h2_mem m;
    unit_case("h2_mem: blocks after creation");
    proxy__h2_mem_init(&m);
    void *early = m.ops.malloc(20000, m.ops.mem_user_data);
    proxy__h2_mem_created(&m);
    void *late = m.ops.malloc(20000, m.ops.mem_user_data);
    void *zero = m.ops.calloc(2, 8192, m.ops.mem_user_data);
    CHECK(early != NULL && late != NULL && zero != NULL);
    CHECK_INT(count_kind(&m, PROXY__H2_BLOCK_FRAME), 1);
    CHECK(((unsigned char *)zero)[16383] == 0);
    /* a mapped block grows within its pages in place, and beyond them onto the heap with its bytes */
    memset(early, 'x', 20000);
    CHECK(m.ops.realloc(early, 20480, m.ops.mem_user_data) == early);
    void *moved = m.ops.realloc(early, 40000, m.ops.mem_user_data);
    CHECK(moved != NULL && ((char *)moved)[19999] == 'x');
    CHECK_INT(count_kind(&m, PROXY__H2_BLOCK_FRAME), 0);
    m.ops.free(moved, m.ops.mem_user_data);
    m.ops.free(late, m.ops.mem_user_data);
    m.ops.free(zero, m.ops.mem_user_data);
    m.ops.free(NULL, m.ops.mem_user_data);
    CHECK_INT(proxy__h2_mem_dispose(&m), 0);
    unit_case(NULL);
}

void suite_h2_mem(void)
{
    serve_and_idle();
    later_blocks_on_heap();
}
