"""WebSocket (RFC 6455) through gatehouse, plain (ws) and TLS (wss), with a real client and server
(Debian's python3-websockets): big and fragmented messages intact, 100 connections at once,
ping/pong and close codes both ways, reloads that cut no tunnel, a slow reader with RSS bounded,
a client that vanishes (RST), the tunnel idle timeout, the access-log line; and what is refused:
invalid handshakes (400, 426), a 101 nobody asked for (502), h2c, `websocket off`.

The origin is ws_backend.py (its events file says what it saw); raw sockets stand in for the
client where the library would hide the behaviour (slow reading, RST) and for a backend that
misbehaves (a 101 to anything)."""
import asyncio
import base64
import hashlib
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

import cfgutil
from harness import (HERE, PY, SLOW, T, Conn, Fail, build_request, check, eq, free_port, rss_kib, test,
                     wait_until)

try:
    import websockets
except ImportError:  # Debian's python3-websockets, when the tests run on another CPython 3 than Debian's
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets

KEY = base64.b64encode(b"0123456789abcdef").decode()
WS_HEADERS = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", KEY),
              ("Sec-WebSocket-Version", "13")]


# ---------------------------------------------------------------- fixtures

class WsBackend:
    """ws_backend.py on a free port; events() are its lines (open/msg/close)."""

    def __init__(self, ctx, name="ws"):
        self.events_path = os.path.join(ctx.dir, name + ".events")
        for _ in range(3):
            self.port = free_port()
            self.proc = ctx.popen([PY, str(HERE / "ws_backend.py"), str(self.port), self.events_path],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(ctx.dir, name + ".stderr"), "ab"))
            if wait_until(lambda: self.proc.poll() is not None or "listening" in self.text(), 10 * T):
                if self.proc.poll() is None:
                    return
        raise Fail("the WebSocket backend did not start: %s" % self.text())

    def text(self):
        try:
            with open(self.events_path) as f:
                return f.read()
        except OSError:
            return ""

    def events(self, kind):
        return [l.split()[1:] for l in self.text().splitlines() if l.split()[1:2] == [kind]]


def conf(ports, be, extra_routes="", timeouts="", access_log=None, certs=None, workers=1, gen="g0", main="", pool=None):
    tls, plain = ports
    return "\n".join([
        "workers %d" % workers,
        main,
        "access_log %s" % access_log if access_log else "",
        "timeouts {%s}" % timeouts if timeouts else "",
        "listen 127.0.0.1:%d tls" % tls,
        "listen 127.0.0.1:%d" % plain,
        pool or "pool ws { server 127.0.0.1:%d }" % be,
        "site default {",
        "    cert %s %s" % (certs["ec_cert"], certs["ec_key"]),
        "    route /gen { respond 200 %s }" % gen,
        extra_routes,
        "    route / { proxy ws }",
        "}", ""])


def start(ctx, be, **kw):
    log = os.path.join(ctx.dir, "access.log")
    certs = ctx.session.certs()
    gh = ctx.gatehouse_config(lambda ports: conf(ports, be.port, access_log=log, certs=certs, **kw), nports=2)
    gh.access_log = log
    gh.conf_kw = dict(kw, access_log=log, certs=certs)
    return gh


def urls(gh, path):
    return [("ws", "ws://127.0.0.1:%d%s" % (gh.ports[1], path)), ("wss", "wss://127.0.0.1:%d%s" % (gh.ports[0], path))]


def client_ssl(url):
    if not url.startswith("wss"):
        return None
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def connect(url, **kw):
    return websockets.connect(url, ssl=client_ssl(url), max_size=None, ping_interval=None, compression=None,
                              open_timeout=10 * T, close_timeout=10 * T, **kw)


def run(coro, timeout):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def access_lines(gh):
    try:
        with open(gh.access_log) as f:
            return f.read().splitlines()
    except OSError:
        return []


