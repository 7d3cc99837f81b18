"""The PROXY protocol (v1 and v2), in and out: accepted on listeners only from trusted networks
(before TLS; its client then stands for the connection's everywhere), refused when malformed,
truncated, missing or slow; sent to servers of pools that ask for it, with the TLS TLVs, never on
a connection another client used; health checks send it only with `check`. Interop both ways with
HAProxy (send-proxy, send-proxy-v2, accept-proxy)."""
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time

from harness import T, Fail, build_request, check, client_context, eq, free_port, test, wait_until
from cfgutil import ThreadedServer, check_file, marked_line, write

HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)
SIG2 = b"\r\n\r\n\x00\r\nQUIT\n"
TRUSTED = "127.0.0.1"    # the sender we trust: HAProxy, or a test client bound to it
CLIENT = "127.0.0.3"     # an ordinary client (untrusted), or the real client behind HAProxy


# ---------------------------------------------------------------- building blocks

def v1(src="203.0.113.9", dst="192.0.2.1", sport=5555, dport=443, proto="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src="198.51.100.7", dst="192.0.2.1", sport=8080, dport=443, cmd=1, tlvs=b"", fam=None, length=None):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if fam is None:
        fam = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack("!HH", sport, dport) + tlvs
    if fam == 0:
        body = tlvs
    n = len(body) if length is None else length
    return SIG2 + bytes([0x20 | cmd, fam]) + struct.pack("!H", n) + body


def conf(ctx, ports, backend_port, listen_opts="proxy_protocol from=%s" % TRUSTED, pool="", extra=""):
    """ports[0]: a plain listener without PROXY protocol (the harness waits on it); ports[1] plain and
    ports[2] TLS, both with listen_opts."""
    c = ctx.session.certs()
    return ("workers 1\naccess_log %s\ntimeouts { handshake %dms }\n%s"
            "listen 127.0.0.1:%d\nlisten 127.0.0.1:%d %s\nlisten 127.0.0.1:%d tls %s\n"
            "pool app {\n    server 127.0.0.1:%d\n%s}\n"
            "site default {\n    cert %s %s\n    route / { proxy app }\n}\n"
            % (os.path.join(ctx.dir, "access.log"), int(1500 * T), extra, ports[0], ports[1], listen_opts,
               ports[2], listen_opts, backend_port, pool, c["ec_cert"], c["ec_key"]))


def start(ctx, **kw):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda ports: conf(ctx, ports, b.port, **kw), nports=3)
    return b, gh


def connect(port, source=None):
    return socket.create_connection(("127.0.0.1", port), timeout=5 * T,
                                    source_address=(source, 0) if source else None)


def read_all(s, limit=1 << 20):
    """Everything until EOF; a reset counts as EOF (returns what came before it)."""
    out = b""
    while len(out) < limit:
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            break
        if not d:
            break
        out += d
    return out


def exchange(port, pre, tls=False, source=None, path="/echo"):
    """Sends pre (a PROXY header, or anything), then (over TLS if asked) one GET; returns the raw answer."""
    s = connect(port, source)
    try:
        if pre:
            s.sendall(pre)
        if tls:
            s = client_context().wrap_socket(s, server_hostname="localhost")
        s.sendall(build_request("GET", path, [("Connection", "close")]))
        return read_all(s)
    finally:
        s.close()


def xff(answer):
    """The X-Forwarded-For the backend received (from /echo's body), or None."""
    m = re.search(rb"\r\nX-Forwarded-For: ([^\r]*)\r\n", answer.split(b"\r\n\r\n", 1)[-1])
    return m.group(1).decode() if m else None


def refused(port, data, tls=False, source=TRUSTED, then_close=True):
    """Sends data and half-closes (or not); returns what came back before the close (b"" when none)."""
    s = connect(port, source)
    try:
        s.sendall(data)
        if then_close:
            s.shutdown(socket.SHUT_WR)
        return read_all(s)
    finally:
        s.close()


def status_of(answer):
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- accepting

@test("pp_accept_v1_client_everywhere")
def _(ctx):
    b, gh = start(ctx)
    a = exchange(gh.ports[1], v1("203.0.113.9"), source=TRUSTED)
    eq(status_of(a), 200, "status after a v1 header")
    eq(xff(a), "203.0.113.9", "X-Forwarded-For")
    check(b"Forwarded: for=203.0.113.9;" in a, "Forwarded names the header's client: %r" % a[-300:])
    log = os.path.join(ctx.dir, "access.log")
    check(wait_until(lambda: os.path.exists(log) and "203.0.113.9 - - [" in open(log).read(), 5 * T),
          "access log names the header's client")
    a = exchange(gh.ports[1], v1("2001:db8::7", "2001:db8::1", proto="TCP6"), source=TRUSTED)
    eq(xff(a), "2001:db8::7", "X-Forwarded-For after a TCP6 header")


