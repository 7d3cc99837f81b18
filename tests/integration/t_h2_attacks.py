"""The known HTTP/2 attacks cost an attacker more than they cost gatehouse (issue 7).

Each test floods one connection with raw frames (h2raw), bounded in count and in time,
then checks what the RFC or the attack's advisory asks for (GOAWAY, a closed connection,
a reset stream, nothing reaching the backend), and afterwards that gatehouse is alive (a
new connection gets a 200) and that its worker's RSS grew by less than GROWTH_KIB.

  rapid reset          CVE-2023-44487 (HEADERS + RST_STREAM pairs)
  continuation flood   VU#421644, 2024 (CONTINUATION frames without END_HEADERS)
  hpack bomb           one dynamic-table entry referenced until the list is huge
  settings/ping flood  CVE-2019-9515 / -9512 (ACKs queued by a client that does not read)
  priority flood       CVE-2019-9513 (stream dependency churn on idle streams)
  empty frames flood   CVE-2019-9518 (zero-length DATA frames)
  window update flood  many tiny WINDOW_UPDATEs
  zero-window stall    CVE-2019-9517 (a window that never opens: the send timeout ends it)
  slow read            a client that reads its socket slowly: memory stays bounded
"""
import socket
import struct
import time

import h2raw
from h2raw import (CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, INITIAL_WINDOW_SIZE, H2Conn, error_name,
                   frame, indexed, literal, literal_block, ping, priority, request_headers, rst_stream, settings_frame,
                   window_update)
from harness import SLOW, T, Fail, check, eq, test

GROWTH_KIB = 16 * 1024   # RSS a worker may gain from one attack connection (max_connection_memory 4m + slack)
MAX_SECONDS = 10 * T     # every flood stops after this long


def rss_ok(front, before, what):
    """The worker's RSS grew by less than GROWTH_KIB (reported only under SLOW=1)."""
    now = front.rss_kib()
    grew = now - before
    if not SLOW:
        check(grew < GROWTH_KIB, "%s: worker RSS grew by %d KiB (%d -> %d), bound %d"
              % (what, grew, before, now, GROWTH_KIB))
    return "rss +%d KiB" % grew


def warm(front):
    """One request first, so that the baseline RSS includes the TLS and HTTP/2 set-up."""
    h2raw.alive_200(front)
    return front.rss_kib()


def poll(c, budget=0.01):
    """Reads whatever gatehouse has sent, for at most budget seconds; True once it closed."""
    try:
        while True:
            if c.read_frame(budget) is None:
                return True
    except TimeoutError:
        return False


def flood(c, make, count, batch=100, read=True, seconds=None):
    """Sends count frames (make(i) -> bytes) in writes of batch frames, for at most `seconds`;
    between writes reads what came (unless read=False). Returns (frames sent, why it stopped):
    "count", "time", "closed" (gatehouse closed or reset), "goaway", "blocked" (gatehouse stopped
    reading: a send did not complete within 2 s)."""
    deadline = time.monotonic() + (seconds or MAX_SECONDS)
    c.s.settimeout(2 * T)
    sent = 0
    while sent < count:
        if time.monotonic() > deadline:
            return sent, "time"
        n = min(batch, count - sent)
        data = b"".join(make(sent + k) for k in range(n))
        try:
            c.s.sendall(data)
        except (socket.timeout, TimeoutError):
            return sent, "blocked"
        except OSError:
            return sent, "closed"
        sent += n
        c.bytes_sent += len(data)
        if read:
            if poll(c):
                return sent, "closed"
            if c.goaway is not None:
                return sent, "goaway"
    return sent, "count"


def finish(c, timeout=3):
    """After a flood: reads until GOAWAY or EOF (bounded); returns a short description."""
    try:
        g = c.wait_goaway_or_close(timeout * T)
    except Fail:
        g = None
    if isinstance(g, tuple):
        return "GOAWAY %s" % error_name(g[1])
    return g or "still open"


def start(ctx, **kw):
    b = ctx.backend()
    front = h2raw.start_front(ctx, b, **kw)
    return b, front, warm(front)


