#!/usr/bin/env bash
# The cost of accepting a PROXY protocol v2 header, per connection, in instructions (callgrind):
# N plain-HTTP connections (default 500), one GET each, to a listener without proxy_protocol, then
# N with a v2 TCP4 header (as HAProxy's send-proxy-v2 sends it) to a listener that trusts 127.0.0.1.
# Reports the worker's instructions per connection in both runs, their difference, and the inclusive
# cost of the header reader itself (client.c read_proxy_header: peek, parse, take, set the client).
#   scripts/bench_pp_accept.sh [N]       (KEEP=DIR keeps the last run's callgrind files there)
# Every process it starts is stopped by PID on exit.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEHOUSE_BIN:-$here/build/gatehouse}
n=${1:-500}
# shellcheck source=scripts/script_lib.sh
. "$here/scripts/script_lib.sh"
keep_profiles() { if [ -n "${KEEP:-}" ]; then cp "$TMP"/cg.* "$KEEP"/ 2>/dev/null || true; fi; }
KEEP_HOOK=keep_profiles
script_init bench-pp

python3 "$here/tests/integration/backend.py" --name b --dir "$TMP" --port 0 >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/b.port" ] && break; sleep 0.1; done
bport=$(cat "$TMP/b.port")

run() { # NAME HEADER(0|1): prints the worker's total instructions and the reader's inclusive ones
    local port ppport gpid out
    port=$(free_port)
    ppport=$(free_port)
    # valgrind cannot pass a seccomp filter through, and a worker that drops to nobody cannot write its
    # profile into TMP: both off for the measurement (they are not on the path measured)
    cat >"$TMP/g.conf" <<CONF
workers 1
seccomp off
user root
listen 127.0.0.1:$port
listen 127.0.0.1:$ppport proxy_protocol from=127.0.0.1
pool app { server 127.0.0.1:$bport }
site default { route / { proxy app } }
CONF
    rm -f "$TMP"/cg.*
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.%p" "$bin" -c "$TMP/g.conf" 2>"$TMP/g.log" &
    gpid=$!
    PIDS+=($gpid)
    wait_port "$port"
    wait_port "$ppport"
    python3 - "$([ "$2" = 1 ] && echo "$ppport" || echo "$port")" "$n" "$2" <<'PY'
import socket, struct, sys, time
port, n, header = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
pp = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", 12) + bytes([203, 0, 113, 9, 192, 0, 2, 1]) + struct.pack("!HH", 40000, 80)
req = b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
deadline = time.monotonic() + 600
for i in range(n):
    if time.monotonic() > deadline:
        sys.exit("too slow")
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall((pp if header else b"") + req)
    got = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    if not got.startswith(b"HTTP/1.1 200"):
        sys.exit("bad answer: %r" % got[:80])
PY
    kill -TERM "$gpid"
    wait "$gpid" 2>/dev/null || true
    # the worker's profile: the one that accepted (it has client.c's accept in it)
    out=$(for f in "$TMP"/cg.*; do
        if callgrind_annotate --auto=no --inclusive=yes "$f" 2>/dev/null | grep -q "proxy__client_accept"; then echo "$f"; fi
    done | head -1)
    total=$(callgrind_annotate --auto=no "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
    reader=$(callgrind_annotate --auto=no --inclusive=yes "$out" 2>/dev/null | awk '/read_proxy_header/ {gsub(",","",$1); print $1; exit}')
    echo "$1 $total ${reader:-0}"
}

a=$(run plain 0)
b=$(run proxy_v2 1)
python3 - "$n" "$a" "$b" <<'PY'
import sys
n = int(sys.argv[1])
_, ta, _ = sys.argv[2].split()
_, tb, rb = sys.argv[3].split()
ta, tb, rb = int(ta), int(tb), int(rb)
print("connections per run: %d (one GET /small each, plain HTTP)" % n)
print("worker instructions per connection, no header:  %d" % (ta / n))
print("worker instructions per connection, v2 header:  %d" % (tb / n))
print("difference per connection:                      %+d" % ((tb - ta) / n))
print("read_proxy_header inclusive per connection:     %s" % ("%d" % (rb / n) if rb else "n/a (inlined by the compiler)"))
PY
