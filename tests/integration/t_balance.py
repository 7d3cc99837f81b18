"""Balancing through real backends, from a configuration file: round_robin with weights,
least_conn, p2c, random, hash (header, cookie, client address), and backup servers.
Each backend answers /id with its name. Tolerances are stated next to each check."""
import collections
import time

from harness import T, Conn, build_request, check, eq, test
from cfgutil import SourceConn, backends, ids, kill_backend, log_lines, restart_backend, wait_log


def pool_config(ctx, servers, balance, workers=1, extra_pool=""):
    """A TLS listener, one pool of `servers` [(backend, options)] and one site proxying / to it."""
    c = ctx.session.certs()

    def conf(p):
        lines = ["workers %d" % workers, "listen 127.0.0.1:%d tls" % p[0], "pool app {"]
        for b, opts in servers:
            lines.append("    server 127.0.0.1:%d %s" % (b.port, opts))
        lines.append("    balance " + balance)
        if extra_pool:
            lines.append(extra_pool)
        lines += ["}", "site default {", "    cert %s %s" % (c["ec_cert"], c["ec_key"]),
                  "    route / { proxy app }", "}", ""]
        return "\n".join(lines)
    return ctx.gatehouse_config(conf, nports=1)


def three(ctx):
    return backends(ctx, ["b1", "b2", "b3"])


@test("balance_round_robin_weights")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(bs[0], "weight=3"), (bs[1], ""), (bs[2], "weight=1")], "round_robin")
    order = []
    with Conn(gh.port) as c:
        for i in range(50):
            r = c.request("GET", "/id")
            eq(r.status, 200, "status of request %d" % (i + 1))
            order.append(r.body.decode())
    seen = collections.Counter(order)
    # Smooth weighted round-robin over 50 = 10 rounds of 5 is exact: 30/10/10 (tolerance +-2).
    for name, want in (("b1", 30), ("b2", 10), ("b3", 10)):
        check(abs(seen[name] - want) <= 2, "weights 3:1:1 over 50 requests: %s, want 30/10/10 +-2" % dict(seen))
    # Smooth: the heavy server never gets 3 in a row (plain weighted round-robin would: b1 b1 b1 b2 b3).
    run = best = 0
    for name in order:
        run = run + 1 if name == "b1" else 0
        best = max(best, run)
    check(best <= 2, "b1 got %d requests in a row (not smooth): %s" % (best, " ".join(order[:20])))
    ctx.info = " ".join(order[:10])


@test("balance_least_conn")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(b, "") for b in bs], "least_conn")
    # Nothing in flight: ties, broken evenly. 30 requests -> 10 each (tolerance +-3).
    seen, st = ids(gh.port, 30)
    check(all(s == 200 for s in st), "statuses %s" % st)
    for b in bs:
        check(abs(seen[b.name] - 10) <= 3, "least_conn with nothing in flight, 30 requests: %s" % dict(seen))
    # Two slow requests in flight on two servers: every quick request goes to the third one.
    slow = []
    for i in range(2):
        c = Conn(gh.port, timeout=10 * T)
        c.send(build_request("GET", "/slow?ms=2500&n=%d" % i))
        slow.append(c)
        time.sleep(0.2)
    try:
        quick, st = ids(gh.port, 12)
        check(all(s == 200 for s in st), "statuses of the quick requests %s" % st)
        names = [c.read_response().get("x-backend") for c in slow]
    finally:
        for c in slow:
            c.close()
    check(len(set(names)) == 2, "two slow requests went to %s (least_conn: two different servers)" % names)
    third = [b.name for b in bs if b.name not in names]
    eq(dict(quick), {third[0]: 12}, "quick requests while %s each had one in flight" % names)


