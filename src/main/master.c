#include "main/master.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "conf/bundle.h"
#include "core/log.h"
#include "main/cli.h"
#include "core/sandbox.h"
#include "main/notify.h"
#include "main/proctitle.h"
#include "main/upgrade.h"
#include "metrics/metrics.h"
#include "proxy/limit.h"
#include "proxy/worker.h"
#include "tls/tls.h"

#define LISTEN_BACKLOG     4096  /* the kernel caps it at net.core.somaxconn */
#define NOFILE_WANTED      65536 /* below this hard limit, say so: two fds per proxied request */
#define RESTART_WINDOW_MS  10000 /* more than RESTART_BURST exits in this window... */
#define RESTART_BURST      10
#define RESTART_BACKOFF_MS 1000 /* ...and each restart waits this long instead of spinning */
#define KILL_GRACE_MS      5000 /* past the workers' own drain deadline, before SIGKILL */
#define QUICK_STOP_MS      2000 /* SIGINT/SIGQUIT: how long workers get to exit */

/* A worker slot: `id` is fixed, `pid` changes when the worker is restarted. */
struct worker {
    pid_t pid; /* 0: not running */
    int id;
    int ctl;            /* master's end of the control socket (reloads); -1 when none */
    int reloading;      /* the prober was stopped to start again with a new configuration */
    int ready;          /* it sent GH_WORKER_READY_MSG since it was started */
    int64_t restart_at; /* monotonic ms at which to start it again; 0: none pending */
};

/* Everything the supervision loop knows; lives on gh_master_run's stack. */
struct master {
    gh_runtime *rt;
    const gh_config *cfg;
    gh_health_shm *health;
    gh_shared *shared;
    const char *config_path; /* -c FILE, for reloads; NULL: the command line (nothing to reload) */
    int *listen_fds;         /* one per listener; -1 once closed */
    pid_t self;
    sigset_t sigs; /* blocked, and read with sigtimedwait */
    struct worker *workers;
    int nworkers;
    int stopping;         /* 0, or the signal that started the stop */
    int64_t deadline;     /* while stopping: when the survivors get SIGKILL */
    int unclean;          /* a worker did not exit 0 while stopping */
    int64_t window_start; /* restart rate limit */
    int window_exits;
    int ready;         /* every worker accepted once: systemd was told READY=1 */
    unsigned reloads;  /* SIGHUPs handled, for the STATUS= line */
    int reload_failed; /* the last one kept the running configuration */
    gh_upgrade up;     /* SIGUSR2: the new master under way (main/upgrade.h) */
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- startup -------------------------------------------------------------------------------- */

/*
 * Every client connection and its upstream connection each hold a descriptor,
 * and the usual soft limit of 1024 would cap a worker at ~500 requests in
 * flight. The hard limit is what the administrator granted, so take all of it.
 */
/* Returns the open file limit the workers inherit, 0 when unknown. */
static uint64_t raise_nofile_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        gh_log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return 0;
    }
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t old = rl.rlim_cur;

        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            gh_log_warn("cannot raise the open file limit from %llu to %llu: %s", (unsigned long long)old,
                        (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = old;
        }
    }
    gh_log_info("open file limit: %llu per process", (unsigned long long)rl.rlim_cur);
    if (rl.rlim_max < NOFILE_WANTED)
        gh_log_warn("the hard open file limit is only %llu: each worker can hold about %llu proxied "
                    "connections; raise it (ulimit -Hn, LimitNOFILE=) to serve more",
                    (unsigned long long)rl.rlim_max, (unsigned long long)rl.rlim_max / 2);
    return rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX : (uint64_t)rl.rlim_cur;
}

/* Says at start what max_connections comes to, and where it came from (each worker applies the same). */
static void log_conn_limit(const gh_config *cfg, uint64_t nofile)
{
    gh_conn_limit l;

    if (nofile == 0)
        return;
    l = gh_conn_limit_compute(cfg->max_connections, cfg->workers, nofile, cfg->nlisteners);
    if (l.derived)
        gh_log_info("connection limit: %u per worker, %llu in all (max_connections auto: half of the open file "
                    "limit %llu after %llu descriptors kept for listeners and logs, one upstream per client)",
                    l.per_worker, (unsigned long long)l.per_worker * (unsigned long long)cfg->workers,
                    (unsigned long long)nofile, (unsigned long long)(GH_LIMIT_RESERVED_FDS + 2 * cfg->nlisteners));
    else if (l.per_worker > l.fd_bound)
        gh_log_warn("max_connections %u: %u per worker, more than the open file limit %llu allows with an "
                    "upstream connection per client (%u): descriptors may run out",
                    cfg->max_connections, l.per_worker, (unsigned long long)nofile, l.fd_bound);
    else
        gh_log_info("connection limit: %u per worker (max_connections %u)", l.per_worker, cfg->max_connections);
}

