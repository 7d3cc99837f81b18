"""Binary upgrade (SIGUSR2, src/main/upgrade.h): a new gatehouse binary takes over the listening
sockets of the running master; under a load loop of plain and TLS requests, each on a new
connection, no request fails and no connection is refused; the new master serves, the old one
and its workers are gone after the drain. A new master that cannot start leaves the old one
serving. And the drain that makes this possible: a connection accepted before SIGTERM but not yet
given its request is served, not closed.
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import harness
from harness import T, Fail, check, children, client_context, eq, free_port, get, test, wait_until


# ---------------------------------------------------------------- helpers

def conf_text(tls_port, plain_port, backend_port, workers=2):
    return """workers %(w)d
timeouts {
    shutdown 10s
}
listen 127.0.0.1:%(tls)d tls
listen 127.0.0.1:%(plain)d
pool app {
    server 127.0.0.1:%(b)d
}
site default {
    listen 127.0.0.1:%(tls)d
    cert %(cert)s %(key)s
    route / { proxy app }
}
site default {
    listen 127.0.0.1:%(plain)d
    route / { proxy app }
}
""" % dict(w=workers, tls=tls_port, plain=plain_port, b=backend_port, cert="%(cert)s", key="%(key)s")


class CopyReaper:
    """Stops, with the test, every process still running a copy of the binary in the test's directory: the
    new masters of upgrades are no children of the harness's. The harness's kill_tree calls poll()."""

    def __init__(self, exe):
        self.exe = exe

    def pids(self):
        out = []
        for d in os.listdir("/proc"):
            try:
                if d.isdigit() and os.readlink("/proc/%s/exe" % d).startswith(self.exe):
                    out.append(int(d))
            except OSError:
                pass
        return out

    def poll(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if wait_until(lambda: all(gone(p) for p in self.pids()), 10 * T):
                break
        return 0


def copy_binary(ctx):
    exe = os.path.join(ctx.dir, "gatehouse")
    shutil.copy2(harness.GATEHOUSE, exe)
    ctx.others.append(CopyReaper(exe))
    return exe


def start_copy(ctx, b, workers=2, env=None):
    """gatehouse -c, run from a copy of the binary in the test's directory (the file an upgrade replaces)."""
    exe = copy_binary(ctx)
    certs = ctx.session.certs()
    # GatehouseConf runs `prefix + [GATEHOUSE, "-c", FILE]`: this prefix execs the copy in its place (same pid).
    gh = ctx.gatehouse_config(
        lambda ports: conf_text(ports[0], ports[1], b.port, workers) % dict(cert=certs["ec_cert"], key=certs["ec_key"]),
        nports=2, env=env, prefix=["sh", "-c", 'shift; exec "$0" "$@"', exe])
    gh.exe = exe
    gh.allow_worker_change = True  # the upgrade replaces every process
    return gh


def replace_binary(path, src):
    """As a package manager does: the new file is renamed onto the path; the running one keeps its inode."""
    tmp = path + ".new"
    shutil.copy2(src, tmp)
    os.replace(tmp, path)


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def gone(pid):
    return proc_state(pid) in (None, "Z")


def listening_inode(port):
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                p = line.split()
                if p[3] == "0A" and p[1].endswith(":%04X" % port):
                    return p[9]
    return None


