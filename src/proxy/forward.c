/*
 * forward: the exchanges of a forward proxy listener (a site with `forward
 * { }`): `CONNECT host:port` becomes a tunnel after a 200, an absolute-form
 * request (`GET http://host/path`) goes to its origin in origin-form through
 * the usual exchange pumps.
 *
 * One exchange: credentials (fwd_auth.c: 407, 429), the rules on the name
 * (forward/rules.h: 403 without a DNS query for what no rule can allow), the
 * name resolved once in the worker's loop (dns/resolver.h, bounded by
 * dns_timeout), every address judged (an internal one needs a rule naming
 * its range: SSRF), then connects to judged addresses only: the address
 * judged is the address connected to, never a second resolution. CONNECT
 * tries them happy-eyeballs style (RFC 8305 5: the next address after 250 ms
 * or at once on a failure, a few at a time, all within connect_timeout).
 *
 * Over HTTP/2 each stream is one such exchange (h2_server.c): a CONNECT
 * stream (RFC 9113 8.5) gets its 200 as HEADERS that leave it open and
 * becomes the tunnel's client side through the session's detach; a request
 * with :scheme and :authority arrives as absolute-form (http/h2_head.c).
 *
 * A refusal answers 403 with gatehouse's page: the rule and the address go
 * to the error log, never to the client (it must not learn what a name
 * resolves to inside).
 *
 * Ownership: the exchange owns its proxy__fwd (ex->fwd, freed with it by
 * proxy__fwd_free); a connected CONNECT attempt's socket moves into the
 * tunnel, which the worker then owns like a WebSocket's.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/common.h"
#include "core/log.h"
#include "dns/resolver.h"
#include "forward/rules.h"
#include "net/sock.h"
#include "proxy/proxy.h"

#define GONE PROXY__GONE

#define FWD_MAX_ADDRS     8   /* judged addresses kept for the connects */
#define FWD_ATTEMPTS      2   /* connects in flight at once (RFC 8305 5) */
#define FWD_ATTEMPT_DELAY 250 /* ms before the next address is tried beside a silent one (RFC 8305 8) */

typedef struct fwd_attempt {
    gh_conn conn; /* first: the loop's events name it */
    struct proxy__fwd *f;
    const gh_addr *addr;
    uint8_t live;
} fwd_attempt;

struct proxy__fwd {
    proxy__exchange *ex;
    const gh_cfg_forward *cfg;
    gh_dns_query q;
    gh_timer deadline; /* the DNS answer, then the connect phase */
    gh_timer next;     /* the next address's attempt */
    gh_fwd_req req;
    char host[GH_DNS_MAX_NAME + 1];
    const char *user; /* in the config (the exchange's generation holds it) */
    int rule;         /* the allowing rule */
    uint8_t connect;  /* CONNECT, else absolute-form */
    uint8_t resolving;
    uint8_t fresh; /* absolute-form: the next connection is a new one (a pooled one went stale) */
    uint8_t via;   /* through a parent proxy of the rule's pool (the exchange's pool) */
    gh_addr addrs[FWD_MAX_ADDRS];
    size_t naddrs, tried;
    fwd_attempt att[FWD_ATTEMPTS];
};

static const char connect_ok[] = "HTTP/1.1 200 Connection Established\r\n\r\n";
/* Over HTTP/2 the 200 is the stream's HEADERS, without END_STREAM (RFC 9113 8.5): no fields, no framing. */
static const gh_h1_response connect_ok_h2 = {.minor = 1, .status = 200, .body = GH_H1_BODY_NONE};

/*
 * The 200 that opens a CONNECT tunnel. HTTP/1.1: our status line, appended to
 * `to_client` (the tunnel's first bytes towards the client). An HTTP/2 stream:
 * HEADERS the session sends (its send_head leaves a CONNECT stream open), and
 * the stream then becomes the tunnel's side (detach). GH_OK or GH_ERROR.
 */
static int answer_connect(proxy__session *s, gh_buf *to_client)
{
    if (s->stream != 0)
        return s->ops->send_head(s, &connect_ok_h2, NULL) == GH_OK ? GH_OK : GH_ERROR;
    if (gh_buf_room(to_client) < sizeof(connect_ok) - 1)
        return GH_ERROR;
    memcpy(gh_buf_tail(to_client), connect_ok, sizeof(connect_ok) - 1);
    to_client->end += (uint32_t)(sizeof(connect_ok) - 1);
    return GH_OK;
}

