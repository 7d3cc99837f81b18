"""HTTP/2 strictness (RFC 9113 §8.1.1, §8.2, §8.3): a malformed request is a stream error before
any byte reaches a backend, and nothing an HTTP/2 client sends can become a second request, a
second header or a framing field on the HTTP/1.1 side.

CASES is the whole list, (name, header list, body or None, expectation):
  BAD         RST_STREAM PROTOCOL_ERROR (or a 4xx answer) on that stream; the connection
              stays usable (a second request on it gets a 200) and the backend received
              NOTHING but that second request (its record, byte for byte).
  BAD_CONN    the same, but a GOAWAY PROTOCOL_ERROR / COMPRESSION_ERROR is also right.
  BAD_BODY    content-length against the DATA: the stream is refused and the backend never
              completes a request nor receives a body byte beyond the content-length given.
  OK          a valid request (the controls that make the refusals mean something).
Every case runs over TLS (ALPN h2); the header block is literal, byte for byte (h2raw).
"""
import time

import h2raw
from h2raw import PROTOCOL_ERROR, COMPRESSION_ERROR, error_name, request_headers
from harness import T, add_test, check, eq, test

BAD, BAD_CONN, BAD_BODY, OK = "bad", "bad-conn", "bad-body", "ok"


def G(*extra, method="GET", path="/echo", authority="localhost"):
    return request_headers(method, path, authority, extra=list(extra))


def P(*extra, path="/upload"):
    return request_headers("POST", path, "localhost", extra=list(extra))


def without(name, hdrs=None):
    return [(n, v) for n, v in (hdrs or G()) if n != name]


SMUGGLE = "a\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost"
INJECT = "a\r\nX-Injected: 1"

