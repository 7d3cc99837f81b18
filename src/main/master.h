/*
 * master: the process that owns the listening socket and supervises the
 * workers (DESIGN.md, "Process model"). It never serves a connection itself.
 */
#ifndef GH_MAIN_MASTER_H
#define GH_MAIN_MASTER_H

#include "health/state.h"
#include "proxy/runtime.h"

/*
 * Runs gatehouse from a runtime (config loaded, certificates in memory; owned
 * and freed here): binds every listener (or takes them over from the old
 * master of a binary upgrade: main/upgrade.h), raises the open-file limit,
 * forks the config's workers and supervises them until SIGTERM, SIGINT or
 * SIGQUIT; SIGHUP reloads, SIGUSR1 reopens the access log, SIGUSR2 starts a
 * binary upgrade. Tells systemd what it does (main/notify.h).
 * Returns the process exit status: 0 when every worker stopped cleanly, 1 on
 * a startup error (already printed) or an unclean stop.
 */
int gh_master_run(gh_runtime *rt, gh_shared *shared, const char *config_path);

#endif
