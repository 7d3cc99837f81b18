"""Access log: one combined-format line per request."""
import os
import re
import threading
import time

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


@test("access_log_concurrent")
def _(ctx):
    import threading
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=2, access_log=path)
    errors = []

    def client(k):
        try:
            with Conn(gh.port, timeout=20 * T) as c:
                for i in range(25):
                    r = c.request("GET", "/echo?k=%d&i=%d" % (k, i))
                    if r.status != 200:
                        errors.append(r.status)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

    ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60 * T)
    check(not errors, "client errors: %s" % errors[:3])
    wait_until(lambda: len(lines_of(path)) >= 200, 3 * T)
    lines = lines_of(path)
    eq(len(lines), 200, "access log lines for 200 concurrent requests")
    bad = [ln for ln in lines if not COMBINED.match(ln)]
    check(not bad, "%d mangled lines (interleaved writes?): %r" % (len(bad), bad[:2]))
    targets = sorted(COMBINED.match(ln).group(6) for ln in lines)
    eq(targets, sorted("/echo?k=%d&i=%d" % (k, i) for k in range(8) for i in range(25)), "logged targets")


def unescape(s):
    return re.sub(r"\\x([0-9a-fA-F]{2})|\\(.)",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), s)


@test("access_log_escaping")
def _(ctx):
    # Client-controlled fields must not be able to forge or break log lines.
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=1, access_log=path)
    agent = 'evil" 200 0 "-" "x\\y'
    ref = 'https://r.example/"quoted"'
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small", [("User-Agent", agent), ("Referer", ref)]).status, 200, "status")
    wait_until(lambda: len(lines_of(path)) >= 1, 3 * T)
    lines = lines_of(path)
    eq(len(lines), 1, "lines")
    m = COMBINED.match(lines[0])
    check(m, "the log line does not parse as combined format (unescaped quote?): %r" % lines[0])
    eq(unescape(m.group(11)), agent, "user agent, unescaped, in %r" % lines[0])
    eq(unescape(m.group(10)), ref, "referer, unescaped, in %r" % lines[0])
    eq(m.group(8), "200", "status in %r" % lines[0])


@test("access_log_errors")
def _(ctx):
    path = os.path.join(ctx.dir, "access.log")
    b = ctx.backend()
    gh = ctx.gatehouse([b], workers=1, access_log=path, args=["--response-timeout", "300ms"])
    want = [("GET", "/bad", 502), ("GET", "/slow?ms=2000", 504), ("GET", "/status/503", 503)]
    sizes = []
    for method, target, status in want:
        with Conn(gh.port) as c:
            r = c.request(method, target)
            eq(r.status, status, "status of %s" % target)
            sizes.append(len(r.body))
    wait_until(lambda: len(lines_of(path)) >= len(want), 3 * T)
    lines = lines_of(path)
    eq(len(lines), len(want), "lines (%r)" % lines)
    for line, (method, target, status), size in zip(lines, want, sizes):
        m = COMBINED.match(line)
        check(m, "not a combined log line: %r" % line)
        eq((m.group(5), m.group(6), int(m.group(8))), (method, target, status), "logged request and status")
        logged = 0 if m.group(9) == "-" else int(m.group(9))
        eq(logged, size, "body bytes logged for the %d (the client got a %d-byte body) in %r" % (status, size, line))


@test("access_log_rejected_requests")
def _(ctx):
    # Requests gatehouse refuses itself are requests too: operators must see the 400s.
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=1, access_log=path)
    with Conn(gh.port) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
        r = c.read_response()
        eq(r.status, 400, "status")
    wait_until(lambda: len(lines_of(path)) >= 1, 3 * T)
    lines = lines_of(path)
    eq(len(lines), 1, "access log lines after one refused request (%r)" % lines)
    m = COMBINED.match(lines[0])
    check(m, "not a combined log line: %r" % lines[0])
    eq((m.group(5), m.group(6), int(m.group(8))), ("POST", "/upload", 400), "logged request and status")
    eq(0 if m.group(9) == "-" else int(m.group(9)), len(r.body), "logged body bytes")


