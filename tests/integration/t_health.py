"""Health from a configuration file: active HTTP and TCP checks (down, up again, status range,
probed by one process for all workers), 503 at once when no server is healthy, zero failed
requests under load across a backend kill, and passive ejection (502-504, timeouts and connect
errors by default; which statuses count is configurable)."""
import collections
import os
import re
import signal
import socket
import threading
import time

import cfgutil
from harness import T, Conn, Fail, check, eq, error_body_ok, test, wait_until
from cfgutil import (FakeHosts, backends, count_requests, dual_backends, ids, kill_backend, log_lines,
                     restart_backend, wait_log)


def health_config(ctx, servers, health, workers=1, balance="round_robin", extra_pool="", timeouts=""):
    """servers: backends or ports. One TLS listener, pool app with `health`, site default -> app."""
    c = ctx.session.certs()

    def conf(p):
        lines = ["workers %d" % workers, "listen 127.0.0.1:%d tls" % p[0]]
        if timeouts:
            lines.append("timeouts { %s }" % timeouts)
        lines.append("pool app {")
        for s in servers:
            lines.append("    server 127.0.0.1:%d" % (s if isinstance(s, int) else s.port))
        lines.append("    balance " + balance)
        if health:
            lines.append("    " + health)
        if extra_pool:
            lines.append("    " + extra_pool)
        lines += ["}", "site default {", "    cert %s %s" % (c["ec_cert"], c["ec_key"]),
                  "    route / { proxy app }", "}", ""]
        return "\n".join(lines)
    return ctx.gatehouse_config(conf, nports=1)


def down_re(port):
    return r"server 127\.0\.0\.1:%d of pool app is down" % port


def up_re(port):
    return r"server 127\.0\.0\.1:%d of pool app is up" % port


def connect_fail_re(port):
    return r"connect to 127\.0\.0\.1:%d failed" % port


INTERVAL, TIMEOUT, RISE, FALL = 0.3, 0.2, 2, 2
HTTP_CHECK = "health http GET /healthz interval=300ms timeout=200ms rise=2 fall=2"
SLACK = 1.0


@test("health_active_down_and_up")
def _(ctx):
    b1, b2 = backends(ctx, ["b1", "b2"])
    gh = health_config(ctx, [b1, b2], HTTP_CHECK, workers=2)
    seen, st = ids(gh.port, 10)
    eq(dict(seen), {"b1": 5, "b2": 5}, "round robin with both up")
    kill_backend(b2)
    limit = (INTERVAL * FALL + TIMEOUT + SLACK) * T
    dt = wait_log(gh, down_re(b2.port), limit)
    check(dt is not None, "b2 killed: no 'is down' within %.1fs (interval 300ms x fall 2 + timeout 200ms + slack)"
          % limit)
    # Marked down: the proxy does not even try it any more.
    tries = len(log_lines(gh, connect_fail_re(b2.port)))
    statuses = []
    for i in range(10):
        with Conn(gh.port) as c:
            statuses.append(c.request("GET", "/id").status)
    s2, st2 = ids(gh.port, 10)
    statuses += st2
    eq(statuses, [200] * 20, "statuses once b2 is marked down")
    eq(len(log_lines(gh, connect_fail_re(b2.port))), tries,
       "connect attempts to b2 after it was marked down (it must not be tried)")
    # Restarted: traffic again within interval x rise + slack.
    ups = len(log_lines(gh, up_re(b2.port)))
    restart_backend(ctx, b2, "b2-again")
    t_up = time.monotonic()
    limit = (INTERVAL * RISE + TIMEOUT + SLACK) * T
    check(wait_log(gh, up_re(b2.port), limit, after=ups) is not None,
          "b2 restarted: no 'is up' within %.1fs (interval 300ms x rise 2 + slack)" % limit)
    seen = collections.Counter()
    deadline = time.monotonic() + 2 * T
    while seen["b2-again"] == 0 and time.monotonic() < deadline:
        s, st = ids(gh.port, 4)
        eq(st, [200] * 4, "statuses after b2 came back")
        seen.update(s)
    check(seen["b2-again"] > 0, "the restarted b2 got no traffic within 2s of 'is up': %s" % dict(seen))
    took = time.monotonic() - t_up
    s, st = ids(gh.port, 10)
    check(s["b2-again"] >= 4, "round robin once b2 is back: %s" % dict(s))
    ctx.info = "down %.2fs after the kill, traffic %.2fs after the restart" % (dt, took)


