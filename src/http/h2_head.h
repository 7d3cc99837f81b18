/*
 * h2_head: an HTTP/2 request head (RFC 9113 8.2, 8.3) collected field by
 * field as HPACK decodes it, checked, and turned into the protocol-neutral
 * request the exchange works on (gh_h1_request). No I/O, no nghttp2: pure
 * logic, unit-tested and fuzzable alone.
 *
 * What it refuses goes further than RFC 9113 alone: the request becomes an
 * HTTP/1.1 head upstream, so every name must be a token and every value
 * field-content (no CR, LF, NUL or other control byte, no leading or trailing
 * whitespace), and :path, :authority and :method must be what an HTTP/1.1
 * request line and Host can carry. Nothing a client sends over HTTP/2 can
 * become a second request, a second header or a framing field upstream.
 *
 * Ownership: embedded in its stream; the fields live in `buf` (malloc'd,
 * bounded by `max`) and their table in `fields`, both freed by gh_h2_head_dispose. The request's slices point
 * into `buf` and stay valid until the next add or dispose.
 */
#ifndef GH_HTTP_H2_HEAD_H
#define GH_HTTP_H2_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "http/h1.h"

/* Regular fields kept before the cookie crumbs are joined (more: 431). */
#define GH_H2_MAX_FIELDS (GH_H1_MAX_HEADERS + 28)

/* What gh_h2_head_add and gh_h2_head_request answer besides 0. */
#define GH_H2_MALFORMED (-400) /* RFC 9113 8.1.1: a stream error of type PROTOCOL_ERROR */
#define GH_H2_TOO_LARGE (-431) /* over the header list limit, or too many fields: answered 431 */

enum gh_h2_pseudo { GH_H2_METHOD, GH_H2_SCHEME, GH_H2_AUTHORITY, GH_H2_PATH, GH_H2_PROTOCOL, GH_H2_NPSEUDO };

typedef struct gh_h2_field {
    uint32_t name, nlen, value, vlen; /* offsets into buf */
} gh_h2_field;

typedef struct gh_h2_head {
    char *buf;
    size_t len, cap;
    size_t max;       /* the header list size limit (RFC 9113 6.5.2: name + value + 32 per field) */
    size_t list_size; /* counted for every field decoded, kept or not */
    gh_h2_field pseudo[GH_H2_NPSEUDO];
    uint8_t has[GH_H2_NPSEUDO];
    uint8_t regular;     /* a regular field was seen: a pseudo-header after it is malformed */
    uint8_t extended;    /* SETTINGS_ENABLE_CONNECT_PROTOCOL was sent: :protocol is allowed (RFC 8441) */
    uint8_t absolute;    /* a forward proxy's stream: :scheme + :authority name the target (absolute-form) */
    int error;           /* 0, or the first GH_H2_MALFORMED / GH_H2_TOO_LARGE; later fields are only counted */
    gh_h2_field *fields; /* malloc'd, grown as needed up to GH_H2_MAX_FIELDS: a stream stays small */
    size_t nfields, fcap;
} gh_h2_head;

/* Prepares an empty head (no allocation yet) whose list may hold max bytes. */
void gh_h2_head_init(gh_h2_head *h, size_t max);
void gh_h2_head_dispose(gh_h2_head *h);

/*
 * One decoded field: checked (token name in lower case, field-content value,
 * pseudo-header rules, connection-specific fields, te) and stored. Returns 0,
 * or h->error once set (later fields are counted and dropped).
 */
int gh_h2_head_add(gh_h2_head *h, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);

/*
 * The whole head is here: checks what needs all of it (the pseudo-headers a
 * request must have, :authority against Host, content-length against
 * END_STREAM), joins the cookie crumbs with "; " (RFC 9113 8.2.3) and fills r
 * (slices into h->buf; path writable for gh_h1_request_canonical_path):
 * origin-form (or asterisk-form for OPTIONS *; authority-form for CONNECT),
 * or with h->absolute (a forward proxy's listener) and an :authority,
 * absolute-form "scheme://authority/path" (RFC 9113 8.3.1: the HTTP/2 form of
 * a request to a proxy, as RFC 9112 3.2.2's is for HTTP/1.1; r->authority and
 * r->path its parts), :authority as the host, the body LENGTH from content-length, else NONE when
 * END_STREAM came with the head, else CHUNKED (length unknown: re-framed
 * upstream). 0, GH_H2_MALFORMED, GH_H2_TOO_LARGE, or -417 (an Expect other
 * than 100-continue).
 *
 * CONNECT, flagged GH_H1_F_CONNECT, body NONE (its DATA is a tunnel's; a
 * content-length is malformed): plain (RFC 9113 8.5: :authority host:port
 * only) is authority-form with r->authority the target; extended (RFC 8441 4,
 * only where h->extended: :protocol, :scheme, :path and :authority) is
 * origin-form with r->protocol the :protocol token. Which protocols are served
 * is the caller's to judge; :protocol on any other method stays malformed.
 */
int gh_h2_head_request(gh_h2_head *h, int end_stream, gh_h1_request *r);

/* 1 when name[0..n) is an RFC 9110 token in lower case (an HTTP/2 field name). */
int gh_h2_name_ok(const uint8_t *name, size_t n);
/* 1 when v[0..n) is field-content HTTP/1.1 can carry: no control byte but HTAB, no leading/trailing SP/HTAB. */
int gh_h2_value_ok(const uint8_t *v, size_t n);

#endif
