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
import threading
import time

import h2raw
from h2raw import CANCEL, PROTOCOL_ERROR, H2Conn
from harness import SLOW, T, Fail, check, eq, free_port, rss_kib, test, wait_until
from t_websocket import WsBackend, access_lines, connect, frame, run, worker_pid

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_of(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


# ---------------------------------------------------------------- backends

class RawWs:
    """A WebSocket origin on a raw socket. Each connection: the head is recorded (heads), answered by
    reply(head) (default: a correct 101), then script(sock, rest, rec) runs; rec is the connection's
    record ({"data": bytes received, "eof": time of the client's FIN or None, "closed": bool})."""

    def __init__(self, ctx, script=None, reply=None):
        self.heads, self.conns = [], []
        self.script = script or echo_script
        self.reply = reply or (lambda head: switch(head))
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        ctx.cleanups = getattr(ctx, "cleanups", [])
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

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
        "    route /app/ { proxy app }" if http_port else "",
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
        eq(len(payload), n, "payload bytes of a frame on stream %d" % self.sid)
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
    # a second WebSocket gets another key
    with h2conn(gh) as c:
        eq(WsStream(c, "/x").status(), 200, "a second WebSocket")
    check(header(be.heads[1], "sec-websocket-key") != key, "the same key twice: %r" % be.heads)
