/*
 * h1: a strict, incremental HTTP/1.1 message parser (RFC 9110/9112) with no I/O.
 *
 * The parser works on one contiguous buffer holding the start of a message. It
 * only parses once the end of the head is in the buffer, so calling it again as
 * more bytes arrive is cheap (gh_h1_head_end() finds the end first). Every slice it
 * returns points into the caller's buffer and is valid as long as that buffer is.
 *
 * Strictness is the point: anything a second parser could read differently
 * (CL+TE, duplicate Content-Length, obs-fold, bare CR or LF, whitespace before a
 * colon, control bytes...) is an error, never a guess. See DESIGN.md, Security.
 */
#ifndef GH_HTTP_H1_H
#define GH_HTTP_H1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GH_H1_MAX_HEADERS 100   /* more: 431 */
#define GH_H1_MAX_LINE    8192  /* request line longer than this: 414 */
#define GH_H1_MAX_HEAD    16384 /* whole head (with the final CRLF) longer than this: 431 */
#define GH_H1_MAX_TRAILER 4096  /* chunked trailer section longer than this: error */

typedef struct gh_h1_str {
    const char *p;
    size_t len;
} gh_h1_str;

/* Well-known header names, recognised once by the parser so the proxy never compares names again. */
enum gh_h1_hdr_kind {
    GH_HDR_OTHER = 0,
    GH_HDR_HOST,
    GH_HDR_CONTENT_LENGTH,
    GH_HDR_TRANSFER_ENCODING,
    GH_HDR_CONNECTION,
    GH_HDR_KEEP_ALIVE,
    GH_HDR_TE,
    GH_HDR_TRAILER,
    GH_HDR_UPGRADE,
    GH_HDR_PROXY_CONNECTION,
    GH_HDR_PROXY_AUTHORIZATION,
    GH_HDR_PROXY_AUTHENTICATE,
    GH_HDR_EXPECT,
    GH_HDR_X_FORWARDED_FOR,
    GH_HDR_X_FORWARDED_PROTO,
    GH_HDR_X_FORWARDED_HOST,
    GH_HDR_FORWARDED,
    GH_HDR_VIA,
    GH_HDR_DATE,
    GH_HDR_SERVER,
};

typedef struct gh_h1_header {
    gh_h1_str name;
    gh_h1_str value; /* leading and trailing SP/HTAB removed */
    uint8_t kind;    /* enum gh_h1_hdr_kind */
    uint8_t hop;     /* 1: hop-by-hop, must not be forwarded (see gh_h1_parse_request) */
} gh_h1_header;

enum gh_h1_body {
    GH_H1_BODY_NONE = 0, /* no body at all */
    GH_H1_BODY_LENGTH,   /* content_length bytes (may be 0) */
    GH_H1_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
    GH_H1_BODY_CLOSE,    /* responses only: until the connection closes */
};

enum gh_h1_target_form {
    GH_H1_ORIGIN_FORM = 0, /* "/path?query" */
    GH_H1_ABSOLUTE_FORM,   /* "http://authority/path?query" (scheme http or https) */
    GH_H1_AUTHORITY_FORM,  /* "host:port", CONNECT only */
    GH_H1_ASTERISK_FORM,   /* "*", OPTIONS only */
};

#define GH_H1_F_CONN_CLOSE      0x01 /* Connection: close, or HTTP/1.0 without keep-alive */
#define GH_H1_F_CONN_KEEPALIVE  0x02 /* Connection: keep-alive token seen */
#define GH_H1_F_EXPECT_CONTINUE 0x04 /* Expect: 100-continue */
#define GH_H1_F_UPGRADE         0x08 /* an Upgrade header was present */
/* HTTP/2 (h2_head.c): a CONNECT, plain (RFC 9113 8.5: authority-form, r->authority the target) or extended
 * (RFC 8441 4: origin-form, r->protocol its :protocol). Its DATA is a tunnel's bytes, never a body. */
