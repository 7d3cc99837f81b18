"""Connection limits and running out of descriptors: a local resource error (EMFILE on an
upstream connect) is never a backend failure; `max_connections` closes idle keep-alive clients
(oldest first) to admit new ones and pauses accepting when none is idle, logging it once."""
import os
import re
import select
import subprocess
import threading
import time

from harness import T, check, eq, test, wait_until
from cfgutil import PlainConn, log_lines, wait_log


def plain_config(ctx, b, main="", pool="", workers=1, prefix=()):
    """One plain-HTTP listener, pool app with server b (and `pool` lines), site default -> app."""
    c = ctx.session.certs()

    def conf(ports):
        return ("workers %d\n%s"
                "listen 127.0.0.1:%d\n"
                "pool app {\n    server 127.0.0.1:%d\n    %s\n}\n"
                "site default {\n    cert %s %s\n    route / { proxy app }\n}\n"
                % (workers, main, ports[0], b.port, pool, c["ec_cert"], c["ec_key"]))
    return ctx.gatehouse_config(conf, nports=1, prefix=prefix)


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def soft_nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    return None


def as_owner_of(pid):
    """A prefix that runs a command as pid's account: root started gatehouse, but its workers run as
    `nobody`, and root without CAP_SYS_RESOURCE (a container) may not prlimit another account's process."""
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid"):
                ids[k] = int(v.split()[0])
    if ids.get("Uid") == os.geteuid():
        return []
    return ["setpriv", "--reuid=%d" % ids["Uid"], "--regid=%d" % ids["Gid"], "--clear-groups"]


def set_soft_nofile(ctx, pid, n):
    r = subprocess.run(as_owner_of(pid) + ["prlimit", "--pid", str(pid), "--nofile=%d:" % n],
                       capture_output=True, timeout=10)
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
    # Out of descriptors, accept fails at every retry (each 100 ms): that is said once, not each time.
    spam = log_lines(gh, r"accept on .*Too many open files")
    check(len(spam) <= 2, "%d 'accept ... Too many open files' lines in a few seconds: %s" % (len(spam), spam[:3]))
    ctx.info = "%d x 200, %d x 503" % (results.count(200), results.count(503))


LIMIT_RE = r"connection limit reached"


@test("max_connections_closes_idle_keepalive_first")
def _(ctx):
    b = ctx.backend()
    gh = plain_config(ctx, b, main="max_connections 3\n")
    check(log_lines(gh, r"connection limit: 3 per worker"), "the start log does not give the connection limit")
    c1 = PlainConn(gh.port)
    eq(c1.request("GET", "/id?c1").status, 200, "c1")
    time.sleep(0.05)                      # c1 idle longest
    c2 = PlainConn(gh.port)
    c2.send(b"GET /slow?ms=%d HTTP/1.1\r\nHost: x\r\n\r\n" % int(1500 * T))  # busy
    time.sleep(0.05)
    c3 = PlainConn(gh.port)
    eq(c3.request("GET", "/id?c3").status, 200, "c3")
    # At the limit: a fourth client is admitted at once by closing the oldest idle one (c1).
    t0 = time.monotonic()
    c4 = PlainConn(gh.port)
    eq(c4.request("GET", "/id?c4").status, 200, "c4 at the limit")
    dt = time.monotonic() - t0
    check(dt < 1.0 * T, "c4 waited %.2fs: it was not admitted by closing an idle connection" % dt)
    closed, _ = c1.wait_closed(2 * T)
    check(closed, "the oldest idle connection (c1) was not closed")
    eq(c3.request("GET", "/id?c3-again").status, 200, "c3, idle but younger than c1, still open")
    r = c2.read_response()
    eq((r.status, r.body), (200, b"slow\n"), "c2, busy while the others came, answered in full")
    # Every client busy: a fifth waits (accepts paused) until one is idle, then gets its answer.
    for c in (c2, c3, c4):
        c.send(b"GET /slow?ms=%d HTTP/1.1\r\nHost: x\r\n\r\n" % int(800 * T))
    time.sleep(0.1)
    c5 = PlainConn(gh.port, timeout=10 * T)
    c5.send(b"GET /id?c5 HTTP/1.1\r\nHost: x\r\n\r\n")
    # Read nothing yet: while c2-c4 are all busy, c5 must get no answer at all.
    check(not select.select([c5.s], [], [], 0.5 * T)[0], "c5 answered while every client was busy")
    for c in (c2, c3, c4):
        r = c.read_response()
        eq((r.status, r.body), (200, b"slow\n"), "a busy client at the limit, answered in full")
    eq(c5.read_response().status, 200, "c5, admitted once a client was idle")
    lines = log_lines(gh, LIMIT_RE)
    eq(len(lines), 1, "'%s' lines (once, not per accept or pause): %r" % (LIMIT_RE, lines))
    for c in (c1, c2, c3, c4, c5):
        c.close()
    check(wait_log(gh, r"below the connection limit again", 3 * T) is not None,
          "no line says the limit cleared once the clients left")
    eq(len(log_lines(gh, LIMIT_RE)), 1, "'%s' lines after the limit cleared" % LIMIT_RE)


@test("default_max_connections_keeps_descriptors_for_upstreams")
def _(ctx):
    # A low open file limit and no max_connections: the derived limit (logged at start) keeps
    # descriptors for upstream connections, so 60 keep-alive clients in turn (more than the
    # descriptors) are all served, the idle ones closed to make room, and nothing runs out.
    b = ctx.backend()
    gh = plain_config(ctx, b, prefix=["prlimit", "--nofile=64:64", "--"])
    conns, statuses = [], []
    try:
        for i in range(60):
            c = PlainConn(gh.port, timeout=5 * T)
            conns.append(c)
            try:
                statuses.append(c.request("GET", "/id?i=%d" % i).status)
            except Exception as e:  # noqa: BLE001
                statuses.append(str(e)[:60])
    finally:
        for c in conns:
            c.close()
    eq(statuses, [200] * 60, "statuses of 60 keep-alive clients in turn")
    bad = log_lines(gh, r"Too many open files|local resource error")
    check(not bad, "descriptors ran out under the derived limit: %s" % bad[:3])
    m = [re.search(r"connection limit: (\d+) per worker", ln) for ln in log_lines(gh, r"connection limit: ")]
    check(m and m[0], "the start log does not give the derived connection limit")
    limit = int(m[0].group(1))
    check(0 < limit <= (64 - 1 - 3) // 2, "derived limit %d for 64 descriptors and one listener" % limit)
    ctx.info = "derived limit %d per worker for 64 descriptors" % limit


@test("max_connections_quick_start_flag")
def _(ctx):
    from harness import Conn
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=2, args=["--max-connections", "7"])
    check(log_lines(gh, r"connection limit: 4 per worker \(max_connections 7\)"),
          "the start log does not give each worker's share of --max-connections 7")
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small").status, 200, "status")
    # Over TLS: the idle client closed to make room gets a close_notify, the new one its answer.
    gh1 = ctx.gatehouse([b], workers=1, args=["--max-connections", "1"])
    with Conn(gh1.port) as c1:
        eq(c1.request("GET", "/small?c1").status, 200, "c1")
        with Conn(gh1.port) as c2:  # its handshake needs the worker to accept it: c1 must go
            closed, _ = c1.wait_closed(3 * T)
            check(closed, "the idle TLS client was not closed to admit a new one at --max-connections 1")
            check(not c1.reset, "the idle TLS client was reset, not closed with close_notify")
            eq(c2.request("GET", "/small?c2").status, 200, "c2, admitted at the limit")
