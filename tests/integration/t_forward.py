"""The forward proxy (issue 9): a site with `forward { }`. curl -x / --proxy-user / --proxy https://
through gatehouse to origins the test starts: CONNECT (to a TLS origin: a reverse-proxy gatehouse in
front of a backend) and absolute-form (to a plain backend), allowed and denied by the rules, with and
without credentials; the SSRF defaults (names that resolve to loopback, private, metadata addresses,
from the test's own hosts file, CARES_HOSTS); DNS and connect timeouts; many idle tunnels.

Every origin is on 127.0.0.1, which is loopback: a rule must allow it with to=127.0.0.1 (the default
refuses it), which is what most tests here do; the SSRF tests leave it out."""
import ctypes
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

from harness import T, Conn, check, curl, eq, test, wait_until
from cfgutil import FakeHosts, log_lines, wait_log, write
from t_resolver import DnsServer

LIBCRYPT = ctypes.CDLL("libcrypt.so.1")
LIBCRYPT.crypt_gensalt_rn.restype = ctypes.c_char_p
LIBCRYPT.crypt_rn.restype = ctypes.c_char_p


def crypt_hash(password, prefix=b"$y$", cost=0):
    """A crypt(3) hash through libxcrypt (yescrypt by default, "$2b$" bcrypt): what mkpasswd writes. The _rn
    calls, with buffers of our own: tests run in threads, and crypt()'s static buffer is shared."""
    setting = ctypes.create_string_buffer(256)
    data = ctypes.create_string_buffer(32768)  # struct crypt_data
    check(LIBCRYPT.crypt_gensalt_rn(prefix, cost, None, 0, setting, 256) is not None, "crypt_gensalt_rn failed")
    h = LIBCRYPT.crypt_rn(password.encode(), setting, data, 32768)
    check(h is not None and h.startswith(b"$"), "crypt_rn failed: %r" % h)
    return h.decode()


LOCAL = "to=127.0.0.1/32"


def fwd_conf(ctx, forward_lines, tls=False, extra=(), env=None, dns=None, nports=1, site=()):
    c = ctx.session.certs()

    def conf(p):
        lines = ["workers 1", "log_level debug"]
        if dns is not None:
            lines.append("resolver 127.0.0.1:%d" % dns.port)
        lines += list(extra)
        lines.append("listen 127.0.0.1:%d%s" % (p[0], " tls" if tls else ""))
        lines += ["site proxy {", "    listen 127.0.0.1:%d" % p[0]]
        if tls:
            lines.append("    cert %s %s" % (c["ec_cert"], c["ec_key"]))
        lines += ["    " + ln for ln in site]
        lines.append("    forward {")
        lines += ["        " + ln for ln in forward_lines]
        lines += ["    }", "}", ""]
        return "\n".join(lines)
    return ctx.gatehouse_config(conf, nports=nports, env=env)


def tls_origin(ctx, b):
    """A TLS origin: a reverse-proxy gatehouse in front of backend b."""
    return ctx.gatehouse([b], workers=1)


def proxy_url(gh, scheme="http"):
    return "%s://127.0.0.1:%d" % (scheme, gh.ports[0])


def status_of(r):
    """curl -w '%{http_code}': the last status (the origin's, or the proxy's own)."""
    return int(r.stdout.decode().strip()[-3:] or 0)


@test("forward_connect_to_tls_origin")
def _(ctx):
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (origin.port, LOCAL)])
    r = curl(["-x", proxy_url(gh), "https://127.0.0.1:%d/id" % origin.port])
    eq(r.stdout, b"b", "body through the tunnel")
    check(wait_log(gh, r"tunnel from 127\.0\.0\.1 to 127\.0\.0\.1:%d by rule 1 ended \(closed\) after \d+ ms: \d+ bytes up, "
                   r"\d+ down" % origin.port, 5 * T) is not None,
          "the tunnel's log line (user, destination, rule, bytes, duration)")


