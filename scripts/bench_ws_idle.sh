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
# shellcheck source=scripts/script_lib.sh
. "$here/scripts/script_lib.sh"
script_init bench-ws-idle
make_cert "$TMP"

origin=$(free_port)
python3 "$here/tests/integration/ws_backend.py" "$origin" "$TMP/origin.events" >/dev/null 2>&1 &
PIDS+=($!)
wait_port "$origin"

measure() { # NAME PORT PID
    wait_port "$2"
    python3 "$here/scripts/ws_idle.py" --port "$2" --pid "$3" --count "$n" | sed "s/^RESULT/$1/"
}

gport=$(free_port)
cat >"$TMP/gatehouse.conf" <<CONF
workers 1
listen 127.0.0.1:$gport tls
pool ws { server 127.0.0.1:$origin }
site default {
    cert $TMP/cert.pem $TMP/key.pem
    route / { proxy ws }
}
CONF
"$bin" -c "$TMP/gatehouse.conf" 2>"$TMP/gatehouse.log" &
gpid=$!
PIDS+=($gpid)
measure gatehouse "$gport" "$gpid"
kill "$gpid"

if command -v haproxy >/dev/null; then
    hport=$(free_port)
    cat >"$TMP/haproxy.cfg" <<CONF
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
    bind 127.0.0.1:$hport ssl crt $TMP/both.pem alpn http/1.1
    default_backend ws
backend ws
    server origin 127.0.0.1:$origin
CONF
    haproxy -f "$TMP/haproxy.cfg" -db 2>"$TMP/haproxy.log" &
    hpid=$!
    PIDS+=($hpid)
    measure "haproxy $(haproxy -v | head -1 | awk '{print $3}')" "$hport" "$hpid"
else
    echo "haproxy: not installed (../shared/bench/setup installs it)"
fi
