"""Certificates chosen by SNI from a configuration file: one per site (exact, wildcard,
default), ECDSA and RSA side by side for one name, no SNI, and session resumption with SNI."""
import os
import re

from harness import Conn, check, eq, test
from cfgutil import named_certs, peer_subject, s_client_raw

GET = b"GET /id HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"


def sni_config(ctx, with_default=True):
    nc = named_certs(ctx.session)
    b = ctx.backend("b1")

    def cert(k):
        return "    cert %s %s\n" % nc[k]

    def conf(p):
        text = ("workers 2\n"
                "listen 127.0.0.1:%d tls\n"
                "pool app { server 127.0.0.1:%d }\n" % (p[0], b.port))
        text += "site a.test {\n" + cert("a") + "    route / { proxy app }\n}\n"
        text += "site b.test {\n" + cert("b") + "    route / { respond 200 \"site b\" }\n}\n"
        text += "site *.w.test {\n" + cert("wild") + "    route / { respond 200 \"site wild\" }\n}\n"
        text += "site c.test {\n" + cert("c-ec") + cert("c-rsa") + "    route / { respond 200 \"site c\" }\n}\n"
        if with_default:
            text += "site default {\n" + cert("default") + "    route / { respond 200 \"site default\" }\n}\n"
        return text
    return ctx.gatehouse_config(conf, nports=1), b


def subject_for(gh, args, host=None):
    out = s_client_raw(gh.port, args + ["-ign_eof"], input=GET % (host or b"x.test"))
    subj = peer_subject(out)
    check(subj is not None, "s_client %s: no certificate: %s" % (" ".join(args), out[-500:]))
    return subj, out


@test("sni_certificate_per_site")
def _(ctx):
    gh, b = sni_config(ctx)
    cases = [("a.test", "CN = a.test"), ("b.test", "CN = b.test"), ("x.w.test", "CN = *.w.test"),
             ("deep.x.w.test", "CN = *.w.test"), ("B.TEST", "CN = b.test"), ("unknown.test", "CN = default.test"),
             ("w.test", "CN = default.test")]
    for name, want in cases:
        subj, out = subject_for(gh, ["-servername", name], host=name.encode())
        check(subj.startswith(want), "SNI %s: got certificate %r, want %s" % (name, subj, want))
    subj, out = subject_for(gh, ["-noservername"])
    check(subj.startswith("CN = default.test"), "no SNI: got certificate %r, want the default site's" % subj)
    # And the requests on those connections reach the site of their Host.
    for sni, body in (("a.test", b"b1"), ("b.test", b"site b"), ("q.w.test", b"site wild"), ("c.test", b"site c"),
                      ("zzz.test", b"site default")):
        with Conn(gh.port, sni=sni) as c:
            r = c.request("GET", "/id", host=sni)
            eq((r.status, r.body), (200, body), "GET /id with SNI and Host %s" % sni)


@test("sni_no_default_first_site")
def _(ctx):
    # Without `site default`, a client without SNI (or with an unknown name) gets the first site's certificate.
    gh, b = sni_config(ctx, with_default=False)
    subj, out = subject_for(gh, ["-noservername"])
    check(subj.startswith("CN = a.test"), "no SNI, no default site: got %r, want the first site's (a.test)" % subj)
    subj, out = subject_for(gh, ["-servername", "nobody.test"])
    check(subj.startswith("CN = a.test"), "unknown SNI, no default site: got %r, want a.test" % subj)


@test("sni_ecdsa_and_rsa")
def _(ctx):
    gh, b = sni_config(ctx)
    for v in ("-tls1_2", "-tls1_3"):
        subj, out = subject_for(gh, ["-servername", "c.test", v], host=b"c.test")
        check("O = ecdsa" in subj, "default client (%s) got %r, want the ECDSA certificate" % (v, subj))
        check(re.search(r"Peer signature type: ECDSA", out), "default client (%s): no ECDSA signature" % v)
        check("HTTP/1.1 200" in out and "site c" in out, "default client (%s): no answer: %s" % (v, out[-300:]))
        subj, out = subject_for(gh, ["-servername", "c.test", v, "-sigalgs", "RSA-PSS+SHA256:RSA+SHA256"],
                                host=b"c.test")
        check("O = rsa" in subj, "RSA-only client (%s) got %r, want the RSA certificate" % (v, subj))
        check(re.search(r"Peer signature type: RSA", out), "RSA-only client (%s): no RSA signature" % v)
        check("HTTP/1.1 200" in out and "site c" in out, "RSA-only client (%s): no answer: %s" % (v, out[-300:]))
    # TLS 1.2 with only RSA cipher suites: the RSA certificate.
    subj, out = subject_for(gh, ["-servername", "c.test", "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"])
    check("O = rsa" in subj, "TLS 1.2 ECDHE-RSA client got %r, want the RSA certificate" % subj)
    # A site with only an ECDSA certificate cannot serve an RSA-only client: no handshake, not a wrong cert.
    out = s_client_raw(gh.port, ["-servername", "a.test", "-tls1_3", "-sigalgs", "RSA-PSS+SHA256"])
    subj = peer_subject(out)
    check(subj is None or "a.test" in subj, "RSA-only client to an ECDSA-only site got %r" % subj)


@test("sni_session_resumption")
def _(ctx):
    gh, b = sni_config(ctx)
    # TLS 1.3 tickets, with the SNI of a site that is not the default one.
    for name in ("a.test", "c.test"):
        path = os.path.join(ctx.dir, "sess-%s.pem" % name)
        out = s_client_raw(gh.port, ["-servername", name, "-tls1_3", "-sess_out", path, "-ign_eof"],
                           input=GET % name.encode())
        check("HTTP/1.1 200" in out, "first connection to %s: %s" % (name, out[-400:]))
        for i in range(2):
            out = s_client_raw(gh.port, ["-servername", name, "-tls1_3", "-sess_in", path, "-ign_eof"],
                               input=GET % name.encode())
            check(re.search(r"^Reused, TLSv1\.3", out, re.M), "TLS 1.3 session for SNI %s not resumed (attempt %d): %s"
                  % (name, i + 1, out[-600:]))
            check("HTTP/1.1 200" in out, "resumed connection to %s: no 200: %s" % (name, out[-400:]))
    # TLS 1.2 -reconnect with SNI b.test.
    out = s_client_raw(gh.port, ["-servername", "b.test", "-tls1_2", "-reconnect"])
    new = len(re.findall(r"^New, ", out, re.M))
    reused = len(re.findall(r"^Reused, TLSv1\.2", out, re.M))
    check(new == 1 and reused == 5, "TLS 1.2 -reconnect with SNI b.test: %d new and %d reused, want 1 and 5" % (new, reused))
    # A session of a.test offered with the SNI b.test must not resume into a.test's certificate.
    path = os.path.join(ctx.dir, "sess-a.test.pem")
    out = s_client_raw(gh.port, ["-servername", "b.test", "-tls1_3", "-sess_in", path, "-ign_eof"], input=GET % b"b.test")
    subj = peer_subject(out)
    if re.search(r"^Reused", out, re.M):
        check("site b" in out, "a.test's session resumed under SNI b.test and served: %s" % out[-400:])
    else:
        check(subj is not None and subj.startswith("CN = b.test"), "SNI b.test with a.test's session got %r" % subj)