def worker_pid(gh):
    # Configuration files always start the prober too: the worker is the child holding our listener.
    import t_reload
    ws = t_reload.serving_workers(gh)
    check(len(ws) == 1, "expected one worker, found %r" % ws)
    return ws[0]


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def stable_nfds(pid):
    """The worker's descriptor count once it stopped changing (a closed client lingers briefly)."""
    last = nfds(pid)
    for _ in range(int(50 * T)):
        time.sleep(0.2)
        now = nfds(pid)
        if now == last:
            return now
        last = now
    return last


def raw_handshake(port, path, tls=False, rcvbuf=None):
    """A WebSocket opening handshake over a plain socket; returns (socket, bytes after the 101 head)."""
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10 * T)
    s.connect(("127.0.0.1", port))
    if tls:
        s = client_ssl("wss").wrap_socket(s, server_hostname="localhost")
    s.sendall(build_request("GET", path, WS_HEADERS))
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        check(d, "closed before the 101: %r" % buf)
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    check(head.startswith(b"HTTP/1.1 101 "), "answer to the handshake: %r" % head)
    return s, head, rest


def frame(payload, opcode=2, fin=True):
    """A masked client frame (RFC 6455 5.2)."""
    mask = os.urandom(4)
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


# ---------------------------------------------------------------- data

@test("ws_big_and_fragmented_messages_intact", timeout=120)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)
    big = os.urandom(16 << 20)
    want = hashlib.sha256(big).hexdigest()

    async def one(url):
        async with connect(url) as ws:
            await ws.send(big)
            got = await ws.recv()
            eq(len(got), len(big), "length of the 16 MiB echo")
            eq(hashlib.sha256(got).hexdigest(), want, "sha256 of the 16 MiB echo")
            # A fragmented message: the library sends one frame per piece (RFC 6455 5.4).
            pieces = [os.urandom(n) for n in (1, 125, 126, 65535, 65536, 300000, 7)]
            await ws.send(iter(pieces))
            got = await ws.recv()
            eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(b"".join(pieces)).hexdigest(),
               "sha256 of a fragmented message")
            await ws.send("text \u00e9\u4e2d")
            eq(await ws.recv(), "text \u00e9\u4e2d", "a text message")
        async with connect(url.replace("/echo", "/sha")) as ws:
            await ws.send(iter([big[:1 << 20], big[1 << 20:]]))
            eq(await ws.recv(), want, "the backend's sha256 of a fragmented 16 MiB message")

    for name, url in urls(gh, "/echo"):
        t0 = time.monotonic()
        run(one(url), 60 * T)
        ctx.note("%s: %.2fs" % (name, time.monotonic() - t0))


@test("ws_100_concurrent_connections", timeout=120)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)

    async def one(url, i):
        async with connect(url) as ws:
            for j in range(5):
                m = "conn %d message %d %s" % (i, j, "x" * (i * 37 % 2000))
                await ws.send(m)
                eq(await ws.recv(), m, "echo on connection %d" % i)
        return 1

    async def all_at_once():
        conns = []
        for i in range(100):
            conns.append(one(urls(gh, "/echo")[i % 2][1], i))
        return sum(await asyncio.gather(*conns))

    eq(run(all_at_once(), 60 * T), 100, "connections that echoed every message")
    eq(len(be.events("open")), 100, "WebSocket connections the backend saw")


@test("ws_ping_pong_and_close_codes", timeout=60)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)

    async def scenario(url):
        async with connect(url) as ws:
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5 * T)  # the backend's pong came back through the tunnel
            await ws.close(4000, "client says bye")
        eq(ws.close_code, 4000, "close code echoed by the backend")
        async with connect(url.replace("/echo", "/close/4001")) as ws:
            await ws.send("close me")
            try:
                await ws.recv()
                raise Fail("no close from the backend")
            except websockets.ConnectionClosed:
                pass
        eq(ws.close_code, 4001, "the backend's close code at the client")
        eq(ws.close_reason, "bye", "the backend's close reason at the client")

    for name, url in urls(gh, "/echo"):
        run(scenario(url), 30 * T)
    wait_until(lambda: len(be.events("close")) >= 4, 5 * T)  # the backend logs after its side closed
    codes = [e[1] for e in be.events("close")]
    eq(codes.count("4000"), 2, "client close code 4000 seen by the backend (%r)" % codes)
    eq(codes.count("4001"), 2, "backend close code 4001 (%r)" % codes)


