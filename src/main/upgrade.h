/*
 * upgrade: a new gatehouse binary takes over from the running master without
 * closing the listening sockets (nginx's USR2, HAProxy's -x as models).
 *
 *   1. SIGUSR2 to the master (the old one): it forks and execs the binary it
 *      was started from (the path read from /proc/self/exe at start: the file
 *      a package upgrade put there), with the same arguments, passing its
 *      listening sockets as inherited descriptors named in the environment:
 *          GATEHOUSE_UPGRADE=OLDPID;FD=ADDRESS;FD=ADDRESS...;tickets=FD
 *   2. The new master loads and checks its configuration as at any start; for
 *      each listener whose address is one of those, it takes the inherited
 *      socket instead of binding (the kernel's accept queue is the same one:
 *      no connection is refused or lost), binds any new address, closes the
 *      inherited sockets it does not use, and starts its workers.
 *   3. Once all of its workers accept (main/notify.c), it sends SIGTERM to
 *      the old master, which tells systemd MAINPID=new and drains: its workers
 *      stop accepting, finish what they hold and exit, and so does it.
 *   4. If the new master exits first (a bad configuration, a binary that does
 *      not start) or does not take over within UPGRADE_TIMEOUT_MS, the old one
 *      logs why and goes on serving as if nothing happened.
 *
 * The TLS session ticket keys go on too: their region is a memfd (tickets=FD)
 * that the new master maps again when its layout is the same, so sessions
 * resume across the upgrade, and old and new workers share the rotation.
 * What the new master does not inherit: the health state (it maps its own and
 * health states start over with its first probes: its configuration may have
 * other servers in other slots) and the workers' control sockets (its own
 * workers have theirs).
 */
#ifndef GH_MAIN_UPGRADE_H
#define GH_MAIN_UPGRADE_H

#include <stdint.h>
#include <sys/types.h>

#include "conf/config.h"

#define GH_UPGRADE_ENV "GATEHOUSE_UPGRADE"

/* The old master's side: one upgrade at a time. Lives in the master's state. */
typedef struct gh_upgrade {
    pid_t child;      /* the new master; 0: none under way */
    int64_t deadline; /* monotonic ms: past it, the new master is stopped */
    int handed_over;  /* the new master serves: we drain */
} gh_upgrade;

/* In main(), first thing (before anything rewrites argv): copies argv and the binary's path for a later upgrade. */
void gh_upgrade_save_argv(int argc, char **argv);

/*
 * In main(), before the configuration is loaded: reads and unsets
 * GATEHOUSE_UPGRADE (when this process is the new master of an upgrade),
 * marks the named descriptors close-on-exec again and remembers them.
 */
void gh_upgrade_inherit(void);

/* The old master's pid when this process is the new master of an upgrade, else 0. */
pid_t gh_upgrade_parent(void);

/* The inherited listening socket for this address text (taken: asked once), or -1. */
int gh_upgrade_take(const char *addr_text);

/* Closes the inherited sockets no listener took (addresses the new configuration dropped). */
void gh_upgrade_close_unused(void);

/*
 * SIGUSR2, in the old master: starts the new binary with the listening
 * sockets fds[i] of cfg->listeners[i]. Returns 0 (u->child set) or -1 (logged).
 */
int gh_upgrade_start(gh_upgrade *u, const gh_config *cfg, const int *fds, int64_t now);

/* A child exited that is no worker: 1 when it was the new master (the upgrade failed: logged), else 0. */
int gh_upgrade_reaped(gh_upgrade *u, pid_t pid, int status);

/* A SIGTERM from `sender`: 1 when it is the new master saying it serves (u->handed_over set), else 0. */
int gh_upgrade_handover(gh_upgrade *u, pid_t sender, const gh_config *cfg);

/* Past the deadline: stops a new master that never took over. */
void gh_upgrade_check_deadline(gh_upgrade *u, int64_t now);

/* The old master stops for another reason: a new master that has not taken over is stopped too. */
void gh_upgrade_abandon(gh_upgrade *u);

#endif
