"""The forward proxy over HTTP/2 (issue 9): the same rules, credentials, DNS and SSRF checks, parents,
limits, timeouts and log lines as over HTTP/1.1 (t_forward.py), for a client that speaks HTTP/2 to the
proxy: ALPN h2 on a TLS forward listener, prior knowledge on a plain one with protocols=h2.

  - CONNECT (RFC 9113 8.5: :method CONNECT and :authority host:port, nothing else): a 200 HEADERS without
    END_STREAM, then the stream's DATA is the tunnel, both ways, with flow control; a refusal (403, 407,
    429, 504) ends that stream only.
  - Other requests name their destination with :scheme http and :authority (RFC 9113 8.3.1, the HTTP/2
    form of absolute-form): forwarded in origin-form, as absolute-form ones are.

curl 7.88 (Debian 12) cannot speak HTTP/2 to a proxy (--proxy-http2 came in curl 8.1), so the client is
h2raw's raw-frame one; TLS inside a tunnel is Python's ssl over the stream's bytes (ssl.MemoryBIO)."""
import hashlib
import os
import re
import shutil
import socket
import ssl
import time

import h2raw
from h2raw import H2Conn, data_frame, rst_stream, window_update
from harness import T, Fail, check, client_context, eq, free_port, rss_kib, test, wait_until
from cfgutil import FakeHosts, log_lines, wait_log, write
import pattern
from t_forward import LOCAL, blackhole_listener, crypt_hash, parent_pool, start_squid, tls_origin


def h2fwd_conf(ctx, forward_lines, extra=(), env=None, dns=None, site=(), plain_protocols="h2,http/1.1"):
    """A forward proxy with two listeners: ports[0] TLS (protocols by default: h2,http/1.1), ports[1] plain
    with protocols=PLAIN_PROTOCOLS (prior knowledge)."""
    c = ctx.session.certs()

    def conf(p):
        lines = ["workers 1", "log_level debug"]
        if dns is not None:
            lines.append("resolver 127.0.0.1:%d" % dns.port)
        lines += list(extra)
        lines.append("listen 127.0.0.1:%d tls" % p[0])
        lines.append("listen 127.0.0.1:%d%s" % (p[1], " protocols=" + plain_protocols if plain_protocols else ""))
        lines += ["site proxy {", "    listen 127.0.0.1:%d" % p[0], "    listen 127.0.0.1:%d" % p[1],
                  "    cert %s %s" % (c["ec_cert"], c["ec_key"])]
        lines += ["    " + ln for ln in site]
        lines.append("    forward {")
        lines += ["        " + ln for ln in forward_lines]
        lines += ["    }", "}", ""]
        return "\n".join(lines)
    return ctx.gatehouse_config(conf, nports=2, env=env)


def h2(gh, plain=False, **kw):
    """An HTTP/2 connection to the proxy: TLS with ALPN h2, or prior knowledge on the plain listener."""
    c = H2Conn(gh.ports[1] if plain else gh.ports[0], plain=plain, **kw)
    if not plain and c.alpn != "h2":
        c.close()
        raise Fail("ALPN chose %r on the forward proxy's TLS listener, not h2" % c.alpn)
    return c


def req_headers(authority, path="/id", method="GET", scheme="http", extra=()):
    return [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)] + list(extra)


def fwd_get(c, authority, path="/id", extra=(), scheme="http"):
    return c.response(c.request(req_headers(authority, path, scheme=scheme, extra=extra)))


def basic(user, password):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def status(o):
    return o.status if o.kind == "response" else o


def both(fn):
    """Runs fn(plain) over the TLS listener (ALPN h2) and the plain one (prior knowledge)."""
    for plain in (False, True):
        fn(plain)


# ---------------------------------------------------------------- tunnels on a stream

