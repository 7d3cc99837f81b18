/*
 * h2_head: HTTP/2 request heads checked and converted (see h2_head.h).
 * nghttp2 checks much of RFC 9113 8.2 itself; these checks do not rely on it
 * (a library upgrade or option changes its checks, not ours) and add what
 * HTTP/1.1 upstream needs.
 */
#include "http/h2_head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/common.h"

#define FIELD_OVERHEAD 32 /* RFC 9113 6.5.2: a field's size in the header list */

void gh_h2_head_init(gh_h2_head *h, size_t max)
{
    memset(h, 0, sizeof(*h));
    h->max = max;
}

void gh_h2_head_dispose(gh_h2_head *h)
{
    free(h->buf);
    free(h->fields);
    h->buf = NULL;
    h->fields = NULL;
    h->len = h->cap = h->nfields = h->fcap = 0;
}

/* RFC 9110 5.6.2 tchar, lower case only (RFC 9113 8.2.1: upper case in a name is malformed). */
static int tchar_lower(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int gh_h2_name_ok(const uint8_t *name, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!tchar_lower(name[i]))
            return 0;
    return 1;
}

/* RFC 9110 5.5 field-content (obs-text allowed, as HTTP/1.1 carries it); RFC 9113 8.2.1: no CR, LF, NUL. */
int gh_h2_value_ok(const uint8_t *v, size_t n)
{
    if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((uint8_t)(v[i] - 0x20) >= 0x5f && v[i] < 0x80 && v[i] != '\t') /* below 0x20 or 0x7f */
            return 0;
    return 1;
}

static int is_lit(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0; /* strlen of a literal folds at compile time */
}

/* Room for n more bytes in buf (which may move): 0 or -1. */
static int reserve(gh_h2_head *h, size_t n)
{
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : 1024;
        while (cap < h->len + n)
            cap *= 2;
        char *nb = realloc(h->buf, cap);
        if (nb == NULL)
            return -1;
        h->buf = nb;
        h->cap = cap;
    }
    return 0;
}

/* Stores n bytes in buf (growing it within max + room for the joined cookie); the offset, or -1. */
static long store(gh_h2_head *h, const void *p, size_t n)
{
    if (n == 0)
        return (long)h->len; /* an empty value: nothing to copy (buf may be NULL yet) */
    if (reserve(h, n) < 0)
        return -1;
    memcpy(h->buf + h->len, p, n);
    h->len += n;
    return (long)(h->len - n);
}

/* Appends the value of pseudo-header i (already in buf) to buf, which reserve made room for. */
static void append_pseudo(gh_h2_head *h, int i)
{
    memcpy(h->buf + h->len, h->buf + h->pseudo[i].value, h->pseudo[i].vlen);
    h->len += h->pseudo[i].vlen;
}

/*
 * A forward proxy's request: "scheme://authority" + :path in buf, the target the
 * exchange forwards as an HTTP/1.1 absolute-form one would be (forward.c judges
 * its scheme and authority; a parent proxy gets it as it is). Its offset, or -1.
 */
static long store_absolute(gh_h2_head *h, size_t *len)
{
    size_t n = h->pseudo[GH_H2_SCHEME].vlen + 3 + h->pseudo[GH_H2_AUTHORITY].vlen + h->pseudo[GH_H2_PATH].vlen;
    size_t at = h->len;

    if (reserve(h, n) < 0)
        return -1; /* the values are copied from buf itself: room first, then no move */
    append_pseudo(h, GH_H2_SCHEME);
    memcpy(h->buf + h->len, "://", 3);
    h->len += 3;
    append_pseudo(h, GH_H2_AUTHORITY);
    append_pseudo(h, GH_H2_PATH);
    *len = n;
    return (long)at;
}

static int fail(gh_h2_head *h, int err)
{
    if (h->error == 0)
        h->error = err;
    return h->error;
}

