"""Fitting the system: the man pages render without a warning; SIGUSR1 reopens the access log as
logrotate's postrotate expects; and, with GH_PACKAGE=1 (it takes a minute or two: a full
dpkg-buildpackage), the Debian package builds from a copy of the tree, installs on this machine,
starts (with systemd when it is PID 1, else with the unit's ExecStart command line), answers,
reloads, stops, and purges without a trace.
"""
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

from harness import ROOT, T, Fail, check, eq, free_port, get, test, wait_until

PKG_FILES = ["/usr/sbin/gatehouse", "/etc/gatehouse", "/var/log/gatehouse", "/etc/logrotate.d/gatehouse",
             "/lib/systemd/system/gatehouse.service", "/etc/systemd/system/multi-user.target.wants/gatehouse.service",
             "/usr/share/man/man8/gatehouse.8.gz", "/usr/share/man/man5/gatehouse.conf.5.gz"]


@test("man_pages_render_without_warnings")
def _(ctx):
    for page in ("gatehouse.8", "gatehouse.conf.5"):
        path = str(ROOT / "man" / page)
        r = subprocess.run(["groff", "-man", "-ww", "-z", path], capture_output=True, timeout=30 * T)
        eq((r.returncode, r.stderr.decode(errors="replace")), (0, ""), "groff -man -ww -z %s" % page)
        if shutil.which("man"):
            r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, timeout=30 * T,
                               env=dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0"))
            eq((r.returncode, r.stderr.decode(errors="replace")), (0, ""), "man --warnings -l %s" % page)
            text = r.stdout.decode(errors="replace")
            check("SIGUSR2" in text if page.endswith(".8") else "timeouts" in text, "%s renders its text" % page)


@test("access_log_reopened_on_sigusr1")
def _(ctx):
    b = ctx.backend()
    log = os.path.join(ctx.dir, "access.log")
    certs = ctx.session.certs()
    gh = ctx.gatehouse_config(lambda ports: """workers 2
access_log %s
listen 127.0.0.1:%d tls
pool app { server 127.0.0.1:%d }
site default {
    cert %s %s
    route / { proxy app }
}
""" % (log, ports[0], b.port, certs["ec_cert"], certs["ec_key"]), nports=1)
    for _ in range(4):
        eq(get(gh.port, "/small").status, 200, "request before the rotation")
    check(wait_until(lambda: os.path.exists(log) and open(log).read().count("\n") >= 4, 5 * T), "lines logged")
    os.rename(log, log + ".1")  # what logrotate does
    gh.signal(signal.SIGUSR1)
    check(wait_until(lambda: "reopening the access log" in gh.stderr(), 5 * T), "the master did not log SIGUSR1")
    time.sleep(0.2 * T)  # the workers read their signalfd
    for _ in range(4):
        eq(get(gh.port, "/small").status, 200, "request after the rotation")
    check(wait_until(lambda: os.path.exists(log) and open(log).read().count("\n") >= 4, 5 * T),
          "the new file did not get the lines after SIGUSR1")
    eq(open(log + ".1").read().count("\n"), 4, "lines in the rotated file")
    # nothing died: the harness checks the workers are the same processes


def port_answers(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=2) as r:
            return r.status, r.read().decode(errors="replace")
    except OSError:
        return None


def run(argv, timeout, **kw):
    r = subprocess.run(argv, capture_output=True, timeout=timeout, **kw)
    if r.returncode != 0:
        raise Fail("%s: exit %d: %s" % (" ".join(argv), r.returncode, (r.stdout + r.stderr).decode(errors="replace")[-1500:]))
    return r


def unit_exec(unit_text, key):
    """The command lines of ExecStart= or ExecReload= in the unit, as argv lists."""
    return [shlex.split(m.group(1)) for m in re.finditer(r"^%s=(.*)$" % key, unit_text, re.M)]


def start_packaged(ctx):
    """Start the installed service; returns (how, pid or None, port)."""
    unit = open("/lib/systemd/system/gatehouse.service").read()
    conf = open("/etc/gatehouse/gatehouse.conf").read()
    port = int(re.search(r"^listen 127\.0\.0\.1:(\d+)$", conf, re.M).group(1))
    if os.path.isdir("/run/systemd/system"):
        run(["systemctl", "start", "gatehouse.service"], 60 * T)
        return "systemd", None, port
    # No systemd as PID 1 (a container): the unit's command line, as systemd would run it.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        busy = True
    except OSError:
        busy = False
    if busy:  # another process has the default port: the installed file (a conffile, purged later) moves
        port = free_port()
        conf = re.sub(r"^listen 127\.0\.0\.1:\d+$", "listen 127.0.0.1:%d" % port, conf, flags=re.M)
        with open("/etc/gatehouse/gatehouse.conf", "w") as f:
            f.write(conf)
    argv = unit_exec(unit, "ExecStart")[0]
    errf = open(os.path.join(ctx.dir, "packaged.stderr"), "ab")
    p = ctx.popen(argv, stdin=subprocess.DEVNULL, stdout=errf, stderr=errf, cwd="/")
    return "ExecStart (%s)" % " ".join(argv), p, port


