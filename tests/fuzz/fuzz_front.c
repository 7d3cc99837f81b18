/*
 * libFuzzer target for the real client fronts: one client connection, on an in-memory conn
 * (src/net/memconn.h), accepted by a real worker context (a configuration generation parsed from the
 * fixed text below) through client.c, then h1_server.c or h2_server.c. What an attacker sends reaches
 * the same work queue, flood budgets, rapid-reset accounting, stream maps, flow control and memory
 * accounting as over a socket. Upstream connections are in-memory too (proxy__upstream_connect_hook):
 * a canned HTTP/1.1 server answers each request.
 *
 * Input: byte 0 chooses the mode (bit 0: HTTP/2, the preface is sent first and ALPN says "h2"; else
 * HTTP/1.1; bit 1: the client ends its stream after the input; bit 2: it reads its responses slowly,
 * a small sink), byte 1 seeds how the rest is cut into pieces (one piece per loop step). The loop runs on
 * a virtual clock (gh_loop_step): no real time, no socket.
 *
 * Invariants: no crash, UB or leak (ASan, UBSan, LeakSanitizer); an HTTP/2 connection's memory
 * accounting is back to zero whenever it holds no stream; everything an upstream conn received parses
 * (src/http/h1.c) as whole valid HTTP/1.1 requests, their bodies framed as their heads say (nothing
 * smuggled across the seam), until a CONNECT or an upgrade makes it a tunnel.
 *
 *   make fuzz FUZZ_SECONDS=60   (build-fuzz/fuzz_front on tests/fuzz/corpus_front)
 *   make build/fuzz-front-replay && build/fuzz-front-replay tests/fuzz/corpus_front/
 *                                (the corpus once, no libFuzzer: part of make test)
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* h2_server.c is compiled into this file (not linked) so that its connection's memory count is visible. */
#include "proxy/h2_server.c"

#include "http/h1.h"
#include "net/memconn.h"
#include "proxy/proxy.h"
#include "proxy/runtime.h"

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_front: %s:%d: %s\n", __FILE__, __LINE__, #cond);                                     \
            __builtin_trap();                                                                                          \
        }                                                                                                              \
    } while (0)

static const char config_text[] =
    "listen 127.0.0.1:1 protocols=h2,http/1.1\n"
    "listen 127.0.0.1:2 protocols=h2,http/1.1\n"
    "pool app {\n"
    "    server 127.0.0.1:9\n"
    "}\n"
    "pool parents {\n"
    "    server 127.0.0.1:10\n"
    "}\n"
    "site local {\n"
    "    listen 127.0.0.1:1\n"
    "    route / { proxy app }\n"
    "    route /r { respond 200 hello }\n"
    "    route /big { respond 200 "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa }\n"
    "    route /go { redirect 302 https://$host$request_uri }\n"
    "}\n"
    "site fwd {\n"
    "    listen 127.0.0.1:2\n"
    "    forward {\n"
    "        rule deny host=*.bad.example\n"
    "        rule allow host=*.example via=parents port=80,443\n"
    "    }\n"
    "}\n";

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
static const char settings_frame[] = "\0\0\0\4\0\0\0\0\0"; /* an empty SETTINGS: what every client sends first */

#define MAX_UP 32

typedef struct fake_up {
    gh_memconn *m;
    int tunnel; /* a CONNECT or an upgrade was answered: what follows is not HTTP */
    int body;   /* GH_H1_BODY_* of the request being received */
    uint64_t left;
    gh_h1_chunked ch;
} fake_up;

static fake_up ups[MAX_UP];
static size_t nups;
static int refuse_up; /* input-chosen: the server's connect fails */
static gh_h1_request ureq;
static char scratch[64 * 1024];
static char cfg_path[64];
static gh_shared shared;
static gh_mslot mslot;
static int debug; /* FUZZ_FRONT_DEBUG set: what the client and the servers received goes to stderr */

static int up_connect(gh_conn *c, gh_io_cb cb, const proxy__pool *p, int server)
{
    (void)p;
    (void)server;
    if (refuse_up || nups == MAX_UP)
        return -1;
    fake_up *f = &ups[nups];
    memset(f, 0, sizeof(*f));
    if ((f->m = gh_memconn_new(c, cb, NULL, 256 * 1024)) == NULL)
        return -1;
    nups++;
    return 0;
}

