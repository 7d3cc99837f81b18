/*
 * worker: one single-threaded event loop that accepts TLS connections on the
 * inherited listening socket and proxies their requests.
 */
#ifndef GH_PROXY_WORKER_H
#define GH_PROXY_WORKER_H

#include "proxy/runtime.h"

/*
 * Runs a worker until it is told to stop; returns the process exit status.
 * listen_fds[i] is the bound socket of the runtime's listener i; the worker
 * owns its copy of rt (a fork's) and of the sockets. ctl_fd is the worker's end
 * of a SOCK_SEQPACKET pair: on a reload the master sends 'R' with the new
 * listening sockets attached (SCM_RIGHTS), one per listener of the new file.
 * Called in the child right after fork(), with SIGTERM, SIGINT, SIGQUIT and
 * SIGHUP blocked (the worker reads them through a signalfd):
 *   SIGTERM           stop accepting, finish in-flight requests, close idle
 *                     connections, exit 0 (or 1 at conf->shutdown_timeout);
 *   SIGINT / SIGQUIT  exit at once.
 * `id` is the worker's index (0..workers-1), for logs.
 */
int gh_worker_run(gh_runtime *rt, const int *listen_fds, int ctl_fd, int id);

#endif