def debian_package_installs_and_serves(ctx):
    for tool in ("dpkg-buildpackage", "dh", "dpkg"):
        check(shutil.which(tool) is not None, "%s is missing (apt-get install debhelper)" % tool)
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "gatehouse"], capture_output=True)
    check(b"installed" not in r.stdout, "a gatehouse package is installed on this machine already: not touching it")
    for path in PKG_FILES:
        check(not os.path.lexists(path), "%s exists before the test: not touching it" % path)

    src = os.path.join(ctx.dir, "src")
    shutil.copytree(ROOT, src, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "build", "build-*", "run", "__pycache__"))
    t0 = time.monotonic()
    run(["dpkg-buildpackage", "-us", "-uc", "-b"], 600 * T, cwd=src,
        env=dict(os.environ, DEB_BUILD_OPTIONS="parallel=2 noddebs"))
    built = time.monotonic() - t0
    debs = [f for f in os.listdir(ctx.dir) if re.match(r"gatehouse_.*\.deb$", f)]
    eq(len(debs), 1, "packages built: %s" % os.listdir(ctx.dir))
    listing = run(["dpkg-deb", "-c", os.path.join(ctx.dir, debs[0])], 60).stdout.decode()
    for want in ("./usr/sbin/gatehouse", "./lib/systemd/system/gatehouse.service", "./etc/gatehouse/gatehouse.conf",
                 "./etc/logrotate.d/gatehouse", "./usr/share/man/man8/gatehouse.8.gz",
                 "./usr/share/man/man5/gatehouse.conf.5.gz"):
        check(want in listing, "%s is not in the package" % want)

    pid = None
    try:
        run(["dpkg", "-i", os.path.join(ctx.dir, debs[0])], 300 * T)
        how, p, port = start_packaged(ctx)
        check(wait_until(lambda: port_answers(port) is not None, 20 * T), "the packaged service does not answer on %d (%s)"
              % (port, how))
        status, body = port_answers(port)
        eq(status, 200, "status from the default configuration")
        check("gatehouse is running" in body, "the default page: %r" % body)
        unit = open("/lib/systemd/system/gatehouse.service").read()
        if p is None:
            run(["systemctl", "reload", "gatehouse.service"], 60 * T)
            eq(port_answers(port)[0], 200, "after systemctl reload")
            run(["systemctl", "stop", "gatehouse.service"], 120 * T)
        else:
            pid = p.pid
            # ExecReload: the check, then SIGHUP to the main process.
            reload_cmds = unit_exec(unit, "ExecReload")
            run(reload_cmds[0], 60 * T)
            check("-HUP" in reload_cmds[1] and "$MAINPID" in reload_cmds[1], "ExecReload sends SIGHUP: %r" % reload_cmds)
            os.kill(pid, signal.SIGHUP)
            check(wait_until(lambda: b"reloaded" in open(os.path.join(ctx.dir, "packaged.stderr"), "rb").read(), 10 * T),
                  "no reload in the log")
            eq(port_answers(port)[0], 200, "after the reload")
            check(os.path.getsize("/var/log/gatehouse/access.log") > 0, "the access log is written")
            os.kill(pid, signal.SIGTERM)
            eq(p.wait(30 * T), 0, "exit status after SIGTERM")
            pid = None
        ctx.info = "package built in %.0fs, served with %s" % (built, how.split(" ")[0])
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["dpkg", "--purge", "gatehouse"], capture_output=True, timeout=300)
    left = [path for path in PKG_FILES if os.path.lexists(path)]
    eq(left, [], "files left after dpkg --purge")


# A minute or two (a whole package build): only with GH_PACKAGE=1. Not registered otherwise, so a run without
# it neither counts it as passed nor as failed (run.py prints nothing for it).
if os.environ.get("GH_PACKAGE") == "1":
    test("debian_package_installs_and_serves", timeout=900)(debian_package_installs_and_serves)
