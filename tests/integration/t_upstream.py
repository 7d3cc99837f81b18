"""Upstream: balancing, retries, and the errors gatehouse makes (502, 503, 504)."""
import collections
import socket
import time

from harness import T, Closed, Conn, build_request, check, eq, error_body_ok, test
import pattern


@test("upstream_round_robin")
def _(ctx):
    bs = [ctx.backend("b%d" % i) for i in (1, 2, 3)]
    gh = ctx.gatehouse(bs, workers=1)
    seen = collections.Counter()
    with Conn(gh.port) as c:
        for i in range(30):
            r = c.request("GET", "/id")
            eq(r.status, 200, "status of request %d" % (i + 1))
            seen[r.body.decode()] += 1
    for b in bs:
        check(8 <= seen[b.name] <= 12, "round robin over 30 requests: %s" % dict(seen))
    # And over separate client connections.
    seen2 = collections.Counter()
    for i in range(15):
        with Conn(gh.port) as c:
            seen2[c.request("GET", "/id").body.decode()] += 1
    for b in bs:
        check(3 <= seen2[b.name] <= 7, "round robin over 15 client connections: %s" % dict(seen2))


@test("upstream_one_dead_retried")
def _(ctx):
    b1, b3 = ctx.backend("b1"), ctx.backend("b3")
    dead = ctx.dead_port()
    gh = ctx.gatehouse([b1, dead, b3], workers=1)
    seen = collections.Counter()
    t0 = time.monotonic()
    for i in range(30):
        with Conn(gh.port) as c:
            r = c.request("GET", "/id")
            eq(r.status, 200, "GET %d with one of three backends down (retried on the next)" % (i + 1))
            seen[r.body.decode()] += 1
    check(seen["b1"] >= 10 and seen["b3"] >= 10, "distribution over the live backends: %s" % dict(seen))
    check(time.monotonic() - t0 < 15 * T, "30 requests took %.1fs" % (time.monotonic() - t0))


@test("upstream_all_dead_503")
def _(ctx):
    dead = [ctx.dead_port(), ctx.dead_port()]
    gh = ctx.gatehouse(dead, workers=1)
    with Conn(gh.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/small")
        error_body_ok(r, 503, dead)
        check(time.monotonic() - t0 < 5 * T, "503 took %.1fs" % (time.monotonic() - t0))
        if not r.all("connection") or "close" not in r.get("connection").lower():
            r = c.request("GET", "/small")
            error_body_ok(r, 503, dead)


@test("upstream_reset_502")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for graceful in ("0", "1"):
        with Conn(gh.port) as c:
            r = c.request("GET", "/reset?graceful=" + graceful)
            error_body_ok(r, 502, [b])
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small").status, 200, "a good request after the resets")


@test("upstream_malformed_502")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for kind in ("garbage", "dupcl", "badstatus", "clte", "nul", "bigline"):
        with Conn(gh.port) as c:
            r = c.request("GET", "/bad?kind=" + kind)
            error_body_ok(r, 502, [b], [b"HELLO"])
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small").status, 200, "a good request after the bad ones")


@test("upstream_response_timeout_504")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, args=["--response-timeout", "500ms"])
    with Conn(gh.port, timeout=10 * T) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/slow?ms=4000")
        dt = time.monotonic() - t0
        error_body_ok(r, 504, [b])
        check(0.4 <= dt <= 2.5 * T, "504 after %.2fs with --response-timeout 500ms" % dt)
    with Conn(gh.port) as c:
        r = c.request("GET", "/slow?ms=100")
        eq((r.status, r.body), (200, b"slow\n"), "a response within the timeout")


@test("upstream_connect_timeout")
def _(ctx):
    # A listener whose accept queue is full: SYNs to it are dropped, so connect() hangs.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    port = ls.getsockname()[1]
    fillers = []
    for i in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        gh = ctx.gatehouse([port], workers=1, args=["--connect-timeout", "400ms"])
        with Conn(gh.port, timeout=15 * T) as c:
            t0 = time.monotonic()
            r = c.request("GET", "/small")
            dt = time.monotonic() - t0
            check(r.status in (502, 503, 504), "status for an upstream connect timeout: %d" % r.status)
            error_body_ok(r, r.status, [port])
            check(dt <= 3 * T, "answer after %.2fs with --connect-timeout 400ms" % dt)
    finally:
        for s in fillers:
            s.close()
        ls.close()


@test("upstream_get_retried_after_reset")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    gh = ctx.gatehouse([b1, b2], workers=1)
    for i in range(6):
        with Conn(gh.port) as c:
            r = c.request("GET", "/flaky?fail=b1")
            eq((r.status, r.body), (200, b"ok b2"), "GET %d when b1 resets before answering" % (i + 1))
    check(len(b1.requests()) >= 2, "b1 was tried %d times in 6 round-robin requests" % len(b1.requests()))


