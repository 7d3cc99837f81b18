"""Strictness: requests that a second parser could read differently are refused (400,
or the listed status), the connection is closed, and NOT ONE byte reaches the backend.

CASES is the whole list: adding a case is one line, (name, raw request, expectation):
  {400, ...}  refused with one of these statuses, then closed; the backend saw nothing.
              A valid request ("GET /smuggled") follows the bad one in the same write,
              unless the case is marked NO_TAIL: it must not reach the backend either.
  CHUNK       a bad chunked body: the head may already have gone upstream, so the client
              gets 400 or a closed connection, and the backend never completes the body
              nor sees the request that follows.
  OK          a valid request (the controls that make the refusals mean something): 200,
              and the backend got it.
"""
import time

from harness import T, Closed, Conn, Fail, add_test, check

OK = "ok"
CHUNK = "chunk"
NO_TAIL = "no-tail"
TAIL = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
HOST = b"Host: localhost"


def R(line, *headers, body=b"", eol=b"\r\n"):
    """A raw request: request line, header lines, empty line, body."""
    return eol.join([line] + list(headers)) + eol + eol + body


def POST(*headers, body=b"", version=b"HTTP/1.1"):
    return R(b"POST /upload " + version, HOST, *headers, body=body)


def CHUNKED(body):
    return POST(b"Transfer-Encoding: chunked", body=body)


def GET(*headers, target=b"/echo"):
    return R(b"GET " + target + b" HTTP/1.1", *headers)


def HEAD_OF(total, host=b"localhost"):
    """A valid GET whose head (request line to final CRLF) is exactly total bytes."""
    base = b"GET /echo HTTP/1.1\r\nHost: " + host + b"\r\nX-Fill: "
    return base + b"f" * (total - len(base) - 4) + b"\r\n\r\n"


def LINE_OF(total):
    """A valid GET whose request line (without CRLF) is exactly total bytes."""
    base = b"GET /echo?q="
    return base + b"a" * (total - len(base) - 9) + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"


LONG_HOST = b"h" * 240 + b".example"  # 248 bytes: a long but valid DNS name
MANY = [b"X-H%d: %d" % (i, i) for i in range(99)]          # with Host: 100 header lines
TOO_MANY = [b"X-H%d: %d" % (i, i) for i in range(101)]     # with Host: 102
BIG = [b"X-Big%d: %s" % (i, b"v" * 1000) for i in range(20)]  # ~20 KiB of head
NEAR = [b"X-Near%d: %s" % (i, b"v" * 1000) for i in range(14)]  # ~14 KiB of head

