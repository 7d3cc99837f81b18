#include "conf/quickstart.h"

#include <string.h>
#include <unistd.h>

#include "core/log.h"

void gh_conf_defaults(gh_conf *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(c, 0, sizeof(*c));
    /* One worker per core: each is single-threaded, so this uses every core and no more. */
    c->workers = cores >= 1 ? (int)cores : 1;
    c->access_log = NULL;
    c->log_level = GH_LOG_INFO;
    gh_cfg_timeouts_defaults(&c->timeouts);
    c->config_file = NULL;
    c->test_only = 0;
    c->workers_given = 0;
    c->seccomp = 1;
}