@test("pp_accept_v2_before_tls")
def _(ctx):
    b, gh = start(ctx)
    a = exchange(gh.ports[2], v2("198.51.100.7"), tls=True, source=TRUSTED)
    eq(status_of(a), 200, "status")
    eq(xff(a), "198.51.100.7", "X-Forwarded-For over TLS after a v2 header")
    # with TLVs (ALPN, authority, a NOOP) and a CRC32C TLV that a real sender would compute: skipped but checked
    tl = b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.com" + b"\x04\x00\x03pad"
    a = exchange(gh.ports[1], v2("2001:db8::9", "2001:db8::1", tlvs=tl), source=TRUSTED)
    eq(xff(a), "2001:db8::9", "X-Forwarded-For after a v2 TCP6 header with TLVs")
    # LOCAL (the sender's own health check): the connection's own address stands
    a = exchange(gh.ports[1], v2(cmd=0), source=TRUSTED)
    eq(xff(a), TRUSTED, "X-Forwarded-For after LOCAL")
    a = exchange(gh.ports[1], b"PROXY UNKNOWN\r\n", source=TRUSTED)
    eq(xff(a), TRUSTED, "X-Forwarded-For after UNKNOWN")


@test("pp_accept_header_in_pieces_and_with_the_first_bytes")
def _(ctx):
    b, gh = start(ctx)
    # in pieces: the header is peeked, not taken, until it is whole (each segment brings a new event)
    for hdr in (v1("203.0.113.21"), v2("203.0.113.22")):
        s = connect(gh.ports[1], TRUSTED)
        try:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(hdr), 7):
                s.sendall(hdr[i:i + 7])
                time.sleep(0.05)
            s.sendall(build_request("GET", "/echo", [("Connection", "close")]))
            a = read_all(s)
        finally:
            s.close()
        eq(xff(a), "203.0.113.2%d" % (1 if hdr.startswith(b"PROXY") else 2), "X-Forwarded-For after a header in pieces")
    # in one segment with the request: the request after it is read whole
    s = connect(gh.ports[1], TRUSTED)
    try:
        s.sendall(v2("203.0.113.23") + build_request("GET", "/echo", [("Connection", "close")]))
        a = read_all(s)
    finally:
        s.close()
    eq(xff(a), "203.0.113.23", "X-Forwarded-For, header and request in one segment")
    # in one segment with the ClientHello: exactly the header's bytes are taken, TLS gets the rest
    s = connect(gh.ports[2], TRUSTED)
    try:
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = client_context().wrap_bio(inc, out, server_hostname="localhost")

        def step(fn):
            while True:
                try:
                    return fn()
                except ssl.SSLWantReadError:
                    pending = out.read()
                    if pending:
                        s.sendall(pending)
                    d = s.recv(65536)
                    check(d, "closed during the TLS handshake after a header sent with the ClientHello")
                    inc.write(d)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        s.sendall(v1("203.0.113.24") + out.read())  # the header and the ClientHello together
        step(tls.do_handshake)
        tls.write(build_request("GET", "/echo", [("Connection", "close")]))
        s.sendall(out.read())
        a = b""
        while True:
            try:
                d = step(lambda: tls.read(65536))
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not d:
                break
            a += d
            if b"\r\n\r\n" in a and a.split(b"\r\n\r\n", 1)[1].count(b"\r\n\r\n") >= 1:
                break
    finally:
        s.close()
    eq(xff(a), "203.0.113.24", "X-Forwarded-For over TLS, header and ClientHello in one segment")


@test("pp_accept_access_rules_and_per_ip_limit_follow_header")
def _(ctx):
    b = ctx.backend()

    def text(ports):
        t = conf(ctx, ports, b.port, extra="max_connections_per_ip 1\n")
        return t.replace("    route / { proxy app }", "    deny 203.0.113.0/24\n    route / { proxy app }")
    gh = ctx.gatehouse_config(text, nports=3)
    # every connection comes from 127.0.0.1: the rules can only tell them apart by the header's client
    eq(status_of(exchange(gh.ports[1], v1("203.0.113.9"), source=TRUSTED)), 403, "a denied network in the header")
    eq(status_of(exchange(gh.ports[1], v1("198.51.100.7"), source=TRUSTED)), 200, "another client in the header")
    first = connect(gh.ports[1], TRUSTED)
    try:
        first.sendall(v2("198.51.100.50") + build_request("GET", "/small"))
        got = b""
        while b"\r\n\r\n" not in got:
            d = first.recv(65536)
            check(d, "the first connection closed")
            got += d
        eq(status_of(got), 200, "the header client's first connection")
        eq(refused(gh.ports[1], v2("198.51.100.50") + build_request("GET", "/small"), then_close=False), b"",
           "a second connection of the same header client (max_connections_per_ip 1)")
        eq(status_of(exchange(gh.ports[1], v2("198.51.100.51"), source=TRUSTED, path="/small")), 200,
           "another header client while the first holds its connection")
    finally:
        first.close()


@test("pp_accept_hash_ip_uses_header_client")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    text = lambda ports: conf(ctx, ports, b1.port, pool="    server 127.0.0.1:%d\n    balance hash ip\n" % b2.port)
    gh = ctx.gatehouse_config(text, nports=3)
    seen = {}
    for i in range(24):
        ip = "203.0.113.%d" % (i + 1)
        for _ in range(2):
            a = exchange(gh.ports[1], v1(ip), source=TRUSTED, path="/id")
            eq(status_of(a), 200, "status")
            seen.setdefault(ip, set()).add(a.split(b"\r\n\r\n", 1)[1])
    check(all(len(v) == 1 for v in seen.values()), "one client, one server: %r" % seen)
    servers = set().union(*seen.values())
    # Every connection comes from 127.0.0.1: hashing that would send all 24 clients to one server.
    eq(len(servers), 2, "servers the 24 header clients were spread over")


