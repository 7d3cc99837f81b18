#!/usr/bin/env python3
"""A real origin server for gatehouse's integration tests.

A threaded raw-socket HTTP/1.1 server (no http.server: the tests need byte-level
control of what is sent and an exact record of what was received).

  backend.py --name b1 --dir DIR [--port 0] [--host 127.0.0.1 or ::1] [--raw-max BYTES]

Writes, in DIR:
  NAME.port    the port it listens on (written atomically once listening)
  NAME.raw     every byte received, on every connection, appended as it arrives
               (at most --raw-max bytes in total; events count the rest)
  NAME.events  one JSON object per line: accept, request, body, response, error, close

Endpoints (query parameters in brackets):
  /small                 1 KiB of pattern bytes
  /id                    the backend's name
  /echo                  the request head exactly as received, as the body
  /upload[?pause_ms=N]   reads the body (CL or chunked), answers "sha256hex length";
                         with pause_ms, stops reading for N ms after the first MiB
  /download[?size=N&chunked=1&chunk=K]   N pattern bytes, CL or chunked
  /close[?size=N]        N pattern bytes framed by closing the connection
  /status/N[?cl=K&junk=1]  status N (no body for 1xx, 204, 304; cl: send Content-Length K
                         anyway; junk: send illegal body bytes after a 204/304)
  /head[?junk=1]         777 bytes for GET, the same Content-Length and no body for HEAD
                         (junk: a broken backend that sends the body for HEAD too)
  /slow[?ms=N]           waits N ms, then answers "slow"
  /slowbody[?ms=N]       sends the head at once and the body after N ms
  /bad[?kind=K]          a malformed response (garbage, dupcl, badstatus, clte, nul, bigline)
  /reset[?graceful=1]    closes without answering (RST by default)
  /flaky?fail=a,b        like /reset on backends named a or b, else 200 "ok NAME"
  /fail?on=a,b[&status=N]  status N (default 500) on backends named a or b, else 200 "ok NAME"
  /healthz               200 "healthy" (for health checks; counted apart from requests by path)
  /resphop               a response carrying hop-by-hop headers the proxy must strip
  /leaky[?status=N&chunked=1]  Server, X-Powered-By, X-AspNet-Version, X-AspNetMvc-Version and
                         X-Custom-Leak headers; for N >= 400 a stack trace naming 10.1.2.3 as body
  /trailers              a chunked response with a trailer section
  /early                 a 103 interim response, then 200
  /truncated[?kind=chunked]  a response cut short (CL 1000 with 500 bytes, or no last chunk), then close
  /reject-early[?status=N]  answers N before reading the request body, then closes (lingering)
  /double                two responses to one request
  /stray[?total=N&kind=K]  a response exactly N bytes long (default 16384; its head padded),
                         then, unasked, K: response (a second one, X-Poison), excess (more
                         body than Content-Length), headbody (a body for HEAD)
  any path, ?fin=1       a keep-alive answer, then a close (answer and FIN in one segment)
  any path, ?close=1     answer with Connection: close and close the connection
"""
import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pattern  # noqa: E402

MAX_HEAD = 256 * 1024


class Peer(Exception):
    """The peer closed or broke the connection."""


class Log:
    def __init__(self, directory, name, raw_max):
        self.lock = threading.Lock()
        self.raw = open(os.path.join(directory, name + ".raw"), "ab", buffering=0)
        self.events = open(os.path.join(directory, name + ".events"), "a", buffering=1)
        self.raw_max = raw_max
        self.raw_written = 0

    def data(self, b):
        with self.lock:
            if self.raw_max is None or self.raw_written < self.raw_max:
                n = len(b) if self.raw_max is None else min(len(b), self.raw_max - self.raw_written)
                self.raw.write(b[:n])
                self.raw_written += n

    def event(self, **kw):
        kw["t"] = round(time.time(), 4)
        line = json.dumps(kw) + "\n"
        with self.lock:
            self.events.write(line)
            self.events.flush()


