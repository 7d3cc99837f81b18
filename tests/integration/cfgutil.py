"""Helpers shared by the configuration-file tests (t_config, t_routing, t_balance, t_health):
checking a file with -t, plain-HTTP and source-bound clients, openssl s_client with or without
SNI, certificates per name, backends killed and restarted on their port, error-log polling."""
import collections
import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import GATEHOUSE, T, Conn, Fail, _openssl, client_context, wait_until

# ---------------------------------------------------------------- -t


def check_file(ctx, path, timeout=None):
    """Runs `gatehouse -t -c path`; returns (exit code, stdout, stderr)."""
    timeout = timeout or 10 * T
    argv = [GATEHOUSE, "-t", "-c", path]
    p = ctx.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Fail("gatehouse -t -c %s did not exit within %.0fs" % (path, timeout))
    out, err = out.decode(errors="replace"), err.decode(errors="replace")
    ctx.note("gatehouse -t -c %s -> exit %s, stdout %r, stderr %r" % (path, p.returncode, out[-200:], err[-300:]))
    return p.returncode, out, err


def write(ctx, name, text):
    path = os.path.join(ctx.dir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def marked_line(text, mark="# HERE"):
    """The 1-based number of the only line of text that carries mark."""
    lines = [i + 1 for i, ln in enumerate(text.split("\n")) if mark in ln]
    if len(lines) != 1:
        raise Fail("test bug: %d lines carry %r" % (len(lines), mark))
    return lines[0]


# ---------------------------------------------------------------- clients


class PlainConn(Conn):
    """Conn over plain TCP (a plain-HTTP listener), optionally from a given source address."""

    def __init__(self, port, timeout=None, source=None, host="127.0.0.1"):
        self.timeout = timeout or 5 * T
        self.attach(socket.create_connection((host, port), timeout=self.timeout,
                                             source_address=(source, 0) if source else None), port)


class SourceConn(Conn):
    """Conn (TLS) from a given source address of 127/8, for `balance hash ip`."""

    def __init__(self, port, source, sni="localhost", timeout=None):
        self.timeout = timeout or 5 * T
        raw = socket.create_connection(("127.0.0.1", port), timeout=self.timeout, source_address=(source, 0))
        try:
            self.attach(client_context().wrap_socket(raw, server_hostname=sni), port)
        except Exception:
            raw.close()
            raise


def ids(port, n, path="/id", host=None, headers=(), sni="localhost", conn=None):
    """n GETs of path on one keep-alive connection; returns (Counter of bodies, list of statuses)."""
    seen = collections.Counter()
    statuses = []
    c = conn or Conn(port, sni=sni)
    try:
        for i in range(n):
            r = c.request("GET", path, headers, host=host)
            statuses.append(r.status)
            seen[r.body.decode(errors="replace")] += 1
            if (r.get("connection") or "").lower() == "close":
                c.close()
                c = Conn(port, sni=sni)
    finally:
        if conn is None:
            c.close()
    return seen, statuses


def s_client_raw(port, args, input=b"", timeout=None):
    """openssl s_client without the harness's default -servername; returns the output text."""
    timeout = timeout or 15 * T
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port] + list(args)
    try:
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail("openssl s_client did not finish in %.0fs: %s" % (timeout, " ".join(argv)))
    return r.stdout.decode("utf-8", errors="replace")


def peer_subject(out):
    """The subject of the certificate s_client was shown, e.g. 'CN = a.test, O = ecdsa'."""
    m = re.search(r"^subject=(.*)$", out, re.M)
    return m.group(1).strip() if m else None


# ---------------------------------------------------------------- certificates

_cert_lock = threading.Lock()


def named_certs(session):
    """Certificates per name, made once per session: {name: (cert, key)} for
    a.test, b.test, *.w.test (wild), default.test (default), c.test in ECDSA (c-ec) and RSA (c-rsa)."""
    with _cert_lock:
        got = getattr(session, "_named_certs", None)
        if got is not None:
            return got
        d = os.path.join(session.dir, "named-certs")
        os.makedirs(d, exist_ok=True)
        specs = [("a", "a.test", "ec", "a.test"), ("b", "b.test", "ec", "b.test"),
                 ("wild", "*.w.test", "ec", "wild"), ("default", "default.test", "ec", "default"),
                 ("c-ec", "c.test", "ec", "ecdsa"), ("c-rsa", "c.test", "rsa", "rsa")]
        out = {}
        for key, cn, kind, org in specs:
            alg = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
                   else ["-newkey", "rsa:2048"])
            _openssl(["req", "-x509"] + alg + ["-nodes", "-keyout", key + ".key", "-out", key + ".pem",
                                               "-days", "30", "-subj", "/CN=%s/O=%s" % (cn, org),
                                               "-addext", "subjectAltName=DNS:%s" % cn], d)
            out[key] = (os.path.join(d, key + ".pem"), os.path.join(d, key + ".key"))
        session._named_certs = out
        return out


# ---------------------------------------------------------------- processes


def kill_backend(b):
    """SIGKILL a backend (the process dies at once, its sockets reset)."""
    if b.proc.poll() is None:
        b.proc.send_signal(signal.SIGKILL)
        b.proc.wait(5)


