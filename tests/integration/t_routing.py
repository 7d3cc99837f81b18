"""Routing from a configuration file: sites by Host (exact, wildcard, default, 421), routes by
longest prefix with method and header conditions, proxy with strip/replace_prefix, respond,
redirect (from a plain listener to https), 404, per-route header operations and max_body.

All the route_* tests share one gatehouse (a fixture) with two pools of one backend each:
`/id` on a backend answers its name, pa or pb, so the body says which pool a request reached."""
import time
import uuid

from harness import Closed, Conn, Fail, T, add_test, build_request, check, client, eq, protocol, request, test
from cfgutil import PlainConn


def routing_fixture(ctx):
    pa, pb = ctx.backend("pa"), ctx.backend("pb")
    c = ctx.session.certs()
    cert = "%s %s" % (c["ec_cert"], c["ec_key"])

    def conf(p):
        return """# routing fixture
workers 1
listen 127.0.0.1:{tls} tls
listen 127.0.0.1:{plain}
pool pa {{ server 127.0.0.1:{a} }}
pool pb {{ server 127.0.0.1:{b} }}

site app.test {{
    listen 127.0.0.1:{tls}
    cert {cert}
    route / {{ proxy pa }}
    route /api/ {{ proxy pb strip_prefix }}
    route /old/ {{ proxy pb replace_prefix /new/ }}
    route /m/ {{
        method POST PUT
        proxy pb strip_prefix
    }}
    route /m/ {{ proxy pa strip_prefix }}
    route /h/ {{
        header X-Canary yes
        proxy pb strip_prefix
    }}
    route /h/ {{ proxy pa strip_prefix }}
    route /hello {{ respond 200 "hello, world\\n" }}
    route /teapot {{
        respond 418 "short and stout"
        response_header set Content-Type "text/x-tea"
        response_header set X-Tea "earl grey"
    }}
    route /nocontent {{ respond 204 }}
    route /hdr/ {{
        proxy pa strip_prefix
        request_header set X-Added "added value"
        request_header remove X-Secret
        response_header set X-Resp-Added yes
        response_header remove X-Backend
    }}
    route /limited/ {{
        proxy pa strip_prefix
        max_body 1k
    }}
    route /go/ {{ redirect 302 https://elsewhere.test/pay?cost=$$5&from=$request_uri }}
}}

site *.b.test {{
    listen 127.0.0.1:{tls}
    cert {cert}
    route /id {{ proxy pb }}
}}
site exact.b.test {{
    listen 127.0.0.1:{tls}
    cert {cert}
    route /id {{ proxy pa }}
}}
site *.deep.b.test {{
    listen 127.0.0.1:{tls}
    cert {cert}
    route / {{ respond 200 "deep wildcard" }}
}}

site plain.test {{
    listen 127.0.0.1:{plain}
    route / {{ proxy pa }}
}}
site default {{
    listen 127.0.0.1:{plain}
    route / {{ redirect 301 https://$host$request_uri }}
}}
""".format(tls=p[0], plain=p[1], a=pa.port, b=pb.port, cert=cert)
    gh = ctx.gatehouse_config(conf, nports=2)
    return {"gh": gh, "tls": gh.ports[0], "plain": gh.ports[1], "pa": pa, "pb": pb}


def tok():
    return uuid.uuid4().hex[:12]


def targets_with(b, token):
    return [e["target"] for e in b.requests() if token in e["target"]]


def req(port, method, path, host, headers=(), body=None, sni=None):
    # In the running test's protocol (dual tests: HTTP/1.1, then HTTP/2 with curl --http2).
    return request(port, method, path, headers, body, host=host, sni=sni or host.split(":")[0].rstrip(".").lower())


def head_only(c, path, length, host):
    """A POST head announcing length body bytes, and no body: its answer."""
    if protocol() == "h2":
        import h2raw
        sid = c.new_sid()
        c.send(c.headers_frame(sid, h2raw.literal_block(h2raw.request_headers(
            "POST", path, host, extra=[("content-length", str(length))])), end_stream=False))
        o = c.response(sid)
        check(o.kind == "response", "HTTP/2 POST head only: %r" % o)
        return o
    c.send(build_request("POST", path, [("Content-Length", str(length))], host=host))
    return c.read_response()


