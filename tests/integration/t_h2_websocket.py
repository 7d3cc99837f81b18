"""WebSocket over HTTP/2 (RFC 8441): an extended CONNECT (:protocol websocket) becomes an HTTP/1.1
upgrade upstream (GET, Connection/Upgrade, a Sec-WebSocket-Key of gatehouse's own whose accept the
101 must carry), the client gets :status 200 without END_STREAM, and the stream and the upstream
connection are one tunnel, the same as an HTTP/1.1 upgrade's (tunnel.c): flow control both ways,
half-close both ways, a reset or a backend close passed on, the idle timeout, reloads and SIGTERM.

The client is raw frames (h2raw.py) with WebSocket frames built here; the backends are the real
ws_backend.py (python3-websockets) and RawWs below, a scriptable socket server that says exactly
what reached it (the head, the bytes, the EOF). Interop: HAProxy 2.6 as an HTTP/2 client of
gatehouse (`proto h2`) behind an HTTP/1.1 WebSocket client, when HAProxy sends RFC 8441."""
import base64
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import h2raw
from cfgutil import ThreadedServer
from h2raw import CANCEL, PROTOCOL_ERROR, H2Conn
from harness import SLOW, T, Fail, check, eq, free_port, rss_kib, test, wait_until
from t_websocket import WsBackend, access_lines, connect, frame, run, worker_pid

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_of(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


# ---------------------------------------------------------------- backends

class RawWs(ThreadedServer):
    """A WebSocket origin on a raw socket. Each connection: the head is recorded (heads), answered by
    reply(head) (default: a correct 101), then script(sock, rest, rec) runs; rec is the connection's
    record ({"data": bytes received, "eof": time of the client's FIN or None, "closed": bool})."""

    def __init__(self, ctx, script=None, reply=None):
        self.heads, self.conns = [], []
        self.script = script or echo_script
        self.reply = reply or (lambda head: switch(head))
        self.start()

    def one(self, c):
        rec = {"data": b"", "eof": None, "closed": False, "head": None}
        self.conns.append(rec)
        c.settimeout(30 * T)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, rest = buf.split(b"\r\n\r\n", 1)
            rec["head"] = head.decode("latin-1")
            self.heads.append(rec["head"])
            c.sendall(self.reply(rec["head"]))
            self.script(c, rest, rec)
        except OSError:
            pass
        finally:
            rec["closed"] = True
            c.close()


def header(head, name):
    for line in head.split("\r\n")[1:]:
        n, _, v = line.partition(":")
        if n.strip().lower() == name:
            return v.strip()
    return None


def switch(head, accept=None, extra=""):
    key = header(head, "sec-websocket-key") or ""
    acc = accept_of(key) if accept is None else accept
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
    if acc != "":
        lines.append("Sec-WebSocket-Accept: " + acc)
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


def echo_script(c, rest, rec):
    """Echoes bytes as they come; at the client's EOF, says "bye" and closes."""
    if rest:
        rec["data"] += rest
        c.sendall(rest)
    while True:
        d = c.recv(65536)
        if not d:
            rec["eof"] = time.monotonic()
            c.sendall(b"bye")
            return
        rec["data"] += d
        c.sendall(d)


# ---------------------------------------------------------------- gatehouse

def conf(p, ws_port, certs, extra_routes="", timeouts="", log=None, http_port=None, gen="g0"):
    return "\n".join([
        "workers 1",
        "access_log %s" % log if log else "",
        "timeouts {%s}" % timeouts if timeouts else "",
        "listen 127.0.0.1:%d tls" % p[0],
        "listen 127.0.0.1:%d protocols=h2" % p[1],
        "pool ws { server 127.0.0.1:%d }" % ws_port,
        "pool app { server 127.0.0.1:%d }" % http_port if http_port else "",
        "site default {",
        "    cert %s %s" % (certs["ec_cert"], certs["ec_key"]),
        "    route /gen { respond 200 %s }" % gen,
        "    route /small { proxy app }" if http_port else "",
        "    route /nows/ { proxy ws\n websocket off }",
        "    route /here { respond 200 here }",
        extra_routes,
        "    route / { proxy ws }",
        "}", ""])


def start(ctx, be, **kw):
    log = os.path.join(ctx.dir, "access.log")
    certs = ctx.session.certs()
    gh = ctx.gatehouse_config(lambda p: conf(p, be.port, certs, log=log, **kw), nports=2)
    gh.access_log = log
    gh.conf_fn = lambda **over: conf(gh.ports, be.port, certs, log=log, **dict(kw, **over))
    return gh


def ext_connect(path, authority="localhost", extra=(), protocol="websocket", version="13"):
    h = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "https"), (":authority", authority),
         (":path", path)]
    if version is not None:
        h.append(("sec-websocket-version", version))
    return h + list(extra)


