/*
 * config: one configuration *generation*, as read from a file (docs/config.md)
 * or built from the quick-start command line.
 *
 * Ownership: gh_config_load / gh_config_parse / gh_config_from_quickstart
 * allocate a gh_config and everything it points to from one arena owned by
 * the gh_config itself; gh_config_free releases all of it at once. Nothing in
 * it points into the caller's memory, so a generation can outlive the buffers
 * and the argv it was built from, and (later) be reference-counted and
 * swapped on SIGHUP. After loading (and gh_config_resolve) it is read-only.
 *
 * Strings are NUL-terminated inside the arena and carry their length
 * (gh_cstr), so the hot path compares without strlen(). Times are in
 * milliseconds, sizes in bytes.
 */
#ifndef GH_CONF_CONFIG_H
#define GH_CONF_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "balance/balance.h" /* GH_LB_MAX_SERVERS per pool (backups included), GH_LB_MAX_WEIGHT */
#include "conf/quickstart.h" /* gh_conf: the quick-start flags */
#include "conf/source.h"     /* where a load reads its inputs */
#include "conf/timeouts.h"   /* gh_cfg_timeouts */
#include "net/addr.h"
#include "net/cidr.h"

/* Bounds that keep a typo from allocating without limit. */
#define GH_CFG_MAX_WORKERS   1024       /* same bound as --workers */
#define GH_CFG_NO_LIMIT      UINT64_MAX /* max_body off */
#define GH_CFG_MAX_FILE      (1u << 20) /* one config file, bytes */
#define GH_CFG_INCLUDE_DEPTH 8          /* nested include levels */
#define GH_CFG_MAX_CONNS     (1u << 24) /* max_connections N, all workers together */
#define GH_CFG_MAX_PEM       (1u << 20) /* one certificate chain or key file, bytes */

/* Addresses a server given by name may have at once: max_addrs=N, default and bound. */
#define GH_CFG_NAME_SLOTS     8
#define GH_CFG_MAX_NAME_ADDRS 16

/* A NUL-terminated string in the config arena with its length. Empty: p = "", len = 0. */
typedef struct gh_cstr {
    const char *p;
    size_t len;
} gh_cstr;

/* Where a directive was written, for errors found later and for logs ("route /api/ (app.conf:12)"). */
typedef struct gh_cfg_where {
    const char *file;
    int line;
} gh_cfg_where;

typedef struct gh_cfg_listener {
    gh_addr addr; /* numeric, bound by the master */
    int tls;      /* 1: TLS (certificates chosen by SNI among the sites it serves); 0: plain HTTP */
    int stream;   /* 1: made by `stream { listen }`: its connections go to stream services, not sites */
    /*
     * `proxy_protocol from=NETS`: a connection from one of these networks must
     * start with a PROXY protocol header (v1 or v2, before TLS), whose client
     * address then stands for the connection's; one from elsewhere is an
     * ordinary client whose header, if it sends one, is never believed.
     */
    int proxy_protocol;
    gh_cidr *pp_from;
    size_t npp_from;
    gh_cfg_where where;
    /* `protocols=`: GH_CFG_PROTO_* in our order of preference (ALPN); nprotos 0: the default,
     * h2 then http/1.1 on TLS, http/1.1 alone on plain (gh_cfg_listener_protocols). */
    uint8_t protos[2];
    uint8_t nprotos;
    uint32_t metric; /* its counters in the metrics region (metrics/metrics.h: gh_metrics_claim) */
} gh_cfg_listener;

#define GH_CFG_PROTO_HTTP1 1
#define GH_CFG_PROTO_H2    2

/* The `http2 { }` defaults (docs/config.md says why each). */
#define GH_CFG_H2_STREAMS     100
#define GH_CFG_H2_HEADER_LIST (64 * 1024)
#define GH_CFG_H2_TABLE       4096
#define GH_CFG_H2_FRAME       16384
#define GH_CFG_H2_WINDOW      (64 * 1024)
#define GH_CFG_H2_MEMORY      (4 * 1024 * 1024)

