"""The configuration file: `gatehouse -t -c FILE` (valid, and each kind of error reported as
FILE:LINE), certificates that exist but cannot be used, `-c` refusing what `-t` refuses, and a
config with a TLS and a plain listener that both serve."""
import os
import re
import socket
import subprocess
import time

from harness import GATEHOUSE, T, Conn, Fail, check, eq, free_port, test
from cfgutil import PlainConn, check_file, marked_line, write


def base(ctx, cert=None, key=None, extra_top="", extra_pool="", extra_site="", site_certs=None, p1=None, p2=None):
    """A valid file with a TLS and a plain listener, a pool and two sites. The extra_* pieces are
    inserted as whole lines (they may carry the '# HERE' mark)."""
    c = ctx.session.certs()
    cert = cert or c["ec_cert"]
    key = key or c["ec_key"]
    certs = site_certs if site_certs is not None else "    cert %s %s\n" % (cert, key)
    p1 = p1 or free_port()
    p2 = p2 or free_port()
    return (
        "# a valid configuration for gatehouse -t\n"
        "workers 1\n"
        "log_level info\n"
        "max_body 1m\n"
        "timeouts {\n"
        "    connect 2s; response 10s\n"
        "    handshake 5s\n"
        "}\n"
        "listen 127.0.0.1:%d tls\n"
        "listen 127.0.0.1:%d\n"
        "%s"
        "pool app {\n"
        "    server 127.0.0.1:9 weight=2\n"
        "    server 127.0.0.1:10 backup\n"
        "    balance round_robin\n"
        "    health http GET /healthz status=200-399 interval=1s timeout=500ms rise=2 fall=3\n"
        "    passive fails=3 window=10s eject=5s\n"
        "%s"
        "}\n"
        "site app.test *.app.test {\n"
        "    listen 127.0.0.1:%d\n"
        "%s"
        "    route / { proxy app }\n"
        "    route /api/ {\n"
        "        proxy app strip_prefix\n"
        "        timeout response 5s\n"
        "        max_body 16k\n"
        "    }\n"
        "%s"
        "}\n"
        "site default {\n"
        "    listen 127.0.0.1:%d\n"
        "    route / { redirect 308 https://$host$request_uri }\n"
        "}\n" % (p1, p2, extra_top, extra_pool, p1, certs, extra_site, p2))


def expect_error(ctx, text, what, reason_re=None, name="gh.conf", line=None, file=None):
    """-t on text must exit 1 and report FILE:LINE of the marked line (or of line/file given)."""
    path = write(ctx, name, text)
    line = line or marked_line(text)
    code, out, err = check_file(ctx, path)
    eq(code, 1, "exit code of -t for %s" % what)
    where = "%s:%d:" % (file or path, line)
    check(where in err, "%s: stderr does not say %r: %r" % (what, where, err[-400:]))
    check("configuration is valid" not in out + err, "%s: -t says the file is valid: %r" % (what, out + err))
    # One error, at that place: no other FILE:LINE of this file.
    others = set(re.findall(re.escape(file or path) + r":(\d+):", err)) - {str(line)}
    check(not others, "%s: stderr also names lines %s: %r" % (what, sorted(others), err[-400:]))
    if reason_re:
        check(re.search(reason_re, err, re.I), "%s: the reason does not match %r: %r" % (what, reason_re, err[-400:]))
    return err


@test("config_check_valid")
def _(ctx):
    path = write(ctx, "valid.conf", base(ctx))
    code, out, err = check_file(ctx, path)
    eq(code, 0, "exit code of -t on a valid file (stderr %r)" % err[-300:])
    check("configuration is valid" in out + err, "-t does not say 'configuration is valid': %r" % (out + err))
    # The shipped example is syntactically fine; its certificates do not exist here, so the only
    # complaint allowed is about reading a certificate, with its file:line.
    ex = os.path.join(os.path.dirname(GATEHOUSE), "..", "examples", "gatehouse.conf")
    ex = os.path.normpath(ex)
    if os.path.exists(ex):
        code, out, err = check_file(ctx, ex)
        if code != 0:
            check(re.search(r"gatehouse\.conf:\d+: cannot read certificate", err),
                  "examples/gatehouse.conf fails -t for another reason than its absent certificates: %r" % err)


