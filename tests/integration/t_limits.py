"""Connection limits and running out of descriptors: a local resource error (EMFILE on an
upstream connect) is never a backend failure; `max_connections` closes idle keep-alive clients
(oldest first) to admit new ones and pauses accepting when none is idle, logging it once."""
import os
import re
import subprocess
import threading
import time

from harness import T, check, eq, test, wait_until
from cfgutil import PlainConn, log_lines, wait_log


def plain_config(ctx, b, main="", pool="", workers=1):
    """One plain-HTTP listener, pool app with server b (and `pool` lines), site default -> app."""
    c = ctx.session.certs()

    def conf(ports):
        return ("workers %d\n%s"
                "listen 127.0.0.1:%d\n"
                "pool app {\n    server 127.0.0.1:%d\n    %s\n}\n"
                "site default {\n    cert %s %s\n    route / { proxy app }\n}\n"
                % (workers, main, ports[0], b.port, pool, c["ec_cert"], c["ec_key"]))
    return ctx.gatehouse_config(conf, nports=1)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def soft_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def set_soft_nofile(ctx, pid, n):
    r = subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:" % n], capture_output=True, timeout=10)
    ctx.note("prlimit --pid %d --nofile=%d: -> %d %r" % (pid, n, r.returncode, r.stderr[-200:]))
    check(r.returncode == 0, "prlimit failed: %r" % r.stderr[-200:])


def get_status(port, path, timeout):
    """One request on a new plain connection; its status, or 'closed' / 'timeout'."""
    try:
        with PlainConn(port, timeout=timeout) as c:
            return c.request("GET", path).status
    except Exception as e:  # noqa: BLE001
        return "timeout" if "timed out" in str(e) else "closed"


@test("emfile_does_not_eject_healthy_server")
def _(ctx):
    # The worker's descriptors run out under it (its soft limit lowered after it started, so
    # whatever budget it computed at start is too big): clients are accepted but their upstream
    # connects fail with EMFILE. That is this host's problem, not the server's: no ejection.
    b = ctx.backend()
    gh = plain_config(ctx, b, pool="passive fails=3 window=30s eject=60s")
    # close=1: no pooled connection is left, so every client needs a new upstream connection.
    eq(get_status(gh.port, "/id?warm&close=1", 5 * T), 200, "status before the descriptors run out")
    time.sleep(0.2)
    saved = {}
    for pid in gh.workers():
        saved[pid] = soft_nofile(pid)
        set_soft_nofile(ctx, pid, open_fds(pid) + 1)  # room for a client, none for its upstream
    results = [None] * 24
    ts = []

    def client(i):
        results[i] = get_status(gh.port, "/id?i=%d" % i, 10 * T)
    for i in range(len(results)):
        t = threading.Thread(target=client, args=(i,))
        t.start()
        ts.append(t)
    for t in ts:
        t.join(30 * T)
    ctx.note("statuses while out of descriptors: %r" % results)
    for pid, n in saved.items():
        set_soft_nofile(ctx, pid, n)
    check(all(r in (200, 503) for r in results),
          "every client gets an answer (200, or 503 while out of descriptors): %r" % results)
    check(503 in results, "no client saw the descriptors run out (test did not provoke EMFILE): %r" % results)
    time.sleep(0.3)
    ejected = log_lines(gh, r"is ejected|is down")
    check(not ejected, "the healthy server was ejected for our own EMFILE: %s" % ejected)
    eq(get_status(gh.port, "/id?after", 5 * T), 200, "status once descriptors are back")
    check(wait_log(gh, r"local resource error", 3 * T) is not None,
          "no error-log line says the failed connects were a local resource error")
    ctx.info = "%d x 200, %d x 503" % (results.count(200), results.count(503))
