/* limit: the per-worker share of max_connections, and the default from the open file limit. */
#include "proxy/limit.h"
#include "unit.h"

void suite_limit(void)
{
    gh_conn_limit l;

    unit_case("derived: half of what the reserve leaves, one upstream per client");
    l = gh_conn_limit_compute(0, 2, 1024, 1);
    CHECK(l.derived);
    CHECK_INT(l.per_worker, (1024 - GH_LIMIT_RESERVED_FDS - 2) / 2);
    CHECK_INT(l.fd_bound, l.per_worker);
    l = gh_conn_limit_compute(0, 1, 1024, 3); /* listeners cost two descriptors each (reload) */
    CHECK_INT(l.per_worker, (1024 - GH_LIMIT_RESERVED_FDS - 6) / 2);
    l = gh_conn_limit_compute(0, 4, 1048576, 1); /* per process: the worker count does not divide it */
    CHECK_INT(l.per_worker, (1048576 - GH_LIMIT_RESERVED_FDS - 2) / 2);

    unit_case("derived: a tiny limit still admits one client");
    l = gh_conn_limit_compute(0, 1, 10, 1);
    CHECK_INT(l.per_worker, 1);
    l = gh_conn_limit_compute(0, 1, 0, 0);
    CHECK_INT(l.per_worker, 1);

    unit_case("explicit: each worker's share, rounded up");
    l = gh_conn_limit_compute(1000, 3, 65536, 1);
    CHECK(!l.derived);
    CHECK_INT(l.per_worker, 334);
    l = gh_conn_limit_compute(1, 8, 65536, 1);
    CHECK_INT(l.per_worker, 1);
    l = gh_conn_limit_compute(16777216, 1, 65536, 1);
    CHECK_INT(l.per_worker, 16777216);
    CHECK(l.per_worker > l.fd_bound);           /* kept as asked: the master warns */
    l = gh_conn_limit_compute(10, 0, 65536, 1); /* no workers given: one */
    CHECK_INT(l.per_worker, 10);

    unit_case("no overflow with an unlimited open file limit");
    l = gh_conn_limit_compute(0, 1, UINT64_MAX, 1);
    CHECK(l.per_worker == UINT32_MAX);
    unit_case(NULL);
}