/* The `http2 { }` block: the limits of every HTTP/2 connection (src/proxy/h2_server.c). */
typedef struct gh_cfg_http2 {
    uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS: 100 */
    uint64_t max_header_list_size;   /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced per stream: 64 KiB */
    uint64_t header_table_size;      /* SETTINGS_HEADER_TABLE_SIZE (HPACK decoder): 4 KiB */
    uint64_t max_frame_size;         /* SETTINGS_MAX_FRAME_SIZE: 16 KiB (16 KiB..16 MiB-1) */
    uint64_t initial_window_size;    /* SETTINGS_INITIAL_WINDOW_SIZE, request bodies per stream: 64 KiB */
    uint64_t max_connection_memory;  /* buffers one connection may hold; over it, new streams are refused: 4 MiB */
} gh_cfg_http2;

/* The protocols a listener speaks, in order (the default filled in); returns how many. */
static inline size_t gh_cfg_listener_protocols(const gh_cfg_listener *l, uint8_t out[2])
{
    if (l->nprotos > 0) {
        out[0] = l->protos[0];
        out[1] = l->protos[1];
        return l->nprotos;
    }
    out[0] = l->tls ? GH_CFG_PROTO_H2 : GH_CFG_PROTO_HTTP1;
    out[1] = GH_CFG_PROTO_HTTP1;
    return l->tls ? 2 : 1;
}

/* One certificate chain and its key; a site may hold several (ECDSA and RSA side by side). */
typedef struct gh_cfg_cert {
    gh_cstr cert_file; /* PEM, leaf first; relative paths already made relative to the config file's dir */
    gh_cstr key_file;
    gh_cfg_where where;
} gh_cfg_cert;

typedef struct gh_cfg_server {
    gh_cstr text; /* "host:port" as written, for logs */
    gh_cstr host; /* a numeric address or a name (without brackets) */
    uint16_t port;
    uint32_t weight; /* 1..GH_LB_MAX_WEIGHT, default 1 */
    int backup;      /* 1: used only when no primary server is healthy */
    /*
     * The addresses: filled at parse time for numeric hosts, by
     * gh_config_resolve for names (every address getaddrinfo returned,
     * without duplicates, at most nslots).
     */
    gh_addr *addrs;
    size_t naddrs;
    /*
     * Every address is a server of its own: its own health slot, health
     * checks and balancer entry, with this weight. A numeric host has 1; a
     * name has max_addrs (GH_CFG_NAME_SLOTS), fixed by the file alone (not by
     * what the name resolves to), so that every process of a generation gives
     * the same slots to the same servers. Slots a name does not fill are "no
     * address": never picked, never probed, until a re-resolution fills them.
     */
    uint32_t nslots;
    gh_cfg_where where;
} gh_cfg_server;

/* The balancer's own values: `balance NAME` is parsed by gh_lb_algorithm_parse, the one table of names. */
enum gh_cfg_balance {
    GH_BALANCE_ROUND_ROBIN = GH_LB_ROUND_ROBIN, /* smooth weighted; the default */
    GH_BALANCE_LEAST_CONN = GH_LB_LEAST_CONN,
    GH_BALANCE_P2C = GH_LB_P2C,
    GH_BALANCE_RANDOM = GH_LB_RANDOM,
    GH_BALANCE_HASH = GH_LB_HASH,
};

enum gh_cfg_hash_key { GH_HASH_IP = 0, GH_HASH_HEADER, GH_HASH_COOKIE };

enum gh_cfg_health_type { GH_HEALTH_NONE = 0, GH_HEALTH_HTTP, GH_HEALTH_TCP, GH_HEALTH_POSTGRES, GH_HEALTH_REDIS };

typedef struct gh_cfg_health {
    int type;                        /* enum gh_cfg_health_type */
    gh_cstr method;                  /* http: "GET" */
    gh_cstr path;                    /* http: "/" */
    gh_cstr host;                    /* http: Host header sent; empty: the server's host:port */
    uint16_t status_min, status_max; /* http: 200..399 */
    uint32_t interval;               /* 5 s */
    uint32_t timeout;                /* 2 s */
    uint32_t rise;                   /* consecutive successes that mark a server up: 2 */
    uint32_t fall;                   /* consecutive failures that mark it down: 3 */
    uint32_t port;                   /* port=: probe this port instead of the server's (Patroni's REST API); 0: same */
} gh_cfg_health;

