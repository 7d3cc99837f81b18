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

#define GH_RELOAD_MAGIC 0x47485232u /* "GHR2" */
/*
 * The same struct, no bundle and no listener: at SIGUSR1 the master opened
 * the access log files again (logrotate moved them) and sends their
 * descriptors; the worker reopens its logs on them.
 */
#define GH_REOPEN_MAGIC 0x47485233u /* "GHR3" */
/*
 * Access log files whose descriptors a message carries, after the listening
 * sockets: the master opens every file (the workers run as an account that
 * may not open them, or search their directory; core/sandbox.h). Beyond this
 * many distinct paths, a worker opens the rest itself.
 */
#define GH_MAX_LOG_FDS 64
typedef struct gh_reload_listener {
    char addr[64]; /* gh_addr.text, NUL-terminated */
    uint8_t tls;
} gh_reload_listener;

typedef struct gh_reload_msg {
    uint32_t magic;
    uint32_t nlisteners; /* <= GH_MAX_LISTENERS; SCM_RIGHTS carries 1 + nlisteners + nlogs fds */
    uint32_t nlogs;      /* <= GH_MAX_LOG_FDS */
    gh_reload_listener listeners[GH_MAX_LISTENERS];
    uint32_t log_index[GH_MAX_LOG_FDS]; /* log descriptor k is for gh_config.logs[log_index[k]].path */
} gh_reload_msg;

/*
 * The access log files the master opened, for the workers: `path` gets `fd`
 * (owned from now on; a previous one for the path is closed). The master sets
 * them before it forks (the workers inherit the table and the descriptors),
 * the worker at a reload and a reopen. A worker's log of that path writes to
 * a copy of fd instead of opening the path. gh_access_given_reset closes all.
 */
void gh_access_give(const char *path, int fd);
void gh_access_given_reset(void);

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