def route_test(name, dual=False):
    def deco(fn):
        add_test(name, fn, fixture=routing_fixture, timeout=30, dual=dual)
        return fn
    return deco


def from_backend(r):
    """The name of the backend that answered (its X-Backend header), or None for gatehouse's own."""
    return r.get("x-backend")


@route_test("route_sites_by_host", dual=True)
def _(ctx, f):
    cases = [
        ("app.test", "pa"), ("APP.Test", "pa"), ("app.test:%d" % f["tls"], "pa"), ("app.test.", "pa"),
        ("x.b.test", "pb"), ("a.x.b.test", "pb"), ("exact.b.test", "pa"), ("EXACT.b.test:443", "pa"),
    ]
    for host, want in cases:
        t = tok()
        r = req(f["tls"], "GET", "/id?t=" + t, host)
        eq((r.status, r.body), (200, want.encode()), "GET /id with Host %r" % host)
        check(targets_with(f[want], t) == ["/id?t=" + t], "backend %s did not see /id?t=%s (Host %r)" % (want, t, host))
    r = req(f["tls"], "GET", "/anything", "q.deep.b.test")
    eq((r.status, r.body), (200, b"deep wildcard"), "the more specific wildcard *.deep.b.test")


@route_test("route_no_site_421", dual=True)
def _(ctx, f):
    # The TLS listener has no `site default`: an unknown Host, or the bare name of a wildcard, is 421.
    for host in ("nomatch.test", "b.test", "test", "app.test.evil"):
        t = tok()
        r = req(f["tls"], "GET", "/id?t=" + t, host, sni="nomatch.test")
        eq(r.status, 421, "status for Host %r on a listener without a default site" % host)
        check(from_backend(r) is None, "421 came from a backend")
        check(not targets_with(f["pa"], t) and not targets_with(f["pb"], t), "a 421 request reached a backend")


@route_test("route_default_site")
def _(ctx, f):
    # On the plain listener, plain.test is served and everything else goes to `site default`.
    t = tok()
    with PlainConn(f["plain"]) as c:
        r = c.request("GET", "/id?t=" + t, host="plain.test:%d" % f["plain"])
        eq((r.status, r.body), (200, b"pa"), "plain.test on the plain listener")
        r = c.request("GET", "/id?t=" + t, host="unknown.test")
        eq(r.status, 301, "unknown Host on the plain listener (the default site redirects)")
    # app.test is a site of the TLS listener only: on the plain one it is the default's.
    with PlainConn(f["plain"]) as c:
        r = c.request("GET", "/id", host="app.test")
        eq(r.status, 301, "app.test on the plain listener, where only the default site serves it")
    eq(len(targets_with(f["pa"], t)), 1, "requests of this test that reached pa")


@route_test("route_redirect_to_https")
def _(ctx, f):
    cases = [
        ("/some/path?q=1&r=a%20b", "shop.test:%d" % f["plain"], "https://shop.test/some/path?q=1&r=a%20b"),
        ("/", "shop.test", "https://shop.test/"),
        ("/x?", "Shop.Test", None),
    ]
    for path, host, want in cases:
        with PlainConn(f["plain"]) as c:
            r = c.request("GET", path, host=host)
        eq(r.status, 301, "status of the plain listener's redirect for %s" % path)
        loc = r.get("location")
        if want is not None:
            eq(loc, want, "Location for GET %s with Host %s" % (path, host))
        else:
            check(loc is not None and loc.lower().startswith("https://shop.test/x?"), "Location %r" % loc)
        check(from_backend(r) is None, "the redirect came from a backend")
    # A HEAD and a POST are redirected the same way, and the connection stays usable.
    with PlainConn(f["plain"]) as c:
        r = c.request("HEAD", "/h?x=1", host="shop.test")
        eq((r.status, r.get("location")), (301, "https://shop.test/h?x=1"), "HEAD redirect")
        r = c.request("GET", "/after-head", host="shop.test")
        eq((r.status, r.get("location")), (301, "https://shop.test/after-head"), "GET after a HEAD redirect")
    # Variables: $$ is a dollar, $request_uri is path and query as received.
    r = req(f["tls"], "GET", "/go/x?y=1", "app.test")
    eq((r.status, r.get("location")), (302, "https://elsewhere.test/pay?cost=$5&from=/go/x?y=1"),
       "redirect 302 with $$ and $request_uri")


