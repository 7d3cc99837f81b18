"""The edge of a site: access log formats (json, log_format, per route, stdout, SIGUSR1), allow/deny
networks, rate limits shared by the workers, connections per client address, backend headers hidden,
intercept_errors, HSTS and site security headers."""
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import T, Conn, Fail, check, eq, test, wait_until


def lines_of(path):
    try:
        with open(path, "rb") as f:
            return f.read().split(b"\n")[:-1]
    except FileNotFoundError:
        return []


def plain(port, source=None, host="127.0.0.1"):
    from cfgutil import PlainConn
    return PlainConn(port, source=source, host=host)


def raw_get(port, path, extra=b"", host=b"a.test"):
    with plain(port) as c:
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n")
        return c.read_response()


# ---------------------------------------------------------------- access log formats

# User-Agent and Referer as a hostile client sends them: quotes and backslashes that would end a
# JSON string, a tab, invalid UTF-8 (a lone continuation byte, an overlong '/', a truncated
# sequence), and valid UTF-8 that must pass as it is.
HOSTILE_UA = b'evil "quoted" \\back\\slash\tTAB \xff\xfe \xc0\xaf \xe2\x82 caf\xc3\xa9 \xe2\x82\xac'
HOSTILE_REF = b'"},{"status":200,"x":"'


def latin_escape(b):
    """What the log's JSON means for bytes b: valid UTF-8 decoded, each invalid byte as U+00XX."""
    out, i = [], 0
    while i < len(b):
        for n in (4, 3, 2, 1):
            try:
                ch = b[i:i + n].decode("utf-8")
                if len(ch) == 1 and (n > 1 or b[i] < 0x80):
                    out.append(ch)
                    i += n
                    break
            except UnicodeDecodeError:
                continue
        else:
            out.append(chr(b[i]))
            i += 1
    return "".join(out)