@test("access_log_reopened_on_reload")
def _(ctx):
    # A reload opens the configured access log again: a new path, or a rotated file, takes effect.
    import signal

    from cfgutil import wait_log

    first, second = os.path.join(ctx.dir, "first.log"), os.path.join(ctx.dir, "second.log")
    be = ctx.backend()
    c = ctx.session.certs()

    def conf(port, log):
        return ("workers 1\naccess_log %s\nlisten 127.0.0.1:%d tls\npool p { server 127.0.0.1:%d }\n"
                "site default {\n    cert %s %s\n    route / { proxy p }\n}\n"
                % (log, port, be.port, c["ec_cert"], c["ec_key"]))

    gh = ctx.gatehouse_config(lambda ports: conf(ports[0], first), nports=1)
    with Conn(gh.port) as cn:
        eq(cn.request("GET", "/small").status, 200, "status before the reload")
    wait_until(lambda: len(lines_of(first)) == 1, 3 * T)
    with open(gh.conf_path, "w") as f:
        f.write(conf(gh.port, second))
    gh.allow_worker_change = True  # the prober (not a worker) restarts with every reload
    os.kill(gh.pid, signal.SIGHUP)
    check(wait_log(gh, r"worker 0: reloaded", 5 * T) is not None, "the worker did not reload")
    with Conn(gh.port) as cn:
        eq(cn.request("GET", "/small?after").status, 200, "status after the reload")
    wait_until(lambda: len(lines_of(second)) >= 1, 3 * T)
    eq(len(lines_of(first)), 1, "lines in the first log (nothing after the reload)")
    check(re.search(r'"GET /small\?after HTTP/1\.1" 200', lines_of(second)[0]),
          "the request after the reload is in the new log: %r" % lines_of(second))


@test("access_log_stalled_pipe_does_not_block_worker")
def _(ctx):
    # The access log is a FIFO whose reader never reads: the pipe fills (64 KiB), then each worker's
    # buffer; requests must go on being served at full speed, the lines past the bound dropped and
    # counted in the error log. What does reach the pipe is whole lines, never two workers' mixed.
    from cfgutil import wait_log
    fifo = os.path.join(ctx.dir, "access.fifo")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader that does not read (yet)
    try:
        # Passed as a flag, not access_log=: the harness must not open the FIFO to show its tail.
        gh = ctx.gatehouse([ctx.backend()], workers=2, args=["--access-log", fifo])
        agent = "agent-" + "x" * 700  # with the padded target, lines of ~2.7 KiB: the pipe is full after ~24
        pad = "p" * 1900
        errors, slowest = [], [0.0]

        def client(k):
            try:
                with Conn(gh.port, timeout=5 * T) as c:
                    for i in range(100):
                        t0 = time.monotonic()
                        r = c.request("GET", "/small?k=%d&i=%d&%s" % (k, i, pad), [("User-Agent", agent)])
                        slowest[0] = max(slowest[0], time.monotonic() - t0)
                        if r.status != 200:
                            errors.append(r.status)
            except Exception as e:  # noqa: BLE001
                errors.append(str(e)[:200])
        t0 = time.monotonic()
        ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60 * T)
        total = time.monotonic() - t0
        check(not errors, "requests failed while the access log was stalled: %s" % errors[:3])
        check(slowest[0] < 2 * T, "a request took %.2fs while the access log was stalled" % slowest[0])
        check(wait_log(gh, r"access log: \d+ lines dropped", 3 * T) is not None,
              "no error-log line counts the access-log lines dropped")
        # A reader catches up: the lines kept come out whole, and a new request is logged too.
        with Conn(gh.port) as c:
            eq(c.request("GET", "/small?after-the-stall").status, 200, "status")
        data = bytearray()

        def drain():
            while True:
                try:
                    d = os.read(rfd, 65536)
                except BlockingIOError:
                    return b"/small?after-the-stall" in data
                if not d:
                    return b"/small?after-the-stall" in data
                data.extend(d)
        check(wait_until(drain, 5 * T, interval=0.02), "the request after the stall never reached the log")
        lines = data.decode("latin-1").split("\n")
        eq(lines[-1], "", "the log ends with a whole line")
        lines = lines[:-1]
        def whole(ln):
            m = COMBINED.match(ln)
            return m and m.group(6).endswith(pad) and m.group(11) == agent
        bad = [ln[:120] for ln in lines if not whole(ln) and "after-the-stall" not in ln]
        check(not bad, "%d of %d lines mangled (interleaved or cut): %r" % (len(bad), len(lines), bad[:2]))
        ctx.info = "400 requests in %.1fs, slowest %.3fs, %d lines reached the pipe" % (total, slowest[0],
                                                                                       len(lines))
    finally:
        os.close(rfd)