static int pseudo_index(const uint8_t *name, size_t n)
{
    switch (n) { /* by length first: this runs for every field of every request */
    case 5:
        return memcmp(name, ":path", 5) == 0 ? GH_H2_PATH : -1;
    case 7:
        return memcmp(name, ":method", 7) == 0 ? GH_H2_METHOD : memcmp(name, ":scheme", 7) == 0 ? GH_H2_SCHEME : -1;
    case 9:
        return memcmp(name, ":protocol", 9) == 0 ? GH_H2_PROTOCOL : -1;
    case 10:
        return memcmp(name, ":authority", 10) == 0 ? GH_H2_AUTHORITY : -1;
    default:
        return -1;
    }
}

/* RFC 9113 8.2.2: fields of HTTP/1.1 connection management have no meaning here; te only as "trailers". */
static int connection_specific(const uint8_t *name, size_t n, const uint8_t *v, size_t vn)
{
    switch (n) {
    case 2:
        return memcmp(name, "te", 2) == 0 && !is_lit(v, vn, "trailers");
    case 7:
        return memcmp(name, "upgrade", 7) == 0;
    case 10:
        return memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0;
    case 16:
        return memcmp(name, "proxy-connection", 16) == 0;
    case 17:
        return memcmp(name, "transfer-encoding", 17) == 0;
    default:
        return 0;
    }
}

int gh_h2_head_add(gh_h2_head *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen)
{
    gh_h2_field f;
    long no, vo;

    h->list_size += nlen + vlen + FIELD_OVERHEAD;
    if (h->error != 0)
        return h->error;
    if (h->list_size > h->max)
        return fail(h, GH_H2_TOO_LARGE);
    if (nlen > 0 && name[0] == ':') {
        int i = pseudo_index(name, nlen);
        /* RFC 9113 8.3: only the defined ones, each once, all before the regular fields; :protocol only
         * where extended CONNECT was offered (RFC 8441 4) */
        if (i < 0 || h->has[i] || h->regular || (i == GH_H2_PROTOCOL && !h->extended))
            return fail(h, GH_H2_MALFORMED);
        if (!gh_h2_value_ok(value, vlen))
            return fail(h, GH_H2_MALFORMED);
        if ((vo = store(h, value, vlen)) < 0)
            return fail(h, GH_H2_TOO_LARGE);
        h->pseudo[i] = (gh_h2_field){0, 0, (uint32_t)vo, (uint32_t)vlen};
        h->has[i] = 1;
        return 0;
    }
    h->regular = 1;
    if (!gh_h2_name_ok(name, nlen) || !gh_h2_value_ok(value, vlen) || connection_specific(name, nlen, value, vlen))
        return fail(h, GH_H2_MALFORMED);
    if (h->nfields == GH_H2_MAX_FIELDS)
        return fail(h, GH_H2_TOO_LARGE);
    if (h->nfields == h->fcap) {
        size_t cap = h->fcap ? GH_MIN(2 * h->fcap, GH_H2_MAX_FIELDS) : 16;
        gh_h2_field *nf = realloc(h->fields, cap * sizeof(*nf));
        if (nf == NULL)
            return fail(h, GH_H2_TOO_LARGE);
        h->fields = nf;
        h->fcap = cap;
    }
    if ((no = store(h, name, nlen)) < 0 || (vo = store(h, value, vlen)) < 0)
        return fail(h, GH_H2_TOO_LARGE);
    f = (gh_h2_field){(uint32_t)no, (uint32_t)nlen, (uint32_t)vo, (uint32_t)vlen};
    h->fields[h->nfields++] = f;
    return 0;
}

/* ---- the whole head ---- */