/* The access log files of a configuration, opened by the master: one descriptor per distinct path. */
struct log_fds {
    int fd[GH_MAX_LOG_FDS];
    uint32_t index[GH_MAX_LOG_FDS]; /* the first gh_config.logs entry of that path */
    size_t n;
};

static void close_logs(struct log_fds *l)
{
    for (size_t i = 0; i < l->n; i++)
        close(l->fd[i]);
    l->n = 0;
}

/*
 * Opens every access log file here, as root, and the workers write through
 * these descriptors (inherited at fork, sent with a reload and at SIGUSR1):
 * they run as an account that may not open the files nor search their
 * directory (/var/log/gatehouse is 0750 root's under the unit), and the files
 * stay root's. Fails at startup, once, rather than in every worker, in a
 * restart loop. Beyond GH_MAX_LOG_FDS distinct paths, workers open the rest.
 */
static int open_access_logs(const gh_config *cfg, struct log_fds *l)
{
    l->n = 0;
    for (size_t i = 0; i < cfg->nlogs; i++) {
        const char *path = cfg->logs[i].path;
        size_t k;
        int fd;

        if (strcmp(path, "-") == 0)
            continue; /* standard output: each worker's own (own_stdout) */
        for (k = 0; k < l->n && strcmp(cfg->logs[l->index[k]].path, path) != 0; k++)
            ;
        if (k < l->n)
            continue;
        /* O_NONBLOCK: a FIFO nobody reads must fail (ENXIO), not hang the start. */
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
        if (fd < 0) {
            gh_cli_error("access log: cannot open \"%s\": %s", path, strerror(errno));
            close_logs(l);
            return -1;
        }
        if (l->n == GH_MAX_LOG_FDS) {
            close(fd); /* checked, and left to the workers to open */
            continue;
        }
        l->fd[l->n] = fd;
        l->index[l->n++] = (uint32_t)i;
    }
    return 0;
}

/* The master's own table (accesslog.c): what workers forked from now on inherit. Takes the descriptors. */
static void keep_logs(const gh_config *cfg, struct log_fds *l)
{
    gh_access_given_reset();
    for (size_t k = 0; k < l->n; k++)
        gh_access_give(cfg->logs[l->index[k]].path, l->fd[k]);
    l->n = 0;
}

/* Fills rm's log fields and appends the descriptors at *at in the SCM_RIGHTS data. */
static void put_logs(gh_reload_msg *rm, const struct log_fds *l, unsigned char *at)
{
    rm->nlogs = (uint32_t)l->n;
    for (size_t k = 0; k < l->n; k++)
        rm->log_index[k] = l->index[k];
    if (l->n > 0)
        memcpy(at, l->fd, sizeof(int) * l->n);
}

static const char *bind_hint(int err)
{
    if (err == EACCES)
        return " (ports below 1024 need root or CAP_NET_BIND_SERVICE)";
    if (err == EADDRNOTAVAIL)
        return " (no interface of this host has that address)";
    if (err == EADDRINUSE)
        return " (another process listens there)";
    return "";
}

/*
 * Bound once here and inherited by every worker, so connections waiting in
 * the accept queue survive a worker's restart.
 */