@test("access_log_json_escapes_hostile_fields")
def _(ctx):
    path = os.path.join(ctx.dir, "access.json")
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 2
listen 127.0.0.1:{port}
access_log {log} format=json
pool app {{ server 127.0.0.1:{b} }}
site a.test {{
    route / {{ proxy app }}
}}
""".format(port=p[0], b=b.port, log=path), nports=1)
    r = raw_get(gh.port, b"/small?q=%22x%22", b"User-Agent: " + HOSTILE_UA + b"\r\nReferer: " + HOSTILE_REF + b"\r\n")
    eq(r.status, 200, "status of the hostile request")
    eq(raw_get(gh.port, b"/status/404").status, 404, "status")
    # Refused by the parser (a control character in the target): logged with the line as received.
    with plain(gh.port) as c:
        c.send(b"GET /a\x01b\"\\ HTTP/1.1\r\nHost: a.test\r\n\r\n")
        eq(c.read_response().status, 400, "status of a request with a control character")
    check(wait_until(lambda: len(lines_of(path)) >= 3, 3 * T), "3 lines, got %r" % lines_of(path))
    objs = []
    for ln in lines_of(path):
        try:
            objs.append(json.loads(ln.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as e:
            check(False, "not a JSON line (%s): %r" % (e, ln))
    eq(len(objs), 3, "lines")
    by_uri = {o["uri"]: o for o in objs}
    o = by_uri["/small?q=%22x%22"]
    eq(o["http_user_agent"], latin_escape(HOSTILE_UA), "user agent as logged")
    eq(o["http_referer"], HOSTILE_REF.decode(), "referer as logged")
    eq((o["method"], o["protocol"], o["host"], o["status"], o["body_bytes_sent"]),
       ("GET", "HTTP/1.1", "a.test", 200, 1024), "fields")
    eq(o["upstream_addr"], "127.0.0.1:%d" % b.port, "upstream_addr")
    check(isinstance(o["request_time"], float) and re.match(r"^\d+\.\d{3}$", o["upstream_response_time"]),
          "times: %r %r" % (o["request_time"], o["upstream_response_time"]))
    eq((o["site"], o["route"], o["remote_addr"]), ("a.test", "/", "127.0.0.1"), "site, route, client")
    check(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", o["time"]), "time %r" % o["time"])
    o = by_uri["/status/404"]
    eq((o["status"], o["http_user_agent"], o["http_referer"]), (404, "", ""), "404 line, absent headers")
    rej = [x for x in objs if x["status"] == 400]
    eq(len(rej), 1, "the refused request's line")
    eq((rej[0]["method"], rej[0]["uri"]), ("", ""), "a refused request has no method or uri of its own")


@test("access_log_custom_format_per_route_and_stdout")
def _(ctx):
    main = os.path.join(ctx.dir, "main.log")
    api = os.path.join(ctx.dir, "api.log")
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 1
listen 127.0.0.1:{port}
log_format brief "$status|$method|$uri|$host|$site|$route|$scheme|$protocol|$upstream_addr|$body_bytes_sent|$$|${{remote_addr}}|$http_user_agent"
access_log {main}
pool app {{ server 127.0.0.1:{b} }}
site a.test {{
    route /api/ {{
        proxy app strip_prefix
        access_log {api} format=brief
    }}
    route /quiet/ {{
        proxy app strip_prefix
        access_log off
    }}
    route /json/ {{
        proxy app strip_prefix
        access_log stdout format=json
    }}
    route / {{ proxy app }}
}}
""".format(port=p[0], b=b.port, main=main, api=api), nports=1)
    eq(raw_get(gh.port, b"/api/small", b"User-Agent: a\"b\xff\r\n").status, 200, "status")
    eq(raw_get(gh.port, b"/quiet/small").status, 200, "status")
    eq(raw_get(gh.port, b"/json/small").status, 200, "status")
    eq(raw_get(gh.port, b"/small").status, 200, "status")
    eq(raw_get(gh.port, b"/nothing", host=b"other.test").status, 421, "status of an unknown site")
    check(wait_until(lambda: len(lines_of(main)) >= 2 and lines_of(api) and lines_of(gh.out_path), 3 * T),
          "every log got its lines")
    time.sleep(0.2 * T)
    eq(lines_of(api), [b'200|GET|/api/small|a.test|a.test|/api/|http|HTTP/1.1|127.0.0.1:%d|1024|$|127.0.0.1|a\\x22b\\xFF'
                       % b.port], "the custom format's line")
    m = lines_of(main)
    eq(len(m), 2, "lines of the main log (/small and the 421; not /quiet/, /api/ or /json/): %r" % m)
    check(b'"GET /small HTTP/1.1" 200 1024' in m[0] and b'"GET /nothing HTTP/1.1" 421' in m[1], "main log %r" % m)
    out = [json.loads(x) for x in lines_of(gh.out_path)]
    eq([(o["uri"], o["status"], o["route"]) for o in out], [("/json/small", 200, "/json/")], "stdout json lines")


@test("access_log_reopened_on_usr1")
def _(ctx):
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=2, access_log=path)
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small?before").status, 200, "status")
    check(wait_until(lambda: lines_of(path), 3 * T), "first line")
    os.rename(path, path + ".1")  # what logrotate does, then it signals
    gh.signal(signal.SIGUSR1)
    from cfgutil import wait_log
    check(wait_log(gh, r"SIGUSR1 received", 3 * T) is not None, "the master saw SIGUSR1")

    def logged():
        with Conn(gh.port) as c:
            eq(c.request("GET", "/small?after").status, 200, "status")
        return any(b"after" in ln for ln in lines_of(path))
    check(wait_until(logged, 3 * T, interval=0.2), "a request after SIGUSR1 went to the new file")
    check(all(b"before" in ln for ln in lines_of(path + ".1")), "the rotated file kept only its lines")


