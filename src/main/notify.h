/*
 * notify: the systemd service notification protocol (sd_notify(3)), written
 * by hand: one datagram of "VAR=value" lines to the unix socket named by
 * $NOTIFY_SOCKET (a path, or an abstract name when it starts with '@').
 *
 * Why not libsystemd: the protocol is a stable, documented interface
 * (systemd's "Service notification" docs give a reference implementation of
 * the same ~50 lines for daemons that do not link it); sd_notify() itself does
 * no more than this; and a library dependency (and a build dependency) on
 * every system, systemd or not, for one sendmsg() did not earn its place
 * (DESIGN.md, Dependencies).
 *
 * Without $NOTIFY_SOCKET every call is a no-op, so the master calls these
 * unconditionally. Messages are best-effort: a failed send is logged once at
 * debug level and never stops the proxy.
 */
#ifndef GH_MAIN_NOTIFY_H
#define GH_MAIN_NOTIFY_H

#include <sys/types.h>

#include "conf/config.h"

/* Reads $NOTIFY_SOCKET once (the variable stays set: a new binary after an upgrade reads it too). */
void gh_notify_init(void);

/* 1 when a notification socket was given. */
int gh_notify_enabled(void);

/* Sends one message, e.g. "READY=1\nSTATUS=...". Returns 0, or -1 when nothing was sent. */
int gh_notify_send(const char *msg);

/* READY=1 with a STATUS= line naming what runs: version, listeners, workers and `extra` (may be NULL). */
void gh_notify_ready(const gh_config *cfg, const char *extra);

/*
 * RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC, microseconds), at the
 * start of a reload: systemd 253's Type=notify-reload requires the timestamp;
 * systemd 252 (Debian 12) already enters "reloading" on RELOADING=1 and
 * ignores the field it does not know. gh_notify_ready ends the reload.
 */
void gh_notify_reloading(void);

/* STOPPING=1 with a STATUS= line. */
void gh_notify_stopping(const char *why);

/*
 * After a binary upgrade the new master is the service's main process:
 * MAINPID= (accepted from the current main process, for a pid in the unit's
 * cgroup), so that systemd neither stops the unit when the old one exits nor
 * drops the new one's later notifications (NotifyAccess=main). The STATUS=
 * line is the old master's view (the new one's own READY=1 came before the
 * switch and was not heard): the same as gh_notify_ready's, with `extra`.
 */
void gh_notify_mainpid(pid_t pid, const gh_config *cfg, const char *extra);

#endif
