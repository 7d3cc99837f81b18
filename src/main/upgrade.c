#include "main/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "admin/admin.h"
#include "core/log.h"
#include "main/notify.h"
#include "tls/tickets.h"
#include "proxy/runtime.h"

#define UPGRADE_TIMEOUT_MS 60000 /* to load the configuration and start the workers; then it is stopped */
#define MAX_INHERITED      (GH_MAX_LISTENERS + 1) /* and the admin listener */

static char **saved_argv;
static char exe_path[PATH_MAX]; /* "": unknown, no upgrade possible */

static struct inherited {
    int fd; /* -1 once taken or closed */
    char addr[64];
} inherited[MAX_INHERITED];
static size_t ninherited;
static pid_t parent_pid;

void gh_upgrade_save_argv(int argc, char **argv)
{
    ssize_t n;

    /*
     * A copy: setting the process title (ps shows "gatehouse: master") writes
     * over the memory argv points into, and the new binary needs the arguments
     * as they were. Without memory, no upgrade (saved_argv stays NULL).
     */
    if ((saved_argv = calloc((size_t)argc + 1, sizeof(char *))) == NULL)
        return;
    for (int i = 0; i < argc; i++)
        if ((saved_argv[i] = strdup(argv[i])) == NULL) {
            while (i-- > 0)
                free(saved_argv[i]);
            free(saved_argv);
            saved_argv = NULL;
            return;
        }
    /*
     * Read now, before any upgrade replaced the file: the link names the path
     * this binary was started from. A package manager renames the new binary
     * onto that path, so exec'ing it later starts the new version.
     */
    n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
    exe_path[n > 0 ? n : 0] = '\0';
}

/* Parses digits up to `end` into an fd that is open here; -1 when not. */
static int parse_fd(const char *p, const char *end)
{
    long fd = 0;

    if (p == end)
        return -1;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || fd > 65535)
            return -1;
        fd = fd * 10 + (*p - '0');
    }
    return fd >= 3 && fcntl((int)fd, F_GETFD) >= 0 ? (int)fd : -1;
}

/* Parses "FD=ADDRESS" or "tickets=FD"; returns 0 or -1. */
static int parse_entry(const char *s, size_t len)
{
    const char *eq = memchr(s, '=', len);
    int fd;

    if (len > 8 && memcmp(s, "tickets=", 8) == 0) {
        int tfd = parse_fd(s + 8, s + len);

        if (tfd < 0)
            return -1;
        fcntl(tfd, F_SETFD, FD_CLOEXEC);
        gh_tickets_inherit(tfd); /* mapped by gh_shared_init, if it is of our layout */
        return 0;
    }
    if (eq == NULL || (size_t)(s + len - eq - 1) >= sizeof(inherited[0].addr) || ninherited == MAX_INHERITED ||
        (fd = parse_fd(s, eq)) < 0)
        return -1;
    inherited[ninherited].fd = fd;
    memcpy(inherited[ninherited].addr, eq + 1, (size_t)(s + len - eq - 1));
    inherited[ninherited].addr[s + len - eq - 1] = '\0';
    ninherited++;
    return 0;
}

/* A listening TCP socket, or not to be trusted as one. */
static int is_listener(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || v != 1)
        return 0;
    len = sizeof(v);
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) == 0 && v == SOCK_STREAM;
}

void gh_upgrade_inherit(void)
{
    const char *env = getenv(GH_UPGRADE_ENV), *p, *end;
    size_t valid = 0;
    long pid = 0;

    if (env == NULL)
        return;
    for (p = env; *p >= '0' && *p <= '9' && pid <= INT_MAX / 10; p++)
        pid = pid * 10 + (*p - '0');
    if (pid > 1 && (*p == ';' || *p == '\0'))
        parent_pid = (pid_t)pid;
    while (parent_pid != 0 && *p == ';') {
        p++;
        end = strchr(p, ';');
        if (end == NULL)
            end = p + strlen(p);
        if (parse_entry(p, (size_t)(end - p)) < 0)
            gh_log_warn("%s: ignoring \"%.*s\"", GH_UPGRADE_ENV, (int)(end - p), p);
        p = end;
    }
    for (size_t i = 0; i < ninherited; i++) {
        fcntl(inherited[i].fd, F_SETFD, FD_CLOEXEC); /* ours now: not for the workers' or a later exec */
        if (!is_listener(inherited[i].fd)) {
            gh_log_warn("%s: descriptor %d is not a listening socket: ignored", GH_UPGRADE_ENV, inherited[i].fd);
            inherited[i].fd = -1; /* not closed: it is not what we were told, so not ours to close */
        }
        valid += inherited[i].fd >= 0;
    }
    if (parent_pid == 0) {
        gh_log_warn("%s: malformed (\"%.40s\"): starting without the old master's sockets", GH_UPGRADE_ENV, env);
    } else if (valid == 0) {
        /*
         * A real old master passes at least one listening socket. Without one,
         * the variable was left over or set by hand: the "old master" it names
         * may be a shell, which must not get our SIGTERM, and no descriptor it
         * names is ours to map or close.
         */
        gh_log_warn("%s names pid %d but passes no listening socket: ignored", GH_UPGRADE_ENV, (int)parent_pid);
        parent_pid = 0;
        gh_tickets_inherit(-1);
    } else {
        gh_log_info("binary upgrade: new master, taking over %zu listening socket%s from pid %d", valid,
                    valid == 1 ? "" : "s", (int)parent_pid);
    }
    /* Our own later upgrade passes its own list; a stale one must not reach it. */
    unsetenv(GH_UPGRADE_ENV);
}

pid_t gh_upgrade_parent(void)
{
    return parent_pid;
}