static int method_ok(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)p[i];
        /* a token: upper case allowed here (methods are case-sensitive, RFC 9110 9.1) */
        if (!(tchar_lower(c) || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    return 1;
}

/* The same kinds the HTTP/1 parser gives, so headers.c treats both protocols' fields alike. */
static uint8_t field_kind(const char *n, size_t len)
{
    static const struct {
        const char *name;
        uint8_t len, kind;
    } kinds[] = {
        {"host", 4, GH_HDR_HOST},
        {"content-length", 14, GH_HDR_CONTENT_LENGTH},
        {"te", 2, GH_HDR_TE},
        {"trailer", 7, GH_HDR_TRAILER},
        {"proxy-authorization", 19, GH_HDR_PROXY_AUTHORIZATION},
        {"proxy-authenticate", 18, GH_HDR_PROXY_AUTHENTICATE},
        {"expect", 6, GH_HDR_EXPECT},
        {"x-forwarded-for", 15, GH_HDR_X_FORWARDED_FOR},
        {"x-forwarded-proto", 17, GH_HDR_X_FORWARDED_PROTO},
        {"x-forwarded-host", 16, GH_HDR_X_FORWARDED_HOST},
        {"forwarded", 9, GH_HDR_FORWARDED},
        {"via", 3, GH_HDR_VIA},
        {"date", 4, GH_HDR_DATE},
        {"server", 6, GH_HDR_SERVER},
    };
    for (size_t i = 0; i < GH_ARRAY_LEN(kinds); i++)
        if (kinds[i].len == len && memcmp(n, kinds[i].name, len) == 0)
            return kinds[i].kind;
    return GH_HDR_OTHER;
}

static gh_h1_str slice(const gh_h2_head *h, uint32_t off, uint32_t len)
{
    return (gh_h1_str){h->buf + off, len};
}

/* Digits only, no overflow (RFC 9110 8.6); -1 otherwise. */
static int parse_length(gh_h1_str v, uint64_t *out)
{
    uint64_t n = 0;
    if (v.len == 0 || v.len > 19)
        return -1;
    for (size_t i = 0; i < v.len; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v.p[i] - '0');
    }
    *out = n;
    return 0;
}

/* RFC 9113 8.2.3: the crumbs of a split cookie become one field again, joined with "; ". */
static int join_cookies(gh_h2_head *h)
{
    size_t n = 0, total = 0, first = 0;
    long at;

    for (size_t i = 0; i < h->nfields; i++)
        if (is_lit((const uint8_t *)h->buf + h->fields[i].name, h->fields[i].nlen, "cookie")) {
            if (n++ == 0)
                first = i;
            total += h->fields[i].vlen + 2;
        }
    if (n < 2)
        return 0;
    /* joined apart first: store() may move buf, which the crumbs are in */
    char *joined = malloc(total);
    size_t len = 0;
    if (joined == NULL)
        return -1;
    for (size_t i = 0; i < h->nfields; i++)
        if (is_lit((const uint8_t *)h->buf + h->fields[i].name, h->fields[i].nlen, "cookie")) {
            if (len > 0) {
                joined[len++] = ';';
                joined[len++] = ' ';
            }
            memcpy(joined + len, h->buf + h->fields[i].value, h->fields[i].vlen);
            len += h->fields[i].vlen;
        }
    at = store(h, joined, len);
    free(joined);
    if (at < 0)
        return -1;
    h->fields[first].value = (uint32_t)at;
    h->fields[first].vlen = (uint32_t)len;
    size_t k = 0;
    for (size_t i = 0; i < h->nfields; i++)
        if (i == first || !is_lit((const uint8_t *)h->buf + h->fields[i].name, h->fields[i].nlen, "cookie"))
            h->fields[k++] = h->fields[i];
    h->nfields = k;
    return 0;
}

