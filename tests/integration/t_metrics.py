"""Metrics and the status page on the admin listener: counts that add up across workers, status
classes and bytes, upstream histograms, server health, TLS handshakes (full and resumed), the allow
list, reloads and worker restarts, `promtool check metrics`, and a real Prometheus server scraping it."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

from harness import SLOW, T, Conn, Fail, check, eq, free_port, s_client, test, wait_until
from cfgutil import PlainConn, check_file, kill_backend, marked_line, wait_log, write
import pattern

LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """Prometheus text -> {(name, frozenset of (label, value)): float}."""
    out = {}
    for ln in text.splitlines():
        if not ln or ln.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", ln)
        if not m:
            raise Fail("not a sample line: %r" % ln)
        labels = frozenset(LABEL_RE.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(metrics, name, **labels):
    """The sample of name with exactly these labels (None: absent)."""
    return metrics.get((name, frozenset(labels.items())))


def admin_get(port, path, source="127.0.0.1"):
    """(status, body text, headers) of a GET on the admin listener from a given source address."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * T, source_address=(source, 0))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    finally:
        c.close()


def scrape(port):
    st, body, hdrs = admin_get(port, "/metrics")
    eq(st, 200, "GET /metrics")
    check(hdrs.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
          "Content-Type of /metrics: %r" % hdrs.get("Content-Type"))
    return parse(body)


def status_json(port):
    st, body, _ = admin_get(port, "/status")
    eq(st, 200, "GET /status")
    return json.loads(body)


def conf(ctx, p, pools, routes, workers=2, tls=False, allow="allow 127.0.0.1", extra=""):
    """Listener p[0], admin p[1]; pools: {name: [server lines]}; routes: [(prefix, action)]."""
    lines = ["workers %d" % workers, "listen 127.0.0.1:%d%s" % (p[0], " tls" if tls else ""), extra,
             "admin {", "    listen 127.0.0.1:%d" % p[1], "    " + allow, "}"]
    for name, servers in pools.items():
        lines += ["pool %s {" % name] + ["    " + s for s in servers] + ["}"]
    lines.append("site default {")
    if tls:
        c = ctx.session.certs()
        lines.append("    cert %s %s" % (c["ec_cert"], c["ec_key"]))
    for prefix, action in routes:
        lines.append("    route %s { %s }" % (prefix, action))
    lines += ["}", ""]
    return "\n".join(lines)


def worker_pids_of_connections(port):
    """PIDs holding the established connections to 127.0.0.1:port (ss -tnp)."""
    r = subprocess.run(["ss", "-Htnp", "state", "established", "( sport = :%d )" % port], capture_output=True,
                       text=True, timeout=10)
    return set(int(x) for x in re.findall(r"pid=(\d+)", r.stdout))