@route_test("route_longest_prefix", dual=True)
def _(ctx, f):
    t = tok()
    cases = [
        # path sent, pool, path the backend must see
        ("/api/id?t=%s" % t, "pb", "/id?t=%s" % t),
        ("/api/?t=%s" % t, "pb", "/?t=%s" % t),
        ("/api/v1/users?t=%s&x=1" % t, "pb", "/v1/users?t=%s&x=1" % t),
        ("/api?t=%s" % t, "pa", "/api?t=%s" % t),          # /api/ does not match /api
        ("/apix/id?t=%s" % t, "pa", "/apix/id?t=%s" % t),
        ("/id?t=%s" % t, "pa", "/id?t=%s" % t),
        ("/old/a/b?t=%s" % t, "pb", "/new/a/b?t=%s" % t),   # replace_prefix
        ("/old/?t=%s" % t, "pb", "/new/?t=%s" % t),
    ]
    for path, pool, seen in cases:
        r = req(f["tls"], "GET", path, "app.test")
        eq(from_backend(r), pool, "pool that answered GET %s" % path)
        check(seen in targets_with(f[pool], t), "GET %s: backend %s did not see %s: %r"
              % (path, pool, seen, targets_with(f[pool], t)))
    for b in ("pa", "pb"):
        for target in targets_with(f[b], t):
            check(target in [s for _, p, s in cases if p == b], "backend %s saw an unexpected target %r" % (b, target))


@route_test("route_prefix_without_slash", dual=True)
def _(ctx, f):
    # `route /id` matches /id, /id?x and /id/..., not /idx: that is a 404 from gatehouse.
    t = tok()
    for path, ok in (("/id?t=" + t, True), ("/id/sub?t=" + t, True), ("/idx?t=" + t, False), ("/?t=" + t, False),
                     ("/other?t=" + t, False)):
        r = req(f["tls"], "GET", path, "x.b.test")
        if ok:
            eq(from_backend(r), "pb", "GET %s on *.b.test" % path)
        else:
            eq(r.status, 404, "GET %s on *.b.test (no route)" % path)
            check(from_backend(r) is None, "the 404 for %s came from a backend" % path)
    got = targets_with(f["pb"], t)
    eq(sorted(got), sorted(["/id?t=" + t, "/id/sub?t=" + t]), "targets pb saw")
    eq(targets_with(f["pa"], t), [], "targets pa saw")


@route_test("route_method_condition", dual=True)
def _(ctx, f):
    t = tok()
    for method, pool in (("POST", "pb"), ("PUT", "pb"), ("GET", "pa"), ("DELETE", "pa"), ("PATCH", "pa")):
        body = b"x" if method in ("POST", "PUT", "PATCH") else None
        r = req(f["tls"], method, "/m/id?t=%s&m=%s" % (t, method), "app.test", body=body)
        eq((r.status, r.body), (200, pool.encode()), "%s /m/id" % method)
        seen = [e for e in f[pool].requests() if e["target"] == "/id?t=%s&m=%s" % (t, method)]
        check(len(seen) == 1 and seen[0]["method"] == method, "%s /m/id: backend %s saw %r" % (method, pool, seen))
    r = req(f["tls"], "HEAD", "/m/id?t=" + t, "app.test")
    eq((r.status, from_backend(r)), (200, "pa"), "HEAD /m/id")