@test("ws_reloads_cut_no_tunnel", timeout=120)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)
    gh.allow_worker_change = True  # a reload restarts the prober (the worker stays: serving_workers checks)
    w = worker_pid(gh)
    stop = threading.Event()
    counts = {}

    async def talker(url, i):
        n = 0
        async with connect(url) as ws:
            while not stop.is_set():
                m = "%d:%d" % (i, n)
                await ws.send(m)
                eq(await ws.recv(), m, "echo %d on tunnel %d" % (n, i))
                n += 1
                await asyncio.sleep(0.02)
        counts[i] = n

    async def load():
        async def reloader():
            for k in range(1, 6):
                await asyncio.sleep(0.4)
                with open(gh.conf_path, "w") as f:
                    f.write(conf(gh.ports, be.port, gen="g%d" % k, **gh.conf_kw))
                gh.signal(signal.SIGHUP)
                # the reload is applied: the changed route answers from the new file
                for _ in range(int(100 * T)):
                    if await asyncio.to_thread(get_gen, gh) == "g%d" % k:
                        break
                    await asyncio.sleep(0.05)
                else:
                    raise Fail("reload %d not applied" % k)
            await asyncio.sleep(0.4)
            stop.set()
        await asyncio.gather(reloader(), *[talker(urls(gh, "/echo")[i % 2][1], i) for i in range(50)])

    run(load(), 90 * T)
    eq(len(counts), 50, "tunnels that lasted through 5 reloads")
    check(min(counts.values()) >= 10, "every tunnel exchanged messages (fewest %d)" % min(counts.values()))
    eq(len(be.events("open")), 50, "backend connections (none was re-opened)")
    eq(worker_pid(gh), w, "the worker after the reloads")
    ctx.info = "%d messages echoed over 50 tunnels across 5 reloads" % sum(counts.values())


def get_gen(gh):
    try:
        with Conn(gh.ports[0], timeout=5 * T) as c:
            return c.request("GET", "/gen").body.decode().strip()
    except (OSError, Fail):
        return None


# ---------------------------------------------------------------- resources

@test("ws_slow_reader_rss_bounded", heavy=True, timeout=180)
def _(ctx):
    from t_stream import RssSampler
    be = WsBackend(ctx)
    gh = start(ctx, be)
    size = (64 if SLOW else 256) << 20
    sampler = RssSampler(gh)
    s, head, rest = raw_handshake(gh.ports[0], "/flood/%d" % size, tls=True, rcvbuf=65536)
    got = len(rest)
    time.sleep(3)  # not reading: the backend keeps sending, gatehouse must not buffer it
    paused = sampler.peak
    t0 = time.monotonic()
    # The server ends with a close frame (1000 "flooded") and closes its socket once the client
    # answers it, as a real client does (RFC 6455 5.5.1); without the answer it would wait its
    # close_timeout (10 s), as long as our read timeout: a race, not a measure of the tunnel.
    close_frame = b"\x88\x09\x03\xe8flooded"
    tail = rest[-len(close_frame):]
    answered = False
    while True:
        if not answered and tail.endswith(close_frame):
            s.sendall(frame(b"\x03\xe8", opcode=8))
            answered = True
        d = s.recv(1 << 16)
        if not d:
            break
        got += len(d)
        tail = (tail + d)[-len(close_frame):]
    s.close()
    check(answered, "no close frame from the server after its messages")
    peak = sampler.stop()
    ctx.info = "%d MiB through a reader that paused 3s: peak RSS %.1f MiB (%.1f during the pause), %.1fs" % (
        size >> 20, peak / 1024, paused / 1024, time.monotonic() - t0)
    check(got >= size, "bytes received %d < %d" % (got, size))
    if not SLOW:
        check(peak < 32 * 1024, "gatehouse RSS reached %.1f MiB (limit 32 MiB)" % (peak / 1024))


