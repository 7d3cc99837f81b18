"""TLS: versions, cipher policy, ALPN, resumption, certificates, handshake timeout."""
import os
import re
import signal
import socket
import ssl
import subprocess
import time

from harness import SLOW, T, Conn, Fail, check, client_context, curl, eq, free_port, rss_kib, s_client, test, wait_until
import pattern

GET_CLOSE = b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def negotiated(out):
    """(protocol, cipher) of a finished s_client handshake, or None if there was none."""
    m = re.search(r"Cipher is (\S+)", out)
    if not m or m.group(1) == "(NONE)":
        return None
    p = re.search(r"Protocol\s*:\s*(\S+)", out)
    return (p.group(1) if p else "?", m.group(1))


class SServer:
    """openssl s_server accepting anything: the control showing that a client is able to
    do what gatehouse must refuse (otherwise a 'refused' test could never fail)."""

    def __init__(self, ctx, cert, key):
        self.port = free_port()
        self.log = open(os.path.join(ctx.dir, "s_server-%d.log" % self.port), "wb")
        self.proc = ctx.popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % self.port, "-cert", cert,
                               "-key", key, "-cipher", "ALL:@SECLEVEL=0", "-www", "-naccept", "100"],
                              stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        check(wait_until(up, 10 * T), "control openssl s_server did not start")


def expect_refused(ctx, gh, control, args, what):
    rc, out = s_client(control.port, args)
    check(negotiated(out) is not None,
          "control: s_client %s could not handshake even with a permissive server (test broken): %s"
          % (" ".join(args), out[-400:]))
    rc, out = s_client(gh.port, args)
    n = negotiated(out)
    check(n is None, "%s was accepted: negotiated %s with s_client %s" % (what, n, " ".join(args)))


def handshake(gh, args, expect_proto):
    rc, out = s_client(gh.port, args + ["-ign_eof"], input=GET_CLOSE)
    n = negotiated(out)
    check(n is not None, "s_client %s: no handshake: %s" % (" ".join(args), out[-600:]))
    eq(n[0], expect_proto, "protocol negotiated by s_client %s" % " ".join(args))
    check("HTTP/1.1 200" in out, "s_client %s: no HTTP/1.1 200 for GET /small: %s" % (" ".join(args), out[-600:]))
    return n, out


@test("tls_12")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    n, out = handshake(gh, ["-tls1_2"], "TLSv1.2")
    check(re.search(r"ECDHE-ECDSA-(AES\d+-GCM|CHACHA20-POLY1305)", n[1]), "TLS 1.2 chose cipher %s" % n[1])


@test("tls_13")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    handshake(gh, ["-tls1_3"], "TLSv1.3")
    with Conn(gh.port, ctx=client_context(minv=ssl.TLSVersion.TLSv1_3)) as c:
        eq(c.s.version(), "TLSv1.3", "python ssl version")
        r = c.request("GET", "/small")
        eq(r.status, 200, "status")
        eq(r.body, pattern.SMALL, "body")


@test("tls_old_versions_refused")
def _(ctx):
    c = ctx.session.certs()
    for cert in ("ec", "rsa"):
        gh = ctx.gatehouse([ctx.backend("b-" + cert)], cert=cert)
        control = SServer(ctx, c[cert + "_cert"], c[cert + "_key"])
        for flag, name in (("-tls1", "TLS 1.0"), ("-tls1_1", "TLS 1.1")):
            expect_refused(ctx, gh, control, [flag, "-cipher", "ALL:@SECLEVEL=0"], "%s (%s cert)" % (name, cert))


@test("tls_weak_ciphers_refused")
def _(ctx):
    c = ctx.session.certs()
    weak = {
        "rsa": ["AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA",
                "ECDHE-RSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA256"],
        "ec": ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"],
    }
    for cert, ciphers in weak.items():
        gh = ctx.gatehouse([ctx.backend("b-" + cert)], cert=cert)
        control = SServer(ctx, c[cert + "_cert"], c[cert + "_key"])
        for ciph in ciphers:
            expect_refused(ctx, gh, control, ["-tls1_2", "-cipher", ciph + ":@SECLEVEL=0"],
                           "cipher %s (%s cert)" % (ciph, cert))