class WsStream:
    """One WebSocket over one stream of an HTTP/2 connection c (raw frames)."""

    def __init__(self, c, path="/echo", extra=(), headers=None):
        self.c = c
        self.sid = c.request(headers or ext_connect(path, extra=extra), end_stream=False)
        self.st = c.streams[self.sid]
        self.read = 0  # bytes of st.body taken by recv()

    def opened(self, timeout=None):
        """Reads until the answer head (or a reset); returns the Outcome-like (status, headers, ended)."""
        deadline = time.monotonic() + (timeout or 10 * T)
        while self.st.headers is None and self.st.reset is None and not self.c.eof:
            try:
                self.c.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise Fail("stream %d: no answer within the time (frames: %s)" % (self.sid, self.c.describe_frames()))
        return self.st

    def status(self):
        st = self.opened()
        return int(dict(st.headers).get(":status")) if st.headers else None

    def send(self, payload, opcode=2, end=False):
        self.c.send_body(self.sid, frame(payload, opcode=opcode), end=end)

    def send_raw(self, data, end=False):
        self.c.send_body(self.sid, data, end=end)

    def bytes_until(self, n, timeout=None):
        """Reads until n bytes past what was taken arrived; returns them (taken)."""
        deadline = time.monotonic() + (timeout or 10 * T)
        while len(self.st.body) - self.read < n:
            if self.st.ended or self.st.reset is not None or self.c.eof:
                break
            try:
                self.c.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
        got = bytes(self.st.body[self.read:self.read + n])
        self.read += len(got)
        return got

    def recv(self, timeout=None):
        """One server frame (unmasked): (opcode, payload)."""
        hdr = self.bytes_until(2, timeout)
        check(len(hdr) == 2, "stream %d: no frame (ended %s, reset %s)" % (self.sid, self.st.ended, self.st.reset))
        n = hdr[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.bytes_until(2, timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.bytes_until(8, timeout))[0]
        payload = self.bytes_until(n, timeout)
        check(len(payload) == n, "stream %d: a frame's payload: %d bytes of %d (body %d, ended %s, reset %s, frames %s)"
              % (self.sid, len(payload), n, len(self.st.body), self.st.ended, self.st.reset,
                 self.c.describe_frames()))
        return hdr[0] & 0x0F, payload

    def wait_end(self, timeout=None):
        """Reads until END_STREAM or a reset: "end", or the reset code."""
        deadline = time.monotonic() + (timeout or 10 * T)
        while not self.st.ended and self.st.reset is None and not self.c.eof:
            try:
                self.c.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise Fail("stream %d: neither END_STREAM nor a reset (frames: %s)"
                           % (self.sid, self.c.describe_frames()))
        if self.st.reset is not None:
            return self.st.reset
        return "end" if self.st.ended else "closed"


def h2conn(gh, plain=False, **kw):
    c = H2Conn(gh.ports[1] if plain else gh.ports[0], plain=plain, timeout=10 * T, **kw)
    c.handshake()
    eq(c.server_settings.get(h2raw.ENABLE_CONNECT_PROTOCOL), 1, "SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 3)")
    return c


# ---------------------------------------------------------------- data

@test("h2_ws_echo_both_ways")
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)
    for plain in (False, True):
        with h2conn(gh, plain=plain) as c:
            ws = WsStream(c, "/echo", extra=[("x-test", "h2-%s" % plain)])
            eq(ws.status(), 200, "the answer to the extended CONNECT")
            check(not ws.st.ended, "the 200 came with END_STREAM")
            names = [n for n, v in ws.st.headers]
            for n in ("sec-websocket-accept", "upgrade", "connection"):
                check(n not in names, "%s in the 200: %r" % (n, ws.st.headers))
            ws.send(b"hello", opcode=1)
            eq(ws.recv(), (1, b"hello"), "a text message echoed")
            big = os.urandom(300000)
            ws.send(big)
            eq(ws.recv(), (2, big), "a 300 KB binary message echoed")
            ws.send(struct.pack("!H", 4000) + b"bye", opcode=8)  # close, RFC 6455 5.5.1
            op, p = ws.recv()
            eq((op, p[:2]), (8, struct.pack("!H", 4000)), "the close echoed")
            eq(ws.wait_end(), "end", "the backend's close ends the stream (END_STREAM)")
    opens = be.events("open")
    eq([o[1] for o in opens], ["/echo", "/echo"], "WebSockets the backend saw")
    eq([o[2] for o in opens], ["h2-False", "h2-True"], "the client's own header reached the backend")
    check(wait_until(lambda: len(access_lines(gh)) >= 2, 3 * T), "no access-log lines: %r" % access_lines(gh))
    lines = [l for l in access_lines(gh) if "/echo" in l]
    eq(len(lines), 2, "access-log lines: %r" % access_lines(gh))
    check(all('"GET /echo HTTP/2.0" 101' in l and "tunnel=" in l for l in lines), "tunnel lines: %r" % lines)