class Tunnel:
    """A CONNECT stream as a byte pipe: send() writes DATA within the windows, recv_*() read its DATA."""

    def __init__(self, c, sid):
        self.c, self.sid, self.st, self.taken = c, sid, c.streams[sid], 0

    def send(self, data, end=False):
        self.c.send_body(self.sid, data, end=end)

    def pending(self):
        return bytes(self.st.body[self.taken:])

    def take(self):
        d = self.pending()
        self.taken = len(self.st.body)
        return d

    def read_some(self, timeout=None):
        """What came since the last take(), waiting for at least one byte; b"" at END_STREAM or reset."""
        deadline = time.monotonic() + (timeout or self.c.timeout)
        while len(self.st.body) == self.taken:
            if self.st.ended or self.st.reset is not None or self.c.eof:
                return b""
            try:
                if self.c.read_frame(max(0.0, deadline - time.monotonic())) is None:
                    return b""
            except TimeoutError:
                raise Fail("tunnel stream %d: no DATA within %.1fs (frames: %s)"
                           % (self.sid, timeout or self.c.timeout, self.c.describe_frames()))
        return self.take()

    def read_until(self, pred, timeout=None, what="the expected bytes"):
        deadline = time.monotonic() + (timeout or self.c.timeout)
        got = b""
        while not pred(got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("tunnel stream %d: %s did not come (got %d bytes: %r)" % (self.sid, what, len(got), got[-120:]))
            d = self.read_some(left)
            if not d:
                raise Fail("tunnel stream %d ended before %s (got %r; ended=%s reset=%s)"
                           % (self.sid, what, got[-120:], self.st.ended, self.st.reset))
            got += d
        return got

    def wait_end(self, timeout=None):
        """Reads until END_STREAM or RST_STREAM on the stream: "end", or the RST code."""
        deadline = time.monotonic() + (timeout or self.c.timeout)
        while not self.st.ended and self.st.reset is None:
            try:
                if self.c.read_frame(max(0.0, deadline - time.monotonic())) is None:
                    return "closed"
            except TimeoutError:
                raise Fail("tunnel stream %d: no END_STREAM within %.1fs (frames: %s)"
                           % (self.sid, timeout or self.c.timeout, self.c.describe_frames()))
        return "end" if self.st.ended else self.st.reset


def connect(c, dest, extra=()):
    """CONNECT dest on a new stream: (Outcome of the head, Tunnel). A 2xx head without END_STREAM is the
    tunnel; anything else is an Outcome as h2raw gives it."""
    sid = c.request([(":method", "CONNECT"), (":authority", dest)] + list(extra), end_stream=False)
    st = c.streams[sid]
    deadline = time.monotonic() + c.timeout
    while st.headers is None and st.reset is None and not c.eof:
        try:
            c.read_frame(max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise Fail("CONNECT %s: no answer within %.1fs (frames: %s)" % (dest, c.timeout, c.describe_frames()))
    if st.headers is not None and dict(st.headers).get(":status", "").startswith("2"):
        return h2raw.Outcome("response", status=int(dict(st.headers)[":status"]), headers=st.headers), Tunnel(c, sid)
    return c.response(sid), None


def tunnel_ok(c, dest, extra=()):
    o, t = connect(c, dest, extra)
    if t is None:
        raise Fail("CONNECT %s: %r" % (dest, o))
    eq(o.status, 200, "CONNECT %s status" % dest)
    check(not t.st.ended, "the 200 to CONNECT %s came with END_STREAM" % dest)
    names = [n for n, v in o.headers]
    check("content-length" not in names and "transfer-encoding" not in names,
          "framing fields in a CONNECT's 200 (RFC 9110 9.3.6): %r" % o.headers)
    return t


def http_over(t, path="/id", host="x", close=False):
    """An HTTP/1.1 GET through the tunnel; the whole response (Content-Length framed, or to the end)."""
    t.send(b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path.encode(), host.encode(),
                                                   b"Connection: close\r\n" if close else b""))
    got = t.read_until(lambda g: b"\r\n\r\n" in g, what="a response head")
    head, body = got.split(b"\r\n\r\n", 1)
    m = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
    if m:
        n = int(m.group(1))
        if len(body) < n:
            body += t.read_until(lambda g: len(body) + len(g) >= n, what="the body")
    return head, body


class TlsOver:
    """TLS (Python's ssl, MemoryBIO) over a tunnel's bytes: TLS inside HTTP/2 inside TLS."""

    def __init__(self, t):
        self.t = t
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = client_context().wrap_bio(self.inc, self.out, server_hostname="localhost")
        self._io(self.obj.do_handshake)

    def _io(self, op, *a):
        while True:
            try:
                r = op(*a)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                d = self.t.read_some()
                if not d:
                    self.inc.write_eof()
                else:
                    self.inc.write(d)

    def _flush(self):
        d = self.out.read()
        if d:
            self.t.send(d)

    def request(self, path="/id"):
        self._io(self.obj.write, b"GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % path.encode())
        got = b""
        while True:
            try:
                d = self._io(self.obj.read, 65536)
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not d:
                break
            got += d
        return got


# ---------------------------------------------------------------- the listeners

@test("forward_h2_listener_protocols")
def _(ctx):
    # A TLS forward listener offers h2 as any TLS listener does (protocols= default: h2,http/1.1), and
    # HTTP/1.1 to a client that asks for it (curl -x https://); protocols=http/1.1 keeps it HTTP/1.1 only; a
    # plain one takes prior knowledge with protocols=h2 and is HTTP/1.1 only without.
    b = ctx.backend("b")
    gh = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL)])
    with socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=5 * T) as raw:
        with client_context(("h2", "http/1.1")).wrap_socket(raw, server_hostname="localhost") as s:
            eq(s.selected_alpn_protocol(), "h2", "ALPN with a client that offers h2,http/1.1")
    with socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=5 * T) as raw:
        with client_context(("http/1.1",)).wrap_socket(raw, server_hostname="localhost") as s:
            eq(s.selected_alpn_protocol(), "http/1.1", "ALPN with a client that offers http/1.1")
            s.sendall(b"GET http://127.0.0.1:%d/id HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n"
                      % (b.port, b.port))
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            check(got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\nb"), "HTTP/1.1 over TLS: %r" % got[:80])
    for plain in (False, True):
        with h2(gh, plain=plain) as c:
            eq(status(fwd_get(c, "127.0.0.1:%d" % b.port)), 200, "HTTP/2 (%s)" % ("prior knowledge" if plain else "TLS"))
    # the plain listener with protocols=h2,http/1.1 still serves HTTP/1.1 absolute-form
    with socket.create_connection(("127.0.0.1", gh.ports[1]), timeout=5 * T) as s:
        s.sendall(b"GET http://127.0.0.1:%d/id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % b.port)
        check(s.recv(65536).startswith(b"HTTP/1.1 200"), "HTTP/1.1 on the prior-knowledge listener")
    gh1 = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL)], plain_protocols="")
    with socket.create_connection(("127.0.0.1", gh1.ports[1]), timeout=5 * T) as s:
        s.sendall(h2raw.PREFACE + h2raw.settings_frame())
        first = s.recv(65536)
        check(first.startswith(b"HTTP/1.1 505"), "the HTTP/2 preface on a plain http/1.1 forward listener: %r" % first[:40])
    c = ctx.session.certs()
    gh2 = ctx.gatehouse_config(lambda p: "\n".join([
        "workers 1", "listen 127.0.0.1:%d tls protocols=http/1.1" % p[0], "site proxy {",
        "    listen 127.0.0.1:%d" % p[0], "    cert %s %s" % (c["ec_cert"], c["ec_key"]),
        "    forward {", "        rule allow port=%d %s" % (b.port, LOCAL), "    }", "}", ""]), nports=1)
    with socket.create_connection(("127.0.0.1", gh2.ports[0]), timeout=5 * T) as raw:
        with client_context(("h2", "http/1.1")).wrap_socket(raw, server_hostname="localhost") as s:
            eq(s.selected_alpn_protocol(), "http/1.1", "ALPN on a listener with protocols=http/1.1")


