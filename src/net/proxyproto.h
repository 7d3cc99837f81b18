/*
 * proxyproto: the PROXY protocol (HAProxy's doc/proxy-protocol.txt), versions
 * 1 (a text line) and 2 (binary, with TLVs), as pure functions: a parser that
 * tells an incomplete header from a malformed one, and serializers. No I/O:
 * the connection layer reads the bytes (gh_conn_read_proxy in conn.h), the
 * proxy decides whom to trust (cidr.h) and what to send.
 *
 * The header is the first thing on a connection, before TLS. A sender that
 * is trusted (an L4 balancer in front of us) says who the real client is; we
 * say it in turn to servers that want to know.
 */
#ifndef GH_NET_PROXYPROTO_H
#define GH_NET_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Spec 2.1: a v1 line is at most 107 bytes, CRLF included. */
#define GH_PP_V1_MAX 107
/* The fixed part of a v2 header: signature (12), version and command, family and transport, length (2). */
#define GH_PP_V2_FIXED 16
/*
 * The largest header we accept (v2: fixed part plus addresses and TLVs). The
 * spec lets a v2 header announce 64 KiB; a peer must not make us hold that
 * before it has even started TLS. 2 KiB holds every TLV a sender such as
 * HAProxy adds (ALPN, authority up to 255, unique id up to 128, the SSL TLV
 * with its version, cipher, algorithms and client CN).
 */
#define GH_PP_MAX 2048

/* v2 TLV types (spec 2.2.1 - 2.2.7). */
enum {
    GH_PP2_TYPE_ALPN = 0x01,
    GH_PP2_TYPE_AUTHORITY = 0x02,
    GH_PP2_TYPE_CRC32C = 0x03,
    GH_PP2_TYPE_NOOP = 0x04,
    GH_PP2_TYPE_UNIQUE_ID = 0x05,
    GH_PP2_TYPE_SSL = 0x20,
    GH_PP2_SUBTYPE_SSL_VERSION = 0x21,
    GH_PP2_SUBTYPE_SSL_CN = 0x22,
    GH_PP2_SUBTYPE_SSL_CIPHER = 0x23,
    GH_PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
    GH_PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
    GH_PP2_TYPE_NETNS = 0x30,
};

/* The SSL TLV's client field (spec 2.2.5). */
#define GH_PP2_CLIENT_SSL       0x01
#define GH_PP2_CLIENT_CERT_CONN 0x02
#define GH_PP2_CLIENT_CERT_SESS 0x04

/* Values seen in a parsed header's TLVs point into the parsed buffer (valid while it is). */
typedef struct gh_pp_slice {
    const uint8_t *p; /* NULL: absent */
    uint16_t len;
} gh_pp_slice;

/* A parsed header. */
typedef struct gh_pp_header {
    uint8_t version; /* 1 or 2 */
    /*
     * 1: the header names no client: v1 UNKNOWN, v2 LOCAL (a health check of
     * the sender itself), or v2 PROXY with an unspecified or UNIX family. The
     * spec (2.1, 2.2) says to keep the connection's own addresses then.
     */
    uint8_t local;
    struct sockaddr_storage src, dst; /* AF_INET or AF_INET6 with port, when !local */
    /* v2 only: the TLVs we understand, each checked to lie within the header. */
    gh_pp_slice alpn, authority, unique_id;
    uint8_t ssl;        /* an SSL TLV was there */
    uint8_t ssl_client; /* its client bits (GH_PP2_CLIENT_*) */
    uint32_t ssl_verify;
    gh_pp_slice ssl_version, ssl_cipher, ssl_cn;
    uint8_t crc_checked; /* a CRC32c TLV was there and matched */
} gh_pp_header;

/* gh_pp_parse's verdicts besides a length (common.h's GH_AGAIN and GH_ERROR). */
#define GH_PP_INCOMPLETE (-2) /* = GH_AGAIN: what came so far is a valid beginning */
#define GH_PP_MALFORMED  (-1) /* = GH_ERROR: not a PROXY header, or a broken one */

/*
 * Parses the header at the start of buf[0..len). Returns its length (> 0:
 * what follows it is the client's own data), GH_PP_INCOMPLETE when every
 * byte so far fits a header that has not ended (wait for more), or
 * GH_PP_MALFORMED: not a PROXY header (a client speaking directly), a bad
 * field, a v1 line beyond 107 bytes, a v2 header beyond GH_PP_MAX, a TLV
 * that overruns, a CRC32c that does not match. *why gets a reason for logs
 * (may be NULL).
 */
ssize_t gh_pp_parse(const void *buf, size_t len, gh_pp_header *out, const char **why);

/* What a sent header says. */
typedef struct gh_pp_info {
    /* The client and the address it connected to; NULL, or different families after IPv4-mapped
     * addresses were made IPv4: a header without addresses (v1 UNKNOWN, v2 PROXY with AF_UNSPEC). */
    const struct sockaddr *src, *dst;
    int local; /* v2 LOCAL: the connection is our own (a health check), not a client's */
    /* v2 TLVs, each sent when its length is > 0 (at most 255 bytes each: longer is cut off there). */
    const char *alpn;
    size_t alpn_len;
    const char *authority; /* the SNI the client sent */
    size_t authority_len;
    int tls;                 /* the client came over TLS: an SSL TLV */
    const char *tls_version; /* "TLSv1.3": its SSL_VERSION sub-TLV */
    size_t tls_version_len;
    int crc; /* append a CRC32c TLV */
} gh_pp_info;

/* Writes a v1 line into dst; returns its length, or -1 when cap (GH_PP_V1_MAX is enough) is too small. */
ssize_t gh_pp_write_v1(char *dst, size_t cap, const gh_pp_info *i);

/* Writes a v2 header into dst; returns its length, or -1 when cap is too small (GH_PP_MAX is enough). */
ssize_t gh_pp_write_v2(uint8_t *dst, size_t cap, const gh_pp_info *i);

/* CRC32c (Castagnoli), as the v2 CRC32C TLV carries it: crc of buf[0..len) continued from crc (start at 0). */
uint32_t gh_pp_crc32c(uint32_t crc, const uint8_t *buf, size_t len);

#endif