/*
 * Access log formats (docs/config.md, "Access log"). A format is compiled
 * once, at load, into literal text and variables; a line costs one pass.
 */
enum gh_log_var {
    GH_LOGV_TEXT = 0, /* a literal piece */
    GH_LOGV_REMOTE_ADDR,
    GH_LOGV_TIME_LOCAL,
    GH_LOGV_TIME_ISO8601,
    GH_LOGV_MSEC,
    GH_LOGV_REQUEST,
    GH_LOGV_METHOD,
    GH_LOGV_URI,
    GH_LOGV_PROTOCOL,
    GH_LOGV_SCHEME,
    GH_LOGV_HOST,
    GH_LOGV_STATUS,
    GH_LOGV_BODY_BYTES_SENT,
    GH_LOGV_REQUEST_TIME,
    GH_LOGV_UPSTREAM_ADDR,
    GH_LOGV_UPSTREAM_RESPONSE_TIME,
    GH_LOGV_HTTP_REFERER,
    GH_LOGV_HTTP_USER_AGENT,
    GH_LOGV_SITE,
    GH_LOGV_ROUTE,
    GH_LOGV_REMOTE_USER,  /* a forward proxy's authenticated user */
    GH_LOGV_FORWARD_RULE, /* a forward proxy's allowing rule, FILE:LINE */
    GH_LOGV_COUNT
};

typedef struct gh_cfg_log_seg {
    int var;      /* enum gh_log_var */
    gh_cstr text; /* GH_LOGV_TEXT only */
} gh_cfg_log_seg;

typedef struct gh_cfg_log_format {
    gh_cstr name;
    int json; /* values escaped for a JSON string; a missing value is "" instead of "-" */
    gh_cfg_log_seg *segs;
    size_t nsegs;
    size_t text_len; /* the literal text of all segs: what a line keeps room for (accesslog.c) */
    gh_cfg_where where;
} gh_cfg_log_format;

/* One `access_log PATH [format=NAME]`: where lines go (a descriptor per distinct path per worker) and how. */
typedef struct gh_cfg_access_log {
    const char *path; /* "-": standard output */
    const gh_cfg_log_format *format;
    gh_cstr format_name; /* as written; resolved to `format` by validation */
    size_t index;        /* in gh_config.logs */
    gh_cfg_where where;
} gh_cfg_access_log;

/* `allow NET...` / `deny NET...|all`: in file order, the first rule that matches decides. */
typedef struct gh_cfg_access_rule {
    int allow;
    gh_cidr net;
} gh_cfg_access_rule;

enum gh_cfg_rate_key { GH_RATE_KEY_IP = 0, GH_RATE_KEY_HEADER, GH_RATE_KEY_COOKIE };

/*
 * `rate_limit RATE [burst=N] [key=ip|header:NAME|cookie:NAME]`: a token bucket
 * per key, shared by every worker (proxy/ratelimit.h), kept as GCRA: one
 * "theoretical arrival time" per key.
 */
typedef struct gh_cfg_rate_limit {
    uint64_t interval_us; /* 1 / rate */
    uint32_t burst;       /* requests allowed at once above the rate; default: the rate per second, at least 1 */
    int key;              /* enum gh_cfg_rate_key */
    gh_cstr key_name;     /* header (lowercase) or cookie name */
    uint32_t id;          /* keys of different limits never share a bucket */
    gh_cfg_where where;
} gh_cfg_rate_limit;

/*
 * What a site and each of its routes may set: access log, access rules, rate
 * limit, headers hidden from responses. Validation resolves a route's from
 * its own, else its site's, else the main context's.
 */