@test("forward_absolute_form_to_origin")
def _(ctx):
    b = ctx.backend("b")
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL)])
    r = curl(["-x", proxy_url(gh), "-H", "X-Forwarded-For: 6.6.6.6", "http://127.0.0.1:%d/id" % b.port])
    eq(r.stdout, b"b", "body")
    # keep-alive to the origin: two requests of one curl reuse one upstream connection
    curl(["-x", proxy_url(gh), "http://127.0.0.1:%d/id" % b.port, "http://127.0.0.1:%d/id" % b.port])
    raw = b.raw().decode(errors="replace")
    check("GET /id HTTP/1.1" in raw, "origin-form upstream: %r" % raw[:200])
    check("http://" not in raw.split("\r\n")[0], "absolute-form went upstream: %r" % raw[:200])
    check(re.search(r"(?im)^host: 127\.0\.0\.1:%d\r$" % b.port, raw) is not None, "Host from the target")
    check(re.search(r"(?im)^(x-forwarded-for|forwarded|proxy-connection|proxy-authorization):", raw) is None,
          "client-address or proxy fields went upstream: %r" % raw[:600])
    check(b.accepts() <= 2, "upstream connections for 3 requests: %d (2 curl runs, keep-alive within one)"
          % b.accepts())


@test("forward_denied_by_default")
def _(ctx):
    # No rule: everything is denied (403), before any DNS query or connect.
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    gh = fwd_conf(ctx, ["rule allow host=allowed.example port=443"])
    r = curl(["-x", proxy_url(gh), "-w", "%{http_code}", "-o", "/dev/null", "http://127.0.0.1:%d/id" % b.port],
             ok=False)
    eq(status_of(r), 403, "absolute-form without a rule")
    r = curl(["-x", proxy_url(gh), "https://127.0.0.1:%d/id" % origin.port], ok=False)
    check(r.returncode != 0 and b"403" in r.stderr, "CONNECT without a rule: %r" % r.stderr[-200:])
    eq(len(b.requests()), 0, "requests that reached the backend")
    check(log_lines(gh, r"denied by the default") != [], "the denial logged")


@test("forward_connect_port_443_only_by_default")
def _(ctx):
    # A rule without port= covers CONNECT to 443 only: CONNECT to another port of an allowed host is 403.
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    gh = fwd_conf(ctx, ["rule allow host=127.0.0.1 " + LOCAL])
    r = curl(["-x", proxy_url(gh), "https://127.0.0.1:%d/id" % origin.port], ok=False)
    check(r.returncode != 0 and b"403" in r.stderr, "CONNECT to port %d: %r" % (origin.port, r.stderr[-200:]))
    r = curl(["-x", proxy_url(gh), "http://127.0.0.1:%d/id" % b.port])
    eq(r.stdout, b"b", "plain http to any port of the allowed host")


@test("forward_deny_rule_first_match_wins")
def _(ctx):
    b = ctx.backend("b")
    hosts = FakeHosts(ctx, ["127.0.0.1 a.fwd.test b.fwd.test"])
    gh = fwd_conf(ctx, ["rule deny host=b.fwd.test", "rule allow host=*.fwd.test port=%d %s" % (b.port, LOCAL)],
                  env=hosts.env())
    eq(curl(["-x", proxy_url(gh), "http://a.fwd.test:%d/id" % b.port]).stdout, b"b", "a.fwd.test")
    r = curl(["-x", proxy_url(gh), "-w", "%{http_code}", "-o", "/dev/null", "http://b.fwd.test:%d/id" % b.port],
             ok=False)
    eq(status_of(r), 403, "b.fwd.test (deny before allow)")
    r = curl(["-x", proxy_url(gh), "-w", "%{http_code}", "-o", "/dev/null", "http://fwd.test:%d/id" % b.port],
             ok=False)
    eq(status_of(r), 403, "fwd.test is not in *.fwd.test")


@test("forward_ssrf_internal_addresses_refused")
def _(ctx):
    # Names the test's hosts file maps to loopback, private, CGNAT, link-local, metadata and mapped
    # addresses: an `allow host=*` rule does not reach them, and the 403 says nothing of the address.
    b = ctx.backend("b")
    names = {"lo.test": "127.0.0.1", "ten.test": "10.1.2.3", "meta.test": "169.254.169.254",
             "cgnat.test": "100.64.0.1", "ula.test": "fd00:ec2::254", "mapped.test": "::ffff:127.0.0.1",
             "zero.test": "0.0.0.0", "priv.test": "192.168.1.1"}
    hosts = FakeHosts(ctx, ["%s %s" % (ip, n) for n, ip in names.items()])
    gh = fwd_conf(ctx, ["rule allow host=* port=1-65535"], env=hosts.env())
    for name, ip in names.items():
        r = curl(["-x", proxy_url(gh), "-sS", "-w", "\n%{http_code}", "http://%s:%d/id" % (name, b.port)], ok=False)
        out = r.stdout.decode(errors="replace")
        eq(out.strip().splitlines()[-1], "403", "status for %s (%s)" % (name, ip))
        check(ip not in out and "internal" not in out, "the 403 page hints at the address: %r" % out)
    eq(len(b.requests()), 0, "requests that reached the (loopback) backend")
    check(log_lines(gh, r"address 169\.254\.169\.254:\d+ is internal \(metadata\)") != [], "the metadata denial logged")
    # the same name with the range allowed explicitly
    gh2 = fwd_conf(ctx, ["rule allow host=lo.test port=%d %s" % (b.port, LOCAL)], env=hosts.env())
    eq(curl(["-x", proxy_url(gh2), "http://lo.test:%d/id" % b.port]).stdout, b"b", "with to=127.0.0.1/32")


