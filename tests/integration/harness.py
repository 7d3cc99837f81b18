"""The integration harness: start the real gatehouse and real backends on free ports,
talk to them with real clients (python ssl, curl, openssl s_client), keep every log.

A test is a function registered with @test(name). It receives a Ctx, which starts
processes inside the test's own temporary directory and stops them (by PID) at the
end. A test fails by raising Fail (check() does it); the runner prints the reason and
the tail of the test's logs.
"""
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SLOW = os.environ.get("SLOW") == "1"
T = 4.0 if SLOW else 1.0              # every timeout is multiplied by T
PY = sys.executable                    # the backend runs on the interpreter that runs us
_gh = os.environ.get("GATEHOUSE", "build/gatehouse")
GATEHOUSE = _gh if os.path.isabs(_gh) else str(ROOT / _gh)

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


class Fail(Exception):
    """A test assertion failed."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


def wait_until(fn, timeout, interval=0.05):
    """Calls fn until it returns a true value or timeout seconds pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# ---------------------------------------------------------------- registry

class Test:
    def __init__(self, name, fn, heavy=False, fixture=None, timeout=90):
        self.name = name
        self.fn = fn
        self.heavy = heavy          # big transfers: run alone, after the others
        self.fixture = fixture      # tests sharing a fixture run in sequence on one setup
        self.timeout = timeout


TESTS = []


def test(name, heavy=False, timeout=90, dual=False):
    """dual=True: the body runs twice, as NAME over HTTP/1.1 and as NAME_h2 over HTTP/2 (see request())."""
    def deco(fn):
        add_test(name, fn, heavy=heavy, timeout=timeout, dual=dual)
        return fn
    return deco


def add_test(name, fn, fixture=None, heavy=False, timeout=90, dual=False):
    TESTS.append(Test(name, fn, heavy=heavy, fixture=fixture, timeout=timeout))
    if dual:
        TESTS.append(Test(name + "_h2", _speaking("h2", fn), heavy=heavy, fixture=fixture, timeout=timeout))


# ---------------------------------------------------------------- one test body, both protocols

_proto = threading.local()  # each test runs in one thread of the runner


def protocol():
    """What the running test speaks to gatehouse through request(): "http/1.1" or "h2"."""
    return getattr(_proto, "name", "http/1.1")


def _speaking(proto, fn):
    def run(*args):
        _proto.name = proto
        try:
            return fn(*args)
        finally:
            _proto.name = "http/1.1"
    return run


# ---------------------------------------------------------------- session (certificates)

class Session:
    """What all tests share: a temp dir and the certificates (made once)."""

    def __init__(self, keep=False):
        self.dir = tempfile.mkdtemp(prefix="gatehouse-it-")
        # Searchable by all, as /etc is: started as root, the workers and the prober run as `nobody` and
        # read what a test gives them by path (FakeHosts' file). Private keys are the master's to read.
        os.chmod(self.dir, 0o755)
        self.keep = keep
        self.lock = threading.Lock()
        self._certs = None
        self._upload_file = None

    def certs(self):
        with self.lock:
            if self._certs is None:
                self._certs = make_certs(os.path.join(self.dir, "certs"))
            return self._certs

    def upload_file(self, size):
        """A file of `size` pattern bytes (made once, for curl -T)."""
        import pattern
        with self.lock:
            if self._upload_file is None or self._upload_file[1] != size:
                path = os.path.join(self.dir, "upload-%d.bin" % size)
                with open(path, "wb") as f:
                    for p in pattern.pieces(size):
                        f.write(p)
                self._upload_file = (path, size)
            return self._upload_file[0]


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise Fail("openssl %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")[-500:]))