@test("balance_p2c")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(b, "") for b in bs], "p2c")
    # Nothing in flight: random pairs, uniform. 90 requests: expected 30 each, each >= 15 (about 3.4 sd).
    seen, st = ids(gh.port, 90)
    check(all(s == 200 for s in st), "statuses %s" % st)
    for b in bs:
        check(seen[b.name] >= 15, "p2c over 90 requests with nothing in flight: %s (want each >= 15)" % dict(seen))
    # One slow request in flight on server X: of any pair that includes X the other wins, so X gets none.
    c = Conn(gh.port, timeout=10 * T)
    try:
        c.send(build_request("GET", "/slow?ms=2500"))
        time.sleep(0.3)
        quick, st = ids(gh.port, 20)
        busy = c.read_response().get("x-backend")
    finally:
        c.close()
    check(all(s == 200 for s in st), "statuses of the quick requests %s" % st)
    eq(quick[busy], 0, "quick requests that p2c sent to %s, busy with a slow one (%s)" % (busy, dict(quick)))
    for b in bs:
        if b.name != busy:
            # Binomial(20, 1/2): at least 2 each (P(fewer) ~ 2e-5).
            check(quick[b.name] >= 2, "p2c quick requests: %s (want >= 2 for each idle server)" % dict(quick))
    ctx.info = "idle: %s; with %s busy: %s" % (dict(seen), busy, dict(quick))


@test("balance_random")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(bs[0], "weight=2"), (bs[1], ""), (bs[2], "")], "random")
    seen, st = ids(gh.port, 200)
    check(all(s == 200 for s in st), "statuses %s" % st)
    # Weighted random 2:1:1 over 200: expected 100/50/50; sd 7.1 and 6.1; tolerance about 4 sd.
    check(70 <= seen["b1"] <= 130, "random 2:1:1 over 200 requests: %s (want b1 in 70..130)" % dict(seen))
    for n in ("b2", "b3"):
        check(25 <= seen[n] <= 75, "random 2:1:1 over 200 requests: %s (want %s in 25..75)" % (dict(seen), n))
    ctx.info = str(dict(seen))


def spread_check(owner, bs, what):
    """owner: key -> backend. 30 keys over 3 equal servers: each gets at least one (P(not) ~ 2e-5)."""
    per = collections.Counter(owner.values())
    for b in bs:
        check(per[b.name] >= 1, "%s: 30 keys spread as %s (want every server to get some)" % (what, dict(per)))
    return per


@test("balance_hash_header")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(b, "") for b in bs], "hash header X-User", workers=2)
    owner = {}
    for u in range(30):
        user = "user-%d" % u
        got = set()
        # New connections (either worker) and one keep-alive connection; the name in any case.
        for hname in ("X-User", "x-user"):
            with Conn(gh.port) as c:
                r = c.request("GET", "/id", [(hname, user)])
                eq(r.status, 200, "status")
                got.add(r.body.decode())
        with Conn(gh.port) as c:
            for i in range(2):
                got.add(c.request("GET", "/id?i=%d" % i, [("X-User", user)]).body.decode())
        check(len(got) == 1, "X-User %s went to %s (hash header: always the same server)" % (user, sorted(got)))
        owner[user] = got.pop()
    per = spread_check(owner, bs, "hash header")
    ctx.info = "users per server %s" % dict(per)


@test("balance_hash_cookie")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(b, "") for b in bs], "hash cookie sid", workers=2)
    owner = {}
    for u in range(30):
        sid = "s%05d" % (u * 7919)
        got = set()
        for cookie in ("sid=%s" % sid, "theme=dark; sid=%s; lang=fr" % sid, "xsid=nope; sid=%s" % sid):
            with Conn(gh.port) as c:
                r = c.request("GET", "/id", [("Cookie", cookie)])
                eq(r.status, 200, "status")
                got.add(r.body.decode())
        check(len(got) == 1, "cookie sid=%s went to %s (hash cookie: always the same server)" % (sid, sorted(got)))
        owner[sid] = got.pop()
    per = spread_check(owner, bs, "hash cookie")
    # Other cookies do not matter: the same sid with different other cookies stays (checked above);
    # and a cookie whose name only ends in "sid" is not it.
    with Conn(gh.port) as c:
        a = c.request("GET", "/id", [("Cookie", "xsid=s00000")]).body
        b = c.request("GET", "/id", [("Cookie", "other=1")]).body
    eq(a, b, "server for Cookie xsid=.. (no sid) vs a request without sid")
    ctx.info = "sessions per server %s" % dict(per)


