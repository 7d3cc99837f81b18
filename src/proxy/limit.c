#include "proxy/limit.h"

gh_conn_limit gh_conn_limit_compute(uint32_t max_connections, int workers, uint64_t nofile, size_t nlisteners)
{
    gh_conn_limit l = {0, 1, max_connections == 0};
    uint64_t reserve = GH_LIMIT_RESERVED_FDS + 2 * (uint64_t)nlisteners;
    uint64_t bound = nofile > reserve + 2 ? (nofile - reserve) / 2 : 1;

    l.fd_bound = bound > UINT32_MAX ? UINT32_MAX : (uint32_t)bound;
    if (workers < 1)
        workers = 1;
    if (max_connections == 0)
        l.per_worker = l.fd_bound;
    else
        l.per_worker = (uint32_t)(((uint64_t)max_connections + (uint64_t)workers - 1) / (uint64_t)workers);
    return l;
}
