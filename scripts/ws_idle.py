#!/usr/bin/env python3
"""Opens N idle WebSocket connections over TLS (wss) to a proxy and reports the growth of the
proxy's process-tree RSS: each connection completes the TLS handshake and the WebSocket opening
handshake (101), then stays idle. Prints one line:

  RESULT established=N failed=F before_kib=B after_kib=A per_conn_kib=K

With --tls-only the connections stop after the TLS handshake (a TCP stream service, HAProxy in mode
tcp, hitch: the proxy connects to the origin on its own). Standard library only (the handshake is a few bytes); one thread, nonblocking, at most
--concurrency handshakes in flight. Used by scripts/bench_ws_idle.sh.
"""
import argparse
import base64
import os
import selectors
import socket
import ssl
import sys
import time


def tree_rss_kib(root):
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def upgrade_request(host):
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET /idle HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode()


def open_idle(host, port, count, concurrency, timeout, tls_only=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sel = selectors.DefaultSelector()
    done, failed, err = [], 0, ""
    started, state = 0, {}  # fd -> [sock, phase, buffer]
    deadline = time.monotonic() + timeout
    while (started < count or state) and time.monotonic() < deadline:
        while started < count and len(state) < concurrency:
            raw = socket.socket()
            raw.setblocking(False)
            s = ctx.wrap_socket(raw, do_handshake_on_connect=False, server_hostname="localhost")
            s.connect_ex((host, port))
            sel.register(s, selectors.EVENT_WRITE)
            state[s.fileno()] = [s, "tls", b""]
            started += 1
        for key, _ in sel.select(timeout=0.5):
            st = state[key.fileobj.fileno()]
            s = st[0]
            try:
                if st[1] == "tls":
                    s.do_handshake()
                    if tls_only:
                        sel.unregister(s)
                        del state[s.fileno()]
                        done.append(s)
                        continue
                    s.sendall(upgrade_request(host))
                    st[1] = "101"
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                d = s.recv(4096)
                if not d:
                    raise OSError("closed before the 101")
                st[2] += d
                if b"\r\n\r\n" not in st[2]:
                    continue
                if not st[2].startswith(b"HTTP/1.1 101"):
                    raise OSError("answer: %r" % st[2][:40])
            except ssl.SSLWantReadError:
                sel.modify(s, selectors.EVENT_READ)
                continue
            except ssl.SSLWantWriteError:
                sel.modify(s, selectors.EVENT_WRITE)
                continue
            except OSError as e:
                sel.unregister(s)
                del state[s.fileno()]
                s.close()
                failed += 1
                err = err or repr(e)
                continue
            sel.unregister(s)
            del state[s.fileno()]
            done.append(s)
    failed += len(state) + count - started
    return done, failed, err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the proxy's root PID")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--settle", type=float, default=3.0)
    ap.add_argument("--tls-only", action="store_true", help="no WebSocket handshake: idle after TLS")
    a = ap.parse_args()
    before = tree_rss_kib(a.pid)
    conns, failed, err = open_idle("127.0.0.1", a.port, a.count, a.concurrency, 120, a.tls_only)
    time.sleep(a.settle)  # the proxy finishes its side and trims what the handshakes left
    after = tree_rss_kib(a.pid)
    per = (after - before) / max(len(conns), 1)
    print("RESULT established=%d failed=%d before_kib=%d after_kib=%d per_conn_kib=%.1f%s" % (
        len(conns), failed, before, after, per, " error=" + err.replace(" ", "_")[:100] if err else ""), flush=True)
    for s in conns:
        s.close()
    return 0 if conns and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