@test("h2_attack_rapid_reset", timeout=60)
def _(ctx):
    """CVE-2023-44487: streams opened and cancelled at once, 5000 times. gatehouse ends the
    connection with GOAWAY, and the backend does not see a burst of requests nobody waits for."""
    b, front, rss0 = start(ctx)
    base = len(b.requests())
    pairs = 5000
    with front.conn() as c:
        def pair(i):
            sid = 1 + 2 * i
            return (c.headers_frame(sid, literal_block(request_headers("GET", "/slow?ms=300&rr=%d" % i)))
                    + rst_stream(sid))
        sent, why = flood(c, pair, pairs, batch=50)
        end = finish(c) if why not in ("goaway", "closed") else (
            "GOAWAY %s" % error_name(c.goaway[1]) if c.goaway else "closed")
    time.sleep(0.5 * T)
    reached = len(b.requests()) - base
    check(end.startswith("GOAWAY") or end == "closed",
          "rapid reset: after %d HEADERS+RST_STREAM pairs the connection is %s" % (sent, end))
    check(sent < pairs, "rapid reset: all %d pairs were accepted without GOAWAY (%s)" % (pairs, end))
    check(reached <= 100, "rapid reset: %d cancelled requests reached the backend (of %d sent)" % (reached, sent))
    h2raw.alive_200(front)
    ctx.info = "GOAWAY after %d pairs (%s), %d reached the backend, %s" % (sent, end, reached,
                                                                          rss_ok(front, rss0, "rapid reset"))


@test("h2_attack_reset_in_same_read_never_reaches_backend", timeout=60)
def _(ctx):
    """20 streams opened and cancelled in one write (far below the rapid-reset threshold): none of
    them reaches the backend (docs/config.md: streams opened and reset within one read), and the
    connection goes on: a request after them is answered."""
    b, front, rss0 = start(ctx)
    base = len(b.requests())
    with front.conn() as c:
        out = b""
        for i in range(20):
            sid = c.new_sid()
            out += c.headers_frame(sid, literal_block(request_headers("GET", "/echo?cancelled=%d" % i))) + rst_stream(sid)
        c.send(out)
        o = c.get("/echo?after=1")
        check(o.kind == "response" and o.status == 200, "the request after the resets got %r" % o)
    time.sleep(0.3 * T)
    got = [e["target"] for e in b.requests()[base:]]
    eq(got, ["/echo?after=1"], "requests the backend received")


def continuation_flood(ctx, piece, what):
    b, front, rss0 = start(ctx)
    limit = 4 << 20  # 64 ms of a fast link; max_header_list_size is 64k
    with front.conn() as c:
        sid = c.new_sid()
        c.send(c.headers_frame(sid, literal_block(request_headers("GET", "/echo?cont=1")), end_stream=True,
                               end_headers=False))
        sent, why = flood(c, lambda i: frame(CONTINUATION, 0, sid, piece(i)), limit // (9 + len(piece(0)) or 1),
                          batch=200)
        end = finish(c) if why not in ("goaway", "closed") else "closed"
    nbytes = sent * (9 + len(piece(0)))
    check(why in ("goaway", "closed", "blocked") and end != "still open",
          "%s: %d bytes of CONTINUATION (%d frames) and the connection is %s (%s)" % (what, nbytes, sent, end, why))
    check(nbytes < 1 << 20, "%s: gatehouse took %d bytes of one header block before closing" % (what, nbytes))
    eq([e["target"] for e in b.requests() if "cont=1" in e["target"]], [], "%s: requests upstream" % what)
    h2raw.alive_200(front)
    ctx.info = "closed after %d frames / %d bytes (%s, %s), %s" % (sent, nbytes, why, end, rss_ok(front, rss0, what))


@test("h2_attack_continuation_flood", timeout=60)
def _(ctx):
    """CONTINUATION frames that each add a header, without END_HEADERS (2024, VU#421644): the
    connection ends once the header list passes its bound, not when memory runs out."""
    continuation_flood(ctx, lambda i: literal("x-c%d" % (i % 1000), "v" * 100), "continuation flood")


