/*
 * quickstart: the options of the quick-start command line (`gatehouse --listen
 * ADDR --cert F --key F --to ADDR...`), filled by src/main/cli.c and turned
 * into a gh_config by gh_config_from_quickstart. With -c FILE only the
 * process options (workers, log level, -t) are read from it.
 */
#ifndef GH_CONF_QUICKSTART_H
#define GH_CONF_QUICKSTART_H

#include <stddef.h>
#include <stdint.h>

#include "balance/balance.h" /* GH_LB_MAX_SERVERS: --to makes one pool */
#include "conf/timeouts.h"
#include "net/addr.h"

typedef struct gh_conf {
    gh_addr listen;
    const char *cert_file; /* PEM, leaf first then chain */
    const char *key_file;  /* PEM private key */
    gh_addr servers[GH_LB_MAX_SERVERS];
    size_t nservers;
    int workers;              /* >= 1 */
    const char *access_log;   /* NULL: off; "-": stdout; else a file path (appended) */
    int log_level;            /* GH_LOG_* */
    uint32_t max_connections; /* client connections, all workers together; 0: from the open-file limit */
    gh_cfg_timeouts timeouts; /* ms; defaults and flags from GH_CFG_TIMEOUTS */
    const char *config_file;  /* -c FILE: everything but --workers/--log-level comes from it */
    int test_only;            /* -t: check the configuration and exit */
    int workers_given;        /* --workers was on the command line (overrides the file) */
    const char *user;         /* --user, --group: as `user` and `group` (NULL: not given) */
    const char *group;
    int seccomp; /* --seccomp on|off: as `seccomp` (default 1) */
} gh_conf;

/*
 * The worker count for `workers auto` and the default: one per core, at least 1
 * (cores < 1: unknown) and at most max. *capped (may be NULL) is set to 1 when
 * cores was more than max, so the caller can say so.
 */
int gh_conf_auto_workers(long cores, int max, int *capped);

/* Sets every field to its default (no listener, no servers, one worker per core). */
void gh_conf_defaults(gh_conf *c);

#endif
