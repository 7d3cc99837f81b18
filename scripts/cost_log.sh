#!/usr/bin/env bash
# What the access log (and the metrics) cost per request, in instructions:
# callgrind on one gatehouse worker, quick-start-like configuration over TLS,
# one keep-alive connection of small GETs (h2load --h1 -c 1), counted as
# (count[M+N] - count[M]) / N so that the connection's set-up cancels out
# (the method of ../shared/bench "cost").
#
#   scripts/cost_log.sh [VARIANT...]     (default: nolog combined json custom)
#   COST_N=2000 COST_M=10 GATEHOUSE_BIN=build/gatehouse scripts/cost_log.sh
#   COST_ANNOTATE=1: also callgrind_annotate each variant's N-request window
#
# Needs valgrind (callgrind, vgdb), h2load, openssl, python3. Starts its own
# backend (tests/integration/backend.py) and gatehouse on free ports, stops them
# by PID, keeps everything in a temporary directory (printed).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${GATEHOUSE_BIN:-$here/build/gatehouse}
N=${COST_N:-2000}
M=${COST_M:-10}
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(nolog combined json custom)
tmp=$(mktemp -d /tmp/gatehouse-costlog-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
python3 "$here/tests/integration/backend.py" --name b1 --dir "$tmp" >"$tmp/backend.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/b1.port" ] && break; sleep 0.1; done
bport=$(cat "$tmp/b1.port")

# vg_pids -> the processes under valgrind (each has a gdbserver FIFO): master, worker, prober
vg_pids() {
    local f
    for f in "$tmp"/vg/vgdb-from-vgdb-to-*; do
        [ -p "$f" ] || continue
        f=${f##*/vgdb-from-vgdb-to-}
        [ -d "/proc/${f%%-*}" ] && echo "${f%%-*}"
    done
}

# window COUNT URL -> instructions of all of gatehouse's processes for COUNT requests (as the bench sums them)
window() {
    local n=$1 url=$2 f out p sum=0 ir
    local ps=($(vg_pids))
    rm -f "$tmp"/vg/callgrind.*.[0-9]*
    for p in "${ps[@]}"; do timeout 60 vgdb "--vgdb-prefix=$tmp/vg/vgdb" --pid="$p" zero >>"$tmp/vgdb.log" 2>&1; done
    out=$(timeout 600 h2load --h1 -n "$n" -c 1 "$url" 2>&1)
    if ! grep -q "status codes: $n 2xx" <<<"$out"; then
        echo "h2load failed: $out" >&2
        return 1
    fi
    sleep 1
    for p in "${ps[@]}"; do timeout 60 vgdb "--vgdb-prefix=$tmp/vg/vgdb" --pid="$p" dump >>"$tmp/vgdb.log" 2>&1; done
    for p in "${ps[@]}"; do
        for f in "$tmp"/vg/callgrind."$p".[0-9]*; do
            [ -f "$f" ] || continue
            ir=$(awk '/^summary:/ { print $2; exit }' "$f")
            sum=$((sum + ir))
            [ -z "${COST_ANNOTATE:-}" ] || [ "$ir" -lt 1000000 ] || cp "$f" "$tmp/last.$n.out"
        done
    done
    echo "$sum"
}

base=""
for v in "${variants[@]}"; do
    port=$(free_port)
    conf=$tmp/$v.conf
    {
        echo "workers 1"
        echo "seccomp off" # valgrind makes calls of its own that the allow-list does not know
        # vgdb reaches a process only under the uid it started with: workers stay as the caller
        [ "$(id -u)" != 0 ] || echo "user root"
        echo "listen 127.0.0.1:$port tls"
        echo 'log_format mine "$remote_addr $host [$time_iso8601] \"$request\" $status $body_bytes_sent $request_time \"$http_user_agent\" $upstream_addr $upstream_response_time"'
        case $v in
        nolog) ;;
        combined) echo "access_log $tmp/$v.log" ;;
        json) echo "access_log $tmp/$v.log format=json" ;;
        custom) echo "access_log $tmp/$v.log format=mine" ;;
        *) echo "unknown variant $v" >&2; exit 2 ;;
        esac
        echo "pool app { server 127.0.0.1:$bport }"
        echo "site localhost 127.0.0.1 {"
        echo "    cert $tmp/cert.pem $tmp/key.pem"
        echo "    route / { proxy app }"
        echo "}"
    } >"$conf"
    mkdir -p "$tmp/vg"
    valgrind --tool=callgrind --trace-children=yes --vgdb=yes "--vgdb-prefix=$tmp/vg/vgdb" \
        "--callgrind-out-file=$tmp/vg/callgrind.%p" "$bin" -c "$conf" >"$tmp/$v.out" 2>&1 &
    master=$!
    pids+=($master)
    url=https://127.0.0.1:$port/small
    for _ in $(seq 600); do curl -sk -o /dev/null --max-time 5 "$url" && break; sleep 0.2; done
    timeout 300 h2load --h1 -n 20 -c 1 "$url" >/dev/null 2>&1 # warm up
    a=$(window "$M" "$url")
    b=$(window "$((M + N))" "$url")
    per=$(((b - a) / N))
    if [ -z "$base" ]; then base=$per; fi
    extra=$((per - base))
    printf '%-9s %7d instructions/request  (%+d vs %s, %s%%)\n' "$v" "$per" "$extra" "${variants[0]}" \
        "$(awk -v e="$extra" -v b="$base" 'BEGIN { printf "%+.1f", 100 * e / b }')"
    if [ -n "${COST_ANNOTATE:-}" ]; then
        cp "$tmp/last.$((M + N)).out" "$tmp/$v.callgrind"
        callgrind_annotate --inclusive=no --threshold=100 --auto=no "$tmp/$v.callgrind" >"$tmp/$v.annotate" 2>/dev/null
        echo "  (annotate: $tmp/$v.annotate)"
    fi
    kill "$master"
    wait "$master" 2>/dev/null || true
done
echo "work files: $tmp"
