/*
 * conf: the running configuration. Built once by the master (from the command
 * line for now), validated before any worker starts, then read-only: workers
 * inherit it through fork() and never change it.
 */
#ifndef GH_CORE_CONF_H
#define GH_CORE_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define GH_MAX_SERVERS 64

/* A socket address with its text form ("127.0.0.1:8080", "[::1]:443") for logs. */
typedef struct gh_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
} gh_addr;

typedef struct gh_conf {
    gh_addr listen;
    const char *cert_file; /* PEM, leaf first then chain */
    const char *key_file;  /* PEM private key */
    gh_addr servers[GH_MAX_SERVERS];
    size_t nservers;
    int workers;            /* >= 1 */
    const char *access_log; /* NULL: off; "-": stdout; else a file path (appended) */
    int log_level;          /* GH_LOG_* */
    /* Timeouts in milliseconds; all on by default. */
    uint32_t handshake_timeout;     /* TLS handshake: 10 s */
    uint32_t header_timeout;        /* whole request head: 10 s */
    uint32_t keepalive_timeout;     /* idle between requests: 60 s */
    uint32_t body_timeout;          /* client silent while sending a body: 60 s */
    uint32_t send_timeout;          /* peer not reading what we send: 60 s */
    uint32_t connect_timeout;       /* upstream connect: 5 s */
    uint32_t response_timeout;      /* upstream silent while we wait for response bytes: 60 s */
    uint32_t upstream_idle_timeout; /* pooled idle upstream connection: 30 s */
    uint32_t shutdown_timeout;      /* SIGTERM drain deadline: 30 s */
    const char *config_file;        /* -c FILE: everything but --workers/--log-level comes from it */
    int test_only;                  /* -t: check the configuration and exit */
    int workers_given;              /* --workers was on the command line (overrides the file) */
} gh_conf;

/* Sets every field to its default (no listener, no servers, one worker per core). */
void gh_conf_defaults(gh_conf *c);

/*
 * Parses "host:port", "[v6]:port" or "v6" forms with a mandatory port into a.
 * Numeric addresses only (names come with the config file). Returns 0 or -1.
 */
int gh_addr_parse(gh_addr *a, const char *text);

/* 1 when host is a numeric IPv4 or IPv6 address (no brackets), 0 for a name to resolve. */
int gh_addr_is_numeric(const char *host);

#endif