@test("metrics_requests_add_up_across_workers")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app"), ("/local", "respond 204")], tls=True), nports=2)
    admin = gh.ports[1]
    nconn, upload = 16, pattern.data(1000)
    conns, lock = [], threading.Lock()

    def open_one():
        c = Conn(gh.port)
        with lock:
            conns.append(c)
    try:
        # Handshakes started together keep one worker busy while the other accepts: the connections
        # spread over both workers (checked with ss), so the figures below are sums of two blocks.
        for _ in range(4):
            ts = [threading.Thread(target=open_one) for _ in range(nconn)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(10 * T)
            if len(worker_pids_of_connections(gh.port)) >= 2:
                break
        check(len(worker_pids_of_connections(gh.port)) >= 2,
              "%d connections all went to one worker: the test cannot show that counts add up" % len(conns))
        m = scrape(admin)
        eq(val(m, "gatehouse_client_connections_open", listener="127.0.0.1:%d" % gh.port, protocol="http/1.1"),
           len(conns), "connections open while %d are held" % len(conns))
        for c in conns:
            for _ in range(3):
                eq(c.request("GET", "/small").status, 200, "/small")
            for st in (302, 404, 503):
                eq(c.request("GET", "/status/%d" % st).status, st, "/status/%d" % st)
            eq(c.request("POST", "/upload", headers=[("Content-Length", "1000")], body=upload).status, 200, "upload")
            eq(c.request("GET", "/local").status, 204, "/local")
    finally:
        for c in conns:
            c.close()
    n = len(conns)
    with Conn(gh.port) as c:  # refused by the parser: no Host
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        eq(c.read_response().status, 400, "request without Host")
    wait_until(lambda: val(scrape(admin), "gatehouse_client_connections_open", listener="127.0.0.1:%d" % gh.port,
                           protocol="http/1.1") == 0, 5 * T)
    seen = set()
    for i in range(8):  # each scrape is answered by whichever worker accepts it: all must agree
        m = scrape(admin)
        seen.add(status_json(admin)["answered_by_worker"])

        def req(route, code):
            return val(m, "gatehouse_http_requests_total", site="default", route=route, code=code)
        eq(req("/", "2xx"), 4 * n, "2xx on / (3 x /small and an upload per connection)")
        eq(req("/", "3xx"), n, "3xx on /")
        eq(req("/", "4xx"), n, "4xx on /")
        eq(req("/", "5xx"), n, "5xx on /")
        eq(req("/", "1xx"), 0, "1xx on /")
        eq(req("/local", "2xx"), n, "2xx on /local (respond 204)")
        eq(val(m, "gatehouse_http_requests_total", site="-", route="-", code="4xx"), 1, "400 before routing")
        out = 3 * len(pattern.SMALL) + len("status 302\n") + len("status 404\n") + len("status 503\n") + 64 + len(
            " 1000\n")
        eq(val(m, "gatehouse_http_response_body_bytes_total", site="default", route="/"), n * out, "bytes out on /")
        eq(val(m, "gatehouse_http_request_body_bytes_total", site="default", route="/"), n * 1000, "bytes in on /")
        check(val(m, "gatehouse_client_connections_total", listener="127.0.0.1:%d" % gh.port) >= n + 1,
              "connections accepted")
        if len(seen) == 2:
            break
    ctx.note("scrapes answered by workers %s" % sorted(seen))


@test("metrics_upstream_histograms")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app")], workers=1), nports=2)
    with PlainConn(gh.port) as c:
        for _ in range(3):
            eq(c.request("GET", "/slow?ms=300").status, 200, "/slow")
        for _ in range(2):
            eq(c.request("GET", "/small").status, 200, "/small")
    m = scrape(gh.ports[1])

    def h(name, le):
        return val(m, "gatehouse_upstream_%s_duration_seconds_bucket" % name, pool="app", le=le)
    eq(val(m, "gatehouse_upstream_response_duration_seconds_count", pool="app"), 5, "responses observed")
    eq(h("response", "+Inf"), 5, "+Inf bucket")
    eq(h("response", "0.25"), 2, "responses within 250 ms (the two /small)")
    eq(h("response", "10"), 5, "responses within 10 s")
    s = val(m, "gatehouse_upstream_response_duration_seconds_sum", pool="app")
    check(0.9 <= s < 0.9 + 3 * T, "sum of response times %.3f s, want >= 0.9 (3 x 300 ms)" % s)
    # One observation per new upstream connection: as many as the backend accepted.
    eq(val(m, "gatehouse_upstream_connect_duration_seconds_count", pool="app"), b.accepts(),
       "connects observed (backend accepts)")
    prev = -1
    for le in ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
               "5", "10", "+Inf"]:
        check(h("connect", le) >= prev, "connect buckets are cumulative")
        prev = h("connect", le)


