/*
 * headers: what goes upstream and what goes back to the client, as bytes.
 * Pure functions over parsed heads; the only place that decides which header
 * crosses the proxy.
 */
#include <string.h>
#include <strings.h>

#include "core/common.h"
#include "proxy/proxy.h"

typedef struct out {
    char *p;
    size_t len, cap;
    int overflow;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->overflow || o->cap - o->len < n) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}
static void put_str(out *o, gh_h1_str s)
{
    put(o, s.p, s.len);
}

static void put_uint(out *o, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(o, tmp + i, sizeof(tmp) - i);
}

static void put_header(out *o, const gh_h1_header *h)
{
    put_str(o, h->name);
    put(o, ": ", 2);
    put_str(o, h->value);
    put(o, "\r\n", 2);
}

/* All values of one header kind joined with ", " (several fields = one list, RFC 9110 5.3). */
static int put_joined(out *o, const gh_h1_header *hs, size_t n, int kind)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (hs[i].kind != kind || hs[i].value.len == 0)
            continue;
        if (any)
            put(o, ", ", 2);
        put_str(o, hs[i].value);
        any = 1;
    }
    return any;
}

/* RFC 7239 section 6: an IPv6 node is quoted and bracketed, an IPv4 one is a token. */
static void put_forwarded_for(out *o, const char *ip)
{
    if (strchr(ip, ':') != NULL) {
        put(o, "for=\"[", 6);
        puts_(o, ip);
        put(o, "]\"", 2);
    } else {
        put(o, "for=", 4);
        puts_(o, ip);
    }
}

/* host values carry ':' (not a token char), so they are always sent as quoted-strings. */
static void put_forwarded(out *o, const gh_h1_request *r, const char *ip, gh_h1_str host, int tls)
{
    put(o, "Forwarded: ", 11);
    if (put_joined(o, r->headers, r->nheaders, GH_HDR_FORWARDED))
        put(o, ", ", 2);
    put_forwarded_for(o, ip);
    puts_(o, tls ? ";proto=https" : ";proto=http");
    if (host.len > 0) {
        put(o, ";host=\"", 7);
        put_str(o, host); /* validated host[:port]: no '"' or '\\' to escape */
        put(o, "\"", 1);
    }
    put(o, "\r\n", 2);
}

static int forwarded_kind(int kind)
{
    return kind == GH_HDR_HOST || kind == GH_HDR_X_FORWARDED_FOR || kind == GH_HDR_X_FORWARDED_PROTO ||
           kind == GH_HDR_X_FORWARDED_HOST || kind == GH_HDR_FORWARDED;
}

/* Whether a route's header operation names this header (then the client's copy is not forwarded). */
static int op_names(const gh_cfg_header_op *ops, size_t n, gh_h1_str name)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i].name.len == name.len && strncasecmp(ops[i].name.p, name.p, name.len) == 0)
            return 1;
    return 0;
}

/* The headers that gatehouse writes itself, as bits: a route's operation naming one replaces gatehouse's copy. */
enum { OWN_HOST = 1, OWN_XFF = 2, OWN_XFP = 4, OWN_XFH = 8, OWN_FORWARDED = 16 };

/* Which of gatehouse's own headers the operations name; computed once per head, and only when there are any. */
static unsigned own_named(const gh_cfg_header_op *ops, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
        unsigned bit;
    } own[] = {
        {"Host", 4, OWN_HOST},
        {"X-Forwarded-For", 15, OWN_XFF},
        {"X-Forwarded-Proto", 17, OWN_XFP},
        {"X-Forwarded-Host", 16, OWN_XFH},
        {"Forwarded", 9, OWN_FORWARDED},
    };
    unsigned named = 0;

    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < GH_ARRAY_LEN(own); k++)
            if (ops[i].name.len == own[k].len && strncasecmp(ops[i].name.p, own[k].name, own[k].len) == 0)
                named |= own[k].bit;
    return named;
}

static void put_set_ops(out *o, const gh_cfg_header_op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i].op == GH_HEADER_SET) {
            put(o, ops[i].name.p, ops[i].name.len);
            put(o, ": ", 2);
            put(o, ops[i].value.p, ops[i].value.len);
            put(o, "\r\n", 2);
        }
}