/* ---- the worker's resolver ---- */

static gh_resolver *resolver(proxy__worker *w, const gh_cfg_forward *cfg)
{
    if (w->resolver == NULL) {
        gh_resolver_opts o = {.servers = w->gen->rt->cfg->resolver, .timeout_ms = cfg->dns_timeout};
        w->resolver = gh_resolver_new(w->loop, &o);
    }
    return w->resolver;
}

void proxy__fwd_worker_free(proxy__worker *w)
{
    gh_resolver_free(w->resolver);
    w->resolver = NULL;
    proxy__fwd_auth_free(w);
}

/* ---- ending ---- */

static void close_attempts(proxy__fwd *f)
{
    gh_loop *l = f->ex->s->w->loop;

    for (int i = 0; i < FWD_ATTEMPTS; i++)
        if (f->att[i].live) {
            gh_conn_close(&f->att[i].conn, l);
            f->att[i].live = 0;
        }
}

void proxy__fwd_free(proxy__fwd *f)
{
    gh_loop *l;

    if (f == NULL)
        return;
    l = f->ex->s->w->loop;
    if (f->resolving)
        gh_resolve_cancel(&f->q);
    gh_timer_stop(l, &f->deadline);
    gh_timer_stop(l, &f->next);
    close_attempts(f);
    /* an event of this batch may still name an attempt's conn */
    gh_loop_release(l, f);
}

static const char *rule_where(const proxy__fwd *f, int rule, char *buf, size_t cap)
{
    if (rule < 0)
        return "the default (no rule allows it)";
    snprintf(buf, cap, "rule %s:%d (%s)", f->cfg->rules[rule].where.file, f->cfg->rules[rule].where.line,
             f->cfg->rules[rule].allow ? "allow" : "deny");
    return buf;
}

/* 403: the reason in the error log, gatehouse's bare page to the client. GONE. */
static int deny(proxy__fwd *f, int rule, const char *why, const gh_addr *a)
{
    proxy__exchange *ex = f->ex;
    char where[300], cls[64] = "";

    /* why: "rule", "no rule", or the class of an internal address that no to= allowed */
    if (a != NULL && why != NULL && strcmp(why, "rule") != 0 && strcmp(why, "no rule") != 0)
        snprintf(cls, sizeof(cls), " is internal (%s) and the rule names no to= range for it", why);
    gh_log_warn("forward: client %s%s%s: %s %s:%u denied by %s%s%s%s", ex->s->ip, f->user ? " user " : "",
                f->user ? f->user : "", f->connect ? "CONNECT" : "request to", f->host, f->req.port,
                rule_where(f, rule, where, sizeof(where)), a ? ", address " : "", a ? a->text : "", cls);
    return proxy__exchange_local_error(ex, 403, NULL, 0);
}

/* ---- the target ---- */

/* host[:port] of a CONNECT or an absolute-form target into f (lowercase, no brackets): 0 or -1. */
static int parse_target(proxy__fwd *f, gh_h1_str a, int need_port, uint16_t dflt)
{
    const char *p = a.p, *end = a.p + a.len, *hend, *colon;
    size_t n;
    uint32_t port = 0;

    if (a.len == 0)
        return -1;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', a.len);

        if (close == NULL)
            return -1;
        p++;
        hend = close;
        colon = close + 1 < end ? close + 1 : NULL;
        if (colon != NULL && *colon != ':')
            return -1;
    } else {
        colon = memchr(p, ':', a.len);
        hend = colon ? colon : end;
    }
    n = (size_t)(hend - p);
    if (n == 0 || n > GH_DNS_MAX_NAME)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != ':')
            return -1;
        f->host[i] = (char)tolower(c);
    }
    f->host[n] = '\0';
    if (colon == NULL) {
        if (need_port)
            return -1; /* RFC 9110 9.3.6: CONNECT names the port */
        port = dflt;
    } else {
        const char *d = colon + 1;
        if (d == end || end - d > 5)
            return -1;
        for (; d < end; d++) {
            if (*d < '0' || *d > '9')
                return -1;
            port = port * 10 + (uint32_t)(*d - '0');
        }
        if (port == 0 || port > 65535)
            return -1;
    }
    f->req.host = f->host;
    f->req.host_len = n;
    f->req.port = (uint16_t)port;
    return 0;
}

