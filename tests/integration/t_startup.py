"""Command line and startup errors."""
import os
import signal
import subprocess

from harness import GATEHOUSE, T, Fail, check, children, free_port, test


def run_gatehouse(ctx, args, timeout=None):
    """Runs gatehouse to completion (it must exit by itself); returns (code, stdout, stderr)."""
    timeout = timeout or 10 * T
    argv = [GATEHOUSE] + list(args)
    p = ctx.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for k in children(p.pid):
            os.kill(k, signal.SIGKILL)
        p.kill()
        p.communicate()
        raise Fail("gatehouse %s did not exit within %.0fs (it should refuse to start)" % (" ".join(args), timeout))
    ctx.note("gatehouse %s -> exit %s, stderr: %s" % (" ".join(args), p.returncode, err.decode(errors="replace")[-300:]))
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def base_args(ctx, cert, key, backend_port=None):
    return ["--listen", "127.0.0.1:%d" % free_port(), "--cert", cert, "--key", key,
            "--to", "127.0.0.1:%d" % (backend_port or free_port())]


@test("startup_help")
def _(ctx):
    code, out, err = run_gatehouse(ctx, ["--help"])
    check(code == 0, "--help exited %s" % code)
    text = out + err
    for flag in ("--listen", "--cert", "--key", "--to"):
        check(flag in text, "--help does not mention %s: %r" % (flag, text[:300]))


@test("startup_version")
def _(ctx):
    code, out, err = run_gatehouse(ctx, ["--version"])
    check(code == 0, "--version exited %s" % code)
    check("gatehouse" in (out + err).lower() and any(ch.isdigit() for ch in out + err),
          "--version prints no name and version: %r" % (out + err)[:200])


@test("startup_unknown_flag")
def _(ctx):
    c = ctx.session.certs()
    code, out, err = run_gatehouse(ctx, base_args(ctx, c["ec_cert"], c["ec_key"]) + ["--no-such-flag"])
    check(code != 0, "an unknown flag is accepted (exit 0)")
    check("no-such-flag" in err, "stderr does not name the bad flag: %r" % err[-300:])


@test("startup_bad_timeout_value")
def _(ctx):
    c = ctx.session.certs()
    code, out, err = run_gatehouse(ctx, base_args(ctx, c["ec_cert"], c["ec_key"]) + ["--response-timeout", "soon"])
    check(code != 0, "--response-timeout soon is accepted (exit 0)")
    check("soon" in err or "timeout" in err.lower(), "stderr does not explain the bad value: %r" % err[-300:])


@test("startup_missing_cert")
def _(ctx):
    c = ctx.session.certs()
    missing = os.path.join(ctx.dir, "no-such-cert.pem")
    code, out, err = run_gatehouse(ctx, base_args(ctx, missing, c["ec_key"]))
    check(code != 0, "gatehouse started with a missing certificate file")
    check("no-such-cert.pem" in err, "stderr does not name the missing file: %r" % err[-300:])


@test("startup_missing_key")
def _(ctx):
    c = ctx.session.certs()
    missing = os.path.join(ctx.dir, "no-such-key.pem")
    code, out, err = run_gatehouse(ctx, base_args(ctx, c["ec_cert"], missing))
    check(code != 0, "gatehouse started with a missing key file")
    check("no-such-key.pem" in err, "stderr does not name the missing file: %r" % err[-300:])


@test("startup_garbage_cert")
def _(ctx):
    c = ctx.session.certs()
    for bad in (c["garbage"], c["text"]):
        code, out, err = run_gatehouse(ctx, base_args(ctx, bad, c["ec_key"]))
        check(code != 0, "gatehouse started with a garbage certificate %s" % os.path.basename(bad))
        check(os.path.basename(bad) in err or "cert" in err.lower(),
              "stderr does not say the certificate is the problem: %r" % err[-300:])


