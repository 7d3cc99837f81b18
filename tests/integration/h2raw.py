"""A raw-frame HTTP/2 client for the tests: sends exactly the bytes an attacker would.

Frames are built by hand (frame() and the helpers below) so that nothing on our side
validates, normalises or lower-cases what a test sends; hpack's Encoder (for the dynamic
table) and Decoder, and hyperframe's parser for what gatehouse sends back, come from
Debian's python3-hpack / python3-hyperframe (pulled in by python3-h2).

    with H2Conn(port) as c:                       # TLS with ALPN h2 (plain=True: prior knowledge)
        sid = c.request([(":method", "GET"), (":path", "/echo"), ...])
        r = c.response(sid)                       # Outcome: kind "response" / "rst" / "goaway" / "closed"

Names and values may be str (latin-1) or bytes. literal_block() encodes a header list as
"literal without indexing, new name" fields, byte for byte; encoder() keeps a dynamic table.
"""
import socket
import ssl
import struct
import sys
import time

try:
    import hpack
    import hyperframe.frame as hf
except ImportError:  # Debian's python3-h2/-hpack/-hyperframe when the tests run on another CPython 3
    sys.path.append("/usr/lib/python3/dist-packages")
    import hpack
    import hyperframe.frame as hf

from harness import T, Fail, SocketClient, client_context

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# flags
END_STREAM, ACK, END_HEADERS, PADDED, PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
# settings ids
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)
ENABLE_CONNECT_PROTOCOL = 8
# error codes (RFC 9113 §7)
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
          "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
          "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, ENHANCE_YOUR_CALM = 7, 8, 9, 11


def error_name(code):
    return ERRORS[code] if 0 <= code < len(ERRORS) else "0x%x" % code


def b(x):
    return x if isinstance(x, bytes) else str(x).encode("latin-1")


def frame(ftype, flags, sid, payload=b""):
    """One frame, byte for byte (RFC 9113 §4.1): nothing is checked."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0xFFFFFFFF) + payload


def settings_frame(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc & 0x7FFFFFFF))


def rst_stream(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def ping(data=b"12345678", ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def priority(sid, dep=0, weight=15, exclusive=False):
    return frame(PRIORITY, 0, sid, struct.pack(">IB", (dep | (1 << 31 if exclusive else 0)) & 0xFFFFFFFF, weight))


def goaway(last=0, code=NO_ERROR):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code))


def data_frame(sid, payload, end=False):
    return frame(DATA, END_STREAM if end else 0, sid, payload)


def _int(value, prefix_bits, first):
    """HPACK integer (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name, value, indexing=False):
    """One "literal header field, new name" (RFC 7541 §6.2), no Huffman: the exact bytes.
    indexing=True adds it to the dynamic table (§6.2.1)."""
    n, v = b(name), b(value)
    return (b"\x40" if indexing else b"\x00") + _int(len(n), 7, 0) + n + _int(len(v), 7, 0) + v


def indexed(i):
    """An indexed header field (RFC 7541 §6.1): 1-61 static table, 62+ dynamic."""
    return _int(i, 7, 0x80)


def literal_block(headers):
    return b"".join(literal(n, v) for n, v in headers)


def request_headers(method="GET", path="/echo", authority="localhost", scheme="https", extra=()):
    return [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)] + list(extra)


class Outcome:
    """What became of one stream: kind is "response", "rst", "goaway" or "closed"."""

    def __init__(self, kind, status=None, headers=(), body=b"", code=None, last_sid=None, trailers=()):
        self.kind, self.status, self.headers, self.body = kind, status, list(headers), body
        self.code, self.last_sid, self.trailers = code, last_sid, list(trailers)
        self.reset_after = None     # a RST_STREAM code that followed a (complete or partial) response

    def get(self, name):
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self):
        if self.kind == "response":
            return "<response %s %r %d bytes%s>" % (self.status, self.headers[:12], len(self.body),
                                                  " then RST %s" % error_name(self.reset_after)
                                                  if self.reset_after is not None else "")
        if self.kind in ("rst", "goaway"):
            return "<%s %s%s>" % (self.kind.upper(), error_name(self.code),
                                  " last_stream_id=%s" % self.last_sid if self.kind == "goaway" else "")
        return "<connection closed>"


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None
        self.trailers = []
        self.interim = []           # header lists of 1xx responses
        self.body = bytearray()
        self.ended = False
        self.reset = None
        self.window = 65535