/* The fields into r->headers: kinds, hop-by-hop marks, Host and Content-Length checked. */
static int fill_headers(gh_h2_head *h, gh_h1_request *r, gh_h1_str *host_field, int *has_length)
{
    int hosts = 0;

    if (h->nfields > GH_H1_MAX_HEADERS)
        return GH_H2_TOO_LARGE;
    for (size_t i = 0; i < h->nfields; i++) {
        gh_h1_header *o = &r->headers[i];
        o->name = slice(h, h->fields[i].name, h->fields[i].nlen);
        o->value = slice(h, h->fields[i].value, h->fields[i].vlen);
        o->kind = field_kind(o->name.p, o->name.len);
        /* te (trailers only, checked above) and expect are answered here, never forwarded */
        o->hop = o->kind == GH_HDR_TE || o->kind == GH_HDR_EXPECT || o->kind == GH_HDR_TRAILER ||
                 o->kind == GH_HDR_PROXY_AUTHORIZATION;
        if (o->kind == GH_HDR_HOST) {
            if (hosts++ > 0 || !gh_h1_authority_ok(o->value.p, o->value.len, 0))
                return GH_H2_MALFORMED;
            *host_field = o->value;
        } else if (o->kind == GH_HDR_CONTENT_LENGTH) {
            uint64_t v;
            /* several content-length fields must agree (RFC 9110 8.6); one value each, no lists */
            if (parse_length(o->value, &v) < 0 || (*has_length && v != r->content_length))
                return GH_H2_MALFORMED;
            r->content_length = v;
            *has_length = 1;
        } else if (o->kind == GH_HDR_EXPECT) {
            if (o->value.len != 12 || strncasecmp(o->value.p, "100-continue", 12) != 0)
                return -417;
            r->flags |= GH_H1_F_EXPECT_CONTINUE;
        }
    }
    r->nheaders = h->nfields;
    return 0;
}