# ---------------------------------------------------------------- requests (absolute-form's HTTP/2 form)

@test("forward_h2_request_to_origin")
def _(ctx):
    b = ctx.backend("b")
    gh = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL)])
    auth = "127.0.0.1:%d" % b.port

    def run(plain):
        with h2(gh, plain=plain) as c:
            # several streams at once on the one connection
            sids = [c.request(req_headers(auth, "/id", extra=[("x-forwarded-for", "6.6.6.6"), ("x-n", str(i))]))
                    for i in range(5)]
            for sid in sids:
                o = c.response(sid)
                eq((status(o), o.body), (200, b"b"), "stream %d" % sid)
            body = pattern.data(300000)
            sid = c.request(req_headers(auth, "/upload", method="POST",
                                        extra=[("content-length", str(len(body)))]), end_stream=False)
            c.send_body(sid, body)
            o = c.response(sid)
            eq(status(o), 200, "POST through the proxy")
            eq(o.body.decode().split(), [hashlib.sha256(body).hexdigest(), str(len(body))], "the body the origin read")
            o = fwd_get(c, auth, "/download?size=1000000")
            eq((status(o), len(o.body)), (200, 1000000), "a 1 MB download")
    both(run)
    raw = b.raw().decode(errors="replace")
    check("GET /id HTTP/1.1" in raw, "origin-form upstream: %r" % raw[:200])
    check(re.search(r"(?m)^GET http", raw) is None, "absolute-form went upstream: %r" % raw[:200])
    check(re.search(r"(?im)^host: 127\.0\.0\.1:%d\r$" % b.port, raw) is not None, "Host from :authority")
    check(re.search(r"(?im)^(x-forwarded-for|forwarded|proxy-connection|proxy-authorization):", raw) is None,
          "client-address or proxy fields went upstream: %r" % raw[:600])
    check(b.accepts() <= 6, "upstream connections for 14 requests on 2 connections: %d (keep-alive)" % b.accepts())