def restart_backend(ctx, b, name):
    """A new backend on the port of b (which must be stopped)."""
    port = b.port
    deadline = time.monotonic() + 10 * T
    while True:
        try:
            return ctx.backend(name, port=port)
        except Fail:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def count_requests(b, path=None):
    n = 0
    for e in b.requests():
        if path is None or e["target"].split("?")[0] == path:
            n += 1
    return n


def log_lines(gh, pattern):
    return [ln for ln in gh.stderr().splitlines() if re.search(pattern, ln)]


def wait_log(gh, pattern, timeout, after=0):
    """Seconds until gatehouse's stderr has more than `after` lines matching pattern, or None."""
    t0 = time.monotonic()
    ok = wait_until(lambda: len(log_lines(gh, pattern)) > after, timeout, interval=0.02)
    return time.monotonic() - t0 if ok else None


def backends(ctx, names):
    """Starts several backends at once (each takes a Python start-up); returns them in order."""
    out = [None] * len(names)
    errs = []

    def start(i, name):
        try:
            out[i] = ctx.backend(name)
        except Exception as e:  # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=start, args=(i, n)) for i, n in enumerate(names)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return out


# ---------------------------------------------------------------- names that resolve to what a test says

_resolver_lock = threading.Lock()


def preload_library(session, name):
    """Builds tests/integration/NAME.c once per session; returns the path of the .so to LD_PRELOAD."""
    with _resolver_lock:
        built = session.__dict__.setdefault("_preload_libraries", {})
        if name in built:
            return built[name]
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), name + ".c")
        out = os.path.join(session.dir, name + ".so")
        argv = [os.environ.get("CC", "cc"), "-std=c11", "-O1", "-shared", "-fPIC", "-o", out, src, "-ldl"]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise Fail("cannot build %s: %s" % (name, r.stdout.decode(errors="replace")[-500:]))
        built[name] = out
        return out


def fake_resolver(session):
    """The fake resolver (tests/integration/fake_resolver.c) to LD_PRELOAD."""
    return preload_library(session, "fake_resolver")


def preload_env(so):
    """The environment that preloads so into gatehouse (ASan: its runtime must come first, so do not check)."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return {"LD_PRELOAD": so, "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"}


class FakeHosts:
    """The hosts file the fake resolver answers `*.test` names from; set() rewrites it atomically."""

    def __init__(self, ctx, lines):
        self.path = os.path.join(ctx.dir, "fake-hosts")
        self.so = fake_resolver(ctx.session)
        self.set(lines)

    def set(self, lines):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(ln + "\n" for ln in lines))
        os.rename(tmp, self.path)

    def env(self):
        """The environment for a gatehouse that resolves through it: the master's getaddrinfo through the
        preloaded library (ASan: our library comes first), the prober's c-ares through CARES_HOSTS."""
        return dict(preload_env(self.so), GH_FAKE_HOSTS=self.path, CARES_HOSTS=self.path)


def port_free_on_both():
    """A port free on 127.0.0.1 and on ::1 (a name's addresses share the server's port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET6) as s6:
            s6.bind(("::1", 0))
            port = s6.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET) as s4:
                    s4.bind(("127.0.0.1", port))
                    return port
            except OSError:
                continue
    raise Fail("no port free on both 127.0.0.1 and ::1")


def dual_backends(ctx, n4="b4", n6="b6"):
    """Two backends on one port: n4 on 127.0.0.1, n6 on ::1. Returns (b4, b6, port)."""
    last = None
    for _ in range(3):
        port = port_free_on_both()
        try:
            b4 = ctx.backend(n4, port=port)
        except Fail as e:
            last = e
            continue
        try:
            b6 = ctx.backend(n6, port=port, host="::1")
            return b4, b6, port
        except Fail as e:
            last = e
            kill_backend(b4)
            os.remove(os.path.join(ctx.dir, n4 + ".port"))
    raise last


class ThreadedServer:
    """A TCP server of the test process on a free port of 127.0.0.1: one thread accepts, and each
    connection is served by self.one(socket) in a thread of its own (which must close it).
    Subclasses set what they need, then call start() (port: a given one, e.g. to come back on it).
    accepted(socket) runs in the accepting thread before each connection's. close() stops accepting."""

    def start(self, backlog=64, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(backlog)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted(c)
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def accepted(self, c):
        pass

    def one(self, c):
        raise NotImplementedError

    def close(self):
        self.sock.close()


class RawBackend(ThreadedServer):
    """A backend that records each request head and answers with `answer(head)` (bytes). once=False:
    the connection goes on to the next head (kept open briefly); once=True: one answer, then its
    side is shut (FIN) and what comes is drained until the peer closes."""

    def __init__(self, ctx, answer, once=False):
        self.heads = []
        self.answer = answer
        self.once = once
        self.start(16)

    def one(self, c):
        c.settimeout(5)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.heads.append(head.decode(errors="replace"))
                c.sendall(self.answer(head))
                if self.once:
                    c.shutdown(socket.SHUT_WR)
                    while c.recv(65536):
                        pass
                    return
        except OSError:
            pass
        finally:
            c.close()
