"""Reload (SIGHUP) that cuts nothing: the workers (same PIDs) switch to the new configuration;
new exchanges use it, exchanges in flight finish on the old one; listeners added and removed;
certificates re-read; an invalid file changes nothing and logs FILE:LINE: reason. Under a load
loop, 20 reloads fail no request; 200 reloads do not grow memory.

Reloads are asynchronous. A test knows one is applied in a worker from a probe: a keep-alive
connection held on that worker (found through /proc) asking `GET /gen`, a route whose fixed
answer changes with every configuration written.
"""
import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (SLOW, T, Closed, Conn, Fail, GATEHOUSE, build_request, check, children, client_context,
                     eq, free_port, get, protocol, request, rss_kib, s_client, test, wait_until)
import pattern

NWORKERS = 2


# ---------------------------------------------------------------- helpers

def listening_inodes(port):
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[3] == "0A" and p[1].endswith(":%04X" % port):
                        out.add(p[9])
        except OSError:
            pass
    return out


def serving_workers(gh):
    """The children that hold the TLS listening socket: the workers (not the prober, which serves
    no client and may be restarted by a reload)."""
    targets = {"socket:[%s]" % i for i in listening_inodes(gh.port)}
    out = []
    for w in children(gh.pid):
        try:
            fds = os.listdir("/proc/%d/fd" % w)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (w, fd)) in targets:
                    out.append(w)
                    break
            except OSError:
                pass
    return sorted(out)


def start(ctx, make_text):
    """gatehouse -c FILE with make_text(port of the TLS listener), ready when the listener completes
    a handshake and NWORKERS workers hold it."""
    if not hasattr(ctx, "gatehouse_config"):
        raise Fail("harness has no gatehouse_config helper")
    gh = ctx.gatehouse_config(lambda ports: make_text(ports[0]), nports=1, wait=False)
    # A child that is not a worker (the prober) may be replaced by a reload: the tests check the
    # workers' PIDs themselves.
    gh.allow_worker_change = True
    deadline = time.monotonic() + 15 * T
    while not gh.handshake_ok():
        if gh.proc.poll() is not None:
            raise Fail("gatehouse -c exited at startup with code %s: %s" % (gh.proc.returncode, gh.stderr()[-800:]))
        if time.monotonic() > deadline:
            raise Fail("gatehouse -c: the TLS listener did not complete a handshake within %.0fs" % (15 * T))
        time.sleep(0.05)
    ok = wait_until(lambda: len(serving_workers(gh)) == NWORKERS, 10 * T)
    check(ok, "gatehouse -c: %d workers hold the listener, want %d (children %s)"
          % (len(serving_workers(gh)), NWORKERS, children(gh.pid)))
    return gh


def write_conf(gh, text, path=None):
    """Replaces the configuration file atomically: the master never reads half a file."""
    path = path or gh.conf_path
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def hup(gh):
    os.kill(gh.pid, signal.SIGHUP)


def server_socket_inode(gh_port, client_port):
    """Inode of gatehouse's side of the loopback connection from client_port to gh_port."""
    want_local = ":%04X" % gh_port
    want_rem = ":%04X" % client_port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if p[1].endswith(want_local) and p[2].endswith(want_rem) and p[9] != "0":
                        return p[9]
        except OSError:
            pass
    return None


def worker_of(gh, sock, timeout=2.0):
    """The PID of the worker that holds the accepted side of our socket, or None."""
    client_port = sock.getsockname()[1]
    gh_port = sock.getpeername()[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inode = server_socket_inode(gh_port, client_port)
        if inode:
            target = "socket:[%s]" % inode
            for w in serving_workers(gh):
                try:
                    fds = os.listdir("/proc/%d/fd" % w)
                except OSError:
                    continue
                for fd in fds:
                    try:
                        if os.readlink("/proc/%d/fd/%s" % (w, fd)) == target:
                            return w
                    except OSError:
                        pass
        time.sleep(0.01)
    return None


def workers_of(gh, gh_port, socks, timeout=2.0):
    """{socket: worker pid} for the sockets whose accepted side a worker holds. /proc is read once per
    round for all of them: on a loaded machine the tables are long, and reading them once per socket
    kept the first sockets of a burst waiting past gatehouse's handshake timeout."""
    want = {}
    for s in socks:
        try:
            want[s.getsockname()[1]] = s
        except OSError:
            pass
    found = {}
    workers = serving_workers(gh)
    deadline = time.monotonic() + timeout
    while want and time.monotonic() < deadline:
        inodes = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    next(f)
                    for line in f:
                        p = line.split()
                        if p[1].endswith(":%04X" % gh_port) and p[9] != "0":
                            s = want.get(int(p[2].rsplit(":", 1)[1], 16))
                            if s is not None:
                                inodes["socket:[%s]" % p[9]] = s
            except OSError:
                pass
        for w in workers if inodes else ():
            try:
                fds = os.listdir("/proc/%d/fd" % w)
            except OSError:
                continue
            for fd in fds:
                try:
                    s = inodes.get(os.readlink("/proc/%d/fd/%s" % (w, fd)))
                except OSError:
                    continue
                if s is not None and s not in found:
                    found[s] = w
                    want.pop(s.getsockname()[1], None)
        if want:
            time.sleep(0.01)
    return found


def raw_per_worker(gh, per_worker=1, port=None, tries=30, wrap=False):
    """{worker pid: [socket, ...]}: plain TCP connections (no TLS yet), per_worker accepted by each
    worker. Idle workers share accepts unevenly (EPOLLEXCLUSIVE wakes the last waiter), so the
    connections are opened in bursts until every worker has its share. wrap: each kept socket becomes
    a TLS Conn as soon as its worker is known."""
    port = port or gh.port
    workers = serving_workers(gh)
    out = {w: [] for w in workers}
    for _ in range(tries):
        if all(len(v) >= per_worker for v in out.values()):
            break
        burst = []
        for i in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            burst.append(s)
        for s in burst:
            s.setblocking(True)
            s.settimeout(5 * T)
        owner = workers_of(gh, port, burst)
        for s in burst:
            w = owner.get(s)
            if w in out and len(out[w]) < per_worker:
                out[w].append(conn_over(s, port) if wrap else s)
            else:
                s.close()
    missing = [w for w, v in out.items() if len(v) < per_worker]
    if missing:
        for v in out.values():
            for s in v:
                s.close()
        raise Fail("could not get %d connection(s) on every worker in %d bursts (workers %s, short on %s)"
                   % (per_worker, tries, workers, missing))
    return out


def conn_over(raw, port, timeout=None):
    """A harness Conn over an already connected TCP socket (HTTP/2 in a dual test's h2 run)."""
    if protocol() == "h2":
        import h2raw
        return h2raw.H2Client(port, timeout=timeout, sock=raw)
    c = Conn.__new__(Conn)
    c.timeout = timeout or 5 * T
    raw.settimeout(c.timeout)
    c.attach(client_context().wrap_socket(raw, server_hostname="localhost"), port)
    return c


def conns_per_worker(gh, per_worker=1):
    """{worker pid: [Conn, ...]}: TLS keep-alive connections, per_worker on each worker."""
    return raw_per_worker(gh, per_worker, wrap=True)


class Probes:
    """One keep-alive connection per worker asking GET /gen: tells when a reload is applied everywhere."""

    def __init__(self, gh):
        self.gh = gh
        self.conns = {w: v[0] for w, v in conns_per_worker(gh).items()}

    def gens(self):
        out = {}
        for w, c in self.conns.items():
            r = c.request("GET", "/gen")
            eq(r.status, 200, "GET /gen on the probe connection of worker %d" % w)
            out[w] = r.body.decode(errors="replace")
        return out

    def wait(self, gen, timeout=None, what="reload"):
        """Waits until every worker answers gen; fails after timeout."""
        timeout = timeout or 5 * T
        deadline = time.monotonic() + timeout
        while True:
            got = self.gens()
            if all(v == gen for v in got.values()):
                return
            if time.monotonic() > deadline:
                raise Fail("%s not applied in every worker within %.1fs: /gen answers %s, want %r"
                           % (what, timeout, got, gen))
            time.sleep(0.005)

    def close(self):
        for c in self.conns.values():
            c.close()


def new_id(port, path="/id"):
    r = request(port, "GET", path)
    eq(r.status, 200, "GET %s on a new connection" % path)
    return r.body.decode(errors="replace")


def subject_of_der(der):
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                       capture_output=True, timeout=10)
    return r.stdout.decode(errors="replace").strip()