@test("health_http_status_range")
def _(ctx):
    # b1 is alive but its check answers 503: it is down for the proxy, and gets no request at all.
    b1, b2 = backends(ctx, ["b1", "b2"])
    gh = health_config(ctx, [b1, b2], "health http GET /fail?on=b1&status=503 interval=250ms timeout=200ms "
                       "rise=1 fall=1 status=200-299")
    check(wait_log(gh, down_re(b1.port), (0.25 + 0.2 + SLACK) * T) is not None,
          "no 'is down' for b1 whose check answers 503")
    check(any("503" in ln for ln in log_lines(gh, down_re(b1.port))), "the 'is down' line does not give the status: %s"
          % log_lines(gh, down_re(b1.port)))
    n1 = count_requests(b1, "/id")
    seen, st = ids(gh.port, 20)
    eq(st, [200] * 20, "statuses")
    eq(dict(seen), {"b2": 20}, "servers that answered while b1's check fails")
    eq(count_requests(b1, "/id"), n1, "client requests that reached b1 (marked down by its check)")
    probes = [e for e in b1.requests() if e["target"].startswith("/fail")]
    check(probes and probes[-1]["method"] == "GET", "b1 saw no GET probe: %r" % probes[-1:])
    hosts = [v for n, v in probes[-1]["headers"] if n.lower() == "host"]
    eq(hosts, ["127.0.0.1:%d" % b1.port], "Host header of the probe (default: the server's host:port)")


def hanging_listener():
    """A listener whose accept queue is full: SYNs to it are dropped, so a connect() hangs."""
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
    return port, [ls] + fillers


@test("health_all_down_503_at_once")
def _(ctx):
    hang, socks = hanging_listener()
    refused = ctx.dead_port()
    try:
        gh = health_config(ctx, [hang, refused], "health tcp interval=250ms timeout=150ms rise=1 fall=1",
                           timeouts="connect 5s")
        for p in (hang, refused):
            check(wait_log(gh, down_re(p), (0.25 + 0.15 + SLACK) * T) is not None,
                  "no 'is down' for 127.0.0.1:%d within %.1fs" % (p, (0.25 + 0.15 + SLACK) * T))
        tries = len(log_lines(gh, r"connect to 127\.0\.0\.1:(%d|%d) failed" % (hang, refused)))
        with Conn(gh.port, timeout=15 * T) as c:
            for i in range(3):
                t0 = time.monotonic()
                r = c.request("GET", "/id")
                dt = time.monotonic() - t0
                error_body_ok(r, 503, [hang, refused])
                check(dt < 0.5 * T, "503 after %.2fs with every server down (connect timeout 5s): not at once" % dt)
                if (r.get("connection") or "").lower() == "close":
                    c.close()
                    c = Conn(gh.port, timeout=15 * T)
        eq(len(log_lines(gh, r"connect to 127\.0\.0\.1:(%d|%d) failed" % (hang, refused))), tries,
           "connect attempts to servers marked down")
    finally:
        for s in socks:
            s.close()


@test("health_zero_failures_across_kill")
def _(ctx):
    b1, b2 = backends(ctx, ["b1", "b2"])
    gh = health_config(ctx, [b1, b2], HTTP_CHECK, workers=2)
    stop = threading.Event()
    results = {"ok": 0, "fail": [], "by": collections.Counter()}
    lock = threading.Lock()

    def record(ok, what, body=b""):
        with lock:
            if ok:
                results["ok"] += 1
                results["by"][body.decode(errors="replace")] += 1
            else:
                results["fail"].append(what)

    def loop(keepalive):
        c = None
        n = 0
        t_end = time.monotonic() + 3.0 * T
        while not stop.is_set() and time.monotonic() < t_end and n < 3000:
            n += 1
            try:
                if c is None:
                    c = Conn(gh.port)
                r = c.request("GET", "/id?n=%d" % n)
                record(r.status == 200, "status %d" % r.status, r.body)
                if not keepalive or (r.get("connection") or "").lower() == "close" or n % 20 == 0:
                    c.close()
                    c = None
            except Exception as e:  # noqa: BLE001
                record(False, "%s: %s" % (type(e).__name__, e))
                if c is not None:
                    c.close()
                c = None
        if c is not None:
            c.close()

    ts = [threading.Thread(target=loop, args=(ka,)) for ka in (True, False)]
    for t in ts:
        t.start()
    time.sleep(1.0 * T)
    kill_backend(b2)
    for t in ts:
        t.join(10 * T)
    stop.set()
    fails = results["fail"]
    check(not fails, "%d of %d GETs failed across the kill of one of two backends: %s"
          % (len(fails), len(fails) + results["ok"], fails[:5]))
    check(results["ok"] >= 50, "only %d requests in 3s (the loop did not run)" % results["ok"])
    check(results["by"]["b2"] > 0 and results["by"]["b1"] > results["by"]["b2"],
          "distribution %s (b2 served before the kill, b1 after)" % dict(results["by"]))
    check(wait_log(gh, down_re(b2.port), 2 * T) is not None, "b2 was never marked down")
    ctx.info = "%d GETs, 0 failed, %s" % (results["ok"], dict(results["by"]))