@test("config_edge_errors_name_file_and_line")
def _(ctx):
    from cfgutil import check_file, write
    base = "listen 127.0.0.1:1\npool app { server 127.0.0.1:2 }\nsite default {\n%s\n    route / { proxy app }\n}\n"
    cases = [
        ("    access_log x.log format=nosuch", 4, "unknown log format \"nosuch\""),
        ("    rate_limit 10r/d", 4, "invalid rate \"10r/d\""),
        ("    rate_limit 10r/s key=host", 4, "invalid rate limit key"),
        ("    allow 10.0.0.1/8", 4, "invalid network \"10.0.0.1/8\""),
        ("    hsts max-age=600 preload", 4, "hsts preload needs includeSubDomains"),
        ("    hide_header Bad:Name", 4, "invalid header name"),
        ("    route /x/ { proxy app; intercept_errors 200 }", 4, "invalid status \"200\""),
    ]
    for i, (line, n, msg) in enumerate(cases):
        path = write(ctx, "bad%d.conf" % i, base % line)
        rc, out, err = check_file(ctx, path)
        check(rc != 0 and ("%s:%d: " % (path, n)) in err and msg in err, "%r: exit %s, %r" % (line, rc, err))
    path = write(ctx, "badfmt.conf", 'log_format f "$status $bogus"\n' + base % "")
    rc, out, err = check_file(ctx, path)
    check(rc != 0 and "%s:1: unknown variable \"$bogus\"" % path in err, "unknown variable: %r" % err)
    path = write(ctx, "good.conf", 'log_format f escape=json "{\\"s\\":$status}"\n' + base % (
        "    access_log - format=f\n    allow 127.0.0.1 ::1\n    deny all\n    rate_limit 5r/s burst=10 "
        "key=cookie:sid\n    hsts max-age=63072000 includeSubDomains preload\n    hide_header X-Debug\n"
        "    response_header set X-Frame-Options DENY"))
    rc, out, err = check_file(ctx, path)
    eq((rc, err.strip()), (0, ""), "a file using every directive")


# ---------------------------------------------------------------- access rules

