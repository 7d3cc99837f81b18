"""Data path: what a slow client and a misbehaving backend must never do to the bytes of a response."""
import socket
import time

from harness import T, Closed, Conn, Fail, build_request, check, client_context, eq, test
import pattern


class SlowConn(Conn):
    """A client with a small receive buffer that pauses first, then reads 2 KiB at a time."""

    def __init__(self, port, tls=True, rcvbuf=4096, pause=0.8, step=2048):
        self.timeout = 10 * T
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect, so that the window the proxy sees is small from the first byte.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # A small MSS makes the proxy's send buffer small too (Linux sizes it from the MSS).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        raw.settimeout(self.timeout)
        raw.connect(("127.0.0.1", port))
        self.attach(client_context().wrap_socket(raw, server_hostname="localhost") if tls else raw, port)
        self.pause = pause
        self.recv_size = step

    def _fill(self):
        if self.pause:
            time.sleep(self.pause)  # the backend sends everything and closes meanwhile
            self.pause = 0
        return super()._fill()


def tls_and_plain(ctx, b):
    """A gatehouse with a TLS listener and a plain one in front of backend b: [(port, tls)]."""
    gh = ctx.gatehouse_config(lambda p: (
        "workers 1\n"
        "listen 127.0.0.1:%d tls\n"
        "listen 127.0.0.1:%d\n"
        "pool app {\n    server 127.0.0.1:%d\n}\n"
        "site default {\n    listen 127.0.0.1:%d\n    listen 127.0.0.1:%d\n    cert %s %s\n"
        "    route / { proxy app }\n}\n"
        % (p[0], p[1], b.port, p[0], p[1], ctx.session.certs()["ec_cert"], ctx.session.certs()["ec_key"])),
        nports=2)
    return [(gh.ports[0], True), (gh.ports[1], False)]


SIZE = 300000


def slow_fetch(port, tls, path, version="HTTP/1.1"):
    c = SlowConn(port, tls)
    try:
        req = build_request("GET", path, host="localhost:%d" % port)
        if version != "HTTP/1.1":
            req = req.replace(b" HTTP/1.1\r\n", b" " + version.encode() + b"\r\n", 1)
        c.send(req)
        return c.read_response()
    finally:
        c.close()


def fin_case(ctx, path, version, what):
    b = ctx.backend()
    for port, tls in tls_and_plain(ctx, b):
        how = "%s over %s" % (what, "TLS" if tls else "plain HTTP")
        for i in range(3):
            try:
                r = slow_fetch(port, tls, path, version)
            except Closed as e:
                raise Fail("%s: the response was cut when the backend closed: %s" % (how, e))
            eq(r.status, 200, "%s: status" % how)
            if version == "HTTP/1.1" and path.startswith("/close"):
                eq(",".join(r.all("transfer-encoding")).lower(), "chunked", "%s: re-chunked for 1.1" % how)
            eq(len(r.body), SIZE, "%s: body length (try %d)" % (how, i + 1))
            check(r.body == pattern.data(SIZE), "%s: body bytes differ from what the backend sent" % how)


@test("upstream_fin_drops_bytes_buffered_for_slow_client_content_length")
def _(ctx):
    # The backend sends a Content-Length response and closes at once (Connection: close):
    # its FIN arrives while much of the body still waits in gatehouse for the slow client.
    fin_case(ctx, "/download?size=%d&close=1" % SIZE, "HTTP/1.1", "Content-Length response")


@test("upstream_fin_drops_bytes_buffered_for_slow_client_close_delimited")
def _(ctx):
    # A close-delimited body to an HTTP/1.1 client is re-chunked: the last chunk must come
    # after every byte, not when the backend's FIN is seen (a short body would look complete).
    fin_case(ctx, "/close?size=%d" % SIZE, "HTTP/1.1", "close-delimited response to 1.1")


@test("upstream_fin_drops_bytes_buffered_for_slow_client_http10")
def _(ctx):
    # To an HTTP/1.0 client the end of a close-delimited body is the close itself: an early
    # clean close looks complete.
    fin_case(ctx, "/close?size=%d" % SIZE, "HTTP/1.0", "close-delimited response to 1.0")


# ---- A pooled upstream connection must never carry what a previous response left behind ----

def clean(r, what):
    """r is the backend's own answer to GET /id (b1), not bytes a previous response left behind."""
    check(r.status == 200 and r.body == b"b1" and not r.get("x-poison"),
          "%s got %d %r %r" % (what, r.status, r.headers, r.body[:60]))


def next_requests_clean(gh, what):
    """The request after `what` on a new client connection, twice: it reuses the pooled upstream connection."""
    for i in range(2):
        with Conn(gh.port) as c:
            clean(c.request("GET", "/id?after=%d" % i), "the request after %s" % what)