@test("forward_h2_request_refusals_stream_only")
def _(ctx):
    # Each refusal ends its stream only: the next stream of the same connection is served. The statuses
    # are HTTP/1.1's for the same request (t_forward.py): 403 by a rule, by default and for an internal
    # address (SSRF) without naming it, 501 for https:// without CONNECT, 400 without a target authority.
    b = ctx.backend("b")
    hosts = FakeHosts(ctx, ["127.0.0.1 ok.test", "10.1.2.3 ten.test", "169.254.169.254 meta.test",
                            "127.0.0.1 lo.test", "127.0.0.1 no.test"])
    gh = h2fwd_conf(ctx, ["rule deny host=no.test", "rule allow host=ok.test port=%d %s" % (b.port, LOCAL),
                          "rule allow host=*.test port=1-65535"], env=hosts.env())
    cases = [("no.test:%d" % b.port, "http", 403, "a deny rule"),
             ("elsewhere.example:%d" % b.port, "http", 403, "no rule (the default)"),
             ("ten.test:%d" % b.port, "http", 403, "a private address"),
             ("meta.test:%d" % b.port, "http", 403, "the metadata address"),
             ("lo.test:%d" % b.port, "http", 403, "loopback without to="),
             ("ok.test:%d" % b.port, "https", 501, "https:// without CONNECT")]

    def run(plain):
        with h2(gh, plain=plain) as c:
            for auth, scheme, want, what in cases:
                o = fwd_get(c, auth, scheme=scheme)
                eq(status(o), want, what)
                text = o.body.decode(errors="replace")
                check("10.1.2.3" not in text and "169.254" not in text and "internal" not in text,
                      "the page hints at the address: %r" % text)
            sid = c.request([(":method", "GET"), (":scheme", "http"), (":path", "/id"),
                             ("host", "ok.test:%d" % b.port)])
            eq(status(c.response(sid)), 400, "no :authority (origin-form to a proxy)")
            o = fwd_get(c, "ok.test:%d" % b.port)
            eq((status(o), o.body), (200, b"b"), "then an allowed request on the same connection")
            check(c.goaway is None, "GOAWAY after refusals: %r" % (c.goaway,))
    both(run)
    eq(len(b.requests()), 2, "requests that reached the backend (the two allowed ones)")
    check(log_lines(gh, r"address 169\.254\.169\.254:\d+ is internal \(metadata\)") != [], "the metadata denial logged")
    # what HTTP/1.1 answers for the same two requests
    for line, want in [(b"GET https://ok.test:%d/id HTTP/1.1" % b.port, b"HTTP/1.1 501"),
                       (b"GET /id HTTP/1.1", b"HTTP/1.1 400")]:
        with socket.create_connection(("127.0.0.1", gh.ports[1]), timeout=5 * T) as s:
            s.sendall(line + b"\r\nHost: ok.test:%d\r\n\r\n" % b.port)
            check(s.recv(4096).startswith(want), "HTTP/1.1 %r" % line)


@test("forward_h2_request_proxy_auth")
def _(ctx):
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    gh = h2fwd_conf(ctx, ["auth %s realm=corp" % users, "rule allow user=alice port=%d %s" % (b.port, LOCAL)])
    auth = "127.0.0.1:%d" % b.port

    def run(plain):
        with h2(gh, plain=plain) as c:
            o = fwd_get(c, auth)
            eq(status(o), 407, "without credentials")
            check(re.match(r'(?i)basic realm="corp"', o.get("proxy-authenticate") or "") is not None,
                  "proxy-authenticate: %r" % o.headers)
            eq(status(fwd_get(c, auth, extra=[("proxy-authorization", basic("alice", "wrong"))])), 407, "wrong password")
            # a body still coming: the 407 is the same (the rest of the stream is reset after it, RFC 9113 8.1)
            sid = c.request(req_headers(auth, "/upload", method="POST", extra=[("content-length", "100000")]),
                            body=b"x" * 1000, end_stream=False)
            o = c.response(sid)
            eq(status(o), 407, "a POST without credentials, its body unsent")
            check(re.match(r'(?i)basic realm="corp"', o.get("proxy-authenticate") or "") is not None,
                  "proxy-authenticate to a POST: %r" % o.headers)
            o = fwd_get(c, auth, extra=[("proxy-authorization", basic("alice", "wonder"))])
            eq((status(o), o.body), (200, b"b"), "alice")
    both(run)
    check("proxy-authorization" not in b.raw().decode(errors="replace").lower(), "credentials forwarded to the origin")


@test("forward_h2_request_access_log")
def _(ctx):
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    log = os.path.join(ctx.dir, "access.log")
    gh = h2fwd_conf(ctx, ["auth %s" % users, "rule allow user=alice port=%d %s" % (b.port, LOCAL)],
                    extra=['log_format fwd "$remote_user $forward_rule $request $status"'],
                    site=["access_log %s format=fwd" % log])
    with h2(gh, plain=True) as c:
        o = fwd_get(c, "127.0.0.1:%d" % b.port, extra=[("proxy-authorization", basic("alice", "wonder"))])
        eq(status(o), 200, "status")
    want = r"alice \S+gatehouse\d\.conf:\d+ GET http://127\.0\.0\.1:%d/id HTTP/2\.0 200" % b.port

    def line():
        try:
            return re.search(want, open(log).read())
        except OSError:
            return None
    check(wait_until(line, 5 * T), "access log: %r" % (open(log).read()[-300:] if os.path.exists(log) else ""))


@test("forward_h2_request_via_parent")
def _(ctx):
    # an HTTP/2 client -> gatehouse (via=parents) -> gatehouse (the parent, with auth) -> origin
    b = ctx.backend("b")
    from t_forward import fwd_conf
    users = write(ctx, "users", "child:%s\n" % crypt_hash("s3cret", b"$2b$", 5))
    parent = fwd_conf(ctx, ["auth %s" % users, "rule allow user=child port=%d %s" % (b.port, LOCAL)])
    child = h2fwd_conf(ctx, ["parent_auth parents child:s3cret", "rule allow host=127.0.0.1 port=1-65535 via=parents"],
                       extra=parent_pool("parents", [parent.ports[0]], health=False))
    with h2(child) as c:
        o = fwd_get(c, "127.0.0.1:%d" % b.port)
        eq((status(o), o.body), (200, b"b"), "absolute-form chained")
    check("proxy-authorization" not in b.raw().decode(errors="replace").lower(), "credentials reached the origin")


