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
import socket
import ssl
import subprocess
import threading
import time

from harness import T, Conn, check, curl, eq, test, wait_until
from cfgutil import FakeHosts, log_lines, wait_log, write
from t_resolver import DnsServer

LIBCRYPT = ctypes.CDLL("libcrypt.so.1")
LIBCRYPT.crypt_gensalt.restype = ctypes.c_char_p
LIBCRYPT.crypt.restype = ctypes.c_char_p


def crypt_hash(password, prefix=b"$y$", cost=0):
    """A crypt(3) hash through libxcrypt (yescrypt by default, "$2b$" bcrypt): what mkpasswd writes."""
    salt = LIBCRYPT.crypt_gensalt(prefix, cost, None, 0)
    return LIBCRYPT.crypt(password.encode(), salt).decode()


LOCAL = "to=127.0.0.1/32"


def fwd_conf(ctx, forward_lines, tls=False, extra=(), env=None, dns=None, nports=1):
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
    check(wait_log(gh, r"tunnel from 127\.0\.0\.1 to 127\.0\.0\.1:%d by rule 1 ended" % origin.port, 5 * T),
          "the tunnel's log line (user, destination, rule, bytes, duration)")
