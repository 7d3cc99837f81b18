"""Request bodies: a slow client must not hold a backend connection (request_buffer, body_min_rate)."""
import time

from harness import T, Closed, Conn, Fail, check, client, eq, test


def with_config(ctx, b, extra):
    """A gatehouse (one TLS listener) in front of backend b, with `extra` global directives."""
    certs = ctx.session.certs()
    return ctx.gatehouse_config(lambda p: (
        "workers 1\nlisten 127.0.0.1:%d tls\n%s"
        "pool app {\n    server 127.0.0.1:%d\n}\n"
        "site default {\n    listen 127.0.0.1:%d\n    cert %s %s\n    route / { proxy app }\n}\n"
        % (p[0], extra, b.port, p[0], certs["ec_cert"], certs["ec_key"])), nports=1)


def head(length, path="/upload"):
    return ("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (path, length)).encode()


@test("slow_request_body_pins_backend_connection")
def _(ctx):
    # A 10 KiB body sent one byte a second: while it is incomplete (and within the
    # 64 KiB request_buffer) no server is chosen, so no backend connection is taken.
    b = ctx.backend()
    gh = ctx.gatehouse([b])
    body = b"x" * 10240
    with Conn(gh.port, timeout=10 * T) as c:
        c.send(head(len(body)))
        for i in range(3):
            c.send(body[i:i + 1])
            time.sleep(1)
        eq(b.accepts(), 0, "backend connections opened while the body is incomplete")
        c.send(body[3:])
        r = c.read_response()
        eq(r.status, 200, "status once the body is complete")
        check(r.body.split()[-1] == b"10240", "the backend got the whole body: %r" % r.body)
    eq(b.accepts(), 1, "backend connections")


@test("request_body_beyond_request_buffer_streams", dual=True)
def _(ctx):
    # Past the buffer the body streams to a server as before (a 1 MiB upload, request_buffer 16k).
    b = ctx.backend()
    gh = with_config(ctx, b, "request_buffer 16k\n")
    body = b"y" * (1 << 20)
    with client(gh.port, timeout=10 * T) as c:
        r = c.request("POST", "/upload", body=body)
        eq(r.status, 200, "status")
        check(r.body.split()[-1] == b"1048576", "the backend got the whole body: %r" % r.body)


@test("request_body_below_min_rate_is_cut")
def _(ctx):
    # body_min_rate: a body that averages below the rate once its grace period is over
    # gets 408 if nothing went upstream yet (and no backend connection was ever taken).
    b = ctx.backend()
    gh = with_config(ctx, b, "body_min_rate 1k 1s\n")
    body = b"z" * 10240
    t0 = time.time()
    with Conn(gh.port, timeout=10 * T) as c:
        c.send(head(len(body)))
        status = None
        try:
            # Three bytes at 0, 0.6 and 1.3 s, clear of the 1 s grace boundary: the third is past the
            # grace and below the rate, so it is cut; nothing more is sent (no late input at the close).
            for at in (0.0, 0.6, 1.3):
                time.sleep(max(0.0, t0 + at - time.time()))
                c.send(body[:1])
            status = c.read_response().status
        except (Closed, Fail, OSError):
            pass
        eq(status, 408, "status of a body below the minimum rate")
    check(time.time() - t0 < 5 * T, "cut soon after the grace period")
    eq(b.accepts(), 0, "backend connections")
