/*
 * sandbox: privilege drop and the seccomp allow-list of the workers and the
 * prober (see sandbox.h).
 */
#include "core/sandbox.h"

#include <errno.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "core/log.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_ASAN 1
#endif
#endif

/* ---- the allow-list ------------------------------------------------------------------------ */

/*
 * Every system call a worker or the prober may make once locked; anything
 * else kills the process (SIGSYS) and the master says so in its log. Adding a
 * call is one line in its group. Calls this architecture does not have
 * (SCMP_SYS gives a negative pseudo number) are skipped, so the list stays
 * portable. Arguments are checked in arg_rules below where one call does
 * very different things (ioctl, socket families).
 */
static const int allowed[] = {
    /* the event loop (core/loop.c) and the signals it reads */
    SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_pwait2),
    SCMP_SYS(epoll_ctl),
    SCMP_SYS(poll),
    SCMP_SYS(ppoll),
    SCMP_SYS(eventfd2),
    SCMP_SYS(timerfd_create),
    SCMP_SYS(timerfd_settime),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigtimedwait),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(restart_syscall),

    /* reading and writing descriptors: connections, the access log, the master's control socket */
    SCMP_SYS(read),
    SCMP_SYS(readv),
    SCMP_SYS(write),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(close),
    SCMP_SYS(fcntl),
    SCMP_SYS(fstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(statx),
    SCMP_SYS(lseek),

    /* sockets: accept on inherited listeners, connect upstream, health probes, a resolver (c-ares or
     * getaddrinfo in the prober: UDP/TCP to DNS, netlink for AI_ADDRCONFIG, nscd's unix socket) */
    SCMP_SYS(accept4),
    SCMP_SYS(connect),
    SCMP_SYS(bind),
    SCMP_SYS(shutdown),
    SCMP_SYS(getsockname),
    SCMP_SYS(getpeername),
    SCMP_SYS(setsockopt),
    SCMP_SYS(getsockopt),
    SCMP_SYS(sendto),
    SCMP_SYS(recvfrom),
    SCMP_SYS(sendmsg),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendmmsg),
    SCMP_SYS(recvmmsg),

    /* memory: malloc, OpenSSL, the reload bundle (a sealed memfd, mapped), buffer pools, malloc_trim */
    SCMP_SYS(brk),
    SCMP_SYS(mmap),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(madvise),
    SCMP_SYS(mprotect),

    /* files, as the unprivileged account: a reload parses `workers auto` (sysconf reads /sys), the
     * prober's resolver reads /etc/hosts and /etc/resolv.conf; permissions decide the rest */
    SCMP_SYS(openat),
    SCMP_SYS(open),
    SCMP_SYS(access),
    SCMP_SYS(faccessat),
    SCMP_SYS(faccessat2),
    SCMP_SYS(readlink),
    SCMP_SYS(getcwd),

    /* time, randomness, locks: log stamps, timers, OpenSSL's DRBG, glibc and OpenSSL internals */
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_getres),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(time),
    SCMP_SYS(nanosleep),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(getrandom),
    SCMP_SYS(futex),
    SCMP_SYS(sched_yield),

    /* who and where we are: logs, limits (max_connections from RLIMIT_NOFILE at a reload), qsort's
     * sysinfo, uname for the resolver */
    SCMP_SYS(getpid),
    SCMP_SYS(gettid),
    SCMP_SYS(getppid),
    SCMP_SYS(getuid),
    SCMP_SYS(geteuid),
    SCMP_SYS(getgid),
    SCMP_SYS(getegid),
    SCMP_SYS(getrlimit),
    SCMP_SYS(prlimit64),
    SCMP_SYS(sysinfo),
    SCMP_SYS(uname),
    SCMP_SYS(sched_getaffinity),

    /* leaving: exit(), and abort() (an assertion must end in SIGABRT and its core, not in SIGSYS) */
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(tgkill),