@test("metrics_server_health_after_kill")
def _(ctx):
    b1, b2 = ctx.backend("b1"), ctx.backend("b2")
    dead = ctx.dead_port()
    health = "health http GET /healthz interval=300ms timeout=200ms rise=2 fall=2"
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {
        "app": ["server 127.0.0.1:%d" % b1.port, "server 127.0.0.1:%d" % b2.port, health],
        "gone": ["server 127.0.0.1:%d" % dead, "passive fails=1 eject=60s"]},
        [("/", "proxy app"), ("/gone/", "proxy gone")], workers=2), nports=2)
    admin = gh.ports[1]

    def srv(m, name, port, pool="app"):
        a = "127.0.0.1:%d" % port
        return val(m, name, pool=pool, server=a, address=a)

    def state(m, port, st):
        a = "127.0.0.1:%d" % port
        return val(m, "gatehouse_server_state", pool="app", server=a, address=a, state=st)
    ok = wait_until(lambda: state(scrape(admin), b2.port, "up") == 1 and state(scrape(admin), b1.port, "up") == 1,
                    10 * T)
    check(ok, "both servers up by the active checks")
    kill_backend(b2)
    ok = wait_until(lambda: state(scrape(admin), b2.port, "down") == 1, 10 * T)
    check(ok, "the killed server is not shown down")
    m = scrape(admin)
    eq(state(m, b2.port, "up"), 0, "killed server's up state")
    eq(srv(m, "gatehouse_server_healthy", b2.port), 0, "killed server healthy")
    eq(srv(m, "gatehouse_server_healthy", b1.port), 1, "other server healthy")
    check(val(m, "gatehouse_server_health_checks_total", pool="app", server="127.0.0.1:%d" % b2.port,
              address="127.0.0.1:%d" % b2.port, result="failed") >= 2, "failed checks of the killed server")
    js = status_json(admin)
    app = [p for p in js["pools"] if p["name"] == "app"][0]
    by = {s["server"]: s for s in app["servers"]}
    eq(by["127.0.0.1:%d" % b2.port]["state"], "down", "/status state of the killed server")
    eq(by["127.0.0.1:%d" % b1.port]["state"], "up", "/status state of the other")
    # In flight: a slow request holds b1 while we look.
    done = []
    t = threading.Thread(target=lambda: done.append(PlainConn(gh.port).request("GET", "/slow?ms=%d" % (1500 * T))))
    t.start()
    try:
        ok = wait_until(lambda: srv(scrape(admin), "gatehouse_server_requests_in_flight", b1.port) == 1, 5 * T)
        check(ok, "the slow request is not in flight on b1")
    finally:
        t.join(10 * T)
    check(done and done[0].status == 200, "slow request")
    eq(srv(scrape(admin), "gatehouse_server_requests_in_flight", b1.port), 0, "in flight after it ended")
    # Failures and ejections: a pool whose only server refuses connections.
    with PlainConn(gh.port) as c:
        eq(c.request("GET", "/gone/x").status, 503, "request to a dead server")
    m = scrape(admin)
    eq(srv(m, "gatehouse_server_failures_total", dead, "gone"), 1, "failures of the dead server")
    eq(srv(m, "gatehouse_server_ejections_total", dead, "gone"), 1, "ejections of the dead server")
    eq(srv(m, "gatehouse_server_ejected", dead, "gone"), 1, "dead server ejected")


@test("metrics_tls_handshakes_full_and_resumed")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app")], tls=True), nports=2)
    admin = gh.ports[1]

    def tls(m, v, kind):
        return val(m, "gatehouse_tls_handshakes_total", version=v, kind=kind)
    # The harness's readiness probe made one full TLS 1.3 handshake: wait until it is counted.
    check(wait_until(lambda: tls(scrape(admin), "TLSv1.3", "full") >= 1, 5 * T), "the probe's handshake")
    m0 = scrape(admin)
    get = b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    path = os.path.join(ctx.dir, "sess.pem")
    rc, out = s_client(gh.port, ["-tls1_3", "-sess_out", path, "-ign_eof"], input=get)
    check("HTTP/1.1 200" in out, "first TLS 1.3 connection: %s" % out[-400:])
    rc, out = s_client(gh.port, ["-tls1_3", "-sess_in", path, "-ign_eof"], input=get)
    check(re.search(r"^Reused, TLSv1\.3", out, re.M), "the session was not resumed: %s" % out[-400:])
    rc, out = s_client(gh.port, ["-tls1_2", "-ign_eof"], input=get)
    check("HTTP/1.1 200" in out, "TLS 1.2 connection: %s" % out[-400:])
    with socket.create_connection(("127.0.0.1", gh.port), timeout=5 * T) as s:  # not TLS at all
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            s.recv(100)
        except OSError:
            pass
    ok = wait_until(lambda: scrape(admin)[("gatehouse_tls_handshake_failures_total", frozenset())] >= 1, 5 * T)
    m = scrape(admin)
    eq(tls(m, "TLSv1.3", "full") - tls(m0, "TLSv1.3", "full"), 1, "full TLS 1.3 handshakes")
    eq(tls(m, "TLSv1.3", "resumed") - tls(m0, "TLSv1.3", "resumed"), 1, "resumed TLS 1.3 handshakes")
    eq(tls(m, "TLSv1.2", "full") - tls(m0, "TLSv1.2", "full"), 1, "full TLS 1.2 handshakes")
    eq(tls(m, "TLSv1.2", "resumed") - tls(m0, "TLSv1.2", "resumed"), 0, "resumed TLS 1.2 handshakes")
    check(ok, "a plain-text request on the TLS port is no handshake failure")
    eq(val(m, "gatehouse_tls_handshake_failures_total") - val(m0, "gatehouse_tls_handshake_failures_total"), 1,
       "handshake failures")