@test("h2_attack_continuation_flood_empty", timeout=60)
def _(ctx):
    """Empty CONTINUATION frames forever: the header list never grows, so only a bound on frames
    (or bytes) per header block ends it."""
    continuation_flood(ctx, lambda i: b"", "empty continuation flood")


@test("h2_attack_hpack_bomb", timeout=60)
def _(ctx):
    """One 4000-byte header in the dynamic table, referenced 16000 times by one-byte indexed fields:
    a 16 KiB block that decodes to 64 MB. The stream (or connection) is refused; nothing goes upstream."""
    b, front, rss0 = start(ctx)
    with front.conn() as c:
        block = literal_block(request_headers("GET", "/echo?bomb=1")) + literal("x-bomb", "b" * 4000, indexing=True)
        block += indexed(62) * 16000
        sid = c.new_sid()
        out = c.headers_frame(sid, block[:16384], end_stream=True, end_headers=len(block) <= 16384)
        for i in range(16384, len(block), 16384):
            out += frame(CONTINUATION, END_HEADERS if i + 16384 >= len(block) else 0, sid, block[i:i + 16384])
        c.send(out)
        o = c.response(sid)
    ok = o.kind in ("rst", "goaway", "closed") or (o.kind == "response" and o.status == 431)
    check(ok, "hpack bomb: got %r, want a reset, GOAWAY or 431" % o)
    eq([e["target"] for e in b.requests() if "bomb=1" in e["target"]], [], "hpack bomb: requests upstream")
    h2raw.alive_200(front)
    ctx.info = "%r, %s" % (o, rss_ok(front, rss0, "hpack bomb"))


def ack_flood(ctx, make, what, count=100000):
    """Frames that each ask for an answer, from a client that never reads: gatehouse must not
    queue answers without bound (it closes, or stops reading)."""
    b, front, rss0 = start(ctx)
    with front.conn() as c:
        c.handshake()
        sent, why = flood(c, make, count, batch=500, read=False)
        peak = front.rss_kib()
        end = finish(c, 3) if why != "closed" else "closed"
    h2raw.alive_200(front)
    grew = peak - rss0
    if not SLOW:
        check(grew < GROWTH_KIB, "%s: worker RSS grew by %d KiB during the flood" % (what, grew))
    ctx.info = "%d frames, stopped: %s, then %s, peak rss +%d KiB, %s" % (sent, why, end, grew,
                                                                         rss_ok(front, rss0, what))
    return sent, why, end


@test("h2_attack_settings_flood", timeout=60)
def _(ctx):
    ack_flood(ctx, lambda i: settings_frame([(INITIAL_WINDOW_SIZE, 65535 + (i & 1))]), "settings flood")


@test("h2_attack_ping_flood", timeout=60)
def _(ctx):
    ack_flood(ctx, lambda i: ping(struct.pack(">Q", i)), "ping flood")


@test("h2_attack_priority_flood", timeout=60)
def _(ctx):
    """PRIORITY frames on 100000 idle streams, each depending on the one before: the dependency
    tree (if kept) must be bounded."""
    ack_flood(ctx, lambda i: priority(1 + 2 * i, dep=2 * i - 1 if i else 0, weight=i & 0xFF, exclusive=True),
              "priority flood")


@test("h2_attack_empty_data_flood", timeout=60)
def _(ctx):
    """CVE-2019-9518: an open request stream fed zero-length DATA frames (no END_STREAM): each costs
    gatehouse work and the client nothing; within 100000 of them the stream or connection ends."""
    b, front, rss0 = start(ctx)
    with front.conn() as c:
        sid = c.request(request_headers("POST", "/upload?empty=1"), end_stream=False)
        sent, why = flood(c, lambda i: frame(DATA, 0, sid, b""), 100000, batch=500)
        st = c.streams[sid]
        end = "RST %s" % error_name(st.reset) if st.reset is not None else (
            finish(c, 3) if why not in ("goaway", "closed") else why)
    check(end != "still open" or why != "count",
          "empty DATA flood: 100000 empty DATA frames and the stream is still open")
    h2raw.alive_200(front)
    ctx.info = "stopped after %d frames (%s, %s), %s" % (sent, why, end, rss_ok(front, rss0, "empty data flood"))