@test("h2_ws_upgrade_upstream_is_http11_with_our_key")
def _(ctx):
    be = RawWs(ctx, reply=lambda head: switch(head, extra="Sec-WebSocket-Protocol: chat\r\n"
                                                        "Sec-WebSocket-Extensions: x-ext\r\n"))
    gh = start(ctx, be)
    with h2conn(gh) as c:
        ws = WsStream(c, "/chat?room=1", extra=[("sec-websocket-protocol", "chat, superchat"),
                                               ("sec-websocket-extensions", "x-ext"),
                                               ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")])
        eq(ws.status(), 200, "the answer")
        h = dict(ws.st.headers)
        eq(h.get("sec-websocket-protocol"), "chat", "the backend's subprotocol reaches the client")
        eq(h.get("sec-websocket-extensions"), "x-ext", "the backend's extensions reach the client")
        ws.send_raw(b"raw bytes")
        eq(ws.bytes_until(9), b"raw bytes", "bytes echoed")
    head = be.heads[0]
    lines = head.split("\r\n")
    eq(lines[0], "GET /chat?room=1 HTTP/1.1", "the request line upstream")
    eq(header(head, "host"), "localhost", "Host from :authority")
    eq(header(head, "connection"), "Upgrade", "Connection upstream")
    eq(header(head, "upgrade"), "websocket", "Upgrade upstream")
    eq(header(head, "sec-websocket-version"), "13", "the client's version")
    eq(header(head, "sec-websocket-protocol"), "chat, superchat", "the client's subprotocols")
    eq(header(head, "sec-websocket-extensions"), "x-ext", "the client's extensions")
    key = header(head, "sec-websocket-key")
    check(key and key != "dGhlIHNhbXBsZSBub25jZQ==" and len(base64.b64decode(key)) == 16,
          "a key of gatehouse's own (the client's dropped): %r" % head)
    eq(head.lower().count("sec-websocket-key"), 1, "one key upstream")
    check("content-length" not in head.lower() and "transfer-encoding" not in head.lower(), "no body framing upstream")
    # a second WebSocket gets another key; its first frame, sent with the CONNECT before any answer, is
    # the tunnel's first bytes (after the 101), never a request body
    with h2conn(gh) as c:
        sid = c.new_sid()
        c.send(c.headers_frame(sid, h2raw.literal_block(ext_connect("/x")), end_stream=False) +
               h2raw.data_frame(sid, b"early frame"))
        ws = WsStream.__new__(WsStream)
        ws.c, ws.sid, ws.st, ws.read = c, sid, c.streams[sid], 0
        eq(ws.status(), 200, "a second WebSocket")
        eq(ws.bytes_until(11), b"early frame", "the early bytes echoed through the tunnel")
    check(header(be.heads[1], "sec-websocket-key") != key, "the same key twice: %r" % be.heads)
    eq(be.conns[1]["data"], b"early frame", "what the backend read after the head")
    check("content-length" not in be.heads[1].lower() and "transfer-encoding" not in be.heads[1].lower(),
          "the early bytes framed as a body: %r" % be.heads[1])


@test("h2_ws_flow_control_both_ways_rss_bounded", timeout=180)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)
    # client -> backend: 8 MiB sent only as gatehouse's WINDOW_UPDATEs allow (h2raw.send_body)
    big = os.urandom(8 << 20)
    with h2conn(gh) as c:
        ws = WsStream(c, "/sha")
        eq(ws.status(), 200, "the answer")
        ws.send(big)
        eq(ws.recv(30 * T), (1, hashlib.sha256(big).hexdigest().encode()), "the backend's sha256 of 8 MiB")
    # backend -> client through a small stream window (SETTINGS_INITIAL_WINDOW_SIZE 4096)
    with h2conn(gh, settings=[(h2raw.INITIAL_WINDOW_SIZE, 4096)]) as c:
        ws = WsStream(c, "/flood/%d" % (4 << 20))
        eq(ws.status(), 200, "the answer")
        got = 0
        while got < 4 << 20:
            op, p = ws.recv(30 * T)
            eq(op, 2, "a flood message")
            got += len(p)
        eq(got, 4 << 20, "bytes of the flood through a 4 KiB window")
        eq(ws.recv()[0], 8, "the close after the flood")
    # a client that stops reading: the backend is held back, the worker's memory stays bounded
    size = (16 if SLOW else 64) << 20
    w = worker_pid(gh)
    closes = len(be.events("close"))
    with h2conn(gh, auto_window=False) as c:
        ws = WsStream(c, "/flood/%d" % size)
        eq(ws.status(), 200, "the answer")
        before = rss_kib(w)
        c.drain(2 * T)  # reads what comes (no WINDOW_UPDATE is sent)
        grown = rss_kib(w) - before
        held = len(ws.st.body)
        eq(held, 65535, "bytes within the client's windows")
        check(held < 1 << 20, "the client got %d bytes without giving any window" % held)
        check(len(be.events("close")) == closes, "the backend sent its whole flood to a client that reads nothing")
        check(grown < 8 * 1024, "the worker grew %d KiB for a stalled %d MiB flood" % (grown, size >> 20))
        c.auto_window = True
        c.send(h2raw.window_update(0, held) + h2raw.window_update(ws.sid, held))
        got = 0
        while got < size:
            op, p = ws.recv(60 * T)
            got += len(p)
        eq(got, size, "the whole flood once the client reads")
    ctx.info = "stalled %d MiB flood: worker +%d KiB" % (size >> 20, grown)


def rec_of(be, i=0):
    check(wait_until(lambda: len(be.conns) > i, 5 * T), "the backend saw no connection %d" % i)
    return be.conns[i]


@test("h2_ws_half_close_both_ways")
def _(ctx):
    def backend_first(c, rest, rec):
        """Answers "ping" with "pong", shuts its side, then reads until the client's end."""
        data = rest
        while b"ping" not in data:
            data += c.recv(100)
        c.sendall(b"pong")
        c.shutdown(socket.SHUT_WR)
        while True:
            d = c.recv(65536)
            if not d:
                rec["eof"] = time.monotonic()
                return
            rec["data"] += d

    be = RawWs(ctx)
    gh = start(ctx, be)
    with h2conn(gh) as c:
        # the client ends first (END_STREAM): the backend reads its EOF, and still answers
        ws = WsStream(c, "/a")
        eq(ws.status(), 200, "the answer")
        ws.send_raw(b"abc")
        eq(ws.bytes_until(3), b"abc", "echo")
        c.send(h2raw.data_frame(ws.sid, b"", end=True))
        eq(ws.bytes_until(3), b"bye", "the backend's answer after the client's END_STREAM")
        eq(ws.wait_end(), "end", "the backend's close: END_STREAM")
        r = rec_of(be)
        check(wait_until(lambda: r["eof"] is not None, 3 * T), "the backend never read the client's end")
        eq(r["data"], b"abc", "what the backend got")
        time.sleep(0.2)
        eq(ws.st.reset, None, "a stream that ended both ways was reset")
    be.script = backend_first
    with h2conn(gh) as c:
        # the backend ends first (FIN): END_STREAM, and the client's bytes still go up
        ws = WsStream(c, "/b")
        eq(ws.status(), 200, "the answer")
        ws.send_raw(b"ping")
        eq(ws.bytes_until(4), b"pong", "the answer")
        eq(ws.wait_end(), "end", "the backend's FIN: END_STREAM")
        ws.send_raw(b"after the end")
        r = rec_of(be, 1)
        check(wait_until(lambda: r["data"] == b"after the end", 3 * T), "backend got %r" % r["data"])
        c.send(h2raw.data_frame(ws.sid, b"", end=True))
        check(wait_until(lambda: r["eof"] is not None, 3 * T), "the backend never read the client's end")
        check(wait_until(lambda: r["closed"], 3 * T), "the backend connection stayed open")
        time.sleep(0.2)
        c.drain(0.2)
        eq(ws.st.reset, None, "a stream that ended both ways was reset")
        eq(c.get("/here").status, 200, "the connection after the tunnel")


@test("h2_ws_client_reset_closes_backend_and_is_no_rapid_reset", timeout=120)
def _(ctx):
    be = RawWs(ctx)
    gh = start(ctx, be)
    n = 210  # past the rapid-reset bound (200 resets of unanswered streams per 10 s): these were answered
    with h2conn(gh) as c:
        for i in range(n):
            ws = WsStream(c, "/r%d" % i)
            eq(ws.status(), 200, "WebSocket %d" % i)
            ws.send_raw(b"x%d" % i)
            eq(ws.bytes_until(len(b"x%d" % i)), b"x%d" % i, "echo on WebSocket %d" % i)
            c.send(h2raw.rst_stream(ws.sid, CANCEL))
            if i == 0:
                r = rec_of(be)
                check(wait_until(lambda: r["closed"], 3 * T), "the client's RST left the backend connection open")
        eq(c.goaway, None, "resets of answered tunnels taken for rapid reset")
        eq(c.get("/here").status, 200, "the connection after %d reset tunnels" % n)
    check(wait_until(lambda: sum(r["closed"] for r in be.conns) == n, 5 * T),
          "backend connections closed: %d of %d" % (sum(r["closed"] for r in be.conns), n))


@test("h2_ws_connection_gone_closes_its_tunnels", timeout=60)
def _(ctx):
    # The HTTP/2 connection goes (the client's FIN, or a reset) while its streams are tunnels: each
    # tunnel gets the error from the loop, closes its backend side and frees the stream.
    from t_websocket import stable_nfds
    be = RawWs(ctx)
    gh = start(ctx, be)
    w = worker_pid(gh)
    eq(gen_of(gh), "g0", "a first request")
    base = stable_nfds(w)
    for rnd, how in enumerate(("fin", "rst")):
        c = h2conn(gh)
        socks = [WsStream(c, "/gone%d" % i) for i in range(3)]
        for i, ws in enumerate(socks):
            eq(ws.status(), 200, "WebSocket %d" % i)
            ws.send_raw(b"x")
            eq(ws.bytes_until(1), b"x", "echo on WebSocket %d" % i)
        if how == "rst":
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        recs = be.conns[3 * rnd:3 * rnd + 3]
        check(wait_until(lambda: all(r["closed"] for r in recs), 5 * T),
              "%s: backend connections left open: %r" % (how, [r["closed"] for r in recs]))
        eq(stable_nfds(w), base, "%s: the worker's descriptors afterwards" % how)
        eq(gen_of(gh), "g0", "%s: a new connection afterwards" % how)
    lines = wait_until(lambda: [l for l in access_lines(gh) if "/gone" in l and "tunnel=" in l], 3 * T)
    eq(len(lines or []), 6, "access-log lines of the tunnels: %r" % access_lines(gh))


@test("h2_ws_keepalive_timeout_spares_a_connection_with_tunnels", timeout=60)
def _(ctx):
    # `keepalive` closes an HTTP/2 connection with no stream open; a WebSocket stream is one, idle or
    # not (timed by `tunnel` alone), and its connection's other streams come and go.
    be = RawWs(ctx)
    gh = start(ctx, be, timeouts="keepalive 1s; send 1s; body 1s; response 1s")
    with h2conn(gh) as c:
        ws = WsStream(c, "/quiet")
        eq(ws.status(), 200, "the answer")
        eq(c.get("/here").status, 200, "a request beside the tunnel")
        c.drain(3 * T)  # idle past keepalive, send, body and response
        eq(c.goaway, None, "a GOAWAY for a connection with a tunnel")
        ws.send_raw(b"still here")
        eq(ws.bytes_until(10), b"still here", "the tunnel after 3 s idle")
        c.send(h2raw.rst_stream(ws.sid, CANCEL))
        t0 = time.monotonic()
        check(c.wait_goaway_or_close(5 * T) is not None, "the connection stayed open without its tunnel")
        check(time.monotonic() - t0 < 3 * T, "the keepalive after the tunnel took %.1fs" % (time.monotonic() - t0))


@test("h2_ws_idle_timeout")
def _(ctx):
    be = RawWs(ctx)
    gh = start(ctx, be, timeouts="tunnel 1s")
    with h2conn(gh) as c:
        ws = WsStream(c, "/idle")
        eq(ws.status(), 200, "the answer")
        ws.send_raw(b"x")
        eq(ws.bytes_until(1), b"x", "echo")
        t0 = time.monotonic()
        code = ws.wait_end(10 * T)
        idle = time.monotonic() - t0
        eq(code, CANCEL, "how the idle tunnel's stream ended")
        check(0.8 < idle < 4 * T, "the idle tunnel was closed after %.2fs (timeout 1s)" % idle)
        r = rec_of(be)
        check(wait_until(lambda: r["closed"], 3 * T), "the backend side stayed open")
        eq(c.get("/here").status, 200, "the connection after the idle tunnel")
    line = wait_until(lambda: [l for l in access_lines(gh) if '"GET /idle HTTP/2.0" 101' in l], 3 * T)
    check(line and "tunnel=" in line[0], "no access-log line for the tunnel: %r" % access_lines(gh))


@test("h2_ws_many_streams_and_requests_on_one_connection", timeout=120)
def _(ctx):
    be = WsBackend(ctx)
    app = ctx.backend()
    gh = start(ctx, be, http_port=app.port)
    with h2conn(gh) as c:
        socks = []
        for i in range(40):
            socks.append(WsStream(c, "/echo"))
            # ordinary requests between the WebSocket opens, on the same connection
            eq(c.get("/small?i=%d" % i).status, 200, "GET %d between WebSocket opens" % i)
        for i, ws in enumerate(socks):
            eq(ws.status(), 200, "WebSocket %d" % i)
        for rnd in range(3):
            for i, ws in enumerate(socks):
                ws.send(b"%d-%d" % (i, rnd) * (i + 1))
            eq(c.get("/here").status, 200, "a request while 40 tunnels carry messages")
            for i, ws in enumerate(socks):
                eq(ws.recv(), (2, b"%d-%d" % (i, rnd) * (i + 1)), "echo %d on WebSocket %d" % (rnd, i))
        for ws in socks[::2]:
            c.send(h2raw.rst_stream(ws.sid, CANCEL))
        for i, ws in enumerate(socks[1::2]):
            ws.send(b"still %d" % i)
            eq(ws.recv(), (2, b"still %d" % i), "the other tunnels after half were reset")
        eq(c.get("/small").status, 200, "a request after all that")
    eq(len(be.events("open")), 40, "WebSockets the backend saw")


def gen_of(gh):
    try:
        with H2Conn(gh.ports[0], timeout=5 * T) as c:
            o = c.get("/gen")
            return o.body.decode().strip() if o.kind == "response" else None
    except (OSError, Fail):
        return None


@test("h2_ws_reload_and_sigterm_during_a_tunnel", timeout=90)
def _(ctx):
    be = WsBackend(ctx)
    gh = start(ctx, be)
    gh.allow_worker_change = True  # a reload restarts the prober
    w = worker_pid(gh)
    c = h2conn(gh)
    ws = WsStream(c, "/echo")
    eq(ws.status(), 200, "the answer")
    ws.send(b"before")
    eq(ws.recv(), (2, b"before"), "echo before the reload")
    with open(gh.conf_path, "w") as f:
        f.write(gh.conf_fn(gen="g1"))
    gh.signal(signal.SIGHUP)
    check(wait_until(lambda: gen_of(gh) == "g1", 10 * T), "the reload was not applied")
    ws.send(b"after the reload")
    eq(ws.recv(), (2, b"after the reload"), "the tunnel after the reload")
    ws2 = WsStream(c, "/echo")  # a new stream on the old connection: the new generation
    eq(ws2.status(), 200, "a WebSocket opened after the reload")
    ws2.send(b"new")
    eq(ws2.recv(), (2, b"new"), "echo on the new one")
    eq(worker_pid(gh), w, "the worker after the reload")
    # SIGTERM: GOAWAY, the tunnels go on, the worker exits once they ended
    gh.signal(signal.SIGTERM)
    deadline = time.monotonic() + 10 * T
    while c.goaway is None and time.monotonic() < deadline:
        c.read_frame(max(0.0, deadline - time.monotonic()))
    check(c.goaway is not None, "no GOAWAY after SIGTERM")
    for x in (ws, ws2):
        x.send(b"draining")
        eq(x.recv(), (2, b"draining"), "a tunnel while draining")
        x.send(struct.pack("!H", 1000), opcode=8)
        eq(x.recv()[0], 8, "the close echoed")
        eq(x.wait_end(), "end", "the tunnel's end while draining")
        c.send(h2raw.data_frame(x.sid, b"", end=True))  # the client's end: the stream is closed both ways
    t0 = time.monotonic()
    gh.proc.wait(10 * T)
    eq(gh.proc.returncode, 0, "exit code")
    check(time.monotonic() - t0 < 5 * T, "gatehouse took %.2fs to exit once the tunnels ended"
          % (time.monotonic() - t0))
    c.close()


@test("h2_ws_shutdown_deadline_closes_tunnels", timeout=60)
def _(ctx):
    be = RawWs(ctx)
    gh = start(ctx, be, timeouts="shutdown 1s")
    c = h2conn(gh)
    ws = WsStream(c, "/idle")
    eq(ws.status(), 200, "the answer")
    t0 = time.monotonic()
    gh.signal(signal.SIGTERM)
    gh.proc.wait(10 * T)
    secs = time.monotonic() - t0
    check(0.8 < secs < 5 * T, "gatehouse exited %.2fs after SIGTERM (deadline 1s)" % secs)
    eq(gh.proc.returncode, 0, "exit code (closing tunnels at the deadline is no failure)")
    r = rec_of(be)
    check(wait_until(lambda: r["closed"], 3 * T), "the backend side was not closed")
    c.close()


# ---------------------------------------------------------------- what is refused

@test("h2_ws_malformed_extended_connects_reach_nothing")
def _(ctx):
    be = RawWs(ctx)
    gh = start(ctx, be)
    base = ext_connect("/ws")
    drop = lambda name: [(n, v) for n, v in base if n != name]  # noqa: E731
    malformed = [
        ("no :path", drop(":path")),
        ("no :scheme", drop(":scheme")),
        ("no :authority", drop(":authority") + [("host", "localhost")]),
        (":protocol on a GET", [(":method", "GET")] + base[1:]),
        ("empty :protocol", [(n, "" if n == ":protocol" else v) for n, v in base]),
        (":protocol twice", base[:2] + [(":protocol", "websocket")] + base[2:]),
        ("a content-length", base + [("content-length", "0")]),
        ("connection: upgrade", base + [("connection", "upgrade")]),
        ("upgrade: websocket", base + [("upgrade", "websocket")]),
        ("a path that is no origin-form", [(n, "ws" if n == ":path" else v) for n, v in base]),
        ("an authority with a CR LF", [(n, "localhost\r\nx-injected: 1" if n == ":authority" else v)
                                       for n, v in base]),
    ]
    with h2conn(gh) as c:
        for what, hdrs in malformed:
            ws = WsStream(c, headers=hdrs)
            st = ws.opened()
            eq((st.headers, st.reset), (None, PROTOCOL_ERROR), "%s: the stream's end" % what)
            eq(c.get("/here").status, 200, "%s: the connection afterwards" % what)
        refused = [
            ("another :protocol", ext_connect("/ws", protocol="connect-udp"), 501),
            ("websocket on a `websocket off` route", ext_connect("/nows/x"), 501),
            ("websocket on a `respond` route", ext_connect("/here"), 501),
            ("version 8", ext_connect("/ws", version="8"), 426),
            ("no version", ext_connect("/ws", version=None), 426),
            # RFC 9113 8.5: a plain CONNECT, answered on a site as an HTTP/1.1 CONNECT is (a reverse proxy)
            ("a plain CONNECT", [(":method", "CONNECT"), (":authority", "localhost:443")], 405),
        ]
        for what, hdrs, status in refused:
            ws = WsStream(c, headers=hdrs)
            eq(ws.status(), status, what)
            eq(ws.wait_end(), "end", "%s: the answer ends the stream" % what)
            if status == 426:
                eq(dict(ws.st.headers).get("sec-websocket-version"), "13", "%s: the 426 names version 13" % what)
    time.sleep(0.2 * T)
    eq(be.heads, [], "what reached the backend")


@test("h2_ws_backend_without_the_right_accept_is_502")
def _(ctx):
    replies = {
        "/wrong": lambda head: switch(head, accept=accept_of("dGhlIHNhbXBsZSBub25jZQ==")),
        "/none": lambda head: switch(head, accept=""),
        "/two": lambda head: switch(head, extra="Sec-WebSocket-Accept: " + accept_of(header(head, "sec-websocket-key"))
                                    + "\r\n"),
        "/ok200": lambda head: b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
        "/h2c": lambda head: switch(head).replace(b"Upgrade: websocket", b"Upgrade: h2c"),
        "/forbidden": lambda head: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\ndenied\n",
    }
    be = RawWs(ctx, reply=lambda head: replies[head.split(" ")[1]](head))
    gh = start(ctx, be)
    with h2conn(gh) as c:
        for path, want in (("/wrong", 502), ("/none", 502), ("/two", 502), ("/ok200", 502), ("/h2c", 502),
                           ("/forbidden", 403)):
            ws = WsStream(c, path)
            eq(ws.status(), want, "a WebSocket answered as %s" % path)
            eq(ws.wait_end(), "end", "%s: the answer ends the stream" % path)
            if want == 403:
                eq(bytes(ws.st.body), b"denied\n", "the backend's refusal reaches the client")
        eq(c.get("/here").status, 200, "the connection afterwards")
    # every connection whose answer was refused is closed (the 403 completed: it may be kept alive)
    check(wait_until(lambda: len(be.conns) == 6 and all(r["closed"] for r in be.conns[:5]), 5 * T),
          "backend connections left open: %r" % [(r["head"].split(" ")[1], r["closed"]) for r in be.conns])


# ---------------------------------------------------------------- interop

@test("h2_ws_haproxy_as_http2_client", timeout=60)
def _(ctx):
    # HAProxy 2.6 as an HTTP/2 client of gatehouse (`proto h2`): it turns an HTTP/1.1 WebSocket
    # handshake into an RFC 8441 extended CONNECT once our SETTINGS offered it (`ws h2` says so;
    # `ws auto`, the default, does the same for a `proto h2` server).
    from t_proxyproto import HA_GLOBAL, HAProxy, need_haproxy
    need_haproxy()
    be = WsBackend(ctx)
    gh = start(ctx, be)
    port = free_port()
    HAProxy(ctx, HA_GLOBAL + "    timeout tunnel 10s\n"
            "frontend fe\n    mode http\n    bind 127.0.0.1:%d\n    default_backend be\n"
            "backend be\n    mode http\n    server gh 127.0.0.1:%d proto h2 ws h2\n" % (port, gh.ports[1]), port)

    async def talk():
        async with connect("ws://127.0.0.1:%d/echo" % port, extra_headers=[("X-Test", "haproxy")]) as ws:
            for m in ("hello", b"\x00" * 100000, "bye"):
                await ws.send(m)
                eq(await ws.recv(), m, "echo through HAProxy and gatehouse")
    run(talk(), 30 * T)
    eq([e[1:] for e in be.events("open")], [["/echo", "haproxy"]], "the WebSocket the backend saw")
    line = wait_until(lambda: [l for l in access_lines(gh) if "/echo" in l], 5 * T)
    check(line and '"GET /echo HTTP/2.0" 101' in line[0],
          "gatehouse's access log: not a WebSocket over HTTP/2: %r" % access_lines(gh))