static int open_listener(const gh_addr *a)
{
    int one = 1, fd, err;

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    /* A restart must not wait for the previous run's TIME_WAIT connections to expire. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    /* "[::]:443" means IPv6 only, as written, whatever net.ipv6.bindv6only says. */
    if (a->ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    err = errno;
    gh_cli_error("cannot listen on %s: %s%s", a->text, strerror(err), bind_hint(err));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* The admin socket: the old master's after a binary upgrade (passed as "admin ADDRESS"), else a new one. */
static int open_admin(const gh_addr *a)
{
    char tag[sizeof(a->text) + 8];
    int fd;

    snprintf(tag, sizeof(tag), "admin %s", a->text);
    if ((fd = gh_upgrade_take(tag)) >= 0)
        return fd;
    return open_listener(a);
}

static void log_started(const gh_config *cfg)
{
    char on[768];
    size_t n = 0, i;

    on[0] = '\0';
    for (i = 0; i < cfg->nlisteners; i++) {
        /* Keep the line readable with many listeners: the rest are counted, not listed. */
        if (n + strlen(cfg->listeners[i].addr.text) + 40 > sizeof(on))
            break;
        n += (size_t)snprintf(on + n, sizeof(on) - n, "%s%s%s", i ? ", " : "", cfg->listeners[i].addr.text,
                              cfg->listeners[i].tls ? " (tls)" : "");
    }
    if (i < cfg->nlisteners)
        snprintf(on + n, sizeof(on) - n, " and %zu more", cfg->nlisteners - i);
    gh_log_info("gatehouse " GH_VERSION " listening on %s, %d worker%s, %zu site%s, %zu pool%s", on, cfg->workers,
                cfg->workers == 1 ? "" : "s", cfg->nsites, cfg->nsites == 1 ? "" : "s", cfg->npools,
                cfg->npools == 1 ? "" : "s");
    for (i = 0; i < cfg->npools; i++)
        for (size_t k = 0; k < cfg->pools[i].nservers; k++)
            gh_log_debug("pool %s: server %s", cfg->pools[i].name.p, cfg->pools[i].servers[k].text.p);
}

static void close_fds(int *fds, size_t n)
{
    for (size_t i = 0; fds != NULL && i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

static void close_listeners(struct master *m)
{
    for (size_t i = 0; m->listen_fds != NULL && i < m->cfg->nlisteners; i++)
        if (m->listen_fds[i] >= 0) {
            close(m->listen_fds[i]);
            m->listen_fds[i] = -1;
        }
}

/* ---- workers -------------------------------------------------------------------------------- */

/*
 * `access_log -` on a pipe: the worker writes it through a description of its
 * own, nonblocking (accesslog.c opens /proc/self/fd/1 for that), but once it
 * runs as another account it may not open root's pipe. So it is opened here,
 * still as root, and put on standard output.
 */
static void own_stdout(void)
{
    struct stat st;
    int fd;

    if (fstat(STDOUT_FILENO, &st) < 0 || !S_ISFIFO(st.st_mode))
        return;
    if ((fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC)) < 0)
        return;
    dup2(fd, STDOUT_FILENO);
    close(fd);
}

/* The title ps shows, then the account and no_new_privs (core/sandbox.h); exits if that fails. */
static void child_identity(int id, int prober)
{
    char title[64], comm[32], who[32];

    if (prober) {
        snprintf(who, sizeof(who), "prober");
        gh_proctitle_set("gatehouse: prober", "gatehouse-probe");
    } else {
        snprintf(who, sizeof(who), "worker %d", id);
        snprintf(title, sizeof(title), "gatehouse: worker %d", id);
        /* comm keeps "gatehouse" first, so that `pgrep gatehouse` still finds every process (15 bytes: the
         * kernel cuts "gatehouse-w1023" no further). */
        snprintf(comm, sizeof(comm), "gatehouse-w%d", id);
        gh_proctitle_set(title, comm);
        own_stdout();
    }
    if (gh_sandbox_drop(who) < 0)
        exit(1);
}

static void child_main(const struct master *m, int id, int ctl)
{
    sigset_t chld;

    child_identity(id, id >= m->cfg->workers);
    /* A worker outliving its master would hold the port with nobody to restart or stop it. Set after the
     * drop: a change of credentials clears the parent-death signal. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != m->self)
        _exit(1); /* the master died before prctl(): no signal would ever come */
    /* Workers keep SIGTERM/SIGINT/SIGQUIT/SIGHUP blocked for their signalfd; SIGCHLD is the master's. */
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_UNBLOCK, &chld, NULL);
    if (id >= m->cfg->workers) {
        /* The prober: health checks once per server for all workers; it serves no client. */
        close_listeners((struct master *)m);
        gh_access_given_reset(); /* it writes no access log */
        if (!gh_runtime_has_probes(m->rt)) {
            int sig; /* nothing to probe until a reload brings checks: wait to be stopped */
            if (gh_sandbox_lock("prober") < 0)
                exit(1);
            do
                sig = sigwaitinfo(&m->sigs, NULL);
            while (sig != SIGTERM && sig != SIGINT && sig != SIGQUIT);
            exit(0);
        }
        exit(gh_runtime_probe(m->rt));
    }
    for (int i = 0; i < m->nworkers; i++)
        if (m->workers[i].ctl >= 0)
            close(m->workers[i].ctl); /* the master's ends, of this worker and of the others */
    gh_metrics_attach(id);
    exit(gh_worker_run(m->rt, m->listen_fds, ctl, id));
}

/* The worker's "ready" wakes the master's sigtimedwait: a signal when the socket becomes readable. */
static void watch_ctl(int fd)
{
    if (fd < 0)
        return;
    if (fcntl(fd, F_SETOWN, getpid()) < 0 || fcntl(fd, F_SETSIG, GH_SIG_WORKER_READY) < 0 ||
        fcntl(fd, F_SETFL, O_NONBLOCK | O_ASYNC) < 0)
        gh_log_warn("control socket: no readiness signal (%s): systemd will not hear READY=1", strerror(errno));
}

static void start_worker(struct master *m, struct worker *w, int64_t now)
{
    pid_t pid;

    int sv[2] = {-1, -1};

    if (w->ctl >= 0)
        close(w->ctl);
    w->ctl = -1;
    if (w->id < m->cfg->workers && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
        gh_log_warn("worker %d: no control socket (reloads will not reach it): %s", w->id, strerror(errno));
    w->ctl = sv[0];
    watch_ctl(w->ctl);
    fflush(NULL); /* nothing buffered may be written twice, by master and child */
    pid = fork();
    if (pid == 0)
        child_main(m, w->id, sv[1]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (pid < 0) {
        gh_log_error("cannot start worker %d: fork: %s; retrying in %d ms", w->id, strerror(errno), RESTART_BACKOFF_MS);
        w->restart_at = now + RESTART_BACKOFF_MS;
        return;
    }
    w->pid = pid;
    w->ready = 0;
    w->restart_at = 0;
    gh_log_debug("worker %d started, pid %d", w->id, (int)pid);
}

static void start_due_workers(struct master *m, int64_t now)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->workers[i].pid == 0 && m->workers[i].restart_at != 0 && m->workers[i].restart_at <= now)
            start_worker(m, &m->workers[i], now);
}

static int live_workers(const struct master *m)
{
    int n = 0;

    for (int i = 0; i < m->nworkers; i++)
        n += m->workers[i].pid != 0;
    return n;
}

static void signal_workers(const struct master *m, int sig)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->workers[i].pid != 0)
            kill(m->workers[i].pid, sig);
}