@test("access_rules_deny_networks")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 1
listen 127.0.0.1:{port}
listen [::1]:{port6}
pool app {{ server 127.0.0.1:{b} }}
site default {{
    deny 127.0.0.3
    route /private/ {{
        proxy app strip_prefix
        allow 127.0.0.2
        deny all
    }}
    route /no6/ {{
        proxy app strip_prefix
        deny ::1
    }}
    route / {{ proxy app }}
}}
""".format(port=p[0], port6=p[1], b=b.port), nports=2)

    def status(path, source=None, host="127.0.0.1", port=None):
        with plain(port or gh.ports[0], source=source, host=host) as c:
            c.send(b"GET " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
            return r.status, r.body
    eq(status(b"/private/small", "127.0.0.2")[0], 200, "/private/ from the allowed 127.0.0.2")
    s, body = status(b"/private/small", "127.0.0.1")
    eq((s, body), (403, b"403 Forbidden\n"), "/private/ from 127.0.0.1 (deny all)")
    eq(status(b"/small", "127.0.0.1")[0], 200, "/ from 127.0.0.1")
    eq(status(b"/small", "127.0.0.3")[0], 403, "/ from 127.0.0.3, denied by the site")
    eq(status(b"/private/small", "127.0.0.3")[0], 403, "/private/: its own rules replace the site's")
    eq(status(b"/no6/small", host="::1", port=gh.ports[1])[0], 403, "/no6/ from ::1")
    eq(status(b"/no6/small", "127.0.0.1")[0], 200, "/no6/ from 127.0.0.1")
    eq(status(b"/small", host="::1", port=gh.ports[1])[0], 200, "/ from ::1")
    eq(len(b.requests()), 4, "requests that reached the backend")


# ---------------------------------------------------------------- rate limits

def at_once(fn, n):
    """n calls of fn in threads started together (bounded: 10 s each); the results that are not None."""
    got, lock = [], threading.Lock()

    def one():
        r = fn()
        if r is not None:
            with lock:
                got.append(r)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10 * T)
    return got


def socket_count(pid):
    try:
        return sum(1 for fd in os.listdir("/proc/%d/fd" % pid)
                   if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"))
    except OSError:
        return 0


@test("rate_limit_shared_by_workers_429_retry_after")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 2
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
site default {{
    route /limited/ {{
        proxy app strip_prefix
        rate_limit 1r/m burst=6
    }}
    route / {{ proxy app }}
}}
""".format(port=p[0], b=b.port), nports=1)
    workers = gh.workers()
    before = {pid: socket_count(pid) for pid in workers}
    # Connections held open, opened in parallel bursts until both workers hold some (EPOLLEXCLUSIVE
    # wakes one waiter per connection; a busy one leaves the next to the other). Bounded: 10 bursts.
    conns, took = [], []
    lock = threading.Lock()
    for attempt in range(10):
        conns += at_once(lambda: plain(gh.port), 16)
        time.sleep(0.1 * T)
        took = [pid for pid in workers if socket_count(pid) > before[pid]]
        if len(took) >= 2:
            break
    check(len(took) >= 2, "both workers hold some of the %d connections (%s)" % (len(conns), took))
    statuses, retry = [], []

    def client(group):
        for c in group:
            c.send(b"GET /limited/small HTTP/1.1\r\nHost: a\r\n\r\n")
        for c in group:
            r = c.read_response()
            with lock:
                statuses.append(r.status)
                if r.status == 429:
                    retry.append(r.get("retry-after"))
    groups = [conns[k::8] for k in range(8)]
    ts = [threading.Thread(target=client, args=(g,)) for g in groups]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20 * T)
    for c in conns:
        c.close()
    n = len(conns)
    eq(len(statuses), n, "answers")
    eq(statuses.count(200), 6, "requests let through by a burst of 6 shared by both workers, of %d" % n)
    eq(statuses.count(429), n - 6, "429s")
    check(all(v is not None and v.isdigit() and 50 <= int(v) <= 60 for v in retry),
          "Retry-After about a minute (one token per minute): %r" % sorted(set(retry)))
    eq(raw_get(gh.port, b"/small").status, 200, "another route is not limited")
    eq(len([r for r in b.requests() if r.get("target") == "/small"]), 7, "requests that reached the backend")


@test("rate_limit_keyed_by_header_and_cookie")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 1
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
site default {{
    rate_limit 1r/m burst=2 key=header:X-Api-Key
    route /c/ {{
        proxy app strip_prefix
        rate_limit 1r/m burst=1 key=cookie:sid
    }}
    route /free/ {{
        proxy app strip_prefix
        rate_limit off
    }}
    route / {{ proxy app }}
}}
""".format(port=p[0], b=b.port), nports=1)

    def st(path, hdr):
        return raw_get(gh.port, path, hdr, host=b"a").status
    eq([st(b"/small", b"X-Api-Key: alpha\r\n") for _ in range(3)], [200, 200, 429], "key alpha")
    eq([st(b"/small", b"x-api-key: beta\r\n") for _ in range(3)], [200, 200, 429], "key beta: a bucket of its own")
    eq([st(b"/c/small", b"Cookie: a=1; sid=one; b=2\r\n") for _ in range(2)], [200, 429], "cookie sid=one")
    eq(st(b"/c/small", b"Cookie: sid=two\r\n"), 200, "cookie sid=two")
    eq([st(b"/free/small", b"X-Api-Key: alpha\r\n") for _ in range(3)], [200, 200, 200], "rate_limit off")


@test("rate_limit_429_with_unread_body_lacked_retry_after")
def _(ctx):
    # A request whose body was not read yet got the 429 through the session's failure path: a bare
    # error page without Retry-After. It is a local response now, like `respond`.
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 1
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
site default {{ route / {{ proxy app; rate_limit 1r/m burst=1 }} }}
""".format(port=p[0], b=b.port), nports=1)
    eq(raw_get(gh.port, b"/small").status, 200, "status")
    with plain(gh.port) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
        r = c.read_response()
        check(r.status == 429 and (r.get("retry-after") or "").isdigit(), "429 with Retry-After: %r" % r)
        eq(r.get("connection"), "close", "the unread body: the connection closes")