@test("metrics_admin_allow_list_and_reload")
def _(ctx):
    b = ctx.backend()
    routes = [("/a", "proxy app"), ("/b", "proxy app")]
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]}, routes), nports=2)
    gh.allow_worker_change = True  # a reload restarts the prober
    admin = gh.ports[1]
    st, body, _ = admin_get(admin, "/metrics", source="127.0.0.2")
    eq(st, 403, "/metrics from 127.0.0.2, not in the allow list")
    check("gatehouse_" not in body, "a refused client got metrics")
    eq(admin_get(admin, "/metrics")[0], 200, "/metrics from 127.0.0.1")
    eq(admin_get(admin, "/nothing")[0], 404, "unknown admin path")
    with PlainConn(gh.port) as c:
        for path in ("/a", "/a", "/a", "/b", "/b"):
            eq(c.request("GET", path).status, 404, path)
    # The same routes but /b, a new /c, and the allow list now 127.0.0.2 only.
    text = conf(ctx, gh.ports, {"app": ["server 127.0.0.1:%d" % b.port]}, [("/a", "proxy app"), ("/c", "proxy app")],
                allow="allow 127.0.0.2/32")
    with open(gh.conf_path, "w") as f:
        f.write(text)
    gh.signal(signal.SIGHUP)
    check(wait_log(gh, r"worker \d+: reloaded", 10 * T, after=1) is not None, "both workers reloaded")
    eq(admin_get(admin, "/metrics")[0], 403, "/metrics from 127.0.0.1 after the reload")
    st, body, _ = admin_get(admin, "/metrics", source="127.0.0.2")
    eq(st, 200, "/metrics from 127.0.0.2 after the reload")
    m = parse(body)
    eq(val(m, "gatehouse_http_requests_total", site="default", route="/a", code="4xx"), 3, "/a kept its count")
    eq(val(m, "gatehouse_http_requests_total", site="default", route="/c", code="4xx"), 0, "/c is new")
    eq(val(m, "gatehouse_http_requests_total", site="default", route="/b", code="4xx"), None, "/b is gone")
    eq(val(m, "gatehouse_reloads_total", result="success"), 1, "successful reloads")
    eq(val(m, "gatehouse_config_last_reload_successful"), 1, "last reload successful")
    with open(gh.conf_path, "w") as f:
        f.write(text.replace("admin {", "admin { bogus"))
    gh.signal(signal.SIGHUP)
    check(wait_log(gh, r"reload failed", 10 * T) is not None, "the broken reload")
    m = parse(admin_get(admin, "/metrics", source="127.0.0.2")[1])
    eq(val(m, "gatehouse_reloads_total", result="failure"), 1, "failed reloads")
    eq(val(m, "gatehouse_config_last_reload_successful"), 0, "last reload successful after a failure")


@test("metrics_worker_restart_keeps_counts")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app")], workers=1), nports=2)
    gh.allow_worker_change = True
    with PlainConn(gh.port) as c:
        for _ in range(5):
            eq(c.request("GET", "/small").status, 200, "/small")
    wait_until(lambda: val(scrape(gh.ports[1]), "gatehouse_client_connections_open", protocol="http/1.1",
                           listener="127.0.0.1:%d" % gh.port) == 0, 5 * T)
    # The worker and the prober, both: each exit is a restart (which child is which does not matter).
    pids = gh.workers()
    eq(len(pids), 2, "worker and prober")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    ok = wait_until(lambda: len(set(gh.workers()) - set(pids)) == 2, 10 * T)
    check(ok, "the killed processes were not restarted")
    ok = wait_until(lambda: val(scrape(gh.ports[1]), "gatehouse_worker_restarts_total") == 2, 5 * T)
    check(ok, "worker restarts counted")
    m = scrape(gh.ports[1])
    eq(val(m, "gatehouse_http_requests_total", site="default", route="/", code="2xx"), 5, "counts of the dead worker")


