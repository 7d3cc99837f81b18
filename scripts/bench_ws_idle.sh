#!/usr/bin/env bash
# Memory per idle WebSocket tunnel: N wss connections (default 2000) finish the TLS and the
# WebSocket handshakes through the proxy to a python3-websockets origin, then stay idle; the
# proxy's process-tree RSS growth divided by N is the figure. The same for HAProxy when it is
# installed (a wss frontend, the same origin), so both are measured the same way:
#   scripts/bench_ws_idle.sh [N]
# Every process it starts is stopped by PID on exit.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEHOUSE_BIN:-$here/build/gatehouse}
n=${1:-2000}
tmp=$(mktemp -d /tmp/bench-ws-idle-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 did not open" >&2
    exit 1
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
    -days 2 -subj /CN=localhost 2>/dev/null
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/both.pem"

origin=$(free_port)
python3 "$here/tests/integration/ws_backend.py" "$origin" "$tmp/origin.events" >/dev/null 2>&1 &
pids+=($!)
wait_port "$origin"

measure() { # NAME PORT PID
    wait_port "$2"
    python3 "$here/scripts/ws_idle.py" --port "$2" --pid "$3" --count "$n" | sed "s/^RESULT/$1/"
}

gport=$(free_port)
cat >"$tmp/gatehouse.conf" <<CONF
workers 1
listen 127.0.0.1:$gport tls
pool ws { server 127.0.0.1:$origin }
site default {
    cert $tmp/cert.pem $tmp/key.pem
    route / { proxy ws }
}
CONF
"$bin" -c "$tmp/gatehouse.conf" 2>"$tmp/gatehouse.log" &
gpid=$!
pids+=($gpid)
measure gatehouse "$gport" "$gpid"
kill "$gpid"

if command -v haproxy >/dev/null; then
    hport=$(free_port)
    cat >"$tmp/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn $((n + 100))
defaults
    mode http
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
frontend wss
    bind 127.0.0.1:$hport ssl crt $tmp/both.pem alpn http/1.1
    default_backend ws
backend ws
    server origin 127.0.0.1:$origin
CONF
    haproxy -f "$tmp/haproxy.cfg" -db 2>"$tmp/haproxy.log" &
    hpid=$!
    pids+=($hpid)
    measure "haproxy $(haproxy -v | head -1 | awk '{print $3}')" "$hport" "$hpid"
else
    echo "haproxy: not installed (../shared/bench/setup installs it)"
fi