@test("h2_attack_window_update_flood", timeout=60)
def _(ctx):
    """100000 one-byte WINDOW_UPDATEs on the connection and on an open stream: memory bounded,
    the connection stays correct (a request on it still works) or is closed as abusive."""
    b, front, rss0 = start(ctx)
    with front.conn() as c:
        sid = c.request(request_headers("POST", "/upload?wu=1"), end_stream=False)
        sent, why = flood(c, lambda i: window_update(0 if i & 1 else sid, 1), 100000, batch=500)
        if why == "count":
            c.send(h2raw.data_frame(sid, b"hello", end=True))
            o = c.response(sid)
            check(o.kind in ("response", "goaway", "closed"), "window update flood: the stream got %r" % o)
    h2raw.alive_200(front)
    ctx.info = "%d frames (%s), %s" % (sent, why, rss_ok(front, rss0, "window update flood"))


@test("h2_attack_zero_window_stall", timeout=60)
def _(ctx):
    """CVE-2019-9517: a client that asks for 32 MiB with an initial window of 0 and never opens it.
    The send timeout (2s here) ends the stream or the connection; memory stays bounded (the backend
    is held back, not read into gatehouse)."""
    b, front, rss0 = start(ctx, global_extra="timeouts { send 2s }")
    with H2Conn(front.port, settings=[(INITIAL_WINDOW_SIZE, 0)], auto_window=False) as c:
        t0 = time.monotonic()
        sid = c.request(request_headers("GET", "/download?size=33554432"))
        o = None
        deadline = t0 + 15 * T
        while time.monotonic() < deadline:
            try:
                f = c.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
            st = c.streams[sid]
            if f is None or st.reset is not None or c.goaway is not None:
                o = "EOF" if f is None else ("RST %s" % error_name(st.reset) if st.reset is not None else
                                             "GOAWAY %s" % error_name(c.goaway[1]))
                break
        took = time.monotonic() - t0
        peak = front.rss_kib()
    check(o is not None, "zero-window stall: stream still open after %.0fs (frames: %s)" % (took, c.describe_frames()))
    check(took >= 1.5, "zero-window stall: ended after %.1fs, before the 2s send timeout (%s)" % (took, o))
    h2raw.alive_200(front)
    grew = peak - rss0
    if not SLOW:
        check(grew < GROWTH_KIB, "zero-window stall: worker RSS grew by %d KiB" % grew)
    ctx.info = "%s after %.1fs, peak rss +%d KiB" % (o, took, grew)


@test("h2_attack_zero_window_stream_does_not_stall_others", timeout=60)
def _(ctx):
    """One stream whose window never opens (a 32 MiB download) beside one that the client lets
    through: the second is answered at once, and gatehouse does not read the first one's 32 MiB
    from the backend into memory meanwhile (the response buffer per stream is bounded)."""
    b, front, rss0 = start(ctx)
    with H2Conn(front.port, settings=[(INITIAL_WINDOW_SIZE, 0)], auto_window=False) as c:
        c.send(window_update(0, 1 << 24))
        stalled = c.request(request_headers("GET", "/download?size=33554432"))
        time.sleep(0.5 * T)  # the download is under way upstream
        other = c.request(request_headers("GET", "/small"))
        c.send(window_update(other, 1 << 20))
        o = c.response(other, timeout=5 * T)
        check(o.kind == "response" and o.status == 200 and len(o.body) == 1024,
              "the other stream got %r beside a stalled one" % o)
        st = c.streams[stalled]
        check(st.reset is None and c.goaway is None, "the stalled stream was ended early (%s)" % c.describe_frames())
        time.sleep(1.0 * T)
        grew = front.rss_kib() - rss0
        if not SLOW:
            check(grew < GROWTH_KIB, "a stalled 32 MiB download grew the worker by %d KiB" % grew)
    h2raw.alive_200(front)
    ctx.info = "other stream answered, stalled one held, rss +%d KiB" % grew