@test("upstream_post_not_retried")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    gh = ctx.gatehouse([b1, b2], workers=1)
    statuses = collections.Counter()
    for i in range(6):
        with Conn(gh.port) as c:
            r = c.request("POST", "/flaky?fail=b1", body=b"x" * 5000)
            statuses[r.status] += 1
            if r.status != 200:
                error_body_ok(r, 502, [b1, b2])
    n1 = len([e for e in b1.requests() if e["method"] == "POST"])
    n2 = len([e for e in b2.requests() if e["method"] == "POST"])
    eq(n1 + n2, 6, "POST attempts the backends saw for 6 POSTs (b1 %d, b2 %d; a POST must not be retried)"
       % (n1, n2))
    eq(statuses[502], n1, "502s (one per POST that reached the resetting b1)")
    eq(statuses[200], n2, "200s")


@test("upstream_post_single_backend_one_attempt")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    with Conn(gh.port) as c:
        r = c.request("POST", "/reset", body=b"payload" * 100)
        error_body_ok(r, 502, [b])
    time.sleep(0.3)
    eq(len(b.requests()), 1, "attempts the backend saw for one POST that was reset")


@test("upstream_backend_restarts")
def _(ctx):
    # Pooled keep-alive connections that the backend has closed are not used again.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small").status, 200, "first GET")
    port = b.port
    b.stop()
    time.sleep(0.5)
    b2 = ctx.backend("b1-again", port=port)
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small").status, 200, "GET after the backend restarted")
    b2.stop()
    time.sleep(0.5)
    ctx.backend("b1-third", port=port)
    with Conn(gh.port) as c:
        r = c.request("POST", "/upload", body=b"abc")
        eq(r.status, 200, "POST after the backend restarted (a stale pooled connection must not be used)")