typedef struct gh_cfg_edge {
    int log_ref; /* 0: inherited; -1: off; k + 1: gh_config.logs[k] */
    gh_cfg_access_rule *rules;
    size_t nrules;
    gh_cfg_rate_limit *rate; /* NULL: inherited (or none) */
    int rate_off;            /* `rate_limit off`: none, whatever the site says */
    gh_cstr *hide;           /* response headers removed (`hide_header`) */
    size_t nhide;
    int hide_reset;     /* `hide_header none`: the list inherited so far is dropped */
    uint64_t hide_lens; /* resolved: gh_cfg_hide_bit of every hidden name (a quick no for most headers) */
} gh_cfg_edge;

/* A name's bit in gh_cfg_edge.hide_lens: its length and first letter (Content-Type and X-Powered-By differ). */
static inline uint64_t gh_cfg_hide_bit(const char *name, size_t len)
{
    unsigned char c = len > 0 ? (unsigned char)name[0] : 0;

    c = c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
    return UINT64_C(1) << ((len + 7u * c) % 64);
}

/* Response headers that name backend software: hidden unless `hide_header none`. */
#define GH_CFG_HIDE_DEFAULT "Server", "X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version"

/* 1 when status is in a set of bits (status - 100). */
static inline int gh_cfg_status_in(const uint64_t *set, int status)
{
    unsigned i = (unsigned)(status - 100);

    return i <= 599 - 100 && (set[i / 64] >> (i % 64) & 1);
}

/* Response statuses a status set can hold (RFC 9110 15: three digits, 1xx to 5xx). */
#define GH_CFG_STATUS_MIN 100
#define GH_CFG_STATUS_MAX 599

/*
 * Passive ejection: `fails` failures in a row, within `window`, eject for
 * `eject`. A failure is a connect error, a timeout waiting for the server's
 * answer, or a response whose status is in `statuses` (default 502-504 only:
 * a 500 is what a client gets by asking for a broken URL, and counting it
 * would let any client eject a healthy server).
 */
typedef struct gh_cfg_passive {
    uint32_t fails; /* 0: passive ejection off (the default) */
    uint32_t window;
    uint32_t eject;
    uint64_t statuses[(GH_CFG_STATUS_MAX - GH_CFG_STATUS_MIN) / 64 + 1]; /* bit (status - 100) */
} gh_cfg_passive;

typedef struct gh_cfg_pool {
    gh_cstr name;
    gh_cfg_server *servers;
    size_t nservers;
    int balance;       /* enum gh_cfg_balance */
    int hash_key;      /* enum gh_cfg_hash_key, with balance hash */
    gh_cstr hash_name; /* header or cookie name for hash header/cookie */
    gh_cfg_health health;
    gh_cfg_passive passive;
    /*
     * `proxy_protocol v1|v2 [check]`: every new connection to a server starts
     * with a PROXY header naming the client (0: none, the default). Such a
     * connection is never reused for another client. `check`: the active
     * health checks start with one too (v2 LOCAL, v1 UNKNOWN).
     */
    int proxy_protocol;
    int proxy_protocol_check;
    size_t index;    /* position in gh_config.pools: lets per-worker state live in a plain array */
    uint32_t metric; /* its counters in the metrics region (metrics/metrics.h: gh_metrics_claim) */
    gh_cfg_where where;
} gh_cfg_pool;

enum gh_cfg_action { GH_ACTION_PROXY = 1, GH_ACTION_REDIRECT, GH_ACTION_RESPOND };
enum gh_cfg_rewrite { GH_REWRITE_NONE = 0, GH_REWRITE_STRIP, GH_REWRITE_REPLACE };
enum gh_cfg_header_op_kind { GH_HEADER_SET = 1, GH_HEADER_REMOVE };

/* `request_header set NAME VALUE` / `response_header remove NAME`. */
typedef struct gh_cfg_header_op {
    int op;        /* enum gh_cfg_header_op_kind */
    gh_cstr name;  /* as written; compare case-insensitively */
    gh_cstr value; /* set only; never holds CR, LF or NUL */
} gh_cfg_header_op;

/* A route condition on a request header: present with exactly this value. */
typedef struct gh_cfg_header_match {
    gh_cstr name; /* lowercase */
    gh_cstr value;
} gh_cfg_header_match;

