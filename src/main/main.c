/*
 * gatehouse: command line (and configuration file) to a runtime, then the
 * master takes over.
 */
#include <stdio.h>
#include <string.h>

#include "conf/bundle.h"
#include "conf/config.h"
#include "conf/quickstart.h"
#include "core/log.h"
#include "core/sandbox.h"
#include "health/state.h"
#include "main/cli.h"
#include "main/master.h"
#include "main/notify.h"
#include "main/upgrade.h"
#include "main/proctitle.h"
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

/*
 * Who the workers run as (core/sandbox.h), resolved here once, so that -t
 * checks it too and a reload never asks NSS again. 0, or -1 with the error
 * printed as FILE:LINE.
 */
static int set_sandbox_policy(const gh_config *cfg)
{
    gh_sandbox_creds creds;
    const char *note;
    char why[256];

    int rc = gh_sandbox_resolve(cfg->user, cfg->group, &creds, &note, why, sizeof(why));

    if (rc < 0) {
        const gh_cfg_where *w = rc == -2 ? &cfg->group_where : &cfg->user_where;

        if (w->line > 0)
            gh_cli_error("%s:%d: %s", w->file, w->line, why);
        else
            gh_cli_error("%s: %s", cfg->path, why);
        return -1;
    }
    if (note != NULL)
        gh_log_warn("%s", note);
    if (cfg->seccomp && (rc = gh_sandbox_probe()) < 0) {
        gh_cli_error("%s: seccomp: cannot install the system-call filter: %s (no seccomp in this kernel, or a tool "
                     "such as valgrind that does not pass it through); `seccomp off` or --seccomp off runs without it",
                     cfg->path, strerror(-rc));
        return -1;
    }
    gh_sandbox_set_policy(&creds, cfg->seccomp);
    return 0;
}

/* "gatehouse: master" and the command line it was started with, as nginx shows its master. */
static void set_master_title(int argc, char **argv)
{
    char title[512];
    size_t n = (size_t)snprintf(title, sizeof(title), "gatehouse: master");

    for (int i = 1; i < argc && n < sizeof(title); i++)
        n += (size_t)snprintf(title + n, sizeof(title) - n, " %s", argv[i]);
    gh_proctitle_set(title, "gatehouse");
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
    gh_proctitle_init(argc, argv); /* before anything keeps a pointer into argv */
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
    if (set_sandbox_policy(cfg) < 0) {
        gh_runtime_free(rt);
        gh_shared_dispose(&shared);
        return 1;
    }
    if (conf.test_only) {
        printf("gatehouse: %s: configuration is valid\n", conf.config_file ? conf.config_file : "command line");
        gh_runtime_free(rt);
        gh_shared_dispose(&shared);
        return 0;
    }
    set_master_title(argc, argv);
    return gh_master_run(rt, &shared, conf.config_file);
}