@test("pp_accept_malformed_closes")
def _(ctx):
    b, gh = start(ctx)
    cases = [
        ("v1 bad address", v1("203.0.113.300")),
        ("v1 bad port", b"PROXY TCP4 203.0.113.9 192.0.2.1 99999 443\r\n"),
        ("v1 too long", b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n"),
        ("v1 lowercase", b"proxy TCP4 203.0.113.9 192.0.2.1 1 2\r\n"),
        ("v2 version 1", v2()[:12] + b"\x11" + v2()[13:]),
        ("v2 family 5", v2(fam=0x51)),
        ("v2 length beyond the bound", v2(length=4000) + b"\0" * 4000),
        ("v2 TLV overruns", v2(tlvs=b"\x01\x00\x20h2")),
        ("v2 bad CRC32C", v2(tlvs=b"\x03\x00\x04\x00\x00\x00\x01")),
    ]
    for name, data in cases:
        for port, tls in ((gh.ports[1], False), (gh.ports[2], True)):
            got = refused(port, data + build_request("GET", "/echo"), then_close=False)
            eq(got, b"", "answer to a trusted sender's %s header (%s listener)" % (name, "tls" if tls else "plain"))
    eq(b.requests(), [], "requests that reached the backend")
    # the listener still serves a good header afterwards
    eq(xff(exchange(gh.ports[1], v1("203.0.113.5"), source=TRUSTED)), "203.0.113.5", "X-Forwarded-For")


@test("pp_accept_missing_header_closes")
def _(ctx):
    b, gh = start(ctx)
    # a trusted sender that speaks HTTP at once: closed without an answer (not served as 127.0.0.1)
    eq(refused(gh.ports[1], build_request("GET", "/echo"), then_close=False), b"", "answer to HTTP without a header")
    # a TLS client without the header: no handshake
    s = connect(gh.ports[2], TRUSTED)
    try:
        try:
            client_context().wrap_socket(s, server_hostname="localhost").close()
            raise Fail("TLS handshake succeeded without a PROXY header from a trusted source")
        except (ssl.SSLError, OSError):
            pass
    finally:
        s.close()
    eq(b.requests(), [], "requests that reached the backend")


@test("pp_accept_truncated_and_slow_header_closed")
def _(ctx):
    b, gh = start(ctx)
    # truncated: part of a header, then FIN
    for data in (v1()[:20], v2()[:10], v2()[:20]):
        t0 = time.monotonic()
        eq(refused(gh.ports[1], data), b"", "answer to a truncated header %r" % data)
        check(time.monotonic() - t0 < 1.0 * T, "a truncated header ending in FIN is closed at once")
    # slow: part of a header, then nothing: closed at the handshake timeout (1.5 s here), not before
    for port in (gh.ports[1], gh.ports[2]):
        s = connect(port, TRUSTED)
        try:
            s.sendall(v2()[:18])
            t0 = time.monotonic()
            s.settimeout(6 * T)
            got = read_all(s)
            took = time.monotonic() - t0
        finally:
            s.close()
        eq(got, b"", "answer to a slow header")
        check(1.2 * T <= took <= 4.0 * T, "closed after %.2fs, want about the 1.5s handshake timeout" % took)
    check(wait_until(lambda: "no PROXY header within the handshake timeout" in gh.stderr(), 3 * T),
          "the error log says why")


@test("pp_accept_untrusted_header_not_believed")
def _(ctx):
    b, gh = start(ctx)
    # an untrusted client sending a header: its bytes are its request, a bad one (strict: never believed)
    a = exchange(gh.ports[1], v1("203.0.113.9"), source=CLIENT)
    eq(status_of(a), 400, "status for a header from an untrusted source")
    s = connect(gh.ports[2], CLIENT)
    try:
        s.sendall(v2())
        try:
            client_context().wrap_socket(s, server_hostname="localhost").close()
            raise Fail("TLS handshake succeeded after an untrusted v2 header")
        except (ssl.SSLError, OSError):
            pass
    finally:
        s.close()
    eq(b.requests(), [], "requests that reached the backend")
    # an untrusted client without a header is an ordinary client, under its own address
    eq(xff(exchange(gh.ports[1], b"", source=CLIENT)), CLIENT, "X-Forwarded-For of an ordinary client")
    eq(xff(exchange(gh.ports[2], b"", tls=True, source=CLIENT)), CLIENT, "the same over TLS")


@test("pp_config_errors")
def _(ctx):
    base = "listen 127.0.0.1:%d%s\npool app {\n    server 127.0.0.1:9\n%s}\nsite default { route / { proxy app } }\n"
    cases = [
        (" proxy_protocol # HERE", "", "proxy_protocol needs from=NETWORKS"),
        (" from=10.0.0.0/8 # HERE", "", "from= is for proxy_protocol"),
        (" proxy_protocol from=10.0.0.1/8 # HERE", "", "invalid proxy_protocol network \"10.0.0.1/8\""),
        (" proxy_protocol from=10.0.0.0/8,,::1 # HERE", "", "invalid proxy_protocol network \"\""),
        (" proxy_protocol proxy_protocol from=::1 # HERE", "", "invalid listen option \"proxy_protocol\""),
        ("", "    proxy_protocol v3 # HERE\n", "invalid proxy_protocol version \"v3\""),
        ("", "    proxy_protocol v2 always # HERE\n", "invalid proxy_protocol option \"always\""),
    ]
    for i, (listen, pool, want) in enumerate(cases):
        text = base % (free_port(), listen, pool)
        path = write(ctx, "bad%d.conf" % i, text)
        code, out, err = check_file(ctx, path)
        check(code != 0, "-t accepted %r" % text)
        check("%s:%d: " % (path, marked_line(text)) in err and want in err,
              "error for %r: %r, want FILE:LINE and %r" % (listen + pool, err, want))
    text = base % (free_port(), " proxy_protocol from=10.0.0.0/8,192.0.2.7,::1", "    proxy_protocol v1 check\n")
    code, out, err = check_file(ctx, write(ctx, "good.conf", text))
    eq(code, 0, "-t of a valid file (%s)" % err)


# ---------------------------------------------------------------- sending

def parse_pp(buf):
    """An independent reader of what gatehouse sends: (record, length), or None while incomplete."""
    if (len(buf) < 6 and b"PROXY ".startswith(buf)) or (len(buf) < 12 and SIG2.startswith(buf)):
        return None
    if buf.startswith(b"PROXY "):
        i = buf.find(b"\r\n")
        if i < 0:
            return None
        f = buf[:i].decode().split(" ")
        rec = {"v": 1, "proto": f[1]}
        if f[1] != "UNKNOWN":
            rec.update(src=f[2], dst=f[3], sport=int(f[4]), dport=int(f[5]))
        return rec, i + 2
    if buf.startswith(SIG2):
        if len(buf) < 16:
            return None
        total = 16 + struct.unpack("!H", buf[14:16])[0]
        if len(buf) < total:
            return None
        rec = {"v": 2, "cmd": buf[12] & 15, "fam": buf[13], "tlvs": {}}
        body, off = buf[16:total], 0
        if buf[13] in (0x11, 0x21):
            n = 4 if buf[13] == 0x11 else 16
            rec["src"] = str(ipaddress.ip_address(body[:n]))
            rec["dst"] = str(ipaddress.ip_address(body[n:2 * n]))
            rec["sport"], rec["dport"] = struct.unpack("!HH", body[2 * n:2 * n + 4])
            off = 2 * n + 4
        while off + 3 <= len(body):
            t, ln = body[off], struct.unpack("!H", body[off + 1:off + 3])[0]
            v = body[off + 3:off + 3 + ln]
            if t == 0x20:
                rec["ssl_client"] = v[0]
                rec["ssl_verify"] = struct.unpack("!I", v[1:5])[0]
                so = 5
                while so + 3 <= len(v):
                    st, sl = v[so], struct.unpack("!H", v[so + 1:so + 3])[0]
                    rec["tlvs"]["%02x" % st] = v[so + 3:so + 3 + sl].decode()
                    so += 3 + sl
            else:
                rec["tlvs"]["%02x" % t] = v.decode("latin-1")
            off += 3 + ln
        eq(off, len(body), "TLVs fill the v2 header exactly")
        return rec, total
    return {"v": None}, 0


def read_pp(s):
    """Reads a PROXY header (if any) from socket s: (record, the bytes after it), or None at EOF."""
    buf = b""
    while True:
        r = parse_pp(buf)
        if r is not None:
            return r[0], buf[r[1]:]
        d = s.recv(4096)
        if not d:
            return None
        buf += d


class PPServer(ThreadedServer):
    """An HTTP/1.1 server that reads a PROXY header first (if any) and answers every request with
    what the header said, as JSON, with the connection's number (1-based index of conns): keep-alive."""

    def __init__(self):
        self.conns = []          # per connection: [header record, [request lines]]
        self.lock = threading.Lock()
        self.start()

    def one(self, s):
        s.settimeout(10 * T)
        with self.lock:
            entry = [None, [], False]  # header, request lines, closed
            self.conns.append(entry)
            cid = len(self.conns)
        try:
            got = read_pp(s)
            if got is None:
                return
            entry[0], buf = got
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(4096)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                line = head.split(b"\r\n", 1)[0].decode()
                entry[1].append(line)
                body = json.dumps({"conn": cid, "pp": entry[0]}).encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            return
        finally:
            entry[2] = True
            s.close()


def pp_get(port, tls, source, conn=None):
    """GET / (keep-alive) on conn (a socket, TLS or not) or a new one; returns (the server's JSON, conn)."""
    if conn is None:
        conn = connect(port, source)
        if tls:
            conn = client_context().wrap_socket(conn, server_hostname="localhost")
    conn.sendall(build_request("GET", "/"))
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = conn.recv(65536)
        check(d, "connection closed before a response")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
    while len(body) < n:
        body += conn.recv(65536)
    check(head.startswith(b"HTTP/1.1 200"), "status: %r" % head[:40])
    return json.loads(body), conn


def check_tls_tlvs(pp, alpn):
    """The v2 TLVs of a TLS client connection to localhost: ALPN, authority (the SNI), SSL and its version."""
    eq(pp["tlvs"].get("01"), alpn, "ALPN TLV")
    eq(pp["tlvs"].get("02"), "localhost", "authority TLV (the SNI)")
    eq(pp.get("ssl_client"), 1, "SSL TLV client bits")
    check(pp["tlvs"].get("21", "").startswith("TLSv1."), "SSL_VERSION sub-TLV: %r" % pp)


def start_sender(ctx, pool):
    srv = PPServer()
    gh = ctx.gatehouse_config(lambda ports: conf(ctx, ports, srv.port, listen_opts="", pool=pool), nports=3)
    return srv, gh


@test("pp_send_v1_and_v2_name_the_client")
def _(ctx):
    for version in (1, 2):
        srv, gh = start_sender(ctx, "    proxy_protocol v%d\n" % version)
        try:
            got, c = pp_get(gh.ports[1], False, CLIENT)
            c.close()
            pp = got["pp"]
            eq(pp["v"], version, "version sent")
            eq((pp["src"], pp["dst"], pp["dport"]), (CLIENT, "127.0.0.1", gh.ports[1]), "addresses sent (plain)")
            check(pp["sport"] > 0, "source port sent")
            if version == 2:
                eq((pp["cmd"], pp["fam"], pp["tlvs"]), (1, 0x11, {}), "v2 PROXY over TCP4, no TLVs for plain HTTP")
            got, c = pp_get(gh.ports[2], True, CLIENT)
            c.close()
            pp = got["pp"]
            eq((pp["src"], pp["dst"], pp["dport"]), (CLIENT, "127.0.0.1", gh.ports[2]), "addresses sent (TLS)")
            if version == 2:
                check_tls_tlvs(pp, "http/1.1")
        finally:
            srv.close()
        gh.stop()


@test("pp_send_v2_from_http2_streams_names_client_and_tls")
def _(ctx):
    # An HTTP/2 stream is a session of its own (h2_server.c): the header a pool sends for it must carry the
    # connection's client, the address it reached and its TLS facts, copied from the connection (ALPN h2).
    import h2raw
    srv, gh = start_sender(ctx, "    proxy_protocol v2\n")
    try:
        with h2raw.H2Conn(gh.ports[2], sock=connect(gh.ports[2], CLIENT)) as c:
            eq(c.alpn, "h2", "ALPN")
            for i in range(2):
                o = c.get("/?i=%d" % i)
                eq(o.status, 200, "status of stream %d" % (2 * i + 1))
                pp = json.loads(o.body)["pp"]
                eq((pp["v"], pp["cmd"], pp["fam"]), (2, 1, 0x11), "v2 PROXY over TCP4 (stream %d)" % (2 * i + 1))
                eq((pp["src"], pp["dst"], pp["dport"]), (CLIENT, "127.0.0.1", gh.ports[2]),
                   "the client and the address it connected to (stream %d)" % (2 * i + 1))
                check_tls_tlvs(pp, "h2")  # ALPN: what the client's connection agreed
    finally:
        srv.close()
    gh.stop()
    # Behind a trusted sender: the header received names the client and the address, for every stream.
    srv = PPServer()
    gh = ctx.gatehouse_config(lambda ports: conf(ctx, ports, srv.port, pool="    proxy_protocol v2\n"), nports=3)
    try:
        s = connect(gh.ports[2], TRUSTED)
        s.sendall(v2(src="198.51.100.7", dst="192.0.2.1", dport=443))
        with h2raw.H2Conn(gh.ports[2], sock=s) as c:
            o = c.get("/")
            eq(o.status, 200, "status behind a PROXY header")
            pp = json.loads(o.body)["pp"]
            eq((pp["src"], pp["dst"], pp["dport"]), ("198.51.100.7", "192.0.2.1", 443),
               "the header's client and destination, sent on for an HTTP/2 stream")
            eq(pp["tlvs"].get("01"), "h2", "ALPN TLV behind a PROXY header")
    finally:
        srv.close()


@test("pp_send_no_reuse_across_clients")
def _(ctx):
    srv, gh = start_sender(ctx, "    proxy_protocol v2\n")
    try:
        a1, ca = pp_get(gh.ports[1], False, CLIENT)
        b1, cb = pp_get(gh.ports[1], False, "127.0.0.4")
        a2, _ = pp_get(gh.ports[1], False, CLIENT, conn=ca)
        b2, _ = pp_get(gh.ports[1], False, "127.0.0.4", conn=cb)
        a3, _ = pp_get(gh.ports[1], False, CLIENT, conn=ca)
        for who, r in ((CLIENT, a1), ("127.0.0.4", b1), (CLIENT, a2), ("127.0.0.4", b2), (CLIENT, a3)):
            eq(r["pp"]["src"], who, "the header of the connection that carried %s's request" % who)
        # a client's keep-alive requests share its own connection; the other client never gets it
        eq((a1["conn"], a2["conn"], a3["conn"]), (a1["conn"],) * 3, "upstream connection of one client's requests")
        eq(b1["conn"], b2["conn"], "upstream connection of the other client's requests")
        check(a1["conn"] != b1["conn"], "two clients on one upstream connection")
        eq(sorted(len(e[1]) for e in srv.conns), [2, 3], "requests per upstream connection")
        # the client leaves: its connection to the server closes with it, not kept for anyone else
        ca.close()
        check(wait_until(lambda: srv.conns[a1["conn"] - 1][2], 5 * T),
              "the upstream connection of a client that left is still open")
        check(not srv.conns[b1["conn"] - 1][2], "the other client's upstream connection closed with the first client")
        n = len(srv.conns)
        c, cc = pp_get(gh.ports[1], False, "127.0.0.5")
        eq(c["pp"]["src"], "127.0.0.5", "a new client's header")
        eq(len(srv.conns), n + 1, "upstream connections after a new client came")
        cb.close()
        cc.close()
    finally:
        srv.close()


@test("pp_send_own_connection_dropped_on_reload")
def _(ctx):
    import signal
    srv, gh = start_sender(ctx, "    proxy_protocol v1\n")
    gh.allow_worker_change = True  # a reload restarts the prober
    try:
        r1, c = pp_get(gh.ports[1], False, CLIENT)
        with open(gh.conf_path, "a") as f:
            f.write("# reloaded\n")
        os.kill(gh.pid, signal.SIGHUP)
        check(wait_until(lambda: "worker 0: reloaded" in gh.stderr(), 10 * T), "the worker did not reload")
        # the kept connection belongs to the old generation's pool: closed, and the next request gets a new one
        r2, _ = pp_get(gh.ports[1], False, CLIENT, conn=c)
        check(r2["conn"] != r1["conn"], "a connection of the old generation carried a request after the reload")
        eq(r2["pp"]["src"], CLIENT, "the header of the new connection")
        check(wait_until(lambda: srv.conns[r1["conn"] - 1][2], 5 * T), "the old generation's connection is still open")
        r3, _ = pp_get(gh.ports[1], False, CLIENT, conn=c)
        eq(r3["conn"], r2["conn"], "the client's next request on its connection of the new generation")
        c.close()
    finally:
        srv.close()


@test("pp_send_health_check_only_with_check")
def _(ctx):
    health = "    health http GET /healthz interval=300ms timeout=200ms\n"
    for pool, want in (("    proxy_protocol v2\n", {"v": None}), ("    proxy_protocol v2 check\n", "local"),
                       ("    proxy_protocol v1 check\n", "unknown")):
        srv, gh = start_sender(ctx, pool + health)
        try:
            ok = wait_until(lambda: [e for e in list(srv.conns) if e[1] == ["GET /healthz HTTP/1.1"]], 5 * T)
            check(ok, "no health check arrived: %r" % srv.conns)
            pp = ok[0][0]
            if want == "local":
                eq((pp["v"], pp["cmd"], pp["fam"]), (2, 0, 0), "a v2 check's header (LOCAL, UNSPEC)")
            elif want == "unknown":
                eq((pp["v"], pp["proto"]), (1, "UNKNOWN"), "a v1 check's header")
            else:
                eq(pp, want, "header of a check without `check`")
            # traffic still names the client
            got, c = pp_get(gh.ports[1], False, CLIENT)
            c.close()
            eq(got["pp"]["src"], CLIENT, "the header of a request")
        finally:
            srv.close()
        gh.stop()


# ---------------------------------------------------------------- HAProxy

class HAProxy:
    def __init__(self, ctx, text, port):
        self.path = write(ctx, "haproxy%d.cfg" % port, text)
        self.out_path = os.path.join(ctx.dir, "haproxy%d.out" % port)
        self.out = open(self.out_path, "ab")
        code = subprocess.run([HAPROXY, "-c", "-f", self.path], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=10 * T)
        check(code.returncode == 0, "haproxy -c: %s" % code.stdout.decode(errors="replace")[-500:])
        self.proc = ctx.popen([HAPROXY, "-db", "-f", self.path], stdin=subprocess.DEVNULL, stdout=self.out,
                              stderr=subprocess.STDOUT)
        ctx.note("haproxy pid %d, %s" % (self.proc.pid, self.out_path))

        def up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return self.proc.poll() is not None
        wait_until(up, 10 * T)
        check(self.proc.poll() is None, "haproxy exited: %s" % open(self.out_path, errors="replace").read()[-500:])

    def log(self):
        self.out.flush()
        return open(self.out_path, errors="replace").read()


HA_GLOBAL = ("global\n    log stdout format raw local0\n"
             "defaults\n    log global\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n")


def need_haproxy():
    check(HAPROXY is not None, "haproxy is not installed (scripts/packages.txt lists it under issue 8)")


@test("pp_accept_header_client_on_http2_streams")
def _(ctx):
    # The header's client stands for every HTTP/2 stream of the connection (each stream is a session of
    # its own, copied from the connection's), in X-Forwarded-For and in the access log.
    import h2raw
    b, gh = start(ctx)
    s = connect(gh.ports[2], TRUSTED)
    s.sendall(v2(src="198.51.100.7"))
    with h2raw.H2Conn(gh.ports[2], sock=s) as c:
        eq(c.alpn, "h2", "ALPN after the PROXY header")
        for i in range(3):
            o = c.get("/echo?i=%d" % i)
            eq(o.status, 200, "status of stream %d" % (2 * i + 1))
            check(b"X-Forwarded-For: 198.51.100.7\r\n" in o.body,
                  "stream %d: X-Forwarded-For is not the header's client: %r" % (2 * i + 1, o.body[:400]))
    log = os.path.join(ctx.dir, "access.log")

    def lines():
        return re.findall(r"^198\.51\.100\.7 .*HTTP/2\.0", open(log).read() if os.path.exists(log) else "", re.M)
    check(wait_until(lambda: len(lines()) >= 3, 3 * T), "access log lines of the three streams name the "
          "header's client: %r" % (open(log).read()[-600:] if os.path.exists(log) else None))


@test("pp_haproxy_send_proxy_in_front")
def _(ctx):
    need_haproxy()
    b, gh = start(ctx)
    for opt in ("send-proxy-v2", "send-proxy"):
        for tls, gport in ((False, gh.ports[1]), (True, gh.ports[2])):
            hp = free_port()
            HAProxy(ctx, HA_GLOBAL + "frontend fe\n    mode tcp\n    bind 127.0.0.1:%d\n    default_backend be\n"
                    "backend be\n    mode tcp\n    server gh 127.0.0.1:%d %s\n" % (hp, gport, opt), hp)
            a = exchange(hp, b"", tls=tls, source=CLIENT)
            eq(status_of(a), 200, "status through haproxy %s (%s)" % (opt, "tls" if tls else "plain"))
            eq(xff(a), CLIENT, "X-Forwarded-For through haproxy %s (%s)" % (opt, "tls" if tls else "plain"))


@test("pp_haproxy_accept_proxy_behind")
def _(ctx):
    need_haproxy()
    b = ctx.backend()
    for version, tls in ((2, True), (1, False)):
        hp = free_port()
        ha = HAProxy(ctx, HA_GLOBAL + "frontend fe\n    mode http\n    option httplog\n"
                     "    bind 127.0.0.1:%d accept-proxy\n"
                     "    http-request set-header X-PP-Src %%[src]\n"
                     "    http-request set-header X-PP-Authority %%[fc_pp_authority]\n"
                     "    default_backend be\n"
                     "backend be\n    mode http\n    server b 127.0.0.1:%d\n" % (hp, b.port), hp)
        gh = ctx.gatehouse_config(lambda ports: conf(ctx, ports, hp, listen_opts="",
                                                     pool="    proxy_protocol v%d\n" % version), nports=3)
        a = exchange(gh.ports[2] if tls else gh.ports[1], b"", tls=tls, source=CLIENT)
        eq(status_of(a), 200, "status through haproxy accept-proxy (v%d)" % version)
        body = a.split(b"\r\n\r\n", 1)[1]
        body = body.lower()  # haproxy writes header names in lower case
        check(b"\r\nx-pp-src: %s\r\n" % CLIENT.encode() in body, "haproxy's src is the client: %r" % body)
        if tls:
            check(b"\r\nx-pp-authority: localhost\r\n" in body, "haproxy read the authority TLV: %r" % body)
        check(wait_until(lambda: re.search(r"^%s:\d+ \[" % re.escape(CLIENT), ha.log(), re.M), 5 * T),
              "haproxy logs the original client: %r" % ha.log()[-500:])
        gh.stop()


# ---------------------------------------------------------------- stream services

class PPEcho(ThreadedServer):
    """A TCP server that reads a PROXY header (if any) first, records it, then echoes."""

    def __init__(self):
        self.headers = []
        self.start()

    def one(self, s):
        s.settimeout(10 * T)
        try:
            got = read_pp(s)
            if got is None:
                return
            self.headers.append(got[0])
            buf = got[1]
            while True:
                if buf:
                    s.sendall(buf)
                buf = s.recv(65536)
                if not buf:
                    return
        except OSError:
            return
        finally:
            s.close()


def stream_conf(ctx, ports, server_port, listen_opts, pool="", tls=True, extra="", main=""):
    """ports[0]: a plain stream without PROXY protocol (the harness waits on it); ports[1]: stream s with
    listen_opts, and extra lines in its block; main: lines of the main context."""
    c = ctx.session.certs()
    cert = "    cert %s %s\n" % (c["ec_cert"], c["ec_key"]) if tls else ""
    return ("workers 1\naccess_log %s\ntimeouts { handshake %dms }\n%s"
            "pool e {\n    server 127.0.0.1:%d\n%s}\n"
            "stream ready {\n    listen 127.0.0.1:%d\n    proxy e\n}\n"
            "stream s {\n    listen 127.0.0.1:%d %s\n%s%s    proxy e\n}\n"
            % (os.path.join(ctx.dir, "access.log"), int(1500 * T), main, server_port, pool, ports[0], ports[1],
               listen_opts, cert, extra))


def stream_roundtrip(port, pre, tls, source, data=b"ping\n"):
    s = connect(port, source)
    try:
        if pre:
            s.sendall(pre)
        if tls:
            s = ssl._create_unverified_context().wrap_socket(s, server_hostname="localhost")
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            d = s.recv(65536)
            if not d:
                break
            got += d
        return got
    finally:
        s.close()


@test("pp_stream_accept_and_send_through_haproxy")
def _(ctx):
    need_haproxy()
    e = PPEcho()
    try:
        gh = ctx.gatehouse_config(lambda ports: stream_conf(ctx, ports, e.port, "proxy_protocol from=%s" % TRUSTED,
                                                            pool="    proxy_protocol v2\n"), nports=2)
        hp = free_port()
        HAProxy(ctx, HA_GLOBAL + "frontend fe\n    mode tcp\n    bind 127.0.0.1:%d\n    default_backend be\n"
                "backend be\n    mode tcp\n    server gh 127.0.0.1:%d send-proxy-v2\n" % (hp, gh.ports[1]), hp)
        eq(stream_roundtrip(hp, b"", True, CLIENT), b"ping\n", "bytes through haproxy and the stream")
        check(wait_until(lambda: e.headers, 5 * T), "the server got no header")
        pp = e.headers[-1]
        eq((pp["v"], pp["src"], pp["dst"], pp["dport"]), (2, CLIENT, "127.0.0.1", hp),
           "header gatehouse sent: the client and address haproxy saw")
        eq(pp["tlvs"].get("02"), "localhost", "authority TLV (the SNI the stream's TLS read)")
        check(pp["tlvs"].get("21", "").startswith("TLSv1."), "SSL_VERSION sub-TLV: %r" % pp)
        log = os.path.join(ctx.dir, "access.log")
        check(wait_until(lambda: os.path.exists(log) and re.search(r"^%s .*stream=s " % re.escape(CLIENT),
                                                                   open(log).read(), re.M), 5 * T),
              "access-log line of the stream names the client: %r"
              % (open(log).read()[-400:] if os.path.exists(log) else None))
    finally:
        e.close()


@test("pp_stream_untrusted_malformed_slow")
def _(ctx):
    e = PPEcho()
    try:
        gh = ctx.gatehouse_config(lambda ports: stream_conf(ctx, ports, e.port, "proxy_protocol from=%s" % TRUSTED,
                                                            pool="    proxy_protocol v1\n", tls=False), nports=2)
        # trusted: a v1 header names the client of a plain TCP stream, and the header sent on says so
        eq(stream_roundtrip(gh.ports[1], v1("203.0.113.9"), False, TRUSTED), b"ping\n", "echo after a header")
        check(wait_until(lambda: e.headers, 5 * T), "the server got no header")
        eq((e.headers[-1]["v"], e.headers[-1]["src"], e.headers[-1]["dst"]), (1, "203.0.113.9", "192.0.2.1"),
           "header sent on: the received one's client and destination")
        # untrusted: the header is the client's own bytes, relayed as they are; ours names the real client
        forged = v1("203.0.113.66")
        eq(stream_roundtrip(gh.ports[1], b"", False, CLIENT, data=forged + b"ping\n"), forged + b"ping\n",
           "an untrusted client's header comes back as its data")
        eq(e.headers[-1]["src"], CLIENT, "the header sent for an untrusted client")
        # trusted, malformed or missing: closed, nothing reaches the server
        n = len(e.headers)
        for bad in (b"PROXY TCP4 1.2.3\r\nping\n", b"ping\n", v2(fam=0x51)):
            eq(refused(gh.ports[1], bad, then_close=False), b"", "answer to %r" % bad)
        # slow: closed at the handshake timeout
        s = connect(gh.ports[1], TRUSTED)
        try:
            s.sendall(b"PROXY TCP4 ")
            t0 = time.monotonic()
            got = read_all(s)
            took = time.monotonic() - t0
        finally:
            s.close()
        eq(got, b"", "answer to a slow header")
        check(1.2 * T <= took <= 4.0 * T, "closed after %.2fs, want about 1.5s" % took)
        eq(len(e.headers), n, "connections that reached the server after bad headers")
    finally:
        e.close()


@test("pp_stream_access_rules_and_per_ip_limit_follow_header")
def _(ctx):
    # Every connection comes from 127.0.0.1, the trusted sender: only the header's client tells them apart.
    e = PPEcho()
    try:
        gh = ctx.gatehouse_config(lambda ports: stream_conf(ctx, ports, e.port, "proxy_protocol from=%s" % TRUSTED,
                                                            tls=False, extra="    deny 203.0.113.0/24\n",
                                                            main="max_connections_per_ip 1\n"), nports=2)
        n = len(e.headers)
        eq(refused(gh.ports[1], v1("203.0.113.9") + b"ping\n", then_close=False), b"",
           "a denied network in the header: closed")
        eq(len(e.headers), n, "connections that reached the server for the denied client")
        eq(stream_roundtrip(gh.ports[1], v1("198.51.100.7"), False, TRUSTED), b"ping\n", "another header client")
        first = connect(gh.ports[1], TRUSTED)
        try:
            first.sendall(v2("198.51.100.50") + b"hold\n")
            eq(first.recv(5), b"hold\n", "the header client's first stream")
            eq(refused(gh.ports[1], v2("198.51.100.50") + b"ping\n", then_close=False), b"",
               "a second stream of the same header client (max_connections_per_ip 1)")
            eq(stream_roundtrip(gh.ports[1], v2("198.51.100.51"), False, TRUSTED), b"ping\n",
               "another header client while the first holds its stream")
        finally:
            first.close()
        log = os.path.join(ctx.dir, "access.log")
        text = lambda: open(log).read() if os.path.exists(log) else ""
        check(wait_until(lambda: re.search(r'^203\.0\.113\.9 .*stream=s .*end="denied by access rule"', text(),
                                           re.M) and
                         re.search(r'^198\.51\.100\.50 .*end="refused: max_connections_per_ip"', text(), re.M),
                         5 * T), "access-log lines of the refused name the header's clients: %r" % text()[-600:])
    finally:
        e.close()


@test("pp_stream_config_errors")
def _(ctx):
    base = ("pool e { server 127.0.0.1:9 }\nstream a {\n    listen 127.0.0.1:%d%s\n    proxy e\n}\n"
            "stream b {\n    listen 127.0.0.1:%d%s\n    sni b.test\n    proxy e\n}\n")
    p = free_port()
    cases = [(" tls # HERE", "", "invalid listen option \"tls\""),
             (" proxy_protocol # HERE", "", "proxy_protocol needs from=NETWORKS"),
             (" proxy_protocol from=10.0.0.0/8", " proxy_protocol from=10.0.0.0/16 # HERE",
              "has other proxy_protocol options")]
    for i, (a, b, want) in enumerate(cases):
        text = base % (p, a, p, b)
        path = write(ctx, "bad%d.conf" % i, text)
        code, out, err = check_file(ctx, path)
        check(code != 0 and "%s:%d: " % (path, marked_line(text)) in err and want in err,
              "error for %r: %r, want FILE:LINE and %r" % (a + b, err, want))