int gh_upgrade_take(const char *addr_text)
{
    for (size_t i = 0; i < ninherited; i++)
        if (inherited[i].fd >= 0 && strcmp(inherited[i].addr, addr_text) == 0) {
            int fd = inherited[i].fd;

            inherited[i].fd = -1;
            return fd;
        }
    return -1;
}

void gh_upgrade_close_unused(void)
{
    for (size_t i = 0; i < ninherited; i++)
        if (inherited[i].fd >= 0) {
            gh_log_info("binary upgrade: %s is no longer in the configuration: closing it", inherited[i].addr);
            close(inherited[i].fd);
            inherited[i].fd = -1;
        }
}

/* "OLDPID;FD=ADDR;..." into buf; -1 when it does not fit. */
static int format_env(char *buf, size_t len, const gh_config *cfg, const int *fds)
{
    size_t n = (size_t)snprintf(buf, len, "%s=%d", GH_UPGRADE_ENV, (int)getpid());

    for (size_t i = 0; i < cfg->nlisteners && n < len; i++)
        if (fds[i] >= 0)
            n += (size_t)snprintf(buf + n, len - n, ";%d=%s", fds[i], cfg->listeners[i].addr.text);
    if (gh_admin_listen_fd() >= 0 && n < len) /* the admin listener (admin/admin.h) goes on too */
        n += (size_t)snprintf(buf + n, len - n, ";%d=admin %s", gh_admin_listen_fd(), gh_admin_listen_addr());
    if (gh_tickets_region_fd() >= 0 && n < len)
        n += (size_t)snprintf(buf + n, len - n, ";tickets=%d", gh_tickets_region_fd());
    return n < len ? 0 : -1;
}

/* In the forked child: never returns. */
static void exec_new(char *env, const gh_config *cfg, const int *fds)
{
    sigset_t none;

    /* The new binary starts as from a shell: no blocked signals, default dispositions. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (fds[i] >= 0)
            fcntl(fds[i], F_SETFD, 0); /* with the ticket keys, the only descriptors that cross exec, besides 0-2 */
    if (gh_tickets_region_fd() >= 0)
        fcntl(gh_tickets_region_fd(), F_SETFD, 0);
    if (gh_admin_listen_fd() >= 0)
        fcntl(gh_admin_listen_fd(), F_SETFD, 0);
    putenv(env);
    execv(exe_path, saved_argv);
    gh_log_error("binary upgrade: cannot run %s: %s", exe_path, strerror(errno));
    _exit(127);
}

int gh_upgrade_start(gh_upgrade *u, const gh_config *cfg, const int *fds, int64_t now)
{
    static char env[sizeof(GH_UPGRADE_ENV) + 16 + (GH_MAX_LISTENERS + 1) * 80];
    pid_t pid;

    if (u->child != 0) {
        gh_log_warn("SIGUSR2 received: a binary upgrade is already under way (new master pid %d)", (int)u->child);
        return -1;
    }
    if (exe_path[0] == '\0' || saved_argv == NULL) {
        gh_log_error("SIGUSR2 received: binary upgrade impossible: the path of the binary is unknown");
        return -1;
    }
    if (format_env(env, sizeof(env), cfg, fds) < 0) {
        gh_log_error("SIGUSR2 received: binary upgrade impossible: too many listeners to pass");
        return -1;
    }
    gh_log_info("SIGUSR2 received: binary upgrade: starting %s", exe_path);
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        gh_log_error("binary upgrade: fork: %s; still serving", strerror(errno));
        return -1;
    }
    if (pid == 0)
        exec_new(env, cfg, fds);
    u->child = pid;
    u->deadline = now + UPGRADE_TIMEOUT_MS;
    u->handed_over = 0;
    gh_log_info("binary upgrade: new master is pid %d; this one serves until it takes over", (int)pid);
    return 0;
}

int gh_upgrade_reaped(gh_upgrade *u, pid_t pid, int status)
{
    if (u->child == 0 || pid != u->child)
        return 0;
    u->child = 0;
    if (u->handed_over)
        return 1; /* it stopped after taking over: not ours to report */
    if (WIFEXITED(status))
        gh_log_error("binary upgrade failed: the new master exited with status %d before taking over; "
                     "still serving (its log lines above say why)",
                     WEXITSTATUS(status));
    else
        gh_log_error("binary upgrade failed: the new master was killed by signal %d before taking over; still serving",
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    gh_notify_send("STATUS=binary upgrade failed; the old binary still serves");
    return 1;
}

int gh_upgrade_handover(gh_upgrade *u, pid_t sender, const gh_config *cfg)
{
    char status[160];

    if (u->child == 0 || sender != u->child || u->handed_over)
        return 0;
    u->handed_over = 1;
    gh_log_info("binary upgrade: the new master (pid %d) serves; draining this one's workers", (int)sender);
    snprintf(status, sizeof(status), "binary upgrade: master pid %d (was %d)", (int)sender, (int)getpid());
    gh_notify_mainpid(sender, cfg, status);
    return 1;
}

void gh_upgrade_check_deadline(gh_upgrade *u, int64_t now)
{
    if (u->child == 0 || u->handed_over || now < u->deadline)
        return;
    gh_log_error("binary upgrade: the new master (pid %d) did not take over within %d s; stopping it", (int)u->child,
                 UPGRADE_TIMEOUT_MS / 1000);
    kill(u->child, SIGQUIT);
    u->deadline = now + UPGRADE_TIMEOUT_MS; /* and again later, should SIGQUIT be lost */
}

void gh_upgrade_abandon(gh_upgrade *u)
{
    if (u->child != 0 && !u->handed_over) {
        gh_log_info("stopping the new master (pid %d) of the unfinished binary upgrade", (int)u->child);
        kill(u->child, SIGTERM);
    }
}
