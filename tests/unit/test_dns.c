/*
 * dns: the resolver (c-ares in the loop, and its cache) against a DNS server
 * of the test's own: a UDP socket in the same loop that answers A and AAAA
 * questions from a table, counts them, and can stay silent.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/common.h"
#include "core/loop.h"
#include "dns/resolver.h"
#include "unit.h"

typedef struct rr {
    const char *name;
    int type; /* 1 A, 28 AAAA */
    const char *ip;
    uint32_t ttl;
} rr;

static const rr zone[] = {
    {"one.test", 1, "192.0.2.1", 300},      {"both.test", 1, "192.0.2.10", 300},    {"both.test", 1, "192.0.2.11", 300},
    {"both.test", 28, "2001:db8::10", 300}, {"both.test", 28, "2001:db8::11", 300}, {"short.test", 1, "192.0.2.20", 1},
    {"a.test", 1, "192.0.2.31", 300},       {"b.test", 1, "192.0.2.32", 300},       {"c.test", 1, "192.0.2.33", 300},
};

typedef struct server {
    gh_io io;
    int queries;    /* questions received */
    int silent;     /* answer nothing (timeouts) */
    char last[256]; /* the last name asked */
} server;

/* Reads a question name (no compression in queries) into out; the offset after it, or 0. */
static size_t read_name(const uint8_t *p, size_t n, size_t off, char *out, size_t cap)
{
    size_t o = 0;
    while (off < n && p[off] != 0) {
        size_t len = p[off++];
        if (len > 63 || off + len > n || o + len + 2 > cap)
            return 0;
        if (o > 0)
            out[o++] = '.';
        memcpy(out + o, p + off, len);
        o += len;
        off += len;
    }
    out[o] = '\0';
    return off < n ? off + 1 : 0;
}

static void on_query(gh_io *io, unsigned ev)
{
    server *s = (server *)io;
    uint8_t q[512], a[1024];
    struct sockaddr_storage from;
    socklen_t fl;
    ssize_t n;
    (void)ev;

    for (;;) {
        fl = sizeof(from);
        n = recvfrom(io->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        size_t end = read_name(q, (size_t)n, 12, s->last, sizeof(s->last));
        if (end == 0 || end + 4 > (size_t)n)
            continue;
        int qtype = q[end] << 8 | q[end + 1];
        s->queries++;
        if (s->silent)
            continue;
        size_t len = end + 4, an = 0, known = 0;
        memcpy(a, q, len);
        for (size_t i = 0; i < GH_ARRAY_LEN(zone); i++) {
            if (strcmp(zone[i].name, s->last) != 0)
                continue;
            known = 1;
            if (zone[i].type != qtype)
                continue;
            int alen = qtype == 1 ? 4 : 16;
            uint8_t *p = a + len;
            p[0] = 0xc0, p[1] = 12; /* the name: a pointer to the question's */
            p[2] = 0, p[3] = (uint8_t)qtype, p[4] = 0, p[5] = 1;
            p[6] = (uint8_t)(zone[i].ttl >> 24), p[7] = (uint8_t)(zone[i].ttl >> 16);
            p[8] = (uint8_t)(zone[i].ttl >> 8), p[9] = (uint8_t)zone[i].ttl;
            p[10] = 0, p[11] = (uint8_t)alen;
            inet_pton(qtype == 1 ? AF_INET : AF_INET6, zone[i].ip, p + 12);
            len += 12 + (size_t)alen;
            an++;
        }
        a[2] = 0x81;                  /* QR, RD */
        a[3] = known ? 0x80 : 0x83;   /* RA; NXDOMAIN for names not in the zone */
        a[4] = 0, a[5] = 1;           /* one question */
        a[6] = 0, a[7] = (uint8_t)an; /* answers */
        a[8] = a[9] = a[10] = a[11] = 0;
        sendto(io->fd, a, len, 0, (struct sockaddr *)&from, fl);
    }
}

static int server_start(gh_loop *l, server *s, char *servers, size_t cap)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);
    memset(s, 0, sizeof(*s));
    s->io.fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    s->io.cb = on_query;
    if (s->io.fd < 0 || bind(s->io.fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        getsockname(s->io.fd, (struct sockaddr *)&sin, &sl) < 0 || gh_loop_add(l, &s->io) < 0)
        return -1;
    snprintf(servers, cap, "127.0.0.1:%u", ntohs(sin.sin_port));
    return 0;
}

/* ---- running the loop until the callbacks came, or a deadline ---- */

typedef struct waiter {
    gh_dns_query q;
    gh_loop *loop;
    int called;
    int status;
    size_t n;
    char first[64], second[64];
    int *pending; /* callbacks still due; the loop stops at 0 */
} waiter;

static void on_answer(void *arg, const gh_dns_answer *a)
{
    waiter *w = arg;
    w->called++;
    w->status = a->status;
    w->n = a->n;
    if (a->n > 0)
        snprintf(w->first, sizeof(w->first), "%s", a->addrs[0].text);
    if (a->n > 1)
        snprintf(w->second, sizeof(w->second), "%s", a->addrs[1].text);
    if (--*w->pending == 0)
        gh_loop_stop(w->loop);
}