def make_certs(d):
    os.makedirs(d, exist_ok=True)
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", "ec.key", "-out", "ec.pem", "-days", "30", "-subj", "/CN=localhost", "-addext", san], d)
    _openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes",
              "-keyout", "rsa.key", "-out", "rsa.pem", "-days", "30", "-subj", "/CN=localhost", "-addext", san], d)
    _openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "wrong.key"], d)
    with open(os.path.join(d, "garbage.pem"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n")
    with open(os.path.join(d, "text.pem"), "w") as f:
        f.write("this is not PEM at all\n")
    c = {k: os.path.join(d, v) for k, v in {
        "ec_cert": "ec.pem", "ec_key": "ec.key", "rsa_cert": "rsa.pem", "rsa_key": "rsa.key",
        "wrong_key": "wrong.key", "garbage": "garbage.pem", "text": "text.pem"}.items()}
    c["dir"] = d
    return c


# ---------------------------------------------------------------- processes

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def free_ports(n):
    """n distinct free ports: the sockets stay bound until all are chosen (free_port() twice in a row
    can return the same port, and a config with two equal listeners is refused)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def children(pid):
    """Live (non-zombie) child PIDs of pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid and rest[0] not in ("Z", "X"):
            out.append(int(d))
    return sorted(out)


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rfind(")") + 2] not in "ZX"
    except OSError:
        return False


def tail(path, lines=25, max_bytes=200000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return "(no file %s)" % path
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text) if text else "(empty)"


def kill_tree(p):
    """SIGKILL a Popen and its children (a gatehouse started by hand may have forked workers)."""
    if p.poll() is not None:
        return
    for k in children(p.pid):
        try:
            os.kill(k, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.kill()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


class Backend:
    def __init__(self, ctx, name, raw_max=None, port=0, host="127.0.0.1"):
        self.ctx = ctx
        self.name = name
        self.host = host
        self.dir = ctx.dir
        self.raw_path = os.path.join(ctx.dir, name + ".raw")
        self.events_path = os.path.join(ctx.dir, name + ".events")
        self.log_path = os.path.join(ctx.dir, name + ".stderr")
        argv = [PY, str(HERE / "backend.py"), "--name", name, "--dir", ctx.dir, "--port", str(port), "--host", host]
        if raw_max is not None:
            argv += ["--raw-max", str(raw_max)]
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        portfile = os.path.join(ctx.dir, name + ".port")
        ok = wait_until(lambda: os.path.exists(portfile) or self.proc.poll() is not None, 15 * T)
        if not ok or self.proc.poll() is not None:
            raise Fail("backend %s did not start: %s" % (name, tail(self.log_path)))
        with open(portfile) as f:
            self.port = int(f.read())

    def raw(self):
        try:
            with open(self.raw_path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def raw_size(self):
        try:
            return os.path.getsize(self.raw_path)
        except FileNotFoundError:
            return 0

    def events(self, ev=None):
        out = []
        try:
            with open(self.events_path) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break
                    e = json.loads(line)
                    if ev is None or e["ev"] == ev:
                        out.append(e)
        except FileNotFoundError:
            pass
        return out

    def requests(self):
        return self.events("request")

    def accepts(self):
        return len(self.events("accept"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.logf.close()


class Gatehouse:
    """One gatehouse master (and its workers) under test."""

    def __init__(self, ctx, to, cert="ec", workers=1, args=(), access_log=None, log_level="info",
                 wait=True, port=None, env=None):
        self.ctx = ctx
        self.nworkers = workers
        self.stopped = False          # set once the test signalled the master itself
        self.allow_worker_change = False
        certs = ctx.session.certs()
        self.cert = certs[cert + "_cert"]
        self.key = certs[cert + "_key"]
        self.access_log = access_log
        n = len(ctx.gatehouses)
        self.log_path = os.path.join(ctx.dir, "gatehouse%d.stderr" % n)
        self.out_path = os.path.join(ctx.dir, "gatehouse%d.stdout" % n)
        tos = [t if isinstance(t, int) else t.port for t in to]
        last = None
        for attempt in range(3):
            self.port = port or free_port()
            argv = [GATEHOUSE, "--listen", "127.0.0.1:%d" % self.port, "--cert", self.cert, "--key", self.key]
            for p in tos:
                argv += ["--to", "127.0.0.1:%d" % p]
            argv += ["--workers", str(workers), "--log-level", log_level]
            if access_log:
                argv += ["--access-log", access_log]
            argv += list(args)
            self.argv = argv
            self.errf = open(self.log_path, "ab")
            self.outf = open(self.out_path, "ab")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.outf, stderr=self.errf,
                                         env=dict(os.environ, **env) if env else None)
            self.pid = self.proc.pid
            ctx.gatehouses.append(self)
            if not wait:
                return
            try:
                self.wait_ready()
                return
            except Fail as e:
                last = e
                text = self.stderr()
                if self.proc.poll() is not None and re.search(r"in use|EADDRINUSE", text, re.I) and not port:
                    ctx.gatehouses.remove(self)
                    continue
                raise
        raise last

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def workers(self):
        return children(self.pid)

    def pids(self):
        return [self.pid] + self.workers()

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())

    def handshake_ok(self, timeout=1.0):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
                with client_context().wrap_socket(s, server_hostname="localhost"):
                    return True
        except (OSError, ssl.SSLError):
            return False

    def wait_ready(self):
        deadline = time.monotonic() + 15 * T
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail("gatehouse exited at startup with code %s: %s"
                           % (self.proc.returncode, tail(self.log_path, 10)))
            if self.handshake_ok():
                break
            time.sleep(0.05)
        else:
            raise Fail("gatehouse did not complete a TLS handshake within %.0fs" % (15 * T))
        ok = wait_until(lambda: len(self.workers()) == self.nworkers, 10 * T)
        if not ok:
            raise Fail("gatehouse has %d worker processes, want %d" % (len(self.workers()), self.nworkers))
        self.initial_workers = self.workers()

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            self.stopped = True
        os.kill(self.pid, sig)

    def post_check(self):
        """Problems the test did not provoke: a crash, a dead worker, a sanitizer report."""
        text = self.stderr()
        for m in SANITIZER_MARKS:
            if m in text:
                i = text.index(m)
                raise Fail("sanitizer report in gatehouse stderr: %s" % text[max(0, i - 200):i + 800])
        if self.stopped:
            return
        if self.proc.poll() is not None:
            raise Fail("gatehouse master exited unexpectedly with code %s" % self.proc.returncode)
        if not self.allow_worker_change and hasattr(self, "initial_workers"):
            now = self.workers()
            if now != self.initial_workers:
                raise Fail("worker processes changed during the test (crash?): %s -> %s"
                           % (self.initial_workers, now))

    def stop(self, timeout=None):
        """SIGTERM, then SIGKILL to the master and its workers after timeout. Returns the exit code."""
        timeout = timeout or 10 * T
        kids = self.workers() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.stopped = True
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        for k in kids:
            if alive(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return self.proc.returncode

    def kill(self):
        kids = self.workers()
        self.stopped = True
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def close_files(self):
        self.errf.close()
        self.outf.close()


class GatehouseConf(Gatehouse):
    """A gatehouse run from a configuration file: `gatehouse -c FILE` (ctx.gatehouse_config).

    text is the file's text, or a function of a list of `nports` free ports that returns it
    (on EADDRINUSE it is called again with new ports). The file is written into the test's
    directory. Ready once every `listen ADDRESS:PORT` of the text accepts (a TLS handshake on
    `tls` ones) and the master has its children: the workers (`workers N`) plus the prober,
    which always runs with a file (or `children` if given); `prefix` runs it under a command that execs it
    (prlimit). self.ports: the ports given to text;
    self.port: the first listener's port; self.listeners: [(host, port, tls)].
    """

    def __init__(self, ctx, text, nports=0, children=None, args=(), wait=True, name=None, prefix=(), env=None):
        self.ctx = ctx
        self.stopped = False
        self.allow_worker_change = False
        self.access_log = None
        self.cert = self.key = None
        n = len(ctx.gatehouses)
        self.log_path = os.path.join(ctx.dir, "gatehouse%d.stderr" % n)
        self.out_path = os.path.join(ctx.dir, "gatehouse%d.stdout" % n)
        self.conf_path = os.path.join(ctx.dir, name or "gatehouse%d.conf" % n)
        last = None
        for attempt in range(3 if callable(text) else 1):
            self.ports = free_ports(nports)
            self.text = text(self.ports) if callable(text) else text
            with open(self.conf_path, "w") as f:
                f.write(self.text)
            self.listeners = []
            for m in re.finditer(r"^[ \t]*listen[ \t]+(\S+?):(\d+)((?:[ \t]+[^\s;#]+)*)[ \t]*(?:[;#].*)?$", self.text,
                                 re.M):
                opts = m.group(3).split()
                # A PROXY protocol listener wants a header before TLS: readiness is its TCP accept alone.
                li = (m.group(1).strip("[]"), int(m.group(2)), "tls" in opts and "proxy_protocol" not in opts)
                if m.group(3) or li[:2] not in [x[:2] for x in self.listeners]:
                    self.listeners = [x for x in self.listeners if x[:2] != li[:2]] + [li]
            self.port = self.listeners[0][1] if self.listeners else None
            m = re.search(r"^[ \t]*workers[ \t]+(\d+)", self.text, re.M)
            # With a file the prober always runs (a reload may add checks): workers + 1.
            self.nworkers = children if children is not None else (int(m.group(1)) if m else os.cpu_count()) + 1
            # prefix: a command that execs gatehouse (e.g. prlimit --nofile=N:N), so the PID is gatehouse's.
            self.argv = list(prefix) + [GATEHOUSE, "-c", self.conf_path] + list(args)
            self.errf = open(self.log_path, "ab")
            self.outf = open(self.out_path, "ab")
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.outf, stderr=self.errf,
                                         env=dict(os.environ, **env) if env else None)
            self.pid = self.proc.pid
            ctx.gatehouses.append(self)
            if not wait:
                return
            try:
                self.wait_ready()
                return
            except Fail as e:
                last = e
                if self.proc.poll() is not None and re.search(r"in use|EADDRINUSE", self.stderr(), re.I):
                    ctx.gatehouses.remove(self)
                    self.close_files()
                    continue
                raise
        raise last

    def listener_ok(self, host, port, tls):
        try:
            with socket.create_connection((host, port), timeout=1.0) as s:
                if tls:
                    with client_context().wrap_socket(s, server_hostname="localhost"):
                        pass
                return True
        except (OSError, ssl.SSLError):
            return False

    def wait_ready(self):
        deadline = time.monotonic() + 15 * T
        for host, port, tls in self.listeners:
            while not self.listener_ok(host, port, tls):
                if self.proc.poll() is not None:
                    raise Fail("gatehouse -c exited at startup with code %s: %s"
                               % (self.proc.returncode, tail(self.log_path, 10)))
                if time.monotonic() > deadline:
                    raise Fail("gatehouse -c: listener %s:%d did not accept within %.0fs" % (host, port, 15 * T))
                time.sleep(0.05)
        ok = wait_until(lambda: len(self.workers()) == self.nworkers, 10 * T)
        if not ok:
            raise Fail("gatehouse -c has %d child processes, want %d" % (len(self.workers()), self.nworkers))
        self.initial_workers = self.workers()

    def url(self, path, port=None):
        return "https://127.0.0.1:%d%s" % (port or self.port, path)


class Ctx:
    """One test's world: its temp dir, processes and logs."""

    def __init__(self, name, session):
        self.name = name
        self.session = session
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        self.dir = tempfile.mkdtemp(prefix=safe + "-", dir=session.dir)
        os.chmod(self.dir, 0o755)  # see Session
        self.gatehouses = []
        self.backends = []
        self.others = []              # other Popen objects started by the test
        self.notes = []
        self.info = ""                # one line printed after "ok" (throughput, peak RSS...)
        self.aborted = False

    def backend(self, name="b1", raw_max=None, port=0, host="127.0.0.1"):
        b = Backend(self, name, raw_max=raw_max, port=port, host=host)
        self.backends.append(b)
        return b

    def gatehouse(self, to, **kw):
        return Gatehouse(self, to, **kw)

    def gatehouse_config(self, text, **kw):
        return GatehouseConf(self, text, **kw)

    def dead_port(self):
        return free_port()

    def popen(self, argv, **kw):
        p = subprocess.Popen(argv, **kw)
        self.others.append(p)
        return p

    def note(self, msg):
        self.notes.append(msg)

    def post_check(self):
        for g in self.gatehouses:
            g.post_check()

    def close(self):
        """Stops every process (by PID); returns a failure message or None."""
        problem = None
        for p in self.others:
            kill_tree(p)
        for g in self.gatehouses:
            if g.proc.poll() is None:
                g.stop()
            g.close_files()
            text = g.stderr()
            for m in SANITIZER_MARKS:
                if m in text and problem is None:
                    i = text.index(m)
                    problem = "sanitizer report in gatehouse stderr: %s" % text[max(0, i - 200):i + 800]
        for b in self.backends:
            b.stop()
        return problem

    def abort(self):
        """From the watchdog: kill everything so that the stuck test wakes up."""
        self.aborted = True
        for g in self.gatehouses:
            g.kill()
        for b in self.backends:
            if b.proc.poll() is None:
                b.proc.kill()
        for p in self.others:
            kill_tree(p)

    def tails(self):
        out = []
        for g in self.gatehouses:
            out.append("--- %s (gatehouse %s)\n%s" % (g.log_path, " ".join(g.argv[1:]), tail(g.log_path)))
            if g.access_log and g.access_log != "-":
                out.append("--- %s\n%s" % (g.access_log, tail(g.access_log, 10)))
        for b in self.backends:
            out.append("--- %s\n%s" % (b.events_path, tail(b.events_path, 12)))
            out.append("--- %s\n%s" % (b.log_path, tail(b.log_path, 8)))
        for n in self.notes[-20:]:
            out.append("note: " + n)
        return "\n".join(out)


# ---------------------------------------------------------------- clients

def client_context(alpn=("http/1.1",), minv=None, maxv=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    if alpn:
        c.set_alpn_protocols(list(alpn))
    if minv:
        c.minimum_version = minv
    if maxv:
        c.maximum_version = maxv
    return c


class Resp:
    def __init__(self, version, status, reason, headers, body, raw_head, interim):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # [(name, value)] in order
        self.body = body
        self.raw_head = raw_head
        self.interim = interim      # 1xx statuses seen before this response

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def get(self, name):
        v = self.all(name)
        return v[0] if v else None

    def __repr__(self):
        return "<%d %r %d bytes>" % (self.status, self.headers, len(self.body))


class Closed(Fail):
    """The peer closed (or reset) the connection."""


class SocketClient:
    """A client over one socket self.s: close() (an error there means it is gone already) and `with`."""

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class Conn(SocketClient):
    """An HTTP/1.1 client over one TLS connection, with byte-level control."""

    recv_size = 262144  # bytes asked of each recv

    def __init__(self, port, timeout=None, sni="localhost", alpn=("http/1.1",), ctx=None):
        self.timeout = timeout or 5 * T
        raw = socket.create_connection(("127.0.0.1", port), timeout=self.timeout)
        try:
            self.attach((ctx or client_context(alpn)).wrap_socket(raw, server_hostname=sni), port)
        except Exception:
            raw.close()
            raise

    def attach(self, s, port):
        """Reads and writes go to s (connected; TLS or not) from here on: subclasses connect their own way."""
        self.s = s
        self.port = port
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def settimeout(self, t):
        self.s.settimeout(t)

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(self.recv_size)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.eof = self.reset = True
            return False
        except ssl.SSLError as e:
            self.eof = self.reset = True
            self.ssl_error = str(e)
            return False
        except socket.timeout:
            raise Fail("timed out after %.1fs waiting for bytes from gatehouse (have %d: %r)"
                       % (self.s.gettimeout() or 0, len(self.buf), bytes(self.buf[:200])))
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > 1 << 20:
                raise Fail("response line too long")
            if not self._fill():
                raise Closed("connection closed while reading a response line (have %r)" % bytes(self.buf[:200]))

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise Closed("connection closed in a body: %d of %d bytes" % (len(self.buf), n))
        d = bytes(self.buf[:n])
        del self.buf[:n]
        return d

    def read_response(self, method="GET"):
        interim = []
        while True:
            raw_head = bytearray()
            line = self._line()
            raw_head += line + b"\r\n"
            m = re.fullmatch(rb"(HTTP/1\.[01]) (\d{3}) ?(.*)", line)
            if not m:
                raise Fail("bad status line from gatehouse: %r" % line[:200])
            version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1")
            headers = []
            while True:
                h = self._line()
                raw_head += h + b"\r\n"
                if h == b"":
                    break
                if b":" not in h or h[:1] in b" \t":
                    raise Fail("bad header line from gatehouse: %r" % h[:200])
                n, _, v = h.partition(b":")
                if n != n.strip() or not n:
                    raise Fail("bad header name from gatehouse: %r" % h[:200])
                headers.append((n.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
            if 100 <= status < 200:
                interim.append(status)
                continue
            break
        r = Resp(version, status, reason, headers, b"", bytes(raw_head), interim)
        te = ",".join(r.all("transfer-encoding")).lower().strip()
        cls = r.all("content-length")
        if method == "HEAD" or status in (204, 304):
            return r
        if te:
            check(te == "chunked", "gatehouse sent Transfer-Encoding %r" % te)
            check(not cls, "gatehouse sent both Content-Length and Transfer-Encoding")
            r.body = self._chunked()
        elif cls:
            check(len(cls) == 1 and cls[0].isdigit(), "gatehouse sent Content-Length %r" % cls)
            r.body = self._exact(int(cls[0]))
        else:
            while self._fill():
                pass
            r.body = bytes(self.buf)
            self.buf.clear()
            r.close_delimited = True
        return r

    def _chunked(self):
        out = bytearray()
        while True:
            line = self._line()
            size = line.split(b";")[0].strip()
            check(re.fullmatch(rb"[0-9a-fA-F]{1,16}", size or b"x"), "bad chunk size from gatehouse: %r" % line)
            n = int(size, 16)
            if n == 0:
                while self._line() != b"":
                    pass
                return bytes(out)
            out += self._exact(n)
            check(self._line() == b"", "no CRLF after a chunk from gatehouse")

    def request(self, method, path, headers=(), body=None, host=None):
        self.send(build_request(method, path, headers, body, host or "localhost:%d" % self.port))
        return self.read_response(method)

    def wait_closed(self, timeout=None):
        """Waits for the peer to close. Returns (closed, extra_bytes_received)."""
        self.s.settimeout(timeout or 3 * T)
        extra = bytes(self.buf)
        self.buf.clear()
        try:
            while self._fill():
                extra += bytes(self.buf)
                self.buf.clear()
        except Fail:
            return False, extra
        return True, extra



def build_request(method, path, headers=(), body=None, host="localhost"):
    lines = ["%s %s HTTP/1.1" % (method, path)]
    if host is not None:
        lines.append("Host: " + host)
    names = [n.lower() for n, _ in headers]
    lines += ["%s: %s" % (n, v) for n, v in headers]
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def get(port, path, headers=(), method="GET", body=None):
    """One request on a fresh connection."""
    with Conn(port) as c:
        return c.request(method, path, headers, body)


def curl(args, timeout=None, ok=True, **kw):
    """Runs curl -sS -k; returns CompletedProcess (bytes). With ok, a curl failure fails the test.

    HTTP/1.1 unless args choose (--http2, --http2-prior-knowledge): TLS listeners offer h2 first."""
    timeout = timeout or 30 * T
    args = list(args)
    if not any(a.startswith("--http") for a in args):
        args = ["--http1.1"] + args
    argv = ["curl", "-sS", "-k", "--max-time", str(int(timeout))] + args
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout + 10, **kw)
    except subprocess.TimeoutExpired:
        raise Fail("curl did not finish: %s" % " ".join(argv))
    if ok and r.returncode != 0:
        raise Fail("curl failed with exit code %d (%s): %s" % (r.returncode, r.stderr.decode(errors="replace").strip()[-300:],
                                                               " ".join(argv)))
    return r


def s_client(port, args, input=b"", timeout=None, connect="127.0.0.1"):
    """Runs openssl s_client; returns (exit code, stdout+stderr text)."""
    timeout = timeout or 15 * T
    argv = ["openssl", "s_client", "-connect", "%s:%d" % (connect, port), "-servername", "localhost"] + list(args)
    try:
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail("openssl s_client did not finish in %.0fs: %s" % (timeout, " ".join(argv)))
    return r.returncode, r.stdout.decode("utf-8", errors="replace")


def request(port, method, path, headers=(), body=None, host=None, sni="localhost", timeout=None, proto=None):
    """One request on a new TLS connection in the protocol of the running test (protocol()):
    HTTP/1.1 through Conn (byte for byte), HTTP/2 through curl --http2, which must have spoken
    HTTP/2 (ALPN h2). host: the Host (HTTP/2: :authority), default localhost:PORT. Returns a Resp."""
    proto = proto or protocol()
    host = host or "localhost:%d" % port
    if proto == "http/1.1":
        with Conn(port, timeout=timeout, sni=sni) as c:
            return c.request(method, path, headers, body, host=host)
    return curl_h2_request(port, method, path, headers, body, host, sni, timeout)


def client(port, timeout=None, sni="localhost"):
    """A connection in the running test's protocol with Conn's request(): Conn for HTTP/1.1,
    h2raw.H2Client (one connection, a stream per request) for HTTP/2."""
    if protocol() == "http/1.1":
        return Conn(port, timeout=timeout, sni=sni)
    import h2raw
    return h2raw.H2Client(port, timeout=timeout, sni=sni)


def curl_proto():
    """curl's protocol option for the running test."""
    return ["--http2"] if protocol() == "h2" else ["--http1.1"]


def curl_h2_request(port, method, path, headers, body, host, sni, timeout=None):
    d = tempfile.mkdtemp(prefix="curl-h2-")
    try:
        hfile, bfile = os.path.join(d, "head"), os.path.join(d, "body")
        url = "https://%s:%d%s" % (sni if re.fullmatch(r"[A-Za-z0-9.-]+", sni or "") else "localhost", port, path)
        args = ["--http2", "--path-as-is", "--resolve", "%s:%d:127.0.0.1" % (url.split("/")[2].rsplit(":", 1)[0], port),
                "-D", hfile, "-o", bfile, "-w", "%{http_version}", "-H", "Host: " + host]
        args += ["--head"] if method == "HEAD" else ["-X", method]
        for n, v in headers:
            args += ["-H", "%s;" % n if v == "" else "%s: %s" % (n, v)]
        if body is not None:
            args += ["--data-binary", "@-", "-H", "Content-Type:"]
        r = curl(args + [url], timeout=timeout, input=body)
        ver = r.stdout.decode().strip()
        if ver != "2":
            raise Fail("curl --http2 spoke HTTP/%s, not HTTP/2: %s" % (ver, " ".join(args + [url])))
        with open(hfile, "rb") as f:
            raw_head = f.read()
        body_out = b""
        if os.path.exists(bfile):
            with open(bfile, "rb") as f:
                body_out = f.read()
    finally:
        for x in os.listdir(d):
            os.unlink(os.path.join(d, x))
        os.rmdir(d)
    blocks = [b for b in raw_head.split(b"\r\n\r\n") if b.strip()]
    interim, status, headers_out = [], 0, []
    for blk in blocks:
        lines = blk.split(b"\r\n")
        m = re.fullmatch(rb"HTTP/2 (\d{3}) ?(.*)", lines[0])
        if not m:
            raise Fail("curl wrote an unexpected status line: %r" % lines[0][:200])
        status = int(m.group(1))
        headers_out = [(n.decode("latin-1"), v.strip().decode("latin-1"))
                       for n, _, v in (ln.partition(b":") for ln in lines[1:])]
        if 100 <= status < 200:
            interim.append(status)
    return Resp("HTTP/2", status, "", headers_out, body_out, raw_head, interim)


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


def error_body_ok(resp, status, backends=(), secrets=()):
    """An error from gatehouse: the right status, a short plain body, nothing about the backend."""
    eq(resp.status, status, "status")
    check(len(resp.body) <= 512, "%d error body is %d bytes, want a short one: %r"
          % (status, len(resp.body), resp.body[:200]))
    ctype = (resp.get("content-type") or "").lower()
    check(ctype == "" or ctype.startswith("text/plain") or ctype.startswith("text/html"),
          "%d error has Content-Type %r" % (status, ctype))
    text = resp.raw_head + resp.body
    for b in backends:
        port = b if isinstance(b, int) else b.port
        check(b"127.0.0.1:%d" % port not in text and b":%d" % port not in text,
              "%d response leaks the backend address (port %d): %r" % (status, port, text[:400]))
    for s in list(secrets) + [b"BACKEND-SECRET", b"X-Backend", b"Python", b"errno", b"Connection refused"]:
        check(s not in text, "%d response leaks backend details (%r): %r" % (status, s, text[:400]))