def answer_then_clean(ctx, method, path, want_body, what, same_client=False):
    """Three times: method path answered 200 want_body; then GET /id clean on the same client (same_client)
    and on new ones (next_requests_clean)."""
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for i in range(3):
        with Conn(gh.port) as c:
            r = c.request(method, path)
            eq((r.status, r.body), (200, want_body), "the answer to %s %s" % (method, path))
            if same_client:
                clean(c.request("GET", "/id"), "the next request on the same client after %s" % what)
        next_requests_clean(gh, what)


@test("upstream_pooled_with_stray_response_reaches_next_client")
def _(ctx):
    # A second response nobody asked for, read by no one yet (the first one ended exactly where
    # gatehouse's read did): pooling the connection hands it to the next client as its answer.
    answer_then_clean(ctx, "GET", "/stray?kind=response", b"ok\n", "a stray response", same_client=True)


@test("upstream_pooled_with_body_after_head")
def _(ctx):
    # A broken backend sends a body in answer to HEAD: those bytes must not start the next response.
    answer_then_clean(ctx, "HEAD", "/stray?kind=headbody", b"", "a HEAD answered with a body")


@test("upstream_pooled_with_more_than_content_length")
def _(ctx):
    # More body bytes than Content-Length: the connection is not reusable.
    answer_then_clean(ctx, "GET", "/stray?kind=excess", b"ok\n", "a response with more than its Content-Length")


@test("upstream_backend_closing_after_keepalive_response_post_502")
def _(ctx):
    # A backend that closes right after each keep-alive answer: its FIN came with the answer, so
    # the connection must not be pooled; a POST (never retried) on it was a 502 every second time.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for i in range(6):
        with Conn(gh.port) as c:
            r = c.request("POST", "/upload?fin=1&n=%d" % i, body=b"abc")
            eq(r.status, 200, "POST %d to a backend that closes after each keep-alive answer" % (i + 1))
    with Conn(gh.port) as c:
        for i in range(4):
            r = c.request("POST", "/upload?fin=1&same=%d" % i, body=b"abc")
            eq(r.status, 200, "POST %d on one client connection" % (i + 1))


# ---- Small data-path defects (A11) ----

def routed(ctx, b, extra_routes=""):
    """A TLS listener for site app.test (routes /app/ to b, nothing else) and no default site."""
    c = ctx.session.certs()
    gh = ctx.gatehouse_config(lambda p: (
        "workers 1\n"
        "listen 127.0.0.1:%d tls\n"
        "pool app {\n    server 127.0.0.1:%d\n}\n"
        "site app.test {\n    listen 127.0.0.1:%d\n    cert %s %s\n"
        "    route /app/ { proxy app strip_prefix }\n%s}\n"
        % (p[0], b.port, p[0], c["ec_cert"], c["ec_key"], extra_routes)), nports=1)
    return gh


def not_closed(r, what):
    check("close" not in (r.get("connection") or "").lower(), "%s says Connection: close: %r" % (what, r.headers))


@test("local_error_answer_closes_keepalive_connection")
def _(ctx):
    # 404, 421 and 502 of gatehouse's own, for requests read to their end, keep the connection:
    # closing it cost the client a new TLS handshake per 404.
    b = ctx.backend()
    gh = routed(ctx, b)
    with Conn(gh.port) as c:
        for i in range(2):
            r = c.request("GET", "/nothing/here", host="app.test")
            eq(r.status, 404, "status for a path no route serves")
            not_closed(r, "the 404")
            r = c.request("GET", "/app/id", host="app.test")
            eq((r.status, r.body), (200, b"b1"), "the request after the 404 on the same connection")
        r = c.request("GET", "/app/id", host="unknown.test")
        eq(r.status, 421, "status for a Host this listener does not serve")
        not_closed(r, "the 421")
        r = c.request("GET", "/app/bad?kind=garbage", host="app.test")
        eq(r.status, 502, "status for a malformed upstream answer")
        not_closed(r, "the 502")
        r = c.request("POST", "/app/upload", body=b"abc", host="app.test")
        eq(r.status, 200, "a POST after the 421 and the 502 on the same connection")


@test("error_page_for_head_carries_body")
def _(ctx):
    # RFC 9110 9.3.2: no body in answer to HEAD, error pages included; on a kept connection the
    # body would be read as the start of the next response.
    b = ctx.backend()
    gh = routed(ctx, b)
    for path, status in (("/nothing", 404), ("/app/bad?kind=garbage", 502)):
        with Conn(gh.port) as c:
            r = c.request("HEAD", path, host="app.test")
            eq(r.status, status, "status of HEAD %s" % path)
            check(r.get("content-length") is not None, "the %d for HEAD has no Content-Length" % status)
            closed, extra = c.wait_closed(0.5 * T)
            eq(extra, b"", "bytes after the head of the %d answering HEAD %s" % (status, path))