@test("health_probes_from_one_process")
def _(ctx):
    b = ctx.backend("b1")
    gh = health_config(ctx, [b], "health http HEAD /healthz interval=250ms timeout=200ms host=probe.test", workers=3)
    eq(len(gh.workers()), 4, "child processes (3 workers and the prober)")
    time.sleep(0.4)
    n0 = count_requests(b, "/healthz")
    time.sleep(1.5)
    n = count_requests(b, "/healthz") - n0
    # One prober: 1.5s / 250ms = 6 probes (between 4 and 8); one per worker would be 18.
    check(4 <= n <= 8, "%d health probes in 1.5s with interval 250ms and 3 workers (want about 6, not 18)" % n)
    last = [e for e in b.requests() if e["target"] == "/healthz"][-1]
    eq(last["method"], "HEAD", "method of the probe (health http HEAD)")
    eq([v for k, v in last["headers"] if k.lower() == "host"], ["probe.test"], "Host of the probe (host=probe.test)")
    ctx.info = "%d probes in 1.5s" % n


@test("health_http_timeout")
def _(ctx):
    # A server that accepts but answers its check too late is down; with no other server, 503 at once.
    b = ctx.backend("b1")
    gh = health_config(ctx, [b], "health http GET /slow?ms=1500 interval=300ms timeout=200ms rise=1 fall=1")
    check(wait_log(gh, down_re(b.port), (0.3 + 0.2 + SLACK) * T) is not None,
          "no 'is down' for a server whose check answers after 1.5s (timeout 200ms)")
    check(any("200 ms" in ln for ln in log_lines(gh, down_re(b.port))),
          "the 'is down' line does not say the check timed out: %s" % log_lines(gh, down_re(b.port)))
    n = count_requests(b, "/id")
    with Conn(gh.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/id")
        dt = time.monotonic() - t0
    error_body_ok(r, 503, [b])
    check(dt < 0.5 * T, "503 after %.2fs" % dt)
    eq(count_requests(b, "/id"), n, "client requests that reached the server marked down")


@test("health_passive_ejection")
def _(ctx):
    b1, b2 = backends(ctx, ["b1", "b2"])
    eject = 2.0 * T
    gh = health_config(ctx, [b1, b2], None, workers=2,
                       extra_pool="passive fails=3 window=%ds eject=%dms" % (int(5 * T), int(eject * 1000)))
    statuses = collections.Counter()
    t0 = time.monotonic()
    for i in range(30):
        with Conn(gh.port) as c:
            r = c.request("GET", "/fail?on=b1&status=502&i=%d" % i)
            statuses[r.status] += 1
    t1 = time.monotonic()  # the ejection began before this, at the third failure
    dt = t1 - t0
    check(dt < eject * 0.9, "30 requests took %.1fs, longer than the ejection (test too slow to judge)" % dt)
    # b1 answers 502 to the first 3 requests it gets, is ejected, and gets nothing more for the eject period.
    eq(count_requests(b1, "/fail"), 3, "requests b1 got (502 each; ejected after 3 in a row)")
    eq(dict(statuses), {502: 3, 200: 27}, "statuses the client saw")
    check(log_lines(gh, r"server 127\.0\.0\.1:%d of pool app is ejected" % b1.port),
          "no 'is ejected' line for b1")
    # After the ejection period it gets traffic again (and, still failing, is ejected again after 3).
    time.sleep(max(0, eject - (time.monotonic() - t1)) + 0.3)
    seen, st = ids(gh.port, 10, path="/fail?on=nobody")
    check(seen["ok b1"] >= 3, "b1 got no traffic after its ejection ended: %s" % dict(seen))
    ctx.info = "%s" % dict(statuses)


def ejected_re(port):
    return r"server 127\.0\.0\.1:%d of pool app is ejected" % port


def get_many(port, path, n):
    """n GETs of path, a new connection each (the balancer sees each one); returns a Counter of statuses."""
    statuses = collections.Counter()
    for i in range(n):
        with Conn(port) as c:
            statuses[c.request("GET", "%s&i=%d" % (path, i)).status] += 1
    return statuses


class PaddedBackend(cfgutil.RawBackend):
    """A raw backend: to `/pad?n=N&s=STATUS` it answers at once, before any body, with STATUS and
    X-Pad headers of N bytes in all (head size under the test's control), then drains and closes."""

    def __init__(self, ctx):
        super().__init__(ctx, self.padded, once=True)  # one answer a connection: none is pooled

    @staticmethod
    def head(n, status):
        pads = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * min(4000, n - i)) for i in range(0, n, 4000))
        return b"HTTP/1.1 %d Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n%s\r\n" % (status, pads)

    def padded(self, head):
        target = head.split(b" ", 2)[1].decode()
        q = dict(p.split("=") for p in target.split("?", 1)[1].split("&"))
        return self.head(int(q["n"]), int(q["s"])) + b"body\n"


