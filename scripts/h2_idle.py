#!/usr/bin/env python3
"""Memory per idle HTTP/2 connection: --count N TLS connections negotiate h2 (ALPN), each makes one
GET and reads its response, then all stay open and idle; the RSS growth of the process tree of --pid
divided by N is printed as `RESULT <KiB per connection>`. Used by scripts/bench_h2.sh."""
import argparse, os, socket, ssl, sys, time

try:
    import h2.config, h2.connection, h2.events
except ImportError:  # Debian's python3-h2, when this runs on another CPython 3 than Debian's
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.config, h2.connection, h2.events


def tree_rss_kib(pid):
    pids, todo = [], [pid]
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except OSError:
                pass
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(kids.get(p, []))
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def one(port, ctx):
    raw = socket.create_connection(("127.0.0.1", port), 5)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    if s.selected_alpn_protocol() != "h2":
        sys.exit("no h2 from the server")
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    c.send_headers(1, [(":method", "GET"), (":path", "/small"), (":scheme", "https"), (":authority", "localhost")],
                   end_stream=True)
    s.sendall(c.data_to_send())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = s.recv(65536)
        if not data:
            sys.exit("closed before the response ended")
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            if isinstance(ev, h2.events.StreamEnded):
                s.sendall(c.data_to_send())
                return s, c
        s.sendall(c.data_to_send())
    sys.exit("no response in 10 s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--count", type=int, default=1000)
    a = ap.parse_args()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    keep = [one(a.port, ctx) for _ in range(20)]  # warm-up: lazy initialisation, upstream pool
    time.sleep(1.5)
    before = tree_rss_kib(a.pid)
    for _ in range(a.count):
        keep.append(one(a.port, ctx))
    time.sleep(2.0)  # past any keep-alive grace in which buffers are still held
    after = tree_rss_kib(a.pid)
    print(f"RESULT {(after - before) / a.count:.1f} KiB per idle h2 connection ({a.count} connections)")


if __name__ == "__main__":
    main()