# ---------------------------------------------------------------- CONNECT refusals (no tunnel)

@test("forward_h2_connect_refusals_stream_only")
def _(ctx):
    # CONNECT refused by a deny rule, by default, for an internal address (SSRF), for a port other than 443
    # under a rule without port=, for want of credentials (407 with proxy-authenticate), a connect that
    # never completes (504 after connect_timeout), a malformed one (a :path: RFC 9113 8.5): each on its
    # stream, and the connection goes on serving an ordinary request.
    b = ctx.backend("b")
    s, fill = blackhole_listener()
    hole = s.getsockname()[1]
    hosts = FakeHosts(ctx, ["127.0.0.1 ok.test lo.test no.test", "10.1.2.3 ten.test"])
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    gh = h2fwd_conf(ctx, ["auth %s realm=corp" % users, "connect_timeout 1s", "rule deny host=no.test",
                          "rule allow host=ok.test user=alice port=%d,%d %s" % (b.port, hole, LOCAL),
                          "rule allow host=127.0.0.1 user=alice " + LOCAL,
                          "rule allow host=*.test user=alice port=1-65535"], env=hosts.env())
    cred = [("proxy-authorization", basic("alice", "wonder"))]
    cases = [("no.test:%d" % b.port, cred, 403, "a deny rule"),
             ("elsewhere.example:443", cred, 403, "no rule (the default)"),
             ("ten.test:%d" % b.port, cred, 403, "a private address"),
             ("lo.test:%d" % b.port, cred, 403, "loopback without to="),
             ("127.0.0.1:%d" % b.port, cred, 403, "port %d under a rule without port= (443 only)" % b.port),
             ("ok.test:%d" % b.port, [], 407, "no credentials"),
             ("ok.test:%d" % hole, cred, 504, "a connect that never completes")]
    try:
        def run(plain):
            with h2(gh, plain=plain) as c:
                for dest, extra, want, what in cases:
                    t0 = time.monotonic()
                    o, t = connect(c, dest, extra)
                    check(t is None, "CONNECT %s (%s) made a tunnel" % (dest, what))
                    eq(status(o), want, what)
                    if want == 407:
                        check(re.match(r'(?i)basic realm="corp"', o.get("proxy-authenticate") or "") is not None,
                              "proxy-authenticate: %r" % o.headers)
                    if want == 504:
                        check(time.monotonic() - t0 < 4 * T, "504 after %.1fs (connect_timeout 1s)"
                              % (time.monotonic() - t0))
                sid = c.request([(":method", "CONNECT"), (":authority", "ok.test:%d" % b.port), (":path", "/")] + cred,
                                end_stream=False)
                o = c.response(sid)
                check(o.kind == "rst", "CONNECT with a :path (malformed, RFC 9113 8.5): %r" % o)
                # an extended CONNECT (RFC 8441: a WebSocket) names no destination a forward proxy can take
                sid = c.request([(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                                 (":authority", "ok.test:%d" % b.port), (":path", "/")] + cred, end_stream=False)
                o = c.response(sid)
                eq(status(o), 400, "an extended CONNECT to the forward proxy")
                o = fwd_get(c, "ok.test:%d" % b.port, extra=cred)
                eq((status(o), o.body), (200, b"b"), "an ordinary request on the same connection")
                check(c.goaway is None, "GOAWAY after refusals: %r" % (c.goaway,))
        both(run)
    finally:
        for x in fill:
            x.close()
        s.close()
    eq(len(b.requests()), 2, "requests that reached the backend (the two ordinary ones)")
    check(log_lines(gh, r"CONNECT ten\.test:%d denied by the default" % b.port) != [] or
          log_lines(gh, r"ten\.test:%d denied" % b.port) != [], "the SSRF denial logged")


# ---------------------------------------------------------------- CONNECT tunnels (the stream as a tunnel)

@test("forward_h2_connect_plain_and_tls_origin")
def _(ctx):
    # CONNECT to a plain origin (HTTP/1.1 bytes in the stream's DATA) and to a TLS one (TLS in the stream,
    # inside TLS to the proxy); the tunnel's error-log line names client, destination, rule, bytes, time.
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    gh = h2fwd_conf(ctx, ["rule allow port=%d,%d %s" % (b.port, origin.port, LOCAL)])

    def run(plain):
        with h2(gh, plain=plain) as c:
            t = tunnel_ok(c, "127.0.0.1:%d" % b.port)
            head, body = http_over(t, "/id")
            check(head.startswith(b"HTTP/1.1 200"), "through the tunnel: %r" % head[:60])
            eq(body, b"b", "body through the tunnel")
            head, body = http_over(t, "/small")
            eq(len(body), 1024, "a second request on the tunnel's connection")
            t2 = tunnel_ok(c, "127.0.0.1:%d" % origin.port)
            got = TlsOver(t2).request("/id")
            check(got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\nb"), "TLS through the tunnel: %r" % got[-80:])
            t2.send(b"", end=True)  # the origin closed (Connection: close): the tunnel ends both ways
            eq(t2.wait_end(), "end", "the TLS tunnel's stream")
            o = fwd_get(c, "127.0.0.1:%d" % b.port)
            eq((status(o), o.body), (200, b"b"), "an ordinary request beside the tunnels")
    both(run)
    check(wait_log(gh, r"tunnel from 127\.0\.0\.1 to 127\.0\.0\.1:%d by rule 1 ended \(closed\) after \d+ ms: "
                   r"[1-9]\d* bytes up, [1-9]\d* down" % origin.port, 5 * T) is not None, "the tunnel's log line")


@test("forward_h2_connect_access_log")
def _(ctx):
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    combined = os.path.join(ctx.dir, "combined.log")
    gh = h2fwd_conf(ctx, ["auth %s" % users, "rule allow user=alice port=%d %s" % (b.port, LOCAL)],
                    site=["access_log %s" % combined])
    with h2(gh) as c:
        t = tunnel_ok(c, "127.0.0.1:%d" % b.port, [("proxy-authorization", basic("alice", "wonder"))])
        head, body = http_over(t, "/id", close=True)
        eq(body, b"b", "through the tunnel")
        eq(t.wait_end(), "end", "the origin's close ends the stream")
    want = (r'127\.0\.0\.1 - alice \[[^]]+\] "CONNECT 127\.0\.0\.1:%d HTTP/2\.0" 200 \d+ .* tunnel=\d+\.\d+s '
            r'in=[1-9]\d* out=[1-9]\d* to=127\.0\.0\.1:%d' % (b.port, b.port))

    def line():
        try:
            return re.search(want, open(combined).read())
        except OSError:
            return None
    check(wait_until(line, 5 * T), "tunnel line: %r" % (open(combined).read()[-300:] if os.path.exists(combined) else ""))


class SinkOrigin:
    """A raw TCP origin on 127.0.0.1: accepts, reads, and records when each connection saw EOF or a reset."""

    def __init__(self):
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted, self.ended, self.got = 0, 0, b""
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        import threading
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(30 * T)
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                self.got += d
        except OSError:
            pass
        self.ended += 1
        c.close()

    def close(self):
        self.stop = True
        self.sock.close()


@test("forward_h2_connect_origin_close_and_client_reset")
def _(ctx):
    # The origin closes: the stream ends (END_STREAM after the last byte). The client resets its stream: the
    # tunnel ends and the origin's connection is closed, while the HTTP/2 connection goes on. The client ends
    # its side first (END_STREAM): the origin reads EOF after the bytes before it, and its answer still comes.
    b = ctx.backend("b")
    sink = SinkOrigin()
    try:
        gh = h2fwd_conf(ctx, ["rule allow port=%d,%d %s" % (b.port, sink.port, LOCAL)])
        with h2(gh) as c:
            t = tunnel_ok(c, "127.0.0.1:%d" % b.port)
            t.send(b"GET /close?size=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
            eq(t.wait_end(), "end", "the origin's close: END_STREAM")
            got = t.take()
            check(got.startswith(b"HTTP/1.1 200"), "the answer: %r" % got[:60])
            eq(len(got) - got.index(b"\r\n\r\n") - 4, 5000, "the bytes before the origin's FIN")
            t = tunnel_ok(c, "127.0.0.1:%d" % sink.port)
            t.send(b"hello")
            check(wait_until(lambda: sink.got == b"hello", 5 * T), "the bytes reached the origin: %r" % sink.got)
            c.send(rst_stream(t.sid))
            check(wait_until(lambda: sink.ended == 1, 3 * T),
                  "the origin's connection still open after the client reset the CONNECT stream")
            o = fwd_get(c, "127.0.0.1:%d" % b.port)
            eq((status(o), o.body), (200, b"b"), "the connection after the reset")
            t = tunnel_ok(c, "127.0.0.1:%d" % b.port)
            t.send(b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n", end=True)
            t.read_until(lambda g: g.endswith(b"\r\n\r\nb"), what="the answer after our END_STREAM")
            eq(t.wait_end(), "end", "the stream after both ends closed")
            check(c.goaway is None, "GOAWAY: %r" % (c.goaway,))
        check(wait_log(gh, r"ended \(closed\) after \d+ ms: 29 bytes up", 5 * T) is not None,
              "the half-closed tunnel's log line (closed)")
    finally:
        sink.close()


@test("forward_h2_connect_bulk_flow_control", heavy=True, timeout=180)
def _(ctx):
    # A few MiB each way through one CONNECT stream: an upload that the proxy takes only as the origin does
    # (the client sends within the windows it is given), and a download to a reader that opens its window
    # slowly: the proxy holds a bounded amount meanwhile (worker RSS), and every byte arrives intact.
    b = ctx.backend("b")
    gh = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL)])
    size, down = 4 << 20, 16 << 20
    import t_reload
    ws = t_reload.serving_workers(gh)
    check(len(ws) == 1, "expected one worker, found %r" % ws)
    worker = ws[0]
    before = rss_kib(worker)
    with h2(gh, plain=True, auto_window=False) as c:
        c.send(window_update(0, 64 << 20))  # the connection window wide open: the stream's decides
        t = tunnel_ok(c, "127.0.0.1:%d" % b.port)
        body = pattern.data(size)
        t.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        t.send(body)
        c.send(window_update(t.sid, 1 << 20))
        got = t.read_until(lambda g: b"\r\n\r\n" in g and g.rstrip().endswith(b"%d" % size), what="the upload's answer")
        check(hashlib.sha256(body).hexdigest().encode() in got, "the origin read every byte: %r" % got[-120:])
        # slow reader: 64 KiB of window at a time, a pause in between
        t.send(b"GET /download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % down)
        got = bytearray()
        peak = 0
        deadline = time.monotonic() + 60 * T
        while True:
            d = t.read_some(10 * T)
            if not d:
                break
            got += d
            c.send(window_update(t.sid, len(d)) + window_update(0, len(d)))
            if len(got) % (2 << 20) < len(d):
                time.sleep(0.3)  # the origin keeps sending meanwhile: the proxy must stop reading it
                peak = max(peak, rss_kib(worker))
            if b"\r\n\r\n" in got and len(got) - got.index(b"\r\n\r\n") - 4 >= down:
                break
            check(time.monotonic() < deadline, "the download took over %.0fs" % (60 * T))
        payload = bytes(got[got.index(b"\r\n\r\n") + 4:])
        eq(len(payload), down, "bytes downloaded through the tunnel")
        check(hashlib.sha256(payload).hexdigest() == pattern.sha256(down), "the download's bytes differ")
    grown = peak - before
    ctx.info = "worker RSS grew %d KiB during a %d MiB slow download" % (grown, down >> 20)
    check(grown < 4 * 1024, "worker RSS grew %d KiB while a slow reader took %d MiB" % (grown, down >> 20))


@test("forward_h2_connect_many_streams_one_connection")
def _(ctx):
    # 20 CONNECT streams open at once on one connection, interleaved with ordinary requests, each tunnel
    # used twice; then max_tunnels_per_ip counts HTTP/2 tunnels as it does HTTP/1.1 ones (429 on that
    # stream only).
    b = ctx.backend("b")
    gh = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL), "max_tunnels_per_ip 0"])
    auth = "127.0.0.1:%d" % b.port
    with h2(gh) as c:
        tunnels = []
        for i in range(20):
            tunnels.append(tunnel_ok(c, auth))
            if i % 4 == 0:
                o = fwd_get(c, auth, "/small")
                eq((status(o), len(o.body)), (200, 1024), "a request between CONNECTs")
        for t in tunnels:
            t.send(b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
        for t in tunnels:
            eq(t.read_until(lambda g: g.endswith(b"\r\n\r\nb"), what="/id")[-1:], b"b", "tunnel %d" % t.sid)
        for t in tunnels:
            eq(http_over(t, "/small")[1], pattern.data(1024), "tunnel %d again" % t.sid)
        for t in tunnels:
            c.send(data_frame(t.sid, b"", end=True))
    gh2 = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL), "max_tunnels_per_ip 2"])
    with h2(gh2) as c:
        tunnel_ok(c, auth)
        tunnel_ok(c, auth)
        o, t = connect(c, auth)
        eq(status(o), 429, "a third tunnel with a limit of two")
        o = fwd_get(c, auth)
        eq((status(o), o.body), (200, b"b"), "an ordinary request at the tunnel limit")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    gh3 = h2fwd_conf(ctx, ["auth %s" % users, "rule allow port=%d %s" % (b.port, LOCAL), "max_tunnels_per_ip 0",
                           "max_tunnels_per_user 1"])
    cred = [("proxy-authorization", basic("alice", "wonder"))]
    with h2(gh3) as c, h2(gh3, plain=True) as c2:
        tunnel_ok(c, auth, cred)
        o, t = connect(c2, auth, cred)
        eq(status(o), 429, "a second tunnel of the user (another connection) with max_tunnels_per_user 1")