def make_cert(d, name, cn):
    cert, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "3", "-subj", "/CN=" + cn,
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       capture_output=True, timeout=30)
    check(r.returncode == 0, "openssl req failed: %s" % r.stderr[-300:])
    with open(cert, "rb") as f1, open(key, "rb") as f2:
        return f1.read(), f2.read()


def replace_file(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def check_t(path):
    """gatehouse -t -c path: (exit code, output)."""
    r = subprocess.run([GATEHOUSE, "-t", "-c", path], capture_output=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def crash_lines(gh):
    """Log lines of a worker that died (a crash: the workers are never replaced by a reload)."""
    return [ln for ln in gh.stderr().splitlines() if re.search(r"killed by signal|exited with|exited unexpectedly", ln)]


def error_lines(gh, allow=r"reload failed, keeping the running configuration"):
    """[error] lines, but for the expected refusal of an invalid file."""
    return [ln for ln in gh.stderr().splitlines() if "[error]" in ln and not re.search(allow, ln)]


def check_clean(gh):
    """No worker died, nothing went wrong: valid reloads log no errors."""
    bad = crash_lines(gh) + error_lines(gh)
    check(not bad, "gatehouse logged %d problem(s) across the reloads: %s" % (len(bad), " | ".join(bad[:6])))


def reload_lines(gh):
    return [ln for ln in gh.stderr().splitlines() if re.search(r"reload", ln, re.I)]


BASE = """\
workers %(workers)d
log_level info
listen 127.0.0.1:%(port)d tls

%(pools)s
site default {
    cert %(cert)s %(key)s
    route / { proxy %(pool)s }
    route /gen { respond 200 %(gen)s }
}
"""


def base_conf(ctx, port, b1, b2, pool, gen, cert=None, key=None):
    certs = ctx.session.certs()
    return BASE % dict(
        workers=NWORKERS, port=port, pool=pool, gen=gen,
        cert=cert or certs["ec_cert"], key=key or certs["ec_key"],
        pools="pool pa {\n    server 127.0.0.1:%d\n}\npool pb {\n    server 127.0.0.1:%d\n}\n" % (b1.port, b2.port))


# ---------------------------------------------------------------- 1. routes

@test("reload_switches_routes", dual=True)
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    gh = start(ctx, lambda port: base_conf(ctx, port, b1, b2, "pa", "gen-1"))
    workers = serving_workers(gh)
    eq(len(workers), NWORKERS, "workers")
    for i in range(4):
        eq(new_id(gh.port), "b1", "before the reload, request %d" % (i + 1))
    probes = Probes(gh)
    # Idle keep-alive connections on every worker, opened (and used) before the reload.
    kept = conns_per_worker(gh, per_worker=2)
    for w, cs in kept.items():
        for c in cs:
            eq(c.request("GET", "/id").body, b"b1", "keep-alive connection on worker %d before the reload" % w)

    write_conf(gh, base_conf(ctx, gh.port, b1, b2, "pb", "gen-2"))
    hup(gh)
    probes.wait("gen-2")

    for w, cs in kept.items():
        for i, c in enumerate(cs):
            try:
                r = c.request("GET", "/id")
            except Closed as e:
                raise Fail("keep-alive connection %d on worker %d was closed by the reload: %s" % (i + 1, w, e))
            eq((r.status, r.body), (200, b"b2"),
               "next request on keep-alive connection %d of worker %d after the reload" % (i + 1, w))
    for i in range(10):
        eq(new_id(gh.port), "b2", "after the reload, request %d on a new connection" % (i + 1))
    eq(serving_workers(gh), workers, "worker PIDs after the reload (they are not replaced)")
    check(gh.proc.poll() is None, "the master exited")

    # And back: the switch works both ways, still the same workers.
    write_conf(gh, base_conf(ctx, gh.port, b1, b2, "pa", "gen-3"))
    hup(gh)
    probes.wait("gen-3")
    for w, cs in kept.items():
        eq(cs[0].request("GET", "/id").body, b"b1", "keep-alive connection on worker %d after reload 2" % w)
    for i in range(4):
        eq(new_id(gh.port), "b1", "after reload 2, request %d on a new connection" % (i + 1))
    eq(serving_workers(gh), workers, "worker PIDs after two reloads")
    check_clean(gh)
    for cs in kept.values():
        for c in cs:
            c.close()
    probes.close()
    ctx.info = "reload log lines: %d" % len(reload_lines(gh))


# ---------------------------------------------------------------- 2. invalid files

@test("reload_invalid_keeps_old")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    gh = start(ctx, lambda port: base_conf(ctx, port, b1, b2, "pa", "gen-1"))
    workers = serving_workers(gh)
    probes = Probes(gh)
    kept = Conn(gh.port)
    eq(kept.request("GET", "/id").body, b"b1", "keep-alive connection before")
    old_subject = None
    rc, out = s_client(gh.port, [], input=b"")
    m = re.search(r"subject=.*", out)
    old_subject = m.group(0) if m else None

    good_b = base_conf(ctx, gh.port, b1, b2, "pb", "gen-2")
    certs = ctx.session.certs()
    broken = []
    # A syntax error: an unknown directive (in the middle of a file that would route to b2).
    lines = good_b.splitlines(True)
    i = next(k for k, ln in enumerate(lines) if ln.startswith("site default"))
    broken.append(("unknown directive", "".join(lines[:i + 1] + ["    bogus_directive 1\n"] + lines[i + 1:])))
    # An error found after reading everything: an unknown pool.
    broken.append(("unknown pool", good_b.replace("proxy pb", "proxy nosuchpool")))
    # A certificate file that is not a certificate (found when the TLS contexts are built).
    broken.append(("garbage certificate", base_conf(ctx, gh.port, b1, b2, "pb", "gen-2", cert=certs["garbage"])))
    # A duplicate listener.
    broken.append(("duplicate listener", good_b.replace("listen 127.0.0.1:%d tls\n" % gh.port,
                                                        "listen 127.0.0.1:%d tls\nlisten 127.0.0.1:%d tls\n"
                                                        % (gh.port, gh.port))))
    seen_lines = []
    for what, text in broken:
        path = os.path.join(ctx.dir, "broken.conf")
        write_conf(gh, text, path)
        rc, out = check_t(path)
        eq(rc, 1, "gatehouse -t on the file with a %s (%s)" % (what, out.strip()))
        m = re.search(re.escape(path) + r":(\d+): \S.*", out)
        check(m, "gatehouse -t output for a %s has no %s:LINE: reason: %r" % (what, path, out))
        # The same error, about the file the master reads.
        want = m.group(0).strip().replace(path, gh.conf_path)
        before = gh.stderr()
        write_conf(gh, text)  # the real file now holds the broken text
        hup(gh)
        ok = wait_until(lambda: want in gh.stderr()[len(before):], 5 * T)
        new = gh.stderr()[len(before):]
        check(ok, "after SIGHUP with a %s, the log has no line with %r; new log: %r" % (what, want, new[-600:]))
        line = next(ln for ln in new.splitlines() if want in ln)
        check(re.search(re.escape(gh.conf_path) + r":\d+: ", line),
              "the reload error names the file and line: %r" % line)
        seen_lines.append(line)
        # Nothing changed: the old routes, the same workers, the old certificate.
        time.sleep(0.2)
        eq(probes.gens(), {w: "gen-1" for w in workers}, "/gen on every worker after a %s" % what)
        for k in range(6):
            eq(new_id(gh.port), "b1", "request %d on a new connection after a reload with a %s" % (k + 1, what))
        eq(kept.request("GET", "/id").body, b"b1", "keep-alive connection after a reload with a %s" % what)
        eq(serving_workers(gh), workers, "worker PIDs after a reload with a %s" % what)
        check(gh.proc.poll() is None, "the master exited after a reload with a %s" % what)
        if old_subject:
            rc, out = s_client(gh.port, [], input=b"")
            m = re.search(r"subject=.*", out)
            eq(m.group(0) if m else None, old_subject, "certificate subject after a reload with a %s" % what)

    # Fixed: the next reload applies.
    write_conf(gh, good_b)
    hup(gh)
    probes.wait("gen-2", what="the reload of the fixed file")
    eq(kept.request("GET", "/id").body, b"b2", "keep-alive connection after the fixed reload")
    for k in range(6):
        eq(new_id(gh.port), "b2", "request %d on a new connection after the fixed reload" % (k + 1))
    eq(serving_workers(gh), workers, "worker PIDs after the fixed reload")
    check_clean(gh)
    kept.close()
    probes.close()
    ctx.info = "logged: " + seen_lines[0][-100:]


# ---------------------------------------------------------------- 3. listeners

def plain_get(port, path="/id", timeout=None):
    """GET on a plain HTTP connection: (status, body) or 'refused' or an error string."""
    timeout = timeout or 3 * T
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "connect error %s" % e
    try:
        s.sendall(build_request("GET", path, [("Connection", "close")], host="localhost:%d" % port))
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    except socket.timeout:
        return "timeout (%r)" % data[:100]
    except OSError as e:
        return "error %s (%r)" % (e, data[:100])
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/1\.1 (\d{3})", head)
    if not m:
        return "bad answer %r" % data[:100]
    return int(m.group(1)), body


LISTENERS = """\
workers %(workers)d
log_level info
listen 127.0.0.1:%(port)d tls
%(plain_listen)s
pool pa {
    server 127.0.0.1:%(b1)d
}
pool pb {
    server 127.0.0.1:%(b2)d
}
site default {
    listen 127.0.0.1:%(port)d
    cert %(cert)s %(key)s
    route / { proxy pa }
    route /gen { respond 200 %(gen)s }
}
%(plain_site)s"""


@test("reload_listeners")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    certs = ctx.session.certs()
    plain = free_port()

    def text(port, with_plain, gen):
        return LISTENERS % dict(
            workers=NWORKERS, port=port, b1=b1.port, b2=b2.port, gen=gen, cert=certs["ec_cert"],
            key=certs["ec_key"],
            plain_listen="listen 127.0.0.1:%d\n" % plain if with_plain else "",
            plain_site=("site default {\n    listen 127.0.0.1:%d\n    route / { proxy pb }\n"
                        "    route /gen { respond 200 %s }\n}\n" % (plain, gen)) if with_plain else "")

    gh = start(ctx, lambda port: text(port, False, "gen-1"))
    workers = serving_workers(gh)
    eq(plain_get(plain), "refused", "the plain port before it is configured")
    probes = Probes(gh)

    write_conf(gh, text(gh.port, True, "gen-2"))
    hup(gh)
    probes.wait("gen-2")
    got = wait_until(lambda: plain_get(plain) != "refused", 3 * T)
    r = plain_get(plain)
    eq(r, (200, b"b2"), "GET /id on the listener added by the reload (127.0.0.1:%d)" % plain)
    for i in range(6):
        eq(plain_get(plain), (200, b"b2"), "request %d on the added listener" % (i + 1))
    eq(new_id(gh.port), "b1", "the TLS listener after the listener was added")
    # A keep-alive connection on the plain listener, to be open when it is removed.
    ka = socket.create_connection(("127.0.0.1", plain), timeout=3 * T)
    ka.sendall(build_request("GET", "/id", host="localhost"))
    first = ka.recv(65536)
    check(first.startswith(b"HTTP/1.1 200") and first.endswith(b"b2"), "keep-alive on the plain listener: %r" % first)

    write_conf(gh, text(gh.port, False, "gen-3"))
    hup(gh)
    probes.wait("gen-3")
    ok = wait_until(lambda: plain_get(plain) == "refused", 3 * T)
    check(ok, "the removed listener 127.0.0.1:%d still accepts after the reload: %r" % (plain, plain_get(plain)))
    for i in range(5):
        eq(plain_get(plain), "refused", "connection %d to the removed listener" % (i + 1))
    eq(new_id(gh.port), "b1", "the TLS listener after the plain one was removed")
    ka.close()

    # Added again: the port can be bound again.
    write_conf(gh, text(gh.port, True, "gen-4"))
    hup(gh)
    probes.wait("gen-4")
    wait_until(lambda: plain_get(plain) != "refused", 3 * T)
    eq(plain_get(plain), (200, b"b2"), "the listener added a second time")
    eq(serving_workers(gh), workers, "worker PIDs after the listener reloads")
    check_clean(gh)
    probes.close()
    ctx.info = "plain listener 127.0.0.1:%d added, removed, added again" % plain


# ---------------------------------------------------------------- 4. certificates

@test("reload_certificate")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    one = make_cert(ctx.dir, "one", "reload-one.test")
    two = make_cert(ctx.dir, "two", "reload-two.test")
    cert, key = os.path.join(ctx.dir, "site.pem"), os.path.join(ctx.dir, "site.key")
    replace_file(cert, one[0])
    replace_file(key, one[1])
    gh = start(ctx, lambda port: base_conf(ctx, port, b1, b2, "pa", "gen-1", cert=cert, key=key))
    workers = serving_workers(gh)

    def s_subject():
        rc, out = s_client(gh.port, [], input=b"")
        m = re.search(r"subject=.*", out)
        return m.group(0) if m else "(no subject in s_client output: %r)" % out[-300:]

    check("reload-one.test" in s_subject(), "the first certificate: %s" % s_subject())
    kept = Conn(gh.port)
    eq(kept.request("GET", "/id").body, b"b1", "keep-alive connection before")

    # Same configuration text, new files on disk.
    replace_file(cert, two[0])
    replace_file(key, two[1])
    hup(gh)
    ok = wait_until(lambda: "reload-two.test" in s_subject(), 5 * T)
    check(ok, "after replacing the certificate files and SIGHUP, s_client still shows %s" % s_subject())
    # Every worker: a handshake on a connection known to be accepted by each one.
    for w, conns in raw_per_worker(gh, wrap=True).items():
        with conns[0] as c:
            subj = subject_of_der(c.s.getpeercert(binary_form=True))
        check("reload-two.test" in subj, "worker %d still presents %s after the reload" % (w, subj))
    for i in range(5):
        s = s_subject()
        check("reload-two.test" in s, "s_client handshake %d after the reload: %s" % (i + 1, s))
    eq(kept.request("GET", "/id").body, b"b1", "the connection opened before the reload still works")
    eq(serving_workers(gh), workers, "worker PIDs")
    check_clean(gh)
    kept.close()
    ctx.info = s_subject()


# ---------------------------------------------------------------- 5. under load

LOAD = """\
workers %(workers)d
log_level info
listen 127.0.0.1:%(port)d tls

pool %(pool)s {
    server 127.0.0.1:%(b1)d weight=%(w1)d
    server 127.0.0.1:%(b2)d weight=%(w2)d
    balance %(balance)s
}
site default {
    cert %(cert)s %(key)s
    route / { proxy %(pool)s }
    route /gen { respond 200 %(gen)s }
}
"""


class Loader:
    """A client thread: GET /small in a loop until stop, recording every failure."""

    def __init__(self, port, mode, stop):
        self.port, self.mode, self.stop = port, mode, stop
        self.ok = 0
        self.failures = []
        self.reconnects = 0
        self.backends = set()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def fail(self, what):
        self.failures.append("%s: %s" % (self.mode, what))

    def run(self):
        c = None
        used = 0
        while not self.stop.is_set():
            try:
                if c is None:
                    c = Conn(self.port, timeout=5 * T)
                    used = 0
                r = c.request("GET", "/small")
                used += 1
                if r.status != 200 or r.body != pattern.SMALL:
                    self.fail("status %d, %d bytes" % (r.status, len(r.body)))
                else:
                    self.ok += 1
                    self.backends.add(r.get("X-Backend"))
                close = "close" in (r.get("connection") or "").lower()
                if close:
                    self.reconnects += 1
                if close or self.mode == "new" or (self.mode == "mixed" and used >= 5):
                    c.close()
                    c = None
            except (Fail, OSError, ssl.SSLError) as e:
                self.fail("%s after %d requests on the connection" % (e, used))
                if c is not None:
                    c.close()
                c = None
                time.sleep(0.01)
        if c is not None:
            c.close()


@test("reload_under_load", timeout=90)
def _(ctx):
    b1, b2 = ctx.backend("b1", raw_max=1 << 16), ctx.backend("b2", raw_max=1 << 16)
    certs = ctx.session.certs()
    variants = [dict(pool="pa", w1=1, w2=3, balance="round_robin"),
                dict(pool="pb", w1=5, w2=1, balance="least_conn")]

    def text(port, i):
        v = variants[i % 2]
        return LOAD % dict(v, workers=NWORKERS, port=port, b1=b1.port, b2=b2.port, gen="gen-%d" % i,
                           cert=certs["ec_cert"], key=certs["ec_key"])

    gh = start(ctx, lambda port: text(port, 0))
    workers = serving_workers(gh)
    probes = Probes(gh)
    stop = threading.Event()
    loaders = [Loader(gh.port, m, stop) for m in ("keepalive", "new", "mixed")]
    t0 = time.monotonic()
    time.sleep(0.3)
    n = 20
    apply_times = []
    reload_error = None
    try:
        for i in range(1, n + 1):
            write_conf(gh, text(gh.port, i))
            t1 = time.monotonic()
            hup(gh)
            probes.wait("gen-%d" % i, what="reload %d" % i)
            apply_times.append(time.monotonic() - t1)
            # Spread the 20 reloads over about 5 seconds.
            time.sleep(max(0.0, t0 + 0.3 + i * 0.24 - time.monotonic()))
        time.sleep(0.3)
    except Fail as e:
        reload_error = "reload %d: %s" % (len(apply_times) + 1, e)
    finally:
        stop.set()
        for ld in loaders:
            ld.t.join(10 * T)
    secs = time.monotonic() - t0
    total = sum(ld.ok for ld in loaders)
    failures = [f for ld in loaders for f in ld.failures]
    ctx.info = "%d requests in %.1fs across %d reloads, %d failed, %d graceful reconnects; apply %.0f-%.0f ms" % (
        total, secs, len(apply_times), len(failures), sum(ld.reconnects for ld in loaders),
        1000 * min(apply_times or [0]), 1000 * max(apply_times or [0]))
    problems = crash_lines(gh) + [ln for ln in error_lines(gh)]
    check(not failures and reload_error is None and not problems,
          "%d failed client requests during %d reloads (%d applied)%s%s%s" % (
              len(failures), n, len(apply_times), ", first ones: " + "; ".join(failures[:8]) if failures else "",
              "; the reloads stopped: " + reload_error if reload_error else "",
              "; gatehouse logged: " + " | ".join(problems[:6]) if problems else ""))
    for ld in loaders:
        check(not ld.t.is_alive(), "load thread %s did not stop" % ld.mode)
        check(ld.ok >= 20, "load thread %s completed only %d requests" % (ld.mode, ld.ok))
    backends = set().union(*(ld.backends for ld in loaders))
    check({"b1", "b2"} <= backends, "requests reached %s, want both backends" % backends)
    eq(serving_workers(gh), workers, "worker PIDs after the reloads")
    probes.close()


# ---------------------------------------------------------------- 6. a long stream across reloads

@test("reload_long_stream", timeout=120)
def _(ctx):
    size = (64 << 20) if SLOW else (256 << 20)
    b1, b2 = ctx.backend("b1", raw_max=1 << 16), ctx.backend("b2", raw_max=1 << 16)
    gh = start(ctx, lambda port: base_conf(ctx, port, b1, b2, "pa", "gen-0"))
    workers = serving_workers(gh)
    probes = Probes(gh)
    want = pattern.sha256(size)

    down = Conn(gh.port, timeout=30 * T)
    down.send(build_request("GET", "/download?size=%d" % size))
    # The head, then the body read slowly in a thread (about 3 s), while the reloads happen.
    head = []
    while True:
        line = down._line()
        if line == b"":
            break
        head.append(line)
    check(head and head[0].startswith(b"HTTP/1.1 200"), "download head: %r" % head[:3])
    cl = [ln.split(b":", 1)[1].strip() for ln in head if ln.lower().startswith(b"content-length:")]
    eq(cl, [str(size).encode()], "download Content-Length")
    got = {"n": 0, "err": None, "sha": None}

    def reader():
        h = hashlib.sha256()
        n = 0
        paced = 0
        try:
            while n < size:
                if not down.buf and not down._fill():
                    break
                k = min(len(down.buf), size - n)
                h.update(down.buf[:k])
                del down.buf[:k]
                n += k
                got["n"] = n
                # The first half is read slowly (about 2.5 s), so that the reloads happen mid-stream.
                while n < size // 2 and n - paced >= 1 << 20:
                    paced += 1 << 20
                    time.sleep(2.5 / ((size >> 20) // 2))
        except Exception as e:  # noqa: BLE001
            got["err"] = e
        got["n"] = n
        got["sha"] = h.hexdigest()

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    # And a slow exchange in flight on the old configuration.
    slow_res = {}

    def slow():
        try:
            with Conn(gh.port, timeout=15 * T) as c:
                slow_res["r"] = c.request("GET", "/slowbody?ms=1500")
        except Exception as e:  # noqa: BLE001
            slow_res["r"] = e

    st = threading.Thread(target=slow, daemon=True)
    st.start()
    check(wait_until(lambda: any(e["target"].startswith("/slowbody") for e in b1.requests()), 5 * T),
          "the slow request did not reach b1")
    check(wait_until(lambda: got["n"] > 0, 5 * T), "the download did not start")

    for i in range(1, 5):
        write_conf(gh, base_conf(ctx, gh.port, b1, b2, "pb" if i % 2 else "pa", "gen-%d" % i))
        hup(gh)
        probes.wait("gen-%d" % i, what="reload %d" % i)
        if i == 1:
            at_reload = got["n"]
            eq(new_id(gh.port), "b2", "a new request after the first reload")
        time.sleep(0.2)
    check(at_reload < size, "the download finished before the first reload was applied (test too fast)")
    rt.join(120 * T)
    check(not rt.is_alive(), "the download did not finish")
    check(got["err"] is None, "the download failed after %d of %d bytes: %s" % (got["n"], size, got["err"]))
    eq(got["n"], size, "bytes of the download started before the reloads")
    eq(got["sha"], want, "sha256 of the download started before the reloads")
    st.join(15 * T)
    r = slow_res.get("r")
    check(not isinstance(r, Exception) and r is not None, "the slow exchange in flight across a reload: %r" % (r,))
    eq((r.status, r.body), (200, b"slow body\n"), "the slow exchange in flight across a reload")
    check(not any(e["target"].startswith(("/download", "/slowbody")) for e in b2.requests()),
          "an exchange started before the reload was (also) sent to b2")
    # The download's connection is still usable, and its next exchange uses the newest config (gen-4: pool pa).
    r = down.request("GET", "/id")
    eq((r.status, r.body), (200, b"b1"), "the next request on the download's keep-alive connection (config gen-4: pa)")
    down.close()
    eq(serving_workers(gh), workers, "worker PIDs")
    check_clean(gh)
    probes.close()
    ctx.info = "%d MiB download, %.0f MiB read when the first reload was applied, intact" % (
        size >> 20, at_reload / (1 << 20))


# ---------------------------------------------------------------- 7. memory across 200 reloads

MEM_SITES = 8


def mem_conf(ctx, port, b1, b2, gen):
    certs = ctx.session.certs()
    out = ["workers %d" % NWORKERS, "log_level info", "listen 127.0.0.1:%d tls" % port, ""]
    for p in range(4):
        out += ["pool p%d {" % p, "    server 127.0.0.1:%d weight=%d" % (b1.port, p + 1),
                "    server 127.0.0.1:%d" % b2.port, "    balance %s" % ("round_robin", "least_conn", "p2c", "random")[p],
                "}"]
    for s in range(MEM_SITES):
        out += ["site s%d.example.com *.s%d.example.com {" % (s, s), "    cert %s %s" % (certs["ec_cert"], certs["ec_key"])]
        for r in range(20):
            out.append("    route /r%d/ { proxy p%d strip_prefix; request_header set X-Site s%d; timeout response 30s }"
                       % (r, (s + r) % 4, s))
        out += ["    route / { respond 200 site-%d }" % s, "}"]
    out += ["site default {", "    cert %s %s" % (certs["rsa_cert"], certs["rsa_key"]),
            "    cert %s %s" % (certs["ec_cert"], certs["ec_key"]),
            "    route / { proxy p%d }" % (gen % 4),
            "    route /gen { respond 200 gen-%d }" % gen, "}", ""]
    return "\n".join(out)


def tree_rss(gh):
    """VmRSS of every process of the tree: master, workers and the prober."""
    return {p: rss_kib(p) for p in [gh.pid] + children(gh.pid)}


@test("reload_memory", timeout=120)
def _(ctx):
    # The first reloads raise the heap's high-water mark once (two generations live side by side
    # while the old one drains): growth is measured from a baseline taken after WARM reloads, and
    # the RSS before any reload is reported too.
    # Under sanitizers (SLOW) a reload costs ten times more and RSS means little (quarantine,
    # shadow memory): fewer reloads, RSS reported but not limited; LeakSanitizer judges at exit.
    n = 50 if SLOW else 200
    warm = 10
    limit_kib = 4 * 1024
    b1, b2 = ctx.backend("b1", raw_max=1 << 16), ctx.backend("b2", raw_max=1 << 16)
    gh = start(ctx, lambda port: mem_conf(ctx, port, b1, b2, 0))
    workers = serving_workers(gh)
    probes = Probes(gh)
    kept = Conn(gh.port)

    def traffic(k):
        for i in range(k):
            eq(kept.request("GET", "/small").status, 200, "keep-alive GET /small")
            with Conn(gh.port) as c:
                eq(c.request("GET", "/small").status, 200, "new-connection GET /small")
            with Conn(gh.port, sni="s3.example.com") as c:
                r = c.request("GET", "/r1/id", host="s3.example.com")
                eq(r.status, 200, "GET /r1/id on site s3.example.com")

    gen = [0]

    def reload_once():
        gen[0] += 1
        write_conf(gh, mem_conf(ctx, gh.port, b1, b2, gen[0]))
        hup(gh)
        probes.wait("gen-%d" % gen[0], what="reload %d" % gen[0])
        eq(kept.request("GET", "/small").status, 200, "keep-alive GET /small after reload %d" % gen[0])
        if gen[0] % 10 == 0:
            traffic(1)

    traffic(30)
    time.sleep(0.3)
    cold = tree_rss(gh)
    for i in range(warm):
        reload_once()
    traffic(30)
    time.sleep(0.3)
    before = tree_rss(gh)
    t0 = time.monotonic()
    for i in range(n):
        reload_once()
        if time.monotonic() - t0 > 60 * T:
            raise Fail("only %d reloads in %.0fs" % (i + 1, 60 * T))
    secs = time.monotonic() - t0
    traffic(30)
    time.sleep(0.3)
    after = tree_rss(gh)
    kept.close()
    probes.close()
    eq(serving_workers(gh), workers, "worker PIDs after %d reloads" % (n + warm))
    check_clean(gh)
    c, b, a = sum(cold.values()), sum(before.values()), sum(after.values())

    def label(p):
        return "master" if p == gh.pid else ("worker %d" % p if p in workers else "other child %d" % p)

    per = ", ".join("%s %s/%s/%s" % (label(p), cold.get(p, "-"), before.get(p, "-"), after.get(p, "-"))
                    for p in sorted(set(cold) | set(before) | set(after)))
    ctx.info = ("%d reloads in %.1fs; RSS of the process tree: %.1f MiB before any reload, %.1f MiB after %d "
                "warm-up reloads, %.1f MiB after %d more: growth %+d KiB (limit %d) [cold/warm/after KiB: %s]") % (
        n, secs, c / 1024, b / 1024, warm, a / 1024, n, a - b, limit_kib, per)
    if not SLOW:
        check(a - b < limit_kib, "gatehouse RSS grew by %d KiB across %d reloads (limit %d KiB): %s"
              % (a - b, n, limit_kib, per))


# ---------------------------------------------------------------- 8. what a worker does at a reload

NAMED = """\
workers %(workers)d
log_level info
listen 127.0.0.1:%(port)d tls
include %(incdir)s/*.conf
site default {
    cert %(cert)s %(key)s
    route / { proxy named }
    route /gen { respond 200 %(gen)s }
}
"""


def named_setup(ctx, b1):
    """A file whose pool lives in an include (a glob) and names its server `localhost` (resolved through
    /etc/hosts), with a certificate of the test's own: every kind of input a reload reads."""
    incdir = os.path.join(ctx.dir, "conf.d")
    os.makedirs(incdir, exist_ok=True)
    with open(os.path.join(incdir, "pool.conf"), "w") as f:
        f.write("pool named {\n    server localhost:%d\n}\n" % b1.port)
    make_cert(ctx.dir, "named", "reload-named.test")
    cert, key = os.path.join(ctx.dir, "named.pem"), os.path.join(ctx.dir, "named.key")

    def text(port, gen):
        return NAMED % dict(workers=NWORKERS, port=port, incdir=incdir, cert=cert, key=key, gen=gen)
    return text, [os.path.join(incdir, "pool.conf"), cert, key]


class Strace:
    """strace attached to some processes only (the workers), syscalls to a file; stopped by its PID."""

    def __init__(self, ctx, pids, trace="openat,open,connect,sendto"):
        self.out = os.path.join(ctx.dir, "strace-%d.out" % len(ctx.others))
        self.err = open(self.out + ".stderr", "wb")
        argv = ["strace", "-f", "-e", "trace=" + trace, "-o", self.out]
        for p in pids:
            argv += ["-p", str(p)]
        self.p = ctx.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.err)
        ok = wait_until(lambda: self.attached() >= len(pids), 10 * T)
        check(ok, "strace attached to %d of %s" % (self.attached(), pids))

    def attached(self):
        with open(self.out + ".stderr", "rb") as f:
            return f.read().count(b"attached")

    def stop(self):
        self.p.send_signal(signal.SIGINT)
        self.p.wait(10 * T)
        self.err.close()
        with open(self.out, errors="replace") as f:
            return f.read().splitlines()


@test("reload_worker_reads_no_file_and_resolves_nothing")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    text, inputs = named_setup(ctx, b1)
    gh = start(ctx, lambda port: text(port, "gen-1"))
    eq(new_id(gh.port), "b1", "GET /id through the server given by name")
    probes = Probes(gh)
    workers = serving_workers(gh)
    st = Strace(ctx, workers)
    try:
        write_conf(gh, text(gh.port, "gen-2"))
        hup(gh)
        probes.wait("gen-2")
        eq(new_id(gh.port), "b1", "GET /id through the server given by name after the reload")
    finally:
        lines = st.stop()
    files = [gh.conf_path, os.path.dirname(inputs[0])] + inputs + ["/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf"]
    bad = [ln for ln in lines if re.search(r"\bopen(at)?\(", ln) and any('"%s"' % f in ln for f in files)]
    bad += [ln for ln in lines if re.search(r"\b(connect|sendto)\(", ln)
            and (re.search(r"htons\(53\)", ln) or "nscd" in ln)]
    check(not bad, "the workers %s read the configuration or resolved names at the reload: %d call(s): %s"
          % (workers, len(bad), " | ".join(bad[:6])))
    eq(serving_workers(gh), workers, "worker PIDs")
    check_clean(gh)
    probes.close()
    ctx.info = "%d system calls traced in the workers across the reload, none on the inputs" % len(lines)


# ---------------------------------------------------------------- 9. listeners matched by identity

IDENT = """\
workers %(workers)d
log_level info
%(listens)s
pool pa {
    server 127.0.0.1:%(b1)d
}
site default {
    cert %(cert)s %(key)s
    route / { proxy pa }
    route /gen { respond 200 %(gen)s }
}
"""


def plain_conn(port):
    """A plain HTTP keep-alive connection in a harness Conn (no TLS)."""
    from cfgutil import PlainConn
    return PlainConn(port)


class InFlight:
    """A slow exchange (/slowbody) started on one listener, finishing in a thread."""

    def __init__(self, b, port, tls, ms=1500):
        self.c = Conn(port, timeout=10 * T) if tls else plain_conn(port)
        self.res = None
        before = len([e for e in b.requests() if e["target"].startswith("/slowbody")])
        self.t = threading.Thread(target=self.run, args=(ms,), daemon=True)
        self.t.start()
        check(wait_until(lambda: len([e for e in b.requests() if e["target"].startswith("/slowbody")]) > before,
                         5 * T), "the slow request on port %d did not reach the backend" % port)

    def run(self, ms):
        try:
            self.res = self.c.request("GET", "/slowbody?ms=%d" % ms)
        except Exception as e:  # noqa: BLE001
            self.res = e

    def result(self):
        self.t.join(10 * T)
        r = self.res
        return (r.status, r.body) if hasattr(r, "status") else repr(r)


def serves(port, tls):
    if tls:
        try:
            return get(port, "/id").body
        except (Fail, OSError, ssl.SSLError) as e:
            return "error %s" % e
    r = plain_get(port)
    return r[1] if isinstance(r, tuple) else r


@test("reload_listeners_matched_by_identity")
def _(ctx):
    b1 = ctx.backend("b1")
    certs = ctx.session.certs()

    def text(ports, order, gen):
        # order: [(index into ports, tls)], written in that order
        listens = "\n".join("listen 127.0.0.1:%d%s" % (ports[i], " tls" if tls else "") for i, tls in order)
        return IDENT % dict(workers=NWORKERS, listens=listens, b1=b1.port, gen=gen, cert=certs["ec_cert"],
                            key=certs["ec_key"])

    first = [(0, True), (1, False), (2, False)]
    gh = ctx.gatehouse_config(lambda ports: text(ports, first, "gen-1"), nports=4)
    gh.allow_worker_change = True  # the prober is restarted by reloads; worker PIDs are checked below
    ports = gh.ports
    workers = serving_workers(gh)
    probes = Probes(gh)
    for i, tls in first:
        eq(serves(ports[i], tls), b"b1", "listener %d before the reload" % ports[i])

    # 1. The same set in another order: every listener keeps serving, every exchange in flight finishes.
    flights = {i: InFlight(b1, ports[i], tls) for i, tls in first}
    kept = {i: (Conn(ports[i]) if tls else plain_conn(ports[i])) for i, tls in first}
    for i, c in kept.items():
        eq(c.request("GET", "/id").body, b"b1", "keep-alive connection on %d before the reload" % ports[i])
    write_conf(gh, text(ports, [(2, False), (0, True), (1, False)], "gen-2"))
    hup(gh)
    probes.wait("gen-2")
    for i, tls in first:
        eq(serves(ports[i], tls), b"b1", "listener %d (%s) after the reordering reload" % (ports[i], "tls" if tls else "plain"))
        eq(flights[i].result(), (200, b"slow body\n"), "the exchange in flight on %d across the reordering" % ports[i])
        eq(kept[i].request("GET", "/id").body, b"b1", "keep-alive connection on %d after the reordering" % ports[i])

    # 2. One removed (port 1), one added (port 3), in the same reload; in flight on the others survive.
    flights = {i: InFlight(b1, ports[i], tls) for i, tls in [(0, True), (2, False)]}
    write_conf(gh, text(ports, [(3, False), (2, False), (0, True)], "gen-3"))
    hup(gh)
    probes.wait("gen-3")
    check(wait_until(lambda: plain_get(ports[1]) == "refused", 3 * T),
          "the removed listener %d still accepts: %r" % (ports[1], plain_get(ports[1])))
    check(wait_until(lambda: serves(ports[3], False) == b"b1", 3 * T),
          "the added listener %d: %r" % (ports[3], serves(ports[3], False)))
    for i, tls in [(0, True), (2, False), (3, False)]:
        for k in range(4):
            eq(serves(ports[i], tls), b"b1", "request %d on listener %d after the add/remove reload" % (k + 1, ports[i]))
    for i in (0, 2):
        eq(flights[i].result(), (200, b"slow body\n"), "the exchange in flight on %d across the add/remove" % ports[i])
        eq(kept[i].request("GET", "/id").body, b"b1", "keep-alive connection on %d after the add/remove" % ports[i])
    # A TLS listener is TLS still: a plain request to it gets no HTTP answer, a handshake works.
    check(not isinstance(plain_get(ports[0]), tuple), "the TLS listener answered plain HTTP after the reloads")
    eq(serving_workers(gh), workers, "worker PIDs")
    check_clean(gh)
    for c in kept.values():
        c.close()
    probes.close()
    ctx.info = "4 ports: reordered, then one removed and one added; in-flight exchanges intact"


@test("reload_worker_loads_what_the_master_validated")
def _(ctx):
    """The file changes between the master's check and the workers' load (the workers are stopped until it
    has): the workers must apply what the master validated, with each socket on its own listener, never the
    newer text with the sockets matched by position."""
    b1 = ctx.backend("b1")
    certs = ctx.session.certs()

    def text(ports, order, gen):
        listens = "\n".join("listen 127.0.0.1:%d%s" % (ports[i], " tls" if tls else "") for i, tls in order)
        return IDENT % dict(workers=NWORKERS, listens=listens, b1=b1.port, gen=gen, cert=certs["ec_cert"],
                            key=certs["ec_key"])

    gh = ctx.gatehouse_config(lambda ports: text(ports, [(0, True), (1, False)], "gen-1"), nports=2)
    gh.allow_worker_change = True
    p_tls, p_plain = gh.ports
    workers = serving_workers(gh)
    before = gh.stderr()
    for w in workers:
        os.kill(w, signal.SIGSTOP)
    try:
        write_conf(gh, text(gh.ports, [(0, True), (1, False)], "gen-2"))
        hup(gh)
        check(wait_until(lambda: re.search(r"\[info\] \d+ reloaded ", gh.stderr()[len(before):]), 5 * T),
              "the master did not log its reload: %r" % gh.stderr()[len(before):][-400:])
        # Same number of listeners, other order, other TLS flags, other routes: a different valid file.
        write_conf(gh, text(gh.ports, [(0, False), (1, True)], "gen-3"))
    finally:
        for w in workers:
            os.kill(w, signal.SIGCONT)
    check(wait_until(lambda: len(re.findall(r"worker \d+: reload", gh.stderr()[len(before):])) >= len(workers), 5 * T),
          "the workers did not log their reload: %r" % gh.stderr()[len(before):][-600:])
    for k in range(8):
        r = get(p_tls, "/gen")
        eq((r.status, r.body), (200, b"gen-2"), "GET /gen over TLS on %d, request %d" % (p_tls, k + 1))
        eq(plain_get(p_plain, "/gen"), (200, b"gen-2"), "plain GET /gen on %d, request %d" % (p_plain, k + 1))
    eq(serving_workers(gh), workers, "worker PIDs")
    check_clean(gh)
    ctx.info = "the workers applied the validated file, with each socket on its listener"


@test("reload_server_given_by_name_resolved_by_the_master")
def _(ctx):
    """A name the workers never saw before the reload (localhost, another port): the master resolves it and
    the workers connect to what it found."""
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    text, _ = named_setup(ctx, b1)
    gh = start(ctx, lambda port: text(port, "gen-1"))
    probes = Probes(gh)
    kept = Conn(gh.port)
    eq(kept.request("GET", "/id").body, b"b1", "through localhost:%d before the reload" % b1.port)
    with open(os.path.join(ctx.dir, "conf.d", "pool.conf"), "w") as f:
        f.write("pool named {\n    server localhost:%d\n}\n" % b2.port)
    write_conf(gh, text(gh.port, "gen-2"))
    hup(gh)
    probes.wait("gen-2")
    for i in range(6):
        eq(new_id(gh.port), "b2", "request %d through localhost:%d after the reload" % (i + 1, b2.port))
    eq(kept.request("GET", "/id").body, b"b2", "the keep-alive connection after the reload")
    check_clean(gh)
    kept.close()
    probes.close()


# ---------------------------------------------------------------- 10. how long a reload stalls a worker

def cpu_ms(pid):
    """utime + stime of a process, ms."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


@test("reload_stall_with_50_certificates", timeout=180)
def _(ctx):
    """Measured, not asserted beyond 'nothing fails': 50 sites with a certificate each, a pool given by name;
    per reload, the CPU each worker spends (its loop does nothing else meanwhile) and the longest a request
    waited on a keep-alive connection held on each worker while reloads ran."""
    nsites, nreloads = 50, 10
    b1 = ctx.backend("b1")
    certs = []
    for i in range(nsites):
        make_cert(ctx.dir, "s%d" % i, "s%d.example.test" % i)
        certs.append((os.path.join(ctx.dir, "s%d.pem" % i), os.path.join(ctx.dir, "s%d.key" % i)))
    base = ctx.session.certs()

    def text(port, gen):
        out = ["workers %d" % NWORKERS, "log_level info", "listen 127.0.0.1:%d tls" % port, "",
               "pool p {", "    server localhost:%d" % b1.port, "}"]
        for i, (c, k) in enumerate(certs):
            out += ["site s%d.example.test {" % i, "    cert %s %s" % (c, k),
                    "    route / { proxy p }", "}"]
        out += ["site default {", "    cert %s %s" % (base["ec_cert"], base["ec_key"]),
                "    route / { proxy p }", "    route /gen { respond 200 %s }" % gen, "}", ""]
        return "\n".join(out)

    gh = start(ctx, lambda port: text(port, "gen-0"))
    workers = serving_workers(gh)
    probes = Probes(gh)
    stop = threading.Event()
    worst = {w: 0.0 for w in workers}
    fails = []

    def loop(w, c):
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = c.request("GET", "/id")
            except Exception as e:  # noqa: BLE001
                fails.append("worker %d: %s" % (w, e))
                return
            if r.status != 200:
                fails.append("worker %d: status %d" % (w, r.status))
            worst[w] = max(worst[w], time.monotonic() - t0)

    loaders = conns_per_worker(gh)
    threads = [threading.Thread(target=loop, args=(w, cs[0]), daemon=True) for w, cs in loaders.items()]
    for t in threads:
        t.start()
    time.sleep(0.3)
    base_worst = dict(worst)
    cpu0 = {w: cpu_ms(w) for w in workers}
    apply = []
    try:
        for i in range(1, nreloads + 1):
            write_conf(gh, text(gh.port, "gen-%d" % i))
            t1 = time.monotonic()
            hup(gh)
            probes.wait("gen-%d" % i, timeout=20 * T, what="reload %d" % i)
            apply.append(time.monotonic() - t1)
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(10 * T)
    cpu = {w: (cpu_ms(w) - cpu0[w]) / nreloads for w in workers}
    for cs in loaders.values():
        cs[0].close()
    probes.close()
    check(not fails, "requests failed during the reloads: %s" % fails[:4])
    check_clean(gh)
    # Loose enough for a loaded CI machine, tight enough to catch the old stall (0.36-0.74 s measured
    # before the master did the work, 0.03-0.06 s after).
    check(max(worst.values()) < 1.0 * T, "a request waited %.2fs during the reloads" % max(worst.values()))
    ctx.info = ("%d sites with a certificate each, %d reloads: worker CPU per reload %s ms (includes the request "
                "loop); longest request during the reloads %s ms (before: %s ms); SIGHUP to applied everywhere "
                "%.0f-%.0f ms") % (
        nsites, nreloads, "/".join("%.1f" % v for v in cpu.values()),
        "/".join("%.0f" % (1000 * v) for v in worst.values()),
        "/".join("%.0f" % (1000 * v) for v in base_worst.values()), 1000 * min(apply), 1000 * max(apply))


# ---------------------------------------------------------------- 11. health slots that change hands

MOVED = """\
workers %(workers)d
log_level info
listen 127.0.0.1:%(port)d tls
pool p {
    server 127.0.0.1:%(server)d
    passive fails=2 window=30s eject=60s
}
site default {
    cert %(cert)s %(key)s
    route / { proxy p }
    route /gen { respond 200 %(gen)s }
}
"""


@test("reload_moved_slot_starts_clean")
def _(ctx):
    """Server B (dead) is ejected passively for 60 s; a reload puts server C in B's slot: C gets traffic at
    once, not after B's ejection runs out."""
    c_backend = ctx.backend("c")
    dead = ctx.dead_port()
    certs = ctx.session.certs()

    def text(port, server, gen):
        return MOVED % dict(workers=NWORKERS, port=port, server=server, gen=gen, cert=certs["ec_cert"],
                            key=certs["ec_key"])

    gh = start(ctx, lambda port: text(port, dead, "gen-1"))
    probes = Probes(gh)
    statuses = []
    for i in range(20):
        with Conn(gh.port) as c:
            statuses.append(c.request("GET", "/id").status)
        if "is ejected" in gh.stderr():
            break
    check("is ejected" in gh.stderr(), "server B (dead port %d) was not ejected: statuses %s" % (dead, statuses))
    write_conf(gh, text(gh.port, c_backend.port, "gen-2"))
    hup(gh)
    probes.wait("gen-2")
    got = []
    for i in range(6):
        with Conn(gh.port) as c:
            r = c.request("GET", "/id")
            got.append((r.status, r.body))
    eq(got, [(200, b"c")] * 6, "requests to server C, now in B's slot, right after the reload")
    probes.close()
    ctx.info = "B: %s before the reload; C served at once after it" % statuses