@test("tls_strong_ciphers_ok")
def _(ctx):
    good = {
        "rsa": ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"],
        "ec": ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"],
    }
    for cert, ciphers in good.items():
        gh = ctx.gatehouse([ctx.backend("b-" + cert)], cert=cert)
        for ciph in ciphers:
            n, out = handshake(gh, ["-tls1_2", "-cipher", ciph], "TLSv1.2")
            eq(n[1], ciph, "cipher")
        for suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
            n, out = handshake(gh, ["-tls1_3", "-ciphersuites", suite], "TLSv1.3")
            eq(n[1], suite, "TLS 1.3 suite")


@test("tls_alpn_http11")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    rc, out = s_client(gh.port, ["-alpn", "http/1.1"])
    check("ALPN protocol: http/1.1" in out, "ALPN http/1.1 not negotiated: %s" % out[-500:])
    with Conn(gh.port, alpn=("http/1.1",)) as c:
        eq(c.s.selected_alpn_protocol(), "http/1.1", "python ssl ALPN")
        eq(c.request("GET", "/small").status, 200, "status")
    # curl offers h2 and http/1.1; whatever is chosen, the request must work.
    r = curl(["-o", "/dev/null", "-w", "%{http_code} %{http_version}", gh.url("/small")])
    check(r.stdout.decode().split()[0] == "200", "curl (ALPN h2,http/1.1) got %r %r" % (r.stdout, r.stderr))


@test("tls_resume_12_ticket")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    rc, out = s_client(gh.port, ["-tls1_2", "-reconnect"])
    check(negotiated(out) is not None, "no handshake: %s" % out[-400:])
    check("TLS session ticket:" in out, "no TLS 1.2 session ticket issued: %s" % out[-800:])
    new = len(re.findall(r"^New, ", out, re.M))
    reused = len(re.findall(r"^Reused, TLSv1\.2", out, re.M))
    check(new == 1 and reused == 5, "TLS 1.2 -reconnect: %d new and %d reused handshakes, want 1 and 5" % (new, reused))


def tls13_session(gh, path):
    rc, out = s_client(gh.port, ["-tls1_3", "-sess_out", path, "-ign_eof"], input=GET_CLOSE)
    check("HTTP/1.1 200" in out, "first TLS 1.3 connection failed: %s" % out[-500:])
    check(os.path.exists(path) and os.path.getsize(path) > 0, "no session saved by s_client -sess_out")


def tls13_resumed(gh, path):
    rc, out = s_client(gh.port, ["-tls1_3", "-sess_in", path, "-ign_eof"], input=GET_CLOSE)
    check("HTTP/1.1 200" in out, "resuming TLS 1.3 connection failed: %s" % out[-500:])
    return re.search(r"^Reused, TLSv1\.3", out, re.M) is not None, out


@test("tls_resume_13_ticket")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()])
    path = os.path.join(ctx.dir, "sess13.pem")
    tls13_session(gh, path)
    ok, out = tls13_resumed(gh, path)
    check(ok, "TLS 1.3 session not resumed (no 'Reused'): %s" % out[-600:])


@test("tls_resume_after_worker_restart")
def _(ctx):
    # Ticket keys are shared by all workers (DESIGN.md), so a session resumes on any worker,
    # including one started after the session was issued.
    gh = ctx.gatehouse([ctx.backend()], workers=2)
    gh.allow_worker_change = True
    path = os.path.join(ctx.dir, "sess13.pem")
    tls13_session(gh, path)
    old = gh.workers()
    for w in old:
        os.kill(w, signal.SIGKILL)
    ok = wait_until(lambda: len(gh.workers()) == 2 and not set(gh.workers()) & set(old), 10 * T)
    check(ok, "workers not replaced after SIGKILL: before %s, now %s" % (old, gh.workers()))
    for i in range(3):
        ok, out = tls13_resumed(gh, path)
        check(ok, "session not resumed on a restarted worker (attempt %d): %s" % (i + 1, out[-500:]))


