"""The resolver (c-ares) as the prober uses it for servers given by name: `resolver` names the DNS
servers, answers are kept for their TTL, and a slow DNS server does not hold up health checks.

The DNS server here is the test's own (DnsServer: UDP, A and AAAA from a table, per-name delay and
query counts). The master resolves names at load with getaddrinfo, which the fake resolver
(tests/integration/fake_resolver.c, LD_PRELOAD) answers from a hosts file; the prober asks DNS."""
import os
import socket
import struct
import subprocess
import threading
import time

from harness import GATEHOUSE, T, check, eq, test, wait_until
from cfgutil import FakeHosts, kill_backend, log_lines, wait_log


class DnsServer:
    """name -> (list of IPv4 addresses, ttl, delay in s); NXDOMAIN for other names."""

    def __init__(self, ctx, zone):
        self.zone = zone
        self.queries = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stop = True
        self.sock.close()

    def count(self, name, qtype=1):
        with self.lock:
            return self.queries.get((name, qtype), 0)

    def serve(self):
        while not self.stop:
            try:
                q, peer = self.sock.recvfrom(512)
            except OSError:
                return
            try:
                name, off = self.name(q, 12)
                qtype = struct.unpack("!H", q[off:off + 2])[0]
            except (IndexError, struct.error, UnicodeDecodeError):
                continue
            with self.lock:
                self.queries[(name, qtype)] = self.queries.get((name, qtype), 0) + 1
            entry = self.zone.get(name)
            delay = entry[2] if entry else 0
            reply = self.answer(q, off + 4, qtype, entry)
            if delay:
                threading.Timer(delay, self.send, (reply, peer)).start()
            else:
                self.send(reply, peer)

    def send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    @staticmethod
    def name(q, off):
        labels = []
        while q[off]:
            n = q[off]
            labels.append(q[off + 1:off + 1 + n].decode())
            off += 1 + n
        return ".".join(labels).lower(), off + 1

    @staticmethod
    def answer(q, qend, qtype, entry):
        flags = 0x8180 if entry else 0x8183
        answers = b""
        if entry and qtype == 1:
            for ip in entry[0]:
                answers += struct.pack("!HHHIH", 0xc00c, 1, 1, entry[1], 4) + socket.inet_aton(ip)
        n = len(entry[0]) if entry and qtype == 1 else 0
        return q[:2] + struct.pack("!HHHHH", flags, 1, n, 0, 0) + q[12:qend] + answers


def named_conf(ctx, hosts_env, dns, pools, extra=()):
    """pools: list of (name, [server lines], health or None). One TLS listener, site default -> first pool."""
    c = ctx.session.certs()

    def conf(p):
        lines = ["workers 1", "resolve_interval 200ms", "resolver 127.0.0.1:%d" % dns.port]
        lines += list(extra)
        lines.append("listen 127.0.0.1:%d tls" % p[0])
        for name, servers, health in pools:
            lines.append("pool %s {" % name)
            lines += ["    server " + s for s in servers]
            if health:
                lines.append("    " + health)
            lines.append("}")
        lines += ["site default {", "    cert %s %s" % (c["ec_cert"], c["ec_key"]),
                  "    route / { proxy %s }" % pools[0][0], "}", ""]
        return "\n".join(lines)
    return ctx.gatehouse_config(conf, nports=1, env=hosts_env)


def master_only_env(hosts):
    """The fake resolver for the master's getaddrinfo, and no CARES_HOSTS: the prober must ask DNS."""
    env = hosts.env()
    env.pop("CARES_HOSTS", None)
    return env


@test("resolver_answers_kept_for_their_ttl")
def _(ctx):
    # The prober asks every resolve_interval (200ms); a name with TTL 60 is asked once, one with TTL 0
    # at every tick. Before the resolver, getaddrinfo asked at every tick whatever the TTL.
    b = ctx.backend("b")
    dns = DnsServer(ctx, {"long.test": (["127.0.0.1"], 60, 0), "zero.test": (["127.0.0.1"], 0, 0)})
    hosts = FakeHosts(ctx, ["127.0.0.1 long.test zero.test"])
    gh = named_conf(ctx, master_only_env(hosts), dns,
                    [("app", ["long.test:%d" % b.port], None), ("other", ["zero.test:%d" % b.port], None)])
    check(wait_until(lambda: dns.count("zero.test") >= 6, 5 * T),
          "zero.test (TTL 0) was asked %d times in %.1fs, want one per 200ms tick" % (dns.count("zero.test"), 5 * T))
    eq(dns.count("long.test"), 1, "A queries for long.test (TTL 60) over %d ticks" % dns.count("zero.test"))
    eq(log_lines(gh, r"cannot resolve"), [], "'cannot resolve' lines")


@test("resolver_directive_bad_address_is_config_error")
def _(ctx):
    path = os.path.join(ctx.dir, "g.conf")
    with open(path, "w") as f:
        f.write("workers 1\nresolver 127.0.0.1 dns.example\n")
    r = subprocess.run([GATEHOUSE, "-t", "-c", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    out = r.stdout.decode(errors="replace")
    check(r.returncode != 0, "gatehouse -t accepted a DNS server given by name")
    check("g.conf:2:" in out and "DNS server" in out, "error is not FILE:LINE naming the DNS server: %r" % out)


@test("slow_dns_stalls_health_checks")
def _(ctx):
    # A DNS server that takes 2.5 s per answer. The prober used to call getaddrinfo in its loop, so every
    # re-resolution (200ms apart) blocked every health check for 2.5 s: a dead server of another pool was
    # judged down seconds late. Now the resolver waits in the loop and the checks go on.
    b = ctx.backend("b")
    slow = 2.5
    dns = DnsServer(ctx, {"slow.test": (["127.0.0.1"], 0, slow)})
    hosts = FakeHosts(ctx, ["127.0.0.1 slow.test"])
    env = master_only_env(hosts)
    env["GH_FAKE_DELAY_MS"] = str(int(slow * 1000))  # getaddrinfo, as the old prober would have felt it
    gh = named_conf(ctx, env, dns,
                    [("app", ["127.0.0.1:%d" % b.port], "health http GET /healthz interval=200ms timeout=150ms"),
                     ("named", ["slow.test:%d" % b.port], None)])
    time.sleep(1.0)  # a few re-resolutions are under way (each waits 2.5 s for its answer)
    kill_backend(b)
    t0 = time.monotonic()
    took = wait_log(gh, r"server 127\.0\.0\.1:%d of pool app is down" % b.port, 6 * T)
    check(took is not None, "no 'is down' line within %.1fs of the kill" % (6 * T))
    check(took < 1.5 * T, "'is down' %.2fs after the kill with a slow DNS server (checks every 200ms, fall 2): "
          "the checks waited for DNS" % took)
    check(dns.count("slow.test") >= 1, "the prober never asked the DNS server for slow.test")
    ctx.info = "down %.2fs after the kill, DNS answers taking %.1fs" % (time.monotonic() - t0, slow)