/* A piece of a redirect target: literal text or a variable. */
enum gh_cfg_redirect_part { GH_REDIR_TEXT = 0, GH_REDIR_SCHEME, GH_REDIR_HOST, GH_REDIR_REQUEST_URI };
typedef struct gh_cfg_redirect_seg {
    int kind;     /* enum gh_cfg_redirect_part */
    gh_cstr text; /* GH_REDIR_TEXT only */
} gh_cfg_redirect_seg;

/*
 * How a request body may arrive (A5: a slow body must not pin a backend
 * connection). Up to `buffer` bytes are read before a server is chosen, so a
 * small body is whole before a backend connection is taken; and once `grace`
 * has passed the body must average `min_rate` bytes per second of the time
 * spent waiting for the client (not for the server), else 408 or a cut.
 */
typedef struct gh_cfg_body_limits {
    uint64_t buffer;   /* bytes; 0: off (connect at once, as before) */
    uint64_t min_rate; /* bytes per second; 0: off */
    uint32_t grace;    /* ms before min_rate applies */
} gh_cfg_body_limits;

#define GH_CFG_REQUEST_BUFFER     (64 * 1024)
#define GH_CFG_REQUEST_BUFFER_MAX (64 * 1024) /* the body waits in one big buffer with the head */
/* As Apache's mod_reqtimeout: 500 bytes/s once 20 s are over. */
#define GH_CFG_BODY_MIN_RATE   500
#define GH_CFG_BODY_RATE_GRACE 20000

typedef struct gh_cfg_route {
    /* Match: path prefix (segment-aware, see router.h), then the optional conditions. */
    gh_cstr prefix;
    gh_cstr *methods; /* none: any method; compared case-sensitively (RFC 9110 9.1) */
    size_t nmethods;
    gh_cfg_header_match *headers; /* every one must hold */
    size_t nheaders;

    int action; /* enum gh_cfg_action */
    /* proxy */
    const gh_cfg_pool *pool;
    int rewrite;          /* enum gh_cfg_rewrite */
    gh_cstr replace_with; /* GH_REWRITE_REPLACE */
    /* redirect and respond */
    int status;
    gh_cfg_redirect_seg *target; /* redirect */
    size_t ntarget;
    gh_cstr body; /* respond; may be empty */

    /* Per route, already defaulted from the global settings. */
    uint32_t connect_timeout, response_timeout;
    uint64_t max_body; /* bytes; GH_CFG_NO_LIMIT: none; beyond it: 413 */
    gh_cfg_body_limits body_limits;
    gh_cfg_header_op *req_ops, *resp_ops;
    size_t nreq_ops, nresp_ops;
    int websocket;         /* 1 (`websocket on`, the default): Upgrade: websocket requests may become tunnels */
    uint64_t intercept[8]; /* `intercept_errors`: backend statuses answered with gatehouse's own page */
    int intercept_any;     /* some bit is set */

    /* Access log, rules, rate limit, hidden headers: the route's own at parse time, the resolved ones after. */
    gh_cfg_edge edge;
    const gh_cfg_access_log *access_log; /* resolved; NULL: not logged */
    const struct gh_cfg_site *site;      /* its site (security headers, HSTS, the log's $site) */

    unsigned set;    /* GH_ROUTE_SET_*: which of the values above the route gave itself (the rest are global) */
    uint32_t metric; /* its counters in the metrics region (metrics/metrics.h: gh_metrics_claim) */
    gh_cfg_where where;
} gh_cfg_route;

#define GH_ROUTE_SET_CONNECT        0x1
#define GH_ROUTE_SET_RESPONSE       0x2
#define GH_ROUTE_SET_MAX_BODY       0x4
#define GH_ROUTE_SET_REQUEST_BUFFER 0x8
#define GH_ROUTE_SET_BODY_MIN_RATE  0x10

/*
 * Forward proxy (docs/config.md, "Forward proxy"): a site with a `forward { }`
 * block serves clients that name their destinations (CONNECT host:port,
 * absolute-form GET http://host/...). Its listeners serve it alone.
 */
typedef struct gh_cfg_port_range {
    uint16_t lo, hi;
} gh_cfg_port_range;

