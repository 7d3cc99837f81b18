#!/usr/bin/env bash
# HTTP/2 figures the bench has no scenario for, measured the bench's way (its lib: peers, pinning):
#   1. 1 MiB downloads over h2 (h2load -c4 -m1 -n 300 GET /large): MiB/s, and MiB per CPU-second of
#      the proxy's process tree (the figure that stays comparable when the load generator saturates)
#   2. memory per idle HTTP/2 connection after one request (scripts/h2_idle.py, N connections)
# for gatehouse and nginx (and haproxy, h2o when present) one after the other:
#   scripts/bench_h2.sh [N]        BENCH=path/to/shared/bench (default: ../shared/bench beside the repo)
set -u  # not -e: the bench lib is written for scripts without it
here=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-1000}
# shellcheck source=scripts/bench_lib.sh
. "$here/scripts/bench_lib.sh"
bench_init h2

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/key.pem" -out "$TMP/cert.pem" \
    -days 2 -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/both.pem"

for peer in gatehouse nginx haproxy h2o; do
    [[ -n $(peer_binary "$peer") ]] || continue
    [[ $peer == gatehouse && ! -x $GATEHOUSE_BIN ]] && continue
    d="$TMP/$peer"
    mkdir -p "$d"
    alloc_port
    port=$REPLY
    "peer_start_$peer" "$d" "$port" "$TMP/cert.pem" "$TMP/key.pem" "$TMP/both.pem"
    pid=$PEER_PID
    STARTED_PIDS+=("$pid")
    for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$port/small" && break; sleep 0.1; done
    pin_tree "$pid" "$PROXY_CPU"
    h2load -c4 -m1 -n 20 "https://127.0.0.1:$port/large" >/dev/null 2>&1 || true
    c0=$(cpu_ticks "$pid")
    t0=$(date +%s.%N)
    out=$(taskset -c "$LOAD_CPU" timeout 120 h2load -c4 -m1 -n 300 "https://127.0.0.1:$port/large" 2>&1)
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$pid")
    proto=$(grep -o 'Application protocol: [a-z0-9./]*' <<<"$out" | cut -d' ' -f3)
    ok=$(grep -o '[0-9]* succeeded' <<<"$out" | cut -d' ' -f1)
    hz=$(getconf CLK_TCK)
    awk -v p="$peer" -v pr="$proto" -v ok="$ok" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$hz" 'BEGIN {
        mib = ok; secs = t1 - t0; cpu = c / hz
        printf "%-10s h2-large  proto=%s  %d x 1 MiB  %.0f MiB/s wall  %.0f MiB per proxy CPU-second (cpu %.2f s)\n",
            p, pr, ok, mib / secs, (cpu > 0 ? mib / cpu : 0), cpu }'
    taskset -c "$LOAD_CPU" python3 "$here/scripts/h2_idle.py" --port "$port" --pid "$pid" --count "$n" |
        sed "s/^RESULT/$(printf '%-10s' "$peer") h2-idle  /"
    stop_trees "$pid"
    forget_pid "$pid"
done