#ifdef SANDBOX_ASAN
    /* AddressSanitizer builds only (make asan): LeakSanitizer stops the process at exit with a
     * ptrace-ing clone of itself, reports read /proc/self/maps and may start llvm-symbolizer */
    SCMP_SYS(clone),
    SCMP_SYS(clone3),
    SCMP_SYS(fork),
    SCMP_SYS(vfork),
    SCMP_SYS(execve),
    SCMP_SYS(wait4),
    SCMP_SYS(waitid),
    SCMP_SYS(ptrace),
    SCMP_SYS(prctl),
    SCMP_SYS(kill),
    SCMP_SYS(getdents),
    SCMP_SYS(getdents64),
    SCMP_SYS(readlinkat),
    SCMP_SYS(pipe2),
    SCMP_SYS(dup),
    SCMP_SYS(dup2),
    SCMP_SYS(dup3),
    SCMP_SYS(setrlimit),
    SCMP_SYS(process_vm_readv),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(rseq),
    SCMP_SYS(arch_prctl),
    SCMP_SYS(setpgid),
    SCMP_SYS(getpgid),
    SCMP_SYS(getsid),
    SCMP_SYS(set_tid_address),
    SCMP_SYS(munlock),
    SCMP_SYS(mlock),
    SCMP_SYS(msync),
    SCMP_SYS(statfs),
    SCMP_SYS(fstatfs),
    SCMP_SYS(lstat),
    SCMP_SYS(stat),
    SCMP_SYS(unlink),
    SCMP_SYS(unlinkat),
#endif
};

/* Calls allowed only with one argument equal to a value (one line per value). */
static const struct arg_rule {
    int nr;
    unsigned arg;
    uint64_t value;
} arg_rules[] = {
    /* ioctl drives every device driver: only FIONREAD (resolvers), FIONBIO and isatty()'s TCGETS */
    {SCMP_SYS(ioctl), 1, FIONREAD},
    {SCMP_SYS(ioctl), 1, FIONBIO},
    {SCMP_SYS(ioctl), 1, TCGETS},
    /* sockets of the families a proxy and its resolver use: no AF_PACKET, AF_ALG, AF_VSOCK... */
    {SCMP_SYS(socket), 0, AF_INET},
    {SCMP_SYS(socket), 0, AF_INET6},
    {SCMP_SYS(socket), 0, AF_UNIX},
    {SCMP_SYS(socket), 0, AF_NETLINK},
};

/* ---- policy, set by the master ------------------------------------------------------------- */

static gh_sandbox_creds policy_creds;
static int policy_seccomp;
static int locked;

void gh_sandbox_set_policy(const gh_sandbox_creds *creds, int seccomp)
{
    policy_creds = *creds;
    policy_seccomp = seccomp;
}

void gh_sandbox_log_policy(void)
{
    const gh_sandbox_creds *c = &policy_creds;

    gh_log_info("workers and prober: user %s, group %s%s, no_new_privs, seccomp %s", c->user, c->group,
                c->change ? "" : " (not started as root: the master's own)", policy_seccomp ? "on" : "off");
}

int gh_sandbox_locked(void)
{
    return locked;
}

/* ---- the account --------------------------------------------------------------------------- */

int gh_sandbox_resolve(const char *user, const char *group, gh_sandbox_creds *out, const char **note, char *why,
                       size_t whylen)
{
    const struct passwd *pw;
    const struct group *gr;

    memset(out, 0, sizeof(*out));
    *note = NULL;
    out->uid = geteuid();
    out->gid = getegid();
    if (geteuid() != 0) {
        pw = getpwuid(out->uid);
        if ((user != NULL && (pw == NULL || strcmp(pw->pw_name, user) != 0)) || group != NULL)
            *note = "user and group are ignored: gatehouse did not start as root, so the workers keep its account";
        snprintf(out->user, sizeof(out->user), "%s", pw != NULL ? pw->pw_name : "?");
        snprintf(out->group, sizeof(out->group), "%u", (unsigned)out->gid);
        return 0;
    }
    /* Started as root with no `user`: workers as root would hand any exploit the machine (nginx's default). */
    if (user == NULL)
        user = "nobody";
    errno = 0;
    if ((pw = getpwnam(user)) == NULL) {
        snprintf(why, whylen, "no user \"%s\" on this system%s", user,
                 strcmp(user, "nobody") == 0 ? " (name one with `user NAME`, or `user root` to keep root)" : "");
        return -1;
    }
    out->uid = pw->pw_uid;
    out->gid = pw->pw_gid;
    snprintf(out->user, sizeof(out->user), "%s", user);
    if (group != NULL) {
        if ((gr = getgrnam(group)) == NULL) {
            snprintf(why, whylen, "no group \"%s\" on this system", group);
            return -2;
        }
        out->gid = gr->gr_gid;
        snprintf(out->group, sizeof(out->group), "%s", group);
    } else if ((gr = getgrgid(out->gid)) != NULL) {
        snprintf(out->group, sizeof(out->group), "%s", gr->gr_name);
    } else {
        snprintf(out->group, sizeof(out->group), "%u", (unsigned)out->gid);
    }
    out->change = 1;
    return 0;
}