/*
 * `rule allow|deny [host=P,...] [port=N|N-M,...] [from=NET,...] [user=U,...] [to=NET,...] [via=POOL]`:
 * every condition given must hold (any value of a list); first match wins,
 * what no rule allows is denied. Without port=, a rule covers CONNECT to 443
 * only and plain http to any port.
 */
typedef struct gh_cfg_fwd_rule {
    int allow;
    gh_cstr *hosts; /* lowercase: "example.com" exactly, "*.example.com" its subdomains, "*" any */
    size_t nhosts;
    gh_cfg_port_range *ports;
    size_t nports;
    gh_cidr *from; /* the client's address */
    size_t nfrom;
    gh_cstr *users; /* authenticated users; "*": any authenticated one */
    size_t nusers;
    gh_cidr *to; /* the destination's address after DNS: the only way to allow an internal range */
    size_t nto;
    const struct gh_cfg_pool *via; /* egress through a parent proxy of this pool; NULL: direct */
    gh_cstr via_name;              /* as written; resolved by validation */
    gh_cstr via_auth;              /* "Proxy-Authorization: Basic ...\r\n" for the parents (parent_auth); or empty */
    gh_cfg_where where;
} gh_cfg_fwd_rule;

/* A user of the `auth` file and its crypt(3) hash (yescrypt, bcrypt, sha512crypt...). */
typedef struct gh_cfg_fwd_user {
    gh_cstr name;
    gh_cstr hash;
} gh_cfg_fwd_user;

/* `parent_auth POOL USER:PASSWORD`: the credentials gatehouse gives the parent proxies of a pool. */
typedef struct gh_cfg_parent_auth {
    gh_cstr pool;
    gh_cstr header; /* "Proxy-Authorization: Basic BASE64\r\n" */
    gh_cfg_where where;
} gh_cfg_parent_auth;

typedef struct gh_cfg_forward {
    gh_cfg_fwd_rule *rules;
    size_t nrules;
    gh_cfg_parent_auth *parents;
    size_t nparents;
    gh_cfg_fwd_user *users; /* sorted by name; none: no authentication asked */
    size_t nusers;
    gh_cstr auth_file;             /* as resolved (for logs) */
    gh_cstr realm;                 /* Proxy-Authenticate: Basic realm="..." */
    uint32_t connect_timeout;      /* one attempt to one address: 10 s */
    uint32_t dns_timeout;          /* a whole resolution: 5 s */
    uint32_t tunnel_idle;          /* no byte either way: 5 min */
    uint32_t max_tunnels_per_ip;   /* per worker; 0: no limit */
    uint32_t max_tunnels_per_user; /* per worker; 0: no limit */
    uint32_t auth_failures;        /* wrong credentials per client address per minute before 429: 10 */
    gh_cfg_route route;            /* what an absolute-form request runs with (timeouts, body limits) */
    gh_cfg_where where;
} gh_cfg_forward;

typedef struct gh_cfg_site {
    gh_cstr *names; /* lowercase; exact "example.com" or wildcard "*.example.com" */
    size_t nnames;
    int is_default;    /* `site default`: requests whose Host no other site names */
    size_t *listeners; /* indexes into gh_config.listeners; every listener when the site names none */
    size_t nlisteners;
    gh_cfg_cert *certs;
    size_t ncerts;
    /* In match order: longest prefix first; at equal prefix, routes with conditions first, then file order. */
    gh_cfg_route *routes;
    size_t nroutes;
    gh_cfg_edge edge;
    gh_cstr hsts;               /* the Strict-Transport-Security value sent over TLS; empty: none */
    gh_cfg_header_op *resp_ops; /* the site's `response_header`: every route's, unless the route names the header */
    size_t nresp_ops;
    gh_cfg_forward *forward; /* a forward proxy: its listeners serve this site alone; NULL: a reverse proxy site */
    gh_cfg_where where;
} gh_cfg_site;

enum gh_cfg_stream_protocol { GH_STREAM_RAW = 0, GH_STREAM_POSTGRES };

/* Stream services one listener can hold (routed by SNI). */
#define GH_CFG_MAX_STREAMS_PER_LISTENER 64