@test("startup_key_as_cert")
def _(ctx):
    c = ctx.session.certs()
    code, out, err = run_gatehouse(ctx, base_args(ctx, c["ec_key"], c["ec_key"]))
    check(code != 0, "gatehouse started with a private key given as the certificate")
    check("cert" in err.lower(), "stderr does not say the certificate is the problem: %r" % err[-300:])


@test("startup_mismatched_key")
def _(ctx):
    c = ctx.session.certs()
    for cert, key in ((c["ec_cert"], c["wrong_key"]), (c["rsa_cert"], c["ec_key"]), (c["ec_cert"], c["rsa_key"])):
        code, out, err = run_gatehouse(ctx, base_args(ctx, cert, key))
        check(code != 0, "gatehouse started with %s and the key %s that does not match"
              % (os.path.basename(cert), os.path.basename(key)))
        low = err.lower()
        check("key" in low and "match" in low, "stderr does not say the key does not match: %r" % err[-300:])


@test("startup_no_backend")
def _(ctx):
    c = ctx.session.certs()
    code, out, err = run_gatehouse(ctx, ["--listen", "127.0.0.1:%d" % free_port(),
                                         "--cert", c["ec_cert"], "--key", c["ec_key"]])
    check(code != 0, "gatehouse started with no --to")
    check(err.strip() != "", "no message on stderr")


@test("startup_listen_in_use")
def _(ctx):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        c = ctx.session.certs()
        code, out, err = run_gatehouse(ctx, ["--listen", "127.0.0.1:%d" % port, "--cert", c["ec_cert"],
                                             "--key", c["ec_key"], "--to", "127.0.0.1:%d" % free_port()])
        check(code != 0, "gatehouse started on a port already in use")
        check(str(port) in err, "stderr does not name the address: %r" % err[-300:])
    finally:
        s.close()


BAD_ARGS = [
    # (flags added to a valid command line, a word the error message must contain)
    (["--workers", "0"], "workers"),
    (["--workers", "abc"], "workers"),
    (["--workers", "-2"], "workers"),
    (["--log-level", "loud"], "loud"),
    (["--handshake-timeout", "5x"], "5x"),
    (["--header-timeout", "-1s"], "-1s"),
    (["--keepalive-timeout", ""], "timeout"),
    (["--connect-timeout", "99999999999999999999ms"], "timeout"),
    (["--to", "localhost:80"], "localhost"),
    (["--to", "127.0.0.1"], "127.0.0.1"),
    (["--to", "127.0.0.1:99999"], "99999"),
    (["--listen-typo", "x"], "listen-typo"),
    (["--workers"], "workers"),
    (["--max-connections", "0"], "max-connections"),
    (["--max-connections", "16777217"], "max-connections"),
    (["--max-connections", "1k"], "max-connections"),
]


@test("startup_bad_arguments")
def _(ctx):
    c = ctx.session.certs()
    for extra, word in BAD_ARGS:
        code, out, err = run_gatehouse(ctx, base_args(ctx, c["ec_cert"], c["ec_key"]) + extra)
        check(code != 0, "gatehouse started with %r" % extra)
        check(word.lower() in err.lower(), "the error for %r does not mention %r: %r" % (extra, word, err[-300:]))
    code, out, err = run_gatehouse(ctx, ["--listen", "nonsense", "--cert", c["ec_cert"], "--key", c["ec_key"],
                                         "--to", "127.0.0.1:%d" % free_port()])
    check(code != 0 and "nonsense" in err, "a bad --listen address: exit %s, %r" % (code, err[-300:]))


@test("startup_timeout_units")
def _(ctx):
    b = ctx.backend()
    gh = ctx.gatehouse([b], args=["--handshake-timeout", "1500ms", "--header-timeout", "2s",
                                  "--keepalive-timeout", "1m", "--connect-timeout", "3", "--response-timeout", "1h",
                                  "--shutdown-timeout", "250ms"])
    from harness import Conn
    with Conn(gh.port) as conn:
        check(conn.request("GET", "/small").status == 200, "request with every timeout flag set")