def peer_cert_is(gh, pem_path):
    with Conn(gh.port) as c:
        der = c.s.getpeercert(binary_form=True)
        r = c.request("GET", "/small")
        eq(r.status, 200, "status")
    with open(pem_path) as f:
        want = ssl.PEM_cert_to_DER_cert(f.read())
    check(der == want, "gatehouse presented a different certificate than %s" % pem_path)


@test("tls_rsa_cert")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], cert="rsa")
    peer_cert_is(gh, ctx.session.certs()["rsa_cert"])
    for v in ("-tls1_2", "-tls1_3"):
        handshake(gh, [v], "TLSv1.2" if v == "-tls1_2" else "TLSv1.3")
    r = curl(["-o", "/dev/null", "-w", "%{http_code}", gh.url("/small")])
    eq(r.stdout, b"200", "curl status with an RSA certificate")


@test("tls_ecdsa_cert")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], cert="ec")
    peer_cert_is(gh, ctx.session.certs()["ec_cert"])
    rc, out = s_client(gh.port, ["-tls1_3"])
    check(re.search(r"Peer signature type: ECDSA", out), "no ECDSA signature: %s" % out[-500:])


def time_to_close(sock, limit):
    """Seconds until the peer closes sock (EOF or reset); None if it stays open past limit."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            d = sock.recv(4096)
            if not d:
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
    return None


@test("tls_handshake_timeout")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], args=["--handshake-timeout", "600ms"])
    limit = 3.0 * T
    # A client that sends nothing at all.
    s = socket.create_connection(("127.0.0.1", gh.port))
    dt = time_to_close(s, limit)
    s.close()
    check(dt is not None, "a silent connection is still open after %.1fs (handshake timeout 600ms)" % limit)
    check(dt >= 0.4, "silent connection closed after %.2fs, before the 600ms handshake timeout" % dt)
    # A client that stops in the middle of its ClientHello.
    s = socket.create_connection(("127.0.0.1", gh.port))
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    dt = time_to_close(s, limit)
    s.close()
    check(dt is not None, "a stalled half ClientHello is still open after %.1fs" % limit)
    # Handshakes that do complete still work.
    eq(Conn(gh.port).request("GET", "/small").status, 200, "status after timeouts")


@test("tls_plain_http_on_tls_port")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b])
    s = socket.create_connection(("127.0.0.1", gh.port))
    s.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n")
    dt = time_to_close(s, 3.0 * T)
    s.close()
    check(dt is not None, "plain HTTP on the TLS port: connection still open after %.1fs" % (3.0 * T))
    eq(b.raw_size(), 0, "bytes the backend received")


@test("tls_no_early_data")
def _(ctx):
    # 0-RTT data can be replayed by an attacker; gatehouse does not offer it.
    gh = ctx.gatehouse([ctx.backend()])
    path = os.path.join(ctx.dir, "sess13.pem")
    rc, out = s_client(gh.port, ["-tls1_3", "-sess_out", path, "-ign_eof"], input=GET_CLOSE)
    maxes = re.findall(r"Max Early Data: (\d+)", out)
    check(maxes, "no session ticket details from s_client: %s" % out[-500:])
    check(all(m == "0" for m in maxes), "tickets allow early data: Max Early Data %s" % maxes)
    early = os.path.join(ctx.dir, "early.txt")
    with open(early, "wb") as f:
        f.write(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx")
    rc, out = s_client(gh.port, ["-tls1_3", "-sess_in", path, "-early_data", early])
    check("Early data was accepted" not in out, "0-RTT early data accepted: %s" % out[-500:])


@test("tls_resume_across_workers")
def _(ctx):
    # One ticket key store for every worker: a session made on one worker resumes on the other.
    # Stopping a worker (SIGSTOP) sends every new connection to the other one (EPOLLEXCLUSIVE wakes
    # only an epoll that has a waiter), which makes "the other worker" certain.
    gh = ctx.gatehouse([ctx.backend()], workers=2)
    w = gh.workers()
    eq(len(w), 2, "workers")
    path = os.path.join(ctx.dir, "sess13.pem")
    try:
        for maker, other in ((w[0], w[1]), (w[1], w[0])):
            os.kill(other, signal.SIGSTOP)
            tls13_session(gh, path)
            os.kill(other, signal.SIGCONT)
            os.kill(maker, signal.SIGSTOP)
            for i in range(3):
                ok, out = tls13_resumed(gh, path)
                check(ok, "session of worker %d not resumed on worker %d (attempt %d): %s"
                      % (maker, other, i + 1, out[-500:]))
            os.kill(maker, signal.SIGCONT)
    finally:
        for pid in w:
            os.kill(pid, signal.SIGCONT)


@test("tls_ticket_root_secret_never_changes")
def _(ctx):
    # Ticket keys rotate: a ticket resumes in its period and the next one (renewed there), and is
    # refused once two periods have begun since (a full handshake). GH_TEST_TICKET_PERIOD shortens
    # the period from an hour to 3 s; the clock is the wall clock, as gatehouse's.
    period = 3
    gh = ctx.gatehouse([ctx.backend()], workers=2, env={"GH_TEST_TICKET_PERIOD": str(period)})
    path = os.path.join(ctx.dir, "sess13.pem")
    for attempt in range(3):
        wait_until(lambda: 0.05 <= time.time() % period < 0.6, period + 1, interval=0.02)
        start = time.time() - time.time() % period  # the period the ticket is issued in
        tls13_session(gh, path)
        if time.time() - start < period - 0.5:
            break
    else:
        raise Fail("could not get a ticket early in a %d s period (machine too slow?)" % period)
    ok, out = tls13_resumed(gh, path)
    check(ok, "ticket not accepted in its own period: %s" % out[-500:])
    time.sleep(max(0, start + period + 0.5 - time.time()))
    ok, out = tls13_resumed(gh, path)
    check(ok, "ticket of the previous period not accepted: %s" % out[-500:])
    time.sleep(max(0, start + 2 * period + 0.5 - time.time()))
    ok, out = tls13_resumed(gh, path)
    check(not ok, "ticket accepted %.1f s after it was issued, two %d s periods on: its key was not rotated away"
          % (time.time() - start, period))


@test("tls_keepalive_buffers_kept_for_grace_then_freed")
def _(ctx):
    """A connection that just answered its second (or later) request keeps its TLS record buffers for a
    1 s grace (no free and allocate per keep-alive request), then gives them back: 200 idle keep-alive connections must
    shrink the worker by several KiB each once the grace is over."""
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1)
    worker = gh.workers()[0]
    conns = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", gh.port), timeout=10 * T)
            conns.append(client_context().wrap_socket(s, server_hostname="localhost"))
        # Two requests each: after a connection's first request its buffers go back at once (client.c
        # go_idle_after_request: no heap holes); the grace is for the requests after it.
        for _ in range(2):
            for s in conns:
                s.sendall(b"GET /small HTTP/1.1\r\nHost: localhost\r\n\r\n")
            for s in conns:
                got = b""
                while b"\r\n\r\n" not in got or len(got) - got.index(b"\r\n\r\n") - 4 < 1024:
                    chunk = s.recv(65536)
                    check(chunk, "connection closed before the response was whole")
                    got += chunk
        busy = rss_kib(worker)
        time.sleep(0.2)  # within the grace: the buffers are still held
        mid = rss_kib(worker)
        time.sleep(2.3)  # the grace (1 s), then the heap trim (at most once a second)
        idle = rss_kib(worker)
        early, per = (busy - mid) / len(conns), (busy - idle) / len(conns)
        ctx.info = "worker RSS %d KiB right after the requests, %d KiB 0.2 s later, %d KiB 2.5 s later (%.1f KiB per " \
            "connection back)" % (busy, mid, idle, per)
        if SLOW:  # ASan's allocator keeps freed memory in quarantine
            ctx.info += "; RSS checks skipped (SLOW)"
        else:
            check(per >= 4, "idle keep-alive connections gave back %.1f KiB each, want >= 4" % per)
            check(early < per / 2, "buffers given back within the grace: %.1f of %.1f KiB per connection after 0.2 s"
                  % (early, per))
        with Conn(gh.port) as c:
            eq(c.request("GET", "/small").status, 200, "a request after the grace")
    finally:
        for s in conns:
            s.close()