@test("forward_ssrf_checks_the_address_connected_to")
def _(ctx):
    # A name with an address no rule allows (10.0.0.1) and one a rule does: only the judged address is
    # connected to, and the name is resolved once (a second lookup, as a check-then-getaddrinfo proxy
    # does, would let a rebinding DNS server answer differently the second time).
    b = ctx.backend("b")
    dns = DnsServer(ctx, {"rebind.test": (["10.0.0.1", "127.0.0.1"], 0, 0)})
    gh = fwd_conf(ctx, ["rule allow host=rebind.test port=%d %s" % (b.port, LOCAL)], dns=dns)
    eq(curl(["-x", proxy_url(gh), "http://rebind.test:%d/id" % b.port]).stdout, b"b", "through the allowed address")
    eq(dns.count("rebind.test"), 1, "A queries for one request")
    eq(log_lines(gh, r"10\.0\.0\.1.*(connect|failed)"), [], "a connect to the address no rule allows")


@test("forward_proxy_auth_basic")
def _(ctx):
    b = ctx.backend("b")
    users = write(ctx, "users", "# users\nalice:%s\nbob:%s\n" % (crypt_hash("wonder"), crypt_hash("builder", b"$2b$", 5)))
    gh = fwd_conf(ctx, ["auth %s realm=corp" % users, "rule allow user=alice port=%d %s" % (b.port, LOCAL),
                        "rule allow user=bob port=%d %s" % (b.port, LOCAL)])
    url = "http://127.0.0.1:%d/id" % b.port
    r = curl(["-x", proxy_url(gh), "-i", url], ok=False)
    head = r.stdout.decode(errors="replace")
    check(head.startswith("HTTP/1.1 407"), "without credentials: %r" % head[:100])
    check(re.search(r'(?im)^proxy-authenticate: basic realm="corp"', head) is not None, "Proxy-Authenticate")
    r = curl(["-x", proxy_url(gh), "--proxy-user", "alice:wrong", "-w", "%{http_code}", "-o", "/dev/null", url],
             ok=False)
    eq(status_of(r), 407, "wrong password")
    eq(curl(["-x", proxy_url(gh), "--proxy-user", "alice:wonder", url]).stdout, b"b", "alice (yescrypt)")
    eq(curl(["-x", proxy_url(gh), "--proxy-user", "bob:builder", url]).stdout, b"b", "bob (bcrypt)")
    raw = b.raw().decode(errors="replace")
    check("proxy-authorization" not in raw.lower(), "credentials forwarded to the origin")


@test("forward_proxy_auth_failures_rate_limited")
def _(ctx):
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder"))
    gh = fwd_conf(ctx, ["auth %s" % users, "auth_failures 3", "rule allow port=%d %s" % (b.port, LOCAL)])
    url = "http://127.0.0.1:%d/id" % b.port
    codes = [status_of(curl(["-x", proxy_url(gh), "--proxy-user", "alice:bad%d" % i, "-w", "%{http_code}",
                             "-o", "/dev/null", url], ok=False)) for i in range(5)]
    eq(codes, [407, 407, 407, 429, 429], "statuses of 5 wrong guesses")
    r = curl(["-x", proxy_url(gh), "--proxy-user", "alice:wonder", "-w", "%{http_code}", "-o", "/dev/null", url],
             ok=False)
    eq(status_of(r), 429, "even the right password while limited")


@test("forward_https_proxy_listener")
def _(ctx):
    # curl --proxy https://: TLS to the proxy, then CONNECT inside it to a TLS origin (TLS in TLS).
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    gh = fwd_conf(ctx, ["rule allow port=%d,%d %s" % (origin.port, b.port, LOCAL)], tls=True)
    r = curl(["--proxy", proxy_url(gh, "https"), "--proxy-insecure", "https://127.0.0.1:%d/id" % origin.port])
    eq(r.stdout, b"b", "CONNECT through an HTTPS proxy")
    r = curl(["--proxy", proxy_url(gh, "https"), "--proxy-insecure", "http://127.0.0.1:%d/id" % b.port])
    eq(r.stdout, b"b", "absolute-form through an HTTPS proxy")


