/*
 * gatehouse: command line (and configuration file) to a runtime, then the
 * master takes over.
 */
#include <stdio.h>

#include "conf/bundle.h"
#include "conf/config.h"
#include "conf/quickstart.h"
#include "core/log.h"
#include "health/state.h"
#include "main/cli.h"
#include "main/master.h"
#include "main/notify.h"
#include "main/upgrade.h"
#include "proxy/runtime.h"

/*
 * The first generation: from -c FILE, or from the quick-start flags. Its
 * certificates are loaded here, in the master: a bad one stops the start with
 * FILE:LINE. Through a recording bundle, as a reload does: the load asks for a
 * certificate several times (the readability check, the site's context, a TLS
 * listener's own context), and the disk is read once, so every context is
 * built from the same bytes even if a file is replaced during the start.
 */
static gh_runtime *load_runtime(const gh_conf *conf, const gh_shared *shared, char *err, size_t errlen)
{
    gh_bundle *b = gh_bundle_recorder();
    gh_config *cfg;
    gh_runtime *rt = NULL;

    if (b == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (conf->config_file != NULL) {
        rt = gh_runtime_load(conf->config_file, gh_bundle_source(b), shared, conf->workers_given ? conf->workers : 0,
                             NULL, err, errlen);
    } else if ((cfg = gh_config_from_quickstart(conf, err, errlen)) != NULL) {
        cfg->workers = conf->workers;
        rt = gh_runtime_new(cfg, gh_bundle_source(b), shared, err, errlen); /* numeric addresses: nothing to resolve */
    }
    gh_bundle_free(b); /* the runtime keeps nothing of it: a reload frees its recorder the same way */
    return rt;
}

int main(int argc, char **argv)
{
    gh_conf conf;
    const gh_config *cfg;
    gh_runtime *rt;
    gh_shared shared;
    char err[1024] = "";

    gh_upgrade_save_argv(argc, argv);
    gh_log_detect_journal();
    gh_conf_defaults(&conf);
    switch (gh_cli_parse(&conf, argc, argv)) {
    case GH_CLI_DONE:
        return 0;
    case GH_CLI_USAGE:
        return 2;
    default:
        break;
    }
    gh_log_level = conf.log_level;
    if (!conf.test_only) {
        gh_notify_init();
        gh_upgrade_inherit(); /* before the listeners are bound: an upgrade's sockets are taken, not bound again */
    }
    if (gh_shared_init(&shared) < 0) {
        gh_cli_error("cannot map the shared health state");
        return 1;
    }
    if ((rt = load_runtime(&conf, &shared, err, sizeof(err))) == NULL) {
        gh_cli_error("%s", err);
        gh_shared_dispose(&shared);
        return 1;
    }
    cfg = gh_runtime_config(rt);
    if (conf.config_file != NULL && cfg->log_level >= 0 && conf.log_level == GH_LOG_INFO)
        gh_log_level = cfg->log_level;
    if (conf.test_only) {
        printf("gatehouse: %s: configuration is valid\n", conf.config_file ? conf.config_file : "command line");
        gh_runtime_free(rt);
        gh_shared_dispose(&shared);
        return 0;
    }
    return gh_master_run(rt, &shared, conf.config_file);
}