@test("max_connections_per_ip_closes_the_extra_connection")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 1
max_connections_per_ip 2
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
site default {{ route / {{ proxy app }} }}
""".format(port=p[0], b=b.port), nports=1)

    def works(c):
        c.send(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n")
        return c.read_response().status == 200
    c1, c2 = plain(gh.port), plain(gh.port)
    check(works(c1) and works(c2), "two connections from 127.0.0.1 are served")
    c3 = plain(gh.port)
    c3.settimeout(2 * T)
    try:
        c3.send(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n")
        got = c3.s.recv(100)
    except OSError:
        got = b""
    eq(got, b"", "a third connection from 127.0.0.1 is closed at once")
    c3.close()
    c4 = plain(gh.port, source="127.0.0.2")
    check(works(c4), "another address is served")
    c1.close()
    time.sleep(0.2 * T)
    c5 = plain(gh.port)
    check(works(c5), "once one closed, 127.0.0.1 gets a connection again")
    for c in (c2, c4, c5):
        c.close()


def holders(port):
    """{client port: PID of the worker holding it} for the established connections to 127.0.0.1:port (ss)."""
    r = subprocess.run(["ss", "-Htnp", "state", "established", "( sport = :%d )" % port], capture_output=True,
                       text=True, timeout=10 * T)
    out = {}
    for line in r.stdout.splitlines():
        m = re.search(r"\S+:%d\s+\S+:(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)" % port, line)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def served(port, source=None):
    """A new connection with one GET on it: the connection when it was answered 200, else None (closed)."""
    c = plain(port, source=source)
    c.settimeout(5 * T)
    try:
        c.send(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n")
        if c.read_response().status == 200:
            return c
    except Exception:
        pass
    c.close()
    return None


def held_over_both_workers(gh, n, attempts=20):
    """n connections from 127.0.0.1, served and held, opened together until both workers hold some
    (so that each worker holds fewer than n). Bounded: attempts tries."""
    for _ in range(attempts):
        got = at_once(lambda: served(gh.port), n)
        where = holders(gh.port)
        pids = set(where.get(c.s.getsockname()[1]) for c in got)
        if len(got) == n and len(pids) == 2 and None not in pids:
            return got, where
        for c in got:
            c.close()
        wait_until(lambda: not holders(gh.port), 5 * T)
    raise Fail("%d connections never spread over both workers in %d tries" % (n, attempts))


PER_IP_TWO_WORKERS = """workers 2
max_connections_per_ip 3
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
site default {{ route / {{ proxy app }} }}
"""


@test("max_connections_per_ip_multiplied_by_workers")
def _(ctx):
    # The bug: each worker counted its own connections, so with 2 workers an address held up to 6.
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: PER_IP_TWO_WORKERS.format(port=p[0], b=b.port), nports=1)
    held, _ = held_over_both_workers(gh, 3)
    # Each worker holds 1 or 2 of the 3: counted per worker, any further connection would be let in.
    extra = []
    for _ in range(3):
        extra += at_once(lambda: served(gh.port), 8)
    eq(len(extra), 0, "connections served beyond max_connections_per_ip 3 (3 held over both workers, 24 tried)")
    other = served(gh.port, source="127.0.0.2")
    check(other is not None, "another address is served")
    for c in held + extra + [other]:
        c.close()
    check(wait_until(lambda: not holders(gh.port), 5 * T), "the connections closed")
    again = [served(gh.port) for _ in range(4)]
    eq([c is not None for c in again], [True, True, True, False], "once they closed: 3 served again, not a 4th")
    for c in again:
        if c is not None:
            c.close()


@test("max_connections_per_ip_killed_worker_gives_its_connections_back")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: PER_IP_TWO_WORKERS.format(port=p[0], b=b.port), nports=1)
    gh.allow_worker_change = True
    held, where = held_over_both_workers(gh, 3)
    victim = where[held[0].s.getsockname()[1]]
    before = gh.workers()  # the workers and the prober
    os.kill(victim, signal.SIGKILL)  # its connections die with it, and it never gave their counts back
    check(wait_until(lambda: len(gh.workers()) == len(before) and victim not in gh.workers(), 10 * T),
          "the killed worker %d was replaced: %s -> %s" % (victim, before, gh.workers()))
    for c in held:
        c.close()
    check(wait_until(lambda: not holders(gh.port), 5 * T), "the connections closed")
    again = [served(gh.port) for _ in range(4)]
    eq([c is not None for c in again], [True, True, True, False],
       "after the worker's death and the others' close: 3 served, not a 4th")
    for c in again:
        if c is not None:
            c.close()
    check("no longer count for max_connections_per_ip" in gh.stderr(),
          "the master says the dead worker's connections no longer count")


@test("max_connections_per_ip_count_given_back_however_the_connection_ends")
def _(ctx):
    # Each way a connection can end gives its count back exactly once: with a limit of 1 and 2 workers,
    # a new connection is served after each, and a second one held beside it is refused.
    dead = ctx.backend("dead")
    dead_port = dead.port
    dead.proc.kill()
    dead.proc.wait(5 * T)
    b = ctx.backend()
    gh = ctx.gatehouse_config(lambda p: """workers 2