@test("metrics_promtool_check")
def _(ctx):
    if shutil.which("promtool") is None:
        raise Fail("promtool is not installed (Debian package prometheus, scripts/packages.txt)")
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port,
                                                              "health tcp interval=300ms timeout=200ms"]},
                                             [("/", "proxy app"), ("/x", "respond 200 \"x\"")], tls=True),
                              nports=2)
    with Conn(gh.port) as c:
        for path in ("/small", "/x", "/status/500", "/slow?ms=20"):
            c.request("GET", path)
    st, body, _ = admin_get(gh.ports[1], "/metrics")
    eq(st, 200, "/metrics")
    path = write(ctx, "scrape.txt", body)
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, text=True, timeout=30 * T)
    ctx.note("promtool: rc %d, %r %r (%s)" % (r.returncode, r.stdout[-300:], r.stderr[-300:], path))
    eq(r.returncode, 0, "promtool check metrics exit code (%s)" % (r.stdout + r.stderr)[-500:])
    eq((r.stdout + r.stderr).strip(), "", "promtool's findings")


@test("metrics_prometheus_scrapes_gatehouse", timeout=120)
def _(ctx):
    if shutil.which("prometheus") is None:
        raise Fail("prometheus is not installed (Debian package prometheus, scripts/packages.txt)")
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app")]), nports=2)
    with PlainConn(gh.port) as c:
        for _ in range(7):
            eq(c.request("GET", "/small").status, 200, "/small")
    web = free_port()
    cfg = write(ctx, "prometheus.yml", "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: gatehouse\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % gh.ports[1])
    log = open(os.path.join(ctx.dir, "prometheus.log"), "wb")
    ctx.popen(["prometheus", "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(ctx.dir, "tsdb"),
               "--web.listen-address=127.0.0.1:%d" % web, "--log.level=warn"],
              stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def query(q):
        url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (web, urllib.parse.quote(q))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                res = json.load(r)["data"]["result"]
        except OSError:
            return None
        return res[0]["value"][1] if res else None
    ok = wait_until(lambda: query('up{job="gatehouse"}') == "1", 40 * T, interval=0.5)
    check(ok, "Prometheus does not see gatehouse up (log: %s)" % os.path.join(ctx.dir, "prometheus.log"))
    q = 'gatehouse_http_requests_total{job="gatehouse",site="default",route="/",code="2xx"}'
    ok = wait_until(lambda: query(q) == "7", 10 * T, interval=0.5)
    check(ok, "Prometheus's value of %s is %r, want 7" % (q, query(q)))


def admin_bad(ctx, body, what, reason_re):
    text = "listen 127.0.0.1:8443\n" + body + "\nsite default {\n    route / { respond 200 }\n}\n"
    path = write(ctx, "gh.conf", text)
    code, out, err = check_file(ctx, path)
    eq(code, 1, "exit code of -t for %s" % what)
    where = "%s:%d:" % (path, marked_line(text))
    check(where in err, "%s: stderr does not say %r: %r" % (what, where, err[-400:]))
    check(re.search(reason_re, err, re.I), "%s: reason %r not in %r" % (what, reason_re, err[-400:]))


@test("metrics_admin_config_errors")
def _(ctx):
    admin_bad(ctx, "admin { # HERE\n    allow 127.0.0.1\n}", "admin without listen", r"needs \"listen")
    admin_bad(ctx, "admin {\n    listen 127.0.0.1:9100\n    allow 10.0.0.1/8 # HERE\n}", "host bits", r"network")
    admin_bad(ctx, "admin {\n    listen 127.0.0.1:9100\n    allow nonsense # HERE\n}", "not a network", r"network")
    admin_bad(ctx, "admin { # HERE\n    listen 127.0.0.1:8443\n}", "admin on a proxy listener", r"proxy listener")
    admin_bad(ctx, "admin {\n    listen 127.0.0.1:9100\n    route / { } # HERE\n}", "route in admin", r"route")
    text = "listen 127.0.0.1:8443\nadmin {\n    listen [::1]:9100\n    allow ::1 127.0.0.0/8\n}\n" \
           "site default {\n    route / { respond 200 }\n}\n"
    code, out, err = check_file(ctx, write(ctx, "ok.conf", text))
    eq(code, 0, "a valid admin block (%s)" % err[-300:])


@test("metrics_admin_refused_client_with_body_gets_403")
def _(ctx):
    # A refused client's request is read before the 403 and the rest drained after it (lingering close):
    # closing with its bytes unread sends an RST that can destroy the 403 before the client reads it.
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app")], workers=1), nports=2)
    body = b"x" * 200000
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", gh.ports[1]), timeout=10 * T, source_address=("127.0.0.2", 0))
        try:
            s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            raise Fail("connection %d: reset instead of a 403 (%d bytes read before)" % (i, len(got)))
        finally:
            s.close()
        check(got.startswith(b"HTTP/1.1 403 "), "connection %d: %r" % (i, got[:80]))


@test("metrics_admin_refused_403_reset_while_client_still_sends")
def _(ctx):
    # The bug (before 26af454): a refused client was answered 403 and closed at accept, before its request
    # was read; its bytes then met a closed socket, whose RST cut the client off while it was still sending,
    # so a client that sends its whole request before reading the answer (http.client, as most libraries)
    # never saw the 403. Now the request is read first and the rest drained after the 403 (lingering close).
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]},
                                             [("/", "proxy app")], workers=1), nports=2)
    chunk, nchunks = b"x" * 16384, 8

    def body():
        for _ in range(nchunks):  # 128 KiB over about 160 ms: within the 1 s linger, after the 403
            time.sleep(0.02)
            yield chunk
    for i in range(3):
        c = http.client.HTTPConnection("127.0.0.1", gh.ports[1], timeout=10 * T, source_address=("127.0.0.2", 0))
        try:
            c.request("POST", "/metrics", body=body(), headers={"Content-Length": str(len(chunk) * nchunks)})
            r = c.getresponse()
            status, text = r.status, r.read()
        except OSError as e:
            raise Fail("request %d from a refused address: %r instead of a 403" % (i, e))
        finally:
            c.close()
        eq(status, 403, "request %d from a refused address (%r)" % (i, text[:80]))


