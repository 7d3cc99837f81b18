/*
 * sandbox: what confines a worker and the prober once the master forked them
 * (DESIGN.md, "Process model"): the account they run as, no_new_privs, no core
 * dumps nor ptrace of a process that holds private keys, and a seccomp
 * allow-list of system calls.
 *
 * The master keeps root (it binds new listeners and reads the files again at a
 * reload); it resolves the account once, at start, and sets the policy before
 * the first fork. Each child then calls gh_sandbox_drop() right after fork and
 * gh_sandbox_lock() once its event loop is set up (every descriptor it needs
 * is open or comes by SCM_RIGHTS from the master).
 */
#ifndef GH_CORE_SANDBOX_H
#define GH_CORE_SANDBOX_H

#include <stddef.h>
#include <sys/types.h>

#define GH_SANDBOX_NAME_MAX 32 /* useradd(8)'s limit */

/* The account the children run as; filled by gh_sandbox_resolve in the master. */
typedef struct gh_sandbox_creds {
    int change; /* 1: the children change to uid/gid (the master runs as root) */
    uid_t uid;
    gid_t gid;
    char user[GH_SANDBOX_NAME_MAX + 1];
    char group[GH_SANDBOX_NAME_MAX + 1];
} gh_sandbox_creds;

/*
 * Who the children run as, from the `user` and `group` directives (NULL: not
 * given). As root: `user` (default "nobody", as nginx does) and `group`
 * (default: the user's primary group); `user root` keeps root, on purpose.
 * Not as root there is nobody to change to: the children keep the master's
 * account, and *note says that a `user` naming someone else is ignored.
 * Returns 0, or -1 (the user) or -2 (the group) with a reason ("no user
 * \"www\" on this system") in why.
 */
int gh_sandbox_resolve(const char *user, const char *group, gh_sandbox_creds *out, const char **note, char *why,
                       size_t whylen);

/* The master, before the first fork: what every child will do. seccomp: 1 to install the allow-list. */
void gh_sandbox_set_policy(const gh_sandbox_creds *creds, int seccomp);

/*
 * In a child right after fork: supplementary groups set to the one group,
 * then the gid, then the uid (each real, effective and saved), checked by
 * reading them back and by trying to regain root; then no_new_privs and
 * not dumpable (the worker holds private keys: no core file, no ptrace by
 * another process of the same account). A credential change clears the
 * parent-death signal: set it after this. Returns 0, or -1 with errno and a
 * line logged.
 */
int gh_sandbox_drop(const char *who);

/*
 * Installs the seccomp allow-list (if the policy asks for it): any system
 * call outside it kills the process with SIGSYS, which the master logs. The
 * list is the table in sandbox.c, one line per call, by group. Returns 0, or
 * -1 with a line logged (the caller exits: a worker must not serve unconfined
 * when it was asked to be confined).
 */
int gh_sandbox_lock(const char *who);

/* One info line: who the children run as and whether seccomp is on (the master, at start). */
void gh_sandbox_log_policy(void);

/*
 * The master, at start with seccomp on: installs the filter in a throwaway
 * child, so that a kernel without seccomp, or a tool that does not pass it
 * through (valgrind), stops the start with one clear line instead of workers
 * failing in a restart loop. 0 or a negative errno.
 */
int gh_sandbox_probe(void);

/* 1 once gh_sandbox_lock installed the filter in this process. */
int gh_sandbox_locked(void);

/* For the test of a violation: a system call outside the list (personality(2), a query: no effect). */
void gh_sandbox_violate(void);

#endif