static void on_deadline(gh_timer *t)
{
    (void)t;
}

typedef struct deadline {
    gh_timer t;
    gh_loop *loop;
} deadline;

static void stop_loop(gh_timer *t)
{
    deadline *d = (deadline *)t;
    gh_loop_stop(d->loop);
}

/* One loop per run: gh_loop_run returns once stopped, and a stopped loop stays so. */
typedef struct env {
    gh_loop *loop;
    server srv;
    gh_resolver *r;
    char servers[64];
} env;

static int env_new(env *e, const gh_resolver_opts *base)
{
    gh_resolver_opts o = base ? *base : (gh_resolver_opts){0};
    memset(e, 0, sizeof(*e));
    e->loop = gh_loop_new();
    if (e->loop == NULL || server_start(e->loop, &e->srv, e->servers, sizeof(e->servers)) < 0)
        return -1;
    o.servers = e->servers;
    if (o.hosts_file == NULL)
        o.hosts_file = "/dev/null"; /* the machine's /etc/hosts plays no part */
    e->r = gh_resolver_new(e->loop, &o);
    return e->r ? 0 : -1;
}

static void env_free(env *e)
{
    gh_resolver_free(e->r);
    if (e->srv.io.fd >= 0) {
        gh_loop_del(e->loop, &e->srv.io);
        close(e->srv.io.fd);
    }
    gh_loop_free(e->loop);
}

/* Runs e's loop until pending callbacks came, at most ms. */
static void run(env *e, uint32_t ms)
{
    deadline d = {.t = {.cb = stop_loop}, .loop = e->loop};
    gh_timer_set(e->loop, &d.t, ms);
    gh_loop_run(e->loop);
    gh_timer_stop(e->loop, &d.t);
}

static int resolve(env *e, const char *name, uint16_t port, waiter *w, int *pending, gh_dns_answer *now)
{
    memset(w, 0, sizeof(*w));
    w->loop = e->loop;
    w->pending = pending;
    return gh_resolve(e->r, name, strlen(name), port, &w->q, on_answer, w, now);
}

