"""Processes: master and workers, worker restart, graceful and immediate shutdown."""
import os
import signal
import socket
import ssl
import threading
import time

from harness import GATEHOUSE, T, Conn, Fail, alive, check, client_context, eq, test, wait_until


class Background:
    """A request running in a thread; .result is a Resp or an exception."""

    def __init__(self, port, path, timeout):
        self.result = None
        self.t = threading.Thread(target=self.run, args=(port, path, timeout), daemon=True)
        self.t.start()

    def run(self, port, path, timeout):
        try:
            with Conn(port, timeout=timeout) as c:
                self.result = c.request("GET", path)
        except Exception as e:  # noqa: BLE001
            self.result = e

    def join(self, timeout):
        self.t.join(timeout)
        return self.result


def new_connection_served(port, timeout):
    """What happens to a new client: 'refused', 'closed', 'timeout' or 'served'."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "connect failed (%s)" % e
    try:
        with client_context().wrap_socket(s, server_hostname="localhost") as t:
            t.settimeout(timeout)
            t.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n")
            d = t.recv(100)
            if d.startswith(b"HTTP/1.1 200"):
                return "served"
            return "closed" if not d else "answered %r" % d[:40]
    except socket.timeout:
        return "timeout"
    except (OSError, ssl.SSLError):
        return "closed"
    finally:
        s.close()


def wait_backend_got(b, path, timeout):
    return wait_until(lambda: any(e["target"] == path for e in b.requests()), timeout)


@test("process_master_and_workers")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], workers=2)
    ws = gh.workers()
    eq(len(ws), 2, "worker processes of --workers 2")
    exe = os.path.realpath(GATEHOUSE)
    for w in ws:
        check(os.path.realpath("/proc/%d/exe" % w) == exe, "child %d is not a gatehouse process" % w)
    gh3 = ctx.gatehouse([ctx.backend("b2")], workers=3)
    eq(len(gh3.workers()), 3, "worker processes of --workers 3")


@test("process_worker_killed_is_restarted")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], workers=2)
    gh.allow_worker_change = True
    before = gh.workers()
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    ok = wait_until(lambda: len(gh.workers()) == 2 and victim not in gh.workers(), 10 * T)
    check(ok, "no replacement worker: before %s, after SIGKILL of %d: %s" % (before, victim, gh.workers()))
    check(before[1] in gh.workers(), "the other worker %d was replaced too: %s" % (before[1], gh.workers()))
    check(gh.proc.poll() is None, "the master exited")
    for i in range(20):
        with Conn(gh.port) as c:
            eq(c.request("GET", "/small").status, 200, "request %d after a worker restart" % (i + 1))
    # Both at once, twice.
    for round_ in range(2):
        old = gh.workers()
        for w in old:
            os.kill(w, signal.SIGKILL)
        ok = wait_until(lambda: len(gh.workers()) == 2 and not set(old) & set(gh.workers()), 10 * T)
        check(ok, "workers not replaced after killing all of them: %s -> %s" % (old, gh.workers()))
        with Conn(gh.port) as c:
            eq(c.request("GET", "/small").status, 200, "request after all workers were restarted")


@test("process_sigterm_drains_in_flight")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=2)
    workers = gh.workers()
    bg = Background(gh.port, "/slow?ms=1500", 15 * T)
    check(wait_backend_got(b, "/slow?ms=1500", 5 * T), "the slow request did not reach the backend")
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    time.sleep(0.3)
    what = new_connection_served(gh.port, 2 * T)
    ctx.note("new connection 0.3s after SIGTERM: %s" % what)
    ctx.info = "new connection after SIGTERM: " + what
    check(what.startswith("refused"), "a new connection 0.3s after SIGTERM was not refused: %s" % what)
    r = bg.join(10 * T)
    check(not isinstance(r, Exception) and r is not None,
          "the in-flight request did not complete after SIGTERM: %r" % (r,))
    eq((r.status, r.body), (200, b"slow\n"), "in-flight response after SIGTERM")
    try:
        code = gh.proc.wait(10 * T)
    except Exception:
        raise Fail("master still running %.0fs after SIGTERM with nothing in flight" % (10 * T))
    dt = time.monotonic() - t0
    eq(code, 0, "master exit code after SIGTERM")
    check(dt < 1.2 + 5 * T, "master took %.1fs to exit after SIGTERM" % dt)
    check(wait_until(lambda: not any(alive(w) for w in workers), 3 * T),
          "workers still alive after the master exited")


@test("process_sigterm_closes_idle_connections")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], workers=1)
    c = Conn(gh.port)
    eq(c.request("GET", "/small").status, 200, "status")
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    closed, extra = c.wait_closed(5 * T)
    c.close()
    check(closed, "an idle keep-alive connection stayed open after SIGTERM")
    try:
        code = gh.proc.wait(5 * T)
    except Exception:
        raise Fail("master still running %.0fs after SIGTERM with only idle connections" % (5 * T))
    eq(code, 0, "exit code")
    check(time.monotonic() - t0 < 3 * T, "exit took %.1fs with only an idle connection" % (time.monotonic() - t0))


@test("process_shutdown_timeout")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, args=["--shutdown-timeout", "1s"])
    bg = Background(gh.port, "/slow?ms=8000", 15 * T)
    check(wait_backend_got(b, "/slow?ms=8000", 5 * T), "the slow request did not reach the backend")
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    try:
        gh.proc.wait(6 * T)
    except Exception:
        raise Fail("master still running %.0fs after SIGTERM with --shutdown-timeout 1s" % (6 * T))
    dt = time.monotonic() - t0
    check(0.8 <= dt <= 4 * T, "exit %.2fs after SIGTERM with --shutdown-timeout 1s" % dt)
    r = bg.join(5 * T)
    check(isinstance(r, Exception), "the 8s request completed (%r) although the drain deadline was 1s" % (r,))


@test("process_sigint_stops_at_once")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    workers = gh.workers()
    bg = Background(gh.port, "/slow?ms=5000", 15 * T)
    check(wait_backend_got(b, "/slow?ms=5000", 5 * T), "the slow request did not reach the backend")
    t0 = time.monotonic()
    gh.signal(signal.SIGINT)
    try:
        gh.proc.wait(3 * T)
    except Exception:
        raise Fail("master still running %.0fs after SIGINT" % (3 * T))
    check(time.monotonic() - t0 < 2 * T, "SIGINT took %.1fs" % (time.monotonic() - t0))
    check(wait_until(lambda: not any(alive(w) for w in workers), 3 * T), "workers alive after SIGINT")
    check(isinstance(bg.join(5 * T), Exception), "the in-flight request completed after SIGINT")


@test("process_sigterm_drains_streams")
def _(ctx):
    # In-flight bodies in both directions finish after SIGTERM: a download the client reads
    # slowly, and an upload still being sent.
    import hashlib
    import pattern
    from harness import build_request
    b = ctx.backend(raw_max=1 << 20)
    gh = ctx.gatehouse([b], workers=1)
    size = 64 << 20
    down = Conn(gh.port, timeout=20 * T)
    down.send(build_request("GET", "/download?size=%d" % size))
    while len(down.buf) < 1 << 20:
        check(down._fill(), "download closed early")
    up = Conn(gh.port, timeout=20 * T)
    up.send(build_request("POST", "/upload", [("Content-Length", str(size))]))
    pieces = pattern.pieces(size, step=1 << 20)
    for i in range(4):
        up.send(next(pieces))
    gh.signal(signal.SIGTERM)
    time.sleep(0.5)
    for p in pieces:
        up.send(p)
    r = up.read_response()
    eq(r.body.decode(), "%s %d\n" % (pattern.sha256(size), size), "upload finished after SIGTERM")
    r = down.read_response()
    eq(r.status, 200, "download status")
    check(len(r.body) == size and hashlib.sha256(r.body).hexdigest() == pattern.sha256(size),
          "download after SIGTERM: %d of %d bytes, or different content" % (len(r.body), size))
    up.close()
    down.close()
    try:
        code = gh.proc.wait(10 * T)
    except Exception:
        raise Fail("master still running after both streams finished")
    eq(code, 0, "exit code")
