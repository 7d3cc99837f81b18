/*
 * gatehouse: command line (and configuration file) to a runtime, then the
 * master takes over.
 */
#include <stdio.h>

#include "conf/config.h"
#include "core/conf.h"
#include "core/log.h"
#include "health/state.h"
#include "main/cli.h"
#include "main/master.h"
#include "proxy/runtime.h"

/* The configuration generation: from -c FILE, or from the quick-start flags. */
static gh_config *load_config(const gh_conf *conf, char *err, size_t errlen)
{
    gh_config *cfg = conf->config_file ? gh_config_load(conf->config_file, err, errlen)
                                       : gh_config_from_quickstart(conf, err, errlen);
    if (cfg == NULL)
        return NULL;
    if (gh_config_resolve(cfg, err, errlen) < 0) {
        gh_config_free(cfg);
        return NULL;
    }
    if (conf->workers_given || conf->config_file == NULL)
        cfg->workers = conf->workers;
    return cfg;
}

int main(int argc, char **argv)
{
    gh_conf conf;
    gh_config *cfg;
    gh_runtime *rt;
    gh_shared shared;
    char err[1024] = "";

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
    if ((cfg = load_config(&conf, err, sizeof(err))) == NULL) {
        gh_cli_error("%s", err);
        return 1;
    }
    if (conf.config_file != NULL && cfg->log_level >= 0 && conf.log_level == GH_LOG_INFO)
        gh_log_level = cfg->log_level;
    /* Certificates are loaded here, in the master: a bad one stops the start with FILE:LINE. */
    if (gh_shared_init(&shared) < 0) {
        gh_cli_error("cannot map the shared health state");
        return 1;
    }
    if ((rt = gh_runtime_new(cfg, &shared, err, sizeof(err))) == NULL) {
        gh_cli_error("%s", err);
        return 1;
    }
    if (conf.test_only) {
        printf("gatehouse: %s: configuration is valid\n", conf.config_file ? conf.config_file : "command line");
        gh_runtime_free(rt);
        return 0;
    }
    return gh_master_run(rt, &shared, conf.config_file);
}