@test("ws_client_reset_closes_backend_no_fd_leak", timeout=60)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)
    w = worker_pid(gh)
    get_gen(gh)  # one request first, so that lazily opened descriptors are there before counting
    before = stable_nfds(w)
    for tls in (False, True):
        s, head, rest = raw_handshake(gh.ports[0 if tls else 1], "/idle", tls=tls)
        wait_until(lambda: len(be.events("open")) >= (2 if tls else 1), 5 * T)
        check(wait_until(lambda: nfds(w) == before + 2, 3 * T),
              "a tunnel holds two descriptors (%d, before %d)" % (nfds(w), before))
        raw = s if not tls else s  # SSLSocket: SO_LINGER applies to its socket
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t0 = time.monotonic()
        raw.close()  # RST: no close frame, no FIN
        n = 2 if tls else 1
        check(wait_until(lambda: len(be.events("close")) >= n, 3 * T),
              "the backend's side was not closed within 3s of the client's RST")
        ctx.note("backend side closed %.3fs after the RST" % (time.monotonic() - t0))
    check(wait_until(lambda: nfds(w) == before, 3 * T), "worker descriptors: %d, before %d" % (nfds(w), before))
    codes = [e[1] for e in be.events("close")]
    eq(codes, ["1006", "1006"], "close codes at the backend: an abnormal end (no close frame)")


@test("ws_frames_sent_with_the_handshake_reach_the_server", timeout=30)
def _(ctx):
    # Bytes that arrive in the same read as a head belong to the tunnel, both ways: the client's
    # first frame right behind its request, the server's first frames right behind its 101.
    be = WsBackend(ctx)
    gh = start(ctx, be)
    for tls in (False, True):
        s = socket.create_connection(("127.0.0.1", gh.ports[0 if tls else 1]), timeout=10 * T)
        if tls:
            s = client_ssl("wss").wrap_socket(s, server_hostname="localhost")
        s.sendall(build_request("GET", "/echo", WS_HEADERS) + frame(b"early", opcode=1))
        buf = b""
        while buf.count(b"early") < 1:
            d = s.recv(4096)
            check(d, "closed before the echo: %r" % buf)
            buf += d
        check(buf.startswith(b"HTTP/1.1 101 "), "the 101: %r" % buf[:60])
        check(buf.endswith(b"\x81\x05early"), "the echo of the early frame: %r" % buf[-20:])
        s.close()


@test("ws_tunnels_count_for_max_connections", timeout=60)
def _(ctx):
    # A tunnel is a client connection (and holds an upstream socket): at max_connections with two
    # tunnels open, a new client waits (no idle keep-alive client to close, tunnels are not closed
    # to make room) until a tunnel ends, then is answered; the other tunnel keeps working.
    be = WsBackend(ctx)
    gh = start(ctx, be, main="max_connections 2")
    t1, _, _ = raw_handshake(gh.ports[1], "/echo")
    t2, _, _ = raw_handshake(gh.ports[1], "/echo")
    c = socket.create_connection(("127.0.0.1", gh.ports[1]), timeout=10 * T)
    c.sendall(build_request("GET", "/gen", []))
    c.settimeout(1.0)
    try:
        early = c.recv(4096)
    except socket.timeout:
        early = None
    check(early is None, "a third client was answered while two tunnels held max_connections 2: %r" % early)
    t1.close()
    c.settimeout(10 * T)
    buf = b""
    while b"g0" not in buf:
        d = c.recv(4096)
        check(d, "the waiting client was closed, not answered, once a tunnel ended: %r" % buf)
        buf += d
    check(buf.startswith(b"HTTP/1.1 200 "), "the waiting client's answer: %r" % buf[:60])
    t2.sendall(frame(b"still", opcode=1))
    buf = b""
    while not buf.endswith(b"\x81\x05still"):
        d = t2.recv(4096)
        check(d, "the other tunnel closed: %r" % buf)
        buf += d
    c.close()
    t2.close()