int gh_h2_head_request(gh_h2_head *h, int end_stream, gh_h1_request *r)
{
    gh_h1_str host_field = {"", 0}, authority = {"", 0};
    int has_length = 0, rc, connect;
    long abs_at = 0;
    size_t abs_len = 0;

    if (h->error != 0)
        return h->error;
    r->flags = 0;
    r->content_length = 0;
    r->minor = 1; /* HTTP/1.1 semantics upstream */
    r->authority = (gh_h1_str){"", 0};
    r->protocol = (gh_h1_str){"", 0};
    if (!h->has[GH_H2_METHOD])
        return GH_H2_MALFORMED;
    r->method = slice(h, h->pseudo[GH_H2_METHOD].value, h->pseudo[GH_H2_METHOD].vlen);
    if (!method_ok(r->method.p, r->method.len))
        return GH_H2_MALFORMED;
    connect = r->method.len == 7 && memcmp(r->method.p, "CONNECT", 7) == 0;
    if (h->has[GH_H2_AUTHORITY]) {
        authority = slice(h, h->pseudo[GH_H2_AUTHORITY].value, h->pseudo[GH_H2_AUTHORITY].vlen);
        /* the HTTP/1.1 front's Host check, not a laxer one: the value becomes Host upstream, and a
         * comma or sub-delim Host is a list or a second spelling to a backend or a cache */
        if (!gh_h1_authority_ok(authority.p, authority.len, connect && !h->has[GH_H2_PROTOCOL]))
            return GH_H2_MALFORMED;
    }
    if (connect && !h->has[GH_H2_PROTOCOL]) {
        /* RFC 9113 8.5: :authority only */
        if (!h->has[GH_H2_AUTHORITY] || h->has[GH_H2_SCHEME] || h->has[GH_H2_PATH])
            return GH_H2_MALFORMED;
        r->target_form = GH_H1_AUTHORITY_FORM;
        r->target = r->path = r->authority = authority;
    } else {
        if (connect) {
            /* RFC 8441 4: extended CONNECT names its target as a request does, with :authority (the
             * host the tunnel is for: Host upstream); :protocol is an upgrade token (RFC 9110 16.7) */
            gh_h1_str proto = slice(h, h->pseudo[GH_H2_PROTOCOL].value, h->pseudo[GH_H2_PROTOCOL].vlen);
            if (!h->has[GH_H2_AUTHORITY] || !method_ok(proto.p, proto.len))
                return GH_H2_MALFORMED;
        }
        gh_h1_str scheme, path;
        /* RFC 9113 8.3.1: :method, :scheme and :path, exactly once each; :protocol only with CONNECT */
        if (!h->has[GH_H2_SCHEME] || !h->has[GH_H2_PATH] || (h->has[GH_H2_PROTOCOL] && !connect))
            return GH_H2_MALFORMED;
        scheme = slice(h, h->pseudo[GH_H2_SCHEME].value, h->pseudo[GH_H2_SCHEME].vlen);
        path = slice(h, h->pseudo[GH_H2_PATH].value, h->pseudo[GH_H2_PATH].vlen);
        if (!(scheme.len == 4 && memcmp(scheme.p, "http", 4) == 0) &&
            !(scheme.len == 5 && memcmp(scheme.p, "https", 5) == 0))
            return GH_H2_MALFORMED;
        if (path.len == 1 && path.p[0] == '*' && r->method.len == 7 && memcmp(r->method.p, "OPTIONS", 7) == 0)
            r->target_form = GH_H1_ASTERISK_FORM;
        else if (gh_h1_origin_target_ok(path.p, path.len)) /* the HTTP/1.1 front's check: "%zz" is 400 on both */
            r->target_form = GH_H1_ORIGIN_FORM;
        else
            return GH_H2_MALFORMED;
        r->target = r->path = path;
        if (h->absolute && !connect && h->has[GH_H2_AUTHORITY] && r->target_form == GH_H1_ORIGIN_FORM) {
            if ((abs_at = store_absolute(h, &abs_len)) < 0)
                return GH_H2_TOO_LARGE;
            r->target_form = GH_H1_ABSOLUTE_FORM;
        }
    }
    if (join_cookies(h) < 0)
        return GH_H2_TOO_LARGE;
    /* join_cookies may have moved buf: take the slices again */
    r->method = slice(h, h->pseudo[GH_H2_METHOD].value, h->pseudo[GH_H2_METHOD].vlen);
    if (h->has[GH_H2_AUTHORITY])
        authority = slice(h, h->pseudo[GH_H2_AUTHORITY].value, h->pseudo[GH_H2_AUTHORITY].vlen);
    if (r->target_form == GH_H1_AUTHORITY_FORM) {
        r->target = r->path = r->authority = authority;
    } else {
        r->target = r->path = slice(h, h->pseudo[GH_H2_PATH].value, h->pseudo[GH_H2_PATH].vlen);
        if (r->target_form == GH_H1_ABSOLUTE_FORM) {
            r->target = slice(h, (uint32_t)abs_at, (uint32_t)abs_len);
            r->authority = authority;
        }
    }
    if (connect) {
        /* slices taken after join_cookies, which may have moved buf */
        r->flags |= GH_H1_F_CONNECT;
        if (h->has[GH_H2_PROTOCOL])
            r->protocol = slice(h, h->pseudo[GH_H2_PROTOCOL].value, h->pseudo[GH_H2_PROTOCOL].vlen);
    }
    if ((rc = fill_headers(h, r, &host_field, &has_length)) != 0)
        return rc;
    /* RFC 9113 8.3.1: :authority and Host must not disagree (a router and a backend would see two hosts) */
    if (h->has[GH_H2_AUTHORITY] && host_field.len > 0 &&
        (host_field.len != authority.len || strncasecmp(host_field.p, authority.p, authority.len) != 0))
        return GH_H2_MALFORMED;
    r->host = h->has[GH_H2_AUTHORITY] ? authority : host_field;
    if (r->host.len == 0)
        return GH_H2_MALFORMED; /* HTTP/1.1 needs a Host: a request with neither has no target host */
    if (connect) {
        /* RFC 9110 9.3.6: a CONNECT has no content; its DATA is the tunnel's (RFC 9113 8.5), which a
         * content-length would frame as a body */
        if (has_length)
            return GH_H2_MALFORMED;
        r->body = GH_H1_BODY_NONE;
    } else if (has_length) {
        if (end_stream && r->content_length > 0)
            return GH_H2_MALFORMED; /* RFC 9113 8.1.1: content-length disagrees with the DATA (none) */
        r->body = GH_H1_BODY_LENGTH;
    } else {
        r->body = end_stream ? GH_H1_BODY_NONE : GH_H1_BODY_CHUNKED;
    }
    return 0;
}