@test("forward_dns_timeout_bounded")
def _(ctx):
    dns = DnsServer(ctx, {"slow.test": (["192.0.2.1"], 60, 30)})
    gh = fwd_conf(ctx, ["rule allow host=* port=80", "dns_timeout 1s"], dns=dns)
    t0 = time.monotonic()
    r = curl(["-x", proxy_url(gh), "-w", "%{http_code}", "-o", "/dev/null", "http://slow.test/"], ok=False)
    took = time.monotonic() - t0
    eq(status_of(r), 504, "status for a name that never resolves")
    check(took < 4 * T, "answered after %.1fs (dns_timeout 1s)" % took)
    r = curl(["-x", proxy_url(gh), "-w", "%{http_code}", "-o", "/dev/null", "http://nxdomain.test/"], ok=False)
    eq(status_of(r), 502, "status for a name that does not exist")


def blackhole_listener():
    """A port on 127.0.0.1 whose SYNs go unanswered: backlog 0, and its one queue place taken."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    fill = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(s.getsockname())
        except BlockingIOError:
            pass
        fill.append(c)
    time.sleep(0.2)
    return s, fill


@test("forward_connect_timeout_bounded")
def _(ctx):
    s, fill = blackhole_listener()
    port = s.getsockname()[1]
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (port, LOCAL), "connect_timeout 1s"])
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=10 * T) as c:
        c.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (port, port))
        head = c.recv(4096)
    took = time.monotonic() - t0
    check(head.startswith(b"HTTP/1.1 504"), "answer to a CONNECT that never connects: %r" % head[:60])
    check(took < 4 * T, "answered after %.1fs (connect_timeout 1s)" % took)
    for c in fill:
        c.close()
    s.close()


@test("forward_many_idle_tunnels_bounded_memory")
def _(ctx):
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    n = 300
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (origin.port, LOCAL), "max_tunnels_per_ip 0"])
    before = gh.rss_kib()
    socks = []
    try:
        for i in range(n):
            c = socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=10 * T)
            c.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % origin.port)
            socks.append(c)
        for c in socks:
            head = c.recv(4096)
            check(head.startswith(b"HTTP/1.1 200"), "tunnel answer: %r" % head[:60])
        after = gh.rss_kib()
        per = (after - before) / n
        ctx.note("%.1f KiB per idle CONNECT tunnel" % per)
        check(per < 40, "%.1f KiB per idle CONNECT tunnel" % per)
    finally:
        for c in socks:
            c.close()


@test("forward_tunnel_limit_per_client")
def _(ctx):
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (origin.port, LOCAL), "max_tunnels_per_ip 2"])
    socks, heads = [], []
    for i in range(3):
        c = socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=10 * T)
        c.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % origin.port)
        heads.append(c.recv(4096)[:12])
        socks.append(c)
    eq(heads, [b"HTTP/1.1 200", b"HTTP/1.1 200", b"HTTP/1.1 429"], "three tunnels with a limit of two")
    for c in socks:
        c.close()


@test("forward_config_errors_file_line")
def _(ctx):
    from cfgutil import marked_line
    import harness
    cases = [
        ("rule allow bogus=1", "invalid rule condition"),
        ("rule maybe host=x", "expected allow or deny"),
        ("rule allow port=70000", "invalid port"),
        ("rule allow to=10.0.0.1/8", "invalid network"),
        ("rule allow host=a*b", "invalid host pattern"),
        ("rule allow user=alice", "needs an \"auth FILE\""),
        ("auth /nonexistent/users", "cannot read users file"),
        ("rule allow via=nopool", "unknown pool"),
    ]
    for line, want in cases:
        text = "listen 127.0.0.1:1\nsite p {\n    listen 127.0.0.1:1\n    forward {\n        %s\n    }\n}\n" % line
        path = write(ctx, "bad.conf", text)
        r = subprocess.run([harness.GATEHOUSE, "-t", "-c", path], capture_output=True, timeout=10)
        err = r.stderr.decode(errors="replace")
        check(r.returncode != 0, "-t accepted %r" % line)
        check(("bad.conf:5:" in err or "bad.conf:" in err) and want in err, "for %r: %r" % (line, err[-300:]))
    users = write(ctx, "users.bad", "alice:plaintext\n")
    text = "listen 127.0.0.1:1\nsite p {\n    listen 127.0.0.1:1\n    forward {\n        auth %s\n    }\n}\n" % users
    path = write(ctx, "bad.conf", text)
    r = subprocess.run([harness.GATEHOUSE, "-t", "-c", path], capture_output=True, timeout=10)
    check("users.bad:1:" in r.stderr.decode() and "not a supported crypt(3) hash" in r.stderr.decode(),
          "a clear password in the users file: %r" % r.stderr.decode()[-300:])


def parent_pool(name, ports, health=True):
    lines = ["pool %s {" % name] + ["    server 127.0.0.1:%d" % p for p in ports]
    if health:
        lines.append("    health tcp interval=200ms timeout=500ms rise=1 fall=1")
    return lines + ["}"]


@test("forward_chain_gatehouse_to_gatehouse")
def _(ctx):
    # client -> gatehouse (via=parents) -> gatehouse (the parent, with auth) -> origin, CONNECT and absolute-form
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    users = write(ctx, "users", "child:%s\n" % crypt_hash("s3cret", b"$2b$", 5))
    parent = fwd_conf(ctx, ["auth %s" % users, "rule allow user=child port=%d,%d %s" % (origin.port, b.port, LOCAL)])
    child = fwd_conf(ctx, ["parent_auth parents child:s3cret", "rule allow host=127.0.0.1 port=1-65535 via=parents"],
                     extra=parent_pool("parents", [parent.ports[0]], health=False))
    eq(curl(["-x", proxy_url(child), "https://127.0.0.1:%d/id" % origin.port]).stdout, b"b", "CONNECT chained")
    eq(curl(["-x", proxy_url(child), "http://127.0.0.1:%d/id" % b.port]).stdout, b"b", "absolute-form chained")
    check(log_lines(parent, r"tunnel from 127\.0\.0\.1 user child to 127\.0\.0\.1:%d" % origin.port) != [] or
          wait_log(parent, r"user child to 127\.0\.0\.1:%d" % origin.port, 5 * T) is not None,
          "the parent saw the child's user")
    raw = b.raw().decode(errors="replace")
    check("proxy-authorization" not in raw.lower(), "credentials reached the origin")


@test("forward_parent_failover_when_one_is_killed")
def _(ctx):
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    p1 = fwd_conf(ctx, ["rule allow port=%d,%d %s" % (origin.port, b.port, LOCAL)])
    p2 = fwd_conf(ctx, ["rule allow port=%d,%d %s" % (origin.port, b.port, LOCAL)])
    child = fwd_conf(ctx, ["rule allow host=127.0.0.1 port=1-65535 via=parents"],
                     extra=parent_pool("parents", [p1.ports[0], p2.ports[0]], health=False))
    for i in range(4):
        eq(curl(["-x", proxy_url(child), "http://127.0.0.1:%d/id" % b.port]).stdout, b"b", "request %d" % i)
    p1.kill()
    for i in range(6):
        eq(curl(["-x", proxy_url(child), "http://127.0.0.1:%d/id" % b.port]).stdout, b"b",
           "absolute-form %d after a parent died" % i)
        eq(curl(["-x", proxy_url(child), "https://127.0.0.1:%d/id" % origin.port]).stdout, b"b",
           "CONNECT %d after a parent died" % i)


def start_squid(ctx, port):
    """squid (Debian's) as a parent proxy on port: (process, its directory); a clear failure if it is not there."""
    if shutil.which("squid") is None and not os.path.exists("/usr/sbin/squid"):
        raise Exception("squid is not installed (scripts/packages.txt, issue 9)")
    # squid started as root drops to its own user (proxy), which must reach its log directory: the test's
    # directory is private (0700), so squid gets one of its own beside it, linked from the test's
    import tempfile
    d = tempfile.mkdtemp(prefix="gh-squid-")
    os.chmod(d, 0o777)
    os.symlink(d, os.path.join(ctx.dir, "squid"))
    conf = os.path.join(d, "squid.conf")
    with open(conf, "w") as f:
        f.write("\n".join([
            "http_port 127.0.0.1:%d" % port, "pid_filename %s/squid.pid" % d, "cache_log %s/cache.log" % d,
            "access_log stdio:%s/access.log" % d, "cache deny all", "cache_mem 8 MB", "http_access allow all",
            "shutdown_lifetime 0 seconds", "coredump_dir %s" % d, "logfile_rotate 0", "pinger_enable off",
            "cache_effective_user proxy" if os.getuid() == 0 else "", ""]))
    p = ctx.popen(["squid", "-N", "-f", conf], stdout=open(os.path.join(d, "out"), "w"), stderr=subprocess.STDOUT)

    def up():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False
    check(wait_until(up, 20 * T), "squid did not start: %s" % open(os.path.join(d, "out")).read()[-500:])
    return p, d


@test("forward_chain_gatehouse_to_squid")
def _(ctx):
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    from harness import free_port
    sport = free_port()
    p, d = start_squid(ctx, sport)
    try:
        squid_chain(ctx, b, origin, sport, d)
    finally:
        shutil.rmtree(d, ignore_errors=True)  # squid's own directory, outside the test's


def squid_chain(ctx, b, origin, sport, d):
    child = fwd_conf(ctx, ["rule allow host=127.0.0.1 port=1-65535 via=squid"],
                     extra=parent_pool("squid", [sport], health=False))
    eq(curl(["-x", proxy_url(child), "https://127.0.0.1:%d/id" % origin.port]).stdout, b"b", "CONNECT via squid")
    eq(curl(["-x", proxy_url(child), "http://127.0.0.1:%d/id" % b.port]).stdout, b"b", "absolute-form via squid")
    want = ["CONNECT 127.0.0.1:%d" % origin.port, "GET http://127.0.0.1:%d/id" % b.port]

    def logged():
        log = open(os.path.join(d, "access.log")).read()
        return all(w in log for w in want)
    check(wait_until(logged, 10 * T), "squid's log: %r" % open(os.path.join(d, "access.log")).read()[-400:])


def connect_through(port, dest, timeout=None):
    """CONNECT dest through the proxy on port; returns (socket, answer head)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout or 10 * T)
    c.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (dest.encode(), dest.encode()))
    head = b""
    while b"\r\n\r\n" not in head:
        got = c.recv(4096)
        if not got:
            break
        head += got
    return c, head


@test("forward_happy_eyeballs_falls_back_to_ipv4")
def _(ctx):
    # he.test is ::1 then 127.0.0.1 (happy-eyeballs order puts IPv6 first); ::1's port never answers (a full
    # backlog), 127.0.0.1's is the backend. The IPv4 attempt starts 250 ms after the silent IPv6 one, far
    # within connect_timeout (5 s): the tunnel is up in well under a second.
    from cfgutil import port_free_on_both
    port = port_free_on_both()
    b = ctx.backend("b", port=port)
    s6 = socket.socket(socket.AF_INET6)
    s6.bind(("::1", port))
    s6.listen(0)
    fill = []
    for _ in range(3):
        c = socket.socket(socket.AF_INET6)
        c.setblocking(False)
        try:
            c.connect(("::1", port))
        except BlockingIOError:
            pass
        fill.append(c)
    hosts = FakeHosts(ctx, ["::1 he.test", "127.0.0.1 he.test"])
    gh = fwd_conf(ctx, ["rule allow host=he.test port=%d to=127.0.0.1/32,::1/128" % port, "connect_timeout 5s"],
                  env=hosts.env())
    t0 = time.monotonic()
    c, head = connect_through(gh.ports[0], "he.test:%d" % port)
    took = time.monotonic() - t0
    check(head.startswith(b"HTTP/1.1 200"), "answer: %r" % head[:80])
    check(took < 2 * T, "tunnel after %.2fs (the IPv6 attempt never answers; connect_timeout 5s)" % took)
    c.sendall(b"GET /id HTTP/1.1\r\nHost: he.test\r\nConnection: close\r\n\r\n")
    body = b""
    while True:
        got = c.recv(4096)
        if not got:
            break
        body += got
    check(body.endswith(b"b"), "response through the tunnel: %r" % body[-80:])
    c.close()
    for x in fill:
        x.close()
    s6.close()


@test("forward_auth_success_not_rehashed")
def _(ctx):
    # bcrypt at cost 13 takes ~0.5-1 s per check: the first request pays it, the next ones (new connections
    # with the same credentials, as curl sends them) are answered from the worker's cache in milliseconds.
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 13))
    gh = fwd_conf(ctx, ["auth %s" % users, "rule allow port=%d %s" % (b.port, LOCAL)])
    url = "http://127.0.0.1:%d/id" % b.port
    t0 = time.monotonic()
    eq(curl(["-x", proxy_url(gh), "--proxy-user", "alice:wonder", url]).stdout, b"b", "first")
    first = time.monotonic() - t0
    t0 = time.monotonic()
    for i in range(5):
        eq(curl(["-x", proxy_url(gh), "--proxy-user", "alice:wonder", url]).stdout, b"b", "request %d" % i)
    rest = (time.monotonic() - t0) / 5
    ctx.note("first %.0f ms, then %.0f ms per request" % (first * 1000, rest * 1000))
    check(rest < first / 3, "cached requests took %.0f ms each, the first %.0f ms" % (rest * 1000, first * 1000))
    # a wrong password is never served from the cache
    r = curl(["-x", proxy_url(gh), "--proxy-user", "alice:wonderX", "-w", "%{http_code}", "-o", "/dev/null", url],
             ok=False)
    eq(status_of(r), 407, "wrong password after a cached success")


@test("forward_users_file_read_again_at_reload")
def _(ctx):
    import signal
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("one"))
    gh = fwd_conf(ctx, ["auth %s" % users, "rule allow port=%d %s" % (b.port, LOCAL)])
    url = "http://127.0.0.1:%d/id" % b.port
    eq(curl(["-x", proxy_url(gh), "--proxy-user", "alice:one", url]).stdout, b"b", "before the reload")
    write(ctx, "users", "alice:%s\n" % crypt_hash("two"))
    gh.allow_worker_change = True  # the prober (not a worker) restarts with every reload
    worker = gh.workers()[0] if hasattr(gh, "workers") else None
    gh.signal(signal.SIGHUP)

    def new_password():
        r = curl(["-x", proxy_url(gh), "--proxy-user", "alice:two", "-w", "%{http_code}", "-o", "/dev/null", url],
                 ok=False)
        return status_of(r) == 200
    check(wait_until(new_password, 10 * T), "the new password after SIGHUP")
    r = curl(["-x", proxy_url(gh), "--proxy-user", "alice:one", "-w", "%{http_code}", "-o", "/dev/null", url],
             ok=False)
    eq(status_of(r), 407, "the old password after the reload (cached before it)")
    if worker is not None:
        check(worker in gh.workers(), "the worker was replaced: the reload must happen inside it")


@test("forward_access_log_user_rule_bytes_duration")
def _(ctx):
    b = ctx.backend("b")
    origin = tls_origin(ctx, b)
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    combined = os.path.join(ctx.dir, "combined.log")
    custom = os.path.join(ctx.dir, "custom.log")
    gh = fwd_conf(ctx, ["auth %s" % users, "rule allow user=alice port=%d,%d %s" % (origin.port, b.port, LOCAL)],
                  extra=['log_format fwd "$remote_user $forward_rule $request $status $request_time"'],
                  site=["access_log %s" % combined])
    gh2 = fwd_conf(ctx, ["auth %s" % users, "rule allow user=alice port=%d,%d %s" % (origin.port, b.port, LOCAL)],
                   extra=['log_format fwd "$remote_user $forward_rule $request $status $request_time"'],
                   site=["access_log %s format=fwd" % custom])
    eq(curl(["-x", proxy_url(gh), "--proxy-user", "alice:wonder", "https://127.0.0.1:%d/id" % origin.port]).stdout,
       b"b", "CONNECT")
    eq(curl(["-x", proxy_url(gh2), "--proxy-user", "alice:wonder", "http://127.0.0.1:%d/id" % b.port]).stdout,
       b"b", "absolute-form")

    def line(path, pat):
        try:
            return re.search(pat, open(path).read())
        except OSError:
            return None
    want = (r'127\.0\.0\.1 - alice \[[^]]+\] "CONNECT 127\.0\.0\.1:%d HTTP/1\.1" 200 \d+ .* tunnel=\d+\.\d+s '
            r'in=[1-9]\d* out=[1-9]\d* to=127\.0\.0\.1:%d' % (origin.port, origin.port))
    check(wait_until(lambda: line(combined, want), 5 * T), "tunnel line: %r" % open(combined).read()[-300:])
    want = r"alice \S+gatehouse\d\.conf:\d+ GET http://127\.0\.0\.1:%d/id HTTP/1\.1 200 \d" % b.port
    check(wait_until(lambda: line(custom, want), 5 * T), "absolute-form line: %r" % open(custom).read()[-300:])


@test("forward_client_gone_while_resolving_or_connecting")
def _(ctx):
    # The client leaves while its name is being resolved (a DNS server that answers after 1.5 s), and while
    # its connect waits on a port that never answers: the query and the connect are dropped with the
    # exchange, and the late DNS answer finds nobody waiting (no crash: the harness checks the worker).
    s, fill = blackhole_listener()
    port = s.getsockname()[1]
    dns = DnsServer(ctx, {"slow.test": (["127.0.0.1"], 60, 1.5)})
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (port, LOCAL), "connect_timeout 3s", "dns_timeout 5s"], dns=dns)
    for dest in ["slow.test:%d" % port, "127.0.0.1:%d" % port]:
        for _ in range(5):
            c = socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=5 * T)
            c.sendall(b"CONNECT %s HTTP/1.1\r\nHost: x\r\n\r\n" % dest.encode())
            time.sleep(0.05)
            c.close()
    time.sleep(2.5)
    eq(curl(["-x", proxy_url(gh), "-w", "%{http_code}", "-o", "/dev/null", "http://nx.test:%d/" % port],
            ok=False).stdout,
       b"502", "a request after them")
    for c in fill:
        c.close()
    s.close()


@test("forward_407_to_a_request_with_a_body_lost_proxy_authenticate")
def _(ctx):
    # A request whose body was not read yet when credentials were refused (a POST, its body still coming)
    # got the bare 407 of a failed exchange, without Proxy-Authenticate (RFC 9110 11.7.1 requires it): a
    # client could not learn the scheme and realm. The 407 carries it, and the connection closes (the body
    # is unread).
    b = ctx.backend("b")
    users = write(ctx, "users", "alice:%s\n" % crypt_hash("wonder", b"$2b$", 5))
    gh = fwd_conf(ctx, ["auth %s realm=corp" % users, "rule allow port=%d %s" % (b.port, LOCAL)])
    with socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=5 * T) as c:
        c.sendall(b"POST http://127.0.0.1:%d/upload HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 100000\r\n\r\n"
                  % (b.port, b.port) + b"x" * 1000)
        head = b""
        while b"\r\n\r\n" not in head:
            got = c.recv(4096)
            if not got:
                break
            head += got
    text = head.decode(errors="replace")
    check(text.startswith("HTTP/1.1 407"), "answer: %r" % text[:80])
    check(re.search(r'(?im)^proxy-authenticate: basic realm="corp"', text) is not None, "Proxy-Authenticate: %r" % text)
    eq(len(b.requests()), 0, "requests that reached the backend")


@test("forward_keepalive_connection_kept_old_config_after_reload")
def _(ctx):
    # A reload moves a client connection to the new configuration between requests; a forward proxy's
    # listener was not found in it (only reverse-proxy listeners were looked for), so its next request ran
    # on the old rules and the connection closed after it. Now the request after the reload is judged by the
    # new rules (here: denied) and the connection stays open.
    import signal
    b = ctx.backend("b")
    gh = fwd_conf(ctx, ["rule allow port=%d %s" % (b.port, LOCAL)])
    gh.allow_worker_change = True  # the prober restarts with a reload
    req = b"GET http://127.0.0.1:%d/id HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (b.port, b.port)

    def answer(c):
        got = b""
        while b"\r\n\r\n" not in got:
            d = c.recv(4096)
            if not d:
                return got
            got += d
        head, body = got.split(b"\r\n\r\n", 1)
        n = int(re.search(rb"(?i)\r\ncontent-length: (\d+)", head).group(1))
        while len(body) < n:
            body += c.recv(4096)
        return head
    with socket.create_connection(("127.0.0.1", gh.ports[0]), timeout=5 * T) as c:
        c.sendall(req)
        check(answer(c).startswith(b"HTTP/1.1 200"), "before the reload")
        with open(gh.conf_path) as f:
            text = f.read()
        with open(gh.conf_path, "w") as f:
            f.write(text.replace("rule allow port=%d" % b.port, "rule allow port=%d" % (b.port + 1 if b.port < 65535 else 1)))
        before = gh.stderr()
        gh.signal(signal.SIGHUP)
        check(wait_until(lambda: re.search(r"\[info\] \d+ reloaded ", gh.stderr()[len(before):]), 10 * T), "the reload")
        c.sendall(req)
        head = answer(c)
        check(head.startswith(b"HTTP/1.1 403"), "the request after the reload (its port no longer allowed): %r" % head[:80])
        c.sendall(req)
        head = answer(c)
        check(head.startswith(b"HTTP/1.1 403"), "the connection after the reload: %r" % head[:80])