#define GH_H1_F_CONNECT 0x10
/* HTTP/2: an extended CONNECT for WebSocket, turned into the HTTP/1.1 upgrade request it stands for (GET,
 * Connection/Upgrade, a key of ours): its client takes a 2xx as the tunnel open, so only a 101 may answer it. */
#define GH_H1_F_WS_CONNECT 0x20

typedef struct gh_h1_request {
    gh_h1_str method;
    gh_h1_str target;    /* the request-target as sent */
    int target_form;     /* enum gh_h1_target_form */
    gh_h1_str authority; /* absolute- and authority-form: the authority; else empty */
    gh_h1_str path;      /* origin- and absolute-form: path + query ("/" if absolute-form had none) */
    int minor;           /* HTTP/1.<minor>: 0 or 1 */
    gh_h1_header headers[GH_H1_MAX_HEADERS];
    size_t nheaders;
    int body; /* enum gh_h1_body: NONE, LENGTH or CHUNKED */
    uint64_t content_length;
    gh_h1_str host;     /* the Host header's value; empty when absent (HTTP/1.0 only) */
    unsigned flags;     /* GH_H1_F_* */
    gh_h1_str protocol; /* HTTP/2 extended CONNECT (RFC 8441): the :protocol ("websocket"); else empty */
} gh_h1_request;

typedef struct gh_h1_response {
    int minor;
    int status; /* 100..599 */
    gh_h1_str reason;
    gh_h1_header headers[GH_H1_MAX_HEADERS];
    size_t nheaders;
    int body; /* enum gh_h1_body */
    uint64_t content_length;
    unsigned flags; /* GH_H1_F_CONN_CLOSE / KEEPALIVE */
} gh_h1_response;

/*
 * Finds the end of a message head in buf[0..len). `from` is how many bytes were
 * already searched (pass the previous len; 0 the first time). Returns the length
 * of the head including its final empty line (>0), or 0 if it is not complete yet.
 * A bare "\n\n" also ends a head, so the parser gets to reject it at once instead
 * of the client waiting for a timeout.
 */
size_t gh_h1_head_end(const char *buf, size_t len, size_t from);

/*
 * Parses a request head. Returns the head's length in bytes (>0) when a complete
 * and valid head is in buf[0..len); 0 when more bytes are needed; or a negative
 * HTTP status to answer with before closing: -400 malformed or ambiguous (this
 * includes every Transfer-Encoding but a lone "chunked"), -414
 * request line too long, -431 head too long or too many headers, -417 Expect
 * other than 100-continue, -505 HTTP
 * version other than 1.0 / 1.1. Also returns 0 only while len is within the
 * limits: past GH_H1_MAX_LINE without a line end it is -414, past GH_H1_MAX_HEAD
 * without a head end it is -431.
 *
 * On success the request is validated (see DESIGN.md, Security) and each header's
 * `hop` is set for Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Connection, Proxy-Authorization and every header named by a Connection
 * token (except Host, Content-Length and Transfer-Encoding, which a Connection
 * token cannot remove). Expect is marked hop too: the proxy answers 100-continue
 * itself.
 */
int gh_h1_parse_request(const char *buf, size_t len, gh_h1_request *req);

/*
 * Parses a response head. `head_request` is nonzero when the request was HEAD.
 * Returns the head length, 0 for more bytes needed, or -502 when the response is
 * malformed, ambiguous or too large. Sets `body` from RFC 9112 section 6.3: none
 * for HEAD, 1xx, 204 and 304; chunked; content-length; else close-delimited. Marks
 * hop-by-hop headers like gh_h1_parse_request (Content-Length is not hop).
 */
int gh_h1_parse_response(const char *buf, size_t len, int head_request, gh_h1_response *res);