class H2Conn(SocketClient):
    """One HTTP/2 connection: TLS with ALPN h2, or plain with prior knowledge (plain=True).

    preface=True sends the client preface and an (empty or given) SETTINGS frame at once.
    auto_window: send WINDOW_UPDATE for every DATA frame received (off for stall tests).
    first: bytes sent in the same write as the preface (e.g. a request's HEADERS).
    Every read is bounded by timeout; frames gatehouse sends are kept in self.frames.
    """

    def __init__(self, port, plain=False, timeout=None, settings=(), preface=True, auto_window=True,
                 alpn=("h2",), sni="localhost", host="127.0.0.1", ack_settings=True, first=b"", sock=None):
        self.timeout = timeout or 5 * T
        raw = sock or socket.create_connection((host, port), timeout=self.timeout)  # sock: connected already
        raw.settimeout(self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.alpn = None
        if plain:
            self.s = raw
        else:
            try:
                self.s = client_context(alpn).wrap_socket(raw, server_hostname=sni)
            except Exception:
                raw.close()
                raise
            self.alpn = self.s.selected_alpn_protocol()
        self.port = port
        self.buf = bytearray()
        self.eof = False
        self.reset = False          # the peer reset the TCP connection
        self.frames = []            # every frame received (hyperframe objects)
        self.goaway = None          # (last_sid, code, debug) of the first GOAWAY
        self.streams = {}
        self.next_sid = 1
        self.auto_window = auto_window
        self.ack_settings = ack_settings   # False: never ACK the server's SETTINGS (a lazy client)
        self.decoder = hpack.Decoder()
        self.decoder.max_allowed_table_size = 1 << 16
        self.decoder.max_header_list_size = 1 << 24
        self.server_settings = {}
        self.settings_acked = 0
        self.pings = []             # payloads of PING ACKs received
        self.bytes_sent = 0
        self.hpack_enc = None
        self.conn_window = 65535    # what we may send (RFC 9113 §6.9), for send_body()
        self.peer_initial_window = 65535
        if preface:
            self.send(PREFACE + settings_frame(settings) + first)

    # ------------------------------------------------------------ sending

    def send(self, data):
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLError) as e:
            self.eof = self.reset = True
            raise Closed("send failed: %s" % e)
        self.bytes_sent += len(data)

    def try_send(self, data):
        """send() that returns False instead of raising once gatehouse has closed."""
        try:
            self.send(data)
            return True
        except Closed:
            return False

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        self.streams[sid] = Stream(sid)
        self.streams[sid].window = self.peer_initial_window
        return sid

    def send_body(self, sid, body, end=True):
        """DATA frames within the windows gatehouse gave (waiting for its WINDOW_UPDATEs)."""
        st = self.streams[sid]
        body = memoryview(b(body))
        deadline = time.monotonic() + self.timeout
        while True:
            n = min(16384, self.conn_window, st.window, len(body))
            if n > 0 or not body:
                self.send(data_frame(sid, bytes(body[:n]), end=end and n == len(body)))
                self.conn_window -= n
                st.window -= n
                body = body[n:]
                if not body:
                    return
                continue
            if st.reset is not None or self.goaway is not None:
                return
            try:
                if self.read_frame(max(0.0, deadline - time.monotonic())) is None:
                    return
            except TimeoutError:
                raise Fail("stream %d: no WINDOW_UPDATE for the request body within %.1fs" % (sid, self.timeout))

    def encoder(self):
        if self.hpack_enc is None:
            self.hpack_enc = hpack.Encoder()
        return self.hpack_enc

    def headers_frame(self, sid, block, end_stream=True, end_headers=True):
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return frame(HEADERS, flags, sid, block)

    def request(self, headers, body=None, end_stream=None, sid=None, block=None):
        """Sends a HEADERS frame (literal_block(headers) unless block is given) and the body, if
        any, in DATA frames of at most 16 KiB. Returns the stream id."""
        if sid is None:
            sid = self.new_sid()
        else:
            self.streams.setdefault(sid, Stream(sid))
        if block is None:
            block = literal_block(headers)
        # end_stream None: the stream ends with the headers, or with the last DATA frame of body.
        out = self.headers_frame(sid, block, end_stream=body is None and end_stream is not False)
        if body is not None:
            body = b(body)
            for i in range(0, max(1, len(body)), 16384):
                last = i + 16384 >= len(body)
                out += data_frame(sid, body[i:i + 16384], end=last and end_stream is not False)
        self.send(out)
        return sid

    # ------------------------------------------------------------ receiving

    def _fill(self, deadline):
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        self.s.settimeout(left)
        try:
            d = self.s.recv(262144)
        except (socket.timeout, TimeoutError):
            raise TimeoutError()
        except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLError):
            self.eof = self.reset = True
            return False
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def read_frame(self, timeout=None):
        """The next frame (handled: SETTINGS acked, windows refilled), or None at EOF.
        Raises TimeoutError when nothing complete comes within timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while len(self.buf) < 9:
            if not self._fill(deadline):
                return None
        length = int.from_bytes(self.buf[:3], "big")
        while len(self.buf) < 9 + length:
            if not self._fill(deadline):
                return None
        head, body = bytes(self.buf[:9]), bytes(self.buf[9:9 + length])
        del self.buf[:9 + length]
        try:
            f, _ = hf.Frame.parse_frame_header(memoryview(head))
            f.parse_body(memoryview(body))
        except Exception as e:  # noqa: BLE001
            raise Fail("gatehouse sent a malformed frame %r: %s" % (head + body[:40], e))
        self.frames.append(f)
        self._handle(f)
        return f

    def _handle(self, f):
        st = self.streams.get(f.stream_id)
        if isinstance(f, hf.SettingsFrame):
            if "ACK" in f.flags:
                self.settings_acked += 1
            else:
                if INITIAL_WINDOW_SIZE in f.settings:
                    delta = f.settings[INITIAL_WINDOW_SIZE] - self.peer_initial_window
                    self.peer_initial_window = f.settings[INITIAL_WINDOW_SIZE]
                    for s_ in self.streams.values():
                        s_.window += delta
                self.server_settings.update(f.settings)
                if self.ack_settings:
                    self.try_send(settings_frame(ack=True))
        elif isinstance(f, hf.PingFrame):
            if "ACK" in f.flags:
                self.pings.append(bytes(f.opaque_data))
        elif isinstance(f, hf.GoAwayFrame):
            if self.goaway is None:
                self.goaway = (f.last_stream_id, f.error_code, bytes(f.additional_data))
        elif isinstance(f, (hf.HeadersFrame, hf.ContinuationFrame)):
            self._header_block(f, st)
        elif isinstance(f, hf.DataFrame) and st is not None:
            st.body += f.data
            if f.flow_controlled_length and self.auto_window:
                self.try_send(window_update(0, f.flow_controlled_length) +
                              (window_update(f.stream_id, f.flow_controlled_length)
                               if "END_STREAM" not in f.flags else b""))
            if "END_STREAM" in f.flags:
                st.ended = True
        elif isinstance(f, hf.RstStreamFrame) and st is not None:
            st.reset = f.error_code
        elif isinstance(f, hf.WindowUpdateFrame):
            if f.stream_id == 0:
                self.conn_window += f.window_increment
            elif st is not None:
                st.window += f.window_increment

    def _header_block(self, f, st):
        if isinstance(f, hf.HeadersFrame):
            self._hblock = (f.stream_id, bytearray(f.data), "END_STREAM" in f.flags)
        elif getattr(self, "_hblock", None):
            self._hblock[1].extend(f.data)
        else:
            raise Fail("CONTINUATION from gatehouse without HEADERS")
        if "END_HEADERS" not in f.flags:
            return
        sid, block, end = self._hblock
        self._hblock = None
        try:
            hdrs = [(b(n).decode("latin-1"), b(v).decode("latin-1")) for n, v in self.decoder.decode(bytes(block), raw=True)]
        except Exception as e:  # noqa: BLE001
            raise Fail("gatehouse sent a header block that does not decode: %s" % e)
        st = self.streams.get(sid)
        if st is None:
            return
        status = dict(hdrs).get(":status")
        if status and status.startswith("1"):
            st.interim.append(hdrs)
        elif st.headers is None:
            st.headers = hdrs
        else:
            st.trailers = hdrs
        if end:
            st.ended = True

    def response(self, sid, timeout=None):
        """Reads until stream sid ends (response with END_STREAM), is reset, or the connection
        goes away or closes; returns an Outcome."""
        st = self.streams[sid]
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if st.headers is not None and (st.ended or st.reset is not None):
                o = Outcome("response", status=int(dict(st.headers).get(":status", "0")), headers=st.headers,
                            body=bytes(st.body), trailers=st.trailers)
                o.reset_after = st.reset
                return o
            if st.reset is not None:
                return Outcome("rst", code=st.reset)
            if self.goaway is not None and sid > self.goaway[0]:
                return Outcome("goaway", code=self.goaway[1], last_sid=self.goaway[0])
            try:
                f = self.read_frame(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise Fail("stream %d: no end, reset or GOAWAY within %.1fs (frames: %s)"
                           % (sid, timeout or self.timeout, self.describe_frames()))
            if f is None:
                if self.goaway is not None:
                    return Outcome("goaway", code=self.goaway[1], last_sid=self.goaway[0])
                return Outcome("closed")

    def drain(self, timeout):
        """Reads frames for up to timeout seconds or until EOF; returns True on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.read_frame(max(0.0, deadline - time.monotonic())) is None:
                    return True
            except TimeoutError:
                return False

    def wait_goaway_or_close(self, timeout):
        """Reads until a GOAWAY or EOF; returns the GOAWAY tuple, "closed", or None on timeout."""
        deadline = time.monotonic() + timeout
        while self.goaway is None:
            try:
                if self.read_frame(max(0.0, deadline - time.monotonic())) is None:
                    return self.goaway or "closed"
            except TimeoutError:
                return None
        return self.goaway

    def handshake(self, timeout=None):
        """Reads until the server's SETTINGS arrived (and were acked)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not any(isinstance(f, hf.SettingsFrame) and "ACK" not in f.flags for f in self.frames):
            try:
                if self.read_frame(max(0.0, deadline - time.monotonic())) is None:
                    raise Closed("connection closed before the server's SETTINGS")
            except TimeoutError:
                raise Fail("no SETTINGS from the server within %.1fs" % (timeout or self.timeout))

    def describe_frames(self, n=12):
        out = []
        for f in self.frames[-n:]:
            name = type(f).__name__.replace("Frame", "")
            extra = ""
            if isinstance(f, hf.RstStreamFrame):
                extra = " " + error_name(f.error_code)
            elif isinstance(f, hf.GoAwayFrame):
                extra = " %s last=%d" % (error_name(f.error_code), f.last_stream_id)
            out.append("%s(%d%s%s)" % (name, f.stream_id, "," + "|".join(sorted(f.flags)) if f.flags else "", extra))
        return " ".join(out) + (" EOF" if self.eof else "")

    def get(self, path, authority="localhost", extra=(), timeout=None):
        """A simple GET on a new stream; returns its Outcome."""
        return self.response(self.request(request_headers("GET", path, authority, extra=extra)), timeout)


class Closed(Fail):
    """gatehouse closed the connection."""


# ---------------------------------------------------------------- gatehouse with an HTTP/2 front

class Front:
    """A gatehouse serving HTTP/2: .port (TLS, ALPN h2 and http/1.1), .plain_port (prior
    knowledge, protocols=h2), .gh (the GatehouseConf), .worker_pid() (the one worker)."""

    def __init__(self, gh, port, plain_port):
        self.gh, self.port, self.plain_port = gh, port, plain_port

    def worker_pid(self):
        import t_reload
        ws = t_reload.serving_workers(self.gh)
        if len(ws) != 1:
            raise Fail("expected one worker, found %r" % ws)
        return ws[0]

    def rss_kib(self):
        from harness import rss_kib
        return rss_kib(self.worker_pid())

    def conn(self, plain=False, **kw):
        return H2Conn(self.plain_port if plain else self.port, plain=plain, **kw)


def start_front(ctx, backend, http2="", site_extra="", global_extra=""):
    """gatehouse -c with one worker, a TLS listener (h2,http/1.1) and a plain prior-knowledge
    listener (protocols=h2), both routing / to backend. http2: the body of an `http2 { }` block."""
    c = ctx.session.certs()

    def conf(p):
        return """workers 1