CASES = [
    # controls
    ("valid_get", G(), None, OK),
    ("valid_tab_inside_value", G(("x-a", "a\tb")), None, OK),
    ("valid_empty_value", G(("x-empty", "")), None, OK),
    ("valid_post_cl", P(("content-length", "5")), b"hello", OK),
    ("valid_post_no_cl", P(), b"hello", OK),
    ("valid_host_without_authority", without(":authority", G(("host", "localhost"))), None, OK),
    # connection-specific header fields (RFC 9113 §8.2.2)
    ("connection_header", G(("connection", "keep-alive")), None, BAD),
    ("connection_close", G(("connection", "close")), None, BAD),
    ("keep_alive_header", G(("keep-alive", "timeout=5")), None, BAD),
    ("proxy_connection_header", G(("proxy-connection", "keep-alive")), None, BAD),
    ("transfer_encoding_chunked", P(("transfer-encoding", "chunked")), b"5\r\nhello\r\n0\r\n\r\n", BAD),
    ("upgrade_h2c", G(("upgrade", "h2c")), None, BAD),
    ("te_gzip", G(("te", "gzip")), None, BAD),
    ("te_trailers_gzip", G(("te", "trailers, gzip")), None, BAD),
    # names (RFC 9113 §8.2.1): lower case, no separators, nothing HTTP/1.1 would read differently
    ("name_upper_case", G(("X-Upper", "1")), None, BAD),
    ("name_upper_host", without(":authority", G(("Host", "localhost"))), None, BAD),
    ("name_space", G(("x a", "1")), None, BAD),
    ("name_colon", G(("x-a:b", "1")), None, BAD),
    ("name_crlf_injects_header", G(("x-a\r\nx-injected", "1")), None, BAD),
    ("name_nul", G(("x-a\x00", "1")), None, BAD),
    ("name_empty", G(("", "1")), None, BAD_CONN),
    ("name_non_token", G(("x(a)", "1")), None, BAD),
    ("name_del", G(("x-\x7f", "1")), None, BAD),
    ("name_high_byte", G(("x-\xe9", "1")), None, BAD),
    # values (RFC 9113 §8.2.1)
    ("value_cr", G(("x-a", "a\rb")), None, BAD),
    ("value_lf", G(("x-a", "a\nb")), None, BAD),
    ("value_crlf_injects_header", G(("x-a", INJECT)), None, BAD),
    ("value_crlf_injects_request", G(("x-a", SMUGGLE)), None, BAD),
    ("value_nul", G(("x-a", "a\x00b")), None, BAD),
    ("value_leading_space", G(("x-a", " a")), None, BAD),
    ("value_trailing_space", G(("x-a", "a ")), None, BAD),
    ("value_leading_tab", G(("x-a", "\ta")), None, BAD),
    ("value_trailing_tab", G(("x-a", "a\t")), None, BAD),
    ("host_value_crlf", without(":authority", G(("host", "localhost\r\nX-Injected: 1"))), None, BAD),
    ("cookie_value_crlf", G(("cookie", "a=1\r\nX-Injected: 1")), None, BAD),
    # pseudo-header fields (RFC 9113 §8.3)
    ("pseudo_unknown", G((":foo", "bar")), None, BAD),
    ("pseudo_status_in_request", G((":status", "200")), None, BAD),
    ("pseudo_upper_case", [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                           (":Path", "/echo")], None, BAD),
    ("pseudo_repeated_path", G((":path", "/echo")), None, BAD),
    ("pseudo_repeated_method", [(":method", "GET")] + G(), None, BAD),
    ("pseudo_repeated_scheme", G()[:2] + [(":scheme", "http")] + G()[2:], None, BAD),
    ("pseudo_repeated_authority", G()[:3] + [(":authority", "other.example")] + G()[3:], None, BAD),
    ("pseudo_missing_method", without(":method"), None, BAD),
    ("pseudo_missing_scheme", without(":scheme"), None, BAD),
    ("pseudo_missing_path", without(":path"), None, BAD),
    ("pseudo_after_regular", [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"),
                              ("x-a", "1"), (":path", "/echo")], None, BAD),
    ("path_empty", G(path=""), None, BAD),
    ("path_no_slash", G(path="echo"), None, BAD),
    ("path_asterisk_get", G(path="*"), None, BAD),
    ("path_space", G(path="/echo x"), None, BAD),
    ("path_crlf_injects_header", G(path="/echo HTTP/1.1\r\nX-Injected: 1\r\nX-A: a"), None, BAD),
    ("path_crlf_injects_request", G(path="/echo HTTP/1.1\r\nHost: localhost\r\n\r\nGET /smuggled"), None, BAD),
    ("path_nul", G(path="/echo\x00x"), None, BAD),
    ("path_bad_percent", G(path="/echo%zz"), None, BAD),  # the HTTP/1.1 front refuses it (routing by another spelling)
    ("method_space", G(method="GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\nGET"), None, BAD),
    ("method_empty", G(method=""), None, BAD),
    ("method_non_token", G(method="GE(T"), None, BAD),
    ("authority_crlf", G(authority="localhost\r\nX-Injected: 1"), None, BAD),
    ("authority_space", G(authority="local host"), None, BAD),
    ("authority_userinfo", G(authority="user@localhost"), None, BAD),
    ("authority_slash", G(authority="localhost/evil"), None, BAD),
    ("authority_host_mismatch", G(("host", "other.example")), None, BAD),
    # a Host that gatehouse's own HTTP/1.1 front refuses (not host[:port]): a comma makes a list of hosts
    ("authority_comma", G(authority="a.example,b.example"), None, BAD),
    ("authority_sub_delims", G(authority="loc=lhost"), None, BAD),
    ("authority_percent", G(authority="loc%zzhost"), None, BAD),
    ("host_comma_no_authority", without(":authority", G(("host", "a.example,b.example"))), None, BAD),
    ("host_repeated_no_authority", without(":authority", G(("host", "localhost"), ("host", "other.example"))),
     None, BAD),
    # RFC 8441 4: :protocol only on a CONNECT (extended CONNECT itself: t_h2_websocket.py)
    ("protocol_on_get", [(":method", "GET"), (":protocol", "websocket"), (":scheme", "https"),
                         (":path", "/ws"), (":authority", "localhost"), ("sec-websocket-version", "13")],
     None, BAD),
    ("extended_connect_without_path", [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                                       (":authority", "localhost"), ("sec-websocket-version", "13")], None, BAD),
    ("connect_without_port", [(":method", "CONNECT"), (":authority", "localhost")], None, BAD),  # RFC 9110 §9.3.6
    ("connect_with_path", [(":method", "CONNECT"), (":authority", "localhost:443"), (":path", "/"),
                           (":scheme", "https")], None, BAD),
    # content-length (RFC 9113 §8.1.1)
    ("cl_not_number", P(("content-length", "abc")), b"hello", BAD),
    ("cl_negative", P(("content-length", "-1")), b"hello", BAD),
    ("cl_two_values", P(("content-length", "5"), ("content-length", "6")), b"hello", BAD),
    ("cl_list", P(("content-length", "5, 5")), b"hello", BAD),
    ("cl_headers_end_stream", P(("content-length", "5")), None, BAD),
    ("cl_more_data", P(("content-length", "5")), b"hello SMUGGLED", BAD_BODY),
    ("cl_less_data", P(("content-length", "10")), b"hello", BAD_BODY),
    ("cl_more_data_two_frames", P(("content-length", "5")), [b"hello", b"GET /smuggled HTTP/1.1\r\n\r\n"],
     BAD_BODY),
    ("cl_zero_with_data", P(("content-length", "0")), b"x", BAD_BODY),
]