@test("config_check_does_not_bind")
def _(ctx):
    # -t only checks: a listener whose port is taken (by us) is still a valid file.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        p1 = s.getsockname()[1]
        path = write(ctx, "valid.conf", base(ctx, p1=p1))
        t0 = time.monotonic()
        code, out, err = check_file(ctx, path)
        eq(code, 0, "exit code of -t with a listener port in use (stderr %r)" % err[-300:])
        check(time.monotonic() - t0 < 3 * T, "-t took %.1fs" % (time.monotonic() - t0))
    finally:
        s.close()


@test("config_error_unknown_directive")
def _(ctx):
    expect_error(ctx, base(ctx, extra_site="    proxy_pass http://127.0.0.1:9 # HERE\n"), "unknown directive",
                 r"unknown directive.*proxy_pass")


@test("config_error_bad_duration")
def _(ctx):
    text = base(ctx).replace("    handshake 5s\n", "    handshake 5parsecs # HERE\n")
    expect_error(ctx, text, "bad duration in timeouts", r"5parsecs|duration")
    text = base(ctx).replace("interval=1s timeout=500ms rise=2 fall=3\n",
                             "interval=fast timeout=500ms rise=2 fall=3 # HERE\n")
    expect_error(ctx, text, "bad duration in health", r"fast|duration|interval")
    expect_error(ctx, base(ctx, extra_site="    route /slow/ { proxy app; timeout response 0 } # HERE\n"),
                 "zero duration", r"duration|zero|0")


@test("config_error_unknown_pool")
def _(ctx):
    expect_error(ctx, base(ctx, extra_site="    route /x/ {\n        proxy nosuch # HERE\n    }\n"), "unknown pool",
                 r"unknown pool.*nosuch")


@test("config_error_duplicate_listener")
def _(ctx):
    p1 = free_port()
    text = base(ctx, p1=p1, extra_top="listen 127.0.0.1:%d tls # HERE\n" % p1)
    err = expect_error(ctx, text, "duplicate listener", r"duplicate listener")
    check(re.search(r"first at .*:9\b", err), "duplicate listener: the first one (line 9) is not named: %r" % err)


@test("config_error_unreadable_certificate")
def _(ctx):
    c = ctx.session.certs()
    missing = os.path.join(ctx.dir, "no-such-cert.pem")
    expect_error(ctx, base(ctx, site_certs="    cert %s %s # HERE\n" % (missing, c["ec_key"])),
                 "missing certificate file", r"no-such-cert\.pem")
    missing_key = os.path.join(ctx.dir, "no-such-key.pem")
    expect_error(ctx, base(ctx, site_certs="    cert %s %s # HERE\n" % (c["ec_cert"], missing_key)),
                 "missing key file", r"no-such-key\.pem")
    # A directory is not a readable certificate either.
    expect_error(ctx, base(ctx, site_certs="    cert %s %s # HERE\n" % (ctx.dir, c["ec_key"])),
                 "certificate path that is a directory")


@test("config_error_include_missing")
def _(ctx):
    expect_error(ctx, base(ctx, extra_top="include %s/no-such-dir/extra.conf # HERE\n" % ctx.dir),
                 "include of a missing file", r"no-such-dir/extra\.conf")
    # Relative to the including file's directory: it does not exist there either.
    expect_error(ctx, base(ctx, extra_site="    include routes/missing.conf # HERE\n"),
                 "relative include of a missing file", r"missing\.conf")
    # A glob that matches nothing is fine.
    path = write(ctx, "glob.conf", base(ctx, extra_top="include conf.d/*.conf\n"))
    code, out, err = check_file(ctx, path)
    eq(code, 0, "-t with an include glob matching nothing (stderr %r)" % err[-300:])