int proxy__request_head(char *dst, size_t cap, const gh_h1_request *r, const proxy__forward *f)
{
    out o = {dst, 0, cap, 0};
    gh_h1_str host = r->host;
    const char *ip = f->client_ip, *fallback_host = f->fallback_host;
    const gh_cfg_header_op *ops = f->route ? f->route->req_ops : NULL;
    size_t nops = f->route ? f->route->nreq_ops : 0;
    int tls = f->tls;
    unsigned named = nops > 0 ? own_named(ops, nops) : 0;

    /* RFC 9112 3.2.2: with an absolute-form target, its authority is the host. */
    if (r->target_form == GH_H1_ABSOLUTE_FORM)
        host = r->authority;
    else if (host.len == 0)
        host = (gh_h1_str){fallback_host, strlen(fallback_host)};

    put_str(&o, r->method);
    put(&o, " ", 1);
    if (f->path != NULL)
        put(&o, f->path, f->path_len);
    else if (r->target_form == GH_H1_ORIGIN_FORM || r->target_form == GH_H1_ABSOLUTE_FORM)
        put_str(&o, r->path);
    else
        put_str(&o, r->target);
    put(&o, " HTTP/1.1\r\n", 11);
    /* A route's set/remove of a header gatehouse writes itself replaces gatehouse's copy too, not only
     * the client's: two Host fields are a 400 for any strict backend (RFC 9112 3.2) and two
     * X-Forwarded-For lists let the client's spoofed entry pass for ours. `remove Host` is refused
     * by the configuration (HTTP/1.1 requires it), so a Host always goes out exactly once. */
    if (!(named & OWN_HOST)) {
        put(&o, "Host: ", 6);
        put_str(&o, host);
        put(&o, "\r\n", 2);
    }
    for (size_t i = 0; i < r->nheaders; i++)
        if (!r->headers[i].hop && !forwarded_kind(r->headers[i].kind) &&
            (nops == 0 || !op_names(ops, nops, r->headers[i].name)))
            put_header(&o, &r->headers[i]);
    put_set_ops(&o, ops, nops);

    if (f->anonymous)
        goto framing; /* a forward proxy tells no origin who its clients are (internal addresses) */
    if (!(named & OWN_XFF)) {
        put(&o, "X-Forwarded-For: ", 17);
        if (put_joined(&o, r->headers, r->nheaders, GH_HDR_X_FORWARDED_FOR))
            put(&o, ", ", 2);
        puts_(&o, ip);
        put(&o, "\r\n", 2);
    }
    if (!(named & OWN_XFP))
        puts_(&o, tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    if (!(named & OWN_XFH)) {
        put(&o, "X-Forwarded-Host: ", 18);
        put_str(&o, host);
        put(&o, "\r\n", 2);
    }
    if (!(named & OWN_FORWARDED))
        put_forwarded(&o, r, ip, host, tls);
framing:
    if (f->extra_len > 0)
        put(&o, f->extra, f->extra_len);
    if (r->body == GH_H1_BODY_CHUNKED)
        put(&o, "Transfer-Encoding: chunked\r\n", 28);
    /* Upgrade is hop-by-hop (RFC 9110 7.8): the client's was dropped with the other
     * hop-by-hop fields, and only a checked WebSocket handshake asks the next hop again. */
    if (f->websocket)
        puts_(&o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    put(&o, "\r\n", 2);
    return o.overflow ? -1 : (int)o.len;
}

/*
 * Shielding: headers that name the backend's software (Server, X-Powered-By...:
 * GH_CFG_HIDE_DEFAULT and `hide_header`) tell an attacker which exploits to
 * try; they are removed rather than replaced, so nothing is said at all
 * (`response_header set Server NAME` gives one face if an operator wants one).
 */
static inline unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/* Inline and without strncasecmp: this runs for every response header whose length a hidden name has. */
static int hidden(const gh_cfg_edge *e, gh_h1_str name)
{
    for (size_t i = 0; i < e->nhide; i++) {
        const char *h = e->hide[i].p;
        size_t k = 0;

        if (e->hide[i].len != name.len || lower((unsigned char)h[0]) != lower((unsigned char)name.p[0]))
            continue;
        while (k < name.len && lower((unsigned char)h[k]) == lower((unsigned char)name.p[k]))
            k++;
        if (k == name.len)
            return 1;
    }
    return 0;
}

const gh_cstr *proxy__hsts(const gh_cfg_site *site, int tls)
{
    /* RFC 6797 7.2: over plain HTTP the header must not be sent (an attacker could inject it anyway). */
    return tls && site != NULL && site->hsts.len > 0 ? &site->hsts : NULL;
}

static void put_hsts(out *o, const gh_cfg_site *site, int tls, const gh_cfg_header_op *ops, size_t nops)
{
    const gh_cstr *v = proxy__hsts(site, tls);

    if (v == NULL || op_names(ops, nops, (gh_h1_str){"Strict-Transport-Security", 25}))
        return;
    put(o, "Strict-Transport-Security: ", 27);
    put(o, v->p, v->len);
    put(o, "\r\n", 2);
}

void proxy__resp_walk_init(proxy__resp_walk *w, const gh_h1_response *r, const gh_cfg_route *route, int tls)
{
    w->r = r;
    w->route = route;
    w->ops = route != NULL ? route->resp_ops : NULL;
    w->nops = route != NULL ? (uint32_t)route->nresp_ops : 0;
    w->hide = route != NULL && route->edge.nhide > 0;
    w->hsts = proxy__hsts(route != NULL ? route->site : NULL, tls);
    if (w->hsts != NULL && op_names(w->ops, w->nops, (gh_h1_str){"Strict-Transport-Security", 25}))
        w->hsts = NULL; /* the route's operation on it wins */
    w->i = w->op = 0;
}

int proxy__resp_walk_next(proxy__resp_walk *w, gh_h1_str *name, gh_h1_str *value, const gh_h1_header **from)
{
    const gh_h1_response *r = w->r;

    while (w->i < r->nheaders) {
        const gh_h1_header *f = &r->headers[w->i++];
        if (f->hop || (w->nops > 0 && op_names(w->ops, w->nops, f->name)) ||
            (w->hide && (w->route->edge.hide_lens & gh_cfg_hide_bit(f->name.p, f->name.len)) &&
             hidden(&w->route->edge, f->name)))
            continue;
        *name = f->name;
        *value = f->value;
        *from = f;
        return 1;
    }
    *from = NULL;
    while (w->op < w->nops) {
        const gh_cfg_header_op *op = &w->ops[w->op++];
        if (op->op != GH_HEADER_SET)
            continue;
        *name = (gh_h1_str){op->name.p, op->name.len};
        *value = (gh_h1_str){op->value.p, op->value.len};
        return 1;
    }
    if (w->hsts != NULL) {
        *name = (gh_h1_str){"Strict-Transport-Security", 25};
        *value = (gh_h1_str){w->hsts->p, w->hsts->len};
        w->hsts = NULL;
        return 1;
    }
    return 0;
}

int proxy__response_head(char *dst, size_t cap, const gh_h1_response *r, int chunk_out, int close,
                         const gh_cfg_route *route, int tls)
{
    out o = {dst, 0, cap, 0};
    proxy__resp_walk w;
    const gh_h1_header *from;
    gh_h1_str name, value;

    put(&o, "HTTP/1.1 ", 9);
    put_uint(&o, (uint64_t)r->status);
    put(&o, " ", 1);
    put_str(&o, r->reason);
    put(&o, "\r\n", 2);
    proxy__resp_walk_init(&w, r, route, tls);
    while (proxy__resp_walk_next(&w, &name, &value, &from)) {
        put_str(&o, name);
        put(&o, ": ", 2);
        put_str(&o, value);
        put(&o, "\r\n", 2);
    }
    if (chunk_out)
        put(&o, "Transfer-Encoding: chunked\r\n", 28);
    /* The exchange relays a 101 only as the answer to a WebSocket upgrade it checked. */
    if (r->status == 101)
        puts_(&o, "Connection: Upgrade\r\nUpgrade: websocket\r\n");
    else if (close)
        put(&o, "Connection: close\r\n", 19);
    put(&o, "\r\n", 2);
    return o.overflow ? -1 : (int)o.len;
}

const char *proxy__status_text(int status)
{
    static const struct {
        int status;
        const char *text;
    } texts[] = {
        {200, "OK"},
        {201, "Created"},
        {202, "Accepted"},
        {204, "No Content"},
        {301, "Moved Permanently"},
        {302, "Found"},
        {303, "See Other"},
        {307, "Temporary Redirect"},
        {308, "Permanent Redirect"},
        {400, "Bad Request"},
        {401, "Unauthorized"},
        {403, "Forbidden"},
        {404, "Not Found"},
        {405, "Method Not Allowed"},
        {407, "Proxy Authentication Required"},
        {408, "Request Timeout"},
        {410, "Gone"},
        {413, "Content Too Large"},
        {414, "URI Too Long"},
        {417, "Expectation Failed"},
        {421, "Misdirected Request"},
        {426, "Upgrade Required"},
        {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"},
        {500, "Internal Server Error"},
        {501, "Not Implemented"},
        {502, "Bad Gateway"},
        {503, "Service Unavailable"},
        {504, "Gateway Timeout"},
        {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        if (texts[i].status == status)
            return texts[i].text;
    return status < 400 ? "Status" : "Error";
}

int proxy__local_response(char *dst, size_t cap, const proxy__local *l)
{
    out o = {dst, 0, cap, 0};
    /* A page of gatehouse's own (an error, 403, 429) has no route but keeps its site's security headers. */
    const gh_cfg_site *site = l->route ? l->route->site : l->site;
    const gh_cfg_header_op *ops = l->route ? l->route->resp_ops : site ? site->resp_ops : NULL;
    size_t nops = l->route ? l->route->nresp_ops : site ? site->nresp_ops : 0;
    /* RFC 9110 8.6 and 6.4.1: no Content-Length, and no body, for 1xx, 204 and 304 */
    int bodiless = l->status < 200 || l->status == 204 || l->status == 304;

    put(&o, "HTTP/1.1 ", 9);
    put_uint(&o, (uint64_t)l->status);
    put(&o, " ", 1);
    puts_(&o, proxy__status_text(l->status));
    put(&o, "\r\n", 2);
    if (l->location != NULL) {
        put(&o, "Location: ", 10);
        put(&o, l->location, l->location_len);
        put(&o, "\r\n", 2);
    }
    if (!bodiless && !op_names(ops, nops, (gh_h1_str){"Content-Type", 12}))
        puts_(&o, "Content-Type: text/plain\r\n");
    put_set_ops(&o, ops, nops);
    put_hsts(&o, site, l->tls, ops, nops);
    if (l->retry_after > 0) {
        /* RFC 6585 4, RFC 9110 10.2.3: when the rate limit lets this client in again */
        put(&o, "Retry-After: ", 13);
        put_uint(&o, l->retry_after);
        put(&o, "\r\n", 2);
    }
    if (l->extra_len > 0)
        put(&o, l->extra, l->extra_len); /* whole lines of gatehouse's own (Proxy-Authenticate) */
    if (!bodiless) {
        puts_(&o, "Content-Length: ");
        put_uint(&o, l->body_len);
        put(&o, "\r\n", 2);
    }
    /* RFC 6455 4.2.2 and RFC 9110 15.5.22: say which protocol and version to upgrade to. */
    if (l->status == 426)
        puts_(&o, l->close ? "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade, close\r\n"
                           : "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n");
    else if (l->close)
        puts_(&o, "Connection: close\r\n");
    put(&o, "\r\n", 2);
    if (!bodiless && !l->head)
        put(&o, l->body, l->body_len);
    return o.overflow ? -1 : (int)o.len;
}

size_t proxy__error_body_len(int status)
{
    return 4 + strlen(proxy__status_text(status)) + 1;
}

size_t proxy__error_body(char *dst, size_t cap, int status)
{
    out o = {dst, 0, cap, 0};

    put_uint(&o, (uint64_t)status);
    put(&o, " ", 1);
    puts_(&o, proxy__status_text(status));
    put(&o, "\n", 1);
    return o.overflow ? 0 : o.len;
}

/* A short plain-text page; never anything about the backend. */
int proxy__error_response(char *dst, size_t cap, int status, int head)
{
    char body[64];
    proxy__local l = {.status = status, .body = body, .head = head, .close = 1};

    l.body_len = proxy__error_body(body, sizeof(body), status);
    return proxy__local_response(dst, cap, &l);
}