def send_case(c, hdrs, body):
    """HEADERS (+ DATA frames) of one case, in one write."""
    if isinstance(body, list):
        sid = c.new_sid()
        out = c.headers_frame(sid, h2raw.literal_block(hdrs), end_stream=False)
        for i, piece in enumerate(body):
            out += h2raw.data_frame(sid, piece, end=i == len(body) - 1)
        c.send(out)
        return sid
    return c.request(hdrs, body=body)


def completed(b, req):
    """The body or response events of request event req (the events that follow it on its
    backend connection until that connection's next request); empty if it never completed."""
    evs = b.events()
    i = next(k for k, e in enumerate(evs) if e["ev"] == "request" and e["conn"] == req["conn"]
             and e["seq"] == req["seq"])
    out = []
    for e in evs[i + 1:]:
        if e.get("conn") != req["conn"]:
            continue
        if e["ev"] == "request":
            break
        if (e["ev"] == "body" and e.get("complete")) or e["ev"] == "response":
            out.append(e)
    return out


def run_case(ctx, fx, name, hdrs, body, want):
    front, b = fx
    before = len(b.requests())
    raw_before = b.raw_size()
    with front.conn() as c:
        sid = send_case(c, hdrs, body)
        o = c.response(sid)
        if want == OK:
            check(o.kind == "response" and o.status == 200, "%s: valid request got %r" % (name, o))
            got = [e for e in b.requests()[before:]]
            eq(len(got), 1, "%s: requests the backend received" % name)
            if body is not None:
                done = [e for e in b.events("body") if e["conn"] == got[0]["conn"]]
                check(done and done[-1]["len"] == len(body), "%s: the backend got body events %r" % (name, done))
            return
        if o.kind == "goaway":
            check(want == BAD_CONN and o.code in (PROTOCOL_ERROR, COMPRESSION_ERROR),
                  "%s: got %r, want a stream error (RST_STREAM PROTOCOL_ERROR or 400) on stream %d"
                  % (name, o, sid))
        else:
            # a 4xx of gatehouse's own, not one the backend gave to a request that reached it
            ok = (o.kind == "rst" and o.code == PROTOCOL_ERROR) or (o.kind == "response" and 400 <= o.status < 500
                                                                    and o.get("x-backend") is None)
            check(ok, "%s: got %r, want RST_STREAM PROTOCOL_ERROR (or a 4xx) on stream %d (frames: %s)"
                  % (name, o, sid, c.describe_frames()))
            # A stream error leaves the connection usable (RFC 9113 §5.4.2).
            s = c.get("/echo?sentinel=" + name)
            check(s.kind == "response" and s.status == 200,
                  "%s: the next request on the same connection got %r" % (name, s))
    time.sleep(0.2 * T)  # a forwarded bad request would have arrived by now (the sentinel did)
    new = [e for e in b.requests()[before:] if "sentinel" not in e["target"]]
    raw = b.raw()[raw_before:]
    for bad in (b"x-injected", b"smuggled"):
        check(bad not in raw.lower(), "%s: %r reached the backend: %r" % (name, bad, raw[:600]))
    if want == BAD_BODY:
        done = [completed(b, e) for e in new]
        check(not any(done), "%s: the backend completed the refused request: %r %r" % (name, new, done))
        return
    eq([(e["method"], e["target"]) for e in new], [], "%s: requests the backend received" % name)
    sent = [e for e in b.requests()[before:] if "sentinel" in e["target"]]
    check(len(raw) == 0 if o.kind == "goaway" else len(sent) == 1,
          "%s: bytes the backend received besides the sentinel: %r" % (name, raw[:600]))
    if o.kind != "goaway":
        # byte for byte: the only request head that arrived is the sentinel's
        check(raw.startswith(b"GET /echo?sentinel=" + name.encode() + b" HTTP/1.1\r\n") and raw.count(b" HTTP/1.1\r\n") == 1,
              "%s: the backend received %r" % (name, raw[:600]))


def fixture(ctx):
    b = ctx.backend()
    return h2raw.start_front(ctx, b), b


for _name, _hdrs, _body, _want in CASES:
    add_test("h2_strict_" + _name,
             lambda ctx, fx, n=_name, h=_hdrs, bd=_body, w=_want: run_case(ctx, fx, n, h, bd, w),
             fixture=fixture)