listen 127.0.0.1:{tls} tls
listen 127.0.0.1:{plain} protocols=h2
{glob}
{h2}
pool app {{ server 127.0.0.1:{b} }}
site default {{
    listen 127.0.0.1:{tls}
    cert {cert} {key}
    route / {{ proxy app }}
    {extra}
}}
site default {{
    listen 127.0.0.1:{plain}
    route / {{ proxy app }}
    {extra}
}}
""".format(tls=p[0], plain=p[1], b=backend.port, cert=c["ec_cert"], key=c["ec_key"], extra=site_extra,
           glob=global_extra, h2=("http2 {\n%s\n}" % http2) if http2 else "")
    gh = ctx.gatehouse_config(conf, nports=2)
    return Front(gh, gh.ports[0], gh.ports[1])


def alive_200(front, plain=False):
    """A new HTTP/2 connection gets a 200 for GET /small: gatehouse survived."""
    with front.conn(plain=plain) as c:
        o = c.get("/small")
    if o.kind != "response" or o.status != 200:
        raise Fail("after the attack, a new connection's GET /small got %r" % o)


class H2Client(H2Conn):
    """HTTP/2 with Conn's interface for the dual tests (harness.client()): request() sends a
    well-formed request (names lower-cased, Host as :authority, HPACK with the dynamic table)
    on a new stream of this one connection and returns a harness.Resp."""

    def __init__(self, port, timeout=None, sni="localhost", **kw):
        H2Conn.__init__(self, port, timeout=timeout, sni=sni, **kw)
        if self.alpn != "h2":
            self.close()
            raise Fail("ALPN chose %r, not h2" % self.alpn)

    def request(self, method, path, headers=(), body=None, host=None):
        from harness import Resp
        hdrs = [(":method", method), (":scheme", "https"), (":authority", host or "localhost:%d" % self.port),
                (":path", path)]
        hdrs += [(n.lower(), v) for n, v in headers]
        if body is not None and not any(n.lower() == "content-length" for n, v in headers):
            hdrs.append(("content-length", str(len(body))))
        block = self.encoder().encode([(b(n), b(v)) for n, v in hdrs], huffman=True)
        o = self.response(self.request_block(block, body))
        if o.kind != "response":
            raise Closed("HTTP/2 %s %s: %r" % (method, path, o))
        st = self.streams[self.last_sid]
        heads = [(n, v) for n, v in o.headers if not n.startswith(":")]
        interim = [int(dict(h).get(":status")) for h in getattr(st, "interim", [])]
        raw = ("HTTP/2 %d\r\n" % o.status + "".join("%s: %s\r\n" % hv for hv in heads) + "\r\n").encode("latin-1")
        return Resp("HTTP/2", o.status, "", heads, o.body, raw, interim)

    def request_block(self, block, body):
        sid = self.new_sid()
        self.last_sid = sid
        self.send(self.headers_frame(sid, block, end_stream=body is None))
        if body is not None:
            self.send_body(sid, body)
        return sid