/* Incremental decoder of the chunked transfer coding (RFC 9112 section 7.1). Zero it to start. */
typedef struct gh_h1_chunked {
    int state;
    uint64_t left;        /* data bytes left in the current chunk */
    unsigned digits;      /* hex digits seen in the current size */
    size_t trailer_bytes; /* bytes of trailer section seen, bounded by GH_H1_MAX_TRAILER */
} gh_h1_chunked;

#define GH_H1_CHUNKED_ERROR (-1)
#define GH_H1_CHUNKED_MORE  (-2)

/*
 * Decodes buf[0..*len) in place. On return buf[0..*len) holds only the data bytes
 * that were decoded from the input. Returns GH_H1_CHUNKED_MORE when all the input
 * was consumed and the body is not finished; GH_H1_CHUNKED_ERROR on invalid framing
 * (bad or overflowing size, missing CRLF, bad extension, trailer too long); or, when
 * the last chunk and trailer section ended, the number (>=0) of bytes that followed
 * the body in the input, which are moved to buf[*len .. *len + ret). Trailers are
 * validated like header lines and dropped: framing never comes from trailers.
 */
ssize_t gh_h1_chunked_decode(gh_h1_chunked *c, char *buf, size_t *len);

/* 1 once the decoder has seen the end of the body. */
int gh_h1_chunked_done(const gh_h1_chunked *c);

/*
 * The path policy: one spelling per path, so that a route cannot be bypassed by another
 * (RFC 3986 6.2.2; the reasons, backend by backend, are in h1.c).
 *
 * gh_h1_path_normal: 1 when the path part of a request-target (before any '?') may be
 * routed: no "." or ".." segment, no ';' (path parameters), no '\\', and no
 * percent-encoded unreserved character ("%61", "%2E"), '/' ("%2F"), '\\' ("%5C"), ';'
 * ("%3B"), NUL ("%00") or '%' that starts another escape ("%2561"). 0: refuse (400),
 * never rewrite. Empty segments ("//") are allowed here and merged by the next function.
 */
int gh_h1_path_normal(gh_h1_str path);

/*
 * Merges every run of '/' in the path part of `path` (before any '?') into one, in place,
 * moving the query along; returns the new length. Writes nothing when there is no run.
 */
size_t gh_h1_path_merge_slashes(char *path, size_t len);

/*
 * Applies the path policy to a parsed origin- or absolute-form request (others: 0): -400
 * when gh_h1_path_normal refuses the path, else 0 after merging runs of '/' in place, in
 * the (writable) buffer the request was parsed from; r->path and r->target get shorter,
 * and router, upstream request line and $request_uri then all see the merged path.
 */
int gh_h1_request_canonical_path(gh_h1_request *r);

/*
 * 1 when p[0..n) is host [":" port] as the Host header and authority-form must be (port
 * required when need_port): a reg-name is ALPHA DIGIT - . _ ~ only (no sub-delims, so no
 * comma lists, no %-encoding), an IP-literal is [hex : .] without zone, a port 1..65535.
 * The one check for both fronts: HTTP/2's :authority and host use it too.
 */
int gh_h1_authority_ok(const char *p, size_t n, int need_port);

/*
 * 1 when p[0..n) is an origin-form request-target ("/path?query") the request line accepts:
 * RFC 3986 pchar, '/' and '?' only, every '%' followed by two hex digits, no '[' or ']'.
 * The HTTP/2 front checks :path with it: one target grammar for both fronts.
 */
int gh_h1_origin_target_ok(const char *p, size_t n);

/* Case-insensitive comparison of a slice with a NUL-terminated lowercase literal. */
int gh_h1_str_ieq(gh_h1_str s, const char *lower);

/* The value of cookie name[0..len) in r's Cookie headers (RFC 6265 5.4: "; "-separated pairs), or an empty slice:
 * what `balance hash cookie:` and `rate_limit key=cookie:` key on. */
gh_h1_str gh_h1_request_cookie(const gh_h1_request *r, const char *name, size_t len);

#endif