@test("balance_hash_ip")
def _(ctx):
    bs = three(ctx)
    gh = pool_config(ctx, [(b, "") for b in bs], "hash ip", workers=2)
    owner = {}
    for k in range(30):
        src = "127.0.0.%d" % (10 + k)
        got = set()
        for i in range(3):
            with SourceConn(gh.port, src) as c:
                r = c.request("GET", "/id")
                eq(r.status, 200, "status")
                got.add(r.body.decode())
        check(len(got) == 1, "client %s went to %s (hash ip: always the same server)" % (src, sorted(got)))
        owner[src] = got.pop()
    per = spread_check(owner, bs, "hash ip")
    # The backends see those client addresses in X-Forwarded-For.
    xff = set()
    for b in bs:
        for e in b.requests():
            xff.update(v for n, v in e["headers"] if n.lower() == "x-forwarded-for")
    check("127.0.0.10" in xff and "127.0.0.39" in xff, "X-Forwarded-For values: %s" % sorted(xff)[:5])
    ctx.info = "clients per server %s" % dict(per)


@test("balance_backup")
def _(ctx):
    b1, b2, b3 = three(ctx)
    gh = pool_config(ctx, [(b1, ""), (b2, ""), (b3, "backup")], "round_robin",
                     extra_pool="    health tcp interval=250ms timeout=150ms rise=1 fall=1")
    seen, st = ids(gh.port, 20)
    eq(seen["b3"], 0, "requests to the backup while both primaries are up (%s)" % dict(seen))
    check(seen["b1"] == 10 and seen["b2"] == 10, "primaries: %s" % dict(seen))
    for b in (b1, b2):
        kill_backend(b)
    for b in (b1, b2):
        check(wait_log(gh, r"server 127\.0\.0\.1:%d of pool app is down" % b.port, 3 * T) is not None,
              "no 'is down' for %s within 3s (tcp check every 250ms, fall=1)" % b.name)
    seen, st = ids(gh.port, 20)
    eq(st, [200] * 20, "statuses with only the backup alive")
    eq(dict(seen), {"b3": 20}, "servers with both primaries down")
    # A primary comes back: the backup gets nothing again.
    before = len(log_lines(gh, r"server 127\.0\.0\.1:%d of pool app is up" % b1.port))
    r1 = restart_backend(ctx, b1, "b1-again")
    check(wait_log(gh, r"server 127\.0\.0\.1:%d of pool app is up" % b1.port, 3 * T, after=before) is not None,
          "no 'is up' for the restarted b1 within 3s")
    seen, st = ids(gh.port, 20)
    eq(dict(seen), {r1.name: 20}, "servers once a primary is back")


@test("balance_hash_server_down")
def _(ctx):
    # Consistent hash: when one of three servers goes down, only its keys move; the others stay.
    bs = three(ctx)
    gh = pool_config(ctx, [(b, "") for b in bs], "hash header X-User",
                     extra_pool="    health tcp interval=250ms timeout=150ms rise=1 fall=1")
    users = ["u%d" % i for i in range(40)]

    def owners():
        out = {}
        with Conn(gh.port) as c:
            for u in users:
                r = c.request("GET", "/id", [("X-User", u)])
                eq(r.status, 200, "status for X-User %s" % u)
                out[u] = r.body.decode()
        return out
    before = owners()
    victim = collections.Counter(before.values()).most_common(1)[0][0]
    vb = [b for b in bs if b.name == victim][0]
    kill_backend(vb)
    check(wait_log(gh, r"server 127\.0\.0\.1:%d of pool app is down" % vb.port, 3 * T) is not None,
          "no 'is down' for the killed %s" % victim)
    after = owners()
    moved = [u for u in users if before[u] != after[u]]
    eq(sorted(moved), sorted(u for u in users if before[u] == victim),
       "keys that moved when %s went down (only its own may move)" % victim)
    check(victim not in after.values(), "keys still sent to the dead %s" % victim)
    ctx.info = "%d of 40 keys moved, all from %s" % (len(moved), victim)