/*
 * `stream NAME { }`: a TCP (L4) service. Its listener (cfg->listeners, stream 1)
 * may be shared with other stream services of the same protocol, chosen by the
 * SNI of the ClientHello. TLS is terminated with `certs`, passed through
 * untouched (`passthrough`), or absent (no cert: plain TCP, alone on its listener).
 */
typedef struct gh_cfg_stream {
    gh_cstr name;
    size_t listener; /* index into gh_config.listeners */
    gh_cfg_cert *certs;
    size_t ncerts;
    gh_cstr *names; /* `sni`: lowercase, exact or "*.domain"; none: the listener's default service */
    size_t nnames;
    int protocol;        /* enum gh_cfg_stream_protocol */
    int passthrough;     /* 1: relay the TLS bytes untouched (the backend terminates) */
    int allow_plaintext; /* postgres: a client that does not ask for TLS is relayed instead of refused */
    gh_cstr pool_name;
    const gh_cfg_pool *pool;
    uint32_t max_connections; /* this service's streams, all workers together; 0: no limit of its own */
    uint32_t connect_timeout; /* ms; defaulted from timeouts { connect } */
    uint32_t idle_timeout;    /* ms; defaulted from timeouts { tunnel } */
    unsigned set;             /* GH_STREAM_SET_*: which timeouts the block gave itself */
    /* allow/deny (rules) and rate_limit (rate: new connections per client address, key=ip only); the other
     * fields of the edge are HTTP's and stay empty. Nothing is inherited: a stream is in no site. */
    gh_cfg_edge edge;
    int has_listen;
    gh_cfg_where where;
} gh_cfg_stream;

#define GH_STREAM_SET_CONNECT 0x1
#define GH_STREAM_SET_IDLE    0x2

/*
 * `admin { listen ADDR; allow NETWORK... }`: the listener of /metrics and
 * /status (src/admin/admin.h). Its address is bound by the master at start;
 * a reload may change `allow`, not `listen` (that takes a restart).
 */
typedef struct gh_cfg_admin {
    int enabled; /* an admin block was given */
    gh_addr addr;
    gh_cidr *allow; /* clients allowed; none given: loopback only (127.0.0.0/8, ::1) */
    size_t nallow;
    gh_cfg_where where;
} gh_cfg_admin;

typedef struct gh_config gh_config;
struct gh_config {
    const char *path;       /* main file; "(command line)" for the quick start */
    int workers;            /* 1..GH_CFG_MAX_WORKERS; default one per core */
    int log_level;          /* GH_LOG_* */
    const char *access_log; /* NULL: off; "-": stdout; else a path */
    gh_cfg_timeouts timeouts;
    uint64_t max_body;              /* default for routes; GH_CFG_NO_LIMIT unless set */
    gh_cfg_body_limits body_limits; /* default for routes */
    /* Client connections, all workers together (each takes its share); 0: derived from the
     * open-file limit (src/proxy/limit.h). */
    uint32_t max_connections;
    uint32_t resolve_interval; /* ms between two re-resolutions of server names by the prober: 30 s */
    /* DNS servers the resolver asks ("127.0.0.1:53,[::1]:5353", c-ares' form); NULL: /etc/resolv.conf's */
    const char *resolver;
    uint32_t max_conns_per_ip; /* client connections one address may hold in one worker; 0: no limit */

    gh_cfg_log_format *formats; /* the built-in combined and json, then every log_format */
    size_t nformats;
    gh_cfg_access_log *logs; /* every access_log directive (and the quick start's) */
    size_t nlogs;
    gh_cfg_edge edge;      /* the main context's access_log and hide_header */
    uint32_t nrate_limits; /* ids given to rate limits so far */
    gh_cfg_http2 http2;
    gh_cfg_admin admin;
    /* Process security (core/sandbox.h): the account the workers and the prober run as when the
     * master starts as root (NULL: `nobody`; the group NULL: the user's primary group), and the
     * system-call allow-list (1: on, the default). Read at start only: a reload keeps the first. */
    const char *user;
    const char *group;
    gh_cfg_where user_where, group_where; /* line 0: not in the file */
    int seccomp;