void suite_dns(void)
{
    env e;
    waiter w, w2;
    gh_dns_answer now;
    gh_resolver_stats st;
    int pending, rc;
    (void)on_deadline;

    unit_case("a name resolves through the server; the answer is cached");
    if (env_new(&e, NULL) < 0) {
        CHECK(!"resolver or test server did not start");
        return;
    }
    pending = 1;
    rc = resolve(&e, "one.test", 8080, &w, &pending, &now);
    CHECK_INT(rc, GH_AGAIN);
    run(&e, 3000);
    CHECK_INT(w.called, 1);
    CHECK_INT(w.status, GH_DNS_OK);
    CHECK_INT(w.n, 1);
    CHECK(strcmp(w.first, "192.0.2.1:8080") == 0);
    CHECK_INT(e.srv.queries, 2);                             /* A and AAAA */
    rc = resolve(&e, "ONE.test.", 443, &w2, &pending, &now); /* case and a trailing dot: the same name */
    CHECK_INT(rc, GH_OK);
    CHECK_INT(now.status, GH_DNS_OK);
    CHECK_INT(now.n, 1);
    CHECK(now.n == 1 && strcmp(now.addrs[0].text, "192.0.2.1:443") == 0);
    CHECK_INT(e.srv.queries, 2); /* from the cache */
    gh_resolver_stats_get(e.r, &st);
    CHECK_INT(st.hits, 1);
    CHECK_INT(st.queries, 1);
    env_free(&e);

    unit_case("IPv6 and IPv4 interleaved, IPv6 first (RFC 8305)");
    env_new(&e, NULL);
    pending = 1;
    resolve(&e, "both.test", 80, &w, &pending, &now);
    run(&e, 3000);
    CHECK_INT(w.n, 4);
    CHECK(strcmp(w.first, "[2001:db8::10]:80") == 0);
    CHECK(strcmp(w.second, "192.0.2.10:80") == 0);
    env_free(&e);

    unit_case("concurrent resolutions of one name share one query");
    env_new(&e, NULL);
    pending = 2;
    CHECK_INT(resolve(&e, "one.test", 1, &w, &pending, &now), GH_AGAIN);
    CHECK_INT(resolve(&e, "one.test", 2, &w2, &pending, &now), GH_AGAIN);
    w2.pending = &pending;
    run(&e, 3000);
    CHECK_INT(w.called, 1);
    CHECK_INT(w2.called, 1);
    CHECK(strcmp(w2.first, "192.0.2.1:2") == 0);
    CHECK_INT(e.srv.queries, 2);
    env_free(&e);

    unit_case("a cancelled waiter is not called; the others are");
    env_new(&e, NULL);
    pending = 1;
    resolve(&e, "one.test", 1, &w, &pending, &now);
    resolve(&e, "one.test", 2, &w2, &pending, &now);
    gh_resolve_cancel(&w.q);
    run(&e, 3000);
    CHECK_INT(w.called, 0);
    CHECK_INT(w2.called, 1);
    env_free(&e);

    unit_case("NXDOMAIN: not found, remembered for neg_ttl");
    env_new(&e, NULL);
    pending = 1;
    resolve(&e, "missing.test", 80, &w, &pending, &now);
    run(&e, 3000);
    CHECK_INT(w.status, GH_DNS_NOTFOUND);
    CHECK_INT(w.n, 0);
    int q = e.srv.queries;
    CHECK_INT(resolve(&e, "missing.test", 80, &w2, &pending, &now), GH_OK);
    CHECK_INT(now.status, GH_DNS_NOTFOUND);
    CHECK_INT(e.srv.queries, q);
    env_free(&e);

    unit_case("a server that never answers: timeout, not cached");
    gh_resolver_opts fast = {.timeout_ms = 300};
    env_new(&e, &fast);
    e.srv.silent = 1;
    pending = 1;
    resolve(&e, "one.test", 80, &w, &pending, &now);
    run(&e, 3000);
    CHECK_INT(w.called, 1);
    CHECK_INT(w.status, GH_DNS_TIMEOUT);
    gh_resolver_stats_get(e.r, &st);
    CHECK_INT(st.entries, 0);
    env_free(&e);

    unit_case("the TTL is honoured: an answer with TTL 1 s is asked again after it");
    gh_resolver_opts ttl = {.min_ttl_ms = 1}; /* no floor */
    env_new(&e, &ttl);
    pending = 1;
    resolve(&e, "short.test", 80, &w, &pending, &now);
    run(&e, 3000);
    CHECK_INT(w.status, GH_DNS_OK);
    q = e.srv.queries;
    CHECK_INT(resolve(&e, "short.test", 80, &w2, &pending, &now), GH_OK); /* within the second */
    run(&e, 1100);                                                        /* the TTL runs out */
    pending = 1;
    CHECK_INT(resolve(&e, "short.test", 80, &w2, &pending, &now), GH_AGAIN);
    run(&e, 3000);
    CHECK_INT(w2.status, GH_DNS_OK);
    CHECK(e.srv.queries > q);
    env_free(&e);

    unit_case("the cache is bounded: the least recently used name goes");
    gh_resolver_opts small = {.cache_max = 2};
    env_new(&e, &small);
    const char *names[] = {"a.test", "b.test", "c.test"};
    for (size_t i = 0; i < 3; i++) {
        pending = 1;
        resolve(&e, names[i], 80, &w, &pending, &now);
        run(&e, 3000);
        CHECK_INT(w.status, GH_DNS_OK);
    }
    gh_resolver_stats_get(e.r, &st);
    CHECK_INT(st.entries, 2);
    CHECK_INT(st.evictions, 1);
    CHECK_INT(resolve(&e, "c.test", 80, &w, &pending, &now), GH_OK);
    pending = 1;
    CHECK_INT(resolve(&e, "a.test", 80, &w, &pending, &now), GH_AGAIN); /* evicted */
    run(&e, 3000);
    env_free(&e);

    unit_case("numeric hosts and bad names are answered at once");
    env_new(&e, NULL);
    CHECK_INT(resolve(&e, "127.0.0.1", 80, &w, &pending, &now), GH_OK);
    CHECK(now.status == GH_DNS_OK && now.n == 1 && strcmp(now.addrs[0].text, "127.0.0.1:80") == 0);
    CHECK_INT(resolve(&e, "::1", 443, &w, &pending, &now), GH_OK);
    CHECK(now.n == 1 && strcmp(now.addrs[0].text, "[::1]:443") == 0);
    const char *bad[] = {"", "a..b", "-a.test", "a-.test", "a b", "a/b", "x\r\nHost: y", "[::1]"};
    for (size_t i = 0; i < GH_ARRAY_LEN(bad); i++) {
        CHECK_INT(resolve(&e, bad[i], 80, &w, &pending, &now), GH_OK);
        CHECK_INT(now.status, GH_DNS_BADNAME);
    }
    CHECK_INT(e.srv.queries, 0);
    env_free(&e);

    unit_case("a hosts file answers before DNS, at once");
    char hosts[] = "/tmp/gh-dns-hosts-XXXXXX";
    int fd = mkstemp(hosts);
    CHECK(fd >= 0);
    if (fd >= 0) {
        const char line[] = "192.0.2.99 fixture.test\n::1 fixture6.test\n";
        CHECK(write(fd, line, sizeof(line) - 1) == (ssize_t)(sizeof(line) - 1));
        close(fd);
        gh_resolver_opts h = {.hosts_file = hosts};
        env_new(&e, &h);
        rc = resolve(&e, "fixture.test", 80, &w, &pending, &now);
        CHECK_INT(rc, GH_OK);
        CHECK(now.status == GH_DNS_OK && now.n == 1 && strcmp(now.addrs[0].text, "192.0.2.99:80") == 0);
        CHECK_INT(e.srv.queries, 0);
        env_free(&e);
        unlink(hosts);
    }
    unit_case(NULL);
}
