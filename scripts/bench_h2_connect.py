#!/usr/bin/env python3
"""One HTTP/2 client of scripts/bench_forward.sh --h2: CONNECT DEST on one stream of a prior-knowledge
connection to the proxy, then N keep-alive GETs of PATH inside the tunnel, read to their Content-Length;
prints the body bytes received. curl 7.88 cannot speak HTTP/2 to a proxy (--proxy-http2 came in 8.1), so
this is the raw-frame client of the tests (tests/integration/h2raw.py), windows refilled per DATA frame.

    bench_h2_connect.py PROXY_PORT HOST:PORT N PATH
"""
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import h2raw  # noqa: E402


def main():
    port, dest, n, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    c = h2raw.H2Conn(port, plain=True, timeout=60, settings=[(h2raw.INITIAL_WINDOW_SIZE, 1 << 24)])
    c.send(h2raw.window_update(0, (1 << 30)))
    sid = c.request([(":method", "CONNECT"), (":authority", dest)], end_stream=False)
    st = c.streams[sid]
    while st.headers is None:
        if st.reset is not None or c.read_frame() is None:
            sys.exit("CONNECT %s refused: %r" % (dest, st.reset))
    if dict(st.headers).get(":status") != "200":
        sys.exit("CONNECT %s: %r" % (dest, st.headers))
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, dest)).encode()
    total = 0
    deadline = time.monotonic() + 300
    for _ in range(n):
        c.send_body(sid, req, end=False)
        want = None
        while True:
            if want is None and b"\r\n\r\n" in st.body:
                head, _, rest = bytes(st.body).partition(b"\r\n\r\n")
                m = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
                if m is None:
                    sys.exit("no Content-Length in %r" % head[:200])
                want = int(m.group(1))
                del st.body[:len(head) + 4]
            if want is not None and len(st.body) >= want:
                total += want
                del st.body[:want]
                break
            if st.ended or st.reset is not None or time.monotonic() > deadline or c.read_frame() is None:
                sys.exit("the tunnel ended early (%d bytes)" % total)
    c.close()
    print(total)


if __name__ == "__main__":
    main()
