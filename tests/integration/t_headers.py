"""What the backend receives: hop-by-hop removal, X-Forwarded-*, Forwarded, Host."""
import re

from harness import Conn, build_request, check, eq, request, test


def echo(gh, headers, host=None, path="/echo"):
    """Sends GET path with these headers (in the running test's protocol); returns the header list
    the backend received."""
    r = request(gh.port, "GET", path, headers, host=host)
    eq(r.status, 200, "status of GET %s" % path)
    lines = r.body.decode("latin-1").split("\r\n")
    check(re.fullmatch(r"GET \S+ HTTP/1\.1", lines[0]), "request line upstream: %r" % lines[0])
    got = []
    for ln in lines[1:]:
        if ln == "":
            break
        n, _, v = ln.partition(":")
        got.append((n, v.strip()))
    return got


def values(hdrs, name):
    return [v for n, v in hdrs if n.lower() == name.lower()]


HOP = [("Connection", "X-Foo, keep-alive, X-Bar"), ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
       ("Trailer", "X-T"), ("Upgrade", "websocket"), ("Proxy-Connection", "keep-alive"),
       ("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="), ("X-Foo", "1"), ("X-Bar", "2"),
       ("X-Keep", "kept")]


@test("headers_hop_by_hop_removed")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    got = echo(gh, HOP)
    for name in ("Connection", "Keep-Alive", "TE", "Trailer", "Upgrade", "Proxy-Connection",
                 "Proxy-Authorization"):
        check(not values(got, name), "hop-by-hop header %s reached the backend: %r" % (name, got))
    eq(values(got, "X-Keep"), ["kept"], "an end-to-end header")


