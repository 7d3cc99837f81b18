"""Access log: one combined-format line per request."""
import os
import re

from harness import T, Conn, check, curl, eq, test, wait_until

# host ident authuser [date] "request" status bytes "referer" "user-agent"
COMBINED = re.compile(r'^(\S+) (\S+) (\S+) \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
                      r'"(\S+) (\S+) (HTTP/1\.[01])" (\d{3}) (\d+|-) "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"$')


def lines_of(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def make_requests(gh):
    r = curl(["-o", "/dev/null", "-w", "%{http_code}", "-A", "agent/1.0 (test)", "-e", "https://ref.example/page",
              gh.url("/small?x=1")])
    eq(r.stdout, b"200", "curl status")
    with Conn(gh.port) as c:
        eq(c.request("GET", "/status/404").status, 404, "status")
        eq(c.request("HEAD", "/head").status, 200, "status")
        eq(c.request("POST", "/upload", [("User-Agent", "poster")], body=b"abc").status, 200, "status")
    return [
        # method, target, status, bytes, referer, agent
        ("GET", "/small?x=1", 200, 1024, "https://ref.example/page", "agent/1.0 (test)"),
        ("GET", "/status/404", 404, 11, "-", "-"),
        ("HEAD", "/head", 200, 0, "-", "-"),
        ("POST", "/upload", 200, 64 + 3, "-", "poster"),
    ]


def check_lines(lines, want):
    eq(len(lines), len(want), "access log lines for %d requests (%r)" % (len(want), lines))
    for line, w in zip(lines, want):
        m = COMBINED.match(line)
        check(m, "not a combined log line: %r" % line)
        host, ident, user, date, method, target, proto, status, size, ref, agent = m.groups()
        eq(host, "127.0.0.1", "client address in %r" % line)
        eq((method, target, proto), (w[0], w[1], "HTTP/1.1"), "request in %r" % line)
        eq(int(status), w[2], "status in %r" % line)
        got = 0 if size == "-" else int(size)
        eq(got, w[3], "bytes in %r" % line)
        check(ref == w[4] or (w[4] == "-" and ref == ""), "referer in %r, want %r" % (line, w[4]))
        check(agent == w[5] or (w[5] == "-" and agent == ""), "user agent in %r, want %r" % (line, w[5]))


@test("access_log_file")
def _(ctx):
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=2, access_log=path)
    want = make_requests(gh)
    wait_until(lambda: len(lines_of(path)) >= len(want), 3 * T)
    check_lines(lines_of(path), want)


@test("access_log_stdout")
def _(ctx):
    gh = ctx.gatehouse([ctx.backend()], workers=1, access_log="-")
    want = make_requests(gh)
    wait_until(lambda: len(lines_of(gh.out_path)) >= len(want), 3 * T)
    check_lines(lines_of(gh.out_path), want)