static struct worker *find_worker(struct master *m, pid_t pid)
{
    for (int i = 0; i < m->nworkers; i++)
        if (m->workers[i].pid == pid)
            return &m->workers[i];
    return NULL;
}

static const char *describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WCOREDUMP(status) ? ", core dumped" : "");
    else
        snprintf(buf, len, "stopped with wait status %#x", (unsigned)status);
    return buf;
}

/*
 * A worker that dies outside a shutdown is restarted at once, unless workers
 * keep dying (a crash on every request, a broken environment): then each
 * restart waits RESTART_BACKOFF_MS so the master does not spin on fork().
 */
static void schedule_restart(struct master *m, struct worker *w, int64_t now)
{
    if (now - m->window_start >= RESTART_WINDOW_MS) {
        m->window_start = now;
        m->window_exits = 0;
    }
    m->window_exits++;
    gh_metrics_worker_restart();
    w->restart_at = now;
    if (m->window_exits > RESTART_BURST) {
        w->restart_at = now + RESTART_BACKOFF_MS;
        if (m->window_exits == RESTART_BURST + 1)
            gh_log_warn("workers exited %d times in %d s; restarting them at most once a second", m->window_exits,
                        RESTART_WINDOW_MS / 1000);
    }
}

/*
 * The worker's connections died with it: its max_connections_per_ip counts go
 * (proxy/peerlimit.h), before another worker takes its slot. A worker that
 * exited cleanly had given them all back already.
 */
static void forget_connections(struct master *m, struct worker *w, pid_t pid)
{
    uint64_t n = gh_peer_forget_worker(m->shared->peers, (uint16_t)w->id);

    if (n > 0)
        gh_log_info("worker %d (pid %d): %llu connections it held no longer count for max_connections_per_ip", w->id,
                    (int)pid, (unsigned long long)n);
}

static void on_worker_exit(struct master *m, struct worker *w, int status, int64_t now)
{
    char how[96];
    pid_t pid = w->pid;

    w->pid = 0;
    describe_exit(status, how, sizeof(how));
    forget_connections(m, w, pid);
    if (w->reloading && !m->stopping) {
        w->reloading = 0;
        w->restart_at = now; /* the prober, stopped to pick up the new configuration */
        return;
    }
    if (m->stopping) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            gh_log_info("worker %d (pid %d) stopped", w->id, (int)pid);
        } else {
            m->unclean = 1;
            gh_log_warn("worker %d (pid %d) %s while stopping", w->id, (int)pid, how);
        }
        return;
    }
    schedule_restart(m, w, now);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
        /* The kernel killed it for a call outside the allow-list: say where the list is, and how to see the call. */
        gh_log_error(
            "worker %d (pid %d) made a system call outside the seccomp allow-list and was killed (SIGSYS): "
            "the list is in src/core/sandbox.c; the kernel's audit line (dmesg: syscall=N) or `strace -f` names the "
            "call; `seccomp off` turns the filter off",
            w->id, (int)pid);
    if (w->restart_at > now)
        gh_log_warn("worker %d (pid %d) %s; restarting it in %d ms", w->id, (int)pid, how, (int)(w->restart_at - now));
    else
        gh_log_warn("worker %d (pid %d) %s; restarting it", w->id, (int)pid, how);
}

/* SIGCHLD is not queued per child: one signal may stand for several exits. */
static void reap_workers(struct master *m, int64_t now)
{
    struct worker *w;
    pid_t pid;
    int status;

    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        w = find_worker(m, pid);
        if (w != NULL)
            on_worker_exit(m, w, status, now);
        else
            gh_upgrade_reaped(&m->up, pid, status);
    }
}