@test("config_error_in_included_file")
def _(ctx):
    inc = "    route /inc/ { proxy app }\n    route /inc2/ {\n        proxi app\n    }\n"
    write(ctx, "sites/routes.conf", inc)
    main = base(ctx, extra_site="    include sites/*.conf\n")
    path = write(ctx, "main.conf", main)
    code, out, err = check_file(ctx, path)
    eq(code, 1, "exit code of -t with an error in an included file")
    check(re.search(r"(^|[\s/])sites/routes\.conf:3: ", err),
          "stderr does not name the included file and line (routes.conf:3): %r" % err[-400:])
    check(re.search(r"unknown directive.*proxi", err), "reason: %r" % err[-300:])
    # The same include without the error is valid (the included routes are taken).
    write(ctx, "sites/routes.conf", inc.replace("proxi app", "proxy app"))
    code, out, err = check_file(ctx, path)
    eq(code, 0, "-t with a valid included file (stderr %r)" % err[-300:])
    # A file that includes itself.
    text = base(ctx, extra_top="include self.conf # HERE\n")
    expect_error(ctx, text, "include cycle", r"cycle", name="self.conf")


@test("config_error_more")
def _(ctx):
    cases = [
        ("wrong argument count", base(ctx).replace("balance round_robin\n", "balance # HERE\n"), r"arguments"),
        ("unknown balance", base(ctx).replace("balance round_robin\n", "balance fastest # HERE\n"), r"fastest"),
        ("balance given twice", base(ctx, extra_pool="    balance p2c # HERE\n"), r"duplicate"),
        ("bad weight", base(ctx).replace("weight=2\n", "weight=0 # HERE\n"), r"weight"),
        ("bad size", base(ctx).replace("max_body 1m\n", "max_body 1q # HERE\n"), r"1q|size"),
        ("bad status", base(ctx, extra_site="    route /r/ { redirect 200 https://x/ } # HERE\n"), r"200|status"),
        ("304 is not a redirect", base(ctx, extra_site="    route /r/ { redirect 304 https://x/ } # HERE\n"), r"304"),
        ("respond status 99", base(ctx, extra_site="    route /r/ { respond 99 } # HERE\n"), r"99"),
        ("unknown redirect variable", base(ctx, extra_site="    route /r/ { redirect 301 https://$hots/ } # HERE\n"),
         r"hots"),
        ("two actions", base(ctx, extra_site="    route /two/ { proxy app; respond 200 } # HERE\n"), None),
        ("route without action", base(ctx, extra_site="    route /none/ { max_body 1k } # HERE\n"), None),
        ("same route twice", base(ctx, extra_site="    route /api/ { proxy app } # HERE\n"), None),
        ("framing header set", base(ctx, extra_site="    route /cl/ {\n        proxy app\n"
                                    "        request_header set Content-Length 5 # HERE\n    }\n"), r"content-length"),
        ("site without cert on a TLS listener", base(ctx, site_certs=""), None),
        ("unknown listener in a site", base(ctx, extra_site="    listen 127.0.0.1:1 # HERE\n"), None),
        ("unterminated string", base(ctx, extra_site="    route /q/ { respond 200 \"abc } # HERE\n"), None),
    ]
    for what, text, reason in cases:
        if what == "site without cert on a TLS listener":
            # The error points at the site (line of `site app.test`).
            line = [i + 1 for i, ln in enumerate(text.split("\n")) if ln.startswith("site app.test")][0]
            path = write(ctx, "nocert.conf", text)
            code, out, err = check_file(ctx, path)
            eq(code, 1, "exit code of -t for " + what)
            check(re.search(re.escape(path) + r":\d+: .*cert", err), "%s: no FILE:LINE naming the cert: %r" % (what, err))
            check("%s:%d:" % (path, line) in err, "%s: the line is not the site's (%d): %r" % (what, line, err))
            continue
        expect_error(ctx, text, what, reason)