@test("ws_tunnel_counts_in_flight_for_least_conn", timeout=60)
def _(ctx):
    # A tunnel is load on its server: while one is open to a server, least_conn sends every new
    # WebSocket to the other one (not counted, the two would tie and alternate).
    a, b = WsBackend(ctx, "a"), WsBackend(ctx, "b")
    gh = start(ctx, a, pool="pool ws { balance least_conn\n server 127.0.0.1:%d\n server 127.0.0.1:%d }"
               % (a.port, b.port))
    held, _, _ = raw_handshake(gh.ports[1], "/echo")
    check(wait_until(lambda: len(a.events("open")) + len(b.events("open")) == 1, 5 * T),
          "the first tunnel reached no backend")
    busy, other = (a, b) if a.events("open") else (b, a)
    for i in range(4):
        s, _, _ = raw_handshake(gh.ports[1], "/echo")
        s.close()
        # its access-log line is written when the tunnel ends, after its count went
        check(wait_until(lambda: sum("tunnel=" in l for l in access_lines(gh)) == i + 1, 5 * T),
              "short tunnel %d did not end" % i)
    eq(len(busy.events("open")), 1, "tunnels opened to the server holding a tunnel")
    eq(len(other.events("open")), 4, "tunnels opened to the idle server")
    held.close()


@test("ws_tunnel_idle_timeout_and_access_log", timeout=60)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be, timeouts="tunnel 1s")
    s, head, rest = raw_handshake(gh.ports[1], "/echo")
    s.sendall(frame(b"hello", opcode=1))
    echo = b""
    while len(echo) < 7:
        d = s.recv(100)
        check(d, "closed before the echo: %r" % echo)
        echo += d
    eq(echo, b"\x81\x05hello", "the echo frame")
    t0 = time.monotonic()
    s.settimeout(10 * T)
    try:
        while s.recv(100):
            pass
    except ConnectionResetError:
        pass
    idle = time.monotonic() - t0
    check(0.8 < idle < 4 * T, "the idle tunnel was closed after %.2fs (timeout 1s)" % idle)
    check(wait_until(lambda: be.events("close"), 3 * T), "the backend side was not closed")
    line = wait_until(lambda: [l for l in access_lines(gh) if '"GET /echo HTTP/1.1" 101' in l], 3 * T)
    check(line, "no access-log line for the tunnel: %r" % access_lines(gh))
    m = re.search(r' 101 (\d+) "-" "-" tunnel=(\d+\.\d{3})s in=(\d+) out=(\d+)$', line[0])
    check(m, "tunnel access-log line: %r" % line[0])
    eq(m.group(3), str(len(frame(b"hello", opcode=1))), "bytes in (the client's frame)")
    eq(m.group(4), "7", "bytes out (the echo frame)")
    eq(m.group(1), m.group(4), "the size field is the bytes sent to the client")
    check(float(m.group(2)) >= 0.9, "duration %s" % m.group(2))


@test("ws_shutdown_deadline_closes_tunnels", timeout=60)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be, timeouts="shutdown 1s")
    s, head, rest = raw_handshake(gh.ports[0], "/idle", tls=True)
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    gh.proc.wait(10 * T)
    secs = time.monotonic() - t0
    check(0.8 < secs < 5 * T, "gatehouse exited %.2fs after SIGTERM (deadline 1s)" % secs)
    eq(gh.proc.returncode, 0, "exit code (closing tunnels at the deadline is no failure)")
    check(wait_until(lambda: be.events("close"), 3 * T), "the backend side was not closed")
    check([l for l in access_lines(gh) if " 101 " in l and "tunnel=" in l], "no access-log line for the tunnel")


# ---------------------------------------------------------------- what is refused

RawBackend = cfgutil.RawBackend


SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"


def raw_conf_start(ctx, backend, extra=""):
    certs = ctx.session.certs()
    return ctx.gatehouse_config(lambda ports: conf(ports, backend.port, certs=certs, extra_routes=extra), nports=2)