max_connections_per_ip 1
timeouts {{ header 500ms }}
listen 127.0.0.1:{port}
pool app {{ server 127.0.0.1:{b} }}
pool gone {{ server 127.0.0.1:{d} }}
site default {{
    route /gone/ {{ proxy gone }}
    route / {{ proxy app }}
}}
""".format(port=p[0], b=b.port, d=dead_port), nports=1)

    def ends(what, fn):
        fn()
        check(wait_until(lambda: not holders(gh.port), 5 * T), "%s: the connection closed" % what)
        c = served(gh.port)
        check(c is not None, "after %s: a new connection is served" % what)
        eq(served(gh.port), None, "after %s: a second one beside it is refused (counted once)" % what)
        c.close()
        check(wait_until(lambda: not holders(gh.port), 5 * T), "%s: the served one closed" % what)

    def bad_request():
        with plain(gh.port) as c:
            c.send(b"GET /small HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
            eq(c.read_response().status, 400, "a malformed request")

    def bad_gateway():
        with plain(gh.port) as c:
            c.send(b"GET /gone/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            eq(c.read_response().status, 503, "no server of the pool answers")

    def slow_head():
        with plain(gh.port) as c:
            c.send(b"GET /small HTTP/1.1\r\nHost: a\r\n")
            eq(c.read_response().status, 408, "a head that never ends")

    def reset_mid_request():
        c = plain(gh.port)
        c.send(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        time.sleep(0.1 * T)
        c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()  # an RST in the middle of the body

    for what, fn in (("a 400", bad_request), ("a 503", bad_gateway), ("a 408", slow_head),
                     ("a client reset mid-body", reset_mid_request)):
        ends(what, fn)


# ---------------------------------------------------------------- shielding

LEAKS = ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version")


@test("shield_backend_headers_hidden_hsts_on_tls_only")
def _(ctx):
    b = ctx.backend()
    certs = ctx.session.certs()
    gh = ctx.gatehouse_config(lambda p: """workers 1
