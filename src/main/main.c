/*
 * gatehouse: command line to configuration, then the master takes over.
 */
#include "core/conf.h"
#include "core/log.h"
#include "main/cli.h"
#include "main/master.h"

int main(int argc, char **argv)
{
    gh_conf conf;

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
    return gh_master_run(&conf);
}