@test("metrics_limit_hits")
def _(ctx):
    b = ctx.backend()
    routes = [("/rl", "proxy app; rate_limit 1r/m burst=2"), ("/deny", "proxy app; deny all"),
              ("/tiny", "proxy app; max_body 10"), ("/", "proxy app")]
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]}, routes, workers=1,
                                             extra="max_connections_per_ip 2"), nports=2)
    admin = gh.ports[1]
    with PlainConn(gh.port) as c:
        got = [c.request("GET", "/rl").status for _ in range(3)]
        eq(got, [404, 404, 429], "rate limited (burst 2)")
        eq(c.request("GET", "/deny").status, 403, "deny all")
        eq(c.request("POST", "/tiny", headers=[("Content-Length", "100")], body=b"x" * 100).status, 413, "max_body")
        with PlainConn(gh.port) as c2:
            eq(c2.request("GET", "/small").status, 200, "second connection")
            with PlainConn(gh.port) as c3:  # the third from 127.0.0.1: closed at once
                closed, _ = c3.wait_closed(5 * T)
                check(closed, "the third connection from one address was not closed")
    m = scrape(admin)

    def hits(limit):
        return val(m, "gatehouse_limit_hits_total", limit=limit)
    eq(hits("rate_limit"), 1, "rate_limit hits")
    eq(hits("access_rule"), 1, "access_rule hits")
    eq(hits("max_body"), 1, "max_body hits")
    eq(hits("connections_per_address"), 1, "connections_per_address hits")
    eq(hits("max_connections"), 0, "max_connections hits")


