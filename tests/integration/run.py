#!/usr/bin/env python3
"""Runs gatehouse's integration tests.

  tests/integration/run.py [-j N] [--list] [--keep] [FILTER ...]

A FILTER selects the tests with a word of the name starting with it: "tls", "strict",
"strict_cl", "keepalive" (http_keepalive_*), "stream" (stream_*, not upstream_*).
Environment: GATEHOUSE (binary, default build/gatehouse), SLOW=1 (sanitizers: longer
timeouts, smaller big transfers). Prints "ok NAME" or "FAIL NAME: reason" (then the tail
of that test's logs) per test, and as its last line "N passed, N failed".
"""
import argparse
import concurrent.futures
import importlib
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Ctx, Fail, Session  # noqa: E402

# Every tests/integration/t_*.py: these first, in this order (the quick, basic ones), then the others by name.
FIRST = ["t_startup", "t_tls", "t_http", "t_headers", "t_upstream", "t_strict", "t_process",
         "t_accesslog", "t_stream", "t_config", "t_routing", "t_sni", "t_balance", "t_health", "t_reload",
         "t_limits", "t_datapath", "t_body", "t_websocket"]
_found = sorted(f[:-3] for f in os.listdir(os.path.dirname(os.path.abspath(__file__)))
                if f.startswith("t_") and f.endswith(".py"))
MODULES = [m for m in FIRST if m in _found] + [m for m in _found if m not in FIRST]

out_lock = threading.Lock()


def say(text):
    with out_lock:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


def indent(text):
    return "\n".join("    | " + line for line in text.splitlines())


class Result:
    def __init__(self, name, ok, reason="", secs=0.0, logs="", dir=None, info=""):
        self.name, self.ok, self.reason, self.secs, self.logs, self.dir = name, ok, reason, secs, logs, dir
        self.info = info


def report(r):
    if r.ok:
        say("ok   %s (%.1fs)%s" % (r.name, r.secs, " [%s]" % r.info if r.info else ""))
    else:
        msg = "FAIL %s: %s" % (r.name, r.reason)
        if r.logs:
            msg += "\n" + indent(r.logs)
        if r.dir:
            msg += "\n    | (logs kept in %s)" % r.dir
        say(msg)


def describe(e):
    if isinstance(e, Fail):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = ""
    for fr in reversed(tb):
        if os.path.basename(fr.filename).startswith("t_"):
            where = " at %s:%d" % (os.path.basename(fr.filename), fr.lineno)
            break
    return "%s: %s%s" % (type(e).__name__, e, where)


ACTIVE = set()  # contexts of running jobs, for cleanup on SIGINT/SIGTERM


def on_signal(signum, frame):
    for ctx in list(ACTIVE):
        ctx.abort()
    say("interrupted by signal %d; processes stopped" % signum)
    os._exit(130)


def run_job(session, tests, keep):
    """Runs one test, or several sharing a fixture in sequence; returns their Results."""
    first = tests[0]
    ctx = Ctx(first.fixture.__name__ if first.fixture else first.name, session)
    ACTIVE.add(ctx)
    try:
        return run_in(ctx, tests, keep)
    finally:
        ACTIVE.discard(ctx)


def run_in(ctx, tests, keep):
    first = tests[0]
    limit = sum(t.timeout for t in tests) * harness.T
    timer = threading.Timer(limit, ctx.abort)
    timer.daemon = True
    timer.start()
    results = []
    fixture_value = None
    fixture_error = None
    if first.fixture:
        try:
            fixture_value = first.fixture(ctx)
        except Exception as e:  # noqa: BLE001
            fixture_error = "fixture %s: %s" % (first.fixture.__name__, describe(e))
    for t in tests:
        t0 = time.monotonic()
        reason = fixture_error
        if reason is None:
            try:
                if t.fixture:
                    t.fn(ctx, fixture_value)
                else:
                    t.fn(ctx)
                ctx.post_check()
            except Exception as e:  # noqa: BLE001
                reason = describe(e)
            if ctx.aborted:
                reason = "test exceeded its %.0fs limit (processes killed); %s" % (limit, reason)
        if t is tests[-1]:
            try:
                problem = ctx.close()
            except Exception as e:  # noqa: BLE001
                problem = "cleanup: " + describe(e)
            if problem and reason is None:
                reason = problem
        secs = time.monotonic() - t0
        r = Result(t.name, reason is None, reason or "", secs, info=ctx.info)
        ctx.info = ""
        if reason is not None:
            r.logs = ctx.tails()
            r.dir = ctx.dir
        results.append(r)
        if t is not tests[-1]:
            report(r)
    timer.cancel()
    if not keep and all(r.ok for r in results):
        shutil.rmtree(ctx.dir, ignore_errors=True)
    report(results[-1])
    return results


def collect(fn, tests):
    """The results of a job; a crash of the harness itself fails the job's tests."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        out = [Result(t.name, False, "harness error: " + describe(e)) for t in tests]
        for r in out:
            report(r)
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("filters", nargs="*")
    ap.add_argument("-j", type=int, default=int(os.environ.get("GH_JOBS", "3")))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep every test's temp dir")
    args = ap.parse_args()

    for m in MODULES:
        importlib.import_module(m)
    # A filter matches where a word of the name starts: "stream" selects stream_*, not upstream_*.
    pats = [re.compile(r"(^|_)" + re.escape(f.lower())) for f in args.filters]
    tests = [t for t in harness.TESTS if not pats or any(p.search(t.name.lower()) for p in pats)]
    if args.list:
        for t in tests:
            print(t.name)
        return 0
    if not tests:
        say("no test matches %s" % " ".join(args.filters))
        say("0 passed, 1 failed")
        return 1
    if not (os.path.isfile(harness.GATEHOUSE) and os.access(harness.GATEHOUSE, os.X_OK)):
        say("FAIL setup: gatehouse binary not found at %s (build it with make, or set GATEHOUSE)"
            % harness.GATEHOUSE)
        say("0 passed, 1 failed")
        return 1

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    session = Session(keep=args.keep)
    t0 = time.monotonic()
    jobs, heavy, by_fixture = [], [], {}
    for t in tests:
        if t.fixture:
            if t.fixture not in by_fixture:
                by_fixture[t.fixture] = []
                (heavy if t.heavy else jobs).append(by_fixture[t.fixture])
            by_fixture[t.fixture].append(t)
        else:
            (heavy if t.heavy else jobs).append([t])
    # Longest jobs (fixtures with many cases) first, so they do not finish last alone.
    jobs.sort(key=lambda j: -len(j))
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.j)) as pool:
        futs = [(pool.submit(run_job, session, j, args.keep), j) for j in jobs]
        for fut, j in futs:
            results += collect(fut.result, j)
    # Big transfers run alone: they measure memory and throughput, and would starve timing tests.
    for j in heavy:
        results += collect(lambda: run_job(session, j, args.keep), j)

    passed = sum(1 for r in results if r.ok)
    failed = len(results) - passed
    if failed == 0 and not args.keep:
        shutil.rmtree(session.dir, ignore_errors=True)
    else:
        for f in os.listdir(session.dir):
            if f.startswith("upload-"):
                os.unlink(os.path.join(session.dir, f))
    say("integration: %.1fs%s" % (time.monotonic() - t0, " (SLOW)" if harness.SLOW else ""))
    if failed:
        say("failed: " + " ".join(r.name for r in results if not r.ok))
    say("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