def expect_continue_exchange(port, target):
    """POST with Expect: 100-continue; the body follows 0.3s later (a client that waited for the 100).
    Returns (interim heads, final head, final body)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * T)
    try:
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
                  % target.encode())
        time.sleep(0.3)
        s.sendall(b"data")
        buf, interim = b"", []
        while True:
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise Fail("closed before a whole head: %r" % buf[:200])
                buf += d
            head, buf = buf.split(b"\r\n\r\n", 1)
            if head.startswith(b"HTTP/1.1 1"):
                interim.append(head)
                continue
            m = re.search(rb"(?im)^content-length: *(\d+)", head)
            want = int(m.group(1)) if m else 0
            while len(buf) < want:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
            return interim, head + b"\r\n\r\n", buf[:want]
    finally:
        s.close()


def continue_held_gatehouse(ctx):
    """gatehouse in front of a PaddedBackend with passive fails=2, the 100 Continue held by faults.c,
    and the padding that makes the client's copy of a 503 head 10 bytes short of a whole 16 KiB buffer:
    it fits only once the 25 bytes of the 100 are out. Returns (gh, backend, padding)."""
    be = PaddedBackend(ctx)
    so = cfgutil.preload_library(ctx.session, "faults")
    env = dict(cfgutil.preload_env(so), GH_FAIL_CONTINUE="1")

    def conf(p):
        # request_buffer off: the request goes upstream before its body, so the answer can come first
        return "\n".join(["workers 1", "request_buffer off", "listen 127.0.0.1:%d" % p[0], "pool app {",
                          "    server 127.0.0.1:%d" % be.port, "    passive fails=2 window=60s eject=60s", "}",
                          "site default {", "    route / {", "        proxy app",
                          # 200 bytes more towards the client: a head that fits upstream can fill its buffer
                          "        response_header set X-Added %s" % ("a" * 200), "    }", "}", ""])
    gh = ctx.gatehouse_config(conf, nports=1, env=env)
    # What gatehouse adds to or takes from this head on its way to the client (a 200: not a failure).
    n0 = 1000
    interim, head, body = expect_continue_exchange(gh.port, "/pad?n=%d&s=200" % n0)
    eq(len(interim), 1, "100 Continue heads before the calibration answer")
    check(log_lines(gh, r"faults: 100 held"), "the fault library did not hold the 100 Continue")
    delta = len(head) - len(PaddedBackend.head(n0, 200))
    n = max(k for k in range(n0, 16384) if len(PaddedBackend.head(k, 503)) <= 16384 - 10 - delta)
    check(len(PaddedBackend.head(n, 503)) + 5 <= 16384, "test bug: the head (%d) does not fit the upstream buffer"
          % len(PaddedBackend.head(n, 503)))
    ctx.note("padding %d: backend head %d bytes, %+d to the client" % (n, len(PaddedBackend.head(n, 503)), delta))
    return gh, be, n


@test("continue_queued_response_head_not_parsed_again")
def _(ctx):
    # A response head with no room behind a queued 100 Continue must wait for the 100 to drain and
    # then be parsed again and sent whole (not a 502, not a lost or cut head).
    gh, be, n = continue_held_gatehouse(ctx)
    interim, head, body = expect_continue_exchange(gh.port, "/pad?n=%d&s=503" % n)
    eq([h.split(b"\r\n")[0] for h in interim], [b"HTTP/1.1 100 Continue"], "interim heads")
    check(head.startswith(b"HTTP/1.1 503 "), "the answer: %r" % head[:60])
    eq(head.count(b"p"), n, "padding bytes in the head the client got")
    eq(len(head), 16384 - 10, "the client's head")
    eq(body, b"body\n", "the body")
    ctx.info = "head %d bytes behind a held 100 Continue" % len(head)


@test("continue_queued_5xx_counted_twice_for_ejection")
def _(ctx):
    # A 5xx whose head could not be handed to the client while a 100 Continue was still queued (no
    # room behind it: send_head's GH_AGAIN) was parsed again later, and each parse reported it to
    # passive ejection: one response counted several times, so `fails=2` ejected after one. The 100
    # stays queued through tests/integration/faults.c (its send() gets EAGAIN, a full socket, until
    # the client sends its body); a client that only does not read cannot hold 25 bytes back.
    gh, be, n = continue_held_gatehouse(ctx)
    interim, head, body = expect_continue_exchange(gh.port, "/pad?n=%d&s=503" % n)
    check(head.startswith(b"HTTP/1.1 503 ") and len(head) == 16384 - 10, "the answer: %r" % head[:60])
    time.sleep(0.2)
    eq(log_lines(gh, ejected_re(be.port)), [], "'is ejected' lines after one 503 with passive fails=2")
    # A second one: now two failures in a row, so the server is ejected (each counted once).
    expect_continue_exchange(gh.port, "/pad?n=%d&s=503" % n)
    check(wait_until(lambda: log_lines(gh, ejected_re(be.port)), 3 * T), "no 'is ejected' line after two 503s")


@test("passive_ejection_by_client_requesting_500")
def _(ctx):
    # A client that asks again and again for a URL that answers 500 must not eject the server: only
    # 502-504 (and connect errors, timeouts) count by default.
    b1, b2 = backends(ctx, ["b1", "b2"])
    # One worker: one round-robin state, so that b1 gets exactly every second request.
    gh = health_config(ctx, [b1, b2], None, workers=1,
                       extra_pool="passive fails=3 window=%ds eject=%ds" % (int(10 * T), int(10 * T)))
    st = get_many(gh.port, "/fail?on=b1&status=500", 30)
    eq(dict(st), {500: 15, 200: 15}, "statuses of 30 requests, round robin over b1 (500) and b2")
    eq(count_requests(b1, "/fail"), 15, "requests b1 got (a 500 does not eject it)")
    eq(log_lines(gh, ejected_re(b1.port)), [], "'is ejected' lines for b1 after 15 answers of 500")
    # 502 counts by default: three in a row eject it.
    n1 = count_requests(b1, "/fail")
    st = get_many(gh.port, "/fail?on=b1&status=502", 20)
    eq(count_requests(b1, "/fail") - n1, 3, "requests b1 got while answering 502 (ejected after 3 in a row)")
    eq(dict(st), {502: 3, 200: 17}, "statuses once b1 answers 502")
    check(log_lines(gh, ejected_re(b1.port)), "no 'is ejected' line for b1 after three 502 in a row")


@test("passive_status_list_is_configurable")
def _(ctx):
    # status=500,429 counts these (and only these: 502 no longer does).
    b1, b2 = backends(ctx, ["b1", "b2"])
    gh = health_config(ctx, [b1, b2], None, workers=1,
                       extra_pool="passive fails=3 window=%ds eject=%ds status=500,429" % (int(10 * T), int(10 * T)))
    st = get_many(gh.port, "/fail?on=b1&status=502", 10)
    eq(dict(st), {502: 5, 200: 5}, "statuses with 502 not in the list")
    eq(log_lines(gh, ejected_re(b1.port)), [], "'is ejected' lines for b1 after 502s that the list does not hold")
    n1 = count_requests(b1, "/fail")
    st = get_many(gh.port, "/fail?on=b1&status=429", 20)
    eq(count_requests(b1, "/fail") - n1, 3, "requests b1 got while answering 429 (in the list: ejected after 3)")
    eq(dict(st), {429: 3, 200: 17}, "statuses once b1 answers 429")


@test("response_timeout_not_counted_by_passive_ejection")
def _(ctx):
    # A server that accepts the request and never answers within `timeout response` fails as surely as a
    # 504 from it would: three 504s from the response timeout eject it, the next request is a 503 at once.
    b = ctx.backend("b1")
    gh = health_config(ctx, [b], None, timeouts="response 300ms",
                       extra_pool="passive fails=3 window=%ds eject=%ds" % (int(10 * T), int(10 * T)))
    for i in range(3):
        with Conn(gh.port) as c:
            r = c.request("GET", "/slow?ms=2000&i=%d" % i)
        eq(r.status, 504, "status of request %d to a server slower than the response timeout" % i)
    check(wait_log(gh, ejected_re(b.port), 2 * T) is not None,
          "no 'is ejected' line after 3 response timeouts in a row")
    n = count_requests(b, "/slow")
    with Conn(gh.port) as c:
        t0 = time.monotonic()
        r = c.request("GET", "/slow?ms=2000&i=3")
        dt = time.monotonic() - t0
    error_body_ok(r, 503, [b])
    check(dt < 0.25 * T, "503 after %.2fs" % dt)
    eq(count_requests(b, "/slow"), n, "requests that reached the ejected server")


# ---------------------------------------------------------------- servers given by name
# `app.test` resolves through tests/integration/fake_resolver.c (LD_PRELOAD into gatehouse) to what
# the test writes in a hosts file: 127.0.0.1 (backend b4) and/or ::1 (backend b6), on one port.
V4, V6 = "127.0.0.1 app.test", "::1 app.test"


def named_config(ctx, hosts, port, health=None, workers=1, resolve="resolve_interval 200ms"):
    c = ctx.session.certs()

    def conf(p):
        lines = ["workers %d" % workers, resolve, "listen 127.0.0.1:%d tls" % p[0], "pool app {",
                 "    server app.test:%d" % port]
        if health:
            lines.append("    " + health)
        lines += ["}", "site default {", "    cert %s %s" % (c["ec_cert"], c["ec_key"]),
                  "    route / { proxy app }", "}", ""]
        return "\n".join(lines)
    return ctx.gatehouse_config(conf, nports=1, env=hosts.env())


def named_down_re(port, ip):
    return r"server app\.test:%d \(%s\) of pool app is down" % (port, re.escape(ip))


def named_up_re(port, ip):
    return r"server app\.test:%d \(%s\) of pool app is up" % (port, re.escape(ip))


def by_backend(gh, n):
    """n GETs of /id, a connection each; returns (Counter of bodies, Counter of statuses)."""
    seen, statuses = collections.Counter(), collections.Counter()
    for i in range(n):
        with Conn(gh.port) as c:
            r = c.request("GET", "/id")
        statuses[r.status] += 1
        seen[r.body.decode(errors="replace") if r.status == 200 else "-"] += 1
    return seen, statuses


@test("named_server_uses_only_first_address")
def _(ctx):
    # Every address a name resolves to is a server of the pool (docs/config.md): app.test has two.
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4, V6])
    gh = named_config(ctx, hosts, port)
    seen, st = by_backend(gh, 20)
    eq(dict(st), {200: 20}, "statuses")
    eq(dict(seen), {"b4": 10, "b6": 10}, "round robin over the two addresses of app.test (127.0.0.1 and ::1)")


@test("health_check_probes_only_first_address_of_name")
def _(ctx):
    # An active check probes each address of a name; a dead one is down alone, the other keeps serving.
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4, V6])
    gh = named_config(ctx, hosts, port, health=HTTP_CHECK, resolve="")
    limit = (INTERVAL + TIMEOUT + SLACK) * T
    check(wait_until(lambda: count_requests(b4, "/healthz") >= 1 and count_requests(b6, "/healthz") >= 1, limit),
          "both addresses were not probed within %.1fs: b4 %d, b6 %d probes"
          % (limit, count_requests(b4, "/healthz"), count_requests(b6, "/healthz")))
    kill_backend(b6)
    limit = (INTERVAL * FALL + TIMEOUT + SLACK) * T
    check(wait_log(gh, named_down_re(port, "::1"), limit) is not None,
          "b6 (::1) killed: no 'server app.test:%d (::1) of pool app is down' within %.1fs" % (port, limit))
    eq(log_lines(gh, named_down_re(port, "127.0.0.1")), [], "'is down' lines for 127.0.0.1 (still up)")
    seen, st = by_backend(gh, 10)
    eq(dict(seen), {"b4": 10}, "who served once ::1 is down")
    eq(dict(st), {200: 10}, "statuses once ::1 is down")


@test("health_check_probes_stale_address_after_reresolution")
def _(ctx):
    # app.test moves from 127.0.0.1 to ::1. Workers follow it, and so must the health check: probing the
    # old address would judge a server that no longer gets traffic and mark the live one down.
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4])
    gh = named_config(ctx, hosts, port, health=HTTP_CHECK)
    seen, st = by_backend(gh, 4)
    eq(dict(seen), {"b4": 4}, "who served while app.test is 127.0.0.1")
    n6 = count_requests(b6, "/healthz")
    hosts.set([V6])
    check(wait_log(gh, r"app\.test:%d resolves to \[::1\]:%d" % (port, port), 3 * T) is not None,
          "no 'resolves to [::1]' line within %.1fs of the change (resolve_interval 200ms)" % (3 * T))
    check(wait_until(lambda: count_requests(b6, "/healthz") > n6, (INTERVAL + SLACK) * T),
          "the new address ::1 was never probed")
    check(wait_log(gh, named_up_re(port, "::1"), (INTERVAL + SLACK) * T) is not None,
          "no 'server app.test:%d (::1) of pool app is up' after its first probe" % port)
    # The address that left the name gets no new requests, although its backend still runs.
    n4 = count_requests(b4, "/id")
    seen, st = by_backend(gh, 6)
    eq(dict(seen), {"b6": 6}, "who served once app.test is ::1 only")
    eq(count_requests(b4, "/id"), n4, "requests that reached the old address 127.0.0.1")
    # The old backend dies: nothing probes it any more, so nothing is marked down.
    h4 = count_requests(b4, "/healthz")
    kill_backend(b4)
    time.sleep((INTERVAL * FALL + TIMEOUT + 0.3) * T)
    seen, st = by_backend(gh, 6)
    eq(dict(st), {200: 6}, "statuses after the old address's backend died (the live one must not be down)")
    eq(log_lines(gh, r"of pool app is down"), [], "'is down' lines")
    eq(count_requests(b4, "/healthz"), h4, "probes of 127.0.0.1 after it left the name")
    # The current one dies: that one is down.
    kill_backend(b6)
    limit = (INTERVAL * FALL + TIMEOUT + SLACK) * T
    check(wait_log(gh, named_down_re(port, "::1"), limit) is not None,
          "b6 killed: no 'server app.test:%d (::1) of pool app is down' within %.1fs" % (port, limit))


@test("new_address_of_name_gets_traffic_before_probe")
def _(ctx):
    # A new address of a name gets requests only once a health check passed: here ::1 joins app.test but
    # fails its check (the backend on ::1 answers 500 to it), so it must never get a request.
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4])
    gh = named_config(ctx, hosts, port, health="health http GET /fail?on=b6 interval=300ms timeout=200ms")
    stop, switched = threading.Event(), threading.Event()
    got, errors = collections.Counter(), []

    def load():
        t_end = time.monotonic() + 10 * T
        while not stop.is_set() and time.monotonic() < t_end:
            try:
                with Conn(gh.port) as c:
                    r = c.request("GET", "/id?close=1")  # a new upstream connection each time
            except Exception as e:  # a dead load loop must fail the test, not pass it quietly
                errors.append(repr(e))
                return
            if switched.is_set():  # only answers after the change count
                got[r.body.decode(errors="replace") if r.status == 200 else r.status] += 1
    th = threading.Thread(target=load)
    th.start()
    try:
        time.sleep(0.3)
        hosts.set([V6, V4])  # the new address first, as a resolver may list it
        switched.set()
        # Several re-resolutions (200ms) and probe intervals (300ms) of load.
        time.sleep(1.5 * T)
    finally:
        stop.set()
        th.join(15 * T)
    check(not errors, "the load loop failed: %s" % errors)
    eq(count_requests(b6, "/id"), 0, "client requests that reached ::1 (new, failing its check)")
    check(got["b4"] >= 10 and set(got) == {"b4"}, "answers during the change: %s" % dict(got))
    check(count_requests(b6, "/fail") >= 1, "the new address ::1 was never probed")
    check(log_lines(gh, named_down_re(port, "::1")), "no 'server app.test:%d (::1) of pool app is down'" % port)
    ctx.info = "%s" % dict(got)


def slow_probe_named(ctx, hosts, port, probe_s, resolve="1h"):
    """A gatehouse in front of app.test whose probe takes probe_s (/slow), with route /gen; returns
    (gh, reload(gen)) where reload rewrites the file, sends SIGHUP and waits for the worker to serve gen."""
    c = ctx.session.certs()

    def text(p, gen):
        return "\n".join([
            "workers 1", "resolve_interval %s" % resolve, "listen 127.0.0.1:%d tls" % p, "pool app {",
            "    server app.test:%d" % port,
            "    health http GET /slow?ms=%d interval=10s timeout=5s" % (probe_s * 1000), "}",
            "site default {", "    cert %s %s" % (c["ec_cert"], c["ec_key"]), "    route / { proxy app }",
            "    route /gen { respond 200 %s }" % gen, "}", ""])
    gh = ctx.gatehouse_config(lambda p: text(p[0], "gen-1"), nports=1, env=hosts.env())
    gh.allow_worker_change = True  # a reload restarts the prober

    def reload(gen):
        with open(gh.conf_path + ".tmp", "w") as f:
            f.write(text(gh.port, gen))
        os.replace(gh.conf_path + ".tmp", gh.conf_path)
        os.kill(gh.pid, signal.SIGHUP)

        def served():
            with Conn(gh.port) as conn:
                return conn.request("GET", "/gen").body == gen.encode()
        check(wait_until(served, 5 * T), "the worker never served %s" % gen)
    return gh, reload


def ids_for(gh, seconds, most=20):
    """GET /id on new connections for up to `seconds` (at most `most`); a Counter of who answered."""
    seen, t_end = collections.Counter(), time.monotonic() + seconds
    while time.monotonic() < t_end and sum(seen.values()) < most:
        with Conn(gh.port) as conn:
            r = conn.request("GET", "/id?close=1")  # a new upstream connection each time
        seen[r.body.decode(errors="replace") if r.status == 200 else r.status] += 1
    return seen


@test("reload_gives_new_address_of_name_traffic_before_probe")
def _(ctx):
    # A reload that finds a new address for a name must treat it as the prober's re-resolution does:
    # PENDING until its first probe passed. It made it UNKNOWN (counts as up), so the new address got
    # requests at once. The probe takes 2s (a slow /slow answer), which holds that window open; the
    # backend's own clock says whether a request came before the probe's answer, whatever the load.
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4])
    probe_s = 2.0
    gh, reload = slow_probe_named(ctx, hosts, port, probe_s)
    check(wait_log(gh, named_up_re(port, "127.0.0.1"), (probe_s + 5) * T) is not None, "127.0.0.1 never came up")
    hosts.set([V4, V6])  # 127.0.0.1 keeps its slot (and its verdict); ::1 is new
    reload("gen-2")
    seen = ids_for(gh, probe_s)
    check(wait_log(gh, named_up_re(port, "::1"), (probe_s + 5) * T) is not None, "::1 never came up")

    def first_probe_answer():
        probes = [e["conn"] for e in b6.requests() if e["target"].startswith("/slow")]
        return [e for e in b6.events("response") if probes and e["conn"] == probes[0]]
    # The backend logs its answer just after sending it: the prober may have logged "up" first.
    check(wait_until(first_probe_answer, 3 * T), "no answer to ::1's first probe in its backend's log")
    probe = first_probe_answer()
    early = [e for e in b6.requests() if e["target"].startswith("/id") and e["t"] < probe[0]["t"]]
    eq(len(early), 0, "requests that reached ::1 before its first probe was answered (%s)" % dict(seen))
    check(seen["b4"] >= 4, "too few answers right after the reload to tell: %s" % dict(seen))
    # Once the probe passed, the new address serves.
    after, _ = by_backend(gh, 10)
    eq(dict(after), {"b4": 5, "b6": 5}, "who served once ::1 was up")
    ctx.info = "right after the reload: %s" % dict(seen)


@test("reload_keeps_address_the_prober_found_in_service")
def _(ctx):
    # The other side of the test above: an address that the prober's re-resolution found and probed
    # before the reload is not new to its place, and must not wait for another probe after it.
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4])
    probe_s = 1.0
    gh, reload = slow_probe_named(ctx, hosts, port, probe_s, resolve="200ms")
    hosts.set([V4, V6])
    check(wait_log(gh, named_up_re(port, "::1"), (probe_s + 5) * T) is not None, "::1 never came up")
    reload("gen-2")
    seen = ids_for(gh, probe_s / 2, most=10)
    check(seen["b6"] >= 2, "::1 (probed up before the reload) right after it: %s" % dict(seen))
    ctx.info = "right after the reload: %s" % dict(seen)


@test("name_that_stops_resolving_keeps_its_addresses")
def _(ctx):
    b4, b6, port = dual_backends(ctx)
    hosts = FakeHosts(ctx, [V4, V6])
    gh = named_config(ctx, hosts, port)
    hosts.set([])
    check(wait_log(gh, r"cannot resolve app\.test", 3 * T) is not None, "no 'cannot resolve' line")
    seen, st = by_backend(gh, 10)
    eq(dict(seen), {"b4": 5, "b6": 5}, "who served once app.test stopped resolving (its last addresses)")
