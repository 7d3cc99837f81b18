#!/usr/bin/env bash
# bench_sandbox.sh [N] [ROUNDS]: the CPU cost of the seccomp allow-list per request.
#
# One worker behind the quick start, one keep-alive TLS client (h2load --h1, one connection, one
# request at a time) for N requests of /small (1 KiB) to the tests' backend, `--seccomp on` and
# `--seccomp off` alternated ROUNDS times. The figure is the worker's own CPU time (user + system,
# /proc/PID/stat) per request: the filter runs in the kernel on every system call the worker makes,
# so it shows in system time, which callgrind's instruction counts do not see. Prints the median
# per mode and the difference. Needs h2load (nghttp2-client), python3, openssl.
set -euo pipefail
N=${1:-20000}
ROUNDS=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
GATEHOUSE=${GATEHOUSE:-$here/build/gatehouse}
# shellcheck source=scripts/script_lib.sh
. "$here/scripts/script_lib.sh"
script_init bench-sandbox
make_cert "$TMP"
python3 "$here/tests/integration/backend.py" --name b --dir "$TMP" --raw-max 0 >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$TMP/b.port" ] && break; sleep 0.05; done
bport=$(cat "$TMP/b.port")


# one MODE: prints the worker's CPU microseconds per request
one() {
    local mode=$1 port gh w t0 t1 hz
    port=$(free_port)
    "$GATEHOUSE" --listen "127.0.0.1:$port" --cert "$TMP/cert.pem" --key "$TMP/key.pem" --to "127.0.0.1:$bport" \
        --workers 1 --seccomp "$mode" --log-level warn 2>>"$TMP/gh.log" &
    gh=$!
    PIDS+=($gh)
    for _ in $(seq 100); do
        w=$(pgrep -P "$gh" | head -n1 || true)
        [ -n "$w" ] && h2load -n 10 -c 1 --h1 "https://127.0.0.1:$port/small" >/dev/null 2>&1 && break
        sleep 0.05
    done
    h2load -n 1000 -c 1 --h1 "https://127.0.0.1:$port/small" >/dev/null 2>&1 # warm-up
    t0=$(cpu_ticks "$w")
    h2load -n "$N" -c 1 --h1 "https://127.0.0.1:$port/small" 2>&1 | grep -q "succeeded, 0 failed" ||
        echo "bench_sandbox: some requests failed" >&2
    t1=$(cpu_ticks "$w")
    hz=$(getconf CLK_TCK)
    kill -TERM "$gh"
    wait "$gh" 2>/dev/null || true
    python3 -c "print(round(($t1 - $t0) * 1e6 / $hz / $N, 2))"
}

on=() off=()
for r in $(seq "$ROUNDS"); do
    on+=("$(one on)")
    off+=("$(one off)")
    echo "round $r: seccomp on ${on[-1]} us/request, off ${off[-1]} us/request"
done
python3 - "${on[*]}" "${off[*]}" <<'EOF'
import statistics, sys
on = [float(x) for x in sys.argv[1].split()]
off = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(on), statistics.median(off)
print("worker CPU per request (median): seccomp on %.2f us, off %.2f us: %+.1f%%" % (a, b, (a - b) * 100 / b))
EOF
