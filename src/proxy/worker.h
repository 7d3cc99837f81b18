/*
 * worker: one single-threaded event loop that accepts TLS connections on the
 * inherited listening socket and proxies their requests.
 */
#ifndef GH_PROXY_WORKER_H
#define GH_PROXY_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "proxy/runtime.h"

/*
 * A reload, master to worker, in one SOCK_SEQPACKET message: this struct as
 * the data, and as SCM_RIGHTS the sealed bundle memfd (conf/bundle.h) first,
 * then one listening socket per listener of the new file, in the order of
 * `listeners`. Each socket is tagged with its listener's identity (address
 * text and TLS flag): the worker matches its new listeners to the sockets by
 * identity, never by position or count.
 */
/*
 * Worker to master, on the control socket: "I accept connections now", one
 * byte, once. The master's end raises GH_SIG_WORKER_READY when readable
 * (O_ASYNC, F_SETSIG: a queued real-time signal naming the descriptor), as the
 * master waits for signals, not for descriptors.
 */
#define GH_WORKER_READY_MSG "R"
#define GH_SIG_WORKER_READY (SIGRTMIN + 1)

#define GH_RELOAD_MAGIC 0x47485231u /* "GHR1" */
typedef struct gh_reload_listener {
    char addr[64]; /* gh_addr.text, NUL-terminated */
    uint8_t tls;
} gh_reload_listener;

typedef struct gh_reload_msg {
    uint32_t magic;
    uint32_t nlisteners; /* <= GH_MAX_LISTENERS; SCM_RIGHTS carries 1 + nlisteners fds */
    gh_reload_listener listeners[GH_MAX_LISTENERS];
} gh_reload_msg;

/*
 * Runs a worker until it is told to stop; returns the process exit status.
 * listen_fds[i] is the bound socket of the runtime's listener i; the worker
 * owns its copy of rt (a fork's) and of the sockets. ctl_fd is the worker's end
 * of a SOCK_SEQPACKET pair on which the master sends reloads (gh_reload_msg).
 * Called in the child right after fork(), with SIGTERM, SIGINT, SIGQUIT and
 * SIGHUP blocked (the worker reads them through a signalfd):
 *   SIGTERM           stop accepting, finish in-flight requests, close idle
 *                     connections, exit 0 (or 1 at conf->shutdown_timeout);
 *   SIGINT / SIGQUIT  exit at once;
 *   SIGUSR1           reopen the access log (after logrotate moved it).
 * Once it listens, it sends GH_WORKER_READY_MSG on ctl_fd.
 * `id` is the worker's index (0..workers-1), for logs.
 */
int gh_worker_run(gh_runtime *rt, const int *listen_fds, int ctl_fd, int id);

#endif