/* ---- shutdown ------------------------------------------------------------------------------- */

/*
 * SIGTERM drains: workers finish what is in flight within the shutdown timeout,
 * and the master waits that plus KILL_GRACE_MS. SIGINT/SIGQUIT stop at once,
 * also in the middle of a drain; a second SIGTERM changes nothing.
 */
static void begin_stop(struct master *m, int sig, int64_t now)
{
    int64_t deadline;

    if (m->stopping && sig == SIGTERM) {
        gh_log_info("SIGTERM received: already stopping");
        return;
    }
    if (sig == SIGTERM) {
        deadline = now + m->cfg->timeouts.shutdown + KILL_GRACE_MS;
        gh_log_info("SIGTERM received: draining connections (deadline %u ms)", (unsigned)m->cfg->timeouts.shutdown);
    } else {
        deadline = now + QUICK_STOP_MS;
        gh_log_info("%s received: stopping now", sig == SIGINT ? "SIGINT" : "SIGQUIT");
    }
    if (!m->stopping || deadline < m->deadline)
        m->deadline = deadline;
    /* After a handover we are no longer the service's main process: STOPPING=1 is the new master's to say. */
    if (!m->stopping && !m->up.handed_over) {
        gh_notify_stopping(sig == SIGTERM ? "draining connections, then stopping" : "stopping");
        gh_upgrade_abandon(&m->up);
    }
    m->stopping = sig;
    for (int i = 0; i < m->nworkers; i++)
        m->workers[i].restart_at = 0;
    /* Once the workers have closed theirs, the socket is gone and new
     * connections are refused at once instead of waiting in a dead queue. */
    close_listeners(m);
    signal_workers(m, sig);
}

static void kill_survivors(struct master *m)
{
    int status;

    for (int i = 0; i < m->nworkers; i++) {
        struct worker *w = &m->workers[i];

        if (w->pid == 0)
            continue;
        gh_log_warn("worker %d (pid %d) did not stop in time; killing it", w->id, (int)w->pid);
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
            ;
        w->pid = 0;
        m->unclean = 1;
    }
}

/* ---- supervision loop ----------------------------------------------------------------------- */

/* How long to sleep in sigtimedwait: until the next restart or the stop deadline; -1 for "until a signal". */
static int64_t next_timeout(const struct master *m, int64_t now)
{
    int64_t at = -1;

    if (m->stopping) {
        at = m->deadline;
    } else {
        if (m->up.child != 0 && !m->up.handed_over)
            at = m->up.deadline;
        for (int i = 0; i < m->nworkers; i++) {
            int64_t r = m->workers[i].restart_at;

            if (m->workers[i].pid == 0 && r != 0 && (at < 0 || r < at))
                at = r;
        }
    }
    if (at < 0)
        return -1;
    return at > now ? at - now : 0;
}

/* si: who sent it (a worker saying it is ready, the new master of an upgrade saying it serves). */
static int wait_signal(const sigset_t *sigs, int64_t timeout_ms, siginfo_t *si)
{
    struct timespec ts;
    int sig;

    memset(si, 0, sizeof(*si));
    if (timeout_ms < 0) {
        sig = sigwaitinfo(sigs, si);
    } else {
        ts.tv_sec = (time_t)(timeout_ms / 1000);
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        sig = sigtimedwait(sigs, si, &ts);
    }
    return sig > 0 ? sig : 0; /* 0: timeout or EINTR, both just mean "look again" */
}

/* ---- service manager ------------------------------------------------------------------------- */

/* READY=1 and what runs: at start once every worker accepts, and at the end of each reload. */
static void notify_ready(const struct master *m)
{
    char extra[96] = "";

    if (!m->ready)
        return; /* a SIGHUP before the workers accept: the first READY=1 is still to come */
    if (m->reloads > 0)
        snprintf(extra, sizeof(extra), "%u reload%s, the last %s", m->reloads, m->reloads == 1 ? "" : "s",
                 m->reload_failed ? "failed (the previous configuration runs)" : "ok");
    gh_notify_ready(m->cfg, extra[0] ? extra : NULL);
}

/* ---- reload ---------------------------------------------------------------------------------- */

/* The sockets for the new listeners: the running one where the address stays, a new one where it is new. */
static int *bind_listeners(struct master *m, const gh_config *cfg)
{
    int *fds = malloc((cfg->nlisteners ? cfg->nlisteners : 1) * sizeof(int));

    if (fds == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        fds[i] = -1;
        for (size_t k = 0; k < m->cfg->nlisteners; k++)
            if (m->listen_fds[k] >= 0 && strcmp(m->cfg->listeners[k].addr.text, cfg->listeners[i].addr.text) == 0) {
                fds[i] = dup(m->listen_fds[k]);
                break;
            }
        if (fds[i] < 0)
            fds[i] = open_listener(&cfg->listeners[i].addr);
        if (fds[i] < 0) {
            close_fds(fds, i);
            free(fds);
            return NULL;
        }
    }
    return fds;
}