class Reader:
    """Buffered reads from a socket, with every byte logged."""

    def __init__(self, sock, log):
        self.sock = sock
        self.log = log
        self.buf = bytearray()
        self.pos = 0
        self.scratch = bytearray(1 << 20)

    def avail(self):
        return len(self.buf) - self.pos

    def _compact(self):
        if self.pos and (self.pos > 65536 or self.pos == len(self.buf)):
            del self.buf[:self.pos]
            self.pos = 0

    def fill(self):
        self._compact()
        b = self.sock.recv(262144)
        if not b:
            return False
        self.log.data(b)
        self.buf += b
        return True

    def read_line(self, limit=65536):
        """A line ending in LF, returned without its CRLF/LF, with a flag set for a bare LF."""
        scanned = 0  # bytes after self.pos already searched (fill() may move self.pos)
        while True:
            i = self.buf.find(b"\n", self.pos + scanned)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 1
                bare = not line.endswith(b"\r")
                return (line if bare else line[:-1]), bare
            if self.avail() > limit:
                raise Peer("line too long")
            scanned = self.avail()
            if not self.fill():
                raise Peer("eof in line")

    def read_head(self):
        """The raw head up to and including the empty line, or None on a clean EOF before it."""
        scanned = 0
        while True:
            start = self.pos + max(0, scanned - 3)
            i = self.buf.find(b"\r\n\r\n", start)
            j = self.buf.find(b"\n\n", start)
            ends = [k for k in ((i + 4) if i >= 0 else -1, (j + 2) if j >= 0 else -1) if k >= 0]
            if ends:
                end = min(ends)
                head = bytes(self.buf[self.pos:end])
                self.pos = end
                return head
            if self.avail() > MAX_HEAD:
                raise Peer("head too long")
            scanned = self.avail()
            if not self.fill():
                if scanned == 0:
                    return None
                raise Peer("eof in head")

    def read_exact(self, n, sink):
        """Passes exactly n bytes to sink(memoryview)."""
        while n > 0:
            if self.avail():
                k = min(n, self.avail())
                sink(memoryview(self.buf)[self.pos:self.pos + k])
                self.pos += k
                n -= k
                continue
            k = self.sock.recv_into(self.scratch, min(n, len(self.scratch)))
            if k == 0:
                raise Peer("eof in body")
            mv = memoryview(self.scratch)[:k]
            self.log.data(mv)
            sink(mv)
            n -= k

    def read_chunked(self, sink):
        """Decodes a chunked body; returns the trailer lines."""
        while True:
            line, bare = self.read_line()
            if bare:
                raise Peer("bare LF in chunk size")
            size_txt = line.split(b";", 1)[0].strip()
            if not size_txt or any(c not in b"0123456789abcdefABCDEF" for c in size_txt) or len(size_txt) > 15:
                raise Peer("bad chunk size %r" % line[:40])
            size = int(size_txt, 16)
            if size == 0:
                trailers = []
                while True:
                    t, bare = self.read_line()
                    if t == b"":
                        return trailers
                    trailers.append(t.decode("latin-1"))
            self.read_exact(size, sink)
            crlf, _ = self.read_line()
            if crlf != b"":
                raise Peer("no CRLF after chunk data")


def parse_head(head):
    """(method, target, version, [(name, value)]) from a raw request head, leniently."""
    text = head.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    method, target, version = (parts + ["", "", ""])[:3]
    headers = []
    for ln in lines[1:]:
        if not ln:
            continue
        name, _, value = ln.partition(":")
        headers.append((name, value.strip(" \t")))
    return method, target, version, headers


def hget(headers, name):
    vals = [v for n, v in headers if n.lower() == name]
    return vals