def cert_error(ctx, what, certs_lines, bad_line_index):
    """certs_lines: the site's cert lines; the one at bad_line_index gets the mark."""
    lines = [ln + (" # HERE" if i == bad_line_index else "") + "\n" for i, ln in enumerate(certs_lines)]
    text = base(ctx, site_certs="".join(lines))
    err = expect_error(ctx, text, what + " (-t)")
    # Running it (-c) must refuse in the same words and leave no process behind.
    path = write(ctx, "run.conf", text)
    line = marked_line(text)
    p = ctx.popen([GATEHOUSE, "-c", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err2 = p.communicate(timeout=10 * T)
    except subprocess.TimeoutExpired:
        raise Fail("%s: gatehouse -c started anyway (still running after %.0fs)" % (what, 10 * T))
    err2 = err2.decode(errors="replace")
    check(p.returncode != 0, "%s: gatehouse -c exited 0" % what)
    check("%s:%d:" % (path, line) in err2, "%s: gatehouse -c does not say %s:%d: %r" % (what, path, line, err2[-400:]))
    return err


@test("config_error_unusable_certificate")
def _(ctx):
    c = ctx.session.certs()
    cert_error(ctx, "garbage certificate", ["    cert %s %s" % (c["garbage"], c["ec_key"])], 0)
    cert_error(ctx, "certificate that is not PEM", ["    cert %s %s" % (c["text"], c["ec_key"])], 0)
    cert_error(ctx, "key that does not match", ["    cert %s %s" % (c["ec_cert"], c["wrong_key"])], 0)
    cert_error(ctx, "RSA certificate with the ECDSA key", ["    cert %s %s" % (c["rsa_cert"], c["ec_key"])], 0)


@test("config_error_unusable_second_certificate")
def _(ctx):
    # A site with a good ECDSA pair and a bad RSA pair: the error is the line of the bad one.
    c = ctx.session.certs()
    good = "    cert %s %s" % (c["ec_cert"], c["ec_key"])
    cert_error(ctx, "second cert does not match its key", [good, "    cert %s %s" % (c["rsa_cert"], c["wrong_key"])], 1)
    cert_error(ctx, "second cert is garbage", [good, "    cert %s %s" % (c["garbage"], c["rsa_key"])], 1)


@test("config_error_too_many_servers_names_no_line")
def _(ctx):
    # Every address of every pool has a slot in the shared health region (GH_HEALTH_MAX_SLOTS,
    # 4096). The error for one server too many said only the file: it must name that server's line.
    pools = []
    for i in range(64):
        pools.append("pool many%d {\n" % i + "".join("    server 127.%d.%d.1:80\n" % (i + 1, k + 1) for k in range(64))
                     + "}\n")
    pools.append("pool over {\n    server 127.100.0.1:80 # HERE\n}\n")
    # The base's own pool (2 servers) comes after these, so the first server past 4096 is the marked one.
    expect_error(ctx, base(ctx, extra_top="".join(pools)), "one server more than the health slots",
                 r"servers \(addresses\) in all pools")


def opens_under_strace(ctx, argv, paths):
    """Runs argv (a gatehouse -t) under strace; returns {path: number of open/openat calls on it}."""
    out = os.path.join(ctx.dir, "strace-%d.out" % len(os.listdir(ctx.dir)))
    asan = os.environ.get("ASAN_OPTIONS", "")
    env = dict(os.environ, ASAN_OPTIONS=(asan + ":" if asan else "") + "detect_leaks=0")  # LSan fails under ptrace
    p = ctx.popen(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", out] + argv, env=env,
                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        so, se = p.communicate(timeout=20 * T)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise Fail("%s under strace did not exit" % argv)
    eq(p.returncode, 0, "exit code of %s (stderr %r)" % (argv, se[-300:]))
    with open(out, errors="replace") as f:
        lines = f.read().splitlines()
    return {f: sum(1 for ln in lines if re.search(r"\bopen(at)?\(", ln) and '"%s"' % f in ln) for f in paths}


@test("config_load_reads_certificate_more_than_once")
def _(ctx):
    # The load read each certificate and key three times from the disk (the readability check, the
    # site's context, the TLS listener's own context): a file replaced meanwhile could give one
    # generation two different certificates. Once each, from a file and from the command line.
    c = ctx.session.certs()
    cert, key = c["ec_cert"], c["ec_key"]
    path = write(ctx, "gh.conf", base(ctx, cert=cert, key=key))
    got = opens_under_strace(ctx, [GATEHOUSE, "-t", "-c", path], [cert, key])
    eq(got, {cert: 1, key: 1}, "opens of the certificate and key during -t -c FILE")
    argv = [GATEHOUSE, "-t", "--listen", "127.0.0.1:%d" % free_port(), "--cert", cert, "--key", key,
            "--to", "127.0.0.1:9"]
    got = opens_under_strace(ctx, argv, [cert, key])
    eq(got, {cert: 1, key: 1}, "opens of the certificate and key during -t with the quick-start flags")
    ctx.info = "each of %s, %s opened once" % (os.path.basename(cert), os.path.basename(key))


@test("config_run_refuses_invalid")
def _(ctx):
    text = base(ctx, extra_site="    proxy_pass x # HERE\n")
    path = write(ctx, "bad.conf", text)
    line = marked_line(text)
    p = ctx.popen([GATEHOUSE, "-c", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=10 * T)
    except subprocess.TimeoutExpired:
        raise Fail("gatehouse -c on an invalid file is still running after %.0fs" % (10 * T))
    err = err.decode(errors="replace")
    check(p.returncode != 0, "gatehouse -c on an invalid file exited 0")
    check("%s:%d:" % (path, line) in err, "gatehouse -c does not say %s:%d: %r" % (path, line, err[-300:]))
    missing = os.path.join(ctx.dir, "absent.conf")
    code, out, err = check_file(ctx, missing)
    eq(code, 1, "-t on a file that does not exist")
    check(re.search(re.escape(missing) + r": cannot read", err), "no 'FILE: cannot read': %r" % err)


@test("config_two_listeners_serve")
def _(ctx):
    b = ctx.backend("b1")
    c = ctx.session.certs()

    def conf(ports):
        return ("workers 2\n"
                "listen 127.0.0.1:%d tls\n"
                "listen 127.0.0.1:%d\n"
                "pool app { server 127.0.0.1:%d }\n"
                "site default {\n"
                "    cert %s %s\n"
                "    route / { proxy app }\n"
                "}\n" % (ports[0], ports[1], b.port, c["ec_cert"], c["ec_key"]))
    gh = ctx.gatehouse_config(conf, nports=2)
    tls_port, plain_port = gh.ports
    for i in range(3):
        with Conn(tls_port) as cn:
            r = cn.request("GET", "/id?via=tls%d" % i)
            eq((r.status, r.body), (200, b"b1"), "GET over the TLS listener")
        with PlainConn(plain_port) as cn:
            r = cn.request("GET", "/id?via=plain%d" % i, host="example.test")
            eq((r.status, r.body), (200, b"b1"), "GET over the plain listener")
            r = cn.request("GET", "/echo?via=plain-ka%d" % i, host="example.test")
            eq(r.status, 200, "second request on the plain keep-alive connection")
            # X-Forwarded-Proto (or Forwarded proto=) says http for the plain listener.
            head = r.body.decode("latin-1").lower()
            check("x-forwarded-proto: http\r\n" in head or "proto=http;" in head or "proto=http\r\n" in head,
                  "the plain listener's request does not say proto http upstream: %r" % head)
    targets = [e["target"] for e in b.requests()]
    for i in range(3):
        check("/id?via=tls%d" % i in targets and "/id?via=plain%d" % i in targets,
              "the backend did not see both listeners' requests: %r" % targets)
    # TLS on the plain port is not spoken, and plain HTTP on the TLS port is not served.
    s = socket.create_connection(("127.0.0.1", tls_port), timeout=3 * T)
    s.sendall(b"GET /id?via=plain-on-tls HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = s.recv(100)
    except OSError:
        data = b""
    s.close()
    check(not data.startswith(b"HTTP/1.1 200"), "plain HTTP served on the TLS listener: %r" % data)
    check("/id?via=plain-on-tls" not in [e["target"] for e in b.requests()], "plain HTTP on the TLS port reached the backend")


@test("config_include_and_relative_paths")
def _(ctx):
    # Sites and routes from included files, certificates relative to the including file's directory.
    import shutil
    b = ctx.backend("b1")
    c = ctx.session.certs()
    os.makedirs(os.path.join(ctx.dir, "etc", "sites"), exist_ok=True)
    os.makedirs(os.path.join(ctx.dir, "etc", "tls"), exist_ok=True)
    shutil.copy(c["ec_cert"], os.path.join(ctx.dir, "etc", "tls", "site.pem"))
    shutil.copy(c["ec_key"], os.path.join(ctx.dir, "etc", "tls", "site.key"))
    write(ctx, "etc/sites/10-app.conf",
          "site app.test {\n    cert ../tls/site.pem ../tls/site.key\n    include ../routes/app-*.conf\n}\n")
    write(ctx, "etc/routes/app-1.conf", "route /one { respond 200 \"one\" }\n")
    write(ctx, "etc/routes/app-2.conf", "route / { proxy app }\n")
    path = os.path.join(ctx.dir, "etc", "gatehouse.conf")

    def conf(p):
        text = ("workers 1\nlisten 127.0.0.1:%d tls\npool app { server 127.0.0.1:%d }\ninclude sites/*.conf\n"
                % (p[0], b.port))
        with open(path, "w") as f:
            f.write(text)
        return text
    gh = ctx.gatehouse_config(conf, nports=1, name="etc/gatehouse.conf")
    with Conn(gh.port, sni="app.test") as cn:
        r = cn.request("GET", "/one", host="app.test")
        eq((r.status, r.body), (200, b"one"), "a route from an included file")
        r = cn.request("GET", "/id", host="app.test")
        eq((r.status, r.body), (200, b"b1"), "the proxy route from another included file")
        r = cn.request("GET", "/id", host="other.test")
        eq(r.status, 421, "a Host that no included site serves")


@test("config_global_max_body")
def _(ctx):
    b = ctx.backend("b1")
    c = ctx.session.certs()

    def conf(p):
        return ("workers 1\nmax_body 100\nlisten 127.0.0.1:%d tls\npool app { server 127.0.0.1:%d }\n"
                "site default {\n    cert %s %s\n    route / { proxy app }\n"
                "    route /big/ { proxy app strip_prefix; max_body off }\n"
                "    route /none/ { proxy app strip_prefix; max_body 0 }\n}\n"
                % (p[0], b.port, c["ec_cert"], c["ec_key"]))
    gh = ctx.gatehouse_config(conf, nports=1)
    for path, size, want in (("/upload?n=100", 100, 200), ("/upload?n=101", 101, 413), ("/big/upload?n=5000", 5000, 200),
                             ("/none/upload?n=1", 1, 413), ("/none/upload?n=0", 0, 200), ("/upload?n=get", None, 200)):
        with Conn(gh.port) as cn:
            r = cn.request("POST" if size is not None else "GET", path, body=b"m" * size if size is not None else None)
            eq(r.status, want, "%s with %s body bytes (global max_body 100)" % (path, size))
    seen = [e["target"] for e in b.requests()]
    for t in ("/upload?n=101", "/upload?n=1"):
        check(t not in seen, "the refused %s reached the backend" % t)


@test("config_route_timeouts")
def _(ctx):
    b = ctx.backend("b1")
    c = ctx.session.certs()
    # A listener whose accept queue is full: connects to it hang.
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    hang = ls.getsockname()[1]
    fillers = []
    for i in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", hang))
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        def conf(p):
            return ("workers 1\nlisten 127.0.0.1:%d tls\ntimeouts { connect 10s; response 10s }\n"
                    "pool app { server 127.0.0.1:%d }\npool hang { server 127.0.0.1:%d }\n"
                    "site default {\n    cert %s %s\n    route / { proxy app }\n"
                    "    route /quick/ { proxy app strip_prefix; timeout response 400ms }\n"
                    "    route /hang/ { proxy hang strip_prefix; timeout connect 400ms }\n}\n"
                    % (p[0], b.port, hang, c["ec_cert"], c["ec_key"]))
        gh = ctx.gatehouse_config(conf, nports=1)
        with Conn(gh.port, timeout=15 * T) as cn:
            t0 = time.monotonic()
            r = cn.request("GET", "/quick/slow?ms=3000")
            dt = time.monotonic() - t0
            eq(r.status, 504, "a response slower than the route's timeout response 400ms")
            check(0.3 <= dt <= 2 * T, "504 after %.2fs with timeout response 400ms" % dt)
        with Conn(gh.port, timeout=15 * T) as cn:
            r = cn.request("GET", "/slow?ms=1000")
            eq((r.status, r.body), (200, b"slow\n"), "1s response on a route with the global 10s timeout")
        with Conn(gh.port, timeout=15 * T) as cn:
            t0 = time.monotonic()
            r = cn.request("GET", "/hang/id")
            dt = time.monotonic() - t0
            check(r.status in (502, 503, 504), "status for a connect past the route's 400ms: %d" % r.status)
            check(dt <= 2 * T, "answer after %.2fs with timeout connect 400ms (global 10s)" % dt)
    finally:
        for s in fillers + [ls]:
            s.close()