@test("forward_h2_chain_via_squid")
def _(ctx):
    # an HTTP/2 client -> gatehouse (via=squid) -> squid -> origin: CONNECT chained and a plain request
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    sport = free_port()
    p, d = start_squid(ctx, sport)
    try:
        child = h2fwd_conf(ctx, ["rule allow host=127.0.0.1 port=1-65535 via=squid"],
                           extra=parent_pool("squid", [sport], health=False))
        with h2(child) as c:
            t = tunnel_ok(c, "127.0.0.1:%d" % origin.port)
            got = TlsOver(t).request("/id")
            check(got.endswith(b"\r\n\r\nb"), "TLS through the chained tunnel: %r" % got[-80:])
            o = fwd_get(c, "127.0.0.1:%d" % b.port)
            eq((status(o), o.body), (200, b"b"), "a request via squid")
        want = ["CONNECT 127.0.0.1:%d" % origin.port, "GET http://127.0.0.1:%d/id" % b.port]

        def logged():
            log = open(os.path.join(d, "access.log")).read()
            return all(w in log for w in want)
        check(wait_until(logged, 10 * T), "squid's log: %r" % open(os.path.join(d, "access.log")).read()[-400:])
    finally:
        shutil.rmtree(d, ignore_errors=True)


@test("forward_h2_connect_idle_timeout_and_reload")
def _(ctx):
    # A tunnel on a stream outlives a reload (it holds its generation), and tunnel_idle ends an idle one
    # (the stream is reset or ended, the connection and its other streams go on).
    import signal
    b = ctx.backend("b")
    gh = h2fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL), "tunnel_idle 1500ms"])
    gh.allow_worker_change = True  # the prober restarts with a reload
    with h2(gh) as c:
        t = tunnel_ok(c, "127.0.0.1:%d" % b.port)
        eq(http_over(t, "/id")[1], b"b", "before the reload")
        before = gh.stderr()
        gh.signal(signal.SIGHUP)
        check(wait_until(lambda: re.search(r"\[info\] \d+ reloaded ", gh.stderr()[len(before):]), 10 * T),
              "the reload")
        eq(http_over(t, "/id")[1], b"b", "the tunnel after the reload")
        o = fwd_get(c, "127.0.0.1:%d" % b.port)
        eq((status(o), o.body), (200, b"b"), "a new stream after the reload")
        t0 = time.monotonic()
        end = t.wait_end(8 * T)
        took = time.monotonic() - t0
        check(end != "closed", "the connection closed with its idle tunnel")
        check(1.0 < took < 5 * T, "the idle tunnel ended after %.1fs (tunnel_idle 1500ms)" % took)
        o = fwd_get(c, "127.0.0.1:%d" % b.port)
        eq((status(o), o.body), (200, b"b"), "the connection after the idle tunnel ended")
    check(wait_log(gh, r"tunnel from 127\.0\.0\.1 to 127\.0\.0\.1:%d by rule 1 ended \(idle timeout\)" % b.port,
                   5 * T) is not None, "the idle tunnel's log line")