@test("ws_101_to_a_plain_request_is_502", timeout=30)
def _(ctx):
    b = RawBackend(ctx, lambda head: SWITCH)
    gh = raw_conf_start(ctx, b)
    with Conn(gh.ports[0]) as c:
        eq(c.request("GET", "/plain").status, 502, "a 101 to a request that asked for no upgrade")
    with Conn(gh.ports[0]) as c:
        r = c.request("GET", "/h2c", [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                      ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        eq(r.status, 502, "a 101 to an h2c upgrade (which is never forwarded)")
    h2c = b.heads[-1].lower()
    check("upgrade" not in h2c and "http2-settings" not in h2c, "the h2c upgrade reached the backend: %r" % h2c)
    b2 = RawBackend(ctx, lambda head: SWITCH.replace(b"websocket", b"h2c"))
    gh2 = raw_conf_start(ctx, b2)
    with Conn(gh2.ports[0]) as c:
        eq(c.request("GET", "/ws", WS_HEADERS).status, 502, "a 101 to another protocol than the one asked")


@test("ws_invalid_handshakes_refused", timeout=30)
def _(ctx):
    b = RawBackend(ctx, lambda head: OK)
    gh = raw_conf_start(ctx, b)
    cases = [
        ("bad key", [("Sec-WebSocket-Key", "c2hvcnQ=")], 400),
        ("two keys", [("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Key", KEY)], 400),
        ("version 8", [("Sec-WebSocket-Key", KEY), ("Sec-WebSocket-Version", "8")], 426),
        ("no version", [("Sec-WebSocket-Key", KEY)], 426),
    ]
    for what, extra, status in cases:
        with Conn(gh.ports[0]) as c:
            r = c.request("GET", "/ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")] + extra)
            eq(r.status, status, what)
            if status == 426:
                eq(r.get("Sec-WebSocket-Version"), "13", "426 names the version")
                eq(r.get("Upgrade"), "websocket", "426 names the protocol")
    with Conn(gh.ports[0]) as c:
        eq(c.request("POST", "/ws", WS_HEADERS, body=b"").status, 400, "a POST upgrade")
    eq(b.heads, [], "requests that reached the backend")


@test("ws_route_off_and_non_101_answer_stay_http", timeout=30)
def _(ctx):
    b = RawBackend(ctx, lambda head: OK)
    gh = raw_conf_start(ctx, b, extra="    route /nows/ { proxy ws\n websocket off }")
    with Conn(gh.ports[0]) as c:
        r = c.request("GET", "/nows/x", WS_HEADERS)
        eq(r.status, 200, "websocket off: a plain request")
        head = b.heads[-1].lower()
        check("upgrade" not in head, "websocket off: the upgrade reached the backend: %r" % head)
        # a WebSocket request the server answers with 200: the connection stays HTTP
        r = c.request("GET", "/ws", WS_HEADERS)
        eq(r.status, 200, "a non-101 answer to an upgrade")
        head = b.heads[-1].lower()
        check("connection: upgrade" in head and "upgrade: websocket" in head, "the upgrade forwarded: %r" % head)
        check("sec-websocket-key: " + KEY.lower() in head, "the key forwarded: %r" % head)
        eq(c.request("GET", "/after").status, 200, "the next request on the same connection")
    be = WsBackend(ctx)
    gh2 = start(ctx, be)

    async def rejected():
        try:
            async with connect(urls(gh2, "/reject")[1][1]):
                raise Fail("the handshake succeeded")
        except websockets.InvalidStatusCode as e:
            return e.status_code
    eq(run(rejected(), 20 * T), 403, "the backend's refusal reaches the client")


@test("ws_idle_tunnel_keeps_tls_buffers", timeout=120)
def _(ctx):
    # An idle wss tunnel must not keep OpenSSL's record buffers from the handshake and the 101
    # (37.9 KiB per idle tunnel when it did, 16.7 without them, HAProxy 20.2; bench_ws_idle.sh).
    be = WsBackend(ctx)
    gh = start(ctx, be)
    r = subprocess.run([sys.executable, str(HERE.parent.parent / "scripts" / "ws_idle.py"), "--port",
                        str(gh.ports[0]), "--pid", str(gh.pid), "--count", "500"],
                       capture_output=True, text=True, timeout=100 * T)
    m = re.search(r"established=(\d+) failed=(\d+) .* per_conn_kib=([\d.]+)", r.stdout)
    check(m, "ws_idle.py printed no result: %r %r" % (r.stdout[-300:], r.stderr[-300:]))
    established, failed, per = int(m.group(1)), int(m.group(2)), float(m.group(3))
    ctx.info = "%d idle wss tunnels, %.1f KiB each" % (established, per)
    eq((established, failed), (500, 0), "tunnels established, failed")
    if SLOW:
        ctx.info += "; memory check skipped (SLOW)"
    else:
        check(per < 28, "an idle wss tunnel costs %.1f KiB (record buffers kept?)" % per)