static void send_reload(struct worker *w, int bundle, const int *fds, const gh_config *cfg, const struct log_fds *l)
{
    gh_reload_msg rm;
    char cbuf[CMSG_SPACE(sizeof(int) * (GH_MAX_LISTENERS + 1 + GH_MAX_LOG_FDS))];
    struct iovec iov = {&rm, sizeof(rm)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    size_t n = cfg->nlisteners; /* <= GH_MAX_LISTENERS: gh_runtime_new checked it */
    struct cmsghdr *c;

    memset(&rm, 0, sizeof(rm));
    rm.magic = GH_RELOAD_MAGIC;
    rm.nlisteners = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        snprintf(rm.listeners[i].addr, sizeof(rm.listeners[i].addr), "%s", cfg->listeners[i].addr.text);
        rm.listeners[i].tls = (uint8_t)(cfg->listeners[i].tls != 0);
    }
    memset(cbuf, 0, sizeof(cbuf));
    msg.msg_control = cbuf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (n + 1 + l->n));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (n + 1 + l->n));
    memcpy(CMSG_DATA(c), &bundle, sizeof(int));
    if (n > 0)
        memcpy(CMSG_DATA(c) + sizeof(int), fds, sizeof(int) * n);
    put_logs(&rm, l, CMSG_DATA(c) + sizeof(int) * (n + 1));
    if (sendmsg(w->ctl, &msg, MSG_NOSIGNAL) < 0)
        /* Nonblocking: a stuck worker must not stall the master; it keeps its configuration. */
        gh_log_error("worker %d: cannot send the reload (%s); it keeps the previous configuration", w->id,
                     strerror(errno));
}

/*
 * SIGUSR1 (log rotation, as nginx): the files are opened again, here, and
 * each worker gets the new descriptors and reopens its logs on them; nothing
 * else changes. If one cannot be opened, everyone keeps the old ones.
 */
static void reopen_logs(struct master *m)
{
    char cbuf[CMSG_SPACE(sizeof(int) * GH_MAX_LOG_FDS)];
    struct log_fds l;
    gh_reload_msg rm;
    struct iovec iov = {&rm, sizeof(rm)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    struct cmsghdr *c;

    gh_log_info("SIGUSR1 received: reopening the access logs");
    if (open_access_logs(m->cfg, &l) < 0) {
        gh_log_error("SIGUSR1: the access logs stay as they were");
        return;
    }
    memset(&rm, 0, sizeof(rm));
    memset(cbuf, 0, sizeof(cbuf));
    rm.magic = GH_REOPEN_MAGIC;
    if (l.n > 0) {
        msg.msg_control = cbuf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * l.n);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * l.n);
        put_logs(&rm, &l, CMSG_DATA(c));
    }
    for (int i = 0; i < m->nworkers; i++) {
        struct worker *w = &m->workers[i];

        if (w->pid != 0 && w->id < m->cfg->workers && w->ctl >= 0 && sendmsg(w->ctl, &msg, MSG_NOSIGNAL) < 0)
            gh_log_error("worker %d: cannot send the reopened access logs (%s)", w->id, strerror(errno));
    }
    keep_logs(m->cfg, &l);
}

