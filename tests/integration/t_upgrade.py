"""Binary upgrade (SIGUSR2, src/main/upgrade.h): a new gatehouse binary takes over the listening
sockets of the running master; under a load loop of plain and TLS requests, each on a new
connection, no request fails and no connection is refused; the new master serves, the old one
and its workers are gone after the drain. A new master that cannot start leaves the old one
serving. And the drain that makes this possible: a connection accepted before SIGTERM but not yet
given its request is served, not closed.
"""
import os
import shutil
import signal
import socket
import ssl
import threading
import time

import harness
from harness import T, Fail, alive, check, children, client_context, eq, test, wait_until


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


def start_copy(ctx, b, workers=2, env=None):
    """gatehouse -c, run from a copy of the binary in the test's directory (the file an upgrade replaces)."""
    exe = os.path.join(ctx.dir, "gatehouse")
    shutil.copy2(harness.GATEHOUSE, exe)
    certs = ctx.session.certs()
    saved = harness.GATEHOUSE
    harness.GATEHOUSE = exe  # GatehouseConf runs harness.GATEHOUSE
    try:
        gh = ctx.gatehouse_config(
            lambda ports: conf_text(ports[0], ports[1], b.port, workers) % dict(cert=certs["ec_cert"],
                                                                                key=certs["ec_key"]),
            nports=2, env=env)
    finally:
        harness.GATEHOUSE = saved
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


def masters_of(exe):
    """PIDs of the processes running `exe` whose parent does not: the masters."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
            with open("/proc/%s/stat" % d) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if argv0 != exe or proc_state(int(d)) == "Z":
            continue
        try:
            with open("/proc/%d/cmdline" % ppid, "rb") as f:
                parent0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            parent0 = ""
        if parent0 != exe or ppid == int(d):
            pids.append(int(d))
        else:
            # a child of a master: a worker, or the new master of an upgrade (then it has children)
            if children(int(d)) and len(open("/proc/%s/cmdline" % d, "rb").read().split(b"\0")) > 2 \
                    and any(children(c) == [] for c in children(int(d))):
                pids.append(int(d))
    return sorted(set(pids))


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
        s.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
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

def fresh_connection_survives_sigterm(ctx, tls):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda ports: conf_text(ports[0], ports[1], b.port, 1) % dict(
        cert=ctx.session.certs()["ec_cert"], key=ctx.session.certs()["ec_key"]), nports=2)
    port = gh.ports[0] if tls else gh.ports[1]
    raw = socket.create_connection(("127.0.0.1", port), timeout=5 * T)
    s = raw
    try:
        if tls == "handshake done":
            s = client_context().wrap_socket(raw, server_hostname="localhost")
        # accepted (the worker holds it: its handshake or first head is awaited), not yet asked anything
        time.sleep(0.3 * T)  # the worker accepts it meanwhile
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