@test("pipelined_partial_head_gets_keepalive_deadline")
def _(ctx):
    # The start of a pipelined head, behind a complete request: once that one is answered, the
    # rest of the head is due within header_timeout (slowloris), not the keep-alive timeout.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, args=["--header-timeout", "600ms", "--keepalive-timeout", "20s"])
    with Conn(gh.port, timeout=10 * T) as c:
        c.send(build_request("GET", "/id") + b"GET /small HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n")
        r = c.read_response()
        eq((r.status, r.body), (200, b"b1"), "the complete request")
        t0 = time.monotonic()
        closed, extra = c.wait_closed(5 * T)
        dt = time.monotonic() - t0
        check(closed and dt < 3 * T, "the unfinished pipelined head was still waiting after %.1fs "
              "(header-timeout 600ms, keepalive-timeout 20s)" % dt)
        check(not extra or extra.startswith(b"HTTP/1.1 408"), "answer to the late head: %r" % extra[:80])


def access_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


@test("client_disconnect_noticed_only_on_write")
def _(ctx):
    # A client that closes while its (slow) response is pending: the upstream request is
    # dropped at once and logged 499, not when the backend finally answers.
    b = ctx.backend()
    path = ctx.dir + "/access.log"
    gh = ctx.gatehouse([b], workers=1, access_log=path)
    for how in ("close", "shutdown"):
        n0 = len(access_lines(path))
        c = Conn(gh.port)
        c.send(build_request("GET", "/slow?ms=%d&how=%s" % (int(5000 * T), how)))
        time.sleep(0.3)
        if how == "shutdown":
            socket.socket.shutdown(c.s, socket.SHUT_WR)  # a FIN under TLS; the socket can still read
        else:
            c.close()
        t0 = time.monotonic()
        line = None
        while time.monotonic() - t0 < 3 * T and line is None:
            new = [ln for ln in access_lines(path)[n0:] if "how=" + how in ln]
            line = new[0] if new else None
            time.sleep(0.05)
        dt = time.monotonic() - t0
        check(line is not None and dt < 2 * T, "%s: no access log line %.1fs after the client left: %r"
              % (how, dt, access_lines(path)[n0:]))
        check('" 499 ' in line, "%s: the request of a client that left is logged %r, want 499" % (how, line))
        c.close()


@test("gateway_error_writes_no_error_log_line")
def _(ctx):
    # A 502 (or 503/504) must leave a line in the error log naming the client, the listener,
    # the route and the server, so that an operator can find why.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    with Conn(gh.port) as c:
        eq(c.request("GET", "/reset").status, 502, "status for a backend that resets")
    t0 = time.monotonic()
    want = ["502", "127.0.0.1", "127.0.0.1:%d" % gh.port, "127.0.0.1:%d" % b.port]
    lines = []
    while time.monotonic() - t0 < 2 * T:
        lines = [ln for ln in gh.stderr().splitlines() if all(w in ln for w in want)]
        if lines:
            break
        time.sleep(0.05)
    check(lines, "no error-log line with %r for the 502: %r" % (want, gh.stderr().splitlines()[-5:]))


@test("removed_listener_drops_request_already_read")
def _(ctx):
    # A keep-alive client of a listener that a reload removes: its next request, already
    # read, is answered on the configuration it came on (then the connection closes), not dropped.
    import t_reload as rl
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    certs = ctx.session.certs()
    plain = rl.free_port()

    def text(port, with_plain, gen):
        return rl.LISTENERS % dict(
            workers=rl.NWORKERS, port=port, b1=b1.port, b2=b2.port, gen=gen, cert=certs["ec_cert"],
            key=certs["ec_key"],
            plain_listen="listen 127.0.0.1:%d\n" % plain if with_plain else "",
            plain_site=("site default {\n    listen 127.0.0.1:%d\n    route / { proxy pb }\n"
                        "    route /gen { respond 200 %s }\n}\n" % (plain, gen)) if with_plain else "")

    gh = rl.start(ctx, lambda port: text(port, True, "gen-1"))
    probes = rl.Probes(gh)
    ka = socket.create_connection(("127.0.0.1", plain), timeout=5 * T)
    try:
        ka.sendall(build_request("GET", "/id", host="localhost"))
        first = ka.recv(65536)
        check(first.startswith(b"HTTP/1.1 200") and first.endswith(b"b2"), "keep-alive on the plain listener: %r"
              % first)
        rl.write_conf(gh, text(gh.port, False, "gen-2"))
        rl.hup(gh)
        probes.wait("gen-2")
        ka.sendall(build_request("GET", "/id?after=reload", host="localhost"))
        got = b""
        while True:
            try:
                d = ka.recv(65536)
            except OSError:
                break
            if not d:
                break
            got += d
        check(got.startswith(b"HTTP/1.1 200") and got.endswith(b"b2"),
              "the request read on a listener the reload removed got %r, want its answer" % got[:200])
        check(b"connection: close" in got.lower(), "that answer does not say Connection: close: %r" % got[:200])
    finally:
        ka.close()
        probes.close()
