"""Process security: the workers and the prober run as an unprivileged account (as root: `nobody` by
default, or `user`/`group`) with no_new_privs and the seccomp allow-list, seen in /proc/PID/status; a
worker cannot read the key file and needs not (a reload with a root-only key works); a call outside
the allow-list kills the worker, which the master logs and replaces; `seccomp off`; process titles."""
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess

from harness import GATEHOUSE, T, Conn, check, eq, test, wait_until
from cfgutil import log_lines, wait_log, write

ROOT = os.geteuid() == 0
NOBODY = pwd.getpwnam("nobody") if ROOT else None


def status(pid):
    """The fields of /proc/PID/status as a dict of strings."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def ids(field):
    """'65534\t65534\t65534\t65534' -> [65534, 65534, 65534, 65534]"""
    return [int(x) for x in field.split()]


def title(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        raw = f.read()
    with open("/proc/%d/comm" % pid) as f:
        comm = f.read().strip()
    # The title, then NUL padding to the end of the original area (as nginx's setproctitle leaves it).
    return raw.rstrip(b"\0").decode(errors="replace"), raw, comm


def by_title(gh):
    """{'gatehouse: worker 0': pid, ..., 'gatehouse: prober': pid}; a child that just exited is left out."""
    out = {}
    for p in gh.workers():
        try:
            out[title(p)[0]] = p
        except OSError:
            pass
    return out


def conf_text(ctx, p, extra="", workers=2, cert=None, key=None, health=True):
    c = ctx.session.certs()
    lines = ["workers %d" % workers, "listen 127.0.0.1:%d tls" % p[0]]
    if extra:
        lines.append(extra)
    lines += ["pool app {", "    server 127.0.0.1:%d" % p[1]]
    if health:
        lines.append("    health http GET /healthz interval=300ms timeout=200ms")
    lines += ["}", "site default {",
              "    cert %s %s" % (cert or c["ec_cert"], key or c["ec_key"]),
              "    route / { proxy app }", "}", ""]
    return "\n".join(lines)


def start(ctx, extra="", workers=2, env=None, **kw):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf_text(ctx, [p[0], b.port], extra, workers, **kw), nports=1,
                              children=workers + 1, env=env)
    return b, gh


def served(gh):
    with Conn(gh.port) as c:
        return c.request("GET", "/small").status == 200


def check_confined(pid, what, uid, gid, seccomp=2):
    st = status(pid)
    eq(ids(st["Uid"]), [uid] * 4, what + " Uid (real, effective, saved, fs)")
    eq(ids(st["Gid"]), [gid] * 4, what + " Gid")
    if ROOT:
        eq(ids(st["Groups"]), [gid], what + " supplementary groups")
    eq(st["NoNewPrivs"], "1", what + " NoNewPrivs")
    eq(st["Seccomp"], str(seccomp), what + " Seccomp (2: filter)")


@test("security_workers_and_prober_drop_privileges")
def _(ctx):
    b, gh = start(ctx)
    procs = by_title(gh)
    check(set(procs) == {"gatehouse: worker 0", "gatehouse: worker 1", "gatehouse: prober"},
          "the master's children by title: %s" % sorted(procs))
    m = status(gh.pid)
    eq(ids(m["Uid"])[0], os.geteuid(), "master keeps its account")
    eq(m["NoNewPrivs"], "0", "master NoNewPrivs (it must stay able to do a reload's work)")
    eq(m["Seccomp"], "0", "master has no filter")
    uid, gid = (NOBODY.pw_uid, NOBODY.pw_gid) if ROOT else (os.geteuid(), os.getegid())
    for t, pid in procs.items():
        check_confined(pid, t, uid, gid)
    check(served(gh), "a request through the confined workers")
    if ROOT:
        check(log_lines(gh, r"nobody"), "the start says who the workers run as")
    # A reload: the master is still root to reread, the prober is started again and confined again.
    old_prober = procs["gatehouse: prober"]
    gh.signal(signal.SIGHUP)
    check(wait_log(gh, r"reloaded ", 10 * T) is not None, "the reload succeeded")
    check(wait_until(lambda: by_title(gh).get("gatehouse: prober", old_prober) != old_prober, 10 * T),
          "a new prober after the reload")
    gh.allow_worker_change = True
    check_confined(by_title(gh)["gatehouse: prober"], "the prober after a reload", uid, gid)
    check(served(gh), "a request after the reload")


@test("security_user_and_group_directives")
def _(ctx):
    if not ROOT:
        ctx.info = "skipped: not root"
        return
    u, g = pwd.getpwnam("daemon"), grp.getgrnam("nogroup")
    b, gh = start(ctx, "user daemon\ngroup nogroup", workers=1)
    for t, pid in by_title(gh).items():
        check_confined(pid, t, u.pw_uid, g.gr_gid)
    b2, gh2 = start(ctx, "user daemon", workers=1)  # no group: daemon's primary group
    for t, pid in by_title(gh2).items():
        check_confined(pid, t, u.pw_uid, u.pw_gid)
    check(served(gh) and served(gh2), "both serve")


@test("security_unknown_user_is_a_config_error")
def _(ctx):
    cases = [("user nosuchuser-gh", r":3: no user \"nosuchuser-gh\""),
             ("group nosuchgroup-gh", r":3: no group \"nosuchgroup-gh\""),
             ("user 1000", r":3: .*expected an account name"),
             ("seccomp maybe", r":3: .*expected on or off")]
    for line, want in cases:
        if not ROOT and line.startswith(("user nosuch", "group nosuch")):
            continue  # not root: user and group are ignored
        path = write(ctx, "bad.conf", conf_text(ctx, [1, 2], line))
        r = subprocess.run([GATEHOUSE, "-t", "-c", path], capture_output=True, timeout=20 * T)
        err = r.stderr.decode(errors="replace")
        check(r.returncode != 0, "%r: -t fails" % line)
        check(re.search(want, err), "%r: -t says %r, got %r" % (line, want, err))
    path = write(ctx, "good.conf", conf_text(ctx, [1, 2], "user nobody\ngroup nogroup\nseccomp on"))
    r = subprocess.run([GATEHOUSE, "-t", "-c", path], capture_output=True, timeout=20 * T)
    eq(r.returncode, 0, "valid: %r" % r.stderr[-300:])


@test("security_worker_cannot_read_the_key_and_needs_not")
def _(ctx):
    if not ROOT:
        ctx.info = "skipped: not root"
        return
    c = ctx.session.certs()
    # A key only root may read, in a directory only root may search, as /etc/ssl/private is.
    private = os.path.join(ctx.dir, "private")
    os.mkdir(private, 0o700)
    key = os.path.join(private, "site.key")
    shutil.copy(c["ec_key"], key)
    os.chmod(key, 0o600)
    b, gh = start(ctx, workers=1, key=key)
    w = by_title(gh)["gatehouse: worker 0"]
    check_confined(w, "worker", NOBODY.pw_uid, NOBODY.pw_gid)
    # The worker's account cannot open it (what a compromised worker could try)...
    r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY.pw_uid, "--regid=%d" % NOBODY.pw_gid, "--clear-groups",
                        "cat", key], capture_output=True, timeout=10 * T)
    check(r.returncode != 0 and b"Permission denied" in r.stderr,
          "the worker's account cannot read the key: %r" % r.stderr[-200:])
    # ...holds no descriptor of it, and serves TLS with it all the same.
    links = [os.readlink("/proc/%d/fd/%s" % (w, fd)) for fd in os.listdir("/proc/%d/fd" % w)]
    check(not any("site.key" in ln or "private" in ln for ln in links), "no key file open: %s" % links)
    check(served(gh), "TLS with the root-only key")
    # A reload with a new certificate and root-only key: the master reads them, the worker gets the bytes.
    key2 = os.path.join(private, "rsa.key")
    shutil.copy(c["rsa_key"], key2)
    os.chmod(key2, 0o600)
    with open(gh.conf_path, "w") as f:
        f.write(conf_text(ctx, [gh.port, b.port], workers=1, cert=c["rsa_cert"], key=key2))
    gh.signal(signal.SIGHUP)
    check(wait_log(gh, r"worker 0: reloaded", 10 * T) is not None,
          "the worker reloaded with a key it cannot read: %s" % log_lines(gh, r"reload")[-3:])
    gh.allow_worker_change = True  # the prober restarts at a reload
    eq(by_title(gh)["gatehouse: worker 0"], w, "the same worker (reloaded in place)")
    cx = ssl.create_default_context()
    cx.check_hostname = False
    cx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", gh.port), timeout=5 * T) as s:
        with cx.wrap_socket(s, server_hostname="localhost") as t:
            der = t.getpeercert(binary_form=True)
    pem = open(c["rsa_cert"]).read()
    check(ssl.DER_cert_to_PEM_cert(der).split("-----")[2].split() == pem.split("-----")[2].split(),
          "the reloaded RSA certificate is served")


@test("security_access_log_written_by_unprivileged_workers")
def _(ctx):
    # The log in a directory only root may search (as /var/log/gatehouse is under the unit): the master opens
    # the file and the workers write through its descriptor, at start and again when a rotation (SIGUSR1,
    # then a reload) needs a new one. The file stays root's.
    logs = os.path.join(ctx.dir, "logs")
    os.mkdir(logs, 0o700)
    path = os.path.join(logs, "access.log")
    b, gh = start(ctx, "access_log %s" % path, workers=1)
    check(served(gh), "served")
    check(wait_until(lambda: os.path.exists(path) and b"GET /small" in open(path, "rb").read(), 5 * T),
          "the request is logged")
    owner = os.geteuid()
    eq(os.stat(path).st_uid, owner, "the log stays the master's")
    for i, sig in enumerate((signal.SIGUSR1, signal.SIGHUP)):
        os.rename(path, "%s.%d" % (path, i))
        gh.signal(sig)
        if sig == signal.SIGHUP:
            check(wait_log(gh, r"worker 0: reloaded", 10 * T) is not None, "reloaded")
            gh.allow_worker_change = True  # the prober restarts at a reload
        check(wait_until(lambda: os.path.exists(path), 5 * T), "a new file after %s" % sig.name)
        eq(os.stat(path).st_uid, owner, "the new file's owner after %s" % sig.name)
        with Conn(gh.port) as c:
            eq(c.request("GET", "/small?after%d" % i).status, 200, "served after the rotation")
        want = b"/small?after%d" % i
        check(wait_until(lambda: want in open(path, "rb").read(), 5 * T),
              "the new file gets the lines after %s: %s" % (sig.name, log_lines(gh, r"access")[-3:]))
        check(want not in open("%s.%d" % (path, i), "rb").read(), "the rotated file does not")


@test("security_seccomp_violation_kills_and_master_restarts")
def _(ctx):
    b, gh = start(ctx, workers=1, env={"GH_TEST_SECCOMP_VIOLATE": "1"}, health=False)
    gh.allow_worker_change = True
    w = by_title(gh)["gatehouse: worker 0"]
    eq(status(w)["Seccomp"], "2", "the worker is filtered")
    check(served(gh), "served before")
    os.kill(w, signal.SIGUSR2)
    check(wait_log(gh, r"worker 0 \(pid %d\) made a system call outside the seccomp allow-list" % w, 10 * T)
          is not None, "the master says why the worker died: %s" % gh.stderr()[-600:])
    check(log_lines(gh, r"worker 0 \(pid %d\) was killed by signal %d" % (w, signal.SIGSYS)),
          "killed by SIGSYS")
    check(wait_until(lambda: by_title(gh).get("gatehouse: worker 0", w) != w, 10 * T), "a new worker 0")
    w2 = by_title(gh)["gatehouse: worker 0"]
    eq(status(w2)["Seccomp"], "2", "the new worker is filtered too")
    check(served(gh), "the new worker serves")


@test("security_seccomp_off")
def _(ctx):
    b, gh = start(ctx, "seccomp off", workers=1, env={"GH_TEST_SECCOMP_VIOLATE": "1"})
    procs = by_title(gh)
    uid, gid = (NOBODY.pw_uid, NOBODY.pw_gid) if ROOT else (os.geteuid(), os.getegid())
    for t, pid in procs.items():
        check_confined(pid, t, uid, gid, seccomp=0)
    w = procs["gatehouse: worker 0"]
    os.kill(w, signal.SIGUSR2)  # the same call, without the filter: harmless
    check(wait_log(gh, r"worker 0: SIGUSR2 with GH_TEST_SECCOMP_VIOLATE", 5 * T) is not None, "the call was made")
    check(served(gh), "the worker lives on and serves")
    eq(by_title(gh)["gatehouse: worker 0"], w, "the same worker")


@test("security_process_titles")
def _(ctx):
    b, gh = start(ctx, workers=2)
    t, raw, comm = title(gh.pid)
    check(t.startswith("gatehouse: master -c ") and t.endswith(gh.conf_path),
          "master title with its command line: %r" % t)
    eq(comm, "gatehouse", "master comm")
    procs = by_title(gh)
    comms = {t: title(p)[2] for t, p in procs.items()}
    eq(comms, {"gatehouse: worker 0": "gatehouse-w0", "gatehouse: worker 1": "gatehouse-w1",
               "gatehouse: prober": "gatehouse-probe"}, "titles and comm names")
    # ps reads the same: one title per process, nothing of the original arguments left behind.
    out = subprocess.run(["ps", "-o", "args=", "-p", ",".join(str(p) for p in procs.values())],
                         capture_output=True, timeout=10 * T).stdout.decode().split("\n")
    eq(sorted(x.strip() for x in out if x.strip()), sorted(procs), "ps shows the titles")
    # The environment moved, not lost: the fake resolver and GH_TEST_* variables are read through getenv.
    check(served(gh), "served")


@test("security_quickstart_flags")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, args=["--seccomp", "off"] + (["--user", "daemon"] if ROOT else []))
    w = gh.workers()[0]
    if ROOT:
        u = pwd.getpwnam("daemon")
        check_confined(w, "worker", u.pw_uid, u.pw_gid, seccomp=0)
    else:
        eq(status(w)["Seccomp"], "0", "--seccomp off")
    eq(title(w)[0], "gatehouse: worker 0", "title")
    r = subprocess.run([GATEHOUSE, "-c", "x.conf", "--user", "daemon"], capture_output=True, timeout=10 * T)
    check(r.returncode == 2 and b"belong in the file" in r.stderr, "--user with -c: %r" % r.stderr)


@test("security_pdeathsig_survives_privilege_drop")
def _(ctx):
    # A change of credentials clears the parent-death signal (kernel commit_creds): set before the drop,
    # a worker would outlive a master killed by SIGKILL, holding the port with nobody to stop it.
    b, gh = start(ctx, workers=1)
    kids = gh.workers()
    eq(len(kids), 2, "a worker and the prober")
    gh.signal(signal.SIGKILL)
    gh.proc.wait(10 * T)
    gone = wait_until(lambda: not any(os.path.exists("/proc/%d/status" % k) and
                                      status(k).get("State", "Z").split()[0] not in ("Z", "X") for k in kids),
                      10 * T)
    left = [k for k in kids if os.path.exists("/proc/%d" % k)]
    for k in left:
        try:
            os.kill(k, signal.SIGKILL)  # ours: do not leave them behind if the check fails
        except ProcessLookupError:
            pass
    check(gone, "the worker and the prober stop once the master is gone: %s still there" % left)