/* Tunnels this worker holds for the client's address, or for the user. */
static int over_tunnel_limits(const proxy__fwd *f)
{
    const proxy__worker *w = f->ex->s->w;
    uint32_t by_ip = 0, by_user = 0;

    if (f->cfg->max_tunnels_per_ip == 0 && (f->cfg->max_tunnels_per_user == 0 || f->user == NULL))
        return 0;
    for (const proxy__tunnel *t = w->tunnels; t != NULL; t = t->next) {
        if (t->fwd_rule == 0)
            continue;
        by_ip += strcmp(t->ip, f->ex->s->ip) == 0;
        by_user += f->user != NULL && t->fwd_user != NULL && strcmp(t->fwd_user, f->user) == 0;
    }
    if (f->cfg->max_tunnels_per_ip > 0 && by_ip >= f->cfg->max_tunnels_per_ip)
        return 1;
    return f->cfg->max_tunnels_per_user > 0 && f->user != NULL && by_user >= f->cfg->max_tunnels_per_user;
}

/* ---- CONNECT: the tunnel ---- */

/* The attempt a connected: the exchange becomes a tunnel, the 200 its first bytes to the client. */
static void become_tunnel(proxy__fwd *f, fwd_attempt *a)
{
    proxy__exchange *ex = f->ex;
    proxy__session *s = ex->s;
    proxy__worker *w = s->w;
    proxy__tunnel *t = calloc(1, sizeof(*t));
    gh_buf unsent = {0};

    if (t == NULL || gh_buf_reserve(&t->side[1].buf) < 0) {
        free(t);
        proxy__exchange_fail(ex, 500);
        return;
    }
    if (s->stream != 0 && answer_connect(s, &t->side[1].buf) < 0) {
        gh_buf_release(&t->side[1].buf);
        free(t);
        proxy__exchange_fail(ex, 502); /* the stream was closed meanwhile, or the head does not fit */
        return;
    }
    proxy__tunnel_init(t, w->loop, f->cfg->tunnel_idle, proxy__tunnel_finish);
    t->w = w;
    t->start_ms = ex->start_ms;
    t->status = 200;
    t->log = ex->log; /* logged when the tunnel ends */
    ex->log = NULL;
    memcpy(t->ip, s->ip, sizeof(t->ip));
    t->peer = s->peer;
    t->peer_counted = s->peer_counted;
    s->peer_counted = 0;
    proxy__fwd_tunnel_info(f, t, a->addr->text);
    gh_timer_stop(w->loop, &f->deadline);
    gh_timer_stop(w->loop, &f->next);
    if (gh_conn_move(&t->side[1].conn, &a->conn, w->loop, proxy__tunnel_on_event) < 0) {
        gh_buf_release(&t->side[1].buf);
        ex->log = t->log;
        free(t);
        proxy__exchange_fail(ex, 502);
        return;
    }
    a->live = 0;
    close_attempts(f); /* the other family's attempt, if any */
    if (s->stream == 0)
        answer_connect(s, &t->side[1].buf); /* a fresh block: room for the status line */
    t->gen = s->gen;
    s->gen->refs++;
    proxy__tunnel_link(t);
    /* frees ex and f; the client's bytes after the CONNECT head are the tunnel's first */
    if (s->ops->detach(s, &t->side[0].conn, proxy__tunnel_on_event, &t->side[0].buf, &unsent) < 0) {
        gh_buf_release(&unsent);
        t->reason = PROXY__TUNNEL_ERROR;
        for (int i = 0; i < 2; i++) {
            gh_conn_close(&t->side[i].conn, w->loop);
            gh_buf_release(&t->side[i].buf);
        }
        proxy__tunnel_finish(t);
        return;
    }
    gh_buf_release(&unsent); /* nothing was queued for the client before the 200 */
    t->side[0].bytes = gh_buf_len(&t->side[0].buf);
    proxy__tunnel_start(t);
}

static void on_attempt_event(gh_io *io, unsigned events);