def failing_moves_gatehouse(ctx, be, every, main=""):
    """gatehouse with tests/integration/faults.c preloaded: every `every`th hand-over of a connection
    (epoll_ctl re-add) fails with ENOMEM. A WebSocket hands over its upstream first, then its client."""
    so = cfgutil.preload_library(ctx.session, "faults")
    certs = ctx.session.certs()
    env = dict(cfgutil.preload_env(so), GH_FAIL_MOVE_EVERY=str(every))
    return ctx.gatehouse_config(lambda ports: conf(ports, be.port, certs=certs, main=main), nports=2, env=env)


def handshake_then_closed(port, tls=False):
    """A WebSocket handshake whose hand-over fails: the 101 may come, then the connection must close."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * T)
    if tls:
        s = client_ssl("wss").wrap_socket(s, server_hostname="localhost")
    s.sendall(build_request("GET", "/echo", WS_HEADERS))
    buf = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            buf += d
    except (ConnectionResetError, ssl.SSLError):
        pass
    except socket.timeout:
        raise Fail("the connection stayed open after its hand-over failed: %r" % buf[:80])
    finally:
        s.close()
    return buf


@test("ws_failed_client_handover_leaks_client", timeout=60)
def _(ctx):
    # When the client's connection could not be handed to the tunnel (epoll_ctl ADD failed), the
    # client struct stayed on the worker's list with its generation: proxy__client_close returned at
    # once on fd -1. Each one held a place in max_connections, so three of them (max_connections 3)
    # left the worker refusing every new client for good.
    be = WsBackend(ctx)
    gh = failing_moves_gatehouse(ctx, be, every=2, main="max_connections 3")
    w = worker_pid(gh)
    get_gen(gh)
    before = stable_nfds(w)
    for i in range(3):
        buf = handshake_then_closed(gh.ports[i % 2], tls=i % 2 == 0)
        check(not buf or buf.startswith(b"HTTP/1.1 101 "), "answer %d to the handshake: %r" % (i, buf[:60]))
    c = socket.create_connection(("127.0.0.1", gh.ports[1]), timeout=5 * T)
    c.sendall(build_request("GET", "/gen", []))
    buf = b""
    try:
        while b"g0" not in buf:
            d = c.recv(4096)
            check(d, "closed before the answer: %r" % buf)
            buf += d
    except socket.timeout:
        raise Fail("no answer to a new client after 3 failed hand-overs with max_connections 3: %r" % buf)
    finally:
        c.close()
    check(buf.startswith(b"HTTP/1.1 200 "), "the new client's answer: %r" % buf[:60])
    check(wait_until(lambda: nfds(w) == before, 3 * T), "worker descriptors: %d, before %d" % (nfds(w), before))
    check(wait_until(lambda: len(be.events("close")) == 3, 3 * T),
          "backend sides closed: %d of 3" % len(be.events("close")))


@test("ws_failed_upstream_handover_closes_both", timeout=60)
def _(ctx):
    # The upstream's hand-over fails first (every re-add fails): the upstream socket must not stay
    # open, nor the client wait: both close, and no descriptor is left behind.
    be = WsBackend(ctx)
    gh = failing_moves_gatehouse(ctx, be, every=1)
    w = worker_pid(gh)
    get_gen(gh)
    before = stable_nfds(w)
    for i in range(4):
        handshake_then_closed(gh.ports[i % 2], tls=i % 2 == 0)
    check(wait_until(lambda: nfds(w) == before, 3 * T), "worker descriptors: %d, before %d" % (nfds(w), before))
    check(wait_until(lambda: len(be.events("close")) == 4, 3 * T),
          "backend sides closed: %d of 4" % len(be.events("close")))
    eq(get_gen(gh), "g0", "a request after the failed hand-overs")