    gh_cfg_listener *listeners;
    size_t nlisteners;
    gh_cfg_pool *pools;
    size_t npools;
    gh_cfg_site *sites;
    size_t nsites;
    gh_cfg_stream *streams;
    size_t nstreams;

    struct conf__arena *arena; /* owns this struct and everything above */
};

/*
 * Reads and validates the file at path, following includes, and checks that
 * every certificate and key file is readable (access(2), nothing is parsed:
 * the TLS module loads them). Server names are not resolved yet: call
 * gh_config_resolve. Returns NULL on error with "FILE:LINE: reason" in err.
 */
gh_config *gh_config_load(const char *path, char *err, size_t errlen);

/* gh_config_load reading every file through src (the filesystem, or a reload bundle: bundle.h). */
gh_config *gh_config_load_from(const char *path, const gh_conf_source *src, char *err, size_t errlen);

/* gh_config_load without the certificate readability check (tests, tools that only lint syntax). */
gh_config *gh_config_parse(const char *path, char *err, size_t errlen);

/* The readability check of gh_config_load alone. Returns 0 or -1 with "FILE:LINE: reason" in err. */
int gh_config_check_files(const gh_config *cfg, char *err, size_t errlen);

/*
 * Resolves every server given by name (getaddrinfo, blocking: meant for load
 * time in the master). A name that resolves to nothing is an error
 * "FILE:LINE: cannot resolve NAME: reason". Numeric servers are already done.
 * Addresses beyond the server's nslots are left out. The prober re-resolves
 * names every resolve_interval (src/proxy/runtime.c). Returns 0 or -1.
 */
int gh_config_resolve(gh_config *cfg, char *err, size_t errlen);
/* The same with src's resolver: a worker resolves from the master's answers (bundle.h), never by DNS. */
int gh_config_resolve_from(gh_config *cfg, const gh_conf_source *src, char *err, size_t errlen);

/*
 * The same structure from the quick-start flags (already parsed and checked by
 * the CLI): one TLS listener, one certificate, pool "default" with the --to
 * servers in round-robin, one default site with route / to that pool. Copies
 * every string. Returns NULL (out of memory) with a reason in err.
 */
gh_config *gh_config_from_quickstart(const gh_conf *c, char *err, size_t errlen);

/* Frees a generation and everything in it; NULL is a no-op. */
void gh_config_free(gh_config *cfg);

/* The pool called name, or NULL. */
const gh_cfg_pool *gh_config_pool(const gh_config *cfg, const char *name);

/* Adds statuses lo..hi (within GH_CFG_STATUS_MIN..MAX, else nothing) to the set of ps. */
void gh_cfg_passive_add_statuses(gh_cfg_passive *ps, int lo, int hi);

/* 1 when a response with this status counts as a passive failure of its server (inline: once per response). */
static inline int gh_cfg_passive_counts(const gh_cfg_passive *ps, int status)
{
    unsigned i = (unsigned)(status - GH_CFG_STATUS_MIN);

    return i <= GH_CFG_STATUS_MAX - GH_CFG_STATUS_MIN && (ps->statuses[i / 64] >> (i % 64) & 1);
}

/* Values a redirect target can use (see docs/config.md). */
typedef struct gh_redirect_vars {
    gh_cstr scheme;      /* "https" or "http" */
    gh_cstr host;        /* Host header without port */
    gh_cstr request_uri; /* original path and query, as received */
} gh_redirect_vars;

/*
 * Writes the Location of a redirect route into out (NUL-terminated).
 * Returns its length, or -1 when it does not fit.
 */
int gh_route_redirect_target(const gh_cfg_route *r, const gh_redirect_vars *v, char *out, size_t outlen);

/*
 * The path to send upstream for a proxy route whose prefix matched path
 * (path and query, as received): unchanged, prefix stripped ("/api/x?q" with
 * prefix "/api/" gives "/x?q"; the result always starts with "/"), or prefix
 * replaced. Returns the length written to out (NUL-terminated) or -1 when it
 * does not fit.
 */
int gh_route_rewrite_path(const gh_cfg_route *r, const char *path, size_t len, char *out, size_t outlen);

#endif