/* Starts a connect to the next judged address: 1 started, 0 none left (or no free slot). */
static int start_attempt(proxy__fwd *f)
{
    proxy__worker *w = f->ex->s->w;

    while (f->tried < f->naddrs) {
        fwd_attempt *a = NULL;
        const gh_addr *addr;
        int fd;

        for (int i = 0; i < FWD_ATTEMPTS && a == NULL; i++)
            if (!f->att[i].live)
                a = &f->att[i];
        if (a == NULL)
            return 0;
        addr = &f->addrs[f->tried++];
        if ((fd = gh_sock_connect(addr)) < 0) {
            gh_log_warn("forward: connect to %s (%s) failed: %s", f->host, addr->text, strerror(-fd));
            continue;
        }
        gh_conn_init(&a->conn, fd, on_attempt_event);
        if (gh_conn_add(&a->conn, w->loop) < 0) {
            close(fd);
            continue;
        }
        a->f = f;
        a->addr = addr;
        a->live = 1;
        if (f->tried < f->naddrs)
            gh_timer_set(w->loop, &f->next, FWD_ATTEMPT_DELAY);
        return 1;
    }
    return 0;
}

static int attempts_live(const proxy__fwd *f)
{
    for (int i = 0; i < FWD_ATTEMPTS; i++)
        if (f->att[i].live)
            return 1;
    return 0;
}

static void on_attempt_event(gh_io *io, unsigned events)
{
    fwd_attempt *a = (fwd_attempt *)io;
    proxy__fwd *f = a->f;
    proxy__session *s = f->ex->s;
    int err;

    gh_conn_on_events(&a->conn, events);
    if (!a->live || !(events & (GH_EV_WRITE | GH_EV_ERROR)))
        return;
    if ((err = gh_conn_connect_result(&a->conn)) == 0) {
        become_tunnel(f, a); /* the session is gone or going: nothing to dispatch */
        return;
    }
    gh_log_warn("forward: connect to %s (%s) failed: %s", f->host, a->addr->text, strerror(err));
    gh_conn_close(&a->conn, s->w->loop);
    a->live = 0;
    if (!start_attempt(f) && !attempts_live(f)) {
        proxy__exchange_fail(f->ex, 502);
        s->ops->dispatch(s);
    }
}

static void on_next(gh_timer *t)
{
    proxy__fwd *f = (proxy__fwd *)((char *)t - offsetof(proxy__fwd, next));
    start_attempt(f);
}

static void on_deadline(gh_timer *t)
{
    proxy__fwd *f = (proxy__fwd *)((char *)t - offsetof(proxy__fwd, deadline));
    proxy__session *s = f->ex->s;

    if (f->resolving) {
        gh_resolve_cancel(&f->q);
        f->resolving = 0;
        gh_log_warn("forward: client %s: DNS for %s timed out", s->ip, f->host);
    } else {
        gh_log_warn("forward: client %s: connect to %s:%u timed out", s->ip, f->host, f->req.port);
    }
    close_attempts(f);
    proxy__exchange_fail(f->ex, 504);
    s->ops->dispatch(s);
}

/* ---- the answer ---- */

/* Judges every address; connects (CONNECT) or lets the exchange go on (absolute-form). GONE when it ended. */
static int on_addresses(proxy__fwd *f, const gh_dns_answer *a)
{
    proxy__exchange *ex = f->ex;
    int first_rule = -1;
    const char *first_why = NULL;
    const gh_addr *first_addr = NULL;

    if (a->status != GH_DNS_OK) {
        gh_log_warn("forward: client %s: %s: %s", ex->s->ip, f->host, gh_dns_strerror(a->status));
        return proxy__exchange_local_error(ex, a->status == GH_DNS_TIMEOUT ? 504 : 502, NULL, 0);
    }
    for (size_t i = 0; i < a->n; i++) {
        int rule;
        const char *why = NULL;

        if (gh_fwd_check_addr(f->cfg, &f->req, (const struct sockaddr *)&a->addrs[i].ss, &rule, &why) != GH_FWD_ALLOW) {
            if (first_addr == NULL)
                first_rule = rule, first_why = why, first_addr = &a->addrs[i];
            continue;
        }
        if (f->naddrs == 0)
            f->rule = rule;
        if (f->naddrs < FWD_MAX_ADDRS)
            f->addrs[f->naddrs++] = a->addrs[i];
    }
    if (f->naddrs == 0)
        return deny(f, first_rule, first_why, first_addr);
    if (!f->connect)
        return proxy__exchange_fwd_go(ex);
    gh_timer_set(ex->s->w->loop, &f->deadline, f->cfg->connect_timeout);
    if (!start_attempt(f))
        return proxy__exchange_local_error(ex, 502, NULL, 0);
    return 0;
}