@route_test("route_header_condition", dual=True)
def _(ctx, f):
    t = tok()
    cases = [
        ([("X-Canary", "yes")], "pb"),
        ([("x-CANARY", "yes")], "pb"),        # the name in any case
        ([("X-Canary", "YES")], "pa"),        # the value exactly
        ([("X-Canary", "yes-please")], "pa"),
        ([("X-Canary", "no")], "pa"),
        ([], "pa"),
    ]
    for i, (headers, pool) in enumerate(cases):
        r = req(f["tls"], "GET", "/h/id?t=%s&i=%d" % (t, i), "app.test", headers=headers)
        eq((r.status, r.body), (200, pool.encode()), "GET /h/id with %r" % headers)
        check(targets_with(f[pool], "t=%s&i=%d" % (t, i)) == ["/id?t=%s&i=%d" % (t, i)],
              "backend %s did not see the stripped /id?t=..&i=%d" % (pool, i))


@route_test("route_respond")
def _(ctx, f):
    t = tok()
    with Conn(f["tls"], sni="app.test") as c:
        r = c.request("GET", "/hello?t=" + t, host="app.test")
        eq((r.status, r.body), (200, b"hello, world\n"), "respond 200")
        check((r.get("content-type") or "").startswith("text/plain"), "Content-Type %r" % r.get("content-type"))
        eq(r.get("content-length"), "13", "Content-Length of the respond body")
        r = c.request("GET", "/hello/sub", host="app.test")
        eq((r.status, r.body), (200, b"hello, world\n"), "respond route matched below its prefix")
    check(not targets_with(f["pa"], t) and not targets_with(f["pb"], t), "a respond route reached a backend")
    # HEAD: the same head, no body; the next response on the connection must start clean.
    with Conn(f["tls"], sni="app.test") as c:
        r = c.request("HEAD", "/hello", host="app.test")
        eq(r.status, 200, "HEAD of a respond route")
        c.settimeout(0.5)
        check(not c.buf and not _pending(c),
              "gatehouse sent body bytes after the head of a HEAD response: %r" % bytes(c.buf[:80]))
        c.settimeout(5 * T)
        r = c.request("GET", "/hello", host="app.test")
        eq((r.status, r.body), (200, b"hello, world\n"), "GET after a HEAD on a respond route")


@route_test("route_respond_headers", dual=True)
def _(ctx, f):
    # response_header applies to gatehouse's own answers too; Content-Type replaces text/plain.
    r = req(f["tls"], "GET", "/teapot", "app.test")
    eq((r.status, r.body), (418, b"short and stout"), "respond 418")
    eq(r.all("x-tea"), ["earl grey"], "X-Tea (response_header set on a respond route)")
    eq(r.all("content-type"), ["text/x-tea"], "Content-Type (response_header set on a respond route)")


def _pending(c):
    """True if bytes arrive within the connection's timeout (they should not)."""
    try:
        return c._fill()
    except Fail:
        return False


def echoed_headers(body):
    """(name lower, value) of the request head a backend echoed."""
    out = []
    for line in body.decode("latin-1").split("\r\n")[1:]:
        if line:
            n, _, v = line.partition(":")
            out.append((n.lower(), v.strip()))
    return out


@route_test("route_header_operations", dual=True)
def _(ctx, f):
    sent = [("X-Added", "from-client"), ("X-Secret", "s3cr3t"), ("x-SECRET", "again"), ("X-Keep", "kept")]
    r = req(f["tls"], "GET", "/hdr/echo", "app.test", headers=sent)
    eq(r.status, 200, "status")
    hs = echoed_headers(r.body)
    eq([v for n, v in hs if n == "x-added"], ["added value"], "X-Added the backend saw (request_header set)")
    eq([v for n, v in hs if n == "x-secret"], [], "X-Secret the backend saw (request_header remove)")
    eq([v for n, v in hs if n == "x-keep"], ["kept"], "X-Keep the backend saw (untouched)")
    check(b"s3cr3t" not in r.body and b"from-client" not in r.body, "removed or replaced values reached the backend")
    eq(r.all("x-resp-added"), ["yes"], "X-Resp-Added the client saw (response_header set)")
    eq(r.all("x-backend"), [], "X-Backend the client saw (response_header remove)")
    # Control: the same request on a route without header operations.
    r = req(f["tls"], "GET", "/echo", "app.test", headers=sent)
    hs = echoed_headers(r.body)
    eq([v for n, v in hs if n == "x-added"], ["from-client"], "X-Added on a route without header operations")
    eq(len([v for n, v in hs if n == "x-secret"]), 2, "X-Secret headers on a route without header operations")
    eq(r.all("x-backend"), ["pa"], "X-Backend on a route without header operations")
    eq(r.all("x-resp-added"), [], "X-Resp-Added on a route without header operations")