CASES = [
    # valid requests: the controls
    ("valid_get", GET(HOST), OK),
    ("valid_chunked_post", CHUNKED(b"5\r\nhello\r\n0\r\n\r\n"), OK),
    ("valid_chunk_extension", CHUNKED(b"5;name=value\r\nhello\r\n0\r\n\r\n"), OK),
    ("valid_chunked_uppercase", POST(b"Transfer-Encoding: Chunked", body=b"5\r\nhello\r\n0\r\n\r\n"), OK),
    ("valid_cl_zero", POST(b"Content-Length: 0"), OK),
    ("valid_tab_in_value", GET(HOST, b"X-A: a\tb"), OK),
    ("valid_ows_around_value", GET(HOST, b"X-A: \t a \t"), OK),
    ("valid_100_headers", GET(HOST, *MANY), OK),
    ("valid_empty_value", GET(HOST, b"X-Empty:"), OK),
    ("valid_chunk_leading_zeros", CHUNKED(b"0005\r\nhello\r\n000\r\n\r\n"), OK),
    ("valid_chunked_trailer", CHUNKED(b"5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n"), OK),
    ("valid_head_14k", GET(HOST, *NEAR), OK),
    ("valid_target_8000", GET(HOST, target=b"/echo?q=" + b"a" * 7970), OK),
    ("valid_request_line_8192", LINE_OF(8192), OK),
    ("valid_head_16384", HEAD_OF(16384), OK),
    ("valid_head_16000_long_host", HEAD_OF(16000, LONG_HOST), OK),
    ("valid_absolute_form", R(b"GET http://localhost/echo HTTP/1.1", HOST), OK),
    ("valid_http10_no_host", R(b"GET /echo HTTP/1.0"), OK),
    ("valid_get_body_looks_like_request", R(b"GET /echo HTTP/1.1", HOST, b"Content-Length: %d" % len(TAIL),
                                            body=TAIL), OK),
    # Content-Length
    ("cl_te", POST(b"Content-Length: 5", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), {400}),
    ("te_cl", POST(b"Transfer-Encoding: chunked", b"Content-Length: 5", body=b"0\r\n\r\n"), {400}),
    ("cl_duplicate_same", POST(b"Content-Length: 5", b"Content-Length: 5", body=b"hello"), {400}),
    ("cl_duplicate_case", POST(b"content-length: 5", b"Content-Length: 5", body=b"hello"), {400}),
    ("cl_duplicate_diff", POST(b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"), {400}),
    ("cl_plus", POST(b"Content-Length: +5", body=b"hello"), {400}),
    ("cl_minus", POST(b"Content-Length: -5", body=b"hello"), {400}),
    ("cl_list_same", POST(b"Content-Length: 5, 5", body=b"hello"), {400}),
    ("cl_list_diff", POST(b"Content-Length: 5, 6", body=b"hello!"), {400}),
    ("cl_not_number", POST(b"Content-Length: abc", body=b"hello"), {400}),
    ("cl_hex", POST(b"Content-Length: 0x5", body=b"hello"), {400}),
    ("cl_empty", POST(b"Content-Length: ", body=b"hello"), {400}),
    ("cl_space_inside", POST(b"Content-Length: 1 0", body=b"helloworld"), {400}),
    ("cl_trailing_junk", POST(b"Content-Length: 5x", body=b"hello"), {400}),
    ("cl_decimal_point", POST(b"Content-Length: 5.0", body=b"hello"), {400}),
    ("cl_overflow_2p64", POST(b"Content-Length: 18446744073709551621", body=b"hello"), {400, 413}),
    ("cl_overflow_huge", POST(b"Content-Length: 99999999999999999999999999", body=b"hello"), {400, 413}),
    # Transfer-Encoding
    ("te_gzip", POST(b"Transfer-Encoding: gzip", body=b"0\r\n\r\n"), {400}),
    ("te_identity", POST(b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), {400}),
    ("te_chunked_identity", POST(b"Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"), {400}),
    ("te_gzip_chunked", POST(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), {400, 501}),
    ("te_chunked_twice", POST(b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), {400}),
    ("te_two_headers", POST(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), {400}),
    ("te_xchunked", POST(b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), {400, 501}),
    ("te_empty", POST(b"Transfer-Encoding: ", body=b"0\r\n\r\n"), {400, 501}),
    ("te_http10", POST(b"Transfer-Encoding: chunked", body=b"0\r\n\r\n", version=b"HTTP/1.0"), {400}),
    ("te_vtab", POST(b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"), {400}),
    ("smuggle_cl_te_classic", POST(b"Content-Length: 13", b"Transfer-Encoding: chunked",
                                   body=b"0\r\n\r\nSMUGGLED"), {400}),
    ("smuggle_te_space_colon", POST(b"Content-Length: 4", b"Transfer-Encoding : chunked", body=b"5c\r\n"), {400}),
    # header syntax
    ("ws_before_colon", GET(HOST, b"X-A : 1"), {400}),
    ("tab_before_colon", GET(HOST, b"X-A\t: 1"), {400}),
    ("obs_fold", GET(HOST, b"X-A: 1", b" 2"), {400}),
    ("obs_fold_tab", GET(HOST, b"X-A: 1", b"\t2"), {400}),
    ("ws_first_header_line", GET(b" " + HOST), {400}),
    ("bare_lf", R(b"GET /echo HTTP/1.1", HOST, eol=b"\n"), {400}),
    ("bare_lf_one_header", GET(HOST + b"\nX-A: 1"), {400}),
    ("bare_lf_request_line", b"GET /echo HTTP/1.1\nHost: localhost\r\n\r\n", {400}),
    ("bare_lf_end", b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\n", {400}),
    ("bare_cr_between_headers", GET(HOST, b"X-A: 1\rX-B: 2"), {400}),
    ("bare_cr_in_value", GET(HOST, b"X-A: a\rb"), {400}),
    ("bare_cr_request_line", b"GET /echo HTTP/1.1\rHost: localhost\r\n\r\n", {400}),
    ("nul_in_value", GET(HOST, b"X-A: a\x00b"), {400}),
    ("ctl_in_value", GET(HOST, b"X-A: a\x01b"), {400}),
    ("esc_in_value", GET(HOST, b"X-A: a\x1bb"), {400}),
    ("del_in_value", GET(HOST, b"X-A: a\x7fb"), {400}),
    ("ctl_in_name", GET(HOST, b"X\x01A: 1"), {400}),
    ("space_in_name", GET(HOST, b"X A: 1"), {400}),
    ("nonascii_in_name", GET(HOST, b"X-\xc3\xa9: 1"), {400}),
    ("empty_name", GET(HOST, b": 1"), {400}),
    ("no_colon", GET(HOST, b"X-A 1"), {400}),
    # chunked bodies
    ("chunk_size_nonhex", CHUNKED(b"zz\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_size_overflow", CHUNKED(b"FFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_size_overflow_long", CHUNKED(b"1" + b"0" * 30 + b"\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_size_negative", CHUNKED(b"-5\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_size_0x", CHUNKED(b"0x5\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_size_empty", CHUNKED(b"\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_missing_crlf", CHUNKED(b"5\r\nhelloXX0\r\n\r\n"), CHUNK),
    ("chunk_data_longer", CHUNKED(b"5\r\nhello world\r\n0\r\n\r\n"), CHUNK),
    ("chunk_bare_lf", CHUNKED(b"5\nhello\n0\n\n"), CHUNK),
    ("chunk_bare_cr", CHUNKED(b"5\rhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_ext_ctl", CHUNKED(b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), CHUNK),
    ("chunk_trailer_bare_lf", CHUNKED(b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n"), CHUNK),
    # request line
    ("http09", b"GET /\r\n", {400}, NO_TAIL),
    ("http09_blank_line", b"GET /\r\n\r\n", {400}),
    ("method_bad_char", GET(HOST).replace(b"GET", b"G(T", 1), {400}),
    ("method_ctl", GET(HOST).replace(b"GET", b"GE\x01T", 1), {400}),
    ("method_empty", R(b" /echo HTTP/1.1", HOST), {400}),
    ("double_space", R(b"GET  /echo HTTP/1.1", HOST), {400}),
    ("tab_separator", R(b"GET\t/echo HTTP/1.1", HOST), {400}),
    ("trailing_space", R(b"GET /echo HTTP/1.1 ", HOST), {400}),
    ("leading_space", R(b" GET /echo HTTP/1.1", HOST), {400}),
    ("target_space", R(b"GET /a b HTTP/1.1", HOST), {400}),
    ("target_ctl", R(b"GET /a\x01b HTTP/1.1", HOST), {400}),
    ("target_del", R(b"GET /a\x7fb HTTP/1.1", HOST), {400}),
    ("target_hash", R(b"GET /a#frag HTTP/1.1", HOST), {400}),
    ("target_nonascii", R(b"GET /caf\xc3\xa9 HTTP/1.1", HOST), {400}),
    ("target_relative", R(b"GET echo HTTP/1.1", HOST), {400}),
    ("version_lowercase", R(b"GET /echo http/1.1", HOST), {400}),
    ("version_garbage", R(b"GET /echo HTTP/1.x", HOST), {400}),
    ("version_missing", R(b"GET /echo", HOST), {400}),
    ("version_http2", R(b"GET /echo HTTP/2.0", HOST), {505}),
    ("version_http3", R(b"GET /echo HTTP/3.0", HOST), {505}),
    ("request_line_too_long", R(b"GET /" + b"a" * 9000 + b" HTTP/1.1", HOST), {414}, NO_TAIL),
    # Host
    ("missing_host", GET(), {400}),
    ("two_hosts", GET(HOST, b"Host: other.example"), {400}),
    ("two_hosts_same", GET(HOST, HOST), {400}),
    ("host_space", GET(b"Host: exa mple.com"), {400}),
    ("host_userinfo", GET(b"Host: user@example.com"), {400}),
    ("host_slash", GET(b"Host: example.com/x"), {400}),
    ("host_bad_port", GET(b"Host: example.com:abc"), {400}),
    ("host_two_colons", GET(b"Host: a.example:1:2"), {400}),
    ("host_open_bracket", GET(b"Host: [::1"), {400}),
    ("host_comma", GET(b"Host: a.example, b.example"), {400}),
    ("host_absolute_mismatch_ws", R(b"GET http://a.example/echo HTTP/1.1", b"Host: a.example x"), {400}),
    # sizes
    ("headers_too_big", GET(HOST, *BIG), {431}, NO_TAIL),
    ("one_header_too_big", GET(HOST, b"X-Huge: " + b"v" * 17000), {431}, NO_TAIL),
    ("too_many_headers", GET(HOST, *TOO_MANY), {431}),
    ("headers_101", GET(HOST, *MANY, b"X-One-More: 1"), {431}),
    ("head_16385", HEAD_OF(16385), {431}, NO_TAIL),
    ("request_line_8193", LINE_OF(8193), {414}, NO_TAIL),
]


def strict_fixture(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    return gh, b


def send_all(c, raw):
    try:
        c.send(raw)
    except OSError:
        pass  # gatehouse may close before reading everything; its answer may still be there


def run_ok(ctx, gh, b, raw):
    n0 = len(b.requests())
    with Conn(gh.port) as c:
        send_all(c, raw)
        r = c.read_response()
        check(r.status == 200, "a valid request was refused: status %d %r" % (r.status, r.body[:100]))
    check(len(b.requests()) == n0 + 1, "the backend did not get the valid request")
    check(not [e for e in b.requests() if e["target"] == "/smuggled"], "a request in a body was forwarded as a request")


def run_reject(ctx, gh, b, raw, statuses, tail):
    size0 = b.raw_size()
    with Conn(gh.port) as c:
        send_all(c, raw + (TAIL if tail else b""))
        try:
            r = c.read_response()
        except Closed as e:
            raise Fail("connection closed without a %s response (%s)" % ("/".join(map(str, sorted(statuses))), e))
        check(r.status in statuses, "status %d, want %s (body %r)" % (r.status, sorted(statuses), r.body[:100]))
        check(len(r.body) <= 512, "error body of %d bytes" % len(r.body))
        closed, extra = c.wait_closed(3 * T)
        check(closed, "connection still open %.0fs after the %d" % (3 * T, r.status))
        check(not extra, "more bytes after the %d: %r" % (r.status, extra[:200]))
    time.sleep(0.1)
    got = b.raw()[size0:]
    check(not got, "the backend received %d bytes of it: %r" % (len(got), got[:300]))


def run_chunk(ctx, gh, b, raw):
    body0 = len(b.events("body"))
    req0 = len(b.requests())
    with Conn(gh.port) as c:
        send_all(c, raw + TAIL)
        try:
            r = c.read_response()
            check(r.status == 400, "status %d for a bad chunked body, want 400 or a closed connection (body %r)"
                  % (r.status, r.body[:100]))
        except Closed:
            pass
        closed, extra = c.wait_closed(3 * T)
        check(closed, "connection still open after a bad chunked body")
        check(not extra, "more bytes after the 400: %r" % extra[:200])
    time.sleep(0.2)
    new = b.requests()[req0:]
    check(not [e for e in new if e["target"] == "/smuggled"], "the request after the bad body reached the backend")
    check(len(new) <= 1, "the backend got %d requests: %r" % (len(new), [e["target"] for e in new]))
    done = b.events("body")[body0:]
    check(not done, "the backend received a complete body of %d bytes from a malformed chunked body"
          % (done[0]["len"] if done else 0))


def make(name, raw, expect, flags):
    def fn(ctx, fx):
        gh, b = fx
        if expect == OK:
            run_ok(ctx, gh, b, raw)
        elif expect == CHUNK:
            run_chunk(ctx, gh, b, raw)
        else:
            run_reject(ctx, gh, b, raw, expect, NO_TAIL not in flags)
    return fn


for case in CASES:
    add_test("strict_" + case[0], make(case[0], case[1], case[2], case[3:]), fixture=strict_fixture, timeout=20)
