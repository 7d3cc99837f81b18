/*
 * admin: the admin listener (`admin { listen ...; allow ... }`): /metrics in
 * the Prometheus text format, /status as JSON, and / (a page linking both).
 *
 * The master binds the socket at start (gh_admin_bind), before it forks; every
 * worker then accepts on it in its own loop (EPOLLEXCLUSIVE, like the proxy
 * listeners) and answers from the shared metrics region, so a scrape costs the
 * master nothing and works while any worker lives. Plain HTTP/1.1, GET and
 * HEAD only, one request per connection (Connection: close), a 4 KiB head
 * within 5 s, at most 32 admin connections per worker: the port is for
 * monitoring, not for the public.
 *
 * Clients must come from `allow` (none given: loopback only); the others get
 * a 403 and the connection closes. The allow list of the worker's current
 * configuration applies: a reload changes it; the address changes with a
 * restart only.
 */
#ifndef GH_ADMIN_ADMIN_H
#define GH_ADMIN_ADMIN_H

#include "conf/config.h"
#include "core/loop.h"
#include "metrics/export.h"

/*
 * The master, at start: binds a->addr when a->enabled (open_listener: a
 * bound socket, or the old master's after a binary upgrade). 0, or -1 with
 * the reason printed.
 */
int gh_admin_bind(const gh_cfg_admin *a, int (*open_listener)(const gh_addr *a));

/* The admin socket (-1: none) and its address, for a binary upgrade to pass on (main/upgrade.h). */
int gh_admin_listen_fd(void);
const char *gh_admin_listen_addr(void);

/* The master, at a reload that proved valid: warns when the admin address changed (it takes a restart). */
void gh_admin_check_reload(const gh_cfg_admin *old, const gh_cfg_admin *new_admin);

/*
 * A worker: serves the admin socket in loop. view fills in what the worker
 * runs now (called once per request). 0, or -1 (errno).
 */
int gh_admin_start(gh_loop *loop, void (*view)(void *arg, gh_metrics_view *v), void *arg);

/* Closes every admin connection and stops accepting (a worker's end). */
void gh_admin_stop(void);

#endif