@test("errors_short_plain_bodies")
def _(ctx):
    # Every error gatehouse makes itself: short, plain text, framed, and silent about the backend.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, args=["--response-timeout", "300ms"])
    dead = ctx.dead_port()
    gh_dead = ctx.gatehouse([dead], workers=1)
    cases = [
        (gh, b"GET /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (gh, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
        (gh, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n" + b"X-A: 1\r\n" * 150 + b"\r\n", 431),
        (gh, b"GET /echo HTTP/2.0\r\nHost: localhost\r\n\r\n", 505),
        (gh, b"GET /bad?kind=garbage HTTP/1.1\r\nHost: localhost\r\n\r\n", 502),
        (gh, b"GET /reset HTTP/1.1\r\nHost: localhost\r\n\r\n", 502),
        (gh, b"GET /slow?ms=2000 HTTP/1.1\r\nHost: localhost\r\n\r\n", 504),
        (gh_dead, b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n", 503),
    ]
    for g, raw, status in cases:
        with Conn(g.port) as c:
            c.send(raw)
            r = c.read_response()
        error_body_ok(r, status, [b, dead])
        ctype = (r.get("content-type") or "").lower()
        check(ctype.startswith("text/plain"), "%d has Content-Type %r, want text/plain" % (status, ctype))
        check(r.all("content-length") and not r.all("transfer-encoding"),
              "%d is not framed by Content-Length: %r" % (status, r.headers))
        check(0 < len(r.body) <= 200, "%d body is %d bytes: %r" % (status, len(r.body), r.body[:100]))


@test("upstream_client_abort_mid_body")
def _(ctx):
    # A client that dies half way through its body: the upstream connection carrying the
    # partial body must be closed, never reused (the next request would become body bytes).
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small").status, 200, "warm-up request (fills the upstream pool)")
    for i in range(3):
        c = Conn(gh.port)
        c.send(build_request("POST", "/upload", [("Content-Length", "100000")]) + b"p" * 40000)
        time.sleep(0.3)
        c.close()
        time.sleep(0.2)
        with Conn(gh.port) as c2:
            r = c2.request("GET", "/id?after=%d" % i)
            eq((r.status, r.body), (200, b"b1"), "request after a client aborted its upload")
    targets = [e["target"] for e in b.requests()]
    for i in range(3):
        check("/id?after=%d" % i in targets, "the backend never saw /id?after=%d as a request: %r" % (i, targets))
    check(not b.events("body"), "an aborted upload was completed upstream with other bytes: %r" % b.events("body"))


@test("upstream_client_abort_mid_response")
def _(ctx):
    # A client that leaves in the middle of a big response: the rest of that response must
    # not be served to the next client (the upstream connection is closed, not pooled).
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for i in range(3):
        c = Conn(gh.port)
        c.send(build_request("GET", "/download?size=%d" % (50 << 20)))
        while len(c.buf) < 1 << 20:
            check(c._fill(), "download closed early")
        c.close()
        time.sleep(0.2)
        with Conn(gh.port) as c2:
            r = c2.request("GET", "/small")
            eq(r.status, 200, "status after a client left a download")
            check(r.body == pattern.SMALL, "the next client got other bytes (%r...)" % r.body[:40])


@test("upstream_backend_connection_close")
def _(ctx):
    # A backend answer with Connection: close ends that upstream connection.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    with Conn(gh.port) as c:
        for i in range(5):
            r = c.request("GET", "/id?close=1&n=%d" % i)
            eq((r.status, r.body), (200, b"b1"), "request %d to a backend that closes after each answer" % (i + 1))
    eq(b.accepts(), 5, "upstream connections for 5 answers with Connection: close")
    for i in range(3):
        with Conn(gh.port) as c:
            eq(c.request("POST", "/upload?close=1", body=b"abc").status, 200, "POST %d" % (i + 1))


@test("upstream_truncated_response")
def _(ctx):
    # A response cut short upstream must not reach the client as a complete one.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for kind in ("cl", "chunked"):
        with Conn(gh.port) as c:
            c.send(build_request("GET", "/truncated?kind=" + kind))
            try:
                r = c.read_response()
            except Closed:
                continue  # closed in the middle of the body: the client can tell
            check(r.status == 502, "a truncated (%s) upstream response reached the client as complete: %d, %d bytes"
                  % (kind, r.status, len(r.body)))


@test("upstream_extra_response_not_relayed")
def _(ctx):
    # A backend that answers twice: the extra response must not be given to a later request
    # (response queue poisoning); the upstream connection is dropped, not pooled.
    from t_datapath import answer_then_clean
    answer_then_clean(ctx, "GET", "/double", b"first\n", "the backend's extra response", same_client=True)


@test("upstream_early_response_relayed")
def _(ctx):
    # A backend may answer (401, 413...) before it has read the request body; the client
    # gets that answer, not a 502.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for size in (1000, 4 << 20):
        with Conn(gh.port, timeout=10 * T) as c:
            c.send(build_request("POST", "/reject-early?status=413", [("Content-Length", str(size))]))
            try:
                for i in range(0, size, 65536):
                    c.send(b"e" * min(65536, size - i))
            except OSError:
                pass
            r = c.read_response()
            eq((r.status, r.body), (413, b"rejected early\n"), "early answer to a %d-byte upload" % size)


@test("upstream_response_timeout_mid_body")
def _(ctx):
    # The backend sends its head, then goes silent: the client must not get a complete response.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, args=["--response-timeout", "500ms"])
    with Conn(gh.port, timeout=10 * T) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/slowbody?ms=4000"))
        try:
            r = c.read_response()
            check(r.status == 504, "a response whose body stalled past the timeout came through: %d %r"
                  % (r.status, r.body))
        except Closed:
            pass
        dt = time.monotonic() - t0
        check(dt < 3 * T, "gave up after %.1fs with --response-timeout 500ms (backend silent for 4s)" % dt)


@test("upstream_bodiless_responses_framing")
def _(ctx):
    # 304 with a Content-Length has no body (RFC 9110 8.6): nothing to wait for.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    with Conn(gh.port, timeout=3 * T) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/status/304?cl=1000")
        eq((r.status, r.body), (304, b""), "304 with Content-Length: 1000")
        check(time.monotonic() - t0 < 1.5 * T, "the 304 took %.1fs (waited for a body?)" % (time.monotonic() - t0))
        eq(c.request("GET", "/id").body, b"b1", "next request on the connection")
        r = c.request("HEAD", "/download?size=5000&chunked=1")
        eq(r.status, 200, "HEAD of a chunked resource")
        eq(c.request("GET", "/id").body, b"b1", "request after the HEAD")


@test("upstream_illegal_body_not_relayed")
def _(ctx):
    # Body bytes after a HEAD answer, a 204 or a 304 are garbage: they must reach no client,
    # and the upstream connection that carried them must not be reused.
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    for method, path, status in (("HEAD", "/head?junk=1", 200), ("GET", "/status/204?junk=1", 204),
                                 ("GET", "/status/304?junk=1", 304)):
        with Conn(gh.port) as c:
            r = c.request(method, path)
            eq((r.status, r.body), (status, b""), "%s %s" % (method, path))
            r = c.request("GET", "/id")
            eq((r.status, r.body), (200, b"b1"), "the request after %s %s on the same client connection" % (method, path))
        with Conn(gh.port) as c:
            r = c.request("GET", "/id")
            eq((r.status, r.body), (200, b"b1"), "a new client after %s %s" % (method, path))