def holders(inode):
    """PIDs that have the socket open."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % d):
                if os.readlink("/proc/%s/fd/%s" % (d, fd)) == "socket:[%s]" % inode:
                    out.append(int(d))
                    break
        except OSError:
            continue
    return sorted(out)


def new_master_pid(gh, timeout):
    """The pid the old master logged for its new master."""
    pid = []

    def found():
        m = re.search(r"binary upgrade: new master is pid (\d+)", gh.stderr())
        if m:
            pid.append(int(m.group(1)))
        return bool(m)
    check(wait_until(found, timeout), "no new master started: %s" % gh.stderr()[-600:])
    return pid[0]


def stop_pid(pid, timeout):
    """SIGTERM to a master that is not our child (a new master after an upgrade), then SIGKILL to it and its
    children if it does not go."""
    kids = children(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_until(lambda: gone(pid), timeout):
        for p in [pid] + kids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: gone(pid), 5)


def one_request(port, tls, timeout):
    """GET /small on a new connection: 'ok', 'refused' or a failure description."""
    return one_request_path(port, tls, "/small", timeout)


def one_request_path(port, tls, path, timeout):
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "connect: %s" % e
    s = raw
    try:
        if tls:
            s = client_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        if not data.startswith(b"HTTP/1.1 200 "):
            return "answer %r" % data[:60]
        return "ok"
    except (OSError, ssl.SSLError) as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()


class Load:
    """Requests on new connections, one after another, in a thread: bounded in count and time."""

    def __init__(self, port, tls, count, seconds):
        self.port, self.tls, self.count, self.seconds = port, tls, count, seconds
        self.done = 0
        self.refused = 0
        self.failures = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        end = time.monotonic() + self.seconds
        while self.done < self.count and time.monotonic() < end:
            r = one_request(self.port, self.tls, 10 * T)
            self.done += 1
            if r == "refused":
                self.refused += 1
            elif r != "ok":
                self.failures.append(r)

    def join(self):
        self.t.join(self.seconds + 30 * T)


# ---------------------------------------------------------------- the drain

def sockets_of(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return n


def holds_listener(pid, port):
    ino = listening_inode(port)
    return ino is not None and pid in holders(ino)


def fresh_connection_survives_sigterm(ctx, tls):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda ports: conf_text(ports[0], ports[1], b.port, 1) % dict(
        cert=ctx.session.certs()["ec_cert"], key=ctx.session.certs()["ec_key"]), nports=2)
    port = gh.ports[0] if tls else gh.ports[1]
    worker = [p for p in gh.workers() if holds_listener(p, port)][0]
    before = sockets_of(worker)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5 * T)
    s = raw
    try:
        if tls == "handshake done":
            s = client_context().wrap_socket(raw, server_hostname="localhost")
        # accepted (the worker holds it: its handshake or first head is awaited), not yet asked anything
        check(wait_until(lambda: sockets_of(worker) > before, 5 * T), "the worker did not accept the connection")
        gh.signal(signal.SIGTERM)
        check(wait_until(lambda: "draining 1 connections" in gh.stderr(), 5 * T),
              "the worker did not start draining with the connection: %s" % gh.stderr()[-400:])
        if tls == "in handshake":
            s = client_context().wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except (OSError, ssl.SSLError) as e:
        raise Fail("the connection accepted before SIGTERM was dropped by the drain: %s: %s" % (type(e).__name__, e))
    finally:
        s.close()
    check(data.startswith(b"HTTP/1.1 200 "), "the connection accepted before SIGTERM got %r, want a 200" % data[:80])
    check(b"connection: close" in data.lower(), "a draining worker's answer must say Connection: close: %r" % data)
    eq(gh.proc.wait(10 * T), 0, "exit status after the drain")


@test("sigterm_drain_closed_plain_connection_before_its_first_request")
def _(ctx):
    fresh_connection_survives_sigterm(ctx, None)


@test("sigterm_drain_closed_tls_connection_before_its_first_request")
def _(ctx):
    fresh_connection_survives_sigterm(ctx, "handshake done")


@test("sigterm_drain_closed_tls_connection_in_its_handshake")
def _(ctx):
    fresh_connection_survives_sigterm(ctx, "in handshake")


# ---------------------------------------------------------------- the upgrade

@test("upgrade_under_load_refuses_nothing", timeout=180)
def _(ctx):
    b = ctx.backend()
    gh = start_copy(ctx, b)
    old_workers = children(gh.pid)
    inodes = [listening_inode(p) for p in gh.ports]
    # Bounded: at most 20000 requests per loop and 120 s; stopped once the new master has served a while alone.
    loads = [Load(gh.ports[1], False, 20000, 120 * T), Load(gh.ports[0], True, 20000, 120 * T)]
    check(wait_until(lambda: all(l.done >= 300 for l in loads), 60 * T), "the load did not get going")
    replace_binary(gh.exe, harness.GATEHOUSE)
    t0 = time.monotonic()
    os.kill(gh.pid, signal.SIGUSR2)
    new = new_master_pid(gh, 10 * T)
    gh.stopped = True  # the old master is to exit
    try:
        check(wait_until(lambda: gh.proc.poll() is not None, 30 * T),
              "the old master did not exit after handing over: %s" % gh.stderr()[-800:])
        took = time.monotonic() - t0
        eq(gh.proc.returncode, 0, "old master's exit status")
        check(all(gone(p) for p in old_workers), "old workers still there after the drain: %s"
              % [p for p in old_workers if not gone(p)])
        check(not gone(new), "the new master is gone")
        new_workers = children(new)
        eq(len(new_workers), 3, "the new master's children (2 workers and the prober)")
        # The very sockets the old master bound (the same accept queues), held now by the new processes only.
        eq([listening_inode(p) for p in gh.ports], inodes, "listening socket inodes before and after")
        for ino in inodes:
            held = holders(ino)
            check(new in held and all(p in [new] + new_workers for p in held),
                  "socket %s is held by %s; the new master is %d with %s" % (ino, held, new, new_workers))
        during = [l.done for l in loads]
        wait_until(lambda: all(l.done >= d + 300 for l, d in zip(loads, during)), 30 * T)
        for l in loads:
            l.count = 0  # stop
            l.join()
        sent = sum(l.done for l in loads)
        refused = sum(l.refused for l in loads)
        failed = sum(len(l.failures) for l in loads)
        check(refused == 0 and failed == 0, "%d refused, %d failed of %d: %s" % (
            refused, failed, sent, [f for l in loads for f in l.failures][:5]))
        check(all(l.done > d for l, d in zip(loads, during)), "no request after the old master exited")
        # The requests after the handover went to the new workers: the backend saw them all.
        eq(get(gh.ports[0], "/small").status, 200, "TLS request to the new master")
        ctx.info = "%d requests (%d plain, %d TLS), 0 failed, 0 refused; handover and drain in %.2fs" % (
            sent, loads[0].done, loads[1].done, took)
    finally:
        for l in loads:
            l.count = 0
        stop_pid(new, 15 * T)


@test("upgrade_with_bad_config_keeps_old_master")
def _(ctx):
    b = ctx.backend()
    gh = start_copy(ctx, b)
    workers = children(gh.pid)
    with open(gh.conf_path, "a") as f:
        f.write("\nno_such_directive 1\n")
    os.kill(gh.pid, signal.SIGUSR2)
    new = new_master_pid(gh, 10 * T)
    check(wait_until(lambda: "binary upgrade failed" in gh.stderr(), 10 * T),
          "no 'binary upgrade failed' line: %s" % gh.stderr()[-600:])
    check("no_such_directive" in gh.stderr(), "the new master's FILE:LINE error is in the log")
    check(gone(new), "the failed new master is still there")
    eq(children(gh.pid), workers, "the old master's workers")
    eq(get(gh.ports[0], "/small").status, 200, "the old master serves")
    # and a later upgrade, the file mended, goes through
    with open(gh.conf_path) as f:
        text = f.read().replace("no_such_directive 1\n", "")
    with open(gh.conf_path, "w") as f:
        f.write(text)
    os.kill(gh.pid, signal.SIGUSR2)
    check(wait_until(lambda: gh.stderr().count("new master is pid") == 2, 10 * T), "no second attempt")
    new = int(re.findall(r"new master is pid (\d+)", gh.stderr())[-1])
    gh.stopped = True
    try:
        check(wait_until(lambda: gh.proc.poll() is not None, 30 * T), "the old master did not hand over")
        eq(get(gh.ports[0], "/small").status, 200, "the new master serves")
    finally:
        stop_pid(new, 15 * T)


@test("upgrade_to_a_binary_that_cannot_start_keeps_old_master")
def _(ctx):
    b = ctx.backend()
    gh = start_copy(ctx, b)
    workers = children(gh.pid)
    tmp = gh.exe + ".new"
    with open(tmp, "w") as f:
        f.write("#!/bin/sh\necho 'broken build' >&2\nexit 3\n")
    os.chmod(tmp, 0o755)
    os.replace(tmp, gh.exe)
    os.kill(gh.pid, signal.SIGUSR2)
    check(wait_until(lambda: "binary upgrade failed: the new master exited with status 3" in gh.stderr(), 10 * T),
          "no failure line: %s" % gh.stderr()[-600:])
    eq(children(gh.pid), workers, "the old master's workers")
    for port in gh.ports[:1]:
        eq(get(port, "/small").status, 200, "the old master serves")


@test("upgrade_lets_requests_in_flight_finish")
def _(ctx):
    b = ctx.backend()
    gh = start_copy(ctx, b)
    old_workers = children(gh.pid)
    results = []

    def slow():
        results.append(one_request_path(gh.ports[0], True, "/slow?ms=%d" % int(1500 * T), 20 * T))
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    check(wait_until(lambda: any(e["target"].startswith("/slow") for e in b.requests()), 5 * T),
          "the slow request did not reach the backend")
    replace_binary(gh.exe, harness.GATEHOUSE)
    os.kill(gh.pid, signal.SIGUSR2)
    new = new_master_pid(gh, 10 * T)
    gh.stopped = True
    try:
        check(wait_until(lambda: "serves; draining" in gh.stderr(), 10 * T), "no handover")
        check(any(not gone(p) for p in old_workers), "the old workers left before the slow request finished")
        eq(one_request(gh.ports[0], True, 5 * T), "ok", "a new request during the drain")
        t.join(20 * T)
        eq(results, ["ok"], "the request in flight across the upgrade")
        check(wait_until(lambda: gh.proc.poll() is not None, 10 * T), "the old master did not exit after the drain")
        check(all(gone(p) for p in old_workers), "old workers left")
    finally:
        stop_pid(new, 15 * T)


@test("upgrade_keeps_tls_sessions_resumable")
def _(ctx):
    # The ticket keys live in a memfd that the new master maps again: a session issued by an old worker
    # resumes on a new one (before, the new master made new keys: every client a full handshake).
    from t_tls import tls13_resumed, tls13_session
    b = ctx.backend()
    gh = start_copy(ctx, b)
    path = os.path.join(ctx.dir, "sess13.pem")
    tls13_session(gh, path)
    old_workers = children(gh.pid)
    replace_binary(gh.exe, harness.GATEHOUSE)
    os.kill(gh.pid, signal.SIGUSR2)
    new = new_master_pid(gh, 10 * T)
    gh.stopped = True
    try:
        check(wait_until(lambda: gh.proc.poll() is not None, 30 * T), "the old master did not hand over")
        check(all(gone(p) for p in old_workers), "old workers left")
        ok, out = tls13_resumed(gh, path)
        check(ok, "the session from before the upgrade did not resume on the new master: %s" % out[-500:])
    finally:
        stop_pid(new, 15 * T)


@test("upgrade_twice_from_the_command_line")
def _(ctx):
    # Without a file (the flags are the configuration), and the new master upgraded again in its turn:
    # it passes its own sockets (and keys), not the list it was given.
    b = ctx.backend()
    exe = copy_binary(ctx)
    certs = ctx.session.certs()
    port = free_port()
    errp = os.path.join(ctx.dir, "gatehouse.stderr")
    with open(errp, "ab") as errf:
        first = ctx.popen([exe, "--listen", "127.0.0.1:%d" % port, "--cert", certs["ec_cert"], "--key", certs["ec_key"],
                           "--to", "127.0.0.1:%d" % b.port, "--workers", "2"], stdin=subprocess.DEVNULL, stderr=errf)

    class Log:
        def stderr(self):
            return open(errp).read()
    gh = Log()
    check(wait_until(lambda: one_request(port, True, 2 * T) == "ok", 15 * T), "no start: %s" % gh.stderr()[-500:])
    check(wait_until(lambda: len(children(first.pid)) == 2, 10 * T), "workers of the first master")
    masters = [first.pid]
    try:
        for round_ in range(2):
            old = masters[-1]
            old_workers = children(old)
            replace_binary(exe, harness.GATEHOUSE)
            os.kill(old, signal.SIGUSR2)
            # Both masters write to the same stderr: the old one names the new one there.
            check(wait_until(lambda: gh.stderr().count("new master is pid") == round_ + 1, 10 * T),
                  "round %d: no new master from pid %d" % (round_ + 1, old))
            new = int(re.findall(r"new master is pid (\d+)", gh.stderr())[-1])
            masters.append(new)
            check(wait_until(lambda: gone(old), 30 * T), "round %d: the old master %d did not exit" % (round_ + 1, old))
            check(all(gone(p) for p in old_workers), "round %d: old workers left" % (round_ + 1))
            eq(len(children(new)), 2, "round %d: the new master's workers" % (round_ + 1))
            eq(one_request(port, True, 5 * T), "ok", "round %d: a request to the new master" % (round_ + 1))
        eq(first.wait(5 * T), 0, "the first master's exit status")
    finally:
        for pid in masters[1:]:
            if not gone(pid):
                stop_pid(pid, 15 * T)


@test("upgrade_variable_set_by_hand_signals_nobody")
def _(ctx):
    # GATEHOUSE_UPGRADE naming gatehouse's parent (what a stale variable in a shell would name) and
    # descriptors that are no listening sockets: gatehouse starts as usual, binds its own socket, and the
    # named "old master", a shell that notes every SIGTERM, gets none.
    b = ctx.backend()
    certs = ctx.session.certs()
    port = free_port()
    mark = os.path.join(ctx.dir, "sigterm.txt")
    errp = os.path.join(ctx.dir, "gatehouse.stderr")
    script = ('trap "echo TERM >> %s" TERM; exec 5</dev/null; '
              'GATEHOUSE_UPGRADE="$$;5=127.0.0.1:%d;tickets=5" "$0" --listen 127.0.0.1:%d --cert %s --key %s '
              '--to 127.0.0.1:%d --workers 1 2>%s & '
              'while :; do wait; done') % (mark, port, port, certs["ec_cert"], certs["ec_key"], b.port, errp)
    sh = ctx.popen(["sh", "-c", script, harness.GATEHOUSE], stdin=subprocess.DEVNULL)
    try:
        check(wait_until(lambda: one_request(port, True, 2 * T) == "ok", 15 * T),
              "gatehouse did not serve: %s" % (open(errp).read()[-500:] if os.path.exists(errp) else ""))
        time.sleep(0.3 * T)
        check(not os.path.exists(mark), "the shell named by GATEHOUSE_UPGRADE got a SIGTERM")
        check("passes no listening socket: ignored" in open(errp).read(), "no warning: %s" % open(errp).read()[-500:])
    finally:
        for pid in children(sh.pid):
            stop_pid(pid, 10 * T)