/* Reads the credentials back: all three ids of each kind, and the one supplementary group. */
static int creds_are(uid_t uid, gid_t gid)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg, groups[2];
    int n;

    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
        return 0;
    n = getgroups(2, groups);
    return ru == uid && eu == uid && su == uid && rg == gid && eg == gid && sg == gid && n == 1 && groups[0] == gid;
}

int gh_sandbox_drop(const char *who)
{
    const gh_sandbox_creds *c = &policy_creds;
    const char *step = NULL;

    if (c->change) {
        /*
         * Groups first: once the uid is not root, setgroups and setgid are no
         * longer allowed, and root's supplementary groups (often including one
         * that reads /etc/ssl/private) would stay. Only the one group: the
         * user's other groups may grant what the workers must not have.
         */
        if (setgroups(1, &c->gid) < 0)
            step = "setgroups";
        else if (setresgid(c->gid, c->gid, c->gid) < 0)
            step = "setresgid";
        else if (setresuid(c->uid, c->uid, c->uid) < 0)
            step = "setresuid";
        else if (!creds_are(c->uid, c->gid))
            step = "checking the new credentials";
        else if (c->uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
            errno = EPERM;
            step = "root could be regained";
        }
        if (step != NULL) {
            gh_log_error("%s: cannot run as user %s, group %s: %s: %s", who, c->user, c->group, step, strerror(errno));
            return -1;
        }
    }
    /* No set-uid binary or file capability can give back what was dropped (nor is one ever run). */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        gh_log_error("%s: prctl(PR_SET_NO_NEW_PRIVS): %s", who, strerror(errno));
        return -1;
    }
    /* Private keys live in this process's memory: no core file, no ptrace from another process of the
     * account (`nobody` may run other daemons). The kernel does this on a uid change; not as non-root. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
        gh_log_error("%s: prctl(PR_SET_DUMPABLE): %s", who, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- the filter ---------------------------------------------------------------------------- */

static int build(scmp_filter_ctx ctx, const char **what)
{
    int rc;

    /* Another ABI (i386 or x32 calls from an x86_64 process) would walk around the list. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0) {
        *what = "bad-architecture action";
        return rc;
    }
    /* A binary tree: the busiest calls (read, write, epoll_wait) cost a few comparisons, not a scan. */
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
        if (allowed[i] >= 0 && (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0)) < 0) {
            *what = "a rule";
            return rc;
        }
    for (size_t i = 0; i < sizeof(arg_rules) / sizeof(arg_rules[0]); i++) {
        const struct arg_rule *r = &arg_rules[i];

        if (r->nr >= 0 &&
            (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, r->nr, 1, SCMP_CMP(r->arg, SCMP_CMP_EQ, r->value))) < 0) {
            *what = "an argument rule";
            return rc;
        }
    }
    *what = "loading";
    return seccomp_load(ctx);
}

int gh_sandbox_lock(const char *who)
{
    const char *what = "init";
    scmp_filter_ctx ctx;
    int rc = -ENOMEM;

    if (!policy_seccomp || locked)
        return 0;
    if ((ctx = seccomp_init(SCMP_ACT_KILL_PROCESS)) != NULL)
        rc = build(ctx, &what);
    seccomp_release(ctx);
    if (rc < 0) {
        gh_log_error("%s: cannot install the seccomp filter (%s: %s); `seccomp off` runs without it", who, what,
                     strerror(-rc));
        return -1;
    }
    locked = 1;
    return 0;
}

int gh_sandbox_probe(void)
{
    const char *what = "init";
    scmp_filter_ctx ctx;
    int status, rc;
    pid_t pid;

    fflush(NULL); /* nothing buffered may be written twice */
    if ((pid = fork()) < 0)
        return -errno;
    if (pid == 0) {
        /* A throwaway child: the filter as the workers will have it, then gone. libseccomp's init fails
         * where the kernel (or valgrind) has no seccomp(2). */
        rc = -ENOSYS;
        if ((ctx = seccomp_init(SCMP_ACT_KILL_PROCESS)) != NULL)
            rc = build(ctx, &what);
        _exit(rc < 0 ? (-rc & 0xff) : 0);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(status))
        return -WEXITSTATUS(status);
    return -EINVAL;
}

void gh_sandbox_violate(void)
{
    syscall(SYS_personality, 0xffffffffUL);
}
