/*
 * master: the process that owns the listening socket and supervises the
 * workers (DESIGN.md, "Process model"). It never serves a connection itself.
 */
#ifndef GH_MAIN_MASTER_H
#define GH_MAIN_MASTER_H

#include "core/conf.h"

/*
 * Runs gatehouse from a complete, validated conf: raises the open-file limit,
 * loads the TLS context into conf->tls, binds conf->listen, forks
 * conf->workers workers and supervises them until SIGTERM, SIGINT or SIGQUIT.
 * Returns the process exit status: 0 when every worker stopped cleanly, 1 on
 * a startup error (already printed) or an unclean stop.
 */
int gh_master_run(gh_conf *conf);

#endif