@test("forward_h2_dns_timeouts_and_client_gone")
def _(ctx):
    # dns_timeout (504) and a name that does not exist (502) on their streams; then streams the client
    # resets while their name is being resolved or their connect waits, and a connection closed with such
    # streams: the query and the connect go with the exchange, a late DNS answer finds nobody waiting (no
    # crash: the harness checks the worker), and the proxy serves on.
    from t_resolver import DnsServer
    s, fill = blackhole_listener()
    hole = s.getsockname()[1]
    b = ctx.backend("b")
    dns = DnsServer(ctx, {"slow.test": (["127.0.0.1"], 60, 1.5), "never.test": (["127.0.0.1"], 60, 30)})
    gh = h2fwd_conf(ctx, ["rule allow port=%d,%d %s" % (hole, b.port, LOCAL), "rule allow host=*.test port=80",
                          "connect_timeout 3s", "dns_timeout 1s"], dns=dns)
    try:
        with h2(gh, plain=True) as c:
            t0 = time.monotonic()
            eq(status(fwd_get(c, "never.test")), 504, "a name that never resolves")
            check(time.monotonic() - t0 < 4 * T, "504 after %.1fs (dns_timeout 1s)" % (time.monotonic() - t0))
            eq(status(fwd_get(c, "nxdomain.test")), 502, "a name that does not exist")
            o, t = connect(c, "never.test:80")
            eq(status(o), 504, "CONNECT to a name that never resolves")
        gh2 = h2fwd_conf(ctx, ["rule allow port=%d,%d %s" % (hole, b.port, LOCAL), "connect_timeout 3s",
                               "dns_timeout 5s", "rule allow host=*.test port=%d,%d %s" % (hole, b.port, LOCAL)],
                         dns=dns)
        for close_conn in (False, True):
            c = h2(gh2)
            sids = [c.request([(":method", "CONNECT"), (":authority", dest)], end_stream=False)
                    for dest in ["slow.test:%d" % hole, "127.0.0.1:%d" % hole, "slow.test:%d" % b.port]]
            sids.append(c.request(req_headers("slow.test:%d" % b.port)))
            time.sleep(0.2)
            if close_conn:
                c.close()
                continue
            c.send(b"".join(rst_stream(sid) for sid in sids))
            o = fwd_get(c, "127.0.0.1:%d" % b.port)
            eq((status(o), o.body), (200, b"b"), "a request after the resets")
            c.close()
        time.sleep(2.0)  # the DNS answers (1.5 s) come for nobody
        with h2(gh2) as c:
            o = fwd_get(c, "slow.test:%d" % b.port)
            eq((status(o), o.body), (200, b"b"), "a request after the late answers")
    finally:
        for x in fill:
            x.close()
        s.close()