/* The canned server: takes what the proxy sent, checks it is HTTP/1.1 requests, answers each. */
static void up_serve(fake_up *f)
{
    for (;;) {
        size_t len;
        const uint8_t *p = gh_memconn_sink(f->m, &len);
        if (len == 0)
            return;
        if (f->tunnel) {
            gh_memconn_take(f->m, len);
            return;
        }
        if (f->body == GH_H1_BODY_LENGTH) {
            size_t n = len < f->left ? len : (size_t)f->left;
            gh_memconn_take(f->m, n);
            if ((f->left -= n) == 0)
                f->body = GH_H1_BODY_NONE;
            continue;
        }
        if (f->body == GH_H1_BODY_CHUNKED) {
            size_t n = len < sizeof(scratch) ? len : sizeof(scratch);
            memcpy(scratch, p, n);
            size_t in = n;
            ssize_t rest = gh_h1_chunked_decode(&f->ch, scratch, &in);
            REQUIRE(rest != GH_H1_CHUNKED_ERROR); /* a body the proxy re-framed must be valid chunked */
            if (rest == GH_H1_CHUNKED_MORE) {
                gh_memconn_take(f->m, n);
                return;
            }
            gh_memconn_take(f->m, n - (size_t)rest);
            f->body = GH_H1_BODY_NONE;
            continue;
        }
        int rc = gh_h1_parse_request((const char *)p, len, &ureq);
        if (debug)
            fprintf(stderr, "[upstream %d: %.*s]\n", rc, (int)(len < 200 ? len : 200), (const char *)p);
        REQUIRE(rc >= 0); /* every byte upstream is a valid request head: nothing smuggled */
        if (rc == 0)
            return;
        int connect = ureq.method.len == 7 && memcmp(ureq.method.p, "CONNECT", 7) == 0;
        int upgrade = 0;
        for (size_t i = 0; i < ureq.nheaders; i++)
            if (gh_h1_str_ieq(ureq.headers[i].name, "upgrade"))
                upgrade = 1;
        int head = ureq.method.len == 4 && memcmp(ureq.method.p, "HEAD", 4) == 0;
        f->body = ureq.body;
        f->left = ureq.content_length;
        memset(&f->ch, 0, sizeof(f->ch));
        if (f->body == GH_H1_BODY_LENGTH && f->left == 0)
            f->body = GH_H1_BODY_NONE;
        if (connect) {
            static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
            gh_memconn_take(f->m, (size_t)rc);
            gh_memconn_feed(f->m, ok, sizeof(ok) - 1);
            f->tunnel = 1;
            continue;
        }
        if (upgrade) {
            char accept[64] = "";
            char res[256];
            gh_h1_str key = {0};
            for (size_t i = 0; i < ureq.nheaders; i++)
                if (gh_h1_str_ieq(ureq.headers[i].name, "sec-websocket-key"))
                    key = ureq.headers[i].value;
            if (key.len > 0)
                gh_ws_accept(key, accept);
            int n = snprintf(res, sizeof(res),
                             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: %s\r\n\r\n",
                             accept);
            gh_memconn_take(f->m, (size_t)rc);
            gh_memconn_feed(f->m, res, (size_t)n);
            f->tunnel = 1;
            continue;
        }
        gh_memconn_take(f->m, (size_t)rc);
        static const char res[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
        gh_memconn_feed(f->m, res, sizeof(res) - 1 - (head ? 2 : 0));
    }
}

/* An HTTP/2 connection holding no stream holds no stream memory. */
static void check_h2(proxy__worker *w)
{
    for (proxy__client *c = w->clients; c != NULL; c = c->next)
        if (c->state == CLIENT_H2 && c->h2 != NULL && c->h2->nstreams == 0)
            REQUIRE(c->h2->mem == 0);
}

static void service(proxy__worker *w, gh_memconn *client, int slow)
{
    size_t len;
    const uint8_t *out;
    for (size_t i = 0; i < nups; i++) {
        up_serve(&ups[i]);
        gh_memconn_kick(ups[i].m);
    }
    out = gh_memconn_sink(client, &len);
    if (debug && len > 0)
        fwrite(out, 1, slow ? (len < 100 ? len : 100) : len, stderr);
    gh_memconn_take(client, slow ? (len < 100 ? len : 100) : len);
    gh_memconn_kick(client);
    gh_loop_step(w->loop, 1);
    proxy__h2_flush_dirty(w);
    proxy__access_flush(w);
    check_h2(w);
}

static uint32_t rng;
static uint32_t next_piece(void)
{
    rng = rng * 1103515245u + 12345u;
    return (rng >> 16) % 700 + 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    int fd;
    snprintf(cfg_path, sizeof(cfg_path), "/tmp/fuzz_front.XXXXXX");
    if ((fd = mkstemp(cfg_path)) < 0 || write(fd, config_text, sizeof(config_text) - 1) < 0)
        abort();
    close(fd);
    if (gh_shared_init(&shared) < 0)
        abort();
    gh_log_level = -1; /* quiet: every input would log */
    proxy__upstream_connect_hook = up_connect;
    debug = getenv("FUZZ_FRONT_DEBUG") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    proxy__worker *w;
    gh_runtime *rt;
    gh_memconn *m;
    gh_conn conn;
    int h2, fin, slow;
    struct sockaddr_storage peer = {0};
    size_t pos;

    if (size < 2)
        return 0;
    h2 = data[0] & 1;
    fin = data[0] & 2;
    slow = data[0] & 4;
    refuse_up = (data[0] & 0x18) == 0x18;
    rng = data[1];
    nups = 0;
    if ((rt = gh_runtime_load(cfg_path, gh_conf_source_fs(), &shared, 1, NULL, err, sizeof(err))) == NULL) {
        fprintf(stderr, "fuzz_front: %s\n", err);
        abort();
    }
    w = calloc(1, sizeof(*w));
    w->t = &rt->cfg->timeouts;
    w->metrics = &mslot;
    w->loop = gh_loop_new();
    w->ctl_io.fd = w->signal_io.fd = -1;
    w->max_clients = 1000;
    w->gen = calloc(1, sizeof(*w->gen));
    w->gen->w = w;
    w->gen->rt = rt;
    w->gen->refs = 1;
    REQUIRE(proxy__pools_init(w->gen) == 0);
    struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(0x7f000001);
    sin->sin_port = htons(40000);

    /* bit 5: the forward site's listener */
    const proxy__listener *l = &w->gen->rt->listeners[(data[0] & 0x20) ? 1 : 0];
    m = gh_memconn_new(&conn, NULL, h2 ? "h2" : NULL, slow ? 4096 : 1024 * 1024);
    REQUIRE(m != NULL);
    if (h2) {
        gh_memconn_feed(m, preface, sizeof(preface) - 1);
        gh_memconn_feed(m, settings_frame, sizeof(settings_frame) - 1);
    }
    proxy__client_accept_conn(w, l, &conn, &peer);
    data += 2;
    size -= 2;
    for (pos = 0; pos < size;) {
        size_t n = next_piece();
        if (n > size - pos)
            n = size - pos;
        gh_memconn_feed(m, data + pos, n);
        pos += n;
        service(w, m, slow);
    }
    if (fin)
        gh_memconn_end(m);
    for (int i = 0; i < 64; i++)
        service(w, m, slow);
    /* the timeouts: header, keep-alive, idle, upstream response (virtual minutes) */
    for (int i = 0; i < 8; i++) {
        gh_loop_step(w->loop, 40 * 1000);
        for (int k = 0; k < 4; k++)
            service(w, m, 0);
    }

    /* teardown, as worker.c's */
    while (w->clients != NULL)
        proxy__client_close(w->clients);
    proxy__tunnels_close(w);
    gh_loop_step(w->loop, 0);
    proxy__gen_unref(w->gen);
    proxy__fwd_worker_free(w);
    proxy__access_close(w);
    gh_timer_stop(w->loop, &w->drain_timer);
    gh_timer_stop(w->loop, &w->h2_kick);
    gh_loop_step(w->loop, 0);
    REQUIRE(w->nclients == 0 && w->ntunnels == 0);
    free(w->svc_counts);
    gh_loop_free(w->loop);
    free(w);
    for (size_t i = 0; i < nups; i++)
        gh_memconn_free(ups[i].m);
    gh_memconn_free(m);
    gh_buf_pool_drain();
    return 0;
}

#ifdef FUZZ_FRONT_REPLAY
/* Without libFuzzer: runs every file named (or every file of the directories named) once. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    static uint8_t buf[1 << 20];
    size_t n;
    if (f == NULL) {
        perror(path);
        return -1;
    }
    n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0, rc = 0;
    LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            rc |= replay_file(argv[i]);
            count++;
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char p[4096];
            if (e->d_name[0] == '.')
                continue;
            snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
            rc |= replay_file(p);
            count++;
        }
        closedir(d);
    }
    unlink(cfg_path);
    printf("fuzz_front: %d inputs replayed\n", count);
    return rc == 0 ? 0 : 1;
}
#endif