def worker_pid(gh, n=0):
    """The PID of worker n, by its process title (gatehouse: worker N)."""
    for p in gh.workers():
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                if f.read().split(b"\0")[0].strip() == b"gatehouse: worker %d" % n:
                    return p
        except OSError:
            pass
    raise AssertionError("no worker %d among %s" % (n, gh.workers()))


def write_calls(pid):
    """write(2)-family calls the process made (/proc/PID/io syscw: send() to sockets is not one of them)."""
    with open("/proc/%d/io" % pid) as f:
        return int(dict(ln.split(": ") for ln in f.read().splitlines())["syscw"])


@test("access_log_lines_of_keepalive_requests_written_together")
def _(ctx):
    # One keep-alive client: each request is a loop iteration of its own, and the log was written once per
    # iteration, a write(2) per line. Lines now wait (at most 100 ms or 64 KiB): far fewer writes than lines.
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=1, access_log=path)
    pid = worker_pid(gh)
    n = 300
    with Conn(gh.port) as c:
        eq(c.request("GET", "/small?warm").status, 200, "status")
        wait_until(lambda: len(lines_of(path)) == 1, 3 * T)
        before = write_calls(pid)
        t0 = time.monotonic()
        for i in range(n):
            eq(c.request("GET", "/small?i=%d" % i).status, 200, "status")
        took = time.monotonic() - t0
    check(wait_until(lambda: len(lines_of(path)) == n + 1, 3 * T), "lines: %d of %d" % (len(lines_of(path)), n + 1))
    writes = write_calls(pid) - before
    # one write per 100 ms at most (and per 64 KiB, far off here), with room for the error log
    check(writes <= took / 0.1 + 5, "%d writes for %d lines in %.2fs" % (writes, n, took))
    eq(lines_of(path)[1:], [ln for ln in lines_of(path)[1:] if "/small?i=" in ln], "the lines")
    eq([re.search(r"\?i=(\d+) ", ln).group(1) for ln in lines_of(path)[1:]], [str(i) for i in range(n)],
       "lines in order")


def lines_kept_when(ctx, end):
    path = os.path.join(ctx.dir, "access.log")
    gh = ctx.gatehouse([ctx.backend()], workers=1, access_log=path)
    pid = worker_pid(gh)
    with Conn(gh.port) as c:
        for i in range(20):
            eq(c.request("GET", "/small?i=%d" % i).status, 200, "status")
    end(gh, pid)  # within the 100 ms the lines may wait
    check(wait_until(lambda: len(lines_of(path)) >= 20, 3 * T), "lines: %d of 20" % len(lines_of(path)))
    eq(len(lines_of(path)), 20, "lines")


@test("access_log_waiting_lines_written_at_sigterm")
def _(ctx):
    import signal

    def end(gh, pid):
        os.kill(gh.pid, signal.SIGTERM)
        gh.proc.wait(10 * T)
        gh.stopped = True
    lines_kept_when(ctx, end)


@test("access_log_waiting_lines_written_at_sigusr1")
def _(ctx):
    import signal

    def end(gh, pid):
        os.kill(gh.pid, signal.SIGUSR1)
    lines_kept_when(ctx, end)


@test("access_log_waiting_lines_written_when_worker_crashes")
def _(ctx):
    # A worker that dies of a fatal signal (SIGABRT here, as a failed assertion would; sent, since nothing
    # crashes on purpose; SIGABRT and not SIGSEGV, which a sanitizer build reports as its own error) must not
    # take the lines of the requests before it along.
    import signal

    def end(gh, pid):
        gh.allow_worker_change = True  # the master starts a new worker
        os.kill(pid, signal.SIGABRT)
        check(wait_until(lambda: pid not in gh.workers(), 5 * T), "the worker did not end")
    lines_kept_when(ctx, end)
