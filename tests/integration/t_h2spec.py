"""h2spec (github.com/summerwind/h2spec 2.6.0), the conformance suite h2o and nghttp2 are checked
with, against gatehouse over TLS: all 146 cases, and the 147 of strict mode (-S).

The binary: $H2SPEC if set, else build/h2spec, which `make test` builds from
../shared/tools/h2spec (or ../../shared/tools/h2spec from a worktree) (override with H2SPEC_SRC=DIR holding build.sh; see its README). Without
either the tests FAIL and say how to get it: a conformance suite that silently does not run
proves nothing. A failure names every failing case by its h2spec id (e.g. http2/5.1/2), which
`h2spec -t -k -p PORT http2/5.1/2` reruns alone.
"""
import os
import subprocess
import xml.etree.ElementTree as ET

import h2raw
from harness import ROOT, T, Fail, check, test

# ../shared beside the repo, or ../../shared from a worktree one level further down (as the Makefile)
H2SPEC_SRC = os.environ.get("H2SPEC_SRC") or next(
    (str(d) for d in (ROOT.parent / "shared/tools/h2spec", ROOT.parent.parent / "shared/tools/h2spec") if d.is_dir()),
    str(ROOT.parent / "shared/tools/h2spec"))


def h2spec_binary():
    env = os.environ.get("H2SPEC")
    if env:
        check(os.access(env, os.X_OK), "H2SPEC=%s is not an executable" % env)
        return env
    path = ROOT / "build" / "h2spec"
    if os.access(str(path), os.X_OK):
        return str(path)
    build = os.path.join(H2SPEC_SRC, "build.sh")
    if not os.path.isfile(build):
        raise Fail("h2spec not found: no %s and no build script at %s. Get the h2spec source (with its "
                   "vendored Go modules, github.com/summerwind/h2spec v2.6.0) into that directory, or set "
                   "H2SPEC_SRC=DIR (holding build.sh) or H2SPEC=BINARY; `make build/h2spec` then builds it"
                   % (path, build))
    raise Fail("h2spec not built: run `make build/h2spec` (it runs %s --dest %s)" % (build, path))


def cases(xml_path):
    """[(id, description, passed, message)] from h2spec's JUnit report; id is package/ordinal."""
    out = []
    root = ET.parse(xml_path).getroot()
    for suite in root.iter("testsuite"):
        pkg = suite.get("package")
        for i, tc in enumerate(suite.iter("testcase"), 1):
            bad = tc.find("failure")
            if bad is None:
                bad = tc.find("error")
            skipped = tc.find("skipped") is not None
            msg = " ".join((bad.text or "").split()) if bad is not None else ""
            out.append(("%s/%d" % (pkg, i), tc.get("classname"), bad is None, msg, skipped))
    return out


def run_h2spec(ctx, strict, want):
    binary = h2spec_binary()
    b = ctx.backend()
    front = h2raw.start_front(ctx, b)
    report = os.path.join(ctx.dir, "h2spec%s.xml" % ("-strict" if strict else ""))
    argv = [binary, "-t", "-k", "-h", "127.0.0.1", "-p", str(front.port), "-o", str(int(2 * T)), "-j", report]
    if strict:
        argv.append("-S")
    log = os.path.join(ctx.dir, "h2spec%s.out" % ("-strict" if strict else ""))
    with open(log, "wb") as f:
        try:
            r = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=300 * T)
        except subprocess.TimeoutExpired:
            raise Fail("h2spec did not finish in %.0fs" % (300 * T))
    check(os.path.exists(report), "h2spec wrote no report (exit %d): %s" % (r.returncode, open(log).read()[-800:]))
    res = cases(report)
    failed = [c for c in res if not c[2]]
    skipped = [c for c in res if c[4]]
    ctx.info = "%d cases, %d passed, %d skipped, %d failed%s" % (
        len(res), len(res) - len(failed) - len(skipped), len(skipped), len(failed),
        (": " + " ".join(c[0] for c in failed)) if failed else "")
    check(len(res) == want, "h2spec ran %d cases, want %d" % (len(res), want))
    check(not failed, "h2spec%s: %d of %d cases failed:\n%s" % (
        " -S" if strict else "", len(failed), len(res),
        "\n".join("  %s %s: %s" % (c[0], c[1], c[3][:300]) for c in failed)))
    check(r.returncode == 0, "h2spec exited %d with no failed case in its report" % r.returncode)


@test("h2spec_conformance", timeout=300)
def _(ctx):
    run_h2spec(ctx, False, 146)


@test("h2spec_strict", timeout=300)
def _(ctx):
    run_h2spec(ctx, True, 147)
