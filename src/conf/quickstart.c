#include "conf/quickstart.h"
#include "conf/config.h" /* GH_CFG_MAX_WORKERS */

#include <string.h>
#include <unistd.h>

#include "core/log.h"

int gh_conf_auto_workers(long cores, int max, int *capped)
{
    if (capped != NULL)
        *capped = cores > max;
    if (cores < 1)
        return 1;
    return cores > max ? max : (int)cores;
}

void gh_conf_defaults(gh_conf *c)
{
    memset(c, 0, sizeof(*c));
    /* One worker per core: each is single-threaded, so this uses every core and no more. */
    c->workers = gh_conf_auto_workers(sysconf(_SC_NPROCESSORS_ONLN), GH_CFG_MAX_WORKERS, NULL);
    c->access_log = NULL;
    c->log_level = GH_LOG_INFO;
    gh_cfg_timeouts_defaults(&c->timeouts);
    c->config_file = NULL;
    c->test_only = 0;
    c->workers_given = 0;
    c->seccomp = 1;
}