# ---------------------------------------------------------------- what the conversion must produce

def upstream_head(b, marker):
    """The header lines of the request whose target contains marker, as the backend received them."""
    for e in b.requests():
        if marker in e["target"]:
            return e
    return None


@test("h2_strict_cookie_crumbs_joined")
def _(ctx):
    b = ctx.backend()
    front = h2raw.start_front(ctx, b)
    with front.conn() as c:
        o = c.get("/echo?m=cookie", extra=[("cookie", "a=1"), ("x-mid", "m"), ("cookie", "b=2"), ("cookie", "c=3")])
    eq(o.status if o.kind == "response" else o, 200, "status")
    e = upstream_head(b, "m=cookie")
    cookies = [v for n, v in e["headers"] if n.lower() == "cookie"]
    eq(cookies, ["a=1; b=2; c=3"], "Cookie header(s) upstream (RFC 9113 §8.2.3: crumbs joined with '; ')")


@test("h2_strict_authority_becomes_host")
def _(ctx):
    b = ctx.backend()
    front = h2raw.start_front(ctx, b)
    with front.conn() as c:
        o = c.get("/echo?m=authority", authority="app.example:8443")
    eq(o.status if o.kind == "response" else o, 200, "status")
    e = upstream_head(b, "m=authority")
    hosts = [v for n, v in e["headers"] if n.lower() == "host"]
    eq(hosts, ["app.example:8443"], "Host upstream (from :authority, exactly once)")
    check(not any(n.startswith(":") for n, v in e["headers"]), "a pseudo-header went upstream: %r" % e["headers"])
    eq(e["version"], "HTTP/1.1", "upstream version")


@test("h2_strict_te_trailers_accepted")
def _(ctx):
    b = ctx.backend()
    front = h2raw.start_front(ctx, b)
    with front.conn() as c:
        o = c.get("/echo?m=te", extra=[("te", "trailers")])
    eq(o.status if o.kind == "response" else o, 200, "status (te: trailers is the one te allowed, RFC 9113 §8.2.2)")
    e = upstream_head(b, "m=te")
    tes = [v for n, v in e["headers"] if n.lower() == "te"]
    # te is hop-by-hop: dropped (HTTP/1.1 would need "Connection: te" to keep it meaningful).
    check(tes in ([], ["trailers"]), "te upstream: %r" % tes)
    ctx.info = "te upstream: %s" % (tes or "dropped")


@test("h2_strict_request_line_from_pseudo_headers")
def _(ctx):
    """The request line upstream is exactly :method SP :path SP HTTP/1.1, byte for byte."""
    b = ctx.backend()
    front = h2raw.start_front(ctx, b)
    with front.conn() as c:
        o = c.response(c.request(request_headers("POST", "/upload?m=line&q=%20x", "localhost",
                                                 extra=[("content-length", "5")]), body=b"hello"))
    eq(o.status if o.kind == "response" else o, 200, "status")
    raw = b.raw()
    check(raw.startswith(b"POST /upload?m=line&q=%20x HTTP/1.1\r\n"), "request line upstream: %r" % raw[:200])
    check(raw.endswith(b"\r\n\r\nhello"), "body upstream: %r" % raw[-200:])
    eq(b.requests()[0]["version"], "HTTP/1.1", "version")


def request_with_preface(ctx, plain):
    """The preface, SETTINGS and a request's HEADERS in one write, from a client that does not
    ACK the server's SETTINGS yet (RFC 9113 §3.4 lets it send requests at once): answered."""
    b = ctx.backend()
    front = h2raw.start_front(ctx, b)
    hdrs = request_headers("GET", "/small", scheme="http" if plain else "https")
    first = h2raw.frame(h2raw.HEADERS, h2raw.END_HEADERS | h2raw.END_STREAM, 1, h2raw.literal_block(hdrs))
    with h2raw.H2Conn(front.plain_port if plain else front.port, plain=plain, ack_settings=False,
                      first=first) as c:
        c.streams[1] = h2raw.Stream(1)
        c.next_sid = 3
        o = c.response(1, timeout=3 * T)
    check(o.kind == "response" and o.status == 200 and len(o.body) == 1024,
          "a request in the same segment as the preface got %r" % o)


@test("h2_request_in_preface_segment_served_tls")
def _(ctx):
    request_with_preface(ctx, False)


@test("h2_request_in_preface_segment_served_plain")
def _(ctx):
    request_with_preface(ctx, True)