@test("headers_connection_named_removed")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    got = echo(gh, HOP)
    check(not values(got, "X-Foo"), "X-Foo, named in Connection, reached the backend: %r" % got)
    check(not values(got, "X-Bar"), "X-Bar, named in Connection, reached the backend: %r" % got)
    got = echo(gh, [("Connection", "x-lower"), ("X-LOWER", "1"), ("X-Other", "2")])
    check(not values(got, "X-Lower"), "a header named in Connection (other case) reached the backend: %r" % got)
    eq(values(got, "X-Other"), ["2"], "an unnamed header")
    # Connection cannot remove the fields that route and frame the request.
    got = echo(gh, [("Connection", "Host, X-Forwarded-For")])
    eq(values(got, "Host"), ["localhost:%d" % gh.port], "Host after Connection: Host")
    eq(values(got, "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For after Connection names it")


@test("headers_h2c_upgrade_not_forwarded")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b])
    with Conn(gh.port) as c:
        r = c.request("GET", "/echo", [("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                       ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        eq(r.status, 200, "status of an h2c upgrade request (must be served as HTTP/1.1, not 101)")
        body = r.body.lower()
        for h in (b"upgrade:", b"http2-settings:", b"connection:"):
            check(h not in body, "%r reached the backend: %r" % (h, r.body))
        eq(c.request("GET", "/small").status, 200, "the connection is still HTTP/1.1")


@test("headers_x_forwarded_for", dual=True)
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    eq(values(echo(gh, []), "X-Forwarded-For"), ["127.0.0.1"], "X-Forwarded-For without one from the client")
    eq(values(echo(gh, [("X-Forwarded-For", "1.2.3.4")]), "X-Forwarded-For"), ["1.2.3.4, 127.0.0.1"],
       "X-Forwarded-For appended")
    got = values(echo(gh, [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8")]), "X-Forwarded-For")
    check(", ".join(got) == "1.2.3.4, 5.6.7.8, 127.0.0.1",
          "two X-Forwarded-For lines: backend got %r, want the list 1.2.3.4, 5.6.7.8, 127.0.0.1" % got)


@test("headers_x_forwarded_proto_host", dual=True)
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    got = echo(gh, [], host="app.example:8443")
    eq(values(got, "X-Forwarded-Proto"), ["https"], "X-Forwarded-Proto")
    eq(values(got, "X-Forwarded-Host"), ["app.example:8443"], "X-Forwarded-Host")


@test("headers_x_forwarded_proto_spoof_replaced", dual=True)
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    got = echo(gh, [("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "evil.example")], host="good.example")
    eq(values(got, "X-Forwarded-Proto"), ["https"], "X-Forwarded-Proto when the client sent 'http'")
    eq(values(got, "X-Forwarded-Host"), ["good.example"], "X-Forwarded-Host when the client sent one")


TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
QUOTED = r'"(?:[^"\\]|\\.)*"'


def parse_forwarded(value):
    """RFC 7239 section 4: a list of elements, each pairs token=(token|quoted-string) joined by ';'."""
    elements = []
    for el in re.split(r"\s*,\s*(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", value.strip()):
        pairs = {}
        for pair in el.split(";"):
            m = re.fullmatch(r"(%s)=(%s|%s)" % (TOKEN, TOKEN, QUOTED), pair)
            check(m, "Forwarded pair %r is not token=token/quoted-string (RFC 7239): %r" % (pair, value))
            v = m.group(2)
            if v.startswith('"'):
                v = re.sub(r"\\(.)", r"\1", v[1:-1])
            pairs[m.group(1).lower()] = v
        elements.append(pairs)
    return elements


@test("headers_forwarded_rfc7239", dual=True)
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    for host in ("app.example", "localhost:%d" % gh.port, "[::1]:8443"):
        got = values(echo(gh, [], host=host), "Forwarded")
        eq(len(got), 1, "Forwarded headers for Host %s (%r)" % (host, got))
        els = parse_forwarded(got[0])
        eq(len(els), 1, "Forwarded elements")
        eq(els[0].get("for"), "127.0.0.1", "Forwarded for=")
        eq(els[0].get("proto"), "https", "Forwarded proto=")
        eq(els[0].get("host"), host, "Forwarded host=")
    got = values(echo(gh, [("Forwarded", "for=192.0.2.60;proto=http")], host="app.example"), "Forwarded")
    els = parse_forwarded(", ".join(got))
    eq(len(els), 2, "Forwarded elements after the client's own (%r)" % got)
    eq(els[0].get("for"), "192.0.2.60", "the client's element, kept first")
    eq((els[1].get("for"), els[1].get("proto"), els[1].get("host")), ("127.0.0.1", "https", "app.example"),
       "gatehouse's element, appended")


@test("headers_host_unchanged", dual=True)
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    for host in ("Example.COM:8443", "app.example", "127.0.0.1:%d" % gh.port, "[::1]:443"):
        got = echo(gh, [], host=host)
        eq(values(got, "Host"), [host], "Host upstream")


@test("headers_end_to_end_preserved", dual=True)
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    sent = [("X-Multi", "a"), ("X-Other", "o"), ("X-Multi", "b"), ("Cookie", "a=1; b=2"),
            ("Authorization", "Bearer t0k3n"), ("X-Spaces", "a  b\tc"), ("Accept", "*/*"),
            ("User-Agent", "gatehouse-tests/1")]
    got = echo(gh, sent)
    eq(values(got, "X-Multi"), ["a", "b"], "repeated header, in order")
    for n, v in sent:
        if n != "X-Multi":
            eq(values(got, n), [v], "header %s" % n)
    with Conn(gh.port) as c:
        c.send(build_request("GET", "/echo?a=1&b=%20x/../y", []))
        r = c.read_response()
        check(r.body.startswith(b"GET /echo?a=1&b=%20x/../y HTTP/1.1\r\n"),
              "request target changed upstream: %r" % r.body[:80])


@test("headers_absolute_form_uses_target_authority")
def _(ctx):
    # RFC 9112 section 3.2.2: with an absolute-form target, the target's authority wins over Host.
    gh = ctx.gatehouse([ctx.backend()])
    with Conn(gh.port) as c:
        c.send(b"GET http://a.example/echo?x=1 HTTP/1.1\r\nHost: b.example\r\n\r\n")
        r = c.read_response()
    eq(r.status, 200, "status")
    lines = r.body.decode("latin-1").split("\r\n")
    eq(lines[0], "GET /echo?x=1 HTTP/1.1", "request line upstream (origin-form)")
    hosts = [ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("host:")]
    eq(hosts, ["a.example"], "Host upstream for an absolute-form request")


def set_ops_gatehouse(ctx, b):
    def conf(p):
        return """workers 1
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
site default {{
    listen 127.0.0.1:{port}
    route /set/ {{
        proxy app strip_prefix
        request_header set Host internal.svc
        request_header set x-forwarded-for 10.9.9.9
        request_header set X-Forwarded-Proto wss
        request_header set X-Forwarded-Host pub.example
        request_header set Forwarded for=unknown
    }}
    route /rm/ {{
        proxy app strip_prefix
        request_header remove X-Forwarded-For
        request_header remove Forwarded
    }}
}}
""".format(port=p[0], b=b.port)
    return ctx.gatehouse_config(conf, nports=1)


@test("headers_request_header_set_host_adds_second_copy")
def _(ctx):
    from cfgutil import PlainConn
    b = ctx.backend()
    gh = set_ops_gatehouse(ctx, b)
    spoof = b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: ftp\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n"
    with PlainConn(gh.port) as c:
        c.send(b"GET /set/echo HTTP/1.1\r\nHost: a.test\r\n" + spoof + b"\r\n")
        eq(c.read_response().status, 200, "status of GET /set/echo")
        c.send(b"GET /rm/echo HTTP/1.1\r\nHost: a.test\r\n" + spoof + b"\r\n")
        eq(c.read_response().status, 200, "status of GET /rm/echo")
    # What reached the backend, byte for byte: one Host, one of each, the route's value.
    raw = b.raw()
    eq(raw, b"GET /echo HTTP/1.1\r\nHost: internal.svc\r\nx-forwarded-for: 10.9.9.9\r\n"
            b"X-Forwarded-Proto: wss\r\nX-Forwarded-Host: pub.example\r\nForwarded: for=unknown\r\n\r\n"
            b"GET /echo HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.test\r\n\r\n",
       "request heads the backend received")