static void on_dns(void *arg, const gh_dns_answer *a)
{
    proxy__fwd *f = arg;
    proxy__session *s = f->ex->s;

    f->resolving = 0;
    gh_timer_stop(s->w->loop, &f->deadline);
    on_addresses(f, a);
    s->ops->dispatch(s);
}

/* ---- the start ---- */

/*
 * Egress through a parent proxy (the rule's via= pool: balanced, health-checked,
 * the next parent when a connect fails): CONNECT chained with a CONNECT of
 * ours, an absolute-form request forwarded in absolute-form. The parent
 * resolves the name, so there is no address here to judge.
 */
static void via_parent(proxy__fwd *f, gh_h1_request *r, int rule)
{
    proxy__exchange *ex = f->ex;
    const gh_cfg_fwd_rule *rl = &f->cfg->rules[rule];
    int v6 = strchr(f->host, ':') != NULL, n;

    f->rule = rule;
    f->via = 1;
    ex->pool = &ex->s->gen->pools[rl->via->index];
    if (f->connect) {
        n = snprintf(gh_buf_tail(&ex->uout), gh_buf_room(&ex->uout),
                     "CONNECT %s%s%s:%u HTTP/1.1\r\nHost: %s%s%s:%u\r\n%s\r\n", v6 ? "[" : "", f->host, v6 ? "]" : "",
                     f->req.port, v6 ? "[" : "", f->host, v6 ? "]" : "", f->req.port,
                     rl->via_auth.len ? rl->via_auth.p : "");
        if (n < 0 || (size_t)n >= gh_buf_room(&ex->uout)) {
            proxy__exchange_local_error(ex, 431, NULL, 0);
            return;
        }
        ex->uout.end += (uint32_t)n;
        ex->req_done = 1;
    } else if (proxy__exchange_fwd_head(ex, r, rl->via_auth.p, rl->via_auth.len, 1) == GONE) {
        return;
    }
    proxy__exchange_fwd_go(ex);
}

int proxy__fwd_parent_connect(const proxy__exchange *ex)
{
    return ex->fwd != NULL && ex->fwd->via && ex->fwd->connect;
}

int proxy__fwd_parent_answer(proxy__exchange *ex, const gh_h1_response *res, int n)
{
    proxy__fwd *f = ex->fwd;
    proxy__upstream *u = ex->u;
    gh_buf nb = {0};
    size_t rest;

    if (res->status / 100 != 2) {
        /* the parent's page is not shown: it may name its own internals */
        gh_log_warn("forward: parent %s answered %d to CONNECT %s:%u for client %s", proxy__upstream_name(u),
                    res->status, f->host, f->req.port, ex->s->ip);
        return proxy__exchange_fail(ex, 502);
    }
    gh_buf_consume(&u->in, (size_t)n);
    rest = gh_buf_len(&u->in);
    if (gh_buf_reserve(&nb) < 0 || gh_buf_room(&nb) < rest + sizeof(connect_ok)) {
        gh_buf_release(&nb);
        return proxy__exchange_fail(ex, 502);
    }
    /* our own 200 (RFC 9110 9.3.6: no framing fields), then what the origin already sent through the parent */
    if (answer_connect(ex->s, &nb) < 0) {
        gh_buf_release(&nb);
        return proxy__exchange_fail(ex, 502);
    }
    memcpy(gh_buf_tail(&nb), gh_buf_head(&u->in), rest);
    nb.end += (uint32_t)rest;
    gh_buf_release(&u->in);
    u->in = nb;
    proxy__upstream_report(u->pool, u->server, 1);
    ex->status = 200;
    ex->res_started = 1;
    ex->upstream_reusable = 0;
    proxy__upgrade_tunnel(ex); /* hands both connections over and frees ex */
    return GONE;
}

void proxy__fwd_log_facts(const proxy__fwd *f, const char **user, const gh_cfg_fwd_rule **rule)
{
    *user = f->user;
    *rule = f->rule >= 0 && f->cfg->rules[f->rule].allow ? &f->cfg->rules[f->rule] : NULL;
}

void proxy__fwd_tunnel_info(const proxy__fwd *f, proxy__tunnel *t, const char *dst)
{
    t->fwd_user = f->user;
    t->fwd_rule = f->rule + 1;
    t->fwd_rule_at = f->rule >= 0 ? &f->cfg->rules[f->rule] : NULL;
    t->idle_ms = f->cfg->tunnel_idle;
    snprintf(t->fwd_dst, sizeof(t->fwd_dst), "%s", dst);
}