@route_test("route_max_body_content_length", dual=True)
def _(ctx, f):
    t = tok()
    with client(f["tls"], sni="app.test") as c:
        r = c.request("POST", "/limited/upload?t=%s&n=1024" % t, body=b"k" * 1024, host="app.test")
        eq(r.status, 200, "POST of exactly max_body (1k)")
        check(r.body.endswith(b" 1024\n"), "the backend got %r" % r.body)
    with client(f["tls"], sni="app.test") as c:
        r = c.request("POST", "/limited/upload?t=%s&n=1025" % t, body=b"K" * 1025, host="app.test")
        eq(r.status, 413, "POST of 1025 bytes with max_body 1k")
        check(from_backend(r) is None, "the 413 came from a backend")
    with client(f["tls"], sni="app.test") as c:
        # Only the head is sent: the 413 must not wait for a body that is refused anyway.
        t0 = time.monotonic()
        r = head_only(c, "/limited/upload?t=%s&n=big" % t, 10 << 20, "app.test")
        eq(r.status, 413, "POST announcing 10 MiB with max_body 1k")
        check(time.monotonic() - t0 < 2 * T, "413 took %.1fs" % (time.monotonic() - t0))
    time.sleep(0.2)
    got = targets_with(f["pa"], t)
    eq(got, ["/upload?t=%s&n=1024" % t], "requests that reached the backend")
    check(b"K" * 100 not in f["pa"].raw(), "body bytes of the refused request reached the backend")
    # The global default (none here): a bigger body on a route without max_body passes.
    r = req(f["tls"], "POST", "/upload?t=%s&n=unlimited" % t, "app.test", body=b"u" * 5000)
    eq(r.status, 200, "POST of 5000 bytes on a route without max_body")


@route_test("route_max_body_chunked")
def _(ctx, f):
    t = tok()
    # Within the limit: 2 chunks of 500 bytes.
    with Conn(f["tls"], sni="app.test") as c:
        c.send(build_request("POST", "/limited/upload?t=%s&n=ok" % t, [("Transfer-Encoding", "chunked")],
                             host="app.test"))
        c.send(b"1f4\r\n" + b"c" * 500 + b"\r\n1f4\r\n" + b"c" * 500 + b"\r\n0\r\n\r\n")
        r = c.read_response()
        eq(r.status, 200, "chunked POST of 1000 bytes with max_body 1k")
        check(r.body.endswith(b" 1000\n"), "the backend got %r" % r.body)
    # Over it: 600 bytes, a pause (the head and first chunk may go upstream), then 600 more.
    with Conn(f["tls"], sni="app.test") as c:
        c.send(build_request("POST", "/limited/upload?t=%s&n=over" % t, [("Transfer-Encoding", "chunked")],
                             host="app.test"))
        c.send(b"258\r\n" + b"Z" * 600 + b"\r\n")
        time.sleep(0.3)
        try:
            c.send(b"258\r\n" + b"Z" * 600 + b"\r\n0\r\n\r\n")
        except OSError:
            pass
        try:
            r = c.read_response()
        except Closed as e:
            raise Fail("no 413 for a chunked body over max_body: %s" % e)
        eq(r.status, 413, "chunked POST of 1200 bytes with max_body 1k")
        check(from_backend(r) is None, "the 413 came from a backend")
    time.sleep(0.3)
    pa = f["pa"]
    over = [e for e in pa.requests() if e["target"] == "/upload?t=%s&n=over" % t]
    bodies = [e for e in pa.events("body") if e.get("chunked") and e.get("len", 0) > 1024]
    check(not bodies, "the backend received a complete chunked body over the limit: %r" % bodies)
    zs = pa.raw().count(b"Z")
    check(zs <= 1024, "%d body bytes of the refused chunked request reached the backend (limit 1k)" % zs)
    if over:
        closes = [e for e in pa.events("close") if e["conn"] == over[0]["conn"]]
        check(closes, "the upstream connection carrying the refused chunked body was not closed")
    ctx.info = "over-limit chunked POST: backend saw %s and %d of 1200 body bytes, no complete body" % (
        "its head" if over else "nothing", zs)