@test("h2_attack_slow_read", timeout=60)
def _(ctx):
    """A client that opens big windows but reads its socket 4 KiB every 50 ms while a 64 MiB
    download is due: gatehouse holds back the backend instead of buffering (RSS bounded)."""
    b, front, rss0 = start(ctx)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.settimeout(5 * T)
    raw.connect(("127.0.0.1", front.plain_port))
    try:
        raw.sendall(h2raw.PREFACE + settings_frame([(INITIAL_WINDOW_SIZE, 0x7FFFFFFF)]) +
                    window_update(0, 0x7FFFFFFF - 65535))
        time.sleep(0.1)  # the request in a second write (see h2_request_in_preface_segment_served_plain)
        raw.sendall(settings_frame(ack=True) + frame(HEADERS, END_HEADERS | END_STREAM, 1, literal_block(
            request_headers("GET", "/download?size=67108864", scheme="http"))))
        t0 = time.monotonic()
        got = 0
        peak = 0
        while time.monotonic() - t0 < 5 * T:
            try:
                d = raw.recv(4096)
            except (socket.timeout, OSError):
                break
            if not d:
                break
            got += len(d)
            time.sleep(0.05)
            peak = max(peak, front.rss_kib())
    finally:
        raw.close()
    check(got > 32 << 10, "slow read: only %d bytes of the response in 5s" % got)  # (the download flowed)
    grew = peak - rss0
    if not SLOW:
        check(grew < GROWTH_KIB, "slow read: worker RSS grew by %d KiB while the client read %d bytes" % (grew, got))
    h2raw.alive_200(front)
    ctx.info = "read %d KiB in 5s, peak rss +%d KiB" % (got >> 10, grew)


# ---------------------------------------------------------------- the defences must not hit normal clients

@test("h2_attack_guard_busy_download_not_a_flood", timeout=60)
def _(ctx):
    """A client that answers every DATA frame with two WINDOW_UPDATEs (as some do) and pings now and
    then, through a 16 MiB download: many small control frames, none of them abuse. It completes."""
    b, front, rss0 = start(ctx)
    size = 16 << 20
    with H2Conn(front.port, timeout=20 * T) as c:
        sid = c.request(request_headers("GET", "/download?size=%d" % size))
        n = 0
        while not c.streams[sid].ended and c.streams[sid].reset is None and c.goaway is None:
            try:
                f = c.read_frame()
            except TimeoutError:
                raise Fail("busy download: stalled after %d bytes" % len(c.streams[sid].body))
            if f is None:
                break
            n += 1
            if n % 64 == 0:
                c.send(ping(struct.pack(">Q", n)))
        st = c.streams[sid]
        check(c.goaway is None and st.reset is None and st.ended,
              "busy download: ended by %s after %d bytes (%s)" % (
                  "GOAWAY %s" % error_name(c.goaway[1]) if c.goaway else
                  "RST %s" % error_name(st.reset) if st.reset is not None else "EOF", len(st.body),
                  c.describe_frames()))
        eq(len(st.body), size, "bytes received")
    ctx.info = "%d frames in, %s" % (n, rss_ok(front, rss0, "busy download"))


@test("h2_attack_guard_h2load_many_requests_one_connection", timeout=60)
def _(ctx):
    """h2load: 3000 GETs on one connection, 10 at a time: a busy client, not a rapid reset."""
    import subprocess
    b, front, rss0 = start(ctx)
    r = subprocess.run(["h2load", "-n", "3000", "-c", "1", "-m", "10", front.gh.url("/small") if front.gh else
                        "https://127.0.0.1:%d/small" % front.port], capture_output=True, timeout=60 * T)
    out = r.stdout.decode(errors="replace")
    check("3000 succeeded" in out and "0 failed" in out and "0 errored" in out,
          "h2load: %s" % out[-600:])
    ctx.info = rss_ok(front, rss0, "h2load")