listen 127.0.0.1:{tls} tls
listen 127.0.0.1:{plain}
pool app {{ server 127.0.0.1:{b} }}
site default {{
    cert {cert} {key}
    hsts max-age=31536000 includeSubDomains
    response_header set X-Frame-Options DENY
    response_header set X-Content-Type-Options nosniff
    route /open/ {{
        proxy app strip_prefix
        hide_header none
        response_header set X-Frame-Options SAMEORIGIN
    }}
    route /more/ {{
        proxy app strip_prefix
        hide_header X-Custom-Leak
    }}
    route / {{ proxy app }}
}}
""".format(tls=p[0], plain=p[1], b=b.port, cert=certs["ec_cert"], key=certs["ec_key"]), nports=2)
    with Conn(gh.ports[0]) as c:
        r = c.request("GET", "/leaky")
        eq(r.status, 200, "status")
        eq([h for h in LEAKS if r.get(h) is not None], [], "backend software headers in %r" % r.headers)
        eq(r.get("x-custom-leak"), "node-7", "a header not on the list passes")
        eq(r.get("strict-transport-security"), "max-age=31536000; includeSubDomains", "HSTS over TLS")
        eq((r.get("x-frame-options"), r.get("x-content-type-options")), ("DENY", "nosniff"), "site headers")
        r = c.request("GET", "/more/leaky")
        eq((r.get("x-custom-leak"), r.get("server")), (None, None), "hide_header adds to the defaults")
        r = c.request("GET", "/open/leaky")
        eq((r.get("server"), r.get("x-powered-by")), ("Apache/2.4.7 (Ubuntu)", "PHP/5.5.9"), "hide_header none")
        eq(r.all("x-frame-options"), ["SAMEORIGIN"], "a route's own value replaces the site's")
        eq(r.get("x-content-type-options"), "nosniff", "the site's other headers stay")
    r = raw_get(gh.ports[1], b"/leaky")
    eq((r.status, r.get("strict-transport-security"), r.get("server")), (200, None, None),
       "plain HTTP: no HSTS (RFC 6797 7.2), backend headers hidden")
    eq(r.get("x-frame-options"), "DENY", "site headers over plain HTTP")


@test("intercept_errors_hides_stack_trace_and_reuses_connection")
def _(ctx):
    b = ctx.backend()
    certs = ctx.session.certs()
    gh = ctx.gatehouse_config(lambda p: """workers 1
listen 127.0.0.1:{port} tls
pool app {{ server 127.0.0.1:{b} }}
site default {{
    cert {cert} {key}
    hsts max-age=600
    route /i/ {{
        proxy app strip_prefix
        intercept_errors on
    }}
    route /only502/ {{
        proxy app strip_prefix
        intercept_errors 502
    }}
    route / {{ proxy app }}
}}
""".format(port=p[0], b=b.port, cert=certs["ec_cert"], key=certs["ec_key"]), nports=1)
    with Conn(gh.port) as c:
        r = c.request("GET", "/leaky?status=500")
        check(r.status == 500 and b"Traceback" in r.body, "without intercept_errors the backend's page passes")
        r = c.request("GET", "/i/leaky?status=500")
        eq((r.status, r.body), (500, b"500 Internal Server Error\n"), "gatehouse's page")
        check(b"10.1.2.3" not in r.raw_head + r.body, "nothing of the backend's page")
        eq([h for h in LEAKS + ("x-custom-leak", "x-backend") if r.get(h) is not None], [], "backend headers")
        eq(r.get("strict-transport-security"), "max-age=600", "the site's HSTS on gatehouse's page")
        r = c.request("GET", "/i/leaky?status=503&chunked=1")
        eq((r.status, r.body), (503, b"503 Service Unavailable\n"), "a chunked 503")
        r = c.request("GET", "/i/leaky?status=404")
        check(r.status == 404 and b"Traceback" in r.body, "a 404 is not a 5xx: passed")
        r = c.request("GET", "/only502/leaky?status=500")
        check(r.status == 500 and b"Traceback" in r.body, "intercept_errors 502 lets a 500 through")
        eq(c.request("GET", "/i/small").status, 200, "the client connection goes on")
    # The 500 with Content-Length was read whole: its connection went back to the pool. The chunked
    # 503 was not drained: its connection was closed (one more accept after it).
    ev = b.events()
    accepts = [e for e in ev if e["ev"] == "accept"]
    eq(len(accepts), 2, "backend connections (reused after the CL-framed 500, new after the chunked 503)")
