/*
 * limit: how many client connections one worker holds at once (max_connections),
 * from the configured total or, by default, from the open-file limit.
 * Pure arithmetic: the master logs it at start, each worker applies it.
 */
#ifndef GH_PROXY_LIMIT_H
#define GH_PROXY_LIMIT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Descriptors a worker keeps for what is not a client or its upstream: stdio,
 * epoll, signalfd, the control socket, the access log, and every listening
 * socket twice (a reload holds the old and the new ones for a moment).
 */
#define GH_LIMIT_RESERVED_FDS 16

typedef struct gh_conn_limit {
    uint32_t per_worker; /* clients one worker accepts before it closes idle ones and pauses */
    uint32_t fd_bound;   /* what the open-file limit allows: one upstream descriptor per client */
    int derived;         /* 1: no max_connections, per_worker is fd_bound */
} gh_conn_limit;

/*
 * RLIMIT_NOFILE is per process, so each worker has `nofile` descriptors of its
 * own: after the reserve, half go to clients and half to their upstream
 * connections. max_connections (0: derived) is for all workers together; each
 * takes its share, rounded up. A share above fd_bound is kept (the operator
 * asked for it) but the caller should warn: descriptors may then run out.
 */
gh_conn_limit gh_conn_limit_compute(uint32_t max_connections, int workers, uint64_t nofile, size_t nlisteners);

#endif