@test("metrics_admin_listener_blocked_binary_upgrade", timeout=120)
def _(ctx):
    # The new master of a binary upgrade bound the admin address again while the old one held it: EADDRINUSE,
    # so it exited and the upgrade failed. It takes the old master's admin socket as it takes the listeners.
    import t_upgrade as up
    b = ctx.backend()
    exe = up.copy_binary(ctx)
    gh = ctx.gatehouse_config(lambda p: conf(ctx, p, {"app": ["server 127.0.0.1:%d" % b.port]}, [("/", "proxy app")]),
                              nports=2, prefix=["sh", "-c", 'shift; exec "$0" "$@"', exe])
    gh.allow_worker_change = True
    admin = gh.ports[1]
    with PlainConn(gh.port) as c:
        for _ in range(3):
            eq(c.request("GET", "/small").status, 200, "/small")
    eq(val(scrape(admin), "gatehouse_http_requests_total", site="default", route="/", code="2xx"), 3, "before")
    os.kill(gh.pid, signal.SIGUSR2)
    new = up.new_master_pid(gh, 10 * T)
    gh.stopped = True  # the old master is to exit
    try:
        check(wait_until(lambda: gh.proc.poll() is not None, 30 * T),
              "the old master did not hand over: %s" % gh.stderr()[-800:])
        eq(gh.proc.returncode, 0, "old master's exit status")
        check(not up.gone(new), "the new master is gone")
        m = scrape(admin)  # answered by the new master's workers: a new region, counts start over
        eq(val(m, "gatehouse_http_requests_total", site="default", route="/", code="2xx"), 0, "after the upgrade")
        with PlainConn(gh.port) as c:
            eq(c.request("GET", "/small").status, 200, "/small after the upgrade")
        # A request is counted when its exchange ends, just after its last byte went out: the scrape may come first.
        wait_until(lambda: val(scrape(admin), "gatehouse_http_requests_total", site="default", route="/",
                               code="2xx") >= 1, 2 * T)
        eq(val(scrape(admin), "gatehouse_http_requests_total", site="default", route="/", code="2xx"), 1,
           "counted by the new master's workers")
    finally:
        up.stop_pid(new, 15 * T)


@test("metrics_tcp_streams")
def _(ctx):
    import t_tcp
    c = ctx.session.certs()
    e = t_tcp.Echo(ctx, banner=False)
    gh = ctx.gatehouse_config(lambda p: "\n".join([
        "workers 2", "pool e { server 127.0.0.1:%d }" % e.port,
        "stream echo {", "  listen 127.0.0.1:%d" % p[0], "  cert %s %s" % (c["ec_cert"], c["ec_key"]), "  proxy e", "}",
        "admin {", "  listen 127.0.0.1:%d" % p[1], "}", ""]), nports=2)
    admin, lst = gh.ports[1], "127.0.0.1:%d" % gh.ports[0]
    srv = dict(pool="e", server="127.0.0.1:%d" % e.port, address="127.0.0.1:%d" % e.port)
    # The harness's readiness probe opened (and closed) one stream: wait until it has ended.
    check(wait_until(lambda: val(scrape(admin), "gatehouse_streams_open") == 0, 5 * T), "the probe's stream")
    m0 = scrape(admin)
    s = t_tcp.tls_client(gh.ports[0], cafile=c["ec_cert"])
    try:
        s.sendall(b"ping\n")
        eq(t_tcp.read_line(s), b"ping\n", "echo")
        m = scrape(admin)
        eq(val(m, "gatehouse_streams_open"), 1, "streams open")
        eq(val(m, "gatehouse_client_connections_open", listener=lst, protocol="stream"), 1, "stream connections")
        eq(val(m, "gatehouse_client_connections_open", listener=lst, protocol="http/1.1"), 0, "http connections")
        eq(val(m, "gatehouse_server_requests_in_flight", **srv), 1, "in flight on the echo server")
        eq(val(m, "gatehouse_tls_handshakes_total", version="TLSv1.3", kind="full")
           - val(m0, "gatehouse_tls_handshakes_total", version="TLSv1.3", kind="full"), 1, "the stream's handshake")
    finally:
        s.close()
    check(wait_until(lambda: val(scrape(admin), "gatehouse_streams_open") == 0, 5 * T), "the stream did not end")
    m = scrape(admin)
    eq(val(m, "gatehouse_streams_total") - val(m0, "gatehouse_streams_total"), 1, "streams opened")
    eq(val(m, "gatehouse_server_requests_in_flight", **srv), 0, "in flight after the end")
    eq(val(m, "gatehouse_client_connections_open", listener=lst, protocol="stream"), 0, "stream connections after")