@route_test("route_respond_204")
def _(ctx, f):
    # RFC 9110 8.6: no Content-Length in a 204; and nothing after the head.
    with Conn(f["tls"], sni="app.test") as c:
        r = c.request("GET", "/nocontent", host="app.test")
        eq(r.status, 204, "respond 204")
        eq(r.all("content-length"), [], "Content-Length in a 204 from a respond route")
        eq(r.all("transfer-encoding"), [], "Transfer-Encoding in a 204 from a respond route")
        r = c.request("GET", "/hello", host="app.test")
        eq((r.status, r.body), (200, b"hello, world\n"), "the next request on the connection")


# A route for /admin/ bypassed by another spelling (issue 6 A6). `route /admin/` answers 403 on one
# listener and proxies to a backend of its own on another; `/` goes to the public backend. Each
# spelling a backend could read as /admin/x must either be refused (400, nothing sent anywhere) or
# be treated as /admin/x, with exactly "/admin/x" on the request line upstream.
BYPASS = [
    # (request-target, status when /admin/ answers 403, path the admin backend receives or None)
    ("//admin/x", 403, "/admin/x"),
    ("/admin//x", 403, "/admin/x"),
    ("///admin/x?q=//", 403, "/admin/x?q=//"),
    ("/admin;x/y", 400, None),
    ("/admin/..;/x", 400, None),
    ("/admin%2Fx", 400, None),
    ("/admin%2fx", 400, None),
    ("/%2561dmin/x", 400, None),
    ("/%61dmin/x", 400, None),
    ("/admin%5Cx", 400, None),
    ("/admin%3Bx/y", 400, None),
    ("/admin%00/x", 400, None),
    ("/x/../admin/x", 400, None),
]


def upstream_head(path, host="a.test"):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nX-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: %s\r\nForwarded: for=127.0.0.1;proto=http;host=\"%s\"\r\n\r\n"
            % (path, host, host, host)).encode()


@test("route_bypassed_by_another_spelling")
def _(ctx):
    pub, adm = ctx.backend("public"), ctx.backend("admin")

    def conf(p):
        return """workers 1
listen 127.0.0.1:{deny}
listen 127.0.0.1:{prox}
pool public {{ server 127.0.0.1:{pub} }}
pool admin {{ server 127.0.0.1:{adm} }}
site default {{
    listen 127.0.0.1:{deny}
    route / {{ proxy public }}
    route /admin/ {{ respond 403 "admin only" }}
}}
site default {{
    listen 127.0.0.1:{prox}
    route / {{ proxy public }}
    route /admin/ {{ proxy admin }}
}}
""".format(deny=p[0], prox=p[1], pub=pub.port, adm=adm.port)
    gh = ctx.gatehouse_config(conf, nports=2)
    want_admin = b""
    for target, status, admin_path in BYPASS:
        for port, proxied in ((gh.ports[0], False), (gh.ports[1], True)):
            with PlainConn(port) as c:
                c.send(("GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % target).encode())
                r = c.read_response()
            want = status if not proxied or status == 400 else 404  # the admin backend has no /admin/x
            eq(r.status, want, "status of GET %s (route /admin/ %s)" % (target, "proxied" if proxied else "403"))
            if proxied and admin_path is not None:
                want_admin += upstream_head(admin_path)
    eq(pub.raw(), b"", "what reached the public backend")
    eq(adm.raw(), want_admin, "what reached the admin backend")
    # An ordinary path with an empty segment goes upstream merged: router and backend see one path.
    with PlainConn(gh.ports[1]) as c:
        c.send(b"GET /pub//lic/?a=//b HTTP/1.1\r\nHost: a.test\r\n\r\n")
        c.read_response()
    eq(pub.raw(), upstream_head("/pub/lic/?a=//b"), "what reached the public backend for /pub//lic/")