static int same_name(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* The sandbox (core/sandbox.h) is set when a process starts: the workers keep running as they are. */
static void warn_restart_only(const gh_config *old, const gh_config *cfg)
{
    if (!same_name(old->user, cfg->user) || !same_name(old->group, cfg->group) || !old->seccomp != !cfg->seccomp)
        gh_log_warn("%s: user, group and seccomp change at a restart, not a reload: the workers and the prober "
                    "keep the ones gatehouse started with",
                    cfg->path);
}

/*
 * SIGHUP (DESIGN.md, Reload): the new file is loaded and checked here first
 * (certificates included); if anything is wrong, nothing changes and the log
 * says FILE:LINE: why. Otherwise the workers switch to it in place, keeping
 * their connections, and the prober restarts with the new targets.
 */
static void reload(struct master *m)
{
    char err[1024] = "";
    const gh_config *cfg;
    gh_runtime *rt = NULL;
    gh_bundle *b;
    struct log_fds logs = {.n = 0};
    int *fds = NULL, bfd = -1, ok = 0;

    if (m->config_path == NULL) {
        gh_log_warn("SIGHUP received: no configuration file (-c) to reload");
        return;
    }
    gh_log_info("SIGHUP received: reloading %s", m->config_path);
    if (m->ready)
        gh_notify_reloading(); /* before READY=1, systemd is still waiting for the start */
    m->reloads++;
    m->reload_failed = 1; /* until it succeeds */
    /*
     * Everything the load reads and resolves is recorded: the workers load the
     * same bytes and addresses from the bundle, without a file or DNS.
     * The number of workers changes with a restart, not a reload.
     */
    if ((b = gh_bundle_recorder()) == NULL) {
        gh_log_error("reload failed, keeping the running configuration: out of memory");
        return;
    }
    if ((rt = gh_runtime_load(m->config_path, gh_bundle_source(b), m->shared, m->cfg->workers, m->rt, err,
                              sizeof(err))) == NULL) {
        gh_log_error("reload failed, keeping the running configuration: %s", err);
        goto out;
    }
    cfg = gh_runtime_config(rt);
    warn_restart_only(m->cfg, cfg);
    if (open_access_logs(cfg, &logs) < 0) {
        gh_log_error("reload failed, keeping the running configuration: cannot open the access log %s",
                     cfg->access_log);
        goto out;
    }
    if ((bfd = gh_bundle_memfd(b)) < 0) {
        gh_log_error("reload failed, keeping the running configuration: cannot pass it to the workers: %s",
                     strerror(errno));
        goto out;
    }
    if ((fds = bind_listeners(m, cfg)) == NULL) {
        gh_log_error("reload failed, keeping the running configuration");
        goto out;
    }
    /* Before any worker or the new prober hears of it: a slot that changed hands starts clean, and what the
     * old prober or an old generation still writes by the old numbers is refused (health/state.h). */
    gh_runtime_claim_slots(rt);
    for (int i = 0; i < m->nworkers; i++) {
        struct worker *w = &m->workers[i];
        if (w->pid == 0)
            continue;
        if (w->id >= m->cfg->workers) {
            w->reloading = 1;
            kill(w->pid, SIGTERM);
        } else if (w->ctl >= 0) {
            send_reload(w, bfd, fds, cfg, &logs);
        }
    }
    close_listeners(m);
    free(m->listen_fds);
    m->listen_fds = fds;
    gh_admin_check_reload(&m->cfg->admin, &cfg->admin);
    gh_runtime_free(m->rt);
    m->rt = rt;
    m->cfg = cfg;
    rt = NULL;
    keep_logs(cfg, &logs); /* for workers started from now on */
    m->reload_failed = 0;
    ok = 1;
    gh_log_info("reloaded %s: %zu listener%s, %zu site%s, %zu pool%s (%zu bytes to the workers)", m->config_path,
                cfg->nlisteners, cfg->nlisteners == 1 ? "" : "s", cfg->nsites, cfg->nsites == 1 ? "" : "s", cfg->npools,
                cfg->npools == 1 ? "" : "s", gh_bundle_size(b));
out:
    gh_metrics_reload(ok);
    if (bfd >= 0)
        close(bfd);
    close_logs(&logs);
    gh_runtime_free(rt);
    gh_bundle_free(b);
    notify_ready(m);
}

/* Reads what a worker sent on its control socket: GH_WORKER_READY_MSG once it accepts. */
static void read_ctl(struct worker *w)
{
    char buf[16];
    ssize_t n;

    while (w->ctl >= 0 && (n = recv(w->ctl, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        if (buf[0] == GH_WORKER_READY_MSG[0])
            w->ready = 1;
}

/*
 * GH_SIG_WORKER_READY (si_fd: the control socket that became readable), or
 * SIGIO when the real-time queue overflowed (then every socket is read): once
 * every worker accepts, the service is ready (and an upgrade hands over).
 */
static void on_worker_ready(struct master *m, int sig, int fd)
{
    pid_t old;

    for (int i = 0; i < m->nworkers; i++)
        if (m->workers[i].ctl >= 0 && (sig == SIGIO || m->workers[i].ctl == fd))
            read_ctl(&m->workers[i]);
    if (m->ready)
        return;
    for (int i = 0; i < m->cfg->workers && i < m->nworkers; i++)
        if (!m->workers[i].ready)
            return;
    m->ready = 1;
    notify_ready(m);
    old = gh_upgrade_parent();
    /* Only the process that started us, still there: a recycled pid must never get the signal. */
    if (old != 0 && getppid() == old) {
        gh_log_info("binary upgrade: %d worker%s accepting; telling the old master (pid %d) to drain", m->cfg->workers,
                    m->cfg->workers == 1 ? "" : "s", (int)old);
        kill(old, SIGTERM);
    }
}

static void handle_signal(struct master *m, int sig, const siginfo_t *si, int64_t now)
{
    if (sig == GH_SIG_WORKER_READY || sig == SIGIO) {
        on_worker_ready(m, sig, si->si_fd);
        return;
    }
    switch (sig) {
    case SIGCHLD:
        reap_workers(m, now);
        break;
    case SIGTERM:
        gh_upgrade_handover(&m->up, si->si_pid, m->cfg); /* the new master serves: draining is all there is to do */
        begin_stop(m, sig, now);
        break;
    case SIGINT:
    case SIGQUIT:
        begin_stop(m, sig, now);
        break;
    case SIGHUP:
        if (!m->stopping)
            reload(m);
        break;
    case SIGUSR1:
        /* log rotation (as nginx): each worker reopens its access logs; nothing else changes */
        reopen_logs(m);
        break;
    case SIGUSR2:
        if (m->stopping)
            gh_log_warn("SIGUSR2 received while stopping: no binary upgrade");
        else
            gh_upgrade_start(&m->up, m->cfg, m->listen_fds, now);
        break;
    default:
        break;
    }
}

static int supervise(struct master *m)
{
    siginfo_t si;
    int64_t now;
    int sig;

    for (;;) {
        now = now_ms();
        if (!m->stopping) {
            gh_upgrade_check_deadline(&m->up, now);
            start_due_workers(m, now);
        } else if (live_workers(m) == 0) {
            break;
        } else if (now >= m->deadline) {
            kill_survivors(m);
            break;
        }
        sig = wait_signal(&m->sigs, next_timeout(m, now), &si);
        /* Read the clock after the wait: the sleep may have lasted days, and deadlines count from now. */
        handle_signal(m, sig, &si, now_ms());
    }
    gh_log_info("gatehouse stopped%s", m->unclean ? " (not cleanly)" : "");
    return m->unclean ? 1 : 0;
}

static int run_workers(struct master *m)
{
    int64_t now = now_ms();

    m->workers = calloc((size_t)m->nworkers, sizeof(*m->workers));
    if (m->workers == NULL) {
        gh_cli_error("out of memory");
        return 1;
    }
    for (int i = 0; i < m->nworkers; i++) {
        m->workers[i].id = i;
        m->workers[i].ctl = -1;
        m->workers[i].restart_at = now; /* due now: the loop's first pass starts them */
    }
    m->window_start = now;
    return supervise(m);
}

int gh_master_run(gh_runtime *rt, gh_shared *shared, const char *config_path)
{
    struct master m;
    const gh_config *cfg = gh_runtime_config(rt);
    struct log_fds logs;
    int rc = 1;

    memset(&m, 0, sizeof(m));
    m.rt = rt;
    m.cfg = cfg;
    m.shared = shared;
    m.health = shared->health;
    m.config_path = config_path;
    /* The prober is supervised like a worker; with a file it always runs, as a reload may add checks. */
    m.nworkers = cfg->workers + (config_path != NULL || gh_runtime_has_probes(rt) ? 1 : 0);
    m.self = getpid();
    if (open_access_logs(cfg, &logs) < 0)
        goto out;
    gh_metrics_init(cfg->workers); /* before the claim below and the first fork */
    keep_logs(cfg, &logs);
    /* A peer that closes early must cost an EPIPE on that connection, not the process. */
    signal(SIGPIPE, SIG_IGN);
    if ((m.listen_fds = malloc((cfg->nlisteners ? cfg->nlisteners : 1) * sizeof(int))) == NULL)
        goto out;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        m.listen_fds[i] = -1;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        /* After a binary upgrade, the old master's socket: the same accept queue, nothing refused. */
        if ((m.listen_fds[i] = gh_upgrade_take(cfg->listeners[i].addr.text)) >= 0)
            continue;
        if ((m.listen_fds[i] = open_listener(&cfg->listeners[i].addr)) < 0)
            goto out;
    }
    if (gh_admin_bind(&cfg->admin, open_admin) < 0)
        goto out;
    gh_upgrade_close_unused();
    log_conn_limit(cfg, raise_nofile_limit());
    gh_runtime_claim_slots(rt);
    /* Blocked before the first fork: the workers inherit the mask, and no exit goes unseen. */
    sigemptyset(&m.sigs);
    sigaddset(&m.sigs, SIGTERM);
    sigaddset(&m.sigs, SIGINT);
    sigaddset(&m.sigs, SIGQUIT);
    sigaddset(&m.sigs, SIGHUP);
    sigaddset(&m.sigs, SIGUSR1);
    sigaddset(&m.sigs, SIGCHLD);
    sigaddset(&m.sigs, SIGUSR2);
    sigaddset(&m.sigs, GH_SIG_WORKER_READY);
    sigaddset(&m.sigs, SIGIO);
    sigprocmask(SIG_BLOCK, &m.sigs, NULL);
    log_started(cfg);
    gh_sandbox_log_policy();
    rc = run_workers(&m);
out:
    for (int i = 0; m.workers != NULL && i < m.nworkers; i++)
        if (m.workers[i].ctl >= 0)
            close(m.workers[i].ctl);
    free(m.workers);
    close_listeners(&m);
    free(m.listen_fds);
    gh_runtime_free(m.rt);
    gh_shared_dispose(shared);
    return rc;
}