class Server:
    def __init__(self, args):
        self.name = args.name
        self.log = Log(args.dir, args.name, args.raw_max)
        self.conn_ids = 0
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((args.host, args.port))
        self.sock.listen(128)
        port = self.sock.getsockname()[1]
        tmp = os.path.join(args.dir, args.name + ".port.tmp")
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, os.path.join(args.dir, args.name + ".port"))

    def serve(self):
        while True:
            c, addr = self.sock.accept()
            with self.lock:
                self.conn_ids += 1
                cid = self.conn_ids
            self.log.event(ev="accept", conn=cid, peer="%s:%d" % addr[:2])
            threading.Thread(target=self.handle, args=(c, cid), daemon=True).start()

    def handle(self, c, cid):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = Reader(c, self.log)
        why = "eof"
        try:
            seq = 0
            while True:
                head = r.read_head()
                if head is None:
                    break
                seq += 1
                if not self.request(c, r, cid, seq, head):
                    why = "closed by backend"
                    break
        except Peer as e:
            why = str(e)
            self.log.event(ev="error", conn=cid, what=why)
        except OSError as e:
            why = "os error: %s" % e
        finally:
            self.log.event(ev="close", conn=cid, why=why)
            try:
                c.close()
            except OSError:
                pass

    def request(self, c, r, cid, seq, head):
        """Serves one request; False when the connection must close."""
        method, target, version, headers = parse_head(head)
        self.log.event(ev="request", conn=cid, seq=seq, method=method, target=target,
                       version=version, headers=headers)
        url = urllib.parse.urlsplit(target)
        path = url.path
        q = dict(urllib.parse.parse_qsl(url.query))
        te = ",".join(hget(headers, "transfer-encoding")).lower()
        cl = hget(headers, "content-length")
        conn_tokens = ",".join(hget(headers, "connection")).lower()
        keep = version == "HTTP/1.1" and "close" not in conn_tokens
        if version == "HTTP/1.0" and "keep-alive" in conn_tokens:
            keep = True

        if path in ("/reset",) or (path == "/flaky" and self.name in q.get("fail", "").split(",")):
            # Read what the head announces, then drop the connection without a byte of answer.
            self.drain_body(r, cid, te, cl, lambda b: None, "reset")
            if q.get("graceful") != "1":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.log.event(ev="response", conn=cid, seq=seq, status=0, note="reset")
            return False

        if path == "/reject-early":
            return self.respond(c, cid, seq, method, path, q, head, keep, ("", 0))

        if "100-continue" in ",".join(hget(headers, "expect")).lower():
            self.log.event(ev="expect", conn=cid, seq=seq)
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        h = hashlib.sha256()
        sink = h.update
        pause = int(q.get("pause_ms", "0")) / 1000.0 if path == "/upload" else 0
        if pause:
            # A slow consumer: stop reading for a while after the first MiB (backpressure tests).
            seen = [0, False]

            def sink(b):
                h.update(b)
                seen[0] += len(b)
                if not seen[1] and seen[0] >= 1 << 20:
                    seen[1] = True
                    self.log.event(ev="pause", conn=cid, seq=seq)
                    time.sleep(pause)
        n = self.drain_body(r, cid, te, cl, sink, "body")
        body_info = (h.hexdigest(), n)
        fin = q.get("fin") == "1"
        if fin:
            # A keep-alive answer (no Connection: close), then a close: held back (TCP_CORK)
            # so that the answer and the FIN leave in one segment.
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        more = self.respond(c, cid, seq, method, path, q, head, keep, body_info)
        if fin:
            c.shutdown(socket.SHUT_WR)
            return False
        return more

    def drain_body(self, r, cid, te, cl, sink, label):
        count = [0]

        def counting(b):
            count[0] += len(b)
            sink(b)

        if te:
            if te.split(",")[-1].strip() != "chunked":
                raise Peer("unsupported transfer-encoding %r" % te)
            trailers = r.read_chunked(counting)
            self.log.event(ev=label, conn=cid, len=count[0], chunked=True, trailers=trailers, complete=True)
        elif cl:
            if len(set(v.strip() for v in cl)) != 1 or not cl[0].strip().isdigit():
                raise Peer("bad content-length %r" % cl)
            r.read_exact(int(cl[0]), counting)
            self.log.event(ev=label, conn=cid, len=count[0], chunked=False, complete=True)
        return count[0]

    def send(self, c, cid, seq, status, reason, headers, body=b"", keep=True):
        lines = ["HTTP/1.1 %d %s" % (status, reason)]
        lines += ["%s: %s" % kv for kv in headers]
        if not keep:
            lines.append("Connection: close")
        c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.log.event(ev="response", conn=cid, seq=seq, status=status)
        return keep

    def respond(self, c, cid, seq, method, path, q, head, keep, body_info):
        is_head = method == "HEAD"

        def simple(status, body, ctype="text/plain", extra=(), reason="OK"):
            hdrs = [("Content-Type", ctype), ("Content-Length", str(len(body))), ("X-Backend", self.name)]
            hdrs += list(extra)
            return self.send(c, cid, seq, status, reason, hdrs, b"" if is_head else body, keep)

        if q.get("close") == "1":
            keep = False  # answer with Connection: close, then close
        if path == "/small":
            return simple(200, pattern.SMALL, "application/octet-stream")
        if path == "/id":
            return simple(200, self.name.encode())
        if path == "/early":
            c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            time.sleep(0.05)
            return simple(200, b"after hints\n")
        if path == "/reject-early":
            # Answers before reading the body, then a lingering close: stop sending, drain, close.
            status = int(q.get("status", "413"))
            body = b"rejected early\n"
            c.sendall(b"HTTP/1.1 %d Rejected\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                      % (status, len(body), body))
            self.log.event(ev="response", conn=cid, seq=seq, status=status, note="early")
            c.shutdown(socket.SHUT_WR)
            c.settimeout(2)
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
            return False
        if path == "/stray":
            return self.stray(c, cid, seq, q, is_head, keep)
        if path == "/double":
            # Two responses to one request: the second must never reach anyone.
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nfirst\n"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nX-Poison: 1\r\n\r\nPOISON\n")
            self.log.event(ev="response", conn=cid, seq=seq, status=200, note="double")
            return keep
        if path == "/truncated":
            if q.get("kind") == "chunked":
                c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1f4\r\n" + b"t" * 500 + b"\r\n")
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"t" * 500)
            time.sleep(0.1)
            self.log.event(ev="response", conn=cid, seq=seq, status=200, note="truncated")
            return False
        if path == "/flaky":
            return simple(200, ("ok " + self.name).encode())
        if path == "/fail":
            if self.name in q.get("on", "").split(","):
                st = int(q.get("status", "500"))
                return simple(st, ("failing %d %s" % (st, self.name)).encode(), reason="Failing")
            return simple(200, ("ok " + self.name).encode())
        if path == "/healthz":
            return simple(200, b"healthy\n")
        if path == "/echo":
            return simple(200, head, extra=[("X-Body-Sha256", body_info[0]), ("X-Body-Length", str(body_info[1]))])
        if path == "/upload":
            return simple(200, ("%s %d\n" % body_info).encode())
        if path == "/head":
            body = pattern.data(777)
            if is_head and q.get("junk") == "1":
                # A broken backend that sends a body in answer to HEAD.
                return self.send(c, cid, seq, 200, "OK", [("Content-Length", "777")], body, keep)
            return simple(200, body, "application/octet-stream")
        if path.startswith("/status/"):
            status = int(path.split("/")[2])
            if status < 200 or status in (204, 304):
                extra = [("ETag", '"v1"')] if status == 304 else []
                if "cl" in q:  # legal on a 304: the size of the representation, with no body
                    extra.append(("Content-Length", q["cl"]))
                hdrs = [("X-Backend", self.name)] + extra
                junk = b"JUNK!" if q.get("junk") == "1" else b""  # illegal body bytes
                return self.send(c, cid, seq, status, "Status", hdrs, junk, keep)
            return simple(status, ("status %d\n" % status).encode(), reason="Status")
        if path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            return simple(200, b"slow\n")
        if path == "/slowbody":
            body = b"slow body\n"
            c.sendall(("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)).encode())
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            c.sendall(body)
            self.log.event(ev="response", conn=cid, seq=seq, status=200)
            return keep
        if path == "/download":
            return self.download(c, cid, seq, q, is_head, keep)
        if path == "/close":
            size = int(q.get("size", "100000"))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")
            if not is_head:
                for p in pattern.pieces(size):
                    c.sendall(p)
            self.log.event(ev="response", conn=cid, seq=seq, status=200)
            c.shutdown(socket.SHUT_WR)
            return False
        if path == "/bad":
            return self.bad(c, cid, seq, q.get("kind", "garbage"))
        if path == "/leaky":
            # A backend that says too much: its software in headers, and (with status=5xx) a stack
            # trace naming an internal address in the body; chunked=1 frames it by chunks.
            status = int(q.get("status", "200"))
            body = (b"ok\n" if status < 400 else
                    b"Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 42\n"
                    b"psycopg2.OperationalError: could not connect to 10.1.2.3:5432\n")
            hdrs = [("Content-Type", "text/plain"), ("Server", "Apache/2.4.7 (Ubuntu)"),
                    ("X-Powered-By", "PHP/5.5.9"), ("X-AspNet-Version", "4.0.30319"),
                    ("X-AspNetMvc-Version", "5.2"), ("X-Custom-Leak", "node-7"), ("X-Backend", self.name)]
            if q.get("chunked") == "1" and not is_head:
                hdrs.append(("Transfer-Encoding", "chunked"))
                body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            else:
                hdrs.append(("Content-Length", str(len(body))))
            return self.send(c, cid, seq, status, "Status", hdrs, b"" if is_head else body, keep)
        if path == "/resphop":
            hdrs = [("Content-Type", "text/plain"), ("Content-Length", "3"),
                    ("Connection", "X-Secret-Hop"), ("X-Secret-Hop", "1"), ("Keep-Alive", "timeout=5"),
                    ("Proxy-Connection", "keep-alive"), ("Upgrade", "foo/1"), ("X-End-To-End", "yes")]
            return self.send(c, cid, seq, 200, "OK", hdrs, b"" if is_head else b"ok\n", keep)
        if path == "/trailers":
            body = b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
            hdrs = [("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"), ("Trailer", "X-Trailer")]
            return self.send(c, cid, seq, 200, "OK", hdrs, b"" if is_head else body, keep)
        return simple(404, b"backend: no such path\n", reason="Not Found")

    def download(self, c, cid, seq, q, is_head, keep):
        size = int(q.get("size", "1048576"))
        chunked = q.get("chunked") == "1"
        step = int(q.get("chunk", str(1 << 20)))
        hdrs = ["HTTP/1.1 200 OK", "Content-Type: application/octet-stream"]
        hdrs.append("Transfer-Encoding: chunked" if chunked else "Content-Length: %d" % size)
        if not keep:
            hdrs.append("Connection: close")
        c.sendall(("\r\n".join(hdrs) + "\r\n\r\n").encode())
        if not is_head:
            for p in pattern.pieces(size, step=step):
                if chunked:
                    c.sendall(b"%x\r\n" % len(p))
                    c.sendall(p)
                    c.sendall(b"\r\n")
                else:
                    c.sendall(p)
            if chunked:
                c.sendall(b"0\r\n\r\n")
        self.log.event(ev="response", conn=cid, seq=seq, status=200, size=size)
        return keep

    def stray(self, c, cid, seq, q, is_head, keep):
        """A response exactly `total` bytes long (default 16384, gatehouse's read block: a head
        padded with X-Pad, and "ok\n" but for HEAD), so that a read of that size takes it to its
        last byte and no further; then, in the same write, bytes that no request asked for."""
        total = int(q.get("total", "16384"))
        kind = q.get("kind", "response")
        body = b"" if is_head else b"ok\n"
        first = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % (777 if is_head else 3)
        fill = total - len(first) - 2 * len(b"X-Pad: \r\n") - len(b"\r\n") - len(body)
        pad = b"X-Pad: " + b"p" * (fill // 2) + b"\r\n" + b"X-Pad: " + b"p" * (fill - fill // 2) + b"\r\n"
        if kind == "excess":
            extra = b"EXCESS BODY BYTES\n"  # more than Content-Length
        elif kind == "headbody":
            extra = b"J" * 777  # the body of a HEAD answer
        else:
            extra = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nX-Poison: 1\r\n\r\nPOISON\n"
        c.sendall(first + pad + b"\r\n" + body + extra)
        self.log.event(ev="response", conn=cid, seq=seq, status=200, note="stray " + kind)
        return keep

    def bad(self, c, cid, seq, kind):
        secret = "BACKEND-SECRET-%s" % self.name
        responses = {
            "garbage": "HELLO %s\r\n\r\n" % secret,
            "dupcl": "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n%s" % secret,
            "badstatus": "HTTP/1.1 2x0 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(secret), secret),
            "clte": "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                    % (len(secret), secret),
            "nul": "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: %d\r\n\r\n%s" % (len(secret), secret),
            "bigline": "HTTP/1.1 200 OK\r\nX-Big: %s\r\nContent-Length: %d\r\n\r\n%s"
                       % ("x" * 70000, len(secret), secret),
        }
        c.sendall(responses[kind].encode("latin-1"))
        self.log.event(ev="response", conn=cid, seq=seq, status=-1, note="bad " + kind)
        time.sleep(0.2)
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")  # or ::1 (a name that resolves to both, t_health)
    ap.add_argument("--raw-max", type=int, default=None)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    Server(args).serve()


if __name__ == "__main__":
    main()