/* absolute-form "http://..." only: an "https://" target would have us speak TLS to the origin (clients CONNECT). */
static int scheme_http(const gh_h1_request *r)
{
    return r->target.len >= 7 && strncasecmp(r->target.p, "http://", 7) == 0;
}

void proxy__fwd_start(proxy__exchange *ex, gh_h1_request *r)
{
    proxy__session *s = ex->s;
    const gh_cfg_forward *cfg = s->listener->forward->forward;
    proxy__fwd *f = calloc(1, sizeof(*f));
    gh_dns_answer now;
    gh_resolver *res;
    int rc, rule, st;

    ex->route = &cfg->route;
    ex->max_body = cfg->route.max_body;
    proxy__access_route(ex, r);
    if (f == NULL) {
        proxy__exchange_fail(ex, 500);
        return;
    }
    ex->fwd = f;
    f->ex = ex;
    f->cfg = cfg;
    f->rule = -1;
    f->deadline.cb = on_deadline;
    f->next.cb = on_next;
    f->connect = r->target_form == GH_H1_AUTHORITY_FORM;
    if (f->connect ? parse_target(f, r->authority, 1, 0) < 0
                   : r->target_form != GH_H1_ABSOLUTE_FORM || parse_target(f, r->authority, 0, 80) < 0) {
        proxy__exchange_local_error(ex, 400, NULL, 0); /* origin-form to a proxy, or a bad authority */
        return;
    }
    if (!f->connect && !scheme_http(r)) {
        proxy__exchange_local_error(ex, 501, NULL, 0);
        return;
    }
    f->req.connect = f->connect;
    f->req.client = (const struct sockaddr *)&s->peer;
    if (cfg->nusers > 0 && (st = proxy__fwd_auth(s, cfg, r, &f->user)) != 0) {
        proxy__fwd_auth_refuse(ex, cfg, st);
        return;
    }
    f->req.user = f->user;
    if (gh_fwd_check_name(cfg, &f->req, &rule) == GH_FWD_DENY) {
        deny(f, rule, NULL, NULL);
        return;
    }
    if (rule >= 0 && cfg->rules[rule].via != NULL && cfg->rules[rule].allow) {
        if (f->connect && over_tunnel_limits(f)) {
            proxy__exchange_local_error(ex, 429, NULL, 0);
            return;
        }
        via_parent(f, r, rule);
        return;
    }
    if (f->connect && over_tunnel_limits(f)) {
        gh_log_warn("forward: client %s%s%s: tunnel limit reached", s->ip, f->user ? " user " : "",
                    f->user ? f->user : "");
        proxy__exchange_local_error(ex, 429, NULL, 0);
        return;
    }
    /* The head is valid only now: absolute-form's upstream head is made before the DNS answer. */
    if (!f->connect && proxy__exchange_fwd_head(ex, r, NULL, 0, 0) == GONE)
        return;
    if ((res = resolver(s->w, cfg)) == NULL) {
        proxy__exchange_local_error(ex, 502, NULL, 0);
        return;
    }
    rc = gh_resolve(res, f->host, f->req.host_len, f->req.port, &f->q, on_dns, f, &now);
    if (rc == GH_AGAIN) {
        f->resolving = 1;
        gh_timer_set(s->w->loop, &f->deadline, cfg->dns_timeout);
        return;
    }
    on_addresses(f, &now);
}

/* ---- absolute-form: the upstream ---- */

proxy__upstream *proxy__fwd_upstream(proxy__exchange *ex)
{
    proxy__fwd *f = ex->fwd;
    proxy__pool *p = proxy__fwd_pool(ex->s->gen);
    proxy__upstream *u;

    while (p != NULL && f->tried < f->naddrs) {
        if ((u = proxy__upstream_to(p, &f->addrs[f->tried], f->fresh)) != NULL)
            return u;
        f->tried++;
        f->fresh = 0;
    }
    return NULL;
}

void proxy__fwd_upstream_failed(proxy__exchange *ex, int connected, int reused)
{
    proxy__fwd *f = ex->fwd;

    (void)connected;
    if (reused)
        f->fresh = 1; /* a stale keep-alive connection: the same address with a new one */
    else
        f->tried++; /* the next judged address */
}
